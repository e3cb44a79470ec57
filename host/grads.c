/* Gradient buffers matching a model's weights or an adapter's pairs. */
#include <stdio.h>
#include <stdlib.h>

#include "model_internal.h"

static int like_weight(asu_device *dev, const asu_weight *w, asu_weight *out, asu_error *err) {
  *out = *w;
  out->buf = NULL;
  return asu_buffer_create(dev, (size_t)w->rows * w->cols * sizeof(float), &out->buf, err);
}

int asu_grads_create_full(asu_model *m, asu_grads **out, asu_error *err) {
  *out = NULL;
  asu_grads *g = calloc(1, sizeof *g);
  if (!g) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  g->n_layers = m->cfg.n_layers;
  g->layers = calloc(m->cfg.n_layers, sizeof *g->layers);
  int rc = g->layers ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = like_weight(m->dev, &m->tok_embd, &g->tok_embd, err);
  if (!rc) rc = like_weight(m->dev, &m->output_norm, &g->output_norm, err);
  if (!rc) rc = like_weight(m->dev, &m->output, &g->output, err);
  for (uint32_t l = 0; l < m->cfg.n_layers && !rc; l++)
    for (int w = 0; w < ASU_W_PER_LAYER && !rc; w++)
      rc = like_weight(m->dev, &m->layers[l][w], &g->layers[l][w], err);
  if (rc) {
    asu_grads_destroy(g);
    return rc;
  }
  *out = g;
  return ASU_OK;
}

int asu_grads_create_lora(const asu_lora *l, asu_grads **out, asu_error *err) {
  *out = NULL;
  asu_grads *g = calloc(1, sizeof *g);
  if (!g) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  g->n_layers = l->n_layers;
  g->lora = calloc(l->n_layers, sizeof *g->lora);
  int rc = g->lora ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  for (uint32_t i = 0; i < l->n_layers && !rc; i++) {
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      const asu_lora_pair *src = &l->pairs[i][p];
      if (!src->a) continue;
      asu_lora_pair *dst = &g->lora[i][p];
      dst->in = src->in;
      dst->out = src->out;
      rc = asu_buffer_create(l->dev, (size_t)l->rank * src->in * sizeof(float), &dst->a, err);
      if (!rc)
        rc = asu_buffer_create(l->dev, (size_t)src->out * l->rank * sizeof(float), &dst->b, err);
    }
  }
  if (rc) {
    asu_grads_destroy(g);
    return rc;
  }
  *out = g;
  return ASU_OK;
}

void asu_grads_destroy(asu_grads *g) {
  if (!g) return;
  asu_buffer_destroy(g->tok_embd.buf);
  asu_buffer_destroy(g->output_norm.buf);
  asu_buffer_destroy(g->output.buf);
  for (uint32_t l = 0; g->layers && l < g->n_layers; l++)
    for (int w = 0; w < ASU_W_PER_LAYER; w++) asu_buffer_destroy(g->layers[l][w].buf);
  for (uint32_t l = 0; g->lora && l < g->n_layers; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) {
      asu_buffer_destroy(g->lora[l][p].a);
      asu_buffer_destroy(g->lora[l][p].b);
    }
  free(g->layers);
  free(g->lora);
  free(g);
}

static void zero(asu_cmd *cmd, asu_buffer *buf) {
  if (buf) asu_cmd_fill(cmd, buf, 0, asu_buffer_size(buf), 0);
}

void asu_grads_zero(asu_cmd *cmd, asu_grads *g) {
  zero(cmd, g->tok_embd.buf);
  zero(cmd, g->output_norm.buf);
  zero(cmd, g->output.buf);
  for (uint32_t l = 0; g->layers && l < g->n_layers; l++)
    for (int w = 0; w < ASU_W_PER_LAYER; w++) zero(cmd, g->layers[l][w].buf);
  for (uint32_t l = 0; g->lora && l < g->n_layers; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) {
      zero(cmd, g->lora[l][p].a);
      zero(cmd, g->lora[l][p].b);
    }
}
