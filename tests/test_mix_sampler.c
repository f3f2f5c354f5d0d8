/* Sampler: every filter against hand-computed distributions, empirical
 * frequencies of seeded draws against the expected filtered distribution
 * (chi-square bound), penalties on hand examples, determinism. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mope/sampler.h"

static mope_sampler_params plain(void) {
    /* Everything off, temperature 1: draws follow softmax(logits). */
    mope_sampler_params p = mope_sampler_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.no_repeat_ngram = 0;
    return p;
}

static mope_sampler *make(const mope_sampler_params *p) {
    mope_error err = {0};
    mope_sampler *s = mope_sampler_new(p, &err);
    assert_non_null(s);
    return s;
}

/* Chi-square statistic of `draws` seeded samples against `expect`; tokens
 * the filter removed must never appear. */
static double chi_square(mope_sampler *s, const float *row, int n, bool probs, const double *expect, int draws) {
    int counts[16] = {0};
    assert_true(n <= 16);
    mope_error err = {0};
    for (int i = 0; i < draws; i++) {
        int32_t t = probs ? mope_sampler_sample_probs(s, row, n, NULL, 0, &err)
                          : mope_sampler_sample(s, row, n, NULL, 0, &err);
        assert_true(t >= 0 && t < n);
        counts[t]++;
    }
    double chi = 0.0;
    for (int i = 0; i < n; i++) {
        if (expect[i] == 0.0) {
            assert_int_equal(counts[i], 0);
            continue;
        }
        double e = expect[i] * draws;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

/* Reference probabilities for the running example. */
static const float P5[5] = {0.4f, 0.3f, 0.15f, 0.1f, 0.05f};

static void logs_of(const float *p, float *l, int n) {
    for (int i = 0; i < n; i++) l[i] = logf(p[i]) + 3.0f; /* shift: softmax is shift-invariant */
}

static void check_filtered(mope_sampler *s, const float *row, int n, bool probs, const double *expect) {
    float out[16];
    mope_error err = {0};
    int32_t nz = mope_sampler_filtered(s, row, n, probs, NULL, 0, out, &err);
    int want_nz = 0;
    for (int i = 0; i < n; i++) {
        want_nz += expect[i] > 0;
        assert_float_equal(out[i], expect[i], 1e-5);
    }
    assert_int_equal(nz, want_nz);
}

static void test_greedy(void **state) {
    (void)state;
    mope_sampler_params p = plain();
    p.temp = 0.0f;
    p.top_k = 3; /* filters do not matter for greedy */
    mope_sampler *s = make(&p);
    const float row[6] = {1.0f, 3.0f, 2.0f, 0.5f, 3.0f, -7.0f};
    mope_error err = {0};
    /* argmax, tie between 1 and 4 goes to the lower id */
    for (int i = 0; i < 5; i++) assert_int_equal(mope_sampler_sample(s, row, 6, NULL, 0, &err), 1);
    const float neg[3] = {-5.0f, -0.25f, -1.0f};
    assert_int_equal(mope_sampler_sample(s, neg, 3, NULL, 0, &err), 1);
    mope_sampler_free(s);
}

/* Naive reference for top-p on a large vocabulary: full sort (logit desc,
 * id asc), softmax, smallest prefix reaching p. */
static const float *g_sort_logits;
static int cmp_ref(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    float x = g_sort_logits[i], y = g_sort_logits[j];
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : 1;
}

static void test_top_p_large_vocab(void **state) {
    (void)state;
    enum { N = 6000 };
    float *row = malloc(N * sizeof *row), *out = malloc(N * sizeof *out);
    double *want = malloc(N * sizeof *want);
    int *order = malloc(N * sizeof *order);
    assert_true(row && out && want && order);
    mope_rng r;
    mope_rng_seed(&r, 5);
    const float scales[3] = {0.5f, 2.0f, 6.0f}; /* flat to peaked distributions */
    const float ps[5] = {0.05f, 0.3f, 0.8f, 0.95f, 0.999f};
    for (int sc = 0; sc < 3; sc++) {
        /* logits on a 1/8 grid: many exact ties across the cut */
        for (int i = 0; i < N; i++) row[i] = roundf(8.0f * scales[sc] * mope_rng_normal(&r)) / 8.0f;
        for (int i = 0; i < N; i++) order[i] = i;
        g_sort_logits = row;
        qsort(order, N, sizeof *order, cmp_ref);
        double z = 0;
        for (int i = 0; i < N; i++) z += exp((double)row[i] - row[order[0]]);
        for (int pi = 0; pi < 5; pi++) {
            double cum = 0, kept = 0;
            int keep = N;
            for (int i = 0; i < N; i++) {
                cum += exp((double)row[order[i]] - row[order[0]]);
                if (cum >= ps[pi] * z) {
                    keep = i + 1;
                    break;
                }
            }
            memset(want, 0, N * sizeof *want);
            for (int i = 0; i < keep; i++) kept += exp((double)row[order[i]] - row[order[0]]);
            for (int i = 0; i < keep; i++) want[order[i]] = exp((double)row[order[i]] - row[order[0]]) / kept;
            mope_sampler_params p = plain();
            p.top_p = ps[pi];
            mope_sampler *s = make(&p);
            mope_error err = {0};
            assert_int_equal(mope_sampler_filtered(s, row, N, false, NULL, 0, out, &err), keep);
            for (int i = 0; i < N; i++) assert_float_equal(out[i], want[i], 1e-6);
            mope_sampler_free(s);
        }
    }
    free(row);
    free(out);
    free(want);
    free(order);
}

static void test_top_k1_is_greedy(void **state) {
    (void)state;
    mope_sampler_params p = plain();
    p.top_k = 1;
    p.seed = 7;
    mope_sampler *s = make(&p);
    mope_rng r;
    mope_rng_seed(&r, 99);
    mope_error err = {0};
    float row[50];
    for (int it = 0; it < 200; it++) {
        int best = 0;
        for (int i = 0; i < 50; i++) {
            row[i] = 4.0f * mope_rng_normal(&r);
            if (row[i] > row[best]) best = i;
        }
        assert_int_equal(mope_sampler_sample(s, row, 50, NULL, 0, &err), best);
    }
    mope_sampler_free(s);
}

static void test_plain_and_top_k_frequencies(void **state) {
    (void)state;
    float l[5];
    logs_of(P5, l, 5);
    /* no filter: the distribution itself */
    mope_sampler_params p = plain();
    p.seed = 1;
    mope_sampler *s = make(&p);
    const double all[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
    check_filtered(s, l, 5, false, all);
    /* df = 4: P(chi2 > 25) < 1e-4 */
    assert_true(chi_square(s, l, 5, false, all, 20000) < 25.0);
    mope_sampler_free(s);

    /* top-k = 3: the three largest, renormalised by 0.85 */
    p.top_k = 3;
    s = make(&p);
    const double k3[5] = {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0};
    check_filtered(s, l, 5, false, k3);
    assert_true(chi_square(s, l, 5, false, k3, 20000) < 22.0); /* df = 2 */
    /* the probability path gives the same distribution and draws */
    check_filtered(s, P5, 5, true, k3);
    assert_true(chi_square(s, P5, 5, true, k3, 20000) < 22.0);
    mope_sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    mope_sampler_params p = plain();
    /* cumulative 0.4, 0.7, 0.85, 0.95, 1.0: p = 0.65 needs two tokens,
     * 0.75 three, 0.3 one (the first already reaches it). */
    const struct {
        float top_p;
        double expect[5];
    } cases[] = {
        {0.65f, {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0}},
        {0.75f, {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0}},
        {0.3f, {1, 0, 0, 0, 0}},
        {0.9f, {0.4 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.1 / 0.95, 0}},
    };
    /* The same distribution with the tokens in shuffled order. */
    const int perm[5] = {3, 0, 4, 2, 1};
    float shuffled[5];
    for (int i = 0; i < 5; i++) shuffled[perm[i]] = P5[i];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        p.top_p = cases[c].top_p;
        p.seed = 100 + c;
        mope_sampler *s = make(&p);
        check_filtered(s, P5, 5, true, cases[c].expect);
        double sh[5];
        for (int i = 0; i < 5; i++) sh[perm[i]] = cases[c].expect[i];
        check_filtered(s, shuffled, 5, true, sh);
        assert_true(chi_square(s, shuffled, 5, true, sh, 20000) < 25.0);
        mope_sampler_free(s);
    }
}

static void test_min_p_and_temperature(void **state) {
    (void)state;
    mope_sampler_params p = plain();
    /* min-p 0.3: threshold 0.3 * 0.4 = 0.12 keeps 0.4, 0.3, 0.15 */
    p.min_p = 0.3f;
    mope_sampler *s = make(&p);
    const double m[5] = {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0};
    check_filtered(s, P5, 5, true, m);
    assert_true(chi_square(s, P5, 5, true, m, 20000) < 22.0);
    mope_sampler_free(s);

    /* temperature 0.5 squares the probabilities: 0.16 0.09 0.0225 0.01 0.0025 */
    p.min_p = 0.0f;
    p.temp = 0.5f;
    s = make(&p);
    float l[5];
    logs_of(P5, l, 5);
    const double z = 0.16 + 0.09 + 0.0225 + 0.01 + 0.0025;
    const double t[5] = {0.16 / z, 0.09 / z, 0.0225 / z, 0.01 / z, 0.0025 / z};
    check_filtered(s, l, 5, false, t);
    assert_true(chi_square(s, l, 5, false, t, 20000) < 25.0);
    mope_sampler_free(s);

    /* filters see the untempered distribution: top-p 0.65 keeps two tokens,
     * then temperature 2 takes square roots of 0.4 and 0.3 */
    p.temp = 2.0f;
    p.top_p = 0.65f;
    s = make(&p);
    const double a = sqrt(0.4), b = sqrt(0.3);
    const double tp[5] = {a / (a + b), b / (a + b), 0, 0, 0};
    check_filtered(s, l, 5, false, tp);
    mope_sampler_free(s);
}

static void test_repetition_penalty(void **state) {
    (void)state;
    mope_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 64;
    mope_sampler *s = make(&p);
    const float row[4] = {2.0f, -1.0f, 0.5f, 3.0f};
    /* token 0 appears twice but is penalised once: 2 -> 1; -1 -> -2 */
    const int32_t hist[3] = {0, 1, 0};
    const double pen[4] = {1.0, -2.0, 0.5, 3.0};
    double z = 0, expect[4];
    for (int i = 0; i < 4; i++) z += exp(pen[i]);
    for (int i = 0; i < 4; i++) expect[i] = exp(pen[i]) / z;
    float out[4];
    mope_error err = {0};
    assert_int_equal(mope_sampler_filtered(s, row, 4, false, hist, 3, out, &err), 4);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], expect[i], 1e-6);
    mope_sampler_free(s);

    /* window of 1: only the last token (3) is penalised: 3 -> 1.5 */
    p.repeat_last_n = 1;
    s = make(&p);
    const int32_t hist2[4] = {0, 1, 0, 3};
    const double pen2[4] = {2.0, -1.0, 0.5, 1.5};
    z = 0;
    for (int i = 0; i < 4; i++) z += exp(pen2[i]);
    mope_sampler_filtered(s, row, 4, false, hist2, 4, out, &err);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], exp(pen2[i]) / z, 1e-6);
    /* greedy flips from 3 to 0 once 3 is penalised enough */
    mope_sampler_free(s);
    p.temp = 0.0f;
    p.repeat_penalty = 4.0f;
    s = make(&p);
    assert_int_equal(mope_sampler_sample(s, row, 4, hist2, 0, &err), 3);
    assert_int_equal(mope_sampler_sample(s, row, 4, hist2, 4, &err), 0);
    mope_sampler_free(s);
}

