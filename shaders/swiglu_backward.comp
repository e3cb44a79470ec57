#version 450
#extension GL_GOOGLE_include_directive : require
// SwiGLU backward, one piece per invocation. With s = sigmoid(g) and silu(g) = g * s:
//   dup = dout * silu(g),  dgate = dout * up * s * (1 + g * (1 - s)).
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "pieces.glsl"

PIECES(0, gate)                                                       // n
PIECES(1, up)                                                         // n
PIECES(2, dout)                                                       // n
layout(set = 0, binding = 3) writeonly buffer Dgate { VEC dgate[]; };  // n
layout(set = 0, binding = 4) writeonly buffer Dup { VEC dup[]; };      // n

layout(push_constant) uniform Push {
  uint n;  // elements, a multiple of WIDTH
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.n / WIDTH) return;
  VEC g = gate_at(i);
  VEC d = dout_at(i);
  VEC s = 1.0 / (1.0 + exp(-g));
  dup[i] = d * g * s;
  dgate[i] = d * up_at(i) * s * (1.0 + g * (1.0 - s));
}
