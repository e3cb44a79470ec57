/* asu-bench: how fast the kernels and the engine run on a Vulkan device, each row next to a
   reference measured in the same run (OpenBLAS on the same cores, or a device buffer copy). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asu_log.h"
#include "bench.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: asu-bench [options]\n"
          "  --json               print one JSON object on stdout instead of a table\n"
          "  --model PATH         the shared stories260K.gguf (default:\n"
          "                       $ASU_SHARED_DATA/models/stories260K.gguf)\n"
          "  --quick              small shapes, few repeats, and a 64-wide generated model in\n"
          "                       place of the 768-wide one (a smoke test)\n"
          "  --only WHAT          kernels or e2e\n"
          "  --filter TEXT        run only the kernel rows whose name and shape contain TEXT\n"
          "  --repeats N          timed samples per row after warm-up (default 5, quick 3)\n"
          "  --no-llama           skip the generated model\n"
          "  --prompt-tokens N    prefill length (default 128)\n"
          "  --decode-tokens N    decoded tokens timed after the prefill (default 32)\n"
          "  --train-examples N   examples in the training batch (default 4)\n"
          "  --train-tokens N     tokens per training example (default 64)\n"
          "  --device SEL         Vulkan device index or name substring (default: ASU_DEVICE or\n"
          "                       the first discrete GPU, integrated GPU, then CPU)\n"
          "Rows are logged on stderr as they are measured.\n");
}

static int parse_count(const char *flag, const char *text, uint32_t min, uint32_t max,
                       uint32_t *out) {
  char *end = NULL;
  unsigned long v = strtoul(text, &end, 10);
  if (!text[0] || *end || v < min || v > max) {
    fprintf(stderr, "asu-bench: %s must be a whole number in [%u, %u], got '%s'\n", flag, min,
            max, text);
    return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

static void set_defaults(bench_options *o, bool quick) {
  *o = (bench_options){.json = o->json, .quick = quick, .kernels = true, .e2e = true,
                       .llama = true, .model_path = o->model_path, .device = o->device,
                       .filter = o->filter};
  o->repeats = quick ? 3 : 5;
  o->sample_seconds = quick ? 0.02 : 0.25;
  o->prompt_tokens = quick ? 32 : 128;
  o->decode_tokens = quick ? 8 : 32;
  o->train_examples = quick ? 2 : 4;
  o->train_tokens = quick ? 32 : 64;
}

/* Applies one option with a value; returns -1 after printing what is wrong. */
static int apply_option(bench_options *o, const char *arg, const char *value) {
  if (!strcmp(arg, "--model")) o->model_path = value;
  else if (!strcmp(arg, "--device")) o->device = value;
  else if (!strcmp(arg, "--filter")) o->filter = value;
  else if (!strcmp(arg, "--only")) {
    if (strcmp(value, "kernels") && strcmp(value, "e2e")) {
      fprintf(stderr, "asu-bench: --only takes kernels or e2e, got '%s'\n", value);
      return -1;
    }
    o->kernels = !strcmp(value, "kernels");
    o->e2e = !o->kernels;
  } else if (!strcmp(arg, "--repeats")) return parse_count(arg, value, 1, 1000, &o->repeats);
  else if (!strcmp(arg, "--prompt-tokens")) return parse_count(arg, value, 1, 4096, &o->prompt_tokens);
  else if (!strcmp(arg, "--decode-tokens")) return parse_count(arg, value, 1, 4096, &o->decode_tokens);
  else if (!strcmp(arg, "--train-examples")) return parse_count(arg, value, 1, 1024, &o->train_examples);
  else if (!strcmp(arg, "--train-tokens")) return parse_count(arg, value, 2, 4096, &o->train_tokens);
  else {
    fprintf(stderr, "asu-bench: unknown option '%s'\n", arg);
    return -1;
  }
  return 0;
}

static bool takes_value(const char *arg) {
  static const char *const valued[] = {
      "--model", "--device", "--filter", "--only", "--repeats", "--prompt-tokens",
      "--decode-tokens", "--train-examples", "--train-tokens",
  };
  for (size_t i = 0; i < sizeof valued / sizeof *valued; i++)
    if (!strcmp(arg, valued[i])) return true;
  return false;
}

/* Returns 0, 1 for --help, or -1 on a bad command line. --quick is read first, since it sets
   the defaults that the other options override. */
static int parse_args(int argc, char **argv, bench_options *o) {
  bool quick = false;
  for (int i = 1; i < argc; i++) quick = quick || !strcmp(argv[i], "--quick");
  set_defaults(o, quick);
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return 1;
    if (!strcmp(arg, "--json")) o->json = true;
    else if (!strcmp(arg, "--quick")) continue;
    else if (!strcmp(arg, "--no-llama")) o->llama = false;
    else if (!takes_value(arg)) {
      fprintf(stderr, "asu-bench: unknown option '%s'\n", arg);
      return -1;
    } else if (i + 1 >= argc) {
      fprintf(stderr, "asu-bench: %s needs a value\n", arg);
      return -1;
    } else if (apply_option(o, arg, argv[++i])) {
      return -1;
    }
  }
  return 0;
}

