/* Read accessors of a parsed GGUF.  The parser validated every index and
 * span, so these only guard against caller mistakes (bad index, wrong type). */
#include "gguf_internal.h"

uint32_t mope_gguf_version(const mope_gguf *g) { return g ? g->version : 0; }
size_t mope_gguf_alignment(const mope_gguf *g) { return g ? g->alignment : 0; }
size_t mope_gguf_data_offset(const mope_gguf *g) { return g ? g->data_offset : 0; }

const void *mope_gguf_base(const mope_gguf *g, size_t *size) {
    if (size) *size = g ? g->size : 0;
    return g ? g->base : NULL;
}

int64_t mope_gguf_n_kv(const mope_gguf *g) { return g ? g->n_kv : 0; }

static const gguf_kv *kv_at(const mope_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

const char *mope_gguf_kv_key(const mope_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

mope_gguf_type mope_gguf_kv_type(const mope_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? (mope_gguf_type)kv->type : (mope_gguf_type)-1;
}

int64_t mope_gguf_find_key(const mope_gguf *g, const char *key) {
    return g ? gguf_hash_find(g->kv_hash, g->kv_hash_cap, key, gguf_kv_name_of, g) : -1;
}

static bool is_int_type(uint32_t t) {
    return t == MOPE_GGUF_U8 || t == MOPE_GGUF_I8 || t == MOPE_GGUF_U16 || t == MOPE_GGUF_I16 ||
           t == MOPE_GGUF_U32 || t == MOPE_GGUF_I32 || t == MOPE_GGUF_U64 || t == MOPE_GGUF_I64 ||
           t == MOPE_GGUF_BOOL;
}

int mope_gguf_get_i64(const mope_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = kv_at(g, mope_gguf_find_key(g, key));
    if (!kv) return -1;
    if (!is_int_type(kv->type)) return MOPE_EFORMAT;
    if (kv->type == MOPE_GGUF_U64 && gguf_rd_u64(kv->raw) > (uint64_t)INT64_MAX) return MOPE_EFORMAT;
    *out = mope_gguf_arr_i64((mope_gguf_type)kv->type, kv->raw, 0);
    return 0;
}

int mope_gguf_get_u64(const mope_gguf *g, const char *key, uint64_t *out) {
    const gguf_kv *kv = kv_at(g, mope_gguf_find_key(g, key));
    if (!kv) return -1;
    if (!is_int_type(kv->type)) return MOPE_EFORMAT;
    if (kv->type == MOPE_GGUF_U64) {
        *out = gguf_rd_u64(kv->raw);
        return 0;
    }
    int64_t v = mope_gguf_arr_i64((mope_gguf_type)kv->type, kv->raw, 0);
    if (v < 0) return MOPE_EFORMAT;
    *out = (uint64_t)v;
    return 0;
}

int mope_gguf_get_f64(const mope_gguf *g, const char *key, double *out) {
    const gguf_kv *kv = kv_at(g, mope_gguf_find_key(g, key));
    if (!kv) return -1;
    if (!is_int_type(kv->type) && kv->type != MOPE_GGUF_F32 && kv->type != MOPE_GGUF_F64) return MOPE_EFORMAT;
    *out = mope_gguf_arr_f64((mope_gguf_type)kv->type, kv->raw, 0);
    return 0;
}

int mope_gguf_get_bool(const mope_gguf *g, const char *key, bool *out) {
    const gguf_kv *kv = kv_at(g, mope_gguf_find_key(g, key));
    if (!kv) return -1;
    if (kv->type != MOPE_GGUF_BOOL) return MOPE_EFORMAT;
    *out = kv->raw[0] != 0;
    return 0;
}

int mope_gguf_get_str(const mope_gguf *g, const char *key, mope_gguf_str *out) {
    int64_t i = mope_gguf_find_key(g, key);
    if (i < 0) return -1;
    if (g->kv[i].type != MOPE_GGUF_STRING) return MOPE_EFORMAT;
    *out = mope_gguf_kv_str(g, i);
    return 0;
}

int mope_gguf_kv_arr(const mope_gguf *g, int64_t i, mope_gguf_type *elem_type, uint64_t *n, const void **data) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return -1;
    if (kv->type != MOPE_GGUF_ARRAY) return MOPE_EFORMAT;
    if (elem_type) *elem_type = (mope_gguf_type)kv->elem_type;
    if (n) *n = kv->n;
    if (data) *data = kv->elems;
    return 0;
}

int mope_gguf_get_arr(const mope_gguf *g, const char *key, mope_gguf_type *elem_type, uint64_t *n,
                      const void **data) {
    int64_t i = mope_gguf_find_key(g, key);
    if (i < 0) return -1;
    return mope_gguf_kv_arr(g, i, elem_type, n, data);
}

mope_gguf_str mope_gguf_arr_str(const mope_gguf *g, int64_t i, uint64_t j) {
    mope_gguf_str s = {NULL, 0};
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != MOPE_GGUF_ARRAY || kv->elem_type != MOPE_GGUF_STRING || j >= kv->n) return s;
    s.len = gguf_rd_u64(kv->str_elems[j]);
    s.ptr = (const char *)kv->str_elems[j] + 8;
    return s;
}

mope_gguf_str mope_gguf_kv_str(const mope_gguf *g, int64_t i) {
    mope_gguf_str s = {NULL, 0};
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != MOPE_GGUF_STRING) return s;
    s.len = gguf_rd_u64(kv->raw);
    s.ptr = (const char *)kv->raw + 8;
    return s;
}

double mope_gguf_kv_f64(const mope_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || !(is_int_type(kv->type) || kv->type == MOPE_GGUF_F32 || kv->type == MOPE_GGUF_F64)) return 0;
    return mope_gguf_arr_f64((mope_gguf_type)kv->type, kv->raw, 0);
}

int64_t mope_gguf_kv_i64(const mope_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || !(is_int_type(kv->type) || kv->type == MOPE_GGUF_F32 || kv->type == MOPE_GGUF_F64)) return 0;
    return mope_gguf_arr_i64((mope_gguf_type)kv->type, kv->raw, 0);
}

int64_t mope_gguf_n_tensors(const mope_gguf *g) { return g ? g->n_tensors : 0; }

const mope_gguf_tensor *mope_gguf_tensor_at(const mope_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const mope_gguf_tensor *mope_gguf_find_tensor(const mope_gguf *g, const char *name) {
    if (!g) return NULL;
    return mope_gguf_tensor_at(g, gguf_hash_find(g->t_hash, g->t_hash_cap, name, gguf_tensor_name_of, g));
}
