/* GGUF reader/writer: every value type written and read back, exact round
 * trips, the real vocab files, and hand-made hostile headers that must fail
 * with a message naming the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mope/gguf.h"
#include "mope/io.h"

#define VOCAB_DIR MOPE_SHARED_DIR "/testdata/tokenizers/"

/* ---- byte builder for hand-made files ---- */
typedef struct bb {
    uint8_t b[8192];
    size_t n;
} bb;

static void bb_raw(bb *b, const void *p, size_t n) {
    assert_true(b->n + n <= sizeof b->b);
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void bb_u32(bb *b, uint32_t v) { bb_raw(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_raw(b, &v, 8); }
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}
static void bb_hdr(bb *b, uint32_t version, uint64_t n_t, uint64_t n_kv) {
    b->n = 0;
    bb_raw(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_t);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v) {
    bb_str(b, key);
    bb_u32(b, MOPE_GGUF_U32);
    bb_u32(b, v);
}
static void bb_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, off);
}
static void bb_pad(bb *b, size_t align, size_t extra) {
    while (b->n % align) b->b[b->n++] = 0;
    for (size_t i = 0; i < extra; i++) b->b[b->n++] = (uint8_t)i;
}

/* Parses a hostile buffer from an exact-size heap copy (so ASan sees any
 * over-read) and asserts failure with `word` in the message. */
static void expect_fail(const bb *b, const char *word) {
    uint8_t *copy = malloc(b->n);
    memcpy(copy, b->b, b->n);
    mope_error err = {0};
    mope_gguf *g = mope_gguf_open_memory(copy, b->n, &err);
    if (g) fail_msg("parse succeeded, expected failure mentioning '%s'", word);
    assert_true(err.code < 0);
    if (!strstr(err.msg, word)) fail_msg("message '%s' does not mention '%s'", err.msg, word);
    free(copy);
}

static mope_gguf *expect_ok(const bb *b) {
    mope_error err = {0};
    mope_gguf *g = mope_gguf_open_memory(b->b, b->n, &err);
    if (!g) fail_msg("unexpected failure: %s", err.msg);
    return g;
}

