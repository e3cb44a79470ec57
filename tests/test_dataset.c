/* Datasets: TOFU JSONL loading, malformed lines, prompt templates and example tokenisation. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asu_dataset.h"
#include "asu_gguf.h"
#include "asu_tokenizer.h"
#include "test_util.h"

static char tmp_dir[] = "/tmp/asu_test_dataset_XXXXXX";

static char *write_jsonl(const char *name, const char *content) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
  FILE *f = fopen(path, "wb");
  fputs(content, f);
  fclose(f);
  return path;
}

static void test_tofu(const char *shared) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tofu/forget01.jsonl", shared);
  asu_dataset ds = {0};
  asu_error err = {0};
  CHECK(asu_dataset_load(path, &ds, &err) == ASU_OK, "load: %s", err.message);
  CHECK(ds.count == 40, "forget01 has %zu rows, expected 40", ds.count);
  size_t complete = 0;
  for (size_t i = 0; i < ds.count; i++)
    if (ds.examples[i].question && ds.examples[i].answer && *ds.examples[i].question &&
        *ds.examples[i].answer)
      complete++;
  CHECK(complete == ds.count, "%zu of %zu rows have a question and an answer", complete, ds.count);
  asu_dataset_free(&ds);
  CHECK(ds.count == 0, "free resets the count");
  CHECK(ds.examples == NULL, "free resets the examples");
}

static void test_valid_lines(void) {
  char *path = write_jsonl("valid.jsonl",
                           "\xEF\xBB\xBF{\"question\": \"Q1?\", \"answer\": \"A1.\", \"extra\": 3}\n"
                           "\n"
                           "   \r\n"
                           "{\"text\": \"Just a story.\"}\r\n"
                           "{\"question\": \"Caf\\u00e9?\", \"answer\": \"Oui\\n\"}");
  asu_dataset ds = {0};
  asu_error err = {0};
  CHECK(asu_dataset_load(path, &ds, &err) == ASU_OK, "load: %s", err.message);
  CHECK(ds.count == 3, "%zu examples", ds.count);
  if (ds.count == 3) {
    CHECK(strcmp(ds.examples[0].question, "Q1?") == 0, "question 0");
    CHECK(strcmp(ds.examples[0].answer, "A1.") == 0, "answer 0");
    CHECK(ds.examples[1].question == NULL, "text example has no question");
    CHECK(strcmp(ds.examples[1].answer, "Just a story.") == 0, "text");
    CHECK(strcmp(ds.examples[2].question, "Caf\xC3\xA9?") == 0, "unicode escape");
    CHECK(strcmp(ds.examples[2].answer, "Oui\n") == 0, "newline escape");
  }
  CHECK(asu_dataset_add(&ds, "extra q", "extra a", &err) == ASU_OK, "add: %s", err.message);
  CHECK(ds.count == 4, "%zu examples after add", ds.count);
  CHECK(asu_dataset_add(&ds, NULL, "plain", &err) == ASU_OK, "add text: %s", err.message);
  CHECK(ds.count == 5, "%zu examples after adding a text", ds.count);
  CHECK(asu_dataset_add(&ds, "q", NULL, &err) == ASU_ERR_INVALID, "add without answer");
  asu_dataset_free(&ds);
}

static void expect_load_error(const char *content, int code, const char *needle, const char *what) {
  char *path = write_jsonl("bad.jsonl", content);
  asu_dataset ds = {0};
  asu_error err = {0};
  int rc = asu_dataset_load(path, &ds, &err);
  CHECK(rc == code, "%s: returned %d (%s)", what, rc, err.message);
  CHECK(strstr(err.message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.message,
        needle);
  CHECK(strstr(err.message, path) != NULL, "%s: message \"%s\" does not name the file", what,
        err.message);
  CHECK(ds.count == 0, "%s: count not reset", what);
  CHECK(ds.examples == NULL, "%s: examples not freed", what);
}

static void test_bad_lines(void) {
  const char *ok = "{\"question\": \"q\", \"answer\": \"a\"}\n";
  char buf[512];
  snprintf(buf, sizeof buf, "%s%s{\"question\": \"q\", \"answer\": }\n", ok, ok);
  expect_load_error(buf, ASU_ERR_FORMAT, "line 3: invalid JSON", "bad JSON");
  snprintf(buf, sizeof buf, "%s{\"question\": \"q\"}\n", ok);
  expect_load_error(buf, ASU_ERR_FORMAT, "line 2: has \"question\" but no \"answer\"", "no answer");
  expect_load_error("{\"question\": \"q\", \"answer\": 42}\n", ASU_ERR_FORMAT,
                    "line 1: \"answer\" is not a string", "number answer");
  expect_load_error("{\"text\": null}\n", ASU_ERR_FORMAT, "line 1: \"text\" is not a string",
                    "null text");
  expect_load_error("[1, 2]\n", ASU_ERR_FORMAT, "line 1: expected a JSON object", "array line");
  expect_load_error("{\"prompt\": \"x\"}\n", ASU_ERR_FORMAT, "line 1: expected string fields",
                    "no known fields");
  expect_load_error("{\"text\": \"a\"} {\"text\": \"b\"}\n", ASU_ERR_FORMAT,
                    "line 1: unexpected text", "two objects on a line");

  asu_dataset ds = {0};
  asu_error err = {0};
  CHECK(asu_dataset_load("/nonexistent/data.jsonl", &ds, &err) == ASU_ERR_IO, "missing file");
  CHECK(strstr(err.message, "/nonexistent/data.jsonl") != NULL, "message: %s", err.message);
}

static void test_format_prompt(void) {
  asu_error err = {0};
  char *p = asu_format_prompt(ASU_DEFAULT_TEMPLATE, "Who?", &err);
  CHECK(p != NULL, "default template: %s", err.message);
  if (p) CHECK(strcmp(p, "Question: Who?\nAnswer:") == 0, "default template gives %s", p);
  free(p);
  p = asu_format_prompt("[{question}]", "{question}", &err);
  CHECK(p != NULL, "bracket template: %s", err.message);
  if (p) CHECK(strcmp(p, "[{question}]") == 0, "placeholder inside the question gives %s", p);
  free(p);
  CHECK(asu_format_prompt("no placeholder", "q", &err) == NULL, "template without placeholder");
  CHECK(err.code == ASU_ERR_INVALID, "template without placeholder gives %d", err.code);
  CHECK(strstr(err.message, "{question}") != NULL, "message: %s", err.message);
  CHECK(asu_format_prompt("{question} {question}", "q", &err) == NULL, "two placeholders");
}

/* The golden pair: ids and the first answer position from the reference file. */
static void test_golden_example(const asu_tokenizer *tok, const char *shared) {
  char path[1024];
  snprintf(path, sizeof path, "%s/models/stories260K.golden.json", shared);
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL, "open %s", path);
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *json = calloc(1, (size_t)size + 1);
  size_t len = fread(json, 1, (size_t)size, f);
  fclose(f);
  CHECK(len == (size_t)size, "read %zu of %ld bytes of %s", len, size, path);
  cJSON *root = cJSON_Parse(json);
  free(json);
  CHECK(root != NULL, "parse golden json");
  if (!root) return;
  const char *text = cJSON_GetObjectItem(root, "text")->valuestring;
  const cJSON *ids = cJSON_GetObjectItem(root, "input_ids");
  size_t first_answer = (size_t)cJSON_GetObjectItem(root, "first_answer_position")->valuedouble;

  const char *prefix = "Question: ", *sep = "\nAnswer: ";
  const char *at = strstr(text, sep);
  CHECK(strncmp(text, prefix, strlen(prefix)) == 0, "golden text does not start with %s", prefix);
  CHECK(at != NULL, "golden text has no answer");
  if (!at) {
    cJSON_Delete(root);
    return;
  }
  size_t qlen = (size_t)(at - text) - strlen(prefix);
  char *question = strndup(text + strlen(prefix), qlen);
  asu_example ex = {.question = question, .answer = (char *)(at + strlen(sep))};

  asu_tokens t = {0};
  asu_error err = {0};
  CHECK(asu_tokenize_example(tok, NULL, &ex, &t, &err) == ASU_OK, "tokenize: %s", err.message);
  CHECK(t.n == (size_t)cJSON_GetArraySize(ids), "%zu ids, expected %d", t.n, cJSON_GetArraySize(ids));
  size_t mismatches = 0;
  for (size_t i = 0; i < t.n && i < (size_t)cJSON_GetArraySize(ids); i++)
    if (t.ids[i] != (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble) mismatches++;
  CHECK(mismatches == 0, "%zu ids differ from the golden ids", mismatches);
  CHECK(t.answer_begin == first_answer, "answer_begin %zu, expected %zu", t.answer_begin,
        first_answer);
  asu_tokens_free(&t);

  /* The same example through an explicit copy of the default template. */
  CHECK(asu_tokenize_example(tok, "Question: {question}\nAnswer:", &ex, &t, &err) == ASU_OK,
        "explicit template: %s", err.message);
  CHECK(t.answer_begin == first_answer, "explicit template: answer_begin %zu", t.answer_begin);
  asu_tokens_free(&t);
  CHECK(asu_tokenize_example(tok, "no placeholder", &ex, &t, &err) == ASU_ERR_INVALID,
        "bad template accepted");
  CHECK(t.ids == NULL, "bad template left ids behind");
  free(question);
  cJSON_Delete(root);
}

