// The Sampler class: a thin binding of the engine's sampler (native/engine/sampler.h), one object per sequence.
// JS: new Sampler(options, vocabSize) with the resolved options of lib/sampling (see NativeSamplerOptions in
// lib/native/binding.ts); accept(tokens), resetHistory(), sample(logits, ranked, report) -> id.
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "binding.h"

extern "C" {
#include "sampler.h"
}

namespace llama_napi {
namespace {

double NumberOption(const Napi::Object& options, const char* key) {
  Napi::Value value = options.Get(key);
  if (!value.IsNumber()) throw ArgumentError(options.Env(), key, std::string("sampler options.") + key + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

// An integer option in [min, max] (doubles hold integers exactly up to 2^53).
double IntegerOption(const Napi::Object& options, const char* key, double min, double max) {
  const double value = NumberOption(options, key);
  if (!(value >= min && value <= max) || std::floor(value) != value)
    throw ArgumentError(options.Env(), key,
                        std::string("sampler options.") + key + " must be an integer in [" +
                            std::to_string((long long)min) + ", " + std::to_string((long long)max) + "]");
  return value;
}

// A typed array argument that may be left out (undefined or null): its data and length, or nullptr and 0.
template <typename T>
T* OptionalArray(const Napi::Value& value, napi_typedarray_type type, const char* name, size_t* length) {
  *length = 0;
  if (value.IsUndefined() || value.IsNull()) return nullptr;
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type)
    throw ArgumentError(value.Env(), name, std::string("Sampler: ") + name + " has the wrong type of array");
  Napi::TypedArrayOf<T> array = value.As<Napi::TypedArrayOf<T>>();
  *length = array.ElementLength();
  return array.Data();
}

class Sampler : public Napi::ObjectWrap<Sampler> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Sampler",
                       {InstanceMethod<&Sampler::Sample>("sample"), InstanceMethod<&Sampler::Accept>("accept"),
                        InstanceMethod<&Sampler::ResetHistory>("resetHistory"),
                        InstanceAccessor<&Sampler::CandidatesNeeded>("candidatesNeeded"),
                        InstanceAccessor<&Sampler::NeedsLogits>("needsLogits"),
                        InstanceAccessor<&Sampler::HistoryWindow>("historyWindow")});
  }

  explicit Sampler(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Sampler>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw ArgumentError(env, "options", "new Sampler(options, vocabSize): options must be an object");
    const Napi::Object options = info[0].As<Napi::Object>();
    if (!info[1].IsNumber()) throw ArgumentError(env, "vocabSize", "new Sampler(options, vocabSize): vocabSize must be a number");
    const double vocab = info[1].As<Napi::Number>().DoubleValue();
    if (!(vocab >= 1 && vocab <= 2147483647) || std::floor(vocab) != vocab)
      throw ArgumentError(env, "vocabSize", "new Sampler: vocabSize must be an integer in [1, 2147483647]");
    vocab_size_ = (int)vocab;

    llm_sampler_options o{};
    o.temperature = NumberOption(options, "temperature");
    o.top_k = (int)IntegerOption(options, "topK", 0, 2147483647);
    o.top_p = NumberOption(options, "topP");
    o.min_p = NumberOption(options, "minP");
    o.typical_p = NumberOption(options, "typicalP");
    o.repeat_penalty = NumberOption(options, "repeatPenalty");
    o.repeat_last_n = (int)IntegerOption(options, "repeatLastN", -1, 2147483647);
    o.frequency_penalty = NumberOption(options, "frequencyPenalty");
    o.presence_penalty = NumberOption(options, "presencePenalty");
    o.seed = (int64_t)IntegerOption(options, "seed", -9007199254740991.0, 9007199254740991.0);
    o.logprobs = (int)IntegerOption(options, "logprobs", -1, LLM_SAMPLER_MAX_LOGPROBS);

    size_t n_ids = 0, n_values = 0;
    o.bias_ids = OptionalArray<int32_t>(options.Get("biasIds"), napi_int32_array, "biasIds", &n_ids);
    o.bias_values = OptionalArray<double>(options.Get("biasValues"), napi_float64_array, "biasValues", &n_values);
    if (n_ids != n_values) throw ArgumentError(env, "biasValues", "new Sampler: biasIds and biasValues differ in length");
    o.n_bias = (int)n_ids;

    const Napi::Value samplers = options.Get("samplers");
    if (!samplers.IsArray()) throw ArgumentError(env, "samplers", "sampler options.samplers must be an array of stage names");
    const Napi::Array names = samplers.As<Napi::Array>();
    if (names.Length() > LLM_STAGE_COUNT)
      throw ArgumentError(env, "samplers", "sampler options.samplers lists more stages than there are");
    for (uint32_t i = 0; i < names.Length(); i++) {
      const Napi::Value name = names.Get(i);
      const std::string text = name.IsString() ? name.As<Napi::String>().Utf8Value() : "";
      int stage = 0;
      while (stage < LLM_STAGE_COUNT && text != llm_sampler_stage_name((llm_sampler_stage)stage)) stage++;
      if (stage == LLM_STAGE_COUNT)
        throw ArgumentError(env, "samplers", "sampler options.samplers[" + std::to_string(i) + "] is not a stage name");
      o.stages[o.n_stages++] = (llm_sampler_stage)stage;
    }

    llm_error err{};
    sampler_ = llm_sampler_create(&o, vocab_size_, &err);
    if (!sampler_) throw EngineError(env, err);
    logprobs_ = o.logprobs;
    // The scratch is outside V8's heap: telling V8 lets the collector free samplers of finished sequences in time.
    external_bytes_ = (int64_t)llm_sampler_bytes(sampler_);
    Napi::MemoryManagement::AdjustExternalMemory(env, external_bytes_);
  }

