/* Softmax (forward and backward), log-softmax, cross-entropy and KL kernels against a double-precision C reference, and the
   fused gradients against central finite differences of the reference loss. Vocabulary sizes
   include awkward ones (1, 7, 33, 257, 1000) and the real ones (512, 32000). Some rows carry
   large offsets to test the max subtraction. */
#include "kernel_check.h"

static const uint32_t vocabs[] = {1, 7, 33, 257, 512, 1000, 32000};

/* Each test uses ROWS rows and runs the op on [ROW_BEGIN, ROW_END). The rows outside must keep
   the NaN the test fills them with. */
enum { ROWS = 6, ROW_BEGIN = 1, ROW_END = 5 };
static const float row_offsets[ROWS] = {0.0f, 0.0f, 500.0f, -300.0f, 3.0f, 0.0f};
static const float row_weights[ROWS] = {1.0f, 1.0f, 0.0f, 0.5f, 2.0f, 1.0f};

static const uint32_t nan_bits = 0x7fc00000u;

/* logits[r][j] = uniform(-8, 8) + row_offsets[r]. */
static float *random_logits(uint32_t vocab) {
  float *x = kc_random((size_t)ROWS * vocab, -8.0f, 8.0f);
  for (uint32_t r = 0; r < ROWS; r++)
    for (uint32_t j = 0; j < vocab; j++) x[(size_t)r * vocab + j] += row_offsets[r];
  return x;
}

static double *to_double(const float *x, size_t n) {
  double *y = malloc((n ? n : 1) * sizeof *y);
  for (size_t i = 0; i < n; i++) y[i] = x[i];
  return y;
}

static double reference_logsumexp(const double *x, uint32_t n) {
  double m = -INFINITY, s = 0;
  for (uint32_t j = 0; j < n; j++) m = fmax(m, x[j]);
  for (uint32_t j = 0; j < n; j++) s += exp(x[j] - m);
  return m + log(s);
}

/* Unweighted cross-entropy of one row. */
static double reference_cross_entropy(const double *x, uint32_t n, int32_t target) {
  return reference_logsumexp(x, n) - x[target];
}

/* Unweighted KL(p || softmax(x)) of one row, p = exp(logp); terms with p == 0 count as 0. */
static double reference_kl(const double *logp, const double *x, uint32_t n) {
  double lse = reference_logsumexp(x, n), kl = 0;
  for (uint32_t j = 0; j < n; j++)
    if (logp[j] > -INFINITY) kl += exp(logp[j]) * (logp[j] - (x[j] - lse));
  return kl;
}

/* Checks that every float of the rows outside [ROW_BEGIN, ROW_END) of a ROWS x cols download
   is still the NaN the buffer was filled with. */
static void check_untouched(const char *label, const float *got, uint32_t cols) {
  size_t changed = 0;
  for (uint32_t r = 0; r < ROWS; r++) {
    if (r >= ROW_BEGIN && r < ROW_END) continue;
    for (uint32_t j = 0; j < cols; j++) {
      uint32_t bits;
      memcpy(&bits, &got[(size_t)r * cols + j], 4);
      changed += bits != nan_bits;
    }
  }
  CHECK(changed == 0, "%s: %zu values outside the row range were written", label, changed);
}

/* A buffer of ROWS x cols floats, all NaN. */
static asu_buffer *nan_buffer(asu_device *dev, uint32_t cols) {
  size_t bytes = (size_t)ROWS * cols * 4;
  asu_buffer *buf = kc_buffer(dev, NULL, bytes);
  asu_cmd *cmd = kc_cmd(dev);
  asu_cmd_fill(cmd, buf, 0, bytes, nan_bits);
  kc_submit(cmd, "NaN fill");
  asu_cmd_destroy(cmd);
  return buf;
}

