/* Corruption robustness of the GGUF reader: every truncation length on a
 * grid and thousands of random bit flips / byte overwrites of two valid
 * files.  Each variant is parsed from an exact-size heap copy, so ASan flags
 * any read past the end; every success must describe only bytes inside the
 * buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "mope/gguf.h"
#include "mope/io.h"

typedef struct stats {
    long ok, failed;
} stats;

static bool inside(const uint8_t *lo, const uint8_t *hi, const void *p, uint64_t n) {
    const uint8_t *q = p;
    return q >= lo && q <= hi && n <= (uint64_t)(hi - q);
}

/* Touches everything the handle describes and checks it lies in the buffer. */
static void check_parsed(const mope_gguf *g, const uint8_t *buf, size_t size) {
    const uint8_t *end = buf + size;
    size_t bsize;
    assert_ptr_equal(mope_gguf_base(g, &bsize), buf);
    assert_int_equal(bsize, size);
    size_t align = mope_gguf_alignment(g);
    assert_true(align > 0 && (align & (align - 1)) == 0);
    assert_int_equal(mope_gguf_data_offset(g) % align, 0);
    volatile uint64_t sink = 0;
    for (int64_t i = 0; i < mope_gguf_n_kv(g); i++) {
        const char *key = mope_gguf_kv_key(g, i);
        assert_non_null(key);
        assert_true(key[0] != 0);
        assert_int_equal(mope_gguf_find_key(g, key), i);
        mope_gguf_type t = mope_gguf_kv_type(g, i);
        if (t == MOPE_GGUF_STRING) {
            mope_gguf_str s = mope_gguf_kv_str(g, i);
            assert_true(inside(buf, end, s.ptr, s.len));
        } else if (t == MOPE_GGUF_ARRAY) {
            mope_gguf_type et;
            uint64_t n;
            const void *data;
            assert_int_equal(mope_gguf_kv_arr(g, i, &et, &n, &data), 0);
            if (et == MOPE_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    mope_gguf_str s = mope_gguf_arr_str(g, i, j);
                    assert_true(inside(buf, end, s.ptr, s.len));
                    if (s.len) sink += (uint8_t)s.ptr[s.len - 1];
                }
            } else {
                size_t es = mope_gguf_type_size(et);
                assert_true(es > 0);
                assert_true(n <= size / es && inside(buf, end, data, n * es));
                for (uint64_t j = 0; j < n; j += 1 + n / 64) sink += (uint64_t)mope_gguf_arr_i64(et, data, j);
            }
        } else {
            assert_true(mope_gguf_type_size(t) > 0);
            sink += (uint64_t)mope_gguf_kv_i64(g, i);
        }
    }
    for (int64_t i = 0; i < mope_gguf_n_tensors(g); i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        assert_ptr_equal(mope_gguf_find_tensor(g, t->name), t);
        assert_true(strlen(t->name) < 64);
        assert_true(t->n_dims >= 0 && t->n_dims <= 4);
        assert_true(inside(buf, end, t->data, t->nbytes));
        assert_int_equal(t->offset % align, 0);
        assert_ptr_equal(t->data, buf + mope_gguf_data_offset(g) + t->offset);
        if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    (void)sink;
}

static void try_parse(const uint8_t *src, size_t n, stats *st) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, src, n);
    mope_error err = {0};
    mope_gguf *g = mope_gguf_open_memory(copy, n, &err);
    if (g) {
        check_parsed(g, copy, n);
        mope_gguf_close(g);
        st->ok++;
    } else {
        assert_true(err.code < 0);
        assert_true(err.msg[0] != 0);
        st->failed++;
    }
    free(copy);
}

static void truncations(const uint8_t *src, size_t size, size_t stride, stats *st) {
    for (size_t n = 0; n <= size; n += n < 4096 ? 1 : stride) try_parse(src, n, st);
    try_parse(src, size, st);
}

/* Mutations are aimed mostly at the header, where the structure is; hits on
 * tensor data or token text would only test memcmp. */
