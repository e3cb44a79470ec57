#version 450
#extension GL_GOOGLE_include_directive : require
// Attention backward, second pass. One invocation per (key j, kv head g), summing over the
// query heads h of group g and the queries i of k_ranges[j] whose own range contains j:
//   p_ij  = exp(scale * q_i . k_j - lse_i)
//   dp_ij = dout_i . v_j
//   dk_j  = scale * sum p_ij (dp_ij - delta_i) q_i
//   dv_j  = sum p_ij dout_i
// Each output is summed by one invocation in a fixed order, so results are deterministic.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;        // workgroup size
layout(constant_id = 1) const uint HEAD_DIM = 64;  // floats per head
layout(local_size_x_id = 0) in;
#include "pieces.glsl"
const uint CHUNKS = HEAD_DIM / WIDTH;  // pieces per head row

PIECES(0, q)                                                           // q_rows x n_head x HEAD_DIM
PIECES(1, k)                                                           // kv_rows x n_kv_head x HEAD_DIM
PIECES(2, v)                                                           // kv_rows x n_kv_head x HEAD_DIM
layout(set = 0, binding = 3) readonly buffer QR { ivec2 q_ranges[]; };  // q_rows x (first, last)
layout(set = 0, binding = 4) readonly buffer KR { ivec2 k_ranges[]; };  // kv_rows x (first, last)
layout(set = 0, binding = 5) readonly buffer L { float lse[]; };        // q_rows x n_head
PIECES(6, dout)                                                        // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 7) readonly buffer DL { float delta[]; };     // q_rows x n_head
layout(set = 0, binding = 8) writeonly buffer DK { VEC dk[]; };         // kv_rows x n_kv_head x HEAD_DIM
layout(set = 0, binding = 9) writeonly buffer DV { VEC dv[]; };         // kv_rows x n_kv_head x HEAD_DIM

layout(push_constant) uniform Push {
  uint q_rows;
  uint kv_rows;
  uint n_head;
  uint n_kv_head;
  float scale;
} pc;

void main() {
  uint idx = flat_group_index() * WG + gl_LocalInvocationID.x;
  if (idx >= pc.kv_rows * pc.n_kv_head) return;
  uint g = idx / pc.kv_rows;
  uint j = idx % pc.kv_rows;
  uint group_size = pc.n_head / pc.n_kv_head;
  uint kv_base = (j * pc.n_kv_head + g) * CHUNKS;

  VEC k_scaled[CHUNKS];
  VEC v_j[CHUNKS];
  VEC dk_j[CHUNKS];
  VEC dv_j[CHUNKS];
  for (uint c = 0; c < CHUNKS; c++) {
    k_scaled[c] = pc.scale * k_at(kv_base + c);
    v_j[c] = v_at(kv_base + c);
    dk_j[c] = VEC(0.0);
    dv_j[c] = VEC(0.0);
  }

  ivec2 range = k_ranges[j];
  int first = max(range.x, 0);
  int last = min(range.y, int(pc.q_rows) - 1);
  // Walk the queries from the last one down: in causal ranges neighbouring keys share their last
  // query, so neighbouring invocations read the same query rows at the same time.
  for (int i = last; i >= first; i--) {
    ivec2 q_range = q_ranges[i];
    if (int(j) < q_range.x || int(j) > q_range.y) continue;
    for (uint h = g * group_size; h < (g + 1) * group_size; h++) {
      uint row_head = uint(i) * pc.n_head + h;
      uint q_base = row_head * CHUNKS;
      VEC q_i[CHUNKS];
      VEC dout_i[CHUNKS];
      float s = 0.0;
      float dp = 0.0;
      for (uint c = 0; c < CHUNKS; c++) {
        q_i[c] = q_at(q_base + c);
        dout_i[c] = dout_at(q_base + c);
        s += dot(q_i[c], k_scaled[c]);
        dp += dot(dout_i[c], v_j[c]);
      }
      float p = exp(s - lse[row_head]);
      float ds = p * (dp - delta[row_head]);
      for (uint c = 0; c < CHUNKS; c++) {
        dk_j[c] += ds * q_i[c];
        dv_j[c] += p * dout_i[c];
      }
    }
  }
  for (uint c = 0; c < CHUNKS; c++) {
    dk[kv_base + c] = pc.scale * dk_j[c];
    dv[kv_base + c] = dv_j[c];
  }
}
