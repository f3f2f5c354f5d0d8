/* libFuzzer harness for the GGUF reader: parse the input from memory and walk
 * every kv, array element and tensor, trapping if anything the handle
 * describes lies outside the input.  Crashes, hangs, leaks, OOB reads and
 * UB are reported by libFuzzer + ASan + UBSan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mope/gguf.h"

static int inside(const uint8_t *lo, const uint8_t *hi, const void *p, uint64_t n) {
    const uint8_t *q = p;
    return q >= lo && q <= hi && n <= (uint64_t)(hi - q);
}

#define CHECK(c) \
    do { \
        if (!(c)) __builtin_trap(); \
    } while (0)

static volatile uint64_t sink;
static volatile double dsink;

static void walk(const mope_gguf *g, const uint8_t *buf, size_t size) {
    const uint8_t *end = buf + size;
    size_t align = mope_gguf_alignment(g);
    CHECK(align && !(align & (align - 1)) && mope_gguf_data_offset(g) % align == 0);
    for (int64_t i = 0; i < mope_gguf_n_kv(g); i++) {
        const char *key = mope_gguf_kv_key(g, i);
        CHECK(key && key[0] && mope_gguf_find_key(g, key) == i);
        mope_gguf_type t = mope_gguf_kv_type(g, i);
        int64_t iv;
        uint64_t uv;
        double dv;
        bool bv;
        mope_gguf_str s;
        /* Every typed getter on every key: must not misread any type. */
        sink += (uint64_t)mope_gguf_get_i64(g, key, &iv) + (uint64_t)mope_gguf_get_u64(g, key, &uv) +
                (uint64_t)mope_gguf_get_f64(g, key, &dv) + (uint64_t)mope_gguf_get_bool(g, key, &bv);
        if (mope_gguf_get_str(g, key, &s) == 0) CHECK(inside(buf, end, s.ptr, s.len));
        if (t == MOPE_GGUF_ARRAY) {
            mope_gguf_type et;
            uint64_t n;
            const void *data;
            CHECK(mope_gguf_kv_arr(g, i, &et, &n, &data) == 0);
            if (et == MOPE_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    s = mope_gguf_arr_str(g, i, j);
                    CHECK(inside(buf, end, s.ptr, s.len));
                    if (s.len) sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
                }
            } else {
                size_t es = mope_gguf_type_size(et);
                CHECK(es && n <= size / es && inside(buf, end, data, n * es));
                for (uint64_t j = 0; j < n; j++) {
                    sink += (uint64_t)mope_gguf_arr_i64(et, data, j);
                    dsink += mope_gguf_arr_f64(et, data, j);
                }
            }
        } else {
            sink += (uint64_t)mope_gguf_kv_i64(g, i);
            dsink += mope_gguf_kv_f64(g, i);
        }
    }
    for (int64_t i = 0; i < mope_gguf_n_tensors(g); i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        CHECK(t && mope_gguf_find_tensor(g, t->name) == t && strlen(t->name) < 64);
        CHECK(t->n_dims >= 0 && t->n_dims <= MOPE_GGUF_MAX_DIMS && t->offset % align == 0);
        CHECK(inside(buf, end, t->data, t->nbytes));
        if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mope_error err;
    mope_gguf *g = mope_gguf_open_memory(data, size, &err);
    if (!g) {
        CHECK(err.code < 0 && err.msg[0]);
        return 0;
    }
    walk(g, data, size);
    /* read -> write must succeed for anything the reader accepted (skipped
     * for huge alignments, whose padding alone would be gigabytes). */
    if (mope_gguf_alignment(g) > 4096) {
        mope_gguf_close(g);
        return 0;
    }
    mope_gguf_writer *w = mope_gguf_writer_new();
    CHECK(w && mope_gguf_copy_kv(w, g, NULL) == 0);
    for (int64_t i = 0; i < mope_gguf_n_tensors(g); i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        if (!t->name[0]) continue; /* the writer insists on non-empty names */
        CHECK(mope_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err) == 0);
    }
    void *out;
    size_t out_size;
    CHECK(mope_gguf_writer_to_memory(w, &out, &out_size, &err) == 0);
    mope_gguf *g2 = mope_gguf_open_memory(out, out_size, &err);
    CHECK(g2 != NULL && mope_gguf_n_kv(g2) == mope_gguf_n_kv(g));
    mope_gguf_close(g2);
    free(out);
    mope_gguf_writer_free(w);
    mope_gguf_close(g);
    return 0;
}
