/* Training throughput of mope's trainer for any llama shape, in the form
 * bench/train_vs_torch.sh compares with PyTorch (bench/torch_llama.py runs
 * the same architecture, batch, data rule and AdamW settings).
 *
 *   bench_train_cmp [--threads N] [--warmup W] [--steps S] [--batch B]
 *                   [--seq T] [--vocab V] [--embd C] [--layers L]
 *                   [--heads H] [--kv-heads KH] [--ffn F] [--dump FILE]
 *
 * Defaults are bench_train's shape (batch 16 x 256, vocab 2048, 256 wide,
 * 6 layers, 8 / 4 heads, FFN 688).  Each timed step is one full optimizer
 * update, the calls mope_train_step makes (zero_grad, forward, backward,
 * clip + AdamW), each timed; torch_llama.py times the same phases.  The
 * machine is shared, so besides the mean the best step is reported: other
 * processes only ever add time.  The last line is machine-readable:
 *   RESULT params=<n> tokens_per_s=<mean> best_tokens_per_s=<x> tokens_per_cpu_s=<x>
 *          s_per_step=<mean> fwd=<s> bwd=<s> upd=<s>   (the split of the best step)
 *
 * --dump FILE writes the batch and the initial parameters (int32 B, int32 T,
 * int32 tokens[B*T], then every tensor's floats in the model's tensor order,
 * without the buffer's padding) so that torch_llama.py --load FILE starts
 * from the same point and the per-step losses of both can be compared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mope/train.h"

/* CPU seconds of all threads of the process: unlike wall time, other
 * processes on a shared machine barely change it, though spin-waiting
 * threads count in it. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* An option takes an integer (val, at least min) or, with str set, a string. */
typedef struct {
    const char *flag;
    int *val;
    int min;
    const char **str;
} opt;

static int parse(int argc, char **argv, opt *opts, int n_opts) {
    for (int i = 1; i < argc; i += 2) {
        int k = 0;
        while (k < n_opts && strcmp(argv[i], opts[k].flag)) k++;
        if (k == n_opts || i + 1 >= argc) {
            fprintf(stderr, "bench_train_cmp: unknown or incomplete option '%s'\n", argv[i]);
            return -1;
        }
        if (opts[k].str) {
            *opts[k].str = argv[i + 1];
            continue;
        }
        char *end;
        long v = strtol(argv[i + 1], &end, 10);
        if (*end || end == argv[i + 1] || v < opts[k].min || v > (1L << 24)) {
            fprintf(stderr, "bench_train_cmp: %s needs an integer >= %d, got '%s'\n", argv[i], opts[k].min,
                    argv[i + 1]);
            return -1;
        }
        *opts[k].val = (int)v;
    }
    return 0;
}

