/* One SIMD expf for every module's vector files (only files compiled with
 * the AVX2 flags, *_avx2.c / *_avx512.c, may include this header; the
 * 16-lane form only in *_avx512.c).
 *
 * e^x = 2^k e^r, k = round(x / ln 2), r = x - k ln 2 (ln 2 in two parts),
 * |r| <= ln 2 / 2, e^r by a degree-6 polynomial (Cephes' expf
 * coefficients, ~2 ulp). */
#ifndef MOPE_CORE_EXP_SIMD_H
#define MOPE_CORE_EXP_SIMD_H

#include <immintrin.h>

#define MOPE_EXP_LOG2E 1.44269504088896341f
#define MOPE_EXP_LN2_HI 0.693359375f
#define MOPE_EXP_LN2_LO -2.12194440e-4f
#define MOPE_EXP_P0 1.9875691500e-4f
#define MOPE_EXP_P1 1.3981999507e-3f
#define MOPE_EXP_P2 8.3334519073e-3f
#define MOPE_EXP_P3 4.1665795894e-2f
#define MOPE_EXP_P4 1.6666665459e-1f
#define MOPE_EXP_P5 5.0000001201e-1f

/* e^r for |r| <= ln 2 / 2 and the reduction, written once for any width:
 * V is the vector type's intrinsic prefix (_mm256 or _mm512). */
#define MOPE_EXP_POLY(V, r, p)                                                                                         \
    do {                                                                                                               \
        p = V##_set1_ps(MOPE_EXP_P0);                                                                                  \
        p = V##_fmadd_ps(p, r, V##_set1_ps(MOPE_EXP_P1));                                                              \
        p = V##_fmadd_ps(p, r, V##_set1_ps(MOPE_EXP_P2));                                                              \
        p = V##_fmadd_ps(p, r, V##_set1_ps(MOPE_EXP_P3));                                                              \
        p = V##_fmadd_ps(p, r, V##_set1_ps(MOPE_EXP_P4));                                                              \
        p = V##_fmadd_ps(p, r, V##_set1_ps(MOPE_EXP_P5));                                                              \
        p = V##_fmadd_ps(V##_mul_ps(p, r), r, V##_add_ps(r, V##_set1_ps(1.0f)));                                       \
    } while (0)

/* 8 lanes.  2^k is applied as two halves so that k down to -150 gives
 * denormals and 0 instead of garbage exponents; NaN stays NaN, above ~88.7
 * gives +inf, -inf gives 0. */
static inline __m256 mope_exp8_avx2(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283935546875f), lo = _mm256_set1_ps(-104.0f);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q), big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(MOPE_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(MOPE_EXP_LN2_HI), xc), p;
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(MOPE_EXP_LN2_LO), r);
    MOPE_EXP_POLY(_mm256, r, p);
    __m256i ki = _mm256_cvtps_epi32(k);
    __m256i k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), big);
    return _mm256_blendv_ps(y, x, nan);
}

#ifdef __AVX512F__
/* 16 lanes: 2^k by scalef (exact, and inf / 0 at the ends, so no clamping). */
static inline __m512 mope_exp16_avx512(__m512 x) {
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(MOPE_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(MOPE_EXP_LN2_HI), x), p;
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(MOPE_EXP_LN2_LO), r);
    MOPE_EXP_POLY(_mm512, r, p);
    return _mm512_scalef_ps(p, k);
}
#endif

#endif
