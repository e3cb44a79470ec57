/* safetensors: write and read back, atomic writes, and truncated or corrupt files. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_safetensors.h"
#include "test_util.h"

static char tmp_dir[] = "/tmp/asu_test_st_XXXXXX";

static char *tmp_path(const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
  return path;
}

static unsigned char *read_whole(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *data = malloc((size_t)n + 1);
  if (fread(data, 1, (size_t)n, f) != (size_t)n) n = 0;
  fclose(f);
  *size = (size_t)n;
  return data;
}

static void write_whole(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (size > 0) fwrite(data, 1, size, f);
  fclose(f);
}

/* Writes a file with the given JSON header (unpadded) followed by `data_bytes` bytes. */
static char *write_raw(const char *json, size_t data_bytes) {
  char *path = tmp_path("raw.safetensors");
  size_t len = strlen(json);
  unsigned char *buf = calloc(1, 8 + len + data_bytes + 1);
  uint64_t header_len = len;
  memcpy(buf, &header_len, 8);
  memcpy(buf + 8, json, len);
  write_whole(path, buf, 8 + len + data_bytes);
  free(buf);
  return path;
}

static void expect_read_error(const char *path, const char *needle, const char *what) {
  asu_st_file f = {0};
  asu_error err = {0};
  int rc = asu_safetensors_read(path, &f, &err);
  CHECK(rc == ASU_ERR_FORMAT, "%s: returned %d (%s)", what, rc, err.message);
  CHECK(strstr(err.message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.message,
        needle);
  CHECK(strstr(err.message, path) != NULL, "%s: message \"%s\" does not name the file", what,
        err.message);
  CHECK(f.count == 0, "%s: count not reset", what);
  CHECK(f.tensors == NULL, "%s: tensors not freed", what);
}

/* ---- Round trip. ---- */

static float matrix[3 * 5], vector[7], scalar = -2.5f;

static size_t make_tensors(asu_st_tensor *t) {
  for (int i = 0; i < 15; i++) matrix[i] = (float)i / 3.0f - 1.0f;
  for (int i = 0; i < 7; i++) vector[i] = (float)(i * i);
  t[0] = (asu_st_tensor){.name = "blk.0.attn_q.lora_a", .n_dims = 2, .shape = {3, 5},
                         .data = matrix, .n_elements = 15};
  t[1] = (asu_st_tensor){.name = "vector \"quoted\"\\", .n_dims = 1, .shape = {7}, .data = vector,
                         .n_elements = 7};
  t[2] = (asu_st_tensor){.name = "scalar", .n_dims = 0, .data = &scalar, .n_elements = 1};
  t[3] = (asu_st_tensor){.name = "empty", .n_dims = 2, .shape = {0, 4}, .data = NULL,
                         .n_elements = 0};
  return 4;
}

static void test_round_trip(void) {
  asu_st_tensor t[4];
  size_t n = make_tensors(t);
  char *path = tmp_path("round.safetensors");
  asu_error err = {0};
  CHECK(asu_safetensors_write(path, t, n, &err) == ASU_OK, "write: %s", err.message);

  size_t size = 0;
  unsigned char *bytes = read_whole(path, &size);
  uint64_t header_len = 0;
  memcpy(&header_len, bytes, 8);
  CHECK(header_len % 8 == 0, "header length %llu is not a multiple of 8",
        (unsigned long long)header_len);
  CHECK(size == 8 + header_len + (15 + 7 + 1) * 4, "file size %zu", size);
  CHECK(memcmp(bytes + 8, "{\"__metadata__\"", 15) == 0, "header starts with the metadata");
  free(bytes);

  asu_st_file f = {0};
  CHECK(asu_safetensors_read(path, &f, &err) == ASU_OK, "read: %s", err.message);
  CHECK(f.count == n, "%zu tensors", f.count);
  for (size_t i = 0; i < n; i++) {
    const asu_st_tensor *r = asu_safetensors_find(&f, t[i].name);
    CHECK(r != NULL, "tensor %s not found", t[i].name);
    if (!r) continue;
    CHECK(r->n_dims == t[i].n_dims, "%s n_dims %u", t[i].name, r->n_dims);
    CHECK(memcmp(r->shape, t[i].shape, t[i].n_dims * sizeof *r->shape) == 0, "%s shape", t[i].name);
    CHECK(r->n_elements == t[i].n_elements, "%s n_elements", t[i].name);
    CHECK(t[i].n_elements == 0 || memcmp(r->data, t[i].data, t[i].n_elements * 4) == 0,
          "%s data", t[i].name);
  }
  CHECK(asu_safetensors_find(&f, "missing") == NULL, "find a missing tensor");
  asu_safetensors_free(&f);
  CHECK(f.count == 0, "free resets the count");
  CHECK(f.tensors == NULL, "free resets the tensors");

  /* An empty tensor list is a valid file too. */
  CHECK(asu_safetensors_write(path, NULL, 0, &err) == ASU_OK, "write empty: %s", err.message);
  CHECK(asu_safetensors_read(path, &f, &err) == ASU_OK, "read empty: %s", err.message);
  CHECK(f.count == 0, "empty file has %zu tensors", f.count);
  asu_safetensors_free(&f);
}

static void test_write_errors(void) {
  asu_st_tensor t[4];
  size_t n = make_tensors(t);
  asu_error err = {0};
  t[1].name = t[0].name;
  CHECK(asu_safetensors_write(tmp_path("dup.safetensors"), t, n, &err) == ASU_ERR_INVALID, "dup");
  CHECK(strstr(err.message, t[0].name) != NULL, "message: %s", err.message);
  make_tensors(t);
  t[0].n_elements = 14;
  CHECK(asu_safetensors_write(tmp_path("count.safetensors"), t, n, &err) == ASU_ERR_INVALID,
        "n_elements mismatch");
  make_tensors(t);
  t[0].name = "__metadata__";
  CHECK(asu_safetensors_write(tmp_path("meta.safetensors"), t, n, &err) == ASU_ERR_INVALID,
        "reserved name");
  make_tensors(t);
  CHECK(asu_safetensors_write("/nonexistent_dir_asu/x.safetensors", t, n, &err) == ASU_ERR_IO,
        "missing directory");
  CHECK(strstr(err.message, "/nonexistent_dir_asu/x.safetensors") != NULL, "message: %s", err.message);
}

static void test_atomic_write(void) {
  char *path = tmp_path("atomic.bin");
  asu_error err = {0};
  CHECK(asu_write_file_atomic(path, "first", 5, &err) == ASU_OK, "write: %s", err.message);
  CHECK(asu_write_file_atomic(path, "second!", 7, &err) == ASU_OK, "overwrite: %s", err.message);
  size_t size = 0;
  unsigned char *data = read_whole(path, &size);
  CHECK(size == 7, "size after overwrite %zu", size);
  if (size == 7) CHECK(memcmp(data, "second!", 7) == 0, "content after overwrite");
  free(data);
  CHECK(asu_write_file_atomic(path, "", 0, &err) == ASU_OK, "empty write: %s", err.message);

  /* No temporary files stay behind. */
  DIR *dir = opendir(tmp_dir);
  size_t leftovers = 0;
  for (struct dirent *e; dir && (e = readdir(dir));)
    if (strstr(e->d_name, ".tmp.")) leftovers++;
  if (dir) closedir(dir);
  CHECK(leftovers == 0, "%zu temporary files left", leftovers);
}

/* ---- Corrupt files. ---- */

static void test_truncated(void) {
  asu_st_tensor t[4];
  size_t n = make_tensors(t);
  char *good = tmp_path("good.safetensors");
  CHECK(asu_safetensors_write(good, t, n, NULL) == ASU_OK, "write");
  size_t size = 0;
  unsigned char *bytes = read_whole(good, &size);
  const size_t cuts[] = {0, 4, 8, 9, 20, size - 93, size - 60, size - 1};
  char path[600];
  snprintf(path, sizeof path, "%s", tmp_path("cut.safetensors"));
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    write_whole(path, bytes, cuts[i]);
    char what[64];
    snprintf(what, sizeof what, "truncated at %zu of %zu", cuts[i], size);
    expect_read_error(path, "", what);
  }
  /* Trailing bytes after the last tensor are not allowed either. */
  unsigned char *longer = calloc(1, size + 4);
  memcpy(longer, bytes, size);
  write_whole(path, longer, size + 4);
  expect_read_error(path, "cover", "trailing bytes");
  free(longer);
  free(bytes);
}

