/* The decode loop (decode_loop.h). The caller's thread adds, cancels and resumes requests under the loop's mutex;
 * the loop thread owns each request's cache, sampler, tokens and position while it is in the list, and is the
 * only one to remove it. */
#include "decode_loop.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"

struct request {
  uint64_t id;
  struct llm_kv_cache *cache;
  struct llm_sampler *sampler;
  struct llm_grammar *grammar;
  int32_t *tokens; /* still to evaluate: the prompt's remainder, or the one decode row */
  int n_tokens;
  int first; /* tokens[first..n_tokens) are left; a slice advances it */
  int pos;   /* positions the cache holds */
  int max_tokens;
  int generated;
  int32_t *end_ids;
  int n_end_ids;
  bool logprobs;
  bool pause_each_step;
  /* What the pass asks for this request's last position, and where its results land. */
  int top_k;
  bool wants_logits;
  float *logits;
  int32_t *top_ids;
  float *top_logits; /* when the ranked ids' logits are all the sampler reads: the vocabulary's row stays put */
  /* Under the mutex: set by the caller's thread. */
  bool cancelled;
  bool resumed;
  int32_t resume_token;
  /* Under the mutex: set by the loop thread. */
  bool paused;
  /* Loop thread only: the request ended in this iteration (its DONE or ERROR is queued). */
  bool finished;
};

/* One request's share of a pass. */
struct item {
  struct request *request;
  int take;      /* tokens of this pass */
  bool last;     /* the request's tokens end here: it samples after the pass */
  bool failed;
  struct llm_error error;
};

struct llm_decode_loop {
  struct llm_model *model;
  llm_decode_deliver deliver;
  void *user;
  int vocab_size;
  int pass_tokens;

  pthread_mutex_t mutex;
  pthread_cond_t wake;
  pthread_t thread;
  bool thread_started;
  bool stopping;
  uint64_t next_id;
  /* Arrival order, as the pass composition sees it: requests that ran whole in a pass move to the back. */
  struct request **requests;
  int n_requests;
  int cap_requests;
  struct llm_decode_loop_stats stats;

  /* Loop thread only, sized by reserve() for every request of the iteration. A request queues at most
   * EVENTS_PER_REQUEST events per iteration: a resumed token and its DONE, then the pass's token and its DONE. */
  struct llm_decode_event *events;
  int n_events;
  struct item *items;
  struct llm_batch_sequence *sequences;
  struct request **whole; /* compose_pass: the requests a pass takes whole */
  int capacity;           /* requests the arrays above hold */
};

#define EVENTS_PER_REQUEST 4

/* Grows the loop thread's arrays for n requests; false when memory runs out (they keep their old size). */
static bool reserve(struct llm_decode_loop *loop, int n) {
  if (n <= loop->capacity) return true;
  const int cap = n > 2 * loop->capacity ? n : 2 * loop->capacity;
  void *events = realloc(loop->events, (size_t)cap * EVENTS_PER_REQUEST * sizeof *loop->events);
  if (events) loop->events = events;
  void *items = realloc(loop->items, (size_t)cap * sizeof *loop->items);
  if (items) loop->items = items;
  void *sequences = realloc(loop->sequences, (size_t)cap * sizeof *loop->sequences);
  if (sequences) loop->sequences = sequences;
  void *whole = realloc(loop->whole, (size_t)cap * sizeof *loop->whole);
  if (whole) loop->whole = whole;
  if (!events || !items || !sequences || !whole) return false;
  loop->capacity = cap;
  return true;
}

static void free_request(struct request *r) {
  free(r->tokens);
  free(r->end_ids);
  free(r->logits);
  free(r->top_ids);
  free(r->top_logits);
  free(r);
}

/* Queues an event of r (loop thread; reserve() made room). */
static struct llm_decode_event *push_event(struct llm_decode_loop *loop, struct request *r,
                                           enum llm_decode_event_kind kind) {
  struct llm_decode_event *e = &loop->events[loop->n_events++];
  memset(e, 0, sizeof *e);
  e->id = r->id;
  e->kind = kind;
  e->evaluated = r->pos;
  e->pass = loop->stats.passes; /* the loop thread is its only writer */
  return e;
}

static void finish(struct llm_decode_loop *loop, struct request *r, enum llm_finish_reason reason,
                   const struct llm_sampled *sampled) {
  struct llm_decode_event *e = push_event(loop, r, LLM_DECODE_DONE);
  e->finish = reason;
  if (sampled) e->sampled = *sampled;
  r->finished = true;
}