static void test_hostile_headers(void **state) {
    (void)state;
    bb b;
    const uint64_t ne2[2] = {32, 2};

    /* Sanity: the builder makes a valid file, so each failure below is due to
     * the one thing changed. */
    bb_hdr(&b, 3, 1, 1);
    bb_kv_u32(&b, "a", 7);
    bb_tensor(&b, "t", 2, ne2, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 256);
    mope_gguf *g = expect_ok(&b);
    assert_int_equal(mope_gguf_n_tensors(g), 1);
    assert_int_equal(mope_gguf_tensor_at(g, 0)->nbytes, 256);
    mope_gguf_close(g);

    bb_hdr(&b, 3, 0, 0);
    b.b[3] = 'X';
    expect_fail(&b, "magic");
    b.n = 3;
    expect_fail(&b, "GGUF");
    bb_hdr(&b, 1, 0, 0);
    expect_fail(&b, "version 1");
    bb_hdr(&b, 4, 0, 0);
    expect_fail(&b, "version 4");
    bb_hdr(&b, 0x03000000u, 0, 0);
    expect_fail(&b, "big-endian");
    bb_hdr(&b, 2, 0, 0); /* v2 accepted */
    g = expect_ok(&b);
    assert_int_equal(mope_gguf_version(g), 2);
    mope_gguf_close(g);

    bb_hdr(&b, 3, 0, (uint64_t)1 << 60);
    bb_kv_u32(&b, "a", 1);
    expect_fail(&b, "kv_count");
    bb_hdr(&b, 3, (uint64_t)1 << 60, 1);
    bb_kv_u32(&b, "a", 1);
    expect_fail(&b, "tensor_count");
    bb_hdr(&b, 3, 0, 0);
    b.n -= 3;
    expect_fail(&b, "truncated");

    bb_hdr(&b, 3, 0, 1); /* key length 2^63 */
    bb_u64(&b, (uint64_t)1 << 63);
    bb_raw(&b, "abcdefgh", 8);
    expect_fail(&b, "string length");
    bb_hdr(&b, 3, 0, 1); /* string value length 2^63 */
    bb_str(&b, "k");
    bb_u32(&b, MOPE_GGUF_STRING);
    bb_u64(&b, (uint64_t)1 << 63);
    bb_raw(&b, "abcdefgh", 8);
    expect_fail(&b, "string length");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "nest");
    bb_u32(&b, MOPE_GGUF_ARRAY);
    bb_u32(&b, MOPE_GGUF_ARRAY);
    bb_u64(&b, 1);
    bb_u32(&b, MOPE_GGUF_U8);
    bb_u64(&b, 1);
    bb_u32(&b, 0);
    expect_fail(&b, "nested");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, MOPE_GGUF_ARRAY);
    bb_u32(&b, MOPE_GGUF_U32);
    bb_u64(&b, (uint64_t)1 << 62);
    bb_u64(&b, 0);
    expect_fail(&b, "cannot fit");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, MOPE_GGUF_ARRAY);
    bb_u32(&b, MOPE_GGUF_STRING);
    bb_u64(&b, (uint64_t)1 << 61);
    bb_u64(&b, 0);
    expect_fail(&b, "cannot fit");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, MOPE_GGUF_ARRAY);
    bb_u32(&b, 13);
    bb_u64(&b, 0);
    expect_fail(&b, "element type 13");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u64(&b, 0);
    expect_fail(&b, "unknown value type 13");

    bb_hdr(&b, 3, 0, 2);
    bb_kv_u32(&b, "same.key", 1);
    bb_kv_u32(&b, "same.key", 2);
    expect_fail(&b, "duplicate key");

    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "", 1);
    expect_fail(&b, "empty key");

    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 3);
    bb_raw(&b, "a\0b", 3);
    bb_u32(&b, MOPE_GGUF_U8);
    bb_u32(&b, 0);
    expect_fail(&b, "NUL");

    const uint64_t ne5[5] = {1, 1, 1, 1, 1};
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "t", 5, ne5, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 32);
    expect_fail(&b, "n_dims 5");

    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "t", 2, ne2, 99, 0);
    bb_pad(&b, 32, 256);
    expect_fail(&b, "type 99");
    bb_hdr(&b, 3, 1, 0); /* IQ types exist in ggml but mope does not handle them */
    bb_tensor(&b, "t", 2, ne2, 16, 0);
    bb_pad(&b, 32, 256);
    expect_fail(&b, "type 16");

    const uint64_t big[3] = {(uint64_t)1 << 32, (uint64_t)1 << 32, 4};
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "t", 3, big, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 32);
    expect_fail(&b, "overflow");
    const uint64_t big2[2] = {(uint64_t)1 << 61, 1}; /* elements fit, bytes do not */
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "t", 2, big2, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 32);
    expect_fail(&b, "overflow");
    const uint64_t neg[2] = {UINT64_MAX, 1};
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "t", 2, neg, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 32);
    expect_fail(&b, "too large");
    const uint64_t q[2] = {33, 1};
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "t", 2, q, MOPE_TYPE_Q8_0, 0);
    bb_pad(&b, 32, 64);
    expect_fail(&b, "multiple of the q8_0 block size");

    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "t", 2, ne2, MOPE_TYPE_F32, 16);
    bb_pad(&b, 32, 512);
    expect_fail(&b, "not a multiple of the alignment");

    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, "blk.0.attn_q.weight", 2, ne2, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 255);
    expect_fail(&b, "past end of file");
    expect_fail(&b, "blk.0.attn_q.weight");
    bb_hdr(&b, 3, 1, 0); /* offset so large that offset + size wraps */
    bb_tensor(&b, "t", 2, ne2, MOPE_TYPE_F32, UINT64_MAX - 31);
    bb_pad(&b, 32, 256);
    expect_fail(&b, "past end of file");

    bb_hdr(&b, 3, 2, 0);
    bb_tensor(&b, "w", 2, ne2, MOPE_TYPE_F32, 0);
    bb_tensor(&b, "w", 2, ne2, MOPE_TYPE_F32, 256);
    bb_pad(&b, 32, 512);
    expect_fail(&b, "duplicate tensor name");

    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = 0;
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, longname, 2, ne2, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 256);
    expect_fail(&b, "too long");
    longname[63] = 0; /* 63 bytes is the longest allowed */
    bb_hdr(&b, 3, 1, 0);
    bb_tensor(&b, longname, 2, ne2, MOPE_TYPE_F32, 0);
    bb_pad(&b, 32, 256);
    g = expect_ok(&b);
    assert_non_null(mope_gguf_find_tensor(g, longname));
    mope_gguf_close(g);

    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 0);
    expect_fail(&b, "power of two");
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 3);
    expect_fail(&b, "power of two");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, MOPE_GGUF_U64);
    bb_u64(&b, 64);
    expect_fail(&b, "expected u32");

    /* Alignment 64: the data section moves to the next multiple of 64. */
    bb_hdr(&b, 3, 1, 1);
    bb_kv_u32(&b, "general.alignment", 64);
    bb_tensor(&b, "t", 2, ne2, MOPE_TYPE_F32, 0);
    size_t hdr_end = b.n;
    bb_pad(&b, 64, 256);
    g = expect_ok(&b);
    assert_int_equal(mope_gguf_alignment(g), 64);
    assert_int_equal(mope_gguf_data_offset(g), (hdr_end + 63) / 64 * 64);
    assert_ptr_equal(mope_gguf_tensor_at(g, 0)->data, b.b + (hdr_end + 63) / 64 * 64);
    mope_gguf_close(g);
}

