/* Reward models on the inference engine, Bradley-Terry normalisation and
 * preference utility. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mope/reward.h"

struct mope_reward_model {
    mope_model *model;
    mope_kv *kv;
    mope_pool *pool;
    int n_batch, C;
    float *vh_w, vh_b;
    mope_row *rows;
    int rows_cap;
    float *hid; /* n_batch x C */
};

/* The value head as the trainer writes it: C weights and one bias, F32. */
static int read_head(const mope_gguf *g, int C, float **w, float *b, mope_error *err) {
    const mope_gguf_tensor *tw = mope_gguf_find_tensor(g, "mope.value_head.weight");
    const mope_gguf_tensor *tb = mope_gguf_find_tensor(g, "mope.value_head.bias");
    if (!tw || !tb)
        return mope_error_set(err, MOPE_EFORMAT,
                              "not a reward model: tensors mope.value_head.weight / .bias are missing");
    if (tw->type != MOPE_TYPE_F32 || tb->type != MOPE_TYPE_F32)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "reward value head must be F32");
    if (tw->n_elements != C || tb->n_elements != 1)
        return mope_error_set(err, MOPE_EFORMAT, "value head has %lld weights and %lld biases; expected %d and 1",
                              (long long)tw->n_elements, (long long)tb->n_elements, C);
    if (!(*w = mope_alloc((size_t)C, sizeof(float)))) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    memcpy(*w, tw->data, sizeof(float) * (size_t)C);
    memcpy(b, tb->data, sizeof(float));
    for (int i = 0; i < C; i++)
        if (!isfinite((*w)[i])) return mope_error_set(err, MOPE_EFORMAT, "value head holds a non-finite value");
    if (!isfinite(*b)) return mope_error_set(err, MOPE_EFORMAT, "value head bias is not finite");
    return 0;
}

mope_reward_model *mope_reward_from_gguf(mope_gguf *g, bool take_ownership, int n_batch, int n_ctx,
                                         mope_pool *pool, mope_error *err) {
    if (!g || n_batch < 1 || n_ctx < 0) {
        mope_error_set(err, MOPE_EINVAL, "reward model: bad arguments (batch %d, n_ctx %d)", n_batch, n_ctx);
        if (g && take_ownership) mope_gguf_close(g);
        return NULL;
    }
    mope_reward_model *rm = calloc(1, sizeof *rm);
    if (!rm) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (take_ownership) mope_gguf_close(g);
        return NULL;
    }
    rm->pool = pool;
    rm->n_batch = n_batch;
    const mope_gguf_tensor *te = mope_gguf_find_tensor(g, "token_embd.weight");
    /* head first, so a plain language model is reported as "not a reward
     * model" instead of loading and scoring garbage */
    if (!te || te->ne[0] < 1 || te->ne[0] > (1 << 20) || read_head(g, (int)te->ne[0], &rm->vh_w, &rm->vh_b, err)) {
        if (!te) mope_error_set(err, MOPE_EFORMAT, "reward model: missing tensor token_embd.weight");
        else if (te->ne[0] < 1 || te->ne[0] > (1 << 20))
            mope_error_set(err, MOPE_EFORMAT, "reward model: bad embedding width");
        if (take_ownership) mope_gguf_close(g);
        goto fail;
    }
    if (!(rm->model = mope_model_from_gguf(g, take_ownership, err))) goto fail;
    const mope_hparams *hp = mope_model_hparams(rm->model);
    rm->C = hp->n_embd;
    if (!(rm->kv = mope_kv_new(rm->model, n_batch, n_ctx > 0 ? n_ctx : hp->n_ctx_train, err))) goto fail;
    if (!(rm->hid = mope_alloc((size_t)n_batch * rm->C, sizeof(float)))) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto fail;
    }
    return rm;
fail:
    mope_reward_free(rm);
    return NULL;
}

mope_reward_model *mope_reward_load(const char *path, int n_batch, int n_ctx, mope_pool *pool, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return NULL;
    mope_reward_model *rm = mope_reward_from_gguf(g, true, n_batch, n_ctx, pool, err);
    if (!rm) mope_error_prefix(err, "loading reward model %s", path);
    return rm;
}

void mope_reward_free(mope_reward_model *rm) {
    if (!rm) return;
    mope_free(rm->vh_w);
    mope_free(rm->hid);
    free(rm->rows);
    mope_kv_free(rm->kv);
    mope_model_free(rm->model);
    free(rm);
}

mope_model *mope_reward_engine(mope_reward_model *rm) { return rm->model; }

int mope_reward_score_tokens(mope_reward_model *rm, const int32_t *const *tokens, const int32_t *lens, int n,
                             float *out, mope_error *err) {
    if (!rm || n < 0 || (n > 0 && (!tokens || !lens || !out)))
        return mope_error_set(err, MOPE_EINVAL, "reward score: bad arguments");
    int n_ctx = mope_kv_n_ctx(rm->kv);
    for (int i = 0; i < n; i++) {
        if (!tokens[i] || lens[i] < 1)
            return mope_error_set(err, MOPE_EINVAL, "reward score: sequence %d is empty", i);
        if (lens[i] > n_ctx)
            return mope_error_set(err, MOPE_ERANGE, "reward score: sequence %d has %d tokens; the context is %d", i,
                                  (int)lens[i], n_ctx);
    }
    for (int i0 = 0; i0 < n; i0 += rm->n_batch) {
        int nb = n - i0 < rm->n_batch ? n - i0 : rm->n_batch, nr = 0;
        for (int i = 0; i < nb; i++) nr += lens[i0 + i];
        if (nr > rm->rows_cap) {
            mope_row *r = realloc(rm->rows, sizeof(mope_row) * (size_t)nr);
            if (!r) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
            rm->rows = r;
            rm->rows_cap = nr;
        }
        nr = 0;
        for (int i = 0; i < nb; i++) {
            mope_kv_clear_seq(rm->kv, i);
            const int32_t *t = tokens[i0 + i];
            for (int j = 0; j < lens[i0 + i]; j++)
                rm->rows[nr++] = (mope_row){.seq = i, .token = t[j], .pos = j, .adapter = -1,
                                            .want_logits = j == lens[i0 + i] - 1};
        }
        int rc = mope_model_forward_ex(rm->model, rm->kv, rm->rows, nr, NULL, rm->hid, rm->pool, err);
        if (rc) return mope_error_prefix(err, "reward score");
        for (int i = 0; i < nb; i++) {
            const float *h = rm->hid + (size_t)i * rm->C;
            double s = rm->vh_b;
            for (int c = 0; c < rm->C; c++) s += (double)rm->vh_w[c] * h[c];
            out[i0 + i] = (float)s;
        }
    }
    return 0;
}

