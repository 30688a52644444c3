#include <stdarg.h>
#include <stdio.h>

#include "model.h"

static bool fail(struct llm_error *err, enum llm_error_kind kind, const char *fmt, va_list args) {
  err->kind = kind;
  err->option = NULL;
  err->tokens = err->context_size = 0;
  err->bytes = 0;
  err->symbol = NULL;
  vsnprintf(err->message, sizeof err->message, fmt, args);
  return false;
}

bool llm_fail(struct llm_error *err, enum llm_error_kind kind, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fail(err, kind, fmt, args);
  va_end(args);
  return false;
}

bool llm_fail_argument(struct llm_error *err, const char *option, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fail(err, LLM_ERR_INVALID_ARGUMENT, fmt, args);
  va_end(args);
  err->option = option;
  return false;
}

bool llm_fail_overflow(struct llm_error *err, int64_t tokens, int64_t context_size, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fail(err, LLM_ERR_CONTEXT_OVERFLOW, fmt, args);
  va_end(args);
  err->tokens = tokens;
  err->context_size = context_size;
  return false;
}

bool llm_fail_out_of_memory(struct llm_error *err, uint64_t bytes, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fail(err, LLM_ERR_OUT_OF_MEMORY, fmt, args);
  va_end(args);
  err->bytes = bytes;
  return false;
}

bool llm_fail_symbol(struct llm_error *err, enum llm_error_kind kind, const char *symbol, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fail(err, kind, fmt, args);
  va_end(args);
  err->symbol = symbol;
  return false;
}
