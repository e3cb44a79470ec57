/* The shared model against independent references: greedy text from llama2.c, and float64
   logits, losses and gradients from a PyTorch implementation (stories260K.golden.json). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model_internal.h"
#include "shared_model.h"
#include "test_util.h"

static const double tolerance = 1e-3;

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)n + 1);
  if (text && fread(text, 1, (size_t)n, f) == (size_t)n) {
    text[n] = '\0';
    if (len) *len = (size_t)n;
  } else {
    free(text);
    text = NULL;
  }
  fclose(f);
  return text;
}

/* ||got - want|| / ||want||; when want is all zeros, ||got|| itself. */
static double rel_error(const float *got, const cJSON *want, size_t n) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < n; i++) {
    double w = cJSON_GetArrayItem(want, (int)i)->valuedouble, d = got[i] - w;
    diff += d * d;
    norm += w * w;
  }
  return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

typedef struct append_ctx {
  char text[8192];
  size_t len;
} append_ctx;

static int append(void *user, int32_t token, const char *piece, size_t len) {
  (void)token;
  append_ctx *a = user;
  if (a->len + len >= sizeof a->text) return 1;
  memcpy(a->text + a->len, piece, len);
  a->len += len;
  a->text[a->len] = '\0';
  return 0;
}

static void test_greedy_text(asu_model *m, const char *data_dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/models/stories260K.greedy256.txt", data_dir);
  size_t expected_len = 0;
  char *expected = read_file(path, &expected_len);
  CHECK(expected != NULL, "cannot read %s", path);
  if (!expected) return;
  asu_sampling greedy = {.max_tokens = 256, .temperature = 0.0f, .top_p = 1.0f};
  append_ctx out = {0};
  asu_error err;
  int rc = asu_generate(m, NULL, "", &greedy, append, &out, &err);
  CHECK(rc == ASU_OK, "generate: %s", err.message);
  /* The reference file may end with a newline that the generated text does not have. */
  while (expected_len && expected[expected_len - 1] == '\n' &&
         (out.len == 0 || out.text[out.len - 1] != '\n'))
    expected[--expected_len] = '\0';
  CHECK(out.len == expected_len, "greedy text has %zu bytes, the reference %zu", out.len,
        expected_len);
  CHECK(memcmp(out.text, expected, out.len < expected_len ? out.len : expected_len) == 0,
        "greedy text differs from the llama2.c reference:\n--- got\n%s\n--- expected\n%s",
        out.text, expected);
  free(expected);
}

typedef struct golden_run {
  asu_model *m;
  asu_batch *batch;
  asu_acts *acts;
  asu_backward_scratch *scratch;
  asu_grads *grads;
  asu_buffer *weights, *loss, *dlogits, *teacher;
  asu_cmd *cmd;
  float *scales1, *scales3;
  uint32_t rows, vocab, first_answer, n_answer;
} golden_run;

static int setup(golden_run *g, asu_model *m, const cJSON *golden, asu_error *err) {
  const cJSON *ids = cJSON_GetObjectItem(golden, "input_ids");
  g->m = m;
  g->rows = (uint32_t)cJSON_GetArraySize(ids);
  g->vocab = m->cfg.vocab;
  g->first_answer = (uint32_t)cJSON_GetObjectItem(golden, "first_answer_position")->valueint;
  g->n_answer = g->rows - g->first_answer;
  asu_tokens t = {.ids = malloc(g->rows * sizeof(int32_t)), .n = g->rows,
                  .answer_begin = g->first_answer};
  for (uint32_t i = 0; i < g->rows; i++) t.ids[i] = cJSON_GetArrayItem(ids, (int)i)->valueint;
  float *w = calloc(g->rows, sizeof *w);
  for (uint32_t r = g->first_answer - 1; r + 1 < g->rows; r++) w[r] = 1.0f / (float)g->n_answer;
  g->scales1 = malloc(m->cfg.n_layers * sizeof(float));
  g->scales3 = malloc(m->cfg.n_layers * sizeof(float));
  asu_layer_scales(m, 1.0f, 0, g->scales1);
  asu_layer_scales(m, 3.0f, 0, g->scales3);
  size_t logits_bytes = (size_t)g->rows * g->vocab * sizeof(float);
  int rc = asu_batch_create(m, &t, 1, &g->batch, err);
  if (!rc) rc = asu_acts_create(m, g->rows, 0, &g->acts, err);
  if (!rc) rc = asu_backward_scratch_create(m, g->rows, 0, &g->scratch, err);
  if (!rc) rc = asu_grads_create_full(m, &g->grads, err);
  if (!rc) rc = asu_buffer_create(m->dev, g->rows * sizeof(float), &g->weights, err);
  if (!rc) rc = asu_buffer_upload(g->weights, 0, w, g->rows * sizeof(float), err);
  if (!rc) rc = asu_buffer_create(m->dev, g->rows * sizeof(float), &g->loss, err);
  if (!rc) rc = asu_buffer_create(m->dev, logits_bytes, &g->dlogits, err);
  if (!rc) rc = asu_buffer_create(m->dev, logits_bytes, &g->teacher, err);
  if (!rc) rc = asu_cmd_begin(m->dev, &g->cmd, err);
  free(w);
  free(t.ids);
  return rc;
}

