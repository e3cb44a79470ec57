/* One ASU training step as asu_unlearn runs it, on random token ids: half the examples are forget
   examples (KL to the teacher), half retain examples (NLL), a LoRA adapter of rank 8 on every
   projection, AdamW. The teacher (the frozen model with attention at tau = 3) runs once per
   job, so it is timed on its own. */
#include <stdlib.h>

#include "bench.h"
#include "train_internal.h"

typedef struct trainer {
  asu_model *m;
  uint32_t n_forget, forget_rows;
  asu_tokens *examples;
  asu_batch *batch;
  asu_acts *acts;
  asu_backward_scratch *scratch;
  asu_lora *lora;
  asu_grads *grads;
  asu_adam adam;
  asu_buffer *teacher_logp, *dlogits, *loss, *weights;
  float *student_scales, *teacher_scales, *loss_host;
  asu_cmd *cmd;
} trainer;

enum { LORA_RANK = 8 };

static void trainer_free(trainer *t, uint32_t n_examples) {
  asu_cmd_destroy(t->cmd);
  asu_adam_free(&t->adam);
  asu_grads_destroy(t->grads);
  asu_lora_destroy(t->lora);
  asu_backward_scratch_destroy(t->scratch);
  asu_acts_destroy(t->acts);
  asu_batch_destroy(t->batch);
  asu_buffer *all[] = {t->teacher_logp, t->dlogits, t->loss, t->weights};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) asu_buffer_destroy(all[i]);
  for (uint32_t e = 0; t->examples && e < n_examples; e++) free(t->examples[e].ids);
  free(t->examples);
  free(t->student_scales);
  free(t->teacher_scales);
  free(t->loss_host);
}

/* Examples of `tokens` random ids after BOS; the second half of each is its answer. */
static int make_batch(trainer *t, uint32_t n, uint32_t tokens, asu_error *err) {
  uint32_t vocab = t->m->cfg.vocab;
  t->examples = calloc(n, sizeof *t->examples);
  if (!t->examples) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  uint64_t state = 11;
  for (uint32_t e = 0; e < n; e++) {
    int32_t *ids = malloc(tokens * sizeof *ids);
    if (!ids) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < tokens; i++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      ids[i] = i == 0 ? 1 : (int32_t)(3 + (state >> 33) % (vocab - 3));
    }
    t->examples[e] = (asu_tokens){.ids = ids, .n = tokens, .answer_begin = tokens / 2};
  }
  return asu_batch_create(t->m, t->examples, n, &t->batch, err);
}

static int make_weights(trainer *t, asu_error *err) {
  asu_batch *b = t->batch;
  float *w = malloc(b->rows * sizeof *w);
  if (!w) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  asu_answer_weights(b, 0, t->n_forget, 1.0f, w);
  asu_answer_weights(b, t->n_forget, b->n_examples - t->n_forget, 1.0f, w);
  int rc = asu_upload_floats(t->m->dev, w, b->rows, &t->weights, err);
  free(w);
  return rc;
}

