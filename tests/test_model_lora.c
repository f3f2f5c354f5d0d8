/* LoRA at inference: adapted forward against the naive reference forward
 * fed W + s B A (computed here in double), zero adapters, several adapters
 * in one batch, merging, and delta averaging checked through the forward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mope/gguf.h"
#include "mope/lora.h"
#include "mope/model.h"
#include "mope/quant.h"
#include "util/refmodel.h"

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "%s/test_model_lora_%d_%s.gguf", MOPE_BINARY_DIR, (int)getpid(), tag);
}

static mope_model *random_model(mope_arch arch, bool tied, int n_embd, int n_ff, char *path, size_t np,
                                const char *tag) {
    mope_hparams hp;
    mope_hparams_init(&hp, arch);
    hp.tied_output = tied;
    hp.n_embd = n_embd;
    hp.n_ff = n_ff;
    hp.head_dim = n_embd / hp.n_head;
    hp.n_rot = hp.head_dim;
    tmp_path(path, np, tag);
    mope_error err = {0};
    assert_int_equal(mope_model_write_random(path, &hp, MOPE_TYPE_F32, 1234, NULL, &err), 0);
    mope_model *m = mope_model_load(path, &err);
    if (!m) fail_msg("%s", err.msg);
    return m;
}

static void fill_normal(float *v, size_t n, float sd, mope_rng *r) {
    for (size_t i = 0; i < n; i++) v[i] = sd * mope_rng_normal(r);
}

/* An adapter of the given targets with random A and B (and, with embd, an
 * adapted token_embd.weight of rank 3). */
static mope_lora *random_lora(const mope_model *m, unsigned targets, int rank, float alpha, bool embd, uint64_t seed,
                              bool zero_b) {
    const mope_hparams *hp = mope_model_hparams(m);
    mope_error err = {0};
    mope_lora *l = mope_lora_new(mope_arch_name(hp->arch), alpha, &err);
    assert_non_null(l);
    mope_rng r;
    mope_rng_seed(&r, seed);
    assert_int_equal(mope_lora_add_targets(l, hp, targets, rank, &r, &err), 0);
    if (embd) assert_true(mope_lora_add(l, "token_embd.weight", hp->n_embd, hp->n_vocab, 3, NULL, NULL, &err) >= 0);
    for (int i = 0; i < mope_lora_n_tensors(l); i++) {
        mope_lora_tensor *t = mope_lora_tensor_at(l, i);
        fill_normal(t->a, (size_t)t->rank * t->n_in, 0.2f, &r);
        if (!zero_b) fill_normal(t->b, (size_t)t->n_out * t->rank, 0.05f, &r);
    }
    return l;
}

/* ---- the reference: base tensors, with W + sum_k c_k B_k A_k for adapted ones ---- */

typedef struct ref_ctx {
    const mope_gguf *g;
    const mope_lora *l[4];
    float c[4]; /* the full scale of each adapter's update (user scale x alpha / rank) */
    float user[4];
    int n;
    char names[64][64];
    float *bufs[64];
    int n_bufs;
} ref_ctx;

static int ref_lookup(void *arg, const char *name, refmodel_tensor *out) {
    ref_ctx *c = arg;
    const mope_gguf_tensor *t = mope_gguf_find_tensor(c->g, name);
    if (!t) return -1;
    out->data = t->data;
    out->type = t->type;
    out->ne0 = t->ne[0];
    out->ne1 = t->ne[1];
    bool adapted = false;
    for (int k = 0; k < c->n; k++) adapted = adapted || mope_lora_find(c->l[k], name);
    if (!adapted) return 0;
    for (int i = 0; i < c->n_bufs; i++)
        if (strcmp(c->names[i], name) == 0) {
            out->data = c->bufs[i];
            out->type = MOPE_TYPE_F32;
            return 0;
        }
    assert_true(c->n_bufs < 64);
    int64_t n_in = t->ne[0], n_out = t->ne[1];
    float *w = malloc(sizeof(float) * (size_t)(n_in * n_out));
    assert_non_null(w);
    assert_int_equal(mope_dequantize_row(t->type, t->data, w, n_in * n_out), 0);
    for (int k = 0; k < c->n; k++) {
        const mope_lora_tensor *lt = mope_lora_find(c->l[k], name);
        if (!lt) continue;
        /* the scale computed from the rule, not from the library */
        double s = mope_lora_alpha(c->l[k]) != 0 ? c->user[k] * mope_lora_alpha(c->l[k]) / lt->rank : c->user[k];
        for (int64_t o = 0; o < n_out; o++)
            for (int64_t i = 0; i < n_in; i++) {
                double d = 0;
                for (int q = 0; q < lt->rank; q++) d += (double)lt->b[o * lt->rank + q] * lt->a[q * n_in + i];
                w[o * n_in + i] = (float)(w[o * n_in + i] + s * d);
            }
    }
    snprintf(c->names[c->n_bufs], 64, "%s", name);
    c->bufs[c->n_bufs++] = w;
    out->data = w;
    out->type = MOPE_TYPE_F32;
    return 0;
}

