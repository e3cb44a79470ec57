/* Finding the shared data folder and loading its model, for the model and engine tests. */
#ifndef ASU_TEST_SHARED_MODEL_H
#define ASU_TEST_SHARED_MODEL_H

#include <stdio.h>
#include <stdlib.h>

#include "asu_engine.h"

/* Returns ASU_SHARED_DATA, or NULL after printing what to set. */
static inline const char *shared_data_dir(void) {
  const char *dir = getenv("ASU_SHARED_DATA");
  if (!dir) fprintf(stderr, "ASU_SHARED_DATA is not set; point it at the shared data folder\n");
  return dir;
}

/* Writes the path of the shared stories260K.gguf into path; returns 0, or -1 without the data. */
static inline int shared_model_path(char *path, size_t cap) {
  const char *dir = shared_data_dir();
  if (!dir) return -1;
  snprintf(path, cap, "%s/models/stories260K.gguf", dir);
  return 0;
}

/* Loads the shared model on the default device; returns NULL after printing the error. */
static inline asu_model *load_shared_model(void) {
  char path[1024];
  if (shared_model_path(path, sizeof path)) return NULL;
  asu_model *m = NULL;
  asu_error err;
  if (asu_model_load(path, NULL, &m, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return NULL;
  }
  return m;
}

#endif
