/* PCM warm start: a short supervised phase before REBEL.
 *
 * Why: a new PCM starts from a zero head, i.e. equal weight on all K
 * experts, half of them serving the opposite choice of every dimension the
 * user named.  REBEL's signal (two rollouts per item, a noisy reward
 * difference) is far too weak to teach the trunk to read the preference
 * text from there in a CPU budget: the first PrefBench PCM ended with the
 * same weights for every preference.  So the trunk is first taught what the
 * bundle already states: which experts serve the choices a preference
 * names.  The target at every response position is the uniform
 * distribution over those experts (the "uniform" baseline), the loss
 * KL(q || w) = sum_k q_k log(q_k / w_k), whose gradient with respect to the
 * head's logits is simply w - q.  REBEL then starts from that policy and
 * moves the weights token by token wherever the rewards say so.
 *
 * Inputs are laid out exactly as at rollout: PCM prompt (instruction +
 * preference) followed by a response, here the base model's reference
 * answer for the prompt, so the trunk sees realistic response prefixes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rl/pcm_train_internal.h"

static int uniform_target(const pt_ctx *c, int p, float *q) {
    const int *cb = c->combo + (size_t)p * c->n_dim;
    int n = 0;
    for (int k = 0; k < c->K; k++) {
        int ch = c->b->experts[k].choice_index, d = c->b->choices[ch].dimension;
        q[k] = cb[d] == ch ? 1.0f : 0.0f;
        n += cb[d] == ch;
    }
    for (int k = 0; k < c->K; k++) q[k] = n ? q[k] / (float)n : 1.0f / (float)c->K;
    return n;
}

int pt_pref_target(const pt_ctx *c, int p, float *q) {
    if (!c->target) return uniform_target(c, p, q);
    int n = 0;
    for (int k = 0; k < c->K; k++) {
        q[k] = c->target[(size_t)p * c->K + k];
        n += q[k] > 0;
    }
    return n;
}

/* Mean utility of expert k alone on the M prompts idx[] for preference p. */
static int expert_utility(pt_ctx *c, int p, int k, const int *idx, int M, const char **ins, char **text, double *out,
                          mope_error *err) {
    float one[MOPE_MIX_MAX_K] = {0};
    one[k] = 1.0f;
    mope_rollout *ro = calloc((size_t)M, sizeof *ro);
    int *pf = malloc(sizeof(int) * (size_t)M);
    double *r = malloc(sizeof(double) * (size_t)M * c->b->n_choices), *u = malloc(sizeof(double) * (size_t)M);
    int rc = ro && pf && r && u ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    mope_sampler_reseed(c->smp, c->o->seed * 1000003ull + (uint64_t)p * c->K + (uint64_t)k);
    mope_rollout_opts ro_o = {.weights = one, .rule = MOPE_MIX_LINEAR, .samplers = &c->smp, .n_samplers = 1,
                              .max_tokens = c->o->max_tokens};
    if (!rc) rc = mope_rollout_generate_ex(c->ex, c->K, c->tok, M, ins, NULL, &ro_o, ro, err);
    for (int j = 0; !rc && j < M; j++) {
        pf[j] = p;
        if (!(text[j] = pt_response_text(c, &ro[j], err))) rc = err ? err->code : MOPE_ENOMEM;
    }
    if (!rc) rc = pt_rewards(c, idx, pf, (const char *const *)text, M, r, u, err);
    double sum = 0;
    for (int j = 0; !rc && j < M; j++) sum += u[j];
    *out = sum / M;
    for (int j = 0; ro && j < M; j++) {
        mope_rollout_free(&ro[j]);
        free(text[j]);
        text[j] = NULL;
    }
    free(ro);
    free(pf);
    free(r);
    free(u);
    return rc;
}

