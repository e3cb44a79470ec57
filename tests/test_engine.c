/* The engine's public API on the shared model: sampling, unlearning runs and their errors,
   fine-tuning and saving a model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asu_engine.h"
#include "asu_gguf.h"
#include "asu_safetensors.h"
#include "shared_model.h"
#include "test_util.h"

typedef struct text_buffer {
  char text[4096];
  size_t len;
} text_buffer;

static int append(void *user, int32_t token, const char *piece, size_t len) {
  (void)token;
  text_buffer *t = user;
  if (t->len + len >= sizeof t->text) return 1;
  memcpy(t->text + t->len, piece, len);
  t->len += len;
  t->text[t->len] = '\0';
  return 0;
}

static void generate(asu_model *m, const asu_lora *lora, float temperature, float top_p,
                     uint64_t seed, text_buffer *out) {
  asu_sampling s = {.max_tokens = 40, .temperature = temperature, .top_p = top_p, .seed = seed};
  asu_error err;
  memset(out, 0, sizeof *out);
  int rc = asu_generate(m, lora, "Once upon a time", &s, append, out, &err);
  CHECK(rc == ASU_OK, "generate: %s", err.message);
}

static void test_sampling(asu_model *m) {
  text_buffer greedy, nucleus, a, b, c;
  generate(m, NULL, 0.0f, 1.0f, 0, &greedy);
  generate(m, NULL, 1.0f, 1e-6f, 9, &nucleus);
  CHECK(strcmp(greedy.text, nucleus.text) == 0, "top_p near 0 keeps only the top token, so it "
        "must equal greedy:\n%s\n%s", greedy.text, nucleus.text);
  generate(m, NULL, 1.0f, 0.95f, 1234, &a);
  generate(m, NULL, 1.0f, 0.95f, 1234, &b);
  generate(m, NULL, 1.0f, 0.95f, 999, &c);
  CHECK(strcmp(a.text, b.text) == 0, "same seed, different text:\n%s\n%s", a.text, b.text);
  CHECK(strcmp(a.text, c.text) != 0, "seeds 1234 and 999 gave the same 40 tokens: %s", a.text);

  asu_sampling bad = {.max_tokens = 4, .temperature = -1.0f, .top_p = 1.0f};
  asu_error err;
  int rc = asu_generate(m, NULL, "x", &bad, append, &a, &err);
  CHECK(rc == ASU_ERR_INVALID, "negative temperature returned %d", rc);
  CHECK(strstr(err.message, "temperature") != NULL, "message: %s", err.message);
}

typedef struct progress_log {
  double first, last, first_forget;
  uint32_t reports, cancel_at;
} progress_log;

static int record(void *user, const asu_progress *p) {
  progress_log *log = user;
  if (log->reports == 0) log->first = p->loss;
  if (log->reports == 0) log->first_forget = p->forget;
  log->last = p->loss;
  log->reports++;
  return log->cancel_at && p->step >= log->cancel_at;
}

static void fill_examples(asu_dataset *forget, asu_dataset *retain) {
  asu_error err;
  asu_dataset_add(forget, "What is the name of Lily's dog?", "Lily's dog is called Max.", &err);
  asu_dataset_add(forget, "Where does Max sleep?", "Max sleeps under the big tree.", &err);
  asu_dataset_add(retain, "What color is the sky?", "The sky is blue.", &err);
  asu_dataset_add(retain, NULL, "Once upon a time, there was a little girl named Sue.", &err);
}

static void test_unlearn(asu_model *m) {
  asu_dataset forget = {0}, retain = {0};
  fill_examples(&forget, &retain);
  asu_unlearn_config cfg;
  asu_unlearn_defaults(&cfg);
  cfg.steps = 8;
  asu_error err;
  for (int method = ASU_METHOD_ASU_GD; method <= ASU_METHOD_ASU_KL; method++) {
    cfg.method = (enum asu_method)method;
    progress_log log = {0};
    asu_lora *lora = NULL;
    int rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, record, &log, &lora, &err);
    CHECK(rc == ASU_OK, "method %d: %s", method, err.message);
    CHECK(lora != NULL, "method %d: no adapter", method);
    CHECK(log.reports == cfg.steps + 1, "method %d: %u progress reports", method, log.reports);
    CHECK(log.last < log.first, "method %d: loss went from %g to %g", method, log.first, log.last);
    asu_lora_destroy(lora);
  }

  progress_log log = {.cancel_at = 2};
  asu_lora *lora = NULL;
  int rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, record, &log, &lora, &err);
  CHECK(rc == ASU_ERR_CANCELLED, "cancelled run returned %d", rc);
  CHECK(lora == NULL, "a cancelled run produced an adapter");

  cfg.tau = 0.0f;
  rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, NULL, NULL, &lora, &err);
  CHECK(rc == ASU_ERR_INVALID, "tau 0 returned %d", rc);
  CHECK(strstr(err.message, "tau") != NULL, "tau 0: %s", err.message);
  asu_unlearn_defaults(&cfg);
  cfg.tau_layers = 1ull << asu_model_get_config(m)->n_layers;
  rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, NULL, NULL, &lora, &err);
  CHECK(rc == ASU_ERR_INVALID, "smoothing a layer past the last returned %d", rc);
  CHECK(strstr(err.message, "layer") != NULL, "a layer past the last: %s", err.message);
  asu_unlearn_defaults(&cfg);
  asu_dataset empty = {0};
  rc = asu_unlearn(m, &cfg, &empty, &retain, NULL, NULL, NULL, &lora, &err);
  CHECK(rc == ASU_ERR_INVALID, "empty forget set returned %d", rc);
  CHECK(strstr(err.message, "forget") != NULL, "empty forget set: %s", err.message);
  asu_dataset_free(&forget);
  asu_dataset_free(&retain);
}

static void test_finetune_and_save(const char *model_path) {
  asu_model *m = NULL;
  asu_error err;
  CHECK(asu_model_load(model_path, NULL, &m, &err) == ASU_OK, "load: %s", err.message);
  if (!m) return;
  asu_dataset data = {0}, unused = {0};
  fill_examples(&data, &unused);
  asu_finetune_config cfg;
  asu_finetune_defaults(&cfg);
  cfg.steps = 10;
  progress_log log = {0};
  int rc = asu_finetune(m, &cfg, &data, record, &log, &err);
  CHECK(rc == ASU_OK, "finetune: %s", err.message);
  CHECK(log.last < 0.8 * log.first, "answer NLL went from %g to %g", log.first, log.last);

  char path[] = "/tmp/asu-test-model.XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp failed");
  close(fd);
  rc = asu_model_save(m, path, &err);
  CHECK(rc == ASU_OK, "save: %s", err.message);
  asu_model *saved = NULL;
  rc = asu_model_load(path, NULL, &saved, &err);
  CHECK(rc == ASU_OK, "reload: %s", err.message);
  if (saved) {
    text_buffer a, b;
    generate(m, NULL, 0.0f, 1.0f, 0, &a);
    generate(saved, NULL, 0.0f, 1.0f, 0, &b);
    CHECK(strcmp(a.text, b.text) == 0, "the saved model generates differently:\n%s\n%s", a.text,
          b.text);
    asu_model_destroy(saved);
  }
  unlink(path);
  asu_dataset_free(&data);
  asu_dataset_free(&unused);
  asu_model_destroy(m);
}

/* Exact memorisation and extraction strength: below 1 on the shared model, and 1 once
   fine-tuning has made it memorise the answers; the NLL equals asu_answer_nll's. */
