#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha * op(A) * op(B) + beta * C with a register tile per invocation, reading A and B
// through texel buffers of 4 floats.
//
// CPU drivers run a workgroup of one subgroup as a SIMD loop. There a storage-buffer load whose
// address differs between invocations becomes a loop over the lanes with a branch per element,
// while a texel fetch becomes a branch-free gather of whole texels; for matrix products that
// made texels over twice as fast on lavapipe. Each operand is read 4 floats at a time along the
// dimension it is contiguous in: K for A and for a transposed B (stored N x K), M for a
// transposed A (stored K x M) and N for B. Offsets and leading dimensions must be multiples of 4.
//
// The workgroup is one row of WG_N invocations sharing TM rows of C; invocation x owns the
// columns tile_col + 4 * WG_N * g + 4 * x + c for groups g < TN / 4 and c < 4.
#include "common.glsl"

layout(local_size_x_id = 0, local_size_y = 1) in;
layout(constant_id = 1) const uint TM = 8;          // rows of C per invocation, a multiple of 4 with TRANS_A
layout(constant_id = 2) const uint TN = 8;          // columns of C per invocation, a multiple of 4
layout(constant_id = 3) const bool TRANS_A = false; // A is stored K x M
layout(constant_id = 4) const bool TRANS_B = false; // B is stored N x K

const uint WG_N = gl_WorkGroupSize.x;

layout(set = 0, binding = 0) uniform samplerBuffer a4;  // M x K (or K x M), row stride lda
layout(set = 0, binding = 1) uniform samplerBuffer b4;  // K x N (or N x K), row stride ldb
layout(set = 0, binding = 2) buffer C { float c[]; };   // M x N, row stride ldc

layout(push_constant) uniform Push {
  uint m, n, k;
  uint lda, ldb, ldc;
  uint a_offset, b_offset, c_offset;  // in elements
  uint c_col_step;                    // 1, or ldc-style when C is stored transposed
  uint tiles_m, tiles_n;              // tiles of C along M and N
  float alpha, beta;
} pc;

float acc[TM][TN];   // this invocation's block of C
uint a_base[TM];     // op(A) row i starts at a_base[i] (K-contiguous A); row 4g at a_base[g] otherwise
uint b_base[TN];     // op(B) column j starts at b_base[j] (transposed B); column 4 WG_N g at b_base[g]
int last_a, last_b;  // the last texel of A's and B's buffers

// The texel holding elements [index, index + 4) of a buffer, index a multiple of 4. Reads past
// the end take the last texel; they only occur for rows and columns past the edge of C.
vec4 fetch_a(uint index) { return texelFetch(a4, min(int(index / 4), last_a)); }
vec4 fetch_b(uint index) { return texelFetch(b4, min(int(index / 4), last_b)); }

// Zeroes the components of v at K positions p + q >= k, so that the last block of K adds nothing
// from past the end of a row (which may hold any value, NaN included).
vec4 mask_k(vec4 v, uint p) {
  return vec4(p < pc.k ? v.x : 0.0, p + 1 < pc.k ? v.y : 0.0, p + 2 < pc.k ? v.z : 0.0,
              p + 3 < pc.k ? v.w : 0.0);
}

// Adds op(A)[rows][p, p + 4) * op(B)[p, p + 4)[columns] to acc. With tail false the whole block
// lies inside K and nothing is masked.
void accumulate(uint p, bool tail) {
  vec4 ab[TM];  // op(A)[row i][p + q] in component q
  if (TRANS_A) {
    for (uint q = 0; q < 4; q++) {
      bool inside = !tail || p + q < pc.k;
      uint row_start = (tail ? min(p + q, pc.k - 1) : p + q) * pc.lda;
      for (uint g = 0; g < TM / 4; g++) {
        vec4 v = inside ? fetch_a(a_base[g] + row_start) : vec4(0.0);
        for (uint r = 0; r < 4; r++) ab[4 * g + r][q] = v[r];
      }
    }
  } else {
    for (uint i = 0; i < TM; i++) {
      ab[i] = texelFetch(a4, int((a_base[i] + p) / 4));
      if (tail) ab[i] = mask_k(ab[i], p);
    }
  }
  vec4 bb[TN];  // op(B)[p + q][column j] in component q
  if (TRANS_B) {
    for (uint j = 0; j < TN; j++) {
      bb[j] = texelFetch(b4, int((b_base[j] + p) / 4));
      if (tail) bb[j] = mask_k(bb[j], p);
    }
  } else {
    for (uint q = 0; q < 4; q++) {
      bool inside = !tail || p + q < pc.k;
      uint row_start = (tail ? min(p + q, pc.k - 1) : p + q) * pc.ldb;
      for (uint g = 0; g < TN / 4; g++) {
        vec4 v = inside ? fetch_b(b_base[g] + row_start) : vec4(0.0);
        for (uint r = 0; r < 4; r++) bb[4 * g + r][q] = v[r];
      }
    }
  }
  // One update of each accumulator per block: they do not all fit in registers.
  for (uint i = 0; i < TM; i++)
    for (uint j = 0; j < TN; j++) acc[i][j] += dot(ab[i], bb[j]);
}

// Column j of this invocation's block.
uint column(uint col0, uint j) { return col0 + (j / 4) * 4 * WG_N + j % 4; }

void main() {
  uint tile = flat_group_index();
  if (tile >= pc.tiles_m * pc.tiles_n) return;
  uint row0 = (tile / pc.tiles_n) * TM;
  uint col0 = (tile % pc.tiles_n) * (WG_N * TN) + 4 * gl_LocalInvocationID.x;
  last_a = textureSize(a4) - 1;
  last_b = textureSize(b4) - 1;
  // Rows and columns past the edge of C read the last valid one along K; their results are
  // discarded at the store.
  for (uint i = 0; i < TM; i++)
    a_base[i] = TRANS_A ? pc.a_offset + row0 + 4 * i : pc.a_offset + min(row0 + i, pc.m - 1) * pc.lda;
  for (uint j = 0; j < TN; j++)
    b_base[j] = TRANS_B ? pc.b_offset + min(column(col0, j), pc.n - 1) * pc.ldb
                        : pc.b_offset + col0 + 4 * WG_N * j;
  for (uint i = 0; i < TM; i++)
    for (uint j = 0; j < TN; j++) acc[i][j] = 0.0;

  uint p = 0;
  for (; p + 4 <= pc.k; p += 4) accumulate(p, false);
  if (p < pc.k) accumulate(p, true);

  for (uint i = 0; i < TM; i++) {
    uint row = row0 + i;
    if (row >= pc.m) break;
    for (uint j = 0; j < TN; j++) {
      uint col = column(col0, j);
      if (col >= pc.n) continue;
      uint index = pc.c_offset + row * pc.ldc + col * pc.c_col_step;
      float value = pc.alpha * acc[i][j];
      if (pc.beta != 0.0) value += pc.beta * c[index];  // beta == 0 must not read C (may be NaN)
      c[index] = value;
    }
  }
}
