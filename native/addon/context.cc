// The JS Context: one sequence's KV cache. Single decodes go through scheduler.cc, generations through the decode
// loop (decode_loop.cc); the cache's state is copied, saved and restored here.
#include <memory>
#include <string>
#include <vector>

#include "binding.h"
#include "scheduler.h"
#include "state.h"

namespace llama_napi {

namespace {

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Context",
                       {InstanceAccessor<&Context::ContextSize>("contextSize"),
                        InstanceMethod<&Context::Decode>("decode"), InstanceMethod<&Context::Greedy>("greedy"),
                        InstanceMethod<&Context::CopyFrom>("copyFrom"),
                        InstanceMethod<&Context::ReadState>("readState"),
                        InstanceMethod<&Context::WriteState>("writeState"), InstanceMethod<&Context::Close>("close")});
  }

  // Called from Model.createContext with (model object, context size); not constructible from JS otherwise.
  explicit Context(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Context>(info), state_(std::make_shared<ContextState>()) {
    Napi::Env env = info.Env();
    if (info.Length() == 2) state_->model = ModelOf(env, info[0]);
    if (!state_->model)
      throw ArgumentError(env, "model", "contexts are created with model.createContext(size)");
    model_object_ = Napi::Persistent(info[0].As<Napi::Object>());
    const ModelState& model = *state_->model;
    if (model.closed) throw CodedError(env, "DISPOSED", "createContext: the model is closed");
    int size = (int)IntegerValue(info[1], "context size", "contextSize", 1, 2147483647);
    llm_error err{};
    state_->cache = llm_kv_cache_create(model.model, size, &err);
    if (!state_->cache) throw EngineError(env, err);
    state_->context_size = size;
  }

  const std::shared_ptr<ContextState>& state() const { return state_; }

 private:
  Napi::Value ContextSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_->context_size); }

  // decode(tokens, pos, options?): see QueueDecode.
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Promised(env, [&]() -> Napi::Value {
      std::vector<DecodeItem> items;
      items.push_back(ReadDecodeItem(env, state_, info[0], info[1], info[2], "decode"));
      return QueueDecode(env, std::move(items), false);
    });
  }

  // greedy(tokens, pos, n): see QueueGreedy.
  Napi::Value Greedy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Promised(env, [&]() -> Napi::Value {
      DecodeItem item = ReadDecodeItem(env, state_, info[0], info[1], env.Undefined(), "greedy");
      const int n = (int)IntegerValue(info[2], "greedy: n", "n", 1, state_->context_size);
      const double needed = (double)item.pos + (double)item.tokens.size() + n - 1;
      if (needed > state_->context_size)
        throw OverflowError(env,
                            "greedy: the prompt and " + std::to_string(n) + " generated tokens need " +
                                std::to_string((long long)needed) + " positions, more than the context size " +
                                std::to_string(state_->context_size),
                            needed, state_->context_size);
      return QueueGreedy(env, std::move(item), n);
    });
  }

  // Throws unless the cache can be read or written right now.
  static void CheckIdle(Napi::Env env, const ContextState& context, const std::string& where) {
    if (context.closed) throw CodedError(env, "DISPOSED", where + ": the context is closed");
    if (context.model->closed) throw CodedError(env, "DISPOSED", where + ": the model is closed");
    if (context.busy) throw CodedError(env, "CONTEXT_BUSY", where + ": a decode is running on the context");
  }

  // copyFrom(source, nPositions): this cache's first positions become a copy of the source's (session.fork).
  void CopyFrom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::shared_ptr<ContextState> source = ContextOf(env, info[0], "copyFrom: source");
    if (source->model != state_->model)
      throw ArgumentError(env, "source", "copyFrom: the source belongs to another model");
    CheckIdle(env, *state_, "copyFrom");
    CheckIdle(env, *source, "copyFrom (source)");
    const int n = (int)IntegerValue(info[1], "copyFrom: nPositions", "nPositions", 0, 2147483647);
    llm_error err{};
    if (!llm_kv_cache_copy(state_->cache, source->cache, n, &err)) throw EngineError(env, err, "copyFrom: ");
  }

  // readState(nPositions) -> ArrayBuffer with the keys and values of the first positions (session.save).
  Napi::Value ReadState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env, *state_, "readState");
    const int n = (int)IntegerValue(info[0], "readState: nPositions", "nPositions", 0, state_->context_size);
    const size_t bytes = llm_kv_cache_state_bytes(state_->cache, n);
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes);
    llm_error err{};
    if (!llm_kv_cache_read_state(state_->cache, n, buffer.Data(), bytes, &err)) throw EngineError(env, err, "readState: ");
    return buffer;
  }

  // writeState(nPositions, Uint8Array): the inverse of readState (restoring a saved session).
  void WriteState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env, *state_, "writeState");
    const int n = (int)IntegerValue(info[0], "writeState: nPositions", "nPositions", 0, state_->context_size);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw ArgumentError(env, "state", "writeState: state must be a Uint8Array");
    Napi::Uint8Array state = info[1].As<Napi::Uint8Array>();
    llm_error err{};
    if (!llm_kv_cache_write_state(state_->cache, n, state.Data(), state.ByteLength(), &err))
      throw EngineError(env, err, "writeState: ");
  }

  void Close(const Napi::CallbackInfo&) {
    state_->closed = true;
    state_->ReleaseIfIdle();
  }

  std::shared_ptr<ContextState> state_;
  Napi::ObjectReference model_object_;  // keeps the Model JS object alive as long as this context
};

}  // namespace

std::shared_ptr<ContextState> ContextOf(Napi::Env env, const Napi::Value& value, const std::string& where) {
  Napi::FunctionReference& constructor = env.GetInstanceData<AddonData>()->context_constructor;
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor.Value()))
    throw ArgumentError(env, "context", where + " must be a context of this model");
  return Context::Unwrap(value.As<Napi::Object>())->state();
}

// Context is not exported: Model.createContext constructs it.
void RegisterContext(Napi::Env env, Napi::Object) {
  env.GetInstanceData<AddonData>()->context_constructor = Napi::Persistent(Context::Define(env));
}

}  // namespace llama_napi
