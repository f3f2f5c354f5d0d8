/* The trainable PCM: f32 trunk (mope/train.h) + K-way softmax head, with
 * its own AdamW state over both, and the PCM file format. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mope/pcm.h"

struct mope_pcm {
    mope_train_model *trunk;
    int K, C;
    mope_mix_rule rule;
    char **experts;
    float *head, *head_grad; /* K*C + K */
    float *m_trunk, *v_trunk, *m_head, *v_head;
    int64_t step;
    const float *hidden;     /* last forward's B*T x C hidden states (owned by the trunk) */
    int B, T;
    float *dh;               /* B*T x C scratch for backward */
    size_t dh_cap;
};

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

char *mope_pcm_format_input(const char *instruction, const char *preference, mope_error *err) {
    if (!instruction || !preference) {
        mope_error_set(err, MOPE_EINVAL, "pcm input: NULL instruction or preference");
        return NULL;
    }
    static const char a[] = "<|user|>\n", b[] = "\n<|preference|>\n", c[] = "\n<|assistant|>\n";
    size_t n = strlen(a) + strlen(instruction) + strlen(b) + strlen(preference) + strlen(c) + 1;
    char *out = malloc(n);
    if (!out) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(out, n, "%s%s%s%s%s", a, instruction, b, preference, c);
    return out;
}

int mope_pcm_prompt_tokens(const mope_tokenizer *tok, const char *instruction, const char *preference,
                           int32_t **out, mope_error *err) {
    if (!tok || !out) return mope_error_set(err, MOPE_EINVAL, "pcm prompt: NULL tokenizer or output");
    *out = NULL;
    char *text = mope_pcm_format_input(instruction, preference, err);
    if (!text) return err ? err->code : MOPE_ENOMEM;
    int n = mope_tokenizer_encode_alloc(tok, text, strlen(text), mope_tokenizer_add_bos(tok), true, out, err);
    free(text);
    return n;
}

void mope_pcm_head_apply(const float *W, const float *b, const float *h, int C, int K, float *w) {
    double z[MOPE_PCM_MAX_K], mx = -INFINITY, s = 0;
    for (int k = 0; k < K; k++) {
        double a = b[k];
        for (int i = 0; i < C; i++) a += (double)W[(size_t)k * C + i] * h[i];
        z[k] = a;
        if (a > mx) mx = a;
    }
    for (int k = 0; k < K; k++) s += (z[k] = exp(z[k] - mx));
    for (int k = 0; k < K; k++) w[k] = (float)(z[k] / s);
}

static void free_strs(char **s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static char **copy_experts(const char *const *experts, int K, mope_error *err) {
    char **e = calloc((size_t)K, sizeof *e);
    if (!e) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    for (int k = 0; k < K; k++) {
        if (!experts[k] || !experts[k][0]) {
            mope_error_set(err, MOPE_EINVAL, "pcm: expert id %d is empty", k);
            free_strs(e, K);
            return NULL;
        }
        if (!(e[k] = dup_str(experts[k]))) {
            mope_error_set(err, MOPE_ENOMEM, "out of memory");
            free_strs(e, K);
            return NULL;
        }
    }
    return e;
}

mope_pcm *mope_pcm_from_trunk(mope_train_model *trunk, int K, const char *const *experts, mope_mix_rule rule,
                              mope_error *err) {
    mope_pcm *p = NULL;
    if (!trunk) {
        mope_error_set(err, MOPE_EINVAL, "pcm: NULL trunk");
        return NULL;
    }
    const mope_train_config *c = mope_train_model_config(trunk);
    if (K < 1 || K > MOPE_PCM_MAX_K || !experts) {
        mope_error_set(err, MOPE_EINVAL, "pcm: need 1..%d experts with ids, got %d", MOPE_PCM_MAX_K, K);
        goto fail;
    }
    if (!mope_mix_rule_name(rule)) {
        mope_error_set(err, MOPE_EINVAL, "pcm: unknown mixing rule %d", (int)rule);
        goto fail;
    }
    if (c->value_head || mope_train_model_has_lora(trunk)) {
        mope_error_set(err, MOPE_EINVAL, "pcm: the trunk must be a plain model (no value head, no LoRA adapter)");
        goto fail;
    }
    if (!(p = calloc(1, sizeof *p))) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto fail;
    }
    p->trunk = trunk;
    p->K = K;
    p->C = c->n_embd;
    p->rule = rule;
    size_t nh = (size_t)K * p->C + K, nt = mope_train_model_n_params(trunk);
    if (!(p->experts = copy_experts(experts, K, err))) goto fail;
    p->head = mope_alloc(nh, sizeof(float));
    p->head_grad = mope_alloc(nh, sizeof(float));
    p->m_head = mope_alloc(nh, sizeof(float));
    p->v_head = mope_alloc(nh, sizeof(float));
    p->m_trunk = mope_alloc(nt, sizeof(float));
    p->v_trunk = mope_alloc(nt, sizeof(float));
    if (!p->head || !p->head_grad || !p->m_head || !p->v_head || !p->m_trunk || !p->v_trunk) {
        mope_error_set(err, MOPE_ENOMEM, "pcm: out of memory for %zu parameters", nt + nh);
        goto fail;
    }
    return p;
fail:
    if (p) mope_pcm_free(p);
    else mope_train_model_free(trunk);
    return NULL;
}

