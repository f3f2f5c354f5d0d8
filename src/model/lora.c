/* LoRA adapter objects: construction, name rules, checks against a base
 * model, and averaging (Personalized Soups). */
#include "model/lora_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const block_names[LORA_PER_LAYER] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                         "ffn_gate", "ffn_up", "ffn_down"};

lora_name_kind lora_classify(const char *name, int *layer, int *which) {
    *layer = -1;
    *which = -1;
    if (strcmp(name, "token_embd.weight") == 0) return LORA_NAME_MATRIX;
    if (strcmp(name, "output.weight") == 0) {
        *which = -2;
        return LORA_NAME_MATRIX;
    }
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, ".bias") == 0) return LORA_NAME_BIAS;
    if (strstr(name, "_norm.")) return LORA_NAME_NORM;
    int il = -1, used = 0;
    char part[32];
    if (sscanf(name, "blk.%d.%31[a-z_]%n", &il, part, &used) != 2 || il < 0 || strcmp(name + used, ".weight") != 0)
        return LORA_NAME_UNKNOWN;
    /* the layer number must be written plainly ("blk.01." is not a tensor) */
    char canon[96];
    snprintf(canon, sizeof canon, "blk.%d.%s.weight", il, part);
    if (strcmp(canon, name) != 0) return LORA_NAME_UNKNOWN;
    for (int w = 0; w < LORA_PER_LAYER; w++)
        if (strcmp(part, block_names[w]) == 0) {
            *layer = il;
            *which = w;
            return LORA_NAME_MATRIX;
        }
    return LORA_NAME_UNKNOWN;
}

static int name_error(const char *name, lora_name_kind k, mope_error *err) {
    switch (k) {
    case LORA_NAME_NORM:
        return mope_error_set(err, MOPE_EINVAL, "tensor '%s': norm tensors are never adapted", name);
    case LORA_NAME_BIAS:
        return mope_error_set(err, MOPE_EINVAL, "tensor '%s': biases are not adapted (not a matrix)", name);
    default:
        return mope_error_set(err, MOPE_EINVAL,
                              "unknown tensor '%s': LoRA adapts token_embd.weight, output.weight and blk.N."
                              "{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight",
                              name);
    }
}

mope_lora *mope_lora_new(const char *arch, float alpha, mope_error *err) {
    if (!arch || !*arch || strlen(arch) >= sizeof(((mope_lora *)0)->arch)) {
        mope_error_set(err, MOPE_EINVAL, "lora: bad architecture name");
        return NULL;
    }
    if (!(alpha >= 0) || !isfinite(alpha)) {
        mope_error_set(err, MOPE_EINVAL, "lora: alpha %g must be finite and >= 0", (double)alpha);
        return NULL;
    }
    mope_lora *l = calloc(1, sizeof *l);
    if (!l) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(l->arch, sizeof l->arch, "%s", arch);
    l->alpha = alpha;
    return l;
}

void mope_lora_free(mope_lora *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        mope_free(l->t[i].a);
        mope_free(l->t[i].b);
    }
    free(l->t);
    free(l);
}

static bool all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

