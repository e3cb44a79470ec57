/* GGUF internals shared by the reader (gguf.c) and the writer (gguf_write.c). */
#ifndef ASU_GGUF_INTERNAL_H
#define ASU_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "asu_gguf.h"

#define ASU_GGUF_MAGIC "GGUF"
#define ASU_GGUF_VERSION 3u
#define ASU_GGUF_DEFAULT_ALIGNMENT 32u
#define ASU_GGUF_MAX_DIMS 4u

/* The metadata section of an open file as it lies on disk, for copying into a new file. */
typedef struct asu_gguf_kv_section {
  const void *bytes; /* the key/value records, back to back */
  size_t size;
  uint64_t count;
  uint32_t alignment; /* general.alignment, or the default */
} asu_gguf_kv_section;

void asu_gguf_kv_section_of(const asu_gguf *g, asu_gguf_kv_section *out);

/* Returns the GGML name of a tensor type id ("F32", "Q4_K"), or NULL for an unknown id. */
const char *asu_ggml_type_name(uint32_t type);

/* Converts IEEE 754 half-precision bits to float, keeping subnormals, infinities and NaNs. */
float asu_f16_to_f32(uint16_t h);
/* Converts float to half-precision bits, rounding to nearest even (gguf_write.c). */
uint16_t asu_f32_to_f16(float value);

#endif
