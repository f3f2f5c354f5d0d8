/* Reward models on the engine against the trainer's own scoring of the same
 * file (mope_trainer_seq_score: the f32 training forward, a separate
 * implementation), and the Bradley-Terry / utility arithmetic on
 * hand-computed values.
 *
 * Tolerance 1e-4 on scores of magnitude ~1 (the value head is scaled to
 * N(0, 1) so scores are not near zero): both paths are f32 with different
 * summation orders; measured differences are printed (~1e-6). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mope/reward.h"
#include "mope/trainer.h"

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "%s/test_reward_%s_%d.gguf", MOPE_BINARY_DIR, tag, (int)getpid());
}

static mope_train_model *make_rm(int n_vocab, uint64_t seed) {
    mope_error err = {0};
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = n_vocab;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 64;
    c.n_ctx = 64;
    c.value_head = true;
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, seed);
    const mope_train_tensor *t = mope_train_model_find(m, "mope.value_head.weight");
    assert_non_null(t);
    mope_rng r;
    mope_rng_seed(&r, seed + 1);
    float *P = mope_train_model_params(m);
    for (size_t i = 0; i < t->n; i++) P[t->offset + i] = mope_rng_normal(&r);
    P[mope_train_model_find(m, "mope.value_head.bias")->offset] = 0.3f;
    return m;
}

static void test_scores_match_trainer(void **state) {
    (void)state;
    mope_error err = {0};
    char path[512];
    tmp_path(path, sizeof path, "rm");
    mope_train_model *m = make_rm(64, 5);
    assert_int_equal(mope_train_model_save(m, path, NULL, &err), 0);

    enum { N = 5 };
    int32_t toks[N][20];
    mope_seq seqs[N];
    const mope_seq *ps[N];
    const int32_t *tp[N];
    int32_t lens[N];
    mope_rng r;
    mope_rng_seed(&r, 9);
    for (int i = 0; i < N; i++) {
        lens[i] = 1 + (int32_t)mope_rng_below(&r, 20);
        for (int j = 0; j < lens[i]; j++) toks[i][j] = (int32_t)mope_rng_below(&r, 64);
        seqs[i] = (mope_seq){.tokens = toks[i], .len = lens[i], .prompt_len = 1};
        ps[i] = &seqs[i];
        tp[i] = toks[i];
    }
    float want[N], got[N], got2[N];
    assert_int_equal(mope_trainer_seq_score(m, ps, N, 2, want, &err), 0);

    mope_reward_model *rm = mope_reward_load(path, 3, 0, NULL, &err); /* 2 forward calls: 3 + 2 */
    assert_non_null(rm);
    assert_int_equal(mope_reward_score_tokens(rm, tp, lens, N, got, &err), 0);
    assert_int_equal(mope_reward_score_seqs(rm, ps, N, got2, &err), 0);
    double worst = 0, spread = 0;
    for (int i = 0; i < N; i++) {
        worst = fmax(worst, fabs(got[i] - want[i]));
        spread = fmax(spread, fabs(want[i] - want[0]));
        assert_true(got2[i] == got[i]);
    }
    printf("engine vs trainer scores: worst difference %.3g (scores spread %.3f)\n", worst, spread);
    assert_true(worst < 1e-4);
    assert_true(spread > 0.1);

    /* bad input */
    int32_t long_len = 65, zero = 0;
    const int32_t *one[1] = {toks[0]};
    assert_int_equal(mope_reward_score_tokens(rm, one, &long_len, 1, got, &err), MOPE_ERANGE);
    assert_int_equal(mope_reward_score_tokens(rm, one, &zero, 1, got, &err), MOPE_EINVAL);
    int32_t bad_tok[2] = {3, 64}, two = 2;
    const int32_t *bt[1] = {bad_tok};
    assert_true(mope_reward_score_tokens(rm, bt, &two, 1, got, &err) < 0);
    /* and it still works afterwards */
    assert_int_equal(mope_reward_score_tokens(rm, tp, lens, 1, got, &err), 0);
    assert_true(fabs(got[0] - want[0]) < 1e-4);
    mope_reward_free(rm);
    mope_train_model_free(m);

    /* a plain language model is not a reward model */
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 64;
    mope_train_model *lm = mope_train_model_new(&c, 1, &err);
    mope_train_model_init_random(lm, 1);
    assert_int_equal(mope_train_model_save(lm, path, NULL, &err), 0);
    mope_train_model_free(lm);
    assert_null(mope_reward_load(path, 1, 0, NULL, &err));
    assert_non_null(strstr(err.msg, "not a reward model"));
    unlink(path);
}

