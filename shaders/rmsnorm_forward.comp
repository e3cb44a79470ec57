#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// RMSNorm, one workgroup per row: y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps).
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "workgroup_sum.glsl"
#include "pieces.glsl"

PIECES(0, x)                                                       // rows x dim
PIECES(1, w)                                                       // dim
layout(set = 0, binding = 2) writeonly buffer Y { VEC y[]; };      // rows x dim
layout(set = 0, binding = 3) writeonly buffer Rstd { float rstd[]; };  // rows

layout(push_constant) uniform Push {
  uint rows, dim;  // dim a multiple of WIDTH
  float eps;
} pc;

void main() {
  uint row = flat_group_index();
  if (row >= pc.rows) return;  // uniform over the workgroup
  uint pieces = pc.dim / WIDTH;
  uint base = row * pieces;

  float sum_sq = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pieces; c += gl_WorkGroupSize.x) {
    VEC x_c = x_at(base + c);
    sum_sq += dot(x_c, x_c);
  }
  float r = 1.0 / sqrt(workgroup_sum(sum_sq) / float(pc.dim) + pc.eps);

  for (uint c = gl_LocalInvocationID.x; c < pieces; c += gl_WorkGroupSize.x)
    y[base + c] = x_at(base + c) * r * w_at(c);
  if (gl_LocalInvocationID.x == 0) rstd[row] = r;
}
