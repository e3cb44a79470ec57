/* Loading a LoRA adapter stored in the Hugging Face PEFT layout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "asu_safetensors.h"
#include "model_internal.h"

typedef struct peft_config {
  uint32_t rank;
  float alpha;
  uint32_t targets;
} peft_config;

static char *read_text(const char *path, asu_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    asu_error_set(err, ASU_ERR_NOT_FOUND, "cannot open '%s'", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = size >= 0 && size < (1 << 20) ? malloc((size_t)size + 1) : NULL;
  if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
    free(text);
    fclose(f);
    asu_error_set(err, ASU_ERR_IO, "cannot read '%s' (over 1 MiB or unreadable)", path);
    return NULL;
  }
  fclose(f);
  text[size] = '\0';
  return text;
}

static int parse_targets(const cJSON *list, const char *path, uint32_t *targets, asu_error *err) {
  *targets = 0;
  if (!cJSON_IsArray(list))
    return asu_error_set(err, ASU_ERR_FORMAT, "%s: target_modules must be a list of names", path);
  const cJSON *item;
  cJSON_ArrayForEach(item, list) {
    int found = -1;
    for (int p = 0; p < ASU_LORA_PROJECTIONS && cJSON_IsString(item); p++)
      if (!strcmp(item->valuestring, asu_peft_module[p])) found = p;
    if (found < 0)
      return asu_error_set(err, ASU_ERR_FORMAT,
                           "%s: target module '%s' is not one of q_proj, k_proj, v_proj, o_proj, "
                           "gate_proj, up_proj, down_proj",
                           path, cJSON_IsString(item) ? item->valuestring : "(not a string)");
    *targets |= 1u << found;
  }
  return ASU_OK;
}

static int read_config(const char *dir, peft_config *cfg, asu_error *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  char *text = read_text(path, err);
  if (!text) return err ? err->code : ASU_ERR_IO;
  cJSON *root = cJSON_Parse(text);
  free(text);
  if (!root) return asu_error_set(err, ASU_ERR_FORMAT, "%s is not valid JSON", path);
  int rc = ASU_OK;
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
  const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
  if (!cJSON_IsString(type) || strcmp(type->valuestring, "LORA") != 0)
    rc = asu_error_set(err, ASU_ERR_FORMAT, "%s: peft_type must be \"LORA\"", path);
  else if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 256 ||
           r->valuedouble != floor(r->valuedouble))
    rc = asu_error_set(err, ASU_ERR_FORMAT, "%s: r must be an integer in 1..256", path);
  else if (!cJSON_IsNumber(alpha) || !(alpha->valuedouble > 0))
    rc = asu_error_set(err, ASU_ERR_FORMAT, "%s: lora_alpha must be a positive number", path);
  if (!rc) {
    cfg->rank = (uint32_t)r->valuedouble;
    cfg->alpha = (float)alpha->valuedouble;
    rc = parse_targets(cJSON_GetObjectItemCaseSensitive(root, "target_modules"), path,
                       &cfg->targets, err);
  }
  cJSON_Delete(root);
  return rc;
}

/* Finds a tensor and checks it is rows x cols. */
static const asu_st_tensor *expect_tensor(const asu_st_file *f, const char *file,
                                          const char *name, uint64_t rows, uint64_t cols,
                                          asu_error *err) {
  const asu_st_tensor *t = asu_safetensors_find(f, name);
  if (!t) {
    asu_error_set(err, ASU_ERR_FORMAT, "%s: tensor '%s' is missing", file, name);
    return NULL;
  }
  if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols) {
    asu_error_set(err, ASU_ERR_FORMAT, "%s: tensor '%s' has the wrong shape; expected [%llu, %llu]",
                  file, name, (unsigned long long)rows, (unsigned long long)cols);
    return NULL;
  }
  return t;
}

static int upload_pair(asu_lora *l, uint32_t layer, int p, const asu_st_tensor *ta,
                       const asu_st_tensor *tb, asu_error *err) {
  asu_lora_pair *pair = &l->pairs[layer][p];
  size_t na = (size_t)l->rank * pair->in, nb = (size_t)pair->out * l->rank;
  float *b = malloc(nb * sizeof *b);
  if (!b) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  /* Rows of q and k go back from Hugging Face halves to GGUF rotary pairs. */
  for (uint32_t row = 0; row < pair->out; row++)
    memcpy(b + (size_t)row * l->rank, tb->data + (size_t)asu_peft_row(l, p, row) * l->rank,
           l->rank * sizeof(float));
  int rc = asu_buffer_create(l->dev, na * sizeof(float), &pair->a, err);
  if (!rc) rc = asu_buffer_create(l->dev, nb * sizeof(float), &pair->b, err);
  if (!rc) rc = asu_buffer_upload(pair->a, 0, ta->data, na * sizeof(float), err);
  if (!rc) rc = asu_buffer_upload(pair->b, 0, b, nb * sizeof(float), err);
  free(b);
  return rc;
}

static int load_pairs(asu_model *m, asu_lora *l, const asu_st_file *f, const char *file,
                      asu_error *err) {
  int rc = ASU_OK;
  size_t expected = 0;
  for (uint32_t layer = 0; layer < l->n_layers && !rc; layer++) {
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      if (!(l->targets & (1u << p))) continue;
      const asu_weight *w = &m->layers[layer][asu_lora_projection_weight[p]];
      l->pairs[layer][p].in = w->cols;
      l->pairs[layer][p].out = w->rows;
      char name_a[160], name_b[160];
      asu_peft_tensor_name(name_a, sizeof name_a, layer, p, 'A');
      asu_peft_tensor_name(name_b, sizeof name_b, layer, p, 'B');
      const asu_st_tensor *ta = expect_tensor(f, file, name_a, l->rank, w->cols, err);
      const asu_st_tensor *tb = ta ? expect_tensor(f, file, name_b, w->rows, l->rank, err) : NULL;
      rc = tb ? upload_pair(l, layer, p, ta, tb, err) : (err ? err->code : ASU_ERR_FORMAT);
      expected += 2;
    }
  }
  if (!rc && f->count != expected)
    rc = asu_error_set(err, ASU_ERR_FORMAT, "%s: %zu tensors where the config implies %zu; the "
                       "file has tensors for modules or layers this model does not have",
                       file, f->count, expected);
  return rc;
}

int asu_lora_load(asu_model *m, const char *dir, asu_lora **out, asu_error *err) {
  *out = NULL;
  peft_config cfg = {0};
  int rc = read_config(dir, &cfg, err);
  asu_lora *l = NULL;
  if (!rc) rc = asu_lora_alloc(m, cfg.rank, cfg.alpha, cfg.targets, &l, err);
  char file[4096];
  snprintf(file, sizeof file, "%s/adapter_model.safetensors", dir);
  asu_st_file f = {0};
  if (!rc) rc = asu_safetensors_read(file, &f, err);
  if (!rc) rc = load_pairs(m, l, &f, file, err);
  asu_safetensors_free(&f);
  if (rc) {
    asu_lora_destroy(l);
    return asu_error_wrap(err, "loading adapter '%s': ", dir);
  }
  *out = l;
  return ASU_OK;
}
