/* C = alpha * op(A) * op(B) + beta * C in one of three kernels:
   - "gemm" (register tiles): a workgroup is one subgroup and each invocation keeps a TM x TN
     block of C in registers, with no shared memory. This suits CPU drivers such as lavapipe,
     where a workgroup runs as one SIMD loop and barriers are expensive.
   - "gemm_texel" (register tiles read through texel buffers): the same layout, reading A and B
     4 floats at a time as texels, which CPU drivers gather without a branch per element. It
     needs offsets and leading dimensions in multiples of 4 and buffers with texel views; the
     register variant takes the other products.
   - "gemm_tiled" (shared-memory tiles): 16 x 16 invocations stage slices of A and B in shared
     memory, the classic layout for GPUs with wide subgroups.
   The environment variable ASU_GEMM_VARIANT=register, =texel or =tiled forces one of them;
   a forced texel variant fails on a product it cannot read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_internal.h"

/* Mirrors the push constant block of shaders/gemm.comp and shaders/gemm_tiled.comp. */
typedef struct gemm_push {
  uint32_t m, n, k;
  uint32_t lda, ldb, ldc;
  uint32_t a_offset, b_offset, c_offset;
  uint32_t c_col_step;
  uint32_t tiles_m, tiles_n;
  float alpha, beta;
} gemm_push;
_Static_assert(sizeof(gemm_push) == 56, "gemm_push must match the shader's push constants");

typedef enum gemm_variant { GEMM_REGISTER, GEMM_TEXEL, GEMM_TILED } gemm_variant;

/* Shape of the shared-memory variant: 16 x 16 invocations, 4 x 4 outputs each, K slices of 16. */
enum { TILED_WG = 16, TILED_TM = 4, TILED_TN = 4, TILED_BK = 16 };
#define TILED_SHARED_BYTES \
  ((uint32_t)(TILED_BK * TILED_WG * (TILED_TM + TILED_TN) * sizeof(float)))

/* Register tile of one invocation in the register variant. 8 x 8 ran about 1.7 times faster
   than 4 x 4 on lavapipe (LLVM 15, 8-wide AVX2) for the 8000 x 512 x 64 logits product. The
   texel variant's cheaper loads favour larger tiles. Of the sizes from 4 x 8 to 64 x 16 at the
   768-wide shapes of asu-bench, 32 x 8 was among the fastest where B is transposed (NT) and
   32 x 16 where it is not (NN, TN), about 1.3 times 16 x 8 there; 64 rows spill registers and
   run 3 times slower. */
enum { REGISTER_TM = 8, REGISTER_TN = 8, TEXEL_TM = 32, TEXEL_TN = 8, TEXEL_TN_WIDE = 16 };

/* Rows of C per invocation: the smallest power of two covering m, up to max_rows, so that
   products of a few rows (decoding) do not compute unused rows. */
static uint32_t tile_rows(uint32_t m, uint32_t max_rows) {
  uint32_t tm = 1;
  while (tm < m && tm < max_rows) tm *= 2;
  return tm;
}

/* Whether the register variant may read K 4 floats at a time: A's rows and B's columns must be
   contiguous along K and 16-byte aligned. */
static bool can_read_vec4_k(const asu_gemm_args *g) {
  return !g->trans_a && g->trans_b && g->a_offset % 4 == 0 && g->lda % 4 == 0 &&
         g->b_offset % 4 == 0 && g->ldb % 4 == 0;
}

/* Whether the texel variant can read A and B: 16-byte aligned rows along their contiguous
   dimension, and buffers the device can view as texels. */
static bool can_read_texels(const asu_gemm_args *g) {
  return g->a_offset % 4 == 0 && g->lda % 4 == 0 && g->b_offset % 4 == 0 && g->ldb % 4 == 0 &&
         asu_buffer_has_texels(g->a) && asu_buffer_has_texels(g->b);
}

/* Picks the variant from device features. Devices with narrow subgroups (CPU SIMD lanes) or
   without room for the shared tiles get register tiles, and others get shared-memory tiles. */
