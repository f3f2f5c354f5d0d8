/* PrefBench corpus on the tiny setting (300 concepts): JSONL well-formed with
 * the documented fields, >= 12 phrasings per concept, the fixed split (held-out
 * concepts in no train or dev record), byte-identical output for a seed, and
 * every style moving its own labeler the right way relative to neutral; the
 * tone wrapper the recipe puts around the experts' answers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mope/prefbench.h"

static mope_wordnet *g_wn;
static char g_dir[3][512];
static const char *FILES[6] = {"train_prompts.jsonl", "train_responses.jsonl", "dev_prompts.jsonl",
                               "dev_responses.jsonl", "test_prompts.jsonl",  "test_responses.jsonl"};

static int setup(void **state) {
    (void)state;
    mope_error err = {0};
    g_wn = mope_wordnet_load(NULL, &err);
    if (!g_wn) {
        fprintf(stderr,
                "WordNet 3.0 is required at " MOPE_PREFBENCH_WORDNET_DIR
                ": install the Debian package wordnet-base (scripts/deps.sh installs it). Error: %s\n",
                err.msg);
        return -1;
    }
    /* A: seed 7 through the loading entry point, B: seed 7 again, C: seed 8 */
    uint64_t seeds[3] = {7, 7, 8};
    for (int i = 0; i < 3; i++) {
        snprintf(g_dir[i], sizeof g_dir[i], "%s/prefbench_tiny_%ld_%d", MOPE_BINARY_DIR, (long)getpid(), i);
        mope_prefbench_corpus_opts o = {0};
        o.out_dir = g_dir[i];
        o.seed = seeds[i];
        o.tiny = 1;
        mope_prefbench_corpus_stats st;
        int rc = i == 0 ? mope_prefbench_corpus_build(&o, &st, &err) : mope_prefbench_corpus_build_wn(g_wn, &o, &st, &err);
        if (rc) {
            fprintf(stderr, "corpus build failed: %s\n", err.msg);
            return -1;
        }
        if (i == 0)
            fprintf(stderr, "tiny corpus: %d/%d/%d concepts, %ld/%ld/%ld responses, %.2f s\n", st.concepts[0],
                    st.concepts[1], st.concepts[2], st.responses[0], st.responses[1], st.responses[2], st.seconds);
        if (st.concepts[0] + st.concepts[1] + st.concepts[2] != 300) return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        for (int f = 0; f < 6; f++) {
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", g_dir[i], FILES[f]);
            remove(p);
        }
        rmdir(g_dir[i]);
    }
    mope_wordnet_free(g_wn);
    return 0;
}

static char *slurp(const char *dir, const char *name, size_t *len) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

typedef void (*line_fn)(cJSON *rec, int split, void *ctx);

/* Parses every line of a file; each must be a JSON object with string fields. */
static int each_line(const char *dir, int file, line_fn fn, void *ctx) {
    size_t len;
    char *buf = slurp(dir, FILES[file], &len);
    int n = 0;
    char *save = NULL;
    for (char *ln = strtok_r(buf, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        cJSON *rec = cJSON_Parse(ln);
        assert_non_null(rec);
        const char *fields[] = {"id", "prompt", "concept", "split", "style", "response"};
        int nf = file % 2 ? 6 : 4;
        assert_int_equal(cJSON_GetArraySize(rec), nf);
        for (int k = 0; k < nf; k++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, fields[k]);
            assert_true(cJSON_IsString(v));
            assert_true(strlen(v->valuestring) > 0);
        }
        int split = file / 2;
        assert_string_equal(cJSON_GetObjectItem(rec, "split")->valuestring, mope_prefbench_split_name(split));
        assert_int_equal(mope_prefbench_split_of(cJSON_GetObjectItem(rec, "concept")->valuestring), split);
        fn(rec, split, ctx);
        cJSON_Delete(rec);
        n++;
    }
    free(buf);
    return n;
}

