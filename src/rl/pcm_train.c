/* PCM trainer, setup half: options, preference combinations, prompts and
 * references (with greedy generation of missing ones), the bundle's experts
 * and reward models, and the reference scores. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mope/io.h"
#include "rl/pcm_train_internal.h"

void mope_pcm_train_opts_init(mope_pcm_train_opts *o) {
    memset(o, 0, sizeof *o);
    mope_train_config_init(&o->trunk);
    o->trunk.n_embd = 128;
    o->trunk.n_layer = 2;
    o->trunk.n_head = 4;
    o->trunk.n_head_kv = 2;
    o->trunk.n_ff = 344;
    o->trunk.n_ctx = 512;
    o->rule = MOPE_MIX_LINEAR;
    o->iterations = 20;
    o->batch = 8;
    o->epochs = 4;
    o->micro_batch = 8;
    o->eta = 1.0;
    mope_adamw_config_init(&o->adamw);
    o->adamw.lr = 1e-4f;
    o->adamw.min_lr = 1e-5f;
    o->adamw.weight_decay = 0.0f;
    o->warm_best_prompts = 32;
    o->explore_head = 12;
    o->explore_tail = 16;
    o->max_tokens = 48;
    o->temperature = 1.0f;
    o->seed = 42;
}

/* ---- preferences ---- */

