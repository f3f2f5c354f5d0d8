/* Model loading: hyper-parameters from GGUF keys, weight tensors checked for
 * presence, shape and type, then used in place in the mapping. */
#include "model/lora_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const arch_names[] = {"llama", "qwen2"};

const char *mope_arch_name(mope_arch a) {
    return (a == MOPE_ARCH_LLAMA || a == MOPE_ARCH_QWEN2) ? arch_names[a] : "unknown";
}

int mope_arch_from_name(const char *name) {
    for (int i = 0; i < 2; i++)
        if (name && strcmp(name, arch_names[i]) == 0) return i;
    return -1;
}

void mope_hparams_init(mope_hparams *hp, mope_arch arch) {
    memset(hp, 0, sizeof *hp);
    hp->arch = arch;
    hp->n_vocab = 512;
    hp->n_embd = 64;
    hp->n_layer = 2;
    hp->n_head = 4;
    hp->n_head_kv = 2;
    hp->head_dim = 16;
    hp->n_ff = 128;
    hp->n_ctx_train = 256;
    hp->n_rot = 16;
    hp->rope_freq_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    hp->rms_eps = 1e-5f;
    hp->rope_mode = arch == MOPE_ARCH_QWEN2 ? MOPE_ROPE_NEOX : MOPE_ROPE_NORMAL;
    hp->has_qkv_bias = arch == MOPE_ARCH_QWEN2;
    hp->tied_output = false;
}

int mope_hparams_check(const mope_hparams *hp, mope_error *err) {
    if (!hp) return mope_error_set(err, MOPE_EINVAL, "hparams: NULL");
    if (hp->arch != MOPE_ARCH_LLAMA && hp->arch != MOPE_ARCH_QWEN2)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "hparams: unknown architecture %d", (int)hp->arch);
    /* Caps keep every size product far from int64 overflow. */
    const int cap = 1 << 24;
    struct { const char *name; int v; } pos[] = {
        {"n_vocab", hp->n_vocab}, {"n_embd", hp->n_embd}, {"n_layer", hp->n_layer}, {"n_head", hp->n_head},
        {"n_head_kv", hp->n_head_kv}, {"head_dim", hp->head_dim}, {"n_ff", hp->n_ff},
        {"n_ctx_train", hp->n_ctx_train},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0 || pos[i].v > cap)
            return mope_error_set(err, MOPE_EFORMAT, "hparams: %s = %d is out of range (1..%d)", pos[i].name,
                                  pos[i].v, cap);
    if (hp->n_layer > 4096 || hp->n_head > 4096)
        return mope_error_set(err, MOPE_EFORMAT, "hparams: %d layers / %d heads is implausible", hp->n_layer,
                              hp->n_head);
    if (hp->n_head % hp->n_head_kv != 0)
        return mope_error_set(err, MOPE_EFORMAT, "hparams: n_head %d is not a multiple of n_head_kv %d",
                              hp->n_head, hp->n_head_kv);
    if ((int64_t)hp->head_dim * hp->n_head > cap)
        return mope_error_set(err, MOPE_EFORMAT, "hparams: head_dim %d x n_head %d is too large", hp->head_dim,
                              hp->n_head);
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return mope_error_set(err, MOPE_EFORMAT, "hparams: rope dimension count %d must be even and in 2..%d",
                              hp->n_rot, hp->head_dim);
    if (!(hp->rope_freq_base > 0) || !isfinite(hp->rope_freq_base))
        return mope_error_set(err, MOPE_EFORMAT, "hparams: rope freq base %g must be positive",
                              (double)hp->rope_freq_base);
    if (!(hp->rope_freq_scale > 0) || !isfinite(hp->rope_freq_scale))
        return mope_error_set(err, MOPE_EFORMAT, "hparams: rope freq scale %g must be positive",
                              (double)hp->rope_freq_scale);
    if (!(hp->rms_eps > 0) || !isfinite(hp->rms_eps))
        return mope_error_set(err, MOPE_EFORMAT, "hparams: rms eps %g must be positive", (double)hp->rms_eps);
    if (hp->rope_mode != MOPE_ROPE_NORMAL && hp->rope_mode != MOPE_ROPE_NEOX)
        return mope_error_set(err, MOPE_EFORMAT, "hparams: unknown rope mode %d", (int)hp->rope_mode);
    return 0;
}

/* ---- keys ---- */

