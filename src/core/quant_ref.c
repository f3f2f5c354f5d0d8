/* Scalar reference kernels: dequantisation, quantisation and dot products for
 * every supported type.  These define the semantics the SIMD kernels are
 * tested against, so they favour the plainest reading of the layouts in
 * GGUF_FACTS.md §2 over speed.
 *
 * Quantisers (ours, not ggml's iterative search; any valid bytes are
 * compatible).  Scales are stored rounded *away from zero* to the next half,
 * so the grid always covers the data and nothing clips except where noted:
 *   q8_0  d = amax/127                      |err| <= d/2
 *   q4_0  d = -max/8 (max = signed extreme) |err| <= d/2, but elements of the
 *         other sign beyond 7.5d clip to 7d (err <= |x| - 7d <= d), as ggml
 *   q5_0  same with 16 in place of 8
 *   q4_1  m = min rounded down, d = (max-m)/15  |err| <= d/2
 *   q8_K  d = -max/128 (f32)                as q4_0 with 128
 *   q4_K  per 32-sub-block range [min(0,min), max], 6-bit scale/min rounded up
 *         so |err| <= (max - min0 + dmin)/30 + d/2 per sub-block
 *   q5_K  as q4_K with 31 levels: (max - min0 + dmin)/62 + d/2
 *   q6_K  symmetric per 16-sub-block, step amax/31 rounded up to a multiple of
 *         d = max_amax/(31*127):  |err| <= (amax/31 + d)/2
 * (d, dmin here are the super-block scales, each within one f16 ulp.) */
#include <math.h>

#include "core/quant_kernels.h"

static inline float h2f(uint16_t h) { return mope_f16_to_f32(h); }

#define f16_round mope_f16_round_dir

/* float -> int clamped to [lo, hi] without undefined behaviour for values
 * out of int range or NaN (which goes to lo). */
static inline int fclampi(float v, int lo, int hi) { return v >= (float)lo ? (v <= (float)hi ? (int)v : hi) : lo; }

/* ------------------------------------------------------------ dequantise */

static void deq_f32(const void *src, float *y, int64_t n) { memcpy(y, src, (size_t)n * 4); }

static void deq_f16(const void *src, float *y, int64_t n) {
    const uint16_t *x = src;
    for (int64_t i = 0; i < n; i++) y[i] = h2f(x[i]);
}

static void deq_bf16(const void *src, float *y, int64_t n) {
    const uint16_t *x = src;
    for (int64_t i = 0; i < n; i++) y[i] = mope_bf16_to_f32(x[i]);
}

static void deq_q8_0(const void *src, float *y, int64_t n) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        float d = h2f(b[i].d);
        for (int j = 0; j < QK; j++) y[j] = d * b[i].qs[j];
    }
}

