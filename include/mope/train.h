/* Training in C: a trainable f32 llama-family model (forward with saved
 * activations, backward of every layer), AdamW with warmup + cosine
 * schedule, global-norm clipping, gradient accumulation, and GGUF
 * save / load / checkpoint.
 *
 * This is a separate f32 implementation from the inference engine (module
 * model): all parameters live in one contiguous buffer and their gradients in
 * another, so the optimiser is one loop over flat arrays.  The files it
 * writes use llama.cpp's names, shapes and keys (architecture `llama`, RoPE
 * NORMAL = adjacent pairs), so the inference engine loads them (tested) and
 * llama.cpp should (same names, shapes and keys; not tested here).
 *
 * Shapes below: B sequences of T tokens, N = B*T rows, C = n_embd,
 * V = n_vocab.  Matrices are stored row-major as (out, in), i.e. GGUF
 * ne = [in, out].
 *
 * Threading: each model owns a mope_pool of n_threads (attention, norms,
 * element-wise ops) and sets OpenBLAS to the same count before its sgemm
 * calls.  Results are bit-identical for the same inputs, seed and thread
 * count.  mope's own kernels give the same bits for any thread count; only
 * OpenBLAS's multi-threaded sgemm rounds differently from its one-thread
 * path (measured: 1 thread differs from 2, 3 and 4, which agree).
 * A model runs one pass at a time: calls on one model must not overlap.
 *
 * Memory: the forward keeps every activation for the backward, including
 * the attention probabilities (n_layer x B x n_head x T x T floats), so
 * long sequences cost quadratic memory. */
#ifndef MOPE_TRAIN_H
#define MOPE_TRAIN_H

#include "mope/core.h"
#include "mope/gguf.h"
#include "mope/lora.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mope_train_config {
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;      /* divides n_head; < n_head is grouped-query attention */
    int n_ff;
    int n_ctx;          /* longest sequence (RoPE table size) */
    float rope_freq_base;
    float rms_eps;
    bool tied_output;   /* logits use token_embd.weight; no output.weight */
    bool value_head;    /* adds mope.value_head.{weight,bias}: scalar score head */
} mope_train_config;

/* Small defaults: vocab 256, 64 wide, 2 layers, 4 heads, 2 KV heads, FFN
 * 172, context 128, base 10000, eps 1e-5, tied, no value head. */
void mope_train_config_init(mope_train_config *c);
/* Positive sizes, n_embd % n_head == 0, even head_dim, n_head % n_head_kv
 * == 0, and a parameter count that fits memory arithmetic. */
int mope_train_config_check(const mope_train_config *c, mope_error *err);

/* One named parameter tensor: a slice [offset, offset + n) of the flat
 * parameter (and gradient) buffer. */
typedef struct mope_train_tensor {
    char name[64];     /* the GGUF name, e.g. "blk.0.attn_q.weight" */
    int n_dims;        /* 1 or 2 */
    int64_t ne[2];     /* GGUF order: ne[0] contiguous */
    size_t offset;     /* in floats */
    size_t n;          /* elements */
    bool decay;        /* AdamW weight decay applies (not norms, not biases) */
} mope_train_tensor;

typedef struct mope_train_model mope_train_model;

/* n_threads <= 0: one per CPU. Parameters start at zero: call
 * mope_train_model_init_random or load values. */
mope_train_model *mope_train_model_new(const mope_train_config *c, int n_threads, mope_error *err);
void mope_train_model_free(mope_train_model *m);
const mope_train_config *mope_train_model_config(const mope_train_model *m);
int mope_train_model_n_threads(const mope_train_model *m);

/* GPT-2 style initialisation: matrices and embeddings N(0, 0.02), the
 * residual projections (attn_output, ffn_down) N(0, 0.02 / sqrt(2 n_layer)),
 * norms 1, value head N(0, 0.02) with bias 0.  Reproducible from seed. */
void mope_train_model_init_random(mope_train_model *m, uint64_t seed);

size_t mope_train_model_n_params(const mope_train_model *m);
float *mope_train_model_params(mope_train_model *m);
float *mope_train_model_grads(mope_train_model *m);
int mope_train_model_n_tensors(const mope_train_model *m);
const mope_train_tensor *mope_train_model_tensor(const mope_train_model *m, int i);
const mope_train_tensor *mope_train_model_find(const mope_train_model *m, const char *name); /* NULL if absent */

void mope_train_model_zero_grad(mope_train_model *m);

