/* The forward pass of a llama model with optional LoRA adapter, recorded into one command. */
#include <math.h>
#include <stdlib.h>

#include "model_internal.h"

const enum asu_layer_weight asu_lora_projection_weight[ASU_LORA_PROJECTIONS] = {
    ASU_W_Q, ASU_W_K, ASU_W_V, ASU_W_O, ASU_W_GATE, ASU_W_UP, ASU_W_DOWN,
};
const char *const asu_lora_projection_name[ASU_LORA_PROJECTIONS] = {
    "q", "k", "v", "o", "gate", "up", "down",
};

static int create_floats(asu_device *dev, size_t n, asu_buffer **out, asu_error *err) {
  return asu_buffer_create(dev, n * sizeof(float), out, err);
}

static int create_layer_acts(asu_model *m, uint32_t rows, uint32_t rank, asu_layer_acts *la,
                             asu_error *err) {
  const asu_model_config *c = &m->cfg;
  size_t r = rows, kv_dim = (size_t)c->n_kv_head * c->head_dim;
  asu_device *dev = m->dev;
  int rc = create_floats(dev, r * c->dim, &la->x, err);
  if (!rc) rc = create_floats(dev, r * c->dim, &la->h_attn, err);
  if (!rc) rc = create_floats(dev, r, &la->rstd_attn, err);
  if (!rc) rc = create_floats(dev, r * c->dim, &la->q, err);
  if (!rc) rc = create_floats(dev, r * kv_dim, &la->k, err);
  if (!rc) rc = create_floats(dev, r * kv_dim, &la->v, err);
  if (!rc) rc = create_floats(dev, r * c->dim, &la->att, err);
  if (!rc) rc = create_floats(dev, r * c->n_head, &la->lse, err);
  if (!rc) rc = create_floats(dev, r * c->dim, &la->x_mid, err);
  if (!rc) rc = create_floats(dev, r * c->dim, &la->h_ffn, err);
  if (!rc) rc = create_floats(dev, r, &la->rstd_ffn, err);
  if (!rc) rc = create_floats(dev, r * c->ffn_dim, &la->gate, err);
  if (!rc) rc = create_floats(dev, r * c->ffn_dim, &la->up, err);
  if (!rc) rc = create_floats(dev, r * c->ffn_dim, &la->act, err);
  for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc && rank; p++)
    rc = create_floats(dev, r * rank, &la->lora_t[p], err);
  return rc;
}

/* Layer 0's buffers for every layer, with the residual stream x alternating between layer 0's
   and layer 1's. */
static int create_shared_layers(asu_model *m, asu_acts *a, asu_error *err) {
  int rc = create_layer_acts(m, a->rows, a->lora_rank, &a->layers[0], err);
  if (rc || a->n_layers == 1) return rc;
  a->layers[1] = a->layers[0];
  a->layers[1].x = NULL;
  rc = create_floats(m->dev, (size_t)a->rows * m->cfg.dim, &a->layers[1].x, err);
  for (uint32_t l = 2; l < a->n_layers && !rc; l++) a->layers[l] = a->layers[l % 2];
  return rc;
}

static int create_acts(asu_model *m, uint32_t rows, uint32_t lora_rank, bool shared,
                       asu_acts **out, asu_error *err) {
  *out = NULL;
  asu_acts *a = calloc(1, sizeof *a);
  if (!a) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  a->rows = rows;
  a->lora_rank = lora_rank;
  a->n_layers = m->cfg.n_layers;
  a->shared = shared;
  a->layers = calloc(m->cfg.n_layers, sizeof *a->layers);
  int rc = a->layers ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc && shared) rc = create_shared_layers(m, a, err);
  for (uint32_t l = 0; l < m->cfg.n_layers && !rc && !shared; l++)
    rc = create_layer_acts(m, rows, lora_rank, &a->layers[l], err);
  if (!rc) rc = create_floats(m->dev, (size_t)rows * m->cfg.dim, &a->x_final, err);
  if (!rc) rc = create_floats(m->dev, (size_t)rows * m->cfg.dim, &a->h_final, err);
  if (!rc) rc = create_floats(m->dev, rows, &a->rstd_final, err);
  if (!rc) rc = create_floats(m->dev, (size_t)rows * m->cfg.vocab, &a->logits, err);
  if (rc) {
    asu_error_wrap(err, "activations for %u rows: ", rows);
    asu_acts_destroy(a);
    return rc;
  }
  *out = a;
  return ASU_OK;
}

int asu_acts_create(asu_model *m, uint32_t rows, uint32_t lora_rank, asu_acts **out,
                    asu_error *err) {
  return create_acts(m, rows, lora_rank, false, out, err);
}

int asu_acts_create_shared(asu_model *m, uint32_t rows, uint32_t lora_rank, asu_acts **out,
                           asu_error *err) {
  return create_acts(m, rows, lora_rank, true, out, err);
}

