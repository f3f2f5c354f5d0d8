/* The batched forward pass: every layer runs its matmuls once for all rows,
 * then each row attends over its own sequence in the KV cache. */
#include "model/lora_internal.h"

#include <math.h>
#include <stdlib.h>

enum { OP_NORM, OP_ADD, OP_SWIGLU, OP_POST_QKV, OP_ATTN };

typedef struct fw_ctx {
    mope_model *m;
    mope_kv *kv;
    const mope_row *rows;
    int n;
    int layer;
    int op;
    const float *norm_w;
    const float *src; /* OP_NORM input, OP_ADD addend */
    float *dst;       /* OP_NORM output, OP_ADD accumulator */
    const int *idx;   /* OP_NORM: optional row gather (rows that want logits) */
    int64_t width;
} fw_ctx;

static void run(mope_pool *pool, mope_pool_fn fn, void *ctx) {
    if (pool) mope_pool_run(pool, fn, ctx);
    else fn(ctx, 0, 1);
}

static void rms_norm(float *dst, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) dst[i] = x[i] * scale * w[i];
}

static void rope_apply(float *v, int n_heads, int hd, int n_rot, mope_rope_mode mode, const float *cs) {
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            int i0 = mode == MOPE_ROPE_NEOX ? i : 2 * i;
            int i1 = mode == MOPE_ROPE_NEOX ? i + half : 2 * i + 1;
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = x[i0], b = x[i1];
            x[i0] = a * c - b * s;
            x[i1] = a * s + b * c;
        }
    }
}

static void attend(fw_ctx *c, int r, int h, float *scores) {
    const mope_hparams *hp = &c->m->hp;
    mope_scratch *s = &c->m->s;
    int hd = hp->head_dim, QD = hp->n_head * hd;
    int kvh = h / (hp->n_head / hp->n_head_kv);
    const mope_row *row = &c->rows[r];
    const float *q = s->q + (size_t)r * QD + (size_t)h * hd;
    float *out = s->att + (size_t)r * QD + (size_t)h * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int n = row->pos + 1;
    int64_t ld = c->kv->kv_dim; /* positions of a sequence are consecutive cache rows */
    mope_dot_rows_f32(q, mope_kv_k_at(c->kv, c->layer, row->seq, 0) + (size_t)kvh * hd, ld, n, hd, scores);
    float mx = -INFINITY;
    for (int t = 0; t < n; t++) {
        scores[t] *= scale;
        if (scores[t] > mx) mx = scores[t];
    }
    double sum = 0;
    for (int t = 0; t < n; t++) {
        scores[t] = expf(scores[t] - mx);
        sum += scores[t];
    }
    float inv = (float)(1.0 / sum);
    for (int t = 0; t < n; t++) scores[t] *= inv;
    memset(out, 0, sizeof(float) * (size_t)hd);
    mope_axpy_rows_f32(out, scores, mope_kv_v_at(c->kv, c->layer, row->seq, 0) + (size_t)kvh * hd, ld, n, hd);
}

static void row_job(void *arg, int ith, int nth) {
    fw_ctx *c = arg;
    mope_model *m = c->m;
    const mope_hparams *hp = &m->hp;
    mope_scratch *s = &m->s;
    int64_t lo, hi;
    if (c->op == OP_ATTN) {
        mope_split((int64_t)c->n * hp->n_head, ith, nth, &lo, &hi);
        float *scores = s->scores + (size_t)ith * s->cap_ctx;
        for (int64_t i = lo; i < hi; i++) attend(c, (int)(i / hp->n_head), (int)(i % hp->n_head), scores);
        return;
    }
    mope_split(c->n, ith, nth, &lo, &hi);
    int64_t w = c->width;
    for (int64_t r = lo; r < hi; r++) {
        switch (c->op) {
        case OP_NORM: {
            int64_t sr = c->idx ? c->idx[r] : r;
            rms_norm(c->dst + r * w, c->src + sr * w, c->norm_w, w, hp->rms_eps);
            break;
        }
        case OP_ADD:
            for (int64_t i = 0; i < w; i++) c->dst[r * w + i] += c->src[r * w + i];
            break;
        case OP_SWIGLU: {
            mope_swiglu_f32(s->ff_gate + r * w, s->ff_up + r * w, w);
            break;
        }
        case OP_POST_QKV: {
            const mope_layer *L = &m->layers[c->layer];
            int hd = hp->head_dim, QD = hp->n_head * hd, KD = hp->n_head_kv * hd;
            float *q = s->q + r * QD, *k = s->k + r * KD, *v = s->v + r * KD;
            if (L->bq) {
                for (int i = 0; i < QD; i++) q[i] += L->bq[i];
                for (int i = 0; i < KD; i++) k[i] += L->bk[i];
                for (int i = 0; i < KD; i++) v[i] += L->bv[i];
            }
            const float *cs = s->rope + r * hp->n_rot;
            rope_apply(q, hp->n_head, hd, hp->n_rot, hp->rope_mode, cs);
            rope_apply(k, hp->n_head_kv, hd, hp->n_rot, hp->rope_mode, cs);
            const mope_row *row = &c->rows[r];
            memcpy(mope_kv_k_at(c->kv, c->layer, row->seq, row->pos), k, sizeof(float) * (size_t)KD);
            memcpy(mope_kv_v_at(c->kv, c->layer, row->seq, row->pos), v, sizeof(float) * (size_t)KD);
            break;
        }
        }
    }
}

