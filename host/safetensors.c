/* safetensors reading and writing for F32 tensors. cJSON parses the JSON header into doubles,
   so offsets and dimensions above 2^53 are rejected. */
#include "asu_safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_atomic.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors code assumes a little-endian host"
#endif

/* The safetensors reference implementation rejects headers above 100 MB. */
#define MAX_HEADER_BYTES 100000000u
#define MAX_DIMS 4u
#define MAX_EXACT_DOUBLE (UINT64_C(1) << 53)
#define METADATA_KEY "__metadata__"

/* ---- Writing. ---- */

typedef struct text_buf {
  char *data;
  size_t size, cap;
  bool failed;
} text_buf;

static void text_put(text_buf *b, const char *s, size_t len) {
  if (b->failed) return;
  if (b->cap - b->size < len + 1) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->size < len + 1) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
      b->failed = true;
      return;
    }
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->size, s, len);
  b->size += len;
  b->data[b->size] = '\0';
}

static void text_str(text_buf *b, const char *s) { text_put(b, s, strlen(s)); }

static void text_u64(text_buf *b, uint64_t v) {
  char num[24];
  int n = snprintf(num, sizeof num, "%" PRIu64, v);
  text_put(b, num, (size_t)n);
}

/* Writes s as a JSON string literal. */
static void text_json_string(text_buf *b, const char *s) {
  text_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      text_put(b, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      text_put(b, esc, 6);
    } else {
      text_put(b, (const char *)p, 1);
    }
  }
  text_put(b, "\"", 1);
}

static int check_out_tensor(const asu_st_tensor *t, size_t index, asu_error *err) {
  if (!t->name || !*t->name)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor %zu has no name", index);
  if (strcmp(t->name, METADATA_KEY) == 0)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor %zu is named \"" METADATA_KEY
                         "\", which safetensors reserves", index);
  if (t->n_dims > MAX_DIMS)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' has %" PRIu32 " dimensions; at most 4",
                         t->name, t->n_dims);
  uint64_t n = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) {
    if (t->shape[d] != 0 && n > MAX_EXACT_DOUBLE / 4 / t->shape[d])
      return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' is too large", t->name);
    n *= t->shape[d];
  }
  if (n != t->n_elements)
    return asu_error_set(err, ASU_ERR_INVALID,
                         "tensor '%s' has n_elements %" PRIu64 " but its shape holds %" PRIu64,
                         t->name, t->n_elements, n);
  if (n > 0 && !t->data)
    return asu_error_set(err, ASU_ERR_INVALID, "tensor '%s' has no data", t->name);
  return ASU_OK;
}

static int compare_name_ptrs(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Fails with `code` when two of the n names are equal. */
static int check_unique(const char **names, size_t n, int code, asu_error *err) {
  qsort(names, n, sizeof *names, compare_name_ptrs);
  for (size_t i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0)
      return asu_error_set(err, code, "tensor name '%s' appears twice", names[i]);
  return ASU_OK;
}

static int check_out_tensors(const asu_st_tensor *tensors, size_t count, asu_error *err) {
  for (size_t i = 0; i < count; i++) {
    int rc = check_out_tensor(&tensors[i], i, err);
    if (rc != ASU_OK) return rc;
  }
  const char **names = malloc(count * sizeof *names + 1);
  if (!names) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < count; i++) names[i] = tensors[i].name;
  int rc = check_unique(names, count, ASU_ERR_INVALID, err);
  free(names);
  return rc;
}

/* Builds the JSON header, padded with spaces to a multiple of 8 bytes. */
static int build_header(const asu_st_tensor *tensors, size_t count, text_buf *b, asu_error *err) {
  text_str(b, "{\"" METADATA_KEY "\":{\"format\":\"pt\"}");
  uint64_t offset = 0;
  for (size_t i = 0; i < count; i++) {
    const asu_st_tensor *t = &tensors[i];
    text_str(b, ",");
    text_json_string(b, t->name);
    text_str(b, ":{\"dtype\":\"F32\",\"shape\":[");
    for (uint32_t d = 0; d < t->n_dims; d++) {
      if (d > 0) text_str(b, ",");
      text_u64(b, t->shape[d]);
    }
    text_str(b, "],\"data_offsets\":[");
    text_u64(b, offset);
    text_str(b, ",");
    offset += t->n_elements * sizeof(float);
    text_u64(b, offset);
    text_str(b, "]}");
  }
  text_str(b, "}");
  while (!b->failed && b->size % 8 != 0) text_str(b, " ");
  if (b->failed) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory building the header");
  if (offset > MAX_EXACT_DOUBLE || b->size > MAX_HEADER_BYTES)
    return asu_error_set(err, ASU_ERR_LIMIT, "the tensors are too large for a safetensors file");
  return ASU_OK;
}

