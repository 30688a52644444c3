// Weight conversion: quantize(type, Float32Array, rows, cols), dequantize(type, Uint8Array, rows, cols) and
// typeInfo(), the engine's block formats for lib/quantize.
#include <algorithm>
#include <new>
#include <string>
#include <vector>

#include "binding.h"

extern "C" {
#include "tensor.h"
}

namespace llama_napi {

namespace {

// Converts rows x cols values between f32 and a weight type on a libuv worker; resolves with the new array.
class ConvertWorker : public Napi::AsyncWorker {
 public:
  enum class Direction { kQuantize, kDequantize };

  ConvertWorker(Napi::Env env, Direction direction, llm_type type, Napi::TypedArray src, int64_t rows, int64_t cols)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        direction_(direction),
        type_(type),
        src_ref_(Napi::Persistent(src)),
        src_(static_cast<const uint8_t*>(src.ArrayBuffer().Data()) + src.ByteOffset()),
        rows_(rows),
        cols_(cols) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    const size_t row_bytes = llm_row_bytes(type_, cols_);
    const size_t out_row_bytes = direction_ == Direction::kQuantize ? row_bytes : (size_t)cols_ * sizeof(float);
    try {
      result_.resize((size_t)rows_ * out_row_bytes);
    } catch (const std::bad_alloc&) {
      SetError("out of memory for " + std::to_string(rows_ * out_row_bytes) + " bytes");
      return;
    }
    for (int64_t r = 0; r < rows_; r++) {
      if (direction_ == Direction::kQuantize)
        llm_quantize_row(type_, reinterpret_cast<const float*>(src_) + r * cols_, result_.data() + r * row_bytes, cols_);
      else
        llm_dequantize_row(type_, src_ + r * row_bytes, reinterpret_cast<float*>(result_.data()) + r * cols_, cols_);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, result_.size());
    std::copy(result_.begin(), result_.end(), static_cast<uint8_t*>(buffer.Data()));
    if (direction_ == Direction::kQuantize)
      deferred_.Resolve(Napi::Uint8Array::New(env, result_.size(), buffer, 0));
    else
      deferred_.Resolve(Napi::Float32Array::New(env, result_.size() / sizeof(float), buffer, 0));
  }

  void OnError(const Napi::Error& error) override {
    error.Set("code", Napi::String::New(Env(), "SYSTEM_ERROR"));
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Direction direction_;
  llm_type type_;
  Napi::Reference<Napi::TypedArray> src_ref_;  // keeps the source alive while the worker reads it
  const uint8_t* src_;
  int64_t rows_, cols_;
  std::vector<uint8_t> result_;
};

Napi::Value StartConvert(const Napi::CallbackInfo& info, ConvertWorker::Direction direction) {
  Napi::Env env = info.Env();
  const bool quantize = direction == ConvertWorker::Direction::kQuantize;
  const std::string fn = quantize ? "quantize" : "dequantize";
  const int type = (int)IntegerValue(info[0], fn + ": type", "type", 0, LLM_TYPE_COUNT - 1);
  const napi_typedarray_type expected = quantize ? napi_float32_array : napi_uint8_array;
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != expected)
    throw ArgumentError(env, "src", fn + ": src must be a " + (quantize ? "Float32Array" : "Uint8Array"));
  Napi::TypedArray src = info[1].As<Napi::TypedArray>();
  const int64_t rows = (int64_t)IntegerValue(info[2], fn + ": rows", "rows", 0, kMaxSafeInteger);
  const int64_t cols = (int64_t)IntegerValue(info[3], fn + ": cols", "cols", 0, kMaxSafeInteger);
  const int block = llm_type_block_size(type);
  if (block == 0) throw ArgumentError(env, "type", fn + ": type " + std::to_string(type) + " is not one of the engine's types");
  if (cols % block != 0)
    throw ArgumentError(env, "cols",
                        fn + ": cols = " + std::to_string(cols) + " is not a multiple of the " + llm_type_name(type) +
                            " block size " + std::to_string(block));
  // Both sizes stay below 2^53 elements * 4 bytes, far from 64-bit overflow, once rows * cols fits in 2^53.
  if (cols > 0 && rows > (int64_t)kMaxSafeInteger / cols)
    throw ArgumentError(env, "rows", fn + ": rows * cols is too large");
  const uint64_t expected_bytes = quantize ? (uint64_t)rows * cols * sizeof(float) : (uint64_t)rows * llm_row_bytes(type, cols);
  if (src.ByteLength() != expected_bytes)
    throw ArgumentError(env, "src",
                        fn + ": src has " + std::to_string(src.ByteLength()) + " bytes, but " + std::to_string(rows) +
                            " rows x " + std::to_string(cols) + " cols of " + (quantize ? "f32" : llm_type_name(type)) +
                            " take " + std::to_string(expected_bytes));
  return Queued(new ConvertWorker(env, direction, (llm_type)type, src, rows, cols));
}

template <ConvertWorker::Direction direction>
Napi::Value Convert(const Napi::CallbackInfo& info) {
  return Promised(info.Env(), [&]() { return StartConvert(info, direction); });
}

// [{code, name, blockSize, blockBytes}] for every weight type of the engine (tensor.c's table), in code order.
Napi::Value TypeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array types = Napi::Array::New(env);
  for (int code = 0; code < LLM_TYPE_COUNT; code++) {
    if (llm_type_block_size(code) == 0) continue;
    Napi::Object t = Napi::Object::New(env);
    t.Set("code", code);
    t.Set("name", llm_type_name(code));
    t.Set("blockSize", llm_type_block_size(code));
    t.Set("blockBytes", (double)llm_type_block_bytes(code));
    types.Set(types.Length(), t);
  }
  return types;
}

}  // namespace

void RegisterConversion(Napi::Env env, Napi::Object exports) {
  exports.Set("quantize", Napi::Function::New<Convert<ConvertWorker::Direction::kQuantize>>(env));
  exports.Set("dequantize", Napi::Function::New<Convert<ConvertWorker::Direction::kDequantize>>(env));
  exports.Set("typeInfo", Napi::Function::New<TypeInfo>(env));
}

}  // namespace llama_napi
