/* The trainers of mope/trainer.h and the datasets of mope/dataset.h:
 * DPO and Bradley-Terry losses against hand-computed values, their composed
 * gradients against finite differences, SFT memorising a tiny set, a reward
 * model learning a marker, save/load round trips, exact resume, and bad
 * input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "mope/dataset.h"
#include "mope/io.h"
#include "mope/trainer.h"
#include "train/trainer_internal.h"

/* ---- a byte-level SentencePiece vocabulary: <unk> <s> </s>, 256 bytes,
 * "▁" and a..z (286 tokens) ---- */
static mope_tokenizer *tiny_tok(void) {
    static char bytes[256][8];
    static char letters[26][2];
    const char *pieces[286];
    int32_t types[286];
    pieces[0] = "<unk>", types[0] = MOPE_TOKEN_UNKNOWN;
    pieces[1] = "<s>", types[1] = MOPE_TOKEN_CONTROL;
    pieces[2] = "</s>", types[2] = MOPE_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[3 + b] = bytes[b];
        types[3 + b] = MOPE_TOKEN_BYTE;
    }
    pieces[259] = "\xe2\x96\x81", types[259] = MOPE_TOKEN_NORMAL;
    for (int i = 0; i < 26; i++) {
        letters[i][0] = (char)('a' + i);
        pieces[260 + i] = letters[i];
        types[260 + i] = MOPE_TOKEN_NORMAL;
    }
    mope_tokenizer_params p;
    mope_tokenizer_params_init(&p);
    p.model = "llama";
    p.n_tokens = 286;
    p.tokens = pieces;
    p.types = types;
    p.bos_id = 1;
    p.eos_id = 2;
    p.unk_id = 0;
    mope_error err = {0};
    mope_tokenizer *t = mope_tokenizer_new(&p, &err);
    if (!t) fprintf(stderr, "tokenizer: %s\n", err.msg);
    assert_non_null(t);
    return t;
}

static mope_train_model *tiny_model(bool value_head, uint64_t seed) {
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 286;
    c.n_embd = 32;
    c.n_layer = 1;
    c.n_head = 2;
    c.n_head_kv = 1;
    c.n_ff = 64;
    c.n_ctx = 64;
    c.value_head = value_head;
    mope_error err = {0};
    mope_train_model *m = mope_train_model_new(&c, 1, &err);
    assert_non_null(m);
    mope_train_model_init_random(m, seed);
    return m;
}

static mope_dataset_opts tiny_opts(const mope_tokenizer *t, mope_chat_template chat) {
    mope_dataset_opts o;
    mope_dataset_opts_init(&o);
    o.tok = t;
    o.n_ctx = 64;
    o.chat = chat;
    return o;
}

