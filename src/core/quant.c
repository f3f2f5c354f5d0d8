/* Type traits, row conversion and the run-time choice of kernels.
 *
 * The kernel table for each ISA is built once (pthread_once) and never
 * changes afterwards; mope_quant_set_isa only swaps an atomic pointer, so
 * readers on other threads always see a complete table. */
#include <cpuid.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>

#include "core/quant_kernels.h"

/* vec_dot_type choices: Q4_1 pairs with Q8_0 too (its min term needs the
 * block's activation sum, which the kernels compute on the fly instead of
 * carrying a Q8_1 format); BF16 weights dot f32 activations, which keeps the
 * activations exact and costs only a shift to widen the weights. */
static const mope_type_traits traits[MOPE_TYPE_COUNT] = {
    [MOPE_TYPE_F32] = {"f32", 1, 4, true, true, MOPE_TYPE_F32},
    [MOPE_TYPE_F16] = {"f16", 1, 2, true, true, MOPE_TYPE_F16},
    [MOPE_TYPE_BF16] = {"bf16", 1, 2, true, true, MOPE_TYPE_F32},
    [MOPE_TYPE_Q4_0] = {"q4_0", 32, 18, true, true, MOPE_TYPE_Q8_0},
    [MOPE_TYPE_Q4_1] = {"q4_1", 32, 20, true, true, MOPE_TYPE_Q8_0},
    [MOPE_TYPE_Q5_0] = {"q5_0", 32, 22, true, true, MOPE_TYPE_Q8_0},
    [MOPE_TYPE_Q5_1] = {"q5_1", 32, 24, false, false, MOPE_TYPE_Q8_1},
    [MOPE_TYPE_Q8_0] = {"q8_0", 32, 34, true, true, MOPE_TYPE_Q8_0},
    [MOPE_TYPE_Q8_1] = {"q8_1", 32, 36, false, false, MOPE_TYPE_Q8_1},
    [MOPE_TYPE_Q2_K] = {"q2_K", 256, 84, false, false, MOPE_TYPE_Q8_K},
    [MOPE_TYPE_Q3_K] = {"q3_K", 256, 110, false, false, MOPE_TYPE_Q8_K},
    [MOPE_TYPE_Q4_K] = {"q4_K", 256, 144, true, true, MOPE_TYPE_Q8_K},
    [MOPE_TYPE_Q5_K] = {"q5_K", 256, 176, true, true, MOPE_TYPE_Q8_K},
    [MOPE_TYPE_Q6_K] = {"q6_K", 256, 210, true, true, MOPE_TYPE_Q8_K},
    /* Q8_K is an activation format: it can be dequantised and produced, but
     * no kernel takes it as the weight side. */
    [MOPE_TYPE_Q8_K] = {"q8_K", 256, 292, false, true, MOPE_TYPE_Q8_K},
};

const mope_type_traits *mope_type_get(int type) {
    if (type < 0 || type >= MOPE_TYPE_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

const char *mope_type_name(int type) {
    const mope_type_traits *t = mope_type_get(type);
    return t ? t->name : "unknown";
}

int mope_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < MOPE_TYPE_COUNT; t++)
        if (traits[t].name && strcasecmp(traits[t].name, name) == 0) return t;
    return -1;
}

size_t mope_row_size(int type, int64_t n) {
    const mope_type_traits *t = mope_type_get(type);
    if (!t || n < 0 || n % t->blck_size) return 0;
    uint64_t blocks = (uint64_t)(n / t->blck_size);
    if (blocks > SIZE_MAX / t->type_size) return 0;
    return (size_t)blocks * t->type_size;
}

/* ------------------------------------------------------------- dispatch */

static mope_quant_kernels tables[3];
static mope_isa best_isa = MOPE_ISA_SCALAR;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static _Atomic(const mope_quant_kernels *) current;
static _Atomic int current_isa;

static void init_tables(void) {
    __builtin_cpu_init();
    /* clang has no "f16c" feature name for __builtin_cpu_supports: ask cpuid
     * (leaf 1, ecx bit 29); avx2 implies the OS saves ymm state. */
    unsigned a = 0, b = 0, c = 0, d = 0;
    bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vnni");
    mope_quant_fill_ref(&tables[MOPE_ISA_SCALAR]);
    tables[MOPE_ISA_AVX2] = tables[MOPE_ISA_SCALAR];
    mope_quant_fill_avx2(&tables[MOPE_ISA_AVX2]);
    tables[MOPE_ISA_AVX512] = tables[MOPE_ISA_AVX2];
    mope_quant_fill_avx512(&tables[MOPE_ISA_AVX512]);
    best_isa = avx512 ? MOPE_ISA_AVX512 : avx2 ? MOPE_ISA_AVX2 : MOPE_ISA_SCALAR;
    atomic_store(&current_isa, (int)best_isa);
    atomic_store(&current, &tables[best_isa]);
}

