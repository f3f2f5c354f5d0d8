/* Transformer inference for llama-family GGUF models (llama, qwen2):
 * loading (weights used in place from the mmap), per-sequence KV caches and
 * a batched forward pass.
 *
 * The forward pass takes a batch of rows (sequence, token, position,
 * adapter, want_logits).  One pass over the weights serves every row, so
 * rollouts, server requests and experts that share weights should be put in
 * one batch (DESIGN.md §4, §6).
 *
 * Threading: a mope_model holds scratch buffers, so one model runs one
 * forward at a time (calls on the same model, or with the same cache, must
 * not overlap); different models may run concurrently.  The parallelism is
 * the mope_pool passed in (NULL = the calling thread only).  Matrix products with few rows quantise
 * the activations and use the integer dot kernels (mope_vec_dot); large
 * batches (>= 8 rows for f32 weights, 64 for f16/bf16, 128 for quantised
 * types) use OpenBLAS sgemm on tiles of dequantised weights, each pool
 * thread on its own tiles.  mope parallelises over its own pool only, so it
 * sets OpenBLAS to one thread (openblas_set_num_threads(1), process-wide)
 * the first time it uses sgemm. */
#ifndef MOPE_MODEL_H
#define MOPE_MODEL_H

#include "mope/core.h"
#include "mope/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mope_arch { MOPE_ARCH_LLAMA = 0, MOPE_ARCH_QWEN2 = 1 } mope_arch;

/* NORMAL: rotate adjacent pairs (x[2i], x[2i+1]) -- llama GGUFs.
 * NEOX: rotate half-split pairs (x[i], x[i + n_rot/2]) -- qwen2.
 * The values are ggml's. */
typedef enum mope_rope_mode { MOPE_ROPE_NORMAL = 0, MOPE_ROPE_NEOX = 2 } mope_rope_mode;

typedef struct mope_hparams {
    mope_arch arch;
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;       /* < n_head: grouped-query attention */
    int head_dim;        /* usually n_embd / n_head */
    int n_ff;
    int n_ctx_train;     /* {arch}.context_length */
    int n_rot;           /* rotated dims per head ({arch}.rope.dimension_count), <= head_dim, even */
    float rope_freq_base;
    float rope_freq_scale; /* linear scaling: 1 / {arch}.rope.scaling.factor; 1 = none */
    float rms_eps;
    mope_rope_mode rope_mode; /* follows the architecture */
    bool has_qkv_bias;   /* qwen2 */
    bool tied_output;    /* no output.weight: logits use token_embd.weight */
} mope_hparams;

const char *mope_arch_name(mope_arch a);   /* "llama", "qwen2" */
int mope_arch_from_name(const char *name); /* -1 if not supported */

/* Fills hp with a small, valid model of architecture `arch` (for tests and
 * demos; callers adjust fields): vocab 512, 64 wide, 2 layers, 4 heads,
 * 2 KV heads, FFN 128, context 256; qwen2 gets QKV bias and NEOX rope. */
void mope_hparams_init(mope_hparams *hp, mope_arch arch);
/* Checks the fields are consistent (positive sizes, n_head % n_head_kv == 0,
 * n_rot even and <= head_dim, ...). */
int mope_hparams_check(const mope_hparams *hp, mope_error *err);

typedef struct mope_model mope_model;

/* Opens a GGUF model (mmap; weights are used in place, never copied).
 * Each tensor may have any supported type (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
 * Q8_0, Q4_K, Q5_K, Q6_K); norms and biases (copied to f32 at load) may be
 * of any of them too.  Fails with a message naming
 * the tensor for a missing or mis-shaped tensor, and with "file has no model
 * weights (vocab-only?)" for a tokenizer-only file. */
mope_model *mope_model_load(const char *path, mope_error *err);
/* Builds a model over an open reader.  With take_ownership the model closes
 * g when freed -- and also when this call fails, so the caller never closes
 * it; without, g is borrowed and must outlive the model. */
mope_model *mope_model_from_gguf(mope_gguf *g, bool take_ownership, mope_error *err);
void mope_model_free(mope_model *m);

const mope_hparams *mope_model_hparams(const mope_model *m);
/* The underlying file (tokenizer keys, extra tensors); owned by the model or
 * borrowed, see mope_model_from_gguf. */
