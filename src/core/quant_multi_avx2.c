/* Multi-row AVX2 kernels: one weight row against 2..MOPE_DOT_MULTI
 * activation rows.  A decode batch (K experts, rollouts, server requests)
 * multiplies the same weights with several rows; the single-row kernels
 * would load and decode every weight block once per row.  Here each block
 * is loaded and decoded (nibbles unpacked, signs taken, K-quant scales
 * unpacked and broadcast) once, and only the per-row part -- the integer
 * multiply-adds with that row's activations and its scale -- repeats.
 *
 * Each kernel is written once with the row count R as a parameter and
 * instantiated for R = 1..4 (always_inline + unrolled row loops), so the
 * per-row accumulators live in registers; R = 1 is the table's single-row
 * kernel for these types, so a row's result is bit-identical alone or in a
 * batch.  Q8_0/Q4_0 keep two accumulators per row (even and odd blocks),
 * F32/F16 four (and so go two rows at a time), the K-quants one per
 * super-block: enough to hide the FMA latency for a lone row.  Integer
 * arithmetic is the sign trick of quant_avx2.c with the same ranges. */
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

AI float hsum4(__m128 s) {
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

/* Instantiates name(n, nr, ...) from body(R, n, ...) for R = 2..4, and
 * name_1, the single-row kernel of the table, from the same body with
 * R = 1: every row then goes through the same arithmetic in the same
 * order whatever batch it is in, so a row's result is bit-identical
 * alone or batched (the forward pass's tests rely on it). */
#define MULTI(name, body)                                                                              \
    static void name(int64_t n, int nr, float *s, int64_t lds, const void *w, const void *x, size_t ldx) { \
        switch (nr) {                                                                                  \
        case 2: body(2, n, s, lds, w, x, ldx); break;                                                  \
        case 3: body(3, n, s, lds, w, x, ldx); break;                                                  \
        default: body(4, n, s, lds, w, x, ldx); break;                                                 \
        }                                                                                              \
    }                                                                                                  \
    static void name##_1(int64_t n, float *s, const void *w, const void *x) { body(1, n, s, 1, w, x, 0); }

/* ------------------------------------------------------------ float types */

/* Four chains per row, as a lone row needs to keep the FMA units busy;
 * that is 8 accumulators for two rows, so these go two rows at a time. */
#define FLOAT_BODY(R, T, LOAD, WCONV)                                                                      \
    const T *a = w, *b[2];                                                                             \
    __m256 acc[2][4];                                                                                  \
    UNROLL for (int r = 0; r < R; r++) {                                                               \
        b[r] = (const T *)((const char *)x + (size_t)r * ldx);                                         \
        acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm256_setzero_ps();                           \
    }                                                                                                  \
    int64_t i = 0;                                                                                     \
    for (; i + 32 <= n; i += 32) {                                                                     \
        __m256 w0 = LOAD(a + i), w1 = LOAD(a + i + 8), w2 = LOAD(a + i + 16), w3 = LOAD(a + i + 24);   \
        UNROLL for (int r = 0; r < R; r++) {                                                           \
            acc[r][0] = _mm256_fmadd_ps(w0, LOAD(b[r] + i), acc[r][0]);                                \
            acc[r][1] = _mm256_fmadd_ps(w1, LOAD(b[r] + i + 8), acc[r][1]);                            \
            acc[r][2] = _mm256_fmadd_ps(w2, LOAD(b[r] + i + 16), acc[r][2]);                           \
            acc[r][3] = _mm256_fmadd_ps(w3, LOAD(b[r] + i + 24), acc[r][3]);                           \
        }                                                                                              \
    }                                                                                                  \
    for (; i + 8 <= n; i += 8) {                                                                       \
        __m256 w0 = LOAD(a + i);                                                                       \
        UNROLL for (int r = 0; r < R; r++) acc[r][0] = _mm256_fmadd_ps(w0, LOAD(b[r] + i), acc[r][0]); \
    }                                                                                                  \
    UNROLL for (int r = 0; r < R; r++) {                                                               \
        float t = hsum8(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3]))); \
        for (int64_t j = i; j < n; j++) t += WCONV(a[j]) * WCONV(b[r][j]);                             \
        s[r * lds] = t;                                                                                \
    }

