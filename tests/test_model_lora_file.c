/* LoRA adapter files: save -> load round trip, llama.cpp's layouts (the
 * token_embd exception, f16 values) read from files written here by hand,
 * bad files and bad arguments, and AB averaging against averaging by hand. */
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

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "%s/test_model_lora_file_%d_%s.gguf", MOPE_BINARY_DIR, (int)getpid(), tag);
}

static char base_path[512];
static mope_model *base; /* llama, 64 wide, vocab 512, 2 layers, untied */

static int setup(void **state) {
    (void)state;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    tmp_path(base_path, sizeof base_path, "base");
    mope_error err = {0};
    if (mope_model_write_random(base_path, &hp, MOPE_TYPE_F32, 99, NULL, &err) != 0) return -1;
    base = mope_model_load(base_path, &err);
    return base ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    mope_model_free(base);
    unlink(base_path);
    return 0;
}

static void fill(float *v, size_t n, uint64_t seed) {
    mope_rng r;
    mope_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = mope_rng_normal(&r);
}

static void test_round_trip(void **state) {
    (void)state;
    mope_error err = {0};
    const mope_hparams *hp = mope_model_hparams(base);
    mope_lora *l = mope_lora_new("llama", 12.5f, &err);
    assert_non_null(l);
    assert_int_equal(mope_lora_add_targets(l, hp, MOPE_LORA_ATTN | MOPE_LORA_DOWN | MOPE_LORA_OUTPUT, 6, NULL, &err),
                     0);
    assert_true(mope_lora_add(l, "token_embd.weight", hp->n_embd, hp->n_vocab, 5, NULL, NULL, &err) >= 0);
    assert_int_equal(mope_lora_n_tensors(l), 2 * 5 + 2);
    for (int i = 0; i < mope_lora_n_tensors(l); i++) {
        mope_lora_tensor *t = mope_lora_tensor_at(l, i);
        fill(t->a, (size_t)t->rank * t->n_in, 100 + i);
        fill(t->b, (size_t)t->n_out * t->rank, 200 + i);
    }
    char path[512];
    tmp_path(path, sizeof path, "rt");
    assert_int_equal(mope_lora_save(l, path, &err), 0);
    /* the file follows the convention: keys, names, ne (token_embd's exception) */
    mope_gguf *g = mope_gguf_open(path, &err);
    assert_non_null(g);
    mope_gguf_str s;
    assert_int_equal(mope_gguf_get_str(g, "general.type", &s), 0);
    assert_true(s.len == 7 && memcmp(s.ptr, "adapter", 7) == 0);
    assert_int_equal(mope_gguf_get_str(g, "adapter.type", &s), 0);
    assert_true(s.len == 4 && memcmp(s.ptr, "lora", 4) == 0);
    double alpha;
    assert_int_equal(mope_gguf_get_f64(g, "adapter.lora.alpha", &alpha), 0);
    assert_true(alpha == 12.5);
    const mope_gguf_tensor *qa = mope_gguf_find_tensor(g, "blk.1.attn_q.weight.lora_a");
    const mope_gguf_tensor *qb = mope_gguf_find_tensor(g, "blk.1.attn_q.weight.lora_b");
    assert_non_null(qa);
    assert_non_null(qb);
    assert_true(qa->ne[0] == 64 && qa->ne[1] == 6 && qb->ne[0] == 6 && qb->ne[1] == 64);
    const mope_gguf_tensor *ea = mope_gguf_find_tensor(g, "token_embd.weight.lora_a");
    const mope_gguf_tensor *eb = mope_gguf_find_tensor(g, "token_embd.weight.lora_b");
    assert_true(ea->ne[0] == 5 && ea->ne[1] == 512 && eb->ne[0] == 5 && eb->ne[1] == 64);
    /* exception layout: lora_a row v = B row v; lora_b row j = column j of A */
    const mope_lora_tensor *te = mope_lora_find(l, "token_embd.weight");
    float v;
    memcpy(&v, (const char *)ea->data + sizeof(float) * (7 * 5 + 2), 4);
    assert_true(v == te->b[7 * 5 + 2]);
    memcpy(&v, (const char *)eb->data + sizeof(float) * (9 * 5 + 3), 4);
    assert_true(v == te->a[3 * 64 + 9]);
    mope_gguf_close(g);

    for (int with_base = 0; with_base < 2; with_base++) {
        mope_lora *r = mope_lora_load(path, with_base ? base : NULL, &err);
        if (!r) fail_msg("%s", err.msg);
        assert_string_equal(mope_lora_arch(r), "llama");
        assert_true(mope_lora_alpha(r) == 12.5f);
        assert_int_equal(mope_lora_n_tensors(r), mope_lora_n_tensors(l));
        for (int i = 0; i < mope_lora_n_tensors(l); i++) {
            const mope_lora_tensor *a = mope_lora_get(l, i), *b = mope_lora_find(r, a->name);
            assert_non_null(b);
            assert_true(a->n_in == b->n_in && a->n_out == b->n_out && a->rank == b->rank);
            assert_memory_equal(a->a, b->a, sizeof(float) * (size_t)a->rank * a->n_in);
            assert_memory_equal(a->b, b->b, sizeof(float) * (size_t)a->n_out * a->rank);
        }
        assert_true(fabsf(mope_lora_scale(r, mope_lora_find(r, "blk.0.attn_k.weight"), 2.0f) - 2.0f * 12.5f / 6) <
                    1e-6f);
        mope_lora_free(r);
    }
    mope_lora_free(l);
    unlink(path);
}

