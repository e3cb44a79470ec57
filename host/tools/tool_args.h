/* Reading numbers from the command line, shared by the asu-finetune and asu-unlearn programs. */
#ifndef ASU_TOOL_ARGS_H
#define ASU_TOOL_ARGS_H

#include <stdio.h>
#include <stdlib.h>

/* Parses text as a number in [min, max] into *out; prints what was wrong and returns -1
   otherwise. */
static inline int tool_number(const char *program, const char *flag, const char *text,
                              double min, double max, double *out) {
  char *end = NULL;
  double v = strtod(text, &end);
  if (!text[0] || *end || !(v >= min && v <= max)) {
    fprintf(stderr, "%s: %s must be a number in [%g, %g], got '%s'\n", program, flag, min, max,
            text);
    return -1;
  }
  *out = v;
  return 0;
}

#endif
