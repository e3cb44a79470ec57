/* RMSNorm, RoPE, SwiGLU, embedding and AdamW kernels against double-precision C references, and
   every backward kernel against central finite differences of the C forward reference: the
   gradient of loss = sum(proj * forward(...)) for a random projection proj. */
#include "gguf_internal.h"
#include "kernel_check.h"

/* Step of the central differences. The references run in double, so truncation (h^2) and
   rounding (1e-16 / h) errors are both far below the float error of the kernels. */
static const double fd_step = 1e-6;

/* Bound on the normalised error of a float kernel against a double reference. */
static const double tolerance = 1e-5;

static double *to_double(const float *x, size_t n) {
  double *d = malloc((n ? n : 1) * sizeof *d);
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

static double *new_doubles(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static float *new_floats(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* ||got - want|| / max(||want||, ||scale||): kc_error for results that are small differences of
   larger terms, where scale contains the size of those terms. */
static double scaled_error(const float *got, const double *want, const double *scale, size_t n) {
  double diff = 0, norm = 0, scale_norm = 0;
  for (size_t i = 0; i < n; i++) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
    scale_norm += scale[i] * scale[i];
  }
  if (isnan(diff)) return INFINITY;
  return sqrt(diff) / fmax(sqrt(fmax(norm, scale_norm)), 1e-30);
}

/* Returns true when cmd was submitted without error; reports a failure otherwise. */
static bool run(asu_cmd *cmd, int rc, const char *label) {
  CHECK(rc == ASU_OK, "%s: op returned %d", label, rc);
  int submit_rc = kc_submit(cmd, label);
  CHECK(submit_rc == ASU_OK, "%s: submit returned %d", label, submit_rc);
  return rc == ASU_OK && submit_rc == ASU_OK;
}

/* ---- RMSNorm ---- */

/* y = x * r * w for one row; returns r = 1 / sqrt(mean(x^2) + eps). */
static double rmsnorm_row(const double *x, const double *w, uint32_t dim, double eps, double *y) {
  double sum_sq = 0;
  for (uint32_t j = 0; j < dim; j++) sum_sq += x[j] * x[j];
  double r = 1.0 / sqrt(sum_sq / dim + eps);
  for (uint32_t j = 0; j < dim; j++) y[j] = x[j] * r * w[j];
  return r;
}

/* sum_j proj[j] * y[j] for one row of the forward reference. */
static double rmsnorm_row_loss(const double *x, const double *w, const double *proj, uint32_t dim,
                               double eps, double *scratch) {
  rmsnorm_row(x, w, dim, eps, scratch);
  double loss = 0;
  for (uint32_t j = 0; j < dim; j++) loss += proj[j] * scratch[j];
  return loss;
}

typedef struct row_shape {
  uint32_t rows, dim;
} row_shape;

/* Includes 1, 7, 33, 257, one past the 8-lane subgroup and the model's 300 x 64. */
static const row_shape rmsnorm_shapes[] = {
    {1, 1}, {1, 7}, {7, 33}, {33, 64}, {3, 257}, {2, 9}, {300, 64}, {4, 1000}, {257, 17},
};

static void check_rmsnorm(asu_device *dev, row_shape s) {
  const float eps = 1e-5f;
  size_t count = (size_t)s.rows * s.dim;
  char label[96];
  snprintf(label, sizeof label, "rmsnorm rows=%u dim=%u", s.rows, s.dim);

  float *x = kc_random(count, -2.0f, 2.0f), *w = kc_random(s.dim, 0.5f, 1.5f);
  double *xd = to_double(x, count), *wd = to_double(w, s.dim);
  double *y_want = new_doubles(count), *rstd_want = new_doubles(s.rows);
  for (uint32_t t = 0; t < s.rows; t++)
    rstd_want[t] = rmsnorm_row(xd + (size_t)t * s.dim, wd, s.dim, eps, y_want + (size_t)t * s.dim);

  asu_buffer *bx = kc_buffer(dev, x, count * 4), *bw = kc_buffer(dev, w, s.dim * 4);
  asu_buffer *by = kc_buffer(dev, NULL, count * 4), *brstd = kc_buffer(dev, NULL, s.rows * 4);
  asu_cmd *cmd = kc_cmd(dev);
  float *y = new_floats(count), *rstd = new_floats(s.rows);
  if (run(cmd, asu_op_rmsnorm(cmd, bx, bw, by, brstd, s.rows, s.dim, eps), label)) {
    kc_download(by, y, count * 4);
    kc_download(brstd, rstd, s.rows * 4);
    double error = kc_error(y, y_want, count);
    CHECK(error < tolerance, "%s forward: y error %.3g", label, error);
    error = kc_error(rstd, rstd_want, s.rows);
    CHECK(error < tolerance, "%s forward: rstd error %.3g", label, error);
  }

  /* Backward: dx and dw start from random values because the op accumulates into them. */
  float *dy = kc_random(count, -1.0f, 1.0f);
  float *dx0 = kc_random(count, -1.0f, 1.0f), *dw0 = kc_random(s.dim, -1.0f, 1.0f);
  asu_buffer *bdy = kc_buffer(dev, dy, count * 4);
  asu_buffer *bdx = kc_buffer(dev, dx0, count * 4), *bdw = kc_buffer(dev, dw0, s.dim * 4);
  float *dx = new_floats(count), *dw = new_floats(s.dim);
  int rc = asu_op_rmsnorm_backward(cmd, bx, bw, brstd, bdy, bdx, bdw, s.rows, s.dim);
  if (run(cmd, rc, label)) {
    kc_download(bdx, dx, count * 4);
    kc_download(bdw, dw, s.dim * 4);
    for (size_t i = 0; i < count; i++) dx[i] -= dx0[i];
    for (uint32_t j = 0; j < s.dim; j++) dw[j] -= dw0[j];

    /* Analytic reference: dx_j = r w_j dy_j - x_j r^3 / dim sum_i dy_i w_i x_i. */
    double *dx_want = new_doubles(count), *dw_want = new_doubles(s.dim);
    for (uint32_t t = 0; t < s.rows; t++) {
      const double *xr = xd + (size_t)t * s.dim;
      const float *dyr = dy + (size_t)t * s.dim;
      double r = rstd_want[t], dot = 0;
      for (uint32_t j = 0; j < s.dim; j++) dot += dyr[j] * wd[j] * xr[j];
      for (uint32_t j = 0; j < s.dim; j++) {
        dx_want[(size_t)t * s.dim + j] = r * wd[j] * dyr[j] - xr[j] * r * r * r * dot / s.dim;
        dw_want[j] += dyr[j] * xr[j] * r;
      }
    }
    /* dx is the difference of two terms of the size of r w dy, which cancel almost exactly when
       dim is 1, so its float rounding is measured against that size. */
    double *dx_scale = new_doubles(count);
    for (uint32_t t = 0; t < s.rows; t++)
      for (uint32_t j = 0; j < s.dim; j++)
        dx_scale[(size_t)t * s.dim + j] = rstd_want[t] * wd[j] * dy[(size_t)t * s.dim + j];
    double error = scaled_error(dx, dx_want, dx_scale, count);
    CHECK(error < 1e-4, "%s backward: dx error %.3g", label, error);
    error = kc_error(dw, dw_want, s.dim);
    CHECK(error < 1e-4, "%s backward: dw error %.3g", label, error);

    /* Finite differences of loss = sum(dy * y); each x only changes its own row. */
    double *dyd = to_double(dy, count), *scratch = new_doubles(s.dim);
    double *dx_fd = new_doubles(count), *dw_fd = new_doubles(s.dim);
    for (uint32_t t = 0; t < s.rows; t++) {
      double *xr = xd + (size_t)t * s.dim;
      const double *proj = dyd + (size_t)t * s.dim;
      for (uint32_t j = 0; j < s.dim; j++) {
        double saved = xr[j];
        xr[j] = saved + fd_step;
        double plus = rmsnorm_row_loss(xr, wd, proj, s.dim, eps, scratch);
        xr[j] = saved - fd_step;
        double minus = rmsnorm_row_loss(xr, wd, proj, s.dim, eps, scratch);
        xr[j] = saved;
        dx_fd[(size_t)t * s.dim + j] = (plus - minus) / (2 * fd_step);
      }
    }
    for (uint32_t j = 0; j < s.dim; j++) {
      double saved = wd[j], sum = 0;
      for (uint32_t t = 0; t < s.rows; t++) {
        const double *xr = xd + (size_t)t * s.dim;
        const double *proj = dyd + (size_t)t * s.dim;
        wd[j] = saved + fd_step;
        double plus = rmsnorm_row_loss(xr, wd, proj, s.dim, eps, scratch);
        wd[j] = saved - fd_step;
        double minus = rmsnorm_row_loss(xr, wd, proj, s.dim, eps, scratch);
        sum += (plus - minus) / (2 * fd_step);
      }
      wd[j] = saved;
      dw_fd[j] = sum;
    }
    error = scaled_error(dx, dx_fd, dx_scale, count);
    CHECK(error < 1e-4, "%s backward: dx against finite differences, error %.3g", label, error);
    error = kc_error(dw, dw_fd, s.dim);
    CHECK(error < 1e-4, "%s backward: dw against finite differences, error %.3g", label, error);
    free(dx_want);
    free(dx_scale);
    free(dw_want);
    free(dyd);
    free(scratch);
    free(dx_fd);
    free(dw_fd);
  }

  /* Without dw only dx changes. */
  asu_buffer_upload(bdx, 0, dx0, count * 4, NULL);
  rc = asu_op_rmsnorm_backward(cmd, bx, bw, brstd, bdy, bdx, NULL, s.rows, s.dim);
  if (run(cmd, rc, label)) {
    float *dx_again = new_floats(count);
    kc_download(bdx, dx_again, count * 4);
    for (size_t i = 0; i < count; i++) dx_again[i] -= dx0[i];
    CHECK(memcmp(dx_again, dx, count * 4) == 0, "%s backward without dw: dx differs", label);
    free(dx_again);
  }

  asu_cmd_destroy(cmd);
  asu_buffer *buffers[] = {bx, bw, by, brstd, bdy, bdx, bdw};
  for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) asu_buffer_destroy(buffers[i]);
  void *arrays[] = {x, w, xd, wd, y_want, rstd_want, y, rstd, dy, dx0, dw0, dx, dw};
  for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) free(arrays[i]);
}

