/* Layer kernels of the trainable model, each forward beside its backward
 * (llm.c style).  Every pool job splits its work so that no two threads
 * write the same element and every sum runs in an order fixed by the data,
 * not by the thread count: rows for per-row work, columns for the
 * reductions over rows (norm weights, embedding rows), (sequence, KV head)
 * groups for attention (the query heads of one group share dK, dV). */
#include "train/attn.h"
#include "mope/quant.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---- sgemm split over the pool ----
 * Each thread multiplies one block of rows of C (of columns when C has too
 * few rows to share) with a single-threaded OpenBLAS call.  Measured faster
 * than OpenBLAS's own threads (bench_train_cmp, 30M, 2 threads, docs/
 * BENCHMARKS.md): OpenBLAS's workers yield-spin between calls and compete
 * with the pool's workers for the cores.  One block per thread because
 * every block packs the other operand again: fixed blocks of 128 rows,
 * which would make the calls independent of the thread count, cost 6-12%
 * at one thread.  So, as with OpenBLAS's threads, the thread count may
 * change low bits (a block's shape can change OpenBLAS's kernel path). */

typedef struct {
    bool ta, tb, by_col;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} sgemm_job;

#define TL_SGEMM_ALIGN 16 /* block edges on the kernel's register-tile rows */

static void sgemm_job_fn(void *ctx, int ith, int nth) {
    const sgemm_job *j = ctx;
    int64_t n = j->by_col ? j->N : j->M, blo, bhi;
    mope_split((n + TL_SGEMM_ALIGN - 1) / TL_SGEMM_ALIGN, ith, nth, &blo, &bhi);
    int64_t lo = blo * TL_SGEMM_ALIGN, hi = bhi * TL_SGEMM_ALIGN < n ? bhi * TL_SGEMM_ALIGN : n;
    if (hi <= lo) return;
    const float *A = j->A, *B = j->B;
    float *C = j->C;
    int M = j->M, N = j->N;
    if (j->by_col) { /* columns lo..hi of B and C */
        B += j->tb ? lo * j->ldb : lo;
        C += lo;
        N = (int)(hi - lo);
    } else { /* rows lo..hi of A and C */
        A += j->ta ? lo : lo * j->lda;
        C += lo * j->ldc;
        M = (int)(hi - lo);
    }
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, M, N, j->K,
                j->alpha, A, j->lda, B, j->ldb, j->beta, C, j->ldc);
}

