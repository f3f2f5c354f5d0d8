/* Forward pass against the naive reference in tests/util/refmodel.c, on small
 * random models written through the gguf writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "model/model_internal.h"
#include "mope/gguf.h"
#include "mope/model.h"
#include "util/refmodel.h"

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "%s/test_model_forward_%d_%s.gguf", MOPE_BINARY_DIR, (int)getpid(), tag);
}

static int lookup(void *ctx, const char *name, refmodel_tensor *out) {
    const mope_gguf_tensor *t = mope_gguf_find_tensor(ctx, name);
    if (!t) return -1;
    out->data = t->data;
    out->type = t->type;
    out->ne0 = t->ne[0];
    out->ne1 = t->ne[1];
    return 0;
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

/* Reference logits for tokens[0..n) of the model in file `path`. */
static double *ref_logits(const char *path, const mope_hparams *hp, const int32_t *tokens, int n, bool quant_act) {
    mope_error err = {0};
    mope_gguf *g = mope_gguf_open(path, &err);
    assert_non_null(g);
    refmodel_hp r = ref_hp(hp);
    r.quant_act = quant_act;
    double *out = malloc(sizeof(double) * (size_t)n * hp->n_vocab);
    assert_non_null(out);
    assert_int_equal(refmodel_forward(&r, lookup, g, tokens, n, out), 0);
    mope_gguf_close(g);
    return out;
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const double *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

static double rel_err_f(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

static void make_tokens(int32_t *t, int n, int n_vocab, uint32_t seed) {
    mope_rng r;
    mope_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) t[i] = (int32_t)mope_rng_below(&r, (uint32_t)n_vocab);
}

/* Runs tokens through sequence `seq` either as one batch or one row at a
 * time; logits of every position go to out. */
static void run_seq(mope_model *m, mope_kv *kv, int seq, const int32_t *tokens, int n, bool one_by_one, float *out,
                    mope_pool *pool) {
    mope_error err = {0};
    int nv = mope_model_hparams(m)->n_vocab;
    int start = mope_kv_seq_len(kv, seq);
    mope_row *rows = calloc((size_t)n, sizeof *rows);
    for (int i = 0; i < n; i++) rows[i] = (mope_row){seq, tokens[i], start + i, -1, true};
    if (one_by_one) {
        for (int i = 0; i < n; i++) {
            int rc = mope_model_forward(m, kv, &rows[i], 1, out + (size_t)i * nv, pool, &err);
            assert_int_equal(rc, 0);
        }
    } else {
        int rc = mope_model_forward(m, kv, rows, n, out, pool, &err);
        if (rc) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(rc, 0);
    }
    free(rows);
}

/* Writes a model, checks decode (one row at a time, vec_dot path) and
 * prefill (one batch, sgemm path) against the reference with the same
 * dequantised weights.  Prefill keeps f32 activations, so it must agree to
 * 1e-4 of the logit scale for every type; decode quantises the activations
 * (q8_0, q8_K or f16 per weight type), which is what tol_decode allows for.
 * The error against a reference that rounds its activations the same way is
 * printed too: usually ~1e-7, but one element landing on the other side of a
 * rounding boundary (the reference is double, the engine f32) can move it to
 * ~1e-2, so it is not asserted. */
static void check_vs_ref(const mope_hparams *hp, mope_type wtype, double tol_decode, const char *tag) {
    const double tol_prefill = 1e-4;
    char path[512];
    tmp_path(path, sizeof path, tag);
    mope_error err = {0};
    int rc = mope_model_write_random(path, hp, wtype, 1234, NULL, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    mope_model *m = mope_model_load(path, &err);
    if (!m) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(m);
    mope_model_set_gemm_min_rows(m, 2); /* decode: vec_dot; the 12-row prefill: sgemm */
    const mope_hparams *lh = mope_model_hparams(m);
    assert_int_equal(lh->n_vocab, hp->n_vocab);
    assert_int_equal(lh->n_head_kv, hp->n_head_kv);
    assert_int_equal(lh->n_rot, hp->n_rot);
    assert_int_equal(lh->tied_output, hp->tied_output);
    assert_int_equal(lh->has_qkv_bias, hp->has_qkv_bias);
    assert_int_equal(lh->rope_mode, hp->rope_mode);
    assert_true(fabsf(lh->rope_freq_scale - hp->rope_freq_scale) < 1e-6f);

    enum { N = 12 };
    int32_t tokens[N];
    make_tokens(tokens, N, hp->n_vocab, 7);
    double *ref = ref_logits(path, hp, tokens, N, false);
    double *refq = ref_logits(path, hp, tokens, N, true);
    size_t nl = (size_t)N * hp->n_vocab;
    float *dec = malloc(sizeof(float) * nl), *pre = malloc(sizeof(float) * nl);
    mope_kv *kv = mope_kv_new(m, 2, 32, &err);
    assert_non_null(kv);
    assert_int_equal(mope_model_rows_run(m), 0);
    run_seq(m, kv, 0, tokens, N, true, dec, NULL);
    assert_int_equal(mope_model_rows_run(m), N); /* N one-row calls */
    run_seq(m, kv, 1, tokens, N, false, pre, NULL);
    assert_int_equal(mope_model_rows_run(m), 2 * N); /* and one N-row call */
    double ed = rel_err(dec, ref, nl), edq = rel_err(dec, refq, nl), ep = rel_err(pre, ref, nl);
    printf("  %-26s %-5s decode rel err %.1e (tol %.0e; vs rounded-activation ref %.1e), prefill %.1e (tol %.0e)\n",
           tag, mope_type_name(wtype), ed, tol_decode, edq, ep, tol_prefill);
    assert_true(ed <= tol_decode);
    assert_true(ep <= tol_prefill);
    /* the errors must be measured against something that is not flat */
    double mx = 0;
    for (size_t i = 0; i < nl; i++) mx = fmax(mx, fabs(ref[i]));
    assert_true(mx > 0.5);
    mope_kv_free(kv);
    free(dec);
    free(pre);
    free(ref);
    free(refq);
    mope_model_free(m);
    unlink(path);
}

static void test_llama_f32(void **state) {
    (void)state;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA); /* GQA 4/2, untied */
    hp.n_vocab = 300;
    check_vs_ref(&hp, MOPE_TYPE_F32, 1e-4, "llama_untied");
    hp.tied_output = true;
    hp.rope_freq_base = 500.0f;
    hp.rope_freq_scale = 0.25f; /* linear factor 4 */
    hp.n_rot = 8;               /* only half of each head rotates */
    check_vs_ref(&hp, MOPE_TYPE_F32, 1e-4, "llama_tied_scaled_partial");
    hp.n_head_kv = 1; /* multi-query */
    hp.head_dim = 32; /* heads wider than n_embd / n_head: key_length */
    hp.n_rot = 32;
    check_vs_ref(&hp, MOPE_TYPE_F32, 1e-4, "llama_mqa_wide_heads");
}

static void test_qwen2_f32(void **state) {
    (void)state;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_QWEN2); /* biases, NEOX */
    hp.n_vocab = 280;
    hp.tied_output = true;
    hp.rope_freq_base = 1000000.0f;
    check_vs_ref(&hp, MOPE_TYPE_F32, 1e-4, "qwen2_tied");
    hp.tied_output = false;
    hp.n_head_kv = 4; /* no GQA */
    hp.rope_freq_scale = 0.5f;
    check_vs_ref(&hp, MOPE_TYPE_F32, 1e-4, "qwen2_untied_scaled");
}

