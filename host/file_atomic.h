/* Streaming atomic file writes, internal to libasu. The data goes to a temporary file in the
   destination's directory. Commit fsyncs it and renames it over the destination, so a reader
   sees either the old file or the whole new one. */
#ifndef ASU_FILE_ATOMIC_H
#define ASU_FILE_ATOMIC_H

#include <stddef.h>

#include "asu_error.h"

typedef struct asu_atomic_file asu_atomic_file;

/* Creates the temporary file next to path. */
int asu_atomic_open(const char *path, asu_atomic_file **out, asu_error *err);
int asu_atomic_write(asu_atomic_file *f, const void *data, size_t bytes, asu_error *err);
/* Writes `bytes` zero bytes (padding). */
int asu_atomic_write_zeros(asu_atomic_file *f, size_t bytes, asu_error *err);
/* Fsyncs and renames the temporary file over the destination, then fsyncs the directory.
   Frees f whether or not it succeeds; on failure the temporary file is removed. */
int asu_atomic_commit(asu_atomic_file *f, asu_error *err);
/* Removes the temporary file and frees f. Accepts NULL. */
void asu_atomic_abort(asu_atomic_file *f);

#endif
