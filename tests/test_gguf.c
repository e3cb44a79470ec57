/* GGUF reader and writer: the stories260K model, a written copy, and corrupt or hand-built files. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asu_gguf.h"
#include "gguf_internal.h"
#include "test_util.h"

static char tmp_dir[] = "/tmp/asu_test_gguf_XXXXXX";

/* ---- Files. ---- */

static unsigned char *read_whole(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *data = malloc((size_t)n + 1);
  if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    data = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return data;
}

static void write_whole(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  if (size > 0 && fwrite(data, 1, size, f) != size) perror(path);
  fclose(f);
}

static char *tmp_path(const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
  return path;
}

/* ---- A byte builder for hand-made GGUF files. ---- */

typedef struct builder {
  unsigned char data[1 << 16];
  size_t size;
} builder;

static void put(builder *b, const void *src, size_t n) {
  memcpy(b->data + b->size, src, n);
  b->size += n;
}
static void put_u32(builder *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(builder *b, uint64_t v) { put(b, &v, 8); }
static void put_str(builder *b, const char *s) {
  put_u64(b, strlen(s));
  put(b, s, strlen(s));
}
static void put_header(builder *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  put(b, "GGUF", 4);
  put_u32(b, version);
  put_u64(b, n_tensors);
  put_u64(b, n_kv);
}
static void kv_u32(builder *b, const char *key, uint32_t v) {
  put_str(b, key);
  put_u32(b, ASU_GGUF_UINT32);
  put_u32(b, v);
}
static void tensor_info(builder *b, const char *name, uint32_t n_dims, const uint64_t *dims,
                        uint32_t type, uint64_t offset) {
  put_str(b, name);
  put_u32(b, n_dims);
  for (uint32_t d = 0; d < n_dims; d++) put_u64(b, dims[d]);
  put_u32(b, type);
  put_u64(b, offset);
}
static void pad_to(builder *b, size_t alignment) {
  while (b->size % alignment != 0) b->data[b->size++] = 0;
}

/* Opens path, expects ASU_ERR_FORMAT with `needle` in the message. */
static void expect_format_error(const char *path, const char *needle, const char *what) {
  asu_gguf *g = (asu_gguf *)1;
  asu_error err = {0};
  int rc = asu_gguf_open(path, &g, &err);
  CHECK(rc == ASU_ERR_FORMAT, "%s: open returned %d (%s)", what, rc, err.message);
  CHECK(g == NULL, "%s: handle not cleared", what);
  CHECK(strstr(err.message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.message,
        needle);
  CHECK(strstr(err.message, path) != NULL, "%s: message \"%s\" does not name the file", what,
        err.message);
  if (rc == ASU_OK) asu_gguf_close(g);
}

static void expect_built_error(const builder *b, const char *needle, const char *what) {
  char *path = tmp_path("built.gguf");
  write_whole(path, b->data, b->size);
  expect_format_error(path, needle, what);
}

/* ---- The stories260K model. ---- */

static void test_model_metadata(const asu_gguf *g) {
  static const struct {
    const char *key;
    uint32_t value;
  } expected[] = {
      {"llama.embedding_length", 64}, {"llama.block_count", 5},
      {"llama.feed_forward_length", 172}, {"llama.attention.head_count", 8},
      {"llama.attention.head_count_kv", 4}, {"llama.context_length", 2048},
      {"tokenizer.ggml.bos_token_id", 1}, {"tokenizer.ggml.eos_token_id", 2},
  };
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
    uint32_t v = 0;
    asu_error err = {0};
    int rc = asu_gguf_get_u32(g, expected[i].key, &v, &err);
    CHECK(rc == ASU_OK, "get %s: %s", expected[i].key, err.message);
    CHECK(v == expected[i].value, "%s = %u, expected %u", expected[i].key, v, expected[i].value);
  }

  const char *arch = NULL;
  size_t len = 0;
  CHECK(asu_gguf_get_string(g, "general.architecture", &arch, &len, NULL) == ASU_OK, "architecture");
  CHECK(arch != NULL, "architecture is NULL");
  CHECK(len == 5, "architecture length %zu", len);
  CHECK(arch && strcmp(arch, "llama") == 0, "architecture is %s", arch ? arch : "NULL");

  float eps = 0;
  CHECK(asu_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, NULL) == ASU_OK, "eps");
  CHECK(fabsf(eps - 1e-5f) < 1e-9f, "rms epsilon %g", eps);

  uint32_t type = 0;
  uint64_t count = 0;
  const void *data = (const void *)1;
  CHECK(asu_gguf_get_array(g, "tokenizer.ggml.tokens", &type, &count, &data, NULL) == ASU_OK,
        "tokens array");
  CHECK(type == ASU_GGUF_STRING, "tokens element type %u", type);
  CHECK(count == 512, "tokens count %llu", (unsigned long long)count);
  CHECK(data == NULL, "string arrays have no packed data");
  const char *piece = NULL;
  CHECK(asu_gguf_get_array_string(g, "tokenizer.ggml.tokens", 1, &piece, &len, NULL) == ASU_OK,
        "token 1");
  CHECK(piece && strcmp(piece, "<s>") == 0, "token 1 is %s", piece ? piece : "NULL");
  CHECK(len == 3, "token 1 length %zu", len);
  CHECK(asu_gguf_get_array(g, "tokenizer.ggml.scores", &type, &count, &data, NULL) == ASU_OK,
        "scores array");
  CHECK(type == ASU_GGUF_FLOAT32, "scores element type %u", type);
  CHECK(count == 512, "scores count %llu", (unsigned long long)count);
  CHECK(data != NULL, "scores have no packed data");
}

