/* PCM trainer, loop half: iterations (rollouts, rewards, REBEL updates),
 * the AdamW state kept here so checkpoints can hold it, checkpoints, the
 * JSONL log and the run itself. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mope/io.h"
#include "rl/pcm_train_internal.h"

/* ---- optimizer: mope_pcm_apply's update, with moments we own ---- */

static int opt_apply(pt_ctx *c, float *lr_out, float *norm_out, mope_error *err) {
    mope_pcm *p = c->pcm;
    double norm = mope_pcm_grad_norm(p);
    *norm_out = (float)norm;
    if (!isfinite(norm)) {
        mope_pcm_zero_grad(p);
        return mope_error_set(err, MOPE_ESTATE, "non-finite PCM gradient (norm %g) at update %lld", norm,
                              (long long)c->step + 1);
    }
    mope_train_model *t = mope_pcm_trunk(p);
    float *gt = mope_train_model_grads(t), *pt = mope_train_model_params(t);
    float *hp = mope_pcm_head_params(p), *hg = mope_pcm_head_grads(p);
    const int K = mope_pcm_n_experts(p), C = mope_train_model_config(t)->n_embd;
    size_t nt = mope_train_model_n_params(t), nw = (size_t)K * C, nh = nw + (size_t)K;
    if (c->adamw.grad_clip > 0 && norm > c->adamw.grad_clip) {
        float s = (float)(c->adamw.grad_clip / norm);
        for (size_t i = 0; i < nt; i++) gt[i] *= s;
        for (size_t i = 0; i < nh; i++) hg[i] *= s;
    }
    float lr = mope_train_lr_at(&c->adamw, c->step);
    int64_t step1 = c->step + 1;
    for (int i = 0; i < mope_train_model_n_tensors(t); i++) {
        const mope_train_tensor *tt = mope_train_model_tensor(t, i);
        mope_train_adamw_update(pt + tt->offset, gt + tt->offset, c->adam_m + tt->offset, c->adam_v + tt->offset,
                                tt->n, lr, &c->adamw, tt->decay, step1);
    }
    mope_train_adamw_update(hp, hg, c->adam_m + nt, c->adam_v + nt, nw, lr, &c->adamw, true, step1);
    mope_train_adamw_update(hp + nw, hg + nw, c->adam_m + nt + nw, c->adam_v + nt + nw, (size_t)K, lr, &c->adamw,
                            false, step1);
    c->step++;
    *lr_out = lr;
    mope_pcm_zero_grad(p);
    return 0;
}

/* ---- checkpoints ---- */

#define CK "mope.pcm_train."

int pt_checkpoint_save(pt_ctx *c, const char *path, mope_error *err) {
    mope_gguf_writer *w = mope_gguf_writer_new();
    if (!w) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int rc = mope_pcm_to_gguf(c->pcm, w, c->tok, err);
    int64_t ne[1] = {(int64_t)c->n_opt};
    if (!rc) rc = mope_gguf_add_tensor(w, CK "adam_m", MOPE_TYPE_F32, 1, ne, c->adam_m, err);
    if (!rc) rc = mope_gguf_add_tensor(w, CK "adam_v", MOPE_TYPE_F32, 1, ne, c->adam_v, err);
    if (!rc && (mope_gguf_set_i64(w, CK "iteration", c->iteration) || mope_gguf_set_i64(w, CK "step", c->step) ||
                mope_gguf_set_arr(w, CK "rng", MOPE_GGUF_U64, c->rng.s, 4) ||
                mope_gguf_set_u64(w, CK "seed", c->o->seed) || mope_gguf_set_i64(w, CK "batch", c->o->batch) ||
                mope_gguf_set_i64(w, CK "n_prefs", c->n_prefs) || mope_gguf_set_i64(w, CK "n_prompts", c->n_prompts)))
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) rc = mope_gguf_writer_write(w, path, err);
    mope_gguf_writer_free(w);
    return rc ? mope_error_prefix(err, "writing checkpoint %s", path) : 0;
}

static int ck_int(const mope_gguf *g, const char *key, int64_t *v, mope_error *err) {
    if (mope_gguf_get_i64(g, key, v) != 0) return mope_error_set(err, MOPE_EFORMAT, "key %s missing or not an integer", key);
    return 0;
}

