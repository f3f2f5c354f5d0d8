/* Gradient checks of the trainable model.
 *
 * The reference is an independent, naive double-precision forward written
 * here from the formulas (GGUF_FACTS.md §1, §3): RMSNorm, Q/K/V/O, RoPE
 * NORMAL with angles computed in double, causal softmax attention with
 * query head h reading KV head h / (H / KH), SwiGLU, output head (tied or
 * untied), masked weighted cross-entropy, value head.  It reads the
 * parameters by their GGUF names, so it also checks the layout.
 *
 * 1. The f32 forward loss must equal the double reference loss.
 * 2. Every analytic gradient element (every parameter of every tensor) must
 *    equal the central difference (L(p + h) - L(p - h)) / 2h of the double
 *    reference, h = 1e-3.
 *
 * Tolerance: the finite difference in double has truncation error
 * h^2 |L'''| / 6 ~ 1e-7 and rounding error 1e-16 / h ~ 1e-13, so it is exact
 * for our purpose; the analytic gradient runs in f32, whose relative
 * rounding (6e-8 per op) grows over the ~10^2-term sums of this tiny model
 * to about 1e-5 of the largest terms involved.  An element passes when
 *   |analytic - fd| <= 1e-3 |fd| + 1e-4 * max|fd over its tensor| + 1e-6,
 * which leaves a margin of about 10x over the worst error observed (the
 * test prints the worst ratio; ~0.11) yet stays far below the O(1)
 * relative error of any wrong formula: a flipped RoPE sign in the backward,
 * for instance, fails on the first embedding row (0.15 vs 1.13). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mope/train.h"
#include "train/train_internal.h" /* to run both attention kernel sets */

/* ---- the naive reference ---- */

typedef struct {
    const mope_train_model *m;
    const mope_train_config *c;
    const double *P; /* all parameters, same layout as the model's flat buffer */
} ref;

static const double *tens(const ref *r, const char *name) {
    const mope_train_tensor *t = mope_train_model_find(r->m, name);
    assert_non_null(t);
    return r->P + t->offset;
}

static const double *ltens(const ref *r, int l, const char *what) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", l, what);
    return tens(r, name);
}

/* y[o] = sum_i W[o, i] x[i] */
static void matvec(double *y, const double *W, const double *x, int n_out, int n_in) {
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
}

static void rmsnorm(double *y, const double *x, const double *w, int C, double eps) {
    double ss = 0;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / C + eps);
    for (int i = 0; i < C; i++) y[i] = x[i] * r * w[i];
}

static void rope(double *x, int n_heads, int hd, int pos, double base) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double th = pos * pow(base, -2.0 * i / hd);
            double *p = x + h * hd + 2 * i, x0 = p[0], x1 = p[1];
            p[0] = x0 * cos(th) - x1 * sin(th);
            p[1] = x0 * sin(th) + x1 * cos(th);
        }
}