static inline const mope_quant_kernels *kern(void) {
    pthread_once(&init_once, init_tables);
    return atomic_load_explicit(&current, memory_order_acquire);
}

static inline const mope_quant_kernels *kern_isa(mope_isa isa) {
    pthread_once(&init_once, init_tables);
    if ((int)isa < 0 || isa > best_isa) isa = best_isa;
    return &tables[isa];
}

mope_isa mope_quant_best_isa(void) {
    pthread_once(&init_once, init_tables);
    return best_isa;
}

mope_isa mope_quant_isa(void) {
    pthread_once(&init_once, init_tables);
    return (mope_isa)atomic_load(&current_isa);
}

void mope_quant_set_isa(mope_isa isa) {
    pthread_once(&init_once, init_tables);
    if ((int)isa < 0 || isa > best_isa) isa = best_isa;
    atomic_store(&current_isa, (int)isa);
    atomic_store_explicit(&current, &tables[isa], memory_order_release);
}

const char *mope_isa_name(mope_isa isa) {
    switch (isa) {
    case MOPE_ISA_SCALAR: return "scalar";
    case MOPE_ISA_AVX2: return "avx2";
    case MOPE_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

/* ----------------------------------------------------------- conversion */

int mope_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const mope_type_traits *t = mope_type_get(type);
    const mope_quant_kernels *k = kern();
    if (!t || !k->dequant[type] || !src || !dst || n < 0) return MOPE_EUNSUPPORTED;
    if (n % t->blck_size) return MOPE_EINVAL;
    k->dequant[type](src, dst, n);
    return MOPE_OK;
}

/* Quantisation is always the scalar code: it runs once per tensor, not per
 * token, and one implementation keeps files bit-reproducible across CPUs. */
int mope_quantize_row(int type, const float *src, void *dst, int64_t n) {
    const mope_type_traits *t = mope_type_get(type);
    if (!t || !t->can_quantize || !mope_quant_ref_quantize[type] || !src || !dst || n < 0)
        return MOPE_EUNSUPPORTED;
    if (n % t->blck_size) return MOPE_EINVAL;
    /* a NaN or inf would poison a whole block's scale: refuse the row
     * (F32/F16/BF16 keep them, as the formats can) */
    if (t->blck_size > 1)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(src[i])) return MOPE_EINVAL;
    mope_quant_ref_quantize[type](src, dst, n);
    return MOPE_OK;
}

void mope_quantize_act(int type, const float *x, void *dst, int64_t n) {
    const mope_type_traits *t = mope_type_get(type);
    if (!t || !t->supported) return;
    kern()->quant_act[t->vec_dot_type](x, dst, n);
}

void mope_quantize_act_isa(mope_isa isa, int type, const float *x, void *dst, int64_t n) {
    const mope_type_traits *t = mope_type_get(type);
    if (!t || !t->supported) return;
    kern_isa(isa)->quant_act[t->vec_dot_type](x, dst, n);
}

/* ------------------------------------------------------------- kernels */

void mope_vec_dot(int type, int64_t n, float *s, const void *w, const void *x) {
    const mope_quant_kernels *k = kern();
    if (type < 0 || type >= MOPE_TYPE_COUNT || !k->dot[type]) {
        *s = 0;
        return;
    }
    k->dot[type](n, s, w, x);
}

void mope_vec_dot_isa(mope_isa isa, int type, int64_t n, float *s, const void *w, const void *x) {
    const mope_quant_kernels *k = kern_isa(isa);
    if (type < 0 || type >= MOPE_TYPE_COUNT || !k->dot[type]) {
        *s = 0;
        return;
    }
    k->dot[type](n, s, w, x);
}

static void dot_rows(const mope_quant_kernels *k, int type, int64_t n, int nr, float *s, int64_t lds,
                     const void *w, const void *x, size_t ldx) {
    if (type < 0 || type >= MOPE_TYPE_COUNT || !k->dot[type]) {
        for (int r = 0; r < nr; r++) s[r * lds] = 0;
        return;
    }
    const char *xr = x;
    mope_vec_dot_multi_fn multi = k->dot_multi[type];
    int r = 0;
    if (multi) {
        /* full chunks first, then one call for the 2..3 left (a lone row
         * goes to the single-row kernel, which has more independent chains) */
        for (; nr - r >= 2; r += MOPE_DOT_MULTI) {
            int c = nr - r < MOPE_DOT_MULTI ? nr - r : MOPE_DOT_MULTI;
            multi(n, c, s + r * lds, lds, w, xr + (size_t)r * ldx, ldx);
            if (c < MOPE_DOT_MULTI) {
                r += c;
                break;
            }
        }
    }
    for (; r < nr; r++) k->dot[type](n, s + r * lds, w, xr + (size_t)r * ldx);
}