/* Quantised weights.  Decode tolerances: over model seeds 1-10 and 1234 the
 * decode error was <= 1.1e-3 for f16 and <= 3.4e-2 for the types that
 * quantise activations to 8 bits (ggml's scheme, so the same loss as
 * llama.cpp); bf16 keeps f32 activations. */
static void test_quantised(void **state) {
    (void)state;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.n_vocab = 300;
    check_vs_ref(&hp, MOPE_TYPE_F16, 5e-3, "llama_small");
    check_vs_ref(&hp, MOPE_TYPE_Q8_0, 6e-2, "llama_small");
    check_vs_ref(&hp, MOPE_TYPE_Q4_0, 6e-2, "llama_small");
    check_vs_ref(&hp, MOPE_TYPE_Q4_1, 6e-2, "llama_small");
    check_vs_ref(&hp, MOPE_TYPE_Q5_0, 6e-2, "llama_small");
    check_vs_ref(&hp, MOPE_TYPE_BF16, 1e-4, "llama_small"); /* bf16 dots f32 activations */
    /* K-quants need rows of 256 */
    mope_hparams_init(&hp, MOPE_ARCH_QWEN2);
    hp.n_vocab = 300;
    hp.n_embd = 256;
    hp.n_head = 8;
    hp.n_head_kv = 2;
    hp.head_dim = 32;
    hp.n_rot = 32;
    hp.n_ff = 512;
    hp.n_layer = 1;
    check_vs_ref(&hp, MOPE_TYPE_Q4_K, 6e-2, "qwen2_256");
    check_vs_ref(&hp, MOPE_TYPE_Q5_K, 6e-2, "qwen2_256");
    check_vs_ref(&hp, MOPE_TYPE_Q6_K, 6e-2, "qwen2_256");
    check_vs_ref(&hp, MOPE_TYPE_Q8_0, 6e-2, "qwen2_256");
}

