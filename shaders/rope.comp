#version 450
#extension GL_GOOGLE_include_directive : require
// Rotary embedding in place: each adjacent pair (x[2i], x[2i+1]) of a head is rotated by
// angle = pos * theta^(-2i / head_dim), or by -angle for the inverse. An invocation rotates the
// pairs of one piece: one pair (two floats) in the plain build, two pairs in the texel build.
// x is bound twice: read through binding 2 and written through binding 0.
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "pieces.glsl"

layout(set = 0, binding = 0) writeonly buffer X { VEC x[]; };         // rows x n_heads x head_dim
layout(set = 0, binding = 1) readonly buffer Positions { int pos[]; };  // rows
PIECES(2, x_in)

layout(push_constant) uniform Push {
  uint rows, n_heads, head_dim;
  float log2_theta;  // log2(theta), rounded once on the host
  float direction;   // 1 forward, -1 inverse
} pc;

// 2 pi as a sum of two floats for range reduction. TWO_PI_HI = 201 / 32 has 8 significant bits,
// so turns * TWO_PI_HI is exact for |turns| < 2^16, that is for |angle| up to about 4e5.
const float TWO_PI_HI = 6.28125;
const float TWO_PI_LO = 1.9353071795864769e-3;

// The pair `pair` (counted over all rows and heads), rotated.
vec2 rotate(vec2 xy, uint pair) {
  uint half_dim = pc.head_dim / 2;
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
  return vec2(xy.x * c - xy.y * s, xy.x * s + xy.y * c);
}

void main() {
  uint piece = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint elements = pc.rows * pc.n_heads * pc.head_dim;
#ifdef TEXEL
  // Pairs 2 piece and 2 piece + 1 lie in the same head, as head_dim is a multiple of 4.
  if (piece >= elements / 4) return;
  vec4 v = x_in_at(piece);
  x[piece] = vec4(rotate(v.xy, 2 * piece), rotate(v.zw, 2 * piece + 1));
#else
  // A piece is one float here, so the pair spans pieces 2 pair and 2 pair + 1.
  uint pair = piece;
  if (pair >= elements / 2) return;
  vec2 xy = rotate(vec2(x_in_at(2 * pair), x_in_at(2 * pair + 1)), pair);
  x[2 * pair] = xy.x;
  x[2 * pair + 1] = xy.y;
#endif
}
