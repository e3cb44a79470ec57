/* Encoding: spaces become U+2581, the text is split into UTF-8 characters (characters without a
   piece fall back to <0xXX> byte pieces), then the adjacent pair whose concatenation is a piece
   with the highest score is merged, leftmost first on ties, until no pair is a piece. This is
   the llama2.c algorithm; a binary heap of candidate pairs keeps it O(n log n) instead of
   rescanning all pairs after every merge. */
#include <stdlib.h>
#include <string.h>

#include "asu_tokenizer.h"
#include "tokenizer_internal.h"

/* One symbol of the text being merged: a span of the normalised text and its piece id. Merged
   symbols keep the start of their left part; absorbed symbols get len 0. */
typedef struct symbol {
  size_t start, len;
  int32_t id;
  bool mergeable; /* false for byte-fallback and unknown symbols */
  size_t prev, next; /* neighbours in the list, or SIZE_MAX at the ends */
} symbol;

/* A candidate merge of symbols left and right into piece id. */
typedef struct pair {
  float score;
  size_t left, right;
  size_t len; /* left.len + right.len when pushed, so that a mismatch marks it stale */
  int32_t id;
} pair;

typedef struct heap {
  pair *items;
  size_t size, cap;
} heap;

/* Pops the best pair first: the highest score, then the leftmost. */
static bool pair_before(const pair *a, const pair *b) {
  if (a->score != b->score) return a->score > b->score;
  return a->left < b->left;
}

static void swap_pairs(pair *a, pair *b) {
  pair t = *a;
  *a = *b;
  *b = t;
}

