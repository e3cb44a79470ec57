/* StartFinetune and StartEvaluation: check the request and its paths under the data root,
   then queue the job. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asu_log.h"
#include "fsutil.h"
#include "handlers.h"

/* Fails the call unless the server has a data root, which every path of these requests is
   under. Returns 1 when it has one. */
static int need_data_root(asu_server *s, asu_rpc_call *c, const char *method) {
  if (s->data_root) return 1;
  return asu_reject(c, GRPC_STATUS_FAILED_PRECONDITION, "%s reads and writes files under the "
                    "data root, and this server has none; start it with --data-root DIR", method);
}

/* Resolves the output path of field to a new file ending in suffix, in an existing folder
   under the data root. Returns 1, or 0 after rejecting the call. */
static int resolve_output(asu_server *s, asu_rpc_call *c, const char *field, const char *path,
                          const char *suffix, char *out, size_t size) {
  size_t n = strlen(path), ns = strlen(suffix);
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (n <= ns || n >= size || strcmp(path + n - ns, suffix) || base[0] == '.')
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "%s must name a file ending in \"%s\", "
                      "not starting with '.', under %zu bytes; got \"%.80s\"", field, suffix,
                      size, path);
  char dir[1024];
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
  if (!dir[0]) snprintf(dir, sizeof dir, "/");
  char *resolved = NULL;
  asu_error err;
  asu_error_clear(&err);
  if (asu_fs_confine(s->data_root, dir, &resolved, &err) != ASU_OK) {
    asu_error_wrap(&err, "%s \"%.80s\": ", field, path);
    return asu_reject_err(c, &err);
  }
  struct stat st;
  int ok = stat(resolved, &st) == 0 && S_ISDIR(st.st_mode);
  int written = snprintf(out, size, "%s/%s", resolved, base);
  free(resolved);
  if (!ok)
    return asu_reject(c, GRPC_STATUS_NOT_FOUND, "the folder of %s \"%.80s\" does not exist; "
                      "create it first", field, path);
  if (written < 0 || (size_t)written >= size)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "%s \"%.80s\" is too long", field, path);
  if (access(out, F_OK) == 0)
    return asu_reject(c, GRPC_STATUS_ALREADY_EXISTS, "%s %s exists; the job writes a new file, "
                      "so choose another name", field, out);
  return 1;
}

/* Resolves an existing file (or folder, with dir) under the data root into out; "" stays "".
   Returns 1, or 0 after rejecting the call. */
static int resolve_input(asu_server *s, asu_rpc_call *c, const char *field, const char *path,
                         bool dir, char *out, size_t size) {
  out[0] = '\0';
  if (!path[0]) return 1;
  char *resolved = NULL;
  asu_error err;
  asu_error_clear(&err);
  if (asu_fs_confine(s->data_root, path, &resolved, &err) != ASU_OK) {
    asu_error_wrap(&err, "%s: ", field);
    return asu_reject_err(c, &err);
  }
  struct stat st;
  bool ok = stat(resolved, &st) == 0 && (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
  int written = snprintf(out, size, "%s", resolved);
  free(resolved);
  if (!ok)
    return asu_reject(c, GRPC_STATUS_NOT_FOUND, "%s \"%.80s\" is not %s under the data root",
                      field, path, dir ? "a folder" : "a file");
  if (written < 0 || (size_t)written >= size)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "%s \"%.80s\" is too long", field, path);
  return 1;
}

/* Queues the job and replies with it. */
static void submit(asu_server *s, asu_rpc_call *c, asu_job_spec *spec) {
  asu_job_snapshot snap;
  asu_error err;
  asu_error_clear(&err);
  if (asu_jobs_submit(s->jobs, spec, c->request_id, &snap, &err) != ASU_OK) {
    asu_reject_err(c, &err);
    return;
  }
  Asu__V1__Job job;
  asu_job_to_proto(&snap, &job);
  asu_rpc_finish(c, &job.base, GRPC_STATUS_OK, "");
}

