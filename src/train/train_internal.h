/* Internals of the train module: the model struct, views of the flat
 * parameter / gradient buffers, and the layer kernels (layers.c), each
 * forward next to its backward. */
#ifndef MOPE_TRAIN_INTERNAL_H
#define MOPE_TRAIN_INTERNAL_H

#include "mope/train.h"

/* Pointers of one transformer block into a flat buffer (params or grads). */
typedef struct tlayer {
    float *attn_norm; /* [C] */
    float *wq;        /* [QD, C] (out, in) */
    float *wk, *wv;   /* [KD, C] */
    float *wo;        /* [C, QD] */
    float *ffn_norm;  /* [C] */
    float *wg, *wu;   /* [F, C] */
    float *wd;        /* [C, F] */
} tlayer;

typedef struct tweights {
    float *embd;     /* [V, C] */
    tlayer *layer;   /* [L] */
    float *out_norm; /* [C] */
    float *out;      /* [V, C]; == embd when tied */
    float *vh_w;     /* [C] or NULL */
    float *vh_b;     /* [1] or NULL */
} tweights;

/* Saved activations of one forward (N = B*T rows); per-layer arrays hold
 * n_layer consecutive blocks. */
typedef struct tacts {
    float *res;    /* [L+1][N, C] residual stream entering each block; [L] = last */
    float *xn1;    /* [L][N, C] attn_norm output */
    float *rstd1;  /* [L][N] */
    float *q;      /* [L][N, QD] after RoPE */
    float *k;      /* [L][N, KD] after RoPE */
    float *v;      /* [L][N, KD] */
    float *att;    /* [L][B, H, T, T] softmax probabilities (causal, upper part 0) */
    float *yatt;   /* [L][N, QD] attention output before attn_output */
    float *mid;    /* [L][N, C] residual after attention */
    float *xn2;    /* [L][N, C] ffn_norm output */
    float *rstd2;  /* [L][N] */
    float *gate;   /* [L][N, F] */
    float *up;     /* [L][N, F] */
    float *hmlp;   /* [L][N, F] silu(gate) * up */
    float *xf;     /* [N, C] output_norm output */
    float *rstdf;  /* [N] */
    float *logits; /* [N, V] (LM mode only); dlogits after backward */
    float *lse;    /* [N] log-sum-exp of each logits row */
    float *nll;    /* [N] */
} tacts;

/* Backward scratch. */
typedef struct tgrads {
    float *dres;  /* [N, C] gradient of the residual stream */
    float *dxn;   /* [N, C] */
    float *dy;    /* [N, QD] */
    float *dq;    /* [N, QD] */
    float *dk;    /* [N, KD] */
    float *dv;    /* [N, KD] */
    float *dfa;   /* [N, F] */
    float *dfb;   /* [N, F] */
    float *thr;   /* [n_threads, (hd+1) T] per-thread attention scratch */
} tgrads;

/* Row kernels of attention; every loop is vertical (no lane sums) so
 * results do not depend on the work split. */
typedef struct tl_kernels {
    /* s[j] = sum_d q[d] kt[d*ldk + j] for j < n (kt: keys transposed, [hd][ldk]) */
    void (*rowdot)(float *s, const float *q, const float *kt, size_t ldk, int n, int hd);
    /* y[d] = sum_j p[j] x[j*ldx + d] for d < hd */
    void (*wsum)(float *y, const float *p, const float *x, size_t ldx, int n, int hd);
    /* x[j*ldx + d] += a[j] y[d] for j < n, d < hd */
    void (*outer_acc)(float *x, size_t ldx, const float *a, const float *y, int n, int hd);
    const char *name;
} tl_kernels;

extern const tl_kernels tl_kernels_scalar;
extern const tl_kernels tl_kernels_avx2; /* attn_avx2.c */
/* AVX2 + FMA when the CPU has them, else scalar. */
const tl_kernels *tl_kernels_best(void);

