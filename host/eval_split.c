/* One TOFU split: loading its questions, then the answer probabilities, truth ratios and greedy
   answers of a model on it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "asu_metrics.h"
#include "eval_internal.h"
#include "utf8.h"

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- Loading ---- */

static char *string_field(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static int parse_question(const cJSON *o, bool plain, eval_question *q, const char *path,
                          size_t line, asu_error *err) {
  q->question = string_field(o, "question");
  q->answer = string_field(o, "answer");
  q->paraphrased = string_field(o, "paraphrased_answer");
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "perturbed_answer");
  size_t n = cJSON_IsArray(list) ? (size_t)cJSON_GetArraySize(list) : 0;
  q->perturbed = calloc(n ? n : 1, sizeof *q->perturbed);
  for (size_t i = 0; q->perturbed && i < n; i++) {
    const cJSON *item = cJSON_GetArrayItem(list, (int)i);
    if (cJSON_IsString(item)) q->perturbed[q->n_perturbed++] = strdup(item->valuestring);
  }
  if (plain && (!q->question || !q->answer))
    return asu_error_set(err, ASU_ERR_FORMAT, "%s line %zu: needs \"question\" and \"answer\" "
                         "strings", path, line);
  if (!plain && (!q->question || !q->answer || q->n_perturbed == 0))
    return asu_error_set(err, ASU_ERR_FORMAT, "%s line %zu: needs \"question\", \"answer\" and "
                         "a non-empty list \"perturbed_answer\" of strings", path, line);
  return ASU_OK;
}

int eval_load_split(const char *path, size_t limit, eval_split *split, asu_error *err) {
  FILE *f = fopen(path, "r");
  if (!f) return asu_error_set(err, ASU_ERR_NOT_FOUND, "cannot open %s", path);
  char *line = NULL;
  size_t cap = 0, line_no = 0, room = 0;
  int rc = ASU_OK;
  while (!rc && (!limit || split->count < limit) && getline(&line, &cap, f) > 0) {
    line_no++;
    cJSON *o = cJSON_Parse(line);
    if (!o) {
      rc = asu_error_set(err, ASU_ERR_FORMAT, "%s line %zu is not valid JSON", path, line_no);
      break;
    }
    if (split->count == room) {
      room = room ? 2 * room : 64;
      eval_question *grown = realloc(split->questions, room * sizeof *grown);
      if (!grown) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
      else split->questions = grown;
    }
    if (!rc) {
      eval_question *q = &split->questions[split->count++];
      memset(q, 0, sizeof *q);
      rc = parse_question(o, split->plain, q, path, line_no, err);
    }
    cJSON_Delete(o);
  }
  free(line);
  fclose(f);
  if (!rc && split->count == 0)
    rc = asu_error_set(err, ASU_ERR_FORMAT, "%s has no questions", path);
  return rc;
}

void eval_split_free(eval_split *split) {
  for (size_t i = 0; i < split->count; i++) {
    eval_question *q = &split->questions[i];
    free(q->question);
    free(q->answer);
    free(q->paraphrased);
    for (size_t k = 0; k < q->n_perturbed; k++) free(q->perturbed[k]);
    free(q->perturbed);
  }
  free(split->questions);
  split->questions = NULL;
  split->count = 0;
}

/* ---- Answer NLLs ---- */

/* The mean answer NLL of every (question, answer) pair the split needs, laid out per question
   as the answer, the paraphrased answer when there is one, then the perturbed ones. The answers
   go through asu_answer_measure, which also gives their memorisation, into out; the others
   through the cheaper asu_answer_nll. */
