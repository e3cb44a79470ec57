#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "asu_log.h"
#include "fsutil.h"
#include "rpc.h"

#define ACTIVE_FILE "active.json"
#define VERSION_FILE "asu_version.json"
/* Hidden work directories of adapters being saved or replaced. */
#define TMP_PREFIX ".asu-tmp-"
#define OLD_PREFIX ".asu-old-"
#define UNLOADED_PREFIX ".unloaded-"

struct asu_adapter_ref {
  char name[65];
  char job_id[32]; /* the job that saved this version, "" when unknown */
  uint32_t version;
  uint32_t rank;
  int64_t created_unix;
  asu_lora *lora;
  unsigned pins;
  uint64_t last_used; /* registry tick of the latest pin or save */
  bool retired; /* replaced by a newer version: destroyed at the last unpin */
  struct asu_adapter_ref *next;
};

struct asu_registry {
  pthread_mutex_t mu;
  pthread_mutex_t add_mu; /* held through a whole add, so versions are numbered in order */
  asu_model *model;
  char dir[PATH_MAX - 256]; /* leaves room for the names of the files inside */
  asu_adapter_ref *list;   /* current version of each name */
  asu_adapter_ref *active; /* one of list, or NULL for the base model */
  unsigned max_resident;   /* adapters kept on the device; 0: no limit */
  uint64_t tick;
};

static void entry_destroy(asu_adapter_ref *e) {
  asu_lora_destroy(e->lora);
  free(e);
}

static asu_adapter_ref *find(asu_registry *r, const char *name) {
  for (asu_adapter_ref *e = r->list; e; e = e->next)
    if (!strcmp(e->name, name)) return e;
  return NULL;
}

static void insert_sorted(asu_registry *r, asu_adapter_ref *e) {
  asu_adapter_ref **p = &r->list;
  while (*p && strcmp((*p)->name, e->name) < 0) p = &(*p)->next;
  e->next = *p;
  *p = e;
}

static void fill_info(asu_registry *r, const asu_adapter_ref *e, asu_adapter_info *out) {
  memset(out, 0, sizeof *out);
  if (!e) return;
  snprintf(out->name, sizeof out->name, "%s", e->name);
  out->version = e->version;
  out->rank = e->rank;
  out->created_unix = e->created_unix;
  out->active = r->active == e;
  out->resident = asu_lora_resident(e->lora);
}

/* Evicts the least recently used unpinned adapters to host memory while more than
   max_resident are on the device; keep stays. Pinned adapters are never evicted, so the limit
   is exceeded while more of them are in use. Called with r->mu held. */
static void enforce_residency(asu_registry *r, const asu_adapter_ref *keep) {
  if (!r->max_resident) return;
  unsigned resident = 0;
  for (asu_adapter_ref *e = r->list; e; e = e->next) resident += asu_lora_resident(e->lora);
  while (resident > r->max_resident) {
    asu_adapter_ref *lru = NULL;
    for (asu_adapter_ref *e = r->list; e; e = e->next)
      if (e != keep && e->pins == 0 && asu_lora_resident(e->lora) &&
          (!lru || e->last_used < lru->last_used))
        lru = e;
    if (!lru) return;
    asu_error err;
    if (asu_lora_evict(lru->lora, &err) != ASU_OK) {
      asu_log_error("adapter %s: cannot move it to host memory: %s", lru->name, err.message);
      return;
    }
    asu_log_info("adapter %s version %u: moved to host memory (%u adapters on the device, the "
                 "limit is %u)", lru->name, lru->version, resident - 1, r->max_resident);
    resident--;
  }
}

/* Lists e as the current version of its name and marks it used; called with r->mu held. */
static void insert_used(asu_registry *r, asu_adapter_ref *e) {
  insert_sorted(r, e);
  e->last_used = ++r->tick;
  enforce_residency(r, e);
}

