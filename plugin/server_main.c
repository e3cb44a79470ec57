/* asu-server: the gRPC service of ASU on the gRPC C core.

   Threads: the main thread waits for SIGINT or SIGTERM. An acceptor thread requests calls on the
   server's completion queue and starts one handler thread per call. The job thread trains. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "asu_log.h"
#include "server.h"

static int shutdown_tag;

typedef struct call_thread_arg {
  asu_server *server;
  asu_rpc_call *call;
} call_thread_arg;

static void *call_thread(void *arg) {
  call_thread_arg a = *(call_thread_arg *)arg;
  free(arg);
  asu_handle_call(a.server, a.call);
  pthread_mutex_lock(&a.server->calls_mu);
  if (--a.server->active_calls == 0) pthread_cond_broadcast(&a.server->calls_idle);
  pthread_mutex_unlock(&a.server->calls_mu);
  return NULL;
}

/* Starts a handler thread for an accepted call, or turns the call away when too many run. */
static void dispatch(asu_server *s, asu_rpc_call *c) {
  pthread_mutex_lock(&s->calls_mu);
  bool full = s->active_calls >= ASU_MAX_ACTIVE_CALLS;
  if (!full) s->active_calls++;
  pthread_mutex_unlock(&s->calls_mu);
  if (!full) {
    call_thread_arg *a = malloc(sizeof *a);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = a ? (a->server = s, a->call = c, pthread_create(&t, &attr, call_thread, a)) : -1;
    pthread_attr_destroy(&attr);
    if (rc == 0) return;
    free(a);
    pthread_mutex_lock(&s->calls_mu);
    if (--s->active_calls == 0) pthread_cond_broadcast(&s->calls_idle);
    pthread_mutex_unlock(&s->calls_mu);
  }
  asu_log_warn("turning a call away: %u calls are running", ASU_MAX_ACTIVE_CALLS);
  asu_rpc_finishf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many concurrent calls (limit %u)",
                  ASU_MAX_ACTIVE_CALLS);
  asu_rpc_call_free(c);
}

typedef struct acceptor_arg {
  asu_server *server;
  grpc_completion_queue *cq;
} acceptor_arg;

static asu_rpc_call *request_next(asu_server *s, grpc_completion_queue *cq) {
  if (atomic_load(&s->shutting_down)) return NULL;
  asu_rpc_call *c = asu_rpc_call_new();
  if (!c) return NULL;
  if (grpc_server_request_call(s->grpc, &c->call, &c->details, &c->request_md, c->cq, cq, c) !=
      GRPC_CALL_OK) {
    asu_log_error("grpc_server_request_call failed");
    asu_rpc_call_free(c);
    return NULL;
  }
  return c;
}

