/* LoRA adapter files (llama.cpp's adapter GGUF convention) and merging an
 * adapter into a base model file.  Facts: ../shared/reference/GGUF_FACTS.md. */
#include "model/lora_internal.h"
#include "mope/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static bool str_is(const mope_gguf *g, const char *key, const char *want, mope_gguf_str *got) {
    if (mope_gguf_get_str(g, key, got) != 0) {
        got->ptr = NULL;
        got->len = 0;
        return false;
    }
    return got->len == strlen(want) && memcmp(got->ptr, want, got->len) == 0;
}

static bool ends_with(const char *s, const char *suffix, size_t *stem) {
    size_t n = strlen(s), k = strlen(suffix);
    *stem = n >= k ? n - k : 0;
    return n > k && strcmp(s + n - k, suffix) == 0;
}

static int shape_str(const mope_gguf_tensor *t, char *buf, size_t n) {
    int len = snprintf(buf, n, "[");
    for (int d = 0; d < t->n_dims && len < (int)n; d++)
        len += snprintf(buf + len, n - (size_t)len, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (len < (int)n) snprintf(buf + len, n - (size_t)len, "]");
    return 0;
}

/* Copies a tensor's values to f32 (the file's bytes may be misaligned). */
static float *to_f32(const mope_gguf_tensor *t, mope_error *err) {
    if (t->type != MOPE_TYPE_F32 && t->type != MOPE_TYPE_F16 && t->type != MOPE_TYPE_BF16) {
        mope_error_set(err, MOPE_EUNSUPPORTED, "tensor '%s' has type %s; LoRA tensors must be f32, f16 or bf16",
                       t->name, mope_type_name(t->type));
        return NULL;
    }
    size_t n = (size_t)t->n_elements;
    float *out = mope_alloc(n ? n : 1, sizeof(float));
    void *tmp = mope_alloc(t->nbytes ? t->nbytes : 1, 1);
    if (!out || !tmp) {
        mope_free(out);
        mope_free(tmp);
        mope_error_set(err, MOPE_ENOMEM, "out of memory reading '%s'", t->name);
        return NULL;
    }
    memcpy(tmp, t->data, t->nbytes);
    mope_dequantize_row(t->type, tmp, out, (int64_t)n);
    mope_free(tmp);
    return out;
}

/* Reads the pair <stem>.lora_a / .lora_b into l. */
static int load_pair(mope_lora *l, const mope_gguf *g, const mope_gguf_tensor *ta, const char *stem,
                     mope_error *err) {
    char bname[80];
    snprintf(bname, sizeof bname, "%s.lora_b", stem);
    const mope_gguf_tensor *tb = mope_gguf_find_tensor(g, bname);
    if (!tb)
        return mope_error_set(err, MOPE_EFORMAT, "'%s' has no matching '%s' (both halves are required)", ta->name,
                              bname);
    char sa[96], sb[96];
    shape_str(ta, sa, sizeof sa);
    shape_str(tb, sb, sizeof sb);
    const mope_gguf_tensor *both[2] = {ta, tb};
    for (int i = 0; i < 2; i++)
        if (both[i]->n_dims > 2 || both[i]->ne[2] != 1 || both[i]->ne[3] != 1)
            return mope_error_set(err, MOPE_EFORMAT, "LoRA tensor '%s' has %d dimensions (2 expected)", both[i]->name,
                                  both[i]->n_dims);
    bool embd = strcmp(stem, "token_embd.weight") == 0;
    /* usual: a.ne = [n_in, r], b.ne = [r, n_out]; token_embd: a.ne = [r, n_vocab], b.ne = [r, n_embd] */
    int64_t ra = embd ? ta->ne[0] : ta->ne[1], rb = tb->ne[0];
    int64_t n_in = embd ? tb->ne[1] : ta->ne[0], n_out = embd ? ta->ne[1] : tb->ne[1];
    if (ra != rb)
        return mope_error_set(err, MOPE_EFORMAT, "LoRA ranks of '%s' disagree: lora_a %s, lora_b %s%s", stem, sa, sb,
                              embd ? " (token_embd: lora_a [r, n_vocab], lora_b [r, n_embd])"
                                   : " (lora_a [n_in, r], lora_b [r, n_out])");
    if (ra < 1) return mope_error_set(err, MOPE_EFORMAT, "LoRA tensor '%s' has rank 0 (lora_a %s)", stem, sa);
    if (ra > 65536 || n_in < 1 || n_out < 1)
        return mope_error_set(err, MOPE_EFORMAT, "LoRA tensor '%s' has a bad shape: lora_a %s, lora_b %s", stem, sa,
                              sb);
    float *a = to_f32(ta, err), *b = a ? to_f32(tb, err) : NULL;
    if (!a || !b) {
        mope_free(a);
        return err ? err->code : MOPE_EFORMAT;
    }
    int rc;
    if (embd) {
        /* B (n_vocab rows of r) is the file's lora_a as is; A is lora_b transposed */
        float *at = mope_alloc((size_t)ra * (size_t)n_in, sizeof(float));
        if (!at) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        } else {
            for (int64_t j = 0; j < n_in; j++)
                for (int64_t k = 0; k < ra; k++) at[k * n_in + j] = b[j * ra + k];
            rc = mope_lora_add(l, stem, n_in, n_out, (int)ra, at, a, err);
        }
        mope_free(at);
    } else {
        rc = mope_lora_add(l, stem, n_in, n_out, (int)ra, a, b, err);
    }
    mope_free(a);
    mope_free(b);
    return rc < 0 ? rc : 0;
}

