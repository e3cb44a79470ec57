#version 450
#extension GL_GOOGLE_include_directive : require
// AdamW step with decoupled weight decay, one invocation per parameter:
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//   p -= lr * (m / bias1 / (sqrt(v / bias2) + eps) + weight_decay * p).
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) buffer Param { float param[]; };       // n
layout(set = 0, binding = 1) readonly buffer Grad { float grad[]; };  // n
layout(set = 0, binding = 2) buffer M { float m[]; };               // n, first moment
layout(set = 0, binding = 3) buffer V { float v[]; };               // n, second moment

layout(push_constant) uniform Push {
  uint n;
  float lr, beta1, beta2, eps, weight_decay;
  float bias1, bias2;  // 1 - beta1^step and 1 - beta2^step, computed on the host
} pc;

void main() {
  uint i = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.n) return;
  float g = grad[i];
  float m_i = pc.beta1 * m[i] + (1.0 - pc.beta1) * g;
  float v_i = pc.beta2 * v[i] + (1.0 - pc.beta2) * g * g;
  m[i] = m_i;
  v[i] = v_i;
  float p = param[i];
  param[i] = p - pc.lr * (m_i / pc.bias1 / (sqrt(v_i / pc.bias2) + pc.eps) + pc.weight_decay * p);
}
