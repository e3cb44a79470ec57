#include "asu_metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- ROUGE-L ---- */

typedef struct word {
  const char *start;
  size_t len;
} word;

/* Splits text into words (runs of ASCII letters and digits). Returns a malloc'd array. */
static word *split_words(const char *text, size_t *count) {
  size_t cap = 16, n = 0;
  word *w = malloc(cap * sizeof *w);
  for (const char *p = text; w && *p;) {
    while (*p && !isalnum((unsigned char)*p)) p++;
    const char *start = p;
    while (*p && isalnum((unsigned char)*p)) p++;
    if (p == start) continue;
    if (n == cap) {
      word *grown = realloc(w, 2 * cap * sizeof *w);
      if (!grown) {
        free(w);
        return NULL;
      }
      w = grown;
      cap *= 2;
    }
    w[n++] = (word){start, (size_t)(p - start)};
  }
  *count = n;
  return w;
}

static bool same_word(word a, word b) {
  if (a.len != b.len) return false;
  for (size_t i = 0; i < a.len; i++)
    if (tolower((unsigned char)a.start[i]) != tolower((unsigned char)b.start[i])) return false;
  return true;
}

double asu_rouge_l_recall(const char *generated, const char *reference) {
  size_t ng = 0, nr = 0;
  word *g = split_words(generated, &ng), *r = split_words(reference, &nr);
  double recall = 0;
  /* One row of the LCS table at a time, over the reference's words. */
  size_t *prev = calloc(nr + 1, sizeof *prev), *row = calloc(nr + 1, sizeof *row);
  if (g && r && prev && row && nr > 0) {
    for (size_t i = 1; i <= ng; i++) {
      for (size_t j = 1; j <= nr; j++) {
        if (same_word(g[i - 1], r[j - 1])) row[j] = prev[j - 1] + 1;
        else row[j] = prev[j] > row[j - 1] ? prev[j] : row[j - 1];
      }
      size_t *t = prev;
      prev = row;
      row = t;
    }
    recall = (double)prev[nr] / (double)nr;
  }
  free(g);
  free(r);
  free(prev);
  free(row);
  return recall;
}

double asu_vocabulary_share(const char *text, int (*known)(const char *word, size_t len,
                                                            void *user),
                            void *user) {
  size_t n = 0, hits = 0;
  word *w = split_words(text, &n);
  char buf[64];
  for (size_t i = 0; w && i < n; i++) {
    size_t len = w[i].len < sizeof buf ? w[i].len : sizeof buf - 1;
    for (size_t k = 0; k < len; k++) buf[k] = (char)tolower((unsigned char)w[i].start[k]);
    buf[len] = '\0';
    hits += known(buf, len, user) != 0;
  }
  free(w);
  return n ? (double)hits / (double)n : 0.0;
}

/* ---- Truth ratio, harmonic mean ---- */

double asu_truth_ratio(double paraphrased_nll, const double *perturbed_nll, size_t n) {
  if (n == 0) return NAN;
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += perturbed_nll[i];
  return exp(paraphrased_nll - sum / (double)n);
}

double asu_harmonic_mean(const double *v, size_t n) {
  if (n == 0) return 0;
  double inverse = 0;
  for (size_t i = 0; i < n; i++) {
    if (!(v[i] > 0)) return 0;
    inverse += 1.0 / v[i];
  }
  return (double)n / inverse;
}

/* ---- Kolmogorov-Smirnov ---- */

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* D between the empirical distributions of sorted x and y, as the largest gap in counts:
   max |i * m - j * n| over the points where both functions step (ties step together). */
static uint64_t ks_count_gap(const double *x, size_t n, const double *y, size_t m) {
  size_t i = 0, j = 0;
  uint64_t gap = 0;
  while (i < n || j < m) {
    double v = i < n && (j >= m || x[i] <= y[j]) ? x[i] : y[j];
    while (i < n && x[i] == v) i++;
    while (j < m && y[j] == v) j++;
    int64_t diff = (int64_t)(i * m) - (int64_t)(j * n);
    uint64_t abs_diff = (uint64_t)(diff < 0 ? -diff : diff);
    if (abs_diff > gap) gap = abs_diff;
  }
  return gap;
}

