/* LoRA on the trainable model (mope_train_model_add_lora and friends):
 * gradients, initial identity, frozen base, fine-tuning.  Files,
 * checkpoints and the inference engine: test_train_lora_io.c.
 *
 * 1. Gradients: every element of A and B of every target (q, k, v, o, gate,
 *    up, down, output) against central differences of an independent naive
 *    double-precision forward written here from the formulas (the same
 *    tolerance rule as test_train_grad.c), without and with adapter dropout
 *    (the reference applies the model's mask, read through
 *    tlora_drop_factor).  Because layer 0's adapters sit below layer 1's,
 *    these also check the activation gradient through the adapted paths;
 *    one adapted linear is also checked alone: d loss / d input against the
 *    closed form sum_o c_o (W_oi + s mask_i (B A)_oi).
 * 2. B = 0 at init leaves loss and logits bit-identical to the base model.
 * 3. LoRA training leaves every base parameter bit-identical, writes no base
 *    gradient, and lowers the loss of a small dataset substantially.
 * 4. Value-head and hidden-state passes train the adapters too, with the
 *    value head frozen.
 * 5. add_lora's argument checks; a trainer made before the adapter refuses
 *    to step. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mope/train.h"
#include "train/train_internal.h" /* tlora_drop_factor, and one linear alone */

/* ---- the naive reference, with adapters ---- */

typedef struct {
    mope_train_model *m;
    const mope_train_config *c;
    double *P;  /* base parameters (model layout) */
    double *A;  /* adapter parameters (adapter layout) */
    int B, T;
    const int32_t *tok, *tgt;
} ref;

static const double *btens(const ref *r, const char *name) {
    const mope_train_tensor *t = mope_train_model_find(r->m, name);
    assert_non_null(t);
    return r->P + t->offset;
}

/* adapter tensor of base name, 'a' or 'b'; NULL when not adapted */
static const double *atens(const ref *r, const char *base, char ab) {
    char name[80];
    snprintf(name, sizeof name, "%s.lora_%c", base, ab);
    for (int i = 0; i < mope_train_model_lora_n_tensors(r->m); i++) {
        const mope_train_tensor *t = mope_train_model_lora_tensor(r->m, i);
        if (!strcmp(t->name, name)) return r->A + t->offset;
    }
    return NULL;
}

/* y = W x + s B (A (x * mask)) for row `row` of linear id (base name) */
static void lin(const ref *r, double *y, int id, const char *base, const double *x, int n_out, int n_in, int row) {
    const double *W = btens(r, base), *A = atens(r, base, 'a'), *Bm = atens(r, base, 'b');
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
    if (!A) return;
    const tlora *lo = r->m->lora;
    int rk = lo->rank;
    double u[64];
    for (int k = 0; k < rk; k++) {
        double s = 0;
        for (int i = 0; i < n_in; i++)
            s += A[(size_t)k * n_in + i] * x[i] * tlora_drop_factor(lo, id, (size_t)row * n_in + i);
        u[k] = s;
    }
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int k = 0; k < rk; k++) s += Bm[(size_t)o * rk + k] * u[k];
        y[o] += lo->scale * s;
    }
}

static void rmsnorm(double *y, const double *x, const double *w, int C, double eps) {
    double ss = 0;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    double rs = 1.0 / sqrt(ss / C + eps);
    for (int i = 0; i < C; i++) y[i] = x[i] * rs * w[i];
}

static void rope(double *x, int nh, int hd, int pos, double base) {
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < hd / 2; i++) {
            double th = pos * pow(base, -2.0 * i / hd), *p = x + h * hd + 2 * i, x0 = p[0], x1 = p[1];
            p[0] = x0 * cos(th) - x1 * sin(th);
            p[1] = x0 * sin(th) + x1 * cos(th);
        }
}

