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
 *  - the truncation flag matches "max_tokens reached without EOS";
 *  - with min_weight, the log-probability is the renormalised mixture of
 *    the experts that ran, each from its full context (skipped experts
 *    catch up);
 *  - steered stretches (exploration) follow the steering expert while the
 *    recorded probabilities stay the mixture's (scripted experts, tokens
 *    written out by hand). */
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

/* One random model, K local experts over it with the two preference
 * prompts, and a PCM with a random head (large enough that its weights vary
 * from token to token), saved and loaded for inference. */
enum { K = 2 };
typedef struct rig {
    char mpath[512], ppath[512];
    mope_model *m;
    mope_tokenizer *tok;
    mope_expert *ex[K];
    mope_pcm *pcm;
    mope_pcm_infer *pi;
} rig;

static void rig_open_rule(rig *g, const char *tag, int n_seq, mope_mix_rule rule) {
    mope_error err = {0};
    snprintf(g->mpath, sizeof g->mpath, "%s/test_rl_rollout_%s_m_%d.gguf", MOPE_BINARY_DIR, tag, (int)getpid());
    snprintf(g->ppath, sizeof g->ppath, "%s/test_rl_rollout_%s_p_%d.gguf", MOPE_BINARY_DIR, tag, (int)getpid());
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    assert_int_equal(mope_model_write_random(g->mpath, &hp, MOPE_TYPE_F32, 13, NULL, &err), 0);
    g->m = mope_model_load(g->mpath, &err);
    assert_non_null(g->m);
    g->tok = mope_tokenizer_from_gguf(mope_model_gguf(g->m), &err);
    assert_non_null(g->tok);
    for (int k = 0; k < K; k++) {
        mope_expert_config c;
        mope_expert_config_init(&c);
        c.preference = PREFS[k];
        c.n_seq = n_seq;
        c.n_ctx = 128;
        g->ex[k] = mope_expert_local_new(g->m, &c, &err);
        assert_non_null(g->ex[k]);
    }
    mope_train_config tc;
    mope_train_config_init(&tc);
    tc.n_vocab = mope_tokenizer_n_vocab(g->tok);
    tc.n_embd = 32;
    tc.n_head = 4;
    tc.n_head_kv = 2;
    tc.n_ff = 64;
    tc.n_ctx = 128;
    const char *ids[K] = {"concise", "friendly"};
    g->pcm = mope_pcm_new(&tc, K, ids, rule, 1, 5, &err);
    assert_non_null(g->pcm);
    mope_rng r;
    mope_rng_seed(&r, 3);
    float *head = mope_pcm_head_params(g->pcm);
    for (int i = 0; i < K * tc.n_embd + K; i++) head[i] = 2.0f * mope_rng_normal(&r);
    assert_int_equal(mope_pcm_save(g->pcm, g->ppath, g->tok, &err), 0);
    g->pi = mope_pcm_infer_load(g->ppath, n_seq, 0, NULL, &err);
    assert_non_null(g->pi);
}

static void rig_open(rig *g, const char *tag, int n_seq) { rig_open_rule(g, tag, n_seq, MOPE_MIX_LINEAR); }

static void rig_close(rig *g) {
    mope_pcm_infer_free(g->pi);
    mope_pcm_free(g->pcm);
    for (int k = 0; k < K; k++) mope_expert_free(g->ex[k]);
    mope_tokenizer_free(g->tok);
    mope_model_free(g->m);
    unlink(g->mpath);
    unlink(g->ppath);
}

/* p[t * K + k] = pi_k(resp[t] | prompt i, resp[<t]) from a fresh
 * single-sequence expert fed every token. */
static void fresh_probs(const rig *g, const char *instr, const int32_t *resp, int n, double *p) {
    mope_error err = {0};
    for (int k = 0; k < K; k++) {
        mope_expert_config c;
        mope_expert_config_init(&c);
        c.preference = PREFS[k];
        c.n_ctx = 128;
        mope_expert *e = mope_expert_local_new(g->m, &c, &err);
        assert_non_null(e);
        assert_int_equal(mope_expert_start(e, 0, instr, &err), 0);
        mope_dist d = {0};
        for (int t = 0; t < n; t++) {
            assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
            p[t * K + k] = exp(mope_dist_logprob(&d, resp[t]));
            assert_int_equal(mope_expert_feed(e, 0, &resp[t], 1, &err), 0);
        }
        mope_dist_free(&d);
        mope_expert_free(e);
    }
}