static void deq_q4_0(const void *src, float *y, int64_t n) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        float d = h2f(b[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * ((b[i].qs[j] & 15) - 8);
            y[j + 16] = d * ((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void deq_q4_1(const void *src, float *y, int64_t n) {
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (b[i].qs[j] & 15) + m;
            y[j + 16] = d * (b[i].qs[j] >> 4) + m;
        }
    }
}

static void deq_q5_0(const void *src, float *y, int64_t n) {
    const blk_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        float d = h2f(b[i].d);
        uint32_t h;
        memcpy(&h, b[i].qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            int lo = (b[i].qs[j] & 15) | (int)(((h >> j) & 1) << 4);
            int hi = (b[i].qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
            y[j] = d * (lo - 16);
            y[j + 16] = d * (hi - 16);
        }
    }
}

static void deq_q4_K(const void *src, float *y, int64_t n) {
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < n / QKK; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        uint8_t sc[8], m[8];
        mope_k_scales(b[i].scales, sc, m);
        const uint8_t *q = b[i].qs;
        for (int c = 0; c < 4; c++, q += 32) {
            float d1 = d * sc[2 * c], m1 = dmin * m[2 * c];
            float d2 = d * sc[2 * c + 1], m2 = dmin * m[2 * c + 1];
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 15) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void deq_q5_K(const void *src, float *y, int64_t n) {
    const blk_q5_K *b = src;
    for (int64_t i = 0; i < n / QKK; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        uint8_t sc[8], m[8];
        mope_k_scales(b[i].scales, sc, m);
        const uint8_t *q = b[i].qs, *qh = b[i].qh;
        for (int c = 0; c < 4; c++, q += 32) {
            float d1 = d * sc[2 * c], m1 = dmin * m[2 * c];
            float d2 = d * sc[2 * c + 1], m2 = dmin * m[2 * c + 1];
            for (int l = 0; l < 32; l++)
                *y++ = d1 * ((q[l] & 15) + (((qh[l] >> (2 * c)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * ((q[l] >> 4) + (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m2;
        }
    }
}

/* The 6-bit value of element e (0..255) of a Q6_K block, before the -32. */
static inline int q6_value(const blk_q6_K *b, int e) {
    int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    const uint8_t *L = b->ql + 64 * h, *H = b->qh + 32 * h;
    int low = (quarter & 1) ? L[l + 32] : L[l];
    low = (quarter & 2) ? low >> 4 : low & 15;
    return low | (((H[l] >> (2 * quarter)) & 3) << 4);
}

static void deq_q6_K(const void *src, float *y, int64_t n) {
    const blk_q6_K *b = src;
    for (int64_t i = 0; i < n / QKK; i++) {
        float d = h2f(b[i].d);
        /* element e is in 16-sub-block e/16; in GGUF_FACTS terms sub-block
         * 8h + i + 2*quarter with i = l/16, which is the same number. */
        for (int e = 0; e < QKK; e++) *y++ = d * b[i].scales[e / 16] * (q6_value(&b[i], e) - 32);
    }
}

static void deq_q8_K(const void *src, float *y, int64_t n) {
    const blk_q8_K *b = src;
    for (int64_t i = 0; i < n / QKK; i++)
        for (int j = 0; j < QKK; j++) *y++ = b[i].d * b[i].qs[j];
}

/* -------------------------------------------------------------- quantise */

static void q_f32(const float *x, void *dst, int64_t n) { memcpy(dst, x, (size_t)n * 4); }

static void q_f16(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = mope_f32_to_f16(x[i]);
}

static void q_bf16(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = mope_f32_to_bf16(x[i]);
}

static void q_q8_0(const float *x, void *dst, int64_t n) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        b[i].d = f16_round(amax / 127, false);
        float d = h2f(b[i].d), id = d != 0 ? 1.0f / d : 0;
        for (int j = 0; j < QK; j++) b[i].qs[j] = (int8_t)fclampi(roundf(x[j] * id), -127, 127);
    }
}

/* Signed extreme (the element of largest magnitude, with its sign). */
static float signed_max(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    return max;
}

static void q_q4_0(const float *x, void *dst, int64_t n) {
    blk_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        b[i].d = f16_round(signed_max(x, QK) / -8, false);
        float d = h2f(b[i].d), id = d != 0 ? 1.0f / d : 0;
        uint8_t q[QK];
        for (int j = 0; j < QK; j++) q[j] = (uint8_t)fclampi(floorf(x[j] * id + 8.5f), 0, 15);
        for (int j = 0; j < QK / 2; j++) b[i].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
    }
}

static void q_q5_0(const float *x, void *dst, int64_t n) {
    blk_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        b[i].d = f16_round(signed_max(x, QK) / -16, false);
        float d = h2f(b[i].d), id = d != 0 ? 1.0f / d : 0;
        uint32_t h = 0;
        uint8_t q[QK];
        for (int j = 0; j < QK; j++) {
            q[j] = (uint8_t)fclampi(floorf(x[j] * id + 16.5f), 0, 31);
            h |= (uint32_t)(q[j] >> 4) << j;
        }
        for (int j = 0; j < QK / 2; j++) b[i].qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
        memcpy(b[i].qh, &h, 4);
    }
}

static void q_q4_1(const float *x, void *dst, int64_t n) {
    blk_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK; j++) { mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
        /* m must not exceed min: round toward -inf */
        b[i].m = mn > 0 ? f16_round(mn, true) : f16_round(mn, false);
        float m = h2f(b[i].m);
        b[i].d = f16_round((mx - m) / 15, false);
        float d = h2f(b[i].d), id = d != 0 ? 1.0f / d : 0;
        uint8_t q[QK];
        for (int j = 0; j < QK; j++) q[j] = (uint8_t)fclampi(roundf((x[j] - m) * id), 0, 15);
        for (int j = 0; j < QK / 2; j++) b[i].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
    }
}

static void q_q8_K(const float *x, void *dst, int64_t n) {
    blk_q8_K *b = dst;
    for (int64_t i = 0; i < n / QKK; i++, x += QKK) {
        float max = signed_max(x, QKK);
        if (max == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -128.0f / max;
        for (int j = 0; j < QKK; j++) b[i].qs[j] = (int8_t)fclampi(roundf(iscale * x[j]), -128, 127);
        for (int g = 0; g < QKK / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += b[i].qs[16 * g + j];
            b[i].bsums[g] = (int16_t)s;
        }
        b[i].d = 1.0f / iscale;
    }
}

static void pack_k_scales(uint8_t s[12], const uint8_t sc[8], const uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

/* Shared fit of Q4_K (levels = 15) and Q5_K (31): per 32-sub-block offsets
 * dm_j >= -min_j and steps ds_j >= (max_j + dm_j)/levels, both rounded up so
 * no element clips.  q receives the level of each element. */
static void fit_k(const float *x, int levels, uint16_t *dh, uint16_t *dminh, uint8_t s[12], uint8_t *q) {
    float mins[8], maxs[8], maxmin = 0;
    for (int j = 0; j < 8; j++) {
        float mn = 0, mx = x[32 * j];
        for (int l = 0; l < 32; l++) { mn = fminf(mn, x[32 * j + l]); mx = fmaxf(mx, x[32 * j + l]); }
        mins[j] = -mn;
        maxs[j] = mx;
        maxmin = fmaxf(maxmin, -mn);
    }
    *dminh = f16_round(maxmin / 63, false);
    float dmin = h2f(*dminh), range[8], maxrange = 0;
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        m[j] = dmin > 0 ? (uint8_t)fclampi(ceilf(mins[j] / dmin), 0, 63) : 0;
        range[j] = fmaxf(0, maxs[j] + dmin * m[j]);
        maxrange = fmaxf(maxrange, range[j]);
    }
    *dh = f16_round(maxrange / (levels * 63.0f), false);
    float d = h2f(*dh);
    for (int j = 0; j < 8; j++) {
        sc[j] = d > 0 ? (uint8_t)fclampi(ceilf(range[j] / (levels * d)), 0, 63) : 0;
        float ds = d * sc[j], dm = dmin * m[j], id = ds > 0 ? 1.0f / ds : 0;
        for (int l = 0; l < 32; l++)
            q[32 * j + l] = (uint8_t)fclampi(roundf((x[32 * j + l] + dm) * id), 0, levels);
    }
    pack_k_scales(s, sc, m);
}

static void q_q4_K(const float *x, void *dst, int64_t n) {
    blk_q4_K *b = dst;
    for (int64_t i = 0; i < n / QKK; i++, x += QKK) {
        uint8_t q[QKK];
        fit_k(x, 15, &b[i].d, &b[i].dmin, b[i].scales, q);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

static void q_q5_K(const float *x, void *dst, int64_t n) {
    blk_q5_K *b = dst;
    for (int64_t i = 0; i < n / QKK; i++, x += QKK) {
        uint8_t q[QKK];
        fit_k(x, 31, &b[i].d, &b[i].dmin, b[i].scales, q);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
                b[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
    }
}

static void q_q6_K(const float *x, void *dst, int64_t n) {
    blk_q6_K *b = dst;
    for (int64_t i = 0; i < n / QKK; i++, x += QKK) {
        float step[16], maxstep = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0;
            for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
            step[j] = amax / 31;
            maxstep = fmaxf(maxstep, step[j]);
        }
        b[i].d = f16_round(maxstep / 127, false);
        float d = h2f(b[i].d);
        memset(b[i].ql, 0, sizeof b[i].ql);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int j = 0; j < 16; j++) {
            int sc = d > 0 ? fclampi(ceilf(step[j] / d), 0, 127) : 0;
            b[i].scales[j] = (int8_t)sc;
            float ds = d * sc, id = ds > 0 ? 1.0f / ds : 0;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l, v = fclampi(roundf(x[e] * id), -32, 31) + 32;
                int h = e / 128, r = e % 128, quarter = r / 32, ll = r % 32;
                uint8_t *L = b[i].ql + 64 * h + ((quarter & 1) ? 32 : 0);
                L[ll] |= (uint8_t)((quarter & 2) ? (v & 15) << 4 : (v & 15));
                b[i].qh[32 * h + ll] |= (uint8_t)((v >> 4) << (2 * quarter));
            }
        }
    }
}

const mope_quant_fn mope_quant_ref_quantize[MOPE_TYPE_COUNT] = {
    [MOPE_TYPE_F32] = q_f32,   [MOPE_TYPE_F16] = q_f16,   [MOPE_TYPE_BF16] = q_bf16,
    [MOPE_TYPE_Q8_0] = q_q8_0, [MOPE_TYPE_Q4_0] = q_q4_0, [MOPE_TYPE_Q4_1] = q_q4_1,
    [MOPE_TYPE_Q5_0] = q_q5_0, [MOPE_TYPE_Q4_K] = q_q4_K, [MOPE_TYPE_Q5_K] = q_q5_K,
    [MOPE_TYPE_Q6_K] = q_q6_K, [MOPE_TYPE_Q8_K] = q_q8_K,
};

/* ---------------------------------------------------------- dot products */

static void dot_f32(int64_t n, float *s, const void *w, const void *x) {
    const float *a = w, *b = x;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)a[i] * b[i];
    *s = (float)acc;
}

static void dot_f16(int64_t n, float *s, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)h2f(a[i]) * h2f(b[i]);
    *s = (float)acc;
}

static void dot_bf16(int64_t n, float *s, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)mope_bf16_to_f32(a[i]) * b[i];
    *s = (float)acc;
}

static void dot_q8_0(int64_t n, float *s, const void *w, const void *x) {
    const blk_q8_0 *a = w, *b = x;
    float acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += a[i].qs[j] * b[i].qs[j];
        acc += h2f(a[i].d) * h2f(b[i].d) * (float)isum;
    }
    *s = acc;
}

static void dot_q4_0(int64_t n, float *s, const void *w, const void *x) {
    const blk_q4_0 *a = w;
    const blk_q8_0 *b = x;
    float acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int j = 0; j < QK / 2; j++)
            isum += ((a[i].qs[j] & 15) - 8) * b[i].qs[j] + ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + 16];
        acc += h2f(a[i].d) * h2f(b[i].d) * (float)isum;
    }
    *s = acc;
}

