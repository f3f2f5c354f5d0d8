/* Token-level mixing of several experts' next-token distributions
 * (DESIGN.md §1): the linear mixture p(y) = sum_k w_k pi_k(y) (the default,
 * what MoPE uses) and the geometric rule p(y) ∝ exp(sum_k w_k log pi_k(y))
 * (what fixed-weight decoding methods such as MOD use).
 *
 * Each expert's distribution for one step is a mope_dist, of one of two
 * kinds, and the kinds may be mixed freely in one call:
 *  - FULL (exact mode): n_vocab logits, normalised here by a log-softmax
 *    with the maximum subtracted (so logits of ±1e4 and -inf are fine);
 *  - TOPK (black-box mode): k (token, logprob) pairs.  The unlisted mass
 *    R = max(0, 1 - S), S = sum of the listed probabilities, is spread
 *    uniformly over the n_vocab - k unlisted tokens, which each get
 *    R / (n_vocab - k) (log of it for the geometric rule; log 0 = -inf when
 *    S >= 1).  When S >= 1 - 1e-6 (float log-probabilities of a list
 *    holding all the mass cannot sum to exactly 1; a remote API may round
 *    above 1) or k == n_vocab, the listed probabilities are divided by S so
 *    the expert stays a distribution, and unlisted tokens get exactly 0.
 *    S above 1.01 is rejected as bad input.
 *
 * Representation choice: nothing V-sized is built per expert.  A TOPK dist
 * keeps its k pairs sorted by token id, and every V-wide operation is one
 * streaming pass over the vocabulary in which each top-k expert advances a
 * cursor through its sorted list.  mope_mix_step materialises the mixture
 * once, into the caller's n_vocab floats (what mope_sampler_sample_probs
 * takes).  When every expert is TOPK, the geometric rule is computed
 * sparsely over the union of listed tokens plus one shared "rest" class
 * (normaliser and values), and the linear rule is one fill of the shared
 * rest mass plus the listed tokens.
 *
 * Cost (measured on this project's 2-core AVX-512 build machine, V = 150k,
 * K = 8, one thread): exact linear step including the 8 normalisers
 * ~2.6 ms, exact geometric 5-8 ms, top-20 black-box either rule ~0.3 ms.
 * The exps of full experts run 8 lanes wide on AVX2+FMA machines (run-time
 * check; libm expf otherwise); a full expert's probabilities are then
 * within 3e-7 + 1.2e-7 * |log p| relative of exact.
 *
 * Weights: K non-negative finite numbers with a positive sum; they are
 * divided by their sum, so they need not be normalised.  An expert with
 * weight exactly 0 is skipped entirely (a one-hot weight reproduces that
 * expert, and -inf log-probabilities of unweighted experts do no harm).
 *
 * The functions are pure and thread-safe (a mope_dist is only read). */
#ifndef MOPE_MIX_H
#define MOPE_MIX_H

#include "mope/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most experts one call mixes (weights and per-expert state live on the stack). */
#define MOPE_MIX_MAX_K 64

typedef enum mope_mix_rule {
    MOPE_MIX_LINEAR = 0,    /* sum_k w_k pi_k(y) */
    MOPE_MIX_GEOMETRIC = 1, /* ∝ exp(sum_k w_k log pi_k(y)) */
} mope_mix_rule;

/* "linear" / "geometric"; NULL when out of range. */
const char *mope_mix_rule_name(mope_mix_rule r);
/* Parses a rule name (case-insensitive); returns the rule or MOPE_EINVAL. */
int mope_mix_rule_from_name(const char *name, mope_error *err);

typedef enum mope_dist_kind {
    MOPE_DIST_NONE = 0, /* not set yet */
    MOPE_DIST_FULL = 1,
    MOPE_DIST_TOPK = 2,
} mope_dist_kind;

/* One expert's next-token distribution for one step.  Zero-initialise
 * (`mope_dist d = {0};`), set it with mope_dist_set_full / _set_topk as
 * often as needed (the top-k arrays are reused, grown only when k grows),
 * and release with mope_dist_free.  Read the fields, do not write them. */
typedef struct mope_dist {
    mope_dist_kind kind;
    int32_t n_vocab;
    /* FULL */
    const float *logits; /* borrowed: must stay valid while the dist is used */
    double lse;          /* log sum_y exp(logits[y]) */
    /* TOPK */
    int32_t k;
    int32_t *ids;        /* k token ids, ascending (owned) */
    float *logprobs;     /* their log-probabilities, after any division by S */
    double rest_p;       /* probability of each unlisted token (0 when k == n_vocab) */
    double rest_logp;    /* log rest_p (-inf when rest_p == 0) */
    int32_t cap;         /* allocated length of ids / logprobs */
} mope_dist;

