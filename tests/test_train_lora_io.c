/* LoRA adapter files, checkpoints and the inference engine (the training
 * side of LoRA is in test_train_lora.c).
 *
 * 1. The adapter file has exactly llama.cpp's keys, names, shapes and types
 *    (GGUF_FACTS.md §1); loading it back gives identical values and loss;
 *    merging gives W + s B A (double reference) and the same loss; bad
 *    adapter files are refused with clear errors; F16 tensors are read.
 * 2. Checkpoint + resume of a LoRA run with dropout continues bit-identically
 *    (losses, adapter, base), and the checkpoint is still a plain model.
 * 3. The inference engine (mope/lora.h) loads the base and the adapter the
 *    trainer saved and, with the adapter attached to some rows of a batch,
 *    gives the train model's logits (and the base's on the other rows). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "mope/model.h"
#include "mope/train.h"

static char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/lora_test_%d_%s", MOPE_BINARY_DIR, (int)getpid(), name);
    return b;
}

#include "train_lora_fixture.h"

/* ---- training: base untouched, loss falls ---- */


/* ---- adapter files ---- */

static bool key_str_is(const mope_gguf *g, const char *key, const char *want) {
    mope_gguf_str s;
    return mope_gguf_get_str(g, key, &s) == 0 && s.len == strlen(want) && !memcmp(s.ptr, want, s.len);
}