static int choose_variant(asu_cmd *cmd, gemm_variant *variant) {
  const char *forced = getenv("ASU_GEMM_VARIANT");
  if (forced && *forced) {
    if (!strcmp(forced, "register")) {
      *variant = GEMM_REGISTER;
    } else if (!strcmp(forced, "texel")) {
      *variant = GEMM_TEXEL;
    } else if (!strcmp(forced, "tiled")) {
      *variant = GEMM_TILED;
    } else {
      asu_cmd_fail(cmd, ASU_ERR_INVALID,
                   "gemm: ASU_GEMM_VARIANT is '%s'; expected 'register', 'texel' or 'tiled'",
                   forced);
      return ASU_ERR_INVALID;
    }
    return ASU_OK;
  }
  const asu_device_info *info = asu_device_get_info(asu_cmd_device(cmd));
  bool wide = info->subgroup_size >= 16;
  bool room = info->max_shared_memory >= TILED_SHARED_BYTES &&
              info->max_workgroup_invocations >= TILED_WG * TILED_WG;
  *variant = wide && room ? GEMM_TILED : GEMM_TEXEL;
  return ASU_OK;
}

/* Bytes that a stored rows x cols matrix of buf's elements with row stride ld, starting at
   element `offset`, spans; 0 when it is empty (the kernel then reads nothing). */
static uint64_t matrix_bytes(const asu_buffer *buf, uint32_t offset, uint32_t rows, uint32_t cols,
                             uint32_t ld) {
  if (rows == 0 || cols == 0) return 0;
  uint64_t element = buf && asu_buffer_element(buf) == ASU_ELEMENT_F16 ? 2 : 4;
  return ((uint64_t)offset + (uint64_t)(rows - 1) * ld + cols) * element;
}

static int check_args(asu_cmd *cmd, const asu_gemm_args *g) {
  char op[160];
  snprintf(op, sizeof op, "gemm (m %u, n %u, k %u, trans_a %d, trans_b %d, lda %u, ldb %u, ldc %u)",
           g->m, g->n, g->k, g->trans_a, g->trans_b, g->lda, g->ldb, g->ldc);
  uint32_t a_rows = g->trans_a ? g->k : g->m, a_cols = g->trans_a ? g->m : g->k;
  uint32_t b_rows = g->trans_b ? g->n : g->k, b_cols = g->trans_b ? g->k : g->n;
  if (g->lda < a_cols || g->ldb < b_cols || g->ldc < g->n) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID,
                 "%s: a leading dimension is smaller than its row width (A %u, B %u, C %u)", op,
                 a_cols, b_cols, g->n);
    return ASU_ERR_INVALID;
  }
  if (!asu_ops_fits(cmd, op, "A", g->a, matrix_bytes(g->a, g->a_offset, a_rows, a_cols, g->lda)) ||
      !asu_ops_fits(cmd, op, "B", g->b, matrix_bytes(g->b, g->b_offset, b_rows, b_cols, g->ldb)) ||
      !asu_ops_fits(cmd, op, "C", g->c, matrix_bytes(g->c, g->c_offset, g->m, g->n, g->ldc)))
    return ASU_ERR_INVALID;
  if (asu_buffer_element(g->c) != ASU_ELEMENT_F32) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: C must hold F32 elements", op);
    return ASU_ERR_INVALID;
  }
  return ASU_OK;
}

/* The same product computed as C^T = op(B)^T op(A)^T, with C^T written through a transposed
   store. The register variant spreads a workgroup along N, so a narrow C (a LoRA rank of 8
   columns, say) would leave most invocations idle; its transpose is wide. */
typedef struct gemm_problem {
  asu_gemm_args g;
  uint32_t c_row_step, c_col_step;
} gemm_problem;

