/* Reward models on the inference engine, and the reward arithmetic of MoPE
 * (DESIGN.md §1).
 *
 * A reward model is what `mope train rm` writes: a llama trunk plus the
 * scalar value head mope.value_head.weight (n_embd) and mope.value_head.bias
 * (1), F32.  Its score of a sequence is
 *     R = value_head.weight . h_last + value_head.bias
 * where h_last is the final hidden state (after output_norm) of the
 * sequence's last token -- the EOS of a chat-formatted (prompt, response)
 * sequence built by mope_dataset_make_seq, exactly as the trainer scores it.
 * Scoring runs on the engine (quantised weights allowed), several sequences
 * per forward call, each in its own KV slot.
 *
 * Normalisation: r_i(x, y) = sigmoid(R_i(x, y) - R_i(x, y_ref)), the
 * Bradley-Terry probability that y beats the reference response on that
 * choice.  Utility of a preference: the (weighted) mean of its r_i. */
#ifndef MOPE_REWARD_H
#define MOPE_REWARD_H

#include "mope/core.h"
#include "mope/dataset.h"
#include "mope/gguf.h"
#include "mope/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mope_reward_model mope_reward_model;

/* n_batch: sequences per forward call (>= 1); n_ctx: longest sequence
 * (0: the model's training context).  pool borrowed (NULL: calling thread).
 * Fails with a clear message when the file has no value head. */
mope_reward_model *mope_reward_from_gguf(mope_gguf *g, bool take_ownership, int n_batch, int n_ctx,
                                         mope_pool *pool, mope_error *err);
mope_reward_model *mope_reward_load(const char *path, int n_batch, int n_ctx, mope_pool *pool, mope_error *err);
void mope_reward_free(mope_reward_model *rm);
mope_model *mope_reward_engine(mope_reward_model *rm);

/* Scores of n token sequences (tokens[i][0..lens[i]), lens[i] >= 1). */
int mope_reward_score_tokens(mope_reward_model *rm, const int32_t *const *tokens, const int32_t *lens, int n,
                             float *out, mope_error *err);
/* Scores of n sequences (all of each: prompt and response). */
int mope_reward_score_seqs(mope_reward_model *rm, const mope_seq *const *seqs, int n, float *out, mope_error *err);
/* Score of one (prompt, response) pair, formatted as the trainer does
 * (mope_dataset_make_seq with o: tokenizer, template, context). */
int mope_reward_score_text(mope_reward_model *rm, const mope_dataset_opts *o, const char *prompt,
                           const char *response, float *out, mope_error *err);

/* sigmoid(R - R_ref), computed without overflow for any finite inputs. */
double mope_reward_bt_normalise(double R, double R_ref);
/* Utility = sum_i a_i r_i / sum_i a_i over n >= 1 rewards; weights NULL =
 * plain mean.  Weights must be finite, >= 0, with a positive sum; rewards
 * finite. */
int mope_reward_utility(const double *r, const double *weights, int n, double *out, mope_error *err);

/* The utility of a response for a preference made of n choices, given the
 * reward model of each choice (rms[n]) and a reference response:
 *   r_i = sigmoid(R_i(prompt, response) - R_i(prompt, reference)),
 *   utility = sum_i a_i r_i / sum_i a_i   (weights a = NULL: plain mean).
 * Both texts are formatted as the reward trainer formats them (o).  R_ref
 * (may be NULL) gives the reference scores when already known (they are
 * fixed per prompt); r_out (may be NULL) receives the n normalised
 * rewards. */
int mope_reward_preference_utility(mope_reward_model *const *rms, int n, const mope_dataset_opts *o,
                                   const char *prompt, const char *response, const char *reference,
                                   const float *R_ref, const double *weights, double *utility, double *r_out,
                                   mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
