#define _GNU_SOURCE
#include "threadpool.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker spins before sleeping: far longer than the gap between two loops of one forward
 * pass (microseconds), shorter than a typical gap between tokens, so workers sleep between tokens. */
#define SPIN_NANOSECONDS 100000
/* How long the caller spins for chunks that other workers still hold before sleeping. Those chunks are small
 * (guided), so this only runs out when a worker lost its CPU mid-chunk: sleeping then frees the caller's core
 * for it, where spinning would keep it waiting for the scheduler's next time slice (milliseconds). */
#define CALLER_SPIN_NANOSECONDS 20000
/* Pause instructions between clock reads while spinning. */
#define SPINS_PER_CLOCK_READ 64

/* The claim word: the loop's generation in the high 32 bits, the next unclaimed task in the low 32. Claiming a
 * chunk is a compare-and-swap of the whole word, so a worker that read the word of an earlier loop (it lost its
 * CPU, and the loop finished without it) can never claim tasks of a later one. */
#define CLAIM_CLOSED UINT32_MAX /* the index while a loop's parameters are written: nothing can be claimed */
#define MAX_TASKS_PER_LOOP (CLAIM_CLOSED - 1)

static uint32_t claim_generation(uint64_t word) { return (uint32_t)(word >> 32); }
static size_t claim_index(uint64_t word) { return (size_t)(uint32_t)word; }
static uint64_t claim_word(uint32_t generation, uint32_t index) { return (uint64_t)generation << 32 | index; }

struct llm_threadpool {
  int n_threads;
  pthread_t *threads;

  pthread_mutex_t mutex;
  pthread_cond_t wake;      /* idle workers wait here for the next loop */
  pthread_cond_t loop_done; /* the caller waits here for the last chunks that workers hold */
  atomic_int n_sleeping;
  atomic_bool caller_sleeping;
  atomic_bool stopping;

  /* The current loop. The caller closes the claim word, writes the parameters, then opens the word for the new
   * generation; a worker reads them only after a successful claim, which the caller cannot overtake until every
   * claimed chunk is done (tasks_done reaches n_tasks). */
  _Atomic uint64_t claim;
  _Atomic(llm_task_fn) fn;
  _Atomic(void *) ctx;
  atomic_size_t n_tasks;
  atomic_size_t tasks_done;

  /* Scratch for the current caller (llm_threadpool_scratch), 64-byte aligned. */
  void *scratch;
  size_t scratch_bytes;
};

struct worker_arg {
  struct llm_threadpool *pool;
  int index;
};

static int64_t monotonic_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Claims and runs chunks of loop `generation` until none is left. Guided chunks: each takes 1 / (2 n_threads) of
 * the tasks still left, so chunks shrink towards the end of the loop and whoever finishes last waits for at most
 * a small one. Only claimed chunks are waited for: a worker that is not running when a loop starts (another
 * process has its core) claims nothing, and the caller and the running workers do its share. */
static void run_chunks(struct llm_threadpool *pool, uint32_t generation, int worker) {
  const size_t divisor = 2 * (size_t)pool->n_threads;
  uint64_t word = atomic_load_explicit(&pool->claim, memory_order_acquire);
  while (claim_generation(word) == generation) {
    /* Read before the claim: if this is already the next loop's count, the word has changed and the claim fails. */
    const size_t n_tasks = atomic_load_explicit(&pool->n_tasks, memory_order_acquire);
    const size_t begin = claim_index(word);
    if (begin >= n_tasks) return;
    size_t size = (n_tasks - begin) / divisor;
    if (size == 0) size = 1;
    if (!atomic_compare_exchange_weak_explicit(&pool->claim, &word, word + size, memory_order_acquire,
                                               memory_order_acquire))
      continue; /* word now holds the current value */
    llm_task_fn fn = atomic_load_explicit(&pool->fn, memory_order_relaxed);
    fn(atomic_load_explicit(&pool->ctx, memory_order_relaxed), begin, begin + size, worker);
    /* seq_cst, then the check of caller_sleeping: pairs with the caller's set-then-check, so the last chunk's
     * wake-up cannot slip between the caller's check and its wait. */
    if (atomic_fetch_add(&pool->tasks_done, size) + size == n_tasks && atomic_load(&pool->caller_sleeping)) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->loop_done);
      pthread_mutex_unlock(&pool->mutex);
    }
    word = atomic_load_explicit(&pool->claim, memory_order_acquire);
  }
}