static double ref_loss(const ref *r) {
    const mope_train_config *c = r->c;
    int C = c->n_embd, H = c->n_head, KH = c->n_head_kv, hd = C / H, F = c->n_ff, G = H / KH, V = c->n_vocab;
    int T = r->T, L = c->n_layer;
    double *x = calloc((size_t)T * C, 8), *xn = calloc((size_t)T * C, 8), *q = calloc((size_t)T * H * hd, 8);
    double *k = calloc((size_t)T * KH * hd, 8), *v = calloc((size_t)T * KH * hd, 8), *y = calloc((size_t)T * H * hd, 8);
    double *o = calloc((size_t)C, 8), *sc = calloc((size_t)T, 8), *g = calloc((size_t)F, 8), *u = calloc((size_t)F, 8);
    double *lg = calloc((size_t)V, 8);
    char nm[64];
    double num = 0, den = 0;
    for (int b = 0; b < r->B; b++) {
        const double *E = btens(r, "token_embd.weight");
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++) x[t * C + i] = E[(size_t)r->tok[b * T + t] * C + i];
        for (int l = 0; l < L; l++) {
            int id = l * TL_NLIN;
#define NM(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
            for (int t = 0; t < T; t++) {
                int row = b * T + t;
                rmsnorm(xn + t * C, x + t * C, btens(r, NM("attn_norm.weight")), C, c->rms_eps);
                lin(r, q + t * H * hd, id + TL_Q, NM("attn_q.weight"), xn + t * C, H * hd, C, row);
                lin(r, k + t * KH * hd, id + TL_K, NM("attn_k.weight"), xn + t * C, KH * hd, C, row);
                lin(r, v + t * KH * hd, id + TL_V, NM("attn_v.weight"), xn + t * C, KH * hd, C, row);
                rope(q + t * H * hd, H, hd, t, c->rope_freq_base);
                rope(k + t * KH * hd, KH, hd, t, c->rope_freq_base);
            }
            for (int t = 0; t < T; t++)
                for (int h = 0; h < H; h++) {
                    double mx = -1e300, sum = 0;
                    for (int t2 = 0; t2 <= t; t2++) {
                        double s = 0;
                        for (int d = 0; d < hd; d++) s += q[(t * H + h) * hd + d] * k[(t2 * KH + h / G) * hd + d];
                        sc[t2] = s / sqrt((double)hd);
                        mx = sc[t2] > mx ? sc[t2] : mx;
                    }
                    for (int t2 = 0; t2 <= t; t2++) sum += exp(sc[t2] - mx);
                    for (int d = 0; d < hd; d++) {
                        double acc = 0;
                        for (int t2 = 0; t2 <= t; t2++) acc += exp(sc[t2] - mx) / sum * v[(t2 * KH + h / G) * hd + d];
                        y[(t * H + h) * hd + d] = acc;
                    }
                }
            for (int t = 0; t < T; t++) {
                lin(r, o, id + TL_O, NM("attn_output.weight"), y + t * H * hd, C, H * hd, b * T + t);
                for (int i = 0; i < C; i++) x[t * C + i] += o[i];
            }
            for (int t = 0; t < T; t++) {
                int row = b * T + t;
                rmsnorm(xn + t * C, x + t * C, btens(r, NM("ffn_norm.weight")), C, c->rms_eps);
                lin(r, g, id + TL_GATE, NM("ffn_gate.weight"), xn + t * C, F, C, row);
                lin(r, u, id + TL_UP, NM("ffn_up.weight"), xn + t * C, F, C, row);
                for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
                lin(r, o, id + TL_DOWN, NM("ffn_down.weight"), g, C, F, row);
                for (int i = 0; i < C; i++) x[t * C + i] += o[i];
            }
#undef NM
        }
        for (int t = 0; t < T; t++) {
            int n = b * T + t;
            if (r->tgt[n] < 0) continue;
            rmsnorm(xn, x + t * C, btens(r, "output_norm.weight"), C, c->rms_eps);
            lin(r, lg, L * TL_NLIN, c->tied_output ? "token_embd.weight" : "output.weight", xn, V, C, n);
            double mx = lg[0], s = 0;
            for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
            for (int i = 0; i < V; i++) s += exp(lg[i] - mx);
            num += mx + log(s) - lg[r->tgt[n]];
            den += 1;
        }
    }
    free(x), free(xn), free(q), free(k), free(v), free(y), free(o), free(sc), free(g), free(u), free(lg);
    return num / den;
}

#include "train_lora_fixture.h"

