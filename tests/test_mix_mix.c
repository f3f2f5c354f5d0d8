/* Mixing rules against hand-computed distributions (vocab 5, 2-3 experts),
 * exact vs top-k mode, one-hot weights against a double softmax, gradients
 * against finite differences of a naive double reference, and numerical
 * extremes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mope/mix.h"

#define V5 5

static void set_full(mope_dist *d, const float *logits, int n) {
    mope_error err = {0};
    assert_int_equal(mope_dist_set_full(d, logits, n, &err), 0);
}

static void set_topk(mope_dist *d, int n, const int32_t *ids, const float *lps, int k) {
    mope_error err = {0};
    int rc = mope_dist_set_topk(d, n, ids, lps, k, &err);
    if (rc) fail_msg("%s", err.msg);
}

static void mix(const mope_dist *d, int K, const float *w, mope_mix_rule r, float *out) {
    mope_error err = {0};
    int rc = mope_mix_step(d, K, w, r, out, &err);
    if (rc) fail_msg("%s", err.msg);
}

static void assert_close(const float *a, const double *b, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (!(fabs(a[i] - b[i]) <= tol)) fail_msg("index %d: %.9g vs expected %.9g (tol %g)", i, a[i], b[i], tol);
}

/* Naive geometric rule over dense probabilities: prod p_k^w_k, normalised. */
static void geo_ref(const double *const *p, const double *w, int K, int n, double *out) {
    double s = 0;
    for (int y = 0; y < n; y++) {
        double v = 1;
        for (int k = 0; k < K; k++) v *= w[k] > 0 ? pow(p[k][y], w[k]) : 1;
        out[y] = v;
        s += v;
    }
    for (int y = 0; y < n; y++) out[y] /= s;
}

static const double P1[V5] = {0.1, 0.2, 0.3, 0.4, 0.0};
static const double P2[V5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};

static void logits_of(const double *p, float *l, float shift) {
    for (int i = 0; i < V5; i++) l[i] = p[i] > 0 ? (float)log(p[i]) + shift : -INFINITY;
}

static void test_exact_two_experts(void **state) {
    (void)state;
    float l1[V5], l2[V5], out[V5];
    logits_of(P1, l1, 3.0f); /* unnormalised on purpose */
    logits_of(P2, l2, -7.0f);
    mope_dist d[2] = {0};
    set_full(&d[0], l1, V5);
    set_full(&d[1], l2, V5);
    float w[2] = {0.25f, 0.75f};
    /* 0.25 * P1 + 0.75 * P2, by hand */
    const double lin[V5] = {0.4, 0.2375, 0.16875, 0.146875, 0.046875};
    mix(d, 2, w, MOPE_MIX_LINEAR, out);
    assert_close(out, lin, V5, 1e-6);
    /* Unnormalised weights give the same mixture. */
    float w2[2] = {1.0f, 3.0f};
    mix(d, 2, w2, MOPE_MIX_LINEAR, out);
    assert_close(out, lin, V5, 1e-6);

    double geo[V5];
    const double *ps[2] = {P1, P2};
    const double wd[2] = {0.25, 0.75};
    geo_ref(ps, wd, 2, V5, geo);
    assert_true(geo[4] == 0); /* P1 gives token 4 nothing */
    mix(d, 2, w, MOPE_MIX_GEOMETRIC, out);
    assert_close(out, geo, V5, 1e-6);

    /* Token probabilities and the mixture's log-prob. */
    float probs[2], lps[2];
    double lpm;
    mope_error err = {0};
    assert_int_equal(mope_mix_token_probs(d, 2, 2, w, MOPE_MIX_LINEAR, probs, lps, &lpm, &err), 0);
    assert_true(fabs(probs[0] - 0.3) < 1e-6 && fabs(probs[1] - 0.125) < 1e-6);
    assert_true(fabs(lps[0] - log(0.3)) < 1e-6 && fabs(lps[1] - log(0.125)) < 1e-6);
    assert_true(fabs(lpm - log(0.16875)) < 1e-6);
    assert_int_equal(mope_mix_token_probs(d, 2, 1, w, MOPE_MIX_GEOMETRIC, NULL, NULL, &lpm, &err), 0);
    assert_true(fabs(lpm - log(geo[1])) < 1e-6);
    assert_int_equal(mope_mix_token_probs(d, 2, 4, w, MOPE_MIX_GEOMETRIC, probs, NULL, &lpm, &err), 0);
    assert_true(lpm == -INFINITY && probs[0] == 0);
    assert_int_equal(mope_mix_token_probs(d, 2, 5, w, MOPE_MIX_LINEAR, probs, NULL, &lpm, &err), MOPE_EINVAL);
    mope_dist_free(&d[0]);
    mope_dist_free(&d[1]);
}

