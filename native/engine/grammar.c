/* The grammar matcher (grammar.h). */
#include "grammar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Growable int32 arrays ---- */

struct ints {
  int32_t *data;
  int size, cap;
};

static bool ints_reserve(struct ints *v, int64_t extra) {
  const int64_t need = (int64_t)v->size + extra;
  if (need <= v->cap) return true;
  if (need > 0x7fffffff) return false;
  int64_t cap = v->cap > 0 ? 2 * (int64_t)v->cap : 64;
  if (cap < need) cap = need;
  if (cap > 0x7fffffff) cap = 0x7fffffff;
  int32_t *grown = realloc(v->data, (size_t)cap * sizeof *grown);
  if (!grown) return false;
  v->data = grown;
  v->cap = (int)cap;
  return true;
}

static bool ints_push(struct ints *v, int32_t x) {
  if (!ints_reserve(v, 1)) return false;
  v->data[v->size++] = x;
  return true;
}

/* A stable merge sort of ids by a comparison with context; tmp holds n ids. */
typedef int (*id_compare)(const void *context, int32_t a, int32_t b);

static void sort_ids(int32_t *ids, int32_t *tmp, int n, id_compare compare, const void *context) {
  for (int width = 1; width < n; width *= 2) {
    for (int lo = 0; lo < n; lo += 2 * width) {
      const int mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
      int i = lo, j = mid, k = lo;
      while (i < mid && j < hi) tmp[k++] = compare(context, ids[j], ids[i]) < 0 ? ids[j++] : ids[i++];
      while (i < mid) tmp[k++] = ids[i++];
      while (j < hi) tmp[k++] = ids[j++];
    }
    memcpy(ids, tmp, (size_t)n * sizeof *ids);
  }
}

/* ---- The token trie ---- */

struct llm_token_trie {
  int n_tokens;
  uint8_t *bytes;
  uint32_t *offsets; /* n_tokens + 1 */
  int n_nodes;       /* node 0 is the root */
  int32_t *first_edge; /* n_nodes + 1: node i's edges are [first_edge[i], first_edge[i + 1]) */
  uint8_t *edge_byte;
  int32_t *edge_child;
  int32_t *node_token; /* the first token whose bytes end at the node, or -1 */
  int32_t *token_next; /* the next token of the same bytes, or -1 */
};

void llm_token_trie_free(struct llm_token_trie *t) {
  if (!t) return;
  free(t->bytes);
  free(t->offsets);
  free(t->first_edge);
  free(t->edge_byte);
  free(t->edge_child);
  free(t->node_token);
  free(t->token_next);
  free(t);
}

size_t llm_token_trie_bytes(const struct llm_token_trie *t) {
  return sizeof *t + t->offsets[t->n_tokens] + (size_t)(t->n_tokens + 1) * sizeof(uint32_t) +
         (size_t)t->n_nodes * (2 * sizeof(int32_t) + 1 + sizeof(int32_t)) + (size_t)t->n_tokens * sizeof(int32_t);
}

static int compare_token_bytes(const void *context, int32_t x, int32_t y) {
  const struct llm_token_trie *t = context;
  const uint32_t lx = t->offsets[x + 1] - t->offsets[x], ly = t->offsets[y + 1] - t->offsets[y];
  const int c = memcmp(t->bytes + t->offsets[x], t->bytes + t->offsets[y], lx < ly ? lx : ly);
  if (c != 0) return c;
  if (lx != ly) return lx < ly ? -1 : 1;
  return (x > y) - (x < y);
}

/* Builds the nodes from the tokens sorted by their bytes: each token shares the path of its common prefix with the
 * one before, so every node's children are created in byte order. */
