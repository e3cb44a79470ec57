/* The backward pass: gradients of the model weights (full training) or of a LoRA adapter. */
#include <stdlib.h>

#include "model_internal.h"

struct asu_backward_scratch {
  uint32_t rows, rank;
  asu_buffer *dx, *dh, *dq, *dk, *dv, *datt, *dgate, *dup, *dact, *delta, *dt;
};

int asu_backward_scratch_create(asu_model *m, uint32_t rows, uint32_t lora_rank,
                                asu_backward_scratch **out, asu_error *err) {
  *out = NULL;
  asu_backward_scratch *s = calloc(1, sizeof *s);
  if (!s) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  const asu_model_config *c = &m->cfg;
  size_t r = rows, f = sizeof(float), kv_dim = (size_t)c->n_kv_head * c->head_dim;
  s->rows = rows;
  s->rank = lora_rank;
  int rc = asu_buffer_create(m->dev, r * c->dim * f, &s->dx, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * c->dim * f, &s->dh, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * c->dim * f, &s->dq, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * kv_dim * f, &s->dk, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * kv_dim * f, &s->dv, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * c->dim * f, &s->datt, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * c->ffn_dim * f, &s->dgate, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * c->ffn_dim * f, &s->dup, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * c->ffn_dim * f, &s->dact, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * c->n_head * f, &s->delta, err);
  if (!rc) rc = asu_buffer_create(m->dev, r * (lora_rank ? lora_rank : 1) * f, &s->dt, err);
  if (rc) {
    asu_backward_scratch_destroy(s);
    return rc;
  }
  *out = s;
  return ASU_OK;
}

void asu_backward_scratch_destroy(asu_backward_scratch *s) {
  if (!s) return;
  asu_buffer *all[] = {s->dx, s->dh, s->dq, s->dk, s->dv, s->datt,
                       s->dgate, s->dup, s->dact, s->delta, s->dt};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) asu_buffer_destroy(all[i]);
  free(s);
}

/* What the backward pass of one linear layer y = x W^T (+ scale B A x) reads and writes. */
typedef struct linear_grad {
  const asu_weight *w;
  asu_weight *dw;                 /* NULL unless training full weights */
  const asu_lora *lora;
  const asu_lora_pair *pair;      /* NULL when the projection has no adapter */
  asu_lora_pair *dpair;
  asu_buffer *in, *lora_t, *dout, *din, *dt;
  uint32_t rows;
  float din_beta;                 /* 0 overwrites din, 1 accumulates into it */
} linear_grad;

static int record_linear_backward(asu_cmd *cmd, const linear_grad *lg) {
  const asu_weight *w = lg->w;
  asu_gemm_args din = {
      .m = lg->rows, .n = w->cols, .k = w->rows, .alpha = 1.0f, .beta = lg->din_beta,
      .a = lg->dout, .lda = w->rows, .b = w->buf, .ldb = w->cols, .c = lg->din, .ldc = w->cols,
  };
  int rc = asu_op_gemm(cmd, &din);
  if (!rc && lg->dw) {
    asu_gemm_args dw = {
        .trans_a = true, .m = w->rows, .n = w->cols, .k = lg->rows, .alpha = 1.0f, .beta = 1.0f,
        .a = lg->dout, .lda = w->rows, .b = lg->in, .ldb = w->cols, .c = lg->dw->buf,
        .ldc = w->cols,
    };
    rc = asu_op_gemm(cmd, &dw);
  }
  if (rc || !lg->pair) return rc;

  uint32_t r = lg->lora->rank;
  float scale = lg->lora->scale;
  asu_gemm_args dt = {
      .m = lg->rows, .n = r, .k = w->rows, .alpha = 1.0f, .beta = 0.0f,
      .a = lg->dout, .lda = w->rows, .b = lg->pair->b, .ldb = r, .c = lg->dt, .ldc = r,
  };
  asu_gemm_args din_lora = {
      .m = lg->rows, .n = w->cols, .k = r, .alpha = scale, .beta = 1.0f,
      .a = lg->dt, .lda = r, .b = lg->pair->a, .ldb = w->cols, .c = lg->din, .ldc = w->cols,
  };
  asu_gemm_args db = {
      .trans_a = true, .m = w->rows, .n = r, .k = lg->rows, .alpha = scale, .beta = 1.0f,
      .a = lg->dout, .lda = w->rows, .b = lg->lora_t, .ldb = r, .c = lg->dpair->b, .ldc = r,
  };
  asu_gemm_args da = {
      .trans_a = true, .m = r, .n = w->cols, .k = lg->rows, .alpha = scale, .beta = 1.0f,
      .a = lg->dt, .lda = r, .b = lg->in, .ldb = w->cols, .c = lg->dpair->a, .ldc = w->cols,
  };
  rc = asu_op_gemm(cmd, &dt);
  if (!rc) rc = asu_op_gemm(cmd, &din_lora);
  if (!rc && lg->dpair->b) rc = asu_op_gemm(cmd, &db);
  if (!rc && lg->dpair->a) rc = asu_op_gemm(cmd, &da);
  return rc;
}

