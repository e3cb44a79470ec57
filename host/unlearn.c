/* ASU unlearning: a LoRA adapter trained so that, on the forget set's answers, the model matches
   itself with smoothed attention (the teacher), while it keeps the retain set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_log.h"
#include "checkpoint.h"
#include "unlearn_internal.h"

/* Defaults that forget on the shared 260K-parameter model in a few hundred full-batch steps. */
void asu_unlearn_defaults(asu_unlearn_config *cfg) {
  *cfg = (asu_unlearn_config){
      .method = ASU_METHOD_ASU_GD,
      .tau = 3.0f,
      .tau_layers = 0,
      .lora_rank = 8,
      .lora_alpha = 16.0f,
      .lora_targets = ASU_LORA_ALL,
      .learning_rate = 3e-3f,
      .weight_decay = 0.0f,
      .beta1 = 0.9f,
      .beta2 = 0.999f,
      .adam_eps = 1e-8f,
      .steps = 300,
      .forget_weight = 1.0f,
      .retain_weight = 1.0f,
      .seed = 0,
      .prompt_template = NULL,
  };
}

static int check_config(const asu_unlearn_config *c, asu_error *err) {
  if ((unsigned)c->method >= ASU_METHOD_COUNT)
    return asu_error_set(err, ASU_ERR_INVALID, "method %d is not one of asu_gd, asu_kl, ga, gd, "
                         "npo, simnpo, idk_nll and me_gd", (int)c->method);
  if (!(c->beta >= 0.0f) || !isfinite(c->beta) || !isfinite(c->gamma))
    return asu_error_set(err, ASU_ERR_INVALID, "beta must be finite and >= 0 and gamma finite, "
                         "got %g and %g", c->beta, c->gamma);
  if (!(c->tau > 0.0f) || !isfinite(c->tau))
    return asu_error_set(err, ASU_ERR_INVALID, "tau must be a positive number, got %g", c->tau);
  if (!(c->learning_rate > 0.0f) || !isfinite(c->learning_rate))
    return asu_error_set(err, ASU_ERR_INVALID, "learning rate must be positive, got %g",
                         c->learning_rate);
  if (c->steps == 0 || c->steps > 1000000)
    return asu_error_set(err, ASU_ERR_INVALID, "steps must be in 1..1000000, got %u", c->steps);
  if (!(c->forget_weight >= 0.0f) || !(c->retain_weight >= 0.0f))
    return asu_error_set(err, ASU_ERR_INVALID, "loss weights must be non-negative, got forget "
                         "%g and retain %g", c->forget_weight, c->retain_weight);
  if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f) ||
      !(c->adam_eps > 0.0f) || !(c->weight_decay >= 0.0f))
    return asu_error_set(err, ASU_ERR_INVALID, "AdamW settings out of range: beta1 %g, beta2 %g, "
                         "eps %g, weight decay %g", c->beta1, c->beta2, c->adam_eps,
                         c->weight_decay);
  return ASU_OK;
}


static void run_free(unlearn_run *r) {
  asu_cmd_destroy(r->cmd);
  asu_evaluator_destroy(r->heldout);
  asu_adam_free(&r->adam);
  asu_grads_destroy(r->grads);
  asu_backward_scratch_destroy(r->scratch);
  asu_acts_destroy(r->acts);
  asu_batch_destroy(r->batch);
  asu_buffer_destroy(r->teacher_logp);
  asu_buffer_destroy(r->dlogits);
  asu_buffer_destroy(r->loss);
  asu_buffer_destroy(r->weights);
  free(r->loss_host);
  free(r->weights_host);
  free(r->reference_nll);
  free(r->student_scales);
  free(r->teacher_scales);
}


