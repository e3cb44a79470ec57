/* Embedding lookup and its backward. */
#include <stdio.h>

#include "ops_internal.h"

/* Mirrors the push constants of shaders/embedding_forward.comp and
   shaders/embedding_backward.comp. */
typedef struct embedding_push {
  uint32_t rows, vocab, dim;
} embedding_push;
_Static_assert(sizeof(embedding_push) == 12, "embedding_push must match the shaders");

int asu_op_embedding(asu_cmd *cmd, asu_buffer *table, asu_buffer *ids, asu_buffer *out,
                     uint32_t rows, uint32_t vocab, uint32_t dim) {
  char op[96];
  snprintf(op, sizeof op, "embedding (rows %u, vocab %u, dim %u)", rows, vocab, dim);
  bool f16 = table && asu_buffer_element(table) == ASU_ELEMENT_F16;
  if (!asu_ops_fits(cmd, op, "table", table, (uint64_t)vocab * dim * (f16 ? 2 : 4)) ||
      !asu_ops_fits(cmd, op, "ids", ids, (uint64_t)rows * sizeof(int32_t)) ||
      !asu_ops_fits(cmd, op, "out", out, (uint64_t)rows * dim * sizeof(float)))
    return asu_cmd_status(cmd, NULL);
  if (rows == 0 || dim == 0) return asu_cmd_status(cmd, NULL);

  /* The texel build widens an F16 table, and on devices with narrow subgroups (CPU SIMD lanes)
     it gathers rows faster than storage-buffer loads. */
  bool texel = f16 ? asu_buffer_has_texels(table) && dim % 4 == 0
                   : asu_ops_use_texels(cmd, &table, 1, dim);
  if (f16 && !texel) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: an F16 table needs a texel view and a dim that is a "
                 "multiple of 4 to be read", op);
    return ASU_ERR_INVALID;
  }
  uint32_t local_size = ASU_OPS_LOCAL_SIZE;
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, "embedding_forward", texel, 0x1, &local_size,
                                             1, 3, sizeof(embedding_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  embedding_push push = {rows, vocab, dim};
  asu_buffer *buffers[] = {table, ids, out};
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, (uint64_t)rows * dim / (texel ? 4 : 1),
                      local_size);
  return asu_cmd_status(cmd, NULL);
}

int asu_op_embedding_backward(asu_cmd *cmd, asu_buffer *order, asu_buffer *offsets,
                              asu_buffer *dout, asu_buffer *dtable, uint32_t rows, uint32_t vocab,
                              uint32_t dim) {
  char op[112];
  snprintf(op, sizeof op, "embedding_backward (rows %u, vocab %u, dim %u)", rows, vocab, dim);
  if (!asu_ops_fits(cmd, op, "order", order, (uint64_t)rows * sizeof(int32_t)) ||
      !asu_ops_fits(cmd, op, "offsets", offsets, ((uint64_t)vocab + 1) * sizeof(int32_t)) ||
      !asu_ops_fits(cmd, op, "dout", dout, (uint64_t)rows * dim * sizeof(float)) ||
      !asu_ops_fits(cmd, op, "dtable", dtable, (uint64_t)vocab * dim * sizeof(float)))
    return asu_cmd_status(cmd, NULL);
  if (rows == 0 || vocab == 0 || dim == 0) return asu_cmd_status(cmd, NULL);

  uint32_t local_size = ASU_OPS_LOCAL_SIZE;
  asu_kernel *kernel =
      asu_ops_kernel(cmd, "embedding_backward", &local_size, 1, 4, sizeof(embedding_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  embedding_push push = {rows, vocab, dim};
  asu_buffer *buffers[] = {order, offsets, dout, dtable};
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, (uint64_t)vocab * dim, local_size);
  return asu_cmd_status(cmd, NULL);
}