/* Element-wise steps are cheap: below this many elements the dispatch to
 * the pool costs more than it saves. */
static void run_rows(fw_ctx *c, mope_pool *pool) {
    if (!pool || (int64_t)c->n * c->width < 8192) row_job(c, 0, 1);
    else mope_pool_run(pool, row_job, c);
}

static int check_rows(const mope_model *m, mope_kv *kv, const mope_row *rows, int n_rows, int *n_want,
                      mope_error *err) {
    const mope_hparams *hp = &m->hp;
    for (int r = 0; r < n_rows; r++) {
        const mope_row *row = &rows[r];
        if (row->seq < 0 || row->seq >= kv->n_seq)
            return mope_error_set(err, MOPE_EINVAL, "row %d: sequence %d out of range (cache has %d)", r, row->seq,
                                  kv->n_seq);
        if (row->token < 0 || row->token >= hp->n_vocab)
            return mope_error_set(err, MOPE_EINVAL, "row %d: token %d out of range (vocabulary of %d)", r,
                                  (int)row->token, hp->n_vocab);
        if (row->adapter != -1 && !mope_lora_id_valid(m, row->adapter)) {
            if (mope_model_n_adapters(m) == 0)
                return mope_error_set(err, MOPE_EUNSUPPORTED, "row %d: adapter %d, but no adapters are attached", r,
                                      row->adapter);
            return mope_error_set(err, MOPE_EINVAL, "row %d: adapter %d is not attached (%d adapter ids handed out)",
                                  r, row->adapter, mope_model_n_adapters(m));
        }
        kv->next[row->seq] = kv->len[row->seq];
    }
    *n_want = 0;
    for (int r = 0; r < n_rows; r++) {
        const mope_row *row = &rows[r];
        int expect = kv->next[row->seq];
        if (row->pos != expect)
            return mope_error_set(err, MOPE_EINVAL,
                                  "row %d: position %d does not continue sequence %d (next position is %d)", r,
                                  row->pos, row->seq, expect);
        if (expect >= kv->n_ctx)
            return mope_error_set(err, MOPE_ERANGE, "context full: sequence %d already holds %d positions (n_ctx %d)",
                                  row->seq, expect, kv->n_ctx);
        kv->next[row->seq] = expect + 1;
        *n_want += row->want_logits;
    }
    return 0;
}

