/* Server call machinery on the gRPC C core. Every accepted call is bound to its own pluck
   completion queue and served by one thread, so handlers read like blocking code: receive the
   request, send messages one batch at a time, finish with a status. */
#ifndef ASU_RPC_H
#define ASU_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

/* Our own status for "the request is valid but the server's state does not allow it",
   next to the asu_status codes of libasu; mapped to FAILED_PRECONDITION. */
#define ASU_ERR_PRECONDITION (-100)

/* Messages up to this size are accepted and sent by both the server and the client. */
#define ASU_RPC_MAX_MESSAGE (64 * 1024 * 1024)

typedef struct asu_rpc_call {
  grpc_call *call;
  grpc_completion_queue *cq;
  grpc_call_details details; /* filled for calls of unregistered methods only */
  gpr_timespec deadline;      /* filled for calls of registered methods */
  grpc_metadata_array request_md;
  char method[128];
  char request_id[24];
  bool initial_md_sent;
  bool close_started; /* RECV_CLOSE_ON_SERVER is in flight */
  bool close_done;
  int close_cancelled; /* set by RECV_CLOSE_ON_SERVER: the client cancelled or vanished */
  bool finished;       /* status sent */
  bool broken;         /* a batch failed: the call is gone */
} asu_rpc_call;

/* Allocates a call slot with its pluck queue, ready for grpc_server_request_call or
   grpc_server_request_registered_call. */
asu_rpc_call *asu_rpc_call_new(void);
/* Waits for outstanding operations, releases the call and its queue, frees c. */
void asu_rpc_call_free(asu_rpc_call *c);

/* Receives the request message and unpacks it with desc. Returns NULL after finishing the
   call itself with INVALID_ARGUMENT (malformed bytes) or CANCELLED (no message). */
ProtobufCMessage *asu_rpc_recv_request(asu_rpc_call *c, const ProtobufCMessageDescriptor *desc);

/* Sends one message of a stream. Returns 0, or -1 when the call is gone (client cancelled,
   connection lost or server shutting down). */
int asu_rpc_send(asu_rpc_call *c, const ProtobufCMessage *msg);

/* Sends msg (may be NULL) and the final status. Returns 0 or -1 as asu_rpc_send. */
int asu_rpc_finish(asu_rpc_call *c, const ProtobufCMessage *msg, grpc_status_code code,
                   const char *details);
int asu_rpc_finishf(asu_rpc_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True once the client cancelled the call or it broke; does not block. */
bool asu_rpc_cancelled(asu_rpc_call *c);

/* Maps an asu_status code (or ASU_ERR_PRECONDITION) to a gRPC status. */
grpc_status_code asu_rpc_status_from_asu(int code);
/* "OK", "INVALID_ARGUMENT", ... */
const char *asu_rpc_status_name(grpc_status_code code);

/* Serialises a message into a new byte buffer. */
grpc_byte_buffer *asu_rpc_pack(const ProtobufCMessage *msg);
/* Unpacks a byte buffer; NULL when the bytes are not a valid message of desc. */
ProtobufCMessage *asu_rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc);

/* Channel arguments raising the message size limits to ASU_RPC_MAX_MESSAGE. */
const grpc_channel_args *asu_rpc_channel_args(void);
/* The server's channel arguments: the message limits, and no SO_REUSEPORT. */
const grpc_channel_args *asu_rpc_server_args(void);

#endif