/* Reads <adapter_dir>/asu_version.json. Missing fields stay as given; job_id may be NULL. */
static int read_version(const char *adapter_dir, uint32_t *version, int64_t *created,
                        char job_id[32]) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", adapter_dir, VERSION_FILE);
  char *text = NULL;
  asu_error err;
  if (asu_fs_read_small(path, 65536, &text, NULL, &err) != ASU_OK) return -1;
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!j) return -1;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "created_unix");
  int rc = -1;
  if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble < 4294967296.0) {
    *version = (uint32_t)v->valuedouble;
    rc = 0;
  }
  if (cJSON_IsNumber(c)) *created = (int64_t)c->valuedouble;
  const cJSON *job = cJSON_GetObjectItemCaseSensitive(j, "job");
  if (job_id && cJSON_IsString(job)) snprintf(job_id, 32, "%.31s", job->valuestring);
  cJSON_Delete(j);
  return rc;
}

static int write_json(const char *path, cJSON *j, asu_error *err) {
  char *text = cJSON_Print(j);
  if (!text) return asu_error_set(err, ASU_ERR_NOMEM, "formatting %s", path);
  size_t n = strlen(text);
  char *line = realloc(text, n + 2);
  if (!line) {
    free(text);
    return asu_error_set(err, ASU_ERR_NOMEM, "formatting %s", path);
  }
  line[n] = '\n';
  line[n + 1] = '\0';
  int rc = asu_fs_write_atomic(path, line, n + 1, err);
  free(line);
  return rc;
}

static int write_version(const char *adapter_dir, const char *name, uint32_t version,
                         int64_t created, const char *job_id, asu_error *err) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", adapter_dir, VERSION_FILE);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "name", name);
  cJSON_AddNumberToObject(j, "version", version);
  cJSON_AddNumberToObject(j, "created_unix", (double)created);
  if (job_id) cJSON_AddStringToObject(j, "job", job_id);
  int rc = write_json(path, j, err);
  cJSON_Delete(j);
  return rc;
}

/* Records the active adapter name ("" for none); called with r->mu held. */
static int write_active(asu_registry *r, const char *name, asu_error *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", r->dir, ACTIVE_FILE);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "active", name);
  int rc = write_json(path, j, err);
  cJSON_Delete(j);
  return rc;
}

/* <dir>/.unloaded-<name>: a file whose presence keeps an unloaded adapter unloaded across a
   restart. The scan of the directory skips it, as it skips every file. */
static void unloaded_marker(const asu_registry *r, const char *name, char *out, size_t size) {
  snprintf(out, size, "%s/%s%.64s", r->dir, UNLOADED_PREFIX, name);
}

static bool is_unloaded(const asu_registry *r, const char *name) {
  char path[PATH_MAX];
  unloaded_marker(r, name, path, sizeof path);
  return access(path, F_OK) == 0;
}

static void clear_unloaded(const asu_registry *r, const char *name) {
  char path[PATH_MAX];
  unloaded_marker(r, name, path, sizeof path);
  if (unlink(path) == 0) {
    asu_error err;
    if (asu_fs_sync_dir(r->dir, &err) != ASU_OK) asu_log_warn("%s", err.message);
  }
}

/* Loads <dir>/<name> into a new entry, not yet listed. */
static int load_entry(asu_registry *r, const char *name, asu_adapter_ref **out, asu_error *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", r->dir, name);
  asu_lora *lora = NULL;
  if (asu_lora_load(r->model, path, &lora, err) != ASU_OK) return err->code;
  asu_adapter_ref *e = calloc(1, sizeof *e);
  if (!e) {
    asu_lora_destroy(lora);
    return asu_error_set(err, ASU_ERR_NOMEM, "adapter %s: out of memory", name);
  }
  snprintf(e->name, sizeof e->name, "%.64s", name);
  e->lora = lora;
  e->rank = asu_lora_rank(lora);
  e->version = 1;
  struct stat st;
  e->created_unix = stat(path, &st) == 0 ? (int64_t)st.st_mtime : 0;
  if (read_version(path, &e->version, &e->created_unix, e->job_id) != 0)
    asu_log_warn("adapter %s: no readable %s, assuming version 1", name, VERSION_FILE);
  asu_log_info("adapter %s: loaded version %u (rank %u) from %s", name, e->version, e->rank,
               path);
  *out = e;
  return ASU_OK;
}

static void load_one(asu_registry *r, const char *name) {
  if (is_unloaded(r, name)) {
    asu_log_info("adapter %s: left unloaded, as it was unloaded before; RepositoryModelLoad "
                 "serves it again", name);
    return;
  }
  asu_adapter_ref *e = NULL;
  asu_error err;
  asu_error_clear(&err);
  if (load_entry(r, name, &e, &err) != ASU_OK) {
    asu_log_warn("adapter %s: skipping it: %s (%s)", name, err.message, asu_status_name(err.code));
    return;
  }
  insert_used(r, e);
}

