/* The sampler chain (sampler.h). Each function mirrors its TypeScript counterpart in lib/sampling (named in its
 * comment) operation for operation, in float64, so the two give the same tokens: the only source of difference
 * is exp() and log(), which here come from the C library and there from V8, and may differ in the last bit of a
 * double. That can change a pick only when a cut-off or the draw's uniform lands within ~1e-16 of a boundary. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static const char *const STAGE_NAMES[LLM_STAGE_COUNT] = {"top_k", "typical_p", "top_p", "min_p", "temperature"};

const char *llm_sampler_stage_name(enum llm_sampler_stage stage) {
  return (int)stage >= 0 && stage < LLM_STAGE_COUNT ? STAGE_NAMES[stage] : "?";
}

/* ---- The generator (rng.ts) ---- */

static uint32_t rotl32(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

void llm_rng_seed(struct llm_rng *rng, int64_t seed) {
  /* The seed's low and high 32 bits folded together (the high part truncated toward zero, as C's integer
   * division does), then splitmix32 spreads them over the 128-bit state (even seed 0). */
  uint32_t x = (uint32_t)(uint64_t)seed ^ (uint32_t)(uint64_t)(seed / 4294967296LL);
  for (int i = 0; i < 4; i++) {
    x += 0x9e3779b9u;
    uint32_t z = x;
    z = (z ^ (z >> 16)) * 0x85ebca6bu;
    z = (z ^ (z >> 13)) * 0xc2b2ae35u;
    rng->s[i] = z ^ (z >> 16);
  }
}

uint32_t llm_rng_next(struct llm_rng *rng) {
  uint32_t *s = rng->s;
  const uint32_t result = rotl32(s[1] * 5u, 7) * 9u;
  const uint32_t t = s[1] << 9;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl32(s[3], 11);
  return result;
}

double llm_rng_uniform(struct llm_rng *rng) {
  const uint64_t hi = llm_rng_next(rng) >> 5;
  const uint64_t lo = llm_rng_next(rng) >> 6;
  return (double)((hi << 26) | lo) * 0x1p-53;
}

/* ---- Candidate lists (candidates.ts) ---- */

/* Parallel (id, logit) arrays. ranked: logit descending, ties by id ascending, every entry possible (> -inf).
 * Not ranked: the whole vocabulary in id order (position = id), NaN stored as -inf. */
struct candidates {
  int32_t *ids;
  double *logits;
  int size;
  bool ranked;
};

/* A stable LSD radix sort of positions by uint32 keys (radix-sort.ts): three passes of 11 bits, O(n). */
#define RADIX_BITS 11
#define RADIX_BUCKETS (1 << RADIX_BITS)

struct radix_sorter {
  uint32_t *keys; /* the caller writes the keys of positions 0..n-1 here */
  uint32_t *keys_b;
  int32_t *order, *order_b;
  int counts[RADIX_BUCKETS];
};

/* Positions 0..n-1 by ascending key, equal keys in position order; scratch, valid until the next sort. */
static int32_t *radix_sort(struct radix_sorter *r, int n) {
  uint32_t *src_keys = r->keys, *dst_keys = r->keys_b;
  int32_t *src = r->order, *dst = r->order_b;
  for (int i = 0; i < n; i++) src[i] = i;
  for (int shift = 0; shift < 32; shift += RADIX_BITS) {
    memset(r->counts, 0, sizeof r->counts);
    for (int i = 0; i < n; i++) r->counts[(src_keys[i] >> shift) & (RADIX_BUCKETS - 1)]++;
    int start = 0;
    for (int b = 0; b < RADIX_BUCKETS; b++) {
      const int count = r->counts[b];
      r->counts[b] = start;
      start += count;
    }
    for (int i = 0; i < n; i++) {
      const uint32_t key = src_keys[i];
      const int to = r->counts[(key >> shift) & (RADIX_BUCKETS - 1)]++;
      dst_keys[to] = key;
      dst[to] = src[i];
    }
    uint32_t *keys = src_keys;
    src_keys = dst_keys;
    dst_keys = keys;
    int32_t *order = src;
    src = dst;
    dst = order;
  }
  return src;
}

/* A uint32 that sorts ascending as the float sorts descending; NaN ranks with -inf and -0 with +0. */
static uint32_t descending_key(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0xff800000u;
  if (bits == 0x80000000u) return 0x7fffffffu;
  return bits >= 0x80000000u ? bits : ~bits & 0x7fffffffu;
}

/* Drops the banned (-inf) and broken (NaN) entries, which rank last, so that no stage can keep one. */
static void drop_impossible(struct candidates *list) {
  while (list->size > 0 && !(list->logits[list->size - 1] > -INFINITY)) list->size--;
}

/* The list becomes the first n ids of `order` (ranked best first) with their logits. */
/* order_logits: the logits of the ordered ids, when the caller has them apart (else read from logits). */
static void fill_ranked(struct candidates *list, const float *logits, const int32_t *order, const float *order_logits, int n) {
  for (int i = 0; i < n; i++) {
    list->ids[i] = order[i];
    list->logits[i] = order_logits ? order_logits[i] : logits[order[i]];
  }
  list->size = n;
  list->ranked = true;
  drop_impossible(list);
}

/* The whole vocabulary in rank order (rankVocabulary): for a chain whose first truncation needs every token. */
static void rank_vocabulary(struct candidates *list, const float *logits, int n, struct radix_sorter *sorter) {
  for (int i = 0; i < n; i++) sorter->keys[i] = descending_key(logits[i]);
  fill_ranked(list, logits, radix_sort(sorter, n), NULL, n);
}

/* The whole vocabulary in id order (wholeVocabulary); left empty when no logit is possible. */
static void whole_vocabulary(struct candidates *list, const float *logits, int n) {
  bool possible = false;
  for (int i = 0; i < n; i++) {
    const float v = logits[i];
    list->ids[i] = i;
    list->logits[i] = v == v ? v : -INFINITY;
    possible |= v > -INFINITY;
  }
  list->size = possible ? n : 0;
  list->ranked = false;
}

/* The k largest of values[0..n) (NaN as -inf) with their positions, largest first, ties by lower position
 * (selectTopK, for the logprob alternatives: k <= LLM_SAMPLER_MAX_LOGPROBS). Kept sorted by insertion: a value
 * that does not make the cut, almost every one, costs one comparison. */
static void select_best(const double *values, int n, int k, struct candidates *out) {
  int size = 0;
  if (k > n) k = n;
  for (int i = 0; i < n && k > 0; i++) {
    const double v = values[i] == values[i] ? values[i] : -INFINITY;
    if (size == k) {
      if (!(v > out->logits[k - 1])) continue; /* an equal value loses the tie: every kept position is lower */
      size--;
    }
    int at = size++;
    for (; at > 0 && out->logits[at - 1] < v; at--) {
      out->ids[at] = out->ids[at - 1];
      out->logits[at] = out->logits[at - 1];
    }
    out->ids[at] = i;
    out->logits[at] = v;
  }
  out->size = size;
  out->ranked = true;
}

/* ---- Softmax arithmetic (softmax.ts) ---- */

/* ln Σ exp(values[i]), shifted by the maximum so that exp never overflows; NaN counts as -inf. */
static double log_sum_exp(const double *values, int n) {
  double max = -INFINITY;
  for (int i = 0; i < n; i++)
    if (values[i] > max) max = values[i];
  double total = 0.0;
  for (int i = 0; i < n; i++)
    if (values[i] > -INFINITY) total += exp(values[i] - max);
  return max + log(total);
}

/* Draws a position with probability softmax(list logits) by inverse CDF over the list in its order, with one
 * uniform u in [0, 1) (drawPosition); *log_normalizer = ln Σ exp(logit). `weights`: scratch of the list's size,
 * so that each exp is computed once (the same values drawPosition computes twice). */
static int draw_position(const struct candidates *list, double u, double *weights, double *log_normalizer) {
  const double *logits = list->logits;
  const int size = list->size;
  double max = logits[0];
  if (!list->ranked)
    for (int i = 1; i < size; i++)
      if (logits[i] > max) max = logits[i];
  double total = 0.0;
  for (int i = 0; i < size; i++) {
    weights[i] = exp(logits[i] - max);
    total += weights[i];
  }
  *log_normalizer = max + log(total);
  const double target = u * total;
  double mass = 0.0;
  int last_possible = 0;
  for (int i = 0; i < size; i++) {
    mass += weights[i];
    if (target < mass) return i;
    if (weights[i] > 0) last_possible = i;
  }
  /* Only when u × total rounded up to total: the last token that had any probability. */
  return last_possible;
}

/* ---- The stages (stages.ts), in place on a ranked list, each keeping at least one token ---- */

/* `weights`: scratch of the list's size (each exp once, as in draw_position). */
static void keep_top_p(struct candidates *list, double p, double *weights) {
  const double max = list->logits[0];
  double total = 0.0;
  for (int i = 0; i < list->size; i++) {
    weights[i] = exp(list->logits[i] - max);
    total += weights[i];
  }
  const double target = p * total;
  double mass = 0.0;
  for (int i = 0; i < list->size; i++) {
    mass += weights[i];
    if (mass >= target) {
      list->size = i + 1;
      return;
    }
  }
}

static void keep_min_p(struct candidates *list, double min_p) {
  const double floor = list->logits[0] + log(min_p);
  int keep = 1;
  while (keep < list->size && list->logits[keep] >= floor) keep++;
  list->size = keep;
}

static int ascending_int(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* Locally typical sampling: keep the tokens whose surprisal is closest to the entropy until their probability
 * reaches p, then back in rank order. Distances are compared as float32 (as llama.cpp stores them), equal ones in
 * rank order. */
static void keep_typical(struct candidates *list, double p, struct radix_sorter *sorter) {
  int32_t *ids = list->ids;
  double *logits = list->logits;
  const int size = list->size;
  const double max = logits[0];
  double total = 0.0;
  for (int i = 0; i < size; i++) total += exp(logits[i] - max);
  const double log_total = max + log(total);
  double entropy = 0.0;
  for (int i = 0; i < size; i++) {
    const double log_prob = logits[i] - log_total;
    const double prob = exp(log_prob);
    if (prob > 0) entropy -= prob * log_prob;
  }
  /* Non-negative floats sort like their bit patterns. */
  for (int i = 0; i < size; i++) {
    const float distance = (float)fabs(log_total - logits[i] - entropy);
    memcpy(&sorter->keys[i], &distance, sizeof distance);
  }
  int32_t *order = radix_sort(sorter, size);
  int keep = size;
  double mass = 0.0;
  for (int j = 0; j < size; j++) {
    mass += exp(logits[order[j]] - log_total);
    if (mass >= p) {
      keep = j + 1;
      break;
    }
  }
  /* Kept positions ascending = rank order; compacting in place is safe as each moves down or stays. */
  qsort(order, (size_t)keep, sizeof *order, ascending_int);
  for (int j = 0; j < keep; j++) {
    ids[j] = ids[order[j]];
    logits[j] = logits[order[j]];
  }
  list->size = keep;
}

static void apply_temperature(struct candidates *list, double temperature) {
  for (int i = 0; i < list->size; i++) list->logits[i] /= temperature;
}

/* ---- The sampler ---- */

/* Where a draw's candidate list comes from: the top-k (the forward pass's, or selected here), the whole
 * vocabulary ranked (a truncation needs every token), or the whole vocabulary unranked (no truncation). */
enum candidate_source { SOURCE_TOP_K, SOURCE_RANKED_VOCABULARY, SOURCE_VOCABULARY };

struct llm_sampler {
  struct llm_sampler_options options; /* bias_ids / bias_values point to the sampler's own copies */
  int vocab_size;
  bool greedy;
  bool penalties;       /* the penalties change something */
  bool modifies_logits; /* bias or penalties: a ranking of the raw logits no longer holds */
  /* The active stages in application order (planStages). */
  enum llm_sampler_stage plan[LLM_STAGE_COUNT];
  int n_plan;
  enum candidate_source source;
  struct llm_rng rng;
  /* The tokens the penalties look at: the latest ones, at most twice the window before the older are dropped. */
  int32_t *history;
  int history_len, history_cap;
  int32_t *counts; /* vocab_size zeros between steps: occurrences in the window while penalising */
  struct candidates list;
  double *weights; /* exp of each list entry, for a draw or top-p */
  bool has_sorter;
  struct radix_sorter sorter;
  struct candidates alternatives;
  int32_t alternative_ids[LLM_SAMPLER_MAX_LOGPROBS];
  double alternative_logits[LLM_SAMPLER_MAX_LOGPROBS];
  size_t bytes; /* everything above but the history */
};

static bool stage_active(const struct llm_sampler_options *o, int vocab_size, enum llm_sampler_stage stage) {
  switch (stage) {
    case LLM_STAGE_TOP_K: return o->top_k > 0 && o->top_k < vocab_size;
    case LLM_STAGE_TYPICAL_P: return o->typical_p < 1;
    case LLM_STAGE_TOP_P: return o->top_p < 1;
    case LLM_STAGE_MIN_P: return o->min_p > 0;
    case LLM_STAGE_TEMPERATURE: return o->temperature != 1;
    default: return false;
  }
}

/* The stages that change anything, in order (planStages). Top-k moves to the front when only temperature and
 * min-p precede it: neither changes the ranking, and min-p keeps the prefix {logit >= max + T ln minP} whatever
 * else is in the list, so the result is the same, and a ranked top-k from the forward pass can supply the list. */
static int plan_stages(const struct llm_sampler_options *o, int vocab_size, enum llm_sampler_stage *plan) {
  int n = 0, top_k_at = -1;
  for (int i = 0; i < o->n_stages; i++) {
    if (!stage_active(o, vocab_size, o->stages[i])) continue;
    if (o->stages[i] == LLM_STAGE_TOP_K) top_k_at = n;
    plan[n++] = o->stages[i];
  }
  if (top_k_at <= 0) return n;
  for (int i = 0; i < top_k_at; i++)
    if (plan[i] != LLM_STAGE_TEMPERATURE && plan[i] != LLM_STAGE_MIN_P) return n;
  memmove(plan + 1, plan, (size_t)top_k_at * sizeof *plan);
  plan[0] = LLM_STAGE_TOP_K;
  return n;
}

/* The rules of lib/sampling/options.ts, for callers that reach the engine without it. */
static bool check_options(const struct llm_sampler_options *o, int vocab_size, struct llm_error *err) {
  if (vocab_size < 1) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the vocabulary size must be >= 1 (got %d)", vocab_size);
  if (!(o->temperature >= 0 && o->temperature < INFINITY))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "temperature must be a finite number >= 0 (got %g)", o->temperature);
  if (o->top_k < 0) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "topK must be an integer >= 0 (got %d)", o->top_k);
  if (!(o->top_p > 0 && o->top_p <= 1)) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "topP must be in (0, 1] (got %g)", o->top_p);
  if (!(o->min_p >= 0 && o->min_p <= 1)) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "minP must be in [0, 1] (got %g)", o->min_p);
  if (!(o->typical_p > 0 && o->typical_p <= 1))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "typicalP must be in (0, 1] (got %g)", o->typical_p);
  if (!(o->repeat_penalty > 0 && o->repeat_penalty < INFINITY))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "repeatPenalty must be a finite number > 0 (got %g)", o->repeat_penalty);
  if (o->repeat_last_n < -1)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "repeatLastN must be an integer >= -1 (got %d)", o->repeat_last_n);
  if (!isfinite(o->frequency_penalty))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "frequencyPenalty must be a finite number (got %g)", o->frequency_penalty);
  if (!isfinite(o->presence_penalty))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "presencePenalty must be a finite number (got %g)", o->presence_penalty);
  if (o->n_bias < 0 || (o->n_bias > 0 && (!o->bias_ids || !o->bias_values)))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "logitBias: %d entries without their arrays", o->n_bias);
  for (int i = 0; i < o->n_bias; i++) {
    if (o->bias_ids[i] < 0 || o->bias_ids[i] >= vocab_size)
      return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "logitBias token ids must be integers in [0, %d) (got %d)", vocab_size,
                      o->bias_ids[i]);
    /* +inf would make the softmax inf / inf; a ban (-inf) is fine. */
    if (isnan(o->bias_values[i]) || o->bias_values[i] == INFINITY)
      return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "logitBias[%d] must be a finite number or -Infinity (got %g)",
                      o->bias_ids[i], o->bias_values[i]);
  }
  if (o->seed > 9007199254740991LL || o->seed < -9007199254740991LL)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "seed must be a safe integer (got %lld)", (long long)o->seed);
  if (o->n_stages < 0 || o->n_stages > LLM_STAGE_COUNT)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "samplers must list at most %d stages (got %d)", LLM_STAGE_COUNT, o->n_stages);
  bool seen[LLM_STAGE_COUNT] = {false};
  for (int i = 0; i < o->n_stages; i++) {
    const enum llm_sampler_stage stage = o->stages[i];
    if ((int)stage < 0 || stage >= LLM_STAGE_COUNT)
      return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "samplers[%d] is not a sampler stage (code %d)", i, (int)stage);
    if (seen[stage]) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "samplers must not list \"%s\" twice", STAGE_NAMES[stage]);
    seen[stage] = true;
  }
  if (o->logprobs < -1 || o->logprobs > LLM_SAMPLER_MAX_LOGPROBS)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "logprobs must be an integer in [0, %d] (got %d)", LLM_SAMPLER_MAX_LOGPROBS,
                    o->logprobs);
  return true;
}

