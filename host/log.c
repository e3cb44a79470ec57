#include "asu_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static pthread_once_t level_once = PTHREAD_ONCE_INIT;
static int min_level = ASU_LOG_INFO;

static void read_level(void) {
  const char *s = getenv("ASU_LOG_LEVEL");
  if (!s) return;
  if (!strcmp(s, "debug")) min_level = ASU_LOG_DEBUG;
  else if (!strcmp(s, "info")) min_level = ASU_LOG_INFO;
  else if (!strcmp(s, "warn")) min_level = ASU_LOG_WARN;
  else if (!strcmp(s, "error")) min_level = ASU_LOG_ERROR;
}

void asu_log(enum asu_log_level level, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  pthread_once(&level_once, read_level);
  if ((int)level < min_level) return;

  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char line[2048];
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(tv.tv_usec / 1000), names[level]);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  /* One fputs per line keeps lines from concurrent threads whole. */
  size_t len = strlen(line);
  if (len + 1 < sizeof line) {
    line[len] = '\n';
    line[len + 1] = '\0';
  }
  fputs(line, stderr);
}

double asu_monotonic_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