static void test_save_load_merge(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = tiny();
    unsigned targets = MOPE_LORA_Q | MOPE_LORA_K | MOPE_LORA_V | MOPE_LORA_O | MOPE_LORA_GATE | MOPE_LORA_UP |
                       MOPE_LORA_DOWN | MOPE_LORA_OUTPUT;
    mope_train_model *m = lora_model(&c, 2, 5.0f, targets, 0.0f, 1);
    const char *path = tmp_path("adapter.gguf");
    assert_int_equal(mope_train_model_lora_save(m, path, NULL, &err), 0);

    /* exactly the convention: 4 keys, 2 tensors per adapted linear */
    mope_gguf *g = mope_gguf_open(path, &err);
    assert_non_null(g);
    assert_int_equal(mope_gguf_n_kv(g), 4);
    assert_true(key_str_is(g, "general.architecture", "llama"));
    assert_true(key_str_is(g, "general.type", "adapter"));
    assert_true(key_str_is(g, "adapter.type", "lora"));
    int64_t ki = mope_gguf_find_key(g, "adapter.lora.alpha");
    assert_true(ki >= 0);
    assert_int_equal(mope_gguf_kv_type(g, ki), MOPE_GGUF_F32);
    assert_true(mope_gguf_kv_f64(g, ki) == 5.0);
    int C = c.n_embd, hd = C / c.n_head, QD = hd * c.n_head, KD = hd * c.n_head_kv, F = c.n_ff, V = c.n_vocab, r = 2;
    struct {
        const char *base;
        int n_in, n_out;
    } lins[] = {{"attn_q", C, QD},   {"attn_k", C, KD}, {"attn_v", C, KD},   {"attn_output", QD, C},
                {"ffn_gate", C, F}, {"ffn_up", C, F},  {"ffn_down", F, C}};
    assert_int_equal(mope_gguf_n_tensors(g), 2 * (7 * c.n_layer + 1));
    char name[80];
    const float *ap = mope_train_model_lora_params(m);
    for (int l = 0; l <= c.n_layer; l++)
        for (int i = 0; i < (l < c.n_layer ? 7 : 1); i++) {
            int n_in = l < c.n_layer ? lins[i].n_in : C, n_out = l < c.n_layer ? lins[i].n_out : V;
            for (int ab = 0; ab < 2; ab++) {
                if (l < c.n_layer) snprintf(name, sizeof name, "blk.%d.%s.weight.lora_%c", l, lins[i].base, "ab"[ab]);
                else snprintf(name, sizeof name, "output.weight.lora_%c", "ab"[ab]);
                const mope_gguf_tensor *t = mope_gguf_find_tensor(g, name);
                if (!t) fail_msg("adapter file lacks %s", name);
                assert_int_equal(t->type, MOPE_TYPE_F32);
                assert_int_equal(t->n_dims, 2);
                assert_int_equal(t->ne[0], ab ? r : n_in);
                assert_int_equal(t->ne[1], ab ? n_out : r);
                /* the values are the model's */
                bool found = false;
                for (int k = 0; k < mope_train_model_lora_n_tensors(m); k++) {
                    const mope_train_tensor *mt = mope_train_model_lora_tensor(m, k);
                    if (strcmp(mt->name, name)) continue;
                    assert_memory_equal(t->data, ap + mt->offset, mt->n * sizeof(float));
                    found = true;
                }
                assert_true(found);
            }
        }
    mope_gguf_close(g);

    /* load back onto a copy of the base: identical values and loss */
    mope_train_model *m2 = mope_train_model_new(&c, 1, &err);
    assert_non_null(m2);
    memcpy(mope_train_model_params(m2), mope_train_model_params(m), mope_train_model_n_params(m) * sizeof(float));
    assert_int_equal(mope_train_model_lora_load(m2, path, &err), 0);
    mope_train_lora_info i1, i2;
    assert_int_equal(mope_train_model_lora_info(m, &i1, &err), 0);
    assert_int_equal(mope_train_model_lora_info(m2, &i2, &err), 0);
    assert_int_equal(i2.rank, 2);
    assert_true(i2.alpha == 5.0f && i2.scale == 2.5f && i2.dropout == 0.0f);
    assert_int_equal(i2.targets, targets);
    assert_int_equal(i2.n_params, i1.n_params);
    assert_int_equal(mope_train_model_lora_n_tensors(m2), i1.n_tensors);
    for (int k = 0; k < i1.n_tensors; k++) {
        const mope_train_tensor *t1 = mope_train_model_lora_tensor(m, k), *t2 = mope_train_model_lora_tensor(m2, k);
        assert_string_equal(t1->name, t2->name);
        assert_memory_equal(mope_train_model_lora_params(m2) + t2->offset, ap + t1->offset, t1->n * sizeof(float));
    }
    float l1, l2, l3;
    assert_int_equal(mope_train_model_forward(m, TOK, TGT, NULL, NB, NT, &l1, &err), 0);
    assert_int_equal(mope_train_model_forward(m2, TOK, TGT, NULL, NB, NT, &l2, &err), 0);
    assert_true(l1 == l2);
    /* a second adapter is refused */
    assert_int_equal(mope_train_model_lora_load(m2, path, &err), MOPE_ESTATE);

    /* merge: W + s B A (double reference), the adapter gone, same loss */
    const mope_train_tensor *wq = mope_train_model_find(m2, "blk.1.attn_q.weight");
    float *w0 = malloc(wq->n * sizeof(float));
    memcpy(w0, mope_train_model_params(m2) + wq->offset, wq->n * sizeof(float));
    const float *A = NULL, *Bm = NULL;
    for (int k = 0; k < mope_train_model_lora_n_tensors(m2); k++) {
        const mope_train_tensor *t = mope_train_model_lora_tensor(m2, k);
        if (!strcmp(t->name, "blk.1.attn_q.weight.lora_a")) A = mope_train_model_lora_params(m2) + t->offset;
        if (!strcmp(t->name, "blk.1.attn_q.weight.lora_b")) Bm = mope_train_model_lora_params(m2) + t->offset;
    }
    assert_non_null(A);
    assert_non_null(Bm);
    double *want = malloc(wq->n * sizeof(double));
    for (int o = 0; o < QD; o++)
        for (int i = 0; i < C; i++) {
            double s = 0;
            for (int k = 0; k < r; k++) s += (double)Bm[o * r + k] * A[k * C + i];
            want[o * C + i] = w0[o * C + i] + 2.5 * s;
        }
    assert_int_equal(mope_train_model_lora_merge(m2, &err), 0);
    assert_false(mope_train_model_has_lora(m2));
    assert_int_equal(mope_train_model_n_trainable(m2), mope_train_model_n_params(m2));
    const float *wm = mope_train_model_params(m2) + wq->offset;
    for (size_t k = 0; k < wq->n; k++) assert_true(fabs(wm[k] - want[k]) <= 1e-6 * (1 + fabs(want[k])));
    assert_int_equal(mope_train_model_forward(m2, TOK, TGT, NULL, NB, NT, &l3, &err), 0);
    print_message("loss with adapter %.7f, loaded %.7f, merged %.7f\n", (double)l1, (double)l2, (double)l3);
    assert_true(fabs(l3 - l1) <= 1e-5 * fabs(l1));
    free(w0);
    free(want);
    mope_train_model_free(m2);
    mope_train_model_free(m);
    unlink(path);
}

