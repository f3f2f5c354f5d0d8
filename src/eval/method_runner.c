/* Loading a bundle's models into a runner, once, for every method (see
 * include/mope/method.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/method_internal.h"

static int ctx_of(const mope_runner *r, const mope_model *m) {
    int train = mope_model_hparams(m)->n_ctx_train;
    return r->n_ctx > 0 && r->n_ctx < train ? r->n_ctx : train;
}

mope_expert *method_local_expert(mope_runner *r, mope_model *m, const char *name, const char *preference,
                                 int adapter, int n_ctx, mope_error *err) {
    mope_expert_config c;
    mope_expert_config_init(&c);
    c.name = name;
    c.chat = r->b->template_id;
    c.preference = preference;
    c.adapter = adapter;
    c.n_seq = r->max_batch;
    c.n_ctx = n_ctx;
    c.tokenizer = r->tok;
    c.pool = r->pool;
    return mope_expert_local_new(m, &c, err);
}

static int check_vocab(const mope_runner *r, const mope_model *m, const char *what, mope_error *err) {
    int nv = mope_model_hparams(m)->n_vocab;
    if (nv != r->n_vocab)
        return mope_error_set(err, MOPE_EINVAL, "%s has %d tokens, the bundle's tokenizer %d (experts must share one)",
                              what, nv, (int)r->n_vocab);
    return 0;
}

static const char *expert_pref(const mope_bundle *b, int i) {
    const mope_bundle_expert *e = &b->experts[i];
    return e->preference_text ? e->preference_text : b->choices[e->choice_index].text;
}

static int load_experts(mope_runner *r, mope_error *err) {
    const mope_bundle *b = r->b;
    int n = b->n_experts, n_ad = 0;
    r->loras = calloc((size_t)(n ? n : 1), sizeof *r->loras);
    r->full = calloc((size_t)(n ? n : 1), sizeof *r->full);
    r->ex = calloc((size_t)(n ? n : 1), sizeof *r->ex);
    r->ctx = calloc((size_t)(n ? n : 1), sizeof *r->ctx);
    mope_expert_config *cfg = calloc((size_t)(n ? n : 1), sizeof *cfg);
    int *ids = calloc((size_t)(n ? n : 1), sizeof *ids);
    int rc = 0;
    if (!r->loras || !r->full || !r->ex || !r->ctx || !cfg || !ids)
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        const mope_bundle_expert *e = &b->experts[i];
        if (e->adapter) {
            if (!r->base) {
                rc = mope_error_set(err, MOPE_EINVAL, "expert %s is a LoRA adapter but the bundle has no base", e->id);
                break;
            }
            if (!(r->loras[i] = mope_lora_load(e->adapter, r->base, err))) {
                rc = mope_error_prefix(err, "expert %s (%s)", e->id, e->adapter);
                break;
            }
            int id = mope_model_add_adapter(r->base, r->loras[i], 1.0f, err);
            if (id < 0) {
                rc = mope_error_prefix(err, "expert %s", e->id);
                break;
            }
            mope_expert_config *c = &cfg[n_ad];
            mope_expert_config_init(c);
            c->name = e->id;
            c->chat = b->template_id;
            c->preference = expert_pref(b, i);
            c->adapter = id;
            c->n_seq = r->max_batch;
            c->n_ctx = ctx_of(r, r->base);
            c->tokenizer = r->tok;
            c->pool = r->pool;
            ids[n_ad++] = i;
            r->ctx[i] = c->n_ctx;
        } else {
            if (!(r->full[i] = mope_model_load(e->model, err))) {
                rc = mope_error_prefix(err, "expert %s (%s)", e->id, e->model);
                break;
            }
            char what[128];
            snprintf(what, sizeof what, "expert %s", e->id);
            if ((rc = check_vocab(r, r->full[i], what, err))) break;
            r->ctx[i] = ctx_of(r, r->full[i]);
            if (!(r->ex[i] = method_local_expert(r, r->full[i], e->id, expert_pref(b, i), -1, r->ctx[i], err))) {
                rc = err ? err->code : MOPE_EINVAL;
                break;
            }
        }
    }
    if (!rc && n_ad > 0) {
        /* the adapter experts share the base's weights: one forward per step for all of them */
        if (!(r->group = mope_expert_group_new(r->base, cfg, n_ad, err))) rc = err ? err->code : MOPE_EINVAL;
        for (int j = 0; j < n_ad && !rc; j++) r->ex[ids[j]] = mope_expert_group_member(r->group, j);
    }
    free(cfg);
    free(ids);
    return rc;
}

