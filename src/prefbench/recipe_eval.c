/* Recipe stages that generate: sampled responses ranked by the labelers
 * (the reward models' pairs), the base model's reference responses, and the
 * sanity evaluation on held-out concepts that goes into the model card. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "mope/io.h"
#include "prefbench/recipe_internal.h"

/* The score on its dimension by which a choice's move is measured: the
 * labeler quantity its utility rewards, so that an answer the utility calls
 * perfect moves it the right way (higher = the B side for P1 and P2,
 * friendlier for P3).  P2A's is length: a concise answer keeps the concept's
 * core facts (the corpus' own P2A answers are *more* informative than the
 * base's, which invents content on unseen concepts), so informativeness is
 * no measure of conciseness. */
static double dim_score(const mope_prefbench_labels *l, int choice) {
    switch (choice / 2) {
    case 0: return l->expertise;
    case 1: return choice == 2 ? l->words : l->informativeness;
    default: return l->friendliness;
    }
}
static const double CHOICE_SIGN[6] = {-1, +1, -1, +1, +1, -1};

typedef struct picked {
    char **prompts, **concepts;
    int n;
} picked;

static void picked_free(picked *p) {
    recipe_free_strings(p->prompts, p->n);
    recipe_free_strings(p->concepts, p->n);
    memset(p, 0, sizeof *p);
}

/* Up to max concepts of a split (a seeded random subset, all when max <= 0),
 * each with one of its phrasings drawn at random. */
