/* tl_sgemm: the trainer's sgemm split over the pool's threads.  Checked
 * against a naive double-precision product for every transpose combination,
 * with 1, 2 and 3 threads, for shapes that take each split (rows of C;
 * columns when C has too few rows; too small to split). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mope/core.h"
#include "train/train_internal.h"

static void fill(float *x, size_t n, mope_rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = (float)mope_rng_normal(rng);
}

/* C = alpha op(A) op(B) + beta C0 in double; A is M x K (or K x M when
 * ta), B is K x N (or N x K when tb), all with leading dimensions. */
static void naive(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, const float *C0, double *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
            }
            C[(size_t)i * ldc + j] = alpha * s + beta * (double)C0[(size_t)i * ldc + j];
        }
}

static void check_shape(int M, int N, int K) {
    mope_error err = {0};
    mope_pool *pool[3];
    int threads[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) assert_non_null(pool[t] = mope_pool_create(threads[t], &err));
    mope_rng rng;
    mope_rng_seed(&rng, (uint64_t)(M * 1000003 + N * 1009 + K));
    /* leading dimensions wider than the matrices, so offsets use them */
    int pad = 3, cap = (M > N ? M : N) + pad, kcap = K + pad;
    size_t na = (size_t)cap * kcap, nc = (size_t)M * (N + pad);
    float *A = malloc(na * sizeof(float)), *B = malloc(na * sizeof(float)), *C0 = malloc(nc * sizeof(float));
    float *C[3];
    double *ref = malloc(nc * sizeof(double));
    fill(A, na, &rng);
    fill(B, na, &rng);
    fill(C0, nc, &rng);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
            float alpha = 0.75f, beta = (ta + tb) % 2 ? 1.0f : 0.0f;
            naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ref, ldc);
            for (int t = 0; t < 3; t++) {
                C[t] = malloc(nc * sizeof(float));
                memcpy(C[t], C0, nc * sizeof(float));
                tl_sgemm(pool[t], ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C[t], ldc);
            }
            for (int t = 0; t < 3; t++) {
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < ldc; j++) {
                        size_t e = (size_t)i * ldc + j;
                        if (j >= N) { /* padding columns are not C's */
                            assert_true(C[t][e] == C0[e]);
                            continue;
                        }
                        if (fabs(C[t][e] - ref[e]) > 1e-4 * sqrt((double)K) + 1e-5)
                            fail_msg("%dx%dx%d ta %d tb %d, %d threads: C[%d,%d] = %.7g, "
                                     "expected %.7g",
                                     M, N, K, ta, tb, threads[t], i, j, (double)C[t][e], ref[e]);
                    }
                free(C[t]);
            }
        }
    free(A);
    free(B);
    free(C0);
    free(ref);
    for (int t = 0; t < 3; t++) mope_pool_free(pool[t]);
}

/* rows of C split, the last block shorter */
static void test_rows(void **state) {
    (void)state;
    check_shape(203, 37, 41);
}

/* few rows, many columns: the columns are split */
static void test_columns(void **state) {
    (void)state;
    check_shape(16, 300, 33);
}

/* too small to split: one call on the caller's thread */
static void test_small(void **state) {
    (void)state;
    check_shape(5, 7, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_columns),
        cmocka_unit_test(test_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