static int write_all(const char *path, const asu_st_tensor *tensors, size_t count,
                     const text_buf *header, asu_error *err) {
  asu_atomic_file *f;
  int rc = asu_atomic_open(path, &f, err);
  if (rc != ASU_OK) return rc;
  uint64_t header_len = header->size;
  rc = asu_atomic_write(f, &header_len, sizeof header_len, err);
  if (rc == ASU_OK) rc = asu_atomic_write(f, header->data, header->size, err);
  for (size_t i = 0; i < count && rc == ASU_OK; i++)
    rc = asu_atomic_write(f, tensors[i].data, (size_t)tensors[i].n_elements * sizeof(float), err);
  if (rc != ASU_OK) {
    asu_atomic_abort(f);
    return rc;
  }
  return asu_atomic_commit(f, err);
}

int asu_safetensors_write(const char *path, const asu_st_tensor *tensors, size_t count,
                          asu_error *err) {
  asu_error local = {0};
  text_buf header = {0};
  int rc = ASU_OK;
  if (!path || (!tensors && count > 0))
    rc = asu_error_set(&local, ASU_ERR_INVALID, "path or tensor list is NULL");
  if (rc == ASU_OK) rc = check_out_tensors(tensors, count, &local);
  if (rc == ASU_OK) rc = build_header(tensors, count, &header, &local);
  if (rc == ASU_OK) rc = write_all(path, tensors, count, &header, &local);
  free(header.data);
  if (rc != ASU_OK) {
    asu_error_wrap(&local, "writing safetensors %s: ", path ? path : "(null)");
    if (err) *err = local;
  }
  return rc;
}

/* ---- Reading. ---- */

/* A tensor record from the header, before its data is read. */
typedef struct record {
  const char *name; /* points into the parsed JSON */
  uint32_t n_dims;
  uint64_t shape[MAX_DIMS];
  uint64_t n_elements;
  uint64_t begin, end; /* relative to the data section */
} record;

static int read_exact(int fd, void *dst, size_t bytes, uint64_t offset, asu_error *err) {
  unsigned char *p = dst;
  while (bytes > 0) {
    ssize_t n = pread(fd, p, bytes, (off_t)offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return asu_error_set(err, ASU_ERR_IO, "read failed at byte %" PRIu64 ": %s", offset, strerror(errno));
    if (n == 0)
      return asu_error_set(err, ASU_ERR_FORMAT, "unexpected end of file at byte %" PRIu64, offset);
    p += n;
    bytes -= (size_t)n;
    offset += (uint64_t)n;
  }
  return ASU_OK;
}

/* Reads a JSON number into *out. Returns 0, or -1 unless it is an integer in [0, 2^53]. */
static int json_uint(const cJSON *item, uint64_t *out) {
  if (!cJSON_IsNumber(item)) return -1;
  double d = item->valuedouble;
  if (!(d >= 0.0 && d <= (double)MAX_EXACT_DOUBLE)) return -1;
  *out = (uint64_t)d;
  return (double)*out == d ? 0 : -1;
}

static int parse_shape(const cJSON *shape, record *r, asu_error *err) {
  if (!cJSON_IsArray(shape))
    return asu_error_set(err, ASU_ERR_FORMAT, "tensor '%s': \"shape\" is missing or not an array",
                         r->name);
  int n = cJSON_GetArraySize(shape);
  if (n > (int)MAX_DIMS)
    return asu_error_set(err, ASU_ERR_FORMAT, "tensor '%s' has %d dimensions; at most 4 are supported",
                         r->name, n);
  r->n_dims = (uint32_t)n;
  r->n_elements = 1;
  for (int d = 0; d < n; d++) {
    uint64_t v;
    if (json_uint(cJSON_GetArrayItem(shape, d), &v) != 0)
      return asu_error_set(err, ASU_ERR_FORMAT,
                           "tensor '%s': shape entry %d is not a non-negative integer", r->name, d);
    if (v != 0 && r->n_elements > MAX_EXACT_DOUBLE / v)
      return asu_error_set(err, ASU_ERR_FORMAT, "tensor '%s': the shape is too large", r->name);
    r->shape[d] = v;
    r->n_elements *= v;
  }
  return ASU_OK;
}

static int parse_offsets(const cJSON *offsets, record *r, asu_error *err) {
  if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
      json_uint(cJSON_GetArrayItem(offsets, 0), &r->begin) != 0 ||
      json_uint(cJSON_GetArrayItem(offsets, 1), &r->end) != 0)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "tensor '%s': \"data_offsets\" must be two non-negative integers", r->name);
  if (r->end < r->begin)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                         r->name, r->begin, r->end);
  if (r->end - r->begin != r->n_elements * sizeof(float))
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                         " bytes but the shape needs %" PRIu64 " F32 values (%" PRIu64 " bytes)",
                         r->name, r->begin, r->end, r->end - r->begin, r->n_elements,
                         r->n_elements * sizeof(float));
  return ASU_OK;
}