static void test_rmsnorm(asu_device *dev) {
  for (size_t i = 0; i < sizeof rmsnorm_shapes / sizeof *rmsnorm_shapes; i++)
    check_rmsnorm(dev, rmsnorm_shapes[i]);
}

static void test_rmsnorm_invalid(asu_device *dev) {
  asu_buffer *b = kc_buffer(dev, NULL, 64 * 4), *b2 = kc_buffer(dev, NULL, 64 * 4);
  asu_buffer *one_float = kc_buffer(dev, NULL, 4);
  asu_cmd *cmd = kc_cmd(dev);
  asu_error err;
  int rc = asu_op_rmsnorm(cmd, b, b, b2, b, 8, 9, 1e-5f);
  CHECK(rc == ASU_ERR_INVALID, "rmsnorm of 8 x 9 in 64 floats returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "rmsnorm too small: submit returned %d", rc);
  CHECK(strstr(err.message, "rmsnorm") && strstr(err.message, "dim 9"),
        "rmsnorm too small: message '%s' names no op and shape", err.message);
  rc = asu_op_rmsnorm(cmd, b, b, b, one_float, 1, 8, 1e-5f);
  CHECK(rc == ASU_ERR_INVALID, "rmsnorm with y aliasing x returned %d", rc);
  asu_cmd_submit(cmd, &err);
  rc = asu_op_rmsnorm_backward(cmd, b, b, b, b, b2, one_float, 8, 8);
  CHECK(rc == ASU_ERR_INVALID, "rmsnorm_backward with a 1-float dw for dim 8 returned %d", rc);
  asu_cmd_submit(cmd, &err);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(b);
  asu_buffer_destroy(b2);
  asu_buffer_destroy(one_float);
}

/* ---- RoPE ---- */

/* The tolerance grows with head_dim. Even correctly rounded, the float frequency
   theta^(-2i/head_dim) has a relative error of a few 2^-24. At position 2048 that puts the angle
   of a pair off by up to about 3e-6 rad for head_dim 8 and 9e-5 rad for head_dim 258 (computed
   with exp2f in float on the host). */
typedef struct rope_shape {
  uint32_t rows, n_heads, head_dim;
  double tolerance;
} rope_shape;

/* Includes the model's 8 query heads and 4 key heads of 8 over 300 rows. */
static const rope_shape rope_shapes[] = {
    {1, 1, 2, 1e-6},    {7, 3, 8, 1e-5},  {33, 8, 8, 1e-5},  {300, 8, 8, 1e-5},
    {300, 4, 8, 1e-5},  {5, 2, 64, 5e-5}, {3, 1, 258, 1e-4}, {257, 1, 2, 1e-6},
};

static const double rope_theta = 10000.0;

static double rope_angle(int32_t pos, uint32_t i, uint32_t head_dim) {
  return pos * pow(rope_theta, -2.0 * i / head_dim);
}

/* Rotates x in place, each adjacent pair of each head by angle (or -angle when inverse). */
static void rope_reference(double *x, const int32_t *pos, rope_shape s, bool inverse) {
  for (uint32_t t = 0; t < s.rows; t++)
    for (uint32_t h = 0; h < s.n_heads; h++)
      for (uint32_t i = 0; i < s.head_dim / 2; i++) {
        double angle = rope_angle(pos[t], i, s.head_dim) * (inverse ? -1 : 1);
        double *pair = x + ((size_t)t * s.n_heads + h) * s.head_dim + 2 * i;
        double x0 = pair[0], x1 = pair[1];
        pair[0] = x0 * cos(angle) - x1 * sin(angle);
        pair[1] = x0 * sin(angle) + x1 * cos(angle);
      }
}

/* sum(proj * rope(x)) over one head of one row (head_dim values at x, position pos) by the
   forward reference. The other heads do not depend on this head's x, so their terms of the full
   loss cancel exactly in a central difference and are left out. */
static double rope_head_loss(const double *x, const double *proj, int32_t pos, uint32_t head_dim,
                             double *scratch) {
  memcpy(scratch, x, head_dim * sizeof *x);
  rope_shape one_head = {1, 1, head_dim, 0};
  rope_reference(scratch, &pos, one_head, false);
  double loss = 0;
  for (uint32_t i = 0; i < head_dim; i++) loss += proj[i] * scratch[i];
  return loss;
}

static void check_rope(asu_device *dev, rope_shape s) {
  size_t count = (size_t)s.rows * s.n_heads * s.head_dim;
  char label[96];
  snprintf(label, sizeof label, "rope rows=%u n_heads=%u head_dim=%u", s.rows, s.n_heads,
           s.head_dim);
  int32_t *pos = malloc(s.rows * sizeof *pos);
  for (uint32_t t = 0; t < s.rows; t++) pos[t] = (int32_t)kc_below(2049);
  pos[0] = 2048;
  if (s.rows > 1) pos[1] = 0;

  float *x = kc_random(count, -1.0f, 1.0f);
  asu_buffer *bx = kc_buffer(dev, x, count * 4), *bpos = kc_buffer(dev, pos, s.rows * 4);
  asu_cmd *cmd = kc_cmd(dev);
  float *got = new_floats(count);
  for (int inverse = 0; inverse < 2; inverse++) {
    double *want = to_double(x, count);
    rope_reference(want, pos, s, inverse);
    asu_buffer_upload(bx, 0, x, count * 4, NULL);
    int rc = asu_op_rope(cmd, bx, bpos, s.rows, s.n_heads, s.head_dim, (float)rope_theta, inverse);
    if (run(cmd, rc, label)) {
      kc_download(bx, got, count * 4);
      double error = kc_error(got, want, count);
      CHECK(error < s.tolerance, "%s inverse=%d: error %.3g", label, inverse, error);
    }
    free(want);
  }

  /* Forward then inverse returns x. */
  asu_buffer_upload(bx, 0, x, count * 4, NULL);
  asu_op_rope(cmd, bx, bpos, s.rows, s.n_heads, s.head_dim, (float)rope_theta, false);
  int rc = asu_op_rope(cmd, bx, bpos, s.rows, s.n_heads, s.head_dim, (float)rope_theta, true);
  if (run(cmd, rc, label)) {
    kc_download(bx, got, count * 4);
    double *xd = to_double(x, count);
    double error = kc_error(got, xd, count);
    CHECK(error < 1e-6, "%s: forward then inverse differs from x by %.3g", label, error);
    free(xd);
  }

  /* The inverse is the backward: inverse(proj) = d sum(proj * rope(x)) / dx. */
  float *proj = kc_random(count, -1.0f, 1.0f);
  asu_buffer_upload(bx, 0, proj, count * 4, NULL);
  rc = asu_op_rope(cmd, bx, bpos, s.rows, s.n_heads, s.head_dim, (float)rope_theta, true);
  if (run(cmd, rc, label)) {
    kc_download(bx, got, count * 4);
    double *xd = to_double(x, count), *projd = to_double(proj, count);
    double *scratch = new_doubles(count), *grad_fd = new_doubles(count);
    for (size_t i = 0; i < count; i++) {
      size_t head_start = i - i % s.head_dim;
      int32_t row_pos = pos[i / ((size_t)s.n_heads * s.head_dim)];
      double saved = xd[i];
      xd[i] = saved + fd_step;
      double plus = rope_head_loss(xd + head_start, projd + head_start, row_pos, s.head_dim, scratch);
      xd[i] = saved - fd_step;
      double minus = rope_head_loss(xd + head_start, projd + head_start, row_pos, s.head_dim, scratch);
      xd[i] = saved;
      grad_fd[i] = (plus - minus) / (2 * fd_step);
    }
    double error = kc_error(got, grad_fd, count);
    CHECK(error < 1e-4, "%s inverse against finite differences: error %.3g", label, error);
    free(xd);
    free(projd);
    free(scratch);
    free(grad_fd);
  }

  asu_cmd_destroy(cmd);
  asu_buffer_destroy(bx);
  asu_buffer_destroy(bpos);
  free(pos);
  free(x);
  free(got);
  free(proj);
}

static void test_rope(asu_device *dev) {
  for (size_t i = 0; i < sizeof rope_shapes / sizeof *rope_shapes; i++) check_rope(dev, rope_shapes[i]);
}

static void test_rope_invalid(asu_device *dev) {
  asu_buffer *b = kc_buffer(dev, NULL, 64 * 4);
  asu_cmd *cmd = kc_cmd(dev);
  asu_error err;
  int rc = asu_op_rope(cmd, b, b, 2, 2, 7, 10000.0f, false);
  CHECK(rc == ASU_ERR_INVALID, "rope with odd head_dim returned %d", rc);
  asu_cmd_submit(cmd, &err);
  rc = asu_op_rope(cmd, b, b, 4, 2, 10, 10000.0f, false);
  CHECK(rc == ASU_ERR_INVALID, "rope of 80 floats in 64 returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "rope of 80 floats in 64: submit returned %d", rc);
  CHECK(strstr(err.message, "rope") != NULL, "rope message '%s' names no op", err.message);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(b);
}

/* ---- SwiGLU ---- */

static double silu(double g) { return g / (1.0 + exp(-g)); }

/* Includes the model's 300 x 172 hidden layer. */
static const uint32_t swiglu_sizes[] = {1, 7, 33, 257, 65, 300 * 172, 100003};

static void check_swiglu(asu_device *dev, uint32_t n) {
  char label[64];
  snprintf(label, sizeof label, "swiglu n=%u", n);
  float *gate = kc_random(n, -6.0f, 6.0f), *up = kc_random(n, -2.0f, 2.0f);
  /* Saturated gates must give finite values and gradients. */
  if (n >= 4) {
    gate[0] = -100.0f;
    gate[1] = 100.0f;
    gate[2] = -30.0f;
    gate[3] = 0.0f;
  }
  float *dout = kc_random(n, -1.0f, 1.0f);
  asu_buffer *bgate = kc_buffer(dev, gate, n * 4), *bup = kc_buffer(dev, up, n * 4);
  asu_buffer *bout = kc_buffer(dev, NULL, n * 4), *bdout = kc_buffer(dev, dout, n * 4);
  asu_buffer *bdgate = kc_buffer(dev, NULL, n * 4), *bdup = kc_buffer(dev, NULL, n * 4);
  asu_cmd *cmd = kc_cmd(dev);

  float *out = new_floats(n);
  double *want = new_doubles(n);
  for (uint32_t i = 0; i < n; i++) want[i] = silu(gate[i]) * up[i];
  if (run(cmd, asu_op_swiglu(cmd, bgate, bup, bout, n), label)) {
    kc_download(bout, out, n * 4);
    double error = kc_error(out, want, n);
    CHECK(error < tolerance, "%s forward: error %.3g", label, error);
  }

  float *dgate = new_floats(n), *dup = new_floats(n);
  if (run(cmd, asu_op_swiglu_backward(cmd, bgate, bup, bdout, bdgate, bdup, n), label)) {
    kc_download(bdgate, dgate, n * 4);
    kc_download(bdup, dup, n * 4);
    /* Finite differences of loss = sum(dout * silu(gate) * up); each element is independent. */
    double *dgate_fd = new_doubles(n), *dup_fd = new_doubles(n);
    for (uint32_t i = 0; i < n; i++) {
      double g = gate[i], u = up[i], d = dout[i];
      dgate_fd[i] = d * u * (silu(g + fd_step) - silu(g - fd_step)) / (2 * fd_step);
      dup_fd[i] = d * silu(g) * ((u + fd_step) - (u - fd_step)) / (2 * fd_step);
    }
    double error = kc_error(dgate, dgate_fd, n);
    CHECK(error < 1e-4, "%s backward: dgate against finite differences, error %.3g", label, error);
    error = kc_error(dup, dup_fd, n);
    CHECK(error < 1e-4, "%s backward: dup against finite differences, error %.3g", label, error);
    bool finite = true;
    for (uint32_t i = 0; i < n; i++) finite = finite && isfinite(dgate[i]) && isfinite(dup[i]);
    CHECK(finite, "%s backward: a gradient is not finite", label);
    free(dgate_fd);
    free(dup_fd);
  }

  asu_cmd_destroy(cmd);
  asu_buffer *buffers[] = {bgate, bup, bout, bdout, bdgate, bdup};
  for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) asu_buffer_destroy(buffers[i]);
  void *arrays[] = {gate, up, dout, out, want, dgate, dup};
  for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) free(arrays[i]);
}