static void ref_free(ref_ctx *c) {
    for (int i = 0; i < c->n_bufs; i++) free(c->bufs[i]);
    c->n_bufs = 0;
}

static refmodel_hp ref_hp(const mope_hparams *hp) {
    refmodel_hp r = {
        .n_vocab = hp->n_vocab, .n_embd = hp->n_embd, .n_layer = hp->n_layer, .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim, .n_ff = hp->n_ff, .n_rot = hp->n_rot,
        .rope_base = hp->rope_freq_base, .rope_scale = hp->rope_freq_scale, .rms_eps = hp->rms_eps,
        .neox = hp->arch == MOPE_ARCH_QWEN2, .qkv_bias = hp->has_qkv_bias, .tied = hp->tied_output,
    };
    return r;
}

static double rel_err(const float *a, const double *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN sticks */
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

static double rel_err_f(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double md = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > md) md = fabs((double)a[i] - b[i]);
    return md;
}

/* Logits of every position of tokens[0..n) in one sequence, with `adapter`
 * on every row: first a batch of n_first rows, then one row per call. */
static float *run_seq(mope_model *m, const int32_t *tokens, int n, int n_first, int adapter, mope_pool *pool) {
    const mope_hparams *hp = mope_model_hparams(m);
    mope_error err = {0};
    mope_kv *kv = mope_kv_new(m, 1, n, &err);
    assert_non_null(kv);
    float *logits = malloc(sizeof(float) * (size_t)n * hp->n_vocab);
    mope_row *rows = malloc(sizeof *rows * (size_t)n);
    assert_non_null(logits);
    assert_non_null(rows);
    for (int i = 0; i < n; i++)
        rows[i] = (mope_row){.seq = 0, .token = tokens[i], .pos = i, .adapter = adapter, .want_logits = true};
    if (mope_model_forward(m, kv, rows, n_first, logits, pool, &err) != 0) fail_msg("%s", err.msg);
    for (int i = n_first; i < n; i++)
        if (mope_model_forward(m, kv, &rows[i], 1, logits + (size_t)i * hp->n_vocab, pool, &err) != 0)
            fail_msg("%s", err.msg);
    free(rows);
    mope_kv_free(kv);
    return logits;
}

static const int32_t toks[12] = {1, 40, 300, 7, 99, 511, 2, 64, 128, 5, 77, 400};

static void check_against_ref(mope_arch arch, bool tied, const char *tag) {
    char path[512];
    mope_model *m = random_model(arch, tied, 64, 128, path, sizeof path, tag);
    const mope_hparams *hp = mope_model_hparams(m);
    unsigned targets = MOPE_LORA_ATTN | MOPE_LORA_FFN | (tied ? 0 : MOPE_LORA_OUTPUT);
    mope_lora *l = random_lora(m, targets, 4, 8.0f, true, 77, false);
    mope_error err = {0};
    const float user = 0.7f;
    int id = mope_model_add_adapter(m, l, user, &err);
    assert_int_equal(id, 0);
    /* 9 rows (f32 weights take the sgemm path from 8) then 3 single rows */
    float *got = run_seq(m, toks, 12, 9, id, NULL);
    float *base = run_seq(m, toks, 12, 9, -1, NULL);

    mope_gguf *g = mope_gguf_open(path, &err);
    assert_non_null(g);
    ref_ctx rc = {.g = g, .l = {l}, .user = {user}, .n = 1};
    refmodel_hp rh = ref_hp(hp);
    size_t nl = (size_t)12 * hp->n_vocab;
    double *want = malloc(sizeof(double) * nl);
    assert_non_null(want);
    assert_int_equal(refmodel_forward(&rh, ref_lookup, &rc, toks, 12, want), 0);
    double e = rel_err(got, want, nl);
    /* the adapter matters: the base alone is far from the reference */
    double e_base = rel_err(base, want, nl);
    print_message("%s: adapted vs reference %.3g, base vs reference %.3g\n", tag, e, e_base);
    assert_true(e < 1e-4);
    assert_true(e_base > 1e-2);
    ref_free(&rc);
    free(want);
    free(got);
    free(base);
    mope_gguf_close(g);
    mope_model_free(m);
    mope_lora_free(l);
    unlink(path);
}