void tl_sgemm(mope_pool *p, bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    /* OpenBLAS's thread count is process-global (the inference engine
     * also wants 1): the pool provides the threads */
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
    int nth = mope_pool_size(p);
    sgemm_job j = {ta, tb, M < 2 * TL_SGEMM_ALIGN * nth && N > M, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    /* a split smaller than this costs more in dispatch than it saves */
    if (nth == 1 || (int64_t)M * N * K < 65536)
        sgemm_job_fn(&j, 0, 1);
    else
        mope_pool_run(p, sgemm_job_fn, &j);
}

/* ---- linear: out[N, NO] = in[N, NI] . W[NO, NI]^T ---- */

void tl_linear_fwd(mope_pool *p, float *out, const float *in, const float *W, int N, int NI, int NO, bool acc) {
    tl_sgemm(p, false, true, N, NO, NI, 1.0f, in, NI, W, NI, acc ? 1.0f : 0.0f, out, NO);
}

void tl_linear_bwd(mope_pool *p, float *din, float *dW, const float *dout, const float *in, const float *W, int N,
                   int NI, int NO, bool din_acc) {
    /* din[N, NI] = dout[N, NO] . W[NO, NI] */
    if (din) tl_sgemm(p, false, false, N, NI, NO, 1.0f, dout, NO, W, NI, din_acc ? 1.0f : 0.0f, din, NI);
    /* dW[NO, NI] += dout^T[NO, N] . in[N, NI] */
    if (dW) tl_sgemm(p, true, false, NO, NI, N, 1.0f, dout, NO, in, NI, 1.0f, dW, NI);
}

/* ---- embedding: out[n] = wte[tok[n]] ---- */

typedef struct {
    float *out;
    const float *in;
    const int32_t *tok;
    int N, C;
} embed_job;

static void embed_fwd_job(void *ctx, int ith, int nth) {
    embed_job *j = ctx;
    int64_t lo, hi;
    mope_split(j->N, ith, nth, &lo, &hi);
    for (int64_t n = lo; n < hi; n++)
        memcpy(j->out + n * j->C, j->in + (size_t)j->tok[n] * j->C, sizeof(float) * (size_t)j->C);
}

void tl_embed_fwd(mope_pool *p, float *out, const float *wte, const int32_t *tok, int N, int C) {
    embed_job j = {out, wte, tok, N, C};
    mope_pool_run(p, embed_fwd_job, &j);
}

/* Repeated tokens hit the same row, so threads own column ranges. */
static void embed_bwd_job(void *ctx, int ith, int nth) {
    embed_job *j = ctx;
    int64_t lo, hi;
    mope_split(j->C, ith, nth, &lo, &hi);
    for (int n = 0; n < j->N; n++) {
        float *d = j->out + (size_t)j->tok[n] * j->C;
        const float *s = j->in + (size_t)n * j->C;
        for (int64_t c = lo; c < hi; c++) d[c] += s[c];
    }
}

void tl_embed_bwd(mope_pool *p, float *dwte, const float *dout, const int32_t *tok, int N, int C) {
    embed_job j = {dwte, dout, tok, N, C};
    mope_pool_run(p, embed_bwd_job, &j);
}

/* ---- RMSNorm: out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) ---- */

typedef struct {
    float *out, *rstd, *dx, *dw;
    const float *x, *w, *dout, *rstd_in;
    int N, C;
    float eps;
} norm_job;

static void rmsnorm_fwd_job(void *ctx, int ith, int nth) {
    norm_job *j = ctx;
    int C = j->C;
    int64_t lo, hi;
    mope_split(j->N, ith, nth, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
        const float *x = j->x + n * C;
        float *o = j->out + n * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(ss / C + j->eps));
        j->rstd[n] = r;
        for (int c = 0; c < C; c++) o[c] = x[c] * r * j->w[c];
    }
}

void tl_rmsnorm_fwd(mope_pool *p, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
    norm_job j = {.out = out, .rstd = rstd, .x = x, .w = w, .N = N, .C = C, .eps = eps};
    mope_pool_run(p, rmsnorm_fwd_job, &j);
}

/* With xh = x * r and g = dout * w:
 *   dx = r * (g - xh * mean(g * xh)),   dw = sum_n dout * xh. */
static void rmsnorm_dx_job(void *ctx, int ith, int nth) {
    norm_job *j = ctx;
    int C = j->C;
    int64_t lo, hi;
    mope_split(j->N, ith, nth, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
        const float *x = j->x + n * C, *dy = j->dout + n * C;
        float *dx = j->dx + n * C;
        float r = j->rstd_in[n];
        double dot = 0;
        for (int c = 0; c < C; c++) dot += (double)dy[c] * j->w[c] * x[c];
        float k = (float)(dot / C) * r * r;
        for (int c = 0; c < C; c++) dx[c] += r * (dy[c] * j->w[c] - x[c] * k);
    }
}

static void rmsnorm_dw_job(void *ctx, int ith, int nth) {
    norm_job *j = ctx;
    int C = j->C;
    int64_t lo, hi;
    mope_split(C, ith, nth, &lo, &hi);
    if (lo == hi) return;
    for (int n = 0; n < j->N; n++) {
        const float *x = j->x + (size_t)n * C, *dy = j->dout + (size_t)n * C;
        float r = j->rstd_in[n];
        for (int64_t c = lo; c < hi; c++) j->dw[c] += dy[c] * x[c] * r;
    }
}

void tl_rmsnorm_bwd(mope_pool *p, float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                    const float *w, int N, int C) {
    norm_job j = {.dx = dx, .dw = dw, .dout = dout, .x = x, .rstd_in = rstd, .w = w, .N = N, .C = C};
    mope_pool_run(p, rmsnorm_dx_job, &j);
    if (dw) mope_pool_run(p, rmsnorm_dw_job, &j);
}

/* ---- RoPE, NORMAL mode: pairs (x[2i], x[2i+1]) of each head rotate by
 * theta = pos * base^(-2i/hd); the backward rotates by -theta. ---- */

