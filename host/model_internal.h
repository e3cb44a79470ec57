/* Internal structures of the engine: weights on the device, LoRA adapters, packed batches and
   the activations of a forward pass. Shared by host/model.c, forward.c, backward.c, lora.c,
   train.c and generate.c. */
#ifndef ASU_MODEL_INTERNAL_H
#define ASU_MODEL_INTERNAL_H

#include "asu_engine.h"
#include "asu_gguf.h"
#include "asu_ops.h"
#include "asu_tokenizer.h"
#include "asu_vk.h"

/* The weights of one transformer block, in GGUF names blk.N.<name>. */
enum asu_layer_weight {
  ASU_W_ATTN_NORM, ASU_W_Q, ASU_W_K, ASU_W_V, ASU_W_O,
  ASU_W_FFN_NORM, ASU_W_GATE, ASU_W_UP, ASU_W_DOWN,
  ASU_W_PER_LAYER
};

/* One weight tensor on the device. A matrix W maps `cols` inputs to `rows` outputs (y = W x),
   stored row-major as GGUF stores it; a norm weight has rows = 1. */
typedef struct asu_weight {
  char name[48];
  asu_buffer *buf;
  uint32_t rows, cols;
} asu_weight;

/* Replaces the model's F16 weight buffers with F32 ones read again from its file, for training
   every weight. */
int asu_model_widen_weights(asu_model *m, asu_error *err);
/* Downloads a weight as F32 (widening F16) into a new array that the caller frees. */
int asu_weight_download(const asu_weight *w, float **out, asu_error *err);

struct asu_model {
  char *path;
  asu_device *dev;
  asu_gguf *gguf;          /* kept open: its metadata is copied into saved models */
  asu_tokenizer *tok;
  asu_model_config cfg;
  asu_weight tok_embd, output_norm, output;
  bool tied_output;        /* output.weight is missing, so the embedding is used */
  asu_weight (*layers)[ASU_W_PER_LAYER];
};

/* The projections LoRA can adapt, in asu_lora_target bit order. */
#define ASU_LORA_PROJECTIONS 7
extern const enum asu_layer_weight asu_lora_projection_weight[ASU_LORA_PROJECTIONS];
extern const char *const asu_lora_projection_name[ASU_LORA_PROJECTIONS];

/* A LoRA pair for one projection: y += scale * B (A x); A is rank x in, B is out x rank. */
typedef struct asu_lora_pair {
  asu_buffer *a, *b;
  uint32_t in, out;
} asu_lora_pair;

struct asu_lora {
  asu_device *dev;
  uint32_t n_layers, rank, targets;
  uint32_t n_head, n_kv_head, head_dim; /* for the Hugging Face row order of q and k */
  char *base_model;                     /* path of the model it was made for */
  float alpha, scale;
  asu_lora_pair (*pairs)[ASU_LORA_PROJECTIONS];  /* buffers NULL for projections not targeted */
  float *host; /* the weights while evicted (asu_lora_evict), else NULL */
};

/* PEFT module names of the projections, in asu_lora_target bit order. */
extern const char *const asu_peft_module[ASU_LORA_PROJECTIONS];
/* Writes the PEFT tensor name of the A or B (`which`) matrix of a projection of a layer. */
void asu_peft_tensor_name(char *buf, size_t cap, uint32_t layer, int projection, char which);
/* GGUF llama files order the rows of q and k for rotary pairs (2i, 2i+1) of each head, and
   Hugging Face as halves (i, i + head_dim/2). Returns the Hugging Face row of a GGUF row of the
   B matrix of a projection; rows of v, o and the MLP keep their order. */
uint32_t asu_peft_row(const asu_lora *l, int projection, uint32_t row);

/* Allocates an adapter for m with no buffers yet, after checking its settings. */
int asu_lora_alloc(asu_model *m, uint32_t rank, float alpha, uint32_t targets, asu_lora **out,
                   asu_error *err);
/* Creates an adapter for m with A drawn uniformly from +-1/sqrt(in) (seeded) and B zero, so that
   it starts as the identity. */
int asu_lora_create(asu_model *m, uint32_t rank, float alpha, uint32_t targets, uint64_t seed,
                    asu_lora **out, asu_error *err);

/* A new adapter for m with the weights, rank, alpha and targets of src (on the device). */
int asu_lora_copy(asu_model *m, const asu_lora *src, asu_lora **out, asu_error *err);

/* Examples packed into one batch of rows: each example is a contiguous run of rows that attends
   only within itself, with positions restarting at 0. */
typedef struct asu_batch {
  uint32_t rows, n_examples;
  int32_t *ids, *positions, *targets; /* targets[r] = ids[r + 1] within an example, else -1 */
  int32_t *q_ranges, *k_ranges;       /* pairs per row, see asu_op_attention */
  uint32_t *example_begin;            /* n_examples + 1 row offsets */
  uint32_t *answer_begin;             /* per example, absolute row of its first answer token */
  asu_buffer *ids_buf, *positions_buf, *targets_buf, *q_ranges_buf, *k_ranges_buf;
  asu_buffer *embed_order_buf, *embed_offsets_buf; /* rows grouped by id for embedding backward */
} asu_batch;

int asu_batch_create(asu_model *m, const asu_tokens *examples, size_t n, asu_batch **out,
                     asu_error *err);
void asu_batch_destroy(asu_batch *b);

