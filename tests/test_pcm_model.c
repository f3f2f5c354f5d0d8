/* The PCM: input format, zero-head init = uniform weights, file round trip,
 * and the engine's incremental (KV cache) weights against the trainable
 * model's full-sequence forward on the same file.
 *
 * Engine vs trainer tolerance: both compute the same f32 trunk with
 * different kernels and summation orders, so hidden states differ by f32
 * rounding; measured weight differences are ~2e-7, asserted < 1e-4.  A
 * wrong position (off by one) or head row moves weights by ~1e-1 with the
 * head scaled as here (the test also checks the weights are far from
 * uniform, so the comparison is not vacuous). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mope/pcm.h"

static const char *EXP3[] = {"elementary", "concise", "friendly"};

static void tiny_cfg(mope_train_config *c, int n_vocab) {
    mope_train_config_init(c);
    c->n_vocab = n_vocab;
    c->n_embd = 32;
    c->n_layer = 2;
    c->n_head = 4;
    c->n_head_kv = 2;
    c->n_ff = 64;
    c->n_ctx = 32;
}

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "%s/test_pcm_%s_%d.gguf", MOPE_BINARY_DIR, tag, (int)getpid());
}

/* A head big enough that weights are far from uniform, so position or row
 * mistakes show. */
static void random_head(mope_pcm *p, int C, int K, uint64_t seed) {
    mope_rng r;
    mope_rng_seed(&r, seed);
    float *h = mope_pcm_head_params(p);
    for (int i = 0; i < K * C + K; i++) h[i] = 2.0f * mope_rng_normal(&r);
}

static void test_format(void **state) {
    (void)state;
    mope_error err = {0};
    char *s = mope_pcm_format_input("What is a glacier?", "Be concise; a pirate would like it.", &err);
    assert_non_null(s);
    assert_string_equal(s, "<|user|>\nWhat is a glacier?\n<|preference|>\nBe concise; a pirate would like it.\n"
                           "<|assistant|>\n");
    free(s);
    assert_null(mope_pcm_format_input(NULL, "x", &err));
    assert_int_equal(err.code, MOPE_EINVAL);
}

static void test_zero_head_uniform(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c;
    tiny_cfg(&c, 64);
    mope_pcm *p = mope_pcm_new(&c, 3, EXP3, MOPE_MIX_LINEAR, 1, 7, &err);
    assert_non_null(p);
    int32_t tok[2 * 5] = {1, 5, 9, 13, 2, 3, 60, 4, 4, 4};
    float w[2 * 5 * 3];
    assert_int_equal(mope_pcm_forward(p, tok, 2, 5, w, &err), 0);
    for (int i = 0; i < 30; i++) assert_true(w[i] == 1.0f / 3.0f);
    assert_string_equal(mope_pcm_expert(p, 2), "friendly");
    assert_null(mope_pcm_expert(p, 3));
    mope_pcm_free(p);

    /* bad construction */
    assert_null(mope_pcm_new(&c, 0, EXP3, MOPE_MIX_LINEAR, 1, 7, &err));
    const char *bad[] = {"a", ""};
    assert_null(mope_pcm_new(&c, 2, bad, MOPE_MIX_LINEAR, 1, 7, &err));
    assert_int_equal(err.code, MOPE_EINVAL);
}

