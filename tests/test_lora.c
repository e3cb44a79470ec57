/* LoRA adapters: gradients against the full-weight gradient, and the PEFT files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asu_safetensors.h"
#include "model_internal.h"
#include "shared_model.h"
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
  CHECK(norm_a > 0, "%s: the expected dA is zero, so the check cannot fail", what);
  CHECK(sqrt(err_a / fmax(norm_a, 1e-300)) < 1e-4, "%s: dA relative error %.3g", what,
        sqrt(err_a / fmax(norm_a, 1e-300)));
  CHECK(norm_b > 0, "%s: the expected dB is zero, so the check cannot fail", what);
  CHECK(sqrt(err_b / fmax(norm_b, 1e-300)) < 1e-4, "%s: dB relative error %.3g", what,
        sqrt(err_b / fmax(norm_b, 1e-300)));
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

/* Logits of the last row of a short prompt under an adapter. */
static float *last_logits(asu_model *m, const asu_lora *lora) {
  int32_t ids[] = {1, 410, 473, 425, 411, 356, 417, 289};
  uint32_t n = sizeof ids / sizeof *ids;
  asu_tokens t = {ids, n, 1};
  asu_batch *b = NULL;
  asu_acts *acts = NULL;
  asu_cmd *cmd = NULL;
  asu_error err;
  float scales[64];
  asu_layer_scales(m, 1.0f, 0, scales);
  float *out = NULL;
  if (!asu_batch_create(m, &t, 1, &b, &err) &&
      !asu_acts_create(m, n, lora ? lora->rank : 0, &acts, &err) &&
      !asu_cmd_begin(m->dev, &cmd, &err)) {
    asu_forward_args fwd = {.lora = lora, .ids = b->ids_buf, .positions = b->positions_buf,
                            .q_ranges = b->q_ranges_buf, .rows = n, .layer_scale = scales,
                            .logits_rows = 1};
    asu_forward_record(cmd, m, &fwd, acts);
    if (!asu_cmd_submit(cmd, &err)) out = download(acts->logits, m->cfg.vocab);
  }
  asu_cmd_destroy(cmd);
  asu_acts_destroy(acts);
  asu_batch_destroy(b);
  return out;
}

