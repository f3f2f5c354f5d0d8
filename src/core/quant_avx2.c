/* AVX2 + FMA + F16C kernels.  Every dot product keeps float vector
 * accumulators across blocks and reduces once at the end; integer products
 * use the maddubs (u8 x s8 -> s16 pairs) / madd (s16 -> s32) pair, with the
 * sign trick for signed x signed.  Dequantisers use mul then sub (no FMA) so
 * they are bit-identical to the scalar ones. */
#include <immintrin.h>

#include "core/quant_kernels.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* signed int8 x signed int8, 32 lanes -> 8 int32 sums as floats, via
 * |w| (u8) x sign(x, w) (s8).  Exact for any w and for x in [-127, 127]
 * (all mope_quantize_act produces): pairs stay within 2*128*127, below
 * maddubs' int16 saturation. */
static inline __m256 dot_i8x32(__m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}


/* 16 packed nibble bytes -> 32 bytes: low nibbles first, then high (one
 * broadcast load, the high lane shifted by 4). */
static inline __m256i nibbles32(const uint8_t *q) {
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
    v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* ------------------------------------------------------------ float types */

static float avx2_dot_f32(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void avx2_axpy_f32(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static inline __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }


static inline __m256 ld_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static void dot_bf16(int64_t n, float *s, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(ld_bf16(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(ld_bf16(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(ld_bf16(a + i), _mm256_loadu_ps(b + i), s0);
    float r = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) r += mope_bf16_to_f32(a[i]) * b[i];
    *s = r;
}

/* -------------------------------------------------------- 32-blocks x Q8_0 */



static void dot_q4_1(int64_t n, float *s, const void *w, const void *x) {
    const blk_q4_1 *a = w;
    const blk_q8_0 *b = x;
    const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps(), accm = acc;
    for (int64_t i = 0; i < n / QK; i++) {
        __m256i q = nibbles32(a[i].qs), xv = _mm256_loadu_si256((const __m256i *)b[i].qs);
        __m256i qx = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), one16);
        __m256i sx = _mm256_madd_epi16(_mm256_maddubs_epi16(one8, xv), one16);
        float dx = h2f(b[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * dx), _mm256_cvtepi32_ps(qx), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].m) * dx), _mm256_cvtepi32_ps(sx), accm);
    }
    *s = hsum8(_mm256_add_ps(acc, accm));
}

/* Bit j of h -> 0xFF in byte j (j < 32). */
static inline __m256i bits_to_bytes(uint32_t h) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

static void dot_q5_0(int64_t n, float *s, const void *w, const void *x) {
    const blk_q5_0 *a = w;
    const blk_q8_0 *b = x;
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t nb = n / QK, i = 0;
#define Q5_STEP(k, acc)                                                                          \
    do {                                                                                         \
        uint32_t h;                                                                              \
        memcpy(&h, a[i + k].qh, 4);                                                              \
        __m256i q = _mm256_or_si256(nibbles32(a[i + k].qs),                                      \
                                    _mm256_and_si256(bits_to_bytes(h), sixteen));                \
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i + k].d) * h2f(b[i + k].d)),                  \
                              dot_i8x32(_mm256_sub_epi8(q, sixteen),                             \
                                        _mm256_loadu_si256((const __m256i *)b[i + k].qs)),       \
                              acc);                                                              \
    } while (0)
    for (; i + 2 <= nb; i += 2) {
        Q5_STEP(0, acc0);
        Q5_STEP(1, acc1);
    }
    for (; i < nb; i++) Q5_STEP(0, acc0);
#undef Q5_STEP
    *s = hsum8(_mm256_add_ps(acc0, acc1));
}

/* ------------------------------------------------------ K-quants x Q8_K */

/* The 8 sub-block scales as int16 in both 128-bit lanes; K_SC(v, j) then
 * broadcasts scale j to all 16 lanes with one byte shuffle. */
