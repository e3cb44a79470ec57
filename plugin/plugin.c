/* The plugin's lifecycle: configuration, attaching to a host's server, and the acceptor thread
   that takes the calls of the registered methods and serves each on a thread of its own. */
#include "asu_plugin.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/support/time.h>

#include "asu_log.h"
#include "plugin_config.h"
#include "server.h"

#define MAX_ROUTES 32

typedef struct route {
  const asu_rpc_method *method;
  void *handle;          /* from grpc_server_register_method */
  asu_rpc_call *pending; /* the call requested for this method, NULL once none is */
} route;

struct asu_plugin {
  asu_server s;
  grpc_server *server;
  grpc_completion_queue *cq;
  route routes[MAX_ROUTES];
  size_t n_routes;
  pthread_t acceptor;
  bool running;
};

static int fail(char *error, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *error, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (error && size) vsnprintf(error, size, fmt, ap);
  va_end(ap);
  return 1;
}

/* ---- Calls ---- */

typedef struct call_thread_arg {
  asu_server *server;
  const asu_rpc_method *method;
  asu_rpc_call *call;
} call_thread_arg;

static void call_ended(asu_server *s) {
  pthread_mutex_lock(&s->calls_mu);
  if (--s->active_calls == 0) pthread_cond_broadcast(&s->calls_idle);
  pthread_mutex_unlock(&s->calls_mu);
}

static void *call_thread(void *arg) {
  call_thread_arg a = *(call_thread_arg *)arg;
  free(arg);
  asu_handle_call(a.server, a.method, a.call);
  call_ended(a.server);
  return NULL;
}

/* Starts a handler thread for an accepted call, or turns the call away when too many run. */
static void dispatch(asu_server *s, const asu_rpc_method *m, asu_rpc_call *c) {
  pthread_mutex_lock(&s->calls_mu);
  bool full = s->active_calls >= s->limits.max_calls;
  if (!full) s->active_calls++;
  pthread_mutex_unlock(&s->calls_mu);
  if (!full) {
    call_thread_arg *a = malloc(sizeof *a);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = -1;
    if (a) {
      *a = (call_thread_arg){s, m, c};
      rc = pthread_create(&t, &attr, call_thread, a);
    }
    pthread_attr_destroy(&attr);
    if (rc == 0) return;
    free(a);
    call_ended(s);
  }
  asu_log_warn("turning a call of %s away: %u calls are running", m->path, s->limits.max_calls);
  asu_rpc_finishf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many concurrent calls (limit %u)",
                  s->limits.max_calls);
  asu_rpc_call_free(c);
}

static void request_next(asu_plugin *p, route *r) {
  r->pending = NULL;
  if (atomic_load(&p->s.shutting_down)) return;
  asu_rpc_call *c = asu_rpc_call_new();
  if (!c) return;
  if (grpc_server_request_registered_call(p->server, r->handle, &c->call, &c->deadline,
                                          &c->request_md, NULL, c->cq, p->cq, c) != GRPC_CALL_OK) {
    asu_log_error("cannot request calls of %s", r->method->path);
    asu_rpc_call_free(c);
    return;
  }
  r->pending = c;
}

static route *route_of(asu_plugin *p, const asu_rpc_call *c) {
  for (size_t i = 0; i < p->n_routes; i++)
    if (p->routes[i].pending == c) return &p->routes[i];
  return NULL;
}

static size_t pending_count(const asu_plugin *p) {
  size_t n = 0;
  for (size_t i = 0; i < p->n_routes; i++) n += p->routes[i].pending != NULL;
  return n;
}

/* Each method has one requested call at a time. A request that fails means the server is
   shutting down, so its method is not requested again; the thread ends when none is left. */
