/* Attention forward and backward against a double-precision C reference, and the backward
   against central finite differences of that reference. Covers single causal sequences, packed
   sequences, KV-cache decoding, arbitrary ranges (empty, out of bounds, gaps) and temperatures
   tau 1 and 3, at head_dim 8 (the shared model), 64, 128 and the maximum 256, and 6, which the
   texel build cannot read. Both builds run: texels where this device picks them, storage
   buffers when forced. */
#include "kernel_check.h"

enum range_kind {
  RANGES_CAUSAL,    /* one sequence: query i attends keys [0, i] */
  RANGES_PACKED,    /* sequences packed back to back, each attending only within itself */
  RANGES_KV_CACHE,  /* q_rows new tokens after kv_rows - q_rows cached ones: [0, past + i] */
  RANGES_RANDOM,    /* arbitrary ranges, some empty, some past either end of the keys */
};

/* How the backward pass is compared with finite differences. */
enum fd_mode {
  FD_FULL,         /* every element of dq, dk and dv */
  FD_SAMPLED,      /* a few random elements of each, plus one random direction each */
  FD_DIRECTIONAL,  /* one random direction each (long sequences) */
};

typedef struct attention_case {
  const char *name;
  enum range_kind kind;
  uint32_t q_rows, kv_rows, n_head, n_kv_head, head_dim;
  double tau;
  uint32_t seq_lengths[5];  /* RANGES_PACKED: lengths summing to q_rows, zero-terminated */
  enum fd_mode fd;
} attention_case;

static const attention_case cases[] = {
    {"causal 1 row", RANGES_CAUSAL, 1, 1, 1, 1, 8, 1.0, {0}, FD_FULL},
    {"causal 7 rows gqa", RANGES_CAUSAL, 7, 7, 2, 1, 8, 3.0, {0}, FD_FULL},
    {"causal 33 rows shared model", RANGES_CAUSAL, 33, 33, 8, 4, 8, 1.0, {0}, FD_FULL},
    {"packed 257 rows shared model", RANGES_PACKED, 257, 257, 8, 4, 8, 3.0, {100, 57, 100}, FD_SAMPLED},
    {"packed 300 rows shared model", RANGES_PACKED, 300, 300, 8, 4, 8, 1.0, {1, 31, 7, 261}, FD_SAMPLED},
    {"kv cache 1 of 257", RANGES_KV_CACHE, 1, 257, 8, 4, 8, 3.0, {0}, FD_FULL},
    {"kv cache 7 of 300", RANGES_KV_CACHE, 7, 300, 8, 4, 8, 1.0, {0}, FD_SAMPLED},
    {"random ranges 33x57", RANGES_RANDOM, 33, 57, 4, 2, 8, 1.0, {0}, FD_FULL},
    {"causal 65 head_dim 64", RANGES_CAUSAL, 65, 65, 4, 2, 64, 3.0, {0}, FD_SAMPLED},
    {"packed 40 head_dim 64", RANGES_PACKED, 40, 40, 2, 2, 64, 1.0, {7, 1, 32}, FD_FULL},
    {"kv cache 33 of 129 head_dim 128", RANGES_KV_CACHE, 33, 129, 2, 1, 128, 1.0, {0}, FD_SAMPLED},
    {"random ranges head_dim 128", RANGES_RANDOM, 17, 23, 2, 1, 128, 3.0, {0}, FD_SAMPLED},
    {"causal 9 head_dim 256", RANGES_CAUSAL, 9, 9, 2, 2, 256, 1.0, {0}, FD_SAMPLED},
    /* Not a multiple of 4: the texel build cannot read it, so storage buffers are used. */
    {"causal 19 head_dim 6", RANGES_CAUSAL, 19, 19, 2, 1, 6, 3.0, {0}, FD_FULL},
    {"causal 2048 shared model", RANGES_CAUSAL, 2048, 2048, 8, 4, 8, 1.0, {0}, FD_DIRECTIONAL},
};

