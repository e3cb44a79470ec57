/* The reference vocabulary of the fluency measure, from a GPT-2 encoder.json. Entropy and
   repeated runs alone do not tell fluent text from invented words; the share of generated words
   found in a real vocabulary does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "eval_internal.h"

static int compare_words(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The word of a token, lowercased into out, or 0 when the token is not made of letters. */
static size_t token_word(const char *token, char *out, size_t size) {
  if ((unsigned char)token[0] == 0xC4 && (unsigned char)token[1] == 0xA0) token += 2;
  size_t n = 0;
  for (; token[n]; n++) {
    char c = token[n];
    if (n + 1 >= size || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return 0;
    out[n] = (char)(c | 0x20);
  }
  out[n] = '\0';
  return n;
}

int eval_load_vocabulary(const char *path, eval_vocabulary *v, asu_error *err) {
  memset(v, 0, sizeof *v);
  FILE *f = fopen(path, "rb");
  if (!f) return asu_error_set(err, ASU_ERR_NOT_FOUND, "cannot open the vocabulary %s", path);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = size > 0 ? malloc((size_t)size + 1) : NULL;
  size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
  fclose(f);
  if (text) text[got] = '\0';
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return asu_error_set(err, ASU_ERR_FORMAT, "%s is not a JSON object of tokens (a GPT-2 "
                         "encoder.json)", path);
  }
  size_t cap = (size_t)cJSON_GetArraySize(j);
  v->words = malloc((cap ? cap : 1) * sizeof *v->words);
  for (const cJSON *t = j->child; v->words && t; t = t->next) {
    char word[64];
    if (token_word(t->string, word, sizeof word)) v->words[v->count++] = strdup(word);
  }
  cJSON_Delete(j);
  if (!v->words) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  qsort(v->words, v->count, sizeof *v->words, compare_words);
  return ASU_OK;
}

void eval_vocabulary_free(eval_vocabulary *v) {
  for (size_t i = 0; i < v->count; i++) free(v->words[i]);
  free(v->words);
  memset(v, 0, sizeof *v);
}
