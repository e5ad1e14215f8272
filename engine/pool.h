/* pool.h - a fixed set of worker threads for data-parallel loops.
 * Created once at start-up; pool_run() allocates nothing. */
#ifndef KVT_POOL_H
#define KVT_POOL_H

typedef struct pool pool;

/* fn(ctx, task, thread) for task in [0, n_tasks); thread in [0, n_threads).
 * Tasks are handed out dynamically; pool_run returns when all are done. */
typedef void (*pool_fn)(void *ctx, int task, int thread);

int pool_create(int n_threads, pool **out); /* n_threads >= 1 */
void pool_free(pool *p);                    /* NULL is a no-op */
int pool_threads(const pool *p);
void pool_run(pool *p, pool_fn fn, void *ctx, int n_tasks);

#endif