/* ---- full write/read of every value type ---- */

typedef struct tspec {
    const char *name;
    mope_type type;
    int n_dims;
    int64_t ne[4];
    size_t nbytes; /* hand-computed from the block tables in GGUF_FACTS.md */
} tspec;

static const tspec tspecs[] = {
    {"f32.mat", MOPE_TYPE_F32, 2, {5, 3}, 60},
    {"f16.vec", MOPE_TYPE_F16, 1, {7}, 14},
    {"bf16.4d", MOPE_TYPE_BF16, 4, {2, 3, 2, 2}, 48},
    {"q8_0", MOPE_TYPE_Q8_0, 2, {64, 2}, 4 * 34},
    {"q4_0", MOPE_TYPE_Q4_0, 2, {32, 3}, 3 * 18},
    {"q4_1", MOPE_TYPE_Q4_1, 1, {32}, 20},
    {"q5_0", MOPE_TYPE_Q5_0, 1, {32}, 22},
    {"q5_1", MOPE_TYPE_Q5_1, 1, {32}, 24},
    {"q8_1", MOPE_TYPE_Q8_1, 1, {32}, 36},
    {"q2_k", MOPE_TYPE_Q2_K, 1, {256}, 84},
    {"q3_k", MOPE_TYPE_Q3_K, 1, {256}, 110},
    {"q4_k", MOPE_TYPE_Q4_K, 2, {256, 2}, 288},
    {"q5_k", MOPE_TYPE_Q5_K, 1, {256}, 176},
    {"q6_k", MOPE_TYPE_Q6_K, 3, {256, 1, 3}, 630},
    {"q8_k", MOPE_TYPE_Q8_K, 1, {512}, 584},
    {"empty", MOPE_TYPE_F32, 2, {0, 4}, 0},
};
#define N_TSPECS (sizeof tspecs / sizeof tspecs[0])

static const char *const str_elems[] = {"alpha", "", "γάμμα", "delta with spaces"};

