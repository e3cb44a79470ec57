/* Training checkpoints: the parameters and AdamW moments of a run, saved so that an
   interrupted run resumes where it stopped. A checkpoint is two files in its directory:
   checkpoint-<step>.safetensors with tensors "<i>.param", "<i>.m" and "<i>.v" per parameter
   buffer, and checkpoint.json naming that file, the step and the run's fingerprint. The JSON is
   written after the tensors and the older tensor file is removed last, so a crash at any point
   leaves one complete checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "asu_safetensors.h"
#include "checkpoint.h"

#define STATE_FILE "checkpoint.json"

static const char *const kinds[] = {"param", "m", "v"};

static asu_buffer *buffer_of(const asu_adam_param *p, int kind) {
  if (kind == 0) return p->param;
  if (kind == 1) return p->m;
  return p->v;
}

static int write_tensors(const char *path, const asu_adam *adam, asu_error *err) {
  size_t count = adam->count * 3;
  asu_st_tensor *t = calloc(count, sizeof *t);
  if (!t) return asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  int rc = ASU_OK;
  for (size_t i = 0; i < adam->count && !rc; i++)
    for (int k = 0; k < 3 && !rc; k++) {
      asu_st_tensor *x = &t[i * 3 + k];
      char name[32];
      snprintf(name, sizeof name, "%zu.%s", i, kinds[k]);
      uint32_t n = adam->params[i].n;
      *x = (asu_st_tensor){.name = strdup(name), .n_dims = 1, .shape = {n},
                           .data = malloc((size_t)n * sizeof(float)), .n_elements = n};
      if (!x->name || !x->data) rc = asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
      else rc = asu_buffer_download(buffer_of(&adam->params[i], k), 0, x->data,
                                    (size_t)n * sizeof(float), err);
    }
  if (!rc) rc = asu_safetensors_write(path, t, count, err);
  for (size_t i = 0; i < count; i++) {
    free(t[i].name);
    free(t[i].data);
  }
  free(t);
  return rc;
}

/* Reads checkpoint.json; ASU_ERR_NOT_FOUND when the directory has none. */
static int read_state(const char *dir, cJSON **out, asu_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
  FILE *f = fopen(path, "rb");
  if (!f) return asu_error_set(err, ASU_ERR_NOT_FOUND, "no checkpoint in %s", dir);
  char text[4096];
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  *out = cJSON_Parse(text);
  if (!*out) return asu_error_set(err, ASU_ERR_FORMAT, "%s is not valid JSON", path);
  return ASU_OK;
}

int asu_checkpoint_save(const char *dir, const asu_adam *adam, const asu_checkpoint_state *s,
                        asu_error *err) {
  cJSON *old = NULL;
  asu_error ignored;
  char old_file[64] = "";
  if (read_state(dir, &old, &ignored) == ASU_OK) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(old, "tensors");
    if (cJSON_IsString(f)) snprintf(old_file, sizeof old_file, "%s", f->valuestring);
    cJSON_Delete(old);
  }
  char file[64], path[4200];
  snprintf(file, sizeof file, "checkpoint-%u.safetensors", s->next_step);
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int rc = write_tensors(path, adam, err);
  if (rc) return asu_error_wrap(err, "saving a checkpoint in %s: ", dir);

  cJSON *j = cJSON_CreateObject();
  cJSON_AddNumberToObject(j, "next_step", s->next_step);
  cJSON_AddNumberToObject(j, "adam_step", adam->step);
  if (isfinite(s->heldout_nll)) cJSON_AddNumberToObject(j, "heldout_nll", s->heldout_nll);
  cJSON_AddStringToObject(j, "fingerprint", s->fingerprint);
  cJSON_AddStringToObject(j, "tensors", file);
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
  rc = text ? asu_write_file_atomic(path, text, strlen(text), err)
            : asu_error_set(err, ASU_ERR_NOMEM, "out of memory");
  free(text);
  if (rc) return asu_error_wrap(err, "saving a checkpoint in %s: ", dir);
  if (old_file[0] && strcmp(old_file, file)) {
    snprintf(path, sizeof path, "%s/%s", dir, old_file);
    unlink(path);
  }
  return ASU_OK;
}

/* Copies the tensors of f into the parameter buffers and moments of adam. */
static int restore_tensors(const asu_st_file *f, const char *path, asu_adam *adam,
                           asu_error *err) {
  if (f->count != adam->count * 3)
    return asu_error_set(err, ASU_ERR_FORMAT, "%s has %zu tensors, the run has %zu", path,
                         f->count, adam->count * 3);
  for (size_t i = 0; i < adam->count; i++)
    for (int k = 0; k < 3; k++) {
      char name[32];
      snprintf(name, sizeof name, "%zu.%s", i, kinds[k]);
      const asu_st_tensor *t = asu_safetensors_find(f, name);
      uint32_t n = adam->params[i].n;
      if (!t || t->n_elements != n)
        return asu_error_set(err, ASU_ERR_FORMAT, "%s: tensor %s is missing or not %u long",
                             path, name, n);
      int rc = asu_buffer_upload(buffer_of(&adam->params[i], k), 0, t->data,
                                 (size_t)n * sizeof(float), err);
      if (rc) return rc;
    }
  return ASU_OK;
}

int asu_checkpoint_load(const char *dir, asu_adam *adam, asu_checkpoint_state *s,
                        asu_error *err) {
  cJSON *j = NULL;
  int rc = read_state(dir, &j, err);
  if (rc) return rc;
  const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "next_step");
  const cJSON *astep = cJSON_GetObjectItemCaseSensitive(j, "adam_step");
  const cJSON *nll = cJSON_GetObjectItemCaseSensitive(j, "heldout_nll");
  const cJSON *fp = cJSON_GetObjectItemCaseSensitive(j, "fingerprint");
  const cJSON *file = cJSON_GetObjectItemCaseSensitive(j, "tensors");
  if (!cJSON_IsNumber(next) || !cJSON_IsNumber(astep) || !cJSON_IsString(fp) ||
      !cJSON_IsString(file) || strchr(file->valuestring, '/')) {
    cJSON_Delete(j);
    return asu_error_set(err, ASU_ERR_FORMAT, "%s/%s lacks next_step, adam_step, fingerprint "
                         "or tensors", dir, STATE_FILE);
  }
  if (strcmp(fp->valuestring, s->fingerprint)) {
    cJSON_Delete(j);
    return asu_error_set(err, ASU_ERR_INVALID, "the checkpoint in %s belongs to another run "
                         "(its settings or data differ); remove it to start over", dir);
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, file->valuestring);
  s->next_step = (uint32_t)next->valuedouble;
  s->heldout_nll = cJSON_IsNumber(nll) ? nll->valuedouble : NAN;
  adam->step = (uint32_t)astep->valuedouble;
  cJSON_Delete(j);
  asu_st_file f = {0};
  rc = asu_safetensors_read(path, &f, err);
  if (!rc) rc = restore_tensors(&f, path, adam, err);
  asu_safetensors_free(&f);
  return rc;
}
