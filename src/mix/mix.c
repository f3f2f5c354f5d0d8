/* Mixing rules over experts' next-token distributions (include/mope/mix.h).
 *
 * Every V-wide operation walks the vocabulary once in token order; a top-k
 * expert follows along with a cursor into its id-sorted list, so no V-sized
 * array is built per expert.  Per-token sums are taken in double: the
 * geometric rule adds weighted log-probabilities that may be large and of
 * opposite sizes, and float rounding there would show up as relative error
 * in the probabilities after exponentiation. */
#include <math.h>
#include <stdlib.h>
#include <strings.h>

#include "mope/mix.h"

const char *mope_mix_rule_name(mope_mix_rule r) {
    switch (r) {
    case MOPE_MIX_LINEAR: return "linear";
    case MOPE_MIX_GEOMETRIC: return "geometric";
    }
    return NULL;
}

int mope_mix_rule_from_name(const char *name, mope_error *err) {
    if (name && strcasecmp(name, "linear") == 0) return MOPE_MIX_LINEAR;
    if (name && strcasecmp(name, "geometric") == 0) return MOPE_MIX_GEOMETRIC;
    return mope_error_set(err, MOPE_EINVAL, "unknown mixing rule '%s' (known: linear, geometric)",
                          name ? name : "(null)");
}

/* ---- exp over a vocabulary ----
 * The hot loops: each full expert costs two passes of n_vocab exps per step
 * (normaliser, then probabilities).  On AVX2+FMA machines they run 8 lanes
 * at a time with a Cephes-style expf (range reduction by ln 2 in two parts,
 * degree-6 polynomial; ~2 ulp), chosen at run time; elsewhere libm's expf. */

#if defined(__x86_64__) || defined(__i386__)
#define MIX_X86 1
#include "mix/mix_internal.h"

static bool use_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif

static double sum_exp(const float *l, float m, int32_t n) {
#ifdef MIX_X86
    if (use_avx2()) return mope_mix_sum_exp_avx2(l, m, n);
#endif
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += expf(l[i] - m);
    return s;
}

static void axpy_exp(float *out, const float *l, double lse, float w, int32_t n, bool add) {
    float hi = (float)lse, lo = (float)(lse - hi);
#ifdef MIX_X86
    if (use_avx2()) {
        mope_mix_axpy_exp_avx2(out, l, hi, lo, w, n, add);
        return;
    }
#endif
    for (int32_t i = 0; i < n; i++) out[i] = (add ? out[i] : 0) + w * expf((l[i] - hi) - lo);
}

/* ---- dists ---- */

int mope_dist_set_full(mope_dist *d, const float *logits, int32_t n_vocab, mope_error *err) {
    if (!d || !logits || n_vocab <= 0)
        return mope_error_set(err, MOPE_EINVAL, "dist: need logits and n_vocab > 0 (got %d)", (int)n_vocab);
    float m = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (isnan(v) || v == INFINITY)
            return mope_error_set(err, MOPE_EINVAL, "dist: logit %d is %s", (int)i, isnan(v) ? "NaN" : "+inf");
        if (v > m) m = v;
    }
    if (m == -INFINITY) return mope_error_set(err, MOPE_EINVAL, "dist: every logit is -inf (no token has mass)");
    /* float exp of the float difference: l - m is exact when l is near m,
     * where the mass is. */
    double s = sum_exp(logits, m, n_vocab);
    d->kind = MOPE_DIST_FULL;
    d->n_vocab = n_vocab;
    d->logits = logits;
    d->lse = m + log(s);
    d->k = 0;
    return 0;
}

static void sort_pairs_small(int32_t *ids, float *lp, int32_t k) {
    for (int32_t i = 1; i < k; i++) {
        int32_t id = ids[i];
        float v = lp[i];
        int32_t j = i - 1;
        while (j >= 0 && ids[j] > id) {
            ids[j + 1] = ids[j];
            lp[j + 1] = lp[j];
            j--;
        }
        ids[j + 1] = id;
        lp[j + 1] = v;
    }
}

typedef struct pair {
    int32_t id;
    float lp;
} pair;

static int cmp_pair(const void *a, const void *b) {
    int32_t x = ((const pair *)a)->id, y = ((const pair *)b)->id;
    return (x > y) - (x < y);
}

