/* Job records on disk, so that a restarted server lists its jobs and resumes interrupted ones.
   Each job has a directory <jobs_dir>/<id>/ holding job.json (the snapshot and the settings),
   the examples as forget.jsonl, retain.jsonl and heldout.jsonl, the prompt template as
   template.txt when the job has one, and checkpoint/ for the trainer's checkpoints. The
   examples and checkpoints are removed once a job ends; job.json stays. */
#ifndef ASU_JOB_STORE_H
#define ASU_JOB_STORE_H

#include "jobs.h"

/* Writes the examples and the template of a new job into its directory (created). */
int asu_job_store_save_spec(const char *dir, const asu_job_spec *spec, asu_error *err);
/* Writes job.json atomically. */
int asu_job_store_save_record(const char *dir, const asu_job_snapshot *snap,
                              const asu_job_spec *spec, asu_error *err);
/* Reads job.json into snap and the settings into spec; with_data also reads the examples and
   the template (for a job that can still run). */
int asu_job_store_load(const char *dir, bool with_data, asu_job_snapshot *snap,
                       asu_job_spec *spec, asu_error *err);
/* The step that the checkpoint in <dir>/checkpoint resumes from, 0 when there is none. */
uint32_t asu_job_store_checkpoint_step(const char *dir);
/* Removes the examples, the template and the checkpoints of a job that ended. */
void asu_job_store_drop_data(const char *dir);

#endif