/* ---- batching, caching, threads ---- */

static mope_model *write_load(const mope_hparams *hp, mope_type wtype, const char *tag, char *path, size_t n) {
    mope_error err = {0};
    tmp_path(path, n, tag);
    assert_int_equal(mope_model_write_random(path, hp, wtype, 1234, NULL, &err), 0);
    mope_model *m = mope_model_load(path, &err);
    assert_non_null(m);
    return m;
}

/* Three sequences interleaved in one batch equal each sequence run alone,
 * one row at a time; then one decode row per sequence in one batch. */
static void batch_vs_single(mope_type wtype, int gemm_min_rows, double tol) {
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.n_vocab = 270;
    char path[512];
    mope_model *m = write_load(&hp, wtype, "batch", path, sizeof path);
    mope_model_set_gemm_min_rows(m, gemm_min_rows);
    mope_error err = {0};
    enum { S = 3, MAXL = 8 };
    const int len[S] = {5, 3, 7};
    int32_t tok[S][MAXL + 1];
    for (int q = 0; q < S; q++) make_tokens(tok[q], MAXL + 1, hp.n_vocab, 100 + q);
    int nv = hp.n_vocab;
    /* alone */
    float *alone = calloc((size_t)S * (MAXL + 1) * nv, sizeof(float));
    mope_kv *kv1 = mope_kv_new(m, S, 16, &err);
    for (int q = 0; q < S; q++) run_seq(m, kv1, q, tok[q], len[q] + 1, true, alone + (size_t)q * (MAXL + 1) * nv, NULL);
    /* together: round-robin over sequences; only every other row wants logits */
    mope_row rows[3 * MAXL];
    int nr = 0, want_of[3 * MAXL];
    for (int i = 0; i < MAXL; i++)
        for (int q = 0; q < S; q++)
            if (i < len[q]) {
                want_of[nr] = (nr % 2 == 0);
                rows[nr] = (mope_row){q, tok[q][i], i, -1, want_of[nr]};
                nr++;
            }
    float *batch = calloc((size_t)nr * nv, sizeof(float));
    mope_kv *kv2 = mope_kv_new(m, S, 16, &err);
    assert_int_equal(mope_model_forward(m, kv2, rows, nr, batch, NULL, &err), 0);
    for (int q = 0; q < S; q++) assert_int_equal(mope_kv_seq_len(kv2, q), len[q]);
    int w = 0;
    double worst = 0;
    for (int r = 0; r < nr; r++) {
        if (!want_of[r]) continue;
        const float *a = alone + ((size_t)rows[r].seq * (MAXL + 1) + rows[r].pos) * nv;
        worst = fmax(worst, rel_err_f(batch + (size_t)w * nv, a, (size_t)nv));
        w++;
    }
    /* decode step for all three at once, in reverse sequence order */
    mope_row dec[S];
    for (int q = 0; q < S; q++) {
        int sq = S - 1 - q;
        dec[q] = (mope_row){sq, tok[sq][len[sq]], len[sq], -1, true};
    }
    float *dl = calloc((size_t)S * nv, sizeof(float));
    assert_int_equal(mope_model_forward(m, kv2, dec, S, dl, NULL, &err), 0);
    for (int q = 0; q < S; q++) {
        int sq = S - 1 - q;
        const float *a = alone + ((size_t)sq * (MAXL + 1) + len[sq]) * nv;
        worst = fmax(worst, rel_err_f(dl + (size_t)q * nv, a, (size_t)nv));
    }
    printf("  batch vs single (%s, gemm from %d rows): rel err %.2e (tol %.0e)\n", mope_type_name(wtype),
           gemm_min_rows, worst, tol);
    assert_true(worst <= tol);
    free(alone), free(batch), free(dl);
    mope_kv_free(kv1);
    mope_kv_free(kv2);
    mope_model_free(m);
    unlink(path);
}