static void fail(struct llm_decode_loop *loop, struct request *r, const struct llm_error *error) {
  push_event(loop, r, LLM_DECODE_ERROR)->error = *error;
  r->finished = true;
}

/* The request's next token, sampled or given: an end id stops it; otherwise it joins the history and is reported,
 * and becomes the next decode row unless max_tokens or the context ends the request. `given`: it came from resume
 * (the caller has its own report of it). */
static void take_token(struct llm_decode_loop *loop, struct request *r, const struct llm_sampled *sampled, bool given) {
  struct llm_error err = {0};
  for (int i = 0; i < r->n_end_ids; i++) {
    if (r->end_ids[i] == sampled->id) {
      /* The mask allows an end id only then; a resumed one is checked here. */
      if (r->grammar && !llm_grammar_complete(r->grammar)) {
        llm_fail_argument(&err, "grammar", "token %d ends the generation before the grammar is complete", sampled->id);
        fail(loop, r, &err);
      } else {
        finish(loop, r, LLM_FINISH_STOP, sampled);
      }
      return;
    }
  }
  if ((r->grammar && !llm_grammar_accept(r->grammar, sampled->id, &err)) || !llm_sampler_accept(r->sampler, &sampled->id, 1, &err)) {
    fail(loop, r, &err);
    return;
  }
  r->generated++;
  struct llm_decode_event *e = push_event(loop, r, LLM_DECODE_TOKEN);
  e->sampled = *sampled;
  e->has_logprobs = r->logprobs && !given;
  if (r->grammar && llm_grammar_finished(r->grammar)) {
    finish(loop, r, LLM_FINISH_GRAMMAR, NULL);
  } else if (r->generated >= r->max_tokens) {
    finish(loop, r, LLM_FINISH_LENGTH, NULL);
  } else if (r->pos >= r->cache->context_size) {
    finish(loop, r, LLM_FINISH_CONTEXT_FULL, NULL);
  } else {
    r->tokens[0] = sampled->id;
    r->n_tokens = 1;
    r->first = 0;
  }
}

/* Whether r has tokens for the next pass (not paused for a resume, not done). */
static bool runnable(const struct request *r) { return !r->paused && !r->finished && r->first < r->n_tokens; }

/* Under the mutex: whether the loop thread has anything to do. */
static bool has_work(const struct llm_decode_loop *loop) {
  if (loop->stopping) return true;
  for (int i = 0; i < loop->n_requests; i++) {
    const struct request *r = loop->requests[i];
    if (r->cancelled || r->resumed || runnable(r)) return true;
  }
  return false;
}

/* Under the mutex: cancellations and resumes take effect (their events queued). */
static void apply_requests(struct llm_decode_loop *loop) {
  for (int i = 0; i < loop->n_requests; i++) {
    struct request *r = loop->requests[i];
    if (r->cancelled || loop->stopping) {
      finish(loop, r, LLM_FINISH_ABORT, NULL);
    } else if (r->resumed) {
      r->resumed = false;
      r->paused = false;
      const struct llm_sampled given = {.id = r->resume_token};
      take_token(loop, r, &given, true);
    }
  }
}

/* Under the mutex: removes the finished requests. */
static void remove_finished(struct llm_decode_loop *loop) {
  int kept = 0;
  for (int i = 0; i < loop->n_requests; i++) {
    struct request *r = loop->requests[i];
    if (r->finished) free_request(r);
    else loop->requests[kept++] = r;
  }
  loop->n_requests = kept;
}

/* Under the mutex: the next pass (see decode_loop.h) into loop->items; returns their number. The requests taken
 * whole move to the back of the order, behind those left waiting (as a queue they join again for their next
 * token), so a prompt being sliced becomes the oldest after one pass. */
static int compose_pass(struct llm_decode_loop *loop) {
  struct request **order = loop->requests;
  struct request *sliced = NULL;
  int n_items = 0, n_whole = 0, waiting = 0, candidates = 0;
  int room = loop->pass_tokens, reserved = 0;
  for (int i = 0; i < loop->n_requests; i++) {
    struct request *r = order[i];
    if (!runnable(r) || room <= 0) {
      order[waiting++] = r;
      continue;
    }
    const int n = r->n_tokens - r->first;
    if (n <= room - reserved) {
      loop->items[n_items++] = (struct item){.request = r, .take = n, .last = true};
      loop->whole[n_whole++] = r;
      room -= n;
    } else {
      order[waiting++] = r;
      if (!sliced) {
        sliced = r;
        if (candidates == 0) reserved = LLM_DECODE_MIN_SLICE_TOKENS;
      }
    }
    candidates++;
  }
  memcpy(order + waiting, loop->whole, (size_t)n_whole * sizeof *order);
  if (sliced && room > 0) loop->items[n_items++] = (struct item){.request = sliced, .take = room, .last = false};
  return n_items;
}

