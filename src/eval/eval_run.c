/* `mope eval`: every method x combination over the prompts through one
 * runner, scored, appended to generations.jsonl as they finish, and then
 * reported (results.md, summary.json, utility.svg, weights.svg). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "eval/eval_run_internal.h"
#include "mope/io.h"

void mope_eval_opts_init(mope_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->sampler = mope_sampler_default_params();
    o->max_tokens = 128;
    o->min_weight = 0.01f;
    o->tie_eps = 1e-9;
}

static int mkdir_p(const char *path, mope_error *err) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return mope_error_set(err, MOPE_EINVAL, "output folder path too long");
    strcpy(buf, path);
    for (char *s = buf + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return mope_error_set(err, MOPE_EIO, "cannot create folder %s: %s", buf, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return mope_error_set(err, MOPE_EIO, "%s is not a folder", path);
    return 0;
}

static void out_path(const eval_run *r, const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", r->o->out_dir, name);
}

/* ---- progress and per-token weights, from the runner's callback ---- */

static void report_progress(eval_run *r) {
    if (!r->o->progress) return;
    mope_eval_progress p = {.done = r->done, .total = r->total, .resumed = r->resumed, .combo = r->cur_combo,
                            .method = r->cur_method};
    p.elapsed_s = mope_time_s() - r->t0;
    p.eta_s = r->fresh > 0 ? p.elapsed_s / (double)r->fresh * (double)(r->total - r->done) : -1;
    r->o->progress(r->o->log_user, &p);
}

static int on_token(void *user, const mope_method_token *t) {
    eval_run *r = user;
    if (t->id < 0) { /* the row's final call: one generation done */
        r->done++;
        r->fresh++;
        report_progress(r);
        return 0;
    }
    if (!r->capture || r->batch_start + t->row != 0 || t->eog || t->K < 1) return 0;
    if (!r->cap_names) {
        r->cap_names = calloc((size_t)t->K, sizeof *r->cap_names);
        if (!r->cap_names) return MOPE_ENOMEM;
        r->cap_K = t->K;
        for (int k = 0; k < t->K; k++)
            if (!(r->cap_names[k] = strdup(t->names[k] ? t->names[k] : "?"))) return MOPE_ENOMEM;
    }
    if (t->K != r->cap_K) return 0; /* sources do not change within a response */
    if (r->cap_T == r->cap_cap) {
        int cap = r->cap_cap ? 2 * r->cap_cap : 64;
        float *w = realloc(r->cap_w, sizeof(float) * (size_t)cap * (size_t)t->K);
        if (!w) return MOPE_ENOMEM;
        r->cap_w = w;
        r->cap_cap = cap;
    }
    memcpy(r->cap_w + (size_t)r->cap_T * (size_t)t->K, t->weights, sizeof(float) * (size_t)t->K);
    r->cap_T++;
    return 0;
}

static void capture_reset(eval_run *r) {
    for (int k = 0; r->cap_names && k < r->cap_K; k++) free(r->cap_names[k]);
    free(r->cap_names);
    free(r->cap_w);
    r->cap_names = NULL;
    r->cap_w = NULL;
    r->cap_K = r->cap_T = r->cap_cap = 0;
}

static void free_names(char **names, int K) {
    for (int k = 0; names && k < K; k++) free(names[k]);
    free(names);
}

/* Keeps the weights of the target's first prompt in the first combination
 * that has them, for weights.svg (takes names and w). */
static void keep_sample(eval_run *r, int ci, int K, int T, char **names, float *w, const char *method,
                        const char *combo, const char *id) {
    if ((r->smp_names && ci >= r->smp_combo) || K < 1 || T < 1) {
        free_names(names, K);
        free(w);
        return;
    }
    free_names(r->smp_names, r->smp_K);
    free(r->smp_w);
    r->smp_combo = ci;
    r->smp_K = K;
    r->smp_T = T;
    r->smp_names = names;
    r->smp_w = w;
    snprintf(r->smp_title, sizeof r->smp_title, "Weights of %s along its response to prompt %s, combination %s",
             method, id, combo);
}

