/* Forward and backward passes of the trainable model over a B x T batch
 * (N = B*T rows, C = n_embd, QD = n_head*hd, KD = n_head_kv*hd, F = n_ff,
 * V = n_vocab). */
#include "train/train_internal.h"

#include <math.h>

/* ---- one block ----
 * x = res[l] -> xn1 = norm(x) -> q, k, v -> rope -> attention -> yatt
 * mid = x + yatt Wo^T -> xn2 = norm(mid) -> gate, up -> h = silu(gate) up
 * res[l+1] = mid + h Wd^T */
static void block_fwd(mope_train_model *m, int l) {
    const mope_train_config *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, C = c->n_embd, F = c->n_ff, QD = m->qd, KD = m->kd;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
    const tlayer *w = &m->w.layer[l];
    tacts *a = &m->a;
    float *x = a->res + l * NC, *xn1 = a->xn1 + l * NC, *rstd1 = a->rstd1 + (size_t)l * N;
    float *q = a->q + (size_t)l * N * QD, *k = a->k + (size_t)l * N * KD, *v = a->v + (size_t)l * N * KD;
    float *att = a->att + (size_t)l * B * c->n_head * T * T, *yatt = a->yatt + (size_t)l * N * QD;
    float *mid = a->mid + l * NC, *xn2 = a->xn2 + l * NC, *rstd2 = a->rstd2 + (size_t)l * N;
    float *gate = a->gate + l * NF, *up = a->up + l * NF, *h = a->hmlp + l * NF, *out = a->res + (l + 1) * NC;

    tl_rmsnorm_fwd(m->pool, xn1, rstd1, x, w->attn_norm, N, C, c->rms_eps);
    int id = l * TL_NLIN;
    tl_linear_fwd(m->gemm_pool, q, xn1, w->wq, N, C, QD, false); /* [N, QD] */
    tl_linear_fwd(m->gemm_pool, k, xn1, w->wk, N, C, KD, false); /* [N, KD] */
    tl_linear_fwd(m->gemm_pool, v, xn1, w->wv, N, C, KD, false); /* [N, KD] */
    tlora_fwd(m, id + TL_Q, q, xn1, N);
    tlora_fwd(m, id + TL_K, k, xn1, N);
    tlora_fwd(m, id + TL_V, v, xn1, N);
    tl_rope_fwd(m->pool, q, N, T, c->n_head, m->hd, m->rope_cos, m->rope_sin);
    tl_rope_fwd(m->pool, k, N, T, c->n_head_kv, m->hd, m->rope_cos, m->rope_sin);
    tl_attn_fwd(m->pool, m->kern, m->d.thr, yatt, att, q, k, v, B, T, c->n_head, c->n_head_kv, m->hd);
    memcpy(mid, x, NC * sizeof(float));
    tl_linear_fwd(m->gemm_pool, mid, yatt, w->wo, N, QD, C, true); /* mid = x + yatt Wo^T */
    tlora_fwd(m, id + TL_O, mid, yatt, N);
    tl_rmsnorm_fwd(m->pool, xn2, rstd2, mid, w->ffn_norm, N, C, c->rms_eps);
    tl_linear_fwd(m->gemm_pool, gate, xn2, w->wg, N, C, F, false); /* [N, F] */
    tl_linear_fwd(m->gemm_pool, up, xn2, w->wu, N, C, F, false);     /* [N, F] */
    tlora_fwd(m, id + TL_GATE, gate, xn2, N);
    tlora_fwd(m, id + TL_UP, up, xn2, N);
    tl_swiglu_fwd(m->pool, h, gate, up, NF);
    memcpy(out, mid, NC * sizeof(float));
    tl_linear_fwd(m->gemm_pool, out, h, w->wd, N, F, C, true); /* out = mid + h Wd^T */
    tlora_fwd(m, id + TL_DOWN, out, h, N);
}