static void restore_active(asu_registry *r) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", r->dir, ACTIVE_FILE);
  char *text = NULL;
  asu_error err;
  if (asu_fs_read_small(path, 65536, &text, NULL, &err) != ASU_OK) {
    if (err.code != ASU_ERR_NOT_FOUND) asu_log_warn("ignoring %s: %s", path, err.message);
    return;
  }
  cJSON *j = cJSON_Parse(text);
  free(text);
  const cJSON *a = j ? cJSON_GetObjectItemCaseSensitive(j, "active") : NULL;
  if (!cJSON_IsString(a)) {
    asu_log_warn("ignoring %s: not an object with a string \"active\"", path);
  } else if (a->valuestring[0]) {
    r->active = find(r, a->valuestring);
    if (r->active)
      asu_log_info("adapter %s: active (version %u)", r->active->name, r->active->version);
    else
      asu_log_warn("adapter %s: recorded as active in %s but not loaded; using the base model",
                   a->valuestring, path);
  }
  cJSON_Delete(j);
}

int asu_registry_open(asu_model *m, const char *dir, unsigned max_resident,
                      asu_registry **out, asu_error *err) {
  if (strlen(dir) >= PATH_MAX - 256)
    return asu_error_set(err, ASU_ERR_INVALID, "adapters directory path too long: %s", dir);
  if (asu_fs_mkdir_p(dir, err) != ASU_OK) return err->code;
  asu_registry *r = calloc(1, sizeof *r);
  if (!r) return asu_error_set(err, ASU_ERR_NOMEM, "registry: out of memory");
  pthread_mutex_init(&r->mu, NULL);
  pthread_mutex_init(&r->add_mu, NULL);
  r->model = m;
  r->max_resident = max_resident;
  snprintf(r->dir, sizeof r->dir, "%s", dir);

  DIR *d = opendir(dir);
  if (!d) {
    asu_error_set(err, ASU_ERR_IO, "opening adapters directory %s: %s", dir, strerror(errno));
    asu_registry_close(r);
    return err->code;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *name = de->d_name;
    if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, ACTIVE_FILE) ||
        !strcmp(name, ASU_JOBS_SUBDIR))
      continue;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) ||
        !strncmp(name, OLD_PREFIX, strlen(OLD_PREFIX))) {
      asu_error e2;
      asu_log_info("removing leftover %s of an interrupted save", path);
      if (asu_fs_remove_tree(path, &e2) != ASU_OK) asu_log_warn("%s", e2.message);
      continue;
    }
    if (!asu_fs_is_dir(path)) continue;
    if (!asu_adapter_name_valid(name)) {
      asu_log_warn("skipping %s: not a valid adapter name", path);
      continue;
    }
    load_one(r, name);
  }
  closedir(d);
  restore_active(r);
  *out = r;
  return ASU_OK;
}

void asu_registry_close(asu_registry *r) {
  if (!r) return;
  asu_adapter_ref *e = r->list;
  while (e) {
    asu_adapter_ref *next = e->next;
    if (e->pins) asu_log_error("adapter %s: destroyed with %u pins", e->name, e->pins);
    entry_destroy(e);
    e = next;
  }
  pthread_mutex_destroy(&r->mu);
  pthread_mutex_destroy(&r->add_mu);
  free(r);
}

/* Moves the saved directory tmp to final, replacing an older one atomically when the file
   system can exchange the two. */
static int install_dir(const char *tmp, const char *final, const char *old, asu_error *err) {
  if (!asu_fs_is_dir(final)) {
    if (rename(tmp, final) != 0)
      return asu_error_set(err, ASU_ERR_IO, "renaming %s to %s: %s", tmp, final,
                           strerror(errno));
    return ASU_OK;
  }
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0)
    return asu_fs_remove_tree(tmp, err); /* tmp now contains the old version */
  /* No exchange on this file system: two renames, with a short window without the adapter. */
  if (rename(final, old) != 0)
    return asu_error_set(err, ASU_ERR_IO, "renaming %s to %s: %s", final, old, strerror(errno));
  if (rename(tmp, final) != 0) {
    int e = errno;
    if (rename(old, final) != 0)
      asu_log_error("could not restore %s from %s: %s", final, old, strerror(errno));
    return asu_error_set(err, ASU_ERR_IO, "renaming %s to %s: %s", tmp, final, strerror(e));
  }
  return asu_fs_remove_tree(old, err);
}

