/* State shared by the server's threads, and the request handlers. */
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

/* Request limits. Over them a request fails with RESOURCE_EXHAUSTED. */
#define ASU_DEFAULT_MAX_TOKENS 256u
#define ASU_MAX_TOKENS_LIMIT 4096u
#define ASU_MAX_PROMPT_BYTES 16384u
#define ASU_MAX_EXAMPLES 10000u
#define ASU_MAX_EXAMPLE_BYTES 65536u
#define ASU_MAX_TEMPLATE_BYTES 4096u
#define ASU_MAX_STEPS 100000u
#define ASU_MAX_LORA_RANK 256u
#define ASU_MAX_QUEUED_JOBS 8u
#define ASU_MAX_ACTIVE_CALLS 64u
/* How long CancelJob waits for a running job to stop. */
#define ASU_CANCEL_WAIT_MS 5000u

typedef struct asu_server {
  asu_model *model;
  asu_registry *reg;
  asu_jobs *jobs;
  grpc_server *grpc;
  atomic_uint_fast64_t next_request;
  atomic_bool shutting_down;
  pthread_mutex_t calls_mu;
  pthread_cond_t calls_idle;
  unsigned active_calls;
} asu_server;

/* Serves one accepted call to its end (on the calling thread) and frees it. */
void asu_handle_call(asu_server *s, asu_rpc_call *c);

#endif
