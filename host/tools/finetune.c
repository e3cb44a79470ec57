/* asu-finetune: full-weight NLL fine-tuning of a GGUF model on question/answer JSONL, written
   as a new GGUF file with the same metadata and tokenizer. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "asu_dataset.h"
#include "asu_engine.h"
#include "asu_log.h"
#include "tool_args.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: asu-finetune --model IN.gguf --data FILE.jsonl --out OUT.gguf [options]\n"
          "  --steps N      full-batch AdamW steps (default 300)\n"
          "  --lr X         learning rate (default 0.003)\n"
          "  --device SEL   Vulkan device index or name substring (default: ASU_DEVICE or the\n"
          "                 first discrete GPU, integrated GPU, then CPU)\n"
          "Every example of FILE.jsonl is one {\"question\", \"answer\"} or {\"text\"} object;\n"
          "the loss is the mean NLL of the answer tokens.\n");
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct progress_state {
  double start;
} progress_state;

static int report(void *user, const asu_progress *p) {
  progress_state *s = user;
  if (p->step % 10 == 0 || p->step == p->total_steps)
    asu_log_info("step %u/%u: answer NLL %.4f (%.1f s)", p->step, p->total_steps, p->loss,
                 now_seconds() - s->start);
  return 0;
}

/* Fails early when the output file could not be written, before minutes of training. */
static int check_output_dir(const char *out_path, asu_error *err) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", out_path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  if (access(dir, W_OK | X_OK) != 0)
    return asu_error_set(err, ASU_ERR_IO, "cannot write %s: directory %s is missing or not "
                         "writable (%s)", out_path, dir, strerror(errno));
  return ASU_OK;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *data_path = NULL, *out_path = NULL, *device = NULL;
  asu_finetune_config cfg;
  asu_finetune_defaults(&cfg);
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
    double number;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!value) {
      fprintf(stderr, "asu-finetune: %s needs a value\n", arg);
      usage(stderr);
      return 2;
    }
    i++;
    if (!strcmp(arg, "--model")) model_path = value;
    else if (!strcmp(arg, "--data")) data_path = value;
    else if (!strcmp(arg, "--out")) out_path = value;
    else if (!strcmp(arg, "--device")) device = value;
    else if (!strcmp(arg, "--steps")) {
      if (tool_number("asu-finetune", arg, value, 1, 1000000, &number)) return 2;
      cfg.steps = (uint32_t)number;
    } else if (!strcmp(arg, "--lr")) {
      if (tool_number("asu-finetune", arg, value, 1e-12, 10, &number)) return 2;
      cfg.learning_rate = (float)number;
    } else {
      fprintf(stderr, "asu-finetune: unknown option '%s'\n", arg);
      usage(stderr);
      return 2;
    }
  }
  if (!model_path || !data_path || !out_path) {
    fprintf(stderr, "asu-finetune: --model, --data and --out are required\n");
    usage(stderr);
    return 2;
  }

  asu_error err;
  asu_dataset data = {0};
  asu_model *model = NULL;
  int rc = check_output_dir(out_path, &err);
  if (!rc) rc = asu_dataset_load(data_path, &data, &err);
  if (!rc && data.count == 0)
    rc = asu_error_set(&err, ASU_ERR_INVALID, "%s has no examples; give at least one JSON object "
                       "a line", data_path);
  if (!rc) rc = asu_model_load(model_path, device, &model, &err);
  if (!rc) {
    asu_log_info("fine-tuning on %zu examples for %u steps at learning rate %g", data.count,
                 cfg.steps, cfg.learning_rate);
    progress_state state = {now_seconds()};
    rc = asu_finetune(model, &cfg, &data, report, &state, &err);
  }
  if (!rc) rc = asu_model_save(model, out_path, &err);
  if (!rc) asu_log_info("wrote %s", out_path);
  else fprintf(stderr, "asu-finetune: %s\n", err.message);
  asu_model_destroy(model);
  asu_dataset_free(&data);
  return rc ? 1 : 0;
}