static void test_deterministic(void **state) {
    (void)state;
    for (int f = 0; f < 6; f++) {
        size_t la, lb, lc;
        char *a = slurp(g_dir[0], FILES[f], &la), *b = slurp(g_dir[1], FILES[f], &lb),
             *c = slurp(g_dir[2], FILES[f], &lc);
        assert_true(la > 0);
        assert_true(la == lb && memcmp(a, b, la) == 0);
        if (f % 2 == 0) assert_true(la == lc && memcmp(a, c, la) == 0); /* prompts do not depend on the seed */
        else assert_false(la == lc && memcmp(a, c, la) == 0);            /* wording does */
        free(a);
        free(b);
        free(c);
    }
}

/* ---- phrasings ---- */
typedef struct phr {
    char concept[128];
    char prompts[64][256];
    int n;
    int concepts, min_distinct;
} phr;

static void flush_concept(phr *p) {
    if (!p->concept[0]) return;
    int distinct = 0;
    for (int i = 0; i < p->n; i++) {
        int dup = 0;
        for (int j = 0; j < i; j++) dup |= strcmp(p->prompts[i], p->prompts[j]) == 0;
        distinct += !dup;
    }
    if (distinct < p->min_distinct) p->min_distinct = distinct;
    p->concepts++;
    p->n = 0;
}

static void on_prompt(cJSON *rec, int split, void *ctx) {
    (void)split;
    phr *p = ctx;
    const char *c = cJSON_GetObjectItem(rec, "concept")->valuestring;
    const char *q = cJSON_GetObjectItem(rec, "prompt")->valuestring;
    if (strcmp(c, p->concept) != 0) {
        flush_concept(p);
        snprintf(p->concept, sizeof p->concept, "%s", c);
    }
    assert_true(p->n < 64);
    snprintf(p->prompts[p->n++], sizeof p->prompts[0], "%s", q);
    /* every prompt names its concept or its plural */
    char pl[256];
    assert_true(mope_prefbench_plural(g_wn, c, pl, sizeof pl) > 0);
    assert_true(strcasestr(q, c) != NULL || strcasestr(q, pl) != NULL);
    char last = q[strlen(q) - 1];
    assert_true(last == '?' || last == '.');
}

static void test_phrasings(void **state) {
    (void)state;
    phr *p = calloc(1, sizeof *p);
    p->min_distinct = 1 << 30;
    for (int s = 0; s < 3; s++) {
        each_line(g_dir[0], 2 * s, on_prompt, p);
        flush_concept(p);
        p->concept[0] = 0;
    }
    fprintf(stderr, "%d concepts, at least %d distinct phrasings each\n", p->concepts, p->min_distinct);
    assert_int_equal(p->concepts, 300);
    assert_true(p->min_distinct >= 12);
    free(p);
    /* articles and plurals in phrasings */
    char buf[256];
    assert_true(mope_prefbench_phrase(g_wn, "apple", 0, 0, buf, sizeof buf) > 0);
    assert_string_equal(buf, "What is an apple?");
    assert_true(mope_prefbench_phrase(g_wn, "glacier", 0, 3, buf, sizeof buf) > 0);
    assert_string_equal(buf, "I keep hearing about glaciers. What are they?");
    assert_true(mope_prefbench_phrase(g_wn, "knife", 0, 1, buf, sizeof buf) > 0);
    assert_string_equal(buf, "Explain knives to me.");
    assert_true(mope_prefbench_phrase(g_wn, "water", 1, 3, buf, sizeof buf) > 0);
    assert_string_equal(buf, "I keep hearing about water. What is it?");
    assert_true(mope_prefbench_phrase(g_wn, "water", 1, 99, buf, sizeof buf) < 0);
}

/* ---- split ---- */
typedef struct names {
    char (*v)[128];
    int n, cap;
} names;

static int names_has(const names *s, const char *c) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], c) == 0) return 1;
    return 0;
}

static void on_test_concept(cJSON *rec, int split, void *ctx) {
    (void)split;
    names *s = ctx;
    const char *c = cJSON_GetObjectItem(rec, "concept")->valuestring;
    if (names_has(s, c)) return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
    }
    snprintf(s->v[s->n++], 128, "%s", c);
}

