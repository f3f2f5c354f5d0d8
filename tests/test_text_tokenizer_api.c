/* Tokenizer API: hand-built vocabularies with hand-computed encodings (merge
 * order by score / rank, ties, byte fallback, space prefix), streaming
 * detokenisation of characters split over tokens, the encode/decode buffer
 * contracts, bad input, and the GGUF write/read round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mope/tokenizer.h"

#define TOKDIR MOPE_SHARED_DIR "/testdata/tokenizers"
#define U2581 "\xe2\x96\x81"

static int encode(const mope_tokenizer *t, const char *s, bool special, int32_t *ids, int cap) {
    mope_error err = {0};
    int n = mope_tokenizer_encode(t, s, strlen(s), false, special, ids, cap, &err);
    if (n < 0) fprintf(stderr, "encode \"%s\": %s\n", s, err.msg);
    assert_true(n >= 0 && n <= cap);
    return n;
}

static void assert_ids(const int32_t *got, int n, const int32_t *exp, int ne) {
    assert_int_equal(n, ne);
    for (int i = 0; i < n; i++) assert_int_equal(got[i], exp[i]);
}

static void assert_decodes(const mope_tokenizer *t, const int32_t *ids, int n, int flags, const char *exp) {
    size_t len;
    char *s = mope_tokenizer_decode_alloc(t, ids, n, flags, &len, NULL);
    assert_non_null(s);
    assert_int_equal(len, strlen(exp));
    assert_memory_equal(s, exp, len);
    free(s);
}

/* ---- a tiny SentencePiece vocabulary ---- */
static mope_tokenizer *tiny_spm(float score_ab, int add_space_prefix) {
    static const char *tokens[] = {"<unk>", "<s>", "</s>", U2581, "a", "b", U2581 "a", "ab", "<0xC3>", "<0xA9>", "c"};
    float scores[] = {0, 0, 0, -1, -2, -3, -1.5f, score_ab, 0, 0, -4};
    int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 6, 6, 1};
    mope_tokenizer_params p;
    mope_tokenizer_params_init(&p);
    p.model = "llama";
    p.n_tokens = 11;
    p.tokens = tokens;
    p.scores = scores;
    p.types = types;
    p.bos_id = 1;
    p.eos_id = 2;
    p.unk_id = 0;
    p.add_space_prefix = add_space_prefix;
    mope_error err = {0};
    mope_tokenizer *t = mope_tokenizer_new(&p, &err);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(t);
    return t;
}

static void test_spm_by_hand(void **state) {
    (void)state;
    int32_t ids[16];
    /* "ab" -> "▁ab": "▁a" and "ab" score the same, the leftmost pair wins */
    mope_tokenizer *t = tiny_spm(-1.5f, -1);
    assert_true(mope_tokenizer_add_space_prefix(t)); /* the llama default */
    assert_true(mope_tokenizer_add_bos(t));
    int n = encode(t, "ab", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){6, 5}, 2);
    assert_decodes(t, ids, n, MOPE_DECODE_STRIP_SPACE, "ab");
    assert_decodes(t, ids, n, 0, " ab");
    /* é is no piece: byte fallback */
    n = encode(t, "\xc3\xa9", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){3, 8, 9}, 3);
    assert_decodes(t, ids, n, MOPE_DECODE_STRIP_SPACE, "\xc3\xa9");
    /* 'd' has neither a piece nor a byte token: unknown */
    n = encode(t, "d", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){3, 0}, 2);
    /* special tokens, and the space prefixed after each of them */
    n = encode(t, "<s>ab</s>c", true, ids, 16);
    assert_ids(ids, n, (int32_t[]){1, 6, 5, 2, 3, 10}, 6);
    assert_decodes(t, ids, n, MOPE_DECODE_SPECIAL | MOPE_DECODE_STRIP_SPACE, "<s> ab</s> c");
    assert_decodes(t, ids, n, MOPE_DECODE_STRIP_SPACE, " ab c"); /* control tokens vanish */
    /* without parse_special "<s>" is text: '<' 's' '>' have no pieces -> unk */
    n = encode(t, "<s>", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){3, 0, 0, 0}, 4);
    mope_tokenizer_free(t);

    /* a higher score for "ab" changes the merge order */
    t = tiny_spm(-1.0f, 0);
    assert_false(mope_tokenizer_add_space_prefix(t));
    n = encode(t, "ab", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){7}, 1);
    n = encode(t, " ab", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){3, 7}, 2);
    mope_tokenizer_free(t);
}