static bool build_trie(struct llm_token_trie *t) {
  const int n = t->n_tokens;
  const size_t max_nodes = 1 + (size_t)t->offsets[n];
  int32_t *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
  int32_t *parent = malloc(max_nodes * sizeof *parent);
  uint8_t *byte = malloc(max_nodes);
  int32_t *path = malloc((max_nodes > (size_t)n ? max_nodes : (size_t)n) * sizeof *path); /* also the sort's scratch */
  t->node_token = malloc(max_nodes * sizeof *t->node_token);
  t->token_next = malloc((size_t)(n > 0 ? n : 1) * sizeof *t->token_next);
  bool ok = order && parent && byte && path && t->node_token && t->token_next;
  if (ok) {
    for (int i = 0; i < n; i++) {
      order[i] = i;
      t->token_next[i] = -1;
    }
    sort_ids(order, path, n, compare_token_bytes, t);
    int n_nodes = 1, depth = 0;
    path[0] = 0;
    parent[0] = -1;
    t->node_token[0] = -1;
    int32_t previous = -1;
    for (int k = 0; k < n; k++) {
      const int32_t id = order[k];
      const uint8_t *b = t->bytes + t->offsets[id];
      const int len = (int)(t->offsets[id + 1] - t->offsets[id]);
      if (len == 0) continue;
      int common = 0;
      if (previous >= 0) {
        const uint8_t *p = t->bytes + t->offsets[previous];
        const int plen = (int)(t->offsets[previous + 1] - t->offsets[previous]);
        while (common < len && common < plen && b[common] == p[common]) common++;
      }
      depth = common;
      for (int i = common; i < len; i++) {
        const int node = n_nodes++;
        parent[node] = path[depth];
        byte[node] = b[i];
        t->node_token[node] = -1;
        path[++depth] = node;
      }
      /* Equal bytes sort by id: a later duplicate goes to the back of the node's list. */
      int32_t *link = &t->node_token[path[len]];
      while (*link >= 0) link = &t->token_next[*link];
      *link = id;
      previous = id;
    }
    t->n_nodes = n_nodes;
    t->first_edge = calloc((size_t)n_nodes + 1, sizeof *t->first_edge);
    t->edge_byte = malloc((size_t)n_nodes);
    t->edge_child = malloc((size_t)n_nodes * sizeof *t->edge_child);
    ok = t->first_edge && t->edge_byte && t->edge_child;
    if (ok) {
      /* Counting sort of the nodes by parent (a node's edge is in its parent's list), keeping creation order. */
      for (int node = 1; node < n_nodes; node++) t->first_edge[parent[node] + 1]++;
      for (int i = 0; i < n_nodes; i++) t->first_edge[i + 1] += t->first_edge[i];
      int32_t *fill = path; /* reused as each node's next edge slot */
      for (int i = 0; i < n_nodes; i++) fill[i] = t->first_edge[i];
      for (int node = 1; node < n_nodes; node++) {
        const int at = fill[parent[node]]++;
        t->edge_byte[at] = byte[node];
        t->edge_child[at] = node;
      }
    }
  }
  free(order);
  free(parent);
  free(byte);
  free(path);
  return ok;
}

struct llm_token_trie *llm_token_trie_create(const uint8_t *bytes, size_t n_bytes, const uint32_t *offsets, int n_tokens,
                                             struct llm_error *err) {
  if (n_tokens < 1 || !offsets || (n_bytes > 0 && !bytes))
    return llm_fail_argument(err, "vocabulary", "a token trie needs at least one token and its byte offsets"), NULL;
  if (offsets[0] != 0 || offsets[n_tokens] > n_bytes || n_bytes > 0x7fffffffu)
    return llm_fail_argument(err, "vocabulary", "token byte offsets out of range"), NULL;
  for (int i = 0; i < n_tokens; i++)
    if (offsets[i + 1] < offsets[i])
      return llm_fail_argument(err, "vocabulary", "token byte offsets decrease at token %d", i), NULL;
  struct llm_token_trie *t = calloc(1, sizeof *t);
  if (!t) goto out_of_memory;
  t->n_tokens = n_tokens;
  t->bytes = malloc(offsets[n_tokens] > 0 ? offsets[n_tokens] : 1);
  t->offsets = malloc((size_t)(n_tokens + 1) * sizeof *t->offsets);
  if (!t->bytes || !t->offsets) goto out_of_memory;
  if (offsets[n_tokens] > 0) memcpy(t->bytes, bytes, offsets[n_tokens]);
  memcpy(t->offsets, offsets, (size_t)(n_tokens + 1) * sizeof *t->offsets);
  if (!build_trie(t)) goto out_of_memory;
  return t;
out_of_memory:
  llm_token_trie_free(t);
  llm_fail(err, LLM_ERR_SYSTEM, "out of memory building the token trie of %d tokens", n_tokens);
  return NULL;
}

/* ---- The matcher ---- */

/* A state of the automaton: its key in the key pool is [partial value, PARTIAL(bytes left, length), n stacks, then each stack
 * as its length and positions bottom to top], stacks in a canonical order. State 0 is dead (no stack left). */
struct state {
  int32_t key_at, key_len;
  int32_t trans_at; /* 256 successors in the transition pool (-1: not computed), or -1 */
  int32_t mask_at;  /* the allowed-token bitset in the mask pool, or -1 */
  bool complete;    /* a stack is empty and no code point is half read */
  bool finished;    /* the empty stack is the only one */
};