/* ---- records ---- */

static cJSON *num_or_null(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

/* Mean of n values, NaN unless all are finite. */
static double mean_all(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i])) return NAN;
        s += x[i];
    }
    return n ? s / n : NAN;
}

static int write_record(eval_run *r, int pi, int ci, int mi, const mope_method_result *res, const double *rm,
                        const double *lab, bool with_weights, double *u_rm, double *u_lab, mope_error *err) {
    const eval_prompt *p = &r->p[pi];
    const eval_combo *c = &r->c[ci];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", p->id);
    cJSON_AddStringToObject(o, "prompt", p->prompt);
    if (p->concept) cJSON_AddStringToObject(o, "concept", p->concept);
    cJSON_AddStringToObject(o, "preference", c->name);
    cJSON_AddStringToObject(o, "method", r->m[mi].name);
    cJSON_AddStringToObject(o, "response", res->text ? res->text : "");
    cJSON *s = cJSON_AddObjectToObject(o, "scores");
    cJSON *srm = cJSON_AddObjectToObject(s, "rm"), *slab = cJSON_AddObjectToObject(s, "labeler");
    for (int j = 0; j < c->n; j++) {
        const char *id = r->b->choices[c->choices[j]].id;
        cJSON_AddItemToObject(srm, id, num_or_null(rm[j]));
        cJSON_AddItemToObject(slab, id, num_or_null(lab[j]));
    }
    *u_rm = mean_all(rm, c->n);
    *u_lab = mean_all(lab, c->n);
    cJSON_AddItemToObject(s, "utility_rm", num_or_null(*u_rm));
    cJSON_AddItemToObject(s, "utility_labeler", num_or_null(*u_lab));
    cJSON_AddNumberToObject(o, "n_tokens", res->n_tokens);
    cJSON_AddBoolToObject(o, "eog", res->eog);
    if (res->K > 0 && res->names && res->mean_weights) {
        cJSON *w = cJSON_AddObjectToObject(o, "mean_weights");
        for (int k = 0; k < res->K; k++) cJSON_AddNumberToObject(w, res->names[k], res->mean_weights[k]);
    }
    if (with_weights && r->cap_T > 0) {
        cJSON *tw = cJSON_AddObjectToObject(o, "token_weights");
        cJSON *names = cJSON_AddArrayToObject(tw, "names"), *vals = cJSON_AddArrayToObject(tw, "values");
        for (int k = 0; k < r->cap_K; k++) cJSON_AddItemToArray(names, cJSON_CreateString(r->cap_names[k]));
        for (int t = 0; t < r->cap_T; t++) {
            cJSON *row = cJSON_CreateArray();
            /* 4 decimals keep the line short and the plot exact enough */
            for (int k = 0; k < r->cap_K; k++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber(
                                              round(r->cap_w[(size_t)t * (size_t)r->cap_K + (size_t)k] * 1e4) / 1e4));
            cJSON_AddItemToArray(vals, row);
        }
    }
    cJSON_AddStringToObject(o, "settings", r->settings);
    cJSON_AddStringToObject(o, "models", r->models);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int bad = fputs(line, r->gen) < 0 || fputc('\n', r->gen) == EOF || fflush(r->gen) != 0;
    free(line);
    if (bad) return mope_error_set(err, MOPE_EIO, "writing %s/generations.jsonl: %s", r->o->out_dir, strerror(errno));
    return 0;
}

/* Generates, scores and records prompts [start, start + n) for one
 * (combination, method). */
