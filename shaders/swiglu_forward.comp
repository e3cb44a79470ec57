#version 450
#extension GL_GOOGLE_include_directive : require
// SwiGLU: out = silu(gate) * up with silu(g) = g / (1 + exp(-g)), one piece per invocation.
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "pieces.glsl"

PIECES(0, gate)                                                   // n
PIECES(1, up)                                                     // n
layout(set = 0, binding = 2) writeonly buffer Out { VEC out_[]; };  // n

layout(push_constant) uniform Push {
  uint n;  // elements, a multiple of WIDTH
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.n / WIDTH) return;
  VEC g = gate_at(i);
  out_[i] = g / (1.0 + exp(-g)) * up_at(i);
}
