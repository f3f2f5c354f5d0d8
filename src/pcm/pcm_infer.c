/* PCM inference on the engine: the trunk runs in mope_model with a KV cache,
 * so each new response token costs one trunk row; the head is applied to
 * the hidden state of each sequence's last fed token. */
#include <stdlib.h>
#include <string.h>

#include "mope/pcm.h"

typedef struct {
    int32_t *q;     /* queued tokens not yet run */
    int nq, cap;
    bool started;
    bool fresh;     /* w holds the weights after everything fed */
    float w[MOPE_PCM_MAX_K];
} pcm_seq;

struct mope_pcm_infer {
    mope_model *model;
    mope_kv *kv;
    mope_pool *pool;
    mope_pcm_meta meta;
    mope_tokenizer *tok; /* NULL when the file has no tokenizer */
    int n_seq;
    pcm_seq *seqs;
    mope_row *rows;
    int rows_cap;
    float *hid;          /* n_seq x C */
    int *which;          /* sequences whose hidden state is row i of hid */
    void *image;         /* the in-memory GGUF of mope_pcm_to_infer (freed after the model) */
};

mope_pcm_infer *mope_pcm_infer_from_gguf(mope_gguf *g, bool take_ownership, int n_seq, int n_ctx, mope_pool *pool,
                                         mope_error *err) {
    if (!g || n_seq < 1 || n_ctx < 0) {
        mope_error_set(err, MOPE_EINVAL, "pcm infer: bad arguments (n_seq %d, n_ctx %d)", n_seq, n_ctx);
        if (g && take_ownership) mope_gguf_close(g);
        return NULL;
    }
    mope_pcm_infer *pi = calloc(1, sizeof *pi);
    if (!pi) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (take_ownership) mope_gguf_close(g);
        return NULL;
    }
    pi->pool = pool;
    pi->n_seq = n_seq;
    /* meta first: a file without a head fails with "not a PCM" rather than
     * loading as a plain language model */
    if (mope_pcm_meta_read(g, &pi->meta, err)) {
        if (take_ownership) mope_gguf_close(g);
        goto fail;
    }
    if (!(pi->model = mope_model_from_gguf(g, take_ownership, err))) goto fail;
    const mope_hparams *hp = mope_model_hparams(pi->model);
    if (hp->n_embd != pi->meta.n_embd) {
        mope_error_set(err, MOPE_EFORMAT, "PCM head width %d differs from the trunk's %d", pi->meta.n_embd,
                       hp->n_embd);
        goto fail;
    }
    if (!(pi->kv = mope_kv_new(pi->model, n_seq, n_ctx > 0 ? n_ctx : hp->n_ctx_train, err))) goto fail;
    if (mope_gguf_find_key(g, "tokenizer.ggml.tokens") >= 0 && !(pi->tok = mope_tokenizer_from_gguf(g, err)))
        goto fail;
    pi->seqs = calloc((size_t)n_seq, sizeof *pi->seqs);
    pi->hid = mope_alloc((size_t)n_seq * hp->n_embd, sizeof(float));
    pi->which = calloc((size_t)n_seq, sizeof(int));
    if (!pi->seqs || !pi->hid || !pi->which) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto fail;
    }
    return pi;
fail:
    mope_pcm_infer_free(pi);
    return NULL;
}

mope_pcm_infer *mope_pcm_infer_load(const char *path, int n_seq, int n_ctx, mope_pool *pool, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return NULL;
    mope_pcm_infer *pi = mope_pcm_infer_from_gguf(g, true, n_seq, n_ctx, pool, err);
    if (!pi) mope_error_prefix(err, "loading PCM %s", path);
    return pi;
}

void mope_pcm_infer_free(mope_pcm_infer *pi) {
    if (!pi) return;
    if (pi->seqs)
        for (int s = 0; s < pi->n_seq; s++) free(pi->seqs[s].q);
    free(pi->seqs);
    free(pi->rows);
    free(pi->which);
    mope_free(pi->hid);
    mope_kv_free(pi->kv);
    mope_model_free(pi->model);
    mope_free(pi->image);
    mope_tokenizer_free(pi->tok);
    mope_pcm_meta_free(&pi->meta);
    free(pi);
}

const mope_pcm_meta *mope_pcm_infer_meta(const mope_pcm_infer *pi) { return &pi->meta; }
const mope_tokenizer *mope_pcm_infer_tokenizer(const mope_pcm_infer *pi) { return pi->tok; }

static int check_seq(const mope_pcm_infer *pi, int seq, mope_error *err) {
    if (!pi) return mope_error_set(err, MOPE_EINVAL, "pcm infer: NULL handle");
    if (seq < 0 || seq >= pi->n_seq)
        return mope_error_set(err, MOPE_EINVAL, "pcm infer: sequence %d out of range [0, %d)", seq, pi->n_seq);
    return 0;
}

static int enqueue(mope_pcm_infer *pi, int seq, const int32_t *t, int n, mope_error *err) {
    if (!t || n < 1) return mope_error_set(err, MOPE_EINVAL, "pcm infer: no tokens to feed");
    int32_t nv = mope_model_hparams(pi->model)->n_vocab;
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= nv)
            return mope_error_set(err, MOPE_EINVAL, "pcm infer: token %d out of range [0, %d)", (int)t[i], (int)nv);
    pcm_seq *s = &pi->seqs[seq];
    int have = mope_kv_seq_len(pi->kv, seq) + s->nq;
    if (have + n > mope_kv_n_ctx(pi->kv))
        return mope_error_set(err, MOPE_ERANGE, "pcm infer: sequence %d would hold %d tokens; context is %d", seq,
                              have + n, mope_kv_n_ctx(pi->kv));
    if (s->nq + n > s->cap) {
        int cap = s->cap ? s->cap : 64;
        while (cap < s->nq + n) cap *= 2;
        int32_t *q = realloc(s->q, sizeof(int32_t) * (size_t)cap);
        if (!q) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        s->q = q;
        s->cap = cap;
    }
    memcpy(s->q + s->nq, t, sizeof(int32_t) * (size_t)n);
    s->nq += n;
    s->fresh = false;
    return 0;
}

