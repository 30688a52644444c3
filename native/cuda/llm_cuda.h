/* The CUDA backend of the engine: the whole model in device memory, forward passes and the KV pool there. Built
 * only when CMake finds nvcc (LLAMA_NAPI_CUDA); the runtime is linked statically, so the addon loads on machines
 * without a driver and these functions report that instead. */
#ifndef LLM_CUDA_H
#define LLM_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "model.h"

/* CUDA devices this process can use; 0 with `why` saying why not (no driver, no device, driver too old). */
int llm_cuda_device_count(char *why, size_t why_size);

/* Uploads every tensor of an open model to device `gpu` (the file's bytes, unchanged) and makes it the model's
 * backend: llm_forward_batch runs there, and the KV pool created afterwards (llm_kv_pool_create) lives there. Fails with LLM_ERR_DEVICE (no
 * device, too little memory: the message names the bytes needed and free) or LLM_ERR_INVALID_ARGUMENT (no such
 * gpu), leaving the model on the CPU. */
bool llm_cuda_attach(struct llm_model *model, int gpu, struct llm_error *err);

#ifdef __cplusplus
}
#endif

#endif
