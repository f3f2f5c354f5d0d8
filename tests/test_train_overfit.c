/* Training behaviour: AdamW against hand-computed values, the learning-rate
 * schedule at hand-picked steps, clipping, gradient accumulation, a tiny
 * model memorising a tiny dataset, and bit-identical reruns. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mope/train.h"
#include "train/train_internal.h" /* gemm_pool */

/* Two AdamW updates of three parameters, lr 0.1, betas (0.9, 0.99),
 * eps 1e-8, weight decay 0.5 (shrink factor 1 - 0.1 * 0.5 = 0.95).
 * Update 1 (t = 1): bias-corrected m/sqrt(v) = g/|g|, so
 *   p = 0.95 p - 0.1 g / (|g| + 1e-8):  1 -> 0.85000001, -2 -> -1.80000000 (5e-9 off), 0.5 -> 0.475 (g = 0).
 * Update 2 (t = 2), g = (0.3, 0.2, -0.4):
 *   m = 0.9 m1 + 0.1 g = (0.039, 0.002, -0.04);  v = 0.99 v1 + 0.01 g^2 = (9.99e-4, 7.96e-4, 1.6e-3)
 *   mhat = m / 0.19, vhat = v / 0.0199
 *   p0 = 0.95 * 0.85000001 - 0.1 * (0.039/0.19) / sqrt(9.99e-4/0.0199) = 0.71588750
 *   p1 = 0.95 * -1.8 - 0.1 * (0.002/0.19) / sqrt(7.96e-4/0.0199)      = -1.71526316
 *   p2 = 0.95 * 0.475 + 0.1 * (0.04/0.19) / sqrt(1.6e-3/0.0199)       = 0.52549598
 * Without decay the shrink is skipped. */
static void test_adamw_hand(void **state) {
    (void)state;
    mope_adamw_config c;
    mope_adamw_config_init(&c);
    c.lr = 0.1f;
    c.beta1 = 0.9f;
    c.beta2 = 0.99f;
    c.eps = 1e-8f;
    c.weight_decay = 0.5f;
    float p[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0}, v[3] = {0};
    const float g1[3] = {0.1f, -0.2f, 0.0f}, g2[3] = {0.3f, 0.2f, -0.4f};
    mope_train_adamw_update(p, g1, m, v, 3, c.lr, &c, true, 1);
    assert_float_equal(p[0], 0.85000001, 1e-7);
    assert_float_equal(p[1], -1.8, 1e-7);
    assert_float_equal(p[2], 0.475, 1e-7);
    assert_float_equal(m[1], -0.02, 1e-8);
    assert_float_equal(v[1], 4e-4, 1e-9);
    mope_train_adamw_update(p, g2, m, v, 3, c.lr, &c, true, 2);
    assert_float_equal(p[0], 0.71588750, 2e-7);
    assert_float_equal(p[1], -1.71526316, 2e-7);
    assert_float_equal(p[2], 0.52549598, 2e-7);

    /* no decay: update 1 is -lr sign(g) exactly (up to eps) */
    float q[3] = {1.0f, -2.0f, 0.5f}, mq[3] = {0}, vq[3] = {0};
    mope_train_adamw_update(q, g1, mq, vq, 3, c.lr, &c, false, 1);
    assert_float_equal(q[0], 0.9, 1e-7);
    assert_float_equal(q[1], -1.9, 1e-7);
    assert_float_equal(q[2], 0.5, 0);
}

/* The update over many elements (the vector loop and its scalar tail)
 * equals the formula of mope/train.h evaluated here element by element in
 * plain C, bit for bit, over several steps with and without decay. */
