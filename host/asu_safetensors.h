/* safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
   length, a JSON header naming each tensor's dtype, shape and data_offsets, then the data. This
   project writes and reads F32 tensors; other dtypes are rejected by name. */
#ifndef ASU_SAFETENSORS_H
#define ASU_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "asu_error.h"

typedef struct asu_st_tensor {
  char *name;
  uint32_t n_dims;
  uint64_t shape[4];    /* outermost first, as safetensors stores them */
  float *data;          /* owned by the tensor list */
  uint64_t n_elements;
} asu_st_tensor;

typedef struct asu_st_file {
  asu_st_tensor *tensors;
  size_t count;
} asu_st_file;

/* Writes tensors to path atomically: a temporary file in the same directory, fsync, rename. */
int asu_safetensors_write(const char *path, const asu_st_tensor *tensors, size_t count,
                          asu_error *err);
/* Reads and validates a whole file: header JSON, dtypes (F32 only), shapes against offsets,
   offsets in bounds and not overlapping. Errors name the file and the tensor. */
int asu_safetensors_read(const char *path, asu_st_file *out, asu_error *err);
const asu_st_tensor *asu_safetensors_find(const asu_st_file *f, const char *name);
void asu_safetensors_free(asu_st_file *f);

/* Writes data to path atomically (temporary file in the same directory, fsync, rename, fsync of
   the directory). Used for every file this project stores. */
int asu_write_file_atomic(const char *path, const void *data, size_t bytes, asu_error *err);

#endif
