#version 450
#extension GL_GOOGLE_include_directive : require
// Softmax of one row per workgroup: y_j = exp(x_j - max) / sum_k exp(x_k - max).
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;  // workgroup size
layout(local_size_x_id = 0) in;
#include "pieces.glsl"
#include "softmax_reduce.glsl"

PIECES(0, x)                                                   // rows x cols
layout(set = 0, binding = 1) writeonly buffer Y { VEC y[]; };  // rows x cols

layout(push_constant) uniform Push {
  uint row_begin;
  uint row_end;
  uint cols;  // a multiple of WIDTH
} pc;

void main() {
  uint row = pc.row_begin + flat_group_index();
  if (row >= pc.row_end) return;  // the whole workgroup leaves together
  uint pieces = pc.cols / WIDTH;
  uint base = row * pieces;
  uint tid = gl_LocalInvocationID.x;

  float m = NEG_INF;
  float s = 0.0;
  for (uint c = tid; c < pieces; c += WG) online_logsumexp_add_piece(m, s, x_at(base + c));
  workgroup_logsumexp(m, s);

  float inv_s = 1.0 / s;
  for (uint c = tid; c < pieces; c += WG) y[base + c] = exp(x_at(base + c) - m) * inv_s;
}