static mope_sampler *plain_sampler(uint64_t seed) {
    mope_error err = {0};
    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = seed;
    mope_sampler *smp = mope_sampler_new(&sp, &err);
    assert_non_null(smp);
    return smp;
}

/* REBEL on the pair ro[0], ro[1] under the PCM they were sampled from:
 * log-ratios ~0, so the loss is the reward gap squared. */
static void rebel_starts_at_zero(mope_pcm *pcm, const mope_rollout *ro) {
    mope_error err = {0};
    mope_rebel_pair pair = {mope_rollout_sample(&ro[0], 0.8), mope_rollout_sample(&ro[1], 0.3)};
    mope_rebel_opts o;
    mope_rebel_opts_init(&o);
    mope_rebel_stats st;
    assert_int_equal(mope_rebel_eval(pcm, &pair, 1, &o, &st, &err), 0);
    assert_true(fabs(st.mean_logratio) < 1e-3);
    assert_true(fabs(st.rebel_loss - 0.25) < 1e-3); /* (0 - (0.8 - 0.3))^2 */
}

static void test_rollouts_consistent(void **state) {
    (void)state;
    mope_error err = {0};
    enum { N = 3, MAXT = 8 };
    rig g;
    rig_open(&g, "c", N);
    mope_sampler *smp = plain_sampler(99);
    const char *instr[N] = {"What is a glacier?", "What is a glacier?", "Tell me about the moon."};
    const char *prefs[N] = {"concise and friendly", "anything at all, in any words", "like a pirate"};
    mope_rollout ro[N];
    assert_int_equal(mope_rollout_generate(g.pi, g.ex, K, NULL, N, instr, prefs, smp, MAXT, ro, &err), 0);

    /* independent recomputation */
    double worst_p = 0, worst_lp = 0;
    for (int i = 0; i < N; i++) {
        assert_true(ro[i].n_resp >= 1 && ro[i].n_resp <= MAXT);
        int32_t last = ro[i].tokens[ro[i].prompt_len + ro[i].n_resp - 1];
        assert_true(ro[i].truncated == (ro[i].n_resp == MAXT && !mope_tokenizer_is_eog(g.tok, last)));
        int32_t *pt = NULL;
        int np = mope_pcm_prompt_tokens(g.tok, instr[i], prefs[i], &pt, &err);
        assert_int_equal(np, ro[i].prompt_len);
        assert_memory_equal(pt, ro[i].tokens, sizeof(int32_t) * (size_t)np);
        free(pt);
        double p[MAXT * K];
        fresh_probs(&g, instr[i], ro[i].tokens + ro[i].prompt_len, ro[i].n_resp, p);
        for (int t = 0; t < ro[i].n_resp * K; t++) worst_p = fmax(worst_p, fabs(p[t] - ro[i].expert_probs[t]));
        int T = ro[i].prompt_len + ro[i].n_resp;
        float *w = malloc(sizeof(float) * (size_t)T * K);
        assert_int_equal(mope_pcm_forward(g.pcm, ro[i].tokens, 1, T, w, &err), 0);
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

    rebel_starts_at_zero(g.pcm, ro);

    /* mismatched expert count is refused */
    mope_rollout bad[1];
    assert_int_equal(mope_rollout_generate(g.pi, g.ex, 1, NULL, 1, instr, prefs, smp, MAXT, bad, &err), MOPE_EINVAL);
    mope_rollout_free(&bad[0]);

    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);
    mope_sampler_free(smp);
    rig_close(&g);
}

/* A geometric PCM's rollouts record every expert's whole log-distribution:
 * each recorded row must be a log-softmax (sums to 1) agreeing with the
 * recorded probability of the sampled token (itself checked against fresh
 * experts), and the recorded log pi_t(y) must equal REBEL's geometric
 * sequence log-probability under the trainable PCM's weights, so REBEL's
 * log-ratios start at ~0 here too. */
