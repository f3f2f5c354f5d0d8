/* AVX-512 (F, BW, VL, DQ, VNNI) kernels for the hot types: Q8_0 and Q4_0 use
 * VNNI dpbusd; the K-quants use the BW forms of maddubs/madd over 64
 * elements at a time; F32 uses 16-lane FMAs.  Other types keep their AVX2
 * kernels (the table is built on top of the AVX2 one).  F16 stays on AVX2
 * on purpose: the 512-bit vcvtph2ps form measured ~30% slower in cache on
 * the Zen 4 this was built on. */
#include <immintrin.h>

#include "core/quant_kernels.h"

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* dw*dx of blocks i..i+3 in lanes 0..3 (one f16 conversion for all eight
 * scales; each product rounds as the scalar code's does). */
#define SCALES4(a, b, i)                                                                              \
    scales4_(_mm_setr_epi16((short)(a)[(i)].d, (short)(a)[(i) + 1].d, (short)(a)[(i) + 2].d,         \
                            (short)(a)[(i) + 3].d, (short)(b)[(i)].d, (short)(b)[(i) + 1].d,         \
                            (short)(b)[(i) + 2].d, (short)(b)[(i) + 3].d))
static inline __m256 scales4_(__m128i h) {
    __m256 f = _mm256_cvtph_ps(h);
    return _mm256_castps128_ps256(_mm_mul_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1)));
}

/* Q8_0 and Q4_0 use the 256-bit VNNI forms (AVX512-VNNI + VL), one block
 * per register: measured 8-10% faster in cache on the AMD Zen 4 this was
 * built on than two blocks per 512-bit register, whose extra lane inserts
 * and shuffles cost more than the wider ops save where 512-bit ops issue as
 * two halves.  Signed x signed goes through |w| (u8) x sign(x, w) (s8):
 * exact for any w (|-128| is 128 as u8) and for x in [-127, 127], which is
 * all mope_quantize_act produces. */
static void dot_q8_0_256(int64_t n, float *s, const void *w, const void *x) {
    const blk_q8_0 *a = w, *b = x;
    int64_t nb = n / QK, i = 0;
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
#define Q8_DOT(k)                                                                                    \
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(                                                          \
        zero, _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)a[i + k].qs)),                      \
        _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)b[i + k].qs), _mm256_loadu_si256((const __m256i *)a[i + k].qs))))
    for (; i + 4 <= nb; i += 4) {
        __m256 d = SCALES4(a, b, i);
        acc0 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(0)), Q8_DOT(0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(1)), Q8_DOT(1), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(2)), Q8_DOT(2), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(3)), Q8_DOT(3), acc3);
    }
    for (; i < nb; i++) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), Q8_DOT(0), acc0);
#undef Q8_DOT
    __m256 t8 = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    t = _mm_hadd_ps(t, t);
    t = _mm_hadd_ps(t, t);
    *s = _mm_cvtss_f32(t);
}

static inline __m256i nibbles32(const uint8_t *q) {
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
    v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

static void dot_q4_0_256(int64_t n, float *s, const void *w, const void *x) {
    const blk_q4_0 *a = w;
    const blk_q8_0 *b = x;
    int64_t nb = n / QK, i = 0;
    const __m256i eight = _mm256_set1_epi8(8), zero = _mm256_setzero_si256();
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
#define Q4_DOT(k)                                                                                         \
    _mm256_cvtepi32_ps(_mm256_sub_epi32(                                                                  \
        _mm256_dpbusd_epi32(zero, nibbles32(a[i + k].qs), _mm256_loadu_si256((const __m256i *)b[i + k].qs)), \
        _mm256_dpbusd_epi32(zero, eight, _mm256_loadu_si256((const __m256i *)b[i + k].qs))))
    for (; i + 4 <= nb; i += 4) {
        __m256 d = SCALES4(a, b, i);
        acc0 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(0)), Q4_DOT(0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(1)), Q4_DOT(1), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(2)), Q4_DOT(2), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(3)), Q4_DOT(3), acc3);
    }
    for (; i < nb; i++) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), Q4_DOT(0), acc0);
#undef Q4_DOT
    __m256 t8 = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    t = _mm_hadd_ps(t, t);
    t = _mm_hadd_ps(t, t);
    *s = _mm_cvtss_f32(t);
}

static inline __m128i k_min_sums(const int16_t bsums[16], const uint8_t m[8]) {
    __m128i lo = _mm_loadu_si128((const __m128i *)bsums), hi = _mm_loadu_si128((const __m128i *)(bsums + 8));
    return _mm_madd_epi16(_mm_hadd_epi16(lo, hi), _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m)));
}