static void test_memorisation(const char *model_path) {
  asu_model *m = NULL;
  asu_error err;
  CHECK(asu_model_load(model_path, NULL, &m, &err) == ASU_OK, "load: %s", err.message);
  if (!m) return;
  asu_dataset data = {0}, unused = {0};
  fill_examples(&data, &unused);
  asu_answer_stats before[2], after[2];
  double nll[2];
  CHECK(asu_answer_measure(m, NULL, NULL, &data, before, &err) == ASU_OK, "measure: %s",
        err.message);
  CHECK(asu_answer_nll(m, NULL, NULL, &data, nll, &err) == ASU_OK, "nll: %s", err.message);
  for (int i = 0; i < 2; i++) {
    CHECK(fabs(before[i].nll - nll[i]) < 1e-9, "example %d: nll %g against %g", i, before[i].nll,
          nll[i]);
    CHECK(before[i].exact_match < 1.0, "example %d: exact match %g before fine-tuning", i,
          before[i].exact_match);
    CHECK(before[i].extraction < 1.0, "example %d: extraction %g before fine-tuning", i,
          before[i].extraction);
  }
  asu_finetune_config cfg;
  asu_finetune_defaults(&cfg);
  cfg.steps = 150;
  CHECK(asu_finetune(m, &cfg, &data, NULL, NULL, &err) == ASU_OK, "finetune: %s", err.message);
  CHECK(asu_answer_measure(m, NULL, NULL, &data, after, &err) == ASU_OK, "measure: %s",
        err.message);
  for (int i = 0; i < 2; i++) {
    CHECK(after[i].exact_match == 1.0, "example %d: exact match %g after fine-tuning (nll %g)", i,
          after[i].exact_match, after[i].nll);
    CHECK(after[i].extraction == 1.0, "example %d: extraction %g after fine-tuning (nll %g)", i,
          after[i].extraction, after[i].nll);
  }
  asu_dataset_free(&data);
  asu_dataset_free(&unused);
  asu_model_destroy(m);
}