static void record_forward(golden_run *g, const float *scales) {
  asu_forward_args fwd = {
      .ids = g->batch->ids_buf, .positions = g->batch->positions_buf,
      .q_ranges = g->batch->q_ranges_buf, .rows = g->rows, .layer_scale = scales,
  };
  asu_forward_record(g->cmd, g->m, &fwd, g->acts);
}

static void check_logits(golden_run *g, const cJSON *expected, const char *label) {
  float *logits = malloc((size_t)g->rows * g->vocab * sizeof(float));
  asu_error err;
  asu_buffer_download(g->acts->logits, 0, logits, (size_t)g->rows * g->vocab * sizeof(float), &err);
  const cJSON *row;
  cJSON_ArrayForEach(row, expected) {
    int position = atoi(row->string);
    double e = rel_error(logits + (size_t)position * g->vocab, row, g->vocab);
    CHECK(e < tolerance, "%s logits at position %d: relative error %.3g", label, position, e);
  }
  free(logits);
}

/* Per-token losses on the answer rows, times n_answer to undo the mean weights. */
static void check_losses(golden_run *g, const cJSON *per_token, const cJSON *mean,
                         const char *label) {
  float *loss = malloc(g->rows * sizeof(float));
  asu_error err;
  asu_buffer_download(g->loss, 0, loss, g->rows * sizeof(float), &err);
  float *tokens = malloc(g->n_answer * sizeof(float));
  double sum = 0;
  for (uint32_t i = 0; i < g->n_answer; i++) {
    tokens[i] = loss[g->first_answer - 1 + i] * (float)g->n_answer;
    sum += loss[g->first_answer - 1 + i];
  }
  double e = rel_error(tokens, per_token, g->n_answer);
  CHECK(e < tolerance, "%s per answer token: relative error %.3g", label, e);
  CHECK(fabs(sum - mean->valuedouble) < tolerance * fabs(mean->valuedouble),
        "%s mean: %.6f, expected %.6f", label, sum, mean->valuedouble);
  free(tokens);
  free(loss);
}

static const asu_weight *grad_of(golden_run *g, const char *name) {
  asu_grads *gr = g->grads;
  if (!strcmp(name, "token_embd.weight")) return &gr->tok_embd;
  if (!strcmp(name, "output_norm.weight")) return &gr->output_norm;
  if (!strcmp(name, "output.weight")) return &gr->output;
  for (uint32_t l = 0; l < g->m->cfg.n_layers; l++)
    for (int w = 0; w < ASU_W_PER_LAYER; w++)
      if (!strcmp(g->m->layers[l][w].name, name)) return &gr->layers[l][w];
  return NULL;
}

