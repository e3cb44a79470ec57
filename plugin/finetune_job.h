/* Finetune jobs: full-weight fine-tuning of a copy of the served model, written as a new GGUF
   file. The served model keeps serving, unchanged. */
#ifndef ASU_FINETUNE_JOB_H
#define ASU_FINETUNE_JOB_H

#include "jobs.h"

/* Loads a second copy of served's file on the device that `device` selects, trains it on
   spec->forget with spec->finetune and writes it to spec->output_path, which must not exist
   then (an existing file is never replaced). */
int asu_finetune_job_run(asu_model *served, const char *device, const asu_job_spec *spec,
                         const char *job_id, asu_progress_fn on_progress, void *user,
                         asu_error *err);

#endif
