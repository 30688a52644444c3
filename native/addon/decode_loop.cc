// The JS DecodeLoop: a thin binding of the engine's decode loop (native/engine/decode_loop.h), one per model.
// JS: new DecodeLoop(model, onEvents); submit(context, tokens, pos, sampler, {maxTokens, endIds, logprobs,
// pauseEachStep, grammar}) -> id; cancel(id); resume(id, token); stats(); close(). Each pass's events reach onEvents in one
// call (a thread-safe function), as an array of {id, kind, token, evaluated, ...}.
#include <napi.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "binding.h"
#include "state.h"

extern "C" {
#include "decode_loop.h"
}

namespace llama_napi {
namespace {

// One event as the loop thread copied it (the engine's pointers are valid only during its deliver call).
struct LoopEvent {
  llm_decode_event event;
  std::vector<float> logits;  // LOGITS
};
using LoopEvents = std::vector<LoopEvent>;

// What a request holds on to until its DONE or ERROR reaches JS: the cache (busy meanwhile) and the JS Sampler
// (and Grammar) whose engine objects the loop borrows.
struct ActiveRequest {
  std::shared_ptr<ContextState> context;
  llm_sampler* sampler;
  Napi::ObjectReference sampler_object;
  llm_grammar* grammar;
  Napi::ObjectReference grammar_object;
};

struct Registry;
void CallJs(Napi::Env env, Napi::Function on_events, Registry* registry, LoopEvents* events);
using EventsFunction = Napi::TypedThreadSafeFunction<Registry, LoopEvents, CallJs>;

// The JS thread's side of a loop: its active requests and the thread-safe function the events travel through.
// Owned by that function (freed by its finalizer, after the last call), so events still queued when the JS object
// is collected find it.
struct Registry {
  std::unordered_map<uint64_t, ActiveRequest> active;
  EventsFunction events;
  std::shared_ptr<uint64_t> deliveries;  // calls of onEvents, shared with the JS object (stats() after close)
  int vocab_size = 0;
};

const char* KindName(llm_decode_event_kind kind) {
  switch (kind) {
    case LLM_DECODE_TOKEN: return "token";
    case LLM_DECODE_DONE: return "done";
    case LLM_DECODE_ERROR: return "error";
    case LLM_DECODE_LOGITS: return "logits";
  }
  return "";
}

const char* FinishName(llm_finish_reason finish) {
  switch (finish) {
    case LLM_FINISH_STOP: return "stop";
    case LLM_FINISH_LENGTH: return "length";
    case LLM_FINISH_CONTEXT_FULL: return "context_full";
    case LLM_FINISH_ABORT: return "abort";
    case LLM_FINISH_GRAMMAR: return "grammar";
  }
  return "";
}

Napi::Object EventObject(Napi::Env env, const LoopEvent& loop_event) {
  const llm_decode_event& e = loop_event.event;
  Napi::Object object = Napi::Object::New(env);
  object.Set("id", Napi::Number::New(env, (double)e.id));
  object.Set("kind", KindName(e.kind));
  object.Set("evaluated", e.evaluated);
  object.Set("pass", Napi::Number::New(env, (double)e.pass));
  object.Set("seconds", e.seconds);
  if (e.kind == LLM_DECODE_TOKEN || (e.kind == LLM_DECODE_DONE && e.finish == LLM_FINISH_STOP))
    object.Set("token", e.sampled.id);
  if (e.has_logprobs) {
    object.Set("logprob", e.sampled.logprob);
    Napi::Array top = Napi::Array::New(env, (size_t)e.sampled.n_top);
    for (int i = 0; i < e.sampled.n_top; i++) {
      Napi::Object alternative = Napi::Object::New(env);
      alternative.Set("id", e.sampled.top_ids[i]);
      alternative.Set("logprob", e.sampled.top_logprobs[i]);
      top.Set((uint32_t)i, alternative);
    }
    object.Set("top", top);
  }
  if (e.kind == LLM_DECODE_DONE) object.Set("finish", FinishName(e.finish));
  if (e.kind == LLM_DECODE_ERROR) object.Set("error", EngineError(env, e.error).Value());
  if (e.kind == LLM_DECODE_LOGITS) {
    Napi::Float32Array logits = Napi::Float32Array::New(env, loop_event.logits.size());
    std::copy(loop_event.logits.begin(), loop_event.logits.end(), logits.Data());
    object.Set("logits", logits);
  }
  return object;
}

// On the JS thread, once per pass: requests that ended let go of their cache and sampler, then onEvents(events).
void CallJs(Napi::Env env, Napi::Function on_events, Registry* registry, LoopEvents* events) {
  std::unique_ptr<LoopEvents> owned(events);
  if (env == nullptr || events == nullptr) return;  // the environment is shutting down
  (*registry->deliveries)++;
  Napi::Array array = Napi::Array::New(env, events->size());
  for (size_t i = 0; i < events->size(); i++) {
    const llm_decode_event& e = (*events)[i].event;
    array.Set((uint32_t)i, EventObject(env, (*events)[i]));
    if (e.kind == LLM_DECODE_DONE || e.kind == LLM_DECODE_ERROR) {
      auto found = registry->active.find(e.id);
      if (found != registry->active.end()) {
        std::shared_ptr<ContextState> context = found->second.context;
        registry->active.erase(found);
        context->Release();
      }
    }
  }
  // Nothing active: the loop no longer keeps Node alive.
  if (registry->active.empty()) registry->events.Unref(env);
  on_events.Call({array});
}

// On the loop thread: copies the pass's events (and paused requests' logits) into one call of the JS side.
void Deliver(void* user, const llm_decode_event* events, int n) {
  Registry* registry = static_cast<Registry*>(user);
  auto copy = std::make_unique<LoopEvents>(n);
  for (int i = 0; i < n; i++) {
    (*copy)[i].event = events[i];
    if (events[i].kind == LLM_DECODE_LOGITS)
      (*copy)[i].logits.assign(events[i].logits, events[i].logits + registry->vocab_size);
  }
  if (registry->events.NonBlockingCall(copy.get()) == napi_ok) copy.release();
}

class DecodeLoop : public Napi::ObjectWrap<DecodeLoop> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DecodeLoop",
                       {InstanceMethod<&DecodeLoop::Submit>("submit"), InstanceMethod<&DecodeLoop::Cancel>("cancel"),
                        InstanceMethod<&DecodeLoop::Resume>("resume"), InstanceMethod<&DecodeLoop::Stats>("stats"),
                        InstanceMethod<&DecodeLoop::Close>("close")});
  }

  // new DecodeLoop(model, onEvents)
  explicit DecodeLoop(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DecodeLoop>(info) {
    Napi::Env env = info.Env();
    model_ = ModelOf(env, info[0]);
    if (!model_) throw ArgumentError(env, "model", "new DecodeLoop(model, onEvents): model must be a Model");
    if (model_->closed) throw CodedError(env, "DISPOSED", "new DecodeLoop: the model is closed");
    if (!info[1].IsFunction()) throw ArgumentError(env, "onEvents", "new DecodeLoop(model, onEvents): onEvents must be a function");
    vocab_size_ = model_->model->config.vocab_size;
    registry_ = new Registry();
    registry_->vocab_size = vocab_size_;
    registry_->deliveries = deliveries_;
    registry_->events = EventsFunction::New(env, info[1].As<Napi::Function>(), "llama-napi decode loop", 0, 1, registry_,
                                            [](Napi::Env, void*, Registry* registry) { delete registry; });
    registry_->events.Unref(env);
    llm_error err{};
    loop_ = llm_decode_loop_create(model_->model, Deliver, registry_, &err);
    if (!loop_) {
      registry_->events.Release();
      throw EngineError(env, err);
    }
    model_->in_flight++;  // the loop thread may use the weights until close() joins it
  }

  ~DecodeLoop() override { Shut(); }

 private:
  // submit(context, tokens, pos, sampler, {maxTokens, endIds?, logprobs?, pauseEachStep?, grammar?}) -> id
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!loop_) throw CodedError(env, "DISPOSED", "submit: the decode loop is closed");
    std::shared_ptr<ContextState> context = ContextOf(env, info[0], "submit: context");
    if (context->model != model_) throw ArgumentError(env, "context", "submit: the context belongs to another model");
    if (context->closed) throw CodedError(env, "DISPOSED", "submit: the context is closed");
    if (context->busy) throw CodedError(env, "CONTEXT_BUSY", "submit: another decode is still running on this context");
    Napi::Int32Array tokens = Int32ArrayArgument(info[1], "submit", "tokens");
    const double pos = IntegerValue(info[2], "submit: pos", "pos", 0, context->context_size);
    llm_sampler* sampler = SamplerOf(env, info[3], "submit: sampler");
    for (const auto& entry : registry_->active)
      if (entry.second.sampler == sampler)
        throw ArgumentError(env, "sampler", "submit: the sampler is in use by another request of the loop");
    if (!info[4].IsObject()) throw ArgumentError(env, "options", "submit: options must be an object");
    Napi::Object options = info[4].As<Napi::Object>();
    llm_decode_request request{};
    request.cache = context->cache;
    request.tokens = tokens.Data();
    request.n_tokens = (int)tokens.ElementLength();
    request.pos = (int)pos;
    request.sampler = sampler;
    request.max_tokens = (int)IntegerValue(Property(options, "maxTokens", "submit: options"), "submit: options.maxTokens",
                                           "maxTokens", 1, 2147483647);
    Napi::Value end_ids = options.Get("endIds");
    if (!end_ids.IsUndefined()) {
      Napi::Int32Array ids = Int32ArrayArgument(end_ids, "submit: options", "endIds");
      request.end_ids = ids.Data();
      request.n_end_ids = (int)ids.ElementLength();
    }
    request.logprobs = options.Get("logprobs").ToBoolean().Value();
    request.pause_each_step = options.Get("pauseEachStep").ToBoolean().Value();
    Napi::Value grammar = options.Get("grammar");
    if (!grammar.IsUndefined()) {
      request.grammar = GrammarOf(env, grammar, "submit: options.grammar");
      for (const auto& entry : registry_->active)
        if (entry.second.grammar == request.grammar)
          throw ArgumentError(env, "grammar", "submit: the grammar is in use by another request of the loop");
    }
    llm_error err{};
    const uint64_t id = llm_decode_loop_submit(loop_, &request, &err);
    if (id == 0) throw EngineError(env, err, "submit: ");
    if (registry_->active.empty()) registry_->events.Ref(env);
    context->busy = true;
    registry_->active.emplace(id, ActiveRequest{context, sampler, Napi::Persistent(info[3].As<Napi::Object>()), request.grammar,
                                                request.grammar ? Napi::Persistent(grammar.As<Napi::Object>()) : Napi::ObjectReference()});
    return Napi::Number::New(env, (double)id);
  }

  static uint64_t IdArgument(const Napi::Value& value, const char* where) {
    return (uint64_t)IntegerValue(value, std::string(where) + ": id", "id", 1, kMaxSafeInteger);
  }

  // cancel(id) -> whether the request was still active (its DONE with finish "abort" follows).
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint64_t id = IdArgument(info[0], "cancel");
    return Napi::Boolean::New(env, loop_ && llm_decode_loop_cancel(loop_, id));
  }

  // resume(id, token): the token JS picked for a request its LOGITS event paused.
  void Resume(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint64_t id = IdArgument(info[0], "resume");
    const int token = (int)IntegerValue(info[1], "resume: token", "token", 0, vocab_size_ - 1);
    if (!loop_ || !llm_decode_loop_resume(loop_, id, token))
      throw ArgumentError(env, "id", "resume: request " + std::to_string(id) + " is not waiting for a token");
  }

  // stats() -> {passes, deliveries}: forward passes the loop ran, and calls of onEvents.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    llm_decode_loop_stats stats{};
    if (loop_) llm_decode_loop_read_stats(loop_, &stats);
    Napi::Object object = Napi::Object::New(env);
    object.Set("passes", Napi::Number::New(env, (double)stats.passes));
    object.Set("deliveries", Napi::Number::New(env, (double)*deliveries_));
    return object;
  }

  // close(): active requests end (DONE "abort", delivered as usual) and the thread is joined. Idempotent.
  void Close(const Napi::CallbackInfo&) { Shut(); }

  void Shut() {
    if (!loop_) return;
    llm_decode_loop_destroy(loop_);
    loop_ = nullptr;
    registry_->events.Release();
    model_->in_flight--;
    model_->ReleaseIfIdle();
  }

  std::shared_ptr<ModelState> model_;
  llm_decode_loop* loop_ = nullptr;
  Registry* registry_ = nullptr;  // owned by registry_->events: used only while loop_ is open
  int vocab_size_ = 0;
  std::shared_ptr<uint64_t> deliveries_ = std::make_shared<uint64_t>(0);
};

}  // namespace

void RegisterDecodeLoop(Napi::Env env, Napi::Object exports) { exports.Set("DecodeLoop", DecodeLoop::Define(env)); }

}  // namespace llama_napi