int pt_best_targets(pt_ctx *c, mope_error *err) {
    const mope_pcm_train_opts *o = c->o;
    if (!(o->warm_best > 0)) return 0;
    const int K = c->K;
    int M = o->warm_best_prompts;
    if (M > c->n_seq) M = c->n_seq;
    if (M < 1) return mope_error_set(err, MOPE_EINVAL, "warm best: %d prompts", M);
    c->target = malloc(sizeof(float) * (size_t)c->n_prefs * K);
    c->ex_util = malloc(sizeof(double) * (size_t)c->n_prefs * K);
    int *idx = malloc(sizeof(int) * (size_t)M);
    const char **ins = malloc(sizeof(char *) * (size_t)M);
    char **text = calloc((size_t)M, sizeof(char *));
    int rc = c->target && c->ex_util && idx && ins && text ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    mope_rng rng;
    mope_rng_seed(&rng, o->seed ^ 0x4265737445787074ull); /* its own stream: REBEL's batches stay the same */
    for (int j = 0; !rc && j < M; j++) {
        idx[j] = (int)mope_rng_below(&rng, (uint32_t)c->n_prompts);
        ins[j] = c->prompt_text[idx[j]];
    }
    for (int p = 0; !rc && p < c->n_prefs; p++) {
        float *q = c->target + (size_t)p * K;
        int n = uniform_target(c, p, q), best = -1;
        for (int k = 0; !rc && k < K; k++) {
            c->ex_util[(size_t)p * K + k] = NAN;
            if (!(q[k] > 0)) continue;
            rc = expert_utility(c, p, k, idx, M, ins, text, &c->ex_util[(size_t)p * K + k], err);
            if (!rc && (best < 0 || c->ex_util[(size_t)p * K + k] > c->ex_util[(size_t)p * K + best])) best = k;
        }
        if (rc || n < 2 || best < 0) continue;
        const float share = (float)o->warm_best;
        for (int k = 0; k < K; k++)
            if (q[k] > 0) q[k] = k == best ? share : (1.0f - share) / (float)(n - 1);
    }
    free(idx);
    free(ins);
    free(text);
    return rc ? mope_error_prefix(err, "warm best") : 0;
}

/* One sequence: PCM prompt tokens + reference response tokens, cut to the
 * context.  *n_prompt gets the prompt length; returns the total or < 0. */
