// N-API glue over the C engine: converts the NativeModelSpec of lib/native/binding.ts into an llm_model_spec,
// runs forward passes on libuv worker threads, and turns engine errors into JS errors with a `code`.
#include <napi.h>

#include <cmath>
#include <memory>
#include <new>
#include <string>
#include <vector>

extern "C" {
#include "cpu_features.h"
#include "forward.h"
#include "model.h"
#include "ops.h"
#include "tensor.h"
#include "threadpool.h"
}

namespace {

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

const char* ErrorCode(llm_error_kind kind) {
  switch (kind) {
    case LLM_ERR_FORMAT: return "MODEL_FORMAT";
    case LLM_ERR_UNSUPPORTED: return "UNSUPPORTED_MODEL";
    case LLM_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    default: return "SYSTEM_ERROR";
  }
}

// ---- Reading the spec object ----

Napi::Value Property(const Napi::Object& object, const char* key, const std::string& where) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined())
    throw CodedError(object.Env(), "INVALID_ARGUMENT", where + "." + key + " is missing");
  return value;
}

// A JS number that must be an integer in [min, max] (doubles represent integers exactly up to 2^53).
double IntegerValue(const Napi::Value& value, const std::string& what, double min, double max) {
  double d = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= min && d <= max) || std::floor(d) != d)
    throw CodedError(value.Env(), "INVALID_ARGUMENT",
                     what + " must be an integer in [" + std::to_string((long long)min) + ", " +
                         std::to_string((long long)max) + "]");
  return d;
}

int IntProperty(const Napi::Object& object, const char* key, const std::string& where) {
  return (int)IntegerValue(Property(object, key, where), where + "." + key, 0, 2147483647);
}

const double kMaxSafeInteger = 9007199254740991.0;

// Keeps the strings and arrays the llm_model_spec points into alive for llm_model_open.
struct SpecStorage {
  std::vector<std::string> files;
  std::vector<const char*> file_ptrs;
  std::vector<std::string> names;
  std::vector<llm_tensor_spec> tensors;
  std::vector<float> rope_freqs;
  llm_model_spec spec{};
};