static int dump(const char *path, mope_train_model *m, const int32_t *tok, int B, int T) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int32_t hdr[2] = {B, T};
    bool ok = fwrite(hdr, sizeof hdr, 1, f) == 1 && fwrite(tok, sizeof(int32_t), (size_t)B * T, f) == (size_t)B * T;
    const float *p = mope_train_model_params(m);
    for (int i = 0; ok && i < mope_train_model_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_tensor(m, i);
        ok = fwrite(p + t->offset, sizeof(float), t->n, f) == t->n;
    }
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv) {
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 2048;
    c.n_embd = 256;
    c.n_layer = 6;
    c.n_head = 8;
    c.n_head_kv = 4;
    c.n_ff = 688;
    int threads = mope_cpu_count(), warmup = 1, steps = 3, B = 16, T = 256;
    const char *dump_path = NULL;
    opt opts[] = {
        {"--threads", &threads, 1, NULL},       {"--warmup", &warmup, 0, NULL},   {"--steps", &steps, 1, NULL},
        {"--batch", &B, 1, NULL},               {"--seq", &T, 2, NULL},           {"--vocab", &c.n_vocab, 2, NULL},
        {"--embd", &c.n_embd, 2, NULL},         {"--layers", &c.n_layer, 1, NULL}, {"--heads", &c.n_head, 1, NULL},
        {"--kv-heads", &c.n_head_kv, 1, NULL},  {"--ffn", &c.n_ff, 1, NULL},      {"--dump", NULL, 0, &dump_path},
    };
    if (parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]))) {
        fprintf(stderr,
                "usage: %s [--threads N] [--warmup W] [--steps S] [--batch B] [--seq T] [--vocab V] [--embd C]\n"
                "       [--layers L] [--heads H] [--kv-heads KH] [--ffn F] [--dump FILE]\n",
                argv[0]);
        return 2;
    }
    c.n_ctx = T;
    mope_error err = {0};
    mope_train_model *m = mope_train_model_new(&c, threads, &err);
    if (!m) {
        fprintf(stderr, "bench_train_cmp: %s\n", err.msg);
        return 1;
    }
    mope_train_model_init_random(m, 1);
    /* the flat buffer pads tensors to 16 floats; count real parameters so the
     * script can compare with PyTorch's count */
    size_t np = 0;
    for (int i = 0; i < mope_train_model_n_tensors(m); i++) np += mope_train_model_tensor(m, i)->n;
    mope_adamw_config a;
    mope_adamw_config_init(&a);
    mope_trainer *tr = mope_train_trainer_new(m, &a, 1, &err);
    if (!tr) {
        fprintf(stderr, "bench_train_cmp: %s\n", err.msg);
        return 1;
    }
    size_t N = (size_t)B * T;
    int32_t *tok = malloc(N * sizeof(int32_t)), *tgt = malloc(N * sizeof(int32_t));
    if (!tok || !tgt) {
        fprintf(stderr, "bench_train_cmp: out of memory for a %d x %d batch\n", B, T);
        return 1;
    }
    mope_rng r;
    mope_rng_seed(&r, 2);
    for (size_t n = 0; n < N; n++) tok[n] = (int32_t)mope_rng_below(&r, (uint32_t)c.n_vocab);
    /* next-token targets; the last position of each sequence has none */
    for (size_t n = 0; n < N; n++) tgt[n] = n % T == (size_t)T - 1 ? -1 : tok[n + 1];
    mope_train_batch batch = {tok, tgt, NULL, B, T};
    if (dump_path && dump(dump_path, m, tok, B, T)) {
        fprintf(stderr, "bench_train_cmp: cannot write %s\n", dump_path);
        mope_train_trainer_free(tr);
        free(tok);
        free(tgt);
        return 1;
    }

    printf("mope: %zu parameters (vocab %d, embd %d, layers %d, heads %d/%d, ffn %d, tied); batch %d x %d; "
           "%d threads\n",
           np, c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, B, T, mope_train_model_n_threads(m));
    fflush(stdout);
    mope_train_stats st;
    for (int s = 0; s < warmup; s++)
        if (mope_train_step(tr, &batch, 1, &st, &err)) goto fail;

    /* mope_train_step's calls, timed one by one: the timer costs nothing
     * next to a step, and gives the split of every step */
    double sum[3] = {0}, best = 0, best_split[3] = {0}, c0 = cpu_s();
    for (int s = 0; s < steps; s++) {
        float loss;
        double p0 = mope_time_s();
        mope_train_model_zero_grad(m);
        if (mope_train_model_forward(m, tok, tgt, NULL, B, T, &loss, &err)) goto fail;
        double p1 = mope_time_s();
        if (mope_train_model_backward(m, 1.0f, &err)) goto fail;
        double p2 = mope_time_s();
        if (mope_train_apply(tr, &st, &err)) goto fail;
        double p3 = mope_time_s();
        double ph[3] = {p1 - p0, p2 - p1, p3 - p2};
        for (int i = 0; i < 3; i++) sum[i] += ph[i];
        if (s == 0 || p3 - p0 < best) {
            best = p3 - p0;
            memcpy(best_split, ph, sizeof ph);
        }
        printf("mope step %d: loss %.6f  %.3f s (forward %.3f, backward %.3f, clip+AdamW %.3f)\n", s + 1,
               (double)loss, p3 - p0, ph[0], ph[1], ph[2]);
        fflush(stdout);
    }
    double cpu = (cpu_s() - c0) / steps;
    double mean = (sum[0] + sum[1] + sum[2]) / steps;
    printf("mope: %.1f tokens/s mean (%.3f s/step: forward %.3f, backward %.3f, clip+AdamW %.3f); "
           "%.1f tokens/s best step; %.1f tokens per CPU-second\n",
           (double)N / mean, mean, sum[0] / steps, sum[1] / steps, sum[2] / steps, (double)N / best, (double)N / cpu);
    printf("RESULT params=%zu tokens_per_s=%.2f best_tokens_per_s=%.2f tokens_per_cpu_s=%.2f s_per_step=%.4f "
           "fwd=%.4f bwd=%.4f upd=%.4f\n",
           np, (double)N / mean, (double)N / best, (double)N / cpu, mean, best_split[0], best_split[1], best_split[2]);
    mope_train_trainer_free(tr);
    free(tok);
    free(tgt);
    return 0;
fail:
    fprintf(stderr, "bench_train_cmp: %s\n", err.msg);
    mope_train_trainer_free(tr);
    free(tok);
    free(tgt);
    return 1;
}
