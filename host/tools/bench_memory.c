/* Memory-bound kernels: GB/s of the bytes each must read and write, against a device buffer copy
   that moves the same number of bytes (half read, half written) in the same run. */
#include <stdio.h>
#include <stdlib.h>

#include "asu_ops.h"
#include "bench.h"

enum { SLOTS = 6 };

/* Sizes of one run: rows x dim activations, rows x ffn for SwiGLU, loss_rows x vocab logits and
   n_flat for the element-wise optimiser kernels. */
typedef struct mem_sizes {
  uint32_t rows, dim, head_dim, ffn, loss_rows, vocab, n_flat;
} mem_sizes;

/* Float buffers in slots f[0..5] (values in [0, 1)), ints in [0, rows), the embedding table. */
typedef struct mem_run {
  mem_sizes z;
  asu_buffer *f[SLOTS], *ints, *table;
  int (*op)(asu_cmd *cmd, struct mem_run *m);
} mem_run;

static int op_rmsnorm(asu_cmd *cmd, mem_run *m) {
  return asu_op_rmsnorm(cmd, m->f[0], m->f[1], m->f[2], m->f[3], m->z.rows, m->z.dim, 1e-5f);
}
static int op_rmsnorm_backward(asu_cmd *cmd, mem_run *m) {
  return asu_op_rmsnorm_backward(cmd, m->f[0], m->f[1], m->f[3], m->f[2], m->f[4], m->f[5],
                                 m->z.rows, m->z.dim);
}
static int op_rope(asu_cmd *cmd, mem_run *m) {
  return asu_op_rope(cmd, m->f[0], m->ints, m->z.rows, m->z.dim / m->z.head_dim, m->z.head_dim,
                     10000.0f, false);
}
static int op_swiglu(asu_cmd *cmd, mem_run *m) {
  return asu_op_swiglu(cmd, m->f[0], m->f[1], m->f[2], m->z.rows * m->z.ffn);
}
static int op_swiglu_backward(asu_cmd *cmd, mem_run *m) {
  return asu_op_swiglu_backward(cmd, m->f[0], m->f[1], m->f[2], m->f[3], m->f[4],
                                m->z.rows * m->z.ffn);
}
static int op_softmax(asu_cmd *cmd, mem_run *m) {
  return asu_op_softmax(cmd, m->f[0], m->f[1], 0, m->z.loss_rows, m->z.vocab);
}
static int op_softmax_backward(asu_cmd *cmd, mem_run *m) {
  return asu_op_softmax_backward(cmd, m->f[0], m->f[1], m->f[2], 0, m->z.loss_rows, m->z.vocab);
}
static int op_log_softmax(asu_cmd *cmd, mem_run *m) {
  return asu_op_log_softmax(cmd, m->f[0], m->f[1], 0, m->z.loss_rows, m->z.vocab);
}
static int op_cross_entropy(asu_cmd *cmd, mem_run *m) {
  return asu_op_cross_entropy(cmd, m->f[0], m->ints, m->f[1], m->f[2], m->f[3], 0,
                              m->z.loss_rows, m->z.vocab);
}
static int op_kl(asu_cmd *cmd, mem_run *m) {
  return asu_op_kl(cmd, m->f[0], m->f[1], m->f[2], m->f[3], m->f[4], 0, m->z.loss_rows,
                   m->z.vocab);
}
static int op_adamw(asu_cmd *cmd, mem_run *m) {
  asu_adamw_args a = {.param = m->f[0], .grad = m->f[1], .m = m->f[2], .v = m->f[3],
                      .n = m->z.n_flat, .step = 1, .lr = 1e-6f, .beta1 = 0.9f, .beta2 = 0.999f,
                      .eps = 1e-8f, .weight_decay = 0.0f};
  return asu_op_adamw(cmd, &a);
}
static int op_embedding(asu_cmd *cmd, mem_run *m) {
  return asu_op_embedding(cmd, m->table, m->ints, m->f[0], m->z.rows, m->z.vocab, m->z.dim);
}
static int op_axpy(asu_cmd *cmd, mem_run *m) {
  return asu_op_axpy(cmd, 1e-6f, m->f[0], m->f[1], m->z.n_flat);
}

/* Which sizes a kernel runs on. */
typedef enum mem_dims { DIMS_ACT, DIMS_FFN, DIMS_LOGITS, DIMS_FLAT } mem_dims;

/* A kernel and the bytes it must move: reads plus writes, counting an accumulated output
   twice. */
typedef struct mem_case {
  const char *name;
  int (*op)(asu_cmd *cmd, mem_run *m);
  mem_dims dims;
  double bytes;
} mem_case;