/* The shared model: --model, else $ASU_SHARED_DATA/models/stories260K.gguf. */
static int find_model(bench_options *o, char *buf, size_t cap, asu_error *err) {
  const char *shared = getenv("ASU_SHARED_DATA");
  if (!o->model_path && !shared)
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "no model given: pass --model PATH to "
                         "stories260K.gguf, or set ASU_SHARED_DATA to the shared data folder");
  if (!o->model_path) {
    snprintf(buf, cap, "%s/models/stories260K.gguf", shared);
    o->model_path = buf;
  }
  if (access(o->model_path, R_OK) != 0)
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "model file %s cannot be read; pass --model "
                         "PATH to stories260K.gguf, or set ASU_SHARED_DATA to the folder that "
                         "holds models/stories260K.gguf", o->model_path);
  return ASU_OK;
}

static int run_kernels(const bench_options *o, bench_machine *machine, bench_results *r,
                       asu_error *err) {
  asu_device *dev = NULL;
  int rc = asu_device_create(o->device, &dev, err);
  if (rc) return rc;
  machine->device = *asu_device_get_info(dev);
  size_t before = r->count;
  if (o->kernels) {
    rc = bench_gemm(o, dev, r, err);
    if (!rc) rc = bench_memory(o, dev, r, err);
    if (!rc) rc = bench_attention(o, dev, r, err);
  }
  asu_device_destroy(dev);
  if (!rc && o->kernels && o->filter && r->count == before)
    rc = asu_error_set(err, ASU_ERR_NOT_FOUND, "no kernel row matches --filter '%s'; rows are "
                       "named like 'gemm 512x768x768 NT' or 'rmsnorm 512x768'", o->filter);
  return rc;
}

/* The generated model, written to a temporary folder as F32 then F16 and measured: 768 wide,
   or 64 wide with grouped-query attention for --quick. */
static int run_llama(const bench_options *o, bench_results *r, asu_error *err) {
  static const bench_llama_shape full = {.dim = 768, .n_layers = 12, .n_head = 12,
                                         .n_kv_head = 12, .ffn_dim = 2048, .vocab = 32000,
                                         .context_length = 2048};
  static const bench_llama_shape quick = {.dim = 64, .n_layers = 2, .n_head = 4, .n_kv_head = 2,
                                          .ffn_dim = 172, .vocab = 1024, .context_length = 256};
  const bench_llama_shape *shape = o->quick ? &quick : &full;
  const char *tmp = getenv("TMPDIR");
  char dir[512], path[600], label[32];
  snprintf(dir, sizeof dir, "%s/asu-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir))
    return asu_error_set(err, ASU_ERR_IO, "cannot create a temporary folder %s; set TMPDIR to a "
                         "writable folder with 1 GB free", dir);
  int rc = ASU_OK;
  const uint32_t types[2] = {ASU_TENSOR_F32, ASU_TENSOR_F16};
  for (int i = 0; i < 2 && !rc; i++) {
    snprintf(label, sizeof label, "llama%u-%s", shape->dim, i == 0 ? "f32" : "f16");
    snprintf(path, sizeof path, "%s/%s.gguf", dir, label);
    double start = bench_now();
    rc = bench_write_llama(path, shape, types[i], err);
    if (!rc) asu_log_info("wrote %s in %.1f s", path, bench_now() - start);
    /* The F16 copy has the F32 one's latency rows, over again and slower. */
    if (!rc) rc = bench_e2e(o, path, label, i == 0, r, err);
    unlink(path);
  }
  rmdir(dir);
  return rc;
}

static int run_all(bench_options *o, bench_machine *machine, bench_results *r, asu_error *err) {
  char model[1024];
  int rc = o->e2e ? find_model(o, model, sizeof model, err) : ASU_OK;
  if (!rc) rc = run_kernels(o, machine, r, err);
  if (!rc && o->e2e) rc = bench_e2e(o, o->model_path, "stories260K", true, r, err);
  if (!rc && o->e2e && o->llama) rc = run_llama(o, r, err);
  return rc;
}

/* Every row must hold a finite value; a NaN means the measurement is broken. */
static int check_results(const bench_results *r, asu_error *err) {
  if (r->out_of_memory)
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory storing the results");
  for (size_t i = 0; i < r->count; i++)
    if (!isfinite(r->items[i].value) || r->items[i].value <= 0)
      return asu_error_set(err, ASU_ERR_INTERNAL, "row %s %s measured %g", r->items[i].name,
                           r->items[i].shape, r->items[i].value);
  if (asu_vk_validation_messages() > 0)
    return asu_error_set(err, ASU_ERR_VULKAN, "the Vulkan validation layer reported %llu "
                         "messages (see the log above)",
                         (unsigned long long)asu_vk_validation_messages());
  return ASU_OK;
}

int main(int argc, char **argv) {
  bench_options o = {0};
  int parsed = parse_args(argc, argv, &o);
  if (parsed) {
    usage(parsed > 0 ? stdout : stderr);
    return parsed > 0 ? 0 : 2;
  }
  bench_machine machine = {.cpu_cores = sysconf(_SC_NPROCESSORS_ONLN)};
  openblas_set_num_threads((int)machine.cpu_cores);
  machine.blas_threads = openblas_get_num_threads();
  machine.blas_config = openblas_get_config();

  bench_results results = {0};
  asu_error err = {0};
  int rc = run_all(&o, &machine, &results, &err);
  if (!rc) rc = check_results(&results, &err);
  if (rc) fprintf(stderr, "asu-bench: %s\n", err.message);
  asu_error print_err = {0};
  if (o.json) {
    if (bench_print_json(&machine, &results, &print_err)) {
      fprintf(stderr, "asu-bench: %s\n", print_err.message);
      rc = rc ? rc : print_err.code;
    }
  } else if (results.count > 0) {
    bench_print_table(&machine, &results);
  }
  bench_results_free(&results);
  return rc ? 1 : 0;
}