int mope_pcm_infer_start(mope_pcm_infer *pi, int seq, const int32_t *prompt, int n, mope_error *err) {
    int rc = check_seq(pi, seq, err);
    if (rc) return rc;
    mope_kv_clear_seq(pi->kv, seq);
    pi->seqs[seq].nq = 0;
    pi->seqs[seq].started = false;
    if ((rc = enqueue(pi, seq, prompt, n, err))) return rc;
    pi->seqs[seq].started = true;
    return 0;
}

int mope_pcm_infer_start_text(mope_pcm_infer *pi, int seq, const char *instruction, const char *preference,
                              mope_error *err) {
    int rc = check_seq(pi, seq, err);
    if (rc) return rc;
    if (!pi->tok) return mope_error_set(err, MOPE_EINVAL, "pcm infer: the PCM file has no tokenizer");
    int32_t *t = NULL;
    int n = mope_pcm_prompt_tokens(pi->tok, instruction, preference, &t, err);
    if (n < 0) return n;
    rc = mope_pcm_infer_start(pi, seq, t, n, err);
    free(t);
    return rc;
}

int mope_pcm_infer_feed(mope_pcm_infer *pi, int seq, const int32_t *tokens, int n, mope_error *err) {
    int rc = check_seq(pi, seq, err);
    if (rc) return rc;
    if (!pi->seqs[seq].started) return mope_error_set(err, MOPE_ESTATE, "pcm infer: sequence %d was not started", seq);
    return enqueue(pi, seq, tokens, n, err);
}

int mope_pcm_infer_eval(mope_pcm_infer *pi, mope_error *err) {
    if (!pi) return mope_error_set(err, MOPE_EINVAL, "pcm infer: NULL handle");
    int n = 0;
    for (int s = 0; s < pi->n_seq; s++) n += pi->seqs[s].nq;
    if (n == 0) return 0;
    if (n > pi->rows_cap) {
        mope_row *r = realloc(pi->rows, sizeof(mope_row) * (size_t)n);
        if (!r) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        pi->rows = r;
        pi->rows_cap = n;
    }
    int nr = 0, want = 0, *which = pi->which;
    for (int s = 0; s < pi->n_seq; s++) {
        pcm_seq *q = &pi->seqs[s];
        if (!q->nq) continue;
        int pos = mope_kv_seq_len(pi->kv, s);
        for (int i = 0; i < q->nq; i++)
            pi->rows[nr++] = (mope_row){.seq = s, .token = q->q[i], .pos = pos + i, .adapter = -1,
                                        .want_logits = i == q->nq - 1};
        which[want++] = s;
    }
    /* The engine checks everything before it changes anything, so a failed
     * call leaves every cache as it was and the queues intact. */
    int rc = mope_model_forward_ex(pi->model, pi->kv, pi->rows, nr, NULL, pi->hid, pi->pool, err);
    if (rc) return rc;
    const int K = pi->meta.K, C = pi->meta.n_embd;
    for (int i = 0; i < want; i++) {
        pcm_seq *q = &pi->seqs[which[i]];
        mope_pcm_head_apply(pi->meta.head, pi->meta.head + (size_t)K * C, pi->hid + (size_t)i * C, C, K, q->w);
        q->nq = 0;
        q->fresh = true;
    }
    return 0;
}

int mope_pcm_infer_weights(mope_pcm_infer *pi, int seq, float *w, mope_error *err) {
    int rc = check_seq(pi, seq, err);
    if (rc) return rc;
    if (!w) return mope_error_set(err, MOPE_EINVAL, "pcm infer: NULL output");
    pcm_seq *s = &pi->seqs[seq];
    if (!s->started) return mope_error_set(err, MOPE_ESTATE, "pcm infer: sequence %d was not started", seq);
    if (!s->fresh && (rc = mope_pcm_infer_eval(pi, err))) return rc;
    memcpy(w, s->w, sizeof(float) * (size_t)pi->meta.K);
    return 0;
}

mope_pcm_infer *mope_pcm_to_infer(const mope_pcm *p, const mope_tokenizer *tok, int n_seq, int n_ctx,
                                  mope_pool *pool, mope_error *err) {
    mope_gguf_writer *w = mope_gguf_writer_new();
    void *buf = NULL, *image = NULL;
    size_t size = 0;
    if (!w) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    int rc = mope_pcm_to_gguf(p, w, tok, err);
    if (!rc) rc = mope_gguf_writer_to_memory(w, &buf, &size, err);
    mope_gguf_writer_free(w);
    /* the engine reads weights in place: give them the alignment a mapped
     * file would have */
    if (!rc && !(image = mope_alloc(size, 1))) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) memcpy(image, buf, size);
    free(buf);
    if (rc) {
        mope_free(image);
        return NULL;
    }
    mope_gguf *g = mope_gguf_open_memory(image, size, err);
    if (!g) {
        mope_free(image);
        return NULL;
    }
    mope_pcm_infer *pi = mope_pcm_infer_from_gguf(g, true, n_seq, n_ctx, pool, err);
    if (!pi) {
        mope_free(image);
        return NULL;
    }
    pi->image = image;
    return pi;
}
