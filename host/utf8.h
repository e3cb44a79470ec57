/* Joining generated pieces into valid UTF-8: a piece may end inside a character, so the joiner
   keeps the partial bytes for the next piece, and replaces invalid bytes with U+FFFD. */
#ifndef ASU_UTF8_H
#define ASU_UTF8_H

#include <stdbool.h>
#include <stddef.h>

typedef struct asu_utf8_joiner {
  unsigned char pending[4];
  size_t n;
} asu_utf8_joiner;

/* Appends text to the joiner and writes the complete characters to out (capacity at least
   3 * (len + 4) + 1), invalid bytes as U+FFFD. flush also ends a pending partial character.
   Returns the bytes written, not counting the terminating NUL. */
size_t asu_utf8_join(asu_utf8_joiner *u, const char *text, size_t len, bool flush, char *out);

#endif