/* ---- a tiny byte-level BPE vocabulary ---- */
static mope_tokenizer *tiny_bpe(const char *const *merges, int n_merges, mope_error *err) {
    static char store[256][4];
    const char *tokens[262];
    for (int b = 0; b < 256; b++) { /* token b = GPT-2 mapped character of byte b */
        unsigned cp = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae ? (unsigned)b
                      : b <= 0x20                                                      ? 256u + (unsigned)b
                      : b <= 0xa0                                                      ? 256u + 33 + (unsigned)b - 0x7f
                                                                                       : 256u + 67;
        if (cp < 0x80) {
            store[b][0] = (char)cp;
            store[b][1] = 0;
        } else {
            store[b][0] = (char)(0xc0 | (cp >> 6));
            store[b][1] = (char)(0x80 | (cp & 0x3f));
            store[b][2] = 0;
        }
        tokens[b] = store[b];
    }
    tokens[256] = "ab";
    tokens[257] = "\xc4\xa0" "a"; /* "Ġa" */
    tokens[258] = "\xc4\xa0" "ab";
    tokens[259] = "<|end|>";
    tokens[260] = "aa";
    tokens[261] = "<x>";
    int32_t types[262];
    for (int i = 0; i < 262; i++) types[i] = 1;
    types[259] = 3;
    types[261] = 4;
    mope_tokenizer_params p;
    mope_tokenizer_params_init(&p);
    p.model = "gpt2";
    p.pre = "gpt-2";
    p.n_tokens = 262;
    p.tokens = tokens;
    p.types = types;
    p.merges = merges;
    p.n_merges = n_merges;
    p.eos_id = 259;
    return mope_tokenizer_new(&p, err);
}

static void test_bpe_by_hand(void **state) {
    (void)state;
    int32_t ids[16];
    /* rank 0 "a b" beats rank 1 "Ġ a" inside " ab" */
    const char *m1[] = {"a b", "\xc4\xa0 a", "a a"};
    mope_tokenizer *t = tiny_bpe(m1, 3, NULL);
    assert_non_null(t);
    assert_false(mope_tokenizer_add_bos(t));
    assert_int_equal(mope_tokenizer_bos(t), -1);
    int n = encode(t, "ab ab", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){256, 32, 256}, 3);
    assert_decodes(t, ids, n, 0, "ab ab");
    /* the same pair twice: leftmost merges first */
    n = encode(t, "aaa", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){260, 'a'}, 2);
    /* control only with parse_special; user-defined always */
    n = encode(t, "a<|end|>", true, ids, 16);
    assert_ids(ids, n, (int32_t[]){'a', 259}, 2);
    n = encode(t, "a<x>", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){'a', 261}, 2);
    assert_true(mope_tokenizer_is_eog(t, 259));
    assert_false(mope_tokenizer_is_eog(t, 256));
    /* invalid UTF-8 still round-trips through byte tokens */
    n = encode(t, "a\xff\xc3", false, ids, 16);
    assert_decodes(t, ids, n, 0, "a\xff\xc3");
    mope_error err = {0};
    assert_true(mope_tokenizer_encode(t, "a", 1, true, false, ids, 16, &err) < 0); /* no BOS in this vocab */
    assert_non_null(strstr(err.msg, "BOS"));
    mope_tokenizer_free(t);

    /* with "Ġ a" first, " ab" becomes one token through "Ġa b" */
    const char *m2[] = {"\xc4\xa0 a", "a b", "\xc4\xa0\x61 b"};
    t = tiny_bpe(m2, 3, NULL);
    assert_non_null(t);
    n = encode(t, "ab ab", false, ids, 16);
    assert_ids(ids, n, (int32_t[]){256, 258}, 2);
    mope_tokenizer_free(t);
}

