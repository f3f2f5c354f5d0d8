/* One REBEL iteration on real (engine) experts: two local experts over one
 * random model with different preference prompts, a PCM trained in memory
 * and re-viewed by the engine between iterations (mope_pcm_to_infer).
 * Checked: the first update sees log-ratios ~0 (the rollouts' recorded
 * log-probabilities match the trainable PCM), the rewards reported are the
 * reward function's, the PCM takes `epochs` updates per iteration, the
 * batch loss falls over those updates, and the in-memory inference view
 * gives the same weights as a saved-and-loaded file. */
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

enum { K = 2, N = 3, MAXT = 6 };

/* item i even: reward tokens expert 0 likes more than expert 1; odd: the reverse */
static int reward_fn(void *user, int item, const mope_rollout *r, double *out, mope_error *err) {
    (void)err;
    int *calls = user;
    (*calls)++;
    int good = 0;
    for (int t = 0; t < r->n_resp; t++) {
        bool zero = r->expert_probs[t * K] > r->expert_probs[t * K + 1];
        good += zero == (item % 2 == 0);
    }
    *out = (double)good / r->n_resp;
    return 0;
}

static void test_iterate(void **state) {
    (void)state;
    mope_error err = {0};
    char mpath[512], ppath[512];
    snprintf(mpath, sizeof mpath, "%s/test_rl_iterate_m_%d.gguf", MOPE_BINARY_DIR, (int)getpid());
    snprintf(ppath, sizeof ppath, "%s/test_rl_iterate_p_%d.gguf", MOPE_BINARY_DIR, (int)getpid());
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    assert_int_equal(mope_model_write_random(mpath, &hp, MOPE_TYPE_F32, 21, NULL, &err), 0);
    mope_model *m = mope_model_load(mpath, &err);
    assert_non_null(m);
    mope_tokenizer *tok = mope_tokenizer_from_gguf(mope_model_gguf(m), &err);
    assert_non_null(tok);
    const char *prefs_ex[K] = {"Generate a response that is concise.", "Generate a response in an unfriendly manner."};
    mope_expert *ex[K];
    for (int k = 0; k < K; k++) {
        mope_expert_config c;
        mope_expert_config_init(&c);
        c.preference = prefs_ex[k];
        c.n_seq = 2 * N;
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
    const char *ids[K] = {"concise", "unfriendly"};
    mope_pcm *pcm = mope_pcm_new(&tc, K, ids, MOPE_MIX_LINEAR, 1, 5, &err);
    assert_non_null(pcm);

    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 4;
    mope_sampler *smp = mope_sampler_new(&sp, &err);
    assert_non_null(smp);
    const char *instr[N] = {"What is a glacier?", "What is a glacier?", "Tell me about the moon."};
    const char *prefs[N] = {"concise", "unfriendly", "concise, please"};
    mope_rebel_iter_opts o;
    mope_rebel_iter_opts_init(&o);
    o.max_tokens = MAXT;
    o.epochs = 3;
    o.rebel.eta = 0.5;
    o.rebel.length_penalty = 0.1;
    o.rebel.adamw.lr = o.rebel.adamw.min_lr = 1e-3f;
    int calls = 0;
    mope_rollout ro[2 * N];
    mope_rebel_iter_stats st;
    for (int it = 0; it < 2; it++) {
        assert_int_equal(
            mope_rebel_iterate(pcm, ex, K, tok, N, instr, prefs, smp, reward_fn, &calls, &o, &st, ro, &err), 0);
        assert_int_equal(calls, 2 * N * (it + 1));
        assert_int_equal(mope_pcm_step_count(pcm), o.epochs * (it + 1));
        double mr = 0, trunc = 0;
        for (int i = 0; i < 2 * N; i++) {
            double r;
            int dummy = 0;
            reward_fn(&dummy, i / 2, &ro[i], &r, &err);
            mr += r / (2 * N);
            trunc += ro[i].truncated / (2.0 * N);
        }
        assert_true(fabs(mr - st.mean_reward) < 1e-12);
        assert_true(fabs(trunc - st.truncated_share) < 1e-12);
        assert_true(fabs(st.first.mean_logratio) < 1e-3);
        printf("iteration %d: reward %.3f, loss %.4f -> %.4f, grad norm %.3g\n", it, st.mean_reward, st.first.loss,
               st.loss_after, st.first.grad_norm);
        assert_true(st.first.loss > 0);
        assert_true(st.loss_after < st.first.loss);
        for (int i = 0; i < 2 * N; i++) mope_rollout_free(&ro[i]);
    }

    /* the in-memory view equals a file round trip, bit for bit */
    assert_int_equal(mope_pcm_save(pcm, ppath, tok, &err), 0);
    mope_pcm_infer *a = mope_pcm_infer_load(ppath, 1, 0, NULL, &err);
    mope_pcm_infer *b = mope_pcm_to_infer(pcm, tok, 1, 0, NULL, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(mope_pcm_infer_tokenizer(b));
    float wa[K], wb[K];
    assert_int_equal(mope_pcm_infer_start_text(a, 0, instr[0], prefs[0], &err), 0);
    assert_int_equal(mope_pcm_infer_start_text(b, 0, instr[0], prefs[0], &err), 0);
    assert_int_equal(mope_pcm_infer_weights(a, 0, wa, &err), 0);
    assert_int_equal(mope_pcm_infer_weights(b, 0, wb, &err), 0);
    assert_memory_equal(wa, wb, sizeof wa);
    assert_true(wa[0] != 0.5f); /* training moved the weights */
    mope_pcm_infer_free(a);
    mope_pcm_infer_free(b);

    /* bad options */
    o.epochs = 0;
    assert_int_equal(mope_rebel_iterate(pcm, ex, K, tok, N, instr, prefs, smp, reward_fn, &calls, &o, &st, NULL, &err),
                     MOPE_EINVAL);

    mope_sampler_free(smp);
    mope_pcm_free(pcm);
    for (int k = 0; k < K; k++) mope_expert_free(ex[k]);
    mope_tokenizer_free(tok);
    mope_model_free(m);
    unlink(mpath);
    unlink(ppath);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iterate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
