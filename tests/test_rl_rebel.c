/* The REBEL objective: a hand-computed case, and finite differences of the
 * whole loss through the PCM head and trunk.
 *
 * Hand case (K = 2, 3 tokens each), weights given directly:
 *   y:  w = (.5,.5) (.25,.75) (.8,.2);  pi(y_t) = (.4,.2) (.6,.2) (.5,.25)
 *       p_t = .3, .3, .45;  lp(y) = ln(.3 * .3 * .45) = ln .0405
 *       dlp/dz_t,k = w_k (pi_k / p_t - 1):
 *         t0: (.5 * (4/3 - 1), .5 * (2/3 - 1)) = (1/6, -1/6)
 *         t1: (.25 * (2 - 1), .75 * (2/3 - 1)) = (1/4, -1/4)
 *         t2: (.8 * (10/9 - 1), .2 * (5/9 - 1)) = (4/45, -4/45)
 *   y': w = (.5,.5) x3;  pi = (.1,.3) (.2,.2) (.5,.1);  p_t = .2, .2, .3
 *       lp(y') = ln .012
 *   rollout log-probs: lp_t(y) = ln .03, lp_t(y') = ln .012; eta = 2;
 *   r(y) = .7, r(y') = .2
 *   d = ((ln .0405 - ln .03) - 0) / 2 - (.7 - .2) = ln(1.35) / 2 - .5
 *     = 0.300104592450338 / 2 - .5 = -0.349947703774831
 *   L = d^2 = 0.122463392...;  dL/dlp(y) = 2 d / eta = d = -0.34994770...
 *   KL(w || u) of (.8,.2) = .8 ln 1.6 + .2 ln .4 = 0.1927448...
 *   KL(q || w) of q = (.5,.5,0), w = (.25,.25,.5): .5 ln 2 + .5 ln 2 = ln 2,
 *     d/dz = w - q = (-.25, -.25, .5); of q = (1,0,0), w = (.5,.3,.2): ln 2
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mope/rebel.h"

static void test_hand_case(void **state) {
    (void)state;
    mope_error err = {0};
    const float w[6] = {.5f, .5f, .25f, .75f, .8f, .2f}, pk[6] = {.4f, .2f, .6f, .2f, .5f, .25f};
    const float w2[6] = {.5f, .5f, .5f, .5f, .5f, .5f}, pk2[6] = {.1f, .3f, .2f, .2f, .5f, .1f};
    double lp, lp2;
    float dz[6];
    assert_int_equal(mope_rebel_seq_logp(w, pk, 3, 2, &lp, dz, &err), 0);
    assert_int_equal(mope_rebel_seq_logp(w2, pk2, 3, 2, &lp2, NULL, &err), 0);
    assert_true(fabs(lp - log(0.0405)) < 1e-6);
    assert_true(fabs(lp2 - log(0.012)) < 1e-6);
    const double edz[6] = {1.0 / 6, -1.0 / 6, 0.25, -0.25, 4.0 / 45, -4.0 / 45};
    for (int i = 0; i < 6; i++) assert_true(fabs(dz[i] - edz[i]) < 1e-6);

    double dlp;
    double L = mope_rebel_pair_loss(2.0, lp, log(0.03), 0.7, lp2, log(0.012), 0.2, &dlp);
    const double d = -0.349947703774831;
    assert_true(fabs(L - d * d) < 1e-6);
    assert_true(fabs(L - 0.122463392) < 1e-6);
    assert_true(fabs(dlp - d) < 1e-6);

    float dk[2] = {0, 0};
    double kl = mope_rebel_kl_uniform(w + 4, 2, 1.0, dk);
    assert_true(fabs(kl - (0.8 * log(1.6) + 0.2 * log(0.4))) < 1e-7);
    assert_true(fabs(kl - 0.1927448) < 1e-6);
    /* dKL/dz_j = w_j (log(K w_j) - KL) */
    assert_true(fabs(dk[0] - 0.8 * (log(1.6) - kl)) < 1e-6);
    assert_true(fabs(dk[1] - 0.2 * (log(0.4) - kl)) < 1e-6);
    assert_true(fabs(mope_rebel_kl_uniform(w2, 2, 0, NULL)) < 1e-12);

    /* prior KL(q || w): a zero in q is fine, the gradient is w - q */
    const float q3[3] = {.5f, .5f, 0}, w3[3] = {.25f, .25f, .5f}, q1[3] = {1, 0, 0}, w4[3] = {.5f, .3f, .2f};
    float dp[3] = {0, 0, 0};
    assert_true(fabs(mope_rebel_kl_prior(w3, q3, 3, 2.0, dp) - log(2.0)) < 1e-7);
    assert_true(fabs(dp[0] + 0.5) < 1e-7 && fabs(dp[1] + 0.5) < 1e-7 && fabs(dp[2] - 1.0) < 1e-7);
    assert_true(fabs(mope_rebel_kl_prior(w4, q1, 3, 0, NULL) - log(2.0)) < 1e-7);
    assert_true(fabs(mope_rebel_kl_prior(q3, q3, 3, 0, NULL)) < 1e-12);

    /* an impossible token is an error, not -inf */
    const float zero[2] = {0, 0};
    assert_int_equal(mope_rebel_seq_logp(w, zero, 1, 2, &lp, NULL, &err), MOPE_ERANGE);
}