static void *acceptor(void *arg) {
  asu_plugin *p = arg;
  while (pending_count(p) > 0) {
    grpc_event ev = grpc_completion_queue_next(p->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    asu_rpc_call *c = ev.tag;
    route *r = route_of(p, c);
    if (!r) continue;
    if (!ev.success) {
      r->pending = NULL;
      asu_rpc_call_free(c);
      continue;
    }
    const asu_rpc_method *m = r->method;
    request_next(p, r);
    dispatch(&p->s, m, c);
  }
  return NULL;
}

/* ---- Lifecycle ---- */

static void server_free(asu_server *s) {
  if (s->jobs) asu_jobs_destroy(s->jobs);
  if (s->reg) asu_registry_close(s->reg);
  if (s->model) asu_model_destroy(s->model);
  free(s->auth_token);
  free(s->data_root);
  pthread_cond_destroy(&s->calls_idle);
  pthread_mutex_destroy(&s->calls_mu);
}

/* The base model's name in the inference protocol: the file name without ".gguf". */
static void model_name_from_path(const char *path, char *out, size_t size) {
  char copy[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", path);
  snprintf(out, size, "%s", basename(copy));
  size_t n = strlen(out);
  if (n > 5 && !strcmp(out + n - 5, ".gguf")) out[n - 5] = '\0';
}

static int open_server(asu_server *s, const asu_plugin_config *cfg, asu_error *err) {
  s->limits = cfg->limits;
  if (cfg->auth_token && !(s->auth_token = strdup(cfg->auth_token)))
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (cfg->data_root && !(s->data_root = realpath(cfg->data_root, NULL)))
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "data_root '%s' cannot be resolved: %s; give "
                         "an existing directory", cfg->data_root, strerror(errno));
  model_name_from_path(cfg->model, s->model_name, sizeof s->model_name);
  asu_log_info("loading model %s on device %s", cfg->model, cfg->device ? cfg->device : "(default)");
  int rc = asu_model_load(cfg->model, cfg->device, &s->model, err);
  if (!rc && (rc = asu_registry_open(s->model, cfg->adapters, cfg->max_resident_adapters,
                                     &s->reg, err)))
    asu_error_wrap(err, "adapters directory %s: ", cfg->adapters);
  char jobs_dir[PATH_MAX];
  snprintf(jobs_dir, sizeof jobs_dir, "%s/%s", cfg->adapters, ASU_JOBS_SUBDIR);
  asu_jobs_options jobs = {.queue_limit = s->limits.max_queued_jobs,
                           .dir = jobs_dir,
                           .checkpoint_every = cfg->checkpoint_every,
                           .dispatches_per_submit = cfg->dispatches_per_submit,
                           .device = cfg->device};
  if (!rc) rc = asu_jobs_create(s->model, s->reg, &jobs, &s->jobs, err);
  return rc;
}

static int plugin_create(const char *config_json, asu_plugin **out, char *error, size_t size) {
  *out = NULL;
  asu_error err;
  asu_error_clear(&err);
  asu_plugin_config cfg;
  if (asu_plugin_config_parse(config_json, &cfg, &err) != ASU_OK)
    return fail(error, size, "configuration: %s", err.message);
  asu_plugin *p = calloc(1, sizeof *p);
  if (!p) {
    asu_plugin_config_free(&cfg);
    return fail(error, size, "out of memory");
  }
  atomic_init(&p->s.next_request, 1);
  atomic_init(&p->s.shutting_down, false);
  pthread_mutex_init(&p->s.calls_mu, NULL);
  pthread_cond_init(&p->s.calls_idle, NULL);
  int rc = open_server(&p->s, &cfg, &err);
  asu_plugin_config_free(&cfg);
  if (rc) {
    server_free(&p->s);
    free(p);
    return fail(error, size, "%s", err.message);
  }
  grpc_init();
  *out = p;
  return 0;
}

static int add_routes(asu_plugin *p, const asu_rpc_method *methods, size_t n, char *error,
                      size_t size) {
  for (size_t i = 0; i < n; i++) {
    if (p->n_routes == MAX_ROUTES) return fail(error, size, "too many methods to register");
    void *h = grpc_server_register_method(p->server, methods[i].path, NULL,
                                          GRPC_SRM_PAYLOAD_NONE, 0);
    if (!h)
      return fail(error, size, "cannot register %s: the host or another plugin registered it",
                  methods[i].path);
    p->routes[p->n_routes++] = (route){.method = &methods[i], .handle = h};
  }
  return 0;
}

static int plugin_attach(asu_plugin *p, grpc_server *server, char *error, size_t size) {
  if (p->server) return fail(error, size, "the plugin is already attached to a server");
  p->server = server;
  const asu_rpc_method *(*tables[])(size_t *) = {asu_core_methods, asu_oip_methods,
                                             asu_health_methods};
  for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
    size_t n;
    const asu_rpc_method *m = tables[t](&n);
    if (add_routes(p, m, n, error, size)) return 1;
  }
  p->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(server, p->cq, NULL);
  return 0;
}

static int plugin_run(asu_plugin *p, char *error, size_t size) {
  if (!p->server) return fail(error, size, "attach the plugin to a server before running it");
  if (p->running) return fail(error, size, "the plugin is already running");
  for (size_t i = 0; i < p->n_routes; i++) request_next(p, &p->routes[i]);
  if (pthread_create(&p->acceptor, NULL, acceptor, p) != 0)
    return fail(error, size, "cannot start the acceptor thread");
  p->running = true;
  asu_log_info("serving model %s (%zu methods)", p->s.model_name, p->n_routes);
  return 0;
}

static void plugin_detach(asu_plugin *p) {
  atomic_store(&p->s.shutting_down, true);
  if (p->running) pthread_join(p->acceptor, NULL);
  p->running = false;
  pthread_mutex_lock(&p->s.calls_mu);
  while (p->s.active_calls > 0) pthread_cond_wait(&p->s.calls_idle, &p->s.calls_mu);
  pthread_mutex_unlock(&p->s.calls_mu);
}

static void plugin_destroy(asu_plugin *p) {
  if (!p) return;
  plugin_detach(p);
  if (p->cq) {
    grpc_completion_queue_shutdown(p->cq);
    while (grpc_completion_queue_next(p->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(p->cq);
  }
  server_free(&p->s);
  free(p);
  grpc_shutdown();
}

__attribute__((visibility("default"))) const asu_plugin_api *asu_plugin_entry(
    uint32_t abi_version) {
  static const asu_plugin_api api = {
      .abi_version = ASU_PLUGIN_ABI_VERSION,
      .struct_size = sizeof(asu_plugin_api),
      .version = ASU_VERSION,
      .create = plugin_create,
      .attach = plugin_attach,
      .run = plugin_run,
      .detach = plugin_detach,
      .destroy = plugin_destroy,
  };
  return abi_version == ASU_PLUGIN_ABI_VERSION ? &api : NULL;
}
