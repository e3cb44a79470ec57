/* Helpers that the asu.v1.Asu handlers in several files share. */
#ifndef ASU_HANDLERS_H
#define ASU_HANDLERS_H

#include "asu.pb-c.h"
#include "server.h"

/* Copies inline examples into ds; field names the list in messages. Returns 1 when valid,
   0 after rejecting the call. */
int asu_take_examples(asu_rpc_call *c, const char *field, Asu__V1__Example **ex, size_t n,
                      asu_dataset *ds);
/* Checks a prompt template ("" is the default) and copies it into *out. Returns 1 when valid,
   0 after rejecting the call. */
int asu_take_template(asu_rpc_call *c, const char *text, char **out);
/* Points p's fields at j's (valid while j is). */
void asu_job_to_proto(const asu_job_snapshot *j, Asu__V1__Job *p);

/* StartFinetune and StartEvaluation (task_handlers.c). */
int asu_handle_start_finetune(asu_server *s, asu_rpc_call *c);
int asu_handle_start_evaluation(asu_server *s, asu_rpc_call *c);

#endif
