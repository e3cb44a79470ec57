/* The request handlers of asu.v1.Asu: validation, then the registry, the job queue or the
   engine. Each handler owns its call until it sends the status. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "asu.pb-c.h"
#include "asu_log.h"
#include "fsutil.h"
#include "handlers.h"
#include "server.h"
#include "utf8.h"

#define SERVICE "/asu.v1.Asu/"

static double elapsed_ms(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* ---- Generate ---- */

typedef struct gen_state {
  asu_rpc_call *call;
  asu_utf8_joiner utf8;
  char *text;
  size_t text_cap;
  uint32_t tokens;
  bool client_gone;
} gen_state;

static int send_piece(gen_state *g, int32_t token, const char *text, size_t len, bool flush) {
  size_t need = 3 * (len + 4) + 1;
  if (need > g->text_cap) {
    char *t = realloc(g->text, need);
    if (!t) return -1;
    g->text = t;
    g->text_cap = need;
  }
  asu_utf8_join(&g->utf8, text, len, flush, g->text);
  Asu__V1__GenerateResponse r = ASU__V1__GENERATE_RESPONSE__INIT;
  r.text = g->text;
  r.token_id = token;
  return asu_rpc_send(g->call, &r.base);
}

static int on_piece(void *user, int32_t token, const char *text, size_t len) {
  gen_state *g = user;
  g->tokens++;
  if (asu_rpc_cancelled(g->call) || send_piece(g, token, text, len, false) != 0) {
    g->client_gone = true;
    return 1;
  }
  return 0;
}

static int handle_generate(asu_server *s, asu_rpc_call *c) {
  Asu__V1__GenerateRequest *req = (Asu__V1__GenerateRequest *)asu_rpc_recv_request(
      c, &asu__v1__generate_request__descriptor);
  if (!req) return 0;
  asu_generation_request gr = {
      .prompt = req->prompt,
      .prompt_len = strlen(req->prompt),
      .max_tokens = req->max_tokens,
      .temperature = req->temperature,
      .top_p = req->top_p,
      .seed = req->seed,
      .adapter = req->adapter,
  };
  asu_sampling sp;
  const asu_lora *lora = NULL;
  asu_adapter_ref *ref = NULL;
  asu_adapter_info info;
  if (!asu_generation_begin(s, c, &gr, &sp, &lora, &ref, &info)) {
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return 0;
  }
  asu_error err;
  asu_error_clear(&err);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  gen_state g = {.call = c};
  int grc = asu_generate(s->model, lora, req->prompt, &sp, on_piece, &g, &err);
  asu_registry_unpin(s->reg, ref);

  if (g.client_gone) {
    asu_log_info("request %s: Generate stopped after %u tokens: the call was cancelled",
                 c->request_id, g.tokens);
    asu_rpc_finish(c, NULL, GRPC_STATUS_CANCELLED, "cancelled");
  } else if (grc != ASU_OK) {
    asu_reject(c, asu_rpc_status_from_asu(err.code), "generation failed: %s", err.message);
  } else {
    if (g.utf8.n > 0) send_piece(&g, -1, "", 0, true); /* a dangling partial character */
    Asu__V1__GenerateResponse last = ASU__V1__GENERATE_RESPONSE__INIT;
    last.done = 1;
    last.completion_tokens = g.tokens;
    last.prompt_bytes = (uint32_t)gr.prompt_len;
    last.adapter = info.name;
    last.adapter_version = info.version;
    asu_rpc_finish(c, &last.base, GRPC_STATUS_OK, "");
    asu_log_info("request %s: Generate done: %u tokens in %.0f ms", c->request_id, g.tokens,
                 elapsed_ms(&t0));
  }
  free(g.text);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

/* ---- Jobs ---- */

void asu_job_to_proto(const asu_job_snapshot *j, Asu__V1__Job *p) {
  asu__v1__job__init(p);
  p->id = (char *)j->id;
  p->adapter_name = (char *)j->adapter_name;
  p->state = (Asu__V1__Job__State)j->state;
  p->step = j->step;
  p->total_steps = j->total_steps;
  p->loss = j->loss;
  p->forget_loss = j->forget_loss;
  p->retain_loss = j->retain_loss;
  p->heldout_nll = j->heldout_nll;
  p->initial_forget_loss = j->initial_forget_loss;
  p->initial_retain_loss = j->initial_retain_loss;
  p->initial_heldout_nll = j->initial_heldout_nll;
  p->error = (char *)j->error;
  p->adapter_version = j->adapter_version;
  p->created_unix = j->created_unix;
  p->started_unix = j->started_unix;
  p->finished_unix = j->finished_unix;
  p->method = (char *)j->method;
  p->start_adapter = (char *)j->start_adapter;
  p->start_version = j->start_version;
  p->output_path = (char *)j->output_path;
  p->result = (char *)j->result;
}

/* Copies inline examples into ds; field names the list in messages. Returns 1 when valid,
   0 after rejecting the call. */
int asu_take_examples(asu_rpc_call *c, const char *field, Asu__V1__Example **ex, size_t n,
                      asu_dataset *ds) {
  if (n > ASU_MAX_EXAMPLES)
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s has %zu examples, the limit is %u",
                  field, n, ASU_MAX_EXAMPLES);
  for (size_t i = 0; i < n; i++) {
    size_t ql = strlen(ex[i]->question), al = strlen(ex[i]->answer);
    if (al == 0)
      return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "%s[%zu].answer must not be empty", field,
                    i);
    if (ql > ASU_MAX_EXAMPLE_BYTES || al > ASU_MAX_EXAMPLE_BYTES)
      return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                    "%s[%zu].%s must be at most %u bytes, got %zu", field, i,
                    ql > ASU_MAX_EXAMPLE_BYTES ? "question" : "answer", ASU_MAX_EXAMPLE_BYTES,
                    ql > ASU_MAX_EXAMPLE_BYTES ? ql : al);
    asu_error err;
    asu_error_clear(&err);
    if (asu_dataset_add(ds, ql ? ex[i]->question : NULL, ex[i]->answer, &err) != ASU_OK)
      return asu_reject(c, asu_rpc_status_from_asu(err.code), "%s[%zu]: %s", field, i, err.message);
  }
  return 1;
}

