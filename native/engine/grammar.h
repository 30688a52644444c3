/* Constrained generation: a grammar compiled by lib/grammar (a flat table of rules) matched against the tokens a
 * request generates, and the mask of the tokens that can continue it, applied to the logits before sampling.
 *
 * The table (int32): [n_rules, root, offset of rule 0, ..., offset of rule n_rules-1, elements...], offsets
 * absolute. A rule is its alternatives one after the other, each ended by ALT_END, then RULE_END. Elements:
 *   LLM_GRAMMAR_ALT_END                       1 int
 *   LLM_GRAMMAR_RULE_END                      1 int
 *   LLM_GRAMMAR_REF rule                      2 ints: the rule's text matched here
 *   LLM_GRAMMAR_CHARS negated n lo0 hi0 ...   3 + 2n ints: one code point within a range (or, negated, outside all)
 *
 * The parser state is a set of pushdown stacks (a stack: the positions to continue at after each rule entered, then
 * the CHARS element to match next; the empty stack: the grammar is complete), with the bytes of a code point not yet
 * whole. States are interned into a lazily built automaton over bytes, so the mask of a state seen before is looked
 * up, and a new one costs one walk of the vocabulary's byte trie that follows each edge through the automaton and
 * prunes where no stack can continue. */
#ifndef LLM_GRAMMAR_H
#define LLM_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

enum llm_grammar_element {
  LLM_GRAMMAR_ALT_END = 0,
  LLM_GRAMMAR_RULE_END = 1,
  LLM_GRAMMAR_REF = 2,
  LLM_GRAMMAR_CHARS = 3,
};

#define LLM_GRAMMAR_MAX_CODEPOINT 0x10FFFF

/* The vocabulary's token bytes as a trie, shared by every grammar of a model. Tokens of no bytes (control tokens)
 * are never allowed by a grammar. */
struct llm_token_trie;

/* bytes[offsets[i]..offsets[i+1]) are token i's (offsets: n_tokens + 1 entries, non-decreasing, the last at most
 * n_bytes). Copied. NULL with err set. */
struct llm_token_trie *llm_token_trie_create(const uint8_t *bytes, size_t n_bytes, const uint32_t *offsets, int n_tokens,
                                             struct llm_error *err);
void llm_token_trie_free(struct llm_token_trie *trie);
size_t llm_token_trie_bytes(const struct llm_token_trie *trie);

/* One request's matcher. The trie must outlive it. NULL with err set when the table is malformed. */
struct llm_grammar;
struct llm_grammar *llm_grammar_create(const int32_t *table, int n, const struct llm_token_trie *trie, struct llm_error *err);
void llm_grammar_free(struct llm_grammar *grammar);

/* Bans (-inf) the logits (vocab_size of them) of every token that cannot continue the grammar; the end ids are allowed
 * only when the grammar is complete. False with err set when no token is left (the vocabulary cannot continue the
 * grammar) or memory runs out. */
bool llm_grammar_mask(struct llm_grammar *grammar, float *logits, int vocab_size, const int32_t *end_ids, int n_end_ids,
                      struct llm_error *err);
/* Advances the state over the token's bytes; false with err set when the grammar does not allow it. */
bool llm_grammar_accept(struct llm_grammar *grammar, int32_t token, struct llm_error *err);
/* The text so far is a whole match (an end id may come now). */
bool llm_grammar_complete(const struct llm_grammar *grammar);
/* Complete, and no further text can continue it: the generation is over. */
bool llm_grammar_finished(const struct llm_grammar *grammar);

#endif
