/* LoRA on the trainable model: the adapter buffer and its layout, the
 * forward / backward of the low-rank path, inverted dropout on its input,
 * merging, and the "trainable buffer" the optimiser works on.
 *
 * Per adapted linear (x [N, in] rows, W (out, in)):
 *   xd = drop(x);  u = xd A^T [N, r];  y += s u B^T
 *   dB += s dy^T u;  du = s dy B;  dA += du^T xd;  dx += drop'(du A)
 * The dropout mask is a hash of (seed, pass, linear, element), so the
 * backward recomputes it instead of storing one [N, in] mask per linear. */
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const SLOT_NAME[TL_NLIN] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down"};

void tlora_base_name(const mope_train_model *m, int id, char *out, size_t cap) {
    if (id >= m->cfg.n_layer * TL_NLIN) snprintf(out, cap, "output.weight");
    else snprintf(out, cap, "blk.%d.%s.weight", id / TL_NLIN, SLOT_NAME[id % TL_NLIN]);
}

/* Shape (n_in, n_out) of linear id and its pointers into a weight set. */
static void lin_shape(const mope_train_model *m, int id, int *n_in, int *n_out) {
    const mope_train_config *c = &m->cfg;
    int C = c->n_embd, F = c->n_ff;
    if (id >= c->n_layer * TL_NLIN) {
        *n_in = C, *n_out = c->n_vocab;
        return;
    }
    switch (id % TL_NLIN) {
    case TL_Q: *n_in = C, *n_out = m->qd; break;
    case TL_K:
    case TL_V: *n_in = C, *n_out = m->kd; break;
    case TL_O: *n_in = m->qd, *n_out = C; break;
    case TL_GATE:
    case TL_UP: *n_in = C, *n_out = F; break;
    default: *n_in = F, *n_out = C; break;
    }
}

static float *base_weight(mope_train_model *m, int id) {
    if (id >= m->cfg.n_layer * TL_NLIN) return m->w.out;
    tlayer *L = &m->w.layer[id / TL_NLIN];
    float *const p[TL_NLIN] = {L->wq, L->wk, L->wv, L->wo, L->wg, L->wu, L->wd};
    return p[id % TL_NLIN];
}

static bool targeted(unsigned targets, int id, int n_layer) {
    return id >= n_layer * TL_NLIN ? (targets & MOPE_LORA_OUTPUT) != 0 : (targets >> (id % TL_NLIN)) & 1u;
}

static void lora_free(tlora *lo) {
    if (!lo) return;
    mope_free(lo->params);
    mope_free(lo->grads);
    mope_free(lo->buf);
    free(lo->tensors);
    free(lo->lin);
    free(lo);
}