/* Text pairs formatted exactly as `mope train rm` formats them. */
static void test_text_matches_trainer_format(void **state) {
    (void)state;
    mope_error err = {0};
    char tpath[512], path[512];
    tmp_path(tpath, sizeof tpath, "tok");
    tmp_path(path, sizeof path, "rmtxt");
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.n_vocab = 600;
    assert_int_equal(mope_model_write_random(tpath, &hp, MOPE_TYPE_F32, 1, NULL, &err), 0);
    mope_tokenizer *tok = mope_tokenizer_load(tpath, &err);
    assert_non_null(tok);
    mope_train_model *m = make_rm(mope_tokenizer_n_vocab(tok), 8);
    assert_int_equal(mope_train_model_save(m, path, NULL, &err), 0);
    mope_dataset_opts o;
    mope_dataset_opts_init(&o);
    o.tok = tok;
    o.n_ctx = 64;
    o.chat = MOPE_CHAT_TULU;
    const char *prompt = "What is a glacier?";
    const char *resp[2] = {"A slow river of ice.", "ice"};
    mope_reward_model *rm = mope_reward_load(path, 2, 0, NULL, &err);
    assert_non_null(rm);
    float R[2];
    for (int i = 0; i < 2; i++) {
        mope_seq s;
        assert_int_equal(mope_dataset_make_seq(&o, prompt, resp[i], &s, NULL, &err), 0);
        const mope_seq *ps = &s;
        float want;
        assert_int_equal(mope_trainer_seq_score(m, &ps, 1, 1, &want, &err), 0);
        assert_int_equal(mope_reward_score_text(rm, &o, prompt, resp[i], &R[i], &err), 0);
        assert_true(fabs(R[i] - want) < 1e-4);
        mope_seq_free(&s);
    }
    assert_true(R[0] != R[1]);

    /* utility of a 2-choice preference: expected from the trainer's scores
     * of response and reference under two reward models */
    char path2[512];
    tmp_path(path2, sizeof path2, "rm2");
    mope_train_model *m2 = make_rm(mope_tokenizer_n_vocab(tok), 31);
    assert_int_equal(mope_train_model_save(m2, path2, NULL, &err), 0);
    mope_reward_model *rm2 = mope_reward_load(path2, 2, 0, NULL, &err);
    assert_non_null(rm2);
    mope_seq sr, sf;
    assert_int_equal(mope_dataset_make_seq(&o, prompt, resp[0], &sr, NULL, &err), 0);
    assert_int_equal(mope_dataset_make_seq(&o, prompt, resp[1], &sf, NULL, &err), 0);
    const mope_seq *both[2] = {&sr, &sf};
    float s1[2], s2[2];
    assert_int_equal(mope_trainer_seq_score(m, both, 2, 2, s1, &err), 0);
    assert_int_equal(mope_trainer_seq_score(m2, both, 2, 2, s2, &err), 0);
    double e1 = 1.0 / (1.0 + exp(-(s1[0] - s1[1]))), e2 = 1.0 / (1.0 + exp(-(s2[0] - s2[1])));
    mope_reward_model *rms[2] = {rm, rm2};
    double u, rr[2], a[2] = {3, 1};
    assert_int_equal(mope_reward_preference_utility(rms, 2, &o, prompt, resp[0], resp[1], NULL, NULL, &u, rr, &err), 0);
    assert_true(fabs(rr[0] - e1) < 1e-5 && fabs(rr[1] - e2) < 1e-5);
    assert_true(fabs(u - (e1 + e2) / 2) < 1e-5);
    assert_true(fabs(rr[0] - 0.5) > 1e-3); /* not a trivial 1/2 */
    float Rref[2] = {s1[1], s2[1]};
    assert_int_equal(mope_reward_preference_utility(rms, 2, &o, prompt, resp[0], NULL, Rref, a, &u, NULL, &err), 0);
    assert_true(fabs(u - (3 * e1 + e2) / 4) < 1e-5);
    assert_int_equal(mope_reward_preference_utility(rms, 2, &o, prompt, resp[0], NULL, NULL, NULL, &u, NULL, &err),
                     MOPE_EINVAL);
    mope_seq_free(&sr);
    mope_seq_free(&sf);
    mope_reward_free(rm2);
    mope_train_model_free(m2);
    unlink(path2);
    mope_reward_free(rm);
    mope_train_model_free(m);
    mope_tokenizer_free(tok);
    unlink(path);
    unlink(tpath);
}

/* sigmoid(R - R_ref) and utilities, by hand:
 *   R - R_ref = 0        -> 1/2
 *   R - R_ref = ln 3     -> 3 / (3 + 1) = 0.75
 *   R - R_ref = -ln 4    -> 1 / 5 = 0.2
 *   mean(.75, .5, .2) = 1.45 / 3 = 0.483333...
 *   weights (2, 1, 1): (1.5 + .5 + .2) / 4 = 0.55 */
static void test_normalise_and_utility(void **state) {
    (void)state;
    mope_error err = {0};
    assert_true(fabs(mope_reward_bt_normalise(1.5, 1.5) - 0.5) < 1e-15);
    assert_true(fabs(mope_reward_bt_normalise(2.0 + log(3.0), 2.0) - 0.75) < 1e-12);
    assert_true(fabs(mope_reward_bt_normalise(-1.0 - log(4.0), -1.0) - 0.2) < 1e-12);
    assert_true(mope_reward_bt_normalise(-800, 0) >= 0 && mope_reward_bt_normalise(-800, 0) < 1e-300);
    assert_true(mope_reward_bt_normalise(800, 0) == 1.0);
    double r[3] = {0.75, 0.5, 0.2}, a[3] = {2, 1, 1}, u;
    assert_int_equal(mope_reward_utility(r, NULL, 3, &u, &err), 0);
    assert_true(fabs(u - 1.45 / 3) < 1e-12);
    assert_int_equal(mope_reward_utility(r, a, 3, &u, &err), 0);
    assert_true(fabs(u - 0.55) < 1e-12);
    double z[3] = {0, 0, 0}, neg[3] = {1, -1, 1}, nanr[3] = {0.5, NAN, 0.5};
    assert_int_equal(mope_reward_utility(r, z, 3, &u, &err), MOPE_EINVAL);
    assert_int_equal(mope_reward_utility(r, neg, 3, &u, &err), MOPE_EINVAL);
    assert_int_equal(mope_reward_utility(nanr, NULL, 3, &u, &err), MOPE_EINVAL);
    assert_int_equal(mope_reward_utility(r, NULL, 0, &u, &err), MOPE_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scores_match_trainer),
        cmocka_unit_test(test_text_matches_trainer_format),
        cmocka_unit_test(test_normalise_and_utility),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