static inline __m512i splat2_epi16(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

static void dot_q4_K(int64_t n, float *s, const void *w, const void *x) {
    const blk_q4_K *a = w;
    const blk_q8_K *b = x;
    const __m512i low4 = _mm512_set1_epi8(15);
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QKK; i++) {
        uint8_t sc[8], m[8];
        mope_k_scales(a[i].scales, sc, m);
        float dx = b[i].d;
        accm = _mm_fmadd_ps(_mm_set1_ps(h2f(a[i].dmin) * dx), _mm_cvtepi32_ps(k_min_sums(b[i].bsums, m)), accm);
        __m512i sumi = _mm512_setzero_si512();
        const __m512i scv = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
        for (int c2 = 0; c2 < 2; c2++) {
            __m512i v = _mm512_loadu_si512((const void *)(a[i].qs + 64 * c2));
            __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            /* back to element order: chunk 2c2 is (lo, hi) of its 32 bytes */
            __m512i e0 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
            __m512i e1 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
            const int8_t *qx = b[i].qs + 128 * c2;
            __m512i p0 = _mm512_maddubs_epi16(e0, _mm512_loadu_si512((const void *)qx));
            __m512i p1 = _mm512_maddubs_epi16(e1, _mm512_loadu_si512((const void *)(qx + 64)));
            p0 = _mm512_madd_epi16(p0, _mm512_permutexvar_epi16(splat2_epi16(4 * c2, 4 * c2 + 1), scv));
            p1 = _mm512_madd_epi16(p1, _mm512_permutexvar_epi16(splat2_epi16(4 * c2 + 2, 4 * c2 + 3), scv));
            sumi = _mm512_add_epi32(sumi, _mm512_add_epi32(p0, p1));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(a[i].d) * dx), _mm512_cvtepi32_ps(sumi), acc);
    }
    __m128 t = _mm_hadd_ps(accm, accm);
    t = _mm_hadd_ps(t, t);
    *s = _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(t);
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *x) {
    const blk_q6_K *a = w;
    const blk_q8_K *b = x;
    const __m512i low4 = _mm512_set1_epi8(15), hmask = _mm512_set1_epi8(0x30);
    /* per 128-bit lane: scale j eight times then j+1 eight times; lanes hold
     * sub-blocks (4g, 4g+1) and (4g+2, 4g+3) */
    __m256i pat[4];
    for (int g = 0; g < 4; g++)
        pat[g] = _mm256_add_epi8(_mm256_set1_epi8((char)(4 * g)),
                                 _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                  2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QKK; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)a[i].scales);
        __m256i scb = _mm256_broadcastsi128_si256(sc8);
        __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b[i].bsums), _mm256_cvtepi8_epi16(sc8));
        __m512i sumi = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5)));
        sumi = _mm512_inserti64x4(sumi, _mm256_setzero_si256(), 1);
        for (int h = 0; h < 2; h++) {
            __m512i L = _mm512_loadu_si512((const void *)(a[i].ql + 64 * h));
            __m256i H = _mm256_loadu_si256((const __m256i *)(a[i].qh + 32 * h));
            __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_slli_epi16(H, 4)), _mm256_slli_epi16(H, 2), 1);
            __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(H), _mm256_srli_epi16(H, 2), 1);
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(L, low4), _mm512_and_si512(h01, hmask));
            __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), low4), _mm512_and_si512(h23, hmask));
            const int8_t *qx = b[i].qs + 128 * h;
            __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512((const void *)qx));
            __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512((const void *)(qx + 64)));
            __m512i s01 = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(scb, pat[2 * h]));
            __m512i s23 = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(scb, pat[2 * h + 1]));
            sumi = _mm512_add_epi32(sumi, _mm512_add_epi32(_mm512_madd_epi16(p01, s01), _mm512_madd_epi16(p23, s23)));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(a[i].d) * b[i].d), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* ------------------------------------------------------------ float types */

static float avx512_dot_f32(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static void avx512_axpy_f32(float *y, float a, const float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void dot_f32(int64_t n, float *s, const void *w, const void *x) { *s = avx512_dot_f32(w, x, n); }

void mope_quant_fill_avx512(mope_quant_kernels *k) {
    k->dot[MOPE_TYPE_F32] = dot_f32;
    k->dot[MOPE_TYPE_Q8_0] = dot_q8_0_256;
    k->dot[MOPE_TYPE_Q4_0] = dot_q4_0_256;
    k->dot[MOPE_TYPE_Q4_K] = dot_q4_K;
    k->dot[MOPE_TYPE_Q6_K] = dot_q6_K;
    k->dot_f32 = avx512_dot_f32;
    k->axpy_f32 = avx512_axpy_f32;
}