/* Writes a copy of the model without output.weight. The shared model's output matrix equals its
   embedding, so the copy, which ties them, must generate the same text. */
static void test_tied_output(asu_model *m, const char *path) {
  asu_error err;
  asu_gguf *g = NULL;
  CHECK(asu_gguf_open(path, &g, &err) == ASU_OK, "open: %s", err.message);
  if (!g) return;
  size_t n = asu_gguf_tensor_count(g), kept = 0;
  asu_gguf_out_tensor *out = calloc(n, sizeof *out);
  float **data = calloc(n, sizeof *data);
  for (size_t i = 0; i < n; i++) {
    const asu_gguf_tensor *t = asu_gguf_tensor_at(g, i);
    if (!strcmp(t->name, "output.weight")) continue;
    data[kept] = malloc(t->n_elements * sizeof(float));
    asu_gguf_tensor_to_f32(t, data[kept], t->n_elements, &err);
    out[kept] = (asu_gguf_out_tensor){.name = t->name, .n_dims = t->n_dims, .data = data[kept]};
    for (uint32_t d = 0; d < 4; d++) out[kept].dims[d] = t->dims[d];
    kept++;
  }
  CHECK(kept == n - 1, "the model has no output.weight to drop (%zu of %zu kept)", kept, n);
  char tied_path[] = "/tmp/asu-test-tied.XXXXXX";
  int fd = mkstemp(tied_path);
  close(fd);
  int rc = asu_gguf_write(tied_path, g, out, kept, &err);
  CHECK(rc == ASU_OK, "write: %s", err.message);
  asu_model *tied = NULL;
  rc = asu_model_load(tied_path, NULL, &tied, &err);
  CHECK(rc == ASU_OK, "load the tied copy: %s", err.message);
  if (tied) {
    text_buffer a, b;
    generate(m, NULL, 0.0f, 1.0f, 0, &a);
    generate(tied, NULL, 0.0f, 1.0f, 0, &b);
    CHECK(a.len > 0, "the model generated no text");
    CHECK(strcmp(a.text, b.text) == 0, "the tied copy generates differently:\n%s\n%s", a.text,
          b.text);
    asu_model_destroy(tied);
  }
  unlink(tied_path);
  for (size_t i = 0; i < kept; i++) free(data[i]);
  free(data);
  free(out);
  asu_gguf_close(g);
}