static int parse_record(const cJSON *entry, record *r, asu_error *err) {
  r->name = entry->string;
  if (!cJSON_IsObject(entry))
    return asu_error_set(err, ASU_ERR_FORMAT, "tensor '%s': the entry is not a JSON object", r->name);
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
  if (!cJSON_IsString(dtype))
    return asu_error_set(err, ASU_ERR_FORMAT, "tensor '%s': \"dtype\" is missing or not a string",
                         r->name);
  if (strcmp(dtype->valuestring, "F32") != 0)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "tensor '%s' has dtype %.20s; only F32 is supported", r->name,
                         dtype->valuestring);
  int rc = parse_shape(cJSON_GetObjectItemCaseSensitive(entry, "shape"), r, err);
  if (rc != ASU_OK) return rc;
  return parse_offsets(cJSON_GetObjectItemCaseSensitive(entry, "data_offsets"), r, err);
}

static int compare_records_by_begin(const void *a, const void *b) {
  const record *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Checks that the tensors tile the data section exactly: sorted by offset, each starts where
   the previous ends and the last ends at the end of the file. Sorts records by offset. */
static int check_layout(record *records, size_t n, uint64_t data_size, asu_error *err) {
  qsort(records, n, sizeof *records, compare_records_by_begin);
  uint64_t expected = 0;
  for (size_t i = 0; i < n; i++) {
    const record *r = &records[i];
    if (r->end > data_size)
      return asu_error_set(err, ASU_ERR_FORMAT,
                           "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                           "] run past the end of the %" PRIu64
                           "-byte data section; the file is truncated or corrupt",
                           r->name, r->begin, r->end, data_size);
    if (r->begin < expected)
      return asu_error_set(err, ASU_ERR_FORMAT, "tensors '%s' and '%s' overlap", records[i - 1].name,
                           r->name);
    if (r->begin > expected)
      return asu_error_set(err, ASU_ERR_FORMAT,
                           "tensor '%s' starts at data offset %" PRIu64
                           " but the previous tensor ends at %" PRIu64 "; holes are not allowed",
                           r->name, r->begin, expected);
    expected = r->end;
  }
  if (expected != data_size)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "the tensors cover %" PRIu64 " bytes but the data section has %" PRIu64,
                         expected, data_size);
  return ASU_OK;
}

static int collect_records(const cJSON *root, record **out, size_t *n, asu_error *err) {
  size_t count = 0;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, root) {
    if (strcmp(entry->string, METADATA_KEY) == 0) {
      if (!cJSON_IsObject(entry))
        return asu_error_set(err, ASU_ERR_FORMAT, "\"" METADATA_KEY "\" is not a JSON object");
      continue;
    }
    count++;
  }
  record *records = calloc(count + 1, sizeof *records);
  const char **names = malloc((count + 1) * sizeof *names);
  int rc = records && names ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  size_t i = 0;
  cJSON_ArrayForEach(entry, root) {
    if (rc != ASU_OK) break;
    if (strcmp(entry->string, METADATA_KEY) == 0) continue;
    names[i] = entry->string;
    rc = parse_record(entry, &records[i++], err);
  }
  if (rc == ASU_OK) rc = check_unique(names, count, ASU_ERR_FORMAT, err);
  free(names);
  if (rc != ASU_OK) {
    free(records);
    return rc;
  }
  *out = records;
  *n = count;
  return ASU_OK;
}