static void test_swiglu(asu_device *dev) {
  for (size_t i = 0; i < sizeof swiglu_sizes / sizeof *swiglu_sizes; i++)
    check_swiglu(dev, swiglu_sizes[i]);

  asu_buffer *b = kc_buffer(dev, NULL, 16 * 4), *small = kc_buffer(dev, NULL, 15 * 4);
  asu_cmd *cmd = kc_cmd(dev);
  asu_error err;
  int rc = asu_op_swiglu(cmd, b, b, small, 16);
  CHECK(rc == ASU_ERR_INVALID, "swiglu of 16 into 15 floats returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "swiglu of 16 into 15 floats: submit returned %d", rc);
  CHECK(strstr(err.message, "swiglu") && strstr(err.message, "out"),
        "swiglu message '%s' names no op and buffer", err.message);
  rc = asu_op_swiglu_backward(cmd, b, b, b, b, small, 16);
  CHECK(rc == ASU_ERR_INVALID, "swiglu_backward of 16 into 15 floats returned %d", rc);
  asu_cmd_submit(cmd, &err);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(b);
  asu_buffer_destroy(small);
}

/* ---- Embedding ---- */

typedef struct embedding_shape {
  uint32_t rows, vocab, dim;
} embedding_shape;

/* Includes the model's 512 x 64 table over 300 rows. */
static const embedding_shape embedding_shapes[] = {
    {1, 1, 1}, {7, 5, 33}, {300, 512, 64}, {257, 33, 7}, {33, 1, 257}, {65, 3, 9}, {5, 9, 4},
};

static void check_embedding(asu_device *dev, embedding_shape s) {
  char label[96];
  snprintf(label, sizeof label, "embedding rows=%u vocab=%u dim=%u", s.rows, s.vocab, s.dim);
  size_t table_count = (size_t)s.vocab * s.dim, out_count = (size_t)s.rows * s.dim;
  float *table = kc_random(table_count, -1.0f, 1.0f);
  int32_t *ids = malloc(s.rows * sizeof *ids);
  for (uint32_t t = 0; t < s.rows; t++) ids[t] = (int32_t)kc_below(s.vocab);
  /* Ids outside [0, vocab) give zero rows and no gradient. */
  if (s.rows >= 3) {
    ids[1] = -1;
    ids[2] = (int32_t)s.vocab;
  }
  bool *valid = malloc(s.rows * sizeof *valid);
  for (uint32_t t = 0; t < s.rows; t++) valid[t] = ids[t] >= 0 && (uint32_t)ids[t] < s.vocab;

  double *want = new_doubles(out_count);
  for (uint32_t t = 0; t < s.rows; t++)
    for (uint32_t d = 0; d < s.dim; d++)
      want[(size_t)t * s.dim + d] = valid[t] ? table[(size_t)ids[t] * s.dim + d] : 0.0;

  asu_buffer *btable = kc_buffer(dev, table, table_count * 4);
  asu_buffer *bids = kc_buffer(dev, ids, s.rows * 4);
  asu_buffer *bout = kc_buffer(dev, NULL, out_count * 4);
  asu_cmd *cmd = kc_cmd(dev);
  float *out = new_floats(out_count);
  if (run(cmd, asu_op_embedding(cmd, btable, bids, bout, s.rows, s.vocab, s.dim), label)) {
    kc_download(bout, out, out_count * 4);
    double error = kc_error(out, want, out_count);
    CHECK(error == 0.0, "%s forward: error %.3g", label, error);
  }

  /* Group the valid rows by id: a counting sort that keeps row order within an id. */
  int32_t *offsets = calloc(s.vocab + 1, sizeof *offsets);
  int32_t *order = calloc(s.rows, sizeof *order);
  for (uint32_t t = 0; t < s.rows; t++)
    if (valid[t]) offsets[ids[t] + 1]++;
  for (uint32_t v = 0; v < s.vocab; v++) offsets[v + 1] += offsets[v];
  int32_t *fill = malloc(s.vocab * sizeof *fill);
  memcpy(fill, offsets, s.vocab * sizeof *fill);
  for (uint32_t t = 0; t < s.rows; t++)
    if (valid[t]) order[fill[ids[t]]++] = (int32_t)t;

  float *dout = kc_random(out_count, -1.0f, 1.0f);
  float *dtable0 = kc_random(table_count, -1.0f, 1.0f);
  asu_buffer *border = kc_buffer(dev, order, s.rows * 4);
  asu_buffer *boffsets = kc_buffer(dev, offsets, (s.vocab + 1) * 4);
  asu_buffer *bdout = kc_buffer(dev, dout, out_count * 4);
  asu_buffer *bdtable = kc_buffer(dev, dtable0, table_count * 4);
  float *dtable = new_floats(table_count), *dtable_again = new_floats(table_count);
  int rc = asu_op_embedding_backward(cmd, border, boffsets, bdout, bdtable, s.rows, s.vocab, s.dim);
  if (run(cmd, rc, label)) {
    kc_download(bdtable, dtable, table_count * 4);
    for (size_t i = 0; i < table_count; i++) dtable[i] -= dtable0[i];

    /* loss = sum(dout * out) is linear in the table, so central differences of the forward
       reference are exact up to rounding. Only rows with id v see table[v][d]. */
    double *grad_fd = new_doubles(table_count);
    for (uint32_t v = 0; v < s.vocab; v++)
      for (uint32_t d = 0; d < s.dim; d++) {
        double value = table[(size_t)v * s.dim + d], plus = 0, minus = 0;
        for (uint32_t t = 0; t < s.rows; t++) {
          if (!valid[t] || (uint32_t)ids[t] != v) continue;
          plus += dout[(size_t)t * s.dim + d] * (value + fd_step);
          minus += dout[(size_t)t * s.dim + d] * (value - fd_step);
        }
        grad_fd[(size_t)v * s.dim + d] = (plus - minus) / (2 * fd_step);
      }
    double error = kc_error(dtable, grad_fd, table_count);
    CHECK(error < 1e-4, "%s backward against finite differences: error %.3g", label, error);
    free(grad_fd);

    /* The same inputs give the same bits. */
    asu_buffer_upload(bdtable, 0, dtable0, table_count * 4, NULL);
    asu_op_embedding_backward(cmd, border, boffsets, bdout, bdtable, s.rows, s.vocab, s.dim);
    if (run(cmd, ASU_OK, label)) {
      kc_download(bdtable, dtable_again, table_count * 4);
      for (size_t i = 0; i < table_count; i++) dtable_again[i] -= dtable0[i];
      CHECK(memcmp(dtable, dtable_again, table_count * 4) == 0,
            "%s backward: a second run gave different bits", label);
    }
  }

  asu_cmd_destroy(cmd);
  asu_buffer *buffers[] = {btable, bids, bout, border, boffsets, bdout, bdtable};
  for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) asu_buffer_destroy(buffers[i]);
  void *arrays[] = {table, ids, valid, want, out, offsets, order, fill, dout, dtable0, dtable,
                    dtable_again};
  for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) free(arrays[i]);
}

