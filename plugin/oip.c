/* inference.GRPCInferenceService, the Open Inference Protocol: liveness, readiness, metadata and
   text generation as ModelInfer. The base model is a model named after its file at version "1".
   Every loaded adapter is a model named after itself at its current version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_log.h"
#include "fsutil.h"
#include "grpc_service.pb-c.h"
#include "oip.h"

#define SERVICE "/inference.GRPCInferenceService/"
#define PLATFORM "asu_gguf"

#define FREE_REQ(req) protobuf_c_message_free_unpacked(&(req)->base, NULL)

/* Parses a version string: "" is any version (0). */
static bool parse_version(const char *text, uint32_t *out) {
  *out = 0;
  if (!text[0]) return true;
  char *end;
  unsigned long v = strtoul(text, &end, 10);
  if (*end || text[0] < '1' || text[0] > '9' || v > UINT32_MAX) return false;
  *out = (uint32_t)v;
  return true;
}

int asu_oip_resolve(asu_server *s, asu_rpc_call *c, const char *name, const char *version,
                    asu_oip_model *out) {
  uint32_t v;
  if (!parse_version(version, &v))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "model version must be empty or a positive whole number, got \"%.40s\"",
                      version);
  if (!strcmp(name, s->model_name)) {
    if (v > 1)
      return asu_reject(c, GRPC_STATUS_NOT_FOUND, "model \"%s\" has version 1 only, not %u",
                        name, v);
    *out = (asu_oip_model){.adapter = "none", .version = 0, .current = 1};
    return 1;
  }
  asu_adapter_info info;
  asu_error err;
  bool valid = asu_adapter_name_valid(name);
  bool loaded = valid && asu_registry_info(s->reg, name, &info, &err) == ASU_OK;
  if (!loaded && valid && asu_registry_is_stored(s->reg, name))
    return asu_reject(c, GRPC_STATUS_NOT_FOUND, "model \"%s\" is unloaded; RepositoryModelLoad "
                      "serves it again", name);
  if (!loaded)
    return asu_reject(c, GRPC_STATUS_NOT_FOUND, "model \"%.80s\" is not served: the base model "
                      "is \"%s\", and RepositoryIndex lists the adapters", name, s->model_name);
  if (v && v != info.version)
    return asu_reject(c, GRPC_STATUS_NOT_FOUND, "adapter \"%s\" is at version %u; version %u is "
                      "not served (leave the version empty to use the current one)", name,
                      info.version, v);
  snprintf(out->adapter, sizeof out->adapter, "%s", name);
  out->version = v;
  out->current = info.version;
  return 1;
}

static int handle_server_live(asu_server *s, asu_rpc_call *c) {
  ProtobufCMessage *req = asu_rpc_recv_request(c, &inference__server_live_request__descriptor);
  if (!req) return 0;
  protobuf_c_message_free_unpacked(req, NULL);
  Inference__ServerLiveResponse r = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
  r.live = 1;
  return asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
}

static int handle_server_ready(asu_server *s, asu_rpc_call *c) {
  ProtobufCMessage *req = asu_rpc_recv_request(c, &inference__server_ready_request__descriptor);
  if (!req) return 0;
  protobuf_c_message_free_unpacked(req, NULL);
  Inference__ServerReadyResponse r = INFERENCE__SERVER_READY_RESPONSE__INIT;
  r.ready = !atomic_load(&s->shutting_down);
  return asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
}

static int handle_server_metadata(asu_server *s, asu_rpc_call *c) {
  ProtobufCMessage *req =
      asu_rpc_recv_request(c, &inference__server_metadata_request__descriptor);
  if (!req) return 0;
  protobuf_c_message_free_unpacked(req, NULL);
  static char *extensions[] = {"model_repository"};
  Inference__ServerMetadataResponse r = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
  r.name = "asu";
  r.version = ASU_VERSION;
  r.n_extensions = 1;
  r.extensions = extensions;
  return asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
}

static int handle_model_ready(asu_server *s, asu_rpc_call *c) {
  Inference__ModelReadyRequest *req = (Inference__ModelReadyRequest *)asu_rpc_recv_request(
      c, &inference__model_ready_request__descriptor);
  if (!req) return 0;
  asu_oip_model m;
  if (asu_oip_resolve(s, c, req->name, req->version, &m)) {
    /* Resolving rejects models and versions that are not served, so this one is ready. */
    Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
    r.ready = true;
    asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
  }
  FREE_REQ(req);
  return 0;
}

static int handle_model_metadata(asu_server *s, asu_rpc_call *c) {
  Inference__ModelMetadataRequest *req = (Inference__ModelMetadataRequest *)asu_rpc_recv_request(
      c, &inference__model_metadata_request__descriptor);
  if (!req) return 0;
  asu_oip_model m;
  if (asu_oip_resolve(s, c, req->name, req->version, &m)) {
    char version[16];
    snprintf(version, sizeof version, "%u", m.current);
    char *versions[] = {version};
    int64_t shape[] = {-1};
    Inference__ModelMetadataResponse__TensorMetadata in =
        INFERENCE__MODEL_METADATA_RESPONSE__TENSOR_METADATA__INIT;
    in.name = ASU_OIP_INPUT;
    in.datatype = "BYTES";
    in.n_shape = 1;
    in.shape = shape;
    Inference__ModelMetadataResponse__TensorMetadata out = in;
    out.name = ASU_OIP_OUTPUT;
    Inference__ModelMetadataResponse__TensorMetadata *ins[] = {&in}, *outs[] = {&out};
    Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
    r.name = req->name;
    r.n_versions = 1;
    r.versions = versions;
    r.platform = PLATFORM;
    r.n_inputs = 1;
    r.inputs = ins;
    r.n_outputs = 1;
    r.outputs = outs;
    asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
  }
  FREE_REQ(req);
  return 0;
}

static const asu_rpc_method methods[] = {
    {SERVICE "ServerLive", handle_server_live, false},
    {SERVICE "ServerReady", handle_server_ready, false},
    {SERVICE "ServerMetadata", handle_server_metadata, false},
    {SERVICE "ModelReady", handle_model_ready, false},
    {SERVICE "ModelMetadata", handle_model_metadata, false},
    {SERVICE "ModelInfer", asu_oip_infer, false},
    {SERVICE "RepositoryIndex", asu_oip_repository_index, false},
    {SERVICE "RepositoryModelLoad", asu_oip_repository_load, true},
    {SERVICE "RepositoryModelUnload", asu_oip_repository_unload, true},
};

const asu_rpc_method *asu_oip_methods(size_t *count) {
  *count = sizeof methods / sizeof methods[0];
  return methods;
}