static int build_finetune(asu_server *s, asu_rpc_call *c, const Asu__V1__StartFinetuneRequest *r,
                          asu_job_spec *spec) {
  spec->kind = ASU_JOB_FINETUNE;
  asu_finetune_defaults(&spec->finetune);
  if (r->n_data == 0)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "data must have at least one example");
  if (r->steps > ASU_MAX_STEPS)
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "steps must be <= %u, got %u",
                      ASU_MAX_STEPS, r->steps);
  if (r->steps) spec->finetune.steps = r->steps;
  if (!isfinite(r->learning_rate) || r->learning_rate < 0)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "learning_rate must be finite and >= 0, "
                      "got %g", (double)r->learning_rate);
  if (r->learning_rate != 0) spec->finetune.learning_rate = r->learning_rate;
  if (!asu_take_template(c, r->prompt_template, &spec->prompt_template)) return 0;
  if (!need_data_root(s, c, "StartFinetune") ||
      !resolve_output(s, c, "output_path", r->output_path, ".gguf", spec->output_path,
                      sizeof spec->output_path))
    return 0;
  return asu_take_examples(c, "data", r->data, r->n_data, &spec->forget);
}

static int build_evaluation(asu_server *s, asu_rpc_call *c,
                            const Asu__V1__StartEvaluationRequest *r, asu_job_spec *spec) {
  asu_eval_job_settings *e = &spec->evaluation;
  spec->kind = ASU_JOB_EVALUATE;
  if (!need_data_root(s, c, "StartEvaluation")) return 0;
  const char *forget = r->forget_split[0] ? r->forget_split : "forget01";
  if (strcmp(forget, "forget01") && strcmp(forget, "forget05") && strcmp(forget, "forget10"))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "forget_split must be forget01, forget05 "
                      "or forget10, got \"%.80s\"", r->forget_split);
  snprintf(e->forget_split, sizeof e->forget_split, "%s", forget);
  if (r->max_tokens > 4096)
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "max_tokens must be <= 4096, got %u",
                      r->max_tokens);
  e->max_tokens = r->max_tokens;
  e->limit = r->limit;
  const char *adapter = r->adapter;
  if (adapter[0] && strcmp(adapter, "none") && !asu_registry_has(s->reg, adapter))
    return asu_reject(c, GRPC_STATUS_NOT_FOUND, "adapter \"%.80s\" is not loaded; ListAdapters "
                      "shows the adapters, and \"none\" measures the model alone", adapter);
  snprintf(e->adapter, sizeof e->adapter, "%s", adapter);
  if (!r->tofu_path[0])
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "tofu_path is missing; give the folder "
                      "of the TOFU *_perturbed.jsonl files under the data root");
  if (!resolve_input(s, c, "tofu_path", r->tofu_path, true, e->tofu_dir, sizeof e->tofu_dir) ||
      !resolve_input(s, c, "reference_path", r->reference_path, false, e->reference,
                     sizeof e->reference) ||
      !resolve_input(s, c, "unprotected_path", r->unprotected_path, false, e->unprotected,
                     sizeof e->unprotected) ||
      !resolve_input(s, c, "vocabulary_path", r->vocabulary_path, false, e->vocabulary,
                     sizeof e->vocabulary))
    return 0;
  return !r->output_path[0] ||
         resolve_output(s, c, "output_path", r->output_path, ".json", spec->output_path,
                        sizeof spec->output_path);
}

int asu_handle_start_evaluation(asu_server *s, asu_rpc_call *c) {
  Asu__V1__StartEvaluationRequest *req = (Asu__V1__StartEvaluationRequest *)
      asu_rpc_recv_request(c, &asu__v1__start_evaluation_request__descriptor);
  if (!req) return 0;
  asu_job_spec spec;
  memset(&spec, 0, sizeof spec);
  if (build_evaluation(s, c, req, &spec)) {
    asu_log_info("request %s: StartEvaluation: adapter \"%s\" on %s", c->request_id,
                 spec.evaluation.adapter, spec.evaluation.tofu_dir);
    submit(s, c, &spec);
  }
  asu_job_spec_free(&spec);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

int asu_handle_start_finetune(asu_server *s, asu_rpc_call *c) {
  Asu__V1__StartFinetuneRequest *req = (Asu__V1__StartFinetuneRequest *)
      asu_rpc_recv_request(c, &asu__v1__start_finetune_request__descriptor);
  if (!req) return 0;
  asu_job_spec spec;
  memset(&spec, 0, sizeof spec);
  if (build_finetune(s, c, req, &spec)) {
    asu_log_info("request %s: StartFinetune: %zu examples, %u steps, into %s", c->request_id,
                 req->n_data, spec.finetune.steps, spec.output_path);
    submit(s, c, &spec);
  }
  asu_job_spec_free(&spec);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}
