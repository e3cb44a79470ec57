/* SentencePiece-style tokenizer: loading from GGUF metadata, piece lookup and decoding.
   Encoding is in tokenizer_encode.c. */
#include "asu_tokenizer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- Piece lookup. ---- */

static uint64_t hash_bytes(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

int32_t asu_tokenizer_lookup(const asu_tokenizer *tok, const char *text, size_t len) {
  for (size_t i = (size_t)hash_bytes(text, len) & tok->slot_mask;; i = (i + 1) & tok->slot_mask) {
    uint32_t slot = tok->slots[i];
    if (slot == 0) return -1;
    uint32_t id = slot - 1;
    if (tok->lens[id] == len && memcmp(asu_tokenizer_piece(tok, id), text, len) == 0) return (int32_t)id;
  }
}

/* Only normal and user-defined pieces take part in matching. As in SentencePiece, control,
   unknown, unused and byte pieces are never produced from text. */
static bool matches_text(const asu_tokenizer *tok, uint32_t id) {
  return tok->types[id] == ASU_TOKEN_NORMAL || tok->types[id] == ASU_TOKEN_USER;
}

static int build_index(asu_tokenizer *tok, asu_error *err) {
  size_t cap = 16;
  while (cap < 2 * (size_t)tok->n_vocab) cap *= 2;
  tok->slots = calloc(cap, sizeof *tok->slots);
  if (!tok->slots) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory indexing the vocabulary");
  tok->slot_mask = cap - 1;
  for (uint32_t id = 0; id < tok->n_vocab; id++) {
    if (!matches_text(tok, id) || tok->lens[id] == 0) continue;
    if (asu_tokenizer_lookup(tok, asu_tokenizer_piece(tok, id), tok->lens[id]) >= 0) continue; /* first wins */
    size_t i = (size_t)hash_bytes(asu_tokenizer_piece(tok, id), tok->lens[id]) & tok->slot_mask;
    while (tok->slots[i] != 0) i = (i + 1) & tok->slot_mask;
    tok->slots[i] = id + 1;
  }
  return ASU_OK;
}

/* Parses a byte piece "<0xXX>" and returns the byte, or -1 for any other piece. */
static int parse_byte_piece(const char *s, size_t len) {
  unsigned value;
  char end;
  if (len != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
  if (sscanf(s + 3, "%2x%c", &value, &end) != 2 || end != '>') return -1;
  return (int)value;
}

static void find_special_ids(asu_tokenizer *tok) {
  for (int b = 0; b < 256; b++) tok->byte_ids[b] = -1;
  tok->unk = -1;
  for (uint32_t id = 0; id < tok->n_vocab; id++) {
    if (tok->types[id] == ASU_TOKEN_BYTE) {
      int b = parse_byte_piece(asu_tokenizer_piece(tok, id), tok->lens[id]);
      if (b >= 0 && tok->byte_ids[b] < 0) tok->byte_ids[b] = (int32_t)id;
    } else if (tok->types[id] == ASU_TOKEN_UNKNOWN && tok->unk < 0) {
      tok->unk = (int32_t)id;
    }
  }
}

/* ---- Loading from GGUF metadata. ---- */

static int load_pieces(asu_tokenizer *tok, const asu_gguf *g, asu_error *err) {
  uint32_t elem_type;
  uint64_t count;
  int rc = asu_gguf_get_array(g, "tokenizer.ggml.tokens", &elem_type, &count, NULL, err);
  if (rc != ASU_OK) return rc;
  if (elem_type != ASU_GGUF_STRING || count == 0 || count > INT32_MAX)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "tokenizer.ggml.tokens must be a non-empty array of strings with at most "
                         "2^31-1 entries");
  tok->n_vocab = (uint32_t)count;
  tok->offsets = malloc(count * sizeof *tok->offsets);
  tok->lens = malloc(count * sizeof *tok->lens);
  if (!tok->offsets || !tok->lens) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");

  size_t total = 0;
  for (uint32_t id = 0; id < tok->n_vocab; id++) {
    const char *s;
    size_t len;
    if ((rc = asu_gguf_get_array_string(g, "tokenizer.ggml.tokens", id, &s, &len, err)) != ASU_OK)
      return rc;
    if (len > UINT32_MAX) return asu_error_set(err, ASU_ERR_FORMAT, "token %" PRIu32 " is too long", id);
    tok->offsets[id] = total;
    tok->lens[id] = (uint32_t)len;
    total += len + 1;
  }
  if (!(tok->blob = malloc(total))) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (uint32_t id = 0; id < tok->n_vocab; id++) {
    const char *s;
    asu_gguf_get_array_string(g, "tokenizer.ggml.tokens", id, &s, NULL, err);
    memcpy(tok->blob + tok->offsets[id], s, tok->lens[id] + 1u);
  }
  return ASU_OK;
}

/* Copies a numeric per-token array (scores, token types) of 4-byte elements. */
static int load_token_array(const asu_gguf *g, const char *key, uint32_t want_type,
                            uint32_t n_vocab, void **out, asu_error *err) {
  uint32_t elem_type;
  uint64_t count;
  const void *data;
  int rc = asu_gguf_get_array(g, key, &elem_type, &count, &data, err);
  if (rc != ASU_OK) return rc;
  if (elem_type != want_type || count != n_vocab)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "%s must be an array of %" PRIu32 " %s values (one per token), but has "
                         "%" PRIu64 " elements of type id %" PRIu32,
                         key, n_vocab, want_type == ASU_GGUF_FLOAT32 ? "float32" : "int32", count,
                         elem_type);
  if (!(*out = malloc((size_t)n_vocab * 4u)))
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  memcpy(*out, data, (size_t)n_vocab * 4u);
  return ASU_OK;
}

