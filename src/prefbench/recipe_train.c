/* The recipe's training steps: thin wrappers over the trainers of
 * mope/trainer.h, plus the LoRA SFT loop (the trainer writes full models;
 * an expert is only its adapter). */
#include <math.h>
#include <stdlib.h>

#include "mope/dataset.h"
#include "mope/train.h"
#include "mope/trainer.h"
#include "prefbench/recipe_internal.h"

typedef struct prog {
    recipe_ctx *c;
    const char *what;
    int64_t every;
} prog;

static int on_progress(void *user, const mope_trainer_progress *p) {
    prog *g = user;
    if (p->step == p->total_steps || p->step % g->every == 0 || p->eval_accuracy >= 0) {
        if (p->kind == MOPE_TRAINER_RM && p->eval_accuracy >= 0)
            recipe_log(g->c, "  %s: step %lld/%lld loss %.4f acc %.2f held-out acc %.3f  %.0f tok/s", g->what,
                       (long long)p->step, (long long)p->total_steps, p->loss, p->accuracy, p->eval_accuracy,
                       p->tokens_per_s);
        else if (p->kind == MOPE_TRAINER_RM)
            recipe_log(g->c, "  %s: step %lld/%lld loss %.4f acc %.2f  %.0f tok/s", g->what, (long long)p->step,
                       (long long)p->total_steps, p->loss, p->accuracy, p->tokens_per_s);
        else
            recipe_log(g->c, "  %s: step %lld/%lld loss %.4f lr %.2g  %.0f tok/s", g->what, (long long)p->step,
                       (long long)p->total_steps, p->loss, p->lr, p->tokens_per_s);
    }
    return 0;
}

static void adamw_for(mope_adamw_config *a, float lr, int64_t steps) {
    mope_adamw_config_init(a);
    a->lr = lr;
    a->min_lr = lr / 10;
    a->warmup_steps = steps / 20;
    a->total_steps = steps;
}

static int run(recipe_ctx *c, mope_trainer_kind kind, mope_train_model *m, mope_tokenizer *tok,
               const mope_dataset *d, int64_t steps, int batch, float lr, uint64_t seed, const char *out,
               const char *what, recipe_train_report *rep, mope_error *err) {
    mope_trainer_opts o;
    mope_trainer_opts_init(&o, kind);
    o.steps = steps;
    o.batch = batch;
    adamw_for(&o.adamw, lr, steps);
    o.seed = seed;
    o.n_threads = c->n_threads;
    o.out = out;
    o.checkpoint_every = steps >= 200 ? 100 : 0; /* long runs resume inside the stage too */
    o.resume = !c->o->force;
    o.eval_frac = kind == MOPE_TRAINER_RM ? 0.1 : 0;
    o.tok = tok;
    prog g = {c, what, steps / 10 > 0 ? steps / 10 : 1};
    o.progress = on_progress;
    o.progress_user = &g;
    rep->params = mope_train_model_n_params(m);
    rep->examples = d->n;
    rep->tokens = d->n_tokens;
    mope_trainer_result res;
    double t0 = mope_time_s();
    int rc = mope_trainer_run(&o, m, d, &res, err);
    rep->seconds = mope_time_s() - t0;
    if (rc) return rc;
    rep->steps = res.steps_done;
    rep->final_loss = res.final_loss;
    rep->eval_accuracy = kind == MOPE_TRAINER_RM ? res.eval_accuracy : -1;
    /* the checkpoint is only for resuming this stage */
    char ck[4200];
    snprintf(ck, sizeof ck, "%s.ckpt", out);
    remove(ck);
    return 0;
}

static int open_data(mope_tokenizer *tok, int n_ctx, int kind, const char *path, mope_dataset *d, mope_error *err) {
    mope_dataset_opts dop;
    mope_dataset_opts_init(&dop);
    dop.tok = tok;
    dop.n_ctx = n_ctx;
    dop.chat = MOPE_CHAT_TULU;
    return kind == MOPE_DATASET_TEXT  ? mope_dataset_text_file(&dop, path, d, err)
           : kind == MOPE_DATASET_SFT ? mope_dataset_sft_file(&dop, path, d, err)
                                      : mope_dataset_pref_file(&dop, path, d, err);
}

