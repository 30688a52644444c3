/* The engine's sampler: per sequence, the whole chain of lib/sampling — logit bias, repetition penalties over the
 * last N tokens, then greedy, or the truncation / temperature stages in the order asked and one seeded draw — with
 * logprobs of the distribution drawn from. Same rules and float64 arithmetic as the TypeScript reference
 * (lib/sampling/reference.ts), so that a seed gives the same tokens there and here.
 *
 * The PRNG is xoshiro128** (Blackman and Vigna) on a 128-bit state seeded through splitmix32, and a draw's
 * uniform in [0, 1) takes 53 bits from two outputs: (next() >> 5) * 2^26 + (next() >> 6), times 2^-53. Only
 * 32-bit integer arithmetic and exact conversions, so a seed gives the same uniforms on every machine. */
#ifndef LLM_SAMPLER_H
#define LLM_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The truncation / temperature stages, in llama.cpp's default order (lib/sampling/options.ts SAMPLER_NAMES). */
enum llm_sampler_stage {
  LLM_STAGE_TOP_K,
  LLM_STAGE_TYPICAL_P,
  LLM_STAGE_TOP_P,
  LLM_STAGE_MIN_P,
  LLM_STAGE_TEMPERATURE,
  LLM_STAGE_COUNT,
};

/* The option's name ("top_k", ...), as the `samplers` option spells it. */
const char *llm_sampler_stage_name(enum llm_sampler_stage stage);

#define LLM_SAMPLER_MAX_LOGPROBS 20

struct llm_sampler_options {
  double temperature; /* 0: greedy (argmax, lowest id among ties) */
  int top_k;          /* 0 disables; above the vocabulary size means all of it */
  double top_p;       /* in (0, 1]; 1 disables */
  double min_p;       /* in [0, 1]; 0 disables */
  double typical_p;   /* in (0, 1]; 1 disables */
  double repeat_penalty;
  int repeat_last_n; /* the penalty window: 0 disables the penalties, -1 is the whole history */
  double frequency_penalty;
  double presence_penalty;
  /* Added to the listed logits (-INFINITY bans); each id at most once. Copied by llm_sampler_create. */
  const int32_t *bias_ids;
  const double *bias_values;
  int n_bias;
  int64_t seed; /* any integer within ±2^53 */
  /* The stages in the order asked; a stage not listed is not applied. */
  enum llm_sampler_stage stages[LLM_STAGE_COUNT];
  int n_stages;
  int logprobs; /* -1: none; else report the pick's logprob and up to this many alternatives */
};

struct llm_sampled {
  int32_t id;
  /* With logprobs: the natural log of the pick's probability in the distribution it was drawn from (greedy: the
   * temperature-1 softmax of the processed logits), and the most likely tokens of that distribution, logprob
   * descending, ties by id, tokens of probability 0 left out. */
  double logprob;
  int n_top;
  int32_t top_ids[LLM_SAMPLER_MAX_LOGPROBS];
  double top_logprobs[LLM_SAMPLER_MAX_LOGPROBS];
};

struct llm_sampler;

/* NULL with err set when an option is out of range (the message names it) or memory runs out. */
struct llm_sampler *llm_sampler_create(const struct llm_sampler_options *options, int vocab_size,
                                       struct llm_error *err);
void llm_sampler_free(struct llm_sampler *sampler);
/* The bytes of scratch it holds (about 36 per vocabulary entry when it ranks the whole vocabulary, far less for a
 * top-k chain), besides the penalty history: for a garbage-collected owner to account for. */
size_t llm_sampler_bytes(const struct llm_sampler *sampler);

/* What the sampler asks of the forward pass. candidates_needed: how many of the unmodified logits' top ids,
 * ranked, let it skip ranking them itself (0: none help, as when a bias or a penalty changes the logits).
 * needs_logits: whether sample() reads the logits (greedy without logprobs or modifications needs only the top
 * id). */
int llm_sampler_candidates_needed(const struct llm_sampler *sampler);
bool llm_sampler_needs_logits(const struct llm_sampler *sampler);
/* Whether the candidates_needed ranked ids with their own logits are all sample() reads (a top-k chain that
 * changes no logit): then a device ranks the row and copies k ids and k values instead of the whole row. */
bool llm_sampler_ranked_logits_suffice(const struct llm_sampler *sampler);
/* The penalty window in tokens (-1: unbounded); 0 when the penalties change nothing and history is not kept. */
int llm_sampler_history_window(const struct llm_sampler *sampler);

/* Appends tokens (ids within the vocabulary) to the history the penalties look at. */
bool llm_sampler_accept(struct llm_sampler *sampler, const int32_t *tokens, int n, struct llm_error *err);
void llm_sampler_reset_history(struct llm_sampler *sampler);

/* One step: vocab_size logits (modified in place by the bias and the penalties; may be NULL when
 * !llm_sampler_needs_logits, or when llm_sampler_ranked_logits_suffice and ranked_logits are given), and
 * optionally the top n_ranked ids of the unmodified logits, best first (ties by lower id), with their logits in
 * ranked_logits (NULL: read from logits). False with err set when no token can be sampled (every logit -inf or NaN)
 * or the logits are missing. */
bool llm_sampler_sample(struct llm_sampler *sampler, float *logits, const int32_t *ranked, const float *ranked_logits,
                        int n_ranked, struct llm_sampled *out, struct llm_error *err);

/* The generator alone (the sampler draws one llm_rng_uniform per non-greedy step). */
struct llm_rng {
  uint32_t s[4];
};
void llm_rng_seed(struct llm_rng *rng, int64_t seed);
uint32_t llm_rng_next(struct llm_rng *rng);
double llm_rng_uniform(struct llm_rng *rng);

#endif
