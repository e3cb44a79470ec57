/* The Llama-shaped benchmark model: random weights and a synthetic SentencePiece-style
   vocabulary (<unk>, <s>, </s>, the 256 byte pieces <0x00>..<0xFF>, then made-up pieces), written
   as GGUF with F32 or F16 tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_gguf.h"
#include "bench.h"

/* Token types of tokenizer.ggml.token_type, as SentencePiece numbers them. */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_BYTE = 6 };
enum { FIRST_MADE_UP = 3 + 256, PIECE_BYTES = 16 };

typedef struct vocab {
  uint32_t n;
  const char **pieces;
  char *text;  /* PIECE_BYTES per piece */
  float *scores;
  int32_t *types;
} vocab;

static void vocab_free(vocab *v) {
  free(v->pieces);
  free(v->text);
  free(v->scores);
  free(v->types);
}

/* Made-up piece k: lower-case letters numbering k / 2 (a, b, .., z, aa, ab, ..), with the
   word-start marker U+2581 in front when k is even. All distinct. */
static void made_up_piece(uint32_t k, char *out) {
  char letters[8];
  int len = 0;
  for (uint32_t x = k / 2 + 1; x > 0 && len < 7; x = (x - 1) / 26)
    letters[len++] = (char)('a' + (x - 1) % 26);
  int at = 0;
  if (k % 2 == 0) at = snprintf(out, PIECE_BYTES, "\xe2\x96\x81");
  while (len > 0) out[at++] = letters[--len];
  out[at] = '\0';
}

static int make_vocab(uint32_t n, vocab *v, asu_error *err) {
  if (n < FIRST_MADE_UP + 1)
    return asu_error_set(err, ASU_ERR_INVALID, "a vocabulary of %u pieces is smaller than its "
                         "%u special and byte pieces", n, FIRST_MADE_UP);
  v->n = n;
  v->pieces = malloc(n * sizeof *v->pieces);
  v->text = malloc((size_t)n * PIECE_BYTES);
  v->scores = malloc(n * sizeof *v->scores);
  v->types = malloc(n * sizeof *v->types);
  if (!v->pieces || !v->text || !v->scores || !v->types)
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory for the vocabulary");
  for (uint32_t id = 0; id < n; id++) {
    char *piece = v->text + (size_t)id * PIECE_BYTES;
    v->pieces[id] = piece;
    v->scores[id] = 0.0f;
    if (id < 3) {
      static const char *const special[3] = {"<unk>", "<s>", "</s>"};
      snprintf(piece, PIECE_BYTES, "%s", special[id]);
      v->types[id] = id == 0 ? TOKEN_UNKNOWN : TOKEN_CONTROL;
    } else if (id < FIRST_MADE_UP) {
      snprintf(piece, PIECE_BYTES, "<0x%02X>", id - 3);
      v->types[id] = TOKEN_BYTE;
    } else {
      made_up_piece(id - FIRST_MADE_UP, piece);
      v->scores[id] = -(float)(id - FIRST_MADE_UP);
      v->types[id] = TOKEN_NORMAL;
    }
  }
  return ASU_OK;
}

/* ---- Metadata. ---- */

enum { N_KVS = 17 };

static void fill_kvs(const bench_llama_shape *s, const vocab *v, asu_gguf_out_kv *kv) {
  const asu_gguf_out_kv list[N_KVS] = {
      {.key = "general.architecture", .type = ASU_GGUF_STRING, .value.str = "llama"},
      {.key = "general.name", .type = ASU_GGUF_STRING, .value.str = "asu-bench random llama"},
      {.key = "llama.context_length", .type = ASU_GGUF_UINT32, .value.u32 = s->context_length},
      {.key = "llama.embedding_length", .type = ASU_GGUF_UINT32, .value.u32 = s->dim},
      {.key = "llama.block_count", .type = ASU_GGUF_UINT32, .value.u32 = s->n_layers},
      {.key = "llama.feed_forward_length", .type = ASU_GGUF_UINT32, .value.u32 = s->ffn_dim},
      {.key = "llama.attention.head_count", .type = ASU_GGUF_UINT32, .value.u32 = s->n_head},
      {.key = "llama.attention.head_count_kv", .type = ASU_GGUF_UINT32,
       .value.u32 = s->n_kv_head},
      {.key = "llama.rope.dimension_count", .type = ASU_GGUF_UINT32,
       .value.u32 = s->dim / s->n_head},
      {.key = "llama.attention.layer_norm_rms_epsilon", .type = ASU_GGUF_FLOAT32,
       .value.f32 = 1e-5f},
      {.key = "llama.rope.freq_base", .type = ASU_GGUF_FLOAT32, .value.f32 = 10000.0f},
      {.key = "tokenizer.ggml.model", .type = ASU_GGUF_STRING, .value.str = "llama"},
      {.key = "tokenizer.ggml.tokens", .type = ASU_GGUF_ARRAY, .array_type = ASU_GGUF_STRING,
       .count = v->n, .array = v->pieces},
      {.key = "tokenizer.ggml.scores", .type = ASU_GGUF_ARRAY, .array_type = ASU_GGUF_FLOAT32,
       .count = v->n, .array = v->scores},
      {.key = "tokenizer.ggml.token_type", .type = ASU_GGUF_ARRAY,
       .array_type = ASU_GGUF_INT32, .count = v->n, .array = v->types},
      {.key = "tokenizer.ggml.bos_token_id", .type = ASU_GGUF_UINT32, .value.u32 = 1},
      {.key = "tokenizer.ggml.eos_token_id", .type = ASU_GGUF_UINT32, .value.u32 = 2},
  };
  memcpy(kv, list, sizeof list);
}

