/* BPE tokenizer training: the first merges of a hand-counted corpus, the
 * trained vocab encoding its training text exactly as a naive
 * re-implementation applying the learned merges in order, round trips with
 * byte fallback, special tokens, GGUF save/reload, determinism, limits and
 * bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mope/gguf.h"
#include "mope/tokenizer.h"

#define U2581 "\xe2\x96\x81"

static const char *SENNRICH =
    "low low low low low lower lower newest newest newest newest newest newest widest widest widest";

static mope_tokenizer_train_opts opts_text(const char *text, int32_t vocab) {
    mope_tokenizer_train_opts o;
    mope_tokenizer_train_opts_init(&o);
    o.text = text;
    o.text_len = strlen(text);
    o.vocab_size = vocab;
    return o;
}

static void train_ok(const mope_tokenizer_train_opts *o, mope_tokenizer_train_result *r) {
    mope_error err = {0};
    int rc = mope_tokenizer_train_bpe(o, r, &err);
    if (rc) fprintf(stderr, "train: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(r->tok);
}

static const char *piece(const mope_tokenizer *t, int32_t id) {
    const char *p = mope_tokenizer_piece(t, id, NULL);
    assert_non_null(p);
    return p;
}

/* Merge i as "left|right". */
static void merge_str(const mope_tokenizer_train_result *r, int i, char *buf, size_t cap) {
    snprintf(buf, cap, "%s|%s", piece(r->tok, r->merges[2 * i]), piece(r->tok, r->merges[2 * i + 1]));
}

/* Pair counts by hand (SENNRICH: ▁low x5, ▁lower x2, ▁newest x6,
 * ▁widest x3; chars by frequency e 17, w 16, ▁ 16, s 9, t 9, l 7, o 7, ...;
 * ties go to the smaller left id, and w sorts before ▁ by bytes):
 *  1. e s (9) ties s t (9): e has the smaller id      -> "es"
 *  2. es t (9)                                        -> "est"
 *  3. ▁ l, l o, o w all 7: ▁ has the smallest id       -> "▁l"
 *  4. ▁l o, o w both 7: o (a base char) < "▁l" (new)  -> "ow"
 *  5. ▁l ow (7)                                       -> "▁low"
 *  6. ▁ n, n e, e w, w est all 6: e has the smallest  -> "ew"
 *  7. ▁ n, n ew, ew est all 6: ▁ smallest              -> "▁n" */
