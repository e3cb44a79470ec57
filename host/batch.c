/* Packing tokenised examples into one batch of rows. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

static int upload_ints(asu_device *dev, const int32_t *data, size_t n, asu_buffer **out,
                       asu_error *err) {
  int rc = asu_buffer_create(dev, n * sizeof(int32_t), out, err);
  if (!rc) rc = asu_buffer_upload(*out, 0, data, n * sizeof(int32_t), err);
  return rc;
}

/* Groups rows by token id for the embedding backward pass (a counting sort). */
static int upload_embedding_groups(asu_model *m, asu_batch *b, asu_error *err) {
  uint32_t vocab = m->cfg.vocab;
  int32_t *offsets = calloc((size_t)vocab + 1, sizeof *offsets);
  int32_t *order = malloc((size_t)b->rows * sizeof *order);
  int32_t *fill = malloc((size_t)vocab * sizeof *fill);
  int rc = ASU_OK;
  if (!offsets || !order || !fill) {
    rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory packing a batch");
  } else {
    for (uint32_t r = 0; r < b->rows; r++) offsets[b->ids[r] + 1]++;
    for (uint32_t v = 0; v < vocab; v++) offsets[v + 1] += offsets[v];
    memcpy(fill, offsets, (size_t)vocab * sizeof *fill);
    for (uint32_t r = 0; r < b->rows; r++) order[fill[b->ids[r]]++] = (int32_t)r;
    rc = upload_ints(m->dev, order, b->rows, &b->embed_order_buf, err);
    if (!rc) rc = upload_ints(m->dev, offsets, (size_t)vocab + 1, &b->embed_offsets_buf, err);
  }
  free(offsets);
  free(order);
  free(fill);
  return rc;
}

static int fill_rows(asu_model *m, asu_batch *b, const asu_tokens *examples, size_t n,
                     asu_error *err) {
  uint32_t row = 0;
  for (size_t e = 0; e < n; e++) {
    const asu_tokens *t = &examples[e];
    if (t->n > m->cfg.context_length)
      return asu_error_set(err, ASU_ERR_LIMIT,
                           "example %zu has %zu tokens, over the model's context length %u", e,
                           t->n, m->cfg.context_length);
    b->example_begin[e] = row;
    b->answer_begin[e] = row + (uint32_t)t->answer_begin;
    uint32_t first = row, last = row + (uint32_t)t->n - 1;
    for (size_t i = 0; i < t->n; i++, row++) {
      if (t->ids[i] < 0 || (uint32_t)t->ids[i] >= m->cfg.vocab)
        return asu_error_set(err, ASU_ERR_INVALID, "example %zu: token id %d is outside the "
                             "vocabulary of %u", e, t->ids[i], m->cfg.vocab);
      b->ids[row] = t->ids[i];
      b->positions[row] = (int32_t)i;
      b->targets[row] = i + 1 < t->n ? t->ids[i + 1] : -1;
      b->q_ranges[2 * row] = (int32_t)first;
      b->q_ranges[2 * row + 1] = (int32_t)row;
      b->k_ranges[2 * row] = (int32_t)row;
      b->k_ranges[2 * row + 1] = (int32_t)last;
    }
  }
  b->example_begin[n] = row;
  return ASU_OK;
}

int asu_batch_create(asu_model *m, const asu_tokens *examples, size_t n, asu_batch **out,
                     asu_error *err) {
  *out = NULL;
  size_t rows = 0;
  for (size_t e = 0; e < n; e++) rows += examples[e].n;
  if (n == 0 || rows == 0)
    return asu_error_set(err, ASU_ERR_INVALID, "a batch needs at least one non-empty example");
  if (rows > (1u << 24))
    return asu_error_set(err, ASU_ERR_LIMIT, "a batch of %zu tokens is over the limit of %u",
                         rows, 1u << 24);
  asu_batch *b = calloc(1, sizeof *b);
  if (!b) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  b->rows = (uint32_t)rows;
  b->n_examples = (uint32_t)n;
  b->ids = malloc(rows * sizeof(int32_t));
  b->positions = malloc(rows * sizeof(int32_t));
  b->targets = malloc(rows * sizeof(int32_t));
  b->q_ranges = malloc(2 * rows * sizeof(int32_t));
  b->k_ranges = malloc(2 * rows * sizeof(int32_t));
  b->example_begin = malloc((n + 1) * sizeof(uint32_t));
  b->answer_begin = malloc(n * sizeof(uint32_t));
  int rc = ASU_OK;
  if (!b->ids || !b->positions || !b->targets || !b->q_ranges || !b->k_ranges ||
      !b->example_begin || !b->answer_begin)
    rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory packing a batch");
  if (!rc) rc = fill_rows(m, b, examples, n, err);
  if (!rc) rc = upload_ints(m->dev, b->ids, rows, &b->ids_buf, err);
  if (!rc) rc = upload_ints(m->dev, b->positions, rows, &b->positions_buf, err);
  if (!rc) rc = upload_ints(m->dev, b->targets, rows, &b->targets_buf, err);
  if (!rc) rc = upload_ints(m->dev, b->q_ranges, 2 * rows, &b->q_ranges_buf, err);
  if (!rc) rc = upload_ints(m->dev, b->k_ranges, 2 * rows, &b->k_ranges_buf, err);
  if (!rc) rc = upload_embedding_groups(m, b, err);
  if (rc) {
    asu_batch_destroy(b);
    return rc;
  }
  *out = b;
  return ASU_OK;
}

void asu_batch_destroy(asu_batch *b) {
  if (!b) return;
  free(b->ids);
  free(b->positions);
  free(b->targets);
  free(b->q_ranges);
  free(b->k_ranges);
  free(b->example_begin);
  free(b->answer_begin);
  asu_buffer_destroy(b->ids_buf);
  asu_buffer_destroy(b->positions_buf);
  asu_buffer_destroy(b->targets_buf);
  asu_buffer_destroy(b->q_ranges_buf);
  asu_buffer_destroy(b->k_ranges_buf);
  asu_buffer_destroy(b->embed_order_buf);
  asu_buffer_destroy(b->embed_offsets_buf);
  free(b);
}
