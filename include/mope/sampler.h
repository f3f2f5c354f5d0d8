/* Token sampling: greedy, temperature, top-k, top-p, min-p, repetition
 * penalty and no-repeat-n-gram, seeded and deterministic.
 *
 * The filters follow llama.cpp's default chain, in this order:
 *   1. repetition penalty over the last `repeat_last_n` history tokens
 *      (each distinct token once: a positive logit is divided by the
 *      penalty, a negative one multiplied);
 *   2. no-repeat-n-gram: with n = no_repeat_ngram, any token that would
 *      complete an n-gram already present in the history is banned;
 *   3. top-k (the k highest; ties broken by lower token id);
 *   4. top-p: the smallest prefix of the sorted candidates whose
 *      probability mass reaches p (the token that crosses p is kept);
 *   5. min-p: drop tokens whose probability is below min_p * p_max;
 *   6. temperature: divide the survivors' logits by temp, softmax, draw.
 * Filters 3-5 see the untempered distribution (as llama.cpp does).
 * temp <= 0 means greedy: the argmax after steps 1-2 (ties: lower id).
 *
 * mope_sampler_sample_probs runs the same chain on a probability vector
 * (the mixture distribution of several experts): it works on log p, so the
 * repetition penalty turns p into p^penalty and temperature into p^(1/T).
 *
 * A sampler owns its rng and scratch space; it is not thread-safe (use one
 * per sequence).  Same params + same seed + same inputs = same tokens. */
#ifndef MOPE_SAMPLER_H
#define MOPE_SAMPLER_H

#include "mope/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mope_sampler_params {
    float temp;              /* <= 0: greedy.                        default 0.8 */
    int32_t top_k;           /* <= 0: off.                           default 40 */
    float top_p;             /* >= 1: off.                           default 0.95 */
    float min_p;             /* <= 0: off.                           default 0.05 */
    float repeat_penalty;    /* 1: off; must be > 0.                 default 1.0 */
    int32_t repeat_last_n;   /* window for the penalty; -1 = all.    default 64 */
    int32_t no_repeat_ngram; /* n; 0: off.                           default 0 */
    uint64_t seed;           /*                                      default 42 */
} mope_sampler_params;

typedef struct mope_sampler mope_sampler;

mope_sampler_params mope_sampler_default_params(void);
/* Validates the parameters (NaN, negative penalty, p outside [0, 1], ...). */
mope_sampler *mope_sampler_new(const mope_sampler_params *params, mope_error *err);
void mope_sampler_free(mope_sampler *s);
/* Restarts the random sequence as if newly created with this seed. */
void mope_sampler_reseed(mope_sampler *s, uint64_t seed);
const mope_sampler_params *mope_sampler_params_of(const mope_sampler *s);

/* Draws the next token from a row of n_vocab logits (not modified).
 * history: the tokens the filters look back on, may be NULL when
 * n_history is 0.  mope's chat paths (bundle generation, evaluation, REBEL
 * rollouts, the PrefBench recipe) pass the answer's tokens only: with the
 * prompt in it, a no-repeat n-gram ban would stop an answer from repeating
 * a multi-token name from the question.  Returns the token id (>= 0) or a negative MOPE_E* code
 * (bad arguments, NaN logits, or every token banned). */
int32_t mope_sampler_sample(mope_sampler *s, const float *logits, int32_t n_vocab, const int32_t *history,
                            int64_t n_history, mope_error *err);

/* The same chain on a probability vector (non-negative, need not sum to 1). */
int32_t mope_sampler_sample_probs(mope_sampler *s, const float *probs, int32_t n, const int32_t *history,
                                  int64_t n_history, mope_error *err);

/* The distribution the sampler would draw from, after every filter and the
 * temperature, renormalised, written to out[n] (zeros for removed tokens).
 * Greedy yields a one-hot vector.  from_probs selects the probability path.
 * Returns the number of tokens with non-zero probability, or a negative code. */
int32_t mope_sampler_filtered(mope_sampler *s, const float *in, int32_t n, bool from_probs, const int32_t *history,
                              int64_t n_history, float *out, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
