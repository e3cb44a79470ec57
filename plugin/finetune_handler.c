/* StartFinetune: checks the request and its output path, then queues a finetune job. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asu_log.h"
#include "fsutil.h"
#include "handlers.h"

/* Resolves output_path to a new file in an existing folder under the data root. Returns 1,
   or 0 after rejecting the call. */
static int resolve_output(asu_server *s, asu_rpc_call *c, const char *path, char *out,
                          size_t size) {
  if (!s->data_root)
    return asu_reject(c, GRPC_STATUS_FAILED_PRECONDITION, "StartFinetune writes its model under "
                      "the data root, and this server has none; start it with --data-root DIR");
  size_t n = strlen(path);
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (n < 6 || n >= size || strcmp(path + n - 5, ".gguf") || base[0] == '.')
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "output_path must name a file ending in "
                      "\".gguf\", not starting with '.', under %zu bytes; got \"%.80s\"",
                      size, path);
  char dir[1024];
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
  if (!dir[0]) snprintf(dir, sizeof dir, "/");
  char *resolved = NULL;
  asu_error err;
  asu_error_clear(&err);
  if (asu_fs_confine(s->data_root, dir, &resolved, &err) != ASU_OK) {
    asu_error_wrap(&err, "output_path \"%.80s\": ", path);
    return asu_reject_err(c, &err);
  }
  struct stat st;
  int ok = stat(resolved, &st) == 0 && S_ISDIR(st.st_mode);
  int written = snprintf(out, size, "%s/%s", resolved, base);
  free(resolved);
  if (!ok)
    return asu_reject(c, GRPC_STATUS_NOT_FOUND, "the folder of output_path \"%.80s\" does not "
                      "exist; create it first", path);
  if (written < 0 || (size_t)written >= size)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "output_path \"%.80s\" is too long", path);
  if (access(out, F_OK) == 0)
    return asu_reject(c, GRPC_STATUS_ALREADY_EXISTS, "output_path %s exists; a finetune job "
                      "writes a new file, so choose another name", out);
  return 1;
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
  if (!resolve_output(s, c, r->output_path, spec->output_path, sizeof spec->output_path))
    return 0;
  return asu_take_examples(c, "data", r->data, r->n_data, &spec->forget);
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
    asu_job_snapshot snap;
    asu_error err;
    asu_error_clear(&err);
    if (asu_jobs_submit(s->jobs, &spec, c->request_id, &snap, &err) != ASU_OK) {
      asu_reject_err(c, &err);
    } else {
      Asu__V1__Job job;
      asu_job_to_proto(&snap, &job);
      asu_rpc_finish(c, &job.base, GRPC_STATUS_OK, "");
    }
  }
  asu_job_spec_free(&spec);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}
