/* AVX2 AdamW: the scalar update's operations in the same order, eight
 * elements at a time.  Division and square root are correctly rounded in
 * both, and no multiply-add is fused (the scalar code has none), so every
 * element gets the scalar result's bits; the scalar loop was 20 cycles per
 * element (sqrtf and two divisions, not vectorised because of errno). */
#include "train/train_internal.h"

#include <immintrin.h>

size_t tl_adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float bc1, float bc2,
                     float shrink, float lr, float eps) {
    const __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), vc1 = _mm256_set1_ps(1.0f - b1),
                 vc2 = _mm256_set1_ps(1.0f - b2), vbc1 = _mm256_set1_ps(bc1), vbc2 = _mm256_set1_ps(bc2),
                 vsh = _mm256_set1_ps(shrink), vlr = _mm256_set1_ps(lr), veps = _mm256_set1_ps(eps);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vc1, gi));
        __m256 vi =
            _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(vc2, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 num = _mm256_mul_ps(vlr, _mm256_div_ps(mi, vbc1));
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vi, vbc2)), veps);
        _mm256_storeu_ps(p + i, _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), vsh), _mm256_div_ps(num, den)));
    }
    return i;
}