/* Mean over the forget set of its answers' NLL under lora. */
static double mean_nll(asu_model *m, const asu_lora *lora, const asu_dataset *ds) {
  double *nll = calloc(ds->count, sizeof *nll), sum = 0;
  asu_error err;
  CHECK(asu_answer_nll(m, lora, NULL, ds, nll, &err) == ASU_OK, "answer nll: %s", err.message);
  for (size_t i = 0; i < ds->count; i++) sum += nll[i];
  free(nll);
  return sum / (double)ds->count;
}

/* Each baseline method lowers its own objective over 10 steps and moves the model the way it
   should: away from the forget answers, or towards "I don't know" for idk_nll. The retain term
   is measured but has no gradient, so only the forget term moves the model: SimNPO's gradient
   almost vanishes on answers as unlikely as the tiny model's, and a retain term would then
   decide the direction. The first NPO and SimNPO terms match their formulas at the frozen
   model. */
static void test_methods(asu_model *m) {
  asu_dataset forget = {0}, retain = {0}, idk = {0};
  fill_examples(&forget, &retain);
  asu_error err;
  CHECK(asu_idk_dataset(&forget, 0, &idk, &err) == ASU_OK, "idk dataset: %s", err.message);
  double base_forget = mean_nll(m, NULL, &forget), base_idk = mean_nll(m, NULL, &idk);
  for (int method = ASU_METHOD_GA; method < ASU_METHOD_COUNT; method++) {
    const char *name = asu_method_name((enum asu_method)method);
    asu_unlearn_config cfg;
    asu_unlearn_defaults(&cfg);
    cfg.method = (enum asu_method)method;
    cfg.steps = 10;
    cfg.retain_weight = 0.0f;
    progress_log trace = {0};
    asu_lora *lora = NULL;
    int rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, record, &trace, &lora, &err);
    CHECK(rc == ASU_OK, "%s: %s", name, err.message);
    if (rc) continue;
    CHECK(trace.last < trace.first, "%s: objective went from %g to %g", name, trace.first, trace.last);
    if (method == ASU_METHOD_IDK_NLL) {
      double after = mean_nll(m, lora, &idk);
      CHECK(after < base_idk, "%s: NLL of the idk answers went from %g to %g", name, base_idk,
            after);
    } else {
      double after = mean_nll(m, lora, &forget);
      CHECK(after > base_forget, "%s: forget NLL went from %g to %g", name, base_forget, after);
    }
    if (method == ASU_METHOD_NPO)
      CHECK(fabs(trace.first_forget - 2.0 / 0.1 * log(2.0)) < 1e-4,
            "npo: first term %.6f, expected 20 log 2 at the frozen model", trace.first_forget);
    if (method == ASU_METHOD_SIMNPO) {
      double *nll = calloc(forget.count, sizeof *nll), want = 0;
      asu_answer_nll(m, NULL, NULL, &forget, nll, &err);
      for (size_t i = 0; i < forget.count; i++) want += 2.0 / 2.5 * log1p(exp(-2.5 * nll[i]));
      want /= (double)forget.count;
      CHECK(fabs(trace.first_forget - want) < 1e-4 * want, "simnpo: first term %.6f, expected %.6f",
            trace.first_forget, want);
      free(nll);
    }
    asu_lora_destroy(lora);
  }
  enum asu_method parsed;
  CHECK(asu_method_parse("simnpo", &parsed) == 0, "simnpo does not parse");
  CHECK(parsed == ASU_METHOD_SIMNPO, "simnpo parses as method %d", (int)parsed);
  CHECK(asu_method_parse("sgd", &parsed) != 0, "an unknown method parses");
  asu_dataset_free(&forget);
  asu_dataset_free(&retain);
  asu_dataset_free(&idk);
}