static int measure_nll(const eval_options *o, const eval_split *s, double **nll, size_t **first,
                       eval_result *out, asu_error *err) {
  asu_dataset answers = {0}, others = {0};
  *first = calloc(s->count + 1, sizeof **first);
  int rc = *first ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (size_t i = 0; !rc && i < s->count; i++) {
    const eval_question *q = &s->questions[i];
    (*first)[i] = answers.count + others.count;
    rc = asu_dataset_add(&answers, q->question, q->answer, err);
    if (!rc && q->paraphrased) rc = asu_dataset_add(&others, q->question, q->paraphrased, err);
    for (size_t k = 0; !rc && k < q->n_perturbed; k++)
      rc = asu_dataset_add(&others, q->question, q->perturbed[k], err);
  }
  asu_answer_stats *stats = rc ? NULL : calloc(s->count, sizeof *stats);
  double *other_nll = rc ? NULL : malloc((others.count ? others.count : 1) * sizeof *other_nll);
  if (!rc) {
    (*first)[s->count] = answers.count + others.count;
    *nll = malloc((*first)[s->count] * sizeof **nll);
    if (!*nll || !stats || !other_nll) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  if (!rc) rc = asu_answer_measure(o->model, o->adapter, NULL, &answers, stats, err);
  if (!rc) rc = asu_answer_nll(o->model, o->adapter, NULL, &others, other_nll, err);
  for (size_t i = 0, k = 0; !rc && i < s->count; i++) {
    double *row = *nll + (*first)[i];
    row[0] = stats[i].nll;
    for (size_t j = 1; j < (*first)[i + 1] - (*first)[i]; j++) row[j] = other_nll[k++];
    out->exact_match += stats[i].exact_match / (double)s->count;
    out->extraction += stats[i].extraction / (double)s->count;
  }
  free(stats);
  free(other_nll);
  asu_dataset_free(&answers);
  asu_dataset_free(&others);
  return rc;
}

/* Probability and truth ratio of question i from its NLLs (answer first). */
static void score_question(const eval_split *s, size_t i, const double *nll, double *probability,
                           double *ratio) {
  const eval_question *q = &s->questions[i];
  const double *perturbed = nll + 1 + (q->paraphrased ? 1 : 0);
  double answer_p = exp(-nll[0]);
  if (s->options) {
    double total = answer_p;
    for (size_t k = 0; k < q->n_perturbed; k++) total += exp(-perturbed[k]);
    *probability = answer_p / total;
  } else {
    *probability = answer_p;
  }
  *ratio = s->plain ? NAN
                    : asu_truth_ratio(q->paraphrased ? nll[1] : nll[0], perturbed, q->n_perturbed);
}

/* ---- Greedy answers ---- */

typedef struct answer_text {
  char *text;
  size_t len, cap;
  int32_t *tokens;
  size_t n_tokens, tokens_cap;
} answer_text;

static int collect(void *user, int32_t token, const char *piece, size_t len) {
  answer_text *a = user;
  if (a->len + len + 1 > a->cap) {
    size_t cap = 2 * (a->len + len + 1);
    char *grown = realloc(a->text, cap);
    if (!grown) return 1;
    a->text = grown;
    a->cap = cap;
  }
  memcpy(a->text + a->len, piece, len);
  a->len += len;
  a->text[a->len] = '\0';
  if (a->n_tokens == a->tokens_cap) {
    size_t cap = a->tokens_cap ? 2 * a->tokens_cap : 64;
    int32_t *grown = realloc(a->tokens, cap * sizeof *grown);
    if (!grown) return 1;
    a->tokens = grown;
    a->tokens_cap = cap;
  }
  a->tokens[a->n_tokens++] = token;
  return 0;
}

static int collect_indexed(void *user, size_t index, int32_t token, const char *piece,
                           size_t len) {
  answer_text *answers = user;
  return collect(&answers[index], token, piece, len);
}

/* Replaces bytes that are not valid UTF-8 in a's text with U+FFFD: byte-fallback tokens can
   end an answer inside a character or form no character at all, and JSON needs valid text. */
static int make_valid_utf8(answer_text *a, asu_error *err) {
  char *valid = malloc(3 * (a->len + 4) + 1);
  if (!valid) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  asu_utf8_joiner joiner = {0};
  size_t n = asu_utf8_join(&joiner, a->text, a->len, true, valid);
  free(a->text);
  a->text = valid;
  a->len = n;
  a->cap = 3 * (a->len + 4) + 1;
  return ASU_OK;
}

/* The greedy answers to every question of s, generated together. */
static int greedy_answers(const eval_options *o, const eval_split *s, answer_text *answers,
                          asu_error *err) {
  char **prompts = calloc(s->count, sizeof *prompts);
  int rc = prompts ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (size_t i = 0; !rc && i < s->count; i++) {
    prompts[i] = asu_format_prompt(ASU_DEFAULT_TEMPLATE, s->questions[i].question, err);
    answers[i].text = calloc(1, 1);
    answers[i].cap = 1;
    if (!prompts[i] || !answers[i].text)
      rc = prompts[i] ? asu_error_set(err, ASU_ERR_NOMEM, "out of memory") : err->code;
  }
  if (!rc)
    rc = asu_generate_greedy_batch(o->model, o->adapter, (const char *const *)prompts, s->count,
                                   o->max_tokens, collect_indexed, answers, err);
  for (size_t i = 0; !rc && i < s->count; i++) rc = make_valid_utf8(&answers[i], err);
  for (size_t i = 0; prompts && i < s->count; i++) free(prompts[i]);
  free(prompts);
  return rc;
}

/* Whether a lowercased word is in the vocabulary; numbers count as known words. */
static int known_word(const char *word, size_t len, void *user) {
  const eval_vocabulary *v = user;
  size_t digits = strspn(word, "0123456789");
  if (digits == len) return 1;
  return bsearch(&word, v->words, v->count, sizeof *v->words, compare_strings) != NULL;
}

/* ---- A split ---- */

int eval_measure(const eval_options *o, const eval_split *s, eval_result *out, asu_error *err) {
  memset(out, 0, sizeof *out);
  double *nll = NULL;
  size_t *first = NULL;
  out->ratios = calloc(s->count, sizeof *out->ratios);
  out->rouge = calloc(s->count, sizeof *out->rouge);
  out->generated = calloc(s->count, sizeof *out->generated);
  out->count = s->count;
  int rc = out->ratios && out->rouge && out->generated ? measure_nll(o, s, &nll, &first, out, err)
                                         : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  answer_text *answers = rc ? NULL : calloc(s->count, sizeof *answers);
  if (!rc && !answers) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = greedy_answers(o, s, answers, err);
  double sum_p = 0, sum_rouge = 0, sum_tr = 0, sum_entropy = 0, sum_run = 0, sum_vocab = 0;
  for (size_t i = 0; !rc && i < s->count; i++) {
    double p, ratio;
    score_question(s, i, nll + first[i], &p, &ratio);
    out->ratios[i] = ratio;
    sum_p += p;
    sum_tr += s->forget ? fmin(ratio, 1.0 / ratio) : fmax(0.0, 1.0 - ratio);
    answer_text *a = &answers[i];
    out->rouge[i] = asu_rouge_l_recall(a->text, s->questions[i].answer);
    sum_rouge += out->rouge[i];
    sum_entropy += asu_token_entropy(a->tokens, a->n_tokens);
    sum_run += (double)asu_longest_run(a->tokens, a->n_tokens);
    if (o->vocabulary)
      sum_vocab += asu_vocabulary_share(a->text, known_word, (void *)o->vocabulary);
    out->generated[i] = a->text;
    a->text = NULL;
  }
  for (size_t i = 0; answers && i < s->count; i++) {
    free(answers[i].text);
    free(answers[i].tokens);
  }
  free(answers);
  double n = (double)s->count;
  out->probability = sum_p / n;
  out->rouge_l = sum_rouge / n;
  out->truth_ratio = s->plain ? NAN : sum_tr / n;
  out->entropy = sum_entropy / n;
  out->longest_run = sum_run / n;
  out->vocabulary_share = o->vocabulary ? sum_vocab / n : NAN;
  free(nll);
  free(first);
  return rc;
}

void eval_result_free(eval_result *r) {
  for (size_t i = 0; r->generated && i < r->count; i++) free(r->generated[i]);
  free(r->generated);
  free(r->ratios);
  free(r->rouge);
  memset(r, 0, sizeof *r);
}