static void test_adamw_many(void **state) {
    (void)state;
    enum { N = 1003 };
    mope_adamw_config c;
    mope_adamw_config_init(&c);
    c.lr = 3e-3f;
    c.weight_decay = 0.1f;
    static float p[N], m[N], v[N], g[N], rp[N], rm[N], rv[N];
    mope_rng rng;
    mope_rng_seed(&rng, 11);
    for (int i = 0; i < N; i++) rp[i] = p[i] = mope_rng_normal(&rng);
    for (int t = 1; t <= 4; t++) {
        bool decay = t % 2;
        for (int i = 0; i < N; i++) g[i] = mope_rng_normal(&rng) * (i % 7 ? 1e-2f : 1e-6f);
        mope_train_adamw_update(p, g, m, v, N, c.lr, &c, decay, t);
        float bc1 = (float)(1.0 - pow(c.beta1, t)), bc2 = (float)(1.0 - pow(c.beta2, t));
        for (int i = 0; i < N; i++) {
            if (decay) rp[i] *= 1.0f - c.lr * c.weight_decay;
            rm[i] = c.beta1 * rm[i] + (1.0f - c.beta1) * g[i];
            rv[i] = c.beta2 * rv[i] + (1.0f - c.beta2) * g[i] * g[i];
            rp[i] -= c.lr * (rm[i] / bc1) / (sqrtf(rv[i] / bc2) + c.eps);
        }
        assert_memory_equal(m, rm, sizeof m);
        assert_memory_equal(v, rv, sizeof v);
        assert_memory_equal(p, rp, sizeof p);
    }
}

/* lr 1e-3 -> min 1e-4, warmup 10, cosine until 110. */
static void test_schedule(void **state) {
    (void)state;
    mope_adamw_config c;
    mope_adamw_config_init(&c);
    c.lr = 1e-3f;
    c.min_lr = 1e-4f;
    c.warmup_steps = 10;
    c.total_steps = 110;
    assert_float_equal(mope_train_lr_at(&c, 0), 1e-4, 1e-10);  /* 1/10 of the peak */
    assert_float_equal(mope_train_lr_at(&c, 4), 5e-4, 1e-10);  /* 5/10 */
    assert_float_equal(mope_train_lr_at(&c, 9), 1e-3, 1e-10);  /* warmup done */
    assert_float_equal(mope_train_lr_at(&c, 10), 1e-3, 1e-10); /* cos(0) */
    /* p = 1/4: 1e-4 + 9e-4 (1 + cos(pi/4)) / 2 = 1e-4 + 9e-4 * 0.8535534 */
    assert_float_equal(mope_train_lr_at(&c, 35), 8.6819805e-4, 1e-10);
    assert_float_equal(mope_train_lr_at(&c, 60), 5.5e-4, 1e-10); /* p = 1/2: midpoint */
    /* p = 3/4: 1e-4 + 9e-4 * 0.1464466 */
    assert_float_equal(mope_train_lr_at(&c, 85), 2.3180195e-4, 1e-10);
    assert_float_equal(mope_train_lr_at(&c, 110), 1e-4, 1e-10);
    assert_float_equal(mope_train_lr_at(&c, 5000), 1e-4, 1e-10);
    c.warmup_steps = 0;
    c.total_steps = 0; /* constant */
    assert_float_equal(mope_train_lr_at(&c, 0), 1e-3, 0);
    assert_float_equal(mope_train_lr_at(&c, 12345), 1e-3, 0);
}

static mope_train_config tiny(void) {
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 16;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 64;
    c.n_ctx = 16;
    return c;
}

enum { NS = 4, T = 12 };

/* Four fixed random sequences with distinct first tokens (so even position
 * 0 determines its sequence); targets are the next tokens, the last
 * position ignored. */
static void dataset(int32_t *tok, int32_t *tgt) {
    mope_rng r;
    mope_rng_seed(&r, 99);
    for (int s = 0; s < NS; s++)
        for (int t = 0; t < T; t++) tok[s * T + t] = t == 0 ? 2 + 3 * s : (int32_t)mope_rng_below(&r, 16);
    for (int n = 0; n < NS * T; n++) tgt[n] = n % T == T - 1 ? -1 : tok[n + 1];
}

static mope_trainer *make_trainer(int n_threads, float lr, int64_t total) {
    mope_error err = {0};
    mope_train_config c = tiny();
    mope_train_model *m = mope_train_model_new(&c, n_threads, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, 7);
    mope_adamw_config a;
    mope_adamw_config_init(&a);
    a.lr = lr;
    a.min_lr = lr / 10;
    a.warmup_steps = 10;
    a.total_steps = total;
    a.weight_decay = 0.01f;
    mope_trainer *tr = mope_train_trainer_new(m, &a, 1, &err);
    assert_non_null(tr);
    return tr;
}

