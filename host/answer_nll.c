/* Mean NLL per answer token of each example of a data set, the quantity behind TOFU's answer
   probability and truth ratio: exp(-mean NLL) is the normalised probability of the answer. */
#include <math.h>
#include <stdlib.h>

#include "train_internal.h"

/* Examples per forward pass: bounds the activations (rows x vocab logits) of one batch. */
#define NLL_BATCH 32

/* Weights 1 / (answer tokens of e) on the rows that predict e's answer tokens, so that the
   weighted loss summed over e's rows is e's mean NLL. */
static void example_weights(const asu_batch *b, float *w) {
  for (uint32_t r = 0; r < b->rows; r++) w[r] = 0.0f;
  for (uint32_t x = 0; x < b->n_examples; x++) {
    uint32_t tokens = b->example_begin[x + 1] - b->answer_begin[x];
    for (uint32_t r = b->answer_begin[x] - 1; r + 1 < b->example_begin[x + 1]; r++)
      w[r] = 1.0f / (float)(tokens ? tokens : 1);
  }
}

/* Exact memorisation and extraction strength of example x from the logits of its rows: an
   answer token counts as memorised when it is the argmax of the logits that predict it. The
   answer's closing EOS is not one of the tokens measured. */
static void memorisation(const asu_batch *b, uint32_t x, const float *logits, uint32_t vocab,
                         asu_answer_stats *out) {
  uint32_t first = b->answer_begin[x] - 1, end = b->example_begin[x + 1] - 2;
  uint32_t tokens = end - first, hits = 0, resume = 0; /* resume: answer index after the last miss */
  for (uint32_t r = first; r < end; r++) {
    const float *row = logits + (size_t)r * vocab;
    uint32_t best = 0;
    for (uint32_t v = 1; v < vocab; v++)
      if (row[v] > row[best]) best = v;
    if ((int32_t)best == b->targets[r]) hits++;
    else resume = r - first + 1;
  }
  out->exact_match = tokens ? (double)hits / tokens : 0.0;
  out->extraction = tokens ? 1.0 - (double)resume / tokens : 0.0;
}

/* One batch: the forward pass, cross-entropy with per-example weights, per-example sums, and
   with memorised set the memorisation measures from the downloaded logits. */
static int batch_nll(asu_model *m, const asu_lora *lora, const asu_tokens *items, size_t n,
                     asu_answer_stats *out, bool memorised, asu_error *err) {
  asu_batch *b = NULL;
  asu_acts *acts = NULL;
  asu_buffer *weights = NULL, *loss = NULL, *dlogits = NULL;
  asu_cmd *cmd = NULL;
  float *w = NULL, *loss_host = NULL, *scales = malloc(m->cfg.n_layers * sizeof *scales);
  int rc = scales ? asu_batch_create(m, items, n, &b, err)
                  : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) {
    w = malloc(b->rows * sizeof *w);
    loss_host = malloc(b->rows * sizeof *loss_host);
    if (!w || !loss_host) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  }
  if (!rc) {
    example_weights(b, w);
    asu_layer_scales(m, 1.0f, 0, scales);
    rc = asu_upload_floats(m->dev, w, b->rows, &weights, err);
  }
  uint32_t rank = lora ? asu_lora_rank(lora) : 0;
  if (!rc) rc = asu_acts_create_shared(m, b->rows, rank, &acts, err);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)b->rows * sizeof(float), &loss, err);
  if (!rc) rc = asu_buffer_create(m->dev, (size_t)b->rows * m->cfg.vocab * sizeof(float),
                                  &dlogits, err);
  if (!rc) rc = asu_cmd_begin(m->dev, &cmd, err);
  if (!rc) {
    asu_forward_args fwd = {.lora = lora, .ids = b->ids_buf, .positions = b->positions_buf,
                            .q_ranges = b->q_ranges_buf, .rows = b->rows, .layer_scale = scales};
    asu_forward_record(cmd, m, &fwd, acts);
    asu_op_cross_entropy(cmd, acts->logits, b->targets_buf, weights, loss, dlogits, 0, b->rows,
                         m->cfg.vocab);
    rc = asu_cmd_submit(cmd, err);
  }
  if (!rc) rc = asu_buffer_download(loss, 0, loss_host, b->rows * sizeof(float), err);
  for (uint32_t x = 0; !rc && x < n; x++) out[x].nll = asu_sum_rows(b, x, 1, loss_host);
  float *logits = !rc && memorised ? malloc((size_t)b->rows * m->cfg.vocab * sizeof *logits) : NULL;
  if (!rc && memorised && !logits) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (logits)
    rc = asu_buffer_download(acts->logits, 0, logits, (size_t)b->rows * m->cfg.vocab * sizeof(float),
                             err);
  for (uint32_t x = 0; !rc && logits && x < n; x++)
    memorisation(b, x, logits, m->cfg.vocab, &out[x]);
  free(logits);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(dlogits);
  asu_buffer_destroy(loss);
  asu_buffer_destroy(weights);
  asu_acts_destroy(acts);
  asu_batch_destroy(b);
  free(w);
  free(loss_host);
  free(scales);
  return rc;
}

static int answer_stats(asu_model *m, const asu_lora *lora, const char *prompt_template,
                        const asu_dataset *ds, asu_answer_stats *out, bool memorised,
                        asu_error *err) {
  asu_token_set set = {0};
  int rc = asu_token_set_add(m, prompt_template, ds, &set, err);
  for (size_t first = 0; !rc && first < set.count; first += NLL_BATCH) {
    size_t n = set.count - first < NLL_BATCH ? set.count - first : NLL_BATCH;
    rc = batch_nll(m, lora, set.items + first, n, out + first, memorised, err);
  }
  asu_token_set_free(&set);
  return rc;
}

int asu_answer_measure(asu_model *m, const asu_lora *lora, const char *prompt_template,
                       const asu_dataset *ds, asu_answer_stats *out, asu_error *err) {
  return answer_stats(m, lora, prompt_template, ds, out, true, err);
}

int asu_answer_nll(asu_model *m, const asu_lora *lora, const char *prompt_template,
                   const asu_dataset *ds, double *out, asu_error *err) {
  asu_answer_stats *stats = calloc(ds->count ? ds->count : 1, sizeof *stats);
  if (!stats) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  int rc = answer_stats(m, lora, prompt_template, ds, stats, false, err);
  for (size_t i = 0; !rc && i < ds->count; i++) out[i] = stats[i].nll;
  free(stats);
  return rc;
}
