/* Scores of generated responses: the reward models' Bradley-Terry
 * normalised rewards against the bundle's reference response of the same
 * prompt, and the labelers' per-choice utilities. */
#include <math.h>
#include <stdlib.h>

#include "eval/eval_run_internal.h"
#include "mope/dataset.h"

/* The reward model of a choice, loaded on first use; NULL (noted once) when
 * the bundle has none for it. */
static int rm_of(eval_run *r, int choice, mope_reward_model **out, mope_error *err) {
    const mope_bundle *b = r->b;
    *out = NULL;
    if (!r->rms) {
        r->rms = calloc((size_t)b->n_choices, sizeof *r->rms);
        r->rm_failed = calloc((size_t)b->n_choices, sizeof *r->rm_failed);
        if (!r->rms || !r->rm_failed) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    if (r->rms[choice]) {
        *out = r->rms[choice];
        return 0;
    }
    if (r->rm_failed[choice]) return 0;
    int k = mope_bundle_find_reward(b, b->choices[choice].id);
    if (k < 0) {
        r->rm_failed[choice] = true;
        eval_note(r, "no reward model for choice %s: its reward-model scores are missing", b->choices[choice].id);
        return 0;
    }
    if (!r->tok) {
        const char *tp = b->tokenizer ? b->tokenizer : b->base;
        if (!tp) return mope_error_set(err, MOPE_EINVAL, "bundle names neither a tokenizer nor a base model");
        if (!(r->tok = mope_tokenizer_load(tp, err))) return mope_error_prefix(err, "tokenizer %s", tp);
    }
    r->rms[choice] = mope_reward_load(b->rewards[k].path, 8, 0, r->pool, err);
    if (!r->rms[choice]) return mope_error_prefix(err, "reward model %s", b->rewards[k].path);
    *out = r->rms[choice];
    return 0;
}

/* Raw scores of n (prompt, response) pairs, formatted as the reward
 * trainer formats them (the bundle's chat template, truncated to the
 * model's context). */
static int rm_scores(eval_run *r, mope_reward_model *rm, const char *const *prompts, const char *const *responses,
                     int n, float *out, mope_error *err) {
    mope_dataset_opts dop;
    mope_dataset_opts_init(&dop);
    dop.tok = r->tok;
    dop.n_ctx = mope_model_hparams(mope_reward_engine(rm))->n_ctx_train;
    dop.chat = r->b->template_id;
    mope_seq *seqs = calloc((size_t)(n > 0 ? n : 1), sizeof *seqs);
    const mope_seq **ptr = calloc((size_t)(n > 0 ? n : 1), sizeof *ptr);
    int rc = seqs && ptr ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory"), made = 0;
    for (; !rc && made < n; made++) {
        rc = mope_dataset_make_seq(&dop, prompts[made], responses[made], &seqs[made], NULL, err);
        if (rc) break;
        ptr[made] = &seqs[made];
    }
    if (!rc) rc = mope_reward_score_seqs(rm, ptr, n, out, err);
    for (int i = 0; seqs && i < made; i++) mope_seq_free(&seqs[i]);
    free(seqs);
    free(ptr);
    return rc;
}

/* The reference response of prompt i: the bundle's (same prompt, else same
 * concept), else the base model's greedy answer with no-repeat-3-gram -- how
 * the PrefBench recipe makes its references -- generated once and kept. */
static const char *reference_of(eval_run *r, int i, mope_error *err, int *rc) {
    const eval_prompt *p = &r->p[i];
    const eval_ref *ref = eval_ref_find(r->refs, r->nrefs, p->prompt, p->concept);
    *rc = 0;
    if (ref) return ref->response;
    if (!r->own_ref && !(r->own_ref = calloc((size_t)r->np, sizeof *r->own_ref))) {
        *rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    if (r->own_ref[i]) return r->own_ref[i];
    mope_method base = {.kind = MOPE_METHOD_BASE};
    mope_gen_opts g;
    mope_gen_opts_init(&g);
    g.sampler.temp = 0;
    g.sampler.no_repeat_ngram = 3;
    g.max_tokens = r->o->max_tokens;
    mope_method_result res = {0};
    *rc = mope_runner_generate(r->runner, &base, NULL, p->prompt, &g, NULL, NULL, &res, err);
    if (*rc) mope_error_prefix(err, "reference answer to prompt %s", p->id);
    else if (!(r->own_ref[i] = strdup(res.text ? res.text : ""))) *rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    mope_method_result_free(&res);
    return *rc ? NULL : r->own_ref[i];
}

int eval_score(eval_run *r, int combo, const int *idx, const char *const *responses, int n, double *rm, double *lab,
               mope_error *err) {
    const eval_combo *c = &r->c[combo];
    const mope_bundle *b = r->b;
    const int nch = c->n;
    for (int i = 0; i < n * nch; i++) rm[i] = lab[i] = NAN;
    if (!r->R_ref) {
        size_t cells = (size_t)r->np * (size_t)b->n_choices;
        r->R_ref = malloc(sizeof(float) * (cells ? cells : 1));
        if (!r->R_ref) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        for (size_t i = 0; i < cells; i++) r->R_ref[i] = NAN;
    }
    const char **prompts = calloc((size_t)n, sizeof *prompts), **refs = calloc((size_t)n, sizeof *refs);
    const char **rp = calloc((size_t)n, sizeof *rp);
    float *sc = malloc(sizeof(float) * (size_t)n);
    int *todo = malloc(sizeof(int) * (size_t)n);
    int rc = prompts && refs && rp && sc && todo ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) prompts[i] = r->p[idx[i]].prompt;
    for (int j = 0; !rc && j < nch; j++) {
        int ch = c->choices[j];
        mope_reward_model *m = NULL;
        if ((rc = rm_of(r, ch, &m, err)) || !m) continue;
        /* reference scores are fixed per prompt: score each once */
        int nt = 0;
        for (int i = 0; i < n; i++) {
            float *R = &r->R_ref[(size_t)idx[i] * (size_t)b->n_choices + (size_t)ch];
            if (!isnan(*R)) continue;
            if (!(refs[nt] = reference_of(r, idx[i], err, &rc))) break;
            rp[nt] = r->p[idx[i]].prompt;
            todo[nt++] = idx[i];
        }
        if (rc || (nt && (rc = rm_scores(r, m, rp, refs, nt, sc, err)))) break;
        for (int t = 0; t < nt; t++) r->R_ref[(size_t)todo[t] * (size_t)b->n_choices + (size_t)ch] = sc[t];
        if ((rc = rm_scores(r, m, prompts, responses, n, sc, err))) break;
        for (int i = 0; i < n; i++)
            rm[i * nch + j] = mope_reward_bt_normalise(sc[i], r->R_ref[(size_t)idx[i] * (size_t)b->n_choices + (size_t)ch]);
    }
    if (!rc && r->o->label) {
        const char *ids[EVAL_MAX_DIMS];
        for (int j = 0; j < nch; j++) ids[j] = b->choices[c->choices[j]].id;
        for (int i = 0; !rc && i < n; i++) {
            const eval_prompt *p = &r->p[idx[i]];
            rc = r->o->label(r->o->label_user, p->prompt, p->concept, responses[i], ids, nch, lab + i * nch, err);
            if (rc) mope_error_prefix(err, "labeling the answer to prompt %s", p->id);
        }
    }
    free(prompts);
    free(refs);
    free(rp);
    free(sc);
    free(todo);
    return rc;
}

void eval_score_free(eval_run *r) {
    for (int i = 0; r->rms && i < r->b->n_choices; i++) mope_reward_free(r->rms[i]);
    free(r->rms);
    free(r->rm_failed);
    free(r->R_ref);
    for (int i = 0; r->own_ref && i < r->np; i++) free(r->own_ref[i]);
    free(r->own_ref);
    r->own_ref = NULL;
    mope_tokenizer_free(r->tok);
    r->rms = NULL;
    r->rm_failed = NULL;
    r->R_ref = NULL;
    r->tok = NULL;
}