/* The automaton's memory before it is cleared and rebuilt from the current state (long generations, many states). */
#define MAX_STATES 16384
#define MAX_MASKS 256
#define MAX_KEY_INTS (1 << 22) /* 16 MB of state keys (deeply nested text has long ones) */
/* Rules entered in a row without matching a character (only left recursion, which the compiler rejects, or an
 * absurd nesting reaches it), and stacks in one state: beyond them the grammar is refused rather than hang. */
#define MAX_EXPANSION_DEPTH 512
#define MAX_STACKS 4096

struct frame {
  int32_t pos;    /* where to continue: a CHARS element on top, a return position below */
  int32_t parent; /* the frame below, or -1 */
};

struct llm_grammar {
  const struct llm_token_trie *trie;
  int32_t *table;
  int n_table;
  int n_rules;
  int32_t *rule_alts; /* alternative start positions of every rule, rule r's at [alt_first[r], alt_first[r + 1]) */
  int32_t *alt_first;

  struct state *states;
  int n_states, cap_states;
  struct ints keys;
  struct ints transitions;
  uint64_t *masks;
  int n_masks;
  int mask_words;
  int32_t *buckets; /* open addressing over state ids (0: empty) */
  int n_buckets;
  int current;

  /* Scratch of one advance. */
  struct frame *frames;
  int n_frames, cap_frames;
  struct ints emitted;   /* stacks as [len, positions...] */
  int n_emitted;
  int32_t *stack_starts; /* offsets into emitted, sorted (and as many again of sort scratch) */
  int cap_stack_starts;
  struct ints key;
  struct ints walk; /* the trie walk's (node, state) pairs */
  float *end_logits; /* llm_grammar_mask: the end ids' logits, put back when the grammar is complete */
  int cap_end_logits;
  bool failed;      /* a limit or memory ran out during the current advance */
  struct llm_error failure;
};

void llm_grammar_free(struct llm_grammar *g) {
  if (!g) return;
  free(g->table);
  free(g->rule_alts);
  free(g->alt_first);
  free(g->states);
  free(g->keys.data);
  free(g->transitions.data);
  free(g->masks);
  free(g->buckets);
  free(g->frames);
  free(g->emitted.data);
  free(g->stack_starts);
  free(g->key.data);
  free(g->walk.data);
  free(g->end_logits);
  free(g);
}

static int chars_size(const int32_t *table, int pos) { return 3 + 2 * table[pos + 2]; }

/* Checks every element of the table and lists each rule's alternatives. */
static bool check_table(struct llm_grammar *g, struct llm_error *err) {
  const int32_t *t = g->table;
  const int n = g->n_table;
  if (n < 3 || t[0] < 1 || t[0] > n - 2) return llm_fail_argument(err, "grammar", "grammar table: bad rule count");
  const int n_rules = g->n_rules = t[0];
  if (t[1] < 0 || t[1] >= n_rules) return llm_fail_argument(err, "grammar", "grammar table: the root rule is out of range");
  const int elements = 2 + n_rules;
  g->alt_first = malloc((size_t)(n_rules + 1) * sizeof *g->alt_first);
  struct ints alts = {0};
  if (!g->alt_first) return llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a grammar");
  for (int r = 0; r < n_rules; r++) {
    int pos = t[2 + r];
    if (pos < elements || pos >= n) return llm_fail_argument(err, "grammar", "grammar table: rule %d starts out of range", r);
    g->alt_first[r] = alts.size;
    bool alt_start = true;
    for (;;) {
      if (pos >= n) return free(alts.data), llm_fail_argument(err, "grammar", "grammar table: rule %d runs past the end", r);
      if (alt_start) {
        if (t[pos] == LLM_GRAMMAR_RULE_END) break;
        if (!ints_push(&alts, pos)) return free(alts.data), llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a grammar");
        alt_start = false;
      }
      const int32_t kind = t[pos];
      if (kind == LLM_GRAMMAR_ALT_END) {
        alt_start = true;
        pos++;
      } else if (kind == LLM_GRAMMAR_REF) {
        if (pos + 1 >= n || t[pos + 1] < 0 || t[pos + 1] >= n_rules)
          return free(alts.data), llm_fail_argument(err, "grammar", "grammar table: rule %d refers to a rule out of range", r);
        pos += 2;
      } else if (kind == LLM_GRAMMAR_CHARS) {
        if (pos + 2 >= n || (t[pos + 1] != 0 && t[pos + 1] != 1) || t[pos + 2] < 0 || t[pos + 2] > (n - pos - 3) / 2)
          return free(alts.data), llm_fail_argument(err, "grammar", "grammar table: rule %d has a malformed character set", r);
        for (int i = 0; i < t[pos + 2]; i++) {
          const int32_t lo = t[pos + 3 + 2 * i], hi = t[pos + 4 + 2 * i];
          if (lo < 0 || lo > hi || hi > LLM_GRAMMAR_MAX_CODEPOINT)
            return free(alts.data), llm_fail_argument(err, "grammar", "grammar table: rule %d has a bad character range", r);
        }
        pos += chars_size(t, pos);
      } else {
        /* RULE_END inside an alternative (not after ALT_END), or an unknown kind. */
        return free(alts.data), llm_fail_argument(err, "grammar", "grammar table: rule %d has a malformed element", r);
      }
    }
    if (alts.size == g->alt_first[r])
      return free(alts.data), llm_fail_argument(err, "grammar", "grammar table: rule %d has no alternative", r);
  }
  g->alt_first[n_rules] = alts.size;
  g->rule_alts = alts.data ? alts.data : malloc(sizeof(int32_t));
  return g->rule_alts != NULL || llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a grammar");
}