static mope_tokenizer *load_vocab(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/vocab-%s.gguf", TOKDIR, name);
    mope_error err = {0};
    mope_tokenizer *t = mope_tokenizer_load(path, &err);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(t);
    return t;
}

static void test_detok_stream(void **state) {
    (void)state;
    mope_tokenizer *t = load_vocab("llama-spm");
    int32_t ids[16];
    int n = encode(t, "\xf0\x9f\xa6\x99", false, ids, 16); /* 🦙 */
    assert_int_equal(n, 5);                                /* "▁" + 4 byte tokens */
    for (int i = 1; i < 5; i++) assert_int_equal(mope_tokenizer_token_type(t, ids[i]), MOPE_TOKEN_BYTE);
    mope_detok *d = mope_detok_new(t, MOPE_DECODE_STRIP_SPACE, NULL);
    assert_non_null(d);
    size_t len;
    const char *p = mope_detok_push(d, ids[0], &len, NULL); /* the prefix space is stripped */
    assert_int_equal(len, 0);
    for (int i = 1; i < 4; i++) {
        p = mope_detok_push(d, ids[i], &len, NULL);
        assert_non_null(p);
        assert_int_equal(len, 0);
    }
    p = mope_detok_push(d, ids[4], &len, NULL);
    assert_int_equal(len, 4);
    assert_memory_equal(p, "\xf0\x9f\xa6\x99", 4);
    p = mope_detok_flush(d, &len);
    assert_int_equal(len, 0);

    /* an unfinished character at the end comes out at flush */
    mope_detok_reset(d);
    p = mope_detok_push(d, ids[1], &len, NULL);
    assert_int_equal(len, 0);
    p = mope_detok_flush(d, &len);
    assert_int_equal(len, 1);
    assert_int_equal((unsigned char)p[0], 0xf0);
    /* a lead byte followed by a non-continuation is passed through, nothing lost */
    mope_detok_reset(d);
    p = mope_detok_push(d, ids[1], &len, NULL);
    int32_t a = mope_tokenizer_find(t, "a", 1);
    assert_true(a >= 0);
    p = mope_detok_push(d, a, &len, NULL);
    assert_int_equal(len, 2);
    assert_memory_equal(p, "\xf0" "a", 2);
    /* a stray continuation byte is not held */
    p = mope_detok_push(d, ids[3], &len, NULL);
    assert_int_equal(len, 1);
    /* without STRIP_SPACE the first space stays */
    mope_detok *d2 = mope_detok_new(t, 0, NULL);
    p = mope_detok_push(d2, ids[0], &len, NULL);
    assert_int_equal(len, 1);
    assert_int_equal(p[0], ' ');
    mope_error err = {0};
    assert_null(mope_detok_push(d2, 32000, &len, &err));
    assert_int_equal(err.code, MOPE_EINVAL);
    mope_detok_free(d2);
    mope_detok_free(d);
    mope_tokenizer_free(t);
}

