/* Causal attention with GQA, forward and backward, in blocks of query rows.
 * q[N, H*hd], k/v[N, KH*hd]; query head h reads KV head h / (H/KH).
 * att[b, h, t, :] = softmax_{t2 <= t}(q_t . k_t2 / sqrt(hd)); y_t = sum att v.
 * One task per (sequence, KV head): the query heads of a group share dK and
 * dV, so no two threads write the same element, and each element's sums run
 * in an order fixed by the data (blocks of TL_ATT_ROWS rows, rows in order),
 * not by the thread count.  The keys (or values) are transposed once per
 * task into the thread's scratch so the score rows are vertical loops. */
#include "train/attn.h"

#include <math.h>

typedef struct {
    const tl_kernels *kn;
    float *y, *att, *dq, *dk, *dv, *thr, *blk;
    const float *q, *k, *v, *dy, *att_in;
    int B, T, H, KH, hd;
} attn_job;

/* dst[d*T + t] = src[t*ld + d] */
static void transpose_rows(float *dst, const float *src, size_t ld, int T, int hd) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < hd; d++) dst[(size_t)d * T + t] = src[(size_t)t * ld + d];
}

static void softmax_row_scalar(float *a, int n, float scale) {
    float mx = -INFINITY;
    for (int t2 = 0; t2 < n; t2++) {
        a[t2] *= scale;
        if (a[t2] > mx) mx = a[t2];
    }
    float sum = 0;
    for (int t2 = 0; t2 < n; t2++) {
        a[t2] = expf(a[t2] - mx);
        sum += a[t2];
    }
    float inv = 1.0f / sum;
    for (int t2 = 0; t2 < n; t2++) a[t2] *= inv;
}

static void softmax_bwd_row_scalar(float *ds, const float *p, int n, float scale) {
    float sum = 0;
    for (int t2 = 0; t2 < n; t2++) sum += p[t2] * ds[t2];
    for (int t2 = 0; t2 < n; t2++) ds[t2] = p[t2] * (ds[t2] - sum) * scale;
}

/* Rows t0 .. t0+r-1 of a block.  Groups of four go through the AVX2
 * kernels up to the group's longest row (the shorter rows get values past
 * their end: scores that the softmax overwrites, or terms with P = 0 that
 * add exact zeros); the rest go row by row. */
static void blk_dot(const tl_kernels *kn, bool vec, float *s, const float *q, size_t qs, const float *kt, int T, int t0,
                    int r, int hd) {
    int i = 0;
    if (vec)
        for (; i + 4 <= r; i += 4)
            tl_dot4_avx2(s + (size_t)i * T, (size_t)T, q + (size_t)i * qs, qs, kt, (size_t)T, t0 + i + 4, hd);
    for (; i < r; i++) kn->rowdot(s + (size_t)i * T, q + (size_t)i * qs, kt, (size_t)T, t0 + i + 1, hd);
}

static void blk_wsum(const tl_kernels *kn, bool vec, float *y, size_t ys, const float *p, const float *x, size_t xs,
                     int T, int t0, int r, int hd) {
    int i = 0;
    if (vec)
        for (; i + 4 <= r; i += 4)
            tl_wsum4_avx2(y + (size_t)i * ys, ys, p + (size_t)i * T, (size_t)T, x, xs, t0 + i + 4, hd);
    for (; i < r; i++) kn->wsum(y + (size_t)i * ys, p + (size_t)i * T, x, xs, t0 + i + 1, hd);
}

/* x[j] += sum_i a[i][j] y[i], rows i in order (as row-by-row outer_acc) */
static void blk_outer(const tl_kernels *kn, bool vec, float *x, size_t xs, const float *a, const float *y, size_t ys,
                      int T, int t0, int r, int hd) {
    int i = 0;
    if (vec && r == 8) {
        tl_outer8_avx2(x, xs, a, (size_t)T, y, ys, t0 + 8, hd);
        return;
    }
    if (vec)
        for (; i + 4 <= r; i += 4)
            tl_outer4_avx2(x, xs, a + (size_t)i * T, (size_t)T, y + (size_t)i * ys, ys, t0 + i + 4, hd);
    for (; i < r; i++) kn->outer_acc(x, xs, a + (size_t)i * T, y + (size_t)i * ys, t0 + i + 1, hd);
}

static void attn_fwd_job(void *ctx, int ith, int nth) {
    attn_job *j = ctx;
    const tl_kernels *kn = j->kn;
    bool vec = kn == &tl_kernels_avx2;
    int T = j->T, H = j->H, KH = j->KH, hd = j->hd, G = H / KH;
    size_t qs = (size_t)H * hd, ks = (size_t)KH * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *kt = j->thr + (size_t)ith * (hd + 1) * T;
    int64_t lo, hi;
    mope_split((int64_t)j->B * KH, ith, nth, &lo, &hi);
    for (int64_t task = lo; task < hi; task++) {
        int b = (int)(task / KH), kh = (int)(task % KH);
        size_t koff = (size_t)b * T * ks + (size_t)kh * hd;
        const float *vb = j->v + koff;
        transpose_rows(kt, j->k + koff, ks, T, hd);
        for (int h = kh * G; h < (kh + 1) * G; h++) {
            const float *qh = j->q + (size_t)b * T * qs + (size_t)h * hd;
            float *yh = j->y + (size_t)b * T * qs + (size_t)h * hd;
            float *ah = j->att + ((size_t)b * H + h) * T * T;
            for (int t0 = 0; t0 < T; t0 += TL_ATT_ROWS) {
                int r = T - t0 < TL_ATT_ROWS ? T - t0 : TL_ATT_ROWS;
                float *a = ah + (size_t)t0 * T;
                blk_dot(kn, vec, a, qh + (size_t)t0 * qs, qs, kt, T, t0, r, hd);
                for (int i = 0; i < r; i++) {
                    float *row = a + (size_t)i * T;
                    int len = t0 + i + 1;
                    if (vec)
                        tl_softmax_row_avx2(row, len, scale);
                    else
                        softmax_row_scalar(row, len, scale);
                    memset(row + len, 0, sizeof(float) * (size_t)(T - len));
                }
                blk_wsum(kn, vec, yh + (size_t)t0 * qs, qs, a, vb, ks, T, t0, r, hd);
            }
        }
    }
}