static void test_model_getter_errors(const asu_gguf *g) {
  asu_error err = {0};
  uint32_t v;
  CHECK(asu_gguf_get_u32(g, "llama.no_such_key", &v, &err) == ASU_ERR_NOT_FOUND, "missing key");
  CHECK(strstr(err.message, "llama.no_such_key") != NULL, "message: %s", err.message);
  CHECK(!asu_gguf_has_key(g, "llama.no_such_key"), "has_key on a missing key");
  CHECK(asu_gguf_has_key(g, "general.architecture"), "has_key on a present key");
  CHECK(asu_gguf_get_u32(g, "general.architecture", &v, &err) == ASU_ERR_FORMAT, "string as u32");
  CHECK(strstr(err.message, "general.architecture") != NULL, "message: %s", err.message);
  const char *s;
  CHECK(asu_gguf_get_string(g, "llama.block_count", &s, NULL, &err) == ASU_ERR_FORMAT, "u32 as string");
  CHECK(asu_gguf_get_array_string(g, "tokenizer.ggml.tokens", 512, &s, NULL, &err) ==
            ASU_ERR_INVALID,
        "index past the end");
  CHECK(asu_gguf_get_array_string(g, "tokenizer.ggml.scores", 0, &s, NULL, &err) == ASU_ERR_FORMAT,
        "float array as strings");
}

static void check_dims(const asu_gguf *g, const char *name, uint64_t d0, uint64_t d1) {
  const asu_gguf_tensor *t = asu_gguf_find_tensor(g, name);
  CHECK(t != NULL, "tensor %s not found", name);
  if (!t) return;
  CHECK(strcmp(t->name, name) == 0, "name %s", t->name);
  CHECK(t->n_dims == (d1 == 1 ? 1u : 2u), "%s n_dims %u", name, t->n_dims);
  CHECK(t->dims[0] == d0, "%s dims[0] %llu", name, (unsigned long long)t->dims[0]);
  CHECK(t->dims[1] == d1, "%s dims[1] %llu", name, (unsigned long long)t->dims[1]);
  CHECK(t->type == ASU_TENSOR_F32, "%s type %u", name, t->type);
  CHECK(t->n_elements == d0 * d1, "%s n_elements %llu", name, (unsigned long long)t->n_elements);
  CHECK(t->bytes == 4 * d0 * d1, "%s bytes %llu", name, (unsigned long long)t->bytes);
  CHECK(t->data_offset % 32 == 0, "%s offset %llu not aligned", name,
        (unsigned long long)t->data_offset);
}

static void test_model_tensors(const asu_gguf *g) {
  /* token_embd, output_norm, output and 9 tensors in each of the 5 blocks */
  CHECK(asu_gguf_tensor_count(g) == 48, "tensor count %zu", asu_gguf_tensor_count(g));
  check_dims(g, "token_embd.weight", 64, 512);
  check_dims(g, "output.weight", 64, 512);
  check_dims(g, "output_norm.weight", 64, 1);
  check_dims(g, "blk.0.attn_q.weight", 64, 64);
  check_dims(g, "blk.4.attn_k.weight", 64, 32);
  check_dims(g, "blk.2.attn_v.weight", 64, 32);
  check_dims(g, "blk.3.ffn_gate.weight", 64, 172);
  check_dims(g, "blk.3.ffn_down.weight", 172, 64);
  check_dims(g, "blk.1.attn_norm.weight", 64, 1);
  CHECK(asu_gguf_find_tensor(g, "blk.5.attn_q.weight") == NULL, "no sixth block");
  CHECK(asu_gguf_tensor_at(g, 48) == NULL, "tensor_at past the end");

  const asu_gguf_tensor *t = asu_gguf_find_tensor(g, "output_norm.weight");
  float values[64] = {0};
  asu_error err = {0};
  if (!t) return;
  CHECK(asu_gguf_tensor_to_f32(t, values, 64, &err) == ASU_OK, "to_f32: %s", err.message);
  CHECK(asu_gguf_tensor_to_f32(t, values, 63, &err) == ASU_ERR_INVALID, "wrong count accepted");
  CHECK(strstr(err.message, "output_norm.weight") != NULL, "message: %s", err.message);
  bool finite = true;
  for (int i = 0; i < 64; i++) finite = finite && isfinite(values[i]) && values[i] != 0.0f;
  CHECK(finite, "output_norm values are not finite and nonzero");
}

