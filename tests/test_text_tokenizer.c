/* Tokenizers against reference tokenisations: every case of the four
 * *.expected.json sets (HF / SentencePiece / tiktoken ids), the
 * *.special.expected.json sets (special-token parsing) and llama.cpp's own
 * test-tokenizer-0 vectors, on the real vocab GGUFs.  Also streaming
 * detokenisation over every input, and special-token properties. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "mope/tokenizer.h"

#define TOKDIR MOPE_SHARED_DIR "/testdata/tokenizers"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        if (len) *len = (size_t)n;
    }
    return b;
}

static mope_tokenizer *load_vocab(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/vocab-%s.gguf", TOKDIR, name);
    mope_error err = {0};
    double t0 = mope_time_s();
    mope_tokenizer *t = mope_tokenizer_load(path, &err);
    if (!t) fprintf(stderr, "load %s: %s\n", path, err.msg);
    else fprintf(stderr, "# loaded %s (%d tokens) in %.3f s\n", name, (int)mope_tokenizer_n_vocab(t), mope_time_s() - t0);
    assert_non_null(t);
    return t;
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "\n");
}

/* A chunk the streaming detokenizer emits must be whole UTF-8 characters. */
static bool valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!l || i + l > n) return false;
        for (size_t k = 1; k < l; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        i += l;
    }
    return true;
}

/* Runs one expected-json file; returns the number of failing cases. */
static int run_expected(const mope_tokenizer *t, const char *file, bool parse_special, bool check_stream) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", TOKDIR, file);
    char *js = read_file(path, NULL);
    assert_non_null(js);
    cJSON *arr = cJSON_Parse(js);
    free(js);
    assert_non_null(arr);
    assert_true(cJSON_IsArray(arr));
    int n_cases = cJSON_GetArraySize(arr), fails = 0;
    assert_true(n_cases > 0);
    mope_detok *d = mope_detok_new(t, MOPE_DECODE_SPECIAL | MOPE_DECODE_STRIP_SPACE, NULL);
    assert_non_null(d);
    for (int c = 0; c < n_cases; c++) {
        cJSON *cs = cJSON_GetArrayItem(arr, c);
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(cs, "text"));
        const char *dec = cJSON_GetStringValue(cJSON_GetObjectItem(cs, "decoded"));
        cJSON *jids = cJSON_GetObjectItem(cs, "ids");
        assert_non_null(text);
        assert_non_null(dec);
        int ne = cJSON_GetArraySize(jids);
        int32_t *exp = malloc(sizeof *exp * (size_t)(ne + 1));
        for (int i = 0; i < ne; i++) exp[i] = (int32_t)cJSON_GetArrayItem(jids, i)->valuedouble;
        int32_t *got = NULL;
        mope_error err = {0};
        int ng = mope_tokenizer_encode_alloc(t, text, strlen(text), false, parse_special, &got, &err);
        bool ok = ng == ne && memcmp(got, exp, sizeof *exp * (size_t)ne) == 0;
        if (!ok) {
            fprintf(stderr, "%s case %d: encode mismatch for \"%s\" (%s)\n", file, c, text, ng < 0 ? err.msg : "");
            print_ids("expected", exp, ne);
            if (ng >= 0) print_ids("got     ", got, ng);
        }
        /* decode the expected ids (so a decode bug is reported on its own) */
        size_t dl;
        char *s = mope_tokenizer_decode_alloc(t, exp, ne, MOPE_DECODE_SPECIAL | MOPE_DECODE_STRIP_SPACE, &dl, &err);
        assert_non_null(s);
        if (dl != strlen(dec) || memcmp(s, dec, dl) != 0) {
            fprintf(stderr, "%s case %d: decode mismatch: expected \"%s\" got \"%s\"\n", file, c, dec, s);
            ok = false;
        }
        if (check_stream) {
            /* streaming the same ids gives the same bytes, in whole characters */
            mope_detok_reset(d);
            size_t acc = 0;
            bool sok = true;
            for (int i = 0; i < ne && sok; i++) {
                size_t l;
                const char *p = mope_detok_push(d, exp[i], &l, &err);
                assert_non_null(p);
                if (!valid_utf8((const unsigned char *)p, l) || acc + l > dl || memcmp(s + acc, p, l) != 0) sok = false;
                acc += l;
            }
            size_t l;
            const char *p = mope_detok_flush(d, &l);
            assert_int_equal(l, 0); /* valid input leaves nothing held */
            (void)p;
            if (!sok || acc != dl) {
                fprintf(stderr, "%s case %d: streaming decode differs\n", file, c);
                ok = false;
            }
        }
        free(s);
        free(got);
        free(exp);
        if (!ok) fails++;
    }
    mope_detok_free(d);
    cJSON_Delete(arr);
    fprintf(stderr, "# %s: %d/%d cases pass\n", file, n_cases - fails, n_cases);
    return fails;
}