static int sort_pairs(int32_t *ids, float *lp, int32_t k, mope_error *err) {
    if (k <= 32) {
        sort_pairs_small(ids, lp, k);
        return 0;
    }
    pair *p = malloc(sizeof(pair) * (size_t)k);
    if (!p) return mope_error_set(err, MOPE_ENOMEM, "dist: out of memory sorting %d pairs", (int)k);
    for (int32_t i = 0; i < k; i++) p[i] = (pair){ids[i], lp[i]};
    qsort(p, (size_t)k, sizeof(pair), cmp_pair);
    for (int32_t i = 0; i < k; i++) {
        ids[i] = p[i].id;
        lp[i] = p[i].lp;
    }
    free(p);
    return 0;
}

int mope_dist_set_topk(mope_dist *d, int32_t n_vocab, const int32_t *ids, const float *logprobs, int32_t k,
                       mope_error *err) {
    if (!d || !ids || !logprobs || n_vocab <= 0 || k <= 0 || k > n_vocab)
        return mope_error_set(err, MOPE_EINVAL, "dist: top-k needs 1 <= k <= n_vocab (k %d, n_vocab %d) and arrays",
                              (int)k, (int)n_vocab);
    double S = 0;
    for (int32_t i = 0; i < k; i++) {
        if (ids[i] < 0 || ids[i] >= n_vocab)
            return mope_error_set(err, MOPE_EINVAL, "dist: top-k token id %d out of range [0, %d)", (int)ids[i],
                                  (int)n_vocab);
        if (isnan(logprobs[i]))
            return mope_error_set(err, MOPE_EINVAL, "dist: top-k log-prob of token %d is NaN", (int)ids[i]);
        S += exp((double)logprobs[i]);
    }
    if (!(S <= 1.01))
        return mope_error_set(err, MOPE_EINVAL, "dist: top-k probabilities sum to %g > 1", S);
    if (S <= 0 && k == n_vocab)
        return mope_error_set(err, MOPE_EINVAL, "dist: top-k lists every token with probability 0");
    if (k > d->cap) {
        int32_t *ni = realloc(d->ids, sizeof(int32_t) * (size_t)k);
        if (ni) d->ids = ni;
        float *nl = ni ? realloc(d->logprobs, sizeof(float) * (size_t)k) : NULL;
        if (!nl) return mope_error_set(err, MOPE_ENOMEM, "dist: out of memory for %d top-k pairs", (int)k);
        d->logprobs = nl;
        d->cap = k;
    }
    memcpy(d->ids, ids, sizeof(int32_t) * (size_t)k);
    memcpy(d->logprobs, logprobs, sizeof(float) * (size_t)k);
    /* From here on the arrays hold the new pairs: a failure leaves the dist
     * unset rather than half old, half new. */
    int rc = sort_pairs(d->ids, d->logprobs, k, err);
    if (rc < 0) {
        d->kind = MOPE_DIST_NONE;
        return rc;
    }
    for (int32_t i = 1; i < k; i++)
        if (d->ids[i] == d->ids[i - 1]) {
            d->kind = MOPE_DIST_NONE;
            return mope_error_set(err, MOPE_EINVAL, "dist: top-k lists token %d twice", (int)d->ids[i]);
        }
    /* A listed set that already holds all the mass (or, through rounding,
     * more) is renormalised to exactly 1 so the expert stays a distribution. */
    /* Float log-probabilities of a list that holds all the mass never sum
     * to exactly 1 in double; within 1e-6 it counts as all the mass. */
    if (S >= 1 - 1e-6 || k == n_vocab) {
        float ls = (float)log(S);
        for (int32_t i = 0; i < k; i++) d->logprobs[i] -= ls;
        d->rest_p = 0;
    } else {
        d->rest_p = (1 - S) / (double)(n_vocab - k);
    }
    d->rest_logp = d->rest_p > 0 ? log(d->rest_p) : -INFINITY;
    d->kind = MOPE_DIST_TOPK;
    d->n_vocab = n_vocab;
    d->k = k;
    d->logits = NULL;
    return 0;
}

void mope_dist_free(mope_dist *d) {
    if (!d) return;
    free(d->ids);
    free(d->logprobs);
    memset(d, 0, sizeof(*d));
}