enum { TMODE_NONE = 0, TMODE_LM = 1, TMODE_VALUE = 2, TMODE_HIDDEN = 3 };

/* ---- LoRA (lora.c, lora_io.c) ----
 * Adapted linears are numbered id = layer * TL_NLIN + slot, and the output
 * head is id = n_layer * TL_NLIN. */
enum { TL_Q, TL_K, TL_V, TL_O, TL_GATE, TL_UP, TL_DOWN, TL_NLIN };

typedef struct tlora_lin {
    float *a, *b;   /* A [r, n_in], B [n_out, r] in the adapter buffer; NULL when not adapted */
    float *ga, *gb; /* their gradients */
    int n_in, n_out;
    float *u;       /* saved A drop(x) of the last forward, [N, r] */
} tlora_lin;

typedef struct tlora {
    int rank;
    float alpha, scale, dropout;
    unsigned targets;
    uint64_t seed;
    uint64_t pass;   /* forwards run so far: selects the dropout mask */
    size_t n_params;
    float *params, *grads;
    int n_tensors;
    mope_train_tensor *tensors;
    int n_lin;
    tlora_lin *lin;
    float *buf;      /* u of every adapted linear + scratch */
    size_t buf_cap;
    float *du;       /* [N, r] */
    float *xd, *dxd; /* [N, max n_in]: dropped input, its gradient */
} tlora;

/* lora.c: sizes the saved activations for N rows (called by tm_prepare). */
int tlora_prepare(mope_train_model *m, size_t N, mope_error *err);
/* Starts a forward pass (new dropout mask). */
void tlora_begin(mope_train_model *m);
/* out[N, n_out] += s B A drop(in) for linear id (no-op when not adapted). */
void tlora_fwd(mope_train_model *m, int id, float *out, const float *in, int N);
/* dA, dB += ...; din[N, n_in] += the adapter path's input gradient. */
void tlora_bwd(mope_train_model *m, int id, float *din, const float *dout, const float *in, int N);
/* Dropout multiplier (0 or 1 / (1 - p)) of element idx of linear id's
 * input in the current pass; 1 when dropout is off. */
float tlora_drop_factor(const tlora *lo, int id, size_t idx);
/* Name of base linear id ("blk.3.attn_q.weight", "output.weight"). */
void tlora_base_name(const mope_train_model *m, int id, char *out, size_t cap);
/* lora_io.c: the adapter part of a checkpoint (nothing without one);
 * ckpt_read attaches the stored adapter when the file has one. */
int tlora_ckpt_add(const mope_train_model *m, mope_gguf_writer *w, mope_error *err);
int tlora_ckpt_read(mope_train_model *m, const mope_gguf *g, mope_error *err);
/* The trainable table: adapter tensors with an adapter, else the model's. */
void tm_trainable(mope_train_model *m, const mope_train_tensor **t, int *n_t, float **p, float **g, size_t *n);

struct mope_train_model {
    mope_train_config cfg;
    int hd, qd, kd; /* head_dim, n_head*hd, n_head_kv*hd */
    size_t n_params;
    float *params, *grads;
    tweights w, g;
    int n_tensors;
    mope_train_tensor *tensors;
    float *rope_cos, *rope_sin; /* [n_ctx, hd/2] */
    mope_pool *pool;
    mope_pool *gemm_pool; /* = pool; tests set NULL: unsplit sgemms, thread-count-free bits */
    int n_threads;
    const tl_kernels *kern; /* attention row kernels (tests may swap them) */

    /* the last forward */
    int mode, B, T;
    float *buf;      /* activations + scratch */
    size_t buf_cap;  /* floats */
    tacts a;
    tgrads d;
    int32_t *tok, *tgt, *len; /* copies of the inputs */
    float *wgt;
    size_t in_cap, len_cap;
    double wsum;     /* sum of weights over positions with a target */
    tlora *lora;     /* NULL: no adapter, base trainable */
};

