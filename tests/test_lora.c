/* LoRA adapters: gradients against the full-weight gradient, and the PEFT files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_internal.h"
#include "test_util.h"

static float *download(asu_buffer *b, size_t n) {
  float *x = malloc(n * sizeof *x);
  asu_error err;
  asu_buffer_download(b, 0, x, n * sizeof *x, &err);
  return x;
}

static void randomize(asu_buffer *b, size_t n, float range, unsigned seed) {
  float *x = malloc(n * sizeof *x);
  srand(seed);
  for (size_t i = 0; i < n; i++) x[i] = range * (2.0f * (float)rand() / (float)RAND_MAX - 1.0f);
  asu_error err;
  asu_buffer_upload(b, 0, x, n * sizeof *x, &err);
  free(x);
}

/* With W_eff = W + s B A, the adapter's gradients follow from G = dL/dW_eff:
   dL/dB = s G A^T and dL/dA = s B^T G. */
static void check_pair(const asu_lora *l, const asu_lora_pair *pair, const asu_lora_pair *grad,
                       asu_buffer *g_full, const char *what) {
  uint32_t r = l->rank, in = pair->in, out = pair->out;
  float *a = download(pair->a, (size_t)r * in), *b = download(pair->b, (size_t)out * r);
  float *ga = download(grad->a, (size_t)r * in), *gb = download(grad->b, (size_t)out * r);
  float *g = download(g_full, (size_t)out * in);
  double err_a = 0, norm_a = 0, err_b = 0, norm_b = 0;
  for (uint32_t i = 0; i < out; i++)
    for (uint32_t k = 0; k < r; k++) {
      double want = 0;
      for (uint32_t j = 0; j < in; j++) want += (double)g[(size_t)i * in + j] * a[(size_t)k * in + j];
      want *= l->scale;
      err_b += pow(gb[(size_t)i * r + k] - want, 2);
      norm_b += want * want;
    }
  for (uint32_t k = 0; k < r; k++)
    for (uint32_t j = 0; j < in; j++) {
      double want = 0;
      for (uint32_t i = 0; i < out; i++) want += (double)b[(size_t)i * r + k] * g[(size_t)i * in + j];
      want *= l->scale;
      err_a += pow(ga[(size_t)k * in + j] - want, 2);
      norm_a += want * want;
    }
  CHECK(norm_a > 0 && sqrt(err_a / norm_a) < 1e-4, "%s: dA relative error %.3g (norm %.3g)", what,
        sqrt(err_a / fmax(norm_a, 1e-300)), sqrt(norm_a));
  CHECK(norm_b > 0 && sqrt(err_b / norm_b) < 1e-4, "%s: dB relative error %.3g (norm %.3g)", what,
        sqrt(err_b / fmax(norm_b, 1e-300)), sqrt(norm_b));
  free(a);
  free(b);
  free(ga);
  free(gb);
  free(g);
}

static void test_gradients(asu_model *m) {
  asu_error err;
  asu_lora *lora = NULL;
  int rc = asu_lora_create(m, 4, 8.0f, ASU_LORA_ALL, 7, &lora, &err);
  CHECK(rc == ASU_OK, "create adapter: %s", err.message);
  if (rc) return;
  for (uint32_t l = 0; l < m->cfg.n_layers; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++)
      randomize(lora->pairs[l][p].b, (size_t)lora->pairs[l][p].out * lora->rank, 0.05f, 11 + l * 7 + p);

  /* Two examples of different lengths, packed. */
  int32_t ids1[] = {1, 410, 473, 425, 411, 356, 417, 289, 467, 410, 448, 415, 294, 13, 447, 416, 2};
  int32_t ids2[] = {1, 300, 301, 302, 303, 304, 13, 447, 416, 419, 424, 285, 2};
  asu_tokens ex[2] = {{ids1, sizeof ids1 / sizeof *ids1, 13}, {ids2, sizeof ids2 / sizeof *ids2, 7}};
  asu_batch *b = NULL;
  asu_acts *acts = NULL;
  asu_backward_scratch *scratch = NULL;
  asu_grads *full = NULL, *adapter = NULL;
  asu_buffer *weights = NULL, *loss = NULL, *dlogits = NULL;
  asu_cmd *cmd = NULL;
  rc = asu_batch_create(m, ex, 2, &b, &err);
  if (!rc) rc = asu_acts_create(m, b->rows, lora->rank, &acts, &err);
  if (!rc) rc = asu_backward_scratch_create(m, b->rows, lora->rank, &scratch, &err);
  if (!rc) rc = asu_grads_create_full(m, &full, &err);
  if (!rc) rc = asu_grads_create_lora(lora, &adapter, &err);
  float *w = calloc(b->rows, sizeof *w);
  for (uint32_t r = 0; r + 1 < b->rows; r++) w[r] = b->targets[r] >= 0 ? 0.1f : 0.0f;
  if (!rc) rc = asu_buffer_create(m->dev, b->rows * sizeof(float), &weights, &err);
  if (!rc) rc = asu_buffer_upload(weights, 0, w, b->rows * sizeof(float), &err);
  if (!rc) rc = asu_buffer_create(m->dev, b->rows * sizeof(float), &loss, &err);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)b->rows * m->cfg.vocab * sizeof(float), &dlogits, &err);
  if (!rc) rc = asu_cmd_begin(m->dev, &cmd, &err);
  CHECK(rc == ASU_OK, "setup: %s", err.message);
  free(w);
  if (rc) return;

  /* One backward pass that fills both: base weight gradients are dL/dW_eff. */
  full->lora = adapter->lora;
  float scales[64];
  asu_layer_scales(m, 1.0f, 0, scales);
  asu_grads_zero(cmd, full);
  asu_forward_args fwd = {.lora = lora, .ids = b->ids_buf, .positions = b->positions_buf,
                          .q_ranges = b->q_ranges_buf, .rows = b->rows, .layer_scale = scales};
  asu_forward_record(cmd, m, &fwd, acts);
  asu_op_cross_entropy(cmd, acts->logits, b->targets_buf, weights, loss, dlogits, 0, b->rows,
                       m->cfg.vocab);
  asu_backward_record(cmd, m, lora, b, scales, acts, dlogits, scratch, full);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_OK, "backward: %s", err.message);
  full->lora = NULL;

  for (uint32_t l = 0; l < m->cfg.n_layers && !rc; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) {
      char what[64];
      snprintf(what, sizeof what, "layer %u %s", l, asu_lora_projection_name[p]);
      check_pair(lora, &lora->pairs[l][p], &adapter->lora[l][p],
                 full->layers[l][asu_lora_projection_weight[p]].buf, what);
    }
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(weights);
  asu_buffer_destroy(loss);
  asu_buffer_destroy(dlogits);
  asu_grads_destroy(full);
  asu_grads_destroy(adapter);
  asu_backward_scratch_destroy(scratch);
  asu_acts_destroy(acts);
  asu_batch_destroy(b);
  asu_lora_destroy(lora);
}

int main(void) {
  const char *data_dir = getenv("ASU_SHARED_DATA");
  if (!data_dir) {
    fprintf(stderr, "ASU_SHARED_DATA is not set; point it at the shared data folder\n");
    return 1;
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/models/stories260K.gguf", data_dir);
  asu_model *m = NULL;
  asu_error err;
  if (asu_model_load(path, NULL, &m, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }
  test_gradients(m);
  asu_model_destroy(m);
  return TEST_SUMMARY();
}
