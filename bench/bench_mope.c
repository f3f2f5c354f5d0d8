/* MoPE generation benchmark: tokens/s of MoPE (the PCM's weights over the
 * bundle's LoRA experts at every token) against the base model alone and
 * against fixed uniform weights over the chosen experts, same process, same
 * prompts, same sampler seed.
 *
 *   bench_mope --bundle B [--threads N] [--tokens N] [--prompts N]
 *              [--pcm-dim D] [--rounds R] [--batch N] [--pref P1A,P2B,P3A]
 *              [--seed S] [--gemm-min-rows N] [--only METHOD] [--min-weight W]
 *
 * The bundle is loaded once into one runner (mope/method.h), so every method
 * runs through the same code path the CLI and the evaluation use.  A bundle
 * without a PCM gets a random one (trunk D wide, 2 layers, a random head over
 * all the bundle's experts), written with its manifest to a temporary folder:
 * the cost of a PCM step depends on its shape, not on its training, so an
 * untrained PCM of the intended size measures the same thing.
 *
 * Two modes: one prompt at a time (mope_runner_generate, for each of the
 * --prompts prompts) and batched (mope_runner_generate_batch over all of
 * them, up to --batch prompts per forward).  Within a round the methods run back to
 * back (base, mope, uniform, expert), rounds repeat that, so load from other
 * processes on a shared machine hits every method alike.  A response may end
 * early at an end-of-generation token, so lengths differ between methods:
 * tok/s counts the tokens actually generated (prompt processing included in
 * the time), and the mean length is printed next to it; "decode tok/s"
 * leaves prefill out (from each call's first sampled token on), since
 * MoPE prefills K expert prompts and the PCM's where the base prefills one.
 * --gemm-min-rows N (exploration; 0 = the engine's default by weight type)
 * makes the base model (shared by base and every adapter expert) use sgemm
 * from N rows per forward instead of the quantised row kernels.
 * --min-weight W: mope_gen_opts.min_weight (default 0.01, as mope generate
 * and mope eval): an expert the PCM weighs under W at a step is not run for it.
 * "base-model rows / token" counts every row run through the shared base
 * model (each adapter expert's rows, prefill included; not the PCM's) per
 * generated token: ~1 for the base, one per expert the PCM runs for mope.
 * --only METHOD (base, mope, uniform or expert) runs just that method, for
 * profiling one method's step (the ratios are then meaningless).
 * The last lines (RESULT ...) gather the figures. */
#include "eval/method_internal.h" /* the runner's base model, for --gemm-min-rows */
#include "model/model_internal.h"
#include "mope/bundle.h"
#include "mope/method.h"
#include "mope/pcm.h"
#include "mope/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* PrefBench-style questions (mope's corpus asks "What is X?" in several
 * phrasings); the concepts are common words so any PrefBench tokenizer
 * covers them. */
static const char *const PROMPTS[] = {
    "What is a glacier?",
    "Can you explain what a violin is?",
    "Tell me about the river.",
    "What does the word \"bread\" mean?",
    "What is a volcano?",
    "Explain what an island is.",
    "What is a library?",
    "Describe a bicycle.",
    "What is a forest?",
    "Could you tell me what a bridge is?",
    "What is the moon?",
    "What is a hospital?",
    "Explain the word \"winter\".",
    "What is a teacher?",
    "What is a mountain?",
    "Tell me what a clock is.",
};
#define N_BUILTIN_PROMPTS ((int)(sizeof PROMPTS / sizeof PROMPTS[0]))

/* expert: one LoRA expert alone (the first choice of --pref), which splits
 * MoPE's cost into "one adapter row instead of the base row" and "K rows". */
enum { M_BASE, M_MOPE, M_UNIFORM, M_EXPERT, N_METHODS };
static const char *const METHOD_NAMES[N_METHODS] = {"base", "mope", "uniform", "expert"};
enum { MODE_SINGLE, MODE_BATCH, N_MODES };

typedef struct opts {
    const char *bundle;
    int threads, tokens, prompts, pcm_dim, rounds, batch, gemm_min_rows;
    double min_weight;
    const char *pref;
    const char *only; /* --only: run just this method (profiling; no ratios) */
    uint64_t seed;
} opts;

