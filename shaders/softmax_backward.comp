#version 450
#extension GL_GOOGLE_include_directive : require
// Backward of softmax, one row per workgroup: dx_j = y_j * (dy_j - sum_k dy_k y_k), where y is
// the forward output.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;  // workgroup size
layout(local_size_x_id = 0) in;
#include "pieces.glsl"
#include "softmax_reduce.glsl"

PIECES(0, y)                                                     // rows x cols
PIECES(1, dy)                                                    // rows x cols
layout(set = 0, binding = 2) writeonly buffer DX { VEC dx[]; };  // rows x cols

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

  float partial = 0.0;
  for (uint c = tid; c < pieces; c += WG) partial += dot(dy_at(base + c), y_at(base + c));
  float dot_dy_y = workgroup_sum(partial);

  for (uint c = tid; c < pieces; c += WG) dx[base + c] = y_at(base + c) * (dy_at(base + c) - dot_dy_y);
}