static int add_locked(asu_registry *r, const char *name, asu_lora *lora, bool activate,
                      const char *job_id, asu_adapter_info *out, asu_error *err) {
  char final[PATH_MAX], tmp[PATH_MAX], old[PATH_MAX];
  snprintf(final, sizeof final, "%s/%s", r->dir, name);
  snprintf(tmp, sizeof tmp, "%s/%s%s-%s", r->dir, TMP_PREFIX, name, job_id);
  snprintf(old, sizeof old, "%s/%s%s-%s", r->dir, OLD_PREFIX, name, job_id);

  /* add_mu is held, so the version cannot change under us. A new version is served even when
     an older one was unloaded. */
  clear_unloaded(r, name);
  uint32_t version = 0;
  pthread_mutex_lock(&r->mu);
  asu_adapter_ref *prev = find(r, name);
  if (prev) version = prev->version;
  pthread_mutex_unlock(&r->mu);
  uint32_t on_disk = 0;
  int64_t ignored = 0;
  if (read_version(final, &on_disk, &ignored, NULL) == 0 && on_disk > version) version = on_disk;
  version++;
  int64_t created = (int64_t)time(NULL);

  if (asu_fs_remove_tree(tmp, err) != ASU_OK) return err->code;
  if (asu_lora_save(lora, tmp, err) != ASU_OK ||
      write_version(tmp, name, version, created, job_id, err) != ASU_OK ||
      asu_fs_sync_dir(tmp, err) != ASU_OK || install_dir(tmp, final, old, err) != ASU_OK ||
      asu_fs_sync_dir(r->dir, err) != ASU_OK) {
    asu_error e2;
    asu_fs_remove_tree(tmp, &e2);
    return asu_error_wrap(err, "saving adapter %s version %u: ", name, version);
  }

  asu_adapter_ref *e = calloc(1, sizeof *e);
  if (!e) return asu_error_set(err, ASU_ERR_NOMEM, "registry: out of memory");
  snprintf(e->name, sizeof e->name, "%s", name);
  e->version = version;
  e->rank = asu_lora_rank(lora);
  e->created_unix = created;
  e->lora = lora;
  snprintf(e->job_id, sizeof e->job_id, "%s", job_id);

  pthread_mutex_lock(&r->mu);
  prev = find(r, name);
  bool was_active = prev && r->active == prev;
  if (prev) {
    asu_adapter_ref **p = &r->list;
    while (*p != prev) p = &(*p)->next;
    *p = prev->next;
    prev->next = NULL;
  }
  insert_used(r, e);
  if (was_active) r->active = e;
  if (activate && !was_active) {
    asu_error e2;
    if (write_active(r, name, &e2) == ASU_OK) r->active = e;
    else asu_log_error("adapter %s: saved but not activated: %s", name, e2.message);
  }
  fill_info(r, e, out);
  if (prev) {
    if (prev->pins == 0) {
      asu_log_info("adapter %s: version %u replaced and released", name, prev->version);
      entry_destroy(prev);
    } else {
      prev->retired = true;
      asu_log_info("adapter %s: version %u replaced; released after %u running generations",
                   name, prev->version, prev->pins);
    }
  }
  pthread_mutex_unlock(&r->mu);
  asu_log_info("adapter %s: version %u saved to %s%s", name, version, final,
               out->active ? " (active)" : "");
  return ASU_OK;
}

int asu_registry_add(asu_registry *r, const char *name, asu_lora *lora, bool activate,
                     const char *job_id, asu_adapter_info *out, asu_error *err) {
  pthread_mutex_lock(&r->add_mu);
  int rc = add_locked(r, name, lora, activate, job_id, out, err);
  pthread_mutex_unlock(&r->add_mu);
  return rc;
}

