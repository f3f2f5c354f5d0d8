/* Local experts and groups of local experts over one model.
 *
 * A standalone local expert is a group of one that it owns, so there is a
 * single code path for queuing tokens and running the forward pass: member
 * i of a group keeps its sequence s in KV slot i * n_seq + s. */
#include <stdio.h>
#include <stdlib.h>

#include "mope/expert.h"

/* Rows per forward call: bounds the engine's scratch memory for a long
 * prefill of many experts, while a decode step (K * n_seq rows) stays one
 * call. */
#define GROUP_MAX_ROWS 512

typedef struct seq_state {
    int32_t *pend; /* queued tokens, not yet run */
    int n_pend, cap_pend;
    float *logits; /* after the last evaluated token */
    bool has_logits;
} seq_state;

typedef struct local_expert {
    mope_expert base;
    mope_expert_group *g;
    int index;
    bool owns_group;
    mope_chat_template chat;
    char *preference, *system;
    int adapter;
    seq_state *seqs;
} local_expert;

struct mope_expert_group {
    mope_model *m;
    bool owns_model;
    mope_kv *kv;
    const mope_tokenizer *tok;
    mope_tokenizer *tok_owned;
    mope_pool *pool;
    int K, n_seq, n_ctx;
    int32_t n_vocab;
    local_expert **members;
    mope_row *rows;
    int cap_rows;
    float *scratch; /* GROUP_MAX_ROWS * n_vocab at most, grown on demand */
    int cap_scratch_rows;
    int last_rows;
    int64_t n_forward;
};

void mope_expert_config_init(mope_expert_config *c) {
    memset(c, 0, sizeof(*c));
    c->chat = MOPE_CHAT_TULU;
    c->adapter = -1;
    c->n_seq = 1;
}

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

static int slot_of(const local_expert *x, int seq) { return x->index * x->g->n_seq + seq; }

/* ---- ops ---- */

static int lx_prompt_tokens(mope_expert *e, const char *instruction, int32_t **out, mope_error *err) {
    local_expert *x = (local_expert *)e;
    size_t li = strlen(instruction), lp = x->preference ? strlen(x->preference) : 0;
    char *user = malloc(li + lp + 2);
    if (!user) return mope_error_set(err, MOPE_ENOMEM, "expert %s: out of memory", e->name);
    memcpy(user, instruction, li);
    if (lp) {
        user[li] = ' ';
        memcpy(user + li + 1, x->preference, lp + 1);
    } else {
        user[li] = 0;
    }
    char *text = mope_chat_format_alloc(x->chat, x->system, user, err);
    free(user);
    if (!text) {
        mope_error_prefix(err, "expert %s", e->name);
        return err ? err->code : MOPE_EINVAL;
    }
    const mope_tokenizer *t = x->g->tok;
    int n = mope_tokenizer_encode_alloc(t, text, strlen(text), mope_tokenizer_add_bos(t), true, out, err);
    free(text);
    if (n < 0) mope_error_prefix(err, "expert %s: tokenising the prompt", e->name);
    return n;
}

static void lx_reset(mope_expert *e, int seq) {
    local_expert *x = (local_expert *)e;
    mope_kv_clear_seq(x->g->kv, slot_of(x, seq));
    x->seqs[seq].n_pend = 0;
    x->seqs[seq].has_logits = false;
}

static int lx_feed(mope_expert *e, int seq, const int32_t *tokens, int n, mope_error *err) {
    local_expert *x = (local_expert *)e;
    seq_state *s = &x->seqs[seq];
    int64_t len = (int64_t)mope_kv_seq_len(x->g->kv, slot_of(x, seq)) + s->n_pend;
    if (len + n > x->g->n_ctx)
        return mope_error_set(err, MOPE_ERANGE, "expert %s: sequence %d would hold %lld tokens, context is %d",
                              e->name, seq, (long long)(len + n), x->g->n_ctx);
    if (s->n_pend + n > s->cap_pend) {
        int cap = s->cap_pend ? s->cap_pend : 16;
        while (cap < s->n_pend + n) cap *= 2;
        int32_t *p = realloc(s->pend, sizeof(int32_t) * (size_t)cap);
        if (!p) return mope_error_set(err, MOPE_ENOMEM, "expert %s: out of memory queuing tokens", e->name);
        s->pend = p;
        s->cap_pend = cap;
    }
    memcpy(s->pend + s->n_pend, tokens, sizeof(int32_t) * (size_t)n);
    s->n_pend += n;
    s->has_logits = false;
    return 0;
}

