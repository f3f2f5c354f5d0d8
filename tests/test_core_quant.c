/* Quantised kernels: every ISA's vec_dot against the scalar reference, the
 * scalar reference against a double-precision dot of the dequantised rows,
 * quantise -> dequantise error within each format's derived bound, SIMD
 * dequantisers bit-identical to the scalar ones, f32 helpers.
 * Hand-built blocks and type traits are in test_core_quant_blocks.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mope/quant.h"

static const int dot_types[] = {MOPE_TYPE_F32,  MOPE_TYPE_F16,  MOPE_TYPE_BF16, MOPE_TYPE_Q8_0,
                                MOPE_TYPE_Q4_0, MOPE_TYPE_Q4_1, MOPE_TYPE_Q5_0, MOPE_TYPE_Q4_K,
                                MOPE_TYPE_Q5_K, MOPE_TYPE_Q6_K};
#define N_DOT_TYPES (int)(sizeof dot_types / sizeof dot_types[0])

/* Data with the features that break quantisers: per-block magnitudes over
 * four decades, blocks of one sign, an isolated outlier, an all-zero block. */
static void fill(mope_rng *r, float *x, int64_t n, int64_t blk) {
    for (int64_t i = 0; i < n; i += blk) {
        float scale = powf(10.0f, -2.0f + 4.0f * mope_rng_uniform(r));
        int kind = (int)mope_rng_below(r, 8);
        for (int64_t j = i; j < i + blk && j < n; j++) {
            float v = scale * mope_rng_normal(r);
            if (kind == 1) v = fabsf(v);
            if (kind == 2) v = -fabsf(v);
            if (kind == 3 && j == i) v *= 20;
            if (kind == 4 && blk > 1) v = 0;
            x[j] = v;
        }
    }
}

static void *xalloc(size_t n) {
    void *p = mope_alloc(n ? n : 1, 1);
    assert_non_null(p);
    return p;
}

/* Byte ranges of the quant indices inside a block of the formats that have
 * an additive offset (Q4_1's m, the K-quants' dmin*m).  Zeroing them and
 * dequantising gives minus the offset of every element; the reference's
 * rounding error scales with |d*q| + |offset| <= |w| + 2|offset|. */
static void offsets(int type, const void *wq, int64_t n, float *off) {
    int lo = 0, hi = 0;
    if (type == MOPE_TYPE_Q4_1) lo = 4, hi = 20;
    if (type == MOPE_TYPE_Q4_K) lo = 16, hi = 144;
    if (type == MOPE_TYPE_Q5_K) lo = 16, hi = 176;
    if (!hi) {
        memset(off, 0, (size_t)n * sizeof *off);
        return;
    }
    const mope_type_traits *t = mope_type_get(type);
    size_t rs = mope_row_size(type, n);
    uint8_t *z = xalloc(rs);
    memcpy(z, wq, rs);
    for (int64_t b = 0; b < n / t->blck_size; b++) memset(z + (size_t)b * t->type_size + lo, 0, (size_t)(hi - lo));
    assert_int_equal(mope_dequantize_row_isa(MOPE_ISA_SCALAR, type, z, off, n), 0);
    mope_free(z);
}