void tl_attn_fwd(mope_pool *p, const tl_kernels *kn, float *thr, float *y, float *att, const float *q, const float *k,
                 const float *v, int B, int T, int H, int KH, int hd) {
    attn_job j = {.kn = kn, .thr = thr, .y = y, .att = att, .q = q, .k = k, .v = v, .B = B, .T = T, .H = H,
                  .KH = KH, .hd = hd};
    mope_pool_run(p, attn_fwd_job, &j);
}

/* With P = att, s = pre-softmax scores, for a block of query rows:
 *   dP[t, t2] = dy_t . v_t2;  dv_t2 += P[t, t2] dy_t
 *   ds[t, t2] = P[t, t2] (dP[t, t2] - sum_j P[t, j] dP[t, j])
 *   dq_t = scale sum_t2 ds[t, t2] k_t2;  dk_t2 += scale ds[t, t2] q_t
 * The block's rows of dS live in j->blk (TL_ATT_ROWS x T per share); when
 * that could not be allocated, rows go one at a time through thr's spare
 * row -- same sums, same order, same bits. */
static void attn_bwd_job(void *ctx, int ith, int nth) {
    attn_job *j = ctx;
    const tl_kernels *kn = j->kn;
    bool vec = kn == &tl_kernels_avx2;
    int T = j->T, H = j->H, KH = j->KH, hd = j->hd, G = H / KH;
    size_t qs = (size_t)H * hd, ks = (size_t)KH * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *vt = j->thr + (size_t)ith * (hd + 1) * T;
    int R = j->blk ? TL_ATT_ROWS : 1;
    float *ds = j->blk ? j->blk + (size_t)ith * TL_ATT_ROWS * T : vt + (size_t)hd * T;
    int64_t lo, hi;
    mope_split((int64_t)j->B * KH, ith, nth, &lo, &hi);
    for (int64_t task = lo; task < hi; task++) {
        int b = (int)(task / KH), kh = (int)(task % KH);
        size_t koff = (size_t)b * T * ks + (size_t)kh * hd;
        const float *kb = j->k + koff;
        float *dkb = j->dk + koff, *dvb = j->dv + koff;
        transpose_rows(vt, j->v + koff, ks, T, hd);
        for (int t = 0; t < T; t++)
            for (int d = 0; d < hd; d++) dkb[(size_t)t * ks + d] = dvb[(size_t)t * ks + d] = 0;
        for (int h = kh * G; h < (kh + 1) * G; h++) {
            size_t hoff = (size_t)b * T * qs + (size_t)h * hd;
            const float *ah = j->att_in + ((size_t)b * H + h) * T * T;
            for (int t0 = 0; t0 < T; t0 += R) {
                int r = T - t0 < R ? T - t0 : R, n = t0 + r;
                const float *a = ah + (size_t)t0 * T, *qr = j->q + hoff + (size_t)t0 * qs;
                const float *dyr = j->dy + hoff + (size_t)t0 * qs;
                float *dqr = j->dq + hoff + (size_t)t0 * qs;
                blk_dot(kn, vec, ds, dyr, qs, vt, T, t0, r, hd);
                blk_outer(kn, vec, dvb, ks, a, dyr, qs, T, t0, r, hd);
                for (int i = 0; i < r; i++) {
                    float *row = ds + (size_t)i * T;
                    int len = t0 + i + 1;
                    if (vec)
                        tl_softmax_bwd_row_avx2(row, a + (size_t)i * T, len, scale);
                    else
                        softmax_bwd_row_scalar(row, a + (size_t)i * T, len, scale);
                    memset(row + len, 0, sizeof(float) * (size_t)(n - len));
                }
                blk_wsum(kn, vec, dqr, qs, ds, kb, ks, T, t0, r, hd);
                blk_outer(kn, vec, dkb, ks, ds, qr, qs, T, t0, r, hd);
            }
        }
    }
}

void tl_attn_bwd(mope_pool *p, const tl_kernels *kn, float *thr, float *dq, float *dk, float *dv, const float *dy,
                 const float *att, const float *q, const float *k, const float *v, int B, int T, int H, int KH, int hd) {
    /* Small (threads x TL_ATT_ROWS x T floats) and per call, so the layout
     * of the activations stays as it is; without it rows go one by one. */
    float *blk = mope_alloc((size_t)mope_pool_size(p) * TL_ATT_ROWS * (size_t)T, sizeof(float));
    attn_job j = {.kn = kn, .thr = thr, .blk = blk, .dq = dq, .dk = dk, .dv = dv, .dy = dy, .att_in = att, .q = q,
                  .k = k, .v = v, .B = B, .T = T, .H = H, .KH = KH, .hd = hd};
    mope_pool_run(p, attn_bwd_job, &j);
    mope_free(blk);
}