static void test_log_softmax(asu_device *dev, uint32_t vocab) {
  char label[64];
  snprintf(label, sizeof label, "log_softmax vocab %u", vocab);
  size_t n = (size_t)ROWS * vocab;
  float *x = random_logits(vocab);
  asu_buffer *bx = kc_buffer(dev, x, n * 4), *by = nan_buffer(dev, vocab);
  asu_cmd *cmd = kc_cmd(dev);
  int rc = asu_op_log_softmax(cmd, bx, by, ROW_BEGIN, ROW_END, vocab);
  CHECK(rc == ASU_OK, "%s: returned %d", label, rc);
  CHECK(kc_submit(cmd, label) == ASU_OK, "%s: submit failed", label);
  float *y = malloc(n * 4);
  kc_download(by, y, n * 4);

  double *xd = to_double(x, n);
  double worst = 0;
  for (uint32_t r = ROW_BEGIN; r < ROW_END; r++) {
    const double *row = xd + (size_t)r * vocab;
    double lse = reference_logsumexp(row, vocab);
    for (uint32_t j = 0; j < vocab; j++) {
      double expected = row[j] - lse;
      worst = fmax(worst, fabs(y[(size_t)r * vocab + j] - expected) / (1 + fabs(expected)));
    }
  }
  CHECK(worst < 2e-6, "%s: max relative error %g", label, worst);
  check_untouched(label, y, vocab);

  asu_cmd_destroy(cmd);
  asu_buffer_destroy(bx);
  asu_buffer_destroy(by);
  free(x), free(y), free(xd);
}

/* Compares a device gradient (ROWS x vocab, rows in range only) with finite differences of
   row_loss, the weighted loss of one row as a function of its logits. Small vocabularies check
   every element, larger ones 16 random elements and one random direction per row. */
static void check_finite_differences(const char *label, const float *grad, double *xd,
                                     uint32_t vocab,
                                     double (*row_loss)(const double *x, uint32_t row,
                                                        const void *ctx),
                                     const void *ctx) {
  const double eps = 1e-4;
  bool full = vocab <= 1000;
  double worst = 0, worst_dir = 0;
  for (uint32_t r = ROW_BEGIN; r < ROW_END; r++) {
    double *x = xd + (size_t)r * vocab;
    const float *g = grad + (size_t)r * vocab;
    double grad_rms = 0;
    for (uint32_t j = 0; j < vocab; j++) grad_rms += (double)g[j] * g[j];
    grad_rms = sqrt(grad_rms / vocab);

    uint32_t samples = full ? vocab : 16;
    for (uint32_t s = 0; s < samples; s++) {
      uint32_t j = full ? s : kc_below(vocab);
      double saved = x[j];
      x[j] = saved + eps;
      double plus = row_loss(x, r, ctx);
      x[j] = saved - eps;
      double minus = row_loss(x, r, ctx);
      x[j] = saved;
      double numeric = (plus - minus) / (2 * eps);
      worst = fmax(worst, fabs(g[j] - numeric) / fmax(fmax(fabs(numeric), grad_rms), 1e-6));
    }
    if (full) continue;

    double *dir = malloc(vocab * sizeof *dir), *shifted = malloc(vocab * sizeof *shifted);
    double analytic = 0;
    for (uint32_t j = 0; j < vocab; j++) {
      dir[j] = kc_uniform(-1, 1);
      analytic += g[j] * dir[j];
    }
    for (uint32_t j = 0; j < vocab; j++) shifted[j] = x[j] + eps * dir[j];
    double plus = row_loss(shifted, r, ctx);
    for (uint32_t j = 0; j < vocab; j++) shifted[j] = x[j] - eps * dir[j];
    double minus = row_loss(shifted, r, ctx);
    double numeric = (plus - minus) / (2 * eps);
    /* A random direction's derivative is about rms(grad) * sqrt(vocab / 3) in size. */
    double scale = fmax(fabs(numeric), fmax(grad_rms * sqrt(vocab / 3.0), 1e-6));
    worst_dir = fmax(worst_dir, fabs(analytic - numeric) / scale);
    free(dir), free(shifted);
  }
  CHECK(worst < 2e-3, "%s: gradient vs finite differences: relative error %g", label, worst);
  CHECK(worst_dir < 1e-3, "%s: gradient along a random direction: relative error %g", label,
        worst_dir);
}

/* Loss whose gradient is the softmax backward of upstream gradient dy: sum_j dy_j softmax(x)_j. */
typedef struct softmax_ctx {
  const double *dy;
  uint32_t vocab;
} softmax_ctx;

static double softmax_row_loss(const double *x, uint32_t row, const void *ctx) {
  const softmax_ctx *c = ctx;
  double lse = reference_logsumexp(x, c->vocab), sum = 0;
  for (uint32_t j = 0; j < c->vocab; j++) sum += c->dy[(size_t)row * c->vocab + j] * exp(x[j] - lse);
  return sum;
}