mope_lora *mope_lora_from_gguf(const mope_gguf *g, const mope_model *base, mope_error *err) {
    mope_gguf_str s;
    if (!str_is(g, "general.type", "adapter", &s)) {
        mope_error_set(err, MOPE_EFORMAT, "not a LoRA adapter: general.type is %s%.*s%s (expected 'adapter')",
                       s.ptr ? "'" : "missing", (int)(s.len > 40 ? 40 : s.len), s.ptr ? s.ptr : "", s.ptr ? "'" : "");
        return NULL;
    }
    if (!str_is(g, "adapter.type", "lora", &s)) {
        mope_error_set(err, MOPE_EUNSUPPORTED, "adapter.type is %s%.*s%s (only 'lora' is supported)",
                       s.ptr ? "'" : "missing", (int)(s.len > 40 ? 40 : s.len), s.ptr ? s.ptr : "", s.ptr ? "'" : "");
        return NULL;
    }
    if (mope_gguf_get_str(g, "general.architecture", &s) != 0 || s.len == 0 || s.len >= 32) {
        mope_error_set(err, MOPE_EFORMAT, "adapter: missing or bad general.architecture");
        return NULL;
    }
    char arch[32];
    memcpy(arch, s.ptr, s.len);
    arch[s.len] = 0;
    double alpha = 0;
    int rc = mope_gguf_get_f64(g, "adapter.lora.alpha", &alpha);
    if (rc == -1) alpha = 0;
    else if (rc < 0 || !(alpha >= 0) || !isfinite(alpha) || alpha > 1e30) {
        mope_error_set(err, MOPE_EFORMAT, "adapter.lora.alpha is not a finite number >= 0");
        return NULL;
    }
    mope_lora *l = mope_lora_new(arch, (float)alpha, err);
    if (!l) return NULL;
    int64_t nt = mope_gguf_n_tensors(g);
    rc = 0;
    for (int64_t i = 0; i < nt && !rc; i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        size_t stem;
        char base_name[64];
        if (ends_with(t->name, ".lora_a", &stem)) {
            snprintf(base_name, sizeof base_name, "%.*s", (int)stem, t->name);
            rc = load_pair(l, g, t, base_name, err);
        } else if (ends_with(t->name, ".lora_b", &stem)) {
            snprintf(base_name, sizeof base_name, "%.*s.lora_a", (int)stem, t->name);
            if (!mope_gguf_find_tensor(g, base_name))
                rc = mope_error_set(err, MOPE_EFORMAT, "'%s' has no matching '%s' (both halves are required)",
                                    t->name, base_name);
        } else {
            rc = mope_error_set(err, MOPE_EFORMAT,
                                "unexpected tensor '%s' in a LoRA adapter (names end in .lora_a / .lora_b)", t->name);
        }
    }
    if (!rc && l->n == 0) rc = mope_error_set(err, MOPE_EFORMAT, "the adapter has no tensors");
    if (!rc && base) rc = mope_lora_check(l, base, err);
    if (rc) {
        mope_lora_free(l);
        return NULL;
    }
    return l;
}

mope_lora *mope_lora_load(const char *path, const mope_model *base, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    mope_lora *l = g ? mope_lora_from_gguf(g, base, err) : NULL;
    mope_gguf_close(g);
    if (!l) mope_error_prefix(err, "loading adapter %s", path);
    return l;
}