static int lx_start(mope_expert *e, int seq, const char *instruction, mope_error *err) {
    int32_t *toks = NULL;
    int n = lx_prompt_tokens(e, instruction, &toks, err);
    if (n < 0) return n;
    lx_reset(e, seq);
    int rc = n > 0 ? lx_feed(e, seq, toks, n, err)
                   : mope_error_set(err, MOPE_EINVAL, "expert %s: the prompt has no tokens", e->name);
    free(toks);
    return rc;
}

static int lx_next(mope_expert *e, int seq, mope_dist *out, mope_error *err) {
    local_expert *x = (local_expert *)e;
    seq_state *s = &x->seqs[seq];
    if (s->n_pend > 0) {
        int rc = mope_expert_group_eval(x->g, err);
        if (rc < 0) return rc;
    }
    if (!s->has_logits)
        return mope_error_set(err, MOPE_ESTATE, "expert %s: sequence %d has no tokens (start it first)", e->name,
                              seq);
    return mope_dist_set_full(out, s->logits, e->n_vocab, err);
}

static void lx_destroy(mope_expert *e) {
    local_expert *x = (local_expert *)e;
    /* Group members belong to their group (mope_expert_group_free). */
    if (x->owns_group) mope_expert_group_free(x->g);
}

static const mope_expert_ops local_ops = {
    .start = lx_start,
    .feed = lx_feed,
    .next = lx_next,
    .reset = lx_reset,
    .prompt_tokens = lx_prompt_tokens,
    .destroy = lx_destroy,
};

/* ---- the group ---- */

static void member_free(local_expert *x, int n_seq) {
    if (!x) return;
    if (x->seqs)
        for (int s = 0; s < n_seq; s++) {
            free(x->seqs[s].pend);
            free(x->seqs[s].logits);
        }
    free(x->seqs);
    free(x->preference);
    free(x->system);
    free(x);
}

void mope_expert_group_free(mope_expert_group *g) {
    if (!g) return;
    if (g->members)
        for (int i = 0; i < g->K; i++) member_free(g->members[i], g->n_seq);
    free(g->members);
    free(g->rows);
    free(g->scratch);
    mope_kv_free(g->kv);
    mope_tokenizer_free(g->tok_owned);
    if (g->owns_model) mope_model_free(g->m);
    free(g);
}

