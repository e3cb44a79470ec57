#include "plugin_config.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

typedef enum { KEY_STRING, KEY_COUNT } key_kind;

typedef struct key_spec {
  const char *name;
  key_kind kind;
  size_t offset; /* of the char * or uint32_t field in asu_plugin_config */
  uint32_t max;  /* counts only: the largest value accepted */
} key_spec;

#define STRING_KEY(f) {#f, KEY_STRING, offsetof(asu_plugin_config, f), 0}
#define COUNT_KEY(f, max) {#f, KEY_COUNT, offsetof(asu_plugin_config, limits.f), max}
#define STEPS_KEY(f, max) {#f, KEY_COUNT, offsetof(asu_plugin_config, f), max}

static const key_spec keys[] = {
    STRING_KEY(model),
    STRING_KEY(adapters),
    STRING_KEY(device),
    STRING_KEY(auth_token),
    STRING_KEY(data_root),
    COUNT_KEY(max_tokens, 1u << 20),
    COUNT_KEY(max_prompt_bytes, 64u << 20),
    COUNT_KEY(max_queued_jobs, 10000u),
    COUNT_KEY(max_calls, 100000u),
    STEPS_KEY(checkpoint_every, 1000000u),
    STEPS_KEY(dispatches_per_submit, 1000000u),
    STEPS_KEY(max_resident_adapters, 100000u),
};

static int set_key(const key_spec *k, const cJSON *v, asu_plugin_config *out, asu_error *err) {
  char *field = (char *)out + k->offset;
  if (k->kind == KEY_STRING) {
    if (!cJSON_IsString(v) || !v->valuestring[0])
      return asu_error_set(err, ASU_ERR_INVALID, "\"%s\" must be a non-empty string", k->name);
    char *copy = strdup(v->valuestring);
    if (!copy) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
    *(char **)field = copy;
    return ASU_OK;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > k->max ||
      v->valuedouble != (double)(uint32_t)v->valuedouble)
    return asu_error_set(err, ASU_ERR_INVALID, "\"%s\" must be a whole number from 1 to %u",
                         k->name, k->max);
  *(uint32_t *)field = (uint32_t)v->valuedouble;
  return ASU_OK;
}

static const key_spec *find_key(const char *name) {
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strcmp(keys[i].name, name)) return &keys[i];
  return NULL;
}

static int parse_object(const cJSON *root, asu_plugin_config *out, asu_error *err) {
  if (!cJSON_IsObject(root))
    return asu_error_set(err, ASU_ERR_INVALID, "the configuration must be a JSON object");
  for (const cJSON *v = root->child; v; v = v->next) {
    const key_spec *k = find_key(v->string);
    if (!k)
      return asu_error_set(err, ASU_ERR_INVALID, "unknown key \"%.80s\"; the keys are model, "
                           "adapters, device, auth_token, data_root, max_tokens, "
                           "max_prompt_bytes, max_queued_jobs, max_calls, checkpoint_every, "
                           "dispatches_per_submit and max_resident_adapters", v->string);
    int rc = set_key(k, v, out, err);
    if (rc) return rc;
  }
  if (!out->model)
    return asu_error_set(err, ASU_ERR_INVALID, "\"model\" (the GGUF file to serve) is required");
  if (!out->adapters && !(out->adapters = strdup("./adapters")))
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  return ASU_OK;
}

int asu_plugin_config_parse(const char *text, asu_plugin_config *out, asu_error *err) {
  memset(out, 0, sizeof *out);
  out->limits = (asu_server_limits){
      .max_tokens = 4096, .max_prompt_bytes = 16384, .max_queued_jobs = 8, .max_calls = 64};
  out->checkpoint_every = 25;
  out->dispatches_per_submit = 32;
  out->max_resident_adapters = 16;
  cJSON *root = text ? cJSON_Parse(text) : NULL;
  if (!root)
    return asu_error_set(err, ASU_ERR_INVALID, "not valid JSON (near byte %zu)",
                         text ? (size_t)(cJSON_GetErrorPtr() - text) : (size_t)0);
  int rc = parse_object(root, out, err);
  cJSON_Delete(root);
  if (rc) asu_plugin_config_free(out);
  return rc;
}

void asu_plugin_config_free(asu_plugin_config *cfg) {
  free(cfg->model);
  free(cfg->adapters);
  free(cfg->device);
  free(cfg->auth_token);
  free(cfg->data_root);
  memset(cfg, 0, sizeof *cfg);
}
