/* GGUF v3 reader: maps the file read-only, validates every record against the file size and
   copies the metadata into an arena so that strings are NUL-terminated and arrays aligned. */
#include "asu_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

/* Maximum nesting depth of arrays of arrays, which bounds the recursion that validates them. */
#define MAX_ARRAY_DEPTH 16
/* Smallest possible records, used to bound the counts in the header by the file size. */
#define MIN_KV_BYTES 13u     /* key length, one key byte, value type, one value byte */
#define MIN_TENSOR_BYTES 24u /* name length, n_dims, type, offset */

/* ---- Arena: stable allocations freed all at once with the file. ---- */

typedef struct arena_block {
  struct arena_block *next;
  size_t used, cap;
  alignas(max_align_t) unsigned char data[];
} arena_block;

static void *arena_alloc(arena_block **arena, size_t bytes) {
  size_t rounded = (bytes + 15u) & ~(size_t)15u;
  if (rounded < bytes) return NULL;
  arena_block *b = *arena;
  if (!b || b->cap - b->used < rounded) {
    size_t cap = rounded > 65536u ? rounded : 65536u;
    b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->next = *arena;
    b->used = 0;
    b->cap = cap;
    *arena = b;
  }
  void *p = b->data + b->used;
  b->used += rounded;
  return p;
}

static void arena_free(arena_block *b) {
  while (b) {
    arena_block *next = b->next;
    free(b);
    b = next;
  }
}

/* ---- The open file. ---- */

typedef struct gguf_str {
  const char *s; /* NUL-terminated copy */
  size_t len;
} gguf_str;

typedef struct gguf_kv {
  gguf_str key;
  uint32_t type;
  uint64_t offset; /* file offset of the record */
  union {
    uint64_t u;
    int64_t i;
    double f;
  } num;           /* integer, bool and float scalars */
  gguf_str str;    /* ASU_GGUF_STRING */
  uint32_t elem_type; /* ASU_GGUF_ARRAY: element type, count and contents */
  uint64_t count;
  const void *array_data; /* aligned copy of a numeric array */
  const gguf_str *strings; /* elements of a string array */
} gguf_kv;

struct asu_gguf {
  void *map;
  size_t size;
  uint32_t alignment;
  uint64_t n_kv;
  gguf_kv *kvs;
  const gguf_kv **kv_sorted; /* by key, for lookups */
  size_t kv_begin, kv_end;   /* byte range of the metadata records */
  size_t n_tensors;
  asu_gguf_tensor *tensors;
  const asu_gguf_tensor **tensor_sorted; /* by name, for lookups */
  uint64_t data_start;
  arena_block *arena;
};

/* ---- GGML tensor types. ---- */

typedef struct ggml_type_info {
  const char *name;
  uint32_t block_elements;
  uint32_t block_bytes;
} ggml_type_info;

/* Block sizes of the GGML types, indexed by type id (ggml.h and ggml-common.h in ggml).
   Ids without a name were removed from GGML and are rejected. */
static const ggml_type_info ggml_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},       [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 36},    [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},      [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},     [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},
};

static const ggml_type_info *ggml_type_lookup(uint32_t type) {
  if (type >= sizeof ggml_types / sizeof ggml_types[0]) return NULL;
  return ggml_types[type].name ? &ggml_types[type] : NULL;
}

const char *asu_ggml_type_name(uint32_t type) {
  const ggml_type_info *info = ggml_type_lookup(type);
  return info ? info->name : NULL;
}

/* ---- Cursor over the mapped bytes. Every read is checked against the file size. ---- */

typedef struct cursor {
  const unsigned char *base;
  size_t size;
  size_t pos;
  arena_block **arena;
  asu_error *err;
} cursor;

static size_t remaining(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t bytes, const char *what) {
  if (bytes > remaining(c))
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "%s at byte offset %zu needs %" PRIu64
                         " bytes but the file ends after %zu; the file is truncated or corrupt",
                         what, c->pos, bytes, c->size);
  return ASU_OK;
}

static int read_bytes(cursor *c, void *dst, size_t bytes, const char *what) {
  int rc = need(c, bytes, what);
  if (rc != ASU_OK) return rc;
  memcpy(dst, c->base + c->pos, bytes);
  c->pos += bytes;
  return ASU_OK;
}