static mope_gguf_writer *make_full_writer(uint8_t **tdata) {
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mope_gguf_set_u32(w, "general.alignment", 64), 0);
    assert_int_equal(mope_gguf_set_u8(w, "v.u8", 200), 0);
    assert_int_equal(mope_gguf_set_i8(w, "v.i8", -100), 0);
    assert_int_equal(mope_gguf_set_u16(w, "v.u16", 60000), 0);
    assert_int_equal(mope_gguf_set_i16(w, "v.i16", -30000), 0);
    assert_int_equal(mope_gguf_set_u32(w, "v.u32", 4000000000u), 0);
    assert_int_equal(mope_gguf_set_i32(w, "v.i32", -2000000000), 0);
    assert_int_equal(mope_gguf_set_u64(w, "v.u64", ((uint64_t)1 << 63) + 5), 0);
    assert_int_equal(mope_gguf_set_i64(w, "v.i64", -((int64_t)1 << 62)), 0);
    assert_int_equal(mope_gguf_set_f32(w, "v.f32", 1.5f), 0);
    assert_int_equal(mope_gguf_set_f64(w, "v.f64", -2.25e100), 0);
    assert_int_equal(mope_gguf_set_bool(w, "v.bool", true), 0);
    assert_int_equal(mope_gguf_set_str(w, "v.str", "placeholder"), 0);
    assert_int_equal(mope_gguf_set_str(w, "v.str", "héllo"), 0); /* replaces, keeps position */
    assert_int_equal(mope_gguf_set_strn(w, "v.strn", "a\0b", 3), 0);
    const uint8_t au8[] = {0, 1, 255};
    const int8_t ai8[] = {-128, 0, 127};
    const uint16_t au16[] = {0, 65535};
    const int16_t ai16[] = {-32768, 32767};
    const uint32_t au32[] = {1, 4294967295u};
    const int32_t ai32[] = {-5, 7, 2147483647};
    const float af32[] = {0.25f, -1e30f};
    const uint8_t abool[] = {1, 0, 1};
    const uint64_t au64[] = {UINT64_MAX, 3};
    const int64_t ai64[] = {INT64_MIN, 9};
    const double af64[] = {3.5, -0.125};
    assert_int_equal(mope_gguf_set_arr(w, "a.u8", MOPE_GGUF_U8, au8, 3), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.i8", MOPE_GGUF_I8, ai8, 3), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.u16", MOPE_GGUF_U16, au16, 2), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.i16", MOPE_GGUF_I16, ai16, 2), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.u32", MOPE_GGUF_U32, au32, 2), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.i32", MOPE_GGUF_I32, ai32, 3), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.f32", MOPE_GGUF_F32, af32, 2), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.bool", MOPE_GGUF_BOOL, abool, 3), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.u64", MOPE_GGUF_U64, au64, 2), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.i64", MOPE_GGUF_I64, ai64, 2), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.f64", MOPE_GGUF_F64, af64, 2), 0);
    assert_int_equal(mope_gguf_set_arr(w, "a.empty", MOPE_GGUF_F32, NULL, 0), 0);
    assert_int_equal(mope_gguf_set_arr_str(w, "a.str", str_elems, NULL, 4), 0);
    const size_t lens[] = {2, 0};
    const char *const parts[] = {"x\0y", NULL};
    assert_int_equal(mope_gguf_set_arr_str(w, "a.strlen", parts, lens, 2), 0);
    /* Writer refuses what a reader would reject. */
    assert_int_not_equal(mope_gguf_set_u8(w, "", 1), 0);
    assert_int_not_equal(mope_gguf_set_arr(w, "a.bad", MOPE_GGUF_STRING, au8, 1), 0);
    assert_int_not_equal(mope_gguf_set_arr(w, "a.bad", MOPE_GGUF_ARRAY, au8, 1), 0);

    mope_rng rng;
    mope_rng_seed(&rng, 1234);
    size_t total = 0;
    for (size_t i = 0; i < N_TSPECS; i++) total += tspecs[i].nbytes;
    *tdata = malloc(total + 1);
    for (size_t i = 0; i < total; i++) (*tdata)[i] = (uint8_t)mope_rng_u64(&rng);
    size_t off = 0;
    mope_error err = {0};
    for (size_t i = 0; i < N_TSPECS; i++) {
        const tspec *t = &tspecs[i];
        if (mope_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, *tdata + off, &err))
            fail_msg("add_tensor %s: %s", t->name, err.msg);
        off += t->nbytes;
    }
    assert_int_equal(mope_gguf_add_tensor(w, "f32.mat", MOPE_TYPE_F32, 1, tspecs[0].ne, *tdata, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate"));
    const int64_t bad_ne[1] = {31};
    assert_true(mope_gguf_add_tensor(w, "bad", MOPE_TYPE_Q4_0, 1, bad_ne, *tdata, &err) < 0);
    assert_non_null(strstr(err.msg, "block size"));
    assert_true(mope_gguf_add_tensor(w, "bad", (mope_type)4, 1, bad_ne, *tdata, &err) < 0);
    assert_non_null(strstr(err.msg, "type 4"));
    return w;
}

static void check_full(const mope_gguf *g, const uint8_t *tdata) {
    assert_int_equal(mope_gguf_version(g), 3);
    assert_int_equal(mope_gguf_alignment(g), 64);
    assert_int_equal(mope_gguf_data_offset(g) % 64, 0);
    assert_int_equal(mope_gguf_n_kv(g), 28);
    assert_string_equal(mope_gguf_kv_key(g, 0), "general.alignment");
    assert_string_equal(mope_gguf_kv_key(g, 12), "v.str"); /* replaced in place */
    int64_t i64;
    uint64_t u64;
    double f64;
    bool b;
    mope_gguf_str s;
    assert_int_equal(mope_gguf_get_i64(g, "v.u8", &i64), 0); assert_int_equal(i64, 200);
    assert_int_equal(mope_gguf_get_i64(g, "v.i8", &i64), 0); assert_int_equal(i64, -100);
    assert_int_equal(mope_gguf_get_i64(g, "v.u16", &i64), 0); assert_int_equal(i64, 60000);
    assert_int_equal(mope_gguf_get_i64(g, "v.i16", &i64), 0); assert_int_equal(i64, -30000);
    assert_int_equal(mope_gguf_get_i64(g, "v.u32", &i64), 0); assert_int_equal(i64, 4000000000ll);
    assert_int_equal(mope_gguf_get_i64(g, "v.i32", &i64), 0); assert_int_equal(i64, -2000000000ll);
    assert_int_equal(mope_gguf_get_u64(g, "v.u64", &u64), 0); assert_true(u64 == ((uint64_t)1 << 63) + 5);
    assert_int_equal(mope_gguf_get_i64(g, "v.u64", &i64), MOPE_EFORMAT); /* does not fit */
    assert_int_equal(mope_gguf_get_i64(g, "v.i64", &i64), 0); assert_true(i64 == -((int64_t)1 << 62));
    assert_int_equal(mope_gguf_get_u64(g, "v.i8", &u64), MOPE_EFORMAT); /* negative */
    assert_int_equal(mope_gguf_get_i64(g, "v.bool", &i64), 0); assert_int_equal(i64, 1);
    assert_int_equal(mope_gguf_get_f64(g, "v.f32", &f64), 0); assert_true(f64 == 1.5);
    assert_int_equal(mope_gguf_get_f64(g, "v.f64", &f64), 0); assert_true(f64 == -2.25e100);
    assert_int_equal(mope_gguf_get_f64(g, "v.i32", &f64), 0); assert_true(f64 == -2e9);
    assert_int_equal(mope_gguf_get_i64(g, "v.f32", &i64), MOPE_EFORMAT);
    assert_int_equal(mope_gguf_get_bool(g, "v.bool", &b), 0); assert_true(b);
    assert_int_equal(mope_gguf_get_bool(g, "v.u8", &b), MOPE_EFORMAT);
    assert_int_equal(mope_gguf_get_str(g, "v.str", &s), 0);
    assert_int_equal(s.len, strlen("héllo"));
    assert_memory_equal(s.ptr, "héllo", s.len);
    assert_int_equal(mope_gguf_get_str(g, "v.strn", &s), 0);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "a\0b", 3);
    assert_int_equal(mope_gguf_get_str(g, "v.u8", &s), MOPE_EFORMAT);
    assert_int_equal(mope_gguf_get_i64(g, "no.such.key", &i64), -1);
    assert_int_equal(mope_gguf_find_key(g, "no.such.key"), -1);
    assert_int_equal(mope_gguf_kv_type(g, mope_gguf_find_key(g, "v.f64")), MOPE_GGUF_F64);
    assert_true(mope_gguf_kv_f64(g, mope_gguf_find_key(g, "v.f32")) == 1.5);
    assert_int_equal(mope_gguf_kv_i64(g, mope_gguf_find_key(g, "v.i16")), -30000);
    assert_int_equal(mope_gguf_kv_i64(g, mope_gguf_find_key(g, "v.str")), 0);

    /* numeric arrays: element type, count and each value */
    static const struct { const char *key; mope_gguf_type t; uint64_t n; double v[3]; } arrs[] = {
        {"a.u8", MOPE_GGUF_U8, 3, {0, 1, 255}},          {"a.i8", MOPE_GGUF_I8, 3, {-128, 0, 127}},
        {"a.u16", MOPE_GGUF_U16, 2, {0, 65535}},         {"a.i16", MOPE_GGUF_I16, 2, {-32768, 32767}},
        {"a.u32", MOPE_GGUF_U32, 2, {1, 4294967295.0}},  {"a.i32", MOPE_GGUF_I32, 3, {-5, 7, 2147483647}},
        {"a.f32", MOPE_GGUF_F32, 2, {0.25, -1e30f}},     {"a.bool", MOPE_GGUF_BOOL, 3, {1, 0, 1}},
        {"a.u64", MOPE_GGUF_U64, 2, {18446744073709551615.0, 3}},
        {"a.i64", MOPE_GGUF_I64, 2, {-9223372036854775808.0, 9}},
        {"a.f64", MOPE_GGUF_F64, 2, {3.5, -0.125}},      {"a.empty", MOPE_GGUF_F32, 0, {0}},
    };
    for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
        mope_gguf_type et;
        uint64_t n;
        const void *data;
        assert_int_equal(mope_gguf_get_arr(g, arrs[k].key, &et, &n, &data), 0);
        assert_int_equal(et, arrs[k].t);
        assert_int_equal(n, arrs[k].n);
        for (uint64_t j = 0; j < n; j++)
            if (mope_gguf_arr_f64(et, data, j) != arrs[k].v[j]) fail_msg("%s[%d] differs", arrs[k].key, (int)j);
    }
    mope_gguf_type et;
    uint64_t n;
    const void *data;
    assert_int_equal(mope_gguf_get_arr(g, "a.i64", &et, &n, &data), 0);
    assert_true(mope_gguf_arr_i64(et, data, 0) == INT64_MIN);
    assert_int_equal(mope_gguf_get_arr(g, "a.u64", &et, &n, &data), 0);
    assert_true(mope_gguf_arr_i64(et, data, 0) == INT64_MAX); /* saturates */
    assert_int_equal(mope_gguf_get_arr(g, "v.u8", &et, &n, &data), MOPE_EFORMAT);

    int64_t ks = mope_gguf_find_key(g, "a.str");
    assert_int_equal(mope_gguf_kv_arr(g, ks, &et, &n, NULL), 0);
    assert_int_equal(et, MOPE_GGUF_STRING);
    assert_int_equal(n, 4);
    for (int j = 0; j < 4; j++) {
        s = mope_gguf_arr_str(g, ks, (uint64_t)j);
        assert_int_equal(s.len, strlen(str_elems[j]));
        assert_memory_equal(s.ptr, str_elems[j], s.len);
    }
    assert_null(mope_gguf_arr_str(g, ks, 4).ptr); /* out of range */
    assert_null(mope_gguf_arr_str(g, mope_gguf_find_key(g, "a.u8"), 0).ptr);
    ks = mope_gguf_find_key(g, "a.strlen");
    s = mope_gguf_arr_str(g, ks, 0);
    assert_int_equal(s.len, 2);
    assert_memory_equal(s.ptr, "x\0", 2);
    assert_int_equal(mope_gguf_arr_str(g, ks, 1).len, 0);

    /* tensors: shape, type, byte size, data, and ggml's back-to-back layout */
    assert_int_equal(mope_gguf_n_tensors(g), N_TSPECS);
    size_t off = 0, src = 0, fsize;
    const uint8_t *base = mope_gguf_base(g, &fsize);
    for (size_t i = 0; i < N_TSPECS; i++) {
        const tspec *ts = &tspecs[i];
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, (int64_t)i);
        assert_ptr_equal(mope_gguf_find_tensor(g, ts->name), t);
        assert_string_equal(t->name, ts->name);
        assert_int_equal(t->type, ts->type);
        assert_int_equal(t->n_dims, ts->n_dims);
        int64_t nel = 1;
        for (int d = 0; d < 4; d++) {
            int64_t want = d < ts->n_dims ? ts->ne[d] : 1;
            assert_int_equal(t->ne[d], want);
            nel *= want;
        }
        assert_int_equal(t->n_elements, nel);
        assert_int_equal(t->nbytes, ts->nbytes);
        assert_int_equal(t->offset, off);
        assert_ptr_equal(t->data, base + mope_gguf_data_offset(g) + off);
        if (ts->nbytes) assert_memory_equal(t->data, tdata + src, ts->nbytes);
        off += (ts->nbytes + 63) / 64 * 64;
        src += ts->nbytes;
    }
    assert_int_equal(fsize, mope_gguf_data_offset(g) + off);
    assert_null(mope_gguf_find_tensor(g, "nope"));
    assert_null(mope_gguf_tensor_at(g, -1));
    assert_null(mope_gguf_tensor_at(g, (int64_t)N_TSPECS));
}

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mope_test_io_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
}

