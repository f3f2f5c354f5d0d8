/* GGUF v3 reader (mmap, fully validated) and writer (atomic).
 *
 * Everything read from a file is checked before use: counts, string lengths,
 * value types, offsets, tensor shapes and sizes (with overflow checks), and
 * every tensor's bytes lying inside the file.  A bad file yields NULL and an
 * error naming what is wrong; never a crash, a hang or a huge allocation.
 * Layout facts: ../shared/reference/GGUF_FACTS.md §1. */
#ifndef MOPE_GGUF_H
#define MOPE_GGUF_H

#include "mope/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mope_gguf_type {
    MOPE_GGUF_U8 = 0,
    MOPE_GGUF_I8 = 1,
    MOPE_GGUF_U16 = 2,
    MOPE_GGUF_I16 = 3,
    MOPE_GGUF_U32 = 4,
    MOPE_GGUF_I32 = 5,
    MOPE_GGUF_F32 = 6,
    MOPE_GGUF_BOOL = 7,
    MOPE_GGUF_STRING = 8,
    MOPE_GGUF_ARRAY = 9,
    MOPE_GGUF_U64 = 10,
    MOPE_GGUF_I64 = 11,
    MOPE_GGUF_F64 = 12,
} mope_gguf_type;

#define MOPE_GGUF_DEFAULT_ALIGNMENT 32
#define MOPE_GGUF_MAX_DIMS 4

typedef struct mope_gguf mope_gguf;

typedef struct mope_gguf_tensor {
    const char *name;      /* NUL-terminated copy */
    mope_type type;
    int n_dims;
    int64_t ne[MOPE_GGUF_MAX_DIMS]; /* ne[0] is contiguous; unused dims are 1 */
    int64_t n_elements;
    uint64_t offset;       /* relative to the data section */
    size_t nbytes;
    const void *data;      /* points into the mapping */
} mope_gguf_tensor;

/* A borrowed string: bytes are not NUL-terminated (they point into the file). */
typedef struct mope_gguf_str {
    const char *ptr;
    uint64_t len;
} mope_gguf_str;

/* ---- reading ---- */
mope_gguf *mope_gguf_open(const char *path, mope_error *err);
/* Parse a buffer that stays owned by the caller and must outlive the handle
 * (used by the fuzz harness and tests). */
mope_gguf *mope_gguf_open_memory(const void *data, size_t size, mope_error *err);
void mope_gguf_close(mope_gguf *g);

uint32_t mope_gguf_version(const mope_gguf *g);
size_t mope_gguf_alignment(const mope_gguf *g);
size_t mope_gguf_data_offset(const mope_gguf *g); /* absolute offset of the data section */
const void *mope_gguf_base(const mope_gguf *g, size_t *size); /* whole file */

/* Key/value pairs, in file order. */
int64_t mope_gguf_n_kv(const mope_gguf *g);
const char *mope_gguf_kv_key(const mope_gguf *g, int64_t i);   /* NUL-terminated */
mope_gguf_type mope_gguf_kv_type(const mope_gguf *g, int64_t i); /* (mope_gguf_type)-1 for a bad index */
int64_t mope_gguf_find_key(const mope_gguf *g, const char *key); /* -1 if absent */

/* Typed getters by key.  Return 0 when found and converted, -1 when the key
 * is absent, MOPE_EFORMAT when the key exists with an incompatible type or a
 * value that does not fit.  get_i64 accepts every
 * integer type (and bool); get_f64 accepts f32, f64 and integers. */
int mope_gguf_get_i64(const mope_gguf *g, const char *key, int64_t *out);
int mope_gguf_get_u64(const mope_gguf *g, const char *key, uint64_t *out);
int mope_gguf_get_f64(const mope_gguf *g, const char *key, double *out);
int mope_gguf_get_bool(const mope_gguf *g, const char *key, bool *out);
int mope_gguf_get_str(const mope_gguf *g, const char *key, mope_gguf_str *out);

/* Arrays.  For numeric element types *data points at the packed elements in
 * the file (possibly unaligned: read with memcpy or the helpers below).
 * For string arrays *data points at the first element's length prefix; use
 * mope_gguf_arr_str (O(1) per element) instead. */
int mope_gguf_get_arr(const mope_gguf *g, const char *key, mope_gguf_type *elem_type, uint64_t *n,
                      const void **data);
/* Element i of the array value of kv index kv (element type must be string);
 * {NULL, 0} for a bad index or another type. */