/* The trunk's context length, read from the PCM file's keys. */
static int pcm_context(const mope_gguf *g) {
    mope_gguf_str arch;
    if (mope_gguf_get_str(g, "general.architecture", &arch) != 0 || arch.len > 64) return 0;
    char key[128];
    snprintf(key, sizeof key, "%.*s.context_length", (int)arch.len, arch.ptr);
    int64_t v = 0;
    return mope_gguf_get_i64(g, key, &v) == 0 && v > 0 && v < (1 << 24) ? (int)v : 0;
}

static int load_pcm(mope_runner *r, mope_error *err) {
    const mope_bundle *b = r->b;
    mope_gguf *g = mope_gguf_open(b->pcm, err);
    if (!g) return mope_error_prefix(err, "PCM %s", b->pcm);
    r->pcm_ctx = pcm_context(g);
    if (!(r->pcm = mope_pcm_infer_from_gguf(g, true, r->max_batch, 0, r->pool, err)))
        return mope_error_prefix(err, "PCM %s", b->pcm);
    if (!r->pcm_ctx)
        return mope_error_set(err, MOPE_EFORMAT, "PCM %s: no context length key", b->pcm);
    const mope_pcm_meta *meta = mope_pcm_infer_meta(r->pcm);
    if (!(r->pcm_map = calloc((size_t)meta->K, sizeof *r->pcm_map)))
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int k = 0; k < meta->K; k++) {
        int i = mope_bundle_find_expert(b, meta->experts[k]);
        if (i < 0) {
            char known[512] = "";
            size_t len = 0;
            for (int j = 0; j < b->n_experts && len < sizeof known; j++)
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", j ? " " : "", b->experts[j].id);
            return mope_error_set(err, MOPE_EINVAL, "PCM %s weighs expert \"%s\", which the bundle lacks (experts: %s)",
                                  b->pcm, meta->experts[k], known);
        }
        r->pcm_map[k] = i;
    }
    /* the PCM reads the experts' tokens: its vocabulary must be theirs */
    const mope_tokenizer *pt = mope_pcm_infer_tokenizer(r->pcm);
    if (pt && mope_tokenizer_n_vocab(pt) != r->n_vocab)
        return mope_error_set(err, MOPE_EINVAL, "PCM %s has a tokenizer of %d tokens, the bundle's has %d", b->pcm,
                              (int)mope_tokenizer_n_vocab(pt), (int)r->n_vocab);
    return 0;
}

int method_load_multitask(mope_runner *r, mope_error *err) {
    if (r->mt_ex) return 0;
    const mope_bundle *b = r->b;
    if (!b->multitask) return mope_error_set(err, MOPE_EINVAL, "bundle has no multitask model");
    if (!r->mt && !(r->mt = mope_model_load(b->multitask, err)))
        return mope_error_prefix(err, "multitask model %s", b->multitask);
    int rc = check_vocab(r, r->mt, "the multitask model", err);
    if (rc) return rc;
    r->mt_ctx = ctx_of(r, r->mt);
    if (!(r->mt_ex = method_local_expert(r, r->mt, "multitask", NULL, -1, r->mt_ctx, err)))
        return err ? err->code : MOPE_EINVAL;
    return 0;
}

