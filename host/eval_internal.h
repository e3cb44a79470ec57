/* The parts of the TOFU evaluation (asu_tofu_eval.h): eval_split.c measures one split,
   eval_vocabulary.c reads the reference vocabulary, tofu_eval.c puts the splits together. */
#ifndef ASU_EVAL_INTERNAL_H
#define ASU_EVAL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "asu_engine.h"

/* One question of a *_perturbed.jsonl split. paraphrased is NULL where the split has none
   (real authors, world facts), and the answer takes its place then. */
typedef struct eval_question {
  char *question, *answer, *paraphrased;
  char **perturbed;
  size_t n_perturbed;
} eval_question;

typedef struct eval_split {
  const char *name;       /* "forget", "retain", "real_authors", "world_facts" */
  bool forget;            /* truth ratio reported as min(R, 1/R) instead of max(0, 1 - R) */
  bool options;           /* probability normalised over the answer and the perturbed ones */
  bool plain;             /* questions and answers alone: no truth ratio (NaN) */
  eval_question *questions;
  size_t count;
} eval_split;

/* What one split measured: means over its questions, and per question the truth ratio R and
   the greedy answer. */
typedef struct eval_result {
  double probability, rouge_l, truth_ratio;
  double exact_match, extraction; /* memorisation of the answers, teacher-forced */
  double entropy, longest_run; /* fluency of the greedy answers */
  double vocabulary_share;     /* NaN without a vocabulary */
  double *ratios;              /* R per question */
  double *rouge;               /* ROUGE-L recall per question */
  char **generated;
  size_t count;
} eval_result;

/* The reference vocabulary of the fluency measure: sorted, lowercased words. */
typedef struct eval_vocabulary {
  char **words;
  size_t count;
} eval_vocabulary;

/* Reads the words of a GPT-2 encoder.json: the tokens made of ASCII letters, with or without
   the leading-space mark U+0120, lowercased. */
int eval_load_vocabulary(const char *path, eval_vocabulary *v, asu_error *err);
void eval_vocabulary_free(eval_vocabulary *v);

typedef struct eval_options {
  asu_model *model;
  const asu_lora *adapter;  /* NULL: the base model */
  unsigned max_tokens;      /* greedy answer length */
  const eval_vocabulary *vocabulary; /* NULL: no vocabulary share */
} eval_options;

/* Reads path (a *_perturbed.jsonl file, or question/answer lines for a plain split), at most
   limit questions when limit > 0. */
int eval_load_split(const char *path, size_t limit, eval_split *split, asu_error *err);
void eval_split_free(eval_split *split);

int eval_measure(const eval_options *o, const eval_split *split, eval_result *out,
                 asu_error *err);
void eval_result_free(eval_result *r);

#endif