static int run_batch(eval_run *r, int ci, int mi, int start, int n, mope_error *err) {
    const eval_method *m = &r->m[mi];
    mope_gen_opts g;
    mope_gen_opts_init(&g);
    g.sampler = r->o->sampler;
    g.sampler.seed = r->c[ci].seed + (uint64_t)start; /* row i draws with seed + i: prompt start + i */
    g.max_tokens = r->o->max_tokens;
    g.topk = m->topk;
    g.min_weight = r->o->min_weight;
    const char **prompts = calloc((size_t)n, sizeof *prompts), **texts = calloc((size_t)n, sizeof *texts);
    mope_method_result *res = calloc((size_t)n, sizeof *res);
    int *idx = malloc(sizeof(int) * (size_t)n), nch = r->c[ci].n;
    double *rm = malloc(sizeof(double) * (size_t)n * (size_t)nch), *lab = malloc(sizeof(double) * (size_t)n * (size_t)nch);
    int rc = prompts && texts && res && idx && rm && lab ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        prompts[i] = r->p[start + i].prompt;
        idx[i] = start + i;
    }
    r->batch_start = start;
    r->capture = start == 0 && m->role == MOPE_EVAL_ROLE_TARGET;
    capture_reset(r);
    if (!rc) {
        rc = mope_runner_generate_batch(r->runner, &m->m, r->c[ci].pref, n, prompts, &g, on_token, r, res, err);
        if (rc) mope_error_prefix(err, "%s, %s", m->name, r->c[ci].name);
    }
    for (int i = 0; !rc && i < n; i++) texts[i] = res[i].text ? res[i].text : "";
    if (!rc) rc = eval_score(r, ci, idx, texts, n, rm, lab, err);
    for (int i = 0; !rc && i < n; i++) {
        double urm, ulab;
        rc = write_record(r, start + i, ci, mi, &res[i], rm + i * nch, lab + i * nch, r->capture && i == 0, &urm,
                          &ulab, err);
        if (rc) break;
        *mope_eval_cell(&r->res, MOPE_EVAL_RM, start + i, ci, mi) = urm;
        *mope_eval_cell(&r->res, MOPE_EVAL_LABELER, start + i, ci, mi) = ulab;
    }
    if (!rc && r->capture && r->cap_T > 0) {
        keep_sample(r, ci, r->cap_K, r->cap_T, r->cap_names, r->cap_w, m->name, r->c[ci].name, r->p[0].id);
        r->cap_names = NULL;
        r->cap_w = NULL;
    }
    capture_reset(r);
    for (int i = 0; res && i < n; i++) mope_method_result_free(&res[i]);
    free(res);
    free(prompts);
    free(texts);
    free(idx);
    free(rm);
    free(lab);
    return rc;
}

/* Fingerprint of the manifest and every file it names, so that a resumed run
 * never mixes generations or scores of other models (a retrained PCM or
 * reward model, new references) into its tables. */
static int bundle_fingerprint(const mope_bundle *b, const char *manifest, uint64_t *h, mope_error *err) {
    const char *fixed[] = {manifest, b->tokenizer, b->base, b->references, b->pcm, b->multitask};
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof fixed / sizeof *fixed; i++)
        if (fixed[i]) rc = mope_io_hash_file(fixed[i], h, err);
    for (int i = 0; !rc && i < b->n_experts; i++) {
        const char *p = b->experts[i].adapter ? b->experts[i].adapter : b->experts[i].model;
        if (p) rc = mope_io_hash_file(p, h, err);
    }
    for (int i = 0; !rc && i < b->n_rewards; i++) rc = mope_io_hash_file(b->rewards[i].path, h, err);
    return rc ? mope_error_prefix(err, "fingerprinting the bundle") : 0;
}

/* ---- resume ---- */

/* Fills the table from an earlier run's records; *have[p, c, m] marks them.
 * Records of other settings are an error (mixing them would compare
 * different sampling). */
