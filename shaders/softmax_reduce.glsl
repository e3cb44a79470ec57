// Workgroup reductions for the row-wise softmax kernels, which run one workgroup per row:
// subgroup operations within each subgroup, then shared memory across subgroups. Every
// invocation gets the result. Call them from uniform control flow only.
// The including shader declares its local size and includes pieces.glsl before this file.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "workgroup_sum.glsl"

const float NEG_INF = -1.0 / 0.0;

shared float workgroup_max_partial[gl_WorkGroupSize.x];

float workgroup_max(float value) {
  float result = subgroupMax(value);
  if (gl_NumSubgroups == 1) return result;
  if (subgroupElect()) workgroup_max_partial[gl_SubgroupID] = result;
  barrier();
  result = NEG_INF;
  for (uint s = 0; s < gl_NumSubgroups; s++) result = max(result, workgroup_max_partial[s]);
  barrier();  // a following call may overwrite the partials only after all have read them
  return result;
}

// Adds x to a running pair (m, s): the max m of the values so far and the sum s of exp(value - m).
// The pair starts as (-inf, 0); values of -inf add nothing.
void online_logsumexp_add(inout float m, inout float s, float x) {
  if (x > m) {
    s = s * exp(m - x) + 1.0;
    m = x;
  } else if (m != NEG_INF) {
    s += exp(x - m);
  }
}

// online_logsumexp_add for each element of a piece.
void online_logsumexp_add_piece(inout float m, inout float s, VEC x) {
  for (uint i = 0; i < WIDTH; i++) online_logsumexp_add(m, s, piece_element(x, i));
}

// Merges every invocation's (m, s) pair into the workgroup's pair, so that
// logsumexp = m + log(s) over all values the workgroup added.
void workgroup_logsumexp(inout float m, inout float s) {
  float row_max = workgroup_max(m);
  float rescaled = m == NEG_INF ? 0.0 : s * exp(m - row_max);
  s = workgroup_sum(rescaled);
  m = row_max;
}
