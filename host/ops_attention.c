/* Causal grouped-query attention with per-query key ranges: forward and backward. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_internal.h"

/* head_dim is a specialization constant that sizes per-invocation register arrays (four arrays
   of head_dim floats in the dk/dv kernel), so it is bounded.
   NOTE: the kernels read keys and queries straight from global memory without shared-memory
   tiles. They are checked on lavapipe only, and head_dim 128 may spill registers on a GPU. */
#define ATTENTION_MAX_HEAD_DIM 256u

/* Push constants shared by the attention kernels, mirroring `Push` in shaders/attention_*.comp. */
typedef struct attention_push {
  uint32_t q_rows;
  uint32_t kv_rows;
  uint32_t n_head;
  uint32_t n_kv_head;
  float scale;
} attention_push;
_Static_assert(sizeof(attention_push) == 20, "attention_push must match the shaders' Push block");

/* Workgroup size for kernels with one independent invocation per (row, head). A CPU driver such
   as Mesa's lavapipe runs each workgroup on one thread, so a CPU device gets workgroups of one
   subgroup, and more of them to spread over its threads. GPUs get 64. */
static uint32_t attention_local_size(asu_cmd *cmd) {
  const asu_device_info *info = asu_device_get_info(asu_cmd_device(cmd));
  if (!strcmp(info->type_name, "CPU") && info->subgroup_size) return info->subgroup_size;
  return ASU_OPS_LOCAL_SIZE;
}

/* Picks the build of the attention kernels. "buffer" reads head rows one float at a time from
   storage buffers. "texel" reads them as texels of 4 floats (shaders/pieces.glsl), so it needs
   head_dim to be a multiple of 4 and buffers with texel views. Devices with narrow subgroups
   (CPU SIMD lanes) get texels where possible. ASU_ATTENTION_VARIANT=buffer or =texel forces a
   build, and a forced texel build fails where it cannot run. Returns false after recording the
   failure in cmd. */
static bool use_texels(asu_cmd *cmd, const char *op, uint32_t head_dim, asu_buffer *const *rows,
                       size_t n_rows, bool *texel) {
  bool possible = head_dim % 4 == 0;
  for (size_t i = 0; i < n_rows; i++) possible = possible && asu_buffer_has_texels(rows[i]);
  const char *forced = getenv("ASU_ATTENTION_VARIANT");
  if (!forced || !*forced) {
    *texel = asu_ops_use_texels(cmd, rows, n_rows, head_dim);
    return true;
  }
  if (!strcmp(forced, "buffer")) {
    *texel = false;
    return true;
  }
  if (strcmp(forced, "texel")) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: ASU_ATTENTION_VARIANT is '%s'; expected 'buffer' or "
                 "'texel'", op, forced);
    return false;
  }
  if (!possible) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: ASU_ATTENTION_VARIANT=texel needs head_dim to be a "
                 "multiple of 4 and buffers with texel views; unset it to read storage buffers",
                 op);
    return false;
  }
  *texel = true;
  return true;
}

/* Validates the forward arguments, which both passes use, and formats the op name with its
   sizes into `op` for error messages. */
static bool check_attention(asu_cmd *cmd, const char *name, const asu_attention_args *a,
                            char *op, size_t op_size) {
  snprintf(op, op_size, "%s (q_rows %u, kv_rows %u, n_head %u, n_kv_head %u, head_dim %u)", name,
           a->q_rows, a->kv_rows, a->n_head, a->n_kv_head, a->head_dim);
  if (a->n_head == 0 || a->n_kv_head == 0 || a->n_head % a->n_kv_head != 0) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: n_head must be a positive multiple of n_kv_head", op);
    return false;
  }
  if (a->head_dim == 0 || a->head_dim > ATTENTION_MAX_HEAD_DIM) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: head_dim must be in 1..%u", op,
                 ATTENTION_MAX_HEAD_DIM);
    return false;
  }
  /* The shaders read ranges as int32 and compare them with row numbers. */
  if (a->q_rows > INT32_MAX || a->kv_rows > INT32_MAX) {
    asu_cmd_fail(cmd, ASU_ERR_LIMIT, "%s: row counts must be below 2^31", op);
    return false;
  }
  uint64_t q_bytes = (uint64_t)a->q_rows * a->n_head * a->head_dim * 4;
  uint64_t kv_bytes = (uint64_t)a->kv_rows * a->n_kv_head * a->head_dim * 4;
  return asu_ops_fits(cmd, op, "q", a->q, q_bytes) &&
         asu_ops_fits(cmd, op, "k", a->k, kv_bytes) &&
         asu_ops_fits(cmd, op, "v", a->v, kv_bytes) &&
         asu_ops_fits(cmd, op, "out", a->out, q_bytes) &&
         asu_ops_fits(cmd, op, "lse", a->lse, (uint64_t)a->q_rows * a->n_head * 4) &&
         asu_ops_fits(cmd, op, "q_ranges", a->q_ranges, (uint64_t)a->q_rows * 8);
}