static void check_lora_grads(unsigned targets, float drop) {
    mope_error err = {0};
    mope_train_config c = tiny();
    mope_train_model *m = lora_model(&c, 3, 4.5f, targets, drop, 2); /* scale 1.5 */
    float loss;
    mope_train_model_zero_grad(m);
    assert_int_equal(mope_train_model_forward(m, TOK, TGT, NULL, NB, NT, &loss, &err), 0);
    assert_int_equal(mope_train_model_backward(m, 1.0f, &err), 0);
    /* the base is frozen: not one base gradient was written */
    const float *gb = mope_train_model_grads(m);
    for (size_t i = 0; i < mope_train_model_n_params(m); i++)
        if (gb[i] != 0.0f) fail_msg("base gradient %zu is %g with LoRA on", i, (double)gb[i]);

    size_t np = mope_train_model_n_params(m), na = mope_train_model_n_trainable(m);
    ref r = {m, mope_train_model_config(m), malloc(np * 8), malloc(na * 8), NB, NT, TOK, TGT};
    for (size_t i = 0; i < np; i++) r.P[i] = mope_train_model_params(m)[i];
    for (size_t i = 0; i < na; i++) r.A[i] = mope_train_model_lora_params(m)[i];
    double lref = ref_loss(&r);
    print_message("loss f32 %.8f reference %.8f (dropout %.2f)\n", (double)loss, lref, (double)drop);
    assert_true(fabs(loss - lref) <= 1e-5 * fabs(lref));

    const float *ga = mope_train_model_lora_grads(m);
    const double h = 1e-3;
    double worst = 0;
    int n_targets = 0;
    for (int ti = 0; ti < mope_train_model_lora_n_tensors(m); ti++) {
        const mope_train_tensor *t = mope_train_model_lora_tensor(m, ti);
        double *fd = malloc(t->n * 8), fmax = 0;
        for (size_t k = 0; k < t->n; k++) {
            double *p = &r.A[t->offset + k], p0 = *p;
            *p = p0 + h;
            double lp = ref_loss(&r);
            *p = p0 - h;
            double lm = ref_loss(&r);
            *p = p0;
            fd[k] = (lp - lm) / (2 * h);
            fmax = fabs(fd[k]) > fmax ? fabs(fd[k]) : fmax;
        }
        assert_true(fmax > 1e-4); /* an all-zero gradient would test nothing */
        for (size_t k = 0; k < t->n; k++) {
            double a = ga[t->offset + k], tol = 1e-3 * fabs(fd[k]) + 1e-4 * fmax + 1e-6, ratio = fabs(a - fd[k]) / tol;
            worst = ratio > worst ? ratio : worst;
            if (ratio > 1) fail_msg("%s[%zu]: analytic %.9g vs finite difference %.9g", t->name, k, a, fd[k]);
        }
        free(fd);
        n_targets++;
    }
    print_message("%d adapter tensors, %zu floats: worst |error| / tolerance = %.4f\n", n_targets, na, worst);
    free(r.P);
    free(r.A);
    mope_train_model_free(m);
}

static void test_grad_all_targets(void **state) {
    (void)state;
    check_lora_grads(MOPE_LORA_ALL_LINEAR | MOPE_LORA_OUTPUT, 0.0f);
}

static void test_grad_dropout(void **state) {
    (void)state;
    check_lora_grads(MOPE_LORA_Q | MOPE_LORA_V | MOPE_LORA_O | MOPE_LORA_DOWN | MOPE_LORA_OUTPUT, 0.3f);
}

/* One adapted linear alone: out = x W^T + s (drop(x) A^T) B^T; the input
 * gradient for a loss sum c * out against the closed form. */