/* Three experts: top-2, top-1 and "top-5" (all listed), by hand. */
static void test_topk_hand(void **state) {
    (void)state;
    mope_dist d[3] = {0};
    const int32_t ia[2] = {3, 0};
    const float la[2] = {logf(0.3f), logf(0.5f)};
    set_topk(&d[0], V5, ia, la, 2);
    const double da[V5] = {0.5, 0.2 / 3, 0.2 / 3, 0.3, 0.2 / 3};
    const int32_t ib[1] = {2};
    const float lb[1] = {logf(0.6f)};
    set_topk(&d[1], V5, ib, lb, 1);
    const double db[V5] = {0.1, 0.1, 0.6, 0.1, 0.1};
    const int32_t ic[5] = {4, 2, 0, 1, 3};
    const double dc[V5] = {0.05, 0.15, 0.2, 0.25, 0.35};
    float lc[5];
    for (int i = 0; i < 5; i++) lc[i] = (float)log(dc[ic[i]]);
    set_topk(&d[2], V5, ic, lc, 5);
    assert_int_equal(d[0].ids[0], 0); /* sorted by id */
    assert_true(fabs(d[0].rest_p - 0.2 / 3) < 1e-7);
    assert_true(d[2].rest_p == 0);

    const float w[3] = {0.5f, 0.3f, 0.2f};
    const double *ps[3] = {da, db, dc};
    const double wd[3] = {0.5, 0.3, 0.2};
    double lin[V5], geo[V5];
    for (int y = 0; y < V5; y++) lin[y] = 0.5 * da[y] + 0.3 * db[y] + 0.2 * dc[y];
    geo_ref(ps, wd, 3, V5, geo);
    float out[V5];
    mix(d, 3, w, MOPE_MIX_LINEAR, out);
    assert_close(out, lin, V5, 1e-6);
    mix(d, 3, w, MOPE_MIX_GEOMETRIC, out);
    assert_close(out, geo, V5, 1e-6);

    /* Expert probabilities of a token unlisted by some, and the geometric
     * normaliser computed sparsely (all three are top-k). */
    float probs[3];
    double lpm;
    mope_error err = {0};
    assert_int_equal(mope_mix_token_probs(d, 3, 1, w, MOPE_MIX_LINEAR, probs, NULL, &lpm, &err), 0);
    assert_true(fabs(probs[0] - 0.2 / 3) < 1e-6 && fabs(probs[1] - 0.1) < 1e-6 && fabs(probs[2] - 0.15) < 1e-6);
    assert_true(fabs(lpm - log(lin[1])) < 1e-6);
    for (int y = 0; y < V5; y++) {
        assert_int_equal(mope_mix_token_probs(d, 3, y, w, MOPE_MIX_GEOMETRIC, NULL, NULL, &lpm, &err), 0);
        assert_true(fabs(lpm - log(geo[y])) < 1e-6);
    }
    /* Only the two partial lists: the sparse normaliser has a rest class. */
    double geo2[V5];
    const double wd2[2] = {0.4, 0.6};
    const float w2[2] = {0.4f, 0.6f};
    geo_ref(ps, wd2, 2, V5, geo2);
    for (int y = 0; y < V5; y++) {
        assert_int_equal(mope_mix_token_probs(d, 2, y, w2, MOPE_MIX_GEOMETRIC, NULL, NULL, &lpm, &err), 0);
        assert_true(fabs(lpm - log(geo2[y])) < 1e-6);
    }
    for (int i = 0; i < 3; i++) mope_dist_free(&d[i]);
}

