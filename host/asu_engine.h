/* The engine: what a server needs from libasu. A base model loaded on a Vulkan device, text
   generation with an optional LoRA adapter, ASU unlearning jobs that produce adapters, and
   adapters saved and loaded in the Hugging Face PEFT layout. No gRPC types appear here.

   Thread safety: one asu_model may serve several asu_generate calls and one training run at the
   same time from different threads. An asu_lora is immutable once created, so any number of
   generations may read it; the caller keeps it alive until those calls return. */
#ifndef ASU_ENGINE_H
#define ASU_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asu_dataset.h"
#include "asu_error.h"

typedef struct asu_model asu_model;
typedef struct asu_lora asu_lora;

typedef struct asu_model_config {
  uint32_t dim, n_layers, n_head, n_kv_head, head_dim, ffn_dim, vocab, context_length;
  float norm_eps, rope_theta;
} asu_model_config;

/* Loads a llama GGUF model onto a device (selector as in asu_device_create). */
int asu_model_load(const char *gguf_path, const char *device_selector, asu_model **out,
                   asu_error *err);
void asu_model_destroy(asu_model *m);
const asu_model_config *asu_model_get_config(const asu_model *m);
const char *asu_model_path(const asu_model *m);

/* Sampling settings. temperature 0 is greedy; top_p 1 disables nucleus sampling. */
typedef struct asu_sampling {
  uint32_t max_tokens;
  float temperature;
  float top_p;
  uint64_t seed;
} asu_sampling;

/* Called once per decoded token with its text (possibly empty). Returning nonzero stops the
   generation early without an error. */
typedef int (*asu_piece_fn)(void *user, int32_t token, const char *text, size_t len);

/* Generates from prompt (UTF-8; "" starts from BOS alone) with adapter (NULL for the base
   model) until EOS, max_tokens or the context length. */
int asu_generate(asu_model *m, const asu_lora *adapter, const char *prompt,
                 const asu_sampling *sampling, asu_piece_fn on_piece, void *user,
                 asu_error *err);

/* Called with the index of the prompt for each token of asu_generate_greedy_batch. Returning
   nonzero ends that prompt's generation, not the others'. */
typedef int (*asu_batch_piece_fn)(void *user, size_t index, int32_t token, const char *text,
                                  size_t len);

/* Greedy generation (temperature 0) from each of n prompts, token for token what asu_generate
   gives for each alone, with one forward pass a step for up to 32 of them at once. */
int asu_generate_greedy_batch(asu_model *m, const asu_lora *adapter, const char *const *prompts,
                              size_t n, uint32_t max_tokens, asu_batch_piece_fn on_piece,
                              void *user, asu_error *err);

/* Projections a LoRA adapter can target, as a bit mask. */
enum asu_lora_target {
  ASU_LORA_Q = 1 << 0, ASU_LORA_K = 1 << 1, ASU_LORA_V = 1 << 2, ASU_LORA_O = 1 << 3,
  ASU_LORA_GATE = 1 << 4, ASU_LORA_UP = 1 << 5, ASU_LORA_DOWN = 1 << 6,
  ASU_LORA_ALL = 0x7f,
};

/* Unlearning methods. The forget term of each, over the forget answers:
   - asu_gd, asu_kl: KL(p_teacher || p_student), the teacher being the frozen model with
     attention at temperature tau; the retain term is NLL (asu_gd) or KL to the frozen model
     (asu_kl).
   - ga: gradient ascent, minus the NLL; no retain term.
   - gd: gradient difference, minus the NLL.
   - npo: negative preference optimisation, (2 / beta) log(1 + (p_student / p_frozen)^beta)
     per answer, the probabilities being of the whole answer.
   - simnpo: the same without the frozen model and on the mean log-probability per token:
     (2 / beta) log(1 + exp(beta * mean log p_student + gamma)).
   - idk_nll: the NLL of an "I don't know" answer in place of each forget answer.
   - me_gd: KL(uniform || p_student), which maximises the entropy of every answer position.
   Every method but ga has the retain term NLL unless said otherwise above. */
enum asu_method {
  ASU_METHOD_ASU_GD = 0,
  ASU_METHOD_ASU_KL = 1,
  ASU_METHOD_GA = 2,
  ASU_METHOD_GD = 3,
  ASU_METHOD_NPO = 4,
  ASU_METHOD_SIMNPO = 5,
  ASU_METHOD_IDK_NLL = 6,
  ASU_METHOD_ME_GD = 7,
};
#define ASU_METHOD_COUNT 8

/* "asu_gd", "asu_kl", "ga", "gd", "npo", "simnpo", "idk_nll", "me_gd". */
const char *asu_method_name(enum asu_method m);
/* Parses one of those names. Returns 0, or -1 for any other name. */
int asu_method_parse(const char *name, enum asu_method *out);
/* The forget set as idk_nll trains on it: each question with one of a fixed list of "I don't
   know" answers, picked by the example's index and seed. out starts empty. */
int asu_idk_dataset(const asu_dataset *forget, uint64_t seed, asu_dataset *out, asu_error *err);

