#version 450
#extension GL_GOOGLE_include_directive : require
// KL(p || q) fused with its gradient in the student logits, one row r per workgroup:
//   p = exp(teacher_logp[r]), log q = logits[r] - logsumexp(logits[r]), w = weights[r]
//   loss[r]    = w * sum_j p_j (log p_j - log q_j)     (a term with p_j == 0 counts as 0)
//   dlogits[r] = w * (q - p)
// A row with w == 0 gets loss 0 and a zero gradient.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;  // workgroup size
layout(local_size_x_id = 0) in;
#include "pieces.glsl"
#include "softmax_reduce.glsl"

PIECES(0, teacher_logp)                                                    // rows x vocab
PIECES(1, logits)                                                          // rows x vocab
layout(set = 0, binding = 2) readonly buffer W { float weights[]; };       // rows
layout(set = 0, binding = 3) writeonly buffer LS { float loss[]; };        // rows
layout(set = 0, binding = 4) writeonly buffer DX { VEC dlogits[]; };       // rows x vocab

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

  float w = weights[row];  // uniform across the workgroup
  if (w == 0.0) {
    for (uint c = tid; c < pieces; c += WG) dlogits[base + c] = VEC(0.0);
    if (tid == 0) loss[row] = 0.0;
    return;
  }

  float m = NEG_INF;
  float s = 0.0;
  for (uint c = tid; c < pieces; c += WG) online_logsumexp_add_piece(m, s, logits_at(base + c));
  workgroup_logsumexp(m, s);
  float log_s = log(s);

  float kl = 0.0;
  for (uint c = tid; c < pieces; c += WG) {
    VEC log_p = teacher_logp_at(base + c);
    VEC log_q = (logits_at(base + c) - m) - log_s;
    VEC p = exp(log_p);
    // Elements with p = 0 add nothing, even where log_q is -inf.
    kl += piece_sum(piece_where_positive(p, p * (log_p - log_q)));
    dlogits[base + c] = w * (exp(log_q) - p);
  }
  kl = workgroup_sum(kl);
  if (tid == 0) loss[row] = w * kl;
}