static void check_dot(int type, int64_t n, mope_rng *r) {
    const mope_type_traits *t = mope_type_get(type), *tx = mope_type_get(t->vec_dot_type);
    float *w = xalloc((size_t)n * 4), *x = xalloc((size_t)n * 4), *wf = xalloc((size_t)n * 4);
    float *xf = xalloc((size_t)n * 4), *off = xalloc((size_t)n * 4);
    void *wq = xalloc(mope_row_size(type, n)), *xq = xalloc(mope_row_size(t->vec_dot_type, n));
    fill(r, w, n, t->blck_size);
    fill(r, x, n, tx->blck_size);
    assert_int_equal(mope_quantize_row(type, w, wq, n), 0);
    mope_quantize_act(type, x, xq, n);
    assert_int_equal(mope_dequantize_row_isa(MOPE_ISA_SCALAR, type, wq, wf, n), 0);
    assert_int_equal(mope_dequantize_row_isa(MOPE_ISA_SCALAR, t->vec_dot_type, xq, xf, n), 0);
    offsets(type, wq, n, off);
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        exact += (double)wf[i] * xf[i];
        mag += (fabs(wf[i]) + 2 * fabs(off[i])) * fabs(xf[i]);
    }
    /* The reference rounds each block's product (<= 4 roundings) and adds
     * the nb block terms in float: |err| <= (nb + 4) u mag with u = 2^-24;
     * float types accumulate in double (far inside the same bound with
     * nb = n).  SIMD kernels satisfy the same bound with their own order,
     * so ISA vs reference may differ by twice it.  The +16 covers the
     * conversion of the dequantised inputs and the final hsum. */
    int64_t nterms = t->blck_size == 1 ? n : n / t->blck_size;
    double tol = (double)(nterms + 16) * ldexp(1.0, -24) * mag + 1e-30;
    float ref;
    mope_vec_dot_isa(MOPE_ISA_SCALAR, type, n, &ref, wq, xq);
    if (!(fabs(ref - exact) <= tol))
        fail_msg("%s n=%lld: scalar %.9g vs exact %.9g (tol %.3g)", t->name, (long long)n, ref, exact, tol);
    for (int isa = MOPE_ISA_AVX2; isa <= (int)mope_quant_best_isa(); isa++) {
        float v;
        mope_vec_dot_isa((mope_isa)isa, type, n, &v, wq, xq);
        if (!(fabs(v - ref) <= 2 * tol))
            fail_msg("%s n=%lld %s: %.9g vs scalar %.9g (tol %.3g)", t->name, (long long)n,
                     mope_isa_name((mope_isa)isa), v, ref, 2 * tol);
    }
    mope_free(w), mope_free(x), mope_free(wf), mope_free(xf), mope_free(off), mope_free(wq), mope_free(xq);
}

static void test_vec_dot_all_isas(void **state) {
    (void)state;
    mope_rng r;
    mope_rng_seed(&r, 42);
    /* block counts 1..7 and odd large ones exercise every unrolled tail */
    const int64_t legacy_blocks[] = {1, 2, 3, 4, 5, 7, 65, 128};
    const int64_t k_blocks[] = {1, 2, 3, 16};
    const int64_t float_n[] = {1, 7, 8, 15, 16, 33, 63, 64, 100, 1000, 4099};
    for (int ti = 0; ti < N_DOT_TYPES; ti++) {
        int type = dot_types[ti];
        int64_t blk = mope_type_get(type)->blck_size;
        for (int rep = 0; rep < 3; rep++) {
            if (blk == 1)
                for (size_t k = 0; k < sizeof float_n / sizeof *float_n; k++) check_dot(type, float_n[k], &r);
            else if (blk == 32)
                for (size_t k = 0; k < sizeof legacy_blocks / sizeof *legacy_blocks; k++)
                    check_dot(type, 32 * legacy_blocks[k], &r);
            else
                for (size_t k = 0; k < sizeof k_blocks / sizeof *k_blocks; k++) check_dot(type, 256 * k_blocks[k], &r);
        }
    }
}

/* Correlated rows with small integer values: every ISA's dot must land
 * within the worst-case quantisation error of the true sum (a bound that a
 * wrong element order or scale would break by far). */
static void test_vec_dot_known_value(void **state) {
    (void)state;
    const int64_t n = 512;
    float w[512], x[512];
    double expect = 0, sw = 0, sx = 0;
    for (int i = 0; i < n; i++) {
        w[i] = (float)((i % 7) - 3);
        x[i] = 0.5f * w[i] + 0.25f * (float)((i % 5) - 2);
        expect += (double)w[i] * x[i];
        sw += fabs(w[i]), sx += fabs(x[i]);
    }
    /* per-element error bounds as fractions of the row's absmax (3 for w,
     * 2 for x): from quant_ref.c's table */
    struct { int type; double cw, cx; } cases[] = {
        {MOPE_TYPE_F32, 0, 0},
        {MOPE_TYPE_F16, ldexp(1, -11), ldexp(1, -11)},
        {MOPE_TYPE_BF16, ldexp(1, -8), 0},
        {MOPE_TYPE_Q8_0, 1.001 / 254, 1.001 / 254},
        {MOPE_TYPE_Q4_0, 1.001 / 16, 1.001 / 254},
        {MOPE_TYPE_Q6_K, (1.0 / 31 + 1.001 / (31 * 127)) / 2, 1.0 / 256},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int type = cases[k].type;
        _Alignas(64) uint8_t wq[4096], xq[4096];
        assert_int_equal(mope_quantize_row(type, w, wq, n), 0);
        mope_quantize_act(type, x, xq, n);
        double tol = cases[k].cw * 3 * sx + cases[k].cx * 2 * sw + 1e-5 * fabs(expect);
        for (int isa = 0; isa <= (int)mope_quant_best_isa(); isa++) {
            float s;
            mope_vec_dot_isa((mope_isa)isa, type, n, &s, wq, xq);
            if (!(fabs(s - expect) <= tol))
                fail_msg("%s %s: %.6g vs %.6g (tol %.3g)", mope_type_name(type), mope_isa_name((mope_isa)isa), s, expect, tol);
        }
    }
}