/* Listed mass exactly 1: the unlisted tokens get 0 (log 0 = -inf). */
static void test_topk_full_mass(void **state) {
    (void)state;
    mope_dist d[2] = {0};
    const int32_t ia[2] = {1, 2};
    const float la[2] = {logf(0.5f), logf(0.5f)};
    set_topk(&d[0], V5, ia, la, 2);
    assert_true(d[0].rest_p == 0 && d[0].rest_logp == -INFINITY);
    const int32_t ib[1] = {2};
    const float lb[1] = {logf(0.5f)};
    set_topk(&d[1], V5, ib, lb, 1);
    const float w[2] = {0.5f, 0.5f};
    float out[V5];
    /* linear: .5 * {0,.5,.5,0,0} + .5 * {1/8,1/8,.5,1/8,1/8} */
    const double lin[V5] = {0.0625, 0.3125, 0.5, 0.0625, 0.0625};
    mix(d, 2, w, MOPE_MIX_LINEAR, out);
    assert_close(out, lin, V5, 1e-7);
    /* geometric: only tokens 1 and 2 survive: sqrt(.5 * .125) : sqrt(.5 * .5) = 1 : 2 */
    const double geo[V5] = {0, 1.0 / 3, 2.0 / 3, 0, 0};
    mix(d, 2, w, MOPE_MIX_GEOMETRIC, out);
    assert_close(out, geo, V5, 1e-7);
    double lpm;
    mope_error err = {0};
    assert_int_equal(mope_mix_token_probs(d, 2, 2, w, MOPE_MIX_GEOMETRIC, NULL, NULL, &lpm, &err), 0);
    assert_true(fabs(lpm - log(2.0 / 3)) < 1e-7);

    /* Disjoint full-mass lists: no token has mass geometrically. */
    const int32_t ic[2] = {3, 4};
    set_topk(&d[1], V5, ic, la, 2);
    assert_int_equal(mope_mix_step(d, 2, w, MOPE_MIX_GEOMETRIC, out, &err), MOPE_ERANGE);
    assert_int_equal(mope_mix_token_probs(d, 2, 1, w, MOPE_MIX_GEOMETRIC, NULL, NULL, &lpm, &err), MOPE_ERANGE);
    mix(d, 2, w, MOPE_MIX_LINEAR, out); /* linear is still fine */
    const double lin2[V5] = {0, 0.25, 0.25, 0.25, 0.25};
    assert_close(out, lin2, V5, 1e-7);
    /* A weight-0 expert cannot take mass away. */
    const float w3[2] = {1.0f, 0.0f};
    mix(d, 2, w3, MOPE_MIX_GEOMETRIC, out);
    const double one[V5] = {0, 0.5, 0.5, 0, 0};
    assert_close(out, one, V5, 0);
    mope_dist_free(&d[0]);
    mope_dist_free(&d[1]);
}

static void random_logits(float *l, int n, unsigned seed, float scale) {
    mope_rng r;
    mope_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) l[i] = scale * mope_rng_normal(&r);
}

static void softmax_ref(const float *l, int n, double *p) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
    for (int i = 0; i < n; i++) s += exp(l[i] - m);
    for (int i = 0; i < n; i++) p[i] = exp(l[i] - m) / s;
}

