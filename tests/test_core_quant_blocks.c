/* Block layouts from hand-built bytes (GGUF_FACTS.md §2): each block is
 * written byte by byte in the test, and its dequantisation under every ISA
 * must equal values computed here from the format's formula.  Also type
 * traits, row sizes, error returns, and f16/bf16 row round trips. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "mope/quant.h"

static void expect_dequant(int type, const void *blk, int64_t n, const float *want) {
    float got[512];
    assert_true(n <= 512);
    for (int isa = 0; isa <= (int)mope_quant_best_isa(); isa++) {
        assert_int_equal(mope_dequantize_row_isa((mope_isa)isa, type, blk, got, n), 0);
        for (int64_t i = 0; i < n; i++)
            if (got[i] != want[i])
                fail_msg("%s %s element %lld: %g, want %g", mope_type_name(type), mope_isa_name((mope_isa)isa),
                         (long long)i, got[i], want[i]);
    }
}

static void test_q8_0_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[2 * 34];
    float want[64];
    b[0] = 0x00, b[1] = 0x38; /* d = 0.5 (half 0x3800, little-endian) */
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16), want[j] = 0.5f * (j - 16);
    b[34] = 0x00, b[35] = 0xc0; /* d = -2 */
    for (int j = 0; j < 32; j++) b[36 + j] = (uint8_t)(int8_t)(127 - 8 * j), want[32 + j] = -2.0f * (127 - 8 * j);
    expect_dequant(MOPE_TYPE_Q8_0, b, 64, want);
}

static void test_q4_0_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[18];
    float want[32];
    b[0] = 0x00, b[1] = 0x40; /* d = 2 */
    for (int j = 0; j < 16; j++) {
        b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
        want[j] = 2.0f * (j - 8);           /* low nibble: element j */
        want[j + 16] = 2.0f * (15 - j - 8); /* high nibble: element j+16 */
    }
    expect_dequant(MOPE_TYPE_Q4_0, b, 32, want);
}

static void test_q4_1_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[20];
    float want[32];
    b[0] = 0x00, b[1] = 0x3c; /* d = 1 */
    b[2] = 0x00, b[3] = 0xbe; /* m = -1.5 */
    for (int j = 0; j < 16; j++) {
        b[4 + j] = (uint8_t)(j | ((j ^ 5) << 4));
        want[j] = j - 1.5f;
        want[j + 16] = (j ^ 5) - 1.5f;
    }
    expect_dequant(MOPE_TYPE_Q4_1, b, 32, want);
}

static void test_q5_0_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[22];
    float want[32];
    b[0] = 0x00, b[1] = 0x3c; /* d = 1 */
    b[2] = 0x55, b[3] = 0x55, b[4] = 0xaa, b[5] = 0xaa; /* qh = 0xaaaa5555 */
    for (int j = 0; j < 16; j++) {
        b[6 + j] = (uint8_t)(j | ((15 - j) << 4));
        want[j] = (float)((j | ((j % 2 == 0) << 4)) - 16);             /* bits 0..15: 0x5555 */
        want[j + 16] = (float)(((15 - j) | ((j % 2 == 1) << 4)) - 16); /* bits 16..31: 0xaaaa */
    }
    expect_dequant(MOPE_TYPE_Q5_0, b, 32, want);
}

/* Sub-block scales {1,2,3,4,5,6,7,63} and mins {0,1,2,3,60,61,62,63}, packed
 * by hand: bytes 0-3 sc[j] | (sc[j+4]>>4)<<6, bytes 4-7 m[j] | (m[j+4]>>4)<<6,
 * bytes 8-11 (sc[j+4]&15) | (m[j+4]&15)<<4. */
static const uint8_t k_scales[12] = {0x01, 0x02, 0x03, 0xc4, 0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xd6, 0xe7, 0xff};
static const int k_sc[8] = {1, 2, 3, 4, 5, 6, 7, 63}, k_m[8] = {0, 1, 2, 3, 60, 61, 62, 63};

