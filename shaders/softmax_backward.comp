#version 450
#extension GL_GOOGLE_include_directive : require
// Backward of softmax, one row per workgroup: dx_j = y_j * (dy_j - sum_k dy_k y_k), where y is
// the forward output.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;  // workgroup size
layout(local_size_x_id = 0) in;
#include "softmax_reduce.glsl"

layout(set = 0, binding = 0) readonly buffer Y { float y[]; };     // rows x cols
layout(set = 0, binding = 1) readonly buffer DY { float dy[]; };   // rows x cols
layout(set = 0, binding = 2) writeonly buffer DX { float dx[]; };  // rows x cols

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

  float partial = 0.0;
  for (uint j = tid; j < pc.cols; j += WG) partial += dy[base + j] * y[base + j];
  float dot_dy_y = workgroup_sum(partial);

  for (uint j = tid; j < pc.cols; j += WG) dx[base + j] = y[base + j] * (dy[base + j] - dot_dy_y);
}
