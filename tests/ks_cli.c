/* Reads two lines of numbers (the two samples) from stdin and prints the two-sample
   Kolmogorov-Smirnov statistic and p-value of asu_ks_2samp, for tests/metrics_check.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_metrics.h"

static size_t read_line(double **out) {
  char *line = NULL;
  size_t cap = 0, n = 0, size = 16;
  if (getline(&line, &cap, stdin) < 0) return 0;
  double *v = malloc(size * sizeof *v);
  char *p = line, *end;
  for (double x = strtod(p, &end); end != p; x = strtod(p, &end)) {
    if (n == size) v = realloc(v, (size *= 2) * sizeof *v);
    v[n++] = x;
    p = end;
  }
  free(line);
  *out = v;
  return n;
}

int main(void) {
  double *x = NULL, *y = NULL, d = 0;
  size_t n = read_line(&x), m = read_line(&y);
  double p = asu_ks_2samp(x, n, y, m, &d);
  printf("%.17g %.17g\n", d, p);
  free(x);
  free(y);
  return 0;
}