void llm_sampler_free(struct llm_sampler *s) {
  if (!s) return;
  free((void *)s->options.bias_ids);
  free((void *)s->options.bias_values);
  free(s->history);
  free(s->counts);
  free(s->list.ids);
  free(s->list.logits);
  free(s->weights);
  free(s->sorter.keys);
  free(s->sorter.keys_b);
  free(s->sorter.order);
  free(s->sorter.order_b);
  free(s);
}

struct llm_sampler *llm_sampler_create(const struct llm_sampler_options *options, int vocab_size, struct llm_error *err) {
  if (!check_options(options, vocab_size, err)) return NULL;
  struct llm_sampler *s = calloc(1, sizeof *s);
  if (!s) goto out_of_memory;
  s->options = *options;
  struct llm_sampler_options *o = &s->options;
  if (o->top_k > vocab_size) o->top_k = vocab_size;
  o->bias_ids = NULL;
  o->bias_values = NULL;
  if (o->n_bias > 0) {
    int32_t *ids = malloc((size_t)o->n_bias * sizeof *ids);
    double *values = malloc((size_t)o->n_bias * sizeof *values);
    o->bias_ids = ids;
    o->bias_values = values;
    if (!ids || !values) goto out_of_memory;
    memcpy(ids, options->bias_ids, (size_t)o->n_bias * sizeof *ids);
    memcpy(values, options->bias_values, (size_t)o->n_bias * sizeof *values);
  }
  s->vocab_size = vocab_size;
  s->greedy = o->temperature == 0;
  s->penalties = o->repeat_last_n != 0 && (o->repeat_penalty != 1 || o->frequency_penalty != 0 || o->presence_penalty != 0);
  s->modifies_logits = o->n_bias > 0 || s->penalties;
  s->n_plan = plan_stages(o, vocab_size, s->plan);
  bool typical = false, truncates = false;
  for (int i = 0; i < s->n_plan; i++) {
    typical |= s->plan[i] == LLM_STAGE_TYPICAL_P;
    truncates |= s->plan[i] != LLM_STAGE_TEMPERATURE;
  }
  s->source = s->n_plan > 0 && s->plan[0] == LLM_STAGE_TOP_K ? SOURCE_TOP_K
              : truncates                                    ? SOURCE_RANKED_VOCABULARY
                                                             : SOURCE_VOCABULARY;
  llm_rng_seed(&s->rng, o->seed);
  s->alternatives.ids = s->alternative_ids;
  s->alternatives.logits = s->alternative_logits;

