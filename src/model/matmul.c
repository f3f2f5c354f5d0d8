/* Weight-times-activations products, the bulk of the forward pass.
 *
 * Small batches (decode) are memory-bound: each activation row is quantised
 * once to the weight type's vec_dot type, then the weight rows are split
 * over the threads and every weight row is dotted with all activation rows
 * by the multi-row kernel (each weight block loaded and decoded once for up
 * to 4 rows, then reused from L1), so the weights stream from memory once.
 * F16 weights below the sgemm threshold (a decode step, or the K expert
 * rows of a MoPE step) take the register-tiled GEMM instead (mope_gemm_f16:
 * 4 weight rows x 3 activation rows per tile, activations converted once),
 * where the ISA has it; its outputs equal the single-row kernel's bit for
 * bit.
 * Large batches (prefill) are compute-bound: tiles of weight rows are
 * dequantised to f32 (per thread, L2-sized) and multiplied with OpenBLAS
 * sgemm, each pool thread on its own tiles with OpenBLAS set to a single
 * thread (its own threads would compete with the pool's, and a NULL pool
 * means the calling thread only). */
#include "model/model_internal.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* f32 weights per sgemm tile (1 MiB): of 256 KiB, 512 KiB, 1 MiB and 2 MiB,
 * 1 MiB was fastest for 256-row batches (2048 x 5632, q4_K, EPYC, 1 MiB L2). */
#define GEMM_TILE_FLOATS 262144

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

void mope_scratch_free(mope_scratch *s) {
    float **bufs[] = {&s->x, &s->xn, &s->q, &s->k, &s->v, &s->att, &s->ff_gate, &s->ff_up, &s->rope, &s->hid,
                      &s->scores, &s->tiles};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        mope_free(*bufs[i]);
        *bufs[i] = NULL;
    }
    mope_free(s->xq);
    mope_free(s->want_idx);
    s->xq = NULL;
    s->want_idx = NULL;
    s->cap_rows = s->cap_thr = s->cap_ctx = 0;
}

static int64_t max_k(const mope_hparams *hp) {
    int64_t k = hp->n_embd;
    if (hp->n_ff > k) k = hp->n_ff;
    if ((int64_t)hp->n_head * hp->head_dim > k) k = (int64_t)hp->n_head * hp->head_dim;
    return k;
}

int mope_scratch_reserve(mope_model *m, int n_rows, int nth, int n_ctx, mope_error *err) {
    mope_scratch *s = &m->s;
    const mope_hparams *hp = &m->hp;
    int64_t K = max_k(hp);
    if (n_rows > s->cap_rows) {
        int rows = n_rows > 2 * s->cap_rows ? n_rows : 2 * s->cap_rows;
        size_t E = (size_t)hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim;
        size_t KD = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff;
        struct { float **p; size_t n; } b[] = {
            {&s->x, E}, {&s->xn, E}, {&s->q, QD}, {&s->k, KD}, {&s->v, KD}, {&s->att, QD},
            {&s->ff_gate, F}, {&s->ff_up, F}, {&s->rope, (size_t)hp->n_rot}, {&s->hid, E},
        };
        for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
            mope_free(*b[i].p);
            *b[i].p = mope_alloc((size_t)rows * b[i].n, sizeof(float));
            if (!*b[i].p) goto oom;
        }
        mope_free(s->want_idx);
        s->want_idx = mope_alloc((size_t)rows, sizeof(int));
        mope_free(s->xq);
        /* f32 is the widest vec_dot type, so this fits every weight type */
        s->xq_stride = round64((size_t)K * sizeof(float));
        s->xq = mope_alloc((size_t)rows, s->xq_stride);
        if (!s->xq || !s->want_idx) goto oom;
        s->cap_rows = rows;
    }
    if (nth > s->cap_thr || n_ctx > s->cap_ctx) {
        int thr = nth > s->cap_thr ? nth : s->cap_thr;
        int ctx = n_ctx > s->cap_ctx ? n_ctx : s->cap_ctx;
        mope_free(s->scores);
        mope_free(s->tiles);
        s->scores = mope_alloc((size_t)thr * (size_t)ctx, sizeof(float));
        int64_t rows_per_tile = (GEMM_TILE_FLOATS / K) & ~(int64_t)15;
        if (rows_per_tile < 16) rows_per_tile = 16;
        s->tile_floats = round64((size_t)(rows_per_tile * K) * sizeof(float)) / sizeof(float);
        s->tiles = mope_alloc((size_t)thr, s->tile_floats * sizeof(float));
        if (!s->scores || !s->tiles) goto oom;
        s->cap_thr = thr;
        s->cap_ctx = ctx;
    }
    return 0;
oom:
    mope_scratch_free(s);
    return mope_error_set(err, MOPE_ENOMEM, "forward: out of memory for %d rows", n_rows);
}