mope_pcm *mope_pcm_new(const mope_train_config *trunk, int K, const char *const *experts, mope_mix_rule rule,
                       int n_threads, uint64_t seed, mope_error *err) {
    if (!trunk) {
        mope_error_set(err, MOPE_EINVAL, "pcm: NULL trunk config");
        return NULL;
    }
    mope_train_config c = *trunk;
    c.value_head = false;
    mope_train_model *m = mope_train_model_new(&c, n_threads, err);
    if (!m) return NULL;
    mope_train_model_init_random(m, seed);
    return mope_pcm_from_trunk(m, K, experts, rule, err);
}

void mope_pcm_free(mope_pcm *p) {
    if (!p) return;
    mope_train_model_free(p->trunk);
    free_strs(p->experts, p->K);
    mope_free(p->head);
    mope_free(p->head_grad);
    mope_free(p->m_head);
    mope_free(p->v_head);
    mope_free(p->m_trunk);
    mope_free(p->v_trunk);
    mope_free(p->dh);
    free(p);
}

int mope_pcm_n_experts(const mope_pcm *p) { return p->K; }
const char *mope_pcm_expert(const mope_pcm *p, int k) { return k >= 0 && k < p->K ? p->experts[k] : NULL; }
mope_mix_rule mope_pcm_rule(const mope_pcm *p) { return p->rule; }
mope_train_model *mope_pcm_trunk(mope_pcm *p) { return p->trunk; }
float *mope_pcm_head_params(mope_pcm *p) { return p->head; }
float *mope_pcm_head_grads(mope_pcm *p) { return p->head_grad; }
int64_t mope_pcm_step_count(const mope_pcm *p) { return p->step; }

int mope_pcm_forward(mope_pcm *p, const int32_t *tokens, int B, int T, float *w, mope_error *err) {
    if (!p || !tokens || !w || B < 1 || T < 1) return mope_error_set(err, MOPE_EINVAL, "pcm forward: bad arguments");
    p->hidden = NULL;
    const float *h = mope_train_model_forward_hidden(p->trunk, tokens, B, T, err);
    if (!h) return err ? err->code : MOPE_EINVAL;
    const int K = p->K, C = p->C;
    const float *W = p->head, *b = p->head + (size_t)K * C;
    for (size_t n = 0; n < (size_t)B * T; n++) mope_pcm_head_apply(W, b, h + n * C, C, K, w + n * K);
    p->hidden = h;
    p->B = B;
    p->T = T;
    return 0;
}