static void test_one_hot(void **state) {
    (void)state;
    enum { N = 1000, K = 3 };
    float *l = malloc(sizeof(float) * N * K), *out = malloc(sizeof(float) * N);
    double *ref = malloc(sizeof(double) * N);
    mope_dist d[K] = {0};
    for (int k = 0; k < K; k++) {
        random_logits(l + k * N, N, 10 + k, 3.0f);
        set_full(&d[k], l + k * N, N);
    }
    l[2 * N + 7] = -INFINITY; /* expert 2 forbids a token; harmless with weight 0 */
    set_full(&d[2], l + 2 * N, N);
    for (int k = 0; k < 2; k++) {
        float w[K] = {0};
        w[k] = 1;
        softmax_ref(l + k * N, N, ref);
        mix(d, K, w, MOPE_MIX_LINEAR, out);
        assert_close(out, ref, N, 1e-7);
        mix(d, K, w, MOPE_MIX_GEOMETRIC, out);
        assert_close(out, ref, N, 1e-7);
        mope_error err = {0};
        assert_int_equal(mope_dist_probs(&d[k], out, &err), 0);
        assert_close(out, ref, N, 1e-7);
    }
    free(l);
    free(out);
    free(ref);
    for (int k = 0; k < K; k++) mope_dist_free(&d[k]);
}

/* Listing all V tokens (in scrambled order) is exact mode. */
static void test_topk_all_equals_exact(void **state) {
    (void)state;
    enum { N = 50 };
    float la[N], lb[N], lp[N], outf[N], outt[N];
    int32_t ids[N];
    random_logits(la, N, 1, 2.0f);
    random_logits(lb, N, 2, 2.0f);
    double p[N];
    softmax_ref(lb, N, p);
    for (int i = 0; i < N; i++) {
        ids[i] = (i * 17 + 5) % N; /* a permutation */
        lp[i] = (float)log(p[ids[i]]);
    }
    mope_dist full[2] = {0}, topk[2] = {0};
    set_full(&full[0], la, N);
    set_full(&full[1], lb, N);
    set_full(&topk[0], la, N);
    set_topk(&topk[1], N, ids, lp, N);
    const float w[2] = {0.35f, 0.65f};
    for (int r = 0; r < 2; r++) {
        mix(full, 2, w, (mope_mix_rule)r, outf);
        mix(topk, 2, w, (mope_mix_rule)r, outt);
        for (int i = 0; i < N; i++) assert_true(fabs(outf[i] - outt[i]) < 1e-6);
        for (int y = 0; y < N; y += 7) {
            double a, b;
            mope_error err = {0};
            assert_int_equal(mope_mix_token_probs(full, 2, y, w, (mope_mix_rule)r, NULL, NULL, &a, &err), 0);
            assert_int_equal(mope_mix_token_probs(topk, 2, y, w, (mope_mix_rule)r, NULL, NULL, &b, &err), 0);
            assert_true(fabs(a - b) < 1e-5);
        }
    }
    for (int k = 0; k < 2; k++) {
        mope_dist_free(&full[k]);
        mope_dist_free(&topk[k]);
    }
}

/* Naive double log p_mix(y) for weights softmax(z). */
static double ref_logp(const double *const *p, const double *z, int K, int n, int y, mope_mix_rule r) {
    double w[8], m = -INFINITY, s = 0;
    for (int k = 0; k < K; k++) m = z[k] > m ? z[k] : m;
    for (int k = 0; k < K; k++) s += exp(z[k] - m);
    for (int k = 0; k < K; k++) w[k] = exp(z[k] - m) / s;
    if (r == MOPE_MIX_LINEAR) {
        double v = 0;
        for (int k = 0; k < K; k++) v += w[k] * p[k][y];
        return log(v);
    }
    double Z = 0, sy = 0;
    for (int t = 0; t < n; t++) {
        double e = 0;
        for (int k = 0; k < K; k++) e += w[k] * log(p[k][t]);
        Z += exp(e);
        if (t == y) sy = e;
    }
    return sy - log(Z);
}

