/* Bad models and bad batches get clear errors; integer keys of any integer
 * type are accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mope/gguf.h"
#include "mope/model.h"
#include "mope/quant.h"
#include "mope/tokenizer.h"

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "%s/test_model_errors_%d_%s.gguf", MOPE_BINARY_DIR, (int)getpid(), tag);
}

static char base_path[512];
static mope_hparams base_hp;

static int setup(void **state) {
    (void)state;
    mope_hparams_init(&base_hp, MOPE_ARCH_LLAMA);
    base_hp.n_vocab = 300;
    tmp_path(base_path, sizeof base_path, "base");
    mope_error err = {0};
    return mope_model_write_random(base_path, &base_hp, MOPE_TYPE_Q8_0, 5, NULL, &err);
}

static int teardown(void **state) {
    (void)state;
    unlink(base_path);
    return 0;
}

/* Copies base_path to dst: all keys (then edit_kv, if given), every tensor
 * except `skip`, with tensor `reshape` (if given) replaced by an f32 tensor
 * of shape ne. */
typedef void (*kv_edit_fn)(mope_gguf_writer *w);
static void rewrite(const char *dst, const char *skip, const char *reshape, const int64_t ne[2], kv_edit_fn edit) {
    mope_error err = {0};
    mope_gguf *g = mope_gguf_open(base_path, &err);
    assert_non_null(g);
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_copy_kv(w, g, NULL), 0);
    if (edit) edit(w);
    float *buf = NULL;
    for (int64_t i = 0; i < mope_gguf_n_tensors(g); i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        if (skip && strcmp(t->name, skip) == 0) continue;
        if (reshape && strcmp(t->name, reshape) == 0) {
            buf = calloc((size_t)(ne[0] * ne[1]), sizeof(float));
            assert_int_equal(mope_gguf_add_tensor(w, t->name, MOPE_TYPE_F32, 2, ne, buf, &err), 0);
            continue;
        }
        assert_int_equal(mope_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err), 0);
    }
    assert_int_equal(mope_gguf_writer_write(w, dst, &err), 0);
    mope_gguf_writer_free(w);
    free(buf);
    mope_gguf_close(g);
}

static void expect_load_error(const char *path, int code, const char *const *needles) {
    mope_error err = {0};
    mope_model *m = mope_model_load(path, &err);
    if (m) mope_model_free(m);
    assert_null(m);
    printf("  expected error: %s\n", err.msg);
    assert_int_equal(err.code, code);
    for (; *needles; needles++) assert_non_null(strstr(err.msg, *needles));
}

static void test_vocab_only(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "vocab");
    mope_error err = {0};
    mope_gguf *g = mope_gguf_open(base_path, &err);
    mope_gguf_writer *w = mope_gguf_writer_new();
    mope_gguf_set_str(w, "general.architecture", "llama");
    assert_int_equal(mope_gguf_copy_kv(w, g, "tokenizer."), 0);
    assert_int_equal(mope_gguf_writer_write(w, path, &err), 0);
    mope_gguf_writer_free(w);
    mope_gguf_close(g);
    const char *n[] = {"file has no model weights (vocab-only?)", path, NULL};
    expect_load_error(path, MOPE_EFORMAT, n);
    unlink(path);
}

static void test_missing_tensor(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "missing");
    rewrite(path, "blk.1.ffn_up.weight", NULL, NULL, NULL);
    const char *n[] = {"missing tensor 'blk.1.ffn_up.weight'", NULL};
    expect_load_error(path, MOPE_EFORMAT, n);
    rewrite(path, "output_norm.weight", NULL, NULL, NULL);
    const char *n2[] = {"'output_norm.weight'", NULL};
    expect_load_error(path, MOPE_EFORMAT, n2);
    unlink(path);
}

