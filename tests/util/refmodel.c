/* Naive reference forward; see refmodel.h.  Slow on purpose: everything is
 * recomputed in double from freshly dequantised weights. */
#include "util/refmodel.h"

#include "mope/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* A weight as doubles: ne1 rows of ne0. */
typedef struct refmat {
    double *w;
    int64_t ne0, ne1;
    int type;
    bool quant_act;
} refmat;

static int ref_load(refmodel_lookup get, void *ctx, const char *name, int64_t ne0, int64_t ne1, refmat *out) {
    refmodel_tensor t;
    out->w = NULL;
    if (get(ctx, name, &t) != 0 || t.ne0 != ne0 || t.ne1 != ne1) return -1;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->type = t.type;
    out->quant_act = false;
    out->w = malloc(sizeof(double) * (size_t)(ne0 * ne1));
    float *row = malloc(sizeof(float) * (size_t)ne0);
    size_t rb = mope_row_size(t.type, ne0);
    int rc = (out->w && row && rb) ? 0 : -1;
    for (int64_t r = 0; r < ne1 && rc == 0; r++) {
        if (mope_dequantize_row(t.type, (const char *)t.data + (size_t)r * rb, row, ne0) != 0) rc = -1;
        for (int64_t i = 0; i < ne0; i++) out->w[r * ne0 + i] = row[i];
    }
    free(row);
    return rc;
}

/* y[j] = sum_i W[j][i] * x[i] */
static void ref_matvec(const refmat *m, const double *x_in, double *y) {
    const double *x = x_in;
    double *xr = NULL;
    const mope_type_traits *tt = mope_type_get(m->type);
    if (m->quant_act && tt && tt->vec_dot_type != MOPE_TYPE_F32) {
        int vt = tt->vec_dot_type;
        float *f = malloc(sizeof(float) * (size_t)m->ne0);
        void *q = malloc(mope_row_size(vt, m->ne0) + 64);
        xr = malloc(sizeof(double) * (size_t)m->ne0);
        if (f && q && xr) {
            for (int64_t i = 0; i < m->ne0; i++) f[i] = (float)x_in[i];
            if (mope_quantize_row(vt, f, q, m->ne0) == 0 && mope_dequantize_row(vt, q, f, m->ne0) == 0) {
                for (int64_t i = 0; i < m->ne0; i++) xr[i] = f[i];
                x = xr;
            }
        }
        free(f);
        free(q);
    }
    for (int64_t j = 0; j < m->ne1; j++) {
        double s = 0;
        for (int64_t i = 0; i < m->ne0; i++) s += m->w[j * m->ne0 + i] * x[i];
        y[j] = s;
    }
    free(xr);
}

static void ref_rmsnorm(const double *x, const refmat *w, int n, double eps, double *y) {
    double ms = 0;
    for (int i = 0; i < n; i++) ms += x[i] * x[i];
    ms /= n;
    for (int i = 0; i < n; i++) y[i] = x[i] / sqrt(ms + eps) * w->w[i];
}

/* Rotates each head's first n_rot dims of v by position pos. */
static void ref_rope(const refmodel_hp *hp, double *v, int n_heads, int pos) {
    for (int h = 0; h < n_heads; h++) {
        double *x = v + h * hp->head_dim;
        for (int i = 0; i < hp->n_rot / 2; i++) {
            double theta = pos * hp->rope_scale * pow(hp->rope_base, -2.0 * i / hp->n_rot);
            int a = hp->neox ? i : 2 * i;
            int b = hp->neox ? i + hp->n_rot / 2 : 2 * i + 1;
            double x0 = x[a], x1 = x[b];
            x[a] = x0 * cos(theta) - x1 * sin(theta);
            x[b] = x0 * sin(theta) + x1 * cos(theta);
        }
    }
}

