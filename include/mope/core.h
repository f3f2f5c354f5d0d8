/* mope core: errors, element types, half floats, rng, timing, thread pool.
 *
 * Error convention for the whole library: a function that can fail takes a
 * `mope_error *err` as its last argument, returns 0 (or a valid pointer) on
 * success and a negative MOPE_E* code (or NULL) on failure, after writing a
 * message that names the problem into err (err may be NULL).  Nothing in the
 * library prints or exits. */
#ifndef MOPE_CORE_H
#define MOPE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MOPE_OK = 0,
    MOPE_EINVAL = -1,       /* bad argument or bad input data */
    MOPE_EIO = -2,          /* file system / network */
    MOPE_ENOMEM = -3,       /* allocation failed or request too large */
    MOPE_EFORMAT = -4,      /* malformed file */
    MOPE_EUNSUPPORTED = -5, /* valid but not handled (type, architecture) */
    MOPE_ERANGE = -6,       /* value out of range (context full, ...) */
    MOPE_ESTATE = -7,       /* numerical trouble (NaN loss) or misuse */
};

typedef struct mope_error {
    int code;
    char msg[512];
} mope_error;

/* Sets err (if non-NULL) and returns code, so `return mope_error_set(...)`. */
int mope_error_set(mope_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the existing message with more context ("loading x.gguf: ..."). */
int mope_error_prefix(mope_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *mope_error_code_name(int code);

/* ---- element types: the values are ggml's, so GGUF files map directly ---- */
typedef enum mope_type {
    MOPE_TYPE_F32 = 0,
    MOPE_TYPE_F16 = 1,
    MOPE_TYPE_Q4_0 = 2,
    MOPE_TYPE_Q4_1 = 3,
    MOPE_TYPE_Q5_0 = 6,
    MOPE_TYPE_Q5_1 = 7,
    MOPE_TYPE_Q8_0 = 8,
    MOPE_TYPE_Q8_1 = 9,
    MOPE_TYPE_Q2_K = 10,
    MOPE_TYPE_Q3_K = 11,
    MOPE_TYPE_Q4_K = 12,
    MOPE_TYPE_Q5_K = 13,
    MOPE_TYPE_Q6_K = 14,
    MOPE_TYPE_Q8_K = 15,
    MOPE_TYPE_BF16 = 30,
    MOPE_TYPE_COUNT = 40,
} mope_type;

/* ---- IEEE half and bfloat16 (scalar; SIMD files use F16C) ---- */
static inline float mope_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, with overflow to inf and subnormals. */
static inline uint16_t mope_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
        if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25 rounds to 0 */
        uint32_t e = absx >> 23, m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14 + (112 - e) ... value = m * 2^(e-150) */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx - 0x38000000u) >> 13);
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static inline float mope_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t mope_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- deterministic random numbers (xoshiro256**, seeded by splitmix64) ---- */
typedef struct mope_rng {
    uint64_t s[4];
} mope_rng;

void mope_rng_seed(mope_rng *r, uint64_t seed);
uint64_t mope_rng_u64(mope_rng *r);
float mope_rng_uniform(mope_rng *r);            /* [0, 1) */
float mope_rng_normal(mope_rng *r);             /* N(0, 1) */
uint32_t mope_rng_below(mope_rng *r, uint32_t n); /* [0, n), n > 0 */

/* ---- time ---- */
double mope_time_s(void); /* monotonic seconds */

/* ---- memory ---- */
/* 64-byte aligned, zeroed; NULL on failure or on size overflow (n * size). */
void *mope_alloc(size_t n, size_t size);
void mope_free(void *p);

/* ---- thread pool ----
 * mope_pool_run calls fn(ctx, ith, nth) once for each index ith = 0..nth-1
 * and returns when all have finished.  Index 0 runs on the caller; the others
 * on whichever thread claims them first (a thread that finished its share
 * takes over shares whose worker has not started), so a job must not wait
 * for another index of the same job (no barriers inside a job).
 * Workers spin briefly between jobs, because a decode step dispatches
 * hundreds of short jobs per token. */
typedef struct mope_pool mope_pool;
typedef void (*mope_pool_fn)(void *ctx, int ith, int nth);

mope_pool *mope_pool_create(int n_threads, mope_error *err);
void mope_pool_free(mope_pool *p);
int mope_pool_size(const mope_pool *p);
void mope_pool_run(mope_pool *p, mope_pool_fn fn, void *ctx);
/* Number of online CPUs (>= 1). */
int mope_cpu_count(void);

/* ---- hashing ----
 * 64-bit FNV-1a: a fingerprint for cache keys and stamps (not for
 * security).  Chain calls by passing the previous result as h; start from
 * MOPE_HASH64_INIT. */
#define MOPE_HASH64_INIT 0xcbf29ce484222325ull
uint64_t mope_hash64(uint64_t h, const void *data, size_t n);

/* ---- text ----
 * Model output is bytes: a sampled sequence of byte tokens need not be valid
 * UTF-8.  Before such text goes into JSON or a report it is made valid by
 * replacing every ill-formed sequence with U+FFFD (as Python's
 * errors="replace" does).  Returns a malloc'd NUL-terminated copy (NULL on
 * allocation failure); *out_len (may be NULL) receives its length. */
char *mope_utf8_sanitize(const char *s, size_t len, size_t *out_len);
/* True when s[0..len) is well-formed UTF-8. */
bool mope_utf8_valid(const char *s, size_t len);

/* Split [0, n) into nth nearly equal parts; part ith is [*lo, *hi). */
static inline void mope_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

#ifdef __cplusplus
}
#endif
#endif