static void test_wrong_shape(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "shape");
    /* attn_k is [n_embd, head_dim * n_head_kv] = [64, 32] */
    const int64_t ne[2] = {64, 16};
    rewrite(path, NULL, "blk.0.attn_k.weight", ne, NULL);
    const char *n[] = {"'blk.0.attn_k.weight'", "[64, 16]", "expected [64, 32]", NULL};
    expect_load_error(path, MOPE_EFORMAT, n);
    const int64_t ne2[2] = {64, 64};
    rewrite(path, NULL, "blk.1.ffn_down.weight", ne2, NULL); /* should be [128, 64] */
    const char *n2[] = {"'blk.1.ffn_down.weight'", "expected [128, 64]", NULL};
    expect_load_error(path, MOPE_EFORMAT, n2);
    unlink(path);
}

static void edit_arch(mope_gguf_writer *w) { mope_gguf_set_str(w, "general.architecture", "gpt2"); }
static void edit_no_heads(mope_gguf_writer *w) { mope_gguf_set_u32(w, "llama.attention.head_count", 0); }
static void edit_bad_gqa(mope_gguf_writer *w) { mope_gguf_set_u32(w, "llama.attention.head_count_kv", 3); }
static void edit_yarn(mope_gguf_writer *w) { mope_gguf_set_str(w, "llama.rope.scaling.type", "yarn"); }

static void test_bad_keys(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "keys");
    rewrite(path, NULL, NULL, NULL, edit_arch);
    const char *n1[] = {"unsupported architecture 'gpt2'", NULL};
    expect_load_error(path, MOPE_EUNSUPPORTED, n1);
    rewrite(path, NULL, NULL, NULL, edit_no_heads);
    const char *n2[] = {"head_count", NULL};
    expect_load_error(path, MOPE_EFORMAT, n2);
    rewrite(path, NULL, NULL, NULL, edit_bad_gqa);
    const char *n3[] = {"n_head_kv 3", NULL};
    expect_load_error(path, MOPE_EFORMAT, n3);
    rewrite(path, NULL, NULL, NULL, edit_yarn);
    const char *n4[] = {"rope scaling type 'yarn'", NULL};
    expect_load_error(path, MOPE_EUNSUPPORTED, n4);
    unlink(path);
}

/* Counts stored as u16, i64, i32, u8 and u64 load like the writer's u32. */
static void edit_int_types(mope_gguf_writer *w) {
    mope_gguf_set_u16(w, "llama.block_count", 2);
    mope_gguf_set_i64(w, "llama.embedding_length", 64);
    mope_gguf_set_i32(w, "llama.attention.head_count", 4);
    mope_gguf_set_u8(w, "llama.attention.head_count_kv", 2);
    mope_gguf_set_u64(w, "llama.feed_forward_length", 128);
    mope_gguf_set_i16(w, "llama.rope.dimension_count", 16);
    mope_gguf_set_f64(w, "llama.rope.freq_base", 10000.0);
}

static void test_integer_key_types(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "ints");
    rewrite(path, NULL, NULL, NULL, edit_int_types);
    mope_error err = {0};
    mope_model *a = mope_model_load(base_path, &err), *b = mope_model_load(path, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_memory_equal(mope_model_hparams(a), mope_model_hparams(b), sizeof(mope_hparams));
    assert_int_equal(mope_model_hparams(b)->n_layer, 2);
    assert_int_equal(mope_model_hparams(b)->n_head_kv, 2);
    mope_kv *ka = mope_kv_new(a, 1, 8, &err), *kb = mope_kv_new(b, 1, 8, &err);
    mope_row r = {0, 17, 0, -1, true};
    float la[300], lb[300];
    assert_int_equal(mope_model_forward(a, ka, &r, 1, la, NULL, &err), 0);
    assert_int_equal(mope_model_forward(b, kb, &r, 1, lb, NULL, &err), 0);
    assert_memory_equal(la, lb, sizeof la);
    mope_kv_free(ka);
    mope_kv_free(kb);
    mope_model_free(a);
    mope_model_free(b);
    unlink(path);
}

