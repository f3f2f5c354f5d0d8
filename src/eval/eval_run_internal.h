/* State of one `mope eval` run, shared by eval_setup.c, eval_run.c and
 * eval_score.c (not part of the public API). */
#ifndef MOPE_EVAL_RUN_INTERNAL_H
#define MOPE_EVAL_RUN_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "eval/eval_internal.h"
#include "mope/bundle.h"
#include "mope/method.h"
#include "mope/reward.h"
#include "mope/tokenizer.h"

#define EVAL_MAX_DIMS 16

typedef struct eval_combo {
    char name[256]; /* "P1A+P2B+P3A" */
    char pref[256]; /* "P1A,P2B,P3A", as the runner reads preferences */
    int n, choices[EVAL_MAX_DIMS];
    uint64_t seed;  /* prompt i is sampled with seed + i */
} eval_combo;

typedef struct eval_method {
    char name[128];
    mope_method m;
    unsigned char role; /* MOPE_EVAL_ROLE_* */
    int topk;           /* 0: exact */
    int choice;         /* a single expert's choice index (it runs only where chosen), else -1 */
} eval_method;

typedef struct eval_run {
    const mope_eval_opts *o;
    mope_bundle *b;
    eval_prompt *p;
    int np;
    eval_ref *refs;
    int nrefs;
    eval_combo *c;
    int nc, cap_c;
    eval_method *m;
    int nm;
    mope_eval_results res;
    char settings[256];
    char models[17]; /* fingerprint of the bundle's files (hex) */
    char **notes;
    int n_notes;
    /* models, loaded when first needed */
    mope_pool *pool;
    mope_runner *runner;
    mope_tokenizer *tok;
    mope_reward_model **rms; /* per bundle choice */
    bool *rm_failed;         /* per choice: no reward model (noted once) */
    float *R_ref;            /* [prompt * n_choices + choice], NaN until scored */
    char **own_ref;          /* per prompt: the base model's greedy answer, made when the bundle has no reference */
    /* progress */
    long done, total, resumed, fresh;
    double t0;
    const char *cur_combo, *cur_method;
    /* the batch being generated */
    int batch_start;
    bool capture;            /* record the per-token weights of the batch's prompt 0 */
    int cap_K, cap_T, cap_cap;
    char **cap_names;
    float *cap_w;
    /* the sample for weights.svg */
    int smp_K, smp_T, smp_combo;
    char **smp_names;
    float *smp_w;
    char smp_title[512];
    FILE *gen;               /* generations.jsonl, appended */
} eval_run;

void eval_note(eval_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int eval_setup_combos(eval_run *r, mope_error *err);
int eval_setup_methods(eval_run *r, mope_error *err);
/* Whether method runs in combination combo (a single expert only where its choice is chosen). */
bool eval_applies(const eval_run *r, int method, int combo);

/* Scores n responses to prompts idx[n] for combination combo: per-choice
 * normalised rewards rm[n * nch] and labeler utilities lab[n * nch]
 * (NaN where unavailable), nch = the combination's choice count. */
int eval_score(eval_run *r, int combo, const int *idx, const char *const *responses, int n, double *rm, double *lab,
               mope_error *err);
void eval_score_free(eval_run *r);

#endif