/* ---- Tensors. ---- */

/* GGUF names of a block's tensors, with their input and output widths (0 outputs: a norm). */
typedef struct layer_tensor {
  const char *name;
  uint32_t in, out;
} layer_tensor;

enum { PER_LAYER = 9 };

static void layer_tensors(const bench_llama_shape *s, layer_tensor *t) {
  uint32_t kv = s->n_kv_head * (s->dim / s->n_head);
  const layer_tensor list[PER_LAYER] = {
      {"attn_norm", s->dim, 0}, {"attn_q", s->dim, s->dim}, {"attn_k", s->dim, kv},
      {"attn_v", s->dim, kv}, {"attn_output", s->dim, s->dim}, {"ffn_norm", s->dim, 0},
      {"ffn_gate", s->dim, s->ffn_dim}, {"ffn_up", s->dim, s->ffn_dim},
      {"ffn_down", s->ffn_dim, s->dim},
  };
  memcpy(t, list, sizeof list);
}

typedef struct tensor_set {
  size_t count;
  asu_gguf_out_tensor *out;
  char (*names)[48];
  float **data;
} tensor_set;

static void tensor_set_free(tensor_set *t) {
  for (size_t i = 0; t->data && i < t->count; i++) free(t->data[i]);
  free(t->data);
  free(t->out);
  free(t->names);
}

/* Adds a tensor: a norm weight of ones (out == 0) or an out x in matrix uniform in
   +-1/sqrt(in), which keeps activations near unit size. */
static int add_tensor(tensor_set *t, const char *name, uint32_t in, uint32_t out, uint32_t type,
                      asu_error *err) {
  size_t i = t->count, n = (size_t)in * (out ? out : 1);
  float *data = out ? bench_host_floats(n, 1.0f / sqrtf((float)in), 1000 + i) : malloc(n * 4);
  if (!data) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory for tensor '%s'", name);
  if (!out)
    for (size_t j = 0; j < n; j++) data[j] = 1.0f;
  t->data[i] = data;
  snprintf(t->names[i], sizeof t->names[i], "%s", name);
  t->out[i] = (asu_gguf_out_tensor){.name = t->names[i], .n_dims = out ? 2 : 1,
                                    .dims = {in, out ? out : 1, 1, 1}, .data = data, .type = type};
  t->count++;
  return ASU_OK;
}

static int make_tensors(const bench_llama_shape *s, uint32_t type, tensor_set *t,
                        asu_error *err) {
  size_t cap = 3 + (size_t)PER_LAYER * s->n_layers;
  t->out = calloc(cap, sizeof *t->out);
  t->names = calloc(cap, sizeof *t->names);
  t->data = calloc(cap, sizeof *t->data);
  if (!t->out || !t->names || !t->data) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  int rc = add_tensor(t, "token_embd.weight", s->dim, s->vocab, type, err);
  if (!rc) rc = add_tensor(t, "output_norm.weight", s->dim, 0, type, err);
  if (!rc) rc = add_tensor(t, "output.weight", s->dim, s->vocab, type, err);
  layer_tensor lt[PER_LAYER];
  layer_tensors(s, lt);
  for (uint32_t l = 0; l < s->n_layers && !rc; l++)
    for (int w = 0; w < PER_LAYER && !rc; w++) {
      char name[48];
      snprintf(name, sizeof name, "blk.%u.%s.weight", l, lt[w].name);
      rc = add_tensor(t, name, lt[w].in, lt[w].out, type, err);
    }
  return rc;
}

int bench_write_llama(const char *path, const bench_llama_shape *shape, uint32_t tensor_type,
                      asu_error *err) {
  vocab v = {0};
  tensor_set t = {0};
  asu_gguf_out_kv kvs[N_KVS];
  int rc = make_vocab(shape->vocab, &v, err);
  if (!rc) rc = make_tensors(shape, tensor_type, &t, err);
  if (!rc) {
    fill_kvs(shape, &v, kvs);
    rc = asu_gguf_write_kv(path, kvs, N_KVS, t.out, t.count, err);
  }
  tensor_set_free(&t);
  vocab_free(&v);
  return rc;
}
