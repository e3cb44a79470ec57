/* LoRA adapters on the device: creation, and the Hugging Face PEFT files they are stored as. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "asu_safetensors.h"
#include "model_internal.h"

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int check_lora_settings(uint32_t rank, float alpha, uint32_t targets, asu_error *err);

int asu_lora_alloc(asu_model *m, uint32_t rank, float alpha, uint32_t targets, asu_lora **out,
                   asu_error *err) {
  *out = NULL;
  int rc = check_lora_settings(rank, alpha, targets, err);
  if (rc) return rc;
  asu_lora *l = calloc(1, sizeof *l);
  if (!l) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  l->dev = m->dev;
  l->n_layers = m->cfg.n_layers;
  l->rank = rank;
  l->alpha = alpha;
  l->scale = alpha / (float)rank;
  l->targets = targets;
  l->n_head = m->cfg.n_head;
  l->n_kv_head = m->cfg.n_kv_head;
  l->head_dim = m->cfg.head_dim;
  l->base_model = strdup(m->path);
  l->pairs = calloc(m->cfg.n_layers, sizeof *l->pairs);
  if (!l->pairs || !l->base_model) {
    asu_lora_destroy(l);
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  *out = l;
  return ASU_OK;
}

static int check_lora_settings(uint32_t rank, float alpha, uint32_t targets, asu_error *err) {
  if (rank == 0 || rank > 256)
    return asu_error_set(err, ASU_ERR_INVALID, "LoRA rank must be in 1..256, got %u", rank);
  if (!(alpha > 0.0f) || !isfinite(alpha))
    return asu_error_set(err, ASU_ERR_INVALID, "LoRA alpha must be positive, got %g", alpha);
  if (targets == 0 || (targets & ~(uint32_t)ASU_LORA_ALL))
    return asu_error_set(err, ASU_ERR_INVALID, "LoRA target mask 0x%x selects no projection or "
                         "unknown ones", targets);
  return ASU_OK;
}

int asu_lora_create(asu_model *m, uint32_t rank, float alpha, uint32_t targets, uint64_t seed,
                    asu_lora **out, asu_error *err) {
  asu_lora *l = NULL;
  int rc = asu_lora_alloc(m, rank, alpha, targets, &l, err);
  if (rc) return rc;
  uint64_t state = seed;
  for (uint32_t layer = 0; layer < l->n_layers && !rc; layer++) {
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      if (!(targets & (1u << p))) continue;
      const asu_weight *w = &m->layers[layer][asu_lora_projection_weight[p]];
      asu_lora_pair *pair = &l->pairs[layer][p];
      pair->in = w->cols;
      pair->out = w->rows;
      size_t na = (size_t)rank * w->cols, nb = (size_t)w->rows * rank;
      float *a = malloc(na * sizeof *a), *b = calloc(nb, sizeof *b);
      if (!a || !b) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
      float bound = 1.0f / sqrtf((float)w->cols);
      for (size_t i = 0; !rc && i < na; i++)
        a[i] = bound * (2.0f * (float)((splitmix64(&state) >> 11) * 0x1.0p-53) - 1.0f);
      if (!rc) rc = asu_buffer_create(m->dev, na * sizeof(float), &pair->a, err);
      if (!rc) rc = asu_buffer_create(m->dev, nb * sizeof(float), &pair->b, err);
      if (!rc) rc = asu_buffer_upload(pair->a, 0, a, na * sizeof(float), err);
      if (!rc) rc = asu_buffer_upload(pair->b, 0, b, nb * sizeof(float), err);
      free(a);
      free(b);
    }
  }
  if (rc) {
    asu_lora_destroy(l);
    return rc;
  }
  *out = l;
  return ASU_OK;
}

/* One buffer of n floats copied through host memory. */
static int copy_floats(asu_device *dev, asu_buffer *src, size_t n, asu_buffer **dst,
                       asu_error *err) {
  float *x = malloc(n * sizeof *x);
  int rc = x ? asu_buffer_download(src, 0, x, n * sizeof *x, err)
             : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = asu_buffer_create(dev, n * sizeof *x, dst, err);
  if (!rc) rc = asu_buffer_upload(*dst, 0, x, n * sizeof *x, err);
  free(x);
  return rc;
}

int asu_lora_copy(asu_model *m, const asu_lora *src, asu_lora **out, asu_error *err) {
  *out = NULL;
  if (src->host)
    return asu_error_set(err, ASU_ERR_INVALID, "the adapter to copy is evicted to host memory; "
                         "restore it first");
  asu_lora *l = NULL;
  int rc = asu_lora_alloc(m, src->rank, src->alpha, src->targets, &l, err);
  for (uint32_t layer = 0; !rc && layer < l->n_layers; layer++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      const asu_lora_pair *from = &src->pairs[layer][p];
      asu_lora_pair *to = &l->pairs[layer][p];
      if (!from->a) continue;
      to->in = from->in;
      to->out = from->out;
      rc = copy_floats(m->dev, from->a, (size_t)src->rank * from->in, &to->a, err);
      if (!rc) rc = copy_floats(m->dev, from->b, (size_t)from->out * src->rank, &to->b, err);
    }
  if (rc) {
    asu_lora_destroy(l);
    return rc;
  }
  *out = l;
  return ASU_OK;
}

