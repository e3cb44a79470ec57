#version 450
#extension GL_GOOGLE_include_directive : require
// Embedding lookup, one piece per invocation: out[t][d] = table[ids[t]][d], or 0 when ids[t] is
// outside [0, vocab). The texel build also widens an F16 table.
#include "common.glsl"

layout(local_size_x_id = 0) in;
#include "pieces.glsl"

PIECES(0, table)                                                    // vocab x dim
layout(set = 0, binding = 1) readonly buffer Ids { int ids[]; };    // rows
layout(set = 0, binding = 2) writeonly buffer Out { VEC out_[]; };  // rows x dim

layout(push_constant) uniform Push {
  uint rows, vocab, dim;  // dim a multiple of WIDTH
} pc;

void main() {
  uint piece = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint row_pieces = pc.dim / WIDTH;
  if (piece >= pc.rows * row_pieces) return;
  uint t = piece / row_pieces, c = piece % row_pieces;
  int id = ids[t];
  out_[piece] = id >= 0 && uint(id) < pc.vocab ? table_at(uint(id) * row_pieces + c) : VEC(0.0);
}
