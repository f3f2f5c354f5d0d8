/* Few-row kernels of src/core/gemm_*.c:
 * 1. mope_gemm_f16 (the register-tiled F16 GEMM): every output against a
 *    double-precision reference within rounding, and bit-identical to the
 *    same ISA's single-row F16 kernel (mope_vec_dot_isa) on the F16-rounded
 *    row -- a row's logits must not depend on its batch -- over weight-row
 *    and activation-row counts covering full tiles and every remainder,
 *    lengths with and without the 8-element step, padded strides, and
 *    output gaps that must stay untouched.  ISAs without the kernel, and
 *    lengths that are not multiples of 8, must say so and write nothing.
 * 2. mope_round_f16_rows: the values mope_quantize_act(F16) gives.
 * 3. mope_axpy_rows_f32 and _f16 under every ISA against a double
 *    reference, narrow (rank-sized) and wide (output-sized) shapes, with
 *    y's tail untouched.
 * 4. mope_dot_rows_f32 under every ISA against a double reference: row
 *    counts around the 16-row groups, head sizes below, at and above 16,
 *    a row stride wider than d, and s's tail untouched.
 * 5. mope_swiglu_f32 under every ISA against silu(g) * u in double, from
 *    tiny to saturating gates (e^-g overflowing to inf must give -0, not
 *    NaN), lengths off the vector width. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mope/quant.h"

static void *xalloc(size_t n) {
    void *p = mope_alloc(n ? n : 1, 1);
    assert_non_null(p);
    return p;
}

enum { MAX_W = 11, MAX_X = 14, PAD_W = 24, PAD_X = 5, LDY_PAD = 3 };
#define SENTINEL -12345.0f

static void check_gemm(mope_isa isa, int64_t n, mope_rng *rng) {
    size_t wst = (size_t)(n + PAD_W) * sizeof(uint16_t); /* bytes between weight rows */
    size_t ldx = (size_t)(n + PAD_X);                    /* floats between activation rows */
    int64_t ldy = MAX_W + LDY_PAD;
    uint16_t *w = xalloc(wst * MAX_W);
    float *wf = xalloc(sizeof(float) * (size_t)n * MAX_W);
    float *x = xalloc(sizeof(float) * ldx * MAX_X), *xr = xalloc(sizeof(float) * ldx * MAX_X);
    uint16_t *xh = xalloc(sizeof(uint16_t) * (size_t)n * MAX_X);
    float *y = xalloc(sizeof(float) * (size_t)ldy * MAX_X);
    for (int j = 0; j < MAX_W; j++)
        for (int64_t i = 0; i < n; i++) {
            /* magnitudes over two decades, so a row or column mix-up shows */
            float v = mope_rng_normal(rng) * powf(10.0f, (float)(j % 3) - 1.0f);
            w[(size_t)j * (wst / 2) + i] = mope_f32_to_f16(v);
            wf[(size_t)j * n + i] = mope_f16_to_f32(w[(size_t)j * (wst / 2) + i]);
        }
    for (int r = 0; r < MAX_X; r++)
        for (int64_t i = 0; i < n; i++) x[(size_t)r * ldx + i] = mope_rng_normal(rng) * (1.0f + (float)r);
    mope_round_f16_rows(x, ldx, xr, ldx, MAX_X, n);
    for (int r = 0; r < MAX_X; r++) {
        mope_quantize_act(MOPE_TYPE_F16, x + (size_t)r * ldx, xh + (size_t)r * n, n);
        for (int64_t i = 0; i < n; i++)
            if (xr[(size_t)r * ldx + i] != mope_f16_to_f32(xh[(size_t)r * n + i]))
                fail_msg("round_f16_rows row %d elem %lld: %.9g, quantize_act gives %.9g", r, (long long)i,
                         (double)xr[(size_t)r * ldx + i], (double)mope_f16_to_f32(xh[(size_t)r * n + i]));
    }
    for (int nw = 1; nw <= MAX_W; nw++)
        for (int nx = 1; nx <= MAX_X; nx++) {
            for (int64_t i = 0; i < ldy * MAX_X; i++) y[i] = SENTINEL;
            bool ok = mope_gemm_f16_isa(isa, n, nw, w, wst, nx, xr, ldx, y, ldy);
            if (!ok) {
                /* only AVX-512 has the kernel; nothing may be written */
                assert_true(isa != MOPE_ISA_AVX512 || mope_quant_best_isa() < MOPE_ISA_AVX512);
                for (int64_t i = 0; i < ldy * MAX_X; i++) assert_true(y[i] == SENTINEL);
                continue;
            }
            for (int r = 0; r < MAX_X; r++)
                for (int j = 0; j < ldy; j++) {
                    float got = y[(size_t)r * ldy + j];
                    if (r >= nx || j >= nw) {
                        if (got != SENTINEL)
                            fail_msg("n=%lld nw=%d nx=%d: wrote outside at (%d, %d)", (long long)n, nw, nx, r, j);
                        continue;
                    }
                    double ref = 0, mag = 0;
                    for (int64_t i = 0; i < n; i++) {
                        double p = (double)wf[(size_t)j * n + i] * xr[(size_t)r * ldx + i];
                        ref += p;
                        mag += fabs(p);
                    }
                    if (fabs(got - ref) > 1e-5 * mag + 1e-30)
                        fail_msg("n=%lld nw=%d nx=%d out (%d, %d): %.9g, reference %.9g", (long long)n, nw, nx, r, j,
                                 (double)got, ref);
                    float single;
                    mope_vec_dot_isa(isa, MOPE_TYPE_F16, n, &single, (const char *)w + (size_t)j * wst,
                                     xh + (size_t)r * n);
                    if (memcmp(&single, &got, sizeof got) != 0)
                        fail_msg("n=%lld nw=%d nx=%d out (%d, %d): %.9g, single-row kernel %.9g (must be the same)",
                                 (long long)n, nw, nx, r, j, (double)got, (double)single);
                }
        }
    mope_free(w);
    mope_free(wf);
    mope_free(x);
    mope_free(xr);
    mope_free(xh);
    mope_free(y);
}