double mope_dist_logprob(const mope_dist *d, int32_t y) {
    if (d->kind == MOPE_DIST_FULL) return (double)d->logits[y] - d->lse;
    int32_t lo = 0, hi = d->k;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (d->ids[mid] < y) lo = mid + 1;
        else hi = mid;
    }
    if (lo < d->k && d->ids[lo] == y) return d->logprobs[lo];
    return d->rest_logp;
}

int mope_dist_probs(const mope_dist *d, float *out, mope_error *err) {
    if (!d || !out || d->kind == MOPE_DIST_NONE) return mope_error_set(err, MOPE_EINVAL, "dist: not set");
    if (d->kind == MOPE_DIST_FULL) {
        axpy_exp(out, d->logits, d->lse, 1.0f, d->n_vocab, false);
    } else {
        for (int32_t y = 0; y < d->n_vocab; y++) out[y] = (float)d->rest_p;
        for (int32_t i = 0; i < d->k; i++) out[d->ids[i]] = (float)exp((double)d->logprobs[i]);
    }
    return 0;
}

/* ---- the mixing walk ---- */

/* An expert taking part in a call: weight > 0 only. */
typedef struct term {
    const mope_dist *d;
    double w;
    int32_t cur; /* top-k cursor: first listed entry with id >= the current token */
} term;

/* Validates the call and collects the experts with positive weight
 * (normalised to sum 1).  An expert with weight 0 is not read, so its
 * distribution may be unset (MoPE does not run experts it weighs ~0).
 * Returns the number of terms or a negative code. */
static int prepare(const mope_dist *d, int K, const float *w, term *t, mope_error *err) {
    if (!d || K <= 0 || K > MOPE_MIX_MAX_K)
        return mope_error_set(err, MOPE_EINVAL, "mix: need 1..%d experts (got %d)", MOPE_MIX_MAX_K, K);
    if (!w) return mope_error_set(err, MOPE_EINVAL, "mix: weights missing");
    double sum = 0;
    for (int k = 0; k < K; k++) {
        if (!isfinite(w[k]) || w[k] < 0)
            return mope_error_set(err, MOPE_EINVAL, "mix: weight %d is %g (need finite, >= 0)", k, (double)w[k]);
        sum += w[k];
    }
    if (!(sum > 0)) return mope_error_set(err, MOPE_EINVAL, "mix: weights sum to 0");
    int first = -1;
    for (int k = 0; k < K; k++) {
        if (!(w[k] > 0)) continue;
        if (d[k].kind != MOPE_DIST_FULL && d[k].kind != MOPE_DIST_TOPK)
            return mope_error_set(err, MOPE_EINVAL, "mix: distribution of expert %d is not set", k);
        if (first < 0) first = k;
        if (d[k].n_vocab != d[first].n_vocab)
            return mope_error_set(err, MOPE_EINVAL, "mix: expert %d has n_vocab %d, expert %d has %d", k,
                                  (int)d[k].n_vocab, first, (int)d[first].n_vocab);
    }
    int n = 0;
    for (int k = 0; k < K; k++)
        if (w[k] > 0) t[n++] = (term){&d[k], w[k] / sum, 0};
    return n;
}

/* log pi(y) for the walk: y must not decrease between calls on a term. */
static inline double walk_logprob(term *t, int32_t y) {
    const mope_dist *d = t->d;
    if (d->kind == MOPE_DIST_FULL) return (double)d->logits[y] - d->lse;
    while (t->cur < d->k && d->ids[t->cur] < y) t->cur++;
    if (t->cur < d->k && d->ids[t->cur] == y) return d->logprobs[t->cur];
    return d->rest_logp;
}

/* sum_k w_k log pi_k(y); -inf when any weighted expert gives y no mass. */
static inline double geo_score(term *t, int n, int32_t y) {
    double s = 0;
    for (int i = 0; i < n; i++) s += t[i].w * walk_logprob(&t[i], y);
    return s;
}

static void rewind_terms(term *t, int n) {
    for (int i = 0; i < n; i++) t[i].cur = 0;
}

/* Online log-sum-exp accumulator. */
typedef struct lse_acc {
    double m, z;
} lse_acc;

static inline void lse_add(lse_acc *a, double v, double count) {
    if (v == -INFINITY) return;
    if (v > a->m) {
        a->z = a->z * exp(a->m - v) + count;
        a->m = v;
    } else {
        a->z += count * exp(v - a->m);
    }
}