int asu_registry_pin(asu_registry *r, const char *name, const asu_lora **lora,
                     asu_adapter_ref **ref, asu_adapter_info *info, asu_error *err) {
  pthread_mutex_lock(&r->mu);
  asu_adapter_ref *e = NULL;
  if (!strcmp(name, "")) e = r->active;
  else if (strcmp(name, "none") != 0) {
    e = find(r, name);
    if (!e) {
      pthread_mutex_unlock(&r->mu);
      return asu_error_set(err, ASU_ERR_NOT_FOUND, "adapter \"%s\" not found; ListAdapters (asu "
                           "adapters) lists the loaded adapters", name);
    }
  }
  if (e && !asu_lora_resident(e->lora)) {
    int rc = asu_lora_restore(e->lora, err);
    if (rc) {
      pthread_mutex_unlock(&r->mu);
      return asu_error_wrap(err, "adapter \"%s\": moving it back to the device: ", e->name);
    }
    asu_log_info("adapter %s version %u: moved back to the device", e->name, e->version);
  }
  if (e) {
    e->pins++;
    e->last_used = ++r->tick;
    enforce_residency(r, e);
  }
  fill_info(r, e, info);
  pthread_mutex_unlock(&r->mu);
  *lora = e ? e->lora : NULL;
  *ref = e;
  return ASU_OK;
}

void asu_registry_unpin(asu_registry *r, asu_adapter_ref *ref) {
  if (!ref) return;
  pthread_mutex_lock(&r->mu);
  bool release = --ref->pins == 0 && ref->retired;
  pthread_mutex_unlock(&r->mu);
  if (release) {
    asu_log_info("adapter %s: version %u released after its last generation", ref->name,
                 ref->version);
    entry_destroy(ref);
  }
}

