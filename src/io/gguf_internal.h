/* Shared between the GGUF reader and writer (not public). */
#ifndef MOPE_IO_GGUF_INTERNAL_H
#define MOPE_IO_GGUF_INTERNAL_H

#include "mope/gguf.h"

/* GGUF is little-endian; values are read with memcpy into host integers. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the GGUF reader assumes a little-endian host");

/* Block geometry of the ggml types mope accepts in a GGUF file.  Kept here
 * rather than taken from quant.h so the reader depends on nothing above core. */
typedef struct gguf_block_info {
    int64_t blck;    /* elements per block */
    size_t size;     /* bytes per block */
    const char *name;
} gguf_block_info;

/* NULL for a type value mope does not know. */
const gguf_block_info *gguf_block_info_get(uint32_t type);

/* Bytes of a tensor of the given shape, with every overflow and the block
 * multiple checked; 0 with a message in err on failure (nbytes may be 0 for
 * an empty tensor, so success is reported through the return code). */
int gguf_tensor_nbytes(uint32_t type, int n_dims, const int64_t *ne, int64_t *n_elements, size_t *nbytes,
                       mope_error *err);

/* One kv record as parsed: `raw`/`raw_len` is the serialised value (the
 * bytes after the type field), which the writer copies verbatim so that
 * read -> write round trips byte for byte. */
typedef struct gguf_kv {
    char *key;
    uint32_t type;
    const uint8_t *raw;
    size_t raw_len;
    /* arrays */
    uint32_t elem_type;
    uint64_t n;
    const uint8_t *elems;     /* first element */
    const uint8_t **str_elems; /* string arrays: start of each element's length prefix */
} gguf_kv;

struct mope_gguf {
    const uint8_t *base;
    size_t size;
    void *map; /* non-NULL when the buffer is our mmap */
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    mope_gguf_tensor *tensors;
    /* open-addressing hash tables of indices + 1 (0 = empty) */
    uint32_t *kv_hash;
    size_t kv_hash_cap;
    uint32_t *t_hash;
    size_t t_hash_cap;
};

static inline uint64_t gguf_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static inline uint64_t gguf_rd_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t gguf_rd_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Hash lookups over the reader's tables (gguf_read.c). */
const char *gguf_kv_name_of(const mope_gguf *g, uint32_t i);
const char *gguf_tensor_name_of(const mope_gguf *g, uint32_t i);
int64_t gguf_hash_find(const uint32_t *tab, size_t cap, const char *name,
                       const char *(*name_of)(const mope_gguf *, uint32_t), const mope_gguf *g);

#endif
