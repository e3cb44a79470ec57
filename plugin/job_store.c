#include "job_store.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "asu_log.h"
#include "fsutil.h"

#define RECORD_FILE "job.json"
#define TEMPLATE_FILE "template.txt"
#define CHECKPOINT_DIR "checkpoint"

static const char *const data_files[] = {"forget.jsonl", "retain.jsonl", "heldout.jsonl"};

static int write_examples(const char *path, const asu_dataset *ds, asu_error *err) {
  size_t cap = 4096, len = 0;
  char *text = malloc(cap);
  int rc = text ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < ds->count && !rc; i++) {
    cJSON *o = cJSON_CreateObject();
    if (ds->examples[i].question) {
      cJSON_AddStringToObject(o, "question", ds->examples[i].question);
      cJSON_AddStringToObject(o, "answer", ds->examples[i].answer);
    } else {
      cJSON_AddStringToObject(o, "text", ds->examples[i].answer);
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = line ? strlen(line) : 0;
    if (line && len + n + 2 > cap) {
      cap = 2 * (len + n + 2);
      char *grown = realloc(text, cap);
      if (grown) text = grown;
      else rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
    }
    if (!line) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
    if (!rc) {
      memcpy(text + len, line, n);
      len += n;
      text[len++] = '\n';
    }
    free(line);
  }
  if (!rc) rc = asu_fs_write_atomic(path, text, len, err);
  free(text);
  return rc;
}

int asu_job_store_save_spec(const char *dir, const asu_job_spec *spec, asu_error *err) {
  char path[PATH_MAX];
  int rc = asu_fs_mkdir_p(dir, err);
  snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_DIR);
  if (!rc) rc = asu_fs_mkdir_p(path, err);
  const asu_dataset *sets[] = {&spec->forget, &spec->retain, &spec->heldout};
  for (int i = 0; i < 3 && !rc; i++) {
    if (i == 2 && !spec->has_heldout) break;
    snprintf(path, sizeof path, "%s/%s", dir, data_files[i]);
    rc = write_examples(path, sets[i], err);
  }
  if (!rc && spec->prompt_template) {
    snprintf(path, sizeof path, "%s/%s", dir, TEMPLATE_FILE);
    rc = asu_fs_write_atomic(path, spec->prompt_template, strlen(spec->prompt_template), err);
  }
  return rc;
}

/* ---- job.json ---- */

static void add_number(cJSON *o, const char *key, double v) {
  if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
}

/* A 64-bit value as a decimal string, since JSON numbers lose bits past 2^53. */
static void add_u64(cJSON *o, const char *key, uint64_t v) {
  char text[24];
  snprintf(text, sizeof text, "%llu", (unsigned long long)v);
  cJSON_AddStringToObject(o, key, text);
}

