/* The plugin's JSON configuration (the keys are listed in asu_plugin.h). */
#ifndef ASU_PLUGIN_CONFIG_H
#define ASU_PLUGIN_CONFIG_H

#include "asu_error.h"
#include "server.h"

typedef struct asu_plugin_config {
  char *model;
  char *adapters;
  char *device;     /* NULL: the default device */
  char *auth_token; /* NULL: none */
  char *data_root;  /* NULL: none */
  asu_server_limits limits;
  uint32_t checkpoint_every;      /* steps between a job's checkpoints */
  uint32_t dispatches_per_submit; /* slices of a training step on the queue */
  uint32_t max_resident_adapters; /* adapters kept on the device */
} asu_plugin_config;

/* Parses and checks text; on failure the message names the key and the value. */
int asu_plugin_config_parse(const char *text, asu_plugin_config *out, asu_error *err);
void asu_plugin_config_free(asu_plugin_config *cfg);

#endif
