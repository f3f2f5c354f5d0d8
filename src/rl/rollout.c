/* Rollouts from the PCM-weighted mixture of experts, recording what REBEL
 * needs (see mope/rebel.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mope/mix.h"
#include "mope/rebel.h"

void mope_rollout_free(mope_rollout *r) {
    if (!r) return;
    free(r->tokens);
    free(r->expert_probs);
    mope_free(r->expert_logp);
    memset(r, 0, sizeof *r);
}

mope_rebel_sample mope_rollout_sample(const mope_rollout *r, double reward) {
    return (mope_rebel_sample){.tokens = r->tokens, .prompt_len = r->prompt_len, .n_resp = r->n_resp,
                               .expert_probs = r->expert_probs, .expert_logp = r->expert_logp,
                               .logp_rollout = r->logp, .reward = reward, .truncated = r->truncated};
}

/* The token's bytes end with '.', '!' or '?'. */
static bool ends_sentence(const mope_tokenizer *tok, int32_t y) {
    char b[64];
    int len = mope_tokenizer_token_bytes(tok, y, 0, b, sizeof b, NULL);
    if (len <= 0 || len > (int)sizeof b) return false; /* longer pieces are not punctuation */
    return b[len - 1] == '.' || b[len - 1] == '!' || b[len - 1] == '?';
}

/* Step n_resp's log-distribution of every expert into r->expert_logp. */
static int record_step(const mope_dist *d, int K, mope_rollout *r, int i, mope_error *err) {
    const int32_t V = r->n_vocab;
    for (int k = 0; k < K; k++) {
        if (d[k].kind != MOPE_DIST_FULL)
            return mope_error_set(err, MOPE_EUNSUPPORTED,
                                  "rollout %d: recording distributions needs full experts (expert %d is top-k)", i, k);
        float *dst = r->expert_logp + ((size_t)r->n_resp * K + k) * V;
        const float lse = (float)d[k].lse;
        for (int32_t v = 0; v < V; v++) dst[v] = d[k].logits[v] - lse;
    }
    return 0;
}

/* Prompts of every rollout into the PCM (when there is one).  An expert's
 * prompt is queued when the expert first runs for the rollout (the phase 1
 * of mope_rollout_generate_ex): one under min_weight from the first token on
 * is never prefilled, since a group evaluates every queued row of every
 * member. */
static int start_all(mope_pcm_infer *pcm, mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                     const char *const *instr, const char *const *pref, int max_tokens, bool record,
                     mope_rollout *out, mope_error *err) {
    for (int i = 0; i < n; i++) {
        if (!instr[i] || (pcm && !pref[i]))
            return mope_error_set(err, MOPE_EINVAL, "rollout %d: NULL instruction or preference", i);
        int32_t *pt = NULL;
        int np = 0;
        if (pcm && (np = mope_pcm_prompt_tokens(tok, instr[i], pref[i], &pt, err)) < 0) return np;
        out[i].K = K;
        out[i].n_vocab = experts[0]->n_vocab;
        if (record &&
            !(out[i].expert_logp = mope_alloc((size_t)max_tokens * K * (size_t)out[i].n_vocab, sizeof(float)))) {
            free(pt);
            return mope_error_set(err, MOPE_ENOMEM, "out of memory recording %d x %d distributions of %d tokens",
                                  max_tokens, K, (int)out[i].n_vocab);
        }
        out[i].tokens = malloc(sizeof(int32_t) * (size_t)(np + max_tokens));
        out[i].expert_probs = malloc(sizeof(float) * (size_t)max_tokens * K);
        if (!out[i].tokens || !out[i].expert_probs) {
            free(pt);
            return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        }
        if (np) memcpy(out[i].tokens, pt, sizeof(int32_t) * (size_t)np);
        out[i].prompt_len = np;
        int rc = pcm ? mope_pcm_infer_start(pcm, i, pt, np, err) : 0;
        free(pt);
        if (rc) return mope_error_prefix(err, "rollout %d: PCM prompt", i);
    }
    return 0;
}