/* Exact mode.  logits[n_vocab] is borrowed (not copied).  Rejects NaN and
 * +inf logits and a row that is -inf everywhere. */
int mope_dist_set_full(mope_dist *d, const float *logits, int32_t n_vocab, mope_error *err);
/* Black-box mode: k pairs (any order; ids distinct and in [0, n_vocab),
 * 1 <= k <= n_vocab; log-probabilities <= 0 up to rounding, -inf allowed),
 * copied.  Rejects a set with no mass anywhere (S == 0 and k == n_vocab).
 * On an error the dist is left unchanged, except after a duplicate id,
 * which leaves it unset (MOPE_DIST_NONE). */
int mope_dist_set_topk(mope_dist *d, int32_t n_vocab, const int32_t *ids, const float *logprobs, int32_t k,
                       mope_error *err);
void mope_dist_free(mope_dist *d);

/* log pi(y) of one expert (-inf when it gives y no mass). y must be in
 * range (not checked: use after validation). */
double mope_dist_logprob(const mope_dist *d, int32_t y);

/* Log-softmax / softmax of a full dist into out[n_vocab] (float). */
int mope_dist_probs(const mope_dist *d, float *out, mope_error *err);

/* The mixture of the K dists with weights w[K] under `rule`, written to
 * out[n_vocab] as probabilities summing to 1 (to float rounding).  Fails
 * when the dists disagree on n_vocab, a dist is unset, the weights are bad,
 * or no token has positive mass (possible only for the geometric rule). */
int mope_mix_step(const mope_dist *d, int K, const float *w, mope_mix_rule rule, float *out, mope_error *err);

/* For a token y: the K experts' probabilities pi_k(y) into probs[K] and
 * their log-probabilities into logprobs[K] (either may be NULL; these are
 * what REBEL records per sampled token), and the mixture's log p(y) under
 * rule with weights w into *logp_mix (may be NULL; then w may be NULL too:
 * without w every dist must be set, with w only the weighted ones).
 * For the geometric rule log p(y) includes the normaliser log Z (a pass
 * over the vocabulary, or over the listed tokens when every dist is TOPK).
 * *logp_mix may be -inf (y has no mass under the mixture). */
int mope_mix_token_probs(const mope_dist *d, int K, int32_t y, const float *w, mope_mix_rule rule, float *probs,
                         float *logprobs, double *logp_mix, mope_error *err);

/* Gradient of log p_mix(y) with respect to the weight logits z, where
 * w = softmax(z) is passed (normalised here like every weight vector):
 *   linear:    d/dz_j = w_j (pi_j(y) / p(y) - 1)
 *   geometric: d/dz_j = w_j (g_j - sum_k w_k g_k),
 *              g_k = log pi_k(y) - E_{y'~p}[log pi_k(y')]   (d log Z / d w_k
 *              is the mixture's expectation of log pi_k).
 * Writes grad_z[K] and, when logp is non-NULL, log p_mix(y).  The geometric
 * gradient is provided in exact mode only (every dist FULL; a TOPK dist gets
 * MOPE_EUNSUPPORTED): it needs the normaliser's expectation over the whole
 * vocabulary, which black-box experts do not supply.  A token with no mass
 * under the mixture gets MOPE_ERANGE (its gradient is infinite). */
int mope_mix_grad_z(const mope_dist *d, int K, int32_t y, const float *w, mope_mix_rule rule, float *grad_z,
                    double *logp, mope_error *err);

/* The geometric rule's normaliser and expectations in one pass over the
 * vocabulary, for n experts whose log-probabilities are
 * l_i(v) = rows[i][v] - shift[i] (a row of logits with its log-sum-exp, or
 * of recorded log-probabilities with shift 0) and weights w[i]:
 *   returns log Z = log sum_v exp(sum_i w_i l_i(v)),
 *   E[i] = E_{v ~ mixture} [l_i(v)]   (n entries).
 * Tokens whose score is -inf are left out; returns -inf when every one is,
 * NaN when some score is NaN or +inf.  Shared by mope_mix_grad_z and REBEL's
 * geometric sequence log-probability (mope/rebel.h). */
double mope_mix_geo_moments(const float *const *rows, const double *shift, const double *w, int n, int32_t V,
                            double *E);

#ifdef __cplusplus
}
#endif
#endif