int asu_registry_activate(asu_registry *r, const char *name, asu_adapter_info *out,
                          asu_error *err) {
  pthread_mutex_lock(&r->mu);
  asu_adapter_ref *e = find(r, name);
  int rc = ASU_OK;
  if (!e) {
    rc = asu_error_set(err, ASU_ERR_NOT_FOUND, "adapter \"%s\" not found; ListAdapters (asu "
                           "adapters) lists the loaded adapters", name);
  } else if (r->active != e) {
    rc = write_active(r, name, err);
    if (rc == ASU_OK) r->active = e;
  }
  if (rc == ASU_OK) fill_info(r, e, out);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int asu_registry_deactivate(asu_registry *r, char previous[65], asu_error *err) {
  pthread_mutex_lock(&r->mu);
  snprintf(previous, 65, "%s", r->active ? r->active->name : "");
  int rc = ASU_OK;
  if (r->active) {
    rc = write_active(r, "", err);
    if (rc == ASU_OK) r->active = NULL;
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int asu_registry_list(asu_registry *r, asu_adapter_info **out, size_t *count, char active[65],
                      asu_error *err) {
  pthread_mutex_lock(&r->mu);
  size_t n = 0;
  for (asu_adapter_ref *e = r->list; e; e = e->next) n++;
  asu_adapter_info *a = calloc(n ? n : 1, sizeof *a);
  if (!a) {
    pthread_mutex_unlock(&r->mu);
    return asu_error_set(err, ASU_ERR_NOMEM, "registry: out of memory");
  }
  size_t i = 0;
  for (asu_adapter_ref *e = r->list; e; e = e->next) fill_info(r, e, &a[i++]);
  snprintf(active, 65, "%s", r->active ? r->active->name : "");
  pthread_mutex_unlock(&r->mu);
  *out = a;
  *count = n;
  return ASU_OK;
}

bool asu_registry_saved_by(asu_registry *r, const char *name, const char *job_id,
                           uint32_t *version) {
  pthread_mutex_lock(&r->mu);
  asu_adapter_ref *e = find(r, name);
  bool saved = e && !strcmp(e->job_id, job_id);
  if (saved) *version = e->version;
  pthread_mutex_unlock(&r->mu);
  return saved;
}

int asu_registry_info(asu_registry *r, const char *name, asu_adapter_info *out, asu_error *err) {
  pthread_mutex_lock(&r->mu);
  asu_adapter_ref *e = find(r, name);
  if (e) fill_info(r, e, out);
  pthread_mutex_unlock(&r->mu);
  if (e) return ASU_OK;
  return asu_error_set(err, ASU_ERR_NOT_FOUND, "adapter \"%s\" not found; ListAdapters (asu "
                       "adapters) lists the loaded adapters", name);
}

bool asu_registry_is_stored(asu_registry *r, const char *name) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%.64s", r->dir, name);
  return asu_adapter_name_valid(name) && asu_fs_is_dir(path);
}

bool asu_registry_has(asu_registry *r, const char *name) {
  pthread_mutex_lock(&r->mu);
  bool has = find(r, name) != NULL;
  pthread_mutex_unlock(&r->mu);
  return has;
}

/* ---- The model repository: import, unload, reload ---- */

int asu_registry_import(asu_registry *r, const char *name, const char *src_dir, const char *tag,
                        asu_adapter_info *out, asu_error *err) {
  asu_lora *lora = NULL;
  if (asu_lora_load(r->model, src_dir, &lora, err) != ASU_OK)
    return asu_error_wrap(err, "importing adapter %s: ", name);
  int rc = asu_registry_add(r, name, lora, false, tag, out, err);
  if (rc != ASU_OK) asu_lora_destroy(lora);
  return rc;
}

int asu_registry_unload(asu_registry *r, const char *name, uint32_t *version, asu_error *err) {
  pthread_mutex_lock(&r->mu);
  asu_adapter_ref *e = find(r, name);
  int rc = ASU_OK;
  if (!e) {
    rc = asu_error_set(err, ASU_ERR_NOT_FOUND, "adapter \"%s\" is not loaded", name);
  } else if (r->active == e) {
    rc = asu_error_set(err, ASU_ERR_PRECONDITION, "adapter \"%s\" is the active adapter; "
                       "deactivate it before unloading it", name);
  } else {
    char marker[PATH_MAX];
    unloaded_marker(r, name, marker, sizeof marker);
    rc = asu_fs_write_atomic(marker, "", 0, err);
  }
  if (rc == ASU_OK) {
    asu_adapter_ref **p = &r->list;
    while (*p != e) p = &(*p)->next;
    *p = e->next;
    e->next = NULL;
    *version = e->version;
    if (e->pins == 0) {
      entry_destroy(e);
    } else {
      e->retired = true;
      asu_log_info("adapter %s: unloaded; released after %u running generations", name,
                   e->pins);
    }
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int asu_registry_reload(asu_registry *r, const char *name, asu_adapter_info *out,
                        asu_error *err) {
  pthread_mutex_lock(&r->add_mu);
  pthread_mutex_lock(&r->mu);
  asu_adapter_ref *e = find(r, name);
  if (e) fill_info(r, e, out);
  pthread_mutex_unlock(&r->mu);
  int rc = ASU_OK;
  if (!e) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    if (!asu_fs_is_dir(path))
      rc = asu_error_set(err, ASU_ERR_NOT_FOUND, "adapter \"%s\" is not in the adapters "
                         "directory; give the parameter \"path\" to import it", name);
    else rc = load_entry(r, name, &e, err);
    if (rc == ASU_OK) {
      clear_unloaded(r, name);
      pthread_mutex_lock(&r->mu);
      insert_used(r, e);
      fill_info(r, e, out);
      pthread_mutex_unlock(&r->mu);
    }
  }
  pthread_mutex_unlock(&r->add_mu);
  return rc;
}

int asu_registry_stored(asu_registry *r, char (**names)[65], size_t *count, asu_error *err) {
  *names = NULL;
  *count = 0;
  DIR *d = opendir(r->dir);
  if (!d)
    return asu_error_set(err, ASU_ERR_IO, "opening adapters directory %s: %s", r->dir,
                         strerror(errno));
  size_t cap = 0;
  struct dirent *de;
  int rc = ASU_OK;
  while ((de = readdir(d)) && rc == ASU_OK) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->dir, de->d_name);
    if (!asu_adapter_name_valid(de->d_name) || !asu_fs_is_dir(path)) continue;
    if (*count == cap) {
      cap = cap ? 2 * cap : 16;
      char(*grown)[65] = realloc(*names, cap * sizeof **names);
      if (!grown) {
        rc = asu_error_set(err, ASU_ERR_NOMEM, "registry: out of memory");
        break;
      }
      *names = grown;
    }
    snprintf((*names)[(*count)++], 65, "%.64s", de->d_name);
  }
  closedir(d);
  return rc;
}