int mope_lora_add(mope_lora *l, const char *name, int64_t n_in, int64_t n_out, int rank, const float *a,
                  const float *b, mope_error *err) {
    if (!l || !name) return mope_error_set(err, MOPE_EINVAL, "lora: NULL argument");
    if (strlen(name) >= sizeof(l->t[0].name) - 7) /* room for ".lora_a" within GGUF's 63 bytes */
        return mope_error_set(err, MOPE_EINVAL, "lora: tensor name '%.40s...' is too long", name);
    int layer, which;
    lora_name_kind k = lora_classify(name, &layer, &which);
    if (k != LORA_NAME_MATRIX) return name_error(name, k, err);
    if (rank < 1) return mope_error_set(err, MOPE_EINVAL, "tensor '%s': LoRA rank %d must be at least 1", name, rank);
    /* caps keep rank * n products far from overflow */
    const int64_t cap = (int64_t)1 << 24;
    if (n_in < 1 || n_out < 1 || n_in > cap || n_out > cap || rank > 65536)
        return mope_error_set(err, MOPE_EINVAL, "tensor '%s': bad LoRA shape %lld x %lld, rank %d", name,
                              (long long)n_in, (long long)n_out, rank);
    if (mope_lora_find(l, name)) return mope_error_set(err, MOPE_EINVAL, "tensor '%s' is adapted twice", name);
    size_t na = (size_t)rank * (size_t)n_in, nb = (size_t)n_out * (size_t)rank;
    if ((a && !all_finite(a, na)) || (b && !all_finite(b, nb)))
        return mope_error_set(err, MOPE_EINVAL, "tensor '%s': LoRA values are not all finite", name);
    if (l->n == l->cap) {
        int cap2 = l->cap ? 2 * l->cap : 16;
        mope_lora_tensor *t = realloc(l->t, sizeof *t * (size_t)cap2);
        if (!t) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        l->t = t;
        l->cap = cap2;
    }
    mope_lora_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_in = n_in;
    t->n_out = n_out;
    t->rank = rank;
    t->a = mope_alloc(na, sizeof(float));
    t->b = mope_alloc(nb, sizeof(float));
    if (!t->a || !t->b) {
        mope_free(t->a);
        mope_free(t->b);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory for LoRA tensor '%s'", name);
    }
    if (a) memcpy(t->a, a, na * sizeof(float));
    if (b) memcpy(t->b, b, nb * sizeof(float));
    return l->n++;
}

int mope_lora_add_targets(mope_lora *l, const mope_hparams *hp, unsigned targets, int rank, mope_rng *rng,
                          mope_error *err) {
    if (!l || !hp) return mope_error_set(err, MOPE_EINVAL, "lora: NULL argument");
    int64_t E = hp->n_embd, F = hp->n_ff, QD = (int64_t)hp->n_head * hp->head_dim;
    int64_t KD = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t shape[LORA_PER_LAYER][2] = {{E, QD}, {E, KD}, {E, KD}, {QD, E}, {E, F}, {E, F}, {F, E}};
    if ((targets & MOPE_LORA_OUTPUT) && hp->tied_output)
        return mope_error_set(err, MOPE_EINVAL, "lora: the model has no output.weight (tied to token_embd.weight)");
    int rc;
    for (int il = 0; il <= hp->n_layer; il++) {
        for (int w = 0; w < LORA_PER_LAYER; w++) {
            char name[64];
            int64_t n_in, n_out;
            if (il == hp->n_layer) {
                if (w > 0 || !(targets & MOPE_LORA_OUTPUT)) break;
                snprintf(name, sizeof name, "output.weight");
                n_in = E;
                n_out = hp->n_vocab;
            } else {
                if (!(targets & (1u << w))) continue;
                snprintf(name, sizeof name, "blk.%d.%s.weight", il, block_names[w]);
                n_in = shape[w][0];
                n_out = shape[w][1];
            }
            if ((rc = mope_lora_add(l, name, n_in, n_out, rank, NULL, NULL, err)) < 0) return rc;
            if (rng) {
                mope_lora_tensor *t = &l->t[rc];
                float bound = 1.0f / sqrtf((float)n_in);
                for (size_t i = 0; i < (size_t)rank * (size_t)n_in; i++)
                    t->a[i] = (2.0f * mope_rng_uniform(rng) - 1.0f) * bound;
            }
        }
    }
    return 0;
}

const char *mope_lora_arch(const mope_lora *l) { return l->arch; }
float mope_lora_alpha(const mope_lora *l) { return l->alpha; }
int mope_lora_n_tensors(const mope_lora *l) { return l->n; }
mope_lora_tensor *mope_lora_tensor_at(mope_lora *l, int i) { return i >= 0 && i < l->n ? &l->t[i] : NULL; }
const mope_lora_tensor *mope_lora_get(const mope_lora *l, int i) { return i >= 0 && i < l->n ? &l->t[i] : NULL; }

const mope_lora_tensor *mope_lora_find(const mope_lora *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->t[i].name, name) == 0) return &l->t[i];
    return NULL;
}

float mope_lora_scale(const mope_lora *l, const mope_lora_tensor *t, float user_scale) {
    return l->alpha != 0 ? user_scale * l->alpha / (float)t->rank : user_scale;
}