static void test_batch_equals_single(void **state) {
    (void)state;
    batch_vs_single(MOPE_TYPE_Q8_0, 1000, 0.0); /* same kernels: bit-identical */
    batch_vs_single(MOPE_TYPE_F32, 1000, 0.0);
    batch_vs_single(MOPE_TYPE_F32, 4, 1e-5);    /* sgemm batch vs vec_dot single */
}

/* Decoding with the cache equals recomputing the whole prefix in a fresh
 * cache; forking (seq_copy) and rewinding (truncate) preserve that. */
static void test_incremental_equals_recompute(void **state) {
    (void)state;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_QWEN2);
    hp.n_vocab = 260;
    char path[512];
    mope_model *m = write_load(&hp, MOPE_TYPE_Q4_0, "incr", path, sizeof path);
    mope_model_set_gemm_min_rows(m, 1000);
    mope_error err = {0};
    enum { N = 9 };
    int32_t tok[N];
    make_tokens(tok, N, hp.n_vocab, 5);
    int nv = hp.n_vocab;
    float *inc = calloc((size_t)N * nv, sizeof(float)), *full = calloc((size_t)N * nv, sizeof(float));
    mope_kv *kv = mope_kv_new(m, 3, 16, &err);
    run_seq(m, kv, 0, tok, N, true, inc, NULL);
    for (int t = 1; t <= N; t++) {
        mope_kv_clear_seq(kv, 1);
        run_seq(m, kv, 1, tok, t, false, full, NULL);
        assert_true(rel_err_f(inc + (size_t)(t - 1) * nv, full + (size_t)(t - 1) * nv, (size_t)nv) == 0.0);
    }
    /* fork seq 0 after 4 tokens into seq 2, continue with other tokens */
    assert_int_equal(mope_kv_seq_truncate(kv, 0, 4, &err), 0);
    assert_int_equal(mope_kv_seq_len(kv, 0), 4);
    assert_int_equal(mope_kv_seq_copy(kv, 2, 0, &err), 0);
    assert_int_equal(mope_kv_seq_len(kv, 2), 4);
    int32_t alt[N];
    memcpy(alt, tok, sizeof tok);
    make_tokens(alt + 4, N - 4, nv, 77);
    float *forked = calloc((size_t)N * nv, sizeof(float));
    run_seq(m, kv, 2, alt + 4, N - 4, true, forked, NULL);
    run_seq(m, kv, 0, tok + 4, N - 4, true, inc, NULL); /* original continuation again */
    mope_kv_clear_seq(kv, 1);
    run_seq(m, kv, 1, alt, N, false, full, NULL);
    assert_true(rel_err_f(forked, full + (size_t)4 * nv, (size_t)(N - 4) * nv) == 0.0);
    mope_kv_clear_seq(kv, 1);
    run_seq(m, kv, 1, tok, N, false, full, NULL);
    assert_true(rel_err_f(inc, full + (size_t)4 * nv, (size_t)(N - 4) * nv) == 0.0);
    assert_int_not_equal(mope_kv_seq_truncate(kv, 0, N + 1, &err), 0);
    assert_int_not_equal(mope_kv_seq_copy(kv, 0, 3, &err), 0);
    free(inc), free(full), free(forked);
    mope_kv_free(kv);
    mope_model_free(m);
    unlink(path);
}