int mope_pcm_backward(mope_pcm *p, const float *dz, mope_error *err) {
    if (!p || !dz) return mope_error_set(err, MOPE_EINVAL, "pcm backward: bad arguments");
    if (!p->hidden) return mope_error_set(err, MOPE_ESTATE, "pcm backward: no forward to differentiate");
    const int K = p->K, C = p->C;
    size_t N = (size_t)p->B * p->T;
    if (p->dh_cap < N * C) {
        mope_free(p->dh);
        if (!(p->dh = mope_alloc(N * C, sizeof(float)))) {
            p->dh_cap = 0;
            return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        }
        p->dh_cap = N * C;
    }
    const float *W = p->head;
    float *gW = p->head_grad, *gb = p->head_grad + (size_t)K * C;
    for (size_t n = 0; n < N; n++) {
        const float *h = p->hidden + n * C, *d = dz + n * K;
        float *dh = p->dh + n * C;
        memset(dh, 0, sizeof(float) * C);
        for (int k = 0; k < K; k++) {
            float g = d[k];
            if (g == 0.0f) continue;
            gb[k] += g;
            float *gw = gW + (size_t)k * C;
            const float *wk = W + (size_t)k * C;
            for (int i = 0; i < C; i++) {
                gw[i] += g * h[i];
                dh[i] += g * wk[i];
            }
        }
    }
    p->hidden = NULL; /* the trunk's backward consumes its saved activations */
    return mope_train_model_backward_hidden(p->trunk, p->dh, err);
}

void mope_pcm_zero_grad(mope_pcm *p) {
    mope_train_model_zero_grad(p->trunk);
    memset(p->head_grad, 0, sizeof(float) * ((size_t)p->K * p->C + p->K));
}

double mope_pcm_grad_norm(mope_pcm *p) {
    double s = 0;
    const float *g = mope_train_model_grads(p->trunk);
    size_t nt = mope_train_model_n_params(p->trunk), nh = (size_t)p->K * p->C + p->K;
    for (size_t i = 0; i < nt; i++) s += (double)g[i] * g[i];
    for (size_t i = 0; i < nh; i++) s += (double)p->head_grad[i] * p->head_grad[i];
    return sqrt(s);
}

int mope_pcm_apply(mope_pcm *p, const mope_adamw_config *c, float *lr_out, float *norm_out, mope_error *err) {
    if (!p || !c) return mope_error_set(err, MOPE_EINVAL, "pcm apply: bad arguments");
    double norm = mope_pcm_grad_norm(p);
    if (norm_out) *norm_out = (float)norm;
    if (!isfinite(norm)) {
        mope_pcm_zero_grad(p);
        return mope_error_set(err, MOPE_ESTATE, "pcm: non-finite gradient (norm %g); update skipped", norm);
    }
    float *gt = mope_train_model_grads(p->trunk), *pt = mope_train_model_params(p->trunk);
    size_t nt = mope_train_model_n_params(p->trunk), nw = (size_t)p->K * p->C, nh = nw + p->K;
    if (c->grad_clip > 0 && norm > c->grad_clip) {
        float s = (float)(c->grad_clip / norm);
        for (size_t i = 0; i < nt; i++) gt[i] *= s;
        for (size_t i = 0; i < nh; i++) p->head_grad[i] *= s;
    }
    float lr = mope_train_lr_at(c, p->step);
    int64_t t = p->step + 1;
    for (int i = 0; i < mope_train_model_n_tensors(p->trunk); i++) {
        const mope_train_tensor *tt = mope_train_model_tensor(p->trunk, i);
        mope_train_adamw_update(pt + tt->offset, gt + tt->offset, p->m_trunk + tt->offset, p->v_trunk + tt->offset,
                                tt->n, lr, c, tt->decay, t);
    }
    mope_train_adamw_update(p->head, p->head_grad, p->m_head, p->v_head, nw, lr, c, true, t);
    mope_train_adamw_update(p->head + nw, p->head_grad + nw, p->m_head + nw, p->v_head + nw, (size_t)p->K, lr, c,
                            false, t);
    p->step++;
    if (lr_out) *lr_out = lr;
    mope_pcm_zero_grad(p);
    return 0;
}

