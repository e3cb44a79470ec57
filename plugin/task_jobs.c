#include "task_jobs.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "asu_log.h"
#include "asu_tofu_eval.h"
#include "fsutil.h"
#include "rpc.h"

/* Moves the finished partial file to path without replacing a file that appeared there
   meanwhile (link fails when path exists), and removes the partial file. */
static int publish(const char *partial, const char *path, int rc, asu_error *err) {
  if (!rc && link(partial, path) != 0)
    rc = asu_error_set(err, errno == EEXIST ? ASU_ERR_PRECONDITION : ASU_ERR_IO,
                       "cannot write %s: %s; the job's output was not kept", path,
                       errno == EEXIST ? "a file of that name appeared while the job ran"
                                       : strerror(errno));
  unlink(partial);
  return rc;
}

static int save_new(asu_model *m, const char *path, const char *job_id, asu_error *err) {
  char partial[PATH_MAX];
  snprintf(partial, sizeof partial, "%s.partial-%s", path, job_id);
  return publish(partial, path, asu_model_save(m, partial, err), err);
}

int asu_finetune_job_run(asu_model *served, const char *device, const asu_job_spec *spec,
                         const char *job_id, asu_progress_fn on_progress, void *user,
                         asu_error *err) {
  asu_finetune_config cfg = spec->finetune;
  cfg.prompt_template = spec->prompt_template;
  asu_log_info("job %s: fine-tuning a copy of %s on %zu examples for %u steps, into %s", job_id,
               asu_model_path(served), spec->forget.count, cfg.steps, spec->output_path);
  asu_model *copy = NULL;
  int rc = asu_model_load(asu_model_path(served), device, &copy, err);
  if (rc) asu_error_wrap(err, "loading a copy of the model to fine-tune: ");
  if (!rc) rc = asu_finetune(copy, &cfg, &spec->forget, on_progress, user, err);
  if (!rc) rc = save_new(copy, spec->output_path, job_id, err);
  asu_model_destroy(copy);
  return rc;
}

/* ---- Evaluation ---- */

typedef struct split_progress {
  asu_progress_fn on_progress;
  void *user;
} split_progress;

static int report_split(void *user, unsigned done, unsigned total, const char *name) {
  (void)name;
  split_progress *p = user;
  asu_progress progress = {.step = done, .total_steps = total, .loss = NAN, .forget = NAN,
                           .retain = NAN, .heldout_nll = NAN};
  return p->on_progress(p->user, &progress);
}

/* The result with the adapter measured, whole into *full (malloc'd) and without its
   per-question arrays into out. */
static int summarise(const char *json, const asu_adapter_info *info, char **full, char *out,
                     size_t size, asu_error *err) {
  cJSON *j = cJSON_Parse(json);
  cJSON_AddStringToObject(j, "adapter", info->name);
  cJSON_AddNumberToObject(j, "adapter_version", info->version);
  *full = j ? cJSON_Print(j) : NULL;
  const cJSON *split;
  cJSON_ArrayForEach(split, cJSON_GetObjectItemCaseSensitive(j, "splits")) {
    cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)split, "truth_ratios");
    cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)split, "rouge_l_per_question");
    cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)split, "generated");
  }
  char *text = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  int rc = *full && text && strlen(text) < size ? ASU_OK
                                       : asu_error_set(err, ASU_ERR_INTERNAL, "the evaluation "
                                                       "summary does not fit %zu bytes", size);
  if (!rc) snprintf(out, size, "%s", text);
  free(text);
  return rc;
}

static int write_result(const char *json, const char *path, const char *job_id,
                        asu_error *err) {
  char partial[PATH_MAX];
  snprintf(partial, sizeof partial, "%s.partial-%s", path, job_id);
  return publish(partial, path, asu_fs_write_atomic(partial, json, strlen(json), err), err);
}

int asu_evaluate_job_run(asu_model *served, asu_registry *reg, const asu_job_spec *spec,
                         const char *job_id, asu_progress_fn on_progress, void *user,
                         char *result, size_t size, asu_error *err) {
  const asu_eval_job_settings *e = &spec->evaluation;
  const asu_lora *lora = NULL;
  asu_adapter_ref *ref = NULL;
  asu_adapter_info info;
  memset(&info, 0, sizeof info);
  int rc = asu_registry_pin(reg, e->adapter, &lora, &ref, &info, err);
  if (rc) return asu_error_wrap(err, "the adapter to evaluate: ");
  asu_log_info("job %s: evaluating %s on %s", job_id, info.name[0] ? info.name : "the model alone",
               e->tofu_dir);
  split_progress progress = {on_progress, user};
  asu_tofu_eval_options o = {
      .tofu_dir = e->tofu_dir, .forget_split = e->forget_split,
      .reference_path = e->reference[0] ? e->reference : NULL,
      .unprotected_path = e->unprotected[0] ? e->unprotected : NULL,
      .vocabulary_path = e->vocabulary[0] ? e->vocabulary : NULL,
      .max_tokens = e->max_tokens, .limit = e->limit, .on_split = report_split,
      .user = &progress,
  };
  char *json = NULL;
  rc = asu_tofu_eval(served, lora, &o, &json, err);
  if (ref) asu_registry_unpin(reg, ref);
  char *full = NULL;
  if (!rc) rc = summarise(json, &info, &full, result, size, err);
  if (!rc && spec->output_path[0]) rc = write_result(full, spec->output_path, job_id, err);
  free(full);
  free(json);
  return rc;
}