/* ---- language-model loss ----
 * tokens[N] in [0, V); targets[N]: the token to predict at each position, or
 * < 0 to ignore that position (prompt tokens in SFT, padding); weights[N]
 * (NULL = all 1, else finite and >= 0) scale each position's loss.
 *   loss = sum_n w_n * -log p(targets[n] | tokens[b, 0..t]) / sum_n w_n
 * over positions with targets[n] >= 0 (0 when there are none).  Attention is
 * causal over each sequence, positions 0..T-1.  Saves the activations for
 * mope_train_model_backward.  T <= n_ctx. */
int mope_train_model_forward(mope_train_model *m, const int32_t *tokens, const int32_t *targets, const float *weights,
                             int B, int T, float *loss, mope_error *err);
/* After a forward: N per-position -log p(target) (0 where ignored) and the
 * N x V logits (valid until the next backward, which overwrites them). */
const float *mope_train_model_nll(const mope_train_model *m);
const float *mope_train_model_logits(const mope_train_model *m);
/* grads += scale * d loss / d params, for the last forward's loss.  With
 * gradient accumulation over k micro-batches pass scale = 1/k. */
int mope_train_model_backward(mope_train_model *m, float scale, mope_error *err);

/* ---- scalar value head (reward models; needs config.value_head) ----
 * score_b = value_head.weight . h_b + value_head.bias, where h_b is the
 * final hidden state (after output_norm) of the last non-pad token of
 * sequence b, at position lengths[b] - 1 (1 <= lengths[b] <= T; the tokens
 * after it never influence it, attention being causal). */
int mope_train_model_forward_value(mope_train_model *m, const int32_t *tokens, const int32_t *lengths, int B, int T,
                                   float *scores, mope_error *err);
/* grads += sum_b dscores[b] * d score_b / d params (dscores = d loss / d
 * score from whatever loss the caller uses, e.g. Bradley-Terry). */
int mope_train_model_backward_value(mope_train_model *m, const float *dscores, mope_error *err);

/* ---- hidden states, for heads built elsewhere (e.g. the PCM's) ----
 * Runs the trunk and returns the N x C final hidden states (after
 * output_norm; valid until the next forward).  backward_hidden adds
 * sum_n,i dhidden[n, i] * d hidden[n, i] / d params to the gradients. */
const float *mope_train_model_forward_hidden(mope_train_model *m, const int32_t *tokens, int B, int T,
                                             mope_error *err);
int mope_train_model_backward_hidden(mope_train_model *m, const float *dhidden, mope_error *err);

/* ---- LoRA (low-rank adapters), PEFT-style ----
 * add_lora attaches, to every targeted linear W (out, in) of every layer,
 * A (rank, in) and B (out, rank) in a flat adapter buffer of their own with
 * its own gradients.  The adapted linear computes
 *   y = W x + s B (A drop(x)),   s = alpha / rank  (1 when alpha == 0, as
 *                                 llama.cpp reads such a file)
 * A starts Kaiming-uniform like PEFT's (U(-1/sqrt(in), 1/sqrt(in)), from
 * seed), B at zero, so the model's outputs are unchanged until training.
 * While an adapter is attached, every base parameter is frozen: backward
 * computes no base gradients (skipping those sgemms) but still passes the
 * activation gradients through the frozen layers, and the optimiser
 * (mope_train_trainer_*, mope_train_grad_norm, clip, zero_grad) works on
 * the adapter buffer only ("the trainable buffer").  Attach the adapter
 * before creating the trainer.  A value head stays frozen too.
 * drop() is inverted dropout on the adapter input with probability dropout
 * (0 = off), a fresh mask for every forward, reproducible from seed; set it
 * to 0 (set_dropout) for evaluation passes.
 * The output target needs an untied output.weight (a tied head is the
 * embedding, whose llama.cpp adapter layout differs). */
/* Targets: the MOPE_LORA_* bits of mope/lora.h (Q K V O GATE UP DOWN
 * OUTPUT; ATTN, FFN), shared with the inference engine's adapters.
 * MOPE_LORA_ALL_LINEAR = every block linear, PEFT's "all-linear" (not the
 * output head). */
#ifndef MOPE_LORA_ALL_LINEAR
#define MOPE_LORA_ALL_LINEAR (MOPE_LORA_ATTN | MOPE_LORA_FFN)
#endif