/* ---- Writing a copy. ---- */

static void compare_files(const asu_gguf *a, const asu_gguf *b) {
  asu_gguf_kv_section ka, kb;
  asu_gguf_kv_section_of(a, &ka);
  asu_gguf_kv_section_of(b, &kb);
  CHECK(ka.count == kb.count, "key counts %llu and %llu", (unsigned long long)ka.count,
        (unsigned long long)kb.count);
  CHECK(ka.size == kb.size, "metadata sizes %zu and %zu", ka.size, kb.size);
  if (ka.size == kb.size) CHECK(memcmp(ka.bytes, kb.bytes, ka.size) == 0, "metadata bytes differ");
  CHECK(ka.alignment == kb.alignment, "alignment differs");

  CHECK(asu_gguf_tensor_count(a) == asu_gguf_tensor_count(b), "tensor counts differ");
  for (size_t i = 0; i < asu_gguf_tensor_count(a) && i < asu_gguf_tensor_count(b); i++) {
    const asu_gguf_tensor *x = asu_gguf_tensor_at(a, i), *y = asu_gguf_tensor_at(b, i);
    CHECK(strcmp(x->name, y->name) == 0, "tensor %zu: %s vs %s", i, x->name, y->name);
    CHECK(x->n_dims == y->n_dims, "tensor %s n_dims differ", x->name);
    CHECK(memcmp(x->dims, y->dims, sizeof x->dims) == 0, "tensor %s dims differ", x->name);
    CHECK(x->bytes == y->bytes, "tensor %s sizes differ", x->name);
    if (x->bytes == y->bytes)
      CHECK(memcmp(x->data, y->data, x->bytes) == 0, "tensor %s data differs", x->name);
    CHECK(y->data_offset % 32 == 0, "tensor %s offset %llu unaligned", y->name,
          (unsigned long long)y->data_offset);
  }
}

static void test_write_copy(const asu_gguf *g) {
  size_t n = asu_gguf_tensor_count(g);
  asu_gguf_out_tensor *out = calloc(n, sizeof *out);
  float **buffers = calloc(n, sizeof *buffers);
  for (size_t i = 0; i < n; i++) {
    const asu_gguf_tensor *t = asu_gguf_tensor_at(g, i);
    buffers[i] = malloc(t->n_elements * sizeof(float));
    CHECK(asu_gguf_tensor_to_f32(t, buffers[i], t->n_elements, NULL) == ASU_OK, "read %s", t->name);
    out[i] = (asu_gguf_out_tensor){.name = t->name, .n_dims = t->n_dims, .data = buffers[i]};
    memcpy(out[i].dims, t->dims, sizeof t->dims);
  }
  char *path = tmp_path("copy.gguf");
  asu_error err = {0};
  CHECK(asu_gguf_write(path, g, out, n, &err) == ASU_OK, "write: %s", err.message);

  asu_gguf *copy = NULL;
  CHECK(asu_gguf_open(path, &copy, &err) == ASU_OK, "reopen: %s", err.message);
  if (copy) {
    compare_files(g, copy);
    uint32_t layers = 0;
    CHECK(asu_gguf_get_u32(copy, "llama.block_count", &layers, NULL) == ASU_OK, "block_count");
    CHECK(layers == 5, "block_count in the copy is %u", layers);
    asu_gguf_close(copy);
  }

  /* Invalid tensor lists leave nothing behind. */
  out[1].name = out[0].name;
  CHECK(asu_gguf_write(tmp_path("dup.gguf"), g, out, n, &err) == ASU_ERR_INVALID, "duplicate names");
  CHECK(strstr(err.message, out[0].name) != NULL, "message: %s", err.message);
  CHECK(access(tmp_path("dup.gguf"), F_OK) != 0, "file written despite the error");
  out[1].name = asu_gguf_tensor_at(g, 1)->name;
  out[2].dims[0] = 0;
  CHECK(asu_gguf_write(tmp_path("zero.gguf"), g, out, n, &err) == ASU_ERR_INVALID, "zero dim");
  CHECK(asu_gguf_write("/nonexistent_dir_asu/x.gguf", g, out, 1, &err) == ASU_ERR_IO,
        "missing directory: %s", err.message);

  for (size_t i = 0; i < n; i++) free(buffers[i]);
  free(buffers);
  free(out);
}

