/* Thread pool: every index 0..nth-1 of every job runs exactly once, with
 * the pool's nth, and its plain (non-atomic) writes are visible to the
 * caller when mope_pool_run returns -- also with many more threads than
 * CPUs, where shares of workers that have not been scheduled yet are run
 * by whichever thread gets to them first, and across jobs that follow each
 * other closely (a late worker must never run an old job's function under
 * a new generation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <cmocka.h>

#include "mope/core.h"

enum { MAX_T = 64, SLOTS = 4096 };

typedef struct {
    atomic_int calls[MAX_T]; /* per index, over all jobs */
    int bad_nth;
    int expect_nth;
    int job;                 /* written by the caller between jobs */
    int slot[SLOTS];         /* plain writes, checked after each job */
} job_ctx;

static void job_a(void *arg, int ith, int nth) {
    job_ctx *c = arg;
    if (nth != c->expect_nth) c->bad_nth = 1;
    atomic_fetch_add(&c->calls[ith], 1);
    int64_t lo, hi;
    mope_split(SLOTS, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) c->slot[i] = c->job * 2 + 1;
}

/* A different function and context: a late worker that mixed the two up
 * would leave odd values here or count in the wrong table. */
static void job_b(void *arg, int ith, int nth) {
    job_ctx *c = arg;
    if (nth != c->expect_nth) c->bad_nth = 1;
    atomic_fetch_add(&c->calls[ith], 1);
    int64_t lo, hi;
    mope_split(SLOTS, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) c->slot[i] = c->job * 2;
}

static void run_jobs(int n_threads, int n_jobs) {
    mope_error err = {0};
    mope_pool *p = mope_pool_create(n_threads, &err);
    assert_non_null(p);
    assert_int_equal(mope_pool_size(p), n_threads);
    job_ctx *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    a->expect_nth = b->expect_nth = n_threads;
    for (int j = 0; j < n_jobs; j++) {
        job_ctx *c = j % 2 ? b : a;
        c->job = j;
        mope_pool_run(p, j % 2 ? job_b : job_a, c);
        int want = j % 2 ? j * 2 : j * 2 + 1;
        for (int i = 0; i < SLOTS; i++)
            if (c->slot[i] != want) fail_msg("%d threads, job %d: slot %d holds %d, want %d", n_threads, j, i, c->slot[i], want);
    }
    int per = (n_jobs + 1) / 2;
    for (int t = 0; t < n_threads; t++) {
        assert_int_equal(atomic_load(&a->calls[t]), per);
        assert_int_equal(atomic_load(&b->calls[t]), n_jobs / 2);
    }
    assert_int_equal(a->bad_nth, 0);
    assert_int_equal(b->bad_nth, 0);
    free(a), free(b);
    mope_pool_free(p);
}

static void test_pool_exactly_once(void **state) {
    (void)state;
    run_jobs(1, 50);
    run_jobs(2, 2000);
    run_jobs(3, 1000);
}

/* Many more threads than CPUs: most workers are not running when a job is
 * published, so their shares are claimed by the threads that are. */
static void test_pool_oversubscribed(void **state) {
    (void)state;
    int n = 8 * mope_cpu_count();
    if (n > MAX_T) n = MAX_T;
    run_jobs(n, 300);
}

/* A pool left idle long enough for its workers to sleep still runs jobs. */
static void test_pool_after_sleep(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pool *p = mope_pool_create(3, &err);
    assert_non_null(p);
    job_ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->expect_nth = 3;
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (int j = 0; j < 3; j++) {
        nanosleep(&ts, NULL);
        c->job = j;
        mope_pool_run(p, job_a, c);
        for (int i = 0; i < SLOTS; i++) assert_int_equal(c->slot[i], j * 2 + 1);
    }
    for (int t = 0; t < 3; t++) assert_int_equal(atomic_load(&c->calls[t]), 3);
    free(c);
    mope_pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_exactly_once),
        cmocka_unit_test(test_pool_oversubscribed),
        cmocka_unit_test(test_pool_after_sleep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