void ReadSpec(const Napi::Object& js, SpecStorage& s) {
  Napi::Env env = js.Env();
  Napi::Value files = Property(js, "files", "spec");
  if (!files.IsArray()) throw CodedError(env, "INVALID_ARGUMENT", "spec.files must be an array of paths");
  Napi::Array file_array = files.As<Napi::Array>();
  for (uint32_t i = 0; i < file_array.Length(); i++) {
    Napi::Value path = file_array.Get(i);
    if (!path.IsString()) throw CodedError(env, "INVALID_ARGUMENT", "spec.files[" + std::to_string(i) + "] must be a string");
    s.files.push_back(path.As<Napi::String>().Utf8Value());
  }
  for (const std::string& f : s.files) s.file_ptrs.push_back(f.c_str());

  Napi::Value tensors = Property(js, "tensors", "spec");
  if (!tensors.IsArray()) throw CodedError(env, "INVALID_ARGUMENT", "spec.tensors must be an array");
  Napi::Array tensor_array = tensors.As<Napi::Array>();
  s.names.reserve(tensor_array.Length());
  for (uint32_t i = 0; i < tensor_array.Length(); i++) {
    std::string where = "spec.tensors[" + std::to_string(i) + "]";
    Napi::Value item = tensor_array.Get(i);
    if (!item.IsObject()) throw CodedError(env, "INVALID_ARGUMENT", where + " must be an object");
    Napi::Object t = item.As<Napi::Object>();
    Napi::Value name = Property(t, "name", where);
    if (!name.IsString()) throw CodedError(env, "INVALID_ARGUMENT", where + ".name must be a string");
    s.names.push_back(name.As<Napi::String>().Utf8Value());
    where = "tensor " + s.names.back();
    llm_tensor_spec spec{};
    spec.file = IntProperty(t, "file", where);
    spec.offset = (uint64_t)IntegerValue(Property(t, "offset", where), where + ".offset", 0, kMaxSafeInteger);
    spec.type = IntProperty(t, "type", where);
    Napi::Value shape = Property(t, "shape", where);
    if (!shape.IsArray()) throw CodedError(env, "INVALID_ARGUMENT", where + ".shape must be an array");
    Napi::Array dims = shape.As<Napi::Array>();
    if (dims.Length() < 1 || dims.Length() > 4)
      throw CodedError(env, "MODEL_FORMAT", where + " has " + std::to_string(dims.Length()) + " dimensions");
    spec.n_dims = (int)dims.Length();
    for (uint32_t d = 0; d < dims.Length(); d++)
      spec.shape[d] = (int64_t)IntegerValue(dims.Get(d), where + ".shape[" + std::to_string(d) + "]", 0, kMaxSafeInteger);
    s.tensors.push_back(spec);
  }
  for (size_t i = 0; i < s.tensors.size(); i++) s.tensors[i].name = s.names[i].c_str();

  Napi::Value config_value = Property(js, "config", "spec");
  if (!config_value.IsObject()) throw CodedError(env, "INVALID_ARGUMENT", "spec.config must be an object");
  Napi::Object config = config_value.As<Napi::Object>();
  llm_config& c = s.spec.config;
  c.dim = IntProperty(config, "dim", "spec.config");
  c.hidden_dim = IntProperty(config, "hiddenDim", "spec.config");
  c.n_layers = IntProperty(config, "layers", "spec.config");
  c.n_heads = IntProperty(config, "heads", "spec.config");
  c.n_kv_heads = IntProperty(config, "kvHeads", "spec.config");
  c.head_dim = IntProperty(config, "headDim", "spec.config");
  c.vocab_size = IntProperty(config, "vocabSize", "spec.config");
  Napi::Value eps = Property(config, "normEps", "spec.config");
  if (!eps.IsNumber()) throw CodedError(env, "INVALID_ARGUMENT", "spec.config.normEps must be a number");
  c.norm_eps = eps.As<Napi::Number>().FloatValue();
  c.rope_interleaved = Property(config, "ropeInterleaved", "spec.config").ToBoolean().Value();
  Napi::Value freqs = Property(config, "ropeFreqs", "spec.config");
  if (!freqs.IsTypedArray() || freqs.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw CodedError(env, "INVALID_ARGUMENT", "spec.config.ropeFreqs must be a Float32Array");
  Napi::Float32Array freq_array = freqs.As<Napi::Float32Array>();
  if (freq_array.ElementLength() != (size_t)c.head_dim / 2 || c.head_dim < 2)
    throw CodedError(env, "INVALID_ARGUMENT",
                     "spec.config.ropeFreqs has " + std::to_string(freq_array.ElementLength()) +
                         " values, expected headDim/2 = " + std::to_string(c.head_dim / 2));
  s.rope_freqs.assign(freq_array.Data(), freq_array.Data() + freq_array.ElementLength());
  c.rope_freqs = s.rope_freqs.data();

  s.spec.files = s.file_ptrs.data();
  s.spec.n_files = (int)s.file_ptrs.size();
  s.spec.tensors = s.tensors.data();
  s.spec.n_tensors = (int)s.tensors.size();
  s.spec.n_threads = IntProperty(js, "threads", "spec");
}

// ---- Shared state: the JS objects hold these, and so does a decode in flight ----

// The weights. close() unmaps at once unless a decode is running, in which case the decode's completion
// (on the JS thread, like close) does it. All fields are touched on the JS thread only; the engine pointer
// is used by workers only while in_flight counts them.
struct ModelState {
  llm_model* model = nullptr;
  bool closed = false;
  int in_flight = 0;

  void ReleaseIfIdle() {
    if (closed && in_flight == 0 && model) {
      llm_model_close(model);
      model = nullptr;
    }
  }
  ~ModelState() {
    if (model) llm_model_close(model);
  }
};

struct ContextState {
  llm_kv_cache* cache = nullptr;
  int context_size = 0;
  bool closed = false;
  bool busy = false;

  void ReleaseIfIdle() {
    if (closed && !busy && cache) {
      llm_kv_cache_free(cache);
      cache = nullptr;
    }
  }
  ~ContextState() { llm_kv_cache_free(cache); }
};

enum class LogitsWanted { kNone, kLast, kAll };

class DecodeWorker : public Napi::AsyncWorker {
 public:
  DecodeWorker(Napi::Env env, std::shared_ptr<ModelState> model, std::shared_ptr<ContextState> context,
               std::vector<int32_t> tokens, int pos, LogitsWanted wanted, int top_k)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(std::move(model)),
        context_(std::move(context)),
        tokens_(std::move(tokens)),
        pos_(pos),
        wanted_(wanted),
        top_k_(top_k) {
    model_->in_flight++;
    context_->busy = true;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    const int vocab = model_->model->config.vocab_size;
    const int n = (int)tokens_.size();
    llm_logits_mode mode = wanted_ == LogitsWanted::kAll ? LLM_LOGITS_ALL
                           : (wanted_ == LogitsWanted::kLast || top_k_ > 0) ? LLM_LOGITS_LAST
                                                                            : LLM_LOGITS_NONE;
    try {
      logits_.resize(mode == LLM_LOGITS_ALL ? (size_t)n * vocab : mode == LLM_LOGITS_LAST ? (size_t)vocab : 0);
      top_.resize((size_t)top_k_);
    } catch (const std::bad_alloc&) {
      SetError("out of memory for the logits of " + std::to_string(n) + " tokens");
      return;
    }
    llm_error err{};
    if (!llm_forward(model_->model, context_->cache, tokens_.data(), n, pos_, logits_.data(), mode, &err)) {
      error_kind_ = err.kind;
      SetError(err.message);
      return;
    }
    if (top_k_ > 0) {
      const float* last = logits_.data() + (mode == LLM_LOGITS_ALL ? (size_t)(n - 1) * vocab : 0);
      llm_top_k(last, vocab, top_k_, top_.data());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Finish();
    Napi::Object result = Napi::Object::New(env);
    if (wanted_ != LogitsWanted::kNone) {
      Napi::Float32Array logits = Napi::Float32Array::New(env, logits_.size());
      std::copy(logits_.begin(), logits_.end(), logits.Data());
      result.Set("logits", logits);
    }
    if (top_k_ > 0) {
      Napi::Int32Array top = Napi::Int32Array::New(env, top_.size());
      std::copy(top_.begin(), top_.end(), top.Data());
      result.Set("top", top);
    }
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& error) override {
    Finish();
    error.Set("code", Napi::String::New(Env(), ErrorCode(error_kind_)));
    deferred_.Reject(error.Value());
  }

 private:
  // Runs deferred closes now that the engine no longer uses the weights or the cache.
  void Finish() {
    context_->busy = false;
    context_->ReleaseIfIdle();
    model_->in_flight--;
    model_->ReleaseIfIdle();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> model_;
  std::shared_ptr<ContextState> context_;
  std::vector<int32_t> tokens_;
  int pos_;
  LogitsWanted wanted_;
  int top_k_;
  std::vector<float> logits_;
  std::vector<int32_t> top_;
  llm_error_kind error_kind_ = LLM_ERR_SYSTEM;
};

struct AddonData {
  Napi::FunctionReference context_constructor;
};

// ---- JS classes ----

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod<&Model::CreateContext>("createContext"), InstanceMethod<&Model::Close>("close")});
  }

  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info), state_(std::make_shared<ModelState>()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw CodedError(env, "INVALID_ARGUMENT", "new Model(spec): spec must be an object");
    SpecStorage storage;
    ReadSpec(info[0].As<Napi::Object>(), storage);
    llm_error err{};
    state_->model = llm_model_open(&storage.spec, &err);
    if (!state_->model) throw CodedError(env, ErrorCode(err.kind), err.message);
  }

  std::shared_ptr<ModelState> state() const { return state_; }

 private:
  Napi::Value CreateContext(const Napi::CallbackInfo& info);

  void Close(const Napi::CallbackInfo&) {
    state_->closed = true;
    state_->ReleaseIfIdle();
  }

  std::shared_ptr<ModelState> state_;
};

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Context",
                       {InstanceAccessor<&Context::ContextSize>("contextSize"),
                        InstanceMethod<&Context::Decode>("decode"), InstanceMethod<&Context::Close>("close")});
  }

  // Called from Model.createContext with (model object, context size); not constructible from JS otherwise.
  explicit Context(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Context>(info), state_(std::make_shared<ContextState>()) {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsObject())
      throw CodedError(env, "INVALID_ARGUMENT", "contexts are created with model.createContext(size)");
    Model* model = Model::Unwrap(info[0].As<Napi::Object>());
    if (!model) throw CodedError(env, "INVALID_ARGUMENT", "contexts are created with model.createContext(size)");
    model_ = model->state();
    model_object_ = Napi::Persistent(info[0].As<Napi::Object>());
    if (model_->closed) throw CodedError(env, "DISPOSED", "createContext: the model is closed");
    int size = (int)IntegerValue(info[1], "context size", 1, 2147483647);
    llm_error err{};
    state_->cache = llm_kv_cache_create(model_->model, size, &err);
    if (!state_->cache) throw CodedError(env, ErrorCode(err.kind), err.message);
    state_->context_size = size;
  }

 private:
  Napi::Value ContextSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_->context_size); }

  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      return StartDecode(info);
    } catch (const Napi::Error& e) {
      // A Promise-returning method reports every failure through the promise.
      Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
      deferred.Reject(e.Value());
      return deferred.Promise();
    }
  }

  Napi::Value StartDecode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->closed) throw CodedError(env, "DISPOSED", "decode: the context is closed");
    if (model_->closed) throw CodedError(env, "DISPOSED", "decode: the model is closed");
    if (state_->busy)
      throw CodedError(env, "CONTEXT_BUSY", "decode: another decode is still running on this context");
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw CodedError(env, "INVALID_ARGUMENT", "decode: tokens must be an Int32Array");
    Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
    size_t n = tokens.ElementLength();
    if (n == 0) throw CodedError(env, "INVALID_ARGUMENT", "decode: tokens is empty");
    double pos = IntegerValue(info[1], "decode: pos", 0, kMaxSafeInteger);
    if (pos + (double)n > state_->context_size)
      // Ends with the positions needed and the context size: lib/native/engine.ts reads the last two numbers.
      throw CodedError(env, "CONTEXT_OVERFLOW",
                       "decode: " + std::to_string(n) + " tokens at pos " + std::to_string((long long)pos) +
                           " need " + std::to_string((long long)pos + (long long)n) +
                           " positions, more than the context size " + std::to_string(state_->context_size));
    const int vocab = model_->model->config.vocab_size;
    std::vector<int32_t> ids(tokens.Data(), tokens.Data() + n);
    for (size_t i = 0; i < n; i++)
      if (ids[i] < 0 || ids[i] >= vocab)
        throw CodedError(env, "INVALID_ARGUMENT",
                         "decode: token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary (size " + std::to_string(vocab) + ")");

    LogitsWanted wanted = LogitsWanted::kLast;
    int top_k = 0;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      if (!info[2].IsObject()) throw CodedError(env, "INVALID_ARGUMENT", "decode: options must be an object");
      Napi::Object options = info[2].As<Napi::Object>();
      Napi::Value logits = options.Get("logits");
      if (!logits.IsUndefined()) {
        std::string mode = logits.IsString() ? logits.As<Napi::String>().Utf8Value() : "";
        if (mode == "none") wanted = LogitsWanted::kNone;
        else if (mode == "all") wanted = LogitsWanted::kAll;
        else if (mode != "last")
          throw CodedError(env, "INVALID_ARGUMENT", "decode: options.logits must be \"none\", \"last\" or \"all\"");
      }
      Napi::Value k = options.Get("topK");
      if (!k.IsUndefined()) top_k = (int)IntegerValue(k, "decode: options.topK", 0, vocab);
    }

    auto* worker = new DecodeWorker(env, model_, state_, std::move(ids), (int)pos, wanted, top_k);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  void Close(const Napi::CallbackInfo&) {
    state_->closed = true;
    state_->ReleaseIfIdle();
  }

  std::shared_ptr<ContextState> state_;
  std::shared_ptr<ModelState> model_;
  Napi::ObjectReference model_object_;  // keeps the Model JS object alive as long as this context
};

