/* How the kernel test programs (native/test, native/cuda/test) report: one line per check, "ok" or "FAIL", and
 * the counts that decide the exit status. Included once per program. */
#ifndef LLM_TEST_REPORT_H
#define LLM_TEST_REPORT_H

#include <stdarg.h>
#include <stdio.h>

static int failures = 0, passes = 0;

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  printf("%s ", ok ? "ok  " : "FAIL");
  vprintf(fmt, args);
  printf("\n");
  va_end(args);
  fflush(stdout);
  if (ok) passes++;
  else failures++;
}

#endif
