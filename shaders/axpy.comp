#version 450
#extension GL_GOOGLE_include_directive : require
// y = alpha * x + y on n elements, one piece per invocation. y is bound twice: read as y_in,
// written as y.
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "pieces.glsl"

PIECES(0, x)
layout(set = 0, binding = 1) writeonly buffer Y { VEC y[]; };
PIECES(2, y_in)

layout(push_constant) uniform Push {
  uint n;  // elements, a multiple of WIDTH
  float alpha;
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i < pc.n / WIDTH) y[i] = y_in_at(i) + pc.alpha * x_at(i);
}
