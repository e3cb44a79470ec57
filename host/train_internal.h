/* Pieces shared by the trainers (unlearning with an adapter, full fine-tuning). */
#ifndef ASU_TRAIN_INTERNAL_H
#define ASU_TRAIN_INTERNAL_H

#include "model_internal.h"

/* Tokenised examples of one or more datasets, in order. */
typedef struct asu_token_set {
  asu_tokens *items;
  size_t count;
} asu_token_set;

int asu_token_set_add(asu_model *m, const char *template_text, const asu_dataset *ds,
                      asu_token_set *set, asu_error *err);
void asu_token_set_free(asu_token_set *set);

/* asu_unlearn on examples already tokenized: the first n_forget of `examples` are forget
   examples and the rest retain examples. heldout may be NULL, and then no held-out NLL is
   measured (the progress reports NaN). When teacher_seconds is not NULL it receives the wall
   time of the teacher pass, which runs once before the first step. */
int asu_unlearn_tokens(asu_model *m, const asu_unlearn_config *cfg, const asu_token_set *examples,
                       uint32_t n_forget, const asu_token_set *heldout,
                       asu_progress_fn on_progress, void *user, asu_lora **out,
                       double *teacher_seconds, asu_error *err);

/* Per-row loss weights: rows that predict an answer token of example e get
   coefficient / (n_examples * answer tokens of e), over examples [first, first + n) of b. */
void asu_answer_weights(const asu_batch *b, uint32_t first, uint32_t n, float coefficient,
                        float *weights);
/* Sums loss[r] over the rows of examples [first, first + n) of b. */
double asu_sum_rows(const asu_batch *b, uint32_t first, uint32_t n, const float *loss);

/* AdamW state for a list of parameter buffers with their gradients. */
typedef struct asu_adam_param {
  asu_buffer *param, *grad, *m, *v;
  uint32_t n;
} asu_adam_param;

typedef struct asu_adam {
  asu_adam_param *params;
  size_t count, cap;
  uint32_t step;
  float lr, beta1, beta2, eps, weight_decay;
} asu_adam;

/* Adds a parameter and creates its zeroed moment buffers. */
int asu_adam_add(asu_device *dev, asu_adam *adam, asu_buffer *param, asu_buffer *grad,
                 uint32_t n, asu_error *err);
/* Records one update of every parameter (advancing the step count). */
int asu_adam_record(asu_cmd *cmd, asu_adam *adam);
void asu_adam_free(asu_adam *adam);

/* Uploads floats into a new buffer. */
int asu_upload_floats(asu_device *dev, const float *data, size_t n, asu_buffer **out,
                      asu_error *err);

/* Evaluates mean NLL per answer token of a batch under the model with an optional adapter. */
typedef struct asu_evaluator asu_evaluator;
int asu_evaluator_create(asu_model *m, const asu_token_set *set, uint32_t lora_rank,
                         asu_evaluator **out, asu_error *err);
int asu_evaluator_nll(asu_evaluator *e, const asu_lora *lora, double *nll, asu_error *err);
void asu_evaluator_destroy(asu_evaluator *e);

/* Generates greedily from BOS with the base model: the default held-out text. */
int asu_base_story(asu_model *m, uint32_t tokens, asu_dataset *out, asu_error *err);

#endif
