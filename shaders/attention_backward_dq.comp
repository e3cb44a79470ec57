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

layout(set = 0, binding = 0) readonly buffer Q { float q[]; };          // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 1) readonly buffer K { float k[]; };          // kv_rows x n_kv_head x HEAD_DIM
layout(set = 0, binding = 2) readonly buffer V { float v[]; };          // kv_rows x n_kv_head x HEAD_DIM
layout(set = 0, binding = 3) readonly buffer QR { ivec2 q_ranges[]; };  // q_rows x (first, last)
layout(set = 0, binding = 4) readonly buffer O { float out_[]; };       // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 5) readonly buffer L { float lse[]; };        // q_rows x n_head
layout(set = 0, binding = 6) readonly buffer DO { float dout[]; };      // q_rows x n_head x HEAD_DIM
layout(set = 0, binding = 7) writeonly buffer DQ { float dq[]; };       // q_rows x n_head x HEAD_DIM
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
  uint q_base = row_head * HEAD_DIM;

  float q_scaled[HEAD_DIM];
  float dout_i[HEAD_DIM];
  float dq_i[HEAD_DIM];
  float delta_i = 0.0;
  for (uint d = 0; d < HEAD_DIM; d++) {
    q_scaled[d] = pc.scale * q[q_base + d];
    dout_i[d] = dout[q_base + d];
    dq_i[d] = 0.0;
    delta_i += dout_i[d] * out_[q_base + d];
  }
  delta[row_head] = delta_i;

  ivec2 range = q_ranges[i];
  int first = max(range.x, 0);
  int last = min(range.y, int(pc.kv_rows) - 1);
  float lse_i = lse[row_head];
  for (int j = first; j <= last; j++) {
    uint kv_base = (uint(j) * pc.n_kv_head + kv_head) * HEAD_DIM;
    float s = 0.0;
    float dp = 0.0;
    for (uint d = 0; d < HEAD_DIM; d++) {
      s += q_scaled[d] * k[kv_base + d];
      dp += dout_i[d] * v[kv_base + d];
    }
    float ds = exp(s - lse_i) * (dp - delta_i);
    for (uint d = 0; d < HEAD_DIM; d++) dq_i[d] += ds * k[kv_base + d];
  }
  for (uint d = 0; d < HEAD_DIM; d++) dq[q_base + d] = pc.scale * dq_i[d];
}
