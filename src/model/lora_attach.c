/* LoRA adapters attached to a loaded model, applied at inference without
 * merging: the base matrix products run once over the whole batch (in
 * forward.c), then each row whose adapter adapts that matrix adds
 * s B (A x).  Rows are grouped by adapter so each A and B is read once per
 * group, not once per row. */
#include "model/lora_internal.h"
#include "mope/quant.h"

#include <math.h>
#include <stdlib.h>

void mope_lora_set_free(mope_lora_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        if (!s->a[i].use) continue;
        for (int j = 0; j < s->n_slots; j++) {
            mope_free(s->a[i].use[j].bt);
            mope_free(s->a[i].use[j].at);
        }
        free(s->a[i].use);
    }
    free(s->a);
    free(s->start);
    free(s->grp);
    free(s->wstart);
    free(s->wgrp);
    mope_free(s->tmp);
    free(s);
}

static void free_use(lora_use *use, int n_slots) {
    if (!use) return;
    for (int j = 0; j < n_slots; j++) {
        mope_free(use[j].bt);
        mope_free(use[j].at);
    }
    free(use);
}

static bool all_f16(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (mope_f16_to_f32(mope_f32_to_f16(v[i])) != v[i]) return false;
    return true;
}

/* u->at, u->bt from t (see lora_use); nonzero when out of memory. */
static int transpose_factors(lora_use *u, const mope_lora_tensor *t) {
    size_t na = (size_t)t->rank * (size_t)t->n_in;
    size_t nb = (size_t)t->rank * (size_t)((t->n_out + LORA_PANEL - 1) / LORA_PANEL * LORA_PANEL);
    u->f16 = all_f16(t->a, na) && all_f16(t->b, (size_t)t->rank * (size_t)t->n_out);
    size_t es = u->f16 ? sizeof(uint16_t) : sizeof(float);
    u->at = mope_alloc(na, es);
    u->bt = mope_alloc(nb, es);
    if (!u->at || !u->bt) return -1;
    memset(u->bt, 0, nb * es); /* the last panel's padding */
    for (int k = 0; k < t->rank; k++)
        for (int64_t i = 0; i < t->n_in; i++) {
            float v = t->a[(int64_t)k * t->n_in + i];
            size_t d = (size_t)(i * t->rank + k);
            if (u->f16) ((uint16_t *)u->at)[d] = mope_f32_to_f16(v);
            else ((float *)u->at)[d] = v;
        }
    for (int64_t o = 0; o < t->n_out; o++)
        for (int k = 0; k < t->rank; k++) {
            float v = t->b[o * t->rank + k];
            size_t d = (size_t)(((o / LORA_PANEL) * t->rank + k) * LORA_PANEL + o % LORA_PANEL);
            if (u->f16) ((uint16_t *)u->bt)[d] = mope_f32_to_f16(v);
            else ((float *)u->bt)[d] = v;
        }
    return 0;
}

/* y[0..m) += sum_j a[j] * row j of B (ldb apart), B being u's at or bt. */
static void axpy_rows(const lora_use *u, float *y, const float *a, const void *B, int64_t ldb, int64_t n,
                      int64_t m) {
    if (u->f16) mope_axpy_rows_f16(y, a, B, ldb, n, m);
    else mope_axpy_rows_f32(y, a, B, ldb, n, m);
}

int mope_model_add_adapter(mope_model *m, const mope_lora *l, float user_scale, mope_error *err) {
    if (!m || !l) return mope_error_set(err, MOPE_EINVAL, "add adapter: NULL argument");
    if (!isfinite(user_scale)) return mope_error_set(err, MOPE_EINVAL, "add adapter: scale is not finite");
    int rc = mope_lora_check(l, m, err);
    if (rc) return rc;
    const mope_hparams *hp = &m->hp;
    if (!m->lora) {
        m->lora = calloc(1, sizeof *m->lora);
        if (!m->lora) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        m->lora->n_slots = lora_n_slots(hp);
    }
    mope_lora_set *s = m->lora;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        lora_attached *a = realloc(s->a, sizeof *a * (size_t)cap);
        if (!a) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        s->a = a;
        s->cap = cap;
    }
    lora_use *use = calloc((size_t)s->n_slots, sizeof *use);
    if (!use) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int max_rank = s->max_rank;
    for (int i = 0; i < mope_lora_n_tensors(l); i++) {
        const mope_lora_tensor *t = mope_lora_get(l, i);
        int layer, which;
        lora_classify(t->name, &layer, &which); /* a matrix: mope_lora_check passed */
        int slot = which == -1 ? lora_slot_embd(hp) : which == -2 ? lora_slot_output(hp) : lora_slot(layer, which);
        lora_use *u = &use[slot];
        u->t = t;
        u->scale = mope_lora_scale(l, t, user_scale);
        if (transpose_factors(u, t)) {
            free_use(use, s->n_slots);
            return mope_error_set(err, MOPE_ENOMEM, "out of memory attaching an adapter");
        }
        if (t->rank > max_rank) max_rank = t->rank;
    }
    /* a tied output is token_embd.weight: its update applies there too */
    if (hp->tied_output && use[lora_slot_embd(hp)].t) {
        lora_use *e = &use[lora_slot_embd(hp)], *o = &use[lora_slot_output(hp)];
        o->t = e->t;
        o->scale = e->scale;
        if (transpose_factors(o, e->t)) {
            free_use(use, s->n_slots);
            return mope_error_set(err, MOPE_ENOMEM, "out of memory attaching an adapter");
        }
    }
    s->a[s->n] = (lora_attached){.l = l, .use = use};
    s->max_rank = max_rank;
    return s->n++;
}