/* A two-thread pool gives the same logits as the calling thread alone. */
static void test_pool(void **state) {
    (void)state;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.n_vocab = 300;
    hp.n_embd = 256, hp.n_head = 8, hp.n_head_kv = 4, hp.head_dim = 32, hp.n_rot = 32, hp.n_ff = 512;
    char path[512];
    mope_model *m = write_load(&hp, MOPE_TYPE_Q4_K, "pool", path, sizeof path);
    mope_error err = {0};
    mope_pool *pool = mope_pool_create(2, &err);
    assert_non_null(pool);
    enum { N = 40 }; /* long enough that the batch's attention goes to the pool */
    int32_t tok[N];
    make_tokens(tok, N, hp.n_vocab, 3);
    size_t nl = (size_t)N * hp.n_vocab;
    float *a = calloc(nl, sizeof(float)), *b = calloc(nl, sizeof(float));
    mope_kv *kv = mope_kv_new(m, 4, 64, &err);
    run_seq(m, kv, 0, tok, N, true, a, NULL);
    run_seq(m, kv, 1, tok, N, true, b, pool);
    assert_true(rel_err_f(b, a, nl) == 0.0); /* vec_dot path: the same dots, split differently */
    mope_model_set_gemm_min_rows(m, 2);
    run_seq(m, kv, 2, tok, N, false, a, NULL);
    run_seq(m, kv, 3, tok, N, false, b, pool);
    double e = rel_err_f(b, a, nl);
    printf("  sgemm path, 2 threads vs 1: rel err %.1e (tol 1e-5)\n", e);
    assert_true(e < 1e-5); /* tile boundaries differ, so sgemm's edge kernels do */
    free(a), free(b);
    mope_kv_free(kv);
    mope_pool_free(pool);
    mope_model_free(m);
    unlink(path);
}

/* forward_ex's hidden states are what the output matrix reads: logits =
 * hidden . token_embd rows (tied), and hidden / output_norm has unit RMS. */
static void test_hidden_out(void **state) {
    (void)state;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.n_vocab = 300;
    hp.tied_output = true;
    char path[512];
    mope_model *m = write_load(&hp, MOPE_TYPE_F32, "hidden", path, sizeof path);
    mope_error err = {0};
    mope_kv *kv = mope_kv_new(m, 1, 8, &err);
    mope_row rows[3] = {{0, 10, 0, -1, true}, {0, 11, 1, -1, false}, {0, 12, 2, -1, true}};
    float logits[2 * 300], hidden[2 * 64];
    assert_int_equal(mope_model_forward_ex(m, kv, rows, 3, logits, hidden, NULL, &err), 0);
    const mope_gguf *g = mope_model_gguf(m);
    const mope_gguf_tensor *emb = mope_gguf_find_tensor(g, "token_embd.weight");
    const mope_gguf_tensor *nw = mope_gguf_find_tensor(g, "output_norm.weight");
    float ew[64], nwv[64];
    mope_dequantize_row(nw->type, nw->data, nwv, 64);
    for (int r = 0; r < 2; r++) {
        double ms = 0;
        for (int i = 0; i < 64; i++) ms += pow(hidden[r * 64 + i] / nwv[i], 2);
        assert_true(fabs(ms / 64 - 1) < 1e-3);
        double worst = 0, scale = 0;
        for (int v = 0; v < 300; v++) {
            mope_dequantize_row(emb->type, (const char *)emb->data + (size_t)v * 64 * 4, ew, 64);
            double d = 0;
            for (int i = 0; i < 64; i++) d += (double)hidden[r * 64 + i] * ew[i];
            worst = fmax(worst, fabs(d - logits[r * 300 + v]));
            scale = fmax(scale, fabs(d));
        }
        assert_true(worst <= 1e-5 * scale);
    }
    /* hidden only */
    mope_row next = {0, 13, 3, -1, true};
    assert_int_equal(mope_model_forward_ex(m, kv, &next, 1, NULL, hidden, NULL, &err), 0);
    assert_int_equal(mope_kv_seq_len(kv, 0), 4);
    mope_kv_free(kv);
    mope_model_free(m);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_f32),
        cmocka_unit_test(test_qwen2_f32),
        cmocka_unit_test(test_quantised),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_incremental_equals_recompute),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_hidden_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
