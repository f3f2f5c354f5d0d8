/* The trainer loop shared by lm, sft, dpo and rm: data order, micro-batches,
 * progress, checkpoints, resume and the final save. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mope/gguf.h"
#include "train/trainer_internal.h"

static const char *const KIND_NAMES[] = {"lm", "sft", "dpo", "rm"};

const char *mope_trainer_kind_name(mope_trainer_kind k) {
    return (unsigned)k < sizeof KIND_NAMES / sizeof KIND_NAMES[0] ? KIND_NAMES[k] : "?";
}

void mope_trainer_opts_init(mope_trainer_opts *o, mope_trainer_kind kind) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->steps = 100;
    o->batch = 8;
    o->grad_accum = 1;
    mope_adamw_config_init(&o->adamw);
    o->seed = 42;
    o->dpo_beta = 0.1f;
    o->eval_frac = 0.1;
}

typedef struct run {
    const mope_trainer_opts *o;
    const mope_dataset *d;
    mope_trainer *tr;
    mope_train_model *m;
    char *ckpt;
    int64_t *train_idx, n_train, *eval_idx, n_eval;
    int64_t *perm, perm_epoch;
    float *ref; /* dpo: (chosen, rejected) reference log-prob per pair */
    tr_buf buf;
} run;

/* A seed per purpose and epoch, so the order never depends on how far a run got. */
static void seeded(mope_rng *r, uint64_t seed, uint64_t purpose, uint64_t epoch) {
    mope_rng_seed(r, seed ^ (0x9E3779B97F4A7C15ull * (purpose + 1)) ^ (0xD1B54A32D192ED03ull * (epoch + 1)));
}

static void shuffle(int64_t *a, int64_t n, mope_rng *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(mope_rng_u64(r) % (uint64_t)(i + 1));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Index of the k-th example the run trains on. */
static int64_t example_at(run *r, int64_t k) {
    int64_t e = k / r->n_train;
    if (e != r->perm_epoch) {
        memcpy(r->perm, r->train_idx, (size_t)r->n_train * sizeof(int64_t));
        mope_rng g;
        seeded(&g, r->o->seed, 1, (uint64_t)e);
        shuffle(r->perm, r->n_train, &g);
        r->perm_epoch = e;
    }
    return r->perm[k % r->n_train];
}

static int split_data(run *r, mope_error *err) {
    int64_t n = r->d->n;
    r->train_idx = malloc((size_t)n * sizeof(int64_t));
    r->perm = malloc((size_t)n * sizeof(int64_t));
    if (!r->train_idx || !r->perm) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) r->train_idx[i] = i;
    r->n_train = n;
    r->perm_epoch = -1;
    if (r->o->kind == MOPE_TRAINER_RM && r->o->eval_frac > 0) {
        mope_rng g;
        seeded(&g, r->o->seed, 2, 0);
        shuffle(r->train_idx, n, &g);
        int64_t ne = (int64_t)floor(r->o->eval_frac * (double)n);
        if (ne < 1) ne = 1;
        if (n - ne < 1)
            return mope_error_set(err, MOPE_EINVAL, "%lld pairs leave nothing to train on after holding out %g",
                                  (long long)n, r->o->eval_frac);
        r->n_train = n - ne;
        r->eval_idx = r->train_idx + r->n_train;
        r->n_eval = ne;
    }
    return 0;
}