void mope_vec_dot_rows(int type, int64_t n, int nr, float *s, int64_t lds, const void *w, const void *x, size_t ldx) {
    dot_rows(kern(), type, n, nr, s, lds, w, x, ldx);
}

void mope_vec_dot_rows_isa(mope_isa isa, int type, int64_t n, int nr, float *s, int64_t lds, const void *w,
                           const void *x, size_t ldx) {
    dot_rows(kern_isa(isa), type, n, nr, s, lds, w, x, ldx);
}

static bool gemm_f16(const mope_quant_kernels *k, int64_t n, int nw, const void *w, size_t w_stride, int nx,
                     const float *x, size_t ldx, float *y, int64_t ldy) {
    if (!k->gemm_f16 || n <= 0 || n % 8 || nw < 1 || nx < 1) return false;
    k->gemm_f16(n, nw, w, w_stride, nx, x, ldx, y, ldy);
    return true;
}

bool mope_gemm_f16_available(int64_t n) { return kern()->gemm_f16 && n > 0 && n % 8 == 0; }

bool mope_gemm_f16(int64_t n, int nw, const void *w, size_t w_stride, int nx, const float *x, size_t ldx, float *y,
                   int64_t ldy) {
    return gemm_f16(kern(), n, nw, w, w_stride, nx, x, ldx, y, ldy);
}

bool mope_gemm_f16_isa(mope_isa isa, int64_t n, int nw, const void *w, size_t w_stride, int nx, const float *x,
                       size_t ldx, float *y, int64_t ldy) {
    return gemm_f16(kern_isa(isa), n, nw, w, w_stride, nx, x, ldx, y, ldy);
}

void mope_round_f16_rows(const float *x, size_t ldx, float *dst, size_t ldd, int nr, int64_t n) {
    const mope_quant_kernels *k = kern();
    uint16_t h[256];
    for (int r = 0; r < nr; r++)
        for (int64_t i = 0; i < n; i += 256) {
            int64_t c = n - i < 256 ? n - i : 256;
            k->quant_act[MOPE_TYPE_F16](x + (size_t)r * ldx + i, h, c);
            k->dequant[MOPE_TYPE_F16](h, dst + (size_t)r * ldd + i, c);
        }
}

float mope_dot_f32(const float *a, const float *b, int64_t n) { return kern()->dot_f32(a, b, n); }

void mope_swiglu_f32(float *g, const float *u, int64_t n) { kern()->swiglu_f32(g, u, n); }

void mope_swiglu_f32_isa(mope_isa isa, float *g, const float *u, int64_t n) { kern_isa(isa)->swiglu_f32(g, u, n); }

void mope_dot_rows_f32(const float *q, const float *K, int64_t ldk, int64_t n, int64_t d, float *s) {
    kern()->dot_rows_f32(q, K, ldk, n, d, s);
}

void mope_dot_rows_f32_isa(mope_isa isa, const float *q, const float *K, int64_t ldk, int64_t n, int64_t d,
                           float *s) {
    kern_isa(isa)->dot_rows_f32(q, K, ldk, n, d, s);
}

void mope_axpy_rows_f32(float *y, const float *a, const float *B, int64_t ldb, int64_t n, int64_t m) {
    kern()->axpy_rows_f32(y, a, B, ldb, n, m);
}

void mope_axpy_rows_f16(float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n, int64_t m) {
    kern()->axpy_rows_f16(y, a, B, ldb, n, m);
}

void mope_axpy_rows_f16_isa(mope_isa isa, float *y, const float *a, const uint16_t *B, int64_t ldb, int64_t n,
                            int64_t m) {
    kern_isa(isa)->axpy_rows_f16(y, a, B, ldb, n, m);
}

void mope_axpy_rows_f32_isa(mope_isa isa, float *y, const float *a, const float *B, int64_t ldb, int64_t n,
                            int64_t m) {
    kern_isa(isa)->axpy_rows_f32(y, a, B, ldb, n, m);
}

void mope_axpy_f32(float *y, float a, const float *x, int64_t n) { kern()->axpy_f32(y, a, x, n); }

float mope_dot_f32_isa(mope_isa isa, const float *a, const float *b, int64_t n) {
    return kern_isa(isa)->dot_f32(a, b, n);
}

void mope_axpy_f32_isa(mope_isa isa, float *y, float a, const float *x, int64_t n) {
    kern_isa(isa)->axpy_f32(y, a, x, n);
}

int mope_dequantize_row_isa(mope_isa isa, int type, const void *src, float *dst, int64_t n) {
    const mope_type_traits *t = mope_type_get(type);
    const mope_quant_kernels *k = kern_isa(isa);
    if (!t || !k->dequant[type] || !src || !dst || n < 0) return MOPE_EUNSUPPORTED;
    if (n % t->blck_size) return MOPE_EINVAL;
    k->dequant[type](src, dst, n);
    return MOPE_OK;
}
