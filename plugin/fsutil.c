#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int asu_fs_sync_dir(const char *path, asu_error *err) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return asu_error_set(err, ASU_ERR_IO, "opening directory %s: %s", path, strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0 && e != EINVAL)
    return asu_error_set(err, ASU_ERR_IO, "syncing directory %s: %s", path, strerror(e));
  return ASU_OK;
}

int asu_fs_write_atomic(const char *path, const void *data, size_t len, asu_error *err) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
    return asu_error_set(err, ASU_ERR_INVALID, "path too long: %s", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return asu_error_set(err, ASU_ERR_IO, "creating %s: %s", tmp, strerror(errno));
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      unlink(tmp);
      return asu_error_set(err, ASU_ERR_IO, "writing %s: %s", tmp, strerror(e));
    }
    p += n;
    left -= (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    return asu_error_set(err, ASU_ERR_IO, "syncing %s: %s", tmp, strerror(e));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return asu_error_set(err, ASU_ERR_IO, "renaming %s to %s: %s", tmp, path, strerror(e));
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  return asu_fs_sync_dir(dir, err);
}

int asu_fs_read_small(const char *path, size_t max_len, char **out, size_t *len,
                        asu_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return asu_error_set(err, errno == ENOENT ? ASU_ERR_NOT_FOUND : ASU_ERR_IO,
                               "opening %s: %s", path, strerror(errno));
  char *buf = malloc(max_len + 1);
  if (!buf) {
    fclose(f);
    return asu_error_set(err, ASU_ERR_NOMEM, "reading %s: out of memory", path);
  }
  size_t n = fread(buf, 1, max_len + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return asu_error_set(err, ASU_ERR_IO, "reading %s failed", path);
  }
  if (n > max_len) {
    free(buf);
    return asu_error_set(err, ASU_ERR_LIMIT, "%s is larger than %zu bytes", path, max_len);
  }
  buf[n] = '\0';
  *out = buf;
  if (len) *len = n;
  return ASU_OK;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int asu_fs_remove_tree(const char *path, asu_error *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return ASU_OK;
    return asu_error_set(err, ASU_ERR_IO, "inspecting %s: %s", path, strerror(errno));
  }
  if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    return asu_error_set(err, ASU_ERR_IO, "removing %s: %s", path, strerror(errno));
  return ASU_OK;
}

int asu_fs_mkdir_p(const char *path, asu_error *err) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return asu_error_set(err, ASU_ERR_INVALID, "path too long: %s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return asu_error_set(err, ASU_ERR_IO, "creating %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST)
    return asu_error_set(err, ASU_ERR_IO, "creating %s: %s", buf, strerror(errno));
  if (!asu_fs_is_dir(buf))
    return asu_error_set(err, ASU_ERR_IO, "%s exists and is not a directory", buf);
  return ASU_OK;
}

bool asu_fs_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool asu_adapter_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n < 1 || n > 64) return false;
  if (!strcmp(name, "none") || name[0] == '.') return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

/* Whether path has a ".." component. */
static bool has_parent_step(const char *path) {
  for (const char *p = path; *p;) {
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') return true;
    p += n;
    while (*p == '/') p++;
  }
  return false;
}

int asu_fs_confine(const char *root, const char *path, char **resolved, asu_error *err) {
  *resolved = NULL;
  if (!root)
    return asu_error_set(err, ASU_ERR_PERMISSION, "this server takes no paths in requests; start "
                         "it with a data root (asu-server --data-root DIR) to allow paths under "
                         "that directory");
  if (!path[0]) return asu_error_set(err, ASU_ERR_INVALID, "the path is empty");
  if (has_parent_step(path))
    return asu_error_set(err, ASU_ERR_PERMISSION, "path '%.200s' has a '..' component; give a "
                         "path inside the data root %s", path, root);
  char joined[PATH_MAX];
  if (snprintf(joined, sizeof joined, "%s/%s", root, path) >= (int)sizeof joined)
    return asu_error_set(err, ASU_ERR_INVALID, "path '%.200s' is too long", path);
  char *real = realpath(path[0] == '/' ? path : joined, NULL);
  if (!real)
    return asu_error_set(err, ASU_ERR_NOT_FOUND, "path '%.200s': %s; give a path under the "
                         "data root %s (relative paths start there)", path, strerror(errno), root);
  size_t n = strlen(root);
  if (strncmp(real, root, n) != 0 || (real[n] != '/' && real[n] != '\0')) {
    free(real);
    return asu_error_set(err, ASU_ERR_PERMISSION, "path '%.200s' leads outside the data root %s "
                         "(through a symbolic link or an absolute path); give a path inside it",
                         path, root);
  }
  *resolved = real;
  return ASU_OK;
}
