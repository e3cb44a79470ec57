#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// RMSNorm, one workgroup per row: y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps).
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "workgroup_sum.glsl"

layout(set = 0, binding = 0) readonly buffer X { float x[]; };     // rows x dim
layout(set = 0, binding = 1) readonly buffer W { float w[]; };     // dim
layout(set = 0, binding = 2) writeonly buffer Y { float y[]; };    // rows x dim
layout(set = 0, binding = 3) writeonly buffer Rstd { float rstd[]; };  // rows

layout(push_constant) uniform Push {
  uint rows, dim;
  float eps;
} pc;

void main() {
  uint row = flat_group_index();
  if (row >= pc.rows) return;  // uniform over the workgroup
  uint base = row * pc.dim;

  float sum_sq = 0.0;
  for (uint j = gl_LocalInvocationID.x; j < pc.dim; j += gl_WorkGroupSize.x)
    sum_sq += x[base + j] * x[base + j];
  float r = 1.0 / sqrt(workgroup_sum(sum_sq) / float(pc.dim) + pc.eps);

  for (uint j = gl_LocalInvocationID.x; j < pc.dim; j += gl_WorkGroupSize.x)
    y[base + j] = x[base + j] * r * w[j];
  if (gl_LocalInvocationID.x == 0) rstd[row] = r;
}
