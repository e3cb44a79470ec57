/* Prefill and decode times: the forward pass with a key/value cache, as asu_generate runs it
   (upload the new rows, one command, download the last row's logits), on random token ids. */
#include <stdlib.h>

#include "bench.h"
#include "model_internal.h"

typedef struct decoder {
  asu_model *m;
  asu_kv_cache kv;
  asu_acts *acts;
  asu_buffer *ids, *positions, *q_ranges;
  float *scales, *logits;
  int32_t *host_ids, *host_positions, *host_ranges;
  uint32_t prompt;
  asu_cmd *cmd;
} decoder;

static void decoder_free(decoder *d) {
  for (uint32_t l = 0; d->kv.k && l < d->m->cfg.n_layers; l++) {
    asu_buffer_destroy(d->kv.k[l]);
    asu_buffer_destroy(d->kv.v[l]);
  }
  free(d->kv.k);
  free(d->kv.v);
  asu_acts_destroy(d->acts);
  asu_buffer_destroy(d->ids);
  asu_buffer_destroy(d->positions);
  asu_buffer_destroy(d->q_ranges);
  asu_cmd_destroy(d->cmd);
  free(d->scales);
  free(d->logits);
  free(d->host_ids);
  free(d->host_positions);
  free(d->host_ranges);
}

static int decoder_init(decoder *d, asu_model *m, uint32_t prompt, uint32_t capacity,
                        asu_error *err) {
  const asu_model_config *c = &m->cfg;
  size_t kv_bytes = (size_t)capacity * c->n_kv_head * c->head_dim * sizeof(float);
  *d = (decoder){.m = m, .prompt = prompt, .kv.capacity = capacity};
  d->kv.k = calloc(c->n_layers, sizeof *d->kv.k);
  d->kv.v = calloc(c->n_layers, sizeof *d->kv.v);
  d->scales = malloc(c->n_layers * sizeof *d->scales);
  d->logits = malloc(c->vocab * sizeof *d->logits);
  d->host_ids = malloc(prompt * sizeof *d->host_ids);
  d->host_positions = malloc(prompt * sizeof *d->host_positions);
  d->host_ranges = malloc(2 * prompt * sizeof *d->host_ranges);
  if (!d->kv.k || !d->kv.v || !d->scales || !d->logits || !d->host_ids || !d->host_positions ||
      !d->host_ranges)
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  asu_layer_scales(m, 1.0f, 0, d->scales);
  uint64_t state = 7;
  for (uint32_t i = 0; i < prompt; i++) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    d->host_ids[i] = i == 0 ? 1 : (int32_t)(3 + (state >> 33) % (c->vocab - 3));
  }
  int rc = ASU_OK;
  for (uint32_t l = 0; l < c->n_layers && !rc; l++) {
    rc = asu_buffer_create(m->dev, kv_bytes, &d->kv.k[l], err);
    if (!rc) rc = asu_buffer_create(m->dev, kv_bytes, &d->kv.v[l], err);
  }
  if (!rc) rc = asu_acts_create(m, prompt, 0, &d->acts, err);
  if (!rc) rc = asu_buffer_create(m->dev, prompt * sizeof(int32_t), &d->ids, err);
  if (!rc) rc = asu_buffer_create(m->dev, prompt * sizeof(int32_t), &d->positions, err);
  if (!rc) rc = asu_buffer_create(m->dev, 2 * prompt * sizeof(int32_t), &d->q_ranges, err);
  if (!rc) rc = asu_cmd_begin(m->dev, &d->cmd, err);
  return rc;
}

/* Runs n new tokens after the cached ones and downloads the last row's logits. */
static int decoder_step(decoder *d, const int32_t *ids, uint32_t n, asu_error *err) {
  for (uint32_t i = 0; i < n; i++) {
    d->host_positions[i] = (int32_t)(d->kv.used + i);
    d->host_ranges[2 * i] = 0;
    d->host_ranges[2 * i + 1] = (int32_t)(d->kv.used + i);
  }
  int rc = asu_buffer_upload(d->ids, 0, ids, n * sizeof *ids, err);
  if (!rc) rc = asu_buffer_upload(d->positions, 0, d->host_positions, n * sizeof(int32_t), err);
  if (!rc) rc = asu_buffer_upload(d->q_ranges, 0, d->host_ranges, 2 * n * sizeof(int32_t), err);
  if (rc) return rc;
  asu_forward_args fwd = {
      .ids = d->ids, .positions = d->positions, .q_ranges = d->q_ranges, .rows = n,
      .layer_scale = d->scales, .kv = &d->kv, .logits_rows = 1,
  };
  asu_forward_record(d->cmd, d->m, &fwd, d->acts);
  rc = asu_cmd_submit(d->cmd, err);
  if (!rc) rc = asu_buffer_download(d->acts->logits, 0, d->logits,
                                    d->m->cfg.vocab * sizeof(float), err);
  if (!rc) d->kv.used += n;
  return rc;
}

static int32_t argmax(const float *x, uint32_t n) {
  uint32_t best = 0;
  for (uint32_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return (int32_t)best;
}

/* n prefills of the whole prompt from an empty cache. */
static int run_prefill(void *ctx, uint32_t n, double *seconds, asu_error *err) {
  decoder *d = ctx;
  double start = bench_now();
  int rc = ASU_OK;
  for (uint32_t i = 0; i < n && !rc; i++) {
    d->kv.used = 0;
    rc = decoder_step(d, d->host_ids, d->prompt, err);
  }
  *seconds = bench_now() - start;
  return rc;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Greedy decoding after a prefill; the median of the timed steps after the first. */
static int time_decode(decoder *d, uint32_t tokens, double *seconds, asu_error *err) {
  double *steps = calloc(tokens + 1, sizeof *steps);
  if (!steps) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  d->kv.used = 0;
  int rc = decoder_step(d, d->host_ids, d->prompt, err);
  for (uint32_t i = 0; i <= tokens && !rc; i++) {
    int32_t next = argmax(d->logits, d->m->cfg.vocab);
    double start = bench_now();
    rc = decoder_step(d, &next, 1, err);
    steps[i] = bench_now() - start;
  }
  if (!rc) {
    qsort(steps + 1, tokens, sizeof *steps, compare_doubles);
    *seconds = tokens % 2 ? steps[1 + tokens / 2]
                          : (steps[tokens / 2] + steps[1 + tokens / 2]) / 2;
  }
  free(steps);
  return rc;
}

int bench_decode_times(const bench_options *o, asu_model *m, double *prefill_seconds,
                       double *token_seconds, asu_error *err) {
  uint32_t prompt = o->prompt_tokens, tokens = o->decode_tokens;
  if ((uint64_t)prompt + tokens + 1 > m->cfg.context_length)
    return asu_error_set(err, ASU_ERR_LIMIT, "a prompt of %u tokens plus %u decoded tokens does "
                         "not fit the model's context of %u", prompt, tokens,
                         m->cfg.context_length);
  decoder d;
  int rc = decoder_init(&d, m, prompt, prompt + tokens + 1, err);
  if (!rc) rc = bench_median(o, run_prefill, &d, prefill_seconds, err);
  if (!rc) rc = time_decode(&d, tokens, token_seconds, err);
  decoder_free(&d);
  return rc;
}
