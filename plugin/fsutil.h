/* File helpers of the server: atomic small-file writes, directory removal, name checks. */
#ifndef ASU_FSUTIL_H
#define ASU_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "asu_error.h"

/* A path outside what the server may touch; mapped to PERMISSION_DENIED. */
#define ASU_ERR_PERMISSION (-101)

/* Writes len bytes to path atomically: a temporary file in the same directory, fsync, rename,
   then fsync of the directory. */
int asu_fs_write_atomic(const char *path, const void *data, size_t len, asu_error *err);

/* Reads a whole file (at most max_len bytes) into a malloc'd NUL-terminated buffer. */
int asu_fs_read_small(const char *path, size_t max_len, char **out, size_t *len,
                        asu_error *err);

/* Removes a directory tree (does not follow symbolic links). A missing path is not an error. */
int asu_fs_remove_tree(const char *path, asu_error *err);

/* Creates a directory and its parents (mode 0755). */
int asu_fs_mkdir_p(const char *path, asu_error *err);

int asu_fs_sync_dir(const char *path, asu_error *err);

bool asu_fs_is_dir(const char *path);

/* An adapter name: [A-Za-z0-9._-]{1,64}, not "none" and not starting with '.' (hidden
   directories of the adapters directory belong to the server). */
bool asu_adapter_name_valid(const char *name);

/* Resolves path (relative paths start at root) and checks that it lies under root, a resolved
   directory: no ".." component, and no symbolic link leading out. *resolved is malloc'd.
   Fails with ASU_ERR_PERMISSION when root is NULL or the path leads outside. */
int asu_fs_confine(const char *root, const char *path, char **resolved, asu_error *err);

#endif