static void test_gradients(void **state) {
    (void)state;
    enum { N = 7, K = 3 };
    float l[K][N];
    double pd[K][N];
    const double *ps[K] = {pd[0], pd[1], pd[2]};
    mope_dist d[K] = {0};
    for (int k = 0; k < K; k++) {
        random_logits(l[k], N, 100 + k, 1.5f);
        softmax_ref(l[k], N, pd[k]);
        set_full(&d[k], l[k], N);
    }
    const double z[K] = {0.3, -0.8, 1.1};
    float w[K];
    double m = 0;
    for (int k = 0; k < K; k++) m += exp(z[k]);
    for (int k = 0; k < K; k++) w[k] = (float)(exp(z[k]) / m);
    for (int r = 0; r < 2; r++) {
        for (int y = 0; y < N; y++) {
            float g[K];
            double lp;
            mope_error err = {0};
            int rc = mope_mix_grad_z(d, K, y, w, (mope_mix_rule)r, g, &lp, &err);
            if (rc) fail_msg("%s", err.msg);
            assert_true(fabs(lp - ref_logp(ps, z, K, N, y, (mope_mix_rule)r)) < 1e-6);
            double gsum = 0;
            for (int j = 0; j < K; j++) {
                const double h = 1e-5;
                double zp[K], zm[K];
                memcpy(zp, z, sizeof zp);
                memcpy(zm, z, sizeof zm);
                zp[j] += h;
                zm[j] -= h;
                double fd = (ref_logp(ps, zp, K, N, y, (mope_mix_rule)r) - ref_logp(ps, zm, K, N, y, (mope_mix_rule)r)) /
                            (2 * h);
                if (!(fabs(g[j] - fd) < 1e-5)) fail_msg("rule %d token %d z%d: %g vs fd %g", r, y, j, g[j], fd);
                gsum += g[j];
            }
            assert_true(fabs(gsum) < 1e-6); /* softmax logits: shift invariance */
        }
    }
    /* Linear formula by hand for one case: w_j (pi_j / p - 1). */
    float g[K];
    double lp;
    mope_error err = {0};
    assert_int_equal(mope_mix_grad_z(d, K, 2, w, MOPE_MIX_LINEAR, g, &lp, &err), 0);
    double p = 0;
    for (int k = 0; k < K; k++) p += (double)w[k] * pd[k][2];
    for (int j = 0; j < K; j++) assert_true(fabs(g[j] - w[j] * (pd[j][2] / p - 1)) < 1e-6);

    /* Geometric gradient is exact-mode only. */
    const int32_t ids[1] = {0};
    const float lps[1] = {-0.5f};
    set_topk(&d[1], N, ids, lps, 1);
    assert_int_equal(mope_mix_grad_z(d, K, 0, w, MOPE_MIX_GEOMETRIC, g, &lp, &err), MOPE_EUNSUPPORTED);
    assert_int_equal(mope_mix_grad_z(d, K, 0, w, MOPE_MIX_LINEAR, g, &lp, &err), 0);
    for (int k = 0; k < K; k++) mope_dist_free(&d[k]);
}

static void test_extremes(void **state) {
    (void)state;
    const float la[V5] = {1e4f, -1e4f, -INFINITY, 0.0f, 1e4f};
    const float lb[V5] = {-1e4f, -INFINITY, 1e4f, -1e4f, 0.0f};
    mope_dist d[2] = {0};
    set_full(&d[0], la, V5);
    set_full(&d[1], lb, V5);
    const float w[2] = {0.5f, 0.5f};
    float out[V5];
    const double lin[V5] = {0.25, 0, 0.5, 0, 0.25};
    mix(d, 2, w, MOPE_MIX_LINEAR, out);
    assert_close(out, lin, V5, 1e-7);
    const double geo[V5] = {0, 0, 0, 0, 1};
    mix(d, 2, w, MOPE_MIX_GEOMETRIC, out);
    assert_close(out, geo, V5, 1e-7);
    mope_error err = {0};
    double lpm;
    /* geometric: s(0) - s(4) = -5000 exactly; Z is dominated by token 4 */
    assert_int_equal(mope_mix_token_probs(d, 2, 0, w, MOPE_MIX_GEOMETRIC, NULL, NULL, &lpm, &err), 0);
    assert_true(fabs(lpm + 5000) < 1e-3);
    /* linear: log(.5) + (-1e4 - 1e4 - log 2), expert b gives nothing */
    assert_int_equal(mope_mix_token_probs(d, 2, 1, w, MOPE_MIX_LINEAR, NULL, NULL, &lpm, &err), 0);
    assert_true(fabs(lpm - (-2e4 - 2 * log(2.0))) < 1e-2);
    float g[2];
    assert_int_equal(mope_mix_grad_z(d, 2, 1, w, MOPE_MIX_LINEAR, g, &lpm, &err), 0);
    assert_true(fabs(g[0] - 0.5) < 1e-6 && fabs(g[1] + 0.5) < 1e-6);
    assert_int_equal(mope_mix_grad_z(d, 2, 4, w, MOPE_MIX_GEOMETRIC, g, &lpm, &err), 0);
    assert_true(isfinite(g[0]) && isfinite(g[1]) && fabs(lpm) < 1e-6);
    assert_int_equal(mope_mix_grad_z(d, 2, 2, w, MOPE_MIX_GEOMETRIC, g, &lpm, &err), MOPE_ERANGE);

    /* Huge logits everywhere stay normalised. */
    float big[V5] = {3e38f, 3e38f, -3e38f, 1e30f, 0};
    set_full(&d[0], big, V5);
    mix(d, 1, w, MOPE_MIX_LINEAR, out);
    const double half[V5] = {0.5, 0.5, 0, 0, 0};
    assert_close(out, half, V5, 1e-7);
    mope_dist_free(&d[0]);
    mope_dist_free(&d[1]);
}

