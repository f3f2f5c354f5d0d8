/* Few-row F16 GEMM (AVX-512): several weight rows against several
 * activation rows at once, for decode batches of 2..~64 rows.
 *
 * The multi-row kernel (quant_multi_avx2.c) walks one weight row at a time
 * against pairs of activation rows and converts the activations from F16 on
 * every use, so a batch of R rows costs ~R/2 passes of conversions and
 * loads per weight row.  Here a register tile of MR weight rows x NR
 * activation rows (24 zmm accumulators) reuses every converted weight
 * vector for NR rows and every activation vector for MR rows, with the
 * activations converted to f32 once per matmul by the caller.
 *
 * Each output's arithmetic is exactly that of the single-row F16 kernel
 * (f16_R(1) in quant_multi_avx2.c): its four 8-lane chains over steps of
 * 32 are the two halves of two 16-lane accumulators, a step of 8 goes to
 * the first chain only, and the reduction is hsum8((c0 + c1) + (c2 + c3)).
 * A row's logits are then bit-identical whichever path its batch takes. */
#include <immintrin.h>

#include "core/exp_simd.h"
#include "core/quant_kernels.h"

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

#define MR 4 /* weight rows per tile (reduce4 takes all four together) */
#define NR 3 /* activation rows per tile: MR * NR * 2 = 24 accumulators */
/* Weight tiles are read row-interleaved, which the hardware prefetchers
 * follow poorly when the weights stream from DRAM (a model larger than the
 * cache): the first pass over a tile prefetches the tile this far ahead. */
#define PF_AHEAD 2

AI __m512 ld16h(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

/* (c0 + c1) + (c2 + c3) in lanes 0..7, then hsum8 of those lanes in the
 * single-row kernel's order. */
AI float reduce(__m512 a, __m512 b) {
    __m256 s8 = _mm256_add_ps(_mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1)),
                              _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* reduce() of four outputs at once, each lane doing the same additions in
 * the same order: 128-bit blocks of the four accumulator pairs are
 * interleaved so every stage adds for all four. */
AI __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 b0, __m512 b1, __m512 b2, __m512 b3) {
    /* [lo256(p) | lo256(q)] + [hi256(p) | hi256(q)]: c0 + c1, then + (c2 + c3) */
    __m512 u01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xee));
    __m512 v01 = _mm512_add_ps(_mm512_shuffle_f32x4(b0, b1, 0x44), _mm512_shuffle_f32x4(b0, b1, 0xee));
    __m512 u23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xee));
    __m512 v23 = _mm512_add_ps(_mm512_shuffle_f32x4(b2, b3, 0x44), _mm512_shuffle_f32x4(b2, b3, 0xee));
    __m512 s01 = _mm512_add_ps(u01, v01), s23 = _mm512_add_ps(u23, v23); /* 8 lanes per output */
    /* lo128 + hi128 of each output's 8 lanes */
    __m512 s4 = _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, 0x88), _mm512_shuffle_f32x4(s01, s23, 0xdd));
    __m512 t = _mm512_add_ps(s4, _mm512_shuffle_ps(s4, s4, 0xee));    /* movehl */
    __m512 r = _mm512_add_ps(t, _mm512_movehdup_ps(t));                /* lane 0 + lane 1 */
    const __m512i lane0s = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(lane0s, r));
}

/* y[r * ldy + j] for j < mr weight rows, r < nr activation rows. */
AI void tile(const int mr, const int nr, int64_t n, const uint16_t *w, size_t wst, const float *x,
             size_t ldx, float *y, int64_t ldy, const bool pf) {
    __m512 a[MR][NR], b[MR][NR];
    _Static_assert(MR * NR <= 12, "accumulators must fit the 32 zmm registers");
    UNROLL for (int j = 0; j < mr; j++) UNROLL for (int r = 0; r < nr; r++) a[j][r] = b[j][r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0[MR];
        UNROLL for (int j = 0; j < mr; j++) w0[j] = ld16h(w + j * wst + i);
        /* the same line of the rows PF_AHEAD tiles on (prefetching never faults past the end) */
        if (pf)
            UNROLL for (int j = 0; j < mr; j++)
                _mm_prefetch((const char *)(w + (PF_AHEAD * MR + j) * wst + i), _MM_HINT_T0);
        UNROLL for (int r = 0; r < nr; r++) {
            __m512 xv = _mm512_loadu_ps(x + r * ldx + i);
            UNROLL for (int j = 0; j < mr; j++) a[j][r] = _mm512_fmadd_ps(w0[j], xv, a[j][r]);
        }
        UNROLL for (int j = 0; j < mr; j++) w0[j] = ld16h(w + j * wst + i + 16);
        UNROLL for (int r = 0; r < nr; r++) {
            __m512 xv = _mm512_loadu_ps(x + r * ldx + i + 16);
            UNROLL for (int j = 0; j < mr; j++) b[j][r] = _mm512_fmadd_ps(w0[j], xv, b[j][r]);
        }
    }
    for (; i + 8 <= n; i += 8) { /* chain 0 only: lanes 0..7 of a */
        const __mmask16 lo = 0xff;
        __m512 w0[MR];
        UNROLL for (int j = 0; j < mr; j++)
            w0[j] = _mm512_cvtph_ps(_mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(w + j * wst + i))));
        UNROLL for (int r = 0; r < nr; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(lo, x + r * ldx + i);
            UNROLL for (int j = 0; j < mr; j++) a[j][r] = _mm512_mask3_fmadd_ps(w0[j], xv, a[j][r], lo);
        }
    }
    if (mr == 4) {
        UNROLL for (int r = 0; r < nr; r++)
            _mm_storeu_ps(y + r * ldy, reduce4(a[0][r], a[1][r], a[2][r], a[3][r], b[0][r], b[1][r], b[2][r], b[3][r]));
    } else {
        UNROLL for (int r = 0; r < nr; r++)
            UNROLL for (int j = 0; j < mr; j++) y[r * ldy + j] = reduce(a[j][r], b[j][r]);
    }
}