static void test_q4_K_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[144];
    float want[256];
    b[0] = 0x00, b[1] = 0x3c; /* d = 1 */
    b[2] = 0x00, b[3] = 0x38; /* dmin = 0.5 */
    memcpy(b + 4, k_scales, 12);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            b[16 + 32 * c + l] = (uint8_t)((l & 15) | (((l + c) & 15) << 4));
            want[64 * c + l] = (float)(k_sc[2 * c] * (l & 15)) - 0.5f * k_m[2 * c];
            want[64 * c + 32 + l] = (float)(k_sc[2 * c + 1] * ((l + c) & 15)) - 0.5f * k_m[2 * c + 1];
        }
    expect_dequant(MOPE_TYPE_Q4_K, b, 256, want);
}

static void test_q5_K_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[176];
    float want[256];
    b[0] = 0x00, b[1] = 0x3c;
    b[2] = 0x00, b[3] = 0x38;
    memcpy(b + 4, k_scales, 12);
    for (int l = 0; l < 32; l++) b[16 + l] = (uint8_t)(l * 37 + 11); /* qh */
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            uint8_t qh = (uint8_t)(l * 37 + 11);
            b[48 + 32 * c + l] = (uint8_t)((l & 15) | (((l + c) & 15) << 4));
            int lo = (l & 15) + 16 * ((qh >> (2 * c)) & 1), hi = ((l + c) & 15) + 16 * ((qh >> (2 * c + 1)) & 1);
            want[64 * c + l] = (float)(k_sc[2 * c] * lo) - 0.5f * k_m[2 * c];
            want[64 * c + 32 + l] = (float)(k_sc[2 * c + 1] * hi) - 0.5f * k_m[2 * c + 1];
        }
    expect_dequant(MOPE_TYPE_Q5_K, b, 256, want);
}

static int v6(int e) { return (e * 7 + 3) % 64; } /* the 6-bit value chosen for element e */

static void test_q6_K_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[210];
    float want[256];
    /* ql[128] at 0, qh[64] at 128, scales[16] at 192, d at 208 */
    for (int h = 0; h < 2; h++) {
        int o = 128 * h;
        for (int l = 0; l < 32; l++) {
            b[64 * h + l] = (uint8_t)((v6(o + l) & 15) | ((v6(o + 64 + l) & 15) << 4));
            b[64 * h + 32 + l] = (uint8_t)((v6(o + 32 + l) & 15) | ((v6(o + 96 + l) & 15) << 4));
            b[128 + 32 * h + l] = (uint8_t)((v6(o + l) >> 4) | ((v6(o + 32 + l) >> 4) << 2) |
                                            ((v6(o + 64 + l) >> 4) << 4) | ((v6(o + 96 + l) >> 4) << 6));
        }
    }
    for (int j = 0; j < 16; j++) b[192 + j] = (uint8_t)(int8_t)(j - 8);
    b[208] = 0x00, b[209] = 0x34; /* d = 0.25 */
    for (int e = 0; e < 256; e++) want[e] = 0.25f * (float)((e / 16 - 8) * (v6(e) - 32));
    expect_dequant(MOPE_TYPE_Q6_K, b, 256, want);
}

static void test_q8_K_block(void **state) {
    (void)state;
    _Alignas(16) uint8_t b[292];
    float want[256], d = 0.125f;
    memcpy(b, &d, 4);
    for (int j = 0; j < 256; j++) b[4 + j] = (uint8_t)(int8_t)(j - 128), want[j] = 0.125f * (j - 128);
    memset(b + 260, 0, 32);
    expect_dequant(MOPE_TYPE_Q8_K, b, 256, want);

    /* produced activations carry bsums = sums of 16 consecutive qs */
    float x[512];
    for (int i = 0; i < 512; i++) x[i] = sinf(0.37f * (float)i) * (1 + (float)(i % 17));
    _Alignas(16) uint8_t q[2 * 292];
    mope_quantize_act(MOPE_TYPE_Q4_K, x, q, 512);
    for (int blk = 0; blk < 2; blk++)
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += (int8_t)q[292 * blk + 4 + 16 * g + j];
            int16_t bs;
            memcpy(&bs, q + 292 * blk + 260 + 2 * g, 2);
            assert_int_equal(bs, s);
        }
}

