/* SentencePiece-style tokenizer read from GGUF metadata (tokenizer.ggml.tokens, .scores,
   .token_type, .bos_token_id, .eos_token_id): spaces become U+2581, text is split into UTF-8
   characters (unknown ones fall back to <0xXX> byte pieces), then the adjacent pair whose merge
   is in the vocabulary with the highest score is merged until none is. */
#ifndef ASU_TOKENIZER_H
#define ASU_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asu_error.h"
#include "asu_gguf.h"

typedef struct asu_tokenizer asu_tokenizer;

int asu_tokenizer_from_gguf(const asu_gguf *g, asu_tokenizer **out, asu_error *err);
void asu_tokenizer_destroy(asu_tokenizer *tok);

uint32_t asu_tokenizer_vocab_size(const asu_tokenizer *tok);
int32_t asu_tokenizer_bos(const asu_tokenizer *tok);
int32_t asu_tokenizer_eos(const asu_tokenizer *tok);

/* Encodes len bytes of UTF-8 text. space_prefix prepends the U+2581 marker (SentencePiece's dummy
   prefix) when the text is not empty. Appends to *ids (realloc'd; *n is the count so far). */
int asu_tokenizer_encode(const asu_tokenizer *tok, const char *text, size_t len, bool space_prefix,
                         int32_t **ids, size_t *n, asu_error *err);

/* Writes the text of token id into buf (NUL-terminated, at most cap bytes) and returns its length,
   or a negative asu_status. Byte pieces give their byte; U+2581 becomes a space; a leading space
   is dropped when prev is BOS, as SentencePiece decoding does; control tokens give "". */
int asu_tokenizer_decode(const asu_tokenizer *tok, int32_t prev, int32_t id, char *buf,
                         size_t cap);

#endif