static void test_ref_llama(void **state) {
    (void)state;
    check_against_ref(MOPE_ARCH_LLAMA, false, "ref_llama");
}

/* qwen2 (biases, neox rope) with a tied output: the token_embd update is
 * applied at the output projection too */
static void test_ref_qwen2_tied(void **state) {
    (void)state;
    check_against_ref(MOPE_ARCH_QWEN2, true, "ref_qwen2");
}

static void test_zero_b_identical(void **state) {
    (void)state;
    char path[512];
    mope_model *m = random_model(MOPE_ARCH_LLAMA, false, 64, 128, path, sizeof path, "zero");
    mope_lora *l = random_lora(m, MOPE_LORA_ATTN | MOPE_LORA_FFN | MOPE_LORA_OUTPUT, 8, 16.0f, true, 5, true);
    mope_error err = {0};
    int id = mope_model_add_adapter(m, l, 1.0f, &err);
    assert_true(id >= 0);
    size_t nl = (size_t)12 * mope_model_hparams(m)->n_vocab;
    for (int first = 1; first <= 12; first += 11) { /* vecdot and sgemm paths */
        float *a = run_seq(m, toks, 12, first, id, NULL);
        float *b = run_seq(m, toks, 12, first, -1, NULL);
        assert_memory_equal(a, b, nl * sizeof(float));
        free(a);
        free(b);
    }
    mope_model_free(m);
    mope_lora_free(l);
    unlink(path);
}

/* Rows of three adapters and of the base, interleaved in one batch (and
 * threaded), equal each sequence run alone with its adapter. */