typedef struct {
    float *x;
    const float *cosv, *sinv;
    int N, T, nh, hd;
    float sign;
} rope_job;

static void rope_job_fn(void *ctx, int ith, int nth) {
    rope_job *j = ctx;
    int half = j->hd / 2;
    int64_t lo, hi;
    mope_split(j->N, ith, nth, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
        int pos = (int)(n % j->T);
        const float *cs = j->cosv + (size_t)pos * half, *sn = j->sinv + (size_t)pos * half;
        for (int h = 0; h < j->nh; h++) {
            float *x = j->x + (size_t)n * j->nh * j->hd + (size_t)h * j->hd;
            for (int i = 0; i < half; i++) {
                float c = cs[i], s = j->sign * sn[i];
                float x0 = x[2 * i], x1 = x[2 * i + 1];
                x[2 * i] = x0 * c - x1 * s;
                x[2 * i + 1] = x0 * s + x1 * c;
            }
        }
    }
}

void tl_rope_fwd(mope_pool *p, float *x, int N, int T, int nh, int hd, const float *cosv, const float *sinv) {
    rope_job j = {x, cosv, sinv, N, T, nh, hd, 1.0f};
    mope_pool_run(p, rope_job_fn, &j);
}

void tl_rope_bwd(mope_pool *p, float *dx, int N, int T, int nh, int hd, const float *cosv, const float *sinv) {
    rope_job j = {dx, cosv, sinv, N, T, nh, hd, -1.0f};
    mope_pool_run(p, rope_job_fn, &j);
}

/* ---- attention row kernels, scalar ---- */

static void rowdot_scalar(float *s, const float *q, const float *kt, size_t ldk, int n, int hd) {
    for (int j = 0; j < n; j++) s[j] = 0;
    for (int d = 0; d < hd; d++) {
        const float *k = kt + (size_t)d * ldk;
        for (int j = 0; j < n; j++) s[j] += q[d] * k[j];
    }
}

static void wsum_scalar(float *y, const float *p, const float *x, size_t ldx, int n, int hd) {
    for (int d = 0; d < hd; d++) y[d] = 0;
    for (int j = 0; j < n; j++) {
        const float *r = x + (size_t)j * ldx;
        for (int d = 0; d < hd; d++) y[d] += p[j] * r[d];
    }
}

static void outer_acc_scalar(float *x, size_t ldx, const float *a, const float *y, int n, int hd) {
    for (int j = 0; j < n; j++) {
        float *r = x + (size_t)j * ldx;
        for (int d = 0; d < hd; d++) r[d] += a[j] * y[d];
    }
}

const tl_kernels tl_kernels_scalar = {rowdot_scalar, wsum_scalar, outer_acc_scalar, "scalar"};

const tl_kernels *tl_kernels_best(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &tl_kernels_avx2 : &tl_kernels_scalar;
}

/* Causal attention itself (tl_attn_fwd, tl_attn_bwd) is in attn.c. */

/* ---- SwiGLU: h = silu(gate) * up, silu(g) = g * sigmoid(g) ---- */

typedef struct {
    float *h, *dgate, *dup;
    const float *gate, *up, *dh;
    size_t n;
    bool vec; /* AVX2 exp (same function for every element, whatever the split) */
} swiglu_job;

/* The inference engine's kernel (core: the same function for every element
 * whatever the split, so results do not depend on the thread count's cut
 * points), applied in place on a copy of the gate. */
static void swiglu_fwd_job(void *ctx, int ith, int nth) {
    swiglu_job *j = ctx;
    int64_t lo, hi;
    mope_split((int64_t)j->n, ith, nth, &lo, &hi);
    if (hi <= lo) return;
    memmove(j->h + lo, j->gate + lo, sizeof(float) * (size_t)(hi - lo));
    mope_swiglu_f32(j->h + lo, j->up + lo, hi - lo);
}

void tl_swiglu_fwd(mope_pool *p, float *h, const float *gate, const float *up, size_t n) {
    swiglu_job j = {.h = h, .gate = gate, .up = up, .n = n, .vec = tl_kernels_best() == &tl_kernels_avx2};
    mope_pool_run(p, swiglu_fwd_job, &j);
}

