// Forward passes on libuv workers for the JS Model and Context (scheduler.h), and the greedy look-ahead protocol.
#include "scheduler.h"

#include <algorithm>
#include <chrono>
#include <new>

#include "binding.h"

namespace llama_napi {

namespace {

Napi::Object ResultObject(Napi::Env env, LogitsWanted wanted, int top_k, const StepResult& result) {
  Napi::Object object = Napi::Object::New(env);
  if (wanted != LogitsWanted::kNone) {
    Napi::Float32Array logits = Napi::Float32Array::New(env, result.logits.size());
    std::copy(result.logits.begin(), result.logits.end(), logits.Data());
    object.Set("logits", logits);
  }
  if (top_k > 0) {
    Napi::Int32Array top = Napi::Int32Array::New(env, result.top.size());
    std::copy(result.top.begin(), result.top.end(), top.Data());
    object.Set("top", top);
  }
  return object;
}

// One forward pass of `items` (under the model's pass lock), each item's results into item.result.
bool RunPass(ModelState& model, const std::vector<DecodeItem*>& items, llm_error* err) {
  const size_t vocab = (size_t)model.model->config.vocab_size;
  std::vector<llm_batch_sequence> sequences;
  try {
    sequences.reserve(items.size());
    for (DecodeItem* item : items) {
      const llm_logits_mode mode = item->Mode();
      item->result.logits.resize(mode == LLM_LOGITS_ALL ? item->tokens.size() * vocab : mode == LLM_LOGITS_LAST ? vocab : 0);
      item->result.top.resize((size_t)item->top_k);
      sequences.push_back({item->context->cache, item->tokens.data(), (int)item->tokens.size(), item->pos,
                           mode == LLM_LOGITS_NONE ? nullptr : item->result.logits.data(), mode, item->top_k,
                           item->top_k > 0 ? item->result.top.data() : nullptr});
    }
  } catch (const std::bad_alloc&) {
    return llm_fail(err, LLM_ERR_SYSTEM, "out of memory for the logits of a batch of %zu sequences", items.size());
  }
  std::lock_guard<std::mutex> pass(model.pass_mutex);
  return llm_forward_batch(model.model, sequences.data(), (int)sequences.size(), err);
}

// Runs a batch of sequences in one llm_forward_batch on a libuv worker and resolves with one {logits?, top?}
// object, or an array of them for decodeBatch.
//
// Then it looks ahead for the sequences that asked to (`speculate`: their sampler is greedy, so their next
// token will be this pass's argmax): it runs those tokens at the next positions at once, while JavaScript
// samples, streams and asks for them. The ask (Context.claim) finds the step running or done, and a claimed
// step is followed by the next one, so a greedy generation's passes follow each other without a round trip
// through the event loop between them. A sequence leaves the chain when its step is not claimed by the time the
// pass ends, or is claimed with another token, or is settled; the whole chain stops after its current pass when
// another decode is waiting (ModelState::StopChains). A step's keys and values lie past the end of its
// sequence until a claim makes them part of it; otherwise the sequence's next decode overwrites them.
class DecodeWorker : public Napi::AsyncProgressQueueWorker<char> {
 public:
  DecodeWorker(Napi::Env env, std::vector<DecodeItem> items, bool as_array)
      : Napi::AsyncProgressQueueWorker<char>(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(items[0].context->model),
        items_(std::move(items)),
        as_array_(as_array) {
    model_->in_flight++;
    model_->StopChains();
    chain_id_ = ++model_->chains_started;
    std::lock_guard<std::mutex> lock(model_->speculation_mutex);
    for (DecodeItem& item : items_) {
      item.context->busy = true;
      item.context->spec = Speculation{};  // a kept step is overwritten by this decode
    }
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    std::vector<DecodeItem*> chain;
    for (DecodeItem& item : items_) chain.push_back(&item);
    if (!RunPass(*model_, chain, &error_)) {
      SetError(error_.message);
      return;
    }
    chain.clear();
    {
      // The next steps are announced before this pass's results reach JavaScript, so its claims find them.
      std::lock_guard<std::mutex> lock(model_->speculation_mutex);
      for (DecodeItem& item : items_) first_.push_back(item.result);
      first_ready_ = true;
      for (DecodeItem& item : items_) {
        if (item.CanLookAhead() && !Stopped()) {
          StartStep(&item);
          chain.push_back(&item);
        } else {
          released_.push_back(&item);
        }
      }
    }
    const char step = 0;
    progress.Send(&step, 1);
    while (!chain.empty()) {
      llm_error err{};
      const auto start = std::chrono::steady_clock::now();
      const bool ok = RunPass(*model_, chain, &err);
      std::vector<DecodeItem*> next;
      {
        std::unique_lock<std::mutex> lock(model_->speculation_mutex);
        // JavaScript has usually asked for these steps while the pass ran; when it is late (a pass shorter than
        // its turn, a busy machine), wait a little rather than drop the chain.
        const auto patience = std::min(2 * (std::chrono::steady_clock::now() - start) + std::chrono::milliseconds(1),
                                       std::chrono::steady_clock::duration(std::chrono::milliseconds(50)));
        model_->speculation_cv.wait_for(lock, patience, [&] {
          if (Stopped()) return true;
          for (DecodeItem* item : chain)
            if (!item->context->spec.claimed && !item->context->spec.abandoned) return false;
          return true;
        });
        for (DecodeItem* item : chain) {
          Speculation& spec = item->context->spec;
          if (spec.claimed) {
            deliveries_.push_back({item->context, item->wanted, item->top_k, ok, item->result, err});
            if (ok && !spec.abandoned && item->CanLookAhead() && !Stopped()) {
              StartStep(item);
              next.push_back(item);
              continue;
            }
            spec = Speculation{};
          } else if (ok && !spec.abandoned) {
            spec.state = Speculation::State::kDone;
            spec.result = item->result;
          } else {
            spec = Speculation{};
          }
          released_.push_back(item);
        }
      }
      progress.Send(&step, 1);
      chain = std::move(next);
    }
  }

  void OnProgress(const char*, size_t) override { Flush(); }

  void OnOK() override {
    Flush();
    Finish();
  }

  void OnError(const Napi::Error&) override {
    deferred_.Reject(EngineError(Env(), error_).Value());
    for (DecodeItem& item : items_) item.context->Release();
    Finish();
  }

 private:
  // A claimed look-ahead step's outcome, for the JS thread.
  struct Delivery {
    std::shared_ptr<ContextState> context;
    LogitsWanted wanted;
    int top_k;
    bool ok;
    StepResult result;
    llm_error error;
  };

  bool Stopped() const { return model_->stop_chains_upto.load() >= chain_id_; }

  // The look-ahead step after an item's last pass: its argmax at the next position (under speculation_mutex).
  static void StartStep(DecodeItem* item) {
    Speculation& spec = item->context->spec;
    spec = Speculation{};
    spec.state = Speculation::State::kRunning;
    spec.token = item->result.top[0];
    spec.pos = item->pos + (int)item->tokens.size();
    spec.wanted = item->wanted;
    spec.top_k = item->top_k;
    item->tokens.assign(1, spec.token);
    item->pos = spec.pos;
  }

  // On the JS thread: the first pass's results, claimed steps' results, and the caches the worker let go of.
  void Flush() {
    Napi::Env env = Env();
    std::vector<Delivery> deliveries;
    std::vector<DecodeItem*> released;
    bool first_ready;
    {
      std::lock_guard<std::mutex> lock(model_->speculation_mutex);
      deliveries.swap(deliveries_);
      released.swap(released_);
      first_ready = first_ready_;
    }
    if (first_ready && !first_delivered_) {
      first_delivered_ = true;
      if (!as_array_) {
        deferred_.Resolve(ResultObject(env, items_[0].wanted, items_[0].top_k, first_[0]));
      } else {
        Napi::Array results = Napi::Array::New(env, items_.size());
        for (size_t i = 0; i < items_.size(); i++)
          results.Set((uint32_t)i, ResultObject(env, items_[i].wanted, items_[i].top_k, first_[i]));
        deferred_.Resolve(results);
      }
    }
    for (Delivery& d : deliveries) {
      Napi::Promise::Deferred claim = d.context->claims.front();
      d.context->claims.pop_front();
      if (d.ok) claim.Resolve(ResultObject(env, d.wanted, d.top_k, d.result));
      else claim.Reject(EngineError(env, d.error).Value());
    }
    for (DecodeItem* item : released) item->context->Release();
  }

  void Finish() {
    model_->in_flight--;
    model_->ReleaseIfIdle();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> model_;
  std::vector<DecodeItem> items_;
  bool as_array_;
  uint64_t chain_id_ = 0;
  llm_error error_{};  // the first pass's failure
  // Guarded by the model's speculation_mutex until Flush takes them.
  std::vector<StepResult> first_;
  bool first_ready_ = false;
  std::vector<Delivery> deliveries_;
  std::vector<DecodeItem*> released_;
  bool first_delivered_ = false;  // JS thread
};

// The engine alone, for measuring what the JS loop costs: prefill `tokens`, then pick the argmax and run it,
// n times, without returning to JS. Resolves with the n generated ids.
class GreedyWorker : public Napi::AsyncWorker {
 public:
  GreedyWorker(Napi::Env env, DecodeItem item, int n)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(item.context->model),
        item_(std::move(item)),
        generated_((size_t)n) {
    model_->in_flight++;
    model_->StopChains();
    item_.context->busy = true;
    std::lock_guard<std::mutex> lock(model_->speculation_mutex);
    item_.context->spec = Speculation{};
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    const int32_t* tokens = item_.tokens.data();
    int n_tokens = (int)item_.tokens.size(), pos = item_.pos;
    for (size_t i = 0; i < generated_.size(); i++) {
      // The argmax is the top 1: the engine ranks it where the logits are, so only the id comes back.
      const llm_batch_sequence step = {item_.context->cache, tokens, n_tokens, pos, nullptr, LLM_LOGITS_NONE, 1,
                                       &generated_[i]};
      std::lock_guard<std::mutex> pass(model_->pass_mutex);
      if (!llm_forward_batch(model_->model, &step, 1, &error_)) {
        SetError(error_.message);
        return;
      }
      pos += n_tokens;
      tokens = &generated_[i];
      n_tokens = 1;
    }
  }

  void OnOK() override {
    Finish();
    Napi::Int32Array ids = Napi::Int32Array::New(Env(), generated_.size());
    std::copy(generated_.begin(), generated_.end(), ids.Data());
    deferred_.Resolve(ids);
  }

  void OnError(const Napi::Error&) override {
    Finish();
    deferred_.Reject(EngineError(Env(), error_).Value());
  }

 private:
  void Finish() {
    item_.context->Release();
    model_->in_flight--;
    model_->ReleaseIfIdle();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> model_;
  DecodeItem item_;
  std::vector<int32_t> generated_;
  llm_error error_{};
};

}  // namespace

DecodeItem ReadDecodeItem(Napi::Env env, std::shared_ptr<ContextState> context, const Napi::Value& tokens_value,
                          const Napi::Value& pos_value, const Napi::Value& options_value, const std::string& where) {
  const ModelState& model = *context->model;
  if (context->closed) throw CodedError(env, "DISPOSED", where + ": the context is closed");
  if (model.closed) throw CodedError(env, "DISPOSED", where + ": the model is closed");
  if (context->busy)
    throw CodedError(env, "CONTEXT_BUSY", where + ": another decode is still running on this context");
  Napi::Int32Array tokens = Int32ArrayArgument(tokens_value, where, "tokens");
  size_t n = tokens.ElementLength();
  if (n == 0) throw ArgumentError(env, "tokens", where + ": tokens is empty");
  double pos = IntegerValue(pos_value, where + ": pos", "pos", 0, kMaxSafeInteger);
  if (pos + (double)n > context->context_size)
    throw OverflowError(env,
                        where + ": " + std::to_string(n) + " tokens at pos " + std::to_string((long long)pos) + " need " +
                            std::to_string((long long)pos + (long long)n) +
                            " positions, more than the context size " + std::to_string(context->context_size),
                        pos + (double)n, context->context_size);
  const int vocab = model.model->config.vocab_size;
  DecodeItem item;
  item.context = std::move(context);
  item.tokens.assign(tokens.Data(), tokens.Data() + n);
  item.pos = (int)pos;
  for (size_t i = 0; i < n; i++)
    if (item.tokens[i] < 0 || item.tokens[i] >= vocab)
      throw ArgumentError(env, "tokens",
                          where + ": token id " + std::to_string(item.tokens[i]) + " at index " + std::to_string(i) +
                              " is outside the vocabulary (size " + std::to_string(vocab) + ")");
  if (!options_value.IsUndefined()) {
    if (!options_value.IsObject()) throw ArgumentError(env, "options", where + ": options must be an object");
    Napi::Object options = options_value.As<Napi::Object>();
    Napi::Value logits = options.Get("logits");
    if (!logits.IsUndefined()) {
      std::string mode = logits.IsString() ? logits.As<Napi::String>().Utf8Value() : "";
      if (mode == "none") item.wanted = LogitsWanted::kNone;
      else if (mode == "all") item.wanted = LogitsWanted::kAll;
      else if (mode != "last")
        throw ArgumentError(env, "logits", where + ": options.logits must be \"none\", \"last\" or \"all\"");
    }
    Napi::Value k = options.Get("topK");
    if (!k.IsUndefined()) item.top_k = (int)IntegerValue(k, where + ": options.topK", "topK", 0, vocab);
    item.speculate = options.Get("speculate").ToBoolean().Value();
  }
  return item;
}

Napi::Promise QueueDecode(Napi::Env env, std::vector<DecodeItem> items, bool as_array) {
  return Queued(new DecodeWorker(env, std::move(items), as_array));
}

Napi::Promise QueueGreedy(Napi::Env env, DecodeItem item, int n) {
  return Queued(new GreedyWorker(env, std::move(item), n));
}

Napi::Value ClaimLookAhead(Napi::Env env, ContextState& context, const Napi::Int32Array& tokens, double pos,
                           LogitsWanted wanted, int top_k) {
  ModelState& model = *context.model;
  std::lock_guard<std::mutex> lock(model.speculation_mutex);
  Speculation& spec = context.spec;
  const bool match = spec.state != Speculation::State::kNone && !spec.claimed && !spec.abandoned &&
                     tokens.ElementLength() == 1 && tokens[0] == spec.token && pos == spec.pos &&
                     wanted == spec.wanted && top_k == spec.top_k;
  if (!match) {
    if (spec.state == Speculation::State::kRunning) spec.abandoned = true;
    else spec = Speculation{};
    model.speculation_cv.notify_all();
    return env.Undefined();
  }
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  if (spec.state == Speculation::State::kRunning) {
    spec.claimed = true;
    context.claims.push_back(deferred);
    model.speculation_cv.notify_all();
  } else {
    deferred.Resolve(ResultObject(env, spec.wanted, spec.top_k, spec.result));
    spec = Speculation{};
  }
  return deferred.Promise();
}

void AbandonLookAhead(ContextState& context) {
  ModelState& model = *context.model;
  std::lock_guard<std::mutex> lock(model.speculation_mutex);
  if (context.spec.state == Speculation::State::kRunning) context.spec.abandoned = true;
  else context.spec = Speculation{};
  model.speculation_cv.notify_all();
}

Napi::Promise Settle(Napi::Env env, ContextState& context) {
  AbandonLookAhead(context);
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  if (context.busy) context.settle_waiters.push_back(deferred);
  else deferred.Resolve(env.Undefined());
  return deferred.Promise();
}

}  // namespace llama_napi
