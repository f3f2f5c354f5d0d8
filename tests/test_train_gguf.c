/* GGUF save / load of the trainable model and checkpoints: llama.cpp's
 * names, shapes and keys (GGUF_FACTS.md §1), exact round trips, resume
 * giving the same losses as an uninterrupted run, the inference engine
 * computing the same logits from the saved file, and clear errors for files
 * the trainer cannot take. */
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
#include "train/train_internal.h" /* to corrupt optimizer state */

static mope_train_config small(bool tied, bool value) {
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 40;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 48;
    c.n_ctx = 16;
    c.rope_freq_base = 500.0f;
    c.rms_eps = 1e-6f;
    c.tied_output = tied;
    c.value_head = value;
    return c;
}

/* Random parameters large enough that logits differ visibly. */
static mope_train_model *make_model(bool tied, bool value, uint64_t seed) {
    mope_error err = {0};
    mope_train_config c = small(tied, value);
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    mope_rng r;
    mope_rng_seed(&r, seed);
    float *p = mope_train_model_params(m);
    for (int i = 0; i < mope_train_model_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_tensor(m, i);
        bool norm = strstr(t->name, "_norm.weight") != NULL;
        for (size_t k = 0; k < t->n; k++)
            p[t->offset + k] = norm ? 1.0f + 0.1f * mope_rng_normal(&r) : 0.2f * mope_rng_normal(&r);
    }
    return m;
}

static char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/train_test_%d_%s", MOPE_BINARY_DIR, (int)getpid(), name);
    return b;
}

static int64_t key_int(const mope_gguf *g, const char *key) {
    int64_t v = -1;
    assert_int_equal(mope_gguf_get_i64(g, key, &v), 0);
    return v;
}

static void expect_shape(const mope_gguf *g, const char *name, int64_t ne0, int64_t ne1) {
    const mope_gguf_tensor *t = mope_gguf_find_tensor(g, name);
    if (!t) fail_msg("missing tensor %s", name);
    assert_int_equal(t->type, MOPE_TYPE_F32);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
}

/* The file has llama.cpp's keys and shapes, carries the caller's tokenizer
 * keys, and loads back bit-identically. */
static void test_layout_roundtrip(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_model *m = make_model(false, true, 1);
    const char *path = tmp_path("model.gguf");
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_set_str(w, "tokenizer.ggml.model", "llama"), 0);
    assert_int_equal(mope_train_model_save(m, path, w, &err), 0);
    mope_gguf_writer_free(w);

    mope_gguf *g = mope_gguf_open(path, &err);
    assert_non_null(g);
    mope_gguf_str s;
    assert_int_equal(mope_gguf_get_str(g, "general.architecture", &s), 0);
    assert_true(s.len == 5 && !memcmp(s.ptr, "llama", 5));
    assert_int_equal(mope_gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
    assert_true(s.len == 5 && !memcmp(s.ptr, "llama", 5));
    assert_int_equal(key_int(g, "llama.embedding_length"), 32);
    assert_int_equal(key_int(g, "llama.block_count"), 2);
    assert_int_equal(key_int(g, "llama.feed_forward_length"), 48);
    assert_int_equal(key_int(g, "llama.attention.head_count"), 4);
    assert_int_equal(key_int(g, "llama.attention.head_count_kv"), 2);
    assert_int_equal(key_int(g, "llama.context_length"), 16);
    assert_int_equal(key_int(g, "llama.rope.dimension_count"), 8);
    double f;
    assert_int_equal(mope_gguf_get_f64(g, "llama.rope.freq_base", &f), 0);
    assert_true(f == 500.0);
    assert_int_equal(mope_gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &f), 0);
    assert_true((float)f == 1e-6f);
    /* shapes: ne[0] is the input (contiguous) dimension */
    expect_shape(g, "token_embd.weight", 32, 40);
    expect_shape(g, "output.weight", 32, 40);
    expect_shape(g, "output_norm.weight", 32, 1);
    expect_shape(g, "blk.1.attn_norm.weight", 32, 1);
    expect_shape(g, "blk.1.attn_q.weight", 32, 32);
    expect_shape(g, "blk.1.attn_k.weight", 32, 16); /* 2 KV heads x 8 */
    expect_shape(g, "blk.1.attn_v.weight", 32, 16);
    expect_shape(g, "blk.1.attn_output.weight", 32, 32);
    expect_shape(g, "blk.1.ffn_norm.weight", 32, 1);
    expect_shape(g, "blk.1.ffn_gate.weight", 32, 48);
    expect_shape(g, "blk.1.ffn_up.weight", 32, 48);
    expect_shape(g, "blk.1.ffn_down.weight", 48, 32);
    expect_shape(g, "mope.value_head.weight", 32, 1);
    expect_shape(g, "mope.value_head.bias", 1, 1);
    assert_int_equal(mope_gguf_n_tensors(g), 1 + 2 * 9 + 1 + 1 + 2);
    /* the bytes of a matrix are the (out, in) rows: element [o, i] at o*in + i */
    const mope_train_tensor *tq = mope_train_model_find(m, "blk.0.attn_q.weight");
    assert_memory_equal(mope_gguf_find_tensor(g, "blk.0.attn_q.weight")->data, mope_train_model_params(m) + tq->offset,
                        tq->n * sizeof(float));

    mope_train_model *m2 = mope_train_model_from_gguf(g, 2, &err);
    assert_non_null(m2);
    const mope_train_config *c1 = mope_train_model_config(m), *c2 = mope_train_model_config(m2);
    assert_memory_equal(c1, c2, sizeof *c1);
    assert_int_equal(mope_train_model_n_params(m), mope_train_model_n_params(m2));
    assert_memory_equal(mope_train_model_params(m), mope_train_model_params(m2),
                        mope_train_model_n_params(m) * sizeof(float));
    mope_train_model_free(m2);
    mope_gguf_close(g);
    mope_train_model_free(m);
    unlink(path);
}