/* On entry d->dres = dL/d res[l+1]; on exit dL/d res[l]. */
static void block_bwd(mope_train_model *m, int l) {
    const mope_train_config *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, C = c->n_embd, F = c->n_ff, QD = m->qd, KD = m->kd;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
    const tlayer *w = &m->w.layer[l];
    /* with an adapter the base is frozen: NULL gradients skip those sgemms */
    tlayer *g = m->lora ? &(tlayer){0} : &m->g.layer[l];
    int id = l * TL_NLIN;
    tacts *a = &m->a;
    tgrads *d = &m->d;
    float *x = a->res + l * NC, *xn1 = a->xn1 + l * NC, *rstd1 = a->rstd1 + (size_t)l * N;
    float *q = a->q + (size_t)l * N * QD, *k = a->k + (size_t)l * N * KD, *v = a->v + (size_t)l * N * KD;
    float *att = a->att + (size_t)l * B * c->n_head * T * T, *yatt = a->yatt + (size_t)l * N * QD;
    float *mid = a->mid + l * NC, *xn2 = a->xn2 + l * NC, *rstd2 = a->rstd2 + (size_t)l * N;
    float *gate = a->gate + l * NF, *up = a->up + l * NF, *h = a->hmlp + l * NF;

    /* MLP */
    tl_linear_bwd(m->gemm_pool, d->dfa, g->wd, d->dres, h, w->wd, N, F, C, false); /* dh [N, F] */
    tlora_bwd(m, id + TL_DOWN, d->dfa, d->dres, h, N);
    tl_swiglu_bwd(m->pool, d->dfa, d->dfb, d->dfa, gate, up, NF);         /* dgate, dup */
    tl_linear_bwd(m->gemm_pool, d->dxn, g->wg, d->dfa, xn2, w->wg, N, C, F, false); /* dxn2 [N, C] */
    tl_linear_bwd(m->gemm_pool, d->dxn, g->wu, d->dfb, xn2, w->wu, N, C, F, true);
    tlora_bwd(m, id + TL_GATE, d->dxn, d->dfa, xn2, N);
    tlora_bwd(m, id + TL_UP, d->dxn, d->dfb, xn2, N);
    tl_rmsnorm_bwd(m->pool, d->dres, g->ffn_norm, d->dxn, mid, rstd2, w->ffn_norm, N, C); /* dres = d mid */

    /* attention */
    tl_linear_bwd(m->gemm_pool, d->dy, g->wo, d->dres, yatt, w->wo, N, QD, C, false); /* dyatt [N, QD] */
    tlora_bwd(m, id + TL_O, d->dy, d->dres, yatt, N);
    tl_attn_bwd(m->pool, m->kern, d->thr, d->dq, d->dk, d->dv, d->dy, att, q, k, v, B, T, c->n_head, c->n_head_kv,
                m->hd);
    tl_rope_bwd(m->pool, d->dq, N, T, c->n_head, m->hd, m->rope_cos, m->rope_sin);
    tl_rope_bwd(m->pool, d->dk, N, T, c->n_head_kv, m->hd, m->rope_cos, m->rope_sin);
    tl_linear_bwd(m->gemm_pool, d->dxn, g->wq, d->dq, xn1, w->wq, N, C, QD, false); /* dxn1 [N, C] */
    tl_linear_bwd(m->gemm_pool, d->dxn, g->wk, d->dk, xn1, w->wk, N, C, KD, true);
    tl_linear_bwd(m->gemm_pool, d->dxn, g->wv, d->dv, xn1, w->wv, N, C, KD, true);
    tlora_bwd(m, id + TL_Q, d->dxn, d->dq, xn1, N);
    tlora_bwd(m, id + TL_K, d->dxn, d->dk, xn1, N);
    tlora_bwd(m, id + TL_V, d->dxn, d->dv, xn1, N);
    tl_rmsnorm_bwd(m->pool, d->dres, g->attn_norm, d->dxn, x, rstd1, w->attn_norm, N, C); /* dres = d x */
}

/* Embedding, all blocks, output_norm -> a.xf. */
static void trunk_fwd(mope_train_model *m) {
    const mope_train_config *c = &m->cfg;
    int N = m->B * m->T;
    tlora_begin(m);
    tl_embed_fwd(m->pool, m->a.res, m->w.embd, m->tok, N, c->n_embd);
    for (int l = 0; l < c->n_layer; l++) block_fwd(m, l);
    tl_rmsnorm_fwd(m->pool, m->a.xf, m->a.rstdf, m->a.res + (size_t)c->n_layer * N * c->n_embd, m->w.out_norm, N,
                   c->n_embd, c->rms_eps);
}

/* From d->dxn = dL/d xf down to the embedding. */
static void trunk_bwd(mope_train_model *m) {
    const mope_train_config *c = &m->cfg;
    int N = m->B * m->T, C = c->n_embd;
    memset(m->d.dres, 0, (size_t)N * C * sizeof(float));
    tl_rmsnorm_bwd(m->pool, m->d.dres, m->lora ? NULL : m->g.out_norm, m->d.dxn,
                   m->a.res + (size_t)c->n_layer * N * C, m->a.rstdf, m->w.out_norm, N, C);
    for (int l = c->n_layer - 1; l >= 0; l--) block_bwd(m, l);
    if (!m->lora) tl_embed_bwd(m->pool, m->g.embd, m->d.dres, m->tok, N, C);
}