static void test_first_merges(void **state) {
    (void)state;
    mope_tokenizer_train_opts o = opts_text(SENNRICH, 3 + 256 + 11 + 7);
    mope_tokenizer_train_result r;
    train_ok(&o, &r);
    static const char *exp[] = {"e|s", "es|t", U2581 "|l", "o|w", U2581 "l|ow", "e|w", U2581 "|n"};
    assert_int_equal(r.n_base_chars, 11);
    assert_int_equal(r.n_merges, 7);
    assert_int_equal(mope_tokenizer_n_vocab(r.tok), 3 + 256 + 11 + 7);
    for (int i = 0; i < 7; i++) {
        char buf[64];
        merge_str(&r, i, buf, sizeof buf);
        assert_string_equal(buf, exp[i]);
        /* merge i made token first_merge_id + i, with score -i */
        int32_t id = r.first_merge_id + i;
        assert_float_equal(mope_tokenizer_score(r.tok, id), (float)-i, 0);
        assert_int_equal(mope_tokenizer_token_type(r.tok, id), MOPE_TOKEN_NORMAL);
    }
    /* base characters: most frequent first, scored below every merge */
    assert_string_equal(piece(r.tok, r.first_merge_id - 11), "e");
    assert_string_equal(piece(r.tok, r.first_merge_id - 10), "w");
    assert_string_equal(piece(r.tok, r.first_merge_id - 9), U2581);
    for (int32_t id = r.first_merge_id - 11; id < r.first_merge_id; id++)
        assert_true(mope_tokenizer_score(r.tok, id) < -6.5f);
    /* the fixed layout */
    assert_string_equal(piece(r.tok, 0), "<unk>");
    assert_int_equal(mope_tokenizer_token_type(r.tok, 0), MOPE_TOKEN_UNKNOWN);
    assert_int_equal(mope_tokenizer_token_type(r.tok, 1), MOPE_TOKEN_CONTROL);
    assert_int_equal(mope_tokenizer_token_type(r.tok, 2), MOPE_TOKEN_CONTROL);
    assert_int_equal(mope_tokenizer_bos(r.tok), 1);
    assert_int_equal(mope_tokenizer_eos(r.tok), 2);
    assert_int_equal(mope_tokenizer_unk(r.tok), 0);
    assert_true(mope_tokenizer_add_bos(r.tok) && mope_tokenizer_add_space_prefix(r.tok));
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        assert_string_equal(piece(r.tok, 3 + b), buf);
        assert_int_equal(mope_tokenizer_token_type(r.tok, 3 + b), MOPE_TOKEN_BYTE);
    }
    /* "newest" after merges 1, 2, 6, 7 is ▁n ew est; the 8th merge would join them */
    int32_t ids[8];
    mope_error err = {0};
    int n = mope_tokenizer_encode(r.tok, "newest", 6, false, false, ids, 8, &err);
    assert_int_equal(n, 3);
    assert_string_equal(piece(r.tok, ids[0]), U2581 "n");
    assert_string_equal(piece(r.tok, ids[1]), "ew");
    assert_string_equal(piece(r.tok, ids[2]), "est");
    mope_tokenizer_train_result_free(&r);

    /* with a large target, training stops when no pair occurs twice:
     * every word of the corpus then is one token */
    o.vocab_size = 5000;
    train_ok(&o, &r);
    assert_true(r.n_merges < 5000 - 270);
    assert_int_equal(mope_tokenizer_n_vocab(r.tok), r.first_merge_id + r.n_merges);
    const char *words[] = {"low", "lower", "newest", "widest"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(mope_tokenizer_encode(r.tok, words[i], strlen(words[i]), false, false, ids, 8, &err), 1);
    mope_tokenizer_train_result_free(&r);

    /* min_freq: no pair occurs 10 times */
    o.min_freq = 10;
    train_ok(&o, &r);
    assert_int_equal(r.n_merges, 0);
    mope_tokenizer_train_result_free(&r);
}

/* ---- a synthetic corpus with Zipf-like word frequencies ---- */
static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static char *make_corpus(size_t target, uint32_t seed) {
    static const char *syl[] = {"ka", "re", "to", "mi", "sun", "ber", "o", "la", "ing", "th", "e", "qu"};
    static const char *extra[] = {"caf\xc3\xa9", "na\xc3\xafve", "\xe6\x97\xa5\xe6\x9c\xac", "\xce\xa9mega", "<0x41>"};
    static const char *punct[] = {",", ".", ";", "!", "?", "(", ")"};
    static char words[400][32];
    for (int w = 0; w < 400; w++) {
        uint32_t s = (uint32_t)w * 7919u + 17u;
        int k = 1 + (int)(lcg(&s) % 4);
        words[w][0] = 0;
        for (int j = 0; j < k; j++) strcat(words[w], syl[lcg(&s) % 12]);
    }
    char *c = malloc(target + 64);
    assert_non_null(c);
    size_t n = 0;
    while (n < target) {
        uint32_t r = lcg(&seed);
        const char *w;
        if (r % 50 == 0) w = extra[(r / 50) % 5];
        else w = words[(r % 400) * (r % 400) / 400]; /* low indices far more often */
        n += (size_t)sprintf(c + n, "%s", w);
        uint32_t q = lcg(&seed) % 40;
        const char *sep = q == 0 ? "\n" : q == 1 ? "\n\n" : q == 2 ? "  " : q == 3 ? "\t" : " ";
        if (q >= 4 && q < 7) n += (size_t)sprintf(c + n, "%s", punct[q % 7]);
        n += (size_t)sprintf(c + n, "%s", sep);
    }
    c[n] = 0;
    return c;
}

/* ---- the naive reference: words, then the merges applied in order ---- */
typedef struct nsym {
    char s[512];
} nsym;

/* Words of the ▁-expanded text as [start, end) offsets: a new word at
 * every "▁" and where the run switches between ASCII whitespace and other
 * characters. */
