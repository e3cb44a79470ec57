#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// RMSNorm backward to the input, one workgroup per row. With y = x * r * w and
// r = 1 / sqrt(mean(x^2) + eps):
//   dx_j += r * w_j * dy_j - x_j * r^3 / dim * sum_i(dy_i * w_i * x_i).
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "workgroup_sum.glsl"

layout(set = 0, binding = 0) readonly buffer X { float x[]; };        // rows x dim
layout(set = 0, binding = 1) readonly buffer W { float w[]; };        // dim
layout(set = 0, binding = 2) readonly buffer Rstd { float rstd[]; };  // rows
layout(set = 0, binding = 3) readonly buffer Dy { float dy[]; };      // rows x dim
layout(set = 0, binding = 4) buffer Dx { float dx[]; };               // rows x dim, accumulated

layout(push_constant) uniform Push {
  uint rows, dim;
} pc;

void main() {
  uint row = flat_group_index();
  if (row >= pc.rows) return;  // uniform over the workgroup
  uint base = row * pc.dim;
  float r = rstd[row];

  float dot_part = 0.0;
  for (uint j = gl_LocalInvocationID.x; j < pc.dim; j += gl_WorkGroupSize.x)
    dot_part += dy[base + j] * w[j] * x[base + j];
  float coeff = r * r * r * workgroup_sum(dot_part) / float(pc.dim);

  for (uint j = gl_LocalInvocationID.x; j < pc.dim; j += gl_WorkGroupSize.x)
    dx[base + j] += r * w[j] * dy[base + j] - x[base + j] * coeff;
}
