/* Loading a llama GGUF model onto a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_log.h"
#include "gguf_internal.h"
#include "model_internal.h"

static const char *const layer_weight_names[ASU_W_PER_LAYER] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
    "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
};

static int read_config(const asu_gguf *g, asu_model_config *c, asu_error *err) {
  const char *arch = NULL;
  size_t len = 0;
  int rc = asu_gguf_get_string(g, "general.architecture", &arch, &len, err);
  if (rc) return rc;
  if (len != 5 || memcmp(arch, "llama", 5) != 0)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "general.architecture is '%.*s'; only 'llama' models are supported",
                         (int)len, arch);
  struct { const char *key; uint32_t *dst; } required[] = {
      {"llama.embedding_length", &c->dim},
      {"llama.block_count", &c->n_layers},
      {"llama.attention.head_count", &c->n_head},
      {"llama.feed_forward_length", &c->ffn_dim},
  };
  for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
    rc = asu_gguf_get_u32(g, required[i].key, required[i].dst, err);
    if (rc) return rc;
  }
  c->n_kv_head = c->n_head;
  if (asu_gguf_has_key(g, "llama.attention.head_count_kv") &&
      (rc = asu_gguf_get_u32(g, "llama.attention.head_count_kv", &c->n_kv_head, err)))
    return rc;
  c->context_length = 2048;
  if (asu_gguf_has_key(g, "llama.context_length") &&
      (rc = asu_gguf_get_u32(g, "llama.context_length", &c->context_length, err)))
    return rc;
  c->norm_eps = 1e-5f;
  if (asu_gguf_has_key(g, "llama.attention.layer_norm_rms_epsilon") &&
      (rc = asu_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps, err)))
    return rc;
  c->rope_theta = 10000.0f;
  if (asu_gguf_has_key(g, "llama.rope.freq_base") &&
      (rc = asu_gguf_get_f32(g, "llama.rope.freq_base", &c->rope_theta, err)))
    return rc;

  if (c->dim == 0 || c->n_layers == 0 || c->n_head == 0 || c->n_kv_head == 0 ||
      c->ffn_dim == 0 || c->dim % c->n_head != 0 || c->n_head % c->n_kv_head != 0 ||
      c->n_layers > 256 || c->context_length == 0)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "inconsistent hyper-parameters: embedding_length %u, block_count %u, "
                         "head_count %u, head_count_kv %u, feed_forward_length %u",
                         c->dim, c->n_layers, c->n_head, c->n_kv_head, c->ffn_dim);
  c->head_dim = c->dim / c->n_head;
  if (c->head_dim % 2 != 0 || c->head_dim > 256)
    return asu_error_set(err, ASU_ERR_FORMAT, "head size %u must be even and at most 256",
                         c->head_dim);
  return ASU_OK;
}

/* Whether an F16 matrix of `cols` columns stays F16 on the device. Only the texel kernels read
   F16 elements, so the device must give buffers texel views, and rows must start at multiples of
   4 elements. They also need narrow subgroups (CPU SIMD lanes), where the texel matrix product is
   the fastest kernel; ASU_WEIGHTS=f32 widens every weight on load instead.
   NOTE: GPUs widen F16 weights to F32, since their shared-memory matrix product reads F32 only. */
static bool keeps_f16(const asu_model *m, uint32_t cols) {
  const char *forced = getenv("ASU_WEIGHTS");
  if (forced && !strcmp(forced, "f32")) return false;
  const asu_device_info *info = asu_device_get_info(m->dev);
  return info->max_texel_buffer_elements > 0 && info->subgroup_size < 16 && cols % 4 == 0;
}

/* Uploads the F16 elements of t as they are, into an F16 buffer. */
static int upload_f16(asu_model *m, const asu_gguf_tensor *t, asu_weight *w, asu_error *err) {
  size_t bytes = (size_t)t->n_elements * sizeof(uint16_t);
  int rc = asu_buffer_create_elements(m->dev, bytes, ASU_ELEMENT_F16, &w->buf, err);
  if (!rc) rc = asu_buffer_upload(w->buf, 0, t->data, bytes, err);
  return rc;
}

