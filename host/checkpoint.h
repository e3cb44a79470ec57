/* Checkpoints of a training run: its parameters, AdamW moments and step, internal to libasu. */
#ifndef ASU_CHECKPOINT_H
#define ASU_CHECKPOINT_H

#include "train_internal.h"

typedef struct asu_checkpoint_state {
  uint32_t next_step;      /* the first step the resumed run takes */
  double heldout_nll;      /* the latest measured value, NaN when none */
  const char *fingerprint; /* the run's settings and data sizes; a checkpoint of another run
                              is rejected */
} asu_checkpoint_state;

/* Saves the state in dir (which must exist), replacing the checkpoint there. */
int asu_checkpoint_save(const char *dir, const asu_adam *adam, const asu_checkpoint_state *s,
                        asu_error *err);
/* Restores the checkpoint in dir into adam's buffers and fills s->next_step and
   s->heldout_nll. Fails with ASU_ERR_NOT_FOUND when dir has no checkpoint and ASU_ERR_INVALID
   when it belongs to a run with another fingerprint. */
int asu_checkpoint_load(const char *dir, asu_adam *adam, asu_checkpoint_state *s,
                        asu_error *err);

#endif