static void check_linear_input_grad(float drop) {
    mope_error err = {0};
    mope_train_config c = tiny();
    mope_train_model *m = lora_model(&c, 3, 4.0f, MOPE_LORA_O, drop, 2);
    int N = 5, id = 1 * TL_NLIN + TL_O, NI = m->qd, NO = c.n_embd;
    assert_int_equal(tm_prepare(m, TMODE_HIDDEN, 1, N, &err), 0);
    tlora_begin(m);
    tlora *lo = m->lora;
    const tlora_lin *L = &lo->lin[id];
    assert_non_null(L->a);
    mope_rng rng;
    mope_rng_seed(&rng, 5);
    float *x = malloc(sizeof(float) * N * NI), *cc = malloc(sizeof(float) * N * NO);
    float *out = malloc(sizeof(float) * N * NO), *din = malloc(sizeof(float) * N * NI);
    fill_normal(x, (size_t)N * NI, 1.0f, 0.0f, &rng);
    fill_normal(cc, (size_t)N * NO, 1.0f, 0.0f, &rng);
    const float *W = m->w.layer[1].wo;
    tl_linear_fwd(m->pool, out, x, W, N, NI, NO, false);
    tlora_fwd(m, id, out, x, N);
    tl_linear_bwd(m->pool, din, NULL, cc, x, W, N, NI, NO, false);
    tlora_bwd(m, id, din, cc, x, N);
    int dropped = 0;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < NI; i++) {
            double f = tlora_drop_factor(lo, id, (size_t)n * NI + i), e = 0, mag = 0;
            dropped += f == 0;
            for (int o = 0; o < NO; o++) {
                double ba = 0;
                for (int k = 0; k < lo->rank; k++) ba += (double)L->b[o * lo->rank + k] * L->a[k * NI + i];
                double term = cc[n * NO + o] * (W[o * NI + i] + lo->scale * f * ba);
                e += term;
                mag += fabs(term);
            }
            if (fabs(din[n * NI + i] - e) > 1e-5 * mag + 1e-6)
                fail_msg("d input [%d, %d]: %.8g, expected %.8g", n, i, (double)din[n * NI + i], e);
        }
    if (drop > 0) {
        /* about drop * N * NI of the inputs are dropped */
        print_message("dropout %.2f: %d of %d adapter inputs dropped\n", (double)drop, dropped, N * NI);
        assert_true(dropped > 0.5 * drop * N * NI && dropped < 1.5 * drop * N * NI);
    } else {
        assert_int_equal(dropped, 0);
    }
    free(x), free(cc), free(out), free(din);
    mope_train_model_free(m);
}

static void test_linear_input_grad(void **state) {
    (void)state;
    check_linear_input_grad(0.0f);
    check_linear_input_grad(0.4f);
}

/* Value-head and hidden-state passes with an adapter: the trunk's adapters
 * get gradients (checked on a sample of elements against central
 * differences of the f32 pass itself, h = 1e-2, loose tolerance: a wiring
 * bug is an O(1) error), and no base gradient is written, the value head's
 * included (it is frozen with the base). */
static void test_value_hidden_modes(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = tiny();
    c.value_head = true;
    mope_train_model *m = lora_model(&c, 2, 3.0f, MOPE_LORA_ALL_LINEAR, 0.0f, 1); /* scale 1.5 */
    static const int32_t len[NB] = {4, 6};
    static const float ds[NB] = {0.8f, -1.1f};
    size_t nh = (size_t)NB * NT * c.n_embd;
    float *dh = malloc(nh * sizeof(float));
    mope_rng rng;
    mope_rng_seed(&rng, 3);
    fill_normal(dh, nh, 1.0f, 0.0f, &rng);
    for (int mode = 0; mode < 2; mode++) {
        float sc[NB];
        mope_train_model_zero_grad(m);
        if (mode == 0) {
            assert_int_equal(mope_train_model_forward_value(m, TOK, len, NB, NT, sc, &err), 0);
            assert_int_equal(mope_train_model_backward_value(m, ds, &err), 0);
        } else {
            assert_non_null(mope_train_model_forward_hidden(m, TOK, NB, NT, &err));
            assert_int_equal(mope_train_model_backward_hidden(m, dh, &err), 0);
        }
        const float *gb = mope_train_model_grads(m);
        for (size_t i = 0; i < mope_train_model_n_params(m); i++) assert_true(gb[i] == 0.0f);
        size_t na = mope_train_model_n_trainable(m);
        float *g = malloc(na * sizeof(float)), *p = mope_train_model_lora_params(m);
        memcpy(g, mope_train_model_lora_grads(m), na * sizeof(float));
        double worst = 0;
        for (int ti = 0; ti < mope_train_model_lora_n_tensors(m); ti++) {
            const mope_train_tensor *t = mope_train_model_lora_tensor(m, ti);
            for (size_t k = 0; k < t->n; k += 7) {
                double lv[2];
                float p0 = p[t->offset + k];
                for (int sgn = 0; sgn < 2; sgn++) {
                    p[t->offset + k] = p0 + (sgn ? -1e-2f : 1e-2f);
                    double l = 0;
                    if (mode == 0) {
                        assert_int_equal(mope_train_model_forward_value(m, TOK, len, NB, NT, sc, &err), 0);
                        for (int b = 0; b < NB; b++) l += (double)ds[b] * sc[b];
                    } else {
                        const float *h = mope_train_model_forward_hidden(m, TOK, NB, NT, &err);
                        for (size_t i = 0; i < nh; i++) l += (double)dh[i] * h[i];
                    }
                    lv[sgn] = l;
                }
                p[t->offset + k] = p0;
                double fd = (lv[0] - lv[1]) / 2e-2, a = g[t->offset + k];
                double ratio = fabs(a - fd) / (0.02 * fabs(fd) + 2e-3);
                worst = ratio > worst ? ratio : worst;
                if (ratio > 1) fail_msg("%s mode: %s[%zu] analytic %.6g vs f32 difference %.6g", mode ? "hidden" : "value",
                                        t->name, k, a, fd);
            }
        }
        print_message("%s mode: worst |error| / tolerance = %.3f\n", mode ? "hidden" : "value", worst);
        free(g);
    }
    free(dh);
    mope_train_model_free(m);
}

