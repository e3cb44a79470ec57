#include "utf8.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Length of the sequence starting with lead, 0 if lead cannot start one. */
static size_t utf8_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

static bool utf8_cont_ok(unsigned char lead, size_t k, unsigned char b) {
  if (k == 1) {
    if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
    if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
    if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  }
  return b >= 0x80 && b <= 0xBF;
}

size_t asu_utf8_join(asu_utf8_joiner *u, const char *text, size_t len, bool flush, char *out) {
  static const char repl[] = "\xEF\xBF\xBD";
  size_t total = u->n + len, i = 0, o = 0;
  unsigned char *buf = malloc(total ? total : 1);
  if (!buf) {
    u->n = 0;
    out[0] = '\0';
    return 0;
  }
  memcpy(buf, u->pending, u->n);
  memcpy(buf + u->n, text, len);
  u->n = 0;
  while (i < total) {
    size_t need = utf8_len(buf[i]);
    if (need == 0) {
      memcpy(out + o, repl, 3);
      o += 3;
      i++;
      continue;
    }
    size_t k = 1;
    while (k < need && i + k < total && utf8_cont_ok(buf[i], k, buf[i + k])) k++;
    if (k == need) {
      memcpy(out + o, buf + i, need);
      o += need;
      i += need;
    } else if (i + k == total && !flush) {
      memcpy(u->pending, buf + i, k); /* an incomplete tail: wait for the next piece */
      u->n = k;
      break;
    } else {
      memcpy(out + o, repl, 3);
      o += 3;
      i += k;
    }
  }
  free(buf);
  out[o] = '\0';
  return o;
}