int asu_take_template(asu_rpc_call *c, const char *text, char **out) {
  size_t tl = strlen(text);
  if (tl == 0) return 1;
  const char *first = strstr(text, "{question}");
  if (tl > ASU_MAX_TEMPLATE_BYTES)
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                      "prompt_template must be at most %u bytes, got %zu", ASU_MAX_TEMPLATE_BYTES,
                      tl);
  if (!first || strstr(first + 1, "{question}"))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "prompt_template must contain \"{question}\" exactly once, got \"%.80s\"",
                      text);
  *out = strdup(text);
  return *out ? 1 : asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

static int check_float(asu_rpc_call *c, const char *field, float v, bool positive) {
  if (!isfinite(v) || v < 0 || (positive && v == 0))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "%s must be %s, got %g", field,
                  positive ? "> 0" : "finite and >= 0", (double)v);
  return 1;
}

static int lora_target_bit(const char *name) {
  static const struct {
    const char *name;
    int bit;
  } t[] = {{"q", ASU_LORA_Q},       {"k", ASU_LORA_K},   {"v", ASU_LORA_V},
           {"o", ASU_LORA_O},       {"gate", ASU_LORA_GATE}, {"up", ASU_LORA_UP},
           {"down", ASU_LORA_DOWN}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (!strcmp(name, t[i].name)) return t[i].bit;
  return 0;
}

/* The active adapter and its version, which a continual job builds on. Returns 1, or 0 after
   rejecting the call when no adapter is active. */
static int continual_start(asu_server *s, asu_rpc_call *c, asu_job_spec *spec) {
  const asu_lora *lora = NULL;
  asu_adapter_ref *ref = NULL;
  asu_adapter_info info;
  asu_error err;
  asu_error_clear(&err);
  if (asu_registry_pin(s->reg, "", &lora, &ref, &info, &err) != ASU_OK)
    return asu_reject_err(c, &err);
  if (!ref) {
    return asu_reject(c, GRPC_STATUS_FAILED_PRECONDITION, "continual builds on the active "
                      "adapter, and none is active; activate one (ActivateAdapter) or leave "
                      "continual unset");
  }
  snprintf(spec->start_adapter, sizeof spec->start_adapter, "%s", info.name);
  spec->start_version = info.version;
  asu_registry_unpin(s->reg, ref);
  return 1;
}

/* Fills spec from the request. Returns 1 when valid, 0 after rejecting the call. */
static int build_spec(asu_server *s, asu_rpc_call *c, const Asu__V1__StartUnlearningRequest *r,
                      asu_job_spec *spec) {
  if (!asu_adapter_name_valid(r->adapter_name))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "adapter_name must match [A-Za-z0-9._-]{1,64}, not start with '.' and not be "
                  "\"none\", got \"%.80s\"",
                  r->adapter_name);
  snprintf(spec->adapter_name, sizeof spec->adapter_name, "%s", r->adapter_name);
  if (r->n_forget == 0)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "forget must have at least one example");
  if (r->n_retain == 0)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "retain must have at least one example");

  asu_unlearn_config *cfg = &spec->cfg;
  asu_unlearn_defaults(cfg);
  if (r->method[0] && asu_method_parse(r->method, &cfg->method) != 0)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "method must be one of asu_gd, asu_kl, ga, gd, npo, simnpo, idk_nll and "
                      "me_gd, got \"%.80s\"", r->method);
  if (!check_float(c, "beta", r->beta, false)) return 0;
  if (!isfinite(r->gamma))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "gamma must be finite, got %g",
                      (double)r->gamma);
  cfg->beta = r->beta;
  cfg->gamma = r->gamma;

  if (r->tau != 0) {
    if (!check_float(c, "tau", r->tau, true)) return 0;
    cfg->tau = r->tau;
  }
  if (r->n_tau_layers > 0) {
    uint32_t n_layers = asu_model_get_config(s->model)->n_layers;
    uint64_t mask = 0;
    for (size_t i = 0; i < r->n_tau_layers; i++) {
      uint32_t l = r->tau_layers[i];
      if (l >= n_layers || l >= 64)
        return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "tau_layers[%zu] must be < %u (the model's layer count), got %u", i,
                      n_layers < 64 ? n_layers : 64, l);
      mask |= 1ull << l;
    }
    cfg->tau_layers = mask;
  }
  if (r->lora_rank > ASU_MAX_LORA_RANK)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "lora_rank must be <= %u, got %u",
                  ASU_MAX_LORA_RANK, r->lora_rank);
  if (r->lora_rank) cfg->lora_rank = r->lora_rank;
  if (!check_float(c, "lora_alpha", r->lora_alpha, false)) return 0;
  if (r->lora_alpha != 0) cfg->lora_alpha = r->lora_alpha;
  if (r->n_lora_targets > 0) {
    uint32_t mask = 0;
    for (size_t i = 0; i < r->n_lora_targets; i++) {
      int bit = lora_target_bit(r->lora_targets[i]);
      if (!bit)
        return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "lora_targets[%zu] must be one of q, k, v, o, gate, up, down, got "
                      "\"%.80s\"",
                      i, r->lora_targets[i]);
      mask |= (uint32_t)bit;
    }
    cfg->lora_targets = mask;
  }
  if (!check_float(c, "learning_rate", r->learning_rate, false)) return 0;
  if (r->learning_rate != 0) cfg->learning_rate = r->learning_rate;
  if (r->epochs && r->steps && r->epochs != r->steps)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "epochs (%u) and steps (%u) differ; training is full-batch, so an epoch is a "
                  "step: set one of them", r->epochs, r->steps);
  uint32_t steps = r->steps ? r->steps : r->epochs;
  if (steps > ASU_MAX_STEPS)
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "steps must be <= %u, got %u",
                  ASU_MAX_STEPS, steps);
  if (steps) cfg->steps = steps;
  if (!check_float(c, "weight_decay", r->weight_decay, false)) return 0;
  if (r->weight_decay != 0) cfg->weight_decay = r->weight_decay;
  if (!check_float(c, "forget_weight", r->forget_weight, false)) return 0;
  if (r->forget_weight != 0) cfg->forget_weight = r->forget_weight;
  if (!check_float(c, "retain_weight", r->retain_weight, false)) return 0;
  if (r->retain_weight != 0) cfg->retain_weight = r->retain_weight;
  if (r->seed) cfg->seed = r->seed;
  cfg->checkpoint_every = r->checkpoint_every; /* 0: the server default, set by the queue */
  if (!asu_take_template(c, r->prompt_template, &spec->prompt_template)) return 0;
  spec->activate = r->activate_on_success;
  if (r->continual && !continual_start(s, c, spec)) return 0;

  if (!asu_take_examples(c, "forget", r->forget, r->n_forget, &spec->forget)) return 0;
  if (!asu_take_examples(c, "retain", r->retain, r->n_retain, &spec->retain)) return 0;
  if (r->n_heldout > 0) {
    if (!asu_take_examples(c, "heldout", r->heldout, r->n_heldout, &spec->heldout)) return 0;
    spec->has_heldout = true;
  }
  return 1;
}