/* One problem's sizes, ranges and inputs, in float for the device and double for the reference. */
typedef struct problem {
  uint32_t q_rows, kv_rows, n_head, n_kv_head, head_dim;
  double scale;
  int32_t *q_ranges, *k_ranges;  /* pairs (first, last) */
  size_t q_size, kv_size, rows_heads;
  float *q, *k, *v, *dout;
  double *qd, *kd, *vd, *doutd;
} problem;

static double *to_double(const float *x, size_t n) {
  double *y = malloc((n ? n : 1) * sizeof *y);
  for (size_t i = 0; i < n; i++) y[i] = x[i];
  return y;
}

static void make_ranges(problem *p, const attention_case *c) {
  p->q_ranges = malloc(2 * sizeof(int32_t) * p->q_rows);
  p->k_ranges = malloc(2 * sizeof(int32_t) * (p->kv_rows ? p->kv_rows : 1));
  int32_t *qr = p->q_ranges;
  if (c->kind == RANGES_CAUSAL) {
    for (uint32_t i = 0; i < p->q_rows; i++) qr[2 * i] = 0, qr[2 * i + 1] = (int32_t)i;
  } else if (c->kind == RANGES_PACKED) {
    uint32_t start = 0;
    for (const uint32_t *len = c->seq_lengths; *len; len++) {
      for (uint32_t i = start; i < start + *len; i++) qr[2 * i] = (int32_t)start, qr[2 * i + 1] = (int32_t)i;
      start += *len;
    }
    if (start != p->q_rows) {
      fprintf(stderr, "case %s: sequence lengths sum to %u, not %u\n", c->name, start, p->q_rows);
      exit(1);
    }
  } else if (c->kind == RANGES_KV_CACHE) {
    int32_t past = (int32_t)(p->kv_rows - p->q_rows);
    for (uint32_t i = 0; i < p->q_rows; i++) qr[2 * i] = 0, qr[2 * i + 1] = past + (int32_t)i;
  } else {
    int32_t n = (int32_t)p->kv_rows;
    for (uint32_t i = 0; i < p->q_rows; i++) {
      int32_t first = (int32_t)kc_below((uint32_t)n + 4) - 2;
      int32_t last = first + (int32_t)kc_below((uint32_t)n) - n / 4;  /* sometimes empty */
      qr[2 * i] = first;
      qr[2 * i + 1] = last;
    }
  }

  /* k_ranges[j] is the smallest interval of queries whose ranges contain key j, or empty. For
     random ranges it also covers queries that skip j, which the kernel must ignore. */
  for (uint32_t j = 0; j < p->kv_rows; j++) {
    int32_t first = -1, last = -2;
    for (uint32_t i = 0; i < p->q_rows; i++) {
      if ((int32_t)j < qr[2 * i] || (int32_t)j > qr[2 * i + 1]) continue;
      if (first < 0) first = (int32_t)i;
      last = (int32_t)i;
    }
    p->k_ranges[2 * j] = first < 0 ? 1 : first;
    p->k_ranges[2 * j + 1] = first < 0 ? 0 : last;
  }
}

static void make_problem(problem *p, const attention_case *c) {
  p->q_rows = c->q_rows;
  p->kv_rows = c->kv_rows;
  p->n_head = c->n_head;
  p->n_kv_head = c->n_kv_head;
  p->head_dim = c->head_dim;
  p->scale = 1.0 / (sqrt((double)c->head_dim) * c->tau);
  make_ranges(p, c);
  p->q_size = (size_t)c->q_rows * c->n_head * c->head_dim;
  p->kv_size = (size_t)c->kv_rows * c->n_kv_head * c->head_dim;
  p->rows_heads = (size_t)c->q_rows * c->n_head;
  /* Wide queries make the softmax peaked enough that the max-subtraction matters. */
  p->q = kc_random(p->q_size, -2.0f, 2.0f);
  p->k = kc_random(p->kv_size, -1.0f, 1.0f);
  p->v = kc_random(p->kv_size, -1.0f, 1.0f);
  p->dout = kc_random(p->q_size, -1.0f, 1.0f);
  p->qd = to_double(p->q, p->q_size);
  p->kd = to_double(p->k, p->kv_size);
  p->vd = to_double(p->v, p->kv_size);
  p->doutd = to_double(p->dout, p->q_size);
}