/* ---------------------------------------------------- quantisation error */

static float absmax(const float *x, int n) {
    float m = 0;
    for (int i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

static float signedmax(const float *x, int n) {
    float a = 0, m = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > a) a = fabsf(x[i]), m = x[i];
    return m;
}

/* Symmetric grids with the signed extreme at -levels*d (q4_0, q5_0, q8_K):
 * error <= d/2 except elements of the other sign past (levels-1/2)*d, which
 * clip to (levels-1)*d.  ulp: relative slack of the stored scale. */
static void bound_signed(const float *x, const float *y, int n, float levels, double ulp) {
    float mx = signedmax(x, n), d = fabsf(mx) / levels;
    for (int j = 0; j < n; j++) {
        double err = fabs((double)x[j] - y[j]);
        double b = d / 2 * (1 + ulp);
        if (x[j] * mx < 0 && fabsf(x[j]) > (levels - 0.5f) * d) b = fabsf(x[j]) - (levels - 1) * d;
        b += 1e-6 * fabsf(mx);
        if (!(err <= b)) fail_msg("signed grid %g: x=%g y=%g err=%g bound=%g", levels, x[j], y[j], err, b);
    }
}

static void check_bound(double err, double b, const char *what, int j) {
    if (!(err <= b)) fail_msg("%s element %d: err %.4g > bound %.4g", what, j, err, b);
}

static void check_quant_error(int type, const float *x, const float *y, int64_t n) {
    const double ulp = ldexp(1.0, -10); /* a half rounded up is at most 1 ulp = 2^-10 relative above */
    if (type == MOPE_TYPE_Q8_0)
        for (int64_t b = 0; b < n; b += 32) {
            float d = absmax(x + b, 32) / 127;
            for (int j = 0; j < 32; j++)
                check_bound(fabs(x[b + j] - y[b + j]), d / 2 * (1 + ulp) + 1e-6 * d, "q8_0", (int)(b + j));
        }
    if (type == MOPE_TYPE_Q4_0)
        for (int64_t b = 0; b < n; b += 32) bound_signed(x + b, y + b, 32, 8, ulp);
    if (type == MOPE_TYPE_Q5_0)
        for (int64_t b = 0; b < n; b += 32) bound_signed(x + b, y + b, 32, 16, ulp);
    if (type == MOPE_TYPE_Q8_K)
        for (int64_t b = 0; b < n; b += 256) bound_signed(x + b, y + b, 256, 128, 1e-6);
    if (type == MOPE_TYPE_Q4_1)
        for (int64_t b = 0; b < n; b += 32) {
            float mn = x[b], mx = x[b];
            for (int j = 1; j < 32; j++) mn = fminf(mn, x[b + j]), mx = fmaxf(mx, x[b + j]);
            /* m rounded down by <= 2^-11 |min| widens the range */
            double bound = ((mx - mn) + ldexp(fabs(mn), -10)) / 30 * (1 + ulp) + 1e-6 * fmax(fabs(mn), fabs(mx));
            for (int j = 0; j < 32; j++) check_bound(fabs(x[b + j] - y[b + j]), bound, "q4_1", (int)(b + j));
        }
    if (type == MOPE_TYPE_Q4_K || type == MOPE_TYPE_Q5_K) {
        double levels = type == MOPE_TYPE_Q4_K ? 15 : 31;
        for (int64_t b = 0; b < n; b += 256) {
            double mn0[8], mx[8], maxmin = 0, maxrange = 0, amax = absmax(x + b, 256);
            for (int s = 0; s < 8; s++) {
                mn0[s] = 0, mx[s] = x[b + 32 * s];
                for (int l = 0; l < 32; l++) mn0[s] = fmin(mn0[s], x[b + 32 * s + l]), mx[s] = fmax(mx[s], x[b + 32 * s + l]);
                maxmin = fmax(maxmin, -mn0[s]);
            }
            double dmin = maxmin / 63 * (1 + ulp);
            for (int s = 0; s < 8; s++) maxrange = fmax(maxrange, mx[s] - mn0[s] + dmin);
            double d = maxrange / (levels * 63) * (1 + ulp);
            for (int s = 0; s < 8; s++) {
                double bound = (mx[s] - mn0[s] + dmin) / (2 * levels) + d / 2 + 1e-6 * amax;
                for (int l = 0; l < 32; l++)
                    check_bound(fabs(x[b + 32 * s + l] - y[b + 32 * s + l]), bound, mope_type_name(type), (int)(b + 32 * s + l));
            }
        }
    }
    if (type == MOPE_TYPE_Q6_K)
        for (int64_t b = 0; b < n; b += 256) {
            double am[16], maxam = 0;
            for (int s = 0; s < 16; s++) am[s] = absmax(x + b + 16 * s, 16), maxam = fmax(maxam, am[s]);
            double d = maxam / (31 * 127) * (1 + ulp);
            for (int s = 0; s < 16; s++) {
                double bound = (am[s] / 31 + d) / 2 + 1e-6 * maxam;
                for (int l = 0; l < 16; l++)
                    check_bound(fabs(x[b + 16 * s + l] - y[b + 16 * s + l]), bound, "q6_K", (int)(b + 16 * s + l));
            }
        }
    if (type == MOPE_TYPE_F16)
        for (int64_t i = 0; i < n; i++) check_bound(fabs(x[i] - y[i]), fmax(ldexp(fabs(x[i]), -11), ldexp(1.0, -25)), "f16", (int)i);
    if (type == MOPE_TYPE_BF16)
        for (int64_t i = 0; i < n; i++) check_bound(fabs(x[i] - y[i]), ldexp(fabs(x[i]), -8), "bf16", (int)i);
    if (type == MOPE_TYPE_F32)
        for (int64_t i = 0; i < n; i++) assert_true(x[i] == y[i]);
}

static void test_quant_error_bounds(void **state) {
    (void)state;
    mope_rng r;
    mope_rng_seed(&r, 7);
    const int types[] = {MOPE_TYPE_F32,  MOPE_TYPE_F16,  MOPE_TYPE_BF16, MOPE_TYPE_Q8_0, MOPE_TYPE_Q4_0, MOPE_TYPE_Q4_1,
                         MOPE_TYPE_Q5_0, MOPE_TYPE_Q4_K, MOPE_TYPE_Q5_K, MOPE_TYPE_Q6_K, MOPE_TYPE_Q8_K};
    const int64_t n = 256 * 64;
    float *x = xalloc(n * 4), *y = xalloc(n * 4);
    void *q = xalloc(n * 8);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        const mope_type_traits *t = mope_type_get(types[k]);
        for (int rep = 0; rep < 4; rep++) {
            fill(&r, x, n, rep == 3 ? 256 : t->blck_size); /* rep 3: whole super-blocks share a scale */
            assert_int_equal(mope_quantize_row(types[k], x, q, n), 0);
            assert_int_equal(mope_dequantize_row_isa(MOPE_ISA_SCALAR, types[k], q, y, n), 0);
            check_quant_error(types[k], x, y, n);
        }
    }
    mope_free(x), mope_free(y), mope_free(q);
}

