/* The method runner (include/mope/method.h) on a tiny bundle built here: a
 * random base model, four random LoRA experts (two dimensions x two
 * choices), a PCM whose head is biased to one expert, all saved to files
 * and named by a manifest written with mope_bundle_save.  Checked against
 * independent expectations:
 *  - expert:X equals a hand-written decode loop over a separately loaded
 *    base + X's adapter (same sampler seed -> same tokens), greedy and
 *    sampled; prompt / base equal the same loop over the bare base with
 *    the preference sentences appended / not;
 *  - uniform over one choice, soup of one choice and mope with a one-hot
 *    PCM (linear, exact) all equal that single expert;
 *  - top-k with k = n_vocab equals exact mode;
 *  - batched generation equals one prompt at a time;
 *  - the token callback's pieces concatenate to the response text and its
 *    weights are what the method promises (one-hot, uniform);
 *  - preference parsing and every error case the brief lists. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mope/bundle.h"
#include "mope/expert.h"
#include "mope/lora.h"
#include "mope/method.h"
#include "mope/pcm.h"

enum { NE = 4, MAXT = 10 };
static const char *IDS[NE] = {"P1A", "P1B", "P2A", "P2B"};
static const char *TEXTS[NE] = {"Generate a response that a child understands.", "Generate an expert response.",
                                "Generate a concise response.", "Generate a very informative response."};
/* The PCM lists its experts in another order than the bundle: the runner
 * must map them by id.  Its head is one-hot on PCM_HOT. */
static const char *PCM_IDS[NE] = {"P2B", "P1A", "P2A", "P1B"};
#define PCM_HOT 0
#define PROMPT "What is a glacier?"

typedef struct fx {
    char dir[256], base[320], pcm[320], adapters[NE][320], b_nopcm[320], b_pcm[320];
    mope_bundle *bundle_nopcm, *bundle_pcm;
    mope_runner *r_nopcm, *r_pcm;
    mope_hparams hp;
} fx;

static void make_adapter(const fx *f, int i) {
    mope_error err = {0};
    mope_lora *l = mope_lora_new("llama", 8.0f, &err);
    assert_non_null(l);
    mope_rng rng;
    mope_rng_seed(&rng, 100 + (uint64_t)i);
    assert_int_equal(mope_lora_add_targets(l, &f->hp, MOPE_LORA_ATTN | MOPE_LORA_FFN, 4, &rng, &err), 0);
    /* B starts at zero (identity adapter): make every expert really differ */
    for (int t = 0; t < mope_lora_n_tensors(l); t++) {
        mope_lora_tensor *lt = mope_lora_tensor_at(l, t);
        for (int64_t j = 0; j < lt->n_out * lt->rank; j++) lt->b[j] = 0.08f * mope_rng_normal(&rng);
    }
    assert_int_equal(mope_lora_save(l, f->adapters[i], &err), 0);
    mope_lora_free(l);
}

static void make_pcm(const fx *f, const mope_tokenizer *tok) {
    mope_error err = {0};
    mope_train_config tc;
    mope_train_config_init(&tc);
    tc.n_vocab = mope_tokenizer_n_vocab(tok);
    tc.n_embd = 32;
    tc.n_head = 4;
    tc.n_head_kv = 2;
    tc.n_ff = 64;
    tc.n_ctx = 128;
    mope_pcm *p = mope_pcm_new(&tc, NE, PCM_IDS, MOPE_MIX_LINEAR, 1, 7, &err);
    assert_non_null(p);
    /* zero head weights, bias 200 on one expert: softmax underflows to an
     * exact one-hot in float, whatever the trunk computes */
    float *head = mope_pcm_head_params(p);
    for (int i = 0; i < NE * tc.n_embd + NE; i++) head[i] = 0.0f;
    head[NE * tc.n_embd + PCM_HOT] = 200.0f;
    assert_int_equal(mope_pcm_save(p, f->pcm, tok, &err), 0);
    mope_pcm_free(p);
}

