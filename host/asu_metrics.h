/* Unlearning metrics in the form TOFU reports them, computed from per-answer NLLs, generated
   text and generated token ids. Pure functions on the host: the model's part (answer NLLs,
   greedy generations) is measured elsewhere. */
#ifndef ASU_METRICS_H
#define ASU_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* ROUGE-L recall: the longest common subsequence of the two word sequences over the number of
   words in the reference, 0 for an empty reference. Words are maximal runs of ASCII letters and
   digits, compared case-insensitively; every other byte separates words. */
double asu_rouge_l_recall(const char *generated, const char *reference);

/* Truth ratio R of one question: the geometric mean of the perturbed answers' normalised
   probabilities over the paraphrased answer's. With normalised probability exp(-mean NLL per
   answer token), R = exp(paraphrased_nll - mean of perturbed_nll). */
double asu_truth_ratio(double paraphrased_nll, const double *perturbed_nll, size_t n);

/* Two-sided two-sample Kolmogorov-Smirnov test of x (n values) against y (m values). Sets
   *statistic to D = max |F_x - F_y| and returns the p-value P(D >= observed) under the null
   hypothesis: computed exactly, by counting lattice paths, when n * m <= 10^7, and from the
   limiting Kolmogorov distribution beyond that. Returns NaN when n or m is 0. */
double asu_ks_2samp(const double *x, size_t n, const double *y, size_t m, double *statistic);

/* Harmonic mean of n positive values; 0 when any of them is 0 or below. */
double asu_harmonic_mean(const double *v, size_t n);

/* Entropy of the token distribution of a generation divided by log(n), in [0, 1]: 1 when no
   token repeats, 0 for one token repeated. 0 for fewer than 2 tokens. */
double asu_token_entropy(const int32_t *tokens, size_t n);

/* The share of the words of text (as asu_rouge_l_recall splits them, lowercased) for which
   known(word, length, user) is nonzero; 0 for a text without words. */
double asu_vocabulary_share(const char *text, int (*known)(const char *word, size_t len,
                                                            void *user),
                            void *user);

/* Length of the longest run of one token repeated back to back. */
size_t asu_longest_run(const int32_t *tokens, size_t n);

#endif