static int pick_prompts(recipe_ctx *c, const char *split, int max, uint64_t seed, picked *out, mope_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/corpus/%s_prompts.jsonl", c->work, split);
    char **p, **cs;
    int n;
    memset(out, 0, sizeof *out);
    int rc = recipe_read_prompts(path, 0, &p, &cs, &n, err);
    if (rc) return rc;
    /* concept runs */
    int *start = malloc((size_t)(n + 1) * sizeof *start), nc = 0;
    if (!start) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++)
        if (i == 0 || strcmp(cs[i], cs[i - 1]) != 0) start[nc++] = i;
    if (!rc) start[nc] = n;
    mope_rng rng;
    mope_rng_seed(&rng, seed);
    int *order = rc ? NULL : malloc((size_t)(nc > 0 ? nc : 1) * sizeof *order);
    if (!rc && !order) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < nc; i++) order[i] = i;
    for (int i = nc - 1; !rc && i > 0; i--) {
        int j = (int)mope_rng_below(&rng, (uint32_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int take = max > 0 && max < nc ? max : nc;
    if (!rc) {
        out->prompts = calloc((size_t)(take > 0 ? take : 1), sizeof(char *));
        out->concepts = calloc((size_t)(take > 0 ? take : 1), sizeof(char *));
        if (!out->prompts || !out->concepts) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    for (int i = 0; !rc && i < take; i++) {
        int a = start[order[i]], b = start[order[i] + 1];
        int q = a + (int)mope_rng_below(&rng, (uint32_t)(b - a));
        out->prompts[i] = strdup(p[q]);
        out->concepts[i] = strdup(cs[q]);
        out->n = i + 1;
    }
    free(order);
    free(start);
    recipe_free_strings(p, n);
    recipe_free_strings(cs, n);
    if (rc) picked_free(out);
    return rc;
}

static char *user_turn(const char *prompt, int choice) {
    char *s = NULL;
    if (choice < 0) return strdup(prompt);
    if (asprintf(&s, "%s %s", prompt, RECIPE_CHOICE_TEXT[choice]) < 0) return NULL;
    return s;
}

static void free_jobs(recipe_gen_job *j, char **users, int n) {
    for (int i = 0; i < n; i++) {
        free(j[i].response);
        free(users[i]);
    }
    free(j);
    free(users);
}

static void model_paths(recipe_ctx *c, char paths[7][4200], const char *ptr[7]) {
    snprintf(paths[0], sizeof paths[0], "%s/base.gguf", c->out);
    for (int k = 0; k < 6; k++) snprintf(paths[k + 1], sizeof paths[k + 1], "%s/experts/%s.gguf", c->out,
                                         RECIPE_CHOICE[k]);
    for (int k = 0; k < 7; k++) ptr[k] = paths[k];
}

/* Per prompt, `per` jobs: job r of prompt i uses model mdl[r] with choice ch[r]. */
static int make_jobs(const picked *pk, int per, const int *mdl, const int *ch, uint64_t seed, recipe_gen_job **jobs,
                     char ***users, mope_error *err) {
    int n = pk->n * per;
    *jobs = calloc((size_t)(n > 0 ? n : 1), sizeof **jobs);
    *users = calloc((size_t)(n > 0 ? n : 1), sizeof **users);
    if (!*jobs || !*users) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; i < pk->n; i++)
        for (int r = 0; r < per; r++) {
            int k = i * per + r;
            if (!((*users)[k] = user_turn(pk->prompts[i], ch[r]))) return mope_error_set(err, MOPE_ENOMEM, "oom");
            (*jobs)[k].user = (*users)[k];
            (*jobs)[k].model = mdl[r];
            (*jobs)[k].seed = seed * 1000003ull + (uint64_t)k;
        }
    return 0;
}

/* The answers the reward models are judged on and trained from, per prompt:
 * base plain (0), base prompted with each sentence (1..6), each expert with
 * its sentence (7..12). */
static void sampled_jobs(int mdl[RECIPE_SAMPLED], int ch[RECIPE_SAMPLED]) {
    mdl[0] = 0;
    ch[0] = -1;
    for (int k = 0; k < 6; k++) {
        mdl[1 + k] = 0;
        ch[1 + k] = k;
        mdl[7 + k] = k + 1;
        ch[7 + k] = k;
    }
}

static mope_sampler_params sample_params(void) {
    mope_sampler_params sp = mope_sampler_default_params();
    sp.no_repeat_ngram = 3; /* as Personalized Soups decodes */
    return sp;
}

/* ---- samples: the reward models' training pairs ---- */

int recipe_stage_samples(recipe_ctx *c, mope_error *err) {
    char key[128], outp[6][4200], tok[4200];
    const char *outs[6];
    for (int k = 0; k < 6; k++) {
        snprintf(outp[k], sizeof outp[k], "%s/pairs_%s.jsonl", c->work, RECIPE_CHOICE[k]);
        outs[k] = outp[k];
    }
    /* hist=answer: no-repeat n-grams over the answer only (recipe_gen.c); the
     * chain carries the change to the reward models, references and eval */
    snprintf(key, sizeof key, "n=%d max=%d margin=%g foreign=%d sampled=%d hist=answer", c->sz.n_sample_prompts,
             c->sz.gen_max_tokens, c->sz.rm_margin, RECIPE_FOREIGN, RECIPE_SAMPLED);
    int skip;
    recipe_stage_begin(c, "samples", key, outs, 6, &skip);
    if (skip) return 0;
    double t0 = mope_time_s();
    recipe_path(tok, sizeof tok, c->out, "tokenizer.gguf");
    picked pk;
    int rc = pick_prompts(c, "train", c->sz.n_sample_prompts, c->seed * 31 + 1, &pk, err);
    if (rc) return rc;
    /* the corpus' own answers about the same concepts join the pool */
    char src[4200];
    snprintf(src, sizeof src, "%s/corpus/train_responses.jsonl", c->work);
    recipe_rec *rec = NULL;
    int n_rec = 0;
    rc = recipe_read_records(src, &rec, &n_rec, err);
    /* the same 13 sources as the sanity evaluation, so the reward models
     * learn to rank what these models write against each other (the pools
     * used to hold 7 of them; the change moved held-out accuracy by only
     * -0.003..+0.018: pairs that differ in relevance stay hard, because on
     * unseen concepts relevance often rests on whether the content is right) */
    enum { per = RECIPE_SAMPLED };
    int mdl[per], ch[per];
    sampled_jobs(mdl, ch);
    recipe_gen_job *jobs = NULL;
    char **users = NULL;
    if (!rc) rc = make_jobs(&pk, per, mdl, ch, c->seed * 37 + 3, &jobs, &users, err);
    char paths[7][4200];
    const char *mp[7];
    model_paths(c, paths, mp);
    mope_sampler_params sp = sample_params();
    if (!rc) {
        recipe_log(c, "samples: %d prompts x %d answers", pk.n, per);
        rc = recipe_generate(c, tok, mp, 7, c->experts_lora, jobs, pk.n * per, &sp, c->sz.gen_max_tokens, err);
    }
    enum { POOL = RECIPE_SAMPLED + 7 + RECIPE_FOREIGN };
    mope_io_atomic *f[6] = {0};
    long n_pairs[6] = {0};
    for (int k = 0; !rc && k < 6; k++)
        if (!(f[k] = mope_io_atomic_open(outp[k], err))) rc = err ? err->code : MOPE_EIO;
    mope_rng rng;
    mope_rng_seed(&rng, c->seed * 41 + 5);
    int cursor = 0;
    for (int i = 0; !rc && i < pk.n; i++) {
        const char *resp[POOL];
        mope_prefbench_labels lab[POOL];
        int np = 0;
        for (int r = 0; r < per; r++) resp[np++] = jobs[i * per + r].response ? jobs[i * per + r].response : "";
        /* first variant's 7 answers of this concept */
        int found = -1;
        for (int t = 0; t < n_rec && found < 0; t++) {
            int q = (cursor + t) % n_rec;
            if (strcmp(rec[q].concept, pk.concepts[i]) == 0) found = q;
        }
        if (found >= 0) {
            cursor = found;
            for (int q = found; q < n_rec && rec[q].group == rec[found].group && np < POOL; q++)
                resp[np++] = rec[q].response;
        }
        /* well-formed answers about another concept: the only thing wrong
         * with them is relevance, which the reward models must learn to check
         * (on held-out concepts the base often drifts off topic) */
        for (int t = 0; t < RECIPE_FOREIGN && n_rec > 0 && np < POOL; t++) {
            int q = (int)mope_rng_below(&rng, (uint32_t)n_rec);
            if (strcmp(rec[q].concept, pk.concepts[i]) != 0) resp[np++] = rec[q].response;
        }
        for (int r = 0; !rc && r < np; r++)
            rc = mope_prefbench_label(c->lb, resp[r], pk.prompts[i], pk.concepts[i], &lab[r], err);
        for (int k = 0; !rc && k < 6; k++) {
            int cand[POOL * POOL][2], nc = 0;
            for (int a = 0; a < np; a++)
                for (int b = a + 1; b < np; b++) {
                    double d = lab[a].choice[k] - lab[b].choice[k];
                    if (fabs(d) >= c->sz.rm_margin && strcmp(resp[a], resp[b]) != 0) {
                        cand[nc][0] = d > 0 ? a : b;
                        cand[nc][1] = d > 0 ? b : a;
                        nc++;
                    }
                }
            /* at most 8 pairs per prompt, so no prompt dominates */
            for (int t = 0; t < nc && t < 8; t++) {
                int j = t + (int)mope_rng_below(&rng, (uint32_t)(nc - t));
                int a0 = cand[j][0], b0 = cand[j][1];
                cand[j][0] = cand[t][0];
                cand[j][1] = cand[t][1];
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "prompt", pk.prompts[i]);
                cJSON_AddStringToObject(o, "chosen", resp[a0]);
                cJSON_AddStringToObject(o, "rejected", resp[b0]);
                cJSON_AddStringToObject(o, "dimension", RECIPE_CHOICE[k]);
                char *s = cJSON_PrintUnformatted(o);
                cJSON_Delete(o);
                if (!s) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                if (!rc) rc = mope_io_atomic_write(f[k], s, strlen(s), err);
                if (!rc) rc = mope_io_atomic_write(f[k], "\n", 1, err);
                free(s);
                n_pairs[k]++;
            }
        }
    }
    for (int k = 0; k < 6; k++) {
        if (!f[k]) continue;
        if (rc) mope_io_atomic_abort(f[k]);
        else rc = mope_io_atomic_commit(f[k], err);
    }
    for (int k = 0; !rc && k < 6; k++)
        if (n_pairs[k] < 4) rc = mope_error_set(err, MOPE_ESTATE, "samples: only %ld pairs for %s", n_pairs[k],
                                                RECIPE_CHOICE[k]);
    long gen_tokens = 0;
    for (int i = 0; jobs && i < pk.n * per; i++) gen_tokens += jobs[i].n_tokens;
    if (jobs) free_jobs(jobs, users, pk.n * per);
    recipe_free_records(rec, n_rec);
    int n_prompts = pk.n;
    picked_free(&pk);
    if (rc) return rc;
    double dt = mope_time_s() - t0;
    char md[1600];
    snprintf(md, sizeof md,
             "### Reward-model pairs\n\n%d train prompts (random concepts, random phrasing); per prompt a pool "
             "of 13 sampled responses (the base on the plain prompt and on the prompt with each sentence, each "
             "expert on the prompt with its sentence; "
             "temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no-repeat-3-gram, at most %d tokens; %ld tokens "
             "generated), the corpus' 7 answers for the concept and %d corpus answers about other concepts "
             "(off topic: they teach the reward models to check relevance). Every pool pair whose labeler "
             "utility for the choice differs by >= %.2f is a pair (at most 8 per prompt): P1A %ld, P1B %ld, P2A %ld, "
             "P2B %ld, P3A %ld, P3B %ld pairs. %.0f s.\n\n",
             n_prompts, c->sz.gen_max_tokens, gen_tokens, RECIPE_FOREIGN, c->sz.rm_margin, n_pairs[0],
             n_pairs[1], n_pairs[2], n_pairs[3], n_pairs[4], n_pairs[5], dt);
    return recipe_stage_end(c, "samples", dt, md, err);
}

/* ---- references: the base model's greedy answers ---- */

int recipe_stage_references(recipe_ctx *c, mope_error *err) {
    char key[128], out[4200], tok[4200];
    recipe_path(out, sizeof out, c->out, "references.jsonl");
    recipe_path(tok, sizeof tok, c->out, "tokenizer.gguf");
    snprintf(key, sizeof key, "train=%d max=%d", c->sz.n_ref_train, c->sz.gen_max_tokens);
    const char *outs[] = {out};
    int skip;
    recipe_stage_begin(c, "references", key, outs, 1, &skip);
    if (skip) return 0;
    double t0 = mope_time_s();
    static const char *const splits[3] = {"train", "dev", "test"};
    picked pk[3] = {{0}};
    int rc = 0;
    for (int s = 0; !rc && s < 3; s++)
        rc = pick_prompts(c, splits[s], s == 0 ? c->sz.n_ref_train : 0, c->seed * 43 + (uint64_t)s, &pk[s], err);
    int n = pk[0].n + pk[1].n + pk[2].n;
    recipe_gen_job *jobs = calloc((size_t)(n > 0 ? n : 1), sizeof *jobs);
    if (!rc && !jobs) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int s = 0, k = 0; !rc && s < 3; s++)
        for (int i = 0; i < pk[s].n; i++, k++) jobs[k] = (recipe_gen_job){.user = pk[s].prompts[i], .model = 0};
    char base[4200];
    recipe_path(base, sizeof base, c->out, "base.gguf");
    const char *mp[1] = {base};
    mope_sampler_params sp = sample_params();
    sp.temp = 0; /* greedy: one typical answer per prompt */
    if (!rc) {
        recipe_log(c, "references: %d prompts (train %d, dev %d, test %d)", n, pk[0].n, pk[1].n, pk[2].n);
        rc = recipe_generate(c, tok, mp, 1, 0, jobs, n, &sp, c->sz.gen_max_tokens, err);
    }
    mope_io_atomic *f = rc ? NULL : mope_io_atomic_open(out, err);
    if (!rc && !f) rc = err ? err->code : MOPE_EIO;
    for (int s = 0, k = 0; !rc && s < 3; s++)
        for (int i = 0; !rc && i < pk[s].n; i++, k++) {
            cJSON *o = cJSON_CreateObject();
            char id[32];
            snprintf(id, sizeof id, "%s-%05d", splits[s], i);
            cJSON_AddStringToObject(o, "id", id);
            cJSON_AddStringToObject(o, "split", splits[s]);
            cJSON_AddStringToObject(o, "concept", pk[s].concepts[i]);
            cJSON_AddStringToObject(o, "prompt", pk[s].prompts[i]);
            cJSON_AddStringToObject(o, "method", "base-greedy");
            cJSON_AddStringToObject(o, "response", jobs[k].response ? jobs[k].response : "");
            char *line = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            if (!line) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            if (!rc) rc = mope_io_atomic_write(f, line, strlen(line), err);
            if (!rc) rc = mope_io_atomic_write(f, "\n", 1, err);
            free(line);
        }
    if (f) {
        if (rc) mope_io_atomic_abort(f);
        else rc = mope_io_atomic_commit(f, err);
    }
    for (int i = 0; jobs && i < n; i++) free(jobs[i].response);
    free(jobs);
    int counts[3] = {pk[0].n, pk[1].n, pk[2].n};
    for (int s = 0; s < 3; s++) picked_free(&pk[s]);
    if (rc) return rc;
    double dt = mope_time_s() - t0;
    char md[1024];
    snprintf(md, sizeof md,
             "### Reference responses\n\n`references.jsonl`: the base model's greedy answer (no-repeat-3-gram, at "
             "most %d tokens) to %d train prompts (random concepts; the prompts for PCM training), every dev concept "
             "(%d) and every test concept (%d), one random phrasing each: the y_ref of the Bradley-Terry "
             "normalisation r_i(x, y) = sigmoid(R_i(x, y) - R_i(x, y_ref)). %.0f s.\n\n",
             c->sz.gen_max_tokens, counts[0], counts[1], counts[2], dt);
    return recipe_stage_end(c, "references", dt, md, err);
}

