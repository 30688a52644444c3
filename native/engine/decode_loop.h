/* The decode loop: one thread per model that runs forward passes back to back for every active request, samples
 * each request's next token natively (its llm_sampler), stops it on an end id, max_tokens or a full context, and
 * hands each pass's events to a callback. The caller (JavaScript) detokenizes, matches stop strings and cancels;
 * the next pass never waits for it.
 *
 * Composition of a pass (at most llm_model_pass_tokens tokens): every decode row (one token each) and every
 * prompt that fits whole, in arrival order, then a slice of the oldest longer prompt in the room left; once that
 * prompt is the oldest request, LLM_DECODE_MIN_SLICE_TOKENS of the room are kept for it so it moves on however many
 * sequences decode. Slices other than a prompt's last want no logits. */
#ifndef LLM_DECODE_LOOP_H
#define LLM_DECODE_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "grammar.h"
#include "kv_cache.h"
#include "model.h"
#include "sampler.h"

#define LLM_DECODE_MIN_SLICE_TOKENS 32

struct llm_decode_request {
  struct llm_kv_cache *cache;
  /* The tokens to evaluate at positions pos..: the part of the prompt the cache lacks (at least one). Copied. */
  const int32_t *tokens;
  int n_tokens;
  int pos;
  /* Borrowed until the request's DONE or ERROR event; its history already holds the prompt. The loop samples with
   * it and appends every token it picks (or is given by resume). */
  struct llm_sampler *sampler;
  int max_tokens;         /* tokens to generate at most (> 0) */
  const int32_t *end_ids; /* ids that end the generation (finish STOP, the id not evaluated). Copied. */
  int n_end_ids;
  bool logprobs; /* TOKEN events carry the sampler's logprob report */
  /* Borrowed like the sampler, or NULL: each step's logits are masked to the tokens that continue it (LOGITS events
   * carry them masked), every token taken advances it, and the request finishes GRAMMAR once nothing can follow. */
  struct llm_grammar *grammar;
  /* After each pass the request does not sample: it emits LOGITS (its last position's logits) and waits for
   * llm_decode_loop_resume with the token the caller picked. */
  bool pause_each_step;
};

enum llm_decode_event_kind {
  LLM_DECODE_TOKEN,  /* a new token (the sampled one, or the one resume gave) */
  LLM_DECODE_DONE,   /* the request is over: `finish` says why; no event follows */
  LLM_DECODE_ERROR,  /* a pass with this request failed: `error`; no event follows */
  LLM_DECODE_LOGITS, /* pause_each_step: `logits` of the last position; the request waits for resume */
};

enum llm_finish_reason {
  LLM_FINISH_STOP,         /* sampled an end id (in `sampled.id`; not evaluated) */
  LLM_FINISH_LENGTH,       /* max_tokens generated (the last one not evaluated) */
  LLM_FINISH_CONTEXT_FULL, /* the last token does not fit the cache (the caller's overflow policy decides) */
  LLM_FINISH_ABORT,        /* cancelled */
  LLM_FINISH_GRAMMAR,      /* the grammar is complete and nothing can continue it (the last token not evaluated) */
};

struct llm_decode_event {
  uint64_t id;
  enum llm_decode_event_kind kind;
  struct llm_sampled sampled; /* TOKEN, DONE with STOP: the token */
  bool has_logprobs;          /* TOKEN: sampled holds the logprob report (the request asked, the loop sampled) */
  enum llm_finish_reason finish;
  struct llm_error error;
  int evaluated;        /* positions the cache holds now (valid for every kind) */
  uint64_t pass;        /* the passes run when it was emitted: events of one pass share it (tests read composition) */
  double seconds;       /* when it was delivered, on the monotonic clock (CLOCK_MONOTONIC): for speed figures */
  const float *logits;  /* LOGITS: vocab_size floats, valid only during the deliver call */
};

/* Called on the loop thread once per pass (and once when requests end without a pass), with all of that pass's
 * events in order. */
typedef void (*llm_decode_deliver)(void *user, const struct llm_decode_event *events, int n_events);

struct llm_decode_loop;

/* The loop of `model`; its thread starts with the first request. NULL with err set when memory runs out. */
struct llm_decode_loop *llm_decode_loop_create(struct llm_model *model, llm_decode_deliver deliver, void *user,
                                               struct llm_error *err);
/* Cancels every request (each gets its DONE with ABORT), joins the thread and frees the loop. */
void llm_decode_loop_destroy(struct llm_decode_loop *loop);

/* Adds a request: its id (from 1), or 0 with err set (invalid arguments, no memory, the thread failed to start).
 * Its cache and sampler belong to the loop thread until its DONE or ERROR event. */
uint64_t llm_decode_loop_submit(struct llm_decode_loop *loop, const struct llm_decode_request *request,
                                struct llm_error *err);
/* The request leaves before the next pass; its DONE (ABORT) says how many positions its cache holds. False when
 * the id is not active (unknown, or already done). */
bool llm_decode_loop_cancel(struct llm_decode_loop *loop, uint64_t id);
/* The token the caller picked for a request paused by its LOGITS event. False when the request is not waiting. */
bool llm_decode_loop_resume(struct llm_decode_loop *loop, uint64_t id, int32_t token);

struct llm_decode_loop_stats {
  uint64_t passes;     /* forward passes run (a failed pass's single-request retries included) */
  uint64_t deliveries; /* calls of deliver */
};
void llm_decode_loop_read_stats(struct llm_decode_loop *loop, struct llm_decode_loop_stats *out);

#endif
