/* GGUF writer.  Values are stored already serialised (the bytes after the
 * type field), so copying a kv from a reader is a byte copy and
 * write -> read -> write reproduces the file exactly. */
#include "gguf_internal.h"
#include "mope/io.h"

#include <inttypes.h>
#include <stdlib.h>

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *raw;
    size_t raw_len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[MOPE_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

struct mope_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

mope_gguf_writer *mope_gguf_writer_new(void) { return calloc(1, sizeof(mope_gguf_writer)); }

void mope_gguf_writer_free(mope_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].raw);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Takes ownership of raw (freed on failure too). */
static int set_owned(mope_gguf_writer *w, const char *key, uint32_t type, uint8_t *raw, size_t raw_len) {
    if (!w || !key || !*key) {
        free(raw);
        return MOPE_EINVAL;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].raw);
            w->kv[i].type = type;
            w->kv[i].raw = raw;
            w->kv[i].raw_len = raw_len;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            free(raw);
            return MOPE_ENOMEM;
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(raw);
        return MOPE_ENOMEM;
    }
    w->kv[w->n_kv++] = (wkv){k, type, raw, raw_len};
    return 0;
}

static int set_copy(mope_gguf_writer *w, const char *key, uint32_t type, const void *raw, size_t raw_len) {
    uint8_t *copy = malloc(raw_len ? raw_len : 1);
    if (!copy) return MOPE_ENOMEM;
    memcpy(copy, raw, raw_len);
    return set_owned(w, key, type, copy, raw_len);
}

int mope_gguf_set_u8(mope_gguf_writer *w, const char *key, uint8_t v) { return set_copy(w, key, MOPE_GGUF_U8, &v, 1); }
int mope_gguf_set_i8(mope_gguf_writer *w, const char *key, int8_t v) { return set_copy(w, key, MOPE_GGUF_I8, &v, 1); }
int mope_gguf_set_u16(mope_gguf_writer *w, const char *key, uint16_t v) { return set_copy(w, key, MOPE_GGUF_U16, &v, 2); }
int mope_gguf_set_i16(mope_gguf_writer *w, const char *key, int16_t v) { return set_copy(w, key, MOPE_GGUF_I16, &v, 2); }
int mope_gguf_set_u32(mope_gguf_writer *w, const char *key, uint32_t v) { return set_copy(w, key, MOPE_GGUF_U32, &v, 4); }
int mope_gguf_set_i32(mope_gguf_writer *w, const char *key, int32_t v) { return set_copy(w, key, MOPE_GGUF_I32, &v, 4); }
int mope_gguf_set_u64(mope_gguf_writer *w, const char *key, uint64_t v) { return set_copy(w, key, MOPE_GGUF_U64, &v, 8); }
int mope_gguf_set_i64(mope_gguf_writer *w, const char *key, int64_t v) { return set_copy(w, key, MOPE_GGUF_I64, &v, 8); }
int mope_gguf_set_f32(mope_gguf_writer *w, const char *key, float v) { return set_copy(w, key, MOPE_GGUF_F32, &v, 4); }
int mope_gguf_set_f64(mope_gguf_writer *w, const char *key, double v) { return set_copy(w, key, MOPE_GGUF_F64, &v, 8); }

int mope_gguf_set_bool(mope_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return set_copy(w, key, MOPE_GGUF_BOOL, &b, 1);
}

int mope_gguf_set_strn(mope_gguf_writer *w, const char *key, const char *v, size_t len) {
    if (!v && len) return MOPE_EINVAL;
    if (len > SIZE_MAX - 8) return MOPE_ENOMEM;
    uint8_t *raw = malloc(8 + len);
    if (!raw) return MOPE_ENOMEM;
    uint64_t l = len;
    memcpy(raw, &l, 8);
    if (len) memcpy(raw + 8, v, len);
    return set_owned(w, key, MOPE_GGUF_STRING, raw, 8 + len);
}

int mope_gguf_set_str(mope_gguf_writer *w, const char *key, const char *v) {
    if (!v) return MOPE_EINVAL;
    return mope_gguf_set_strn(w, key, v, strlen(v));
}

