#include "finetune_job.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "asu_log.h"
#include "rpc.h"

/* Writes m to path without replacing a file that appeared there meanwhile: the model goes to
   a partial file next to it, which is then linked to path (link fails when path exists). */
static int save_new(asu_model *m, const char *path, const char *job_id, asu_error *err) {
  char partial[PATH_MAX];
  snprintf(partial, sizeof partial, "%s.partial-%s", path, job_id);
  int rc = asu_model_save(m, partial, err);
  if (!rc && link(partial, path) != 0)
    rc = asu_error_set(err, errno == EEXIST ? ASU_ERR_PRECONDITION : ASU_ERR_IO,
                       "cannot write %s: %s; the fine-tuned model was not kept", path,
                       errno == EEXIST ? "a file of that name appeared while the job ran"
                                       : strerror(errno));
  unlink(partial);
  return rc;
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