static int combo_equal(const int *a, const int *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

int mope_pcm_train_parse_prefs(const mope_bundle *b, const char *spec, int **out, int *n_prefs, mope_error *err) {
    if (!b || !out || !n_prefs) return mope_error_set(err, MOPE_EINVAL, "prefs: bad arguments");
    *out = NULL;
    *n_prefs = 0;
    const int D = b->n_dimensions;
    if (D < 1) return mope_error_set(err, MOPE_EINVAL, "prefs: the bundle declares no preference dimensions");
    if (!spec || !spec[0]) {
        long n = 1;
        for (int d = 0; d < D; d++) {
            n *= b->dimensions[d].n_choices;
            if (n > 4096) return mope_error_set(err, MOPE_ERANGE, "prefs: more than 4096 combinations");
        }
        int *c = malloc(sizeof(int) * (size_t)(n * D));
        if (!c) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        for (long i = 0; i < n; i++) {
            long r = i;
            for (int d = D - 1; d >= 0; d--) {
                int nc = b->dimensions[d].n_choices;
                c[i * D + d] = b->dimensions[d].first_choice + (int)(r % nc);
                r /= nc;
            }
        }
        *out = c;
        *n_prefs = (int)n;
        return 0;
    }
    size_t len = strlen(spec);
    int cap = 1;
    for (size_t i = 0; i < len; i++) cap += spec[i] == ';';
    int *c = malloc(sizeof(int) * (size_t)cap * D);
    char *buf = malloc(len + 1);
    if (!c || !buf) {
        free(c);
        free(buf);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    int n = 0, rc = 0;
    const char *p = spec;
    while (!rc) {
        const char *end = strchr(p, ';');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        memcpy(buf, p, l);
        buf[l] = 0;
        int *cur = c + (size_t)n * D, used = 0;
        for (int d = 0; d < D; d++) cur[d] = -1;
        char *save = NULL;
        for (char *t = strtok_r(buf, ", \t", &save); t && !rc; t = strtok_r(NULL, ", \t", &save)) {
            int ch = mope_bundle_choice_index(b, t);
            if (ch < 0) {
                char known[256] = "";
                size_t k = 0;
                for (int i = 0; i < b->n_choices && k + 1 < sizeof known; i++)
                    k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? " " : "", b->choices[i].id);
                rc = mope_error_set(err, MOPE_EINVAL, "prefs: unknown choice \"%s\" in combination %d (known: %s)", t,
                                    n + 1, known);
                break;
            }
            int d = b->choices[ch].dimension;
            if (cur[d] >= 0) {
                rc = mope_error_set(err, MOPE_EINVAL, "prefs: combination %d has two choices of dimension %s (%s, %s)",
                                    n + 1, b->dimensions[d].id, b->choices[cur[d]].id, t);
                break;
            }
            cur[d] = ch;
            used++;
        }
        if (!rc && used == 0) rc = mope_error_set(err, MOPE_EINVAL, "prefs: combination %d is empty", n + 1);
        for (int j = 0; !rc && j < n; j++)
            if (combo_equal(c + (size_t)j * D, cur, D))
                rc = mope_error_set(err, MOPE_EINVAL, "prefs: combination %d repeats combination %d", n + 1, j + 1);
        if (rc) break;
        n++;
        if (!end) break;
        p = end + 1;
    }
    free(buf);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    *n_prefs = n;
    return 0;
}

char *pt_join_combo(const mope_bundle *b, const int *combo, const char *sep, pt_pick_fn pick, void *user,
                    mope_error *err) {
    /* each pick once (it may draw from an rng), then one allocation */
    const char **part = malloc(sizeof(char *) * (size_t)(b->n_dimensions > 0 ? b->n_dimensions : 1));
    size_t len = 1;
    int np = 0;
    for (int d = 0; part && d < b->n_dimensions; d++)
        if (combo[d] >= 0) {
            part[np] = pick(b, combo[d], user);
            len += strlen(part[np++]) + strlen(sep);
        }
    char *s = part ? malloc(len) : NULL;
    if (!s) {
        free(part);
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    size_t k = 0;
    s[0] = 0;
    for (int i = 0; i < np; i++) k += (size_t)snprintf(s + k, len - k, "%s%s", i ? sep : "", part[i]);
    free(part);
    return s;
}

static const char *pick_id(const mope_bundle *b, int ch, void *user) {
    (void)user;
    return b->choices[ch].id;
}

static const char *pick_text(const mope_bundle *b, int ch, void *user) {
    (void)user;
    return b->choices[ch].text;
}

char *mope_pcm_train_pref_name(const mope_bundle *b, const int *combo, mope_error *err) {
    return pt_join_combo(b, combo, "+", pick_id, NULL, err);
}

char *mope_pcm_train_pref_text(const mope_bundle *b, const int *combo, mope_error *err) {
    return pt_join_combo(b, combo, " ", pick_text, NULL, err);
}

/* ---- JSONL records ---- */

typedef struct rec {
    char *id, *prompt, *response, *split;
} rec;

static void recs_free(rec *r, int n) {
    for (int i = 0; r && i < n; i++) {
        free(r[i].id);
        free(r[i].prompt);
        free(r[i].response);
        free(r[i].split);
    }
    free(r);
}

static char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? strdup(v->valuestring) : NULL;
}

/* Reads {"id","prompt"[,"response","split"]} lines; need_response makes a
 * missing response an error. */
static int read_recs(const char *path, bool need_response, rec **out, int *n_out, mope_error *err) {
    void *data = NULL;
    size_t len = 0;
    *out = NULL;
    *n_out = 0;
    int rc = mope_io_read_file(path, &data, &len, err);
    if (rc) return rc;
    int cap = 0, n = 0;
    rec *r = NULL;
    char *text = data;
    int line = 0;
    for (char *p = text; !rc && p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        line++;
        char *q = p;
        p = nl ? nl + 1 : text + len;
        size_t k = 0;
        while (k < l && (q[k] == ' ' || q[k] == '\t' || q[k] == '\r')) k++;
        if (k == l) continue;
        cJSON *o = cJSON_ParseWithLength(q, l);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            rc = mope_error_set(err, MOPE_EFORMAT, "%s:%d: not a JSON object", path, line);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            rec *g = realloc(r, sizeof *r * (size_t)cap);
            if (!g) {
                cJSON_Delete(o);
                rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                break;
            }
            r = g;
        }
        rec *e = &r[n++];
        memset(e, 0, sizeof *e);
        e->id = json_str(o, "id");
        e->prompt = json_str(o, "prompt");
        e->response = json_str(o, "response");
        e->split = json_str(o, "split");
        cJSON_Delete(o);
        if (!e->prompt || !e->prompt[0])
            rc = mope_error_set(err, MOPE_EFORMAT, "%s:%d: \"prompt\" must be a non-empty string", path, line);
        else if (need_response && !e->response)
            rc = mope_error_set(err, MOPE_EFORMAT, "%s:%d: \"response\" must be a string", path, line);
    }
    free(data);
    if (rc) {
        recs_free(r, n);
        return rc;
    }
    *out = r;
    *n_out = n;
    return 0;
}

