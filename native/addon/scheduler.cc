// Single forward passes on libuv workers for the JS Model and Context (scheduler.h).
#include "scheduler.h"

#include <algorithm>
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
  const size_t vocab = (size_t)model.model->config.vocab_size, dim = (size_t)model.model->config.dim;
  std::vector<llm_batch_sequence> sequences;
  try {
    sequences.reserve(items.size());
    for (DecodeItem* item : items) {
      const llm_logits_mode mode = item->Mode();
      const size_t row = mode == LLM_HIDDEN_ALL ? dim : vocab;
      item->result.logits.resize(mode == LLM_LOGITS_ALL || mode == LLM_HIDDEN_ALL ? item->tokens.size() * row
                                 : mode == LLM_LOGITS_LAST                       ? vocab
                                                                                 : 0);
      item->result.top.resize((size_t)item->top_k);
      sequences.push_back({item->context->cache, item->tokens.data(), (int)item->tokens.size(), item->pos,
                           mode == LLM_LOGITS_NONE ? nullptr : item->result.logits.data(), mode, item->top_k,
                           item->top_k > 0 ? item->result.top.data() : nullptr});
    }
  } catch (const std::bad_alloc&) {
    return llm_fail(err, LLM_ERR_SYSTEM, "out of memory for the logits of a batch of %zu sequences", items.size());
  }
  // llm_forward_batch serialises the passes of one model itself (its forward_lock).
  return llm_forward_batch(model.model, sequences.data(), (int)sequences.size(), err);
}

// Runs a batch of sequences in one llm_forward_batch on a libuv worker and resolves with one {logits?, top?}
// object, or an array of them for decodeBatch.
class DecodeWorker : public Napi::AsyncWorker {
 public:
  DecodeWorker(Napi::Env env, std::vector<DecodeItem> items, bool as_array)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(items[0].context->model),
        items_(std::move(items)),
        as_array_(as_array) {
    model_->in_flight++;
    for (DecodeItem& item : items_) item.context->busy = true;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::vector<DecodeItem*> pass;
    for (DecodeItem& item : items_) pass.push_back(&item);
    if (!RunPass(*model_, pass, &error_)) SetError(error_.message);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Finish();
    if (!as_array_) {
      deferred_.Resolve(ResultObject(env, items_[0].wanted, items_[0].top_k, items_[0].result));
      return;
    }
    Napi::Array results = Napi::Array::New(env, items_.size());
    for (size_t i = 0; i < items_.size(); i++)
      results.Set((uint32_t)i, ResultObject(env, items_[i].wanted, items_[i].top_k, items_[i].result));
    deferred_.Resolve(results);
  }

  void OnError(const Napi::Error&) override {
    Finish();
    deferred_.Reject(EngineError(Env(), error_).Value());
  }

 private:
  void Finish() {
    for (DecodeItem& item : items_) item.context->Release();
    model_->in_flight--;
    model_->ReleaseIfIdle();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> model_;
  std::vector<DecodeItem> items_;
  bool as_array_;
  llm_error error_{};
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
    item_.context->busy = true;
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
      else if (mode == "hidden") item.wanted = LogitsWanted::kHidden;
      else if (mode != "last")
        throw ArgumentError(env, "logits", where + ": options.logits must be \"none\", \"last\", \"all\" or \"hidden\"");
    }
    Napi::Value k = options.Get("topK");
    if (!k.IsUndefined()) item.top_k = (int)IntegerValue(k, where + ": options.topK", "topK", 0, vocab);
  }
  return item;
}

Napi::Promise QueueDecode(Napi::Env env, std::vector<DecodeItem> items, bool as_array) {
  return Queued(new DecodeWorker(env, std::move(items), as_array));
}

Napi::Promise QueueGreedy(Napi::Env env, DecodeItem item, int n) {
  return Queued(new GreedyWorker(env, std::move(item), n));
}

}  // namespace llama_napi