static size_t utf8_len(unsigned char c) {
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

static int naive_words(const char *x, size_t n, size_t *start, size_t *end) {
    int nw = 0, cls = 0;
    size_t ws = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len((unsigned char)x[i]);
        bool space = l == 3 && memcmp(x + i, U2581, 3) == 0;
        int k = x[i] && strchr("\t\n\v\f\r", x[i]) ? 2 : 1;
        if (i > ws && (space || (cls && cls != k))) {
            start[nw] = ws;
            end[nw++] = i;
            ws = i;
            cls = 0;
        }
        if (!space) cls = k;
        i += l;
    }
    if (n > ws) {
        start[nw] = ws;
        end[nw++] = n;
    }
    return nw;
}

/* Symbols of one word after the merges, in order: merge i joins every
 * adjacent (left_i, right_i), left to right. */
static int naive_bpe(const mope_tokenizer_train_result *r, const char *word, size_t len, nsym *sy) {
    int n = 0;
    for (size_t i = 0; i < len;) {
        size_t l = utf8_len((unsigned char)word[i]);
        memcpy(sy[n].s, word + i, l);
        sy[n++].s[l] = 0;
        i += l;
    }
    for (int m = 0; m < r->n_merges; m++) {
        const char *a = piece(r->tok, r->merges[2 * m]), *b = piece(r->tok, r->merges[2 * m + 1]);
        for (int i = 0; i + 1 < n; i++) {
            if (strcmp(sy[i].s, a) || strcmp(sy[i + 1].s, b)) continue;
            strcat(sy[i].s, b);
            memmove(sy + i + 1, sy + i + 2, (size_t)(n - i - 2) * sizeof *sy);
            n--;
        }
    }
    return n;
}

/* The ids the naive reference gives for the whole text. */
static int naive_encode(const mope_tokenizer_train_result *r, const char *text, int32_t *ids, int cap) {
    size_t n = strlen(text);
    char *x = malloc(3 * n + 4);
    assert_non_null(x);
    size_t m = 0;
    memcpy(x, U2581, 3);
    m = 3;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(x + m, U2581, 3);
            m += 3;
        } else {
            x[m++] = text[i];
        }
    }
    size_t *ws = malloc(sizeof *ws * (m + 1)), *we = malloc(sizeof *we * (m + 1));
    nsym *sy = malloc(sizeof *sy * 512);
    assert_true(ws && we && sy);
    int nw = naive_words(x, m, ws, we), k = 0;
    for (int w = 0; w < nw; w++) {
        assert_true(we[w] - ws[w] < 512);
        int ns = naive_bpe(r, x + ws[w], we[w] - ws[w], sy);
        for (int i = 0; i < ns; i++) {
            int32_t id = mope_tokenizer_find(r->tok, sy[i].s, strlen(sy[i].s));
            if (id >= 0 && mope_tokenizer_token_type(r->tok, id) == MOPE_TOKEN_NORMAL) {
                assert_true(k < cap);
                ids[k++] = id;
                continue;
            }
            for (size_t j = 0; sy[i].s[j]; j++) { /* byte fallback */
                char bt[8];
                snprintf(bt, sizeof bt, "<0x%02X>", (unsigned char)sy[i].s[j]);
                assert_true(k < cap);
                ids[k++] = mope_tokenizer_find(r->tok, bt, 6);
            }
        }
    }
    free(x);
    free(ws);
    free(we);
    free(sy);
    return k;
}