static const rec *find_ref(const rec *refs, int n, const char *id, const char *prompt) {
    if (id)
        for (int i = 0; i < n; i++)
            if (refs[i].id && strcmp(refs[i].id, id) == 0) return &refs[i];
    for (int i = 0; i < n; i++)
        if (strcmp(refs[i].prompt, prompt) == 0) return &refs[i];
    return NULL;
}

/* ---- greedy references from the base model ----
 * Decoded as the PrefBench recipe decodes its references: greedy with a
 * no-repeat 3-gram ban over the answer's own tokens (as rollout.c and
 * recipe_gen.c do: with the prompt in the history the ban stops an answer
 * from repeating a multi-token name from the question), stopping at end of
 * generation or at a turn marker. */

static int greedy_refs(pt_ctx *c, char **prompts, int n, char **out, mope_error *err) {
    const int S = n < 16 ? n : 16, T = c->o->max_tokens;
    mope_expert_config cfg;
    mope_expert_config_init(&cfg);
    cfg.name = "base";
    cfg.chat = c->b->template_id;
    cfg.n_seq = S;
    cfg.tokenizer = c->tok;
    cfg.pool = c->pool;
    mope_expert *e = mope_expert_local_new(c->base, &cfg, err);
    if (!e) return err ? err->code : MOPE_ENOMEM;
    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 0;
    sp.no_repeat_ngram = 3;
    mope_sampler *smp = mope_sampler_new(&sp, err);
    int32_t **hist = calloc((size_t)S, sizeof *hist); /* the answers so far */
    int *len = calloc((size_t)S, sizeof(int));
    bool *done = calloc((size_t)S, sizeof(bool));
    int32_t stop_user = mope_tokenizer_find(c->tok, "<|user|>", 8);
    int32_t stop_asst = mope_tokenizer_find(c->tok, "<|assistant|>", 13);
    mope_dist d = {0};
    int rc = smp && hist && len && done ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i0 = 0; !rc && i0 < n; i0 += S) {
        int nb = n - i0 < S ? n - i0 : S;
        for (int s = 0; !rc && s < nb; s++) {
            len[s] = 0;
            done[s] = false;
            if (!hist[s] && !(hist[s] = malloc(sizeof(int32_t) * (size_t)T))) {
                rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                break;
            }
            rc = mope_expert_start(e, s, prompts[i0 + s], err);
        }
        for (int t = 0; !rc && t < T; t++) {
            int active = 0;
            for (int s = 0; !rc && s < nb; s++) {
                if (done[s]) continue;
                if ((rc = mope_expert_next(e, s, &d, err))) break;
                int32_t y = mope_sampler_sample(smp, d.logits, d.n_vocab, hist[s], len[s], err);
                if (y < 0) {
                    rc = y;
                    break;
                }
                if (mope_tokenizer_is_eog(c->tok, y) || y == stop_user || y == stop_asst) {
                    done[s] = true;
                    continue;
                }
                hist[s][len[s]++] = y;
                if (len[s] == T) done[s] = true;
                else rc = mope_expert_feed(e, s, &y, 1, err);
                active++;
            }
            if (!active) break;
        }
        for (int s = 0; !rc && s < nb; s++) {
            out[i0 + s] = mope_tokenizer_decode_alloc(c->tok, hist[s], len[s], MOPE_DECODE_STRIP_SPACE, NULL, err);
            if (!out[i0 + s]) rc = err ? err->code : MOPE_ENOMEM;
        }
    }
    mope_dist_free(&d);
    for (int s = 0; hist && s < S; s++) free(hist[s]);
    free(hist);
    free(len);
    free(done);
    mope_sampler_free(smp);
    mope_expert_free(e);
    return rc ? mope_error_prefix(err, "generating references") : 0;
}

