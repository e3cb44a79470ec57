#version 450
#extension GL_GOOGLE_include_directive : require
// SwiGLU backward. With s = sigmoid(g) and silu(g) = g * s:
//   dup = dout * silu(g),  dgate = dout * up * s * (1 + g * (1 - s)).
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Gate { float gate[]; };   // n
layout(set = 0, binding = 1) readonly buffer Up { float up[]; };       // n
layout(set = 0, binding = 2) readonly buffer Dout { float dout[]; };   // n
layout(set = 0, binding = 3) writeonly buffer Dgate { float dgate[]; };  // n
layout(set = 0, binding = 4) writeonly buffer Dup { float dup[]; };    // n

layout(push_constant) uniform Push {
  uint n;
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.n) return;
  float g = gate[i];
  float s = 1.0 / (1.0 + exp(-g));
  dup[i] = dout[i] * g * s;
  dgate[i] = dout[i] * up[i] * s * (1.0 + g * (1.0 - s));
}
