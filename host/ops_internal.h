/* Helpers shared by the op wrappers: buffer size checks and kernel lookups that record their
   failure in the command, and a one-dimensional dispatch. */
#ifndef ASU_OPS_INTERNAL_H
#define ASU_OPS_INTERNAL_H

#include <inttypes.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

#include "asu_ops.h"

/* Element-wise kernels use workgroups of this many invocations. */
#define ASU_OPS_LOCAL_SIZE 64u

/* Every index a kernel computes is a 32-bit unsigned integer, so ops reject larger element
   counts. */
#define ASU_OPS_MAX_ELEMENTS UINT32_MAX

/* Returns true when buf is present and has at least `bytes` bytes. Otherwise records an error
   naming the op (with its sizes, as formatted by the caller) and the buffer, and returns false. */
static inline bool asu_ops_fits(asu_cmd *cmd, const char *op, const char *name,
                                const asu_buffer *buf, uint64_t bytes) {
  if (!buf) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: buffer %s is missing", op, name);
    return false;
  }
  if (bytes > (uint64_t)ASU_OPS_MAX_ELEMENTS * 4) {
    asu_cmd_fail(cmd, ASU_ERR_LIMIT, "%s: %s needs %" PRIu64 " bytes, over the 2^32 elements "
                 "that 32-bit kernel indices reach", op, name, bytes);
    return false;
  }
  if (asu_buffer_size(buf) < bytes) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: %s needs %" PRIu64 " bytes but its buffer has %zu",
                 op, name, bytes, asu_buffer_size(buf));
    return false;
  }
  return true;
}

/* Returns the kernel for `shader` with the bindings in texel_bindings read as texel buffers
   (asu_kernel_get_texel), or NULL after recording the failure in cmd. */
static inline asu_kernel *asu_ops_kernel_texel(asu_cmd *cmd, const char *shader,
                                               const uint32_t *spec, uint32_t n_spec,
                                               uint32_t n_buffers, uint32_t texel_bindings,
                                               uint32_t push_bytes) {
  asu_kernel *kernel;
  asu_error err;
  int rc = asu_kernel_get_texel(asu_cmd_device(cmd), shader, spec, n_spec, n_buffers,
                                texel_bindings, push_bytes, &kernel, &err);
  if (rc) {
    asu_cmd_fail(cmd, rc, "%s", err.message);
    return NULL;
  }
  return kernel;
}

/* Whether a kernel with a texel build (shaders/pieces.glsl) reads its inputs as texels. It does
   on devices with narrow subgroups (CPU SIMD lanes), where texel gathers beat per-lane storage
   loads. n (its length, or its row width) must be a multiple of 4, and every input an F32
   buffer with a texel view. */
static inline bool asu_ops_use_texels(asu_cmd *cmd, asu_buffer *const *inputs, size_t n_inputs,
                                      uint64_t n) {
  if (n % 4 != 0 || asu_device_get_info(asu_cmd_device(cmd))->subgroup_size >= 16) return false;
  for (size_t i = 0; i < n_inputs; i++)
    if (!asu_buffer_has_texels(inputs[i]) || asu_buffer_element(inputs[i]) != ASU_ELEMENT_F32)
      return false;
  return true;
}

/* Returns the kernel for `shader`, or NULL after recording the failure in cmd. */
static inline asu_kernel *asu_ops_kernel(asu_cmd *cmd, const char *shader, const uint32_t *spec,
                                         uint32_t n_spec, uint32_t n_buffers,
                                         uint32_t push_bytes) {
  return asu_ops_kernel_texel(cmd, shader, spec, n_spec, n_buffers, 0, push_bytes);
}

/* The kernel built from `shader`, or its texel build NAME_texel whose PIECES bindings are
   texel_bindings; NULL after recording the failure in cmd. */
static inline asu_kernel *asu_ops_kernel_pieces(asu_cmd *cmd, const char *shader, bool texel,
                                                uint32_t texel_bindings, const uint32_t *spec,
                                                uint32_t n_spec, uint32_t n_buffers,
                                                uint32_t push_bytes) {
  if (!texel) return asu_ops_kernel(cmd, shader, spec, n_spec, n_buffers, push_bytes);
  char name[64];
  snprintf(name, sizeof name, "%s_texel", shader);
  return asu_ops_kernel_texel(cmd, name, spec, n_spec, n_buffers, texel_bindings, push_bytes);
}

/* Dispatches enough workgroups of local_size invocations to cover n items, spread over a 2D grid
   (the kernel computes its item index from flat_group_index()). */
static inline void asu_ops_dispatch_1d(asu_cmd *cmd, asu_kernel *kernel,
                                       asu_buffer *const *buffers, const void *push, uint64_t n,
                                       uint32_t local_size) {
  uint32_t gx, gy;
  asu_grid_2d(asu_cmd_device(cmd), (uint32_t)((n + local_size - 1) / local_size), &gx, &gy);
  asu_cmd_dispatch(cmd, kernel, buffers, push, gx, gy, 1);
}

#endif
