/* Row-wise softmax ops: log-softmax, cross-entropy and KL divergence, the last two fused with
   their gradients. Each runs one workgroup per row. */
#include <stdio.h>
#include <string.h>

#include "ops_internal.h"

/* Push constants of the row kernels, mirroring `Push` in shaders/log_softmax.comp,
   cross_entropy.comp and kl.comp. */
typedef struct row_push {
  uint32_t row_begin;
  uint32_t row_end;
  uint32_t cols;
} row_push;
_Static_assert(sizeof(row_push) == 12, "row_push must match the shaders' Push block");

/* Workgroup size for one row. A CPU driver such as Mesa's lavapipe runs each workgroup on one
   thread, so a CPU device gets one subgroup per row and spreads the rows over its threads. GPUs
   get 256 invocations to share a row. */
static uint32_t row_local_size(const asu_device_info *info) {
  if (!strcmp(info->type_name, "CPU") && info->subgroup_size) return info->subgroup_size;
  return info->max_workgroup_invocations < 256 ? info->max_workgroup_invocations : 256;
}

/* Validates the row range and column count and formats the op name with its sizes into `op`
   for error messages. */
static bool check_rows(asu_cmd *cmd, const char *name, uint32_t row_begin, uint32_t row_end,
                       uint32_t cols, char *op, size_t op_size) {
  snprintf(op, op_size, "%s (rows [%u, %u), %u columns)", name, row_begin, row_end, cols);
  if (row_begin > row_end || cols == 0) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: need row_begin <= row_end and at least one column",
                 op);
    return false;
  }
  return true;
}

/* Records one dispatch of `shader` with one workgroup per row of [row_begin, row_end). The
   bindings in `pieces` are its row inputs, which its texel build reads as texels. */