static int prepare_buffers(unlearn_run *r, asu_error *err) {
  asu_model *m = r->m;
  const asu_unlearn_config *c = r->cfg;
  uint32_t rows = r->batch->rows, vocab = m->cfg.vocab;
  r->forget_rows = r->batch->example_begin[r->n_forget];
  float *w = malloc((size_t)rows * sizeof *w);
  r->loss_host = malloc((size_t)rows * sizeof *r->loss_host);
  r->student_scales = malloc(m->cfg.n_layers * sizeof(float));
  r->teacher_scales = malloc(m->cfg.n_layers * sizeof(float));
  if (!w || !r->loss_host || !r->student_scales || !r->teacher_scales) {
    free(w);
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  asu_layer_scales(m, 1.0f, 0, r->student_scales);
  asu_layer_scales(m, c->tau, c->tau_layers, r->teacher_scales);
  asu_answer_weights(r->batch, 0, r->n_forget,
                     asu_method_forget_sign(c->method) * asu_measured_weight(c->forget_weight), w);
  if (r->n_retain)
    asu_answer_weights(r->batch, r->n_forget, r->n_retain, asu_measured_weight(c->retain_weight), w);
  int rc = asu_upload_floats(m->dev, w, rows, &r->weights, err);
  r->weights_host = w;
  size_t logits_bytes = (size_t)rows * vocab * sizeof(float);
  if (!rc) rc = asu_buffer_create(m->dev, logits_bytes, &r->teacher_logp, err);
  if (!rc) rc = asu_buffer_create(m->dev, logits_bytes, &r->dlogits, err);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)rows * sizeof(float), &r->loss, err);
  uint32_t rank = c->start ? c->start->rank : c->lora_rank;
  if (!rc) rc = asu_acts_create(m, rows, rank, &r->acts, err);
  if (!rc) rc = asu_backward_scratch_create(m, rows, rank, &r->scratch, err);
  if (!rc) rc = c->start ? asu_lora_copy(m, c->start, &r->lora, err)
                         : asu_lora_create(m, rank, c->lora_alpha, c->lora_targets, c->seed,
                                           &r->lora, err);
  if (!rc) rc = asu_grads_create_lora(r->lora, &r->grads, err);
  r->adam = (asu_adam){.lr = c->learning_rate, .beta1 = c->beta1, .beta2 = c->beta2,
                       .eps = c->adam_eps, .weight_decay = c->weight_decay};
  for (uint32_t l = 0; l < m->cfg.n_layers && !rc; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      asu_lora_pair *pair = &r->lora->pairs[l][p], *grad = &r->grads->lora[l][p];
      if (!pair->a) continue;
      rc = asu_adam_add(m->dev, &r->adam, pair->a, grad->a, rank * pair->in, err);
      if (!rc) rc = asu_adam_add(m->dev, &r->adam, pair->b, grad->b, pair->out * rank, err);
    }
  if (!rc) rc = asu_cmd_begin(m->dev, &r->cmd, err);
  if (!rc) asu_cmd_set_flush_every(r->cmd, c->dispatches_per_submit);
  return rc;
}

/* The teacher's log-probabilities: the frozen model with smoothed attention on forget rows and,
   for asu_kl, the frozen model itself on retain rows. Computed once, since neither changes. */
static int compute_teacher(unlearn_run *r, asu_error *err) {
  if (r->cfg->method != ASU_METHOD_ASU_GD && r->cfg->method != ASU_METHOD_ASU_KL)
    return asu_unlearn_prepare_method(r, err);
  asu_batch *b = r->batch;
  uint32_t vocab = r->m->cfg.vocab;
  asu_forward_args fwd = {
      .lora = r->cfg->start, .ids = b->ids_buf, .positions = b->positions_buf,
      .q_ranges = b->q_ranges_buf, .rows = b->rows, .layer_scale = r->teacher_scales,
  };
  asu_forward_record(r->cmd, r->m, &fwd, r->acts);
  asu_op_log_softmax(r->cmd, r->acts->logits, r->teacher_logp, 0, r->forget_rows, vocab);
  if (r->cfg->method == ASU_METHOD_ASU_KL && r->n_retain) {
    fwd.layer_scale = r->student_scales;
    asu_forward_record(r->cmd, r->m, &fwd, r->acts);
    asu_op_log_softmax(r->cmd, r->acts->logits, r->teacher_logp, r->forget_rows, b->rows, vocab);
  }
  return asu_cmd_submit(r->cmd, err);
}

/* Records the student's forward pass (unless forward_done) and both loss terms with their
   gradient in dlogits. */
