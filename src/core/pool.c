/* A fork-join thread pool.  A job is the calls fn(ctx, ith, nth) for
 * ith = 0..nth-1; each index is claimed from a shared counter, by the
 * worker it was meant for or by any thread that is already done with its
 * own.  So when the machine is oversubscribed (ctest -j, other processes)
 * and a worker has not been scheduled yet, the caller runs its share instead
 * of waiting a whole time slice for it: a job then costs about what the
 * threads that are actually running can do.  The caller waits only for
 * indices that were claimed and are still running.
 *
 * The generation number and the next unclaimed index share one 64-bit word,
 * so a worker that wakes up late can never claim an index of a later job
 * with the previous job's fn: its compare-and-swap fails once the
 * generation has moved on.
 *
 * Waiting spins first (decode dispatches ~100 short jobs per token and a
 * futex wake costs more than the job), then yields, then sleeps on a
 * condition variable so an idle pool costs no CPU. */
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
    _Atomic uint64_t state; /* generation << 32 | next unclaimed index */
    atomic_int done;        /* indices of the current job finished */
    atomic_int stop;
    atomic_int sleepers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};


/* ~50 us of pausing covers the gap between two matmuls of a decode step;
 * after that, yield so an oversubscribed machine runs the thread we are
 * waiting for instead of our spin loop. */
enum { SPIN_ITERS = 1 << 11, YIELD_ITERS = 256 };

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims the next index of generation gen; -1 once all are claimed or the
 * pool has moved on to a later job. */
static int claim(mope_pool *p, uint32_t gen) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(s >> 32) != gen || (int)(uint32_t)s >= p->n) return -1;
        if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel, memory_order_acquire))
            return (int)(uint32_t)s;
    }
}

/* Runs indices of generation gen until none is left.  fn and ctx are read
 * only after a successful claim: the job cannot finish (and the caller
 * cannot overwrite them) while one of its indices is claimed and unfinished. */
static void run_claims(mope_pool *p, uint32_t gen) {
    int i;
    while ((i = claim(p, gen)) >= 0) {
        p->fn(p->ctx, i, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel);
    }
}

static void *worker(void *arg) {
    mope_pool *p = arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = (uint32_t)(atomic_load_explicit(&p->state, memory_order_acquire) >> 32)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
            } else if (spins < SPIN_ITERS + YIELD_ITERS) {
                sched_yield();
            } else {
                pthread_mutex_lock(&p->mu);
                atomic_fetch_add(&p->sleepers, 1);
                while ((uint32_t)(atomic_load(&p->state) >> 32) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&p->cv, &p->mu);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->mu);
            }
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        seen = g;
        run_claims(p, g);
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
    /* workers need no index of their own: they claim indices per job */
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            p->n = i;
            mope_pool_free(p);
            mope_error_set(err, MOPE_ENOMEM, "could not start thread %d of %d", i, n_threads);
            return NULL;
        }
    }
    return p;
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
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    /* new generation with index 0 already claimed by the caller; seq_cst,
     * so it is ordered before the sleepers load */
    uint64_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
    uint32_t gen = (uint32_t)(s >> 32) + 1;
    atomic_store(&p->state, (uint64_t)gen << 32 | 1u);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel);
    run_claims(p, gen); /* the shares of workers that have not started yet */
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < p->n; spins++) {
        if (spins < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
}