static void test_peft_round_trip(asu_model *m) {
  asu_error err;
  asu_lora *lora = NULL, *loaded = NULL;
  uint32_t targets = ASU_LORA_Q | ASU_LORA_K | ASU_LORA_O | ASU_LORA_DOWN;
  CHECK(asu_lora_create(m, 3, 6.0f, targets, 5, &lora, &err) == ASU_OK, "create: %s", err.message);
  for (uint32_t l = 0; l < m->cfg.n_layers; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++)
      if (lora->pairs[l][p].b)
        randomize(lora->pairs[l][p].b, (size_t)lora->pairs[l][p].out * 3, 0.2f, 100 + l * 7 + p);

  char dir[] = "/tmp/asu-test-lora.XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
  char adapter_dir[256];
  snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", dir);
  CHECK(asu_lora_save(lora, adapter_dir, &err) == ASU_OK, "save: %s", err.message);
  CHECK(asu_lora_load(m, adapter_dir, &loaded, &err) == ASU_OK, "load: %s", err.message);
  if (loaded) {
    CHECK(loaded->rank == 3, "loaded rank %u", loaded->rank);
    CHECK(loaded->targets == targets, "loaded targets 0x%x, saved 0x%x", loaded->targets, targets);
    CHECK(loaded->scale == lora->scale, "loaded scale %g, saved %g", loaded->scale, lora->scale);
    float *want = last_logits(m, lora), *got = last_logits(m, loaded), *base = last_logits(m, NULL);
    double diff = 0, moved = 0;
    for (uint32_t i = 0; want && got && base && i < m->cfg.vocab; i++) {
      diff = fmax(diff, fabs(want[i] - got[i]));
      moved = fmax(moved, fabs(want[i] - base[i]));
    }
    CHECK(want && got, "the forward pass failed");
    CHECK(diff == 0.0, "logits after a save and load differ by %g", diff);
    CHECK(moved > 1e-3, "the adapter changes the logits by only %g", moved);
    free(want);
    free(got);
    free(base);
  }

  /* The file has q's B rows in the Hugging Face order. GGUF row 2i + half of a head is row
     half * head_dim / 2 + i there, so with head size 8 GGUF rows 1 and 2 are file rows 4 and 1. */
  char tensors_path[300];
  snprintf(tensors_path, sizeof tensors_path, "%s/adapter_model.safetensors", adapter_dir);
  asu_st_file saved = {0};
  CHECK(asu_safetensors_read(tensors_path, &saved, &err) == ASU_OK, "read: %s", err.message);
  const asu_st_tensor *q_b = asu_safetensors_find(
      &saved, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  CHECK(q_b != NULL, "q_proj.lora_B of layer 0 is missing from the file");
  float *device_b = download(lora->pairs[0][0].b, (size_t)lora->pairs[0][0].out * 3);
  if (q_b && m->cfg.head_dim == 8) {
    CHECK(memcmp(q_b->data + 4 * 3, device_b + 1 * 3, 3 * sizeof(float)) == 0,
          "GGUF row 1 of q's B is not file row 4");
    CHECK(memcmp(q_b->data + 1 * 3, device_b + 2 * 3, 3 * sizeof(float)) == 0,
          "GGUF row 2 of q's B is not file row 1");
    CHECK(memcmp(q_b->data, device_b, 3 * sizeof(float)) == 0, "row 0 of q's B moved");
  }
  free(device_b);
  asu_safetensors_free(&saved);

  /* A truncated tensor file fails with a message naming it, and nothing is loaded. */
  CHECK(truncate(tensors_path, 100) == 0, "truncate failed");
  asu_lora *broken = NULL;
  int rc = asu_lora_load(m, adapter_dir, &broken, &err);
  CHECK(rc != ASU_OK, "loading a truncated adapter returned %d", rc);
  CHECK(broken == NULL, "a truncated adapter was loaded");
  CHECK(strstr(err.message, "adapter_model.safetensors") != NULL, "message: %s", err.message);

  /* A missing directory is not found. */
  rc = asu_lora_load(m, "/nonexistent/adapter", &broken, &err);
  CHECK(rc == ASU_ERR_NOT_FOUND, "loading a missing adapter returned %d: %s", rc, err.message);

  asu_lora_destroy(lora);
  asu_lora_destroy(loaded);
  char cmdline[400];
  snprintf(cmdline, sizeof cmdline, "rm -rf '%s'", dir);
  CHECK(system(cmdline) == 0, "cleanup failed");
}

/* An adapter moved to host memory and back gives the same logits, to the bit. */
static void test_evict_restore(asu_model *m) {
  asu_error err;
  asu_lora *lora = NULL;
  CHECK(asu_lora_create(m, 4, 8.0f, ASU_LORA_ALL, 9, &lora, &err) == ASU_OK, "create: %s",
        err.message);
  if (!lora) return;
  for (uint32_t l = 0; l < m->cfg.n_layers; l++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++)
      randomize(lora->pairs[l][p].b, (size_t)lora->pairs[l][p].out * 4, 0.2f, 300 + l * 7 + p);
  float *before = last_logits(m, lora);
  uint64_t used = 0, peak = 0, evicted = 0;
  asu_device_memory_usage(m->dev, &used, &peak);
  CHECK(asu_lora_evict(lora, &err) == ASU_OK, "evict: %s", err.message);
  CHECK(!asu_lora_resident(lora), "an evicted adapter reports itself resident");
  asu_device_memory_usage(m->dev, &evicted, &peak);
  CHECK(evicted + asu_lora_device_bytes(lora) <= used, "eviction freed %llu of %zu bytes",
        (unsigned long long)(used - evicted), asu_lora_device_bytes(lora));
  CHECK(asu_lora_evict(lora, &err) == ASU_OK, "a second evict: %s", err.message);
  CHECK(asu_lora_restore(lora, &err) == ASU_OK, "restore: %s", err.message);
  CHECK(asu_lora_resident(lora), "a restored adapter reports itself evicted");
  float *after = last_logits(m, lora);
  double diff = 0;
  for (uint32_t i = 0; before && after && i < m->cfg.vocab; i++)
    diff = fmax(diff, fabs(before[i] - after[i]));
  CHECK(before != NULL, "the forward pass before eviction failed");
  CHECK(after != NULL, "the forward pass after restoring failed");
  CHECK(diff == 0.0, "logits after an evict and restore differ by %g", diff);
  free(before);
  free(after);
  asu_lora_destroy(lora);
}

int main(void) {
  asu_model *m = load_shared_model();
  if (!m) return 1;
  test_gradients(m);
  test_peft_round_trip(m);
  test_evict_restore(m);
  asu_model_destroy(m);
  return TEST_SUMMARY();
}
