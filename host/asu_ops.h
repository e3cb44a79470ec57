/* Compute ops: each records one or a few dispatches into a command (see asu_vk.h).

   Conventions. Matrices are row-major float32 unless stated otherwise. "T" is the number of token
   rows, "D" the model width. Buffers are whole asu_buffer objects; an op reads and writes from
   byte offset 0 unless it takes an offset. An op that is given sizes that do not fit its buffers
   records an error in the command (asu_cmd_fail) and returns it; it never writes out of bounds.
   Ops return ASU_OK or the error code they recorded. */
#ifndef ASU_OPS_H
#define ASU_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "asu_vk.h"

/* C = alpha * op(A) * op(B) + beta * C, as in BLAS sgemm for row-major storage.
   op(A) is M x K: A is M x K with row stride lda, or K x M when trans_a. op(B) is K x N: B is
   K x N with row stride ldb, or N x K when trans_b. C is M x N with row stride ldc. When beta is
   0, C is not read (so it may hold NaN). a_offset, b_offset and c_offset are in elements. */
typedef struct asu_gemm_args {
  bool trans_a, trans_b;
  uint32_t m, n, k;
  float alpha, beta;
  asu_buffer *a; uint32_t lda; uint32_t a_offset;
  asu_buffer *b; uint32_t ldb; uint32_t b_offset;
  asu_buffer *c; uint32_t ldc; uint32_t c_offset;
} asu_gemm_args;
int asu_op_gemm(asu_cmd *cmd, const asu_gemm_args *args);

/* RMSNorm over rows of x (rows x dim): y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps).
   rstd (rows floats) is written for the backward pass. y may not alias x. */
int asu_op_rmsnorm(asu_cmd *cmd, asu_buffer *x, asu_buffer *w, asu_buffer *y, asu_buffer *rstd,
                   uint32_t rows, uint32_t dim, float eps);
/* Backward of asu_op_rmsnorm given dy: dx += d(loss)/dx and, when dw is not NULL,
   dw += d(loss)/dw (summed over rows). Both accumulate, so callers zero them first. */
int asu_op_rmsnorm_backward(asu_cmd *cmd, asu_buffer *x, asu_buffer *w, asu_buffer *rstd,
                            asu_buffer *dy, asu_buffer *dx, asu_buffer *dw, uint32_t rows,
                            uint32_t dim);

/* Rotary embedding in place on x (rows x n_heads x head_dim), GGUF llama layout: each adjacent
   pair (x[2i], x[2i+1]) of a head is rotated by angle pos * theta^(-2i/head_dim), where pos is
   the int32 position of the row in `positions`. inverse rotates by the negative angle, which is
   the backward pass. */
int asu_op_rope(asu_cmd *cmd, asu_buffer *x, asu_buffer *positions, uint32_t rows,
                uint32_t n_heads, uint32_t head_dim, float theta, bool inverse);

/* Causal grouped-query attention with temperature.
   q: q_rows x n_head x head_dim; k, v: kv_rows x n_kv_head x head_dim; out like q.
   Query head h reads key/value head h / (n_head / n_kv_head).
   q_ranges: q_rows pairs of int32 (first, last): the keys query i attends to, inclusive.
   score(i, j) = scale * q_i . k_j with scale = 1 / (sqrt(head_dim) * tau).
   lse (q_rows x n_head floats) receives log-sum-exp of the scores of each row for backward. */
typedef struct asu_attention_args {
  asu_buffer *q, *k, *v, *out, *lse;
  asu_buffer *q_ranges;
  uint32_t q_rows, kv_rows, n_head, n_kv_head, head_dim;
  float scale;
} asu_attention_args;
int asu_op_attention(asu_cmd *cmd, const asu_attention_args *args);

/* Backward of asu_op_attention. Needs the forward's q, k, v, out, lse and q_ranges, plus
   k_ranges: kv_rows pairs of int32 (first, last), the queries that attend to key j, inclusive.
   Writes (overwrites) dq, dk, dv from dout. delta is scratch of q_rows x n_head floats. */
typedef struct asu_attention_backward_args {
  asu_attention_args fwd;
  asu_buffer *k_ranges;
  asu_buffer *dout, *dq, *dk, *dv, *delta;
} asu_attention_backward_args;
int asu_op_attention_backward(asu_cmd *cmd, const asu_attention_backward_args *args);

