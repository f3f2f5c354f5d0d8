/* `mope train pcm` as a library (include/mope/pcm_train.h) on a tiny bundle
 * built here: a random base, three LoRA experts (random token-embedding
 * updates, so their next-token distributions differ), reward models with
 * random value heads for three of the four choices, hand-written references
 * (one prompt has none: the trainer generates and caches it).
 * Checked: preference parsing against hand-listed combinations; a run writes
 * a loadable PCM and a log with every field for every iteration, expert
 * weights that are distributions, a single-choice preference whose utility
 * equals its reward, the REBEL loss falling over the epochs of each batch;
 * a run stopped after a checkpoint and resumed gives the same PCM bytes as
 * an uninterrupted run, and its log the same iterations; bad inputs give
 * clear errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "mope/chat.h"
#include "mope/io.h"
#include "mope/lora.h"
#include "mope/model.h"
#include "mope/pcm.h"
#include "mope/pcm_train.h"
#include "mope/sampler.h"
#include "mope/tokenizer.h"
#include "rl/pcm_train_internal.h"

static char dir[512];

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static void write_text(const char *name, const char *text) {
    char p[700];
    path_of(p, sizeof p, name);
    mope_error err = {0};
    assert_int_equal(mope_io_write_atomic(p, text, strlen(text), &err), 0);
}

static void make_lora(const mope_hparams *hp, const char *name, uint64_t seed) {
    mope_error err = {0};
    mope_lora *l = mope_lora_new("llama", 4.0f, &err);
    assert_non_null(l);
    const int r = 4;
    float *a = malloc(sizeof(float) * r * hp->n_embd), *b = malloc(sizeof(float) * (size_t)hp->n_vocab * r);
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    for (int i = 0; i < r * hp->n_embd; i++) a[i] = 0.5f * mope_rng_normal(&rng);
    for (int i = 0; i < hp->n_vocab * r; i++) b[i] = 0.5f * mope_rng_normal(&rng);
    assert_true(mope_lora_add(l, "token_embd.weight", hp->n_embd, hp->n_vocab, r, a, b, &err) >= 0);
    char p[700];
    path_of(p, sizeof p, name);
    assert_int_equal(mope_lora_save(l, p, &err), 0);
    free(a);
    free(b);
    mope_lora_free(l);
}

static void make_rm(int n_vocab, const char *name, uint64_t seed) {
    mope_error err = {0};
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = n_vocab;
    c.n_embd = 16;
    c.n_layer = 1;
    c.n_head = 2;
    c.n_head_kv = 1;
    c.n_ff = 32;
    c.n_ctx = 256;
    c.value_head = true;
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, seed);
    /* scores that differ visibly between responses */
    const mope_train_tensor *t = mope_train_model_find(m, "mope.value_head.weight");
    float *P = mope_train_model_params(m);
    for (size_t i = 0; i < t->n; i++) P[t->offset + i] *= 100.0f;
    char p[700];
    path_of(p, sizeof p, name);
    assert_int_equal(mope_train_model_save(m, p, NULL, &err), 0);
    mope_train_model_free(m);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s/test_rl_pcm_train_%d", MOPE_BINARY_DIR, (int)getpid());
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    assert_int_equal(system(cmd), 0);
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    hp.n_vocab = 300;
    hp.n_embd = 32;
    hp.n_layer = 1;
    hp.n_head = 2;
    hp.n_head_kv = 1;
    hp.head_dim = 16;
    hp.n_rot = 16;
    hp.n_ff = 64;
    hp.n_ctx_train = 256;
    char p[700];
    path_of(p, sizeof p, "base.gguf");
    mope_error err = {0};
    assert_int_equal(mope_model_write_random(p, &hp, MOPE_TYPE_F32, 3, NULL, &err), 0);
    make_lora(&hp, "P1A.gguf", 11);
    make_lora(&hp, "P1B.gguf", 12);
    make_lora(&hp, "P2A.gguf", 13);
    make_rm(hp.n_vocab, "rm_P1A.gguf", 21);
    make_rm(hp.n_vocab, "rm_P1B.gguf", 22);
    make_rm(hp.n_vocab, "rm_P2A.gguf", 23);
    write_text("bundle.json",
               "{\"format\":\"mope-bundle\",\"version\":1,\"name\":\"t\",\"tokenizer\":\"base.gguf\",\"template\":\"tulu\","
               "\"base\":\"base.gguf\",\"preferences\":{\"dimensions\":["
               "{\"id\":\"P1\",\"choices\":[{\"id\":\"P1A\",\"text\":\"Be simple.\"},{\"id\":\"P1B\",\"text\":\"Be expert.\"}]},"
               "{\"id\":\"P2\",\"choices\":[{\"id\":\"P2A\",\"text\":\"Be brief.\"},{\"id\":\"P2B\",\"text\":\"Be long.\"}]}]},"
               "\"experts\":[{\"id\":\"P1A\",\"choice\":\"P1A\",\"adapter\":\"P1A.gguf\"},"
               "{\"id\":\"P1B\",\"choice\":\"P1B\",\"adapter\":\"P1B.gguf\"},"
               "{\"id\":\"P2A\",\"choice\":\"P2A\",\"adapter\":\"P2A.gguf\"}],"
               "\"reward_models\":[{\"choice\":\"P1A\",\"path\":\"rm_P1A.gguf\"},{\"choice\":\"P1B\",\"path\":\"rm_P1B.gguf\"},"
               "{\"choice\":\"P2A\",\"path\":\"rm_P2A.gguf\"}],"
               "\"references\":\"refs.jsonl\"}\n");
    write_text("refs.jsonl", "{\"id\":\"a\",\"split\":\"train\",\"prompt\":\"What is a glacier?\",\"response\":\"A glacier is ice that moves.\"}\n"
                             "{\"id\":\"b\",\"split\":\"train\",\"prompt\":\"What is the moon?\",\"response\":\"The moon circles the earth.\"}\n"
                             "{\"id\":\"c\",\"split\":\"test\",\"prompt\":\"What is a cat?\",\"response\":\"A small animal.\"}\n");
    /* prompt "z" has no reference: generated once, then cached */
    write_text("prompts.jsonl", "{\"id\":\"a\",\"prompt\":\"What is a glacier?\"}\n"
                                "{\"id\":\"x\",\"prompt\":\"What is the moon?\"}\n"
                                "{\"id\":\"z\",\"prompt\":\"Why is the sky blue?\"}\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char bundle_path[700], prompts_path[700];

static void base_opts(mope_pcm_train_opts *o, const char *out) {
    static char outp[700];
    path_of(bundle_path, sizeof bundle_path, "bundle.json");
    path_of(prompts_path, sizeof prompts_path, "prompts.jsonl");
    path_of(outp, sizeof outp, out);
    mope_pcm_train_opts_init(o);
    o->bundle = bundle_path;
    o->prompts = prompts_path;
    o->prefs = "P1A,P2A;P1B,P2A;P1A";
    o->trunk.n_embd = 32;
    o->trunk.n_layer = 1;
    o->trunk.n_head = 2;
    o->trunk.n_head_kv = 1;
    o->trunk.n_ff = 64;
    o->trunk.n_ctx = 128;
    o->iterations = 3;
    o->batch = 3;
    o->epochs = 3;
    o->max_tokens = 6;
    o->adamw.lr = 5e-4f;
    o->adamw.min_lr = 5e-4f;
    o->kl_coef = 0.01;
    o->length_penalty = 0.05;
    o->n_threads = 1;
    o->seed = 7;
    o->out = outp;
}

/* The base model's greedy answer (no-repeat-3-gram over the answer's own
 * tokens, as PrefBench decodes its references), straight on the engine. */
static char *engine_greedy(const char *prompt, int max_tokens) {
    mope_error err = {0};
    char p[700];
    path_of(p, sizeof p, "base.gguf");
    mope_model *m = mope_model_load(p, &err);
    mope_tokenizer *tok = mope_tokenizer_load(p, &err);
    assert_non_null(m);
    assert_non_null(tok);
    char *text = mope_chat_format_alloc(MOPE_CHAT_TULU, NULL, prompt, &err);
    int32_t toks[256];
    int n = mope_tokenizer_encode(tok, text, strlen(text), mope_tokenizer_add_bos(tok), true, toks, 200, &err);
    assert_true(n > 0 && n < 200);
    free(text);
    const int np = n, V = mope_model_hparams(m)->n_vocab;
    mope_kv *kv = mope_kv_new(m, 1, 256, &err);
    mope_row rows[256];
    float *logits = malloc(sizeof(float) * (size_t)V);
    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 0;
    sp.no_repeat_ngram = 3;
    mope_sampler *smp = mope_sampler_new(&sp, &err);
    int fed = 0;
    for (;;) {
        int nr = 0;
        for (int t = fed; t < n; t++)
            rows[nr++] = (mope_row){.seq = 0, .token = toks[t], .pos = t, .adapter = -1, .want_logits = t == n - 1};
        assert_int_equal(mope_model_forward(m, kv, rows, nr, logits, NULL, &err), 0);
        fed = n;
        int32_t y = mope_sampler_sample(smp, logits, V, toks + np, n - np, &err);
        assert_true(y >= 0);
        if (mope_tokenizer_is_eog(tok, y) || y == mope_tokenizer_find(tok, "<|user|>", 8) ||
            y == mope_tokenizer_find(tok, "<|assistant|>", 13))
            break;
        toks[n++] = y;
        if (n - np == max_tokens) break;
    }
    char *out = mope_tokenizer_decode_alloc(tok, toks + np, n - np, MOPE_DECODE_STRIP_SPACE, NULL, &err);
    mope_sampler_free(smp);
    free(logits);
    mope_kv_free(kv);
    mope_tokenizer_free(tok);
    mope_model_free(m);
    return out;
}

static void test_parse_prefs(void **state) {
    (void)state;
    mope_error err = {0};
    char p[700];
    path_of(p, sizeof p, "bundle.json");
    mope_bundle *b = mope_bundle_load(p, 0, &err);
    assert_non_null(b);
    int *c = NULL, n = 0;
    assert_int_equal(mope_pcm_train_parse_prefs(b, NULL, &c, &n, &err), 0);
    assert_int_equal(n, 4);
    /* choice indices: P1A 0, P1B 1, P2A 2, P2B 3; first dimension slowest */
    const int want[8] = {0, 2, 0, 3, 1, 2, 1, 3};
    assert_memory_equal(c, want, sizeof want);
    char *name = mope_pcm_train_pref_name(b, c + 2, &err), *text = mope_pcm_train_pref_text(b, c + 2, &err);
    assert_string_equal(name, "P1A+P2B");
    assert_string_equal(text, "Be simple. Be long.");
    free(name);
    free(text);
    free(c);
    assert_int_equal(mope_pcm_train_parse_prefs(b, " P2B , P1B ; P1A", &c, &n, &err), 0);
    assert_int_equal(n, 2);
    const int want2[4] = {1, 3, 0, -1};
    assert_memory_equal(c, want2, sizeof want2);
    free(c);
    assert_int_equal(mope_pcm_train_parse_prefs(b, "P1A,P9Z", &c, &n, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "P9Z"));
    assert_int_equal(mope_pcm_train_parse_prefs(b, "P1A,P1B", &c, &n, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "P1"));
    assert_int_equal(mope_pcm_train_parse_prefs(b, "P1A;P2A;P1A", &c, &n, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "repeats"));
    assert_int_equal(mope_pcm_train_parse_prefs(b, "P1A;;P2A", &c, &n, &err), MOPE_EINVAL);
    mope_bundle_free(b);
}

typedef struct prog {
    int calls, stop_after;
    double loss_before[16], loss_after[16];
} prog;

static int on_progress(void *user, const mope_pcm_train_progress *p) {
    prog *g = user;
    assert_true(p->iteration >= 1 && p->iteration <= 16);
    g->loss_before[p->iteration - 1] = p->loss_before;
    g->loss_after[p->iteration - 1] = p->loss_after;
    assert_non_null(p->log_line);
    g->calls++;
    return g->stop_after > 0 && p->iteration == g->stop_after;
}

static char *read_all(const char *path, size_t *n) {
    void *d = NULL;
    mope_error err = {0};
    assert_int_equal(mope_io_read_file(path, &d, n, &err), 0);
    return d;
}

static void test_train_and_log(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pcm_train_opts o;
    base_opts(&o, "pcm1.gguf");
    char log[700], cache[700];
    path_of(log, sizeof log, "log1.jsonl");
    path_of(cache, sizeof cache, "pcm1.gguf.refs.jsonl");
    o.log = log;
    prog g = {0};
    o.progress = on_progress;
    o.progress_user = &g;
    mope_pcm_train_result res;
    int rc = mope_pcm_train_run(&o, &res, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(res.iterations_done, 3);
    assert_int_equal(g.calls, 3);
    assert_int_equal(res.n_prompts, 3);
    assert_int_equal(res.n_prefs, 3);
    assert_int_equal(res.n_refs_generated, 1);
    /* the generated reference is the base's greedy answer */
    {
        size_t cn;
        char *ct = read_all(cache, &cn);
        cJSON *j = cJSON_Parse(ct);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "z");
        char *want = engine_greedy("Why is the sky blue?", o.max_tokens);
        assert_string_equal(cJSON_GetObjectItem(j, "response")->valuestring, want);
        free(want);
        cJSON_Delete(j);
        free(ct);
    }
    /* the REBEL loss falls over the epochs of every batch */
    int moved = 0;
    for (int i = 0; i < 3; i++) {
        printf("iteration %d: loss %.6g -> %.6g\n", i + 1, g.loss_before[i], g.loss_after[i]);
        if (g.loss_before[i] > 1e-9) {
            assert_true(g.loss_after[i] < g.loss_before[i]);
            moved++;
        }
    }
    assert_true(moved >= 2);

    /* the output is a PCM over the bundle's experts */
    mope_pcm *p = mope_pcm_load(o.out, 1, &err);
    assert_non_null(p);
    assert_int_equal(mope_pcm_n_experts(p), 3);
    assert_string_equal(mope_pcm_expert(p, 2), "P2A");
    mope_pcm_free(p);

    /* the log: one object per iteration with every field */
    size_t n;
    char *text = read_all(log, &n);
    static const char *const fields[] = {"iteration", "reward", "utility", "loss_before", "loss_after", "rebel_loss",
                                         "kl", "kl_prior", "grad_norm", "lr", "mean_len", "truncated", "tokens", "rollout_s",
                                         "reward_s", "update_s", "tokens_per_s",
                                         "iter_s", "elapsed_s", "per_preference"};
    int lines = 0;
    for (char *s = strtok(text, "\n"); s; s = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(s);
        assert_non_null(j);
        lines++;
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
            assert_non_null(cJSON_GetObjectItemCaseSensitive(j, fields[f]));
        assert_int_equal(cJSON_GetObjectItem(j, "iteration")->valueint, lines);
        double u = cJSON_GetObjectItem(j, "utility")->valuedouble;
        assert_true(u > 0 && u < 1);
        assert_true(cJSON_GetObjectItem(j, "kl")->valuedouble >= 0);
        assert_true(cJSON_GetObjectItem(j, "kl_prior")->valuedouble >= 0);
        /* batch 3 over 3 preferences: each combination once, two rollouts */
        const cJSON *per = cJSON_GetObjectItem(j, "per_preference");
        assert_int_equal(cJSON_GetArraySize(per), 3);
        const cJSON *q;
        cJSON_ArrayForEach(q, per) {
            assert_int_equal(cJSON_GetObjectItem(q, "n")->valueint, 2);
            const cJSON *w = cJSON_GetObjectItem(q, "weights"), *e;
            double sum = 0;
            assert_int_equal(cJSON_GetArraySize(w), 3);
            cJSON_ArrayForEach(e, w) {
                assert_true(e->valuedouble > 0 && e->valuedouble < 1);
                sum += e->valuedouble;
            }
            assert_true(fabs(sum - 1) < 1e-5);
        }
        /* one choice: the utility is that choice's reward */
        const cJSON *single = cJSON_GetObjectItem(per, "P1A");
        assert_non_null(single);
        assert_true(fabs(cJSON_GetObjectItem(single, "utility")->valuedouble -
                         cJSON_GetObjectItem(single, "reward")->valuedouble) < 1e-12);
        assert_non_null(cJSON_GetObjectItem(per, "P1B+P2A"));
        cJSON_Delete(j);
    }
    free(text);
    assert_int_equal(lines, 3);

    /* a second run reads the cached reference instead of generating it */
    o.iterations = 1;
    o.log = NULL;
    o.progress = NULL;
    assert_int_equal(mope_pcm_train_run(&o, &res, &err), 0);
    assert_int_equal(res.n_refs_generated, 0);
    assert_int_equal(res.n_refs_cached, 1);
    /* ... or skips the prompt when told to */
    o.skip_missing_refs = true;
    assert_int_equal(mope_pcm_train_run(&o, &res, &err), 0);
    assert_int_equal(res.n_skipped, 1);
    assert_int_equal(res.n_prompts, 2);
    /* exploration on every item: the log counts the steered rollouts */
    o.skip_missing_refs = false;
    o.explore = 1.0;
    o.log = log;
    assert_int_equal(mope_pcm_train_run(&o, &res, &err), 0);
    text = read_all(log, &n);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "explored")->valueint, o.batch);
    assert_true(isfinite(cJSON_GetObjectItem(j, "explore_gain")->valuedouble));
    cJSON_Delete(j);
    free(text);
}

