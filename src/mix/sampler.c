#include "mope/sampler.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    int32_t id;
    float logit;
} cand;

struct mope_sampler {
    mope_sampler_params p;
    mope_rng rng;
    int32_t cap;      /* scratch capacity, in tokens */
    float *logits;    /* working copy of the row */
    cand *cands;      /* surviving candidates */
    cand *spare;      /* second candidate buffer (selection output) */
    uint8_t *seen;    /* per-token flag, kept all-zero between calls */
};

mope_sampler_params mope_sampler_default_params(void) {
    mope_sampler_params p = {
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .no_repeat_ngram = 0,
        .seed = 42,
    };
    return p;
}

mope_sampler *mope_sampler_new(const mope_sampler_params *params, mope_error *err) {
    if (!params) {
        mope_error_set(err, MOPE_EINVAL, "sampler: no parameters");
        return NULL;
    }
    const mope_sampler_params *p = params;
    if (isnan(p->temp)) {
        mope_error_set(err, MOPE_EINVAL, "sampler: temperature is NaN");
        return NULL;
    }
    if (!(p->top_p >= 0.0f) || isnan(p->top_p)) {
        mope_error_set(err, MOPE_EINVAL, "sampler: top-p must be in [0, 1], got %g", (double)p->top_p);
        return NULL;
    }
    if (!(p->min_p <= 1.0f) || isnan(p->min_p)) {
        mope_error_set(err, MOPE_EINVAL, "sampler: min-p must be in [0, 1], got %g", (double)p->min_p);
        return NULL;
    }
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty)) {
        mope_error_set(err, MOPE_EINVAL, "sampler: repeat penalty must be a positive number, got %g",
                       (double)p->repeat_penalty);
        return NULL;
    }
    if (p->repeat_last_n < -1) {
        mope_error_set(err, MOPE_EINVAL, "sampler: repeat-last-n must be >= -1, got %d", (int)p->repeat_last_n);
        return NULL;
    }
    if (p->no_repeat_ngram < 0) {
        mope_error_set(err, MOPE_EINVAL, "sampler: no-repeat-ngram must be >= 0, got %d", (int)p->no_repeat_ngram);
        return NULL;
    }
    mope_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        mope_error_set(err, MOPE_ENOMEM, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    mope_rng_seed(&s->rng, p->seed);
    return s;
}

void mope_sampler_free(mope_sampler *s) {
    if (!s) return;
    free(s->logits);
    free(s->cands);
    free(s->spare);
    free(s->seen);
    free(s);
}

void mope_sampler_reseed(mope_sampler *s, uint64_t seed) {
    s->p.seed = seed;
    mope_rng_seed(&s->rng, seed);
}

const mope_sampler_params *mope_sampler_params_of(const mope_sampler *s) { return &s->p; }

static int reserve(mope_sampler *s, int32_t n, mope_error *err) {
    if (n <= s->cap) return 0;
    float *l = malloc((size_t)n * sizeof *l);
    cand *c = malloc((size_t)n * sizeof *c), *sp = malloc((size_t)n * sizeof *sp);
    uint8_t *seen = calloc((size_t)n, 1);
    if (!l || !c || !sp || !seen) {
        free(l);
        free(c);
        free(sp);
        free(seen);
        return mope_error_set(err, MOPE_ENOMEM, "sampler: out of memory for %d tokens", (int)n);
    }
    free(s->logits);
    free(s->cands);
    free(s->spare);
    free(s->seen);
    s->logits = l;
    s->cands = c;
    s->spare = sp;
    s->seen = seen;
    s->cap = n;
    return 0;
}

/* Total order used everywhere: higher logit first, then lower id, so that
 * ties never depend on the sort algorithm. */
static inline bool better(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (better(a, b)) return -1;
    if (better(b, a)) return 1;
    return 0;
}