int mope_gguf_set_arr(mope_gguf_writer *w, const char *key, mope_gguf_type elem_type, const void *data, uint64_t n) {
    size_t es = mope_gguf_type_size(elem_type);
    if (es == 0 || (!data && n)) return MOPE_EINVAL; /* strings and nested arrays have their own rules */
    if (n > (SIZE_MAX - 12) / es) return MOPE_ENOMEM;
    size_t len = 12 + (size_t)n * es;
    uint8_t *raw = malloc(len);
    if (!raw) return MOPE_ENOMEM;
    uint32_t et = (uint32_t)elem_type;
    memcpy(raw, &et, 4);
    memcpy(raw + 4, &n, 8);
    if (n) memcpy(raw + 12, data, (size_t)n * es);
    return set_owned(w, key, MOPE_GGUF_ARRAY, raw, len);
}

int mope_gguf_set_arr_str(mope_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                          uint64_t n) {
    if (!strs && n) return MOPE_EINVAL;
    size_t len = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i] && !(lens && lens[i] == 0)) return MOPE_EINVAL;
        size_t l = lens ? lens[i] : strlen(strs[i]);
        if (__builtin_add_overflow(len, l, &len) || __builtin_add_overflow(len, (size_t)8, &len)) return MOPE_ENOMEM;
    }
    uint8_t *raw = malloc(len);
    if (!raw) return MOPE_ENOMEM;
    uint32_t et = MOPE_GGUF_STRING;
    memcpy(raw, &et, 4);
    memcpy(raw + 4, &n, 8);
    size_t pos = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(strs[i]);
        memcpy(raw + pos, &l, 8);
        if (l) memcpy(raw + pos + 8, strs[i], (size_t)l);
        pos += 8 + (size_t)l;
    }
    return set_owned(w, key, MOPE_GGUF_ARRAY, raw, len);
}

int mope_gguf_copy_kv(mope_gguf_writer *w, const mope_gguf *g, const char *prefix_or_null) {
    if (!w || !g) return MOPE_EINVAL;
    size_t pl = prefix_or_null ? strlen(prefix_or_null) : 0;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (pl && strncmp(kv->key, prefix_or_null, pl) != 0) continue;
        int rc = set_copy(w, kv->key, kv->type, kv->raw, kv->raw_len);
        if (rc) return rc;
    }
    return 0;
}

int mope_gguf_add_tensor(mope_gguf_writer *w, const char *name, mope_type type, int n_dims, const int64_t *ne,
                         const void *data, mope_error *err) {
    if (!w) return mope_error_set(err, MOPE_EINVAL, "NULL writer");
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= 64)
        return mope_error_set(err, MOPE_EINVAL, "tensor name '%s' must be 1 to 63 bytes long", name ? name : "(null)");
    if (n_dims < 0 || n_dims > MOPE_GGUF_MAX_DIMS || (!ne && n_dims > 0))
        return mope_error_set(err, MOPE_EINVAL, "tensor '%s': n_dims %d is not in 0..%d", name, n_dims,
                              MOPE_GGUF_MAX_DIMS);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return mope_error_set(err, MOPE_EINVAL, "duplicate tensor name '%s'", name);
    wtensor t = {.type = (uint32_t)type, .n_dims = n_dims, .data = data};
    for (int d = 0; d < MOPE_GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    if (gguf_tensor_nbytes(t.type, n_dims, t.ne, NULL, &t.nbytes, err))
        return mope_error_prefix(err, "tensor '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    w->t[w->n_t++] = t;
    return 0;
}

/* ---- serialisation ---- */

typedef struct dynbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} dynbuf;

static void put(dynbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) { b->oom = true; return; }
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(dynbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(dynbuf *b, uint64_t v) { put(b, &v, 8); }

static size_t writer_alignment(const mope_gguf_writer *w, mope_error *err) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0) continue;
        if (w->kv[i].type != MOPE_GGUF_U32) {
            mope_error_set(err, MOPE_EINVAL, "general.alignment must be u32, not %s",
                           mope_gguf_type_name((mope_gguf_type)w->kv[i].type));
            return 0;
        }
        uint32_t a = gguf_rd_u32(w->kv[i].raw);
        if (a == 0 || (a & (a - 1))) {
            mope_error_set(err, MOPE_EINVAL, "general.alignment %" PRIu32 " is not a power of two", a);
            return 0;
        }
        return a;
    }
    return MOPE_GGUF_DEFAULT_ALIGNMENT;
}

static size_t pad_to(size_t n, size_t a) { return (a - n % a) % a; }

/* Header (kvs, tensor infos, padding) into *hdr; *data_bytes = size of the
 * padded data section. */