/* Save, reload both ways, and compare weights position by position. */
static void test_engine_matches_trainer(void **state) {
    (void)state;
    mope_error err = {0};
    char path[512];
    tmp_path(path, sizeof path, "rt");
    mope_train_config c;
    tiny_cfg(&c, 64);
    const int K = 3, C = c.n_embd;
    mope_pcm *p = mope_pcm_new(&c, K, EXP3, MOPE_MIX_LINEAR, 1, 11, &err);
    assert_non_null(p);
    random_head(p, C, K, 5);
    assert_int_equal(mope_pcm_save(p, path, NULL, &err), 0);

    /* the trainable view reloads every number */
    mope_pcm *q = mope_pcm_load(path, 1, &err);
    assert_non_null(q);
    assert_int_equal(mope_pcm_n_experts(q), K);
    assert_string_equal(mope_pcm_expert(q, 1), "concise");
    assert_int_equal(mope_pcm_rule(q), MOPE_MIX_LINEAR);
    assert_memory_equal(mope_pcm_head_params(q), mope_pcm_head_params(p), sizeof(float) * (size_t)(K * C + K));
    assert_memory_equal(mope_train_model_params(mope_pcm_trunk(q)), mope_train_model_params(mope_pcm_trunk(p)),
                        sizeof(float) * mope_train_model_n_params(mope_pcm_trunk(p)));
    mope_pcm_free(q);

    /* two sequences: prompt then response tokens one by one, interleaved */
    enum { P = 6, L = 5, T = P + L };
    int32_t seqs[2][T] = {{1, 7, 8, 9, 10, 2, 20, 21, 22, 23, 24}, {1, 30, 31, 2, 3, 4, 40, 41, 42, 43, 44}};
    float wt[2 * T * 3];
    int32_t flat[2 * T];
    memcpy(flat, seqs[0], sizeof seqs[0]);
    memcpy(flat + T, seqs[1], sizeof seqs[1]);
    assert_int_equal(mope_pcm_forward(p, flat, 2, T, wt, &err), 0);

    mope_pcm_infer *pi = mope_pcm_infer_load(path, 2, 0, NULL, &err);
    assert_non_null(pi);
    assert_int_equal(mope_pcm_infer_meta(pi)->K, K);
    assert_string_equal(mope_pcm_infer_meta(pi)->input_format, MOPE_PCM_INPUT_FORMAT);
    assert_null(mope_pcm_infer_tokenizer(pi));
    for (int s = 0; s < 2; s++) assert_int_equal(mope_pcm_infer_start(pi, s, seqs[s], P, &err), 0);
    double worst = 0, spread = 0;
    for (int t = P - 1; t < T; t++) {
        for (int s = 0; s < 2; s++) {
            float w[3];
            assert_int_equal(mope_pcm_infer_weights(pi, s, w, &err), 0);
            double sum = 0;
            for (int k = 0; k < K; k++) {
                double d = fabs(w[k] - wt[((size_t)s * T + t) * K + k]);
                if (d > worst) worst = d;
                sum += w[k];
                spread = fmax(spread, fabs(w[k] - 1.0 / 3));
            }
            assert_true(fabs(sum - 1.0) < 1e-5);
            if (t + 1 < T) assert_int_equal(mope_pcm_infer_feed(pi, s, &seqs[s][t + 1], 1, &err), 0);
        }
    }
    printf("engine vs trainer: worst weight difference %.3g (weights move up to %.3f from uniform)\n", worst, spread);
    assert_true(worst < 1e-4);
    assert_true(spread > 0.05); /* the comparison means something */

    /* misuse */
    float w[3];
    assert_int_equal(mope_pcm_infer_weights(pi, 2, w, &err), MOPE_EINVAL);
    int32_t bad = 64;
    assert_int_equal(mope_pcm_infer_feed(pi, 0, &bad, 1, &err), MOPE_EINVAL);
    assert_int_equal(mope_pcm_infer_start_text(pi, 0, "q", "p", &err), MOPE_EINVAL); /* no tokenizer */
    mope_pcm_infer_free(pi);
    pi = mope_pcm_infer_load(path, 1, 8, NULL, &err);
    assert_non_null(pi);
    assert_int_equal(mope_pcm_infer_weights(pi, 0, w, &err), MOPE_ESTATE); /* never started */
    assert_int_equal(mope_pcm_infer_start(pi, 0, seqs[0], 9, &err), MOPE_ERANGE); /* context 8 */
    mope_pcm_infer_free(pi);
    mope_pcm_free(p);
    unlink(path);
}

/* A file without the PCM parts, or with inconsistent ones, is refused with a
 * message naming the problem. */