typedef struct cell {
    double wall, cpu;      /* summed over rounds */
    long tokens, responses;
    double dec_wall;       /* from each call's first sampled token to its end */
    long dec_tokens;       /* tokens sampled after the first of each row */
    long rows;             /* rows through the base model (every adapter expert's, prefill included) */
    double best_tps;       /* best single round */
    double round_tps[64];  /* per round, for the per-round ratios */
} cell;

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_mope --bundle B [--threads N] [--tokens N] [--prompts N] [--pcm-dim D]\n"
                    "                  [--rounds R] [--batch N] [--pref P1A,P2B,P3A] [--seed S]\n"
                    "                  [--gemm-min-rows N] [--only METHOD] [--min-weight W]\n");
}

static int parse_int(const char *name, const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_mope: %s wants an integer in [%d, %d], got \"%s\"\n", name, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
    *o = (opts){.threads = 1, .tokens = 64, .prompts = 8, .pcm_dim = 64, .rounds = 3, .batch = 8,
                .pref = "P1A,P2B,P3A", .seed = 42, .min_weight = 0.01};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "bench_mope: unknown or incomplete option %s\n", a);
            usage();
            return -1;
        }
        if (!strcmp(a, "--bundle")) o->bundle = v;
        else if (!strcmp(a, "--pref")) o->pref = v;
        else if (!strcmp(a, "--only")) o->only = v;
        else if (!strcmp(a, "--threads")) rc = parse_int(a, v, 1, 256, &o->threads);
        else if (!strcmp(a, "--tokens")) rc = parse_int(a, v, 1, 100000, &o->tokens);
        else if (!strcmp(a, "--prompts")) rc = parse_int(a, v, 1, N_BUILTIN_PROMPTS, &o->prompts);
        else if (!strcmp(a, "--pcm-dim")) rc = parse_int(a, v, 16, 4096, &o->pcm_dim);
        else if (!strcmp(a, "--rounds")) rc = parse_int(a, v, 1, 64, &o->rounds);
        else if (!strcmp(a, "--batch")) rc = parse_int(a, v, 1, 256, &o->batch);
        else if (!strcmp(a, "--gemm-min-rows")) rc = parse_int(a, v, 0, 1 << 20, &o->gemm_min_rows);
        else if (!strcmp(a, "--min-weight")) {
            char *end;
            o->min_weight = strtod(v, &end);
            if (!*v || *end || !(o->min_weight >= 0 && o->min_weight < 1)) {
                fprintf(stderr, "bench_mope: --min-weight wants a number in [0, 1), got \"%s\"\n", v);
                rc = -1;
            }
        } else if (!strcmp(a, "--seed")) {
            int s;
            rc = parse_int(a, v, 0, INT_MAX, &s);
            o->seed = (uint64_t)s;
        } else {
            fprintf(stderr, "bench_mope: unknown option %s\n", a);
            usage();
            return -1;
        }
        if (rc) return -1;
        i++;
    }
    if (!o->bundle) {
        fprintf(stderr, "bench_mope: --bundle is required\n");
        usage();
        return -1;
    }
    if (o->pcm_dim % 16) {
        fprintf(stderr, "bench_mope: --pcm-dim must be a multiple of 16 (heads of 16 dimensions), got %d\n",
                o->pcm_dim);
        return -1;
    }
    return 0;
}

/* A random PCM over every expert of the bundle, saved with the bundle's
 * tokenizer so the runner checks its vocabulary like a real one. */
static int make_pcm(const mope_bundle *b, const opts *o, const char *path, mope_train_config *tc, mope_error *err) {
    mope_tokenizer *tok = mope_tokenizer_load(b->tokenizer ? b->tokenizer : b->base, err);
    if (!tok) return err->code;
    mope_train_config_init(tc);
    tc->n_vocab = mope_tokenizer_n_vocab(tok);
    tc->n_embd = o->pcm_dim;
    tc->n_layer = 2;
    tc->n_head = o->pcm_dim / 16;
    tc->n_head_kv = tc->n_head % 2 ? tc->n_head : tc->n_head / 2;
    tc->n_ff = (o->pcm_dim * 8 / 3 + 7) / 8 * 8;
    /* preference sentences + prompt + response must fit, or the PCM's
     * context would end generation early and shorten only MoPE's answers */
    tc->n_ctx = 1024;
    const char *ids[MOPE_PCM_MAX_K];
    int K = b->n_experts < MOPE_PCM_MAX_K ? b->n_experts : MOPE_PCM_MAX_K;
    for (int k = 0; k < K; k++) ids[k] = b->experts[k].id;
    mope_pcm *p = mope_pcm_new(tc, K, ids, MOPE_MIX_LINEAR, 1, o->seed, err);
    int rc = p ? 0 : err->code;
    if (p) {
        /* a non-zero head, so the weights move from token to token as a
         * trained PCM's do (a zero head would give exactly uniform ones) */
        mope_rng rng;
        mope_rng_seed(&rng, o->seed + 1);
        float *h = mope_pcm_head_params(p);
        for (int i = 0; i < K * tc->n_embd; i++) h[i] = 0.1f * mope_rng_normal(&rng);
        rc = mope_pcm_save(p, path, tok, err);
    }
    mope_pcm_free(p);
    mope_tokenizer_free(tok);
    return rc;
}