static cJSON *settings_json(const asu_job_spec *spec) {
  const asu_unlearn_config *c = &spec->cfg;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "method", c->method);
  cJSON_AddNumberToObject(o, "tau", c->tau);
  add_u64(o, "tau_layers", c->tau_layers);
  cJSON_AddNumberToObject(o, "lora_rank", c->lora_rank);
  cJSON_AddNumberToObject(o, "lora_alpha", c->lora_alpha);
  cJSON_AddNumberToObject(o, "lora_targets", c->lora_targets);
  cJSON_AddNumberToObject(o, "learning_rate", c->learning_rate);
  cJSON_AddNumberToObject(o, "weight_decay", c->weight_decay);
  cJSON_AddNumberToObject(o, "beta1", c->beta1);
  cJSON_AddNumberToObject(o, "beta2", c->beta2);
  cJSON_AddNumberToObject(o, "adam_eps", c->adam_eps);
  cJSON_AddNumberToObject(o, "steps", c->steps);
  cJSON_AddNumberToObject(o, "forget_weight", c->forget_weight);
  cJSON_AddNumberToObject(o, "retain_weight", c->retain_weight);
  add_u64(o, "seed", c->seed);
  cJSON_AddNumberToObject(o, "checkpoint_every", c->checkpoint_every);
  cJSON_AddNumberToObject(o, "beta", c->beta);
  cJSON_AddNumberToObject(o, "gamma", c->gamma);
  cJSON_AddBoolToObject(o, "activate", spec->activate);
  cJSON_AddBoolToObject(o, "has_heldout", spec->has_heldout);
  cJSON_AddBoolToObject(o, "has_template", spec->prompt_template != NULL);
  cJSON_AddStringToObject(o, "start_adapter", spec->start_adapter);
  cJSON_AddNumberToObject(o, "start_version", spec->start_version);
  if (spec->kind == ASU_JOB_EVALUATE) {
    const asu_eval_job_settings *e = &spec->evaluation;
    cJSON_AddStringToObject(o, "kind", "evaluate");
    cJSON_AddStringToObject(o, "output_path", spec->output_path);
    cJSON_AddStringToObject(o, "eval_adapter", e->adapter);
    cJSON_AddStringToObject(o, "tofu_dir", e->tofu_dir);
    cJSON_AddStringToObject(o, "forget_split", e->forget_split);
    cJSON_AddStringToObject(o, "reference", e->reference);
    cJSON_AddStringToObject(o, "unprotected", e->unprotected);
    cJSON_AddStringToObject(o, "vocabulary", e->vocabulary);
    cJSON_AddNumberToObject(o, "limit", e->limit);
    cJSON_AddNumberToObject(o, "max_tokens", e->max_tokens);
  }
  if (spec->kind == ASU_JOB_FINETUNE) {
    cJSON_AddStringToObject(o, "kind", "finetune");
    cJSON_AddStringToObject(o, "output_path", spec->output_path);
    cJSON_AddNumberToObject(o, "finetune_steps", spec->finetune.steps);
    cJSON_AddNumberToObject(o, "finetune_learning_rate", spec->finetune.learning_rate);
  }
  return o;
}

int asu_job_store_save_record(const char *dir, const asu_job_snapshot *s,
                              const asu_job_spec *spec, asu_error *err) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", s->id);
  cJSON_AddStringToObject(o, "adapter_name", s->adapter_name);
  cJSON_AddStringToObject(o, "method", s->method);
  cJSON_AddStringToObject(o, "state", asu_job_state_name(s->state));
  cJSON_AddNumberToObject(o, "step", s->step);
  cJSON_AddNumberToObject(o, "total_steps", s->total_steps);
  add_number(o, "loss", s->loss);
  add_number(o, "forget_loss", s->forget_loss);
  add_number(o, "retain_loss", s->retain_loss);
  add_number(o, "heldout_nll", s->heldout_nll);
  add_number(o, "initial_forget_loss", s->initial_forget_loss);
  add_number(o, "initial_retain_loss", s->initial_retain_loss);
  add_number(o, "initial_heldout_nll", s->initial_heldout_nll);
  cJSON_AddStringToObject(o, "error", s->error);
  cJSON_AddNumberToObject(o, "adapter_version", s->adapter_version);
  cJSON_AddNumberToObject(o, "created_unix", (double)s->created_unix);
  cJSON_AddNumberToObject(o, "started_unix", (double)s->started_unix);
  cJSON_AddNumberToObject(o, "finished_unix", (double)s->finished_unix);
  if (s->result[0]) cJSON_AddStringToObject(o, "result", s->result);
  cJSON_AddItemToObject(o, "settings", settings_json(spec));
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  if (!text) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, RECORD_FILE);
  int rc = asu_fs_write_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

static double get_number(const cJSON *o, const char *key, double fallback) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : fallback;
}

static uint64_t get_u64(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? strtoull(v->valuestring, NULL, 10) : 0;
}