static void test_buffer_contracts(void **state) {
    (void)state;
    mope_tokenizer *t = load_vocab("llama-spm");
    const char *s = "Hello world";
    mope_error err = {0};
    assert_int_equal(mope_tokenizer_encode(t, s, strlen(s), false, false, NULL, 0, &err), 2);
    int32_t ids[4] = {-7, -7, -7, -7};
    assert_int_equal(mope_tokenizer_encode(t, s, strlen(s), true, false, ids, 2, &err), 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 15043);
    assert_int_equal(ids[2], -7); /* nothing written past cap */
    assert_int_equal(mope_tokenizer_encode(t, s, strlen(s), true, false, ids, 4, &err), 3);
    assert_int_equal(ids[2], 3186);
    /* len is honoured: "Hello" only, no NUL needed */
    assert_int_equal(mope_tokenizer_encode(t, s, 5, false, false, ids, 4, &err), 1);
    assert_int_equal(ids[0], 15043);
    assert_int_equal(mope_tokenizer_encode(t, "", 0, false, false, ids, 4, &err), 0);
    assert_true(mope_tokenizer_encode(t, NULL, 3, false, false, ids, 4, &err) < 0);
    assert_true(mope_tokenizer_encode(t, s, 3, false, false, ids, -1, &err) < 0);

    int32_t hw[2] = {15043, 3186};
    char buf[8];
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mope_tokenizer_decode(t, hw, 2, MOPE_DECODE_STRIP_SPACE, buf, 3, &err), 11);
    assert_memory_equal(buf, "Hel", 3);
    assert_int_equal(buf[3], 'x');
    char big[32];
    assert_int_equal(mope_tokenizer_decode(t, hw, 2, MOPE_DECODE_STRIP_SPACE, big, sizeof big, &err), 11);
    assert_string_equal(big, "Hello world");
    assert_int_equal(mope_tokenizer_token_bytes(t, 15043, 0, buf, sizeof buf, &err), 6);
    assert_memory_equal(buf, " Hello", 6);
    assert_int_equal(mope_tokenizer_token_bytes(t, 1, 0, buf, sizeof buf, &err), 0); /* <s> */
    assert_int_equal(mope_tokenizer_token_bytes(t, 1, MOPE_DECODE_SPECIAL, buf, sizeof buf, &err), 3);
    assert_memory_equal(buf, "<s>", 3);
    /* bad ids */
    assert_int_equal(mope_tokenizer_token_bytes(t, 32000, 0, buf, sizeof buf, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "32000"));
    int32_t bad[2] = {15043, -1};
    assert_int_equal(mope_tokenizer_decode(t, bad, 2, 0, big, sizeof big, &err), MOPE_EINVAL);
    assert_null(mope_tokenizer_piece(t, -1, NULL));
    size_t pl;
    assert_string_equal(mope_tokenizer_piece(t, 15043, &pl), U2581 "Hello");
    assert_int_equal(pl, 8);
    assert_int_equal(mope_tokenizer_find(t, U2581 "Hello", 8), 15043);
    assert_int_equal(mope_tokenizer_find(t, "no-such-piece", 13), -1);
    /* bytes that are not UTF-8 fall back to byte tokens and decode back */
    int32_t out[16];
    int n = mope_tokenizer_encode(t, "\xff" "a\x80", 3, false, false, out, 16, &err);
    assert_true(n > 0 && n <= 16);
    char *rt = mope_tokenizer_decode_alloc(t, out, n, MOPE_DECODE_STRIP_SPACE, NULL, &err);
    assert_string_equal(rt, "\xff" "a\x80");
    free(rt);
    mope_tokenizer_free(t);
}

