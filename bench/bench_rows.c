/* What a decode row costs when R rows share one forward pass: the floor
 * under MoPE's speed, measured on a bundle's own base model and adapters.
 *
 *   bench_rows --bundle B [--threads N] [--ctx C] [--steps S] [--rounds R]
 *
 * A MoPE token runs one row per active expert (each row its own sequence
 * and its own LoRA adapter) through the shared base weights, where the base
 * alone runs one row.  Per row count R = 1, 2, 3, 4, 6 (and 1 with an
 * adapter) this times S decode steps of R rows, every sequence first filled
 * to C positions, and prints the step time over the time of one base row
 * measured in the same round ("x 1 row"), and per row.  The base row's
 * multiply-adds are already close to what the core sustains, so R rows
 * cannot cost much less than R times one: "x 1 row" at R = 3 is the ratio a
 * MoPE token with three experts pays before its PCM, mixing and prefill.
 * Rounds alternate the row counts, so machine load hits them alike; the
 * median round is printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mope/bundle.h"
#include "mope/lora.h"
#include "mope/model.h"

enum { MAX_R = 6, N_CASES = 6 };
static const int CASE_ROWS[N_CASES] = {1, 1, 2, 3, 4, 6};
static const bool CASE_LORA[N_CASES] = {false, true, true, true, true, true};

typedef struct opts {
    const char *bundle;
    int threads, ctx, steps, rounds;
} opts;

static int parse_int(const char *name, const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_rows: %s wants an integer in [%d, %d], got \"%s\"\n", name, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
    *o = (opts){.threads = 1, .ctx = 48, .steps = 64, .rounds = 7};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!v || !strcmp(a, "-h") || !strcmp(a, "--help")) {
            fprintf(stderr, "usage: bench_rows --bundle B [--threads N] [--ctx C] [--steps S] [--rounds R]\n");
            return -1;
        }
        if (!strcmp(a, "--bundle")) o->bundle = v;
        else if (!strcmp(a, "--threads")) rc = parse_int(a, v, 1, 256, &o->threads);
        else if (!strcmp(a, "--ctx")) rc = parse_int(a, v, 1, 100000, &o->ctx);
        else if (!strcmp(a, "--steps")) rc = parse_int(a, v, 1, 100000, &o->steps);
        else if (!strcmp(a, "--rounds")) rc = parse_int(a, v, 1, 99, &o->rounds);
        else {
            fprintf(stderr, "bench_rows: unknown option %s\n", a);
            return -1;
        }
        if (rc) return -1;
    }
    if (!o->bundle) {
        fprintf(stderr, "bench_rows: --bundle is required\n");
        return -1;
    }
    return 0;
}

/* Fills sequences 0..R-1 to ctx positions, then times `steps` steps of R
 * rows (row r: sequence r, adapter ids[r] or none). */