int mope_lora_check(const mope_lora *l, const mope_model *base, mope_error *err) {
    if (!l || !base) return mope_error_set(err, MOPE_EINVAL, "lora: NULL argument");
    const mope_hparams *hp = &base->hp;
    const char *arch = mope_arch_name(hp->arch);
    if (strcmp(l->arch, arch) != 0)
        return mope_error_set(err, MOPE_EINVAL, "adapter is for architecture '%s', the base model is '%s'", l->arch,
                              arch);
    for (int i = 0; i < l->n; i++) {
        const mope_lora_tensor *t = &l->t[i];
        int layer, which;
        lora_name_kind k = lora_classify(t->name, &layer, &which);
        if (k != LORA_NAME_MATRIX) return name_error(t->name, k, err);
        const mope_wmat *w = NULL;
        if (which == -1) w = &base->tok_embd;
        else if (which == -2 && !hp->tied_output) w = &base->output;
        else if (which >= 0 && layer < hp->n_layer) {
            const mope_layer *L = &base->layers[layer];
            const mope_wmat *ws[LORA_PER_LAYER] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
            w = ws[which];
        }
        if (!w)
            return mope_error_set(err, MOPE_EINVAL, "adapter tensor '%s': the base model has no such tensor%s",
                                  t->name, which == -2 ? " (its output is tied to token_embd.weight)" : "");
        if (w->ne0 != t->n_in || w->ne1 != t->n_out)
            return mope_error_set(err, MOPE_EINVAL,
                                  "adapter tensor '%s' is %lld x %lld (n_in x n_out), the base's is %lld x %lld",
                                  t->name, (long long)t->n_in, (long long)t->n_out, (long long)w->ne0,
                                  (long long)w->ne1);
    }
    return 0;
}

/* ---- averaging ---- */

static mope_lora *average_ab(const mope_lora *const *ls, const float *w, int n, mope_error *err) {
    const mope_lora *l0 = ls[0];
    for (int k = 1; k < n; k++) {
        if (ls[k]->alpha != l0->alpha) {
            mope_error_set(err, MOPE_EINVAL, "AB averaging: adapter %d has alpha %g, adapter 0 has %g", k,
                           (double)ls[k]->alpha, (double)l0->alpha);
            return NULL;
        }
        if (ls[k]->n != l0->n) {
            mope_error_set(err, MOPE_EINVAL, "AB averaging: adapter %d adapts %d tensors, adapter 0 adapts %d", k,
                           ls[k]->n, l0->n);
            return NULL;
        }
        for (int i = 0; i < l0->n; i++) {
            const mope_lora_tensor *t0 = &l0->t[i], *t = mope_lora_find(ls[k], t0->name);
            if (!t) {
                mope_error_set(err, MOPE_EINVAL, "AB averaging: adapter %d does not adapt '%s'", k, t0->name);
                return NULL;
            }
            if (t->rank != t0->rank || t->n_in != t0->n_in || t->n_out != t0->n_out) {
                mope_error_set(err, MOPE_EINVAL,
                               "AB averaging: '%s' has rank %d (%lld x %lld) in adapter %d but rank %d (%lld x %lld) "
                               "in adapter 0 (AB averaging needs equal ranks; use the delta mode)",
                               t0->name, t->rank, (long long)t->n_in, (long long)t->n_out, k, t0->rank,
                               (long long)t0->n_in, (long long)t0->n_out);
                return NULL;
            }
        }
    }
    mope_lora *out = mope_lora_new(l0->arch, l0->alpha, err);
    if (!out) return NULL;
    for (int i = 0; i < l0->n; i++) {
        const mope_lora_tensor *t0 = &l0->t[i];
        int rc = mope_lora_add(out, t0->name, t0->n_in, t0->n_out, t0->rank, NULL, NULL, err);
        if (rc < 0) {
            mope_lora_free(out);
            return NULL;
        }
        mope_lora_tensor *o = &out->t[rc];
        size_t na = (size_t)t0->rank * (size_t)t0->n_in, nb = (size_t)t0->n_out * (size_t)t0->rank;
        for (int k = 0; k < n; k++) {
            const mope_lora_tensor *t = mope_lora_find(ls[k], t0->name);
            for (size_t j = 0; j < na; j++) o->a[j] += w[k] * t->a[j];
            for (size_t j = 0; j < nb; j++) o->b[j] += w[k] * t->b[j];
        }
    }
    return out;
}

