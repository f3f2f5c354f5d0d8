/* GGUF save / load of the trainable model and of trainer checkpoints.
 * Names, shapes and keys are llama.cpp's (GGUF_FACTS.md §1); mope's own
 * additions (value head, optimiser state) live under `mope.`. */
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define ARCH "llama"

static int set_keys(const mope_train_model *m, mope_gguf_writer *w) {
    const mope_train_config *c = &m->cfg;
    int rc = 0;
    rc = rc ? rc : mope_gguf_set_str(w, "general.architecture", ARCH);
    rc = rc ? rc : mope_gguf_set_str(w, "general.type", "model");
    rc = rc ? rc : mope_gguf_set_u32(w, "general.file_type", 0); /* all F32 */
    rc = rc ? rc : mope_gguf_set_u32(w, "general.quantization_version", 2);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".context_length", (uint32_t)c->n_ctx);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".embedding_length", (uint32_t)c->n_embd);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".block_count", (uint32_t)c->n_layer);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".feed_forward_length", (uint32_t)c->n_ff);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".attention.head_count", (uint32_t)c->n_head);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".attention.head_count_kv", (uint32_t)c->n_head_kv);
    rc = rc ? rc : mope_gguf_set_f32(w, ARCH ".rope.freq_base", c->rope_freq_base);
    rc = rc ? rc : mope_gguf_set_f32(w, ARCH ".attention.layer_norm_rms_epsilon", c->rms_eps);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".rope.dimension_count", (uint32_t)m->hd);
    rc = rc ? rc : mope_gguf_set_u32(w, ARCH ".vocab_size", (uint32_t)c->n_vocab);
    return rc;
}

int mope_train_model_to_gguf(const mope_train_model *m, mope_gguf_writer *w, mope_error *err) {
    if (!m || !w) return mope_error_set(err, MOPE_EINVAL, "model_to_gguf: NULL argument");
    int rc = set_keys(m, w);
    if (rc) return mope_error_set(err, rc, "cannot set the model's GGUF keys (%s)", mope_error_code_name(rc));
    for (int i = 0; i < m->n_tensors; i++) {
        const mope_train_tensor *t = &m->tensors[i];
        rc = mope_gguf_add_tensor(w, t->name, MOPE_TYPE_F32, t->n_dims, t->ne, m->params + t->offset, err);
        if (rc) return rc;
    }
    return 0;
}

int mope_train_model_save(const mope_train_model *m, const char *path, mope_gguf_writer *w, mope_error *err) {
    mope_gguf_writer *own = w ? NULL : mope_gguf_writer_new();
    if (!w && !own) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int rc = mope_train_model_to_gguf(m, w ? w : own, err);
    if (!rc) rc = mope_gguf_writer_write(w ? w : own, path, err);
    mope_gguf_writer_free(own);
    return rc;
}

/* ---- loading ---- */

