/* asu-unlearn: one unlearning run on a GGUF model without a server, written as a PEFT adapter;
   optionally continuing from an adapter, and saving the adapter along the way to evaluate the
   run step by step. */
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "asu_dataset.h"
#include "asu_engine.h"
#include "asu_log.h"
#include "tool_args.h"

static const char *const program = "asu-unlearn";

static void usage(FILE *out) {
  fprintf(out,
          "usage: asu-unlearn --model M.gguf --forget F.jsonl --out DIR [options]\n"
          "  --retain FILE        retain examples (question/answer JSONL)\n"
          "  --method NAME        asu_gd (default), asu_kl, ga, gd, npo, simnpo, idk_nll, me_gd\n"
          "  --steps N            full-batch AdamW steps (default 300)\n"
          "  --lr X               learning rate (default 0.003)\n"
          "  --tau X              teacher attention temperature (default 3)\n"
          "  --tau-layers LIST    comma-separated layers the teacher smooths (default: all)\n"
          "  --beta X, --gamma X  NPO and SimNPO settings\n"
          "  --rank N             LoRA rank (default 8)\n"
          "  --retain-weight X    weight of the retain term (default 1)\n"
          "  --start DIR          continue from this adapter (continual unlearning)\n"
          "  --snapshot-every N   also save the adapter to DIR/steps/step-NNNNN at step 0,\n"
          "                       every N steps and at the last\n"
          "  --device SEL         Vulkan device index or name substring\n");
}

static int parse_layers(const char *text, uint64_t *mask) {
  *mask = 0;
  for (const char *p = text; *p;) {
    char *end = NULL;
    unsigned long l = strtoul(p, &end, 10);
    if (end == p || l >= 64 || (*end && *end != ',')) {
      fprintf(stderr, "%s: --tau-layers takes layer numbers under 64 separated by commas, got "
              "'%s'\n", program, text);
      return -1;
    }
    *mask |= 1ull << l;
    p = *end ? end + 1 : end;
  }
  return 0;
}

typedef struct cli {
  const char *model, *forget, *retain, *out, *start, *device;
  asu_unlearn_config cfg;
  char snapshots[4096];
} cli;

/* Options that take a number, with their range. */
static int number_option(cli *c, const char *flag, const char *value) {
  static const struct {
    const char *flag;
    double min, max;
  } ranges[] = {{"--steps", 1, 1000000}, {"--lr", 1e-12, 10},    {"--tau", 1e-3, 1e3},
                {"--beta", 0, 1e3},      {"--gamma", -1e3, 1e3}, {"--rank", 1, 256},
                {"--retain-weight", 0, 1e3}, {"--snapshot-every", 1, 1000000}};
  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
    if (strcmp(flag, ranges[i].flag)) continue;
    double v;
    if (tool_number(program, flag, value, ranges[i].min, ranges[i].max, &v)) return -1;
    switch (i) {
    case 0: c->cfg.steps = (uint32_t)v; break;
    case 1: c->cfg.learning_rate = (float)v; break;
    case 2: c->cfg.tau = (float)v; break;
    case 3: c->cfg.beta = (float)v; break;
    case 4: c->cfg.gamma = (float)v; break;
    case 5: c->cfg.lora_rank = (uint32_t)v; break;
    case 6: c->cfg.retain_weight = (float)v; break;
    default: c->cfg.snapshot_every = (uint32_t)v; break;
    }
    return 0;
  }
  return 1;
}

