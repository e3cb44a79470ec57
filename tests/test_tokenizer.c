/* Tokenizer: the reference ids of a TOFU pair for stories260K, round trips, byte fallback, and
   agreement with a direct O(n^2) implementation of the llama2.c merge loop. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_gguf.h"
#include "asu_tokenizer.h"
#include "test_util.h"

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  if (s) s[n] = '\0';
  fclose(f);
  return s;
}

/* ---- Golden ids. ---- */

static void test_golden(const asu_tokenizer *tok, const char *shared) {
  char path[1024];
  snprintf(path, sizeof path, "%s/models/stories260K.golden.json", shared);
  char *json = read_text(path);
  CHECK(json != NULL, "read %s", path);
  cJSON *root = json ? cJSON_Parse(json) : NULL;
  CHECK(root != NULL, "parse %s", path);
  if (!root) {
    free(json);
    return;
  }
  const char *text = cJSON_GetObjectItem(root, "text")->valuestring;
  const cJSON *expected = cJSON_GetObjectItem(root, "input_ids");

  /* text is "Question: Q\nAnswer: A": the prompt ends after "Answer:", the rest is " A". */
  const char *split = strstr(text, "\nAnswer:");
  CHECK(split != NULL, "golden text has no answer");
  size_t prompt_len = (size_t)(split - text) + strlen("\nAnswer:");
  int32_t *ids = malloc(sizeof *ids);
  size_t n = 0;
  ids[n++] = asu_tokenizer_bos(tok);
  asu_error err = {0};
  CHECK(asu_tokenizer_encode(tok, text, prompt_len, true, &ids, &n, &err) == ASU_OK, "prompt: %s",
        err.message);
  const char *answer = text + prompt_len;
  CHECK(asu_tokenizer_encode(tok, answer, strlen(answer), false, &ids, &n, &err) == ASU_OK,
        "answer: %s", err.message);
  ids = realloc(ids, (n + 1) * sizeof *ids);
  ids[n++] = asu_tokenizer_eos(tok);

  size_t want = (size_t)cJSON_GetArraySize(expected);
  CHECK(n == want, "golden: %zu ids, expected %zu", n, want);
  size_t mismatches = 0;
  for (size_t i = 0; i < n && i < want; i++) {
    int32_t e = (int32_t)cJSON_GetArrayItem(expected, (int)i)->valuedouble;
    if (ids[i] != e && mismatches++ < 5) CHECK(ids[i] == e, "id %zu is %d, expected %d", i, ids[i], e);
  }
  CHECK(mismatches == 0, "%zu ids differ from the golden ids", mismatches);
  free(ids);
  cJSON_Delete(root);
  free(json);
}

/* ---- Round trips. ---- */

/* Decodes ids into one malloc'd string, as a streaming generator would. */
static char *decode_all(const asu_tokenizer *tok, int32_t prev, const int32_t *ids, size_t n) {
  size_t cap = 64 * n + 1, len = 0;
  char *out = malloc(cap);
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    int r = asu_tokenizer_decode(tok, prev, ids[i], out + len, cap - len);
    if (r < 0) {
      CHECK(r >= 0, "decode id %d: %d", ids[i], r);
      break;
    }
    len += (size_t)r;
    prev = ids[i];
  }
  return out;
}

static void check_round_trip(const asu_tokenizer *tok, const char *text, bool space_prefix) {
  int32_t *ids = NULL;
  size_t n = 0;
  asu_error err = {0};
  int rc = asu_tokenizer_encode(tok, text, strlen(text), space_prefix, &ids, &n, &err);
  CHECK(rc == ASU_OK, "encode \"%s\": %s", text, err.message);
  /* With the space prefix, decoding after BOS drops the marker again. */
  char *back = decode_all(tok, space_prefix ? asu_tokenizer_bos(tok) : -1, ids, n);
  CHECK(strcmp(back, text) == 0, "round trip (prefix %d): \"%s\" came back as \"%s\"", space_prefix,
        text, back);
  free(back);
  free(ids);
}

static void test_round_trips(const asu_tokenizer *tok) {
  static const char *texts[] = {
      "Hello world",
      "Once upon a time, there was a little girl named Lily.",
      "caf\xC3\xA9 na\xC3\xAFve \xC3\xBC" "ber",           /* é, ï, ü */
      "\xE4\xB8\xAD\xE6\x96\x87",                          /* 中文 */
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x8E\x89!",           /* two emoji */
      "line one\nline two\n\nend\n",
      "a  b   c    d",
      "  leading and trailing  ",
      " ",
      "tab\there\r\nwindows",
      "invalid \xFF\xFE utf-8 \xC3 and \xE4\xB8",          /* bytes outside valid UTF-8 */
      "Question: What is 2+2?\nAnswer: 4",
      "",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    check_round_trip(tok, texts[i], true);
    check_round_trip(tok, texts[i], false);
  }
}

