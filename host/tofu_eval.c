/* The TOFU evaluation of a model: every split measured in turn (eval_split.c), then model
   utility, forget quality and selectivity, as one JSON object. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "asu_log.h"
#include "asu_metrics.h"
#include "asu_tofu_eval.h"
#include "eval_internal.h"

typedef struct split_spec {
  const char *name, *file;
  bool forget, options, plain;
} split_spec;

enum { MAX_SPLITS = 5 };

static cJSON *split_json(const eval_result *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "probability", r->probability);
  cJSON_AddNumberToObject(o, "rouge_l", r->rouge_l);
  if (isnan(r->truth_ratio)) cJSON_AddNullToObject(o, "truth_ratio");
  else cJSON_AddNumberToObject(o, "truth_ratio", r->truth_ratio);
  cJSON_AddNumberToObject(o, "exact_match", r->exact_match);
  cJSON_AddNumberToObject(o, "extraction_strength", r->extraction);
  cJSON_AddNumberToObject(o, "token_entropy", r->entropy);
  cJSON_AddNumberToObject(o, "longest_run", r->longest_run);
  if (!isnan(r->vocabulary_share))
    cJSON_AddNumberToObject(o, "vocabulary_share", r->vocabulary_share);
  if (!isnan(r->truth_ratio))
    cJSON_AddItemToObject(o, "truth_ratios", cJSON_CreateDoubleArray(r->ratios, (int)r->count));
  cJSON_AddItemToObject(o, "rouge_l_per_question",
                        cJSON_CreateDoubleArray(r->rouge, (int)r->count));
  cJSON *gen = cJSON_AddArrayToObject(o, "generated");
  for (size_t i = 0; i < r->count; i++) cJSON_AddItemToArray(gen, cJSON_CreateString(r->generated[i]));
  return o;
}

/* The forget truth ratios of a reference output, for the KS test. */
static double *reference_ratios(const char *path, size_t *n, asu_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    asu_error_set(err, ASU_ERR_NOT_FOUND, "cannot open the reference %s", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)size + 1);
  size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
  fclose(f);
  if (text) text[got] = '\0';
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "splits"), "forget"),
      "truth_ratios");
  double *v = NULL;
  *n = cJSON_IsArray(list) ? (size_t)cJSON_GetArraySize(list) : 0;
  if (*n) v = malloc(*n * sizeof *v);
  for (size_t i = 0; v && i < *n; i++) v[i] = cJSON_GetArrayItem(list, (int)i)->valuedouble;
  if (!v) asu_error_set(err, ASU_ERR_FORMAT, "%s has no splits.forget.truth_ratios; give an "
                        "asu-eval output", path);
  cJSON_Delete(j);
  return v;
}

static int check_options(const asu_tofu_eval_options *o, asu_error *err) {
  const char *forget = o->forget_split ? o->forget_split : "forget01";
  if (!o->tofu_dir)
    return asu_error_set(err, ASU_ERR_INVALID, "the TOFU folder is missing; give the folder of "
                         "the *_perturbed.jsonl files");
  if (strcmp(forget, "forget01") && strcmp(forget, "forget05") && strcmp(forget, "forget10"))
    return asu_error_set(err, ASU_ERR_INVALID, "the forget split must be forget01, forget05 or "
                         "forget10, got '%s'", forget);
  if (o->max_tokens > 4096)
    return asu_error_set(err, ASU_ERR_INVALID, "max tokens must be in 1..4096, got %u",
                         o->max_tokens);
  return ASU_OK;
}

/* Writes the file of a split into path: its own path for a plain split, else the TOFU file. */
static void split_path(const asu_tofu_eval_options *o, const split_spec *spec, char *path,
                       size_t size) {
  if (spec->plain) snprintf(path, size, "%s", spec->file);
  else snprintf(path, size, "%s/%s_perturbed.jsonl", o->tofu_dir, spec->file);
}

/* Fails unless every split's file can be read. */
static int check_files(const asu_tofu_eval_options *o, const split_spec *specs, size_t n,
                       asu_error *err) {
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    split_path(o, &specs[i], path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f)
      return asu_error_set(err, ASU_ERR_NOT_FOUND, "cannot open %s, the %s split; check the "
                           "path", path, specs[i].name);
    fclose(f);
  }
  return ASU_OK;
}

