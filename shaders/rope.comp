#version 450
#extension GL_GOOGLE_include_directive : require
// Rotary embedding in place, one invocation per adjacent pair (x[2i], x[2i+1]) of a head:
// the pair is rotated by angle = pos * theta^(-2i / head_dim), or by -angle for the inverse.
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) buffer X { float x[]; };                 // rows x n_heads x head_dim
layout(set = 0, binding = 1) readonly buffer Positions { int pos[]; };  // rows

layout(push_constant) uniform Push {
  uint rows, n_heads, head_dim;
  float log2_theta;  // log2(theta), rounded once on the host
  float direction;   // 1 forward, -1 inverse
} pc;

// 2 pi as a sum of two floats for range reduction. TWO_PI_HI = 201 / 32 has 8 significant bits,
// so turns * TWO_PI_HI is exact for |turns| < 2^16, that is for |angle| up to about 4e5.
const float TWO_PI_HI = 6.28125;
const float TWO_PI_LO = 1.9353071795864769e-3;

void main() {
  uint half_dim = pc.head_dim / 2;
  uint pair = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (pair >= pc.rows * pc.n_heads * half_dim) return;
  uint i = pair % half_dim;
  uint row = pair / (half_dim * pc.n_heads);

  // theta^(-2i/head_dim) = 2^(-(2i/head_dim) * log2(theta)).
  // NOTE: even correctly rounded, a float frequency is off by a few 2^-24 relative, so at
  // position 2048 the angle is off by up to about 1e-4 rad for head_dim 256 (3e-6 for 8).
  float freq = exp2(-(float(2 * i) / float(pc.head_dim)) * pc.log2_theta);
  float angle = float(pos[row]) * freq;
  // sin and cos are only accurate near [-pi, pi], so reduce the angle there first.
  float turns = round(angle / (TWO_PI_HI + TWO_PI_LO));
  angle = (angle - turns * TWO_PI_HI) - turns * TWO_PI_LO;
  float c = cos(angle);
  float s = pc.direction * sin(angle);

  uint index = 2 * pair;
  float x0 = x[index], x1 = x[index + 1];
  x[index] = x0 * c - x1 * s;
  x[index + 1] = x0 * s + x1 * c;
}
