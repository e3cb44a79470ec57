/* The TOFU metrics of a model, with or without an adapter, as one JSON object: what asu-eval
   prints and what an evaluation job over gRPC returns (docs/evaluation.md). */
#ifndef ASU_TOFU_EVAL_H
#define ASU_TOFU_EVAL_H

#include "asu_engine.h"

typedef struct asu_tofu_eval_options {
  const char *tofu_dir;         /* the folder of the TOFU *_perturbed.jsonl files */
  const char *forget_split;     /* forget01, forget05 or forget10; NULL: forget01 */
  const char *reference_path;   /* output of a retain model, for forget quality; NULL: none */
  const char *unprotected_path; /* question/answer JSONL, for selectivity; NULL: none */
  const char *vocabulary_path;  /* GPT-2 encoder.json, for the known-word share; NULL: none */
  unsigned max_tokens;          /* greedy answer length; 0: 200 */
  unsigned limit;               /* first questions of each split; 0: all */
  /* Called after each split with the number measured and the total; returning nonzero
     cancels the evaluation (ASU_ERR_CANCELLED). May be NULL. */
  int (*on_split)(void *user, unsigned done, unsigned total, const char *name);
  void *user;
} asu_tofu_eval_options;

/* Measures m with lora (NULL: the model alone) on every split. *json receives the result as
   formatted JSON (malloc'd): per split the means, truth ratios, ROUGE-L and answers per
   question; then model_utility and, when their inputs were given, forget_quality and
   selectivity. */
int asu_tofu_eval(asu_model *m, const asu_lora *lora, const asu_tofu_eval_options *o,
                  char **json, asu_error *err);

#endif