/* ---- B = 0 at init: nothing changes ---- */

static void test_init_identity(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = tiny();
    c.tied_output = true;
    mope_train_model *m = mope_train_model_new(&c, 2, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, 3);
    float l0, l1;
    size_t nl = (size_t)NB * NT * c.n_vocab;
    float *lg = malloc(nl * sizeof(float));
    assert_int_equal(mope_train_model_forward(m, TOK, TGT, NULL, NB, NT, &l0, &err), 0);
    memcpy(lg, mope_train_model_logits(m), nl * sizeof(float));
    assert_int_equal(mope_train_model_add_lora(m, 4, 8.0f, MOPE_LORA_ALL_LINEAR, 0.0f, 1, &err), 0);
    /* A is random (not zero) and B is zero */
    const float *ap = mope_train_model_lora_params(m);
    for (int i = 0; i < mope_train_model_lora_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_lora_tensor(m, i);
        bool is_b = t->name[strlen(t->name) - 1] == 'b';
        double ss = 0, bound = 1.0 / sqrt((double)t->ne[0]);
        for (size_t k = 0; k < t->n; k++) {
            ss += (double)ap[t->offset + k] * ap[t->offset + k];
            if (!is_b) assert_true(fabs(ap[t->offset + k]) <= bound);
        }
        if (is_b) assert_true(ss == 0);
        else assert_true(ss > 0);
    }
    assert_int_equal(mope_train_model_forward(m, TOK, TGT, NULL, NB, NT, &l1, &err), 0);
    assert_true(l0 == l1);
    assert_memory_equal(lg, mope_train_model_logits(m), nl * sizeof(float));
    free(lg);
    mope_train_model_free(m);
}

/* ---- training: base untouched, loss falls ---- */