static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_write_read_all_types(void **state) {
    (void)state;
    uint8_t *tdata;
    mope_gguf_writer *w = make_full_writer(&tdata);
    mope_error err = {0};
    void *buf;
    size_t size;
    if (mope_gguf_writer_to_memory(w, &buf, &size, &err)) fail_msg("%s", err.msg);
    mope_gguf *g = mope_gguf_open_memory(buf, size, &err);
    if (!g) fail_msg("%s", err.msg);
    check_full(g, tdata);

    /* read -> write gives the same bytes */
    mope_gguf_writer *w2 = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_copy_kv(w2, g, NULL), 0);
    for (int64_t i = 0; i < mope_gguf_n_tensors(g); i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        assert_int_equal(mope_gguf_add_tensor(w2, t->name, t->type, t->n_dims, t->ne, t->data, &err), 0);
    }
    void *buf2;
    size_t size2;
    assert_int_equal(mope_gguf_writer_to_memory(w2, &buf2, &size2, &err), 0);
    assert_int_equal(size2, size);
    assert_memory_equal(buf2, buf, size);
    free(buf2);
    mope_gguf_writer_free(w2);

    /* copy_kv with a prefix takes only matching keys, in order */
    w2 = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_copy_kv(w2, g, "a."), 0);
    assert_int_equal(mope_gguf_writer_to_memory(w2, &buf2, &size2, &err), 0);
    mope_gguf *g2 = mope_gguf_open_memory(buf2, size2, &err);
    assert_non_null(g2);
    assert_int_equal(mope_gguf_n_kv(g2), 14);
    assert_string_equal(mope_gguf_kv_key(g2, 0), "a.u8");
    assert_int_equal(mope_gguf_alignment(g2), 32);
    mope_gguf_close(g2);
    free(buf2);
    mope_gguf_writer_free(w2);

    /* writer_write: file bytes equal the in-memory form; no temp file left */
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/model.gguf", tmpdir);
    if (mope_gguf_writer_write(w, path, &err)) fail_msg("%s", err.msg);
    assert_int_equal(count_dir_entries(tmpdir), 1);
    void *fbuf;
    size_t fsize;
    assert_int_equal(mope_io_read_file(path, &fbuf, &fsize, &err), 0);
    assert_int_equal(fsize, size);
    assert_memory_equal(fbuf, buf, size);
    free(fbuf);
    mope_gguf *gf = mope_gguf_open(path, &err);
    if (!gf) fail_msg("%s", err.msg);
    check_full(gf, tdata);
    mope_gguf_close(gf);

    /* an invalid general.alignment makes the write fail and leaves the old file */
    assert_int_equal(mope_gguf_set_u32(w, "general.alignment", 3), 0);
    assert_true(mope_gguf_writer_write(w, path, &err) < 0);
    assert_non_null(strstr(err.msg, "power of two"));
    assert_int_equal(count_dir_entries(tmpdir), 1);
    gf = mope_gguf_open(path, &err);
    assert_non_null(gf);
    mope_gguf_close(gf);
    unlink(path);
    rmdir(tmpdir);

    mope_gguf_close(g);
    free(buf);
    free(tdata);
    mope_gguf_writer_free(w);
}