static void test_gemm_f16(void **state) {
    (void)state;
    mope_rng rng;
    mope_rng_seed(&rng, 7);
    /* 8 and 24: the 8-step only; 32, 256: whole 32-steps; 40, 264, 688
     * (the PrefBench FFN): both */
    const int64_t ns[] = {8, 16, 24, 32, 40, 256, 264, 688};
    for (int isa = MOPE_ISA_SCALAR; isa <= MOPE_ISA_AVX512; isa++)
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) check_gemm((mope_isa)isa, ns[k], &rng);
}

static void test_gemm_f16_refuses(void **state) {
    (void)state;
    uint16_t w[16 * 4] = {0};
    float x[16 * 4] = {0}, y[4] = {SENTINEL, SENTINEL, SENTINEL, SENTINEL};
    /* lengths off the 8-step, empty shapes */
    assert_false(mope_gemm_f16_isa(MOPE_ISA_AVX512, 12, 2, w, 24, 2, x, 12, y, 2));
    assert_false(mope_gemm_f16_isa(MOPE_ISA_AVX512, 16, 0, w, 32, 2, x, 16, y, 2));
    assert_false(mope_gemm_f16_isa(MOPE_ISA_AVX512, 16, 2, w, 32, 0, x, 16, y, 2));
    assert_false(mope_gemm_f16_available(12));
    assert_false(mope_gemm_f16_isa(MOPE_ISA_SCALAR, 16, 2, w, 32, 2, x, 16, y, 2));
    for (int i = 0; i < 4; i++) assert_true(y[i] == SENTINEL);
    assert_true(mope_gemm_f16_available(16) == (mope_quant_isa() == MOPE_ISA_AVX512));
}

static void test_axpy_rows(void **state) {
    (void)state;
    mope_rng rng;
    mope_rng_seed(&rng, 11);
    /* (n, m): rank-side shapes (m <= 32, the narrow kernel) and output-side */
    const int64_t shapes[][2] = {{1, 1},   {3, 5},    {4, 16},   {256, 16}, {257, 16}, {688, 16}, {64, 17},
                                 {7, 32},  {16, 33},  {16, 64},  {16, 128}, {16, 256}, {16, 688}, {5, 100},
                                 {32, 4096}, {9, 79}};
    for (int isa = MOPE_ISA_SCALAR; isa <= MOPE_ISA_AVX512; isa++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t n = shapes[s][0], m = shapes[s][1], ldb = m + 7;
            float *a = xalloc(sizeof(float) * (size_t)n), *B = xalloc(sizeof(float) * (size_t)(n * ldb));
            float *y = xalloc(sizeof(float) * (size_t)(m + 8)), *y0 = xalloc(sizeof(float) * (size_t)m);
            for (int64_t j = 0; j < n; j++) a[j] = mope_rng_normal(&rng);
            for (int64_t i = 0; i < n * ldb; i++) B[i] = mope_rng_normal(&rng);
            for (int64_t o = 0; o < m + 8; o++) y[o] = o < m ? mope_rng_normal(&rng) : SENTINEL;
            memcpy(y0, y, sizeof(float) * (size_t)m);
            mope_axpy_rows_f32_isa((mope_isa)isa, y, a, B, ldb, n, m);
            for (int64_t o = 0; o < m; o++) {
                double ref = y0[o], mag = fabs(y0[o]);
                for (int64_t j = 0; j < n; j++) {
                    ref += (double)a[j] * B[j * ldb + o];
                    mag += fabs((double)a[j] * B[j * ldb + o]);
                }
                if (fabs(y[o] - ref) > 1e-5 * mag)
                    fail_msg("%s n=%lld m=%lld out %lld: %.9g, reference %.9g", mope_isa_name((mope_isa)isa),
                             (long long)n, (long long)m, (long long)o, (double)y[o], ref);
            }
            for (int64_t o = m; o < m + 8; o++) assert_true(y[o] == SENTINEL);
            /* the F16 form on B rounded to F16, against the same reference */
            uint16_t *Bh = xalloc(sizeof(uint16_t) * (size_t)(n * ldb));
            for (int64_t i = 0; i < n * ldb; i++) {
                Bh[i] = mope_f32_to_f16(B[i]);
                B[i] = mope_f16_to_f32(Bh[i]);
            }
            memcpy(y, y0, sizeof(float) * (size_t)m);
            mope_axpy_rows_f16_isa((mope_isa)isa, y, a, Bh, ldb, n, m);
            for (int64_t o = 0; o < m; o++) {
                double ref = y0[o], mag = fabs(y0[o]);
                for (int64_t j = 0; j < n; j++) {
                    ref += (double)a[j] * B[j * ldb + o];
                    mag += fabs((double)a[j] * B[j * ldb + o]);
                }
                if (fabs(y[o] - ref) > 1e-5 * mag)
                    fail_msg("f16 %s n=%lld m=%lld out %lld: %.9g, reference %.9g", mope_isa_name((mope_isa)isa),
                             (long long)n, (long long)m, (long long)o, (double)y[o], ref);
            }
            for (int64_t o = m; o < m + 8; o++) assert_true(y[o] == SENTINEL);
            mope_free(Bh);
            mope_free(a);
            mope_free(B);
            mope_free(y);
            mope_free(y0);
        }
}

