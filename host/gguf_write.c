/* GGUF v3 writer: metadata copied from an open file or given as records, then F32 or F16
   tensors. */
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

static void buf_str(byte_buf *b, const char *s) {
  uint64_t len = strlen(s);
  buf_u64(b, len);
  buf_put(b, s, (size_t)len);
}

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
  if (t->type != ASU_TENSOR_F32 && t->type != ASU_TENSOR_F16)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' has type id %" PRIu32 "; only F32 "
                         "(0) and F16 (1) can be written", t->name, t->type);
  *bytes = n * (t->type == ASU_TENSOR_F16 ? sizeof(uint16_t) : sizeof(float));
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
    buf_u32(b, t->type);
    buf_u64(b, offset);
    offset = align_up(offset + bytes[i], kvs->alignment);
  }
  static const unsigned char zeros[1u << 20];
  size_t pad = (size_t)(align_up(b->size, kvs->alignment) - b->size);
  buf_put(b, zeros, pad);
  if (b->failed) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory building the header");
  return ASU_OK;
}

/* float32 to IEEE 754 half precision, rounding to nearest even; too large values become
   infinities and NaNs stay NaNs. */
uint16_t asu_f32_to_f16(float value) {
  uint32_t x;
  memcpy(&x, &value, sizeof x);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((abs >> 13) & 0x3ffu);
  if (abs >= 0x477ff000u) return sign | 0x7c00u; /* 65520 and up round past 65504 */
  uint32_t exponent = abs >> 23;
  if (exponent < 113u) {
    /* Below 2^-14: a subnormal half, in units of 2^-24. */
    if (exponent < 102u) return sign;
    uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u, shift = 126u - exponent;
    uint32_t q = mantissa >> shift, rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
  }
  uint32_t q = (abs >> 13) - (112u << 10), rest = abs & 0x1fffu; /* rebias 127 -> 15 */
  if (rest > 0x1000u || (rest == 0x1000u && (q & 1u))) q++; /* a carry moves the exponent up */
  return sign | (uint16_t)q;
}

/* Writes n floats as F16, converting a slice at a time. */
static int write_f16(asu_atomic_file *f, const float *data, uint64_t n, asu_error *err) {
  enum { SLICE = 1 << 15 };
  static _Thread_local uint16_t halves[SLICE];
  for (uint64_t done = 0; done < n;) {
    size_t count = n - done < SLICE ? (size_t)(n - done) : SLICE;
    for (size_t i = 0; i < count; i++) halves[i] = asu_f32_to_f16(data[done + i]);
    int rc = asu_atomic_write(f, halves, count * sizeof *halves, err);
    if (rc != ASU_OK) return rc;
    done += count;
  }
  return ASU_OK;
}