  /* Scratch for what this configuration uses: greedy needs a list only for its logprobs (over the vocabulary). */
  const int capacity = s->greedy ? (o->logprobs >= 0 ? vocab_size : 0) : s->source == SOURCE_TOP_K ? o->top_k : vocab_size;
  if (capacity > 0) {
    s->list.ids = malloc((size_t)capacity * sizeof *s->list.ids);
    s->list.logits = malloc((size_t)capacity * sizeof *s->list.logits);
    if (!s->list.ids || !s->list.logits) goto out_of_memory;
    if (!s->greedy && !(s->weights = malloc((size_t)capacity * sizeof *s->weights))) goto out_of_memory;
  }
  s->has_sorter = !s->greedy && (s->source == SOURCE_RANKED_VOCABULARY || typical);
  if (s->has_sorter) {
    s->sorter.keys = malloc((size_t)capacity * sizeof *s->sorter.keys);
    s->sorter.keys_b = malloc((size_t)capacity * sizeof *s->sorter.keys_b);
    s->sorter.order = malloc((size_t)capacity * sizeof *s->sorter.order);
    s->sorter.order_b = malloc((size_t)capacity * sizeof *s->sorter.order_b);
    if (!s->sorter.keys || !s->sorter.keys_b || !s->sorter.order || !s->sorter.order_b) goto out_of_memory;
  }
  if (s->penalties) {
    s->counts = calloc((size_t)vocab_size, sizeof *s->counts);
    if (!s->counts) goto out_of_memory;
  }
  s->bytes = sizeof *s + (size_t)o->n_bias * (sizeof(int32_t) + sizeof(double)) +
             (size_t)capacity * (sizeof(int32_t) + (s->greedy ? 1 : 2) * sizeof(double)) +
             (s->has_sorter ? (size_t)capacity * 2 * (sizeof(uint32_t) + sizeof(int32_t)) : 0) +
             (s->penalties ? (size_t)vocab_size * sizeof(int32_t) : 0);
  return s;

out_of_memory:
  llm_sampler_free(s);
  llm_fail(err, LLM_ERR_SYSTEM, "out of memory creating a sampler for a vocabulary of %d tokens", vocab_size);
  return NULL;
}