static void get_string(const cJSON *o, const char *key, char *out, size_t size) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  snprintf(out, size, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static enum asu_job_state parse_state(const char *name) {
  for (int s = ASU_JOB_QUEUED; s <= ASU_JOB_INTERRUPTED; s++)
    if (!strcmp(name, asu_job_state_name((enum asu_job_state)s))) return (enum asu_job_state)s;
  return 0;
}

static void read_settings(const cJSON *o, asu_job_spec *spec) {
  asu_unlearn_config *c = &spec->cfg;
  asu_unlearn_defaults(c);
  double method = get_number(o, "method", 0);
  c->method = method >= 0 && method < ASU_METHOD_COUNT ? (enum asu_method)method
                                                       : ASU_METHOD_ASU_GD;
  c->beta = (float)get_number(o, "beta", 0);
  c->gamma = (float)get_number(o, "gamma", 0);
  c->tau = (float)get_number(o, "tau", c->tau);
  c->tau_layers = get_u64(o, "tau_layers");
  c->lora_rank = (uint32_t)get_number(o, "lora_rank", c->lora_rank);
  c->lora_alpha = (float)get_number(o, "lora_alpha", c->lora_alpha);
  c->lora_targets = (uint32_t)get_number(o, "lora_targets", c->lora_targets);
  c->learning_rate = (float)get_number(o, "learning_rate", c->learning_rate);
  c->weight_decay = (float)get_number(o, "weight_decay", c->weight_decay);
  c->beta1 = (float)get_number(o, "beta1", c->beta1);
  c->beta2 = (float)get_number(o, "beta2", c->beta2);
  c->adam_eps = (float)get_number(o, "adam_eps", c->adam_eps);
  c->steps = (uint32_t)get_number(o, "steps", c->steps);
  c->forget_weight = (float)get_number(o, "forget_weight", c->forget_weight);
  c->retain_weight = (float)get_number(o, "retain_weight", c->retain_weight);
  c->seed = get_u64(o, "seed");
  c->checkpoint_every = (uint32_t)get_number(o, "checkpoint_every", 0);
  spec->activate = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "activate"));
  spec->has_heldout = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "has_heldout"));
  get_string(o, "start_adapter", spec->start_adapter, sizeof spec->start_adapter);
  spec->start_version = (uint32_t)get_number(o, "start_version", 0);
  char kind[16];
  get_string(o, "kind", kind, sizeof kind);
  if (!strcmp(kind, "evaluate")) {
    asu_eval_job_settings *e = &spec->evaluation;
    spec->kind = ASU_JOB_EVALUATE;
    get_string(o, "output_path", spec->output_path, sizeof spec->output_path);
    get_string(o, "eval_adapter", e->adapter, sizeof e->adapter);
    get_string(o, "tofu_dir", e->tofu_dir, sizeof e->tofu_dir);
    get_string(o, "forget_split", e->forget_split, sizeof e->forget_split);
    get_string(o, "reference", e->reference, sizeof e->reference);
    get_string(o, "unprotected", e->unprotected, sizeof e->unprotected);
    get_string(o, "vocabulary", e->vocabulary, sizeof e->vocabulary);
    e->limit = (uint32_t)get_number(o, "limit", 0);
    e->max_tokens = (uint32_t)get_number(o, "max_tokens", 0);
  }
  if (!strcmp(kind, "finetune")) {
    spec->kind = ASU_JOB_FINETUNE;
    get_string(o, "output_path", spec->output_path, sizeof spec->output_path);
    asu_finetune_defaults(&spec->finetune);
    spec->finetune.steps = (uint32_t)get_number(o, "finetune_steps", spec->finetune.steps);
    spec->finetune.learning_rate =
        (float)get_number(o, "finetune_learning_rate", spec->finetune.learning_rate);
  }
}