static void test_softmax(asu_device *dev, uint32_t vocab) {
  char label[64];
  snprintf(label, sizeof label, "softmax vocab %u", vocab);
  size_t n = (size_t)ROWS * vocab;
  float *x = random_logits(vocab), *dy = kc_random(n, -1.0f, 1.0f);
  asu_buffer *bx = kc_buffer(dev, x, n * 4), *by = nan_buffer(dev, vocab);
  asu_buffer *bdy = kc_buffer(dev, dy, n * 4), *bdx = nan_buffer(dev, vocab);
  asu_cmd *cmd = kc_cmd(dev);
  int rc = asu_op_softmax(cmd, bx, by, ROW_BEGIN, ROW_END, vocab);
  CHECK(rc == ASU_OK, "%s: returned %d", label, rc);
  rc = asu_op_softmax_backward(cmd, by, bdy, bdx, ROW_BEGIN, ROW_END, vocab);
  CHECK(rc == ASU_OK, "%s backward: returned %d", label, rc);
  CHECK(kc_submit(cmd, label) == ASU_OK, "%s: submit failed", label);
  float *y = malloc(n * 4), *dx = malloc(n * 4);
  kc_download(by, y, n * 4);
  kc_download(bdx, dx, n * 4);

  double *xd = to_double(x, n), *dyd = to_double(dy, n);
  double worst = 0;
  for (uint32_t r = ROW_BEGIN; r < ROW_END; r++) {
    const double *row = xd + (size_t)r * vocab;
    double lse = reference_logsumexp(row, vocab);
    for (uint32_t j = 0; j < vocab; j++)
      worst = fmax(worst, fabs(y[(size_t)r * vocab + j] - exp(row[j] - lse)));
  }
  CHECK(worst < 1e-6, "%s: max absolute error %g", label, worst);
  check_untouched(label, y, vocab);
  check_untouched(label, dx, vocab);
  softmax_ctx ctx = {dyd, vocab};
  char backward_label[80];
  snprintf(backward_label, sizeof backward_label, "%s backward", label);
  check_finite_differences(backward_label, dx, xd, vocab, softmax_row_loss, &ctx);

  asu_cmd_destroy(cmd);
  asu_buffer_destroy(bx);
  asu_buffer_destroy(by);
  asu_buffer_destroy(bdy);
  asu_buffer_destroy(bdx);
  free(x), free(y), free(dy), free(dx), free(xd), free(dyd);
}

typedef struct cross_entropy_ctx {
  const int32_t *targets;
  uint32_t vocab;
} cross_entropy_ctx;

static double cross_entropy_row_loss(const double *x, uint32_t row, const void *ctx) {
  const cross_entropy_ctx *c = ctx;
  if (row_weights[row] == 0) return 0;
  return row_weights[row] * reference_cross_entropy(x, c->vocab, c->targets[row]);
}