/* Settings of an unlearning job. asu_unlearn_defaults fills the documented defaults. */
typedef struct asu_unlearn_config {
  enum asu_method method;
  float tau;                /* attention temperature of the teacher */
  uint64_t tau_layers;      /* bit i set: layer i of the teacher runs at tau; 0 means all */
  uint32_t lora_rank;
  float lora_alpha;
  uint32_t lora_targets;    /* asu_lora_target mask */
  float learning_rate;
  float weight_decay;
  float beta1, beta2, adam_eps;
  uint32_t steps;           /* full-batch optimiser steps */
  float forget_weight, retain_weight;
  uint64_t seed;
  const char *prompt_template; /* NULL for ASU_DEFAULT_TEMPLATE */
  /* An existing directory for checkpoints, or NULL for none. Every checkpoint_every steps the
     trainer saves its state there, and a run that finds a checkpoint of the same settings and
     data there resumes from it instead of starting over. */
  const char *checkpoint_dir;
  uint32_t checkpoint_every;
  /* NPO and SimNPO: beta (0: 0.1 for npo, 2.5 for simnpo) and SimNPO's margin gamma. */
  float beta, gamma;
  /* Dispatches per queue submission of a training step; 0 submits each step whole. A server
     that generates while it trains sets it, so that a generated token waits for one slice of
     a step at most (asu_cmd_set_flush_every). */
  uint32_t dispatches_per_submit;
  /* With snapshot_dir set, the adapter is saved in the PEFT layout to
     snapshot_dir/step-NNNNN at step 0, every snapshot_every steps and at the last step. Each
     snapshot is the adapter whose losses that step reports, so a run can be evaluated step by
     step. */
  const char *snapshot_dir;
  uint32_t snapshot_every;
  /* Continual unlearning: with start set, the run builds on that adapter. The frozen model that
     the teacher and the reference terms see is m with start, and the trained adapter begins as
     a copy of it, with its rank, alpha and targets (lora_* are then ignored). */
  const asu_lora *start;
} asu_unlearn_config;

void asu_unlearn_defaults(asu_unlearn_config *cfg);

/* Progress of a job, reported after every step (step 0 is the state before training). A
   resumed run reports from the step of its checkpoint on. */
typedef struct asu_progress {
  uint32_t step, total_steps;
  double loss;            /* forget_weight * forget + retain_weight * retain */
  double forget;          /* mean over forget examples of mean answer KL(p_tau || p_theta) */
  double retain;          /* retain NLL (asu_gd) or KL from the base model (asu_kl) */
  double heldout_nll;     /* mean NLL per token on held-out text: measured at step 0, every 25
                             steps and at the last step, else the latest measured value */
} asu_progress;

/* Called after each step; returning nonzero cancels the job (asu_unlearn then fails with
   ASU_ERR_CANCELLED and produces no adapter). */
typedef int (*asu_progress_fn)(void *user, const asu_progress *p);

/* Trains a LoRA adapter that makes m forget `forget` while keeping `retain`. heldout may be
   NULL: the model's own greedy story from BOS is then the held-out text. */
int asu_unlearn(asu_model *m, const asu_unlearn_config *cfg, const asu_dataset *forget,
                const asu_dataset *retain, const asu_dataset *heldout,
                asu_progress_fn on_progress, void *user, asu_lora **out, asu_error *err);

/* Mean NLL per answer token of each example of ds (its EOS included) under m with lora (NULL:
   the base model), into out[0 .. ds->count - 1]. exp(-out[i]) is the normalised probability of
   the answer that TOFU reports. prompt_template NULL is ASU_DEFAULT_TEMPLATE. */
int asu_answer_nll(asu_model *m, const asu_lora *lora, const char *prompt_template,
                   const asu_dataset *ds, double *out, asu_error *err);

/* Per example: the mean answer NLL as asu_answer_nll gives it, exact memorisation (the share
   of answer tokens that are the argmax of the logits predicting them, the true prefix given)
   and extraction strength (1 - k / |answer|, k the fewest answer tokens after which greedy
   decoding reproduces the rest; with the true prefix given, k follows the last token that is
   not the argmax). These two leave out the answer's closing EOS. Downloads the logits, so it
   costs more than asu_answer_nll. */
typedef struct asu_answer_stats {
  double nll, exact_match, extraction;
} asu_answer_stats;
int asu_answer_measure(asu_model *m, const asu_lora *lora, const char *prompt_template,
                       const asu_dataset *ds, asu_answer_stats *out, asu_error *err);

/* Full-weight fine-tuning: mean answer NLL over all examples, full batch, AdamW. */
typedef struct asu_finetune_config {
  uint32_t steps;
  float learning_rate, weight_decay, beta1, beta2, adam_eps;
  const char *prompt_template; /* NULL for ASU_DEFAULT_TEMPLATE */
} asu_finetune_config;

void asu_finetune_defaults(asu_finetune_config *cfg);

/* Trains every weight of m in place on data; progress reports the NLL as both loss and retain.
   Not to be called while m serves generations. */
int asu_finetune(asu_model *m, const asu_finetune_config *cfg, const asu_dataset *data,
                 asu_progress_fn on_progress, void *user, asu_error *err);

/* Writes m's current weights as a GGUF file with the metadata and tokenizer of the file it was
   loaded from (written atomically). */
int asu_model_save(const asu_model *m, const char *path, asu_error *err);

/* Saves an adapter as adapter_model.safetensors plus adapter_config.json in dir (created if
   missing), each written atomically. Tensor names follow PEFT:
   base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight and
   base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight. */
int asu_lora_save(const asu_lora *a, const char *dir, asu_error *err);
/* Loads an adapter saved in that layout, checking every tensor's name and shape against m. */
int asu_lora_load(asu_model *m, const char *dir, asu_lora **out, asu_error *err);
void asu_lora_destroy(asu_lora *a);
uint32_t asu_lora_rank(const asu_lora *a);

/* Copies an adapter's weights to host memory and frees its device buffers; generating with an
   evicted adapter is invalid until asu_lora_restore uploads them again. Both keep the weights
   bit for bit, and both do nothing when the adapter already is where they move it. */
int asu_lora_evict(asu_lora *a, asu_error *err);
int asu_lora_restore(asu_lora *a, asu_error *err);
bool asu_lora_resident(const asu_lora *a);
/* Bytes the adapter's weights take on the device when resident. */
size_t asu_lora_device_bytes(const asu_lora *a);

#endif