static void record_losses(unlearn_run *r, bool forward_done) {
  asu_batch *b = r->batch;
  uint32_t vocab = r->m->cfg.vocab;
  size_t row_bytes = (size_t)vocab * sizeof(float);
  asu_forward_args fwd = {
      .lora = r->lora, .ids = b->ids_buf, .positions = b->positions_buf,
      .q_ranges = b->q_ranges_buf, .rows = b->rows, .layer_scale = r->student_scales,
  };
  if (!forward_done) asu_forward_record(r->cmd, r->m, &fwd, r->acts);
  if (asu_method_uses_teacher(r->cfg->method))
    asu_op_kl(r->cmd, r->teacher_logp, r->acts->logits, r->weights, r->loss, r->dlogits, 0,
              r->forget_rows, vocab);
  else
    asu_op_cross_entropy(r->cmd, r->acts->logits, b->targets_buf, r->weights, r->loss,
                         r->dlogits, 0, r->forget_rows, vocab);
  if (r->cfg->forget_weight == 0.0f)
    asu_cmd_fill(r->cmd, r->dlogits, 0, r->forget_rows * row_bytes, 0);
  if (!r->n_retain) return;
  if (r->cfg->method != ASU_METHOD_ASU_KL)
    asu_op_cross_entropy(r->cmd, r->acts->logits, b->targets_buf, r->weights, r->loss,
                         r->dlogits, r->forget_rows, b->rows, vocab);
  else
    asu_op_kl(r->cmd, r->teacher_logp, r->acts->logits, r->weights, r->loss, r->dlogits,
              r->forget_rows, b->rows, vocab);
  if (r->cfg->retain_weight == 0.0f)
    asu_cmd_fill(r->cmd, r->dlogits, r->forget_rows * row_bytes,
                 (b->rows - r->forget_rows) * row_bytes, 0);
}

static int read_terms(unlearn_run *r, asu_progress *p, asu_error *err) {
  int rc = asu_buffer_download(r->loss, 0, r->loss_host, r->batch->rows * sizeof(float), err);
  if (rc) return rc;
  const asu_unlearn_config *c = r->cfg;
  p->forget = asu_sum_rows(r->batch, 0, r->n_forget, r->loss_host) /
              asu_measured_weight(c->forget_weight);
  p->retain = r->n_retain ? asu_sum_rows(r->batch, r->n_forget, r->n_retain, r->loss_host) /
                                asu_measured_weight(c->retain_weight)
                          : 0.0;
  p->loss = c->forget_weight * p->forget + c->retain_weight * p->retain;
  return ASU_OK;
}

/* The settings and data sizes that a checkpoint must match to be resumed. */
static void fingerprint(const unlearn_run *r, char *out, size_t size) {
  const asu_unlearn_config *c = r->cfg;
  snprintf(out, size, "asu-unlearn method %d tau %a layers %llx rank %u alpha %a targets %x "
           "lr %a wd %a betas %a %a eps %a steps %u weights %a %a seed %llu examples %u+%u "
           "rows %u beta %a gamma %a start %d", (int)c->method, c->tau, (unsigned long long)c->tau_layers,
           c->lora_rank, c->lora_alpha, c->lora_targets, c->learning_rate, c->weight_decay,
           c->beta1, c->beta2, c->adam_eps, c->steps, c->forget_weight, c->retain_weight,
           (unsigned long long)c->seed, r->n_forget, r->n_retain, r->batch->rows, c->beta,
           c->gamma, c->start != NULL);
}

/* Restores a checkpoint when the run has a checkpoint directory holding one; *first is the
   step to start from (0 without one). */
