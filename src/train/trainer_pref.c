/* Preference objectives (DPO, Bradley-Terry reward models), batched
 * log-probabilities and scores, and the padded batch layout they share
 * with the LM trainers. */
#include <math.h>
#include <stdlib.h>

#include "train/trainer_internal.h"

/* log(1 + exp(x)) without overflow. */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

double mope_dpo_loss(double beta, double lp_c, double lp_r, double ref_c, double ref_r, double *dlp_c) {
    double z = beta * ((lp_c - ref_c) - (lp_r - ref_r));
    /* d/dz -log sigmoid(z) = -sigmoid(-z) */
    if (dlp_c) *dlp_c = -beta * sigmoid(-z);
    return softplus(-z);
}

double mope_bt_loss(double r_c, double r_r, double *dr_c) {
    double d = r_c - r_r;
    if (dr_c) *dr_c = -sigmoid(-d);
    return softplus(-d);
}

int tr_buf_init(tr_buf *b, int max_rows, int n_ctx, mope_error *err) {
    memset(b, 0, sizeof *b);
    size_t n = (size_t)max_rows * (size_t)n_ctx;
    b->tokens = malloc(n * sizeof(int32_t));
    b->targets = malloc(n * sizeof(int32_t));
    b->weights = malloc(n * sizeof(float));
    b->lengths = malloc((size_t)max_rows * sizeof(int32_t));
    b->max_rows = max_rows;
    b->n_ctx = n_ctx;
    if (!b->tokens || !b->targets || !b->weights || !b->lengths) {
        tr_buf_free(b);
        return mope_error_set(err, MOPE_ENOMEM, "cannot allocate batches of %d x %d tokens", max_rows, n_ctx);
    }
    return 0;
}

void tr_buf_free(tr_buf *b) {
    free(b->tokens);
    free(b->targets);
    free(b->weights);
    free(b->lengths);
    memset(b, 0, sizeof *b);
}

int64_t tr_buf_fill(tr_buf *b, const mope_seq *const *s, int n, const float *coef, int *T) {
    int t_max = 1;
    for (int i = 0; i < n; i++) t_max = s[i]->len > t_max ? s[i]->len : t_max;
    int64_t n_targets = 0;
    for (int i = 0; i < n; i++) {
        int32_t *tok = b->tokens + (size_t)i * t_max, *tgt = b->targets + (size_t)i * t_max;
        float *w = b->weights + (size_t)i * t_max;
        const mope_seq *q = s[i];
        for (int t = 0; t < t_max; t++) {
            /* padding repeats the last token: it is never a target and,
             * attention being causal, never seen by the real positions */
            tok[t] = t < q->len ? q->tokens[t] : q->tokens[q->len - 1];
            bool on = t >= q->prompt_len - 1 && t < q->len - 1;
            tgt[t] = on ? q->tokens[t + 1] : -1;
            w[t] = on && coef ? coef[i] : 0.0f;
            n_targets += on;
        }
        b->lengths[i] = q->len;
    }
    *T = t_max;
    return n_targets;
}

/* Sums the per-position NLL of each row's response. */
static void row_nll(const mope_train_model *m, const tr_buf *b, int n, int T, double *out) {
    const float *nll = mope_train_model_nll(m);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < T; t++)
            if (b->targets[(size_t)i * T + t] >= 0) s += nll[(size_t)i * T + t];
        out[i] = s;
    }
}

int mope_trainer_seq_logp(mope_train_model *m, const mope_seq *const *seqs, int64_t n, int batch, double *out,
                          mope_error *err) {
    const mope_train_config *c = mope_train_model_config(m);
    if (batch < 1) batch = 1;
    tr_buf b;
    int rc = tr_buf_init(&b, batch, c->n_ctx, err);
    for (int64_t i0 = 0; !rc && i0 < n; i0 += batch) {
        int nb = (int)(n - i0 < batch ? n - i0 : batch), T;
        for (int i = 0; i < nb && !rc; i++)
            if (seqs[i0 + i]->len > c->n_ctx)
                rc = mope_error_set(err, MOPE_ERANGE, "sequence of %d tokens exceeds the context %d",
                                    (int)seqs[i0 + i]->len, c->n_ctx);
        if (rc) break;
        tr_buf_fill(&b, seqs + i0, nb, NULL, &T);
        float loss;
        rc = mope_train_model_forward(m, b.tokens, b.targets, NULL, nb, T, &loss, err);
        if (rc) break;
        row_nll(m, &b, nb, T, out + i0);
        for (int i = 0; i < nb; i++) out[i0 + i] = -out[i0 + i];
    }
    tr_buf_free(&b);
    return rc;
}

