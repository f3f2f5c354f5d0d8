/* Experts on a tiny random model: the local expert against a direct
 * mope_model_forward of its independently formatted prompt, a group of 3
 * against the same 3 experts run one at a time, the black-box view against
 * a sorted reference, and one-hot mixing through the expert path. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "mope/expert.h"
#include "mope/lora.h"

typedef struct fixture {
    char path[512];
    mope_model *m;
    mope_tokenizer *tok;
    int32_t V;
} fixture;

static const char *PREFS[3] = {
    "Generate a response that can be easily understood by an elementary school student.",
    "Generate a response that is concise and to the point, without being verbose.",
    "Generate a response in an unfriendly manner.",
};
static const char *INSTR[2] = {"What is a glacier?", "Tell me about the moon."};
static const int32_t RESPONSE[4] = {300, 17, 411, 5};

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof f->path, "%s/test_mix_expert_%d.gguf", MOPE_BINARY_DIR, (int)getpid());
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    mope_error err = {0};
    if (mope_model_write_random(f->path, &hp, MOPE_TYPE_F32, 77, NULL, &err)) fail_msg("%s", err.msg);
    f->m = mope_model_load(f->path, &err);
    if (!f->m) fail_msg("%s", err.msg);
    f->tok = mope_tokenizer_from_gguf(mope_model_gguf(f->m), &err);
    if (!f->tok) fail_msg("%s", err.msg);
    f->V = mope_model_hparams(f->m)->n_vocab;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    mope_tokenizer_free(f->tok);
    mope_model_free(f->m);
    unlink(f->path);
    free(f);
    return 0;
}

static mope_expert_config cfg(const char *name, const char *pref, int n_seq) {
    mope_expert_config c;
    mope_expert_config_init(&c);
    c.name = name;
    c.preference = pref;
    c.n_seq = n_seq;
    c.n_ctx = 256;
    return c;
}

/* Tokens of the Tulu prompt, built here from the template text itself. */
static int ref_prompt(const fixture *f, const char *instr, const char *pref, int32_t **out) {
    char user[512], text[1024];
    snprintf(user, sizeof user, "%s %s", instr, pref);
    snprintf(text, sizeof text, "<|user|>\n%s\n<|assistant|>\n", user);
    mope_error err = {0};
    int n = mope_tokenizer_encode_alloc(f->tok, text, strlen(text), mope_tokenizer_add_bos(f->tok), true, out, &err);
    assert_true(n > 0);
    return n;
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static void test_local_matches_forward(void **state) {
    fixture *f = *state;
    mope_error err = {0};
    mope_expert_config c = cfg("elementary", PREFS[0], 1);
    mope_expert *e = mope_expert_local_new(f->m, &c, &err);
    if (!e) fail_msg("%s", err.msg);
    int32_t *ref = NULL, *got = NULL;
    int n = ref_prompt(f, INSTR[0], PREFS[0], &ref);
    assert_int_equal(mope_expert_prompt_tokens(e, INSTR[0], &got, &err), n);
    assert_memory_equal(got, ref, sizeof(int32_t) * (size_t)n);

    mope_kv *kv = mope_kv_new(f->m, 1, 256, &err);
    assert_non_null(kv);
    mope_row *rows = calloc((size_t)n, sizeof(mope_row));
    for (int i = 0; i < n; i++) rows[i] = (mope_row){0, ref[i], i, -1, i == n - 1};
    float *logits = malloc(sizeof(float) * f->V);
    assert_int_equal(mope_model_forward(f->m, kv, rows, n, logits, NULL, &err), 0);

    mope_dist d = {0};
    assert_int_equal(mope_expert_start(e, 0, INSTR[0], &err), 0);
    assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
    assert_int_equal(d.kind, MOPE_DIST_FULL);
    assert_true(max_abs_diff(d.logits, logits, f->V) == 0);
    /* Asking again without new tokens runs nothing and answers the same. */
    assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
    assert_true(max_abs_diff(d.logits, logits, f->V) == 0);
    for (int t = 0; t < 4; t++) {
        mope_row r = {0, RESPONSE[t], n + t, -1, true};
        assert_int_equal(mope_model_forward(f->m, kv, &r, 1, logits, NULL, &err), 0);
        assert_int_equal(mope_expert_feed(e, 0, &RESPONSE[t], 1, &err), 0);
        assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
        assert_true(max_abs_diff(d.logits, logits, f->V) == 0);
    }
    /* An expert that loads (and owns) its model computes the same. */
    mope_expert *own = mope_expert_local_load(f->path, &c, &err);
    if (!own) fail_msg("%s", err.msg);
    mope_dist dl = {0};
    assert_int_equal(mope_expert_start(own, 0, INSTR[0], &err), 0);
    assert_int_equal(mope_expert_feed(own, 0, RESPONSE, 4, &err), 0);
    assert_int_equal(mope_expert_next(own, 0, &dl, &err), 0);
    assert_true(max_abs_diff(dl.logits, logits, f->V) < 1e-4);
    mope_dist_free(&dl);
    mope_expert_free(own);
    /* Restarting replays the prompt from an empty sequence. */
    assert_int_equal(mope_expert_start(e, 0, INSTR[0], &err), 0);
    assert_int_equal(mope_expert_feed(e, 0, RESPONSE, 4, &err), 0);
    assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
    assert_true(max_abs_diff(d.logits, logits, f->V) < 1e-4);

    mope_dist_free(&d);
    free(rows);
    free(logits);
    free(ref);
    free(got);
    mope_kv_free(kv);
    mope_expert_free(e);
}

/* Group of 3 (2 sequences each) against 3 standalone experts. */
static void test_group_matches_single(void **state) {
    fixture *f = *state;
    mope_error err = {0};
    const char *names[3] = {"elementary", "concise", "unfriendly"};
    mope_expert_config cs[3];
    mope_expert *single[3];
    for (int k = 0; k < 3; k++) {
        cs[k] = cfg(names[k], PREFS[k], 2);
        cs[k].tokenizer = f->tok;
        single[k] = mope_expert_local_new(f->m, &cs[k], &err);
        if (!single[k]) fail_msg("%s", err.msg);
    }
    mope_expert_group *g = mope_expert_group_new(f->m, cs, 3, &err);
    if (!g) fail_msg("%s", err.msg);
    assert_int_equal(mope_expert_group_size(g), 3);
    int prompt_rows = 0;
    for (int k = 0; k < 3; k++)
        for (int s = 0; s < 2; s++) {
            mope_expert *e = mope_expert_group_member(g, k);
            assert_string_equal(mope_expert_name(e), names[k]);
            assert_int_equal(mope_expert_start(e, s, INSTR[s], &err), 0);
            assert_int_equal(mope_expert_start(single[k], s, INSTR[s], &err), 0);
            int32_t *toks = NULL;
            prompt_rows += mope_expert_prompt_tokens(e, INSTR[s], &toks, &err);
            free(toks);
        }
    mope_dist dg = {0}, ds = {0};
    double worst = 0;
    int64_t calls = 0;
    for (int t = 0; t <= 4; t++) {
        for (int k = 0; k < 3; k++)
            for (int s = 0; s < 2; s++) {
                assert_int_equal(mope_expert_next(mope_expert_group_member(g, k), s, &dg, &err), 0);
                /* The first next() of a step ran everything queued: the
                 * prompts, then one forward call of 6 rows per step. */
                assert_int_equal(mope_expert_group_last_rows(g), t == 0 ? prompt_rows : 6);
                if (t == 0 && k == 0 && s == 0) {
                    calls = mope_expert_group_n_forward(g);
                    assert_true(calls >= 1 && calls <= 1 + prompt_rows / 200);
                }
                if (t > 0) assert_int_equal(mope_expert_group_n_forward(g), calls + t);
                assert_int_equal(mope_expert_next(single[k], s, &ds, &err), 0);
                double dmax = max_abs_diff(dg.logits, ds.logits, f->V);
                if (dmax > worst) worst = dmax;
            }
        /* Different experts see different prompts: their logits differ. */
        assert_int_equal(mope_expert_next(mope_expert_group_member(g, 0), 0, &dg, &err), 0);
        assert_int_equal(mope_expert_next(mope_expert_group_member(g, 1), 0, &ds, &err), 0);
        assert_true(max_abs_diff(dg.logits, ds.logits, f->V) > 1e-4);
        if (t == 4) break;
        for (int k = 0; k < 3; k++)
            for (int s = 0; s < 2; s++) {
                int32_t tok = RESPONSE[(t + s) % 4];
                assert_int_equal(mope_expert_feed(mope_expert_group_member(g, k), s, &tok, 1, &err), 0);
                assert_int_equal(mope_expert_feed(single[k], s, &tok, 1, &err), 0);
            }
    }
    /* Bit for bit: every sequence's rows take the same kernels in both
     * (see mope_expert_group_eval). */
    assert_true(worst == 0);
    mope_dist_free(&dg);
    mope_dist_free(&ds);
    for (int k = 0; k < 3; k++) mope_expert_free(single[k]);
    mope_expert_group_free(g);
}

typedef struct idlp {
    int32_t id;
    double lp;
} idlp;

static int by_lp_desc(const void *a, const void *b) {
    const idlp *x = a, *y = b;
    if (x->lp != y->lp) return x->lp < y->lp ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static void test_blackbox_and_mixing(void **state) {
    fixture *f = *state;
    mope_error err = {0};
    mope_expert_config cs[2] = {cfg("a", PREFS[0], 1), cfg("b", PREFS[2], 1)};
    mope_expert_group *g = mope_expert_group_new(f->m, cs, 2, &err);
    if (!g) fail_msg("%s", err.msg);
    enum { KTOP = 5 };
    mope_expert *bb[2];
    for (int k = 0; k < 2; k++) {
        bb[k] = mope_expert_blackbox_new(mope_expert_group_member(g, k), KTOP, &err);
        if (!bb[k]) fail_msg("%s", err.msg);
        assert_int_equal(mope_expert_start(bb[k], 0, INSTR[1], &err), 0);
        assert_int_equal(mope_expert_feed(bb[k], 0, RESPONSE, 2, &err), 0);
    }
    mope_dist full[2] = {0}, top[2] = {0};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(mope_expert_next(bb[k], 0, &top[k], &err), 0);
        assert_int_equal(mope_expert_next(mope_expert_group_member(g, k), 0, &full[k], &err), 0);
    }
    /* Reference: sort all tokens by log-prob (double log-softmax here). */
    idlp *all = malloc(sizeof(idlp) * f->V);
    for (int k = 0; k < 2; k++) {
        const float *l = full[k].logits;
        double m = -INFINITY, s = 0;
        for (int i = 0; i < f->V; i++) m = l[i] > m ? l[i] : m;
        for (int i = 0; i < f->V; i++) s += exp(l[i] - m);
        for (int i = 0; i < f->V; i++) all[i] = (idlp){i, l[i] - m - log(s)};
        qsort(all, (size_t)f->V, sizeof(idlp), by_lp_desc);
        assert_int_equal(top[k].kind, MOPE_DIST_TOPK);
        assert_int_equal(top[k].k, KTOP);
        double S = 0;
        for (int j = 0; j < KTOP; j++) {
            S += exp(all[j].lp);
            int found = -1;
            for (int i = 0; i < KTOP; i++)
                if (top[k].ids[i] == all[j].id) found = i;
            assert_true(found >= 0);
            assert_true(fabs(top[k].logprobs[found] - all[j].lp) < 1e-5);
        }
        assert_true(fabs(top[k].rest_p - (1 - S) / (f->V - KTOP)) < 1e-9);
    }
    free(all);

    /* One-hot weights through the expert path reproduce the expert, in
     * exact mode for both rules and in top-k mode. */
    float *out = malloc(sizeof(float) * f->V), *ref = malloc(sizeof(float) * f->V);
    for (int k = 0; k < 2; k++) {
        float w[2] = {0, 0};
        w[k] = 1;
        assert_int_equal(mope_dist_probs(&full[k], ref, &err), 0);
        for (int r = 0; r < 2; r++) {
            assert_int_equal(mope_mix_step(full, 2, w, (mope_mix_rule)r, out, &err), 0);
            assert_true(max_abs_diff(out, ref, f->V) < 1e-7);
        }
        assert_int_equal(mope_mix_step(top, 2, w, MOPE_MIX_LINEAR, out, &err), 0);
        for (int i = 0; i < f->V; i++) {
            double want = top[k].rest_p;
            for (int j = 0; j < KTOP; j++)
                if (top[k].ids[j] == i) want = exp(top[k].logprobs[j]);
            assert_true(fabs(out[i] - want) < 1e-7);
        }
    }
    /* A real mixture samples through the sampler. */
    const float w[2] = {0.5f, 0.5f};
    assert_int_equal(mope_mix_step(top, 2, w, MOPE_MIX_GEOMETRIC, out, &err), 0);
    double sum = 0;
    for (int i = 0; i < f->V; i++) sum += out[i];
    assert_true(fabs(sum - 1) < 1e-5);
    free(out);
    free(ref);
    for (int k = 0; k < 2; k++) {
        mope_dist_free(&full[k]);
        mope_dist_free(&top[k]);
        mope_expert_free(bb[k]);
    }
    mope_expert_group_free(g);
}

/* The adapter id of an expert's config reaches its rows: a group with a
 * base member and a LoRA member matches a direct forward with that adapter,
 * and a standalone expert with it, and differs from the base. */
static void test_lora_member(void **state) {
    fixture *f = *state;
    mope_error err = {0};
    const mope_hparams *hp = mope_model_hparams(f->m);
    mope_lora *l = mope_lora_new("llama", 8.0f, &err);
    assert_non_null(l);
    mope_rng rng;
    mope_rng_seed(&rng, 5);
    assert_int_equal(mope_lora_add_targets(l, hp, MOPE_LORA_ATTN | MOPE_LORA_FFN, 4, &rng, &err), 0);
    for (int i = 0; i < mope_lora_n_tensors(l); i++) { /* B = 0 would be the identity */
        mope_lora_tensor *t = mope_lora_tensor_at(l, i);
        for (int64_t j = 0; j < t->n_out * t->rank; j++) t->b[j] = 0.05f * mope_rng_normal(&rng);
    }
    int id = mope_model_add_adapter(f->m, l, 1.0f, &err);
    if (id < 0) fail_msg("%s", err.msg);

    mope_expert_config cs[2] = {cfg("base", PREFS[1], 1), cfg("lora", PREFS[1], 1)};
    cs[1].adapter = id;
    mope_expert_group *g = mope_expert_group_new(f->m, cs, 2, &err);
    if (!g) fail_msg("%s", err.msg);
    mope_expert *alone = mope_expert_local_new(f->m, &cs[1], &err);
    assert_non_null(alone);
    int32_t *toks = NULL;
    int n = ref_prompt(f, INSTR[1], PREFS[1], &toks);
    mope_kv *kv = mope_kv_new(f->m, 1, 256, &err);
    mope_row *rows = calloc((size_t)n, sizeof(mope_row));
    for (int i = 0; i < n; i++) rows[i] = (mope_row){0, toks[i], i, id, i == n - 1};
    float *ref = malloc(sizeof(float) * f->V);
    assert_int_equal(mope_model_forward(f->m, kv, rows, n, ref, NULL, &err), 0);

    mope_dist d0 = {0}, d1 = {0}, da = {0};
    for (int k = 0; k < 2; k++) assert_int_equal(mope_expert_start(mope_expert_group_member(g, k), 0, INSTR[1], &err), 0);
    assert_int_equal(mope_expert_start(alone, 0, INSTR[1], &err), 0);
    assert_int_equal(mope_expert_next(mope_expert_group_member(g, 1), 0, &d1, &err), 0);
    assert_int_equal(mope_expert_group_n_forward(g), 1); /* both members' prompts, one call */
    assert_int_equal(mope_expert_next(mope_expert_group_member(g, 0), 0, &d0, &err), 0);
    assert_int_equal(mope_expert_next(alone, 0, &da, &err), 0);
    assert_true(max_abs_diff(d1.logits, ref, f->V) < 1e-4);
    assert_true(max_abs_diff(d1.logits, da.logits, f->V) < 1e-4);
    assert_true(max_abs_diff(d0.logits, d1.logits, f->V) > 1e-3);

    mope_dist_free(&d0);
    mope_dist_free(&d1);
    mope_dist_free(&da);
    free(ref);
    free(rows);
    free(toks);
    mope_kv_free(kv);
    mope_expert_free(alone);
    mope_expert_group_free(g);
    assert_int_equal(mope_model_remove_adapter(f->m, id, &err), 0);
    mope_lora_free(l);
}

static void test_errors(void **state) {
    fixture *f = *state;
    mope_error err = {0};
    mope_expert_config c = cfg("small", NULL, 2);
    c.n_ctx = 24;
    mope_expert *e = mope_expert_local_new(f->m, &c, &err);
    if (!e) fail_msg("%s", err.msg);
    mope_dist d = {0};
    assert_int_equal(mope_expert_next(e, 0, &d, &err), MOPE_ESTATE);
    assert_non_null(strstr(err.msg, "no tokens"));
    assert_int_equal(mope_expert_next(e, 2, &d, &err), MOPE_EINVAL);
    int32_t bad = f->V;
    assert_int_equal(mope_expert_feed(e, 0, &bad, 1, &err), MOPE_EINVAL);
    int32_t many[30] = {0};
    assert_int_equal(mope_expert_feed(e, 0, many, 20, &err), 0);
    assert_int_equal(mope_expert_feed(e, 0, many, 5, &err), MOPE_ERANGE);
    assert_non_null(strstr(err.msg, "context"));
    assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
    assert_int_equal(mope_expert_feed(e, 0, many, 4, &err), 0);
    assert_int_equal(mope_expert_feed(e, 0, many, 1, &err), MOPE_ERANGE);
    mope_expert_reset(e, 0);
    assert_int_equal(mope_expert_next(e, 0, &d, &err), MOPE_ESTATE);
    mope_expert_free(e);

    /* An adapter the engine does not have fails in the forward pass.  In a
     * group whose prefill takes two calls (300 + 300 rows), the first call's
     * sequence is rolled back: once the failing member is reset, the other
     * one's logits equal a standalone expert's bit for bit. */
    mope_expert_config ca[2] = {cfg("base", NULL, 1), cfg("lora", NULL, 1)};
    ca[0].n_ctx = ca[1].n_ctx = 320;
    ca[1].adapter = 3;
    mope_expert_group *g = mope_expert_group_new(f->m, ca, 2, &err);
    if (!g) fail_msg("%s", err.msg);
    mope_expert *e0 = mope_expert_group_member(g, 0), *e1 = mope_expert_group_member(g, 1);
    int32_t toks[300];
    for (int i = 0; i < 300; i++) toks[i] = (int32_t)((i * 37 + 11) % f->V);
    assert_int_equal(mope_expert_feed(e0, 0, toks, 300, &err), 0);
    assert_int_equal(mope_expert_feed(e1, 0, toks, 300, &err), 0);
    assert_true(mope_expert_next(e0, 0, &d, &err) < 0);
    assert_non_null(strstr(err.msg, "adapter"));
    assert_int_equal(mope_expert_group_n_forward(g), 1); /* the first chunk ran */
    assert_true(mope_expert_next(e0, 0, &d, &err) < 0); /* queues kept: same failure */
    mope_expert_reset(e1, 0);
    assert_int_equal(mope_expert_next(e0, 0, &d, &err), 0);
    mope_expert *alone = mope_expert_local_new(f->m, &ca[0], &err);
    assert_non_null(alone);
    mope_dist da = {0};
    assert_int_equal(mope_expert_feed(alone, 0, toks, 300, &err), 0);
    assert_int_equal(mope_expert_next(alone, 0, &da, &err), 0);
    assert_true(max_abs_diff(d.logits, da.logits, f->V) == 0);
    mope_dist_free(&da);
    mope_expert_free(alone);
    mope_expert_group_free(g);

    mope_expert_config cb = cfg("bad", NULL, 1);
    cb.chat = (mope_chat_template)42;
    assert_null(mope_expert_local_new(f->m, &cb, &err));
    assert_null(mope_expert_blackbox_new(NULL, 3, &err));
    assert_null(mope_expert_local_load("/nonexistent/model.gguf", &c, &err));
    mope_dist_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_matches_forward),
        cmocka_unit_test(test_group_matches_single),
        cmocka_unit_test(test_blackbox_and_mixing),
        cmocka_unit_test(test_lora_member),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