/* Waits until a loop other than `seen` is open; returns its generation. */
static uint32_t wait_for_work(struct llm_threadpool *pool, uint32_t seen) {
  int64_t deadline = monotonic_ns() + SPIN_NANOSECONDS;
  for (int spin = 1;; spin++) {
    uint64_t word = atomic_load_explicit(&pool->claim, memory_order_acquire);
    if (claim_generation(word) != seen && claim_index(word) != CLAIM_CLOSED) return claim_generation(word);
    cpu_relax();
    if (spin % SPINS_PER_CLOCK_READ == 0) {
      if (monotonic_ns() > deadline) break;
      /* A spinning worker that shares its core with a runnable thread (the caller, or another process when the
       * machine is busy) hands it the core; alone on its core, sched_yield returns at once. Without it, with a
       * busy-loop neighbour on 2 cores, 2 threads decoded at 0.77x one thread's speed (bench/contention.js). */
      sched_yield();
    }
  }
  pthread_mutex_lock(&pool->mutex);
  /* seq_cst increment, then re-check: pairs with publish's open-then-check of n_sleeping, so a wake-up cannot
   * slip between our check and our wait. */
  atomic_fetch_add(&pool->n_sleeping, 1);
  uint64_t word;
  while (word = atomic_load(&pool->claim), claim_generation(word) == seen || claim_index(word) == CLAIM_CLOSED)
    pthread_cond_wait(&pool->wake, &pool->mutex);
  atomic_fetch_sub(&pool->n_sleeping, 1);
  pthread_mutex_unlock(&pool->mutex);
  return claim_generation(word);
}

static void *worker_main(void *p) {
  struct worker_arg arg = *(struct worker_arg *)p;
  free(p);
  struct llm_threadpool *pool = arg.pool;
  uint32_t seen = 0;
  for (;;) {
    seen = wait_for_work(pool, seen);
    if (atomic_load_explicit(&pool->stopping, memory_order_acquire)) return NULL;
    run_chunks(pool, seen, arg.index);
  }
}

/* Starts a new loop of n_tasks (0 when stopping) and wakes the workers that sleep; returns its generation. */
static uint32_t publish(struct llm_threadpool *pool, size_t n_tasks, llm_task_fn fn, void *ctx) {
  const uint32_t generation = claim_generation(atomic_load_explicit(&pool->claim, memory_order_relaxed)) + 1;
  atomic_store(&pool->claim, claim_word(generation, CLAIM_CLOSED));
  atomic_store_explicit(&pool->fn, fn, memory_order_relaxed);
  atomic_store_explicit(&pool->ctx, ctx, memory_order_relaxed);
  atomic_store_explicit(&pool->tasks_done, 0, memory_order_relaxed);
  /* Release: a worker that reads this count also sees the closed word, so its claim on the old loop fails. */
  atomic_store_explicit(&pool->n_tasks, n_tasks, memory_order_release);
  /* seq_cst open, then the check of n_sleeping: pairs with wait_for_work's increment-then-check. */
  atomic_store(&pool->claim, claim_word(generation, 0));
  if (atomic_load(&pool->n_sleeping) > 0) {
    pthread_mutex_lock(&pool->mutex);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
  }
  return generation;
}

/* Waits until every claimed chunk of the loop is done: spins briefly, then sleeps until the last one signals. */
static void wait_for_chunks(struct llm_threadpool *pool, size_t n_tasks) {
  int64_t deadline = 0;
  for (int spin = 1; atomic_load_explicit(&pool->tasks_done, memory_order_acquire) != n_tasks; spin++) {
    cpu_relax();
    if (spin % SPINS_PER_CLOCK_READ != 0) continue;
    const int64_t now = monotonic_ns();
    if (deadline == 0) {
      deadline = now + CALLER_SPIN_NANOSECONDS;
    } else if (now > deadline) {
      pthread_mutex_lock(&pool->mutex);
      atomic_store(&pool->caller_sleeping, true);
      while (atomic_load(&pool->tasks_done) != n_tasks) pthread_cond_wait(&pool->loop_done, &pool->mutex);
      atomic_store(&pool->caller_sleeping, false);
      pthread_mutex_unlock(&pool->mutex);
      return;
    }
  }
}