static void destroy_layer_acts(asu_layer_acts *la) {
  asu_buffer *all[] = {la->x, la->h_attn, la->rstd_attn, la->q, la->k, la->v, la->att, la->lse,
                       la->x_mid, la->h_ffn, la->rstd_ffn, la->gate, la->up, la->act};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) asu_buffer_destroy(all[i]);
  for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) asu_buffer_destroy(la->lora_t[p]);
}

void asu_acts_destroy(asu_acts *a) {
  if (!a) return;
  /* Layers after a failed creation are zeroed, and destroying NULL buffers is a no-op. Shared
     layers own layer 0's buffers and layer 1's x. */
  if (a->shared && a->layers) {
    destroy_layer_acts(&a->layers[0]);
    if (a->n_layers > 1) asu_buffer_destroy(a->layers[1].x);
  }
  for (uint32_t l = 0; !a->shared && a->layers && l < a->n_layers; l++)
    destroy_layer_acts(&a->layers[l]);
  free(a->layers);
  asu_buffer_destroy(a->x_final);
  asu_buffer_destroy(a->h_final);
  asu_buffer_destroy(a->rstd_final);
  asu_buffer_destroy(a->logits);
  free(a);
}

/* out (rows x w->rows) = in (rows x w->cols) W^T + beta * out, plus the adapter's
   scale * (in A^T) B^T, keeping in A^T in lora_t for the backward pass. */
static int record_linear(asu_cmd *cmd, const asu_weight *w, const asu_lora *lora,
                         const asu_lora_pair *pair, asu_buffer *in, asu_buffer *out,
                         asu_buffer *lora_t, uint32_t rows, float beta) {
  asu_gemm_args g = {
      .trans_b = true, .m = rows, .n = w->rows, .k = w->cols, .alpha = 1.0f, .beta = beta,
      .a = in, .lda = w->cols, .b = w->buf, .ldb = w->cols, .c = out, .ldc = w->rows,
  };
  int rc = asu_op_gemm(cmd, &g);
  if (rc || !lora || !pair || !pair->a) return rc;
  asu_gemm_args down = {
      .trans_b = true, .m = rows, .n = lora->rank, .k = w->cols, .alpha = 1.0f, .beta = 0.0f,
      .a = in, .lda = w->cols, .b = pair->a, .ldb = w->cols, .c = lora_t, .ldc = lora->rank,
  };
  asu_gemm_args up = {
      .trans_b = true, .m = rows, .n = w->rows, .k = lora->rank, .alpha = lora->scale,
      .beta = 1.0f, .a = lora_t, .lda = lora->rank, .b = pair->b, .ldb = lora->rank, .c = out,
      .ldc = w->rows,
  };
  rc = asu_op_gemm(cmd, &down);
  if (!rc) rc = asu_op_gemm(cmd, &up);
  return rc;
}

static const asu_lora_pair *lora_pair(const asu_lora *lora, uint32_t layer, int projection) {
  if (!lora) return NULL;
  const asu_lora_pair *p = &lora->pairs[layer][projection];
  return p->a ? p : NULL;
}

/* Copies the new keys and values of layer l into the cache: at kv->used, or row by row at
   kv_slots, one copy per run of consecutive slots. */
static void append_to_cache(asu_cmd *cmd, const asu_forward_args *args, uint32_t l,
                            asu_layer_acts *la, uint32_t kv_dim) {
  size_t row_bytes = (size_t)kv_dim * sizeof(float);
  for (uint32_t first = 0, last; first < args->rows; first = last) {
    uint32_t slot = args->kv_slots ? args->kv_slots[first] : args->kv->used + first;
    last = args->kv_slots ? first + 1 : args->rows;
    while (last < args->rows && args->kv_slots[last] == slot + (last - first)) last++;
    size_t bytes = (last - first) * row_bytes;
    asu_cmd_copy(cmd, la->k, first * row_bytes, args->kv->k[l], slot * row_bytes, bytes);
    asu_cmd_copy(cmd, la->v, first * row_bytes, args->kv->v[l], slot * row_bytes, bytes);
  }
}

static int record_attention_block(asu_cmd *cmd, asu_model *m, const asu_forward_args *args,
                                  uint32_t l, asu_layer_acts *la) {
  const asu_model_config *c = &m->cfg;
  asu_weight *w = m->layers[l];
  const asu_lora *lora = args->lora;
  uint32_t rows = args->rows, kv_dim = c->n_kv_head * c->head_dim;

  int rc = asu_op_rmsnorm(cmd, la->x, w[ASU_W_ATTN_NORM].buf, la->h_attn, la->rstd_attn, rows,
                          c->dim, c->norm_eps);
  asu_buffer *inputs[3] = {la->q, la->k, la->v};
  for (int p = 0; p < 3 && !rc; p++)
    rc = record_linear(cmd, &w[asu_lora_projection_weight[p]], lora, lora_pair(lora, l, p),
                       la->h_attn, inputs[p], la->lora_t[p], rows, 0.0f);
  if (!rc) rc = asu_op_rope(cmd, la->q, args->positions, rows, c->n_head, c->head_dim,
                            c->rope_theta, false);
  if (!rc) rc = asu_op_rope(cmd, la->k, args->positions, rows, c->n_kv_head, c->head_dim,
                            c->rope_theta, false);
  if (rc) return rc;

  asu_attention_args att = {
      .q = la->q, .k = la->k, .v = la->v, .out = la->att, .lse = la->lse,
      .q_ranges = args->q_ranges, .q_rows = rows, .kv_rows = rows, .n_head = c->n_head,
      .n_kv_head = c->n_kv_head, .head_dim = c->head_dim, .scale = args->layer_scale[l],
  };
  if (args->kv) {
    append_to_cache(cmd, args, l, la, kv_dim);
    att.k = args->kv->k[l];
    att.v = args->kv->v[l];
    att.kv_rows = args->kv_slots ? args->kv->capacity : args->kv->used + rows;
  }
  rc = asu_op_attention(cmd, &att);
  if (rc) return rc;

  asu_cmd_copy(cmd, la->x, 0, la->x_mid, 0, (size_t)rows * c->dim * sizeof(float));
  return record_linear(cmd, &w[ASU_W_O], lora, lora_pair(lora, l, 3), la->att, la->x_mid,
                       la->lora_t[3], rows, 1.0f);
}