static int append_cache(const char *path, const rec *old, int n_old, char **ids, char **prompts, char **resp, int n,
                        mope_error *err) {
    mope_io_atomic *f = mope_io_atomic_open(path, err);
    if (!f) return err ? err->code : MOPE_EIO;
    int rc = 0;
    for (int i = 0; !rc && i < n_old + n; i++) {
        cJSON *o = cJSON_CreateObject();
        const char *id = i < n_old ? old[i].id : ids[i - n_old];
        if (id) cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "prompt", i < n_old ? old[i].prompt : prompts[i - n_old]);
        cJSON_AddStringToObject(o, "method", "base-greedy");
        cJSON_AddStringToObject(o, "response", i < n_old ? old[i].response : resp[i - n_old]);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (!rc) rc = mope_io_atomic_write(f, s, strlen(s), err);
        if (!rc) rc = mope_io_atomic_write(f, "\n", 1, err);
        free(s);
    }
    if (rc) {
        mope_io_atomic_abort(f);
        return rc;
    }
    return mope_io_atomic_commit(f, err);
}

/* Prompts (and their references) into c. */
static int load_prompts(pt_ctx *c, mope_error *err) {
    const mope_pcm_train_opts *o = c->o;
    rec *refs = NULL, *pr = NULL, *cache = NULL;
    int n_refs = 0, n_pr = 0, n_cache = 0, rc = 0;
    if (c->b->references && (rc = read_recs(c->b->references, true, &refs, &n_refs, err)))
        return mope_error_prefix(err, "references");
    if (o->prompts) {
        rc = read_recs(o->prompts, false, &pr, &n_pr, err);
    } else if (!refs) {
        rc = mope_error_set(err, MOPE_EINVAL,
                            "the bundle names no references (hence no training prompts): give a prompts file");
    } else {
        bool any_split = false;
        for (int i = 0; i < n_refs; i++) any_split |= refs[i].split != NULL;
        pr = calloc((size_t)(n_refs > 0 ? n_refs : 1), sizeof *pr);
        if (!pr) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        for (int i = 0; !rc && i < n_refs; i++)
            if (!any_split || (refs[i].split && strcmp(refs[i].split, "train") == 0)) {
                pr[n_pr].id = refs[i].id ? strdup(refs[i].id) : NULL;
                pr[n_pr++].prompt = strdup(refs[i].prompt);
            }
    }
    if (!rc && n_pr == 0) rc = mope_error_set(err, MOPE_EINVAL, "no training prompts (%s)", o->prompts ? o->prompts : "the references' train split");
    char cache_path[4200];
    snprintf(cache_path, sizeof cache_path, "%s", o->ref_cache ? o->ref_cache : "");
    if (!o->ref_cache) snprintf(cache_path, sizeof cache_path, "%s.refs.jsonl", o->out);
    if (!rc && !o->skip_missing_refs) {
        FILE *f = fopen(cache_path, "rb");
        if (f) {
            fclose(f);
            if ((rc = read_recs(cache_path, true, &cache, &n_cache, err))) mope_error_prefix(err, "reference cache");
        }
    }
    /* match; gather the missing */
    c->prompt_id = calloc((size_t)(n_pr + 1), sizeof(char *));
    c->prompt_text = calloc((size_t)(n_pr + 1), sizeof(char *));
    c->ref = calloc((size_t)(n_pr + 1), sizeof(char *));
    char **miss_id = calloc((size_t)(n_pr + 1), sizeof(char *)), **miss_p = calloc((size_t)(n_pr + 1), sizeof(char *));
    char **miss_r = calloc((size_t)(n_pr + 1), sizeof(char *));
    int *miss_at = calloc((size_t)(n_pr + 1), sizeof(int)), n_miss = 0;
    if (!rc && (!c->prompt_id || !c->prompt_text || !c->ref || !miss_id || !miss_p || !miss_r || !miss_at))
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n_pr; i++) {
        const rec *r = find_ref(refs, n_refs, pr[i].id, pr[i].prompt);
        bool cached = false;
        if (!r && cache) {
            r = find_ref(cache, n_cache, pr[i].id, pr[i].prompt);
            cached = r != NULL;
        }
        if (!r && o->skip_missing_refs) {
            c->res->n_skipped++;
            continue;
        }
        int k = c->n_prompts++;
        c->prompt_id[k] = pr[i].id ? strdup(pr[i].id) : NULL;
        c->prompt_text[k] = strdup(pr[i].prompt);
        if (r) {
            c->ref[k] = strdup(r->response);
            c->res->n_refs_cached += cached;
        } else {
            miss_id[n_miss] = pr[i].id;
            miss_p[n_miss] = pr[i].prompt;
            miss_at[n_miss++] = k;
        }
        if (!c->prompt_text[k] || (r && !c->ref[k])) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    if (!rc && n_miss > 0) {
        rc = greedy_refs(c, miss_p, n_miss, miss_r, err);
        if (!rc) rc = append_cache(cache_path, cache, n_cache, miss_id, miss_p, miss_r, n_miss, err);
        for (int j = 0; !rc && j < n_miss; j++) {
            c->ref[miss_at[j]] = miss_r[j];
            miss_r[j] = NULL;
        }
        if (!rc) c->res->n_refs_generated = n_miss;
    }
    for (int j = 0; miss_r && j < n_miss; j++) free(miss_r[j]);
    if (!rc && c->n_prompts == 0)
        rc = mope_error_set(err, MOPE_EINVAL, "no training prompt has a reference response (%d skipped)",
                            c->res->n_skipped);
    free(miss_id);
    free(miss_p);
    free(miss_r);
    free(miss_at);
    recs_free(refs, n_refs);
    recs_free(pr, n_pr);
    recs_free(cache, n_cache);
    return rc;
}

