/* Development stand-in for the engine (meson -Ddev_engine_stub=true): trivial versions of the
   asu_engine.h functions, and of the dataset loader, so the service layer can be built and
   tested before the real engine links. Generation echoes words; unlearning sleeps a little per
   step; adapters are a small config file. Never part of a release build. The definitions are
   weak so that real ones, where linked, take precedence. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "asu_dataset.h"
#include "asu_engine.h"

#define WEAK __attribute__((weak))

struct asu_model {
  asu_model_config cfg;
  char *path;
};

struct asu_lora {
  uint32_t rank;
};

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

WEAK int asu_model_load(const char *gguf_path, const char *device_selector, asu_model **out,
                        asu_error *err) {
  (void)device_selector;
  FILE *f = fopen(gguf_path, "rb");
  if (!f) return asu_error_set(err, ASU_ERR_IO, "opening %s: %s", gguf_path, strerror(errno));
  fclose(f);
  asu_model *m = calloc(1, sizeof *m);
  m->cfg = (asu_model_config){64, 5, 8, 4, 8, 172, 512, 512, 1e-5f, 10000.0f};
  m->path = strdup(gguf_path);
  *out = m;
  return ASU_OK;
}

WEAK void asu_model_destroy(asu_model *m) {
  if (m) free(m->path);
  free(m);
}

WEAK const asu_model_config *asu_model_get_config(const asu_model *m) { return &m->cfg; }
WEAK const char *asu_model_path(const asu_model *m) { return m->path; }

WEAK int asu_generate(asu_model *m, const asu_lora *adapter, const char *prompt,
                      const asu_sampling *sampling, asu_piece_fn on_piece, void *user,
                      asu_error *err) {
  (void)m;
  (void)err;
  static const char *story[] = {" once", " upon", " a", " time", " there", " was", " a",
                                " little", " cat"};
  char piece[64];
  for (uint32_t i = 0; i < sampling->max_tokens; i++) {
    if (i == 0 && adapter) snprintf(piece, sizeof piece, "[rank %u]", adapter->rank);
    else if (i == 1) snprintf(piece, sizeof piece, " caf\xC3"); /* "é" split over two pieces */
    else if (i == 2) snprintf(piece, sizeof piece, "\xA9");
    else snprintf(piece, sizeof piece, "%s", story[i % 9]);
    (void)prompt;
    if (on_piece(user, (int32_t)i + 1, piece, strlen(piece))) return ASU_OK;
    nap_ms(5);
  }
  return ASU_OK;
}

WEAK void asu_unlearn_defaults(asu_unlearn_config *cfg) {
  *cfg = (asu_unlearn_config){.method = ASU_METHOD_ASU_GD, .tau = 2.0f, .lora_rank = 8,
                              .lora_alpha = 16.0f, .lora_targets = ASU_LORA_ALL,
                              .learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f,
                              .adam_eps = 1e-8f, .steps = 20, .forget_weight = 1.0f,
                              .retain_weight = 1.0f, .seed = 1};
}

WEAK int asu_unlearn(asu_model *m, const asu_unlearn_config *cfg, const asu_dataset *forget,
                     const asu_dataset *retain, const asu_dataset *heldout,
                     asu_progress_fn on_progress, void *user, asu_lora **out, asu_error *err) {
  (void)m;
  (void)retain;
  for (uint32_t s = 0; s <= cfg->steps; s++) {
    double f = 1.0 / (1.0 + s), r = 0.5;
    asu_progress p = {s, cfg->steps, cfg->forget_weight * f + cfg->retain_weight * r, f, r,
                      heldout || s % 5 == 0 ? 2.0 + 0.01 * s : NAN};
    if (on_progress && on_progress(user, &p))
      return asu_error_set(err, ASU_ERR_CANCELLED, "cancelled at step %u", s);
    if (s < cfg->steps) nap_ms(30 + (long)(forget->count % 3));
  }
  asu_lora *a = calloc(1, sizeof *a);
  a->rank = cfg->lora_rank;
  *out = a;
  return ASU_OK;
}

WEAK int asu_lora_save(const asu_lora *a, const char *dir, asu_error *err) {
  char path[4096];
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return asu_error_set(err, ASU_ERR_IO, "creating %s: %s", dir, strerror(errno));
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  FILE *f = fopen(path, "w");
  if (!f) return asu_error_set(err, ASU_ERR_IO, "creating %s: %s", path, strerror(errno));
  fprintf(f, "{\"r\": %u}\n", a->rank);
  fclose(f);
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  f = fopen(path, "w");
  if (!f) return asu_error_set(err, ASU_ERR_IO, "creating %s: %s", path, strerror(errno));
  fputs("stub", f);
  fclose(f);
  return ASU_OK;
}

WEAK int asu_lora_load(asu_model *m, const char *dir, asu_lora **out, asu_error *err) {
  (void)m;
  char path[4096];
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  FILE *f = fopen(path, "r");
  if (!f) return asu_error_set(err, ASU_ERR_IO, "opening %s: %s", path, strerror(errno));
  unsigned r = 0;
  int ok = fscanf(f, " {\"r\": %u}", &r) == 1 && r > 0;
  fclose(f);
  if (!ok) return asu_error_set(err, ASU_ERR_FORMAT, "%s: no rank", path);
  asu_lora *a = calloc(1, sizeof *a);
  a->rank = r;
  *out = a;
  return ASU_OK;
}

WEAK void asu_lora_destroy(asu_lora *a) { free(a); }
WEAK uint32_t asu_lora_rank(const asu_lora *a) { return a->rank; }

WEAK int asu_dataset_add(asu_dataset *ds, const char *question, const char *answer,
                         asu_error *err) {
  asu_example *e = realloc(ds->examples, (ds->count + 1) * sizeof *e);
  if (!e) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  ds->examples = e;
  e[ds->count].question = question ? strdup(question) : NULL;
  e[ds->count].answer = strdup(answer);
  ds->count++;
  return ASU_OK;
}

WEAK void asu_dataset_free(asu_dataset *ds) {
  for (size_t i = 0; i < ds->count; i++) {
    free(ds->examples[i].question);
    free(ds->examples[i].answer);
  }
  free(ds->examples);
  ds->examples = NULL;
  ds->count = 0;
}

WEAK int asu_dataset_load(const char *path, asu_dataset *out, asu_error *err) {
  FILE *f = fopen(path, "r");
  if (!f) return asu_error_set(err, ASU_ERR_IO, "opening %s: %s", path, strerror(errno));
  memset(out, 0, sizeof *out);
  char *line = NULL;
  size_t cap = 0;
  int lineno = 0, rc = ASU_OK;
  while (rc == ASU_OK && getline(&line, &cap, f) >= 0) {
    lineno++;
    if (strspn(line, " \t\r\n") == strlen(line)) continue;
    cJSON *j = cJSON_Parse(line);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "question");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "answer");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
    if (cJSON_IsString(q) && cJSON_IsString(a))
      rc = asu_dataset_add(out, q->valuestring, a->valuestring, err);
    else if (cJSON_IsString(t))
      rc = asu_dataset_add(out, NULL, t->valuestring, err);
    else
      rc = asu_error_set(err, ASU_ERR_FORMAT, "%s:%d: not a question/answer or text object",
                         path, lineno);
    cJSON_Delete(j);
  }
  free(line);
  fclose(f);
  if (rc != ASU_OK) asu_dataset_free(out);
  return rc;
}
