/* asu-eval: the TOFU metrics of a model, with or without an adapter, as one JSON object and a
   Markdown table. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "asu_log.h"
#include "asu_metrics.h"
#include "eval.h"

typedef struct split_spec {
  const char *name, *file;
  bool forget, options, plain;
} split_spec;

typedef struct cli {
  const char *model, *adapter, *tofu, *forget, *reference, *json, *markdown, *device;
  const char *vocabulary, *unprotected;
  unsigned max_tokens, limit;
} cli;

static void usage(FILE *out) {
  fprintf(out,
          "usage: asu-eval --model FILE.gguf --tofu DIR [options]\n"
          "  --adapter DIR       a PEFT adapter to evaluate with the model (default: none)\n"
          "  --forget SPLIT      forget01, forget05 or forget10 (default forget01)\n"
          "  --reference FILE    the JSON output of asu-eval for a retain model: forget quality\n"
          "                      is the KS test of the forget truth ratios against its own\n"
          "  --vocabulary FILE   a GPT-2 encoder.json: adds the share of generated words found\n"
          "                      in its vocabulary to the fluency measures\n"
          "  --unprotected FILE  question/answer JSONL of taught knowledge that is neither\n"
          "                      forgotten nor retained: adds the split \"unprotected\", and\n"
          "                      selectivity, its ROUGE-L\n"
          "  --max-tokens N      greedy answer length for ROUGE-L (default 200; TOFU answers\n"
          "                      average about 95 tokens with the 512-piece vocabulary)\n"
          "  --limit N           first N questions of each split (default: all)\n"
          "  --json FILE         write the JSON object there instead of stdout\n"
          "  --markdown FILE     also write a Markdown table\n"
          "  --device SEL        Vulkan device index or name substring\n"
          "DIR holds the TOFU *_perturbed.jsonl files.\n");
}

static int parse_cli(int argc, char **argv, cli *c) {
  *c = (cli){.forget = "forget01", .max_tokens = 200};
  static const struct option opts[] = {
      {"model", required_argument, NULL, 'm'},     {"adapter", required_argument, NULL, 'a'},
      {"tofu", required_argument, NULL, 't'},      {"forget", required_argument, NULL, 'f'},
      {"reference", required_argument, NULL, 'r'}, {"max-tokens", required_argument, NULL, 'n'},
      {"limit", required_argument, NULL, 'l'},     {"json", required_argument, NULL, 'j'},
      {"markdown", required_argument, NULL, 'd'},  {"device", required_argument, NULL, 'v'},
      {"vocabulary", required_argument, NULL, 'w'}, {"unprotected", required_argument, NULL, 'u'},
      {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    char *end = NULL;
    switch (o) {
    case 'm': c->model = optarg; break;
    case 'a': c->adapter = optarg; break;
    case 't': c->tofu = optarg; break;
    case 'f': c->forget = optarg; break;
    case 'r': c->reference = optarg; break;
    case 'n': c->max_tokens = (unsigned)strtoul(optarg, &end, 10); break;
    case 'l': c->limit = (unsigned)strtoul(optarg, &end, 10); break;
    case 'j': c->json = optarg; break;
    case 'd': c->markdown = optarg; break;
    case 'v': c->device = optarg; break;
    case 'w': c->vocabulary = optarg; break;
    case 'u': c->unprotected = optarg; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return 2;
    }
    if (end && (*end || end == optarg)) {
      fprintf(stderr, "asu-eval: --%s takes a whole number, got '%s'\n",
              o == 'n' ? "max-tokens" : "limit", optarg);
      return 2;
    }
  }
  if (!c->model || !c->tofu || optind != argc) {
    usage(stderr);
    return 2;
  }
  if (strcmp(c->forget, "forget01") && strcmp(c->forget, "forget05") &&
      strcmp(c->forget, "forget10")) {
    fprintf(stderr, "asu-eval: --forget must be forget01, forget05 or forget10, got '%s'\n",
            c->forget);
    return 2;
  }
  if (c->max_tokens == 0 || c->max_tokens > 4096) {
    fprintf(stderr, "asu-eval: --max-tokens must be in 1..4096, got %u\n", c->max_tokens);
    return 2;
  }
  return 0;
}

/* ---- Output ---- */

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