static int check_data(const run *r, mope_error *err) {
    const mope_dataset *d = r->d;
    const mope_train_config *c = mope_train_model_config(r->m);
    mope_dataset_kind want = r->o->kind == MOPE_TRAINER_LM    ? MOPE_DATASET_TEXT
                             : r->o->kind == MOPE_TRAINER_SFT ? MOPE_DATASET_SFT
                                                              : MOPE_DATASET_PREF;
    if (d->kind != want)
        return mope_error_set(err, MOPE_EINVAL, "%s training needs a %s dataset", mope_trainer_kind_name(r->o->kind),
                              want == MOPE_DATASET_TEXT ? "text" : want == MOPE_DATASET_SFT ? "prompt/response" : "preference");
    if (d->n < 1) return mope_error_set(err, MOPE_EINVAL, "the dataset is empty");
    if (d->n_ctx > c->n_ctx)
        return mope_error_set(err, MOPE_ERANGE, "the data's context %d exceeds the model's %d", (int)d->n_ctx,
                              c->n_ctx);
    if (r->o->kind == MOPE_TRAINER_RM && !c->value_head)
        return mope_error_set(err, MOPE_EINVAL, "reward-model training needs a model with a value head");
    /* every token id must index the model's embedding */
    int32_t mx = -1;
    if (d->kind == MOPE_DATASET_TEXT)
        for (int64_t i = 0; i < d->n_stream; i++) mx = d->stream[i] > mx ? d->stream[i] : mx;
    for (int64_t i = 0; d->kind != MOPE_DATASET_TEXT && i < d->n; i++) {
        const mope_seq *s[2] = {d->seqs ? &d->seqs[i] : &d->pairs[i].chosen, d->seqs ? NULL : &d->pairs[i].rejected};
        for (int k = 0; k < 2 && s[k]; k++)
            for (int t = 0; t < s[k]->len; t++) mx = s[k]->tokens[t] > mx ? s[k]->tokens[t] : mx;
    }
    if (mx >= c->n_vocab)
        return mope_error_set(err, MOPE_EINVAL,
                              "token id %d is outside the model's vocabulary of %d (tokenizer and model differ)",
                              (int)mx, c->n_vocab);
    return 0;
}

static int fill_writer(const run *r, mope_gguf_writer *w, bool ckpt, mope_error *err) {
    if (r->o->tok && mope_tokenizer_write_gguf_kv(r->o->tok, w, err)) return MOPE_ENOMEM;
    int k = mope_gguf_set_str(w, "mope.trainer.kind", mope_trainer_kind_name(r->o->kind));
    if (!k && ckpt) {
        k = mope_gguf_set_u64(w, "mope.trainer.seed", r->o->seed);
        k = k ? k : mope_gguf_set_u64(w, "mope.trainer.n_examples", (uint64_t)r->d->n);
        k = k ? k : mope_gguf_set_u32(w, "mope.trainer.batch", (uint32_t)r->o->batch);
        k = k ? k : mope_gguf_set_u32(w, "mope.trainer.grad_accum", (uint32_t)r->o->grad_accum);
    }
    if (k) return mope_error_set(err, k, "cannot set the trainer keys");
    if (ckpt && r->ref) {
        int64_t ne = 2 * r->d->n;
        return mope_gguf_add_tensor(w, "mope.dpo.ref_logp", MOPE_TYPE_F32, 1, &ne, r->ref, err);
    }
    return 0;
}

static int params_finite(mope_train_model *m, mope_error *err) {
    /* the trainable buffer: frozen base parameters cannot have changed */
    const float *p = mope_train_model_trainable_params(m);
    size_t n = mope_train_model_n_trainable(m);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return mope_error_set(err, MOPE_ESTATE, "a parameter is not finite (learning rate too high?)");
    return 0;
}

static int save_ckpt(const run *r, mope_error *err) {
    int rc = params_finite(r->m, err);
    if (rc) return rc;
    mope_gguf_writer *w = mope_gguf_writer_new();
    if (!w) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    rc = fill_writer(r, w, true, err);
    if (!rc) rc = mope_train_checkpoint_save(r->tr, r->ckpt, w, err);
    mope_gguf_writer_free(w);
    if (rc) mope_error_prefix(err, "writing checkpoint %s", r->ckpt);
    return rc;
}

static int expect_u64(const mope_gguf *g, const char *key, uint64_t want, const char *what, mope_error *err) {
    uint64_t v;
    if (mope_gguf_get_u64(g, key, &v) != 0) return mope_error_set(err, MOPE_EFORMAT, "missing key %s", key);
    if (v != want)
        return mope_error_set(err, MOPE_EINVAL, "the checkpoint was made with %s %llu, this run has %llu", what,
                              (unsigned long long)v, (unsigned long long)want);
    return 0;
}

