/* Training and evaluation examples: JSONL files of {"question", "answer"} objects (the TOFU
   format; other keys are ignored) or {"text"} objects, and their tokenisation with a prompt
   template so that only answer tokens count in the losses. */
#ifndef ASU_DATASET_H
#define ASU_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "asu_error.h"
#include "asu_tokenizer.h"

/* One example. A question/answer pair has both fields; a plain text has question == NULL and
   the whole text in answer, so that every token of it counts. */
typedef struct asu_example {
  char *question;
  char *answer;
} asu_example;

typedef struct asu_dataset {
  asu_example *examples;
  size_t count;
} asu_dataset;

/* Reads a JSONL file. Blank lines are skipped; a line that is not a JSON object with string
   "question" and "answer" or a string "text" fails with its line number. */
int asu_dataset_load(const char *path, asu_dataset *out, asu_error *err);
/* Appends a copy of one example. */
int asu_dataset_add(asu_dataset *ds, const char *question, const char *answer, asu_error *err);
void asu_dataset_free(asu_dataset *ds);

/* The default template: the prompt is "Question: {question}\nAnswer:" and the answer follows it
   after one space. Generation prompts use the same prompt text. */
#define ASU_DEFAULT_TEMPLATE "Question: {question}\nAnswer:"

/* Formats the prompt for a question with a template containing "{question}" once. Returns a
   malloc'd string, or NULL on a template without the placeholder (err is set). */
char *asu_format_prompt(const char *template_text, const char *question, asu_error *err);

/* A tokenised example: ids = BOS + prompt pieces + answer pieces + EOS, where the prompt is
   encoded with the space prefix and the answer as " " + answer without it. Tokens at positions
   answer_begin .. n-1 are the answer (EOS included); the loss at position p predicts ids[p] from
   the logits at p - 1. A plain text example has answer_begin = 1. */
typedef struct asu_tokens {
  int32_t *ids;
  size_t n;
  size_t answer_begin;
} asu_tokens;

int asu_tokenize_example(const asu_tokenizer *tok, const char *template_text,
                         const asu_example *ex, asu_tokens *out, asu_error *err);
void asu_tokens_free(asu_tokens *t);

#endif