int mope_train_model_add_lora(mope_train_model *m, int rank, float alpha, unsigned targets, float dropout,
                              uint64_t seed, mope_error *err) {
    if (!m) return mope_error_set(err, MOPE_EINVAL, "add_lora: model is NULL");
    if (m->lora) return mope_error_set(err, MOPE_ESTATE, "add_lora: the model already has a LoRA adapter");
    if (!targets || (targets & ~0xffu))
        return mope_error_set(err, MOPE_EINVAL, "add_lora: target mask 0x%x must be a non-empty subset of 0xff",
                              targets);
    if ((targets & MOPE_LORA_OUTPUT) && m->cfg.tied_output)
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "add_lora: the output target needs an untied output.weight (this model ties it to "
                              "token_embd.weight)");
    if (!(alpha >= 0) || !isfinite(alpha))
        return mope_error_set(err, MOPE_EINVAL, "add_lora: alpha %g must be finite and >= 0", (double)alpha);
    if (!(dropout >= 0 && dropout < 1))
        return mope_error_set(err, MOPE_EINVAL, "add_lora: dropout %g must lie in [0, 1)", (double)dropout);
    int n_lin = m->cfg.n_layer * TL_NLIN + 1;
    for (int id = 0; id < n_lin; id++) {
        int ni, no;
        lin_shape(m, id, &ni, &no);
        if (targeted(targets, id, m->cfg.n_layer) && (rank < 1 || rank > ni || rank > no)) {
            char name[64];
            tlora_base_name(m, id, name, sizeof name);
            return mope_error_set(err, MOPE_EINVAL, "add_lora: rank %d is outside [1, %d] for %s (%d -> %d)", rank,
                                  ni < no ? ni : no, name, ni, no);
        }
    }
    tlora *lo = calloc(1, sizeof *lo);
    if (lo) {
        lo->tensors = calloc((size_t)n_lin * 2, sizeof *lo->tensors);
        lo->lin = calloc((size_t)n_lin, sizeof *lo->lin);
    }
    if (!lo || !lo->tensors || !lo->lin) goto oom;
    lo->rank = rank;
    lo->alpha = alpha;
    lo->scale = alpha > 0 ? alpha / (float)rank : 1.0f;
    lo->dropout = dropout;
    lo->targets = targets;
    lo->seed = seed;
    lo->n_lin = n_lin;

    /* layout: A then B of each adapted linear, in model order */
    size_t off = 0;
    for (int id = 0; id < n_lin; id++) {
        tlora_lin *L = &lo->lin[id];
        lin_shape(m, id, &L->n_in, &L->n_out);
        if (!targeted(targets, id, m->cfg.n_layer)) continue;
        char base[48]; /* "blk.1023.attn_output.weight" at most */
        tlora_base_name(m, id, base, sizeof base);
        for (int ab = 0; ab < 2; ab++) {
            mope_train_tensor *t = &lo->tensors[lo->n_tensors++];
            snprintf(t->name, sizeof t->name, "%s.lora_%c", base, ab ? 'b' : 'a');
            t->n_dims = 2;
            t->ne[0] = ab ? rank : L->n_in;
            t->ne[1] = ab ? L->n_out : rank;
            t->offset = off;
            t->n = (size_t)t->ne[0] * (size_t)t->ne[1];
            t->decay = true; /* like any matrix (PEFT + HF Trainer decay LoRA weights) */
            off += (t->n + 15) & ~(size_t)15;
        }
    }
    lo->n_params = off;
    lo->params = mope_alloc(off, sizeof(float));
    lo->grads = mope_alloc(off, sizeof(float));
    if (!lo->params || !lo->grads) goto oom;
    int ti = 0;
    for (int id = 0; id < n_lin; id++) {
        tlora_lin *L = &lo->lin[id];
        if (!targeted(targets, id, m->cfg.n_layer)) continue;
        L->a = lo->params + lo->tensors[ti].offset;
        L->ga = lo->grads + lo->tensors[ti++].offset;
        L->b = lo->params + lo->tensors[ti].offset;
        L->gb = lo->grads + lo->tensors[ti++].offset;
    }
    /* PEFT: kaiming_uniform_(A, a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0 */
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    for (int id = 0; id < n_lin; id++) {
        tlora_lin *L = &lo->lin[id];
        if (!L->a) continue;
        float bound = 1.0f / sqrtf((float)L->n_in);
        for (size_t k = 0; k < (size_t)rank * L->n_in; k++) L->a[k] = bound * (2.0f * mope_rng_uniform(&rng) - 1.0f);
    }
    m->lora = lo;
    m->mode = TMODE_NONE; /* the saved activations lack the adapter's */
    /* frozen from now on: nothing writes the base gradients, so clear them once */
    memset(m->grads, 0, m->n_params * sizeof(float));
    return 0;
oom:
    lora_free(lo);
    return mope_error_set(err, MOPE_ENOMEM, "add_lora: out of memory");
}

bool mope_train_model_has_lora(const mope_train_model *m) { return m && m->lora; }

int mope_train_model_lora_info(const mope_train_model *m, mope_train_lora_info *out, mope_error *err) {
    if (!m || !out) return mope_error_set(err, MOPE_EINVAL, "lora_info: NULL argument");
    if (!m->lora) return mope_error_set(err, MOPE_ESTATE, "lora_info: the model has no LoRA adapter");
    const tlora *lo = m->lora;
    *out = (mope_train_lora_info){lo->rank, lo->alpha, lo->scale, lo->dropout, lo->targets, lo->n_params,
                                  lo->n_tensors};
    return 0;
}