int mope_lora_save(const mope_lora *l, const char *path, mope_error *err) {
    if (!l || !path) return mope_error_set(err, MOPE_EINVAL, "lora save: NULL argument");
    mope_gguf_writer *w = mope_gguf_writer_new();
    float **tmp = calloc((size_t)l->n + 1, sizeof *tmp);
    int rc = 0;
    if (!w || !tmp) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    if (mope_gguf_set_str(w, "general.architecture", l->arch) || mope_gguf_set_str(w, "general.type", "adapter") ||
        mope_gguf_set_str(w, "adapter.type", "lora") || mope_gguf_set_f32(w, "adapter.lora.alpha", l->alpha)) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < l->n && !rc; i++) {
        const mope_lora_tensor *t = &l->t[i];
        char na[80], nb[80];
        snprintf(na, sizeof na, "%s.lora_a", t->name);
        snprintf(nb, sizeof nb, "%s.lora_b", t->name);
        if (strcmp(t->name, "token_embd.weight") == 0) {
            /* the exception layout: lora_a = B (n_vocab rows of r), lora_b = A transposed */
            float *bt = tmp[i] = mope_alloc((size_t)t->rank * (size_t)t->n_in, sizeof(float));
            if (!bt) {
                rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                break;
            }
            for (int64_t j = 0; j < t->n_in; j++)
                for (int k = 0; k < t->rank; k++) bt[j * t->rank + k] = t->a[(int64_t)k * t->n_in + j];
            const int64_t nea[2] = {t->rank, t->n_out}, neb[2] = {t->rank, t->n_in};
            if ((rc = mope_gguf_add_tensor(w, na, MOPE_TYPE_F32, 2, nea, t->b, err)) ||
                (rc = mope_gguf_add_tensor(w, nb, MOPE_TYPE_F32, 2, neb, bt, err)))
                break;
        } else {
            const int64_t nea[2] = {t->n_in, t->rank}, neb[2] = {t->rank, t->n_out};
            if ((rc = mope_gguf_add_tensor(w, na, MOPE_TYPE_F32, 2, nea, t->a, err)) ||
                (rc = mope_gguf_add_tensor(w, nb, MOPE_TYPE_F32, 2, neb, t->b, err)))
                break;
        }
    }
    if (!rc) rc = mope_gguf_writer_write(w, path, err);
done:
    if (tmp)
        for (int i = 0; i < l->n; i++) mope_free(tmp[i]);
    free(tmp);
    mope_gguf_writer_free(w);
    if (rc) mope_error_prefix(err, "saving adapter %s", path);
    return rc;
}

int mope_lora_merge(const mope_model *base, const mope_lora *l, float user_scale, mope_type wtype, const char *path,
                    mope_error *err) {
    if (!base || !l || !path) return mope_error_set(err, MOPE_EINVAL, "lora merge: NULL argument");
    if (wtype != MOPE_TYPE_F32 && wtype != MOPE_TYPE_F16 && wtype != MOPE_TYPE_BF16)
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "lora merge: merged weights are stored as f32, f16 or bf16, not %s",
                              mope_type_name(wtype));
    if (!isfinite(user_scale)) return mope_error_set(err, MOPE_EINVAL, "lora merge: scale is not finite");
    int rc = mope_lora_check(l, base, err);
    if (rc) return rc;
    const mope_gguf *g = base->g;
    mope_gguf_writer *w = mope_gguf_writer_new();
    void **bufs = calloc((size_t)l->n + 1, sizeof *bufs);
    float *row = NULL;
    if (!w || !bufs) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = mope_gguf_copy_kv(w, g, NULL))) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory copying the base's keys");
        goto done;
    }
    int nb = 0;
    for (int64_t i = 0; i < mope_gguf_n_tensors(g) && !rc; i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        const mope_lora_tensor *lt = mope_lora_find(l, t->name);
        if (!lt) {
            rc = mope_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err);
            continue;
        }
        /* W' = W + s B A, row by row in f32 */
        int64_t n_in = lt->n_in, n_out = lt->n_out;
        size_t rb = mope_row_size(t->type, n_in), ob = mope_row_size(wtype, n_in);
        char *dst = bufs[nb++] = mope_alloc((size_t)n_out, ob);
        if (!row) { /* one row buffer, as wide as the widest adapted matrix */
            int64_t wmax = 1;
            for (int j = 0; j < l->n; j++) wmax = l->t[j].n_in > wmax ? l->t[j].n_in : wmax;
            row = mope_alloc((size_t)wmax, sizeof(float));
        }
        if (!dst || !row) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory merging '%s'", t->name);
            break;
        }
        float s = mope_lora_scale(l, lt, user_scale);
        for (int64_t o = 0; o < n_out && !rc; o++) {
            if (mope_dequantize_row(t->type, (const char *)t->data + (size_t)o * rb, row, n_in) != 0) {
                rc = mope_error_set(err, MOPE_EUNSUPPORTED, "cannot convert '%s' (%s)", t->name,
                                    mope_type_name(t->type));
                break;
            }
            for (int k = 0; k < lt->rank; k++)
                mope_axpy_f32(row, s * lt->b[o * lt->rank + k], lt->a + (size_t)k * (size_t)n_in, n_in);
            if (wtype == MOPE_TYPE_F32) memcpy(dst + (size_t)o * ob, row, ob);
            else if (mope_quantize_row(wtype, row, dst + (size_t)o * ob, n_in) != 0)
                rc = mope_error_set(err, MOPE_EINVAL, "merging '%s': a merged value is not finite", t->name);
        }
        if (!rc) rc = mope_gguf_add_tensor(w, t->name, wtype, t->n_dims, t->ne, dst, err);
    }
    if (!rc) rc = mope_gguf_writer_write(w, path, err);
done:
    if (bufs)
        for (int i = 0; i < l->n; i++) mope_free(bufs[i]);
    free(bufs);
    mope_free(row);
    mope_gguf_writer_free(w);
    if (rc) mope_error_prefix(err, "merging into %s", path);
    return rc;
}