/* Integer key: 0 and *out set when present, the default when absent. */
static int key_int(const mope_gguf *g, const char *key, bool required, int64_t def, int64_t lo, int64_t hi,
                   int *out, mope_error *err) {
    int64_t v;
    int rc = mope_gguf_get_i64(g, key, &v);
    if (rc == -1) {
        if (required) return mope_error_set(err, MOPE_EFORMAT, "missing key %s", key);
        v = def;
    } else if (rc) {
        return mope_error_set(err, MOPE_EFORMAT, "key %s is not an integer", key);
    }
    if (v < lo || v > hi)
        return mope_error_set(err, MOPE_EFORMAT, "key %s = %lld is outside [%lld, %lld]", key, (long long)v,
                              (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int key_float(const mope_gguf *g, const char *key, double def, float *out, mope_error *err) {
    double v;
    int rc = mope_gguf_get_f64(g, key, &v);
    if (rc == -1) v = def;
    else if (rc) return mope_error_set(err, MOPE_EFORMAT, "key %s is not a number", key);
    *out = (float)v;
    return 0;
}

static int read_config(const mope_gguf *g, mope_train_config *c, mope_error *err) {
    mope_gguf_str s;
    if (mope_gguf_get_str(g, "general.architecture", &s) != 0)
        return mope_error_set(err, MOPE_EFORMAT, "missing string key general.architecture");
    if (s.len != strlen(ARCH) || memcmp(s.ptr, ARCH, s.len))
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "architecture '%.*s' cannot be trained (the trainer implements llama: RoPE NORMAL, "
                              "no biases)",
                              (int)(s.len > 64 ? 64 : s.len), s.ptr);
    const mope_gguf_tensor *embd = mope_gguf_find_tensor(g, "token_embd.weight");
    if (!embd) return mope_error_set(err, MOPE_EFORMAT, "missing tensor token_embd.weight (vocab-only file?)");
    if (embd->n_dims != 2 || embd->ne[1] > (1 << 24))
        return mope_error_set(err, MOPE_EFORMAT, "token_embd.weight has an unexpected shape");
    mope_train_config_init(c);
    c->n_vocab = (int)embd->ne[1];
    int rc, hd, kl, nrot, nv;
    const int BIG = 1 << 30;
    if ((rc = key_int(g, ARCH ".embedding_length", true, 0, 1, BIG, &c->n_embd, err)) ||
        (rc = key_int(g, ARCH ".block_count", true, 0, 1, BIG, &c->n_layer, err)) ||
        (rc = key_int(g, ARCH ".feed_forward_length", true, 0, 1, BIG, &c->n_ff, err)) ||
        (rc = key_int(g, ARCH ".attention.head_count", true, 0, 1, BIG, &c->n_head, err)) ||
        (rc = key_int(g, ARCH ".attention.head_count_kv", false, c->n_head, 1, BIG, &c->n_head_kv, err)) ||
        (rc = key_int(g, ARCH ".context_length", false, 2048, 1, BIG, &c->n_ctx, err)) ||
        (rc = key_int(g, ARCH ".vocab_size", false, c->n_vocab, 1, BIG, &nv, err)))
        return rc;
    hd = c->n_embd / c->n_head;
    if ((rc = key_int(g, ARCH ".attention.key_length", false, hd, 1, BIG, &kl, err)) ||
        (rc = key_int(g, ARCH ".rope.dimension_count", false, hd, 1, BIG, &nrot, err)))
        return rc;
    if (nv != c->n_vocab)
        return mope_error_set(err, MOPE_EFORMAT, ARCH ".vocab_size = %d but token_embd.weight has %d rows", nv,
                              c->n_vocab);
    if (c->n_embd % c->n_head || kl != hd || nrot != hd)
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "head_dim %d (key_length %d, rope dims %d) must be n_embd / n_head with full RoPE", hd,
                              kl, nrot);
    if ((rc = key_float(g, ARCH ".rope.freq_base", 10000.0, &c->rope_freq_base, err)) ||
        (rc = key_float(g, ARCH ".attention.layer_norm_rms_epsilon", 1e-5, &c->rms_eps, err)))
        return rc;
    if (mope_gguf_get_str(g, ARCH ".rope.scaling.type", &s) == 0 && !(s.len == 4 && !memcmp(s.ptr, "none", 4)))
        return mope_error_set(err, MOPE_EUNSUPPORTED, "RoPE scaling is not supported by the trainer");
    if (mope_gguf_find_tensor(g, "rope_freqs.weight") || mope_gguf_find_tensor(g, "blk.0.attn_q.bias"))
        return mope_error_set(err, MOPE_EUNSUPPORTED, "rope_freqs / QKV biases are not supported by the trainer");
    c->tied_output = mope_gguf_find_tensor(g, "output.weight") == NULL;
    c->value_head = mope_gguf_find_tensor(g, "mope.value_head.weight") != NULL;
    rc = mope_train_config_check(c, err);
    return rc ? mope_error_prefix(err, "model hyper-parameters") : 0;
}

/* Presence, shape and type of one tensor. */
static int check_tensor(const mope_gguf *g, const mope_train_tensor *t, mope_error *err) {
    const mope_gguf_tensor *s = mope_gguf_find_tensor(g, t->name);
    if (!s) return mope_error_set(err, MOPE_EFORMAT, "missing tensor %s", t->name);
    bool shape_ok = s->ne[0] == t->ne[0] && s->ne[1] == t->ne[1] && s->ne[2] == 1 && s->ne[3] == 1;
    if (!shape_ok)
        return mope_error_set(err, MOPE_EFORMAT, "tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                              t->name, (long long)s->ne[0], (long long)s->ne[1], (long long)s->ne[2],
                              (long long)s->ne[3], (long long)t->ne[0], (long long)t->ne[1]);
    if (s->type != MOPE_TYPE_F32 && s->type != MOPE_TYPE_F16 && s->type != MOPE_TYPE_BF16)
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "tensor %s has type %d; the trainer reads F32, F16 and BF16 (dequantise first)",
                              t->name, (int)s->type);
    return 0;
}