/* A copy without source metadata, with a 3-D tensor and a scalar. */
static void test_write_without_metadata(void) {
  float cube[2 * 3 * 4], scalar = 7.5f;
  for (int i = 0; i < 24; i++) cube[i] = (float)i * 0.25f;
  asu_gguf_out_tensor out[2] = {
      {.name = "cube", .n_dims = 3, .dims = {2, 3, 4, 1}, .data = cube},
      {.name = "scalar", .n_dims = 0, .data = &scalar},
  };

  char *path = tmp_path("plain.gguf");
  asu_error err = {0};
  CHECK(asu_gguf_write(path, NULL, out, 2, &err) == ASU_OK, "write: %s", err.message);

  asu_gguf *g = NULL;
  CHECK(asu_gguf_open(path, &g, &err) == ASU_OK, "open: %s", err.message);
  if (!g) return;
  const asu_gguf_tensor *t = asu_gguf_find_tensor(g, "cube");
  CHECK(t != NULL, "cube not found");
  if (t) {
    CHECK(t->n_dims == 3, "cube n_dims %u", t->n_dims);
    CHECK(t->dims[2] == 4, "cube dims[2] %llu", (unsigned long long)t->dims[2]);
    CHECK(t->dims[3] == 1, "cube unused dims[3] %llu", (unsigned long long)t->dims[3]);
    CHECK(t->n_elements == 24, "cube n_elements %llu", (unsigned long long)t->n_elements);
    CHECK(memcmp(t->data, cube, sizeof cube) == 0, "cube data");
  }
  t = asu_gguf_find_tensor(g, "scalar");
  CHECK(t != NULL, "scalar not found");
  if (t) {
    float v = 0;
    CHECK(t->n_dims == 0, "scalar n_dims %u", t->n_dims);
    CHECK(asu_gguf_tensor_to_f32(t, &v, 1, NULL) == ASU_OK, "scalar to_f32");
    CHECK(v == 7.5f, "scalar value %g", v);
    CHECK(t->data_offset % 32 == 0, "scalar offset %llu unaligned", (unsigned long long)t->data_offset);
  }
  asu_gguf_close(g);
}

/* F16 tensors: round-to-nearest-even at ties, the range limits, subnormals, NaN. */
typedef struct f16_case {
  float value;
  uint16_t bits;
} f16_case;

static const f16_case f16_cases[] = {
    {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000},
    {1.0f + 0x1p-11f, 0x3c00},              /* tie: stays on the even 1.0 */
    {1.0f + 3 * 0x1p-11f, 0x3c02},          /* tie: goes up to the even 1 + 2^-9 */
    {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},   /* just past the tie */
    {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00}, {-1e9f, 0xfc00},
    {INFINITY, 0x7c00}, {0x1p-14f, 0x0400}, {0x1p-14f - 0x1p-26f, 0x0400},
    {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000}, {1.5f * 0x1p-25f, 0x0001}, {3 * 0x1p-25f, 0x0002},
    {1e-10f, 0x0000}, {0.1f, 0x2e66}, {3.140625f, 0x4248},
};

static void check_f16_tensor(const asu_gguf *g, size_t n) {
  const asu_gguf_tensor *t = asu_gguf_find_tensor(g, "halves");
  CHECK(t != NULL, "tensor 'halves' not found");
  if (!t) return;
  CHECK(t->type == ASU_TENSOR_F16, "type %u", t->type);
  CHECK(t->bytes == 2 * (n + 1), "bytes %llu", (unsigned long long)t->bytes);
  const unsigned char *data = t->data;
  for (size_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy(&h, data + 2 * i, 2);
    CHECK(h == f16_cases[i].bits, "%a stored as 0x%04x, want 0x%04x", f16_cases[i].value, h,
          f16_cases[i].bits);
  }
  float back[64];
  CHECK(asu_gguf_tensor_to_f32(t, back, n + 1, NULL) == ASU_OK, "to_f32");
  CHECK(isnan(back[n]), "NaN read back as %g", back[n]);
  CHECK(back[2] == 1.0f, "1 read back as %g", back[2]);
  CHECK(back[7] == 65504.0f, "65504 read back as %g", back[7]);
}

