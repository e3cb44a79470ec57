#version 450
#extension GL_GOOGLE_include_directive : require
// Attention backward, first pass. One invocation per (query row i, head h):
//   delta_i = dout_i . out_i
//   p_ij    = exp(scale * q_i . k_j - lse_i)      (the forward softmax, recomputed)
//   dp_ij   = dout_i . v_j
//   dq_i    = scale * sum_j p_ij (dp_ij - delta_i) k_j     over j in q_ranges[i]
// delta is written for the dk/dv pass.
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
PIECES(4, out)                                                         // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 5) readonly buffer L { float lse[]; };        // q_rows x n_head
PIECES(6, dout)                                                        // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 7) writeonly buffer DQ { VEC dq[]; };         // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 8) writeonly buffer DL { float delta[]; };    // q_rows x n_head

layout(push_constant) uniform Push {
  uint q_rows;
  uint kv_rows;
  uint n_head;
  uint n_kv_head;
  float scale;
} pc;

void main() {
  uint idx = flat_group_index() * WG + gl_LocalInvocationID.x;
  if (idx >= pc.q_rows * pc.n_head) return;
  uint h = idx / pc.q_rows;
  uint i = idx % pc.q_rows;
  uint kv_head = h / (pc.n_head / pc.n_kv_head);
  uint row_head = i * pc.n_head + h;
  uint q_base = row_head * CHUNKS;

  VEC q_scaled[CHUNKS];
  VEC dout_i[CHUNKS];
  VEC dq_i[CHUNKS];
  float delta_i = 0.0;
  for (uint c = 0; c < CHUNKS; c++) {
    q_scaled[c] = pc.scale * q_at(q_base + c);
    dout_i[c] = dout_at(q_base + c);
    dq_i[c] = VEC(0.0);
    delta_i += dot(dout_i[c], out_at(q_base + c));
  }
  delta[row_head] = delta_i;

  ivec2 range = q_ranges[i];
  int first = max(range.x, 0);
  int last = min(range.y, int(pc.kv_rows) - 1);
  float lse_i = lse[row_head];
  for (int j = first; j <= last; j++) {
    uint kv_base = (uint(j) * pc.n_kv_head + kv_head) * CHUNKS;
    VEC k_j[CHUNKS];
    float s = 0.0;
    float dp = 0.0;
    for (uint c = 0; c < CHUNKS; c++) {
      k_j[c] = k_at(kv_base + c);
      s += dot(q_scaled[c], k_j[c]);
      dp += dot(dout_i[c], v_at(kv_base + c));
    }
    float ds = exp(s - lse_i) * (dp - delta_i);
    for (uint c = 0; c < CHUNKS; c++) dq_i[c] += ds * k_j[c];
  }
  for (uint c = 0; c < CHUNKS; c++) dq[q_base + c] = pc.scale * dq_i[c];
}