/* Fills the parts of a linear_grad that depend on the layer and projection. */
static linear_grad projection_grad(asu_model *m, const asu_lora *lora, asu_grads *g,
                                   asu_acts *a, asu_backward_scratch *s, uint32_t l,
                                   enum asu_layer_weight weight, int projection, uint32_t rows) {
  linear_grad lg = {
      .w = &m->layers[l][weight],
      .dw = g->layers ? &g->layers[l][weight] : NULL,
      .lora = lora,
      .lora_t = projection >= 0 ? a->layers[l].lora_t[projection] : NULL,
      .dt = s->dt,
      .rows = rows,
  };
  if (lora && projection >= 0 && lora->pairs[l][projection].a) {
    lg.pair = &lora->pairs[l][projection];
    lg.dpair = g->lora ? &g->lora[l][projection] : NULL;
    if (!lg.dpair) lg.pair = NULL;
  }
  return lg;
}

static int record_ffn_backward(asu_cmd *cmd, asu_model *m, const asu_lora *lora, asu_acts *a,
                               asu_backward_scratch *s, asu_grads *g, uint32_t l, uint32_t rows) {
  const asu_model_config *c = &m->cfg;
  asu_layer_acts *la = &a->layers[l];

  linear_grad down = projection_grad(m, lora, g, a, s, l, ASU_W_DOWN, 6, rows);
  down.in = la->act, down.dout = s->dx, down.din = s->dact, down.din_beta = 0.0f;
  int rc = record_linear_backward(cmd, &down);
  if (!rc) rc = asu_op_swiglu_backward(cmd, la->gate, la->up, s->dact, s->dgate, s->dup,
                                       rows * c->ffn_dim);
  linear_grad gate = projection_grad(m, lora, g, a, s, l, ASU_W_GATE, 4, rows);
  gate.in = la->h_ffn, gate.dout = s->dgate, gate.din = s->dh, gate.din_beta = 0.0f;
  linear_grad up = projection_grad(m, lora, g, a, s, l, ASU_W_UP, 5, rows);
  up.in = la->h_ffn, up.dout = s->dup, up.din = s->dh, up.din_beta = 1.0f;
  if (!rc) rc = record_linear_backward(cmd, &gate);
  if (!rc) rc = record_linear_backward(cmd, &up);
  asu_buffer *dnorm = g->layers ? g->layers[l][ASU_W_FFN_NORM].buf : NULL;
  if (!rc) rc = asu_op_rmsnorm_backward(cmd, la->x_mid, m->layers[l][ASU_W_FFN_NORM].buf,
                                        la->rstd_ffn, s->dh, s->dx, dnorm, rows, c->dim);
  return rc;
}

