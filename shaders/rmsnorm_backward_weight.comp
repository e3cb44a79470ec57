#version 450
#extension GL_GOOGLE_include_directive : require
// RMSNorm backward to the weight, one invocation per piece of columns:
//   dw_j += sum_t dy[t][j] x[t][j] r_t.
// dw is bound twice: read through binding 4 and written through binding 3.
// Each column is summed in row order by one invocation, so the result is deterministic.
// NOTE: this runs only dim invocations, which leaves most of a GPU idle when rows is large; a
// two-pass reduction over blocks of rows would be faster there.
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "pieces.glsl"

PIECES(0, x)                                                          // rows x dim
layout(set = 0, binding = 1) readonly buffer Rstd { float rstd[]; };  // rows
PIECES(2, dy)                                                         // rows x dim
layout(set = 0, binding = 3) writeonly buffer Dw { VEC dw[]; };       // dim, accumulated
PIECES(4, dw_in)

layout(push_constant) uniform Push {
  uint rows, dim;  // dim a multiple of WIDTH
} pc;

void main() {
  uint c = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint pieces = pc.dim / WIDTH;
  if (c >= pieces) return;
  VEC sum = VEC(0.0);
  for (uint t = 0; t < pc.rows; t++) sum += dy_at(t * pieces + c) * x_at(t * pieces + c) * rstd[t];
  dw[c] = dw_in_at(c) + sum;
}