/* An F16 table: the texel build widens each element exactly. */
static void check_embedding_f16(asu_device *dev) {
  enum { ROWS = 9, VOCAB = 5, DIM = 12 };
  float *table = kc_random(VOCAB * DIM, -1.0f, 1.0f);
  uint16_t halves[VOCAB * DIM];
  for (int i = 0; i < VOCAB * DIM; i++) halves[i] = asu_f32_to_f16(table[i]);
  int32_t ids[ROWS] = {4, 0, -1, 3, 5, 1, 2, 4, 0};

  asu_buffer *btable = NULL;
  asu_error err;
  int rc = asu_buffer_create_elements(dev, sizeof halves, ASU_ELEMENT_F16, &btable, &err);
  if (!rc) rc = asu_buffer_upload(btable, 0, halves, sizeof halves, &err);
  CHECK(rc == ASU_OK, "F16 embedding table: %s", err.message);
  asu_buffer *bids = kc_buffer(dev, ids, sizeof ids), *bout = kc_buffer(dev, NULL, ROWS * DIM * 4);
  asu_cmd *cmd = kc_cmd(dev);
  float out[ROWS * DIM];

  if (!asu_buffer_has_texels(btable)) {
    /* Only a texel view widens F16 elements, so without one the op must reject the table. */
    rc = asu_op_embedding(cmd, btable, bids, bout, ROWS, VOCAB, DIM);
    CHECK(rc == ASU_ERR_INVALID, "F16 embedding without texel views returned %d", rc);
    rc = asu_cmd_submit(cmd, &err);
    CHECK(strstr(err.message, "F16") != NULL, "F16 embedding without texel views: message '%s'",
          err.message);
  } else if (run(cmd, asu_op_embedding(cmd, btable, bids, bout, ROWS, VOCAB, DIM),
                 "F16 embedding")) {
    kc_download(bout, out, sizeof out);
    size_t wrong = 0;
    for (int t = 0; t < ROWS; t++) {
      bool valid = ids[t] >= 0 && ids[t] < VOCAB;
      for (int d = 0; d < DIM; d++) {
        float want = valid ? asu_f16_to_f32(halves[ids[t] * DIM + d]) : 0.0f;
        wrong += out[t * DIM + d] != want;
      }
    }
    CHECK(wrong == 0, "F16 embedding: %zu of %d elements differ from the widened table", wrong,
          ROWS * DIM);
  }

  asu_cmd_destroy(cmd);
  asu_buffer_destroy(btable);
  asu_buffer_destroy(bids);
  asu_buffer_destroy(bout);
  free(table);
}