/* One forward pass of items; false with err set when it fails. */
static bool forward_items(struct llm_decode_loop *loop, struct item *items, int n, struct llm_error *err) {
  for (int i = 0; i < n; i++) {
    const struct request *r = items[i].request;
    const bool ranks = items[i].last && r->top_k > 0;
    loop->sequences[i] = (struct llm_batch_sequence){
        .cache = r->cache,
        .tokens = r->tokens + r->first,
        .n_tokens = items[i].take,
        .pos = r->pos,
        .logits = r->logits,
        .logits_mode = items[i].last && r->wants_logits ? LLM_LOGITS_LAST : LLM_LOGITS_NONE,
        .top_k = ranks ? r->top_k : 0,
        .top_ids = ranks ? r->top_ids : NULL,
        .top_logits = ranks ? r->top_logits : NULL,
    };
  }
  pthread_mutex_lock(&loop->mutex);
  loop->stats.passes++;
  pthread_mutex_unlock(&loop->mutex);
  return llm_forward_batch(loop->model, loop->sequences, n, err);
}

/* Runs the pass; when it fails, each item alone, so that only a faulty request sees the error. */
static void run_pass(struct llm_decode_loop *loop, struct item *items, int n) {
  struct llm_error err = {0};
  if (forward_items(loop, items, n, &err)) return;
  if (n == 1) {
    items[0].failed = true;
    items[0].error = err;
    return;
  }
  for (int i = 0; i < n; i++) items[i].failed = !forward_items(loop, &items[i], 1, &items[i].error);
}

/* After the pass (loop thread, without the mutex): positions advance; a request whose tokens are done samples
 * its next one, or (pause_each_step) reports its logits. Returns whether any request paused. */
static bool after_pass(struct llm_decode_loop *loop, struct item *items, int n) {
  bool paused = false;
  for (int i = 0; i < n; i++) {
    struct item *item = &items[i];
    struct request *r = item->request;
    if (item->failed) {
      fail(loop, r, &item->error);
      continue;
    }
    r->pos += item->take;
    r->first += item->take;
    if (!item->last) continue;
    struct llm_error err = {0};
    if (r->grammar && !llm_grammar_mask(r->grammar, r->logits, loop->vocab_size, r->end_ids, r->n_end_ids, &err)) {
      fail(loop, r, &err);
      continue;
    }
    if (r->pause_each_step) {
      push_event(loop, r, LLM_DECODE_LOGITS)->logits = r->logits;
      paused = true;
      continue;
    }
    struct llm_sampled sampled;
    if (llm_sampler_sample(r->sampler, r->wants_logits ? r->logits : NULL, r->top_k > 0 ? r->top_ids : NULL,
                           r->top_logits, r->top_k, &sampled, &err))
      take_token(loop, r, &sampled, false);
    else
      fail(loop, r, &err);
  }
  return paused;
}

static void deliver(struct llm_decode_loop *loop) {
  if (loop->n_events == 0) return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  for (int i = 0; i < loop->n_events; i++) loop->events[i].seconds = (double)now.tv_sec + now.tv_nsec * 1e-9;
  loop->deliver(loop->user, loop->events, loop->n_events);
  loop->n_events = 0;
  pthread_mutex_lock(&loop->mutex);
  loop->stats.deliveries++;
  pthread_mutex_unlock(&loop->mutex);
}