/* The PCM at `path` gives, at the first response position of "What is a
 * glacier?" under the three test preferences (P1A+P2A, P1B+P2A, P1A), the
 * weights want[f] within 0.2, with >= 0.85 on the experts want names. */
static void check_first_weights(const char *path, const float want[3][3]) {
    mope_error err = {0};
    mope_pcm *p = mope_pcm_load(path, 1, &err);
    assert_non_null(p);
    char tp[700];
    path_of(tp, sizeof tp, "base.gguf");
    mope_tokenizer *tok = mope_tokenizer_load(tp, &err);
    assert_non_null(tok);
    static const char *const prefs[3] = {"Be simple. Be brief.", "Be expert. Be brief.", "Be simple."};
    for (int f = 0; f < 3; f++) {
        int32_t *t = NULL;
        int n = mope_pcm_prompt_tokens(tok, "What is a glacier?", prefs[f], &t, &err);
        assert_true(n > 0);
        float *w = malloc(sizeof(float) * 3 * (size_t)n);
        assert_int_equal(mope_pcm_forward(p, t, 1, n, w, &err), 0);
        const float *wl = w + (size_t)(n - 1) * 3;
        printf("%s: %.3f %.3f %.3f (target %.2f %.2f %.2f)\n", prefs[f], wl[0], wl[1], wl[2], want[f][0], want[f][1],
               want[f][2]);
        double on = 0;
        for (int k = 0; k < 3; k++) on += want[f][k] > 0 ? wl[k] : 0;
        assert_true(on > 0.85);
        for (int k = 0; k < 3; k++)
            if (want[f][k] > 0) assert_true(fabs(wl[k] - want[f][k]) < 0.2);
        free(w);
        free(t);
    }
    mope_tokenizer_free(tok);
    mope_pcm_free(p);
}

