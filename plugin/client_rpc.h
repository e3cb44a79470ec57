/* Client call machinery of the asu command on the gRPC C core: unary calls and server
   streams, each driven to its end on a pluck completion queue. */
#ifndef ASU_CLIENT_RPC_H
#define ASU_CLIENT_RPC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

typedef struct asu_client {
  grpc_channel *channel;
  grpc_completion_queue *cq;
  grpc_metadata auth; /* "authorization: Bearer <token>" when n_md is 1 */
  size_t n_md;
} asu_client;

typedef struct asu_client_status {
  grpc_status_code code;
  char message[1024];
} asu_client_status;

/* Connects lazily to target ("HOST:PORT"): with TLS when ca_pem (the PEM certificates to trust)
   is given, and sending the bearer token on every call when token is. */
int asu_client_open(asu_client *c, const char *target, const char *ca_pem, const char *token);
void asu_client_close(asu_client *c);

/* Calls method ("/asu.v1.Asu/GetJob") with req and unpacks the reply into *resp (free it with
   protobuf_c_message_free_unpacked). Returns 0 when the status is OK. */
int asu_client_unary(asu_client *c, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                     asu_client_status *st);

/* Called for each streamed message; returning nonzero cancels the call. */
typedef int (*asu_client_stream_fn)(void *user, const ProtobufCMessage *msg);

/* Calls a server-streaming method, passing each message to fn. Returns 0 when the status is
   OK. */
int asu_client_stream(asu_client *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, asu_client_stream_fn fn,
                      void *user, asu_client_status *st);

#endif
