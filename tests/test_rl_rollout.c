/* Rollouts from the PCM-weighted mixture of two local experts (one random
 * model, two preference prompts), checked against independent
 * recomputation:
 *  - every recorded pi_k(y_t) equals a fresh single-sequence expert's
 *    probability of that token after the same prefix (same engine, so the
 *    tolerance is float rounding of exp / softmax, 1e-5);
 *  - the recorded log pi_t(y) equals sum_t log sum_k w_t,k pi_k(y_t) with
 *    the weights of the trainable PCM loaded from the same file (trainer vs
 *    engine trunk: 1e-3 on sums of ~10 logs);
 *  - so REBEL's first epoch on these rollouts sees log-ratios ~0;
 *  - the truncation flag matches "max_tokens reached without EOS". */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mope/rebel.h"

static const char *PREFS[2] = {"Generate a response that is concise.", "Generate a response in a friendly manner."};

static void test_rollouts_consistent(void **state) {
    (void)state;
    mope_error err = {0};
    char mpath[512], ppath[512];
    snprintf(mpath, sizeof mpath, "%s/test_rl_rollout_m_%d.gguf", MOPE_BINARY_DIR, (int)getpid());
    snprintf(ppath, sizeof ppath, "%s/test_rl_rollout_p_%d.gguf", MOPE_BINARY_DIR, (int)getpid());
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    assert_int_equal(mope_model_write_random(mpath, &hp, MOPE_TYPE_F32, 13, NULL, &err), 0);
    mope_model *m = mope_model_load(mpath, &err);
    assert_non_null(m);
    mope_tokenizer *tok = mope_tokenizer_from_gguf(mope_model_gguf(m), &err);
    assert_non_null(tok);

    enum { K = 2, N = 3, MAXT = 8 };
    mope_expert *ex[K];
    for (int k = 0; k < K; k++) {
        mope_expert_config c;
        mope_expert_config_init(&c);
        c.preference = PREFS[k];
        c.n_seq = N;
        c.n_ctx = 128;
        ex[k] = mope_expert_local_new(m, &c, &err);
        assert_non_null(ex[k]);
    }
    mope_train_config tc;
    mope_train_config_init(&tc);
    tc.n_vocab = mope_tokenizer_n_vocab(tok);
    tc.n_embd = 32;
    tc.n_head = 4;
    tc.n_head_kv = 2;
    tc.n_ff = 64;
    tc.n_ctx = 128;
    const char *ids[K] = {"concise", "friendly"};
    mope_pcm *pcm = mope_pcm_new(&tc, K, ids, MOPE_MIX_LINEAR, 1, 5, &err);
    assert_non_null(pcm);
    mope_rng r;
    mope_rng_seed(&r, 3);
    float *head = mope_pcm_head_params(pcm);
    for (int i = 0; i < K * tc.n_embd + K; i++) head[i] = 2.0f * mope_rng_normal(&r);
    assert_int_equal(mope_pcm_save(pcm, ppath, tok, &err), 0);
    mope_pcm_infer *pi = mope_pcm_infer_load(ppath, N, 0, NULL, &err);
    assert_non_null(pi);

    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 99;
    mope_sampler *smp = mope_sampler_new(&sp, &err);
    assert_non_null(smp);
    const char *instr[N] = {"What is a glacier?", "What is a glacier?", "Tell me about the moon."};
    const char *prefs[N] = {"concise and friendly", "anything at all, in any words", "like a pirate"};
    mope_rollout ro[N];
    assert_int_equal(mope_rollout_generate(pi, ex, K, NULL, N, instr, prefs, smp, MAXT, ro, &err), 0);

    /* independent recomputation */
    double worst_p = 0, worst_lp = 0;
    for (int i = 0; i < N; i++) {
        assert_true(ro[i].n_resp >= 1 && ro[i].n_resp <= MAXT);
        int32_t last = ro[i].tokens[ro[i].prompt_len + ro[i].n_resp - 1];
        assert_true(ro[i].truncated == (ro[i].n_resp == MAXT && !mope_tokenizer_is_eog(tok, last)));
        int32_t *pt = NULL;
        int np = mope_pcm_prompt_tokens(tok, instr[i], prefs[i], &pt, &err);
        assert_int_equal(np, ro[i].prompt_len);
        assert_memory_equal(pt, ro[i].tokens, sizeof(int32_t) * (size_t)np);
        free(pt);
        const int32_t *resp = ro[i].tokens + ro[i].prompt_len;
        for (int k = 0; k < K; k++) {
            mope_expert_config c;
            mope_expert_config_init(&c);
            c.preference = PREFS[k];
            c.n_ctx = 128;
            mope_expert *e = mope_expert_local_new(m, &c, &err);
            assert_non_null(e);
            assert_int_equal(mope_expert_start(e, 0, instr[i], &err), 0);
            mope_dist d = {0};
            for (int t = 0; t < ro[i].n_resp; t++) {
                assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
                double p = exp(mope_dist_logprob(&d, resp[t]));
                worst_p = fmax(worst_p, fabs(p - ro[i].expert_probs[t * K + k]));
                assert_int_equal(mope_expert_feed(e, 0, &resp[t], 1, &err), 0);
            }
            mope_dist_free(&d);
            mope_expert_free(e);
        }
        int T = ro[i].prompt_len + ro[i].n_resp;
        float *w = malloc(sizeof(float) * (size_t)T * K);
        assert_int_equal(mope_pcm_forward(pcm, ro[i].tokens, 1, T, w, &err), 0);
        double lp = 0;
        for (int t = 0; t < ro[i].n_resp; t++) {
            const float *wt = w + (size_t)(ro[i].prompt_len - 1 + t) * K;
            lp += log(wt[0] * ro[i].expert_probs[t * K] + wt[1] * ro[i].expert_probs[t * K + 1]);
        }
        worst_lp = fmax(worst_lp, fabs(lp - ro[i].logp));
        free(w);
    }
    printf("rollouts: worst expert-probability error %.3g, worst log-prob error %.3g\n", worst_p, worst_lp);
    assert_true(worst_p < 1e-5);
    assert_true(worst_lp < 1e-3);

    /* REBEL on a pair of them: log-ratios start at ~0 */
    mope_rebel_pair pair = {mope_rollout_sample(&ro[0], 0.8), mope_rollout_sample(&ro[1], 0.3)};
    mope_rebel_opts o;
    mope_rebel_opts_init(&o);
    mope_rebel_stats st;
    assert_int_equal(mope_rebel_eval(pcm, &pair, 1, &o, &st, &err), 0);
    assert_true(fabs(st.mean_logratio) < 1e-3);
    assert_true(fabs(st.rebel_loss - 0.25) < 1e-3); /* (0 - (0.8 - 0.3))^2 */

    /* mismatched expert count is refused */
    mope_rollout bad[1];
    assert_int_equal(mope_rollout_generate(pi, ex, 1, NULL, 1, instr, prefs, smp, MAXT, bad, &err), MOPE_EINVAL);
    mope_rollout_free(&bad[0]);

    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);
    mope_sampler_free(smp);
    mope_pcm_infer_free(pi);
    mope_pcm_free(pcm);
    for (int k = 0; k < K; k++) mope_expert_free(ex[k]);
    mope_tokenizer_free(tok);
    mope_model_free(m);
    unlink(mpath);
    unlink(ppath);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollouts_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
