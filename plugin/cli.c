/* asu: command-line client of the asu.v1.Asu service. See docs/api.md. */
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asu.pb-c.h"
#include "asu_dataset.h"
#include "client_rpc.h"
#include "cli.h"
#include "fsutil.h"
#include "rpc.h"

/* Exit statuses: 0 success, EXIT_CALL for a failed call or job, EXIT_USAGE for bad usage. */

static const char *usage_text =
    "usage: asu [--server HOST:PORT] [--tls-ca FILE] COMMAND [ARGS]\n"
    "  generate [--adapter NAME] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]\n"
    "           PROMPT\n"
    "  unlearn --name NAME --forget FILE --retain FILE [--heldout FILE]\n"
    "          [--method asu_gd|asu_kl|ga|gd|npo|simnpo|idk_nll|me_gd]\n"
    "          [--temperature-attn TAU] [--steps N] [--lr X]\n"
    "          [--rank R] [--continual] [--activate] [--wait]\n"
    "  finetune --data FILE --out PATH.gguf [--steps N] [--lr X] [--wait]\n"
    "  evaluate --tofu PATH [--adapter NAME] [--forget SPLIT] [--limit N] [--max-tokens N]\n"
    "           [--reference PATH] [--unprotected PATH] [--vocabulary PATH] [--out PATH.json]\n"
    "           [--wait]\n"
    "  watch JOB | job JOB | cancel JOB | resume JOB | jobs\n"
    "  adapters | activate NAME | deactivate\n"
    "The default server is 127.0.0.1:50051. --tls-ca FILE connects with TLS, trusting the PEM\n"
    "certificates in FILE. ASU_AUTH_TOKEN, when set, is sent as the bearer token.\n";

int cli_usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "asu: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", usage_text);
  return EXIT_USAGE;
}

int cli_call_error(const asu_client_status *st) {
  fprintf(stderr, "asu: %s: %s\n", asu_rpc_status_name(st->code), st->message);
  return EXIT_CALL;
}

static bool parse_u64(const char *s, uint64_t *out) {
  char *end;
  if (!*s || *s == '-') return false;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end) return false;
  *out = v;
  return true;
}

bool cli_parse_u32(const char *s, uint32_t *out) {
  uint64_t v;
  if (!parse_u64(s, &v) || v > UINT32_MAX) return false;
  *out = (uint32_t)v;
  return true;
}

bool cli_parse_float(const char *s, float *out) {
  char *end;
  float v = strtof(s, &end);
  if (!*s || *end) return false;
  *out = v;
  return true;
}

/* ---- generate ---- */

typedef struct gen_out {
  bool any;
} gen_out;

static int print_piece(void *user, const ProtobufCMessage *msg) {
  const Asu__V1__GenerateResponse *r = (const Asu__V1__GenerateResponse *)msg;
  gen_out *g = user;
  size_t n = strlen(r->text);
  if (n) {
    fwrite(r->text, 1, n, stdout);
    fflush(stdout);
    g->any = true;
  }
  return 0;
}

