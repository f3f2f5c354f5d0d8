/* The Preference Control Model (DESIGN.md §1): a small llama-architecture
 * trunk that reads "preference + prompt + response so far" in the experts'
 * tokenizer, and a K-way head giving the mixing weights over the experts at
 * every response position:
 *     w_t = softmax(W_h h_t + b_h),   W_h: K x n_embd, b_h: K
 * where h_t is the trunk's final hidden state (after output_norm).
 *
 * Input format (MOPE_PCM_INPUT_FORMAT, also stored in the file):
 *     "<|user|>\n{instruction}\n<|preference|>\n{preference}\n<|assistant|>\n"
 * tokenised with the tokenizer's BOS rule and special-token parsing on (the
 * markers become control tokens where the vocabulary has them, plain text
 * otherwise), followed by the response token ids exactly as the experts
 * produced them (never re-tokenised).  The preference is free text: any
 * wording or combination works, not only the eight fixed ones.
 * The weights for response token y_t come from the hidden state of the token
 * before it: position P - 1 + t for a prompt of P tokens, so w_0 is read
 * after the prompt and each later w_t after feeding y_{t-1}.
 *
 * File (GGUF): the trunk as mope_train_model_save writes it (llama names and
 * keys; tokenizer keys when given), plus tensors mope.pcm.head.weight
 * (ne [n_embd, K], F32) and mope.pcm.head.bias (ne [K]), and keys
 * mope.pcm.experts (string array of the K expert ids), mope.pcm.rule
 * ("linear" | "geometric") and mope.pcm.input_format.  The inference engine
 * and the trainable model both look tensors up by name and ignore the extra
 * mope.* tensors (tested), so one file serves both.
 *
 * Initialisation: the head starts at zero, so every weight vector is exactly
 * uniform (1/K) until training moves it.
 *
 * Two views of one file:
 *  - mope_pcm: the trainable model (f32 trunk of mope/train.h + head, with
 *    its own AdamW state over both) for REBEL;
 *  - mope_pcm_infer: the inference engine (mope/model.h) with a KV cache,
 *    computing weights incrementally: one step costs one trunk row per
 *    sequence, and all queued rows of all sequences go through one forward. */
#ifndef MOPE_PCM_H
#define MOPE_PCM_H

#include "mope/core.h"
#include "mope/gguf.h"
#include "mope/mix.h"
#include "mope/model.h"
#include "mope/tokenizer.h"
#include "mope/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOPE_PCM_INPUT_FORMAT "<|user|>\n{instruction}\n<|preference|>\n{preference}\n<|assistant|>\n"
#define MOPE_PCM_MAX_K MOPE_MIX_MAX_K

/* The PCM prompt text for (instruction, preference), malloc'd (free()). */
char *mope_pcm_format_input(const char *instruction, const char *preference, mope_error *err);
/* Its tokens (malloc'd into *out; free()), returns the count or a negative code. */
int mope_pcm_prompt_tokens(const mope_tokenizer *tok, const char *instruction, const char *preference,
                           int32_t **out, mope_error *err);

/* w[K] = softmax(W h + b), W row-major K x C.  Pure; used by both views. */
void mope_pcm_head_apply(const float *W, const float *b, const float *h, int C, int K, float *w);

/* ---- trainable PCM ---- */
typedef struct mope_pcm mope_pcm;

/* A new PCM with a random trunk (mope_train_model_init_random from seed)
 * and a zero head.  experts: K ids (1 <= K <= MOPE_PCM_MAX_K, copied). */
mope_pcm *mope_pcm_new(const mope_train_config *trunk, int K, const char *const *experts, mope_mix_rule rule,
                       int n_threads, uint64_t seed, mope_error *err);
/* Same over an existing trunk (e.g. a pretrained small model), which the PCM
 * takes over (freed with it, and also when this call fails).  A value head
 * or LoRA adapter on it is refused. */
mope_pcm *mope_pcm_from_trunk(mope_train_model *trunk, int K, const char *const *experts, mope_mix_rule rule,
                              mope_error *err);
void mope_pcm_free(mope_pcm *p);

int mope_pcm_n_experts(const mope_pcm *p);
const char *mope_pcm_expert(const mope_pcm *p, int k); /* NULL when out of range */
mope_mix_rule mope_pcm_rule(const mope_pcm *p);
mope_train_model *mope_pcm_trunk(mope_pcm *p);
/* Head parameters: K*C weights (row k = expert k) then K biases; and their gradients. */
float *mope_pcm_head_params(mope_pcm *p);
float *mope_pcm_head_grads(mope_pcm *p);

/* Runs B sequences of T tokens (tokens[B*T]) and writes the weights of every
 * position into w[B*T*K] (row n = b*T + t).  Keeps what backward needs. */