/* ---- file format ---- */

int mope_pcm_to_gguf(const mope_pcm *p, mope_gguf_writer *w, const mope_tokenizer *tok, mope_error *err) {
    if (!p || !w) return mope_error_set(err, MOPE_EINVAL, "pcm to_gguf: bad arguments");
    int rc = 0;
    if (tok) rc = mope_tokenizer_write_gguf_kv(tok, w, err);
    if (!rc) rc = mope_train_model_to_gguf(p->trunk, w, err);
    if (rc) return rc;
    int64_t ne_w[2] = {p->C, p->K}, ne_b[1] = {p->K};
    if (mope_gguf_set_arr_str(w, "mope.pcm.experts", (const char *const *)p->experts, NULL, (uint64_t)p->K) ||
        mope_gguf_set_str(w, "mope.pcm.rule", mope_mix_rule_name(p->rule)) ||
        mope_gguf_set_str(w, "mope.pcm.input_format", MOPE_PCM_INPUT_FORMAT))
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if ((rc = mope_gguf_add_tensor(w, "mope.pcm.head.weight", MOPE_TYPE_F32, 2, ne_w, p->head, err))) return rc;
    return mope_gguf_add_tensor(w, "mope.pcm.head.bias", MOPE_TYPE_F32, 1, ne_b, p->head + (size_t)p->K * p->C, err);
}

int mope_pcm_save(const mope_pcm *p, const char *path, const mope_tokenizer *tok, mope_error *err) {
    if (!p || !path) return mope_error_set(err, MOPE_EINVAL, "pcm save: bad arguments");
    mope_gguf_writer *w = mope_gguf_writer_new();
    if (!w) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int rc = mope_pcm_to_gguf(p, w, tok, err);
    if (!rc) rc = mope_gguf_writer_write(w, path, err);
    mope_gguf_writer_free(w);
    return rc ? mope_error_prefix(err, "saving PCM %s", path) : 0;
}

void mope_pcm_meta_free(mope_pcm_meta *m) {
    if (!m) return;
    free_strs(m->experts, m->K);
    free(m->input_format);
    mope_free(m->head);
    memset(m, 0, sizeof *m);
}

static char *str_of(mope_gguf_str s) {
    char *d = malloc(s.len + 1);
    if (d) {
        memcpy(d, s.ptr, s.len);
        d[s.len] = 0;
    }
    return d;
}