/* The vectorised exp against a double softmax over a wide range of
 * log-probabilities, with a tail that is not a multiple of the lane count. */
static void test_exp_accuracy(void **state) {
    (void)state;
    enum { N = 4099 };
    float *l = malloc(sizeof(float) * N), *out = malloc(sizeof(float) * N);
    double *ref = malloc(sizeof(double) * N);
    for (int i = 0; i < N; i++) l[i] = -100.0f + 150.0f * (float)i / N + 0.001f * (float)(i % 7);
    l[5] = -INFINITY;
    l[N - 1] = 49.9f;
    mope_dist d = {0};
    set_full(&d, l, N);
    softmax_ref(l, N, ref);
    mope_error err = {0};
    assert_int_equal(mope_dist_probs(&d, out, &err), 0);
    /* The log-probability x = (l - hi) - lo takes two float roundings,
     * 2 * |x| * 2^-24, which exp turns into that much relative error; on
     * top, a few ulp of the exp itself. */
    for (int pass = 0; pass < 2; pass++) {
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double e = fabs(out[i] - ref[i]);
            if (ref[i] > 1e-30) e /= ref[i] * (3e-7 + fabs(log(ref[i])) * 1.2e-7);
            else e = e <= 1e-35 ? 0 : 1e9; /* far below anything that matters */
            if (e > worst) worst = e;
        }
        if (!(worst <= 1)) fail_msg("pass %d: error %g times the bound", pass, worst);
        assert_true(out[5] == 0);
        const float w[1] = {1};
        assert_int_equal(mope_mix_step(&d, 1, w, MOPE_MIX_LINEAR, out, &err), 0);
    }
    free(l);
    free(out);
    free(ref);
    mope_dist_free(&d);
}

