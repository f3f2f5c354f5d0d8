/* AVX2 loops of the mixer (mix_avx2.c), called by mix.c after a run-time
 * CPU check. */
#ifndef MOPE_MIX_INTERNAL_H
#define MOPE_MIX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

/* sum exp(l[i] - m), accumulated in double lanes. */
double mope_mix_sum_exp_avx2(const float *l, float m, int32_t n);
/* out[i] (+)= w * exp(l[i] - (hi + lo)). */
void mope_mix_axpy_exp_avx2(float *out, const float *l, float hi, float lo, float w, int32_t n, bool add);

#endif
