/* Vulkan runtime: device, buffers, transfers, commands and a first kernel against C. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_ops.h"
#include "asu_vk.h"
#include "vk_internal.h"

static int passed, failed;

#define CHECK(cond, ...)                                       \
  do {                                                         \
    if (cond) {                                                \
      passed++;                                                \
    } else {                                                   \
      failed++;                                                \
      fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                            \
      fputc('\n', stderr);                                     \
    }                                                          \
  } while (0)

static void test_transfers(asu_device *dev) {
  asu_error err;
  const size_t n = 1027;
  float *src = malloc(n * sizeof *src), *dst = calloc(n, sizeof *dst);
  for (size_t i = 0; i < n; i++) src[i] = (float)i * 0.5f - 7.0f;
  asu_buffer *buf;
  CHECK(asu_buffer_create(dev, n * sizeof(float), &buf, &err) == ASU_OK, "create: %s", err.message);
  CHECK(asu_buffer_upload(buf, 0, src, n * sizeof(float), &err) == ASU_OK, "upload: %s", err.message);
  CHECK(asu_buffer_download(buf, 0, dst, n * sizeof(float), &err) == ASU_OK, "download: %s", err.message);
  CHECK(memcmp(src, dst, n * sizeof(float)) == 0, "round trip differs");

  int rc = asu_buffer_upload(buf, 8, src, n * sizeof(float), &err);
  CHECK(rc == ASU_ERR_INVALID, "upload past the end returned %d", rc);
  CHECK(strstr(err.message, "outside a buffer") != NULL, "message: %s", err.message);

  asu_cmd *cmd;
  CHECK(asu_cmd_begin(dev, &cmd, &err) == ASU_OK, "begin: %s", err.message);
  asu_cmd_fill(cmd, buf, 16, 32, 0);
  CHECK(asu_cmd_submit(cmd, &err) == ASU_OK, "submit fill: %s", err.message);
  asu_buffer_download(buf, 0, dst, n * sizeof(float), &err);
  CHECK(dst[3] == src[3], "fill changed word 3, before its range: %g", dst[3]);
  CHECK(dst[4] == 0.0f, "fill did not zero word 4, the first of its range: %g", dst[4]);
  CHECK(dst[11] == 0.0f, "fill did not zero word 11, the last of its range: %g", dst[11]);
  CHECK(dst[12] == src[12], "fill changed word 12, after its range: %g", dst[12]);

  asu_cmd_fill(cmd, buf, 2, 4, 0);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "misaligned fill returned %d", rc);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(buf);
  free(src);
  free(dst);
}

static void test_axpy(asu_device *dev) {
  const uint32_t sizes[] = {1, 7, 33, 64, 65, 257, 100003};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    uint32_t n = sizes[s];
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *out = malloc(n * sizeof *out);
    for (uint32_t i = 0; i < n; i++) {
      x[i] = (float)rand() / RAND_MAX - 0.5f;
      y[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    asu_error err;
    asu_buffer *bx, *by;
    asu_buffer_create(dev, n * sizeof(float), &bx, &err);
    asu_buffer_create(dev, n * sizeof(float), &by, &err);
    asu_buffer_upload(bx, 0, x, n * sizeof(float), &err);
    asu_buffer_upload(by, 0, y, n * sizeof(float), &err);
    asu_cmd *cmd;
    asu_cmd_begin(dev, &cmd, &err);
    asu_op_axpy(cmd, -1.5f, bx, by, n);
    int rc = asu_cmd_submit(cmd, &err);
    CHECK(rc == ASU_OK, "axpy n=%u: %s", n, err.message);
    asu_buffer_download(by, 0, out, n * sizeof(float), &err);
    double worst = 0;
    for (uint32_t i = 0; i < n; i++) worst = fmax(worst, fabs(out[i] - (y[i] - 1.5 * x[i])));
    CHECK(worst < 1e-6, "axpy n=%u: max error %g", n, worst);

    rc = asu_op_axpy(cmd, 1.0f, bx, by, n + 1);
    CHECK(rc == ASU_ERR_INVALID, "axpy past the buffer end n=%u returned %d", n, rc);
    asu_cmd_destroy(cmd);
    asu_buffer_destroy(bx);
    asu_buffer_destroy(by);
    free(x);
    free(y);
    free(out);
  }
}

/* The pipeline cache file is written at exit and read at the next start; a corrupt file is
   dropped, and kernels still work. */
