/* The trainable model: configuration, the flat parameter layout (named
 * tensors in GGUF order), initialisation, and the activation buffer. */
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void mope_train_config_init(mope_train_config *c) {
    memset(c, 0, sizeof *c);
    c->n_vocab = 256;
    c->n_embd = 64;
    c->n_layer = 2;
    c->n_head = 4;
    c->n_head_kv = 2;
    c->n_ff = 172;
    c->n_ctx = 128;
    c->rope_freq_base = 10000.0f;
    c->rms_eps = 1e-5f;
    c->tied_output = true;
    c->value_head = false;
}

/* Limits keep every index product far from overflow and every dimension
 * inside BLAS's int. */
int mope_train_config_check(const mope_train_config *c, mope_error *err) {
    if (!c) return mope_error_set(err, MOPE_EINVAL, "train config is NULL");
    struct {
        const char *name;
        int v, max;
    } lim[] = {
        {"n_vocab", c->n_vocab, 1 << 24}, {"n_embd", c->n_embd, 1 << 16}, {"n_layer", c->n_layer, 1 << 10},
        {"n_head", c->n_head, 1 << 12},   {"n_head_kv", c->n_head_kv, 1 << 12}, {"n_ff", c->n_ff, 1 << 20},
        {"n_ctx", c->n_ctx, 1 << 20},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (lim[i].v < 1 || lim[i].v > lim[i].max)
            return mope_error_set(err, MOPE_EINVAL, "train config: %s = %d is outside [1, %d]", lim[i].name,
                                  lim[i].v, lim[i].max);
    if (c->n_embd % c->n_head)
        return mope_error_set(err, MOPE_EINVAL, "train config: n_embd %d is not a multiple of n_head %d", c->n_embd,
                              c->n_head);
    if ((c->n_embd / c->n_head) % 2)
        return mope_error_set(err, MOPE_EINVAL, "train config: head_dim %d is odd (RoPE rotates pairs)",
                              c->n_embd / c->n_head);
    if (c->n_head % c->n_head_kv)
        return mope_error_set(err, MOPE_EINVAL, "train config: n_head %d is not a multiple of n_head_kv %d",
                              c->n_head, c->n_head_kv);
    if (!(c->rope_freq_base > 0) || !isfinite(c->rope_freq_base))
        return mope_error_set(err, MOPE_EINVAL, "train config: rope_freq_base %g must be positive",
                              (double)c->rope_freq_base);
    if (!(c->rms_eps > 0) || !isfinite(c->rms_eps))
        return mope_error_set(err, MOPE_EINVAL, "train config: rms_eps %g must be positive", (double)c->rms_eps);
    /* parameter count (each factor is bounded, so the products fit in u64) */
    uint64_t C = (uint64_t)c->n_embd, hd = C / (uint64_t)c->n_head, kd = hd * (uint64_t)c->n_head_kv;
    uint64_t per = 2 * C + 2 * C * C + 2 * C * kd + 3 * C * (uint64_t)c->n_ff;
    uint64_t total = (uint64_t)c->n_layer * per + (uint64_t)c->n_vocab * C * (c->tied_output ? 1 : 2) + C + C + 1;
    if (total > ((uint64_t)1 << 34))
        return mope_error_set(err, MOPE_EINVAL, "train config: %llu parameters is too many for f32 training",
                              (unsigned long long)total);
    if ((uint64_t)c->n_ctx * hd > ((uint64_t)1 << 28))
        return mope_error_set(err, MOPE_EINVAL, "train config: context %d x head_dim %llu is too large", c->n_ctx,
                              (unsigned long long)hd);
    return 0;
}

/* ---- layout ---- */

static void add_tensor(mope_train_model *m, size_t *off, const char *name, int64_t ne0, int64_t ne1, bool decay) {
    mope_train_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne1 > 0 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1 > 0 ? ne1 : 1;
    t->offset = *off;
    t->n = (size_t)ne0 * (size_t)t->ne[1];
    t->decay = decay;
    /* 16-float alignment keeps every tensor on a cache line */
    *off += (t->n + 15) & ~(size_t)15;
}

static void build_layout(mope_train_model *m) {
    const mope_train_config *c = &m->cfg;
    int64_t C = c->n_embd, V = c->n_vocab, F = c->n_ff;
    size_t off = 0;
    char name[64];
    m->n_tensors = 0;
    add_tensor(m, &off, "token_embd.weight", C, V, true);
    for (int l = 0; l < c->n_layer; l++) {
        struct {
            const char *s;
            int64_t ne0, ne1;
            bool decay;
        } defs[] = {
            {"attn_norm.weight", C, 0, false}, {"attn_q.weight", C, m->qd, true}, {"attn_k.weight", C, m->kd, true},
            {"attn_v.weight", C, m->kd, true}, {"attn_output.weight", m->qd, C, true},
            {"ffn_norm.weight", C, 0, false},  {"ffn_gate.weight", C, F, true},   {"ffn_up.weight", C, F, true},
            {"ffn_down.weight", F, C, true},
        };
        for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
            snprintf(name, sizeof name, "blk.%d.%s", l, defs[i].s);
            add_tensor(m, &off, name, defs[i].ne0, defs[i].ne1, defs[i].decay);
        }
    }
    add_tensor(m, &off, "output_norm.weight", C, 0, false);
    if (!c->tied_output) add_tensor(m, &off, "output.weight", C, V, true);
    if (c->value_head) {
        add_tensor(m, &off, "mope.value_head.weight", C, 0, true);
        add_tensor(m, &off, "mope.value_head.bias", 1, 0, false);
    }
    m->n_params = off;
}

