#define _GNU_SOURCE
#include "threadpool.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
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
#define SPIN_NANOSECONDS 200000
/* Pause instructions between clock reads while spinning. */
#define SPINS_PER_CLOCK_READ 64

struct llm_threadpool {
  int n_threads;
  pthread_t *threads;

  pthread_mutex_t mutex;
  pthread_cond_t wake;
  atomic_int n_sleeping;
  atomic_bool stopping;

  /* The current loop. Written by the caller before it bumps `generation`, read by workers after. */
  atomic_uint generation;
  llm_task_fn fn;
  void *ctx;
  size_t n_tasks;
  atomic_size_t next_task;
  atomic_int workers_busy;

  /* Scratch for the current caller (llm_threadpool_scratch), 64-byte aligned. */
  void *scratch;
  size_t scratch_bytes;
};

struct worker_arg {
  struct llm_threadpool *pool;
  int index;
};

/* Guided chunks: each takes 1 / (2 n_threads) of the tasks still left, so chunks shrink towards the end of the
 * loop and the last worker to finish waits for at most a small one. (Fixed chunks of 1 / (4 n_threads) left the
 * caller waiting ~3% of a 2-thread decode step.) */
static void run_chunks(struct llm_threadpool *pool, int worker) {
  const size_t n_tasks = pool->n_tasks, divisor = 2 * (size_t)pool->n_threads;
  size_t begin = atomic_load_explicit(&pool->next_task, memory_order_relaxed);
  while (begin < n_tasks) {
    size_t size = (n_tasks - begin) / divisor;
    if (size == 0) size = 1;
    if (!atomic_compare_exchange_weak_explicit(&pool->next_task, &begin, begin + size, memory_order_relaxed,
                                               memory_order_relaxed))
      continue; /* begin now holds the current value */
    pool->fn(pool->ctx, begin, begin + size, worker);
    begin = atomic_load_explicit(&pool->next_task, memory_order_relaxed);
  }
}

/* Waits until `generation` moves past `seen`; returns the new value. */
static int64_t monotonic_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static unsigned wait_for_work(struct llm_threadpool *pool, unsigned seen) {
  int64_t deadline = monotonic_ns() + SPIN_NANOSECONDS;
  for (int spin = 1;; spin++) {
    unsigned g = atomic_load_explicit(&pool->generation, memory_order_acquire);
    if (g != seen) return g;
    cpu_relax();
    if (spin % SPINS_PER_CLOCK_READ == 0 && monotonic_ns() > deadline) break;
  }
  pthread_mutex_lock(&pool->mutex);
  /* seq_cst increment, then re-check: pairs with the caller's bump-then-check of n_sleeping, so a wake-up
   * cannot slip between our check and our wait. */
  atomic_fetch_add(&pool->n_sleeping, 1);
  unsigned g;
  while ((g = atomic_load(&pool->generation)) == seen) pthread_cond_wait(&pool->wake, &pool->mutex);
  atomic_fetch_sub(&pool->n_sleeping, 1);
  pthread_mutex_unlock(&pool->mutex);
  return g;
}

static void *worker_main(void *p) {
  struct worker_arg arg = *(struct worker_arg *)p;
  free(p);
  struct llm_threadpool *pool = arg.pool;
  unsigned seen = 0;
  for (;;) {
    seen = wait_for_work(pool, seen);
    if (atomic_load_explicit(&pool->stopping, memory_order_acquire)) return NULL;
    run_chunks(pool, arg.index);
    atomic_fetch_sub_explicit(&pool->workers_busy, 1, memory_order_release);
  }
}

static void publish(struct llm_threadpool *pool) {
  atomic_fetch_add(&pool->generation, 1);
  if (atomic_load(&pool->n_sleeping) > 0) {
    pthread_mutex_lock(&pool->mutex);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
  }
}

struct llm_threadpool *llm_threadpool_create(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  struct llm_threadpool *pool = calloc(1, sizeof *pool);
  if (!pool) return NULL;
  pool->n_threads = n_threads;
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
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
    publish(pool);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
    free(pool->threads);
  }
  pthread_cond_destroy(&pool->wake);
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
  int n_threads = pool->n_threads;
  if (n_threads == 1 || n_tasks == 1) {
    fn(ctx, 0, n_tasks, 0);
    return;
  }
  pool->fn = fn;
  pool->ctx = ctx;
  pool->n_tasks = n_tasks;
  atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
  atomic_store_explicit(&pool->workers_busy, n_threads - 1, memory_order_relaxed);
  publish(pool);
  run_chunks(pool, 0);
  /* The workers are mid-task, so this wait is short; yield only if one of them lost its CPU. */
  for (int spin = 1; atomic_load_explicit(&pool->workers_busy, memory_order_acquire) > 0; spin++) {
    cpu_relax();
    if (spin % (SPINS_PER_CLOCK_READ * 64) == 0) sched_yield();
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
