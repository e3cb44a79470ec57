/* RMSNorm forward and backward. The row kernels run one workgroup per row. */
#include <stdio.h>

#include "ops_internal.h"

/* Mirrors the push constants of shaders/rmsnorm_forward.comp. */
typedef struct rmsnorm_push {
  uint32_t rows, dim;
  float eps;
} rmsnorm_push;
_Static_assert(sizeof(rmsnorm_push) == 12, "rmsnorm_push must match the shader");

/* Mirrors the push constants of shaders/rmsnorm_backward_input.comp and
   shaders/rmsnorm_backward_weight.comp. */
typedef struct rmsnorm_backward_push {
  uint32_t rows, dim;
} rmsnorm_backward_push;
_Static_assert(sizeof(rmsnorm_backward_push) == 8, "rmsnorm_backward_push must match the shader");

/* Invocations per row: one subgroup where subgroups are narrow (CPU SIMD lanes, where a single
   subgroup needs no barrier), four subgroups on GPUs. */
static uint32_t row_local_size(asu_cmd *cmd) {
  uint32_t subgroup = asu_device_get_info(asu_cmd_device(cmd))->subgroup_size;
  if (subgroup == 0) subgroup = 32;
  return subgroup < 16 ? subgroup : 4 * subgroup;
}

int asu_op_rmsnorm(asu_cmd *cmd, asu_buffer *x, asu_buffer *w, asu_buffer *y, asu_buffer *rstd,
                   uint32_t rows, uint32_t dim, float eps) {
  char op[96];
  snprintf(op, sizeof op, "rmsnorm (rows %u, dim %u)", rows, dim);
  uint64_t matrix = (uint64_t)rows * dim * sizeof(float);
  if (!asu_ops_fits(cmd, op, "x", x, matrix) ||
      !asu_ops_fits(cmd, op, "w", w, (uint64_t)dim * sizeof(float)) ||
      !asu_ops_fits(cmd, op, "y", y, matrix) ||
      !asu_ops_fits(cmd, op, "rstd", rstd, (uint64_t)rows * sizeof(float)))
    return asu_cmd_status(cmd, NULL);
  if (x == y) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: y may not alias x", op);
    return ASU_ERR_INVALID;
  }
  if (rows == 0 || dim == 0) return asu_cmd_status(cmd, NULL);

  asu_buffer *buffers[] = {x, w, y, rstd};
  bool texel = asu_ops_use_texels(cmd, buffers, 2, dim);
  uint32_t local_size = row_local_size(cmd);
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, "rmsnorm_forward", texel, 0x3, &local_size, 1,
                                             4, sizeof(rmsnorm_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  rmsnorm_push push = {rows, dim, eps};
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, rows, 1);
  return asu_cmd_status(cmd, NULL);
}

int asu_op_rmsnorm_backward(asu_cmd *cmd, asu_buffer *x, asu_buffer *w, asu_buffer *rstd,
                            asu_buffer *dy, asu_buffer *dx, asu_buffer *dw, uint32_t rows,
                            uint32_t dim) {
  char op[96];
  snprintf(op, sizeof op, "rmsnorm_backward (rows %u, dim %u)", rows, dim);
  uint64_t matrix = (uint64_t)rows * dim * sizeof(float);
  if (!asu_ops_fits(cmd, op, "x", x, matrix) ||
      !asu_ops_fits(cmd, op, "w", w, (uint64_t)dim * sizeof(float)) ||
      !asu_ops_fits(cmd, op, "rstd", rstd, (uint64_t)rows * sizeof(float)) ||
      !asu_ops_fits(cmd, op, "dy", dy, matrix) || !asu_ops_fits(cmd, op, "dx", dx, matrix) ||
      (dw && !asu_ops_fits(cmd, op, "dw", dw, (uint64_t)dim * sizeof(float))))
    return asu_cmd_status(cmd, NULL);
  if (rows == 0 || dim == 0) return asu_cmd_status(cmd, NULL);

  rmsnorm_backward_push push = {rows, dim};
  uint32_t local_size = row_local_size(cmd);
  /* dx is read through binding 5 and written through binding 4. */
  asu_buffer *input_buffers[] = {x, w, rstd, dy, dx, dx};
  asu_buffer *inputs[] = {x, w, dy, dx};
  bool texel = asu_ops_use_texels(cmd, inputs, 4, dim);
  asu_kernel *input_kernel = asu_ops_kernel_pieces(cmd, "rmsnorm_backward_input", texel, 0x2b,
                                                   &local_size, 1, 6,
                                                   sizeof(rmsnorm_backward_push));
  if (!input_kernel) return asu_cmd_status(cmd, NULL);
  asu_ops_dispatch_1d(cmd, input_kernel, input_buffers, &push, rows, 1);

  if (dw) {
    /* dw is read through binding 4 and written through binding 3. */
    asu_buffer *weight_buffers[] = {x, rstd, dy, dw, dw};
    asu_buffer *weight_inputs[] = {x, dy, dw};
    bool texel_columns = asu_ops_use_texels(cmd, weight_inputs, 3, dim);
    uint32_t column_local_size = ASU_OPS_LOCAL_SIZE;
    asu_kernel *weight_kernel =
        asu_ops_kernel_pieces(cmd, "rmsnorm_backward_weight", texel_columns, 0x15,
                              &column_local_size, 1, 5, sizeof(push));
    if (!weight_kernel) return asu_cmd_status(cmd, NULL);
    asu_ops_dispatch_1d(cmd, weight_kernel, weight_buffers, &push,
                        texel_columns ? dim / 4 : dim, column_local_size);
  }
  return asu_cmd_status(cmd, NULL);
}