static void test_rollouts_geometric(void **state) {
    (void)state;
    mope_error err = {0};
    enum { N = 2, MAXT = 6 };
    rig g;
    rig_open_rule(&g, "g", N, MOPE_MIX_GEOMETRIC);
    mope_sampler *smp = plain_sampler(7);
    const char *instr[N] = {"What is a glacier?", "Tell me about the moon."};
    const char *prefs[N] = {"concise and friendly", "like a pirate"};
    mope_rollout ro[N];
    assert_int_equal(mope_rollout_generate(g.pi, g.ex, K, NULL, N, instr, prefs, smp, MAXT, ro, &err), 0);
    double worst_p = 0, worst_lp = 0, worst_sum = 0;
    for (int i = 0; i < N; i++) {
        const int32_t V = ro[i].n_vocab;
        assert_int_equal(V, mope_tokenizer_n_vocab(g.tok));
        assert_non_null(ro[i].expert_logp);
        double p[MAXT * K];
        fresh_probs(&g, instr[i], ro[i].tokens + ro[i].prompt_len, ro[i].n_resp, p);
        for (int t = 0; t < ro[i].n_resp; t++)
            for (int k = 0; k < K; k++) {
                const float *row = ro[i].expert_logp + ((size_t)t * K + k) * V;
                double s = 0;
                for (int32_t v = 0; v < V; v++) s += exp(row[v]);
                worst_sum = fmax(worst_sum, fabs(s - 1));
                worst_p = fmax(worst_p, fabs(exp(row[ro[i].tokens[ro[i].prompt_len + t]]) - p[t * K + k]));
            }
        int T = ro[i].prompt_len + ro[i].n_resp;
        float *w = malloc(sizeof(float) * (size_t)T * K);
        assert_int_equal(mope_pcm_forward(g.pcm, ro[i].tokens, 1, T, w, &err), 0);
        double lp;
        assert_int_equal(mope_rebel_seq_logp_geo(w + (size_t)(ro[i].prompt_len - 1) * K, ro[i].expert_logp,
                                                 ro[i].tokens + ro[i].prompt_len, ro[i].n_resp, K, V, &lp, NULL,
                                                 &err),
                         0);
        worst_lp = fmax(worst_lp, fabs(lp - ro[i].logp));
        free(w);
    }
    printf("geometric rollouts: worst row-sum error %.3g, token-probability error %.3g, log-prob error %.3g\n",
           worst_sum, worst_p, worst_lp);
    assert_true(worst_sum < 1e-4);
    assert_true(worst_p < 1e-5);
    assert_true(worst_lp < 1e-3);
    rebel_starts_at_zero(g.pcm, ro);
    /* recording needs every expert at every step */
    mope_rollout bad[N];
    mope_rollout_opts ro_o = {.pcm = g.pi, .samplers = &smp, .n_samplers = 1, .max_tokens = MAXT,
                              .min_weight = 0.3f, .record_dists = true};
    assert_int_equal(mope_rollout_generate_ex(g.ex, K, NULL, N, instr, prefs, &ro_o, bad, &err), MOPE_EINVAL);
    for (int i = 0; i < N; i++) mope_rollout_free(&bad[i]);
    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);
    mope_sampler_free(smp);
    rig_close(&g);
}

/* min_weight: at each step an expert under the threshold is not run; the
 * recorded log-probability must be that of the renormalised mixture of the
 * experts that ran, with every expert's probability computed from its full
 * context (fresh single-sequence experts fed every token), so an expert
 * that was skipped and is needed again must have caught up exactly. */
