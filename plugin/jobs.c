#include "jobs.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dirent.h>
#include <limits.h>

#include "asu_log.h"
#include "fsutil.h"
#include "task_jobs.h"
#include "job_store.h"
#include "rpc.h"

/* Finished jobs kept for GetJob and WatchJob; the oldest finished ones go first. */
#define ASU_JOBS_KEPT 1000

typedef struct job {
  asu_job_snapshot snap;
  asu_job_spec spec;
  bool cancel_requested;
  struct job *next;
} job;

struct asu_jobs {
  pthread_mutex_t mu;
  pthread_cond_t changed; /* any job changed */
  pthread_cond_t work;    /* a job was queued, or stop */
  pthread_t thread;
  bool thread_started;
  bool stop;
  asu_model *model;
  asu_registry *reg;
  unsigned queue_limit, log_every, checkpoint_every, dispatches_per_submit;
  char *dir;    /* NULL: records stay in memory */
  char *device; /* selector for finetune jobs' model copy; NULL: the default device */
  job *head, *tail; /* every kept job, oldest first */
  size_t count;
  uint64_t next_id;
};

const char *asu_job_state_name(enum asu_job_state s) {
  switch (s) {
  case ASU_JOB_QUEUED: return "QUEUED";
  case ASU_JOB_RUNNING: return "RUNNING";
  case ASU_JOB_SUCCEEDED: return "SUCCEEDED";
  case ASU_JOB_FAILED: return "FAILED";
  case ASU_JOB_CANCELLED: return "CANCELLED";
  case ASU_JOB_INTERRUPTED: return "INTERRUPTED";
  }
  return "STATE_UNSPECIFIED";
}

void asu_job_spec_free(asu_job_spec *spec) {
  asu_dataset_free(&spec->forget);
  asu_dataset_free(&spec->retain);
  asu_dataset_free(&spec->heldout);
  free(spec->prompt_template);
  memset(spec, 0, sizeof *spec);
}

static job *find(asu_jobs *j, const char *id) {
  for (job *b = j->head; b; b = b->next)
    if (!strcmp(b->snap.id, id)) return b;
  return NULL;
}

static void touch(asu_jobs *j, job *b) {
  b->snap.seq++;
  pthread_cond_broadcast(&j->changed);
}

static void job_dir(const asu_jobs *j, const job *b, char *out, size_t size) {
  snprintf(out, size, "%s/%s", j->dir, b->snap.id);
}

/* Writes the job's record when records persist; a failure is logged, and the job goes on. */
static void save_record(asu_jobs *j, const job *b) {
  if (!j->dir) return;
  char dir[PATH_MAX];
  job_dir(j, b, dir, sizeof dir);
  asu_error err;
  if (asu_job_store_save_record(dir, &b->snap, &b->spec, &err) != ASU_OK)
    asu_log_error("job %s: cannot save its record: %s", b->snap.id, err.message);
}

static void finish(asu_jobs *j, job *b, enum asu_job_state s, const char *error) {
  b->snap.state = s;
  b->snap.finished_unix = (int64_t)time(NULL);
  snprintf(b->snap.error, sizeof b->snap.error, "%s", error ? error : "");
  save_record(j, b);
  asu_job_spec_free(&b->spec);
  if (j->dir) {
    char dir[PATH_MAX];
    job_dir(j, b, dir, sizeof dir);
    asu_job_store_drop_data(dir);
  }
  touch(j, b);
}

/* Stops a job for a later ResumeJob: its examples and checkpoints stay on disk, and its
   settings in memory, while the examples in memory are freed. */
static void interrupt(asu_jobs *j, job *b, const char *why) {
  char dir[PATH_MAX];
  job_dir(j, b, dir, sizeof dir);
  b->snap.step = asu_job_store_checkpoint_step(dir); /* where ResumeJob continues */
  b->snap.state = ASU_JOB_INTERRUPTED;
  snprintf(b->snap.error, sizeof b->snap.error, "%s", why);
  save_record(j, b);
  asu_dataset_free(&b->spec.forget);
  asu_dataset_free(&b->spec.retain);
  asu_dataset_free(&b->spec.heldout);
  free(b->spec.prompt_template);
  b->spec.prompt_template = NULL;
  touch(j, b);
}