static void test_no_repeat_ngram(void **state) {
    (void)state;
    mope_sampler_params p = plain();
    p.no_repeat_ngram = 3;
    mope_sampler *s = make(&p);
    float row[10];
    for (int i = 0; i < 10; i++) row[i] = 0.1f * (float)i;
    /* last two tokens (5, 6) were followed by 7 at the start: only 7 is banned
     * (9 followed 6 too, but after 8, not after 5 6) */
    const int32_t hist[8] = {5, 6, 7, 8, 6, 9, 5, 6};
    float out[10];
    mope_error err = {0};
    assert_int_equal(mope_sampler_filtered(s, row, 10, false, hist, 8, out, &err), 9);
    double z = 0;
    for (int i = 0; i < 10; i++)
        if (i != 7) z += exp(0.1 * i);
    for (int i = 0; i < 10; i++) assert_float_equal(out[i], i == 7 ? 0.0 : exp(0.1 * i) / z, 1e-6);
    /* two earlier occurrences of the prefix (1, 2): both followers banned */
    const int32_t h2[8] = {1, 2, 3, 1, 2, 9, 1, 2};
    assert_int_equal(mope_sampler_filtered(s, row, 10, false, h2, 8, out, &err), 8);
    assert_true(out[3] == 0.0f && out[9] == 0.0f && out[8] > 0.0f);
    /* history shorter than n bans nothing */
    assert_int_equal(mope_sampler_filtered(s, row, 10, false, h2, 2, out, &err), 10);
    mope_sampler_free(s);

    /* greedy avoids the banned argmax */
    p.temp = 0.0f;
    s = make(&p);
    assert_int_equal(mope_sampler_sample(s, row, 10, NULL, 0, &err), 9);
    assert_int_equal(mope_sampler_sample(s, row, 10, h2, 8, &err), 8);
    mope_sampler_free(s);

    /* n = 1 bans every token seen */
    p.no_repeat_ngram = 1;
    s = make(&p);
    assert_int_equal(mope_sampler_sample(s, row, 10, h2, 8, &err), 8);
    const int32_t h3[3] = {8, 9, 7};
    assert_int_equal(mope_sampler_sample(s, row, 10, h3, 3, &err), 6);
    mope_sampler_free(s);
}

