/* Attention internals shared by attn.c and attn_avx2.c: query-row-blocked
 * AVX2 kernels, the vectorised exp and the softmax rows built on it.
 * Blocked kernels keep the per-element summation order of the row kernels
 * (tl_kernels), so a block gives the same bits as its rows one by one. */
#ifndef MOPE_TRAIN_ATTN_H
#define MOPE_TRAIN_ATTN_H

#include "train/train_internal.h"

/* Query rows handled per pass (scores and P V go four at a time). */
enum { TL_ATT_ROWS = 8 };

/* s[i*lds + j] = sum_d q[i*ldq + d] kt[d*ldk + j], i < 4, j < n */
void tl_dot4_avx2(float *s, size_t lds, const float *q, size_t ldq, const float *kt, size_t ldk, int n, int hd);
/* y[i*ldy + d] = sum_j p[i*ldp + j] x[j*ldx + d], i < 4, d < hd */
void tl_wsum4_avx2(float *y, size_t ldy, const float *p, size_t ldp, const float *x, size_t ldx, int n, int hd);
/* x[j*ldx + d] += sum_{i<4} a[i*lda + j] y[i*ldy + d] (i in order), j < n, d < hd */
void tl_outer4_avx2(float *x, size_t ldx, const float *a, size_t lda, const float *y, size_t ldy, int n, int hd);
/* the same over eight rows */
void tl_outer8_avx2(float *x, size_t ldx, const float *a, size_t lda, const float *y, size_t ldy, int n, int hd);

/* x[i] = exp(x[i]) in place, about 1 ulp (NaN stays NaN, overflow gives inf). */
void tl_exp_avx2(float *x, size_t n);
/* a[0..n) = softmax(scale * a[0..n)) */
void tl_softmax_row_avx2(float *a, int n, float scale);
/* ds[j] = scale * p[j] (ds[j] - sum_k p[k] ds[k]) for j < n (ds holds dP on entry) */
void tl_softmax_bwd_row_avx2(float *ds, const float *p, int n, float scale);

/* SwiGLU over [lo, hi) (see tl_swiglu_fwd / tl_swiglu_bwd). */
void tl_swiglu_bwd_avx2(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t lo,
                        size_t hi);

#endif
