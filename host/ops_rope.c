/* Rotary embedding in place, forward or inverse. */
#include <math.h>
#include <stdio.h>

#include "ops_internal.h"

/* Mirrors the push constants of shaders/rope.comp. */
typedef struct rope_push {
  uint32_t rows, n_heads, head_dim;
  float log2_theta;
  float direction;
} rope_push;
_Static_assert(sizeof(rope_push) == 20, "rope_push must match the shader");

int asu_op_rope(asu_cmd *cmd, asu_buffer *x, asu_buffer *positions, uint32_t rows,
                uint32_t n_heads, uint32_t head_dim, float theta, bool inverse) {
  char op[112];
  snprintf(op, sizeof op, "rope (rows %u, n_heads %u, head_dim %u)", rows, n_heads, head_dim);
  if (head_dim % 2 != 0) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: head_dim must be even", op);
    return ASU_ERR_INVALID;
  }
  if (!(theta > 0.0f) || isinf(theta)) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: theta %g must be positive and finite", op, theta);
    return ASU_ERR_INVALID;
  }
  uint64_t elements = (uint64_t)rows * n_heads * head_dim;
  if (!asu_ops_fits(cmd, op, "x", x, elements * sizeof(float)) ||
      !asu_ops_fits(cmd, op, "positions", positions, (uint64_t)rows * sizeof(int32_t)))
    return asu_cmd_status(cmd, NULL);
  if (elements == 0) return asu_cmd_status(cmd, NULL);

  /* x is read through binding 2 and written through binding 0. The texel build rotates two
     pairs of one head per invocation, so it needs head_dim to be a multiple of 4. */
  asu_buffer *buffers[] = {x, positions, x};
  bool texel = asu_ops_use_texels(cmd, &x, 1, head_dim);
  uint32_t local_size = ASU_OPS_LOCAL_SIZE;
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, "rope", texel, 0x4, &local_size, 1, 3,
                                             sizeof(rope_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  rope_push push = {rows, n_heads, head_dim, (float)log2((double)theta), inverse ? -1.0f : 1.0f};
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, elements / (texel ? 4 : 2), local_size);
  return asu_cmd_status(cmd, NULL);
}
