// The native objects behind the JS Model and Context, shared with the workers that use them: a JS object holds its
// state through a shared_ptr, and so does every decode in flight on it.
#ifndef LLAMA_NAPI_ADDON_STATE_H
#define LLAMA_NAPI_ADDON_STATE_H

#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

extern "C" {
#include "kv_cache.h"
#include "model.h"
}

namespace llama_napi {

// Keeps the strings and arrays the llm_model_spec points into alive for llm_model_open (and checkTensors).
struct SpecStorage {
  std::vector<std::string> files;
  std::vector<const char*> file_ptrs;
  std::vector<std::string> names;
  std::vector<llm_tensor_spec> tensors;
  std::vector<float> rope_freqs;
  llm_model_spec spec{};
};

struct ContextState;

// The weights. close() unmaps at once unless a decode is running, in which case the decode's completion
// (on the JS thread, like close) does it. The fields above the mutexes are touched on the JS thread only; the
// engine pointer is used by workers only while in_flight counts them.
struct ModelState {
  llm_model* model = nullptr;
  SpecStorage spec;  // what the model was opened with: checkTensors scans every tensor it lists
  bool closed = false;
  int in_flight = 0;  // workers and decode loops using the engine pointer

  // The contexts alive (JS thread only): their caches' blocks are in the model's KV pool, so they are freed before it.
  std::vector<ContextState*> contexts;

  inline void ReleaseIfIdle();
  ~ModelState() {
    if (model) llm_model_close(model);  // no context is left: each holds its model
  }
};

// kHidden: every token's final-norm hidden state (n × dim) instead of logits, for embeddings.
enum class LogitsWanted { kNone, kLast, kAll, kHidden };

// What one sequence's pass returns.
struct StepResult {
  std::vector<float> logits;
  std::vector<int32_t> top;
};

// A KV cache of `model`. Like the model, close() while a decode runs is completed by the decode. Touched on the JS
// thread only.
struct ContextState {
  std::shared_ptr<ModelState> model;
  llm_kv_cache* cache = nullptr;
  int context_size = 0;
  bool closed = false;
  bool busy = false;  // a worker or a decode loop request uses the cache

  // On the JS thread, when a worker or a request lets go of the cache.
  void Release() {
    busy = false;
    ReleaseIfIdle();
  }
  void ReleaseIfIdle() {
    if (closed && !busy && cache) {
      llm_kv_cache_free(cache);
      cache = nullptr;
    }
  }
  ~ContextState() {
    llm_kv_cache_free(cache);
    if (!model) return;
    std::vector<ContextState*>& all = model->contexts;
    all.erase(std::remove(all.begin(), all.end(), this), all.end());
  }
};

void ModelState::ReleaseIfIdle() {
  if (closed && in_flight == 0 && model) {
    for (ContextState* context : contexts) {
      llm_kv_cache_free(context->cache);
      context->cache = nullptr;
    }
    llm_model_close(model);
    model = nullptr;
  }
}


// The state behind a JS Model (model.cc); empty when value is not one.
std::shared_ptr<ModelState> ModelOf(Napi::Env env, const Napi::Value& value);
// The state behind a JS Context (context.cc); INVALID_ARGUMENT naming `where` when value is not one.
std::shared_ptr<ContextState> ContextOf(Napi::Env env, const Napi::Value& value, const std::string& where);

}  // namespace llama_napi

#endif
