/* Element types: sizes, conversion to and from f32, and dot-product kernels.
 *
 * Kernels come as a scalar reference plus AVX2 and AVX-512 versions picked at
 * run time from cpuid (mope_quant_set_isa can force one, for tests and
 * benchmarks).  A dot product of a weight row with activations first
 * converts the activations once per row-vector to the weight type's
 * "vec_dot_type" (Q8_0 for Q4_0/Q4_1/Q5_0/Q8_0, Q8_K for the K-quants, F16 for
 * F16, F32 for F32 and BF16), as ggml does, so the inner loop is integer
 * arithmetic.  Block layouts: ../shared/reference/GGUF_FACTS.md §2.
 *
 * Supported (dequantise + dot): F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q4_K Q5_K
 * Q6_K.  Q8_K (f32 d, int8 qs[256], int16 bsums[16]; 292 bytes) is the
 * activation side of the K-quants: quantise/dequantise only.  Q5_1, Q8_1,
 * Q2_K, Q3_K have traits (sizes, so files holding them can be parsed) but
 * supported = false.  Unlike ggml, Q4_1 uses Q8_0 (not Q8_1) activations.
 *
 * AVX-512 kernels exist for Q8_0, Q4_0 (256-bit VNNI), Q4_K, Q6_K (512-bit
 * AVX512-BW) and F32; the other types (F16 included: faster so on Zen 4)
 * use their AVX2 kernels under
 * MOPE_ISA_AVX512.  F32, F16, Q8_0, Q4_0, Q4_K and Q6_K also have SIMD
 * multi-row kernels (mope_vec_dot_rows), bit-identical per row to the
 * single-row ones; other types and the scalar ISA loop the single-row one.
 * Under AVX-512, F16 also has a register-tiled few-row GEMM (mope_gemm_f16,
 * bit-identical per output to the single-row kernel), and the f32 helpers
 * below have few-row forms (mope_dot_rows_f32, mope_axpy_rows_f32/_f16,
 * mope_swiglu_f32).  Dequantisation fast paths (AVX2, used by both SIMD
 * ISAs): F16, Q8_0, Q4_0, Q4_K, Q6_K, bit-identical to the scalar code.
 * Everything here is thread-safe; the ISA choice is made once, lazily.
 *
 * Quantisers are simple min/max (absmax) fits, not ggml's search; the error
 * bounds each reaches are listed in src/core/quant_ref.c. */
#ifndef MOPE_QUANT_H
#define MOPE_QUANT_H

#include "mope/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mope_type_traits {
    const char *name;   /* "f32", "q8_0", ... */
    int64_t blck_size;  /* elements per block */
    size_t type_size;   /* bytes per block */
    bool supported;     /* mope can dequantise and dot it */
    bool can_quantize;  /* mope can quantise f32 to it */
    mope_type vec_dot_type;
} mope_type_traits;

/* NULL for a value that is not a known type. */
const mope_type_traits *mope_type_get(int type);
const char *mope_type_name(int type);           /* "unknown" if not known */
int mope_type_from_name(const char *name);      /* -1 if not known; case-insensitive */
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size
 * or the type is unknown. */
size_t mope_row_size(int type, int64_t n);

/* Row conversion.  n must be a multiple of the block size (MOPE_EINVAL
 * otherwise); MOPE_EUNSUPPORTED for a type mope cannot convert.  Quantising
 * a row holding NaN or inf to a block format is MOPE_EINVAL. */
int mope_dequantize_row(int type, const void *src, float *dst, int64_t n);
int mope_quantize_row(int type, const float *src, void *dst, int64_t n);

typedef enum mope_isa { MOPE_ISA_SCALAR = 0, MOPE_ISA_AVX2 = 1, MOPE_ISA_AVX512 = 2 } mope_isa;
mope_isa mope_quant_best_isa(void);        /* what this CPU supports */
mope_isa mope_quant_isa(void);             /* what is in use */
void mope_quant_set_isa(mope_isa isa);     /* clamps to what the CPU supports */
const char *mope_isa_name(mope_isa isa);

/* s = dot(w, x) over n elements: w a row of type `type`, x a row already
 * converted to mope_type_get(type)->vec_dot_type by mope_quantize_act (the
 * SIMD kernels rely on its int8 values being in [-127, 127] for Q8_0 and on
 * Q8_K's bsums).  An unsupported type gives s = 0. */