static void test_finetune(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = ft_config();
    mope_train_model *m = mope_train_model_new(&c, 2, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, 11);
    size_t np = mope_train_model_n_params(m);
    float *base = malloc(np * sizeof(float));
    memcpy(base, mope_train_model_params(m), np * sizeof(float));
    assert_int_equal(mope_train_model_add_lora(m, 4, 8.0f, MOPE_LORA_ALL_LINEAR | MOPE_LORA_OUTPUT, 0.05f, 2, &err),
                     0);
    mope_adamw_config ac;
    mope_adamw_config_init(&ac);
    ac.lr = 1e-2f;
    ac.min_lr = 1e-3f;
    ac.total_steps = 80;
    ac.weight_decay = 0.0f;
    mope_trainer *tr = mope_train_trainer_new(m, &ac, 1, &err);
    assert_non_null(tr);
    int32_t tok[FB * FT], tgt[FB * FT];
    ft_batch(tok, tgt);
    mope_train_batch b = {tok, tgt, NULL, FB, FT};
    mope_train_stats st;
    float first = 0, last = 0;
    for (int s = 0; s < 80; s++) {
        if (mope_train_step(tr, &b, 1, &st, &err)) fail_msg("step %d: %s", s, err.msg);
        if (s == 0) first = st.loss;
        last = st.loss;
    }
    /* evaluate without dropout */
    assert_int_equal(mope_train_model_lora_set_dropout(m, 0.0f, &err), 0);
    float eval;
    assert_int_equal(mope_train_model_forward(m, tok, tgt, NULL, FB, FT, &eval, &err), 0);
    print_message("LoRA fine-tune: loss %.4f -> %.4f (last step %.4f), %zu trainable of %zu\n", (double)first,
                  (double)eval, (double)last, mope_train_model_n_trainable(m), np);
    assert_true(first > 3.0f);        /* ~ln 32 from a random base */
    assert_true(eval < 0.25f * first); /* substantially lower */
    /* every base parameter bit-identical, and no base gradient written */
    assert_memory_equal(base, mope_train_model_params(m), np * sizeof(float));
    const float *g = mope_train_model_grads(m);
    for (size_t i = 0; i < np; i++) assert_true(g[i] == 0.0f);
    free(base);
    mope_train_trainer_free(tr);
}

static void test_bad_args(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = tiny();
    c.tied_output = true;
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    assert_int_equal(mope_train_model_add_lora(m, 2, 4.0f, MOPE_LORA_OUTPUT, 0.0f, 1, &err), MOPE_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "untied"));
    assert_int_equal(mope_train_model_add_lora(m, 0, 4.0f, MOPE_LORA_Q, 0.0f, 1, &err), MOPE_EINVAL);
    assert_int_equal(mope_train_model_add_lora(m, 13, 4.0f, MOPE_LORA_GATE, 0.0f, 1, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "ffn_gate"));
    assert_int_equal(mope_train_model_add_lora(m, 2, -1.0f, MOPE_LORA_Q, 0.0f, 1, &err), MOPE_EINVAL);
    assert_int_equal(mope_train_model_add_lora(m, 2, 4.0f, MOPE_LORA_Q, 1.0f, 1, &err), MOPE_EINVAL);
    assert_int_equal(mope_train_model_add_lora(m, 2, 4.0f, 0, 0.0f, 1, &err), MOPE_EINVAL);
    assert_int_equal(mope_train_model_add_lora(m, 2, 4.0f, 0x100, 0.0f, 1, &err), MOPE_EINVAL);
    assert_false(mope_train_model_has_lora(m));
    mope_train_lora_info info;
    assert_int_equal(mope_train_model_lora_info(m, &info, &err), MOPE_ESTATE);
    assert_int_equal(mope_train_model_lora_merge(m, &err), MOPE_ESTATE);
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_train_model_lora_to_gguf(m, w, &err), MOPE_ESTATE);
    mope_gguf_writer_free(w);
    /* a trainer made before the adapter refuses to update */
    mope_train_model_init_random(m, 1);
    mope_adamw_config ac;
    mope_adamw_config_init(&ac);
    mope_trainer *tr = mope_train_trainer_new(m, &ac, 1, &err);
    assert_non_null(tr);
    assert_int_equal(mope_train_model_add_lora(m, 2, 0.0f, MOPE_LORA_Q, 0.0f, 1, &err), 0);
    assert_int_equal(mope_train_model_add_lora(m, 2, 0.0f, MOPE_LORA_Q, 0.0f, 1, &err), MOPE_ESTATE);
    mope_train_model_lora_info(m, &info, &err);
    assert_true(info.scale == 1.0f); /* alpha 0: llama.cpp's scale 1 */
    mope_train_batch b = {TOK, TGT, NULL, NB, NT};
    assert_int_equal(mope_train_step(tr, &b, 1, NULL, &err), MOPE_ESTATE);
    assert_non_null(strstr(err.msg, "before creating the trainer"));
    mope_train_trainer_free(tr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_all_targets),  cmocka_unit_test(test_grad_dropout),
        cmocka_unit_test(test_linear_input_grad), cmocka_unit_test(test_init_identity),
        cmocka_unit_test(test_finetune),          cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_value_hidden_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