static void test_min_weight_skips_and_catches_up(void **state) {
    (void)state;
    mope_error err = {0};
    enum { N = 3, MAXT = 12 };
    const float THR = 0.35f;
    rig g;
    rig_open(&g, "mw", N);
    mope_sampler *smp = plain_sampler(7);
    const char *instr[N] = {"What is a glacier?", "Tell me about the moon.", "Why is the sky blue?"};
    const char *prefs[N] = {"concise and friendly", "be brief", "like a pirate"};
    mope_rollout ro[N];
    mope_rollout_opts o = {.pcm = g.pi, .samplers = &smp, .n_samplers = 1, .max_tokens = MAXT, .min_weight = THR};
    assert_int_equal(mope_rollout_generate_ex(g.ex, K, NULL, N, instr, prefs, &o, ro, &err), 0);

    int skipped = 0, caught_up = 0;
    double worst_lp = 0;
    for (int i = 0; i < N; i++) {
        int T = ro[i].prompt_len + ro[i].n_resp;
        float *w = malloc(sizeof(float) * (size_t)T * K);
        assert_int_equal(mope_pcm_forward(g.pcm, ro[i].tokens, 1, T, w, &err), 0);
        double p[MAXT * K];
        fresh_probs(&g, instr[i], ro[i].tokens + ro[i].prompt_len, ro[i].n_resp, p);
        double lp = 0;
        bool was_skipped[K] = {false, false};
        for (int t = 0; t < ro[i].n_resp; t++) {
            const float *wt = w + (size_t)(ro[i].prompt_len - 1 + t) * K;
            int top = wt[1] > wt[0];
            double num = 0, den = 0;
            for (int k = 0; k < K; k++) {
                if (wt[k] >= THR || k == top) {
                    num += wt[k] * p[t * K + k];
                    den += wt[k];
                    assert_true(fabs(ro[i].expert_probs[t * K + k] - p[t * K + k]) < 1e-5);
                    caught_up += was_skipped[k];
                    was_skipped[k] = false;
                } else {
                    assert_true(ro[i].expert_probs[t * K + k] == 0.0f);
                    skipped++;
                    was_skipped[k] = true;
                }
            }
            lp += log(num / den);
        }
        worst_lp = fmax(worst_lp, fabs(lp - ro[i].logp));
        free(w);
    }
    printf("min_weight %.2f: %d expert-steps skipped, %d catch-ups, worst log-prob error %.3g\n", (double)THR, skipped,
           caught_up, worst_lp);
    assert_true(skipped > 0);
    assert_true(caught_up > 0);
    assert_true(worst_lp < 1e-3);
    /* out of range */
    mope_rollout bad[N];
    o.min_weight = 1.0f;
    assert_int_equal(mope_rollout_generate_ex(g.ex, K, NULL, N, instr, prefs, &o, bad, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "min_weight"));
    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);
    mope_sampler_free(smp);
    rig_close(&g);
}

/* An expert under min_weight from the first token on is never prefilled: a
 * group evaluates every queued row of every member, so a prompt queued at
 * the start would cost its rows even if the expert never ran.  Fixed
 * weights 1 / 0 over a group of two, one token: the only forward call holds
 * expert 0's prompt alone. */
static void test_unweighted_expert_not_prefilled(void **state) {
    (void)state;
    mope_error err = {0};
    rig g;
    rig_open(&g, "np", 1);
    mope_expert_config c[K];
    for (int k = 0; k < K; k++) {
        mope_expert_config_init(&c[k]);
        c[k].preference = PREFS[k];
        c[k].n_ctx = 128;
    }
    mope_expert_group *grp = mope_expert_group_new(g.m, c, K, &err);
    assert_non_null(grp);
    mope_expert *ex[K] = {mope_expert_group_member(grp, 0), mope_expert_group_member(grp, 1)};
    const char *instr[1] = {"What is a glacier?"};
    int32_t *pt = NULL;
    int np0 = mope_expert_prompt_tokens(ex[0], instr[0], &pt, &err);
    free(pt);
    int np1 = mope_expert_prompt_tokens(ex[1], instr[0], &pt, &err);
    free(pt);
    assert_true(np0 > 0 && np1 > 0);
    mope_sampler *smp = plain_sampler(5);
    const float w[K] = {1.0f, 0.0f};
    for (int mw = 0; mw < 2; mw++) {
        mope_rollout ro;
        mope_rollout_opts o = {.weights = w, .samplers = &smp, .n_samplers = 1, .max_tokens = 1,
                               .min_weight = mw ? 0.01f : 0.0f};
        int64_t f0 = mope_expert_group_n_forward(grp);
        assert_int_equal(mope_rollout_generate_ex(ex, K, g.tok, 1, instr, NULL, &o, &ro, &err), 0);
        assert_int_equal(ro.n_resp, 1);
        assert_int_equal(mope_expert_group_n_forward(grp) - f0, 1);
        /* exact mode runs (and so prefills) every expert */
        assert_int_equal(mope_expert_group_last_rows(grp), mw ? np0 : np0 + np1);
        mope_rollout_free(&ro);
        for (int k = 0; k < K; k++) mope_expert_reset(ex[k], 0);
    }
    mope_sampler_free(smp);
    mope_expert_group_free(grp);
    rig_close(&g);
}