static int load_tensor(const mope_gguf *g, const mope_train_tensor *t, float *dst, mope_error *err) {
    const mope_gguf_tensor *s = mope_gguf_find_tensor(g, t->name);
    const uint8_t *src = s->data;
    switch (s->type) {
    case MOPE_TYPE_F32:
        memcpy(dst, src, t->n * sizeof(float));
        break;
    case MOPE_TYPE_F16:
    case MOPE_TYPE_BF16:
        for (size_t i = 0; i < t->n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = s->type == MOPE_TYPE_F16 ? mope_f16_to_f32(h) : mope_bf16_to_f32(h);
        }
        break;
    default: /* excluded by check_tensor */
        return mope_error_set(err, MOPE_EUNSUPPORTED, "tensor %s has type %d", t->name, (int)s->type);
    }
    for (size_t i = 0; i < t->n; i++)
        if (!isfinite(dst[i])) return mope_error_set(err, MOPE_EFORMAT, "tensor %s holds a non-finite value", t->name);
    return 0;
}

mope_train_model *mope_train_model_from_gguf(const mope_gguf *g, int n_threads, mope_error *err) {
    if (!g) {
        mope_error_set(err, MOPE_EINVAL, "model_from_gguf: NULL reader");
        return NULL;
    }
    mope_train_config c;
    if (read_config(g, &c, err)) return NULL;
    /* Every tensor is checked before anything big is allocated: the reader
     * has verified that their bytes lie in the file, so a file cannot make
     * us allocate much more than its own size. */
    mope_train_model *m = tm_create(&c, n_threads, false, err);
    if (!m) return NULL;
    for (int i = 0; i < m->n_tensors; i++)
        if (check_tensor(g, &m->tensors[i], err)) {
            mope_train_model_free(m);
            return NULL;
        }
    mope_train_model_free(m);
    if (!(m = mope_train_model_new(&c, n_threads, err))) return NULL;
    for (int i = 0; i < m->n_tensors; i++)
        if (load_tensor(g, &m->tensors[i], m->params + m->tensors[i].offset, err)) {
            mope_train_model_free(m);
            return NULL;
        }
    return m;
}

mope_train_model *mope_train_model_load(const char *path, int n_threads, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return NULL;
    mope_train_model *m = mope_train_model_from_gguf(g, n_threads, err);
    mope_gguf_close(g);
    if (!m) mope_error_prefix(err, "%s", path);
    return m;
}

/* ---- checkpoints ---- */

int mope_train_checkpoint_save(const mope_trainer *tr, const char *path, mope_gguf_writer *w, mope_error *err) {
    if (!tr || !path) return mope_error_set(err, MOPE_EINVAL, "checkpoint_save: NULL argument");
    mope_gguf_writer *own = w ? NULL : mope_gguf_writer_new();
    if (!w && !own) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    mope_gguf_writer *ww = w ? w : own;
    const mope_train_model *m = tr->model;
    const mope_adamw_config *c = &tr->cfg;
    int rc = mope_train_model_n_trainable(m) == tr->n_opt
                 ? 0
                 : mope_error_set(err, MOPE_ESTATE, "checkpoint_save: a LoRA adapter was attached or detached after "
                                                    "the trainer was created");
    if (!rc) rc = mope_train_model_to_gguf(m, ww, err);
    if (!rc) {
        int k = 0;
        k = k ? k : mope_gguf_set_u64(ww, "mope.train.step", (uint64_t)tr->step);
        k = k ? k : mope_gguf_set_arr(ww, "mope.train.rng", MOPE_GGUF_U64, tr->rng.s, 4);
        k = k ? k : mope_gguf_set_u64(ww, "mope.train.n_params", (uint64_t)tr->n_opt);
        k = k ? k : mope_gguf_set_f32(ww, "mope.train.adamw.lr", c->lr);
        k = k ? k : mope_gguf_set_f32(ww, "mope.train.adamw.min_lr", c->min_lr);
        k = k ? k : mope_gguf_set_f32(ww, "mope.train.adamw.beta1", c->beta1);
        k = k ? k : mope_gguf_set_f32(ww, "mope.train.adamw.beta2", c->beta2);
        k = k ? k : mope_gguf_set_f32(ww, "mope.train.adamw.eps", c->eps);
        k = k ? k : mope_gguf_set_f32(ww, "mope.train.adamw.weight_decay", c->weight_decay);
        k = k ? k : mope_gguf_set_f32(ww, "mope.train.adamw.grad_clip", c->grad_clip);
        k = k ? k : mope_gguf_set_i64(ww, "mope.train.adamw.warmup_steps", c->warmup_steps);
        k = k ? k : mope_gguf_set_i64(ww, "mope.train.adamw.total_steps", c->total_steps);
        if (k) rc = mope_error_set(err, k, "cannot set the checkpoint keys (%s)", mope_error_code_name(k));
    }
    if (!rc) rc = tlora_ckpt_add(m, ww, err);
    int64_t ne = (int64_t)tr->n_opt;
    if (!rc) rc = mope_gguf_add_tensor(ww, "mope.opt.m", MOPE_TYPE_F32, 1, &ne, tr->m, err);
    if (!rc) rc = mope_gguf_add_tensor(ww, "mope.opt.v", MOPE_TYPE_F32, 1, &ne, tr->v, err);
    if (!rc) rc = mope_gguf_writer_write(ww, path, err);
    mope_gguf_writer_free(own);
    return rc;
}

