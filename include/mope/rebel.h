/* REBEL (Gao et al. 2024; DESIGN.md §1) for the PCM: regress the relative
 * log-ratio of two responses onto their reward difference.
 *
 * For a pair (y, y') sampled for the same (prompt, preference) from the
 * mixture policy pi_t of the PCM's weights at rollout time:
 *     lp(y)   = log pi_theta(y|x) = sum_t log sum_k w_theta,t,k * pi_k(y_t)
 *     L_pair  = ( (1/eta) [ (lp(y) - lp_t(y)) - (lp(y') - lp_t(y')) ]
 *                 - (r(y) - r(y')) )^2
 * with pi_k(y_t) the K experts' probabilities of the sampled token, recorded
 * once at rollout time together with lp_t(y) (the rollout's log-probability
 * under the mixture it was sampled from, untempered): optimisation epochs
 * never run the experts again.
 *
 * Rules.  Linear (the default, what MoPE uses): the recorded per-token
 * probabilities determine lp.  Geometric: pi_theta(y_t) is
 * exp(sum_k w_k log pi_k(y_t) - log Z_t) with the normaliser
 * log Z_t = log sum_v exp(sum_k w_k log pi_k(v)) over the whole vocabulary,
 * so a rollout records every expert's full log-distribution at every step
 * (expert_logp, n_resp x K x n_vocab) and lp is recomputed from it:
 *     d lp / d z_t,k = w_t,k (g_t,k - sum_j w_t,j g_t,j),
 *     g_t,k = log pi_k(y_t) - E_{v ~ pi_theta,t} [log pi_k(v)].
 *
 * Options, all off by default:
 *  - KL shaping toward the uniform mixture: kl_coef * (mean over every
 *    response token of the step of KL(w_t || uniform)) is added to the loss
 *    (a regulariser on the weights, differentiated with the rest);
 *  - KL toward a prior: prior_coef * (mean over every response token of
 *    KL(q || w_t)), q a sample's prior weights (e.g. uniform over the experts
 *    its preference names, the warm start's target).  This direction is
 *    finite when q has zeros and grows without bound as the weight of an
 *    expert q wants goes to 0: it keeps every named expert in the mixture;
 *  - length penalty: a response recorded as truncated (it hit the length
 *    limit without EOS) has length_penalty subtracted from its reward.
 *
 * The step loss = mean over pairs of L_pair + the KL term; its gradient
 * wrt each weight logit z_t,k (w_t = softmax(z_t)) is (linear rule)
 *     dL/dlp(y) * w_t,k (pi_k(y_t) / p_t - 1)
 *   + kl_coef / N_tok * w_t,k (log(K w_t,k) - KL(w_t || u))
 *   + prior_coef / N_tok * (w_t,k - q_k),
 * back-propagated through the PCM head and trunk by mope_pcm_backward. */
#ifndef MOPE_REBEL_H
#define MOPE_REBEL_H

#include "mope/core.h"
#include "mope/expert.h"
#include "mope/pcm.h"
#include "mope/sampler.h"
#include "mope/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One recorded rollout. */
typedef struct mope_rebel_sample {
    const int32_t *tokens;      /* PCM input: prompt_len prompt tokens, then the n_resp response tokens */
    int prompt_len;             /* >= 1 */
    int n_resp;                 /* >= 1 */
    const float *expert_probs;  /* n_resp x K: pi_k(y_t) (in [0, 1]; some expert must give y_t mass) */
    const float *expert_logp;   /* geometric rule: n_resp x K x n_vocab log pi_k(v) (finite); else NULL */
    double logp_rollout;        /* log pi_t(y|x) recorded at rollout time (finite) */
    double reward;              /* r(x, y), e.g. a utility in [0, 1] */
    bool truncated;             /* hit the length limit without EOS */
    const float *prior;         /* K weights (>= 0, sum 1) for the prior KL, or NULL: no prior term */
} mope_rebel_sample;

typedef struct mope_rebel_pair {
    mope_rebel_sample y, y2;    /* y and y' of the same prompt and preference */
} mope_rebel_pair;