static void write_markdown(const char *path, const split_spec *specs, const eval_result *r,
                           size_t n, double utility, double quality) {
  FILE *f = fopen(path, "w");
  if (!f) {
    asu_log_error("cannot write %s", path);
    return;
  }
  fprintf(f, "| split | probability | ROUGE-L | truth ratio | exact match | extraction | "
             "token entropy | longest run | known words |\n");
  fprintf(f, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (size_t i = 0; i < n; i++) {
    char known[16] = "-", truth[16] = "-";
    if (!isnan(r[i].vocabulary_share)) snprintf(known, sizeof known, "%.3f", r[i].vocabulary_share);
    if (!isnan(r[i].truth_ratio)) snprintf(truth, sizeof truth, "%.4f", r[i].truth_ratio);
    fprintf(f, "| %s | %.4f | %.4f | %s | %.4f | %.4f | %.3f | %.1f | %s |\n", specs[i].name,
            r[i].probability, r[i].rouge_l, truth, r[i].exact_match, r[i].extraction,
            r[i].entropy, r[i].longest_run, known);
  }
  fprintf(f, "\nModel utility: %.4f. Forget quality: %s", utility, isnan(quality) ? "-" : "");
  if (!isnan(quality)) fprintf(f, "%.4g", quality);
  fprintf(f, "\n");
  fclose(f);
}

/* ---- Main ---- */

static int run(const cli *c, asu_model *m, const asu_lora *lora, asu_error *err) {
  split_spec specs[] = {{"forget", c->forget, true, false, false},
                        {"retain", "retain", false, false, false},
                        {"real_authors", "real_authors", false, true, false},
                        {"world_facts", "world_facts", false, true, false},
                        {"unprotected", c->unprotected, false, false, true}};
  enum { MAX_SPLITS = 5 };
  const size_t N_SPLITS = c->unprotected ? 5 : 4;
  eval_result results[MAX_SPLITS] = {0};
  eval_vocabulary vocabulary = {0};
  eval_options o = {.model = m, .adapter = lora, .max_tokens = c->max_tokens};
  int rc = c->vocabulary ? eval_load_vocabulary(c->vocabulary, &vocabulary, err) : ASU_OK;
  if (c->vocabulary) o.vocabulary = &vocabulary;
  for (size_t i = 0; i < N_SPLITS && !rc; i++) {
    char path[4096];
    if (specs[i].plain) snprintf(path, sizeof path, "%s", specs[i].file);
    else snprintf(path, sizeof path, "%s/%s_perturbed.jsonl", c->tofu, specs[i].file);
    eval_split split = {.name = specs[i].name, .forget = specs[i].forget,
                        .options = specs[i].options, .plain = specs[i].plain};
    rc = eval_load_split(path, c->limit, &split, err);
    if (!rc) rc = eval_measure(&o, &split, &results[i], err);
    if (!rc)
      asu_log_info("%s: %zu questions, probability %.4f, ROUGE-L %.4f, truth ratio %.4f",
                   specs[i].name, split.count, results[i].probability, results[i].rouge_l,
                   results[i].truth_ratio);
    eval_split_free(&split);
  }
  /* Model utility: harmonic mean of the three measures on the three retain-like splits. */
  double parts[9];
  for (size_t i = 1; i < 4; i++) {
    parts[3 * (i - 1)] = results[i].probability;
    parts[3 * (i - 1) + 1] = results[i].rouge_l;
    parts[3 * (i - 1) + 2] = results[i].truth_ratio;
  }
  double utility = rc ? NAN : asu_harmonic_mean(parts, 9), quality = NAN;
  if (!rc && c->reference) {
    size_t n = 0;
    double *ref = reference_ratios(c->reference, &n, err);
    if (!ref) rc = err->code;
    else quality = asu_ks_2samp(results[0].ratios, results[0].count, ref, n, NULL);
    free(ref);
  }
  if (!rc) {
    cJSON *j = cJSON_CreateObject(), *splits = cJSON_AddObjectToObject(j, "splits");
    for (size_t i = 0; i < N_SPLITS; i++)
      cJSON_AddItemToObject(splits, specs[i].name, split_json(&results[i]));
    cJSON_AddNumberToObject(j, "model_utility", utility);
    if (!isnan(quality)) cJSON_AddNumberToObject(j, "forget_quality", quality);
    if (c->unprotected) cJSON_AddNumberToObject(j, "selectivity", results[4].rouge_l);
    char *text = cJSON_Print(j);
    FILE *f = c->json ? fopen(c->json, "w") : stdout;
    if (f && text) fprintf(f, "%s\n", text);
    if (f && c->json) fclose(f);
    if (!f) rc = asu_error_set(err, ASU_ERR_IO, "cannot write %s", c->json);
    free(text);
    cJSON_Delete(j);
    if (c->markdown) write_markdown(c->markdown, specs, results, N_SPLITS, utility, quality);
  }
  for (size_t i = 0; i < N_SPLITS; i++) eval_result_free(&results[i]);
  eval_vocabulary_free(&vocabulary);
  return rc;
}

int main(int argc, char **argv) {
  cli c;
  int status = parse_cli(argc, argv, &c);
  if (status) return status;
  asu_error err;
  asu_error_clear(&err);
  asu_model *m = NULL;
  asu_lora *lora = NULL;
  int rc = asu_model_load(c.model, c.device, &m, &err);
  if (!rc && c.adapter && (rc = asu_lora_load(m, c.adapter, &lora, &err)))
    asu_error_wrap(&err, "adapter %s: ", c.adapter);
  if (!rc) rc = run(&c, m, lora, &err);
  if (rc) fprintf(stderr, "asu-eval: %s\n", err.message);
  asu_lora_destroy(lora);
  asu_model_destroy(m);
  return rc ? 1 : 0;
}
