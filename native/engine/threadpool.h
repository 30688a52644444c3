#ifndef LLM_THREADPOOL_H
#define LLM_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

/* A fixed pool of worker threads for data-parallel loops. The thread that calls llm_parallel_for is worker 0
 * and n_threads - 1 pthreads help it. Idle workers spin briefly (decode issues ~10 loops per layer, microseconds
 * apart) and then sleep on a condition variable, so they burn no CPU between tokens. A loop waits only for the
 * chunks that workers claimed, never for a worker that has not started: when other processes hold the cores (or
 * there are more threads than cores), the threads that do run share out the work, and the pool degrades towards
 * one thread's speed rather than stalling on a descheduled worker. */
struct llm_threadpool;

/* Processes tasks [begin, end); `worker` in [0, n_threads) indexes per-thread scratch. */
typedef void (*llm_task_fn)(void *ctx, size_t begin, size_t end, int worker);

struct llm_threadpool *llm_threadpool_create(int n_threads);
void llm_threadpool_free(struct llm_threadpool *pool);
int llm_threadpool_size(const struct llm_threadpool *pool);

/* Runs fn over tasks [0, n_tasks) split into contiguous chunks handed out dynamically, and returns when all
 * are done. Not reentrant: one caller at a time. Loops of 2^32 - 1 tasks or more run on the calling thread. */
void llm_parallel_for(struct llm_threadpool *pool, size_t n_tasks, llm_task_fn fn, void *ctx);

/* Loops of less work than this many multiply-adds (or operations of like cost) run on the calling thread: handing
 * them to the pool (a wake-up, a chunk each, the wait for the last) costs about as much as the work. Every product
 * of stories260K's decode (at most 512 x 64) is below it; stories110M's smallest (768 x 768) is far above. */
#define LLM_MIN_PARALLEL_WORK (64 * 1024)

/* llm_parallel_for over a loop of about `work` multiply-adds in all: on the calling thread (as worker 0) when that
 * is below LLM_MIN_PARALLEL_WORK. The tasks compute the same either way. */
void llm_parallel_for_work(struct llm_threadpool *pool, size_t n_tasks, int64_t work, llm_task_fn fn, void *ctx);

/* A buffer of at least `bytes` (64-byte aligned) owned by the pool, for data that the caller of
 * llm_parallel_for shares with the workers during one loop; grown on demand, so earlier contents may be lost.
 * NULL if it cannot grow. Like llm_parallel_for, one caller at a time. */
void *llm_threadpool_scratch(struct llm_threadpool *pool, size_t bytes);

/* Physical cores (unique (package, core) pairs in sysfs), falling back to online logical CPUs. */
int llm_physical_cores(void);

#endif