static int load_previous(eval_run *r, unsigned char *have, mope_error *err) {
    char path[4200];
    out_path(r, "generations.jsonl", path, sizeof path);
    eval_record *rec = NULL;
    int n = 0, dropped = 0;
    int rc = eval_records_read(path, &rec, &n, &dropped, err);
    if (rc) return rc;
    for (int i = 0; !rc && i < n; i++) {
        if (!rec[i].settings || strcmp(rec[i].settings, r->settings) != 0)
            rc = mope_error_set(err, MOPE_EINVAL,
                                "%s holds generations made with other settings (\"%s\", now \"%s\"): use another "
                                "output folder or --no-resume",
                                path, rec[i].settings ? rec[i].settings : "none", r->settings);
        else if (!rec[i].models || strcmp(rec[i].models, r->models) != 0)
            rc = mope_error_set(err, MOPE_EINVAL,
                                "%s holds generations made with other models (a bundle file changed since: fingerprint "
                                "%s, now %s): use another output folder or --no-resume",
                                path, rec[i].models ? rec[i].models : "none", r->models);
    }
    for (int i = 0; !rc && i < n; i++) {
        int pi = -1, ci = mope_eval_combo_index(&r->res, rec[i].preference), mi = mope_eval_method_index(&r->res, rec[i].method);
        for (int p = 0; p < r->np && pi < 0; p++)
            if (strcmp(r->p[p].id, rec[i].id) == 0) pi = p;
        if (pi < 0 || ci < 0 || mi < 0 || !eval_applies(r, mi, ci)) continue;
        size_t at = ((size_t)pi * (size_t)r->nc + (size_t)ci) * (size_t)r->nm + (size_t)mi;
        if (have[at]) continue;
        have[at] = 1;
        *mope_eval_cell(&r->res, MOPE_EVAL_RM, pi, ci, mi) = rec[i].u_rm;
        *mope_eval_cell(&r->res, MOPE_EVAL_LABELER, pi, ci, mi) = rec[i].u_lab;
        r->resumed++;
        if (pi == 0 && r->m[mi].role == MOPE_EVAL_ROLE_TARGET && rec[i].T > 0) {
            keep_sample(r, ci, rec[i].K, rec[i].T, rec[i].names, rec[i].weights, rec[i].method, rec[i].preference,
                        rec[i].id);
            rec[i].names = NULL;
            rec[i].weights = NULL;
            rec[i].K = 0;
        }
    }
    eval_records_free(rec, n);
    if (rc) return rc;
    if (dropped) eval_note(r, "the last line of generations.jsonl was incomplete (an interrupted run) and was dropped");
    /* rewrite the file with the complete lines only, so appending starts on a fresh line */
    if (dropped) {
        void *data = NULL;
        size_t len = 0;
        if ((rc = mope_io_read_file(path, &data, &len, err))) return rc;
        /* keep everything before the last line */
        char *s = data;
        if (len > 0 && s[len - 1] == '\n') len--;
        while (len > 0 && s[len - 1] != '\n') len--;
        rc = mope_io_write_atomic(path, data, len, err);
        free(data);
    }
    return rc;
}

/* ---- reports ---- */

static int write_text(eval_run *r, const char *name, char *text, mope_error *err) {
    if (!text) return err ? err->code : MOPE_ENOMEM;
    char path[4200];
    out_path(r, name, path, sizeof path);
    int rc = mope_io_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

static int write_reports(eval_run *r, mope_error *err) {
    int *topk = calloc((size_t)r->nm, sizeof *topk);
    if (!topk) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int m = 0; m < r->nm; m++) topk[m] = r->m[m].topk;
    bool have_rm = false;
    for (int p = 0; p < r->np && !have_rm; p++)
        for (int c = 0; c < r->nc && !have_rm; c++)
            for (int m = 0; m < r->nm && !have_rm; m++) have_rm = isfinite(mope_eval_get(&r->res, MOPE_EVAL_RM, p, c, m));
    bool have_lab = false;
    for (int p = 0; p < r->np && !have_lab; p++)
        for (int c = 0; c < r->nc && !have_lab; c++)
            for (int m = 0; m < r->nm && !have_lab; m++)
                have_lab = isfinite(mope_eval_get(&r->res, MOPE_EVAL_LABELER, p, c, m));
    const mope_sampler_params *sp = &r->o->sampler;
    char settings[512];
    snprintf(settings, sizeof settings,
             "Sampling: temperature %g, top-k %d, top-p %g, min-p %g, seed %llu, at most %d tokens; the same seeds "
             "for every method of a (prompt, combination); experts under weight %g at a step not run (0: exact).",
             sp->temp, sp->top_k, sp->top_p, sp->min_p, (unsigned long long)sp->seed, r->o->max_tokens,
             (double)r->o->min_weight);
    mope_eval_report_info info = {.title = "mope eval", .command = r->o->command, .settings = settings,
                                  .tie_eps = r->o->tie_eps, .have_labeler = have_lab, .have_rm = have_rm,
                                  .topk = topk, .notes = (const char *const *)r->notes, .n_notes = r->n_notes};
    int rc = write_text(r, "results.md", mope_eval_report_md(&r->res, &info, err), err);
    if (!rc) rc = write_text(r, "summary.json", mope_eval_report_json(&r->res, &info, err), err);
    if (!rc && (have_lab || have_rm))
        rc = write_text(r, "utility.svg", mope_eval_report_svg(&r->res, have_lab ? MOPE_EVAL_LABELER : MOPE_EVAL_RM, err),
                        err);
    if (!rc && r->smp_names) {
        double *v = malloc(sizeof(double) * (size_t)r->smp_K * (size_t)r->smp_T);
        if (!v) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        for (int k = 0; v && k < r->smp_K; k++)
            for (int t = 0; t < r->smp_T; t++)
                v[(size_t)k * (size_t)r->smp_T + (size_t)t] = r->smp_w[(size_t)t * (size_t)r->smp_K + (size_t)k];
        if (!rc)
            rc = write_text(r, "weights.svg",
                            mope_eval_svg_lines(r->smp_title, "response token", "weight",
                                                (const char *const *)r->smp_names, r->smp_K, v, r->smp_T, err),
                            err);
        free(v);
    }
    free(topk);
    return rc;
}

