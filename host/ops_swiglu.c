/* SwiGLU forward and backward, element-wise. */
#include <stdio.h>

#include "ops_internal.h"

/* Mirrors the push constants of shaders/swiglu_forward.comp and shaders/swiglu_backward.comp. */
typedef struct swiglu_push {
  uint32_t n;
} swiglu_push;
_Static_assert(sizeof(swiglu_push) == 4, "swiglu_push must match the shaders");

int asu_op_swiglu(asu_cmd *cmd, asu_buffer *gate, asu_buffer *up, asu_buffer *out, uint32_t n) {
  char op[64];
  snprintf(op, sizeof op, "swiglu (n %u)", n);
  uint64_t bytes = (uint64_t)n * sizeof(float);
  if (!asu_ops_fits(cmd, op, "gate", gate, bytes) || !asu_ops_fits(cmd, op, "up", up, bytes) ||
      !asu_ops_fits(cmd, op, "out", out, bytes))
    return asu_cmd_status(cmd, NULL);
  if (n == 0) return asu_cmd_status(cmd, NULL);

  asu_buffer *buffers[] = {gate, up, out};
  bool texel = asu_ops_use_texels(cmd, buffers, 2, n);
  uint32_t local_size = ASU_OPS_LOCAL_SIZE;
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, "swiglu_forward", texel, 0x3, &local_size, 1, 3,
                                             sizeof(swiglu_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  swiglu_push push = {n};
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, texel ? n / 4 : n, local_size);
  return asu_cmd_status(cmd, NULL);
}

int asu_op_swiglu_backward(asu_cmd *cmd, asu_buffer *gate, asu_buffer *up, asu_buffer *dout,
                           asu_buffer *dgate, asu_buffer *dup, uint32_t n) {
  char op[64];
  snprintf(op, sizeof op, "swiglu_backward (n %u)", n);
  uint64_t bytes = (uint64_t)n * sizeof(float);
  if (!asu_ops_fits(cmd, op, "gate", gate, bytes) || !asu_ops_fits(cmd, op, "up", up, bytes) ||
      !asu_ops_fits(cmd, op, "dout", dout, bytes) ||
      !asu_ops_fits(cmd, op, "dgate", dgate, bytes) || !asu_ops_fits(cmd, op, "dup", dup, bytes))
    return asu_cmd_status(cmd, NULL);
  if (n == 0) return asu_cmd_status(cmd, NULL);

  asu_buffer *buffers[] = {gate, up, dout, dgate, dup};
  bool texel = asu_ops_use_texels(cmd, buffers, 3, n);
  uint32_t local_size = ASU_OPS_LOCAL_SIZE;
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, "swiglu_backward", texel, 0x7, &local_size, 1,
                                             5, sizeof(swiglu_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  swiglu_push push = {n};
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, texel ? n / 4 : n, local_size);
  return asu_cmd_status(cmd, NULL);
}