/* ---- through the PCM ---- */

enum { K = 3, NP = 3 };

enum { V = 40 };

typedef struct {
    int32_t tok[2 * NP][12];
    float pk[2 * NP][8 * K];
    float lpk[2 * NP][8 * K * V]; /* the geometric rule's recorded log-distributions */
    float prior[K];
    mope_rebel_pair pairs[NP];
} batch;

static void make_batch(batch *b, uint64_t seed) {
    mope_rng r;
    mope_rng_seed(&r, seed);
    for (int i = 0; i < NP; i++) {
        mope_rebel_sample *s[2] = {&b->pairs[i].y, &b->pairs[i].y2};
        for (int j = 0; j < 2; j++) {
            int q = 2 * i + j, P = 2 + (int)mope_rng_below(&r, 3), L = 2 + (int)mope_rng_below(&r, 5);
            for (int t = 0; t < P + L; t++) b->tok[q][t] = (int32_t)mope_rng_below(&r, 40);
            for (int t = 0; t < L * K; t++) b->pk[q][t] = 0.02f + 0.9f * mope_rng_uniform(&r);
            for (int t = 0; t < L * K; t++) { /* a random log-softmax row per (step, expert) */
                float *row = b->lpk[q] + (size_t)t * V;
                double z = 0;
                for (int v = 0; v < V; v++) z += exp(row[v] = 2.0f * mope_rng_normal(&r));
                for (int v = 0; v < V; v++) row[v] -= (float)log(z);
            }
            *s[j] = (mope_rebel_sample){.tokens = b->tok[q], .prompt_len = P, .n_resp = L,
                                        .expert_probs = b->pk[q], .expert_logp = b->lpk[q],
                                        .logp_rollout = -1.0 * L + mope_rng_uniform(&r),
                                        .reward = mope_rng_uniform(&r), .truncated = q == 1,
                                        /* a prior on some samples only, as a preference might name none */
                                        .prior = q % 3 == 2 ? NULL : b->prior};
        }
    }
    b->prior[0] = 0.5f;
    b->prior[1] = 0.0f;
    b->prior[2] = 0.5f;
}

static double loss_of(mope_pcm *p, const batch *b, const mope_rebel_opts *o) {
    mope_error err = {0};
    mope_rebel_stats st;
    assert_int_equal(mope_rebel_eval(p, b->pairs, NP, o, &st, &err), 0);
    return st.loss;
}