static int record_attention_backward(asu_cmd *cmd, asu_model *m, const asu_lora *lora,
                                     const asu_batch *b, float scale, asu_acts *a,
                                     asu_backward_scratch *s, asu_grads *g, uint32_t l,
                                     uint32_t rows) {
  const asu_model_config *c = &m->cfg;
  asu_layer_acts *la = &a->layers[l];

  linear_grad o = projection_grad(m, lora, g, a, s, l, ASU_W_O, 3, rows);
  o.in = la->att, o.dout = s->dx, o.din = s->datt, o.din_beta = 0.0f;
  int rc = record_linear_backward(cmd, &o);
  asu_attention_backward_args ab = {
      .fwd = {
          .q = la->q, .k = la->k, .v = la->v, .out = la->att, .lse = la->lse,
          .q_ranges = b->q_ranges_buf, .q_rows = rows, .kv_rows = rows, .n_head = c->n_head,
          .n_kv_head = c->n_kv_head, .head_dim = c->head_dim, .scale = scale,
      },
      .k_ranges = b->k_ranges_buf,
      .dout = s->datt, .dq = s->dq, .dk = s->dk, .dv = s->dv, .delta = s->delta,
  };
  if (!rc) rc = asu_op_attention_backward(cmd, &ab);
  if (!rc) rc = asu_op_rope(cmd, s->dq, b->positions_buf, rows, c->n_head, c->head_dim,
                            c->rope_theta, true);
  if (!rc) rc = asu_op_rope(cmd, s->dk, b->positions_buf, rows, c->n_kv_head, c->head_dim,
                            c->rope_theta, true);

  asu_buffer *douts[3] = {s->dq, s->dk, s->dv};
  for (int p = 0; p < 3 && !rc; p++) {
    linear_grad lg = projection_grad(m, lora, g, a, s, l, asu_lora_projection_weight[p], p, rows);
    lg.in = la->h_attn, lg.dout = douts[p], lg.din = s->dh, lg.din_beta = p ? 1.0f : 0.0f;
    rc = record_linear_backward(cmd, &lg);
  }
  asu_buffer *dnorm = g->layers ? g->layers[l][ASU_W_ATTN_NORM].buf : NULL;
  if (!rc) rc = asu_op_rmsnorm_backward(cmd, la->x, m->layers[l][ASU_W_ATTN_NORM].buf,
                                        la->rstd_attn, s->dh, s->dx, dnorm, rows, c->dim);
  return rc;
}

int asu_backward_record(asu_cmd *cmd, asu_model *m, const asu_lora *lora, const asu_batch *b,
                        const float *layer_scale, asu_acts *a, asu_buffer *dlogits,
                        asu_backward_scratch *s, asu_grads *g) {
  const asu_model_config *c = &m->cfg;
  uint32_t rows = b->rows;
  if (rows > s->rows || rows > a->rows) {
    asu_cmd_fail(cmd, ASU_ERR_INTERNAL, "backward pass of %u rows does not fit its scratch", rows);
    return ASU_ERR_INTERNAL;
  }
  linear_grad out = {
      .w = &m->output, .dw = g->layers ? &g->output : NULL, .in = a->h_final, .dout = dlogits,
      .din = s->dh, .rows = rows, .din_beta = 0.0f,
  };
  int rc = record_linear_backward(cmd, &out);
  asu_cmd_fill(cmd, s->dx, 0, (size_t)rows * c->dim * sizeof(float), 0);
  if (!rc) rc = asu_op_rmsnorm_backward(cmd, a->x_final, m->output_norm.buf, a->rstd_final, s->dh,
                                        s->dx, g->layers ? g->output_norm.buf : NULL, rows,
                                        c->dim);
  for (uint32_t l = c->n_layers; l-- > 0 && !rc;) {
    rc = record_ffn_backward(cmd, m, lora, a, s, g, l, rows);
    if (!rc) rc = record_attention_backward(cmd, m, lora, b, layer_scale[l], a, s, g, l, rows);
  }
  if (!rc && g->layers)
    rc = asu_op_embedding_backward(cmd, b->embed_order_buf, b->embed_offsets_buf, s->dx,
                                   g->tok_embd.buf, rows, c->vocab, c->dim);
  return rc;
}
