/* GGUF reader.  The whole header is parsed and validated up front, so the
 * accessors can trust the indices and pointers they hand out.  Every count
 * read from the file is checked against the bytes that remain before any
 * allocation sized by it. */
#include "gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Smallest possible records, used to bound untrusted counts: a kv is a key
 * (u64 length + at least one byte), a u32 type and at least a one-byte value;
 * a tensor info is a name (u64 length, may be empty), n_dims, type, offset. */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_INFO_BYTES 24u
#define MAX_NAME 64

typedef struct cursor {
    const uint8_t *p;
    size_t pos, size;
    mope_error *err;
} cursor;

static size_t remaining(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, size_t n, const char *what) {
    if (remaining(c) < n)
        return mope_error_set(c->err, MOPE_EFORMAT, "truncated file: %s needs %zu bytes at offset %zu but only %zu remain",
                              what, n, c->pos, remaining(c));
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return MOPE_EFORMAT;
    *v = gguf_rd_u32(c->p + c->pos);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return MOPE_EFORMAT;
    *v = gguf_rd_u64(c->p + c->pos);
    c->pos += 8;
    return 0;
}

static int rd_str(cursor *c, const char **s, uint64_t *len, const char *what) {
    if (rd_u64(c, len, what)) return MOPE_EFORMAT;
    if (*len > remaining(c))
        return mope_error_set(c->err, MOPE_EFORMAT,
                              "%s: string length %" PRIu64 " at offset %zu exceeds the %zu bytes left in the file", what,
                              *len, c->pos - 8, remaining(c));
    *s = (const char *)c->p + c->pos;
    c->pos += (size_t)*len;
    return 0;
}

static bool valid_value_type(uint32_t t) { return t <= MOPE_GGUF_F64; }

static size_t hash_cap_for(int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    return cap;
}

/* Returns the index of an existing entry with the same name, or inserts idx
 * and returns -1. */
