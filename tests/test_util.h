/* Minimal checks for the test programs: CHECK counts passes and failures and prints each
   failure with its file and line; TEST_SUMMARY prints "N passed, M failed" and gives the exit
   status. */
#ifndef ASU_TEST_UTIL_H
#define ASU_TEST_UTIL_H

#include <stdio.h>

#include "asu_vk.h"

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
/* Messages of the Vulkan validation layer (ASU_VK_VALIDATION=1) count as one failure. */
#define TEST_SUMMARY()                                                              \
  (asu_vk_validation_messages() ? (test_failed++, fprintf(stderr, "the Vulkan validation " \
                                   "layer reported messages (see the log above)\n")) : 0, \
   printf("%d passed, %d failed\n", test_passed, test_failed), test_failed == 0 ? 0 : 1)

#endif
