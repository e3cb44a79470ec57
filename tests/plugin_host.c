/* A stand-in for a foreign inference server: it owns a gRPC server with a method of its own,
   /asu.test.EchoHost/Echo (returns the request bytes), loads the ASU plugin with dlopen, and
   serves both on one loopback port until SIGTERM.

   usage: plugin_host PLUGIN.so CONFIG_JSON */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "asu_plugin.h"

#define ECHO_METHOD "/asu.test.EchoHost/Echo"

typedef struct echo_host {
  grpc_server *server;
  grpc_completion_queue *cq;
  void *echo;
  int shutdown_tag;
  bool shutdown_seen; /* the shutdown tag came to the echo thread */
} echo_host;

static bool run_ops(grpc_call *call, grpc_completion_queue *cq, grpc_op *ops, size_t n) {
  if (grpc_call_start_batch(call, ops, n, ops, NULL) != GRPC_CALL_OK) return false;
  grpc_event ev = grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Serves one Echo call, blocking, on its own pluck queue. */
static void echo_once(grpc_call *call, grpc_completion_queue *cq) {
  grpc_byte_buffer *msg = NULL;
  int cancelled = 0;
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_RECV_MESSAGE;
  ops[1].data.recv_message.recv_message = &msg;
  if (run_ops(call, cq, ops, 2)) {
    grpc_slice details = grpc_slice_from_static_string("");
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_MESSAGE;
    ops[0].data.send_message.send_message = msg;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = msg ? GRPC_STATUS_OK : GRPC_STATUS_INVALID_ARGUMENT;
    ops[1].data.send_status_from_server.status_details = &details;
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &cancelled;
    run_ops(call, cq, msg ? ops : ops + 1, msg ? 3 : 2);
  }
  if (msg) grpc_byte_buffer_destroy(msg);
}

static void *serve_echo(void *arg) {
  echo_host *h = arg;
  for (;;) {
    grpc_call *call = NULL;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_metadata_array_init(&md);
    grpc_completion_queue *call_cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_request_registered_call(h->server, h->echo, &call, &deadline, &md, NULL, call_cq,
                                        h->cq, &call);
    grpc_event ev;
    do {
      ev = grpc_completion_queue_next(h->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
      if (ev.type == GRPC_OP_COMPLETE && ev.tag == &h->shutdown_tag) h->shutdown_seen = true;
    } while (ev.type == GRPC_OP_COMPLETE && ev.tag != &call);
    bool ok = ev.type == GRPC_OP_COMPLETE && ev.success;
    if (ok) echo_once(call, call_cq);
    if (call) grpc_call_unref(call);
    grpc_completion_queue_shutdown(call_cq);
    while (grpc_completion_queue_pluck(call_cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
               .type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(call_cq);
    grpc_metadata_array_destroy(&md);
    if (!ok) return NULL;
  }
}

static const asu_plugin_api *load_plugin(const char *path) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "plugin_host: %s\n", dlerror());
    return NULL;
  }
  asu_plugin_entry_fn entry = (asu_plugin_entry_fn)dlsym(lib, ASU_PLUGIN_ENTRY);
  const asu_plugin_api *api = entry ? entry(ASU_PLUGIN_ABI_VERSION) : NULL;
  if (!api || api->struct_size < sizeof *api) {
    fprintf(stderr, "plugin_host: %s has no ABI version %u\n", path, ASU_PLUGIN_ABI_VERSION);
    return NULL;
  }
  return api;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: plugin_host PLUGIN.so CONFIG_JSON\n");
    return 2;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  const asu_plugin_api *api = load_plugin(argv[1]);
  if (!api) return 1;
  char error[1024];
  asu_plugin *plugin;
  if (api->create(argv[2], &plugin, error, sizeof error)) {
    fprintf(stderr, "plugin_host: create: %s\n", error);
    return 1;
  }
  grpc_init();
  echo_host h = {.server = grpc_server_create(NULL, NULL)};
  h.cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(h.server, h.cq, NULL);
  h.echo = grpc_server_register_method(h.server, ECHO_METHOD, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
  if (api->attach(plugin, h.server, error, sizeof error)) {
    fprintf(stderr, "plugin_host: attach: %s\n", error);
    return 1;
  }
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(h.server, "127.0.0.1:0", creds);
  grpc_server_credentials_release(creds);
  grpc_server_start(h.server);
  pthread_t echo_thread;
  if (port == 0 || api->run(plugin, error, sizeof error) ||
      pthread_create(&echo_thread, NULL, serve_echo, &h)) {
    fprintf(stderr, "plugin_host: cannot serve: %s\n", port ? error : "no port");
    return 1;
  }
  printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  int sig;
  sigwait(&sigs, &sig);

  grpc_server_shutdown_and_notify(h.server, h.cq, &h.shutdown_tag);
  grpc_server_cancel_all_calls(h.server);
  api->detach(plugin);
  pthread_join(echo_thread, NULL);
  grpc_event ev = {.type = GRPC_OP_COMPLETE, .tag = &h.shutdown_tag};
  if (!h.shutdown_seen)
    do ev = grpc_completion_queue_next(h.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    while (ev.type == GRPC_OP_COMPLETE && ev.tag != &h.shutdown_tag);
  grpc_server_destroy(h.server);
  api->destroy(plugin);
  grpc_completion_queue_shutdown(h.cq);
  while (grpc_completion_queue_next(h.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(h.cq);
  grpc_shutdown();
  fprintf(stderr, "plugin_host: stopped\n");
  return 0;
}