static int parse_cli(int argc, char **argv, cli *c) {
  asu_unlearn_defaults(&c->cfg);
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (!value) {
      fprintf(stderr, "%s: %s needs a value\n", program, arg);
      return 2;
    }
    i++;
    int numeric = number_option(c, arg, value);
    if (numeric < 0) return 2;
    if (numeric == 0) continue;
    if (!strcmp(arg, "--model")) c->model = value;
    else if (!strcmp(arg, "--forget")) c->forget = value;
    else if (!strcmp(arg, "--retain")) c->retain = value;
    else if (!strcmp(arg, "--out")) c->out = value;
    else if (!strcmp(arg, "--start")) c->start = value;
    else if (!strcmp(arg, "--device")) c->device = value;
    else if (!strcmp(arg, "--tau-layers")) {
      if (parse_layers(value, &c->cfg.tau_layers)) return 2;
    } else if (!strcmp(arg, "--method")) {
      if (asu_method_parse(value, &c->cfg.method)) {
        fprintf(stderr, "%s: unknown method '%s'; give asu_gd, asu_kl, ga, gd, npo, simnpo, "
                "idk_nll or me_gd\n", program, value);
        return 2;
      }
    } else {
      fprintf(stderr, "%s: unknown option '%s'\n", program, arg);
      usage(stderr);
      return 2;
    }
  }
  if (!c->model || !c->forget || !c->out) {
    fprintf(stderr, "%s: --model, --forget and --out are required\n", program);
    usage(stderr);
    return 2;
  }
  if (c->cfg.snapshot_every) {
    snprintf(c->snapshots, sizeof c->snapshots, "%s/steps", c->out);
    c->cfg.snapshot_dir = c->snapshots;
  }
  return 0;
}

/* Creates the output folder and its snapshot folder; existing ones are fine. */
static int make_out_dirs(const cli *c, asu_error *err) {
  const char *dirs[2] = {c->out, c->cfg.snapshot_dir};
  for (int i = 0; i < 2; i++)
    if (dirs[i] && mkdir(dirs[i], 0755) != 0 && errno != EEXIST)
      return asu_error_set(err, ASU_ERR_IO, "cannot create %s: %s", dirs[i], strerror(errno));
  return ASU_OK;
}

static int report(void *user, const asu_progress *p) {
  const double *start = user;
  if (p->step % 10 == 0 || p->step == p->total_steps)
    asu_log_info("step %u/%u: loss %.4f (forget %.4f, retain %.4f), held-out NLL %.4f (%.1f s)",
                 p->step, p->total_steps, p->loss, p->forget, p->retain, p->heldout_nll,
                 asu_monotonic_seconds() - *start);
  return 0;
}

int main(int argc, char **argv) {
  cli c = {0};
  int status = parse_cli(argc, argv, &c);
  if (status) return status;
  asu_error err;
  asu_error_clear(&err);
  asu_dataset forget = {0}, retain = {0};
  asu_model *m = NULL;
  asu_lora *start = NULL, *adapter = NULL;
  int rc = make_out_dirs(&c, &err);
  if (!rc) rc = asu_dataset_load(c.forget, &forget, &err);
  if (!rc && c.retain) rc = asu_dataset_load(c.retain, &retain, &err);
  if (!rc) rc = asu_model_load(c.model, c.device, &m, &err);
  if (!rc && c.start && (rc = asu_lora_load(m, c.start, &start, &err)))
    asu_error_wrap(&err, "--start %s: ", c.start);
  c.cfg.start = start;
  double began = asu_monotonic_seconds();
  if (!rc) {
    asu_log_info("%s: %zu forget and %zu retain examples, %u steps", asu_method_name(c.cfg.method),
                 forget.count, retain.count, c.cfg.steps);
    rc = asu_unlearn(m, &c.cfg, &forget, &retain, NULL, report, &began, &adapter, &err);
  }
  if (!rc) rc = asu_lora_save(adapter, c.out, &err);
  if (!rc) asu_log_info("wrote %s after %.1f s", c.out, asu_monotonic_seconds() - began);
  else fprintf(stderr, "%s: %s\n", program, err.message);
  asu_lora_destroy(adapter);
  asu_lora_destroy(start);
  asu_model_destroy(m);
  asu_dataset_free(&forget);
  asu_dataset_free(&retain);
  return rc ? 1 : 0;
}
