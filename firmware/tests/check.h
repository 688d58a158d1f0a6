/* Minimal test harness for the C tests: each test binary registers tests with
 * RUN(fn); CHECK fails the current test with file:line; the binary ends with
 * the line "N passed, N failed" and exits non-zero on any failure. */
#ifndef PIFS_CHECK_H
#define PIFS_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failed_now;
static int check_passed_total, check_failed_total;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      check_failed_now = 1;                                                      \
      return;                                                                    \
    }                                                                            \
  } while (0)

#define CHECK_EQ(a, b)                                                                       \
  do {                                                                                       \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                          \
    if (check_a_ != check_b_) {                                                              \
      fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, \
              check_a_, #b, check_b_);                                                       \
      check_failed_now = 1;                                                                  \
      return;                                                                                \
    }                                                                                        \
  } while (0)

#define RUN(fn)                                               \
  do {                                                        \
    check_failed_now = 0;                                     \
    fn();                                                     \
    if (check_failed_now) {                                   \
      check_failed_total++;                                   \
      printf("FAIL %s\n", #fn);                               \
    } else {                                                  \
      check_passed_total++;                                   \
      printf("ok   %s\n", #fn);                               \
    }                                                         \
    fflush(stdout);                                           \
  } while (0)

#define CHECK_DONE()                                                       \
  (printf("%d passed, %d failed\n", check_passed_total, check_failed_total), \
   check_failed_total ? 1 : 0)

#endif