static int check_args(mope_expert *const *experts, int K, const mope_tokenizer *tok, int n, const char *const *instr,
                      const char *const *pref, const mope_rollout_opts *o, mope_error *err) {
    if (!experts || !instr || !o || n < 1 || K < 1 || K > MOPE_MIX_MAX_K || o->max_tokens < 1 || !o->samplers ||
        (o->n_samplers != 1 && o->n_samplers != n) || (o->pcm && !pref) || (!o->pcm && !o->weights))
        return mope_error_set(err, MOPE_EINVAL, "rollout: bad arguments");
    for (int s = 0; s < o->n_samplers; s++)
        if (!o->samplers[s]) return mope_error_set(err, MOPE_EINVAL, "rollout: sampler %d is NULL", s);
    if (o->record_dists && o->min_weight > 0)
        return mope_error_set(err, MOPE_EINVAL, "rollout: recording distributions needs min_weight 0");
    if (o->explore) {
        if (o->min_weight > 0)
            return mope_error_set(err, MOPE_EINVAL, "rollout: exploration needs min_weight 0 (every expert running)");
        for (int i = 0; i < n; i++) {
            const mope_rollout_explore *e = &o->explore[i];
            if (e->expert < -1 || e->expert >= K || e->head < 0 || e->tail < 0)
                return mope_error_set(err, MOPE_EINVAL, "rollout %d: exploration expert %d (of %d), head %d, tail %d",
                                      i, e->expert, K, e->head, e->tail);
        }
    }
    if (o->pcm && K != mope_pcm_infer_meta(o->pcm)->K)
        return mope_error_set(err, MOPE_EINVAL, "rollout: %d experts given, the PCM weighs %d", K,
                              mope_pcm_infer_meta(o->pcm)->K);
    if (!tok) return mope_error_set(err, MOPE_EINVAL, "rollout: no tokenizer given and none in the PCM file");
    if (!experts[0]) return mope_error_set(err, MOPE_EINVAL, "rollout: expert 0 is NULL");
    const int32_t V = experts[0]->n_vocab;
    for (int k = 0; k < K; k++) {
        if (!experts[k]) return mope_error_set(err, MOPE_EINVAL, "rollout: expert %d is NULL", k);
        if (experts[k]->n_vocab != V || mope_tokenizer_n_vocab(tok) != V)
            return mope_error_set(err, MOPE_EINVAL, "rollout: expert %s has %d tokens; the tokenizer %d, expert 0 %d",
                                  mope_expert_name(experts[k]), (int)experts[k]->n_vocab,
                                  (int)mope_tokenizer_n_vocab(tok), (int)V);
        if (experts[k]->n_seq < n)
            return mope_error_set(err, MOPE_EINVAL, "rollout: expert %s has %d sequences, %d rollouts asked",
                                  mope_expert_name(experts[k]), experts[k]->n_seq, n);
    }
    return 0;
}

int mope_rollout_generate(mope_pcm_infer *pcm, mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                          const char *const *instructions, const char *const *preferences, mope_sampler *sampler,
                          int max_tokens, mope_rollout *out, mope_error *err) {
    if (!pcm || !sampler || !out || n < 1) return mope_error_set(err, MOPE_EINVAL, "rollout: bad arguments");
    mope_rollout_opts o = {.pcm = pcm, .samplers = &sampler, .n_samplers = 1, .max_tokens = max_tokens,
                           .record_dists = mope_pcm_infer_meta(pcm)->rule == MOPE_MIX_GEOMETRIC};
    return mope_rollout_generate_ex(experts, K, tok, n, instructions, preferences, &o, out, err);
}

