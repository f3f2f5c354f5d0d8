/* AVX-512 (F, BW, VL, DQ, VNNI) table: the f32 helpers here; the dot
 * kernels of the hot types -- Q8_0 and Q4_0 with 256-bit VNNI dpbusd, Q4_K
 * and Q6_K with the BW forms of maddubs/madd over 64 elements, F32 with
 * 16-lane FMAs -- are in quant_multi_avx512.c, each single-row kernel the
 * one-row case of its multi-row kernel.  Other types keep their AVX2
 * kernels (the table is built on top of the AVX2 one).  F16 stays on AVX2
 * on purpose: the 512-bit vcvtph2ps form measured ~30% slower in cache on
 * the Zen 4 this was built on. */
#include <immintrin.h>

#include "core/quant_kernels.h"

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

void mope_quant_fill_avx512(mope_quant_kernels *k) {
    k->dot_f32 = avx512_dot_f32;
    k->axpy_f32 = avx512_axpy_f32;
    /* Q8_0, Q4_0, Q4_K, Q6_K, F32: single- and multi-row kernels */
    mope_quant_fill_multi_avx512(k);
    mope_quant_fill_gemm_avx512(k);
}