#define F32_ID(v) (v)
AI void f32_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    FLOAT_BODY(R, float, _mm256_loadu_ps, F32_ID)
}

AI __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

AI void f16_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    FLOAT_BODY(R, uint16_t, ld_f16, h2f)
}

/* Up to four rows as pairs (each row's arithmetic is the same in any pair). */
#define MULTI2(name, body)                                                                             \
    static void name(int64_t n, int nr, float *s, int64_t lds, const void *w, const void *x, size_t ldx) { \
        body(2, n, s, lds, w, x, ldx);                                                                 \
        if (nr == 3) body(1, n, s + 2 * lds, lds, w, (const char *)x + 2 * ldx, ldx);                  \
        if (nr >= 4) body(2, n, s + 2 * lds, lds, w, (const char *)x + 2 * ldx, ldx);                  \
    }                                                                                                  \
    static void name##_1(int64_t n, float *s, const void *w, const void *x) { body(1, n, s, 1, w, x, 0); }
MULTI2(multi_f32, f32_R)
MULTI2(multi_f16, f16_R)

/* ---------------------------------------------- 32-blocks (Q8_0 and Q4_0) */

/* wv holds the block's signed weights: |w| (u8) x sign(x, w) (s8) per row,
 * exact for x in [-127, 127] as in the single-row kernels. */
#define BLOCK32_ROWS(R, wv, dw, b, i, acc)                                                                 \
    do {                                                                                                   \
        __m256i aw_ = _mm256_sign_epi8((wv), (wv));                                                        \
        UNROLL for (int r = 0; r < (R); r++) {                                                             \
            __m256i p_ = _mm256_maddubs_epi16(aw_, _mm256_sign_epi8(ld256((b)[r][i].qs), (wv)));            \
            __m256 f_ = _mm256_cvtepi32_ps(_mm256_madd_epi16(p_, _mm256_set1_epi16(1)));                    \
            (acc)[r] = _mm256_fmadd_ps(_mm256_set1_ps((dw) * h2f((b)[r][i].d)), f_, (acc)[r]);             \
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

/* ------------------------------------------------------ K-quants x Q8_K */

AI __m256i k_scale_vec(const uint8_t sc[8]) {
    return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
}
#define K_SC(v, j) _mm256_shuffle_epi8((v), _mm256_set1_epi16((short)(0x0100 + 0x0202 * (j))))

AI __m128i k_min_sums(const int16_t bsums[16], __m128i m16) {
    __m128i lo = _mm_loadu_si128((const __m128i *)bsums), hi = _mm_loadu_si128((const __m128i *)(bsums + 8));
    return _mm_madd_epi16(_mm_hadd_epi16(lo, hi), m16);
}

AI void q4_K_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    const blk_q4_K *a = w;
    const blk_q8_K *b[MOPE_DOT_MULTI];
    __m256 acc[MOPE_DOT_MULTI];
    __m128 accm[MOPE_DOT_MULTI];
    UNROLL for (int r = 0; r < R; r++) {
        b[r] = (const blk_q8_K *)((const char *)x + (size_t)r * ldx);
        acc[r] = _mm256_setzero_ps();
        accm[r] = _mm_setzero_ps();
    }
    const __m256i low4 = _mm256_set1_epi8(15);
    for (int64_t i = 0; i < n / QKK; i++) {
        uint8_t sc[8], m[8];
        mope_k_scales(a[i].scales, sc, m);
        const __m256i scv = k_scale_vec(sc);
        const __m128i m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m));
        __m256i sumi[MOPE_DOT_MULTI];
        UNROLL for (int r = 0; r < R; r++) sumi[r] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i v = ld256(a[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            __m256i s0 = K_SC(scv, 2 * c), s1 = K_SC(scv, 2 * c + 1);
            UNROLL for (int r = 0; r < R; r++) {
                const int8_t *qx = b[r][i].qs + 64 * c;
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ld256(qx)), s0);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, ld256(qx + 32)), s1);
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p0, p1));
            }
        }
        float d = h2f(a[i].d), dmin = h2f(a[i].dmin);
        UNROLL for (int r = 0; r < R; r++) {
            float dx = b[r][i].d;
            accm[r] = _mm_fmadd_ps(_mm_set1_ps(dmin * dx), _mm_cvtepi32_ps(k_min_sums(b[r][i].bsums, m16)), accm[r]);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) s[r * lds] = hsum8(acc[r]) - hsum4(accm[r]);
}
MULTI(multi_q4_K, q4_K_R)

