/* The mixer's exp loops over a vocabulary, 8 lanes at a time (chosen at run
 * time by mix.c on AVX2+FMA machines). */
#include <math.h>

#include "core/exp_simd.h"
#include "mix/mix_internal.h"

/* sum exp(l[i] - m), accumulated in double lanes. */
double mope_mix_sum_exp_avx2(const float *l, float m, int32_t n) {
    __m256 vm = _mm256_set1_ps(m);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = mope_exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(l + i), vm));
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    double s = t[0] + t[1] + t[2] + t[3];
    for (; i < n; i++) s += expf(l[i] - m);
    return s;
}

/* out[i] (+)= w * exp(l[i] - lse), with lse split as hi + lo so the
 * difference keeps the precision of a double subtraction near the top. */
void mope_mix_axpy_exp_avx2(float *out, const float *l, float hi, float lo, float w, int32_t n, bool add) {
    __m256 vh = _mm256_set1_ps(hi), vl = _mm256_set1_ps(lo), vw = _mm256_set1_ps(w);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = mope_exp8_avx2(_mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(l + i), vh), vl));
        __m256 base = add ? _mm256_loadu_ps(out + i) : _mm256_setzero_ps();
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(vw, e, base));
    }
    for (; i < n; i++) out[i] = (add ? out[i] : 0) + w * expf((l[i] - hi) - lo);
}
