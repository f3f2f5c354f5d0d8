/* LoRA adapter files in llama.cpp's convention (GGUF_FACTS.md §1 "LoRA
 * adapter GGUF") and the adapter part of trainer checkpoints. */
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int mope_train_model_lora_to_gguf(const mope_train_model *m, mope_gguf_writer *w, mope_error *err) {
    if (!m || !w) return mope_error_set(err, MOPE_EINVAL, "lora_to_gguf: NULL argument");
    const tlora *lo = m->lora;
    if (!lo) return mope_error_set(err, MOPE_ESTATE, "lora_to_gguf: the model has no LoRA adapter");
    int rc = 0;
    rc = rc ? rc : mope_gguf_set_str(w, "general.architecture", "llama");
    rc = rc ? rc : mope_gguf_set_str(w, "general.type", "adapter");
    rc = rc ? rc : mope_gguf_set_str(w, "adapter.type", "lora");
    rc = rc ? rc : mope_gguf_set_f32(w, "adapter.lora.alpha", lo->alpha);
    if (rc) return mope_error_set(err, rc, "cannot set the adapter's GGUF keys (%s)", mope_error_code_name(rc));
    for (int i = 0; i < lo->n_tensors; i++) {
        const mope_train_tensor *t = &lo->tensors[i];
        if ((rc = mope_gguf_add_tensor(w, t->name, MOPE_TYPE_F32, 2, t->ne, lo->params + t->offset, err))) return rc;
    }
    return 0;
}

int mope_train_model_lora_save(const mope_train_model *m, const char *path, mope_gguf_writer *w, mope_error *err) {
    mope_gguf_writer *own = w ? NULL : mope_gguf_writer_new();
    if (!w && !own) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int rc = mope_train_model_lora_to_gguf(m, w ? w : own, err);
    if (!rc) rc = mope_gguf_writer_write(w ? w : own, path, err);
    mope_gguf_writer_free(own);
    return rc;
}

/* ---- loading ---- */

static bool str_is(const mope_gguf *g, const char *key, const char *want, mope_gguf_str *got) {
    if (mope_gguf_get_str(g, key, got) != 0) {
        got->ptr = "(missing)";
        got->len = 9;
        return false;
    }
    return got->len == strlen(want) && !memcmp(got->ptr, want, got->len);
}

