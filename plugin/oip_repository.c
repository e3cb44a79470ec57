/* The model repository extension of the Open Inference Protocol, over the adapters. The index
   lists the base model and every stored adapter. Load imports a PEFT adapter from a path under
   the data root, or reloads an unloaded one, and unload stops serving one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_log.h"
#include "fsutil.h"
#include "grpc_service.pb-c.h"
#include "oip.h"

typedef Inference__RepositoryIndexResponse__ModelIndex model_index;

static void set_entry(model_index *e, const char *name, uint32_t version, bool ready,
                      char *version_text) {
  inference__repository_index_response__model_index__init(e);
  e->name = (char *)name;
  snprintf(version_text, 16, "%u", version);
  e->version = ready ? version_text : "";
  e->state = ready ? "READY" : "UNAVAILABLE";
  e->reason = ready ? "" : "unloaded; RepositoryModelLoad serves it again";
}

static int compare_names(const void *a, const void *b) {
  return strcmp((const char *)a, (const char *)b);
}

/* The index of the stored adapters, loaded or not, sorted by name after the base model. */
static int send_index(asu_server *s, asu_rpc_call *c, bool ready_only) {
  char(*names)[65] = NULL;
  size_t n = 0;
  asu_error err;
  asu_error_clear(&err);
  if (asu_registry_stored(s->reg, &names, &n, &err) != ASU_OK) return asu_reject_err(c, &err);
  qsort(names, n, sizeof *names, compare_names);
  model_index *entries = calloc(n + 1, sizeof *entries);
  model_index **list = calloc(n + 1, sizeof *list);
  char(*versions)[16] = calloc(n + 1, sizeof *versions);
  size_t k = 0;
  if (entries && list && versions) {
    set_entry(&entries[k++], s->model_name, 1, true, versions[0]);
    for (size_t i = 0; i < n; i++) {
      asu_adapter_info info;
      bool loaded = asu_registry_info(s->reg, names[i], &info, &err) == ASU_OK;
      if (ready_only && !loaded) continue;
      set_entry(&entries[k], names[i], loaded ? info.version : 0, loaded, versions[k]);
      k++;
    }
    for (size_t i = 0; i < k; i++) list[i] = &entries[i];
    Inference__RepositoryIndexResponse r = INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
    r.n_models = k;
    r.models = list;
    asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
  } else {
    asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the index");
  }
  free(versions);
  free(list);
  free(entries);
  free(names);
  return 0;
}

int asu_oip_repository_index(asu_server *s, asu_rpc_call *c) {
  Inference__RepositoryIndexRequest *req = (Inference__RepositoryIndexRequest *)
      asu_rpc_recv_request(c, &inference__repository_index_request__descriptor);
  if (!req) return 0;
  bool ready_only = req->ready;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return send_index(s, c, ready_only);
}

/* The string parameter "path", NULL when absent; *bad is set when any parameter is unknown
   or "path" is not a string. */
static const char *path_param(const Inference__RepositoryModelLoadRequest *req, bool *bad) {
  const char *path = NULL;
  *bad = false;
  for (size_t i = 0; i < req->n_parameters; i++) {
    const Inference__ModelRepositoryParameter *v = req->parameters[i]->value;
    if (strcmp(req->parameters[i]->key, "path") || !v ||
        v->parameter_choice_case != INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_STRING_PARAM)
      *bad = true;
    else
      path = v->string_param;
  }
  return path;
}

static void load_adapter(asu_server *s, asu_rpc_call *c, const char *name, const char *path) {
  asu_error err;
  asu_error_clear(&err);
  asu_adapter_info info;
  char *resolved = NULL;
  int rc;
  if (path) {
    rc = asu_fs_confine(s->data_root, path, &resolved, &err);
    if (rc == ASU_OK) rc = asu_registry_import(s->reg, name, resolved, c->request_id, &info, &err);
  } else {
    rc = asu_registry_reload(s->reg, name, &info, &err);
  }
  if (rc != ASU_OK) {
    asu_reject_err(c, &err);
  } else {
    asu_log_info("request %s: RepositoryModelLoad: adapter %s version %u served%s%s",
                 c->request_id, name, info.version, resolved ? ", imported from " : "",
                 resolved ? resolved : "");
    Inference__RepositoryModelLoadResponse r = INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;
    asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
  }
  free(resolved);
}

int asu_oip_repository_load(asu_server *s, asu_rpc_call *c) {
  Inference__RepositoryModelLoadRequest *req = (Inference__RepositoryModelLoadRequest *)
      asu_rpc_recv_request(c, &inference__repository_model_load_request__descriptor);
  if (!req) return 0;
  Inference__RepositoryModelLoadResponse loaded = INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;
  bool bad;
  const char *path = path_param(req, &bad);
  char job_id[32];
  if (bad)
    asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "the one parameter is \"path\", a string: the "
               "directory of a PEFT adapter under the server's data root");
  else if (!strcmp(req->model_name, s->model_name) && path)
    asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "\"%s\" is the base model's name; give the "
               "adapter to import a name of its own", s->model_name);
  else if (!strcmp(req->model_name, s->model_name))
    asu_rpc_finish(c, &loaded.base, GRPC_STATUS_OK, ""); /* the base model is always loaded */
  else if (!asu_adapter_name_valid(req->model_name))
    asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "model_name must be the base model \"%s\" or an "
               "adapter name matching [A-Za-z0-9._-]{1,64}, got \"%.80s\"", s->model_name,
               req->model_name);
  else if (asu_jobs_training(s->jobs, req->model_name, job_id))
    asu_reject(c, GRPC_STATUS_FAILED_PRECONDITION, "adapter \"%s\" is being trained by %s; "
               "load it under another name or after the job ends", req->model_name, job_id);
  else
    load_adapter(s, c, req->model_name, path);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

int asu_oip_repository_unload(asu_server *s, asu_rpc_call *c) {
  Inference__RepositoryModelUnloadRequest *req = (Inference__RepositoryModelUnloadRequest *)
      asu_rpc_recv_request(c, &inference__repository_model_unload_request__descriptor);
  if (!req) return 0;
  asu_error err;
  asu_error_clear(&err);
  uint32_t version = 0;
  if (!strcmp(req->model_name, s->model_name)) {
    asu_reject(c, GRPC_STATUS_FAILED_PRECONDITION, "the base model \"%s\" cannot be unloaded; "
               "stop the server instead", s->model_name);
  } else if (!asu_adapter_name_valid(req->model_name)) {
    asu_reject(c, GRPC_STATUS_NOT_FOUND, "model \"%.80s\" is not served", req->model_name);
  } else if (asu_registry_unload(s->reg, req->model_name, &version, &err) != ASU_OK) {
    asu_reject_err(c, &err);
  } else {
    asu_log_info("request %s: RepositoryModelUnload: adapter %s version %u unloaded",
                 c->request_id, req->model_name, version);
    Inference__RepositoryModelUnloadResponse r = INFERENCE__REPOSITORY_MODEL_UNLOAD_RESPONSE__INIT;
    asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}
