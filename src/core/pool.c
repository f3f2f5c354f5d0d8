/* A fork-join thread pool.  The caller is thread 0; workers wait for a new
 * generation number, run their share, and count themselves done.  Waiting
 * spins first (decode dispatches ~150 short jobs per token, and a futex wake
 * costs more than the job), then yields, then sleeps on a condition
 * variable so an idle pool costs no CPU. */
#include "mope/core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct mope_pool {
    int n;
    pthread_t *threads;
    mope_pool_fn fn;
    void *ctx;
    atomic_uint gen;      /* bumped once per job */
    atomic_int remaining; /* workers still running the current job */
    atomic_int stop;
    atomic_int sleepers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    mope_pool *p;
    int ith;
} worker_arg;

/* ~50 us of pausing covers the gap between two matmuls of a decode step;
 * after that, yield so an oversubscribed machine (ctest -j, other processes)
 * runs the thread we are waiting for instead of our spin loop. */
enum { SPIN_ITERS = 1 << 11, YIELD_ITERS = 256 };

static void *worker(void *arg) {
    worker_arg *wa = arg;
    mope_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < SPIN_ITERS) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            } else if (spins < SPIN_ITERS + YIELD_ITERS) {
                sched_yield();
            } else {
                pthread_mutex_lock(&p->mu);
                atomic_fetch_add(&p->sleepers, 1);
                while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->mu);
            }
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        seen = g;
        p->fn(p->ctx, ith, p->n);
        atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_acq_rel);
    }
}

int mope_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

mope_pool *mope_pool_create(int n_threads, mope_error *err) {
    if (n_threads <= 0) n_threads = mope_cpu_count();
    if (n_threads > 512) {
        mope_error_set(err, MOPE_EINVAL, "thread count %d is too large", n_threads);
        return NULL;
    }
    mope_pool *p = calloc(1, sizeof *p);
    if (!p) goto oom;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) goto oom;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto oom_started;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i;
            mope_pool_free(p);
            mope_error_set(err, MOPE_ENOMEM, "could not start thread %d of %d", i, n_threads);
            return NULL;
        }
    }
    return p;
oom_started:
    p->n = n_threads;
    mope_pool_free(p);
    mope_error_set(err, MOPE_ENOMEM, "out of memory creating thread pool");
    return NULL;
oom:
    if (p) free(p->threads);
    free(p);
    mope_error_set(err, MOPE_ENOMEM, "out of memory creating thread pool");
    return NULL;
}

void mope_pool_free(mope_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        if (p->threads[i]) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int mope_pool_size(const mope_pool *p) { return p ? p->n : 1; }

void mope_pool_run(mope_pool *p, mope_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->remaining, p->n - 1, memory_order_release);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers load */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    for (int spins = 0; atomic_load_explicit(&p->remaining, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ITERS) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
}