/* Worst-case bounds could still hide a quantiser that wastes precision on
 * typical data: N(0,1) rows must come back with a relative RMS error close
 * to step/sqrt(12) (limits are ~15% above what these quantisers reach:
 * q8_0 .0053, q4_0 .087, q4_1 .079, q5_0 .043, q4_K .080, q5_K .039,
 * q6_K .020, q8_K .0067). */
static void test_quant_rms(void **state) {
    (void)state;
    struct { int type; double max_rel_rms; } cases[] = {
        {MOPE_TYPE_Q8_0, 0.0062}, {MOPE_TYPE_Q4_0, 0.10},  {MOPE_TYPE_Q4_1, 0.09},  {MOPE_TYPE_Q5_0, 0.05},
        {MOPE_TYPE_Q4_K, 0.092},  {MOPE_TYPE_Q5_K, 0.045}, {MOPE_TYPE_Q6_K, 0.023}, {MOPE_TYPE_Q8_K, 0.0078},
    };
    const int64_t n = 4096;
    float *x = xalloc(n * 4), *y = xalloc(n * 4);
    void *q = xalloc(n * 4);
    mope_rng r;
    mope_rng_seed(&r, 3);
    for (int64_t i = 0; i < n; i++) x[i] = mope_rng_normal(&r);
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        assert_int_equal(mope_quantize_row(cases[k].type, x, q, n), 0);
        assert_int_equal(mope_dequantize_row(cases[k].type, q, y, n), 0);
        double se = 0;
        for (int64_t i = 0; i < n; i++) se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        double rel = sqrt(se / ss);
        if (!(rel <= cases[k].max_rel_rms))
            fail_msg("%s: relative rms error %.4f > %.4f", mope_type_name(cases[k].type), rel, cases[k].max_rel_rms);
    }
    mope_free(x), mope_free(y), mope_free(q);
}

