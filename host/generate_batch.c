/* Greedy generation for many prompts at once. The unfinished sequences of a group share one
   forward pass a step and one key/value cache, each in its own slot of rows, and the attention
   ranges keep the slots apart. On lavapipe a lone decoding step of a small model is mostly
   submission overhead, so a group of 32 costs little more than one sequence. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* Sequences decoded together. */
#define GROUP 32

typedef struct sequence {
  size_t index;       /* in the caller's prompts */
  int32_t *ids;       /* the prompt's tokens, BOS first */
  size_t n_ids;
  uint32_t used, capacity;  /* cache rows filled and available in the slot */
  uint32_t produced;
  int32_t prev, next;       /* the last token shown and the one to feed next */
  bool done;
} sequence;

typedef struct group {
  asu_model *m;
  const asu_lora *lora;
  asu_decoder d;
  sequence *seq;
  size_t n;
  uint32_t max_tokens, slot_rows;
  uint32_t *slots;
  int32_t *ids;
  float *logits;
} group;

static int encode(asu_model *m, const char *prompt, size_t index, sequence *s, asu_error *err) {
  s->index = index;
  s->n_ids = 1;
  s->ids = malloc(sizeof *s->ids);
  if (!s->ids) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  s->ids[0] = asu_tokenizer_bos(m->tok);
  int rc = ASU_OK;
  if (prompt && *prompt)
    rc = asu_tokenizer_encode(m->tok, prompt, strlen(prompt), true, &s->ids, &s->n_ids, err);
  if (!rc && s->n_ids >= m->cfg.context_length)
    rc = asu_error_set(err, ASU_ERR_LIMIT, "prompt %zu has %zu tokens; the model's context "
                       "length is %u", index, s->n_ids, m->cfg.context_length);
  return rc;
}

/* Runs the rows set in g->ids, g->slots and the decoder's positions and ranges, and downloads
   every row's logits into g->logits. */
static int run_rows(group *g, uint32_t rows, asu_error *err) {
  asu_decoder *d = &g->d;
  int rc = asu_buffer_upload(d->ids, 0, g->ids, rows * sizeof(int32_t), err);
  if (!rc) rc = asu_buffer_upload(d->positions, 0, d->host_positions, rows * sizeof(int32_t), err);
  if (!rc) rc = asu_buffer_upload(d->q_ranges, 0, d->host_ranges, 2 * rows * sizeof(int32_t), err);
  if (rc) return rc;
  asu_forward_args fwd = {
      .lora = g->lora, .ids = d->ids, .positions = d->positions, .q_ranges = d->q_ranges,
      .rows = rows, .layer_scale = d->scales, .kv = &d->kv, .kv_slots = g->slots,
  };
  asu_forward_record(d->cmd, g->m, &fwd, d->acts);
  rc = asu_cmd_submit(d->cmd, err);
  if (!rc) rc = asu_buffer_download(d->acts->logits, 0, g->logits,
                                    (size_t)rows * g->m->cfg.vocab * sizeof(float), err);
  return rc;
}

/* Sets row r to token id at position pos of sequence b. */
static void set_row(group *g, uint32_t r, size_t b, int32_t id, uint32_t pos) {
  uint32_t first = (uint32_t)b * g->slot_rows;
  g->ids[r] = id;
  g->slots[r] = first + pos;
  g->d.host_positions[r] = (int32_t)pos;
  g->d.host_ranges[2 * r] = (int32_t)first;
  g->d.host_ranges[2 * r + 1] = (int32_t)(first + pos);
}

/* Takes sequence s's next token from its logits row, shows it, and decides whether s goes on,
   with the same stopping rules as asu_generate. */
static void advance(group *g, sequence *s, const float *row, asu_batch_piece_fn on_piece,
                    void *user) {
  asu_model *m = g->m;
  int32_t next = asu_argmax(row, m->cfg.vocab);
  if (next == asu_tokenizer_eos(m->tok) || next == asu_tokenizer_bos(m->tok)) {
    s->done = true;
    return;
  }
  char piece[256];
  int len = asu_tokenizer_decode(m->tok, s->prev, next, piece, sizeof piece);
  if (len < 0) len = 0;
  if (on_piece && on_piece(user, s->index, next, piece, (size_t)len)) {
    s->done = true;
    return;
  }
  s->prev = s->next = next;
  s->produced++;
  s->done = s->produced >= g->max_tokens || s->used >= s->capacity;
}