static void test_overfit(void **state) {
    (void)state;
    int32_t tok[NS * T], tgt[NS * T];
    dataset(tok, tgt);
    mope_trainer *tr = make_trainer(1, 1e-2f, 300);
    mope_train_batch b = {tok, tgt, NULL, NS, T};
    mope_error err = {0};
    mope_train_stats st = {0};
    float first = 0;
    int steps = 0;
    for (; steps < 300; steps++) {
        assert_int_equal(mope_train_step(tr, &b, 1, &st, &err), 0);
        if (steps == 0) first = st.loss;
        if (st.loss < 0.01f) break;
    }
    print_message("loss %.4f -> %.4f after %d steps\n", (double)first, (double)st.loss, steps + 1);
    assert_true(first > 2.0f); /* ~ln 16 = 2.77 at init */
    assert_true(st.loss < 0.01f);
    assert_int_equal(mope_train_trainer_step_count(tr), steps + 1);
    mope_train_trainer_free(tr);
}

/* Two runs from the same seed with 2 threads give bit-identical losses and
 * parameters. */
static void test_determinism(void **state) {
    (void)state;
    int32_t tok[NS * T], tgt[NS * T];
    dataset(tok, tgt);
    mope_train_batch b = {tok, tgt, NULL, NS, T};
    float loss[2][15];
    mope_trainer *tr[2];
    mope_error err = {0};
    for (int r = 0; r < 2; r++) {
        tr[r] = make_trainer(2, 1e-2f, 100);
        mope_train_stats st;
        for (int s = 0; s < 15; s++) {
            assert_int_equal(mope_train_step(tr[r], &b, 1, &st, &err), 0);
            loss[r][s] = st.loss;
        }
    }
    assert_memory_equal(loss[0], loss[1], sizeof loss[0]);
    mope_train_model *m0 = mope_train_trainer_model(tr[0]), *m1 = mope_train_trainer_model(tr[1]);
    assert_memory_equal(mope_train_model_params(m0), mope_train_model_params(m1),
                        mope_train_model_n_params(m0) * sizeof(float));
    assert_true(loss[0][14] < loss[0][0]);
    mope_train_trainer_free(tr[0]);
    mope_train_trainer_free(tr[1]);
}

/* mope's own kernels (attention, norms, embedding, loss, clipping, AdamW)
 * split work so that the thread count never changes a bit: with the
 * sgemms unsplit (their blocks' shapes can change OpenBLAS's kernel path),
 * 1 and 3 pool threads train identically. */
static void test_thread_count_invariance(void **state) {
    (void)state;
    int32_t tok[NS * T], tgt[NS * T];
    dataset(tok, tgt);
    mope_train_batch b = {tok, tgt, NULL, NS, T};
    mope_trainer *tr[2] = {make_trainer(1, 1e-2f, 100), make_trainer(3, 1e-2f, 100)};
    float loss[2][5];
    mope_error err = {0};
    for (int r = 0; r < 2; r++) {
        mope_train_trainer_model(tr[r])->gemm_pool = NULL;
        mope_train_stats st;
        for (int s = 0; s < 5; s++) {
            assert_int_equal(mope_train_step(tr[r], &b, 1, &st, &err), 0);
            loss[r][s] = st.loss;
        }
    }
    assert_memory_equal(loss[0], loss[1], sizeof loss[0]);
    mope_train_model *m0 = mope_train_trainer_model(tr[0]), *m1 = mope_train_trainer_model(tr[1]);
    assert_memory_equal(mope_train_model_params(m0), mope_train_model_params(m1),
                        mope_train_model_n_params(m0) * sizeof(float));
    mope_train_trainer_free(tr[0]);
    mope_train_trainer_free(tr[1]);
}

/* Two micro-batches of 2 sequences (scale 1/2 each) give the same update as
 * one batch of 4: with unit weights and equal token counts the mean of the
 * two means is the overall mean. */