static void free_problem(problem *p) {
  free(p->q_ranges), free(p->k_ranges);
  free(p->q), free(p->k), free(p->v), free(p->dout);
  free(p->qd), free(p->kd), free(p->vd), free(p->doutd);
}

/* Returns the keys query i attends to, clamped to the key rows, with first > last when there
   are none. */
static void clamped_range(const problem *p, uint32_t i, int32_t *first, int32_t *last) {
  *first = p->q_ranges[2 * i] < 0 ? 0 : p->q_ranges[2 * i];
  *last = p->q_ranges[2 * i + 1] > (int32_t)p->kv_rows - 1 ? (int32_t)p->kv_rows - 1
                                                            : p->q_ranges[2 * i + 1];
}

static double dot(const double *a, const double *b, uint32_t n) {
  double s = 0;
  for (uint32_t d = 0; d < n; d++) s += a[d] * b[d];
  return s;
}

/* Computes the softmax probabilities of query row i, head h over keys [first, last] into prob
   (indexed by key). Returns the log-sum-exp of the scores. */
static double reference_probs(const problem *p, const double *q, const double *k, uint32_t i,
                              uint32_t h, int32_t first, int32_t last, double *prob) {
  uint32_t hd = p->head_dim, g = h / (p->n_head / p->n_kv_head);
  const double *qi = q + ((size_t)i * p->n_head + h) * hd;
  double m = -INFINITY;
  for (int32_t j = first; j <= last; j++) {
    prob[j] = p->scale * dot(qi, k + ((size_t)j * p->n_kv_head + g) * hd, hd);
    if (prob[j] > m) m = prob[j];
  }
  double sum = 0;
  for (int32_t j = first; j <= last; j++) sum += exp(prob[j] - m);
  double lse = m + log(sum);
  for (int32_t j = first; j <= last; j++) prob[j] = exp(prob[j] - lse);
  return lse;
}

/* out = softmax(scale * q k^T over each row's range) v; lse per (row, head). */
static void reference_forward(const problem *p, const double *q, const double *k,
                              const double *v, double *out, double *lse) {
  uint32_t hd = p->head_dim;
  double *prob = malloc((p->kv_rows ? p->kv_rows : 1) * sizeof *prob);
  for (uint32_t i = 0; i < p->q_rows; i++) {
    int32_t first, last;
    clamped_range(p, i, &first, &last);
    for (uint32_t h = 0; h < p->n_head; h++) {
      uint32_t g = h / (p->n_head / p->n_kv_head);
      double *oi = out + ((size_t)i * p->n_head + h) * hd;
      memset(oi, 0, hd * sizeof *oi);
      if (first > last) {
        lse[i * p->n_head + h] = -INFINITY;
        continue;
      }
      lse[i * p->n_head + h] = reference_probs(p, q, k, i, h, first, last, prob);
      for (int32_t j = first; j <= last; j++) {
        const double *vj = v + ((size_t)j * p->n_kv_head + g) * hd;
        for (uint32_t d = 0; d < hd; d++) oi[d] += prob[j] * vj[d];
      }
    }
  }
  free(prob);
}

/* Gradients of sum(dout * out) with respect to q, k and v, from the same equations as the
   kernels but scattered in double. */
static void reference_backward(const problem *p, double *dq, double *dk, double *dv) {
  uint32_t hd = p->head_dim;
  double *out = malloc(p->q_size * sizeof *out), *lse = malloc(p->rows_heads * sizeof *lse);
  double *prob = malloc((p->kv_rows ? p->kv_rows : 1) * sizeof *prob);
  reference_forward(p, p->qd, p->kd, p->vd, out, lse);
  memset(dq, 0, p->q_size * sizeof *dq);
  memset(dk, 0, p->kv_size * sizeof *dk);
  memset(dv, 0, p->kv_size * sizeof *dv);
  for (uint32_t i = 0; i < p->q_rows; i++) {
    int32_t first, last;
    clamped_range(p, i, &first, &last);
    for (uint32_t h = 0; h < p->n_head && first <= last; h++) {
      uint32_t g = h / (p->n_head / p->n_kv_head);
      size_t qi = ((size_t)i * p->n_head + h) * hd;
      reference_probs(p, p->qd, p->kd, i, h, first, last, prob);
      double delta = dot(p->doutd + qi, out + qi, hd);
      for (int32_t j = first; j <= last; j++) {
        size_t kj = ((size_t)j * p->n_kv_head + g) * hd;
        double ds = prob[j] * (dot(p->doutd + qi, p->vd + kj, hd) - delta);
        for (uint32_t d = 0; d < hd; d++) {
          dq[qi + d] += p->scale * ds * p->kd[kj + d];
          dk[kj + d] += p->scale * ds * p->qd[qi + d];
          dv[kj + d] += prob[j] * p->doutd[qi + d];
        }
      }
    }
  }
  free(out), free(lse), free(prob);
}