/* ------------------------------------------------------------- f16, bf16 */

static void test_half_rows_round_trip(void **state) {
    (void)state;
    static uint16_t h[65536], h2[65536];
    static float f[65536];
    int n = 0;
    for (uint32_t v = 0; v < 65536; v++)
        if (((v >> 10) & 0x1f) != 0x1f) h[n++] = (uint16_t)v; /* every finite half */
    n -= n % 8;
    assert_int_equal(mope_dequantize_row(MOPE_TYPE_F16, h, f, n), 0);
    assert_int_equal(mope_quantize_row(MOPE_TYPE_F16, f, h2, n), 0);
    assert_memory_equal(h, h2, (size_t)n * 2);
    assert_true(f[0x3c00] == 1.0f);

    n = 0;
    for (uint32_t v = 0; v < 65536; v++)
        if (((v >> 7) & 0xff) != 0xff) h[n++] = (uint16_t)v; /* every finite bf16 */
    assert_int_equal(mope_dequantize_row(MOPE_TYPE_BF16, h, f, n), 0);
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &f[i], 4);
        assert_int_equal(bits, (uint32_t)h[i] << 16);
    }
    assert_int_equal(mope_quantize_row(MOPE_TYPE_BF16, f, h2, n), 0);
    assert_memory_equal(h, h2, (size_t)n * 2);
}

/* ---------------------------------------------------------------- traits */

static void test_traits(void **state) {
    (void)state;
    struct { int type; const char *name; int64_t blk; size_t size; bool sup; int vdt; } t[] = {
        {MOPE_TYPE_F32, "f32", 1, 4, true, MOPE_TYPE_F32},       {MOPE_TYPE_F16, "f16", 1, 2, true, MOPE_TYPE_F16},
        {MOPE_TYPE_BF16, "bf16", 1, 2, true, MOPE_TYPE_F32},     {MOPE_TYPE_Q8_0, "q8_0", 32, 34, true, MOPE_TYPE_Q8_0},
        {MOPE_TYPE_Q4_0, "q4_0", 32, 18, true, MOPE_TYPE_Q8_0},  {MOPE_TYPE_Q4_1, "q4_1", 32, 20, true, MOPE_TYPE_Q8_0},
        {MOPE_TYPE_Q5_0, "q5_0", 32, 22, true, MOPE_TYPE_Q8_0},  {MOPE_TYPE_Q4_K, "q4_K", 256, 144, true, MOPE_TYPE_Q8_K},
        {MOPE_TYPE_Q5_K, "q5_K", 256, 176, true, MOPE_TYPE_Q8_K}, {MOPE_TYPE_Q6_K, "q6_K", 256, 210, true, MOPE_TYPE_Q8_K},
        {MOPE_TYPE_Q8_K, "q8_K", 256, 292, false, MOPE_TYPE_Q8_K}, {MOPE_TYPE_Q5_1, "q5_1", 32, 24, false, MOPE_TYPE_Q8_1},
        {MOPE_TYPE_Q8_1, "q8_1", 32, 36, false, MOPE_TYPE_Q8_1}, {MOPE_TYPE_Q2_K, "q2_K", 256, 84, false, MOPE_TYPE_Q8_K},
        {MOPE_TYPE_Q3_K, "q3_K", 256, 110, false, MOPE_TYPE_Q8_K},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        const mope_type_traits *tr = mope_type_get(t[i].type);
        assert_non_null(tr);
        assert_string_equal(tr->name, t[i].name);
        assert_string_equal(mope_type_name(t[i].type), t[i].name);
        assert_int_equal(tr->blck_size, t[i].blk);
        assert_int_equal(tr->type_size, t[i].size);
        assert_int_equal(tr->supported, t[i].sup);
        assert_int_equal(tr->vec_dot_type, t[i].vdt);
        assert_int_equal(mope_type_from_name(t[i].name), t[i].type);
        assert_int_equal(mope_row_size(t[i].type, 3 * t[i].blk), 3 * t[i].size);
    }
    assert_int_equal(mope_type_from_name("Q4_K"), MOPE_TYPE_Q4_K);
    assert_int_equal(mope_type_from_name("BF16"), MOPE_TYPE_BF16);
    assert_int_equal(mope_type_from_name("q4_2"), -1);
    assert_int_equal(mope_type_from_name(NULL), -1);
    assert_null(mope_type_get(4)); /* removed Q4_2 */
    assert_null(mope_type_get(-1));
    assert_null(mope_type_get(MOPE_TYPE_COUNT));
    assert_string_equal(mope_type_name(99), "unknown");
    /* rows must be whole blocks */
    assert_int_equal(mope_row_size(MOPE_TYPE_Q8_0, 64), 68);
    assert_int_equal(mope_row_size(MOPE_TYPE_Q8_0, 33), 0);
    assert_int_equal(mope_row_size(MOPE_TYPE_Q4_K, 4096), 16 * 144);
    assert_int_equal(mope_row_size(MOPE_TYPE_Q4_K, 4096 + 32), 0);
    assert_int_equal(mope_row_size(MOPE_TYPE_Q6_K, 128), 0);
    assert_int_equal(mope_row_size(MOPE_TYPE_F16, 7), 14);
    assert_int_equal(mope_row_size(MOPE_TYPE_F32, -1), 0);
    assert_int_equal(mope_row_size(4, 32), 0);
    assert_int_equal(mope_row_size(MOPE_TYPE_F32, INT64_MAX), 0); /* 4 * n overflows size_t */
}