Napi::Value Model::CreateContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state_->closed) throw CodedError(env, "DISPOSED", "createContext: the model is closed");
  IntegerValue(info[0], "createContext: contextSize", 1, 2147483647);
  return env.GetInstanceData<AddonData>()->context_constructor.New({Value(), info[0]});
}

// ---- Weight conversion: quantize(type, Float32Array, rows, cols) / dequantize(type, Uint8Array, rows, cols) ----

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
  const int type = (int)IntegerValue(info[0], fn + ": type", 0, LLM_TYPE_COUNT - 1);
  const napi_typedarray_type expected = quantize ? napi_float32_array : napi_uint8_array;
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != expected)
    throw CodedError(env, "INVALID_ARGUMENT", fn + ": src must be a " + (quantize ? "Float32Array" : "Uint8Array"));
  Napi::TypedArray src = info[1].As<Napi::TypedArray>();
  const int64_t rows = (int64_t)IntegerValue(info[2], fn + ": rows", 0, kMaxSafeInteger);
  const int64_t cols = (int64_t)IntegerValue(info[3], fn + ": cols", 0, kMaxSafeInteger);
  const int block = llm_type_block_size(type);
  if (cols % block != 0)
    throw CodedError(env, "INVALID_ARGUMENT",
                     fn + ": cols = " + std::to_string(cols) + " is not a multiple of the " + llm_type_name(type) +
                         " block size " + std::to_string(block));
  // Both sizes stay below 2^53 elements * 4 bytes, far from 64-bit overflow, once rows * cols fits in 2^53.
  if (cols > 0 && rows > (int64_t)kMaxSafeInteger / cols)
    throw CodedError(env, "INVALID_ARGUMENT", fn + ": rows * cols is too large");
  const uint64_t expected_bytes = quantize ? (uint64_t)rows * cols * sizeof(float) : (uint64_t)rows * llm_row_bytes(type, cols);
  if (src.ByteLength() != expected_bytes)
    throw CodedError(env, "INVALID_ARGUMENT",
                     fn + ": src has " + std::to_string(src.ByteLength()) + " bytes, but " + std::to_string(rows) +
                         " rows x " + std::to_string(cols) + " cols of " + (quantize ? "f32" : llm_type_name(type)) +
                         " take " + std::to_string(expected_bytes));
  auto* worker = new ConvertWorker(env, direction, (llm_type)type, src, rows, cols);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// A Promise-returning function reports every failure through the promise.
