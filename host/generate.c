/* Text generation with a key/value cache, and sampling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

typedef struct candidate {
  float p;
  int32_t id;
} candidate;

typedef struct sampler {
  uint64_t state;
  candidate *candidates;
} sampler;

static uint64_t next_random(sampler *s) {
  uint64_t z = (s->state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int32_t asu_argmax(const float *x, uint32_t n) {
  uint32_t best = 0;
  for (uint32_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return (int32_t)best;
}

static int by_probability(const void *a, const void *b) {
  float pa = ((const candidate *)a)->p, pb = ((const candidate *)b)->p;
  return (pa < pb) - (pa > pb);
}

/* Draws a token from softmax(logits / temperature), restricted to the smallest set of most
   likely tokens whose probability reaches top_p. Temperature 0 is greedy. */
static int32_t sample(sampler *s, const float *logits, uint32_t vocab, float temperature,
                      float top_p) {
  if (temperature <= 0.0f) return asu_argmax(logits, vocab);
  float max = logits[asu_argmax(logits, vocab)];
  double sum = 0.0;
  for (uint32_t i = 0; i < vocab; i++) {
    s->candidates[i] = (candidate){expf((logits[i] - max) / temperature), (int32_t)i};
    sum += s->candidates[i].p;
  }
  for (uint32_t i = 0; i < vocab; i++) s->candidates[i].p = (float)(s->candidates[i].p / sum);
  uint32_t kept = vocab;
  double kept_mass = 1.0;
  if (top_p < 1.0f) {
    qsort(s->candidates, vocab, sizeof *s->candidates, by_probability);
    double cumulative = 0.0;
    for (kept = 0; kept < vocab && cumulative < top_p; kept++) cumulative += s->candidates[kept].p;
    kept_mass = cumulative;
  }
  double u = (double)(next_random(s) >> 11) * 0x1.0p-53 * kept_mass, acc = 0.0;
  for (uint32_t i = 0; i < kept; i++) {
    acc += s->candidates[i].p;
    if (u < acc) return s->candidates[i].id;
  }
  return s->candidates[kept - 1].id;
}

static int check_sampling(const asu_sampling *s, asu_error *err) {
  if (!(s->temperature >= 0.0f) || !isfinite(s->temperature))
    return asu_error_set(err, ASU_ERR_INVALID, "temperature must be 0 (greedy) or positive, got %g",
                         s->temperature);
  if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
    return asu_error_set(err, ASU_ERR_INVALID, "top_p must be in (0, 1], got %g", s->top_p);
  return ASU_OK;
}

int asu_generate(asu_model *m, const asu_lora *adapter, const char *prompt,
                 const asu_sampling *sampling, asu_piece_fn on_piece, void *user,
                 asu_error *err) {
  int rc = check_sampling(sampling, err);
  if (rc) return rc;
  const asu_model_config *c = &m->cfg;
  int32_t *ids = malloc(sizeof *ids);
  size_t n = 1;
  if (!ids) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  ids[0] = asu_tokenizer_bos(m->tok);
  if (prompt && *prompt) rc = asu_tokenizer_encode(m->tok, prompt, strlen(prompt), true, &ids, &n, err);
  if (!rc && n >= c->context_length)
    rc = asu_error_set(err, ASU_ERR_LIMIT, "the prompt has %zu tokens; the model's context "
                       "length is %u", n, c->context_length);
  if (rc) {
    free(ids);
    return rc;
  }
  uint64_t requested = (uint64_t)n + sampling->max_tokens;
  uint32_t capacity = requested < c->context_length ? (uint32_t)requested : c->context_length;
  asu_decoder d = {0};
  sampler s = {.state = sampling->seed, .candidates = malloc(c->vocab * sizeof(candidate))};
  rc = s.candidates ? asu_decoder_init(&d, m, capacity, (uint32_t)n, adapter ? adapter->rank : 0, err)
                    : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = asu_decoder_step(&d, adapter, ids, (uint32_t)n, err);
  int32_t prev = ids[n - 1];
  for (uint32_t produced = 0; !rc && produced < sampling->max_tokens; produced++) {
    int32_t next = sample(&s, d.logits, c->vocab, sampling->temperature, sampling->top_p);
    if (next == asu_tokenizer_eos(m->tok) || next == asu_tokenizer_bos(m->tok)) break;
    char piece[256];
    int len = asu_tokenizer_decode(m->tok, prev, next, piece, sizeof piece);
    if (len < 0) len = 0;
    if (on_piece && on_piece(user, next, piece, (size_t)len)) break;
    prev = next;
    if (produced + 1 >= sampling->max_tokens || d.kv.used >= capacity) break;
    rc = asu_decoder_step(&d, adapter, &next, 1, err);
  }
  asu_decoder_free(&d);
  free(s.candidates);
  free(ids);
  return rc;
}

typedef struct text_sink {
  char *text;
  size_t len, cap;
} text_sink;

static int append_piece(void *user, int32_t token, const char *text, size_t len) {
  (void)token;
  text_sink *t = user;
  if (t->len + len + 1 > t->cap) {
    size_t cap = 2 * (t->len + len + 1);
    char *grown = realloc(t->text, cap);
    if (!grown) return 1;
    t->text = grown;
    t->cap = cap;
  }
  memcpy(t->text + t->len, text, len);
  t->len += len;
  t->text[t->len] = '\0';
  return 0;
}

int asu_base_story(asu_model *m, uint32_t tokens, asu_dataset *out, asu_error *err) {
  asu_sampling greedy = {.max_tokens = tokens, .temperature = 0.0f, .top_p = 1.0f};
  text_sink sink = {0};
  int rc = asu_generate(m, NULL, "", &greedy, append_piece, &sink, err);
  if (!rc && sink.len == 0)
    rc = asu_error_set(err, ASU_ERR_INTERNAL, "the model generated no text from BOS");
  if (!rc) rc = asu_dataset_add(out, NULL, sink.text, err);
  free(sink.text);
  return rc;
}
