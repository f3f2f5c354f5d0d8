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
    memset(r, 0, sizeof *r);
}

mope_rebel_sample mope_rollout_sample(const mope_rollout *r, double reward) {
    return (mope_rebel_sample){.tokens = r->tokens, .prompt_len = r->prompt_len, .n_resp = r->n_resp,
                               .expert_probs = r->expert_probs, .logp_rollout = r->logp, .reward = reward,
                               .truncated = r->truncated};
}

/* Prompts of every rollout into the PCM and the experts. */
static int start_all(mope_pcm_infer *pcm, mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                     const char *const *instr, const char *const *pref, int max_tokens, mope_rollout *out,
                     mope_error *err) {
    for (int i = 0; i < n; i++) {
        if (!instr[i] || !pref[i]) return mope_error_set(err, MOPE_EINVAL, "rollout %d: NULL instruction or preference", i);
        int32_t *pt = NULL;
        int np = mope_pcm_prompt_tokens(tok, instr[i], pref[i], &pt, err);
        if (np < 0) return np;
        out[i].K = K;
        out[i].tokens = malloc(sizeof(int32_t) * (size_t)(np + max_tokens));
        out[i].expert_probs = malloc(sizeof(float) * (size_t)max_tokens * K);
        if (!out[i].tokens || !out[i].expert_probs) {
            free(pt);
            return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        }
        memcpy(out[i].tokens, pt, sizeof(int32_t) * (size_t)np);
        out[i].prompt_len = np;
        int rc = mope_pcm_infer_start(pcm, i, pt, np, err);
        free(pt);
        if (rc) return mope_error_prefix(err, "rollout %d: PCM prompt", i);
        for (int k = 0; k < K; k++)
            if ((rc = mope_expert_start(experts[k], i, instr[i], err)))
                return mope_error_prefix(err, "rollout %d: expert %s", i, mope_expert_name(experts[k]));
    }
    return 0;
}

int mope_rollout_generate(mope_pcm_infer *pcm, mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                          const char *const *instructions, const char *const *preferences, mope_sampler *sampler,
                          int max_tokens, mope_rollout *out, mope_error *err) {
    if (!pcm || !experts || !instructions || !preferences || !sampler || !out || n < 1 || max_tokens < 1)
        return mope_error_set(err, MOPE_EINVAL, "rollout: bad arguments");
    for (int i = 0; i < n; i++) memset(&out[i], 0, sizeof out[i]);
    const mope_pcm_meta *meta = mope_pcm_infer_meta(pcm);
    if (K != meta->K)
        return mope_error_set(err, MOPE_EINVAL, "rollout: %d experts given, the PCM weighs %d", K, meta->K);
    if (!tok && !(tok = mope_pcm_infer_tokenizer(pcm)))
        return mope_error_set(err, MOPE_EINVAL, "rollout: no tokenizer given and none in the PCM file");
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
    mope_dist *d = calloc((size_t)K, sizeof *d);
    float *probs = malloc(sizeof(float) * (size_t)V);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)n);
    bool *done = calloc((size_t)n, sizeof *done);
    int rc = 0;
    if (!d || !probs || !next || !done) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) rc = start_all(pcm, experts, K, tok, n, instructions, preferences, max_tokens, out, err);
    for (int t = 0; t < max_tokens && !rc; t++) {
        int active = 0;
        /* phase 1: every active rollout draws its next token (the first
         * PCM / group call evaluates all sequences' fed tokens at once) */
        for (int i = 0; i < n && !rc; i++) {
            if (done[i]) continue;
            active++;
            float w[MOPE_PCM_MAX_K], pk[MOPE_PCM_MAX_K];
            if ((rc = mope_pcm_infer_weights(pcm, i, w, err))) break;
            for (int k = 0; k < K && !rc; k++) rc = mope_expert_next(experts[k], i, &d[k], err);
            if (!rc) rc = mope_mix_step(d, K, w, meta->rule, probs, err);
            if (rc) break;
            mope_rollout *r = &out[i];
            int32_t y = mope_sampler_sample_probs(sampler, probs, V, r->tokens + r->prompt_len, r->n_resp, err);
            if (y < 0) {
                rc = y;
                break;
            }
            double lp;
            if ((rc = mope_mix_token_probs(d, K, y, w, meta->rule, pk, NULL, &lp, err))) break;
            if (!isfinite(lp)) {
                rc = mope_error_set(err, MOPE_ESTATE, "rollout %d: sampled token %d has no mass under the mixture", i,
                                    (int)y);
                break;
            }
            r->tokens[r->prompt_len + r->n_resp] = y;
            memcpy(r->expert_probs + (size_t)r->n_resp * K, pk, sizeof(float) * (size_t)K);
            r->n_resp++;
            r->logp += lp;
            next[i] = y;
        }
        if (rc || !active) break;
        /* phase 2: feed the drawn tokens, or finish */
        for (int i = 0; i < n && !rc; i++) {
            if (done[i]) continue;
            if (mope_tokenizer_is_eog(tok, next[i])) {
                done[i] = true;
                continue;
            }
            if (out[i].n_resp == max_tokens) {
                out[i].truncated = true;
                done[i] = true;
                continue;
            }
            if ((rc = mope_pcm_infer_feed(pcm, i, &next[i], 1, err))) break;
            for (int k = 0; k < K && !rc; k++) rc = mope_expert_feed(experts[k], i, &next[i], 1, err);
        }
    }
    for (int k = 0; d && k < K; k++) mope_dist_free(&d[k]);
    free(d);
    free(probs);
    free(next);
    free(done);
    return rc ? mope_error_prefix(err, "rollout") : 0;
}
