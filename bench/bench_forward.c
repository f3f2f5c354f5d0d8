/* Forward-pass benchmark: decode speed as a fraction of the memory read
 * bandwidth measured in the same process, prefill speed, and batched decode
 * (B sequences, one row each, one pass over the weights).
 *
 *   bench_forward [--size 1b|100m|small] [--type q8_0] [--threads 2]
 *                 [--tokens 16] [--prefill 64] [--batch 8] [--model PATH]
 *                 [--rm]
 *
 * Without --model it writes (once, to /tmp; --rm deletes it at the end) a
 * random llama model of one of these shapes:
 *   1b    the 1.1B shape llama.cpp is measured with (TinyLlama: 2048 wide,
 *         22 layers, 32 heads, 4 KV heads, FFN 5632, 32000 vocab);
 *   100m  768 wide, 12 layers, 12 heads, 4 KV heads, FFN 2048, 16000 vocab
 *         (101M parameters, untied output);
 *   small a few MB, for a quick check.
 * The bound: a decode step must read every weight once (the layers' seven
 * matrices and the output matrix; one embedding row), so its best possible
 * time is those bytes over the read bandwidth of the same threads, measured
 * by this program: a vectorised read of a 1 GiB buffer (the better of glibc
 * memchr and mope_dot_f32(a, a)), 5 times first and then once after every
 * decode step.  The fraction of the
 * bound compares the median decode step with the median read pass (both
 * under the same, on a shared machine changing, load) and the best step
 * with the best pass.
 * The last line (RESULT ...) gathers the figures. */
#include "model/model_internal.h" /* weight matrices, for the kernel-only pass */
#include "mope/model.h"
#include "mope/quant.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bw_ctx {
    const unsigned char *buf;
    size_t n;
    atomic_int hits;
} bw_ctx;

/* memchr for a byte the buffer never holds reads every byte with glibc's
 * vector code: a pure read stream, as a decode step is. */
static void bw_job(void *arg, int ith, int nth) {
    bw_ctx *c = arg;
    int64_t lo, hi;
    mope_split((int64_t)(c->n >> 12), ith, nth, &lo, &hi);
    if (memchr(c->buf + (lo << 12), 0xA5, (size_t)(hi - lo) << 12)) atomic_fetch_add(&c->hits, 1);
}

/* Kernel-only pass: every weight row dotted once with a quantised input, in
 * one dispatch with static shares and no other work.  The decode step's
 * time over this one is the engine's own overhead (dispatches, norms,
 * attention, activation quantisation), whatever the machine's load. */
typedef struct raw_ctx {
    const mope_model *m;
    const void *xq;
    float *y;
} raw_ctx;

static void raw_rows(const mope_wmat *w, const void *xq, float *y, int ith, int nth) {
    int64_t lo, hi;
    mope_split(w->ne1, ith, nth, &lo, &hi);
    for (int64_t j = lo; j < hi; j++)
        mope_vec_dot(w->type, w->ne0, &y[j], (const char *)w->data + (size_t)j * w->row_bytes, xq);
}

static void raw_job(void *arg, int ith, int nth) {
    raw_ctx *c = arg;
    const mope_model *m = c->m;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const mope_layer *L = &m->layers[il];
        const mope_wmat *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int k = 0; k < 7; k++) raw_rows(ws[k], c->xq, c->y, ith, nth);
    }
    raw_rows(&m->output, c->xq, c->y, ith, nth);
}

/* The same read through mope's own f32 dot kernel (a . a reads every
 * element once): whichever of the two streams faster is the baseline. */
static void bw_dot_job(void *arg, int ith, int nth) {
    bw_ctx *c = arg;
    int64_t lo, hi;
    mope_split((int64_t)(c->n >> 12), ith, nth, &lo, &hi);
    const float *p = (const float *)(c->buf + (lo << 12));
    if (mope_dot_f32(p, p, (hi - lo) << 10) < 0) atomic_fetch_add(&c->hits, 1);
}

/* One sample of the read bandwidth with the pool's threads: the better of
 * a memchr pass and a dot pass over the whole buffer, in GB/s. */
