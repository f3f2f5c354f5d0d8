/* Internals of the model module, shared by its .c files and its tests. */
#ifndef MOPE_MODEL_INTERNAL_H
#define MOPE_MODEL_INTERNAL_H

#include "mope/model.h"
#include "mope/quant.h"

/* A weight matrix in place in the mapping: ne1 rows of ne0 elements. */
typedef struct mope_wmat {
    const char *name;
    const void *data;
    mope_type type;
    int64_t ne0, ne1;
    size_t row_bytes;
} mope_wmat;

typedef struct mope_layer {
    float *attn_norm, *ffn_norm;   /* owned copies (f32, aligned) */
    float *bq, *bk, *bv;           /* owned, NULL without QKV bias */
    mope_wmat wq, wk, wv, wo, gate, up, down;
} mope_layer;

/* Per-forward scratch, grown on demand and kept between calls so a decode
 * step allocates nothing. */
typedef struct mope_scratch {
    int cap_rows;   /* rows the row buffers hold */
    int cap_thr;    /* threads the per-thread buffers hold */
    int cap_ctx;    /* positions the score buffers hold */
    float *x, *xn, *q, *k, *v, *att, *ff_gate, *ff_up, *rope; /* row buffers */
    float *hid;     /* gathered normed rows that want logits */
    int *want_idx;  /* indices of those rows */
    void *xq;       /* quantised activations: cap_rows * xq_stride bytes */
    size_t xq_stride;
    float *scores;  /* cap_thr * cap_ctx */
    float *tiles;   /* cap_thr * tile_floats (sgemm path) */
    size_t tile_floats;
} mope_scratch;

struct mope_model {
    mope_gguf *g;
    bool own_g;
    mope_hparams hp;
    mope_wmat tok_embd, output;
    float *output_norm;
    mope_layer *layers;
    double *inv_freq;    /* n_rot/2 RoPE frequencies (times freq_scale) */
    int gemm_min_rows;   /* > 0: batches of at least this many rows use sgemm; 0: by type */
    int64_t rows_run;    /* rows through forward since load (mope_model_rows_run) */
    mope_scratch s;
    struct mope_lora_set *lora; /* attached LoRA adapters (src/model/lora_attach.c); NULL = none */
};

struct mope_kv {
    int n_seq, n_ctx, n_layer, kv_dim;
    int *len;            /* per sequence */
    int *next;           /* per sequence, scratch of the forward's row checks */
    float *k, *v;        /* [n_layer][n_seq][n_ctx][kv_dim] */
};

static inline float *mope_kv_k_at(const mope_kv *kv, int layer, int seq, int pos) {
    return kv->k + (((size_t)layer * kv->n_seq + seq) * kv->n_ctx + pos) * kv->kv_dim;
}
static inline float *mope_kv_v_at(const mope_kv *kv, int layer, int seq, int pos) {
    return kv->v + (((size_t)layer * kv->n_seq + seq) * kv->n_ctx + pos) * kv->kv_dim;
}

/* y[i*ldy + j] = dot(row j of W, x[i*ldx ..]) for i < n_rows, j < W.ne1. */
int mope_matmul(mope_model *m, const mope_wmat *w, const float *x, int64_t ldx, int n_rows, float *y,
                int64_t ldy, mope_pool *pool, mope_error *err);
/* The same for up to 3 weights reading the same x (same ne0): one
 * quantisation of x and one dispatch for all of them. */
int mope_matmul_n(mope_model *m, int n_w, const mope_wmat *const *w, const float *x, int64_t ldx, int n_rows,
                  float *const *y, const int64_t *ldy, mope_pool *pool, mope_error *err);
/* Grows the scratch for n_rows rows, nth threads and n_ctx positions. */
int mope_scratch_reserve(mope_model *m, int n_rows, int nth, int n_ctx, mope_error *err);
void mope_scratch_free(mope_scratch *s);

/* Tests force the matmul path: rows >= min_rows use sgemm (0 = the
 * per-type default). */
void mope_model_set_gemm_min_rows(mope_model *m, int min_rows);

/* Rows run through the forward pass since load, prefill and decode, every
 * adapter's alike: what bench_mope divides by the tokens generated. */
int64_t mope_model_rows_run(const mope_model *m);

#endif