static double time_case(mope_model *m, mope_kv *kv, int R, const int *ids, const opts *o, float *logits,
                        mope_pool *pool, mope_error *err) {
    int32_t V = mope_model_hparams(m)->n_vocab;
    mope_row rows[MAX_R * 64];
    for (int r = 0; r < R; r++) {
        mope_kv_clear_seq(kv, r);
        for (int p0 = 0; p0 < o->ctx; p0 += 64) {
            int n = o->ctx - p0 < 64 ? o->ctx - p0 : 64;
            for (int j = 0; j < n; j++)
                rows[j] = (mope_row){.seq = r, .token = (int32_t)((7 * (p0 + j) + 13 * r) % V), .pos = p0 + j,
                                     .adapter = ids ? ids[r] : -1, .want_logits = false};
            if (mope_model_forward(m, kv, rows, n, NULL, pool, err)) return -1;
        }
    }
    double t0 = mope_time_s();
    for (int s = 0; s < o->steps; s++) {
        for (int r = 0; r < R; r++)
            rows[r] = (mope_row){.seq = r, .token = (int32_t)((31 * s + 5 * r) % V), .pos = o->ctx + s,
                                 .adapter = ids ? ids[r] : -1, .want_logits = true};
        if (mope_model_forward(m, kv, rows, R, logits, pool, err)) return -1;
    }
    return (mope_time_s() - t0) / o->steps;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    opts o;
    if (parse_args(argc, argv, &o)) return 2;
    mope_error err = {0};
    int rc = 1;
    mope_bundle *b = mope_bundle_load(o.bundle, 0, &err);
    mope_model *m = NULL;
    mope_kv *kv = NULL;
    mope_pool *pool = NULL;
    float *logits = NULL;
    int ids[MAX_R];
    mope_lora *loras[MAX_R] = {0}; /* the model borrows them while attached */
    int n_ids = 0;
    if (!b) goto done;
    if (!(m = mope_model_load(b->base, &err))) goto done;
    for (int e = 0; e < b->n_experts && n_ids < MAX_R; e++) {
        const char *path = b->experts[e].adapter;
        if (!path) continue;
        if (!(loras[n_ids] = mope_lora_load(path, m, &err))) goto done;
        ids[n_ids] = mope_model_add_adapter(m, loras[n_ids], 1.0f, &err);
        if (ids[n_ids] < 0) goto done;
        n_ids++;
    }
    if (n_ids == 0) {
        mope_error_set(&err, MOPE_EINVAL, "the bundle has no LoRA experts");
        goto done;
    }
    for (int r = n_ids; r < MAX_R; r++) ids[r] = ids[r % n_ids]; /* fewer than 6: reuse */
    const mope_hparams *hp = mope_model_hparams(m);
    if (o.ctx + o.steps > hp->n_ctx_train) {
        mope_error_set(&err, MOPE_ERANGE, "--ctx + --steps = %d exceeds the model's context %d", o.ctx + o.steps,
                       hp->n_ctx_train);
        goto done;
    }
    if (o.threads > 1 && !(pool = mope_pool_create(o.threads, &err))) goto done;
    if (!(kv = mope_kv_new(m, MAX_R, o.ctx + o.steps, &err))) goto done;
    if (!(logits = malloc(sizeof(float) * (size_t)MAX_R * hp->n_vocab))) {
        mope_error_set(&err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    printf("base %s: %d wide, %d layers, FFN %d, vocab %d; %d adapters; context %d, %d steps per case, %d threads, "
           "%d rounds\n",
           b->base, hp->n_embd, hp->n_layer, hp->n_ff, hp->n_vocab, n_ids, o.ctx, o.steps, o.threads,
           o.rounds);
    double t[N_CASES][99];
    time_case(m, kv, 1, NULL, &o, logits, pool, &err); /* warm-up */
    for (int rd = 0; rd < o.rounds; rd++)
        for (int c = 0; c < N_CASES; c++) {
            t[c][rd] = time_case(m, kv, CASE_ROWS[c], CASE_LORA[c] ? ids : NULL, &o, logits, pool, &err);
            if (t[c][rd] < 0) goto done;
        }
    /* per round: each case over the base row of the same round */
    printf("\n| rows | adapters | step us (median) | x 1 base row (median over rounds) | per row |\n"
           "|---|---|---|---|---|\n");
    for (int c = 0; c < N_CASES; c++) {
        double ratio[99], step[99];
        for (int rd = 0; rd < o.rounds; rd++) {
            ratio[rd] = t[c][rd] / t[0][rd];
            step[rd] = t[c][rd];
        }
        qsort(ratio, (size_t)o.rounds, sizeof(double), cmp_d);
        qsort(step, (size_t)o.rounds, sizeof(double), cmp_d);
        double rmed = ratio[o.rounds / 2];
        printf("| %d | %s | %.1f | %.2fx | %.2fx |\n", CASE_ROWS[c], CASE_LORA[c] ? "one each" : "none",
               1e6 * step[o.rounds / 2], rmed, rmed / CASE_ROWS[c]);
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "bench_rows: %s\n", err.msg);
    free(logits);
    mope_kv_free(kv);
    mope_pool_free(pool);
    mope_model_free(m);
    for (int i = 0; i < MAX_R; i++) mope_lora_free(loras[i]);
    mope_bundle_free(b);
    return rc;
}
