#include "file_atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asu_safetensors.h"

struct asu_atomic_file {
  int fd;
  char *path;     /* destination */
  char *tmp_path; /* temporary file in the same directory */
};

int asu_atomic_open(const char *path, asu_atomic_file **out, asu_error *err) {
  *out = NULL;
  if (!path || !*path) return asu_error_set(err, ASU_ERR_INVALID, "output path is empty");

  asu_atomic_file *f = calloc(1, sizeof *f);
  size_t len = strlen(path);
  if (f) f->path = strdup(path);
  if (f) f->tmp_path = malloc(len + sizeof ".tmp.XXXXXX");
  if (!f || !f->path || !f->tmp_path) {
    if (f) {
      free(f->path);
      free(f->tmp_path);
    }
    free(f);
    return asu_error_set(err, ASU_ERR_NOMEM, "out of memory creating a temporary file for %s",
                         path);
  }
  memcpy(f->tmp_path, path, len);
  memcpy(f->tmp_path + len, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");

  f->fd = mkstemp(f->tmp_path);
  if (f->fd < 0) {
    int e = errno;
    free(f->path);
    free(f->tmp_path);
    free(f);
    return asu_error_set(err, ASU_ERR_IO,
                         "cannot create a temporary file next to %s: %s; check that the "
                         "directory exists and is writable",
                         path, strerror(e));
  }
  /* mkstemp creates the file with mode 0600, but the stored files are ordinary data files. */
  if (fchmod(f->fd, 0644) != 0) {
    int e = errno;
    asu_atomic_abort(f);
    return asu_error_set(err, ASU_ERR_IO, "cannot set the mode of a temporary file for %s: %s",
                         path, strerror(e));
  }
  *out = f;
  return ASU_OK;
}

int asu_atomic_write(asu_atomic_file *f, const void *data, size_t bytes, asu_error *err) {
  const unsigned char *p = data;
  while (bytes > 0) {
    ssize_t n = write(f->fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      return asu_error_set(err, ASU_ERR_IO, "cannot write %s: %s", f->tmp_path, strerror(e));
    }
    p += n;
    bytes -= (size_t)n;
  }
  return ASU_OK;
}

int asu_atomic_write_zeros(asu_atomic_file *f, size_t bytes, asu_error *err) {
  static const unsigned char zeros[256];
  while (bytes > 0) {
    size_t chunk = bytes < sizeof zeros ? bytes : sizeof zeros;
    int rc = asu_atomic_write(f, zeros, chunk, err);
    if (rc != ASU_OK) return rc;
    bytes -= chunk;
  }
  return ASU_OK;
}

static void fsync_parent_dir(const char *path) {
  char *dir = strdup(path);
  if (!dir) return;
  char *slash = strrchr(dir, '/');
  const char *name = ".";
  if (slash == dir) name = "/";
  else if (slash) {
    *slash = '\0';
    name = dir;
  }
  int fd = open(name, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    /* NOTE: some file systems reject fsync on directories. The rename has already happened,
       so a failure here only weakens durability after a crash. */
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

static void free_atomic(asu_atomic_file *f) {
  free(f->path);
  free(f->tmp_path);
  free(f);
}

int asu_atomic_commit(asu_atomic_file *f, asu_error *err) {
  int rc = ASU_OK;
  if (fsync(f->fd) != 0)
    rc = asu_error_set(err, ASU_ERR_IO, "cannot fsync %s: %s", f->tmp_path, strerror(errno));
  if (close(f->fd) != 0 && rc == ASU_OK)
    rc = asu_error_set(err, ASU_ERR_IO, "cannot close %s: %s", f->tmp_path, strerror(errno));
  f->fd = -1;
  if (rc == ASU_OK && rename(f->tmp_path, f->path) != 0)
    rc = asu_error_set(err, ASU_ERR_IO, "cannot rename %s to %s: %s", f->tmp_path, f->path,
                       strerror(errno));
  if (rc != ASU_OK) {
    unlink(f->tmp_path);
    free_atomic(f);
    return rc;
  }
  fsync_parent_dir(f->path);
  free_atomic(f);
  return ASU_OK;
}

void asu_atomic_abort(asu_atomic_file *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  unlink(f->tmp_path);
  free_atomic(f);
}

int asu_write_file_atomic(const char *path, const void *data, size_t bytes, asu_error *err) {
  if (!data && bytes > 0) return asu_error_set(err, ASU_ERR_INVALID, "no data to write to %s", path);
  asu_atomic_file *f;
  int rc = asu_atomic_open(path, &f, err);
  if (rc != ASU_OK) return rc;
  rc = asu_atomic_write(f, data, bytes, err);
  if (rc != ASU_OK) {
    asu_atomic_abort(f);
    return rc;
  }
  return asu_atomic_commit(f, err);
}