/* Loads r->ckpt into r->tr, checking that it belongs to this run. */
static int resume(run *r, mope_error *err) {
    mope_gguf *g = mope_gguf_open(r->ckpt, err);
    if (!g) return err ? err->code : MOPE_EIO;
    int rc = 0;
    mope_gguf_str kind;
    const char *want = mope_trainer_kind_name(r->o->kind);
    if (mope_gguf_get_str(g, "mope.trainer.kind", &kind) != 0 || kind.len != strlen(want) ||
        memcmp(kind.ptr, want, kind.len) != 0)
        rc = mope_error_set(err, MOPE_EINVAL, "not a checkpoint of a '%s' training run", want);
    if (!rc) rc = expect_u64(g, "mope.trainer.seed", r->o->seed, "--seed", err);
    if (!rc) rc = expect_u64(g, "mope.trainer.n_examples", (uint64_t)r->d->n, "a dataset size of", err);
    if (!rc) rc = expect_u64(g, "mope.trainer.batch", (uint64_t)r->o->batch, "--batch", err);
    if (!rc) rc = expect_u64(g, "mope.trainer.grad_accum", (uint64_t)r->o->grad_accum, "--grad-accum", err);
    if (!rc && r->o->kind == MOPE_TRAINER_DPO) {
        const mope_gguf_tensor *t = mope_gguf_find_tensor(g, "mope.dpo.ref_logp");
        if (!t || t->type != MOPE_TYPE_F32 || t->n_elements != 2 * r->d->n)
            rc = mope_error_set(err, MOPE_EFORMAT, "tensor mope.dpo.ref_logp is missing or has the wrong size");
        else if (!(r->ref = malloc((size_t)t->nbytes)))
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        else
            memcpy(r->ref, t->data, t->nbytes);
    }
    mope_gguf_close(g);
    if (!rc) {
        r->tr = mope_train_checkpoint_load(r->ckpt, r->o->n_threads, &r->o->adamw, err);
        if (!r->tr) rc = err ? err->code : MOPE_EFORMAT;
        else r->m = mope_train_trainer_model(r->tr);
    }
    if (rc) mope_error_prefix(err, "resuming from %s", r->ckpt);
    return rc;
}

static int dpo_reference(run *r, mope_error *err) {
    int64_t n = r->d->n;
    const mope_seq **rows = calloc((size_t)n * 2, sizeof *rows);
    double *lp = malloc((size_t)n * 2 * sizeof *lp);
    r->ref = malloc((size_t)n * 2 * sizeof(float));
    int rc = 0;
    if (!rows || !lp || !r->ref) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int64_t i = 0; !rc && i < n; i++) {
        rows[2 * i] = &r->d->pairs[i].chosen;
        rows[2 * i + 1] = &r->d->pairs[i].rejected;
    }
    if (!rc) rc = mope_trainer_seq_logp(r->m, rows, 2 * n, 2 * r->o->batch, lp, err);
    for (int64_t i = 0; !rc && i < 2 * n; i++) r->ref[i] = (float)lp[i];
    free(rows);
    free(lp);
    if (rc) mope_error_prefix(err, "reference log-probabilities");
    return rc;
}

/* One LM / SFT micro-batch through mope_train_model_forward + backward. */
static int lm_micro(run *r, int64_t k0, int n, int n_micro, tr_step_out *out, mope_error *err) {
    const mope_dataset *d = r->d;
    int T;
    if (d->kind == MOPE_DATASET_TEXT) {
        T = d->n_ctx;
        for (int i = 0; i < n; i++) {
            const int32_t *w = d->stream + example_at(r, k0 + i) * d->n_ctx;
            memcpy(r->buf.tokens + (size_t)i * T, w, (size_t)T * sizeof(int32_t));
            memcpy(r->buf.targets + (size_t)i * T, w + 1, (size_t)T * sizeof(int32_t));
        }
        out->tokens += (int64_t)n * T;
    } else {
        const mope_seq *rows[512];
        for (int i = 0; i < n; i++) {
            rows[i] = &d->seqs[example_at(r, k0 + i)];
            out->tokens += rows[i]->len;
        }
        tr_buf_fill(&r->buf, rows, n, NULL, &T);
    }
    float loss;
    int rc = mope_train_model_forward(r->m, r->buf.tokens, r->buf.targets, NULL, n, T, &loss, err);
    if (!rc && !isfinite(loss)) rc = mope_error_set(err, MOPE_ESTATE, "the loss is not finite");
    if (!rc) rc = mope_train_model_backward(r->m, 1.0f / (float)n_micro, err);
    out->loss += (double)loss * n; /* mean over the step's micro-batches, as mope_train_step */
    return rc;
}