static void test_byte_fallback(const asu_tokenizer *tok) {
  int32_t *ids = NULL;
  size_t n = 0;
  CHECK(asu_tokenizer_encode(tok, "\xE4\xB8\xAD", 3, false, &ids, &n, NULL) == ASU_OK, "encode");
  /* The vocabulary has no CJK pieces: three byte pieces <0xE4> <0xB8> <0xAD> (ids 3 + byte). */
  CHECK(n == 3, "%zu ids", n);
  if (n == 3) {
    CHECK(ids[0] == 3 + 0xE4, "first byte id %d", ids[0]);
    CHECK(ids[1] == 3 + 0xB8, "second byte id %d", ids[1]);
    CHECK(ids[2] == 3 + 0xAD, "third byte id %d", ids[2]);
    char buf[8];
    CHECK(asu_tokenizer_decode(tok, -1, ids[0], buf, sizeof buf) == 1, "byte piece length");
    CHECK((unsigned char)buf[0] == 0xE4, "byte piece decodes to 0x%02x", (unsigned char)buf[0]);
  }
  free(ids);

  /* Appending keeps earlier ids. */
  ids = NULL;
  n = 0;
  CHECK(asu_tokenizer_encode(tok, "a", 1, false, &ids, &n, NULL) == ASU_OK, "encode a");
  CHECK(n == 1, "\"a\" gives %zu ids", n);
  int32_t first = ids[0];
  CHECK(asu_tokenizer_encode(tok, "\n", 1, false, &ids, &n, NULL) == ASU_OK, "encode newline");
  CHECK(n == 2, "%zu ids after appending", n);
  CHECK(ids[0] == first, "first id changed to %d", ids[0]);
  CHECK(ids[1] == 3 + '\n', "newline id %d", ids[1]);
  free(ids);
}

static void test_decode_edges(const asu_tokenizer *tok) {
  char buf[64];
  int32_t bos = asu_tokenizer_bos(tok), eos = asu_tokenizer_eos(tok);
  CHECK(asu_tokenizer_decode(tok, -1, bos, buf, sizeof buf) == 0, "BOS is empty");
  CHECK(buf[0] == '\0', "BOS text is not terminated");
  CHECK(asu_tokenizer_decode(tok, -1, eos, buf, sizeof buf) == 0, "EOS is empty");
  CHECK(asu_tokenizer_decode(tok, -1, 512, buf, sizeof buf) == ASU_ERR_INVALID, "id past the end");
  CHECK(asu_tokenizer_decode(tok, -1, -3, buf, sizeof buf) == ASU_ERR_INVALID, "negative id");

  int32_t *ids = NULL;
  size_t n = 0;
  CHECK(asu_tokenizer_encode(tok, "the", 3, true, &ids, &n, NULL) == ASU_OK, "encode the");
  CHECK(n >= 1, "\"the\" gives no ids");
  int len = asu_tokenizer_decode(tok, -1, ids[0], buf, sizeof buf);
  CHECK(len > 0, "decode returned %d", len);
  CHECK(buf[0] == ' ', "without BOS the leading space stays: \"%s\"", buf);
  CHECK(asu_tokenizer_decode(tok, bos, ids[0], buf, sizeof buf) == len - 1, "length after BOS");
  CHECK(buf[0] != ' ', "after BOS the leading space goes: \"%s\"", buf);
  CHECK(asu_tokenizer_decode(tok, -1, ids[0], buf, 1) == ASU_ERR_LIMIT, "small buffer");
  free(ids);
}

/* ---- Reference: the llama2.c merge loop, rescanning every pair after each merge. ---- */

typedef struct reference {
  const asu_gguf *g;
  uint32_t n_vocab;
  const float *scores;
  const int32_t *types;
} reference;

static int32_t ref_lookup(const reference *r, const char *s, size_t len) {
  for (uint32_t id = 0; id < r->n_vocab; id++) {
    const char *p;
    size_t plen;
    asu_gguf_get_array_string(r->g, "tokenizer.ggml.tokens", id, &p, &plen, NULL);
    if ((r->types[id] == 1 || r->types[id] == 4) && plen == len && memcmp(p, s, len) == 0)
      return (int32_t)id;
  }
  return -1;
}