/* ---- experts and reward models ---- */

static int load_experts(pt_ctx *c, mope_error *err) {
    const mope_bundle *b = c->b;
    c->K = b->n_experts;
    if (c->K < 1 || c->K > MOPE_PCM_MAX_K)
        return mope_error_set(err, MOPE_EINVAL, "the bundle has %d experts; 1..%d supported", c->K, MOPE_PCM_MAX_K);
    c->lora = calloc((size_t)c->K, sizeof *c->lora);
    c->ex = calloc((size_t)c->K, sizeof *c->ex);
    c->ex_owned = calloc((size_t)c->K, sizeof *c->ex_owned);
    mope_expert_config *cfg = calloc((size_t)c->K, sizeof *cfg);
    int *member = calloc((size_t)c->K, sizeof(int)), n_group = 0, rc = 0;
    if (!c->lora || !c->ex || !c->ex_owned || !cfg || !member) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int k = 0; !rc && k < c->K; k++) {
        const mope_bundle_expert *x = &b->experts[k];
        mope_expert_config *e = &cfg[k];
        mope_expert_config_init(e);
        e->name = x->id;
        e->chat = b->template_id;
        e->preference = x->preference_text ? x->preference_text : b->choices[x->choice_index].text;
        e->n_seq = c->n_seq;
        e->tokenizer = c->tok;
        e->pool = c->pool;
        if (x->adapter) {
            if (!(c->lora[k] = mope_lora_load(x->adapter, c->base, err))) {
                rc = err ? err->code : MOPE_EIO;
            } else {
                int id = mope_model_add_adapter(c->base, c->lora[k], 1.0f, err);
                if (id < 0) rc = id;
                e->adapter = id;
            }
            if (!rc) member[n_group++] = k;
        } else {
            if (!(c->ex[k] = mope_expert_local_load(x->model, e, err))) rc = err ? err->code : MOPE_EIO;
            c->ex_owned[k] = true;
        }
        if (rc) mope_error_prefix(err, "expert %s", x->id);
    }
    if (!rc && n_group > 0) {
        mope_expert_config *gc = calloc((size_t)n_group, sizeof *gc);
        if (!gc) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        for (int i = 0; !rc && i < n_group; i++) gc[i] = cfg[member[i]];
        if (!rc && !(c->group = mope_expert_group_new(c->base, gc, n_group, err))) rc = err ? err->code : MOPE_ENOMEM;
        for (int i = 0; !rc && i < n_group; i++) c->ex[member[i]] = mope_expert_group_member(c->group, i);
        free(gc);
    }
    for (int k = 0; !rc && k < c->K; k++)
        if (c->ex[k]->n_vocab != mope_tokenizer_n_vocab(c->tok))
            rc = mope_error_set(err, MOPE_EINVAL, "expert %s has %d tokens, the bundle's tokenizer %d",
                                b->experts[k].id, (int)c->ex[k]->n_vocab, (int)mope_tokenizer_n_vocab(c->tok));
    free(cfg);
    free(member);
    return rc;
}