static void test_bad_input(void **state) {
    (void)state;
    mope_error err = {0};
    mope_dist d[2] = {0};
    float out[V5];
    const float ninf[V5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(mope_dist_set_full(&d[0], ninf, V5, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "-inf"));
    float nan_l[V5] = {0, 1, NAN, 2, 3};
    assert_int_equal(mope_dist_set_full(&d[0], nan_l, V5, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "NaN"));
    float pinf[V5] = {0, INFINITY, 0, 0, 0};
    assert_int_equal(mope_dist_set_full(&d[0], pinf, V5, &err), MOPE_EINVAL);
    const int32_t dup[2] = {1, 1};
    const float lp2[2] = {-1, -2};
    assert_int_equal(mope_dist_set_topk(&d[0], V5, dup, lp2, 2, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    assert_int_equal(d[0].kind, MOPE_DIST_NONE);
    const int32_t oor[2] = {1, 5};
    assert_int_equal(mope_dist_set_topk(&d[0], V5, oor, lp2, 2, &err), MOPE_EINVAL);
    const int32_t ok2[2] = {1, 2};
    const float heavy[2] = {-0.1f, -0.2f}; /* 0.905 + 0.819 > 1 */
    assert_int_equal(mope_dist_set_topk(&d[0], V5, ok2, heavy, 2, &err), MOPE_EINVAL);
    assert_int_equal(mope_dist_set_topk(&d[0], V5, ok2, lp2, 0, &err), MOPE_EINVAL);
    assert_int_equal(mope_dist_set_topk(&d[0], V5, ok2, lp2, 6, &err), MOPE_EINVAL);
    const float good[V5] = {0, 1, 2, 3, 4};
    /* unset dist */
    const float w[2] = {0.5f, 0.5f};
    set_full(&d[0], good, V5);
    assert_int_equal(mope_mix_step(d, 2, w, MOPE_MIX_LINEAR, out, &err), MOPE_EINVAL);
    set_full(&d[1], good, 4);
    assert_int_equal(mope_mix_step(d, 2, w, MOPE_MIX_LINEAR, out, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "n_vocab"));
    set_full(&d[1], good, V5);
    /* a weight-0 expert is not read: unset is fine, and the mixture is the
     * other expert's distribution */
    {
        mope_dist d2[2] = {{0}, {0}};
        set_full(&d2[1], good, V5);
        const float w01[2] = {0.0f, 1.0f};
        float o2[V5], pk[2];
        double lpm = 0;
        assert_int_equal(mope_mix_step(d2, 2, w01, MOPE_MIX_LINEAR, o2, &err), 0);
        double z = 0;
        for (int v = 0; v < V5; v++) z += exp(good[v]);
        for (int v = 0; v < V5; v++) assert_true(fabs(o2[v] - exp(good[v]) / z) < 1e-6);
        assert_int_equal(mope_mix_token_probs(d2, 2, 3, w01, MOPE_MIX_LINEAR, pk, NULL, &lpm, &err), 0);
        assert_true(pk[0] == 0.0f);
        assert_true(fabs(lpm - (good[3] - log(z))) < 1e-6);
        /* the experts' probabilities alone, weights given: the same, no log p */
        float pk2[2] = {-1, -1};
        assert_int_equal(mope_mix_token_probs(d2, 2, 3, w01, MOPE_MIX_GEOMETRIC, pk2, NULL, NULL, &err), 0);
        assert_true(pk2[0] == 0.0f && fabs(pk2[1] - exp(good[3]) / z) < 1e-6);
        /* without weights every dist must be set */
        assert_int_equal(mope_mix_token_probs(d2, 2, 3, NULL, MOPE_MIX_GEOMETRIC, pk2, NULL, NULL, &err), MOPE_EINVAL);
        mope_dist_free(&d2[1]);
    }
    const float wneg[2] = {-0.1f, 1.1f}, wnan[2] = {NAN, 1}, wzero[2] = {0, 0};
    assert_int_equal(mope_mix_step(d, 2, wneg, MOPE_MIX_LINEAR, out, &err), MOPE_EINVAL);
    assert_int_equal(mope_mix_step(d, 2, wnan, MOPE_MIX_LINEAR, out, &err), MOPE_EINVAL);
    assert_int_equal(mope_mix_step(d, 2, wzero, MOPE_MIX_LINEAR, out, &err), MOPE_EINVAL);
    assert_int_equal(mope_mix_step(d, 2, w, (mope_mix_rule)7, out, &err), MOPE_EINVAL);
    assert_int_equal(mope_mix_step(d, 0, w, MOPE_MIX_LINEAR, out, &err), MOPE_EINVAL);
    assert_int_equal(mope_mix_rule_from_name("Geometric", &err), MOPE_MIX_GEOMETRIC);
    assert_int_equal(mope_mix_rule_from_name("mean", &err), MOPE_EINVAL);
    mope_dist_free(&d[0]);
    mope_dist_free(&d[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_two_experts),
        cmocka_unit_test(test_topk_hand),
        cmocka_unit_test(test_topk_full_mass),
        cmocka_unit_test(test_one_hot),
        cmocka_unit_test(test_topk_all_equals_exact),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_exp_accuracy),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
