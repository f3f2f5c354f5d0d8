/* The expert interface's dispatchers and the black-box (top-k only) view. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mope/expert.h"

static int check_seq(mope_expert *e, int seq, mope_error *err) {
    if (!e) return mope_error_set(err, MOPE_EINVAL, "expert: NULL expert");
    if (seq < 0 || seq >= e->n_seq)
        return mope_error_set(err, MOPE_EINVAL, "expert %s: sequence %d out of range [0, %d)", e->name, seq,
                              e->n_seq);
    return 0;
}

int mope_expert_start(mope_expert *e, int seq, const char *instruction, mope_error *err) {
    int rc = check_seq(e, seq, err);
    if (rc < 0) return rc;
    if (!instruction) return mope_error_set(err, MOPE_EINVAL, "expert %s: instruction missing", e->name);
    return e->ops->start(e, seq, instruction, err);
}

int mope_expert_feed(mope_expert *e, int seq, const int32_t *tokens, int n, mope_error *err) {
    int rc = check_seq(e, seq, err);
    if (rc < 0) return rc;
    if (!tokens || n <= 0) return mope_error_set(err, MOPE_EINVAL, "expert %s: feed needs n >= 1 tokens", e->name);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= e->n_vocab)
            return mope_error_set(err, MOPE_EINVAL, "expert %s: token %d out of range [0, %d)", e->name,
                                  (int)tokens[i], (int)e->n_vocab);
    return e->ops->feed(e, seq, tokens, n, err);
}

int mope_expert_next(mope_expert *e, int seq, mope_dist *out, mope_error *err) {
    int rc = check_seq(e, seq, err);
    if (rc < 0) return rc;
    if (!out) return mope_error_set(err, MOPE_EINVAL, "expert %s: output dist missing", e->name);
    return e->ops->next(e, seq, out, err);
}

void mope_expert_reset(mope_expert *e, int seq) {
    if (e && seq >= 0 && seq < e->n_seq) e->ops->reset(e, seq);
}

int mope_expert_prompt_tokens(mope_expert *e, const char *instruction, int32_t **out, mope_error *err) {
    if (!e || !instruction || !out) return mope_error_set(err, MOPE_EINVAL, "expert: bad arguments to prompt_tokens");
    if (!e->ops->prompt_tokens)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "expert %s: does not tokenise prompts locally", e->name);
    return e->ops->prompt_tokens(e, instruction, out, err);
}

void mope_expert_free(mope_expert *e) {
    if (e) e->ops->destroy(e);
}

const char *mope_expert_name(const mope_expert *e) { return e ? e->name : NULL; }

/* ---- black-box view ---- */

typedef struct blackbox {
    mope_expert base;
    mope_expert *inner;
    int k;
    mope_dist inner_dist;
    int32_t *ids; /* heap of the k best so far */
    float *lps;
} blackbox;

/* a is worse than b: lower log-prob, or equal and higher id (so ties keep
 * the lower id, as the sampler's top-k does). */
static inline bool worse(float la, int32_t ia, float lb, int32_t ib) { return la < lb || (la == lb && ia > ib); }

static void sift_down(int32_t *ids, float *lps, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(lps[l], ids[l], lps[w], ids[w])) w = l;
        if (r < n && worse(lps[r], ids[r], lps[w], ids[w])) w = r;
        if (w == i) return;
        int32_t ti = ids[i];
        float tl = lps[i];
        ids[i] = ids[w];
        lps[i] = lps[w];
        ids[w] = ti;
        lps[w] = tl;
        i = w;
    }
}

static void sift_up(int32_t *ids, float *lps, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(lps[i], ids[i], lps[p], ids[p])) return;
        int32_t ti = ids[i];
        float tl = lps[i];
        ids[i] = ids[p];
        lps[i] = lps[p];
        ids[p] = ti;
        lps[p] = tl;
        i = p;
    }
}

static int bb_start(mope_expert *e, int seq, const char *instruction, mope_error *err) {
    return mope_expert_start(((blackbox *)e)->inner, seq, instruction, err);
}

static int bb_feed(mope_expert *e, int seq, const int32_t *tokens, int n, mope_error *err) {
    return mope_expert_feed(((blackbox *)e)->inner, seq, tokens, n, err);
}

static void bb_reset(mope_expert *e, int seq) { mope_expert_reset(((blackbox *)e)->inner, seq); }

static int bb_prompt_tokens(mope_expert *e, const char *instruction, int32_t **out, mope_error *err) {
    return mope_expert_prompt_tokens(((blackbox *)e)->inner, instruction, out, err);
}

static int bb_next(mope_expert *e, int seq, mope_dist *out, mope_error *err) {
    blackbox *b = (blackbox *)e;
    int rc = mope_expert_next(b->inner, seq, &b->inner_dist, err);
    if (rc < 0) return rc;
    const mope_dist *d = &b->inner_dist;
    /* An inner top-k list is ranked among its listed tokens only: the
     * unlisted ones share the rest mass and have nothing to rank. */
    int32_t n_cand = d->kind == MOPE_DIST_FULL ? d->n_vocab : d->k;
    int k = b->k < n_cand ? b->k : (int)n_cand, n = 0;
    for (int32_t i = 0; i < n_cand; i++) {
        int32_t id = d->kind == MOPE_DIST_FULL ? i : d->ids[i];
        float lp = d->kind == MOPE_DIST_FULL ? (float)((double)d->logits[i] - d->lse) : d->logprobs[i];
        if (n < k) {
            b->ids[n] = id;
            b->lps[n] = lp;
            sift_up(b->ids, b->lps, n++);
        } else if (worse(b->lps[0], b->ids[0], lp, id)) {
            b->ids[0] = id;
            b->lps[0] = lp;
            sift_down(b->ids, b->lps, n, 0);
        }
    }
    rc = mope_dist_set_topk(out, d->n_vocab, b->ids, b->lps, n, err);
    if (rc < 0) mope_error_prefix(err, "expert %s", e->name);
    return rc;
}

static void bb_destroy(mope_expert *e) {
    blackbox *b = (blackbox *)e;
    mope_dist_free(&b->inner_dist);
    free(b->ids);
    free(b->lps);
    free(b);
}

static const mope_expert_ops blackbox_ops = {
    .start = bb_start,
    .feed = bb_feed,
    .next = bb_next,
    .reset = bb_reset,
    .prompt_tokens = bb_prompt_tokens,
    .destroy = bb_destroy,
};

mope_expert *mope_expert_blackbox_new(mope_expert *inner, int k, mope_error *err) {
    if (!inner || k <= 0 || k > inner->n_vocab) {
        mope_error_set(err, MOPE_EINVAL, "blackbox expert: need an inner expert and 1 <= k <= n_vocab (k %d)", k);
        return NULL;
    }
    blackbox *b = calloc(1, sizeof(*b));
    if (b) {
        b->ids = malloc(sizeof(int32_t) * (size_t)k);
        b->lps = malloc(sizeof(float) * (size_t)k);
    }
    if (!b || !b->ids || !b->lps) {
        if (b) bb_destroy(&b->base);
        mope_error_set(err, MOPE_ENOMEM, "blackbox expert: out of memory");
        return NULL;
    }
    b->base.ops = &blackbox_ops;
    b->base.n_vocab = inner->n_vocab;
    b->base.n_seq = inner->n_seq;
    snprintf(b->base.name, sizeof b->base.name, "top%d(%.40s)", k, inner->name);
    b->inner = inner;
    b->k = k;
    return &b->base;
}