/* The scalar whose gradient the backward pass computes: sum(dout * out) at (q, k, v). */
static double projected_output(const problem *p, const double *q, const double *k,
                               const double *v) {
  double *out = malloc(p->q_size * sizeof *out), *lse = malloc(p->rows_heads * sizeof *lse);
  reference_forward(p, q, k, v, out, lse);
  double s = dot(out, p->doutd, (uint32_t)p->q_size);
  free(out), free(lse);
  return s;
}

enum attention_input { INPUT_Q, INPUT_K, INPUT_V };

/* Central difference of projected_output when `input` moves in the direction dir, or along the
   unit vector of element `index` when dir is NULL. */
static double numeric_derivative(const problem *p, enum attention_input input, const double *dir,
                                 size_t index) {
  const double eps = 1e-5;
  size_t n = input == INPUT_Q ? p->q_size : p->kv_size;
  const double *inputs[3] = {p->qd, p->kd, p->vd};
  const double *base = inputs[input];
  double *plus = malloc(n * sizeof *plus), *minus = malloc(n * sizeof *minus);
  for (size_t e = 0; e < n; e++) {
    double step = dir ? eps * dir[e] : (e == index ? eps : 0.0);
    plus[e] = base[e] + step;
    minus[e] = base[e] - step;
  }
  const double *args_plus[3] = {p->qd, p->kd, p->vd}, *args_minus[3] = {p->qd, p->kd, p->vd};
  args_plus[input] = plus;
  args_minus[input] = minus;
  double f_plus = projected_output(p, args_plus[0], args_plus[1], args_plus[2]);
  double f_minus = projected_output(p, args_minus[0], args_minus[1], args_minus[2]);
  free(plus), free(minus);
  return (f_plus - f_minus) / (2 * eps);
}

static double rms(const double *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i] * x[i];
  return n ? sqrt(s / (double)n) : 0.0;
}

/* Checks one device gradient (dq, dk or dv) against finite differences of the reference. */
static void check_finite_differences(const problem *p, const attention_case *c,
                                     enum attention_input input, const float *grad,
                                     const double *reference_grad) {
  static const char *names[3] = {"dq", "dk", "dv"};
  size_t n = input == INPUT_Q ? p->q_size : p->kv_size;
  if (c->fd == FD_FULL) {
    double *numeric = malloc(n * sizeof *numeric);
    for (size_t e = 0; e < n; e++) numeric[e] = numeric_derivative(p, input, NULL, e);
    double err = kc_error(grad, numeric, n);
    CHECK(err < 1e-3, "%s: %s vs finite differences: normalised error %g", c->name, names[input],
          err);
    free(numeric);
    return;
  }

  double scale = rms(reference_grad, n);
  if (c->fd == FD_SAMPLED) {
    double worst = 0;
    for (int s = 0; s < 6; s++) {
      size_t e = kc_below((uint32_t)n);
      double numeric = numeric_derivative(p, input, NULL, e);
      worst = fmax(worst, fabs(grad[e] - numeric) / fmax(fabs(numeric), scale));
    }
    CHECK(worst < 2e-3, "%s: sampled %s vs finite differences: relative error %g", c->name,
          names[input], worst);
  }

  double *dir = calloc(n, sizeof *dir), analytic = 0;
  for (size_t e = 0; e < n; e++) {
    dir[e] = kc_uniform(-1, 1);
    analytic += grad[e] * dir[e];
  }
  double numeric = numeric_derivative(p, input, dir, 0);
  /* A random direction's derivative is about rms(grad) * sqrt(n / 3) in size. */
  double err = fabs(analytic - numeric) / fmax(fabs(numeric), scale * sqrt((double)n / 3));
  CHECK(err < 1e-3, "%s: %s along a random direction: %g vs finite difference %g", c->name,
        names[input], analytic, numeric);
  free(dir);
}