static void on_train_record(cJSON *rec, int split, void *ctx) {
    (void)split;
    const names *s = ctx;
    assert_false(names_has(s, cJSON_GetObjectItem(rec, "concept")->valuestring));
    const char *q = cJSON_GetObjectItem(rec, "prompt")->valuestring;
    for (int i = 0; i < s->n; i++) {
        /* the prompt of a training record never asks about a held-out concept */
        char want[200];
        snprintf(want, sizeof want, " %s?", s->v[i]);
        assert_null(strstr(q, want));
    }
}

static void test_split(void **state) {
    (void)state;
    names test = {0};
    each_line(g_dir[0], 4, on_test_concept, &test);
    each_line(g_dir[0], 5, on_test_concept, &test);
    fprintf(stderr, "%d held-out concepts in the tiny corpus\n", test.n);
    assert_true(test.n >= 3);
    for (int f = 0; f < 4; f++) each_line(g_dir[0], f, on_train_record, &test);
    free(test.v);
    /* the hash split holds out 3-5% of all noun lemmas, so >= 500 of the
     * default 24000 concepts (the full build has ~900) */
    int n = mope_wordnet_n_lemmas(g_wn), held = 0, dev = 0;
    for (int i = 0; i < n; i++) {
        int s = mope_prefbench_split_of(mope_wordnet_lemma(g_wn, i));
        held += s == MOPE_PREFBENCH_TEST;
        dev += s == MOPE_PREFBENCH_DEV;
    }
    assert_true(held > n * 3 / 100 && held < n * 5 / 100);
    assert_true(dev > n * 2 / 100 && dev < n * 4 / 100);
    /* the split depends on the name only */
    assert_int_equal(mope_prefbench_split_of("glacier"), mope_prefbench_split_of("glacier"));
}

/* ---- styles move their labelers ---- */
typedef struct acc {
    mope_prefbench_labeler *lb;
    double sum[MOPE_PREFBENCH_N_STYLES][12], sq[MOPE_PREFBENCH_N_STYLES][12];
    int n[MOPE_PREFBENCH_N_STYLES];
    int truncated, low_gate, total;
} acc;

static void on_response(cJSON *rec, int split, void *ctx) {
    (void)split;
    acc *a = ctx;
    const char *st = cJSON_GetObjectItem(rec, "style")->valuestring;
    int s = 0;
    while (s < MOPE_PREFBENCH_N_STYLES && strcmp(st, mope_prefbench_style_name(s)) != 0) s++;
    assert_true(s < MOPE_PREFBENCH_N_STYLES);
    mope_prefbench_labels l;
    assert_int_equal(mope_prefbench_label(a->lb, cJSON_GetObjectItem(rec, "response")->valuestring,
                                          cJSON_GetObjectItem(rec, "prompt")->valuestring,
                                          cJSON_GetObjectItem(rec, "concept")->valuestring, &l, NULL),
                     0);
    double v[12] = {l.expertise, l.words, l.facts, l.friendliness, l.choice[0], l.choice[1],
                    l.choice[2], l.choice[3], l.choice[4], l.choice[5], l.informativeness, 0};
    for (int k = 0; k < 12; k++) {
        a->sum[s][k] += v[k];
        a->sq[s][k] += v[k] * v[k];
    }
    a->n[s]++;
    a->truncated += l.q.truncated;
    a->low_gate += l.q.gate < 0.5;
    a->total++;
}

