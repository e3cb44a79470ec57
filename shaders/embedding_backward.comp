#version 450
#extension GL_GOOGLE_include_directive : require
// Embedding backward, one invocation per table element: dtable[v][d] += sum of dout[t][d] over
// the rows t = order[s] with s in [offsets[v], offsets[v + 1]). Each element is summed in `order`
// order by one invocation, so the result is deterministic. Offsets are clamped to [0, rows] and
// row indices outside [0, rows) are skipped.
#include "common.glsl"

layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Order { int order[]; };      // rows
layout(set = 0, binding = 1) readonly buffer Offsets { int offsets[]; };  // vocab + 1
layout(set = 0, binding = 2) readonly buffer Dout { float dout[]; };      // rows x dim
layout(set = 0, binding = 3) buffer Dtable { float dtable[]; };           // vocab x dim, accumulated

layout(push_constant) uniform Push {
  uint rows, vocab, dim;
} pc;

uint clamp_offset(int offset) { return uint(clamp(offset, 0, int(pc.rows))); }

void main() {
  uint index = flat_group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (index >= pc.vocab * pc.dim) return;
  uint v = index / pc.dim, d = index % pc.dim;
  uint begin = clamp_offset(offsets[v]), end = clamp_offset(offsets[v + 1]);
  float sum = 0.0;
  for (uint s = begin; s < end; s++) {
    uint t = uint(order[s]);  // negative ids wrap to large values and are skipped
    if (t < pc.rows) sum += dout[t * pc.dim + d];
  }
  if (begin < end) dtable[index] += sum;
}
