/* Generation through a runner: every method becomes a set of sources
 * (experts), their instructions, and a weighting (the PCM, or fixed
 * weights and a rule), and is sampled by the one mixture loop of
 * src/rl/rollout.c (mope_rollout_generate_ex). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/method_internal.h"
#include "mope/rebel.h"

/* What one generate call mixes. */
typedef struct plan {
    int K;
    mope_expert *src[MOPE_MIX_MAX_K];    /* what the loop drives (top-k views when asked) */
    mope_expert *inner[MOPE_MIX_MAX_K];  /* the experts behind them */
    int ctx[MOPE_MIX_MAX_K];             /* their positions per sequence */
    const char *names[MOPE_MIX_MAX_K];
    float w[MOPE_MIX_MAX_K];
    mope_mix_rule rule;
    bool use_pcm;
    bool with_pref;                      /* instruction = prompt + the preference text */
    mope_expert *views[MOPE_MIX_MAX_K];  /* top-k wrappers, owned */
} plan;

static void plan_free(plan *p) {
    for (int k = 0; k < p->K; k++) mope_expert_free(p->views[k]);
    memset(p, 0, sizeof *p);
}

/* (The caller's error prefix names the method.) */
static int need_choices(const mope_pref *pf, mope_error *err) {
    if (pf->free_text)
        return mope_error_set(err, MOPE_EINVAL, "needs preference choice ids (e.g. P1A,P2B,P3A), not free text");
    if (pf->n_choices == 0)
        return mope_error_set(err, MOPE_EINVAL, "needs a preference: choice ids such as P1A,P2B,P3A");
    return 0;
}

/* The expert serving choice c (the first when several do). */
static int expert_of_choice(const mope_bundle *b, int c, mope_error *err) {
    for (int i = 0; i < b->n_experts; i++)
        if (b->experts[i].choice_index == c) return i;
    return mope_error_set(err, MOPE_EINVAL, "no expert of the bundle serves choice %s", b->choices[c].id);
}

static void add_src(plan *p, mope_expert *e, int ctx, const char *name) {
    p->inner[p->K] = p->src[p->K] = e;
    p->ctx[p->K] = ctx;
    p->names[p->K] = name;
    p->w[p->K] = 1.0f;
    p->K++;
}

static int base_ctx(const mope_runner *r) {
    int ctx = mope_model_hparams(r->base)->n_ctx_train;
    return r->n_ctx > 0 && r->n_ctx < ctx ? r->n_ctx : ctx;
}

void method_soup_clear(mope_runner *r, method_soup *s) {
    mope_expert_free(s->ex);
    if (s->lora) {
        mope_model_remove_adapter(r->base, s->id, NULL);
        mope_lora_free(s->lora);
    }
    memset(s, 0, sizeof *s);
}

static int plan_soup(mope_runner *r, const mope_method *m, const mope_pref *pf, plan *p, mope_error *err) {
    const mope_bundle *b = r->b;
    int rc = need_choices(pf, err);
    if (rc) return rc;
    if (!r->base) return mope_error_set(err, MOPE_EINVAL, "needs the bundle's base model");
    const mope_lora *ad[MOPE_MIX_MAX_K];
    char key[128];
    size_t kl = (size_t)snprintf(key, sizeof key, "%d", (int)m->soup_mode);
    for (int j = 0; j < pf->n_choices; j++) {
        int i = expert_of_choice(b, pf->choices[j], err);
        if (i < 0) return i;
        if (!r->loras[i])
            return mope_error_set(err, MOPE_EINVAL, "averages LoRA adapters; expert %s is a full model",
                                  b->experts[i].id);
        ad[j] = r->loras[i];
        if (kl < sizeof key) kl += (size_t)snprintf(key + kl, sizeof key - kl, ",%d", i);
    }
    int ctx = base_ctx(r);
    method_soup *s = NULL;
    for (int j = 0; j < METHOD_SOUP_CACHE && !s; j++)
        if (kl < sizeof key && !strcmp(r->soups[j].key, key)) s = &r->soups[j];
    if (!s) {
        s = &r->soups[r->soup_next];
        r->soup_next = (r->soup_next + 1) % METHOD_SOUP_CACHE;
        method_soup_clear(r, s);
        if (!(s->lora = mope_lora_average(ad, NULL, pf->n_choices, m->soup_mode, err)))
            return mope_error_prefix(err, "averaging the adapters");
        if ((s->id = mope_model_add_adapter(r->base, s->lora, 1.0f, err)) < 0) {
            rc = s->id;
            mope_lora_free(s->lora);
            memset(s, 0, sizeof *s);
            return rc;
        }
        if (!(s->ex = method_local_expert(r, r->base, "soup", NULL, s->id, ctx, err))) {
            rc = err ? err->code : MOPE_EINVAL;
            method_soup_clear(r, s);
            return rc;
        }
        /* a key cut by the buffer is never matched again */
        if (kl < sizeof key) memcpy(s->key, key, kl + 1);
    }
    add_src(p, s->ex, ctx, "soup");
    p->with_pref = true;
    return 0;
}