static int read_u32(cursor *c, uint32_t *v, const char *what) {
  return read_bytes(c, v, sizeof *v, what);
}

static int read_u64(cursor *c, uint64_t *v, const char *what) {
  return read_bytes(c, v, sizeof *v, what);
}

static int nomem(cursor *c) {
  return asu_error_set(c->err, ASU_ERR_NOMEM, "out of memory reading the metadata");
}

/* Reads a length-prefixed string into a NUL-terminated arena copy. */
static int read_string(cursor *c, gguf_str *out, const char *what) {
  size_t start = c->pos;
  uint64_t len;
  int rc = read_u64(c, &len, what);
  if (rc != ASU_OK) return rc;
  if (len > remaining(c))
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "%s at byte offset %zu has length %" PRIu64
                         ", past the end of the file (%zu bytes); the file is corrupt",
                         what, start, len, c->size);
  char *s = arena_alloc(c->arena, (size_t)len + 1);
  if (!s) return nomem(c);
  memcpy(s, c->base + c->pos, (size_t)len);
  s[len] = '\0';
  c->pos += (size_t)len;
  out->s = s;
  out->len = (size_t)len;
  return ASU_OK;
}

/* A name (key or tensor) must be non-empty and free of NUL bytes so that it works as a C string. */
static int check_name(cursor *c, const gguf_str *name, size_t offset, const char *what) {
  if (name->len == 0)
    return asu_error_set(c->err, ASU_ERR_FORMAT, "%s at byte offset %zu is empty", what, offset);
  if (strlen(name->s) != name->len)
    return asu_error_set(c->err, ASU_ERR_FORMAT, "%s at byte offset %zu contains a NUL byte",
                         what, offset);
  return ASU_OK;
}

/* ---- Metadata values. ---- */

static size_t scalar_size(uint32_t type) {
  switch (type) {
  case ASU_GGUF_UINT8: case ASU_GGUF_INT8: case ASU_GGUF_BOOL: return 1;
  case ASU_GGUF_UINT16: case ASU_GGUF_INT16: return 2;
  case ASU_GGUF_UINT32: case ASU_GGUF_INT32: case ASU_GGUF_FLOAT32: return 4;
  case ASU_GGUF_UINT64: case ASU_GGUF_INT64: case ASU_GGUF_FLOAT64: return 8;
  default: return 0;
  }
}

static const char *value_type_name(uint32_t type) {
  static const char *names[] = {"uint8", "int8",   "uint16", "int16",  "uint32",
                                "int32", "float32", "bool",  "string", "array",
                                "uint64", "int64", "float64"};
  return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

static int check_bools(cursor *c, const unsigned char *p, uint64_t count) {
  for (uint64_t i = 0; i < count; i++)
    if (p[i] > 1)
      return asu_error_set(c->err, ASU_ERR_FORMAT, "bool value %u at byte offset %zu is not 0 or 1",
                           p[i], (size_t)(p + i - c->base));
  return ASU_OK;
}

static void decode_scalar(uint32_t type, const unsigned char *p, gguf_kv *kv) {
  switch (type) {
  case ASU_GGUF_UINT8: case ASU_GGUF_BOOL: kv->num.u = p[0]; break;
  case ASU_GGUF_INT8: { int8_t v; memcpy(&v, p, 1); kv->num.i = v; break; }
  case ASU_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); kv->num.u = v; break; }
  case ASU_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); kv->num.i = v; break; }
  case ASU_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); kv->num.u = v; break; }
  case ASU_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); kv->num.i = v; break; }
  case ASU_GGUF_UINT64: memcpy(&kv->num.u, p, 8); break;
  case ASU_GGUF_INT64: memcpy(&kv->num.i, p, 8); break;
  case ASU_GGUF_FLOAT32: { float v; memcpy(&v, p, 4); kv->num.f = v; break; }
  case ASU_GGUF_FLOAT64: memcpy(&kv->num.f, p, 8); break;
  default: break;
  }
}

