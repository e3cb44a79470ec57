/* End-to-end rows of one model: load, prefill, decode, teacher, training step and peak device
   memory, each against a reference measured in the same run:
   - prefill, teacher and train_asu: tokens/s that OpenBLAS reaches on the same matrix products
     alone (every linear layer and the output projection, plus their input gradients for the
     training step), without attention, norms or the adapter;
   - decode: the copy bandwidth of the device over the bytes of weights read per token;
   - peak_memory: the bytes of the weights. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "model_internal.h"

/* Bytes of one weight on the device: F16 matrices stay F16 where the device reads them so. */
static double bytes_of(const asu_weight *w) {
  double element = asu_buffer_element(w->buf) == ASU_ELEMENT_F16 ? 2 : 4;
  return element * w->rows * w->cols;
}

static double layer_bytes(const asu_model *m) {
  double bytes = 0;
  for (uint32_t l = 0; l < m->cfg.n_layers; l++)
    for (int w = 0; w < ASU_W_PER_LAYER; w++) bytes += bytes_of(&m->layers[l][w]);
  return bytes;
}

/* Bytes a decoding step reads: every block, the final norm, the output projection and one row
   of the embedding table (none more when the output projection is the table). */
static double weight_bytes_per_token(const asu_model *m) {
  double row = m->tied_output ? 0 : bytes_of(&m->tok_embd) / m->tok_embd.rows;
  return layer_bytes(m) + bytes_of(&m->output_norm) + bytes_of(&m->output) + row;
}

static double weight_bytes_stored(const asu_model *m) {
  double tables = bytes_of(&m->tok_embd) + (m->tied_output ? 0 : bytes_of(&m->output));
  return layer_bytes(m) + bytes_of(&m->output_norm) + tables;
}

/* ---- The OpenBLAS reference: the model's matrix products on host memory. ---- */

typedef struct blas_products {
  const asu_model_config *c;
  uint32_t rows, logits_rows;
  bool backward;
  float *x, *w, *y, *dx;  /* x and w stay fixed, so no value drifts into subnormals */
} blas_products;

static void product(blas_products *p, uint32_t rows, uint32_t in, uint32_t out) {
  bench_gemm_shape forward = {.m = rows, .n = out, .k = in, .trans_b = true};
  bench_blas_sgemm(&forward, p->x, p->w, p->y);
  if (!p->backward) return;
  bench_gemm_shape input_grad = {.m = rows, .n = in, .k = out};
  bench_blas_sgemm(&input_grad, p->y, p->w, p->dx);
}

static int run_products(void *ctx, uint32_t n, double *seconds, asu_error *err) {
  (void)err;
  blas_products *p = ctx;
  const asu_model_config *c = p->c;
  uint32_t kv = c->n_kv_head * c->head_dim, r = p->rows;
  double start = bench_now();
  for (uint32_t i = 0; i < n; i++) {
    for (uint32_t l = 0; l < c->n_layers; l++) {
      product(p, r, c->dim, c->dim);
      product(p, r, c->dim, kv);
      product(p, r, c->dim, kv);
      product(p, r, c->dim, c->dim);
      product(p, r, c->dim, c->ffn_dim);
      product(p, r, c->dim, c->ffn_dim);
      product(p, r, c->ffn_dim, c->dim);
    }
    product(p, p->logits_rows, c->dim, c->vocab);
  }
  *seconds = bench_now() - start;
  return ASU_OK;
}

/* Seconds OpenBLAS takes for the products of `rows` rows (logits for the last logits_rows). */
static int blas_reference(const bench_options *o, const asu_model_config *c, uint32_t rows,
                          uint32_t logits_rows, bool backward, double *seconds, asu_error *err) {
  size_t width = c->ffn_dim > c->dim ? c->ffn_dim : c->dim;
  size_t wide = c->vocab > width ? c->vocab : width;
  blas_products p = {.c = c, .rows = rows, .logits_rows = logits_rows, .backward = backward};
  p.x = bench_host_floats((size_t)rows * width, 1.0f, 50);
  p.w = bench_host_floats(wide * c->dim, 0.05f, 51);
  p.y = bench_host_floats((size_t)rows * wide, 1.0f, 52);
  p.dx = bench_host_floats((size_t)rows * width, 1.0f, 53);
  int rc = p.x && p.w && p.y && p.dx ? bench_median(o, run_products, &p, seconds, err)
                                     : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  free(p.x);
  free(p.dx);
  free(p.w);
  free(p.y);
  return rc;
}

/* ---- Rows. ---- */

/* Device times of one model, measured before anything else is allocated on its device so that
   the peak memory is the engine's own. */
typedef struct model_times {
  double prefill, token, teacher, step;
  uint32_t train_rows;
  uint64_t peak_bytes;
} model_times;

static int measure_model(const bench_options *o, asu_model *m, model_times *t, asu_error *err) {
  int rc = bench_decode_times(o, m, &t->prefill, &t->token, err);
  if (!rc) rc = bench_train_times(o, m, &t->train_rows, &t->teacher, &t->step, err);
  uint64_t current = 0;
  asu_device_memory_usage(m->dev, &current, &t->peak_bytes);
  return rc;
}

/* The references, then one row per measurement. */
static int add_rows(const bench_options *o, asu_model *m, const model_times *t,
                    const char *label, bench_results *r, asu_error *err) {
  const asu_model_config *c = &m->cfg;
  uint32_t rows = t->train_rows;
  double copy = 0, prefill_ref = 0, teacher_ref = 0, step_ref = 0;
  size_t copy_bytes = o->quick ? (4u << 20) : (64u << 20);
  int rc = bench_copy_bandwidth(o, m->dev, copy_bytes, &copy, err);
  if (!rc) rc = blas_reference(o, c, o->prompt_tokens, 1, false, &prefill_ref, err);
  if (!rc) rc = blas_reference(o, c, rows, rows, false, &teacher_ref, err);
  if (!rc) rc = blas_reference(o, c, rows, rows, true, &step_ref, err);
  if (rc) return rc;
  bench_add(r, "prefill", label, o->prompt_tokens / t->prefill, "tokens/s", "openblas_matmuls",
            o->prompt_tokens / prefill_ref);
  bench_add(r, "decode", label, 1.0 / t->token, "tokens/s", "copy_bw/weights",
            copy / weight_bytes_per_token(m));
  bench_add(r, "teacher", label, rows / t->teacher, "tokens/s", "openblas_matmuls",
            rows / teacher_ref);
  bench_add(r, "train_asu", label, rows / t->step, "tokens/s", "openblas_matmuls",
            rows / step_ref);
  bench_add(r, "peak_memory", label, (double)t->peak_bytes / (1 << 20), "MiB", "weights",
            weight_bytes_stored(m) / (1 << 20));
  return ASU_OK;
}

int bench_e2e(const bench_options *o, const char *path, const char *label, bool serve_rows,
              bench_results *r, asu_error *err) {
  asu_model *m = NULL;
  model_times times = {0};
  double start = bench_now();
  int rc = asu_model_load(path, o->device, &m, err);
  if (rc) return rc;
  bench_add(r, "load", label, bench_now() - start, "s", NULL, 0);
  rc = measure_model(o, m, &times, err);
  if (!rc) rc = add_rows(o, m, &times, label, r, err);
  if (!rc && serve_rows) rc = bench_serve_latency(o, m, label, r, err);
  asu_model_destroy(m);
  return rc ? asu_error_wrap(err, "%s: ", label) : ASU_OK;
}