/* Options of the warm-start tests: one iteration after `steps` supervised
 * updates, REBEL barely moving the PCM (the weights checked are the warm
 * start's), the log at logp. */
static void warm_opts(mope_pcm_train_opts *o, const char *out, char *logp, size_t cap, const char *log, int64_t steps) {
    base_opts(o, out);
    path_of(logp, cap, log);
    o->log = logp;
    o->iterations = 1;
    o->warm_steps = steps;
    o->warm_lr = 1e-2f;
    o->adamw.lr = 1e-6f;
    o->adamw.min_lr = 1e-6f;
}

/* Runs 2 iterations stopped after the first (checkpoint), then resumed. */
static void run_stopped_then_resumed(mope_pcm_train_opts *o, mope_pcm_train_result *res) {
    mope_error err = {0};
    o->iterations = 2;
    o->stop_at = 1;
    o->checkpoint_every = 1;
    assert_int_equal(mope_pcm_train_run(o, res, &err), 0);
    assert_true(res->stopped);
    o->stop_at = 0;
    o->resume = true;
    assert_int_equal(mope_pcm_train_run(o, res, &err), 0);
    assert_true(res->resumed);
}

/* Warm start: the targets are known by hand (experts P1A, P1B, P2A):
 * "P1A,P2A" -> (1/2, 0, 1/2), "P1B,P2A" -> (0, 1/2, 1/2), "P1A" -> (1, 0, 0).
 * After the supervised updates the PCM must put most of its weight on them
 * at the first response position of a prompt it was trained on, and the
 * KL to the target must have fallen; the log keeps the summary line and a
 * resumed run neither repeats the warm start nor drops that line. */