static void *acceptor(void *arg) {
  acceptor_arg *a = arg;
  asu_server *s = a->server;
  asu_rpc_call *pending = request_next(s, a->cq);
  bool shutdown_done = false;
  while (!(shutdown_done && !pending)) {
    grpc_event ev = grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    if (ev.tag == &shutdown_tag) {
      shutdown_done = true;
      continue;
    }
    asu_rpc_call *c = ev.tag;
    if (c == pending) pending = NULL;
    if (ev.success) dispatch(s, c);
    else asu_rpc_call_free(c);
    if (!pending) pending = request_next(s, a->cq);
  }
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: asu-server --model FILE [--listen HOST:PORT] [--adapters DIR] [--device SEL]\n"
          "  --model FILE        llama GGUF model to serve\n"
          "  --listen HOST:PORT  address to listen on (default 127.0.0.1:50051; port 0 picks a\n"
          "                      free port, printed as \"listening on HOST:PORT\" on stdout)\n"
          "  --adapters DIR      adapters directory (default ./adapters)\n"
          "  --device SEL        Vulkan device index or name substring (default: ASU_DEVICE or\n"
          "                      the first discrete GPU)\n");
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *listen = "127.0.0.1:50051", *adapters = "./adapters";
  const char *device = NULL;
  static const struct option opts[] = {
      {"model", required_argument, NULL, 'm'},  {"listen", required_argument, NULL, 'l'},
      {"adapters", required_argument, NULL, 'a'}, {"device", required_argument, NULL, 'd'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "m:l:a:d:h", opts, NULL)) != -1) {
    switch (o) {
    case 'm': model_path = optarg; break;
    case 'l': listen = optarg; break;
    case 'a': adapters = optarg; break;
    case 'd': device = optarg; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!model_path || optind != argc) {
    usage(stderr);
    return 2;
  }

  /* Every thread inherits this mask; the main thread takes the signals with sigwait. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  asu_server s;
  memset(&s, 0, sizeof s);
  atomic_init(&s.next_request, 1);
  atomic_init(&s.shutting_down, false);
  pthread_mutex_init(&s.calls_mu, NULL);
  pthread_cond_init(&s.calls_idle, NULL);

  asu_error err;
  asu_error_clear(&err);
  asu_log_info("loading model %s on device %s", model_path, device ? device : "(default)");
  if (asu_model_load(model_path, device, &s.model, &err) != ASU_OK) {
    asu_log_error("%s", err.message);
    return 1;
  }
  if (asu_registry_open(s.model, adapters, &s.reg, &err) != ASU_OK) {
    asu_log_error("adapters directory %s: %s", adapters, err.message);
    asu_model_destroy(s.model);
    return 1;
  }
  if (asu_jobs_create(s.model, s.reg, ASU_MAX_QUEUED_JOBS, 0, &s.jobs, &err) != ASU_OK) {
    asu_log_error("%s", err.message);
    asu_registry_close(s.reg);
    asu_model_destroy(s.model);
    return 1;
  }

  grpc_init();
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  s.grpc = grpc_server_create(asu_rpc_server_args(), NULL);
  grpc_server_register_completion_queue(s.grpc, cq, NULL);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(s.grpc, listen, creds);
  grpc_server_credentials_release(creds);
  int status = 0;
  pthread_t acceptor_thread;
  acceptor_arg aa = {&s, cq};
  bool started = false;
  if (port == 0) {
    asu_log_error("cannot listen on %s: give --listen as HOST:PORT with a port that no other "
                  "program uses (port 0 picks a free one)", listen);
    status = 1;
  } else {
    grpc_server_start(s.grpc);
    char bound[300];
    const char *colon = strrchr(listen, ':');
    int host_len = colon ? (int)(colon - listen) : (int)strlen(listen);
    snprintf(bound, sizeof bound, "%.*s:%d", host_len, listen, port);
    if (pthread_create(&acceptor_thread, NULL, acceptor, &aa) != 0) {
      asu_log_error("cannot start the acceptor thread");
      status = 1;
    } else {
      started = true;
      asu_log_info("serving model %s on device %s, adapters in %s, listening on %s", model_path,
                   device ? device : "(default)", adapters, bound);
      printf("listening on %s\n", bound);
      fflush(stdout);
      int sig = 0;
      sigwait(&sigs, &sig);
      asu_log_info("received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
      /* A second signal ends the process at once. */
      pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    }
  }

  atomic_store(&s.shutting_down, true);
  if (port != 0) {
    grpc_server_shutdown_and_notify(s.grpc, cq, &shutdown_tag);
    grpc_server_cancel_all_calls(s.grpc);
    if (started) {
      pthread_join(acceptor_thread, NULL);
    } else {
      grpc_event ev;
      do ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
      while (ev.type == GRPC_OP_COMPLETE && ev.tag != &shutdown_tag);
    }
  }
  pthread_mutex_lock(&s.calls_mu);
  while (s.active_calls > 0) pthread_cond_wait(&s.calls_idle, &s.calls_mu);
  pthread_mutex_unlock(&s.calls_mu);
  grpc_server_destroy(s.grpc);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);

  asu_jobs_destroy(s.jobs);
  asu_registry_close(s.reg);
  asu_model_destroy(s.model);
  grpc_shutdown();
  pthread_cond_destroy(&s.calls_idle);
  pthread_mutex_destroy(&s.calls_mu);
  asu_log_info("server stopped");
  return status;
}
