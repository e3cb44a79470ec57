/* Prefill and decode times: the forward pass with a key/value cache, as asu_generate runs it
   (upload the new rows, one command, download the last row's logits), on random token ids. */
#include <stdlib.h>

#include "bench.h"
#include "model_internal.h"

/* The shared decoder plus the random prompt it is timed on. */
typedef struct decoder {
  asu_decoder dec;
  int32_t *host_ids;
  uint32_t prompt;
} decoder;

static void decoder_free(decoder *d) {
  asu_decoder_free(&d->dec);
  free(d->host_ids);
}

static int decoder_init(decoder *d, asu_model *m, uint32_t prompt, uint32_t capacity,
                        asu_error *err) {
  *d = (decoder){.prompt = prompt};
  d->host_ids = malloc(prompt * sizeof *d->host_ids);
  if (!d->host_ids) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  uint64_t state = 7;
  for (uint32_t i = 0; i < prompt; i++) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    d->host_ids[i] = i == 0 ? 1 : (int32_t)(3 + (state >> 33) % (m->cfg.vocab - 3));
  }
  return asu_decoder_init(&d->dec, m, capacity, prompt, 0, err);
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
    d->dec.kv.used = 0;
    rc = asu_decoder_step(&d->dec, NULL, d->host_ids, d->prompt, err);
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
  d->dec.kv.used = 0;
  int rc = asu_decoder_step(&d->dec, NULL, d->host_ids, d->prompt, err);
  for (uint32_t i = 0; i <= tokens && !rc; i++) {
    int32_t next = argmax(d->dec.logits, d->dec.m->cfg.vocab);
    double start = bench_now();
    rc = asu_decoder_step(&d->dec, NULL, &next, 1, err);
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