static int handle_start_unlearning(asu_server *s, asu_rpc_call *c) {
  Asu__V1__StartUnlearningRequest *req = (Asu__V1__StartUnlearningRequest *)
      asu_rpc_recv_request(c, &asu__v1__start_unlearning_request__descriptor);
  if (!req) return 0;
  asu_job_spec spec;
  memset(&spec, 0, sizeof spec);
  if (build_spec(s, c, req, &spec)) {
    asu_log_info("request %s: StartUnlearning: adapter %s, %zu forget, %zu retain, %zu heldout "
                 "examples",
                 c->request_id, req->adapter_name, req->n_forget, req->n_retain, req->n_heldout);
    asu_job_snapshot snap;
    asu_error err;
    asu_error_clear(&err);
    if (asu_jobs_submit(s->jobs, &spec, c->request_id, &snap, &err) != ASU_OK) {
      asu_reject_err(c, &err);
    } else {
      Asu__V1__Job job;
      asu_job_to_proto(&snap, &job);
      asu_rpc_finish(c, &job.base, GRPC_STATUS_OK, "");
    }
  }
  asu_job_spec_free(&spec);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

/* Reads a JobRequest and checks job_id. Returns NULL after rejecting the call. */
static Asu__V1__JobRequest *recv_job_request(asu_rpc_call *c) {
  Asu__V1__JobRequest *req =
      (Asu__V1__JobRequest *)asu_rpc_recv_request(c, &asu__v1__job_request__descriptor);
  if (req && !req->job_id[0]) {
    asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "job_id must not be empty");
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return NULL;
  }
  return req;
}