int mope_model_remove_adapter(mope_model *m, int id, mope_error *err) {
    if (!m || !mope_lora_id_valid(m, id))
        return mope_error_set(err, MOPE_EINVAL, "remove adapter: %d is not an attached adapter", id);
    lora_attached *a = &m->lora->a[id];
    free_use(a->use, m->lora->n_slots);
    a->use = NULL;
    a->l = NULL;
    return 0;
}

int mope_model_n_adapters(const mope_model *m) { return m && m->lora ? m->lora->n : 0; }

bool mope_lora_id_valid(const mope_model *m, int id) {
    return m->lora && id >= 0 && id < m->lora->n && m->lora->a[id].l != NULL;
}

/* Counting sort of row indices by adapter id (rows with -1 left out). */
static void group(const mope_row *rows, const int *idx, int n, int n_ids, int *start, int *grp) {
    memset(start, 0, sizeof(int) * (size_t)(n_ids + 1));
    for (int i = 0; i < n; i++) {
        int a = rows[idx ? idx[i] : i].adapter;
        if (a >= 0) start[a + 1]++;
    }
    for (int a = 0; a < n_ids; a++) start[a + 1] += start[a];
    int *fill = start + n_ids + 1; /* n_ids scratch cursors after the offsets */
    memcpy(fill, start, sizeof(int) * (size_t)n_ids);
    for (int i = 0; i < n; i++) {
        int a = rows[idx ? idx[i] : i].adapter;
        if (a >= 0) grp[fill[a]++] = i;
    }
}

int mope_lora_prepare(mope_model *m, const mope_row *rows, int n_rows, const int *want_idx, int n_want,
                      mope_error *err) {
    mope_lora_set *s = m->lora;
    if (!s) return 0;
    s->active = false;
    for (int r = 0; r < n_rows && !s->active; r++) s->active = rows[r].adapter >= 0;
    if (!s->active) return 0;
    if (n_rows > s->cap_rows || s->n > s->cap_ids) {
        int rows_cap = n_rows > s->cap_rows ? n_rows : s->cap_rows;
        int ids = s->n > s->cap_ids ? s->n : s->cap_ids;
        free(s->start), free(s->grp), free(s->wstart), free(s->wgrp);
        s->start = malloc(sizeof(int) * (size_t)(2 * ids + 1));
        s->wstart = malloc(sizeof(int) * (size_t)(2 * ids + 1));
        s->grp = malloc(sizeof(int) * (size_t)rows_cap);
        s->wgrp = malloc(sizeof(int) * (size_t)rows_cap);
        s->cap_rows = s->cap_ids = 0;
        if (!s->start || !s->wstart || !s->grp || !s->wgrp)
            return mope_error_set(err, MOPE_ENOMEM, "forward: out of memory for adapter groups");
        s->cap_rows = rows_cap;
        s->cap_ids = ids;
    }
    size_t need = (size_t)n_rows * (size_t)(s->max_rank > 0 ? s->max_rank : 1);
    if (need > s->cap_tmp) {
        mope_free(s->tmp);
        s->tmp = mope_alloc(need, sizeof(float));
        s->cap_tmp = s->tmp ? need : 0;
        if (!s->tmp) return mope_error_set(err, MOPE_ENOMEM, "forward: out of memory for adapter updates");
    }
    group(rows, NULL, n_rows, s->n, s->start, s->grp);
    group(rows, want_idx, n_want, s->n, s->wstart, s->wgrp);
    return 0;
}