/* ---- the real vocab files ---- */

static void test_real_vocab_files(void **state) {
    (void)state;
    static const struct { const char *file, *model; uint64_t n_tokens, n_merges; const char *tok0; } files[] = {
        {"vocab-llama-spm.gguf", "llama", 32000, 0, "<unk>"},
        {"vocab-gpt2-bpe.gguf", "gpt2", 50257, 50000, "!"},
        {"vocab-llama3-bpe.gguf", "gpt2", 128256, 280147, "!"},
        {"vocab-qwen-bpe.gguf", "gpt2", 151669, 151387, "!"},
    };
    mope_error err = {0};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char path[512];
        snprintf(path, sizeof path, VOCAB_DIR "%s", files[k].file);
        mope_gguf *g = mope_gguf_open(path, &err);
        if (!g) fail_msg("%s", err.msg);
        assert_int_equal(mope_gguf_version(g), 3);
        assert_int_equal(mope_gguf_n_tensors(g), 0);
        mope_gguf_str s;
        assert_int_equal(mope_gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
        assert_int_equal(s.len, strlen(files[k].model));
        assert_memory_equal(s.ptr, files[k].model, s.len);
        mope_gguf_type et;
        uint64_t n;
        const void *data;
        assert_int_equal(mope_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data), 0);
        assert_int_equal(et, MOPE_GGUF_STRING);
        assert_int_equal(n, files[k].n_tokens);
        s = mope_gguf_arr_str(g, mope_gguf_find_key(g, "tokenizer.ggml.tokens"), 0);
        assert_int_equal(s.len, strlen(files[k].tok0));
        assert_memory_equal(s.ptr, files[k].tok0, s.len);
        if (files[k].n_merges) {
            assert_int_equal(mope_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &data), 0);
            assert_int_equal(et, MOPE_GGUF_STRING);
            assert_int_equal(n, files[k].n_merges);
        }
        assert_int_equal(mope_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data), 0);
        assert_int_equal(et, MOPE_GGUF_I32);
        assert_int_equal(n, files[k].n_tokens);

        /* copying every kv into a writer reproduces the file byte for byte */
        mope_gguf_writer *w = mope_gguf_writer_new();
        assert_int_equal(mope_gguf_copy_kv(w, g, NULL), 0);
        void *buf;
        size_t size, fsize;
        const void *orig = mope_gguf_base(g, &fsize);
        assert_int_equal(mope_gguf_writer_to_memory(w, &buf, &size, &err), 0);
        assert_int_equal(size, fsize);
        assert_memory_equal(buf, orig, size);
        free(buf);
        mope_gguf_writer_free(w);
        mope_gguf_close(g);
    }

    /* llama-spm in detail */
    mope_gguf *g = mope_gguf_open(VOCAB_DIR "vocab-llama-spm.gguf", &err);
    assert_non_null(g);
    assert_int_equal(mope_gguf_n_kv(g), 13);
    assert_string_equal(mope_gguf_kv_key(g, 0), "general.architecture");
    assert_int_equal(mope_gguf_kv_type(g, 0), MOPE_GGUF_STRING);
    int64_t bos;
    assert_int_equal(mope_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &bos), 0);
    assert_int_equal(bos, 1);
    int64_t kt = mope_gguf_find_key(g, "tokenizer.ggml.tokens");
    mope_gguf_str s1 = mope_gguf_arr_str(g, kt, 1), s2 = mope_gguf_arr_str(g, kt, 2);
    assert_int_equal(s1.len, 3);
    assert_memory_equal(s1.ptr, "<s>", 3);
    assert_int_equal(s2.len, 4);
    assert_memory_equal(s2.ptr, "</s>", 4);
    mope_gguf_type et;
    uint64_t n;
    const void *data;
    assert_int_equal(mope_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data), 0);
    assert_int_equal(et, MOPE_GGUF_F32);
    assert_int_equal(n, 32000);
    mope_gguf_close(g);

    /* missing and non-regular files */
    assert_null(mope_gguf_open(VOCAB_DIR "no-such-file.gguf", &err));
    assert_int_equal(err.code, MOPE_EIO);
    assert_non_null(strstr(err.msg, "no-such-file.gguf"));
    assert_null(mope_gguf_open(VOCAB_DIR, &err));
    assert_non_null(strstr(err.msg, "not a regular file"));
}

