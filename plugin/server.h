/* State shared by the plugin's threads, the method tables of its services, and the helpers that
   every handler uses. */
#ifndef ASU_SERVER_H
#define ASU_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "asu_engine.h"
#include "jobs.h"
#include "registry.h"
#include "rpc.h"

/* Fixed request limits. Over them a request fails with RESOURCE_EXHAUSTED. */
#define ASU_DEFAULT_MAX_TOKENS 256u
#define ASU_MAX_EXAMPLES 10000u
#define ASU_MAX_EXAMPLE_BYTES 65536u
#define ASU_MAX_TEMPLATE_BYTES 4096u
#define ASU_MAX_STEPS 100000u
#define ASU_MAX_LORA_RANK 256u
/* How long CancelJob waits for a running job to stop. */
#define ASU_CANCEL_WAIT_MS 5000u

/* The limits that the configuration can change. */
typedef struct asu_server_limits {
  uint32_t max_tokens;       /* per generation */
  uint32_t max_prompt_bytes; /* per prompt */
  uint32_t max_queued_jobs;
  uint32_t max_calls; /* served at once */
} asu_server_limits;

typedef struct asu_server {
  asu_model *model;
  asu_registry *reg;
  asu_jobs *jobs;
  char model_name[128]; /* the base model's name in the inference protocol */
  char *auth_token;     /* NULL: no method needs a token */
  char *data_root;      /* resolved; NULL: requests cannot name server paths */
  asu_server_limits limits;
  atomic_uint_fast64_t next_request;
  atomic_bool shutting_down;
  pthread_mutex_t calls_mu;
  pthread_cond_t calls_idle;
  unsigned active_calls;
} asu_server;

typedef int (*asu_handler_fn)(asu_server *s, asu_rpc_call *c);

typedef struct asu_rpc_method {
  const char *path; /* "/package.Service/Method" */
  asu_handler_fn fn;
  bool changes_state; /* needs the bearer token when the server has one */
} asu_rpc_method;

/* The methods of asu.v1.Asu, inference.GRPCInferenceService and grpc.health.v1.Health. */
const asu_rpc_method *asu_core_methods(size_t *count);
const asu_rpc_method *asu_oip_methods(size_t *count);
const asu_rpc_method *asu_health_methods(size_t *count);

/* Serves one accepted call of method m to its end (on the calling thread) and frees it. */
void asu_handle_call(asu_server *s, const asu_rpc_method *m, asu_rpc_call *c);

/* Rejects a request: logs it and sends the status. Returns 0 for use as a handler result. */
int asu_reject(asu_rpc_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int asu_reject_err(asu_rpc_call *c, const asu_error *err);

/* A generation request, from either protocol. */
typedef struct asu_generation_request {
  const char *prompt;
  size_t prompt_len;
  uint32_t max_tokens; /* 0: the default */
  float temperature, top_p;
  uint64_t seed;
  const char *adapter;      /* "", "none" or a name */
  uint32_t adapter_version; /* 0: the current one; otherwise it must be current */
} asu_generation_request;

/* Checks the request against the limits and pins its adapter. Returns 1 with *ref pinned (NULL
   for the base model), or 0 after rejecting the call. */
int asu_generation_begin(asu_server *s, asu_rpc_call *c, const asu_generation_request *g,
                         asu_sampling *sp, const asu_lora **lora, asu_adapter_ref **ref,
                         asu_adapter_info *info);

#endif