int pt_checkpoint_load(pt_ctx *c, const char *path, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return mope_error_prefix(err, "checkpoint");
    int rc = 0;
    int64_t it = 0, step = 0, batch = 0, np = 0, npr = 0;
    uint64_t seed = 0;
    if ((rc = ck_int(g, CK "iteration", &it, err)) || (rc = ck_int(g, CK "step", &step, err)) ||
        (rc = ck_int(g, CK "batch", &batch, err)) || (rc = ck_int(g, CK "n_prefs", &np, err)) ||
        (rc = ck_int(g, CK "n_prompts", &npr, err)))
        goto done;
    if (mope_gguf_get_u64(g, CK "seed", &seed) != 0) {
        rc = mope_error_set(err, MOPE_EFORMAT, "key " CK "seed missing");
        goto done;
    }
    if (seed != c->o->seed || batch != c->o->batch || np != c->n_prefs || npr != c->n_prompts) {
        rc = mope_error_set(err, MOPE_EINVAL,
                            "the checkpoint was made with seed %llu, batch %lld, %lld preferences and %lld prompts; "
                            "this run has seed %llu, batch %d, %d and %d: resume with the same options",
                            (unsigned long long)seed, (long long)batch, (long long)np, (long long)npr,
                            (unsigned long long)c->o->seed, c->o->batch, c->n_prefs, c->n_prompts);
        goto done;
    }
    if (it < 0 || step < 0) {
        rc = mope_error_set(err, MOPE_EFORMAT, "negative iteration or step");
        goto done;
    }
    mope_gguf_type et;
    uint64_t n = 0;
    const void *data;
    if (mope_gguf_get_arr(g, CK "rng", &et, &n, &data) != 0 || et != MOPE_GGUF_U64 || n != 4) {
        rc = mope_error_set(err, MOPE_EFORMAT, "key " CK "rng must be 4 u64");
        goto done;
    }
    memcpy(c->rng.s, data, sizeof c->rng.s);
    if (!(c->pcm = mope_pcm_from_gguf(g, c->n_threads, err))) {
        rc = err ? err->code : MOPE_EFORMAT;
        goto done;
    }
    mope_train_model *t = mope_pcm_trunk(c->pcm);
    size_t nt = mope_train_model_n_params(t);
    c->n_opt = nt + (size_t)mope_pcm_n_experts(c->pcm) * (mope_train_model_config(t)->n_embd + 1);
    const mope_gguf_tensor *tm = mope_gguf_find_tensor(g, CK "adam_m"), *tv = mope_gguf_find_tensor(g, CK "adam_v");
    if (!tm || !tv || tm->type != MOPE_TYPE_F32 || tv->type != MOPE_TYPE_F32 || tm->n_elements != (int64_t)c->n_opt ||
        tv->n_elements != (int64_t)c->n_opt) {
        rc = mope_error_set(err, MOPE_EFORMAT, "optimizer moments missing or not %zu F32 values", c->n_opt);
        goto done;
    }
    c->adam_m = mope_alloc(c->n_opt, sizeof(float));
    c->adam_v = mope_alloc(c->n_opt, sizeof(float));
    if (!c->adam_m || !c->adam_v) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(c->adam_m, tm->data, sizeof(float) * c->n_opt);
    memcpy(c->adam_v, tv->data, sizeof(float) * c->n_opt);
    c->iteration = it;
    c->step = step;
done:
    mope_gguf_close(g);
    return rc ? mope_error_prefix(err, "resuming from %s", path) : 0;
}

/* ---- log ---- */

/* Keeps the lines of an existing log up to iteration `upto` (a crash after
 * the last checkpoint must not leave iterations that are run again). */