static int check_shape(const mope_train_model *m, int B, int T, mope_error *err) {
    if (B < 1 || T < 1) return mope_error_set(err, MOPE_EINVAL, "batch shape %d x %d must be positive", B, T);
    if (T > m->cfg.n_ctx)
        return mope_error_set(err, MOPE_ERANGE, "sequence length %d exceeds the model context %d", T, m->cfg.n_ctx);
    if ((int64_t)B * T > (1 << 28))
        return mope_error_set(err, MOPE_EINVAL, "batch of %d x %d tokens is too large", B, T);
    return 0;
}

static int check_tokens(const mope_train_model *m, const int32_t *tokens, size_t N, mope_error *err) {
    if (!tokens) return mope_error_set(err, MOPE_EINVAL, "tokens is NULL");
    for (size_t n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= m->cfg.n_vocab)
            return mope_error_set(err, MOPE_EINVAL, "token %d at index %zu is outside the vocabulary [0, %d)",
                                  (int)tokens[n], n, m->cfg.n_vocab);
    return 0;
}

int mope_train_model_forward(mope_train_model *m, const int32_t *tokens, const int32_t *targets, const float *weights,
                             int B, int T, float *loss, mope_error *err) {
    if (!m || !targets) return mope_error_set(err, MOPE_EINVAL, "forward: model or targets is NULL");
    int rc = check_shape(m, B, T, err);
    if (rc) return rc;
    size_t N = (size_t)B * T;
    if ((rc = check_tokens(m, tokens, N, err))) return rc;
    for (size_t n = 0; n < N; n++) {
        if (targets[n] >= m->cfg.n_vocab)
            return mope_error_set(err, MOPE_EINVAL, "target %d at index %zu is outside the vocabulary [0, %d)",
                                  (int)targets[n], n, m->cfg.n_vocab);
        if (weights && (!(weights[n] >= 0) || !isfinite(weights[n])))
            return mope_error_set(err, MOPE_EINVAL, "loss weight %g at index %zu must be finite and >= 0",
                                  (double)weights[n], n);
    }
    m->mode = TMODE_NONE;
    if ((rc = tm_prepare(m, TMODE_LM, B, T, err))) return rc;
    memcpy(m->tok, tokens, N * sizeof(int32_t));
    memcpy(m->tgt, targets, N * sizeof(int32_t));
    double wsum = 0;
    for (size_t n = 0; n < N; n++) {
        m->wgt[n] = weights ? weights[n] : 1.0f;
        if (targets[n] >= 0) wsum += m->wgt[n];
    }
    m->wsum = wsum;

    trunk_fwd(m);
    const mope_train_config *c = &m->cfg;
    tl_linear_fwd(m->gemm_pool, m->a.logits, m->a.xf, m->w.out, (int)N, c->n_embd, c->n_vocab, false); /* [N, V] */
    tlora_fwd(m, c->n_layer * TL_NLIN, m->a.logits, m->a.xf, (int)N);
    double sum = tl_ce_fwd(m->pool, m->a.lse, m->a.nll, m->a.logits, m->tgt, m->wgt, (int)N, c->n_vocab);
    float l = wsum > 0 ? (float)(sum / wsum) : 0.0f;
    if (!isfinite(l)) return mope_error_set(err, MOPE_ESTATE, "forward: loss is not finite (%g)", (double)l);
    m->mode = TMODE_LM;
    if (loss) *loss = l;
    return 0;
}

const float *mope_train_model_nll(const mope_train_model *m) { return m->mode == TMODE_LM ? m->a.nll : NULL; }
const float *mope_train_model_logits(const mope_train_model *m) {
    return m->mode == TMODE_LM ? m->a.logits : NULL;
}

int mope_train_model_backward(mope_train_model *m, float scale, mope_error *err) {
    if (!m || m->mode != TMODE_LM)
        return mope_error_set(err, MOPE_ESTATE, "backward without a language-model forward before it");
    if (!isfinite(scale)) return mope_error_set(err, MOPE_EINVAL, "backward: scale %g is not finite", (double)scale);
    const mope_train_config *c = &m->cfg;
    int N = m->B * m->T;
    float coef = m->wsum > 0 ? (float)(scale / m->wsum) : 0.0f;
    tl_ce_bwd(m->pool, m->a.logits, m->a.lse, m->tgt, m->wgt, N, c->n_vocab, coef); /* dlogits */
    tl_linear_bwd(m->gemm_pool, m->d.dxn, m->lora ? NULL : m->g.out, m->a.logits, m->a.xf, m->w.out, N, c->n_embd,
                  c->n_vocab, false); /* dxf */
    tlora_bwd(m, c->n_layer * TL_NLIN, m->d.dxn, m->a.logits, m->a.xf, N);
    trunk_bwd(m);
    m->mode = TMODE_NONE; /* logits were overwritten */
    return 0;
}