static void test_encode_matches_naive(void **state) {
    (void)state;
    char *corpus = make_corpus(60000, 12345);
    mope_tokenizer_train_opts o = opts_text(corpus, 700);
    o.char_coverage = 0.999; /* the rarest characters go through byte fallback */
    mope_tokenizer_train_result r;
    train_ok(&o, &r);
    assert_int_equal(mope_tokenizer_n_vocab(r.tok), 700);
    /* the naive reference applies the merge list; it equals the encoder's
     * score-ordered merging when no piece was formed through another split */
    assert_int_equal(r.n_extra_merges, 0);
    size_t n = strlen(corpus);
    int32_t *got = NULL, *exp = malloc(sizeof *exp * (n + 16));
    assert_non_null(exp);
    mope_error err = {0};
    int ng = mope_tokenizer_encode_alloc(r.tok, corpus, n, false, false, &got, &err);
    int ne = naive_encode(&r, corpus, exp, (int)n + 16);
    assert_int_equal(ng, ne);
    assert_memory_equal(got, exp, (size_t)ng * sizeof *got);
    assert_true(ng < (int)n / 2); /* it compresses */
    /* the byte-token text in the corpus never became a normal piece */
    int32_t b41 = mope_tokenizer_find(r.tok, "<0x41>", 6);
    assert_int_equal(mope_tokenizer_token_type(r.tok, b41), MOPE_TOKEN_BYTE);
    /* every piece is distinct and no merged piece is longer than 16 characters */
    for (int32_t i = 0; i < 700; i++) {
        size_t len;
        const char *p = mope_tokenizer_piece(r.tok, i, &len);
        assert_int_equal(mope_tokenizer_find(r.tok, p, len), i);
    }
    free(got);
    free(exp);
    mope_tokenizer_train_result_free(&r);

    /* max_piece_chars bounds merged pieces in characters ("▁" counts one) */
    o.max_piece_chars = 3;
    train_ok(&o, &r);
    for (int32_t i = r.first_merge_id; i < mope_tokenizer_n_vocab(r.tok); i++) {
        const char *p = piece(r.tok, i);
        int chars = 0;
        for (; *p; p++) chars += ((unsigned char)*p & 0xc0) != 0x80;
        assert_true(chars <= 3);
    }
    mope_tokenizer_train_result_free(&r);
    free(corpus);
}

static void assert_roundtrip(const mope_tokenizer *t, const char *s) {
    mope_error err = {0};
    int32_t *ids = NULL;
    int n = mope_tokenizer_encode_alloc(t, s, strlen(s), true, false, &ids, &err);
    assert_true(n >= 1);
    assert_int_equal(ids[0], 1);
    size_t len;
    /* the decoder strips the space of the very first token: leave BOS out */
    char *back = mope_tokenizer_decode_alloc(t, ids + 1, n - 1, MOPE_DECODE_STRIP_SPACE, &len, &err);
    assert_non_null(back);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(back, s, len);
    free(back);
    free(ids);
}