static bool fail_now(struct llm_grammar *g, enum llm_error_kind kind, const char *message) {
  if (!g->failed) {
    g->failed = true;
    if (kind == LLM_ERR_INVALID_ARGUMENT) llm_fail_argument(&g->failure, "grammar", "%s", message);
    else llm_fail(&g->failure, kind, "%s", message);
  }
  return false;
}

static int new_frame(struct llm_grammar *g, int32_t pos, int32_t parent) {
  if (g->n_frames == g->cap_frames) {
    const int cap = g->cap_frames ? 2 * g->cap_frames : 256;
    struct frame *grown = realloc(g->frames, (size_t)cap * sizeof *grown);
    if (!grown) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), -1;
    g->frames = grown;
    g->cap_frames = cap;
  }
  g->frames[g->n_frames] = (struct frame){pos, parent};
  return g->n_frames++;
}

/* Appends the stack whose top frame is `top` (-1: the empty stack) to the emitted list, positions bottom to top. */
static bool emit_stack(struct llm_grammar *g, int top) {
  if (++g->n_emitted > MAX_STACKS) return fail_now(g, LLM_ERR_INVALID_ARGUMENT, "the grammar is too ambiguous: too many parses at once");
  int len = 0;
  for (int f = top; f >= 0; f = g->frames[f].parent) len++;
  if (!ints_reserve(&g->emitted, 1 + (int64_t)len)) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar");
  int32_t *out = g->emitted.data + g->emitted.size;
  out[0] = len;
  int i = len;
  for (int f = top; f >= 0; f = g->frames[f].parent) out[i--] = g->frames[f].pos;
  g->emitted.size += 1 + len;
  return true;
}

/* Continues at `pos` over the frames below `parent` until every way on stands at a CHARS element (or the grammar is
 * complete), emitting those stacks. A rule reference last in its alternative pushes no frame (its return would only
 * pop), so that repetition, compiled as right recursion, keeps the stacks flat. */
static bool settle(struct llm_grammar *g, int32_t pos, int parent, int depth) {
  const int32_t *t = g->table;
  /* Returns from rules loop here rather than recurse: a deeply nested text has a deep stack. */
  while (t[pos] == LLM_GRAMMAR_ALT_END) {
    if (parent < 0) return emit_stack(g, -1);
    pos = g->frames[parent].pos;
    parent = g->frames[parent].parent;
  }
  if (g->failed) return false;
  if (t[pos] == LLM_GRAMMAR_CHARS) {
    const int top = new_frame(g, pos, parent);
    return top >= 0 && emit_stack(g, top);
  }
  if (t[pos] != LLM_GRAMMAR_REF) return fail_now(g, LLM_ERR_INVALID_ARGUMENT, "grammar table: a position past a rule's end");
  if (depth >= MAX_EXPANSION_DEPTH)
    return fail_now(g, LLM_ERR_INVALID_ARGUMENT, "the grammar enters rules too deeply without matching a character (left recursion?)");
  const int32_t rule = t[pos + 1];
  const int32_t after = pos + 2;
  int below = parent;
  if (t[after] != LLM_GRAMMAR_ALT_END && (below = new_frame(g, after, parent)) < 0) return false;
  for (int a = g->alt_first[rule]; a < g->alt_first[rule + 1]; a++)
    if (!settle(g, g->rule_alts[a], below, depth + 1)) return false;
  return true;
}

static const int32_t *emitted_stack(const struct llm_grammar *g, int i) { return g->emitted.data + g->stack_starts[i]; }