static inline __m256i k_scale_vec(const uint8_t sc[8]) {
    return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
}
#define K_SC(v, j) _mm256_shuffle_epi8((v), _mm256_set1_epi16((short)(0x0100 + 0x0202 * (j))))

/* Sum over sub-blocks of m_j * (activation sum of 32-sub-block j), 4 lanes. */
static inline __m128i k_min_sums(const int16_t bsums[16], const uint8_t m[8]) {
    __m128i lo = _mm_loadu_si128((const __m128i *)bsums), hi = _mm_loadu_si128((const __m128i *)(bsums + 8));
    __m128i per_sub = _mm_hadd_epi16(lo, hi);
    return _mm_madd_epi16(per_sub, _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m)));
}


static void dot_q5_K(int64_t n, float *s, const void *w, const void *x) {
    const blk_q5_K *a = w;
    const blk_q8_K *b = x;
    const __m256i low4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QKK; i++) {
        uint8_t sc[8], m[8];
        mope_k_scales(a[i].scales, sc, m);
        float dx = b[i].d;
        accm = _mm_fmadd_ps(_mm_set1_ps(h2f(a[i].dmin) * dx), _mm_cvtepi32_ps(k_min_sums(b[i].bsums, m)), accm);
        __m256i sumi = _mm256_setzero_si256(), scv = k_scale_vec(sc);
        __m256i hb = _mm256_loadu_si256((const __m256i *)a[i].qh);
        const uint8_t *q = a[i].qs;
        const int8_t *qx = b[i].qs;
        for (int c = 0; c < 4; c++, q += 32, qx += 64) {
            __m256i v = _mm256_loadu_si256((const __m256i *)q);
            /* byte-wise bit 0 (and 1) of hb are bits 2c (2c+1) of qh[l]:
             * the 16-bit shifts only pull neighbour bits into the top of
             * each byte, which the masks drop. */
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, one), 4);
            __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(v, low4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), h1);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qx));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qx + 32)));
            p0 = _mm256_madd_epi16(p0, K_SC(scv, 2 * c));
            p1 = _mm256_madd_epi16(p1, K_SC(scv, 2 * c + 1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            hb = _mm256_srli_epi16(hb, 2);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * dx), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum8(acc) - hsum4(accm);
}

/* The four 32-element quarters of one Q6_K half as unsigned 6-bit bytes. */
static inline void q6_quarters(const uint8_t *L, const uint8_t *H, __m256i q[4]) {
    const __m256i low4 = _mm256_set1_epi8(15), hmask = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)L), l1 = _mm256_loadu_si256((const __m256i *)(L + 32));
    __m256i h = _mm256_loadu_si256((const __m256i *)H);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(h, 4), hmask));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(h, 2), hmask));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(h, hmask));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                           _mm256_and_si256(_mm256_srli_epi16(h, 2), hmask));
}


/* ------------------------------------------------- dequantise fast paths */

static void deq_f16(const void *src, float *y, int64_t n) {
    const uint16_t *x = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, ld_f16(x + i));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

/* 32 int8 -> 32 floats times d */
static inline void store_i8x32(float *y, __m256i v, __m256 d) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
}

static void deq_q8_0(const void *src, float *y, int64_t n) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK)
        store_i8x32(y, _mm256_loadu_si256((const __m256i *)b[i].qs), _mm256_set1_ps(h2f(b[i].d)));
}

static void deq_q4_0(const void *src, float *y, int64_t n) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK)
        store_i8x32(y, _mm256_sub_epi8(nibbles32(b[i].qs), _mm256_set1_epi8(8)), _mm256_set1_ps(h2f(b[i].d)));
}

/* 32 unsigned bytes -> d*q - m (mul, then sub: matches the scalar rounding) */
static inline void store_u8x32_affine(float *y, __m256i v, __m256 d, __m256 m) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(y + 8 * k,
                         _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]))), m));
}