/* Min-heap on `better` (root = worst kept), for top-k selection in O(n log k). */
static void sift_down(cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void sift_up(cand *h, int32_t i) {
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!better(&h[parent], &h[i])) return;
        cand t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

/* Writes the k best of src[0..n) to dst[0..k), sorted best first (k < n). */
static void select_top_k(const cand *src, int32_t n, int32_t k, cand *dst) {
    int32_t hn = 0;
    for (int32_t i = 0; i < n; i++) {
        if (hn < k) {
            dst[hn] = src[i];
            sift_up(dst, hn++);
        } else if (better(&src[i], &dst[0])) {
            dst[0] = src[i];
            sift_down(dst, hn, 0);
        }
    }
    qsort(dst, (size_t)k, sizeof *dst, cmp_cand);
}

static void swap_bufs(mope_sampler *s) {
    cand *t = s->cands;
    s->cands = s->spare;
    s->spare = t;
}

/* Steps 1-2 of the chain: copy (and for probabilities take the log of) the
 * row into s->logits, validate, apply the penalties. */
static int prepare(mope_sampler *s, const float *in, int32_t n, bool from_probs, const int32_t *history,
                   int64_t nh, mope_error *err) {
    if (!s || !in || n <= 0) return mope_error_set(err, MOPE_EINVAL, "sampler: empty input row");
    if (nh < 0 || (nh > 0 && !history)) return mope_error_set(err, MOPE_EINVAL, "sampler: bad history");
    int rc = reserve(s, n, err);
    if (rc) return rc;
    float *l = s->logits;
    for (int32_t i = 0; i < n; i++) {
        float v = in[i];
        if (from_probs) {
            if (!(v >= 0.0f) || isinf(v))
                return mope_error_set(err, MOPE_EINVAL, "sampler: probability of token %d is %g", (int)i, (double)v);
            l[i] = v > 0.0f ? logf(v) : -INFINITY;
        } else {
            if (isnan(v) || v == INFINITY)
                return mope_error_set(err, MOPE_EINVAL, "sampler: logit of token %d is %g", (int)i, (double)v);
            l[i] = v;
        }
    }
    for (int64_t i = 0; i < nh; i++)
        if (history[i] < 0 || history[i] >= n)
            return mope_error_set(err, MOPE_EINVAL, "sampler: history token %d out of range [0, %d)",
                                  (int)history[i], (int)n);

    const float pen = s->p.repeat_penalty;
    if (pen != 1.0f && nh > 0) {
        int64_t lo = s->p.repeat_last_n < 0 ? 0 : nh - s->p.repeat_last_n;
        if (lo < 0) lo = 0;
        for (int64_t i = lo; i < nh; i++) {
            int32_t t = history[i];
            if (s->seen[t]) continue;
            s->seen[t] = 1;
            if (l[t] > 0.0f) l[t] /= pen;
            else l[t] *= pen;
        }
        for (int64_t i = lo; i < nh; i++) s->seen[history[i]] = 0;
    }

    const int64_t ng = s->p.no_repeat_ngram;
    if (ng > 0 && nh >= ng) {
        /* The n-1 most recent tokens are the prefix; every earlier place where
         * that prefix occurs bans the token that followed it. */
        const int32_t *suffix = history + nh - (ng - 1);
        for (int64_t i = 0; i + ng <= nh; i++) {
            if (ng == 1 || memcmp(history + i, suffix, (size_t)(ng - 1) * sizeof *history) == 0)
                l[history[i + ng - 1]] = -INFINITY;
        }
    }
    return 0;
}

/* Runs the chain and leaves the candidates with their final (tempered)
 * weights, unnormalised, in s->cands[0..*n_out); *total = their sum.
 * Greedy leaves exactly one candidate. */
static int run_chain(mope_sampler *s, const float *in, int32_t n, bool from_probs, const int32_t *history,
                     int64_t nh, int32_t *n_out, double *total, mope_error *err) {
    int rc = prepare(s, in, n, from_probs, history, nh, err);
    if (rc) return rc;
    const float *l = s->logits;
    cand *c = s->cands; /* re-read after a selection swaps the buffers */
    int32_t nc = 0;
    for (int32_t i = 0; i < n; i++)
        if (l[i] != -INFINITY) c[nc++] = (cand){i, l[i]};
    if (nc == 0)
        return mope_error_set(err, MOPE_ESTATE, "sampler: every token is banned or has zero probability");

    if (s->p.temp <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < nc; i++)
            if (better(&c[i], &c[best])) best = i;
        c[0] = c[best];
        c[0].logit = 1.0f;
        *n_out = 1;
        *total = 1.0;
        return 0;
    }

    bool sorted = false;
    if (s->p.top_k > 0 && s->p.top_k < nc) {
        select_top_k(c, nc, s->p.top_k, s->spare);
        swap_bufs(s);
        c = s->cands;
        nc = s->p.top_k;
        sorted = true;
    }
    if (s->p.top_p < 1.0f && nc > 1) {
        float mx = c[0].logit;
        for (int32_t i = 1; i < nc; i++) mx = c[i].logit > mx ? c[i].logit : mx;
        double sum = 0.0;
        for (int32_t i = 0; i < nc; i++) sum += exp((double)(c[i].logit - mx));
        const double target = (double)s->p.top_p * sum;
        /* Sorting a whole vocabulary costs far more than the rest of the
         * chain, and the nucleus is usually small: select the best k for
         * growing k until they hold the target mass (the same set a full
         * sort would give, since the order is total). */
        for (int32_t k = 64; !sorted; k *= 4) {
            if (k >= nc / 2) {
                qsort(c, (size_t)nc, sizeof *c, cmp_cand);
                sorted = true;
                break;
            }
            select_top_k(c, nc, k, s->spare);
            double cum = 0.0;
            for (int32_t i = 0; i < k; i++) cum += exp((double)(s->spare[i].logit - mx));
            if (cum >= target) {
                swap_bufs(s);
                c = s->cands;
                nc = k;
                sorted = true;
            }
        }
        double cum = 0.0;
        int32_t keep = nc;
        for (int32_t i = 0; i < nc; i++) {
            cum += exp((double)(c[i].logit - mx));
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
        nc = keep;
    }
    if (s->p.min_p > 0.0f && nc > 1) {
        float mx = c[0].logit;
        if (!sorted)
            for (int32_t i = 1; i < nc; i++) mx = c[i].logit > mx ? c[i].logit : mx;
        /* p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p) */
        const float thr = mx + logf(s->p.min_p);
        int32_t k = 0;
        for (int32_t i = 0; i < nc; i++)
            if (c[i].logit >= thr) c[k++] = c[i];
        nc = k;
    }

    float mx = c[0].logit;
    for (int32_t i = 1; i < nc; i++) mx = c[i].logit > mx ? c[i].logit : mx;
    const double inv_t = 1.0 / (double)s->p.temp;
    double sum = 0.0;
    for (int32_t i = 0; i < nc; i++) {
        double w = exp((double)(c[i].logit - mx) * inv_t);
        c[i].logit = (float)w;
        sum += w;
    }
    *n_out = nc;
    *total = sum;
    return 0;
}

static int32_t draw(mope_sampler *s, const float *in, int32_t n, bool from_probs, const int32_t *history,
                    int64_t nh, mope_error *err) {
    int32_t nc = 0;
    double total = 0.0;
    int rc = run_chain(s, in, n, from_probs, history, nh, &nc, &total, err);
    if (rc) return rc;
    const cand *c = s->cands;
    if (s->p.temp <= 0.0f) return c[0].id;
    /* Every non-greedy draw consumes exactly one random number, so the rest
     * of a sequence does not depend on how many candidates survived. */
    double u = (double)mope_rng_uniform(&s->rng) * total, cum = 0.0;
    for (int32_t i = 0; i < nc; i++) {
        cum += (double)c[i].logit;
        if (u < cum) return c[i].id;
    }
    return c[nc - 1].id; /* u rounded up to the total */
}

int32_t mope_sampler_sample(mope_sampler *s, const float *logits, int32_t n_vocab, const int32_t *history,
                            int64_t n_history, mope_error *err) {
    return draw(s, logits, n_vocab, false, history, n_history, err);
}

int32_t mope_sampler_sample_probs(mope_sampler *s, const float *probs, int32_t n, const int32_t *history,
                                  int64_t n_history, mope_error *err) {
    return draw(s, probs, n, true, history, n_history, err);
}

int32_t mope_sampler_filtered(mope_sampler *s, const float *in, int32_t n, bool from_probs, const int32_t *history,
                              int64_t n_history, float *out, mope_error *err) {
    if (!out) return mope_error_set(err, MOPE_EINVAL, "sampler: no output buffer");
    int32_t nc = 0;
    double total = 0.0;
    int rc = run_chain(s, in, n, from_probs, history, n_history, &nc, &total, err);
    if (rc) return rc;
    memset(out, 0, (size_t)n * sizeof *out);
    int32_t nz = 0;
    for (int32_t i = 0; i < nc; i++) {
        out[s->cands[i].id] = (float)((double)s->cands[i].logit / total);
        nz += out[s->cands[i].id] > 0.0f;
    }
    return nz;
}
