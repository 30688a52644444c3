// The JS Model: new Model(spec) opens the weights (on the CPU, or uploaded to a GPU); its methods create contexts,
// run batches through the scheduler, scan the tensors, and report the device and the engine's limits.
#include <memory>
#include <string>
#include <vector>

#include "binding.h"
#include "scheduler.h"
#include "state.h"

extern "C" {
#include "custom_ops.h"
#include "tensor_check.h"
#ifdef LLAMA_NAPI_HAVE_CUDA
#include "llm_cuda.h"
#endif
}

namespace llama_napi {

namespace {

// Converts the NativeModelSpec of lib/native/binding.ts into s.spec (pointing into s).
void ReadSpec(const Napi::Object& js, SpecStorage& s) {
  Napi::Env env = js.Env();
  Napi::Value files = Property(js, "files", "spec");
  if (!files.IsArray()) throw ArgumentError(env, "files", "spec.files must be an array of paths");
  Napi::Array file_array = files.As<Napi::Array>();
  for (uint32_t i = 0; i < file_array.Length(); i++) {
    Napi::Value path = file_array.Get(i);
    if (!path.IsString()) throw ArgumentError(env, "files", "spec.files[" + std::to_string(i) + "] must be a string");
    s.files.push_back(path.As<Napi::String>().Utf8Value());
  }
  for (const std::string& f : s.files) s.file_ptrs.push_back(f.c_str());

  Napi::Value tensors = Property(js, "tensors", "spec");
  if (!tensors.IsArray()) throw ArgumentError(env, "tensors", "spec.tensors must be an array");
  Napi::Array tensor_array = tensors.As<Napi::Array>();
  s.names.reserve(tensor_array.Length());
  for (uint32_t i = 0; i < tensor_array.Length(); i++) {
    std::string where = "spec.tensors[" + std::to_string(i) + "]";
    Napi::Value item = tensor_array.Get(i);
    if (!item.IsObject()) throw ArgumentError(env, "tensors", where + " must be an object");
    Napi::Object t = item.As<Napi::Object>();
    Napi::Value name = Property(t, "name", where);
    if (!name.IsString()) throw ArgumentError(env, "name", where + ".name must be a string");
    s.names.push_back(name.As<Napi::String>().Utf8Value());
    where = "tensor " + s.names.back();
    llm_tensor_spec spec{};
    spec.file = IntProperty(t, "file", where);
    spec.offset = (uint64_t)IntegerValue(Property(t, "offset", where), where + ".offset", "offset", 0, kMaxSafeInteger);
    spec.type = IntProperty(t, "type", where);
    Napi::Value shape = Property(t, "shape", where);
    if (!shape.IsArray()) throw ArgumentError(env, "shape", where + ".shape must be an array");
    Napi::Array dims = shape.As<Napi::Array>();
    if (dims.Length() < 1 || dims.Length() > 4)
      throw CodedError(env, "MODEL_FORMAT", where + " has " + std::to_string(dims.Length()) + " dimensions");
    spec.n_dims = (int)dims.Length();
    for (uint32_t d = 0; d < dims.Length(); d++)
      spec.shape[d] = (int64_t)IntegerValue(dims.Get(d), where + ".shape[" + std::to_string(d) + "]", "shape", 0,
                                            kMaxSafeInteger);
    s.tensors.push_back(spec);
  }
  for (size_t i = 0; i < s.tensors.size(); i++) s.tensors[i].name = s.names[i].c_str();

  Napi::Value config_value = Property(js, "config", "spec");
  if (!config_value.IsObject()) throw ArgumentError(env, "config", "spec.config must be an object");
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
  if (!eps.IsNumber()) throw ArgumentError(env, "normEps", "spec.config.normEps must be a number");
  c.norm_eps = eps.As<Napi::Number>().FloatValue();
  c.rope_interleaved = Property(config, "ropeInterleaved", "spec.config").ToBoolean().Value();
  Napi::Value freqs = Property(config, "ropeFreqs", "spec.config");
  if (!freqs.IsTypedArray() || freqs.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw ArgumentError(env, "ropeFreqs", "spec.config.ropeFreqs must be a Float32Array");
  Napi::Float32Array freq_array = freqs.As<Napi::Float32Array>();
  if (freq_array.ElementLength() != (size_t)c.head_dim / 2 || c.head_dim < 2)
    throw ArgumentError(env, "ropeFreqs",
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

// spec.kvCacheType: "f32" (the default for the raw binding), "f16" or "q8_0".
llm_kv_type ReadKvCacheType(const Napi::Object& spec) {
  Napi::Value value = spec.Get("kvCacheType");
  if (value.IsUndefined()) return LLM_KV_F32;
  const std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  return KvTypeOf(spec.Env(), name, "kvCacheType");
}

// spec.kvCacheTokens: the pool's positions (default kDefaultKvCacheTokens for the raw binding).
constexpr int kDefaultKvCacheTokens = 16384;
int64_t ReadKvCacheTokens(const Napi::Object& spec) {
  Napi::Value value = spec.Get("kvCacheTokens");
  if (value.IsUndefined()) return kDefaultKvCacheTokens;
  return (int64_t)IntegerValue(value, "spec.kvCacheTokens", "kvCacheTokens", 1, kMaxSafeInteger);
}

// spec.customOps: {path, ops}, a custom op library (an absolute path) and the ops to take from it; NULL when absent.
// Throws the engine's error when the library cannot serve them (on the GPU when `cuda`).
llm_custom_ops* ReadCustomOps(const Napi::Object& spec, int dim, bool cuda) {
  Napi::Env env = spec.Env();
  Napi::Value value = spec.Get("customOps");
  if (value.IsUndefined()) return nullptr;
  if (!value.IsObject()) throw ArgumentError(env, "customOps", "spec.customOps must be an object");
  Napi::Object custom = value.As<Napi::Object>();
  Napi::Value path = Property(custom, "path", "spec.customOps");
  Napi::Value ops = Property(custom, "ops", "spec.customOps");
  if (!path.IsString()) throw ArgumentError(env, "customOps", "spec.customOps.path must be a string");
  if (!ops.IsArray()) throw ArgumentError(env, "enableCustomOps", "spec.customOps.ops must be an array of op names");
  Napi::Array op_array = ops.As<Napi::Array>();
  std::vector<std::string> names;
  for (uint32_t i = 0; i < op_array.Length(); i++) {
    Napi::Value name = op_array.Get(i);
    if (!name.IsString()) throw ArgumentError(env, "enableCustomOps", "spec.customOps.ops[" + std::to_string(i) + "] must be a string");
    names.push_back(name.As<Napi::String>().Utf8Value());
  }
  std::vector<const char*> name_ptrs;
  for (const std::string& n : names) name_ptrs.push_back(n.c_str());
  const std::string library = path.As<Napi::String>().Utf8Value();
  llm_error err{};
  llm_custom_ops* custom_ops = llm_custom_ops_open(library.c_str(), name_ptrs.data(), (int)name_ptrs.size(), dim, cuda, &err);
  if (custom_ops) return custom_ops;
  Napi::Error e = EngineError(env, err);
  if (err.kind == LLM_ERR_CUSTOM_OP || err.symbol) e.Set("library", library);
  throw e;
}

// Scans every tensor the model was opened with for NaN and infinity (llm_check_tensors) on a libuv worker;
// resolves with null, or with {tensor, index, inScale}: the first bad value's tensor (an index into spec.tensors),
// its element or block, and whether it is a block's scale.
class TensorCheckWorker : public Napi::AsyncWorker {
 public:
  TensorCheckWorker(Napi::Env env, std::shared_ptr<ModelState> model)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), model_(std::move(model)) {
    model_->in_flight++;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    if (!llm_check_tensors(model_->model, &model_->spec.spec, &fault_, &error_)) SetError(error_.message);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Finish();
    if (fault_.tensor < 0) {
      deferred_.Resolve(env.Null());
      return;
    }
    Napi::Object fault = Napi::Object::New(env);
    fault.Set("tensor", fault_.tensor);
    fault.Set("index", Napi::Number::New(env, (double)fault_.index));
    fault.Set("inScale", fault_.in_scale);
    deferred_.Resolve(fault);
  }

  void OnError(const Napi::Error&) override {
    Finish();
    deferred_.Reject(EngineError(Env(), error_).Value());
  }

 private:
  void Finish() {
    model_->in_flight--;
    model_->ReleaseIfIdle();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> model_;
  llm_tensor_fault fault_{};
  llm_error error_{};
};

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod<&Model::CreateContext>("createContext"),
                        InstanceMethod<&Model::DecodeBatch>("decodeBatch"),
                        InstanceMethod<&Model::Close>("close"),
                        InstanceMethod<&Model::CheckTensors>("checkTensors"),
                        InstanceMethod<&Model::KvCacheUsage>("kvCacheUsage"),
                        InstanceAccessor<&Model::Device>("device"), InstanceAccessor<&Model::Limits>("limits"),
                        InstanceAccessor<&Model::CustomOps>("customOps"),
                        InstanceAccessor<&Model::KvCache>("kvCache"),
                        InstanceAccessor<&Model::RepackedBytes>("repackedBytes")});
  }

