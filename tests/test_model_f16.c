/* F16 weights kept as F16 on the device. An F16 copy of the shared model is loaded twice: with
   its matrices resident as F16 (read through texel buffers and widened in the kernels), and with
   ASU_WEIGHTS=f32 (widened on the host at load). Both hold the same rounded values and
   accumulate in F32, so they must generate the same text and train to the same losses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asu_gguf.h"
#include "model_internal.h"
#include "shared_model.h"
#include "test_util.h"

/* Writes a copy of the model at `from` to `to` with every matrix stored as F16. */
static int write_f16_copy(const char *from, const char *to) {
  asu_error err;
  asu_gguf *g = NULL;
  if (asu_gguf_open(from, &g, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return -1;
  }
  size_t n = asu_gguf_tensor_count(g);
  asu_gguf_out_tensor *out = calloc(n, sizeof *out);
  float **data = calloc(n, sizeof *data);
  int rc = ASU_OK;
  for (size_t i = 0; i < n && !rc; i++) {
    const asu_gguf_tensor *t = asu_gguf_tensor_at(g, i);
    data[i] = malloc(t->n_elements * sizeof(float));
    rc = asu_gguf_tensor_to_f32(t, data[i], t->n_elements, &err);
    out[i] = (asu_gguf_out_tensor){.name = t->name, .n_dims = t->n_dims, .data = data[i],
                                   .type = t->n_dims == 2 ? ASU_TENSOR_F16 : ASU_TENSOR_F32};
    for (uint32_t d = 0; d < 4; d++) out[i].dims[d] = t->dims[d];
  }
  if (!rc) rc = asu_gguf_write(to, g, out, n, &err);
  if (rc) fprintf(stderr, "writing the F16 copy: %s\n", err.message);
  for (size_t i = 0; i < n; i++) free(data[i]);
  free(data);
  free(out);
  asu_gguf_close(g);
  return rc ? -1 : 0;
}

static asu_model *load(const char *path, const char *weights) {
  if (weights) setenv("ASU_WEIGHTS", weights, 1);
  asu_model *m = NULL;
  asu_error err;
  int rc = asu_model_load(path, NULL, &m, &err);
  CHECK(rc == ASU_OK, "loading %s with ASU_WEIGHTS=%s: %s", path, weights ? weights : "(unset)",
        err.message);
  unsetenv("ASU_WEIGHTS");
  return m;
}

static int append(void *user, int32_t token, const char *piece, size_t len) {
  (void)token;
  char *text = user;
  size_t used = strlen(text);
  if (used + len >= 2048) return 1;
  memcpy(text + used, piece, len);
  text[used + len] = '\0';
  return 0;
}

static void greedy(asu_model *m, const asu_lora *lora, char text[2048]) {
  asu_sampling s = {.max_tokens = 48, .temperature = 0.0f, .top_p = 1.0f};
  asu_error err;
  text[0] = '\0';
  int rc = asu_generate(m, lora, "Once upon a time", &s, append, text, &err);
  CHECK(rc == ASU_OK, "generate: %s", err.message);
}

typedef struct loss_log {
  double loss[8];
  uint32_t n;
} loss_log;

static int record(void *user, const asu_progress *p) {
  loss_log *log = user;
  if (log->n < 8) log->loss[log->n++] = p->loss;
  return 0;
}

/* A short ASU run: its losses depend on every weight through the forward and backward passes. */
static asu_lora *unlearn(asu_model *m, loss_log *log) {
  asu_dataset forget = {0}, retain = {0};
  asu_error err;
  asu_dataset_add(&forget, "What is the name of Lily's dog?", "Lily's dog is called Max.", &err);
  asu_dataset_add(&retain, "What color is the sky?", "The sky is blue.", &err);
  asu_unlearn_config cfg;
  asu_unlearn_defaults(&cfg);
  cfg.steps = 4;
  asu_lora *lora = NULL;
  int rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, record, log, &lora, &err);
  CHECK(rc == ASU_OK, "unlearn: %s", err.message);
  asu_dataset_free(&forget);
  asu_dataset_free(&retain);
  return lora;
}