static int cmd_generate(asu_client *c, int argc, char **argv) {
  Asu__V1__GenerateRequest req = ASU__V1__GENERATE_REQUEST__INIT;

  static const struct option opts[] = {{"adapter", required_argument, NULL, 'a'},
                                       {"max-tokens", required_argument, NULL, 'n'},
                                       {"temperature", required_argument, NULL, 't'},
                                       {"top-p", required_argument, NULL, 'p'},
                                       {"seed", required_argument, NULL, 's'},
                                       {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
    switch (o) {
    case 'a': req.adapter = optarg; break;
    case 'n':
      if (!cli_parse_u32(optarg, &req.max_tokens)) return cli_usage_error("invalid --max-tokens value: %s (expected an integer in 0..4096, 0 for the server default of 256)", optarg);
      break;
    case 't':
      if (!cli_parse_float(optarg, &req.temperature))
        return cli_usage_error("invalid --temperature value: %s", optarg);
      break;
    case 'p':
      if (!cli_parse_float(optarg, &req.top_p)) return cli_usage_error("invalid --top-p value: %s (expected a number in (0, 1])", optarg);
      break;
    case 's':
      if (!parse_u64(optarg, &req.seed)) return cli_usage_error("invalid --seed value: %s (expected an unsigned integer)", optarg);
      break;
    default: return cli_usage_error("%s", "invalid generate option");
    }
  }
  if (optind != argc - 1) return cli_usage_error("%s", "generate takes one PROMPT");
  req.prompt = argv[optind];

  gen_out g = {false};
  asu_client_status st;
  int rc = asu_client_stream(c, SERVICE "Generate", &req.base,
                             &asu__v1__generate_response__descriptor, print_piece, &g, &st);
  if (g.any && isatty(STDOUT_FILENO)) putchar('\n');
  fflush(stdout);
  return rc == 0 ? 0 : cli_call_error(&st);
}

/* ---- jobs ---- */

static const char *state_name(Asu__V1__Job__State s) {
  switch (s) {
  case ASU__V1__JOB__STATE__QUEUED: return "QUEUED";
  case ASU__V1__JOB__STATE__RUNNING: return "RUNNING";
  case ASU__V1__JOB__STATE__SUCCEEDED: return "SUCCEEDED";
  case ASU__V1__JOB__STATE__FAILED: return "FAILED";
  case ASU__V1__JOB__STATE__CANCELLED: return "CANCELLED";
  case ASU__V1__JOB__STATE__INTERRUPTED: return "INTERRUPTED";
  default: return "STATE_UNSPECIFIED";
  }
}

static bool terminal(Asu__V1__Job__State s) {
  return s == ASU__V1__JOB__STATE__SUCCEEDED || s == ASU__V1__JOB__STATE__FAILED ||
         s == ASU__V1__JOB__STATE__CANCELLED || s == ASU__V1__JOB__STATE__INTERRUPTED;
}

static void print_job(FILE *f, const Asu__V1__Job *j) {
  fprintf(f, "id: %s\nadapter: %s\nstate: %s\nmethod: %s\nstep: %u/%u\n", j->id,
          j->adapter_name, state_name(j->state), j->method, j->step, j->total_steps);
  fprintf(f, "loss: %.6f\nforget_loss: %.6f\nretain_loss: %.6f\nheldout_nll: %.6f\n", j->loss,
          j->forget_loss, j->retain_loss, j->heldout_nll);
  if (j->adapter_version) fprintf(f, "adapter_version: %u\n", j->adapter_version);
  if (j->output_path[0]) fprintf(f, "output_path: %s\n", j->output_path);
  if (j->result[0]) fprintf(f, "result: %s\n", j->result);
  if (j->start_adapter[0])
    fprintf(f, "builds_on: %s version %u\n", j->start_adapter, j->start_version);
  if (j->error[0]) fprintf(f, "error: %s\n", j->error);
}

typedef struct watch_state {
  bool tty;
  bool bar_open;
  Asu__V1__Job__State last_state;
  uint32_t adapter_version;
  char error[512];
  char adapter[65];
  char output[1024]; /* finetune jobs: the model file written */
} watch_state;

static void draw_progress(watch_state *w, const Asu__V1__Job *j) {
  if (w->tty) {
    const int width = 30;
    int fill = j->total_steps ? (int)((uint64_t)j->step * width / j->total_steps) : 0;
    char bar[31];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s %-9s [%s] %u/%u loss %.4f forget %.4f retain %.4f", j->id,
            state_name(j->state), bar, j->step, j->total_steps, j->loss, j->forget_loss,
            j->retain_loss);
    if (!isnan(j->heldout_nll)) fprintf(stderr, " heldout %.4f", j->heldout_nll);
    fprintf(stderr, "\033[K");
    w->bar_open = true;
  } else {
    fprintf(stderr, "%s %s step %u/%u loss %.6f forget %.6f retain %.6f heldout_nll %.6f\n",
            j->id, state_name(j->state), j->step, j->total_steps, j->loss, j->forget_loss,
            j->retain_loss, j->heldout_nll);
  }
  fflush(stderr);
}

