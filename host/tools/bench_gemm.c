/* Matrix products: asu_op_gemm against OpenBLAS cblas_sgemm on the same shapes, transposes and
   cores, for the layouts of the shared model and of a 768-wide model. */
#include <stdio.h>
#include <stdlib.h>

#include "asu_ops.h"
#include "bench.h"

typedef struct gemm_case {
  bench_gemm_shape s;
  const char *use;
} gemm_case;

/* T = 512 rows. NT is the forward layout (y = x W^T), NN the backward product for the inputs
   (dx = dy W) and TN the one for the weights (dW = dy^T x). */
static const gemm_case full_cases[] = {
    {{512, 64, 64, false, true}, "260K q/o"},
    {{512, 172, 64, false, true}, "260K ffn up"},
    {{512, 512, 64, false, true}, "260K logits"},
    {{512, 64, 172, false, false}, "260K ffn down dx"},
    {{172, 64, 512, true, false}, "260K ffn up dW"},
    {{512, 768, 768, false, true}, "768 q/o"},
    {{512, 2048, 768, false, true}, "768 ffn up"},
    {{512, 768, 2048, false, true}, "768 ffn down"},
    {{512, 3072, 768, false, true}, "768 ffn 3072"},
    {{512, 32000, 768, false, true}, "768 logits"},
    {{512, 768, 768, false, false}, "768 q/o dx"},
    {{512, 768, 2048, false, false}, "768 ffn up dx"},
    {{512, 768, 32000, false, false}, "768 logits dx"},
    {{768, 768, 512, true, false}, "768 q/o dW"},
    {{2048, 768, 512, true, false}, "768 ffn up dW"},
    {{512, 8, 768, false, true}, "LoRA A x"},
    {{512, 768, 8, false, true}, "LoRA B t"},
    {{8, 768, 512, true, false}, "LoRA dA"},
};

static const gemm_case quick_cases[] = {
    {{64, 64, 64, false, true}, "260K q/o"},
    {{64, 512, 64, false, true}, "260K logits"},
    {{64, 64, 172, false, false}, "260K ffn down dx"},
    {{172, 64, 64, true, false}, "260K ffn up dW"},
};

typedef struct gemm_run {
  bench_gemm_shape s;
  asu_buffer *a, *b, *c;
  float *ha, *hb, *hc;
} gemm_run;

static int record_gemm(void *ctx, asu_cmd *cmd, uint32_t n) {
  gemm_run *g = ctx;
  const bench_gemm_shape *s = &g->s;
  asu_gemm_args args = {
      .trans_a = s->trans_a, .trans_b = s->trans_b, .m = s->m, .n = s->n, .k = s->k,
      .alpha = 1.0f, .beta = 0.0f,
      .a = g->a, .lda = s->trans_a ? s->m : s->k,
      .b = g->b, .ldb = s->trans_b ? s->k : s->n,
      .c = g->c, .ldc = s->n,
  };
  for (uint32_t i = 0; i < n; i++) {
    int rc = asu_op_gemm(cmd, &args);
    if (rc) return rc;
  }
  return ASU_OK;
}

static int run_blas(void *ctx, uint32_t n, double *seconds, asu_error *err) {
  (void)err;
  gemm_run *g = ctx;
  double start = bench_now();
  for (uint32_t i = 0; i < n; i++) bench_blas_sgemm(&g->s, g->ha, g->hb, g->hc);
  *seconds = bench_now() - start;
  return ASU_OK;
}

static void gemm_run_free(gemm_run *g) {
  asu_buffer_destroy(g->a);
  asu_buffer_destroy(g->b);
  asu_buffer_destroy(g->c);
  free(g->ha);
  free(g->hb);
  free(g->hc);
}

static int bench_case(const bench_options *o, asu_device *dev, const gemm_case *c,
                      bench_results *r, asu_error *err) {
  const bench_gemm_shape *s = &c->s;
  char shape[80];
  snprintf(shape, sizeof shape, "%ux%ux%u %c%c %s", s->m, s->n, s->k, s->trans_a ? 'T' : 'N',
           s->trans_b ? 'T' : 'N', c->use);
  if (!bench_selected(o, "gemm", shape)) return ASU_OK;
  size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
  gemm_run g = {.s = *s};
  g.ha = bench_host_floats(na, 1.0f, 1);
  g.hb = bench_host_floats(nb, 1.0f, 2);
  g.hc = bench_host_floats(nc, 1.0f, 3);
  double vk_seconds = 0, blas_seconds = 0;
  int rc = g.ha && g.hb && g.hc ? ASU_OK : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  if (!rc) rc = bench_random_floats(dev, na, 4, &g.a, err);
  if (!rc) rc = bench_random_floats(dev, nb, 5, &g.b, err);
  if (!rc) rc = asu_buffer_create(dev, nc * sizeof(float), &g.c, err);
  if (!rc) rc = bench_median_cmd(o, dev, record_gemm, &g, &vk_seconds, err);
  if (!rc) rc = bench_median(o, run_blas, &g, &blas_seconds, err);
  gemm_run_free(&g);
  if (rc) return asu_error_wrap(err, "gemm %s: ", shape);
  double flops = 2.0 * s->m * s->n * s->k;
  bench_add(r, "gemm", shape, flops / vk_seconds * 1e-9, "GFLOP/s", "openblas_sgemm",
            flops / blas_seconds * 1e-9);
  return ASU_OK;
}

int bench_gemm(const bench_options *o, asu_device *dev, bench_results *r, asu_error *err) {
  const gemm_case *cases = o->quick ? quick_cases : full_cases;
  size_t n = o->quick ? sizeof quick_cases / sizeof *quick_cases
                      : sizeof full_cases / sizeof *full_cases;
  for (size_t i = 0; i < n; i++) {
    int rc = bench_case(o, dev, &cases[i], r, err);
    if (rc) return rc;
  }
  return ASU_OK;
}