int mope_pcm_meta_read(const mope_gguf *g, mope_pcm_meta *out, mope_error *err) {
    if (!g || !out) return mope_error_set(err, MOPE_EINVAL, "pcm meta: bad arguments");
    memset(out, 0, sizeof *out);
    int64_t kv = mope_gguf_find_key(g, "mope.pcm.experts");
    mope_gguf_type et;
    uint64_t n = 0;
    const void *data;
    if (kv < 0) return mope_error_set(err, MOPE_EFORMAT, "not a PCM: key mope.pcm.experts is missing");
    if (mope_gguf_kv_arr(g, kv, &et, &n, &data) || et != MOPE_GGUF_STRING)
        return mope_error_set(err, MOPE_EFORMAT, "mope.pcm.experts must be an array of strings");
    if (n < 1 || n > MOPE_PCM_MAX_K)
        return mope_error_set(err, MOPE_EFORMAT, "mope.pcm.experts has %llu ids; 1..%d supported",
                              (unsigned long long)n, MOPE_PCM_MAX_K);
    const mope_gguf_tensor *tw = mope_gguf_find_tensor(g, "mope.pcm.head.weight");
    const mope_gguf_tensor *tb = mope_gguf_find_tensor(g, "mope.pcm.head.bias");
    const mope_gguf_tensor *te = mope_gguf_find_tensor(g, "token_embd.weight");
    if (!tw || !tb) return mope_error_set(err, MOPE_EFORMAT, "not a PCM: tensor mope.pcm.head.weight/bias missing");
    if (!te) return mope_error_set(err, MOPE_EFORMAT, "PCM: missing tensor token_embd.weight");
    int K = (int)n;
    int64_t C = te->ne[0];
    if (tw->type != MOPE_TYPE_F32 || tb->type != MOPE_TYPE_F32)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "PCM head tensors must be F32");
    if (tw->n_dims != 2 || tw->ne[0] != C || tw->ne[1] != K || tb->n_dims != 1 || tb->ne[0] != K)
        return mope_error_set(err, MOPE_EFORMAT,
                              "mope.pcm.head.weight has shape [%lld, %lld] and bias [%lld]; expected [%lld, %d] "
                              "and [%d] (n_embd, number of experts)",
                              (long long)tw->ne[0], (long long)tw->ne[1], (long long)tb->ne[0], (long long)C, K, K);
    int rc = 0;
    mope_gguf_str s;
    out->K = K;
    out->n_embd = (int)C;
    out->rule = MOPE_MIX_LINEAR;
    if (mope_gguf_get_str(g, "mope.pcm.rule", &s) == 0) {
        char *r = str_of(s);
        int v = r ? mope_mix_rule_from_name(r, err) : MOPE_ENOMEM;
        free(r);
        if (v < 0) return mope_error_prefix(err, "mope.pcm.rule");
        out->rule = (mope_mix_rule)v;
    }
    out->input_format = mope_gguf_get_str(g, "mope.pcm.input_format", &s) == 0 ? str_of(s) : dup_str(MOPE_PCM_INPUT_FORMAT);
    out->experts = calloc((size_t)K, sizeof(char *));
    out->head = mope_alloc((size_t)K * C + K, sizeof(float));
    if (!out->input_format || !out->experts || !out->head) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int k = 0; k < K && !rc; k++) {
        mope_gguf_str e = mope_gguf_arr_str(g, kv, (uint64_t)k);
        if (!e.ptr || e.len == 0 || memchr(e.ptr, 0, e.len))
            rc = mope_error_set(err, MOPE_EFORMAT, "mope.pcm.experts[%d] is empty or not text", k);
        else if (!(out->experts[k] = str_of(e)))
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    if (!rc) {
        memcpy(out->head, tw->data, sizeof(float) * (size_t)K * C);
        memcpy(out->head + (size_t)K * C, tb->data, sizeof(float) * K);
        for (size_t i = 0; i < (size_t)K * C + K; i++)
            if (!isfinite(out->head[i])) {
                rc = mope_error_set(err, MOPE_EFORMAT, "PCM head holds a non-finite value");
                break;
            }
    }
    if (rc) mope_pcm_meta_free(out);
    return rc;
}

mope_pcm *mope_pcm_from_gguf(const mope_gguf *g, int n_threads, mope_error *err) {
    mope_pcm_meta meta;
    if (mope_pcm_meta_read(g, &meta, err)) return NULL;
    mope_pcm *p = NULL;
    mope_train_model *m = mope_train_model_from_gguf(g, n_threads, err);
    if (m && mope_train_model_config(m)->value_head) {
        mope_error_set(err, MOPE_EFORMAT, "PCM file also holds a value head (a reward model?)");
        mope_train_model_free(m);
        m = NULL;
    }
    if (m && (p = mope_pcm_from_trunk(m, meta.K, (const char *const *)meta.experts, meta.rule, err)))
        memcpy(p->head, meta.head, sizeof(float) * ((size_t)meta.K * meta.n_embd + meta.K));
    mope_pcm_meta_free(&meta);
    return p;
}

mope_pcm *mope_pcm_load(const char *path, int n_threads, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return NULL;
    mope_pcm *p = mope_pcm_from_gguf(g, n_threads, err);
    mope_gguf_close(g);
    if (!p) mope_error_prefix(err, "loading PCM %s", path);
    return p;
}