/* Gradient of the full step loss (REBEL + KL + length penalty, two
 * micro-batches) against central differences on a sample of every tensor.
 * The loss is computed by an f32 forward, so the difference quotient
 * carries rounding noise ~1e-7 |L| / h; with h = 1e-3 and |L| ~ 1 that is
 * ~1e-4 absolute.  Pass: |g - fd| <= 0.02 |fd| + 3e-4 (+ 2% of the
 * tensor's largest fd), with a directional check per tensor, far below
 * the O(1) error of a wrong sign, scale or position. */
static void finite_differences(mope_mix_rule rule) {
    mope_error err = {0};
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = V;
    c.n_embd = 16;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_head_kv = 1;
    c.n_ff = 24;
    c.n_ctx = 16;
    const char *ids[K] = {"a", "b", "c"};
    mope_pcm *p = mope_pcm_new(&c, K, ids, rule, 1, 21, &err);
    assert_non_null(p);
    mope_rng r;
    mope_rng_seed(&r, 77);
    float *head = mope_pcm_head_params(p);
    for (int i = 0; i < K * c.n_embd + K; i++) head[i] = mope_rng_normal(&r);
    /* a livelier trunk than the 0.02 init, so its gradients are not tiny */
    float *P = mope_train_model_params(mope_pcm_trunk(p));
    for (int i = 0; i < mope_train_model_n_tensors(mope_pcm_trunk(p)); i++) {
        const mope_train_tensor *t = mope_train_model_tensor(mope_pcm_trunk(p), i);
        if (t->n_dims == 2)
            for (size_t j = 0; j < t->n; j++) P[t->offset + j] *= 10.0f;
    }
    static batch b;
    make_batch(&b, 5);
    mope_rebel_opts o;
    mope_rebel_opts_init(&o);
    o.eta = 0.7;
    o.kl_coef = 0.3;
    o.prior_coef = 0.2;
    o.length_penalty = 0.25;
    o.micro_batch = 2;

    mope_pcm_zero_grad(p);
    mope_rebel_stats st;
    assert_int_equal(mope_rebel_accumulate(p, b.pairs, NP, &o, &st, &err), 0);
    assert_true(st.loss > 0.01);
    assert_true(st.prior_kl > 0.01);
    assert_true(fabs(st.loss - (st.rebel_loss + o.kl_coef * st.kl + o.prior_coef * st.prior_kl)) < 1e-12);
    assert_true(fabs(st.loss - loss_of(p, &b, &o)) < 1e-9);
    size_t nt = mope_train_model_n_params(mope_pcm_trunk(p)), nh = (size_t)K * c.n_embd + K;
    float *G = malloc(sizeof(float) * (nt + nh));
    memcpy(G, mope_train_model_grads(mope_pcm_trunk(p)), sizeof(float) * nt);
    memcpy(G + nt, mope_pcm_head_grads(p), sizeof(float) * nh);

    const float h = 1e-3f;
    double worst = 0;
    int checked = 0;
    int nten = mope_train_model_n_tensors(mope_pcm_trunk(p));
    for (int ti = 0; ti <= nten; ti++) {
        float *base;
        const float *g;
        size_t n;
        const char *name;
        if (ti < nten) {
            const mope_train_tensor *t = mope_train_model_tensor(mope_pcm_trunk(p), ti);
            base = P + t->offset;
            g = G + t->offset;
            n = t->n;
            name = t->name;
        } else {
            base = head;
            g = G + nt;
            n = nh;
            name = "mope.pcm.head";
        }
        /* token_embd: only the used rows matter; sample them */
        int samples = 12;
        double fd[12], an[12], maxfd = 0;
        for (int s = 0; s < samples; s++) {
            size_t j = ti < nten && strcmp(name, "token_embd.weight") == 0
                           ? (size_t)b.tok[s % (2 * NP)][0] * c.n_embd + mope_rng_below(&r, (uint32_t)c.n_embd)
                           : mope_rng_below(&r, (uint32_t)n);
            float keep = base[j];
            base[j] = keep + h;
            double lp = loss_of(p, &b, &o);
            base[j] = keep - h;
            double lm = loss_of(p, &b, &o);
            base[j] = keep;
            fd[s] = (lp - lm) / (2.0 * h);
            an[s] = g[j];
            maxfd = fmax(maxfd, fabs(fd[s]));
        }
        for (int s = 0; s < samples; s++) {
            double tol = 0.02 * fabs(fd[s]) + 3e-4 + 0.02 * maxfd;
            double ratio = fabs(an[s] - fd[s]) / tol;
            if (ratio > worst) worst = ratio;
            if (ratio > 1) printf("%s: analytic %.6g, fd %.6g\n", name, an[s], fd[s]);
            assert_true(ratio <= 1);
            checked++;
        }
    }
    printf("checked %d gradient elements; worst error / tolerance %.3f\n", checked, worst);

    /* the step moves the loss down */
    o.adamw.lr = 1e-3f;
    o.adamw.min_lr = 1e-3f;
    double before = loss_of(p, &b, &o);
    for (int i = 0; i < 5; i++) assert_int_equal(mope_rebel_step(p, b.pairs, NP, &o, &st, &err), 0);
    assert_int_equal(st.step, 5);
    assert_true(loss_of(p, &b, &o) < before);

    /* bad input is rejected with a message, nothing crashes */
    mope_rebel_pair bad = b.pairs[0];
    bad.y.n_resp = 0;
    assert_int_equal(mope_rebel_eval(p, &bad, 1, &o, &st, &err), MOPE_EINVAL);
    bad = b.pairs[0];
    bad.y.prompt_len = 20;
    assert_int_equal(mope_rebel_eval(p, &bad, 1, &o, &st, &err), MOPE_ERANGE);
    mope_rebel_opts o2 = o;
    o2.eta = 0;
    assert_int_equal(mope_rebel_eval(p, b.pairs, 1, &o2, &st, &err), MOPE_EINVAL);
    o2 = o;
    o2.prior_coef = -1;
    assert_int_equal(mope_rebel_eval(p, b.pairs, 1, &o2, &st, &err), MOPE_EINVAL);
    const float bad_prior[K] = {0.5f, 0.6f, 0.0f}; /* sums to 1.1 */
    bad = b.pairs[0];
    bad.y.prior = bad_prior;
    assert_int_equal(mope_rebel_eval(p, &bad, 1, &o, &st, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "prior"));
    free(G);

    if (rule == MOPE_MIX_GEOMETRIC) {
        /* the normaliser needs the recorded distributions */
        bad = b.pairs[0];
        bad.y2.expert_logp = NULL;
        assert_int_equal(mope_rebel_eval(p, &bad, 1, &o, &st, &err), MOPE_EINVAL);
        assert_non_null(strstr(err.msg, "distributions"));
        b.lpk[0][3] = NAN;
        assert_int_equal(mope_rebel_eval(p, b.pairs, NP, &o, &st, &err), MOPE_ERANGE);
    }
    mope_pcm_free(p);
}

