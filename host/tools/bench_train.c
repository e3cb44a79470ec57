/* ASU training as asu_unlearn runs it, on random token ids: its steps timed through the progress
   reports, and its teacher pass by the trainer itself.
   Half the examples are forget examples (KL to the teacher at tau 3) and half retain examples
   (NLL). The adapter is the default one, rank 8 on every projection, trained with AdamW. */
#include <math.h>
#include <stdlib.h>

#include "bench.h"
#include "train_internal.h"

int bench_train_examples(const asu_model *m, uint32_t n, uint32_t tokens, asu_token_set *set,
                         asu_error *err) {
  uint32_t vocab = m->cfg.vocab;
  set->items = calloc(n, sizeof *set->items);
  if (!set->items) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  uint64_t state = 11;
  for (uint32_t e = 0; e < n; e++) {
    int32_t *ids = malloc(tokens * sizeof *ids);
    if (!ids) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < tokens; i++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      ids[i] = i == 0 ? 1 : (int32_t)(3 + (state >> 33) % (vocab - 3));
    }
    set->items[set->count++] = (asu_tokens){.ids = ids, .n = tokens, .answer_begin = tokens / 2};
  }
  return ASU_OK;
}

/* The time of every progress report since the job started. */
typedef struct report_times {
  double start;
  double *at;
  uint32_t n, cap;
} report_times;

static int on_report(void *user, const asu_progress *p) {
  (void)p;
  report_times *t = user;
  if (t->n < t->cap) t->at[t->n++] = bench_now() - t->start;
  return 0;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Report k comes after step k. The last step has no backward pass, and step 0 may differ from
   the rest as the first, so steps 1 .. steps - 1 are timed, and their median is one step. */
static double median_step(const report_times *t) {
  uint32_t n = t->n - 2;
  double *steps = malloc(n * sizeof *steps);
  for (uint32_t k = 0; k < n; k++) steps[k] = t->at[k + 1] - t->at[k];
  qsort(steps, n, sizeof *steps, compare_doubles);
  double median = n % 2 ? steps[n / 2] : 0.5 * (steps[n / 2 - 1] + steps[n / 2]);
  free(steps);
  return median;
}

int bench_train_times(const bench_options *o, asu_model *m, uint32_t *rows,
                      double *teacher_seconds, double *step_seconds, asu_error *err) {
  asu_token_set examples = {0};
  asu_unlearn_config cfg;
  asu_unlearn_defaults(&cfg);
  cfg.steps = o->repeats + 1;
  report_times times = {.cap = cfg.steps + 1};
  times.at = malloc(times.cap * sizeof *times.at);
  int rc = times.at ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = bench_train_examples(m, o->train_examples, o->train_tokens, &examples, err);
  uint32_t n_forget = o->train_examples > 1 ? o->train_examples / 2 : 1;
  asu_lora *lora = NULL;
  /* A short job first, so that the timed one compiles no kernel. */
  asu_unlearn_config warm_up = cfg;
  warm_up.steps = 1;
  if (!rc)
    rc = asu_unlearn_tokens(m, &warm_up, &examples, n_forget, NULL, NULL, NULL, &lora, NULL, err);
  asu_lora_destroy(lora);
  lora = NULL;
  times.start = bench_now();
  if (!rc)
    rc = asu_unlearn_tokens(m, &cfg, &examples, n_forget, NULL, on_report, &times, &lora,
                            teacher_seconds, err);
  if (!rc) {
    *step_seconds = median_step(&times);
    *rows = o->train_examples * o->train_tokens;
  }
  asu_lora_destroy(lora);
  asu_token_set_free(&examples);
  free(times.at);
  return rc;
}
