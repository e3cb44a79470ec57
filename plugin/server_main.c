/* asu-server: a thin host around the ASU plugin. It owns the gRPC server, its port and its
   credentials, attaches the plugin's services, and rejects calls to any other method with
   UNIMPLEMENTED. The main thread waits for SIGINT or SIGTERM. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "asu_log.h"
#include "asu_plugin.h"
#include "fsutil.h"
#include "host_calls.h"
#include "rpc.h"

typedef struct options {
  const char *model, *listen, *adapters, *device, *data_root;
  const char *token_file, *tls_cert, *tls_key;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: asu-server --model FILE [--listen HOST:PORT] [--adapters DIR] [--device SEL]\n"
          "                  [--data-root DIR] [--auth-token-file FILE]\n"
          "                  [--tls-cert FILE --tls-key FILE]\n"
          "  --model FILE            llama GGUF model to serve\n"
          "  --listen HOST:PORT      address to listen on (default 127.0.0.1:50051; port 0 picks\n"
          "                          a free port, printed as \"listening on HOST:PORT\")\n"
          "  --adapters DIR          adapters directory (default ./adapters)\n"
          "  --device SEL            Vulkan device index or name substring (default:\n"
          "                          ASU_DEVICE or the first discrete GPU)\n"
          "  --data-root DIR         directory that paths in requests must lie under (adapter\n"
          "                          imports, finetune and evaluation files); without it\n"
          "                          requests cannot name paths\n"
          "  --auth-token-file FILE  require \"authorization: Bearer <token>\" with the token in\n"
          "                          FILE on every method that changes state (ASU_AUTH_TOKEN\n"
          "                          gives the token directly)\n"
          "  --tls-cert FILE, --tls-key FILE\n"
          "                          serve TLS with this PEM certificate chain and key\n");
}

static int parse_options(int argc, char **argv, options *o) {
  *o = (options){.listen = "127.0.0.1:50051", .adapters = "./adapters"};
  static const struct option opts[] = {
      {"model", required_argument, NULL, 'm'},   {"listen", required_argument, NULL, 'l'},
      {"adapters", required_argument, NULL, 'a'}, {"device", required_argument, NULL, 'd'},
      {"data-root", required_argument, NULL, 'r'}, {"auth-token-file", required_argument, NULL, 't'},
      {"tls-cert", required_argument, NULL, 'c'}, {"tls-key", required_argument, NULL, 'k'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "m:l:a:d:r:t:c:k:h", opts, NULL)) != -1) {
    switch (c) {
    case 'm': o->model = optarg; break;
    case 'l': o->listen = optarg; break;
    case 'a': o->adapters = optarg; break;
    case 'd': o->device = optarg; break;
    case 'r': o->data_root = optarg; break;
    case 't': o->token_file = optarg; break;
    case 'c': o->tls_cert = optarg; break;
    case 'k': o->tls_key = optarg; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return 2;
    }
  }
  if (!o->model || optind != argc) {
    usage(stderr);
    return 2;
  }
  if (!o->tls_cert != !o->tls_key) {
    fprintf(stderr, "asu-server: give --tls-cert and --tls-key together\n");
    return 2;
  }
  return 0;
}

/* The token from --auth-token-file (its first line) or ASU_AUTH_TOKEN; NULL when neither. */
static char *read_token(const options *o, int *failed) {
  *failed = 0;
  if (!o->token_file) {
    const char *env = getenv("ASU_AUTH_TOKEN");
    return env && *env ? strdup(env) : NULL;
  }
  char *text = NULL;
  asu_error err;
  if (asu_fs_read_small(o->token_file, 4096, &text, NULL, &err) != ASU_OK) {
    asu_log_error("--auth-token-file: %s", err.message);
    *failed = 1;
    return NULL;
  }
  text[strcspn(text, "\r\n")] = '\0';
  if (!text[0]) {
    asu_log_error("--auth-token-file %s: the first line is empty; write the token there",
                  o->token_file);
    free(text);
    *failed = 1;
    return NULL;
  }
  return text;
}

