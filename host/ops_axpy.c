/* y = alpha * x + y. */
#include "ops_internal.h"

int asu_op_axpy(asu_cmd *cmd, float alpha, asu_buffer *x, asu_buffer *y, uint32_t n) {
  size_t bytes = (size_t)n * sizeof(float);
  if (asu_buffer_size(x) < bytes || asu_buffer_size(y) < bytes) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "axpy of %u floats does not fit buffers of %zu and %zu bytes",
                 n, asu_buffer_size(x), asu_buffer_size(y));
    return ASU_ERR_INVALID;
  }
  /* y is read through binding 2 and written through binding 1. */
  asu_buffer *buffers[] = {x, y, y};
  asu_buffer *inputs[] = {x, y};
  bool texel = asu_ops_use_texels(cmd, inputs, 2, n);
  uint32_t local_size = ASU_OPS_LOCAL_SIZE;
  asu_kernel *kernel =
      asu_ops_kernel_pieces(cmd, "axpy", texel, 0x5, &local_size, 1, 3, 2 * sizeof(uint32_t));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  struct { uint32_t n; float alpha; } push = {n, alpha};
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, texel ? n / 4 : n, local_size);
  return asu_cmd_status(cmd, NULL);
}