static double lse_value(const lse_acc *a) { return a->z > 0 ? a->m + log(a->z) : -INFINITY; }

static bool all_topk(const term *t, int n) {
    for (int i = 0; i < n; i++)
        if (t[i].d->kind != MOPE_DIST_TOPK) return false;
    return true;
}

/* log Z of the geometric rule.  With only top-k experts the tokens nobody
 * listed all share one score, so only the union of listed ids is walked. */
static double geo_log_z(term *t, int n) {
    int32_t V = t[0].d->n_vocab;
    lse_acc a = {-INFINITY, 0};
    rewind_terms(t, n);
    if (!all_topk(t, n)) {
        for (int32_t y = 0; y < V; y++) lse_add(&a, geo_score(t, n, y), 1);
        return lse_value(&a);
    }
    int64_t n_union = 0;
    for (;;) {
        int32_t y = INT32_MAX;
        for (int i = 0; i < n; i++)
            if (t[i].cur < t[i].d->k && t[i].d->ids[t[i].cur] < y) y = t[i].d->ids[t[i].cur];
        if (y == INT32_MAX) break;
        lse_add(&a, geo_score(t, n, y), 1);
        n_union++;
        for (int i = 0; i < n; i++)
            if (t[i].cur < t[i].d->k && t[i].d->ids[t[i].cur] == y) t[i].cur++;
    }
    if (n_union < V) {
        double rest = 0;
        for (int i = 0; i < n; i++) rest += t[i].w * t[i].d->rest_logp;
        lse_add(&a, rest, (double)(V - n_union));
    }
    return lse_value(&a);
}

int mope_mix_step(const mope_dist *d, int K, const float *w, mope_mix_rule rule, float *out, mope_error *err) {
    term t[MOPE_MIX_MAX_K];
    int n = prepare(d, K, w, t, err);
    if (n < 0) return n;
    if (!out) return mope_error_set(err, MOPE_EINVAL, "mix: output array missing");
    int32_t V = t[0].d->n_vocab;
    double sum = 0;
    if (rule == MOPE_MIX_LINEAR) {
        /* Expert by expert (a tight loop per full expert), starting from the
         * top-k experts' shared rest mass; then every token some top-k
         * expert listed is recomputed whole (a few per expert). */
        double c = 0;
        for (int i = 0; i < n; i++)
            if (t[i].d->kind == MOPE_DIST_TOPK) c += t[i].w * t[i].d->rest_p;
        for (int32_t y = 0; y < V; y++) out[y] = (float)c;
        for (int i = 0; i < n; i++)
            if (t[i].d->kind == MOPE_DIST_FULL) axpy_exp(out, t[i].d->logits, t[i].d->lse, (float)t[i].w, V, true);
        for (int i = 0; i < n; i++) {
            if (t[i].d->kind != MOPE_DIST_TOPK) continue;
            for (int32_t j = 0; j < t[i].d->k; j++) {
                int32_t y = t[i].d->ids[j];
                double p = 0;
                for (int q = 0; q < n; q++) p += t[q].w * exp(mope_dist_logprob(t[q].d, y));
                out[y] = (float)p;
            }
        }
        for (int32_t y = 0; y < V; y++) sum += out[y];
    } else if (rule == MOPE_MIX_GEOMETRIC && all_topk(t, n)) {
        /* Black-box experts only: every token nobody listed has the rest
         * score, so only the listed tokens need their own value. */
        double lz = geo_log_z(t, n);
        if (lz == -INFINITY)
            return mope_error_set(err, MOPE_ERANGE, "mix: no token has mass under the geometric mixture");
        double rest = 0;
        for (int i = 0; i < n; i++) rest += t[i].w * t[i].d->rest_logp;
        float pr = (float)exp(rest - lz);
        for (int32_t y = 0; y < V; y++) out[y] = pr;
        for (int i = 0; i < n; i++)
            for (int32_t j = 0; j < t[i].d->k; j++) {
                int32_t y = t[i].d->ids[j];
                double sc = 0;
                for (int q = 0; q < n; q++) sc += t[q].w * mope_dist_logprob(t[q].d, y);
                out[y] = (float)exp(sc - lz);
            }
        for (int32_t y = 0; y < V; y++) sum += out[y];
    } else if (rule == MOPE_MIX_GEOMETRIC) {
        /* Two passes (max, then exponentiate) rather than a stored score, so
         * the scores stay in double without a V-sized double buffer. */
        double m = -INFINITY;
        for (int32_t y = 0; y < V; y++) {
            double s = geo_score(t, n, y);
            if (s > m) m = s;
        }
        if (m == -INFINITY)
            return mope_error_set(err, MOPE_ERANGE, "mix: no token has mass under the geometric mixture");
        rewind_terms(t, n);
        for (int32_t y = 0; y < V; y++) {
            out[y] = (float)exp(geo_score(t, n, y) - m);
            sum += out[y];
        }
    } else {
        return mope_error_set(err, MOPE_EINVAL, "mix: unknown rule %d", (int)rule);
    }
    if (!(sum > 0) || !isfinite(sum))
        return mope_error_set(err, MOPE_ERANGE, "mix: mixture has total mass %g", sum);
    /* Renormalise: the float rounding of V terms leaves the sum off 1 by
     * about V * 2^-24 in the worst case. */
    double inv = 1.0 / sum;
    for (int32_t y = 0; y < V; y++) out[y] = (float)(out[y] * inv);
    return 0;
}

