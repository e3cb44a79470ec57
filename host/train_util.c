/* Pieces shared by the trainers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

int asu_token_set_add(asu_model *m, const char *template_text, const asu_dataset *ds,
                      asu_token_set *set, asu_error *err) {
  if (!ds || ds->count == 0) return ASU_OK;
  asu_tokens *items = realloc(set->items, (set->count + ds->count) * sizeof *items);
  if (!items) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  set->items = items;
  for (size_t i = 0; i < ds->count; i++) {
    asu_tokens *t = &set->items[set->count];
    memset(t, 0, sizeof *t);
    int rc = asu_tokenize_example(m->tok, template_text, &ds->examples[i], t, err);
    if (rc) return asu_error_wrap(err, "example %zu: ", i);
    set->count++;
  }
  return ASU_OK;
}

void asu_token_set_free(asu_token_set *set) {
  for (size_t i = 0; i < set->count; i++) asu_tokens_free(&set->items[i]);
  free(set->items);
  set->items = NULL;
  set->count = 0;
}

void asu_answer_weights(const asu_batch *b, uint32_t first, uint32_t n, float coefficient,
                        float *weights) {
  for (uint32_t e = first; e < first + n; e++) {
    uint32_t begin = b->example_begin[e], end = b->example_begin[e + 1];
    uint32_t answer = b->answer_begin[e];
    /* Row r predicts token r + 1, so the rows answer - 1 .. end - 2 predict the answer. */
    uint32_t n_answer = end > answer ? end - answer : 0;
    for (uint32_t r = begin; r < end; r++) weights[r] = 0.0f;
    if (n_answer == 0) continue;
    float w = coefficient / ((float)n * (float)n_answer);
    for (uint32_t r = answer - 1; r + 1 < end; r++) weights[r] = w;
  }
}

double asu_sum_rows(const asu_batch *b, uint32_t first, uint32_t n, const float *loss) {
  double sum = 0.0;
  for (uint32_t r = b->example_begin[first]; r < b->example_begin[first + n]; r++) sum += loss[r];
  return sum;
}

int asu_upload_floats(asu_device *dev, const float *data, size_t n, asu_buffer **out,
                      asu_error *err) {
  int rc = asu_buffer_create(dev, n * sizeof(float), out, err);
  if (!rc) rc = asu_buffer_upload(*out, 0, data, n * sizeof(float), err);
  return rc;
}

int asu_adam_add(asu_device *dev, asu_adam *adam, asu_buffer *param, asu_buffer *grad,
                 uint32_t n, asu_error *err) {
  if (adam->count == adam->cap) {
    size_t cap = adam->cap ? 2 * adam->cap : 16;
    asu_adam_param *p = realloc(adam->params, cap * sizeof *p);
    if (!p) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
    adam->params = p;
    adam->cap = cap;
  }
  asu_adam_param *p = &adam->params[adam->count];
  *p = (asu_adam_param){.param = param, .grad = grad, .n = n};
  float *zeros = calloc(n, sizeof *zeros);
  if (!zeros) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  int rc = asu_upload_floats(dev, zeros, n, &p->m, err);
  if (!rc) rc = asu_upload_floats(dev, zeros, n, &p->v, err);
  free(zeros);
  if (rc) {
    asu_buffer_destroy(p->m);
    asu_buffer_destroy(p->v);
    return rc;
  }
  adam->count++;
  return ASU_OK;
}

int asu_adam_record(asu_cmd *cmd, asu_adam *adam) {
  adam->step++;
  int rc = ASU_OK;
  for (size_t i = 0; i < adam->count && !rc; i++) {
    asu_adam_param *p = &adam->params[i];
    asu_adamw_args args = {
        .param = p->param, .grad = p->grad, .m = p->m, .v = p->v, .n = p->n,
        .step = adam->step, .lr = adam->lr, .beta1 = adam->beta1, .beta2 = adam->beta2,
        .eps = adam->eps, .weight_decay = adam->weight_decay,
    };
    rc = asu_op_adamw(cmd, &args);
  }
  return rc;
}

void asu_adam_free(asu_adam *adam) {
  for (size_t i = 0; i < adam->count; i++) {
    asu_buffer_destroy(adam->params[i].m);
    asu_buffer_destroy(adam->params[i].v);
  }
  free(adam->params);
  memset(adam, 0, sizeof *adam);
}
