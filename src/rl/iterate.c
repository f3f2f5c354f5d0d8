/* One REBEL iteration: rollouts from the current PCM, rewards, updates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mope/rebel.h"

void mope_rebel_iter_opts_init(mope_rebel_iter_opts *o) {
    memset(o, 0, sizeof *o);
    mope_rebel_opts_init(&o->rebel);
    o->max_tokens = 64;
    o->epochs = 4;
}

int mope_rebel_iterate(mope_pcm *pcm, mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                       const char *const *instructions, const char *const *preferences, mope_sampler *sampler,
                       mope_rebel_reward_fn reward, void *user, const mope_rebel_iter_opts *o,
                       mope_rebel_iter_stats *st, mope_rollout *out_rollouts, mope_error *err) {
    if (!pcm || !experts || !instructions || !preferences || !sampler || !reward || !o || n < 1)
        return mope_error_set(err, MOPE_EINVAL, "rebel iterate: bad arguments");
    if (o->epochs < 1 || o->max_tokens < 1)
        return mope_error_set(err, MOPE_EINVAL, "rebel iterate: epochs %d and max_tokens %d must be >= 1", o->epochs,
                              o->max_tokens);
    if (!tok) return mope_error_set(err, MOPE_EINVAL, "rebel iterate: a tokenizer is required");
    mope_rebel_iter_stats s;
    memset(&s, 0, sizeof s);
    const int NR = 2 * n;
    mope_rollout *ro = out_rollouts ? out_rollouts : calloc((size_t)NR, sizeof *ro);
    const char **ins = malloc(sizeof(char *) * (size_t)NR), **prf = malloc(sizeof(char *) * (size_t)NR);
    mope_rebel_pair *pairs = malloc(sizeof *pairs * (size_t)n);
    mope_pcm_infer *pi = NULL;
    int rc = 0;
    if (out_rollouts) memset(out_rollouts, 0, sizeof *ro * (size_t)NR);
    if (!ro || !ins || !prf || !pairs) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        ins[2 * i] = ins[2 * i + 1] = instructions[i];
        prf[2 * i] = prf[2 * i + 1] = preferences[i];
    }
    if (!rc) {
        int n_ctx = mope_train_model_config(mope_pcm_trunk(pcm))->n_ctx;
        if (!(pi = mope_pcm_to_infer(pcm, NULL, NR, n_ctx, NULL, err))) rc = err ? err->code : MOPE_ENOMEM;
    }
    if (!rc) rc = mope_rollout_generate(pi, experts, K, tok, NR, ins, prf, sampler, o->max_tokens, ro, err);
    mope_pcm_infer_free(pi);
    for (int i = 0; i < n && !rc; i++) {
        double r[2];
        for (int j = 0; j < 2 && !rc; j++) {
            rc = reward(user, i, &ro[2 * i + j], &r[j], err);
            if (!rc && !isfinite(r[j]))
                rc = mope_error_set(err, MOPE_EINVAL, "rebel iterate: reward of item %d is not finite", i);
            if (!rc) {
                s.mean_reward += r[j] / NR;
                s.mean_len += (double)ro[2 * i + j].n_resp / NR;
                s.truncated_share += (ro[2 * i + j].truncated ? 1.0 : 0.0) / NR;
            }
        }
        if (!rc) pairs[i] = (mope_rebel_pair){mope_rollout_sample(&ro[2 * i], r[0]), mope_rollout_sample(&ro[2 * i + 1], r[1])};
    }
    for (int e = 0; e < o->epochs && !rc; e++) {
        mope_rebel_stats es;
        rc = mope_rebel_step(pcm, pairs, n, &o->rebel, &es, err);
        if (!rc) {
            if (e == 0) s.first = es;
            s.last = es;
        }
    }
    if (!rc) {
        mope_rebel_stats after;
        rc = mope_rebel_eval(pcm, pairs, n, &o->rebel, &after, err);
        s.loss_after = after.loss;
    }
    if (!out_rollouts && ro)
        for (int i = 0; i < NR; i++) mope_rollout_free(&ro[i]);
    if (!out_rollouts) free(ro);
    free(ins);
    free(prf);
    free(pairs);
    if (!rc && st) *st = s;
    return rc ? mope_error_prefix(err, "rebel iterate") : 0;
}