static void expect_fail(const mope_tokenizer_params *p, int code, const char *needle) {
    mope_error err = {0};
    mope_tokenizer *t = mope_tokenizer_new(p, &err);
    if (t || err.code != code || !strstr(err.msg, needle))
        fprintf(stderr, "expected failure %d '%s', got %p code %d '%s'\n", code, needle, (void *)t, err.code, err.msg);
    assert_null(t);
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_vocab(void **state) {
    (void)state;
    static const char *tokens[] = {"a", "b", "ab"};
    mope_tokenizer_params p;
    mope_tokenizer_params_init(&p);
    p.model = "gpt2";
    p.tokens = tokens;
    p.n_tokens = 0;
    expect_fail(&p, MOPE_EINVAL, "empty token list");
    p.n_tokens = 3;
    const char *bad_merge[] = {"a b", "a zz"};
    p.merges = bad_merge;
    p.n_merges = 2;
    expect_fail(&p, MOPE_EINVAL, "merge 1 \"a zz\" refers to a right token not in the vocabulary");
    const char *bad_merge2[] = {"b a"}; /* "ba" is no token */
    p.merges = bad_merge2;
    p.n_merges = 1;
    expect_fail(&p, MOPE_EINVAL, "merged token");
    const char *bad_merge3[] = {"ab"};
    p.merges = bad_merge3;
    expect_fail(&p, MOPE_EINVAL, "not \"left right\"");
    p.n_merges = 0;
    p.merges = NULL;
    p.bos_id = 3;
    expect_fail(&p, MOPE_EINVAL, "BOS id 3 out of range");
    p.bos_id = -1;
    p.eos_id = -5;
    expect_fail(&p, MOPE_EINVAL, "EOS id -5 out of range");
    p.eos_id = -1;
    int32_t types[] = {1, 9, 1};
    p.types = types;
    expect_fail(&p, MOPE_EINVAL, "token 1 has invalid type 9");
    p.types = NULL;
    p.pre = "no-such-pre";
    expect_fail(&p, MOPE_EUNSUPPORTED, "no-such-pre");
    p.pre = NULL;
    p.model = "bert";
    expect_fail(&p, MOPE_EUNSUPPORTED, "bert");
    p.model = NULL;
    expect_fail(&p, MOPE_EINVAL, "no model");
    p.model = "gpt2";
    const char *with_null[] = {"a", NULL, "ab"};
    p.tokens = with_null;
    expect_fail(&p, MOPE_EINVAL, "token 1 is NULL");
    mope_error err = {0};
    assert_null(mope_tokenizer_new(NULL, &err));
    /* and the good one loads */
    p.tokens = tokens;
    const char *good[] = {"a b"};
    p.merges = good;
    p.n_merges = 1;
    mope_tokenizer *t = mope_tokenizer_new(&p, &err);
    assert_non_null(t);
    int32_t ids[4];
    assert_int_equal(encode(t, "ab", false, ids, 4), 1);
    assert_int_equal(ids[0], 2);
    mope_tokenizer_free(t);
}

/* GGUF files with broken tokenizer keys */
static void test_bad_gguf(void **state) {
    (void)state;
    const char *toks[] = {"a", "b"};
    for (int variant = 0; variant < 5; variant++) {
        mope_gguf_writer *w = mope_gguf_writer_new();
        assert_non_null(w);
        if (variant != 0) mope_gguf_set_str(w, "tokenizer.ggml.model", "llama");
        if (variant != 1) mope_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 2);
        if (variant == 2) mope_gguf_set_arr(w, "tokenizer.ggml.scores", MOPE_GGUF_F32, (float[]){0}, 1);
        if (variant == 3) mope_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 7);
        if (variant == 4) mope_gguf_set_str(w, "tokenizer.ggml.add_bos_token", "yes");
        void *buf;
        size_t size;
        mope_error err = {0};
        assert_int_equal(mope_gguf_writer_to_memory(w, &buf, &size, &err), 0);
        mope_gguf_writer_free(w);
        mope_gguf *g = mope_gguf_open_memory(buf, size, &err);
        assert_non_null(g);
        mope_tokenizer *t = mope_tokenizer_from_gguf(g, &err);
        assert_null(t);
        static const char *needles[] = {"tokenizer.ggml.model", "tokenizer.ggml.tokens", "scores", "BOS id 7",
                                        "add_bos_token"};
        if (!strstr(err.msg, needles[variant])) fprintf(stderr, "variant %d: %s\n", variant, err.msg);
        assert_non_null(strstr(err.msg, needles[variant]));
        mope_gguf_close(g);
        free(buf);
    }
    /* a padding id past the vocab is dropped, not fatal; llama defaults apply */
    mope_gguf_writer *w = mope_gguf_writer_new();
    const char *toks3[] = {"<unk>", "<s>", "</s>"};
    mope_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    mope_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks3, NULL, 3);
    mope_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", 3);
    void *buf;
    size_t size;
    mope_error err = {0};
    assert_int_equal(mope_gguf_writer_to_memory(w, &buf, &size, &err), 0);
    mope_gguf_writer_free(w);
    mope_gguf *g = mope_gguf_open_memory(buf, size, &err);
    assert_non_null(g);
    mope_tokenizer *t = mope_tokenizer_from_gguf(g, &err);
    assert_non_null(t);
    assert_int_equal(mope_tokenizer_pad(t), -1);
    assert_int_equal(mope_tokenizer_bos(t), 1);
    assert_int_equal(mope_tokenizer_eos(t), 2);
    assert_int_equal(mope_tokenizer_unk(t), 0);
    assert_true(mope_tokenizer_add_bos(t));
    mope_tokenizer_free(t);
    mope_gguf_close(g);
    free(buf);
}