/* ---- value head ---- */

int mope_train_model_forward_value(mope_train_model *m, const int32_t *tokens, const int32_t *lengths, int B, int T,
                                   float *scores, mope_error *err) {
    if (!m || !lengths || !scores) return mope_error_set(err, MOPE_EINVAL, "forward_value: NULL argument");
    if (!m->cfg.value_head) return mope_error_set(err, MOPE_EINVAL, "forward_value: the model has no value head");
    int rc = check_shape(m, B, T, err);
    if (rc) return rc;
    if ((rc = check_tokens(m, tokens, (size_t)B * T, err))) return rc;
    for (int b = 0; b < B; b++)
        if (lengths[b] < 1 || lengths[b] > T)
            return mope_error_set(err, MOPE_EINVAL, "length %d of sequence %d is outside [1, %d]", (int)lengths[b],
                                  b, T);
    m->mode = TMODE_NONE;
    if ((rc = tm_prepare(m, TMODE_VALUE, B, T, err))) return rc;
    memcpy(m->tok, tokens, (size_t)B * T * sizeof(int32_t));
    memcpy(m->len, lengths, (size_t)B * sizeof(int32_t));
    trunk_fwd(m);
    int C = m->cfg.n_embd;
    for (int b = 0; b < B; b++) {
        const float *h = m->a.xf + ((size_t)b * T + lengths[b] - 1) * C;
        double s = m->w.vh_b[0];
        for (int i = 0; i < C; i++) s += (double)m->w.vh_w[i] * h[i];
        scores[b] = (float)s;
        if (!isfinite(scores[b]))
            return mope_error_set(err, MOPE_ESTATE, "forward_value: score of sequence %d is not finite", b);
    }
    m->mode = TMODE_VALUE;
    return 0;
}

int mope_train_model_backward_value(mope_train_model *m, const float *dscores, mope_error *err) {
    if (!m || m->mode != TMODE_VALUE)
        return mope_error_set(err, MOPE_ESTATE, "backward_value without a value forward before it");
    if (!dscores) return mope_error_set(err, MOPE_EINVAL, "backward_value: dscores is NULL");
    for (int b = 0; b < m->B; b++)
        if (!isfinite(dscores[b]))
            return mope_error_set(err, MOPE_EINVAL, "backward_value: dscores[%d] is not finite", b);
    int C = m->cfg.n_embd, T = m->T;
    memset(m->d.dxn, 0, (size_t)m->B * T * C * sizeof(float));
    for (int b = 0; b < m->B; b++) {
        size_t row = (size_t)b * T + m->len[b] - 1;
        const float *h = m->a.xf + row * C;
        float *dh = m->d.dxn + row * C, ds = dscores[b];
        for (int i = 0; i < C; i++) dh[i] = ds * m->w.vh_w[i];
        if (m->lora) continue; /* frozen with the rest of the base */
        for (int i = 0; i < C; i++) m->g.vh_w[i] += ds * h[i];
        m->g.vh_b[0] += ds;
    }
    trunk_bwd(m);
    m->mode = TMODE_NONE;
    return 0;
}

/* ---- bare hidden states ---- */

const float *mope_train_model_forward_hidden(mope_train_model *m, const int32_t *tokens, int B, int T,
                                             mope_error *err) {
    if (!m) {
        mope_error_set(err, MOPE_EINVAL, "forward_hidden: model is NULL");
        return NULL;
    }
    if (check_shape(m, B, T, err) || check_tokens(m, tokens, (size_t)B * T, err)) return NULL;
    m->mode = TMODE_NONE;
    if (tm_prepare(m, TMODE_HIDDEN, B, T, err)) return NULL;
    memcpy(m->tok, tokens, (size_t)B * T * sizeof(int32_t));
    trunk_fwd(m);
    m->mode = TMODE_HIDDEN;
    return m->a.xf;
}

int mope_train_model_backward_hidden(mope_train_model *m, const float *dhidden, mope_error *err) {
    if (!m || m->mode != TMODE_HIDDEN)
        return mope_error_set(err, MOPE_ESTATE, "backward_hidden without a forward_hidden before it");
    size_t n = (size_t)m->B * m->T * m->cfg.n_embd;
    if (!dhidden) return mope_error_set(err, MOPE_EINVAL, "backward_hidden: dhidden is NULL");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dhidden[i]))
            return mope_error_set(err, MOPE_EINVAL, "backward_hidden: dhidden[%zu] is not finite", i);
    memcpy(m->d.dxn, dhidden, n * sizeof(float));
    trunk_bwd(m);
    m->mode = TMODE_NONE;
    return 0;
}
