/* Conversion of GGUF tensor data to float32. */
#include <inttypes.h>
#include <string.h>

#include "asu_gguf.h"
#include "gguf_internal.h"

float asu_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1fu) {
    bits = sign | 0x7f800000u | (mantissa << 13); /* infinity, or NaN keeping its payload */
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13); /* rebias 15 -> 127 */
  } else if (mantissa == 0) {
    bits = sign; /* signed zero */
  } else {
    /* Subnormal: shift the mantissa up until its leading one becomes the implicit bit. */
    uint32_t e = 113u;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      e--;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

int asu_gguf_tensor_to_f32(const asu_gguf_tensor *t, float *dst, uint64_t n_elements,
                           asu_error *err) {
  if (!t || (!dst && n_elements > 0))
    return asu_error_set(err, ASU_ERR_INVALID, "asu_gguf_tensor_to_f32: tensor or destination is NULL");
  if (n_elements != t->n_elements)
    return asu_error_set(err, ASU_ERR_INVALID,
                         "tensor '%s' has %" PRIu64 " elements but the destination holds %" PRIu64,
                         t->name, t->n_elements, n_elements);
  if (t->type == ASU_TENSOR_F32) {
    memcpy(dst, t->data, (size_t)n_elements * sizeof(float));
    return ASU_OK;
  }
  if (t->type == ASU_TENSOR_F16) {
    const unsigned char *src = t->data;
    for (uint64_t i = 0; i < n_elements; i++) {
      uint16_t h;
      memcpy(&h, src + 2 * i, sizeof h);
      dst[i] = asu_f16_to_f32(h);
    }
    return ASU_OK;
  }
  const char *name = asu_ggml_type_name(t->type);
  return asu_error_set(err, ASU_ERR_FORMAT,
                       "tensor '%s' has type %s (GGML type id %" PRIu32
                       "); only F32 and F16 tensors can be read; convert the model to F32 or F16",
                       t->name, name ? name : "unknown", t->type);
}
