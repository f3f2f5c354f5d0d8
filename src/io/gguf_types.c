/* Type tables for GGUF values and ggml tensor element types, plus the
 * overflow-checked tensor size computation shared by reader and writer. */
#include "gguf_internal.h"

#include <inttypes.h>

static const gguf_block_info block_infos[] = {
    [MOPE_TYPE_F32] = {1, 4, "f32"},       [MOPE_TYPE_F16] = {1, 2, "f16"},
    [MOPE_TYPE_Q4_0] = {32, 18, "q4_0"},   [MOPE_TYPE_Q4_1] = {32, 20, "q4_1"},
    [MOPE_TYPE_Q5_0] = {32, 22, "q5_0"},   [MOPE_TYPE_Q5_1] = {32, 24, "q5_1"},
    [MOPE_TYPE_Q8_0] = {32, 34, "q8_0"},   [MOPE_TYPE_Q8_1] = {32, 36, "q8_1"},
    [MOPE_TYPE_Q2_K] = {256, 84, "q2_k"},  [MOPE_TYPE_Q3_K] = {256, 110, "q3_k"},
    [MOPE_TYPE_Q4_K] = {256, 144, "q4_k"}, [MOPE_TYPE_Q5_K] = {256, 176, "q5_k"},
    [MOPE_TYPE_Q6_K] = {256, 210, "q6_k"}, [MOPE_TYPE_Q8_K] = {256, 292, "q8_k"},
    [MOPE_TYPE_BF16] = {1, 2, "bf16"},
};

const gguf_block_info *gguf_block_info_get(uint32_t type) {
    if (type >= sizeof block_infos / sizeof block_infos[0] || block_infos[type].blck == 0) return NULL;
    return &block_infos[type];
}

int gguf_tensor_nbytes(uint32_t type, int n_dims, const int64_t *ne, int64_t *n_elements, size_t *nbytes,
                       mope_error *err) {
    const gguf_block_info *bi = gguf_block_info_get(type);
    if (!bi) return mope_error_set(err, MOPE_EUNSUPPORTED, "unknown or unsupported tensor type %" PRIu32, type);
    if (n_dims < 0 || n_dims > MOPE_GGUF_MAX_DIMS)
        return mope_error_set(err, MOPE_EFORMAT, "n_dims %d is more than %d dimensions", n_dims, MOPE_GGUF_MAX_DIMS);
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return mope_error_set(err, MOPE_EFORMAT, "dimension %d is negative (%" PRId64 ")", d, ne[d]);
        if (__builtin_mul_overflow(n, ne[d], &n))
            return mope_error_set(err, MOPE_EFORMAT, "element count overflows (ne product too large)");
    }
    int64_t ne0 = n_dims > 0 ? ne[0] : 1;
    if (ne0 % bi->blck != 0)
        return mope_error_set(err, MOPE_EFORMAT, "ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                              ne0, bi->name, bi->blck);
    /* n is a multiple of ne0, hence of blck; n / blck * size is the exact byte count. */
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)(n / bi->blck), (uint64_t)bi->size, &bytes) || bytes > SIZE_MAX ||
        bytes > (uint64_t)INT64_MAX)
        return mope_error_set(err, MOPE_EFORMAT, "byte size overflows (%" PRId64 " elements of %s)", n, bi->name);
    if (n_elements) *n_elements = n;
    *nbytes = (size_t)bytes;
    return 0;
}

size_t mope_gguf_type_size(mope_gguf_type t) {
    switch (t) {
    case MOPE_GGUF_U8: case MOPE_GGUF_I8: case MOPE_GGUF_BOOL: return 1;
    case MOPE_GGUF_U16: case MOPE_GGUF_I16: return 2;
    case MOPE_GGUF_U32: case MOPE_GGUF_I32: case MOPE_GGUF_F32: return 4;
    case MOPE_GGUF_U64: case MOPE_GGUF_I64: case MOPE_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *mope_gguf_type_name(mope_gguf_type t) {
    switch (t) {
    case MOPE_GGUF_U8: return "u8";
    case MOPE_GGUF_I8: return "i8";
    case MOPE_GGUF_U16: return "u16";
    case MOPE_GGUF_I16: return "i16";
    case MOPE_GGUF_U32: return "u32";
    case MOPE_GGUF_I32: return "i32";
    case MOPE_GGUF_F32: return "f32";
    case MOPE_GGUF_BOOL: return "bool";
    case MOPE_GGUF_STRING: return "string";
    case MOPE_GGUF_ARRAY: return "array";
    case MOPE_GGUF_U64: return "u64";
    case MOPE_GGUF_I64: return "i64";
    case MOPE_GGUF_F64: return "f64";
    default: return "unknown";
    }
}

/* Elements are little-endian and possibly unaligned in the file. */
int64_t mope_gguf_arr_i64(mope_gguf_type t, const void *data, uint64_t i) {
    const uint8_t *p = (const uint8_t *)data + i * mope_gguf_type_size(t);
    switch (t) {
    case MOPE_GGUF_U8: return *p;
    case MOPE_GGUF_I8: return (int8_t)*p;
    case MOPE_GGUF_BOOL: return *p != 0;
    case MOPE_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case MOPE_GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case MOPE_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case MOPE_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case MOPE_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v; }
    case MOPE_GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    case MOPE_GGUF_F32: {
        float v; memcpy(&v, p, 4);
        /* Saturate: converting an out-of-range float to an integer is UB. */
        if (!(v == v)) return 0;
        if (v >= 9.2233720368547758e18f) return INT64_MAX;
        if (v <= -9.2233720368547758e18f) return INT64_MIN;
        return (int64_t)v;
    }
    case MOPE_GGUF_F64: {
        double v; memcpy(&v, p, 8);
        if (!(v == v)) return 0;
        if (v >= 9.2233720368547758e18) return INT64_MAX;
        if (v <= -9.2233720368547758e18) return INT64_MIN;
        return (int64_t)v;
    }
    default: return 0;
    }
}

double mope_gguf_arr_f64(mope_gguf_type t, const void *data, uint64_t i) {
    const uint8_t *p = (const uint8_t *)data + i * mope_gguf_type_size(t);
    switch (t) {
    case MOPE_GGUF_F32: { float v; memcpy(&v, p, 4); return v; }
    case MOPE_GGUF_F64: { double v; memcpy(&v, p, 8); return v; }
    case MOPE_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    default: return (double)mope_gguf_arr_i64(t, data, i);
    }
}