int refmodel_forward(const refmodel_hp *hp, refmodel_lookup get, void *ctx, const int32_t *tokens, int n,
                     double *logits) {
    int E = hp->n_embd, F = hp->n_ff, hd = hp->head_dim;
    int QD = hp->n_head * hd, KD = hp->n_head_kv * hd;
    char name[96];
    int rc = 0;
    refmat emb = {0}, outn = {0}, outw = {0};
    double *x = calloc((size_t)n * E, sizeof(double));
    double *h = calloc((size_t)E, sizeof(double));
    double *q = calloc((size_t)n * QD, sizeof(double));
    double *k = calloc((size_t)n * KD, sizeof(double));
    double *v = calloc((size_t)n * KD, sizeof(double));
    double *att = calloc((size_t)QD, sizeof(double));
    double *tmp = calloc((size_t)(E > F ? E : F), sizeof(double));
    double *g = calloc((size_t)F, sizeof(double));
    double *u = calloc((size_t)F, sizeof(double));
    double *sc = calloc((size_t)n, sizeof(double));
    if (!x || !h || !q || !k || !v || !att || !tmp || !g || !u || !sc) rc = -1;
    if (!rc) rc = ref_load(get, ctx, "token_embd.weight", E, hp->n_vocab, &emb);
    for (int t = 0; t < n && !rc; t++)
        for (int i = 0; i < E; i++) x[t * E + i] = emb.w[(int64_t)tokens[t] * E + i];

    for (int l = 0; l < hp->n_layer && !rc; l++) {
        refmat an, fn, wq, wk, wv, wo, wg, wu, wd, bq = {0}, bk = {0}, bv = {0};
        refmat *all[] = {&an, &fn, &wq, &wk, &wv, &wo, &wg, &wu, &wd, &bq, &bk, &bv};
#define LOAD(m, s, a, b) (snprintf(name, sizeof name, "blk.%d." s, l), ref_load(get, ctx, name, a, b, m))
        rc |= LOAD(&an, "attn_norm.weight", E, 1);
        rc |= LOAD(&fn, "ffn_norm.weight", E, 1);
        rc |= LOAD(&wq, "attn_q.weight", E, QD);
        rc |= LOAD(&wk, "attn_k.weight", E, KD);
        rc |= LOAD(&wv, "attn_v.weight", E, KD);
        rc |= LOAD(&wo, "attn_output.weight", QD, E);
        rc |= LOAD(&wg, "ffn_gate.weight", E, F);
        rc |= LOAD(&wu, "ffn_up.weight", E, F);
        rc |= LOAD(&wd, "ffn_down.weight", F, E);
        if (hp->qkv_bias) {
            rc |= LOAD(&bq, "attn_q.bias", QD, 1);
            rc |= LOAD(&bk, "attn_k.bias", KD, 1);
            rc |= LOAD(&bv, "attn_v.bias", KD, 1);
        }
#undef LOAD
        refmat *mats[] = {&wq, &wk, &wv, &wo, &wg, &wu, &wd};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) mats[i]->quant_act = hp->quant_act;
        if (!rc) {
            /* attention: all positions' q, k, v first, then causal softmax */
            for (int t = 0; t < n; t++) {
                ref_rmsnorm(x + t * E, &an, E, hp->rms_eps, h);
                ref_matvec(&wq, h, q + t * QD);
                ref_matvec(&wk, h, k + t * KD);
                ref_matvec(&wv, h, v + t * KD);
                if (hp->qkv_bias) {
                    for (int i = 0; i < QD; i++) q[t * QD + i] += bq.w[i];
                    for (int i = 0; i < KD; i++) k[t * KD + i] += bk.w[i];
                    for (int i = 0; i < KD; i++) v[t * KD + i] += bv.w[i];
                }
                ref_rope(hp, q + t * QD, hp->n_head, t);
                ref_rope(hp, k + t * KD, hp->n_head_kv, t);
            }
            int group = hp->n_head / hp->n_head_kv;
            for (int t = 0; t < n; t++) {
                for (int hh = 0; hh < hp->n_head; hh++) {
                    int kh = hh / group;
                    double mx = -1e300, sum = 0;
                    for (int s = 0; s <= t; s++) {
                        double d = 0;
                        for (int i = 0; i < hd; i++) d += q[t * QD + hh * hd + i] * k[s * KD + kh * hd + i];
                        sc[s] = d / sqrt((double)hd);
                        if (sc[s] > mx) mx = sc[s];
                    }
                    for (int s = 0; s <= t; s++) sum += (sc[s] = exp(sc[s] - mx));
                    for (int i = 0; i < hd; i++) {
                        double o = 0;
                        for (int s = 0; s <= t; s++) o += sc[s] / sum * v[s * KD + kh * hd + i];
                        att[hh * hd + i] = o;
                    }
                }
                ref_matvec(&wo, att, tmp);
                for (int i = 0; i < E; i++) x[t * E + i] += tmp[i];
            }
            for (int t = 0; t < n; t++) {
                ref_rmsnorm(x + t * E, &fn, E, hp->rms_eps, h);
                ref_matvec(&wg, h, g);
                ref_matvec(&wu, h, u);
                for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
                ref_matvec(&wd, g, tmp);
                for (int i = 0; i < E; i++) x[t * E + i] += tmp[i];
            }
        }
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->w);
    }
    if (!rc) rc = ref_load(get, ctx, "output_norm.weight", E, 1, &outn);
    if (!rc) rc = ref_load(get, ctx, hp->tied ? "token_embd.weight" : "output.weight", E, hp->n_vocab, &outw);
    outw.quant_act = hp->quant_act;
    for (int t = 0; t < n && !rc; t++) {
        ref_rmsnorm(x + t * E, &outn, E, hp->rms_eps, h);
        ref_matvec(&outw, h, logits + (int64_t)t * hp->n_vocab);
    }
    free(emb.w);
    free(outn.w);
    free(outw.w);
    free(x), free(h), free(q), free(k), free(v), free(att), free(tmp), free(g), free(u), free(sc);
    return rc;
}