static void test_cross_entropy(asu_device *dev, uint32_t vocab) {
  char label[64];
  snprintf(label, sizeof label, "cross_entropy vocab %u", vocab);
  size_t n = (size_t)ROWS * vocab;
  float *x = random_logits(vocab);
  int32_t targets[ROWS];
  for (uint32_t r = 0; r < ROWS; r++) targets[r] = (int32_t)kc_below(vocab);
  targets[2] = -12345;  /* weight 0: the target must not be read */

  asu_buffer *bx = kc_buffer(dev, x, n * 4), *bt = kc_buffer(dev, targets, sizeof targets);
  asu_buffer *bw = kc_buffer(dev, row_weights, sizeof row_weights);
  asu_buffer *bloss = nan_buffer(dev, 1), *bdx = nan_buffer(dev, vocab);
  asu_cmd *cmd = kc_cmd(dev);
  int rc = asu_op_cross_entropy(cmd, bx, bt, bw, bloss, bdx, ROW_BEGIN, ROW_END, vocab);
  CHECK(rc == ASU_OK, "%s: returned %d", label, rc);
  CHECK(kc_submit(cmd, label) == ASU_OK, "%s: submit failed", label);
  float loss[ROWS], *dx = malloc(n * 4);
  kc_download(bloss, loss, sizeof loss);
  kc_download(bdx, dx, n * 4);

  double *xd = to_double(x, n);
  double loss_err = 0, grad_diff = 0, grad_norm = 0;
  for (uint32_t r = ROW_BEGIN; r < ROW_END; r++) {
    const double *row = xd + (size_t)r * vocab;
    double w = row_weights[r];
    double expected = w == 0 ? 0 : w * reference_cross_entropy(row, vocab, targets[r]);
    loss_err = fmax(loss_err, fabs(loss[r] - expected) / (1 + fabs(expected)));
    double lse = reference_logsumexp(row, vocab);
    for (uint32_t j = 0; j < vocab; j++) {
      double g = w == 0 ? 0 : w * (exp(row[j] - lse) - ((int32_t)j == targets[r]));
      grad_diff = fmax(grad_diff, fabs(dx[(size_t)r * vocab + j] - g));
      grad_norm = fmax(grad_norm, fabs(g));
    }
  }
  CHECK(loss_err < 1e-5, "%s: loss relative error %g", label, loss_err);
  CHECK(grad_diff <= 1e-4 * fmax(grad_norm, 1e-3), "%s: dlogits max error %g (max |grad| %g)",
        label, grad_diff, grad_norm);
  CHECK(loss[2] == 0.0f, "%s: loss of a weight-0 row is %g", label, loss[2]);
  size_t nonzero = 0;
  for (uint32_t j = 0; j < vocab; j++) nonzero += dx[2 * (size_t)vocab + j] != 0.0f;
  CHECK(nonzero == 0, "%s: %zu nonzero gradients in a weight-0 row", label, nonzero);
  check_untouched(label, dx, vocab);
  check_untouched(label, loss, 1);

  cross_entropy_ctx ctx = {targets, vocab};
  check_finite_differences(label, dx, xd, vocab, cross_entropy_row_loss, &ctx);

  asu_cmd_destroy(cmd);
  asu_buffer *buffers[] = {bx, bt, bw, bloss, bdx};
  for (size_t b = 0; b < 5; b++) asu_buffer_destroy(buffers[b]);
  free(x), free(dx), free(xd);
}

typedef struct kl_ctx {
  const double *teacher_logp;
  uint32_t vocab;
} kl_ctx;

static double kl_row_loss(const double *x, uint32_t row, const void *ctx) {
  const kl_ctx *c = ctx;
  if (row_weights[row] == 0) return 0;
  return row_weights[row] * reference_kl(c->teacher_logp + (size_t)row * c->vocab, x, c->vocab);
}

/* Teacher log-probabilities: log-softmax of random logits, with every third entry of row 4 set
   to probability 0 (log p = -inf) when the vocabulary has at least 7 entries. */
static float *random_teacher_logp(uint32_t vocab) {
  size_t n = (size_t)ROWS * vocab;
  float *logits = random_logits(vocab), *logp = malloc(n * 4);
  for (uint32_t r = 0; r < ROWS; r++) {
    float *row = logits + (size_t)r * vocab;
    if (r == 4 && vocab >= 7)
      for (uint32_t j = 0; j < vocab; j += 3) row[j] = -INFINITY;
    double m = -INFINITY, s = 0;
    for (uint32_t j = 0; j < vocab; j++) m = fmax(m, row[j]);
    for (uint32_t j = 0; j < vocab; j++) s += exp(row[j] - m);
    for (uint32_t j = 0; j < vocab; j++) logp[(size_t)r * vocab + j] = (float)(row[j] - m - log(s));
  }
  free(logits);
  return logp;
}