mope_expert_group *mope_expert_group_new(mope_model *m, const mope_expert_config *cfgs, int K, mope_error *err) {
    if (!m || !cfgs || K <= 0) {
        mope_error_set(err, MOPE_EINVAL, "expert group: need a model and K >= 1 configs (K %d)", K);
        return NULL;
    }
    const mope_hparams *hp = mope_model_hparams(m);
    int n_seq = cfgs[0].n_seq, n_ctx = cfgs[0].n_ctx > 0 ? cfgs[0].n_ctx : hp->n_ctx_train;
    for (int i = 0; i < K; i++) {
        const mope_expert_config *c = &cfgs[i];
        const char *nm = c->name ? c->name : "expert";
        if (c->n_seq != n_seq || (c->n_ctx > 0 ? c->n_ctx : hp->n_ctx_train) != n_ctx) {
            mope_error_set(err, MOPE_EINVAL, "expert group: %s has n_seq %d / n_ctx %d, expert 0 has %d / %d", nm,
                           c->n_seq, c->n_ctx, cfgs[0].n_seq, cfgs[0].n_ctx);
            return NULL;
        }
        if (c->n_seq <= 0 || (int64_t)c->n_seq * K > 1 << 20) {
            mope_error_set(err, MOPE_EINVAL, "expert group: %s: n_seq %d out of range", nm, c->n_seq);
            return NULL;
        }
        if (c->adapter < -1) {
            mope_error_set(err, MOPE_EINVAL, "expert group: %s: adapter %d (use -1 for none)", nm, c->adapter);
            return NULL;
        }
        if (!mope_chat_name(c->chat)) {
            mope_error_set(err, MOPE_EINVAL, "expert group: %s: unknown chat template %d", nm, (int)c->chat);
            return NULL;
        }
    }
    mope_expert_group *g = calloc(1, sizeof(*g));
    if (!g) {
        mope_error_set(err, MOPE_ENOMEM, "expert group: out of memory");
        return NULL;
    }
    g->m = m;
    g->K = K;
    g->n_seq = n_seq;
    g->n_ctx = n_ctx;
    g->n_vocab = hp->n_vocab;
    g->pool = cfgs[0].pool;
    g->tok = cfgs[0].tokenizer;
    if (!g->tok) {
        g->tok_owned = mope_tokenizer_from_gguf(mope_model_gguf(m), err);
        if (!g->tok_owned) {
            mope_error_prefix(err, "expert group: the model's tokenizer");
            goto fail;
        }
        g->tok = g->tok_owned;
    }
    if (mope_tokenizer_n_vocab(g->tok) > g->n_vocab) {
        mope_error_set(err, MOPE_EINVAL, "expert group: tokenizer has %d tokens, model only %d",
                       (int)mope_tokenizer_n_vocab(g->tok), (int)g->n_vocab);
        goto fail;
    }
    g->kv = mope_kv_new(m, K * n_seq, n_ctx, err);
    if (!g->kv) goto fail;
    g->members = calloc((size_t)K, sizeof(*g->members));
    if (!g->members) goto oom;
    for (int i = 0; i < K; i++) {
        const mope_expert_config *c = &cfgs[i];
        local_expert *x = calloc(1, sizeof(*x));
        if (!x) goto oom;
        g->members[i] = x;
        x->seqs = calloc((size_t)n_seq, sizeof(*x->seqs));
        x->preference = dup_or_null(c->preference);
        x->system = dup_or_null(c->system);
        if (!x->seqs || (c->preference && *c->preference && !x->preference) || (c->system && *c->system && !x->system))
            goto oom;
        x->base.ops = &local_ops;
        x->base.n_vocab = g->n_vocab;
        x->base.n_seq = n_seq;
        snprintf(x->base.name, sizeof x->base.name, "%s", c->name ? c->name : "expert");
        x->g = g;
        x->index = i;
        x->chat = c->chat;
        x->adapter = c->adapter;
    }
    return g;
oom:
    mope_error_set(err, MOPE_ENOMEM, "expert group: out of memory");
fail:
    mope_expert_group_free(g);
    return NULL;
}

int mope_expert_group_size(const mope_expert_group *g) { return g ? g->K : 0; }

mope_expert *mope_expert_group_member(mope_expert_group *g, int i) {
    return g && i >= 0 && i < g->K ? &g->members[i]->base : NULL;
}

int mope_expert_group_last_rows(const mope_expert_group *g) { return g ? g->last_rows : 0; }

int64_t mope_expert_group_n_forward(const mope_expert_group *g) { return g ? g->n_forward : 0; }

/* Runs rows[0..n) (whole sequences' queues, possibly split at chunk
 * boundaries) and copies each wanted row's logits to its sequence. */
static int run_chunk(mope_expert_group *g, const mope_row *rows, int n, mope_error *err) {
    int n_want = 0;
    for (int i = 0; i < n; i++) n_want += rows[i].want_logits;
    if (n_want > g->cap_scratch_rows) {
        float *p = realloc(g->scratch, sizeof(float) * (size_t)n_want * (size_t)g->n_vocab);
        if (!p) return mope_error_set(err, MOPE_ENOMEM, "expert group: out of memory for %d logit rows", n_want);
        g->scratch = p;
        g->cap_scratch_rows = n_want;
    }
    int rc = mope_model_forward(g->m, g->kv, rows, n, n_want ? g->scratch : NULL, g->pool, err);
    if (rc < 0) return rc;
    g->n_forward++;
    int w = 0;
    for (int i = 0; i < n; i++) {
        if (!rows[i].want_logits) continue;
        int member = rows[i].seq / g->n_seq, seq = rows[i].seq % g->n_seq;
        seq_state *s = &g->members[member]->seqs[seq];
        if (!s->logits) s->logits = malloc(sizeof(float) * (size_t)g->n_vocab);
        if (!s->logits) return mope_error_set(err, MOPE_ENOMEM, "expert group: out of memory for logits");
        memcpy(s->logits, g->scratch + (size_t)w * g->n_vocab, sizeof(float) * (size_t)g->n_vocab);
        w++;
    }
    return 0;
}