static int dispatch_rows(asu_cmd *cmd, const char *shader, asu_buffer *const *buffers,
                         uint32_t n_buffers, uint32_t pieces, uint32_t row_begin,
                         uint32_t row_end, uint32_t cols) {
  if (row_begin == row_end) return asu_cmd_status(cmd, NULL);
  asu_device *dev = asu_cmd_device(cmd);
  const uint32_t local_size = row_local_size(asu_device_get_info(dev));
  asu_buffer *inputs[8];
  size_t n_inputs = 0;
  for (uint32_t i = 0; i < n_buffers; i++)
    if ((pieces >> i) & 1) inputs[n_inputs++] = buffers[i];
  bool texel = asu_ops_use_texels(cmd, inputs, n_inputs, cols);
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, shader, texel, pieces, &local_size, 1,
                                             n_buffers, sizeof(row_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  row_push push = {row_begin, row_end, cols};
  uint32_t gx, gy;
  asu_grid_2d(dev, row_end - row_begin, &gx, &gy);
  asu_cmd_dispatch(cmd, kernel, buffers, &push, gx, gy, 1);
  return asu_cmd_status(cmd, NULL);
}

int asu_op_log_softmax(asu_cmd *cmd, asu_buffer *x, asu_buffer *y, uint32_t row_begin,
                       uint32_t row_end, uint32_t cols) {
  char op[96];
  if (!check_rows(cmd, "log_softmax", row_begin, row_end, cols, op, sizeof op))
    return asu_cmd_status(cmd, NULL);
  uint64_t matrix_bytes = (uint64_t)row_end * cols * 4;
  if (!asu_ops_fits(cmd, op, "x", x, matrix_bytes) || !asu_ops_fits(cmd, op, "y", y, matrix_bytes))
    return asu_cmd_status(cmd, NULL);
  asu_buffer *buffers[] = {x, y};
  return dispatch_rows(cmd, "log_softmax", buffers, 2, 0x1, row_begin, row_end, cols);
}

int asu_op_softmax(asu_cmd *cmd, asu_buffer *x, asu_buffer *y, uint32_t row_begin,
                   uint32_t row_end, uint32_t cols) {
  char op[96];
  if (!check_rows(cmd, "softmax", row_begin, row_end, cols, op, sizeof op))
    return asu_cmd_status(cmd, NULL);
  uint64_t matrix_bytes = (uint64_t)row_end * cols * 4;
  if (!asu_ops_fits(cmd, op, "x", x, matrix_bytes) || !asu_ops_fits(cmd, op, "y", y, matrix_bytes))
    return asu_cmd_status(cmd, NULL);
  asu_buffer *buffers[] = {x, y};
  return dispatch_rows(cmd, "softmax_forward", buffers, 2, 0x1, row_begin, row_end, cols);
}

int asu_op_softmax_backward(asu_cmd *cmd, asu_buffer *y, asu_buffer *dy, asu_buffer *dx,
                            uint32_t row_begin, uint32_t row_end, uint32_t cols) {
  char op[96];
  if (!check_rows(cmd, "softmax_backward", row_begin, row_end, cols, op, sizeof op))
    return asu_cmd_status(cmd, NULL);
  uint64_t matrix_bytes = (uint64_t)row_end * cols * 4;
  if (!asu_ops_fits(cmd, op, "y", y, matrix_bytes) ||
      !asu_ops_fits(cmd, op, "dy", dy, matrix_bytes) ||
      !asu_ops_fits(cmd, op, "dx", dx, matrix_bytes))
    return asu_cmd_status(cmd, NULL);
  asu_buffer *buffers[] = {y, dy, dx};
  return dispatch_rows(cmd, "softmax_backward", buffers, 3, 0x3, row_begin, row_end, cols);
}

/* NOTE: a row whose target is outside [0, vocab) gets loss 0 and a zero gradient, like a row
   with weight 0. The embedding op treats invalid ids the same way, and callers validate targets
   on the host. */
int asu_op_cross_entropy(asu_cmd *cmd, asu_buffer *logits, asu_buffer *targets,
                         asu_buffer *weights, asu_buffer *loss, asu_buffer *dlogits,
                         uint32_t row_begin, uint32_t row_end, uint32_t vocab) {
  char op[96];
  if (!check_rows(cmd, "cross_entropy", row_begin, row_end, vocab, op, sizeof op))
    return asu_cmd_status(cmd, NULL);
  uint64_t matrix_bytes = (uint64_t)row_end * vocab * 4;
  uint64_t row_bytes = (uint64_t)row_end * 4;
  if (!asu_ops_fits(cmd, op, "logits", logits, matrix_bytes) ||
      !asu_ops_fits(cmd, op, "targets", targets, row_bytes) ||
      !asu_ops_fits(cmd, op, "weights", weights, row_bytes) ||
      !asu_ops_fits(cmd, op, "loss", loss, row_bytes) ||
      !asu_ops_fits(cmd, op, "dlogits", dlogits, matrix_bytes))
    return asu_cmd_status(cmd, NULL);
  asu_buffer *buffers[] = {logits, targets, weights, loss, dlogits};
  return dispatch_rows(cmd, "cross_entropy", buffers, 5, 0x1, row_begin, row_end, vocab);
}

int asu_op_kl(asu_cmd *cmd, asu_buffer *teacher_logp, asu_buffer *logits, asu_buffer *weights,
              asu_buffer *loss, asu_buffer *dlogits, uint32_t row_begin, uint32_t row_end,
              uint32_t vocab) {
  char op[96];
  if (!check_rows(cmd, "kl", row_begin, row_end, vocab, op, sizeof op))
    return asu_cmd_status(cmd, NULL);
  uint64_t matrix_bytes = (uint64_t)row_end * vocab * 4;
  uint64_t row_bytes = (uint64_t)row_end * 4;
  if (!asu_ops_fits(cmd, op, "teacher_logp", teacher_logp, matrix_bytes) ||
      !asu_ops_fits(cmd, op, "logits", logits, matrix_bytes) ||
      !asu_ops_fits(cmd, op, "weights", weights, row_bytes) ||
      !asu_ops_fits(cmd, op, "loss", loss, row_bytes) ||
      !asu_ops_fits(cmd, op, "dlogits", dlogits, matrix_bytes))
    return asu_cmd_status(cmd, NULL);
  asu_buffer *buffers[] = {teacher_logp, logits, weights, loss, dlogits};
  return dispatch_rows(cmd, "kl", buffers, 5, 0x3, row_begin, row_end, vocab);
}
