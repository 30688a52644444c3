// N-API glue over the C engine: converts the NativeModelSpec of lib/native/binding.ts into an llm_model_spec,
// runs forward passes on libuv worker threads, and turns engine errors into JS errors with a `code`.
#include <fcntl.h>
#include <napi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

extern "C" {
#include "cpu_features.h"
#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "ops.h"
#include "tensor.h"
#include "tensor_check.h"
#include "threadpool.h"
#ifdef LLAMA_NAPI_HAVE_CUDA
#include "llm_cuda.h"
#endif
}

namespace llama_napi {
void RegisterSampler(Napi::Env env, Napi::Object exports);  // sampler.cc
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
    case LLM_ERR_DEVICE: return "DEVICE_ERROR";
    case LLM_ERR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case LLM_ERR_NUMERICAL: return "NUMERICAL";
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
// (on the JS thread, like close) does it. The fields above the mutexes are touched on the JS thread only; the
// engine pointer is used by workers only while in_flight counts them.
struct ModelState {
  llm_model* model = nullptr;
  SpecStorage spec;  // what the model was opened with: checkTensors scans every tensor it lists
  bool closed = false;
  int in_flight = 0;
  uint64_t chains_started = 0;  // look-ahead chains (DecodeWorker), numbered from 1

  // Forward passes run one at a time: the engine's thread pool and scratch belong to the model.
  std::mutex pass_mutex;
  // Guards every context's Speculation and the workers' records of finished look-ahead steps; the condition
  // wakes a chain waiting for claims (a claim, an abandon, a stop).
  std::mutex speculation_mutex;
  std::condition_variable speculation_cv;
  // Chains numbered up to this stop after their current pass: a pass that is not a look-ahead is waiting.
  std::atomic<uint64_t> stop_chains_upto{0};

  void StopChains() {
    std::lock_guard<std::mutex> lock(speculation_mutex);
    stop_chains_upto.store(chains_started);
    speculation_cv.notify_all();
  }

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

enum class LogitsWanted { kNone, kLast, kAll };

// What one sequence's pass returns.
struct StepResult {
  std::vector<float> logits;
  std::vector<int32_t> top;
};

// The look-ahead step of a greedy sequence (see DecodeWorker): its next token, the argmax of its last pass, run at
// the next position before JavaScript asks for it. Guarded by ModelState::speculation_mutex.
struct Speculation {
  enum class State { kNone, kRunning, kDone } state = State::kNone;
  int32_t token = 0;
  int pos = 0;
  LogitsWanted wanted = LogitsWanted::kLast;
  int top_k = 0;
  bool claimed = false;    // JavaScript asked for exactly this step: deliver it and look further ahead
  bool abandoned = false;  // JavaScript asked for something else, or settled the context: stop after this step
  StepResult result;       // kDone, unclaimed: kept for a claim that comes after the chain moved on
};

// A KV cache. Like the model, close() while a decode runs is completed by the decode. Fields other than `spec`
// are touched on the JS thread only.
struct ContextState {
  llm_kv_cache* cache = nullptr;
  int context_size = 0;
  bool closed = false;
  bool busy = false;  // a worker uses the cache (a decode, or a look-ahead chain it is part of)
  Speculation spec;
  std::deque<Napi::Promise::Deferred> claims;          // claimed look-ahead steps awaiting their results, in order
  std::vector<Napi::Promise::Deferred> settle_waiters;  // settle() calls awaiting !busy

  // On the JS thread, when a worker lets go of the cache.
  void Release() {
    busy = false;
    for (Napi::Promise::Deferred& waiter : settle_waiters) waiter.Resolve(waiter.Env().Undefined());
    settle_waiters.clear();
    ReleaseIfIdle();
  }
  void ReleaseIfIdle() {
    if (closed && !busy && cache) {
      llm_kv_cache_free(cache);
      cache = nullptr;
    }
  }
  ~ContextState() { llm_kv_cache_free(cache); }
};

// One sequence of a decode call: what to run, and (after each pass) its results.
struct DecodeItem {
  std::shared_ptr<ContextState> context;
  std::vector<int32_t> tokens;
  int pos = 0;
  LogitsWanted wanted = LogitsWanted::kLast;
  int top_k = 0;
  bool speculate = false;  // the caller's next token will be this pass's argmax: look ahead
  StepResult result;

