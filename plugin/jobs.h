/* Unlearning jobs: a FIFO queue served by one job thread, one job at a time. Jobs are looked up
   by id and read as snapshots, so callers never hold a pointer to a job. */
#ifndef ASU_JOBS_H
#define ASU_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#include "asu_dataset.h"
#include "asu_engine.h"
#include "asu_error.h"
#include "registry.h"

/* Numbered as asu.v1.Job.State. */
enum asu_job_state {
  ASU_JOB_QUEUED = 1,
  ASU_JOB_RUNNING = 2,
  ASU_JOB_SUCCEEDED = 3,
  ASU_JOB_FAILED = 4,
  ASU_JOB_CANCELLED = 5,
  ASU_JOB_INTERRUPTED = 6, /* stopped by a shutdown or a crash; ResumeJob continues it */
};

typedef struct asu_job_snapshot {
  char id[32];
  char adapter_name[65];
  char method[16];
  enum asu_job_state state;
  uint32_t step, total_steps;
  double loss, forget_loss, retain_loss, heldout_nll;
  double initial_forget_loss, initial_retain_loss, initial_heldout_nll;
  char error[640];
  uint32_t adapter_version;
  char start_adapter[65];  /* continual jobs: the adapter they build on, and its version */
  uint32_t start_version;
  char output_path[1024];  /* finetune jobs: the model file written; evaluation: the result file */
  char result[4096];       /* evaluation jobs: the summary JSON */
  int64_t created_unix, started_unix, finished_unix;
  uint64_t seq; /* increases with every change */
} asu_job_snapshot;

/* What a job does. Unlearning makes an adapter version. Fine-tuning writes a new model file
   from a copy of the served model, which stays as it is. Evaluation measures the served model
   by the TOFU metrics. */
enum asu_job_kind { ASU_JOB_UNLEARN, ASU_JOB_FINETUNE, ASU_JOB_EVALUATE };

/* What an evaluation job measures; the paths are resolved, under the data root. */
typedef struct asu_eval_job_settings {
  char adapter[65]; /* "" the active adapter, "none" the model alone, or a name */
  char tofu_dir[1024], forget_split[16];
  char reference[1024], unprotected[1024], vocabulary[1024]; /* "" for none */
  uint32_t limit, max_tokens;
} asu_eval_job_settings;

/* What a job trains. The job takes ownership of the datasets and the template. */
typedef struct asu_job_spec {
  enum asu_job_kind kind;
  char adapter_name[65];   /* "" for finetune jobs */
  asu_unlearn_config cfg;
  char *prompt_template; /* NULL: the default; cfg.prompt_template is set from it */
  asu_dataset forget, retain, heldout;
  bool has_heldout;
  bool activate;
  char start_adapter[65];  /* continual: build on this adapter at start_version; "" for none */
  uint32_t start_version;
  /* Finetune jobs: the settings, and the new GGUF file (resolved, under the data root). The
     examples are in forget. */
  asu_finetune_config finetune;
  char output_path[1024];  /* finetune: the model file; evaluate: the result file, or "" */
  asu_eval_job_settings evaluation;
} asu_job_spec;

void asu_job_spec_free(asu_job_spec *spec);

typedef struct asu_jobs asu_jobs;

typedef struct asu_jobs_options {
  unsigned queue_limit;      /* max jobs waiting in QUEUED */
  unsigned log_every;        /* progress log period in steps; 0: about ten lines a job */
  const char *dir;           /* where job records persist; NULL keeps them in memory only */
  unsigned checkpoint_every; /* default checkpoint period in steps; 0: none */
  unsigned dispatches_per_submit; /* training slices, to bound generation waits; 0: whole steps */
  const char *device;        /* device selector of the served model, for finetune jobs' copy */
} asu_jobs_options;

/* Creates the queue and its thread. With a directory, the jobs recorded there are listed
   again: finished ones as they ended, and the others as INTERRUPTED. */
int asu_jobs_create(asu_model *m, asu_registry *reg, const asu_jobs_options *opts,
                    asu_jobs **out, asu_error *err);
/* Stops the running job and joins the job thread. With a directory, running and queued jobs
   are recorded as INTERRUPTED so that a later server resumes them; without one they end
   CANCELLED. Frees everything. */
void asu_jobs_destroy(asu_jobs *j);

/* Queues an INTERRUPTED job again. It continues from its last checkpoint, or from the start
   when it has none. Fails with ASU_ERR_PRECONDITION for a job in another state. */
int asu_jobs_resume(asu_jobs *j, const char *id, asu_job_snapshot *out, asu_error *err);

/* Snapshots of every kept job, oldest first (malloc'd array, free with free()). */
int asu_jobs_list(asu_jobs *j, asu_job_snapshot **out, size_t *count, asu_error *err);

/* Queues a job. Fails with ASU_ERR_LIMIT when the queue is full and ASU_ERR_PRECONDITION when
   a queued or running job already trains that adapter name. On success the spec is moved into
   the job (zeroed in the caller). request_id is only logged. */
int asu_jobs_submit(asu_jobs *j, asu_job_spec *spec, const char *request_id,
                    asu_job_snapshot *out, asu_error *err);

int asu_jobs_get(asu_jobs *j, const char *id, asu_job_snapshot *out, asu_error *err);

/* Cancels a queued or interrupted job at once. A running job is requested to stop, and the call
   waits up to wait_ms for it to end. */
int asu_jobs_cancel(asu_jobs *j, const char *id, unsigned wait_ms, asu_job_snapshot *out,
                    asu_error *err);

/* Waits until the job's seq exceeds after_seq or timeout_ms passes, then fills out. */
int asu_jobs_wait(asu_jobs *j, const char *id, uint64_t after_seq, unsigned timeout_ms,
                  asu_job_snapshot *out, asu_error *err);

/* The id of a queued or running job training name, if any. */
bool asu_jobs_training(asu_jobs *j, const char *name, char job_id[32]);

static inline bool asu_job_state_terminal(enum asu_job_state s) {
  return s == ASU_JOB_SUCCEEDED || s == ASU_JOB_FAILED || s == ASU_JOB_CANCELLED;
}

const char *asu_job_state_name(enum asu_job_state s);

#endif