static void test_styles(void **state) {
    (void)state;
    acc *a = calloc(1, sizeof *a);
    a->lb = mope_prefbench_labeler_create(g_wn, NULL);
    assert_non_null(a->lb);
    for (int s = 0; s < 3; s++) each_line(g_dir[0], 2 * s + 1, on_response, a);
    double m[MOPE_PREFBENCH_N_STYLES][12];
    fprintf(stderr, "style    expert  words  facts friend |  P1A  P1B  P2A  P2B  P3A  P3B\n");
    for (int s = 0; s < MOPE_PREFBENCH_N_STYLES; s++) {
        assert_int_equal(a->n[s], 300 * 2); /* every concept, 2 variants */
        fprintf(stderr, "%-7s", mope_prefbench_style_name(s));
        for (int k = 0; k < 10; k++) {
            m[s][k] = a->sum[s][k] / a->n[s];
            fprintf(stderr, k == 4 ? " | %4.2f" : (k > 4 ? " %4.2f" : " %6.2f"), m[s][k]);
        }
        m[s][10] = a->sum[s][10] / a->n[s];
        fprintf(stderr, "\n");
    }
    enum { EXP, WORDS, FACTS, FRIEND, U0, INFO = 10 };
    enum { NEU, S1A, S1B, S2A, S2B, S3A, S3B };
    assert_true(m[S1A][EXP] < m[NEU][EXP] - 1.0);
    assert_true(m[S1B][EXP] > m[NEU][EXP] + 5.0);
    assert_true(m[S2A][WORDS] < m[NEU][WORDS] * 0.75);
    assert_true(m[S2A][FACTS] < m[NEU][FACTS]);
    assert_true(m[S2B][FACTS] > m[NEU][FACTS] + 3.0);
    assert_true(m[S3A][FRIEND] > m[NEU][FRIEND] + 1.5);
    assert_true(m[S3B][FRIEND] < m[NEU][FRIEND] - 1.5);
    /* The sanity table asks each expert to move its dimension by >= 1 std of
     * the base (P2A in words); a model imitating the corpus gets part of the
     * way, so the corpus itself must be further apart than that (the P1A and
     * P2A styles were at 1.0 before the neutral style was made fuller). */
    double sd_exp = sqrt(a->sq[NEU][EXP] / a->n[NEU] - m[NEU][EXP] * m[NEU][EXP]);
    double sd_inf = sqrt(a->sq[NEU][INFO] / a->n[NEU] - m[NEU][INFO] * m[NEU][INFO]);
    double sd_words = sqrt(a->sq[NEU][WORDS] / a->n[NEU] - m[NEU][WORDS] * m[NEU][WORDS]);
    fprintf(stderr, "neutral-std shifts: P1A expertise %.2f, P2A words %.2f, P2A informativeness %.2f\n",
            (m[NEU][EXP] - m[S1A][EXP]) / sd_exp, (m[NEU][WORDS] - m[S2A][WORDS]) / sd_words,
            (m[NEU][INFO] - m[S2A][INFO]) / sd_inf);
    assert_true(m[NEU][EXP] - m[S1A][EXP] >= 1.2 * sd_exp);
    assert_true(m[NEU][WORDS] - m[S2A][WORDS] >= 1.2 * sd_words);
    assert_true(m[NEU][INFO] - m[S2A][INFO] >= 1.2 * sd_inf);
    /* and each style's own choice utility beats neutral's */
    for (int c = 0; c < 6; c++) assert_true(m[1 + c][U0 + c] > m[NEU][U0 + c] + 0.15);
    /* generated answers are complete and on topic */
    assert_int_equal(a->truncated, 0);
    assert_true(a->low_gate <= a->total / 100);
    mope_prefbench_labeler_free(a->lb);
    free(a);
}

/* The tone wrapper: tone 0 copies; +-1 put exactly one sentence before and one
 * after the answer, left unchanged between them; the friendliness labeler
 * ranks friendly wrapping above the plain answer and unfriendly below it on
 * every one of the corpus' neutral, P1B and P2A answers tried; the same seed
 * gives the same bytes; small buffers and bad tones are errors. */
static int sentence_like(const char *s, size_t n) {
    return n >= 2 && n < 80 && (s[n - 1] == '.' || s[n - 1] == '!' || s[n - 1] == '?' ||
                                (unsigned char)s[n - 1] >= 0x80); /* the friendly closings may end in an emoji */
}