static void test_finite_differences(void **state) {
    (void)state;
    finite_differences(MOPE_MIX_LINEAR);
}

static void test_finite_differences_geometric(void **state) {
    (void)state;
    finite_differences(MOPE_MIX_GEOMETRIC);
}

/* The geometric rule's sequence log-probability against a direct
 * computation in double: softmax of the weighted expert log-probabilities,
 * its gradient wrt the weight logits by central differences, the mixer's
 * own gradient (mope_mix_grad_z, written separately in src/mix), and the
 * one-hot case, which must be the expert itself. */
static double geo_direct(const double *z, const float *lpk, int32_t y, int Kx, int Vx) {
    double w[8], m = -INFINITY, s = 0, zs = 0;
    for (int k = 0; k < Kx; k++) m = fmax(m, z[k]);
    for (int k = 0; k < Kx; k++) zs += exp(z[k] - m);
    for (int k = 0; k < Kx; k++) w[k] = exp(z[k] - m) / zs;
    double sc[64], mx = -INFINITY;
    for (int v = 0; v < Vx; v++) {
        sc[v] = 0;
        for (int k = 0; k < Kx; k++) sc[v] += w[k] * lpk[k * Vx + v];
        mx = fmax(mx, sc[v]);
    }
    for (int v = 0; v < Vx; v++) s += exp(sc[v] - mx);
    return sc[y] - mx - log(s);
}

