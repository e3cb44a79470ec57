#include "host_calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/support/time.h>

#include "asu_log.h"

typedef struct host_call {
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
  grpc_slice status_text;
  int cancelled;
  bool answered;
} host_call;

static void call_free(host_call *c) {
  if (c->call) grpc_call_unref(c->call);
  if (c->answered) grpc_slice_unref(c->status_text);
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->md);
  free(c);
}

static host_call *request_one(asu_host_calls *h) {
  host_call *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->md);
  if (grpc_server_request_call(h->server, &c->call, &c->details, &c->md, h->cq, h->cq, c) !=
      GRPC_CALL_OK) {
    call_free(c);
    return NULL;
  }
  return c;
}

/* Sends UNIMPLEMENTED; the call is freed when the batch completes. Returns 0 when started. */
static int answer(host_call *c) {
  char text[300];
  snprintf(text, sizeof text, "unknown method %.*s",
           (int)GRPC_SLICE_LENGTH(c->details.method),
           (const char *)GRPC_SLICE_START_PTR(c->details.method));
  asu_log_warn("%s", text);
  c->status_text = grpc_slice_from_copied_string(text);
  c->answered = true;
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
  ops[1].data.send_status_from_server.status_details = &c->status_text;
  ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
  return grpc_call_start_batch(c->call, ops, 3, c, NULL) == GRPC_CALL_OK ? 0 : -1;
}

/* One requested call at a time; ends when the shutdown completed and no call is left. */
static void *serve(void *arg) {
  asu_host_calls *h = arg;
  host_call *pending = request_one(h);
  unsigned answering = 0;
  bool shut = false;
  while (!shut || pending || answering) {
    grpc_event ev = grpc_completion_queue_next(h->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    if (ev.tag == &h->shutdown_tag) {
      shut = true;
      continue;
    }
    host_call *c = ev.tag;
    if (c != pending) { /* a rejection was sent */
      answering--;
      call_free(c);
      continue;
    }
    pending = NULL;
    if (ev.success && answer(c) == 0) answering++;
    else call_free(c);
    if (ev.success && !shut) pending = request_one(h);
  }
  return NULL;
}

void asu_host_calls_init(asu_host_calls *h, grpc_server *server) {
  memset(h, 0, sizeof *h);
  h->server = server;
  h->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(server, h->cq, NULL);
}

int asu_host_calls_start(asu_host_calls *h) {
  if (pthread_create(&h->thread, NULL, serve, h) != 0) {
    asu_log_error("cannot start the thread of the host's calls");
    return -1;
  }
  h->started = true;
  return 0;
}

void asu_host_calls_shutdown(asu_host_calls *h) {
  grpc_server_shutdown_and_notify(h->server, h->cq, &h->shutdown_tag);
  grpc_server_cancel_all_calls(h->server);
}

void asu_host_calls_finish(asu_host_calls *h) {
  if (h->started) {
    pthread_join(h->thread, NULL);
    return;
  }
  grpc_event ev;
  do ev = grpc_completion_queue_next(h->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  while (ev.type == GRPC_OP_COMPLETE && ev.tag != &h->shutdown_tag);
}

void asu_host_calls_destroy(asu_host_calls *h) {
  grpc_completion_queue_shutdown(h->cq);
  while (grpc_completion_queue_next(h->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(h->cq);
}