static void deq_q4_K(const void *src, float *y, int64_t n) {
    const blk_q4_K *b = src;
    const __m256i low4 = _mm256_set1_epi8(15);
    for (int64_t i = 0; i < n / QKK; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        uint8_t sc[8], m[8];
        mope_k_scales(b[i].scales, sc, m);
        for (int c = 0; c < 4; c++, y += 64) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
            store_u8x32_affine(y, _mm256_and_si256(v, low4), _mm256_set1_ps(d * sc[2 * c]),
                               _mm256_set1_ps(dmin * m[2 * c]));
            store_u8x32_affine(y + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4),
                               _mm256_set1_ps(d * sc[2 * c + 1]), _mm256_set1_ps(dmin * m[2 * c + 1]));
        }
    }
}

static void deq_q6_K(const void *src, float *y, int64_t n) {
    const blk_q6_K *b = src;
    const __m256i off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QKK; i++) {
        float d = h2f(b[i].d);
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_quarters(b[i].ql + 64 * h, b[i].qh + 32 * h, q);
            for (int k = 0; k < 4; k++, y += 32) {
                /* scalar order is (d * sc) * q */
                int j = 8 * h + 2 * k;
                __m256i v = _mm256_sub_epi8(q[k], off);
                __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                __m256 d0 = _mm256_set1_ps(d * b[i].scales[j]), d1 = _mm256_set1_ps(d * b[i].scales[j + 1]);
                _mm256_storeu_ps(y, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(y + 8, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(y + 16, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(y + 24, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
            }
        }
    }
}

/* ------------------------------------------- activation quantisers */

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline __m256 vabs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* roundf (halves away from zero), bit-exact: truncate, then step away from
 * zero when the dropped fraction (computed exactly) is at least one half. */
static inline __m256i round_away(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = vabs(_mm256_sub_ps(v, t));
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
    __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
    return _mm256_cvtps_epi32(_mm256_add_ps(t, step));
}

/* 32 int32 (4 registers, clamped to int8 range by the caller) -> 32 int8 in order */
static inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i v = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void act_q8_0(const float *x, void *dst, int64_t n) {
    blk_q8_0 *b = dst;
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
        float amax = hmax8(_mm256_max_ps(_mm256_max_ps(vabs(v[0]), vabs(v[1])), _mm256_max_ps(vabs(v[2]), vabs(v[3]))));
        b[i].d = mope_f16_round_dir(amax / 127, false);
        float d = h2f(b[i].d);
        __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_min_epi32(_mm256_max_epi32(round_away(_mm256_mul_ps(v[k], id)), lo), hi);
        _mm256_storeu_si256((__m256i *)b[i].qs, pack_i8(q[0], q[1], q[2], q[3]));
    }
}

static void act_q8_K(const float *x, void *dst, int64_t n) {
    blk_q8_K *b = dst;
    const __m256i lo = _mm256_set1_epi32(-128), hi = _mm256_set1_epi32(127);
    const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < n / QKK; i++, x += QKK) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QKK; j += 8) m = _mm256_max_ps(m, vabs(_mm256_loadu_ps(x + j)));
        float amax = hmax8(m), max = 0;
        /* the first element of largest magnitude, with its sign (as scalar) */
        for (int j = 0; j < QKK; j++)
            if (x[j] == amax || x[j] == -amax) {
                max = x[j];
                break;
            }
        if (max == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -128.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        for (int j = 0; j < QKK; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_min_epi32(
                    _mm256_max_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vs)), lo), hi);
            __m256i p = pack_i8(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(b[i].qs + j), p);
            /* sums of 16: pairs, quads, then within each 128-bit lane */
            __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(one8, p), one16);
            s4 = _mm256_hadd_epi32(s4, s4);
            s4 = _mm256_hadd_epi32(s4, s4);
            b[i].bsums[j / 16] = (int16_t)_mm256_extract_epi32(s4, 0);
            b[i].bsums[j / 16 + 1] = (int16_t)_mm256_extract_epi32(s4, 4);
        }
        b[i].d = 1.0f / iscale;
    }
}

static void act_f16(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = mope_f32_to_f16(x[i]);
}