static void *loop_main(void *arg) {
  struct llm_decode_loop *loop = arg;
  pthread_mutex_lock(&loop->mutex);
  for (;;) {
    while (!has_work(loop)) pthread_cond_wait(&loop->wake, &loop->mutex);
    if (!reserve(loop, loop->n_requests)) {
      /* No memory for this iteration's bookkeeping: try again shortly rather than lose an event. */
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_nsec += 10 * 1000 * 1000;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&loop->wake, &loop->mutex, &until);
      continue;
    }
    apply_requests(loop);
    const bool stop = loop->stopping;
    const int n_items = compose_pass(loop);
    pthread_mutex_unlock(&loop->mutex);

    bool paused = false;
    if (n_items > 0) {
      run_pass(loop, loop->items, n_items);
      paused = after_pass(loop, loop->items, n_items);
    }

    pthread_mutex_lock(&loop->mutex);
    if (paused)
      for (int i = 0; i < n_items; i++)
        if (loop->items[i].last && loop->items[i].request->pause_each_step && !loop->items[i].request->finished)
          loop->items[i].request->paused = true;
    /* A paused request's logits stay valid through deliver: it is neither freed nor run until resumed. Finished
     * requests are removed first, so cancel() no longer finds them once their DONE is on its way. */
    remove_finished(loop);
    pthread_mutex_unlock(&loop->mutex);
    deliver(loop);
    pthread_mutex_lock(&loop->mutex);
    if (stop && loop->n_requests == 0) break;
  }
  pthread_mutex_unlock(&loop->mutex);
  return NULL;
}

struct llm_decode_loop *llm_decode_loop_create(struct llm_model *model, llm_decode_deliver deliver, void *user,
                                               struct llm_error *err) {
  struct llm_decode_loop *loop = calloc(1, sizeof *loop);
  if (!loop) {
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory for the decode loop");
    return NULL;
  }
  loop->model = model;
  loop->deliver = deliver;
  loop->user = user;
  loop->vocab_size = model->config.vocab_size;
  loop->pass_tokens = llm_model_pass_tokens(model);
  loop->next_id = 1;
  pthread_mutex_init(&loop->mutex, NULL);
  pthread_cond_init(&loop->wake, NULL);
  return loop;
}

void llm_decode_loop_destroy(struct llm_decode_loop *loop) {
  if (!loop) return;
  pthread_mutex_lock(&loop->mutex);
  loop->stopping = true;
  pthread_cond_signal(&loop->wake);
  pthread_mutex_unlock(&loop->mutex);
  if (loop->thread_started) pthread_join(loop->thread, NULL);
  for (int i = 0; i < loop->n_requests; i++) free_request(loop->requests[i]);
  free(loop->requests);
  free(loop->events);
  free(loop->items);
  free(loop->sequences);
  free(loop->whole);
  pthread_cond_destroy(&loop->wake);
  pthread_mutex_destroy(&loop->mutex);
  free(loop);
}

/* Copies n ids (n may be 0) into a new array of at least `min` entries. */
static int32_t *copy_ids(const int32_t *ids, int n, int min) {
  int32_t *copy = malloc((size_t)(n > min ? n : min) * sizeof *copy);
  if (copy && n > 0) memcpy(copy, ids, (size_t)n * sizeof *copy);
  return copy;
}

static bool check_request(const struct llm_decode_loop *loop, const struct llm_decode_request *q,
                          struct llm_error *err) {
  if (!q->cache || !q->sampler) return llm_fail_argument(err, "request", "a request needs a cache and a sampler");
  if (q->n_tokens < 1 || !q->tokens) return llm_fail_argument(err, "tokens", "a request needs at least one token");
  if (q->max_tokens < 1)
    return llm_fail_argument(err, "maxTokens", "maxTokens must be at least 1 (got %d)", q->max_tokens);
  if (q->n_end_ids < 0 || (q->n_end_ids > 0 && !q->end_ids))
    return llm_fail_argument(err, "endIds", "the end ids are missing");
  if (q->pos < 0 || (int64_t)q->pos + q->n_tokens > q->cache->context_size)
    return llm_fail_overflow(err, (int64_t)q->pos + q->n_tokens, q->cache->context_size,
                             "%d tokens at pos %d need %lld positions, more than the context size %d", q->n_tokens,
                             q->pos, (long long)q->pos + q->n_tokens, q->cache->context_size);
  for (int i = 0; i < q->n_tokens; i++)
    if (q->tokens[i] < 0 || q->tokens[i] >= loop->vocab_size)
      return llm_fail_argument(err, "tokens", "token id %d at index %d is outside the vocabulary (size %d)",
                               q->tokens[i], i, loop->vocab_size);
  return true;
}

