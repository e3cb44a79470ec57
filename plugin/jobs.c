#include "jobs.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "asu_log.h"
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
  unsigned queue_limit, log_every;
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

static void finish(asu_jobs *j, job *b, enum asu_job_state s, const char *error) {
  b->snap.state = s;
  b->snap.finished_unix = (int64_t)time(NULL);
  snprintf(b->snap.error, sizeof b->snap.error, "%s", error ? error : "");
  asu_job_spec_free(&b->spec);
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

static void run_job(asu_jobs *j, job *b) {
  asu_job_spec *spec = &b->spec;
  asu_unlearn_config cfg = spec->cfg;
  cfg.prompt_template = spec->prompt_template;
  asu_log_info("job %s: adapter %s started: method %s, %u steps, %zu forget, %zu retain, "
               "%zu heldout examples",
               b->snap.id, b->snap.adapter_name, b->snap.method, cfg.steps, spec->forget.count,
               spec->retain.count, spec->has_heldout ? spec->heldout.count : (size_t)0);
  asu_log_debug("job %s: tau %g rank %u alpha %g targets 0x%x lr %g wd %g betas %g %g eps %g fw %g rw %g seed %llu", b->snap.id, cfg.tau, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, cfg.learning_rate, cfg.weight_decay, cfg.beta1, cfg.beta2, cfg.adam_eps, cfg.forget_weight, cfg.retain_weight, (unsigned long long)cfg.seed);
  progress_ctx ctx = {j, b};
  asu_lora *lora = NULL;
  asu_error err;
  asu_error_clear(&err);
  int rc = asu_unlearn(j->model, &cfg, &spec->forget, &spec->retain,
                       spec->has_heldout ? &spec->heldout : NULL, report_progress, &ctx, &lora,
                       &err);

  pthread_mutex_lock(&j->mu);
  bool cancelled = b->cancel_requested || j->stop;
  pthread_mutex_unlock(&j->mu);
  if (rc == ASU_OK && cancelled) {
    asu_lora_destroy(lora);
    lora = NULL;
    rc = asu_error_set(&err, ASU_ERR_CANCELLED, "cancelled before the adapter was saved");
  }
  asu_adapter_info info;
  memset(&info, 0, sizeof info);
  if (rc == ASU_OK) {
    rc = asu_registry_add(j->reg, b->snap.adapter_name, lora, spec->activate, b->snap.id, &info,
                          &err);
    if (rc != ASU_OK) asu_lora_destroy(lora);
  }

  pthread_mutex_lock(&j->mu);
  if (rc == ASU_OK) {
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
    touch(j, b);
    pthread_mutex_unlock(&j->mu);
    run_job(j, b);
    pthread_mutex_lock(&j->mu);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

int asu_jobs_create(asu_model *m, asu_registry *reg, unsigned queue_limit, unsigned log_every,
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
  j->queue_limit = queue_limit;
  j->log_every = log_every;
  j->next_id = 1;
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
    if (b->snap.state == ASU_JOB_QUEUED) {
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

int asu_jobs_submit(asu_jobs *j, asu_job_spec *spec, const char *request_id,
                    asu_job_snapshot *out, asu_error *err) {
  job *b = calloc(1, sizeof *b);
  if (!b) return asu_error_set(err, ASU_ERR_NOMEM, "jobs: out of memory");
  pthread_mutex_lock(&j->mu);
  unsigned queued = 0;
  for (job *q = j->head; q; q = q->next) queued += q->snap.state == ASU_JOB_QUEUED;
  job *busy = training(j, spec->adapter_name);
  int rc = ASU_OK;
  if (j->stop) {
    rc = asu_error_set(err, ASU_ERR_PRECONDITION, "the server is shutting down");
  } else if (busy) {
    rc = asu_error_set(err, ASU_ERR_PRECONDITION,
                       "adapter_name \"%s\" is already being trained by %s (%s)",
                       spec->adapter_name, busy->snap.id, asu_job_state_name(busy->snap.state));
  } else if (queued >= j->queue_limit) {
    rc = asu_error_set(err, ASU_ERR_LIMIT, "too many queued jobs: %u waiting, the limit is %u",
                       queued, j->queue_limit);
  }
  if (rc != ASU_OK) {
    pthread_mutex_unlock(&j->mu);
    free(b);
    return rc;
  }
  snprintf(b->snap.id, sizeof b->snap.id, "job-%llu", (unsigned long long)j->next_id++);
  snprintf(b->snap.adapter_name, sizeof b->snap.adapter_name, "%s", spec->adapter_name);
  snprintf(b->snap.method, sizeof b->snap.method, "%s",
           spec->cfg.method == ASU_METHOD_ASU_KL ? "asu_kl" : "asu_gd");
  b->snap.state = ASU_JOB_QUEUED;
  b->snap.total_steps = spec->cfg.steps;
  b->snap.loss = b->snap.forget_loss = b->snap.retain_loss = b->snap.heldout_nll = NAN;
  b->snap.initial_forget_loss = b->snap.initial_retain_loss = b->snap.initial_heldout_nll = NAN;
  b->snap.created_unix = (int64_t)time(NULL);
  b->snap.seq = 1;
  b->spec = *spec;
  memset(spec, 0, sizeof *spec);
  if (j->tail) j->tail->next = b;
  else j->head = b;
  j->tail = b;
  j->count++;
  *out = b->snap;
  asu_log_info("request %s: job %s queued: adapter %s, %u steps, %u jobs were waiting",
               request_id, b->snap.id, b->snap.adapter_name, b->snap.total_steps, queued);
  evict(j);
  pthread_cond_broadcast(&j->work);
  pthread_mutex_unlock(&j->mu);
  return ASU_OK;
}

int asu_jobs_get(asu_jobs *j, const char *id, asu_job_snapshot *out, asu_error *err) {
  pthread_mutex_lock(&j->mu);
  job *b = find(j, id);
  if (b) *out = b->snap;
  pthread_mutex_unlock(&j->mu);
  return b ? ASU_OK : asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" not found", id);
}

int asu_jobs_cancel(asu_jobs *j, const char *id, unsigned wait_ms, asu_job_snapshot *out,
                    asu_error *err) {
  pthread_mutex_lock(&j->mu);
  job *b = find(j, id);
  if (!b) {
    pthread_mutex_unlock(&j->mu);
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" not found", id);
  }
  if (b->snap.state == ASU_JOB_QUEUED) {
    finish(j, b, ASU_JOB_CANCELLED, "cancelled while queued");
    asu_log_info("job %s: adapter %s cancelled while queued", id, b->snap.adapter_name);
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
  return b ? ASU_OK : asu_error_set(err, ASU_ERR_NOT_FOUND, "job \"%s\" not found", id);
}