/* Converts t to F32 and uploads it into a new buffer. */
static int upload_f32(asu_model *m, const asu_gguf_tensor *t, asu_weight *w, asu_error *err) {
  size_t n = (size_t)t->n_elements;
  float *data = malloc(n * sizeof *data);
  if (!data) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  int rc = asu_gguf_tensor_to_f32(t, data, n, err);
  if (!rc) rc = asu_buffer_create(m->dev, n * sizeof(float), &w->buf, err);
  if (!rc) rc = asu_buffer_upload(w->buf, 0, data, n * sizeof(float), err);
  free(data);
  return rc;
}

/* Uploads tensor `name` after checking it has rows x cols elements (GGUF dims cols, rows). F16
   matrices stay F16 where the device reads them that way (keeps_f16); other tensors become F32. */
static int load_weight(asu_model *m, const char *name, uint32_t rows, uint32_t cols,
                       asu_weight *w, asu_error *err) {
  const asu_gguf_tensor *t = asu_gguf_find_tensor(m->gguf, name);
  if (!t)
    return asu_error_set(err, ASU_ERR_FORMAT, "tensor '%s' is missing from the model", name);
  bool shape_ok = rows == 1 ? (t->n_dims == 1 && t->dims[0] == cols)
                            : (t->n_dims == 2 && t->dims[0] == cols && t->dims[1] == rows);
  if (!shape_ok)
    return asu_error_set(err, ASU_ERR_FORMAT,
                         "tensor '%s' has shape (%llu, %llu); expected (%u, %u) innermost first",
                         name, (unsigned long long)t->dims[0],
                         (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 1), cols, rows);
  bool f16 = t->type == ASU_TENSOR_F16 && rows > 1 && keeps_f16(m, cols);
  int rc = f16 ? upload_f16(m, t, w, err) : upload_f32(m, t, w, err);
  if (rc) return asu_error_wrap(err, "tensor '%s': ", name);
  snprintf(w->name, sizeof w->name, "%s", name);
  w->rows = rows;
  w->cols = cols;
  return ASU_OK;
}

int asu_model_widen_weights(asu_model *m, asu_error *err) {
  asu_weight *weights[3 + 256 * ASU_W_PER_LAYER];
  size_t n = 0;
  weights[n++] = &m->tok_embd;
  if (!m->tied_output) weights[n++] = &m->output;
  for (uint32_t l = 0; l < m->cfg.n_layers; l++)
    for (int w = 0; w < ASU_W_PER_LAYER; w++) weights[n++] = &m->layers[l][w];
  for (size_t i = 0; i < n; i++) {
    asu_weight *w = weights[i];
    if (asu_buffer_element(w->buf) != ASU_ELEMENT_F16) continue;
    asu_weight wide = *w;
    int rc = upload_f32(m, asu_gguf_find_tensor(m->gguf, w->name), &wide, err);
    if (rc) return asu_error_wrap(err, "widening tensor '%s': ", w->name);
    asu_buffer_destroy(w->buf);
    w->buf = wide.buf;
  }
  if (m->tied_output) m->output = m->tok_embd;
  return ASU_OK;
}

int asu_weight_download(const asu_weight *w, float **out, asu_error *err) {
  size_t n = (size_t)w->rows * w->cols;
  bool f16 = asu_buffer_element(w->buf) == ASU_ELEMENT_F16;
  *out = malloc(n * sizeof **out);
  uint16_t *halves = f16 ? malloc(n * sizeof *halves) : NULL;
  int rc = *out && (!f16 || halves) ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc && f16) rc = asu_buffer_download(w->buf, 0, halves, n * sizeof *halves, err);
  if (!rc && !f16) rc = asu_buffer_download(w->buf, 0, *out, n * sizeof **out, err);
  for (size_t i = 0; !rc && f16 && i < n; i++) (*out)[i] = asu_f16_to_f32(halves[i]);
  free(halves);
  return rc;
}

static void layer_weight_shape(const asu_model_config *c, enum asu_layer_weight w,
                               uint32_t *rows, uint32_t *cols) {
  uint32_t kv_dim = c->n_kv_head * c->head_dim;
  switch (w) {
  case ASU_W_ATTN_NORM: case ASU_W_FFN_NORM: *rows = 1; *cols = c->dim; break;
  case ASU_W_Q: case ASU_W_O: *rows = c->dim; *cols = c->dim; break;
  case ASU_W_K: case ASU_W_V: *rows = kv_dim; *cols = c->dim; break;
  case ASU_W_GATE: case ASU_W_UP: *rows = c->ffn_dim; *cols = c->dim; break;
  case ASU_W_DOWN: *rows = c->dim; *cols = c->ffn_dim; break;
  default: *rows = *cols = 0;
  }
}