/* ---- hand-written adapter files ---- */

typedef struct spec {
    const char *name;
    mope_type type;
    int64_t ne0, ne1;
} spec;

/* Writes an adapter with the given tensors (values: 0.01 * index, as f32 or
 * f16); arch / gtype NULL leave the key out. */
static void write_adapter(const char *path, const char *arch, const char *gtype, const spec *sp, int n) {
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_non_null(w);
    if (arch) mope_gguf_set_str(w, "general.architecture", arch);
    if (gtype) mope_gguf_set_str(w, "general.type", gtype);
    mope_gguf_set_str(w, "adapter.type", "lora");
    mope_gguf_set_f32(w, "adapter.lora.alpha", 4.0f);
    void *bufs[8] = {0};
    mope_error err = {0};
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)(sp[i].ne0 * sp[i].ne1);
        if (sp[i].type == MOPE_TYPE_F16) {
            uint16_t *h = calloc(cnt + 1, 2);
            for (size_t j = 0; j < cnt; j++) h[j] = mope_f32_to_f16(0.01f * (float)(j % 97));
            bufs[i] = h;
        } else {
            float *f = calloc(cnt + 1, 4);
            for (size_t j = 0; j < cnt; j++) f[j] = 0.01f * (float)(j % 97);
            bufs[i] = f;
        }
        const int64_t ne[2] = {sp[i].ne0, sp[i].ne1};
        assert_int_equal(mope_gguf_add_tensor(w, sp[i].name, sp[i].type, 2, ne, bufs[i], &err), 0);
    }
    assert_int_equal(mope_gguf_writer_write(w, path, &err), 0);
    for (int i = 0; i < n; i++) free(bufs[i]);
    mope_gguf_writer_free(w);
}

/* A file in llama.cpp's layout with f16 values, token_embd included. */
static void test_llama_cpp_layout_f16(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "f16");
    const spec sp[] = {
        {"token_embd.weight.lora_a", MOPE_TYPE_F16, 4, 512}, {"token_embd.weight.lora_b", MOPE_TYPE_F16, 4, 64},
        {"blk.0.ffn_down.weight.lora_a", MOPE_TYPE_F16, 128, 4}, {"blk.0.ffn_down.weight.lora_b", MOPE_TYPE_F32, 4, 64},
    };
    write_adapter(path, "llama", "adapter", sp, 4);
    mope_error err = {0};
    mope_lora *l = mope_lora_load(path, base, &err);
    if (!l) fail_msg("%s", err.msg);
    const mope_lora_tensor *e = mope_lora_find(l, "token_embd.weight");
    assert_non_null(e);
    assert_true(e->n_in == 64 && e->n_out == 512 && e->rank == 4);
    /* B = lora_a as is; A[k][j] = lora_b[j][k] */
    assert_true(e->b[300 * 4 + 1] == mope_f16_to_f32(mope_f32_to_f16(0.01f * (float)((300 * 4 + 1) % 97))));
    assert_true(e->a[2 * 64 + 10] == mope_f16_to_f32(mope_f32_to_f16(0.01f * (float)((10 * 4 + 2) % 97))));
    const mope_lora_tensor *d = mope_lora_find(l, "blk.0.ffn_down.weight");
    assert_true(d->n_in == 128 && d->n_out == 64 && d->rank == 4);
    assert_true(d->a[3 * 128 + 5] == mope_f16_to_f32(mope_f32_to_f16(0.01f * (float)((3 * 128 + 5) % 97))));
    assert_true(d->b[63 * 4 + 3] == 0.01f * (float)((63 * 4 + 3) % 97));
    mope_lora_free(l);
    unlink(path);
}

