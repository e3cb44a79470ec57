#version 450
#extension GL_GOOGLE_include_directive : require
// y = alpha * x + y on n floats.
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };

layout(push_constant) uniform Push {
  uint n;
  float alpha;
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i < pc.n) y[i] += pc.alpha * x[i];
}
