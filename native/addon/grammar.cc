// The grammar classes: thin bindings of native/engine/grammar.h.
// JS: new TokenTrie(bytes: Uint8Array, offsets: Uint32Array) — the vocabulary's token bytes, one per model;
// new Grammar(trie, table: Int32Array) — one request's matcher (lib/grammar compiles the table), which the decode
// loop borrows; grammar.mask(logits, endIds) bans in place, grammar.accept(token), grammar.complete / finished.
#include <napi.h>

#include <memory>
#include <string>

#include "binding.h"

extern "C" {
#include "grammar.h"
}

namespace llama_napi {
namespace {

template <typename Array>
Array TypedArgument(const Napi::Value& value, napi_typedarray_type type, const char* where, const char* option, const char* kind) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type)
    throw ArgumentError(value.Env(), option, std::string(where) + ": " + option + " must be a " + kind);
  return value.As<Array>();
}

class TokenTrie : public Napi::ObjectWrap<TokenTrie> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TokenTrie", {InstanceAccessor<&TokenTrie::Bytes>("bytes")});
  }

  // new TokenTrie(bytes, offsets): token i's bytes are bytes[offsets[i]..offsets[i + 1]).
  explicit TokenTrie(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TokenTrie>(info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array bytes = TypedArgument<Napi::Uint8Array>(info[0], napi_uint8_array, "new TokenTrie", "bytes", "Uint8Array");
    Napi::Uint32Array offsets = TypedArgument<Napi::Uint32Array>(info[1], napi_uint32_array, "new TokenTrie", "offsets", "Uint32Array");
    if (offsets.ElementLength() < 2 || offsets.ElementLength() - 1 > 2147483647u)
      throw ArgumentError(env, "offsets", "new TokenTrie: offsets needs one entry per token and one more");
    llm_error err{};
    llm_token_trie* trie =
        llm_token_trie_create(bytes.Data(), bytes.ElementLength(), offsets.Data(), (int)(offsets.ElementLength() - 1), &err);
    if (!trie) throw EngineError(env, err, "new TokenTrie: ");
    trie_.reset(trie, llm_token_trie_free);
    Napi::MemoryManagement::AdjustExternalMemory(env, (int64_t)llm_token_trie_bytes(trie));
  }

  std::shared_ptr<llm_token_trie> trie() const { return trie_; }

 private:
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), (double)llm_token_trie_bytes(trie_.get()));
  }

  std::shared_ptr<llm_token_trie> trie_;
};

class Grammar : public Napi::ObjectWrap<Grammar> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Grammar",
                       {InstanceMethod<&Grammar::Mask>("mask"), InstanceMethod<&Grammar::Accept>("accept"),
                        InstanceAccessor<&Grammar::Complete>("complete"), InstanceAccessor<&Grammar::Finished>("finished")});
  }

  // new Grammar(trie, table)
  explicit Grammar(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Grammar>(info) {
    Napi::Env env = info.Env();
    Napi::FunctionReference& constructor = env.GetInstanceData<AddonData>()->token_trie_constructor;
    if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(constructor.Value()))
      throw ArgumentError(env, "trie", "new Grammar(trie, table): trie must be a TokenTrie");
    trie_ = TokenTrie::Unwrap(info[0].As<Napi::Object>())->trie();
    Napi::Int32Array table = Int32ArrayArgument(info[1], "new Grammar", "table");
    if (table.ElementLength() > 2147483647u) throw ArgumentError(env, "table", "new Grammar: the table is too long");
    llm_error err{};
    grammar_ = llm_grammar_create(table.Data(), (int)table.ElementLength(), trie_.get(), &err);
    if (!grammar_) throw EngineError(env, err, "new Grammar: ");
  }

  ~Grammar() override { llm_grammar_free(grammar_); }

  llm_grammar* engine_grammar() const { return grammar_; }

 private:
  // mask(logits: Float32Array, endIds: Int32Array): bans in place the tokens that cannot continue the grammar.
  void Mask(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Float32Array logits = TypedArgument<Napi::Float32Array>(info[0], napi_float32_array, "mask", "logits", "Float32Array");
    Napi::Int32Array end_ids = Int32ArrayArgument(info[1], "mask", "endIds");
    if (logits.ElementLength() > 2147483647u) throw ArgumentError(env, "logits", "mask: too many logits");
    llm_error err{};
    if (!llm_grammar_mask(grammar_, logits.Data(), (int)logits.ElementLength(), end_ids.Data(), (int)end_ids.ElementLength(), &err))
      throw EngineError(env, err, "mask: ");
  }

  // accept(token): advances over the token's bytes; INVALID_ARGUMENT when the grammar does not allow it.
  void Accept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int token = (int)IntegerValue(info[0], "accept: token", "token", 0, 2147483647);
    llm_error err{};
    if (!llm_grammar_accept(grammar_, token, &err)) throw EngineError(env, err, "accept: ");
  }

  Napi::Value Complete(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), llm_grammar_complete(grammar_)); }
  Napi::Value Finished(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), llm_grammar_finished(grammar_)); }

  std::shared_ptr<llm_token_trie> trie_;  // outlives the matcher, which reads it
  llm_grammar* grammar_ = nullptr;
};

}  // namespace

llm_grammar* GrammarOf(Napi::Env env, const Napi::Value& value, const std::string& where) {
  Napi::FunctionReference& constructor = env.GetInstanceData<AddonData>()->grammar_constructor;
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor.Value()))
    throw ArgumentError(env, "grammar", where + " must be a Grammar");
  return Grammar::Unwrap(value.As<Napi::Object>())->engine_grammar();
}

void RegisterGrammar(Napi::Env env, Napi::Object exports) {
  Napi::Function trie = TokenTrie::Define(env);
  env.GetInstanceData<AddonData>()->token_trie_constructor = Napi::Persistent(trie);
  exports.Set("TokenTrie", trie);
  Napi::Function grammar = Grammar::Define(env);
  env.GetInstanceData<AddonData>()->grammar_constructor = Napi::Persistent(grammar);
  exports.Set("Grammar", grammar);
  // The codes of the flat table's elements (grammar.h), for lib/grammar to write the tables with.
  Napi::Object elements = Napi::Object::New(env);
  elements.Set("altEnd", (double)LLM_GRAMMAR_ALT_END);
  elements.Set("ruleEnd", (double)LLM_GRAMMAR_RULE_END);
  elements.Set("ref", (double)LLM_GRAMMAR_REF);
  elements.Set("chars", (double)LLM_GRAMMAR_CHARS);
  exports.Set("grammarElements", elements);
}

}  // namespace llama_napi