static void bind(const mope_train_model *m, float *base, tweights *w) {
    const mope_train_config *c = &m->cfg;
    int i = 0;
#define NEXT (base + m->tensors[i++].offset)
    w->embd = NEXT;
    for (int l = 0; l < c->n_layer; l++) {
        tlayer *L = &w->layer[l];
        L->attn_norm = NEXT;
        L->wq = NEXT;
        L->wk = NEXT;
        L->wv = NEXT;
        L->wo = NEXT;
        L->ffn_norm = NEXT;
        L->wg = NEXT;
        L->wu = NEXT;
        L->wd = NEXT;
    }
    w->out_norm = NEXT;
    w->out = c->tied_output ? w->embd : NEXT;
    w->vh_w = c->value_head ? NEXT : NULL;
    w->vh_b = c->value_head ? NEXT : NULL;
#undef NEXT
}

mope_train_model *mope_train_model_new(const mope_train_config *c, int n_threads, mope_error *err) {
    return tm_create(c, n_threads, true, err);
}

mope_train_model *tm_create(const mope_train_config *c, int n_threads, bool allocate, mope_error *err) {
    if (mope_train_config_check(c, err)) return NULL;
    mope_train_model *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = *c;
    m->hd = c->n_embd / c->n_head;
    m->qd = m->hd * c->n_head;
    m->kd = m->hd * c->n_head_kv;
    m->tensors = calloc((size_t)c->n_layer * 9 + 5, sizeof *m->tensors);
    m->w.layer = calloc((size_t)c->n_layer, sizeof(tlayer));
    m->g.layer = calloc((size_t)c->n_layer, sizeof(tlayer));
    if (!m->tensors || !m->w.layer || !m->g.layer) goto oom;
    build_layout(m);
    if (!allocate) return m;
    m->params = mope_alloc(m->n_params, sizeof(float));
    m->grads = mope_alloc(m->n_params, sizeof(float));
    if (!m->params || !m->grads) {
        mope_error_set(err, MOPE_ENOMEM, "cannot allocate %zu parameters (and gradients)", m->n_params);
        mope_train_model_free(m);
        return NULL;
    }
    bind(m, m->params, &m->w);
    bind(m, m->grads, &m->g);

    int half = m->hd / 2;
    m->rope_cos = mope_alloc((size_t)c->n_ctx * half, sizeof(float));
    m->rope_sin = mope_alloc((size_t)c->n_ctx * half, sizeof(float));
    if (!m->rope_cos || !m->rope_sin) goto oom;
    /* angles in double: pos * base^(-2i/hd) loses bits in f32 at long contexts */
    for (int pos = 0; pos < c->n_ctx; pos++)
        for (int i = 0; i < half; i++) {
            double th = pos * pow((double)c->rope_freq_base, -2.0 * i / m->hd);
            m->rope_cos[(size_t)pos * half + i] = (float)cos(th);
            m->rope_sin[(size_t)pos * half + i] = (float)sin(th);
        }

    m->pool = mope_pool_create(n_threads, err);
    m->gemm_pool = m->pool;
    if (!m->pool) {
        mope_train_model_free(m);
        return NULL;
    }
    m->n_threads = mope_pool_size(m->pool);
    m->kern = tl_kernels_best();
    return m;
oom:
    mope_error_set(err, MOPE_ENOMEM, "out of memory creating the trainable model");
    mope_train_model_free(m);
    return NULL;
}