static void expect_forward_error(mope_model *m, mope_kv *kv, const mope_row *rows, int n, int code,
                                 const char *needle) {
    mope_error err = {0};
    float *logits = calloc((size_t)n * 300, sizeof(float));
    int before[4];
    for (int s = 0; s < 4; s++) before[s] = mope_kv_seq_len(kv, s);
    int rc = mope_model_forward(m, kv, rows, n, logits, NULL, &err);
    printf("  expected error: %s\n", err.msg);
    assert_int_equal(rc, code);
    assert_non_null(strstr(err.msg, needle));
    for (int s = 0; s < 4; s++) assert_int_equal(mope_kv_seq_len(kv, s), before[s]); /* nothing changed */
    free(logits);
}

static void test_bad_rows(void **state) {
    (void)state;
    mope_error err = {0};
    mope_model *m = mope_model_load(base_path, &err);
    assert_non_null(m);
    mope_kv *kv = mope_kv_new(m, 4, 4, &err);
    assert_non_null(kv);
    float logits[2 * 300];
    mope_row ok[2] = {{1, 5, 0, -1, true}, {1, 6, 1, -1, true}};
    assert_int_equal(mope_model_forward(m, kv, ok, 2, logits, NULL, &err), 0);
    assert_int_equal(mope_kv_seq_len(kv, 1), 2);

    mope_row bad_tok[2] = {{0, 1, 0, -1, true}, {0, 300, 1, -1, true}};
    expect_forward_error(m, kv, bad_tok, 2, MOPE_EINVAL, "token 300 out of range");
    mope_row neg_tok = {0, -1, 0, -1, true};
    expect_forward_error(m, kv, &neg_tok, 1, MOPE_EINVAL, "token -1 out of range");
    mope_row bad_seq = {4, 1, 0, -1, true};
    expect_forward_error(m, kv, &bad_seq, 1, MOPE_EINVAL, "sequence 4 out of range");
    mope_row bad_pos = {1, 1, 1, -1, true}; /* seq 1 continues at 2 */
    expect_forward_error(m, kv, &bad_pos, 1, MOPE_EINVAL, "next position is 2");
    mope_row gap[2] = {{0, 1, 0, -1, true}, {0, 2, 2, -1, true}};
    expect_forward_error(m, kv, gap, 2, MOPE_EINVAL, "position 2 does not continue sequence 0");
    mope_row adapter = {0, 1, 0, 3, true};
    expect_forward_error(m, kv, &adapter, 1, MOPE_EUNSUPPORTED, "adapter 3");
    mope_row over[3] = {{1, 1, 2, -1, true}, {1, 2, 3, -1, true}, {1, 3, 4, -1, true}}; /* n_ctx 4 */
    expect_forward_error(m, kv, over, 3, MOPE_ERANGE, "context full");
    /* filling the context exactly is fine, one more is not */
    assert_int_equal(mope_model_forward(m, kv, over, 2, logits, NULL, &err), 0);
    assert_int_equal(mope_kv_seq_len(kv, 1), 4);
    mope_row more = {1, 1, 4, -1, true};
    expect_forward_error(m, kv, &more, 1, MOPE_ERANGE, "context full");
    mope_kv_clear_seq(kv, 1);
    assert_int_equal(mope_kv_seq_len(kv, 1), 0);
    /* no output buffer for a row that wants logits */
    assert_int_equal(mope_model_forward(m, kv, ok, 1, NULL, NULL, &err), MOPE_EINVAL);
    /* a cache of another model */
    mope_hparams hp2 = base_hp;
    hp2.n_layer = 1;
    char p2[512];
    tmp_path(p2, sizeof p2, "other");
    assert_int_equal(mope_model_write_random(p2, &hp2, MOPE_TYPE_F32, 1, NULL, &err), 0);
    mope_model *m2 = mope_model_load(p2, &err);
    assert_non_null(m2);
    assert_int_equal(mope_model_forward(m2, kv, ok, 1, logits, NULL, &err), MOPE_EINVAL);
    assert_null(mope_kv_new(m, 0, 4, &err));
    assert_int_equal(err.code, MOPE_EINVAL);
    mope_model_free(m2);
    unlink(p2);
    mope_kv_free(kv);
    mope_model_free(m);
}