  // spec.device: "cpu" (default) or "cuda", with spec.gpu (default 0): the weights are uploaded to that GPU.
  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info), state_(std::make_shared<ModelState>()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw ArgumentError(env, "spec", "new Model(spec): spec must be an object");
    Napi::Object spec = info[0].As<Napi::Object>();
    SpecStorage& storage = state_->spec;
    ReadSpec(spec, storage);
    Napi::Value device = spec.Get("device");
    const std::string kind = device.IsUndefined() ? "cpu" : device.IsString() ? device.As<Napi::String>().Utf8Value() : "";
    if (kind != "cpu" && kind != "cuda") throw ArgumentError(env, "device", "spec.device must be \"cpu\" or \"cuda\"");
    Napi::Value gpu = spec.Get("gpu");
    gpu_ = gpu.IsUndefined() ? 0 : (int)IntegerValue(gpu, "spec.gpu", "gpu", 0, 1024);
#ifndef LLAMA_NAPI_HAVE_CUDA
    if (kind == "cuda") throw CodedError(env, "DEVICE_ERROR", kNoCudaBackend);
#endif
    // The library before the weights are opened or uploaded: a wrong one fails fast.
    llm_custom_ops* custom_ops = ReadCustomOps(spec, storage.spec.config.dim, kind == "cuda");
    llm_error err{};
    state_->model = llm_model_open(&storage.spec, &err);
    if (!state_->model) {
      llm_custom_ops_close(custom_ops);
      throw EngineError(env, err);
    }
    // Before the CUDA attach, which reads which ops are custom.
    if (custom_ops) llm_model_use_custom_ops(state_->model, custom_ops);
#ifdef LLAMA_NAPI_HAVE_CUDA
    if (kind == "cuda" && !llm_cuda_attach(state_->model, gpu_, &err)) {
      llm_model_close(state_->model);
      state_->model = nullptr;
      throw EngineError(env, err);
    }
#endif
    // On the CPU, the weights the kernels read in a repacked layout are copied into it (repack.h).
    if (!state_->model->backend && !llm_model_repack(state_->model, &err)) {
      llm_model_close(state_->model);
      state_->model = nullptr;
      throw EngineError(env, err);
    }
    // The KV pool after the CUDA attach, so that it lives where the passes run.
    if (!llm_kv_pool_create(state_->model, ReadKvCacheType(spec), ReadKvCacheTokens(spec), &err)) {
      llm_model_close(state_->model);
      state_->model = nullptr;
      throw EngineError(env, err);
    }
    pass_tokens_ = llm_model_pass_tokens(state_->model);
  }