size_t llm_sampler_bytes(const struct llm_sampler *s) { return s->bytes; }

int llm_sampler_candidates_needed(const struct llm_sampler *s) {
  if (s->modifies_logits) return 0;
  if (s->greedy) return s->options.logprobs > 1 ? s->options.logprobs : 1;
  return s->source == SOURCE_TOP_K ? s->options.top_k : 0;
}

bool llm_sampler_needs_logits(const struct llm_sampler *s) {
  return !s->greedy || s->modifies_logits || s->options.logprobs >= 0;
}

bool llm_sampler_ranked_logits_suffice(const struct llm_sampler *s) {
  return !s->greedy && !s->modifies_logits && s->source == SOURCE_TOP_K;
}


int llm_sampler_history_window(const struct llm_sampler *s) { return s->penalties ? s->options.repeat_last_n : 0; }

void llm_sampler_reset_history(struct llm_sampler *s) { s->history_len = 0; }

bool llm_sampler_accept(struct llm_sampler *s, const int32_t *tokens, int n, struct llm_error *err) {
  for (int i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= s->vocab_size)
      return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "token id %d is outside the vocabulary [0, %d)", tokens[i], s->vocab_size);
  if (!s->penalties || n <= 0) return true;
  const int window = s->options.repeat_last_n;
  if (window > 0) {
    /* Only the latest `window` tokens count: drop the older ones before the history doubles the window. */
    if (n >= window) {
      tokens += n - window;
      n = window;
      s->history_len = 0;
    } else if ((int64_t)s->history_len + n > 2 * (int64_t)window) {
      const int keep = s->history_len < window ? s->history_len : window;
      memmove(s->history, s->history + s->history_len - keep, (size_t)keep * sizeof *s->history);
      s->history_len = keep;
    }
  }
  const int64_t needed = (int64_t)s->history_len + n;
  if (needed > s->history_cap) {
    if (needed > 0x7fffffff) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the sampler's history would exceed 2^31 - 1 tokens");
    int64_t cap = s->history_cap > 0 ? 2 * (int64_t)s->history_cap : 256;
    if (cap < needed) cap = needed;
    if (cap > 0x7fffffff) cap = 0x7fffffff;
    int32_t *grown = realloc(s->history, (size_t)cap * sizeof *grown);
    if (!grown) return llm_fail(err, LLM_ERR_SYSTEM, "out of memory growing the sampler's history to %lld tokens", (long long)cap);
    s->history = grown;
    s->history_cap = (int)cap;
  }
  memcpy(s->history + s->history_len, tokens, (size_t)n * sizeof *tokens);
  s->history_len += n;
  return true;
}