static bool heap_push(heap *h, pair p) {
  if (h->size == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 64;
    pair *items = realloc(h->items, cap * sizeof *items);
    if (!items) return false;
    h->items = items;
    h->cap = cap;
  }
  size_t i = h->size++;
  h->items[i] = p;
  while (i > 0 && pair_before(&h->items[i], &h->items[(i - 1) / 2])) {
    swap_pairs(&h->items[i], &h->items[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  return true;
}

static pair heap_pop(heap *h) {
  pair top = h->items[0];
  h->items[0] = h->items[--h->size];
  size_t i = 0;
  for (;;) {
    size_t best = i, l = 2 * i + 1, r = 2 * i + 2;
    if (l < h->size && pair_before(&h->items[l], &h->items[best])) best = l;
    if (r < h->size && pair_before(&h->items[r], &h->items[best])) best = r;
    if (best == i) break;
    swap_pairs(&h->items[i], &h->items[best]);
    i = best;
  }
  return top;
}

/* ---- Normalisation and splitting. ---- */

/* Returns text with every space replaced by U+2581, after one more U+2581 when prefix is set. */
static char *normalize(const char *text, size_t len, bool prefix, size_t *out_len) {
  if (len > (SIZE_MAX - SPACE_MARKER_LEN - 1) / SPACE_MARKER_LEN) return NULL;
  char *out = malloc(SPACE_MARKER_LEN * (len + 1) + 1);
  if (!out) return NULL;
  size_t n = 0;
  if (prefix) {
    memcpy(out, SPACE_MARKER, SPACE_MARKER_LEN);
    n = SPACE_MARKER_LEN;
  }
  for (size_t i = 0; i < len; i++) {
    if (text[i] == ' ') {
      memcpy(out + n, SPACE_MARKER, SPACE_MARKER_LEN);
      n += SPACE_MARKER_LEN;
    } else {
      out[n++] = text[i];
    }
  }
  out[n] = '\0';
  *out_len = n;
  return out;
}

/* Returns the length of the UTF-8 character at s, or 1 for a byte that does not start a
   well-formed character (it then goes through byte fallback on its own). */
static size_t utf8_char_len(const unsigned char *s, size_t avail) {
  size_t len;
  if (s[0] < 0x80) return 1;
  if ((s[0] & 0xE0) == 0xC0) len = 2;
  else if ((s[0] & 0xF0) == 0xE0) len = 3;
  else if ((s[0] & 0xF8) == 0xF0) len = 4;
  else return 1;
  if (len > avail) return 1;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 1;
  return len;
}

typedef struct symbols {
  symbol *items;
  size_t count;
} symbols;

static void add_symbol(symbols *syms, size_t start, size_t len, int32_t id, bool mergeable) {
  symbol *s = &syms->items[syms->count];
  s->start = start;
  s->len = len;
  s->id = id;
  s->mergeable = mergeable;
  s->prev = syms->count == 0 ? SIZE_MAX : syms->count - 1;
  s->next = syms->count + 1;
  syms->count++;
}

/* Splits the normalised text into one symbol per character, or one per byte for characters
   that have no piece. `items` must have room for one symbol per byte. */
static void split(const asu_tokenizer *tok, const char *text, size_t len, symbols *syms) {
  for (size_t i = 0; i < len;) {
    size_t n = utf8_char_len((const unsigned char *)text + i, len - i);
    int32_t id = asu_tokenizer_lookup(tok, text + i, n);
    if (id >= 0) {
      add_symbol(syms, i, n, id, true);
    } else {
      for (size_t b = 0; b < n; b++) {
        int32_t byte_id = tok->byte_ids[(unsigned char)text[i + b]];
        add_symbol(syms, i + b, 1, byte_id >= 0 ? byte_id : tok->unk, false);
      }
    }
    i += n;
  }
  if (syms->count > 0) syms->items[syms->count - 1].next = SIZE_MAX;
}

/* ---- Merging. ---- */

static bool push_candidate(const asu_tokenizer *tok, const char *text, const symbols *syms,
                           size_t left, heap *h) {
  if (left == SIZE_MAX) return true;
  const symbol *a = &syms->items[left];
  if (a->next == SIZE_MAX) return true;
  const symbol *b = &syms->items[a->next];
  if (!a->mergeable || !b->mergeable) return true;
  int32_t id = asu_tokenizer_lookup(tok, text + a->start, a->len + b->len);
  if (id < 0) return true;
  pair p = {.score = tok->scores[id], .left = left, .right = a->next, .len = a->len + b->len,
            .id = id};
  return heap_push(h, p);
}

static bool merge_all(const asu_tokenizer *tok, const char *text, symbols *syms) {
  heap h = {0};
  bool ok = true;
  for (size_t i = 0; ok && i < syms->count; i++) ok = push_candidate(tok, text, syms, i, &h);
  while (ok && h.size > 0) {
    pair p = heap_pop(&h);
    symbol *a = &syms->items[p.left];
    symbol *b = &syms->items[p.right];
    if (a->len == 0 || a->next != p.right || a->len + b->len != p.len) continue; /* stale */
    a->len += b->len;
    a->id = p.id;
    a->next = b->next;
    if (b->next != SIZE_MAX) syms->items[b->next].prev = p.left;
    b->len = 0;
    ok = push_candidate(tok, text, syms, a->prev, &h) && push_candidate(tok, text, syms, p.left, &h);
  }
  free(h.items);
  return ok;
}

static int append_ids(const char *text, const symbols *syms, int32_t **ids, size_t *n,
                      asu_error *err) {
  size_t count = 0;
  for (size_t i = 0; i != SIZE_MAX; i = syms->items[i].next) {
    const symbol *s = &syms->items[i];
    if (s->id < 0)
      return asu_error_set(err, ASU_ERR_FORMAT,
                           "the vocabulary has neither a byte piece nor an unknown piece for "
                           "byte 0x%02x at offset %zu of the normalised text",
                           (unsigned char)text[s->start], s->start);
    count++;
  }
  int32_t *grown = realloc(*ids, (*n + count) * sizeof **ids);
  if (!grown) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory storing %zu token ids", count);
  *ids = grown;
  for (size_t i = 0; i != SIZE_MAX; i = syms->items[i].next) (*ids)[(*n)++] = syms->items[i].id;
  return ASU_OK;
}

int asu_tokenizer_encode(const asu_tokenizer *tok, const char *text, size_t len, bool space_prefix,
                         int32_t **ids, size_t *n, asu_error *err) {
  if (!tok || !ids || !n || (!text && len > 0))
    return asu_error_set(err, ASU_ERR_INVALID, "asu_tokenizer_encode: NULL argument");
  if (len == 0) return ASU_OK;

  size_t norm_len = 0;
  char *norm = normalize(text, len, space_prefix, &norm_len);
  symbols syms = {.items = norm ? malloc(norm_len * sizeof *syms.items) : NULL};
  int rc = ASU_OK;
  if (!norm || !syms.items)
    rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory encoding %zu bytes of text", len);
  if (rc == ASU_OK) {
    split(tok, norm, norm_len, &syms);
    if (!merge_all(tok, norm, &syms))
      rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory encoding %zu bytes of text", len);
  }
  if (rc == ASU_OK) rc = append_ids(norm, &syms, ids, n, err);
  free(syms.items);
  free(norm);
  return rc;
}