/* The random writer's own checks and its built-in vocabulary. */
static void test_write_random(void **state) {
    (void)state;
    mope_error err = {0};
    char path[512];
    tmp_path(path, sizeof path, "rnd");
    mope_hparams hp = base_hp;
    hp.n_vocab = 100;
    assert_int_equal(mope_model_write_random(path, &hp, MOPE_TYPE_F32, 1, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "n_vocab 100"));
    hp = base_hp;
    assert_int_equal(mope_model_write_random(path, &hp, MOPE_TYPE_Q4_K, 1, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "q4_K"));
    hp.n_head_kv = 3;
    assert_int_not_equal(mope_model_write_random(path, &hp, MOPE_TYPE_F32, 1, NULL, &err), 0);
    /* vocabulary: specials, bytes, then pieces whose prefixes are all present */
    hp = base_hp;
    hp.n_vocab = 2000;
    assert_int_equal(mope_model_write_random(path, &hp, MOPE_TYPE_F32, 1, NULL, &err), 0);
    mope_gguf *g = mope_gguf_open(path, &err);
    assert_non_null(g);
    int64_t kv = mope_gguf_find_key(g, "tokenizer.ggml.tokens");
    mope_gguf_type et;
    uint64_t n;
    const void *d;
    assert_int_equal(mope_gguf_kv_arr(g, kv, &et, &n, &d), 0);
    assert_int_equal(n, 2000);
    mope_gguf_str s0 = mope_gguf_arr_str(g, kv, 0), s1 = mope_gguf_arr_str(g, kv, 1), s3 = mope_gguf_arr_str(g, kv, 3);
    mope_gguf_str s258 = mope_gguf_arr_str(g, kv, 258);
    assert_true(s0.len == 5 && memcmp(s0.ptr, "<unk>", 5) == 0);
    assert_true(s1.len == 3 && memcmp(s1.ptr, "<s>", 3) == 0);
    assert_true(s3.len == 6 && memcmp(s3.ptr, "<0x00>", 6) == 0);
    assert_true(s258.len == 6 && memcmp(s258.ptr, "<0xFF>", 6) == 0);
    bool has_the = false;
    for (uint64_t i = 259; i < n; i++) {
        mope_gguf_str t = mope_gguf_arr_str(g, kv, i);
        if (t.len == 6 && memcmp(t.ptr, "\xe2\x96\x81the", 6) == 0) has_the = true;
    }
    assert_true(has_the);
    /* the same tokenizer carried into another model */
    mope_hparams hp3 = base_hp;
    hp3.n_vocab = 0;
    char p2[512];
    tmp_path(p2, sizeof p2, "rnd2");
    assert_int_equal(mope_model_write_random(p2, &hp3, MOPE_TYPE_F16, 2, g, &err), 0);
    mope_model *m = mope_model_load(p2, &err);
    assert_non_null(m);
    assert_int_equal(mope_model_hparams(m)->n_vocab, 2000);
    mope_model_free(m);
    hp3.n_vocab = 1999;
    assert_int_equal(mope_model_write_random(p2, &hp3, MOPE_TYPE_F16, 2, g, &err), MOPE_EINVAL);
    mope_gguf_close(g);
    unlink(p2);
    unlink(path);
}

/* general.alignment = 1 can leave f32 weights misaligned in the mapping:
 * such a file is refused with a clear error (never read with misaligned
 * loads); when the padding happens to align them, it loads and computes the
 * same logits.  A padding key of 0..3 bytes shifts the data section. */