static int log_trim(const char *path, int64_t upto, mope_error *err) {
    void *data = NULL;
    size_t len = 0;
    if (access(path, F_OK) != 0) return 0;
    int rc = mope_io_read_file(path, &data, &len, err);
    if (rc) return rc;
    mope_io_atomic *f = mope_io_atomic_open(path, err);
    if (!f) {
        free(data);
        return err ? err->code : MOPE_EIO;
    }
    char *t = data;
    for (char *p = t; !rc && p < t + len;) {
        char *nl = memchr(p, '\n', (size_t)(t + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(t + len - p);
        cJSON *o = cJSON_ParseWithLength(p, l);
        const cJSON *it = o ? cJSON_GetObjectItemCaseSensitive(o, "iteration") : NULL;
        /* the warm start's summary comes before every iteration: it stays */
        bool keep = (cJSON_IsNumber(it) && it->valuedouble <= (double)upto) ||
                    (o && (cJSON_GetObjectItemCaseSensitive(o, "warm_start") ||
                           cJSON_GetObjectItemCaseSensitive(o, "warm_target")));
        if (keep) {
            rc = mope_io_atomic_write(f, p, l, err);
            if (!rc) rc = mope_io_atomic_write(f, "\n", 1, err);
        }
        cJSON_Delete(o);
        p = nl ? nl + 1 : t + len;
    }
    free(data);
    if (rc) {
        mope_io_atomic_abort(f);
        return rc;
    }
    return mope_io_atomic_commit(f, err);
}

/* ---- one iteration ---- */

typedef struct iter_stats {
    double reward, utility, loss_before, loss_after, rebel_loss, kl, kl_prior, mean_len, trunc;
    int explored;        /* items whose second rollout was steered */
    double explore_gain; /* their mean utility(steered) - utility(partner) */
    double rollout_s, reward_s, update_s;
    float grad_norm, lr;
    int64_t tokens;
} iter_stats;

typedef struct pref_acc {
    int n, n_r;
    double reward, utility, w_tok;
    double w[MOPE_PCM_MAX_K];
} pref_acc;

static int iterate(pt_ctx *c, iter_stats *st, cJSON *log, mope_error *err) {
    const mope_pcm_train_opts *o = c->o;
    const int n = o->batch, NR = 2 * n, K = c->K, NC = c->b->n_choices;
    int *item_p = malloc(sizeof(int) * (size_t)n), *item_f = malloc(sizeof(int) * (size_t)n);
    const char **ins = malloc(sizeof(char *) * (size_t)NR), **prf = malloc(sizeof(char *) * (size_t)NR);
    mope_rollout *ro = calloc((size_t)NR, sizeof *ro);
    char **text = calloc((size_t)NR, sizeof(char *));
    double *util = calloc((size_t)NR, sizeof(double)), *rsum = calloc((size_t)NR, sizeof(double));
    int *rcount = calloc((size_t)NR, sizeof(int));
    double *rc_r = calloc((size_t)NR * NC, sizeof(double));
    mope_rebel_pair *pairs = malloc(sizeof *pairs * (size_t)n);
    pref_acc *acc = calloc((size_t)c->n_prefs, sizeof *acc);
    int *rp = malloc(sizeof(int) * (size_t)NR), *rf = malloc(sizeof(int) * (size_t)NR);
    float *wbuf = NULL;
    float *prior = malloc(sizeof(float) * (size_t)n * K);
    mope_rollout_explore *explore = malloc(sizeof *explore * (size_t)NR);
    char **itext = calloc((size_t)n, sizeof(char *));
    mope_pcm_infer *pi = NULL;
    memset(st, 0, sizeof *st);
    int rc = item_p && item_f && ins && prf && ro && text && util && rsum && rcount && rc_r && pairs && acc && rp &&
                     rf && prior && explore && itext
                 ? 0
                 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        item_f[i] = (int)((c->iteration * n + i) % c->n_prefs);
        item_p[i] = (int)mope_rng_below(&c->rng, (uint32_t)c->n_prompts);
        ins[2 * i] = ins[2 * i + 1] = c->prompt_text[item_p[i]];
        if (!(itext[i] = pt_item_text(c, item_f[i], &c->rng, err))) {
            rc = err ? err->code : MOPE_ENOMEM;
            break;
        }
        prf[2 * i] = prf[2 * i + 1] = itext[i];
        explore[2 * i] = explore[2 * i + 1] = (mope_rollout_explore){.expert = -1};
        pt_pref_target(c, item_f[i], prior + (size_t)i * K);
        /* no rng draw when exploration is off: runs stay as they were */
        if (o->explore > 0 && mope_rng_uniform(&c->rng) < o->explore) {
            int cand[MOPE_PCM_MAX_K], nc = 0;
            for (int k = 0; k < K; k++)
                if (prior[(size_t)i * K + k] > 0) cand[nc++] = k;
            /* opening, closing or both, among those with a length */
            int modes[3], nm = 0;
            if (o->explore_head) modes[nm++] = 0;
            if (o->explore_tail) modes[nm++] = 1;
            if (o->explore_head && o->explore_tail) modes[nm++] = 2;
            int mode = modes[mope_rng_below(&c->rng, (uint32_t)nm)];
            explore[2 * i + 1] = (mope_rollout_explore){.expert = cand[mope_rng_below(&c->rng, (uint32_t)nc)],
                                                        .head = mode != 1 ? o->explore_head : 0,
                                                        .tail = mode != 0 ? o->explore_tail : 0,
                                                        .sentence = true};
        }
    }
    if (!rc) mope_sampler_reseed(c->smp, mope_rng_u64(&c->rng));
    if (!rc) {
        int n_ctx = mope_train_model_config(mope_pcm_trunk(c->pcm))->n_ctx;
        if (!(pi = mope_pcm_to_infer(c->pcm, NULL, NR, n_ctx, c->pool, err))) rc = err ? err->code : MOPE_ENOMEM;
    }
    double t0 = mope_time_s();
    if (!rc) {
        mope_rollout_opts ro_o = {.pcm = pi, .samplers = &c->smp, .n_samplers = 1, .max_tokens = o->max_tokens,
                                  .explore = o->explore > 0 ? explore : NULL,
                                  .record_dists = mope_pcm_rule(c->pcm) == MOPE_MIX_GEOMETRIC};
        rc = mope_rollout_generate_ex(c->ex, K, c->tok, NR, ins, prf, &ro_o, ro, err);
    }
    mope_pcm_infer_free(pi);
    double t1 = mope_time_s();
    for (int j = 0; !rc && j < NR; j++)
        if (!(text[j] = pt_response_text(c, &ro[j], err))) rc = err ? err->code : MOPE_ENOMEM;
    /* rewards: answer j is to prompt item_p[j / 2] under preference item_f[j / 2] */
    for (int j = 0; !rc && j < NR; j++) {
        rp[j] = item_p[j / 2];
        rf[j] = item_f[j / 2];
    }
    if (!rc) rc = pt_rewards(c, rp, rf, (const char *const *)text, NR, rc_r, util, err);
    for (int j = 0; !rc && j < NR; j++) {
        const int *cb = c->combo + (size_t)item_f[j / 2] * c->n_dim;
        for (int ch = 0; ch < NC; ch++) /* in choice order, as the sum always was */
            if (cb[c->b->choices[ch].dimension] == ch) {
                rsum[j] += rc_r[(size_t)j * NC + ch];
                rcount[j]++;
            }
        st->utility += util[j] / NR;
        st->mean_len += (double)ro[j].n_resp / NR;
        st->trunc += (ro[j].truncated ? 1.0 : 0.0) / NR;
        st->tokens += ro[j].n_resp;
        pref_acc *a = &acc[item_f[j / 2]];
        a->n++;
        a->utility += util[j];
        a->reward += rsum[j];
        a->n_r += rcount[j];
    }
    int tot_r = 0;
    double sum_r = 0;
    for (int j = 0; !rc && j < NR; j++) {
        sum_r += rsum[j];
        tot_r += rcount[j];
    }
    if (!rc) st->reward = tot_r ? sum_r / tot_r : 0;
    for (int i = 0; !rc && i < n; i++) {
        pairs[i] = (mope_rebel_pair){mope_rollout_sample(&ro[2 * i], util[2 * i]),
                                     mope_rollout_sample(&ro[2 * i + 1], util[2 * i + 1])};
        /* always attached: the prior KL is logged even when it is not trained */
        pairs[i].y.prior = pairs[i].y2.prior = prior + (size_t)i * K;
    }
    for (int i = 0; !rc && i < n; i++)
        if (explore[2 * i + 1].expert >= 0) {
            st->explored++;
            st->explore_gain += util[2 * i + 1] - util[2 * i];
        }
    if (st->explored) st->explore_gain /= st->explored;
    double t2 = mope_time_s();
    /* mean expert weights of the rollout policy, per preference */
    for (int j = 0; !rc && j < NR; j++) {
        int T = ro[j].prompt_len + ro[j].n_resp - 1;
        float *g = realloc(wbuf, sizeof(float) * (size_t)T * K);
        if (!g) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            break;
        }
        wbuf = g;
        if ((rc = mope_pcm_forward(c->pcm, ro[j].tokens, 1, T, wbuf, err))) break;
        pref_acc *a = &acc[item_f[j / 2]];
        for (int t = ro[j].prompt_len - 1; t < T; t++)
            for (int k = 0; k < K; k++) a->w[k] += wbuf[(size_t)t * K + k];
        a->w_tok += ro[j].n_resp;
    }
    /* REBEL updates */
    mope_rebel_opts ropt;
    mope_rebel_opts_init(&ropt);
    ropt.eta = o->eta;
    ropt.kl_coef = o->kl_coef;
    ropt.prior_coef = o->kl_prior;
    ropt.length_penalty = o->length_penalty;
    ropt.micro_batch = o->micro_batch;
    ropt.adamw = c->adamw;
    for (int e = 0; !rc && e < o->epochs; e++) {
        mope_rebel_stats es;
        mope_pcm_zero_grad(c->pcm);
        rc = mope_rebel_accumulate(c->pcm, pairs, n, &ropt, &es, err);
        if (!rc) rc = opt_apply(c, &st->lr, &st->grad_norm, err);
        if (!rc && e == 0) {
            st->loss_before = es.loss;
            st->rebel_loss = es.rebel_loss;
            st->kl = es.kl;
            st->kl_prior = es.prior_kl;
        }
    }
    if (rc) mope_pcm_zero_grad(c->pcm);
    if (!rc) {
        mope_rebel_stats after;
        rc = mope_rebel_eval(c->pcm, pairs, n, &ropt, &after, err);
        st->loss_after = after.loss;
    }
    st->rollout_s = t1 - t0;
    st->reward_s = t2 - t1;
    st->update_s = mope_time_s() - t2;
    /* the log record */
    if (!rc) {
        cJSON_AddNumberToObject(log, "reward", st->reward);
        cJSON_AddNumberToObject(log, "utility", st->utility);
        cJSON_AddNumberToObject(log, "loss_before", st->loss_before);
        cJSON_AddNumberToObject(log, "loss_after", st->loss_after);
        cJSON_AddNumberToObject(log, "rebel_loss", st->rebel_loss);
        cJSON_AddNumberToObject(log, "kl", st->kl);
        cJSON_AddNumberToObject(log, "kl_prior", st->kl_prior);
        cJSON_AddNumberToObject(log, "grad_norm", st->grad_norm);
        cJSON_AddNumberToObject(log, "lr", st->lr);
        cJSON_AddNumberToObject(log, "mean_len", st->mean_len);
        cJSON_AddNumberToObject(log, "truncated", st->trunc);
        cJSON_AddNumberToObject(log, "tokens", (double)st->tokens);
        cJSON_AddNumberToObject(log, "rollout_s", st->rollout_s);
        cJSON_AddNumberToObject(log, "reward_s", st->reward_s);
        cJSON_AddNumberToObject(log, "update_s", st->update_s);
        if (o->explore > 0) {
            cJSON_AddNumberToObject(log, "explored", st->explored);
            cJSON_AddNumberToObject(log, "explore_gain", st->explore_gain);
            /* each steered rollout: what steered it, its utility against its partner's, its text */
            cJSON *xs = cJSON_AddArrayToObject(log, "explore_items");
            for (int i = 0; xs && i < n; i++) {
                const mope_rollout_explore *e = &explore[2 * i + 1];
                cJSON *x = e->expert >= 0 ? cJSON_CreateObject() : NULL;
                if (!x) continue;
                cJSON_AddItemToArray(xs, x);
                cJSON_AddStringToObject(x, "preference", c->pref_name[item_f[i]]);
                cJSON_AddStringToObject(x, "expert", c->b->experts[e->expert].id);
                cJSON_AddNumberToObject(x, "head", e->head);
                cJSON_AddNumberToObject(x, "tail", e->tail);
                cJSON_AddNumberToObject(x, "utility", util[2 * i + 1]);
                cJSON_AddNumberToObject(x, "partner_utility", util[2 * i]);
                /* a token boundary may split a character: the log stays valid UTF-8 */
                char *clean = mope_utf8_sanitize(text[2 * i + 1], strlen(text[2 * i + 1]), NULL);
                if (clean) cJSON_AddStringToObject(x, "response", clean);
                free(clean);
            }
        }
        cJSON *per = cJSON_AddObjectToObject(log, "per_preference");
        for (int p = 0; per && p < c->n_prefs; p++) {
            const pref_acc *a = &acc[p];
            if (!a->n) continue;
            cJSON *q = cJSON_AddObjectToObject(per, c->pref_name[p]);
            cJSON_AddNumberToObject(q, "n", a->n);
            cJSON_AddNumberToObject(q, "reward", a->n_r ? a->reward / a->n_r : 0);
            cJSON_AddNumberToObject(q, "utility", a->utility / a->n);
            cJSON *wo = cJSON_AddObjectToObject(q, "weights");
            for (int k = 0; wo && k < K; k++)
                cJSON_AddNumberToObject(wo, c->b->experts[k].id, a->w_tok > 0 ? a->w[k] / a->w_tok : 0);
        }
    }
    for (int j = 0; ro && j < NR; j++) mope_rollout_free(&ro[j]);
    for (int j = 0; text && j < NR; j++) free(text[j]);
    free(item_p);
    free(item_f);
    free(ins);
    free(prf);
    free(ro);
    free(text);
    free(util);
    free(rsum);
    free(rcount);
    free(rc_r);
    free(pairs);
    free(acc);
    free(rp);
    free(rf);
    free(wbuf);
    free(prior);
    free(explore);
    for (int i = 0; itext && i < n; i++) free(itext[i]);
    free(itext);
    return rc ? mope_error_prefix(err, "iteration %lld", (long long)c->iteration + 1) : 0;
}