/* Compares lse elementwise: -inf (an empty range) must match exactly. */
static void check_lse(const attention_case *c, const float *got, const double *want, size_t n) {
  size_t inf_mismatch = 0;
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(want[i]) || isinf(got[i])) {
      inf_mismatch += !(isinf(got[i]) && got[i] < 0 && isinf(want[i]));
      continue;
    }
    worst = fmax(worst, fabs(got[i] - want[i]) / (1 + fabs(want[i])));
  }
  CHECK(inf_mismatch == 0, "%s: %zu lse values disagree about empty ranges", c->name, inf_mismatch);
  CHECK(worst < 1e-5, "%s: lse relative error %g", c->name, worst);
}

static void test_case(asu_device *dev, const attention_case *c, bool finite_differences) {
  problem p;
  make_problem(&p, c);
  size_t q_bytes = p.q_size * 4, kv_bytes = p.kv_size * 4, rh_bytes = p.rows_heads * 4;

  asu_buffer *bq = kc_buffer(dev, p.q, q_bytes), *bk = kc_buffer(dev, p.k, kv_bytes);
  asu_buffer *bv = kc_buffer(dev, p.v, kv_bytes), *bout = kc_buffer(dev, NULL, q_bytes);
  asu_buffer *blse = kc_buffer(dev, NULL, rh_bytes);
  asu_buffer *bqr = kc_buffer(dev, p.q_ranges, p.q_rows * 8u);
  asu_buffer *bkr = kc_buffer(dev, p.k_ranges, p.kv_rows * 8u);
  asu_buffer *bdout = kc_buffer(dev, p.dout, q_bytes), *bdq = kc_buffer(dev, NULL, q_bytes);
  asu_buffer *bdk = kc_buffer(dev, NULL, kv_bytes), *bdv = kc_buffer(dev, NULL, kv_bytes);
  asu_buffer *bdelta = kc_buffer(dev, NULL, rh_bytes);

  asu_attention_backward_args args = {
      .fwd = {.q = bq, .k = bk, .v = bv, .out = bout, .lse = blse, .q_ranges = bqr,
              .q_rows = p.q_rows, .kv_rows = p.kv_rows, .n_head = p.n_head,
              .n_kv_head = p.n_kv_head, .head_dim = p.head_dim, .scale = (float)p.scale},
      .k_ranges = bkr, .dout = bdout, .dq = bdq, .dk = bdk, .dv = bdv, .delta = bdelta};
  asu_cmd *cmd = kc_cmd(dev);
  int rc = asu_op_attention(cmd, &args.fwd);
  CHECK(rc == ASU_OK, "%s: forward returned %d", c->name, rc);
  rc = asu_op_attention_backward(cmd, &args);
  CHECK(rc == ASU_OK, "%s: backward returned %d", c->name, rc);
  CHECK(kc_submit(cmd, c->name) == ASU_OK, "%s: submit failed", c->name);

  float *out = malloc(q_bytes + 4), *lse = malloc(rh_bytes + 4), *delta = malloc(rh_bytes + 4);
  float *dq = malloc(q_bytes + 4), *dk = malloc(kv_bytes + 4), *dv = malloc(kv_bytes + 4);
  kc_download(bout, out, q_bytes);
  kc_download(blse, lse, rh_bytes);
  kc_download(bdelta, delta, rh_bytes);
  kc_download(bdq, dq, q_bytes);
  kc_download(bdk, dk, kv_bytes);
  kc_download(bdv, dv, kv_bytes);

  /* Forward against the reference. */
  double *out_ref = malloc(p.q_size * sizeof *out_ref), *lse_ref = malloc(p.rows_heads * sizeof *lse_ref);
  reference_forward(&p, p.qd, p.kd, p.vd, out_ref, lse_ref);
  double err = kc_error(out, out_ref, p.q_size);
  CHECK(err < 1e-5, "%s: out normalised error %g", c->name, err);
  check_lse(c, lse, lse_ref, p.rows_heads);

  /* delta = rowsum(dout * out). */
  double *delta_ref = malloc(p.rows_heads * sizeof *delta_ref);
  for (size_t r = 0; r < p.rows_heads; r++)
    delta_ref[r] = dot(p.doutd + r * p.head_dim, out_ref + r * p.head_dim, p.head_dim);
  err = kc_error(delta, delta_ref, p.rows_heads);
  CHECK(err < 1e-5, "%s: delta normalised error %g", c->name, err);

  /* Backward against the reference. */
  double *dq_ref = malloc(p.q_size * sizeof *dq_ref), *dk_ref = malloc(p.kv_size * sizeof *dk_ref);
  double *dv_ref = malloc(p.kv_size * sizeof *dv_ref);
  reference_backward(&p, dq_ref, dk_ref, dv_ref);
  err = kc_error(dq, dq_ref, p.q_size);
  CHECK(err < 1e-4, "%s: dq normalised error %g", c->name, err);
  err = kc_error(dk, dk_ref, p.kv_size);
  CHECK(err < 1e-4, "%s: dk normalised error %g", c->name, err);
  err = kc_error(dv, dv_ref, p.kv_size);
  CHECK(err < 1e-4, "%s: dv normalised error %g", c->name, err);

  /* Backward against finite differences of the forward reference. */
  if (finite_differences) {
    check_finite_differences(&p, c, INPUT_Q, dq, dq_ref);
    check_finite_differences(&p, c, INPUT_K, dk, dk_ref);
    check_finite_differences(&p, c, INPUT_V, dv, dv_ref);
  }

  /* A second backward pass gives bit-identical gradients. */
  asu_op_attention_backward(cmd, &args);
  CHECK(kc_submit(cmd, c->name) == ASU_OK, "%s: second submit failed", c->name);
  float *again = malloc((q_bytes > kv_bytes ? q_bytes : kv_bytes) + 4);
  kc_download(bdq, again, q_bytes);
  CHECK(memcmp(again, dq, q_bytes) == 0, "%s: dq differs between runs", c->name);
  kc_download(bdk, again, kv_bytes);
  CHECK(memcmp(again, dk, kv_bytes) == 0, "%s: dk differs between runs", c->name);
  kc_download(bdv, again, kv_bytes);
  CHECK(memcmp(again, dv, kv_bytes) == 0, "%s: dv differs between runs", c->name);

  asu_cmd_destroy(cmd);
  asu_buffer *buffers[] = {bq, bk, bv, bout, blse, bqr, bkr, bdout, bdq, bdk, bdv, bdelta};
  for (size_t b = 0; b < sizeof buffers / sizeof *buffers; b++) asu_buffer_destroy(buffers[b]);
  free(out), free(lse), free(delta), free(dq), free(dk), free(dv), free(again);
  free(out_ref), free(lse_ref), free(delta_ref), free(dq_ref), free(dk_ref), free(dv_ref);
  free_problem(&p);
}