static int plan_build(mope_runner *r, const mope_method *m, const mope_pref *pf, plan *p, mope_error *err) {
    const mope_bundle *b = r->b;
    memset(p, 0, sizeof *p);
    p->rule = MOPE_MIX_LINEAR;
    int rc = 0;
    switch (m->kind) {
    case MOPE_METHOD_MOPE: {
        if (!r->pcm) return mope_error_set(err, MOPE_EINVAL, "bundle has no PCM (train one with mope train pcm)");
        const mope_pcm_meta *meta = mope_pcm_infer_meta(r->pcm);
        for (int k = 0; k < meta->K; k++) {
            int i = r->pcm_map[k];
            add_src(p, r->ex[i], r->ctx[i], b->experts[i].id);
        }
        p->use_pcm = true;
        p->rule = meta->rule;
        break;
    }
    case MOPE_METHOD_PROMPT:
    case MOPE_METHOD_BASE:
        if (!r->base_ex) return mope_error_set(err, MOPE_EINVAL, "bundle has no base model");
        add_src(p, r->base_ex, base_ctx(r), "base");
        p->with_pref = m->kind == MOPE_METHOD_PROMPT;
        break;
    case MOPE_METHOD_MULTITASK:
        if ((rc = method_load_multitask(r, err))) return rc;
        add_src(p, r->mt_ex, r->mt_ctx, "multitask");
        p->with_pref = true;
        break;
    case MOPE_METHOD_SOUP:
        return plan_soup(r, m, pf, p, err);
    case MOPE_METHOD_UNIFORM:
    case MOPE_METHOD_UNIFORM_GEO:
        if ((rc = need_choices(pf, err))) return rc;
        for (int j = 0; j < pf->n_choices; j++) {
            int i = expert_of_choice(b, pf->choices[j], err);
            if (i < 0) return i;
            add_src(p, r->ex[i], r->ctx[i], b->experts[i].id);
        }
        p->rule = m->kind == MOPE_METHOD_UNIFORM ? MOPE_MIX_LINEAR : MOPE_MIX_GEOMETRIC;
        break;
    case MOPE_METHOD_EXPERT: {
        int i = mope_bundle_find_expert(b, m->expert);
        if (i < 0) {
            char known[512] = "";
            size_t len = 0;
            for (int j = 0; j < b->n_experts && len < sizeof known; j++)
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", j ? " " : "", b->experts[j].id);
            return mope_error_set(err, MOPE_EINVAL, "unknown expert \"%s\" (experts: %s)", m->expert, known);
        }
        add_src(p, r->ex[i], r->ctx[i], b->experts[i].id);
        break;
    }
    default:
        return mope_error_set(err, MOPE_EINVAL, "unknown method kind %d", (int)m->kind);
    }
    return 0;
}

static int plan_topk(mope_runner *r, plan *p, int topk, mope_error *err) {
    if (topk <= 0) return 0;
    if (topk > r->n_vocab)
        return mope_error_set(err, MOPE_EINVAL, "top-k %d is larger than the vocabulary (%d tokens)", topk,
                              (int)r->n_vocab);
    for (int k = 0; k < p->K; k++) {
        if (!(p->views[k] = mope_expert_blackbox_new(p->inner[k], topk, err))) return err ? err->code : MOPE_EINVAL;
        p->src[k] = p->views[k];
    }
    return 0;
}