static gemm_problem transposed_problem(const asu_gemm_args *a) {
  gemm_problem t = {.g = *a, .c_row_step = 1, .c_col_step = a->ldc};
  t.g.m = a->n, t.g.n = a->m;
  t.g.a = a->b, t.g.lda = a->ldb, t.g.a_offset = a->b_offset, t.g.trans_a = !a->trans_b;
  t.g.b = a->a, t.g.ldb = a->lda, t.g.b_offset = a->a_offset, t.g.trans_b = !a->trans_a;
  return t;
}

/* Settles the variant for one product. Only the texel variant reads F16 operands, so they take
   it on any device. Where the texel variant cannot read the operands, a default choice falls
   back to the register variant. A forced choice, or one that F16 operands need, fails. */
static int settle_variant(asu_cmd *cmd, const asu_gemm_args *g, gemm_variant *variant) {
  bool f16 = asu_buffer_element(g->a) == ASU_ELEMENT_F16 ||
             asu_buffer_element(g->b) == ASU_ELEMENT_F16;
  const char *forced = getenv("ASU_GEMM_VARIANT");
  bool is_forced = forced && *forced;
  if (f16 && is_forced && *variant != GEMM_TEXEL) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "gemm: A or B holds F16 elements, which only the texel "
                 "variant reads, but ASU_GEMM_VARIANT is '%s'; unset it", forced);
    return ASU_ERR_INVALID;
  }
  if (f16) *variant = GEMM_TEXEL;
  if (*variant != GEMM_TEXEL || can_read_texels(g)) return ASU_OK;
  if (f16 || is_forced) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID,
                 "gemm: the texel variant (%s) needs offsets and leading dimensions in "
                 "multiples of 4 and buffers with texel views (lda %u, ldb %u, offsets %u, %u)%s",
                 f16 ? "F16 operands" : "ASU_GEMM_VARIANT=texel", g->lda, g->ldb, g->a_offset,
                 g->b_offset, f16 ? "" : "; unset ASU_GEMM_VARIANT to use the register variant");
    return ASU_ERR_INVALID;
  }
  *variant = GEMM_REGISTER;
  return ASU_OK;
}

/* The kernel for a variant and problem, and the tile of C that one workgroup computes. */
static asu_kernel *variant_kernel(asu_cmd *cmd, gemm_variant variant, const asu_gemm_args *args,
                                  uint32_t subgroup, uint32_t *tile_m, uint32_t *tile_n) {
  if (variant == GEMM_TILED) {
    uint32_t spec[] = {TILED_WG, TILED_WG, TILED_TM, TILED_TN, args->trans_a, args->trans_b,
                       TILED_BK};
    *tile_m = TILED_WG * TILED_TM, *tile_n = TILED_WG * TILED_TN;
    return asu_ops_kernel(cmd, "gemm_tiled", spec, 7, 3, sizeof(gemm_push));
  }
  /* One subgroup per workgroup, all along N, so the invocations share the rows of A. */
  if (variant == GEMM_REGISTER) {
    uint32_t tm = tile_rows(args->m, REGISTER_TM);
    *tile_m = tm, *tile_n = subgroup * REGISTER_TN;
    uint32_t spec[] = {subgroup, 1, tm, REGISTER_TN, args->trans_a, args->trans_b,
                       can_read_vec4_k(args)};
    return asu_ops_kernel(cmd, "gemm", spec, 7, 3, sizeof(gemm_push));
  }
  uint32_t tm = tile_rows(args->m, TEXEL_TM);
  /* A transposed A is read 4 rows at a time. */
  if (args->trans_a && tm < 4) tm = 4;
  /* Wide tiles only where C has columns for them. */
  bool wide = !args->trans_b && args->n >= subgroup * TEXEL_TN_WIDE;
  uint32_t tn = wide ? TEXEL_TN_WIDE : TEXEL_TN;
  *tile_m = tm, *tile_n = subgroup * tn;
  uint32_t spec[] = {subgroup, tm, tn, args->trans_a, args->trans_b};
  return asu_ops_kernel_texel(cmd, "gemm_texel", spec, 5, 3, 0x3, sizeof(gemm_push));
}

