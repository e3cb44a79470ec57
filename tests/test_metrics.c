/* The unlearning metrics on hand-worked cases. The Kolmogorov-Smirnov p-values are also checked
   against scipy by tests/metrics_check.py, through tests/ks_cli.c. */
#include <math.h>
#include <stdio.h>

#include "asu_metrics.h"
#include "test_util.h"

static void test_rouge_l(void) {
  /* LCS "the cat on the mat": 5 of the reference's 6 words. */
  double r = asu_rouge_l_recall("The cat sat on the mat.", "the cat is on the mat");
  CHECK(fabs(r - 5.0 / 6.0) < 1e-12, "rouge-l of the cat sentences is %g, expected 5/6", r);
  r = asu_rouge_l_recall("Mat the on, CAT!", "the cat on the mat");
  CHECK(fabs(r - 2.0 / 5.0) < 1e-12, "rouge-l with the words reversed is %g, expected 2/5", r);
  CHECK(asu_rouge_l_recall("anything", "") == 0.0, "an empty reference must give 0");
  CHECK(asu_rouge_l_recall("", "some words") == 0.0, "an empty generation must give 0");
  r = asu_rouge_l_recall("born in 1975 in Paris", "He was born in Paris in 1975.");
  CHECK(fabs(r - 3.0 / 7.0) < 1e-12, "rouge-l with digits is %g, expected 3/7", r);
}

static void test_truth_ratio(void) {
  double perturbed[] = {2.0, 3.0};
  double r = asu_truth_ratio(1.0, perturbed, 2);
  CHECK(fabs(r - exp(-1.5)) < 1e-12, "truth ratio %g, expected exp(-1.5)", r);
  CHECK(isnan(asu_truth_ratio(1.0, perturbed, 0)), "no perturbed answers must give NaN");
}

static void test_harmonic_mean(void) {
  double v[] = {1.0, 2.0, 4.0};
  double h = asu_harmonic_mean(v, 3);
  CHECK(fabs(h - 3.0 / 1.75) < 1e-12, "harmonic mean %g, expected 12/7", h);
  double zero[] = {1.0, 0.0};
  CHECK(asu_harmonic_mean(zero, 2) == 0.0, "a zero value must give 0");
}

static void test_fluency(void) {
  int32_t same[] = {4, 4, 4, 4}, distinct[] = {1, 2, 3, 4}, pairs[] = {1, 1, 2, 2};
  CHECK(asu_token_entropy(same, 4) == 0.0, "one repeated token must have entropy 0");
  CHECK(fabs(asu_token_entropy(distinct, 4) - 1.0) < 1e-12, "distinct tokens must have entropy 1");
  double e = asu_token_entropy(pairs, 4);
  CHECK(fabs(e - 0.5) < 1e-12, "two pairs have entropy %g, expected log 2 / log 4", e);
  int32_t runs[] = {5, 5, 7, 7, 7, 5};
  CHECK(asu_longest_run(runs, 6) == 3, "longest run %zu, expected 3", asu_longest_run(runs, 6));
  CHECK(asu_longest_run(runs, 0) == 0, "an empty generation has no run");
}

static void test_ks(void) {
  /* Disjoint samples of 3: D = 1, and 2 of the C(6, 3) = 20 paths reach it. */
  double x[] = {3.0, 1.0, 2.0}, y[] = {6.0, 4.0, 5.0}, d = 0;
  double p = asu_ks_2samp(x, 3, y, 3, &d);
  CHECK(d == 1.0, "D of disjoint samples is %g, expected 1", d);
  CHECK(fabs(p - 0.1) < 1e-12, "p of disjoint samples of 3 is %g, expected 2/20", p);
  /* Sizes 2 and 1: of the 3 paths, xxy and yxx reach D = 1. */
  double a[] = {1.0, 2.0}, b[] = {3.0};
  p = asu_ks_2samp(a, 2, b, 1, &d);
  CHECK(d == 1.0, "sizes 2 and 1: D %g, expected 1", d);
  CHECK(fabs(p - 2.0 / 3.0) < 1e-12, "sizes 2 and 1: p %g, expected 2/3", p);
  /* Identical samples: D = 0 and p = 1, ties included. */
  double t[] = {1.0, 1.0, 2.0};
  p = asu_ks_2samp(t, 3, t, 3, &d);
  CHECK(d == 0.0, "identical samples: D %g, expected 0", d);
  CHECK(p == 1.0, "identical samples: p %g, expected 1", p);
  CHECK(isnan(asu_ks_2samp(t, 0, t, 3, NULL)), "an empty sample must give NaN");
}

int main(void) {
  test_rouge_l();
  test_truth_ratio();
  test_harmonic_mean();
  test_fluency();
  test_ks();
  return TEST_SUMMARY();
}