/* The few-row helpers.  Scores stay dots; the axpy forms keep up to 16
 * outputs (LoRA's rank side, a head of V) in two registers over all n terms
 * (y loaded and stored once) and loop axpys over wider outputs.  The
 * AVX-512 table has tiled versions (gemm_avx512.c). */
static void avx2_dot_rows_f32(const float *q, const float *K, int64_t ldk, int64_t n, int64_t d, float *s) {
    for (int64_t t = 0; t < n; t++) s[t] = avx2_dot_f32(q, K + t * ldk, d);
}

static void avx2_axpy_rows_f32(float *y, const float *a, const float *B, int64_t ldb, int64_t n, int64_t m) {
    if (m == 16) {
        __m256 c0 = _mm256_loadu_ps(y), c1 = _mm256_loadu_ps(y + 8);
        for (int64_t j = 0; j < n; j++) {
            __m256 aj = _mm256_set1_ps(a[j]);
            c0 = _mm256_fmadd_ps(aj, _mm256_loadu_ps(B + j * ldb), c0);
            c1 = _mm256_fmadd_ps(aj, _mm256_loadu_ps(B + j * ldb + 8), c1);
        }
        _mm256_storeu_ps(y, c0);
        _mm256_storeu_ps(y + 8, c1);
        return;
    }
    for (int64_t j = 0; j < n; j++) avx2_axpy_f32(y, a[j], B + j * ldb, m);
}

static void avx2_axpy_rows_f16(float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n, int64_t m) {
    if (m == 16) {
        __m256 c0 = _mm256_loadu_ps(y), c1 = _mm256_loadu_ps(y + 8);
        for (int64_t j = 0; j < n; j++) {
            __m256 aj = _mm256_set1_ps(a[j]);
            c0 = _mm256_fmadd_ps(aj, ld_f16(B + j * ldb), c0);
            c1 = _mm256_fmadd_ps(aj, ld_f16(B + j * ldb + 8), c1);
        }
        _mm256_storeu_ps(y, c0);
        _mm256_storeu_ps(y + 8, c1);
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *b = B + j * ldb;
        __m256 aj = _mm256_set1_ps(a[j]);
        int64_t o = 0;
        for (; o + 8 <= m; o += 8) _mm256_storeu_ps(y + o, _mm256_fmadd_ps(aj, ld_f16(b + o), _mm256_loadu_ps(y + o)));
        for (; o < m; o++) y[o] += a[j] * mope_f16_to_f32(b[o]);
    }
}

void mope_quant_fill_avx2(mope_quant_kernels *k) {
    k->quant_act[MOPE_TYPE_Q8_0] = act_q8_0;
    k->quant_act[MOPE_TYPE_Q8_K] = act_q8_K;
    k->quant_act[MOPE_TYPE_F16] = act_f16;
    k->dot[MOPE_TYPE_BF16] = dot_bf16;
    k->dot[MOPE_TYPE_Q4_1] = dot_q4_1;
    k->dot[MOPE_TYPE_Q5_0] = dot_q5_0;
    k->dot[MOPE_TYPE_Q5_K] = dot_q5_K;
    k->dequant[MOPE_TYPE_F16] = deq_f16;
    k->dequant[MOPE_TYPE_Q8_0] = deq_q8_0;
    k->dequant[MOPE_TYPE_Q4_0] = deq_q4_0;
    k->dequant[MOPE_TYPE_Q4_K] = deq_q4_K;
    k->dequant[MOPE_TYPE_Q6_K] = deq_q6_K;
    k->dot_f32 = avx2_dot_f32;
    k->axpy_f32 = avx2_axpy_f32;
    k->dot_rows_f32 = avx2_dot_rows_f32;
    k->axpy_rows_f32 = avx2_axpy_rows_f32;
    k->axpy_rows_f16 = avx2_axpy_rows_f16;
    /* F32, F16, Q8_0, Q4_0, Q4_K, Q6_K: single- and multi-row kernels */
    mope_quant_fill_multi_avx2(k);
}