/* ---- the run ---- */

static int check_opts(const mope_pcm_train_opts *o, mope_error *err) {
    if (!o->bundle || !o->out) return mope_error_set(err, MOPE_EINVAL, "train pcm: a bundle and an output are required");
    if (o->iterations < 1 || o->batch < 1 || o->epochs < 1 || o->micro_batch < 1 || o->max_tokens < 1 ||
        o->checkpoint_every < 0)
        return mope_error_set(err, MOPE_EINVAL,
                              "train pcm: iterations %lld, batch %d, epochs %d, micro-batch %d and max tokens %d must "
                              "be >= 1 (checkpoint interval >= 0)",
                              (long long)o->iterations, o->batch, o->epochs, o->micro_batch, o->max_tokens);
    if (o->batch > 4096) return mope_error_set(err, MOPE_ERANGE, "train pcm: batch %d is too large", o->batch);
    if (!(o->eta > 0) || !isfinite(o->eta) || !(o->kl_coef >= 0) || !isfinite(o->kl_coef) ||
        !(o->kl_prior >= 0) || !isfinite(o->kl_prior) || !(o->length_penalty >= 0) ||
        !isfinite(o->length_penalty) || !(o->temperature > 0) ||
        !isfinite(o->temperature))
        return mope_error_set(err, MOPE_EINVAL,
                              "train pcm: eta (%g) and temperature (%g) must be > 0, kl (%g), kl prior (%g) and "
                              "length penalty (%g) >= 0",
                              o->eta, o->temperature, o->kl_coef, o->kl_prior, o->length_penalty);
    if (!(o->warm_best >= 0 && o->warm_best <= 1) || (o->warm_best > 0 && o->warm_best_prompts < 1))
        return mope_error_set(err, MOPE_EINVAL, "train pcm: warm best share %g must be in [0, 1] and its prompts (%d) >= 1",
                              o->warm_best, o->warm_best_prompts);
    if (!(o->explore >= 0 && o->explore <= 1) || o->explore_head < 0 || o->explore_tail < 0 ||
        (o->explore > 0 && o->explore_head + o->explore_tail == 0))
        return mope_error_set(err, MOPE_EINVAL,
                              "train pcm: explore share %g must be in [0, 1], its head (%d) and tail (%d) tokens >= 0 "
                              "and not both 0",
                              o->explore, o->explore_head, o->explore_tail);
    if (!mope_mix_rule_name(o->rule)) return mope_error_set(err, MOPE_EINVAL, "train pcm: unknown rule %d", (int)o->rule);
    return 0;
}

