/* The forget terms of the baseline methods beside ASU (asu_engine.h lists their formulas):
   names, the once-per-run preparation, and the per-answer weights of NPO and SimNPO. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "unlearn_internal.h"

static const char *const method_names[ASU_METHOD_COUNT] = {
    "asu_gd", "asu_kl", "ga", "gd", "npo", "simnpo", "idk_nll", "me_gd",
};

const char *asu_method_name(enum asu_method m) {
  return (unsigned)m < ASU_METHOD_COUNT ? method_names[m] : "unknown";
}

int asu_method_parse(const char *name, enum asu_method *out) {
  for (int i = 0; i < ASU_METHOD_COUNT; i++)
    if (!strcmp(name, method_names[i])) {
      *out = (enum asu_method)i;
      return 0;
    }
  return -1;
}

bool asu_method_uses_teacher(enum asu_method m) {
  return m == ASU_METHOD_ASU_GD || m == ASU_METHOD_ASU_KL || m == ASU_METHOD_ME_GD;
}

bool asu_method_per_answer(enum asu_method m) {
  return m == ASU_METHOD_NPO || m == ASU_METHOD_SIMNPO;
}

float asu_method_forget_sign(enum asu_method m) {
  return m == ASU_METHOD_GA || m == ASU_METHOD_GD ? -1.0f : 1.0f;
}

/* ---- Per-answer NLL on the device ---- */

/* Weight 1 on every row that predicts a forget answer token, 0 elsewhere, so that the
   cross-entropy rows of a forget example sum to its answer's NLL. */
static void unit_weights(const unlearn_run *r, float *w) {
  const asu_batch *b = r->batch;
  for (uint32_t i = 0; i < b->rows; i++) w[i] = 0.0f;
  for (uint32_t e = 0; e < r->n_forget; e++)
    for (uint32_t i = b->answer_begin[e] - 1; i + 1 < b->example_begin[e + 1]; i++) w[i] = 1.0f;
}

/* Summed answer NLL of each forget example under lora (NULL: the frozen model), from a forward
   pass recorded here. Leaves the logits in r->acts and r->weights holding unit weights. */
static int forget_answer_nll(unlearn_run *r, const asu_lora *lora, float *unit, double *out,
                             asu_error *err) {
  asu_batch *b = r->batch;
  unit_weights(r, unit);
  int rc = asu_buffer_upload(r->weights, 0, unit, b->rows * sizeof(float), err);
  if (rc) return rc;
  asu_forward_args fwd = {.lora = lora, .ids = b->ids_buf, .positions = b->positions_buf,
                          .q_ranges = b->q_ranges_buf, .rows = b->rows,
                          .layer_scale = r->student_scales};
  asu_forward_record(r->cmd, r->m, &fwd, r->acts);
  asu_op_cross_entropy(r->cmd, r->acts->logits, b->targets_buf, r->weights, r->loss, r->dlogits,
                       0, r->forget_rows, r->m->cfg.vocab);
  rc = asu_cmd_submit(r->cmd, err);
  if (!rc) rc = asu_buffer_download(r->loss, 0, r->loss_host, b->rows * sizeof(float), err);
  for (uint32_t e = 0; !rc && e < r->n_forget; e++) out[e] = asu_sum_rows(b, e, 1, r->loss_host);
  return rc;
}

/* ---- Preparation ---- */

int asu_unlearn_prepare_method(unlearn_run *r, asu_error *err) {
  if (r->cfg->method == ASU_METHOD_ME_GD) {
    /* The uniform distribution: log(1 / V) in every forget row. */
    float logp = -logf((float)r->m->cfg.vocab);
    uint32_t word;
    memcpy(&word, &logp, sizeof word);
    asu_cmd_fill(r->cmd, r->teacher_logp, 0,
                 (size_t)r->forget_rows * r->m->cfg.vocab * sizeof(float), word);
    return asu_cmd_submit(r->cmd, err);
  }
  if (r->cfg->method != ASU_METHOD_NPO) return ASU_OK;
  float *unit = malloc(r->batch->rows * sizeof *unit);
  r->reference_nll = malloc(r->n_forget * sizeof *r->reference_nll);
  int rc = unit && r->reference_nll ? forget_answer_nll(r, r->cfg->start, unit, r->reference_nll, err)
                                    : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  free(unit);
  return rc;
}

/* ---- NPO and SimNPO ---- */

static double softplus(double x) { return x > 30 ? x : log1p(exp(x)); }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The forget term of one answer and the weight of its rows in the cross-entropy kernel, whose
   gradient is weight * (softmax - one hot): d(term)/d(logits) = weight * (p - onehot). */
static void answer_term(const unlearn_run *r, uint32_t e, double nll, uint32_t tokens,
                        double *term, double *weight) {
  const asu_unlearn_config *c = r->cfg;
  if (c->method == ASU_METHOD_NPO) {
    double beta = c->beta > 0 ? c->beta : 0.1;
    double delta = r->reference_nll[e] - nll; /* log p_student - log p_frozen */
    *term = 2.0 / beta * softplus(beta * delta);
    *weight = -2.0 * sigmoid(beta * delta);
  } else {
    double beta = c->beta > 0 ? c->beta : 2.5;
    double mean_logp = -nll / (double)tokens;
    *term = 2.0 / beta * softplus(beta * mean_logp + c->gamma);
    *weight = -2.0 * sigmoid(beta * mean_logp + c->gamma) / (double)tokens;
  }
}

int asu_unlearn_answer_weights(unlearn_run *r, double *forget_term, asu_error *err) {
  asu_batch *b = r->batch;
  float *w = malloc(b->rows * sizeof *w);
  double *nll = malloc(r->n_forget * sizeof *nll);
  int rc = w && nll ? forget_answer_nll(r, r->lora, w, nll, err)
                    : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) {
    /* Retain rows keep their weights; forget rows get this step's, averaged over answers. */
    memcpy(w, r->weights_host, b->rows * sizeof *w);
    float coefficient = asu_measured_weight(r->cfg->forget_weight) / (float)r->n_forget;
    *forget_term = 0;
    for (uint32_t e = 0; e < r->n_forget; e++) {
      uint32_t tokens = b->example_begin[e + 1] - b->answer_begin[e];
      double term, weight;
      answer_term(r, e, nll[e], tokens, &term, &weight);
      *forget_term += term / r->n_forget;
      for (uint32_t i = b->answer_begin[e] - 1; i + 1 < b->example_begin[e + 1]; i++)
        w[i] = (float)(weight * coefficient);
    }
    rc = asu_buffer_upload(r->weights, 0, w, b->rows * sizeof(float), err);
  }
  free(w);
  free(nll);
  return rc;
}

/* ---- IdkNLL ---- */

static const char *const idk_answers[] = {
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "I can't answer that question.",
    "That is something I don't know.",
    "I'm afraid I don't have an answer to that.",
    "I don't have any details about that.",
    "Sorry, I don't know the answer.",
};

int asu_idk_dataset(const asu_dataset *forget, uint64_t seed, asu_dataset *out, asu_error *err) {
  size_t n = sizeof idk_answers / sizeof idk_answers[0];
  for (size_t i = 0; i < forget->count; i++) {
    const char *answer = idk_answers[(i + seed) % n];
    int rc = asu_dataset_add(out, forget->examples[i].question, answer, err);
    if (rc) {
      asu_dataset_free(out);
      return rc;
    }
  }
  return ASU_OK;
}