  ~Sampler() override {
    llm_sampler_free(sampler_);
    if (external_bytes_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -external_bytes_);
  }

 private:
  // accept(tokens: Int32Array): appends to the history the penalties look at.
  void Accept(const Napi::CallbackInfo& info) {
    size_t n = 0;
    const int32_t* tokens = OptionalArray<int32_t>(info[0], napi_int32_array, "tokens", &n);
    llm_error err{};
    if (!llm_sampler_accept(sampler_, tokens, (int)n, &err)) throw EngineError(info.Env(), err);
  }

  void ResetHistory(const Napi::CallbackInfo&) { llm_sampler_reset_history(sampler_); }

  // sample(logits: Float32Array | null, ranked: Int32Array | null, report: Float64Array | null) -> id. The
  // logits are changed in place by the bias and the penalties. With logprobs, report receives [logprob, count,
  // id0, logprob0, id1, logprob1, ...] (2 + 2 * logprobs entries).
  Napi::Value Sample(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t n_logits = 0, n_ranked = 0, n_report = 0;
    float* logits = OptionalArray<float>(info[0], napi_float32_array, "logits", &n_logits);
    const int32_t* ranked = OptionalArray<int32_t>(info[1], napi_int32_array, "ranked", &n_ranked);
    double* report = OptionalArray<double>(info[2], napi_float64_array, "report", &n_report);
    if (logits && n_logits != (size_t)vocab_size_)
      throw ArgumentError(env, "logits",
                          "Sampler.sample: " + std::to_string(n_logits) + " logits for a vocabulary of " + std::to_string(vocab_size_));
    for (size_t i = 0; i < n_ranked; i++)
      if (ranked[i] < 0 || ranked[i] >= vocab_size_)
        throw ArgumentError(env, "ranked", "Sampler.sample: ranked id " + std::to_string(ranked[i]) + " is outside the vocabulary");
    if (logprobs_ >= 0 && n_report < (size_t)(2 + 2 * logprobs_))
      throw ArgumentError(env, "report", "Sampler.sample: with logprobs, report needs " + std::to_string(2 + 2 * logprobs_) + " entries");
    llm_sampled out;
    llm_error err{};
    if (!llm_sampler_sample(sampler_, logits, ranked, nullptr, (int)n_ranked, &out, &err)) throw EngineError(env, err);
    if (logprobs_ >= 0) {
      report[0] = out.logprob;
      report[1] = out.n_top;
      for (int i = 0; i < out.n_top; i++) {
        report[2 + 2 * i] = out.top_ids[i];
        report[3 + 2 * i] = out.top_logprobs[i];
      }
    }
    return Napi::Number::New(env, out.id);
  }

  Napi::Value CandidatesNeeded(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), llm_sampler_candidates_needed(sampler_));
  }
  Napi::Value NeedsLogits(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), llm_sampler_needs_logits(sampler_));
  }
  Napi::Value HistoryWindow(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), llm_sampler_history_window(sampler_));
  }

  llm_sampler* sampler_ = nullptr;
  int vocab_size_ = 0;

 public:
  llm_sampler* engine_sampler() const { return sampler_; }

 private:
  int logprobs_ = -1;
  int64_t external_bytes_ = 0;
};

}  // namespace

llm_sampler* SamplerOf(Napi::Env env, const Napi::Value& value, const std::string& where) {
  Napi::FunctionReference& constructor = env.GetInstanceData<AddonData>()->sampler_constructor;
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor.Value()))
    throw ArgumentError(env, "sampler", where + " must be a Sampler");
  return Sampler::Unwrap(value.As<Napi::Object>())->engine_sampler();
}

void RegisterSampler(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = Sampler::Define(env);
  env.GetInstanceData<AddonData>()->sampler_constructor = Napi::Persistent(constructor);
  exports.Set("Sampler", constructor);
}

}  // namespace llama_napi