/* llama.cpp's test-tokenizer-0 vectors: .inp strings split by a marker,
 * .out one line of ids per string. */
static int run_llamacpp(const mope_tokenizer *t, const char *name) {
    char path[512];
    size_t il;
    snprintf(path, sizeof path, "%s/llamacpp/ggml-vocab-%s.gguf.inp", TOKDIR, name);
    char *inp = read_file(path, &il);
    snprintf(path, sizeof path, "%s/llamacpp/ggml-vocab-%s.gguf.out", TOKDIR, name);
    char *out = read_file(path, NULL);
    assert_non_null(inp);
    assert_non_null(out);
    static const char SEP[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof SEP - 1;
    int fails = 0, n_cases = 0;
    char *pos = inp, *end = inp + il, *line = out;
    while (pos < end) {
        char *sep = memmem(pos, (size_t)(end - pos), SEP, sl);
        size_t tl = sep ? (size_t)(sep - pos) : (size_t)(end - pos);
        /* expected ids: one line */
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        int32_t exp[512];
        int ne = 0;
        for (char *p = line, *q; ne < 512; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p) break;
            exp[ne++] = (int32_t)v;
        }
        int32_t got[512];
        mope_error err = {0};
        int ng = mope_tokenizer_encode(t, pos, tl, false, false, got, 512, &err);
        if (ng != ne || memcmp(got, exp, sizeof *exp * (size_t)ne) != 0) {
            fprintf(stderr, "llamacpp %s case %d: mismatch for \"%.*s\" (%s)\n", name, n_cases, (int)tl, pos,
                    ng < 0 ? err.msg : "");
            print_ids("expected", exp, ne);
            if (ng >= 0) print_ids("got     ", got, ng < 512 ? ng : 512);
            fails++;
        }
        n_cases++;
        line = nl + 1;
        if (!sep) break;
        pos = sep + sl;
    }
    free(inp);
    free(out);
    fprintf(stderr, "# llamacpp %s: %d/%d cases pass\n", name, n_cases - fails, n_cases);
    assert_true(n_cases >= 40);
    return fails;
}

/* Random strings (ASCII, spaces, multi-byte characters and, unless
 * valid_only, stray bytes that are not UTF-8) must decode back exactly, and
 * streaming must give the same bytes as a whole decode. */
static void check_random_roundtrip(const mope_tokenizer *t, bool valid_only, uint64_t seed) {
    static const char *const pieces[] = {"a", "b", "Z", "7", " ", "  ", "\n", "\t", "'s", "<s>", "<|", "|>", ".", "!",
                                         "\xc3\xa9", "\xe4\xbd\xa0", "\xf0\x9f\xa6\x99", "\xd0\x96", "\xe2\x80\x8b"};
    const int np = (int)(sizeof pieces / sizeof *pieces);
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    mope_detok *d = mope_detok_new(t, MOPE_DECODE_STRIP_SPACE, NULL);
    assert_non_null(d);
    char text[256], *stream = malloc(4096);
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 0;
        int parts = (int)mope_rng_below(&rng, 24);
        for (int k = 0; k < parts; k++) {
            if (!valid_only && mope_rng_below(&rng, 5) == 0) {
                text[n++] = (char)(0x80 + mope_rng_below(&rng, 128));
            } else {
                const char *p = pieces[mope_rng_below(&rng, (uint32_t)np)];
                memcpy(text + n, p, strlen(p));
                n += strlen(p);
            }
        }
        mope_error err = {0};
        int32_t *ids = NULL;
        int m = mope_tokenizer_encode_alloc(t, text, n, false, false, &ids, &err);
        assert_true(m >= 0);
        size_t dl;
        char *s = mope_tokenizer_decode_alloc(t, ids, m, MOPE_DECODE_STRIP_SPACE, &dl, &err);
        assert_non_null(s);
        if (dl != n || memcmp(s, text, n) != 0) {
            fprintf(stderr, "random round trip failed (iter %d): \"%.*s\" -> \"%s\"\n", iter, (int)n, text, s);
            fail();
        }
        mope_detok_reset(d);
        size_t acc = 0, l;
        for (int i = 0; i < m; i++) {
            const char *p = mope_detok_push(d, ids[i], &l, &err);
            assert_non_null(p);
            memcpy(stream + acc, p, l);
            acc += l;
        }
        const char *p = mope_detok_flush(d, &l);
        memcpy(stream + acc, p, l);
        acc += l;
        assert_int_equal(acc, dl);
        assert_memory_equal(stream, s, dl);
        free(s);
        free(ids);
    }
    free(stream);
    mope_detok_free(d);
}