static double read_pass(mope_pool *pool, bw_ctx *c) {
    double best = 0;
    mope_pool_fn fns[2] = {bw_job, bw_dot_job};
    for (int k = 0; k < 2; k++) {
        double t0 = mope_time_s();
        mope_pool_run(pool, fns[k], c);
        double gbs = (double)c->n / (mope_time_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int die(const mope_error *err) {
    fprintf(stderr, "bench_forward: %s\n", err->msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *type_name = "q8_0", *model_path = NULL, *size = "1b";
    int threads = 2, n_tok = 16, n_prefill = 64, batch = 8;
    bool rm = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--small")) size = "small";
        else if (!strcmp(a, "--rm")) rm = true;
        else if (v && !strcmp(a, "--size")) size = v, i++;
        else if (v && !strcmp(a, "--type")) type_name = v, i++;
        else if (v && !strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (v && !strcmp(a, "--tokens")) n_tok = atoi(v), i++;
        else if (v && !strcmp(a, "--prefill")) n_prefill = atoi(v), i++;
        else if (v && !strcmp(a, "--batch")) batch = atoi(v), i++;
        else if (v && !strcmp(a, "--model")) model_path = v, i++;
        else {
            fprintf(stderr, "usage: %s [--size 1b|100m|small] [--type T] [--threads N] [--tokens N] [--prefill N] "
                            "[--batch N] [--model PATH] [--rm]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || n_tok < 1 || n_prefill < 1 || batch < 1) {
        fprintf(stderr, "bench_forward: counts must be positive\n");
        return 2;
    }
    mope_error err = {0};
    char path[256];
    if (!model_path) {
        int t = mope_type_from_name(type_name);
        if (t < 0) {
            fprintf(stderr, "bench_forward: unknown type %s\n", type_name);
            return 2;
        }
        mope_hparams hp;
        mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
        if (!strcmp(size, "1b")) {
            hp.n_vocab = 32000, hp.n_embd = 2048, hp.n_layer = 22, hp.n_head = 32, hp.n_head_kv = 4;
            hp.head_dim = 64, hp.n_rot = 64, hp.n_ff = 5632, hp.n_ctx_train = 2048;
        } else if (!strcmp(size, "100m")) {
            hp.n_vocab = 16000, hp.n_embd = 768, hp.n_layer = 12, hp.n_head = 12, hp.n_head_kv = 4;
            hp.head_dim = 64, hp.n_rot = 64, hp.n_ff = 2048, hp.n_ctx_train = 2048;
        } else if (!strcmp(size, "small")) {
            hp.n_vocab = 4096, hp.n_embd = 512, hp.n_layer = 4, hp.n_head = 8, hp.n_head_kv = 2;
            hp.head_dim = 64, hp.n_rot = 64, hp.n_ff = 1536;
        } else {
            fprintf(stderr, "bench_forward: unknown size %s (1b, 100m or small)\n", size);
            return 2;
        }
        snprintf(path, sizeof path, "/tmp/mope_bench_%s_%s.gguf", size, type_name);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "writing %s ...\n", path);
            if (mope_model_write_random(path, &hp, (mope_type)t, 42, NULL, &err)) return die(&err);
        }
        model_path = path;
    }
    mope_model *m = mope_model_load(model_path, &err);
    if (!m) return die(&err);
    const mope_hparams *hp = mope_model_hparams(m);
    mope_pool *pool = mope_pool_create(threads, &err);
    if (!pool) return die(&err);
    int n_ctx = n_prefill + 2 * n_tok + 8; /* decode, then batched decode of n_tok / 2 steps */
    mope_kv *kv = mope_kv_new(m, batch > 2 ? batch : 2, n_ctx, &err);
    if (!kv) return die(&err);
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab * (size_t)(n_prefill > batch ? n_prefill : batch));
    mope_row *rows = calloc((size_t)(n_prefill > batch ? n_prefill : batch), sizeof *rows);
    double wbytes = (double)mope_model_weight_bytes(m);
    /* the bound's read bandwidth: 1 GiB, far past the caches, read 5 times
     * now and once after every decode step, so that it samples the same
     * machine load as the steps do */
    bw_ctx bwc = {.n = (size_t)1 << 30};
    unsigned char *bwbuf = malloc(bwc.n);
    double *bw_s = malloc(sizeof(double) * (size_t)(n_tok + 5));
    if (!bwbuf || !bw_s) {
        fprintf(stderr, "bench_forward: out of memory for the bandwidth buffer\n");
        return 1;
    }
    memset(bwbuf, 0x3f, bwc.n); /* never 0xA5: memchr reads it all; as floats, 0.75 */
    bwc.buf = bwbuf;
    int n_bw = 0;
    for (int i = 0; i < 5; i++) bw_s[n_bw++] = read_pass(pool, &bwc);
    printf("model %s: %.0f MB of weights read per pass, isa %s, %d threads\n", model_path, wbytes / 1e6,
           mope_isa_name(mope_quant_isa()), threads);
    printf("read bandwidth, first 5 passes: %.2f %.2f %.2f %.2f %.2f GB/s\n", bw_s[0], bw_s[1], bw_s[2], bw_s[3],
           bw_s[4]);

    /* prefill: one batch of n_prefill rows (also warms the page cache) */
    for (int i = 0; i < n_prefill; i++)
        rows[i] = (mope_row){0, (int32_t)(1 + i % (hp->n_vocab - 1)), i, -1, i == n_prefill - 1};
    double t0 = mope_time_s();
    if (mope_model_forward(m, kv, rows, n_prefill, logits, pool, &err)) return die(&err);
    double tp = mope_time_s() - t0;
    printf("prefill %d tokens: %.3f s, %.1f tokens/s\n", n_prefill, tp, n_prefill / tp);

    /* decode: one row per step, each followed by a kernel-only pass so both
     * see the same machine load */
    int64_t maxk = hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd;
    if ((int64_t)hp->n_head * hp->head_dim > maxk) maxk = (int64_t)hp->n_head * hp->head_dim;
    float *xin = malloc(sizeof(float) * (size_t)maxk);
    for (int64_t i = 0; i < maxk; i++) xin[i] = (float)((i % 13) - 6) * 0.1f;
    int64_t maxrows = hp->n_vocab > maxk ? hp->n_vocab : maxk;
    raw_ctx rc = {.m = m, .xq = mope_alloc((size_t)maxk, 4 * sizeof(float)),
                  .y = malloc(sizeof(float) * (size_t)maxrows)};
    if (!rc.xq || !rc.y) {
        fprintf(stderr, "bench_forward: out of memory\n");
        return 1;
    }
    /* The benchmark's own models store every matrix in one type; the input
     * is quantised once to that type's vec_dot format (zeros past n_embd). */
    mope_quantize_act(m->output.type, xin, (void *)rc.xq, hp->n_embd);
    double best = 1e30, total = 0, raw_total = 0;
    double *steps_t = malloc(sizeof(double) * (size_t)n_tok);
    for (int i = 0; i < n_tok; i++) {
        mope_row r = {0, (int32_t)(3 + i), n_prefill + i, -1, true};
        double t1 = mope_time_s();
        if (mope_model_forward(m, kv, &r, 1, logits, pool, &err)) return die(&err);
        double dt = mope_time_s() - t1;
        steps_t[i] = dt;
        total += dt;
        if (dt < best) best = dt;
        t1 = mope_time_s();
        mope_pool_run(pool, raw_job, &rc);
        raw_total += mope_time_s() - t1;
        bw_s[n_bw++] = read_pass(pool, &bwc);
    }
    /* the bound: the median step against the median read pass (the same
     * load), the best step against the best read pass */
    free(bwbuf);
    qsort(bw_s, (size_t)n_bw, sizeof *bw_s, cmp_double);
    double bw = bw_s[n_bw / 2], bw_best = bw_s[n_bw - 1];
    free(bw_s);
    printf("read bandwidth over %d passes interleaved with the steps: median %.2f GB/s, best %.2f GB/s\n", n_bw, bw,
           bw_best);
    double mean = total / n_tok, raw_mean = raw_total / n_tok;
    qsort(steps_t, (size_t)n_tok, sizeof *steps_t, cmp_double);
    double median = steps_t[n_tok / 2];
    free(steps_t);
    printf("decode: %.2f ms/token mean, %.2f median, %.2f best; %.1f tokens/s (median step); %.2f GB/s = %.0f%% of "
           "the bound (median read pass; best step / best pass %.0f%%; mean step %.0f%%)\n",
           mean * 1e3, median * 1e3, best * 1e3, 1 / median, wbytes / median / 1e9, 100 * wbytes / median / 1e9 / bw,
           100 * wbytes / best / 1e9 / bw_best, 100 * wbytes / mean / 1e9 / bw);
    printf("kernel-only pass over the same weights: %.2f ms mean (%.2f GB/s); decode step / kernel pass = %.2f\n",
           raw_mean * 1e3, wbytes / raw_mean / 1e9, mean / raw_mean);
    free(xin);
    mope_free((void *)rc.xq);
    free(rc.y);

    /* batched decode: `batch` sequences forked from seq 0, one row each per step */
    for (int s = 1; s < batch; s++)
        if (mope_kv_seq_copy(kv, s, 0, &err)) return die(&err);
    int steps = n_tok / 2 > 0 ? n_tok / 2 : 1;
    t0 = mope_time_s();
    for (int i = 0; i < steps; i++) {
        for (int s = 0; s < batch; s++)
            rows[s] = (mope_row){s, (int32_t)(5 + s + i), mope_kv_seq_len(kv, s), -1, true};
        if (mope_model_forward(m, kv, rows, batch, logits, pool, &err)) return die(&err);
    }
    double tb = (mope_time_s() - t0) / steps;
    printf("batched decode, %d sequences: %.2f ms/step = %.2fx one row's step (median); %.1f tokens/s (%.2fx "
           "single-row decode)\n",
           batch, tb * 1e3, tb / median, batch / tb, batch / tb * median);
    printf("RESULT %s %s threads=%d prefill_tps=%.1f decode_tps=%.2f decode_best_tps=%.2f bound_frac=%.3f "
           "best_frac=%.3f bw_gbs=%.2f batch%d_step_x=%.2f batch_tps=%.1f\n",
           model_path, mope_type_name(m->output.type), threads, n_prefill / tp, 1 / median, 1 / best,
           wbytes / median / 1e9 / bw, wbytes / best / 1e9 / bw_best, bw, batch, tb / median, batch / tb);
    free(rows);
    free(logits);
    mope_kv_free(kv);
    mope_pool_free(pool);
    mope_model_free(m);
    if (rm && model_path == path) unlink(path);
    return 0;
}