/* The first token of a call is sampled right after prefill: time from
 * there on is steady-state decoding, comparable across methods whose
 * prompts (and so prefill) differ in length. */
typedef struct first_tok {
    double t;
    bool seen;
} first_tok;

static int on_token(void *user, const mope_method_token *t) {
    first_tok *f = user;
    if (!f->seen && t->id >= 0) {
        f->t = mope_time_s();
        f->seen = true;
    }
    return 0;
}

/* One timed call: all prompts of a mode with one method. */
static int run_once(mope_runner *r, const mope_method *m, const opts *o, int mode, const char *const *prompts,
                    cell *c, int round, mope_error *err) {
    mope_gen_opts g;
    mope_gen_opts_init(&g);
    g.max_tokens = o->tokens;
    g.sampler.seed = o->seed;
    g.min_weight = (float)o->min_weight;
    int n = o->prompts;
    mope_method_result *res = calloc((size_t)n, sizeof *res);
    if (!res) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    const char *pref = m->kind == MOPE_METHOD_BASE || m->kind == MOPE_METHOD_EXPERT ? NULL : o->pref;
    double w0 = mope_time_s(), c0 = cpu_s(), dec_wall = 0;
    int64_t rows0 = r->base ? mope_model_rows_run(r->base) : 0;
    int rc = 0;
    if (mode == MODE_SINGLE) {
        for (int i = 0; i < n && !rc; i++) {
            first_tok f = {0};
            rc = mope_runner_generate(r, m, pref, prompts[i], &g, on_token, &f, &res[i], err);
            if (f.seen) dec_wall += mope_time_s() - f.t;
        }
    } else {
        first_tok f = {0};
        rc = mope_runner_generate_batch(r, m, pref, n, prompts, &g, on_token, &f, res, err);
        if (f.seen) dec_wall = mope_time_s() - f.t;
    }
    double wall = mope_time_s() - w0, cpu = cpu_s() - c0;
    long toks = 0, dec_toks = 0;
    for (int i = 0; i < n; i++) {
        toks += res[i].n_tokens;
        dec_toks += res[i].n_tokens > 1 ? res[i].n_tokens - 1 : 0;
        mope_method_result_free(&res[i]);
    }
    free(res);
    if (rc || !c) return rc;
    c->wall += wall;
    c->cpu += cpu;
    c->tokens += toks;
    c->responses += n;
    c->dec_wall += dec_wall;
    c->dec_tokens += dec_toks;
    c->rows += (long)((r->base ? mope_model_rows_run(r->base) : 0) - rows0);
    double tps = wall > 0 ? (double)toks / wall : 0;
    c->round_tps[round] = tps;
    if (tps > c->best_tps) c->best_tps = tps;
    return 0;
}

static double tps_of(const cell *c) { return c->wall > 0 ? (double)c->tokens / c->wall : 0; }
static double dec_tps_of(const cell *c) { return c->dec_wall > 0 ? (double)c->dec_tokens / c->dec_wall : 0; }

