/* Mean answer NLL of a fixed set of examples, for held-out measurements during training. */
#include <math.h>
#include <stdlib.h>

#include "train_internal.h"

struct asu_evaluator {
  asu_model *m;
  asu_batch *batch;
  asu_acts *acts;
  asu_buffer *weights, *loss, *dlogits;
  float *loss_host;
  float *scales;
  asu_cmd *cmd;
};

int asu_evaluator_create(asu_model *m, const asu_token_set *set, uint32_t lora_rank,
                         asu_evaluator **out, asu_error *err) {
  *out = NULL;
  asu_evaluator *e = calloc(1, sizeof *e);
  if (!e) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  e->m = m;
  int rc = asu_batch_create(m, set->items, set->count, &e->batch, err);
  uint32_t rows = rc ? 0 : e->batch->rows;
  float *w = rc ? NULL : malloc((size_t)rows * sizeof *w);
  e->loss_host = rc ? NULL : malloc((size_t)rows * sizeof *e->loss_host);
  e->scales = malloc(m->cfg.n_layers * sizeof *e->scales);
  if (!rc && (!w || !e->loss_host || !e->scales))
    rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) {
    /* Every answer token counts once, whichever example it is in. */
    for (uint32_t r = 0; r < rows; r++) w[r] = 0.0f;
    uint32_t tokens = 0;
    for (uint32_t x = 0; x < e->batch->n_examples; x++)
      tokens += e->batch->example_begin[x + 1] - e->batch->answer_begin[x];
    for (uint32_t x = 0; x < e->batch->n_examples; x++)
      for (uint32_t r = e->batch->answer_begin[x] - 1; r + 1 < e->batch->example_begin[x + 1]; r++)
        w[r] = 1.0f / (float)(tokens ? tokens : 1);
    asu_layer_scales(m, 1.0f, 0, e->scales);
    rc = asu_upload_floats(m->dev, w, rows, &e->weights, err);
  }
  if (!rc) rc = asu_acts_create_shared(m, rows, lora_rank, &e->acts, err);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)rows * sizeof(float), &e->loss, err);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)rows * m->cfg.vocab * sizeof(float),
                                  &e->dlogits, err);
  if (!rc) rc = asu_cmd_begin(m->dev, &e->cmd, err);
  free(w);
  if (rc) {
    asu_evaluator_destroy(e);
    return rc;
  }
  *out = e;
  return ASU_OK;
}

int asu_evaluator_nll(asu_evaluator *e, const asu_lora *lora, double *nll, asu_error *err) {
  asu_batch *b = e->batch;
  asu_forward_args fwd = {
      .lora = lora, .ids = b->ids_buf, .positions = b->positions_buf,
      .q_ranges = b->q_ranges_buf, .rows = b->rows, .layer_scale = e->scales,
  };
  asu_forward_record(e->cmd, e->m, &fwd, e->acts);
  asu_op_cross_entropy(e->cmd, e->acts->logits, b->targets_buf, e->weights, e->loss, e->dlogits,
                       0, b->rows, e->m->cfg.vocab);
  int rc = asu_cmd_submit(e->cmd, err);
  if (!rc) rc = asu_buffer_download(e->loss, 0, e->loss_host, b->rows * sizeof(float), err);
  if (rc) return rc;
  *nll = asu_sum_rows(b, 0, b->n_examples, e->loss_host);
  return ASU_OK;
}

void asu_evaluator_destroy(asu_evaluator *e) {
  if (!e) return;
  asu_cmd_destroy(e->cmd);
  asu_batch_destroy(e->batch);
  asu_acts_destroy(e->acts);
  asu_buffer_destroy(e->weights);
  asu_buffer_destroy(e->loss);
  asu_buffer_destroy(e->dlogits);
  free(e->loss_host);
  free(e->scales);
  free(e);
}
