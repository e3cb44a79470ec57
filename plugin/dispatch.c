/* Serving one call: request ids, the bearer token of state-changing methods, rejections, and
   the checks that both generation methods share. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "asu_log.h"
#include "fsutil.h"
#include "server.h"

int asu_reject(asu_rpc_call *c, grpc_status_code code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  asu_log_warn("request %s: %s: %s: %s", c->request_id, c->method, asu_rpc_status_name(code),
               msg);
  asu_rpc_finish(c, NULL, code, msg);
  return 0;
}

int asu_reject_err(asu_rpc_call *c, const asu_error *err) {
  return asu_reject(c, asu_rpc_status_from_asu(err->code), "%s", err->message);
}

/* Compares in time that depends on the lengths only, never on where the bytes differ. */
static bool same_secret(const char *given, size_t given_len, const char *secret) {
  size_t n = strlen(secret);
  unsigned char diff = given_len != n;
  for (size_t i = 0; i < n; i++) diff |= (unsigned char)(secret[i] ^ given[i < given_len ? i : 0]);
  return diff == 0;
}

typedef enum { TOKEN_MISSING, TOKEN_WRONG, TOKEN_OK } token_check;

/* Whether the call carries "authorization: Bearer <token>" with the server's token. */
static token_check check_token(const asu_server *s, const asu_rpc_call *c) {
  static const char prefix[] = "Bearer ";
  for (size_t i = 0; i < c->request_md.count; i++) {
    const grpc_metadata *md = &c->request_md.metadata[i];
    if (!grpc_slice_str_cmp(md->key, "authorization")) {
      const char *v = (const char *)GRPC_SLICE_START_PTR(md->value);
      size_t n = GRPC_SLICE_LENGTH(md->value);
      if (n < sizeof prefix - 1 || memcmp(v, prefix, sizeof prefix - 1) != 0) return TOKEN_WRONG;
      if (same_secret(v + sizeof prefix - 1, n - (sizeof prefix - 1), s->auth_token))
        return TOKEN_OK;
      return TOKEN_WRONG;
    }
  }
  return TOKEN_MISSING;
}

void asu_handle_call(asu_server *s, const asu_rpc_method *m, asu_rpc_call *c) {
  snprintf(c->method, sizeof c->method, "%s", m->path);
  snprintf(c->request_id, sizeof c->request_id, "r-%llu",
           (unsigned long long)atomic_fetch_add(&s->next_request, 1));
  asu_log_debug("request %s: %s", c->request_id, c->method);
  token_check token = m->changes_state && s->auth_token ? check_token(s, c) : TOKEN_OK;
  if (token == TOKEN_MISSING)
    asu_reject(c, GRPC_STATUS_UNAUTHENTICATED,
               "%s changes the server's state and needs the metadata \"authorization: Bearer "
               "<token>\" with the server's token (the asu client sends ASU_AUTH_TOKEN)",
               m->path);
  else if (token == TOKEN_WRONG)
    asu_reject(c, GRPC_STATUS_UNAUTHENTICATED,
               "%s: the bearer token does not match the server's; check ASU_AUTH_TOKEN or the "
               "\"authorization: Bearer <token>\" metadata", m->path);
  else
    m->fn(s, c);
  asu_rpc_call_free(c);
}

/* Rejects a request over the limits or with bad sampling values; 1 when it passes. */
static int check_generation(asu_server *s, asu_rpc_call *c, const asu_generation_request *g) {
  if (g->max_tokens > s->limits.max_tokens)
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "max_tokens must be <= %u, got %u",
                      s->limits.max_tokens, g->max_tokens);
  if (g->prompt_len > s->limits.max_prompt_bytes)
    return asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                      "the prompt must be at most %u bytes, got %zu", s->limits.max_prompt_bytes,
                      g->prompt_len);
  if (memchr(g->prompt, '\0', g->prompt_len))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "the prompt must not contain NUL bytes");
  if (!isfinite(g->temperature) || g->temperature < 0)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "temperature must be finite and >= 0, got %g", (double)g->temperature);
  if (!isfinite(g->top_p) || g->top_p < 0 || g->top_p > 1)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "top_p must be in (0, 1] (0: default 1), got %g", (double)g->top_p);
  if (g->adapter[0] && strcmp(g->adapter, "none") != 0 && !asu_adapter_name_valid(g->adapter))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                      "adapter must be empty, \"none\" or a name matching [A-Za-z0-9._-]{1,64}, "
                      "got \"%.80s\"",
                      g->adapter);
  return 1;
}

int asu_generation_begin(asu_server *s, asu_rpc_call *c, const asu_generation_request *g,
                         asu_sampling *sp, const asu_lora **lora, asu_adapter_ref **ref,
                         asu_adapter_info *info) {
  if (!check_generation(s, c, g)) return 0;
  asu_error err;
  asu_error_clear(&err);
  if (asu_registry_pin(s->reg, g->adapter, lora, ref, info, &err) != ASU_OK) {
    char job_id[32];
    if (asu_jobs_training(s->jobs, g->adapter, job_id))
      return asu_reject(c, GRPC_STATUS_FAILED_PRECONDITION,
                        "adapter \"%s\" is being trained by %s and has no saved version yet",
                        g->adapter, job_id);
    return asu_reject_err(c, &err);
  }
  if (g->adapter_version && g->adapter_version != info->version) {
    asu_registry_unpin(s->reg, *ref);
    return asu_reject(c, GRPC_STATUS_NOT_FOUND,
                      "adapter \"%s\" is at version %u; version %u is not served (leave the "
                      "version empty to use the current one)",
                      info->name[0] ? info->name : "(base model)", info->version,
                      g->adapter_version);
  }
  *sp = (asu_sampling){
      .max_tokens = g->max_tokens ? g->max_tokens : ASU_DEFAULT_MAX_TOKENS,
      .temperature = g->temperature,
      .top_p = g->top_p > 0 ? g->top_p : 1.0f,
      .seed = g->seed,
  };
  asu_log_info("request %s: %s: adapter %s version %u, %zu prompt bytes, max_tokens %u, "
               "temperature %g, top_p %g, seed %llu",
               c->request_id, c->method, info->name[0] ? info->name : "(base model)",
               info->version, g->prompt_len, sp->max_tokens, (double)sp->temperature,
               (double)sp->top_p, (unsigned long long)sp->seed);
  return 1;
}