static void test_mixed_batch(void **state) {
    (void)state;
    char path[512];
    mope_model *m = random_model(MOPE_ARCH_LLAMA, false, 128, 256, path, sizeof path, "mixed");
    const mope_hparams *hp = mope_model_hparams(m);
    mope_lora *la = random_lora(m, MOPE_LORA_ATTN | MOPE_LORA_FFN | MOPE_LORA_OUTPUT, 8, 16.0f, true, 11, false);
    mope_lora *lb = random_lora(m, MOPE_LORA_Q | MOPE_LORA_V | MOPE_LORA_DOWN, 4, 0.0f, false, 12, false);
    mope_lora *lc = random_lora(m, MOPE_LORA_FFN | MOPE_LORA_OUTPUT, 16, 8.0f, false, 13, false);
    mope_error err = {0};
    int ids[4] = {mope_model_add_adapter(m, la, 1.0f, &err), -1, mope_model_add_adapter(m, lb, 0.5f, &err),
                  mope_model_add_adapter(m, lc, 2.0f, &err)};
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[2], 1);
    assert_int_equal(ids[3], 2);
    assert_int_equal(mope_model_n_adapters(m), 3);
    enum { NS = 4, NP = 6, NT = NP + 2 };
    int32_t tk[NS][NT];
    mope_rng r;
    mope_rng_seed(&r, 3);
    for (int s = 0; s < NS; s++)
        for (int t = 0; t < NT; t++) tk[s][t] = (int32_t)mope_rng_below(&r, (uint32_t)hp->n_vocab);
    size_t V = (size_t)hp->n_vocab;
    float *batch = malloc(sizeof(float) * NS * NT * V);
    assert_non_null(batch);
    mope_pool *pool = mope_pool_create(2, &err);
    assert_non_null(pool);
    mope_kv *kv = mope_kv_new(m, NS, NT, &err);
    assert_non_null(kv);
    /* prefill: position-major interleaving of the sequences; the last row
     * of each sequence's prompt is the only one wanting logits for seq 1 */
    mope_row rows[NS * NP];
    int n = 0;
    for (int t = 0; t < NP; t++)
        for (int s = 0; s < NS; s++)
            rows[n++] = (mope_row){.seq = s, .token = tk[s][t], .pos = t, .adapter = ids[s],
                                   .want_logits = s != 1 || t == NP - 1};
    float *out = malloc(sizeof(float) * NS * NP * V);
    assert_non_null(out);
    if (mope_model_forward(m, kv, rows, n, out, pool, &err) != 0) fail_msg("%s", err.msg);
    int w = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].want_logits) {
            memcpy(batch + ((size_t)rows[i].seq * NT + rows[i].pos) * V, out + (size_t)w * V, V * sizeof(float));
            w++;
        }
    /* two decode steps, all sequences together, in reverse order */
    for (int t = NP; t < NT; t++) {
        mope_row dr[NS];
        for (int s = 0; s < NS; s++)
            dr[s] = (mope_row){.seq = NS - 1 - s, .token = tk[NS - 1 - s][t], .pos = t, .adapter = ids[NS - 1 - s],
                               .want_logits = true};
        if (mope_model_forward(m, kv, dr, NS, out, pool, &err) != 0) fail_msg("%s", err.msg);
        for (int s = 0; s < NS; s++)
            memcpy(batch + ((size_t)(NS - 1 - s) * NT + t) * V, out + (size_t)s * V, V * sizeof(float));
    }
    for (int s = 0; s < NS; s++) {
        float *alone = run_seq(m, tk[s], NT, NP, ids[s], NULL);
        for (int t = 0; t < NT; t++) {
            if (s == 1 && t < NP - 1) continue;
            double e = rel_err_f(batch + ((size_t)s * NT + t) * V, alone + (size_t)t * V, V);
            if (e > 1e-5) fail_msg("sequence %d (adapter %d) position %d: batch vs alone %.3g", s, ids[s], t, e);
        }
        /* and each adapter changes the output (the test can tell them apart) */
        if (ids[s] >= 0) {
            float *base = run_seq(m, tk[s], NT, NP, -1, NULL);
            assert_true(max_abs_diff(alone, base, NT * V) > 1e-3);
            free(base);
        }
        free(alone);
    }
    /* a removed adapter's id is refused, the others keep working */
    assert_int_equal(mope_model_remove_adapter(m, ids[2], &err), 0);
    mope_kv_clear(kv);
    mope_row bad = {.seq = 0, .token = 1, .pos = 0, .adapter = ids[2], .want_logits = true};
    assert_true(mope_model_forward(m, kv, &bad, 1, out, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "not attached"));
    bad.adapter = 3;
    assert_true(mope_model_forward(m, kv, &bad, 1, out, NULL, &err) < 0);
    bad.adapter = ids[3];
    assert_int_equal(mope_model_forward(m, kv, &bad, 1, out, NULL, &err), 0);
    assert_int_equal(mope_model_remove_adapter(m, ids[2], &err) < 0, 1);
    mope_kv_free(kv);
    mope_pool_free(pool);
    free(out);
    free(batch);
    mope_model_free(m);
    mope_lora_free(la);
    mope_lora_free(lb);
    mope_lora_free(lc);
    unlink(path);
}

/* A merged model file (base forward only) equals the adapted model. */
static void test_merge(void **state) {
    (void)state;
    char path[512], mpath[512];
    for (int tied = 0; tied < 2; tied++) {
        mope_model *m = random_model(MOPE_ARCH_LLAMA, tied, 64, 128, path, sizeof path, "merge_base");
        unsigned targets = MOPE_LORA_ATTN | MOPE_LORA_FFN | (tied ? 0 : MOPE_LORA_OUTPUT);
        mope_lora *l = random_lora(m, targets, 4, 8.0f, true, 21, false);
        mope_error err = {0};
        int id = mope_model_add_adapter(m, l, 1.5f, &err);
        assert_true(id >= 0);
        float *adapted = run_seq(m, toks, 12, 12, id, NULL);
        size_t nl = (size_t)12 * mope_model_hparams(m)->n_vocab;
        const mope_type types[2] = {MOPE_TYPE_F32, MOPE_TYPE_F16};
        for (int ti = 0; ti < 2; ti++) {
            tmp_path(mpath, sizeof mpath, "merged");
            if (mope_lora_merge(m, l, 1.5f, types[ti], mpath, &err) != 0) fail_msg("%s", err.msg);
            mope_model *mm = mope_model_load(mpath, &err);
            assert_non_null(mm);
            assert_int_equal(mope_model_hparams(mm)->tied_output, tied);
            float *merged = run_seq(mm, toks, 12, 12, -1, NULL);
            double e = rel_err_f(merged, adapted, nl);
            print_message("merge (%s, %s): merged vs adapted %.3g\n", tied ? "tied" : "untied",
                          mope_type_name(types[ti]), e);
            assert_true(e < (ti == 0 ? 1e-4 : 1e-2));
            free(merged);
            mope_model_free(mm);
            unlink(mpath);
        }
        assert_true(mope_lora_merge(m, l, 1.0f, MOPE_TYPE_Q4_0, mpath, &err) < 0);
        assert_non_null(strstr(err.msg, "q4_0"));
        free(adapted);
        mope_model_free(m);
        mope_lora_free(l);
        unlink(path);
    }
}