static int resume(unlearn_run *r, uint32_t *first, double *heldout_nll, asu_error *err) {
  *first = 0;
  if (!r->cfg->checkpoint_dir) return ASU_OK;
  char print[512];
  fingerprint(r, print, sizeof print);
  asu_checkpoint_state s = {.fingerprint = print};
  int rc = asu_checkpoint_load(r->cfg->checkpoint_dir, &r->adam, &s, err);
  if (rc == ASU_ERR_NOT_FOUND) return ASU_OK;
  if (rc) return rc;
  if (s.next_step > r->cfg->steps)
    return asu_error_set(err, ASU_ERR_FORMAT, "the checkpoint in %s is at step %u, past the "
                         "run's %u steps", r->cfg->checkpoint_dir, s.next_step, r->cfg->steps);
  asu_log_info("resuming from the checkpoint at step %u in %s", s.next_step,
               r->cfg->checkpoint_dir);
  *first = s.next_step;
  *heldout_nll = s.heldout_nll;
  return ASU_OK;
}

static int save_checkpoint(unlearn_run *r, uint32_t next_step, double heldout_nll,
                           asu_error *err) {
  char print[512];
  fingerprint(r, print, sizeof print);
  asu_checkpoint_state s = {.next_step = next_step, .heldout_nll = heldout_nll,
                            .fingerprint = print};
  return asu_checkpoint_save(r->cfg->checkpoint_dir, &r->adam, &s, err);
}

static bool checkpoint_due(const asu_unlearn_config *c, uint32_t next_step) {
  return c->checkpoint_dir && c->checkpoint_every && next_step % c->checkpoint_every == 0 &&
         next_step < c->steps;
}

static bool snapshot_due(const asu_unlearn_config *c, uint32_t step) {
  return c->snapshot_dir &&
         (step == c->steps || (c->snapshot_every ? step % c->snapshot_every == 0 : step == 0));
}

static int save_snapshot(unlearn_run *r, uint32_t step, asu_error *err) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/step-%05u", r->cfg->snapshot_dir, step);
  return asu_lora_save(r->lora, dir, err);
}

static int train(unlearn_run *r, asu_progress_fn on_progress, void *user, asu_error *err) {
  uint32_t steps = r->cfg->steps, first;
  asu_progress p = {.total_steps = steps, .heldout_nll = NAN};
  int resumed = resume(r, &first, &p.heldout_nll, err);
  if (resumed) return resumed;
  for (uint32_t step = first; step <= steps; step++) {
    bool last = step == steps;
    /* Held-out NLL of the adapter as it is before this step's update, every 25 steps. */
    int rc = snapshot_due(r->cfg, step) ? save_snapshot(r, step, err) : ASU_OK;
    if (!rc && r->heldout && (step % 25 == 0 || last))
      rc = asu_evaluator_nll(r->heldout, r->lora, &p.heldout_nll, err);
    if (rc) return rc;
    double answer_term = NAN;
    bool per_answer = asu_method_per_answer(r->cfg->method);
    if (per_answer && (rc = asu_unlearn_answer_weights(r, &answer_term, err))) return rc;
    if (!last) asu_grads_zero(r->cmd, r->grads);
    record_losses(r, per_answer);
    if (!last) {
      asu_backward_record(r->cmd, r->m, r->lora, r->batch, r->student_scales, r->acts,
                          r->dlogits, r->scratch, r->grads);
      asu_adam_record(r->cmd, &r->adam);
    }
    rc = asu_cmd_submit(r->cmd, err);
    if (!rc) rc = read_terms(r, &p, err);
    if (rc) return rc;
    if (per_answer) {
      /* The rows' losses carry this step's gradient weights; the term is the answers' own. */
      p.forget = answer_term;
      p.loss = r->cfg->forget_weight * p.forget + r->cfg->retain_weight * p.retain;
    }
    /* The losses of this report were measured before this step's update. */
    p.step = step;
    if (!isfinite(p.loss))
      return asu_error_set(err, ASU_ERR_INTERNAL, "the loss became %g at step %u; lower the "
                           "learning rate", p.loss, step);
    if (on_progress && on_progress(user, &p))
      return asu_error_set(err, ASU_ERR_CANCELLED, "cancelled at step %u of %u", step, steps);
    if (!last && checkpoint_due(r->cfg, step + 1) &&
        (rc = save_checkpoint(r, step + 1, p.heldout_nll, err)))
      return rc;
  }
  return ASU_OK;
}