static int read_scalar(cursor *c, uint32_t type, gguf_kv *kv) {
  size_t size = scalar_size(type);
  int rc = need(c, size, "value");
  if (rc != ASU_OK) return rc;
  const unsigned char *p = c->base + c->pos;
  if (type == ASU_GGUF_BOOL && (rc = check_bools(c, p, 1)) != ASU_OK) return rc;
  decode_scalar(type, p, kv);
  c->pos += size;
  return ASU_OK;
}

static int skip_array(cursor *c, int depth);

/* Validates `count` elements of an array without keeping them (nested arrays). */
static int skip_elements(cursor *c, uint32_t elem_type, uint64_t count, int depth) {
  size_t size = scalar_size(elem_type);
  if (size > 0) {
    int rc = need(c, count * size, "array data"); /* count * size was bounded by the caller */
    if (rc != ASU_OK) return rc;
    if (elem_type == ASU_GGUF_BOOL && (rc = check_bools(c, c->base + c->pos, count)) != ASU_OK)
      return rc;
    c->pos += (size_t)(count * size);
    return ASU_OK;
  }
  for (uint64_t i = 0; i < count; i++) {
    int rc;
    if (elem_type == ASU_GGUF_STRING) {
      uint64_t len;
      if ((rc = read_u64(c, &len, "string length")) != ASU_OK) return rc;
      if ((rc = need(c, len, "string")) != ASU_OK) return rc;
      c->pos += (size_t)len;
    } else if ((rc = skip_array(c, depth + 1)) != ASU_OK) {
      return rc;
    }
  }
  return ASU_OK;
}

/* Reads an array header and checks that its count can fit in the rest of the file. */
static int read_array_header(cursor *c, uint32_t *elem_type, uint64_t *count, int depth) {
  size_t start = c->pos;
  int rc = read_u32(c, elem_type, "array element type");
  if (rc == ASU_OK) rc = read_u64(c, count, "array length");
  if (rc != ASU_OK) return rc;
  if (*elem_type > ASU_GGUF_FLOAT64)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "array at byte offset %zu has unknown element type %" PRIu32, start,
                         *elem_type);
  if (depth >= MAX_ARRAY_DEPTH)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "array at byte offset %zu is nested more than %d deep", start,
                         MAX_ARRAY_DEPTH);
  /* Smallest element: a fixed-size value, a string length, or an array header (12 bytes). */
  size_t min_size = scalar_size(*elem_type);
  if (min_size == 0) min_size = *elem_type == ASU_GGUF_STRING ? 8 : 12;
  if (*count > remaining(c) / min_size)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "array at byte offset %zu claims %" PRIu64
                         " %s elements, more than the %zu bytes left in the file can hold",
                         start, *count, value_type_name(*elem_type), remaining(c));
  return ASU_OK;
}

static int skip_array(cursor *c, int depth) {
  uint32_t elem_type;
  uint64_t count;
  int rc = read_array_header(c, &elem_type, &count, depth);
  if (rc != ASU_OK) return rc;
  return skip_elements(c, elem_type, count, depth);
}

static int read_array(cursor *c, gguf_kv *kv) {
  int rc = read_array_header(c, &kv->elem_type, &kv->count, 0);
  if (rc != ASU_OK) return rc;
  size_t size = scalar_size(kv->elem_type);
  if (size > 0) {
    size_t bytes = (size_t)(kv->count * size);
    if ((rc = need(c, bytes, "array data")) != ASU_OK) return rc;
    if (kv->elem_type == ASU_GGUF_BOOL &&
        (rc = check_bools(c, c->base + c->pos, kv->count)) != ASU_OK)
      return rc;
    void *copy = arena_alloc(c->arena, bytes ? bytes : 1);
    if (!copy) return nomem(c);
    memcpy(copy, c->base + c->pos, bytes);
    kv->array_data = copy;
    c->pos += bytes;
    return ASU_OK;
  }
  if (kv->elem_type == ASU_GGUF_ARRAY) return skip_elements(c, kv->elem_type, kv->count, 0);

  gguf_str *strings = arena_alloc(c->arena, (size_t)kv->count * sizeof *strings + 1);
  if (!strings) return nomem(c);
  for (uint64_t i = 0; i < kv->count; i++)
    if ((rc = read_string(c, &strings[i], "array string")) != ASU_OK) return rc;
  kv->strings = strings;
  return ASU_OK;
}