int recipe_train_lm(recipe_ctx *c, const char *text_path, const char *tok_path, int dim, int layers, int heads,
                    int kv_heads, int ff, int64_t steps, int batch, float lr, uint64_t seed, const char *out,
                    recipe_train_report *rep, mope_error *err) {
    mope_tokenizer *tok = mope_tokenizer_load(tok_path, err);
    if (!tok) return err ? err->code : MOPE_EIO;
    mope_train_config mc;
    mope_train_config_init(&mc);
    mc.n_vocab = mope_tokenizer_n_vocab(tok);
    mc.n_embd = dim;
    mc.n_layer = layers;
    mc.n_head = heads;
    mc.n_head_kv = kv_heads;
    mc.n_ff = ff;
    mc.n_ctx = c->sz.ctx;
    mope_dataset d = {0};
    mope_train_model *m = NULL;
    int rc = mope_train_config_check(&mc, err);
    if (!rc) rc = open_data(tok, mc.n_ctx, MOPE_DATASET_TEXT, text_path, &d, err);
    if (!rc && !(m = mope_train_model_new(&mc, c->n_threads, err))) rc = err ? err->code : MOPE_ENOMEM;
    if (!rc) {
        mope_train_model_init_random(m, seed);
        rc = run(c, MOPE_TRAINER_LM, m, tok, &d, steps, batch, lr, seed, out, "lm", rep, err);
        rep->tokens = steps * batch * mc.n_ctx; /* tokens seen, not the text's size */
    }
    mope_dataset_free(&d);
    mope_tokenizer_free(tok);
    return rc;
}

static int load_pair(recipe_ctx *c, const char *path, mope_train_model **m, mope_tokenizer **tok, mope_error *err) {
    if (!(*tok = mope_tokenizer_load(path, err))) return err ? err->code : MOPE_EIO;
    if (!(*m = mope_train_model_load(path, c->n_threads, err))) {
        mope_tokenizer_free(*tok);
        *tok = NULL;
        return err ? err->code : MOPE_EIO;
    }
    return 0;
}

int recipe_train_sft(recipe_ctx *c, const char *base, const char *data, int64_t steps, int batch, float lr,
                     uint64_t seed, const char *out, recipe_train_report *rep, mope_error *err) {
    mope_train_model *m;
    mope_tokenizer *tok;
    int rc = load_pair(c, base, &m, &tok, err);
    if (rc) return rc;
    mope_dataset d = {0};
    rc = open_data(tok, mope_train_model_config(m)->n_ctx, MOPE_DATASET_SFT, data, &d, err);
    if (!rc) rc = run(c, MOPE_TRAINER_SFT, m, tok, &d, steps, batch, lr, seed, out, "sft", rep, err);
    else mope_train_model_free(m);
    mope_dataset_free(&d);
    mope_tokenizer_free(tok);
    return rc;
}

int recipe_train_rm(recipe_ctx *c, const char *trunk, const char *data, int64_t steps, int batch, float lr,
                    uint64_t seed, const char *out, recipe_train_report *rep, mope_error *err) {
    mope_train_model *m;
    mope_tokenizer *tok;
    int rc = load_pair(c, trunk, &m, &tok, err);
    if (rc) return rc;
    mope_dataset d = {0};
    rc = open_data(tok, mope_train_model_config(m)->n_ctx, MOPE_DATASET_PREF, data, &d, err);
    if (!rc && !(m = mope_trainer_add_value_head(m, seed, err))) rc = err ? err->code : MOPE_ENOMEM;
    if (!rc) {
        rc = run(c, MOPE_TRAINER_RM, m, tok, &d, steps, batch, lr, seed, out, "rm", rep, err);
        m = NULL;
    }
    mope_train_model_free(m);
    mope_dataset_free(&d);
    mope_tokenizer_free(tok);
    return rc;
}

/* LoRA SFT: the prompt tokens are masked, each batch is padded to its
 * longest sequence, and examples are drawn in a seeded order. */