static void check_written_kv(const asu_gguf *g) {
  uint32_t u = 0, align = 0;
  float f = 0;
  const char *s = NULL;
  CHECK(asu_gguf_get_u32(g, "test.count", &u, NULL) == ASU_OK, "uint32 key missing");
  CHECK(u == 12, "uint32 %u", u);
  CHECK(asu_gguf_get_u32(g, "general.alignment", &align, NULL) == ASU_OK, "alignment missing");
  CHECK(align == 64, "alignment %u", align);
  CHECK(asu_gguf_get_f32(g, "test.eps", &f, NULL) == ASU_OK, "float32 key missing");
  CHECK(f == 1e-5f, "float32 %g", f);
  CHECK(asu_gguf_get_string(g, "test.name", &s, NULL, NULL) == ASU_OK, "string key missing");
  CHECK(s && !strcmp(s, "tiny"), "string %s", s ? s : "(none)");
  uint32_t type = 0;
  uint64_t count = 0;
  const void *data = NULL;
  CHECK(asu_gguf_get_array(g, "test.scores", &type, &count, &data, NULL) == ASU_OK,
        "float array missing");
  CHECK(type == ASU_GGUF_FLOAT32 && count == 3, "float array type %u count %llu", type,
        (unsigned long long)count);
  CHECK(count == 3 && ((const float *)data)[2] == -2.5f, "float array element");
  CHECK(asu_gguf_get_array(g, "test.types", &type, &count, &data, NULL) == ASU_OK,
        "int array missing");
  CHECK(type == ASU_GGUF_INT32 && count == 3, "int array type %u count %llu", type,
        (unsigned long long)count);
  CHECK(count == 3 && ((const int32_t *)data)[1] == -7, "int array element");
  s = NULL;
  CHECK(asu_gguf_get_array_string(g, "test.tokens", 2, &s, NULL, NULL) == ASU_OK,
        "string array missing");
  CHECK(s && !strcmp(s, "<0x0A>"), "string array element %s", s ? s : "(none)");
  const asu_gguf_tensor *t = asu_gguf_find_tensor(g, "plain");
  CHECK(t != NULL, "F32 tensor 'plain' beside the F16 one not found");
  CHECK(t && t->type == ASU_TENSOR_F32, "plain has type %u", t ? t->type : 0);
  CHECK(t && t->data_offset % 64 == 0, "plain at offset %llu, not 64-aligned",
        t ? (unsigned long long)t->data_offset : 0ull);
}

static void test_write_f16_and_records(void) {
  size_t n = sizeof f16_cases / sizeof *f16_cases;
  float values[64], plain[3] = {1.0f, 2.0f, 3.0f}, scores[3] = {0.0f, -1.0f, -2.5f};
  for (size_t i = 0; i < n; i++) values[i] = f16_cases[i].value;
  values[n] = NAN;
  int32_t types[3] = {1, -7, 6};
  const char *tokens[3] = {"<unk>", "<s>", "<0x0A>"};
  asu_gguf_out_kv kvs[] = {
      {.key = "general.alignment", .type = ASU_GGUF_UINT32, .value.u32 = 64},
      {.key = "test.count", .type = ASU_GGUF_UINT32, .value.u32 = 12},
      {.key = "test.eps", .type = ASU_GGUF_FLOAT32, .value.f32 = 1e-5f},
      {.key = "test.name", .type = ASU_GGUF_STRING, .value.str = "tiny"},
      {.key = "test.scores", .type = ASU_GGUF_ARRAY, .array_type = ASU_GGUF_FLOAT32, .count = 3,
       .array = scores},
      {.key = "test.types", .type = ASU_GGUF_ARRAY, .array_type = ASU_GGUF_INT32, .count = 3,
       .array = types},
      {.key = "test.tokens", .type = ASU_GGUF_ARRAY, .array_type = ASU_GGUF_STRING, .count = 3,
       .array = tokens},
  };
  size_t n_kvs = sizeof kvs / sizeof *kvs;
  asu_gguf_out_tensor out[2] = {
      {.name = "halves", .n_dims = 1, .dims = {n + 1}, .data = values, .type = ASU_TENSOR_F16},
      {.name = "plain", .n_dims = 1, .dims = {3}, .data = plain},
  };
  char *path = tmp_path("records.gguf");
  asu_error err = {0};
  CHECK(asu_gguf_write_kv(path, kvs, n_kvs, out, 2, &err) == ASU_OK, "write: %s", err.message);
  asu_gguf *g = NULL;
  CHECK(asu_gguf_open(path, &g, &err) == ASU_OK, "open: %s", err.message);
  if (g) {
    check_f16_tensor(g, n);
    check_written_kv(g);
    asu_gguf_close(g);
  }

  /* Bad records and tensor types are refused with a message naming them. */
  out[1].type = 7;
  CHECK(asu_gguf_write_kv(tmp_path("bad.gguf"), kvs, n_kvs, out, 2, &err) == ASU_ERR_INVALID,
        "tensor type 7 accepted");
  CHECK(strstr(err.message, "plain") != NULL, "message: %s", err.message);
  out[1].type = ASU_TENSOR_F32;
  kvs[0].value.u32 = 48;
  CHECK(asu_gguf_write_kv(tmp_path("bad.gguf"), kvs, n_kvs, out, 2, &err) == ASU_ERR_INVALID,
        "alignment 48 accepted");
  kvs[0].value.u32 = 64;
  kvs[2].type = ASU_GGUF_FLOAT64;
  CHECK(asu_gguf_write_kv(tmp_path("bad.gguf"), kvs, n_kvs, out, 2, &err) == ASU_ERR_INVALID,
        "float64 record accepted");
  CHECK(strstr(err.message, "test.eps") != NULL, "message: %s", err.message);
  CHECK(access(tmp_path("bad.gguf"), F_OK) != 0, "file written despite the errors");
}