static void test_resident_matches_widened(asu_model *f16, asu_model *f32) {
  CHECK(asu_buffer_element(f16->layers[0][ASU_W_Q].buf) == ASU_ELEMENT_F16,
        "the q matrix of the F16 model is not resident as F16");
  CHECK(asu_buffer_element(f16->tok_embd.buf) == ASU_ELEMENT_F16,
        "the embedding of the F16 model is not resident as F16");
  CHECK(asu_buffer_element(f16->output_norm.buf) == ASU_ELEMENT_F32,
        "norm weights must stay F32");
  CHECK(asu_buffer_element(f32->layers[0][ASU_W_Q].buf) == ASU_ELEMENT_F32,
        "ASU_WEIGHTS=f32 left the q matrix as F16");
  size_t resident = asu_buffer_size(f16->layers[0][ASU_W_Q].buf);
  size_t widened = asu_buffer_size(f32->layers[0][ASU_W_Q].buf);
  CHECK(2 * resident == widened, "the F16 q matrix takes %zu bytes, the F32 one %zu", resident,
        widened);

  char a[2048], b[2048];
  greedy(f16, NULL, a);
  greedy(f32, NULL, b);
  CHECK(strlen(a) > 0, "the F16 model generated no text");
  CHECK(strcmp(a, b) == 0, "F16-resident and widened weights generate differently:\n%s\n%s", a,
        b);

  loss_log la = {0}, lb = {0};
  asu_lora *lora_a = unlearn(f16, &la);
  asu_lora *lora_b = unlearn(f32, &lb);
  CHECK(la.n == 5, "%u progress reports with F16-resident weights", la.n);
  CHECK(lb.n == 5, "%u progress reports with widened weights", lb.n);
  for (uint32_t i = 0; i < la.n && i < lb.n; i++)
    CHECK(fabs(la.loss[i] - lb.loss[i]) <= 1e-5 * fabs(lb.loss[i]),
          "step %u: loss %.9g with F16-resident weights, %.9g widened", i, la.loss[i],
          lb.loss[i]);
  CHECK(la.loss[la.n - 1] < la.loss[0], "the F16 model's loss went from %g to %g", la.loss[0],
        la.loss[la.n - 1]);
  greedy(f16, lora_a, a);
  greedy(f32, lora_b, b);
  CHECK(strcmp(a, b) == 0, "the adapters generate differently:\n%s\n%s", a, b);
  asu_lora_destroy(lora_a);
  asu_lora_destroy(lora_b);
}

/* Saving widens F16 matrices into an F32 file that generates the same text. */
static void test_save_widens(asu_model *f16) {
  char path[] = "/tmp/asu-test-f16-saved.XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp failed");
  close(fd);
  asu_error err;
  int rc = asu_model_save(f16, path, &err);
  CHECK(rc == ASU_OK, "save: %s", err.message);
  asu_model *saved = rc ? NULL : load(path, NULL);
  if (saved) {
    CHECK(asu_buffer_element(saved->layers[0][ASU_W_Q].buf) == ASU_ELEMENT_F32,
          "the saved copy's q matrix is not F32");
    char a[2048], b[2048];
    greedy(f16, NULL, a);
    greedy(saved, NULL, b);
    CHECK(strcmp(a, b) == 0, "the saved copy generates differently:\n%s\n%s", a, b);
    asu_model_destroy(saved);
  }
  unlink(path);
}

/* Fine-tuning trains every weight in F32, so it widens the F16 matrices first. */
static void test_finetune_widens(asu_model *f16) {
  asu_dataset data = {0};
  asu_error err;
  asu_dataset_add(&data, "What is the name of Lily's dog?", "Lily's dog is called Max.", &err);
  asu_finetune_config cfg;
  asu_finetune_defaults(&cfg);
  cfg.steps = 3;
  loss_log log = {0};
  int rc = asu_finetune(f16, &cfg, &data, record, &log, &err);
  CHECK(rc == ASU_OK, "finetune: %s", err.message);
  CHECK(asu_buffer_element(f16->layers[0][ASU_W_Q].buf) == ASU_ELEMENT_F32,
        "fine-tuning left the q matrix as F16");
  CHECK(log.n == 4, "%u fine-tuning progress reports", log.n);
  CHECK(log.loss[3] < log.loss[0], "fine-tuning loss went from %g to %g", log.loss[0],
        log.loss[3]);
  asu_dataset_free(&data);
}

int main(void) {
  char shared[1024];
  if (shared_model_path(shared, sizeof shared)) return 1;
  char path[] = "/tmp/asu-test-f16.XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || write_f16_copy(shared, path)) return 1;
  close(fd);
  asu_model *f16 = load(path, NULL);
  asu_model *f32 = load(path, "f32");
  if (f16 && f32) {
    test_resident_matches_widened(f16, f32);
    test_save_widens(f16);
    test_finetune_widens(f16);
  }
  asu_model_destroy(f16);
  asu_model_destroy(f32);
  unlink(path);
  return TEST_SUMMARY();
}
