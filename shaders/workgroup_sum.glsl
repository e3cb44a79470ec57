// Sum of one float per invocation over a one-dimensional workgroup, returned to every invocation.
// The including shader declares its local size first and enables GL_KHR_shader_subgroup_basic and
// GL_KHR_shader_subgroup_arithmetic. The subgroup partial sums are added in subgroup order, so
// the result is deterministic on a given device. Call it from uniform control flow only.

shared float workgroup_sum_partial[gl_WorkGroupSize.x];

float workgroup_sum(float value) {
  float sum = subgroupAdd(value);
  if (gl_NumSubgroups == 1) return sum;
  if (subgroupElect()) workgroup_sum_partial[gl_SubgroupID] = sum;
  barrier();
  float total = 0.0;
  for (uint s = 0; s < gl_NumSubgroups; s++) total += workgroup_sum_partial[s];
  // The second barrier keeps a following call from overwriting partials still being read.
  barrier();
  return total;
}