/* ---- Corrupt copies of the model. ---- */

static void test_truncated(const unsigned char *model, size_t size) {
  const size_t cuts[] = {0, 3, 10, 23, 24, 40, 100, 1000, 5000, 20000, size / 2, size - 100, size - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    char *path = tmp_path("truncated.gguf");
    write_whole(path, model, cuts[i]);
    char what[64];
    snprintf(what, sizeof what, "truncated at %zu", cuts[i]);
    expect_format_error(path, "", what);
  }
}

/* Returns the file offset of the tensor record for `name` (its length field). */
static size_t find_tensor_record(const unsigned char *model, size_t size, const char *name) {
  unsigned char needle[64];
  uint64_t len = strlen(name);
  memcpy(needle, &len, 8);
  memcpy(needle + 8, name, len);
  const unsigned char *p = memmem(model, size, needle, 8 + len);
  return p ? (size_t)(p - model) : 0;
}

static void test_corrupt_model(const unsigned char *model, size_t size) {
  unsigned char *copy = malloc(size);
  char *path = tmp_path("corrupt.gguf");

  memcpy(copy, model, size);
  memcpy(copy, "GGML", 4);
  write_whole(path, copy, size);
  expect_format_error(path, "not a GGUF file", "bad magic");

  memcpy(copy, model, size);
  uint32_t v2 = 2;
  memcpy(copy + 4, &v2, 4);
  write_whole(path, copy, size);
  expect_format_error(path, "version 2", "version 2");

  memcpy(copy, model, size);
  uint64_t huge = UINT64_C(0x7fffffffffff);
  memcpy(copy + 24, &huge, 8); /* length of the first key */
  write_whole(path, copy, size);
  expect_format_error(path, "length 140737488355327", "huge key length");

  memcpy(copy, model, size);
  memcpy(copy + 16, &huge, 8); /* key count */
  write_whole(path, copy, size);
  expect_format_error(path, "metadata keys", "huge key count");

  /* output.weight: length, name, n_dims, 2 dims, type, then the offset. */
  size_t record = find_tensor_record(model, size, "output.weight");
  CHECK(record > 0, "record of output.weight not found");
  memcpy(copy, model, size);
  uint64_t far = UINT64_C(1) << 40;
  memcpy(copy + record + 8 + 13 + 4 + 16 + 4, &far, 8);
  write_whole(path, copy, size);
  expect_format_error(path, "tensor 'output.weight'", "offset past the end");
  expect_format_error(path, "past the end", "offset past the end");

  memcpy(copy, model, size);
  uint32_t dims5 = 5;
  memcpy(copy + record + 8 + 13, &dims5, 4);
  write_whole(path, copy, size);
  expect_format_error(path, "5 dimensions", "n_dims 5");

  memcpy(copy, model, size);
  uint32_t q4 = 2; /* Q4_0: 64 elements need 2 blocks of 18 bytes */
  memcpy(copy + record + 8 + 13 + 4 + 16, &q4, 4);
  write_whole(path, copy, size);
  asu_gguf *g = NULL;
  asu_error err = {0};
  CHECK(asu_gguf_open(path, &g, &err) == ASU_OK, "Q4_0 tensor listed: %s", err.message);
  if (g) {
    const asu_gguf_tensor *t = asu_gguf_find_tensor(g, "output.weight");
    float *dst = malloc(t->n_elements * sizeof *dst);
    CHECK(asu_gguf_tensor_to_f32(t, dst, t->n_elements, &err) == ASU_ERR_FORMAT, "Q4_0 converted");
    CHECK(strstr(err.message, "Q4_0") != NULL, "message: %s", err.message);
    CHECK(strstr(err.message, "output.weight") != NULL, "message: %s", err.message);
    free(dst);
    asu_gguf_close(g);
  }

  memcpy(copy, model, size);
  uint32_t bad_type = 99;
  memcpy(copy + record + 8 + 13 + 4 + 16, &bad_type, 4);
  write_whole(path, copy, size);
  expect_format_error(path, "unknown GGML type id 99", "unknown type");

  /* The same errors with err == NULL still return the code. */
  CHECK(asu_gguf_open(path, &g, NULL) == ASU_ERR_FORMAT, "NULL error record");
  free(copy);
}

/* Random byte changes in the header, metadata and tensor records: every open either succeeds
   or fails with ASU_ERR_FORMAT, and a file that opens has its tensors inside the file. */
