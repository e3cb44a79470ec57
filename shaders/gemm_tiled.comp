#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha * op(A) * op(B) + beta * C with shared-memory tiles, for GPUs with wide subgroups.
// A workgroup of WG_N x WG_M invocations computes a TILE_M x TILE_N tile of C, stepping through
// K in slices of BK: it stages a TILE_M x BK slice of op(A) and a BK x TILE_N slice of op(B) in
// shared memory, then each invocation accumulates its TM x TN outputs from there. Invocation
// (x, y) owns rows y + WG_M * i and columns x + WG_N * j of the tile.
#include "common.glsl"

layout(local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 2) const uint TM = 4;          // rows of C per invocation
layout(constant_id = 3) const uint TN = 4;          // columns of C per invocation
layout(constant_id = 4) const bool TRANS_A = false; // A is stored K x M
layout(constant_id = 5) const bool TRANS_B = false; // B is stored N x K
layout(constant_id = 6) const uint BK = 16;         // K slice staged per step

const uint WG_N = gl_WorkGroupSize.x;
const uint WG_M = gl_WorkGroupSize.y;
const uint WG_SIZE = WG_N * WG_M;
const uint TILE_M = WG_M * TM;
const uint TILE_N = WG_N * TN;

layout(set = 0, binding = 0) readonly buffer A { float a[]; };  // M x K (or K x M), row stride lda
layout(set = 0, binding = 1) readonly buffer B { float b[]; };  // K x N (or N x K), row stride ldb
layout(set = 0, binding = 2) buffer C { float c[]; };           // M x N, row stride ldc

layout(push_constant) uniform Push {
  uint m, n, k;
  uint lda, ldb, ldc;
  uint a_offset, b_offset, c_offset;  // in elements
  uint c_col_step;                    // 1, or ldc-style when C is stored transposed
  uint tiles_m, tiles_n;              // tiles of C along M and N
  float alpha, beta;
} pc;

shared float a_tile[BK * TILE_M];  // a_tile[p * TILE_M + i] = op(A)[tile_row + i][k0 + p]
shared float b_tile[BK * TILE_N];  // b_tile[p * TILE_N + j] = op(B)[k0 + p][tile_col + j]

// op(A)[row][p], or 0 outside M x K.
float load_a(uint row, uint p) {
  if (row >= pc.m || p >= pc.k) return 0.0;
  return a[pc.a_offset + (TRANS_A ? p * pc.lda + row : row * pc.lda + p)];
}

// op(B)[p][col], or 0 outside K x N.
float load_b(uint p, uint col) {
  if (p >= pc.k || col >= pc.n) return 0.0;
  return b[pc.b_offset + (TRANS_B ? col * pc.ldb + p : p * pc.ldb + col)];
}

void main() {
  uint tile = flat_group_index();
  if (tile >= pc.tiles_m * pc.tiles_n) return;  // uniform over the workgroup
  uint tile_row = (tile / pc.tiles_n) * TILE_M;
  uint tile_col = (tile % pc.tiles_n) * TILE_N;
  uint x = gl_LocalInvocationID.x, y = gl_LocalInvocationID.y;
  uint local_index = y * WG_N + x;

  float acc[TM][TN];
  for (uint i = 0; i < TM; i++)
    for (uint j = 0; j < TN; j++) acc[i][j] = 0.0;

  for (uint k0 = 0; k0 < pc.k; k0 += BK) {
    // Consecutive invocations load consecutive addresses of the stored matrix.
    for (uint e = local_index; e < BK * TILE_M; e += WG_SIZE) {
      uint i = TRANS_A ? e % TILE_M : e / BK;
      uint p = TRANS_A ? e / TILE_M : e % BK;
      a_tile[p * TILE_M + i] = load_a(tile_row + i, k0 + p);
    }
    for (uint e = local_index; e < BK * TILE_N; e += WG_SIZE) {
      uint j = TRANS_B ? e / BK : e % TILE_N;
      uint p = TRANS_B ? e % BK : e / TILE_N;
      b_tile[p * TILE_N + j] = load_b(k0 + p, tile_col + j);
    }
    barrier();

    for (uint p = 0; p < BK; p++) {
      float a_p[TM];
      for (uint i = 0; i < TM; i++) a_p[i] = a_tile[p * TILE_M + y + WG_M * i];
      float b_p[TN];
      for (uint j = 0; j < TN; j++) b_p[j] = b_tile[p * TILE_N + x + WG_N * j];
      for (uint i = 0; i < TM; i++)
        for (uint j = 0; j < TN; j++) acc[i][j] += a_p[i] * b_p[j];
    }
    barrier();
  }

  for (uint i = 0; i < TM; i++) {
    uint row = tile_row + y + WG_M * i;
    if (row >= pc.m) break;
    for (uint j = 0; j < TN; j++) {
      uint col = tile_col + x + WG_N * j;
      if (col >= pc.n) break;
      uint index = pc.c_offset + row * pc.ldc + col * pc.c_col_step;
      float value = pc.alpha * acc[i][j];
      if (pc.beta != 0.0) value += pc.beta * c[index];  // beta == 0 must not read C (may be NaN)
      c[index] = value;
    }
  }
}