static void test_text_example(const asu_tokenizer *tok) {
  const char *text = "Lily saw a big red ball.";
  asu_example ex = {.question = NULL, .answer = (char *)text};
  asu_tokens t = {0};
  asu_error err = {0};
  CHECK(asu_tokenize_example(tok, NULL, &ex, &t, &err) == ASU_OK, "tokenize: %s", err.message);
  int32_t *ids = NULL;
  size_t n = 0;
  asu_tokenizer_encode(tok, text, strlen(text), true, &ids, &n, NULL);
  CHECK(t.n == n + 2, "%zu ids, expected %zu", t.n, n + 2);
  if (t.n == n + 2) {
    CHECK(t.ids[0] == 1, "first id %d is not BOS", t.ids[0]);
    CHECK(t.ids[t.n - 1] == 2, "last id %d is not EOS", t.ids[t.n - 1]);
    CHECK(memcmp(t.ids + 1, ids, n * sizeof *ids) == 0, "text ids differ from encode()");
  }
  CHECK(t.answer_begin == 1, "answer_begin %zu", t.answer_begin);
  free(ids);
  asu_tokens_free(&t);
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
  test_tofu(shared);
  test_valid_lines();
  test_bad_lines();
  test_format_prompt();

  char path[1024];
  snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared);
  asu_gguf *g = NULL;
  asu_tokenizer *tok = NULL;
  asu_error err = {0};
  CHECK(asu_gguf_open(path, &g, &err) == ASU_OK, "open: %s", err.message);
  if (g) CHECK(asu_tokenizer_from_gguf(g, &tok, &err) == ASU_OK, "tokenizer: %s", err.message);
  if (tok) {
    test_golden_example(tok, shared);
    test_text_example(tok);
  }
  asu_tokenizer_destroy(tok);
  asu_gguf_close(g);

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
  return TEST_SUMMARY();
}