static void test_seed_determinism(void **state) {
    (void)state;
    mope_sampler_params p = mope_sampler_default_params();
    p.temp = 1.5f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    float row[32];
    for (int i = 0; i < 32; i++) row[i] = sinf((float)i);
    int32_t a[64], b[64], c[64];
    mope_error err = {0};
    mope_sampler *s1 = make(&p), *s2 = make(&p);
    p.seed = 43;
    mope_sampler *s3 = make(&p);
    for (int i = 0; i < 64; i++) {
        a[i] = mope_sampler_sample(s1, row, 32, NULL, 0, &err);
        b[i] = mope_sampler_sample(s2, row, 32, NULL, 0, &err);
        c[i] = mope_sampler_sample(s3, row, 32, NULL, 0, &err);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    /* reseeding restarts the sequence */
    mope_sampler_reseed(s1, 42);
    for (int i = 0; i < 64; i++) assert_int_equal(mope_sampler_sample(s1, row, 32, NULL, 0, &err), a[i]);
    mope_sampler_free(s1);
    mope_sampler_free(s2);
    mope_sampler_free(s3);
}

static void test_bad_input(void **state) {
    (void)state;
    mope_error err = {0};
    mope_sampler_params p = plain();
    p.repeat_penalty = 0.0f;
    assert_null(mope_sampler_new(&p, &err));
    assert_int_equal(err.code, MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "penalty"));
    p = plain();
    p.top_p = NAN;
    assert_null(mope_sampler_new(&p, &err));
    p = plain();
    p.no_repeat_ngram = -2;
    assert_null(mope_sampler_new(&p, &err));

    p = plain();
    p.no_repeat_ngram = 1;
    mope_sampler *s = make(&p);
    float row[3] = {0.0f, NAN, 1.0f};
    assert_int_equal(mope_sampler_sample(s, row, 3, NULL, 0, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "token 1"));
    row[1] = 0.5f;
    const int32_t bad[1] = {3};
    assert_int_equal(mope_sampler_sample(s, row, 3, bad, 1, &err), MOPE_EINVAL);
    const int32_t all[3] = {0, 1, 2};
    assert_int_equal(mope_sampler_sample(s, row, 3, all, 3, &err), MOPE_ESTATE);
    const float negp[2] = {0.5f, -0.1f};
    assert_int_equal(mope_sampler_sample_probs(s, negp, 2, NULL, 0, &err), MOPE_EINVAL);
    const float zero[2] = {0.0f, 0.0f};
    assert_int_equal(mope_sampler_sample_probs(s, zero, 2, NULL, 0, &err), MOPE_ESTATE);
    assert_int_equal(mope_sampler_sample(s, row, 0, NULL, 0, &err), MOPE_EINVAL);
    mope_sampler_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_top_k1_is_greedy),
        cmocka_unit_test(test_plain_and_top_k_frequencies),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_top_p_large_vocab),
        cmocka_unit_test(test_min_p_and_temperature),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_no_repeat_ngram),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
