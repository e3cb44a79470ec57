#version 450
#extension GL_GOOGLE_include_directive : require
// Softmax of one row per workgroup: y_j = exp(x_j - max) / sum_k exp(x_k - max).
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;  // workgroup size
layout(local_size_x_id = 0) in;
#include "softmax_reduce.glsl"

layout(set = 0, binding = 0) readonly buffer X { float x[]; };   // rows x cols
layout(set = 0, binding = 1) writeonly buffer Y { float y[]; };  // rows x cols

layout(push_constant) uniform Push {
  uint row_begin;
  uint row_end;
  uint cols;
} pc;

void main() {
  uint row = pc.row_begin + flat_group_index();
  if (row >= pc.row_end) return;  // the whole workgroup leaves together
  uint base = row * pc.cols;
  uint tid = gl_LocalInvocationID.x;

  float m = NEG_INF;
  float s = 0.0;
  for (uint j = tid; j < pc.cols; j += WG) online_logsumexp_add(m, s, x[base + j]);
  workgroup_logsumexp(m, s);

  float inv_s = 1.0 / s;
  for (uint j = tid; j < pc.cols; j += WG) y[base + j] = exp(x[base + j] - m) * inv_s;
}
