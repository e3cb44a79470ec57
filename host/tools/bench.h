/* asu-bench: kernel and end-to-end benchmarks, each row against a reference measured in the
   same run. The pieces: bench_main.c (options, device, order), bench_timing.c (medians of timed
   runs), bench_report.c (the table and the JSON object), bench_gemm.c, bench_memory.c and
   bench_attention.c (kernels), bench_llama.c (the generated 768-wide model) and bench_e2e.c
   (prefill, decode, training step, memory). */
#ifndef ASU_BENCH_H
#define ASU_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asu_engine.h"
#include "asu_error.h"
#include "asu_vk.h"
#include "train_internal.h"

typedef struct bench_options {
  bool json, quick, kernels, e2e, llama;
  uint32_t repeats;           /* timed samples per row, after warm-up */
  double sample_seconds;      /* each timed sample runs about this long */
  const char *model_path;     /* the shared stories260K.gguf */
  const char *device;         /* NULL: ASU_DEVICE or the default choice */
  const char *filter;         /* NULL, or run only kernel rows whose name and shape contain it */
  uint32_t prompt_tokens, decode_tokens, train_examples, train_tokens;
} bench_options;

/* ---- Results (bench_report.c). ---- */

/* One row: value in unit, and the reference measured in the same run (NaN when a row has
   none); ratio = value / reference_value. */
typedef struct bench_result {
  char name[32];
  char shape[80];
  char unit[16];
  char reference[40];
  double value, reference_value;
} bench_result;

typedef struct bench_results {
  bench_result *items;
  size_t count, cap;
  bool out_of_memory;  /* a row could not be stored */
} bench_results;

/* Appends a row (reference NULL when it has none) and logs it on stderr. */
void bench_add(bench_results *r, const char *name, const char *shape, double value,
              const char *unit, const char *reference, double reference_value);
void bench_results_free(bench_results *r);

/* The machine as the JSON object describes it. */
typedef struct bench_machine {
  asu_device_info device;
  long cpu_cores;
  int blas_threads;
  const char *blas_config;
} bench_machine;

void bench_print_table(const bench_machine *machine, const bench_results *r);
/* Prints the JSON object on stdout; fails when it cannot be built. */
int bench_print_json(const bench_machine *machine, const bench_results *r, asu_error *err);

/* ---- Timing (bench_timing.c). ---- */

double bench_now(void);
void bench_sleep(double seconds);

/* Runs n repeats of the thing measured and returns the seconds to count for them. */
/* Whether --filter selects the kernel row `name shape` (always, without a filter). */
bool bench_selected(const bench_options *o, const char *name, const char *shape);

typedef int (*bench_run_fn)(void *ctx, uint32_t n, double *seconds, asu_error *err);

/* Median seconds per repeat: one warm-up run, a calibration that picks the number of repeats
   per sample so that a sample lasts about o->sample_seconds, then o->repeats samples (3 when
   one repeat lasts over ten sample lengths; a calibration run of half a sample length or more
   counts as a sample). */
int bench_median(const bench_options *o, bench_run_fn run, void *ctx, double *seconds,
                 asu_error *err);

/* Records n repeats of an op into cmd. */
typedef int (*bench_record_fn)(void *ctx, asu_cmd *cmd, uint32_t n);

/* bench_median for ops on the device: each sample records n repeats into one command and
   times its submission (recording is not timed). */
int bench_median_cmd(const bench_options *o, asu_device *dev, bench_record_fn record, void *ctx,
                     double *seconds, asu_error *err);

/* Device buffers for benchmarks: floats uniform in [0, 1) or int32 uniform in [0, range). */
int bench_random_floats(asu_device *dev, size_t n, uint64_t seed, asu_buffer **out,
                        asu_error *err);
int bench_random_ints(asu_device *dev, size_t n, uint32_t range, uint64_t seed, asu_buffer **out,
                      asu_error *err);
/* Host floats uniform in [-scale, scale) (malloc'd), or NULL when memory runs out. */
float *bench_host_floats(size_t n, float scale, uint64_t seed);

/* Bytes per second of a device buffer copy, counting bytes read plus bytes written
   (2 * bytes per copy), measured on dev with copies of `bytes` bytes. */
int bench_copy_bandwidth(const bench_options *o, asu_device *dev, size_t bytes, double *per_second,
                         asu_error *err);

/* A matrix product C = op(A) op(B) in asu_op_gemm's row-major terms (op(A) is m x k). */
typedef struct bench_gemm_shape {
  uint32_t m, n, k;
  bool trans_a, trans_b;
} bench_gemm_shape;
/* Runs it once with OpenBLAS cblas_sgemm (alpha 1, beta 0) on packed host matrices. */
void bench_blas_sgemm(const bench_gemm_shape *s, const float *a, const float *b, float *c);

/* ---- Benchmarks. ---- */

int bench_gemm(const bench_options *o, asu_device *dev, bench_results *r, asu_error *err);
int bench_memory(const bench_options *o, asu_device *dev, bench_results *r, asu_error *err);
int bench_attention(const bench_options *o, asu_device *dev, bench_results *r, asu_error *err);

/* Writes the Llama-shaped model with random weights and a synthetic 32000-piece vocabulary as a
   GGUF file with F32 (type ASU_TENSOR_F32) or F16 tensors. */
typedef struct bench_llama_shape {
  uint32_t dim, n_layers, n_head, n_kv_head, ffn_dim, vocab, context_length;
} bench_llama_shape;
int bench_write_llama(const char *path, const bench_llama_shape *shape, uint32_t tensor_type,
                      asu_error *err);

/* Median seconds of a prefill of o->prompt_tokens tokens and of one decoded token after it
   (bench_decode.c). */
int bench_decode_times(const bench_options *o, asu_model *m, double *prefill_seconds,
                       double *token_seconds, asu_error *err);
/* Median seconds of the teacher pass and of one training step over the `rows` rows of
   o->train_examples examples of o->train_tokens tokens (bench_train.c). */
int bench_train_times(const bench_options *o, asu_model *m, uint32_t *rows,
                      double *teacher_seconds, double *step_seconds, asu_error *err);

/* n examples of `tokens` random ids after BOS, the second half of each its answer. */
int bench_train_examples(const asu_model *m, uint32_t n, uint32_t tokens, asu_token_set *set,
                         asu_error *err);
/* Rows of the time between generated tokens while an unlearning job trains on m, against the
   same generation alone (bench_serve.c). */
int bench_serve_latency(const bench_options *o, asu_model *m, const char *label,
                        bench_results *r, asu_error *err);

/* Adds the prefill, decode, teacher, training step and peak memory rows of one model file,
   and with serve_rows the generation latency rows. label is what the rows carry as their
   shape ("stories260K", "llama768-f32"). */
int bench_e2e(const bench_options *o, const char *path, const char *label, bool serve_rows,
              bench_results *r, asu_error *err);

#endif
