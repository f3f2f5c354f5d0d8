/* Training throughput of a ~5M-parameter llama-family model on the CPU.
 *
 *   bench_train [--threads N] [--steps S] [--batch B] [--seq T]
 *
 * Default shape: batch 16 x 256 tokens, vocab 2048, 256 wide, 6 layers,
 * 8 heads / 4 KV heads, FFN 688 (4.87M parameters, tied output).  Prints
 * tokens/s of full optimizer steps (forward + backward + AdamW), the split
 * between forward, backward and update, and -- as the baseline measured in
 * the same process -- the GFLOP/s of one plain cblas_sgemm of the MLP's
 * shape: the ratio says how close training gets to the matmul roofline. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mope/train.h"

static double sgemm_gflops(int M, int N, int K, int reps) {
    float *a = mope_alloc((size_t)M * K, sizeof(float)), *b = mope_alloc((size_t)N * K, sizeof(float));
    float *c = mope_alloc((size_t)M * N, sizeof(float));
    if (!a || !b || !c) return 0;
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    double t0 = mope_time_s();
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    double dt = mope_time_s() - t0;
    mope_free(a);
    mope_free(b);
    mope_free(c);
    return 2.0 * M * N * K * reps / dt * 1e-9;
}

int main(int argc, char **argv) {
    int threads = mope_cpu_count(), steps = 3, B = 16, T = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--steps S] [--batch B] [--seq T]\n", argv[0]);
            return 2;
        }
    }
    if (steps < 1 || B < 1 || T < 2) {
        fprintf(stderr, "steps, batch and seq must be positive (seq >= 2)\n");
        return 2;
    }
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 2048;
    c.n_embd = 256;
    c.n_layer = 6;
    c.n_head = 8;
    c.n_head_kv = 4;
    c.n_ff = 688;
    c.n_ctx = T;
    mope_error err = {0};
    mope_train_model *m = mope_train_model_new(&c, threads, &err);
    if (!m) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    mope_train_model_init_random(m, 1);
    size_t np = mope_train_model_n_params(m);
    mope_adamw_config a;
    mope_adamw_config_init(&a);
    mope_trainer *tr = mope_train_trainer_new(m, &a, 1, &err);
    if (!tr) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    size_t N = (size_t)B * T;
    int32_t *tok = malloc(N * sizeof(int32_t)), *tgt = malloc(N * sizeof(int32_t));
    if (!tok || !tgt) return 1;
    mope_rng r;
    mope_rng_seed(&r, 2);
    for (size_t n = 0; n < N; n++) tok[n] = (int32_t)mope_rng_below(&r, (uint32_t)c.n_vocab);
    for (size_t n = 0; n < N; n++) tgt[n] = n % T == (size_t)T - 1 ? -1 : tok[n + 1];
    mope_train_batch batch = {tok, tgt, NULL, B, T};

    printf("model: %zu parameters (vocab %d, embd %d, layers %d, heads %d/%d, ffn %d); batch %d x %d; %d threads\n",
           np, c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, B, T, threads);
    mope_train_stats st;
    if (mope_train_step(tr, &batch, 1, &st, &err)) { /* warm-up: allocation, page faults */
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    double tf = 0, tb = 0, tu = 0;
    for (int s = 0; s < steps; s++) {
        float loss;
        double t0 = mope_time_s();
        if (mope_train_model_forward(m, tok, tgt, NULL, B, T, &loss, &err)) return 1;
        double t1 = mope_time_s();
        if (mope_train_model_backward(m, 1.0f, &err)) return 1;
        double t2 = mope_time_s();
        if (mope_train_apply(tr, &st, &err)) return 1;
        double t3 = mope_time_s();
        tf += t1 - t0;
        tb += t2 - t1;
        tu += t3 - t2;
        printf("step %d: loss %.4f  %.3f s\n", s + 1, (double)loss, t3 - t0);
    }
    double per = (tf + tb + tu) / steps;
    /* matmul FLOPs: 6 per parameter per token (tied output counted once
     * more for the logits), plus causal attention QK^T and PV: 2 x 2 x
     * T^2/2 x hd x heads per sequence and layer, x3 for forward + backward */
    double hd = (double)c.n_embd / c.n_head;
    double flops = 6.0 * ((double)np + (double)c.n_vocab * c.n_embd) * (double)N +
                   3.0 * 2.0 * (double)T * T * hd * c.n_head * c.n_layer * B;
    double base = sgemm_gflops((int)N, c.n_ff, c.n_embd, 5);
    printf("training: %.0f tokens/s  (%.3f s/step: forward %.3f, backward %.3f, AdamW %.3f)\n", (double)N / per, per,
           tf / steps, tb / steps, tu / steps);
    printf("training: %.1f GFLOP/s of model FLOPs; baseline sgemm %dx%dx%d: %.1f GFLOP/s; ratio %.2f\n",
           flops / per * 1e-9, (int)N, c.n_ff, c.n_embd, base, flops / per * 1e-9 / base);
    mope_train_trainer_free(tr);
    free(tok);
    free(tgt);
    return 0;
}