int mope_trainer_seq_score(mope_train_model *m, const mope_seq *const *seqs, int64_t n, int batch, float *out,
                           mope_error *err) {
    const mope_train_config *c = mope_train_model_config(m);
    if (!c->value_head) return mope_error_set(err, MOPE_EINVAL, "the model has no value head (not a reward model)");
    if (batch < 1) batch = 1;
    tr_buf b;
    int rc = tr_buf_init(&b, batch, c->n_ctx, err);
    for (int64_t i0 = 0; !rc && i0 < n; i0 += batch) {
        int nb = (int)(n - i0 < batch ? n - i0 : batch), T;
        for (int i = 0; i < nb && !rc; i++)
            if (seqs[i0 + i]->len > c->n_ctx)
                rc = mope_error_set(err, MOPE_ERANGE, "sequence of %d tokens exceeds the context %d",
                                    (int)seqs[i0 + i]->len, c->n_ctx);
        if (rc) break;
        tr_buf_fill(&b, seqs + i0, nb, NULL, &T);
        rc = mope_train_model_forward_value(m, b.tokens, b.lengths, nb, T, out + i0, err);
    }
    tr_buf_free(&b);
    return rc;
}

#define MAX_PAIRS 4096

int tr_dpo_micro(mope_train_model *m, tr_buf *b, const mope_pref_pair *const *pairs, const double *ref, int n,
                 double beta, int n_total, tr_step_out *out, mope_error *err) {
    if (n > MAX_PAIRS / 2) return mope_error_set(err, MOPE_EINVAL, "dpo: micro-batch of %d pairs is too large", n);
    const mope_seq *rows[MAX_PAIRS] = {0};
    double nll[MAX_PAIRS];
    float coef[MAX_PAIRS / 2];
    for (int i = 0; i < n; i++) {
        rows[i] = &pairs[i]->chosen;
        rows[n + i] = &pairs[i]->rejected;
        out->tokens += pairs[i]->chosen.len + pairs[i]->rejected.len;
    }
    /* 1: log-probs of both responses under the current model */
    int T;
    tr_buf_fill(b, rows, 2 * n, NULL, &T);
    float l;
    int rc = mope_train_model_forward(m, b->tokens, b->targets, NULL, 2 * n, T, &l, err);
    if (rc) return rc;
    row_nll(m, b, 2 * n, T, nll);
    for (int i = 0; i < n; i++) {
        double g;
        double loss = mope_dpo_loss(beta, -nll[i], -nll[n + i], ref[2 * i], ref[2 * i + 1], &g);
        double z = beta * ((-nll[i] - ref[2 * i]) - (-nll[n + i] - ref[2 * i + 1]));
        if (!isfinite(loss)) return mope_error_set(err, MOPE_ESTATE, "dpo loss is not finite");
        out->loss += loss;
        out->correct += z > 0;
        out->margin += z / beta;
        /* d loss / d NLL_c = -g >= 0 and d loss / d NLL_r = g: per-sequence
         * weights on a masked LM loss, averaged over the step's pairs */
        coef[i] = (float)(-g / n_total);
    }
    /* 2 and 3: weighted LM backward, + on chosen, - on rejected.  With
     * weights w, forward's loss is sum w nll / sum w, so scale = +-sum w. */
    for (int side = 0; side < 2; side++) {
        int64_t n_t = tr_buf_fill(b, rows + side * n, n, coef, &T);
        double wsum = 0;
        for (size_t k = 0; k < (size_t)n * T; k++) wsum += b->weights[k];
        if (n_t == 0 || wsum <= 0) continue;
        rc = mope_train_model_forward(m, b->tokens, b->targets, b->weights, n, T, &l, err);
        if (!rc) rc = mope_train_model_backward(m, (float)(side == 0 ? wsum : -wsum), err);
        if (rc) return rc;
    }
    return 0;
}