static void test_misaligned_f32(void **state) {
    (void)state;
    mope_error err = {0};
    char src[512], dst[512];
    tmp_path(src, sizeof src, "f32src");
    tmp_path(dst, sizeof dst, "f32align1");
    assert_int_equal(mope_model_write_random(src, &base_hp, MOPE_TYPE_F32, 3, NULL, &err), 0);
    mope_model *ref = mope_model_load(src, &err);
    assert_non_null(ref);
    mope_kv *kr = mope_kv_new(ref, 1, 4, &err);
    mope_row row = {0, 42, 0, -1, true};
    float want[300], got[300];
    assert_int_equal(mope_model_forward(ref, kr, &row, 1, want, NULL, &err), 0);
    int refused = 0;
    for (int pad = 0; pad < 4; pad++) {
        mope_gguf *g = mope_gguf_open(src, &err);
        mope_gguf_writer *w = mope_gguf_writer_new();
        assert_int_equal(mope_gguf_copy_kv(w, g, NULL), 0);
        assert_int_equal(mope_gguf_set_u32(w, "general.alignment", 1), 0);
        assert_int_equal(mope_gguf_set_strn(w, "test.pad", "xxx", (size_t)pad), 0);
        for (int64_t i = 0; i < mope_gguf_n_tensors(g); i++) {
            const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
            assert_int_equal(mope_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err), 0);
        }
        assert_int_equal(mope_gguf_writer_write(w, dst, &err), 0);
        mope_gguf_writer_free(w);
        mope_gguf_close(g);
        mope_model *m = mope_model_load(dst, &err);
        if (!m) {
            assert_int_equal(err.code, MOPE_EUNSUPPORTED);
            assert_non_null(strstr(err.msg, "not 4-byte aligned"));
            refused++;
            continue;
        }
        mope_kv *kv = mope_kv_new(m, 1, 4, &err);
        assert_int_equal(mope_model_forward(m, kv, &row, 1, got, NULL, &err), 0);
        assert_memory_equal(got, want, sizeof want);
        mope_kv_free(kv);
        mope_model_free(m);
    }
    printf("  %d of 4 paddings refused\n", refused);
    assert_int_equal(refused, 3); /* every f32 tensor is a multiple of 4 bytes: one padding in four aligns */
    mope_kv_free(kr);
    mope_model_free(ref);
    unlink(src);
    unlink(dst);
}

/* The built-in vocabulary works with mope's SentencePiece tokenizer: common
 * words are single pieces, anything else falls back to byte tokens, and
 * decoding gives the text back. */
static void test_builtin_vocab_tokenizes(void **state) {
    (void)state;
    mope_error err = {0};
    char path[512];
    tmp_path(path, sizeof path, "vocab_tok");
    mope_hparams hp = base_hp;
    hp.n_vocab = 4000; /* every word of the list, then fillers */
    assert_int_equal(mope_model_write_random(path, &hp, MOPE_TYPE_F32, 1, NULL, &err), 0);
    mope_tokenizer *t = mope_tokenizer_load(path, &err);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(t);
    assert_int_equal(mope_tokenizer_n_vocab(t), 4000);
    assert_int_equal(mope_tokenizer_bos(t), 1);
    assert_int_equal(mope_tokenizer_eos(t), 2);
    const char *text = "the water is cold \xc3\xa9";
    int32_t ids[64];
    int n = mope_tokenizer_encode(t, text, strlen(text), true, false, ids, 64, &err);
    assert_true(n > 0 && n <= 64);
    const char *want[] = {"\xe2\x96\x81" "the", "\xe2\x96\x81" "water", "\xe2\x96\x81" "is", "\xe2\x96\x81" "cold"};
    assert_int_equal(ids[0], 1);
    for (int i = 0; i < 4; i++) {
        size_t len;
        const char *p = mope_tokenizer_piece(t, ids[1 + i], &len);
        assert_true(len == strlen(want[i]) && memcmp(p, want[i], len) == 0);
    }
    /* " \xc3\xa9": the space piece, then two byte tokens */
    assert_int_equal(n, 1 + 4 + 3);
    assert_int_equal(ids[6], 3 + 0xc3);
    assert_int_equal(ids[7], 3 + 0xa9);
    char out[64];
    int len = mope_tokenizer_decode(t, ids + 1, n - 1, MOPE_DECODE_STRIP_SPACE, out, sizeof out, &err);
    assert_int_equal(len, (int)strlen(text));
    assert_memory_equal(out, text, strlen(text));
    mope_tokenizer_free(t);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_only),       cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_wrong_shape),      cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_integer_key_types), cmocka_unit_test(test_bad_rows),
        cmocka_unit_test(test_write_random),     cmocka_unit_test(test_builtin_vocab_tokenizes),
        cmocka_unit_test(test_misaligned_f32),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