static int runner_init(mope_runner *r, const mope_runner_opts *o, mope_error *err) {
    const mope_bundle *b = r->b;
    r->max_batch = o->max_batch > 0 ? o->max_batch : 4;
    r->n_ctx = o->n_ctx;
    if (o->n_ctx < 0) return mope_error_set(err, MOPE_EINVAL, "runner: n_ctx %d < 0", o->n_ctx);
    if (o->pool) {
        r->pool = o->pool;
    } else {
        if (!(r->pool = mope_pool_create(o->n_threads > 0 ? o->n_threads : mope_cpu_count(), err)))
            return err ? err->code : MOPE_ENOMEM;
        r->owns_pool = true;
    }
    if (b->base && !(r->base = mope_model_load(b->base, err))) return mope_error_prefix(err, "base %s", b->base);
    if (b->tokenizer) {
        if (!(r->tok = mope_tokenizer_load(b->tokenizer, err)))
            return mope_error_prefix(err, "tokenizer %s", b->tokenizer);
    } else if (r->base) {
        if (!(r->tok = mope_tokenizer_from_gguf(mope_model_gguf(r->base), err)))
            return mope_error_prefix(err, "tokenizer of the base %s", b->base);
    } else {
        return mope_error_set(err, MOPE_EINVAL, "bundle names neither a tokenizer nor a base model");
    }
    r->n_vocab = mope_tokenizer_n_vocab(r->tok);
    int rc;
    if (r->base) {
        if ((rc = check_vocab(r, r->base, "the base model", err))) return rc;
        if (!(r->base_ex = method_local_expert(r, r->base, "base", NULL, -1, ctx_of(r, r->base), err)))
            return err ? err->code : MOPE_EINVAL;
    }
    if (b->n_experts > MOPE_MIX_MAX_K)
        return mope_error_set(err, MOPE_EINVAL, "bundle has %d experts, at most %d can be mixed", b->n_experts,
                              MOPE_MIX_MAX_K);
    if ((rc = load_experts(r, err))) return rc;
    if (b->pcm && (rc = load_pcm(r, err))) return rc;
    r->marker = mope_chat_end_marker(b->template_id);
    r->marker_id = r->marker ? mope_tokenizer_find(r->tok, r->marker, strlen(r->marker)) : -1;
    return 0;
}

mope_runner *mope_runner_new(const mope_bundle *b, const mope_runner_opts *o, mope_error *err) {
    if (!b) {
        mope_error_set(err, MOPE_EINVAL, "runner: no bundle");
        return NULL;
    }
    mope_runner_opts def;
    if (!o) {
        mope_runner_opts_init(&def);
        o = &def;
    }
    mope_runner *r = calloc(1, sizeof *r);
    if (!r) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    r->b = b;
    r->marker_id = -1;
    if (runner_init(r, o, err)) {
        mope_error_prefix(err, "bundle %s", b->name ? b->name : "?");
        mope_runner_free(r);
        return NULL;
    }
    return r;
}

mope_runner *mope_runner_load(const char *bundle_path, const mope_runner_opts *o, mope_error *err) {
    mope_bundle *b = mope_bundle_load(bundle_path, 0, err);
    if (!b) return NULL;
    mope_runner *r = mope_runner_new(b, o, err);
    if (!r) {
        mope_bundle_free(b);
        return NULL;
    }
    r->b_owned = b;
    return r;
}

void mope_runner_free(mope_runner *r) {
    if (!r) return;
    int n = r->b->n_experts;
    /* experts before the models and adapters they borrow */
    mope_expert_free(r->mt_ex);
    mope_model_free(r->mt);
    mope_pcm_infer_free(r->pcm);
    free(r->pcm_map);
    for (int j = 0; j < METHOD_SOUP_CACHE; j++) method_soup_clear(r, &r->soups[j]);
    mope_expert_group_free(r->group);
    for (int i = 0; r->ex && i < n; i++)
        if (r->full && r->full[i]) mope_expert_free(r->ex[i]);
    for (int i = 0; r->full && i < n; i++) mope_model_free(r->full[i]);
    mope_expert_free(r->base_ex);
    mope_model_free(r->base);
    for (int i = 0; r->loras && i < n; i++) mope_lora_free(r->loras[i]);
    free(r->loras);
    free(r->full);
    free(r->ex);
    free(r->ctx);
    mope_tokenizer_free(r->tok);
    if (r->owns_pool) mope_pool_free(r->pool);
    mope_bundle_free(r->b_owned);
    free(r);
}

const mope_bundle *mope_runner_bundle(const mope_runner *r) { return r ? r->b : NULL; }
bool mope_runner_has_pcm(const mope_runner *r) { return r && r->pcm; }
int32_t mope_runner_n_vocab(const mope_runner *r) { return r ? r->n_vocab : 0; }
const mope_tokenizer *mope_runner_tokenizer(const mope_runner *r) { return r ? r->tok : NULL; }