/* The inference engine (module model) loads what the trainer saves and
 * computes the same logits. */
static void test_engine_agrees(void **state) {
    (void)state;
    mope_error err = {0};
    for (int tied = 0; tied < 2; tied++) {
        mope_train_model *m = make_model(tied, false, 2 + tied);
        const char *path = tmp_path("engine.gguf");
        assert_int_equal(mope_train_model_save(m, path, NULL, &err), 0);
        enum { T = 9 };
        int32_t tok[T] = {5, 17, 3, 39, 0, 22, 22, 8, 1}, tgt[T];
        for (int t = 0; t < T; t++) tgt[t] = tok[(t + 1) % T];
        float loss;
        assert_int_equal(mope_train_model_forward(m, tok, tgt, NULL, 1, T, &loss, &err), 0);
        const float *ref = mope_train_model_logits(m);

        mope_model *im = mope_model_load(path, &err);
        if (!im) fail_msg("engine cannot load the trained model: %s", err.msg);
        const mope_hparams *hp = mope_model_hparams(im);
        assert_int_equal(hp->rope_mode, MOPE_ROPE_NORMAL);
        assert_int_equal(hp->tied_output, tied);
        mope_kv *kv = mope_kv_new(im, 1, 16, &err);
        assert_non_null(kv);
        mope_row rows[T];
        for (int t = 0; t < T; t++) rows[t] = (mope_row){.seq = 0, .token = tok[t], .pos = t, .adapter = -1,
                                                         .want_logits = true};
        float *logits = malloc(sizeof(float) * T * 40);
        if (mope_model_forward(im, kv, rows, T, logits, NULL, &err)) fail_msg("engine forward: %s", err.msg);
        double mx = 0, diff = 0;
        for (int i = 0; i < T * 40; i++) {
            mx = fmax(mx, fabs(ref[i]));
            diff = fmax(diff, fabs(ref[i] - logits[i]));
        }
        print_message("tied=%d: max |logit| %.3f, max engine - trainer difference %.2e\n", tied, mx, diff);
        assert_true(mx > 1.0);
        assert_true(diff <= 1e-4 * mx);
        free(logits);
        mope_kv_free(kv);
        mope_model_free(im);
        mope_train_model_free(m);
        unlink(path);
    }
}

/* A reward model saved by the trainer: the engine's final hidden state
 * (forward_ex) through mope.value_head gives the trainer's score. */