static int load_weights(asu_model *m, asu_error *err) {
  const asu_model_config *c = &m->cfg;
  int rc = load_weight(m, "token_embd.weight", c->vocab, c->dim, &m->tok_embd, err);
  if (!rc) rc = load_weight(m, "output_norm.weight", 1, c->dim, &m->output_norm, err);
  if (!rc) {
    m->tied_output = asu_gguf_find_tensor(m->gguf, "output.weight") == NULL;
    if (m->tied_output) m->output = m->tok_embd;
    else rc = load_weight(m, "output.weight", c->vocab, c->dim, &m->output, err);
  }
  for (uint32_t l = 0; l < c->n_layers && !rc; l++) {
    for (int w = 0; w < ASU_W_PER_LAYER && !rc; w++) {
      char name[48];
      uint32_t rows, cols;
      snprintf(name, sizeof name, "blk.%u.%s.weight", l, layer_weight_names[w]);
      layer_weight_shape(c, (enum asu_layer_weight)w, &rows, &cols);
      rc = load_weight(m, name, rows, cols, &m->layers[l][w], err);
    }
  }
  return rc;
}

int asu_model_load(const char *gguf_path, const char *device_selector, asu_model **out,
                   asu_error *err) {
  *out = NULL;
  asu_model *m = calloc(1, sizeof *m);
  if (!m) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  m->path = strdup(gguf_path);
  int rc = asu_gguf_open(gguf_path, &m->gguf, err);
  if (!rc) rc = read_config(m->gguf, &m->cfg, err);
  if (!rc) rc = asu_tokenizer_from_gguf(m->gguf, &m->tok, err);
  if (!rc) {
    m->cfg.vocab = asu_tokenizer_vocab_size(m->tok);
    m->layers = calloc(m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  if (!rc) rc = asu_ops_check_environment(err);
  if (!rc) rc = asu_device_create(device_selector, &m->dev, err);
  const char *weights = getenv("ASU_WEIGHTS");
  if (weights && *weights && strcmp(weights, "f32") != 0)
    asu_log_warn("ASU_WEIGHTS is '%s', which is ignored: its one setting is 'f32', to widen F16 "
                 "weights on load", weights);
  if (!rc) rc = load_weights(m, err);
  if (rc) {
    asu_error_wrap(err, "loading model '%s': ", gguf_path);
    asu_model_destroy(m);
    return rc;
  }
  const asu_model_config *c = &m->cfg;
  bool f16 = asu_buffer_element(m->layers[0][ASU_W_Q].buf) == ASU_ELEMENT_F16;
  asu_log_info("model %s: %u layers, width %u, %u heads (%u key/value heads) of %u, ffn %u, "
               "vocab %u, context %u, matrices %s on the device", gguf_path, c->n_layers, c->dim,
               c->n_head, c->n_kv_head, c->head_dim, c->ffn_dim, c->vocab, c->context_length,
               f16 ? "F16" : "F32");
  *out = m;
  return ASU_OK;
}

void asu_model_destroy(asu_model *m) {
  if (!m) return;
  if (m->layers) {
    for (uint32_t l = 0; l < m->cfg.n_layers; l++)
      for (int w = 0; w < ASU_W_PER_LAYER; w++) asu_buffer_destroy(m->layers[l][w].buf);
    free(m->layers);
  }
  if (!m->tied_output) asu_buffer_destroy(m->output.buf);
  asu_buffer_destroy(m->output_norm.buf);
  asu_buffer_destroy(m->tok_embd.buf);
  asu_device_destroy(m->dev);
  asu_tokenizer_destroy(m->tok);
  asu_gguf_close(m->gguf);
  free(m->path);
  free(m);
}

const asu_model_config *asu_model_get_config(const asu_model *m) { return &m->cfg; }
const char *asu_model_path(const asu_model *m) { return m->path; }

void asu_layer_scales(const asu_model *m, float tau, uint64_t layer_mask, float *layer_scale) {
  float base = 1.0f / sqrtf((float)m->cfg.head_dim);
  for (uint32_t l = 0; l < m->cfg.n_layers; l++) {
    bool selected = layer_mask == 0 || (l < 64 && (layer_mask >> l) & 1);
    layer_scale[l] = selected ? base / tau : base;
  }
}