static size_t mem_cases(const mem_sizes *z, mem_case *out) {
  double rd = (double)z->rows * z->dim, r = z->rows, d = z->dim, n_ffn = (double)z->rows * z->ffn;
  double lv = (double)z->loss_rows * z->vocab, l = z->loss_rows, n = z->n_flat;
  const mem_case list[] = {
      {"rmsnorm", op_rmsnorm, DIMS_ACT, 4 * (2 * rd + d + r)},
      {"rmsnorm_backward", op_rmsnorm_backward, DIMS_ACT, 4 * (4 * rd + 3 * d + r)},
      {"rope", op_rope, DIMS_ACT, 4 * (2 * rd + r)},
      {"swiglu", op_swiglu, DIMS_FFN, 4 * 3 * n_ffn},
      {"swiglu_backward", op_swiglu_backward, DIMS_FFN, 4 * 5 * n_ffn},
      {"softmax", op_softmax, DIMS_LOGITS, 4 * 2 * lv},
      {"softmax_backward", op_softmax_backward, DIMS_LOGITS, 4 * 3 * lv},
      {"log_softmax", op_log_softmax, DIMS_LOGITS, 4 * 2 * lv},
      {"cross_entropy", op_cross_entropy, DIMS_LOGITS, 4 * (2 * lv + 3 * l)},
      {"kl", op_kl, DIMS_LOGITS, 4 * (3 * lv + 2 * l)},
      {"adamw", op_adamw, DIMS_FLAT, 4 * 7 * n},
      {"embedding", op_embedding, DIMS_ACT, 4 * (2 * rd + r)},
      {"axpy", op_axpy, DIMS_FLAT, 4 * 3 * n},
  };
  size_t count = sizeof list / sizeof *list;
  for (size_t i = 0; i < count; i++) out[i] = list[i];
  return count;
}

static void format_shape(const mem_sizes *z, mem_dims dims, char *shape, size_t cap) {
  switch (dims) {
  case DIMS_ACT: snprintf(shape, cap, "%ux%u", z->rows, z->dim); break;
  case DIMS_FFN: snprintf(shape, cap, "%ux%u", z->rows, z->ffn); break;
  case DIMS_LOGITS: snprintf(shape, cap, "%ux%u", z->loss_rows, z->vocab); break;
  case DIMS_FLAT: snprintf(shape, cap, "n=%u", z->n_flat); break;
  }
}

static int record_op(void *ctx, asu_cmd *cmd, uint32_t n) {
  mem_run *m = ctx;
  for (uint32_t i = 0; i < n; i++) {
    int rc = m->op(cmd, m);
    if (rc) return rc;
  }
  return ASU_OK;
}

static size_t slot_floats(const mem_sizes *z) {
  size_t most = (size_t)z->rows * z->dim;
  size_t candidates[] = {(size_t)z->rows * z->ffn, (size_t)z->loss_rows * z->vocab, z->n_flat};
  for (size_t i = 0; i < 3; i++)
    if (candidates[i] > most) most = candidates[i];
  return most;
}

static int mem_run_create(asu_device *dev, mem_run *m, asu_error *err) {
  int rc = ASU_OK;
  for (int i = 0; i < SLOTS && !rc; i++)
    rc = bench_random_floats(dev, slot_floats(&m->z), 10 + i, &m->f[i], err);
  if (!rc) rc = bench_random_ints(dev, m->z.rows, m->z.rows, 20, &m->ints, err);
  if (!rc) rc = bench_random_floats(dev, (size_t)m->z.vocab * m->z.dim, 21, &m->table, err);
  return rc;
}

static void mem_run_free(mem_run *m) {
  for (int i = 0; i < SLOTS; i++) asu_buffer_destroy(m->f[i]);
  asu_buffer_destroy(m->ints);
  asu_buffer_destroy(m->table);
}

static int bench_case(const bench_options *o, asu_device *dev, mem_run *m, const mem_case *c,
                      bench_results *r, asu_error *err) {
  double seconds = 0, copy_per_second = 0;
  char shape[40];
  format_shape(&m->z, c->dims, shape, sizeof shape);
  if (!bench_selected(o, c->name, shape)) return ASU_OK;
  m->op = c->op;
  int rc = bench_median_cmd(o, dev, record_op, m, &seconds, err);
  if (!rc) rc = bench_copy_bandwidth(o, dev, (size_t)(c->bytes / 2), &copy_per_second, err);
  if (rc) return asu_error_wrap(err, "%s %s: ", c->name, shape);
  bench_add(r, c->name, shape, c->bytes / seconds * 1e-9, "GB/s", "vk_buffer_copy",
            copy_per_second * 1e-9);
  return ASU_OK;
}

int bench_memory(const bench_options *o, asu_device *dev, bench_results *r, asu_error *err) {
  mem_run m = {.z = o->quick ? (mem_sizes){64, 64, 8, 172, 64, 512, 1u << 16}
                             : (mem_sizes){512, 768, 64, 2048, 64, 32000, 1u << 22}};
  mem_case cases[16];
  size_t n = mem_cases(&m.z, cases);
  int rc = mem_run_create(dev, &m, err);
  for (size_t i = 0; i < n && !rc; i++) rc = bench_case(o, dev, &m, &cases[i], r, err);
  mem_run_free(&m);
  return rc;
}