static void test_engine_value_head(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_model *m = make_model(true, true, 9);
    const char *path = tmp_path("value.gguf");
    assert_int_equal(mope_train_model_save(m, path, NULL, &err), 0);
    enum { T = 7 };
    int32_t tok[2 * T] = {1, 2, 3, 4, 5, 6, 7, 9, 8, 7, 6, 0, 0, 0}, len[2] = {T, 4};
    float score[2];
    assert_int_equal(mope_train_model_forward_value(m, tok, len, 2, T, score, &err), 0);

    mope_model *im = mope_model_load(path, &err);
    if (!im) fail_msg("engine cannot load the reward model: %s", err.msg);
    const mope_gguf *g = mope_model_gguf(im);
    const float *vw = mope_gguf_find_tensor(g, "mope.value_head.weight")->data;
    const float *vb = mope_gguf_find_tensor(g, "mope.value_head.bias")->data;
    mope_kv *kv = mope_kv_new(im, 2, 16, &err);
    assert_non_null(kv);
    mope_row rows[2 * T];
    int nr = 0;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < len[b]; t++)
            rows[nr++] = (mope_row){.seq = b, .token = tok[b * T + t], .pos = t, .adapter = -1,
                                    .want_logits = t == len[b] - 1};
    float hidden[2 * 32];
    if (mope_model_forward_ex(im, kv, rows, nr, NULL, hidden, NULL, &err)) fail_msg("engine forward: %s", err.msg);
    for (int b = 0; b < 2; b++) {
        double s = vb[0];
        for (int i = 0; i < 32; i++) s += (double)vw[i] * hidden[b * 32 + i];
        print_message("score %d: trainer %.6f engine %.6f\n", b, (double)score[b], s);
        assert_true(fabs(s - score[b]) <= 1e-4 * (1 + fabs(s)));
    }
    assert_true(fabs(score[0] - score[1]) > 1e-3); /* different sequences, different scores */
    mope_kv_free(kv);
    mope_model_free(im);
    mope_train_model_free(m);
    unlink(path);
}

enum { NS = 4, TT = 10 };

static void data(int32_t *tok, int32_t *tgt) {
    mope_rng r;
    mope_rng_seed(&r, 3);
    for (int n = 0; n < NS * TT; n++) tok[n] = (int32_t)mope_rng_below(&r, 40);
    for (int n = 0; n < NS * TT; n++) tgt[n] = n % TT == TT - 1 ? -1 : tok[n + 1];
}

static mope_trainer *fresh_trainer(void) {
    mope_error err = {0};
    mope_train_config c = small(true, false);
    mope_train_model *m = mope_train_model_new(&c, 2, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, 11);
    mope_adamw_config a;
    mope_adamw_config_init(&a);
    a.lr = 3e-3f;
    a.warmup_steps = 2;
    a.total_steps = 8;
    mope_trainer *tr = mope_train_trainer_new(m, &a, 77, &err);
    assert_non_null(tr);
    return tr;
}

/* 6 steps straight vs 3 steps, checkpoint, load, 3 steps: identical. */
static void test_checkpoint_resume(void **state) {
    (void)state;
    mope_error err = {0};
    int32_t tok[NS * TT], tgt[NS * TT];
    data(tok, tgt);
    mope_train_batch b = {tok, tgt, NULL, NS, TT};
    mope_train_stats st;
    float straight[6], resumed[6];
    mope_trainer *a = fresh_trainer();
    for (int s = 0; s < 6; s++) {
        assert_int_equal(mope_train_step(a, &b, 1, &st, &err), 0);
        straight[s] = st.loss;
    }

    mope_trainer *r = fresh_trainer();
    for (int s = 0; s < 3; s++) {
        assert_int_equal(mope_train_step(r, &b, 1, &st, &err), 0);
        resumed[s] = st.loss;
    }
    mope_rng_u64(mope_train_trainer_rng(r)); /* the rng state must travel too */
    mope_rng saved_rng = *mope_train_trainer_rng(r);
    const char *path = tmp_path("ckpt.gguf");
    assert_int_equal(mope_train_checkpoint_save(r, path, NULL, &err), 0);
    mope_train_trainer_free(r);

    r = mope_train_checkpoint_load(path, 2, NULL, &err);
    if (!r) fail_msg("%s", err.msg);
    assert_int_equal(mope_train_trainer_step_count(r), 3);
    assert_memory_equal(mope_train_trainer_rng(r), &saved_rng, sizeof saved_rng);
    const mope_adamw_config *ac = mope_train_trainer_config(r);
    assert_true(ac->lr == 3e-3f && ac->warmup_steps == 2 && ac->total_steps == 8);
    for (int s = 3; s < 6; s++) {
        assert_int_equal(mope_train_step(r, &b, 1, &st, &err), 0);
        resumed[s] = st.loss;
    }
    assert_memory_equal(straight, resumed, sizeof straight);
    mope_train_model *ma = mope_train_trainer_model(a), *mr = mope_train_trainer_model(r);
    assert_memory_equal(mope_train_model_params(ma), mope_train_model_params(mr),
                        mope_train_model_n_params(ma) * sizeof(float));

    /* a checkpoint is also a plain model file */
    mope_train_model *plain = mope_train_model_load(path, 1, &err);
    assert_non_null(plain);
    mope_train_model_free(plain);
    mope_train_trainer_free(a);
    mope_train_trainer_free(r);
    unlink(path);
}