/* A GGUF in memory from a writer, opened. */
static mope_gguf *mem_gguf(mope_gguf_writer *w, void **buf) {
    size_t size;
    mope_error err = {0};
    assert_int_equal(mope_gguf_writer_to_memory(w, buf, &size, &err), 0);
    mope_gguf_writer_free(w);
    mope_gguf *g = mope_gguf_open_memory(*buf, size, &err);
    assert_non_null(g);
    return g;
}

/* Writer with the adapter of m, then one change. */
typedef enum { BAD_TYPE, BAD_ARCH, NO_B, SHAPE, RANK, EMBD, ONE_LAYER, NORM, OK_F16 } bad_kind;

static mope_gguf_writer *bad_adapter(mope_train_model *m, bad_kind kind) {
    mope_error err = {0};
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_set_str(w, "general.architecture", kind == BAD_ARCH ? "qwen2" : "llama"), 0);
    assert_int_equal(mope_gguf_set_str(w, "general.type", kind == BAD_TYPE ? "model" : "adapter"), 0);
    assert_int_equal(mope_gguf_set_str(w, "adapter.type", "lora"), 0);
    assert_int_equal(mope_gguf_set_f32(w, "adapter.lora.alpha", 4.0f), 0);
    static float zeros[4096];
    static uint16_t halves[4096];
    for (int i = 0; i < 4096; i++) halves[i] = mope_f32_to_f16(0.001f * (float)(i % 97));
    for (int i = 0; i < mope_train_model_lora_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_lora_tensor(m, i);
        int64_t ne[2] = {t->ne[0], t->ne[1]};
        if (kind == NO_B && i == 3) continue;
        if (kind == SHAPE && i == 2) ne[0]++;
        if (kind == RANK && i == 4) ne[1]++;
        if (kind == RANK && i == 5) ne[0]++;
        if (kind == ONE_LAYER && i >= mope_train_model_lora_n_tensors(m) / 2) break;
        assert_int_equal(mope_gguf_add_tensor(w, t->name, kind == OK_F16 ? MOPE_TYPE_F16 : MOPE_TYPE_F32, 2, ne,
                                              kind == OK_F16 ? (const void *)halves : zeros, &err),
                         0);
    }
    int64_t ne[2] = {16, 2};
    if (kind == EMBD) assert_int_equal(mope_gguf_add_tensor(w, "token_embd.weight.lora_a", MOPE_TYPE_F32, 2, ne, zeros, &err), 0);
    if (kind == NORM) assert_int_equal(mope_gguf_add_tensor(w, "blk.0.attn_norm.weight", MOPE_TYPE_F32, 1, ne, zeros, &err), 0);
    return w;
}

static void test_bad_adapters(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = tiny();
    mope_train_model *src = lora_model(&c, 2, 4.0f, MOPE_LORA_Q | MOPE_LORA_DOWN, 0.0f, 1);
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    struct {
        bad_kind kind;
        int code;
        const char *msg;
    } cases[] = {
        {BAD_TYPE, MOPE_EFORMAT, "general.type"},     {BAD_ARCH, MOPE_EUNSUPPORTED, "architecture"},
        {NO_B, MOPE_EFORMAT, "no lora_b"},            {SHAPE, MOPE_EFORMAT, "shape"},
        {RANK, MOPE_EUNSUPPORTED, "rank"},            {EMBD, MOPE_EUNSUPPORTED, "token_embd.weight"},
        {ONE_LAYER, MOPE_EUNSUPPORTED, "of 2 layers"}, {NORM, MOPE_EFORMAT, "attn_norm"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *buf;
        mope_gguf *g = mem_gguf(bad_adapter(src, cases[i].kind), &buf);
        err = (mope_error){0};
        int rc = mope_train_model_lora_from_gguf(m, g, &err);
        print_message("case %zu: %s\n", i, err.msg);
        assert_int_equal(rc, cases[i].code);
        assert_non_null(strstr(err.msg, cases[i].msg));
        assert_false(mope_train_model_has_lora(m));
        mope_gguf_close(g);
        free(buf);
    }
    /* F16 tensors are read, alpha 4 with rank 2 gives scale 2 */
    void *buf;
    mope_gguf *g = mem_gguf(bad_adapter(src, OK_F16), &buf);
    assert_int_equal(mope_train_model_lora_from_gguf(m, g, &err), 0);
    mope_train_lora_info info;
    assert_int_equal(mope_train_model_lora_info(m, &info, &err), 0);
    assert_true(info.scale == 2.0f && info.targets == (MOPE_LORA_Q | MOPE_LORA_DOWN));
    assert_true(mope_train_model_lora_params(m)[1] == mope_f16_to_f32(mope_f32_to_f16(0.001f)));
    mope_gguf_close(g);
    free(buf);
    mope_train_model_free(m);
    mope_train_model_free(src);
}

/* add_lora's argument checks */
/* ---- checkpoint and resume ---- */

static mope_trainer *ft_trainer(void) {
    mope_error err = {0};
    mope_train_config c = ft_config();
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, 11);
    assert_int_equal(mope_train_model_add_lora(m, 4, 8.0f, MOPE_LORA_ATTN | MOPE_LORA_OUTPUT, 0.2f, 9, &err), 0);
    mope_adamw_config ac;
    mope_adamw_config_init(&ac);
    ac.lr = 1e-2f;
    ac.total_steps = 12;
    mope_trainer *tr = mope_train_trainer_new(m, &ac, 3, &err);
    assert_non_null(tr);
    return tr;
}