static size_t ref_encode(const reference *r, const char *text, int32_t *out) {
  /* Normalise: leading marker, spaces to U+2581. */
  char norm[4096];
  size_t len = 0;
  memcpy(norm, "\xE2\x96\x81", 3);
  len = 3;
  for (const char *p = text; *p; p++) {
    if (*p == ' ') {
      memcpy(norm + len, "\xE2\x96\x81", 3);
      len += 3;
    } else {
      norm[len++] = *p;
    }
  }

  /* Split into characters, with byte pieces (never merged) for characters without a piece. */
  size_t start[1024], size[1024], n = 0;
  int32_t id[1024];
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)norm[i];
    size_t clen = 1; /* the generated texts are valid UTF-8 */
    if (c >= 0xF0) clen = 4;
    else if (c >= 0xE0) clen = 3;
    else if (c >= 0xC0) clen = 2;
    int32_t found = ref_lookup(r, norm + i, clen);
    if (found >= 0) {
      start[n] = i, size[n] = clen, id[n++] = found;
    } else {
      for (size_t b = 0; b < clen; b++)
        start[n] = i + b, size[n] = 0, id[n++] = 3 + (unsigned char)norm[i + b];
    }
    i += clen;
  }

  /* Merge the best-scoring pair, leftmost on ties, until no pair is a piece. */
  for (;;) {
    float best = -1e30f;
    size_t best_i = SIZE_MAX;
    int32_t best_id = -1;
    for (size_t i = 0; i + 1 < n; i++) {
      if (size[i] == 0 || size[i + 1] == 0) continue;
      int32_t m = ref_lookup(r, norm + start[i], size[i] + size[i + 1]);
      if (m >= 0 && r->scores[m] > best) best = r->scores[m], best_i = i, best_id = m;
    }
    if (best_i == SIZE_MAX) break;

    id[best_i] = best_id;
    size[best_i] += size[best_i + 1];
    memmove(&start[best_i + 1], &start[best_i + 2], (n - best_i - 2) * sizeof *start);
    memmove(&size[best_i + 1], &size[best_i + 2], (n - best_i - 2) * sizeof *size);
    memmove(&id[best_i + 1], &id[best_i + 2], (n - best_i - 2) * sizeof *id);
    n--;
  }
  memcpy(out, id, n * sizeof *id);
  return n;
}

static void test_against_reference(const asu_tokenizer *tok, const asu_gguf *g) {
  reference r = {.g = g};
  uint32_t type;
  uint64_t count;
  asu_gguf_get_array(g, "tokenizer.ggml.scores", &type, &count, (const void **)&r.scores, NULL);
  asu_gguf_get_array(g, "tokenizer.ggml.token_type", &type, &count, (const void **)&r.types, NULL);
  r.n_vocab = (uint32_t)count;

  static const char alphabet[] = "aeiou tnsrhldTHE.,!?\n'";
  srand(1234);
  for (int trial = 0; trial < 200; trial++) {
    char text[80];
    size_t len = 1 + (size_t)(rand() % 60);
    for (size_t i = 0; i < len; i++) text[i] = alphabet[rand() % (int)(sizeof alphabet - 1)];
    text[len] = '\0';
    int32_t want[1024];
    size_t n_want = ref_encode(&r, text, want);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(asu_tokenizer_encode(tok, text, len, true, &ids, &n, NULL) == ASU_OK, "encode");
    CHECK(n == n_want, "\"%s\": %zu ids, reference %zu ids", text, n, n_want);
    if (n == n_want) CHECK(memcmp(ids, want, n * sizeof *ids) == 0, "\"%s\": ids differ", text);
    free(ids);
  }
}

static void test_long_text(const asu_tokenizer *tok) {
  const char *sentence = "Once upon a time, a little dog named Max ran in the park. ";
  size_t reps = 4000, slen = strlen(sentence);
  char *text = malloc(reps * slen + 1);
  for (size_t i = 0; i < reps; i++) memcpy(text + i * slen, sentence, slen);
  text[reps * slen] = '\0';
  int32_t *ids = NULL;
  size_t n = 0;
  CHECK(asu_tokenizer_encode(tok, text, reps * slen, true, &ids, &n, NULL) == ASU_OK, "long text");
  char *back = decode_all(tok, asu_tokenizer_bos(tok), ids, n);
  CHECK(strcmp(back, text) == 0, "long text round trip");
  free(back);
  free(ids);
  free(text);
}

int main(void) {
  const char *shared = getenv("ASU_SHARED_DATA");
  if (!shared) {
    fprintf(stderr, "ASU_SHARED_DATA is not set; run through meson test\n");
    return 1;
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared);
  asu_gguf *g = NULL;
  asu_error err = {0};
  CHECK(asu_gguf_open(path, &g, &err) == ASU_OK, "open: %s", err.message);
  asu_tokenizer *tok = NULL;
  if (g) CHECK(asu_tokenizer_from_gguf(g, &tok, &err) == ASU_OK, "tokenizer: %s", err.message);
  if (tok) {
    CHECK(asu_tokenizer_vocab_size(tok) == 512, "vocab %u", asu_tokenizer_vocab_size(tok));
    CHECK(asu_tokenizer_bos(tok) == 1, "BOS %d", asu_tokenizer_bos(tok));
    CHECK(asu_tokenizer_eos(tok) == 2, "EOS %d", asu_tokenizer_eos(tok));
    test_golden(tok, shared);
    test_round_trips(tok);
    test_byte_fallback(tok);
    test_decode_edges(tok);
    test_against_reference(tok, g);
    test_long_text(tok);
    asu_tokenizer_destroy(tok);
  }
  asu_gguf_close(g);
  return TEST_SUMMARY();
}