struct mope_trainer {
    mope_train_model *model;
    mope_adamw_config cfg;
    float *m, *v;  /* AdamW moments, n_opt each */
    size_t n_opt;  /* trainable floats when the trainer was made */
    int64_t step;  /* updates done */
    mope_rng rng;
};

/* model.c: a model with its tensor table; with allocate false only the
 * table (no buffers, no pool), to check a file before allocating. */
mope_train_model *tm_create(const mope_train_config *c, int n_threads, bool allocate, mope_error *err);

/* model.c: sizes the activation buffer for a B x T batch in mode and binds
 * m->a, m->d (and the input copies) to it. */
int tm_prepare(mope_train_model *m, int mode, int B, int T, mope_error *err);

/* adamw_avx2.c: mope_train_adamw_update's loop over the first n - n % 8
 * elements, bit for bit; returns how many it did. */
size_t tl_adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float bc1,
                     float bc2, float shrink, float lr, float eps);

/* layers.c: pool-parallel kernels.  Linear maps use cblas_sgemm with W
 * stored (out, in), split over the pool (tl_sgemm) with OpenBLAS itself
 * on one thread. */
/* C[M, N] = alpha op(A) op(B) + beta C, row-major, op = transpose when ta /
 * tb; rows (or columns) of C split over the pool's threads (p NULL: one
 * call on this thread). */
void tl_sgemm(mope_pool *p, bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* out[N, NO] = in[N, NI] W^T (+ out when acc) */
void tl_linear_fwd(mope_pool *p, float *out, const float *in, const float *W, int N, int NI, int NO, bool acc);
/* din[N, NI] (= or += when din_acc) dout W; dW[NO, NI] += dout^T in. din
 * may be NULL; dW NULL (frozen weight) skips its sgemm. */
void tl_linear_bwd(mope_pool *p, float *din, float *dW, const float *dout, const float *in, const float *W, int N,
                   int NI, int NO, bool din_acc);

void tl_embed_fwd(mope_pool *p, float *out, const float *wte, const int32_t *tok, int N, int C);
void tl_embed_bwd(mope_pool *p, float *dwte, const float *dout, const int32_t *tok, int N, int C);

void tl_rmsnorm_fwd(mope_pool *p, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* dx += ..., dw += ... (dw NULL: frozen, skipped) */
void tl_rmsnorm_bwd(mope_pool *p, float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                    const float *w, int N, int C);

/* In place over x[N, nh*hd]; position of row n is n % T. */
void tl_rope_fwd(mope_pool *p, float *x, int N, int T, int nh, int hd, const float *cosv, const float *sinv);
void tl_rope_bwd(mope_pool *p, float *dx, int N, int T, int nh, int hd, const float *cosv, const float *sinv);

/* thr: n_threads blocks of (hd+1)*T floats of scratch. */
void tl_attn_fwd(mope_pool *p, const tl_kernels *kn, float *thr, float *y, float *att, const float *q, const float *k,
                 const float *v, int B, int T, int H, int KH, int hd);
/* dq, dk, dv are overwritten. */
void tl_attn_bwd(mope_pool *p, const tl_kernels *kn, float *thr, float *dq, float *dk, float *dv, const float *dy,
                 const float *att, const float *q, const float *k, const float *v, int B, int T, int H, int KH, int hd);

void tl_swiglu_fwd(mope_pool *p, float *h, const float *gate, const float *up, size_t n);
/* dgate may alias dh. */
void tl_swiglu_bwd(mope_pool *p, float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                   size_t n);

/* Fills lse[N] and nll[N] (0 where target < 0); returns sum w_n * nll_n. */
double tl_ce_fwd(mope_pool *p, float *lse, float *nll, const float *logits, const int32_t *tgt, const float *wgt,
                 int N, int V);
/* logits -> coef * w_n * (softmax - onehot) in place (0 rows where ignored). */
void tl_ce_bwd(mope_pool *p, float *logits, const float *lse, const int32_t *tgt, const float *wgt, int N, int V,
               float coef);

#endif
