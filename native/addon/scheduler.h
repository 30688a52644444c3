// The single forward passes the JS Model and Context queue on libuv workers (scheduler.cc): decodeBatch / decode,
// and the engine's own greedy loop. Generation runs in the decode loop (decode_loop.cc) instead.
#ifndef LLAMA_NAPI_ADDON_SCHEDULER_H
#define LLAMA_NAPI_ADDON_SCHEDULER_H

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "state.h"

extern "C" {
#include "forward.h"
}

namespace llama_napi {

// One sequence of a decode call: what to run, and (after each pass) its results.
struct DecodeItem {
  std::shared_ptr<ContextState> context;
  std::vector<int32_t> tokens;
  int pos = 0;
  LogitsWanted wanted = LogitsWanted::kLast;
  int top_k = 0;
  StepResult result;

  // The logits that cross back; the top k comes separately (ranked by the engine, on the device when there is one).
  llm_logits_mode Mode() const {
    switch (wanted) {
      case LogitsWanted::kAll: return LLM_LOGITS_ALL;
      case LogitsWanted::kLast: return LLM_LOGITS_LAST;
      case LogitsWanted::kHidden: return LLM_HIDDEN_ALL;
      default: return LLM_LOGITS_NONE;
    }
  }
};

// Checks one (tokens, pos, options) triple against its context and copies the tokens out of JS memory; errors name
// `where`.
DecodeItem ReadDecodeItem(Napi::Env env, std::shared_ptr<ContextState> context, const Napi::Value& tokens_value,
                          const Napi::Value& pos_value, const Napi::Value& options_value, const std::string& where);

// Runs the items (distinct contexts of one model) in one forward pass on a worker; the promise resolves with one
// {logits?, top?} object, or an array of them when as_array.
Napi::Promise QueueDecode(Napi::Env env, std::vector<DecodeItem> items, bool as_array);

// The engine alone: prefills the item, then n times picks the argmax and runs it; resolves with the n ids.
Napi::Promise QueueGreedy(Napi::Env env, DecodeItem item, int n);

}  // namespace llama_napi

#endif