/* The plugin's JSON configuration from the options. */
static char *plugin_config(const options *o, const char *token) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "model", o->model);
  cJSON_AddStringToObject(j, "adapters", o->adapters);
  if (o->device) cJSON_AddStringToObject(j, "device", o->device);
  if (o->data_root) cJSON_AddStringToObject(j, "data_root", o->data_root);
  if (token) cJSON_AddStringToObject(j, "auth_token", token);
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return text;
}

static grpc_server_credentials *server_credentials(const options *o) {
  if (!o->tls_cert) return grpc_insecure_server_credentials_create();
  char *cert = NULL, *key = NULL;
  asu_error err;
  grpc_server_credentials *creds = NULL;
  if (asu_fs_read_small(o->tls_cert, 1 << 20, &cert, NULL, &err) != ASU_OK ||
      asu_fs_read_small(o->tls_key, 1 << 20, &key, NULL, &err) != ASU_OK) {
    asu_log_error("TLS: %s", err.message);
  } else {
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    creds = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
    if (!creds) asu_log_error("TLS: %s or %s is not a usable PEM key and certificate",
                              o->tls_key, o->tls_cert);
  }
  free(cert);
  free(key);
  return creds;
}

/* Logs the gRPC core's own messages at debug level, one line each: a failed bind, for one,
   comes as a multi-line report before the server's own message, which explains the fix. */
static void log_grpc(gpr_log_func_args *args) {
  char line[1024];
  snprintf(line, sizeof line, "%s", args->message);
  for (char *p = line; *p; p++)
    if (*p == '\n') *p = ' ';
  asu_log_debug("grpc: %s (%s:%d)", line, args->file, args->line);
}

/* Binds the port and starts the server. Returns the bound port, or 0. */
static int start_server(grpc_server *server, const options *o) {
  grpc_server_credentials *creds = server_credentials(o);
  if (!creds) return 0;
  int port = grpc_server_add_http2_port(server, o->listen, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    asu_log_error("cannot listen on %s: give --listen as HOST:PORT with a port that no other "
                  "program uses (port 0 picks a free one)", o->listen);
    return 0;
  }
  grpc_server_start(server);
  return port;
}

static void announce(const options *o, int port) {
  const char *colon = strrchr(o->listen, ':');
  int host_len = colon ? (int)(colon - o->listen) : (int)strlen(o->listen);
  asu_log_info("serving on %.*s:%d%s", host_len, o->listen, port, o->tls_cert ? " with TLS" : "");
  printf("listening on %.*s:%d\n", host_len, o->listen, port);
  fflush(stdout);
}

int main(int argc, char **argv) {
  options o;
  int status = parse_options(argc, argv, &o);
  if (status) return status;
  /* Every thread inherits this mask; the main thread takes the signals with sigwait. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  int failed;
  char *token = read_token(&o, &failed);
  if (failed) return 1;
  const asu_plugin_api *api = asu_plugin_entry(ASU_PLUGIN_ABI_VERSION);
  char *config = plugin_config(&o, token);
  free(token);
  char error[1024];
  asu_plugin *plugin = NULL;
  if (api->create(config, &plugin, error, sizeof error)) {
    asu_log_error("%s", error);
    free(config);
    return 1;
  }
  free(config);

  gpr_set_log_function(log_grpc);
  grpc_init();
  asu_host_calls host;
  grpc_server *server = grpc_server_create(asu_rpc_server_args(), NULL);
  asu_host_calls_init(&host, server);
  int port = 0;
  if (api->attach(plugin, server, error, sizeof error) != 0) {
    asu_log_error("%s", error);
  } else if ((port = start_server(server, &o)) != 0 && api->run(plugin, error, sizeof error)) {
    asu_log_error("%s", error);
    port = 0;
  } else if (port && asu_host_calls_start(&host) != 0) {
    port = 0;
  }
  if (port) {
    announce(&o, port);
    int sig = 0;
    sigwait(&sigs, &sig);
    asu_log_info("received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL); /* a second signal ends the process at once */
  } else {
    status = 1;
  }
  asu_host_calls_shutdown(&host);
  api->detach(plugin);
  asu_host_calls_finish(&host);
  grpc_server_destroy(server);
  asu_host_calls_destroy(&host);
  api->destroy(plugin);
  grpc_shutdown();
  asu_log_info("server stopped");
  return status;
}