/* Dispatches one invocation per item, for n items. */
static void dispatch_items(asu_cmd *cmd, asu_kernel *kernel, asu_buffer *const *buffers,
                           const attention_push *push, uint32_t local_size, uint64_t n) {
  if (n > 0) asu_ops_dispatch_1d(cmd, kernel, buffers, push, n, local_size);
}

/* NOTE: a query whose range is empty after clamping to the key rows gets out = 0 and
   lse = -inf. The backward pass skips such (query, key) pairs, so its gradients are 0. */
int asu_op_attention(asu_cmd *cmd, const asu_attention_args *args) {
  char op[160];
  if (!check_attention(cmd, "attention", args, op, sizeof op)) return asu_cmd_status(cmd, NULL);

  asu_buffer *rows[] = {args->q, args->k, args->v};
  bool texel;
  if (!use_texels(cmd, op, args->head_dim, rows, 3, &texel)) return asu_cmd_status(cmd, NULL);
  const uint32_t spec[2] = {attention_local_size(cmd), args->head_dim};
  /* q, k and v are head rows. */
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, "attention_forward", texel, 0x7, spec, 2, 6,
                                             sizeof(attention_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);

  attention_push push = {args->q_rows, args->kv_rows, args->n_head, args->n_kv_head, args->scale};
  asu_buffer *buffers[] = {args->q, args->k, args->v, args->q_ranges, args->out, args->lse};
  dispatch_items(cmd, kernel, buffers, &push, spec[0], (uint64_t)args->q_rows * args->n_head);
  return asu_cmd_status(cmd, NULL);
}

int asu_op_attention_backward(asu_cmd *cmd, const asu_attention_backward_args *args) {
  const asu_attention_args *a = &args->fwd;
  char op[160];
  if (!check_attention(cmd, "attention backward", a, op, sizeof op))
    return asu_cmd_status(cmd, NULL);
  uint64_t q_bytes = (uint64_t)a->q_rows * a->n_head * a->head_dim * 4;
  uint64_t kv_bytes = (uint64_t)a->kv_rows * a->n_kv_head * a->head_dim * 4;
  if (!asu_ops_fits(cmd, op, "k_ranges", args->k_ranges, (uint64_t)a->kv_rows * 8) ||
      !asu_ops_fits(cmd, op, "dout", args->dout, q_bytes) ||
      !asu_ops_fits(cmd, op, "dq", args->dq, q_bytes) ||
      !asu_ops_fits(cmd, op, "dk", args->dk, kv_bytes) ||
      !asu_ops_fits(cmd, op, "dv", args->dv, kv_bytes) ||
      !asu_ops_fits(cmd, op, "delta", args->delta, (uint64_t)a->q_rows * a->n_head * 4))
    return asu_cmd_status(cmd, NULL);

  asu_buffer *rows[] = {a->q, a->k, a->v, a->out, args->dout};
  bool texel;
  if (!use_texels(cmd, op, a->head_dim, rows, 5, &texel)) return asu_cmd_status(cmd, NULL);
  const uint32_t spec[2] = {attention_local_size(cmd), a->head_dim};
  /* The head rows are q, k, v, out and dout (bindings 0, 1, 2, 4, 6) for dq, and q, k, v and
     dout (bindings 0, 1, 2, 6) for dk and dv. */
  asu_kernel *dq_kernel = asu_ops_kernel_pieces(cmd, "attention_backward_dq", texel, 0x57, spec, 2,
                                                   9, sizeof(attention_push));
  asu_kernel *dkdv_kernel =
      asu_ops_kernel_pieces(cmd, "attention_backward_dkdv", texel, 0x47, spec, 2, 10,
                            sizeof(attention_push));
  if (!dq_kernel || !dkdv_kernel) return asu_cmd_status(cmd, NULL);

  attention_push push = {a->q_rows, a->kv_rows, a->n_head, a->n_kv_head, a->scale};
  /* Pass 1: delta and dq, one invocation per (query row, head). */
  asu_buffer *dq_buffers[] = {a->q,   a->k,       a->v,     a->q_ranges, a->out,
                              a->lse, args->dout, args->dq, args->delta};
  dispatch_items(cmd, dq_kernel, dq_buffers, &push, spec[0], (uint64_t)a->q_rows * a->n_head);
  /* Pass 2: dk and dv, one invocation per (key row, kv head), reading the delta of pass 1. */
  asu_buffer *dkdv_buffers[] = {a->q,   a->k,       a->v,        a->q_ranges, args->k_ranges,
                                a->lse, args->dout, args->delta, args->dk,    args->dv};
  dispatch_items(cmd, dkdv_kernel, dkdv_buffers, &push, spec[0],
                 (uint64_t)a->kv_rows * a->n_kv_head);
  return asu_cmd_status(cmd, NULL);
}