/* Final hidden states (after output_norm) of one sequence: xf[T, C]. */
static void ref_hidden(const ref *r, const int32_t *tok, int T, double *xf) {
    const mope_train_config *c = r->c;
    int C = c->n_embd, H = c->n_head, KH = c->n_head_kv, hd = C / H, F = c->n_ff, G = H / KH;
    double *x = calloc((size_t)T * C, sizeof(double)), *xn = calloc((size_t)T * C, sizeof(double));
    double *q = calloc((size_t)T * H * hd, sizeof(double)), *k = calloc((size_t)T * KH * hd, sizeof(double));
    double *v = calloc((size_t)T * KH * hd, sizeof(double)), *y = calloc((size_t)H * hd, sizeof(double));
    double *o = calloc((size_t)C, sizeof(double)), *sc = calloc((size_t)T, sizeof(double));
    double *g = calloc((size_t)F, sizeof(double)), *u = calloc((size_t)F, sizeof(double));
    const double *E = tens(r, "token_embd.weight");
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) x[t * C + i] = E[(size_t)tok[t] * C + i];
    for (int l = 0; l < c->n_layer; l++) {
        for (int t = 0; t < T; t++) {
            rmsnorm(xn + t * C, x + t * C, ltens(r, l, "attn_norm.weight"), C, c->rms_eps);
            matvec(q + t * H * hd, ltens(r, l, "attn_q.weight"), xn + t * C, H * hd, C);
            matvec(k + t * KH * hd, ltens(r, l, "attn_k.weight"), xn + t * C, KH * hd, C);
            matvec(v + t * KH * hd, ltens(r, l, "attn_v.weight"), xn + t * C, KH * hd, C);
            rope(q + t * H * hd, H, hd, t, c->rope_freq_base);
            rope(k + t * KH * hd, KH, hd, t, c->rope_freq_base);
        }
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < H; h++) {
                int kh = h / G;
                double mx = -1e300, sum = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += q[(t * H + h) * hd + d] * k[(t2 * KH + kh) * hd + d];
                    sc[t2] = s / sqrt((double)hd);
                    if (sc[t2] > mx) mx = sc[t2];
                }
                for (int t2 = 0; t2 <= t; t2++) sum += exp(sc[t2] - mx);
                for (int d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int t2 = 0; t2 <= t; t2++) acc += exp(sc[t2] - mx) / sum * v[(t2 * KH + kh) * hd + d];
                    y[h * hd + d] = acc;
                }
            }
            matvec(o, ltens(r, l, "attn_output.weight"), y, C, H * hd);
            for (int i = 0; i < C; i++) x[t * C + i] += o[i];
        }
        for (int t = 0; t < T; t++) {
            rmsnorm(xn + t * C, x + t * C, ltens(r, l, "ffn_norm.weight"), C, c->rms_eps);
            matvec(g, ltens(r, l, "ffn_gate.weight"), xn + t * C, F, C);
            matvec(u, ltens(r, l, "ffn_up.weight"), xn + t * C, F, C);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            matvec(o, ltens(r, l, "ffn_down.weight"), g, C, F);
            for (int i = 0; i < C; i++) x[t * C + i] += o[i];
        }
    }
    for (int t = 0; t < T; t++) rmsnorm(xf + t * C, x + t * C, tens(r, "output_norm.weight"), C, c->rms_eps);
    free(x), free(xn), free(q), free(k), free(v), free(y), free(o), free(sc), free(g), free(u);
}

typedef struct {
    const int32_t *tok, *tgt, *len;
    const float *wgt, *cval; /* cval: value mode, loss = sum_b cval[b] score_b */
    const float *chid;       /* hidden mode: loss = sum_n,i chid[n, i] hidden[n, i] */
    int B, T;
    bool value, hidden;
} inputs;

static double ref_loss(const ref *r, const inputs *in) {
    const mope_train_config *c = r->c;
    int C = c->n_embd, V = c->n_vocab, T = in->T;
    double *xf = calloc((size_t)T * C, sizeof(double)), *lg = calloc((size_t)V, sizeof(double));
    const double *Wout = tens(r, c->tied_output ? "token_embd.weight" : "output.weight");
    double num = 0, den = 0;
    for (int b = 0; b < in->B; b++) {
        ref_hidden(r, in->tok + b * T, T, xf);
        if (in->hidden) {
            for (int i = 0; i < T * C; i++) num += in->chid[(size_t)b * T * C + i] * xf[i];
            continue;
        }
        if (in->value) {
            const double *w = tens(r, "mope.value_head.weight"), *h = xf + (in->len[b] - 1) * C;
            double s = tens(r, "mope.value_head.bias")[0];
            for (int i = 0; i < C; i++) s += w[i] * h[i];
            num += in->cval[b] * s;
            continue;
        }
        for (int t = 0; t < T; t++) {
            int n = b * T + t;
            if (in->tgt[n] < 0) continue;
            matvec(lg, Wout, xf + t * C, V, C);
            double mx = lg[0], s = 0;
            for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
            for (int i = 0; i < V; i++) s += exp(lg[i] - mx);
            double w = in->wgt ? in->wgt[n] : 1.0;
            num += w * (mx + log(s) - lg[in->tgt[n]]);
            den += w;
        }
    }
    free(xf), free(lg);
    return in->value || in->hidden ? num : num / den;
}

/* ---- the check ---- */

static void fill_params(mope_train_model *m, uint64_t seed) {
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    float *p = mope_train_model_params(m);
    for (int i = 0; i < mope_train_model_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_tensor(m, i);
        bool norm = strstr(t->name, "_norm.weight") != NULL;
        for (size_t k = 0; k < t->n; k++)
            p[t->offset + k] = norm ? 1.0f + 0.2f * mope_rng_normal(&rng) : 0.35f * mope_rng_normal(&rng);
    }
}