static void check_gradients(golden_run *g, const cJSON *expected, const char *label) {
  const cJSON *item;
  int checked = 0;
  cJSON_ArrayForEach(item, expected) {
    const asu_weight *w = grad_of(g, item->string);
    CHECK(w != NULL, "%s: no gradient for tensor %s", label, item->string);
    if (!w) continue;
    size_t n = (size_t)w->rows * w->cols;
    float *got = malloc(n * sizeof *got);
    asu_error err;
    asu_buffer_download(w->buf, 0, got, n * sizeof(float), &err);
    double norm = 0;
    for (size_t i = 0; i < n; i++) norm += (double)got[i] * got[i];
    double want = cJSON_GetObjectItem(item, "l2")->valuedouble;
    CHECK(fabs(sqrt(norm) - want) <= tolerance * want, "%s gradient of %s: L2 norm %.6g, "
          "expected %.6g", label, item->string, sqrt(norm), want);
    /* first8 is compared relative to the whole gradient's norm: it may be all zeros. */
    const cJSON *first = cJSON_GetObjectItem(item, "first8");
    double diff = 0;
    for (int i = 0; i < 8; i++) {
      double d = got[i] - cJSON_GetArrayItem(first, i)->valuedouble;
      diff += d * d;
    }
    CHECK(sqrt(diff) <= tolerance * want, "%s gradient of %s: first 8 values differ by %.3g "
          "(norm %.3g)", label, item->string, sqrt(diff), want);
    const cJSON *full = cJSON_GetObjectItem(item, "full");
    if (full) {
      double e = rel_error(got, full, n);
      CHECK(e < tolerance, "%s gradient of %s: relative error %.3g", label, item->string, e);
    }
    free(got);
    checked++;
  }
  CHECK(checked == 3 + 9 * (int)g->m->cfg.n_layers, "%s: %d gradients checked", label, checked);
}

/* asu_answer_nll on the golden pair, alone and in the middle of a batch of three. */
static void check_answer_nll(asu_model *m, const cJSON *golden) {
  const char *text = cJSON_GetObjectItem(golden, "text")->valuestring;
  const char *mark = strstr(text, "\nAnswer: ");
  CHECK(!strncmp(text, "Question: ", 10), "the golden text does not start with \"Question: \"");
  CHECK(mark != NULL, "the golden text has no \"\\nAnswer: \"");
  if (!mark) return;
  char *question = strndup(text + 10, (size_t)(mark - text - 10));
  asu_dataset alone = {0}, batch = {0};
  asu_error err;
  asu_dataset_add(&alone, question, mark + 9, &err);
  asu_dataset_add(&batch, "Who is Lily?", "Lily is a little girl.", &err);
  asu_dataset_add(&batch, question, mark + 9, &err);
  asu_dataset_add(&batch, NULL, "Once upon a time there was a dog.", &err);
  double one = NAN, three[3] = {NAN, NAN, NAN};
  CHECK(asu_answer_nll(m, NULL, NULL, &alone, &one, &err) == ASU_OK, "answer nll: %s",
        err.message);
  CHECK(asu_answer_nll(m, NULL, NULL, &batch, three, &err) == ASU_OK, "answer nll of three: %s",
        err.message);
  double want = cJSON_GetObjectItem(golden, "mean_answer_nll_tau1")->valuedouble;
  CHECK(fabs(one - want) < 1e-4 * want, "answer nll %.8f, golden %.8f", one, want);
  CHECK(fabs(three[1] - one) < 1e-5 * one, "answer nll in a batch %.8f, alone %.8f", three[1],
        one);
  CHECK(three[0] > 0, "first answer's nll %g", three[0]);
  CHECK(three[2] > 0, "third answer's nll %g", three[2]);
  CHECK(three[0] != three[2], "two different answers have the same nll %g", three[0]);
  asu_dataset_free(&alone);
  asu_dataset_free(&batch);
  free(question);
}