/* ---- the run ---- */

static int prepare(eval_run *r, mope_error *err) {
    const mope_eval_opts *o = r->o;
    if (!o->bundle || !o->prompts || !o->out_dir)
        return mope_error_set(err, MOPE_EINVAL, "eval: a bundle, a prompts file and an output folder are required");
    if (o->max_tokens < 1) return mope_error_set(err, MOPE_EINVAL, "eval: max tokens %d < 1", o->max_tokens);
    if (!(r->b = mope_bundle_load(o->bundle, 0, err))) return err ? err->code : MOPE_EINVAL;
    int rc = eval_prompts_read(o->prompts, o->n_prompts, &r->p, &r->np, err);
    if (rc) return mope_error_prefix(err, "prompts");
    if ((rc = eval_setup_combos(r, err)) || (rc = eval_setup_methods(r, err))) return rc;
    if (r->b->references && (rc = eval_refs_read(r->b->references, &r->refs, &r->nrefs, err)))
        return mope_error_prefix(err, "references");
    int missing = 0;
    for (int i = 0; i < r->np; i++) missing += !eval_ref_find(r->refs, r->nrefs, r->p[i].prompt, r->p[i].concept);
    if (missing)
        eval_note(r, "%d of %d prompts have no reference response in the bundle (by prompt or concept): their "
                     "reference for the reward-model normalisation is the base model's greedy answer (no-repeat-3-gram, "
                     "at most %d tokens), as PrefBench's references are made", missing, r->np, o->max_tokens);
    if (!o->label) eval_note(r, "no labelers: labeler scores are missing");
    const char **cn = calloc((size_t)r->nc, sizeof *cn), **mn = calloc((size_t)r->nm, sizeof *mn);
    unsigned char *role = calloc((size_t)r->nm, 1);
    if (!cn || !mn || !role) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < r->nc; i++) cn[i] = r->c[i].name;
    for (int i = 0; !rc && i < r->nm; i++) {
        mn[i] = r->m[i].name;
        role[i] = r->m[i].role;
    }
    if (!rc) rc = mope_eval_results_init(&r->res, r->np, cn, r->nc, mn, role, r->nm, err);
    free(cn);
    free(mn);
    free(role);
    uint64_t models = MOPE_HASH64_INIT;
    if (!rc) rc = bundle_fingerprint(r->b, o->bundle, &models, err);
    snprintf(r->models, sizeof r->models, "%016llx", (unsigned long long)models);
    const mope_sampler_params *sp = &o->sampler;
    snprintf(r->settings, sizeof r->settings,
             "seed=%llu temp=%g top_k=%d top_p=%g min_p=%g repeat_penalty=%g repeat_last_n=%d no_repeat_ngram=%d "
             "max_tokens=%d min_weight=%g",
             (unsigned long long)sp->seed, sp->temp, sp->top_k, sp->top_p, sp->min_p, sp->repeat_penalty,
             sp->repeat_last_n, sp->no_repeat_ngram, o->max_tokens, (double)o->min_weight);
    return rc;
}