int recipe_train_lora(recipe_ctx *c, const char *base, const char *data, int rank, float alpha, int64_t steps,
                      int batch, float lr, uint64_t seed, const char *out, recipe_train_report *rep, mope_error *err) {
    mope_train_model *m;
    mope_tokenizer *tok;
    int rc = load_pair(c, base, &m, &tok, err);
    if (rc) return rc;
    mope_dataset d = {0};
    mope_trainer *tr = NULL;
    int64_t *perm = NULL;
    int32_t *tokens = NULL, *targets = NULL;
    const int T = mope_train_model_config(m)->n_ctx;
    rc = open_data(tok, T, MOPE_DATASET_SFT, data, &d, err);
    if (!rc && d.n < 1) rc = mope_error_set(err, MOPE_EINVAL, "%s: no examples", data);
    if (!rc) rc = mope_train_model_add_lora(m, rank, alpha, MOPE_LORA_ALL_LINEAR, 0.0f, seed, err);
    if (!rc) {
        mope_adamw_config a;
        adamw_for(&a, lr, steps);
        a.weight_decay = 0;
        tr = mope_train_trainer_new(m, &a, seed, err);
        m = NULL;
        if (!tr) rc = err ? err->code : MOPE_ENOMEM;
    }
    if (!rc) {
        perm = malloc((size_t)d.n * sizeof *perm);
        tokens = malloc((size_t)batch * T * sizeof *tokens);
        targets = malloc((size_t)batch * T * sizeof *targets);
        if (!perm || !tokens || !targets) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    mope_train_model *tm = tr ? mope_train_trainer_model(tr) : NULL;
    if (tm) rep->params = mope_train_model_n_trainable(tm);
    rep->examples = d.n;
    rep->tokens = 0;
    double t0 = mope_time_s();
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    int64_t k = 0;
    for (int64_t step = 0; !rc && step < steps; step++) {
        int Tb = 2;
        int64_t idx[512];
        for (int b = 0; b < batch && b < 512; b++, k++) {
            if (k % d.n == 0) { /* a new epoch: reshuffle */
                for (int64_t i = 0; i < d.n; i++) perm[i] = i;
                for (int64_t i = d.n - 1; i > 0; i--) {
                    int64_t j = (int64_t)(mope_rng_u64(&rng) % (uint64_t)(i + 1)), t = perm[i];
                    perm[i] = perm[j];
                    perm[j] = t;
                }
            }
            idx[b] = perm[k % d.n];
            if (d.seqs[idx[b]].len > Tb) Tb = d.seqs[idx[b]].len;
        }
        for (int b = 0; b < batch; b++) {
            const mope_seq *s = &d.seqs[idx[b]];
            for (int t = 0; t < Tb; t++) {
                tokens[b * Tb + t] = t < s->len ? s->tokens[t] : 0;
                /* position t predicts token t + 1: only response tokens count */
                targets[b * Tb + t] = t + 1 < s->len && t + 1 >= s->prompt_len ? s->tokens[t + 1] : -1;
            }
            rep->tokens += s->len;
        }
        mope_train_batch mb = {tokens, targets, NULL, batch, Tb};
        mope_train_stats st;
        rc = mope_train_step(tr, &mb, 1, &st, err);
        if (!rc) {
            rep->final_loss = st.loss;
            if ((step + 1) % (steps / 10 > 0 ? steps / 10 : 1) == 0 || step + 1 == steps)
                recipe_log(c, "  lora: step %lld/%lld loss %.4f lr %.2g  %.0f tok/s", (long long)step + 1,
                           (long long)steps, st.loss, st.lr, rep->tokens / (mope_time_s() - t0 + 1e-9));
        }
    }
    rep->steps = steps;
    rep->seconds = mope_time_s() - t0;
    rep->eval_accuracy = -1;
    if (!rc) rc = mope_train_model_lora_save(tm, out, NULL, err);
    free(perm);
    free(tokens);
    free(targets);
    mope_train_trainer_free(tr);
    mope_train_model_free(m);
    mope_dataset_free(&d);
    mope_tokenizer_free(tok);
    return rc;
}

int recipe_rm_score(recipe_ctx *c, const char *rm, const char *tok_path, const char *const *prompts,
                    const char *const *responses, int n, float *scores, mope_error *err) {
    mope_tokenizer *tok = mope_tokenizer_load(tok_path, err);
    if (!tok) return err ? err->code : MOPE_EIO;
    mope_train_model *m = mope_train_model_load(rm, c->n_threads, err);
    if (!m) {
        mope_tokenizer_free(tok);
        return err ? err->code : MOPE_EIO;
    }
    mope_dataset_opts dop;
    mope_dataset_opts_init(&dop);
    dop.tok = tok;
    dop.n_ctx = mope_train_model_config(m)->n_ctx;
    dop.chat = MOPE_CHAT_TULU;
    mope_seq *seqs = calloc(n > 0 ? (size_t)n : 1, sizeof *seqs);
    const mope_seq **ptr = calloc(n > 0 ? (size_t)n : 1, sizeof *ptr);
    int rc = seqs && ptr ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int made = 0;
    for (; !rc && made < n; made++) {
        rc = mope_dataset_make_seq(&dop, prompts[made], responses[made], &seqs[made], NULL, err);
        ptr[made] = &seqs[made];
        if (rc) break;
    }
    if (!rc) rc = mope_trainer_seq_score(m, ptr, n, 16, scores, err);
    for (int i = 0; i < made && seqs; i++) mope_seq_free(&seqs[i]);
    free(seqs);
    free(ptr);
    mope_train_model_free(m);
    mope_tokenizer_free(tok);
    return rc;
}