static void test_dot_rows(void **state) {
    (void)state;
    mope_rng rng;
    mope_rng_seed(&rng, 13);
    const int64_t ns[] = {1, 2, 15, 16, 17, 33, 100};
    const int64_t ds[] = {1, 8, 16, 32, 40, 64, 128};
    for (int isa = MOPE_ISA_SCALAR; isa <= MOPE_ISA_AVX512; isa++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t b = 0; b < sizeof ds / sizeof ds[0]; b++) {
                int64_t n = ns[a], d = ds[b], ldk = 3 * d + 5;
                float *q = xalloc(sizeof(float) * (size_t)d), *K = xalloc(sizeof(float) * (size_t)(n * ldk));
                float *s = xalloc(sizeof(float) * (size_t)(n + 8));
                for (int64_t i = 0; i < d; i++) q[i] = mope_rng_normal(&rng);
                for (int64_t i = 0; i < n * ldk; i++) K[i] = mope_rng_normal(&rng) * (float)(1 + i / ldk % 5);
                for (int64_t t = 0; t < n + 8; t++) s[t] = SENTINEL;
                mope_dot_rows_f32_isa((mope_isa)isa, q, K, ldk, n, d, s);
                for (int64_t t = 0; t < n; t++) {
                    double ref = 0, mag = 0;
                    for (int64_t i = 0; i < d; i++) {
                        ref += (double)q[i] * K[t * ldk + i];
                        mag += fabs((double)q[i] * K[t * ldk + i]);
                    }
                    if (fabs(s[t] - ref) > 1e-5 * mag + 1e-30)
                        fail_msg("%s n=%lld d=%lld row %lld: %.9g, reference %.9g", mope_isa_name((mope_isa)isa),
                                 (long long)n, (long long)d, (long long)t, (double)s[t], ref);
                }
                for (int64_t t = n; t < n + 8; t++) assert_true(s[t] == SENTINEL);
                mope_free(q);
                mope_free(K);
                mope_free(s);
            }
}

static void test_swiglu(void **state) {
    (void)state;
    mope_rng rng;
    mope_rng_seed(&rng, 17);
    const int64_t ns[] = {1, 15, 16, 17, 100, 688};
    for (int isa = MOPE_ISA_SCALAR; isa <= MOPE_ISA_AVX512; isa++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            int64_t n = ns[a];
            float *g = xalloc(sizeof(float) * (size_t)(n + 4)), *u = xalloc(sizeof(float) * (size_t)n);
            float *g0 = xalloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++) {
                /* gates over [-120, 120] every so often: past expf's range */
                g[i] = i % 7 == 3 ? 240.0f * (mope_rng_uniform(&rng) - 0.5f) : 4.0f * mope_rng_normal(&rng);
                u[i] = mope_rng_normal(&rng);
                g0[i] = g[i];
            }
            for (int64_t i = n; i < n + 4; i++) g[i] = SENTINEL;
            mope_swiglu_f32_isa((mope_isa)isa, g, u, n);
            for (int64_t i = 0; i < n; i++) {
                double want = (double)g0[i] / (1.0 + exp(-(double)g0[i])) * u[i];
                if (!isfinite(g[i]) || fabs(g[i] - want) > 2e-6 * fabs(want) + 1e-30)
                    fail_msg("%s n=%lld i=%lld: g=%.9g u=%.9g gives %.9g, want %.9g", mope_isa_name((mope_isa)isa),
                             (long long)n, (long long)i, (double)g0[i], (double)u[i], (double)g[i], want);
            }
            for (int64_t i = n; i < n + 4; i++) assert_true(g[i] == SENTINEL);
            mope_free(g);
            mope_free(u);
            mope_free(g0);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_f16),
        cmocka_unit_test(test_gemm_f16_refuses),
        cmocka_unit_test(test_axpy_rows),
        cmocka_unit_test(test_dot_rows),
        cmocka_unit_test(test_swiglu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