static int prefill(group *g, asu_batch_piece_fn on_piece, void *user, asu_error *err) {
  uint32_t r = 0;
  for (size_t b = 0; b < g->n; b++)
    for (size_t i = 0; i < g->seq[b].n_ids; i++) set_row(g, r++, b, g->seq[b].ids[i], (uint32_t)i);
  int rc = run_rows(g, r, err);
  r = 0;
  for (size_t b = 0; !rc && b < g->n; b++) {
    sequence *s = &g->seq[b];
    r += (uint32_t)s->n_ids;
    s->used = (uint32_t)s->n_ids;
    s->prev = s->ids[s->n_ids - 1];
    advance(g, s, g->logits + (size_t)(r - 1) * g->m->cfg.vocab, on_piece, user);
  }
  return rc;
}

static int decode(group *g, asu_batch_piece_fn on_piece, void *user, asu_error *err) {
  int rc = ASU_OK;
  while (!rc) {
    uint32_t rows = 0;
    for (size_t b = 0; b < g->n; b++)
      if (!g->seq[b].done) set_row(g, rows++, b, g->seq[b].next, g->seq[b].used);
    if (rows == 0) break;
    rc = run_rows(g, rows, err);
    for (size_t b = 0, r = 0; !rc && b < g->n; b++) {
      sequence *s = &g->seq[b];
      if (s->done) continue;
      s->used++;
      advance(g, s, g->logits + r++ * g->m->cfg.vocab, on_piece, user);
    }
  }
  return rc;
}

static int run_group(group *g, asu_batch_piece_fn on_piece, void *user, asu_error *err) {
  asu_model *m = g->m;
  uint32_t max_tokens = g->max_tokens;
  uint32_t prompt_rows = 0;
  g->slot_rows = 0;
  for (size_t b = 0; b < g->n; b++) {
    sequence *s = &g->seq[b];
    uint64_t requested = (uint64_t)s->n_ids + max_tokens;
    s->capacity = requested < m->cfg.context_length ? (uint32_t)requested : m->cfg.context_length;
    if (s->capacity > g->slot_rows) g->slot_rows = s->capacity;
    prompt_rows += (uint32_t)s->n_ids;
  }
  uint32_t max_rows = prompt_rows > g->n ? prompt_rows : (uint32_t)g->n;
  g->slots = malloc(max_rows * sizeof *g->slots);
  g->ids = malloc(max_rows * sizeof *g->ids);
  g->logits = malloc((size_t)max_rows * m->cfg.vocab * sizeof *g->logits);
  int rc = g->slots && g->ids && g->logits
               ? asu_decoder_init(&g->d, m, g->slot_rows * (uint32_t)g->n, max_rows,
                                  g->lora ? g->lora->rank : 0, err)
               : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = prefill(g, on_piece, user, err);
  if (!rc) rc = decode(g, on_piece, user, err);
  asu_decoder_free(&g->d);
  free(g->slots);
  free(g->ids);
  free(g->logits);
  return rc;
}

int asu_generate_greedy_batch(asu_model *m, const asu_lora *adapter, const char *const *prompts,
                              size_t n, uint32_t max_tokens, asu_batch_piece_fn on_piece,
                              void *user, asu_error *err) {
  sequence seq[GROUP];
  int rc = ASU_OK;
  if (max_tokens == 0) return ASU_OK;
  for (size_t start = 0; !rc && start < n; start += GROUP) {
    size_t count = n - start < GROUP ? n - start : GROUP;
    memset(seq, 0, sizeof seq);
    for (size_t b = 0; !rc && b < count; b++)
      rc = encode(m, prompts[start + b], start + b, &seq[b], err);
    group g = {.m = m, .lora = adapter, .seq = seq, .n = count, .max_tokens = max_tokens};
    if (!rc) rc = run_group(&g, on_piece, user, err);
    for (size_t b = 0; b < count; b++) free(seq[b].ids);
  }
  return rc;
}
