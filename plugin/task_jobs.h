/* The jobs other than unlearning. A finetune job trains a copy of the served model and writes
   it as a new GGUF file. An evaluation job measures the served model by the TOFU metrics. The
   served model keeps serving, unchanged, during both. */
#ifndef ASU_TASK_JOBS_H
#define ASU_TASK_JOBS_H

#include "jobs.h"
#include "registry.h"

/* Loads a second copy of served's file on the device that `device` selects, trains it on
   spec->forget with spec->finetune and writes it to spec->output_path, which must not exist
   then (an existing file is never replaced). */
int asu_finetune_job_run(asu_model *served, const char *device, const asu_job_spec *spec,
                         const char *job_id, asu_progress_fn on_progress, void *user,
                         asu_error *err);

/* Measures the served model with spec->evaluation.adapter pinned, one progress report per
   split (returning nonzero cancels), writes the full result to spec->output_path when set (a
   new file) and the summary JSON into result. */
int asu_evaluate_job_run(asu_model *served, asu_registry *reg, const asu_job_spec *spec,
                         const char *job_id, asu_progress_fn on_progress, void *user,
                         char *result, size_t size, asu_error *err);

#endif