/* Emitted stacks (by their offsets) in a canonical order: lexicographic on positions, shorter first on ties. */
static int compare_stacks(const void *context, int32_t a, int32_t b) {
  const int32_t *x = ((const struct llm_grammar *)context)->emitted.data + a;
  const int32_t *y = ((const struct llm_grammar *)context)->emitted.data + b;
  const int n = x[0] < y[0] ? x[0] : y[0];
  for (int i = 1; i <= n; i++)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return (x[0] > y[0]) - (x[0] < y[0]);
}

static uint64_t hash_key(const int32_t *key, int n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < n; i++) {
    h ^= (uint32_t)key[i];
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return h;
}

static bool grow_buckets(struct llm_grammar *g) {
  const int n = g->n_buckets ? 2 * g->n_buckets : 1024;
  int32_t *buckets = calloc((size_t)n, sizeof *buckets);
  if (!buckets) return false;
  for (int s = 1; s < g->n_states; s++) {
    const struct state *st = &g->states[s];
    uint64_t h = hash_key(g->keys.data + st->key_at, st->key_len) & (uint64_t)(n - 1);
    while (buckets[h]) h = (h + 1) & (uint64_t)(n - 1);
    buckets[h] = s;
  }
  free(g->buckets);
  g->buckets = buckets;
  g->n_buckets = n;
  return true;
}

/* The state of g->key (interned if new), or -1 when memory runs out. */
static int intern(struct llm_grammar *g) {
  const int32_t *key = g->key.data;
  const int len = g->key.size;
  if (2 * (g->n_states + 1) > g->n_buckets && !grow_buckets(g)) return -1;
  uint64_t h = hash_key(key, len) & (uint64_t)(g->n_buckets - 1);
  for (; g->buckets[h]; h = (h + 1) & (uint64_t)(g->n_buckets - 1)) {
    const struct state *st = &g->states[g->buckets[h]];
    if (st->key_len == len && memcmp(g->keys.data + st->key_at, key, (size_t)len * sizeof *key) == 0) return g->buckets[h];
  }
  if (g->n_states == g->cap_states) {
    const int cap = 2 * g->cap_states;
    struct state *grown = realloc(g->states, (size_t)cap * sizeof *grown);
    if (!grown) return -1;
    g->states = grown;
    g->cap_states = cap;
  }
  if (!ints_reserve(&g->keys, len)) return -1;
  const int s = g->n_states++;
  struct state *st = &g->states[s];
  st->key_at = g->keys.size;
  st->key_len = len;
  st->trans_at = -1;
  st->mask_at = -1;
  memcpy(g->keys.data + g->keys.size, key, (size_t)len * sizeof *key);
  g->keys.size += len;
  /* Key: partial value, bytes left, n stacks, stacks (the empty one sorts first). */
  st->complete = key[1] == 0 && key[2] > 0 && key[3] == 0;
  st->finished = st->complete && key[2] == 1;
  g->buckets[h] = s;
  return s;
}

/* The emitted stacks, sorted and without duplicates, behind [partial value, bytes left] into g->key; interned. Dead
 * (0) when no stack was emitted. */
static int intern_emitted(struct llm_grammar *g, int32_t partial_value, int32_t partial_left) {
  if (g->failed) return -1;
  int n = 0;
  for (int at = 0; at < g->emitted.size; at += 1 + g->emitted.data[at]) n++;
  if (n == 0) return 0;
  if (2 * n > g->cap_stack_starts) {
    int32_t *grown = realloc(g->stack_starts, (size_t)(2 * n) * sizeof *grown);
    if (!grown) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), -1;
    g->stack_starts = grown;
    g->cap_stack_starts = 2 * n;
  }
  n = 0;
  for (int at = 0; at < g->emitted.size; at += 1 + g->emitted.data[at]) g->stack_starts[n++] = at;
  sort_ids(g->stack_starts, g->stack_starts + n, n, compare_stacks, g);
  g->key.size = 0;
  if (!ints_reserve(&g->key, 3 + (int64_t)g->emitted.size)) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), -1;
  int32_t *key = g->key.data;
  key[0] = partial_value;
  key[1] = partial_left;
  int size = 3, kept = 0;
  for (int i = 0; i < n; i++) {
    const int32_t *stack = emitted_stack(g, i);
    if (i > 0 && compare_stacks(g, g->stack_starts[i - 1], g->stack_starts[i]) == 0) continue;
    memcpy(key + size, stack, (size_t)(1 + stack[0]) * sizeof *key);
    size += 1 + stack[0];
    kept++;
  }
  key[2] = kept;
  g->key.size = size;
  const int s = intern(g);
  if (s < 0) fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar");
  return s;
}