static void test_pipeline_cache(void) {
  char dir[] = "/tmp/asu-test-cache.XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
  setenv("ASU_CACHE_DIR", dir, 1);
  for (int round = 0; round < 3; round++) {
    asu_device *dev = NULL;
    asu_error err;
    int rc = asu_device_create(NULL, &dev, &err);
    CHECK(rc == ASU_OK, "round %d: device: %s", round, err.message);
    if (rc) break;
    test_axpy(dev);
    asu_device_destroy(dev);
    char command[256];
    snprintf(command, sizeof command, "test -s %s/pipelines-*.bin", dir);
    CHECK(system(command) == 0, "round %d: no cache file in %s", round, dir);
    if (round == 1) {
      /* Overwrite the file with bytes no driver accepts as a cache. */
      snprintf(command, sizeof command, "for f in %s/pipelines-*.bin; do head -c 100 /dev/urandom > $f; done", dir);
      CHECK(system(command) == 0, "corrupting the cache file failed");
    }
  }
  char command[256];
  snprintf(command, sizeof command, "rm -rf %s", dir);
  CHECK(system(command) == 0, "cleanup failed");
  unsetenv("ASU_CACHE_DIR");
}

static void test_selector(void) {
  asu_device *dev = NULL;
  asu_error err;
  int rc = asu_device_create("no such device name", &dev, &err);
  CHECK(rc == ASU_ERR_NOT_FOUND, "unknown selector returned %d", rc);
  CHECK(strstr(err.message, "no such device name") != NULL, "message: %s", err.message);
}

/* Fills buffer i with words that name it and the word's place. */
static void fill_pattern(asu_buffer *b, uint32_t i, size_t words) {
  uint32_t *w = malloc(words * 4);
  for (size_t k = 0; k < words; k++) w[k] = i * 1000003u + (uint32_t)k;
  asu_error err;
  asu_buffer_upload(b, 0, w, words * 4, &err);
  free(w);
}

static size_t wrong_words(asu_buffer *b, uint32_t i, size_t words) {
  uint32_t *w = malloc(words * 4);
  asu_error err;
  asu_buffer_download(b, 0, w, words * 4, &err);
  size_t wrong = 0;
  for (size_t k = 0; k < words; k++) wrong += w[k] != i * 1000003u + (uint32_t)k;
  free(w);
  return wrong;
}

/* Small buffers share memory blocks, and many of them take one block. None overlaps another:
   each keeps its own pattern through frees and through new buffers in the freed ranges. A
   large buffer takes its own allocation, and the last free releases the block. */
static void test_shared_blocks(asu_device *dev) {
  enum { N = 300 };
  asu_buffer *bufs[N] = {0};
  size_t words[N];
  asu_error err;
  for (uint32_t i = 0; i < N; i++) {
    words[i] = 1 + (i * 7919u) % 20000;
    CHECK(asu_buffer_create(dev, words[i] * 4, &bufs[i], &err) == ASU_OK, "buffer %u: %s", i,
          err.message);
    fill_pattern(bufs[i], i, words[i]);
  }
  CHECK(asu_pool_block_count(dev) == 1, "%u buffers of at most 80 KB took %u blocks", N,
        asu_pool_block_count(dev));
  for (uint32_t i = 0; i < N; i += 2) {
    asu_buffer_destroy(bufs[i]);
    words[i] = 1 + (i * 104729u) % 30000;
    CHECK(asu_buffer_create(dev, words[i] * 4, &bufs[i], &err) == ASU_OK, "buffer %u again: %s",
          i, err.message);
    fill_pattern(bufs[i], i, words[i]);
  }
  size_t wrong = 0;
  for (uint32_t i = 0; i < N; i++) wrong += wrong_words(bufs[i], i, words[i]);
  CHECK(wrong == 0, "%zu words changed in buffers sharing blocks", wrong);

  uint32_t blocks = asu_pool_block_count(dev);
  asu_buffer *big = NULL;
  CHECK(asu_buffer_create(dev, 40u << 20, &big, &err) == ASU_OK, "40 MiB buffer: %s",
        err.message);
  CHECK(asu_pool_block_count(dev) == blocks, "a 40 MiB buffer went into a shared block");
  asu_buffer_destroy(big);
  for (uint32_t i = 0; i < N; i++) asu_buffer_destroy(bufs[i]);
  CHECK(asu_pool_block_count(dev) == 0, "%u blocks remain after every buffer is gone",
        asu_pool_block_count(dev));
}

int main(void) {
  asu_device *dev;
  asu_error err;
  if (asu_device_create(NULL, &dev, &err)) {
    fprintf(stderr, "no device: %s\n", err.message);
    return 1;
  }
  test_transfers(dev);
  test_shared_blocks(dev);
  test_axpy(dev);
  test_selector();
  test_pipeline_cache();
  uint64_t current, peak;
  asu_device_memory_usage(dev, &current, &peak);
  CHECK(current == 0, "%llu bytes still allocated", (unsigned long long)current);
  CHECK(peak > 0, "peak usage not recorded");
  asu_device_destroy(dev);
  CHECK(asu_vk_validation_messages() == 0, "the Vulkan validation layer reported %llu messages",
        (unsigned long long)asu_vk_validation_messages());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
