#include "rpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>

#include "asu_error.h"
#include "fsutil.h"

asu_rpc_call *asu_rpc_call_new(void) {
  asu_rpc_call *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->request_md);
  return c;
}

/* Runs one batch and waits for it. Returns 0 on success, -1 when the batch failed. */
static int run_batch(asu_rpc_call *c, const grpc_op *ops, size_t n) {
  int tag;
  if (grpc_call_start_batch(c->call, ops, n, &tag, NULL) != GRPC_CALL_OK) {
    c->broken = true;
    return -1;
  }
  grpc_event ev = grpc_completion_queue_pluck(c->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME),
                                              NULL);
  if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
    c->broken = true;
    return -1;
  }
  return 0;
}

static void start_close_watch(asu_rpc_call *c) {
  if (c->close_started || !c->call) return;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->close_cancelled;
  if (grpc_call_start_batch(c->call, &op, 1, &c->close_done, NULL) == GRPC_CALL_OK)
    c->close_started = true;
}

static void wait_close(asu_rpc_call *c, gpr_timespec deadline) {
  if (!c->close_started || c->close_done) return;
  grpc_event ev = grpc_completion_queue_pluck(c->cq, &c->close_done, deadline, NULL);
  if (ev.type == GRPC_OP_COMPLETE) c->close_done = true;
}

bool asu_rpc_cancelled(asu_rpc_call *c) {
  if (c->broken) return true;
  wait_close(c, gpr_inf_past(GPR_CLOCK_MONOTONIC));
  /* Before the status is sent, a completed close means the client went away. */
  return c->close_done && (c->close_cancelled || !c->finished);
}

void asu_rpc_call_free(asu_rpc_call *c) {
  if (!c) return;
  if (c->call) {
    if (!c->finished || c->broken) grpc_call_cancel(c->call, NULL);
    wait_close(c, gpr_inf_future(GPR_CLOCK_REALTIME));
    grpc_call_unref(c->call);
  }
  grpc_completion_queue_shutdown(c->cq);
  while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
             .type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(c->cq);
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->request_md);
  free(c);
}

grpc_byte_buffer *asu_rpc_pack(const ProtobufCMessage *msg) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  grpc_slice s = grpc_slice_malloc(n);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

ProtobufCMessage *asu_rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc) {
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  ProtobufCMessage *m =
      protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
  grpc_slice_unref(s);
  return m;
}

ProtobufCMessage *asu_rpc_recv_request(asu_rpc_call *c, const ProtobufCMessageDescriptor *desc) {
  grpc_byte_buffer *bb = NULL;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &bb;
  if (run_batch(c, &op, 1) != 0 || !bb) {
    if (bb) grpc_byte_buffer_destroy(bb);
    asu_rpc_finish(c, NULL, GRPC_STATUS_CANCELLED, "no request message");
    return NULL;
  }
  start_close_watch(c);
  ProtobufCMessage *m = asu_rpc_unpack(bb, desc);
  grpc_byte_buffer_destroy(bb);
  if (!m)
    asu_rpc_finishf(c, GRPC_STATUS_INVALID_ARGUMENT, "request is not a valid %s message",
                    desc->name);
  return m;
}

static void add_initial_md(asu_rpc_call *c, grpc_op *ops, size_t *n) {
  if (c->initial_md_sent) return;
  memset(&ops[*n], 0, sizeof ops[*n]);
  ops[*n].op = GRPC_OP_SEND_INITIAL_METADATA;
  (*n)++;
  c->initial_md_sent = true;
}

int asu_rpc_send(asu_rpc_call *c, const ProtobufCMessage *msg) {
  if (c->broken || c->finished) return -1;
  grpc_op ops[2];
  size_t n = 0;
  add_initial_md(c, ops, &n);
  grpc_byte_buffer *bb = asu_rpc_pack(msg);
  memset(&ops[n], 0, sizeof ops[n]);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].data.send_message.send_message = bb;
  n++;
  int rc = run_batch(c, ops, n);
  grpc_byte_buffer_destroy(bb);
  return rc;
}

int asu_rpc_finish(asu_rpc_call *c, const ProtobufCMessage *msg, grpc_status_code code,
                   const char *details) {
  if (c->finished) return -1;
  start_close_watch(c);
  grpc_op ops[3];
  size_t n = 0;
  add_initial_md(c, ops, &n);
  grpc_byte_buffer *bb = NULL;
  if (msg) {
    bb = asu_rpc_pack(msg);
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
  }
  grpc_slice det = grpc_slice_from_copied_string(details ? details : "");
  memset(&ops[n], 0, sizeof ops[n]);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n].data.send_status_from_server.status_details = &det;
  n++;
  c->finished = true;
  int rc = c->broken ? -1 : run_batch(c, ops, n);
  grpc_slice_unref(det);
  if (bb) grpc_byte_buffer_destroy(bb);
  return rc;
}

int asu_rpc_finishf(asu_rpc_call *c, grpc_status_code code, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return asu_rpc_finish(c, NULL, code, buf);
}

grpc_status_code asu_rpc_status_from_asu(int code) {
  switch (code) {
  case ASU_OK: return GRPC_STATUS_OK;
  case ASU_ERR_INVALID: return GRPC_STATUS_INVALID_ARGUMENT;
  case ASU_ERR_FORMAT: return GRPC_STATUS_INVALID_ARGUMENT;
  case ASU_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
  case ASU_ERR_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
  case ASU_ERR_CANCELLED: return GRPC_STATUS_CANCELLED;
  case ASU_ERR_LIMIT: return GRPC_STATUS_RESOURCE_EXHAUSTED;
  case ASU_ERR_PRECONDITION: return GRPC_STATUS_FAILED_PRECONDITION;
  case ASU_ERR_PERMISSION: return GRPC_STATUS_PERMISSION_DENIED;
  default: return GRPC_STATUS_INTERNAL;
  }
}

const char *asu_rpc_status_name(grpc_status_code code) {
  static const char *names[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  if ((int)code >= 0 && (size_t)code < sizeof names / sizeof names[0]) return names[code];
  return "UNKNOWN";
}

const grpc_channel_args *asu_rpc_channel_args(void) {
  static grpc_arg args[2];
  static grpc_channel_args cargs;
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = ASU_RPC_MAX_MESSAGE;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
  args[1].value.integer = ASU_RPC_MAX_MESSAGE;
  cargs.num_args = 2;
  cargs.args = args;
  return &cargs;
}

const grpc_channel_args *asu_rpc_server_args(void) {
  static grpc_arg args[3];
  static grpc_channel_args cargs;
  const grpc_channel_args *common = asu_rpc_channel_args();
  args[0] = common->args[0];
  args[1] = common->args[1];
  /* gRPC sets SO_REUSEPORT by default, which lets a second server bind a port that one already
     serves and then splits the calls between them. */
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
  args[2].value.integer = 0;
  cargs.num_args = 3;
  cargs.args = args;
  return &cargs;
}
