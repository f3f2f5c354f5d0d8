/* AVX2 + FMA versions of the attention row kernels (see tl_kernels in
 * train_internal.h).  Every loop is vertical -- lanes never get summed
 * together -- so each output element is accumulated in the same order as
 * the scalar kernels (only FMA's single rounding differs) and the result is
 * independent of how the work is split. */
#include "train/train_internal.h"

#include <immintrin.h>

/* s[j] = sum_d q[d] kt[d*ldk + j], j < n */
static void rowdot_avx2(float *s, const float *q, const float *kt, size_t ldk, int n, int hd) {
    int j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < hd; d++) {
            __m256 qd = _mm256_broadcast_ss(q + d);
            const float *k = kt + (size_t)d * ldk + j;
            a0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k), a0);
            a1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 8), a1);
            a2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 16), a2);
            a3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 24), a3);
        }
        _mm256_storeu_ps(s + j, a0);
        _mm256_storeu_ps(s + j + 8, a1);
        _mm256_storeu_ps(s + j + 16, a2);
        _mm256_storeu_ps(s + j + 24, a3);
    }
    for (; j + 8 <= n; j += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int d = 0; d < hd; d++)
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + d), _mm256_loadu_ps(kt + (size_t)d * ldk + j), a0);
        _mm256_storeu_ps(s + j, a0);
    }
    for (; j < n; j++) {
        float a = 0;
        for (int d = 0; d < hd; d++) a = __builtin_fmaf(q[d], kt[(size_t)d * ldk + j], a);
        s[j] = a;
    }
}

/* y[d] = sum_j p[j] x[j*ldx + d], d < hd */
static void wsum_avx2(float *y, const float *p, const float *x, size_t ldx, int n, int hd) {
    int d = 0;
    for (; d + 32 <= hd; d += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            __m256 pj = _mm256_broadcast_ss(p + j);
            const float *r = x + (size_t)j * ldx + d;
            a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(r), a0);
            a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(r + 8), a1);
            a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(r + 16), a2);
            a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(r + 24), a3);
        }
        _mm256_storeu_ps(y + d, a0);
        _mm256_storeu_ps(y + d + 8, a1);
        _mm256_storeu_ps(y + d + 16, a2);
        _mm256_storeu_ps(y + d + 24, a3);
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int j = 0; j < n; j++)
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), _mm256_loadu_ps(x + (size_t)j * ldx + d), a0);
        _mm256_storeu_ps(y + d, a0);
    }
    for (; d < hd; d++) {
        float a = 0;
        for (int j = 0; j < n; j++) a = __builtin_fmaf(p[j], x[(size_t)j * ldx + d], a);
        y[d] = a;
    }
}

/* x[j*ldx + d] += a[j] y[d], j < n, d < hd */
static void outer_acc_avx2(float *x, size_t ldx, const float *a, const float *y, int n, int hd) {
    for (int j = 0; j < n; j++) {
        float *r = x + (size_t)j * ldx;
        __m256 aj = _mm256_broadcast_ss(a + j);
        int d = 0;
        for (; d + 8 <= hd; d += 8)
            _mm256_storeu_ps(r + d, _mm256_fmadd_ps(aj, _mm256_loadu_ps(y + d), _mm256_loadu_ps(r + d)));
        for (; d < hd; d++) r[d] = __builtin_fmaf(a[j], y[d], r[d]);
    }
}

const tl_kernels tl_kernels_avx2 = {rowdot_avx2, wsum_avx2, outer_acc_avx2, "avx2"};
