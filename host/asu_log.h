/* A small leveled logger: one line per call on stderr, with a UTC timestamp and the level.
   Callers put ids (job, request, adapter) in the message. ASU_LOG_LEVEL sets the minimum level
   (debug, info, warn, error); the default is info. */
#ifndef ASU_LOG_H
#define ASU_LOG_H

enum asu_log_level { ASU_LOG_DEBUG = 0, ASU_LOG_INFO = 1, ASU_LOG_WARN = 2, ASU_LOG_ERROR = 3 };

void asu_log(enum asu_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define asu_log_debug(...) asu_log(ASU_LOG_DEBUG, __VA_ARGS__)
#define asu_log_info(...) asu_log(ASU_LOG_INFO, __VA_ARGS__)
#define asu_log_warn(...) asu_log(ASU_LOG_WARN, __VA_ARGS__)
#define asu_log_error(...) asu_log(ASU_LOG_ERROR, __VA_ARGS__)

/* Returns seconds on a monotonic clock, for timing intervals. */
double asu_monotonic_seconds(void);

#endif