/* Without token types, byte pieces are recognised by their text and everything else is normal. */
static int guess_types(asu_tokenizer *tok, asu_error *err) {
  if (!(tok->types = malloc((size_t)tok->n_vocab * sizeof *tok->types)))
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (uint32_t id = 0; id < tok->n_vocab; id++)
    tok->types[id] = parse_byte_piece(asu_tokenizer_piece(tok, id), tok->lens[id]) >= 0 ? ASU_TOKEN_BYTE
                                                                          : ASU_TOKEN_NORMAL;
  return ASU_OK;
}

static int load_special_id(const asu_gguf *g, const char *key, uint32_t n_vocab, int32_t *out,
                           asu_error *err) {
  *out = -1;
  if (!asu_gguf_has_key(g, key)) return ASU_OK;
  uint32_t id;
  int rc = asu_gguf_get_u32(g, key, &id, err);
  if (rc != ASU_OK) return rc;
  if (id >= n_vocab)
    return asu_error_set(err, ASU_ERR_FORMAT, "%s is %" PRIu32 ", outside the vocabulary of %" PRIu32,
                         key, id, n_vocab);
  *out = (int32_t)id;
  return ASU_OK;
}

static int check_model(const asu_gguf *g, asu_error *err) {
  const char *model;
  size_t len;
  if (!asu_gguf_has_key(g, "tokenizer.ggml.model")) return ASU_OK;
  int rc = asu_gguf_get_string(g, "tokenizer.ggml.model", &model, &len, err);
  if (rc != ASU_OK) return rc;
  if (strcmp(model, "llama") != 0)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "tokenizer.ggml.model is '%s'; only the SentencePiece tokenizer "
                         "('llama') is supported",
                         model);
  return ASU_OK;
}

static int load(asu_tokenizer *tok, const asu_gguf *g, asu_error *err) {
  int rc = check_model(g, err);
  if (rc == ASU_OK) rc = load_pieces(tok, g, err);
  if (rc == ASU_OK)
    rc = load_token_array(g, "tokenizer.ggml.scores", ASU_GGUF_FLOAT32, tok->n_vocab,
                          (void **)&tok->scores, err);
  if (rc == ASU_OK && asu_gguf_has_key(g, "tokenizer.ggml.token_type"))
    rc = load_token_array(g, "tokenizer.ggml.token_type", ASU_GGUF_INT32, tok->n_vocab,
                          (void **)&tok->types, err);
  else if (rc == ASU_OK)
    rc = guess_types(tok, err);
  if (rc == ASU_OK) rc = load_special_id(g, "tokenizer.ggml.bos_token_id", tok->n_vocab, &tok->bos, err);
  if (rc == ASU_OK) rc = load_special_id(g, "tokenizer.ggml.eos_token_id", tok->n_vocab, &tok->eos, err);
  if (rc == ASU_OK) rc = build_index(tok, err);
  if (rc == ASU_OK) find_special_ids(tok);
  return rc;
}