int mope_model_forward_ex(mope_model *m, mope_kv *kv, const mope_row *rows, int n_rows, float *logits_out,
                          float *hidden_out, mope_pool *pool, mope_error *err) {
    if (!m || !kv) return mope_error_set(err, MOPE_EINVAL, "forward: no model or cache");
    if (n_rows < 0 || (n_rows > 0 && !rows)) return mope_error_set(err, MOPE_EINVAL, "forward: bad row list");
    if (n_rows == 0) return 0;
    const mope_hparams *hp = &m->hp;
    if (kv->n_layer != hp->n_layer || kv->kv_dim != hp->n_head_kv * hp->head_dim)
        return mope_error_set(err, MOPE_EINVAL, "forward: the cache was made for another model");
    int n_want = 0, rc;
    if ((rc = check_rows(m, kv, rows, n_rows, &n_want, err))) return rc;
    int nth = pool ? mope_pool_size(pool) : 1;
    if ((rc = mope_scratch_reserve(m, n_rows, nth, kv->n_ctx, err))) return rc;
    mope_scratch *s = &m->s;
    int64_t E = hp->n_embd, QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t F = hp->n_ff;
    int *idx = s->want_idx; /* rows that want output, in order */
    for (int r = 0, w = 0; r < n_rows; r++)
        if (rows[r].want_logits) idx[w++] = r;
    if ((rc = mope_lora_prepare(m, rows, n_rows, idx, n_want, err))) return rc;

    for (int r = 0; r < n_rows; r++) {
        const mope_wmat *te = &m->tok_embd;
        mope_dequantize_row(te->type, (const char *)te->data + (size_t)rows[r].token * te->row_bytes, s->x + r * E, E);
        float *cs = s->rope + (size_t)r * hp->n_rot;
        for (int i = 0; i < hp->n_rot / 2; i++) {
            double th = rows[r].pos * m->inv_freq[i];
            cs[2 * i] = (float)cos(th);
            cs[2 * i + 1] = (float)sin(th);
        }
    }
    mope_lora_embed(m, rows, n_rows, s->x);

    int64_t attn_work = 0; /* multiply-adds of attention per layer */
    for (int r = 0; r < n_rows; r++) attn_work += (int64_t)(rows[r].pos + 1) * 2 * QD;
    fw_ctx c = {.m = m, .kv = kv, .rows = rows, .n = n_rows};
    for (int il = 0; il < hp->n_layer; il++) {
        const mope_layer *L = &m->layers[il];
        c.layer = il;
        c.op = OP_NORM, c.norm_w = L->attn_norm, c.src = s->x, c.dst = s->xn, c.idx = NULL, c.width = E;
        run_rows(&c, pool);
        const mope_wmat *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {s->q, s->k, s->v};
        const int64_t qkv_ld[3] = {QD, KD, KD};
        if ((rc = mope_matmul_n(m, 3, qkv, s->xn, E, n_rows, qkv_out, qkv_ld, pool, err))) return rc;
        for (int j = 0; j < 3; j++)
            mope_lora_apply(m, lora_slot(il, LORA_Q + j), false, s->xn, E, qkv_out[j], qkv_ld[j], pool);
        c.op = OP_POST_QKV, c.width = QD;
        run_rows(&c, pool);
        c.op = OP_ATTN;
        if (attn_work < 65536) row_job(&c, 0, 1); /* short contexts: cheaper than a dispatch */
        else run(pool, row_job, &c);
        if ((rc = mope_matmul(m, &L->wo, s->att, QD, n_rows, s->xn, E, pool, err))) return rc;
        mope_lora_apply(m, lora_slot(il, LORA_O), false, s->att, QD, s->xn, E, pool);
        c.op = OP_ADD, c.src = s->xn, c.dst = s->x, c.width = E;
        run_rows(&c, pool);

        c.op = OP_NORM, c.norm_w = L->ffn_norm, c.src = s->x, c.dst = s->xn;
        run_rows(&c, pool);
        const mope_wmat *gu[2] = {&L->gate, &L->up};
        float *gu_out[2] = {s->ff_gate, s->ff_up};
        const int64_t gu_ld[2] = {F, F};
        if ((rc = mope_matmul_n(m, 2, gu, s->xn, E, n_rows, gu_out, gu_ld, pool, err))) return rc;
        for (int j = 0; j < 2; j++)
            mope_lora_apply(m, lora_slot(il, LORA_GATE + j), false, s->xn, E, gu_out[j], F, pool);
        c.op = OP_SWIGLU, c.width = F;
        run_rows(&c, pool);
        if ((rc = mope_matmul(m, &L->down, s->ff_gate, F, n_rows, s->xn, E, pool, err))) return rc;
        mope_lora_apply(m, lora_slot(il, LORA_DOWN), false, s->ff_gate, F, s->xn, E, pool);
        c.op = OP_ADD, c.src = s->xn, c.dst = s->x, c.width = E;
        run_rows(&c, pool);
    }
    for (int r = 0; r < n_rows; r++) kv->len[rows[r].seq] = kv->next[rows[r].seq];
    m->rows_run += n_rows;

    if (n_want == 0) return 0;
    /* only the rows that want output go through output_norm and the output matrix */
    c.op = OP_NORM, c.norm_w = m->output_norm, c.src = s->x, c.dst = s->hid, c.idx = idx, c.width = E, c.n = n_want;
    run_rows(&c, pool);
    if (hidden_out) memcpy(hidden_out, s->hid, sizeof(float) * (size_t)(n_want * E));
    if (logits_out) {
        if ((rc = mope_matmul(m, &m->output, s->hid, E, n_want, logits_out, hp->n_vocab, pool, err))) return rc;
        mope_lora_apply(m, lora_slot_output(hp), true, s->hid, E, logits_out, hp->n_vocab, pool);
    }
    return 0;
}

int mope_model_forward(mope_model *m, mope_kv *kv, const mope_row *rows, int n_rows, float *logits_out,
                       mope_pool *pool, mope_error *err) {
    if (!logits_out && rows) {
        for (int r = 0; r < n_rows; r++)
            if (rows[r].want_logits)
                return mope_error_set(err, MOPE_EINVAL, "forward: row %d wants logits but no output buffer", r);
    }
    return mope_model_forward_ex(m, kv, rows, n_rows, logits_out, NULL, pool, err);
}
