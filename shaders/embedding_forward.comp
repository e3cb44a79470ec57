#version 450
#extension GL_GOOGLE_include_directive : require
// Embedding lookup, one invocation per output element: out[t][d] = table[ids[t]][d], or 0 when
// ids[t] is outside [0, vocab). Built with TEXEL defined, it reads the table through a texel
// buffer, which also widens an F16 table.
#include "common.glsl"

layout(local_size_x_id = 0) in;

#ifdef TEXEL
// Texels of 4 elements, F32 or F16 as the buffer's view holds them.
layout(set = 0, binding = 0) uniform samplerBuffer table_texels;      // vocab x dim
float table_at(uint e) { return texelFetch(table_texels, int(e / 4))[e % 4]; }
#else
layout(set = 0, binding = 0) readonly buffer Table { float table[]; };  // vocab x dim
float table_at(uint e) { return table[e]; }
#endif
layout(set = 0, binding = 1) readonly buffer Ids { int ids[]; };        // rows
layout(set = 0, binding = 2) writeonly buffer Out { float out_[]; };    // rows x dim

layout(push_constant) uniform Push {
  uint rows, vocab, dim;
} pc;

void main() {
  uint index = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (index >= pc.rows * pc.dim) return;
  uint t = index / pc.dim, d = index % pc.dim;
  int id = ids[t];
  out_[index] = id >= 0 && uint(id) < pc.vocab ? table_at(uint(id) * pc.dim + d) : 0.0;
}