static void test_warm_start(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pcm_train_opts o;
    char logp[700];
    warm_opts(&o, "pcm_warm.gguf", logp, sizeof logp, "log_warm.jsonl", 150);
    mope_pcm_train_result res;
    int rc = mope_pcm_train_run(&o, &res, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    printf("warm start: KL %.4f -> %.4f, mass %.3f\n", res.warm_loss_first, res.warm_loss_last, res.warm_mass);
    /* a zero head starts at equal weights: KL(q || 1/3) = log 3 - H(q) */
    const double kl0_pair = log(3.0) - log(2.0), kl0_one = log(3.0);
    assert_true(res.warm_loss_first > kl0_pair - 1e-3 && res.warm_loss_first < kl0_one + 1e-3);
    assert_true(res.warm_loss_last < 0.2 * res.warm_loss_first);
    assert_true(res.warm_mass > 0.9);

    static const float want[3][3] = {{0.5f, 0, 0.5f}, {0, 0.5f, 0.5f}, {1, 0, 0}};
    check_first_weights(o.out, want);

    size_t n;
    char *text = read_all(logp, &n);
    static const char head[] = "{\"warm_start\":{\"steps\":150,";
    assert_true(strncmp(text, head, sizeof head - 1) == 0);
    free(text);
    /* resume from a checkpoint after iteration 1 of 2: no second warm start,
     * and the log keeps its first line */
    run_stopped_then_resumed(&o, &res);
    assert_true(isnan(res.warm_loss_first));
    text = read_all(logp, &n);
    assert_true(strncmp(text, head, sizeof head - 1) == 0);
    assert_non_null(strstr(text, "\"iteration\":2"));
    free(text);
}

/* --warm-best: the log's first line holds each named expert's measured
 * utility; the target puts the share on the argmax and spreads the rest
 * (a single named expert keeps 1); the warm start then follows that target;
 * the measurement is deterministic (a second run writes the same line). */
static char *first_line(const char *path) {
    size_t n;
    char *t = read_all(path, &n);
    t[strcspn(t, "\n")] = 0;
    return t;
}

static void test_warm_best(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pcm_train_opts o;
    char logp[700];
    /* 150 updates sat on a plateau (the marginal weights) for share 0.8 */
    warm_opts(&o, "pcm_best.gguf", logp, sizeof logp, "log_best.jsonl", 300);
    o.warm_best = 0.8;
    o.warm_best_prompts = 4;
    mope_pcm_train_result res;
    int rc = mope_pcm_train_run(&o, &res, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    printf("warm start toward the measured targets: KL %.4f -> %.4f\n", res.warm_loss_first, res.warm_loss_last);
    assert_true(res.warm_loss_last < 0.2 * res.warm_loss_first);
    char *line = first_line(logp);
    cJSON *j = cJSON_Parse(line);
    assert_non_null(j);
    const cJSON *wt = cJSON_GetObjectItem(j, "warm_target");
    assert_non_null(wt);
    assert_int_equal(cJSON_GetObjectItem(wt, "prompts")->valueint, 4);
    static const char *const names[3] = {"P1A+P2A", "P1B+P2A", "P1A"};
    static const char *const ids[3] = {"P1A", "P1B", "P2A"};
    float want[3][3];
    for (int f = 0; f < 3; f++) {
        const cJSON *pp = cJSON_GetObjectItem(cJSON_GetObjectItem(wt, "per_preference"), names[f]);
        assert_non_null(pp);
        const cJSON *u = cJSON_GetObjectItem(pp, "utility"), *t = cJSON_GetObjectItem(pp, "target");
        int named = f == 2 ? 1 : 2, best = -1;
        double bu = -1, sum = 0;
        assert_int_equal(cJSON_GetArraySize(u), named);
        for (int k = 0; k < 3; k++) {
            const cJSON *x = cJSON_GetObjectItem(u, ids[k]);
            if (!x) continue;
            assert_true(x->valuedouble > 0 && x->valuedouble < 1);
            if (x->valuedouble > bu) bu = x->valuedouble, best = k;
        }
        for (int k = 0; k < 3; k++) {
            bool is_named = cJSON_GetObjectItem(u, ids[k]) != NULL;
            want[f][k] = !is_named ? 0.0f : named == 1 ? 1.0f : k == best ? 0.8f : 0.2f;
            double q = cJSON_GetObjectItem(t, ids[k])->valuedouble;
            assert_true(fabs(q - want[f][k]) < 1e-6);
            sum += q;
        }
        assert_true(fabs(sum - 1) < 1e-6);
    }
    cJSON_Delete(j);
    /* the warm start followed that target */
    check_first_weights(o.out, (const float(*)[3])want);
    /* deterministic */
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), 0);
    char *again = first_line(logp);
    assert_string_equal(line, again);
    free(again);
    /* resumed: measured again (the prior needs it), the log keeps one warm_target line first */
    run_stopped_then_resumed(&o, &res);
    again = first_line(logp);
    assert_string_equal(line, again);
    free(again);
    size_t n;
    char *text = read_all(logp, &n);
    int count = 0;
    for (const char *q = text; (q = strstr(q, "warm_target")) != NULL; q++) count++;
    assert_int_equal(count, 1);
    assert_non_null(strstr(text, "\"iteration\":2"));
    free(text);
    free(line);
    o.resume = false;
    /* out of range */
    o.warm_best = 1.5;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "warm best"));
}

