/* Shared pieces of the PrefBench recipe (recipe*.c).  The training side
 * (mope/train.h) and the inference side (mope/lora.h) declare the same
 * MOPE_LORA_* names, so each recipe file includes only one of them and
 * they meet here through plain types. */
#ifndef MOPE_PREFBENCH_RECIPE_INTERNAL_H
#define MOPE_PREFBENCH_RECIPE_INTERNAL_H

#include <stdio.h>

#include "mope/chat.h"
#include "mope/prefbench.h"
#include "mope/sampler.h"
#include "mope/tokenizer.h"

/* Every size of one build, chosen from measured training speed. */
typedef struct recipe_sizes {
    int max_concepts, variants;
    int vocab;
    int dim, layers, heads, kv_heads, ff, ctx;      /* base model */
    int64_t lm_steps;
    int lm_batch;
    float lm_lr;
    int64_t sft_steps;
    int sft_batch;
    float sft_lr;
    double follow_frac;                             /* share of styled answers in base SFT */
    int lora_rank;
    float lora_alpha;
    int64_t exp_steps;
    int exp_batch;
    float exp_lr;
    int rm_dim, rm_layers, rm_heads, rm_kv_heads, rm_ff; /* reward-model trunk */
    int64_t rm_lm_steps, rm_steps;
    int rm_batch;
    float rm_lm_lr, rm_lr;
    double rm_margin;                               /* labeler utility gap for a pair */
    int n_sample_prompts;                           /* train prompts sampled for RM pairs */
    int n_eval_prompts;                             /* test prompts for the sanity table */
    int n_ref_train;                                /* train prompts with a reference response */
    int gen_max_tokens;
    int gen_slots;
} recipe_sizes;

/* One training record read from the corpus. */
typedef struct recipe_rec {
    char *prompt, *concept, *response;
    int style; /* 0 neutral, 1..6 P1A..P3B */
    int group; /* records of one (concept, variant) share a group */
} recipe_rec;

typedef struct recipe_ctx {
    const mope_prefbench_recipe_opts *o;
    recipe_sizes sz;
    char out[2048], work[2048];
    int n_threads;
    uint64_t seed;
    uint64_t chain; /* hash of every earlier stage's key */
    double t_start;
    mope_wordnet *wn;
    mope_prefbench_labeler *lb;
    char *card;     /* model card sections collected per stage (malloc'd) */
    size_t card_len;
    int experts_lora; /* experts are LoRA adapters (else full models) */
    int expert_tones; /* expert data with tones (stage_expert_data) */
} recipe_ctx;

/* The six choices, their preference sentences (../shared/data/preferences.json)
 * and dimension names. */
extern const char *const RECIPE_CHOICE[6];
extern const char *const RECIPE_CHOICE_NAME[6];
extern const char *const RECIPE_CHOICE_TEXT[6];
extern const char *const RECIPE_DIM_ID[3];
extern const char *const RECIPE_DIM_NAME[3];

/* Corpus answers about other concepts added to each reward-model pair pool. */
#define RECIPE_FOREIGN 2
/* sampled answers per prompt in the reward-model pools and the sanity table */
#define RECIPE_SAMPLED 13

void recipe_log(recipe_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* out = work/name or out/name. */
void recipe_path(char *dst, size_t cap, const char *dir, const char *name);

/* ---- training (recipe_train.c) ---- */
typedef struct recipe_train_report {
    int64_t steps, examples, tokens;
    size_t params;       /* trained parameters (adapter only for LoRA) */
    double seconds, final_loss;
    double eval_accuracy; /* rm; -1 otherwise */
} recipe_train_report;

int recipe_train_lm(recipe_ctx *c, const char *text_path, const char *tok_path, int dim, int layers, int heads,
                     int kv_heads, int ff, int64_t steps, int batch, float lr, uint64_t seed, const char *out,
                     recipe_train_report *rep, mope_error *err);
int recipe_train_sft(recipe_ctx *c, const char *base, const char *data, int64_t steps, int batch, float lr,
                     uint64_t seed, const char *out, recipe_train_report *rep, mope_error *err);
/* LoRA SFT over a frozen base; writes the adapter GGUF. */
int recipe_train_lora(recipe_ctx *c, const char *base, const char *data, int rank, float alpha, int64_t steps,
                      int batch, float lr, uint64_t seed, const char *out, recipe_train_report *rep, mope_error *err);
int recipe_train_rm(recipe_ctx *c, const char *trunk, const char *data, int64_t steps, int batch, float lr,
                    uint64_t seed, const char *out, recipe_train_report *rep, mope_error *err);
/* Reward-model scores of (prompt, response) pairs (chat-formatted as in training). */
int recipe_rm_score(recipe_ctx *c, const char *rm, const char *tok_path, const char *const *prompts,
                    const char *const *responses, int n, float *scores, mope_error *err);

/* ---- generation (recipe_gen.c) ---- */
typedef struct recipe_gen_job {
    const char *user;  /* user turn (instruction and preference sentences) */
    int model;         /* which of the models passed (0 = base) */
    uint64_t seed;
    char *response;    /* out: malloc'd */
    int n_tokens;
    int finished;      /* ended with an end-of-turn token (not cut by length) */
} recipe_gen_job;

/* Runs every job; models[0] is the base, models[k > 0] either full models or
 * LoRA adapters over the base (adapters non-zero).  Greedy when temp <= 0. */
int recipe_generate(recipe_ctx *c, const char *tok_path, const char *const *models, int n_models, int adapters,
                    recipe_gen_job *jobs, int n_jobs, const mope_sampler_params *sp, int max_new,
                    mope_error *err);

/* ---- evaluation and the model card (recipe_eval.c) ---- */
int recipe_stage_eval(recipe_ctx *c, mope_error *err);
int recipe_stage_samples(recipe_ctx *c, mope_error *err);
int recipe_stage_references(recipe_ctx *c, mope_error *err);

/* ---- records ---- */
int recipe_read_records(const char *path, recipe_rec **out, int *n, mope_error *err);
void recipe_free_records(recipe_rec *r, int n);
/* Prompts of a split's prompts file: one phrasing per concept when one_per_concept. */
int recipe_read_prompts(const char *path, int one_per_concept, char ***prompts, char ***concepts, int *n,
                        mope_error *err);
void recipe_free_strings(char **s, int n);

/* Stamps: a stage is skipped when its stamp matches the key and its outputs
 * exist.  key covers the stage's options and every earlier stage. */
int recipe_stage_begin(recipe_ctx *c, const char *stage, const char *key, const char *const *outputs, int n_out,
                       int *skip);
int recipe_stage_end(recipe_ctx *c, const char *stage, double seconds, const char *card_md, mope_error *err);
/* ---- outputs (recipe_out.c) ---- */
/* Rewrites a GGUF in place with its matrices stored as F16. */
int recipe_to_f16(const char *path, mope_error *err);
int recipe_stage_bundle(recipe_ctx *c, mope_error *err);
/* MODEL_CARD.md: the header, every stage's section, the file list. */
int recipe_write_card(recipe_ctx *c, mope_error *err);

/* Appends to the model card text. */
void recipe_card(recipe_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