static void test_random_corruption(const unsigned char *model, size_t size) {
  unsigned char *copy = malloc(size);
  char *path = tmp_path("random.gguf");
  srand(42);
  int bad_codes = 0, bad_bounds = 0;
  for (int trial = 0; trial < 300; trial++) {
    memcpy(copy, model, size);
    int changes = 1 + rand() % 4;
    for (int c = 0; c < changes; c++) copy[(size_t)rand() % 14200] = (unsigned char)rand();
    write_whole(path, copy, size);
    asu_gguf *g = NULL;
    asu_error err = {0};
    int rc = asu_gguf_open(path, &g, &err);
    if (rc != ASU_OK && rc != ASU_ERR_FORMAT) bad_codes++;
    for (size_t i = 0; g && i < asu_gguf_tensor_count(g); i++) {
      const asu_gguf_tensor *t = asu_gguf_tensor_at(g, i);
      if (t->data_offset + t->bytes > size) bad_bounds++;
    }
    asu_gguf_close(g);
  }
  CHECK(bad_codes == 0, "%d corrupt files gave a code other than ASU_ERR_FORMAT", bad_codes);
  CHECK(bad_bounds == 0, "%d tensors point past the end of the file", bad_bounds);
  free(copy);
}

/* ---- Hand-built files. ---- */

static void test_built_valid(void) {
  builder *b = calloc(1, sizeof *b);
  put_header(b, 3, 2, 3);
  kv_u32(b, "general.alignment", 64);
  put_str(b, "nested");  /* an array of arrays of strings */
  put_u32(b, ASU_GGUF_ARRAY);
  put_u32(b, ASU_GGUF_ARRAY);
  put_u64(b, 2);
  put_u32(b, ASU_GGUF_STRING);
  put_u64(b, 1);
  put_str(b, "a");
  put_u32(b, ASU_GGUF_STRING);
  put_u64(b, 0);
  put_str(b, "negative");
  put_u32(b, ASU_GGUF_INT32);
  put_u32(b, (uint32_t)-5);
  uint64_t dims[2] = {8, 1};
  tensor_info(b, "half", 1, dims, ASU_TENSOR_F16, 0);
  tensor_info(b, "single", 1, dims, ASU_TENSOR_F32, 64);
  pad_to(b, 64);
  /* 1, -2, smallest subnormal, largest subnormal, +inf, -inf, NaN, -0 */
  const uint16_t halves[8] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e00, 0x8000};
  put(b, halves, sizeof halves);
  pad_to(b, 64);
  const float singles[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  put(b, singles, sizeof singles);

  char *path = tmp_path("valid.gguf");
  write_whole(path, b->data, b->size);
  asu_gguf *g = NULL;
  asu_error err = {0};
  CHECK(asu_gguf_open(path, &g, &err) == ASU_OK, "open: %s", err.message);
  if (g) {
    uint32_t type = 0, v = 0;
    uint64_t count = 0;
    CHECK(asu_gguf_get_array(g, "nested", &type, &count, NULL, NULL) == ASU_OK, "nested array");
    CHECK(type == ASU_GGUF_ARRAY, "nested element type %u", type);
    CHECK(count == 2, "nested count %llu", (unsigned long long)count);
    CHECK(asu_gguf_get_u32(g, "negative", &v, &err) == ASU_ERR_FORMAT, "negative as u32");
    float f = 0;
    CHECK(asu_gguf_get_f32(g, "negative", &f, NULL) == ASU_OK, "int as f32");
    CHECK(f == -5.0f, "int as f32 is %g", f);
    float out[8] = {0};
    const asu_gguf_tensor *t = asu_gguf_find_tensor(g, "half");
    CHECK(t != NULL, "half not found");
    if (t) CHECK(t->data_offset % 64 == 0, "alignment 64");
    if (t) CHECK(asu_gguf_tensor_to_f32(t, out, 8, &err) == ASU_OK, "F16: %s", err.message);
    CHECK(out[0] == 1.0f, "half 1 is %g", out[0]);
    CHECK(out[1] == -2.0f, "half -2 is %g", out[1]);
    CHECK(out[2] == ldexpf(1.0f, -24), "smallest subnormal %g", out[2]);
    CHECK(out[3] == 1023.0f * ldexpf(1.0f, -24), "largest subnormal %g", out[3]);
    CHECK(isinf(out[4]), "+inf is %g", out[4]);
    CHECK(out[4] > 0, "+inf is %g", out[4]);
    CHECK(isinf(out[5]), "-inf is %g", out[5]);
    CHECK(out[5] < 0, "-inf is %g", out[5]);
    CHECK(isnan(out[6]), "NaN");
    CHECK(out[7] == 0.0f, "-0 is %g", out[7]);
    CHECK(signbit(out[7]), "-0 lost its sign");
    t = asu_gguf_find_tensor(g, "single");
    CHECK(t != NULL, "single not found");
    if (t) CHECK(memcmp(t->data, singles, sizeof singles) == 0, "F32 data");
    asu_gguf_close(g);
  }
  free(b);
}