static void mutations(const uint8_t *src, size_t size, size_t hot, int count, uint64_t seed, stats *st) {
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    uint8_t *m = malloc(size);
    assert_non_null(m);
    static const uint64_t words[] = {0, 1, 0xff, 0x80, 0x7fffffffffffffffull, 0xffffffffffffffffull,
                                     (uint64_t)1 << 32, (uint64_t)1 << 62, 64, 63, 9, 13, 99};
    for (int v = 0; v < count; v++) {
        memcpy(m, src, size);
        size_t span = mope_rng_below(&rng, 4) ? (hot < size ? hot : size) : size;
        int edits = 1 + (int)mope_rng_below(&rng, 4);
        for (int e = 0; e < edits; e++) {
            size_t pos = mope_rng_below(&rng, (uint32_t)span);
            switch (mope_rng_below(&rng, 3)) {
            case 0: m[pos] ^= (uint8_t)(1u << mope_rng_below(&rng, 8)); break;
            case 1: m[pos] = (uint8_t)mope_rng_u64(&rng); break;
            default: { /* overwrite a whole count/length field with an extreme value */
                uint64_t w = words[mope_rng_below(&rng, sizeof words / sizeof words[0])];
                size_t k = size - pos < 8 ? size - pos : 8;
                memcpy(m + pos, &w, k);
            }
            }
        }
        try_parse(m, size, st);
    }
    free(m);
}

static uint8_t *small_model(size_t *size) {
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(mope_gguf_set_u32(w, "general.alignment", 64), 0);
    assert_int_equal(mope_gguf_set_u32(w, "llama.block_count", 1), 0);
    assert_int_equal(mope_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f), 0);
    assert_int_equal(mope_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true), 0);
    const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab"};
    assert_int_equal(mope_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 6), 0);
    const float scores[] = {0, 0, 0, -1, -2, -3};
    assert_int_equal(mope_gguf_set_arr(w, "tokenizer.ggml.scores", MOPE_GGUF_F32, scores, 6), 0);
    const int32_t types[] = {2, 3, 3, 1, 1, 1};
    assert_int_equal(mope_gguf_set_arr(w, "tokenizer.ggml.token_type", MOPE_GGUF_I32, types, 6), 0);
    static uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
    mope_error err = {0};
    const int64_t e1[1] = {32}, e2[2] = {32, 6}, e3[2] = {256, 2}, e4[3] = {32, 2, 2};
    assert_int_equal(mope_gguf_add_tensor(w, "output_norm.weight", MOPE_TYPE_F32, 1, e1, data, &err), 0);
    assert_int_equal(mope_gguf_add_tensor(w, "token_embd.weight", MOPE_TYPE_F16, 2, e2, data, &err), 0);
    assert_int_equal(mope_gguf_add_tensor(w, "blk.0.ffn_up.weight", MOPE_TYPE_Q4_K, 2, e3, data, &err), 0);
    assert_int_equal(mope_gguf_add_tensor(w, "blk.0.attn_q.weight", MOPE_TYPE_Q8_0, 3, e4, data, &err), 0);
    void *buf;
    assert_int_equal(mope_gguf_writer_to_memory(w, &buf, size, &err), 0);
    mope_gguf_writer_free(w);
    return buf;
}

static void test_corrupt_small_model(void **state) {
    (void)state;
    size_t size;
    uint8_t *buf = small_model(&size);
    stats st = {0};
    try_parse(buf, size, &st);
    assert_int_equal(st.ok, 1); /* the pristine file parses */
    truncations(buf, size, 1, &st);
    /* Cuts parse only inside the zero padding after the last tensor: it is
     * 4 q8_0 blocks = 136 bytes, padded to 192, so the lengths size-56 ..
     * size parse (57), plus the pristine parse and the final full length. */
    assert_int_equal(st.ok, 1 + 57 + 1);
    mutations(buf, size, 700, 5000, 42, &st);
    assert_true(st.failed > 1000); /* the mutations do hit the structure */
    assert_true(st.ok > 10);       /* and some still parse (data bytes, values) */
    printf("small model (%zu bytes): %ld variants parsed, %ld rejected\n", size, st.ok, st.failed);
    free(buf);
}

static void test_corrupt_real_vocab(void **state) {
    (void)state;
    void *buf;
    size_t size;
    mope_error err = {0};
    if (mope_io_read_file(MOPE_SHARED_DIR "/testdata/tokenizers/vocab-llama-spm.gguf", &buf, &size, &err))
        fail_msg("%s", err.msg);
    stats st = {0};
    truncations(buf, size, 4099, &st);
    /* The kv section is the whole file: any cut inside it must be rejected.
     * Only cuts in the final alignment padding may parse. */
    assert_true(st.ok >= 1 && st.ok <= 3);
    mutations(buf, size, 2048, 2000, 7, &st);
    assert_true(st.failed > 1000);
    printf("vocab-llama-spm (%zu bytes): %ld variants parsed, %ld rejected\n", size, st.ok, st.failed);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corrupt_small_model),
        cmocka_unit_test(test_corrupt_real_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
