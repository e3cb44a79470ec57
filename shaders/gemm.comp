#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha * op(A) * op(B) + beta * C with a register tile per invocation and no shared memory.
// A workgroup of WG_N x WG_M invocations computes a (WG_M * TM) x (WG_N * TN) tile of C.
// Invocation (x, y) owns rows tile_row + y + WG_M * i (i < TM) and columns
// tile_col + x + WG_N * j (j < TN). With WG_M = 1 every invocation of the workgroup reads the
// same elements of A, which CPU drivers load once for the whole subgroup.
#include "common.glsl"

layout(local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 2) const uint TM = 4;          // rows of C per invocation
layout(constant_id = 3) const uint TN = 4;          // columns of C per invocation
layout(constant_id = 4) const bool TRANS_A = false; // A is stored K x M
layout(constant_id = 5) const bool TRANS_B = false; // B is stored N x K
// A's rows and B's columns are contiguous along K (A not transposed, B transposed) and start at
// multiples of 4 floats (offsets and leading dimensions are multiples of 4), so K can be read
// 4 at a time. CPU drivers load a vec4 per invocation about as fast as one float.
layout(constant_id = 6) const bool VEC4_K = false;

const uint WG_N = gl_WorkGroupSize.x;
const uint WG_M = gl_WorkGroupSize.y;

layout(set = 0, binding = 0) readonly buffer A { float a[]; };  // M x K (or K x M), row stride lda
layout(set = 0, binding = 1) readonly buffer B { float b[]; };  // K x N (or N x K), row stride ldb
layout(set = 0, binding = 2) buffer C { float c[]; };           // M x N, row stride ldc
// The same A and B read as vec4, for VEC4_K.
layout(set = 0, binding = 0) readonly buffer A4 { vec4 a4[]; };
layout(set = 0, binding = 1) readonly buffer B4 { vec4 b4[]; };

layout(push_constant) uniform Push {
  uint m, n, k;
  uint lda, ldb, ldc;
  uint a_offset, b_offset, c_offset;  // in elements
  uint c_col_step;                    // 1, or ldc-style when C is stored transposed
  uint tiles_m, tiles_n;              // tiles of C along M and N
  float alpha, beta;
} pc;

void main() {
  uint tile = flat_group_index();
  if (tile >= pc.tiles_m * pc.tiles_n) return;
  // With WG_M = 1 the row offset is the constant 0, so that the compiler can see that the rows
  // (and the loads of A) are the same for every invocation.
  uint local_row = WG_M == 1 ? 0 : gl_LocalInvocationID.y;
  uint row0 = (tile / pc.tiles_n) * (WG_M * TM) + local_row;
  uint col0 = (tile % pc.tiles_n) * (WG_N * TN) + gl_LocalInvocationID.x;

  // op(A)[i][p] = a[a_offset + i * a_row_step + p * a_k_step], and likewise for op(B)[p][j].
  uint a_row_step = TRANS_A ? 1 : pc.lda;
  uint a_k_step = TRANS_A ? pc.lda : 1;
  uint b_k_step = TRANS_B ? 1 : pc.ldb;
  uint b_col_step = TRANS_B ? pc.ldb : 1;

  // Rows and columns past the edge of C read the last valid row or column, so every load stays
  // in bounds; their results are discarded at the store.
  uint a_index[TM];
  for (uint i = 0; i < TM; i++) a_index[i] = pc.a_offset + min(row0 + WG_M * i, pc.m - 1) * a_row_step;
  uint b_index[TN];
  for (uint j = 0; j < TN; j++) b_index[j] = pc.b_offset + min(col0 + WG_N * j, pc.n - 1) * b_col_step;

  float acc[TM][TN];
  for (uint i = 0; i < TM; i++)
    for (uint j = 0; j < TN; j++) acc[i][j] = 0.0;

  uint p = 0;
  if (VEC4_K) {
    // a_index[i] and b_index[j] are multiples of 4 here, and so is p.
    for (; p + 4 <= pc.k; p += 4) {
      vec4 a_p[TM];
      for (uint i = 0; i < TM; i++) a_p[i] = a4[(a_index[i] + p) / 4];
      vec4 b_p[TN];
      for (uint j = 0; j < TN; j++) b_p[j] = b4[(b_index[j] + p) / 4];
      for (uint i = 0; i < TM; i++)
        for (uint j = 0; j < TN; j++) acc[i][j] += dot(a_p[i], b_p[j]);
    }
  }
  for (; p < pc.k; p++) {
    float a_p[TM];
    for (uint i = 0; i < TM; i++) a_p[i] = a[a_index[i] + p * a_k_step];
    float b_p[TN];
    for (uint j = 0; j < TN; j++) b_p[j] = b[b_index[j] + p * b_k_step];
    for (uint i = 0; i < TM; i++)
      for (uint j = 0; j < TN; j++) acc[i][j] += a_p[i] * b_p[j];
  }

  for (uint i = 0; i < TM; i++) {
    uint row = row0 + WG_M * i;
    if (row >= pc.m) break;
    for (uint j = 0; j < TN; j++) {
      uint col = col0 + WG_N * j;
      if (col >= pc.n) break;
      uint index = pc.c_offset + row * pc.ldc + col * pc.c_col_step;
      float value = pc.alpha * acc[i][j];
      if (pc.beta != 0.0) value += pc.beta * c[index];  // beta == 0 must not read C (may be NaN)
      c[index] = value;
    }
  }
}