static void run_steps(mope_trainer *tr, int n, float *losses) {
    mope_error err = {0};
    int32_t tok[FB * FT], tgt[FB * FT];
    ft_batch(tok, tgt);
    mope_train_batch b = {tok, tgt, NULL, FB, FT};
    mope_train_stats st;
    for (int s = 0; s < n; s++) {
        if (mope_train_step(tr, &b, 1, &st, &err)) fail_msg("step: %s", err.msg);
        losses[s] = st.loss;
    }
}

static void test_checkpoint_resume(void **state) {
    (void)state;
    mope_error err = {0};
    const char *path = tmp_path("ckpt.gguf");
    mope_trainer *a = ft_trainer();
    float la[8], lb[4];
    run_steps(a, 4, la);
    assert_int_equal(mope_train_checkpoint_save(a, path, NULL, &err), 0);
    run_steps(a, 4, la + 4);

    mope_trainer *b = mope_train_checkpoint_load(path, 1, NULL, &err);
    if (!b) fail_msg("checkpoint_load: %s", err.msg);
    mope_train_model *ma = mope_train_trainer_model(a), *mb = mope_train_trainer_model(b);
    assert_true(mope_train_model_has_lora(mb));
    mope_train_lora_info ia, ib;
    assert_int_equal(mope_train_model_lora_info(ma, &ia, &err), 0);
    assert_int_equal(mope_train_model_lora_info(mb, &ib, &err), 0);
    assert_true(ia.rank == ib.rank && ia.alpha == ib.alpha && ia.scale == ib.scale && ia.dropout == ib.dropout &&
                ia.targets == ib.targets && ia.n_params == ib.n_params && ia.n_tensors == ib.n_tensors);
    assert_int_equal(mope_train_trainer_step_count(b), 4);
    run_steps(b, 4, lb);
    /* same losses (dropout masks included), same adapter, same base */
    for (int s = 0; s < 4; s++) {
        print_message("step %d: loss %.7f, resumed %.7f\n", 5 + s, (double)la[4 + s], (double)lb[s]);
        assert_true(la[4 + s] == lb[s]);
    }
    assert_true(la[7] < la[0]);
    assert_memory_equal(mope_train_model_lora_params(ma), mope_train_model_lora_params(mb),
                        ia.n_params * sizeof(float));
    assert_memory_equal(mope_train_model_params(ma), mope_train_model_params(mb),
                        mope_train_model_n_params(ma) * sizeof(float));
    mope_train_trainer_free(a);
    mope_train_trainer_free(b);

    /* still loadable as a plain model (the base) */
    mope_train_model *plain = mope_train_model_load(path, 1, &err);
    assert_non_null(plain);
    assert_false(mope_train_model_has_lora(plain));
    mope_train_model_free(plain);
    unlink(path);
}

/* ---- the inference engine runs what the trainer saved ----
 * Base (mope_train_model_save) + adapter (mope_train_model_lora_save)
 * loaded by the engine with the adapter attached give the train model's
 * logits; rows without the adapter give the base's. */