/* Activation rows in tiles of NR, then one tile of the 1..NR-1 left. */
AI void tile_cols(const int mr, int64_t n, const uint16_t *w, size_t wst, int nx, const float *x,
                  size_t ldx, float *y, int64_t ldy) {
    /* the first pass over these weight rows prefetches the ones ahead */
    if (nx >= NR) tile(mr, NR, n, w, wst, x, ldx, y, ldy, true);
    else if (nx == 2) tile(mr, 2, n, w, wst, x, ldx, y, ldy, true);
    else tile(mr, 1, n, w, wst, x, ldx, y, ldy, true);
    int r0 = nx >= NR ? NR : nx;
    for (; r0 + NR <= nx; r0 += NR) tile(mr, NR, n, w, wst, x + r0 * ldx, ldx, y + r0 * ldy, ldy, false);
    x += r0 * ldx;
    y += r0 * ldy;
    switch (nx - r0) {
    case 1: tile(mr, 1, n, w, wst, x, ldx, y, ldy, false); break;
    case 2: tile(mr, 2, n, w, wst, x, ldx, y, ldy, false); break;
    default: break;
    }
}

/* n % 8 == 0 (the dispatcher checks): the single-row kernel's scalar tail
 * has no counterpart here.  (Converting a weight block to f32 once for
 * all activation tiles measured slower than converting it per tile.) */
static void gemm_f16(int64_t n, int nw, const void *w, size_t w_stride, int nx, const float *x, size_t ldx, float *y,
                     int64_t ldy) {
    size_t wst = w_stride / sizeof(uint16_t);
    const uint16_t *wh = w;
    int j = 0;
    for (; j + MR <= nw; j += MR) tile_cols(MR, n, wh + (size_t)j * wst, wst, nx, x, ldx, y + j, ldy);
    const uint16_t *wj = wh + (size_t)j * wst;
    if (nw - j == 1) tile_cols(1, n, wj, wst, nx, x, ldx, y + j, ldy);
    else if (nw - j == 2) tile_cols(2, n, wj, wst, nx, x, ldx, y + j, ldy);
    else if (nw - j == 3) tile_cols(3, n, wj, wst, nx, x, ldx, y + j, ldy);
}

/* ---- y[0..m) += sum_j a[j] * B[j * ldb .. + m) (LoRA's small products) */

/* B's 16 elements at p (mask mk) as f32, for f32 or F16 B (h). */
AI __m512 ldb16(const void *B, int64_t idx, __mmask16 mk, const bool h) {
    if (h) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)B + idx));
    return _mm512_maskz_loadu_ps(mk, (const float *)B + idx);
}

/* Few outputs (the rank side of A x): one chain per output would wait on
 * the FMA latency for all n terms, so four chains over j, added at the end. */
AI void axpy_narrow(float *y, const float *a, const void *B, int64_t ldb, int64_t n, int64_t m, const bool h) {
    for (int64_t o = 0; o < m; o += 16) {
        __mmask16 mk = m - o >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (m - o)) - 1);
        __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) {
            c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[j]), ldb16(B, j * ldb + o, mk, h), c0);
            c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[j + 1]), ldb16(B, (j + 1) * ldb + o, mk, h), c1);
            c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[j + 2]), ldb16(B, (j + 2) * ldb + o, mk, h), c2);
            c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[j + 3]), ldb16(B, (j + 3) * ldb + o, mk, h), c3);
        }
        for (; j < n; j++) c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[j]), ldb16(B, j * ldb + o, mk, h), c0);
        __m512 s = _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3));
        _mm512_mask_storeu_ps(y + o, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, y + o), s));
    }
}