static int pref_micro(run *r, int64_t k0, int n, int n_total, tr_step_out *out, mope_error *err) {
    const mope_pref_pair *pairs[512];
    double ref[1024];
    for (int i = 0; i < n; i++) {
        int64_t j = example_at(r, k0 + i);
        pairs[i] = &r->d->pairs[j];
        if (r->ref) {
            ref[2 * i] = r->ref[2 * j];
            ref[2 * i + 1] = r->ref[2 * j + 1];
        }
    }
    if (r->o->kind == MOPE_TRAINER_DPO)
        return tr_dpo_micro(r->m, &r->buf, pairs, ref, n, r->o->dpo_beta, n_total, out, err);
    return tr_rm_micro(r->m, &r->buf, pairs, n, n_total, out, err);
}

static int check_opts(const mope_trainer_opts *o, mope_error *err) {
    if (!o || !o->out) return mope_error_set(err, MOPE_EINVAL, "trainer: no output path");
    if ((unsigned)o->kind > MOPE_TRAINER_RM) return mope_error_set(err, MOPE_EINVAL, "trainer: unknown kind");
    if (o->steps < 1) return mope_error_set(err, MOPE_EINVAL, "trainer: steps must be >= 1");
    if (o->batch < 1 || o->batch > 512) return mope_error_set(err, MOPE_EINVAL, "trainer: batch must be 1..512");
    if (o->grad_accum < 1) return mope_error_set(err, MOPE_EINVAL, "trainer: grad_accum must be >= 1");
    if (o->checkpoint_every < 0) return mope_error_set(err, MOPE_EINVAL, "trainer: checkpoint_every < 0");
    if (o->kind == MOPE_TRAINER_DPO && !(o->dpo_beta > 0 && isfinite(o->dpo_beta)))
        return mope_error_set(err, MOPE_EINVAL, "dpo: beta must be > 0");
    if (!(o->eval_frac >= 0 && o->eval_frac < 1)) return mope_error_set(err, MOPE_EINVAL, "rm: eval_frac not in [0, 1)");
    return 0;
}

static int run_loop(run *r, mope_trainer_result *res, mope_error *err) {
    const mope_trainer_opts *o = r->o;
    const int per_step = o->batch * o->grad_accum;
    const bool pref = o->kind == MOPE_TRAINER_DPO || o->kind == MOPE_TRAINER_RM;
    const double t0 = mope_time_s();
    int64_t tokens = 0, start = mope_train_trainer_step_count(r->tr);
    res->start_step = start;
    float eval_acc = -1, eval_loss = 0;
    for (int64_t step = start; step < o->steps; step++) {
        tr_step_out so = {0};
        mope_train_model_zero_grad(r->m);
        int rc = 0;
        for (int mi = 0; mi < o->grad_accum && !rc; mi++) {
            int64_t k0 = step * per_step + (int64_t)mi * o->batch;
            rc = pref ? pref_micro(r, k0, o->batch, per_step, &so, err)
                      : lm_micro(r, k0, o->batch, o->grad_accum, &so, err);
        }
        mope_train_stats st = {0};
        if (!rc) rc = mope_train_apply(r->tr, &st, err);
        if (rc) {
            mope_train_model_zero_grad(r->m);
            return mope_error_prefix(err, "step %lld", (long long)step + 1), rc;
        }
        tokens += so.tokens;
        mope_trainer_progress p = {0};
        p.kind = o->kind;
        p.step = step + 1;
        p.total_steps = o->steps;
        p.start_step = start;
        p.loss = (float)(so.loss / per_step);
        p.lr = st.lr;
        p.grad_norm = st.grad_norm;
        p.accuracy = pref ? (float)(so.correct / per_step) : -1.0f;
        p.margin = pref ? (float)(so.margin / per_step) : 0.0f;
        p.eval_accuracy = -1;
        if (o->kind == MOPE_TRAINER_RM && r->n_eval > 0 &&
            ((o->eval_every > 0 && p.step % o->eval_every == 0) || p.step == o->steps)) {
            if ((rc = tr_rm_eval(r->m, r->d, r->eval_idx, r->n_eval, o->batch, &eval_acc, &eval_loss, err)))
                return mope_error_prefix(err, "held-out evaluation"), rc;
            p.eval_accuracy = eval_acc;
            p.eval_loss = eval_loss;
        }
        if (o->checkpoint_every > 0 && p.step % o->checkpoint_every == 0) {
            if ((rc = save_ckpt(r, err))) return mope_error_prefix(err, "step %lld", (long long)p.step), rc;
            p.checkpointed = true;
        }
        p.tokens = tokens;
        p.elapsed_s = mope_time_s() - t0;
        p.tokens_per_s = p.elapsed_s > 0 ? (double)tokens / p.elapsed_s : 0;
        p.eta_s = p.elapsed_s / (double)(p.step - start) * (double)(o->steps - p.step);
        res->final_loss = p.loss;
        res->steps_done = p.step;
        if (o->progress && o->progress(o->progress_user, &p)) {
            res->stopped = true;
            return 0;
        }
    }
    res->steps_done = mope_train_trainer_step_count(r->tr);
    res->eval_accuracy = eval_acc;
    res->eval_loss = eval_loss;
    if (o->kind == MOPE_TRAINER_RM && r->n_eval > 0 && eval_acc < 0) {
        int rc = tr_rm_eval(r->m, r->d, r->eval_idx, r->n_eval, o->batch, &res->eval_accuracy, &res->eval_loss, err);
        if (rc) return rc;
    }
    return 0;
}

