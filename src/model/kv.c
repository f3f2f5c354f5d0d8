/* Per-sequence KV caches.  f32 storage: the cache of a small model is small,
 * and f32 keeps incremental decoding bit-compatible with recomputation. */
#include "model/model_internal.h"

#include <stdlib.h>

mope_kv *mope_kv_new(const mope_model *m, int n_seq, int n_ctx, mope_error *err) {
    if (!m) {
        mope_error_set(err, MOPE_EINVAL, "kv cache: no model");
        return NULL;
    }
    if (n_seq <= 0 || n_ctx <= 0) {
        mope_error_set(err, MOPE_EINVAL, "kv cache: n_seq %d and n_ctx %d must be positive", n_seq, n_ctx);
        return NULL;
    }
    const mope_hparams *hp = &m->hp;
    int kv_dim = hp->head_dim * hp->n_head_kv;
    /* elements of K (or V) for all layers, sequences and positions */
    double elems = (double)hp->n_layer * n_seq * (double)n_ctx * kv_dim;
    if (elems * 2 * sizeof(float) > (double)((size_t)1 << 40)) {
        mope_error_set(err, MOPE_ENOMEM, "kv cache: %d sequences x %d positions needs %.1f GiB", n_seq, n_ctx,
                       elems * 8 / (1 << 30));
        return NULL;
    }
    mope_kv *kv = calloc(1, sizeof *kv);
    if (!kv) goto oom;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->n_layer = hp->n_layer;
    kv->kv_dim = kv_dim;
    kv->len = calloc((size_t)n_seq, sizeof(int));
    kv->next = calloc((size_t)n_seq, sizeof(int));
    /* Untouched positions are never read, so the pages may stay unmapped
     * until used: malloc, not a zeroing allocator. */
    kv->k = malloc((size_t)elems * sizeof(float));
    kv->v = malloc((size_t)elems * sizeof(float));
    if (!kv->len || !kv->next || !kv->k || !kv->v) goto oom;
    return kv;
oom:
    mope_kv_free(kv);
    mope_error_set(err, MOPE_ENOMEM, "kv cache: out of memory (%d sequences x %d positions)", n_seq, n_ctx);
    return NULL;
}

void mope_kv_free(mope_kv *kv) {
    if (!kv) return;
    free(kv->len);
    free(kv->next);
    free(kv->k);
    free(kv->v);
    free(kv);
}

int mope_kv_n_seq(const mope_kv *kv) { return kv->n_seq; }
int mope_kv_n_ctx(const mope_kv *kv) { return kv->n_ctx; }

int mope_kv_seq_len(const mope_kv *kv, int seq) {
    if (!kv || seq < 0 || seq >= kv->n_seq) return -1;
    return kv->len[seq];
}

void mope_kv_clear_seq(mope_kv *kv, int seq) {
    if (kv && seq >= 0 && seq < kv->n_seq) kv->len[seq] = 0;
}

void mope_kv_clear(mope_kv *kv) {
    if (kv) memset(kv->len, 0, sizeof(int) * (size_t)kv->n_seq);
}

int mope_kv_seq_truncate(mope_kv *kv, int seq, int n_keep, mope_error *err) {
    if (!kv || seq < 0 || seq >= kv->n_seq)
        return mope_error_set(err, MOPE_EINVAL, "kv cache: sequence %d out of range", seq);
    if (n_keep < 0 || n_keep > kv->len[seq])
        return mope_error_set(err, MOPE_EINVAL, "kv cache: cannot keep %d positions of sequence %d (length %d)",
                              n_keep, seq, kv->len[seq]);
    kv->len[seq] = n_keep;
    return 0;
}

int mope_kv_seq_copy(mope_kv *kv, int dst, int src, mope_error *err) {
    if (!kv || dst < 0 || dst >= kv->n_seq || src < 0 || src >= kv->n_seq)
        return mope_error_set(err, MOPE_EINVAL, "kv cache: sequence %d or %d out of range", dst, src);
    if (dst == src) return 0;
    size_t bytes = (size_t)kv->len[src] * kv->kv_dim * sizeof(float);
    for (int il = 0; il < kv->n_layer; il++) {
        if (bytes) {
            memcpy(mope_kv_k_at(kv, il, dst, 0), mope_kv_k_at(kv, il, src, 0), bytes);
            memcpy(mope_kv_v_at(kv, il, dst, 0), mope_kv_v_at(kv, il, src, 0), bytes);
        }
    }
    kv->len[dst] = kv->len[src];
    return 0;
}
