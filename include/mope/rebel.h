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
 * Rule support: the linear rule only (the default, what MoPE uses).  The
 * geometric rule's log-probability needs the normaliser log Z_t(theta) =
 * log sum_v exp(sum_k w_k log pi_k(v)) over the whole vocabulary at every
 * step, which the recorded per-token probabilities do not determine; a PCM
 * whose rule is geometric is refused with MOPE_EUNSUPPORTED.
 *
 * Options, both off by default:
 *  - KL shaping toward the uniform mixture: kl_coef * (mean over every
 *    response token of the step of KL(w_t || uniform)) is added to the loss
 *    (a regulariser on the weights, differentiated with the rest);
 *  - length penalty: a response recorded as truncated (it hit the length
 *    limit without EOS) has length_penalty subtracted from its reward.
 *
 * The step loss = mean over pairs of L_pair + the KL term; its gradient
 * wrt each weight logit z_t,k (w_t = softmax(z_t)) is
 *     dL/dlp(y) * w_t,k (pi_k(y_t) / p_t - 1)
 *   + kl_coef / N_tok * w_t,k (log(K w_t,k) - KL(w_t || u)),
 * back-propagated through the PCM head and trunk by mope_pcm_backward. */
#ifndef MOPE_REBEL_H
#define MOPE_REBEL_H

#include "mope/core.h"
#include "mope/pcm.h"
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
    double logp_rollout;        /* log pi_t(y|x) recorded at rollout time (finite) */
    double reward;              /* r(x, y), e.g. a utility in [0, 1] */
    bool truncated;             /* hit the length limit without EOS */
} mope_rebel_sample;

typedef struct mope_rebel_pair {
    mope_rebel_sample y, y2;    /* y and y' of the same prompt and preference */
} mope_rebel_pair;

typedef struct mope_rebel_opts {
    double eta;                 /* > 0 */
    double kl_coef;             /* >= 0 */
    double length_penalty;      /* >= 0, subtracted from a truncated response's reward */
    int micro_batch;            /* pairs per PCM forward (>= 1) */
    mope_adamw_config adamw;    /* for mope_rebel_step */
} mope_rebel_opts;

/* eta 1, no KL, no length penalty, micro-batch 8, AdamW defaults with
 * lr 1e-4 and weight decay 0. */
void mope_rebel_opts_init(mope_rebel_opts *o);

typedef struct mope_rebel_stats {
    double loss;                /* total: mean L_pair + KL term */
    double rebel_loss;          /* mean L_pair */
    double kl;                  /* mean per-token KL(w || uniform) */
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
/* L_pair and d L_pair / d lp(y) (= - d L_pair / d lp(y')). */
double mope_rebel_pair_loss(double eta, double lp, double lp_old, double r, double lp2, double lp2_old, double r2,
                            double *dlp);
/* KL(w || uniform) = sum_k w_k log(K w_k); adds coef * d KL / d z to dz[K]
 * when dz is non-NULL. */
double mope_rebel_kl_uniform(const float *w, int K, double coef, float *dz);

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

#ifdef __cplusplus
}
#endif
#endif
