/* AVX2 + FMA versions of the attention row kernels (see tl_kernels in
 * train_internal.h), their four- and eight-row forms, and an AVX2 exp with
 * the softmax / SwiGLU loops built on it (attn.h).  Every matrix loop is
 * vertical -- lanes never get summed together -- so each output element is
 * accumulated in the same order as the scalar kernels (only FMA's single
 * rounding differs) and the result is independent of how the work is split.
 * The softmax row sums do add lanes, in a fixed order that depends on the
 * row length only. */
#include "core/exp_simd.h"
#include "train/attn.h"

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

/* ---- four query rows per pass: each loaded key / value vector feeds four
 * FMAs, and dK / dV are read and written once per four rows ---- */

void tl_dot4_avx2(float *s, size_t lds, const float *q, size_t ldq, const float *kt, size_t ldk, int n, int hd) {
    const float *q0 = q, *q1 = q + ldq, *q2 = q + 2 * ldq, *q3 = q + 3 * ldq;
    float *s0 = s, *s1 = s + lds, *s2 = s + 2 * lds, *s3 = s + 3 * lds;
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, e0 = a0, e1 = a0;
        for (int d = 0; d < hd; d++) {
            const float *k = kt + (size_t)d * ldk + j;
            __m256 k0 = _mm256_loadu_ps(k), k1 = _mm256_loadu_ps(k + 8);
            __m256 x = _mm256_broadcast_ss(q0 + d);
            a0 = _mm256_fmadd_ps(x, k0, a0), a1 = _mm256_fmadd_ps(x, k1, a1);
            x = _mm256_broadcast_ss(q1 + d);
            b0 = _mm256_fmadd_ps(x, k0, b0), b1 = _mm256_fmadd_ps(x, k1, b1);
            x = _mm256_broadcast_ss(q2 + d);
            c0 = _mm256_fmadd_ps(x, k0, c0), c1 = _mm256_fmadd_ps(x, k1, c1);
            x = _mm256_broadcast_ss(q3 + d);
            e0 = _mm256_fmadd_ps(x, k0, e0), e1 = _mm256_fmadd_ps(x, k1, e1);
        }
        _mm256_storeu_ps(s0 + j, a0), _mm256_storeu_ps(s0 + j + 8, a1);
        _mm256_storeu_ps(s1 + j, b0), _mm256_storeu_ps(s1 + j + 8, b1);
        _mm256_storeu_ps(s2 + j, c0), _mm256_storeu_ps(s2 + j + 8, c1);
        _mm256_storeu_ps(s3 + j, e0), _mm256_storeu_ps(s3 + j + 8, e1);
    }
    for (; j + 8 <= n; j += 8) {
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, c0 = a0, e0 = a0;
        for (int d = 0; d < hd; d++) {
            __m256 k0 = _mm256_loadu_ps(kt + (size_t)d * ldk + j);
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q0 + d), k0, a0);
            b0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q1 + d), k0, b0);
            c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q2 + d), k0, c0);
            e0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q3 + d), k0, e0);
        }
        _mm256_storeu_ps(s0 + j, a0), _mm256_storeu_ps(s1 + j, b0);
        _mm256_storeu_ps(s2 + j, c0), _mm256_storeu_ps(s3 + j, e0);
    }
    if (j < n)
        for (int i = 0; i < 4; i++) rowdot_avx2(s + i * lds + j, q + i * ldq, kt + j, ldk, n - j, hd);
}

void tl_wsum4_avx2(float *y, size_t ldy, const float *p, size_t ldp, const float *x, size_t ldx, int n, int hd) {
    const float *p0 = p, *p1 = p + ldp, *p2 = p + 2 * ldp, *p3 = p + 3 * ldp;
    float *y0 = y, *y1 = y + ldy, *y2 = y + 2 * ldy, *y3 = y + 3 * ldy;
    int d = 0;
    for (; d + 16 <= hd; d += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, e0 = a0, e1 = a0;
        for (int j = 0; j < n; j++) {
            const float *r = x + (size_t)j * ldx + d;
            __m256 v0 = _mm256_loadu_ps(r), v1 = _mm256_loadu_ps(r + 8);
            __m256 w = _mm256_broadcast_ss(p0 + j);
            a0 = _mm256_fmadd_ps(w, v0, a0), a1 = _mm256_fmadd_ps(w, v1, a1);
            w = _mm256_broadcast_ss(p1 + j);
            b0 = _mm256_fmadd_ps(w, v0, b0), b1 = _mm256_fmadd_ps(w, v1, b1);
            w = _mm256_broadcast_ss(p2 + j);
            c0 = _mm256_fmadd_ps(w, v0, c0), c1 = _mm256_fmadd_ps(w, v1, c1);
            w = _mm256_broadcast_ss(p3 + j);
            e0 = _mm256_fmadd_ps(w, v0, e0), e1 = _mm256_fmadd_ps(w, v1, e1);
        }
        _mm256_storeu_ps(y0 + d, a0), _mm256_storeu_ps(y0 + d + 8, a1);
        _mm256_storeu_ps(y1 + d, b0), _mm256_storeu_ps(y1 + d + 8, b1);
        _mm256_storeu_ps(y2 + d, c0), _mm256_storeu_ps(y2 + d + 8, c1);
        _mm256_storeu_ps(y3 + d, e0), _mm256_storeu_ps(y3 + d + 8, e1);
    }
    if (d < hd)
        for (int i = 0; i < 4; i++) wsum_avx2(y + i * ldy + d, p + i * ldp, x + d, ldx, n, hd - d);
}

