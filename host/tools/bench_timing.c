/* Timing for asu-bench: medians of calibrated samples, random buffers, the copy bandwidth and
   the OpenBLAS product that the references use. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* Most repeats of one op in a sample (one command buffer), and the samples taken of runs that
   last over ten times the sample length. */
enum { MAX_REPEATS_PER_SAMPLE = 4096, LONG_RUN_SAMPLES = 3 };

bool bench_selected(const bench_options *o, const char *name, const char *shape) {
  if (!o->filter) return true;
  char row[200];
  snprintf(row, sizeof row, "%s %s", name, shape);
  return strstr(row, o->filter) != NULL;
}

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void bench_sleep(double seconds) {
  struct timespec ts = {.tv_sec = (time_t)seconds,
                        .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&ts, NULL);
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Repeats per sample so that a sample lasts about `target` seconds. A run of one repeat
   includes the fixed cost of a submission, so the time of one more repeat is measured from a
   second, longer run. When one repeat already lasts target / 2 or more, *one is its time (a
   sample in its own right), else 0. */
static int calibrate(bench_run_fn run, void *ctx, double target, uint32_t *repeats, double *one,
                     asu_error *err) {
  double more = 0;
  int rc = run(ctx, 1, one, err);
  if (rc || *one >= target / 2) {
    *repeats = 1;
    return rc;
  }
  double guess = target / (*one > 1e-7 ? *one : 1e-7);
  uint32_t n = guess > 64 ? 64 : (uint32_t)guess + 1;
  if (n < 2) n = 2;
  if ((rc = run(ctx, n, &more, err))) return rc;
  double each = (more - *one) / (n - 1);
  if (each < more / n / 4) each = more / n / 4; /* noise can make the difference tiny */
  double needed = target / each;
  if (needed < 1) *repeats = 1;
  else if (needed > MAX_REPEATS_PER_SAMPLE) *repeats = MAX_REPEATS_PER_SAMPLE;
  else *repeats = (uint32_t)needed;
  *one = 0;
  return ASU_OK;
}

/* Long runs (a training step of a large model) take fewer samples. */
static uint32_t sample_count(const bench_options *o, double one) {
  bool long_run = one > 10 * o->sample_seconds;
  return long_run && o->repeats > LONG_RUN_SAMPLES ? LONG_RUN_SAMPLES : o->repeats;
}

int bench_median(const bench_options *o, bench_run_fn run, void *ctx, double *seconds,
                 asu_error *err) {
  double warm = 0, one = 0;
  uint32_t n = 1;
  int rc = run(ctx, 1, &warm, err);
  if (!rc) rc = calibrate(run, ctx, o->sample_seconds, &n, &one, err);
  uint32_t count = sample_count(o, one), have = one > 0 ? 1 : 0;
  double *samples = rc ? NULL : calloc(count, sizeof *samples);
  if (!rc && !samples) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc && have) samples[0] = one;
  for (uint32_t i = have; !rc && i < count; i++) {
    rc = run(ctx, n, &samples[i], err);
    samples[i] /= n;
  }
  if (!rc) {
    qsort(samples, count, sizeof *samples, compare_doubles);
    uint32_t mid = count / 2;
    *seconds = count % 2 ? samples[mid] : (samples[mid - 1] + samples[mid]) / 2;
  }
  free(samples);
  return rc;
}

typedef struct cmd_run {
  asu_device *dev;
  asu_cmd *cmd;
  bench_record_fn record;
  void *ctx;
} cmd_run;

static int run_cmd(void *ctx, uint32_t n, double *seconds, asu_error *err) {
  cmd_run *c = ctx;
  int rc = c->record(c->ctx, c->cmd, n);
  if (rc) return asu_cmd_submit(c->cmd, err); /* returns the recorded error with its message */
  double start = bench_now();
  rc = asu_cmd_submit(c->cmd, err);
  *seconds = bench_now() - start;
  return rc;
}

int bench_median_cmd(const bench_options *o, asu_device *dev, bench_record_fn record, void *ctx,
                     double *seconds, asu_error *err) {
  cmd_run c = {.dev = dev, .record = record, .ctx = ctx};
  int rc = asu_cmd_begin(dev, &c.cmd, err);
  if (!rc) rc = bench_median(o, run_cmd, &c, seconds, err);
  asu_cmd_destroy(c.cmd);
  return rc;
}

/* ---- Random data. ---- */

static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float *bench_host_floats(size_t n, float scale, uint64_t seed) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  if (!x) return NULL;
  for (size_t i = 0; i < n; i++)
    x[i] = scale * ((float)(next_random(&seed) >> 40) * 0x1p-23f - 1.0f);
  return x;
}

static int upload_new(asu_device *dev, const void *data, size_t bytes, asu_buffer **out,
                      asu_error *err) {
  int rc = asu_buffer_create(dev, bytes, out, err);
  if (!rc) rc = asu_buffer_upload(*out, 0, data, bytes, err);
  return rc;
}

int bench_random_floats(asu_device *dev, size_t n, uint64_t seed, asu_buffer **out,
                        asu_error *err) {
  float *x = bench_host_floats(n, 0.5f, seed);
  if (!x) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory for %zu floats", n);
  for (size_t i = 0; i < n; i++) x[i] += 0.5f;
  int rc = upload_new(dev, x, n * sizeof *x, out, err);
  free(x);
  return rc;
}

int bench_random_ints(asu_device *dev, size_t n, uint32_t range, uint64_t seed, asu_buffer **out,
                      asu_error *err) {
  int32_t *x = malloc((n ? n : 1) * sizeof *x);
  if (!x) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory for %zu ints", n);
  for (size_t i = 0; i < n; i++) x[i] = (int32_t)(next_random(&seed) % range);
  int rc = upload_new(dev, x, n * sizeof *x, out, err);
  free(x);
  return rc;
}

/* ---- References. ---- */

typedef struct copy_run {
  asu_buffer *src, *dst;
  size_t bytes;
} copy_run;

static int record_copies(void *ctx, asu_cmd *cmd, uint32_t n) {
  copy_run *c = ctx;
  for (uint32_t i = 0; i < n; i++) asu_cmd_copy(cmd, c->src, 0, c->dst, 0, c->bytes);
  return ASU_OK;
}

int bench_copy_bandwidth(const bench_options *o, asu_device *dev, size_t bytes, double *per_second,
                         asu_error *err) {
  bytes = (bytes + 3) / 4 * 4;
  copy_run c = {.bytes = bytes};
  double seconds = 0;
  int rc = bench_random_floats(dev, bytes / 4, 99, &c.src, err);
  if (!rc) rc = asu_buffer_create(dev, bytes, &c.dst, err);
  if (!rc) rc = bench_median_cmd(o, dev, record_copies, &c, &seconds, err);
  if (!rc) *per_second = 2.0 * (double)bytes / seconds;
  asu_buffer_destroy(c.src);
  asu_buffer_destroy(c.dst);
  return rc ? asu_error_wrap(err, "buffer copy of %zu bytes: ", bytes) : ASU_OK;
}

void bench_blas_sgemm(const bench_gemm_shape *s, const float *a, const float *b, float *c) {
  int lda = (int)(s->trans_a ? s->m : s->k), ldb = (int)(s->trans_b ? s->k : s->n);
  cblas_sgemm(CblasRowMajor, s->trans_a ? CblasTrans : CblasNoTrans,
              s->trans_b ? CblasTrans : CblasNoTrans, (int)s->m, (int)s->n, (int)s->k, 1.0f, a,
              lda, b, ldb, 0.0f, c, (int)s->n);
}