static int load_rewards(pt_ctx *c, mope_error *err) {
    const mope_bundle *b = c->b;
    c->rm = calloc((size_t)b->n_choices, sizeof *c->rm);
    c->rm_ctx = calloc((size_t)b->n_choices, sizeof(int));
    c->Rref = malloc(sizeof(float) * (size_t)c->n_prompts * b->n_choices);
    if (!c->rm || !c->rm_ctx || !c->Rref) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (size_t i = 0; i < (size_t)c->n_prompts * b->n_choices; i++) c->Rref[i] = NAN;
    int rc = 0;
    for (int ch = 0; !rc && ch < b->n_choices; ch++) {
        bool used = false;
        for (int p = 0; p < c->n_prefs; p++) used |= c->combo[(size_t)p * c->n_dim + b->choices[ch].dimension] == ch;
        if (!used) continue;
        int r = mope_bundle_find_reward(b, b->choices[ch].id);
        if (r < 0) {
            rc = mope_error_set(err, MOPE_EINVAL, "the bundle has no reward model for choice %s, which a trained "
                                "preference uses", b->choices[ch].id);
            break;
        }
        if (!(c->rm[ch] = mope_reward_load(b->rewards[r].path, 16, 0, c->pool, err))) {
            rc = err ? err->code : MOPE_EIO;
            break;
        }
        c->rm_ctx[ch] = mope_model_hparams(mope_reward_engine(c->rm[ch]))->n_ctx_train;
        if (mope_model_hparams(mope_reward_engine(c->rm[ch]))->n_vocab != mope_tokenizer_n_vocab(c->tok))
            rc = mope_error_set(err, MOPE_EINVAL, "reward model %s has %d tokens, the bundle's tokenizer %d",
                                b->rewards[r].path, mope_model_hparams(mope_reward_engine(c->rm[ch]))->n_vocab,
                                (int)mope_tokenizer_n_vocab(c->tok));
        /* reference scores: fixed per prompt, computed once in a fixed batch
         * order so a resumed run sees the same bits */
        if (!rc) {
            float *s = malloc(sizeof(float) * (size_t)c->n_prompts);
            if (!s) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            if (!rc) rc = pt_score(c, ch, (const char *const *)c->prompt_text, (const char *const *)c->ref,
                                   c->n_prompts, s, err);
            for (int p = 0; !rc && p < c->n_prompts; p++) c->Rref[(size_t)p * b->n_choices + ch] = s[p];
            free(s);
        }
    }
    return rc;
}