/* A model serialised to memory, as a reader (for building bad files). */
static mope_gguf *model_mem(mope_train_model *m, void **buf, const char *key, const char *sval, int64_t ival) {
    mope_error err = {0};
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_train_model_to_gguf(m, w, &err), 0);
    if (key && sval) assert_int_equal(mope_gguf_set_str(w, key, sval), 0);
    if (key && !sval) assert_int_equal(mope_gguf_set_u32(w, key, (uint32_t)ival), 0);
    size_t size;
    assert_int_equal(mope_gguf_writer_to_memory(w, buf, &size, &err), 0);
    mope_gguf_writer_free(w);
    mope_gguf *g = mope_gguf_open_memory(*buf, size, &err);
    assert_non_null(g);
    return g;
}

/* All tensors re-added by hand, one of them stored as `type`. */
static mope_gguf *model_mem_typed(mope_train_model *m, void **buf, const char *which, mope_type type, void *bytes) {
    mope_error err = {0};
    void *b0;
    mope_gguf *g0 = model_mem(m, &b0, NULL, NULL, 0);
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_copy_kv(w, g0, NULL), 0);
    for (int i = 0; i < mope_train_model_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_tensor(m, i);
        bool odd = !strcmp(t->name, which);
        assert_int_equal(mope_gguf_add_tensor(w, t->name, odd ? type : MOPE_TYPE_F32, t->n_dims, t->ne,
                                              odd ? bytes : mope_train_model_params(m) + t->offset, &err),
                         0);
    }
    size_t size;
    assert_int_equal(mope_gguf_writer_to_memory(w, buf, &size, &err), 0);
    mope_gguf_writer_free(w);
    mope_gguf_close(g0);
    free(b0);
    mope_gguf *g = mope_gguf_open_memory(*buf, size, &err);
    assert_non_null(g);
    return g;
}