void tl_outer4_avx2(float *x, size_t ldx, const float *a, size_t lda, const float *y, size_t ldy, int n, int hd) {
    const float *y0 = y, *y1 = y + ldy, *y2 = y + 2 * ldy, *y3 = y + 3 * ldy;
    for (int j = 0; j < n; j++) {
        float *r = x + (size_t)j * ldx;
        float w0 = a[j], w1 = a[lda + j], w2 = a[2 * lda + j], w3 = a[3 * lda + j];
        __m256 b0 = _mm256_set1_ps(w0), b1 = _mm256_set1_ps(w1), b2 = _mm256_set1_ps(w2), b3 = _mm256_set1_ps(w3);
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
            __m256 acc = _mm256_loadu_ps(r + d);
            acc = _mm256_fmadd_ps(b0, _mm256_loadu_ps(y0 + d), acc);
            acc = _mm256_fmadd_ps(b1, _mm256_loadu_ps(y1 + d), acc);
            acc = _mm256_fmadd_ps(b2, _mm256_loadu_ps(y2 + d), acc);
            acc = _mm256_fmadd_ps(b3, _mm256_loadu_ps(y3 + d), acc);
            _mm256_storeu_ps(r + d, acc);
        }
        for (; d < hd; d++) {
            float acc = r[d];
            acc = __builtin_fmaf(w0, y0[d], acc);
            acc = __builtin_fmaf(w1, y1[d], acc);
            acc = __builtin_fmaf(w2, y2[d], acc);
            r[d] = __builtin_fmaf(w3, y3[d], acc);
        }
    }
}

/* Eight rows in one read-modify-write of x: the dK / dV update is bound by
 * that traffic, not by the FMAs. */
void tl_outer8_avx2(float *x, size_t ldx, const float *a, size_t lda, const float *y, size_t ldy, int n, int hd) {
    const float *y0 = y, *y1 = y + ldy, *y2 = y + 2 * ldy, *y3 = y + 3 * ldy;
    const float *y4 = y + 4 * ldy, *y5 = y + 5 * ldy, *y6 = y + 6 * ldy, *y7 = y + 7 * ldy;
    for (int j = 0; j < n; j++) {
        float *r = x + (size_t)j * ldx;
        float f[8];
        for (int i = 0; i < 8; i++) f[i] = a[(size_t)i * lda + j];
        __m256 w0 = _mm256_set1_ps(f[0]), w1 = _mm256_set1_ps(f[1]), w2 = _mm256_set1_ps(f[2]);
        __m256 w3 = _mm256_set1_ps(f[3]), w4 = _mm256_set1_ps(f[4]), w5 = _mm256_set1_ps(f[5]);
        __m256 w6 = _mm256_set1_ps(f[6]), w7 = _mm256_set1_ps(f[7]);
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
            __m256 acc = _mm256_loadu_ps(r + d);
            acc = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y0 + d), acc);
            acc = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y1 + d), acc);
            acc = _mm256_fmadd_ps(w2, _mm256_loadu_ps(y2 + d), acc);
            acc = _mm256_fmadd_ps(w3, _mm256_loadu_ps(y3 + d), acc);
            acc = _mm256_fmadd_ps(w4, _mm256_loadu_ps(y4 + d), acc);
            acc = _mm256_fmadd_ps(w5, _mm256_loadu_ps(y5 + d), acc);
            acc = _mm256_fmadd_ps(w6, _mm256_loadu_ps(y6 + d), acc);
            acc = _mm256_fmadd_ps(w7, _mm256_loadu_ps(y7 + d), acc);
            _mm256_storeu_ps(r + d, acc);
        }
        for (; d < hd; d++) {
            float acc = r[d];
            for (int i = 0; i < 8; i++) acc = __builtin_fmaf(f[i], y[(size_t)i * ldy + d], acc);
            r[d] = acc;
        }
    }
}


