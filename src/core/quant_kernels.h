/* Private to src/core/quant*.c: ggml-compatible block layouts and the per-ISA
 * kernel tables.  The struct layouts are the on-disk GGUF bytes, so the
 * static asserts below are the compatibility contract. */
#ifndef MOPE_QUANT_KERNELS_H
#define MOPE_QUANT_KERNELS_H

#include "mope/quant.h"

#define QK 32   /* elements per block of the legacy formats */
#define QKK 256 /* elements per super-block of the K formats */

typedef struct { uint16_t d; int8_t qs[QK]; } blk_q8_0;
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } blk_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[QK / 2]; } blk_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } blk_q5_0;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QKK / 2]; } blk_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QKK / 8]; uint8_t qs[QKK / 2]; } blk_q5_K;
typedef struct { uint8_t ql[QKK / 2]; uint8_t qh[QKK / 4]; int8_t scales[QKK / 16]; uint16_t d; } blk_q6_K;
typedef struct { float d; int8_t qs[QKK]; int16_t bsums[QKK / 16]; } blk_q8_K;

_Static_assert(sizeof(blk_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(blk_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(blk_q8_K) == 292, "q8_K layout");

typedef void (*mope_vec_dot_fn)(int64_t n, float *s, const void *w, const void *x);
typedef void (*mope_dequant_fn)(const void *src, float *dst, int64_t n);
typedef void (*mope_quant_fn)(const float *src, void *dst, int64_t n);
/* s[r*lds] = dot(w, x + r*ldx bytes) for r < nr, 2 <= nr <= MOPE_DOT_MULTI:
 * the weight row is loaded and decoded once for all nr activation rows. */
typedef void (*mope_vec_dot_multi_fn)(int64_t n, int nr, float *s, int64_t lds, const void *w, const void *x,
                                      size_t ldx);

/* mope_gemm_f16's kernel (n % 8 == 0, nw >= 1, nx >= 1). */
typedef void (*mope_gemm_f16_fn)(int64_t n, int nw, const void *w, size_t w_stride, int nx, const float *x,
                                 size_t ldx, float *y, int64_t ldy);

/* Activation rows one multi-row kernel call takes; more rows go in chunks
 * (the weight row is then in L1 for the later chunks).  Four keeps the
 * per-row accumulators of the K-quant kernels within 16 ymm registers. */
#define MOPE_DOT_MULTI 4

typedef struct mope_quant_kernels {
    mope_vec_dot_fn dot[MOPE_TYPE_COUNT];
    mope_vec_dot_multi_fn dot_multi[MOPE_TYPE_COUNT]; /* NULL: the dispatcher loops over dot */
    mope_dequant_fn dequant[MOPE_TYPE_COUNT];
    mope_quant_fn quant_act[MOPE_TYPE_COUNT]; /* activation quantisers, bit-identical to the scalar ones */
    mope_gemm_f16_fn gemm_f16;                /* NULL: no tile kernel on this ISA (mope_gemm_f16) */
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);
    void (*axpy_rows_f32)(float *y, const float *a, const float *B, int64_t ldb, int64_t n, int64_t m);
    void (*axpy_rows_f16)(float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n, int64_t m);
    void (*dot_rows_f32)(const float *q, const float *K, int64_t ldk, int64_t n, int64_t d, float *s);
    void (*swiglu_f32)(float *g, const float *u, int64_t n);
} mope_quant_kernels;

/* Each ISA file overwrites the entries it accelerates; the table for a wider
 * ISA is built on top of the narrower one's, so every entry is always set. */
void mope_quant_fill_ref(mope_quant_kernels *k);
void mope_quant_fill_avx2(mope_quant_kernels *k);
void mope_quant_fill_avx512(mope_quant_kernels *k);
/* Multi-row kernels (quant_multi_*.c), called by the fills above. */
void mope_quant_fill_multi_avx2(mope_quant_kernels *k);
void mope_quant_fill_multi_avx512(mope_quant_kernels *k);
/* The few-row F16 GEMM (gemm_avx512.c). */
void mope_quant_fill_gemm_avx512(mope_quant_kernels *k);

/* Scalar quantisers (quant_ref.c); n is a multiple of the block size. */
extern const mope_quant_fn mope_quant_ref_quantize[MOPE_TYPE_COUNT];

/* Nearest half to v in the direction away from zero (|result| >= |v|), or
 * toward zero when toward_zero is set, so a rounded scale never shrinks
 * (resp. an offset never grows) the quantisation grid. */
static inline uint16_t mope_f16_round_dir(float v, bool toward_zero) {
    uint16_t h = mope_f32_to_f16(v);
    float f = mope_f16_to_f32(h), af = f < 0 ? -f : f, av = v < 0 ? -v : v;
    if (!(af <= 65504.0f)) return h; /* inf or nan: leave */
    if (!toward_zero && af < av) h++;
    else if (toward_zero && af > av) h--;
    return h;
}

/* Q4_K/Q5_K 6-bit scales and mins of the 8 sub-blocks from the 12 packed
 * bytes (GGUF_FACTS.md §2), done on 32-bit words so SIMD loops stay cheap. */
static inline void mope_k_scales(const uint8_t s[12], uint8_t sc[8], uint8_t m[8]) {
    uint32_t u0, u1, u2, a, b, c, e;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    a = u0 & 0x3f3f3f3fu;
    b = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    c = u1 & 0x3f3f3f3fu;
    e = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    memcpy(sc, &a, 4);
    memcpy(sc + 4, &b, 4);
    memcpy(m, &c, 4);
    memcpy(m + 4, &e, 4);
}

#endif