static char tmpdir[64];
static const char *tmp(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mope_trainer_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- losses by hand ----
 * DPO, beta 0.5, lp_c -3, lp_r -4, ref_c -3.5, ref_r -3.5:
 *   z = 0.5 * ((-3 + 3.5) - (-4 + 3.5)) = 0.5
 *   loss = log(1 + e^-0.5) = 0.474076984
 *   d loss / d lp_c = -beta * sigmoid(-z) = -0.5 * 0.377540669 = -0.188770335
 * Bradley-Terry, r_c 1.2, r_r -0.3: d = 1.5
 *   loss = log(1 + e^-1.5) = 0.201413, d loss / d r_c = -sigmoid(-1.5) = -0.182426
 * Large margins stay finite: loss(-100) = 100, loss(100) = e^-100. */
static void test_losses_by_hand(void **state) {
    (void)state;
    double g;
    assert_float_equal(mope_dpo_loss(0.5, -3, -4, -3.5, -3.5, &g), 0.474076984, 1e-8);
    assert_float_equal(g, -0.188770335, 1e-8);
    /* equal policy and reference: z = 0, loss log 2, gradient -beta/2 */
    assert_float_equal(mope_dpo_loss(0.1, -7, -2, -7, -2, &g), 0.693147181, 1e-8);
    assert_float_equal(g, -0.05, 1e-9);
    assert_float_equal(mope_bt_loss(1.2, -0.3, &g), 0.201413, 1e-6);
    assert_float_equal(g, -0.182426, 1e-6);
    assert_float_equal(mope_bt_loss(-50, 50, &g), 100.0, 1e-9);
    assert_float_equal(g, -1.0, 1e-12);
    assert_float_equal(mope_bt_loss(50, -50, &g), exp(-100.0), 1e-50);
}

/* ---- composed gradients against finite differences ---- */

static double dpo_total(mope_train_model *m, const mope_pref_pair *p, int n, const double *ref, double beta) {
    const mope_seq *rows[8] = {0};
    double lp[8];
    for (int i = 0; i < n; i++) {
        rows[2 * i] = &p[i].chosen;
        rows[2 * i + 1] = &p[i].rejected;
    }
    assert_int_equal(mope_trainer_seq_logp(m, rows, 2 * n, 8, lp, NULL), 0);
    double s = 0;
    for (int i = 0; i < n; i++) s += mope_dpo_loss(beta, lp[2 * i], lp[2 * i + 1], ref[2 * i], ref[2 * i + 1], NULL);
    return s / n;
}

static double bt_total(mope_train_model *m, const mope_pref_pair *p, int n) {
    const mope_seq *rows[8] = {0};
    float sc[8];
    for (int i = 0; i < n; i++) {
        rows[2 * i] = &p[i].chosen;
        rows[2 * i + 1] = &p[i].rejected;
    }
    assert_int_equal(mope_trainer_seq_score(m, rows, 2 * n, 8, sc, NULL), 0);
    double s = 0;
    for (int i = 0; i < n; i++) s += mope_bt_loss(sc[2 * i], sc[2 * i + 1], NULL);
    return s / n;
}

static const char *PREF2 =
    "{\"prompt\":\"ab\",\"chosen\":\"cd ef\",\"rejected\":\"g\"}\n"
    "{\"prompt\":\"xyz\",\"chosen\":\"q\",\"rejected\":\"rst uv\",\"dimension\":\"style\"}\n";

/* Checks analytic gradients (already in the model's grad buffer) at a
 * spread of parameters by central differences of f. */
static void check_grads(mope_train_model *m, double (*f)(mope_train_model *, void *), void *ctx) {
    size_t np = mope_train_model_n_params(m);
    float *p = mope_train_model_params(m);
    const float *g = mope_train_model_grads(m);
    float *ga = malloc(np * sizeof *ga);
    memcpy(ga, g, np * sizeof *ga);
    int checked = 0;
    double gmax = 0;
    for (size_t i = 0; i < np; i++) gmax = fabs(ga[i]) > gmax ? fabs(ga[i]) : gmax;
    assert_true(gmax > 1e-4);
    /* small gradients drown in f32 noise: check about 40 of the others */
    size_t cand = 0, seen = 0;
    for (size_t i = 0; i < np; i++) cand += fabs(ga[i]) >= 0.02 * gmax;
    size_t stride = cand / 40 + 1;
    for (size_t i = 0; i < np; i++) {
        if (fabs(ga[i]) < 0.02 * gmax || seen++ % stride != 0) continue;
        float keep = p[i];
        const float h = 1e-2f;
        p[i] = keep + h;
        double fp = f(m, ctx);
        p[i] = keep - h;
        double fm = f(m, ctx);
        p[i] = keep;
        double num = (fp - fm) / (2 * h);
        if (fabs(num - ga[i]) > 0.05 * fabs(ga[i]) + 2e-4)
            fail_msg("param %zu: analytic %g vs numeric %g", i, (double)ga[i], num);
        checked++;
    }
    assert_true(checked >= 5);
    free(ga);
}

typedef struct fd_ctx {
    mope_pref_pair *p;
    double *ref;
    double beta;
} fd_ctx;

static double f_dpo(mope_train_model *m, void *c) {
    fd_ctx *x = c;
    return dpo_total(m, x->p, 2, x->ref, x->beta);
}
static double f_bt(mope_train_model *m, void *c) { return bt_total(m, ((fd_ctx *)c)->p, 2); }

static void test_dpo_gradient(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts o = tiny_opts(t, MOPE_CHAT_TULU);
    mope_dataset d;
    mope_error err = {0};
    assert_int_equal(mope_dataset_pref_jsonl(&o, PREF2, strlen(PREF2), "pref2", &d, &err), 0);
    assert_int_equal(d.n, 2);
    assert_null(d.pairs[0].dimension);
    assert_string_equal(d.pairs[1].dimension, "style");
    mope_train_model *m = tiny_model(false, 3);
    /* a reference different from the model, so z != 0 */
    double ref[4] = {-40, -20, -15, -60};
    tr_buf b;
    assert_int_equal(tr_buf_init(&b, 4, 64, &err), 0);
    const mope_pref_pair *pp[2] = {&d.pairs[0], &d.pairs[1]};
    tr_step_out so = {0};
    mope_train_model_zero_grad(m);
    assert_int_equal(tr_dpo_micro(m, &b, pp, ref, 2, 0.5, 2, &so, &err), 0);
    fd_ctx c = {d.pairs, ref, 0.5};
    /* the loss reported is the same objective (sum over the pairs) */
    assert_float_equal(so.loss / 2, dpo_total(m, d.pairs, 2, ref, 0.5), 1e-4);
    check_grads(m, f_dpo, &c);
    tr_buf_free(&b);
    mope_train_model_free(m);
    mope_dataset_free(&d);
    mope_tokenizer_free(t);
}

static void test_bt_gradient(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts o = tiny_opts(t, MOPE_CHAT_RAW);
    mope_dataset d;
    mope_error err = {0};
    assert_int_equal(mope_dataset_pref_jsonl(&o, PREF2, strlen(PREF2), "pref2", &d, &err), 0);
    mope_train_model *m = tiny_model(true, 4);
    /* a larger head so the scores differ visibly */
    const mope_train_tensor *vh = mope_train_model_find(m, "mope.value_head.weight");
    assert_non_null(vh);
    for (size_t i = 0; i < vh->n; i++) mope_train_model_params(m)[vh->offset + i] *= 50;
    tr_buf b;
    assert_int_equal(tr_buf_init(&b, 4, 64, &err), 0);
    const mope_pref_pair *pp[2] = {&d.pairs[0], &d.pairs[1]};
    tr_step_out so = {0};
    mope_train_model_zero_grad(m);
    assert_int_equal(tr_rm_micro(m, &b, pp, 2, 2, &so, &err), 0);
    fd_ctx c = {d.pairs, NULL, 0};
    assert_float_equal(so.loss / 2, bt_total(m, d.pairs, 2), 1e-5);
    check_grads(m, f_bt, &c);
    tr_buf_free(&b);
    mope_train_model_free(m);
    mope_dataset_free(&d);
    mope_tokenizer_free(t);
}

/* ---- datasets ---- */

static void test_dataset_layout(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts o = tiny_opts(t, MOPE_CHAT_RAW);
    mope_dataset d;
    mope_error err = {0};
    /* raw template: prompt "ab" -> BOS ▁ a b; response "cd" -> ▁ c d; EOS */
    const char *j = "\n{\"prompt\":\"ab\",\"response\":\"cd\",\"extra\":1}\n\n";
    assert_int_equal(mope_dataset_sft_jsonl(&o, j, strlen(j), "x", &d, &err), 0);
    assert_int_equal(d.n, 1);
    const int32_t want[] = {1, 259, 260, 261, 259, 262, 263, 2};
    assert_int_equal(d.seqs[0].len, 8);
    assert_int_equal(d.seqs[0].prompt_len, 4);
    assert_memory_equal(d.seqs[0].tokens, want, sizeof want);
    /* targets: positions 3..6 predict ▁ c d EOS */
    tr_buf b;
    assert_int_equal(tr_buf_init(&b, 2, 64, &err), 0);
    const mope_seq *rows[1] = {&d.seqs[0]};
    int T;
    assert_int_equal(tr_buf_fill(&b, rows, 1, NULL, &T), 4);
    const int32_t tg[] = {-1, -1, -1, 259, 262, 263, 2, -1};
    assert_int_equal(T, 8);
    assert_memory_equal(b.targets, tg, sizeof tg);
    tr_buf_free(&b);
    mope_dataset_free(&d);

    /* too long: cut (counted) or, strict, an error naming the line */
    o.n_ctx = 6;
    assert_int_equal(mope_dataset_sft_jsonl(&o, j, strlen(j), "x", &d, &err), 0);
    assert_int_equal(d.n_truncated, 1);
    assert_int_equal(d.seqs[0].len, 6);
    assert_memory_equal(d.seqs[0].tokens, want, 6 * sizeof(int32_t));
    mope_dataset_free(&d);
    o.strict = true;
    assert_int_equal(mope_dataset_sft_jsonl(&o, j, strlen(j), "x", &d, &err), MOPE_ERANGE);
    assert_non_null(strstr(err.msg, "x:2"));
    o.strict = false;
    o.n_ctx = 4; /* the prompt alone fills it */
    assert_int_equal(mope_dataset_sft_jsonl(&o, j, strlen(j), "x", &d, &err), MOPE_ERANGE);
    assert_non_null(strstr(err.msg, "no room"));

    /* text: windows of ctx + 1 overlapping by one */
    o.n_ctx = 4;
    assert_int_equal(mope_dataset_text(&o, "abcdefghij", 10, &d, &err), 0);
    assert_int_equal(d.n_stream, 12); /* BOS ▁ a..j */
    assert_int_equal(d.n, 2);
    mope_dataset_free(&d);
    assert_int_equal(mope_dataset_text(&o, "ab", 2, &d, &err), MOPE_EINVAL);
    mope_tokenizer_free(t);
}

static void test_dataset_errors(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts o = tiny_opts(t, MOPE_CHAT_TULU);
    mope_dataset d;
    mope_error err = {0};
    struct {
        const char *text, *want;
        bool pref;
    } cases[] = {
        {"{\"prompt\":\"a\",\"response\":\"b\"}\n{\"prompt\":\"a\" \"response\":\"b\"}\n", "f:2: malformed JSON", false},
        {"{\"prompt\":\"a\"}\n", "f:1: missing field \"response\"", false},
        {"{\"prompt\":\"a\",\"response\":3}\n", "f:1: field \"response\" must be a string", false},
        {"[1,2]\n", "f:1: expected a JSON object", false},
        {"{\"prompt\":\"a\",\"response\":\"b\"} x\n", "f:1: text after", false},
        {"", "no records", false},
        {"\n  \n", "no records", false},
        {"{\"prompt\":\"a\",\"chosen\":\"b\"}\n", "f:1: missing field \"rejected\"", true},
        {"{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\",\"dimension\":[]}\n", "f:1: field \"dimension\"", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].text);
        int rc = cases[i].pref ? mope_dataset_pref_jsonl(&o, cases[i].text, n, "f", &d, &err)
                               : mope_dataset_sft_jsonl(&o, cases[i].text, n, "f", &d, &err);
        assert_true(rc < 0);
        if (!strstr(err.msg, cases[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        assert_null(d.seqs);
        assert_null(d.pairs);
    }
    assert_true(mope_dataset_sft_file(&o, "/nonexistent/x.jsonl", &d, &err) < 0);
    mope_tokenizer_free(t);
}

/* ---- training runs ---- */

typedef struct stop_at {
    int64_t step;
    float last_loss;
    int calls;
} stop_at;

static int on_step(void *user, const mope_trainer_progress *p) {
    stop_at *s = user;
    s->calls++;
    s->last_loss = p->loss;
    assert_true(p->tokens > 0 && p->elapsed_s >= 0);
    return s->step > 0 && p->step >= s->step;
}

static const char *SFT4 = "{\"prompt\":\"hi\",\"response\":\"hello there\"}\n"
                          "{\"prompt\":\"sky\",\"response\":\"blue\"}\n"
                          "{\"prompt\":\"grass\",\"response\":\"green and long\"}\n"
                          "{\"prompt\":\"sun\",\"response\":\"hot\"}\n";

static void sft_opts(mope_trainer_opts *o, const mope_tokenizer *t, const char *out) {
    mope_trainer_opts_init(o, MOPE_TRAINER_SFT);
    o->steps = 120;
    o->batch = 2;
    o->grad_accum = 2;
    o->adamw.lr = 1e-2f;
    o->adamw.min_lr = 1e-3f;
    o->adamw.weight_decay = 0;
    o->adamw.warmup_steps = 5;
    o->n_threads = 1;
    o->seed = 9;
    o->out = out;
    o->tok = t;
}

/* Memorise four answers; the saved file loads back with identical outputs. */
static void test_sft_memorises(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts dop = tiny_opts(t, MOPE_CHAT_TULU);
    mope_dataset d;
    mope_error err = {0};
    assert_int_equal(mope_dataset_sft_jsonl(&dop, SFT4, strlen(SFT4), "sft4", &d, &err), 0);
    mope_trainer_opts o;
    sft_opts(&o, t, tmp("sft.gguf"));
    o.checkpoint_every = 60; /* the last checkpoint = the final model */
    stop_at s = {0};
    o.progress = on_step;
    o.progress_user = &s;
    mope_trainer_result res;
    int rc = mope_trainer_run(&o, tiny_model(false, 1), &d, &res, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_int_equal(s.calls, 120);
    assert_int_equal(res.steps_done, 120);
    assert_true(res.final_loss < 0.05f);

    /* reload: the mean response NLL is that low too, and the checkpoint
     * (same step) gives bit-identical log-probabilities */
    mope_train_model *a = mope_train_model_load(tmp("sft.gguf"), 1, &err);
    mope_train_model *b = mope_train_model_load(tmp("sft.gguf.ckpt"), 1, &err);
    assert_non_null(a);
    assert_non_null(b);
    const mope_seq *rows[4] = {&d.seqs[0], &d.seqs[1], &d.seqs[2], &d.seqs[3]};
    double la[4], lb[4];
    assert_int_equal(mope_trainer_seq_logp(a, rows, 4, 4, la, &err), 0);
    assert_int_equal(mope_trainer_seq_logp(b, rows, 4, 4, lb, &err), 0);
    int n_resp = 0;
    double sum = 0;
    for (int i = 0; i < 4; i++) {
        assert_memory_equal(&la[i], &lb[i], sizeof la[i]);
        sum += la[i];
        n_resp += d.seqs[i].len - d.seqs[i].prompt_len;
    }
    assert_true(-sum / n_resp < 0.1);
    /* the tokenizer keys went in: the file's tokenizer is the same */
    mope_tokenizer *t2 = mope_tokenizer_load(tmp("sft.gguf"), &err);
    assert_non_null(t2);
    assert_int_equal(mope_tokenizer_n_vocab(t2), 286);
    mope_tokenizer_free(t2);
    mope_train_model_free(a);
    mope_train_model_free(b);
    mope_dataset_free(&d);
    mope_tokenizer_free(t);
}

static int read_all(const char *path, void **data, size_t *n) { return mope_io_read_file(path, data, n, NULL); }

/* Stopped at step 7 after a checkpoint at 5, resumed: the same bytes as an
 * uninterrupted run. Then an absurd learning rate stops with MOPE_ESTATE and
 * leaves the checkpoint as it was. */
static void test_resume_exact_and_nan(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts dop = tiny_opts(t, MOPE_CHAT_TULU);
    mope_dataset d;
    mope_error err = {0};
    assert_int_equal(mope_dataset_sft_jsonl(&dop, SFT4, strlen(SFT4), "sft4", &d, &err), 0);
    mope_trainer_opts o;
    sft_opts(&o, t, tmp("full.gguf"));
    o.steps = 12;
    o.checkpoint_every = 5;
    assert_int_equal(mope_trainer_run(&o, tiny_model(false, 1), &d, NULL, &err), 0);

    sft_opts(&o, t, tmp("part.gguf"));
    o.steps = 12;
    o.checkpoint_every = 5;
    stop_at s = {.step = 7};
    o.progress = on_step;
    o.progress_user = &s;
    mope_trainer_result res;
    assert_int_equal(mope_trainer_run(&o, tiny_model(false, 1), &d, &res, &err), 0);
    assert_true(res.stopped);
    assert_int_equal(access(tmp("part.gguf"), F_OK), -1);
    o.resume = true;
    o.progress = NULL;
    assert_int_equal(mope_trainer_run(&o, NULL, &d, &res, &err), 0);
    assert_true(res.resumed);
    assert_int_equal(res.start_step, 5);
    void *a, *b;
    size_t na, nb;
    assert_int_equal(read_all(tmp("full.gguf"), &a, &na), 0);
    assert_int_equal(read_all(tmp("part.gguf"), &b, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);

    /* a checkpoint of another run is refused */
    o.seed = 10;
    assert_int_equal(mope_trainer_run(&o, NULL, &d, &res, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "--seed"));
    o.seed = 9;

    /* lr 1e30 from the step-10 checkpoint: stops, checkpoint untouched */
    void *c0, *c1;
    size_t n0, n1;
    assert_int_equal(read_all(tmp("part.gguf.ckpt"), &c0, &n0), 0);
    o.steps = 30;
    o.adamw.lr = 1e30f;
    o.adamw.min_lr = 1e30f;
    o.checkpoint_every = 1000; /* would only write at 1000 */
    o.out = tmp("nan.gguf");
    o.checkpoint = tmp("part.gguf.ckpt");
    o.checkpoint_every = 2;
    int rc = mope_trainer_run(&o, NULL, &d, &res, &err);
    assert_int_equal(rc, MOPE_ESTATE);
    assert_non_null(strstr(err.msg, "not finite"));
    assert_int_equal(read_all(tmp("part.gguf.ckpt"), &c1, &n1), 0);
    assert_int_equal(n0, n1);
    assert_memory_equal(c0, c1, n0);
    assert_int_equal(access(tmp("nan.gguf"), F_OK), -1);
    free(c0);
    free(c1);
    mope_dataset_free(&d);
    mope_tokenizer_free(t);
}

/* A reward model learns "chosen responses contain a z" from 160 pairs and
 * ranks > 95% of 40 held-out pairs right; the saved model scores them the
 * same. */
static void test_rm_marker(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_rng g;
    mope_rng_seed(&g, 77);
    size_t cap = 1 << 16, len = 0;
    char *j = malloc(cap);
    for (int i = 0; i < 200; i++) {
        char c[16], r[16];
        int n = 3 + (int)mope_rng_below(&g, 5), zpos = (int)mope_rng_below(&g, (uint32_t)n);
        for (int k = 0; k < n; k++) {
            c[k] = (char)('a' + mope_rng_below(&g, 25));
            r[k] = (char)('a' + mope_rng_below(&g, 25));
        }
        c[zpos] = 'z';
        c[n] = r[n] = 0;
        len += (size_t)snprintf(j + len, cap - len, "{\"prompt\":\"q%c\",\"chosen\":\"%s\",\"rejected\":\"%s\"}\n",
                                'a' + (int)mope_rng_below(&g, 26), c, r);
    }
    mope_dataset_opts dop = tiny_opts(t, MOPE_CHAT_RAW);
    mope_dataset d;
    mope_error err = {0};
    assert_int_equal(mope_dataset_pref_jsonl(&dop, j, len, "rm", &d, &err), 0);
    free(j);
    mope_trainer_opts o;
    mope_trainer_opts_init(&o, MOPE_TRAINER_RM);
    o.steps = 150;
    o.batch = 8;
    o.adamw.lr = 3e-3f;
    o.adamw.min_lr = 3e-4f;
    o.adamw.warmup_steps = 10;
    o.eval_frac = 0.2;
    o.eval_every = 50;
    o.n_threads = 1;
    o.out = tmp("rm.gguf");
    o.tok = t;
    mope_trainer_result res;
    mope_train_model *m = mope_trainer_add_value_head(tiny_model(false, 5), 6, &err);
    assert_non_null(m);
    int rc = mope_trainer_run(&o, m, &d, &res, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_int_equal(res.n_eval, 40);
    assert_int_equal(res.n_train, 160);
    printf("rm: held-out accuracy %.3f, loss %.4f\n", res.eval_accuracy, res.eval_loss);
    assert_true(res.eval_accuracy > 0.95f);
    /* reload and recompute on all pairs: the held-out subset is a subset */
    mope_train_model *r = mope_train_model_load(tmp("rm.gguf"), 1, &err);
    assert_non_null(r);
    assert_true(mope_train_model_config(r)->value_head);
    int right = 0;
    for (int64_t i = 0; i < d.n; i++) {
        const mope_seq *rows[2] = {&d.pairs[i].chosen, &d.pairs[i].rejected};
        float sc[2];
        assert_int_equal(mope_trainer_seq_score(r, rows, 2, 2, sc, &err), 0);
        right += sc[0] > sc[1];
    }
    assert_true(right >= 190);
    mope_train_model_free(r);
    mope_dataset_free(&d);
    mope_tokenizer_free(t);
}

/* Data whose token ids exceed the model's vocabulary, a dataset of the
 * wrong kind, bad options. */
static void test_run_errors(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts dop = tiny_opts(t, MOPE_CHAT_TULU);
    mope_dataset d;
    mope_error err = {0};
    assert_int_equal(mope_dataset_sft_jsonl(&dop, SFT4, strlen(SFT4), "sft4", &d, &err), 0);
    mope_trainer_opts o;
    sft_opts(&o, t, tmp("e.gguf"));
    mope_train_config c;
    mope_train_config_init(&c); /* vocab 256 < 286 */
    c.n_embd = 16;
    c.n_layer = 1;
    c.n_ff = 32;
    mope_train_model *small = mope_train_model_new(&c, 1, &err);
    assert_int_equal(mope_trainer_run(&o, small, &d, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "outside the model's vocabulary of 256"));
    o.kind = MOPE_TRAINER_DPO;
    assert_int_equal(mope_trainer_run(&o, tiny_model(false, 1), &d, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "preference"));
    o.kind = MOPE_TRAINER_SFT;
    o.batch = 0;
    assert_int_equal(mope_trainer_run(&o, tiny_model(false, 1), &d, NULL, &err), MOPE_EINVAL);
    o.batch = 2;
    o.kind = MOPE_TRAINER_RM;
    mope_dataset p;
    assert_int_equal(mope_dataset_pref_jsonl(&dop, PREF2, strlen(PREF2), "p", &p, &err), 0);
    assert_int_equal(mope_trainer_run(&o, tiny_model(false, 1), &p, NULL, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "value head"));
    mope_dataset_free(&p);
    mope_dataset_free(&d);
    mope_tokenizer_free(t);
}

/* DPO on a tiny set raises the chosen-over-rejected margin. */
static void test_dpo_learns(void **state) {
    (void)state;
    mope_tokenizer *t = tiny_tok();
    mope_dataset_opts dop = tiny_opts(t, MOPE_CHAT_TULU);
    mope_dataset d;
    mope_error err = {0};
    assert_int_equal(mope_dataset_pref_jsonl(&dop, PREF2, strlen(PREF2), "p", &d, &err), 0);
    mope_trainer_opts o;
    mope_trainer_opts_init(&o, MOPE_TRAINER_DPO);
    o.steps = 30;
    o.batch = 2;
    o.adamw.lr = 3e-3f;
    o.n_threads = 1;
    o.dpo_beta = 0.5f;
    o.out = tmp("dpo.gguf");
    o.checkpoint_every = 30;
    o.tok = t;
    mope_trainer_result res;
    int rc = mope_trainer_run(&o, tiny_model(false, 2), &d, &res, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_true(res.final_loss < 0.2f); /* from log 2 = 0.69 */
    /* the reference log-probs travel in the checkpoint */
    mope_gguf *g = mope_gguf_open(tmp("dpo.gguf.ckpt"), &err);
    assert_non_null(g);
    const mope_gguf_tensor *rt = mope_gguf_find_tensor(g, "mope.dpo.ref_logp");
    assert_non_null(rt);
    assert_int_equal(rt->n_elements, 4);
    mope_train_model *m0 = tiny_model(false, 2);
    const mope_seq *rows[4] = {&d.pairs[0].chosen, &d.pairs[0].rejected, &d.pairs[1].chosen, &d.pairs[1].rejected};
    double lp[4];
    assert_int_equal(mope_trainer_seq_logp(m0, rows, 4, 4, lp, &err), 0);
    for (int i = 0; i < 4; i++) assert_float_equal(((const float *)rt->data)[i], lp[i], 1e-4 * fabs(lp[i]));
    mope_gguf_close(g);
    mope_train_model_free(m0);
    mope_dataset_free(&d);
    mope_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_losses_by_hand),   cmocka_unit_test(test_dpo_gradient),
        cmocka_unit_test(test_bt_gradient),      cmocka_unit_test(test_dataset_layout),
        cmocka_unit_test(test_dataset_errors),   cmocka_unit_test(test_sft_memorises),
        cmocka_unit_test(test_resume_exact_and_nan), cmocka_unit_test(test_rm_marker),
        cmocka_unit_test(test_run_errors),       cmocka_unit_test(test_dpo_learns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