static int add_adapter(trainer *t, asu_error *err) {
  asu_model *m = t->m;
  int rc = asu_lora_create(m, LORA_RANK, 16.0f, ASU_LORA_ALL, 0, &t->lora, err);
  if (!rc) rc = asu_grads_create_lora(t->lora, &t->grads, err);
  t->adam = (asu_adam){.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
  for (uint32_t l = 0; l < m->cfg.n_layers && !rc; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      asu_lora_pair *pair = &t->lora->pairs[l][p], *grad = &t->grads->lora[l][p];
      rc = asu_adam_add(m->dev, &t->adam, pair->a, grad->a, LORA_RANK * pair->in, err);
      if (!rc) rc = asu_adam_add(m->dev, &t->adam, pair->b, grad->b, pair->out * LORA_RANK, err);
    }
  return rc;
}

static int trainer_init(trainer *t, const bench_options *o, asu_error *err) {
  asu_model *m = t->m;
  uint32_t layers = m->cfg.n_layers;
  t->n_forget = o->train_examples > 1 ? o->train_examples / 2 : 1;
  t->student_scales = malloc(layers * sizeof(float));
  t->teacher_scales = malloc(layers * sizeof(float));
  if (!t->student_scales || !t->teacher_scales)
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  asu_layer_scales(m, 1.0f, 0, t->student_scales);
  asu_layer_scales(m, 3.0f, 0, t->teacher_scales);
  int rc = make_batch(t, o->train_examples, o->train_tokens, err);
  if (rc) return rc;
  uint32_t rows = t->batch->rows;
  size_t logits_bytes = (size_t)rows * m->cfg.vocab * sizeof(float);
  t->forget_rows = t->batch->example_begin[t->n_forget];
  if (!(t->loss_host = malloc(rows * sizeof(float))))
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  rc = make_weights(t, err);
  if (!rc) rc = asu_buffer_create(m->dev, logits_bytes, &t->teacher_logp, err);
  if (!rc) rc = asu_buffer_create(m->dev, logits_bytes, &t->dlogits, err);
  if (!rc) rc = asu_buffer_create(m->dev, rows * sizeof(float), &t->loss, err);
  if (!rc) rc = asu_acts_create(m, rows, LORA_RANK, &t->acts, err);
  if (!rc) rc = asu_backward_scratch_create(m, rows, LORA_RANK, &t->scratch, err);
  if (!rc) rc = add_adapter(t, err);
  if (!rc) rc = asu_cmd_begin(m->dev, &t->cmd, err);
  return rc;
}

static asu_forward_args forward_args(const trainer *t, const float *scales, const asu_lora *l) {
  const asu_batch *b = t->batch;
  return (asu_forward_args){.lora = l, .ids = b->ids_buf, .positions = b->positions_buf,
                            .q_ranges = b->q_ranges_buf, .rows = b->rows, .layer_scale = scales};
}

/* n teacher passes: the frozen model at tau on every row, log-softmax of the forget rows. */
static int record_teacher(void *ctx, asu_cmd *cmd, uint32_t n) {
  trainer *t = ctx;
  asu_forward_args fwd = forward_args(t, t->teacher_scales, NULL);
  int rc = ASU_OK;
  for (uint32_t i = 0; i < n && !rc; i++) {
    rc = asu_forward_record(cmd, t->m, &fwd, t->acts);
    if (!rc) rc = asu_op_log_softmax(cmd, t->acts->logits, t->teacher_logp, 0, t->forget_rows,
                                     t->m->cfg.vocab);
  }
  return rc;
}

/* One step: zero the gradients, student forward, both losses fused with their gradient,
   backward, AdamW; then the host reads the per-row losses as the trainer does. */
static int train_step(trainer *t, asu_error *err) {
  asu_batch *b = t->batch;
  uint32_t vocab = t->m->cfg.vocab;
  asu_forward_args fwd = forward_args(t, t->student_scales, t->lora);
  asu_grads_zero(t->cmd, t->grads);
  asu_forward_record(t->cmd, t->m, &fwd, t->acts);
  asu_op_kl(t->cmd, t->teacher_logp, t->acts->logits, t->weights, t->loss, t->dlogits, 0,
            t->forget_rows, vocab);
  if (t->forget_rows < b->rows)
    asu_op_cross_entropy(t->cmd, t->acts->logits, b->targets_buf, t->weights, t->loss,
                         t->dlogits, t->forget_rows, b->rows, vocab);
  asu_backward_record(t->cmd, t->m, t->lora, b, t->student_scales, t->acts, t->dlogits,
                      t->scratch, t->grads);
  asu_adam_record(t->cmd, &t->adam);
  int rc = asu_cmd_submit(t->cmd, err);
  if (!rc) rc = asu_buffer_download(t->loss, 0, t->loss_host, b->rows * sizeof(float), err);
  return rc;
}

static int run_steps(void *ctx, uint32_t n, double *seconds, asu_error *err) {
  double start = bench_now();
  int rc = ASU_OK;
  for (uint32_t i = 0; i < n && !rc; i++) rc = train_step(ctx, err);
  *seconds = bench_now() - start;
  return rc;
}

int bench_train_times(const bench_options *o, asu_model *m, uint32_t *rows,
                      double *teacher_seconds, double *step_seconds, asu_error *err) {
  trainer t = {.m = m};
  int rc = trainer_init(&t, o, err);
  if (!rc) rc = bench_median_cmd(o, m->dev, record_teacher, &t, teacher_seconds, err);
  if (!rc) rc = bench_median(o, run_steps, &t, step_seconds, err);
  if (!rc) *rows = t.batch->rows;
  trainer_free(&t, o->train_examples);
  return rc;
}