static int read_value(cursor *c, gguf_kv *kv) {
  size_t start = c->pos;
  int rc = read_u32(c, &kv->type, "value type");
  if (rc != ASU_OK) return rc;
  if (kv->type == ASU_GGUF_STRING) return read_string(c, &kv->str, "string value");
  if (kv->type == ASU_GGUF_ARRAY) return read_array(c, kv);
  if (scalar_size(kv->type) == 0)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "value type %" PRIu32 " at byte offset %zu is not a GGUF type (0 to 12)",
                         kv->type, start);
  return read_scalar(c, kv->type, kv);
}

static int read_kv(cursor *c, gguf_kv *kv, uint64_t index) {
  kv->offset = c->pos;
  int rc = read_string(c, &kv->key, "key");
  if (rc == ASU_OK) rc = check_name(c, &kv->key, (size_t)kv->offset, "key");
  if (rc != ASU_OK) return asu_error_wrap(c->err, "metadata record %" PRIu64 ": ", index);
  if ((rc = read_value(c, kv)) != ASU_OK)
    return asu_error_wrap(c->err, "key '%s' (record at byte offset %" PRIu64 "): ", kv->key.s,
                          kv->offset);
  return ASU_OK;
}

/* ---- Sorted indexes: duplicate detection and lookups by name. ---- */

static int compare_kv_ptr(const void *a, const void *b) {
  return strcmp((*(const gguf_kv *const *)a)->key.s, (*(const gguf_kv *const *)b)->key.s);
}

static int compare_tensor_ptr(const void *a, const void *b) {
  return strcmp((*(const asu_gguf_tensor *const *)a)->name,
                (*(const asu_gguf_tensor *const *)b)->name);
}

static int index_kvs(asu_gguf *g, asu_error *err) {
  g->kv_sorted = malloc((size_t)g->n_kv * sizeof *g->kv_sorted + 1);
  if (!g->kv_sorted) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory indexing the keys");
  for (uint64_t i = 0; i < g->n_kv; i++) g->kv_sorted[i] = &g->kvs[i];
  qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, compare_kv_ptr);
  for (uint64_t i = 1; i < g->n_kv; i++)
    if (strcmp(g->kv_sorted[i - 1]->key.s, g->kv_sorted[i]->key.s) == 0)
      return asu_error_set(err, ASU_ERR_FORMAT,
                           "key '%s' appears twice (records at byte offsets %" PRIu64
                           " and %" PRIu64 ")",
                           g->kv_sorted[i]->key.s, g->kv_sorted[i - 1]->offset,
                           g->kv_sorted[i]->offset);
  return ASU_OK;
}

static int index_tensors(asu_gguf *g, asu_error *err) {
  g->tensor_sorted = malloc(g->n_tensors * sizeof *g->tensor_sorted + 1);
  if (!g->tensor_sorted)
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory indexing the tensors");
  for (size_t i = 0; i < g->n_tensors; i++) g->tensor_sorted[i] = &g->tensors[i];
  qsort(g->tensor_sorted, g->n_tensors, sizeof *g->tensor_sorted, compare_tensor_ptr);
  for (size_t i = 1; i < g->n_tensors; i++)
    if (strcmp(g->tensor_sorted[i - 1]->name, g->tensor_sorted[i]->name) == 0)
      return asu_error_set(err, ASU_ERR_FORMAT, "tensor '%s' appears twice",
                           g->tensor_sorted[i]->name);
  return ASU_OK;
}

