#version 450
#extension GL_GOOGLE_include_directive : require
// Cross-entropy fused with its gradient, one row r per workgroup, w = weights[r], t = targets[r]:
//   loss[r]    = w * (logsumexp(logits[r]) - logits[r][t])
//   dlogits[r] = w * (softmax(logits[r]) - onehot(t))
// A row with w == 0 gets loss 0 and a zero gradient without reading t. So does a row whose
// target is outside [0, vocab).
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;  // workgroup size
layout(local_size_x_id = 0) in;
#include "pieces.glsl"
#include "softmax_reduce.glsl"

PIECES(0, logits)                                                      // rows x vocab
layout(set = 0, binding = 1) readonly buffer T { int targets[]; };     // rows
layout(set = 0, binding = 2) readonly buffer W { float weights[]; };   // rows
layout(set = 0, binding = 3) writeonly buffer LS { float loss[]; };    // rows
layout(set = 0, binding = 4) writeonly buffer DX { VEC dlogits[]; };   // rows x vocab

layout(push_constant) uniform Push {
  uint row_begin;
  uint row_end;
  uint vocab;  // a multiple of WIDTH
} pc;

void main() {
  uint row = pc.row_begin + flat_group_index();
  if (row >= pc.row_end) return;
  uint pieces = pc.vocab / WIDTH;
  uint base = row * pieces;
  uint tid = gl_LocalInvocationID.x;

  // w and t are the same for the whole workgroup, so these branches are uniform.
  float w = weights[row];
  int t = w != 0.0 ? targets[row] : -1;
  if (t < 0 || uint(t) >= pc.vocab) {
    for (uint c = tid; c < pieces; c += WG) dlogits[base + c] = VEC(0.0);
    if (tid == 0) loss[row] = 0.0;
    return;
  }

  float m = NEG_INF;
  float s = 0.0;
  for (uint c = tid; c < pieces; c += WG) online_logsumexp_add_piece(m, s, logits_at(base + c));
  workgroup_logsumexp(m, s);
  float lse = m + log(s);

  for (uint c = tid; c < pieces; c += WG) {
    VEC softmax_c = exp(logits_at(base + c) - lse);
    dlogits[base + c] = w * (softmax_c - piece_one_hot(c, uint(t)));
  }
  float logit_t = piece_element(logits_at(base + uint(t) / WIDTH), uint(t) % WIDTH);
  if (tid == 0) loss[row] = w * ((m - logit_t) + log(s));
}