int pt_score(pt_ctx *c, int ch, const char *const *prompts, const char *const *responses, int n, float *out,
             mope_error *err) {
    mope_dataset_opts dop;
    mope_dataset_opts_init(&dop);
    dop.tok = c->tok;
    dop.n_ctx = c->rm_ctx[ch];
    dop.chat = c->b->template_id;
    mope_seq *seqs = calloc((size_t)(n > 0 ? n : 1), sizeof *seqs);
    const mope_seq **ptr = calloc((size_t)(n > 0 ? n : 1), sizeof *ptr);
    int rc = seqs && ptr ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        rc = mope_dataset_make_seq(&dop, prompts[i], responses[i], &seqs[i], NULL, err);
        ptr[i] = &seqs[i];
    }
    if (!rc) rc = mope_reward_score_seqs(c->rm[ch], ptr, n, out, err);
    for (int i = 0; seqs && i < n; i++) mope_seq_free(&seqs[i]);
    free(seqs);
    free(ptr);
    return rc ? mope_error_prefix(err, "reward model of %s", c->b->choices[ch].id) : 0;
}

int pt_rewards(pt_ctx *c, const int *pi, const int *pf, const char *const *text, int n, double *r, double *util,
               mope_error *err) {
    const int NC = c->b->n_choices;
    const char **sp = malloc(sizeof(char *) * (size_t)(n > 0 ? n : 1));
    const char **sr = malloc(sizeof(char *) * (size_t)(n > 0 ? n : 1));
    int *sj = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    float *sc = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    int rc = sp && sr && sj && sc ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) memset(r, 0, sizeof(double) * (size_t)n * NC);
    /* one scoring call per choice over the answers that need it */
    for (int ch = 0; !rc && ch < NC; ch++) {
        int m = 0, d = c->b->choices[ch].dimension;
        for (int j = 0; j < n; j++)
            if (c->combo[(size_t)pf[j] * c->n_dim + d] == ch) {
                sp[m] = c->prompt_text[pi[j]];
                sr[m] = text[j];
                sj[m++] = j;
            }
        if (!m) continue;
        if ((rc = pt_score(c, ch, sp, sr, m, sc, err))) break;
        for (int q = 0; q < m; q++)
            r[(size_t)sj[q] * NC + ch] = mope_reward_bt_normalise(sc[q], c->Rref[(size_t)pi[sj[q]] * NC + ch]);
    }
    for (int j = 0; !rc && j < n; j++) {
        const int *cb = c->combo + (size_t)pf[j] * c->n_dim;
        double num = 0, den = 0;
        for (int d = 0; d < c->n_dim; d++)
            if (cb[d] >= 0) {
                num += c->dim_w[d] * r[(size_t)j * NC + cb[d]];
                den += c->dim_w[d];
            }
        util[j] = num / den;
    }
    free(sp);
    free(sr);
    free(sj);
    free(sc);
    return rc;
}

char *pt_response_text(pt_ctx *c, const mope_rollout *r, mope_error *err) {
    int n = r->n_resp;
    const int32_t *t = r->tokens + r->prompt_len;
    if (n > 0 && mope_tokenizer_is_eog(c->tok, t[n - 1])) n--;
    return mope_tokenizer_decode_alloc(c->tok, t, n, MOPE_DECODE_STRIP_SPACE, NULL, err);
}

/* ---- setup / teardown ---- */