static int build_header(const mope_gguf_writer *w, dynbuf *hdr, size_t *align_out, size_t *data_bytes,
                        mope_error *err) {
    size_t align = writer_alignment(w, err);
    if (!align) return MOPE_EINVAL;
    put(hdr, "GGUF", 4);
    put_u32(hdr, 3);
    put_u64(hdr, w->n_t);
    put_u64(hdr, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        size_t kl = strlen(w->kv[i].key);
        put_u64(hdr, kl);
        put(hdr, w->kv[i].key, kl);
        put_u32(hdr, w->kv[i].type);
        put(hdr, w->kv[i].raw, w->kv[i].raw_len);
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        put_u64(hdr, nl);
        put(hdr, t->name, nl);
        put_u32(hdr, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(hdr, (uint64_t)t->ne[d]);
        put_u32(hdr, t->type);
        put_u64(hdr, off);
        /* ggml's reader expects tensor i exactly at the sum of the padded
         * sizes of the tensors before it. */
        size_t padded;
        if (__builtin_add_overflow(t->nbytes, pad_to(t->nbytes, align), &padded) ||
            __builtin_add_overflow(off, padded, &off))
            return mope_error_set(err, MOPE_ERANGE, "total tensor data size overflows");
    }
    static const uint8_t zeros[64];
    for (size_t p = pad_to(hdr->len, align); p > 0;) {
        size_t k = p < sizeof zeros ? p : sizeof zeros;
        put(hdr, zeros, k);
        p -= k;
    }
    if (hdr->oom) return mope_error_set(err, MOPE_ENOMEM, "out of memory building the GGUF header");
    *align_out = align;
    *data_bytes = off;
    return 0;
}

int mope_gguf_writer_to_memory(mope_gguf_writer *w, void **out, size_t *size, mope_error *err) {
    if (!w || !out || !size) return mope_error_set(err, MOPE_EINVAL, "NULL argument");
    dynbuf hdr = {0};
    size_t align, data_bytes, total;
    int rc = build_header(w, &hdr, &align, &data_bytes, err);
    if (rc) {
        free(hdr.p);
        return rc;
    }
    if (__builtin_add_overflow(hdr.len, data_bytes, &total)) {
        free(hdr.p);
        return mope_error_set(err, MOPE_ERANGE, "GGUF size overflows");
    }
    uint8_t *buf = calloc(1, total ? total : 1);
    if (!buf) {
        free(hdr.p);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory for a %zu-byte GGUF", total);
    }
    memcpy(buf, hdr.p, hdr.len);
    size_t pos = hdr.len;
    for (size_t i = 0; i < w->n_t; i++) {
        if (w->t[i].data && w->t[i].nbytes) memcpy(buf + pos, w->t[i].data, w->t[i].nbytes);
        pos += w->t[i].nbytes + pad_to(w->t[i].nbytes, align);
    }
    free(hdr.p);
    *out = buf;
    *size = total;
    return 0;
}

static int write_zeros(mope_io_atomic *f, size_t n, mope_error *err) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        int rc = mope_io_atomic_write(f, zeros, k, err);
        if (rc) return rc;
        n -= k;
    }
    return 0;
}

int mope_gguf_writer_write(mope_gguf_writer *w, const char *path, mope_error *err) {
    if (!w || !path) return mope_error_set(err, MOPE_EINVAL, "NULL argument");
    dynbuf hdr = {0};
    size_t align, data_bytes;
    int rc = build_header(w, &hdr, &align, &data_bytes, err);
    if (rc) {
        free(hdr.p);
        return rc;
    }
    /* Stream the tensors straight from the caller's buffers: a model need not
     * fit in memory twice. */
    mope_io_atomic *f = mope_io_atomic_open(path, err);
    if (!f) {
        free(hdr.p);
        return err ? err->code : MOPE_EIO;
    }
    rc = mope_io_atomic_write(f, hdr.p, hdr.len, err);
    free(hdr.p);
    for (size_t i = 0; i < w->n_t && !rc; i++) {
        const wtensor *t = &w->t[i];
        rc = t->data ? mope_io_atomic_write(f, t->data, t->nbytes, err) : write_zeros(f, t->nbytes, err);
        if (!rc) rc = write_zeros(f, pad_to(t->nbytes, align), err);
    }
    if (rc) {
        mope_io_atomic_abort(f);
        return rc;
    }
    return mope_io_atomic_commit(f, err);
}
