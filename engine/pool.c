/* pool.c - worker threads with a shared task counter.
 * The calling thread works too (it is thread 0).
 *
 * A run (pool_run) has a generation number; its tasks are taken from a
 * 64-bit ticket, generation << 32 | next task, by compare-and-swap, so a
 * worker that wakes up late (its run over, perhaps the next one started)
 * can neither take a task of a run it did not read the parameters of nor
 * lose one. pool_run returns when every task is done, without waiting for
 * workers that never got a task: on a machine with more runnable threads
 * than cores, a worker the scheduler has not run yet costs nothing (the
 * caller does the tasks). Between runs a worker spins briefly (decode
 * steps run one product after another, tens of microseconds apart), then
 * sleeps on a condition variable. */
#define _POSIX_C_SOURCE 200809L
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "../base/kvt.h"

/* Spins of a worker waiting for the next run before it sleeps (each a
 * pause instruction, some tens of nanoseconds). */
#define POOL_SPINS 4000

struct pool {
    int n_threads;
    pthread_t *threads; /* (n_threads - 1) workers */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    atomic_uint generation; /* bumped for every pool_run (under mu) */
    int n_sleeping;         /* workers in cv_work (under mu) */
    int quit;               /* under mu */
    /* the current run's parameters (written under mu) */
    pool_fn fn;
    void *ctx;
    int n_tasks;
    _Atomic uint64_t ticket; /* generation << 32 | next task */
    atomic_int done;         /* tasks finished in the current run */
};

struct worker_arg { pool *p; int id; };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Tasks of run GEN until none is left (or another run has begun). */
static void run_tasks(pool *p, unsigned gen, pool_fn fn, void *ctx, int n_tasks, int thread)
{
    for (;;) {
        uint64_t v = atomic_load(&p->ticket);
        do {
            if ((unsigned)(v >> 32) != gen || (uint32_t)v >= (uint32_t)n_tasks) return;
        } while (!atomic_compare_exchange_weak(&p->ticket, &v, v + 1));
        fn(ctx, (int)(uint32_t)v, thread);
        if (atomic_fetch_add(&p->done, 1) + 1 == n_tasks) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void *worker(void *arg)
{
    struct worker_arg a = *(struct worker_arg *)arg;
    free(arg);
    pool *p = a.p;
    unsigned seen = 0;
    for (;;) {
        for (int s = 0; s < POOL_SPINS && atomic_load(&p->generation) == seen; s++)
            cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (!p->quit && atomic_load(&p->generation) == seen) {
            p->n_sleeping++;
            pthread_cond_wait(&p->cv_work, &p->mu);
            p->n_sleeping--;
        }
        if (p->quit) break;
        seen = atomic_load(&p->generation);
        pool_fn fn = p->fn;
        void *ctx = p->ctx;
        const int n_tasks = p->n_tasks;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, seen, fn, ctx, n_tasks, a.id);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pool_create(int n_threads, pool **out)
{
    KVT_ASSERT(n_threads >= 1);
    pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->ticket, 0);
    atomic_init(&p->done, 0);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) { free(p); return -ENOMEM; }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *a = malloc(sizeof *a);
        if (!a) { p->n_threads = i; pool_free(p); return -ENOMEM; }
        a->p = p;
        a->id = i;
        int rc = pthread_create(&p->threads[i - 1], NULL, worker, a);
        if (rc) { free(a); p->n_threads = i; pool_free(p); return -rc; }
    }
    *out = p;
    return 0;
}

void pool_free(pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int pool_threads(const pool *p) { return p->n_threads; }

void pool_run(pool *p, pool_fn fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    const unsigned gen = atomic_load(&p->generation) + 1;
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->done, 0);
    atomic_store(&p->ticket, (uint64_t)gen << 32);
    atomic_store(&p->generation, gen);
    if (p->n_sleeping > 0) pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, gen, fn, ctx, n_tasks, 0);
    for (int s = 0; s < POOL_SPINS && atomic_load(&p->done) < n_tasks; s++) cpu_relax();
    if (atomic_load(&p->done) < n_tasks) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->done) < n_tasks) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