/* ---- exploration ----
 * Two scripted experts (no model): at response position t, expert e puts
 * logit SPIKE on script_e[t] (end of generation past the script) and 0 on
 * every other token, so pi_e(y_t) is known in closed form.  Fixed weights
 * 0.9 / 0.1 and a greedy sampler make the mixture follow expert 0's script;
 * a steered stretch must follow the steering expert's script instead, and
 * logp / expert_probs must stay those of the 0.9 / 0.1 mixture. */
enum { SPIKE = 6 };
typedef struct script_expert {
    mope_expert base;
    const int32_t *script;
    int32_t eog, len;         /* script[0..len), then eog */
    int pos[16];              /* response tokens fed, per sequence */
    float *logits;
} script_expert;

static int32_t script_token(const script_expert *s, int t) { return t < s->len ? s->script[t] : s->eog; }

static int sx_start(mope_expert *e, int seq, const char *instruction, mope_error *err) {
    (void)instruction, (void)err;
    ((script_expert *)e)->pos[seq] = 0;
    return 0;
}
static int sx_feed(mope_expert *e, int seq, const int32_t *tokens, int n, mope_error *err) {
    (void)tokens, (void)err;
    ((script_expert *)e)->pos[seq] += n;
    return 0;
}
static int sx_next(mope_expert *e, int seq, mope_dist *out, mope_error *err) {
    script_expert *s = (script_expert *)e;
    for (int32_t v = 0; v < e->n_vocab; v++) s->logits[v] = 0.0f;
    s->logits[script_token(s, s->pos[seq])] = SPIKE;
    return mope_dist_set_full(out, s->logits, e->n_vocab, err);
}
static void sx_reset(mope_expert *e, int seq) { ((script_expert *)e)->pos[seq] = 0; }
static void sx_destroy(mope_expert *e) {
    free(((script_expert *)e)->logits);
    free(e);
}
static const mope_expert_ops script_ops = {
    .start = sx_start, .feed = sx_feed, .next = sx_next, .reset = sx_reset, .destroy = sx_destroy};

static mope_expert *script_new(int32_t n_vocab, const int32_t *script, int32_t len, int32_t eog) {
    script_expert *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->base = (mope_expert){.ops = &script_ops, .n_vocab = n_vocab, .n_seq = 16};
    snprintf(s->base.name, sizeof s->base.name, "script%d", (int)script[0]);
    s->script = script, s->len = len, s->eog = eog;
    s->logits = malloc(sizeof(float) * (size_t)n_vocab);
    assert_non_null(s->logits);
    return &s->base;
}