/* Activations of one layer for `rows` rows, kept for the backward pass. */
typedef struct asu_layer_acts {
  asu_buffer *x;          /* rows x dim: input of the layer (the residual stream) */
  asu_buffer *h_attn, *rstd_attn;
  asu_buffer *q, *k, *v;  /* after rotary embedding */
  asu_buffer *att, *lse;
  asu_buffer *x_mid;      /* rows x dim: residual after attention */
  asu_buffer *h_ffn, *rstd_ffn;
  asu_buffer *gate, *up, *act;
  asu_buffer *lora_t[ASU_LORA_PROJECTIONS]; /* rows x rank: A x, when an adapter is present */
} asu_layer_acts;

typedef struct asu_acts {
  uint32_t rows, lora_rank, n_layers;
  bool shared;  /* the layers share one set of buffers (asu_acts_create_shared) */
  asu_layer_acts *layers;
  asu_buffer *x_final, *h_final, *rstd_final, *logits;
} asu_acts;

/* Activations that the backward pass reads: every layer has its own buffers. */
int asu_acts_create(asu_model *m, uint32_t rows, uint32_t lora_rank, asu_acts **out,
                    asu_error *err);
/* Activations for a forward pass only (generation, evaluation): the layers share one set of
   buffers, each overwritten by the next layer, except the residual stream, which alternates
   between two buffers since a layer reads one and writes the other. Memory then stays that of
   one layer instead of growing with the depth. */
int asu_acts_create_shared(asu_model *m, uint32_t rows, uint32_t lora_rank, asu_acts **out,
                           asu_error *err);
void asu_acts_destroy(asu_acts *a);

/* A key/value cache for generation: per layer, context_length rows of n_kv_head * head_dim. */
typedef struct asu_kv_cache {
  uint32_t capacity, used;
  asu_buffer **k, **v;
} asu_kv_cache;

/* The device state of one generation: a key/value cache for `capacity` tokens, activations for
   up to max_rows new rows a step, and the logits of the last row of the latest step. */
typedef struct asu_decoder {
  asu_model *m;
  asu_kv_cache kv;
  asu_acts *acts;
  asu_buffer *ids, *positions, *q_ranges;
  float *scales, *logits;
  int32_t *host_positions, *host_ranges;
  uint32_t max_rows;
  asu_cmd *cmd;
} asu_decoder;

int asu_decoder_init(asu_decoder *d, asu_model *m, uint32_t capacity, uint32_t max_rows,
                     uint32_t rank, asu_error *err);
/* Runs the model with an optional adapter on n new tokens after the cached ones, downloads the
   last row's logits into d->logits and advances the cache. */
int asu_decoder_step(asu_decoder *d, const asu_lora *lora, const int32_t *ids, uint32_t n,
                     asu_error *err);
/* The index of the largest of x[0 .. n - 1], the first of equals. */
int32_t asu_argmax(const float *x, uint32_t n);
/* Frees what asu_decoder_init made, also after it failed. */
void asu_decoder_free(asu_decoder *d);

/* Records the forward pass of rows given by ids/positions/q_ranges into a.
   layer_scale[l] is the attention score scale of layer l (1/(sqrt(head_dim) * tau)).
   With kv set, the new keys and values are appended to the cache at kv->used and attention
   reads the cache (generation); kv->used is not advanced here. With kv_slots as well, new row i
   goes to cache row kv_slots[i] instead (host memory; several sequences share one cache, each
   in its own rows, and q_ranges keep them apart). logits_rows limits the output projection to
   the last logits_rows rows (written at the start of a->logits); 0 means all. */
typedef struct asu_forward_args {
  const asu_lora *lora;
  asu_buffer *ids, *positions, *q_ranges;
  uint32_t rows;
  const float *layer_scale;
  asu_kv_cache *kv;
  const uint32_t *kv_slots;
  uint32_t logits_rows;
} asu_forward_args;
int asu_forward_record(asu_cmd *cmd, asu_model *m, const asu_forward_args *args, asu_acts *a);

/* Gradient buffers: for every model weight (full training) or every LoRA pair (adapter
   training). Matches the layout of the model or adapter it was made for. */
typedef struct asu_grads {
  uint32_t n_layers;
  asu_weight tok_embd, output_norm, output;        /* full training only */
  asu_weight (*layers)[ASU_W_PER_LAYER];           /* full training only */
  asu_lora_pair (*lora)[ASU_LORA_PROJECTIONS];     /* adapter training only */
} asu_grads;

int asu_grads_create_full(asu_model *m, asu_grads **out, asu_error *err);
int asu_grads_create_lora(const asu_lora *l, asu_grads **out, asu_error *err);
void asu_grads_destroy(asu_grads *g);
/* Records zeroing of every gradient buffer. */
void asu_grads_zero(asu_cmd *cmd, asu_grads *g);

/* Scratch for the backward pass, sized for `rows` rows. */
typedef struct asu_backward_scratch asu_backward_scratch;
int asu_backward_scratch_create(asu_model *m, uint32_t rows, uint32_t lora_rank,
                                asu_backward_scratch **out, asu_error *err);
void asu_backward_scratch_destroy(asu_backward_scratch *s);

/* Records the backward pass from dlogits (rows x vocab) through the forward recorded in a,
   accumulating into g (full training when g->layers is set, else LoRA training with lora). */
int asu_backward_record(asu_cmd *cmd, asu_model *m, const asu_lora *lora, const asu_batch *b,
                        const float *layer_scale, asu_acts *a, asu_buffer *dlogits,
                        asu_backward_scratch *s, asu_grads *g);

/* Fills layer_scale for every layer: 1/(sqrt(head_dim) * tau) where the layer mask selects the
   layer (mask 0 selects all), else 1/sqrt(head_dim). */
void asu_layer_scales(const asu_model *m, float tau, uint64_t layer_mask, float *layer_scale);

#endif