/* SwiGLU on n elements: out = silu(gate) * up, silu(x) = x / (1 + exp(-x)). */
int asu_op_swiglu(asu_cmd *cmd, asu_buffer *gate, asu_buffer *up, asu_buffer *out, uint32_t n);
/* Backward of asu_op_swiglu: writes (overwrites) dgate and dup from dout. */
int asu_op_swiglu_backward(asu_cmd *cmd, asu_buffer *gate, asu_buffer *up, asu_buffer *dout,
                           asu_buffer *dgate, asu_buffer *dup, uint32_t n);

/* Embedding lookup: out[t] = table[ids[t]] for t < rows; table is vocab x dim, ids int32.
   An id outside [0, vocab) writes zeros (callers validate ids on the host). */
int asu_op_embedding(asu_cmd *cmd, asu_buffer *table, asu_buffer *ids, asu_buffer *out,
                     uint32_t rows, uint32_t vocab, uint32_t dim);
/* Backward: dtable[v] += sum of dout[t] over rows t with ids[t] == v. The caller passes the rows
   grouped by id: order (rows int32) lists row indices sorted by id and offsets (vocab + 1 int32)
   gives, for id v, the slice order[offsets[v] .. offsets[v+1]). Deterministic, no atomics. */
int asu_op_embedding_backward(asu_cmd *cmd, asu_buffer *order, asu_buffer *offsets,
                              asu_buffer *dout, asu_buffer *dtable, uint32_t rows, uint32_t vocab,
                              uint32_t dim);

/* Log-softmax of rows [row_begin, row_end) of x (rows x cols) into y at the same rows. */
int asu_op_log_softmax(asu_cmd *cmd, asu_buffer *x, asu_buffer *y, uint32_t row_begin,
                       uint32_t row_end, uint32_t cols);

/* Softmax of rows [row_begin, row_end) of x (rows x cols) into y at the same rows. */
int asu_op_softmax(asu_cmd *cmd, asu_buffer *x, asu_buffer *y, uint32_t row_begin,
                   uint32_t row_end, uint32_t cols);
/* Backward of asu_op_softmax from its output y: dx = y * (dy - sum(dy * y)) per row, written
   (not accumulated) at rows [row_begin, row_end). */
int asu_op_softmax_backward(asu_cmd *cmd, asu_buffer *y, asu_buffer *dy, asu_buffer *dx,
                            uint32_t row_begin, uint32_t row_end, uint32_t cols);

/* Cross-entropy on rows [row_begin, row_end) of logits (rows x vocab), fused with its gradient.
   For each row r with weight w = weights[r] (float) and target t = targets[r] (int32):
   loss[r] = w * (logsumexp(logits[r]) - logits[r][t]) and
   dlogits[r] = w * (softmax(logits[r]) - onehot(t)). A row with w == 0 gets loss 0 and a zero
   gradient and its target is not read. dlogits rows outside the range are not touched. */
int asu_op_cross_entropy(asu_cmd *cmd, asu_buffer *logits, asu_buffer *targets,
                         asu_buffer *weights, asu_buffer *loss, asu_buffer *dlogits,
                         uint32_t row_begin, uint32_t row_end, uint32_t vocab);

/* KL(p || q) on rows [row_begin, row_end), fused with its gradient with respect to the student
   logits: p = exp(teacher_logp[r]) is fixed, q = softmax(logits[r]).
   loss[r] = w * sum_j p_j (log p_j - log q_j), dlogits[r] = w * (q - p), w = weights[r].
   A row with w == 0 gets loss 0 and a zero gradient. */
int asu_op_kl(asu_cmd *cmd, asu_buffer *teacher_logp, asu_buffer *logits, asu_buffer *weights,
              asu_buffer *loss, asu_buffer *dlogits, uint32_t row_begin, uint32_t row_end,
              uint32_t vocab);

/* AdamW on n parameters, decoupled weight decay:
   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   p -= lr * (m / bias1 / (sqrt(v / bias2) + eps) + weight_decay * p),
   with bias1 = 1 - b1^step and bias2 = 1 - b2^step (step counts from 1). */
typedef struct asu_adamw_args {
  asu_buffer *param, *grad, *m, *v;
  uint32_t n;
  uint32_t step;
  float lr, beta1, beta2, eps, weight_decay;
} asu_adamw_args;
int asu_op_adamw(asu_cmd *cmd, const asu_adamw_args *args);

/* y = alpha * x + y on n elements (gradient and residual accumulation). */
int asu_op_axpy(asu_cmd *cmd, float alpha, asu_buffer *x, asu_buffer *y, uint32_t n);

/* Fails with ASU_ERR_INVALID, naming the variable, when ASU_GEMM_VARIANT or
   ASU_ATTENTION_VARIANT has a value that no kernel knows. */
int asu_ops_check_environment(asu_error *err);

#endif
