/* Minimal checks for the test programs: CHECK counts passes and failures and prints each
   failure with its file and line; TEST_SUMMARY prints "N passed, M failed" and gives the exit
   status. */
#ifndef ASU_TEST_UTIL_H
#define ASU_TEST_UTIL_H

#include <stdio.h>

static int test_passed;
static int test_failed;

#define CHECK(cond, ...)                                             \
  do {                                                               \
    if (cond) {                                                      \
      test_passed++;                                                 \
    } else {                                                         \
      test_failed++;                                                 \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                  \
      fputc('\n', stderr);                                           \
    }                                                                \
  } while (0)

/* Prints the closing line and returns the exit status for main. */
#define TEST_SUMMARY() \
  (printf("%d passed, %d failed\n", test_passed, test_failed), test_failed == 0 ? 0 : 1)

#endif