static void test_kl(asu_device *dev, uint32_t vocab) {
  char label[64];
  snprintf(label, sizeof label, "kl vocab %u", vocab);
  size_t n = (size_t)ROWS * vocab;
  float *x = random_logits(vocab), *logp = random_teacher_logp(vocab);

  asu_buffer *bp = kc_buffer(dev, logp, n * 4), *bx = kc_buffer(dev, x, n * 4);
  asu_buffer *bw = kc_buffer(dev, row_weights, sizeof row_weights);
  asu_buffer *bloss = nan_buffer(dev, 1), *bdx = nan_buffer(dev, vocab);
  asu_cmd *cmd = kc_cmd(dev);
  int rc = asu_op_kl(cmd, bp, bx, bw, bloss, bdx, ROW_BEGIN, ROW_END, vocab);
  CHECK(rc == ASU_OK, "%s: returned %d", label, rc);
  CHECK(kc_submit(cmd, label) == ASU_OK, "%s: submit failed", label);
  float loss[ROWS], *dx = malloc(n * 4);
  kc_download(bloss, loss, sizeof loss);
  kc_download(bdx, dx, n * 4);

  double *xd = to_double(x, n), *logpd = to_double(logp, n);
  double loss_err = 0, grad_diff = 0, grad_norm = 0;
  for (uint32_t r = ROW_BEGIN; r < ROW_END; r++) {
    const double *row = xd + (size_t)r * vocab, *lp = logpd + (size_t)r * vocab;
    double w = row_weights[r];
    double expected = w == 0 ? 0 : w * reference_kl(lp, row, vocab);
    /* The loss is a difference of terms near log(vocab), so compare against that size. */
    loss_err = fmax(loss_err, fabs(loss[r] - expected) / (1 + fabs(expected) + log(vocab)));
    double lse = reference_logsumexp(row, vocab);
    for (uint32_t j = 0; j < vocab; j++) {
      double g = w == 0 ? 0 : w * (exp(row[j] - lse) - exp(lp[j]));
      grad_diff = fmax(grad_diff, fabs(dx[(size_t)r * vocab + j] - g));
      grad_norm = fmax(grad_norm, fabs(g));
    }
  }
  CHECK(loss_err < 1e-5, "%s: loss relative error %g", label, loss_err);
  CHECK(grad_diff <= 1e-4 * fmax(grad_norm, 1e-3), "%s: dlogits max error %g (max |grad| %g)",
        label, grad_diff, grad_norm);
  CHECK(loss[2] == 0.0f, "%s: loss of a weight-0 row is %g", label, loss[2]);
  size_t nonzero = 0;
  for (uint32_t j = 0; j < vocab; j++) nonzero += dx[2 * (size_t)vocab + j] != 0.0f;
  CHECK(nonzero == 0, "%s: %zu nonzero gradients in a weight-0 row", label, nonzero);
  check_untouched(label, dx, vocab);
  check_untouched(label, loss, 1);

  kl_ctx ctx = {logpd, vocab};
  check_finite_differences(label, dx, xd, vocab, kl_row_loss, &ctx);

  asu_cmd_destroy(cmd);
  asu_buffer *buffers[] = {bp, bx, bw, bloss, bdx};
  for (size_t b = 0; b < 5; b++) asu_buffer_destroy(buffers[b]);
  free(x), free(logp), free(dx), free(xd), free(logpd);
}

/* More rows than one grid dimension allows, so the wrapper spreads the rows over x and y. */
static void test_many_rows(asu_device *dev) {
  const uint32_t rows = asu_device_get_info(dev)->max_workgroup_count[0] + 7, vocab = 7;
  size_t n = (size_t)rows * vocab;
  float *x = kc_random(n, -4.0f, 4.0f), *y = malloc(n * 4);
  asu_buffer *bx = kc_buffer(dev, x, n * 4), *by = kc_buffer(dev, NULL, n * 4);
  asu_cmd *cmd = kc_cmd(dev);
  int rc = asu_op_log_softmax(cmd, bx, by, 0, rows, vocab);
  CHECK(rc == ASU_OK, "log_softmax %u rows: returned %d", rows, rc);
  CHECK(kc_submit(cmd, "many rows") == ASU_OK, "log_softmax %u rows: submit failed", rows);
  kc_download(by, y, n * 4);
  double worst = 0;
  for (uint32_t r = 0; r < rows; r++) {
    double row[7];
    for (uint32_t j = 0; j < vocab; j++) row[j] = x[(size_t)r * vocab + j];
    double lse = reference_logsumexp(row, vocab);
    for (uint32_t j = 0; j < vocab; j++)
      worst = fmax(worst, fabs(y[(size_t)r * vocab + j] - (row[j] - lse)));
  }
  CHECK(worst < 1e-5, "log_softmax %u rows: max error %g", rows, worst);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(bx);
  asu_buffer_destroy(by);
  free(x), free(y);
}