/* ---- io.h helpers ---- */

static void test_io_files(void **state) {
    (void)state;
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/data.bin", tmpdir);
    mope_error err = {0};
    const char msg[] = "hello\0world";
    assert_int_equal(mope_io_write_atomic(path, msg, sizeof msg, &err), 0);
    assert_int_equal(mope_io_write_atomic(path, msg, 5, &err), 0); /* replaces */
    void *data;
    size_t n;
    assert_int_equal(mope_io_read_file(path, &data, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(data, "hello"); /* NUL appended */
    free(data);
    assert_int_equal(count_dir_entries(tmpdir), 1);
    assert_int_equal(mope_io_read_file_max(path, 4, &data, &n, &err), MOPE_ERANGE);
    assert_null(data);
    assert_non_null(strstr(err.msg, "limit"));
    assert_int_equal(mope_io_read_file_max(path, 5, &data, &n, &err), 0);
    free(data);
    assert_int_equal(mope_io_write_atomic(path, "", 0, &err), 0);
    assert_int_equal(mope_io_read_file(path, &data, &n, &err), 0);
    assert_int_equal(n, 0);
    free(data);
    /* a hostile file opened by path: the message names the file and the problem */
    const uint8_t v1[24] = {'G', 'G', 'U', 'F', 1};
    assert_int_equal(mope_io_write_atomic(path, v1, sizeof v1, &err), 0);
    assert_null(mope_gguf_open(path, &err));
    assert_non_null(strstr(err.msg, "data.bin"));
    assert_non_null(strstr(err.msg, "version 1"));
    assert_int_equal(mope_io_write_atomic(path, v1, 0, &err), 0);
    assert_null(mope_gguf_open(path, &err));
    assert_non_null(strstr(err.msg, "empty"));
    unlink(path);
    assert_int_equal(mope_io_read_file(path, &data, &n, &err), MOPE_EIO);
    assert_non_null(strstr(err.msg, "data.bin"));
    assert_int_equal(mope_io_read_file(tmpdir, &data, &n, &err), MOPE_EIO);
    assert_non_null(strstr(err.msg, "directory"));
    /* a pipe-like file without a size: /proc reports 0 bytes */
    assert_int_equal(mope_io_read_file("/proc/self/status", &data, &n, &err), 0);
    assert_true(n > 0);
    assert_non_null(strstr(data, "Name:"));
    free(data);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x", tmpdir);
    assert_int_equal(mope_io_write_atomic(bad, "x", 1, &err), MOPE_EIO);
    assert_non_null(strstr(err.msg, "temporary"));
    rmdir(tmpdir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_write_read_all_types),
        cmocka_unit_test(test_real_vocab_files),
        cmocka_unit_test(test_io_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