static int get_int(const mope_gguf *g, const char *arch, const char *suffix, bool required, int64_t def,
                   int *out, mope_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    int rc = mope_gguf_get_i64(g, key, &v);
    if (rc == -1) {
        if (required) return mope_error_set(err, MOPE_EFORMAT, "missing key %s", key);
        v = def;
    } else if (rc < 0) {
        return mope_error_set(err, MOPE_EFORMAT, "key %s is not an integer", key);
    }
    if (v < 0 || v > INT32_MAX)
        return mope_error_set(err, MOPE_EFORMAT, "key %s = %lld is out of range", key, (long long)v);
    *out = (int)v;
    return 0;
}

static int get_float(const mope_gguf *g, const char *arch, const char *suffix, double def, double *out,
                     bool *found, mope_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = mope_gguf_get_f64(g, key, out);
    if (found) *found = rc == 0;
    if (rc == -1) {
        *out = def;
        return 0;
    }
    if (rc < 0) return mope_error_set(err, MOPE_EFORMAT, "key %s is not a number", key);
    return 0;
}

static int read_hparams(const mope_gguf *g, const mope_gguf_tensor *embd, mope_hparams *hp, mope_error *err) {
    mope_gguf_str s;
    if (mope_gguf_get_str(g, "general.architecture", &s) != 0)
        return mope_error_set(err, MOPE_EFORMAT, "missing string key general.architecture");
    char arch[64];
    if (s.len >= sizeof arch) return mope_error_set(err, MOPE_EUNSUPPORTED, "unsupported architecture (name too long)");
    memcpy(arch, s.ptr, s.len);
    arch[s.len] = 0;
    int a = mope_arch_from_name(arch);
    if (a < 0)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "unsupported architecture '%s' (mope runs llama and qwen2)",
                              arch);
    mope_hparams_init(hp, (mope_arch)a);
    int rc;
    if ((rc = get_int(g, arch, "embedding_length", true, 0, &hp->n_embd, err)) ||
        (rc = get_int(g, arch, "block_count", true, 0, &hp->n_layer, err)) ||
        (rc = get_int(g, arch, "feed_forward_length", true, 0, &hp->n_ff, err)) ||
        (rc = get_int(g, arch, "attention.head_count", true, 0, &hp->n_head, err)) ||
        (rc = get_int(g, arch, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv, err)) ||
        (rc = get_int(g, arch, "context_length", false, 2048, &hp->n_ctx_train, err)))
        return rc;
    if (hp->n_head <= 0) return mope_error_set(err, MOPE_EFORMAT, "%s.attention.head_count is 0", arch);
    int kl, vl;
    if ((rc = get_int(g, arch, "attention.key_length", false, hp->n_embd / hp->n_head, &kl, err)) ||
        (rc = get_int(g, arch, "attention.value_length", false, kl, &vl, err)))
        return rc;
    if (kl != vl)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "key_length %d != value_length %d is not supported", kl, vl);
    hp->head_dim = kl;
    if ((rc = get_int(g, arch, "rope.dimension_count", false, kl, &hp->n_rot, err))) return rc;
    /* The embedding's row count is the real vocabulary; vocab_size, when
     * present, must agree with it. */
    hp->n_vocab = embd->ne[1] > INT32_MAX ? INT32_MAX : (int)embd->ne[1];
    int nv;
    if ((rc = get_int(g, arch, "vocab_size", false, hp->n_vocab, &nv, err))) return rc;
    if (nv != hp->n_vocab)
        return mope_error_set(err, MOPE_EFORMAT, "%s.vocab_size = %d but token_embd.weight has %d rows", arch, nv,
                              hp->n_vocab);
    double base, eps, factor;
    bool found;
    if ((rc = get_float(g, arch, "rope.freq_base", 10000.0, &base, NULL, err)) ||
        (rc = get_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, &eps, NULL, err)))
        return rc;
    hp->rope_freq_base = (float)base;
    hp->rms_eps = (float)eps;
    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    mope_gguf_str st;
    bool linear = false;
    if (mope_gguf_get_str(g, key, &st) == 0) {
        if (st.len == 6 && memcmp(st.ptr, "linear", 6) == 0) {
            linear = true;
        } else if (!(st.len == 4 && memcmp(st.ptr, "none", 4) == 0)) {
            return mope_error_set(err, MOPE_EUNSUPPORTED, "rope scaling type '%.*s' is not supported (only linear)",
                                  (int)(st.len > 32 ? 32 : st.len), st.ptr);
        }
    }
    if ((rc = get_float(g, arch, "rope.scaling.factor", 0.0, &factor, &found, err))) return rc;
    if (!found && !linear) {
        /* older llama.cpp files: {arch}.rope.scale_linear */
        if ((rc = get_float(g, arch, "rope.scale_linear", 0.0, &factor, &found, err))) return rc;
        linear = found;
    }
    if (linear) {
        if (!found || !(factor > 0))
            return mope_error_set(err, MOPE_EFORMAT, "linear rope scaling needs a positive %s.rope.scaling.factor",
                                  arch);
        hp->rope_freq_scale = (float)(1.0 / factor);
    }
    return mope_hparams_check(hp, err);
}

