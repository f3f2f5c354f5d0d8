/* Multi-row AVX-512 kernels (quant_multi_avx2.c explains the scheme) for
 * the types with AVX-512 single-row kernels: Q8_0 and Q4_0 (256-bit VNNI:
 * per weight block |w| is taken once, each row then costs one sign, one
 * dpbusd, one convert and one FMA), Q4_K and Q6_K (512-bit BW: nibbles,
 * high bits and scale vectors decoded once per block), F32 (16 lanes).  As
 * there, R = 1 of each body is the table's single-row kernel, so batched
 * and single rows give bit-identical results.  F16 keeps its AVX2 pair. */
#include <immintrin.h>

#include "core/quant_kernels.h"

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4")

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

AI __m256i ld256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

AI __m256i nibbles32(const uint8_t *q) {
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
    v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

#define MULTI(name, body)                                                                              \
    static void name(int64_t n, int nr, float *s, int64_t lds, const void *w, const void *x, size_t ldx) { \
        switch (nr) {                                                                                  \
        case 2: body(2, n, s, lds, w, x, ldx); break;                                                  \
        case 3: body(3, n, s, lds, w, x, ldx); break;                                                  \
        default: body(4, n, s, lds, w, x, ldx); break;                                                 \
        }                                                                                              \
    }                                                                                                  \
    static void name##_1(int64_t n, float *s, const void *w, const void *x) { body(1, n, s, 1, w, x, 0); }

/* |w| (u8) x sign(x, w) (s8): exact for x in [-127, 127]. */
#define BLOCK32_ROWS(R, wv, dw, b, i, acc)                                                                 \
    do {                                                                                                   \
        __m256i aw_ = _mm256_abs_epi8(wv);                                                                 \
        UNROLL for (int r = 0; r < (R); r++) {                                                             \
            __m256i p_ = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw_,                                  \
                                             _mm256_sign_epi8(ld256((b)[r][i].qs), (wv)));                 \
            (acc)[r] = _mm256_fmadd_ps(_mm256_set1_ps((dw) * h2f((b)[r][i].d)), _mm256_cvtepi32_ps(p_), (acc)[r]); \
        }                                                                                                  \
    } while (0)

AI void q8_0_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    const blk_q8_0 *a = w, *b[MOPE_DOT_MULTI];
    __m256 acc[MOPE_DOT_MULTI], acc1[MOPE_DOT_MULTI];
    UNROLL for (int r = 0; r < R; r++) {
        b[r] = (const blk_q8_0 *)((const char *)x + (size_t)r * ldx);
        acc[r] = acc1[r] = _mm256_setzero_ps();
    }
    int64_t i = 0, nb = n / QK;
    for (; i + 2 <= nb; i += 2) {
        __m256i w0 = ld256(a[i].qs), w1 = ld256(a[i + 1].qs);
        BLOCK32_ROWS(R, w0, h2f(a[i].d), b, i, acc);
        BLOCK32_ROWS(R, w1, h2f(a[i + 1].d), b, i + 1, acc1);
    }
    if (i < nb) {
        __m256i w0 = ld256(a[i].qs);
        BLOCK32_ROWS(R, w0, h2f(a[i].d), b, i, acc);
    }
    UNROLL for (int r = 0; r < R; r++) s[r * lds] = hsum8(_mm256_add_ps(acc[r], acc1[r]));
}
MULTI(multi_q8_0, q8_0_R)

AI void q4_0_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    const blk_q4_0 *a = w;
    const blk_q8_0 *b[MOPE_DOT_MULTI];
    __m256 acc[MOPE_DOT_MULTI], acc1[MOPE_DOT_MULTI];
    UNROLL for (int r = 0; r < R; r++) {
        b[r] = (const blk_q8_0 *)((const char *)x + (size_t)r * ldx);
        acc[r] = acc1[r] = _mm256_setzero_ps();
    }
    const __m256i eight = _mm256_set1_epi8(8);
    int64_t i = 0, nb = n / QK;
    for (; i + 2 <= nb; i += 2) {
        __m256i w0 = _mm256_sub_epi8(nibbles32(a[i].qs), eight), w1 = _mm256_sub_epi8(nibbles32(a[i + 1].qs), eight);
        BLOCK32_ROWS(R, w0, h2f(a[i].d), b, i, acc);
        BLOCK32_ROWS(R, w1, h2f(a[i + 1].d), b, i + 1, acc1);
    }
    if (i < nb) {
        __m256i w0 = _mm256_sub_epi8(nibbles32(a[i].qs), eight);
        BLOCK32_ROWS(R, w0, h2f(a[i].d), b, i, acc);
    }
    UNROLL for (int r = 0; r < R; r++) s[r * lds] = hsum8(_mm256_add_ps(acc[r], acc1[r]));
}
MULTI(multi_q4_0, q4_0_R)