void asu_lora_destroy(asu_lora *l) {
  if (!l) return;
  for (uint32_t i = 0; l->pairs && i < l->n_layers; i++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) {
      asu_buffer_destroy(l->pairs[i][p].a);
      asu_buffer_destroy(l->pairs[i][p].b);
    }
  free(l->pairs);
  free(l->base_model);
  free(l->host);
  free(l);
}

uint32_t asu_lora_rank(const asu_lora *l) { return l->rank; }

const char *const asu_peft_module[ASU_LORA_PROJECTIONS] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

void asu_peft_tensor_name(char *buf, size_t cap, uint32_t layer, int projection, char which) {
  snprintf(buf, cap, "base_model.model.model.layers.%u.%s.%s.lora_%c.weight", layer,
           projection <= 3 ? "self_attn" : "mlp", asu_peft_module[projection], which);
}

uint32_t asu_peft_row(const asu_lora *l, int projection, uint32_t row) {
  if (projection > 1) return row;
  uint32_t hd = l->head_dim, head = row / hd, within = row % hd;
  return head * hd + (within % 2) * (hd / 2) + within / 2;
}

static int make_dir(const char *dir, asu_error *err) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return asu_error_set(err, ASU_ERR_IO, "cannot create directory '%s': %s", dir,
                         strerror(errno));
  return ASU_OK;
}

static int write_config(const asu_lora *l, const char *dir, asu_error *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "peft_type", "LORA");
  cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
  cJSON_AddStringToObject(root, "base_model_name_or_path", l->base_model);
  cJSON_AddNumberToObject(root, "r", l->rank);
  cJSON_AddNumberToObject(root, "lora_alpha", l->alpha);
  cJSON_AddNumberToObject(root, "lora_dropout", 0.0);
  cJSON_AddStringToObject(root, "bias", "none");
  cJSON_AddBoolToObject(root, "fan_in_fan_out", 0);
  cJSON_AddBoolToObject(root, "inference_mode", 1);
  cJSON *targets = cJSON_AddArrayToObject(root, "target_modules");
  for (int p = 0; p < ASU_LORA_PROJECTIONS; p++)
    if (l->targets & (1u << p)) cJSON_AddItemToArray(targets, cJSON_CreateString(asu_peft_module[p]));
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  char path[4096];
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  int rc = asu_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

/* Downloads one pair into two safetensors tensors, B rows in Hugging Face order. */
static int download_pair(const asu_lora *l, uint32_t layer, int p, asu_st_tensor *ta,
                         asu_st_tensor *tb, asu_error *err) {
  const asu_lora_pair *pair = &l->pairs[layer][p];
  size_t na = (size_t)l->rank * pair->in, nb = (size_t)pair->out * l->rank;
  char name[160];
  asu_peft_tensor_name(name, sizeof name, layer, p, 'A');
  *ta = (asu_st_tensor){.name = strdup(name), .n_dims = 2, .shape = {l->rank, pair->in},
                        .data = malloc(na * sizeof(float)), .n_elements = na};
  asu_peft_tensor_name(name, sizeof name, layer, p, 'B');
  *tb = (asu_st_tensor){.name = strdup(name), .n_dims = 2, .shape = {pair->out, l->rank},
                        .data = malloc(nb * sizeof(float)), .n_elements = nb};
  float *b = malloc(nb * sizeof *b);
  if (!ta->name || !tb->name || !ta->data || !tb->data || !b) {
    free(b);
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  int rc = asu_buffer_download(pair->a, 0, ta->data, na * sizeof(float), err);
  if (!rc) rc = asu_buffer_download(pair->b, 0, b, nb * sizeof(float), err);
  for (uint32_t r = 0; !rc && r < pair->out; r++)
    memcpy(tb->data + (size_t)asu_peft_row(l, p, r) * l->rank, b + (size_t)r * l->rank,
           l->rank * sizeof(float));
  free(b);
  return rc;
}

int asu_lora_save(const asu_lora *l, const char *dir, asu_error *err) {
  int rc = make_dir(dir, err);
  if (rc) return rc;
  size_t cap = (size_t)l->n_layers * ASU_LORA_PROJECTIONS * 2, n = 0;
  asu_st_tensor *tensors = calloc(cap, sizeof *tensors);
  if (!tensors) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (uint32_t layer = 0; layer < l->n_layers && !rc; layer++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      if (!l->pairs[layer][p].a) continue;
      rc = download_pair(l, layer, p, &tensors[n], &tensors[n + 1], err);
      n += 2;
    }
  char path[4096];
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  if (!rc) rc = asu_safetensors_write(path, tensors, n, err);
  if (!rc) rc = write_config(l, dir, err);
  asu_st_file owned = {.tensors = tensors, .count = cap};
  asu_safetensors_free(&owned);
  if (rc) asu_error_wrap(err, "saving adapter to '%s': ", dir);
  return rc;
}
