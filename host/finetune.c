/* Full-weight fine-tuning on answer NLL, and saving the trained weights as GGUF. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

void asu_finetune_defaults(asu_finetune_config *cfg) {
  *cfg = (asu_finetune_config){
      .steps = 300,
      .learning_rate = 3e-3f,
      .weight_decay = 0.0f,
      .beta1 = 0.9f,
      .beta2 = 0.999f,
      .adam_eps = 1e-8f,
      .prompt_template = NULL,
  };
}

typedef struct finetune_run {
  asu_model *m;
  asu_token_set tokens;
  asu_batch *batch;
  asu_acts *acts;
  asu_backward_scratch *scratch;
  asu_grads *grads;
  asu_adam adam;
  asu_buffer *weights, *loss, *dlogits;
  float *loss_host, *scales;
  asu_cmd *cmd;
} finetune_run;

static void run_free(finetune_run *r) {
  asu_cmd_destroy(r->cmd);
  asu_adam_free(&r->adam);
  asu_grads_destroy(r->grads);
  asu_backward_scratch_destroy(r->scratch);
  asu_acts_destroy(r->acts);
  asu_batch_destroy(r->batch);
  asu_buffer_destroy(r->weights);
  asu_buffer_destroy(r->loss);
  asu_buffer_destroy(r->dlogits);
  free(r->loss_host);
  free(r->scales);
  asu_token_set_free(&r->tokens);
}

static int add_weight(finetune_run *r, asu_weight *w, asu_weight *g, asu_error *err) {
  return asu_adam_add(r->m->dev, &r->adam, w->buf, g->buf, w->rows * w->cols, err);
}

/* Every weight is a parameter. A tied output matrix is the embedding: its two gradients are
   summed into the embedding's before each update. */
static int add_parameters(finetune_run *r, const asu_finetune_config *cfg, asu_error *err) {
  asu_model *m = r->m;
  r->adam = (asu_adam){.lr = cfg->learning_rate, .beta1 = cfg->beta1, .beta2 = cfg->beta2,
                       .eps = cfg->adam_eps, .weight_decay = cfg->weight_decay};
  int rc = add_weight(r, &m->tok_embd, &r->grads->tok_embd, err);
  if (!rc) rc = add_weight(r, &m->output_norm, &r->grads->output_norm, err);
  if (!rc && !m->tied_output) rc = add_weight(r, &m->output, &r->grads->output, err);
  for (uint32_t l = 0; l < m->cfg.n_layers && !rc; l++)
    for (int w = 0; w < ASU_W_PER_LAYER && !rc; w++)
      rc = add_weight(r, &m->layers[l][w], &r->grads->layers[l][w], err);
  return rc;
}

static int prepare(finetune_run *r, const asu_finetune_config *cfg, asu_error *err) {
  asu_model *m = r->m;
  uint32_t rows = r->batch->rows;
  float *w = malloc((size_t)rows * sizeof *w);
  r->loss_host = malloc((size_t)rows * sizeof *r->loss_host);
  r->scales = malloc(m->cfg.n_layers * sizeof *r->scales);
  if (!w || !r->loss_host || !r->scales) {
    free(w);
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  asu_layer_scales(m, 1.0f, 0, r->scales);
  asu_answer_weights(r->batch, 0, r->batch->n_examples, 1.0f, w);
  int rc = asu_upload_floats(m->dev, w, rows, &r->weights, err);
  free(w);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)rows * sizeof(float), &r->loss, err);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)rows * m->cfg.vocab * sizeof(float),
                                  &r->dlogits, err);
  if (!rc) rc = asu_acts_create(m, rows, 0, &r->acts, err);
  if (!rc) rc = asu_backward_scratch_create(m, rows, 0, &r->scratch, err);
  if (!rc) rc = asu_grads_create_full(m, &r->grads, err);
  if (!rc) rc = add_parameters(r, cfg, err);
  if (!rc) rc = asu_cmd_begin(m->dev, &r->cmd, err);
  return rc;
}