/* ---- One step ---- */

/* logitBias, then llama.cpp's penalties once per distinct token of the window (logit-adjustments.ts): the
 * repeat penalty divides a positive logit and multiplies a non-positive one, then the frequency penalty is
 * subtracted per occurrence and the presence penalty once. float64 arithmetic, stored back as float32. */
static void adjust_logits(struct llm_sampler *s, float *logits) {
  const struct llm_sampler_options *o = &s->options;
  for (int i = 0; i < o->n_bias; i++) logits[o->bias_ids[i]] = (float)((double)logits[o->bias_ids[i]] + o->bias_values[i]);
  if (!s->penalties) return;
  const int32_t *history = s->history;
  const int end = s->history_len;
  const int start = o->repeat_last_n < 0 || end < o->repeat_last_n ? 0 : end - o->repeat_last_n;
  for (int i = start; i < end; i++) s->counts[history[i]]++;
  for (int i = start; i < end; i++) {
    const int32_t id = history[i];
    const int count = s->counts[id];
    if (count == 0) continue; /* penalised at its first occurrence */
    s->counts[id] = 0;
    const double logit = logits[id];
    const double repeated = logit <= 0 ? logit * o->repeat_penalty : logit / o->repeat_penalty;
    logits[id] = (float)(repeated - count * o->frequency_penalty - o->presence_penalty);
  }
}