struct llm_threadpool *llm_threadpool_create(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  struct llm_threadpool *pool = calloc(1, sizeof *pool);
  if (!pool) return NULL;
  pool->n_threads = n_threads;
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->loop_done, NULL);
  pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
  if (!pool->threads) {
    llm_threadpool_free(pool);
    return NULL;
  }
  for (int i = 1; i < n_threads; i++) {
    struct worker_arg *arg = malloc(sizeof *arg);
    if (!arg) {
      pool->n_threads = i;
      llm_threadpool_free(pool);
      return NULL;
    }
    *arg = (struct worker_arg){ pool, i };
    if (pthread_create(&pool->threads[i], NULL, worker_main, arg) != 0) {
      free(arg);
      pool->n_threads = i;
      llm_threadpool_free(pool);
      return NULL;
    }
  }
  return pool;
}

void llm_threadpool_free(struct llm_threadpool *pool) {
  if (!pool) return;
  if (pool->threads) {
    atomic_store(&pool->stopping, true);
    publish(pool, 0, NULL, NULL);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
    free(pool->threads);
  }
  pthread_cond_destroy(&pool->wake);
  pthread_cond_destroy(&pool->loop_done);
  pthread_mutex_destroy(&pool->mutex);
  free(pool->scratch);
  free(pool);
}

int llm_threadpool_size(const struct llm_threadpool *pool) { return pool->n_threads; }

void *llm_threadpool_scratch(struct llm_threadpool *pool, size_t bytes) {
  if (bytes <= pool->scratch_bytes) return pool->scratch;
  size_t rounded = (bytes + 63) / 64 * 64;
  void *grown = aligned_alloc(64, rounded);
  if (!grown) return NULL;
  free(pool->scratch);
  pool->scratch = grown;
  pool->scratch_bytes = rounded;
  return grown;
}

void llm_parallel_for(struct llm_threadpool *pool, size_t n_tasks, llm_task_fn fn, void *ctx) {
  if (n_tasks == 0) return;
  if (pool->n_threads == 1 || n_tasks == 1 || n_tasks > MAX_TASKS_PER_LOOP) {
    fn(ctx, 0, n_tasks, 0);
    return;
  }
  run_chunks(pool, publish(pool, n_tasks, fn, ctx), 0);
  wait_for_chunks(pool, n_tasks);
}

void llm_parallel_for_work(struct llm_threadpool *pool, size_t n_tasks, int64_t work, llm_task_fn fn, void *ctx) {
  if (work < LLM_MIN_PARALLEL_WORK) {
    if (n_tasks > 0) fn(ctx, 0, n_tasks, 0);
  } else {
    llm_parallel_for(pool, n_tasks, fn, ctx);
  }
}

int llm_physical_cores(void) {
  int count = 0;
  size_t capacity = 0;
  long long *pairs = NULL; /* package << 32 | core_id, one per distinct physical core */
  DIR *dir = opendir("/sys/devices/system/cpu");
  if (dir) {
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
      const char *name = entry->d_name;
      if (strncmp(name, "cpu", 3) != 0 || name[3] < '0' || name[3] > '9') continue;
      char path[352]; /* d_name is at most 255 bytes */
      long long package = -1, core = -1;
      snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/topology/physical_package_id", name);
      FILE *f = fopen(path, "r");
      if (f) {
        if (fscanf(f, "%lld", &package) != 1) package = -1;
        fclose(f);
      }
      snprintf(path, sizeof path, "/sys/devices/system/cpu/%s/topology/core_id", name);
      f = fopen(path, "r");
      if (f) {
        if (fscanf(f, "%lld", &core) != 1) core = -1;
        fclose(f);
      }
      if (package < 0 || core < 0) continue;
      long long key = (package << 32) | core;
      int seen = 0;
      for (int i = 0; i < count; i++) seen |= pairs[i] == key;
      if (seen) continue;
      if ((size_t)count == capacity) {
        capacity = capacity ? capacity * 2 : 64;
        long long *grown = realloc(pairs, capacity * sizeof *pairs);
        if (!grown) break;
        pairs = grown;
      }
      pairs[count++] = key;
    }
    closedir(dir);
  }
  free(pairs);
  if (count > 0) return count;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? (int)online : 1;
}