static void test_embedding(asu_device *dev) {
  for (size_t i = 0; i < sizeof embedding_shapes / sizeof *embedding_shapes; i++)
    check_embedding(dev, embedding_shapes[i]);
  check_embedding_f16(dev);

  asu_buffer *b = kc_buffer(dev, NULL, 64 * 4);
  asu_cmd *cmd = kc_cmd(dev);
  asu_error err;
  int rc = asu_op_embedding(cmd, b, b, b, 4, 8, 9);
  CHECK(rc == ASU_ERR_INVALID, "embedding with a 8 x 9 table in 64 floats returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "embedding with a 8 x 9 table in 64 floats: submit returned %d", rc);
  CHECK(strstr(err.message, "embedding") && strstr(err.message, "table"),
        "embedding message '%s' names no op and buffer", err.message);
  rc = asu_op_embedding_backward(cmd, b, b, b, b, 4, 64, 1);
  CHECK(rc == ASU_ERR_INVALID, "embedding_backward with 65 offsets in 64 ints returned %d", rc);
  asu_cmd_submit(cmd, &err);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(b);
}

/* ---- AdamW ---- */

static void check_adamw(asu_device *dev, uint32_t n) {
  char label[64];
  snprintf(label, sizeof label, "adamw n=%u", n);
  const float lr = 0.05f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.1f;
  float *param = kc_random(n, -1.0f, 1.0f);
  float *m = kc_random(n, -0.1f, 0.1f), *v = kc_random(n, 0.0f, 0.01f);
  asu_buffer *bp = kc_buffer(dev, param, n * 4), *bg = kc_buffer(dev, NULL, n * 4);
  asu_buffer *bm = kc_buffer(dev, m, n * 4), *bv = kc_buffer(dev, v, n * 4);
  double *pd = to_double(param, n), *md = to_double(m, n), *vd = to_double(v, n);
  float *got = new_floats(n), *before = new_floats(n);
  double *delta_want = new_doubles(n);
  asu_cmd *cmd = kc_cmd(dev);

  for (uint32_t step = 1; step <= 3; step++) {
    float *grad = kc_random(n, -1.0f, 1.0f);
    asu_buffer_upload(bg, 0, grad, n * 4, NULL);
    kc_download(bp, before, n * 4);
    double bias1 = 1.0 - pow(beta1, step), bias2 = 1.0 - pow(beta2, step);
    for (uint32_t i = 0; i < n; i++) {
      md[i] = beta1 * md[i] + (1.0 - beta1) * grad[i];
      vd[i] = beta2 * vd[i] + (1.0 - beta2) * (double)grad[i] * grad[i];
      double update = lr * (md[i] / bias1 / (sqrt(vd[i] / bias2) + eps) + weight_decay * pd[i]);
      pd[i] -= update;
      delta_want[i] = -update;
    }
    asu_adamw_args args = {.param = bp, .grad = bg, .m = bm, .v = bv, .n = n, .step = step,
                           .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                           .weight_decay = weight_decay};
    if (run(cmd, asu_op_adamw(cmd, &args), label)) {
      kc_download(bp, got, n * 4);
      double error = kc_error(got, pd, n);
      CHECK(error < tolerance, "%s step %u: param error %.3g", label, step, error);
      for (uint32_t i = 0; i < n; i++) got[i] -= before[i];
      error = kc_error(got, delta_want, n);
      CHECK(error < 1e-4, "%s step %u: update error %.3g", label, step, error);
      kc_download(bm, got, n * 4);
      error = kc_error(got, md, n);
      CHECK(error < tolerance, "%s step %u: m error %.3g", label, step, error);
      kc_download(bv, got, n * 4);
      error = kc_error(got, vd, n);
      CHECK(error < tolerance, "%s step %u: v error %.3g", label, step, error);
    }
    free(grad);
  }

  asu_adamw_args bad = {.param = bp, .grad = bg, .m = bm, .v = bv, .n = n, .step = 0, .lr = lr};
  int rc = asu_op_adamw(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "%s with step 0 returned %d", label, rc);
  asu_cmd_submit(cmd, NULL);
  bad.step = 1;
  bad.n = n + 1;
  rc = asu_op_adamw(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "%s with n + 1 parameters returned %d", label, rc);
  asu_error err;
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "%s with n + 1 parameters: submit returned %d", label, rc);
  CHECK(strstr(err.message, "adamw") != NULL, "adamw message '%s' names no op", err.message);

  asu_cmd_destroy(cmd);
  asu_buffer *buffers[] = {bp, bg, bm, bv};
  for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) asu_buffer_destroy(buffers[i]);
  void *arrays[] = {param, m, v, pd, md, vd, got, before, delta_want};
  for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) free(arrays[i]);
}

static void test_adamw(asu_device *dev) {
  static const uint32_t sizes[] = {1, 7, 33, 257, 65, 512 * 64, 100003};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_adamw(dev, sizes[i]);
}

static void test_all(asu_device *dev) {
  test_rmsnorm(dev);
  test_rmsnorm_invalid(dev);
  test_rope(dev);
  test_rope_invalid(dev);
  test_swiglu(dev);
  test_embedding(dev);
  test_adamw(dev);
  uint64_t current, peak;
  asu_device_memory_usage(dev, &current, &peak);
  CHECK(current == 0, "%llu bytes of device memory still allocated", (unsigned long long)current);
}

int main(void) {
  asu_device *dev = kc_device();
  test_all(dev);
  asu_device_destroy(dev);

  /* Without texel views the kernels with a texel build read storage buffers instead. */
  setenv("ASU_TEXELS", "0", 1);
  dev = kc_device();
  test_all(dev);
  asu_device_destroy(dev);
  unsetenv("ASU_TEXELS");
  return kc_finish();
}