static int on_job(void *user, const ProtobufCMessage *msg) {
  const Asu__V1__Job *j = (const Asu__V1__Job *)msg;
  watch_state *w = user;
  draw_progress(w, j);
  w->last_state = j->state;
  w->adapter_version = j->adapter_version;
  snprintf(w->error, sizeof w->error, "%s", j->error);
  snprintf(w->adapter, sizeof w->adapter, "%s", j->adapter_name);
  snprintf(w->output, sizeof w->output, "%s", j->output_path);
  return 0;
}

/* Watches a job until it ends or is interrupted; 0 only when it succeeded. */
int cli_watch(asu_client *c, const char *id) {
  Asu__V1__JobRequest req = ASU__V1__JOB_REQUEST__INIT;
  req.job_id = (char *)id;
  watch_state w;
  memset(&w, 0, sizeof w);
  w.tty = isatty(STDERR_FILENO);
  asu_client_status st;
  int rc = asu_client_stream(c, SERVICE "WatchJob", &req.base, &asu__v1__job__descriptor, on_job,
                             &w, &st);
  if (w.bar_open) fputc('\n', stderr);
  if (rc != 0) return cli_call_error(&st);
  if (!terminal(w.last_state)) {
    fprintf(stderr, "asu: job %s: the watch ended in state %s\n", id, state_name(w.last_state));
    return EXIT_CALL;
  }
  if (w.last_state == ASU__V1__JOB__STATE__SUCCEEDED && w.output[0]) {
    fprintf(stderr, "job %s: SUCCEEDED: wrote %s\n", id, w.output);
    return 0;
  }
  if (w.last_state == ASU__V1__JOB__STATE__SUCCEEDED) {
    fprintf(stderr, "job %s: SUCCEEDED: adapter %s version %u\n", id, w.adapter,
            w.adapter_version);
    return 0;
  }
  fprintf(stderr, "job %s: %s%s%s\n", id, state_name(w.last_state), w.error[0] ? ": " : "",
          w.error);
  return EXIT_CALL;
}

int cli_job(asu_client *c, const char *method, const char *id) {
  Asu__V1__JobRequest req = ASU__V1__JOB_REQUEST__INIT;
  req.job_id = (char *)id;
  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, method, &req.base, &asu__v1__job__descriptor, &resp, &st) != 0)
    return cli_call_error(&st);
  Asu__V1__Job *j = (Asu__V1__Job *)resp;
  if (strcmp(method, SERVICE "GetJob")) printf("%s %s\n", j->id, state_name(j->state));
  else print_job(stdout, j);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

static int cmd_jobs(asu_client *c) {
  Asu__V1__ListJobsRequest req = ASU__V1__LIST_JOBS_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, SERVICE "ListJobs", &req.base, &asu__v1__list_jobs_response__descriptor,
                       &resp, &st) != 0)
    return cli_call_error(&st);
  Asu__V1__ListJobsResponse *r = (Asu__V1__ListJobsResponse *)resp;
  for (size_t i = 0; i < r->n_jobs; i++)
    printf("%s %s %s %u/%u\n", r->jobs[i]->id, r->jobs[i]->adapter_name,
           state_name(r->jobs[i]->state), r->jobs[i]->step, r->jobs[i]->total_steps);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

/* ---- adapters ---- */

static int cmd_adapters(asu_client *c) {
  Asu__V1__ListAdaptersRequest req = ASU__V1__LIST_ADAPTERS_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, SERVICE "ListAdapters", &req.base,
                       &asu__v1__list_adapters_response__descriptor, &resp, &st) != 0)
    return cli_call_error(&st);
  Asu__V1__ListAdaptersResponse *r = (Asu__V1__ListAdaptersResponse *)resp;
  for (size_t i = 0; i < r->n_adapters; i++)
    printf("%s %u %s\n", r->adapters[i]->name, r->adapters[i]->version,
           r->adapters[i]->active ? "active" : "inactive");
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