typedef struct mope_train_lora_info {
    int rank;
    float alpha, scale, dropout;
    unsigned targets;   /* MOPE_LORA_* mask */
    size_t n_params;    /* adapter floats (A and B of every adapted linear) */
    int n_tensors;      /* two per adapted linear */
} mope_train_lora_info;

/* rank in [1, min(in, out) of every target]; alpha >= 0 finite; dropout in
 * [0, 1); targets a non-empty subset of the mask bits.  Fails (MOPE_ESTATE)
 * when an adapter is already attached. */
int mope_train_model_add_lora(mope_train_model *m, int rank, float alpha, unsigned targets, float dropout,
                              uint64_t seed, mope_error *err);
bool mope_train_model_has_lora(const mope_train_model *m);
/* 0 and *out filled when an adapter is attached, else MOPE_ESTATE. */
int mope_train_model_lora_info(const mope_train_model *m, mope_train_lora_info *out, mope_error *err);
int mope_train_model_lora_set_dropout(mope_train_model *m, float dropout, mope_error *err);
/* The adapter tensors, named "<base name>.lora_a" / ".lora_b" with llama.cpp's
 * shapes (lora_a ne = [in, rank], lora_b ne = [rank, out]), as slices of the
 * adapter buffer.  NULL / 0 without an adapter. */
int mope_train_model_lora_n_tensors(const mope_train_model *m);
const mope_train_tensor *mope_train_model_lora_tensor(const mope_train_model *m, int i);
float *mope_train_model_lora_params(mope_train_model *m);
float *mope_train_model_lora_grads(mope_train_model *m);
/* The buffer the optimiser updates: the adapter when attached, else all
 * parameters (then identical to n_params / params / grads). */
size_t mope_train_model_n_trainable(const mope_train_model *m);
float *mope_train_model_trainable_params(mope_train_model *m);
float *mope_train_model_trainable_grads(mope_train_model *m);
/* W += s B A for every adapted W, then detaches the adapter (the model is
 * fully trainable again). */
int mope_train_model_lora_merge(mope_train_model *m, mope_error *err);
/* Detaches and frees the adapter without merging; no-op without one. */
void mope_train_model_lora_remove(mope_train_model *m);

/* Adapter GGUF in llama.cpp's convention (GGUF_FACTS.md §1): keys
 * general.architecture = "llama", general.type = "adapter", adapter.type =
 * "lora", adapter.lora.alpha (f32), and the F32 tensors above.  Data is
 * referenced as in model_to_gguf; w may be pre-filled by the caller. */
int mope_train_model_lora_to_gguf(const mope_train_model *m, mope_gguf_writer *w, mope_error *err);
int mope_train_model_lora_save(const mope_train_model *m, const char *path, mope_gguf_writer *w, mope_error *err);
/* Attaches the adapter of such a file to m (which must have none): every
 * tensor must be a .lora_a / .lora_b pair of a linear of m with matching
 * shapes (F32, F16 or BF16), one rank throughout, and the same targets in
 * every layer.  Dropout starts at 0. */
int mope_train_model_lora_from_gguf(mope_train_model *m, const mope_gguf *g, mope_error *err);
int mope_train_model_lora_load(mope_train_model *m, const char *path, mope_error *err);

/* ---- AdamW ---- */
typedef struct mope_adamw_config {
    float lr;            /* peak learning rate */
    float min_lr;        /* cosine floor */
    float beta1, beta2, eps;
    float weight_decay;  /* decoupled; only tensors with decay set */
    float grad_clip;     /* global L2 norm; <= 0: no clipping */
    int64_t warmup_steps;
    int64_t total_steps; /* cosine reaches min_lr here; <= warmup_steps: constant lr after warmup */
} mope_adamw_config;

/* lr 3e-4, min_lr 3e-5, betas (0.9, 0.95), eps 1e-8, weight decay 0.1,
 * clip 1.0, warmup 0, total 0. */
void mope_adamw_config_init(mope_adamw_config *c);

/* Learning rate of update number `step` (0-based):
 *   step < warmup:        lr * (step + 1) / warmup
 *   total <= warmup:      lr
 *   step >= total:        min_lr
 *   else, p = (step - warmup) / (total - warmup):
 *                         min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2 */
float mope_train_lr_at(const mope_adamw_config *c, int64_t step);

/* One AdamW update of n parameters at learning rate lr; t is the 1-based
 * update count (bias correction).  Per element, in this order:
 *   p -= lr * wd * p                      (only when decay)
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) */
void mope_train_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                             const mope_adamw_config *c, bool decay, int64_t t);