static void write_bundle(const fx *f, const char *path, bool with_pcm) {
    mope_error err = {0};
    mope_bundle b;
    memset(&b, 0, sizeof b);
    mope_bundle_dimension dims[2] = {{.id = "P1", .first_choice = 0, .n_choices = 2},
                                     {.id = "P2", .first_choice = 2, .n_choices = 2}};
    mope_bundle_choice ch[NE];
    mope_bundle_expert ex[NE];
    for (int i = 0; i < NE; i++) {
        ch[i] = (mope_bundle_choice){.id = (char *)IDS[i], .text = (char *)TEXTS[i], .dimension = i / 2};
        ex[i] = (mope_bundle_expert){.id = (char *)IDS[i], .choice = (char *)IDS[i], .choice_index = i,
                                     .adapter = (char *)f->adapters[i]};
    }
    b.name = "method-test";
    b.tokenizer = (char *)f->base;
    b.template_id = MOPE_CHAT_TULU;
    b.base = (char *)f->base;
    b.n_dimensions = 2;
    b.dimensions = dims;
    b.n_choices = NE;
    b.choices = ch;
    b.n_experts = NE;
    b.experts = ex;
    if (with_pcm) {
        b.pcm = (char *)f->pcm;
        b.multitask = (char *)f->base; /* a full model standing in for a multitask one */
    }
    assert_int_equal(mope_bundle_save(&b, path, 0, &err), 0);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    mope_error err = {0};
    /* a local copy of the folder name: formatting from f->dir into other
     * fields of f trips GCC's -Wrestrict */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/test_eval_method_XXXXXX", MOPE_BINARY_DIR);
    assert_non_null(mkdtemp(dir));
    memcpy(f->dir, dir, sizeof dir);
    snprintf(f->base, sizeof f->base, "%s/base.gguf", dir);
    snprintf(f->pcm, sizeof f->pcm, "%s/pcm.gguf", dir);
    snprintf(f->b_nopcm, sizeof f->b_nopcm, "%s/nopcm.json", dir);
    snprintf(f->b_pcm, sizeof f->b_pcm, "%s/bundle.json", dir);
    for (int i = 0; i < NE; i++) snprintf(f->adapters[i], sizeof f->adapters[i], "%s/%s.gguf", dir, IDS[i]);
    mope_hparams_init(&f->hp, MOPE_ARCH_LLAMA);
    f->hp.n_ctx_train = 128;
    assert_int_equal(mope_model_write_random(f->base, &f->hp, MOPE_TYPE_F32, 21, NULL, &err), 0);
    mope_tokenizer *tok = mope_tokenizer_load(f->base, &err);
    assert_non_null(tok);
    for (int i = 0; i < NE; i++) make_adapter(f, i);
    make_pcm(f, tok);
    mope_tokenizer_free(tok);
    write_bundle(f, f->b_nopcm, false);
    write_bundle(f, f->b_pcm, true);
    assert_non_null(f->bundle_nopcm = mope_bundle_load(f->b_nopcm, 0, &err));
    mope_runner_opts o;
    mope_runner_opts_init(&o);
    o.n_threads = 1;
    o.max_batch = 2;
    f->r_nopcm = mope_runner_new(f->bundle_nopcm, &o, &err);
    if (!f->r_nopcm) fprintf(stderr, "runner: %s\n", err.msg);
    assert_non_null(f->r_nopcm);
    f->r_pcm = mope_runner_load(f->b_pcm, &o, &err);
    if (!f->r_pcm) fprintf(stderr, "runner: %s\n", err.msg);
    assert_non_null(f->r_pcm);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    mope_runner_free(f->r_nopcm);
    mope_runner_free(f->r_pcm);
    mope_bundle_free(f->bundle_nopcm);
    unlink(f->base);
    unlink(f->pcm);
    unlink(f->b_nopcm);
    unlink(f->b_pcm);
    for (int i = 0; i < NE; i++) unlink(f->adapters[i]);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- the independent reference: one model (+ one adapter), one loop ---- */
typedef struct ref_out {
    int32_t tok[MAXT];
    int n;
} ref_out;

static void reference(const fx *f, int adapter_idx, const char *preference, const char *instruction,
                      const mope_sampler_params *sp, ref_out *out) {
    mope_error err = {0};
    mope_model *m = mope_model_load(f->base, &err);
    assert_non_null(m);
    mope_tokenizer *tok = mope_tokenizer_from_gguf(mope_model_gguf(m), &err);
    assert_non_null(tok);
    mope_lora *l = NULL;
    mope_expert_config c;
    mope_expert_config_init(&c);
    c.preference = preference;
    c.n_ctx = 128;
    if (adapter_idx >= 0) {
        assert_non_null(l = mope_lora_load(f->adapters[adapter_idx], m, &err));
        c.adapter = mope_model_add_adapter(m, l, 1.0f, &err);
        assert_true(c.adapter >= 0);
    }
    mope_expert *e = mope_expert_local_new(m, &c, &err);
    assert_non_null(e);
    mope_sampler *s = mope_sampler_new(sp, &err);
    assert_non_null(s);
    const int32_t V = e->n_vocab;
    float *probs = malloc(sizeof(float) * (size_t)V);
    assert_non_null(probs);
    mope_dist d = {0};
    assert_int_equal(mope_expert_start(e, 0, instruction, &err), 0);
    out->n = 0;
    while (out->n < MAXT) {
        assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
        assert_int_equal(mope_dist_probs(&d, probs, &err), 0);
        int32_t y = mope_sampler_sample_probs(s, probs, V, out->tok, out->n, &err);
        assert_true(y >= 0);
        out->tok[out->n++] = y;
        if (mope_tokenizer_is_eog(tok, y) || out->n == MAXT) break;
        assert_int_equal(mope_expert_feed(e, 0, &y, 1, &err), 0);
    }
    mope_dist_free(&d);
    free(probs);
    mope_sampler_free(s);
    mope_expert_free(e);
    mope_model_free(m);
    mope_lora_free(l);
    mope_tokenizer_free(tok);
}

/* Two experts (bundle indices a and b) with their own prompts, mixed by
 * hand in double precision with equal weights: linear 0.5 p_a + 0.5 p_b, or
 * geometric sqrt(p_a p_b) renormalised. */
static void reference_mix(const fx *f, int a, int b, bool geometric, const mope_sampler_params *sp, ref_out *out) {
    mope_error err = {0};
    mope_model *m = mope_model_load(f->base, &err);
    assert_non_null(m);
    mope_tokenizer *tok = mope_tokenizer_from_gguf(mope_model_gguf(m), &err);
    assert_non_null(tok);
    int idx[2] = {a, b};
    mope_lora *l[2];
    mope_expert *e[2];
    for (int j = 0; j < 2; j++) {
        assert_non_null(l[j] = mope_lora_load(f->adapters[idx[j]], m, &err));
        mope_expert_config c;
        mope_expert_config_init(&c);
        c.preference = TEXTS[idx[j]];
        c.n_ctx = 128;
        c.adapter = mope_model_add_adapter(m, l[j], 1.0f, &err);
        assert_true(c.adapter >= 0);
        assert_non_null(e[j] = mope_expert_local_new(m, &c, &err));
        assert_int_equal(mope_expert_start(e[j], 0, PROMPT, &err), 0);
    }
    mope_sampler *s = mope_sampler_new(sp, &err);
    assert_non_null(s);
    const int32_t V = e[0]->n_vocab;
    float *probs = malloc(sizeof(float) * (size_t)V);
    double *q = malloc(sizeof(double) * (size_t)V * 2);
    assert_true(probs && q);
    mope_dist d = {0};
    out->n = 0;
    while (out->n < MAXT) {
        for (int j = 0; j < 2; j++) {
            assert_int_equal(mope_expert_next(e[j], 0, &d, &err), 0);
            double mx = -INFINITY, z = 0;
            for (int32_t y = 0; y < V; y++) mx = fmax(mx, d.logits[y]);
            for (int32_t y = 0; y < V; y++) z += exp(d.logits[y] - mx);
            for (int32_t y = 0; y < V; y++) q[j * V + y] = exp(d.logits[y] - mx) / z;
        }
        double z = 0;
        for (int32_t y = 0; y < V; y++) z += geometric ? sqrt(q[y] * q[V + y]) : 0.5 * (q[y] + q[V + y]);
        for (int32_t y = 0; y < V; y++)
            probs[y] = (float)((geometric ? sqrt(q[y] * q[V + y]) : 0.5 * (q[y] + q[V + y])) / z);
        int32_t y = mope_sampler_sample_probs(s, probs, V, out->tok, out->n, &err);
        assert_true(y >= 0);
        out->tok[out->n++] = y;
        if (mope_tokenizer_is_eog(tok, y) || out->n == MAXT) break;
        for (int j = 0; j < 2; j++) assert_int_equal(mope_expert_feed(e[j], 0, &y, 1, &err), 0);
    }
    mope_dist_free(&d);
    free(probs);
    free(q);
    mope_sampler_free(s);
    for (int j = 0; j < 2; j++) mope_expert_free(e[j]);
    mope_model_free(m);
    for (int j = 0; j < 2; j++) mope_lora_free(l[j]);
    mope_tokenizer_free(tok);
}

static mope_gen_opts gen_opts(bool greedy) {
    mope_gen_opts g;
    mope_gen_opts_init(&g);
    g.want_logp = true;
    g.max_tokens = MAXT;
    g.sampler.seed = 1234;
    if (greedy) g.sampler.temp = 0;
    else {
        g.sampler.temp = 1.0f;
        g.sampler.top_k = 0;
        g.sampler.top_p = 1.0f;
        g.sampler.min_p = 0.0f;
    }
    return g;
}

/* Runs method on runner r; fails the test with the message on an error. */
static void run(mope_runner *r, const char *method, const char *pref, const mope_gen_opts *g,
                mope_method_result *res) {
    mope_error err = {0};
    mope_method m;
    assert_int_equal(mope_method_parse(method, &m, &err), 0);
    int rc = mope_runner_generate(r, &m, pref, PROMPT, g, NULL, NULL, res, &err);
    if (rc) fprintf(stderr, "%s: %s\n", method, err.msg);
    assert_int_equal(rc, 0);
}

static void assert_same(const mope_method_result *res, const ref_out *ref, const char *what) {
    if (res->n_tokens != ref->n || memcmp(res->tokens, ref->tok, sizeof(int32_t) * (size_t)ref->n) != 0) {
        fprintf(stderr, "%s: %d tokens vs reference %d\n", what, res->n_tokens, ref->n);
        for (int i = 0; i < res->n_tokens || i < ref->n; i++)
            fprintf(stderr, "  %d: %d %d\n", i, i < res->n_tokens ? res->tokens[i] : -1, i < ref->n ? ref->tok[i] : -1);
        fail();
    }
}

static void test_expert_equals_reference(void **state) {
    fx *f = *state;
    for (int greedy = 0; greedy < 2; greedy++) {
        mope_gen_opts g = gen_opts(greedy);
        for (int i = 0; i < NE; i += 3) {
            ref_out ref;
            reference(f, i, TEXTS[i], PROMPT, &g.sampler, &ref);
            char method[32];
            snprintf(method, sizeof method, "expert:%s", IDS[i]);
            mope_method_result res;
            run(f->r_nopcm, method, "P2A", &g, &res); /* the preference is ignored */
            assert_same(&res, &ref, method);
            assert_int_equal(res.K, 1);
            assert_string_equal(res.names[0], IDS[i]);
            assert_true(fabsf(res.mean_weights[0] - 1.0f) < 1e-6f);
            assert_true(isfinite(res.logp) && res.logp < 0);
            mope_method_result_free(&res);
        }
    }
    /* experts differ from each other and from the base (else the equalities prove nothing) */
    mope_gen_opts g = gen_opts(true);
    ref_out a, b, base;
    reference(f, 0, TEXTS[0], PROMPT, &g.sampler, &a);
    reference(f, 3, TEXTS[3], PROMPT, &g.sampler, &b);
    reference(f, -1, NULL, PROMPT, &g.sampler, &base);
    assert_true(a.n != b.n || memcmp(a.tok, b.tok, sizeof(int32_t) * (size_t)a.n) != 0);
    assert_true(a.n != base.n || memcmp(a.tok, base.tok, sizeof(int32_t) * (size_t)a.n) != 0);
}

static void test_single_choice_methods_equal_expert(void **state) {
    fx *f = *state;
    for (int greedy = 0; greedy < 2; greedy++) {
        mope_gen_opts g = gen_opts(greedy);
        ref_out ref;
        reference(f, 2, TEXTS[2], PROMPT, &g.sampler, &ref);
        const char *methods[] = {"uniform", "uniform-geo", "soup", "soup-delta"};
        for (int j = 0; j < 4; j++) {
            mope_method_result res;
            run(f->r_nopcm, methods[j], "P2A", &g, &res);
            assert_same(&res, &ref, methods[j]);
            assert_int_equal(res.K, 1);
            mope_method_result_free(&res);
        }
        /* the PCM's head is one-hot on PCM_IDS[PCM_HOT] = P2B (bundle expert 3) */
        reference(f, 3, TEXTS[3], PROMPT, &g.sampler, &ref);
        mope_method_result res;
        run(f->r_pcm, "mope", "P1A,P2A", &g, &res);
        assert_same(&res, &ref, "mope one-hot");
        assert_int_equal(res.K, NE);
        for (int k = 0; k < NE; k++) {
            assert_string_equal(res.names[k], PCM_IDS[k]);
            assert_true(fabsf(res.mean_weights[k] - (k == PCM_HOT ? 1.0f : 0.0f)) < 1e-6f);
        }
        mope_method_result_free(&res);
        /* free text reaches the PCM too */
        run(f->r_pcm, "mope", "be brief and kind", &g, &res);
        assert_same(&res, &ref, "mope one-hot, free text");
        mope_method_result_free(&res);
    }
}

/* More soups than the runner keeps: old ones are dropped and rebuilt, and a
 * rebuilt soup still equals its expert. */
static void test_soup_cache(void **state) {
    fx *f = *state;
    mope_gen_opts g = gen_opts(true);
    const char *prefs[] = {"P1A", "P1B", "P2A", "P2B", "P1A,P2A", "P1A,P2B", "P1B,P2A", "P1B,P2B"};
    int32_t first[MAXT];
    int n_first = 0;
    bool differs = false;
    for (int mode = 0; mode < 2; mode++)
        for (int j = 0; j < 8; j++) {
            mope_method_result res;
            run(f->r_nopcm, mode ? "soup-delta" : "soup", prefs[j], &g, &res);
            if (mode == 0 && j == 0) {
                n_first = res.n_tokens;
                memcpy(first, res.tokens, sizeof(int32_t) * (size_t)res.n_tokens);
            } else if (res.n_tokens != n_first || memcmp(res.tokens, first, sizeof(int32_t) * (size_t)n_first)) {
                differs = true;
            }
            mope_method_result_free(&res);
        }
    assert_true(differs);
    ref_out ref;
    reference(f, 2, TEXTS[2], PROMPT, &g.sampler, &ref);
    mope_method_result res;
    run(f->r_nopcm, "soup", "P2A", &g, &res);
    assert_same(&res, &ref, "soup after eviction");
    mope_method_result_free(&res);
}

static void test_prompt_base_multitask(void **state) {
    fx *f = *state;
    mope_gen_opts g = gen_opts(false);
    ref_out ref;
    /* prompt: the base with the chosen sentences after the instruction */
    char pref[256];
    snprintf(pref, sizeof pref, "%s %s", TEXTS[1], TEXTS[3]);
    reference(f, -1, pref, PROMPT, &g.sampler, &ref);
    mope_method_result res;
    run(f->r_nopcm, "prompt", "P1B,P2B", &g, &res);
    assert_same(&res, &ref, "prompt");
    assert_string_equal(res.names[0], "base");
    mope_method_result_free(&res);
    /* multitask (here the base file) is prompted the same way */
    run(f->r_pcm, "multitask", "P1B, P2B", &g, &res);
    assert_same(&res, &ref, "multitask");
    assert_string_equal(res.names[0], "multitask");
    mope_method_result_free(&res);
    /* free text is appended as given */
    reference(f, -1, "talk like a pirate", PROMPT, &g.sampler, &ref);
    run(f->r_nopcm, "prompt", "talk like a pirate", &g, &res);
    assert_same(&res, &ref, "prompt, free text");
    mope_method_result_free(&res);
    /* base: the plain instruction, whatever the preference */
    reference(f, -1, NULL, PROMPT, &g.sampler, &ref);
    run(f->r_nopcm, "base", "P1B,P2B", &g, &res);
    assert_same(&res, &ref, "base");
    mope_method_result_free(&res);
}

/* Two chosen experts: the runner's uniform mixtures equal the hand-mixed
 * reference (greedy, so float rounding of the mixture cannot move a draw). */
static void test_uniform_two_experts(void **state) {
    fx *f = *state;
    mope_gen_opts g = gen_opts(true);
    for (int geo = 0; geo < 2; geo++) {
        ref_out ref, one;
        reference_mix(f, 1, 2, geo, &g.sampler, &ref);
        mope_method_result res;
        run(f->r_nopcm, geo ? "uniform-geo" : "uniform", "P1B,P2A", &g, &res);
        assert_same(&res, &ref, geo ? "uniform-geo" : "uniform");
        assert_int_equal(res.K, 2);
        assert_string_equal(res.names[0], "P1B");
        assert_string_equal(res.names[1], "P2A");
        assert_true(isfinite(res.logp) && res.logp < 0);
        /* without want_logp: the same tokens, no log-probability */
        mope_gen_opts g2 = g;
        g2.want_logp = false;
        mope_method_result nolp;
        run(f->r_nopcm, geo ? "uniform-geo" : "uniform", "P1B,P2A", &g2, &nolp);
        assert_same(&nolp, &ref, "no logp");
        assert_true(nolp.logp == 0);
        mope_method_result_free(&nolp);
        mope_method_result_free(&res);
        /* the mixture is neither expert alone */
        reference(f, 1, TEXTS[1], PROMPT, &g.sampler, &one);
        assert_true(one.n != ref.n || memcmp(one.tok, ref.tok, sizeof(int32_t) * (size_t)ref.n) != 0);
    }
}

static void test_topk_full_vocab_equals_exact(void **state) {
    fx *f = *state;
    mope_gen_opts g = gen_opts(true);
    const char *methods[] = {"uniform", "uniform-geo"};
    for (int j = 0; j < 2; j++) {
        mope_method_result a, b;
        run(f->r_nopcm, methods[j], "P1A,P2B", &g, &a);
        g.topk = mope_runner_n_vocab(f->r_nopcm);
        run(f->r_nopcm, methods[j], "P1A,P2B", &g, &b);
        g.topk = 0;
        assert_int_equal(a.n_tokens, b.n_tokens);
        assert_memory_equal(a.tokens, b.tokens, sizeof(int32_t) * (size_t)a.n_tokens);
        assert_true(fabs(a.logp - b.logp) < 1e-4 * (1 + fabs(a.logp)));
        assert_int_equal(a.K, 2);
        assert_true(fabsf(a.mean_weights[0] - 0.5f) < 1e-6f && fabsf(a.mean_weights[1] - 0.5f) < 1e-6f);
        mope_method_result_free(&a);
        mope_method_result_free(&b);
    }
    /* a small k is a different distribution, but still a valid run */
    g.topk = 5;
    mope_method_result c;
    run(f->r_pcm, "mope", "P1A,P2A", &g, &c);
    assert_true(c.n_tokens >= 1 && isfinite(c.logp));
    mope_method_result_free(&c);
}

typedef struct cb_state {
    char text[4096];
    size_t len;
    int calls, finals, rows[8];
    double worst_sum;
} cb_state;

static int collect(void *user, const mope_method_token *t) {
    cb_state *s = user;
    s->calls++;
    if (t->row == 0 && t->len && s->len + t->len < sizeof s->text) {
        memcpy(s->text + s->len, t->text, t->len);
        s->len += t->len;
    }
    if (t->row >= 0 && t->row < 8) s->rows[t->row]++;
    if (t->id < 0) {
        s->finals++;
        return 0;
    }
    double sum = 0;
    for (int k = 0; k < t->K; k++) sum += t->weights[k];
    if (fabs(sum - 1) > s->worst_sum) s->worst_sum = fabs(sum - 1);
    return 0;
}

static int abort_cb(void *user, const mope_method_token *t) {
    (void)user;
    return t->index >= 2 ? MOPE_ESTATE : 0;
}

static void test_batch_and_callback(void **state) {
    fx *f = *state;
    mope_error err = {0};
    mope_gen_opts g = gen_opts(true);
    mope_method m;
    assert_int_equal(mope_method_parse("uniform", &m, &err), 0);
    const char *prompts[3] = {PROMPT, "Tell me about the moon.", "Why is the sky blue?"};
    mope_method_result batch[3], one;
    cb_state cs;
    memset(&cs, 0, sizeof cs);
    /* three prompts over max_batch 2: two batches */
    assert_int_equal(mope_runner_generate_batch(f->r_nopcm, &m, "P1B,P2A", 3, prompts, &g, collect, &cs, batch, &err),
                     0);
    int expect_calls = 0;
    for (int i = 0; i < 3; i++) {
        expect_calls += batch[i].n_tokens + 1;
        assert_int_equal(cs.rows[i], batch[i].n_tokens + 1);
        assert_int_equal(mope_runner_generate(f->r_nopcm, &m, "P1B,P2A", prompts[i], &g, NULL, NULL, &one, &err), 0);
        assert_int_equal(one.n_tokens, batch[i].n_tokens);
        assert_memory_equal(one.tokens, batch[i].tokens, sizeof(int32_t) * (size_t)one.n_tokens);
        assert_string_equal(one.text, batch[i].text);
        mope_method_result_free(&one);
    }
    assert_int_equal(cs.calls, expect_calls);
    assert_int_equal(cs.finals, 3);
    assert_true(cs.worst_sum < 1e-5);
    assert_int_equal(cs.len, strlen(batch[0].text));
    assert_memory_equal(cs.text, batch[0].text, cs.len);
    for (int i = 0; i < 3; i++) mope_method_result_free(&batch[i]);
    /* a callback error aborts the call with its code */
    assert_int_equal(mope_runner_generate(f->r_nopcm, &m, "P1B,P2A", PROMPT, &g, abort_cb, NULL, &one, &err),
                     MOPE_ESTATE);
    assert_non_null(strstr(err.msg, "callback"));
    mope_method_result_free(&one);
    /* and leaves the runner usable */
    assert_int_equal(mope_runner_generate(f->r_nopcm, &m, "P1B,P2A", PROMPT, &g, NULL, NULL, &one, &err), 0);
    mope_method_result_free(&one);
}

static void test_pref_parse(void **state) {
    fx *f = *state;
    mope_error err = {0};
    mope_pref p;
    assert_int_equal(mope_pref_parse(f->bundle_nopcm, " P2B , P1A ", &p, &err), 0);
    assert_false(p.free_text);
    assert_int_equal(p.n_choices, 2);
    assert_int_equal(p.choices[0], 3);
    assert_int_equal(p.choices[1], 0);
    char want[256];
    snprintf(want, sizeof want, "%s %s", TEXTS[3], TEXTS[0]);
    assert_string_equal(p.text, want);
    mope_pref_free(&p);
    const char *free_texts[] = {"concise", "be concise, friendly", "concise,friendly", "Keep it short."};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mope_pref_parse(f->bundle_nopcm, free_texts[i], &p, &err), 0);
        assert_true(p.free_text);
        assert_int_equal(p.n_choices, 0);
        assert_string_equal(p.text, free_texts[i]);
        mope_pref_free(&p);
    }
    assert_int_equal(mope_pref_parse(f->bundle_nopcm, "  ", &p, &err), 0);
    assert_false(p.free_text);
    assert_string_equal(p.text, "");
    mope_pref_free(&p);
    /* id-like but unknown: an error listing the known choices, not free text */
    assert_int_equal(mope_pref_parse(f->bundle_nopcm, "P1A,P9Z", &p, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "P9Z"));
    assert_non_null(strstr(err.msg, "P1A P1B P2A P2B"));
    mope_pref_free(&p);
    assert_int_equal(mope_pref_parse(f->bundle_nopcm, "P1A,P1B", &p, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "same dimension"));
    assert_int_equal(mope_pref_parse(f->bundle_nopcm, "P2A,P2A", &p, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
}

static void test_method_names(void **state) {
    (void)state;
    mope_error err = {0};
    mope_method m;
    const char *names[] = {"mope", "prompt", "soup", "soup-delta", "uniform", "uniform-geo", "expert:P2A",
                           "multitask", "base"};
    for (int i = 0; i < 9; i++) {
        char buf[96];
        assert_int_equal(mope_method_parse(names[i], &m, &err), 0);
        assert_string_equal(mope_method_name(&m, buf, sizeof buf), names[i]);
    }
    assert_int_equal(mope_method_parse("mixture", &m, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "uniform-geo"));
    assert_int_equal(mope_method_parse("expert:", &m, &err), MOPE_EINVAL);
    assert_int_equal(mope_method_parse(NULL, &m, &err), MOPE_EINVAL);
}

static void expect_error(mope_runner *r, const char *method, const char *pref, const mope_gen_opts *g,
                         const char *needle) {
    mope_error err = {0};
    mope_method m;
    mope_method_result res;
    assert_int_equal(mope_method_parse(method, &m, &err), 0);
    int rc = mope_runner_generate(r, &m, pref, PROMPT, g, NULL, NULL, &res, &err);
    if (rc >= 0 || !strstr(err.msg, needle))
        fprintf(stderr, "%s / %s: rc %d, message \"%s\", wanted \"%s\"\n", method, pref ? pref : "(null)", rc, err.msg,
                needle);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, needle));
    mope_method_result_free(&res);
}

