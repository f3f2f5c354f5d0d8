/* The decode fast paths at the model level (F16 weights, as the PrefBench
 * models have):
 * 1. A row's logits are bit-identical whether it runs alone (single-row
 *    kernel) or in a batch of 6 rows (the tiled F16 GEMM, on AVX-512): six
 *    sequences decoded together against each decoded alone.
 * 2. LoRA factors whose values are all F16 values are stored as F16 (half
 *    the bytes) and give the same logits as f32 storage: the same adapter
 *    plus one extra rank whose A row is not F16-exact (forcing f32) and
 *    whose B column is zero (contributing nothing), alpha 0 so the scale
 *    does not depend on the rank.  The adapter must move the logits away
 *    from the base's, and in a batch mixing both adapters every row must
 *    get its own adapter's logits, bit-identical with 3 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/lora_internal.h"
#include "mope/lora.h"
#include "mope/model.h"
#include "mope/quant.h"

enum { N_SEQ = 6, N_TOK = 10 };

static mope_model *f16_model(char *path, size_t np, const char *tag) {
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.tied_output = false;
    hp.n_embd = 64;
    hp.n_ff = 128;
    hp.head_dim = hp.n_embd / hp.n_head;
    hp.n_rot = hp.head_dim;
    snprintf(path, np, "%s/test_model_lora_speed_%d_%s.gguf", MOPE_BINARY_DIR, (int)getpid(), tag);
    mope_error err = {0};
    assert_int_equal(mope_model_write_random(path, &hp, MOPE_TYPE_F16, 99, NULL, &err), 0);
    mope_model *m = mope_model_load(path, &err);
    if (!m) fail_msg("%s", err.msg);
    return m;
}

static int32_t tok_of(int s, int t, int n_vocab) { return (int32_t)((s * 131 + t * 37 + 5) % n_vocab); }

/* Decodes N_SEQ sequences of N_TOK tokens; together: one forward of all
 * sequences per position, else each sequence alone.  adapter[s] per row. */
static float *decode_pool(mope_model *m, bool together, const int *adapter, mope_pool *pool) {
    const mope_hparams *hp = mope_model_hparams(m);
    mope_error err = {0};
    mope_kv *kv = mope_kv_new(m, N_SEQ, N_TOK, &err);
    assert_non_null(kv);
    size_t V = (size_t)hp->n_vocab;
    float *out = malloc(sizeof(float) * N_SEQ * N_TOK * V), *lg = malloc(sizeof(float) * N_SEQ * V);
    assert_non_null(out);
    assert_non_null(lg);
    for (int t = 0; t < N_TOK; t++) {
        mope_row rows[N_SEQ];
        for (int s = 0; s < N_SEQ; s++)
            rows[s] = (mope_row){.seq = s, .token = tok_of(s, t, hp->n_vocab), .pos = t, .adapter = adapter[s],
                                 .want_logits = true};
        if (together) {
            if (mope_model_forward(m, kv, rows, N_SEQ, lg, pool, &err)) fail_msg("%s", err.msg);
        } else {
            for (int s = 0; s < N_SEQ; s++)
                if (mope_model_forward(m, kv, &rows[s], 1, lg + s * V, pool, &err)) fail_msg("%s", err.msg);
        }
        for (int s = 0; s < N_SEQ; s++) memcpy(out + ((size_t)s * N_TOK + t) * V, lg + s * V, sizeof(float) * V);
    }
    free(lg);
    mope_kv_free(kv);
    return out;
}

static float *decode(mope_model *m, bool together, const int *adapter) {
    return decode_pool(m, together, adapter, NULL);
}

static void test_batch_equals_single_f16(void **state) {
    (void)state;
    char path[512];
    mope_model *m = f16_model(path, sizeof path, "batch");
    const int none[N_SEQ] = {-1, -1, -1, -1, -1, -1};
    float *alone = decode(m, false, none), *batch = decode(m, true, none);
    size_t n = (size_t)N_SEQ * N_TOK * mope_model_hparams(m)->n_vocab;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&alone[i], &batch[i], sizeof(float)) != 0)
            fail_msg("logit %zu: %.9g alone, %.9g in a batch of %d (must be bit-identical)", i, (double)alone[i],
                     (double)batch[i], N_SEQ);
    free(alone);
    free(batch);
    mope_model_free(m);
    unlink(path);
}

/* rank r; with extra, rank r + 1 whose last A row is 0.1 (not an F16
 * value) and last B column 0. */