static int read_adamw(const mope_gguf *g, mope_adamw_config *c, mope_error *err) {
    struct {
        const char *key;
        float *dst;
    } f[] = {
        {"mope.train.adamw.lr", &c->lr},       {"mope.train.adamw.min_lr", &c->min_lr},
        {"mope.train.adamw.beta1", &c->beta1}, {"mope.train.adamw.beta2", &c->beta2},
        {"mope.train.adamw.eps", &c->eps},     {"mope.train.adamw.weight_decay", &c->weight_decay},
        {"mope.train.adamw.grad_clip", &c->grad_clip},
    };
    mope_adamw_config_init(c);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        double v;
        if (mope_gguf_get_f64(g, f[i].key, &v) != 0)
            return mope_error_set(err, MOPE_EFORMAT, "checkpoint: missing or bad key %s", f[i].key);
        *f[i].dst = (float)v;
    }
    if (mope_gguf_get_i64(g, "mope.train.adamw.warmup_steps", &c->warmup_steps) != 0 ||
        mope_gguf_get_i64(g, "mope.train.adamw.total_steps", &c->total_steps) != 0)
        return mope_error_set(err, MOPE_EFORMAT, "checkpoint: missing or bad warmup/total step keys");
    return 0;
}

static int read_state(const mope_gguf *g, mope_trainer *tr, mope_error *err) {
    uint64_t step, np;
    if (mope_gguf_get_u64(g, "mope.train.step", &step) != 0 || step > INT64_MAX)
        return mope_error_set(err, MOPE_EFORMAT, "checkpoint: missing or bad key mope.train.step");
    if (mope_gguf_get_u64(g, "mope.train.n_params", &np) != 0 || np != tr->n_opt)
        return mope_error_set(err, MOPE_EFORMAT, "checkpoint: mope.train.n_params does not match the model");
    mope_gguf_type et;
    uint64_t n;
    const void *data;
    if (mope_gguf_get_arr(g, "mope.train.rng", &et, &n, &data) != 0 || et != MOPE_GGUF_U64 || n != 4)
        return mope_error_set(err, MOPE_EFORMAT, "checkpoint: key mope.train.rng must be 4 u64");
    memcpy(tr->rng.s, data, sizeof tr->rng.s);
    const char *names[2] = {"mope.opt.m", "mope.opt.v"};
    float *dst[2] = {tr->m, tr->v};
    for (int i = 0; i < 2; i++) {
        const mope_gguf_tensor *t = mope_gguf_find_tensor(g, names[i]);
        if (!t || t->type != MOPE_TYPE_F32 || t->n_elements != (int64_t)np)
            return mope_error_set(err, MOPE_EFORMAT, "checkpoint: tensor %s is missing or has the wrong size/type",
                                  names[i]);
        memcpy(dst[i], t->data, np * sizeof(float));
        for (uint64_t k = 0; k < np; k++)
            if (!isfinite(dst[i][k]) || (i == 1 && dst[i][k] < 0))
                return mope_error_set(err, MOPE_EFORMAT, "checkpoint: tensor %s holds an invalid value at %llu",
                                      names[i], (unsigned long long)k);
    }
    tr->step = (int64_t)step;
    return 0;
}

mope_trainer *mope_train_checkpoint_load(const char *path, int n_threads, const mope_adamw_config *c,
                                         mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return NULL;
    mope_trainer *tr = NULL;
    mope_adamw_config stored;
    mope_train_model *m = mope_train_model_from_gguf(g, n_threads, err);
    if (m && tlora_ckpt_read(m, g, err)) {
        mope_train_model_free(m);
        m = NULL;
    }
    if (m && !read_adamw(g, &stored, err)) {
        tr = mope_train_trainer_new(m, c ? c : &stored, 0, err);
        m = NULL; /* owned (or freed) by the trainer now */
        if (tr && read_state(g, tr, err)) {
            mope_train_trainer_free(tr);
            tr = NULL;
        }
    }
    mope_train_model_free(m);
    mope_gguf_close(g);
    if (!tr) mope_error_prefix(err, "%s", path);
    return tr;
}