static void test_llama_spm(void **state) {
    (void)state;
    mope_tokenizer *t = load_vocab("llama-spm");
    assert_string_equal(mope_tokenizer_model(t), "llama");
    assert_int_equal(mope_tokenizer_n_vocab(t), 32000);
    assert_int_equal(mope_tokenizer_bos(t), 1);
    assert_int_equal(mope_tokenizer_eos(t), 2);
    assert_int_equal(mope_tokenizer_unk(t), 0);
    assert_true(mope_tokenizer_add_bos(t));
    assert_true(mope_tokenizer_add_space_prefix(t));
    int fails = run_expected(t, "llama-spm.expected.json", false, true);
    fails += run_expected(t, "llama-spm.special.expected.json", true, true);
    fails += run_llamacpp(t, "llama-spm");
    assert_int_equal(fails, 0);
    check_random_roundtrip(t, false, 1);
    mope_tokenizer_free(t);
}

static void test_llama3_bpe(void **state) {
    (void)state;
    mope_tokenizer *t = load_vocab("llama3-bpe");
    assert_string_equal(mope_tokenizer_model(t), "gpt2");
    assert_string_equal(mope_tokenizer_pre(t), "llama-bpe");
    assert_int_equal(mope_tokenizer_bos(t), 128000);
    assert_true(mope_tokenizer_add_bos(t));
    assert_false(mope_tokenizer_add_space_prefix(t));
    int fails = run_expected(t, "llama3-bpe.expected.json", false, true);
    fails += run_expected(t, "llama3-bpe.special.expected.json", true, true);
    fails += run_llamacpp(t, "llama-bpe");
    assert_int_equal(fails, 0);
    check_random_roundtrip(t, false, 2);
    /* end of generation: EOS key, and <|eot_id|> found by its text */
    assert_int_equal(mope_tokenizer_eot(t), 128009);
    assert_true(mope_tokenizer_is_eog(t, 128001));
    assert_true(mope_tokenizer_is_eog(t, 128009));
    assert_false(mope_tokenizer_is_eog(t, 128000));
    assert_false(mope_tokenizer_is_eog(t, 9906));
    assert_true(mope_tokenizer_is_control(t, 128009));
    /* without parse_special a control token's text is plain text */
    const char *s = "<|eot_id|>";
    int32_t ids[16];
    int n = mope_tokenizer_encode(t, s, strlen(s), false, false, ids, 16, NULL);
    assert_true(n > 1);
    for (int i = 0; i < n; i++) assert_int_not_equal(ids[i], 128009);
    n = mope_tokenizer_encode(t, s, strlen(s), true, true, ids, 16, NULL);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 128000);
    assert_int_equal(ids[1], 128009);
    mope_tokenizer_free(t);
}

static void test_qwen_bpe(void **state) {
    (void)state;
    mope_tokenizer *t = load_vocab("qwen-bpe");
    assert_string_equal(mope_tokenizer_pre(t), "qwen2");
    assert_false(mope_tokenizer_add_bos(t));
    assert_non_null(mope_tokenizer_chat_template(t));
    int fails = run_expected(t, "qwen-bpe.expected.json", false, true);
    fails += run_expected(t, "qwen-bpe.special.expected.json", true, true);
    fails += run_llamacpp(t, "qwen2");
    assert_int_equal(fails, 0);
    check_random_roundtrip(t, true, 3); /* no stray bytes: they could form combining marks, which NFC changes */
    assert_int_equal(mope_tokenizer_eot(t), 151645); /* <|im_end|> */
    assert_true(mope_tokenizer_is_eog(t, 151645));
    assert_true(mope_tokenizer_is_eog(t, 151643)); /* <|endoftext|> */
    assert_false(mope_tokenizer_is_eog(t, 151644)); /* <|im_start|> */
    /* user-defined tokens (<think>) are split out even without parse_special */
    const char *s = "a<think>b";
    int32_t ids[16];
    int n = mope_tokenizer_encode(t, s, strlen(s), false, false, ids, 16, NULL);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 151667);
    assert_int_equal(mope_tokenizer_token_type(t, 151667), MOPE_TOKEN_USER_DEFINED);
    mope_tokenizer_free(t);
}

static void test_gpt2_bpe(void **state) {
    (void)state;
    mope_tokenizer *t = load_vocab("gpt2-bpe");
    assert_false(mope_tokenizer_add_bos(t));
    int fails = run_expected(t, "gpt2-bpe.expected.json", false, true);
    fails += run_expected(t, "gpt2-bpe.special.expected.json", true, true);
    fails += run_llamacpp(t, "gpt-2");
    assert_int_equal(fails, 0);
    check_random_roundtrip(t, false, 4);
    assert_true(mope_tokenizer_is_eog(t, 50256));
    mope_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm),
        cmocka_unit_test(test_llama3_bpe),
        cmocka_unit_test(test_qwen_bpe),
        cmocka_unit_test(test_gpt2_bpe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
