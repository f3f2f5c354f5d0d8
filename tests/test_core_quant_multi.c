/* Multi-row dot products (mope_vec_dot_rows) under every ISA against the
 * scalar single-row kernel, one activation row at a time (within rounding),
 * and against the same ISA's single-row kernel (bit-identical: a row's
 * result must not depend on the batch it is in): every supported
 * weight type, row counts 1..11 (full chunks of the kernel plus every
 * remainder), lengths of 1..17 blocks, padded activation strides and an
 * interleaved output stride whose gaps must stay untouched. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mope/quant.h"

static const int types[] = {MOPE_TYPE_F32,  MOPE_TYPE_F16,  MOPE_TYPE_BF16, MOPE_TYPE_Q8_0, MOPE_TYPE_Q4_0,
                            MOPE_TYPE_Q4_1, MOPE_TYPE_Q5_0, MOPE_TYPE_Q4_K, MOPE_TYPE_Q5_K, MOPE_TYPE_Q6_K};
#define N_TYPES (int)(sizeof types / sizeof types[0])
enum { MAX_ROWS = 11, LDS = 3 };

static void *xalloc(size_t n) {
    void *p = mope_alloc(n ? n : 1, 1);
    assert_non_null(p);
    return p;
}

/* Per-block magnitudes over three decades, so a wrong block scale or a
 * row mix-up shows far above the rounding noise. */
static void fill(mope_rng *r, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 32) {
        float scale = powf(10.0f, -1.5f + 3.0f * mope_rng_uniform(r));
        for (int64_t j = i; j < i + 32 && j < n; j++) x[j] = scale * mope_rng_normal(r);
    }
}

static void check_type(int type, int64_t n, mope_rng *rng) {
    const mope_type_traits *t = mope_type_get(type);
    int vdt = t->vec_dot_type;
    size_t wrs = mope_row_size(type, n), xrs = mope_row_size(vdt, n);
    size_t ldx = xrs + 40; /* not a multiple of any block: the kernels must use ldx, not the row size */
    float *wf = xalloc(sizeof(float) * (size_t)n), *xf = xalloc(sizeof(float) * (size_t)n);
    float *wd = xalloc(sizeof(float) * (size_t)n), *xd = xalloc(sizeof(float) * (size_t)n);
    void *wq = xalloc(wrs);
    char *xq = xalloc(ldx * MAX_ROWS);
    double mag[MAX_ROWS];
    fill(rng, wf, n);
    assert_int_equal(mope_quantize_row(type, wf, wq, n), 0);
    assert_int_equal(mope_dequantize_row(type, wq, wd, n), 0);
    /* the K-quants' offsets (dmin * m) reach about the block's largest |w|:
     * their terms are bounded by 3 * that, times |x| */
    float *bmax = xalloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i += 32) {
        float m = 0;
        for (int64_t j = i; j < i + 32 && j < n; j++) m = fmaxf(m, fabsf(wd[j]));
        for (int64_t j = i; j < i + 32 && j < n; j++) bmax[j] = m;
    }
    for (int r = 0; r < MAX_ROWS; r++) {
        fill(rng, xf, n);
        mope_quantize_act(type, xf, xq + (size_t)r * ldx, n);
        mope_dequantize_row(vdt, xq + (size_t)r * ldx, xd, n);
        mag[r] = 0;
        for (int64_t i = 0; i < n; i++) mag[r] += (fabs(wd[i]) + 3.0 * bmax[i]) * fabs(xd[i]);
    }
    float ref[MAX_ROWS];
    for (int r = 0; r < MAX_ROWS; r++) mope_vec_dot_isa(MOPE_ISA_SCALAR, type, n, &ref[r], wq, xq + (size_t)r * ldx);
    for (int isa = 0; isa <= (int)mope_quant_best_isa(); isa++) {
        float same[MAX_ROWS];
        for (int r = 0; r < MAX_ROWS; r++) mope_vec_dot_isa((mope_isa)isa, type, n, &same[r], wq, xq + (size_t)r * ldx);
        for (int nr = 1; nr <= MAX_ROWS; nr++) {
            float out[MAX_ROWS * LDS];
            for (int i = 0; i < MAX_ROWS * LDS; i++) out[i] = -12345.0f;
            mope_vec_dot_rows_isa((mope_isa)isa, type, n, nr, out, LDS, wq, xq, ldx);
            for (int i = 0; i < MAX_ROWS * LDS; i++) {
                int r = i / LDS;
                if (i % LDS || r >= nr) {
                    if (out[i] != -12345.0f)
                        fail_msg("%s %s nr=%d: wrote outside the output rows (index %d)", t->name,
                                 mope_isa_name((mope_isa)isa), nr, i);
                    continue;
                }
                /* both sums are exact integer block sums rounded to float
                 * and added in different orders */
                double tol = 2.0 * (double)(n + 16) * ldexp(1.0, -24) * mag[r] + 1e-30;
                if (memcmp(&out[i], &same[r], sizeof(float)) != 0)
                    fail_msg("%s %s n=%lld nr=%d row %d: %.9g, single-row kernel %.9g (must be bit-identical)",
                             t->name, mope_isa_name((mope_isa)isa), (long long)n, nr, r, out[i], same[r]);
                if (!(fabs((double)out[i] - ref[r]) <= tol))
                    fail_msg("%s %s n=%lld nr=%d row %d: %.9g vs scalar %.9g (tol %.3g)", t->name,
                             mope_isa_name((mope_isa)isa), (long long)n, nr, r, out[i], ref[r], tol);
            }
        }
    }
    mope_free(wf), mope_free(xf), mope_free(wd), mope_free(xd), mope_free(wq), mope_free(xq), mope_free(bmax);
}