/* ---- per-row state for the token hook ---- */
typedef struct row_state {
    mope_detok *dt;
    mope_stop_filter *sf;
    char *text;
    size_t len, cap;
    double *wsum;
    int n_w;
    bool stopped;
} row_state;

typedef struct gen_ctx {
    mope_runner *r;
    plan *p;
    row_state *rows;
    int row0;  /* global index of local row 0 */
    mope_method_token_fn cb;
    void *user;
} gen_ctx;

static int append(row_state *s, const char *b, size_t n, mope_error *err) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 128;
        while (cap < s->len + n + 1) cap *= 2;
        char *t = realloc(s->text, cap);
        if (!t) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        s->text = t;
        s->cap = cap;
    }
    if (n) memcpy(s->text + s->len, b, n);
    s->len += n;
    s->text[s->len] = 0;
    return 0;
}

static int emit(gen_ctx *g, int i, int t, int32_t y, const char *b, size_t n, bool eog, const float *w, int K,
                mope_error *err) {
    if (!g->cb) return 0;
    /* the same U+FFFD replacement as the final text gets, so the pieces
     * join up to it (the detokeniser never splits a well-formed character) */
    char *clean = NULL;
    if (n && !mope_utf8_valid(b, n)) {
        if (!(clean = mope_utf8_sanitize(b, n, &n))) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        b = clean;
    }
    mope_method_token tk = {.row = g->row0 + i, .index = t, .id = y, .text = b ? b : "", .len = n, .eog = eog,
                            .K = K, .weights = w, .names = g->p->names};
    int rc = g->cb(g->user, &tk);
    free(clean);
    if (rc < 0) return mope_error_set(err, rc, "generation stopped by the token callback (code %d)", rc);
    return 0;
}

static int on_token(void *user, int i, int t, int32_t y, const float *w, int K, mope_error *err) {
    gen_ctx *g = user;
    row_state *s = &g->rows[i];
    for (int k = 0; k < K; k++) s->wsum[k] += w[k];
    s->n_w++;
    if (mope_tokenizer_is_eog(g->r->tok, y) || y == g->r->marker_id) {
        s->stopped = true;
        int rc = emit(g, i, t, y, NULL, 0, true, w, K, err);
        return rc < 0 ? rc : 1;
    }
    size_t n = 0;
    const char *b = mope_detok_push(s->dt, y, &n, err);
    if (!b) return err && err->code ? err->code : MOPE_EINVAL;
    bool stop = false;
    if (s->sf && !(b = mope_stop_filter_feed(s->sf, b, n, &n, &stop, err)))
        return err && err->code ? err->code : MOPE_ENOMEM;
    int rc = append(s, b, n, err);
    if (!rc) rc = emit(g, i, t, y, b, n, false, w, K, err);
    if (rc < 0) return rc;
    if (stop) s->stopped = true;
    return stop ? 1 : 0;
}

/* Response tokens that fit every source's and the PCM's context for these
 * instructions (at most want). */
static int fit_tokens(mope_runner *r, plan *p, int n, const char *const *instr, const char *pref, int want,
                      mope_error *err) {
    int lim = want;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < p->K; k++) {
            int32_t *t = NULL;
            int np = mope_expert_prompt_tokens(p->inner[k], instr[i], &t, err);
            free(t);
            if (np < 0) return np;
            /* the last drawn token is never fed, hence + 1 */
            if (np >= p->ctx[k])
                return mope_error_set(err, MOPE_ERANGE, "the prompt has %d tokens for %s; its context is %d", np,
                                      p->names[k], p->ctx[k]);
            if (p->ctx[k] - np + 1 < lim) lim = p->ctx[k] - np + 1;
        }
        if (p->use_pcm) {
            int32_t *t = NULL;
            int np = mope_pcm_prompt_tokens(r->tok, instr[i], pref, &t, err);
            free(t);
            if (np < 0) return np;
            if (np >= r->pcm_ctx)
                return mope_error_set(err, MOPE_ERANGE, "the PCM prompt has %d tokens; the PCM's context is %d", np,
                                      r->pcm_ctx);
            if (r->pcm_ctx - np + 1 < lim) lim = r->pcm_ctx - np + 1;
        }
    }
    return lim;
}