static mope_lora *average_delta(const mope_lora *const *ls, const float *w, int n, mope_error *err) {
    mope_lora *out = mope_lora_new(ls[0]->arch, 0.0f, err);
    if (!out) return NULL;
    /* every tensor any adapter adapts, in first-seen order */
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < ls[k]->n; i++) {
            const mope_lora_tensor *t = &ls[k]->t[i];
            if (mope_lora_find(out, t->name)) continue;
            int R = 0;
            for (int j = 0; j < n; j++) {
                const mope_lora_tensor *u = mope_lora_find(ls[j], t->name);
                if (!u) continue;
                if (u->n_in != t->n_in || u->n_out != t->n_out) {
                    mope_error_set(err, MOPE_EINVAL,
                                   "delta averaging: '%s' is %lld x %lld in adapter %d, %lld x %lld in adapter %d",
                                   t->name, (long long)u->n_in, (long long)u->n_out, j, (long long)t->n_in,
                                   (long long)t->n_out, k);
                    mope_lora_free(out);
                    return NULL;
                }
                R += u->rank;
            }
            int rc = mope_lora_add(out, t->name, t->n_in, t->n_out, R, NULL, NULL, err);
            if (rc < 0) {
                mope_lora_free(out);
                return NULL;
            }
            mope_lora_tensor *o = &out->t[rc];
            int off = 0; /* first row of A / column of B of adapter j's block */
            for (int j = 0; j < n; j++) {
                const mope_lora_tensor *u = mope_lora_find(ls[j], t->name);
                if (!u) continue;
                float c = w[j] * mope_lora_scale(ls[j], u, 1.0f);
                memcpy(o->a + (size_t)off * (size_t)t->n_in, u->a, sizeof(float) * (size_t)u->rank * (size_t)t->n_in);
                for (int64_t r = 0; r < t->n_out; r++)
                    for (int q = 0; q < u->rank; q++) o->b[r * R + off + q] = c * u->b[r * u->rank + q];
                off += u->rank;
            }
        }
    }
    /* scale 1 everywhere: alpha = the rank when all tensors share it, else 0 */
    bool same = out->n > 0;
    for (int i = 1; i < out->n; i++) same = same && out->t[i].rank == out->t[0].rank;
    out->alpha = same ? (float)out->t[0].rank : 0.0f;
    return out;
}

mope_lora *mope_lora_average(const mope_lora *const *adapters, const float *weights, int n, mope_lora_avg_mode mode,
                             mope_error *err) {
    if (n < 1 || !adapters) {
        mope_error_set(err, MOPE_EINVAL, "lora average: no adapters");
        return NULL;
    }
    if (mode != MOPE_LORA_AVG_AB && mode != MOPE_LORA_AVG_DELTA) {
        mope_error_set(err, MOPE_EINVAL, "lora average: unknown mode %d", (int)mode);
        return NULL;
    }
    float *w = malloc(sizeof(float) * (size_t)n);
    if (!w) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        w[k] = weights ? weights[k] : 1.0f / (float)n;
        if (!adapters[k] || !isfinite(w[k])) {
            mope_error_set(err, MOPE_EINVAL, "lora average: adapter %d is NULL or its weight is not finite", k);
            free(w);
            return NULL;
        }
        if (strcmp(adapters[k]->arch, adapters[0]->arch) != 0) {
            mope_error_set(err, MOPE_EINVAL, "lora average: adapter %d is for '%s', adapter 0 for '%s'", k,
                           adapters[k]->arch, adapters[0]->arch);
            free(w);
            return NULL;
        }
    }
    mope_lora *out = mode == MOPE_LORA_AVG_AB ? average_ab(adapters, w, n, err) : average_delta(adapters, w, n, err);
    free(w);
    return out;
}