static int64_t hash_insert(uint32_t *tab, size_t cap, const char *name, size_t len, uint32_t idx,
                           const char *(*name_of)(const mope_gguf *, uint32_t), const mope_gguf *g) {
    size_t h = (size_t)gguf_hash(name, len) & (cap - 1);
    while (tab[h]) {
        const char *other = name_of(g, tab[h] - 1);
        if (strlen(other) == len && memcmp(other, name, len) == 0) return tab[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    tab[h] = idx + 1;
    return -1;
}

const char *gguf_kv_name_of(const mope_gguf *g, uint32_t i) { return g->kv[i].key; }
const char *gguf_tensor_name_of(const mope_gguf *g, uint32_t i) { return g->tensors[i].name; }

int64_t gguf_hash_find(const uint32_t *tab, size_t cap, const char *name,
                         const char *(*name_of)(const mope_gguf *, uint32_t), const mope_gguf *g) {
    if (!tab || !name) return -1;
    size_t len = strlen(name);
    size_t h = (size_t)gguf_hash(name, len) & (cap - 1);
    while (tab[h]) {
        if (strcmp(name_of(g, tab[h] - 1), name) == 0) return tab[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

static char *dup_name(const char *s, size_t len) {
    char *d = malloc(len + 1);
    if (!d) return NULL;
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

static int parse_value(cursor *c, gguf_kv *kv, int64_t i) {
    const char *key = kv->key;
    size_t start = c->pos;
    if (kv->type == MOPE_GGUF_STRING) {
        const char *s;
        uint64_t len;
        if (rd_str(c, &s, &len, "string value")) goto fail;
    } else if (kv->type == MOPE_GGUF_ARRAY) {
        if (rd_u32(c, &kv->elem_type, "array element type")) goto fail;
        if (kv->elem_type == MOPE_GGUF_ARRAY) {
            mope_error_set(c->err, MOPE_EFORMAT, "nested arrays are not allowed");
            goto fail;
        }
        if (!valid_value_type(kv->elem_type)) {
            mope_error_set(c->err, MOPE_EFORMAT, "unknown array element type %" PRIu32, kv->elem_type);
            goto fail;
        }
        if (rd_u64(c, &kv->n, "array length")) goto fail;
        kv->elems = c->p + c->pos;
        if (kv->elem_type == MOPE_GGUF_STRING) {
            if (kv->n > remaining(c) / 8) {
                mope_error_set(c->err, MOPE_EFORMAT,
                               "array of %" PRIu64 " strings cannot fit in the %zu bytes left in the file", kv->n,
                               remaining(c));
                goto fail;
            }
            /* Bounded by the check above: at most remaining/8 pointers. */
            kv->str_elems = malloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->str_elems);
            if (!kv->str_elems) {
                mope_error_set(c->err, MOPE_ENOMEM, "out of memory for %" PRIu64 " string elements", kv->n);
                goto fail;
            }
            for (uint64_t j = 0; j < kv->n; j++) {
                kv->str_elems[j] = c->p + c->pos;
                const char *s;
                uint64_t len;
                if (rd_str(c, &s, &len, "array string element")) {
                    mope_error_prefix(c->err, "element %" PRIu64, j);
                    goto fail;
                }
            }
        } else {
            size_t es = mope_gguf_type_size((mope_gguf_type)kv->elem_type);
            if (kv->n > remaining(c) / es) {
                mope_error_set(c->err, MOPE_EFORMAT,
                               "array of %" PRIu64 " %s elements cannot fit in the %zu bytes left in the file", kv->n,
                               mope_gguf_type_name((mope_gguf_type)kv->elem_type), remaining(c));
                goto fail;
            }
            c->pos += (size_t)kv->n * es;
        }
    } else if (valid_value_type(kv->type)) {
        if (need(c, mope_gguf_type_size((mope_gguf_type)kv->type), "scalar value")) goto fail;
        c->pos += mope_gguf_type_size((mope_gguf_type)kv->type);
    } else {
        mope_error_set(c->err, MOPE_EFORMAT, "unknown value type %" PRIu32, kv->type);
        goto fail;
    }
    kv->raw = c->p + start;
    kv->raw_len = c->pos - start;
    return 0;
fail:
    return mope_error_prefix(c->err, "kv %" PRId64 " '%.64s'", i, key);
}

static int parse_kvs(cursor *c, mope_gguf *g, uint64_t n_kv) {
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->kv_hash_cap = hash_cap_for((int64_t)n_kv);
    g->kv_hash = calloc(g->kv_hash_cap, sizeof *g->kv_hash);
    if (!g->kv || !g->kv_hash) return mope_error_set(c->err, MOPE_ENOMEM, "out of memory for %" PRIu64 " kvs", n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        const char *k;
        uint64_t klen;
        if (rd_str(c, &k, &klen, "key")) return mope_error_prefix(c->err, "kv %" PRIu64, i);
        if (klen == 0) return mope_error_set(c->err, MOPE_EFORMAT, "kv %" PRIu64 ": empty key", i);
        if (memchr(k, 0, (size_t)klen))
            return mope_error_set(c->err, MOPE_EFORMAT, "kv %" PRIu64 ": key contains a NUL byte", i);
        gguf_kv *kv = &g->kv[i];
        if (!(kv->key = dup_name(k, (size_t)klen))) return mope_error_set(c->err, MOPE_ENOMEM, "out of memory");
        g->n_kv = (int64_t)i + 1; /* so close() frees what was allocated */
        if (hash_insert(g->kv_hash, g->kv_hash_cap, k, (size_t)klen, (uint32_t)i, gguf_kv_name_of, g) >= 0)
            return mope_error_set(c->err, MOPE_EFORMAT, "kv %" PRIu64 ": duplicate key '%.64s'", i, kv->key);
        if (rd_u32(c, &kv->type, "value type")) return mope_error_prefix(c->err, "kv %" PRIu64 " '%.64s'", i, kv->key);
        if (parse_value(c, kv, (int64_t)i)) return c->err ? c->err->code : MOPE_EFORMAT;
    }
    return 0;
}

static int parse_alignment(mope_gguf *g, mope_error *err) {
    g->alignment = MOPE_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = mope_gguf_find_key(g, "general.alignment");
    if (i < 0) return 0;
    if (g->kv[i].type != MOPE_GGUF_U32)
        return mope_error_set(err, MOPE_EFORMAT, "general.alignment has type %s, expected u32",
                              mope_gguf_type_name((mope_gguf_type)g->kv[i].type));
    uint32_t a = gguf_rd_u32(g->kv[i].raw);
    if (a == 0 || (a & (a - 1)) != 0)
        return mope_error_set(err, MOPE_EFORMAT, "general.alignment %" PRIu32 " is not a power of two", a);
    g->alignment = a;
    return 0;
}

static int parse_tensor_infos(cursor *c, mope_gguf *g, uint64_t n_t) {
    g->tensors = calloc(n_t ? n_t : 1, sizeof *g->tensors);
    g->t_hash_cap = hash_cap_for((int64_t)n_t);
    g->t_hash = calloc(g->t_hash_cap, sizeof *g->t_hash);
    if (!g->tensors || !g->t_hash)
        return mope_error_set(c->err, MOPE_ENOMEM, "out of memory for %" PRIu64 " tensors", n_t);
    for (uint64_t i = 0; i < n_t; i++) {
        mope_gguf_tensor *t = &g->tensors[i];
        const char *name;
        uint64_t len;
        if (rd_str(c, &name, &len, "tensor name")) return mope_error_prefix(c->err, "tensor %" PRIu64, i);
        if (len >= MAX_NAME)
            return mope_error_set(c->err, MOPE_EFORMAT, "tensor %" PRIu64 ": name of %" PRIu64 " bytes is too long (max %d)",
                                  i, len, MAX_NAME - 1);
        if (memchr(name, 0, (size_t)len))
            return mope_error_set(c->err, MOPE_EFORMAT, "tensor %" PRIu64 ": name contains a NUL byte", i);
        if (!(t->name = dup_name(name, (size_t)len))) return mope_error_set(c->err, MOPE_ENOMEM, "out of memory");
        g->n_tensors = (int64_t)i + 1;
        if (hash_insert(g->t_hash, g->t_hash_cap, name, (size_t)len, (uint32_t)i, gguf_tensor_name_of, g) >= 0)
            return mope_error_set(c->err, MOPE_EFORMAT, "tensor %" PRIu64 ": duplicate tensor name '%s'", i, t->name);
        uint32_t n_dims, type;
        if (rd_u32(c, &n_dims, "n_dims")) return mope_error_prefix(c->err, "tensor '%s'", t->name);
        if (n_dims > MOPE_GGUF_MAX_DIMS)
            return mope_error_set(c->err, MOPE_EFORMAT, "tensor '%s': n_dims %" PRIu32 " exceeds the maximum of %d",
                                  t->name, n_dims, MOPE_GGUF_MAX_DIMS);
        t->n_dims = (int)n_dims;
        for (int d = 0; d < MOPE_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t v;
            if (rd_u64(c, &v, "tensor dimension")) return mope_error_prefix(c->err, "tensor '%s'", t->name);
            if (v > (uint64_t)INT64_MAX)
                return mope_error_set(c->err, MOPE_EFORMAT, "tensor '%s': dimension %" PRIu32 " = %" PRIu64 " is too large",
                                      t->name, d, v);
            t->ne[d] = (int64_t)v;
        }
        if (rd_u32(c, &type, "tensor type")) return mope_error_prefix(c->err, "tensor '%s'", t->name);
        if (rd_u64(c, &t->offset, "tensor offset")) return mope_error_prefix(c->err, "tensor '%s'", t->name);
        if (gguf_tensor_nbytes(type, t->n_dims, t->ne, &t->n_elements, &t->nbytes, c->err))
            return mope_error_prefix(c->err, "tensor '%s'", t->name);
        t->type = (mope_type)type;
    }
    return 0;
}

static int check_tensor_data(mope_gguf *g, mope_error *err) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        mope_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return mope_error_set(err, MOPE_EFORMAT, "tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %zu",
                                  t->name, t->offset, g->alignment);
        /* Compare without forming data_offset + offset + nbytes, which could overflow. */
        size_t avail = g->size >= g->data_offset ? g->size - g->data_offset : 0;
        if (g->data_offset > g->size || t->offset > avail || t->nbytes > avail - t->offset) {
            uint64_t start = (uint64_t)g->data_offset + t->offset;
            if (start < t->offset) start = UINT64_MAX; /* wrapped */
            uint64_t end = start + t->nbytes < start ? UINT64_MAX : start + t->nbytes;
            return mope_error_set(err, MOPE_EFORMAT,
                                  "tensor '%s': data [%" PRIu64 ", %" PRIu64 ") extends past end of file (%zu bytes)",
                                  t->name, start, end, g->size);
        }
        t->data = g->base + g->data_offset + t->offset;
    }
    return 0;
}

static mope_gguf *parse(const uint8_t *base, size_t size, void *map, mope_error *err) {
    mope_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    g->base = base;
    g->size = size;
    g->map = map;
    cursor c = {base, 0, size, err};
    uint64_t n_t, n_kv;
    if (size < 4 || memcmp(base, "GGUF", 4) != 0) {
        if (size < 4)
            mope_error_set(err, MOPE_EFORMAT, "not a GGUF file: only %zu bytes, too short for the magic", size);
        else
            mope_error_set(err, MOPE_EFORMAT, "not a GGUF file: bad magic %02x %02x %02x %02x (expected 'GGUF')",
                           base[0], base[1], base[2], base[3]);
        goto fail;
    }
    c.pos = 4;
    if (rd_u32(&c, &g->version, "version")) goto fail;
    if (g->version == 1) {
        mope_error_set(err, MOPE_EUNSUPPORTED, "GGUF version 1 is not supported (it used 32-bit counts); need version 2 or 3");
        goto fail;
    }
    if (g->version != 2 && g->version != 3) {
        mope_error_set(err, MOPE_EUNSUPPORTED, "unsupported GGUF version %" PRIu32 "%s; need version 2 or 3", g->version,
                       (g->version & 0xffff) == 0 ? " (a big-endian file?)" : "");
        goto fail;
    }
    if (rd_u64(&c, &n_t, "tensor_count") || rd_u64(&c, &n_kv, "kv_count")) goto fail;
    size_t rem = remaining(&c);
    if (n_kv > rem / MIN_KV_BYTES || n_kv >= UINT32_MAX) {
        mope_error_set(err, MOPE_EFORMAT, "kv_count %" PRIu64 " is more than the %zu bytes left in the file could hold",
                       n_kv, rem);
        goto fail;
    }
    if (n_t > rem / MIN_TENSOR_INFO_BYTES || n_t >= UINT32_MAX ||
        n_kv * MIN_KV_BYTES + n_t * MIN_TENSOR_INFO_BYTES > rem) {
        mope_error_set(err, MOPE_EFORMAT,
                       "tensor_count %" PRIu64 " (with kv_count %" PRIu64 ") is more than the %zu bytes left in the file could hold",
                       n_t, n_kv, rem);
        goto fail;
    }
    if (parse_kvs(&c, g, n_kv) || parse_alignment(g, err) || parse_tensor_infos(&c, g, n_t)) goto fail;
    g->data_offset = c.pos + (g->alignment - c.pos % g->alignment) % g->alignment;
    if (check_tensor_data(g, err)) goto fail;
    return g;
fail:
    g->map = NULL; /* the caller owns the mapping until we succeed */
    mope_gguf_close(g);
    return NULL;
}

mope_gguf *mope_gguf_open_memory(const void *data, size_t size, mope_error *err) {
    if (!data && size) {
        mope_error_set(err, MOPE_EINVAL, "NULL buffer of %zu bytes", size);
        return NULL;
    }
    static const uint8_t empty[1];
    return parse(data ? data : empty, size, NULL, err);
}

mope_gguf *mope_gguf_open(const char *path, mope_error *err) {
    if (!path) {
        mope_error_set(err, MOPE_EINVAL, "NULL path");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mope_error_set(err, MOPE_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        mope_error_set(err, MOPE_EIO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        mope_error_set(err, MOPE_EFORMAT, "%s: empty file, not GGUF", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        mope_error_set(err, MOPE_EIO, "%s: mmap of %zu bytes failed: %s", path, size, strerror(e));
        return NULL;
    }
    mope_gguf *g = parse(map, size, map, err);
    if (!g) {
        munmap(map, size);
        mope_error_prefix(err, "%s", path);
    }
    return g;
}

void mope_gguf_close(mope_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_elems);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kv);
    free(g->kv_hash);
    free(g->tensors);
    free(g->t_hash);
    if (g->map) munmap(g->map, g->size);
    free(g);
}
