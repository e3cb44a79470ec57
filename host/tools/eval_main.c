/* asu-eval: the TOFU metrics of a model, with or without an adapter, as one JSON object and a
   Markdown table. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "asu_log.h"
#include "asu_tofu_eval.h"

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
          "  --limit N           first N questions of each split (default 0: all)\n"
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
    if (end && (*end || end == optarg || optarg[0] == '-')) {
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

static double number_or_nan(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void format_number(char *out, size_t size, const char *format, double v) {
  if (isnan(v)) snprintf(out, size, "-");
  else snprintf(out, size, format, v);
}

/* The Markdown table of a result: one row per split, then utility and forget quality. */
static int write_markdown(const char *path, const char *json) {
  FILE *f = fopen(path, "w");
  cJSON *j = cJSON_Parse(json);
  if (!f || !j) {
    if (f) fclose(f);
    cJSON_Delete(j);
    return -1;
  }
  fprintf(f, "| split | probability | ROUGE-L | truth ratio | exact match | extraction | "
             "token entropy | longest run | known words |\n");
  fprintf(f, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  const cJSON *split;
  cJSON_ArrayForEach(split, cJSON_GetObjectItemCaseSensitive(j, "splits")) {
    char truth[16], known[16];
    format_number(truth, sizeof truth, "%.4f", number_or_nan(split, "truth_ratio"));
    format_number(known, sizeof known, "%.3f", number_or_nan(split, "vocabulary_share"));
    fprintf(f, "| %s | %.4f | %.4f | %s | %.4f | %.4f | %.3f | %.1f | %s |\n", split->string,
            number_or_nan(split, "probability"), number_or_nan(split, "rouge_l"), truth,
            number_or_nan(split, "exact_match"), number_or_nan(split, "extraction_strength"),
            number_or_nan(split, "token_entropy"), number_or_nan(split, "longest_run"), known);
  }
  char quality[32];
  format_number(quality, sizeof quality, "%.4g", number_or_nan(j, "forget_quality"));
  fprintf(f, "\nModel utility: %.4f. Forget quality: %s\n", number_or_nan(j, "model_utility"),
          quality);
  cJSON_Delete(j);
  return fclose(f) == 0 ? 0 : -1;
}

static int write_outputs(const cli *c, const char *json, asu_error *err) {
  FILE *f = c->json ? fopen(c->json, "w") : stdout;
  if (!f) return asu_error_set(err, ASU_ERR_IO, "cannot write %s", c->json);
  fprintf(f, "%s\n", json);
  if (c->json && fclose(f) != 0) return asu_error_set(err, ASU_ERR_IO, "cannot write %s", c->json);
  if (c->markdown && write_markdown(c->markdown, json) != 0)
    return asu_error_set(err, ASU_ERR_IO, "cannot write %s", c->markdown);
  return ASU_OK;
}

/* ---- Main ---- */

int main(int argc, char **argv) {
  cli c;
  int status = parse_cli(argc, argv, &c);
  if (status) return status;
  asu_error err;
  asu_error_clear(&err);
  asu_model *m = NULL;
  asu_lora *lora = NULL;
  char *json = NULL;
  int rc = asu_model_load(c.model, c.device, &m, &err);
  if (!rc && c.adapter && (rc = asu_lora_load(m, c.adapter, &lora, &err)))
    asu_error_wrap(&err, "adapter %s: ", c.adapter);
  asu_tofu_eval_options o = {
      .tofu_dir = c.tofu, .forget_split = c.forget, .reference_path = c.reference,
      .unprotected_path = c.unprotected, .vocabulary_path = c.vocabulary,
      .max_tokens = c.max_tokens, .limit = c.limit,
  };
  if (!rc) rc = asu_tofu_eval(m, lora, &o, &json, &err);
  if (!rc) rc = write_outputs(&c, json, &err);
  if (rc) fprintf(stderr, "asu-eval: %s\n", err.message);
  free(json);
  asu_lora_destroy(lora);
  asu_model_destroy(m);
  return rc ? 1 : 0;
}
