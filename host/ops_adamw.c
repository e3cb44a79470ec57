/* AdamW optimiser step. */
#include <math.h>
#include <stdio.h>

#include "ops_internal.h"

/* Mirrors the push constants of shaders/adamw.comp. */
typedef struct adamw_push {
  uint32_t n;
  float lr, beta1, beta2, eps, weight_decay;
  float bias1, bias2;
} adamw_push;
_Static_assert(sizeof(adamw_push) == 32, "adamw_push must match the shader");

int asu_op_adamw(asu_cmd *cmd, const asu_adamw_args *args) {
  char op[80];
  snprintf(op, sizeof op, "adamw (n %u, step %u)", args->n, args->step);
  if (args->step == 0) {
    asu_cmd_fail(cmd, ASU_ERR_INVALID, "%s: step counts from 1", op);
    return ASU_ERR_INVALID;
  }
  uint64_t bytes = (uint64_t)args->n * sizeof(float);
  if (!asu_ops_fits(cmd, op, "param", args->param, bytes) ||
      !asu_ops_fits(cmd, op, "grad", args->grad, bytes) ||
      !asu_ops_fits(cmd, op, "m", args->m, bytes) || !asu_ops_fits(cmd, op, "v", args->v, bytes))
    return asu_cmd_status(cmd, NULL);
  if (args->n == 0) return asu_cmd_status(cmd, NULL);

  /* param, m and v are read through bindings 4 to 6 and written through 0, 2 and 3. */
  asu_buffer *buffers[] = {args->param, args->grad, args->m, args->v,
                           args->param, args->m,    args->v};
  bool texel = asu_ops_use_texels(cmd, buffers, 2, args->n);
  uint32_t local_size = ASU_OPS_LOCAL_SIZE;
  asu_kernel *kernel = asu_ops_kernel_pieces(cmd, "adamw", texel, 0x72, &local_size, 1, 7,
                                             sizeof(adamw_push));
  if (!kernel) return asu_cmd_status(cmd, NULL);
  adamw_push push = {
      .n = args->n, .lr = args->lr, .beta1 = args->beta1, .beta2 = args->beta2,
      .eps = args->eps, .weight_decay = args->weight_decay,
      .bias1 = (float)(1.0 - pow(args->beta1, args->step)),
      .bias2 = (float)(1.0 - pow(args->beta2, args->step)),
  };
  asu_ops_dispatch_1d(cmd, kernel, buffers, &push, texel ? args->n / 4 : args->n, local_size);
  return asu_cmd_status(cmd, NULL);
}