static bool no_token_left(struct llm_error *err) {
  return llm_fail(err, LLM_ERR_INVALID_ARGUMENT,
                  "no token can be sampled: every logit is -Infinity or NaN (check logitBias and logitsProcessor)");
}

static bool logits_missing(struct llm_error *err) {
  return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "Sampler.sample: this configuration needs the logits (see needsLogits)");
}

/* The first n entries of a ranked list as logprobs, given ln Σ exp(logit); tokens of probability 0 are not
 * alternatives, and in a ranked list they can only come last (topLogprobs). */
static void report_top(const struct candidates *list, int n, double log_normalizer, struct llm_sampled *out) {
  const int count = n < list->size ? n : list->size;
  for (int i = 0; i < count; i++) {
    const double logprob = list->logits[i] - log_normalizer;
    if (logprob == -INFINITY) break;
    out->top_ids[out->n_top] = list->ids[i];
    out->top_logprobs[out->n_top++] = logprob;
  }
}

static bool pick_greedy(struct llm_sampler *s, const float *logits, const int32_t *ranked, int n_ranked,
                        struct llm_sampled *out, struct llm_error *err) {
  if (n_ranked > 0) {
    out->id = ranked[0];
  } else {
    if (!logits) return logits_missing(err);
    out->id = llm_argmax(logits, s->vocab_size);
    if (!(logits[out->id] > -INFINITY)) return no_token_left(err); /* llm_argmax's pick when nothing is possible */
  }
  const int n = s->options.logprobs;
  if (n < 0) return true;
  if (!logits) return logits_missing(err);
  whole_vocabulary(&s->list, logits, s->vocab_size);
  const double log_normalizer = log_sum_exp(s->list.logits, s->vocab_size);
  out->logprob = s->list.logits[out->id] - log_normalizer;
  if (n == 0) return true;
  if (n_ranked > 0) fill_ranked(&s->alternatives, logits, ranked, NULL, n < n_ranked ? n : n_ranked);
  else select_best(s->list.logits, s->vocab_size, n, &s->alternatives);
  report_top(&s->alternatives, n, log_normalizer, out);
  return true;
}

