// The shared argument and error helpers (binding.h).
#include "binding.h"

#include <cmath>

namespace llama_napi {

namespace {

const char* ErrorCode(llm_error_kind kind) {
  switch (kind) {
    case LLM_ERR_FORMAT: return "MODEL_FORMAT";
    case LLM_ERR_UNSUPPORTED: return "UNSUPPORTED_MODEL";
    case LLM_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case LLM_ERR_DEVICE: return "DEVICE_ERROR";
    case LLM_ERR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case LLM_ERR_NUMERICAL: return "NUMERICAL";
    case LLM_ERR_CONTEXT_OVERFLOW: return "CONTEXT_OVERFLOW";
    case LLM_ERR_CUSTOM_OP: return "CUSTOM_OP";
    default: return "SYSTEM_ERROR";
  }
}

}  // namespace

const char kNoCudaBackend[] =
    "this build of llama-napi has no CUDA backend (it was compiled where no NVIDIA driver was visible, without nvcc, "
    "or with LLAMA_NAPI_CUDA=0; LLAMA_NAPI_CUDA=1 builds it)";

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

Napi::Error ArgumentError(Napi::Env env, const char* option, const std::string& message) {
  Napi::Error error = CodedError(env, "INVALID_ARGUMENT", message);
  error.Set("option", Napi::String::New(env, option));
  return error;
}

Napi::Error OverflowError(Napi::Env env, const std::string& message, double tokens, double context_size) {
  Napi::Error error = CodedError(env, "CONTEXT_OVERFLOW", message);
  error.Set("tokens", Napi::Number::New(env, tokens));
  error.Set("contextSize", Napi::Number::New(env, context_size));
  return error;
}

Napi::Error EngineError(Napi::Env env, const llm_error& err, const std::string& prefix) {
  const std::string message = prefix + err.message;
  if (err.kind == LLM_ERR_CONTEXT_OVERFLOW) return OverflowError(env, message, (double)err.tokens, (double)err.context_size);
  if (err.option) return ArgumentError(env, err.option, message);
  Napi::Error error = CodedError(env, ErrorCode(err.kind), message);
  if (err.bytes) error.Set("bytes", Napi::Number::New(env, (double)err.bytes));
  if (err.symbol) error.Set("symbol", Napi::String::New(env, err.symbol));
  return error;
}

Napi::Value Property(const Napi::Object& object, const char* key, const std::string& where) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined()) throw ArgumentError(object.Env(), key, where + "." + key + " is missing");
  return value;
}

double IntegerValue(const Napi::Value& value, const std::string& what, const char* option, double min, double max) {
  double d = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= min && d <= max) || std::floor(d) != d)
    throw ArgumentError(value.Env(), option,
                        what + " must be an integer in [" + std::to_string((long long)min) + ", " +
                            std::to_string((long long)max) + "]");
  return d;
}

int IntProperty(const Napi::Object& object, const char* key, const std::string& where) {
  return (int)IntegerValue(Property(object, key, where), where + "." + key, key, 0, 2147483647);
}

llm_kv_type KvTypeOf(Napi::Env env, const std::string& name, const char* option) {
  for (llm_kv_type type : {LLM_KV_F32, LLM_KV_F16, LLM_KV_Q8_0})
    if (name == llm_kv_type_name(type)) return type;
  throw ArgumentError(env, option, std::string(option) + " must be \"f32\", \"f16\" or \"q8_0\" (got \"" + name + "\")");
}

Napi::Int32Array Int32ArrayArgument(const Napi::Value& value, const std::string& where, const char* option) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw ArgumentError(value.Env(), option, where + ": " + option + " must be an Int32Array");
  return value.As<Napi::Int32Array>();
}

}  // namespace llama_napi