AI void q6_K_R(const int R, int64_t n, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    const blk_q6_K *a = w;
    const blk_q8_K *b[MOPE_DOT_MULTI];
    __m256 acc[MOPE_DOT_MULTI];
    UNROLL for (int r = 0; r < R; r++) {
        b[r] = (const blk_q8_K *)((const char *)x + (size_t)r * ldx);
        acc[r] = _mm256_setzero_ps();
    }
    const __m256i low4 = _mm256_set1_epi8(15), hmask = _mm256_set1_epi8(0x30);
    const __m128i pair0 = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    for (int64_t i = 0; i < n / QKK; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)a[i].scales);
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i sumi[MOPE_DOT_MULTI];
        /* the -32 offset of every weight: 32 * sum_j sc_j * bsums_j */
        UNROLL for (int r = 0; r < R; r++)
            sumi[r] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_slli_epi32(_mm256_madd_epi16(ld256(b[r][i].bsums), sc16), 5));
        for (int h = 0; h < 2; h++) {
            const uint8_t *L = a[i].ql + 64 * h;
            __m256i l0 = ld256(L), l1 = ld256(L + 32), hb = ld256(a[i].qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), hmask));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), hmask));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(hb, hmask));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), hmask));
            for (int k = 0; k < 4; k++) {
                /* scales 2j, 2j+1 (j = 4h + k) in the low / high 128-bit lane */
                __m128i sel = _mm_add_epi8(pair0, _mm_set1_epi8((char)(2 * (4 * h + k))));
                __m256i scv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
                UNROLL for (int r = 0; r < R; r++) {
                    __m256i p = _mm256_maddubs_epi16(q[k], ld256(b[r][i].qs + 128 * h + 32 * k));
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, scv));
                }
            }
        }
        float d = h2f(a[i].d);
        UNROLL for (int r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * b[r][i].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
    }
    UNROLL for (int r = 0; r < R; r++) s[r * lds] = hsum8(acc[r]);
}
MULTI(multi_q6_K, q6_K_R)

void mope_quant_fill_multi_avx2(mope_quant_kernels *k) {
    k->dot[MOPE_TYPE_F32] = multi_f32_1;
    k->dot[MOPE_TYPE_F16] = multi_f16_1;
    k->dot[MOPE_TYPE_Q8_0] = multi_q8_0_1;
    k->dot[MOPE_TYPE_Q4_0] = multi_q4_0_1;
    k->dot[MOPE_TYPE_Q4_K] = multi_q4_K_1;
    k->dot[MOPE_TYPE_Q6_K] = multi_q6_K_1;
    k->dot_multi[MOPE_TYPE_F32] = multi_f32;
    k->dot_multi[MOPE_TYPE_F16] = multi_f16;
    k->dot_multi[MOPE_TYPE_Q8_0] = multi_q8_0;
    k->dot_multi[MOPE_TYPE_Q4_0] = multi_q4_0;
    k->dot_multi[MOPE_TYPE_Q4_K] = multi_q4_K;
    k->dot_multi[MOPE_TYPE_Q6_K] = multi_q6_K;
}