static const gguf_kv *find_kv(const asu_gguf *g, const char *key) {
  if (!g || !key) return NULL;
  size_t lo = 0, hi = (size_t)g->n_kv;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int cmp = strcmp(key, g->kv_sorted[mid]->key.s);
    if (cmp == 0) return g->kv_sorted[mid];
    if (cmp < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

/* ---- Header, metadata and tensor records. ---- */

static int read_header(cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
  if (c->size < 24)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "file is %zu bytes, shorter than the 24-byte GGUF header", c->size);
  if (memcmp(c->base, ASU_GGUF_MAGIC, 4) != 0)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "not a GGUF file: the magic bytes at offset 0 are %02x %02x %02x %02x, "
                         "expected 47 47 55 46 (\"GGUF\")",
                         c->base[0], c->base[1], c->base[2], c->base[3]);
  c->pos = 4;
  uint32_t version = 0;
  read_u32(c, &version, "version"); /* the size check above covers the 24 header bytes */
  if (version != ASU_GGUF_VERSION) {
    if (version == 0x03000000u)
      return asu_error_set(c->err, ASU_ERR_FORMAT,
                           "big-endian GGUF files are not supported; convert it to little-endian");
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "GGUF version %" PRIu32
                         " is not supported; only version 3 is (convert the file with a current "
                         "llama.cpp)",
                         version);
  }
  read_u64(c, n_tensors, "tensor count");
  read_u64(c, n_kv, "key count");
  if (*n_kv > remaining(c) / MIN_KV_BYTES)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "header at byte offset 16 claims %" PRIu64
                         " metadata keys, more than the %zu-byte file can hold; the file is truncated or corrupt",
                         *n_kv, c->size);
  if (*n_tensors > remaining(c) / MIN_TENSOR_BYTES)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "header at byte offset 8 claims %" PRIu64
                         " tensors, more than the %zu-byte file can hold; the file is truncated or corrupt",
                         *n_tensors, c->size);
  return ASU_OK;
}

static int read_alignment(asu_gguf *g, asu_error *err) {
  g->alignment = ASU_GGUF_DEFAULT_ALIGNMENT;
  const gguf_kv *kv = find_kv(g, "general.alignment");
  if (!kv) return ASU_OK;
  if (kv->type != ASU_GGUF_UINT32)
    return asu_error_set(err, ASU_ERR_FORMAT, "key 'general.alignment' has type %s, expected uint32",
                         value_type_name(kv->type));
  uint64_t a = kv->num.u;
  if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20))
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "key 'general.alignment' is %" PRIu64
                         "; it must be a power of two no larger than 1048576",
                         a);
  g->alignment = (uint32_t)a;
  return ASU_OK;
}

static int read_metadata(asu_gguf *g, cursor *c, uint64_t n_kv) {
  g->kvs = calloc((size_t)n_kv + 1, sizeof *g->kvs);
  if (!g->kvs) return nomem(c);
  g->kv_begin = c->pos;
  for (uint64_t i = 0; i < n_kv; i++) {
    int rc = read_kv(c, &g->kvs[i], i);
    if (rc != ASU_OK) return rc;
    g->n_kv = i + 1;
  }
  g->kv_end = c->pos;
  int rc = index_kvs(g, c->err);
  if (rc == ASU_OK) rc = read_alignment(g, c->err);
  return rc;
}

static int read_dims(cursor *c, asu_gguf_tensor *t) {
  int rc = read_u32(c, &t->n_dims, "number of dimensions");
  if (rc != ASU_OK) return rc;
  if (t->n_dims > ASU_GGUF_MAX_DIMS)
    return asu_error_set(c->err, ASU_ERR_FORMAT, "has %" PRIu32 " dimensions; at most %u are allowed",
                         t->n_dims, ASU_GGUF_MAX_DIMS);
  t->n_elements = 1;
  for (uint32_t d = 0; d < ASU_GGUF_MAX_DIMS; d++) t->dims[d] = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) {
    if ((rc = read_u64(c, &t->dims[d], "dimension")) != ASU_OK) return rc;
    if (t->dims[d] == 0)
      return asu_error_set(c->err, ASU_ERR_FORMAT, "dimension %" PRIu32 " is zero", d);
    if (t->dims[d] > (uint64_t)INT64_MAX / t->n_elements)
      return asu_error_set(c->err, ASU_ERR_FORMAT, "element count overflows 63 bits");
    t->n_elements *= t->dims[d];
  }
  return ASU_OK;
}