static void test_roundtrip_and_specials(void **state) {
    (void)state;
    char *corpus = make_corpus(20000, 777);
    size_t n = strlen(corpus);
    char *text = malloc(n + 200);
    assert_non_null(text);
    /* specials inside the training text are split out, not learned from */
    snprintf(text, n + 200, "<|user|>kare to<|assistant|>mi sun<|end|>%s<|user|><|user|>", corpus);
    mope_tokenizer_train_opts o = opts_text(text, 500);
    const char *sp[] = {"<|user|>", "<|assistant|>", "<|end|>"};
    const bool ctl[] = {false, false, true};
    o.specials = sp;
    o.n_specials = 3;
    o.special_control = ctl;
    mope_tokenizer_train_result r;
    train_ok(&o, &r);
    for (int i = 0; i < 3; i++) assert_string_equal(piece(r.tok, 3 + i), sp[i]);
    assert_int_equal(mope_tokenizer_token_type(r.tok, 3), MOPE_TOKEN_USER_DEFINED);
    assert_int_equal(mope_tokenizer_token_type(r.tok, 5), MOPE_TOKEN_CONTROL);
    assert_string_equal(piece(r.tok, 6), "<0x00>");
    for (int32_t i = r.first_merge_id; i < mope_tokenizer_n_vocab(r.tok); i++)
        assert_null(strchr(piece(r.tok, i), '|'));

    int32_t ids[64];
    mope_error err = {0};
    const char *s = "<|user|>kare<|assistant|>";
    int k = mope_tokenizer_encode(r.tok, s, strlen(s), false, false, ids, 64, &err);
    assert_true(k >= 3);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[k - 1], 4);
    /* the control token is one token only when special parsing is asked for */
    assert_int_equal(mope_tokenizer_encode(r.tok, "<|end|>", 7, false, true, ids, 64, &err), 1);
    assert_int_equal(ids[0], 5);
    assert_true(mope_tokenizer_encode(r.tok, "<|end|>", 7, false, false, ids, 64, &err) > 1);

    const char *cases[] = {
        "kare to mi",
        "  leading spaces, trailing  ",
        "tabs\t\tand\n\nnewlines\r\n",
        "Z\xc3\xbcrich \xe2\x98\x83 snowman, \xf0\x9f\x98\x80 emoji, \xe4\xb8\xad\xe6\x96\x87",
        "control \x01\x02\x7f bytes and ~`^ unseen ASCII",
        "mi sun!? (ka) re;  qu.",
        "x",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) assert_roundtrip(r.tok, cases[i]);
    assert_roundtrip(r.tok, corpus);
    /* an unseen character falls back to its UTF-8 bytes */
    k = mope_tokenizer_encode(r.tok, "\xe2\x98\x83", 3, false, false, ids, 64, &err);
    assert_int_equal(k, 4); /* ▁ then three byte tokens */
    assert_int_equal(ids[1], 6 + 0xe2);
    assert_int_equal(ids[2], 6 + 0x98);
    assert_int_equal(ids[3], 6 + 0x83);
    mope_tokenizer_train_result_free(&r);
    free(text);
    free(corpus);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_gguf_and_determinism(void **state) {
    (void)state;
    char dir[] = "/tmp/mope_test_toktrain_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pa[128], pb[128], pc[128], data[128];
    snprintf(pa, sizeof pa, "%s/a.gguf", dir);
    snprintf(pb, sizeof pb, "%s/b.gguf", dir);
    snprintf(pc, sizeof pc, "%s/c.gguf", dir);
    snprintf(data, sizeof data, "%s/corpus.txt", dir);
    char *corpus = make_corpus(30000, 99);
    FILE *f = fopen(data, "wb");
    assert_non_null(f);
    fputs(corpus, f);
    fclose(f);

    const char *sp[] = {"<|user|>"};
    mope_tokenizer_train_opts o = opts_text(corpus, 600);
    o.specials = sp;
    o.n_specials = 1;
    mope_tokenizer_train_result r1, r2, r3;
    mope_error err = {0};
    train_ok(&o, &r1);
    assert_int_equal(mope_tokenizer_train_save(&r1, &o, pa, &err), 0);
    train_ok(&o, &r2);
    assert_int_equal(mope_tokenizer_train_save(&r2, &o, pb, &err), 0);
    /* the same text from a file trains the same vocabulary */
    mope_tokenizer_train_opts of = o;
    const char *files[] = {data};
    of.text = NULL;
    of.text_len = 0;
    of.files = files;
    of.n_files = 1;
    train_ok(&of, &r3);
    assert_int_equal(mope_tokenizer_train_save(&r3, &of, pc, &err), 0);
    size_t la, lb, lc;
    char *ba = slurp(pa, &la), *bb = slurp(pb, &lb), *bc = slurp(pc, &lc);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    assert_int_equal(la, lc);
    assert_memory_equal(ba, bc, la);
    free(ba);
    free(bb);
    free(bc);

    /* reloaded: same pieces, scores, types and ids */
    mope_tokenizer *t = mope_tokenizer_load(pa, &err);
    assert_non_null(t);
    int32_t nv = mope_tokenizer_n_vocab(t);
    assert_int_equal(nv, mope_tokenizer_n_vocab(r1.tok));
    for (int32_t i = 0; i < nv; i++) {
        assert_string_equal(piece(t, i), piece(r1.tok, i));
        assert_int_equal(mope_tokenizer_token_type(t, i), mope_tokenizer_token_type(r1.tok, i));
        assert_float_equal(mope_tokenizer_score(t, i), mope_tokenizer_score(r1.tok, i), 0);
    }
    int32_t *x = NULL, *y = NULL;
    int nx = mope_tokenizer_encode_alloc(t, corpus, strlen(corpus), true, false, &x, &err);
    int ny = mope_tokenizer_encode_alloc(r1.tok, corpus, strlen(corpus), true, false, &y, &err);
    assert_true(nx > 1);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, (size_t)nx * sizeof *x);
    free(x);
    free(y);
    mope_tokenizer_free(t);

    /* the file says what it is and how it was trained */
    mope_gguf *g = mope_gguf_open(pa, &err);
    assert_non_null(g);
    mope_gguf_str s;
    assert_int_equal(mope_gguf_get_str(g, "general.architecture", &s), 0);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    assert_int_equal(mope_gguf_get_str(g, "tokenizer.ggml.pre", &s), 0);
    assert_memory_equal(s.ptr, "default", 7);
    int64_t v;
    assert_int_equal(mope_gguf_get_i64(g, "mope.tokenizer.n_merges", &v), 0);
    assert_int_equal(v, r1.n_merges);
    assert_int_equal(mope_gguf_get_i64(g, "mope.tokenizer.vocab_size_target", &v), 0);
    assert_int_equal(v, 600);
    assert_int_equal(mope_gguf_get_i64(g, "mope.tokenizer.training_bytes", &v), 0);
    assert_int_equal(v, (int64_t)strlen(corpus));
    assert_int_equal(mope_gguf_n_tensors(g), 0);
    mope_gguf_close(g);

    /* an unwritable output is an error, not a crash */
    assert_true(mope_tokenizer_train_save(&r1, &o, "/nonexistent-dir/x.gguf", &err) < 0);
    assert_true(strlen(err.msg) > 0);

    mope_tokenizer_train_result_free(&r1);
    mope_tokenizer_train_result_free(&r2);
    mope_tokenizer_train_result_free(&r3);
    unlink(pa);
    unlink(pb);
    unlink(pc);
    unlink(data);
    rmdir(dir);
    free(corpus);
}