const mope_gguf *mope_model_gguf(const mope_model *m);
/* Bytes of weights read by one forward pass (for bandwidth figures). */
size_t mope_model_weight_bytes(const mope_model *m);

/* ---- KV cache ----
 * n_seq independent sequences of up to n_ctx positions each; f32 storage of
 * K (after RoPE) and V for every layer.  Each sequence has a length: the
 * number of positions stored, advanced by mope_model_forward. */
typedef struct mope_kv mope_kv;

mope_kv *mope_kv_new(const mope_model *m, int n_seq, int n_ctx, mope_error *err);
void mope_kv_free(mope_kv *kv);
int mope_kv_n_seq(const mope_kv *kv);
int mope_kv_n_ctx(const mope_kv *kv);
/* Current length of sequence seq (-1 if seq is out of range). */
int mope_kv_seq_len(const mope_kv *kv, int seq);
/* Empties sequence seq (no-op when out of range). */
void mope_kv_clear_seq(mope_kv *kv, int seq);
void mope_kv_clear(mope_kv *kv);
/* Keeps the first n_keep positions of seq (0 <= n_keep <= length): rewinds
 * a sequence, e.g. to resample from a shared prefix. */
int mope_kv_seq_truncate(mope_kv *kv, int seq, int n_keep, mope_error *err);
/* Makes dst a copy of src (contents and length), e.g. to fork several
 * rollouts from one evaluated prompt. */
int mope_kv_seq_copy(mope_kv *kv, int dst, int src, mope_error *err);

/* ---- forward ---- */
typedef struct mope_row {
    int seq;          /* sequence (KV cache slot), 0 <= seq < n_seq */
    int32_t token;    /* 0 <= token < n_vocab */
    int pos;          /* position of this token in its sequence, see below */
    int adapter;      /* LoRA adapter id from mope_model_add_adapter (mope/lora.h); -1 = base only */
    bool want_logits; /* write this row's logits */
} mope_row;

/* Runs the rows through the model, appending each row's K/V to its
 * sequence, and writes n_vocab logits for every row with want_logits into
 * logits_out, consecutively in row order (logits_out may be NULL when no
 * row wants logits).
 *
 * Position rule: rows of a sequence are taken in row order and each must
 * continue the sequence: the first row of seq s in the batch has pos equal to
 * mope_kv_seq_len(kv, s), the next pos + 1, and so on (rows of different
 * sequences may be interleaved).  A row attends to its own sequence's
 * positions 0..pos (cache and earlier rows of the batch).  Everything is
 * checked before any work is done: on an error (bad seq, token, position,
 * adapter, context full) nothing is changed. */
int mope_model_forward(mope_model *m, mope_kv *kv, const mope_row *rows, int n_rows, float *logits_out,
                       mope_pool *pool, mope_error *err);
/* Same, also writing n_embd floats per want_logits row into hidden_out: the
 * final hidden state after output_norm (what the output matrix reads; used
 * by reward heads).  Either output may be NULL. */
int mope_model_forward_ex(mope_model *m, mope_kv *kv, const mope_row *rows, int n_rows, float *logits_out,
                          float *hidden_out, mope_pool *pool, mope_error *err);

/* ---- random models (src/model/random.c) ----
 * Writes a GGUF model with the hyper-parameters hp and random weights
 * (N(0, 0.02) matrices, norms near 1, small biases) stored as wtype (the
 * embedding too; norms and biases stay F32), reproducible from seed.
 * Matrix row lengths (n_embd, n_ff, n_head * head_dim) must be multiples of
 * wtype's block size.  The tokenizer keys (tokenizer.*) are copied from
 * tokenizer_src when given (hp->n_vocab must then equal its token count, or
 * be 0 to take it); otherwise a SentencePiece-style (`llama`) vocabulary is
 * written: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, "▁" and
 * single characters, then ~500 frequent English words as "▁word" pieces
 * (with every prefix, so SentencePiece merging reaches them), capitalised,
 * then with -s/-ed/-ing/-er/-ly, until n_vocab is reached; <unused_N>
 * fillers beyond ~7300 tokens (n_vocab >= 259). */
int mope_model_write_random(const char *path, const mope_hparams *hp, mope_type wtype, uint64_t seed,
                            const mope_gguf *tokenizer_src, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
