/* Shared helpers for the kernel tests: a CHECK macro that counts passes and failures, a seeded
   random fill, a normalised error measure, a device setup and buffer helpers. Each test program
   includes this header once and ends with `return kc_finish();`. */
#ifndef KERNEL_CHECK_H
#define KERNEL_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_ops.h"
#include "asu_vk.h"

static int kc_passed, kc_failed;

/* Counts one check; on failure prints the location and a printf-style message to stderr. */
#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (cond) {                                                       \
      kc_passed++;                                                    \
    } else {                                                          \
      kc_failed++;                                                    \
      fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__);   \
      fprintf(stderr, __VA_ARGS__);                                   \
      fputc('\n', stderr);                                            \
    }                                                                 \
  } while (0)

/* Deterministic pseudo-random numbers (splitmix64) so that a failure reproduces. */
static uint64_t kc_rng_state = 0x5eed5eed12345678ull;

static inline void kc_seed(uint64_t seed) { kc_rng_state = seed; }

static inline uint64_t kc_next_u64(void) {
  uint64_t z = (kc_rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Returns a uniform double in [lo, hi). */
static inline double kc_uniform(double lo, double hi) {
  return lo + (hi - lo) * (double)(kc_next_u64() >> 11) * (1.0 / 9007199254740992.0);
}

/* Returns a uniform integer in [0, n); n must be positive. */
static inline uint32_t kc_below(uint32_t n) { return (uint32_t)(kc_next_u64() % n); }

/* Fills x[0..n) with uniform floats in [lo, hi). */
static inline void kc_fill(float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = (float)kc_uniform(lo, hi);
}

/* Returns a malloc'd array of n floats, uniform in [lo, hi); exits when out of memory. */
static inline float *kc_random(size_t n, float lo, float hi) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  if (!x) {
    fprintf(stderr, "out of memory allocating %zu floats\n", n);
    exit(1);
  }
  kc_fill(x, n, lo, hi);
  return x;
}

/* Normalised error ||got - want|| / max(||want||, 1e-30) in the 2-norm. */
static inline double kc_error(const float *got, const double *want, size_t n) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)got[i] - want[i];
    diff += d * d;
    norm += want[i] * want[i];
  }
  if (isnan(diff)) return INFINITY;
  return sqrt(diff) / fmax(sqrt(norm), 1e-30);
}

/* kc_error for two double arrays (finite-difference checks). */
static inline double kc_error_d(const double *got, const double *want, size_t n) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < n; i++) {
    double d = got[i] - want[i];
    diff += d * d;
    norm += want[i] * want[i];
  }
  if (isnan(diff)) return INFINITY;
  return sqrt(diff) / fmax(sqrt(norm), 1e-30);
}

/* Creates the test device (ASU_DEVICE or the default choice); exits when there is none. */
static inline asu_device *kc_device(void) {
  asu_device *dev;
  asu_error err;
  if (asu_device_create(NULL, &dev, &err)) {
    fprintf(stderr, "no Vulkan device: %s\n", err.message);
    exit(1);
  }
  return dev;
}

/* Creates a buffer of `bytes` bytes and uploads `data` into it when data is not NULL.
   Exits on failure, because no later check would mean anything. */
static inline asu_buffer *kc_buffer(asu_device *dev, const void *data, size_t bytes) {
  asu_buffer *buf;
  asu_error err;
  if (asu_buffer_create(dev, bytes ? bytes : 4, &buf, &err)) {
    fprintf(stderr, "creating a buffer of %zu bytes failed: %s\n", bytes, err.message);
    exit(1);
  }
  if (data && bytes && asu_buffer_upload(buf, 0, data, bytes, &err)) {
    fprintf(stderr, "uploading %zu bytes failed: %s\n", bytes, err.message);
    exit(1);
  }
  return buf;
}

/* Downloads `bytes` bytes from the start of buf; exits on failure. */
static inline void kc_download(const asu_buffer *buf, void *dst, size_t bytes) {
  asu_error err;
  if (bytes && asu_buffer_download(buf, 0, dst, bytes, &err)) {
    fprintf(stderr, "downloading %zu bytes failed: %s\n", bytes, err.message);
    exit(1);
  }
}

/* Begins a command; exits on failure. */
static inline asu_cmd *kc_cmd(asu_device *dev) {
  asu_cmd *cmd;
  asu_error err;
  if (asu_cmd_begin(dev, &cmd, &err)) {
    fprintf(stderr, "beginning a command failed: %s\n", err.message);
    exit(1);
  }
  return cmd;
}

/* Submits cmd; returns its status and prints the error message on failure. */
static inline int kc_submit(asu_cmd *cmd, const char *label) {
  asu_error err;
  int rc = asu_cmd_submit(cmd, &err);
  if (rc) fprintf(stderr, "%s: submit failed: %s\n", label, err.message);
  return rc;
}

/* Prints the closing `N passed, M failed` line and returns the exit code. */
static inline int kc_finish(void) {
  uint64_t messages = asu_vk_validation_messages();
  CHECK(messages == 0, "the Vulkan validation layer reported %llu messages",
        (unsigned long long)messages);
  printf("%d passed, %d failed\n", kc_passed, kc_failed);
  return kc_failed ? 1 : 0;
}

#endif
