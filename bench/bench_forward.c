/* Forward-pass benchmark: decode speed as a fraction of the memory read
 * bandwidth measured in the same process, prefill speed, and batched decode
 * (B sequences, one row each, one pass over the weights).
 *
 *   bench_forward [--type q8_0] [--threads 2] [--tokens 16] [--prefill 64]
 *                 [--batch 8] [--model PATH] [--small]
 *
 * Without --model it writes (once, to /tmp) a random model with the shape of
 * a 1.1B llama (2048 wide, 22 layers, 32 heads, 4 KV heads, FFN 5632,
 * 32000 vocab), or a small one with --small. */
#include "model/model_internal.h" /* weight matrices, for the kernel-only pass */
#include "mope/model.h"
#include "mope/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bw_ctx {
    const uint64_t *buf;
    size_t n;
    uint64_t out[64];
} bw_ctx;

static void bw_job(void *arg, int ith, int nth) {
    bw_ctx *c = arg;
    int64_t lo, hi;
    mope_split((int64_t)c->n, ith, nth, &lo, &hi);
    uint64_t a = 0, b = 0, d = 0, e = 0;
    for (int64_t i = lo; i + 3 < hi; i += 4) {
        a ^= c->buf[i];
        b ^= c->buf[i + 1];
        d ^= c->buf[i + 2];
        e ^= c->buf[i + 3];
    }
    c->out[ith % 64] = a ^ b ^ d ^ e;
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

/* Best-of-5 read bandwidth over a buffer much larger than the caches, with
 * the same threads the forward pass uses. */
static double read_bandwidth(mope_pool *pool, size_t bytes) {
    bw_ctx c = {.n = bytes / 8};
    uint64_t *buf = malloc(bytes);
    for (size_t i = 0; i < c.n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    c.buf = buf;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = mope_time_s();
        mope_pool_run(pool, bw_job, &c);
        double gbs = (double)bytes / (mope_time_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

static int die(const mope_error *err) {
    fprintf(stderr, "bench_forward: %s\n", err->msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *type_name = "q8_0", *model_path = NULL;
    int threads = 2, n_tok = 16, n_prefill = 64, batch = 8;
    bool small = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--small")) small = true;
        else if (v && !strcmp(a, "--type")) type_name = v, i++;
        else if (v && !strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (v && !strcmp(a, "--tokens")) n_tok = atoi(v), i++;
        else if (v && !strcmp(a, "--prefill")) n_prefill = atoi(v), i++;
        else if (v && !strcmp(a, "--batch")) batch = atoi(v), i++;
        else if (v && !strcmp(a, "--model")) model_path = v, i++;
        else {
            fprintf(stderr, "usage: %s [--type T] [--threads N] [--tokens N] [--prefill N] [--batch N] [--model PATH] "
                            "[--small]\n", argv[0]);
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
        if (!small) {
            hp.n_vocab = 32000, hp.n_embd = 2048, hp.n_layer = 22, hp.n_head = 32, hp.n_head_kv = 4;
            hp.head_dim = 64, hp.n_rot = 64, hp.n_ff = 5632, hp.n_ctx_train = 2048;
        } else {
            hp.n_vocab = 4096, hp.n_embd = 512, hp.n_layer = 4, hp.n_head = 8, hp.n_head_kv = 2;
            hp.head_dim = 64, hp.n_rot = 64, hp.n_ff = 1536;
        }
        snprintf(path, sizeof path, "/tmp/mope_bench_%s_%s.gguf", small ? "small" : "1b1", type_name);
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
    double bw = read_bandwidth(pool, (size_t)1 << 30);
    printf("model %s: %.0f MB of weights read per pass, isa %s, %d threads\n", model_path, wbytes / 1e6,
           mope_isa_name(mope_quant_isa()), threads);
    printf("read bandwidth (baseline, same process): %.2f GB/s\n", bw);

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
    for (int i = 0; i < n_tok; i++) {
        mope_row r = {0, (int32_t)(3 + i), n_prefill + i, -1, true};
        double t1 = mope_time_s();
        if (mope_model_forward(m, kv, &r, 1, logits, pool, &err)) return die(&err);
        double dt = mope_time_s() - t1;
        total += dt;
        if (dt < best) best = dt;
        t1 = mope_time_s();
        mope_pool_run(pool, raw_job, &rc);
        raw_total += mope_time_s() - t1;
    }
    double mean = total / n_tok, raw_mean = raw_total / n_tok;
    printf("decode: %.2f ms/token mean, %.2f best; %.1f tokens/s; %.2f GB/s = %.0f%% of baseline (best step %.0f%%)\n",
           mean * 1e3, best * 1e3, 1 / mean, wbytes / mean / 1e9, 100 * wbytes / mean / 1e9 / bw,
           100 * wbytes / best / 1e9 / bw);
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
    printf("batched decode, %d sequences: %.2f ms/step, %.1f tokens/s (%.2fx single-row decode)\n", batch, tb * 1e3,
           batch / tb, batch / tb * mean);
    free(rows);
    free(logits);
    mope_kv_free(kv);
    mope_pool_free(pool);
    mope_model_free(m);
    return 0;
}