static int record_ffn_block(asu_cmd *cmd, asu_model *m, const asu_forward_args *args, uint32_t l,
                            asu_layer_acts *la, asu_buffer *x_next) {
  const asu_model_config *c = &m->cfg;
  asu_weight *w = m->layers[l];
  const asu_lora *lora = args->lora;
  uint32_t rows = args->rows;

  int rc = asu_op_rmsnorm(cmd, la->x_mid, w[ASU_W_FFN_NORM].buf, la->h_ffn, la->rstd_ffn, rows,
                          c->dim, c->norm_eps);
  if (!rc) rc = record_linear(cmd, &w[ASU_W_GATE], lora, lora_pair(lora, l, 4), la->h_ffn,
                              la->gate, la->lora_t[4], rows, 0.0f);
  if (!rc) rc = record_linear(cmd, &w[ASU_W_UP], lora, lora_pair(lora, l, 5), la->h_ffn, la->up,
                              la->lora_t[5], rows, 0.0f);
  if (!rc) rc = asu_op_swiglu(cmd, la->gate, la->up, la->act, rows * c->ffn_dim);
  if (rc) return rc;

  asu_cmd_copy(cmd, la->x_mid, 0, x_next, 0, (size_t)rows * c->dim * sizeof(float));
  return record_linear(cmd, &w[ASU_W_DOWN], lora, lora_pair(lora, l, 6), la->act, x_next,
                       la->lora_t[6], rows, 1.0f);
}

int asu_forward_record(asu_cmd *cmd, asu_model *m, const asu_forward_args *args, asu_acts *a) {
  const asu_model_config *c = &m->cfg;
  uint32_t rows = args->rows;
  if (rows == 0 || rows > a->rows || (args->lora && args->lora->rank > a->lora_rank)) {
    asu_cmd_fail(cmd, ASU_ERR_INTERNAL, "forward pass of %u rows does not fit activations of %u "
                 "rows and rank %u", rows, a->rows, a->lora_rank);
    return ASU_ERR_INTERNAL;
  }
  for (uint32_t i = 0; args->kv && args->kv_slots && i < rows; i++)
    if (args->kv_slots[i] >= args->kv->capacity) {
      asu_cmd_fail(cmd, ASU_ERR_INTERNAL, "row %u goes to cache row %u of %u", i,
                   args->kv_slots[i], args->kv->capacity);
      return ASU_ERR_INTERNAL;
    }
  if (args->kv && !args->kv_slots && args->kv->used + rows > args->kv->capacity) {
    asu_cmd_fail(cmd, ASU_ERR_LIMIT, "%u tokens do not fit the remaining %u of the context",
                 rows, args->kv->capacity - args->kv->used);
    return ASU_ERR_LIMIT;
  }
  int rc = asu_op_embedding(cmd, m->tok_embd.buf, args->ids, a->layers[0].x, rows, c->vocab,
                            c->dim);
  for (uint32_t l = 0; l < c->n_layers && !rc; l++) {
    asu_buffer *x_next = l + 1 < c->n_layers ? a->layers[l + 1].x : a->x_final;
    rc = record_attention_block(cmd, m, args, l, &a->layers[l]);
    if (!rc) rc = record_ffn_block(cmd, m, args, l, &a->layers[l], x_next);
  }
  if (!rc) rc = asu_op_rmsnorm(cmd, a->x_final, m->output_norm.buf, a->h_final, a->rstd_final,
                               rows, c->dim, c->norm_eps);
  if (rc) return rc;
  uint32_t logits_rows = args->logits_rows ? args->logits_rows : rows;
  asu_gemm_args out = {
      .trans_b = true, .m = logits_rows, .n = c->vocab, .k = c->dim, .alpha = 1.0f, .beta = 0.0f,
      .a = a->h_final, .lda = c->dim, .a_offset = (rows - logits_rows) * c->dim,
      .b = m->output.buf, .ldb = c->dim, .c = a->logits, .ldc = c->vocab,
  };
  return asu_op_gemm(cmd, &out);
}
