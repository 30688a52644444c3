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
                        InstanceMethod<&Context::AdoptPrefix>("adoptPrefix"),
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
    state_->model->contexts.push_back(state_.get());
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

  // adoptPrefix(tokens) -> the positions of tokens the cache now holds without evaluating them: what it held
  // already, then full blocks of the model's prefix index (llm_kv_cache_adopt_prefix); at most tokens.length - 1.
  Napi::Value AdoptPrefix(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env, *state_, "adoptPrefix");
    Napi::Int32Array tokens = Int32ArrayArgument(info[0], "adoptPrefix", "tokens");
    return Napi::Number::New(env, llm_kv_cache_adopt_prefix(state_->cache, tokens.Data(), (int)tokens.ElementLength()));
  }

  // The type of a saved state (argument `index`, default the pool's own).
  llm_kv_type StateType(const Napi::CallbackInfo& info, size_t index) {
    if (info[index].IsUndefined()) return llm_kv_pool_layout(state_->cache->pool)->type;
    return KvTypeOf(info.Env(), info[index].IsString() ? info[index].As<Napi::String>().Utf8Value() : "", "type");
  }

  // copyFrom(source, nPositions): this cache's first positions become the source's, sharing its blocks
  // copy-on-write (session.fork).
  void CopyFrom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::shared_ptr<ContextState> source = ContextOf(env, info[0], "copyFrom: source");
    if (source->model != state_->model)
      throw ArgumentError(env, "source", "copyFrom: the source belongs to another model");
    CheckIdle(env, *state_, "copyFrom");
    CheckIdle(env, *source, "copyFrom (source)");
    const int n = (int)IntegerValue(info[1], "copyFrom: nPositions", "nPositions", 0, 2147483647);
    llm_error err{};
    if (!llm_kv_cache_share(state_->cache, source->cache, n, &err)) throw EngineError(env, err, "copyFrom: ");
  }

  // readState(nPositions, type?) -> ArrayBuffer with the keys and values of the first positions in that KV type
  // (default the pool's; session.save).
  Napi::Value ReadState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env, *state_, "readState");
    const int n = (int)IntegerValue(info[0], "readState: nPositions", "nPositions", 0, state_->cache->n_positions);
    const llm_kv_type type = StateType(info, 1);
    const size_t bytes = llm_kv_cache_state_bytes(state_->cache, type, n);
    if (bytes == SIZE_MAX) throw ArgumentError(env, "type", "readState: this model's rows do not fit the type");
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes);
    llm_error err{};
    if (!llm_kv_cache_read_state(state_->cache, type, n, buffer.Data(), bytes, &err))
      throw EngineError(env, err, "readState: ");
    return buffer;
  }

  // writeState(nPositions, Uint8Array, tokens, type?): the inverse of readState (restoring a saved session); tokens
  // are the ids at those positions (their full blocks join the prefix index).
  void WriteState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env, *state_, "writeState");
    const int n = (int)IntegerValue(info[0], "writeState: nPositions", "nPositions", 0, state_->context_size);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw ArgumentError(env, "state", "writeState: state must be a Uint8Array");
    Napi::Uint8Array state = info[1].As<Napi::Uint8Array>();
    Napi::Int32Array tokens = Int32ArrayArgument(info[2], "writeState", "tokens");
    if (tokens.ElementLength() != (size_t)n)
      throw ArgumentError(env, "tokens",
                          "writeState: " + std::to_string(tokens.ElementLength()) + " tokens for " + std::to_string(n) +
                              " positions");
    const int vocab = state_->model->model->config.vocab_size;
    for (size_t i = 0; i < tokens.ElementLength(); i++)
      if (tokens[i] < 0 || tokens[i] >= vocab)
        throw ArgumentError(env, "tokens", "writeState: token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
    const llm_kv_type type = StateType(info, 3);
    llm_error err{};
    if (!llm_kv_cache_write_state(state_->cache, type, n, tokens.Data(), state.Data(), state.ByteLength(), &err))
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