static bool chars_match(const int32_t *chars, int32_t cp) {
  bool in = false;
  for (int i = 0; i < chars[2] && !in; i++) in = cp >= chars[3 + 2 * i] && cp <= chars[4 + 2 * i];
  return in != (chars[1] != 0);
}

/* Whether some code point in [lo, hi] matches the set. */
static bool chars_meet(const int32_t *chars, int32_t lo, int32_t hi) {
  if (!chars[1]) {
    for (int i = 0; i < chars[2]; i++)
      if (chars[3 + 2 * i] <= hi && chars[4 + 2 * i] >= lo) return true;
    return false;
  }
  /* Negated: some point of [lo, hi] escapes every range. */
  int32_t point = lo;
  for (bool moved = true; moved && point <= hi;) {
    moved = false;
    for (int i = 0; i < chars[2]; i++) {
      if (chars[3 + 2 * i] <= point && chars[4 + 2 * i] >= point) {
        point = chars[4 + 2 * i] + 1;
        moved = true;
      }
    }
  }
  return point <= hi;
}

/* Calls back for each stack of state s: its positions (bottom to top) and length. */
#define FOR_EACH_STACK(g, s, stack, len, body)                                     \
  do {                                                                             \
    const int32_t *key_ = (g)->keys.data + (g)->states[s].key_at;                  \
    const int32_t *at_ = key_ + 3;                                                 \
    for (int k_ = 0; k_ < key_[2]; k_++, at_ += 1 + at_[0]) {                      \
      const int32_t *stack = at_ + 1;                                              \
      const int len = at_[0];                                                      \
      body                                                                         \
    }                                                                              \
  } while (0)

/* The state after state s reads code point cp (s has no partial code point). */
static int advance(struct llm_grammar *g, int s, int32_t cp) {
  g->emitted.size = 0;
  g->n_emitted = 0;
  g->n_frames = 0;
  FOR_EACH_STACK(g, s, stack, len, {
    if (len == 0) continue;
    const int32_t top = stack[len - 1];
    if (!chars_match(g->table + top, cp)) continue;
    int below = -1;
    for (int i = 0; i < len - 1 && below >= -1; i++) below = new_frame(g, stack[i], below);
    if (g->failed) return -1;
    if (!settle(g, top + chars_size(g->table, top), below, 0)) return -1;
  });
  return intern_emitted(g, 0, 0);
}

/* A partial code point in a key: its bytes still to come, and the sequence's length (for the overlong check). */
#define PARTIAL(left, length) ((left) | ((length) << 2))
#define PARTIAL_LEFT(p) ((p) & 3)
#define PARTIAL_LENGTH(p) ((p) >> 2)

/* The smallest code point a UTF-8 sequence of each length may encode (shorter forms are overlong, invalid). */
static const int32_t MIN_CODEPOINT[5] = {0, 0, 0x80, 0x800, 0x10000};

/* State s with a partial code point instead of its own: dead unless some stack can still match a code point that
 * begins with those bytes (the range [value << 6 left, ... | 2^(6 left) - 1], not overlong). */
static int with_partial(struct llm_grammar *g, int s, int32_t value, int32_t left, int32_t length) {
  int32_t lo = value << (6 * left);
  const int32_t hi = lo | ((1 << (6 * left)) - 1);
  if (lo < MIN_CODEPOINT[length]) lo = MIN_CODEPOINT[length];
  if (lo > hi || lo > LLM_GRAMMAR_MAX_CODEPOINT) return 0;
  bool possible = false;
  FOR_EACH_STACK(g, s, stack, len, {
    if (len > 0 && chars_meet(g->table + stack[len - 1], lo, hi)) possible = true;
  });
  if (!possible) return 0;
  const struct state *st = &g->states[s];
  g->key.size = 0;
  if (!ints_reserve(&g->key, st->key_len)) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), -1;
  memcpy(g->key.data, g->keys.data + st->key_at, (size_t)st->key_len * sizeof(int32_t));
  g->key.data[0] = value;
  g->key.data[1] = PARTIAL(left, length);
  g->key.size = st->key_len;
  const int t = intern(g);
  if (t < 0) fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar");
  return t;
}

/* The successor of state s over one byte, UTF-8 decoded (an invalid, overlong or surrogate sequence is dead); -1
 * on failure. */