static void fill_candidates(struct llm_sampler *s, const float *logits, const int32_t *ranked, const float *ranked_logits,
                            int n_ranked) {
  struct candidates *list = &s->list;
  const int k = s->options.top_k;
  switch (s->source) {
    case SOURCE_TOP_K:
      if (n_ranked > 0) {
        fill_ranked(list, logits, ranked, ranked_logits, k < n_ranked ? k : n_ranked);
        return;
      }
      llm_top_k(logits, s->vocab_size, k, list->ids);
      for (int i = 0; i < k; i++) {
        const float v = logits[list->ids[i]];
        list->logits[i] = v == v ? v : -INFINITY;
      }
      list->size = k;
      list->ranked = true;
      drop_impossible(list);
      return;
    case SOURCE_RANKED_VOCABULARY:
      rank_vocabulary(list, logits, s->vocab_size, &s->sorter);
      return;
    case SOURCE_VOCABULARY:
      whole_vocabulary(list, logits, s->vocab_size);
      return;
  }
}

static bool draw(struct llm_sampler *s, const float *logits, const int32_t *ranked, const float *ranked_logits, int n_ranked,
                 struct llm_sampled *out, struct llm_error *err) {
  const bool ranked_suffice = ranked_logits && n_ranked > 0 && llm_sampler_ranked_logits_suffice(s);
  if (!logits && !ranked_suffice) return logits_missing(err);
  struct candidates *list = &s->list;
  fill_candidates(s, logits, ranked, ranked_logits, n_ranked);
  if (list->size == 0) return no_token_left(err);
  const struct llm_sampler_options *o = &s->options;
  for (int i = 0; i < s->n_plan; i++) {
    switch (s->plan[i]) {
      case LLM_STAGE_TOP_K: list->size = list->size < o->top_k ? list->size : o->top_k; break;
      case LLM_STAGE_TYPICAL_P: keep_typical(list, o->typical_p, &s->sorter); break;
      case LLM_STAGE_TOP_P: keep_top_p(list, o->top_p, s->weights); break;
      case LLM_STAGE_MIN_P: keep_min_p(list, o->min_p); break;
      case LLM_STAGE_TEMPERATURE: apply_temperature(list, o->temperature); break;
      default: break;
    }
  }
  double log_normalizer;
  const int position = draw_position(list, llm_rng_uniform(&s->rng), s->weights, &log_normalizer);
  out->id = list->ids[position];
  const int n = o->logprobs;
  if (n < 0) return true;
  out->logprob = list->logits[position] - log_normalizer;
  if (n == 0) return true;
  /* An id-order list holds the whole vocabulary, so a position found by selection is the token id. */
  if (list->ranked) {
    report_top(list, n, log_normalizer, out);
  } else {
    select_best(list->logits, list->size, n, &s->alternatives);
    report_top(&s->alternatives, n, log_normalizer, out);
  }
  return true;
}

bool llm_sampler_sample(struct llm_sampler *s, float *logits, const int32_t *ranked, const float *ranked_logits, int n_ranked,
                        struct llm_sampled *out, struct llm_error *err) {
  out->id = -1;
  out->logprob = NAN;
  out->n_top = 0;
  if (s->modifies_logits) {
    if (!logits) return logits_missing(err);
    adjust_logits(s, logits);
    n_ranked = 0; /* ranked on the logits before the changes */
  }
  return s->greedy ? pick_greedy(s, logits, ranked, n_ranked, out, err) : draw(s, logits, ranked, ranked_logits, n_ranked, out, err);
}