static int read_type(cursor *c, asu_gguf_tensor *t) {
  int rc = read_u32(c, &t->type, "tensor type");
  if (rc != ASU_OK) return rc;
  const ggml_type_info *info = ggml_type_lookup(t->type);
  if (!info)
    return asu_error_set(c->err, ASU_ERR_FORMAT, "has unknown GGML type id %" PRIu32, t->type);
  if (t->dims[0] % info->block_elements != 0)
    return asu_error_set(c->err, ASU_ERR_FORMAT,
                         "has type %s with blocks of %" PRIu32
                         " elements, but its first dimension %" PRIu64 " is not a multiple",
                         info->name, info->block_elements, t->dims[0]);
  uint64_t blocks = t->n_elements / info->block_elements;
  if (blocks > UINT64_MAX / info->block_bytes)
    return asu_error_set(c->err, ASU_ERR_FORMAT, "byte size overflows 64 bits");
  t->bytes = blocks * info->block_bytes;
  return ASU_OK;
}

static int read_tensor_info(asu_gguf *g, cursor *c, asu_gguf_tensor *t, size_t index) {
  size_t start = c->pos;
  gguf_str name;
  int rc = read_string(c, &name, "tensor name");
  if (rc == ASU_OK) rc = check_name(c, &name, start, "tensor name");
  if (rc != ASU_OK) return asu_error_wrap(c->err, "tensor record %zu: ", index);
  t->name = name.s;
  rc = read_dims(c, t);
  if (rc == ASU_OK) rc = read_type(c, t);
  if (rc == ASU_OK) rc = read_u64(c, &t->data_offset, "data offset");
  if (rc == ASU_OK && t->data_offset % g->alignment != 0)
    rc = asu_error_set(c->err, ASU_ERR_FORMAT,
                       "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                       t->data_offset, g->alignment);
  if (rc != ASU_OK)
    return asu_error_wrap(c->err, "tensor '%s' (record at byte offset %zu): ", t->name, start);
  return ASU_OK;
}

static int compare_by_offset(const void *a, const void *b) {
  const asu_gguf_tensor *x = *(const asu_gguf_tensor *const *)a;
  const asu_gguf_tensor *y = *(const asu_gguf_tensor *const *)b;
  return x->data_offset < y->data_offset ? -1 : x->data_offset > y->data_offset;
}

/* Turns relative offsets into file offsets and checks that the data lies inside the file and
   that no two tensors overlap. */
static int place_tensor_data(asu_gguf *g, asu_error *err) {
  for (size_t i = 0; i < g->n_tensors; i++) {
    asu_gguf_tensor *t = &g->tensors[i];
    uint64_t rel = t->data_offset;
    if (g->data_start > g->size || rel > g->size - g->data_start ||
        t->bytes > g->size - g->data_start - rel)
      return asu_error_set(err, ASU_ERR_FORMAT,
                           "tensor '%s': data at offset %" PRIu64 " of the data section (byte %" PRIu64
                           " of the file), %" PRIu64 " bytes long, runs past the end of the %zu-byte "
                           "file; the file is truncated or corrupt",
                           t->name, rel, g->data_start + rel, t->bytes, g->size);
    t->data_offset = g->data_start + rel;
    t->data = (const unsigned char *)g->map + t->data_offset;
  }
  const asu_gguf_tensor **order = malloc(g->n_tensors * sizeof *order + 1);
  if (!order) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory checking tensor offsets");
  for (size_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
  qsort(order, g->n_tensors, sizeof *order, compare_by_offset);
  int rc = ASU_OK;
  for (size_t i = 1; i < g->n_tensors && rc == ASU_OK; i++)
    if (order[i - 1]->data_offset + order[i - 1]->bytes > order[i]->data_offset)
      rc = asu_error_set(err, ASU_ERR_FORMAT,
                         "tensors '%s' and '%s' overlap (data at byte offsets %" PRIu64
                         " and %" PRIu64 ")",
                         order[i - 1]->name, order[i]->name, order[i - 1]->data_offset,
                         order[i]->data_offset);
  free(order);
  return rc;
}

static int read_tensors(asu_gguf *g, cursor *c, uint64_t n_tensors) {
  g->tensors = calloc((size_t)n_tensors + 1, sizeof *g->tensors);
  if (!g->tensors) return nomem(c);
  for (uint64_t i = 0; i < n_tensors; i++) {
    int rc = read_tensor_info(g, c, &g->tensors[i], (size_t)i);
    if (rc != ASU_OK) return rc;
    g->n_tensors = (size_t)i + 1;
  }
  int rc = index_tensors(g, c->err);
  if (rc != ASU_OK) return rc;
  g->data_start = ((uint64_t)c->pos + g->alignment - 1) / g->alignment * g->alignment;
  return place_tensor_data(g, c->err);
}

/* ---- Open and close. ---- */

static int map_file(const char *path, asu_gguf *g, asu_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return asu_error_set(err, ASU_ERR_IO, "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return asu_error_set(err, ASU_ERR_IO, "cannot stat: %s", strerror(e));
  }
  if (!S_ISREG(st.st_mode) || st.st_size == 0) {
    close(fd);
    return asu_error_set(err, ASU_ERR_FORMAT,
                         S_ISREG(st.st_mode) ? "file is empty" : "not a regular file");
  }
  g->size = (size_t)st.st_size;
  g->map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (g->map == MAP_FAILED) {
    g->map = NULL;
    return asu_error_set(err, ASU_ERR_IO, "cannot map %zu bytes: %s", g->size, strerror(e));
  }
  return ASU_OK;
}

static int parse(asu_gguf *g, asu_error *err) {
  cursor c = {.base = g->map, .size = g->size, .arena = &g->arena, .err = err};
  uint64_t n_tensors = 0, n_kv = 0;
  int rc = read_header(&c, &n_tensors, &n_kv);
  if (rc == ASU_OK) rc = read_metadata(g, &c, n_kv);
  if (rc == ASU_OK) rc = read_tensors(g, &c, n_tensors);
  return rc;
}

int asu_gguf_open(const char *path, asu_gguf **out, asu_error *err) {
  if (!out) return asu_error_set(err, ASU_ERR_INVALID, "asu_gguf_open: out is NULL");
  *out = NULL;
  if (!path) return asu_error_set(err, ASU_ERR_INVALID, "asu_gguf_open: path is NULL");
  asu_gguf *g = calloc(1, sizeof *g);
  if (!g) return asu_error_set(err, ASU_ERR_NOMEM, "%s: out of memory", path);

  /* A local record, so that the context prefixes work when the caller passes err = NULL. */
  asu_error local = {0};
  int rc = map_file(path, g, &local);
  if (rc == ASU_OK) rc = parse(g, &local);
  if (rc != ASU_OK) {
    asu_error_wrap(&local, "%s: ", path);
    if (err) *err = local;
    asu_gguf_close(g);
    return rc;
  }
  *out = g;
  return ASU_OK;
}

void asu_gguf_close(asu_gguf *g) {
  if (!g) return;
  if (g->map) munmap(g->map, g->size);
  free(g->kvs);
  free(g->kv_sorted);
  free(g->tensors);
  free(g->tensor_sorted);
  arena_free(g->arena);
  free(g);
}

void asu_gguf_kv_section_of(const asu_gguf *g, asu_gguf_kv_section *out) {
  out->bytes = (const unsigned char *)g->map + g->kv_begin;
  out->size = g->kv_end - g->kv_begin;
  out->count = g->n_kv;
  out->alignment = g->alignment;
}

/* ---- Metadata getters. ---- */

static int key_not_found(const char *key, asu_error *err) {
  return asu_error_set(err, ASU_ERR_NOT_FOUND, "metadata key '%s' not found", key ? key : "(null)");
}

static int wrong_type(const gguf_kv *kv, const char *expected, asu_error *err) {
  return asu_error_set(err, ASU_ERR_FORMAT, "metadata key '%s' has type %s, expected %s",
                       kv->key.s, value_type_name(kv->type), expected);
}

static bool is_signed_int(uint32_t type) {
  return type == ASU_GGUF_INT8 || type == ASU_GGUF_INT16 || type == ASU_GGUF_INT32 ||
         type == ASU_GGUF_INT64;
}

static bool is_unsigned_int(uint32_t type) {
  return type == ASU_GGUF_UINT8 || type == ASU_GGUF_UINT16 || type == ASU_GGUF_UINT32 ||
         type == ASU_GGUF_UINT64;
}

bool asu_gguf_has_key(const asu_gguf *g, const char *key) { return find_kv(g, key) != NULL; }

int asu_gguf_get_u32(const asu_gguf *g, const char *key, uint32_t *out, asu_error *err) {
  const gguf_kv *kv = find_kv(g, key);
  if (!kv) return key_not_found(key, err);
  bool in_range;
  if (is_unsigned_int(kv->type)) in_range = kv->num.u <= UINT32_MAX;
  else if (is_signed_int(kv->type)) in_range = kv->num.i >= 0 && kv->num.i <= (int64_t)UINT32_MAX;
  else return wrong_type(kv, "an integer", err);
  if (!in_range)
    return asu_error_set(err, ASU_ERR_FORMAT, "metadata key '%s' is out of the uint32 range",
                         kv->key.s);
  *out = is_unsigned_int(kv->type) ? (uint32_t)kv->num.u : (uint32_t)kv->num.i;
  return ASU_OK;
}

int asu_gguf_get_f32(const asu_gguf *g, const char *key, float *out, asu_error *err) {
  const gguf_kv *kv = find_kv(g, key);
  if (!kv) return key_not_found(key, err);
  if (kv->type == ASU_GGUF_FLOAT32 || kv->type == ASU_GGUF_FLOAT64) *out = (float)kv->num.f;
  else if (is_unsigned_int(kv->type)) *out = (float)kv->num.u;
  else if (is_signed_int(kv->type)) *out = (float)kv->num.i;
  else return wrong_type(kv, "a number", err);
  return ASU_OK;
}

int asu_gguf_get_string(const asu_gguf *g, const char *key, const char **out, size_t *len,
                        asu_error *err) {
  const gguf_kv *kv = find_kv(g, key);
  if (!kv) return key_not_found(key, err);
  if (kv->type != ASU_GGUF_STRING) return wrong_type(kv, "string", err);
  *out = kv->str.s;
  if (len) *len = kv->str.len;
  return ASU_OK;
}

int asu_gguf_get_array(const asu_gguf *g, const char *key, uint32_t *elem_type, uint64_t *count,
                       const void **data, asu_error *err) {
  const gguf_kv *kv = find_kv(g, key);
  if (!kv) return key_not_found(key, err);
  if (kv->type != ASU_GGUF_ARRAY) return wrong_type(kv, "array", err);
  if (elem_type) *elem_type = kv->elem_type;
  if (count) *count = kv->count;
  if (data) *data = kv->array_data;
  return ASU_OK;
}

int asu_gguf_get_array_string(const asu_gguf *g, const char *key, uint64_t index, const char **out,
                              size_t *len, asu_error *err) {
  const gguf_kv *kv = find_kv(g, key);
  if (!kv) return key_not_found(key, err);
  if (kv->type != ASU_GGUF_ARRAY || kv->elem_type != ASU_GGUF_STRING)
    return asu_error_set(err, ASU_ERR_FORMAT, "metadata key '%s' is not an array of strings",
                         kv->key.s);
  if (index >= kv->count)
    return asu_error_set(err, ASU_ERR_INVALID,
                         "index %" PRIu64 " is out of range for metadata key '%s' (%" PRIu64
                         " elements)",
                         index, kv->key.s, kv->count);
  *out = kv->strings[index].s;
  if (len) *len = kv->strings[index].len;
  return ASU_OK;
}

/* ---- Tensors. ---- */

size_t asu_gguf_tensor_count(const asu_gguf *g) { return g ? g->n_tensors : 0; }

const asu_gguf_tensor *asu_gguf_tensor_at(const asu_gguf *g, size_t index) {
  return g && index < g->n_tensors ? &g->tensors[index] : NULL;
}

const asu_gguf_tensor *asu_gguf_find_tensor(const asu_gguf *g, const char *name) {
  if (!g || !name) return NULL;
  size_t lo = 0, hi = g->n_tensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int cmp = strcmp(name, g->tensor_sorted[mid]->name);
    if (cmp == 0) return g->tensor_sorted[mid];
    if (cmp < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}