static void dot_q4_1(int64_t n, float *s, const void *w, const void *x) {
    const blk_q4_1 *a = w;
    const blk_q8_0 *b = x;
    float acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0, xsum = 0;
        for (int j = 0; j < QK / 2; j++) {
            isum += (a[i].qs[j] & 15) * b[i].qs[j] + (a[i].qs[j] >> 4) * b[i].qs[j + 16];
            xsum += b[i].qs[j] + b[i].qs[j + 16];
        }
        float dx = h2f(b[i].d);
        acc += h2f(a[i].d) * dx * (float)isum + h2f(a[i].m) * dx * (float)xsum;
    }
    *s = acc;
}

static void dot_q5_0(int64_t n, float *s, const void *w, const void *x) {
    const blk_q5_0 *a = w;
    const blk_q8_0 *b = x;
    float acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        uint32_t h;
        memcpy(&h, a[i].qh, 4);
        int isum = 0;
        for (int j = 0; j < QK / 2; j++) {
            int lo = (a[i].qs[j] & 15) | (int)(((h >> j) & 1) << 4);
            int hi = (a[i].qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
            isum += (lo - 16) * b[i].qs[j] + (hi - 16) * b[i].qs[j + 16];
        }
        acc += h2f(a[i].d) * h2f(b[i].d) * (float)isum;
    }
    *s = acc;
}