static void expect_fail(const mope_tokenizer_train_opts *o, int code, const char *needle) {
    mope_tokenizer_train_result r;
    mope_error err = {0};
    int rc = mope_tokenizer_train_bpe(o, &r, &err);
    assert_int_equal(rc, code);
    assert_null(r.tok);
    if (!strstr(err.msg, needle)) fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err.msg, needle);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_input(void **state) {
    (void)state;
    mope_tokenizer_train_opts o = opts_text(SENNRICH, 200);
    expect_fail(&o, MOPE_EINVAL, "smaller than the fixed base");
    o.vocab_size = 500;
    o.min_freq = 0;
    expect_fail(&o, MOPE_EINVAL, "min_freq");
    o.min_freq = 2;
    o.max_piece_chars = 1;
    expect_fail(&o, MOPE_EINVAL, "max_piece_chars");
    o.max_piece_chars = 16;
    o.char_coverage = 1.5;
    expect_fail(&o, MOPE_EINVAL, "char_coverage");
    o.char_coverage = 0.9995;
    const char *dup[] = {"<|a|>", "<|a|>"};
    o.specials = dup;
    o.n_specials = 2;
    expect_fail(&o, MOPE_EINVAL, "given twice");
    const char *res[] = {"</s>"};
    o.specials = res;
    o.n_specials = 1;
    expect_fail(&o, MOPE_EINVAL, "</s>");
    const char *spaced[] = {"<|a b|>"};
    o.specials = spaced;
    expect_fail(&o, MOPE_EINVAL, "contains a space");
    const char *empty[] = {""};
    o.specials = empty;
    expect_fail(&o, MOPE_EINVAL, "empty");
    o.n_specials = 0;
    o.specials = NULL;

    mope_tokenizer_train_opts e = opts_text("", 500);
    expect_fail(&e, MOPE_EINVAL, "empty");
    e.text = NULL;
    expect_fail(&e, MOPE_EINVAL, "no training data");
    /* only special-token text: nothing to learn from */
    mope_tokenizer_train_opts s = opts_text("<s></s><s>", 500);
    expect_fail(&s, MOPE_EINVAL, "no words");

    const char *missing[] = {"/nonexistent-dir/corpus.txt"};
    e.files = missing;
    e.n_files = 1;
    expect_fail(&e, MOPE_EIO, "/nonexistent-dir/corpus.txt");
    char path[] = "/tmp/mope_test_toktrain_empty_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const char *emptyf[] = {path};
    e.files = emptyf;
    expect_fail(&e, MOPE_EINVAL, "is empty");
    unlink(path);
    assert_int_equal(mope_tokenizer_train_bpe(NULL, NULL, NULL), MOPE_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_merges),
        cmocka_unit_test(test_encode_matches_naive),
        cmocka_unit_test(test_roundtrip_and_specials),
        cmocka_unit_test(test_gguf_and_determinism),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