static void test_conversions_and_errors(void **state) {
    (void)state;
    mope_error err = {0};
    mope_train_model *m = make_model(true, false, 5);
    void *buf;

    /* F16 weights are converted to f32 */
    const mope_train_tensor *t = mope_train_model_find(m, "blk.0.ffn_up.weight");
    uint16_t *h = malloc(t->n * 2);
    for (size_t k = 0; k < t->n; k++) h[k] = mope_f32_to_f16(mope_train_model_params(m)[t->offset + k]);
    mope_gguf *g = model_mem_typed(m, &buf, t->name, MOPE_TYPE_F16, h);
    mope_train_model *m2 = mope_train_model_from_gguf(g, 1, &err);
    assert_non_null(m2);
    for (size_t k = 0; k < t->n; k++) assert_true(mope_train_model_params(m2)[t->offset + k] == mope_f16_to_f32(h[k]));
    mope_train_model_free(m2);
    mope_gguf_close(g);
    free(buf);
    free(h);

    /* quantised weights: unsupported, naming the tensor */
    uint8_t *q = calloc(t->n / 32 * 34, 1);
    g = model_mem_typed(m, &buf, t->name, MOPE_TYPE_Q8_0, q);
    assert_null(mope_train_model_from_gguf(g, 1, &err));
    assert_int_equal(err.code, MOPE_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "blk.0.ffn_up.weight"));
    mope_gguf_close(g);
    free(buf);
    free(q);

    /* another architecture */
    g = model_mem(m, &buf, "general.architecture", "qwen2", 0);
    assert_null(mope_train_model_from_gguf(g, 1, &err));
    assert_int_equal(err.code, MOPE_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "qwen2"));
    mope_gguf_close(g);
    free(buf);

    /* keys that disagree with the tensors */
    g = model_mem(m, &buf, "llama.feed_forward_length", NULL, 64);
    assert_null(mope_train_model_from_gguf(g, 1, &err));
    assert_int_equal(err.code, MOPE_EFORMAT);
    assert_non_null(strstr(err.msg, "blk.0.ffn_gate.weight"));
    mope_gguf_close(g);
    free(buf);
    g = model_mem(m, &buf, "llama.attention.head_count_kv", NULL, 3);
    assert_null(mope_train_model_from_gguf(g, 1, &err));
    assert_non_null(strstr(err.msg, "n_head_kv"));
    mope_gguf_close(g);
    free(buf);

    /* keys claiming a much bigger model fail on the first tensor, before
     * anything of that size is allocated */
    g = model_mem(m, &buf, "llama.feed_forward_length", NULL, 1000000); /* would be 800 MB of f32 */
    assert_null(mope_train_model_from_gguf(g, 1, &err));
    assert_int_equal(err.code, MOPE_EFORMAT);
    assert_non_null(strstr(err.msg, "blk.0.ffn_gate.weight"));
    mope_gguf_close(g);
    free(buf);
    g = model_mem(m, &buf, "llama.block_count", NULL, 1000);
    assert_null(mope_train_model_from_gguf(g, 1, &err));
    assert_non_null(strstr(err.msg, "missing tensor blk.2.attn_norm.weight"));
    mope_gguf_close(g);
    free(buf);

    /* a value head needs its bias */
    mope_train_model *mv = make_model(true, true, 6);
    const mope_train_tensor *vb = mope_train_model_find(mv, "mope.value_head.bias");
    g = model_mem_typed(mv, &buf, vb->name, MOPE_TYPE_F32, mope_train_model_params(mv) + vb->offset);
    mope_train_model *ok = mope_train_model_from_gguf(g, 1, &err);
    assert_non_null(ok); /* sanity: the hand-built file loads */
    mope_train_model_free(ok);
    mope_gguf_close(g);
    free(buf);
    mope_gguf_writer *w = mope_gguf_writer_new();
    void *b0;
    mope_gguf *g0 = model_mem(mv, &b0, NULL, NULL, 0);
    assert_int_equal(mope_gguf_copy_kv(w, g0, NULL), 0);
    for (int i = 0; i < mope_train_model_n_tensors(mv); i++) {
        const mope_train_tensor *ti = mope_train_model_tensor(mv, i);
        if (ti == vb) continue;
        assert_int_equal(mope_gguf_add_tensor(w, ti->name, MOPE_TYPE_F32, ti->n_dims, ti->ne,
                                              mope_train_model_params(mv) + ti->offset, &err),
                         0);
    }
    size_t size;
    assert_int_equal(mope_gguf_writer_to_memory(w, &buf, &size, &err), 0);
    mope_gguf_writer_free(w);
    g = mope_gguf_open_memory(buf, size, &err);
    assert_non_null(g);
    assert_null(mope_train_model_from_gguf(g, 1, &err));
    assert_non_null(strstr(err.msg, "missing tensor mope.value_head.bias"));
    mope_gguf_close(g);
    mope_gguf_close(g0);
    free(buf);
    free(b0);
    mope_train_model_free(mv);

    /* a checkpoint with a negative second moment */
    mope_trainer *tr = fresh_trainer();
    tr->v[3] = -1.0f;
    const char *bad = tmp_path("bad_ckpt.gguf");
    assert_int_equal(mope_train_checkpoint_save(tr, bad, NULL, &err), 0);
    mope_train_trainer_free(tr);
    assert_null(mope_train_checkpoint_load(bad, 1, NULL, &err));
    assert_int_equal(err.code, MOPE_EFORMAT);
    assert_non_null(strstr(err.msg, "mope.opt.v"));
    unlink(bad);

    /* a plain model is not a checkpoint */
    const char *path = tmp_path("plain.gguf");
    assert_int_equal(mope_train_model_save(m, path, NULL, &err), 0);
    assert_null(mope_train_checkpoint_load(path, 1, NULL, &err));
    assert_int_equal(err.code, MOPE_EFORMAT);
    assert_non_null(strstr(err.msg, "mope.train"));
    /* nor is a truncated file anything */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 200), 0);
    fclose(f);
    assert_null(mope_train_model_load(path, 1, &err));
    assert_true(err.code < 0);
    unlink(path);
    mope_train_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_roundtrip),
        cmocka_unit_test(test_engine_agrees),
        cmocka_unit_test(test_engine_value_head),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_conversions_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