/* Drops the oldest finished jobs while more than ASU_JOBS_KEPT are kept. */
static void evict(asu_jobs *j) {
  job **p = &j->head;
  job *prev = NULL;
  while (j->count > ASU_JOBS_KEPT && *p) {
    job *b = *p;
    if (asu_job_state_terminal(b->snap.state)) {
      *p = b->next;
      if (j->tail == b) j->tail = prev;
      if (j->dir) {
        char dir[PATH_MAX];
        asu_error err;
        job_dir(j, b, dir, sizeof dir);
        if (asu_fs_remove_tree(dir, &err) != ASU_OK) asu_log_warn("%s", err.message);
      }
      free(b);
      j->count--;
    } else {
      prev = b;
      p = &b->next;
    }
  }
}

static void deadline_in(struct timespec *ts, unsigned ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

typedef struct progress_ctx {
  asu_jobs *jobs;
  job *job;
} progress_ctx;

static int report_progress(void *user, const asu_progress *p) {
  progress_ctx *ctx = user;
  asu_jobs *j = ctx->jobs;
  job *b = ctx->job;
  pthread_mutex_lock(&j->mu);
  b->snap.step = p->step;
  b->snap.total_steps = p->total_steps;
  b->snap.loss = p->loss;
  b->snap.forget_loss = p->forget;
  b->snap.retain_loss = p->retain;
  b->snap.heldout_nll = p->heldout_nll;
  if (p->step == 0) {
    b->snap.initial_forget_loss = p->forget;
    b->snap.initial_retain_loss = p->retain;
    b->snap.initial_heldout_nll = p->heldout_nll;
  }
  if (b->spec.cfg.checkpoint_every && p->step % b->spec.cfg.checkpoint_every == 0)
    save_record(j, b);
  touch(j, b);
  int cancel = b->cancel_requested || j->stop;
  pthread_mutex_unlock(&j->mu);
  unsigned every = j->log_every ? j->log_every : (p->total_steps >= 20 ? p->total_steps / 10 : 1);
  if (p->step == 0 || p->step == p->total_steps || p->step % every == 0)
    asu_log_info("job %s: adapter %s step %u/%u loss %.5f forget %.5f retain %.5f "
                 "heldout_nll %.5f",
                 b->snap.id, b->snap.adapter_name, p->step, p->total_steps, p->loss, p->forget,
                 p->retain, p->heldout_nll);
  return cancel;
}

/* A continual job's starting adapter, pinned for the run at the version the request saw. */
static int pin_start(asu_jobs *j, const asu_job_spec *spec, asu_unlearn_config *cfg,
                     asu_adapter_ref **ref, asu_error *err) {
  if (!spec->start_adapter[0]) return ASU_OK;
  asu_adapter_info info;
  int rc = asu_registry_pin(j->reg, spec->start_adapter, &cfg->start, ref, &info, err);
  if (rc) return asu_error_wrap(err, "the adapter to build on: ");
  if (info.version != spec->start_version)
    return asu_error_set(err, ASU_ERR_INVALID, "the job builds on adapter %s version %u, but it "
                         "is at version %u now; start a new continual job on the current one",
                         spec->start_adapter, spec->start_version, info.version);
  return ASU_OK;
}

/* Trains the adapter of an unlearning job into *lora. */
static int run_unlearn(asu_jobs *j, job *b, asu_lora **lora, asu_error *err) {
  asu_job_spec *spec = &b->spec;
  asu_unlearn_config cfg = spec->cfg;
  cfg.prompt_template = spec->prompt_template;
  cfg.dispatches_per_submit = j->dispatches_per_submit;
  char checkpoints[PATH_MAX];
  if (j->dir && cfg.checkpoint_every) {
    snprintf(checkpoints, sizeof checkpoints, "%s/%s/checkpoint", j->dir, b->snap.id);
    cfg.checkpoint_dir = checkpoints;
  }
  asu_log_info("job %s: adapter %s started: method %s, %u steps, %zu forget, %zu retain, "
               "%zu heldout examples",
               b->snap.id, b->snap.adapter_name, b->snap.method, cfg.steps, spec->forget.count,
               spec->retain.count, spec->has_heldout ? spec->heldout.count : (size_t)0);
  asu_log_debug("job %s: tau %g rank %u alpha %g targets 0x%x lr %g wd %g betas %g %g eps %g fw %g rw %g seed %llu", b->snap.id, cfg.tau, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, cfg.learning_rate, cfg.weight_decay, cfg.beta1, cfg.beta2, cfg.adam_eps, cfg.forget_weight, cfg.retain_weight, (unsigned long long)cfg.seed);
  progress_ctx ctx = {j, b};
  asu_adapter_ref *start = NULL;
  int rc = pin_start(j, spec, &cfg, &start, err);
  if (!rc)
    rc = asu_unlearn(j->model, &cfg, &spec->forget, &spec->retain,
                     spec->has_heldout ? &spec->heldout : NULL, report_progress, &ctx, lora,
                     err);
  if (start) asu_registry_unpin(j->reg, start);
  return rc;
}

static void run_job(asu_jobs *j, job *b) {
  asu_job_spec *spec = &b->spec;
  progress_ctx ctx = {j, b};
  asu_lora *lora = NULL;
  asu_error err;
  asu_error_clear(&err);
  char *result = calloc(1, sizeof b->snap.result);
  int rc = result ? ASU_OK : asu_error_set(&err, ASU_ERR_NOMEM, "out of memory");
  if (!rc && spec->kind == ASU_JOB_FINETUNE)
    rc = asu_finetune_job_run(j->model, j->device, spec, b->snap.id, report_progress, &ctx, &err);
  else if (!rc && spec->kind == ASU_JOB_EVALUATE)
    rc = asu_evaluate_job_run(j->model, j->reg, spec, b->snap.id, report_progress, &ctx, result,
                              sizeof b->snap.result, &err);
  else if (!rc)
    rc = run_unlearn(j, b, &lora, &err);

  pthread_mutex_lock(&j->mu);
  /* With records on disk a shutdown interrupts the job instead; a job that completed anyway is
     kept. */
  bool cancelled = b->cancel_requested || (j->stop && !j->dir);
  bool interrupted = j->stop && j->dir && !b->cancel_requested && rc != ASU_OK;
  if (interrupted) {
    interrupt(j, b, "interrupted: the server shut down; ResumeJob continues it");
    asu_log_info("job %s: adapter %s interrupted by the shutdown; it resumes from step %u/%u",
                 b->snap.id, b->snap.adapter_name, b->snap.step, b->snap.total_steps);
  }
  pthread_mutex_unlock(&j->mu);
  if (interrupted) {
    free(result);
    return;
  }
  if (rc == ASU_OK && cancelled) {
    asu_lora_destroy(lora);
    lora = NULL;
    rc = asu_error_set(&err, ASU_ERR_CANCELLED, "cancelled before the adapter was saved");
  }
  asu_adapter_info info;
  memset(&info, 0, sizeof info);
  if (rc == ASU_OK && spec->kind == ASU_JOB_UNLEARN) {
    rc = asu_registry_add(j->reg, b->snap.adapter_name, lora, spec->activate, b->snap.id, &info,
                          &err);
    if (rc != ASU_OK) asu_lora_destroy(lora);
  }

  pthread_mutex_lock(&j->mu);
  if (rc == ASU_OK && spec->kind != ASU_JOB_UNLEARN) {
    snprintf(b->snap.result, sizeof b->snap.result, "%s", result);
    finish(j, b, ASU_JOB_SUCCEEDED, NULL);
    asu_log_info("job %s: %s succeeded%s%s", b->snap.id, b->snap.method,
                 b->snap.output_path[0] ? ": wrote " : "", b->snap.output_path);
  } else if (rc == ASU_OK) {
    b->snap.adapter_version = info.version;
    finish(j, b, ASU_JOB_SUCCEEDED, NULL);
    asu_log_info("job %s: succeeded: adapter %s version %u%s", b->snap.id, b->snap.adapter_name,
                 info.version, info.active ? " (active)" : "");
  } else if (rc == ASU_ERR_CANCELLED || cancelled) {
    finish(j, b, ASU_JOB_CANCELLED, j->stop ? "cancelled: server shutting down" : "cancelled");
    asu_log_info("job %s: adapter %s cancelled at step %u/%u", b->snap.id, b->snap.adapter_name,
                 b->snap.step, b->snap.total_steps);
  } else {
    char msg[sizeof err.message + 32];
    snprintf(msg, sizeof msg, "%s: %s", asu_status_name(err.code), err.message);
    finish(j, b, ASU_JOB_FAILED, msg);
    asu_log_error("job %s: adapter %s failed: %s", b->snap.id, b->snap.adapter_name, msg);
  }
  evict(j);
  pthread_mutex_unlock(&j->mu);
  free(result);
}

static void *job_thread(void *arg) {
  asu_jobs *j = arg;
  pthread_mutex_lock(&j->mu);
  for (;;) {
    job *b = NULL;
    while (!j->stop) {
      for (b = j->head; b && b->snap.state != ASU_JOB_QUEUED; b = b->next) {
      }
      if (b) break;
      pthread_cond_wait(&j->work, &j->mu);
    }
    if (j->stop) break;
    b->snap.state = ASU_JOB_RUNNING;
    b->snap.started_unix = (int64_t)time(NULL);
    b->snap.total_steps = b->spec.cfg.steps;
    b->snap.error[0] = '\0';
    save_record(j, b);
    touch(j, b);
    pthread_mutex_unlock(&j->mu);
    run_job(j, b);
    pthread_mutex_lock(&j->mu);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

static uint64_t id_number(const char *id) {
  return strncmp(id, "job-", 4) ? 0 : strtoull(id + 4, NULL, 10);
}

/* Inserts b keeping the list ordered by id number. */
static void insert_loaded(asu_jobs *j, job *b) {
  job **p = &j->head;
  while (*p && id_number((*p)->snap.id) < id_number(b->snap.id)) p = &(*p)->next;
  b->next = *p;
  *p = b;
  if (!b->next) j->tail = b;
  j->count++;
  if (id_number(b->snap.id) >= j->next_id) j->next_id = id_number(b->snap.id) + 1;
}

/* Lists the jobs recorded in j->dir. A job that did not end is INTERRUPTED now, at the step of
   its last checkpoint. A record that cannot be read is logged and skipped. */
static void load_records(asu_jobs *j) {
  DIR *d = opendir(j->dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (id_number(de->d_name) == 0) continue;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", j->dir, de->d_name);
    job *b = calloc(1, sizeof *b);
    asu_error err;
    if (!b || asu_job_store_load(dir, false, &b->snap, &b->spec, &err) != ASU_OK) {
      asu_log_warn("skipping the job record in %s: %s", dir, b ? err.message : "out of memory");
      free(b);
      continue;
    }
    uint32_t version = 0;
    if (!asu_job_state_terminal(b->snap.state) &&
        asu_registry_saved_by(j->reg, b->snap.adapter_name, b->snap.id, &version)) {
      /* The server stopped after saving the adapter but before updating the record. */
      b->snap.adapter_version = version;
      b->snap.step = b->snap.total_steps;
      finish(j, b, ASU_JOB_SUCCEEDED, NULL);
      asu_log_info("job %s: adapter %s version %u was saved; the job is SUCCEEDED", b->snap.id,
                   b->snap.adapter_name, version);
    } else if (!asu_job_state_terminal(b->snap.state) &&
               b->snap.state != ASU_JOB_INTERRUPTED) {
      b->snap.step = asu_job_store_checkpoint_step(dir);
      snprintf(b->snap.error, sizeof b->snap.error, "interrupted: the server stopped while the "
               "job was %s; ResumeJob continues it", asu_job_state_name(b->snap.state));
      b->snap.state = ASU_JOB_INTERRUPTED;
      save_record(j, b);
    }
    if (b->snap.state == ASU_JOB_INTERRUPTED)
      asu_log_info("job %s: adapter %s interrupted; ResumeJob continues it from step %u/%u",
                   b->snap.id, b->snap.adapter_name, b->snap.step, b->snap.total_steps);
    insert_loaded(j, b);
  }
  closedir(d);
}

int asu_jobs_create(asu_model *m, asu_registry *reg, const asu_jobs_options *opts,
                    asu_jobs **out, asu_error *err) {
  asu_jobs *j = calloc(1, sizeof *j);
  if (!j) return asu_error_set(err, ASU_ERR_NOMEM, "jobs: out of memory");
  pthread_mutex_init(&j->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&j->changed, &ca);
  pthread_cond_init(&j->work, &ca);
  pthread_condattr_destroy(&ca);
  j->model = m;
  j->reg = reg;
  j->queue_limit = opts->queue_limit;
  j->log_every = opts->log_every;
  j->checkpoint_every = opts->checkpoint_every;
  j->dispatches_per_submit = opts->dispatches_per_submit;
  j->device = opts->device ? strdup(opts->device) : NULL;
  j->next_id = 1;
  if (opts->dir) {
    if (asu_fs_mkdir_p(opts->dir, err) != ASU_OK || !(j->dir = strdup(opts->dir))) {
      if (!j->dir && err->code == ASU_OK) asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
      asu_jobs_destroy(j);
      return asu_error_wrap(err, "jobs directory: ");
    }
    load_records(j);
  }
  int rc = pthread_create(&j->thread, NULL, job_thread, j);
  if (rc != 0) {
    asu_jobs_destroy(j);
    return asu_error_set(err, ASU_ERR_INTERNAL, "starting the job thread: %s", strerror(rc));
  }
  j->thread_started = true;
  *out = j;
  return ASU_OK;
}

void asu_jobs_destroy(asu_jobs *j) {
  if (!j) return;
  pthread_mutex_lock(&j->mu);
  j->stop = true;
  for (job *b = j->head; b; b = b->next) {
    if (b->snap.state == ASU_JOB_QUEUED && j->dir) {
      interrupt(j, b, "interrupted while queued: the server shut down; ResumeJob queues it "
                "again");
    } else if (b->snap.state == ASU_JOB_QUEUED) {
      finish(j, b, ASU_JOB_CANCELLED, "cancelled: server shutting down");
      asu_log_info("job %s: adapter %s cancelled while queued (shutdown)", b->snap.id,
                   b->snap.adapter_name);
    } else if (b->snap.state == ASU_JOB_RUNNING) {
      asu_log_info("job %s: adapter %s: cancelling (shutdown)", b->snap.id,
                   b->snap.adapter_name);
    }
  }
  pthread_cond_broadcast(&j->work);
  pthread_cond_broadcast(&j->changed);
  pthread_mutex_unlock(&j->mu);
  if (j->thread_started) pthread_join(j->thread, NULL);
  job *b = j->head;
  while (b) {
    job *next = b->next;
    asu_job_spec_free(&b->spec);
    free(b);
    b = next;
  }
  pthread_cond_destroy(&j->changed);
  pthread_cond_destroy(&j->work);
  pthread_mutex_destroy(&j->mu);
  free(j->dir);
  free(j->device);
  free(j);
}

static job *training(asu_jobs *j, const char *name) {
  for (job *b = j->head; b; b = b->next)
    if (!asu_job_state_terminal(b->snap.state) && !strcmp(b->snap.adapter_name, name)) return b;
  return NULL;
}

bool asu_jobs_training(asu_jobs *j, const char *name, char job_id[32]) {
  pthread_mutex_lock(&j->mu);
  job *b = training(j, name);
  if (b) snprintf(job_id, 32, "%s", b->snap.id);
  pthread_mutex_unlock(&j->mu);
  return b != NULL;
}

/* Whether a job for name may be queued now; called with j->mu held. */
static int check_queue(asu_jobs *j, const char *name, const char *self, asu_error *err) {
  unsigned queued = 0;
  for (job *q = j->head; q; q = q->next) queued += q->snap.state == ASU_JOB_QUEUED;
  job *busy = name[0] ? training(j, name) : NULL;
  if (j->stop) return asu_error_set(err, ASU_ERR_PRECONDITION, "the server is shutting down");
  if (busy && strcmp(busy->snap.id, self))
    return asu_error_set(err, ASU_ERR_PRECONDITION,
                         "adapter_name \"%s\" is already being trained by %s (%s)", name,
                         busy->snap.id, asu_job_state_name(busy->snap.state));
  if (queued >= j->queue_limit)
    return asu_error_set(err, ASU_ERR_LIMIT, "too many queued jobs: %u waiting, the limit is %u",
                         queued, j->queue_limit);
  return ASU_OK;
}

static void queue(asu_jobs *j, job *b) {
  b->snap.state = ASU_JOB_QUEUED;
  save_record(j, b);
  evict(j);
  touch(j, b);
  pthread_cond_broadcast(&j->work);
}

int asu_jobs_submit(asu_jobs *j, asu_job_spec *spec, const char *request_id,
                    asu_job_snapshot *out, asu_error *err) {
  job *b = calloc(1, sizeof *b);
  if (!b) return asu_error_set(err, ASU_ERR_NOMEM, "jobs: out of memory");
  pthread_mutex_lock(&j->mu);
  int rc = check_queue(j, spec->adapter_name, "", err);
  if (!rc) snprintf(b->snap.id, sizeof b->snap.id, "job-%llu", (unsigned long long)j->next_id++);
  pthread_mutex_unlock(&j->mu);
  if (!spec->cfg.checkpoint_every) spec->cfg.checkpoint_every = j->checkpoint_every;
  char dir[PATH_MAX];
  if (!rc && j->dir) {
    job_dir(j, b, dir, sizeof dir);
    if ((rc = asu_job_store_save_spec(dir, spec, err))) {
      asu_error e2;
      asu_fs_remove_tree(dir, &e2);
      asu_error_wrap(err, "saving job %s: ", b->snap.id);
    }
  }
  if (rc) {
    free(b);
    return rc;
  }
  snprintf(b->snap.adapter_name, sizeof b->snap.adapter_name, "%s", spec->adapter_name);
  snprintf(b->snap.method, sizeof b->snap.method, "%s",
           asu_method_name(spec->cfg.method));
  snprintf(b->snap.start_adapter, sizeof b->snap.start_adapter, "%s", spec->start_adapter);
  b->snap.start_version = spec->start_version;
  snprintf(b->snap.output_path, sizeof b->snap.output_path, "%s", spec->output_path);
  if (spec->kind == ASU_JOB_FINETUNE) snprintf(b->snap.method, sizeof b->snap.method, "finetune");
  if (spec->kind == ASU_JOB_EVALUATE) snprintf(b->snap.method, sizeof b->snap.method, "evaluate");
  b->snap.total_steps = spec->kind == ASU_JOB_FINETUNE   ? spec->finetune.steps
                        : spec->kind == ASU_JOB_EVALUATE ? (spec->evaluation.unprotected[0] ? 5 : 4)
                                                         : spec->cfg.steps;
  b->snap.loss = b->snap.forget_loss = b->snap.retain_loss = b->snap.heldout_nll = NAN;
  b->snap.initial_forget_loss = b->snap.initial_retain_loss = b->snap.initial_heldout_nll = NAN;
  b->snap.created_unix = (int64_t)time(NULL);
  b->spec = *spec;
  memset(spec, 0, sizeof *spec);

  pthread_mutex_lock(&j->mu);
  /* Another submit may have taken the name or the last queue place meanwhile. */
  rc = check_queue(j, b->snap.adapter_name, "", err);
  if (rc) {
    pthread_mutex_unlock(&j->mu);
    if (j->dir) {
      asu_error e2;
      asu_fs_remove_tree(dir, &e2);
    }
    asu_job_spec_free(&b->spec);
    free(b);
    return rc;
  }
  if (j->tail) j->tail->next = b;
  else j->head = b;
  j->tail = b;
  j->count++;
  queue(j, b);
  *out = b->snap;
  asu_log_info("request %s: job %s queued: adapter %s, %u steps", request_id, b->snap.id,
               b->snap.adapter_name, b->snap.total_steps);
  pthread_mutex_unlock(&j->mu);
  return ASU_OK;
}

int asu_jobs_resume(asu_jobs *j, const char *id, asu_job_snapshot *out, asu_error *err) {
  pthread_mutex_lock(&j->mu);
  job *b = find(j, id);
  int rc = ASU_OK;
  if (!b)
    rc = asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" not found; ListJobs (asu jobs) lists "
                           "the jobs", id);
  else if (b->snap.state != ASU_JOB_INTERRUPTED)
    rc = asu_error_set(err, ASU_ERR_PRECONDITION, "job %s is %s; only an INTERRUPTED job can be "
                       "resumed", id, asu_job_state_name(b->snap.state));
  else
    rc = check_queue(j, b->snap.adapter_name, id, err);
  char dir[PATH_MAX] = "";
  if (!rc) {
    job_dir(j, b, dir, sizeof dir);
    asu_job_snapshot ignored;
    rc = asu_job_store_load(dir, true, &ignored, &b->spec, err);
    if (rc) asu_error_wrap(err, "job %s cannot be resumed: ", id);
  }
  if (!rc) {
    b->snap.error[0] = '\0';
    queue(j, b);
    *out = b->snap;
    asu_log_info("job %s: adapter %s queued again, to resume from step %u", id,
                 b->snap.adapter_name, asu_job_store_checkpoint_step(dir));
  }
  pthread_mutex_unlock(&j->mu);
  return rc;
}

int asu_jobs_list(asu_jobs *j, asu_job_snapshot **out, size_t *count, asu_error *err) {
  pthread_mutex_lock(&j->mu);
  asu_job_snapshot *a = calloc(j->count ? j->count : 1, sizeof *a);
  size_t n = 0;
  for (job *b = j->head; b && a; b = b->next) a[n++] = b->snap;
  pthread_mutex_unlock(&j->mu);
  if (!a) return asu_error_set(err, ASU_ERR_NOMEM, "jobs: out of memory");
  *out = a;
  *count = n;
  return ASU_OK;
}

int asu_jobs_get(asu_jobs *j, const char *id, asu_job_snapshot *out, asu_error *err) {
  pthread_mutex_lock(&j->mu);
  job *b = find(j, id);
  if (b) *out = b->snap;
  pthread_mutex_unlock(&j->mu);
  return b ? ASU_OK : asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" not found; ListJobs (asu jobs) lists "
                           "the jobs", id);
}

int asu_jobs_cancel(asu_jobs *j, const char *id, unsigned wait_ms, asu_job_snapshot *out,
                    asu_error *err) {
  pthread_mutex_lock(&j->mu);
  job *b = find(j, id);
  if (!b) {
    pthread_mutex_unlock(&j->mu);
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" not found; ListJobs (asu jobs) lists "
                           "the jobs", id);
  }
  if (b->snap.state == ASU_JOB_QUEUED || b->snap.state == ASU_JOB_INTERRUPTED) {
    const char *where = b->snap.state == ASU_JOB_QUEUED ? "queued" : "interrupted";
    finish(j, b, ASU_JOB_CANCELLED, b->snap.state == ASU_JOB_QUEUED ? "cancelled while queued"
                                                                     : "cancelled while interrupted");
    asu_log_info("job %s: adapter %s cancelled while %s", id, b->snap.adapter_name, where);
  } else if (b->snap.state == ASU_JOB_RUNNING) {
    if (!b->cancel_requested)
      asu_log_info("job %s: adapter %s: cancel requested at step %u", id, b->snap.adapter_name,
                   b->snap.step);
    b->cancel_requested = true;
    struct timespec until;
    deadline_in(&until, wait_ms);
    while ((b = find(j, id)) && !asu_job_state_terminal(b->snap.state)) {
      if (pthread_cond_timedwait(&j->changed, &j->mu, &until) == ETIMEDOUT) break;
    }
  }
  b = find(j, id);
  if (b) *out = b->snap;
  pthread_mutex_unlock(&j->mu);
  return b ? ASU_OK : asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" was dropped", id);
}

int asu_jobs_wait(asu_jobs *j, const char *id, uint64_t after_seq, unsigned timeout_ms,
                  asu_job_snapshot *out, asu_error *err) {
  struct timespec until;
  deadline_in(&until, timeout_ms);
  pthread_mutex_lock(&j->mu);
  job *b;
  while ((b = find(j, id)) && b->snap.seq <= after_seq && !j->stop) {
    if (pthread_cond_timedwait(&j->changed, &j->mu, &until) == ETIMEDOUT) break;
  }
  b = find(j, id);
  if (b) *out = b->snap;
  pthread_mutex_unlock(&j->mu);
  return b ? ASU_OK : asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" not found; ListJobs (asu jobs) lists "
                           "the jobs", id);
}
