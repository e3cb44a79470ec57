/* Moving an adapter's weights between the device and host memory, so that a server can keep
   more adapters than it lets occupy the device. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* Floats of all the adapter's pairs, A then B of each, in layer and projection order. */
static size_t total_floats(const asu_lora *l) {
  size_t n = 0;
  for (uint32_t i = 0; i < l->n_layers; i++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++)
      if (l->targets & (1u << p)) n += (size_t)l->rank * (l->pairs[i][p].in + l->pairs[i][p].out);
  return n;
}

bool asu_lora_resident(const asu_lora *l) { return l->host == NULL; }

size_t asu_lora_device_bytes(const asu_lora *l) { return total_floats(l) * sizeof(float); }

int asu_lora_evict(asu_lora *l, asu_error *err) {
  if (l->host) return ASU_OK;
  float *host = malloc(total_floats(l) * sizeof *host);
  if (!host) return asu_error_set(err, ASU_ERR_NOMEM, "out of host memory for an adapter");
  float *at = host;
  for (uint32_t i = 0; i < l->n_layers; i++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) {
      asu_lora_pair *pair = &l->pairs[i][p];
      if (!pair->a) continue;
      size_t na = (size_t)l->rank * pair->in, nb = (size_t)pair->out * l->rank;
      int rc = asu_buffer_download(pair->a, 0, at, na * sizeof(float), err);
      if (!rc) rc = asu_buffer_download(pair->b, 0, at + na, nb * sizeof(float), err);
      if (rc) {
        free(host);
        return rc;
      }
      at += na + nb;
    }
  for (uint32_t i = 0; i < l->n_layers; i++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) {
      asu_buffer_destroy(l->pairs[i][p].a);
      asu_buffer_destroy(l->pairs[i][p].b);
      l->pairs[i][p].a = l->pairs[i][p].b = NULL;
    }
  l->host = host;
  return ASU_OK;
}

int asu_lora_restore(asu_lora *l, asu_error *err) {
  if (!l->host) return ASU_OK;
  const float *at = l->host;
  int rc = ASU_OK;
  for (uint32_t i = 0; i < l->n_layers && !rc; i++)
    for (int p = 0; p < ASU_LORA_PROJECTIONS && !rc; p++) {
      if (!(l->targets & (1u << p))) continue;
      asu_lora_pair *pair = &l->pairs[i][p];
      size_t na = (size_t)l->rank * pair->in, nb = (size_t)pair->out * l->rank;
      rc = asu_buffer_create(l->dev, na * sizeof(float), &pair->a, err);
      if (!rc) rc = asu_buffer_create(l->dev, nb * sizeof(float), &pair->b, err);
      if (!rc) rc = asu_buffer_upload(pair->a, 0, at, na * sizeof(float), err);
      if (!rc) rc = asu_buffer_upload(pair->b, 0, at + na, nb * sizeof(float), err);
      at += na + nb;
    }
  if (rc) {
    /* Back to the evicted state: the host copy stays the only one. */
    for (uint32_t i = 0; i < l->n_layers; i++)
      for (int p = 0; p < ASU_LORA_PROJECTIONS; p++) {
        asu_buffer_destroy(l->pairs[i][p].a);
        asu_buffer_destroy(l->pairs[i][p].b);
        l->pairs[i][p].a = l->pairs[i][p].b = NULL;
      }
    return rc;
  }
  free(l->host);
  l->host = NULL;
  return ASU_OK;
}
