/* Batched greedy generation against asu_generate, one prompt at a time, on the shared model:
   prompts of different lengths (the empty one included) in more than one group, with and
   without an adapter, and a callback that stops one prompt early. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "shared_model.h"
#include "test_util.h"

#define PROMPTS 37
#define MAX_TOKENS 45

typedef struct texts {
  char text[PROMPTS][2048];
  size_t len[PROMPTS];
  size_t stop_index, stop_after; /* the callback stops stop_index after stop_after tokens */
  size_t tokens[PROMPTS];
} texts;

static int append_to(texts *t, size_t i, const char *piece, size_t len) {
  if (i >= PROMPTS || t->len[i] + len >= sizeof t->text[i]) return 1;
  memcpy(t->text[i] + t->len[i], piece, len);
  t->len[i] += len;
  t->text[i][t->len[i]] = '\0';
  return ++t->tokens[i] == t->stop_after && i == t->stop_index;
}

static int batch_piece(void *user, size_t index, int32_t token, const char *piece, size_t len) {
  (void)token;
  return append_to(user, index, piece, len);
}

typedef struct single {
  texts *t;
  size_t index;
} single;

static int single_piece(void *user, int32_t token, const char *piece, size_t len) {
  (void)token;
  single *s = user;
  return append_to(s->t, s->index, piece, len);
}

/* Prompts of 0 to about 60 words: story openings and TOFU-style questions. */
static void make_prompts(char prompts[PROMPTS][512]) {
  static const char *words[] = {"Once", "upon", "a", "time", "there", "was", "a", "little",
                                "girl", "named", "Lily", "who", "loved", "the", "big", "tree"};
  for (size_t i = 0; i < PROMPTS; i++) {
    size_t n = (i * 7) % 61, len = 0;
    prompts[i][0] = '\0';
    if (i % 5 == 1) len = (size_t)snprintf(prompts[i], 512, "Question: Who wrote book %zu?\nAnswer:", i);
    for (size_t w = 0; w < n && len < 480; w++)
      len += (size_t)snprintf(prompts[i] + len, 512 - len, "%s%s", len ? " " : "", words[(w + i) % 16]);
  }
}

static void compare(asu_model *m, const asu_lora *lora, const char *what) {
  static char prompts[PROMPTS][512];
  static texts alone, together;
  make_prompts(prompts);
  const char *list[PROMPTS];
  memset(&alone, 0, sizeof alone);
  memset(&together, 0, sizeof together);
  alone.stop_index = together.stop_index = 3;
  alone.stop_after = together.stop_after = 5;
  asu_sampling greedy = {.max_tokens = MAX_TOKENS, .top_p = 1.0f};
  asu_error err;
  for (size_t i = 0; i < PROMPTS; i++) {
    list[i] = prompts[i];
    single s = {&alone, i};
    int rc = asu_generate(m, lora, prompts[i], &greedy, single_piece, &s, &err);
    CHECK(rc == ASU_OK, "%s: generate prompt %zu: %s", what, i, err.message);
  }
  int rc = asu_generate_greedy_batch(m, lora, list, PROMPTS, MAX_TOKENS, batch_piece, &together,
                                     &err);
  CHECK(rc == ASU_OK, "%s: batch: %s", what, err.message);
  size_t full_length = 0;
  for (size_t i = 0; i < PROMPTS; i++) {
    CHECK(strcmp(alone.text[i], together.text[i]) == 0, "%s: prompt %zu differs:\n'%s'\n'%s'",
          what, i, alone.text[i], together.text[i]);
    CHECK(alone.tokens[i] == together.tokens[i], "%s: prompt %zu: %zu tokens alone, %zu in the "
          "batch", what, i, alone.tokens[i], together.tokens[i]);
    full_length += together.tokens[i] == MAX_TOKENS;
  }
  CHECK(together.tokens[3] == 5, "%s: the stopped prompt got %zu tokens", what, together.tokens[3]);
  CHECK(full_length > 0, "%s: no prompt reached %d tokens, so the budget went untested", what,
        MAX_TOKENS);
}

static void test_errors(asu_model *m) {
  static char longer[20000];
  for (size_t i = 0; i + 2 < sizeof longer; i += 2) memcpy(longer + i, "a ", 2);
  const char *list[2] = {"Once", longer};
  texts t = {0};
  asu_error err;
  int rc = asu_generate_greedy_batch(m, NULL, list, 2, 4, batch_piece, &t, &err);
  CHECK(rc == ASU_ERR_LIMIT, "a prompt over the context returned %d", rc);
  CHECK(strstr(err.message, "prompt 1") != NULL, "message: %s", err.message);
  rc = asu_generate_greedy_batch(m, NULL, list, 1, 0, batch_piece, &t, &err);
  CHECK(rc == ASU_OK, "a budget of 0 tokens returned %d", rc);
  CHECK(t.tokens[0] == 0, "a budget of 0 tokens produced %zu tokens", t.tokens[0]);
}

int main(void) {
  asu_model *m = load_shared_model();
  if (!m) return 1;
  compare(m, NULL, "base model");
  asu_lora *lora = NULL;
  asu_error err;
  int rc = asu_lora_create(m, 4, 8.0f, ASU_LORA_ALL, 7, &lora, &err);
  CHECK(rc == ASU_OK, "lora: %s", err.message);
  /* B starts at zero; a nonzero B makes the adapter change the text. */
  for (uint32_t l = 0; !rc && l < m->cfg.n_layers; l++)
    for (int p = 0; p < 7; p++) {
      asu_lora_pair *pair = &lora->pairs[l][p];
      size_t n = (size_t)pair->out * lora->rank;
      float *b = malloc(n * sizeof *b);
      for (size_t i = 0; i < n; i++) b[i] = 0.05f * (float)((i * 37 + l * 11 + p) % 17) - 0.4f;
      asu_buffer_upload(pair->b, 0, b, n * sizeof *b, &err);
      free(b);
    }
  if (!rc) compare(m, lora, "with an adapter");
  asu_lora_destroy(lora);
  test_errors(m);
  asu_model_destroy(m);
  return TEST_SUMMARY();
}