static int handle_get_or_cancel(asu_server *s, asu_rpc_call *c, bool cancel) {
  Asu__V1__JobRequest *req = recv_job_request(c);
  if (!req) return 0;
  asu_job_snapshot snap;
  asu_error err;
  asu_error_clear(&err);
  if (cancel) asu_log_info("request %s: CancelJob: job %s", c->request_id, req->job_id);
  int rc = cancel ? asu_jobs_cancel(s->jobs, req->job_id, ASU_CANCEL_WAIT_MS, &snap, &err)
                  : asu_jobs_get(s->jobs, req->job_id, &snap, &err);
  if (rc != ASU_OK) {
    asu_reject_err(c, &err);
  } else {
    Asu__V1__Job job;
    asu_job_to_proto(&snap, &job);
    asu_rpc_finish(c, &job.base, GRPC_STATUS_OK, "");
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

static int handle_watch_job(asu_server *s, asu_rpc_call *c) {
  Asu__V1__JobRequest *req = recv_job_request(c);
  if (!req) return 0;
  asu_job_snapshot snap;
  asu_error err;
  asu_error_clear(&err);
  if (asu_jobs_get(s->jobs, req->job_id, &snap, &err) != ASU_OK) {
    asu_reject_err(c, &err);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return 0;
  }
  asu_log_info("request %s: WatchJob: job %s", c->request_id, req->job_id);

  bool gone = false;
  for (;;) {
    Asu__V1__Job job;
    asu_job_to_proto(&snap, &job);
    if (asu_rpc_send(c, &job.base) != 0) {
      gone = true;
      break;
    }
    if (asu_job_state_terminal(snap.state) || snap.state == ASU_JOB_INTERRUPTED) break;
    uint64_t seen = snap.seq;
    while (snap.seq == seen) {
      if (asu_rpc_cancelled(c) || atomic_load(&s->shutting_down)) {
        gone = true;
        break;
      }
      if (asu_jobs_wait(s->jobs, req->job_id, seen, 250, &snap, &err) != ASU_OK) {
        asu_reject_err(c, &err);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        return 0;
      }
    }
    if (gone) break;
  }

  if (gone) {
    asu_log_info("request %s: WatchJob of job %s ended: the call was cancelled", c->request_id,
                 req->job_id);
    asu_rpc_finish(c, NULL, GRPC_STATUS_CANCELLED, "cancelled");
  } else {
    asu_rpc_finish(c, NULL, GRPC_STATUS_OK, "");
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

/* ---- Adapters ---- */

static void adapter_to_proto(const asu_adapter_info *a, Asu__V1__Adapter *p) {
  asu__v1__adapter__init(p);
  p->name = (char *)a->name;
  p->version = a->version;
  p->active = a->active;
  p->rank = a->rank;
  p->created_unix = a->created_unix;
  p->resident = a->resident;
}

static int handle_list_adapters(asu_server *s, asu_rpc_call *c) {
  Asu__V1__ListAdaptersRequest *req = (Asu__V1__ListAdaptersRequest *)asu_rpc_recv_request(
      c, &asu__v1__list_adapters_request__descriptor);
  if (!req) return 0;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  asu_adapter_info *list = NULL;
  size_t n = 0;
  char active[65];
  asu_error err;
  asu_error_clear(&err);
  if (asu_registry_list(s->reg, &list, &n, active, &err) != ASU_OK) return asu_reject_err(c, &err);
  Asu__V1__Adapter *items = calloc(n ? n : 1, sizeof *items);
  Asu__V1__Adapter **ptrs = calloc(n ? n : 1, sizeof *ptrs);
  if (!items || !ptrs) {
    free(items);
    free(ptrs);
    free(list);
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    adapter_to_proto(&list[i], &items[i]);
    ptrs[i] = &items[i];
  }
  Asu__V1__ListAdaptersResponse resp = ASU__V1__LIST_ADAPTERS_RESPONSE__INIT;
  resp.n_adapters = n;
  resp.adapters = ptrs;
  resp.active = active;
  asu_rpc_finish(c, &resp.base, GRPC_STATUS_OK, "");
  free(items);
  free(ptrs);
  free(list);
  return 0;
}

static int handle_activate(asu_server *s, asu_rpc_call *c) {
  Asu__V1__ActivateAdapterRequest *req = (Asu__V1__ActivateAdapterRequest *)
      asu_rpc_recv_request(c, &asu__v1__activate_adapter_request__descriptor);
  if (!req) return 0;
  char job_id[32];
  asu_adapter_info info;
  asu_error err;
  asu_error_clear(&err);
  if (!strcmp(req->name, "none")) {
    asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
           "name \"none\" is the base model; select it with DeactivateAdapter (asu deactivate)");
  } else if (!asu_adapter_name_valid(req->name)) {
    asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
           "name must match [A-Za-z0-9._-]{1,64} and not start with '.', got \"%.80s\"",
           req->name);
  } else if (!asu_registry_has(s->reg, req->name) &&
             asu_jobs_training(s->jobs, req->name, job_id)) {
    asu_reject(c, GRPC_STATUS_FAILED_PRECONDITION,
           "adapter \"%s\" is being trained by %s and has no saved version yet", req->name,
           job_id);
  } else if (asu_registry_activate(s->reg, req->name, &info, &err) != ASU_OK) {
    asu_reject_err(c, &err);
  } else {
    asu_log_info("request %s: ActivateAdapter: adapter %s version %u is active", c->request_id,
                 info.name, info.version);
    Asu__V1__Adapter a;
    adapter_to_proto(&info, &a);
    asu_rpc_finish(c, &a.base, GRPC_STATUS_OK, "");
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

static int handle_deactivate(asu_server *s, asu_rpc_call *c) {
  Asu__V1__DeactivateAdapterRequest *req = (Asu__V1__DeactivateAdapterRequest *)
      asu_rpc_recv_request(c, &asu__v1__deactivate_adapter_request__descriptor);
  if (!req) return 0;
  protobuf_c_message_free_unpacked(&req->base, NULL);
  char previous[65];
  asu_error err;
  asu_error_clear(&err);
  if (asu_registry_deactivate(s->reg, previous, &err) != ASU_OK) return asu_reject_err(c, &err);
  asu_log_info("request %s: DeactivateAdapter: base model active (was %s)", c->request_id,
               previous[0] ? previous : "the base model");
  Asu__V1__DeactivateAdapterResponse resp = ASU__V1__DEACTIVATE_ADAPTER_RESPONSE__INIT;
  resp.previous = previous;
  asu_rpc_finish(c, &resp.base, GRPC_STATUS_OK, "");
  return 0;
}

/* ---- Method table ---- */

static int handle_get_job(asu_server *s, asu_rpc_call *c) {
  return handle_get_or_cancel(s, c, false);
}

static int handle_cancel_job(asu_server *s, asu_rpc_call *c) {
  return handle_get_or_cancel(s, c, true);
}

static int handle_resume_job(asu_server *s, asu_rpc_call *c) {
  Asu__V1__JobRequest *req = recv_job_request(c);
  if (!req) return 0;
  asu_job_snapshot snap;
  asu_error err;
  asu_error_clear(&err);
  if (asu_jobs_resume(s->jobs, req->job_id, &snap, &err) != ASU_OK) {
    asu_reject_err(c, &err);
  } else {
    asu_log_info("request %s: ResumeJob: job %s queued again", c->request_id, snap.id);
    Asu__V1__Job job;
    asu_job_to_proto(&snap, &job);
    asu_rpc_finish(c, &job.base, GRPC_STATUS_OK, "");
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}

static int handle_list_jobs(asu_server *s, asu_rpc_call *c) {
  ProtobufCMessage *req = asu_rpc_recv_request(c, &asu__v1__list_jobs_request__descriptor);
  if (!req) return 0;
  protobuf_c_message_free_unpacked(req, NULL);
  asu_job_snapshot *snaps = NULL;
  size_t n = 0;
  asu_error err;
  asu_error_clear(&err);
  if (asu_jobs_list(s->jobs, &snaps, &n, &err) != ASU_OK) return asu_reject_err(c, &err);
  Asu__V1__Job *jobs = calloc(n ? n : 1, sizeof *jobs);
  Asu__V1__Job **list = calloc(n ? n : 1, sizeof *list);
  if (jobs && list) {
    for (size_t i = 0; i < n; i++) {
      asu_job_to_proto(&snaps[i], &jobs[i]);
      list[i] = &jobs[i];
    }
    Asu__V1__ListJobsResponse r = ASU__V1__LIST_JOBS_RESPONSE__INIT;
    r.n_jobs = n;
    r.jobs = list;
    asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
  } else {
    asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu jobs", n);
  }
  free(list);
  free(jobs);
  free(snaps);
  return 0;
}

static const asu_rpc_method methods[] = {
    {SERVICE "Generate", handle_generate, false},
    {SERVICE "StartUnlearning", handle_start_unlearning, true},
    {SERVICE "WatchJob", handle_watch_job, false},
    {SERVICE "GetJob", handle_get_job, false},
    {SERVICE "CancelJob", handle_cancel_job, true},
    {SERVICE "ListAdapters", handle_list_adapters, false},
    {SERVICE "ActivateAdapter", handle_activate, true},
    {SERVICE "DeactivateAdapter", handle_deactivate, true},
    {SERVICE "ResumeJob", handle_resume_job, true},
    {SERVICE "ListJobs", handle_list_jobs, false},
    {SERVICE "StartFinetune", asu_handle_start_finetune, true},
    {SERVICE "StartEvaluation", asu_handle_start_evaluation, true},
};

const asu_rpc_method *asu_core_methods(size_t *count) {
  *count = sizeof methods / sizeof methods[0];
  return methods;
}
