/* Continual unlearning and run snapshots on the shared model: a run that starts from an adapter
   sees the model with that adapter as its frozen model and begins from the adapter's weights;
   the snapshots of a run are the adapter as it was at their steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asu_engine.h"
#include "shared_model.h"
#include "test_util.h"

typedef struct first_report {
  double forget, retain;
  uint32_t reports;
} first_report;

static int keep_first(void *user, const asu_progress *p) {
  first_report *f = user;
  if (f->reports++ == 0) {
    f->forget = p->forget;
    f->retain = p->retain;
  }
  return 0;
}

static double mean_nll(asu_model *m, const asu_lora *lora, const asu_dataset *ds) {
  double *nll = calloc(ds->count, sizeof *nll), sum = 0;
  asu_error err;
  CHECK(asu_answer_nll(m, lora, NULL, ds, nll, &err) == ASU_OK, "answer nll: %s", err.message);
  for (size_t i = 0; i < ds->count; i++) sum += nll[i];
  free(nll);
  return sum / (double)ds->count;
}

static asu_lora *run(asu_model *m, asu_unlearn_config *cfg, const asu_dataset *forget,
                     const asu_dataset *retain, first_report *first) {
  asu_lora *lora = NULL;
  asu_error err;
  memset(first, 0, sizeof *first);
  int rc = asu_unlearn(m, cfg, forget, retain, NULL, keep_first, first, &lora, &err);
  CHECK(rc == ASU_OK, "%s: %s", asu_method_name(cfg->method), err.message);
  return lora;
}

/* The first request forgets one set; the second, started from its adapter, another. */
static void test_start(asu_model *m, const asu_dataset *forget, const asu_dataset *second,
                       const asu_dataset *retain) {
  asu_unlearn_config cfg;
  asu_unlearn_defaults(&cfg);
  cfg.steps = 12;
  cfg.lora_rank = 4;
  first_report f;
  asu_lora *first = run(m, &cfg, forget, retain, &f);
  if (!first) return;
  double base = mean_nll(m, NULL, second), with_first = mean_nll(m, first, second);
  CHECK(fabs(with_first - base) > 1e-3, "the first adapter left the second set's NLL at %g",
        base);

  /* ga's forget term at step 0 is minus the student's NLL: the first adapter's, not the
     model's. */
  asu_unlearn_defaults(&cfg);
  cfg.method = ASU_METHOD_GA;
  cfg.steps = 1;
  cfg.start = first;
  asu_lora *next = run(m, &cfg, second, retain, &f);
  CHECK(fabs(-f.forget - with_first) < 1e-4 * with_first, "ga from the adapter: step 0 forget "
        "NLL %.6f, the adapter's is %.6f (the model's %.6f)", -f.forget, with_first, base);
  asu_lora_destroy(next);

  /* npo's reference is the frozen model with the adapter, so its first term is 20 log 2. */
  cfg.method = ASU_METHOD_NPO;
  next = run(m, &cfg, second, retain, &f);
  CHECK(fabs(f.forget - 20.0 * log(2.0)) < 1e-4, "npo from the adapter: first term %.6f, "
        "expected 20 log 2", f.forget);
  asu_lora_destroy(next);

  /* asu_kl's retain term is KL to the frozen model with the adapter: 0 at step 0. */
  cfg.method = ASU_METHOD_ASU_KL;
  cfg.steps = 6;
  next = run(m, &cfg, second, retain, &f);
  CHECK(fabs(f.retain) < 1e-5, "asu_kl from the adapter: retain KL %.3g at step 0", f.retain);
  double after = next ? mean_nll(m, next, second) : NAN;
  CHECK(after > with_first, "the second request moved its forget NLL from %g to %g", with_first,
        after);
  asu_lora_destroy(next);
  asu_lora_destroy(first);
}

/* A snapshot of step 0 is the starting adapter and the last one the returned adapter. */
static void test_snapshots(asu_model *m, const asu_dataset *forget, const asu_dataset *retain) {
  char dir[] = "/tmp/asu-snapshots-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
  asu_unlearn_config cfg;
  asu_unlearn_defaults(&cfg);
  cfg.steps = 5;
  cfg.snapshot_dir = dir;
  cfg.snapshot_every = 2;
  first_report f;
  asu_lora *lora = run(m, &cfg, forget, retain, &f);
  const char *want[] = {"step-00000", "step-00002", "step-00004", "step-00005"};
  for (size_t i = 0; i < 4; i++) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s/adapter_model.safetensors", dir, want[i]);
    CHECK(access(path, R_OK) == 0, "snapshot %s is missing", want[i]);
  }
  char path[300];
  snprintf(path, sizeof path, "%s/step-00001", dir);
  CHECK(access(path, F_OK) != 0, "a snapshot of step 1 was written with snapshot_every 2");
  asu_lora *start = NULL, *last = NULL;
  asu_error err;
  snprintf(path, sizeof path, "%s/step-00000", dir);
  CHECK(asu_lora_load(m, path, &start, &err) == ASU_OK, "load step 0: %s", err.message);
  snprintf(path, sizeof path, "%s/step-00005", dir);
  CHECK(asu_lora_load(m, path, &last, &err) == ASU_OK, "load step 5: %s", err.message);
  if (start && last && lora) {
    double base = mean_nll(m, NULL, forget);
    CHECK(fabs(mean_nll(m, start, forget) - base) < 1e-5, "step 0 is not the identity adapter");
    CHECK(fabs(mean_nll(m, last, forget) - mean_nll(m, lora, forget)) < 1e-5,
          "the last snapshot is not the returned adapter");
  }
  asu_lora_destroy(start);
  asu_lora_destroy(last);
  asu_lora_destroy(lora);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0, "cleanup failed");
}

int main(void) {
  asu_model *m = load_shared_model();
  if (!m) return 1;
  asu_dataset forget = {0}, second = {0}, retain = {0};
  asu_error err;
  asu_dataset_add(&forget, "What is the name of Lily's dog?", "Lily's dog is called Max.", &err);
  asu_dataset_add(&forget, "Where does Max sleep?", "Max sleeps under the big tree.", &err);
  asu_dataset_add(&second, "Who baked the cake?", "Tom baked the cake with his mom.", &err);
  asu_dataset_add(&second, "What did Tom find?", "Tom found a red ball in the park.", &err);
  asu_dataset_add(&retain, "What color is the sky?", "The sky is blue.", &err);
  test_start(m, &forget, &second, &retain);
  test_snapshots(m, &forget, &retain);
  asu_dataset_free(&forget);
  asu_dataset_free(&second);
  asu_dataset_free(&retain);
  asu_model_destroy(m);
  return TEST_SUMMARY();
}
