/* Pieces of the Open Inference Protocol service shared by its files. */
#ifndef ASU_OIP_H
#define ASU_OIP_H

#include "server.h"

#define ASU_OIP_INPUT "text_input"
#define ASU_OIP_OUTPUT "text_output"

/* A model name and version resolved to an adapter: "none" for the base model. */
typedef struct asu_oip_model {
  char adapter[65];
  uint32_t version; /* 0: the current one */
  uint32_t current; /* the version served when resolved: 1 for the base model */
} asu_oip_model;

/* Resolves a model name and version string, rejecting the call when they name nothing served.
   Returns 1, or 0 after rejecting. */
int asu_oip_resolve(asu_server *s, asu_rpc_call *c, const char *name, const char *version,
                    asu_oip_model *out);

int asu_oip_infer(asu_server *s, asu_rpc_call *c);
int asu_oip_repository_index(asu_server *s, asu_rpc_call *c);
int asu_oip_repository_load(asu_server *s, asu_rpc_call *c);
int asu_oip_repository_unload(asu_server *s, asu_rpc_call *c);

#endif
