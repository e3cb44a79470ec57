#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// RMSNorm backward to the input, one workgroup per row. With y = x * r * w and
// r = 1 / sqrt(mean(x^2) + eps):
//   dx_j += r * w_j * dy_j - x_j * r^3 / dim * sum_i(dy_i * w_i * x_i).
// dx is bound twice: read through binding 5 and written through binding 4.
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "workgroup_sum.glsl"
#include "pieces.glsl"

PIECES(0, x)                                                          // rows x dim
PIECES(1, w)                                                          // dim
layout(set = 0, binding = 2) readonly buffer Rstd { float rstd[]; };  // rows
PIECES(3, dy)                                                         // rows x dim
layout(set = 0, binding = 4) writeonly buffer Dx { VEC dx[]; };       // rows x dim, accumulated
PIECES(5, dx_in)

layout(push_constant) uniform Push {
  uint rows, dim;  // dim a multiple of WIDTH
} pc;

void main() {
  uint row = flat_group_index();
  if (row >= pc.rows) return;  // uniform over the workgroup
  uint pieces = pc.dim / WIDTH;
  uint base = row * pieces;
  float r = rstd[row];

  float dot_part = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pieces; c += gl_WorkGroupSize.x)
    dot_part += dot(dy_at(base + c) * w_at(c), x_at(base + c));
  float coeff = r * r * r * workgroup_sum(dot_part) / float(pc.dim);

  for (uint c = gl_LocalInvocationID.x; c < pieces; c += gl_WorkGroupSize.x)
    dx[base + c] = dx_in_at(base + c) + (r * w_at(c) * dy_at(base + c) - x_at(base + c) * coeff);
}
