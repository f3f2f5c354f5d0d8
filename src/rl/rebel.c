/* The REBEL objective on the PCM: see mope/rebel.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mope/rebel.h"

void mope_rebel_opts_init(mope_rebel_opts *o) {
    memset(o, 0, sizeof *o);
    o->eta = 1.0;
    o->micro_batch = 8;
    mope_adamw_config_init(&o->adamw);
    o->adamw.lr = 1e-4f;
    o->adamw.min_lr = 1e-4f;
    o->adamw.weight_decay = 0.0f;
}

int mope_rebel_seq_logp(const float *w, const float *pk, int L, int K, double *logp, float *dz, mope_error *err) {
    double s = 0;
    for (int t = 0; t < L; t++) {
        const float *wt = w + (size_t)t * K, *pt = pk + (size_t)t * K;
        double p = 0;
        for (int k = 0; k < K; k++) p += (double)wt[k] * pt[k];
        if (!(p > 0)) return mope_error_set(err, MOPE_ERANGE, "rebel: token %d has probability 0 under the mixture", t);
        s += log(p);
        if (dz)
            for (int k = 0; k < K; k++) dz[(size_t)t * K + k] = (float)(wt[k] * (pt[k] / p - 1.0));
    }
    if (logp) *logp = s;
    return 0;
}

int mope_rebel_seq_logp_geo(const float *w, const float *lpk, const int32_t *y, int L, int K, int32_t V,
                            double *logp, float *dz, mope_error *err) {
    double s = 0;
    for (int t = 0; t < L; t++) {
        const float *wt = w + (size_t)t * K, *lt = lpk + (size_t)t * K * V;
        const float *rows[MOPE_PCM_MAX_K] = {0};
        double shift[MOPE_PCM_MAX_K] = {0}, wd[MOPE_PCM_MAX_K] = {0}, E[MOPE_PCM_MAX_K] = {0};
        double sy = 0, g[MOPE_PCM_MAX_K], gbar = 0;
        for (int k = 0; k < K; k++) {
            rows[k] = lt + (size_t)k * V;
            wd[k] = wt[k];
            sy += wd[k] * rows[k][y[t]];
        }
        double lz = mope_mix_geo_moments(rows, shift, wd, K, V, E);
        if (!isfinite(lz) || !isfinite(sy))
            return mope_error_set(err, MOPE_ERANGE,
                                  "rebel: token %d: a recorded log-probability is not finite "
                                  "(or the token has no mass)",
                                  t);
        s += sy - lz;
        if (!dz) continue;
        for (int k = 0; k < K; k++) {
            g[k] = rows[k][y[t]] - E[k];
            gbar += wd[k] * g[k];
        }
        for (int k = 0; k < K; k++) dz[(size_t)t * K + k] = (float)(wd[k] * (g[k] - gbar));
    }
    if (logp) *logp = s;
    return 0;
}

double mope_rebel_pair_loss(double eta, double lp, double lp_old, double r, double lp2, double lp2_old, double r2,
                            double *dlp) {
    double d = ((lp - lp_old) - (lp2 - lp2_old)) / eta - (r - r2);
    if (dlp) *dlp = 2.0 * d / eta;
    return d * d;
}

double mope_rebel_kl_uniform(const float *w, int K, double coef, float *dz) {
    double kl = 0;
    for (int k = 0; k < K; k++)
        if (w[k] > 0) kl += w[k] * log((double)K * w[k]);
    if (dz)
        for (int k = 0; k < K; k++)
            if (w[k] > 0) dz[k] += (float)(coef * w[k] * (log((double)K * w[k]) - kl));
    return kl;
}

double mope_rebel_kl_prior(const float *w, const float *q, int K, double coef, float *dz) {
    double kl = 0;
    for (int k = 0; k < K; k++)
        if (q[k] > 0) kl += q[k] * log((double)q[k] / fmax((double)w[k], 1e-30));
    if (dz)
        for (int k = 0; k < K; k++) dz[k] += (float)(coef * ((double)w[k] - q[k]));
    return kl;
}

static int check_sample(const mope_rebel_sample *s, int K, int n_ctx, int32_t n_vocab, bool geo, int i,
                        mope_error *err) {
    if (!s->tokens || !s->expert_probs || s->prompt_len < 1 || s->n_resp < 1)
        return mope_error_set(err, MOPE_EINVAL, "rebel: sample %d is empty or has no prompt / response", i);
    if (geo && !s->expert_logp)
        return mope_error_set(err, MOPE_EINVAL,
                              "rebel: sample %d has no recorded distributions, which the geometric rule needs for "
                              "its normaliser",
                              i);
    if (s->prompt_len + s->n_resp - 1 > n_ctx)
        return mope_error_set(err, MOPE_ERANGE, "rebel: sample %d needs %d PCM positions; the PCM context is %d", i,
                              s->prompt_len + s->n_resp - 1, n_ctx);
    for (int j = 0; j < s->prompt_len + s->n_resp; j++)
        if (s->tokens[j] < 0 || s->tokens[j] >= n_vocab)
            return mope_error_set(err, MOPE_EINVAL, "rebel: sample %d: token %d out of range", i, (int)s->tokens[j]);
    for (size_t j = 0; j < (size_t)s->n_resp * K; j++) {
        float v = s->expert_probs[j];
        if (!(v >= 0.0f && v <= 1.0f + 1e-5f))
            return mope_error_set(err, MOPE_EINVAL, "rebel: sample %d: expert probability %g outside [0, 1]", i, v);
    }
    if (!isfinite(s->logp_rollout) || !isfinite(s->reward))
        return mope_error_set(err, MOPE_EINVAL, "rebel: sample %d: rollout log-probability or reward not finite", i);
    if (s->prior) {
        double sum = 0;
        for (int k = 0; k < K; k++) {
            if (!(s->prior[k] >= 0.0f && s->prior[k] <= 1.0f))
                return mope_error_set(err, MOPE_EINVAL, "rebel: sample %d: prior weight %g outside [0, 1]", i,
                                      s->prior[k]);
            sum += s->prior[k];
        }
        if (fabs(sum - 1.0) > 1e-4)
            return mope_error_set(err, MOPE_EINVAL, "rebel: sample %d: prior weights sum to %g, not 1", i, sum);
    }
    return 0;
}

/* Forward (and with grad, backward) of the micro-batch of pairs [i0, i0+nb). */
static int micro(mope_pcm *p, const mope_rebel_pair *pairs, int i0, int nb, int n_total, int64_t n_tok,
                 const mope_rebel_opts *o, bool grad, mope_rebel_stats *st, int32_t **tok, float **w, float **dz,
                 size_t *cap, mope_error *err) {
    const int K = mope_pcm_n_experts(p), B = 2 * nb;
    const bool geo = mope_pcm_rule(p) == MOPE_MIX_GEOMETRIC;
    const int32_t V = mope_train_model_config(mope_pcm_trunk(p))->n_vocab;
    int T = 1;
    for (int i = 0; i < nb; i++) {
        const mope_rebel_sample *s[2] = {&pairs[i0 + i].y, &pairs[i0 + i].y2};
        for (int j = 0; j < 2; j++)
            if (s[j]->prompt_len + s[j]->n_resp - 1 > T) T = s[j]->prompt_len + s[j]->n_resp - 1;
    }
    size_t N = (size_t)B * T;
    if (N > *cap) {
        free(*tok);
        mope_free(*w);
        mope_free(*dz);
        *tok = malloc(sizeof(int32_t) * N);
        *w = mope_alloc(N * K, sizeof(float));
        *dz = mope_alloc(N * K, sizeof(float));
        *cap = (*tok && *w && *dz) ? N : 0;
        if (!*cap) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    /* padding after a sequence's end never reaches its positions (causal) */
    memset(*tok, 0, sizeof(int32_t) * N);
    for (int b = 0; b < B; b++) {
        const mope_rebel_sample *s = b < nb ? &pairs[i0 + b].y : &pairs[i0 + b - nb].y2;
        memcpy(*tok + (size_t)b * T, s->tokens, sizeof(int32_t) * (size_t)(s->prompt_len + s->n_resp - 1));
    }
    int rc = mope_pcm_forward(p, *tok, B, T, *w, err);
    if (rc) return rc;
    memset(*dz, 0, sizeof(float) * N * K);
    for (int i = 0; i < nb; i++) {
        const mope_rebel_sample *s[2] = {&pairs[i0 + i].y, &pairs[i0 + i].y2};
        double lp[2], r[2];
        int b[2] = {i, nb + i};
        for (int j = 0; j < 2; j++) {
            size_t off = ((size_t)b[j] * T + s[j]->prompt_len - 1) * K;
            float *d = grad ? *dz + off : NULL;
            if (geo)
                rc = mope_rebel_seq_logp_geo(*w + off, s[j]->expert_logp, s[j]->tokens + s[j]->prompt_len,
                                             s[j]->n_resp, K, V, &lp[j], d, err);
            else
                rc = mope_rebel_seq_logp(*w + off, s[j]->expert_probs, s[j]->n_resp, K, &lp[j], d, err);
            if (rc)
                return mope_error_prefix(err, "pair %d", i0 + i);
            r[j] = s[j]->reward - (s[j]->truncated ? o->length_penalty : 0.0);
            st->mean_logratio += (lp[j] - s[j]->logp_rollout) / (2.0 * n_total);
        }
        double dlp;
        double l = mope_rebel_pair_loss(o->eta, lp[0], s[0]->logp_rollout, r[0], lp[1], s[1]->logp_rollout, r[1], &dlp);
        st->rebel_loss += l / n_total;
        st->reward_gap += fabs(r[0] - r[1]) / n_total;
        for (int j = 0; j < 2; j++) {
            size_t off = ((size_t)b[j] * T + s[j]->prompt_len - 1) * K;
            double scale = (j == 0 ? dlp : -dlp) / n_total;
            for (int t = 0; t < s[j]->n_resp; t++) {
                float *d = *dz + off + (size_t)t * K;
                const float *wt = *w + off + (size_t)t * K;
                if (grad)
                    for (int k = 0; k < K; k++) d[k] = (float)(d[k] * scale);
                st->kl += mope_rebel_kl_uniform(wt, K, o->kl_coef / (double)n_tok, grad && o->kl_coef > 0 ? d : NULL) /
                          (double)n_tok;
                if (s[j]->prior)
                    st->prior_kl += mope_rebel_kl_prior(wt, s[j]->prior, K, o->prior_coef / (double)n_tok,
                                                        grad && o->prior_coef > 0 ? d : NULL) /
                                    (double)n_tok;
            }
        }
    }
    return grad ? mope_pcm_backward(p, *dz, err) : 0;
}

static int run(mope_pcm *p, const mope_rebel_pair *pairs, int n, const mope_rebel_opts *o, bool grad,
               mope_rebel_stats *st_out, mope_error *err) {
    mope_rebel_stats st;
    memset(&st, 0, sizeof st);
    if (!p || !pairs || n < 1 || !o) return mope_error_set(err, MOPE_EINVAL, "rebel: need a PCM and at least one pair");
    if (!(o->eta > 0) || !isfinite(o->eta) || !(o->kl_coef >= 0) || !isfinite(o->kl_coef) ||
        !(o->prior_coef >= 0) || !isfinite(o->prior_coef) || !(o->length_penalty >= 0) ||
        !isfinite(o->length_penalty) || o->micro_batch < 1)
        return mope_error_set(err, MOPE_EINVAL,
                              "rebel: bad options (eta %g, kl %g, prior kl %g, length penalty %g, micro-batch %d)",
                              o->eta, o->kl_coef, o->prior_coef, o->length_penalty, o->micro_batch);
    const bool geo = mope_pcm_rule(p) == MOPE_MIX_GEOMETRIC;
    const mope_train_config *c = mope_train_model_config(mope_pcm_trunk(p));
    const int K = mope_pcm_n_experts(p);
    for (int i = 0; i < n; i++) {
        int rc;
        if ((rc = check_sample(&pairs[i].y, K, c->n_ctx, c->n_vocab, geo, 2 * i, err)) ||
            (rc = check_sample(&pairs[i].y2, K, c->n_ctx, c->n_vocab, geo, 2 * i + 1, err)))
            return rc;
        st.n_tokens += pairs[i].y.n_resp + pairs[i].y2.n_resp;
    }
    int32_t *tok = NULL;
    float *w = NULL, *dz = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int i0 = 0; i0 < n && !rc; i0 += o->micro_batch) {
        int nb = n - i0 < o->micro_batch ? n - i0 : o->micro_batch;
        rc = micro(p, pairs, i0, nb, n, st.n_tokens, o, grad, &st, &tok, &w, &dz, &cap, err);
    }
    free(tok);
    mope_free(w);
    mope_free(dz);
    st.loss = st.rebel_loss + o->kl_coef * st.kl + o->prior_coef * st.prior_kl;
    if (st_out) *st_out = st;
    return rc;
}

int mope_rebel_eval(mope_pcm *p, const mope_rebel_pair *pairs, int n, const mope_rebel_opts *o,
                    mope_rebel_stats *st, mope_error *err) {
    return run(p, pairs, n, o, false, st, err);
}

int mope_rebel_accumulate(mope_pcm *p, const mope_rebel_pair *pairs, int n, const mope_rebel_opts *o,
                          mope_rebel_stats *st, mope_error *err) {
    return run(p, pairs, n, o, true, st, err);
}

int mope_rebel_step(mope_pcm *p, const mope_rebel_pair *pairs, int n, const mope_rebel_opts *o,
                    mope_rebel_stats *st, mope_error *err) {
    if (!p) return mope_error_set(err, MOPE_EINVAL, "rebel: NULL PCM");
    mope_rebel_stats s;
    mope_pcm_zero_grad(p);
    int rc = mope_rebel_accumulate(p, pairs, n, o, &s, err);
    if (!rc) rc = mope_pcm_apply(p, &o->adamw, &s.lr, &s.grad_norm, err);
    if (!rc) {
        s.step = mope_pcm_step_count(p);
        if (st) *st = s;
    } else {
        mope_pcm_zero_grad(p);
    }
    return rc;
}
