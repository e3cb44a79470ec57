/* The device side of generation: a key/value cache, activations and one forward pass per step. */
#include <stdlib.h>

#include "model_internal.h"

void asu_decoder_free(asu_decoder *d) {
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
  free(d->host_positions);
  free(d->host_ranges);
}

int asu_decoder_init(asu_decoder *d, asu_model *m, uint32_t capacity, uint32_t max_rows,
                     uint32_t rank, asu_error *err) {
  const asu_model_config *c = &m->cfg;
  size_t kv_bytes = (size_t)capacity * c->n_kv_head * c->head_dim * sizeof(float);
  *d = (asu_decoder){.m = m, .max_rows = max_rows, .kv.capacity = capacity};
  d->kv.k = calloc(c->n_layers, sizeof *d->kv.k);
  d->kv.v = calloc(c->n_layers, sizeof *d->kv.v);
  d->scales = malloc(c->n_layers * sizeof *d->scales);
  d->logits = malloc(c->vocab * sizeof *d->logits);
  d->host_positions = malloc(max_rows * sizeof *d->host_positions);
  d->host_ranges = malloc(2 * max_rows * sizeof *d->host_ranges);
  if (!d->kv.k || !d->kv.v || !d->scales || !d->logits || !d->host_positions || !d->host_ranges)
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  asu_layer_scales(m, 1.0f, 0, d->scales);

  int rc = ASU_OK;
  for (uint32_t l = 0; l < c->n_layers && !rc; l++) {
    rc = asu_buffer_create(m->dev, kv_bytes, &d->kv.k[l], err);
    if (!rc) rc = asu_buffer_create(m->dev, kv_bytes, &d->kv.v[l], err);
  }
  if (!rc) rc = asu_acts_create_shared(m, max_rows, rank, &d->acts, err);
  if (!rc) rc = asu_buffer_create(m->dev, max_rows * sizeof(int32_t), &d->ids, err);
  if (!rc) rc = asu_buffer_create(m->dev, max_rows * sizeof(int32_t), &d->positions, err);
  if (!rc) rc = asu_buffer_create(m->dev, 2 * max_rows * sizeof(int32_t), &d->q_ranges, err);
  if (!rc) rc = asu_cmd_begin(m->dev, &d->cmd, err);
  return rc;
}

int asu_decoder_step(asu_decoder *d, const asu_lora *lora, const int32_t *ids, uint32_t n,
                     asu_error *err) {
  if (n == 0 || n > d->max_rows)
    return asu_error_set(err, ASU_ERR_INTERNAL, "a decoder step of %u rows; the decoder holds "
                         "1 to %u", n, d->max_rows);
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
      .lora = lora, .ids = d->ids, .positions = d->positions, .q_ranges = d->q_ranges,
      .rows = n, .layer_scale = d->scales, .kv = &d->kv, .logits_rows = 1,
  };
  asu_forward_record(d->cmd, d->m, &fwd, d->acts);
  rc = asu_cmd_submit(d->cmd, err);
  if (!rc) rc = asu_buffer_download(d->acts->logits, 0, d->logits,
                                    d->m->cfg.vocab * sizeof(float), err);
  if (!rc) d->kv.used += n;
  return rc;
}
