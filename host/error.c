#include "asu_error.h"

#include <stdio.h>
#include <string.h>

int asu_error_set(asu_error *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return code;
}

int asu_error_wrap(asu_error *err, const char *fmt, ...) {
  if (!err) return ASU_ERR_INTERNAL;
  char prefix[256];
  char old[sizeof err->message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->message, sizeof old);
  /* The combined message is cut to the buffer, keeping the prefix whole. */
  size_t used = strlen(prefix);
  if (used >= sizeof err->message) used = sizeof err->message - 1;
  memcpy(err->message, prefix, used);
  size_t rest = strlen(old);
  if (rest > sizeof err->message - 1 - used) rest = sizeof err->message - 1 - used;
  memcpy(err->message + used, old, rest);
  err->message[used + rest] = '\0';
  return err->code;
}

void asu_error_clear(asu_error *err) {
  if (err) {
    err->code = ASU_OK;
    err->message[0] = '\0';
  }
}

const char *asu_status_name(int code) {
  switch (code) {
  case ASU_OK: return "ok";
  case ASU_ERR_INVALID: return "invalid argument";
  case ASU_ERR_IO: return "I/O error";
  case ASU_ERR_FORMAT: return "malformed data";
  case ASU_ERR_VULKAN: return "Vulkan error";
  case ASU_ERR_NOMEM: return "out of memory";
  case ASU_ERR_NOT_FOUND: return "not found";
  case ASU_ERR_CANCELLED: return "cancelled";
  case ASU_ERR_LIMIT: return "over a limit";
  default: return "internal error";
  }
}