typedef struct mope_rebel_opts {
    double eta;                 /* > 0 */
    double kl_coef;             /* >= 0 */
    double prior_coef;          /* >= 0; samples without a prior add nothing */
    double length_penalty;      /* >= 0, subtracted from a truncated response's reward */
    int micro_batch;            /* pairs per PCM forward (>= 1) */
    mope_adamw_config adamw;    /* for mope_rebel_step */
} mope_rebel_opts;

/* eta 1, no KL, no length penalty, micro-batch 8, AdamW defaults with
 * lr 1e-4 and weight decay 0. */
void mope_rebel_opts_init(mope_rebel_opts *o);

typedef struct mope_rebel_stats {
    double loss;                /* total: mean L_pair + both KL terms */
    double rebel_loss;          /* mean L_pair */
    double kl;                  /* mean per-token KL(w || uniform) */
    double prior_kl;            /* mean per-token KL(q || w) over all tokens (0 for samples without a prior) */
    double mean_logratio;       /* mean over samples of lp(y) - lp_t(y) */
    double reward_gap;          /* mean |r(y) - r(y')| after the length penalty */
    float grad_norm, lr;        /* mope_rebel_step only */
    int64_t step;               /* PCM updates done, after this one (step only) */
    int64_t n_tokens;           /* response tokens in the batch */
} mope_rebel_stats;

/* ---- pure pieces (exposed for tests and rollout code) ---- */

/* log sum over L tokens of log sum_k w[t,k] pk[t,k]; writes into dz[L*K]
 * (may be NULL) d logp / d z_t,k = w_t,k (pk_t,k / p_t - 1).  Fails with
 * MOPE_ERANGE when some p_t is 0 (the sequence is impossible). */
int mope_rebel_seq_logp(const float *w, const float *pk, int L, int K, double *logp, float *dz, mope_error *err);
/* The geometric rule's counterpart: y[L] the tokens, lpk[L*K*V] every
 * expert's log-distribution at every step (finite); dz as above (may be
 * NULL).  MOPE_ERANGE for a non-finite log-probability. */
int mope_rebel_seq_logp_geo(const float *w, const float *lpk, const int32_t *y, int L, int K, int32_t V,
                            double *logp, float *dz, mope_error *err);
/* L_pair and d L_pair / d lp(y) (= - d L_pair / d lp(y')). */
double mope_rebel_pair_loss(double eta, double lp, double lp_old, double r, double lp2, double lp2_old, double r2,
                            double *dlp);
/* KL(w || uniform) = sum_k w_k log(K w_k); adds coef * d KL / d z to dz[K]
 * when dz is non-NULL. */
double mope_rebel_kl_uniform(const float *w, int K, double coef, float *dz);
/* KL(q || w) = sum_{q_k > 0} q_k log(q_k / w_k) (w_k floored at 1e-30);
 * adds coef * d KL / d z = coef * (w - q) to dz[K] when dz is non-NULL. */
double mope_rebel_kl_prior(const float *w, const float *q, int K, double coef, float *dz);

/* ---- on the PCM ---- */

/* Loss of a batch of n pairs under the current PCM (no gradients). */
int mope_rebel_eval(mope_pcm *p, const mope_rebel_pair *pairs, int n, const mope_rebel_opts *o,
                    mope_rebel_stats *st, mope_error *err);
/* Same, adding the gradient of the loss to the PCM's gradients. */
int mope_rebel_accumulate(mope_pcm *p, const mope_rebel_pair *pairs, int n, const mope_rebel_opts *o,
                          mope_rebel_stats *st, mope_error *err);
/* One REBEL update: zero_grad, accumulate, mope_pcm_apply(o->adamw).
 * st (may be NULL) gets the loss before the update. */
int mope_rebel_step(mope_pcm *p, const mope_rebel_pair *pairs, int n, const mope_rebel_opts *o,
                    mope_rebel_stats *st, mope_error *err);