static void test_errors(void **state) {
    fx *f = *state;
    mope_gen_opts g = gen_opts(true);
    expect_error(f->r_nopcm, "uniform", "P1A,P3C", &g, "known: P1A P1B P2A P2B");
    expect_error(f->r_nopcm, "soup", "be concise", &g, "not free text");
    expect_error(f->r_nopcm, "uniform", "be concise", &g, "not free text");
    expect_error(f->r_nopcm, "uniform-geo", "", &g, "needs a preference");
    expect_error(f->r_nopcm, "mope", "P1A", &g, "bundle has no PCM (train one with mope train pcm)");
    expect_error(f->r_nopcm, "multitask", "P1A", &g, "no multitask model");
    expect_error(f->r_nopcm, "expert:P7Q", NULL, &g, "experts: P1A P1B P2A P2B");
    g.topk = mope_runner_n_vocab(f->r_nopcm) + 1;
    expect_error(f->r_nopcm, "expert:P1A", NULL, &g, "larger than the vocabulary");
    g.topk = 0;
    g.max_tokens = 0;
    expect_error(f->r_nopcm, "expert:P1A", NULL, &g, "max_tokens");
    /* a prompt longer than the context (128) */
    g.max_tokens = 4;
    mope_error err = {0};
    mope_method m;
    mope_method_result res;
    assert_int_equal(mope_method_parse("expert:P1B", &m, &err), 0);
    char *long_prompt = malloc(4000);
    assert_non_null(long_prompt);
    long_prompt[0] = 0;
    for (int i = 0; i < 300; i++) strcat(long_prompt, "the ");
    assert_int_equal(mope_runner_generate(f->r_nopcm, &m, NULL, long_prompt, &g, NULL, NULL, &res, &err), MOPE_ERANGE);
    assert_non_null(strstr(err.msg, "context"));
    free(long_prompt);
    mope_method_result_free(&res);
    /* a bundle whose PCM names an expert it lacks */
    mope_runner_opts o;
    mope_runner_opts_init(&o);
    o.n_threads = 1;
    mope_bundle *b = mope_bundle_load(f->b_pcm, 0, &err);
    assert_non_null(b);
    free(b->experts[3].id);
    b->experts[3].id = strdup("Q9");
    free(b->experts[3].choice); /* so no expert serves P2B: the lookup by choice fails too */
    b->experts[3].choice = strdup("P2A");
    b->experts[3].choice_index = 2;
    assert_null(mope_runner_new(b, &o, &err));
    assert_non_null(strstr(err.msg, "\"P2B\""));
    mope_bundle_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_names),
        cmocka_unit_test(test_pref_parse),
        cmocka_unit_test(test_expert_equals_reference),
        cmocka_unit_test(test_single_choice_methods_equal_expert),
        cmocka_unit_test(test_soup_cache),
        cmocka_unit_test(test_prompt_base_multitask),
        cmocka_unit_test(test_uniform_two_experts),
        cmocka_unit_test(test_topk_full_vocab_equals_exact),
        cmocka_unit_test(test_batch_and_callback),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
