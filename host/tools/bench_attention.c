/* Causal attention forward and backward at a few sequence lengths. FLOPs count the causal half
   of the two products per head, 4 * T * T / 2 * heads * head_dim, for the forward pass. The
   backward pass counts 2.5 times that, since it runs five products instead of two. The
   reference is OpenBLAS running the score product Q K^T (T x T x head_dim) once per head. */
#include <stdio.h>
#include <stdlib.h>

#include "asu_ops.h"
#include "bench.h"

typedef struct attention_run {
  uint32_t t, heads, head_dim;
  asu_buffer *q, *k, *v, *out, *lse, *q_ranges, *k_ranges, *dout, *dq, *dk, *dv, *delta;
  float *hq, *hk, *hs;
} attention_run;

static asu_attention_args forward_args(attention_run *a) {
  return (asu_attention_args){
      .q = a->q, .k = a->k, .v = a->v, .out = a->out, .lse = a->lse, .q_ranges = a->q_ranges,
      .q_rows = a->t, .kv_rows = a->t, .n_head = a->heads, .n_kv_head = a->heads,
      .head_dim = a->head_dim, .scale = 0.125f};
}

static int record_forward(void *ctx, asu_cmd *cmd, uint32_t n) {
  asu_attention_args args = forward_args(ctx);
  for (uint32_t i = 0; i < n; i++) {
    int rc = asu_op_attention(cmd, &args);
    if (rc) return rc;
  }
  return ASU_OK;
}

static int record_backward(void *ctx, asu_cmd *cmd, uint32_t n) {
  attention_run *a = ctx;
  asu_attention_backward_args args = {
      .fwd = forward_args(a), .k_ranges = a->k_ranges, .dout = a->dout, .dq = a->dq,
      .dk = a->dk, .dv = a->dv, .delta = a->delta};
  for (uint32_t i = 0; i < n; i++) {
    int rc = asu_op_attention_backward(cmd, &args);
    if (rc) return rc;
  }
  return ASU_OK;
}

/* One Q K^T product per head; q and k rows are heads * head_dim wide. */
static int run_blas(void *ctx, uint32_t n, double *seconds, asu_error *err) {
  (void)err;
  attention_run *a = ctx;
  bench_gemm_shape s = {.m = a->t, .n = a->t, .k = a->head_dim, .trans_b = true};
  double start = bench_now();
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t h = 0; h < a->heads; h++)
      bench_blas_sgemm(&s, a->hq + (size_t)h * a->t * a->head_dim,
                       a->hk + (size_t)h * a->t * a->head_dim, a->hs);
  *seconds = bench_now() - start;
  return ASU_OK;
}

/* Causal ranges of one sequence: query i reads keys 0..i, key j is read by queries j..t-1. */
static int upload_ranges(asu_device *dev, attention_run *a, asu_error *err) {
  int32_t *q = malloc(2 * a->t * sizeof *q), *k = malloc(2 * a->t * sizeof *k);
  int rc = q && k ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (uint32_t i = 0; !rc && i < a->t; i++) {
    q[2 * i] = 0;
    q[2 * i + 1] = (int32_t)i;
    k[2 * i] = (int32_t)i;
    k[2 * i + 1] = (int32_t)a->t - 1;
  }
  size_t bytes = 2 * a->t * sizeof(int32_t);
  if (!rc) rc = asu_buffer_create(dev, bytes, &a->q_ranges, err);
  if (!rc) rc = asu_buffer_upload(a->q_ranges, 0, q, bytes, err);
  if (!rc) rc = asu_buffer_create(dev, bytes, &a->k_ranges, err);
  if (!rc) rc = asu_buffer_upload(a->k_ranges, 0, k, bytes, err);
  free(q);
  free(k);
  return rc;
}

static int attention_run_create(asu_device *dev, attention_run *a, asu_error *err) {
  size_t n = (size_t)a->t * a->heads * a->head_dim, rows = (size_t)a->t * a->heads;
  asu_buffer **inputs[] = {&a->q, &a->k, &a->v, &a->dout};
  asu_buffer **outputs[] = {&a->out, &a->dq, &a->dk, &a->dv};
  int rc = ASU_OK;
  for (int i = 0; i < 4 && !rc; i++) rc = bench_random_floats(dev, n, 30 + i, inputs[i], err);
  for (int i = 0; i < 4 && !rc; i++) rc = asu_buffer_create(dev, n * sizeof(float), outputs[i], err);
  if (!rc) rc = asu_buffer_create(dev, rows * sizeof(float), &a->lse, err);
  if (!rc) rc = asu_buffer_create(dev, rows * sizeof(float), &a->delta, err);
  if (!rc) rc = upload_ranges(dev, a, err);
  a->hq = bench_host_floats(n, 1.0f, 40);
  a->hk = bench_host_floats(n, 1.0f, 41);
  a->hs = bench_host_floats((size_t)a->t * a->t, 1.0f, 42);
  if (!rc && (!a->hq || !a->hk || !a->hs)) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  return rc;
}

static void attention_run_free(attention_run *a) {
  asu_buffer *all[] = {a->q, a->k, a->v, a->out, a->lse, a->q_ranges, a->k_ranges,
                       a->dout, a->dq, a->dk, a->dv, a->delta};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) asu_buffer_destroy(all[i]);
  free(a->hq);
  free(a->hk);
  free(a->hs);
}

static int bench_length(const bench_options *o, asu_device *dev, attention_run *a,
                        bench_results *r, asu_error *err) {
  char shape[80];
  snprintf(shape, sizeof shape, "T=%u heads=%ux%u causal", a->t, a->heads, a->head_dim);
  if (!bench_selected(o, "attention", shape)) return ASU_OK;
  double fwd = 0, bwd = 0, blas = 0;
  int rc = attention_run_create(dev, a, err);
  if (!rc) rc = bench_median_cmd(o, dev, record_forward, a, &fwd, err);
  /* The forward runs have left the out and lse that the backward pass reads. */
  if (!rc) rc = bench_median_cmd(o, dev, record_backward, a, &bwd, err);
  if (!rc) rc = bench_median(o, run_blas, a, &blas, err);
  attention_run_free(a);
  if (rc) return asu_error_wrap(err, "attention %s: ", shape);
  double flops = 4.0 * a->t * a->t / 2 * a->heads * a->head_dim;
  double blas_per_second = 2.0 * a->t * a->t * a->head_dim * a->heads / blas * 1e-9;
  bench_add(r, "attention", shape, flops / fwd * 1e-9, "GFLOP/s", "openblas_qk", blas_per_second);
  bench_add(r, "attention_backward", shape, 2.5 * flops / bwd * 1e-9, "GFLOP/s", "openblas_qk",
            blas_per_second);
  return ASU_OK;
}

int bench_attention(const bench_options *o, asu_device *dev, bench_results *r, asu_error *err) {
  static const uint32_t full_lengths[] = {128, 256, 512}, quick_lengths[] = {32, 64};
  const uint32_t *lengths = o->quick ? quick_lengths : full_lengths;
  size_t n = o->quick ? 2 : 3;
  for (size_t i = 0; i < n; i++) {
    attention_run a = {.t = lengths[i], .heads = o->quick ? 8 : 12, .head_dim = o->quick ? 8 : 64};
    int rc = bench_length(o, dev, &a, r, err);
    if (rc) return rc;
  }
  return ASU_OK;
}