static void test_resume_exact(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pcm_train_opts o;
    char logA[700], logB[700], ck[700];
    /* uninterrupted */
    base_opts(&o, "full.gguf");
    o.iterations = 4;
    path_of(logA, sizeof logA, "logA.jsonl");
    o.log = logA;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), 0);
    char full[700];
    snprintf(full, sizeof full, "%s", o.out);
    /* interrupted after iteration 3, checkpoint every 2, resumed */
    base_opts(&o, "resumed.gguf");
    o.iterations = 4;
    o.checkpoint_every = 2;
    path_of(ck, sizeof ck, "resumed.ckpt");
    path_of(logB, sizeof logB, "logB.jsonl");
    o.checkpoint = ck;
    o.log = logB;
    prog g = {.stop_after = 3};
    o.progress = on_progress;
    o.progress_user = &g;
    mope_pcm_train_result res;
    assert_int_equal(mope_pcm_train_run(&o, &res, &err), 0);
    assert_true(res.stopped);
    assert_int_equal(access(o.out, F_OK), -1); /* a stopped run writes no output */
    o.resume = true;
    g.stop_after = 0;
    int rc = mope_pcm_train_run(&o, &res, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_true(res.resumed);
    assert_int_equal(res.start_iteration, 2);
    assert_int_equal(res.iterations_done, 4);
    size_t na, nb;
    char *a = read_all(full, &na), *b = read_all(o.out, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    /* the log holds iterations 1..4 once each, with the same losses */
    char *la = read_all(logA, &na), *lb = read_all(logB, &nb);
    int it = 0;
    char *sa = NULL, *sb = NULL;
    char *x = strtok_r(la, "\n", &sa), *y = strtok_r(lb, "\n", &sb);
    for (; x && y; x = strtok_r(NULL, "\n", &sa), y = strtok_r(NULL, "\n", &sb)) {
        cJSON *ja = cJSON_Parse(x), *jb = cJSON_Parse(y);
        it++;
        assert_int_equal(cJSON_GetObjectItem(jb, "iteration")->valueint, it);
        assert_true(cJSON_GetObjectItem(ja, "loss_after")->valuedouble ==
                    cJSON_GetObjectItem(jb, "loss_after")->valuedouble);
        assert_true(cJSON_GetObjectItem(ja, "utility")->valuedouble == cJSON_GetObjectItem(jb, "utility")->valuedouble);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
    }
    assert_null(x);
    assert_null(y);
    assert_int_equal(it, 4);
    free(la);
    free(lb);
    /* a run in slices (stop_at writes the checkpoint) ends the same too */
    base_opts(&o, "sliced.gguf");
    o.iterations = 4;
    o.stop_at = 1;
    path_of(ck, sizeof ck, "sliced.ckpt");
    o.checkpoint = ck;
    assert_int_equal(mope_pcm_train_run(&o, &res, &err), 0);
    assert_true(res.stopped);
    assert_int_equal(res.iterations_done, 1);
    assert_int_equal(access(ck, F_OK), 0);
    assert_int_equal(access(o.out, F_OK), -1);
    o.stop_at = 0;
    o.resume = true;
    assert_int_equal(mope_pcm_train_run(&o, &res, &err), 0);
    assert_int_equal(res.start_iteration, 1);
    a = read_all(full, &na);
    b = read_all(o.out, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    /* resuming with other options is refused */
    o.seed = 8;
    assert_int_equal(mope_pcm_train_run(&o, &res, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "seed"));
}

/* --pref-paraphrases: the item texts are exactly the compositions of each
 * choice's own sentence or one of its paraphrases, the own sentence about
 * half of the time and each paraphrase equally often (400 draws: a wrong
 * probability, e.g. 1/3 or 2/3, is ~7 standard deviations off); without a
 * file the text is the combination's and the rng is not touched; bad files
 * are refused by name; a run trains with them. */
static void test_paraphrases(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pcm_train_opts o;
    base_opts(&o, "para.gguf");
    char pp[700];
    path_of(pp, sizeof pp, "para.json");
    write_text("para.json", "{\"P1A\": [\"Be very simple.\", \"Kid words.\"], \"P2A\": [\"Short.\"]}");

    pt_ctx c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    c.b = mope_bundle_load(bundle_path, 0, &err);
    assert_non_null(c.b);
    c.n_dim = c.b->n_dimensions;
    assert_int_equal(mope_pcm_train_parse_prefs(c.b, "P1A,P2A", &c.combo, &c.n_prefs, &err), 0);
    char *canon = mope_pcm_train_pref_text(c.b, c.combo, &err);
    assert_non_null(canon);
    c.pref_text = &canon;
    mope_rng rng, rng0;
    mope_rng_seed(&rng, 3);
    rng0 = rng;
    char *t = pt_item_text(&c, 0, &rng, &err);
    assert_string_equal(t, canon);
    assert_memory_equal(&rng, &rng0, sizeof rng);
    free(t);
    assert_int_equal(pt_paraphrases_load(&c, pp, &err), 0);
    const char *p1a = NULL, *p2a = NULL;
    for (int ch = 0; ch < c.b->n_choices; ch++) {
        if (!strcmp(c.b->choices[ch].id, "P1A")) p1a = c.b->choices[ch].text;
        if (!strcmp(c.b->choices[ch].id, "P2A")) p2a = c.b->choices[ch].text;
    }
    const char *first[3] = {p1a, "Be very simple.", "Kid words."}, *second[2] = {p2a, "Short."};
    int count[3][2] = {{0}};
    for (int i = 0; i < 400; i++) {
        t = pt_item_text(&c, 0, &rng, &err);
        assert_non_null(t);
        int hit = 0;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 2; b++) {
                char want[600];
                snprintf(want, sizeof want, "%s %s", first[a], second[b]);
                if (!strcmp(t, want)) {
                    count[a][b]++;
                    hit++;
                }
            }
        assert_int_equal(hit, 1);
        free(t);
    }
    int own1 = count[0][0] + count[0][1], own2 = count[0][0] + count[1][0] + count[2][0];
    int kid = count[2][0] + count[2][1], simple = count[1][0] + count[1][1];
    printf("paraphrases: own P1A %d / 400, own P2A %d / 400, the two P1A paraphrases %d and %d\n", own1, own2, simple,
           kid);
    assert_true(own1 > 160 && own1 < 240 && own2 > 160 && own2 < 240);
    assert_true(abs(simple - kid) < 70 && simple > 60 && kid > 60);
    pt_paraphrases_free(&c);
    free(canon);
    free(c.combo);
    mope_bundle_free(c.b);

    /* bad files */
    const char *bad[][2] = {{"[1, 2]", "JSON object"},
                            {"{\"P9Z\": [\"x\"]}", "P9Z"},
                            {"{\"P1A\": []}", "P1A"},
                            {"{\"P1A\": [\"ok\", 3]}", "sentence 2"},
                            {"{\"P1A\": [\"a\"], \"P1A\": [\"b\"]}", "once"},
                            {"{\"P1A\": [\"a\"", "JSON object"}};
    o.pref_paraphrases = pp;
    o.iterations = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text("para.json", bad[i][0]);
        assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
        assert_non_null(strstr(err.msg, bad[i][1]));
        assert_non_null(strstr(err.msg, "--pref-paraphrases"));
    }
    char missing[700];
    path_of(missing, sizeof missing, "nowhere.json");
    o.pref_paraphrases = missing;
    assert_int_not_equal(mope_pcm_train_run(&o, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "nowhere.json"));

    /* a run with them */
    write_text("para.json", "{\"P1A\": [\"Be very simple.\", \"Kid words.\"], \"P2A\": [\"Short.\"]}");
    o.pref_paraphrases = pp;
    o.warm_steps = 4;
    mope_pcm_train_result res;
    int rc = mope_pcm_train_run(&o, &res, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(res.iterations_done, 1);
}

/* The geometric rule trains: a new geometric PCM runs an iteration (its
 * rollouts record full distributions) and is saved with its rule. */
static void test_geometric(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pcm_train_opts o;
    base_opts(&o, "geo.gguf");
    o.iterations = 1;
    o.rule = MOPE_MIX_GEOMETRIC;
    mope_pcm_train_result res;
    int rc = mope_pcm_train_run(&o, &res, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(res.iterations_done, 1);
    assert_true(isfinite(res.final_utility) && res.final_utility > 0);
    char gp[700];
    path_of(gp, sizeof gp, "geo.gguf");
    mope_pcm *p = mope_pcm_load(gp, 1, &err);
    assert_non_null(p);
    assert_int_equal(mope_pcm_rule(p), MOPE_MIX_GEOMETRIC);
    mope_pcm_free(p);
}

static void test_bad_inputs(void **state) {
    (void)state;
    mope_error err = {0};
    mope_pcm_train_opts o;
    base_opts(&o, "bad.gguf");
    o.iterations = 1;
    /* every combination: P2B has no reward model */
    o.prefs = NULL;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "reward model"));
    assert_non_null(strstr(err.msg, "P2B"));
    o.prefs = "P1A,P2A;P1B,P7Q";
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "P7Q"));
    o.prefs = "P1A";
    mope_train_config tc = o.trunk;
    tc.n_vocab = 300;
    char gp[700];
    path_of(gp, sizeof gp, "other.gguf");
    o.pcm_in = gp;
    /* a PCM over other experts */
    const char *ids2[3] = {"P1A", "P1B", "XX"};
    mope_pcm *p = mope_pcm_new(&tc, 3, ids2, MOPE_MIX_LINEAR, 1, 1, &err);
    assert_int_equal(mope_pcm_save(p, gp, NULL, &err), 0);
    mope_pcm_free(p);
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "XX"));
    o.pcm_in = NULL;
    double wts[3] = {1, 1, 1};
    o.reward_weights = wts;
    o.n_reward_weights = 3;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "dimensions"));
    o.reward_weights = NULL;
    o.eta = 0;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    o.eta = 1;
    o.explore = 1.5;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "explore"));
    o.explore = 0.5;
    o.explore_head = o.explore_tail = 0;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_EINVAL);
    o.explore = 0;
    /* a PCM context too small for the prompts */
    o.trunk.n_ctx = 16;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_ERANGE);
    assert_non_null(strstr(err.msg, "context"));
    /* ... or a response limit too long for the experts' (base's) context */
    o.trunk.n_ctx = 512;
    o.max_tokens = 250;
    assert_int_equal(mope_pcm_train_run(&o, NULL, &err), MOPE_ERANGE);
    assert_non_null(strstr(err.msg, "expert P1A"));
    o.trunk.n_ctx = 128;
    o.max_tokens = 6;
    char missing[700];
    path_of(missing, sizeof missing, "nowhere.json");
    o.bundle = missing;
    assert_true(mope_pcm_train_run(&o, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "nowhere.json"));
    assert_int_equal(access(o.out, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_prefs),
        cmocka_unit_test(test_train_and_log),
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_warm_start),
        cmocka_unit_test(test_warm_best),
        cmocka_unit_test(test_geometric),
        cmocka_unit_test(test_paraphrases),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
