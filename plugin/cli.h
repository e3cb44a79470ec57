/* The asu command-line client: helpers that its command files share. */
#ifndef ASU_CLI_H
#define ASU_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "asu.pb-c.h"
#include "client_rpc.h"

#define SERVICE "/asu.v1.Asu/"
#define EXIT_CALL 1  /* a call failed */
#define EXIT_USAGE 2 /* bad usage */

/* Prints a usage problem (fmt with one %s) and the usage; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, const char *arg);
/* Prints a failed call's status; returns EXIT_CALL. */
int cli_call_error(const asu_client_status *st);
bool cli_parse_u32(const char *s, uint32_t *out);
bool cli_parse_float(const char *s, float *out);
/* Watches a job until it ends or is interrupted; 0 only when it succeeded. */
int cli_watch(asu_client *c, const char *id);
/* Calls a method that takes a JobRequest and prints the job (GetJob) or its state. */
int cli_job(asu_client *c, const char *method, const char *id);

int cli_unlearn(asu_client *c, int argc, char **argv);
int cli_finetune(asu_client *c, int argc, char **argv);
int cli_evaluate(asu_client *c, int argc, char **argv);

#endif