/* Analytic gradients of model m (params already set) into a fresh copy. */
static float *analytic(mope_train_model *m, const inputs *in, double lref) {
    mope_error err = {0};
    const mope_train_config *c = mope_train_model_config(m);
    mope_train_model_zero_grad(m);
    if (in->hidden) {
        const float *hid = mope_train_model_forward_hidden(m, in->tok, in->B, in->T, &err);
        assert_non_null(hid);
        double l = 0;
        for (int i = 0; i < in->B * in->T * c->n_embd; i++) l += (double)in->chid[i] * hid[i];
        assert_true(fabs(l - lref) <= 1e-5 * (1 + fabs(lref)));
        assert_int_equal(mope_train_model_backward_hidden(m, in->chid, &err), 0);
    } else if (in->value) {
        float *scores = malloc((size_t)in->B * sizeof(float));
        assert_int_equal(mope_train_model_forward_value(m, in->tok, in->len, in->B, in->T, scores, &err), 0);
        double l = 0;
        for (int b = 0; b < in->B; b++) l += in->cval[b] * scores[b];
        assert_true(fabs(l - lref) <= 1e-5 * (1 + fabs(lref)));
        assert_int_equal(mope_train_model_backward_value(m, in->cval, &err), 0);
        free(scores);
    } else {
        float loss;
        assert_int_equal(mope_train_model_forward(m, in->tok, in->tgt, in->wgt, in->B, in->T, &loss, &err), 0);
        print_message("loss f32 %.8f  reference %.8f (%s kernels)\n", (double)loss, lref, m->kern->name);
        assert_true(fabs(loss - lref) <= 1e-5 * fabs(lref));
        assert_int_equal(mope_train_model_backward(m, 1.0f, &err), 0);
    }
    size_t np = mope_train_model_n_params(m);
    float *g = malloc(np * sizeof(float));
    memcpy(g, mope_train_model_grads(m), np * sizeof(float));
    return g;
}

/* Checks the analytic gradients of the best attention kernels and, with
 * both_kernels, of the scalar ones too, against one set of finite
 * differences. */
static void check_grads(const mope_train_config *c, const inputs *in, int n_threads, bool both_kernels) {
    mope_error err = {0};
    mope_train_model *m = mope_train_model_new(c, n_threads, &err);
    assert_non_null(m);
    fill_params(m, 1234);
    size_t np = mope_train_model_n_params(m);
    const float *pf = mope_train_model_params(m);
    double *P = malloc(np * sizeof(double));
    for (size_t i = 0; i < np; i++) P[i] = pf[i];
    ref r = {m, mope_train_model_config(m), P};
    double lref = ref_loss(&r, in);
    int ng = both_kernels ? 2 : 1;
    float *g[2] = {analytic(m, in, lref), NULL};
    const char *kname[2] = {m->kern->name, "scalar"};
    if (both_kernels) {
        m->kern = &tl_kernels_scalar;
        g[1] = analytic(m, in, lref);
    }

    /* numeric, every element */
    const double h = 1e-3;
    double worst[2] = {0, 0};
    for (int ti = 0; ti < mope_train_model_n_tensors(m); ti++) {
        const mope_train_tensor *t = mope_train_model_tensor(m, ti);
        double *fd = malloc(t->n * sizeof(double)), fmax = 0;
        for (size_t k = 0; k < t->n; k++) {
            size_t i = t->offset + k;
            double p0 = P[i];
            P[i] = p0 + h;
            double lp = ref_loss(&r, in);
            P[i] = p0 - h;
            double lm = ref_loss(&r, in);
            P[i] = p0;
            fd[k] = (lp - lm) / (2 * h);
            if (fabs(fd[k]) > fmax) fmax = fabs(fd[k]);
        }
        /* a tensor whose true gradient is all zero would test nothing */
        assert_true(fmax > 1e-4);
        for (int gi = 0; gi < ng; gi++)
            for (size_t k = 0; k < t->n; k++) {
                double a = g[gi][t->offset + k], tol = 1e-3 * fabs(fd[k]) + 1e-4 * fmax + 1e-6;
                double ratio = fabs(a - fd[k]) / tol;
                if (ratio > worst[gi]) worst[gi] = ratio;
                if (ratio > 1)
                    fail_msg("%s[%zu] (%s kernels): analytic %.9g vs finite difference %.9g", t->name, k, kname[gi],
                             a, fd[k]);
            }
        free(fd);
    }
    for (int gi = 0; gi < ng; gi++)
        print_message("%d tensors, %zu parameters, %s kernels: worst |error| / tolerance = %.4f\n",
                      mope_train_model_n_tensors(m), np, kname[gi], worst[gi]);
    free(g[0]);
    free(g[1]);
    free(P);
    mope_train_model_free(m);
}

