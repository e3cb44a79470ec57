/* JSONL datasets of question/answer pairs or plain texts, and their tokenisation. */
#include "asu_dataset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLACEHOLDER "{question}"

/* ---- Building datasets. ---- */

int asu_dataset_add(asu_dataset *ds, const char *question, const char *answer, asu_error *err) {
  if (!ds || !answer)
    return asu_error_set(err, ASU_ERR_INVALID, "asu_dataset_add: dataset or answer is NULL");
  asu_example ex = {.question = question ? strdup(question) : NULL, .answer = strdup(answer)};
  asu_example *grown = NULL;
  if (ex.answer && (ex.question || !question))
    grown = realloc(ds->examples, (ds->count + 1) * sizeof *ds->examples);
  if (!grown) {
    free(ex.question);
    free(ex.answer);
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory adding example %zu", ds->count);
  }
  ds->examples = grown;
  ds->examples[ds->count++] = ex;
  return ASU_OK;
}

void asu_dataset_free(asu_dataset *ds) {
  if (!ds) return;
  for (size_t i = 0; i < ds->count; i++) {
    free(ds->examples[i].question);
    free(ds->examples[i].answer);
  }
  free(ds->examples);
  ds->examples = NULL;
  ds->count = 0;
}

/* ---- JSONL loading. ---- */

static bool is_blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
  return true;
}

/* Sets *out to the string member `key`, or to NULL when it is missing. Fails when the member
   is not a string. */
static int string_member(const cJSON *obj, const char *key, const char **out, size_t line,
                         asu_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = NULL;
  if (!item) return ASU_OK;
  if (!cJSON_IsString(item) || !item->valuestring)
    return asu_error_set(err, ASU_ERR_FORMAT, "line %zu: \"%s\" is not a string", line, key);
  *out = item->valuestring;
  return ASU_OK;
}

static int parse_example(const cJSON *obj, size_t line, asu_dataset *ds, asu_error *err) {
  if (!cJSON_IsObject(obj))
    return asu_error_set(err, ASU_ERR_FORMAT, "line %zu: expected a JSON object", line);
  const char *question, *answer, *text;
  int rc = string_member(obj, "question", &question, line, err);
  if (rc == ASU_OK) rc = string_member(obj, "answer", &answer, line, err);
  if (rc == ASU_OK) rc = string_member(obj, "text", &text, line, err);
  if (rc != ASU_OK) return rc;

  if (question && answer) return asu_dataset_add(ds, question, answer, err);
  if (question || answer)
    return asu_error_set(err, ASU_ERR_FORMAT, "line %zu: has \"%s\" but no \"%s\"", line,
                         question ? "question" : "answer", question ? "answer" : "question");
  if (text) return asu_dataset_add(ds, NULL, text, err);
  return asu_error_set(err, ASU_ERR_FORMAT,
                       "line %zu: expected string fields \"question\" and \"answer\", or \"text\"",
                       line);
}

static int parse_line(const char *s, size_t len, size_t line, asu_dataset *ds, asu_error *err) {
  /* A UTF-8 byte order mark may start the first line. */
  if (line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
    s += 3;
    len -= 3;
  }
  if (is_blank(s, len)) return ASU_OK;
  const char *end = NULL;
  cJSON *obj = cJSON_ParseWithLengthOpts(s, len, &end, false);
  if (!obj) {
    size_t column = end && end >= s ? (size_t)(end - s) + 1 : 1;
    return asu_error_set(err, ASU_ERR_FORMAT, "line %zu: invalid JSON near column %zu", line,
                         column);
  }
  int rc = ASU_OK;
  if (!is_blank(end, len - (size_t)(end - s)))
    rc = asu_error_set(err, ASU_ERR_FORMAT,
                       "line %zu: unexpected text after the JSON object at column %zu", line,
                       (size_t)(end - s) + 1);
  if (rc == ASU_OK) rc = parse_example(obj, line, ds, err);
  cJSON_Delete(obj);
  return rc;
}

static int read_lines(FILE *f, asu_dataset *ds, asu_error *err) {
  char *buf = NULL;
  size_t cap = 0;
  size_t line = 0;
  int rc = ASU_OK;
  ssize_t len;
  errno = 0;
  while (rc == ASU_OK && (len = getline(&buf, &cap, f)) >= 0) {
    line++;
    rc = parse_line(buf, (size_t)len, line, ds, err);
  }
  if (rc == ASU_OK && ferror(f))
    rc = asu_error_set(err, ASU_ERR_IO, "read failed after line %zu: %s", line, strerror(errno));
  free(buf);
  return rc;
}