mope_gguf_str mope_gguf_arr_str(const mope_gguf *g, int64_t kv, uint64_t i);
/* Scalar value of kv i / array element access by kv index. */
int mope_gguf_kv_arr(const mope_gguf *g, int64_t kv, mope_gguf_type *elem_type, uint64_t *n, const void **data);
mope_gguf_str mope_gguf_kv_str(const mope_gguf *g, int64_t kv); /* for a STRING kv */
/* Numeric scalar kv as double / int64 (0 when of another type; floats are
 * truncated toward zero and saturate, u64 above INT64_MAX saturates). */
double mope_gguf_kv_f64(const mope_gguf *g, int64_t kv);
int64_t mope_gguf_kv_i64(const mope_gguf *g, int64_t kv);
/* Element i of a numeric array converted to double / int64 (no bounds
 * check: i < n from mope_gguf_get_arr). */
double mope_gguf_arr_f64(mope_gguf_type elem_type, const void *data, uint64_t i);
int64_t mope_gguf_arr_i64(mope_gguf_type elem_type, const void *data, uint64_t i);
size_t mope_gguf_type_size(mope_gguf_type t); /* 0 for string/array */
const char *mope_gguf_type_name(mope_gguf_type t);

/* Tensors, in file order. */
int64_t mope_gguf_n_tensors(const mope_gguf *g);
const mope_gguf_tensor *mope_gguf_tensor_at(const mope_gguf *g, int64_t i);
const mope_gguf_tensor *mope_gguf_find_tensor(const mope_gguf *g, const char *name); /* NULL if absent */

/* ---- writing ----
 * Values are copied when set.  Tensor data is referenced, not copied: it must
 * stay valid until mope_gguf_writer_write returns.  Setting a key that exists
 * replaces it (keeps its position).  The setters return 0, MOPE_EINVAL (NULL
 * or empty key, string/array element type in set_arr) or MOPE_ENOMEM.
 * Tensors are laid out in the order added, each padded to the alignment
 * (general.alignment if set -- it must then be a u32 power of two, else
 * writing fails -- or 32), as ggml's reader expects.  The file is written to
 * PATH.tmp.XXXXXX in the same directory, fsync'ed and renamed into place.
 * A file read with mope_gguf_open and copied with copy_kv + add_tensor is
 * written back byte for byte. */
typedef struct mope_gguf_writer mope_gguf_writer;

mope_gguf_writer *mope_gguf_writer_new(void);
void mope_gguf_writer_free(mope_gguf_writer *w);
int mope_gguf_set_u8(mope_gguf_writer *w, const char *key, uint8_t v);
int mope_gguf_set_i8(mope_gguf_writer *w, const char *key, int8_t v);
int mope_gguf_set_u16(mope_gguf_writer *w, const char *key, uint16_t v);
int mope_gguf_set_i16(mope_gguf_writer *w, const char *key, int16_t v);
int mope_gguf_set_u32(mope_gguf_writer *w, const char *key, uint32_t v);
int mope_gguf_set_i32(mope_gguf_writer *w, const char *key, int32_t v);
int mope_gguf_set_u64(mope_gguf_writer *w, const char *key, uint64_t v);
int mope_gguf_set_i64(mope_gguf_writer *w, const char *key, int64_t v);
int mope_gguf_set_f32(mope_gguf_writer *w, const char *key, float v);
int mope_gguf_set_f64(mope_gguf_writer *w, const char *key, double v);
int mope_gguf_set_bool(mope_gguf_writer *w, const char *key, bool v);
int mope_gguf_set_str(mope_gguf_writer *w, const char *key, const char *v);
int mope_gguf_set_strn(mope_gguf_writer *w, const char *key, const char *v, size_t len);
/* Numeric array: n packed elements of elem_type (copied). */
int mope_gguf_set_arr(mope_gguf_writer *w, const char *key, mope_gguf_type elem_type, const void *data, uint64_t n);
/* String array; lens may be NULL for NUL-terminated strings. */
int mope_gguf_set_arr_str(mope_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                          uint64_t n);
/* Copy every kv from a reader (e.g. to carry a tokenizer into a new model). */
int mope_gguf_copy_kv(mope_gguf_writer *w, const mope_gguf *g, const char *prefix_or_null);
/* name: 1..63 bytes, unique; n_dims 0..4; ne[0] a multiple of the type's
 * block size.  data (nbytes of the shape) may be NULL: zeros are written. */
int mope_gguf_add_tensor(mope_gguf_writer *w, const char *name, mope_type type, int n_dims, const int64_t *ne,
                         const void *data, mope_error *err);
int mope_gguf_writer_write(mope_gguf_writer *w, const char *path, mope_error *err);
/* Serialise into a malloc'd buffer (tests, fuzz seeds). */
int mope_gguf_writer_to_memory(mope_gguf_writer *w, void **out, size_t *size, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