static mope_train_config tiny(void) {
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 11;
    c.n_embd = 16;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2; /* two query heads per KV head */
    c.n_ff = 12;
    c.n_ctx = 8;
    c.rope_freq_base = 30.0f; /* large angles even at these short positions */
    c.rms_eps = 1e-5f;
    return c;
}

enum { B = 2, T = 6 };
static const int32_t TOK[B * T] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};

/* Next-token targets with ignored positions and unequal weights. */
static void lm_inputs(inputs *in, int32_t *tgt, float *wgt) {
    for (int n = 0; n < B * T; n++) {
        tgt[n] = (n % T == T - 1) ? 7 : TOK[n + 1];
        wgt[n] = 0.5f + 0.125f * (float)(n % 5);
    }
    tgt[0] = -1; /* a prompt position */
    tgt[T + 1] = -1;
    wgt[4] = 0.0f;
    *in = (inputs){.tok = TOK, .tgt = tgt, .wgt = wgt, .B = B, .T = T};
}

static void test_grad_tied_gqa(void **state) {
    (void)state;
    mope_train_config c = tiny();
    int32_t tgt[B * T];
    float wgt[B * T];
    inputs in;
    lm_inputs(&in, tgt, wgt);
    check_grads(&c, &in, 2, true);
}

static void test_grad_untied_mha(void **state) {
    (void)state;
    mope_train_config c = tiny();
    c.tied_output = false;
    c.n_head_kv = 4;
    c.n_layer = 1;
    int32_t tgt[B * T];
    float wgt[B * T];
    inputs in;
    lm_inputs(&in, tgt, wgt);
    in.wgt = NULL; /* plain mean */
    check_grads(&c, &in, 1, false);
}

static void test_grad_value_head(void **state) {
    (void)state;
    mope_train_config c = tiny();
    c.value_head = true;
    c.n_head = 2; /* head_dim 8 and 10 positions: the SIMD kernels' vector paths */
    c.n_head_kv = 1;
    c.n_ctx = 10;
    static const int32_t tok[2 * 10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4};
    static const int32_t len[B] = {7, 10};
    static const float cval[B] = {0.7f, -1.3f};
    inputs in = {.tok = tok, .len = len, .cval = cval, .B = B, .T = 10, .value = true};
    check_grads(&c, &in, 3, true);
}

/* Hidden states with an arbitrary linear loss on them (the hook for heads
 * built elsewhere); output_norm and every trunk tensor get gradients. */
static void test_grad_hidden(void **state) {
    (void)state;
    mope_train_config c = tiny();
    c.n_layer = 1;
    float *chid = malloc(sizeof(float) * B * T * 16);
    mope_rng r;
    mope_rng_seed(&r, 4);
    for (int i = 0; i < B * T * 16; i++) chid[i] = mope_rng_normal(&r);
    inputs in = {.tok = TOK, .chid = chid, .B = B, .T = T, .hidden = true};
    check_grads(&c, &in, 2, false);
    free(chid);
}

/* The attention row kernels (scalar and, when the CPU has it, AVX2) against
 * double sums, over sizes that hit every vector width and tail. */
