/* GGUF v3 reading and writing (https://github.com/ggerganov/ggml/blob/master/docs/gguf.md).
   The reader validates the whole header, every key and every tensor record against the file size
   before returning; errors name the key, tensor or byte offset at fault. */
#ifndef ASU_GGUF_H
#define ASU_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asu_error.h"

enum asu_gguf_type {
  ASU_GGUF_UINT8 = 0, ASU_GGUF_INT8 = 1, ASU_GGUF_UINT16 = 2, ASU_GGUF_INT16 = 3,
  ASU_GGUF_UINT32 = 4, ASU_GGUF_INT32 = 5, ASU_GGUF_FLOAT32 = 6, ASU_GGUF_BOOL = 7,
  ASU_GGUF_STRING = 8, ASU_GGUF_ARRAY = 9, ASU_GGUF_UINT64 = 10, ASU_GGUF_INT64 = 11,
  ASU_GGUF_FLOAT64 = 12,
};

/* Tensor element types this project reads and writes (GGML type ids). */
enum asu_tensor_type { ASU_TENSOR_F32 = 0, ASU_TENSOR_F16 = 1 };

typedef struct asu_gguf asu_gguf;

typedef struct asu_gguf_tensor {
  const char *name;
  uint32_t n_dims;
  uint64_t dims[4];      /* innermost first, as GGUF stores them; unused dims are 1 */
  uint32_t type;         /* GGML type id; only F32 and F16 have data access here */
  uint64_t n_elements;
  uint64_t data_offset;  /* from the start of the file */
  const void *data;      /* points into the loaded file */
  uint64_t bytes;
} asu_gguf_tensor;

/* Opens and validates a GGUF file (mapped read-only). */
int asu_gguf_open(const char *path, asu_gguf **out, asu_error *err);
void asu_gguf_close(asu_gguf *g);

/* Metadata. Getters fail with ASU_ERR_NOT_FOUND when the key is missing and ASU_ERR_FORMAT when
   its type does not fit (any integer type in range is accepted for the integer getters). */
bool asu_gguf_has_key(const asu_gguf *g, const char *key);
int asu_gguf_get_u32(const asu_gguf *g, const char *key, uint32_t *out, asu_error *err);
int asu_gguf_get_f32(const asu_gguf *g, const char *key, float *out, asu_error *err);
int asu_gguf_get_string(const asu_gguf *g, const char *key, const char **out, size_t *len,
                        asu_error *err);
/* Arrays: element type and count. Numeric arrays give a pointer to their packed data; string
   arrays are read one element at a time. */
int asu_gguf_get_array(const asu_gguf *g, const char *key, uint32_t *elem_type, uint64_t *count,
                       const void **data, asu_error *err);
int asu_gguf_get_array_string(const asu_gguf *g, const char *key, uint64_t index, const char **out,
                              size_t *len, asu_error *err);

size_t asu_gguf_tensor_count(const asu_gguf *g);
const asu_gguf_tensor *asu_gguf_tensor_at(const asu_gguf *g, size_t index);
const asu_gguf_tensor *asu_gguf_find_tensor(const asu_gguf *g, const char *name);
/* Copies a tensor's elements into dst as float32 (converting F16), checking the element count. */
int asu_gguf_tensor_to_f32(const asu_gguf_tensor *t, float *dst, uint64_t n_elements,
                           asu_error *err);

/* A tensor to write: float32 data, dims innermost first. type is the element type stored in the
   file: ASU_TENSOR_F32 (0, the default) or ASU_TENSOR_F16, converted with round-to-nearest-even
   (values beyond the F16 range become infinities). */
typedef struct asu_gguf_out_tensor {
  const char *name;
  uint32_t n_dims;
  uint64_t dims[4];
  const float *data;
  uint32_t type;
} asu_gguf_out_tensor;

/* Writes a GGUF v3 file with every metadata key of `metadata_from` (copied byte for byte) and the
   given tensors, aligned to general.alignment (32 by default). Writes to a temporary file
   in the same directory, fsyncs it and renames it over path. */
int asu_gguf_write(const char *path, const asu_gguf *metadata_from,
                   const asu_gguf_out_tensor *tensors, size_t n_tensors, asu_error *err);

/* A metadata record to write. Scalars take their value from the union. An array has `count`
   elements of type array_type at `array`. They are packed 4-byte values for UINT32, INT32 and
   FLOAT32, and NUL-terminated strings (const char *const *) for STRING. */
typedef struct asu_gguf_out_kv {
  const char *key;
  uint32_t type; /* ASU_GGUF_UINT32, ASU_GGUF_INT32, ASU_GGUF_FLOAT32, ASU_GGUF_STRING, ASU_GGUF_ARRAY */
  union {
    uint32_t u32;
    int32_t i32;
    float f32;
    const char *str;
  } value;
  uint32_t array_type;
  uint64_t count;
  const void *array;
} asu_gguf_out_kv;

/* Like asu_gguf_write, with the metadata given as records instead of copied from a file.
   A UINT32 record general.alignment (a power of two) sets the alignment. */
int asu_gguf_write_kv(const char *path, const asu_gguf_out_kv *kvs, size_t n_kvs,
                      const asu_gguf_out_tensor *tensors, size_t n_tensors, asu_error *err);

#endif
