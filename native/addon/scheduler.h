// The decode loop the JS Model and Context share (scheduler.cc): forward passes on libuv workers, the engine's own
// greedy loop, and the greedy look-ahead protocol (speculate / claim / settle).
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
  bool speculate = false;  // the caller's next token will be this pass's argmax: look ahead
  StepResult result;

  // The logits that cross back; the top k comes separately (ranked by the engine, on the device when there is one).
  llm_logits_mode Mode() const {
    return wanted == LogitsWanted::kAll ? LLM_LOGITS_ALL : wanted == LogitsWanted::kLast ? LLM_LOGITS_LAST : LLM_LOGITS_NONE;
  }
  // Whether a look-ahead step fits: the argmax is known and the next position is inside the context.
  bool CanLookAhead() const { return speculate && top_k > 0 && pos + (int)tokens.size() < context->context_size; }
};

// Checks one (tokens, pos, options) triple against its context and copies the tokens out of JS memory; errors name
// `where`.
DecodeItem ReadDecodeItem(Napi::Env env, std::shared_ptr<ContextState> context, const Napi::Value& tokens_value,
                          const Napi::Value& pos_value, const Napi::Value& options_value, const std::string& where);

// Runs the items (distinct contexts of one model) in one forward pass on a worker; the promise resolves with one
// {logits?, top?} object, or an array of them when as_array. Then looks ahead for the items that asked to.
Napi::Promise QueueDecode(Napi::Env env, std::vector<DecodeItem> items, bool as_array);

// The engine alone: prefills the item, then n times picks the argmax and runs it; resolves with the n ids.
Napi::Promise QueueGreedy(Napi::Env env, DecodeItem item, int n);

// The look-ahead step for exactly this decode (one token at pos, the same logits and top k) as a promise of its
// result, or undefined when there is none.
Napi::Value ClaimLookAhead(Napi::Env env, ContextState& context, const Napi::Int32Array& tokens, double pos,
                           LogitsWanted wanted, int top_k);

// A look-ahead step still running on the context stops its chain; a kept one is dropped.
void AbandonLookAhead(ContextState& context);

// Ends any look-ahead on the context; the promise resolves once no worker uses its cache.
Napi::Promise Settle(Napi::Env env, ContextState& context);

}  // namespace llama_napi

#endif