static void test_conversion_errors(void **state) {
    (void)state;
    float f[512] = {0};
    _Alignas(16) uint8_t q[1024];
    assert_int_equal(mope_quantize_row(MOPE_TYPE_Q8_0, f, q, 33), MOPE_EINVAL);
    assert_int_equal(mope_dequantize_row(MOPE_TYPE_Q4_K, q, f, 300), MOPE_EINVAL);
    assert_int_equal(mope_quantize_row(MOPE_TYPE_Q2_K, f, q, 256), MOPE_EUNSUPPORTED);
    assert_int_equal(mope_dequantize_row(MOPE_TYPE_Q3_K, q, f, 256), MOPE_EUNSUPPORTED);
    assert_int_equal(mope_dequantize_row(4, q, f, 32), MOPE_EUNSUPPORTED);
    assert_int_equal(mope_quantize_row(-3, f, q, 32), MOPE_EUNSUPPORTED);
    /* an all-zero row quantises to zeros (no 0/0) in every format */
    const int types[] = {MOPE_TYPE_Q8_0, MOPE_TYPE_Q4_0, MOPE_TYPE_Q4_1, MOPE_TYPE_Q5_0,
                         MOPE_TYPE_Q4_K, MOPE_TYPE_Q5_K, MOPE_TYPE_Q6_K, MOPE_TYPE_Q8_K};
    float y[512];
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        assert_int_equal(mope_quantize_row(types[k], f, q, 512), 0);
        assert_int_equal(mope_dequantize_row(types[k], q, y, 512), 0);
        for (int i = 0; i < 512; i++) assert_true(y[i] == 0.0f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0_block), cmocka_unit_test(test_q4_0_block),
        cmocka_unit_test(test_q4_1_block), cmocka_unit_test(test_q5_0_block),
        cmocka_unit_test(test_q4_K_block), cmocka_unit_test(test_q5_K_block),
        cmocka_unit_test(test_q6_K_block), cmocka_unit_test(test_q8_K_block),
        cmocka_unit_test(test_half_rows_round_trip), cmocka_unit_test(test_traits),
        cmocka_unit_test(test_conversion_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