/* d silu(g)/dg = sig(g) (1 + g (1 - sig(g))) */
static void swiglu_bwd_job(void *ctx, int ith, int nth) {
    swiglu_job *j = ctx;
    int64_t lo, hi;
    mope_split((int64_t)j->n, ith, nth, &lo, &hi);
    if (j->vec) {
        tl_swiglu_bwd_avx2(j->dgate, j->dup, j->dh, j->gate, j->up, (size_t)lo, (size_t)hi);
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        float g = j->gate[i], u = j->up[i], dh = j->dh[i];
        float sg = 1.0f / (1.0f + expf(-g));
        j->dup[i] = dh * g * sg;
        j->dgate[i] = dh * u * sg * (1.0f + g * (1.0f - sg));
    }
}

void tl_swiglu_bwd(mope_pool *p, float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                   size_t n) {
    swiglu_job j = {.dgate = dgate, .dup = dup, .dh = dh, .gate = gate, .up = up, .n = n,
                    .vec = tl_kernels_best() == &tl_kernels_avx2};
    mope_pool_run(p, swiglu_bwd_job, &j);
}

/* ---- cross-entropy over softmax(logits) ---- */

typedef struct {
    float *lse, *nll, *logits;
    const float *lse_in, *wgt;
    const int32_t *tgt;
    int N, V;
    float coef;
    bool vec; /* AVX2 exp */
} ce_job;

static void ce_fwd_job(void *ctx, int ith, int nth) {
    ce_job *j = ctx;
    int V = j->V;
    int64_t lo, hi;
    mope_split(j->N, ith, nth, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
        const float *l = j->logits + n * V;
        float mx = l[0];
        for (int i = 1; i < V; i++)
            if (l[i] > mx) mx = l[i];
        double s = 0;
        if (j->vec) {
            float e[256];
            for (int i0 = 0; i0 < V; i0 += 256) {
                int m = V - i0 < 256 ? V - i0 : 256;
                for (int i = 0; i < m; i++) e[i] = l[i0 + i] - mx;
                tl_exp_avx2(e, (size_t)m);
                for (int i = 0; i < m; i++) s += e[i];
            }
        } else {
            for (int i = 0; i < V; i++) s += expf(l[i] - mx);
        }
        float lse = mx + (float)log(s);
        j->lse[n] = lse;
        j->nll[n] = j->tgt[n] >= 0 ? lse - l[j->tgt[n]] : 0.0f;
    }
}

double tl_ce_fwd(mope_pool *p, float *lse, float *nll, const float *logits, const int32_t *tgt, const float *wgt,
                 int N, int V) {
    ce_job j = {.lse = lse, .nll = nll, .logits = (float *)logits, .tgt = tgt, .N = N, .V = V,
                .vec = tl_kernels_best() == &tl_kernels_avx2};
    mope_pool_run(p, ce_fwd_job, &j);
    double sum = 0;
    for (int n = 0; n < N; n++)
        if (tgt[n] >= 0) sum += (double)(wgt ? wgt[n] : 1.0f) * nll[n];
    return sum;
}

static void ce_bwd_job(void *ctx, int ith, int nth) {
    ce_job *j = ctx;
    int V = j->V;
    int64_t lo, hi;
    mope_split(j->N, ith, nth, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
        float *l = j->logits + n * V;
        float c = j->tgt[n] >= 0 ? j->coef * (j->wgt ? j->wgt[n] : 1.0f) : 0.0f;
        if (c == 0) {
            memset(l, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float lse = j->lse_in[n];
        if (j->vec) {
            for (int i = 0; i < V; i++) l[i] -= lse;
            tl_exp_avx2(l, (size_t)V);
            for (int i = 0; i < V; i++) l[i] *= c;
        } else {
            for (int i = 0; i < V; i++) l[i] = c * expf(l[i] - lse);
        }
        l[j->tgt[n]] -= c;
    }
}

void tl_ce_bwd(mope_pool *p, float *logits, const float *lse, const int32_t *tgt, const float *wgt, int N, int V,
               float coef) {
    ce_job j = {.logits = logits, .lse_in = lse, .tgt = tgt, .wgt = wgt, .N = N, .V = V, .coef = coef,
                .vec = tl_kernels_best() == &tl_kernels_avx2};
    mope_pool_run(p, ce_bwd_job, &j);
}