/* The PCM to start from: a checkpoint, a file, the base trunk, or new. */
static int make_pcm(pt_ctx *c, const char *ckpt, bool *resumed, mope_error *err) {
    const mope_pcm_train_opts *o = c->o;
    *resumed = false;
    if (o->resume && access(ckpt, F_OK) == 0) {
        int rc = pt_checkpoint_load(c, ckpt, err);
        if (rc) return rc;
        *resumed = true;
    } else if (o->pcm_in) {
        if (!(c->pcm = mope_pcm_load(o->pcm_in, c->n_threads, err))) return err ? err->code : MOPE_EIO;
    } else {
        const char **ids = malloc(sizeof(char *) * (size_t)c->K);
        if (!ids) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        for (int k = 0; k < c->K; k++) ids[k] = c->b->experts[k].id;
        if (o->init_from_base) {
            mope_train_model *t = mope_train_model_load(c->b->base, c->n_threads, err);
            if (!t) mope_error_prefix(err, "--init-from-base");
            else c->pcm = mope_pcm_from_trunk(t, c->K, ids, o->rule, err);
        } else {
            mope_train_config tc = o->trunk;
            tc.n_vocab = mope_tokenizer_n_vocab(c->tok);
            tc.value_head = false;
            c->pcm = mope_pcm_new(&tc, c->K, ids, o->rule, c->n_threads, o->seed, err);
        }
        free(ids);
        if (!c->pcm) return err ? err->code : MOPE_EINVAL;
    }
    if (mope_pcm_n_experts(c->pcm) != c->K)
        return mope_error_set(err, MOPE_EINVAL, "the PCM weighs %d experts; the bundle has %d",
                              mope_pcm_n_experts(c->pcm), c->K);
    for (int k = 0; k < c->K; k++)
        if (strcmp(mope_pcm_expert(c->pcm, k), c->b->experts[k].id) != 0)
            return mope_error_set(err, MOPE_EINVAL, "the PCM's expert %d is \"%s\"; the bundle's is \"%s\"", k,
                                  mope_pcm_expert(c->pcm, k), c->b->experts[k].id);
    const mope_train_config *tc = mope_train_model_config(mope_pcm_trunk(c->pcm));
    if (tc->n_vocab != mope_tokenizer_n_vocab(c->tok))
        return mope_error_set(err, MOPE_EINVAL, "the PCM has %d tokens; the bundle's tokenizer %d", tc->n_vocab,
                              (int)mope_tokenizer_n_vocab(c->tok));
    if (!c->adam_m) {
        mope_train_model *t = mope_pcm_trunk(c->pcm);
        c->n_opt = mope_train_model_n_params(t) + (size_t)c->K * (tc->n_embd + 1);
        c->adam_m = mope_alloc(c->n_opt, sizeof(float));
        c->adam_v = mope_alloc(c->n_opt, sizeof(float));
        if (!c->adam_m || !c->adam_v) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    return 0;
}

/* Every (prompt, preference) must leave room for max_tokens in the PCM's
 * context, and every prompt in each expert's. */
static int check_lengths(pt_ctx *c, mope_error *err) {
    const int n_ctx = mope_train_model_config(mope_pcm_trunk(c->pcm))->n_ctx, T = c->o->max_tokens;
    int rc = 0;
    /* with paraphrases: each choice's longest alternative */
    char **longest = calloc((size_t)c->n_prefs, sizeof(char *));
    if (!longest) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int p = 0; !rc && p < c->n_prefs; p++)
        if (!(longest[p] = pt_longest_text(c, p, err))) rc = err ? err->code : MOPE_ENOMEM;
    for (int i = 0; !rc && i < c->n_prompts; i++) {
        for (int p = 0; !rc && p < c->n_prefs; p++) {
            int32_t *t = NULL;
            int n = mope_pcm_prompt_tokens(c->tok, c->prompt_text[i], longest[p], &t, err);
            free(t);
            if (n < 0) rc = n;
            else if (n + T > n_ctx)
                rc = mope_error_set(err, MOPE_ERANGE,
                                    "prompt %s with preference %s takes %d PCM tokens; with %d new tokens that exceeds "
                                    "the PCM's context of %d (use a larger PCM context or fewer tokens)",
                                    c->prompt_id[i] ? c->prompt_id[i] : c->prompt_text[i], c->pref_name[p], n, T,
                                    n_ctx);
        }
        /* LoRA experts run in the base's context (full-model experts check their own at rollout) */
        const int base_ctx = mope_model_hparams(c->base)->n_ctx_train;
        for (int k = 0; !rc && k < c->K; k++) {
            if (c->ex_owned[k]) continue;
            int32_t *t = NULL;
            int n = mope_expert_prompt_tokens(c->ex[k], c->prompt_text[i], &t, err);
            free(t);
            if (n < 0) rc = n;
            else if (n + T > base_ctx)
                rc = mope_error_set(err, MOPE_ERANGE,
                                    "prompt %s takes %d tokens in expert %s's prompt; with %d new tokens that exceeds "
                                    "the base model's context of %d (use fewer tokens)",
                                    c->prompt_id[i] ? c->prompt_id[i] : c->prompt_text[i], n, c->b->experts[k].id, T,
                                    base_ctx);
        }
    }
    for (int p = 0; p < c->n_prefs; p++) free(longest[p]);
    free(longest);
    return rc;
}

