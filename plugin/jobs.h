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
  int64_t created_unix, started_unix, finished_unix;
  uint64_t seq; /* increases with every change */
} asu_job_snapshot;

/* What a job trains. The job takes ownership of the datasets and the template. */
typedef struct asu_job_spec {
  char adapter_name[65];
  asu_unlearn_config cfg;
  char *prompt_template; /* NULL: the default; cfg.prompt_template is set from it */
  asu_dataset forget, retain, heldout;
  bool has_heldout;
  bool activate;
} asu_job_spec;

void asu_job_spec_free(asu_job_spec *spec);

typedef struct asu_jobs asu_jobs;

/* queue_limit: most jobs waiting in QUEUED; log_every: progress log period in steps (0: about
   ten lines a job). */
int asu_jobs_create(asu_model *m, asu_registry *reg, unsigned queue_limit, unsigned log_every,
                    asu_jobs **out, asu_error *err);
/* Cancels the running and queued jobs, joins the job thread, frees everything. */
void asu_jobs_destroy(asu_jobs *j);

/* Queues a job. Fails with ASU_ERR_LIMIT when the queue is full and ASU_ERR_PRECONDITION when
   a queued or running job already trains that adapter name. On success the spec is moved into
   the job (zeroed in the caller). request_id is only logged. */
int asu_jobs_submit(asu_jobs *j, asu_job_spec *spec, const char *request_id,
                    asu_job_snapshot *out, asu_error *err);

int asu_jobs_get(asu_jobs *j, const char *id, asu_job_snapshot *out, asu_error *err);

/* Cancels a queued job at once. A running job is requested to stop, and the call waits up to
   wait_ms for it to end. */
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