int tr_rm_micro(mope_train_model *m, tr_buf *b, const mope_pref_pair *const *pairs, int n, int n_total,
                tr_step_out *out, mope_error *err) {
    if (n > MAX_PAIRS / 2) return mope_error_set(err, MOPE_EINVAL, "rm: micro-batch of %d pairs is too large", n);
    const mope_seq *rows[MAX_PAIRS] = {0};
    float scores[MAX_PAIRS], dscores[MAX_PAIRS];
    for (int i = 0; i < n; i++) {
        rows[i] = &pairs[i]->chosen;
        rows[n + i] = &pairs[i]->rejected;
        out->tokens += pairs[i]->chosen.len + pairs[i]->rejected.len;
    }
    int T;
    tr_buf_fill(b, rows, 2 * n, NULL, &T);
    int rc = mope_train_model_forward_value(m, b->tokens, b->lengths, 2 * n, T, scores, err);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        double g, loss = mope_bt_loss(scores[i], scores[n + i], &g);
        if (!isfinite(loss)) return mope_error_set(err, MOPE_ESTATE, "reward-model loss is not finite");
        out->loss += loss;
        out->correct += scores[i] > scores[n + i];
        out->margin += scores[i] - scores[n + i];
        dscores[i] = (float)(g / n_total);
        dscores[n + i] = (float)(-g / n_total);
    }
    return mope_train_model_backward_value(m, dscores, err);
}

int tr_rm_eval(mope_train_model *m, const mope_dataset *d, const int64_t *idx, int64_t n, int batch, float *acc,
               float *loss, mope_error *err) {
    if (n == 0) {
        *acc = -1;
        *loss = 0;
        return 0;
    }
    const mope_seq **rows = calloc((size_t)n * 2, sizeof *rows);
    float *s = malloc((size_t)n * 2 * sizeof *s);
    int rc = 0;
    if (!rows || !s) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int64_t i = 0; !rc && i < n; i++) {
        rows[2 * i] = &d->pairs[idx[i]].chosen;
        rows[2 * i + 1] = &d->pairs[idx[i]].rejected;
    }
    if (!rc) rc = mope_trainer_seq_score(m, rows, 2 * n, 2 * batch, s, err);
    if (!rc) {
        double right = 0, l = 0;
        for (int64_t i = 0; i < n; i++) {
            right += s[2 * i] > s[2 * i + 1];
            l += mope_bt_loss(s[2 * i], s[2 * i + 1], NULL);
        }
        *acc = (float)(right / (double)n);
        *loss = (float)(l / (double)n);
    }
    free(rows);
    free(s);
    return rc;
}

mope_train_model *mope_trainer_add_value_head(mope_train_model *base, uint64_t seed, mope_error *err) {
    if (!base) {
        mope_error_set(err, MOPE_EINVAL, "add_value_head: NULL model");
        return NULL;
    }
    mope_train_config c = *mope_train_model_config(base);
    if (c.value_head) return base;
    c.value_head = true;
    mope_train_model *m = mope_train_model_new(&c, mope_train_model_n_threads(base), err);
    if (!m) {
        mope_train_model_free(base);
        return NULL;
    }
    mope_train_model_init_random(m, seed);
    float *dst = mope_train_model_params(m);
    const float *src = mope_train_model_params(base);
    for (int i = 0; i < mope_train_model_n_tensors(base); i++) {
        const mope_train_tensor *t = mope_train_model_tensor(base, i);
        const mope_train_tensor *u = mope_train_model_find(m, t->name);
        if (!u || u->n != t->n) {
            mope_error_set(err, MOPE_ESTATE, "add_value_head: tensor %s has no match", t->name);
            mope_train_model_free(m);
            mope_train_model_free(base);
            return NULL;
        }
        memcpy(dst + u->offset, src + t->offset, t->n * sizeof(float));
    }
    mope_train_model_free(base);
    return m;
}
