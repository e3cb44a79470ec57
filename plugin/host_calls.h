/* The host side of asu-server: the calls of methods that no plugin registered, each rejected
   with UNIMPLEMENTED, and the server's shutdown. */
#ifndef ASU_HOST_CALLS_H
#define ASU_HOST_CALLS_H

#include <pthread.h>
#include <stdbool.h>

#include <grpc/grpc.h>

typedef struct asu_host_calls {
  grpc_server *server;
  grpc_completion_queue *cq;
  pthread_t thread;
  bool started;
  int shutdown_tag;
} asu_host_calls;

/* Registers the host's completion queue; before the server starts. */
void asu_host_calls_init(asu_host_calls *h, grpc_server *server);
/* Starts rejecting those calls; after the server starts. Returns 0, or -1 after logging why. */
int asu_host_calls_start(asu_host_calls *h);
/* Starts the server's shutdown and cancels every call in flight. */
void asu_host_calls_shutdown(asu_host_calls *h);
/* Waits for the shutdown to complete; before grpc_server_destroy. */
void asu_host_calls_finish(asu_host_calls *h);
/* Releases the completion queue; after grpc_server_destroy. */
void asu_host_calls_destroy(asu_host_calls *h);

#endif
