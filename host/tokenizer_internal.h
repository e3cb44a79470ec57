/* Tokenizer internals shared by loading and decoding (tokenizer.c) and encoding
   (tokenizer_encode.c). */
#ifndef ASU_TOKENIZER_INTERNAL_H
#define ASU_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asu_tokenizer.h"

/* GGUF token types (tokenizer.ggml.token_type, as llama.cpp defines them). */
enum {
  ASU_TOKEN_NORMAL = 1,
  ASU_TOKEN_UNKNOWN = 2,
  ASU_TOKEN_CONTROL = 3,
  ASU_TOKEN_USER = 4,
  ASU_TOKEN_UNUSED = 5,
  ASU_TOKEN_BYTE = 6,
};

#define SPACE_MARKER "\xE2\x96\x81" /* U+2581, SentencePiece's space */
#define SPACE_MARKER_LEN 3

struct asu_tokenizer {
  uint32_t n_vocab;
  char *blob;      /* every piece, NUL-terminated, back to back */
  size_t *offsets; /* piece i starts at blob + offsets[i] */
  uint32_t *lens;
  float *scores;
  int32_t *types;
  int32_t bos, eos, unk; /* -1 when the vocabulary has none */
  int32_t byte_ids[256]; /* id of the <0xXX> piece for each byte, or -1 */
  uint32_t *slots;       /* open-addressing hash of text pieces: id + 1, 0 when empty */
  size_t slot_mask;
};

static inline const char *asu_tokenizer_piece(const asu_tokenizer *tok, uint32_t id) {
  return tok->blob + tok->offsets[id];
}

/* Returns the id of the text piece equal to the len bytes at text, or -1. */
int32_t asu_tokenizer_lookup(const asu_tokenizer *tok, const char *text, size_t len);

#endif