int mope_expert_group_eval(mope_expert_group *g, mope_error *err) {
    if (!g) return mope_error_set(err, MOPE_EINVAL, "expert group: NULL group");
    int64_t total = 0;
    for (int i = 0; i < g->K; i++)
        for (int s = 0; s < g->n_seq; s++) total += g->members[i]->seqs[s].n_pend;
    if (total == 0) return 0;
    if (total > INT32_MAX / 2) return mope_error_set(err, MOPE_ERANGE, "expert group: %lld queued rows", (long long)total);
    if (total > g->cap_rows) {
        mope_row *r = realloc(g->rows, sizeof(mope_row) * (size_t)total);
        if (!r) return mope_error_set(err, MOPE_ENOMEM, "expert group: out of memory for %lld rows", (long long)total);
        g->rows = r;
        g->cap_rows = (int)total;
    }
    int n = 0;
    for (int i = 0; i < g->K; i++) {
        local_expert *x = g->members[i];
        for (int s = 0; s < g->n_seq; s++) {
            seq_state *st = &x->seqs[s];
            int slot = slot_of(x, s), base = mope_kv_seq_len(g->kv, slot);
            for (int j = 0; j < st->n_pend; j++)
                g->rows[n++] = (mope_row){.seq = slot, .token = st->pend[j], .pos = base + j,
                                          .adapter = x->adapter, .want_logits = j == st->n_pend - 1};
        }
    }
    /* Chunks end at sequence boundaries where possible: a sequence's
     * prefill then goes through one matrix path, as it would alone (the
     * engine picks dot or GEMM kernels by row count, which round
     * differently). */
    int rc = 0;
    for (int off = 0; off < n && rc == 0;) {
        int end = off, cut = off;
        while (end < n && end - off < GROUP_MAX_ROWS) {
            end++;
            if (end == n || g->rows[end].seq != g->rows[end - 1].seq) cut = end;
        }
        if (cut == off) cut = end; /* one sequence longer than a chunk */
        rc = run_chunk(g, g->rows + off, cut - off, err);
        off = cut;
    }
    if (rc < 0) {
        /* Roll every touched sequence back to its length before this call
         * (its first row's position) and keep the queues, so a failed call
         * changes nothing. */
        for (int i = 0; i < n; i++)
            if (i == 0 || g->rows[i].seq != g->rows[i - 1].seq)
                mope_kv_seq_truncate(g->kv, g->rows[i].seq, g->rows[i].pos, NULL);
        return rc;
    }
    for (int i = 0; i < g->K; i++)
        for (int s = 0; s < g->n_seq; s++) {
            seq_state *st = &g->members[i]->seqs[s];
            if (st->n_pend > 0) {
                st->n_pend = 0;
                st->has_logits = true;
            }
        }
    g->last_rows = n;
    return 0;
}

/* ---- standalone local experts ---- */

mope_expert *mope_expert_local_new(mope_model *m, const mope_expert_config *c, mope_error *err) {
    mope_expert_group *g = mope_expert_group_new(m, c, 1, err);
    if (!g) return NULL;
    g->members[0]->owns_group = true;
    return &g->members[0]->base;
}

mope_expert *mope_expert_local_load(const char *path, const mope_expert_config *c, mope_error *err) {
    mope_model *m = mope_model_load(path, err);
    if (!m) return NULL;
    mope_expert_group *g = mope_expert_group_new(m, c, 1, err);
    if (!g) {
        mope_model_free(m);
        return NULL;
    }
    g->owns_model = true;
    g->members[0]->owns_group = true;
    return &g->members[0]->base;
}