/* Records the forward or backward op with args in a new command and checks that it fails with
   ASU_ERR_INVALID and a message containing `expected`. */
static void expect_invalid(asu_device *dev, const char *label,
                           const asu_attention_backward_args *args, bool backward,
                           const char *expected) {
  asu_cmd *cmd = kc_cmd(dev);
  int rc = backward ? asu_op_attention_backward(cmd, args) : asu_op_attention(cmd, &args->fwd);
  asu_error err = {0};
  asu_cmd_status(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "%s: returned %d", label, rc);
  CHECK(strstr(err.message, expected) != NULL, "%s: message '%s' lacks '%s'", label, err.message,
        expected);
  asu_cmd_destroy(cmd);
}

static void test_invalid_arguments(asu_device *dev) {
  /* 4 query rows, 2 heads, 1 kv head, head_dim 8, with one buffer too small at a time. */
  asu_buffer *big = kc_buffer(dev, NULL, 4096), *small = kc_buffer(dev, NULL, 16);
  asu_attention_backward_args args = {
      .fwd = {.q = big, .k = big, .v = big, .out = big, .lse = big, .q_ranges = big,
              .q_rows = 4, .kv_rows = 4, .n_head = 2, .n_kv_head = 1, .head_dim = 8,
              .scale = 0.35f},
      .k_ranges = big, .dout = big, .dq = big, .dk = big, .dv = big, .delta = big};

  asu_attention_backward_args a = args;
  a.fwd.q = small;
  expect_invalid(dev, "small q", &a, false, "attention (q_rows 4, kv_rows 4, n_head 2");
  a = args;
  a.fwd.lse = small;
  expect_invalid(dev, "small lse", &a, false, "lse");
  a = args;
  a.fwd.n_head = 3;
  a.fwd.n_kv_head = 2;
  expect_invalid(dev, "n_head not a multiple", &a, false, "multiple of n_kv_head");
  a = args;
  a.fwd.head_dim = 300;
  expect_invalid(dev, "head_dim too large", &a, false, "head_dim");
  a = args;
  a.dk = small;
  expect_invalid(dev, "small dk", &a, true, "attention backward");
  a = args;
  a.k_ranges = NULL;
  expect_invalid(dev, "missing k_ranges", &a, true, "k_ranges");

  /* A forced texel build rejects head rows it cannot read 4 floats at a time. */
  setenv("ASU_ATTENTION_VARIANT", "texel", 1);
  a = args;
  a.fwd.head_dim = 6;
  expect_invalid(dev, "texel head_dim 6", &a, false, "multiple of 4");
  expect_invalid(dev, "texel backward head_dim 6", &a, true, "multiple of 4");
  setenv("ASU_ATTENTION_VARIANT", "fastest", 1);
  expect_invalid(dev, "unknown variant", &args, false, "ASU_ATTENTION_VARIANT");
  unsetenv("ASU_ATTENTION_VARIANT");

  /* No query rows: nothing to do. */
  a = args;
  a.fwd.q_rows = 0;
  asu_cmd *cmd = kc_cmd(dev);
  CHECK(asu_op_attention(cmd, &a.fwd) == ASU_OK, "zero query rows: forward failed");
  CHECK(asu_op_attention_backward(cmd, &a) == ASU_OK, "zero query rows: backward failed");
  CHECK(kc_submit(cmd, "zero query rows") == ASU_OK, "zero query rows: submit failed");
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(big);
  asu_buffer_destroy(small);
}

