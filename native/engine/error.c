#include <stdarg.h>
#include <stdio.h>

#include "model.h"

bool llm_fail(struct llm_error *err, enum llm_error_kind kind, const char *fmt, ...) {
  err->kind = kind;
  va_list args;
  va_start(args, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, args);
  va_end(args);
  return false;
}