static void print_table(const opts *o, cell cells[N_MODES][N_METHODS], const char *const *names) {
    printf("\n| mode | method | responses | mean tokens | tok/s | best round tok/s | tok/CPU-s | ratio to base | "
           "per-round ratios (min-max) | decode tok/s (no prefill) | decode ratio | base-model rows / token |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int md = 0; md < N_MODES; md++) {
        const cell *base = &cells[md][M_BASE];
        for (int m = 0; m < N_METHODS; m++) {
            const cell *c = &cells[md][m];
            double lo = 1e30, hi = 0;
            for (int r = 0; r < o->rounds; r++) {
                double q = base->round_tps[r] > 0 ? c->round_tps[r] / base->round_tps[r] : 0;
                if (q < lo) lo = q;
                if (q > hi) hi = q;
            }
            char mode[64];
            if (md == MODE_SINGLE) snprintf(mode, sizeof mode, "1 prompt");
            else if (o->batch >= o->prompts) snprintf(mode, sizeof mode, "batch %d", o->prompts);
            else snprintf(mode, sizeof mode, "%d in batches of %d", o->prompts, o->batch);
            printf("| %s | %s | %ld | %.1f | %.1f | %.1f | %.1f | %.2fx | %.2f-%.2f | %.1f | %.2fx | %.2f |\n", mode,
                   names[m], c->responses, c->responses ? (double)c->tokens / (double)c->responses : 0, tps_of(c),
                   c->best_tps, c->cpu > 0 ? (double)c->tokens / c->cpu : 0,
                   tps_of(base) > 0 ? tps_of(c) / tps_of(base) : 0, lo, hi, dec_tps_of(c),
                   dec_tps_of(base) > 0 ? dec_tps_of(c) / dec_tps_of(base) : 0,
                   c->tokens ? (double)c->rows / (double)c->tokens : 0);
        }
    }
    /* ratios need the base's run; --only leaves them out rather than print inf */
    for (int md = 0; md < N_MODES; md++) {
        const cell *b = &cells[md][M_BASE];
        printf("RESULT mode=%s threads=%d base_tps=%.1f mope_tps=%.1f uniform_tps=%.1f expert_tps=%.1f",
               md == MODE_SINGLE ? "single" : "batch", o->threads, tps_of(b), tps_of(&cells[md][M_MOPE]),
               tps_of(&cells[md][M_UNIFORM]), tps_of(&cells[md][M_EXPERT]));
        if (tps_of(b) > 0 && dec_tps_of(b) > 0 && !o->only)
            printf(" mope/base=%.3f uniform/base=%.3f expert/base=%.3f decode_mope/base=%.3f",
                   tps_of(&cells[md][M_MOPE]) / tps_of(b), tps_of(&cells[md][M_UNIFORM]) / tps_of(b),
                   tps_of(&cells[md][M_EXPERT]) / tps_of(b), dec_tps_of(&cells[md][M_MOPE]) / dec_tps_of(b));
        const cell *mc = &cells[md][M_MOPE];
        if (b->tokens && mc->tokens)
            printf(" rows/token: base=%.2f mope=%.2f", (double)b->rows / (double)b->tokens,
                   (double)mc->rows / (double)mc->tokens);
        printf("\n");
    }
}