/* ---- eval: the sanity table on held-out concepts ---- */

static void mean_std(const double *x, int n, double *m, double *s) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) a += x[i];
    a = n ? a / n : 0;
    for (int i = 0; i < n; i++) b += (x[i] - a) * (x[i] - a);
    *m = a;
    *s = n > 1 ? sqrt(b / (n - 1)) : 0;
}

int recipe_stage_eval(recipe_ctx *c, mope_error *err) {
    char key[128], tok[4200], out[4200];
    recipe_path(tok, sizeof tok, c->out, "tokenizer.gguf");
    recipe_path(out, sizeof out, c->work, "eval_test.jsonl");
    snprintf(key, sizeof key, "n=%d max=%d margin=%g v3", c->sz.n_eval_prompts, c->sz.gen_max_tokens, c->sz.rm_margin);
    const char *outs[] = {out};
    int skip;
    recipe_stage_begin(c, "eval", key, outs, 1, &skip);
    if (skip) return 0;
    double t0 = mope_time_s();
    picked pk;
    int rc = pick_prompts(c, "test", c->sz.n_eval_prompts, c->seed * 47 + 7, &pk, err);
    if (rc) return rc;
    enum { PER = RECIPE_SAMPLED };
    int mdl[PER], ch[PER];
    sampled_jobs(mdl, ch);
    recipe_gen_job *jobs = NULL;
    char **users = NULL;
    rc = make_jobs(&pk, PER, mdl, ch, c->seed * 53 + 9, &jobs, &users, err);
    char paths[7][4200];
    const char *mp[7];
    model_paths(c, paths, mp);
    mope_sampler_params sp = sample_params();
    const int N = pk.n, NJ = N * PER;
    if (!rc) {
        recipe_log(c, "eval: %d held-out prompts x %d", N, PER);
        rc = recipe_generate(c, tok, mp, 7, c->experts_lora, jobs, NJ, &sp, c->sz.gen_max_tokens, err);
    }
    mope_prefbench_labels *lab = calloc((size_t)(NJ > 0 ? NJ : 1), sizeof *lab);
    double *x = calloc((size_t)(N > 0 ? N : 1) * 4, sizeof *x);
    if (!rc && (!lab || !x)) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int j = 0; !rc && j < NJ; j++)
        rc = mope_prefbench_label(c->lb, jobs[j].response ? jobs[j].response : "", pk.prompts[j / PER],
                                  pk.concepts[j / PER], &lab[j], err);
    /* reward models on held-out labeler pairs */
    /* split by whether the two answers' on-topic verdicts agree: on held-out
     * concepts relevance often hinges on facts the reward model cannot know */
    double rm_acc[6] = {0}, rm_acc_rel[2][6] = {{0}};
    long rm_n[6] = {0}, rm_n_rel[2][6] = {{0}};
    float *sc = calloc((size_t)(NJ > 0 ? NJ : 1), sizeof *sc);
    const char **pp = calloc((size_t)(NJ > 0 ? NJ : 1), sizeof *pp), **rr = calloc((size_t)(NJ > 0 ? NJ : 1), sizeof *rr);
    if (!rc && (!sc || !pp || !rr)) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int j = 0; !rc && j < NJ; j++) {
        pp[j] = pk.prompts[j / PER];
        rr[j] = jobs[j].response ? jobs[j].response : "";
    }
    for (int k = 0; !rc && k < 6; k++) {
        char rm[4200];
        snprintf(rm, sizeof rm, "%s/rm/%s.gguf", c->out, RECIPE_CHOICE[k]);
        rc = recipe_rm_score(c, rm, tok, pp, rr, NJ, sc, err);
        for (int i = 0; !rc && i < N; i++)
            for (int a = 0; a < PER; a++)
                for (int b = a + 1; b < PER; b++) {
                    const int ja = i * PER + a, jb = i * PER + b;
                    double d = lab[ja].choice[k] - lab[jb].choice[k];
                    if (fabs(d) < c->sz.rm_margin || strcmp(rr[ja], rr[jb]) == 0) continue;
                    const int rel = lab[ja].q.on_topic != lab[jb].q.on_topic, right = (d > 0) == (sc[ja] > sc[jb]);
                    rm_n[k]++;
                    rm_acc[k] += right;
                    rm_n_rel[rel][k]++;
                    rm_acc_rel[rel][k] += right;
                }
        if (rm_n[k]) rm_acc[k] /= (double)rm_n[k];
        for (int r = 0; r < 2; r++)
            if (rm_n_rel[r][k]) rm_acc_rel[r][k] /= (double)rm_n_rel[r][k];
    }
    /* the per-response records, for inspection */
    mope_io_atomic *f = rc ? NULL : mope_io_atomic_open(out, err);
    if (!rc && !f) rc = err ? err->code : MOPE_EIO;
    for (int j = 0; !rc && j < NJ; j++) {
        int r = j % PER;
        char method[32];
        snprintf(method, sizeof method, "%s", r == 0 ? "base" : r < 7 ? "base-prompted" : "expert");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", pk.prompts[j / PER]);
        cJSON_AddStringToObject(o, "concept", pk.concepts[j / PER]);
        cJSON_AddStringToObject(o, "preference", ch[r] >= 0 ? RECIPE_CHOICE[ch[r]] : "");
        cJSON_AddStringToObject(o, "method", method);
        cJSON_AddStringToObject(o, "response", rr[j]);
        cJSON *l = mope_prefbench_labels_json(&lab[j]);
        if (l) cJSON_AddItemToObject(o, "labels", l);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!line) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (!rc) rc = mope_io_atomic_write(f, line, strlen(line), err);
        if (!rc) rc = mope_io_atomic_write(f, "\n", 1, err);
        free(line);
    }
    if (f) {
        if (rc) mope_io_atomic_abort(f);
        else rc = mope_io_atomic_commit(f, err);
    }
    char *md = NULL;
    size_t mdl_len = 0;
    FILE *m = rc ? NULL : open_memstream(&md, &mdl_len);
    if (!rc && !m) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) {
        fprintf(m, "## Sanity table (held-out test concepts)\n\n"
                   "%d test-split prompts (concepts never seen in training, random phrasing), one sampled answer "
                   "each (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no-repeat-3-gram, at most %d tokens), "
                   "scored by the labelers. *Shift* = (mean dimension score of the expert on the prompt with its "
                   "sentence - mean of the base on the plain prompt) / std of the base's score, signed so that "
                   "positive is the choice's direction, on the labeler quantity the choice's utility rewards (P1: "
                   "expertise = FK grade + 20 rare-word rate; P2A: length in words; P2B: informativeness = distinct "
                   "facts + 0.1 distinct content words; P3: friendliness). *Prompted base* is the base model given "
                   "the same sentence. "
                   "*On topic* and *gate* are the labelers' relevance checks (1 = complete, on-topic, not "
                   "repetitive). *RM acc* is the reward model's pairwise accuracy on every pair of the 13 answers "
                   "per prompt whose labeler utility for the choice differs by >= %.2f; then split into pairs whose "
                   "answers are both on or both off topic, and pairs where one is on topic and the other not (on "
                   "held-out concepts that verdict often rests on whether the content is right, which a reward model "
                   "that never saw the concept cannot know).\n\n",
                N, c->sz.gen_max_tokens, c->sz.rm_margin);
        fprintf(m, "| choice | base mean (std) | expert mean | expert shift | prompted-base shift | on topic base / "
                   "expert | gate base / expert | own utility base / expert | RM acc (pairs) | RM acc same / different "
                   "relevance | pass |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (int k = 0; k < 6; k++) {
            double mb, sb, me, se, mp2, sp2;
            double ot_b = 0, ot_e = 0, g_b = 0, g_e = 0, u_b = 0, u_e = 0;
            for (int i = 0; i < N; i++) x[i] = dim_score(&lab[i * PER], k);
            mean_std(x, N, &mb, &sb);
            for (int i = 0; i < N; i++) x[i] = dim_score(&lab[i * PER + 7 + k], k);
            mean_std(x, N, &me, &se);
            for (int i = 0; i < N; i++) x[i] = dim_score(&lab[i * PER + 1 + k], k);
            mean_std(x, N, &mp2, &sp2);
            for (int i = 0; i < N; i++) {
                const mope_prefbench_labels *lb = &lab[i * PER], *le = &lab[i * PER + 7 + k];
                ot_b += lb->q.on_topic;
                ot_e += le->q.on_topic;
                g_b += lb->q.gate;
                g_e += le->q.gate;
                u_b += lb->choice[k];
                u_e += le->choice[k];
            }
            /* a base with no spread (e.g. never friendly at all) gives no unit: the shift is then reported
             * as n/a and fails */
            bool unit = sb > 1e-6;
            double shift = unit ? CHOICE_SIGN[k] * (me - mb) / sb : 0, pshift = unit ? CHOICE_SIGN[k] * (mp2 - mb) / sb : 0;
            bool pass = unit && shift >= 1.0 && g_e >= 0.5 * g_b && rm_n[k] > 0 && rm_acc[k] >= 0.9;
            char sh[32], psh[32];
            if (unit) {
                snprintf(sh, sizeof sh, "%+.2f", shift);
                snprintf(psh, sizeof psh, "%+.2f", pshift);
            } else {
                snprintf(sh, sizeof sh, "n/a (std 0)");
                snprintf(psh, sizeof psh, "n/a");
            }
            fprintf(m, "| %s %s | %.2f (%.2f) | %.2f | %s | %s | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | "
                       "%.3f (%ld) | %.3f (%ld) / %.3f (%ld) | %s |\n",
                    RECIPE_CHOICE[k], RECIPE_CHOICE_NAME[k], mb, sb, me, sh, psh, N ? ot_b / N : 0,
                    N ? ot_e / N : 0, N ? g_b / N : 0, N ? g_e / N : 0, N ? u_b / N : 0, N ? u_e / N : 0, rm_acc[k],
                    rm_n[k], rm_acc_rel[0][k], rm_n_rel[0][k], rm_acc_rel[1][k], rm_n_rel[1][k],
                    pass ? "yes" : "**no**");
            recipe_log(c, "eval %s: shift %s (prompted %s), gate %.2f/%.2f, RM acc %.3f (%ld pairs)",
                       RECIPE_CHOICE[k], sh, psh, N ? g_b / N : 0, N ? g_e / N : 0, rm_acc[k], rm_n[k]);
        }
        fprintf(m, "\n*pass*: shift >= 1, expert gate >= half the base's, RM accuracy >= 0.9. Per-answer records: "
                   "`eval_test.jsonl` in the work folder (not committed).\n\n");
        if (fclose(m) != 0) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    free(sc);
    free(pp);
    free(rr);
    free(lab);
    free(x);
    if (jobs) free_jobs(jobs, users, NJ);
    picked_free(&pk);
    if (rc) {
        free(md);
        return rc;
    }
    double dt = mope_time_s() - t0;
    rc = recipe_stage_end(c, "eval", dt, md, err);
    free(md);
    return rc;
}