int pt_setup(pt_ctx *c, mope_error *err) {
    const mope_pcm_train_opts *o = c->o;
    int rc = 0;
    if (!(c->b = mope_bundle_load(o->bundle, 0, err))) return err ? err->code : MOPE_EIO;
    if (!c->b->tokenizer || !c->b->base)
        return mope_error_set(err, MOPE_EINVAL, "bundle %s: a tokenizer and a base model are required", o->bundle);
    c->n_dim = c->b->n_dimensions;
    if (o->reward_weights) {
        if (o->n_reward_weights != c->n_dim)
            return mope_error_set(err, MOPE_EINVAL, "%d reward weights given; the bundle has %d dimensions",
                                  o->n_reward_weights, c->n_dim);
        double s = 0;
        for (int d = 0; d < c->n_dim; d++) {
            if (!(o->reward_weights[d] >= 0) || !isfinite(o->reward_weights[d]))
                return mope_error_set(err, MOPE_EINVAL, "reward weight %d (%g) must be finite and >= 0", d + 1,
                                      o->reward_weights[d]);
            s += o->reward_weights[d];
        }
        if (!(s > 0)) return mope_error_set(err, MOPE_EINVAL, "the reward weights sum to 0");
    }
    if ((rc = mope_pcm_train_parse_prefs(c->b, o->prefs, &c->combo, &c->n_prefs, err))) return rc;
    c->pref_name = calloc((size_t)c->n_prefs, sizeof(char *));
    c->pref_text = calloc((size_t)c->n_prefs, sizeof(char *));
    c->dim_w = malloc(sizeof(double) * (size_t)c->n_dim);
    if (!c->pref_name || !c->pref_text || !c->dim_w) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int d = 0; d < c->n_dim; d++) c->dim_w[d] = o->reward_weights ? o->reward_weights[d] : 1.0;
    for (int p = 0; p < c->n_prefs; p++) {
        const int *cb = c->combo + (size_t)p * c->n_dim;
        if (!(c->pref_name[p] = mope_pcm_train_pref_name(c->b, cb, err)) ||
            !(c->pref_text[p] = mope_pcm_train_pref_text(c->b, cb, err)))
            return err ? err->code : MOPE_ENOMEM;
        double s = 0;
        for (int d = 0; d < c->n_dim; d++) s += cb[d] >= 0 ? c->dim_w[d] : 0;
        if (!(s > 0))
            return mope_error_set(err, MOPE_EINVAL, "preference %s has only choices of zero reward weight",
                                  c->pref_name[p]);
    }
    if (!(c->pool = mope_pool_create(c->n_threads, err))) return err ? err->code : MOPE_ENOMEM;
    if (!(c->tok = mope_tokenizer_load(c->b->tokenizer, err))) return mope_error_prefix(err, "bundle tokenizer");
    if (!(c->base = mope_model_load(c->b->base, err))) return mope_error_prefix(err, "bundle base %s", c->b->base);
    if (o->pref_paraphrases && (rc = pt_paraphrases_load(c, o->pref_paraphrases, err))) return rc;
    if ((rc = load_prompts(c, err))) return rc;
    if ((rc = load_experts(c, err))) return rc;
    return load_rewards(c, err);
}

void pt_teardown(pt_ctx *c) {
    free(c->target);
    free(c->ex_util);
    for (int k = 0; c->ex && k < c->K; k++)
        if (c->ex_owned[k]) mope_expert_free(c->ex[k]);
    mope_expert_group_free(c->group);
    mope_model_free(c->base);
    for (int k = 0; c->lora && k < c->K; k++) mope_lora_free(c->lora[k]);
    free(c->lora);
    free(c->ex);
    free(c->ex_owned);
    for (int ch = 0; c->rm && c->b && ch < c->b->n_choices; ch++) mope_reward_free(c->rm[ch]);
    free(c->rm);
    free(c->rm_ctx);
    free(c->Rref);
    for (int i = 0; i < c->n_prompts; i++) {
        free(c->prompt_id[i]);
        free(c->prompt_text[i]);
        free(c->ref[i]);
    }
    free(c->prompt_id);
    free(c->prompt_text);
    free(c->ref);
    for (int p = 0; p < c->n_prefs; p++) {
        if (c->pref_name) free(c->pref_name[p]);
        if (c->pref_text) free(c->pref_text[p]);
    }
    free(c->pref_name);
    free(c->pref_text);
    pt_paraphrases_free(c);
    free(c->combo);
    free(c->dim_w);
    mope_pcm_free(c->pcm);
    mope_free(c->adam_m);
    mope_free(c->adam_v);
    mope_sampler_free(c->smp);
    mope_tokenizer_free(c->tok);
    mope_pool_free(c->pool);
    mope_bundle_free(c->b);
}