void mope_lora_embed(mope_model *m, const mope_row *rows, int n_rows, float *x) {
    mope_lora_set *s = m->lora;
    if (!s || !s->active) return;
    int slot = lora_slot_embd(&m->hp);
    int64_t E = m->hp.n_embd;
    for (int r = 0; r < n_rows; r++) {
        if (rows[r].adapter < 0) continue;
        const lora_use *u = &s->a[rows[r].adapter].use[slot];
        if (!u->t) continue;
        /* row `token` of W + s B A: B's row of the token mixes A's rows */
        const float *b = u->t->b + (size_t)rows[r].token * (size_t)u->t->rank;
        for (int k = 0; k < u->t->rank; k++) mope_axpy_f32(x + r * E, u->scale * b[k], u->t->a + (size_t)k * E, E);
    }
}

typedef struct apply_ctx {
    mope_lora_set *s;
    int slot;
    const int *start, *grp;
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy;
    int64_t n_out;
    int64_t n_items; /* phase 0: adapted rows */
    int phase;
} apply_ctx;

static const lora_use *use_of(const apply_ctx *c, int a) {
    const lora_attached *at = &c->s->a[a];
    return at->use && at->use[c->slot].t && c->start[a + 1] > c->start[a] ? &at->use[c->slot] : NULL;
}

/* Phase 0: t_i = s A x_i for the adapted rows, split over threads; each
 * runs along the rank (A transposed), so a row costs n_in vector FMAs and
 * no horizontal sums.  Phase 1: y_i[lo..hi) += Bt^T t_i with the outputs
 * split, each output loaded and stored once for all rank terms. */
static void apply_job(void *arg, int ith, int nth) {
    apply_ctx *c = arg;
    mope_lora_set *s = c->s;
    int R = s->max_rank;
    int64_t lo, hi;
    if (c->phase == 0) {
        mope_split(c->n_items, ith, nth, &lo, &hi);
        int64_t item = 0;
        for (int a = 0; a < s->n && item < hi; a++) {
            const lora_use *u = use_of(c, a);
            if (!u) continue;
            for (int g = c->start[a]; g < c->start[a + 1]; g++, item++) {
                if (item < lo || item >= hi) continue;
                int i = c->grp[g], rank = u->t->rank;
                float *t = s->tmp + (size_t)i * R;
                memset(t, 0, sizeof(float) * (size_t)rank);
                axpy_rows(u, t, c->x + i * c->ldx, u->at, rank, u->t->n_in, rank);
                for (int k = 0; k < rank; k++) t[k] *= u->scale;
            }
        }
        return;
    }
    /* threads take whole panels of outputs */
    int64_t np = (c->n_out + LORA_PANEL - 1) / LORA_PANEL;
    mope_split(np, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    for (int a = 0; a < s->n; a++) {
        const lora_use *u = use_of(c, a);
        if (!u) continue;
        size_t es = u->f16 ? sizeof(uint16_t) : sizeof(float);
        size_t panel = (size_t)u->t->rank * LORA_PANEL; /* elements */
        for (int g = c->start[a]; g < c->start[a + 1]; g++) {
            int i = c->grp[g];
            const float *t = s->tmp + (size_t)i * R;
            for (int64_t p = lo; p < hi; p++) {
                int64_t o = p * LORA_PANEL, m = c->n_out - o < LORA_PANEL ? c->n_out - o : LORA_PANEL;
                axpy_rows(u, c->y + i * c->ldy + o, t, (const char *)u->bt + (size_t)p * panel * es, LORA_PANEL,
                          u->t->rank, m);
            }
        }
    }
}

void mope_lora_apply(mope_model *m, int slot, bool want, const float *x, int64_t ldx, float *y, int64_t ldy,
                     mope_pool *pool) {
    mope_lora_set *s = m->lora;
    if (!s || !s->active) return;
    apply_ctx c = {.s = s, .slot = slot, .start = want ? s->wstart : s->start, .grp = want ? s->wgrp : s->grp,
                   .x = x, .ldx = ldx, .y = y, .ldy = ldy};
    int64_t work = 0; /* multiply-adds */
    for (int a = 0; a < s->n; a++) {
        const lora_use *u = use_of(&c, a);
        if (!u) continue;
        c.n_out = u->t->n_out;
        c.n_items += c.start[a + 1] - c.start[a];
        work += (int64_t)(c.start[a + 1] - c.start[a]) * u->t->rank * (u->t->n_in + u->t->n_out);
    }
    if (c.n_items == 0) return;
    /* a dispatch costs a few microseconds: small updates stay on this thread */
    bool par = pool && mope_pool_size(pool) > 1 && work >= 65536;
    for (c.phase = 0; c.phase < 2; c.phase++) {
        if (par) mope_pool_run(pool, apply_job, &c);
        else apply_job(&c, 0, 1);
    }
}