/* ---- rollouts (src/rl/rollout.c) ----
 * Samples responses from the mixture policy: at every step the PCM's
 * weights (engine, KV cache) mix the K experts' next-token distributions
 * under the PCM's rule (mope_mix_step), the sampler draws a token from the
 * mixture probabilities, and the experts' probabilities of that token
 * (mope_mix_token_probs) are recorded with the mixture's log-probability.
 * logp sums the log-probabilities of the untempered mixture -- the quantity
 * REBEL's log-ratios use -- whatever filters the sampler applies.
 *
 * n rollouts run in lockstep on sequences 0..n-1 of the PCM and of every
 * expert: all sequences' new tokens are fed before any distribution is
 * asked for, so a PCM step is one engine forward and experts in a group
 * evaluate every sequence in one forward too.  A rollout ends after an
 * end-of-generation token (which it keeps) or after max_tokens tokens
 * (then truncated = true). */
typedef struct mope_rollout {
    int32_t *tokens;       /* PCM input: prompt_len prompt tokens, then the n_resp response tokens */
    int prompt_len, n_resp;
    float *expert_probs;   /* n_resp x K */
    float *expert_logp;    /* n_resp x K x n_vocab, only with mope_rollout_opts.record_dists (else NULL) */
    int32_t n_vocab;
    double logp;           /* log pi_t(y|x) under the mixture it was sampled from */
    bool truncated;
    int K;
} mope_rollout;

/* tok: the experts' (and PCM's) tokenizer, for the PCM prompt and the end
 * of generation; NULL = the one stored in the PCM file.  experts[K] must
 * match the PCM's expert count, have n_seq >= n, and share its vocabulary.
 * A geometric PCM's rollouts record the experts' full distributions
 * (record_dists below).  out[n] is filled (free each with mope_rollout_free, also after failure). */
int mope_rollout_generate(mope_pcm_infer *pcm, mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                          const char *const *instructions, const char *const *preferences, mope_sampler *sampler,
                          int max_tokens, mope_rollout *out, mope_error *err);
void mope_rollout_free(mope_rollout *r);
/* The general loop behind mope_rollout_generate, also used by the
 * generation methods (include/mope/method.h) so every method samples
 * through one mixture loop.  The weights come from a PCM or are fixed:
 *  - pcm non-NULL: as mope_rollout_generate (preferences required, the
 *    PCM's K and rule; tokens = PCM prompt + response);
 *  - pcm NULL: the fixed weights[K] (non-negative, positive sum) under
 *    `rule`; preferences may be NULL; tokens hold the response only
 *    (prompt_len 0).
 * samplers: n_samplers == 1 shares one sampler across the rollouts (drawn
 * in rollout order each step, as mope_rollout_generate does); n_samplers ==
 * n gives rollout i its own.  on_token (may be NULL) is called after each
 * token is drawn, with the rollout, the step, the token and the K weights
 * used for it: it returns 0 to go on, 1 to end that rollout after this
 * token (as an end-of-generation token does; truncated stays false), or a
 * negative code to abort the call.  tok is required without a PCM. */
typedef int (*mope_rollout_token_fn)(void *user, int i, int t, int32_t y, const float *w, int K, mope_error *err);

/* Exploration of expert switches (the PCM trainer's --explore): some tokens
 * of a rollout are drawn from one expert's distribution alone instead of the
 * mixture, while logp and expert_probs stay those of the mixture policy (the
 * PCM's weights), so REBEL's log-ratios are still pi_theta / pi_t of the
 * tokens actually taken.  The regression's target does not depend on the
 * distribution the pair was drawn from (that only decides where the fit is
 * accurate), so such pairs show the PCM what a switch it would rarely sample
 * itself is worth -- e.g. a friendly opening or closing from the
 * friendliness expert inside an otherwise plain answer.
 *  - head: the first `head` response tokens come from `expert`;
 *  - tail: the first time the mixture draws an end-of-generation token, the
 *    token is redrawn from `expert` and so are up to `tail` tokens after it
 *    (the expert may end the response itself); then the mixture resumes;
 *  - sentence: either stretch also ends after a token whose text ends with
 *    '.', '!' or '?' (a steered opening is then the expert's first sentence,
 *    not a few words that commit the rest of the answer to its style). */