/* write_gguf_kv then from_gguf gives the same tokenizer */
static void roundtrip(const mope_tokenizer *t, const char *const *texts, int n_texts) {
    mope_gguf_writer *w = mope_gguf_writer_new();
    mope_error err = {0};
    assert_int_equal(mope_tokenizer_write_gguf_kv(t, w, &err), 0);
    void *buf;
    size_t size;
    assert_int_equal(mope_gguf_writer_to_memory(w, &buf, &size, &err), 0);
    mope_gguf_writer_free(w);
    mope_gguf *g = mope_gguf_open_memory(buf, size, &err);
    assert_non_null(g);
    mope_tokenizer *u = mope_tokenizer_from_gguf(g, &err);
    if (!u) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(u);
    mope_gguf_close(g);
    free(buf);
    assert_string_equal(mope_tokenizer_model(u), mope_tokenizer_model(t));
    assert_string_equal(mope_tokenizer_pre(u), mope_tokenizer_pre(t));
    int32_t n = mope_tokenizer_n_vocab(t);
    assert_int_equal(mope_tokenizer_n_vocab(u), n);
    for (int32_t i = 0; i < n; i++) {
        size_t la, lb;
        const char *a = mope_tokenizer_piece(t, i, &la), *b = mope_tokenizer_piece(u, i, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        assert_int_equal(mope_tokenizer_token_type(t, i), mope_tokenizer_token_type(u, i));
        assert_true(mope_tokenizer_score(t, i) == mope_tokenizer_score(u, i));
    }
    assert_int_equal(mope_tokenizer_bos(u), mope_tokenizer_bos(t));
    assert_int_equal(mope_tokenizer_eos(u), mope_tokenizer_eos(t));
    assert_int_equal(mope_tokenizer_eot(u), mope_tokenizer_eot(t));
    assert_int_equal(mope_tokenizer_unk(u), mope_tokenizer_unk(t));
    assert_int_equal(mope_tokenizer_pad(u), mope_tokenizer_pad(t));
    assert_int_equal(mope_tokenizer_add_bos(u), mope_tokenizer_add_bos(t));
    assert_int_equal(mope_tokenizer_add_eos(u), mope_tokenizer_add_eos(t));
    assert_int_equal(mope_tokenizer_add_space_prefix(u), mope_tokenizer_add_space_prefix(t));
    const char *ct = mope_tokenizer_chat_template(t);
    if (ct) assert_string_equal(mope_tokenizer_chat_template(u), ct);
    else assert_null(mope_tokenizer_chat_template(u));
    for (int k = 0; k < n_texts; k++) {
        int32_t a[64], b[64];
        int na = encode(t, texts[k], true, a, 64), nb = encode(u, texts[k], true, b, 64);
        assert_ids(b, nb, a, na);
    }
    mope_tokenizer_free(u);
}

static void test_write_roundtrip(void **state) {
    (void)state;
    const char *texts[] = {"Hello world", " ab  ab\n", "<|end|>aaa<x>", "caf\xc3\xa9 \xf0\x9f\xa6\x99 <s>x</s>"};
    mope_tokenizer *t = tiny_spm(-1.0f, -1);
    roundtrip(t, texts, 4);
    mope_tokenizer_free(t);
    const char *m1[] = {"a b", "\xc4\xa0 a", "a a"};
    t = tiny_bpe(m1, 3, NULL);
    roundtrip(t, texts, 4);
    mope_tokenizer_free(t);
    t = load_vocab("qwen-bpe"); /* merges, chat template, user-defined tokens */
    roundtrip(t, texts, 4);
    mope_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_by_hand),     cmocka_unit_test(test_bpe_by_hand),
        cmocka_unit_test(test_detok_stream),    cmocka_unit_test(test_buffer_contracts),
        cmocka_unit_test(test_bad_vocab),       cmocka_unit_test(test_bad_gguf),
        cmocka_unit_test(test_write_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