static int step_byte(struct llm_grammar *g, int s, uint8_t b) {
  const int32_t *key = g->keys.data + g->states[s].key_at;
  const int32_t value = key[0], left = PARTIAL_LEFT(key[1]), length = PARTIAL_LENGTH(key[1]);
  if (left == 0) {
    if (b < 0x80) return advance(g, s, b);
    if (b >= 0xC2 && b <= 0xDF) return with_partial(g, s, b & 0x1F, 1, 2);
    if ((b & 0xF0) == 0xE0) return with_partial(g, s, b & 0x0F, 2, 3);
    if (b >= 0xF0 && b <= 0xF4) return with_partial(g, s, b & 0x07, 3, 4);
    return 0;
  }
  if ((b & 0xC0) != 0x80) return 0;
  const int32_t next = (value << 6) | (b & 0x3F);
  if (left > 1) return with_partial(g, s, next, left - 1, length);
  /* The whole code point: read it from the same stacks without the partial bytes. */
  if (next < MIN_CODEPOINT[length] || next > LLM_GRAMMAR_MAX_CODEPOINT || (next >= 0xD800 && next <= 0xDFFF)) return 0;
  return advance(g, s, next);
}

/* The cached successor of s over b (0: dead), computing it once; -1 on failure. */
static int transition(struct llm_grammar *g, int s, uint8_t b) {
  if (g->states[s].trans_at < 0) {
    if (!ints_reserve(&g->transitions, 256)) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), -1;
    g->states[s].trans_at = g->transitions.size;
    for (int i = 0; i < 256; i++) g->transitions.data[g->transitions.size + i] = -1;
    g->transitions.size += 256;
  }
  const int32_t at = g->states[s].trans_at + b;
  if (g->transitions.data[at] < 0) {
    const int t = step_byte(g, s, b);
    if (t < 0) return -1;
    g->transitions.data[at] = t;
  }
  return g->transitions.data[at];
}

/* Forgets every state but the current one, whose key is re-interned as state 1. */
static bool clear_automaton(struct llm_grammar *g) {
  const struct state *st = &g->states[g->current];
  g->key.size = 0;
  if (!ints_reserve(&g->key, st->key_len)) return false;
  memcpy(g->key.data, g->keys.data + st->key_at, (size_t)st->key_len * sizeof(int32_t));
  g->key.size = st->key_len;
  g->n_states = 1;
  g->keys.size = 0;
  g->transitions.size = 0;
  g->n_masks = 0;
  memset(g->buckets, 0, (size_t)g->n_buckets * sizeof *g->buckets);
  g->current = intern(g);
  return g->current > 0;
}

struct llm_grammar *llm_grammar_create(const int32_t *table, int n, const struct llm_token_trie *trie, struct llm_error *err) {
  if (!table || n < 1 || !trie) return llm_fail_argument(err, "grammar", "a grammar needs its table and a token trie"), NULL;
  struct llm_grammar *g = calloc(1, sizeof *g);
  if (!g || !(g->table = malloc((size_t)n * sizeof *g->table))) {
    llm_grammar_free(g);
    return llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a grammar"), NULL;
  }
  memcpy(g->table, table, (size_t)n * sizeof *table);
  g->n_table = n;
  g->trie = trie;
  if (!check_table(g, err)) {
    llm_grammar_free(g);
    return NULL;
  }
  g->mask_words = (trie->n_tokens + 63) / 64;
  g->cap_states = 64;
  g->states = calloc((size_t)g->cap_states, sizeof *g->states);
  if (!g->states) {
    llm_grammar_free(g);
    return llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a grammar"), NULL;
  }
  g->n_states = 1; /* state 0: dead */
  const int32_t root = table[1];
  for (int a = g->alt_first[root]; a < g->alt_first[root + 1]; a++) settle(g, g->rule_alts[a], -1, 0);
  g->current = intern_emitted(g, 0, 0);
  if (g->current <= 0) {
    if (g->failed) *err = g->failure;
    else llm_fail_argument(err, "grammar", "the grammar matches nothing");
    llm_grammar_free(g);
    return NULL;
  }
  return g;
}

bool llm_grammar_complete(const struct llm_grammar *g) { return g->states[g->current].complete; }
bool llm_grammar_finished(const struct llm_grammar *g) { return g->states[g->current].finished; }

static bool take_failure(struct llm_grammar *g, struct llm_error *err) {
  *err = g->failure;
  g->failed = false;
  return false;
}

/* Clears the automaton when it outgrew its bounds (before a step that may add to it); false when memory ran out. */
static bool bound_automaton(struct llm_grammar *g) {
  if (g->n_states <= MAX_STATES && g->n_masks < MAX_MASKS && g->keys.size <= MAX_KEY_INTS) return true;
  return clear_automaton(g) || fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar");
}