int asu_unlearn_tokens(asu_model *m, const asu_unlearn_config *cfg, const asu_token_set *examples,
                       uint32_t n_forget, const asu_token_set *heldout,
                       asu_progress_fn on_progress, void *user, asu_lora **out,
                       double *teacher_seconds, asu_error *err) {
  *out = NULL;
  int rc = check_config(cfg, err);
  if (rc) return rc;
  uint32_t n_layers = m->cfg.n_layers;
  if (n_layers < 64 && (cfg->tau_layers >> n_layers))
    return asu_error_set(err, ASU_ERR_INVALID, "the smoothed layers (mask 0x%llx) name a layer "
                         "past the model's last, %u", (unsigned long long)cfg->tau_layers,
                         n_layers - 1);
  if (n_forget == 0 || n_forget > examples->count)
    return asu_error_set(err, ASU_ERR_INVALID, "the forget set is empty; give at least one "
                         "example to forget");
  unlearn_run r = {.m = m, .cfg = cfg};
  r.n_forget = n_forget;
  r.n_retain = (uint32_t)examples->count - n_forget;
  rc = asu_batch_create(m, examples->items, examples->count, &r.batch, err);
  if (!rc) rc = prepare_buffers(&r, err);
  if (!rc && heldout &&
      (rc = asu_evaluator_create(m, heldout, r.lora->rank, &r.heldout, err)))
    asu_error_wrap(err, "held-out text: ");
  double teacher_start = asu_monotonic_seconds();
  if (!rc) rc = compute_teacher(&r, err);
  if (!rc && teacher_seconds) *teacher_seconds = asu_monotonic_seconds() - teacher_start;
  if (!rc) rc = train(&r, on_progress, user, err);
  if (!rc) {
    *out = r.lora;
    r.lora = NULL;
  }
  asu_lora_destroy(r.lora);
  run_free(&r);
  return rc;
}

/* The held-out text as tokens: the given data set, or the model's own greedy story. */
static int heldout_tokens(asu_model *m, const asu_unlearn_config *cfg, const asu_dataset *heldout,
                          asu_token_set *set, asu_error *err) {
  asu_dataset story = {0};
  int rc = ASU_OK;
  if (!heldout || heldout->count == 0) {
    rc = asu_base_story(m, 128, &story, err);
    heldout = &story;
  }
  if (!rc) rc = asu_token_set_add(m, cfg->prompt_template, heldout, set, err);
  asu_dataset_free(&story);
  return rc ? asu_error_wrap(err, "held-out text: ") : ASU_OK;
}

int asu_unlearn(asu_model *m, const asu_unlearn_config *cfg, const asu_dataset *forget,
                const asu_dataset *retain, const asu_dataset *heldout,
                asu_progress_fn on_progress, void *user, asu_lora **out, asu_error *err) {
  *out = NULL;
  int rc = check_config(cfg, err);
  if (rc) return rc;
  if (!forget || forget->count == 0)
    return asu_error_set(err, ASU_ERR_INVALID, "the forget set is empty; give at least one "
                         "example to forget");
  asu_token_set examples = {0}, held = {0};
  const char *tmpl = cfg->prompt_template;
  /* idk_nll learns refusals to the forget questions; ga has no retain term. */
  asu_dataset idk = {0};
  if (cfg->method == ASU_METHOD_IDK_NLL && (rc = asu_idk_dataset(forget, cfg->seed, &idk, err)))
    return rc;
  if (cfg->method == ASU_METHOD_IDK_NLL) forget = &idk;
  if (cfg->method == ASU_METHOD_GA) retain = NULL;
  rc = asu_token_set_add(m, tmpl, forget, &examples, err);
  if (rc) asu_error_wrap(err, "forget set: ");
  if (!rc && (rc = asu_token_set_add(m, tmpl, retain, &examples, err)))
    asu_error_wrap(err, "retain set: ");
  if (!rc) rc = heldout_tokens(m, cfg, heldout, &held, err);
  if (!rc)
    rc = asu_unlearn_tokens(m, cfg, &examples, (uint32_t)forget->count, &held, on_progress,
                            user, out, NULL, err);
  asu_token_set_free(&examples);
  asu_token_set_free(&held);
  asu_dataset_free(&idk);
  return rc;
}