/* ---- tensors ---- */

static int get_tensor(const mope_gguf *g, const char *name, int64_t ne0, int64_t ne1, bool optional,
                      const mope_gguf_tensor **out, mope_error *err) {
    const mope_gguf_tensor *t = mope_gguf_find_tensor(g, name);
    *out = t;
    if (!t) return optional ? 0 : mope_error_set(err, MOPE_EFORMAT, "missing tensor '%s'", name);
    bool ok = t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1;
    if (!ok) {
        char exp[64], got[96];
        if (ne1 == 1) snprintf(exp, sizeof exp, "[%lld]", (long long)ne0);
        else snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)ne0, (long long)ne1);
        int n = snprintf(got, sizeof got, "[");
        for (int d = 0; d < t->n_dims && d < MOPE_GGUF_MAX_DIMS; d++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        snprintf(got + n, sizeof got - (size_t)n, "]");
        return mope_error_set(err, MOPE_EFORMAT, "tensor '%s' has shape %s, expected %s", name, got, exp);
    }
    const mope_type_traits *tt = mope_type_get(t->type);
    if (!tt || !tt->supported)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "tensor '%s' has type %s, which mope cannot compute with",
                              name, mope_type_name(t->type));
    if (mope_row_size(t->type, ne0) == 0)
        return mope_error_set(err, MOPE_EFORMAT, "tensor '%s': row of %lld is not a whole number of %s blocks",
                              name, (long long)ne0, tt->name);
    return 0;
}

static int get_mat(const mope_gguf *g, const char *name, int64_t ne0, int64_t ne1, mope_wmat *w, mope_error *err) {
    const mope_gguf_tensor *t;
    int rc = get_tensor(g, name, ne0, ne1, false, &t, err);
    if (rc) return rc;
    /* Weights are read in place as floats, or as halves (f16/bf16 elements,
     * and the f16 scales of every block type, whose block sizes are all
     * even): a file whose general.alignment leaves them misaligned is
     * refused rather than read with misaligned loads. */
    size_t el = t->type == MOPE_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)t->data % el != 0)
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "tensor '%s' (%s) is not %zu-byte aligned in the file (general.alignment %zu)", name,
                              mope_type_name(t->type), el, mope_gguf_alignment(g));
    w->name = t->name;
    w->data = t->data;
    w->type = t->type;
    w->ne0 = ne0;
    w->ne1 = ne1;
    w->row_bytes = mope_row_size(t->type, ne0);
    return 0;
}

/* Vectors are copied to aligned f32: they are tiny, the file may store them
 * as f16, and a file alignment below 4 would make in-place floats misaligned. */
static int get_vec(const mope_gguf *g, const char *name, int64_t n, bool optional, float **out, mope_error *err) {
    const mope_gguf_tensor *t;
    *out = NULL;
    int rc = get_tensor(g, name, n, 1, optional, &t, err);
    if (rc || !t) return rc;
    float *v = mope_alloc((size_t)n, sizeof(float));
    /* an aligned copy of the bytes first: the file's may be misaligned */
    size_t nb = mope_row_size(t->type, n);
    void *tmp = mope_alloc(nb, 1);
    if (!v || !tmp) {
        mope_free(v);
        mope_free(tmp);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory copying '%s'", name);
    }
    memcpy(tmp, t->data, nb);
    int drc = mope_dequantize_row(t->type, tmp, v, n);
    mope_free(tmp);
    if (drc != 0) {
        mope_free(v);
        return mope_error_set(err, MOPE_EUNSUPPORTED, "tensor '%s': cannot convert type %s", name,
                              mope_type_name(t->type));
    }
    *out = v;
    return 0;
}