/* Records one dispatch of a checked, non-empty product. */
static int dispatch_product(asu_cmd *cmd, const asu_gemm_args *checked) {
  gemm_variant variant;
  int rc = choose_variant(cmd, &variant);
  if (rc) return rc;

  rc = settle_variant(cmd, checked, &variant);
  if (rc) return rc;

  const asu_device_info *info = asu_device_get_info(asu_cmd_device(cmd));
  uint32_t subgroup = info->subgroup_size ? info->subgroup_size : 8;
  gemm_problem problem = {.g = *checked, .c_row_step = checked->ldc, .c_col_step = 1};
  if (variant != GEMM_TILED && checked->n < subgroup * REGISTER_TN && checked->m > checked->n)
    problem = transposed_problem(checked);
  const asu_gemm_args *args = &problem.g;

  uint32_t tile_m, tile_n;
  asu_kernel *kernel = variant_kernel(cmd, variant, args, subgroup, &tile_m, &tile_n);
  if (!kernel) return asu_cmd_status(cmd, NULL);
  gemm_push push = {
      .m = args->m, .n = args->n, .k = args->k,
      .lda = args->lda, .ldb = args->ldb, .ldc = problem.c_row_step,
      .a_offset = args->a_offset, .b_offset = args->b_offset, .c_offset = args->c_offset,
      .c_col_step = problem.c_col_step,
      .tiles_m = (args->m + tile_m - 1) / tile_m, .tiles_n = (args->n + tile_n - 1) / tile_n,
      .alpha = args->alpha, .beta = args->beta,
  };
  asu_buffer *buffers[] = {args->a, args->b, args->c};
  uint32_t gx, gy;
  asu_grid_2d(asu_cmd_device(cmd), push.tiles_m * push.tiles_n, &gx, &gy);
  asu_cmd_dispatch(cmd, kernel, buffers, &push, gx, gy, 1);
  return asu_cmd_status(cmd, NULL);
}

/* FLOPs of the largest band when a command submits in slices (asu_cmd_set_flush_every). A
   slice ends only between dispatches, so a larger product runs as bands of rows or columns of
   C. Other work on the queue then waits for one band rather than the whole product, about
   10 ms at the 50 GFLOP/s that lavapipe reaches on 2 cores. */
#define SLICE_BAND_FLOPS 5e8

/* Records the product as bands along the longer side of C, each a multiple of 64 rows or
   columns (which keeps the texel variant's offsets aligned). False when it needs no bands. */
static bool dispatch_bands(asu_cmd *cmd, const asu_gemm_args *g, int *rc) {
  double flops = 2.0 * g->m * g->n * g->k;
  if (!asu_cmd_flush_every(cmd) || flops <= SLICE_BAND_FLOPS) return false;
  bool by_rows = g->m >= g->n;
  uint32_t extent = by_rows ? g->m : g->n;
  uint32_t band = (uint32_t)(SLICE_BAND_FLOPS / (flops / extent)) / 64 * 64;
  if (band < 64) band = 64;
  if (band >= extent) return false;
  *rc = ASU_OK;
  for (uint32_t start = 0; start < extent && *rc == ASU_OK; start += band) {
    asu_gemm_args b = *g;
    uint32_t len = extent - start < band ? extent - start : band;
    if (by_rows) {
      b.m = len;
      b.c_offset += start * g->ldc;
      b.a_offset += g->trans_a ? start : start * g->lda;
    } else {
      b.n = len;
      b.c_offset += start;
      b.b_offset += g->trans_b ? start * g->ldb : start;
    }
    *rc = dispatch_product(cmd, &b);
  }
  return true;
}

int asu_op_gemm(asu_cmd *cmd, const asu_gemm_args *checked) {
  int rc = check_args(cmd, checked);
  if (rc) return rc;
  if (checked->m == 0 || checked->n == 0) return asu_cmd_status(cmd, NULL);
  if (dispatch_bands(cmd, checked, &rc)) return rc;
  return dispatch_product(cmd, checked);
}