int mope_train_model_lora_set_dropout(mope_train_model *m, float dropout, mope_error *err) {
    if (!m || !m->lora) return mope_error_set(err, MOPE_ESTATE, "lora_set_dropout: the model has no LoRA adapter");
    if (!(dropout >= 0 && dropout < 1))
        return mope_error_set(err, MOPE_EINVAL, "lora_set_dropout: dropout %g must lie in [0, 1)", (double)dropout);
    m->lora->dropout = dropout;
    m->mode = TMODE_NONE; /* a backward must use the mask its forward used */
    return 0;
}

int mope_train_model_lora_n_tensors(const mope_train_model *m) { return m && m->lora ? m->lora->n_tensors : 0; }
const mope_train_tensor *mope_train_model_lora_tensor(const mope_train_model *m, int i) {
    return m && m->lora && i >= 0 && i < m->lora->n_tensors ? &m->lora->tensors[i] : NULL;
}
float *mope_train_model_lora_params(mope_train_model *m) { return m && m->lora ? m->lora->params : NULL; }
float *mope_train_model_lora_grads(mope_train_model *m) { return m && m->lora ? m->lora->grads : NULL; }

size_t mope_train_model_n_trainable(const mope_train_model *m) { return m->lora ? m->lora->n_params : m->n_params; }
float *mope_train_model_trainable_params(mope_train_model *m) { return m->lora ? m->lora->params : m->params; }
float *mope_train_model_trainable_grads(mope_train_model *m) { return m->lora ? m->lora->grads : m->grads; }

void tm_trainable(mope_train_model *m, const mope_train_tensor **t, int *n_t, float **p, float **g, size_t *n) {
    if (m->lora) {
        *t = m->lora->tensors, *n_t = m->lora->n_tensors, *p = m->lora->params, *g = m->lora->grads;
        *n = m->lora->n_params;
    } else {
        *t = m->tensors, *n_t = m->n_tensors, *p = m->params, *g = m->grads, *n = m->n_params;
    }
}

void mope_train_model_lora_remove(mope_train_model *m) {
    if (!m || !m->lora) return;
    lora_free(m->lora);
    m->lora = NULL;
    m->mode = TMODE_NONE;
    memset(m->grads, 0, m->n_params * sizeof(float));
}

int mope_train_model_lora_merge(mope_train_model *m, mope_error *err) {
    if (!m || !m->lora) return mope_error_set(err, MOPE_ESTATE, "lora_merge: the model has no LoRA adapter");
    tlora *lo = m->lora;
    for (int id = 0; id < lo->n_lin; id++) {
        tlora_lin *L = &lo->lin[id];
        if (!L->a) continue;
        /* W[out, in] += s B[out, r] A[r, in] */
        tl_sgemm(m->gemm_pool, false, false, L->n_out, L->n_in, lo->rank, lo->scale, L->b, lo->rank, L->a, L->n_in,
                 1.0f, base_weight(m, id), L->n_in);
    }
    mope_train_model_lora_remove(m);
    return 0;
}

/* ---- passes ---- */

int tlora_prepare(mope_train_model *m, size_t N, mope_error *err) {
    tlora *lo = m->lora;
    if (!lo) return 0;
    size_t r = (size_t)lo->rank, n_ad = 0, max_in = 0;
    for (int id = 0; id < lo->n_lin; id++)
        if (lo->lin[id].a) {
            n_ad++;
            if ((size_t)lo->lin[id].n_in > max_in) max_in = (size_t)lo->lin[id].n_in;
        }
    size_t ur = (N * r + 15) & ~(size_t)15, ux = (N * max_in + 15) & ~(size_t)15;
    size_t need = (n_ad + 1) * ur + 2 * ux; /* N <= 2^28 and the dims are bounded: no overflow */
    if (need > lo->buf_cap) {
        mope_free(lo->buf);
        lo->buf = mope_alloc(need, sizeof(float));
        lo->buf_cap = lo->buf ? need : 0;
        if (!lo->buf) return mope_error_set(err, MOPE_ENOMEM, "cannot allocate the LoRA activations for %zu rows", N);
    }
    float *p = lo->buf;
    for (int id = 0; id < lo->n_lin; id++)
        if (lo->lin[id].a) {
            lo->lin[id].u = p;
            p += ur;
        }
    lo->du = p;
    lo->xd = p + ur;
    lo->dxd = p + ur + ux;
    return 0;
}