int asu_tokenizer_from_gguf(const asu_gguf *g, asu_tokenizer **out, asu_error *err) {
  if (!out) return asu_error_set(err, ASU_ERR_INVALID, "asu_tokenizer_from_gguf: out is NULL");
  *out = NULL;
  if (!g) return asu_error_set(err, ASU_ERR_INVALID, "asu_tokenizer_from_gguf: model is NULL");
  asu_tokenizer *tok = calloc(1, sizeof *tok);
  if (!tok) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  asu_error local = {0};
  int rc = load(tok, g, &local);
  if (rc != ASU_OK) {
    asu_error_wrap(&local, "loading the tokenizer: ");
    if (err) *err = local;
    asu_tokenizer_destroy(tok);
    return rc;
  }
  *out = tok;
  return ASU_OK;
}

void asu_tokenizer_destroy(asu_tokenizer *tok) {
  if (!tok) return;
  free(tok->blob);
  free(tok->offsets);
  free(tok->lens);
  free(tok->scores);
  free(tok->types);
  free(tok->slots);
  free(tok);
}

uint32_t asu_tokenizer_vocab_size(const asu_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
int32_t asu_tokenizer_bos(const asu_tokenizer *tok) { return tok ? tok->bos : -1; }
int32_t asu_tokenizer_eos(const asu_tokenizer *tok) { return tok ? tok->eos : -1; }

/* ---- Decoding. ---- */

/* Returns the decoded length of a text piece: each U+2581 becomes one space. */
static size_t unescaped_length(const char *text, size_t len) {
  size_t n = len;
  for (size_t i = 0; i + SPACE_MARKER_LEN <= len; i++)
    if (memcmp(text + i, SPACE_MARKER, SPACE_MARKER_LEN) == 0) n -= SPACE_MARKER_LEN - 1;
  return n;
}

/* Copies text to dst, turning each U+2581 into a space and dropping the first `skip` bytes of
   the output. */
static void unescape_spaces(const char *text, size_t len, size_t skip, char *dst) {
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    char c;
    if (len - i >= SPACE_MARKER_LEN && memcmp(text + i, SPACE_MARKER, SPACE_MARKER_LEN) == 0) {
      c = ' ';
      i += SPACE_MARKER_LEN;
    } else {
      c = text[i++];
    }
    if (skip > 0) skip--;
    else dst[n++] = c;
  }
  dst[n] = '\0';
}

int asu_tokenizer_decode(const asu_tokenizer *tok, int32_t prev, int32_t id, char *buf,
                         size_t cap) {
  if (!tok || !buf || cap == 0) return ASU_ERR_INVALID;
  buf[0] = '\0';
  if (id < 0 || (uint32_t)id >= tok->n_vocab) return ASU_ERR_INVALID;

  const char *text = asu_tokenizer_piece(tok, (uint32_t)id);
  size_t len = tok->lens[id];
  int32_t type = tok->types[id];
  if (type == ASU_TOKEN_CONTROL || type == ASU_TOKEN_UNUSED) return 0;
  if (type == ASU_TOKEN_UNKNOWN) {
    text = " \xE2\x81\x87 "; /* SentencePiece's default surface for unknown pieces */
    len = strlen(text);
  }
  int byte = type == ASU_TOKEN_BYTE ? parse_byte_piece(text, len) : -1;
  if (byte >= 0) {
    if (cap < 2) return ASU_ERR_LIMIT;
    buf[0] = (char)byte;
    buf[1] = '\0';
    return 1;
  }

  size_t n = unescaped_length(text, len);
  bool leading_space = n > 0 && (text[0] == ' ' || (len >= SPACE_MARKER_LEN &&
                                                    memcmp(text, SPACE_MARKER, SPACE_MARKER_LEN) == 0));
  size_t skip = prev == tok->bos && leading_space ? 1 : 0;
  if (n - skip + 1 > cap || n - skip > INT32_MAX) return ASU_ERR_LIMIT;
  unescape_spaces(text, len, skip, buf);
  return (int)(n - skip);
}