static void test_golden(asu_model *m, const char *data_dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/models/stories260K.golden.json", data_dir);
  char *text = read_file(path, NULL);
  cJSON *golden = text ? cJSON_Parse(text) : NULL;
  free(text);
  CHECK(golden != NULL, "cannot read %s", path);
  if (!golden) return;
  golden_run g = {0};
  asu_error err;
  int rc = setup(&g, m, golden, &err);
  CHECK(rc == ASU_OK, "setup: %s", err.message);
  uint32_t V = g.vocab, R = g.rows;

  /* Teacher at tau 3: logits, then its log-probabilities for the KL. */
  record_forward(&g, g.scales3);
  asu_op_log_softmax(g.cmd, g.acts->logits, g.teacher, 0, R, V);
  CHECK(asu_cmd_submit(g.cmd, &err) == ASU_OK, "tau 3 forward: %s", err.message);
  check_logits(&g, cJSON_GetObjectItem(golden, "logits_tau3"), "tau 3");

  /* Student at tau 1: logits, answer NLL and its gradient. */
  asu_grads_zero(g.cmd, g.grads);
  record_forward(&g, g.scales1);
  asu_op_cross_entropy(g.cmd, g.acts->logits, g.batch->targets_buf, g.weights, g.loss, g.dlogits,
                       0, R, V);
  asu_backward_record(g.cmd, m, NULL, g.batch, g.scales1, g.acts, g.dlogits, g.scratch, g.grads);
  CHECK(asu_cmd_submit(g.cmd, &err) == ASU_OK, "NLL step: %s", err.message);
  check_logits(&g, cJSON_GetObjectItem(golden, "logits_tau1"), "tau 1");
  check_losses(&g, cJSON_GetObjectItem(golden, "answer_nll_tau1"),
               cJSON_GetObjectItem(golden, "mean_answer_nll_tau1"), "NLL");
  check_gradients(&g, cJSON_GetObjectItem(golden, "grad_mean_answer_nll_tau1"), "NLL");

  /* KL(teacher || student) on the answer, teacher held fixed. */
  asu_grads_zero(g.cmd, g.grads);
  record_forward(&g, g.scales1);
  asu_op_kl(g.cmd, g.teacher, g.acts->logits, g.weights, g.loss, g.dlogits, 0, R, V);
  asu_backward_record(g.cmd, m, NULL, g.batch, g.scales1, g.acts, g.dlogits, g.scratch, g.grads);
  CHECK(asu_cmd_submit(g.cmd, &err) == ASU_OK, "KL step: %s", err.message);
  check_losses(&g, cJSON_GetObjectItem(golden, "answer_kl_teacher_tau3"),
               cJSON_GetObjectItem(golden, "mean_answer_kl_teacher_tau3"), "KL");
  check_gradients(&g, cJSON_GetObjectItem(golden, "grad_mean_answer_kl_teacher_tau3"), "KL");

  check_answer_nll(m, golden);

  asu_cmd_destroy(g.cmd);
  asu_batch_destroy(g.batch);
  asu_acts_destroy(g.acts);
  asu_backward_scratch_destroy(g.scratch);
  asu_grads_destroy(g.grads);
  asu_buffer_destroy(g.weights);
  asu_buffer_destroy(g.loss);
  asu_buffer_destroy(g.dlogits);
  asu_buffer_destroy(g.teacher);
  free(g.scales1);
  free(g.scales3);
  cJSON_Delete(golden);
}

/* Device bytes that creating activations for `rows` rows takes, shared across layers or not. */
static uint64_t acts_bytes(asu_model *m, uint32_t rows, bool shared) {
  uint64_t before, after, peak;
  asu_device_memory_usage(m->dev, &before, &peak);
  asu_acts *a = NULL;
  asu_error err;
  int rc = shared ? asu_acts_create_shared(m, rows, 8, &a, &err)
                  : asu_acts_create(m, rows, 8, &a, &err);
  CHECK(rc == ASU_OK, "activations for %u rows: %s", rows, err.message);
  asu_device_memory_usage(m->dev, &after, &peak);
  asu_acts_destroy(a);
  uint64_t released;
  asu_device_memory_usage(m->dev, &released, &peak);
  CHECK(released == before, "destroying the %s activations left %llu bytes",
        shared ? "shared" : "per-layer", (unsigned long long)(released - before));
  return after - before;
}

/* The greedy text above runs on shared activations, so they give the same tokens. Their size
   does not grow with the depth, while the per-layer set has 5 layers here. So the shared set
   must take under half of its memory, even with the final norm and logits counted in both. */
static void test_shared_activations(asu_model *m) {
  uint64_t shared = acts_bytes(m, 256, true), per_layer = acts_bytes(m, 256, false);
  CHECK(m->cfg.n_layers == 5, "the shared model has %u layers", m->cfg.n_layers);
  CHECK(2 * shared < per_layer, "shared activations take %llu bytes, per-layer ones %llu",
        (unsigned long long)shared, (unsigned long long)per_layer);
}

int main(void) {
  const char *data_dir = shared_data_dir();
  asu_model *m = data_dir ? load_shared_model() : NULL;
  if (!m) return 1;
  test_greedy_text(m, data_dir);
  test_golden(m, data_dir);
  test_shared_activations(m);
  asu_model_destroy(m);
  return TEST_SUMMARY();
}