static void test_rows_match_single(void **state) {
    (void)state;
    mope_rng rng;
    mope_rng_seed(&rng, 7);
    for (int k = 0; k < N_TYPES; k++) {
        int64_t blk = mope_type_get(types[k])->blck_size;
        /* float types: lengths that leave SIMD tails; block types: 1, 3, 4, 5 and 17 blocks */
        const int64_t lens_f[] = {1, 15, 16, 37, 256, 1000};
        const int64_t lens_b[] = {1, 3, 4, 5, 17};
        if (blk == 1) {
            for (size_t i = 0; i < sizeof lens_f / sizeof lens_f[0]; i++) check_type(types[k], lens_f[i], &rng);
        } else {
            for (size_t i = 0; i < sizeof lens_b / sizeof lens_b[0]; i++) {
                int64_t n = lens_b[i] * blk;
                if (n > 17 * 32 && blk == 32) n = 17 * 32;
                check_type(types[k], n, &rng);
            }
        }
    }
}

/* Hand-computed: a Q8_0 block of weights all 127 (scale exactly 1) and
 * activation rows all 127 * (r+1) (scale exactly r+1): each dot is exactly
 * 32 * 127 * 127 * (r+1). */
static void test_rows_hand(void **state) {
    (void)state;
    float w[32], x[6][32];
    for (int i = 0; i < 32; i++) w[i] = 127.0f;
    for (int r = 0; r < 6; r++)
        for (int i = 0; i < 32; i++) x[r][i] = 127.0f * (float)(r + 1);
    unsigned char wq[34], xq[6][34];
    assert_int_equal(mope_quantize_row(MOPE_TYPE_Q8_0, w, wq, 32), 0);
    for (int r = 0; r < 6; r++) mope_quantize_act(MOPE_TYPE_Q8_0, x[r], xq[r], 32);
    for (int isa = 0; isa <= (int)mope_quant_best_isa(); isa++) {
        float s[6] = {0};
        mope_vec_dot_rows_isa((mope_isa)isa, MOPE_TYPE_Q8_0, 32, 6, s, 1, wq, xq, 34);
        for (int r = 0; r < 6; r++) assert_true(s[r] == 32.0f * 127.0f * 127.0f * (float)(r + 1));
    }
}

/* A type with no kernel gives zeros, as mope_vec_dot does. */
static void test_rows_unsupported(void **state) {
    (void)state;
    float s[4] = {1, 1, 1, 1};
    unsigned char buf[256] = {0};
    mope_vec_dot_rows(MOPE_TYPE_Q2_K, 256, 4, s, 1, buf, buf, 0);
    for (int r = 0; r < 4; r++) assert_true(s[r] == 0.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_match_single),
        cmocka_unit_test(test_rows_hand),
        cmocka_unit_test(test_rows_unsupported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