/* One batch of n <= max_batch rows. */
static int run_batch(mope_runner *r, plan *p, const mope_pref *pf, int row0, int n, const char *const *prompts,
                     const mope_gen_opts *go, mope_method_token_fn cb, void *user, mope_method_result *out,
                     mope_error *err) {
    const mope_bundle *b = r->b;
    int rc = 0;
    char **instr = calloc((size_t)n, sizeof *instr);
    const char **prefs = calloc((size_t)n, sizeof *prefs);
    mope_sampler **smp = calloc((size_t)n, sizeof *smp);
    row_state *rs = calloc((size_t)n, sizeof *rs);
    mope_rollout *ro = calloc((size_t)n, sizeof *ro);
    if (!instr || !prefs || !smp || !rs || !ro) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        if (!prompts[i]) {
            rc = mope_error_set(err, MOPE_EINVAL, "prompt %d is NULL", row0 + i);
            break;
        }
        prefs[i] = pf->text;
        if (p->with_pref && pf->n_choices > 0) {
            const char *ids[MOPE_MIX_MAX_K];
            for (int j = 0; j < pf->n_choices && j < MOPE_MIX_MAX_K; j++) ids[j] = b->choices[pf->choices[j]].id;
            if (!(instr[i] = mope_bundle_prompt(b, prompts[i], ids, pf->n_choices, err))) rc = MOPE_EINVAL;
        } else if (p->with_pref && pf->text[0]) {
            if (asprintf(&instr[i], "%s %s", prompts[i], pf->text) < 0) instr[i] = NULL;
        } else {
            instr[i] = strdup(prompts[i]);
        }
        if (!instr[i] && !rc) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        mope_sampler_params sp = go->sampler;
        sp.seed = go->sampler.seed + (uint64_t)(row0 + i);
        if (!rc && !(smp[i] = mope_sampler_new(&sp, err))) rc = err ? err->code : MOPE_EINVAL;
        if (!rc && !(rs[i].dt = mope_detok_new(r->tok, MOPE_DECODE_STRIP_SPACE, err))) rc = MOPE_ENOMEM;
        if (!rc && r->marker && !(rs[i].sf = mope_stop_filter_new(r->marker, err))) rc = MOPE_ENOMEM;
        if (!rc && !(rs[i].wsum = calloc((size_t)p->K, sizeof(double))))
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (!rc) rc = append(&rs[i], "", 0, err);
    }
    int max_tokens = 0;
    if (!rc) {
        max_tokens = fit_tokens(r, p, n, (const char *const *)instr, pf->text, go->max_tokens, err);
        if (max_tokens < 0) rc = max_tokens;
        else if (max_tokens < 1) rc = mope_error_set(err, MOPE_ERANGE, "no room left in the context for a response");
    }
    gen_ctx g = {.r = r, .p = p, .rows = rs, .row0 = row0, .cb = cb, .user = user};
    if (!rc) {
        mope_rollout_opts o = {.pcm = p->use_pcm ? r->pcm : NULL, .weights = p->w, .rule = p->rule,
                               .samplers = smp, .n_samplers = n, .max_tokens = max_tokens, .min_weight = go->min_weight,
                               .skip_logp = !go->want_logp, .on_token = on_token,
                               .user = &g};
        rc = mope_rollout_generate_ex(p->src, p->K, r->tok, n, (const char *const *)instr, prefs, &o, ro, err);
    }
    for (int i = 0; i < n && !rc; i++) {
        row_state *s = &rs[i];
        size_t len = 0;
        const char *tail = "";
        if (!s->stopped) {
            tail = mope_detok_flush(s->dt, &len);
            bool stop = false;
            if (s->sf && len && !(tail = mope_stop_filter_feed(s->sf, tail, len, &len, &stop, err))) {
                rc = MOPE_ENOMEM;
                break;
            }
            if ((rc = append(s, tail, len, err))) break;
            if (s->sf && !stop) {
                size_t l2 = 0;
                const char *t2 = mope_stop_filter_flush(s->sf, &l2);
                if ((rc = append(s, t2, l2, err))) break;
                if (l2) {
                    /* both pieces go out in the final call */
                    tail = s->text + s->len - len - l2;
                    len += l2;
                }
            }
        }
        mope_method_result *res = &out[i];
        res->n_tokens = ro[i].n_resp;
        res->tokens = malloc(sizeof(int32_t) * (size_t)(ro[i].n_resp ? ro[i].n_resp : 1));
        res->names = calloc((size_t)p->K, sizeof *res->names);
        res->mean_weights = calloc((size_t)p->K, sizeof(float));
        if (!res->tokens || !res->names || !res->mean_weights) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            break;
        }
        res->K = p->K;
        memcpy(res->tokens, ro[i].tokens + ro[i].prompt_len, sizeof(int32_t) * (size_t)ro[i].n_resp);
        res->eog = s->stopped;
        res->truncated = !s->stopped && ro[i].n_resp >= max_tokens;
        res->logp = ro[i].logp;
        for (int k = 0; k < p->K; k++) {
            if (!(res->names[k] = strdup(p->names[k]))) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            res->mean_weights[k] = s->n_w ? (float)(s->wsum[k] / s->n_w) : 0.0f;
        }
        /* byte tokens may leave ill-formed UTF-8: the text goes to JSON and reports */
        if (!rc && !(res->text = mope_utf8_sanitize(s->text ? s->text : "", s->text ? s->len : 0, NULL)))
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (!rc) rc = emit(&g, i, res->n_tokens, -1, tail, len, false, NULL, 0, err);
    }
    /* leave no queued or cached state behind for the next call */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < p->K; k++) mope_expert_reset(p->src[k], i);
    for (int i = 0; i < n; i++) {
        if (instr) free(instr[i]);
        if (smp) mope_sampler_free(smp[i]);
        if (rs) {
            mope_detok_free(rs[i].dt);
            mope_stop_filter_free(rs[i].sf);
            free(rs[i].text);
            free(rs[i].wsum);
        }
        if (ro) mope_rollout_free(&ro[i]);
    }
    free(instr);
    free(prefs);
    free(smp);
    free(rs);
    free(ro);
    return rc;
}