/* Up to three weights that read the same input (q/k/v, gate/up) go through
 * one dispatch: the input is quantised once and the threads split the
 * weights' rows together. */
enum { MM_MAX = 3 };

typedef struct mm_ctx {
    int n_w;
    const mope_wmat *w[MM_MAX];
    float *y[MM_MAX];
    int64_t ldy[MM_MAX];
    int64_t total_rows; /* sum of the weights' ne1 */
    int64_t chunk;      /* rows handed out at a time */
    atomic_llong next;  /* first row not yet handed out */
    const float *x;
    int64_t ldx;
    int n;
    char *xq;
    size_t xq_stride;
    float *tiles;
    size_t tile_floats;
} mm_ctx;

static void run(mope_pool *pool, mope_pool_fn fn, void *ctx) {
    if (pool) mope_pool_run(pool, fn, ctx);
    else fn(ctx, 0, 1);
}

static void quantize_job(void *arg, int ith, int nth) {
    mm_ctx *c = arg;
    int64_t lo, hi;
    mope_split(c->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        mope_quantize_act(c->w[0]->type, c->x + i * c->ldx, c->xq + (size_t)i * c->xq_stride, c->w[0]->ne0);
}

/* Threads take chunks of the concatenated rows from a shared counter
 * rather than fixed shares: on a busy machine a descheduled thread then
 * delays the step by one chunk, not by its whole share. */
static void for_chunks(mm_ctx *c, int ith, void (*fn)(mm_ctx *, int, int64_t, int64_t, int)) {
    for (;;) {
        int64_t lo = atomic_fetch_add_explicit(&c->next, c->chunk, memory_order_relaxed);
        if (lo >= c->total_rows) return;
        int64_t hi = lo + c->chunk < c->total_rows ? lo + c->chunk : c->total_rows;
        int64_t base = 0;
        for (int k = 0; k < c->n_w && lo < hi; k++) {
            int64_t rows = c->w[k]->ne1;
            if (lo < base + rows) {
                int64_t end = hi < base + rows ? hi : base + rows;
                fn(c, k, lo - base, end - base, ith);
                lo = end;
            }
            base += rows;
        }
    }
}

static void vecdot_rows(mm_ctx *c, int k, int64_t lo, int64_t hi, int ith) {
    (void)ith;
    const mope_wmat *w = c->w[k];
    float *y = c->y[k];
    int64_t ldy = c->ldy[k];
    const char *wrow = (const char *)w->data + (size_t)lo * w->row_bytes;
    /* the multi-row kernel decodes each weight block once for all rows */
    for (int64_t j = lo; j < hi; j++, wrow += w->row_bytes)
        mope_vec_dot_rows(w->type, w->ne0, c->n, &y[j], ldy, wrow, c->xq, c->xq_stride);
}

static void vecdot_job(void *arg, int ith, int nth) {
    (void)nth;
    for_chunks(arg, ith, vecdot_rows);
}

/* F16 weights, few rows: the register-tiled kernel over f32 copies of the
 * F16-rounded activations.  Activation rows go in blocks of 12 so a block
 * (12 KiB at K = 256) and the chunk's weight rows both stay in L1 while
 * every weight row of the chunk passes over them. */
static void tile_rows(mm_ctx *c, int k, int64_t lo, int64_t hi, int ith) {
    (void)ith;
    const mope_wmat *w = c->w[k];
    size_t ldx = c->xq_stride / sizeof(float);
    const float *xf = (const float *)c->xq;
    for (int r0 = 0; r0 < c->n; r0 += 12) {
        int nr = c->n - r0 < 12 ? c->n - r0 : 12;
        mope_gemm_f16(w->ne0, (int)(hi - lo), (const char *)w->data + (size_t)lo * w->row_bytes, w->row_bytes, nr,
                      xf + (size_t)r0 * ldx, ldx, c->y[k] + (size_t)r0 * c->ldy[k] + lo, c->ldy[k]);
    }
}

static void tile_job(void *arg, int ith, int nth) {
    (void)nth;
    for_chunks(arg, ith, tile_rows);
}

static void gemm_rows(mm_ctx *c, int k, int64_t lo, int64_t hi, int ith) {
    float *tile = c->tiles + (size_t)ith * c->tile_floats; /* this thread's */
    const mope_wmat *w = c->w[k];
    int64_t K = w->ne0;
    int64_t tile_rows = (int64_t)c->tile_floats / K;
    bool direct = w->type == MOPE_TYPE_F32 && ((uintptr_t)w->data % sizeof(float)) == 0;
    for (int64_t j0 = lo; j0 < hi; j0 += tile_rows) {
        int64_t nr = hi - j0 < tile_rows ? hi - j0 : tile_rows;
        const float *wt;
        if (direct) {
            wt = (const float *)((const char *)w->data + (size_t)j0 * w->row_bytes);
        } else {
            for (int64_t r = 0; r < nr; r++)
                mope_dequantize_row(w->type, (const char *)w->data + (size_t)(j0 + r) * w->row_bytes, tile + r * K, K);
            wt = tile;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->n, (int)nr, (int)K, 1.0f, c->x, (int)c->ldx, wt,
                    (int)K, 0.0f, c->y[k] + j0, (int)c->ldy[k]);
    }
}

static void gemm_job(void *arg, int ith, int nth) {
    (void)nth;
    for_chunks(arg, ith, gemm_rows);
}

/* Measured on a 2048 x 5632 matrix, one thread (AVX-512 VNNI): integer
 * vec_dot runs ~0.035 ns per multiply-add for quantised weights at any row
 * count, dequantise + sgemm only pulls ahead from ~128 rows; f32 weights
 * need no dequantisation, so sgemm wins from a few rows; f16 in between. */
static int gemm_min_rows(const mope_model *m, mope_type t) {
    if (m->gemm_min_rows > 0) return m->gemm_min_rows;
    if (t == MOPE_TYPE_F32) return 8;
    if (t == MOPE_TYPE_F16 || t == MOPE_TYPE_BF16) return 64;
    return 128;
}

int mope_matmul_n(mope_model *m, int n_w, const mope_wmat *const *w, const float *x, int64_t ldx, int n_rows,
                  float *const *y, const int64_t *ldy, mope_pool *pool, mope_error *err) {
    if (n_rows <= 0) return 0;
    if (n_w < 1 || n_w > MM_MAX) return mope_error_set(err, MOPE_EINVAL, "matmul: %d weights", n_w);
    /* weights whose inputs quantise differently go one at a time */
    for (int k = 1; k < n_w; k++) {
        if (w[k]->ne0 != w[0]->ne0 ||
            mope_type_get(w[k]->type)->vec_dot_type != mope_type_get(w[0]->type)->vec_dot_type) {
            for (int j = 0; j < n_w; j++) {
                int rc = mope_matmul_n(m, 1, &w[j], x, ldx, n_rows, &y[j], &ldy[j], pool, err);
                if (rc) return rc;
            }
            return 0;
        }
    }
    int nth = pool ? mope_pool_size(pool) : 1;
    mm_ctx c = {.n_w = n_w, .x = x, .ldx = ldx, .n = n_rows};
    atomic_init(&c.next, 0);
    for (int k = 0; k < n_w; k++) {
        c.w[k] = w[k];
        c.y[k] = y[k];
        c.ldy[k] = ldy[k];
        c.total_rows += w[k]->ne1;
    }
    if (n_rows >= gemm_min_rows(m, w[0]->type)) {
        if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
        if (m->s.cap_thr < nth || (int64_t)m->s.tile_floats < w[0]->ne0)
            return mope_error_set(err, MOPE_ESTATE, "matmul: scratch not reserved");
        c.tiles = m->s.tiles;
        c.tile_floats = m->s.tile_floats;
        c.chunk = (int64_t)c.tile_floats / w[0]->ne0;
        run(pool, gemm_job, &c);
        return 0;
    }
    if (m->s.cap_rows < n_rows) return mope_error_set(err, MOPE_ESTATE, "matmul: scratch not reserved");
    c.xq = m->s.xq;
    c.xq_stride = m->s.xq_stride;
    /* the tiled kernel does the same arithmetic per output as the single-row
     * one (tested bit-identical) and is faster for a lone row too, since it
     * sums four outputs' lanes together */
    if (w[0]->type == MOPE_TYPE_F16 && mope_gemm_f16_available(w[0]->ne0)) {
        mope_round_f16_rows(x, (size_t)ldx, (float *)c.xq, c.xq_stride / sizeof(float), n_rows, w[0]->ne0);
        /* ~8 chunks per thread, of at least 16 rows, multiples of the tile's 4 */
        c.chunk = (c.total_rows / (8 * nth)) & ~(int64_t)3;
        if (c.chunk < 16) c.chunk = 16;
        run(pool, tile_job, &c);
        return 0;
    }
    /* a few rows quantise faster on one thread than a dispatch costs */
    if (n_rows * w[0]->ne0 < 16384 || !pool) quantize_job(&c, 0, 1);
    else run(pool, quantize_job, &c);
    /* ~8 chunks per thread, of at least 16 rows */
    c.chunk = c.total_rows / (8 * nth);
    if (c.chunk < 16) c.chunk = 16;
    run(pool, vecdot_job, &c);
    return 0;
}

int mope_matmul(mope_model *m, const mope_wmat *w, const float *x, int64_t ldx, int n_rows, float *y,
                int64_t ldy, mope_pool *pool, mope_error *err) {
    return mope_matmul_n(m, 1, &w, x, ldx, n_rows, &y, &ldy, pool, err);
}