/* ----------------------------------------------- fast paths, f32 helpers */

static void test_dequant_isas_bit_identical(void **state) {
    (void)state;
    mope_rng r;
    mope_rng_seed(&r, 11);
    const int types[] = {MOPE_TYPE_F32, MOPE_TYPE_F16, MOPE_TYPE_BF16, MOPE_TYPE_Q8_0, MOPE_TYPE_Q4_0, MOPE_TYPE_Q4_1,
                         MOPE_TYPE_Q5_0, MOPE_TYPE_Q4_K, MOPE_TYPE_Q5_K, MOPE_TYPE_Q6_K, MOPE_TYPE_Q8_K};
    const int64_t n = 256 * 5;
    float *x = xalloc(n * 4), *a = xalloc(n * 4), *b = xalloc(n * 4);
    void *q = xalloc(n * 8);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        fill(&r, x, n, 32);
        assert_int_equal(mope_quantize_row(types[k], x, q, n), 0);
        assert_int_equal(mope_dequantize_row_isa(MOPE_ISA_SCALAR, types[k], q, a, n), 0);
        for (int isa = 1; isa <= (int)mope_quant_best_isa(); isa++) {
            assert_int_equal(mope_dequantize_row_isa((mope_isa)isa, types[k], q, b, n), 0);
            if (memcmp(a, b, (size_t)n * 4) != 0)
                fail_msg("%s dequantise differs under %s", mope_type_name(types[k]), mope_isa_name((mope_isa)isa));
        }
    }
    mope_free(x), mope_free(a), mope_free(b), mope_free(q);
}

static void test_f32_helpers(void **state) {
    (void)state;
    mope_rng r;
    mope_rng_seed(&r, 5);
    float a[1031], b[1031], y[1031], y0[1031];
    for (int i = 0; i < 1031; i++) a[i] = mope_rng_normal(&r), b[i] = mope_rng_normal(&r), y0[i] = mope_rng_normal(&r);
    const int lens[] = {0, 1, 5, 8, 16, 17, 64, 65, 100, 1031};
    for (int isa = 0; isa <= (int)mope_quant_best_isa(); isa++)
        for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
            int n = lens[k];
            double e = 0, mag = 0;
            for (int i = 0; i < n; i++) e += (double)a[i] * b[i], mag += fabs((double)a[i] * b[i]);
            float s = mope_dot_f32_isa((mope_isa)isa, a, b, n);
            assert_true(fabs(s - e) <= (n + 8) * ldexp(1.0, -24) * mag);
            memcpy(y, y0, sizeof y);
            mope_axpy_f32_isa((mope_isa)isa, y, 0.37f, a, n);
            for (int i = 0; i < 1031; i++) {
                double want = i < n ? (double)y0[i] + 0.37 * (double)a[i] : y0[i];
                /* one fused or two separate roundings: <= 2 ulp of the terms */
                assert_true(fabs(y[i] - want) <= ldexp(fabs(y0[i]) + fabs(0.37 * a[i]), -23));
            }
        }
}

/* Activation quantisers are SIMD on AVX2 but must give the scalar bytes,
 * ties included: the rows below hold exact halves of the step. */