/* Makes the wrappers pick the workgroup size they use on GPUs on this device too, so that a CPU
   driver also runs workgroups of several subgroups. The wrappers choose by device type, so the
   test overrides the type in the device's info record. */
static void use_gpu_workgroup_sizes(asu_device *dev) {
  asu_device_info *info = (asu_device_info *)asu_device_get_info(dev);
  info->type_name = "GPU (test override)";
}

int main(void) {
  asu_device *dev = kc_device();
  const char *only = getenv("ASU_TEST_CASE");  /* run the cases whose name contains this */
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    if (only && !strstr(cases[c].name, only)) continue;
    kc_seed(1000 + c);
    test_case(dev, &cases[c], true);
  }
  test_invalid_arguments(dev);

  /* The same cases with GPU workgroup sizes, against the reference only, then reading storage
     buffers where this device would read texels. */
  use_gpu_workgroup_sizes(dev);
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    if (only && !strstr(cases[c].name, only)) continue;
    kc_seed(1000 + c);
    test_case(dev, &cases[c], false);
  }
  setenv("ASU_ATTENTION_VARIANT", "buffer", 1);
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    if (only && !strstr(cases[c].name, only)) continue;
    kc_seed(1000 + c);
    test_case(dev, &cases[c], false);
  }
  unsetenv("ASU_ATTENTION_VARIANT");
  asu_device_destroy(dev);
  return kc_finish();
}