static int cmd_activate(asu_client *c, const char *name) {
  Asu__V1__ActivateAdapterRequest req = ASU__V1__ACTIVATE_ADAPTER_REQUEST__INIT;
  req.name = (char *)name;
  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, SERVICE "ActivateAdapter", &req.base, &asu__v1__adapter__descriptor,
                       &resp, &st) != 0)
    return cli_call_error(&st);
  Asu__V1__Adapter *a = (Asu__V1__Adapter *)resp;
  printf("%s %u %s\n", a->name, a->version, a->active ? "active" : "inactive");
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

static int cmd_deactivate(asu_client *c) {
  Asu__V1__DeactivateAdapterRequest req = ASU__V1__DEACTIVATE_ADAPTER_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  asu_client_status st;
  if (asu_client_unary(c, SERVICE "DeactivateAdapter", &req.base,
                       &asu__v1__deactivate_adapter_response__descriptor, &resp, &st) != 0)
    return cli_call_error(&st);
  Asu__V1__DeactivateAdapterResponse *r = (Asu__V1__DeactivateAdapterResponse *)resp;
  printf("previous: %s\n", r->previous[0] ? r->previous : "none");
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

static int run_command(asu_client *c, int argc, char **argv) {
  const char *cmd = argv[0];
  optind = 1;
  if (!strcmp(cmd, "generate")) return cmd_generate(c, argc, argv);
  if (!strcmp(cmd, "unlearn")) return cli_unlearn(c, argc, argv);
  if (!strcmp(cmd, "finetune")) return cli_finetune(c, argc, argv);
  if (!strcmp(cmd, "evaluate")) return cli_evaluate(c, argc, argv);
  if (!strcmp(cmd, "watch") || !strcmp(cmd, "job") || !strcmp(cmd, "cancel") ||
      !strcmp(cmd, "resume")) {
    if (argc != 2) return cli_usage_error("%s takes one JOB", cmd);
    if (!strcmp(cmd, "watch")) return cli_watch(c, argv[1]);
    if (!strcmp(cmd, "resume")) return cli_job(c, SERVICE "ResumeJob", argv[1]);
    return cli_job(c, !strcmp(cmd, "job") ? SERVICE "GetJob" : SERVICE "CancelJob", argv[1]);
  }
  if (!strcmp(cmd, "jobs") && argc == 1) return cmd_jobs(c);
  if (!strcmp(cmd, "adapters") && argc == 1) return cmd_adapters(c);
  if (!strcmp(cmd, "activate") && argc == 2) return cmd_activate(c, argv[1]);
  if (!strcmp(cmd, "deactivate") && argc == 1) return cmd_deactivate(c);
  return cli_usage_error("unknown command or wrong arguments: %s", cmd);
}

int main(int argc, char **argv) {
  const char *server = "127.0.0.1:50051", *ca_file = NULL;
  static const struct option opts[] = {{"server", required_argument, NULL, 's'},
                                       {"tls-ca", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
    switch (o) {
    case 's': server = optarg; break;
    case 'c': ca_file = optarg; break;
    case 'h': fputs(usage_text, stdout); return 0;
    default: fputs(usage_text, stderr); return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    fputs(usage_text, stderr);
    return EXIT_USAGE;
  }
  char *ca_pem = NULL;
  asu_error err;
  if (ca_file && asu_fs_read_small(ca_file, 1 << 20, &ca_pem, NULL, &err) != ASU_OK) {
    fprintf(stderr, "asu: --tls-ca: %s\n", err.message);
    return EXIT_USAGE;
  }
  const char *token = getenv("ASU_AUTH_TOKEN");
  asu_client c;
  memset(&c, 0, sizeof c);
  int opened = asu_client_open(&c, server, ca_pem, token && *token ? token : NULL);
  free(ca_pem);
  if (opened != 0) {
    fprintf(stderr, "asu: cannot create a channel to %s\n", server);
    return EXIT_CALL;
  }
  int rc = run_command(&c, argc - optind, argv + optind);
  asu_client_close(&c);
  return rc;
}