template <ConvertWorker::Direction direction>
Napi::Value Convert(const Napi::CallbackInfo& info) {
  try {
    return StartConvert(info, direction);
  } catch (const Napi::Error& e) {
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(info.Env());
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
}

// [{code, name, blockSize, blockBytes}] for every weight type, in code order.
Napi::Value TypeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array types = Napi::Array::New(env, LLM_TYPE_COUNT);
  for (int code = 0; code < LLM_TYPE_COUNT; code++) {
    Napi::Object t = Napi::Object::New(env);
    t.Set("code", code);
    t.Set("name", llm_type_name(code));
    t.Set("blockSize", llm_type_block_size(code));
    t.Set("blockBytes", (double)llm_type_block_bytes(code));
    types.Set(code, t);
  }
  return types;
}

Napi::Value PhysicalCores(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), llm_physical_cores()); }

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), llm_kernel_set_name(llm_kernel_set()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->context_constructor = Napi::Persistent(Context::Define(env));
  env.SetInstanceData(data);
  exports.Set("Model", Model::Define(env));
  exports.Set("physicalCores", Napi::Function::New<PhysicalCores>(env));
  exports.Set("cpuFeatures", Napi::Function::New<CpuFeatures>(env));
  exports.Set("quantize", Napi::Function::New<Convert<ConvertWorker::Direction::kQuantize>>(env));
  exports.Set("dequantize", Napi::Function::New<Convert<ConvertWorker::Direction::kDequantize>>(env));
  exports.Set("typeInfo", Napi::Function::New<TypeInfo>(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(llama_napi, Init)
