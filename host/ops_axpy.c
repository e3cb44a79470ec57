/* y = alpha * x + y. */
#include "asu_ops.h"

int asu_op_axpy(asu_cmd *cmd, float alpha, asu_buffer *x, asu_buffer *y, uint32_t n) {
  size_t bytes = (size_t)n * sizeof(float);
  if (asu_buffer_size(x) < bytes || asu_buffer_size(y) < bytes) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "axpy of %u floats does not fit buffers of %zu and %zu bytes",
                 n, asu_buffer_size(x), asu_buffer_size(y));
    return ASU_ERR_INVALID;
  }
  asu_device *dev = asu_cmd_device(cmd);
  const uint32_t local_size = 64;
  asu_kernel *kernel;
  asu_error err;
  int rc = asu_kernel_get(dev, "axpy", &local_size, 1, 2, 8, &kernel, &err);
  if (rc) {
    asu_cmd_fail(cmd, rc, "%s", err.message);
    return rc;
  }
  struct { uint32_t n; float alpha; } push = {n, alpha};
  asu_buffer *buffers[] = {x, y};
  uint32_t gx, gy;
  asu_grid_2d(dev, (n + local_size - 1) / local_size, &gx, &gy);
  asu_cmd_dispatch(cmd, kernel, buffers, &push, gx, gy, 1);
  return asu_cmd_status(cmd, NULL);
}