static void test_built_invalid(void) {
  builder *b = calloc(1, sizeof *b);
  uint64_t dims[2] = {8, 1};

  put_header(b, 3, 1, 0);
  tensor_info(b, "t", 1, dims, ASU_TENSOR_F32, 16); /* not a multiple of 32 */
  pad_to(b, 32);
  put(b, (float[16]){0}, 64);
  expect_built_error(b, "not a multiple of the alignment", "unaligned offset");

  b->size = 0;
  put_header(b, 3, 2, 0);
  tensor_info(b, "a", 1, dims, ASU_TENSOR_F32, 0);
  tensor_info(b, "b", 1, (uint64_t[]){16}, ASU_TENSOR_F32, 0);
  pad_to(b, 32);
  put(b, (float[16]){0}, 64);
  expect_built_error(b, "overlap", "overlapping tensors");

  b->size = 0;
  put_header(b, 3, 2, 0);
  tensor_info(b, "a", 1, dims, ASU_TENSOR_F32, 0);
  tensor_info(b, "a", 1, dims, ASU_TENSOR_F32, 32);
  pad_to(b, 32);
  put(b, (float[16]){0}, 64);
  expect_built_error(b, "appears twice", "duplicate tensor");

  b->size = 0;
  put_header(b, 3, 1, 0);
  tensor_info(b, "z", 2, (uint64_t[]){8, 0}, ASU_TENSOR_F32, 0);
  expect_built_error(b, "dimension 1 is zero", "zero dimension");

  b->size = 0;
  put_header(b, 3, 1, 0);
  tensor_info(b, "big", 4, (uint64_t[]){1u << 20, 1u << 20, 1u << 20, 1u << 20}, ASU_TENSOR_F32, 0);
  expect_built_error(b, "overflows", "element count overflow");

  b->size = 0;
  put_header(b, 3, 0, 2);
  kv_u32(b, "k", 1);
  kv_u32(b, "k", 2);
  expect_built_error(b, "key 'k' appears twice", "duplicate key");

  b->size = 0;
  put_header(b, 3, 0, 1);
  kv_u32(b, "general.alignment", 24);
  expect_built_error(b, "power of two", "alignment 24");

  b->size = 0;
  put_header(b, 3, 0, 1);
  put_str(b, "weird");
  put_u32(b, 13);
  put_u32(b, 0);
  expect_built_error(b, "key 'weird'", "unknown value type");

  b->size = 0;
  put_header(b, 3, 0, 1);
  put_str(b, "strings");
  put_u32(b, ASU_GGUF_ARRAY);
  put_u32(b, ASU_GGUF_STRING);
  put_u64(b, 2);
  put_str(b, "ok");
  put_u64(b, 1000); /* second string runs past the end */
  put(b, "abc", 3);
  expect_built_error(b, "key 'strings'", "string array element too long");

  b->size = 0;
  put_header(b, 3, 0, 1);
  put_str(b, "flag");
  put_u32(b, ASU_GGUF_BOOL);
  b->data[b->size++] = 7;
  expect_built_error(b, "not 0 or 1", "bool 7");

  b->size = 0;
  put_header(b, 3, 0, 1);
  put_str(b, "deep");
  for (int i = 0; i < 40; i++) {
    put_u32(b, ASU_GGUF_ARRAY);
    if (i > 0) put_u64(b, 1);
  }
  put_u64(b, 1);
  expect_built_error(b, "nested more than", "deep nesting");

  b->size = 0;
  put_header(b, 3, 0, 1);
  put_str(b, "");
  put_u32(b, ASU_GGUF_UINT8);
  b->data[b->size++] = 1;
  expect_built_error(b, "key at byte offset 24 is empty", "empty key");

  b->size = 0;
  put_header(b, 1, 0, 0);
  expect_built_error(b, "version 1", "version 1");
  free(b);
}

int main(void) {
  const char *shared = getenv("ASU_SHARED_DATA");
  if (!shared) {
    fprintf(stderr, "ASU_SHARED_DATA is not set; run through meson test\n");
    return 1;
  }
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  char model_path[1024];
  snprintf(model_path, sizeof model_path, "%s/models/stories260K.gguf", shared);

  asu_gguf *g = NULL;
  asu_error err = {0};
  int rc = asu_gguf_open(model_path, &g, &err);
  CHECK(rc == ASU_OK, "open %s: %s", model_path, err.message);
  if (g) {
    test_model_metadata(g);
    test_model_getter_errors(g);
    test_model_tensors(g);
    test_write_copy(g);
    asu_gguf_close(g);
  }
  test_write_without_metadata();
  test_write_f16_and_records();

  size_t size = 0;
  unsigned char *model = read_whole(model_path, &size);
  CHECK(model != NULL, "read %s", model_path);
  if (model) {
    test_truncated(model, size);
    test_corrupt_model(model, size);
    test_random_corruption(model, size);
    free(model);
  }
  test_built_valid();
  test_built_invalid();

  CHECK(asu_gguf_open("/nonexistent/model.gguf", &g, &err) == ASU_ERR_IO, "missing file");
  CHECK(strstr(err.message, "/nonexistent/model.gguf") != NULL, "message: %s", err.message);

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
  return TEST_SUMMARY();
}