/* ---------------------------------------------------- K-quants (512-bit) */

AI __m128i k_min_sums(const int16_t bsums[16], const uint8_t m[8]) {
    __m128i lo = _mm_loadu_si128((const __m128i *)bsums), hi = _mm_loadu_si128((const __m128i *)(bsums + 8));
    return _mm_madd_epi16(_mm_hadd_epi16(lo, hi), _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m)));
}

AI __m512i splat2_epi16(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

AI void q4_K_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    const blk_q4_K *a = w;
    const blk_q8_K *b[MOPE_DOT_MULTI];
    __m512 acc[MOPE_DOT_MULTI];
    __m128 accm[MOPE_DOT_MULTI];
    UNROLL for (int r = 0; r < R; r++) {
        b[r] = (const blk_q8_K *)((const char *)x + (size_t)r * ldx);
        acc[r] = _mm512_setzero_ps();
        accm[r] = _mm_setzero_ps();
    }
    const __m512i low4 = _mm512_set1_epi8(15);
    for (int64_t i = 0; i < n / QKK; i++) {
        uint8_t sc[8], m[8];
        mope_k_scales(a[i].scales, sc, m);
        const __m512i scv = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
        __m512i sumi[MOPE_DOT_MULTI];
        UNROLL for (int r = 0; r < R; r++) sumi[r] = _mm512_setzero_si512();
        for (int c2 = 0; c2 < 2; c2++) {
            __m512i v = _mm512_loadu_si512((const void *)(a[i].qs + 64 * c2));
            __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            /* back to element order: chunk 2c2 is (lo, hi) of its 32 bytes */
            __m512i e0 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
            __m512i e1 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
            __m512i s0 = _mm512_permutexvar_epi16(splat2_epi16(4 * c2, 4 * c2 + 1), scv);
            __m512i s1 = _mm512_permutexvar_epi16(splat2_epi16(4 * c2 + 2, 4 * c2 + 3), scv);
            UNROLL for (int r = 0; r < R; r++) {
                const int8_t *qx = b[r][i].qs + 128 * c2;
                __m512i p0 = _mm512_madd_epi16(_mm512_maddubs_epi16(e0, _mm512_loadu_si512((const void *)qx)), s0);
                __m512i p1 = _mm512_madd_epi16(_mm512_maddubs_epi16(e1, _mm512_loadu_si512((const void *)(qx + 64))), s1);
                sumi[r] = _mm512_add_epi32(sumi[r], _mm512_add_epi32(p0, p1));
            }
        }
        float d = h2f(a[i].d), dmin = h2f(a[i].dmin);
        UNROLL for (int r = 0; r < R; r++) {
            float dx = b[r][i].d;
            accm[r] = _mm_fmadd_ps(_mm_set1_ps(dmin * dx), _mm_cvtepi32_ps(k_min_sums(b[r][i].bsums, m)), accm[r]);
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d * dx), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        __m128 t = _mm_hadd_ps(accm[r], accm[r]);
        t = _mm_hadd_ps(t, t);
        s[r * lds] = _mm512_reduce_add_ps(acc[r]) - _mm_cvtss_f32(t);
    }
}
MULTI(multi_q4_K, q4_K_R)