void mope_train_model_free(mope_train_model *m) {
    if (!m) return;
    mope_train_model_lora_remove(m);
    mope_pool_free(m->pool);
    mope_free(m->params);
    mope_free(m->grads);
    mope_free(m->rope_cos);
    mope_free(m->rope_sin);
    mope_free(m->buf);
    free(m->tok);
    free(m->tgt);
    free(m->len);
    free(m->wgt);
    free(m->tensors);
    free(m->w.layer);
    free(m->g.layer);
    free(m);
}

const mope_train_config *mope_train_model_config(const mope_train_model *m) { return &m->cfg; }
int mope_train_model_n_threads(const mope_train_model *m) { return m->n_threads; }
size_t mope_train_model_n_params(const mope_train_model *m) { return m->n_params; }
float *mope_train_model_params(mope_train_model *m) { return m->params; }
float *mope_train_model_grads(mope_train_model *m) { return m->grads; }
int mope_train_model_n_tensors(const mope_train_model *m) { return m->n_tensors; }

const mope_train_tensor *mope_train_model_tensor(const mope_train_model *m, int i) {
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}

const mope_train_tensor *mope_train_model_find(const mope_train_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

/* With an adapter the base gradients stay zero (nothing writes them). */
void mope_train_model_zero_grad(mope_train_model *m) {
    float *g;
    const mope_train_tensor *t;
    float *p;
    int nt;
    size_t n;
    tm_trainable(m, &t, &nt, &p, &g, &n);
    memset(g, 0, n * sizeof(float));
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void mope_train_model_init_random(mope_train_model *m, uint64_t seed) {
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    float resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    memset(m->params, 0, m->n_params * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const mope_train_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (ends_with(t->name, "_norm.weight")) {
            for (size_t k = 0; k < t->n; k++) p[k] = 1.0f;
        } else if (ends_with(t->name, ".bias")) {
            continue;
        } else {
            float std = ends_with(t->name, "attn_output.weight") || ends_with(t->name, "ffn_down.weight")
                            ? resid_std
                            : 0.02f;
            for (size_t k = 0; k < t->n; k++) p[k] = std * mope_rng_normal(&rng);
        }
    }
}

/* ---- activation buffer ---- */

typedef struct {
    float *base;
    size_t off;
    bool overflow;
} bump;

static float *take(bump *b, size_t n1, size_t n2) {
    if (n2 && n1 > SIZE_MAX / 4 / n2) {
        b->overflow = true;
        return NULL;
    }
    size_t n = (n1 * n2 + 15) & ~(size_t)15;
    if (n > SIZE_MAX / 4 - b->off) {
        b->overflow = true;
        return NULL;
    }
    float *p = b->base ? b->base + b->off : NULL;
    b->off += n;
    return p;
}

/* Lays out (or with base NULL, just measures) the activations and scratch
 * for a B x T batch in the given mode. */
static size_t layout(mope_train_model *m, float *base, int mode, int B, int T, bool *overflow) {
    const mope_train_config *c = &m->cfg;
    size_t N = (size_t)B * T, L = (size_t)c->n_layer, C = (size_t)c->n_embd, F = (size_t)c->n_ff;
    size_t QD = (size_t)m->qd, KD = (size_t)m->kd;
    bump b = {base, 0, false};
    tacts *a = &m->a;
    tgrads *d = &m->d;
    a->res = take(&b, (L + 1) * N, C);
    a->xn1 = take(&b, L * N, C);
    a->rstd1 = take(&b, L, N);
    a->q = take(&b, L * N, QD);
    a->k = take(&b, L * N, KD);
    a->v = take(&b, L * N, KD);
    a->att = take(&b, L * (size_t)B * (size_t)c->n_head, (size_t)T * T);
    a->yatt = take(&b, L * N, QD);
    a->mid = take(&b, L * N, C);
    a->xn2 = take(&b, L * N, C);
    a->rstd2 = take(&b, L, N);
    a->gate = take(&b, L * N, F);
    a->up = take(&b, L * N, F);
    a->hmlp = take(&b, L * N, F);
    a->xf = take(&b, N, C);
    a->rstdf = take(&b, N, 1);
    a->logits = mode == TMODE_LM ? take(&b, N, (size_t)c->n_vocab) : NULL;
    a->lse = take(&b, N, 1);
    a->nll = take(&b, N, 1);
    d->dres = take(&b, N, C);
    d->dxn = take(&b, N, C);
    d->dy = take(&b, N, QD);
    d->dq = take(&b, N, QD);
    d->dk = take(&b, N, KD);
    d->dv = take(&b, N, KD);
    d->dfa = take(&b, N, F);
    d->dfb = take(&b, N, F);
    d->thr = take(&b, (size_t)m->n_threads, (size_t)(m->hd + 1) * T);
    *overflow = b.overflow;
    return b.off;
}

int tm_prepare(mope_train_model *m, int mode, int B, int T, mope_error *err) {
    if (B < 1 || T < 1) return mope_error_set(err, MOPE_EINVAL, "batch shape %d x %d must be positive", B, T);
    if (T > m->cfg.n_ctx)
        return mope_error_set(err, MOPE_ERANGE, "sequence length %d exceeds the model context %d", T, m->cfg.n_ctx);
    if ((int64_t)B * T > (1 << 28))
        return mope_error_set(err, MOPE_EINVAL, "batch of %d x %d tokens is too large", B, T);
    bool overflow;
    size_t need = layout(m, NULL, mode, B, T, &overflow);
    if (overflow) return mope_error_set(err, MOPE_ENOMEM, "activations for a %d x %d batch overflow memory", B, T);
    if (need > m->buf_cap) {
        mope_free(m->buf);
        m->buf = mope_alloc(need, sizeof(float));
        m->buf_cap = m->buf ? need : 0;
        if (!m->buf) {
            m->mode = TMODE_NONE;
            return mope_error_set(err, MOPE_ENOMEM, "cannot allocate %zu MiB of activations for a %d x %d batch",
                                  need / (1024 * 1024 / 4), B, T);
        }
    }
    layout(m, m->buf, mode, B, T, &overflow);
    size_t N = (size_t)B * T;
    if (N > m->in_cap) {
        free(m->tok);
        free(m->tgt);
        free(m->wgt);
        m->tok = malloc(N * sizeof(int32_t));
        m->tgt = malloc(N * sizeof(int32_t));
        m->wgt = malloc(N * sizeof(float));
        m->in_cap = m->tok && m->tgt && m->wgt ? N : 0;
        if (!m->in_cap) {
            m->mode = TMODE_NONE;
            return mope_error_set(err, MOPE_ENOMEM, "out of memory for a %d x %d batch", B, T);
        }
    }
    if ((size_t)B > m->len_cap) {
        free(m->len);
        m->len = malloc((size_t)B * sizeof(int32_t));
        m->len_cap = m->len ? (size_t)B : 0;
        if (!m->len) {
            m->mode = TMODE_NONE;
            return mope_error_set(err, MOPE_ENOMEM, "out of memory for a %d x %d batch", B, T);
        }
    }
    int rc = tlora_prepare(m, N, err);
    if (rc) {
        m->mode = TMODE_NONE;
        return rc;
    }
    m->B = B;
    m->T = T;
    return 0;
}