/* Largest absolute difference between the tensors of two saved adapters, or INFINITY when their
   tensors differ in names or sizes. */
static double adapter_difference(const char *dir_a, const char *dir_b) {
  char pa[1100], pb[1100];
  snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", dir_a);
  snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", dir_b);
  asu_st_file a = {0}, b = {0};
  asu_error err;
  double diff = INFINITY;
  if (asu_safetensors_read(pa, &a, &err) == ASU_OK && asu_safetensors_read(pb, &b, &err) == ASU_OK &&
      a.count == b.count) {
    diff = 0;
    for (size_t i = 0; i < a.count; i++) {
      const asu_st_tensor *t = asu_safetensors_find(&b, a.tensors[i].name);
      if (!t || t->n_elements != a.tensors[i].n_elements) diff = INFINITY;
      for (uint64_t k = 0; t && k < t->n_elements && isfinite(diff); k++)
        diff = fmax(diff, fabs((double)t->data[k] - a.tensors[i].data[k]));
    }
  }
  asu_safetensors_free(&a);
  asu_safetensors_free(&b);
  return diff;
}

static void save_adapter(asu_lora *lora, const char *dir) {
  asu_error err;
  CHECK(asu_lora_save(lora, dir, &err) == ASU_OK, "saving %s: %s", dir, err.message);
  asu_lora_destroy(lora);
}

/* A run cancelled after a checkpoint resumes from it and ends where an uninterrupted run ends. */
static void test_resume(asu_model *m) {
  char dir[] = "/tmp/asu-resume.XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
  char ckpt[64], whole[64], resumed[64];
  snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
  snprintf(whole, sizeof whole, "%s/whole", dir);
  snprintf(resumed, sizeof resumed, "%s/resumed", dir);
  mkdir(ckpt, 0755);
  asu_dataset forget = {0}, retain = {0};
  fill_examples(&forget, &retain);
  asu_unlearn_config cfg;
  asu_unlearn_defaults(&cfg);
  cfg.steps = 7;
  asu_error err;
  asu_lora *lora = NULL;
  int rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, NULL, NULL, &lora, &err);
  CHECK(rc == ASU_OK, "uninterrupted run: %s", err.message);
  if (lora) save_adapter(lora, whole);

  cfg.checkpoint_dir = ckpt;
  cfg.checkpoint_every = 3;
  progress_log log = {.cancel_at = 4};
  rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, record, &log, &lora, &err);
  CHECK(rc == ASU_ERR_CANCELLED, "interrupted run returned %d", rc);
  log = (progress_log){0};
  rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, record, &log, &lora, &err);
  CHECK(rc == ASU_OK, "resumed run: %s", err.message);
  CHECK(log.reports == 5, "the resumed run reported %u steps, expected steps 3 to 7", log.reports);
  if (lora) save_adapter(lora, resumed);
  double diff = adapter_difference(whole, resumed);
  CHECK(diff <= 1e-6, "resumed adapter differs from the uninterrupted one by %g", diff);

  cfg.lora_rank = 4;
  rc = asu_unlearn(m, &cfg, &forget, &retain, NULL, NULL, NULL, &lora, &err);
  CHECK(rc == ASU_ERR_INVALID, "a checkpoint of other settings returned %d", rc);
  CHECK(strstr(err.message, "another run") != NULL, "other settings: %s", err.message);
  asu_dataset_free(&forget);
  asu_dataset_free(&retain);
  char cmd[100];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "removing %s", dir);
}

int main(void) {
  char path[1024];
  asu_model *m = shared_model_path(path, sizeof path) ? NULL : load_shared_model();
  if (!m) return 1;
  test_sampling(m);
  test_unlearn(m);
  test_methods(m);
  test_resume(m);
  test_tied_output(m, path);
  asu_model_destroy(m);
  test_finetune_and_save(path);
  test_memorisation(path);
  return TEST_SUMMARY();
}
