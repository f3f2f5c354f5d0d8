/* AdamW with decoupled weight decay, warmup + cosine schedule, global-norm
 * clipping, and the trainer that ties them to a model. */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>

void mope_adamw_config_init(mope_adamw_config *c) {
    c->lr = 3e-4f;
    c->min_lr = 3e-5f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->weight_decay = 0.1f;
    c->grad_clip = 1.0f;
    c->warmup_steps = 0;
    c->total_steps = 0;
}

static int adamw_check(const mope_adamw_config *c, mope_error *err) {
    if (!c) return mope_error_set(err, MOPE_EINVAL, "AdamW config is NULL");
    if (!(c->lr >= 0) || !isfinite(c->lr) || !(c->min_lr >= 0) || !isfinite(c->min_lr))
        return mope_error_set(err, MOPE_EINVAL, "AdamW: learning rates (%g, min %g) must be finite and >= 0",
                              (double)c->lr, (double)c->min_lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return mope_error_set(err, MOPE_EINVAL, "AdamW: betas (%g, %g) must lie in [0, 1)", (double)c->beta1,
                              (double)c->beta2);
    if (!(c->eps >= 0) || !isfinite(c->eps) || !(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return mope_error_set(err, MOPE_EINVAL, "AdamW: eps %g and weight decay %g must be finite and >= 0",
                              (double)c->eps, (double)c->weight_decay);
    if (isnan(c->grad_clip)) return mope_error_set(err, MOPE_EINVAL, "AdamW: grad_clip is NaN");
    if (c->warmup_steps < 0 || c->total_steps < 0)
        return mope_error_set(err, MOPE_EINVAL, "AdamW: warmup %lld and total %lld steps must be >= 0",
                              (long long)c->warmup_steps, (long long)c->total_steps);
    return 0;
}

float mope_train_lr_at(const mope_adamw_config *c, int64_t step) {
    if (step < 0) step = 0;
    if (step < c->warmup_steps) return (float)((double)c->lr * (double)(step + 1) / (double)c->warmup_steps);
    if (c->total_steps <= c->warmup_steps) return c->lr;
    if (step >= c->total_steps) return c->min_lr;
    double p = (double)(step - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    return (float)(c->min_lr + ((double)c->lr - c->min_lr) * 0.5 * (1.0 + cos(M_PI * p)));
}

void mope_train_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                             const mope_adamw_config *c, bool decay, int64_t t) {
    float b1 = c->beta1, b2 = c->beta2;
    /* bias corrections in double: 1 - b2^t is tiny for small t */
    float bc1 = (float)(1.0 - pow(b1, (double)t)), bc2 = (float)(1.0 - pow(b2, (double)t));
    float shrink = decay ? 1.0f - lr * c->weight_decay : 1.0f;
    size_t i = 0;
    if (tl_kernels_best() == &tl_kernels_avx2)
        i = tl_adamw_avx2(p, g, m, v, n, b1, b2, bc1, bc2, shrink, lr, c->eps);
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * shrink - lr * (mi / bc1) / (sqrtf(vi / bc2) + c->eps);
    }
}

/* ---- gradient norm: partial sums over fixed 64k-element chunks, added in
 * chunk order, so the result does not depend on the thread count ---- */

enum { NORM_CHUNK = 1 << 16 };

typedef struct {
    const float *g;
    size_t n, n_chunks;
    double *part;
    float factor;
    float *gw;
} norm_job;

static void sumsq_job(void *ctx, int ith, int nth) {
    norm_job *j = ctx;
    int64_t lo, hi;
    mope_split((int64_t)j->n_chunks, ith, nth, &lo, &hi);
    for (int64_t ch = lo; ch < hi; ch++) {
        size_t a = (size_t)ch * NORM_CHUNK, b = a + NORM_CHUNK < j->n ? a + NORM_CHUNK : j->n;
        double s = 0;
        for (size_t i = a; i < b; i++) s += (double)j->g[i] * j->g[i];
        j->part[ch] = s;
    }
}

static void scale_job(void *ctx, int ith, int nth) {
    norm_job *j = ctx;
    int64_t lo, hi;
    mope_split((int64_t)j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) j->gw[i] *= j->factor;
}

double mope_train_grad_norm(mope_train_model *m) {
    const mope_train_tensor *tt;
    int nt;
    float *gp, *gg;
    size_t np;
    tm_trainable(m, &tt, &nt, &gp, &gg, &np);
    size_t n_chunks = (np + NORM_CHUNK - 1) / NORM_CHUNK;
    double stackpart[64], *part = n_chunks <= 64 ? stackpart : malloc(n_chunks * sizeof(double));
    if (!part) { /* serial fallback, same order */
        double s = 0;
        for (size_t ch = 0; ch < n_chunks; ch++) {
            double cs = 0;
            size_t a = ch * NORM_CHUNK, b = a + NORM_CHUNK < np ? a + NORM_CHUNK : np;
            for (size_t i = a; i < b; i++) cs += (double)gg[i] * gg[i];
            s += cs;
        }
        return sqrt(s);
    }
    norm_job j = {.g = gg, .n = np, .n_chunks = n_chunks, .part = part};
    mope_pool_run(m->pool, sumsq_job, &j);
    double s = 0;
    for (size_t ch = 0; ch < n_chunks; ch++) s += part[ch];
    if (part != stackpart) free(part);
    return sqrt(s);
}

double mope_train_clip_grads(mope_train_model *m, double max_norm) {
    double norm = mope_train_grad_norm(m);
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) {
        norm_job j = {.gw = mope_train_model_trainable_grads(m), .n = mope_train_model_n_trainable(m),
                      .factor = (float)(max_norm / norm)};
        mope_pool_run(m->pool, scale_job, &j);
    }
    return norm;
}

/* ---- trainer ---- */

mope_trainer *mope_train_trainer_new(mope_train_model *model, const mope_adamw_config *c, uint64_t seed,
                                     mope_error *err) {
    if (!model) {
        mope_error_set(err, MOPE_EINVAL, "trainer: model is NULL");
        return NULL;
    }
    if (adamw_check(c, err)) {
        mope_train_model_free(model);
        return NULL;
    }
    mope_trainer *tr = calloc(1, sizeof *tr);
    if (tr) {
        tr->model = model;
        tr->cfg = *c;
        /* the trainable buffer: the adapter when one is attached */
        tr->n_opt = mope_train_model_n_trainable(model);
        tr->m = mope_alloc(tr->n_opt, sizeof(float));
        tr->v = mope_alloc(tr->n_opt, sizeof(float));
    }
    if (!tr || !tr->m || !tr->v) {
        mope_error_set(err, MOPE_ENOMEM, "cannot allocate AdamW state for %zu parameters",
                       mope_train_model_n_trainable(model));
        if (tr) mope_train_trainer_free(tr);
        else mope_train_model_free(model);
        return NULL;
    }
    mope_rng_seed(&tr->rng, seed);
    return tr;
}

void mope_train_trainer_free(mope_trainer *tr) {
    if (!tr) return;
    mope_train_model_free(tr->model);
    mope_free(tr->m);
    mope_free(tr->v);
    free(tr);
}

mope_train_model *mope_train_trainer_model(mope_trainer *tr) { return tr->model; }
mope_rng *mope_train_trainer_rng(mope_trainer *tr) { return &tr->rng; }
int64_t mope_train_trainer_step_count(const mope_trainer *tr) { return tr->step; }
const mope_adamw_config *mope_train_trainer_config(const mope_trainer *tr) { return &tr->cfg; }

typedef struct {
    mope_trainer *tr;
    float lr;
} update_job;

/* Each thread takes the same fraction of every tensor: the update is
 * element-wise, so the split only balances the load. */
static void update_job_fn(void *ctx, int ith, int nth) {
    update_job *j = ctx;
    mope_trainer *tr = j->tr;
    const mope_train_tensor *tt;
    int nt;
    float *p, *g;
    size_t np;
    tm_trainable(tr->model, &tt, &nt, &p, &g, &np);
    for (int i = 0; i < nt; i++) {
        const mope_train_tensor *t = &tt[i];
        int64_t lo, hi;
        mope_split((int64_t)t->n, ith, nth, &lo, &hi);
        size_t o = t->offset + (size_t)lo;
        mope_train_adamw_update(p + o, g + o, tr->m + o, tr->v + o, (size_t)(hi - lo), j->lr, &tr->cfg, t->decay,
                                tr->step + 1);
    }
}

int mope_train_apply(mope_trainer *tr, mope_train_stats *st, mope_error *err) {
    mope_train_model *m = tr->model;
    if (mope_train_model_n_trainable(m) != tr->n_opt) {
        mope_train_model_zero_grad(m);
        return mope_error_set(err, MOPE_ESTATE,
                              "the trainable buffer changed (%zu floats, the optimiser holds %zu): attach or detach a "
                              "LoRA adapter before creating the trainer",
                              mope_train_model_n_trainable(m), tr->n_opt);
    }
    double norm = mope_train_clip_grads(m, tr->cfg.grad_clip);
    if (!isfinite(norm)) {
        mope_train_model_zero_grad(m);
        return mope_error_set(err, MOPE_ESTATE, "step %lld: gradient norm is not finite; update skipped",
                              (long long)tr->step);
    }
    update_job j = {tr, mope_train_lr_at(&tr->cfg, tr->step)};
    mope_pool_run(m->pool, update_job_fn, &j);
    tr->step++;
    mope_train_model_zero_grad(m);
    if (st) {
        st->loss = 0;
        st->grad_norm = (float)norm;
        st->lr = j.lr;
        st->step = tr->step;
    }
    return 0;
}

int mope_train_step(mope_trainer *tr, const mope_train_batch *micro, int n_micro, mope_train_stats *st,
                    mope_error *err) {
    if (!micro || n_micro < 1) return mope_error_set(err, MOPE_EINVAL, "train step: no micro-batches");
    mope_train_model *m = tr->model;
    mope_train_model_zero_grad(m);
    double loss_sum = 0;
    for (int i = 0; i < n_micro; i++) {
        const mope_train_batch *b = &micro[i];
        float loss;
        int rc = mope_train_model_forward(m, b->tokens, b->targets, b->weights, b->B, b->T, &loss, err);
        if (!rc) rc = mope_train_model_backward(m, 1.0f / (float)n_micro, err);
        if (rc) {
            mope_train_model_zero_grad(m);
            mope_error_prefix(err, "micro-batch %d", i);
            return rc;
        }
        loss_sum += loss;
    }
    int rc = mope_train_apply(tr, st, err);
    if (rc) return rc;
    if (st) st->loss = (float)(loss_sum / n_micro);
    return 0;
}