static void test_explore_steers_head_and_tail(void **state) {
    (void)state;
    mope_error err = {0};
    enum { N = 9, MAXT = 16 };
    rig g;
    rig_open(&g, "x", 1);
    const int32_t V = mope_tokenizer_n_vocab(g.tok), eog = mope_tokenizer_eos(g.tok);
    const int32_t dot = mope_tokenizer_find(g.tok, ".", 1); /* ends a sentence */
    assert_true(V > 64 && eog >= 0 && (eog < 10 || eog >= 40) && dot >= 40);
    const int32_t s0[] = {10, 11, 12, 13, 14}, s1[] = {30, 31, dot, 33, 34, 35, dot, 37};
    mope_expert *ex[K] = {script_new(V, s0, 5, eog), script_new(V, s1, 8, eog)};
    const script_expert *sx[K] = {(script_expert *)ex[0], (script_expert *)ex[1]};
    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 0.0f;
    mope_sampler *smp = mope_sampler_new(&sp, &err);
    assert_non_null(smp);
    const float wts[K] = {0.9f, 0.1f};
    const mope_rollout_explore explore[N] = {
        {.expert = -1, .head = 4, .tail = 4}, /* not steered */
        {.expert = 1, .head = 2},             /* opening from expert 1, then expert 0's script resumes */
        {.expert = 1, .tail = 2},             /* expert 1 takes over where the mixture would end, 2 tokens */
        {.expert = 1, .tail = 10},            /* ... until expert 1 ends the response itself */
        {.expert = 0, .head = 3},             /* the mixture's own favourite: no change */
        {.expert = 1, .head = 1, .tail = 1},  /* both */
        {.expert = 1, .head = 5},             /* through a sentence end ... */
        {.expert = 1, .head = 5, .sentence = true}, /* ... or up to it */
        {.expert = 1, .tail = 10, .sentence = true},
    };
    /* expected responses, written out by hand from the scripts */
    const int32_t want[N][MAXT] = {
        {10, 11, 12, 13, 14, eog},
        {30, 31, 12, 13, 14, eog},
        {10, 11, 12, 13, 14, 35, dot, eog},
        {10, 11, 12, 13, 14, 35, dot, 37, eog},
        {10, 11, 12, 13, 14, eog},
        {30, 11, 12, 13, 14, 35, eog},
        {30, 31, dot, 33, 34, eog},
        {30, 31, dot, 13, 14, eog},
        {10, 11, 12, 13, 14, 35, dot, eog},
    };
    const int want_n[N] = {6, 6, 8, 9, 6, 7, 6, 6, 8};
    const char *instr[N] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    mope_rollout ro[N];
    mope_rollout_opts o = {.weights = wts, .rule = MOPE_MIX_LINEAR, .samplers = &smp, .n_samplers = 1,
                           .max_tokens = MAXT, .explore = explore};
    assert_int_equal(mope_rollout_generate_ex(ex, K, g.tok, N, instr, NULL, &o, ro, &err), 0);
    const double z = exp(SPIKE) + (double)(V - 1), hi = exp(SPIKE) / z, lo = 1.0 / z;
    for (int i = 0; i < N; i++) {
        assert_int_equal(ro[i].n_resp, want_n[i]);
        assert_memory_equal(ro[i].tokens, want[i], sizeof(int32_t) * (size_t)want_n[i]);
        assert_false(ro[i].truncated);
        double lp = 0;
        for (int t = 0; t < ro[i].n_resp; t++) {
            double p = 0;
            for (int k = 0; k < K; k++) {
                double pk = ro[i].tokens[t] == script_token(sx[k], t) ? hi : lo;
                assert_true(fabs(ro[i].expert_probs[t * K + k] - pk) < 1e-6);
                p += wts[k] * pk;
            }
            lp += log(p);
        }
        assert_true(fabs(lp - ro[i].logp) < 1e-4);
    }
    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);

    /* refused: an expert out of range, a negative length, min_weight > 0 */
    mope_rollout_explore bad_x[N];
    memcpy(bad_x, explore, sizeof bad_x);
    bad_x[2].expert = K;
    o.explore = bad_x;
    assert_int_equal(mope_rollout_generate_ex(ex, K, g.tok, N, instr, NULL, &o, ro, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "exploration"));
    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);
    bad_x[2].expert = 1, bad_x[2].tail = -1;
    assert_int_equal(mope_rollout_generate_ex(ex, K, g.tok, N, instr, NULL, &o, ro, &err), MOPE_EINVAL);
    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);
    o.explore = explore;
    o.min_weight = 0.2f;
    assert_int_equal(mope_rollout_generate_ex(ex, K, g.tok, N, instr, NULL, &o, ro, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "min_weight"));
    for (int i = 0; i < N; i++) mope_rollout_free(&ro[i]);

    for (int k = 0; k < K; k++) mope_expert_free(ex[k]);
    mope_sampler_free(smp);
    rig_close(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollouts_consistent),
        cmocka_unit_test(test_rollouts_geometric),
        cmocka_unit_test(test_min_weight_skips_and_catches_up),
        cmocka_unit_test(test_unweighted_expert_not_prefilled),
        cmocka_unit_test(test_explore_steers_head_and_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