typedef struct mope_rollout_explore {
    int expert;    /* -1: this rollout is not steered */
    int head;      /* >= 0 */
    int tail;      /* >= 0 */
    bool sentence;
} mope_rollout_explore;

typedef struct mope_rollout_opts {
    mope_pcm_infer *pcm;          /* NULL: fixed weights */
    const float *weights;         /* K fixed weights when pcm is NULL */
    mope_mix_rule rule;           /* the rule for fixed weights */
    mope_sampler *const *samplers;
    int n_samplers;               /* 1 or n */
    int max_tokens;               /* >= 1 */
    float min_weight;             /* 0: exact. > 0: an expert whose weight at a step
                                     is below it is not run for that row and step (the weights of the
                                     rest are renormalised; the heaviest expert always runs); its tokens
                                     are fed when it is next needed.  The mixture then differs from the
                                     exact one by at most the skipped weight in total variation.  Its
                                     expert_probs entries are 0 at skipped steps, so REBEL rollouts
                                     must use 0. */
    mope_rollout_token_fn on_token;
    void *user;
    const mope_rollout_explore *explore; /* n entries (one per rollout), or NULL: none.  Needs
                                            min_weight 0 (every expert runs at every step). */
    bool record_dists;            /* record every expert's full log-distribution at every step
                                     (expert_logp; what REBEL needs for the geometric rule):
                                     max_tokens x K x n_vocab floats per rollout.  Needs
                                     min_weight 0 and full (not top-k) experts. */
    bool skip_logp;               /* leave mope_rollout.logp at 0 (REBEL needs it; generation mostly
                                     does not, and for the geometric rule it costs a pass over the
                                     vocabulary per token) */
} mope_rollout_opts;

int mope_rollout_generate_ex(mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                             const char *const *instructions, const char *const *preferences,
                             const mope_rollout_opts *o, mope_rollout *out, mope_error *err);

/* The REBEL view of a rollout (borrows its arrays) with reward r. */
mope_rebel_sample mope_rollout_sample(const mope_rollout *r, double reward);

/* ---- one REBEL iteration (src/rl/iterate.c) ----
 * For n (instruction, preference) items: builds the inference view of the
 * PCM's current parameters (mope_pcm_to_infer), samples two rollouts per
 * item (sequences 2i and 2i+1 of the PCM and of every expert, which need
 * n_seq >= 2n), asks the caller's reward function for each rollout's
 * reward, pairs the two rollouts of each item, and runs `epochs` REBEL
 * updates (mope_rebel_step) on that batch.  This is the loop body of
 * `mope train pcm`; rollouts are returned in out_rollouts when non-NULL
 * (2n of them, freed by the caller with mope_rollout_free) for logging. */
typedef int (*mope_rebel_reward_fn)(void *user, int item, const mope_rollout *r, double *reward, mope_error *err);

typedef struct mope_rebel_iter_opts {
    mope_rebel_opts rebel;
    int max_tokens;   /* response length limit (>= 1) */
    int epochs;       /* REBEL updates per batch of rollouts (>= 1) */
} mope_rebel_iter_opts;

/* REBEL defaults, 64 tokens, 4 epochs (as REBEL's chat runs). */
void mope_rebel_iter_opts_init(mope_rebel_iter_opts *o);

typedef struct mope_rebel_iter_stats {
    double mean_reward;      /* over the 2n rollouts, before the length penalty */
    double mean_len;         /* response tokens */
    double truncated_share;  /* rollouts that hit max_tokens without EOS */
    mope_rebel_stats first;  /* the first update's statistics (log-ratios ~0) */
    mope_rebel_stats last;   /* the last update's */
    double loss_after;       /* the batch loss after the last update */
} mope_rebel_iter_stats;

int mope_rebel_iterate(mope_pcm *pcm, mope_expert *const *experts, int K, const mope_tokenizer *tok, int n,
                       const char *const *instructions, const char *const *preferences, mope_sampler *sampler,
                       mope_rebel_reward_fn reward, void *user, const mope_rebel_iter_opts *o,
                       mope_rebel_iter_stats *st, mope_rollout *out_rollouts, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