/* Many outputs (B's side): four 16-output chunks in flight, each loaded
 * and stored once for all n terms. */
AI void axpy_wide(float *y, const float *a, const void *B, int64_t ldb, int64_t n, int64_t m, const bool h) {
    const __mmask16 all = 0xffff;
    int64_t o = 0;
    for (; o + 64 <= m; o += 64) {
        __m512 c0 = _mm512_loadu_ps(y + o), c1 = _mm512_loadu_ps(y + o + 16);
        __m512 c2 = _mm512_loadu_ps(y + o + 32), c3 = _mm512_loadu_ps(y + o + 48);
        for (int64_t j = 0; j < n; j++) {
            int64_t b = j * ldb + o;
            __m512 aj = _mm512_set1_ps(a[j]);
            c0 = _mm512_fmadd_ps(aj, ldb16(B, b, all, h), c0);
            c1 = _mm512_fmadd_ps(aj, ldb16(B, b + 16, all, h), c1);
            c2 = _mm512_fmadd_ps(aj, ldb16(B, b + 32, all, h), c2);
            c3 = _mm512_fmadd_ps(aj, ldb16(B, b + 48, all, h), c3);
        }
        _mm512_storeu_ps(y + o, c0);
        _mm512_storeu_ps(y + o + 16, c1);
        _mm512_storeu_ps(y + o + 32, c2);
        _mm512_storeu_ps(y + o + 48, c3);
    }
    for (; o < m; o += 16) {
        __mmask16 mk = m - o >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (m - o)) - 1);
        __m512 c = _mm512_maskz_loadu_ps(mk, y + o);
        for (int64_t j = 0; j < n; j++) c = _mm512_fmadd_ps(_mm512_set1_ps(a[j]), ldb16(B, j * ldb + o, mk, h), c);
        _mm512_mask_storeu_ps(y + o, mk, c);
    }
}

static void axpy_rows_avx512(float *y, const float *a, const float *B, int64_t ldb, int64_t n, int64_t m) {
    if (m <= 32) axpy_narrow(y, a, B, ldb, n, m, false);
    else axpy_wide(y, a, B, ldb, n, m, false);
}

static void axpy_rows_f16_avx512(float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n, int64_t m) {
    if (m <= 32) axpy_narrow(y, a, B, ldb, n, m, true);
    else axpy_wide(y, a, B, ldb, n, m, true);
}

/* ---- s[t] = dot(q, K + t * ldk) over d elements, t < n (attention scores) */

/* Sixteen 16-lane partial sums into one vector of their totals: halves,
 * quarters, then a 4 x 4 transpose within each 128-bit block. */
AI __m512 sum16(const __m512 v[16]) {
    __m512 w[8], x[4];
    UNROLL for (int i = 0; i < 8; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xee));
    UNROLL for (int i = 0; i < 4; i++)
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xdd));
    /* x[i] block k: 4 partials of row 4i + k */
    __m512 s0 = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
    __m512 s1 = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(s0, s1, 0x44), _mm512_shuffle_ps(s0, s1, 0xee));
    /* r block k: rows k, 4 + k, 8 + k, 12 + k */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

static void dot_rows_f32_avx512(const float *q, const float *K, int64_t ldk, int64_t n, int64_t d, float *s) {
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
        int nt = n - t0 < 16 ? (int)(n - t0) : 16;
        __m512 v[16];
        for (int t = 0; t < 16; t++) v[t] = _mm512_setzero_ps();
        for (int64_t i = 0; i < d; i += 16) {
            __mmask16 mk = d - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i)) - 1);
            __m512 qv = _mm512_maskz_loadu_ps(mk, q + i);
            for (int t = 0; t < nt; t++)
                v[t] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, K + (t0 + t) * ldk + i), v[t]);
        }
        _mm512_mask_storeu_ps(s + t0, (__mmask16)((1u << nt) - 1), sum16(v));
    }
}

/* ---- g = silu(g) * u (the FFN gate) */


static void swiglu_avx512(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
        __m512 e = mope_exp16_avx512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 sv = _mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(g + i, mk, _mm512_mul_ps(sv, _mm512_maskz_loadu_ps(mk, u + i)));
    }
}

void mope_quant_fill_gemm_avx512(mope_quant_kernels *k) {
    k->swiglu_f32 = swiglu_avx512;
    k->gemm_f16 = gemm_f16;
    k->axpy_rows_f32 = axpy_rows_avx512;
    k->axpy_rows_f16 = axpy_rows_f16_avx512;
    k->dot_rows_f32 = dot_rows_f32_avx512;
}