static mope_lora *adapter(const mope_model *m, int r, bool extra) {
    const mope_hparams *hp = mope_model_hparams(m);
    mope_error err = {0};
    mope_lora *l = mope_lora_new(mope_arch_name(hp->arch), 0.0f, &err);
    assert_non_null(l);
    int R = r + (extra ? 1 : 0);
    assert_int_equal(mope_lora_add_targets(l, hp, MOPE_LORA_ATTN | MOPE_LORA_FFN | MOPE_LORA_OUTPUT, R, NULL, &err), 0);
    mope_rng rng;
    mope_rng_seed(&rng, 5); /* the same draws for both adapters */
    for (int i = 0; i < mope_lora_n_tensors(l); i++) {
        mope_lora_tensor *t = mope_lora_tensor_at(l, i);
        for (int k = 0; k < R; k++)
            for (int64_t j = 0; j < t->n_in; j++)
                t->a[(int64_t)k * t->n_in + j] =
                    k < r ? mope_f16_to_f32(mope_f32_to_f16(0.2f * mope_rng_normal(&rng))) : 0.1f;
        for (int64_t o = 0; o < t->n_out; o++)
            for (int k = 0; k < R; k++)
                t->b[o * R + k] = k < r ? mope_f16_to_f32(mope_f32_to_f16(0.05f * mope_rng_normal(&rng))) : 0.0f;
    }
    return l;
}

static void test_f16_factors(void **state) {
    (void)state;
    char path[512];
    mope_model *m = f16_model(path, sizeof path, "lora");
    /* rank 20: a masked tail in the rank-wide kernel, and an output update
     * (6 rows x 20 x (64 + 512)) big enough to be split over threads */
    mope_lora *l16 = adapter(m, 20, false), *l32 = adapter(m, 20, true);
    mope_error err = {0};
    int id16 = mope_model_add_adapter(m, l16, 0.8f, &err), id32 = mope_model_add_adapter(m, l32, 0.8f, &err);
    assert_true(id16 >= 0 && id32 >= 0);
    int slots = m->lora->n_slots, adapted = 0;
    for (int j = 0; j < slots; j++) {
        const lora_use *u16 = &m->lora->a[id16].use[j], *u32 = &m->lora->a[id32].use[j];
        assert_true((u16->t != NULL) == (u32->t != NULL));
        if (!u16->t) continue;
        adapted++;
        assert_true(u16->f16);
        assert_false(u32->f16);
    }
    assert_true(adapted > 0);
    /* a mixed batch: rows 0-2 on the F16-stored adapter, 3-5 on the f32 one */
    const int ids[N_SEQ] = {id16, id16, id16, id32, id32, id32};
    const int base_ids[N_SEQ] = {-1, -1, -1, -1, -1, -1};
    float *got = decode(m, true, ids), *base = decode(m, true, base_ids);
    size_t V = (size_t)mope_model_hparams(m)->n_vocab;
    double worst = 0, moved = 0;
    /* every sequence on each adapter: the same tokens, compared directly */
    const int ids32[N_SEQ] = {id32, id32, id32, id32, id32, id32};
    const int ids16[N_SEQ] = {id16, id16, id16, id16, id16, id16};
    float *a16 = decode(m, true, ids16), *a32 = decode(m, true, ids32);
    size_t n = (size_t)N_SEQ * N_TOK * V;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a16[i] - a32[i]) / (1.0 + fabs((double)a32[i]));
        if (d > worst) worst = d;
        double e = fabs((double)a16[i] - base[i]);
        if (e > moved) moved = e;
    }
    print_message("F16 vs f32 adapter storage: worst relative difference %.3g; adapter moves logits by up to %.3g\n",
                  worst, moved);
    assert_true(worst < 1e-6);
    assert_true(moved > 1e-2);
    /* threads split the weight rows and the output LoRA's panels: every
     * output's arithmetic stays the same */
    mope_pool *pool = mope_pool_create(3, &err);
    assert_non_null(pool);
    float *par = decode_pool(m, true, ids, pool);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&par[i], &got[i], sizeof(float)) != 0)
            fail_msg("logit %zu: %.9g with 3 threads, %.9g with one", i, (double)par[i], (double)got[i]);
    free(par);
    mope_pool_free(pool);
    /* the mixed batch gives each row its own adapter's logits */
    for (int s = 0; s < N_SEQ; s++)
        for (int t = 0; t < N_TOK; t++) {
            const float *g = got + ((size_t)s * N_TOK + t) * V;
            const float *want = (s < 3 ? a16 : a32) + ((size_t)s * N_TOK + t) * V;
            for (size_t v = 0; v < V; v++)
                if (fabsf(g[v] - want[v]) > 1e-5f * (1.0f + fabsf(want[v])))
                    fail_msg("mixed batch row %d position %d logit %zu: %.9g, its adapter alone %.9g", s, t, v,
                             (double)g[v], (double)want[v]);
        }
    free(got);
    free(base);
    free(a16);
    free(a32);
    mope_model_free(m);
    mope_lora_free(l16);
    mope_lora_free(l32);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_equals_single_f16),
        cmocka_unit_test(test_f16_factors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