int mope_rollout_generate_ex(mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                             const char *const *instructions, const char *const *preferences,
                             const mope_rollout_opts *o, mope_rollout *out, mope_error *err) {
    if (!out || n < 1) return mope_error_set(err, MOPE_EINVAL, "rollout: bad arguments");
    for (int i = 0; i < n; i++) memset(&out[i], 0, sizeof out[i]);
    mope_pcm_infer *pcm = o ? o->pcm : NULL;
    if (pcm && !tok) tok = mope_pcm_infer_tokenizer(pcm);
    int rc = check_args(experts, K, tok, n, instructions, preferences, o, err);
    if (rc) return rc;
    const mope_mix_rule rule = pcm ? mope_pcm_infer_meta(pcm)->rule : o->rule;
    const int max_tokens = o->max_tokens;
    const int32_t V = experts[0]->n_vocab;
    float wfix[MOPE_MIX_MAX_K];
    if (!pcm) {
        double sum = 0;
        for (int k = 0; k < K; k++) {
            if (!(o->weights[k] >= 0) || !isfinite(o->weights[k]))
                return mope_error_set(err, MOPE_EINVAL, "rollout: weight %d is %g", k, (double)o->weights[k]);
            sum += o->weights[k];
        }
        if (!(sum > 0)) return mope_error_set(err, MOPE_EINVAL, "rollout: the weights sum to 0");
        for (int k = 0; k < K; k++) wfix[k] = (float)(o->weights[k] / sum);
    }
    if (!(o->min_weight >= 0 && o->min_weight < 1))
        return mope_error_set(err, MOPE_EINVAL, "rollout: min_weight %g is not in [0, 1)", (double)o->min_weight);
    mope_dist *d = calloc((size_t)K, sizeof *d);
    float *probs = malloc(sizeof(float) * (size_t)V);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)n);
    bool *done = calloc((size_t)n, sizeof *done);
    bool *ended = calloc((size_t)n, sizeof *ended);
    /* per row: the weights of this step and which experts run */
    float *wrow = malloc(sizeof(float) * (size_t)n * K), *wrun = malloc(sizeof(float) * (size_t)n * K);
    bool *run = malloc(sizeof(bool) * (size_t)n * K);
    /* response tokens fed to expert k of row i (tokens are fed lazily, just
     * before an expert is asked for its next distribution, so a skipped
     * expert catches up in one batched call when it is needed again) */
    int *fed = calloc((size_t)n * K, sizeof(int));
    bool *started = calloc((size_t)n * K, sizeof(bool)); /* expert k's prompt queued for row i */
    /* exploration: tail tokens left to draw from the steering expert (-1:
     * the tail has not started), and whether the opening has ended */
    int *tail_left = malloc(sizeof(int) * (size_t)n);
    bool *head_over = calloc((size_t)n, sizeof *head_over);
    for (int i = 0; tail_left && i < n; i++) tail_left[i] = -1;
    if (!d || !probs || !next || !done || !ended || !wrow || !wrun || !run || !fed || !started || !tail_left ||
        !head_over)
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) rc = start_all(pcm, experts, K, tok, n, instructions, preferences, max_tokens, o->record_dists, out, err);
    for (int t = 0; t < max_tokens && !rc; t++) {
        int active = 0;
        /* phase 1: weights of every active rollout (the first PCM call
         * evaluates all sequences' fed tokens at once), the experts each
         * needs, and their missing tokens queued */
        for (int i = 0; i < n && !rc; i++) {
            if (done[i]) continue;
            active++;
            float *w = wrow + (size_t)i * K, *wr = wrun + (size_t)i * K;
            bool *ru = run + (size_t)i * K;
            if (pcm) rc = mope_pcm_infer_weights(pcm, i, w, err);
            else memcpy(w, wfix, sizeof(float) * (size_t)K);
            if (rc) break;
            int top = 0;
            for (int k = 1; k < K; k++)
                if (w[k] > w[top]) top = k;
            /* from the first token on: an expert that never runs is never
             * prefilled (the mixer does not read weight-0 experts) */
            for (int k = 0; k < K; k++) {
                ru[k] = o->min_weight <= 0 || w[k] >= o->min_weight || k == top;
                wr[k] = ru[k] ? w[k] : 0.0f;
            }
            const mope_rollout *r = &out[i];
            for (int k = 0; k < K && !rc; k++) {
                int *f = &fed[(size_t)i * K + k];
                bool *st = &started[(size_t)i * K + k];
                if (ru[k] && !*st) {
                    if ((rc = mope_expert_start(experts[k], i, instructions[i], err))) {
                        mope_error_prefix(err, "rollout %d: expert %s", i, mope_expert_name(experts[k]));
                        break;
                    }
                    *st = true;
                }
                if (ru[k] && *f < r->n_resp) {
                    rc = mope_expert_feed(experts[k], i, r->tokens + r->prompt_len + *f, r->n_resp - *f, err);
                    *f = r->n_resp;
                }
            }
        }
        if (rc || !active) break;
        /* phase 2: every active rollout draws its next token (the first
         * group call evaluates all queued tokens of all experts at once) */
        for (int i = 0; i < n && !rc; i++) {
            if (done[i]) continue;
            const float *w = wrow + (size_t)i * K, *wr = wrun + (size_t)i * K;
            const bool *ru = run + (size_t)i * K;
            float pk[MOPE_PCM_MAX_K];
            for (int k = 0; k < K && !rc; k++)
                if (ru[k]) rc = mope_expert_next(experts[k], i, &d[k], err);
            if (!rc) rc = mope_mix_step(d, K, wr, rule, probs, err);
            if (rc) break;
            mope_rollout *r = &out[i];
            mope_sampler *smp = o->samplers[o->n_samplers == 1 ? 0 : i];
            const mope_rollout_explore *ex = o->explore && o->explore[i].expert >= 0 ? &o->explore[i] : NULL;
            bool steered = ex && ((!head_over[i] && r->n_resp < ex->head) || tail_left[i] > 0);
            int32_t y = -1;
            if (!steered) y = mope_sampler_sample_probs(smp, probs, V, r->tokens + r->prompt_len, r->n_resp, err);
            if (ex && !steered && y >= 0 && tail_left[i] < 0 && ex->tail > 0 && mope_tokenizer_is_eog(tok, y)) {
                tail_left[i] = ex->tail;
                steered = true;
            }
            if (steered) {
                /* the steering expert's own distribution: one-hot weights */
                float one[MOPE_MIX_MAX_K] = {0};
                one[ex->expert] = 1.0f;
                if ((rc = mope_mix_step(d, K, one, rule, probs, err))) break;
                y = mope_sampler_sample_probs(smp, probs, V, r->tokens + r->prompt_len, r->n_resp, err);
                if (y >= 0 && ex->sentence && ends_sentence(tok, y)) {
                    head_over[i] = true;
                    if (tail_left[i] > 0) tail_left[i] = 1; /* this token is the tail's last */
                }
                if (tail_left[i] > 0) tail_left[i]--;
            }
            if (y < 0) {
                rc = y;
                break;
            }
            double lp = 0;
            if ((rc = mope_mix_token_probs(d, K, y, wr, rule, pk, NULL, o->skip_logp ? NULL : &lp, err))) break;
            if (!isfinite(lp)) {
                rc = mope_error_set(err, MOPE_ESTATE, "rollout %d: sampled token %d has no mass under the mixture", i,
                                    (int)y);
                break;
            }
            for (int k = 0; k < K; k++)
                if (!ru[k]) pk[k] = 0.0f; /* not run: its slot is another row's */
            r->tokens[r->prompt_len + r->n_resp] = y;
            memcpy(r->expert_probs + (size_t)r->n_resp * K, pk, sizeof(float) * (size_t)K);
            if (o->record_dists && (rc = record_step(d, K, r, i, err))) break;
            r->n_resp++;
            r->logp += lp;
            next[i] = y;
            if (o->on_token) {
                int h = o->on_token(o->user, i, t, y, w, K, err);
                if (h < 0) {
                    rc = h;
                    break;
                }
                ended[i] = h == 1;
            }
        }
        if (rc) break;
        /* phase 3: the drawn tokens into the PCM, or finish */
        for (int i = 0; i < n && !rc; i++) {
            if (done[i]) continue;
            if (ended[i] || mope_tokenizer_is_eog(tok, next[i])) {
                done[i] = true;
                continue;
            }
            if (out[i].n_resp == max_tokens) {
                out[i].truncated = true;
                done[i] = true;
                continue;
            }
            if (pcm && (rc = mope_pcm_infer_feed(pcm, i, &next[i], 1, err))) break;
        }
    }
    for (int k = 0; d && k < K; k++) mope_dist_free(&d[k]);
    free(d);
    free(probs);
    free(next);
    free(done);
    free(ended);
    free(wrow);
    free(wrun);
    free(run);
    free(fed);
    free(started);
    free(tail_left);
    free(head_over);
    return rc ? mope_error_prefix(err, "rollout") : 0;
}