static int warm_sequence(pt_ctx *c, int i, int p, int n_ctx, mope_rng *rng, int32_t **out, int *n_prompt,
                         mope_error *err) {
    int32_t *pt = NULL;
    char *ptext = pt_item_text(c, p, rng, err);
    if (!ptext) return err ? err->code : MOPE_ENOMEM;
    int np = mope_pcm_prompt_tokens(c->tok, c->prompt_text[i], ptext, &pt, err);
    free(ptext);
    if (np < 0) return np;
    const char *ref = c->ref[i] ? c->ref[i] : "";
    int cap = n_ctx + 8;
    int32_t *t = realloc(pt, sizeof(int32_t) * (size_t)(np > cap ? np : cap));
    if (!t) {
        free(pt);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    int nr = 0;
    if (np < n_ctx) {
        nr = mope_tokenizer_encode(c->tok, ref, strlen(ref), false, false, t + np, n_ctx - np, err);
        if (nr < 0) {
            free(t);
            return nr;
        }
        if (nr > n_ctx - np) nr = n_ctx - np; /* the part that fits */
    }
    *out = t;
    *n_prompt = np;
    return np + nr;
}

int pt_warm_start(pt_ctx *c, pt_opt_fn opt, mope_error *err) {
    const mope_pcm_train_opts *o = c->o;
    if (o->warm_steps <= 0) return 0;
    const int K = c->K, B = o->warm_batch > 0 ? o->warm_batch : 2 * o->batch;
    const int n_ctx = mope_train_model_config(mope_pcm_trunk(c->pcm))->n_ctx;
    mope_rng rng;
    mope_rng_seed(&rng, o->seed ^ 0x5761726d53746172ull); /* its own stream: REBEL's batches stay the same */
    mope_adamw_config saved = c->adamw;
    c->adamw.lr = o->warm_lr > 0 ? o->warm_lr : 1e-3f;
    c->adamw.min_lr = c->adamw.lr * 0.1f;
    c->adamw.warmup_steps = o->warm_steps / 10;
    c->adamw.total_steps = o->warm_steps;
    c->step = 0;
    int32_t **seq = calloc((size_t)B, sizeof(int32_t *));
    int *len = calloc((size_t)B, sizeof(int)), *npr = calloc((size_t)B, sizeof(int)),
        *pref = calloc((size_t)B, sizeof(int));
    int32_t *tok = NULL;
    float *w = NULL, *dz = NULL, *q = malloc(sizeof(float) * (size_t)c->n_prefs * K);
    int rc = seq && len && npr && pref && q ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int p = 0; !rc && p < c->n_prefs; p++) pt_pref_target(c, p, q + (size_t)p * K);
    double first = NAN, last = NAN, on = 0;
    for (int64_t s = 0; !rc && s < o->warm_steps; s++) {
        int T = 0;
        for (int b = 0; !rc && b < B; b++) {
            free(seq[b]);
            seq[b] = NULL;
            int i = (int)mope_rng_below(&rng, (uint32_t)c->n_prompts);
            pref[b] = (int)mope_rng_below(&rng, (uint32_t)c->n_prefs);
            int n = warm_sequence(c, i, pref[b], n_ctx, &rng, &seq[b], &npr[b], err);
            if (n < 0) rc = n;
            else if (npr[b] >= n_ctx)
                rc = mope_error_set(err, MOPE_ERANGE, "warm start: the PCM prompt of %s takes %d tokens (context %d)",
                                    c->prompt_id[i] ? c->prompt_id[i] : c->prompt_text[i], npr[b], n_ctx);
            else {
                len[b] = n;
                if (n > T) T = n;
            }
        }
        if (rc) break;
        size_t N = (size_t)B * T;
        int32_t *t2 = realloc(tok, sizeof(int32_t) * N);
        float *w2 = realloc(w, sizeof(float) * N * K), *d2 = realloc(dz, sizeof(float) * N * K);
        if (t2) tok = t2;
        if (w2) w = w2;
        if (d2) dz = d2;
        if (!t2 || !w2 || !d2) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            break;
        }
        memset(tok, 0, sizeof(int32_t) * N); /* padding after a sequence never reaches its positions (causal) */
        for (int b = 0; b < B; b++) memcpy(tok + (size_t)b * T, seq[b], sizeof(int32_t) * (size_t)len[b]);
        if ((rc = mope_pcm_forward(c->pcm, tok, B, T, w, err))) break;
        /* positions that choose a response token: prompt_len-1 .. len-1 */
        size_t n_pos = 0;
        for (int b = 0; b < B; b++) n_pos += (size_t)(len[b] - npr[b] + 1);
        memset(dz, 0, sizeof(float) * N * K);
        double loss = 0, mass = 0;
        for (int b = 0; b < B; b++) {
            const float *qb = q + (size_t)pref[b] * K;
            for (int t = npr[b] - 1; t < len[b]; t++) {
                const float *wt = w + ((size_t)b * T + t) * K;
                float *d = dz + ((size_t)b * T + t) * K;
                for (int k = 0; k < K; k++) {
                    if (qb[k] > 0) {
                        loss += qb[k] * (log(qb[k]) - log(wt[k] > 1e-30f ? wt[k] : 1e-30f));
                        mass += wt[k];
                    }
                    d[k] = (wt[k] - qb[k]) / (float)n_pos;
                }
            }
        }
        loss /= (double)n_pos;
        if (s == 0) first = loss;
        last = loss;
        on = mass / (double)n_pos;
        if ((rc = mope_pcm_backward(c->pcm, dz, err))) break;
        float lr, norm;
        if ((rc = opt(c, &lr, &norm, err))) break;
    }
    /* REBEL starts with fresh moments and its own schedule */
    c->adamw = saved;
    c->step = 0;
    memset(c->adam_m, 0, sizeof(float) * c->n_opt);
    memset(c->adam_v, 0, sizeof(float) * c->n_opt);
    c->res->warm_loss_first = first;
    c->res->warm_loss_last = last;
    c->res->warm_mass = on;
    for (int b = 0; seq && b < B; b++) free(seq[b]);
    free(seq);
    free(len);
    free(npr);
    free(pref);
    free(tok);
    free(w);
    free(dz);
    free(q);
    return rc ? mope_error_prefix(err, "warm start") : 0;
}