/* The allowed-token bitset of the current state, walking the trie once if it is not cached. */
static const uint64_t *current_mask(struct llm_grammar *g) {
  if (g->states[g->current].mask_at < 0 && !bound_automaton(g)) return NULL;
  const int s = g->current;
  if (g->states[s].mask_at >= 0) return g->masks + (size_t)g->states[s].mask_at * g->mask_words;
  if (g->n_masks == 0 || (g->n_masks & (g->n_masks - 1)) == 0) {
    const size_t cap = g->n_masks ? 2 * (size_t)g->n_masks : 1;
    uint64_t *grown = realloc(g->masks, cap * g->mask_words * sizeof *grown);
    if (!grown) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), NULL;
    g->masks = grown;
  }
  uint64_t *mask = g->masks + (size_t)g->n_masks * g->mask_words;
  memset(mask, 0, (size_t)g->mask_words * sizeof *mask);
  const struct llm_token_trie *t = g->trie;
  g->walk.size = 0;
  if (!ints_push(&g->walk, 0) || !ints_push(&g->walk, s)) return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), NULL;
  while (g->walk.size > 0) {
    const int state = g->walk.data[--g->walk.size];
    const int node = g->walk.data[--g->walk.size];
    for (int e = t->first_edge[node]; e < t->first_edge[node + 1]; e++) {
      const int next = transition(g, state, t->edge_byte[e]);
      if (next < 0) return NULL;
      if (next == 0) continue;
      const int child = t->edge_child[e];
      for (int id = t->node_token[child]; id >= 0; id = t->token_next[id]) mask[id >> 6] |= 1ull << (id & 63);
      if (t->first_edge[child] < t->first_edge[child + 1] &&
          (!ints_push(&g->walk, child) || !ints_push(&g->walk, next)))
        return fail_now(g, LLM_ERR_SYSTEM, "out of memory matching a grammar"), NULL;
    }
  }
  g->states[s].mask_at = g->n_masks++;
  return mask;
}

bool llm_grammar_mask(struct llm_grammar *g, float *logits, int vocab_size, const int32_t *end_ids, int n_end_ids,
                      struct llm_error *err) {
  const uint64_t *mask = current_mask(g);
  if (!mask) return take_failure(g, err);
  if (n_end_ids > g->cap_end_logits) {
    float *grown = realloc(g->end_logits, (size_t)n_end_ids * sizeof *grown);
    if (!grown) return llm_fail(err, LLM_ERR_SYSTEM, "out of memory matching a grammar");
    g->end_logits = grown;
    g->cap_end_logits = n_end_ids;
  }
  for (int i = 0; i < n_end_ids; i++) g->end_logits[i] = end_ids[i] >= 0 && end_ids[i] < vocab_size ? logits[end_ids[i]] : -INFINITY;
  const int n_trie = g->trie->n_tokens < vocab_size ? g->trie->n_tokens : vocab_size;
  for (int i = 0; i < n_trie; i++)
    if (!(mask[i >> 6] >> (i & 63) & 1)) logits[i] = -INFINITY;
  for (int i = n_trie; i < vocab_size; i++) logits[i] = -INFINITY;
  /* An end id may come exactly when the text is complete, whatever its bytes. */
  const bool complete = llm_grammar_complete(g);
  for (int i = 0; i < n_end_ids; i++)
    if (end_ids[i] >= 0 && end_ids[i] < vocab_size) logits[end_ids[i]] = complete ? g->end_logits[i] : -INFINITY;
  bool any = false;
  for (int i = 0; i < vocab_size && !any; i++) any = logits[i] > -INFINITY || logits[i] != logits[i];
  if (!any) return llm_fail_argument(err, "grammar", "no token of the vocabulary can continue the grammar here");
  return true;
}

bool llm_grammar_accept(struct llm_grammar *g, int32_t token, struct llm_error *err) {
  const struct llm_token_trie *t = g->trie;
  if (token < 0 || token >= t->n_tokens || t->offsets[token] == t->offsets[token + 1])
    return llm_fail_argument(err, "grammar", "token %d cannot continue the grammar (it has no text)", token);
  if (!bound_automaton(g)) return take_failure(g, err);
  int s = g->current;
  for (uint32_t i = t->offsets[token]; i < t->offsets[token + 1] && s > 0; i++) s = transition(g, s, t->bytes[i]);
  if (s < 0) return take_failure(g, err);
  if (s == 0) return llm_fail_argument(err, "grammar", "token %d does not continue the grammar", token);
  g->current = s;
  return true;
}
