#include <string.h>

#include "ops.h"

void llm_embedding(float *out, const struct llm_tensor *table, int32_t token) {
  const size_t row_bytes = llm_row_bytes(table->type, table->cols);
  llm_dequantize_row(table->type, (const char *)table->data + (size_t)token * row_bytes, out, table->cols);
}