uint64_t llm_decode_loop_submit(struct llm_decode_loop *loop, const struct llm_decode_request *q,
                                struct llm_error *err) {
  if (!check_request(loop, q, err)) return 0;
  struct request *r = calloc(1, sizeof *r);
  if (!r) {
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a decode request");
    return 0;
  }
  r->cache = q->cache;
  r->sampler = q->sampler;
  r->grammar = q->grammar;
  r->n_tokens = q->n_tokens;
  r->pos = q->pos;
  r->max_tokens = q->max_tokens;
  r->n_end_ids = q->n_end_ids;
  r->logprobs = q->logprobs;
  r->pause_each_step = q->pause_each_step;
  /* A grammar masks the logits before the sampler sees them: a ranking of the unmasked ones is no use. */
  const int candidates = q->pause_each_step || q->grammar ? 0 : llm_sampler_candidates_needed(q->sampler);
  r->top_k = candidates < loop->vocab_size ? candidates : loop->vocab_size;
  const bool ranked_suffice = r->top_k > 0 && llm_sampler_ranked_logits_suffice(q->sampler);
  r->wants_logits = q->pause_each_step || q->grammar || (llm_sampler_needs_logits(q->sampler) && !ranked_suffice);
  r->tokens = copy_ids(q->tokens, q->n_tokens, 1);
  r->end_ids = copy_ids(q->end_ids, q->n_end_ids, 1);
  r->logits = r->wants_logits ? malloc((size_t)loop->vocab_size * sizeof *r->logits) : NULL;
  r->top_ids = r->top_k > 0 ? malloc((size_t)r->top_k * sizeof *r->top_ids) : NULL;
  r->top_logits = ranked_suffice ? malloc((size_t)r->top_k * sizeof *r->top_logits) : NULL;
  if (!r->tokens || !r->end_ids || (r->wants_logits && !r->logits) || (r->top_k > 0 && !r->top_ids) ||
      (ranked_suffice && !r->top_logits)) {
    free_request(r);
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a decode request of %d tokens", q->n_tokens);
    return 0;
  }

  pthread_mutex_lock(&loop->mutex);
  bool ok = !loop->stopping;
  if (!ok) llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the decode loop is closed");
  if (ok && loop->n_requests == loop->cap_requests) {
    const int cap = loop->cap_requests ? 2 * loop->cap_requests : 16;
    struct request **grown = realloc(loop->requests, (size_t)cap * sizeof *grown);
    if (grown) {
      loop->requests = grown;
      loop->cap_requests = cap;
    } else {
      ok = llm_fail(err, LLM_ERR_SYSTEM, "out of memory for the decode loop's requests");
    }
  }
  if (ok && !loop->thread_started) {
    if (pthread_create(&loop->thread, NULL, loop_main, loop) == 0) loop->thread_started = true;
    else ok = llm_fail(err, LLM_ERR_SYSTEM, "could not start the decode loop's thread");
  }
  uint64_t id = 0;
  if (ok) {
    id = r->id = loop->next_id++;
    loop->requests[loop->n_requests++] = r;
    pthread_cond_signal(&loop->wake);
  }
  pthread_mutex_unlock(&loop->mutex);
  /* From here r belongs to the loop thread, which may already have finished and freed it. */
  if (!ok) free_request(r);
  return id;
}

/* Under the mutex: the active request with this id, or NULL. */
static struct request *find(struct llm_decode_loop *loop, uint64_t id) {
  for (int i = 0; i < loop->n_requests; i++)
    if (loop->requests[i]->id == id && !loop->requests[i]->cancelled) return loop->requests[i];
  return NULL;
}

bool llm_decode_loop_cancel(struct llm_decode_loop *loop, uint64_t id) {
  pthread_mutex_lock(&loop->mutex);
  struct request *r = find(loop, id);
  if (r) {
    r->cancelled = true;
    pthread_cond_signal(&loop->wake);
  }
  pthread_mutex_unlock(&loop->mutex);
  return r != NULL;
}

bool llm_decode_loop_resume(struct llm_decode_loop *loop, uint64_t id, int32_t token) {
  if (token < 0 || token >= loop->vocab_size) return false;
  pthread_mutex_lock(&loop->mutex);
  struct request *r = find(loop, id);
  const bool waiting = r && r->paused && !r->resumed;
  if (waiting) {
    r->resumed = true;
    r->resume_token = token;
    pthread_cond_signal(&loop->wake);
  }
  pthread_mutex_unlock(&loop->mutex);
  return waiting;
}

void llm_decode_loop_read_stats(struct llm_decode_loop *loop, struct llm_decode_loop_stats *out) {
  pthread_mutex_lock(&loop->mutex);
  *out = loop->stats;
  pthread_mutex_unlock(&loop->mutex);
}