/* Q4_K and Q5_K: the activation sums of each sub-block are recomputed from
 * qs rather than read from bsums, so a wrong bsums shows up as a mismatch
 * between the SIMD kernels (which use it) and this one. */
static void dot_q4_K(int64_t n, float *s, const void *w, const void *x) {
    const blk_q4_K *a = w;
    const blk_q8_K *b = x;
    float acc = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        uint8_t sc[8], m[8];
        mope_k_scales(a[i].scales, sc, m);
        int isum = 0, msum = 0;
        const int8_t *qx = b[i].qs;
        for (int c = 0; c < 4; c++) {
            int s1 = 0, s2 = 0, x1 = 0, x2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += (a[i].qs[32 * c + l] & 15) * qx[64 * c + l];
                s2 += (a[i].qs[32 * c + l] >> 4) * qx[64 * c + 32 + l];
                x1 += qx[64 * c + l];
                x2 += qx[64 * c + 32 + l];
            }
            isum += sc[2 * c] * s1 + sc[2 * c + 1] * s2;
            msum += m[2 * c] * x1 + m[2 * c + 1] * x2;
        }
        acc += h2f(a[i].d) * b[i].d * (float)isum - h2f(a[i].dmin) * b[i].d * (float)msum;
    }
    *s = acc;
}

