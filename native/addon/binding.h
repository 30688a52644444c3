// What every file of the addon shares: the engine's headers, the conversion of JS arguments, and the JS errors that
// failures become. An error has a `code` (MODEL_FORMAT, INVALID_ARGUMENT, CONTEXT_OVERFLOW, ...) and the numbers a
// caller acts on as properties (`option`, `tokens`, `contextSize`, `bytes`), never only inside its message.
//
// Layout: one file per JS class (model.cc, context.cc, sampler.cc, decode_loop.cc; grammar.cc has two), the single passes models and
// contexts queue on libuv workers (scheduler.cc), the module functions for weights (weights.cc) and conversion
// (conversion.cc); addon.cc holds Init, which calls each file's Register function.
#ifndef LLAMA_NAPI_ADDON_BINDING_H
#define LLAMA_NAPI_ADDON_BINDING_H

#include <napi.h>

#include <string>

extern "C" {
#include "kv_cache.h"
#include "model.h"
struct llm_sampler;
struct llm_grammar;
}

namespace llama_napi {

// The largest integer a JS number holds exactly (2^53 - 1).
constexpr double kMaxSafeInteger = 9007199254740991.0;

// Why a build has no CUDA backend: the reason cudaInfo() gives, and the error of a Model asked for "cuda".
extern const char kNoCudaBackend[];

// Per-environment state: the constructors of the wrapped classes, for instanceof checks and createContext.
struct AddonData {
  Napi::FunctionReference model_constructor;
  Napi::FunctionReference context_constructor;
  Napi::FunctionReference sampler_constructor;
  Napi::FunctionReference token_trie_constructor;
  Napi::FunctionReference grammar_constructor;
};

// Each adds its part of the module to `exports` (or, for classes not constructible from JS, to AddonData).
void RegisterModel(Napi::Env env, Napi::Object exports);
void RegisterContext(Napi::Env env, Napi::Object exports);
void RegisterWeights(Napi::Env env, Napi::Object exports);
void RegisterConversion(Napi::Env env, Napi::Object exports);
void RegisterSampler(Napi::Env env, Napi::Object exports);
void RegisterDecodeLoop(Napi::Env env, Napi::Object exports);
void RegisterGrammar(Napi::Env env, Napi::Object exports);

// The engine sampler behind a JS Sampler (sampler.cc); INVALID_ARGUMENT naming `where` when value is not one.
llm_sampler* SamplerOf(Napi::Env env, const Napi::Value& value, const std::string& where);
// The matcher behind a JS Grammar (grammar.cc); INVALID_ARGUMENT naming `where` when value is not one.
llm_grammar* GrammarOf(Napi::Env env, const Napi::Value& value, const std::string& where);

// ---- Errors ----

// An Error with `code`.
Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message);
// INVALID_ARGUMENT naming the argument at fault in `option`.
Napi::Error ArgumentError(Napi::Env env, const char* option, const std::string& message);
// CONTEXT_OVERFLOW: `tokens` positions needed where the context holds `context_size`.
Napi::Error OverflowError(Napi::Env env, const std::string& message, double tokens, double context_size);
// An engine failure: its kind as `code`, its message after `prefix`, and the fields it set.
Napi::Error EngineError(Napi::Env env, const llm_error& err, const std::string& prefix = "");

// ---- Arguments ----

// object[key], or INVALID_ARGUMENT "<where>.<key> is missing".
Napi::Value Property(const Napi::Object& object, const char* key, const std::string& where);
// A JS number that must be an integer in [min, max] (doubles represent integers exactly up to 2^53); `what` names
// it in the message, `option` is the argument's name on the error.
double IntegerValue(const Napi::Value& value, const std::string& what, const char* option, double min, double max);
// object[key] as an int in [0, 2^31 - 1].
int IntProperty(const Napi::Object& object, const char* key, const std::string& where);

// A KV cache type by name ("f32", "f16", "q8_0"); INVALID_ARGUMENT naming `option` otherwise.
llm_kv_type KvTypeOf(Napi::Env env, const std::string& name, const char* option);
// value as an Int32Array, or INVALID_ARGUMENT "<where>: <option> must be an Int32Array".
Napi::Int32Array Int32ArrayArgument(const Napi::Value& value, const std::string& where, const char* option);

// ---- Promises ----

// A Promise-returning method reports every failure through the promise.
template <typename Start>
Napi::Value Promised(Napi::Env env, Start start) {
  try {
    return start();
  } catch (const Napi::Error& e) {
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
}

// Queues a worker (it deletes itself when done) and returns the promise it settles.
template <typename Worker>
Napi::Promise Queued(Worker* worker) {
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace llama_napi

#endif