/* {"warm_target": {"best_share", "prompts", "per_preference": {name: {"utility": {expert: u}, "target":
 * {expert: q}}}}}: what --warm-best measured and chose. */
static int log_warm_target(pt_ctx *c, FILE *logf, mope_error *err) {
    cJSON *root = cJSON_CreateObject(), *wt = root ? cJSON_AddObjectToObject(root, "warm_target") : NULL;
    cJSON *per = wt ? cJSON_AddObjectToObject(wt, "per_preference") : NULL;
    if (per) {
        cJSON_AddNumberToObject(wt, "best_share", c->o->warm_best);
        cJSON_AddNumberToObject(wt, "prompts", c->o->warm_best_prompts < c->n_seq ? c->o->warm_best_prompts : c->n_seq);
    }
    for (int p = 0; per && p < c->n_prefs; p++) {
        cJSON *q = cJSON_AddObjectToObject(per, c->pref_name[p]);
        cJSON *u = q ? cJSON_AddObjectToObject(q, "utility") : NULL, *t = q ? cJSON_AddObjectToObject(q, "target") : NULL;
        for (int k = 0; u && t && k < c->K; k++) {
            double x = c->ex_util[(size_t)p * c->K + k];
            if (isfinite(x)) cJSON_AddNumberToObject(u, c->b->experts[k].id, x);
            cJSON_AddNumberToObject(t, c->b->experts[k].id, c->target[(size_t)p * c->K + k]);
        }
    }
    char *s = per ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!s) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int bad = fprintf(logf, "%s\n", s) < 0 || fflush(logf) != 0;
    free(s);
    return bad ? mope_error_set(err, MOPE_EIO, "writing the log %s failed", c->o->log) : 0;
}