int mope_pcm_forward(mope_pcm *p, const int32_t *tokens, int B, int T, float *w, mope_error *err);
/* After a forward: adds to the gradients (trunk and head) the effect of
 * dz[B*T*K] = d loss / d head logits z (w = softmax(z)) at every position
 * (zero rows for positions that do not matter). */
int mope_pcm_backward(mope_pcm *p, const float *dz, mope_error *err);
void mope_pcm_zero_grad(mope_pcm *p);

/* Global L2 norm of the trunk + head gradients. */
double mope_pcm_grad_norm(mope_pcm *p);
/* One AdamW update of trunk + head from the accumulated gradients: global
 * clipping at c->grad_clip, lr from mope_train_lr_at(c, step), decay on the
 * trunk's matrices and the head weight (not biases or norms); then step += 1
 * and the gradients are zeroed.  A non-finite gradient fails with
 * MOPE_ESTATE and changes nothing but clearing the gradients.  lr_out and
 * norm_out (may be NULL) get the rate used and the norm before clipping. */
int mope_pcm_apply(mope_pcm *p, const mope_adamw_config *c, float *lr_out, float *norm_out, mope_error *err);
int64_t mope_pcm_step_count(const mope_pcm *p);

/* Adds the PCM's keys and tensors (data referenced: p must not change until
 * w is written) and, when tok is given, the tokenizer keys to w. */
int mope_pcm_to_gguf(const mope_pcm *p, mope_gguf_writer *w, const mope_tokenizer *tok, mope_error *err);
/* Writes trunk + head + keys atomically.  tok (may be NULL) supplies the
 * tokenizer keys so the file is self-contained. */
int mope_pcm_save(const mope_pcm *p, const char *path, const mope_tokenizer *tok, mope_error *err);
/* Loads a PCM file for training (optimiser state starts fresh). */
mope_pcm *mope_pcm_load(const char *path, int n_threads, mope_error *err);
mope_pcm *mope_pcm_from_gguf(const mope_gguf *g, int n_threads, mope_error *err);

/* ---- PCM metadata of a file (shared by both views) ---- */
typedef struct mope_pcm_meta {
    int K;
    int n_embd;
    mope_mix_rule rule;
    char **experts;       /* K strings */
    char *input_format;
    float *head;          /* K*C weights then K biases, f32 copy */
} mope_pcm_meta;

/* Reads and validates keys and head tensors (head shape must match the
 * trunk width, K must equal the number of expert ids, values finite). */
int mope_pcm_meta_read(const mope_gguf *g, mope_pcm_meta *out, mope_error *err);
void mope_pcm_meta_free(mope_pcm_meta *m);

/* ---- inference view (engine + KV cache) ---- */
typedef struct mope_pcm_infer mope_pcm_infer;

/* n_seq sequences of up to n_ctx positions (0: the trunk's context).  The
 * reader is owned when take_ownership (also on failure). pool: borrowed,
 * NULL = calling thread. */
mope_pcm_infer *mope_pcm_infer_from_gguf(mope_gguf *g, bool take_ownership, int n_seq, int n_ctx, mope_pool *pool,
                                         mope_error *err);
mope_pcm_infer *mope_pcm_infer_load(const char *path, int n_seq, int n_ctx, mope_pool *pool, mope_error *err);
/* An inference view of the trainable PCM's current parameters, built in
 * memory (no file): what rollouts use between REBEL updates.  tok (may be
 * NULL) is stored for start_text. */
mope_pcm_infer *mope_pcm_to_infer(const mope_pcm *p, const mope_tokenizer *tok, int n_seq, int n_ctx,
                                  mope_pool *pool, mope_error *err);
void mope_pcm_infer_free(mope_pcm_infer *pi);
const mope_pcm_meta *mope_pcm_infer_meta(const mope_pcm_infer *pi);
/* The tokenizer stored in the file, or NULL when it has none. */
const mope_tokenizer *mope_pcm_infer_tokenizer(const mope_pcm_infer *pi);

/* Empties seq and queues its prompt tokens (n >= 1). */
int mope_pcm_infer_start(mope_pcm_infer *pi, int seq, const int32_t *prompt, int n, mope_error *err);
/* Same from text, with the file's tokenizer. */
int mope_pcm_infer_start_text(mope_pcm_infer *pi, int seq, const char *instruction, const char *preference,
                              mope_error *err);
/* Queues response tokens after what seq holds. */
int mope_pcm_infer_feed(mope_pcm_infer *pi, int seq, const int32_t *tokens, int n, mope_error *err);
/* Runs every queued token of every sequence in one engine forward (no-op
 * when nothing is queued); on error the touched sequences are rolled back. */
int mope_pcm_infer_eval(mope_pcm_infer *pi, mope_error *err);
/* Weights w[K] after everything fed to seq (evaluates pending tokens). */
int mope_pcm_infer_weights(mope_pcm_infer *pi, int seq, float *w, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
