#include <string.h>

#include "ops.h"

void llm_embedding(float *out, const struct llm_tensor *table, int32_t token) {
  int64_t dim = table->cols;
  int64_t first = (int64_t)token * dim;
  if (table->type == LLM_F32) {
    memcpy(out, (const float *)table->data + first, (size_t)dim * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < dim; i++) out[i] = llm_tensor_get(table->data, table->type, first + i);
}