static void test_accumulation(void **state) {
    (void)state;
    int32_t tok[NS * T], tgt[NS * T];
    dataset(tok, tgt);
    mope_trainer *one = make_trainer(1, 1e-2f, 100), *two = make_trainer(1, 1e-2f, 100);
    mope_train_batch whole = {tok, tgt, NULL, NS, T};
    mope_train_batch halves[2] = {{tok, tgt, NULL, 2, T}, {tok + 2 * T, tgt + 2 * T, NULL, 2, T}};
    mope_error err = {0};
    mope_train_stats s1, s2;
    /* compare the accumulated gradients before the update */
    mope_train_model *m1 = mope_train_trainer_model(one), *m2 = mope_train_trainer_model(two);
    float l1, la, lb;
    assert_int_equal(mope_train_model_forward(m1, tok, tgt, NULL, NS, T, &l1, &err), 0);
    assert_int_equal(mope_train_model_backward(m1, 1.0f, &err), 0);
    assert_int_equal(mope_train_model_forward(m2, tok, tgt, NULL, 2, T, &la, &err), 0);
    assert_int_equal(mope_train_model_backward(m2, 0.5f, &err), 0);
    assert_int_equal(mope_train_model_forward(m2, tok + 2 * T, tgt + 2 * T, NULL, 2, T, &lb, &err), 0);
    assert_int_equal(mope_train_model_backward(m2, 0.5f, &err), 0);
    assert_float_equal(l1, (la + lb) / 2, 1e-5);
    const float *g1 = mope_train_model_grads(m1), *g2 = mope_train_model_grads(m2);
    double gmax = 0, dmax = 0;
    for (size_t i = 0; i < mope_train_model_n_params(m1); i++) {
        gmax = fmax(gmax, fabs(g1[i]));
        dmax = fmax(dmax, fabs(g1[i] - g2[i]));
    }
    assert_true(gmax > 1e-3);
    assert_true(dmax <= 1e-5 * gmax);
    /* and through the trainer */
    assert_int_equal(mope_train_step(one, &whole, 1, &s1, &err), 0);
    assert_int_equal(mope_train_step(two, halves, 2, &s2, &err), 0);
    assert_float_equal(s1.loss, s2.loss, 1e-5);
    assert_float_equal(s1.grad_norm, s2.grad_norm, 1e-5 * s1.grad_norm);
    const float *p1 = mope_train_model_params(m1), *p2 = mope_train_model_params(m2);
    for (size_t i = 0; i < mope_train_model_n_params(m1); i++) assert_float_equal(p1[i], p2[i], 1e-5);
    mope_train_trainer_free(one);
    mope_train_trainer_free(two);
}

/* Global-norm clipping: grads (3, 4) have norm 5; clipped to 1 they become
 * (0.6, 0.8); a non-finite gradient makes apply fail without an update. */
static void test_clip(void **state) {
    (void)state;
    mope_trainer *tr = make_trainer(1, 1e-2f, 100);
    mope_train_model *m = mope_train_trainer_model(tr);
    size_t n = mope_train_model_n_params(m);
    float *g = mope_train_model_grads(m);
    mope_train_model_zero_grad(m);
    g[0] = 3.0f;
    g[n - 1] = 4.0f;
    assert_float_equal(mope_train_clip_grads(m, 1.0), 5.0, 1e-12);
    assert_float_equal(g[0], 0.6, 1e-7);
    assert_float_equal(g[n - 1], 0.8, 1e-7);
    assert_float_equal(mope_train_grad_norm(m), 1.0, 1e-6);
    assert_float_equal(mope_train_clip_grads(m, 2.0), 1.0, 1e-6); /* below the limit: unchanged */
    assert_float_equal(g[0], 0.6, 1e-7);

    float *p = mope_train_model_params(m);
    float before = p[1];
    g[1] = NAN;
    mope_error err = {0};
    assert_int_equal(mope_train_apply(tr, NULL, &err), MOPE_ESTATE);
    assert_non_null(strstr(err.msg, "not finite"));
    assert_true(p[1] == before);
    assert_int_equal(mope_train_trainer_step_count(tr), 0);
    mope_train_trainer_free(tr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_hand),   cmocka_unit_test(test_adamw_many), cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_accumulation), cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_thread_count_invariance), cmocka_unit_test(test_overfit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