static void test_bad_files(void **state) {
    (void)state;
    mope_error err = {0};
    char path[512];
    tmp_path(path, sizeof path, "bad");
    mope_train_config c;
    tiny_cfg(&c, 64);
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, 3);
    assert_int_equal(mope_train_model_save(m, path, NULL, &err), 0);
    assert_null(mope_pcm_load(path, 1, &err));
    assert_non_null(strstr(err.msg, "not a PCM"));
    assert_null(mope_pcm_infer_load(path, 1, 0, NULL, &err));
    assert_non_null(strstr(err.msg, "not a PCM"));

    /* K expert ids but a head of another width */
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_train_model_to_gguf(m, w, &err), 0);
    const char *ids[] = {"a", "b"};
    assert_int_equal(mope_gguf_set_arr_str(w, "mope.pcm.experts", ids, NULL, 2), 0);
    float head[3 * 32 + 3] = {0};
    int64_t ne_w[2] = {32, 3}, ne_b[1] = {3};
    assert_int_equal(mope_gguf_add_tensor(w, "mope.pcm.head.weight", MOPE_TYPE_F32, 2, ne_w, head, &err), 0);
    assert_int_equal(mope_gguf_add_tensor(w, "mope.pcm.head.bias", MOPE_TYPE_F32, 1, ne_b, head + 96, &err), 0);
    assert_int_equal(mope_gguf_writer_write(w, path, &err), 0);
    mope_gguf_writer_free(w);
    assert_null(mope_pcm_load(path, 1, &err));
    assert_non_null(strstr(err.msg, "mope.pcm.head.weight has shape"));

    /* unknown rule */
    w = mope_gguf_writer_new();
    assert_int_equal(mope_train_model_to_gguf(m, w, &err), 0);
    assert_int_equal(mope_gguf_set_arr_str(w, "mope.pcm.experts", ids, NULL, 2), 0);
    assert_int_equal(mope_gguf_set_str(w, "mope.pcm.rule", "harmonic"), 0);
    ne_w[1] = 2;
    ne_b[0] = 2;
    assert_int_equal(mope_gguf_add_tensor(w, "mope.pcm.head.weight", MOPE_TYPE_F32, 2, ne_w, head, &err), 0);
    assert_int_equal(mope_gguf_add_tensor(w, "mope.pcm.head.bias", MOPE_TYPE_F32, 1, ne_b, head + 64, &err), 0);
    assert_int_equal(mope_gguf_writer_write(w, path, &err), 0);
    mope_gguf_writer_free(w);
    assert_null(mope_pcm_infer_load(path, 1, 0, NULL, &err));
    assert_non_null(strstr(err.msg, "mope.pcm.rule"));
    mope_train_model_free(m);
    unlink(path);
}

/* With a tokenizer in the file: any preference text is accepted, and two
 * different preferences give different weights for the same prompt. */
static void test_text_input(void **state) {
    (void)state;
    mope_error err = {0};
    char tpath[512], path[512];
    tmp_path(tpath, sizeof tpath, "tok");
    tmp_path(path, sizeof path, "txt");
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.n_vocab = 600;
    assert_int_equal(mope_model_write_random(tpath, &hp, MOPE_TYPE_F32, 1, NULL, &err), 0);
    mope_tokenizer *tok = mope_tokenizer_load(tpath, &err);
    assert_non_null(tok);
    mope_train_config c;
    tiny_cfg(&c, mope_tokenizer_n_vocab(tok));
    c.n_ctx = 128;
    mope_pcm *p = mope_pcm_new(&c, 2, EXP3, MOPE_MIX_GEOMETRIC, 1, 4, &err);
    assert_non_null(p);
    random_head(p, c.n_embd, 2, 9);
    assert_int_equal(mope_pcm_save(p, path, tok, &err), 0);

    int32_t *t = NULL;
    int n = mope_pcm_prompt_tokens(tok, "What is a river?", "the way a sea captain talks, in 3 words", &t, &err);
    assert_true(n > 5);
    mope_pcm_infer *pi = mope_pcm_infer_load(path, 2, 0, NULL, &err);
    assert_non_null(pi);
    assert_non_null(mope_pcm_infer_tokenizer(pi));
    assert_int_equal(mope_pcm_infer_meta(pi)->rule, MOPE_MIX_GEOMETRIC);
    assert_int_equal(mope_pcm_infer_start_text(pi, 0, "What is a river?", "the way a sea captain talks, in 3 words",
                                               &err), 0);
    assert_int_equal(mope_pcm_infer_start_text(pi, 1, "What is a river?", "only a PhD student understands", &err), 0);
    float w0[2], w1[2], wt[2 * 128];
    assert_int_equal(mope_pcm_infer_weights(pi, 0, w0, &err), 0);
    assert_int_equal(mope_pcm_infer_weights(pi, 1, w1, &err), 0);
    /* a random trunk barely propagates earlier tokens into the last
     * position, so only "differ at all" is asserted here */
    assert_true(w0[0] != w1[0]);
    /* the text path tokenises exactly as mope_pcm_prompt_tokens */
    assert_int_equal(mope_pcm_forward(p, t, 1, n, wt, &err), 0);
    assert_true(fabs(wt[(n - 1) * 2] - w0[0]) < 1e-4);
    free(t);
    mope_pcm_infer_free(pi);
    mope_pcm_free(p);
    mope_tokenizer_free(tok);
    unlink(path);
    unlink(tpath);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_zero_head_uniform),
        cmocka_unit_test(test_engine_matches_trainer),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_text_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