  // The logits that cross back; the top k comes separately (ranked by the engine, on the device when there is one).
  llm_logits_mode Mode() const {
    return wanted == LogitsWanted::kAll ? LLM_LOGITS_ALL : wanted == LogitsWanted::kLast ? LLM_LOGITS_LAST : LLM_LOGITS_NONE;
  }
  // Whether a look-ahead step fits: the argmax is known and the next position is inside the context.
  bool CanLookAhead() const { return speculate && top_k > 0 && pos + (int)tokens.size() < context->context_size; }
};

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

// Checks one (tokens, pos, options) triple against its context and copies the tokens out of JS memory.
DecodeItem ReadDecodeItem(Napi::Env env, std::shared_ptr<ContextState> context, const ModelState& model,
                          const Napi::Value& tokens_value, const Napi::Value& pos_value,
                          const Napi::Value& options_value, const std::string& where) {
  if (context->closed) throw CodedError(env, "DISPOSED", where + ": the context is closed");
  if (model.closed) throw CodedError(env, "DISPOSED", where + ": the model is closed");
  if (context->busy)
    throw CodedError(env, "CONTEXT_BUSY", where + ": another decode is still running on this context");
  if (!tokens_value.IsTypedArray() || tokens_value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw CodedError(env, "INVALID_ARGUMENT", where + ": tokens must be an Int32Array");
  Napi::Int32Array tokens = tokens_value.As<Napi::Int32Array>();
  size_t n = tokens.ElementLength();
  if (n == 0) throw CodedError(env, "INVALID_ARGUMENT", where + ": tokens is empty");
  double pos = IntegerValue(pos_value, where + ": pos", 0, kMaxSafeInteger);
  if (pos + (double)n > context->context_size)
    // Ends with the positions needed and the context size: lib/native/engine.ts reads the last two numbers.
    throw CodedError(env, "CONTEXT_OVERFLOW",
                     where + ": " + std::to_string(n) + " tokens at pos " + std::to_string((long long)pos) + " need " +
                         std::to_string((long long)pos + (long long)n) + " positions, more than the context size " +
                         std::to_string(context->context_size));
  const int vocab = model.model->config.vocab_size;
  DecodeItem item;
  item.context = std::move(context);
  item.tokens.assign(tokens.Data(), tokens.Data() + n);
  item.pos = (int)pos;
  for (size_t i = 0; i < n; i++)
    if (item.tokens[i] < 0 || item.tokens[i] >= vocab)
      throw CodedError(env, "INVALID_ARGUMENT",
                       where + ": token id " + std::to_string(item.tokens[i]) + " at index " + std::to_string(i) +
                           " is outside the vocabulary (size " + std::to_string(vocab) + ")");
  if (!options_value.IsUndefined()) {
    if (!options_value.IsObject()) throw CodedError(env, "INVALID_ARGUMENT", where + ": options must be an object");
    Napi::Object options = options_value.As<Napi::Object>();
    Napi::Value logits = options.Get("logits");
    if (!logits.IsUndefined()) {
      std::string mode = logits.IsString() ? logits.As<Napi::String>().Utf8Value() : "";
      if (mode == "none") item.wanted = LogitsWanted::kNone;
      else if (mode == "all") item.wanted = LogitsWanted::kAll;
      else if (mode != "last")
        throw CodedError(env, "INVALID_ARGUMENT", where + ": options.logits must be \"none\", \"last\" or \"all\"");
    }
    Napi::Value k = options.Get("topK");
    if (!k.IsUndefined()) item.top_k = (int)IntegerValue(k, where + ": options.topK", 0, vocab);
    item.speculate = options.Get("speculate").ToBoolean().Value();
  }
  return item;
}

// One forward pass of `items` (under the model's pass lock), each item's results into item.result.
bool RunPass(ModelState& model, const std::vector<DecodeItem*>& items, llm_error* err, std::string* alloc_error) {
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
    *alloc_error = "out of memory for the logits of a batch of " + std::to_string(items.size()) + " sequences";
    return false;
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
  DecodeWorker(Napi::Env env, std::shared_ptr<ModelState> model, std::vector<DecodeItem> items, bool as_array)
      : Napi::AsyncProgressQueueWorker<char>(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(std::move(model)),
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
    if (!Pass(chain)) return;
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
      std::string alloc_error;
      const auto start = std::chrono::steady_clock::now();
      const bool ok = RunPass(*model_, chain, &err, &alloc_error);
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
            deliveries_.push_back({item->context, item->wanted, item->top_k, ok, item->result,
                                   ok ? "" : alloc_error.empty() ? err.message : alloc_error,
                                   alloc_error.empty() ? err.kind : LLM_ERR_SYSTEM});
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

  void OnError(const Napi::Error& error) override {
    error.Set("code", Napi::String::New(Env(), ErrorCode(error_kind_)));
    deferred_.Reject(error.Value());
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
    std::string error;
    llm_error_kind error_kind;
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

  bool Pass(const std::vector<DecodeItem*>& items) {
    llm_error err{};
    std::string alloc_error;
    if (RunPass(*model_, items, &err, &alloc_error)) return true;
    error_kind_ = alloc_error.empty() ? err.kind : LLM_ERR_SYSTEM;
    SetError(alloc_error.empty() ? std::string(err.message) : alloc_error);
    return false;
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
      if (d.ok) {
        claim.Resolve(ResultObject(env, d.wanted, d.top_k, d.result));
      } else {
        Napi::Error error = CodedError(env, ErrorCode(d.error_kind), d.error);
        claim.Reject(error.Value());
      }
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
  llm_error_kind error_kind_ = LLM_ERR_SYSTEM;
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
  GreedyWorker(Napi::Env env, std::shared_ptr<ModelState> model, DecodeItem item, int n)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(std::move(model)),
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
    llm_error err{};
    const int32_t* tokens = item_.tokens.data();
    int n_tokens = (int)item_.tokens.size(), pos = item_.pos;
    for (size_t i = 0; i < generated_.size(); i++) {
      // The argmax is the top 1: the engine ranks it where the logits are, so only the id comes back.
      const llm_batch_sequence step = {item_.context->cache, tokens, n_tokens, pos, nullptr, LLM_LOGITS_NONE, 1,
                                       &generated_[i]};
      std::lock_guard<std::mutex> pass(model_->pass_mutex);
      if (!llm_forward_batch(model_->model, &step, 1, &err)) {
        error_kind_ = err.kind;
        SetError(err.message);
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

  void OnError(const Napi::Error& error) override {
    Finish();
    error.Set("code", Napi::String::New(Env(), ErrorCode(error_kind_)));
    deferred_.Reject(error.Value());
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
  llm_error_kind error_kind_ = LLM_ERR_SYSTEM;
};

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
    llm_error err{};
    if (!llm_check_tensors(model_->model, &model_->spec.spec, &fault_, &err)) SetError(err.message);
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

  void OnError(const Napi::Error& error) override {
    Finish();
    error.Set("code", Napi::String::New(Env(), "SYSTEM_ERROR"));
    deferred_.Reject(error.Value());
  }

 private:
  void Finish() {
    model_->in_flight--;
    model_->ReleaseIfIdle();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> model_;
  llm_tensor_fault fault_{};
};

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

struct AddonData {
  Napi::FunctionReference context_constructor;
};

// ---- JS classes ----

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod<&Model::CreateContext>("createContext"),
                        InstanceMethod<&Model::DecodeBatch>("decodeBatch"),
                        InstanceMethod<&Model::StopLookAhead>("stopLookAhead"), InstanceMethod<&Model::Close>("close"),
                        InstanceMethod<&Model::CheckTensors>("checkTensors"),
                        InstanceAccessor<&Model::Device>("device")});
  }

  // spec.device: "cpu" (default) or "cuda", with spec.gpu (default 0): the weights are uploaded to that GPU.
  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info), state_(std::make_shared<ModelState>()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw CodedError(env, "INVALID_ARGUMENT", "new Model(spec): spec must be an object");
    Napi::Object spec = info[0].As<Napi::Object>();
    SpecStorage& storage = state_->spec;
    ReadSpec(spec, storage);
    Napi::Value device = spec.Get("device");
    const std::string kind = device.IsUndefined() ? "cpu" : device.IsString() ? device.As<Napi::String>().Utf8Value() : "";
    if (kind != "cpu" && kind != "cuda") throw CodedError(env, "INVALID_ARGUMENT", "spec.device must be \"cpu\" or \"cuda\"");
    Napi::Value gpu = spec.Get("gpu");
    gpu_ = gpu.IsUndefined() ? 0 : (int)IntegerValue(gpu, "spec.gpu", 0, 1024);
#ifndef LLAMA_NAPI_HAVE_CUDA
    if (kind == "cuda")
      throw CodedError(env, "DEVICE_ERROR", "this build of llama-napi has no CUDA backend (it was compiled where no NVIDIA driver was visible, without nvcc, or with LLAMA_NAPI_CUDA=0; LLAMA_NAPI_CUDA=1 builds it)");
#endif
    llm_error err{};
    state_->model = llm_model_open(&storage.spec, &err);
    if (!state_->model) throw CodedError(env, ErrorCode(err.kind), err.message);
#ifdef LLAMA_NAPI_HAVE_CUDA
    if (kind == "cuda" && !llm_cuda_attach(state_->model, gpu_, &err)) {
      llm_model_close(state_->model);
      state_->model = nullptr;
      throw CodedError(env, ErrorCode(err.kind), err.message);
    }
#endif
  }

  std::shared_ptr<ModelState> state() const { return state_; }

 private:
  Napi::Value CreateContext(const Napi::CallbackInfo& info);
  Napi::Value DecodeBatch(const Napi::CallbackInfo& info);

  // checkTensors(): see TensorCheckWorker.
  Napi::Value CheckTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Promised(env, [&]() -> Napi::Value {
      if (state_->closed) throw CodedError(env, "DISPOSED", "checkTensors: the model is closed");
      auto* worker = new TensorCheckWorker(env, state_);
      Napi::Promise promise = worker->Promise();
      worker->Queue();
      return promise;
    });
  }

  // stopLookAhead(): every look-ahead chain stops after its current pass (a decode of another kind is waiting).
  void StopLookAhead(const Napi::CallbackInfo&) { state_->StopChains(); }

  void Close(const Napi::CallbackInfo&) {
    state_->closed = true;
    state_->StopChains();
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

  std::shared_ptr<ModelState> state_;
  int gpu_ = 0;
};

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Context",
                       {InstanceAccessor<&Context::ContextSize>("contextSize"),
                        InstanceMethod<&Context::Decode>("decode"), InstanceMethod<&Context::Greedy>("greedy"),
                        InstanceMethod<&Context::CopyFrom>("copyFrom"),
                        InstanceMethod<&Context::ReadState>("readState"),
                        InstanceMethod<&Context::WriteState>("writeState"), InstanceMethod<&Context::Claim>("claim"),
                        InstanceMethod<&Context::Settle>("settle"), InstanceMethod<&Context::Close>("close")});
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
    if (!state_->cache) {
      Napi::Error error = CodedError(env, ErrorCode(err.kind), err.message);
      // The size asked for, as a number: lib/native/engine.ts puts it on the typed error.
      if (err.kind == LLM_ERR_OUT_OF_MEMORY) error.Set("bytes", Napi::Number::New(env, (double)llm_kv_cache_bytes(model_->model, size)));
      throw error;
    }
    state_->context_size = size;
  }