static void test_geometric_seq_logp(void **state) {
    (void)state;
    enum { KG = 3, VG = 50, L = 4 };
    mope_error err = {0};
    mope_rng r;
    mope_rng_seed(&r, 9);
    static float lpk[L * KG * VG], logits[L][KG][VG];
    float w[L * KG], dz[L * KG];
    double z[L][KG];
    int32_t y[L];
    for (int t = 0; t < L; t++) {
        for (int k = 0; k < KG; k++) {
            double s = 0;
            for (int v = 0; v < VG; v++) s += exp(logits[t][k][v] = 3.0f * mope_rng_normal(&r));
            for (int v = 0; v < VG; v++) lpk[(t * KG + k) * VG + v] = logits[t][k][v] - (float)log(s);
            z[t][k] = mope_rng_normal(&r);
        }
        double m = fmax(fmax(z[t][0], z[t][1]), z[t][2]), zs = 0;
        for (int k = 0; k < KG; k++) zs += exp(z[t][k] - m);
        for (int k = 0; k < KG; k++) w[t * KG + k] = (float)(exp(z[t][k] - m) / zs);
        y[t] = (int32_t)mope_rng_below(&r, VG);
    }
    double lp;
    assert_int_equal(mope_rebel_seq_logp_geo(w, lpk, y, L, KG, VG, &lp, dz, &err), 0);
    double want = 0;
    for (int t = 0; t < L; t++) want += geo_direct(z[t], lpk + t * KG * VG, y[t], KG, VG);
    assert_true(fabs(lp - want) < 1e-5);
    for (int t = 0; t < L; t++) {
        mope_dist d[KG] = {{0}};
        float gz[KG];
        double lpm;
        for (int k = 0; k < KG; k++) assert_int_equal(mope_dist_set_full(&d[k], logits[t][k], VG, &err), 0);
        assert_int_equal(mope_mix_grad_z(d, KG, y[t], w + t * KG, MOPE_MIX_GEOMETRIC, gz, &lpm, &err), 0);
        for (int k = 0; k < KG; k++) {
            double zp[KG], zm[KG];
            memcpy(zp, z[t], sizeof zp);
            memcpy(zm, z[t], sizeof zm);
            zp[k] += 1e-5;
            zm[k] -= 1e-5;
            double fd = (geo_direct(zp, lpk + t * KG * VG, y[t], KG, VG) -
                         geo_direct(zm, lpk + t * KG * VG, y[t], KG, VG)) / 2e-5;
            assert_true(fabs(dz[t * KG + k] - fd) < 1e-4);
            assert_true(fabs(dz[t * KG + k] - gz[k]) < 1e-5);
        }
        for (int k = 0; k < KG; k++) mope_dist_free(&d[k]);
    }
    /* one-hot weights: exactly expert 1's log-probabilities, no gradient */
    for (int t = 0; t < L; t++)
        for (int k = 0; k < KG; k++) w[t * KG + k] = k == 1;
    assert_int_equal(mope_rebel_seq_logp_geo(w, lpk, y, L, KG, VG, &lp, dz, &err), 0);
    want = 0;
    for (int t = 0; t < L; t++) want += lpk[(t * KG + 1) * VG + y[t]];
    assert_true(fabs(lp - want) < 1e-5);
    for (int i = 0; i < L * KG; i++) assert_true(fabs(dz[i]) < 1e-6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_case),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_finite_differences_geometric),
        cmocka_unit_test(test_geometric_seq_logp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