static void dot_q5_K(int64_t n, float *s, const void *w, const void *x) {
    const blk_q5_K *a = w;
    const blk_q8_K *b = x;
    float acc = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        uint8_t sc[8], m[8];
        mope_k_scales(a[i].scales, sc, m);
        int isum = 0, msum = 0;
        const int8_t *qx = b[i].qs;
        const uint8_t *qh = a[i].qh;
        for (int c = 0; c < 4; c++) {
            int s1 = 0, s2 = 0, x1 = 0, x2 = 0;
            for (int l = 0; l < 32; l++) {
                int lo = (a[i].qs[32 * c + l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4);
                int hi = (a[i].qs[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
                s1 += lo * qx[64 * c + l];
                s2 += hi * qx[64 * c + 32 + l];
                x1 += qx[64 * c + l];
                x2 += qx[64 * c + 32 + l];
            }
            isum += sc[2 * c] * s1 + sc[2 * c + 1] * s2;
            msum += m[2 * c] * x1 + m[2 * c + 1] * x2;
        }
        acc += h2f(a[i].d) * b[i].d * (float)isum - h2f(a[i].dmin) * b[i].d * (float)msum;
    }
    *s = acc;
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *x) {
    const blk_q6_K *a = w;
    const blk_q8_K *b = x;
    float acc = 0;
    for (int64_t i = 0; i < n / QKK; i++) {
        /* per 16-sub-block sums, walking the layout as GGUF_FACTS.md writes it */
        int sub[16] = {0};
        for (int h = 0; h < 2; h++) {
            const uint8_t *L = a[i].ql + 64 * h, *H = a[i].qh + 32 * h;
            const int8_t *qx = b[i].qs + 128 * h;
            for (int l = 0; l < 32; l++) {
                int j = 8 * h + l / 16;
                sub[j] += (((L[l] & 15) | ((H[l] & 3) << 4)) - 32) * qx[l];
                sub[j + 2] += (((L[l + 32] & 15) | (((H[l] >> 2) & 3) << 4)) - 32) * qx[l + 32];
                sub[j + 4] += (((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32) * qx[l + 64];
                sub[j + 6] += (((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32) * qx[l + 96];
            }
        }
        int isum = 0;
        for (int j = 0; j < 16; j++) isum += a[i].scales[j] * sub[j];
        acc += h2f(a[i].d) * b[i].d * (float)isum;
    }
    *s = acc;
}

/* Term by term in j order per output (the SIMD kernels may split the
 * sum into chains). */
static void ref_axpy_rows_f32(float *y, const float *a, const float *B, int64_t ldb, int64_t n, int64_t m) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t o = 0; o < m; o++) y[o] += a[j] * B[j * ldb + o];
}

static void ref_axpy_rows_f16(float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n, int64_t m) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t o = 0; o < m; o++) y[o] += a[j] * mope_f16_to_f32(B[j * ldb + o]);
}

static void ref_swiglu_f32(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void ref_dot_rows_f32(const float *q, const float *K, int64_t ldk, int64_t n, int64_t d, float *s) {
    for (int64_t t = 0; t < n; t++) {
        float acc = 0;
        for (int64_t i = 0; i < d; i++) acc += q[i] * K[t * ldk + i];
        s[t] = acc;
    }
}

static float ref_dot_f32(const float *a, const float *b, int64_t n) {
    float s;
    dot_f32(n, &s, a, b);
    return s;
}

static void ref_axpy_f32(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void mope_quant_fill_ref(mope_quant_kernels *k) {
    memset(k, 0, sizeof *k);
    k->dot[MOPE_TYPE_F32] = dot_f32;
    k->dot[MOPE_TYPE_F16] = dot_f16;
    k->dot[MOPE_TYPE_BF16] = dot_bf16;
    k->dot[MOPE_TYPE_Q8_0] = dot_q8_0;
    k->dot[MOPE_TYPE_Q4_0] = dot_q4_0;
    k->dot[MOPE_TYPE_Q4_1] = dot_q4_1;
    k->dot[MOPE_TYPE_Q5_0] = dot_q5_0;
    k->dot[MOPE_TYPE_Q4_K] = dot_q4_K;
    k->dot[MOPE_TYPE_Q5_K] = dot_q5_K;
    k->dot[MOPE_TYPE_Q6_K] = dot_q6_K;
    k->dequant[MOPE_TYPE_F32] = deq_f32;
    k->dequant[MOPE_TYPE_F16] = deq_f16;
    k->dequant[MOPE_TYPE_BF16] = deq_bf16;
    k->dequant[MOPE_TYPE_Q8_0] = deq_q8_0;
    k->dequant[MOPE_TYPE_Q4_0] = deq_q4_0;
    k->dequant[MOPE_TYPE_Q4_1] = deq_q4_1;
    k->dequant[MOPE_TYPE_Q5_0] = deq_q5_0;
    k->dequant[MOPE_TYPE_Q4_K] = deq_q4_K;
    k->dequant[MOPE_TYPE_Q5_K] = deq_q5_K;
    k->dequant[MOPE_TYPE_Q6_K] = deq_q6_K;
    k->dequant[MOPE_TYPE_Q8_K] = deq_q8_K;
    k->quant_act[MOPE_TYPE_F16] = q_f16;
    k->quant_act[MOPE_TYPE_F32] = q_f32;
    k->quant_act[MOPE_TYPE_Q8_0] = q_q8_0;
    k->quant_act[MOPE_TYPE_Q8_K] = q_q8_K;
    k->dot_f32 = ref_dot_f32;
    k->axpy_rows_f32 = ref_axpy_rows_f32;
    k->axpy_rows_f16 = ref_axpy_rows_f16;
    k->dot_rows_f32 = ref_dot_rows_f32;
    k->swiglu_f32 = ref_swiglu_f32;
    k->axpy_f32 = ref_axpy_f32;
}
