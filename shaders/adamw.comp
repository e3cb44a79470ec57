#version 450
#extension GL_GOOGLE_include_directive : require
// AdamW step with decoupled weight decay, one piece of parameters per invocation:
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//   p -= lr * (m / bias1 / (sqrt(v / bias2) + eps) + weight_decay * p).
// param, m and v are each bound twice: read through bindings 4 to 6, written through 0, 2, 3.
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "pieces.glsl"

layout(set = 0, binding = 0) writeonly buffer Param { VEC param[]; };  // n
PIECES(1, grad)                                                        // n
layout(set = 0, binding = 2) writeonly buffer M { VEC m[]; };          // n, first moment
layout(set = 0, binding = 3) writeonly buffer V { VEC v[]; };          // n, second moment
PIECES(4, param_in)
PIECES(5, m_in)
PIECES(6, v_in)

layout(push_constant) uniform Push {
  uint n;  // elements, a multiple of WIDTH
  float lr, beta1, beta2, eps, weight_decay;
  float bias1, bias2;  // 1 - beta1^step and 1 - beta2^step, computed on the host
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.n / WIDTH) return;
  VEC g = grad_at(i);
  VEC m_i = pc.beta1 * m_in_at(i) + (1.0 - pc.beta1) * g;
  VEC v_i = pc.beta2 * v_in_at(i) + (1.0 - pc.beta2) * g * g;
  m[i] = m_i;
  v[i] = v_i;
  VEC p = param_in_at(i);
  param[i] = p - pc.lr * (m_i / pc.bias1 / (sqrt(v_i / pc.bias2) + pc.eps) + pc.weight_decay * p);
}