static void expect_load_error(const char *tag, const char *arch, const char *gtype, const spec *sp, int n,
                              const char *want1, const char *want2) {
    char path[512];
    tmp_path(path, sizeof path, tag);
    write_adapter(path, arch, gtype, sp, n);
    mope_error err = {0};
    mope_lora *l = mope_lora_load(path, base, &err);
    if (l) fail_msg("%s: loaded a bad adapter", tag);
    print_message("%s: %s\n", tag, err.msg);
    assert_true(err.code < 0);
    if (!strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
        fail_msg("%s: message '%s' lacks '%s' / '%s'", tag, err.msg, want1, want2 ? want2 : "");
    unlink(path);
}

static void test_bad_files(void **state) {
    (void)state;
    const spec ok[] = {{"blk.0.attn_q.weight.lora_a", MOPE_TYPE_F32, 64, 4},
                       {"blk.0.attn_q.weight.lora_b", MOPE_TYPE_F32, 4, 64}};
    expect_load_error("arch", "qwen2", "adapter", ok, 2, "architecture 'qwen2'", "'llama'");
    expect_load_error("notadapter", "llama", "model", ok, 2, "not a LoRA adapter", "'model'");
    expect_load_error("notype", "llama", NULL, ok, 2, "not a LoRA adapter", "missing");
    const spec shape[] = {{"blk.1.attn_k.weight.lora_a", MOPE_TYPE_F32, 64, 4},
                          {"blk.1.attn_k.weight.lora_b", MOPE_TYPE_F32, 4, 64}}; /* attn_k has 32 outputs */
    expect_load_error("shape", "llama", "adapter", shape, 2, "blk.1.attn_k.weight", "32");
    const spec rank[] = {{"blk.0.attn_q.weight.lora_a", MOPE_TYPE_F32, 64, 4},
                         {"blk.0.attn_q.weight.lora_b", MOPE_TYPE_F32, 8, 64}};
    expect_load_error("rankmismatch", "llama", "adapter", rank, 2, "ranks of 'blk.0.attn_q.weight' disagree", NULL);
    expect_load_error("missing_b", "llama", "adapter", ok, 1, "no matching 'blk.0.attn_q.weight.lora_b'", NULL);
    expect_load_error("missing_a", "llama", "adapter", ok + 1, 1, "no matching 'blk.0.attn_q.weight.lora_a'", NULL);
    const spec unknown[] = {{"blk.5.attn_q.weight.lora_a", MOPE_TYPE_F32, 64, 4},
                            {"blk.5.attn_q.weight.lora_b", MOPE_TYPE_F32, 4, 64}};
    expect_load_error("unknown", "llama", "adapter", unknown, 2, "blk.5.attn_q.weight", "no such tensor");
    const spec odd[] = {{"blk.0.attn_qq.weight.lora_a", MOPE_TYPE_F32, 64, 4},
                        {"blk.0.attn_qq.weight.lora_b", MOPE_TYPE_F32, 4, 64}};
    expect_load_error("odd", "llama", "adapter", odd, 2, "unknown tensor 'blk.0.attn_qq.weight'", NULL);
    const spec norm[] = {{"blk.0.attn_norm.weight.lora_a", MOPE_TYPE_F32, 64, 4},
                         {"blk.0.attn_norm.weight.lora_b", MOPE_TYPE_F32, 4, 1}};
    expect_load_error("norm", "llama", "adapter", norm, 2, "blk.0.attn_norm.weight", "norm tensors are never adapted");
    const spec zero[] = {{"blk.0.attn_q.weight.lora_a", MOPE_TYPE_F32, 64, 0},
                         {"blk.0.attn_q.weight.lora_b", MOPE_TYPE_F32, 0, 64}};
    expect_load_error("rank0", "llama", "adapter", zero, 2, "blk.0.attn_q.weight", "rank 0");
    const spec stray[] = {ok[0], ok[1], {"blk.0.attn_q.weight", MOPE_TYPE_F32, 64, 64}};
    expect_load_error("stray", "llama", "adapter", stray, 3, "unexpected tensor 'blk.0.attn_q.weight'", NULL);
    const spec q8[] = {{"blk.0.attn_q.weight.lora_a", MOPE_TYPE_Q8_0, 64, 4},
                       {"blk.0.attn_q.weight.lora_b", MOPE_TYPE_F32, 4, 64}};
    expect_load_error("q8", "llama", "adapter", q8, 2, "q8_0", "f32, f16 or bf16");
    expect_load_error("empty", "llama", "adapter", ok, 0, "no tensors", NULL);

    /* not a file at all / a model file */
    mope_error err = {0};
    char path[512];
    tmp_path(path, sizeof path, "absent");
    assert_null(mope_lora_load(path, base, &err));
    assert_non_null(strstr(err.msg, path));
    assert_null(mope_lora_load(base_path, base, &err));
    assert_non_null(strstr(err.msg, "not a LoRA adapter"));
}

static void test_api_errors(void **state) {
    (void)state;
    mope_error err = {0};
    assert_null(mope_lora_new("llama", -1.0f, &err));
    assert_null(mope_lora_new("llama", NAN, &err));
    mope_lora *l = mope_lora_new("llama", 8.0f, &err);
    assert_non_null(l);
    assert_true(mope_lora_add(l, "blk.0.attn_q.weight", 64, 64, 0, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "rank 0"));
    assert_true(mope_lora_add(l, "blk.0.ffn_norm.weight", 64, 1, 2, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "norm"));
    assert_true(mope_lora_add(l, "blk.0.attn_q.bias", 64, 1, 2, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "bias"));
    assert_true(mope_lora_add(l, "blk.01.attn_q.weight", 64, 64, 2, NULL, NULL, &err) < 0);
    float a[128] = {0};
    a[5] = INFINITY;
    assert_true(mope_lora_add(l, "blk.0.attn_q.weight", 64, 64, 2, a, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "finite"));
    assert_int_equal(mope_lora_add(l, "blk.0.attn_q.weight", 64, 64, 2, NULL, NULL, &err), 0);
    assert_true(mope_lora_add(l, "blk.0.attn_q.weight", 64, 64, 2, NULL, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "twice"));
    /* a wrong shape is refused when attached */
    assert_int_equal(mope_lora_add(l, "blk.0.ffn_up.weight", 64, 100, 2, NULL, NULL, &err), 1);
    assert_true(mope_model_add_adapter(base, l, 1.0f, &err) < 0);
    assert_non_null(strstr(err.msg, "blk.0.ffn_up.weight"));
    assert_int_equal(mope_model_n_adapters(base), 0);
    mope_lora_free(l);
    /* wrong architecture */
    l = mope_lora_new("qwen2", 8.0f, &err);
    assert_int_equal(mope_lora_add(l, "blk.0.attn_q.weight", 64, 64, 2, NULL, NULL, &err), 0);
    assert_true(mope_model_add_adapter(base, l, 1.0f, &err) < 0);
    assert_non_null(strstr(err.msg, "architecture"));
    assert_true(mope_lora_merge(base, l, 1.0f, MOPE_TYPE_F32, "/nonexistent/x.gguf", &err) < 0);
    mope_lora_free(l);
    /* a tied model has no output.weight to adapt */
    mope_hparams hp = *mope_model_hparams(base);
    hp.tied_output = true;
    l = mope_lora_new("llama", 8.0f, &err);
    assert_true(mope_lora_add_targets(l, &hp, MOPE_LORA_OUTPUT, 4, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "tied"));
    mope_lora_free(l);
    /* a row naming an adapter when none is attached */
    mope_kv *kv = mope_kv_new(base, 1, 4, &err);
    float logits[512];
    mope_row row = {.seq = 0, .token = 3, .pos = 0, .adapter = 0, .want_logits = true};
    assert_true(mope_model_forward(base, kv, &row, 1, logits, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "adapter 0"));
    assert_int_equal(mope_kv_seq_len(kv, 0), 0);
    mope_kv_free(kv);
}

/* AB averaging equals averaging A's and B's by hand; mismatches are refused. */
static void test_average_ab(void **state) {
    (void)state;
    mope_error err = {0};
    const mope_hparams *hp = mope_model_hparams(base);
    mope_lora *ls[3];
    for (int k = 0; k < 3; k++) {
        ls[k] = mope_lora_new("llama", 16.0f, &err);
        assert_int_equal(mope_lora_add_targets(ls[k], hp, MOPE_LORA_Q | MOPE_LORA_UP, 8, NULL, &err), 0);
        for (int i = 0; i < mope_lora_n_tensors(ls[k]); i++) {
            mope_lora_tensor *t = mope_lora_tensor_at(ls[k], i);
            fill(t->a, (size_t)t->rank * t->n_in, 1000 * k + i);
            fill(t->b, (size_t)t->n_out * t->rank, 5000 + 1000 * k + i);
        }
    }
    const float w[3] = {0.2f, 0.5f, 0.3f};
    mope_lora *avg = mope_lora_average((const mope_lora *const *)ls, w, 3, MOPE_LORA_AVG_AB, &err);
    if (!avg) fail_msg("%s", err.msg);
    assert_true(mope_lora_alpha(avg) == 16.0f);
    assert_int_equal(mope_lora_n_tensors(avg), 4);
    for (int i = 0; i < 4; i++) {
        const mope_lora_tensor *t = mope_lora_get(avg, i);
        assert_int_equal(t->rank, 8);
        size_t na = (size_t)t->rank * t->n_in, nb = (size_t)t->n_out * t->rank;
        for (size_t j = 0; j < na; j++) {
            double h = 0;
            for (int k = 0; k < 3; k++) h += (double)w[k] * mope_lora_find(ls[k], t->name)->a[j];
            assert_true(fabs(t->a[j] - h) < 1e-6);
        }
        for (size_t j = 0; j < nb; j++) {
            double h = 0;
            for (int k = 0; k < 3; k++) h += (double)w[k] * mope_lora_find(ls[k], t->name)->b[j];
            assert_true(fabs(t->b[j] - h) < 1e-6);
        }
    }
    mope_lora_free(avg);
    /* NULL weights: the plain mean */
    avg = mope_lora_average((const mope_lora *const *)ls, NULL, 3, MOPE_LORA_AVG_AB, &err);
    assert_non_null(avg);
    for (int j = 0; j < 64; j++) {
        double h = 0;
        for (int k = 0; k < 3; k++) h += mope_lora_get(ls[k], 1)->b[j] / 3.0;
        assert_true(fabs(mope_lora_get(avg, 1)->b[j] - h) < 1e-6);
    }
    mope_lora_free(avg);
    /* ranks differ: refused, pointing at the delta mode */
    mope_lora *r4 = mope_lora_new("llama", 16.0f, &err);
    assert_int_equal(mope_lora_add_targets(r4, hp, MOPE_LORA_Q | MOPE_LORA_UP, 4, NULL, &err), 0);
    const mope_lora *mix[2] = {ls[0], r4};
    assert_null(mope_lora_average(mix, NULL, 2, MOPE_LORA_AVG_AB, &err));
    assert_non_null(strstr(err.msg, "equal ranks"));
    mope_lora *d = mope_lora_average(mix, NULL, 2, MOPE_LORA_AVG_DELTA, &err);
    assert_non_null(d);
    assert_int_equal(mope_lora_get(d, 0)->rank, 12);
    mope_lora_free(d);
    mope_lora_free(r4);
    /* different alphas or tensor sets: refused */
    mope_lora *a8 = mope_lora_new("llama", 8.0f, &err);
    assert_int_equal(mope_lora_add_targets(a8, hp, MOPE_LORA_Q | MOPE_LORA_UP, 8, NULL, &err), 0);
    const mope_lora *mix2[2] = {ls[0], a8};
    assert_null(mope_lora_average(mix2, NULL, 2, MOPE_LORA_AVG_AB, &err));
    assert_non_null(strstr(err.msg, "alpha"));
    mope_lora_free(a8);
    mope_lora *qk = mope_lora_new("llama", 16.0f, &err);
    assert_int_equal(mope_lora_add_targets(qk, hp, MOPE_LORA_Q | MOPE_LORA_K, 8, NULL, &err), 0);
    const mope_lora *mix3[2] = {ls[0], qk};
    assert_null(mope_lora_average(mix3, NULL, 2, MOPE_LORA_AVG_AB, &err));
    assert_non_null(strstr(err.msg, "does not adapt"));
    mope_lora_free(qk);
    mope_lora *qw = mope_lora_new("qwen2", 16.0f, &err);
    const mope_lora *mix4[2] = {ls[0], qw};
    assert_null(mope_lora_average(mix4, NULL, 2, MOPE_LORA_AVG_DELTA, &err));
    assert_non_null(strstr(err.msg, "qwen2"));
    mope_lora_free(qw);
    assert_null(mope_lora_average(NULL, NULL, 0, MOPE_LORA_AVG_AB, &err));
    for (int k = 0; k < 3; k++) mope_lora_free(ls[k]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_llama_cpp_layout_f16),
        cmocka_unit_test(test_bad_files),  cmocka_unit_test(test_api_errors),
        cmocka_unit_test(test_average_ab),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