static void read_snapshot(const cJSON *o, asu_job_snapshot *s) {
  memset(s, 0, sizeof *s);
  get_string(o, "id", s->id, sizeof s->id);
  get_string(o, "adapter_name", s->adapter_name, sizeof s->adapter_name);
  get_string(o, "method", s->method, sizeof s->method);
  char state[32];
  get_string(o, "state", state, sizeof state);
  s->state = parse_state(state);
  s->step = (uint32_t)get_number(o, "step", 0);
  s->total_steps = (uint32_t)get_number(o, "total_steps", 0);
  s->loss = get_number(o, "loss", NAN);
  s->forget_loss = get_number(o, "forget_loss", NAN);
  s->retain_loss = get_number(o, "retain_loss", NAN);
  s->heldout_nll = get_number(o, "heldout_nll", NAN);
  s->initial_forget_loss = get_number(o, "initial_forget_loss", NAN);
  s->initial_retain_loss = get_number(o, "initial_retain_loss", NAN);
  s->initial_heldout_nll = get_number(o, "initial_heldout_nll", NAN);
  get_string(o, "error", s->error, sizeof s->error);
  s->adapter_version = (uint32_t)get_number(o, "adapter_version", 0);
  s->created_unix = (int64_t)get_number(o, "created_unix", 0);
  s->started_unix = (int64_t)get_number(o, "started_unix", 0);
  s->finished_unix = (int64_t)get_number(o, "finished_unix", 0);
  get_string(o, "result", s->result, sizeof s->result);
  s->seq = 1;
}

static int load_data(const char *dir, asu_job_spec *spec, bool has_template, asu_error *err) {
  char path[PATH_MAX];
  asu_dataset *sets[] = {&spec->forget, &spec->retain, &spec->heldout};
  for (int i = 0; i < 3; i++) {
    if (i == 2 && !spec->has_heldout) break;
    snprintf(path, sizeof path, "%s/%s", dir, data_files[i]);
    int rc = asu_dataset_load(path, sets[i], err);
    if (rc) return rc;
  }
  if (!has_template) return ASU_OK;
  snprintf(path, sizeof path, "%s/%s", dir, TEMPLATE_FILE);
  return asu_fs_read_small(path, 65536, &spec->prompt_template, NULL, err);
}

int asu_job_store_load(const char *dir, bool with_data, asu_job_snapshot *snap,
                       asu_job_spec *spec, asu_error *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, RECORD_FILE);
  char *text = NULL;
  int rc = asu_fs_read_small(path, 1 << 20, &text, NULL, err);
  if (rc) return rc;
  cJSON *o = cJSON_Parse(text);
  free(text);
  if (!o) return asu_error_set(err, ASU_ERR_FORMAT, "%s is not valid JSON", path);
  read_snapshot(o, snap);
  memset(spec, 0, sizeof *spec);
  snprintf(spec->adapter_name, sizeof spec->adapter_name, "%s", snap->adapter_name);
  const cJSON *settings = cJSON_GetObjectItemCaseSensitive(o, "settings");
  read_settings(settings, spec);
  bool has_template = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(settings, "has_template"));
  cJSON_Delete(o);
  snprintf(snap->start_adapter, sizeof snap->start_adapter, "%s", spec->start_adapter);
  snap->start_version = spec->start_version;
  snprintf(snap->output_path, sizeof snap->output_path, "%s", spec->output_path);
  bool named = spec->kind != ASU_JOB_UNLEARN ? !snap->adapter_name[0]
                                             : asu_adapter_name_valid(snap->adapter_name);
  if (!snap->id[0] || !snap->state || !named)
    return asu_error_set(err, ASU_ERR_FORMAT, "%s lacks a valid id, state or adapter_name", path);
  if (with_data && (rc = load_data(dir, spec, has_template, err))) asu_job_spec_free(spec);
  return rc;
}

uint32_t asu_job_store_checkpoint_step(const char *dir) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s/checkpoint.json", dir, CHECKPOINT_DIR);
  char *text = NULL;
  asu_error err;
  if (asu_fs_read_small(path, 65536, &text, NULL, &err) != ASU_OK) return 0;
  cJSON *o = cJSON_Parse(text);
  free(text);
  uint32_t step = o ? (uint32_t)get_number(o, "next_step", 0) : 0;
  cJSON_Delete(o);
  return step;
}

void asu_job_store_drop_data(const char *dir) {
  char path[PATH_MAX];
  asu_error err;
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, data_files[i]);
    unlink(path);
  }
  snprintf(path, sizeof path, "%s/%s", dir, TEMPLATE_FILE);
  unlink(path);
  snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_DIR);
  if (asu_fs_remove_tree(path, &err) != ASU_OK) asu_log_warn("%s", err.message);
}