/* The tail goes through a zero-padded vector, so every element gets the
 * same function whatever its position. */
static inline __m256 load_part(const float *x, int n, float pad) {
    float t[8];
    for (int i = 0; i < 8; i++) t[i] = i < n ? x[i] : pad;
    return _mm256_loadu_ps(t);
}

static inline void store_part(float *x, __m256 v, int n) {
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int i = 0; i < n; i++) x[i] = t[i];
}

void tl_exp_avx2(float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, mope_exp8_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) store_part(x + i, mope_exp8_avx2(load_part(x + i, (int)(n - i), 0.0f)), (int)(n - i));
}

/* Lane sums in a fixed order: the result depends on n only. */
static inline float hsum8(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

static inline float hmax8(__m256 v) {
    float t[8], m = -__builtin_inff();
    _mm256_storeu_ps(t, v);
    for (int i = 0; i < 8; i++) m = t[i] > m ? t[i] : m;
    return m;
}

void tl_softmax_row_avx2(float *a, int n, float scale) {
    __m256 sc = _mm256_set1_ps(scale), mx = _mm256_set1_ps(-__builtin_inff());
    int j = 0, tail = n % 8, nv = n - tail;
    for (; j < nv; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(a + j), sc);
        _mm256_storeu_ps(a + j, v);
        mx = _mm256_max_ps(mx, v);
    }
    float m = hmax8(mx);
    for (; j < n; j++) {
        a[j] *= scale;
        if (a[j] > m) m = a[j];
    }
    __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    for (j = 0; j < nv; j += 8) {
        __m256 e = mope_exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(a + j), mv));
        _mm256_storeu_ps(a + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (tail) {
        /* padding -inf -> exp 0, so the padded lanes add nothing */
        __m256 e = mope_exp8_avx2(_mm256_sub_ps(load_part(a + nv, tail, -__builtin_inff()), mv));
        store_part(a + nv, e, tail);
        sum = _mm256_add_ps(sum, e);
    }
    float inv = 1.0f / hsum8(sum);
    __m256 iv = _mm256_set1_ps(inv);
    for (j = 0; j < nv; j += 8) _mm256_storeu_ps(a + j, _mm256_mul_ps(_mm256_loadu_ps(a + j), iv));
    for (; j < n; j++) a[j] *= inv;
}

void tl_softmax_bwd_row_avx2(float *ds, const float *p, int n, float scale) {
    __m256 acc = _mm256_setzero_ps();
    int j = 0, tail = n % 8, nv = n - tail;
    for (; j < nv; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(p + j), _mm256_loadu_ps(ds + j), acc);
    if (tail) acc = _mm256_fmadd_ps(load_part(p + nv, tail, 0.0f), load_part(ds + nv, tail, 0.0f), acc);
    __m256 s = _mm256_set1_ps(hsum8(acc)), sc = _mm256_set1_ps(scale);
    for (j = 0; j < nv; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(p + j), _mm256_sub_ps(_mm256_loadu_ps(ds + j), s));
        _mm256_storeu_ps(ds + j, _mm256_mul_ps(v, sc));
    }
    float sf = _mm256_cvtss_f32(s);
    for (; j < n; j++) ds[j] = p[j] * (ds[j] - sf) * scale;
}

/* ---- SwiGLU backward (the forward is core's mope_swiglu_f32): h = g sig(g) u ---- */

/* d silu(g)/dg = sig(g) (1 + g (1 - sig(g))); dgate may alias dh */
static inline void swiglu_bwd8(__m256 g, __m256 u, __m256 dh, __m256 *dgate, __m256 *dup) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, mope_exp8_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    *dup = _mm256_mul_ps(_mm256_mul_ps(dh, g), sg);
    __m256 t = _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, sg)));
    *dgate = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dh, u), sg), t);
}

void tl_swiglu_bwd_avx2(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t lo,
                        size_t hi) {
    size_t i = lo;
    __m256 dg, du;
    for (; i + 8 <= hi; i += 8) {
        swiglu_bwd8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i), _mm256_loadu_ps(dh + i), &dg, &du);
        _mm256_storeu_ps(dup + i, du);
        _mm256_storeu_ps(dgate + i, dg);
    }
    if (i < hi) {
        int r = (int)(hi - i);
        swiglu_bwd8(load_part(gate + i, r, 0.0f), load_part(up + i, r, 0.0f), load_part(dh + i, r, 0.0f), &dg, &du);
        store_part(dup + i, du, r);
        store_part(dgate + i, dg, r);
    }
}