/* log sum_k w_k pi_k(y) in the log domain, so a token every expert finds
 * very unlikely (log pi ~ -1e4) still gets a finite answer. */
static double linear_logp(const term *t, int n, const double *lp) {
    lse_acc a = {-INFINITY, 0};
    for (int i = 0; i < n; i++)
        if (lp[i] > -INFINITY) lse_add(&a, log(t[i].w) + lp[i], 1);
    return lse_value(&a);
}

static int check_token(const mope_dist *d, int32_t y, mope_error *err) {
    if (y < 0 || y >= d[0].n_vocab)
        return mope_error_set(err, MOPE_EINVAL, "mix: token %d out of range [0, %d)", (int)y, (int)d[0].n_vocab);
    return 0;
}

int mope_mix_token_probs(const mope_dist *d, int K, int32_t y, const float *w, mope_mix_rule rule, float *probs,
                         float *logprobs, double *logp_mix, mope_error *err) {
    term t[MOPE_MIX_MAX_K];
    int n = 0;
    if (logp_mix || w) {
        n = prepare(d, K, w, t, err);
        if (n < 0) return n;
    } else {
        if (!d || K <= 0 || K > MOPE_MIX_MAX_K)
            return mope_error_set(err, MOPE_EINVAL, "mix: need 1..%d experts (got %d)", MOPE_MIX_MAX_K, K);
        for (int k = 0; k < K; k++)
            if (d[k].kind == MOPE_DIST_NONE || d[k].n_vocab != d[0].n_vocab)
                return mope_error_set(err, MOPE_EINVAL, "mix: distribution of expert %d is unset or of another vocab",
                                      k);
    }
    int rc = check_token(logp_mix || w ? t[0].d : d, y, err);
    if (rc < 0) return rc;
    for (int k = 0; k < K; k++) {
        /* an unset distribution (weight 0, see prepare) has no probabilities */
        double lp = d[k].kind == MOPE_DIST_NONE ? -INFINITY : mope_dist_logprob(&d[k], y);
        if (probs) probs[k] = (float)exp(lp);
        if (logprobs) logprobs[k] = (float)lp;
    }
    if (!logp_mix) return 0;
    double lp[MOPE_MIX_MAX_K];
    for (int i = 0; i < n; i++) lp[i] = mope_dist_logprob(t[i].d, y);
    if (rule == MOPE_MIX_LINEAR) {
        *logp_mix = linear_logp(t, n, lp);
    } else if (rule == MOPE_MIX_GEOMETRIC) {
        double s = 0;
        for (int i = 0; i < n; i++) s += t[i].w * lp[i];
        double lz = geo_log_z(t, n);
        if (lz == -INFINITY)
            return mope_error_set(err, MOPE_ERANGE, "mix: no token has mass under the geometric mixture");
        *logp_mix = s == -INFINITY ? -INFINITY : s - lz;
    } else {
        return mope_error_set(err, MOPE_EINVAL, "mix: unknown rule %d", (int)rule);
    }
    return 0;
}

