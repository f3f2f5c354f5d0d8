/* The recipe's training steps: thin wrappers over the trainers of
 * mope/trainer.h (the same runs as `mope train lm | sft | rm`), and reward
 * scoring for the evaluation. */
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
    int64_t tokens; /* processed by this run (after a resume: since the resume) */
} prog;

static int on_progress(void *user, const mope_trainer_progress *p) {
    prog *g = user;
    g->tokens = p->tokens;
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
    /* long runs resume inside the stage too; the checkpoint lives in the work
     * folder under the stage's hash, so one left by other options is never resumed */
    char ck[2200];
    snprintf(ck, sizeof ck, "%s/ckpt-%016llx.gguf", c->work, (unsigned long long)c->chain);
    o.checkpoint = ck;
    o.checkpoint_every = steps >= 200 ? 100 : 0;
    o.resume = !c->o->force;
    o.eval_frac = kind == MOPE_TRAINER_RM ? 0.1 : 0;
    o.tok = tok;
    prog g = {c, what, steps / 10 > 0 ? steps / 10 : 1, 0};
    o.progress = on_progress;
    o.progress_user = &g;
    rep->params = mope_train_model_n_trainable(m); /* the adapter alone for LoRA */
    rep->examples = d->n;
    mope_trainer_result res;
    double t0 = mope_time_s();
    int rc = mope_trainer_run(&o, m, d, &res, err);
    rep->seconds = mope_time_s() - t0;
    if (rc) return rc;
    rep->steps = res.steps_done;
    rep->tokens = g.tokens;
    rep->final_loss = res.final_loss;
    rep->eval_accuracy = kind == MOPE_TRAINER_RM ? res.eval_accuracy : -1;
    remove(ck); /* only for resuming this stage */
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

/* LoRA SFT over the frozen base: the trainer saves the adapter alone. */
int recipe_train_lora(recipe_ctx *c, const char *base, const char *data, int rank, float alpha, int64_t steps,
                      int batch, float lr, uint64_t seed, const char *out, recipe_train_report *rep, mope_error *err) {
    mope_train_model *m;
    mope_tokenizer *tok;
    int rc = load_pair(c, base, &m, &tok, err);
    if (rc) return rc;
    mope_dataset d = {0};
    rc = open_data(tok, mope_train_model_config(m)->n_ctx, MOPE_DATASET_SFT, data, &d, err);
    if (!rc) rc = mope_train_model_add_lora(m, rank, alpha, MOPE_LORA_ALL_LINEAR, 0.0f, seed, err);
    if (!rc) rc = run(c, MOPE_TRAINER_SFT, m, tok, &d, steps, batch, lr, seed, out, "lora", rep, err);
    else mope_train_model_free(m);
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
