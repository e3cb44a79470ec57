#version 450
#extension GL_GOOGLE_include_directive : require
// Causal grouped-query attention, forward pass. One invocation per (query row i, head h):
//   s_j    = scale * q_i . k_j            for j in q_ranges[i] (inclusive, clamped to the keys)
//   out_i  = sum_j softmax(s)_j * v_j
//   lse_i  = log(sum_j exp(s_j))
// The softmax is computed online over the keys (running max m and running sum l of exp(s - m)),
// so no score matrix is stored. A row with an empty range gets out = 0 and lse = -inf.
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
layout(set = 0, binding = 4) writeonly buffer O { VEC out_[]; };        // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 5) writeonly buffer L { float lse[]; };       // q_rows x n_head

layout(push_constant) uniform Push {
  uint q_rows;
  uint kv_rows;
  uint n_head;
  uint n_kv_head;
  float scale;
} pc;

const float NEG_INF = -1.0 / 0.0;

void main() {
  // Invocations run head-major so that neighbours share a head and read the same keys.
  uint idx = flat_group_index() * WG + gl_LocalInvocationID.x;
  if (idx >= pc.q_rows * pc.n_head) return;
  uint h = idx / pc.q_rows;
  uint i = idx % pc.q_rows;
  uint kv_head = h / (pc.n_head / pc.n_kv_head);

  ivec2 range = q_ranges[i];
  int first = max(range.x, 0);
  int last = min(range.y, int(pc.kv_rows) - 1);

  uint q_base = (i * pc.n_head + h) * CHUNKS;
  VEC q_scaled[CHUNKS];
  VEC acc[CHUNKS];
  for (uint c = 0; c < CHUNKS; c++) {
    q_scaled[c] = pc.scale * q_at(q_base + c);
    acc[c] = VEC(0.0);
  }

  float m = NEG_INF;  // max score so far
  float l = 0.0;      // sum of exp(s - m) so far
  for (int j = first; j <= last; j++) {
    uint kv_base = (uint(j) * pc.n_kv_head + kv_head) * CHUNKS;
    float s = 0.0;
    for (uint c = 0; c < CHUNKS; c++) s += dot(q_scaled[c], k_at(kv_base + c));
    if (s > m) {
      // A new max: rescale what was summed against the old one.
      float correction = exp(m - s);
      l *= correction;
      for (uint c = 0; c < CHUNKS; c++) acc[c] *= correction;
      m = s;
    }
    float p = exp(s - m);
    l += p;
    for (uint c = 0; c < CHUNKS; c++) acc[c] += p * v_at(kv_base + c);
  }

  float inv_l = l > 0.0 ? 1.0 / l : 0.0;
  for (uint c = 0; c < CHUNKS; c++) out_[q_base + c] = acc[c] * inv_l;
  lse[i * pc.n_head + h] = l > 0.0 ? m + log(l) : NEG_INF;
}