int mope_trainer_run(const mope_trainer_opts *o, mope_train_model *model, const mope_dataset *data,
                     mope_trainer_result *res, mope_error *err) {
    mope_trainer_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    res->eval_accuracy = -1;
    if (!o) {
        mope_train_model_free(model);
        return mope_error_set(err, MOPE_EINVAL, "trainer: NULL options");
    }
    run r = {0};
    r.o = o;
    r.d = data;
    int rc = check_opts(o, err);
    if (!rc && !data) rc = mope_error_set(err, MOPE_EINVAL, "trainer: no dataset");
    if (!rc) {
        size_t n = strlen(o->out) + 6;
        if (o->checkpoint) r.ckpt = strdup(o->checkpoint);
        else if ((r.ckpt = malloc(n))) snprintf(r.ckpt, n, "%s.ckpt", o->out);
        if (!r.ckpt) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    mope_adamw_config ac = o->adamw;
    if (ac.total_steps <= 0) ac.total_steps = o->steps;
    mope_trainer_opts oc = *o;
    oc.adamw = ac;
    r.o = &oc;
    if (!rc && o->resume && access(r.ckpt, F_OK) == 0) {
        mope_train_model_free(model);
        model = NULL;
        rc = resume(&r, err);
        res->resumed = !rc;
    } else if (!rc) {
        if (!model) rc = mope_error_set(err, MOPE_EINVAL, "trainer: no model");
        r.m = model;
        model = NULL;
        if (!rc) rc = check_data(&r, err);
        if (!rc && o->kind == MOPE_TRAINER_DPO) rc = dpo_reference(&r, err);
        if (!rc) {
            r.tr = mope_train_trainer_new(r.m, &oc.adamw, o->seed, err);
            if (!r.tr) rc = err ? err->code : MOPE_ENOMEM;
        } else {
            mope_train_model_free(r.m);
        }
        if (!r.tr) r.m = NULL;
    }
    mope_train_model_free(model);
    if (!rc && res->resumed) rc = check_data(&r, err);
    if (!rc) rc = split_data(&r, err);
    if (!rc) rc = tr_buf_init(&r.buf, 2 * o->batch, mope_train_model_config(r.m)->n_ctx, err);
    res->n_train = r.n_train;
    res->n_eval = r.n_eval;
    if (!rc) rc = run_loop(&r, res, err);
    if (!rc && !res->stopped) {
        rc = params_finite(r.m, err);
        mope_gguf_writer *w = rc ? NULL : mope_gguf_writer_new();
        if (!rc && !w) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        /* With an adapter only the adapter was trained: the output is the
         * adapter file (no tokenizer keys: it is applied to its base). */
        bool lora = mope_train_model_has_lora(r.m);
        if (!rc && lora && mope_gguf_set_str(w, "mope.trainer.kind", mope_trainer_kind_name(o->kind)))
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (!rc && !lora) rc = fill_writer(&r, w, false, err);
        if (!rc) rc = lora ? mope_train_model_lora_save(r.m, o->out, w, err) : mope_train_model_save(r.m, o->out, w, err);
        if (rc) mope_error_prefix(err, "writing %s", o->out);
        mope_gguf_writer_free(w);
    }
    tr_buf_free(&r.buf);
    mope_train_trainer_free(r.tr);
    free(r.train_idx);
    free(r.perm);
    free(r.ref);
    free(r.ckpt);
    return rc;
}