static void test_corrupt(void) {
  char *path = write_raw("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
  expect_read_error(path, "dtype F16", "F16 dtype");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
  expect_read_error(path, "tensor 'a'", "shape against offsets");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12);
  expect_read_error(path, "overlap", "overlapping tensors");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
  expect_read_error(path, "holes", "hole before a tensor");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
  expect_read_error(path, "past the end", "offsets past the end");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
  expect_read_error(path, "shape entry 0", "negative dimension");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
  expect_read_error(path, "5 dimensions", "five dimensions");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4);
  expect_read_error(path, "data_offsets", "one offset");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8);
  expect_read_error(path, "appears twice", "duplicate names");

  path = write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4);
  expect_read_error(path, "not valid JSON", "unterminated JSON");

  path = write_raw("[1, 2, 3]", 0);
  expect_read_error(path, "does not start with '{'", "array header");

  path = write_raw("{\"__metadata__\": 5}", 0);
  expect_read_error(path, "__metadata__", "metadata not an object");

  path = write_raw("{} x", 0);
  expect_read_error(path, "unexpected bytes", "text after the JSON");

  uint64_t huge = UINT64_C(1) << 40;
  path = tmp_path("huge.safetensors");
  unsigned char buf[16] = {0};
  memcpy(buf, &huge, 8);
  memcpy(buf + 8, "{}      ", 8);
  write_whole(path, buf, 16);
  expect_read_error(path, "header length", "huge header length");

  asu_st_file f = {0};
  asu_error err = {0};
  CHECK(asu_safetensors_read("/nonexistent/a.safetensors", &f, &err) == ASU_ERR_IO, "missing file");
}

int main(void) {
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_write_errors();
  test_atomic_write();
  test_truncated();
  test_corrupt();

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
  return TEST_SUMMARY();
}