int asu_dataset_load(const char *path, asu_dataset *out, asu_error *err) {
  if (!path || !out) return asu_error_set(err, ASU_ERR_INVALID, "asu_dataset_load: NULL argument");
  out->examples = NULL;
  out->count = 0;
  asu_error local = {0};
  int rc = ASU_OK;
  FILE *f = fopen(path, "rb");
  if (!f) rc = asu_error_set(&local, ASU_ERR_IO, "cannot open: %s", strerror(errno));
  else rc = read_lines(f, out, &local);
  if (f) fclose(f);
  if (rc != ASU_OK) {
    asu_dataset_free(out);
    asu_error_wrap(&local, "%s: ", path);
    if (err) *err = local;
  }
  return rc;
}

/* ---- Prompts and tokenisation. ---- */

char *asu_format_prompt(const char *template_text, const char *question, asu_error *err) {
  if (!template_text || !question) {
    asu_error_set(err, ASU_ERR_INVALID, "asu_format_prompt: template or question is NULL");
    return NULL;
  }
  const char *at = strstr(template_text, PLACEHOLDER);
  if (!at || strstr(at + 1, PLACEHOLDER)) {
    asu_error_set(err, ASU_ERR_INVALID,
                  "prompt template \"%.100s\" must contain \"" PLACEHOLDER "\" exactly once",
                  template_text);
    return NULL;
  }
  size_t before = (size_t)(at - template_text);
  const char *rest = at + strlen(PLACEHOLDER);
  size_t qlen = strlen(question), rlen = strlen(rest);
  char *out = malloc(before + qlen + rlen + 1);
  if (!out) {
    asu_error_set(err, ASU_ERR_NOMEM, "out of memory formatting a prompt");
    return NULL;
  }
  memcpy(out, template_text, before);
  memcpy(out + before, question, qlen);
  memcpy(out + before + qlen, rest, rlen + 1);
  return out;
}

static int push_id(asu_tokens *t, int32_t id, asu_error *err) {
  int32_t *grown = realloc(t->ids, (t->n + 1) * sizeof *t->ids);
  if (!grown) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory storing token ids");
  t->ids = grown;
  t->ids[t->n++] = id;
  return ASU_OK;
}

/* Encodes " " + answer without the space prefix, as the answer follows the prompt. */
static int encode_answer(const asu_tokenizer *tok, const char *answer, asu_tokens *t,
                         asu_error *err) {
  size_t len = strlen(answer);
  char *spaced = malloc(len + 2);
  if (!spaced) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory encoding an answer");
  spaced[0] = ' ';
  memcpy(spaced + 1, answer, len + 1);
  int rc = asu_tokenizer_encode(tok, spaced, len + 1, false, &t->ids, &t->n, err);
  free(spaced);
  return rc;
}

static int tokenize(const asu_tokenizer *tok, const char *template_text, const asu_example *ex,
                    asu_tokens *t, asu_error *err) {
  int rc = push_id(t, asu_tokenizer_bos(tok), err);
  if (rc != ASU_OK) return rc;
  if (!ex->question) {
    t->answer_begin = t->n;
    rc = asu_tokenizer_encode(tok, ex->answer, strlen(ex->answer), true, &t->ids, &t->n, err);
  } else {
    char *prompt = asu_format_prompt(template_text ? template_text : ASU_DEFAULT_TEMPLATE,
                                     ex->question, err);
    if (!prompt) return err->code;
    rc = asu_tokenizer_encode(tok, prompt, strlen(prompt), true, &t->ids, &t->n, err);
    free(prompt);
    t->answer_begin = t->n;
    if (rc == ASU_OK) rc = encode_answer(tok, ex->answer, t, err);
  }
  if (rc == ASU_OK) rc = push_id(t, asu_tokenizer_eos(tok), err);
  return rc;
}

int asu_tokenize_example(const asu_tokenizer *tok, const char *template_text,
                         const asu_example *ex, asu_tokens *out, asu_error *err) {
  if (!tok || !ex || !ex->answer || !out)
    return asu_error_set(err, ASU_ERR_INVALID, "asu_tokenize_example: NULL argument");
  out->ids = NULL;
  out->n = 0;
  out->answer_begin = 0;
  if (asu_tokenizer_bos(tok) < 0 || asu_tokenizer_eos(tok) < 0)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "the tokenizer has no BOS or EOS token (tokenizer.ggml.bos_token_id, "
                         ".eos_token_id), which examples need");
  asu_error local = {0}; /* tokenize() reads the code that asu_format_prompt sets */
  int rc = tokenize(tok, template_text, ex, out, &local);
  if (rc != ASU_OK) {
    asu_tokens_free(out);
    if (err) *err = local;
  }
  return rc;
}

void asu_tokens_free(asu_tokens *t) {
  if (!t) return;
  free(t->ids);
  t->ids = NULL;
  t->n = 0;
  t->answer_begin = 0;
}