static void record_step(finetune_run *r, bool update) {
  asu_model *m = r->m;
  asu_batch *b = r->batch;
  if (update) asu_grads_zero(r->cmd, r->grads);
  asu_forward_args fwd = {
      .ids = b->ids_buf, .positions = b->positions_buf, .q_ranges = b->q_ranges_buf,
      .rows = b->rows, .layer_scale = r->scales,
  };
  asu_forward_record(r->cmd, m, &fwd, r->acts);
  asu_op_cross_entropy(r->cmd, r->acts->logits, b->targets_buf, r->weights, r->loss, r->dlogits,
                       0, b->rows, m->cfg.vocab);
  if (!update) return;
  asu_backward_record(r->cmd, m, NULL, b, r->scales, r->acts, r->dlogits, r->scratch, r->grads);
  if (m->tied_output)
    asu_op_axpy(r->cmd, 1.0f, r->grads->output.buf, r->grads->tok_embd.buf,
                m->tok_embd.rows * m->tok_embd.cols);
  asu_adam_record(r->cmd, &r->adam);
}

int asu_finetune(asu_model *m, const asu_finetune_config *cfg, const asu_dataset *data,
                 asu_progress_fn on_progress, void *user, asu_error *err) {
  if (cfg->steps == 0 || cfg->steps > 1000000 || !(cfg->learning_rate > 0.0f))
    return asu_error_set(err, ASU_ERR_INVALID, "steps must be in 1..1000000 and the learning "
                         "rate positive; got %u steps at %g", cfg->steps, cfg->learning_rate);
  if (!data || data->count == 0)
    return asu_error_set(err, ASU_ERR_INVALID, "the fine-tuning data set is empty");
  finetune_run r = {.m = m};
  /* Training updates every weight in place, in F32. */
  int rc = asu_model_widen_weights(m, err);
  if (!rc) rc = asu_token_set_add(m, cfg->prompt_template, data, &r.tokens, err);
  if (!rc) rc = asu_batch_create(m, r.tokens.items, r.tokens.count, &r.batch, err);
  if (!rc) rc = prepare(&r, cfg, err);
  asu_progress p = {.total_steps = cfg->steps, .forget = NAN, .heldout_nll = NAN};
  for (uint32_t step = 0; !rc && step <= cfg->steps; step++) {
    record_step(&r, step < cfg->steps);
    rc = asu_cmd_submit(r.cmd, err);
    if (!rc) rc = asu_buffer_download(r.loss, 0, r.loss_host, r.batch->rows * sizeof(float), err);
    if (rc) break;
    p.step = step;
    p.loss = p.retain = asu_sum_rows(r.batch, 0, r.batch->n_examples, r.loss_host);
    if (!isfinite(p.loss))
      rc = asu_error_set(err, ASU_ERR_INTERNAL, "the loss became %g at step %u; lower the "
                         "learning rate", p.loss, step);
    else if (on_progress && on_progress(user, &p))
      rc = asu_error_set(err, ASU_ERR_CANCELLED, "cancelled at step %u", step);
  }
  run_free(&r);
  return rc;
}

static void describe(const asu_weight *w, const float *data, asu_gguf_out_tensor *t) {
  *t = (asu_gguf_out_tensor){.name = w->name, .data = data};
  t->n_dims = w->rows == 1 ? 1 : 2;
  t->dims[0] = w->cols;
  t->dims[1] = w->rows;
}

int asu_model_save(const asu_model *m, const char *path, asu_error *err) {
  size_t cap = 3 + (size_t)m->cfg.n_layers * ASU_W_PER_LAYER, n = 0;
  const asu_weight **weights = calloc(cap, sizeof *weights);
  asu_gguf_out_tensor *tensors = calloc(cap, sizeof *tensors);
  float **data = calloc(cap, sizeof *data);
  int rc = weights && tensors && data ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) {
    weights[n++] = &m->tok_embd;
    weights[n++] = &m->output_norm;
    if (!m->tied_output) weights[n++] = &m->output;
    for (uint32_t l = 0; l < m->cfg.n_layers; l++)
      for (int w = 0; w < ASU_W_PER_LAYER; w++) weights[n++] = &m->layers[l][w];
  }
  for (size_t i = 0; i < n && !rc; i++) {
    rc = asu_weight_download(weights[i], &data[i], err);
    if (!rc) describe(weights[i], data[i], &tensors[i]);
  }
  if (!rc) rc = asu_gguf_write(path, m->gguf, tensors, n, err);
  for (size_t i = 0; data && i < n; i++) free(data[i]);
  free(data);
  free(tensors);
  free(weights);
  if (rc) asu_error_wrap(err, "saving model to '%s': ", path);
  return rc;
}
