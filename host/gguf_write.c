/* GGUF v3 writer: copies the metadata records of an open file and appends F32 tensors. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "asu_gguf.h"
#include "file_atomic.h"
#include "gguf_internal.h"

/* A growable byte buffer for the header and tensor records. */
typedef struct byte_buf {
  unsigned char *data;
  size_t size, cap;
  bool failed;
} byte_buf;

static void buf_put(byte_buf *b, const void *src, size_t bytes) {
  if (b->failed) return;
  if (b->cap - b->size < bytes) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->size < bytes) cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    if (!data) {
      b->failed = true;
      return;
    }
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->size, src, bytes);
  b->size += bytes;
}

static void buf_u32(byte_buf *b, uint32_t v) { buf_put(b, &v, sizeof v); }
static void buf_u64(byte_buf *b, uint64_t v) { buf_put(b, &v, sizeof v); }

static uint64_t align_up(uint64_t x, uint64_t alignment) {
  return (x + alignment - 1) / alignment * alignment;
}

static int check_tensor(const asu_gguf_out_tensor *t, size_t index, uint64_t *bytes,
                        asu_error *err) {
  if (!t->name || !*t->name)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor %zu has no name", index);
  /* ggml (GGML_MAX_NAME = 64, NUL included) rejects longer names when it loads the file. */
  if (strlen(t->name) > 63)
    return asu_error_set(err, ASU_ERR_INVALID,
                         "tensor name '%.80s' is longer than 63 bytes, the GGUF loaders' limit",
                         t->name);
  if (t->n_dims > ASU_GGUF_MAX_DIMS)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' has %" PRIu32 " dimensions; at most 4",
                         t->name, t->n_dims);
  uint64_t n = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) {
    if (t->dims[d] == 0)
      return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' has dimension %" PRIu32 " of zero",
                           t->name, d);
    if (t->dims[d] > (uint64_t)INT64_MAX / 4 / n)
      return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' is too large", t->name);
    n *= t->dims[d];
  }
  if (!t->data)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' has no data", t->name);
  *bytes = n * sizeof(float);
  return ASU_OK;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_unique_names(const asu_gguf_out_tensor *tensors, size_t n, asu_error *err) {
  const char **names = malloc(n * sizeof *names + 1);
  if (!names) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory checking tensor names");
  for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
  qsort(names, n, sizeof *names, compare_names);
  int rc = ASU_OK;
  for (size_t i = 1; i < n && rc == ASU_OK; i++)
    if (strcmp(names[i - 1], names[i]) == 0)
      rc = asu_error_set(err, ASU_ERR_INVALID, "tensor name '%s' is given twice", names[i]);
  free(names);
  return rc;
}

/* Builds everything before the tensor data: header, metadata, tensor records, padding. */
static int build_header(byte_buf *b, const asu_gguf_kv_section *kvs,
                        const asu_gguf_out_tensor *tensors, const uint64_t *bytes, size_t n,
                        asu_error *err) {
  buf_put(b, ASU_GGUF_MAGIC, 4);
  buf_u32(b, ASU_GGUF_VERSION);
  buf_u64(b, n);
  buf_u64(b, kvs->count);
  if (kvs->size > 0) buf_put(b, kvs->bytes, kvs->size);
  uint64_t offset = 0;
  for (size_t i = 0; i < n; i++) {
    const asu_gguf_out_tensor *t = &tensors[i];
    size_t name_len = strlen(t->name);
    buf_u64(b, name_len);
    buf_put(b, t->name, name_len);
    buf_u32(b, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) buf_u64(b, t->dims[d]);
    buf_u32(b, ASU_TENSOR_F32);
    buf_u64(b, offset);
    offset = align_up(offset + bytes[i], kvs->alignment);
  }
  static const unsigned char zeros[1u << 20];
  size_t pad = (size_t)(align_up(b->size, kvs->alignment) - b->size);
  buf_put(b, zeros, pad);
  if (b->failed) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory building the header");
  return ASU_OK;
}

static int write_data(asu_atomic_file *f, const asu_gguf_out_tensor *tensors,
                      const uint64_t *bytes, size_t n, uint32_t alignment, asu_error *err) {
  for (size_t i = 0; i < n; i++) {
    int rc = asu_atomic_write(f, tensors[i].data, (size_t)bytes[i], err);
    if (rc == ASU_OK)
      rc = asu_atomic_write_zeros(f, (size_t)(align_up(bytes[i], alignment) - bytes[i]), err);
    if (rc != ASU_OK) return asu_error_wrap(err, "tensor '%s': ", tensors[i].name);
  }
  return ASU_OK;
}

static int write_file(const char *path, const asu_gguf_kv_section *kvs,
                      const asu_gguf_out_tensor *tensors, const uint64_t *bytes, size_t n,
                      asu_error *err) {
  byte_buf header = {0};
  int rc = build_header(&header, kvs, tensors, bytes, n, err);
  asu_atomic_file *f = NULL;
  if (rc == ASU_OK) rc = asu_atomic_open(path, &f, err);
  if (rc == ASU_OK) rc = asu_atomic_write(f, header.data, header.size, err);
  if (rc == ASU_OK) rc = write_data(f, tensors, bytes, n, kvs->alignment, err);
  free(header.data);
  if (rc != ASU_OK) {
    asu_atomic_abort(f);
    return rc;
  }
  return asu_atomic_commit(f, err);
}

int asu_gguf_write(const char *path, const asu_gguf *metadata_from,
                   const asu_gguf_out_tensor *tensors, size_t n_tensors, asu_error *err) {
  asu_error local = {0};
  asu_gguf_kv_section kvs = {.alignment = ASU_GGUF_DEFAULT_ALIGNMENT};
  if (metadata_from) asu_gguf_kv_section_of(metadata_from, &kvs);

  int rc = ASU_OK;
  if (!path) rc = asu_error_set(&local, ASU_ERR_INVALID, "output path is NULL");
  else if (!tensors && n_tensors > 0)
    rc = asu_error_set(&local, ASU_ERR_INVALID, "tensor list is NULL");
  uint64_t *bytes = NULL;
  if (rc == ASU_OK && !(bytes = malloc(n_tensors * sizeof *bytes + 1)))
    rc = asu_error_set(&local, ASU_ERR_NOMEM, "out of memory");
  for (size_t i = 0; rc == ASU_OK && i < n_tensors; i++)
    rc = check_tensor(&tensors[i], i, &bytes[i], &local);
  if (rc == ASU_OK) rc = check_unique_names(tensors, n_tensors, &local);
  if (rc == ASU_OK) rc = write_file(path, &kvs, tensors, bytes, n_tensors, &local);
  free(bytes);
  if (rc != ASU_OK) {
    asu_error_wrap(&local, "writing GGUF %s: ", path ? path : "(null)");
    if (err) *err = local;
  }
  return rc;
}
