/* Core utilities: half-float conversions against the hardware converter's
 * rules (checked on exactly representable values and rounding edges), the
 * thread pool's coverage of every index, and rng determinism. */
#include <math.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "mope/core.h"

static void test_f16_exact(void **state) {
    (void)state;
    /* Every finite half converts to f32 and back unchanged. */
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        float f = mope_f16_to_f32((uint16_t)h);
        assert_int_equal(mope_f32_to_f16(f), h);
    }
    assert_true(mope_f16_to_f32(0x3c00) == 1.0f);
    assert_true(mope_f16_to_f32(0xc000) == -2.0f);
    assert_true(mope_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(mope_f16_to_f32(0x7bff) == 65504.0f);
}

static void test_f16_rounding(void **state) {
    (void)state;
    /* 1 + 2^-11 is halfway between 1 and 1+2^-10: ties to even (1.0). */
    assert_int_equal(mope_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    /* 1 + 3*2^-11 is halfway between 1+2^-10 and 1+2^-9: ties to even. */
    assert_int_equal(mope_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    assert_int_equal(mope_f32_to_f16(70000.0f), 0x7c00);
    assert_int_equal(mope_f32_to_f16(-70000.0f), 0xfc00);
    assert_int_equal(mope_f32_to_f16(ldexpf(1.0f, -26)), 0x0000);
    assert_int_equal(mope_f32_to_f16(ldexpf(3.0f, -26)), 0x0001); /* 0.75 ulp rounds up */
    assert_true(isnan(mope_f16_to_f32(mope_f32_to_f16(NAN))));
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(mope_f32_to_bf16(1.0f), 0x3f80);
    assert_true(mope_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is a tie between 1 and 1+2^-7: to even. */
    assert_int_equal(mope_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    assert_int_equal(mope_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
}

typedef struct {
    int hits[1000];
} pool_ctx;

static void pool_job(void *ctx, int ith, int nth) {
    pool_ctx *c = ctx;
    int64_t lo, hi;
    mope_split(1000, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) c->hits[i]++;
}

static void test_pool(void **state) {
    (void)state;
    for (int nt = 1; nt <= 4; nt++) {
        mope_error err = {0};
        mope_pool *p = mope_pool_create(nt, &err);
        assert_non_null(p);
        static pool_ctx c;
        memset(&c, 0, sizeof c);
        for (int rep = 0; rep < 500; rep++) mope_pool_run(p, pool_job, &c);
        for (int i = 0; i < 1000; i++) assert_int_equal(c.hits[i], 500);
        mope_pool_free(p);
    }
}

static void test_rng(void **state) {
    (void)state;
    mope_rng a, b;
    mope_rng_seed(&a, 42);
    mope_rng_seed(&b, 42);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 100000; i++) {
        assert_true(mope_rng_u64(&a) == mope_rng_u64(&b));
        float z = mope_rng_normal(&a);
        mope_rng_normal(&b);
        sum += z;
        sum2 += (double)z * z;
    }
    assert_true(fabs(sum / 1e5) < 0.02);
    assert_true(fabs(sum2 / 1e5 - 1.0) < 0.02);
    for (int i = 0; i < 1000; i++) assert_true(mope_rng_below(&a, 7) < 7);
}

static void test_error(void **state) {
    (void)state;
    mope_error err = {0};
    assert_int_equal(mope_error_set(&err, MOPE_EFORMAT, "bad %s", "thing"), MOPE_EFORMAT);
    mope_error_prefix(&err, "file %d", 3);
    assert_string_equal(err.msg, "file 3: bad thing");
    assert_null(mope_alloc(SIZE_MAX / 2, 4));
}

/* FNV-1a 64 reference vectors (from the algorithm's published test suite),
 * and chaining: hashing in two calls equals hashing in one. */
static void test_hash64(void **state) {
    (void)state;
    assert_true(mope_hash64(MOPE_HASH64_INIT, "", 0) == 0xcbf29ce484222325ull);
    assert_true(mope_hash64(MOPE_HASH64_INIT, "a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(mope_hash64(MOPE_HASH64_INIT, "foobar", 6) == 0x85944171f73967e8ull);
    assert_true(mope_hash64(mope_hash64(MOPE_HASH64_INIT, "foo", 3), "bar", 3) == 0x85944171f73967e8ull);
}

static void test_utf8(void **state) {
    (void)state;
    const char ok[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\xa6\x99"; /* a é € 🦙 */
    assert_true(mope_utf8_valid(ok, sizeof ok - 1));
    size_t n;
    char *c = mope_utf8_sanitize(ok, sizeof ok - 1, &n);
    assert_int_equal(n, sizeof ok - 1);
    assert_memory_equal(c, ok, n);
    free(c);
    /* lone continuation, truncated 4-byte lead, overlong "/", surrogate, > U+10FFFF */
    const char *bad[] = {"\x80", "\xf0\x9f\xa6", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    const size_t nrep[] = {1, 3, 2, 3, 4};
    for (int i = 0; i < 5; i++) {
        assert_false(mope_utf8_valid(bad[i], strlen(bad[i])));
        c = mope_utf8_sanitize(bad[i], strlen(bad[i]), &n);
        assert_int_equal(n, 3 * nrep[i]); /* one U+FFFD per byte */
        for (size_t k = 0; k < nrep[i]; k++) assert_memory_equal(c + 3 * k, "\xef\xbf\xbd", 3);
        assert_true(mope_utf8_valid(c, n));
        free(c);
    }
    c = mope_utf8_sanitize("x\xffy", 3, &n);
    assert_string_equal(c, "x\xef\xbf\xbdy");
    free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_exact), cmocka_unit_test(test_f16_rounding), cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_pool),      cmocka_unit_test(test_rng),          cmocka_unit_test(test_error), cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_hash64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
