/* asu_op_gemm against a double-precision C reference: every transpose combination, alpha and
   beta, element offsets, padded leading dimensions, edge tiles and the model's shapes, for both
   kernel variants (forced through ASU_GEMM_VARIANT), and the texel variant wherever offsets and
   leading dimensions are multiples of 4. */
#include "gguf_internal.h"
#include "kernel_check.h"

typedef struct gemm_case {
  uint32_t m, n, k;
  uint32_t pad_a, pad_b, pad_c;  /* extra elements per stored row beyond its width */
  uint32_t a_offset, b_offset, c_offset;
  float alpha, beta;
} gemm_case;

static const gemm_case cases[] = {
    {1, 1, 1, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    {1, 7, 33, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    {7, 1, 257, 2, 0, 1, 0, 0, 0, -0.5f, 0.0f},
    {33, 257, 7, 0, 3, 0, 5, 0, 11, 1.0f, 1.0f},
    {257, 33, 1, 1, 1, 1, 0, 7, 0, 2.0f, -0.75f},
    {7, 33, 257, 3, 1, 5, 2, 3, 1, 0.5f, -1.25f},
    /* Register tiles are 8 x 64 on an 8-wide subgroup (fewer rows when m < 8), texel tiles
       32 x 64 or 32 x 128, shared tiles 64 x 64 with K slices of 16. */
    {8, 64, 16, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    {9, 65, 17, 0, 0, 0, 0, 0, 0, 1.0f, 1.0f},
    {3, 63, 15, 1, 1, 1, 1, 1, 1, 1.0f, 0.5f},
    {17, 129, 5, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    /* With trans_b and not trans_a these read K 4 at a time: lda and ldb are multiples of 4, so
       are the offsets, and K leaves a tail of 2 or 1. */
    {9, 65, 66, 2, 2, 0, 4, 8, 1, 1.0f, 0.0f},
    {33, 17, 13, 3, 3, 0, 0, 4, 0, -1.0f, 2.0f},
    {64, 64, 16, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    {65, 65, 17, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    {129, 97, 33, 4, 0, 2, 0, 0, 3, 1.5f, 0.25f},
    /* The shared model: dim 64, q/k/v width 64 + 2 * 32, ffn 172, vocab 512, 300 rows. */
    {300, 128, 64, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    {300, 172, 64, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
    {300, 64, 172, 0, 0, 0, 0, 0, 0, 1.0f, 1.0f},
    {300, 64, 64, 0, 0, 0, 64, 0, 64, 1.0f, 1.0f},
    /* k = 0 leaves beta * C. */
    {5, 6, 0, 0, 0, 0, 0, 0, 0, 1.0f, 0.5f},
    {5, 6, 0, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f},
};

/* In these cases m, n and k are equal modulo 4, and the padding makes every leading dimension a
   multiple of 4 in all four transposes, so the texel variant runs them. They cover edge tiles
   (one row or column past a texel tile), K tails of 1 to 3, one row (decoding) and the backward
   layouts at an odd size. */
static const gemm_case aligned_cases[] = {
    {12, 68, 20, 0, 0, 0, 4, 8, 3, 1.0f, 0.0f},
    {9, 65, 33, 3, 3, 2, 4, 0, 5, 1.0f, 0.5f},
    {3, 7, 11, 1, 1, 0, 0, 0, 0, -1.0f, 0.0f},
    {17, 65, 9, 3, 3, 3, 0, 0, 0, 1.0f, 0.0f},
    {1, 257, 65, 3, 3, 0, 0, 0, 0, 1.0f, 0.0f},
    {130, 70, 258, 2, 2, 1, 8, 4, 0, -1.0f, 0.5f},
    {33, 129, 41, 3, 3, 0, 0, 0, 0, 1.0f, 0.0f},
};

/* The logits case: 8000 rows of width 64 against a 512-token vocabulary. */
static const gemm_case logits_case = {8000, 512, 64, 0, 0, 0, 0, 0, 0, 1.0f, 0.0f};

/* Products of over 5e8 FLOPs, which a command that submits in slices runs as bands of 64-row
   (or 64-column) multiples: 2300 rows make bands of 1728 and 572, and 2300 columns the same. */
static const gemm_case banded_cases[] = {
    {2300, 130, 1100, 4, 4, 1, 4, 8, 3, 1.0f, 0.5f},
    {130, 2300, 1100, 0, 4, 3, 8, 4, 0, -1.0f, 0.0f},
};

/* Dispatches per submission of the commands that check_gemm_case records into (0: one). */
static uint32_t slice_dispatches;

typedef struct gemm_layout {
  uint32_t a_rows, a_cols, lda, b_rows, b_cols, ldb, ldc;
  size_t a_len, b_len, c_len;  /* buffer lengths in floats, offsets and padding included */
} gemm_layout;

static gemm_layout layout_of(const gemm_case *g, bool trans_a, bool trans_b) {
  gemm_layout l;
  l.a_rows = trans_a ? g->k : g->m;
  l.a_cols = trans_a ? g->m : g->k;
  l.b_rows = trans_b ? g->n : g->k;
  l.b_cols = trans_b ? g->k : g->n;
  l.lda = l.a_cols + g->pad_a;
  l.ldb = l.b_cols + g->pad_b;
  l.ldc = g->n + g->pad_c;
  /* A trailing pad row keeps the last row's padding inside the buffer too. */
  l.a_len = g->a_offset + (size_t)l.a_rows * l.lda + 1;
  l.b_len = g->b_offset + (size_t)l.b_rows * l.ldb + 1;
  l.c_len = g->c_offset + (size_t)g->m * l.ldc + 1;
  return l;
}

/* C = alpha * op(A) * op(B) + beta * C in double on the matrix part of c; beta == 0 ignores C. */
static void reference_gemm(const gemm_case *g, bool trans_a, bool trans_b, const gemm_layout *l,
                           const float *a, const float *b, const float *c, double *out) {
  for (size_t i = 0; i < l->c_len; i++) out[i] = c[i];
  for (uint32_t i = 0; i < g->m; i++) {
    for (uint32_t j = 0; j < g->n; j++) {
      double sum = 0;
      for (uint32_t p = 0; p < g->k; p++) {
        double a_ip = a[g->a_offset + (trans_a ? (size_t)p * l->lda + i : (size_t)i * l->lda + p)];
        double b_pj = b[g->b_offset + (trans_b ? (size_t)j * l->ldb + p : (size_t)p * l->ldb + j)];
        sum += a_ip * b_pj;
      }
      size_t index = g->c_offset + (size_t)i * l->ldc + j;
      out[index] = g->alpha * sum + (g->beta != 0.0f ? g->beta * (double)c[index] : 0.0);
    }
  }
}

static bool is_in_matrix(const gemm_case *g, const gemm_layout *l, size_t index) {
  if (index < g->c_offset) return false;
  size_t rel = index - g->c_offset;
  return rel / l->ldc < g->m && rel % l->ldc < g->n;
}

/* Runs one case on the device for each variant in `variants` and checks it. */
static void check_gemm_case(asu_device *dev, const gemm_case *g, bool trans_a, bool trans_b,
                            const char *const *variants, size_t n_variants) {
  gemm_layout l = layout_of(g, trans_a, trans_b);
  float *a = kc_random(l.a_len, -1.0f, 1.0f);
  float *b = kc_random(l.b_len, -1.0f, 1.0f);
  float *c = kc_random(l.c_len, -1.0f, 1.0f);
  /* beta == 0 must not read C, so C starts as NaN: any read would show in the result. */
  if (g->beta == 0.0f)
    for (size_t i = 0; i < l.c_len; i++) c[i] = NAN;
  double *want = malloc(l.c_len * sizeof *want);
  float *got = malloc(l.c_len * sizeof *got);
  reference_gemm(g, trans_a, trans_b, &l, a, b, c, want);

  asu_buffer *ba = kc_buffer(dev, a, l.a_len * sizeof(float));
  asu_buffer *bb = kc_buffer(dev, b, l.b_len * sizeof(float));
  asu_buffer *bc = kc_buffer(dev, NULL, l.c_len * sizeof(float));
  asu_cmd *cmd = kc_cmd(dev);
  asu_cmd_set_flush_every(cmd, slice_dispatches);
  for (size_t v = 0; v < n_variants; v++) {
    char label[200];
    snprintf(label, sizeof label,
             "gemm m=%u n=%u k=%u trans_a=%d trans_b=%d lda=%u ldb=%u ldc=%u offsets=%u,%u,%u "
             "alpha=%g beta=%g variant=%s slices=%u",
             g->m, g->n, g->k, trans_a, trans_b, l.lda, l.ldb, l.ldc, g->a_offset, g->b_offset,
             g->c_offset, g->alpha, g->beta, variants[v], slice_dispatches);
    setenv("ASU_GEMM_VARIANT", variants[v], 1);
    asu_error err;
    asu_buffer_upload(bc, 0, c, l.c_len * sizeof(float), &err);
    asu_gemm_args args = {
        .trans_a = trans_a, .trans_b = trans_b, .m = g->m, .n = g->n, .k = g->k,
        .alpha = g->alpha, .beta = g->beta,
        .a = ba, .lda = l.lda, .a_offset = g->a_offset,
        .b = bb, .ldb = l.ldb, .b_offset = g->b_offset,
        .c = bc, .ldc = l.ldc, .c_offset = g->c_offset,
    };
    int rc = asu_op_gemm(cmd, &args);
    CHECK(rc == ASU_OK, "%s: asu_op_gemm returned %d", label, rc);
    rc = kc_submit(cmd, label);
    CHECK(rc == ASU_OK, "%s: submit returned %d", label, rc);
    kc_download(bc, got, l.c_len * sizeof(float));

    /* Elements of C's buffer outside the matrix keep their bits (NaN included). */
    size_t touched = 0;
    double *want_matrix = malloc(((size_t)g->m * g->n + 1) * sizeof *want_matrix);
    float *got_matrix = malloc(((size_t)g->m * g->n + 1) * sizeof *got_matrix);
    size_t count = 0;
    for (size_t i = 0; i < l.c_len; i++) {
      if (is_in_matrix(g, &l, i)) {
        want_matrix[count] = want[i];
        got_matrix[count++] = got[i];
      } else if (memcmp(&got[i], &c[i], sizeof(float)) != 0) {
        touched++;
      }
    }
    double error = kc_error(got_matrix, want_matrix, count);
    CHECK(error < 1e-5, "%s: error %.3g", label, error);
    CHECK(touched == 0, "%s: %zu elements outside the matrix changed", label, touched);
    free(want_matrix);
    free(got_matrix);
  }
  unsetenv("ASU_GEMM_VARIANT");
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(ba);
  asu_buffer_destroy(bb);
  asu_buffer_destroy(bc);
  free(a);
  free(b);
  free(c);
  free(want);
  free(got);
}

static const char *const all_variants[] = {"register", "tiled", "texel"};

/* Every variant whose requirements the case meets: the texel variant reads rows 4 floats at a
   time, so it needs offsets and leading dimensions in multiples of 4. */
static void check_all_variants(asu_device *dev, const gemm_case *g, bool trans_a, bool trans_b) {
  gemm_layout l = layout_of(g, trans_a, trans_b);
  bool aligned = g->a_offset % 4 == 0 && l.lda % 4 == 0 && g->b_offset % 4 == 0 && l.ldb % 4 == 0;
  check_gemm_case(dev, g, trans_a, trans_b, all_variants, aligned ? 3 : 2);
}

static void test_gemm_cases(asu_device *dev) {
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    for (int t = 0; t < 4; t++) check_all_variants(dev, &cases[i], t & 1, t & 2);
  for (size_t i = 0; i < sizeof aligned_cases / sizeof *aligned_cases; i++)
    for (int t = 0; t < 4; t++) check_all_variants(dev, &aligned_cases[i], t & 1, t & 2);
}

static void test_gemm_logits(asu_device *dev) {
  for (int t = 0; t < 4; t++) check_all_variants(dev, &logits_case, t & 1, t & 2);
}

/* Large products recorded into a command that submits after every dispatch, so each band is
   its own submission. */
static void test_gemm_bands(asu_device *dev) {
  slice_dispatches = 1;
  for (size_t i = 0; i < sizeof banded_cases / sizeof *banded_cases; i++)
    for (int t = 0; t < 4; t++) check_all_variants(dev, &banded_cases[i], t & 1, t & 2);
  slice_dispatches = 0;
}

/* The variant the wrapper picks by itself on this device. */
static void test_gemm_default_variant(asu_device *dev) {
  static const char *const default_variant[] = {""};
  check_gemm_case(dev, &cases[5], false, true, default_variant, 1);
  check_gemm_case(dev, &cases[13], true, false, default_variant, 1);
  check_gemm_case(dev, &aligned_cases[1], true, true, default_variant, 1);
}

/* Uploads x as F16 into a new F16 buffer and rounds x to the values stored. */
static asu_buffer *f16_buffer(asu_device *dev, float *x, size_t n) {
  uint16_t *halves = malloc(n * sizeof *halves);
  for (size_t i = 0; i < n; i++) {
    halves[i] = asu_f32_to_f16(x[i]);
    x[i] = asu_f16_to_f32(halves[i]);
  }
  asu_buffer *buf = NULL;
  asu_error err;
  int rc = asu_buffer_create_elements(dev, n * sizeof *halves, ASU_ELEMENT_F16, &buf, &err);
  if (!rc) rc = asu_buffer_upload(buf, 0, halves, n * sizeof *halves, &err);
  CHECK(rc == ASU_OK, "F16 buffer of %zu elements: %s", n, err.message);
  free(halves);
  return buf;
}

/* F16 weights: B (and for one case A too) contains F16 elements, which the texel variant widens
   to F32 and accumulates in F32. The reference uses the same rounded values. */
static void check_f16_case(asu_device *dev, const gemm_case *g, bool trans_a, bool trans_b,
                           bool a_f16) {
  gemm_layout l = layout_of(g, trans_a, trans_b);
  float *a = kc_random(l.a_len, -1.0f, 1.0f), *b = kc_random(l.b_len, -1.0f, 1.0f);
  float *c = kc_random(l.c_len, -1.0f, 1.0f);
  asu_buffer *ba = a_f16 ? f16_buffer(dev, a, l.a_len) : kc_buffer(dev, a, l.a_len * 4);
  asu_buffer *bb = f16_buffer(dev, b, l.b_len), *bc = kc_buffer(dev, c, l.c_len * 4);
  double *want = malloc(l.c_len * sizeof *want);
  float *got = malloc(l.c_len * sizeof *got);
  reference_gemm(g, trans_a, trans_b, &l, a, b, c, want);

  asu_cmd *cmd = kc_cmd(dev);
  asu_gemm_args args = {
      .trans_a = trans_a, .trans_b = trans_b, .m = g->m, .n = g->n, .k = g->k,
      .alpha = g->alpha, .beta = g->beta, .a = ba, .lda = l.lda, .a_offset = g->a_offset,
      .b = bb, .ldb = l.ldb, .b_offset = g->b_offset, .c = bc, .ldc = l.ldc,
      .c_offset = g->c_offset};
  char label[160];
  snprintf(label, sizeof label, "F16 gemm m=%u n=%u k=%u trans_a=%d trans_b=%d A %s", g->m, g->n,
           g->k, trans_a, trans_b, a_f16 ? "F16" : "F32");
  CHECK(asu_op_gemm(cmd, &args) == ASU_OK, "%s: asu_op_gemm failed", label);
  CHECK(kc_submit(cmd, label) == ASU_OK, "%s: submit failed", label);
  kc_download(bc, got, l.c_len * sizeof(float));
  size_t count = 0;
  for (size_t i = 0; i < l.c_len; i++) {
    if (!is_in_matrix(g, &l, i)) continue;
    want[count] = want[i];
    got[count++] = got[i];
  }
  double error = kc_error(got, want, count);
  CHECK(error < 1e-5, "%s: error %.3g", label, error);
  asu_cmd_destroy(cmd);
  asu_buffer_destroy(ba);
  asu_buffer_destroy(bb);
  asu_buffer_destroy(bc);
  free(a), free(b), free(c), free(want), free(got);
}

static void test_gemm_f16(asu_device *dev) {
  for (size_t i = 0; i < sizeof aligned_cases / sizeof *aligned_cases; i++)
    for (int t = 0; t < 4; t++) check_f16_case(dev, &aligned_cases[i], t & 1, t & 2, false);
  check_f16_case(dev, &aligned_cases[1], false, true, true);
}

/* Sizes that do not fit are rejected with a message naming the op. */
static void test_gemm_invalid(asu_device *dev) {
  asu_buffer *small = kc_buffer(dev, NULL, 16 * sizeof(float));
  asu_buffer *big = kc_buffer(dev, NULL, 64 * sizeof(float));
  asu_cmd *cmd = kc_cmd(dev);
  asu_gemm_args args = {.m = 4, .n = 4, .k = 4, .alpha = 1, .a = small, .lda = 4,
                        .b = small, .ldb = 4, .c = small, .ldc = 4};

  asu_gemm_args bad = args;
  bad.a_offset = 1;
  int rc = asu_op_gemm(cmd, &bad);
  asu_error err;
  CHECK(rc == ASU_ERR_INVALID, "gemm with A one element past its buffer returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "gemm past the end of A: submit returned %d", rc);
  CHECK(strstr(err.message, "gemm") && strstr(err.message, "A needs"),
        "gemm past the end of A: message '%s' names no op and buffer", err.message);

  bad = args;
  bad.lda = 3;
  bad.a = big;
  rc = asu_op_gemm(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "gemm with lda 3 < k 4 returned %d", rc);
  asu_cmd_submit(cmd, &err);

  bad = args;
  bad.trans_b = true;
  bad.ldb = 5;
  rc = asu_op_gemm(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "gemm with B of 4 rows of stride 5 in 16 floats returned %d", rc);
  asu_cmd_submit(cmd, &err);

  bad = args;
  bad.c = NULL;
  rc = asu_op_gemm(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "gemm without C returned %d", rc);
  asu_cmd_submit(cmd, &err);

  /* A forced texel variant rejects a product whose rows it cannot read 4 floats at a time. */
  setenv("ASU_GEMM_VARIANT", "texel", 1);
  bad = args;
  bad.lda = 5;
  bad.a = big;
  rc = asu_op_gemm(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "texel gemm with lda 5 returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "texel gemm with lda 5: submit returned %d", rc);
  CHECK(strstr(err.message, "lda 5") != NULL, "texel gemm with lda 5: message '%s' does not name "
        "lda", err.message);

  /* Only the texel variant reads F16 elements. */
  float weights[16] = {0};
  asu_buffer *half = f16_buffer(dev, weights, 16);
  setenv("ASU_GEMM_VARIANT", "register", 1);
  bad = args;
  bad.b = half;
  rc = asu_op_gemm(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "register gemm of F16 B returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_ERR_INVALID, "register gemm of F16 B: submit returned %d", rc);
  CHECK(strstr(err.message, "F16") != NULL, "register gemm of F16 B: message '%s' does not name "
        "F16", err.message);
  unsetenv("ASU_GEMM_VARIANT");
  bad.c = half;
  rc = asu_op_gemm(cmd, &bad);
  CHECK(rc == ASU_ERR_INVALID, "gemm into an F16 C returned %d", rc);
  asu_cmd_submit(cmd, &err);
  asu_buffer_destroy(half);

  setenv("ASU_GEMM_VARIANT", "fastest", 1);
  rc = asu_op_gemm(cmd, &args);
  CHECK(rc == ASU_ERR_INVALID, "gemm with an unknown ASU_GEMM_VARIANT returned %d", rc);
  asu_cmd_submit(cmd, &err);
  unsetenv("ASU_GEMM_VARIANT");

  /* An empty product is valid and does nothing. */
  bad = args;
  bad.m = 0;
  rc = asu_op_gemm(cmd, &bad);
  CHECK(rc == ASU_OK, "gemm with m = 0 returned %d", rc);
  rc = asu_cmd_submit(cmd, &err);
  CHECK(rc == ASU_OK, "gemm with m = 0: submit returned %d", rc);

  asu_cmd_destroy(cmd);
  asu_buffer_destroy(small);
  asu_buffer_destroy(big);
}

int main(void) {
  asu_device *dev = kc_device();
  test_gemm_cases(dev);
  test_gemm_logits(dev);
  test_gemm_bands(dev);
  test_gemm_default_variant(dev);
  test_gemm_f16(dev);
  test_gemm_invalid(dev);
  asu_device_destroy(dev);
  return kc_finish();
}