void tlora_begin(mope_train_model *m) {
    if (m->lora) m->lora->pass++;
}

/* splitmix64 finaliser */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

float tlora_drop_factor(const tlora *lo, int id, size_t idx) {
    if (!(lo->dropout > 0)) return 1.0f;
    uint64_t h = mix64(lo->seed ^ mix64(lo->pass * 0x9e3779b97f4a7c15ULL + (uint64_t)id));
    h = mix64(h + (uint64_t)idx * 0xd1b54a32d192ed03ULL);
    float u = (float)(h >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
    return u < lo->dropout ? 0.0f : 1.0f / (1.0f - lo->dropout);
}

typedef struct {
    const tlora *lo;
    int id;
    float *dst;
    const float *src;
    size_t n;
} drop_job;

static void drop_job_fn(void *ctx, int ith, int nth) {
    drop_job *j = ctx;
    int64_t lo, hi;
    mope_split((int64_t)j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) j->dst[i] = j->src[i] * tlora_drop_factor(j->lo, j->id, (size_t)i);
}

static void apply_drop(mope_train_model *m, int id, float *dst, const float *src, size_t n) {
    drop_job j = {m->lora, id, dst, src, n};
    mope_pool_run(m->pool, drop_job_fn, &j);
}

void tlora_fwd(mope_train_model *m, int id, float *out, const float *in, int N) {
    tlora *lo = m->lora;
    if (!lo || !lo->lin[id].a) return;
    tlora_lin *L = &lo->lin[id];
    int r = lo->rank;
    const float *x = in;
    if (lo->dropout > 0) {
        apply_drop(m, id, lo->xd, in, (size_t)N * L->n_in);
        x = lo->xd;
    }
    /* u[N, r] = x[N, in] A[r, in]^T;  out[N, out] += s u B[out, r]^T */
    tl_sgemm(m->gemm_pool, false, true, N, r, L->n_in, 1.0f, x, L->n_in, L->a, L->n_in, 0.0f, L->u, r);
    tl_sgemm(m->gemm_pool, false, true, N, L->n_out, r, lo->scale, L->u, r, L->b, r, 1.0f, out, L->n_out);
}

void tlora_bwd(mope_train_model *m, int id, float *din, const float *dout, const float *in, int N) {
    tlora *lo = m->lora;
    if (!lo || !lo->lin[id].a) return;
    tlora_lin *L = &lo->lin[id];
    int r = lo->rank;
    float s = lo->scale;
    /* dB[out, r] += s dout^T u;  du[N, r] = s dout B */
    tl_sgemm(m->gemm_pool, true, false, L->n_out, r, N, s, dout, L->n_out, L->u, r, 1.0f, L->gb, r);
    tl_sgemm(m->gemm_pool, false, false, N, r, L->n_out, s, dout, L->n_out, L->b, r, 0.0f, lo->du, r);
    const float *x = in;
    bool drop = lo->dropout > 0;
    size_t nx = (size_t)N * L->n_in;
    if (drop) {
        apply_drop(m, id, lo->xd, in, nx);
        x = lo->xd;
    }
    /* dA[r, in] += du^T x */
    tl_sgemm(m->gemm_pool, true, false, r, L->n_in, N, 1.0f, lo->du, r, x, L->n_in, 1.0f, L->ga, L->n_in);
    if (!din) return;
    if (!drop) {
        tl_sgemm(m->gemm_pool, false, false, N, L->n_in, r, 1.0f, lo->du, r, L->a, L->n_in, 1.0f, din, L->n_in);
        return;
    }
    /* d drop(x) = du A, then through the same mask */
    tl_sgemm(m->gemm_pool, false, false, N, L->n_in, r, 1.0f, lo->du, r, L->a, L->n_in, 0.0f, lo->dxd, L->n_in);
    apply_drop(m, id, lo->dxd, lo->dxd, nx);
    for (size_t i = 0; i < nx; i++) din[i] += lo->dxd[i];
}