static int read_header_json(int fd, uint64_t file_size, cJSON **root, uint64_t *header_len,
                            asu_error *err) {
  if (file_size < 8)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "file is %" PRIu64 " bytes, shorter than the 8-byte header length", file_size);
  int rc = read_exact(fd, header_len, 8, 0, err);
  if (rc != ASU_OK) return rc;
  if (*header_len < 2 || *header_len > MAX_HEADER_BYTES || *header_len > file_size - 8)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "header length %" PRIu64 " (bytes 0-7) is not between 2 and %u or runs "
                         "past the end of the %" PRIu64 "-byte file; the file is truncated or "
                         "not safetensors",
                         *header_len, MAX_HEADER_BYTES, file_size);
  char *text = malloc((size_t)*header_len + 1);
  if (!text) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory reading the header");
  rc = read_exact(fd, text, (size_t)*header_len, 8, err);
  text[*header_len] = '\0';
  const char *end = NULL;
  if (rc == ASU_OK && text[0] != '{')
    rc = asu_error_set(err, ASU_ERR_FORMAT, "the header at byte 8 does not start with '{'");
  if (rc == ASU_OK) *root = cJSON_ParseWithLengthOpts(text, (size_t)*header_len, &end, false);
  if (rc == ASU_OK && !*root)
    rc = asu_error_set(err, ASU_ERR_FORMAT, "the header is not valid JSON (near header byte %zu)",
                       end ? (size_t)(end - text) : 0);
  if (rc == ASU_OK && strspn(end, " \t\r\n") != (size_t)(text + *header_len - end))
    rc = asu_error_set(err, ASU_ERR_FORMAT, "unexpected bytes after the header JSON at header byte %zu",
                       (size_t)(end - text));
  if (rc != ASU_OK && *root) {
    cJSON_Delete(*root);
    *root = NULL;
  }
  free(text);
  return rc;
}

static int load_tensor(int fd, uint64_t data_start, const record *r, asu_st_tensor *t,
                       asu_error *err) {
  t->name = strdup(r->name);
  t->data = malloc((size_t)(r->end - r->begin) + 1);
  if (!t->name || !t->data) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  t->n_dims = r->n_dims;
  memcpy(t->shape, r->shape, sizeof t->shape);
  t->n_elements = r->n_elements;
  int rc = read_exact(fd, t->data, (size_t)(r->end - r->begin), data_start + r->begin, err);
  if (rc != ASU_OK) return asu_error_wrap(err, "tensor '%s': ", r->name);
  return ASU_OK;
}

static int read_file(int fd, uint64_t file_size, asu_st_file *out, asu_error *err) {
  cJSON *root = NULL;
  uint64_t header_len;
  record *records = NULL;
  size_t n = 0;
  int rc = read_header_json(fd, file_size, &root, &header_len, err);
  if (rc == ASU_OK && !cJSON_IsObject(root))
    rc = asu_error_set(err, ASU_ERR_FORMAT, "the header is not a JSON object");
  if (rc == ASU_OK) rc = collect_records(root, &records, &n, err);
  if (rc == ASU_OK) rc = check_layout(records, n, file_size - 8 - header_len, err);
  if (rc == ASU_OK && !(out->tensors = calloc(n + 1, sizeof *out->tensors)))
    rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (size_t i = 0; rc == ASU_OK && i < n; i++) {
    rc = load_tensor(fd, 8 + header_len, &records[i], &out->tensors[i], err);
    out->count = i + 1;
  }
  free(records);
  cJSON_Delete(root);
  return rc;
}

int asu_safetensors_read(const char *path, asu_st_file *out, asu_error *err) {
  if (!path || !out) return asu_error_set(err, ASU_ERR_INVALID, "asu_safetensors_read: NULL argument");
  out->tensors = NULL;
  out->count = 0;
  asu_error local = {0};
  int rc = ASU_OK;
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) rc = asu_error_set(&local, ASU_ERR_IO, "cannot open: %s", strerror(errno));
  else if (fstat(fd, &st) != 0) rc = asu_error_set(&local, ASU_ERR_IO, "cannot stat: %s", strerror(errno));
  else if (!S_ISREG(st.st_mode)) rc = asu_error_set(&local, ASU_ERR_FORMAT, "not a regular file");
  if (rc == ASU_OK) rc = read_file(fd, (uint64_t)st.st_size, out, &local);
  if (fd >= 0) close(fd);
  if (rc != ASU_OK) {
    asu_safetensors_free(out);
    asu_error_wrap(&local, "%s: ", path);
    if (err) *err = local;
  }
  return rc;
}

const asu_st_tensor *asu_safetensors_find(const asu_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  for (size_t i = 0; i < f->count; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}

void asu_safetensors_free(asu_st_file *f) {
  if (!f) return;
  for (size_t i = 0; i < f->count; i++) {
    free(f->tensors[i].name);
    free(f->tensors[i].data);
  }
  free(f->tensors);
  f->tensors = NULL;
  f->count = 0;
}