int mope_reward_score_seqs(mope_reward_model *rm, const mope_seq *const *seqs, int n, float *out, mope_error *err) {
    if (!rm || n < 0 || (n > 0 && (!seqs || !out))) return mope_error_set(err, MOPE_EINVAL, "reward score: bad arguments");
    const int32_t **t = malloc(sizeof(*t) * (size_t)(n ? n : 1));
    int32_t *l = malloc(sizeof(*l) * (size_t)(n ? n : 1));
    int rc = 0;
    if (!t || !l) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        if (!seqs[i]) rc = mope_error_set(err, MOPE_EINVAL, "reward score: sequence %d is NULL", i);
        else {
            t[i] = seqs[i]->tokens;
            l[i] = seqs[i]->len;
        }
    }
    if (!rc) rc = mope_reward_score_tokens(rm, t, l, n, out, err);
    free(t);
    free(l);
    return rc;
}

int mope_reward_score_text(mope_reward_model *rm, const mope_dataset_opts *o, const char *prompt,
                           const char *response, float *out, mope_error *err) {
    if (!rm || !o || !prompt || !response || !out)
        return mope_error_set(err, MOPE_EINVAL, "reward score: bad arguments");
    mope_seq s;
    int rc = mope_dataset_make_seq(o, prompt, response, &s, NULL, err);
    if (rc) return rc;
    const mope_seq *ps = &s;
    rc = mope_reward_score_seqs(rm, &ps, 1, out, err);
    mope_seq_free(&s);
    return rc;
}

double mope_reward_bt_normalise(double R, double R_ref) {
    double d = R - R_ref;
    if (d >= 0) return 1.0 / (1.0 + exp(-d));
    double e = exp(d);
    return e / (1.0 + e);
}

int mope_reward_utility(const double *r, const double *weights, int n, double *out, mope_error *err) {
    if (!r || !out || n < 1) return mope_error_set(err, MOPE_EINVAL, "utility: need at least one reward");
    double s = 0, sw = 0;
    for (int i = 0; i < n; i++) {
        double a = weights ? weights[i] : 1.0;
        if (!isfinite(r[i])) return mope_error_set(err, MOPE_EINVAL, "utility: reward %d is not finite", i);
        if (!isfinite(a) || a < 0) return mope_error_set(err, MOPE_EINVAL, "utility: weight %d is %g", i, a);
        s += a * r[i];
        sw += a;
    }
    if (!(sw > 0)) return mope_error_set(err, MOPE_EINVAL, "utility: the weights sum to zero");
    *out = s / sw;
    return 0;
}

int mope_reward_preference_utility(mope_reward_model *const *rms, int n, const mope_dataset_opts *o,
                                   const char *prompt, const char *response, const char *reference,
                                   const float *R_ref, const double *weights, double *utility, double *r_out,
                                   mope_error *err) {
    if (!rms || n < 1 || !o || !prompt || !response || (!reference && !R_ref) || !utility)
        return mope_error_set(err, MOPE_EINVAL, "preference utility: bad arguments");
    mope_seq s[2];
    memset(s, 0, sizeof s);
    double *r = malloc(sizeof(double) * (size_t)n);
    if (!r) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int rc = mope_dataset_make_seq(o, prompt, response, &s[0], NULL, err);
    if (!rc && !R_ref) rc = mope_dataset_make_seq(o, prompt, reference, &s[1], NULL, err);
    const mope_seq *ps[2] = {&s[0], &s[1]};
    for (int i = 0; i < n && !rc; i++) {
        float R[2];
        if (!rms[i]) {
            rc = mope_error_set(err, MOPE_EINVAL, "preference utility: reward model %d is NULL", i);
            break;
        }
        /* response and reference go through one forward call */
        if ((rc = mope_reward_score_seqs(rms[i], ps, R_ref ? 1 : 2, R, err))) break;
        if (R_ref) R[1] = R_ref[i];
        if (!isfinite(R[0]) || !isfinite(R[1])) {
            rc = mope_error_set(err, MOPE_ESTATE, "preference utility: reward model %d gave a non-finite score", i);
            break;
        }
        r[i] = mope_reward_bt_normalise(R[0], R[1]);
    }
    if (!rc) rc = mope_reward_utility(r, weights, n, utility, err);
    if (!rc && r_out) memcpy(r_out, r, sizeof(double) * (size_t)n);
    mope_seq_free(&s[0]);
    mope_seq_free(&s[1]);
    free(r);
    return rc ? mope_error_prefix(err, "preference utility") : 0;
}