AI void q6_K_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    const blk_q6_K *a = w;
    const blk_q8_K *b[MOPE_DOT_MULTI];
    __m512 acc[MOPE_DOT_MULTI];
    UNROLL for (int r = 0; r < R; r++) {
        b[r] = (const blk_q8_K *)((const char *)x + (size_t)r * ldx);
        acc[r] = _mm512_setzero_ps();
    }
    const __m512i low4 = _mm512_set1_epi8(15), hmask = _mm512_set1_epi8(0x30);
    /* per 128-bit lane: scale j eight times then j+1 eight times; lanes hold
     * sub-blocks (4g, 4g+1) and (4g+2, 4g+3) */
    __m256i pat[4];
    for (int g = 0; g < 4; g++)
        pat[g] = _mm256_add_epi8(_mm256_set1_epi8((char)(4 * g)),
                                 _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                  2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    for (int64_t i = 0; i < n / QKK; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)a[i].scales);
        __m256i scb = _mm256_broadcastsi128_si256(sc8), sc16 = _mm256_cvtepi8_epi16(sc8);
        __m512i sumi[MOPE_DOT_MULTI];
        /* the -32 offset of every weight: 32 * sum_j sc_j * bsums_j */
        UNROLL for (int r = 0; r < R; r++) {
            __m256i corr = _mm256_madd_epi16(ld256(b[r][i].bsums), sc16);
            sumi[r] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5))),
                _mm256_setzero_si256(), 1);
        }
        for (int h = 0; h < 2; h++) {
            __m512i L = _mm512_loadu_si512((const void *)(a[i].ql + 64 * h));
            __m256i H = ld256(a[i].qh + 32 * h);
            __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_slli_epi16(H, 4)), _mm256_slli_epi16(H, 2), 1);
            __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(H), _mm256_srli_epi16(H, 2), 1);
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(L, low4), _mm512_and_si512(h01, hmask));
            __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), low4), _mm512_and_si512(h23, hmask));
            __m512i s01 = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(scb, pat[2 * h]));
            __m512i s23 = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(scb, pat[2 * h + 1]));
            UNROLL for (int r = 0; r < R; r++) {
                const int8_t *qx = b[r][i].qs + 128 * h;
                __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512((const void *)qx));
                __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512((const void *)(qx + 64)));
                sumi[r] = _mm512_add_epi32(sumi[r], _mm512_add_epi32(_mm512_madd_epi16(p01, s01), _mm512_madd_epi16(p23, s23)));
            }
        }
        float d = h2f(a[i].d);
        UNROLL for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d * b[r][i].d), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
    }
    UNROLL for (int r = 0; r < R; r++) s[r * lds] = _mm512_reduce_add_ps(acc[r]);
}
MULTI(multi_q6_K, q6_K_R)

/* ------------------------------------------------------------------ F32 */

AI void f32_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    const float *a = w, *b[MOPE_DOT_MULTI];
    __m512 acc[MOPE_DOT_MULTI][4];
    UNROLL for (int r = 0; r < R; r++) {
        b[r] = (const float *)((const char *)x + (size_t)r * ldx);
        acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 w0 = _mm512_loadu_ps(a + i), w1 = _mm512_loadu_ps(a + i + 16);
        __m512 w2 = _mm512_loadu_ps(a + i + 32), w3 = _mm512_loadu_ps(a + i + 48);
        UNROLL for (int r = 0; r < R; r++) {
            acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b[r] + i), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(b[r] + i + 16), acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(b[r] + i + 32), acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(b[r] + i + 48), acc[r][3]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 w0 = _mm512_loadu_ps(a + i);
        UNROLL for (int r = 0; r < R; r++) acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b[r] + i), acc[r][0]);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 w0 = _mm512_maskz_loadu_ps(m, a + i);
        UNROLL for (int r = 0; r < R; r++) acc[r][1] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, b[r] + i), acc[r][1]);
    }
    UNROLL for (int r = 0; r < R; r++)
        s[r * lds] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3])));
}
MULTI(multi_f32, f32_R)

void mope_quant_fill_multi_avx512(mope_quant_kernels *k) {
    k->dot[MOPE_TYPE_Q8_0] = multi_q8_0_1;
    k->dot[MOPE_TYPE_Q4_0] = multi_q4_0_1;
    k->dot[MOPE_TYPE_Q4_K] = multi_q4_K_1;
    k->dot[MOPE_TYPE_Q6_K] = multi_q6_K_1;
    k->dot[MOPE_TYPE_F32] = multi_f32_1;
    k->dot_multi[MOPE_TYPE_Q8_0] = multi_q8_0;
    k->dot_multi[MOPE_TYPE_Q4_0] = multi_q4_0;
    k->dot_multi[MOPE_TYPE_Q4_K] = multi_q4_K;
    k->dot_multi[MOPE_TYPE_Q6_K] = multi_q6_K;
    k->dot_multi[MOPE_TYPE_F32] = multi_f32;
}