static int write_data(asu_atomic_file *f, const asu_gguf_out_tensor *tensors,
                      const uint64_t *bytes, size_t n, uint32_t alignment, asu_error *err) {
  for (size_t i = 0; i < n; i++) {
    const asu_gguf_out_tensor *t = &tensors[i];
    int rc = t->type == ASU_TENSOR_F16
                 ? write_f16(f, t->data, bytes[i] / sizeof(uint16_t), err)
                 : asu_atomic_write(f, t->data, (size_t)bytes[i], err);
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

/* Checks the tensors and writes the file; errors name the path. */
static int write_checked(const char *path, const asu_gguf_kv_section *kvs,
                         const asu_gguf_out_tensor *tensors, size_t n_tensors, asu_error *err) {
  asu_error local = {0};
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
  if (rc == ASU_OK) rc = write_file(path, kvs, tensors, bytes, n_tensors, &local);
  free(bytes);
  if (rc != ASU_OK) {
    asu_error_wrap(&local, "writing GGUF %s: ", path ? path : "(null)");
    if (err) *err = local;
  }
  return rc;
}

int asu_gguf_write(const char *path, const asu_gguf *metadata_from,
                   const asu_gguf_out_tensor *tensors, size_t n_tensors, asu_error *err) {
  asu_gguf_kv_section kvs = {.alignment = ASU_GGUF_DEFAULT_ALIGNMENT};
  if (metadata_from) asu_gguf_kv_section_of(metadata_from, &kvs);
  return write_checked(path, &kvs, tensors, n_tensors, err);
}

/* ---- Metadata given as records. ---- */

static bool is_scalar_type(uint32_t type) {
  return type == ASU_GGUF_UINT32 || type == ASU_GGUF_INT32 || type == ASU_GGUF_FLOAT32 ||
         type == ASU_GGUF_STRING;
}

static int check_kv(const asu_gguf_out_kv *kv, size_t index, asu_error *err) {
  if (!kv->key || !*kv->key)
    return asu_error_set(err, ASU_ERR_INVALID, "metadata record %zu has no key", index);
  bool array = kv->type == ASU_GGUF_ARRAY;
  if (!is_scalar_type(array ? kv->array_type : kv->type))
    return asu_error_set(err, ASU_ERR_INVALID, "metadata key '%s' has type id %" PRIu32 "; only "
                         "uint32, int32, float32, string and arrays of them can be written",
                         kv->key, array ? kv->array_type : kv->type);
  if ((array && kv->count > 0 && !kv->array) || (kv->type == ASU_GGUF_STRING && !kv->value.str))
    return asu_error_set(err, ASU_ERR_INVALID, "metadata key '%s' has no value", kv->key);
  if (!strcmp(kv->key, "general.alignment") &&
      (kv->type != ASU_GGUF_UINT32 || kv->value.u32 == 0 ||
       (kv->value.u32 & (kv->value.u32 - 1)) != 0))
    return asu_error_set(err, ASU_ERR_INVALID, "general.alignment must be a uint32 power of two");
  return ASU_OK;
}

static void put_kv(byte_buf *b, const asu_gguf_out_kv *kv) {
  buf_str(b, kv->key);
  buf_u32(b, kv->type);
  switch (kv->type) {
  case ASU_GGUF_STRING: buf_str(b, kv->value.str); return;
  case ASU_GGUF_ARRAY: break;
  default: buf_put(b, &kv->value, 4); return; /* the 4-byte scalars share the union's start */
  }
  buf_u32(b, kv->array_type);
  buf_u64(b, kv->count);
  if (kv->array_type != ASU_GGUF_STRING) {
    buf_put(b, kv->array, (size_t)kv->count * 4);
    return;
  }
  const char *const *strings = kv->array;
  for (uint64_t i = 0; i < kv->count; i++) buf_str(b, strings[i] ? strings[i] : "");
}

int asu_gguf_write_kv(const char *path, const asu_gguf_out_kv *kvs, size_t n_kvs,
                      const asu_gguf_out_tensor *tensors, size_t n_tensors, asu_error *err) {
  asu_gguf_kv_section section = {.count = n_kvs, .alignment = ASU_GGUF_DEFAULT_ALIGNMENT};
  byte_buf records = {0};
  asu_error local = {0};
  int rc = !kvs && n_kvs > 0
               ? asu_error_set(&local, ASU_ERR_INVALID, "metadata list is NULL")
               : ASU_OK;
  for (size_t i = 0; rc == ASU_OK && i < n_kvs; i++) {
    rc = check_kv(&kvs[i], i, &local);
    if (rc == ASU_OK) put_kv(&records, &kvs[i]);
    if (rc == ASU_OK && !strcmp(kvs[i].key, "general.alignment"))
      section.alignment = kvs[i].value.u32;
  }
  if (rc == ASU_OK && records.failed)
    rc = asu_error_set(&local, ASU_ERR_NOMEM, "out of memory building the metadata");
  if (rc != ASU_OK) {
    free(records.data);
    asu_error_wrap(&local, "writing GGUF %s: ", path ? path : "(null)");
    if (err) *err = local;
    return rc;
  }
  section.bytes = records.data;
  section.size = records.size;
  rc = write_checked(path, &section, tensors, n_tensors, err);
  free(records.data);
  return rc;
}