  std::shared_ptr<ContextState> state() const { return state_; }
  const std::shared_ptr<ModelState>& model() const { return model_; }

  // The Context behind a JS value, or a coded error naming `where`.
  static Context* From(Napi::Env env, const Napi::Value& value, const std::string& where) {
    Napi::FunctionReference& constructor = env.GetInstanceData<AddonData>()->context_constructor;
    if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor.Value()))
      throw CodedError(env, "INVALID_ARGUMENT", where + " must be a context of this model");
    return Context::Unwrap(value.As<Napi::Object>());
  }

 private:
  Napi::Value ContextSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_->context_size); }

  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Promised(env, [&]() -> Napi::Value {
      std::vector<DecodeItem> items;
      items.push_back(ReadDecodeItem(env, state_, *model_, info[0], info[1], info[2], "decode"));
      auto* worker = new DecodeWorker(env, model_, std::move(items), false);
      Napi::Promise promise = worker->Promise();
      worker->Queue();
      return promise;
    });
  }

  // greedy(tokens, pos, n): see GreedyWorker.
  Napi::Value Greedy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Promised(env, [&]() -> Napi::Value {
      DecodeItem item = ReadDecodeItem(env, state_, *model_, info[0], info[1], env.Undefined(), "greedy");
      const int n = (int)IntegerValue(info[2], "greedy: n", 1, state_->context_size);
      if ((double)item.pos + (double)item.tokens.size() + n - 1 > state_->context_size)
        throw CodedError(env, "CONTEXT_OVERFLOW",
                         "greedy: the prompt and " + std::to_string(n) + " generated tokens need " +
                             std::to_string(item.pos + item.tokens.size() + n - 1) +
                             " positions, more than the context size " + std::to_string(state_->context_size));
      auto* worker = new GreedyWorker(env, model_, std::move(item), n);
      Napi::Promise promise = worker->Promise();
      worker->Queue();
      return promise;
    });
  }

  // Throws unless the cache can be read or written right now.
  void CheckIdle(Napi::Env env, const ContextState& context, const std::string& where) {
    if (context.closed) throw CodedError(env, "DISPOSED", where + ": the context is closed");
    if (model_->closed) throw CodedError(env, "DISPOSED", where + ": the model is closed");
    if (context.busy) throw CodedError(env, "CONTEXT_BUSY", where + ": a decode is running on the context");
  }

  // copyFrom(source, nPositions): this cache's first positions become a copy of the source's (session.fork).
  void CopyFrom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Context* source = From(env, info[0], "copyFrom: source");
    if (source->model_ != model_) throw CodedError(env, "INVALID_ARGUMENT", "copyFrom: the source belongs to another model");
    CheckIdle(env, *state_, "copyFrom");
    CheckIdle(env, *source->state_, "copyFrom (source)");
    const int n = (int)IntegerValue(info[1], "copyFrom: nPositions", 0, 2147483647);
    Abandon();
    llm_error err{};
    if (!llm_kv_cache_copy(state_->cache, source->state_->cache, n, &err))
      throw CodedError(env, ErrorCode(err.kind), "copyFrom: " + std::string(err.message));
  }

  // readState(nPositions) -> ArrayBuffer with the keys and values of the first positions (session.save).
  Napi::Value ReadState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env, *state_, "readState");
    const int n = (int)IntegerValue(info[0], "readState: nPositions", 0, state_->context_size);
    const size_t bytes = llm_kv_cache_state_bytes(state_->cache, n);
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes);
    llm_error err{};
    if (!llm_kv_cache_read_state(state_->cache, n, buffer.Data(), bytes, &err))
      throw CodedError(env, ErrorCode(err.kind), "readState: " + std::string(err.message));
    return buffer;
  }

  // writeState(nPositions, Uint8Array): the inverse of readState (restoring a saved session).
  void WriteState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env, *state_, "writeState");
    const int n = (int)IntegerValue(info[0], "writeState: nPositions", 0, state_->context_size);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw CodedError(env, "INVALID_ARGUMENT", "writeState: state must be a Uint8Array");
    Napi::Uint8Array state = info[1].As<Napi::Uint8Array>();
    Abandon();
    llm_error err{};
    if (!llm_kv_cache_write_state(state_->cache, n, state.Data(), state.ByteLength(), &err))
      throw CodedError(env, ErrorCode(err.kind), "writeState: " + std::string(err.message));
  }

  // claim(tokens, pos, options): the look-ahead step for exactly this decode (one token at pos, the same logits and
  // topK options; see DecodeWorker) as a promise of its result, or undefined when there is none, in which case
  // the caller decodes as usual once settle() resolves.
  Napi::Value Claim(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_->closed || model_->closed) return env.Undefined();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw CodedError(env, "INVALID_ARGUMENT", "claim: tokens must be an Int32Array");
    Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
    const double pos = IntegerValue(info[1], "claim: pos", 0, kMaxSafeInteger);
    LogitsWanted wanted = LogitsWanted::kLast;
    int top_k = 0;
    if (info[2].IsObject()) {
      Napi::Object options = info[2].As<Napi::Object>();
      Napi::Value logits = options.Get("logits");
      if (logits.IsString()) {
        const std::string mode = logits.As<Napi::String>().Utf8Value();
        wanted = mode == "none" ? LogitsWanted::kNone : mode == "all" ? LogitsWanted::kAll : LogitsWanted::kLast;
      }
      Napi::Value k = options.Get("topK");
      if (k.IsNumber()) top_k = k.As<Napi::Number>().Int32Value();
    }
    std::lock_guard<std::mutex> lock(model_->speculation_mutex);
    Speculation& spec = state_->spec;
    const bool match = spec.state != Speculation::State::kNone && !spec.claimed && !spec.abandoned &&
                       tokens.ElementLength() == 1 && tokens[0] == spec.token && pos == spec.pos &&
                       wanted == spec.wanted && top_k == spec.top_k;
    if (!match) {
      if (spec.state == Speculation::State::kRunning) spec.abandoned = true;
      else spec = Speculation{};
      model_->speculation_cv.notify_all();
      return env.Undefined();
    }
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    if (spec.state == Speculation::State::kRunning) {
      spec.claimed = true;
      state_->claims.push_back(deferred);
      model_->speculation_cv.notify_all();
    } else {
      deferred.Resolve(ResultObject(env, spec.wanted, spec.top_k, spec.result));
      spec = Speculation{};
    }
    return deferred.Promise();
  }

  // settle(): ends any look-ahead on this context; resolves once no worker uses the cache.
  Napi::Value Settle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Abandon();
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    if (state_->busy) state_->settle_waiters.push_back(deferred);
    else deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }

  // A look-ahead step still running stops its chain for this context; a kept one is dropped.
  void Abandon() {
    std::lock_guard<std::mutex> lock(model_->speculation_mutex);
    if (state_->spec.state == Speculation::State::kRunning) state_->spec.abandoned = true;
    else state_->spec = Speculation{};
    model_->speculation_cv.notify_all();
  }

  void Close(const Napi::CallbackInfo&) {
    Abandon();
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

// decodeBatch([{context, tokens, pos, logits?, topK?}, ...]): every sequence in one forward pass.
Napi::Value Model::DecodeBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Promised(env, [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw CodedError(env, "INVALID_ARGUMENT", "decodeBatch: expected an array of sequences");
    Napi::Array entries = info[0].As<Napi::Array>();
    if (entries.Length() == 0) throw CodedError(env, "INVALID_ARGUMENT", "decodeBatch: no sequences");
    std::vector<DecodeItem> items;
    for (uint32_t i = 0; i < entries.Length(); i++) {
      const std::string where = "decodeBatch[" + std::to_string(i) + "]";
      Napi::Value entry = entries.Get(i);
      if (!entry.IsObject()) throw CodedError(env, "INVALID_ARGUMENT", where + " must be an object");
      Napi::Object e = entry.As<Napi::Object>();
      Context* context = Context::From(env, e.Get("context"), where + ".context");
      if (context->model() != state_) throw CodedError(env, "INVALID_ARGUMENT", where + ".context belongs to another model");
      for (const DecodeItem& other : items)
        if (other.context == context->state())
          throw CodedError(env, "INVALID_ARGUMENT", where + ": a context appears twice in one batch");
      items.push_back(ReadDecodeItem(env, context->state(), *state_, e.Get("tokens"), e.Get("pos"), e, where));
    }
    auto* worker = new DecodeWorker(env, state_, std::move(items), true);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  });
}

