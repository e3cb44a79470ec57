#version 450
#extension GL_GOOGLE_include_directive : require
// SwiGLU: out = silu(gate) * up with silu(g) = g / (1 + exp(-g)).
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Gate { float gate[]; };  // n
layout(set = 0, binding = 1) readonly buffer Up { float up[]; };      // n
layout(set = 0, binding = 2) writeonly buffer Out { float out_[]; };  // n

layout(push_constant) uniform Push {
  uint n;
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.n) return;
  float g = gate[i];
  out_[i] = g / (1.0 + exp(-g)) * up[i];
}