  const std::shared_ptr<ModelState>& state() const { return state_; }

 private:
  // createContext(contextSize): a new Context (context.cc) with a KV cache of that many positions.
  Napi::Value CreateContext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->closed) throw CodedError(env, "DISPOSED", "createContext: the model is closed");
    IntegerValue(info[0], "createContext: contextSize", "contextSize", 1, 2147483647);
    return env.GetInstanceData<AddonData>()->context_constructor.New({Value(), info[0]});
  }

  // decodeBatch([{context, tokens, pos, logits?, topK?}, ...]): every sequence in one forward pass.
  Napi::Value DecodeBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Promised(env, [&]() -> Napi::Value {
      if (!info[0].IsArray()) throw ArgumentError(env, "entries", "decodeBatch: expected an array of sequences");
      Napi::Array entries = info[0].As<Napi::Array>();
      if (entries.Length() == 0) throw ArgumentError(env, "entries", "decodeBatch: no sequences");
      std::vector<DecodeItem> items;
      for (uint32_t i = 0; i < entries.Length(); i++) {
        const std::string where = "decodeBatch[" + std::to_string(i) + "]";
        Napi::Value entry = entries.Get(i);
        if (!entry.IsObject()) throw ArgumentError(env, "entries", where + " must be an object");
        Napi::Object e = entry.As<Napi::Object>();
        std::shared_ptr<ContextState> context = ContextOf(env, e.Get("context"), where + ".context");
        if (context->model != state_) throw ArgumentError(env, "context", where + ".context belongs to another model");
        for (const DecodeItem& other : items)
          if (other.context == context)
            throw ArgumentError(env, "context", where + ": a context appears twice in one batch");
        items.push_back(ReadDecodeItem(env, std::move(context), e.Get("tokens"), e.Get("pos"), e, where));
      }
      return QueueDecode(env, std::move(items), true);
    });
  }

  // checkTensors(): see TensorCheckWorker.
  Napi::Value CheckTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Promised(env, [&]() -> Napi::Value {
      if (state_->closed) throw CodedError(env, "DISPOSED", "checkTensors: the model is closed");
      return Queued(new TensorCheckWorker(env, state_));
    });
  }

  void Close(const Napi::CallbackInfo&) {
    state_->closed = true;
    state_->ReleaseIfIdle();
  }

  // {kind: "cpu"} or {kind: "cuda", gpu, name}: where the weights live and the forward passes run.
  Napi::Value Device(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object device = Napi::Object::New(env);
    const llm_backend* backend = state_->model ? state_->model->backend : nullptr;
    device.Set("kind", backend ? backend->name : "cpu");
    if (backend) {
      device.Set("gpu", gpu_);
      device.Set("name", backend->device);
    }
    return device;
  }

  // The names of the ops a custom library provides for this model's passes (empty: all built in).
  Napi::Value CustomOps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array names = Napi::Array::New(env);
    const llm_custom_ops* custom_ops = state_->model ? state_->model->custom_ops : nullptr;
    for (int op = 0; op < LLM_CUSTOM_OP_COUNT; op++)
      if (llm_custom_op_enabled(custom_ops, (llm_custom_op)op)) names.Set(names.Length(), llm_custom_op_name((llm_custom_op)op));
    return names;
  }

  // {passTokens}: the engine's limits for this model on its device, so that JavaScript never restates them.
  Napi::Value Limits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object limits = Napi::Object::New(env);
    limits.Set("passTokens", pass_tokens_);
    return limits;
  }

  // {type, blockTokens, capacityTokens, bytesPerToken}: the KV pool's shape (bytesPerToken: keys and values of every
  // layer for one position).
  Napi::Value KvCache(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!state_->model) throw CodedError(env, "DISPOSED", "kvCache: the model is closed");
    const struct llm_kv_pool_layout* layout = llm_kv_pool_layout(state_->model->kv_pool);
    Napi::Object kv = Napi::Object::New(env);
    kv.Set("type", llm_kv_type_name(layout->type));
    kv.Set("blockTokens", LLM_KV_BLOCK_TOKENS);
    kv.Set("capacityTokens", Napi::Number::New(env, (double)layout->n_blocks * LLM_KV_BLOCK_TOKENS));
    kv.Set("bytesPerToken", Napi::Number::New(env, 2.0 * layout->n_layers * (double)layout->row_bytes));
    return kv;
  }

  // Bytes of the weights' repacked copy (llm_model_repack): 0 on CUDA, with LLAMA_NAPI_REPACK=0, or when no weight
  // type of the model has a repacked kernel on this CPU.
  Napi::Value RepackedBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!state_->model) throw CodedError(env, "DISPOSED", "repackedBytes: the model is closed");
    return Napi::Number::New(env, (double)state_->model->repacked_bytes);
  }

  // kvCacheUsage() -> {totalBlocks, usedBlocks, cachedBlocks, freeBlocks} (llm_kv_pool_usage).
  Napi::Value KvCacheUsage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!state_->model) throw CodedError(env, "DISPOSED", "kvCacheUsage: the model is closed");
    const struct llm_kv_pool_usage usage = llm_kv_pool_usage(state_->model->kv_pool);
    Napi::Object result = Napi::Object::New(env);
    result.Set("totalBlocks", usage.total_blocks);
    result.Set("usedBlocks", usage.used_blocks);
    result.Set("cachedBlocks", usage.cached_blocks);
    result.Set("freeBlocks", usage.free_blocks);
    return result;
  }

  std::shared_ptr<ModelState> state_;
  int gpu_ = 0;
  int pass_tokens_ = 0;
};

}  // namespace

std::shared_ptr<ModelState> ModelOf(Napi::Env env, const Napi::Value& value) {
  Napi::FunctionReference& constructor = env.GetInstanceData<AddonData>()->model_constructor;
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor.Value())) return nullptr;
  return Model::Unwrap(value.As<Napi::Object>())->state();
}

void RegisterModel(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = Model::Define(env);
  env.GetInstanceData<AddonData>()->model_constructor = Napi::Persistent(constructor);
  exports.Set("Model", constructor);
}

}  // namespace llama_napi