double mope_mix_geo_moments(const float *const *rows, const double *shift, const double *w, int n, int32_t V,
                            double *E) {
    /* one online pass, rescaling the running sums as the maximum moves */
    double m = -INFINITY, z = 0, A[MOPE_MIX_MAX_K] = {0}, l[MOPE_MIX_MAX_K];
    for (int32_t v = 0; v < V; v++) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            l[i] = (double)rows[i][v] - shift[i];
            s += w[i] * l[i];
        }
        if (s == -INFINITY) continue;
        if (!(s < INFINITY)) return NAN;
        double e;
        if (s > m) {
            double sc = exp(m - s);
            z *= sc;
            for (int i = 0; i < n; i++) A[i] *= sc;
            m = s;
            e = 1;
        } else {
            e = exp(s - m);
        }
        z += e;
        for (int i = 0; i < n; i++) A[i] += e * l[i];
    }
    if (!(z > 0)) return -INFINITY;
    for (int i = 0; i < n; i++) E[i] = A[i] / z;
    return m + log(z);
}

int mope_mix_grad_z(const mope_dist *d, int K, int32_t y, const float *w, mope_mix_rule rule, float *grad_z,
                    double *logp, mope_error *err) {
    term t[MOPE_MIX_MAX_K];
    int n = prepare(d, K, w, t, err);
    if (n < 0) return n;
    int rc = check_token(t[0].d, y, err);
    if (rc < 0) return rc;
    if (!grad_z) return mope_error_set(err, MOPE_EINVAL, "mix: gradient output missing");
    if (rule != MOPE_MIX_LINEAR && rule != MOPE_MIX_GEOMETRIC)
        return mope_error_set(err, MOPE_EINVAL, "mix: unknown rule %d", (int)rule);
    /* g[i]: d log p / d w_i for the active experts; the softmax chain rule
     * then gives w_j (g_j - sum_i w_i g_i), which is 0 for weight-0 experts. */
    double lp[MOPE_MIX_MAX_K] = {0}, g[MOPE_MIX_MAX_K] = {0}, lpm;
    for (int i = 0; i < n; i++) lp[i] = mope_dist_logprob(t[i].d, y);
    if (rule == MOPE_MIX_LINEAR) {
        lpm = linear_logp(t, n, lp);
        if (lpm == -INFINITY)
            return mope_error_set(err, MOPE_ERANGE, "mix: token %d has no mass under the mixture", (int)y);
        /* d/dw_i log p = pi_i / p; the "- 1" of the formula is the softmax
         * term sum_i w_i (pi_i / p) = 1. */
        for (int i = 0; i < n; i++) g[i] = exp(lp[i] - lpm);
    } else {
        for (int i = 0; i < n; i++)
            if (t[i].d->kind != MOPE_DIST_FULL)
                return mope_error_set(err, MOPE_EUNSUPPORTED,
                                      "mix: the geometric gradient needs full distributions (expert %d is top-k)",
                                      (int)(t[i].d - d));
        const float *rows[MOPE_MIX_MAX_K] = {0};
        double shift[MOPE_MIX_MAX_K] = {0}, wd[MOPE_MIX_MAX_K] = {0}, A[MOPE_MIX_MAX_K] = {0};
        for (int i = 0; i < n; i++) {
            rows[i] = t[i].d->logits;
            shift[i] = t[i].d->lse;
            wd[i] = t[i].w;
        }
        double lz = mope_mix_geo_moments(rows, shift, wd, n, t[0].d->n_vocab, A);
        double s = 0;
        for (int i = 0; i < n; i++) s += t[i].w * lp[i];
        if (s == -INFINITY || !isfinite(lz))
            return mope_error_set(err, MOPE_ERANGE, "mix: token %d has no mass under the mixture", (int)y);
        lpm = s - lz;
        for (int i = 0; i < n; i++) g[i] = lp[i] - A[i];
    }
    double gbar = 0;
    for (int i = 0; i < n; i++) gbar += t[i].w * g[i];
    for (int k = 0; k < K; k++) grad_z[k] = 0;
    for (int i = 0; i < n; i++) grad_z[t[i].d - d] = (float)(t[i].w * (g[i] - gbar));
    if (logp) *logp = lpm;
    return 0;
}