static void test_engine_agrees(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_config c = ft_config();
    mope_train_model *m = mope_train_model_new(&c, 2, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, 21);
    enum { T = 12 };
    int32_t tok[T] = {5, 17, 3, 30, 0, 22, 22, 8, 1, 9, 31, 4}, tgt[T];
    for (int t = 0; t < T; t++) tgt[t] = tok[(t + 1) % T];
    float loss;
    float *base_lg = malloc(sizeof(float) * T * FV), *lora_lg = malloc(sizeof(float) * T * FV);
    assert_int_equal(mope_train_model_forward(m, tok, tgt, NULL, 1, T, &loss, &err), 0);
    memcpy(base_lg, mope_train_model_logits(m), sizeof(float) * T * FV);
    assert_int_equal(mope_train_model_add_lora(m, 4, 8.0f, MOPE_LORA_ALL_LINEAR | MOPE_LORA_OUTPUT, 0.0f, 4, &err), 0);
    mope_rng rng;
    mope_rng_seed(&rng, 8);
    for (int i = 0; i < mope_train_model_lora_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_lora_tensor(m, i);
        fill_normal(mope_train_model_lora_params(m) + t->offset, t->n, 0.3f, 0.0f, &rng);
    }
    assert_int_equal(mope_train_model_forward(m, tok, tgt, NULL, 1, T, &loss, &err), 0);
    memcpy(lora_lg, mope_train_model_logits(m), sizeof(float) * T * FV);
    const char *bpath = tmp_path("engine_base.gguf"), *apath = tmp_path("engine_adapter.gguf");
    assert_int_equal(mope_train_model_save(m, bpath, NULL, &err), 0);
    assert_int_equal(mope_train_model_lora_save(m, apath, NULL, &err), 0);

    mope_model *im = mope_model_load(bpath, &err);
    if (!im) fail_msg("engine cannot load the base: %s", err.msg);
    mope_lora *l = mope_lora_load(apath, im, &err);
    if (!l) fail_msg("engine cannot load the adapter: %s", err.msg);
    int id = mope_model_add_adapter(im, l, 1.0f, &err);
    if (id < 0) fail_msg("add_adapter: %s", err.msg);
    mope_kv *kv = mope_kv_new(im, 2, 16, &err);
    assert_non_null(kv);
    /* sequence 0 with the adapter, sequence 1 without, in one batch */
    mope_row rows[2 * T];
    for (int t = 0; t < T; t++) {
        rows[2 * t] = (mope_row){.seq = 0, .token = tok[t], .pos = t, .adapter = id, .want_logits = true};
        rows[2 * t + 1] = (mope_row){.seq = 1, .token = tok[t], .pos = t, .adapter = -1, .want_logits = true};
    }
    float *lg = malloc(sizeof(float) * 2 * T * FV);
    if (mope_model_forward(im, kv, rows, 2 * T, lg, NULL, &err)) fail_msg("engine forward: %s", err.msg);
    double mx = 0, d_lora = 0, d_base = 0, effect = 0;
    for (int t = 0; t < T; t++)
        for (int v = 0; v < FV; v++) {
            double a = lora_lg[t * FV + v], b = base_lg[t * FV + v];
            mx = fmax(mx, fabs(a));
            d_lora = fmax(d_lora, fabs(lg[(2 * t) * FV + v] - a));
            d_base = fmax(d_base, fabs(lg[(2 * t + 1) * FV + v] - b));
            effect = fmax(effect, fabs(a - b));
        }
    print_message("max |logit| %.3f, adapter effect %.3f, engine - trainer: adapted %.2e, base %.2e\n", mx, effect,
                  d_lora, d_base);
    assert_true(effect > 0.1); /* the adapter matters */
    assert_true(d_lora <= 1e-4);
    assert_true(d_base <= 1e-4);
    free(lg);
    free(base_lg);
    free(lora_lg);
    mope_kv_free(kv);
    mope_model_free(im);
    mope_lora_free(l);
    mope_train_model_free(m);
    unlink(bpath);
    unlink(apath);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load_merge),   cmocka_unit_test(test_bad_adapters),
        cmocka_unit_test(test_checkpoint_resume), cmocka_unit_test(test_engine_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
