/* The state of one unlearning run, shared by the trainer (unlearn.c) and the method-specific
   loss terms (unlearn_methods.c). Internal to libasu. */
#ifndef ASU_UNLEARN_INTERNAL_H
#define ASU_UNLEARN_INTERNAL_H

#include "train_internal.h"

typedef struct unlearn_run {
  asu_model *m;
  const asu_unlearn_config *cfg;
  uint32_t n_forget, n_retain, forget_rows;
  asu_batch *batch;
  asu_acts *acts;
  asu_backward_scratch *scratch;
  asu_lora *lora;
  asu_grads *grads;
  asu_adam adam;
  asu_buffer *teacher_logp, *dlogits, *loss, *weights;
  float *loss_host, *student_scales, *teacher_scales;
  float *weights_host;   /* the loss weights of every row, as uploaded before the first step */
  double *reference_nll; /* npo: per forget example, the summed answer NLL of the frozen model */
  asu_evaluator *heldout;
  asu_cmd *cmd;
} unlearn_run;

/* A loss coefficient of 0 still measures its term, with weight 1, but its gradient is zeroed. */
static inline float asu_measured_weight(float coefficient) {
  return coefficient > 0.0f ? coefficient : 1.0f;
}

/* Whether the method's forget term reads teacher_logp: the smoothed teacher (asu_*) or the
   uniform distribution (me_gd). */
bool asu_method_uses_teacher(enum asu_method m);
/* Whether the forget term weights each answer by its whole probability (npo, simnpo), so that
   its row weights change with every step. */
bool asu_method_per_answer(enum asu_method m);
/* The sign of the forget rows' loss weights: -1 for gradient ascent (ga, gd), else 1. */
float asu_method_forget_sign(enum asu_method m);

/* Prepares the forget term once, before the first step. For me_gd it fills teacher_logp's
   forget rows with the uniform distribution's log-probabilities. For npo it records the frozen
   model's summed answer NLL per forget example. Other methods need nothing here. */
int asu_unlearn_prepare_method(unlearn_run *r, asu_error *err);

/* For npo and simnpo: records the student's forward pass, measures each forget answer's NLL,
   and uploads the row weights of the step's forget term. *forget_term receives its value. The
   logits stay in r->acts for the step. */
int asu_unlearn_answer_weights(unlearn_run *r, double *forget_term, asu_error *err);

#endif