static void test_kernels(void **state) {
    (void)state;
    const tl_kernels *sets[2] = {&tl_kernels_scalar, tl_kernels_best()};
    static const int ns[] = {1, 7, 8, 9, 31, 32, 33, 70}, hds[] = {2, 4, 8, 12, 32, 40, 64};
    enum { MAXN = 70, MAXD = 64, LD = 80 };
    float *q = malloc(MAXD * sizeof(float)), *p = malloc(MAXN * sizeof(float));
    float *kt = malloc((size_t)MAXD * LD * sizeof(float)), *x = malloc((size_t)MAXN * LD * sizeof(float));
    float *out = malloc(LD * sizeof(float)), *acc = malloc((size_t)MAXN * LD * sizeof(float));
    mope_rng r;
    mope_rng_seed(&r, 8);
    for (int i = 0; i < MAXD; i++) q[i] = mope_rng_normal(&r);
    for (int i = 0; i < MAXN; i++) p[i] = mope_rng_normal(&r);
    for (int i = 0; i < MAXD * LD; i++) kt[i] = mope_rng_normal(&r);
    for (int i = 0; i < MAXN * LD; i++) x[i] = mope_rng_normal(&r);
    for (int si = 0; si < 2; si++) {
        const tl_kernels *kn = sets[si];
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t b = 0; b < sizeof hds / sizeof hds[0]; b++) {
                int n = ns[a], hd = hds[b];
                /* rowdot: out[j] = sum_d q[d] kt[d*LD + j] */
                out[n] = 12345.0f; /* must stay untouched */
                kn->rowdot(out, q, kt, LD, n, hd);
                for (int j = 0; j < n; j++) {
                    double e = 0, mag = 0;
                    for (int d = 0; d < hd; d++) e += (double)q[d] * kt[d * LD + j], mag += fabs(q[d] * kt[d * LD + j]);
                    assert_true(fabs(out[j] - e) <= 1e-6 * mag);
                }
                assert_true(out[n] == 12345.0f);
                /* wsum: out[d] = sum_j p[j] x[j*LD + d] */
                out[hd] = 12345.0f;
                kn->wsum(out, p, x, LD, n, hd);
                for (int d = 0; d < hd; d++) {
                    double e = 0, mag = 0;
                    for (int j = 0; j < n; j++) e += (double)p[j] * x[j * LD + d], mag += fabs(p[j] * x[j * LD + d]);
                    assert_true(fabs(out[d] - e) <= 1e-6 * mag);
                }
                assert_true(out[hd] == 12345.0f);
                /* outer_acc: acc[j*LD + d] += p[j] q[d], other columns untouched */
                memcpy(acc, x, (size_t)MAXN * LD * sizeof(float));
                kn->outer_acc(acc, LD, p, q, n, hd);
                for (int j = 0; j < MAXN; j++)
                    for (int d = 0; d < LD; d++) {
                        double e = x[j * LD + d] + (j < n && d < hd ? (double)p[j] * q[d] : 0.0);
                        assert_true(fabs(acc[j * LD + d] - e) <= 1e-6 * (fabs(e) + 1));
                    }
            }
    }
    print_message("kernels checked: scalar and %s\n", sets[1]->name);
    free(q), free(p), free(kt), free(x), free(out), free(acc);
}

/* Errors, not crashes, for bad input. */
static void test_bad_input(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = tiny();
    c.n_head_kv = 3;
    assert_null(mope_train_model_new(&c, 1, &err));
    assert_int_equal(err.code, MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "n_head_kv"));
    c = tiny();
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    int32_t tok[4] = {1, 2, 11, 0}, tgt[4] = {2, 3, 4, -1};
    float loss;
    assert_int_equal(mope_train_model_forward(m, tok, tgt, NULL, 1, 4, &loss, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "token 11"));
    tok[2] = 3;
    assert_int_equal(mope_train_model_forward(m, tok, tgt, NULL, 1, 9, &loss, &err), MOPE_ERANGE);
    float bad_w[4] = {1, NAN, 1, 1};
    assert_int_equal(mope_train_model_forward(m, tok, tgt, bad_w, 1, 4, &loss, &err), MOPE_EINVAL);
    assert_int_equal(mope_train_model_backward(m, 1.0f, &err), MOPE_ESTATE);
    int32_t len[1] = {2};
    float score;
    assert_int_equal(mope_train_model_forward_value(m, tok, len, 1, 4, &score, &err), MOPE_EINVAL);
    /* all positions ignored: loss 0, zero gradients */
    int32_t none[4] = {-1, -1, -1, -1};
    mope_train_model_init_random(m, 5);
    mope_train_model_zero_grad(m);
    assert_int_equal(mope_train_model_forward(m, tok, none, NULL, 1, 4, &loss, &err), 0);
    assert_true(loss == 0.0f);
    assert_int_equal(mope_train_model_backward(m, 1.0f, &err), 0);
    assert_true(mope_train_grad_norm(m) == 0.0);
    mope_train_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_tied_gqa),
        cmocka_unit_test(test_grad_untied_mha),
        cmocka_unit_test(test_grad_value_head),
        cmocka_unit_test(test_grad_hidden),
        cmocka_unit_test(test_kernels),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