/* f32 copy of a F32 / F16 / BF16 tensor; non-finite values are an error. */
static int read_f32(const mope_gguf_tensor *s, float *dst, mope_error *err) {
    const uint8_t *src = s->data;
    size_t n = (size_t)s->n_elements;
    for (size_t i = 0; i < n; i++) {
        if (s->type == MOPE_TYPE_F32) {
            memcpy(&dst[i], src + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = s->type == MOPE_TYPE_F16 ? mope_f16_to_f32(h) : mope_bf16_to_f32(h);
        }
        if (!isfinite(dst[i])) return mope_error_set(err, MOPE_EFORMAT, "tensor %s holds a non-finite value", s->name);
    }
    return 0;
}

static int shape_err(const mope_gguf_tensor *s, int64_t e0, int64_t e1, mope_error *err) {
    return mope_error_set(err, MOPE_EFORMAT, "tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                          s->name, (long long)s->ne[0], (long long)s->ne[1], (long long)s->ne[2], (long long)s->ne[3],
                          (long long)e0, (long long)e1);
}

int mope_train_model_lora_from_gguf(mope_train_model *m, const mope_gguf *g, mope_error *err) {
    if (!m || !g) return mope_error_set(err, MOPE_EINVAL, "lora_from_gguf: NULL argument");
    if (m->lora) return mope_error_set(err, MOPE_ESTATE, "lora_from_gguf: the model already has a LoRA adapter");
    mope_gguf_str s;
    if (!str_is(g, "general.type", "adapter", &s))
        return mope_error_set(err, MOPE_EFORMAT, "general.type is '%.*s', not 'adapter'", (int)(s.len > 64 ? 64 : s.len),
                              s.ptr);
    if (!str_is(g, "adapter.type", "lora", &s))
        return mope_error_set(err, MOPE_EUNSUPPORTED, "adapter.type is '%.*s', not 'lora'",
                              (int)(s.len > 64 ? 64 : s.len), s.ptr);
    if (!str_is(g, "general.architecture", "llama", &s))
        return mope_error_set(err, MOPE_EUNSUPPORTED, "adapter architecture '%.*s' does not match the model's 'llama'",
                              (int)(s.len > 64 ? 64 : s.len), s.ptr);
    double alpha = 0; /* absent: llama.cpp's default, scale 1 */
    int rc = mope_gguf_get_f64(g, "adapter.lora.alpha", &alpha);
    if (rc > 0 || rc == MOPE_EFORMAT || (rc == 0 && (!(alpha >= 0) || !isfinite(alpha) || alpha > 1e30)))
        return mope_error_set(err, MOPE_EFORMAT, "adapter.lora.alpha is not a finite number >= 0");

    int n_lin = m->cfg.n_layer * TL_NLIN + 1, L = m->cfg.n_layer;
    const mope_gguf_tensor **ta = calloc((size_t)n_lin * 2, sizeof *ta), **tb = ta ? ta + n_lin : NULL;
    if (!ta) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    char base[64];
    int rank = -1;
    rc = 0;
    for (int64_t i = 0; i < mope_gguf_n_tensors(g) && !rc; i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        size_t len = strlen(t->name);
        bool is_a = len > 7 && !strcmp(t->name + len - 7, ".lora_a"), is_b = len > 7 && !strcmp(t->name + len - 7, ".lora_b");
        if (!is_a && !is_b) {
            rc = mope_error_set(err, MOPE_EFORMAT, "tensor %s is not a .lora_a / .lora_b tensor", t->name);
            break;
        }
        int id = -1;
        for (int k = 0; k < n_lin && id < 0; k++) {
            tlora_base_name(m, k, base, sizeof base);
            if (strlen(base) == len - 7 && !memcmp(base, t->name, len - 7)) id = k;
        }
        if (id < 0 || (id == L * TL_NLIN && m->cfg.tied_output)) {
            rc = mope_error_set(err, MOPE_EUNSUPPORTED, "tensor %s adapts '%.*s', which is not a linear of this model",
                                t->name, (int)(len - 7), t->name);
            break;
        }
        if (t->type != MOPE_TYPE_F32 && t->type != MOPE_TYPE_F16 && t->type != MOPE_TYPE_BF16) {
            rc = mope_error_set(err, MOPE_EUNSUPPORTED, "tensor %s has type %d; adapters are read as F32, F16 or BF16",
                                t->name, (int)t->type);
            break;
        }
        (is_a ? ta : tb)[id] = t;
    }
    /* pairs, shapes, one rank, the same targets in every layer */
    unsigned targets = 0, seen[TL_NLIN + 1] = {0};
    for (int id = 0; id < n_lin && !rc; id++) {
        const mope_gguf_tensor *a = ta[id], *b = tb[id];
        if (!a && !b) continue;
        tlora_base_name(m, id, base, sizeof base);
        if (!a || !b) {
            rc = mope_error_set(err, MOPE_EFORMAT, "%s has a lora_%c tensor but no lora_%c", base, a ? 'a' : 'b',
                                a ? 'b' : 'a');
            break;
        }
        const mope_train_tensor *w = mope_train_model_find(m, base);
        int64_t ni = w->ne[0], no = w->ne[1];
        if (rank < 0) rank = (int)a->ne[1];
        if (a->ne[0] != ni || a->ne[1] != rank || a->ne[2] != 1 || a->ne[3] != 1) {
            rc = a->ne[1] != rank && a->ne[0] == ni
                     ? mope_error_set(err, MOPE_EUNSUPPORTED, "tensor %s has rank %lld, others %d (one rank only)",
                                      a->name, (long long)a->ne[1], rank)
                     : shape_err(a, ni, rank, err);
            break;
        }
        if (b->ne[0] != rank || b->ne[1] != no || b->ne[2] != 1 || b->ne[3] != 1) {
            rc = shape_err(b, rank, no, err);
            break;
        }
        int slot = id == L * TL_NLIN ? TL_NLIN : id % TL_NLIN;
        seen[slot]++;
        targets |= 1u << slot;
    }
    for (int slot = 0; slot < TL_NLIN && !rc; slot++)
        if (seen[slot] && (int)seen[slot] != L) {
            tlora_base_name(m, slot, base, sizeof base);
            rc = mope_error_set(err, MOPE_EUNSUPPORTED,
                                "the adapter adapts %s in %u of %d layers (the trainer adapts all layers alike)",
                                base + 6, seen[slot], L);
        }
    if (!rc && !targets) rc = mope_error_set(err, MOPE_EFORMAT, "the adapter has no tensors");
    if (!rc) rc = mope_train_model_add_lora(m, rank, (float)alpha, targets, 0.0f, 0, err);
    for (int id = 0; id < n_lin && !rc; id++) {
        tlora_lin *Ln = &m->lora->lin[id];
        if (!ta[id]) continue;
        if (!(rc = read_f32(ta[id], Ln->a, err))) rc = read_f32(tb[id], Ln->b, err);
    }
    if (rc) mope_train_model_lora_remove(m);
    free(ta);
    return rc;
}

int mope_train_model_lora_load(mope_train_model *m, const char *path, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return err ? err->code : MOPE_EIO;
    int rc = mope_train_model_lora_from_gguf(m, g, err);
    mope_gguf_close(g);
    if (rc) mope_error_prefix(err, "%s", path);
    return rc;
}

/* ---- checkpoints ---- */

int tlora_ckpt_add(const mope_train_model *m, mope_gguf_writer *w, mope_error *err) {
    const tlora *lo = m->lora;
    if (!lo) return 0;
    int k = 0;
    k = k ? k : mope_gguf_set_u32(w, "mope.lora.rank", (uint32_t)lo->rank);
    k = k ? k : mope_gguf_set_f32(w, "mope.lora.alpha", lo->alpha);
    k = k ? k : mope_gguf_set_u32(w, "mope.lora.targets", lo->targets);
    k = k ? k : mope_gguf_set_f32(w, "mope.lora.dropout", lo->dropout);
    k = k ? k : mope_gguf_set_u64(w, "mope.lora.seed", lo->seed);
    k = k ? k : mope_gguf_set_u64(w, "mope.lora.pass", lo->pass);
    if (k) return mope_error_set(err, k, "cannot set the checkpoint's LoRA keys (%s)", mope_error_code_name(k));
    char name[80];
    for (int i = 0; i < lo->n_tensors; i++) {
        const mope_train_tensor *t = &lo->tensors[i];
        snprintf(name, sizeof name, "mope.lora.%s", t->name);
        int rc = mope_gguf_add_tensor(w, name, MOPE_TYPE_F32, 2, t->ne, lo->params + t->offset, err);
        if (rc) return rc;
    }
    return 0;
}

int tlora_ckpt_read(mope_train_model *m, const mope_gguf *g, mope_error *err) {
    int64_t rank, targets;
    double alpha, dropout;
    uint64_t seed, pass;
    int rc = mope_gguf_get_i64(g, "mope.lora.rank", &rank);
    if (rc == -1) return 0; /* a checkpoint without an adapter */
    if (rc || mope_gguf_get_f64(g, "mope.lora.alpha", &alpha) || mope_gguf_get_i64(g, "mope.lora.targets", &targets) ||
        mope_gguf_get_f64(g, "mope.lora.dropout", &dropout) || mope_gguf_get_u64(g, "mope.lora.seed", &seed) ||
        mope_gguf_get_u64(g, "mope.lora.pass", &pass) || rank < 1 || rank > (1 << 20) || targets < 1 ||
        targets > 0xff)
        return mope_error_set(err, MOPE_EFORMAT, "checkpoint: missing or bad mope.lora.* keys");
    if ((rc = mope_train_model_add_lora(m, (int)rank, (float)alpha, (unsigned)targets, (float)dropout, seed, err)))
        return mope_error_prefix(err, "checkpoint");
    tlora *lo = m->lora;
    char name[80];
    for (int i = 0; i < lo->n_tensors && !rc; i++) {
        const mope_train_tensor *t = &lo->tensors[i];
        snprintf(name, sizeof name, "mope.lora.%s", t->name);
        const mope_gguf_tensor *s = mope_gguf_find_tensor(g, name);
        if (!s || s->type != MOPE_TYPE_F32 || s->ne[0] != t->ne[0] || s->ne[1] != t->ne[1] || s->n_elements != (int64_t)t->n)
            rc = mope_error_set(err, MOPE_EFORMAT, "checkpoint: tensor %s is missing or has the wrong shape/type", name);
        else
            rc = read_f32(s, lo->params + t->offset, err);
    }
    if (rc) {
        mope_train_model_lora_remove(m);
        return rc;
    }
    lo->pass = pass;
    return 0;
}