void mope_vec_dot(int type, int64_t n, float *s, const void *w, const void *x);
/* Same, forcing an ISA (tests compare every ISA with the scalar one). */
void mope_vec_dot_isa(mope_isa isa, int type, int64_t n, float *s, const void *w, const void *x);
/* Multi-row dot: s[r*lds] = dot(w, x_r) for r < nr, where activation row
 * x_r starts ldx bytes after x_{r-1} (each converted by mope_quantize_act).
 * One pass over the weight row serves every activation row: the SIMD
 * kernels load and decode each weight block once and reuse it for up to 4
 * rows at a time, so a batch of rows costs far less than one dot per row.
 * Results equal the single-row kernel's up to float summation order. */
void mope_vec_dot_rows(int type, int64_t n, int nr, float *s, int64_t lds, const void *w, const void *x, size_t ldx);
void mope_vec_dot_rows_isa(mope_isa isa, int type, int64_t n, int nr, float *s, int64_t lds, const void *w,
                           const void *x, size_t ldx);
/* Few-row F16 GEMM: y[r * ldy + j] = dot(w_j, x_r) for j < nw weight rows
 * (F16, w_stride bytes apart) and r < nx activation rows (f32 holding F16
 * values, ldx floats apart: see mope_round_f16_rows).  A register tile of
 * weight rows x activation rows shares every load, so a decode batch of
 * 2..64 rows costs far less than the multi-row kernel's passes.  Each
 * output is bit-identical to mope_vec_dot(F16) of the same rows on the same
 * ISA.  Returns false (and writes nothing) where the ISA has no such kernel
 * (only AVX-512 has one) or n is not a multiple of 8: the caller then takes
 * mope_vec_dot_rows. */
bool mope_gemm_f16_available(int64_t n);
bool mope_gemm_f16(int64_t n, int nw, const void *w, size_t w_stride, int nx, const float *x, size_t ldx, float *y,
                   int64_t ldy);
bool mope_gemm_f16_isa(mope_isa isa, int64_t n, int nw, const void *w, size_t w_stride, int nx, const float *x,
                       size_t ldx, float *y, int64_t ldy);
/* dst_r = x_r rounded to F16 and back, as mope_quantize_act(F16) rounds
 * (rows ldx / ldd floats apart). */
void mope_round_f16_rows(const float *x, size_t ldx, float *dst, size_t ldd, int nr, int64_t n);
/* Convert an f32 activation row into the vec_dot_type of `type` (dst has
 * mope_row_size(vec_dot_type, n) bytes). */
void mope_quantize_act(int type, const float *x, void *dst, int64_t n);
/* Forced-ISA variants of the row conversion and f32 helpers (tests, benches).
 * mope_quantize_act gives the same bytes under every ISA. */
void mope_quantize_act_isa(mope_isa isa, int type, const float *x, void *dst, int64_t n);
int mope_dequantize_row_isa(mope_isa isa, int type, const void *src, float *dst, int64_t n);

/* f32 helpers used by the model code. */
float mope_dot_f32(const float *a, const float *b, int64_t n);
void mope_axpy_f32(float *y, float a, const float *x, int64_t n); /* y += a*x */
/* y[0..m) += sum_{j<n} a[j] * B[j*ldb .. j*ldb + m): a vector times a
 * row-major matrix, the shape of LoRA's A x (B = A transposed, m = rank)
 * and B t (m = outputs).  Each y is loaded and stored once (not once per j
 * as n axpys would).  Summation order differs between ISAs. */
void mope_axpy_rows_f32(float *y, const float *a, const float *B, int64_t ldb, int64_t n, int64_t m);
/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i] (SwiGLU's gate);
 * the AVX-512 version uses a polynomial e^x within a few ulp of expf. */
void mope_swiglu_f32(float *g, const float *u, int64_t n);
void mope_swiglu_f32_isa(mope_isa isa, float *g, const float *u, int64_t n);
/* s[t] = dot(q, K + t*ldk) over d elements for t < n (attention scores
 * over a cache's rows); SIMD ISAs reduce 16 rows' sums together. */
void mope_dot_rows_f32(const float *q, const float *K, int64_t ldk, int64_t n, int64_t d, float *s);
void mope_dot_rows_f32_isa(mope_isa isa, const float *q, const float *K, int64_t ldk, int64_t n, int64_t d,
                           float *s);
void mope_axpy_rows_f32_isa(mope_isa isa, float *y, const float *a, const float *B, int64_t ldb, int64_t n,
                            int64_t m);
/* The same with B in F16 (half the bytes: LoRA factors stored as F16). */
void mope_axpy_rows_f16(float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n, int64_t m);
void mope_axpy_rows_f16_isa(mope_isa isa, float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n,
                            int64_t m);
float mope_dot_f32_isa(mope_isa isa, const float *a, const float *b, int64_t n);
void mope_axpy_f32_isa(mope_isa isa, float *y, float a, const float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