int mope_pcm_train_run(const mope_pcm_train_opts *o, mope_pcm_train_result *res, mope_error *err) {
    mope_pcm_train_result r0;
    memset(&r0, 0, sizeof r0);
    if (!res) res = &r0;
    memset(res, 0, sizeof *res);
    if (!o) return mope_error_set(err, MOPE_EINVAL, "train pcm: no options");
    int rc = check_opts(o, err);
    if (rc) return rc;
    double t0 = mope_time_s();
    pt_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.res = res;
    c.n_threads = o->n_threads > 0 ? o->n_threads : mope_cpu_count();
    c.n_seq = 2 * o->batch;
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s", o->checkpoint ? o->checkpoint : "");
    if (!o->checkpoint) snprintf(ckpt, sizeof ckpt, "%s.ckpt", o->out);
    FILE *logf = NULL;
    cJSON *line = NULL;
    bool resumed = false;
    mope_rng_seed(&c.rng, o->seed);
    if ((rc = pt_setup(&c, err))) goto done;
    if ((rc = make_pcm(&c, ckpt, &resumed, err))) goto done;
    if ((rc = check_lengths(&c, err))) goto done;
    c.adamw = o->adamw;
    if (c.adamw.total_steps <= 0) c.adamw.total_steps = o->iterations * o->epochs;
    mope_sampler_params spar = mope_sampler_default_params();
    spar.temp = o->temperature;
    spar.top_k = 0;
    spar.top_p = 1.0f;
    spar.min_p = 0.0f;
    spar.seed = o->seed;
    if (!(c.smp = mope_sampler_new(&spar, err))) {
        rc = err ? err->code : MOPE_EINVAL;
        goto done;
    }
    res->resumed = resumed;
    res->start_iteration = c.iteration;
    res->n_prompts = c.n_prompts;
    res->n_prefs = c.n_prefs;
    if (o->log) {
        if (resumed && (rc = log_trim(o->log, c.iteration, err))) goto done;
        if (!(logf = fopen(o->log, resumed ? "a" : "w"))) {
            rc = mope_error_set(err, MOPE_EIO, "cannot open the log %s", o->log);
            goto done;
        }
    }
    /* measured again on --resume: the prior of --kl-prior needs it */
    if ((rc = pt_best_targets(&c, err))) goto done;
    if (!resumed && c.target && logf && (rc = log_warm_target(&c, logf, err))) goto done;
    res->warm_loss_first = res->warm_loss_last = res->warm_mass = NAN;
    if (!resumed && (rc = pt_warm_start(&c, opt_apply, err))) goto done;
    if (!resumed && o->warm_steps > 0 && logf) {
        fprintf(logf, "{\"warm_start\":{\"steps\":%lld,\"loss_first\":%.6g,\"loss_last\":%.6g,\"mass_on_preference\":%.6g}}\n",
                (long long)o->warm_steps, res->warm_loss_first, res->warm_loss_last, res->warm_mass);
        if (fflush(logf) != 0) {
            rc = mope_error_set(err, MOPE_EIO, "writing the log %s failed", o->log);
            goto done;
        }
    }
    while (c.iteration < o->iterations) {
        double ti = mope_time_s();
        iter_stats st;
        line = cJSON_CreateObject();
        if (!line) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            break;
        }
        cJSON_AddNumberToObject(line, "iteration", (double)c.iteration + 1);
        if ((rc = iterate(&c, &st, line, err))) break;
        c.iteration++;
        bool stop_here = o->stop_at > 0 && c.iteration == o->stop_at && c.iteration < o->iterations;
        bool ck = stop_here ||
                  (o->checkpoint_every > 0 && (c.iteration % o->checkpoint_every == 0 || c.iteration == o->iterations));
        if (ck && (rc = pt_checkpoint_save(&c, ckpt, err))) break;
        double now = mope_time_s(), dt = now - ti;
        cJSON_AddNumberToObject(line, "tokens_per_s", dt > 0 ? st.tokens / dt : 0);
        cJSON_AddNumberToObject(line, "iter_s", dt);
        cJSON_AddNumberToObject(line, "elapsed_s", now - t0);
        char *s = cJSON_PrintUnformatted(line);
        if (!s) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            break;
        }
        if (logf && (fprintf(logf, "%s\n", s) < 0 || fflush(logf) != 0))
            rc = mope_error_set(err, MOPE_EIO, "writing the log %s failed", o->log);
        res->iterations_done = c.iteration;
        res->final_utility = st.utility;
        if (!rc && o->progress) {
            mope_pcm_train_progress p = {.iteration = c.iteration, .total = o->iterations,
                                         .start_iteration = res->start_iteration, .reward = st.reward,
                                         .utility = st.utility, .loss_before = st.loss_before,
                                         .loss_after = st.loss_after, .kl = st.kl, .kl_prior = st.kl_prior,
                                         .grad_norm = st.grad_norm, .lr = st.lr, .mean_len = st.mean_len, .truncated_share = st.trunc,
                                         .explored = st.explored, .explore_gain = st.explore_gain,
                                         .tokens = st.tokens, .iter_s = dt, .elapsed_s = now - t0,
                                         .tokens_per_s = dt > 0 ? st.tokens / dt : 0, .checkpointed = ck,
                                         .log_line = s};
            if (o->progress(o->progress_user, &p)) res->stopped = true;
        }
        free(s);
        cJSON_Delete(line);
        line = NULL;
        if (stop_here) res->stopped = true;
        if (rc || res->stopped) break;
    }
    res->iterations_done = c.iteration;
    if (!rc && !res->stopped) rc = mope_pcm_save(c.pcm, o->out, c.tok, err);
    if (!rc && !res->stopped && o->update_bundle) {
        /* the same form as the bundle's resolved paths (relative to the
         * working directory unless absolute), so the manifest stores it
         * relative to its own folder when the PCM lies inside it */
        char *path = strdup(o->out);
        if (!path) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        } else {
            free(c.b->pcm);
            c.b->pcm = path;
            rc = mope_bundle_save(c.b, o->bundle, 0, err);
            if (rc) mope_error_prefix(err, "updating the bundle %s", o->bundle);
        }
    }
done:
    cJSON_Delete(line);
    if (logf && fclose(logf) != 0 && !rc) rc = mope_error_set(err, MOPE_EIO, "writing the log %s failed", o->log);
    pt_teardown(&c);
    return rc;
}