/* Checks that a recorded op failed with `expected_rc` and a message containing `expected`. */
static void expect_failure(asu_cmd *cmd, int rc, int expected_rc, const char *label,
                           const char *expected) {
  asu_error err = {0};
  asu_cmd_status(cmd, &err);
  CHECK(rc == expected_rc, "%s: returned %d", label, rc);
  CHECK(strstr(err.message, expected) != NULL, "%s: message '%s' lacks '%s'", label, err.message,
        expected);
  asu_cmd_destroy(cmd);
}

static void test_invalid_arguments(asu_device *dev) {
  asu_buffer *big = kc_buffer(dev, NULL, 4096), *small = kc_buffer(dev, NULL, 16);
  asu_cmd *cmd = kc_cmd(dev);
  int rc = asu_op_log_softmax(cmd, small, big, 0, 2, 7);
  expect_failure(cmd, rc, ASU_ERR_INVALID, "log_softmax small x", "log_softmax (rows [0, 2), 7 columns)");
  cmd = kc_cmd(dev);
  rc = asu_op_log_softmax(cmd, big, big, 3, 2, 7);
  expect_failure(cmd, rc, ASU_ERR_INVALID, "log_softmax reversed rows", "row_begin <= row_end");
  cmd = kc_cmd(dev);
  rc = asu_op_cross_entropy(cmd, big, big, big, big, big, 0, 2, 0);
  expect_failure(cmd, rc, ASU_ERR_INVALID, "cross_entropy vocab 0", "at least one column");
  cmd = kc_cmd(dev);
  rc = asu_op_cross_entropy(cmd, big, small, big, big, big, 0, 5, 7);
  expect_failure(cmd, rc, ASU_ERR_INVALID, "cross_entropy small targets", "targets");
  cmd = kc_cmd(dev);
  rc = asu_op_cross_entropy(cmd, big, big, big, big, small, 0, 2, 7);
  expect_failure(cmd, rc, ASU_ERR_INVALID, "cross_entropy small dlogits", "dlogits");
  cmd = kc_cmd(dev);
  rc = asu_op_kl(cmd, small, big, big, big, big, 0, 2, 7);
  expect_failure(cmd, rc, ASU_ERR_INVALID, "kl small teacher_logp", "teacher_logp");
  cmd = kc_cmd(dev);
  rc = asu_op_kl(cmd, big, big, NULL, big, big, 0, 2, 7);
  expect_failure(cmd, rc, ASU_ERR_INVALID, "kl missing weights", "weights");

  /* An empty row range records nothing and succeeds. */
  cmd = kc_cmd(dev);
  CHECK(asu_op_kl(cmd, big, big, big, big, big, 2, 2, 7) == ASU_OK, "kl empty range failed");
  CHECK(kc_submit(cmd, "empty range") == ASU_OK, "kl empty range: submit failed");
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(big);
  asu_buffer_destroy(small);
}

/* Makes the wrappers pick the workgroup sizes they use on GPUs (several subgroups per row) on
   this device too, so that a CPU driver also runs the reductions across subgroups. The wrappers
   choose by device type, so the test overrides the type in the device's info record. */
static void use_gpu_workgroup_sizes(asu_device *dev) {
  asu_device_info *info = (asu_device_info *)asu_device_get_info(dev);
  info->type_name = "GPU (test override)";
}

static void test_all_vocabs(asu_device *dev) {
  for (size_t v = 0; v < sizeof vocabs / sizeof *vocabs; v++) {
    kc_seed(2000 + v);
    test_log_softmax(dev, vocabs[v]);
    test_softmax(dev, vocabs[v]);
    test_cross_entropy(dev, vocabs[v]);
    test_kl(dev, vocabs[v]);
  }
}

int main(void) {
  asu_device *dev = kc_device();
  test_all_vocabs(dev);
  test_many_rows(dev);
  use_gpu_workgroup_sizes(dev);
  test_all_vocabs(dev);
  test_invalid_arguments(dev);
  asu_device_destroy(dev);

  /* Without texel views the kernels with a texel build read storage buffers at every width. */
  setenv("ASU_TEXELS", "0", 1);
  dev = kc_device();
  test_all_vocabs(dev);
  asu_device_destroy(dev);
  unsetenv("ASU_TEXELS");
  return kc_finish();
}
