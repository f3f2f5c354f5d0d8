/* Shared state of the PCM trainer (pcm_train*.c): the setup half loads the
 * bundle, prompts, references, experts and reward models; the loop half
 * runs iterations, the optimizer, checkpoints and the log. */
#ifndef MOPE_RL_PCM_TRAIN_INTERNAL_H
#define MOPE_RL_PCM_TRAIN_INTERNAL_H

#include "mope/dataset.h"
#include "mope/expert.h"
#include "mope/lora.h"
#include "mope/model.h"
#include "mope/pcm.h"
#include "mope/pcm_train.h"
#include "mope/rebel.h"
#include "mope/reward.h"
#include "mope/sampler.h"
#include "mope/tokenizer.h"

typedef struct pt_ctx {
    const mope_pcm_train_opts *o;
    mope_pcm_train_result *res;
    mope_bundle *b;
    mope_tokenizer *tok;
    mope_pool *pool;
    int n_threads;
    /* preferences */
    int n_prefs, n_dim;
    int *combo;              /* n_prefs x n_dim choice indices (-1: left out) */
    char **pref_name, **pref_text;
    char ***para;            /* --pref-paraphrases: per choice index, n_para[ch] sentences (NULL: none) */
    int *n_para;
    /* prompts with their references */
    int n_prompts;
    char **prompt_id, **prompt_text, **ref;
    /* experts: all of the bundle's, in its order */
    int K;
    mope_model *base;
    mope_lora **lora;        /* K (NULL for full-model experts) */
    mope_expert_group *group;
    mope_expert **ex;        /* K */
    bool *ex_owned;          /* K: freed by us (full-model experts) */
    int n_seq;               /* rollouts in flight: 2 * batch */
    /* reward models by choice index (NULL when no preference uses it) */
    mope_reward_model **rm;
    int *rm_ctx;
    float *Rref;             /* n_prompts x n_choices */
    double *dim_w;           /* n_dim */
    /* training state */
    mope_pcm *pcm;
    float *adam_m, *adam_v;  /* trunk params then head */
    size_t n_opt;
    int64_t step, iteration;
    mope_rng rng;
    mope_sampler *smp;
    mope_adamw_config adamw;
    /* --warm-best: per preference, the target weights and each expert's
     * measured utility alone (n_prefs x K each; NULL when off) */
    float *target;
    double *ex_util;
} pt_ctx;

/* pcm_paraphrase.c */
int pt_paraphrases_load(pt_ctx *c, const char *path, mope_error *err);
void pt_paraphrases_free(pt_ctx *c);
/* The preference text of one item of preference p (malloc'd): with
 * paraphrases, each choice's sentence or, with probability 1/2, one of its
 * paraphrases, drawn from rng; without, a copy of pref_text[p] (no draws). */
char *pt_item_text(pt_ctx *c, int p, mope_rng *rng, mope_error *err);
/* The longest text pt_item_text can give for p (each choice's alternative
 * with the most tokens), for the context check. */
char *pt_longest_text(pt_ctx *c, int p, mope_error *err);

/* pcm_train.c */
/* One string per chosen choice of combo (pick gives it), joined by sep. */
typedef const char *(*pt_pick_fn)(const mope_bundle *b, int ch, void *user);
char *pt_join_combo(const mope_bundle *b, const int *combo, const char *sep, pt_pick_fn pick, void *user,
                    mope_error *err);
int pt_setup(pt_ctx *c, mope_error *err);
void pt_teardown(pt_ctx *c);
/* Response text of a rollout (without its end-of-generation token). */
char *pt_response_text(pt_ctx *c, const mope_rollout *r, mope_error *err);
/* Scores n (prompt, response) pairs with the reward model of choice ch. */
int pt_score(pt_ctx *c, int ch, const char *const *prompts, const char *const *responses, int n, float *out,
             mope_error *err);

/* Rewards of n answers, answer j to prompt pi[j] under preference pf[j],
 * scored as REBEL scores rollouts: r[j * n_choices + ch] = the normalised
 * reward sigmoid(R_ch(x, y) - R_ch(x, y_ref)) of every choice ch the
 * preference names (0 for the others), util[j] their mean weighted by the
 * dimensions' reward weights.  One scoring call per choice. */
int pt_rewards(pt_ctx *c, const int *pi, const int *pf, const char *const *text, int n, double *r, double *util,
               mope_error *err);

/* q[K]: the warm start's target and the prior of --kl-prior for
 * preference p (pcm_warm.c): uniform over the experts serving a choice of
 * p (all experts when none does), or with --warm-best the share warm_best
 * on the best of them and the rest spread over the others.  Returns how
 * many experts got weight. */
int pt_pref_target(const pt_ctx *c, int p, float *q);

/* --warm-best: generates with each expert serving a preference, alone, on
 * warm_best_prompts training prompts, scores the answers as REBEL does
 * (weighted, normalised reward-model utility) and fills c->target and
 * c->ex_util.  Deterministic for a seed (its own sampler seeds); a no-op
 * when warm_best is 0. */
int pt_best_targets(pt_ctx *c, mope_error *err);

/* The optimizer step the loop uses (AdamW on trunk + head, moments in c). */
typedef int (*pt_opt_fn)(pt_ctx *c, float *lr_out, float *norm_out, mope_error *err);

/* pcm_warm.c: o->warm_steps supervised updates toward uniform weights over
 * each preference's experts; leaves the moments zero and c->step 0. */
int pt_warm_start(pt_ctx *c, pt_opt_fn opt, mope_error *err);

/* pcm_train_loop.c */
int pt_checkpoint_save(pt_ctx *c, const char *path, mope_error *err);
int pt_checkpoint_load(pt_ctx *c, const char *path, mope_error *err);

#endif