static void test_quantize_act_isas_identical(void **state) {
    (void)state;
    mope_rng r;
    mope_rng_seed(&r, 23);
    const int64_t n = 1024;
    float *x = xalloc(n * 4);
    uint8_t *a = xalloc(n * 4), *b = xalloc(n * 4);
    const int types[] = {MOPE_TYPE_Q8_0, MOPE_TYPE_Q4_K, MOPE_TYPE_F16, MOPE_TYPE_BF16};
    for (int rep = 0; rep < 6; rep++) {
        fill(&r, x, n, 32);
        if (rep == 4) /* step 1/16 (amax 127/16): (k + 1/2)/16 are exact ties for Q8_0 */
            for (int64_t i = 0; i < n; i++) x[i] = i % 32 == 0 ? 127.0f / 16 : ((float)(i % 200) - 100.5f) / 16;
        if (rep == 5) /* signed max -128/16: Q8_K's scale is 1/16 and the same ties */
            for (int64_t i = 0; i < n; i++) x[i] = i % 256 == 7 ? -8.0f : ((float)(i % 250) - 125.5f) / 16;
        for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
            size_t bytes = mope_row_size(mope_type_get(types[k])->vec_dot_type, n);
            mope_quantize_act_isa(MOPE_ISA_SCALAR, types[k], x, a, n);
            for (int isa = 1; isa <= (int)mope_quant_best_isa(); isa++) {
                memset(b, 0xee, bytes);
                mope_quantize_act_isa((mope_isa)isa, types[k], x, b, n);
                if (memcmp(a, b, bytes) != 0)
                    fail_msg("%s activations differ under %s (rep %d)", mope_type_name(types[k]),
                             mope_isa_name((mope_isa)isa), rep);
            }
        }
    }
    /* the tie rows really hit ties: 100.5 -> 101 away from zero, not 100 */
    for (int64_t i = 0; i < n; i++) x[i] = i % 32 == 0 ? 127.0f / 16 : ((float)(i % 200) - 100.5f) / 16;
    mope_quantize_act(MOPE_TYPE_Q8_0, x, a, n);
    assert_int_equal((int8_t)a[2 + 1], -100); /* x[1] = -99.5/16 -> -100 */
    assert_int_equal((int8_t)a[2 + 2], -99);  /* x[2] = -98.5/16 -> -99 */
    mope_free(x), mope_free(a), mope_free(b);
}

static void test_quantize_rejects_non_finite(void **state) {
    (void)state;
    float x[256] = {0};
    _Alignas(16) uint8_t q[1024];
    x[100] = NAN;
    assert_int_equal(mope_quantize_row(MOPE_TYPE_Q8_0, x, q, 256), MOPE_EINVAL);
    assert_int_equal(mope_quantize_row(MOPE_TYPE_Q4_K, x, q, 256), MOPE_EINVAL);
    x[100] = INFINITY;
    assert_int_equal(mope_quantize_row(MOPE_TYPE_Q6_K, x, q, 256), MOPE_EINVAL);
    assert_int_equal(mope_quantize_row(MOPE_TYPE_F16, x, q, 256), 0); /* f16 has inf */
    float y[256];
    assert_int_equal(mope_dequantize_row(MOPE_TYPE_F16, q, y, 256), 0);
    assert_true(isinf(y[100]));
}

static void test_isa_selection(void **state) {
    (void)state;
    mope_isa best = mope_quant_best_isa();
    assert_int_equal(mope_quant_isa(), best);
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) assert_int_equal(best, MOPE_ISA_AVX512);
    mope_quant_set_isa(MOPE_ISA_SCALAR);
    assert_int_equal(mope_quant_isa(), MOPE_ISA_SCALAR);
    /* the scalar table must now serve mope_vec_dot: compare with forced ISA */
    float w[64], x[64], s0, s1;
    _Alignas(64) uint8_t wq[128], xq[128];
    for (int i = 0; i < 64; i++) w[i] = sinf((float)i), x[i] = cosf((float)i * 0.3f);
    mope_quantize_row(MOPE_TYPE_Q8_0, w, wq, 64);
    mope_quantize_act(MOPE_TYPE_Q8_0, x, xq, 64);
    mope_vec_dot(MOPE_TYPE_Q8_0, 64, &s0, wq, xq);
    mope_vec_dot_isa(MOPE_ISA_SCALAR, MOPE_TYPE_Q8_0, 64, &s1, wq, xq);
    assert_true(s0 == s1);
    mope_quant_set_isa((mope_isa)7); /* out of range: clamps to the best */
    assert_int_equal(mope_quant_isa(), best);
    assert_string_equal(mope_isa_name(MOPE_ISA_AVX2), "avx2");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vec_dot_all_isas),
        cmocka_unit_test(test_vec_dot_known_value),
        cmocka_unit_test(test_quant_error_bounds),
        cmocka_unit_test(test_quant_rms),
        cmocka_unit_test(test_dequant_isas_bit_identical),
        cmocka_unit_test(test_f32_helpers),
        cmocka_unit_test(test_quantize_act_isas_identical),
        cmocka_unit_test(test_quantize_rejects_non_finite),
        cmocka_unit_test(test_isa_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
