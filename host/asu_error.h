/* Error codes and the error record that every fallible libasu call fills. */
#ifndef ASU_ERROR_H
#define ASU_ERROR_H

#include <stdarg.h>
#include <stddef.h>

enum asu_status {
  ASU_OK = 0,
  ASU_ERR_INVALID = -1,   /* an argument or request value is invalid */
  ASU_ERR_IO = -2,        /* a file could not be opened, read or written */
  ASU_ERR_FORMAT = -3,    /* a file or message is malformed or truncated */
  ASU_ERR_VULKAN = -4,    /* a Vulkan call failed */
  ASU_ERR_NOMEM = -5,     /* host or device memory ran out */
  ASU_ERR_NOT_FOUND = -6, /* a named object (tensor, key, adapter, device) does not exist */
  ASU_ERR_CANCELLED = -7, /* the caller cancelled the operation */
  ASU_ERR_LIMIT = -8,     /* a size or count is over a configured limit */
  ASU_ERR_INTERNAL = -9,  /* a bug: an invariant of the library does not hold */
};

typedef struct asu_error {
  int code;
  char message[512];
} asu_error;

/* Sets err (when not NULL) to code and a printf-style message; returns code. The first error
   set wins only if the caller checks err->code, so callers stop at the first failure. */
int asu_error_set(asu_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message in err with a printf-style context, as in "loading model.gguf: ". */
int asu_error_wrap(asu_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void asu_error_clear(asu_error *err);

/* Returns the short name of a status code, as in "invalid argument". */
const char *asu_status_name(int code);

#endif