/* P(D >= gap / (n m)) for two samples of sizes n and m: the probability that a uniformly
   random monotone lattice path from (0, 0) to (n, m) reaches a point with |i m - j n| >= gap.
   The walk takes an x step from (i, j) with probability (n - i) / (n - i + m - j), which makes
   every path equally likely, so the sums stay probabilities and cannot overflow. The mass of
   the paths that first reach such a point is summed directly, not subtracted from 1, which
   keeps p-values far below 1e-16 accurate. */
static double ks_exact(size_t n, size_t m, uint64_t gap) {
  double *col = calloc(m + 1, sizeof *col);
  if (!col) return NAN;
  col[0] = 1.0; /* arrives at (0, 0) */
  double outside = 0;
  for (size_t i = 0; i <= n; i++) {
    for (size_t j = 0; j <= m; j++) {
      /* col[j] contains the mass arriving at (i, j) from (i - 1, j); add that from (i, j - 1). */
      double arriving = col[j];
      if (j > 0) arriving += col[j - 1] * (double)(m - (j - 1)) / (double)(n - i + m - (j - 1));
      int64_t diff = (int64_t)(i * m) - (int64_t)(j * n);
      bool out = (uint64_t)(diff < 0 ? -diff : diff) >= gap;
      if (out) outside += arriving;
      col[j] = out ? 0 : arriving;
    }
    /* Move to column i + 1: the mass leaving (i, j) by an x step. */
    if (i < n)
      for (size_t j = 0; j <= m; j++) col[j] *= (double)(n - i) / (double)(n - i + m - j);
  }
  free(col);
  return outside > 1 ? 1 : outside;
}

/* The limiting distribution: P(K > lambda) = 2 sum (-1)^(k-1) exp(-2 k^2 lambda^2). */
static double kolmogorov_sf(double lambda) {
  if (lambda < 0.2) return 1.0;
  double sum = 0;
  for (int k = 1; k < 100; k++) {
    double term = exp(-2.0 * k * k * lambda * lambda);
    sum += (k % 2 ? term : -term);
    if (term < 1e-17) break;
  }
  double p = 2 * sum;
  return p < 0 ? 0 : (p > 1 ? 1 : p);
}

double asu_ks_2samp(const double *x, size_t n, const double *y, size_t m, double *statistic) {
  if (statistic) *statistic = NAN;
  if (n == 0 || m == 0) return NAN;
  double *xs = malloc(n * sizeof *xs), *ys = malloc(m * sizeof *ys);
  if (!xs || !ys) {
    free(xs);
    free(ys);
    return NAN;
  }
  memcpy(xs, x, n * sizeof *xs);
  memcpy(ys, y, m * sizeof *ys);
  qsort(xs, n, sizeof *xs, compare_doubles);
  qsort(ys, m, sizeof *ys, compare_doubles);
  uint64_t gap = ks_count_gap(xs, n, ys, m);
  free(xs);
  free(ys);
  double d = (double)gap / ((double)n * (double)m);
  if (statistic) *statistic = d;
  if (gap == 0) return 1.0;
  if ((double)n * (double)m <= 1e7) return ks_exact(n, m, gap);
  double en = (double)n * (double)m / (double)(n + m);
  return kolmogorov_sf(sqrt(en) * d);
}

/* ---- Fluency ---- */

static int compare_ints(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

double asu_token_entropy(const int32_t *tokens, size_t n) {
  if (n < 2) return 0;
  int32_t *sorted = malloc(n * sizeof *sorted);
  if (!sorted) return NAN;
  memcpy(sorted, tokens, n * sizeof *sorted);
  qsort(sorted, n, sizeof *sorted, compare_ints);
  double h = 0;
  for (size_t i = 0; i < n;) {
    size_t k = i;
    while (k < n && sorted[k] == sorted[i]) k++;
    double p = (double)(k - i) / (double)n;
    h -= p * log(p);
    i = k;
  }
  free(sorted);
  return h / log((double)n);
}

size_t asu_longest_run(const int32_t *tokens, size_t n) {
  size_t best = n ? 1 : 0, run = 1;
  for (size_t i = 1; i < n; i++) {
    run = tokens[i] == tokens[i - 1] ? run + 1 : 1;
    if (run > best) best = run;
  }
  return best;
}