/* Global L2 norm of all gradients (double accumulation, fixed order). */
double mope_train_grad_norm(mope_train_model *m);
/* Scales the gradients by max_norm / norm when norm > max_norm; returns the
 * norm before clipping. */
double mope_train_clip_grads(mope_train_model *m, double max_norm);

/* ---- trainer: model + optimizer state + step + rng ---- */
typedef struct mope_trainer mope_trainer;

typedef struct mope_train_batch {
    const int32_t *tokens;  /* B*T */
    const int32_t *targets; /* B*T, < 0 = ignored */
    const float *weights;   /* B*T or NULL */
    int B, T;
} mope_train_batch;

typedef struct mope_train_stats {
    float loss;      /* mean of the micro-batch losses */
    float grad_norm; /* before clipping */
    float lr;        /* the rate this update used */
    int64_t step;    /* updates done, after this one */
} mope_train_stats;

/* Takes ownership of model (freed with the trainer, and also when this call
 * fails).  seed seeds the trainer's rng (for the caller's data order). */
mope_trainer *mope_train_trainer_new(mope_train_model *model, const mope_adamw_config *c, uint64_t seed,
                                     mope_error *err);
void mope_train_trainer_free(mope_trainer *tr);
mope_train_model *mope_train_trainer_model(mope_trainer *tr);
mope_rng *mope_train_trainer_rng(mope_trainer *tr);
int64_t mope_train_trainer_step_count(const mope_trainer *tr);
const mope_adamw_config *mope_train_trainer_config(const mope_trainer *tr);

/* One optimizer update from the gradients already accumulated in the model
 * (after forward/backward calls, e.g. for a value-head loss): clip, lr from
 * the schedule, AdamW, step += 1, zero the gradients.  st may be NULL; its
 * loss is left 0.  On a non-finite gradient it fails with MOPE_ESTATE
 * without touching parameters, moments or step (the gradients are cleared). */
int mope_train_apply(mope_trainer *tr, mope_train_stats *st, mope_error *err);
/* zero_grad, forward + backward(1/n_micro) for each micro-batch, apply. */
int mope_train_step(mope_trainer *tr, const mope_train_batch *micro, int n_micro, mope_train_stats *st,
                    mope_error *err);

/* ---- GGUF ----
 * Adds the llama keys (general.architecture = "llama", llama.* hyper-
 * parameters, general.file_type = 0) and every parameter tensor (F32, names
 * and shapes as llama.cpp's) to w.  The tensor data is referenced, not
 * copied: the model must not change until w is written.  Tokenizer keys are
 * the caller's: pre-fill w (e.g. mope_gguf_copy_kv from a tokenizer file).
 * With a LoRA adapter attached this writes the (unchanged) base only: save
 * the adapter with mope_train_model_lora_save, or merge it first. */
int mope_train_model_to_gguf(const mope_train_model *m, mope_gguf_writer *w, mope_error *err);
/* Writes the model (atomically: temp file + rename).  w may be NULL or a
 * writer the caller pre-filled with tokenizer keys; it is not freed. */
int mope_train_model_save(const mope_train_model *m, const char *path, mope_gguf_writer *w, mope_error *err);
/* Reads a `llama` GGUF into a new trainable model: hyper-parameters from
 * the keys, tensors of type F32, F16 or BF16 converted to f32 (quantised
 * weights: MOPE_EUNSUPPORTED).  The value head is loaded when present. */
mope_train_model *mope_train_model_from_gguf(const mope_gguf *g, int n_threads, mope_error *err);
mope_train_model *mope_train_model_load(const char *path, int n_threads, mope_error *err);

/* Checkpoint = model file + AdamW moments (tensors mope.opt.m, mope.opt.v),
 * step, rng state and AdamW settings (keys mope.train.*), written
 * atomically; still loadable as a plain model.  w as in model_save.
 * With an adapter attached it also holds the adapter (tensors
 * "mope.lora.<adapter tensor name>", keys mope.lora.*: rank, alpha,
 * targets, dropout, seed and the dropout pass counter), the moments are
 * those of the adapter buffer, and checkpoint_load re-attaches it. */
int mope_train_checkpoint_save(const mope_trainer *tr, const char *path, mope_gguf_writer *w, mope_error *err);
/* Resumes a checkpoint; c overrides the stored AdamW settings when non-NULL. */
mope_trainer *mope_train_checkpoint_load(const char *path, int n_threads, const mope_adamw_config *c,
                                         mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