static void test_tone_wrap(void **state) {
    (void)state;
    mope_error err = {0};
    mope_prefbench_labeler *lb = mope_prefbench_labeler_create(g_wn, &err);
    assert_non_null(lb);
    const char *answers[3] = {
        "A glacier is a slowly moving mass of ice originally compacted from snow. It is a kind of ice mass.",
        "In lexical-semantic terms, glacier denotes a slowly moving mass or river of ice formed by the "
        "accumulation and compaction of snow on mountains, and it is subsumed under the superordinate category "
        "\"ice mass\" within the object taxonomy of nominal concepts.",
        "Briefly: a slowly moving mass of ice."};
    char out[2048], again[2048];
    mope_rng r1, r2;
    for (int a = 0; a < 3; a++) {
        mope_prefbench_labels plain, warm, cold;
        assert_int_equal(mope_prefbench_label(lb, answers[a], "What is a glacier?", "glacier", &plain, &err), 0);
        for (int tone = -1; tone <= 1; tone++) {
            for (uint64_t seed = 1; seed <= 8; seed++) {
                mope_rng_seed(&r1, seed);
                mope_rng_seed(&r2, seed);
                int n = mope_prefbench_tone_wrap(tone, answers[a], &r1, out, sizeof out);
                assert_int_equal(n, (int)strlen(out));
                assert_int_equal(mope_prefbench_tone_wrap(tone, answers[a], &r2, again, sizeof again), n);
                assert_string_equal(out, again);
                if (tone == 0) {
                    assert_string_equal(out, answers[a]);
                    continue;
                }
                /* "<opening> <answer> <closing>" */
                const char *mid = strstr(out, answers[a]);
                assert_non_null(mid);
                size_t la = strlen(answers[a]), lo = (size_t)(mid - out);
                assert_true(lo >= 2 && out[lo - 1] == ' ' && mid[la] == ' ');
                assert_true(sentence_like(out, lo - 1));
                assert_true(sentence_like(mid + la + 1, strlen(mid + la + 1)));
                mope_prefbench_labels *l = tone > 0 ? &warm : &cold;
                assert_int_equal(mope_prefbench_label(lb, out, "What is a glacier?", "glacier", l, &err), 0);
                if (tone > 0) assert_true(warm.friendliness > plain.friendliness + 0.5);
                else assert_true(cold.friendliness < plain.friendliness - 0.5);
                /* the content dimension stays: a wrapped answer is still on topic */
                assert_int_equal(l->q.on_topic, 1);
            }
        }
    }
    mope_rng_seed(&r1, 1);
    assert_int_equal(mope_prefbench_tone_wrap(1, answers[0], &r1, out, 40), MOPE_ERANGE);
    assert_int_equal(mope_prefbench_tone_wrap(2, answers[0], &r1, out, sizeof out), MOPE_EINVAL);
    assert_int_equal(mope_prefbench_tone_wrap(0, NULL, &r1, out, sizeof out), MOPE_EINVAL);
    mope_prefbench_labeler_free(lb);
}

static void test_bad_options(void **state) {
    (void)state;
    mope_error err = {0};
    mope_prefbench_corpus_opts o = {0};
    assert_int_equal(mope_prefbench_corpus_build_wn(g_wn, &o, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "out_dir"));
    o.out_dir = "/dev/null/not_a_dir";
    o.tiny = 1;
    assert_int_equal(mope_prefbench_corpus_build_wn(g_wn, &o, NULL, &err), MOPE_EIO);
    assert_non_null(strstr(err.msg, "/dev/null"));
    o.out_dir = g_dir[0];
    o.variants = -1;
    assert_int_equal(mope_prefbench_corpus_build_wn(g_wn, &o, NULL, &err), MOPE_EINVAL);
    o.variants = 0;
    o.wordnet_dir = "/nonexistent/wordnet";
    assert_true(mope_prefbench_corpus_build(&o, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "wordnet-base"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_phrasings), cmocka_unit_test(test_split),
        cmocka_unit_test(test_styles),        cmocka_unit_test(test_tone_wrap),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