int mope_runner_generate_batch(mope_runner *r, const mope_method *m, const char *pref, int n,
                               const char *const *prompts, const mope_gen_opts *g, mope_method_token_fn cb,
                               void *user, mope_method_result *out, mope_error *err) {
    if (out)
        for (int i = 0; i < n; i++) memset(&out[i], 0, sizeof out[i]);
    if (!r || !m || !prompts || !out || n < 1) return mope_error_set(err, MOPE_EINVAL, "generate: bad arguments");
    mope_gen_opts def;
    if (!g) {
        mope_gen_opts_init(&def);
        g = &def;
    }
    if (g->max_tokens < 1) return mope_error_set(err, MOPE_EINVAL, "generate: max_tokens %d < 1", g->max_tokens);
    if (g->topk < 0) return mope_error_set(err, MOPE_EINVAL, "generate: top-k %d < 0", g->topk);
    mope_pref pf;
    int rc = mope_pref_parse(r->b, pref, &pf, err);
    if (rc) return rc;
    plan p;
    rc = plan_build(r, m, &pf, &p, err);
    if (!rc) rc = plan_topk(r, &p, g->topk, err);
    for (int i0 = 0; i0 < n && !rc; i0 += r->max_batch) {
        int nb = n - i0 < r->max_batch ? n - i0 : r->max_batch;
        rc = run_batch(r, &p, &pf, i0, nb, prompts + i0, g, cb, user, out + i0, err);
    }
    plan_free(&p);
    mope_pref_free(&pf);
    if (rc) {
        char name[96];
        mope_error_prefix(err, "method %s", mope_method_name(m, name, sizeof name));
    }
    return rc;
}

int mope_runner_generate(mope_runner *r, const mope_method *m, const char *pref, const char *prompt,
                         const mope_gen_opts *g, mope_method_token_fn cb, void *user, mope_method_result *out,
                         mope_error *err) {
    return mope_runner_generate_batch(r, m, pref, 1, &prompt, g, cb, user, out, err);
}