static int generate_all(eval_run *r, const unsigned char *have, mope_error *err) {
    int rc = 0;
    for (int ci = 0; !rc && ci < r->nc; ci++)
        for (int mi = 0; !rc && mi < r->nm; mi++) {
            if (!eval_applies(r, mi, ci)) continue;
            r->cur_combo = r->c[ci].name;
            r->cur_method = r->m[mi].name;
            /* contiguous runs of missing prompts keep each prompt's seed (seed + position) */
            for (int p = 0; !rc && p < r->np;) {
                size_t at = ((size_t)p * (size_t)r->nc + (size_t)ci) * (size_t)r->nm + (size_t)mi;
                if (have[at]) {
                    p++;
                    continue;
                }
                int q = p;
                while (q < r->np && !have[((size_t)q * (size_t)r->nc + (size_t)ci) * (size_t)r->nm + (size_t)mi]) q++;
                if (!r->runner) {
                    mope_runner_opts ro;
                    mope_runner_opts_init(&ro);
                    ro.pool = r->pool;
                    if (r->o->max_batch > 0) ro.max_batch = r->o->max_batch;
                    if (!(r->runner = mope_runner_new(r->b, &ro, err))) return mope_error_prefix(err, "loading the bundle");
                }
                rc = run_batch(r, ci, mi, p, q - p, err);
                p = q;
            }
        }
    return rc;
}

int mope_eval_run(const mope_eval_opts *o, mope_error *err) {
    if (!o) return mope_error_set(err, MOPE_EINVAL, "eval: no options");
    eval_run run, *r = &run;
    memset(r, 0, sizeof *r);
    r->o = o;
    r->t0 = mope_time_s();
    int rc = prepare(r, err);
    unsigned char *have = NULL;
    if (!rc) rc = mkdir_p(o->out_dir, err);
    if (!rc) {
        size_t cells = (size_t)r->np * (size_t)r->nc * (size_t)r->nm;
        if (!(have = calloc(cells ? cells : 1, 1))) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    char path[4200];
    out_path(r, "generations.jsonl", path, sizeof path);
    if (!rc && !o->no_resume) rc = load_previous(r, have, err);
    if (!rc) {
        r->gen = fopen(path, o->no_resume ? "wb" : "ab");
        if (!r->gen) rc = mope_error_set(err, MOPE_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    if (!rc) {
        for (int ci = 0; ci < r->nc; ci++)
            for (int mi = 0; mi < r->nm; mi++)
                if (eval_applies(r, mi, ci)) r->total += r->np;
        r->done = r->resumed;
        if (r->resumed) eval_note(r, "%ld generations taken from an earlier run in %s", r->resumed, path);
        report_progress(r);
        if (!(r->pool = mope_pool_create(o->n_threads > 0 ? o->n_threads : mope_cpu_count(), err)))
            rc = err ? err->code : MOPE_ENOMEM;
    }
    if (!rc) rc = generate_all(r, have, err);
    if (r->gen && fclose(r->gen) != 0 && !rc)
        rc = mope_error_set(err, MOPE_EIO, "writing %s: %s", path, strerror(errno));
    if (!rc) rc = write_reports(r, err);
    free(have);
    capture_reset(r);
    free_names(r->smp_names, r->smp_K);
    free(r->smp_w);
    mope_runner_free(r->runner);
    eval_score_free(r);
    mope_pool_free(r->pool);
    mope_eval_results_free(&r->res);
    for (int i = 0; i < r->n_notes; i++) free(r->notes[i]);
    free(r->notes);
    free(r->c);
    free(r->m);
    eval_prompts_free(r->p, r->np);
    eval_refs_free(r->refs, r->nrefs);
    mope_bundle_free(r->b);
    return rc;
}
