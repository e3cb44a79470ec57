#include "client_rpc.h"

#include <stdio.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "rpc.h"

/* Deadline of unary calls; CancelJob may wait a few seconds for a job to stop. */
#define UNARY_DEADLINE_S 60

int asu_client_open(asu_client *c, const char *target, const char *ca_pem, const char *token) {
  grpc_init();
  grpc_channel_credentials *creds = ca_pem ? grpc_ssl_credentials_create(ca_pem, NULL, NULL, NULL)
                                           : grpc_insecure_credentials_create();
  c->channel = creds ? grpc_channel_create(target, creds, asu_rpc_channel_args()) : NULL;
  if (creds) grpc_channel_credentials_release(creds);
  if (token) {
    char value[4200];
    snprintf(value, sizeof value, "Bearer %s", token);
    c->auth.key = grpc_slice_from_static_string("authorization");
    c->auth.value = grpc_slice_from_copied_string(value);
    c->n_md = 1;
  }
  c->cq = grpc_completion_queue_create_for_pluck(NULL);
  return c->channel ? 0 : -1;
}

void asu_client_close(asu_client *c) {
  if (c->channel) grpc_channel_destroy(c->channel);
  if (c->n_md) grpc_slice_unref(c->auth.value);
  grpc_completion_queue_shutdown(c->cq);
  while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
             .type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(c->cq);
  grpc_shutdown();
}

static int run_batch(asu_client *c, grpc_call *call, const grpc_op *ops, size_t n) {
  int tag;
  if (grpc_call_start_batch(call, ops, n, &tag, NULL) != GRPC_CALL_OK) return -1;
  grpc_event ev =
      grpc_completion_queue_pluck(c->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.type == GRPC_OP_COMPLETE && ev.success ? 0 : -1;
}

static void set_status(asu_client_status *st, grpc_status_code code, grpc_slice details) {
  st->code = code;
  size_t n = GRPC_SLICE_LENGTH(details);
  if (n >= sizeof st->message) n = sizeof st->message - 1;
  memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
  st->message[n] = '\0';
}

static grpc_call *new_call(asu_client *c, const char *method, gpr_timespec deadline) {
  grpc_slice m = grpc_slice_from_copied_string(method);
  grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m,
                                             NULL, deadline, NULL);
  grpc_slice_unref(m);
  return call;
}

/* Receives the final status of call into st. */
static void recv_status(asu_client *c, grpc_call *call, asu_client_status *st) {
  grpc_metadata_array trailing;
  grpc_metadata_array_init(&trailing);
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &trailing;
  op.data.recv_status_on_client.status = &code;
  op.data.recv_status_on_client.status_details = &details;
  if (run_batch(c, call, &op, 1) != 0) {
    st->code = GRPC_STATUS_INTERNAL;
    snprintf(st->message, sizeof st->message, "receiving the call status failed");
  } else {
    set_status(st, code, details);
  }
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&trailing);
}

int asu_client_unary(asu_client *c, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                     asu_client_status *st) {
  *resp = NULL;
  gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                       gpr_time_from_seconds(UNARY_DEADLINE_S, GPR_TIMESPAN));
  grpc_call *call = new_call(c, method, deadline);
  grpc_byte_buffer *out = asu_rpc_pack(req);
  grpc_byte_buffer *in = NULL;
  grpc_metadata_array initial;
  grpc_metadata_array_init(&initial);
  grpc_op ops[5];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = c->n_md;
  ops[0].data.send_initial_metadata.metadata = &c->auth;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = out;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &in;
  run_batch(c, call, ops, 5); /* a failure shows in the status */
  recv_status(c, call, st);
  if (st->code == GRPC_STATUS_OK) {
    *resp = in ? asu_rpc_unpack(in, resp_desc) : NULL;
    if (!*resp) {
      st->code = GRPC_STATUS_INTERNAL;
      snprintf(st->message, sizeof st->message, "the reply is not a valid %s message",
               resp_desc->name);
    }
  }
  if (in) grpc_byte_buffer_destroy(in);
  grpc_byte_buffer_destroy(out);
  grpc_metadata_array_destroy(&initial);
  grpc_call_unref(call);
  return st->code == GRPC_STATUS_OK ? 0 : -1;
}

int asu_client_stream(asu_client *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, asu_client_stream_fn fn,
                      void *user, asu_client_status *st) {
  grpc_call *call = new_call(c, method, gpr_inf_future(GPR_CLOCK_REALTIME));
  grpc_byte_buffer *out = asu_rpc_pack(req);
  grpc_metadata_array initial;
  grpc_metadata_array_init(&initial);
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = c->n_md;
  ops[0].data.send_initial_metadata.metadata = &c->auth;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = out;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
  bool stopped = false, bad = false;
  if (run_batch(c, call, ops, 4) == 0) {
    for (;;) {
      grpc_byte_buffer *in = NULL;
      grpc_op op;
      memset(&op, 0, sizeof op);
      op.op = GRPC_OP_RECV_MESSAGE;
      op.data.recv_message.recv_message = &in;
      if (run_batch(c, call, &op, 1) != 0 || !in) break;
      ProtobufCMessage *m = asu_rpc_unpack(in, resp_desc);
      grpc_byte_buffer_destroy(in);
      int r = m ? fn(user, m) : 1;
      bad = !m;
      if (m) protobuf_c_message_free_unpacked(m, NULL);
      if (r) {
        stopped = true;
        grpc_call_cancel(call, NULL);
        break;
      }
    }
  }
  recv_status(c, call, st);
  if (bad) {
    st->code = GRPC_STATUS_INTERNAL;
    snprintf(st->message, sizeof st->message, "a streamed message is not a valid %s",
             resp_desc->name);
  } else if (stopped && st->code == GRPC_STATUS_CANCELLED) {
    st->code = GRPC_STATUS_OK; /* we cancelled on purpose */
    st->message[0] = '\0';
  }
  grpc_byte_buffer_destroy(out);
  grpc_metadata_array_destroy(&initial);
  grpc_call_unref(call);
  return st->code == GRPC_STATUS_OK ? 0 : -1;
}