static int load_tensors(mope_model *m, mope_error *err) {
    const mope_gguf *g = m->g;
    const mope_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    int64_t QD = (int64_t)hp->head_dim * hp->n_head, KD = (int64_t)hp->head_dim * hp->n_head_kv;
    int rc;
    if ((rc = get_mat(g, "token_embd.weight", E, V, &m->tok_embd, err))) return rc;
    if ((rc = get_vec(g, "output_norm.weight", E, false, &m->output_norm, err))) return rc;
    if (mope_gguf_find_tensor(g, "output.weight")) {
        if ((rc = get_mat(g, "output.weight", E, V, &m->output, err))) return rc;
        m->hp.tied_output = false;
    } else {
        m->output = m->tok_embd;
        m->hp.tied_output = true;
    }
    m->hp.has_qkv_bias = mope_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int il = 0; il < hp->n_layer; il++) {
        mope_layer *L = &m->layers[il];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
        if ((rc = get_vec(g, NAME("attn_norm.weight"), E, false, &L->attn_norm, err)) ||
            (rc = get_vec(g, NAME("ffn_norm.weight"), E, false, &L->ffn_norm, err)) ||
            (rc = get_mat(g, NAME("attn_q.weight"), E, QD, &L->wq, err)) ||
            (rc = get_mat(g, NAME("attn_k.weight"), E, KD, &L->wk, err)) ||
            (rc = get_mat(g, NAME("attn_v.weight"), E, KD, &L->wv, err)) ||
            (rc = get_mat(g, NAME("attn_output.weight"), QD, E, &L->wo, err)) ||
            (rc = get_mat(g, NAME("ffn_gate.weight"), E, F, &L->gate, err)) ||
            (rc = get_mat(g, NAME("ffn_up.weight"), E, F, &L->up, err)) ||
            (rc = get_mat(g, NAME("ffn_down.weight"), F, E, &L->down, err)))
            return rc;
        if (m->hp.has_qkv_bias) {
            if ((rc = get_vec(g, NAME("attn_q.bias"), QD, false, &L->bq, err)) ||
                (rc = get_vec(g, NAME("attn_k.bias"), KD, false, &L->bk, err)) ||
                (rc = get_vec(g, NAME("attn_v.bias"), KD, false, &L->bv, err)))
                return rc;
        }
#undef NAME
    }
    return 0;
}

mope_model *mope_model_from_gguf(mope_gguf *g, bool take_ownership, mope_error *err) {
    if (!g) {
        mope_error_set(err, MOPE_EINVAL, "model: no file");
        return NULL;
    }
    mope_model *m = calloc(1, sizeof *m);
    if (!m) {
        if (take_ownership) mope_gguf_close(g);
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    m->g = g;
    m->own_g = take_ownership;
    int rc = 0;
    if (mope_gguf_n_tensors(g) == 0) {
        rc = mope_error_set(err, MOPE_EFORMAT, "file has no model weights (vocab-only?)");
    } else {
        const mope_gguf_tensor *embd = mope_gguf_find_tensor(g, "token_embd.weight");
        if (!embd) rc = mope_error_set(err, MOPE_EFORMAT, "missing tensor 'token_embd.weight'");
        else rc = read_hparams(g, embd, &m->hp, err);
    }
    if (!rc) rc = load_tensors(m, err);
    if (!rc) {
        int half = m->hp.n_rot / 2;
        m->inv_freq = malloc(sizeof(double) * (size_t)half);
        if (!m->inv_freq) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        } else {
            for (int i = 0; i < half; i++)
                m->inv_freq[i] = m->hp.rope_freq_scale * pow(m->hp.rope_freq_base, -2.0 * i / m->hp.n_rot);
        }
    }
    if (rc) {
        mope_model_free(m);
        return NULL;
    }
    return m;
}

mope_model *mope_model_load(const char *path, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return NULL;
    mope_model *m = mope_model_from_gguf(g, true, err);
    if (!m) mope_error_prefix(err, "loading %s", path);
    return m;
}

void mope_model_free(mope_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int il = 0; il < m->hp.n_layer; il++) {
            mope_layer *L = &m->layers[il];
            mope_free(L->attn_norm);
            mope_free(L->ffn_norm);
            mope_free(L->bq);
            mope_free(L->bk);
            mope_free(L->bv);
        }
        free(m->layers);
    }
    mope_free(m->output_norm);
    free(m->inv_freq);
    mope_scratch_free(&m->s);
    mope_lora_set_free(m->lora);
    if (m->own_g) mope_gguf_close(m->g);
    free(m);
}

const mope_hparams *mope_model_hparams(const mope_model *m) { return &m->hp; }
const mope_gguf *mope_model_gguf(const mope_model *m) { return m->g; }

size_t mope_model_weight_bytes(const mope_model *m) {
    size_t b = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const mope_layer *L = &m->layers[il];
        const mope_wmat *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int i = 0; i < 7; i++) b += w[i]->row_bytes * (size_t)w[i]->ne1;
    }
    return b + m->output.row_bytes * (size_t)m->output.ne1; /* embedding: one row per token, negligible */
}

void mope_model_set_gemm_min_rows(mope_model *m, int min_rows) { m->gemm_min_rows = min_rows < 0 ? 0 : min_rows; }

int64_t mope_model_rows_run(const mope_model *m) { return m ? m->rows_run : 0; }