// ---- Reading the weights in: pageIn(files, ranges, onProgress) ----

// Reads byte ranges of the model files (the tensor data) once, in chunks, on a libuv worker, reporting the bytes
// done after each chunk. The reads fill the page cache that the engine's read-only mappings share, so a load with
// progress does the disk work the first forward pass (or the GPU upload) would otherwise do unseen. pread, not
// touching a mapping: a file shorter than a range is an error here, never a SIGBUS.
class PageInWorker : public Napi::AsyncProgressQueueWorker<uint64_t> {
 public:
  struct Range {
    int file;
    uint64_t offset, length;
  };

  PageInWorker(Napi::Env env, std::vector<std::string> files, std::vector<Range> ranges, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<uint64_t>(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        files_(std::move(files)),
        ranges_(std::move(ranges)),
        on_progress_(Napi::Persistent(on_progress)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    // Large enough that the per-call overhead vanishes, small enough that progress moves smoothly.
    const size_t kChunk = 8u << 20;
    std::vector<char> buffer;
    try {
      buffer.resize(kChunk);
    } catch (const std::bad_alloc&) {
      SetError("out of memory for an 8 MiB read buffer");
      return;
    }
    uint64_t done = 0;
    for (size_t f = 0; f < files_.size(); f++) {
      const char* path = files_[f].c_str();
      const int fd = open(path, O_RDONLY | O_CLOEXEC);
      struct stat st;
      if (fd < 0 || fstat(fd, &st) != 0) {
        SetError(std::string("cannot read ") + path + ": " + strerror(errno));
        if (fd >= 0) close(fd);
        return;
      }
#ifdef POSIX_FADV_SEQUENTIAL
      posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
      for (const Range& r : ranges_) {
        if (r.file != (int)f) continue;
        if (r.offset > (uint64_t)st.st_size || r.length > (uint64_t)st.st_size - r.offset) {
          error_code_ = "MODEL_FORMAT";
          SetError(std::string(path) + ": tensor data at " + std::to_string(r.offset) + " + " + std::to_string(r.length) +
                   " bytes runs past the end of the file (" + std::to_string((long long)st.st_size) + " bytes)");
          close(fd);
          return;
        }
        for (uint64_t at = r.offset, end = r.offset + r.length; at < end;) {
          const ssize_t n = pread(fd, buffer.data(), (size_t)std::min<uint64_t>(kChunk, end - at), (off_t)at);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            SetError(std::string("cannot read ") + path + " at " + std::to_string(at) + ": " +
                     (n == 0 ? "unexpected end of file" : strerror(errno)));
            close(fd);
            return;
          }
          at += (uint64_t)n;
          done += (uint64_t)n;
          progress.Send(&done, 1);
        }
      }
      close(fd);
    }
  }

  // Every chunk's count arrives, in order, even when JS is busy (a coalescing worker could deliver as few as the
  // last one on a loaded machine): the counts rise strictly, and the last equals the total before the promise
  // resolves.
  void OnProgress(const uint64_t* done, size_t count) override {
    if (count > 0) on_progress_.Call({Napi::Number::New(Env(), (double)*done)});
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

  void OnError(const Napi::Error& error) override {
    error.Set("code", Napi::String::New(Env(), error_code_));
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> files_;
  std::vector<Range> ranges_;
  Napi::FunctionReference on_progress_;
  const char* error_code_ = "SYSTEM_ERROR";
};

Napi::Value StartPageIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw CodedError(env, "INVALID_ARGUMENT", "pageIn: files must be an array of paths");
  Napi::Array file_array = info[0].As<Napi::Array>();
  std::vector<std::string> files;
  for (uint32_t i = 0; i < file_array.Length(); i++) {
    Napi::Value path = file_array.Get(i);
    if (!path.IsString()) throw CodedError(env, "INVALID_ARGUMENT", "pageIn: files[" + std::to_string(i) + "] must be a string");
    files.push_back(path.As<Napi::String>().Utf8Value());
  }
  if (!info[1].IsArray()) throw CodedError(env, "INVALID_ARGUMENT", "pageIn: ranges must be an array");
  Napi::Array range_array = info[1].As<Napi::Array>();
  std::vector<PageInWorker::Range> ranges;
  for (uint32_t i = 0; i < range_array.Length(); i++) {
    const std::string where = "pageIn: ranges[" + std::to_string(i) + "]";
    Napi::Value item = range_array.Get(i);
    if (!item.IsObject()) throw CodedError(env, "INVALID_ARGUMENT", where + " must be an object");
    Napi::Object r = item.As<Napi::Object>();
    PageInWorker::Range range;
    range.file = (int)IntegerValue(Property(r, "file", where), where + ".file", 0, (double)files.size() - 1);
    range.offset = (uint64_t)IntegerValue(Property(r, "offset", where), where + ".offset", 0, kMaxSafeInteger);
    range.length = (uint64_t)IntegerValue(Property(r, "length", where), where + ".length", 0, kMaxSafeInteger);
    ranges.push_back(range);
  }
  if (!info[2].IsFunction()) throw CodedError(env, "INVALID_ARGUMENT", "pageIn: onProgress must be a function");
  auto* worker = new PageInWorker(env, std::move(files), std::move(ranges), info[2].As<Napi::Function>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value PageIn(const Napi::CallbackInfo& info) { return Promised(info.Env(), [&]() { return StartPageIn(info); }); }

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

// {compiled, devices, reason?}: whether this build has the CUDA backend, how many GPUs it can use, and why none.
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
#ifdef LLAMA_NAPI_HAVE_CUDA
  char why[256] = "";
  const int devices = llm_cuda_device_count(why, sizeof why);
  result.Set("compiled", true);
  result.Set("devices", devices);
  if (devices == 0) result.Set("reason", why);
#else
  result.Set("compiled", false);
  result.Set("devices", 0);
  result.Set("reason", "this build of llama-napi has no CUDA backend (it was compiled where no NVIDIA driver was visible, without nvcc, or with LLAMA_NAPI_CUDA=0; LLAMA_NAPI_CUDA=1 builds it)");
#endif
  return result;
}

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
  exports.Set("cudaInfo", Napi::Function::New<CudaInfo>(env));
  exports.Set("quantize", Napi::Function::New<Convert<ConvertWorker::Direction::kQuantize>>(env));
  exports.Set("dequantize", Napi::Function::New<Convert<ConvertWorker::Direction::kDequantize>>(env));
  exports.Set("typeInfo", Napi::Function::New<TypeInfo>(env));
  exports.Set("pageIn", Napi::Function::New<PageIn>(env));
  llama_napi::RegisterSampler(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(llama_napi, Init)