/* DELTA averaging: the forward of the averaged adapter equals the reference
 * fed W + sum_k w_k s_k B_k A_k, with different ranks, alphas and targets. */
static void test_average_delta(void **state) {
    (void)state;
    char path[512];
    mope_model *m = random_model(MOPE_ARCH_LLAMA, false, 64, 128, path, sizeof path, "delta");
    const mope_hparams *hp = mope_model_hparams(m);
    mope_lora *l1 = random_lora(m, MOPE_LORA_ATTN | MOPE_LORA_OUTPUT, 4, 8.0f, true, 31, false);
    mope_lora *l2 = random_lora(m, MOPE_LORA_Q | MOPE_LORA_FFN, 8, 4.0f, false, 32, false);
    mope_lora *l3 = random_lora(m, MOPE_LORA_V | MOPE_LORA_UP, 2, 0.0f, false, 33, false);
    const mope_lora *ls[3] = {l1, l2, l3};
    const float w[3] = {0.4f, 0.6f, -0.3f};
    mope_error err = {0};
    mope_lora *avg = mope_lora_average(ls, w, 3, MOPE_LORA_AVG_DELTA, &err);
    if (!avg) fail_msg("%s", err.msg);
    /* attn_q is in l1 and l2: rank 4 + 8 */
    assert_int_equal(mope_lora_find(avg, "blk.0.attn_q.weight")->rank, 12);
    assert_int_equal(mope_lora_find(avg, "blk.1.attn_v.weight")->rank, 6);
    assert_true(mope_lora_alpha(avg) == 0.0f); /* ranks differ across tensors */
    int id = mope_model_add_adapter(m, avg, 1.0f, &err);
    assert_true(id >= 0);
    float *got = run_seq(m, toks, 12, 12, id, NULL);
    mope_gguf *g = mope_gguf_open(path, &err);
    assert_non_null(g);
    ref_ctx rc = {.g = g, .l = {l1, l2, l3}, .user = {w[0], w[1], w[2]}, .n = 3};
    refmodel_hp rh = ref_hp(hp);
    size_t nl = (size_t)12 * hp->n_vocab;
    double *want = malloc(sizeof(double) * nl);
    assert_non_null(want);
    assert_int_equal(refmodel_forward(&rh, ref_lookup, &rc, toks, 12, want), 0);
    double e = rel_err(got, want, nl);
    print_message("delta average vs reference %.3g\n", e);
    assert_true(e < 1e-4);
    /* equal ranks everywhere: alpha = the rank, so the scale is still 1 */
    const mope_lora *two[2] = {l2, l2};
    mope_lora *avg2 = mope_lora_average(two, NULL, 2, MOPE_LORA_AVG_DELTA, &err);
    assert_non_null(avg2);
    assert_true(mope_lora_alpha(avg2) == 16.0f);
    const mope_lora_tensor *t = mope_lora_get(avg2, 0);
    assert_true(fabsf(mope_lora_scale(avg2, t, 1.0f) - 1.0f) < 1e-7f);
    ref_free(&rc);
    free(want);
    free(got);
    mope_gguf_close(g);
    mope_model_free(m);
    mope_lora_free(avg);
    mope_lora_free(avg2);
    mope_lora_free(l1);
    mope_lora_free(l2);
    mope_lora_free(l3);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_llama),
        cmocka_unit_test(test_ref_qwen2_tied),
        cmocka_unit_test(test_zero_b_identical),
        cmocka_unit_test(test_mixed_batch),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_average_delta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