/* Measures every split into results. */
static int measure_splits(asu_model *m, const asu_lora *lora, const asu_tofu_eval_options *o,
                          const split_spec *specs, size_t n, eval_result *results,
                          asu_error *err) {
  eval_vocabulary vocabulary = {0};
  eval_options eo = {.model = m, .adapter = lora, .max_tokens = o->max_tokens ? o->max_tokens : 200};
  int rc = o->vocabulary_path ? eval_load_vocabulary(o->vocabulary_path, &vocabulary, err) : ASU_OK;
  if (o->vocabulary_path) eo.vocabulary = &vocabulary;
  for (size_t i = 0; i < n && !rc; i++) {
    char path[4096];
    split_path(o, &specs[i], path, sizeof path);
    eval_split split = {.name = specs[i].name, .forget = specs[i].forget,
                        .options = specs[i].options, .plain = specs[i].plain};
    rc = eval_load_split(path, o->limit, &split, err);
    if (!rc) rc = eval_measure(&eo, &split, &results[i], err);
    if (!rc)
      asu_log_info("%s: %zu questions, probability %.4f, ROUGE-L %.4f, truth ratio %.4f",
                   specs[i].name, split.count, results[i].probability, results[i].rouge_l,
                   results[i].truth_ratio);
    eval_split_free(&split);
    if (!rc && o->on_split && o->on_split(o->user, (unsigned)i + 1, (unsigned)n, specs[i].name))
      rc = asu_error_set(err, ASU_ERR_CANCELLED, "cancelled after the %s split", specs[i].name);
  }
  eval_vocabulary_free(&vocabulary);
  return rc;
}

/* Model utility: the harmonic mean of the three measures on the three retain-like splits. */
static double model_utility(const eval_result *results) {
  double parts[9];
  for (size_t i = 1; i < 4; i++) {
    parts[3 * (i - 1)] = results[i].probability;
    parts[3 * (i - 1) + 1] = results[i].rouge_l;
    parts[3 * (i - 1) + 2] = results[i].truth_ratio;
  }
  return asu_harmonic_mean(parts, 9);
}

int asu_tofu_eval(asu_model *m, const asu_lora *lora, const asu_tofu_eval_options *o,
                  char **json, asu_error *err) {
  *json = NULL;
  int rc = check_options(o, err);
  if (rc) return rc;
  const char *forget = o->forget_split ? o->forget_split : "forget01";
  split_spec specs[MAX_SPLITS] = {{"forget", forget, true, false, false},
                                  {"retain", "retain", false, false, false},
                                  {"real_authors", "real_authors", false, true, false},
                                  {"world_facts", "world_facts", false, true, false},
                                  {"unprotected", o->unprotected_path, false, false, true}};
  size_t n = o->unprotected_path ? 5 : 4;
  eval_result results[MAX_SPLITS] = {0};
  /* Inputs are checked before minutes of measuring, not after. */
  size_t ref_count = 0;
  double *ref = o->reference_path ? reference_ratios(o->reference_path, &ref_count, err) : NULL;
  if (o->reference_path && !ref) rc = err->code;
  if (!rc) rc = check_files(o, specs, n, err);
  if (!rc) rc = measure_splits(m, lora, o, specs, n, results, err);
  double quality = NAN;
  if (!rc && ref) quality = asu_ks_2samp(results[0].ratios, results[0].count, ref, ref_count, NULL);
  free(ref);
  if (!rc) {
    cJSON *j = cJSON_CreateObject(), *splits = cJSON_AddObjectToObject(j, "splits");
    for (size_t i = 0; i < n; i++)
      cJSON_AddItemToObject(splits, specs[i].name, split_json(&results[i]));
    cJSON_AddNumberToObject(j, "model_utility", model_utility(results));
    if (!isnan(quality)) cJSON_AddNumberToObject(j, "forget_quality", quality);
    if (o->unprotected_path) cJSON_AddNumberToObject(j, "selectivity", results[4].rouge_l);
    *json = cJSON_Print(j);
    cJSON_Delete(j);
    if (!*json) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) eval_result_free(&results[i]);
  return rc;
}
