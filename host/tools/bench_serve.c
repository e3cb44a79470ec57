/* Generation latency while a training job runs on the same model and device, as in a server:
   the time from one generated token to the next, alone and beside an unlearning job. The job
   submits its steps whole, or in slices of dispatches as the server's jobs do. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "train_internal.h"

/* The dispatches per submission that the server's jobs use. */
#define SERVER_SLICE 32
/* Generations per measurement and tokens per generation: 32 gaps (16 in --quick), so the p99
   row is the largest gap. A token beside whole steps of the 768-wide model waits seconds. */
#define GENERATIONS 2
#define TOKENS(o) ((o)->quick ? 8u : 16u)

typedef struct token_gaps {
  double last;
  double *gaps;
  uint32_t n, cap;
} token_gaps;

static int on_token(void *user, int32_t token, const char *text, size_t len) {
  (void)token, (void)text, (void)len;
  token_gaps *t = user;
  double now = bench_now();
  if (t->n < t->cap) t->gaps[t->n++] = now - t->last;
  t->last = now;
  return 0;
}

/* Greedy generations of `tokens` tokens; each gap is the time since the previous token (or
   since the call, for the first). */
static int time_tokens(asu_model *m, uint32_t generations, uint32_t tokens, token_gaps *t,
                       asu_error *err) {
  asu_sampling sp = {.max_tokens = tokens, .top_p = 1.0f};
  for (uint32_t g = 0; g < generations; g++) {
    t->last = bench_now();
    int rc = asu_generate(m, NULL, "Once upon a time", &sp, on_token, t, err);
    if (rc) return rc;
  }
  return ASU_OK;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of the first n gaps, which it sorts. */
static double quantile(double *gaps, uint32_t n, double q) {
  qsort(gaps, n, sizeof *gaps, compare_doubles);
  uint32_t rank = (uint32_t)ceil(q * n);
  return gaps[rank ? rank - 1 : 0];
}

typedef struct training_job {
  asu_model *m;
  asu_token_set examples;
  asu_unlearn_config cfg;
  atomic_bool started, stop;
  int rc;
  asu_error err;
} training_job;

static int keep_training(void *user, const asu_progress *p) {
  (void)p;
  training_job *job = user;
  atomic_store(&job->started, true);
  return atomic_load(&job->stop);
}

static void *train(void *arg) {
  training_job *job = arg;
  asu_lora *lora = NULL;
  job->rc = asu_unlearn_tokens(job->m, &job->cfg, &job->examples,
                               (uint32_t)job->examples.count / 2, NULL, keep_training, job, &lora,
                               NULL, &job->err);
  asu_lora_destroy(lora);
  atomic_store(&job->started, true);
  return NULL;
}

/* Token gaps measured while a job trains, submitting dispatches_per_submit at a time. */
static int time_with_job(const bench_options *o, asu_model *m, const asu_token_set *examples,
                         uint32_t dispatches_per_submit, token_gaps *t, asu_error *err) {
  training_job job = {.m = m, .examples = *examples};
  asu_unlearn_defaults(&job.cfg);
  job.cfg.steps = 1000000;
  job.cfg.dispatches_per_submit = dispatches_per_submit;
  atomic_init(&job.started, false);
  atomic_init(&job.stop, false);
  pthread_t thread;
  if (pthread_create(&thread, NULL, train, &job) != 0)
    return asu_error_set(err, ASU_ERR_INTERNAL, "cannot start the training thread");
  while (!atomic_load(&job.started)) bench_sleep(0.001);
  int rc = job.rc ? ASU_OK : time_tokens(m, GENERATIONS, TOKENS(o), t, err);
  atomic_store(&job.stop, true);
  pthread_join(thread, NULL);
  if (!rc && job.rc != ASU_ERR_CANCELLED) {
    *err = job.err;
    rc = job.rc ? job.rc : asu_error_set(err, ASU_ERR_INTERNAL, "the job ended by itself");
  }
  return rc;
}

int bench_serve_latency(const bench_options *o, asu_model *m, const char *label,
                        bench_results *r, asu_error *err) {
  uint32_t cap = GENERATIONS * TOKENS(o);
  token_gaps alone = {.gaps = malloc(cap * sizeof(double)), .cap = cap};
  token_gaps sliced = {.gaps = malloc(cap * sizeof(double)), .cap = cap};
  token_gaps whole = {.gaps = malloc(cap * sizeof(double)), .cap = cap};
  asu_token_set examples = {0};
  int rc = alone.gaps && sliced.gaps && whole.gaps
               ? bench_train_examples(m, o->train_examples, o->train_tokens, &examples, err)
               : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = time_tokens(m, 1, TOKENS(o), &alone, err); /* warm-up */
  alone.n = 0;
  if (!rc) rc = time_tokens(m, GENERATIONS, TOKENS(o), &alone, err);
  if (!rc) rc = time_with_job(o, m, &examples, SERVER_SLICE, &sliced, err);
  if (!rc) rc = time_with_job(o, m, &examples, 0, &whole, err);
  if (!rc && (!alone.n || !sliced.n || !whole.n))
    rc = asu_error_set(err, ASU_ERR_INTERNAL, "no token was generated");
  if (!rc) {
    char shape[80];
    double p50 = 1e3 * quantile(alone.gaps, alone.n, 0.5);
    double p99 = 1e3 * quantile(alone.gaps, alone.n, 0.99);
    snprintf(shape, sizeof shape, "%s training, %u per submit", label, SERVER_SLICE);
    bench_add(r, "token_latency_p50", shape, 1e3 * quantile(sliced.gaps, sliced.n, 0.5), "ms",
              "alone_p50", p50);
    bench_add(r, "token_latency_p99", shape, 1e3 * quantile(sliced.gaps, sliced.n, 0.99), "ms",
              "alone_p99", p99);
    snprintf(shape, sizeof shape, "%s training, whole steps", label);
    bench_add(r, "token_latency_p50", shape, 1e3 * quantile(whole.gaps, whole.n, 0.5), "ms",
              "alone_p50", p50);
    bench_add(r, "token_latency_p99", shape, 1e3 * quantile(whole.gaps, whole.n, 0.99), "ms",
              "alone_p99", p99);
  }
  asu_token_set_free(&examples);
  free(alone.gaps);
  free(sliced.gaps);
  free(whole.gaps);
  return rc;
}