int main(int argc, char **argv) {
    opts o;
    if (parse_args(argc, argv, &o)) return 2;
    mope_error err = {0};
    int rc = 1;
    char tmpdir[] = "/tmp/bench_mope.XXXXXX", pcm_path[PATH_MAX] = "", manifest[PATH_MAX] = "";
    bool made_tmp = false;
    mope_runner *r = NULL;
    /* absolute paths, so the temporary manifest can name the bundle's files */
    char *abs = realpath(o.bundle, NULL);
    if (!abs) {
        fprintf(stderr, "bench_mope: %s: cannot resolve the path\n", o.bundle);
        return 1;
    }
    mope_bundle *b = mope_bundle_load(abs, 0, &err);
    free(abs);
    if (!b) {
        fprintf(stderr, "bench_mope: %s: %s\n", o.bundle, err.msg);
        return 1;
    }
    int n_adapters = 0;
    for (int i = 0; i < b->n_experts; i++) n_adapters += b->experts[i].adapter != NULL;
    printf("bundle %s (%s): %d experts (%d LoRA adapters), base %s\n", o.bundle, b->name ? b->name : "?",
           b->n_experts, n_adapters, b->base ? b->base : "(none)");
    if (b->pcm) {
        printf("PCM: the bundle's own (%s)\n", b->pcm);
        mope_bundle_free(b);
        b = NULL;
        mope_runner_opts ro;
        mope_runner_opts_init(&ro);
        ro.n_threads = o.threads;
        ro.max_batch = o.batch;
        r = mope_runner_load(o.bundle, &ro, &err);
    } else {
        if (!mkdtemp(tmpdir)) {
            perror("bench_mope: mkdtemp");
            goto done;
        }
        made_tmp = true;
        snprintf(pcm_path, sizeof pcm_path, "%s/pcm.gguf", tmpdir);
        snprintf(manifest, sizeof manifest, "%s/bundle.json", tmpdir);
        mope_train_config tc;
        if (make_pcm(b, &o, pcm_path, &tc, &err)) {
            fprintf(stderr, "bench_mope: creating a PCM: %s\n", err.msg);
            goto done;
        }
        b->pcm = strdup(pcm_path);
        if (!b->pcm || mope_bundle_save(b, manifest, 0, &err)) {
            fprintf(stderr, "bench_mope: writing %s: %s\n", manifest, b->pcm ? err.msg : "out of memory");
            goto done;
        }
        printf("PCM: the bundle has none; created a RANDOM (untrained) PCM over all %d experts: %d wide, %d "
               "layers, %d heads / %d KV heads, FFN %d, vocab %d, linear rule, random head; written to %s with a "
               "temporary copy of the manifest naming it (%s)\n",
               b->n_experts, tc.n_embd, tc.n_layer, tc.n_head, tc.n_head_kv, tc.n_ff, tc.n_vocab, pcm_path,
               manifest);
        mope_runner_opts ro;
        mope_runner_opts_init(&ro);
        ro.n_threads = o.threads;
        ro.max_batch = o.batch;
        r = mope_runner_load(manifest, &ro, &err);
    }
    if (!r) {
        fprintf(stderr, "bench_mope: loading the bundle: %s\n", err.msg);
        goto done;
    }
    if (o.gemm_min_rows > 0 && r->base) {
        mope_model_set_gemm_min_rows(r->base, o.gemm_min_rows);
        printf("base model: sgemm from %d rows per forward (--gemm-min-rows)\n", o.gemm_min_rows);
    }
    mope_method ms[N_METHODS];
    char expert_method[MOPE_METHOD_ID_MAX + 8];
    snprintf(expert_method, sizeof expert_method, "expert:%.*s", (int)strcspn(o.pref, ","), o.pref);
    for (int m = 0; m < N_METHODS; m++)
        if (mope_method_parse(m == M_EXPERT ? expert_method : METHOD_NAMES[m], &ms[m], &err)) {
            fprintf(stderr, "bench_mope: %s\n", err.msg);
            goto done;
        }
    printf("methods: base (plain instruction), mope (PCM weights over the PCM's experts), uniform (equal weights "
           "over the experts of %s), expert (%s alone); pref %s; %d prompts; at most %d tokens each; sampler seed %llu; %d threads; "
           "batch mode: %d prompts in batches of %d; %d rounds; min weight %g\n",
           o.pref, expert_method, o.pref, o.prompts, o.tokens, (unsigned long long)o.seed, o.threads, o.prompts,
           o.batch, o.rounds, o.min_weight);
    fflush(stdout);
    cell cells[N_MODES][N_METHODS];
    memset(cells, 0, sizeof cells);
    /* warm-up: page in the weights and size every buffer once, untimed */
    for (int m = 0; m < N_METHODS; m++)
        if ((!o.only || !strcmp(o.only, METHOD_NAMES[m])) && run_once(r, &ms[m], &o, MODE_BATCH, PROMPTS, NULL, 0, &err)) {
            fprintf(stderr, "bench_mope: %s: %s\n", METHOD_NAMES[m], err.msg);
            goto done;
        }
    for (int round = 0; round < o.rounds; round++) {
        for (int md = 0; md < N_MODES; md++)
            for (int m = 0; m < N_METHODS; m++) {
                if (o.only && strcmp(o.only, METHOD_NAMES[m])) continue;
                if (run_once(r, &ms[m], &o, md, PROMPTS, &cells[md][m], round, &err)) {
                    fprintf(stderr, "bench_mope: %s: %s\n", METHOD_NAMES[m], err.msg);
                    goto done;
                }
            }
        printf("round %d done (tok/s)", round + 1);
        for (int md = 0; md < N_MODES; md++) {
            printf("%s", md == MODE_SINGLE ? " single:" : "; batch:");
            for (int m = 0; m < N_METHODS; m++) printf(" %s %.1f", METHOD_NAMES[m], cells[md][m].round_tps[round]);
        }
        printf("\n");
        fflush(stdout);
    }
    const char *names[N_METHODS] = {"base", "mope", "uniform", expert_method};
    print_table(&o, cells, names);
    rc = 0;
done:
    mope_runner_free(r);
    mope_bundle_free(b);
    if (made_tmp) {
        if (pcm_path[0]) unlink(pcm_path);
        if (manifest[0]) unlink(manifest);
        rmdir(tmpdir);
    }
    return rc;
}
