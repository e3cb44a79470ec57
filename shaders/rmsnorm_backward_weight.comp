#version 450
#extension GL_GOOGLE_include_directive : require
// RMSNorm backward to the weight, one invocation per column: dw_j += sum_t dy[t][j] x[t][j] r_t.
// Each column is summed in row order by one invocation, so the result is deterministic.
// NOTE: this runs only dim invocations, which leaves most of a GPU idle when rows is large; a
// two-pass reduction over blocks of rows would be faster there.
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer X { float x[]; };        // rows x dim
layout(set = 0, binding = 1) readonly buffer Rstd { float rstd[]; };  // rows
layout(set = 0, binding = 2) readonly buffer Dy { float dy[]; };      // rows x dim
layout(set = 0, binding = 3) buffer Dw { float dw[]; };               // dim, accumulated

layout(push_constant) uniform Push {
  uint rows, dim;
} pc;

void main() {
  uint j = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (j >= pc.dim) return;
  float sum = 0.0;
  for (uint t = 0; t < pc.rows; t++) sum += dy[t * pc.dim + j] * x[t * pc.dim + j] * rstd[t];
  dw[j] += sum;
}
