/* Trainers: the loops behind `mope train lm | sft | dpo | rm` and
 * `mope score`, on top of the trainable model of mope/train.h and the
 * datasets of mope/dataset.h.  Nothing here prints: progress goes to a
 * callback, failures to mope_error.
 *
 * Objectives (per optimizer step: grad_accum micro-batches of batch examples;
 * every loss is a mean over the examples of the step):
 *   lm   next-token cross-entropy over packed text windows
 *   sft  cross-entropy over the response tokens only (prompt masked)
 *   dpo  -log sigmoid(beta * ((lp_c - ref_c) - (lp_r - ref_r))), lp = summed
 *        log-prob of the response tokens under the model, ref = the same
 *        under the starting model (computed once before step 1 and kept in
 *        checkpoints, so --resume needs no second model).  Its gradient is
 *        beta * sigmoid(-z) * (d NLL_c - d NLL_r), NLL = summed negative
 *        log-likelihood: a masked LM gradient with per-sequence weights,
 *        positive on chosen and negative on rejected responses.
 *   rm   Bradley-Terry -log sigmoid(r_c - r_r) on the value head's score of
 *        the last token (the EOS) of each chat-formatted sequence; a held-out
 *        share of the pairs measures pairwise accuracy.
 *
 * Data order: example k of the run (k = step * batch * grad_accum + i) is
 * element k mod n of a permutation of the training examples drawn for epoch
 * k div n from the seed alone, so a resumed run sees exactly the data an
 * uninterrupted one would.
 *
 * Checkpoints (mope/train.h format plus the tokenizer keys and mope.trainer.*
 * keys) are written atomically every checkpoint_every steps; a step whose
 * loss or gradient is not finite stops the run with MOPE_ESTATE before
 * anything is written, so the last checkpoint stays the last good state. */
#ifndef MOPE_TRAINER_H
#define MOPE_TRAINER_H

#include "mope/dataset.h"
#include "mope/tokenizer.h"
#include "mope/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mope_trainer_kind {
    MOPE_TRAINER_LM = 0,
    MOPE_TRAINER_SFT = 1,
    MOPE_TRAINER_DPO = 2,
    MOPE_TRAINER_RM = 3,
} mope_trainer_kind;

const char *mope_trainer_kind_name(mope_trainer_kind k); /* "lm", "sft", "dpo", "rm" */

typedef struct mope_trainer_progress {
    mope_trainer_kind kind;
    int64_t step, total_steps; /* updates done (after this one) / planned */
    int64_t start_step;        /* step this run started from (> 0 after a resume) */
    float loss;                /* this step's mean loss */
    float lr, grad_norm;
    float accuracy;            /* dpo: share of pairs with z > 0; rm: training pairs ranked right; else -1 */
    float margin;              /* dpo: mean (z / beta); rm: mean r_c - r_r; else 0 */
    float eval_accuracy;       /* rm: held-out pairwise accuracy, -1 when not measured at this step */
    float eval_loss;           /* rm: held-out Bradley-Terry loss (with eval_accuracy) */
    int64_t tokens;            /* tokens processed by this run so far */
    double elapsed_s, tokens_per_s, eta_s;
    bool checkpointed;         /* a checkpoint was written after this step */
} mope_trainer_progress;

/* Called after every step.  Returning non-zero stops the run at once (no
 * output file is written; the checkpoints written so far stay). */
typedef int (*mope_trainer_progress_fn)(void *user, const mope_trainer_progress *p);

typedef struct mope_trainer_opts {
    mope_trainer_kind kind;
    int64_t steps;             /* total optimizer steps (counting those before a resume) */
    int batch;                 /* examples (windows, sequences, pairs) per micro-batch */
    int grad_accum;            /* micro-batches per step */
    mope_adamw_config adamw;   /* total_steps <= 0: set to steps (cosine over the run) */
    uint64_t seed;             /* data order (and the rm held-out split) */
    int n_threads;             /* for a model loaded from a checkpoint */
    const char *out;           /* final model (required) */
    const char *checkpoint;    /* checkpoint path (NULL: OUT.ckpt) */
    int64_t checkpoint_every;  /* 0: none */
    bool resume;               /* continue from the checkpoint when it exists */
    float dpo_beta;            /* dpo (default 0.1) */
    double eval_frac;          /* rm: share of pairs held out (default 0.1; 0 = none) */
    int64_t eval_every;        /* rm: held-out evaluation every N steps (0: only at the end) */
    const mope_tokenizer *tok; /* its keys go into the output and checkpoints (may be NULL) */
    mope_trainer_progress_fn progress;
    void *progress_user;
} mope_trainer_opts;

/* batch 8, grad_accum 1, AdamW defaults, seed 42, beta 0.1, eval_frac 0.1. */
void mope_trainer_opts_init(mope_trainer_opts *o, mope_trainer_kind kind);

typedef struct mope_trainer_result {
    int64_t start_step;   /* 0, or the checkpoint's step when resumed */
    int64_t steps_done;   /* the model's step count at the end */
    bool resumed;
    bool stopped;         /* the progress callback stopped the run */
    float final_loss;     /* loss of the last step */
    float eval_accuracy;  /* rm: final held-out accuracy (-1: none held out) */
    float eval_loss;
    int64_t n_train, n_eval; /* examples used for training / held out */
} mope_trainer_result;

/* Runs training on data (kind: TEXT for lm, SFT for sft, PREF for dpo and
 * rm) and writes o->out.  model is the starting point and is owned by the
 * call (freed in every case); when o->resume is set and the checkpoint
 * exists, training continues from the checkpoint instead and model is just
 * freed (it may then be NULL).  rm needs a model with a value head (see
 * mope_trainer_add_value_head). */
int mope_trainer_run(const mope_trainer_opts *o, mope_train_model *model, const mope_dataset *data,
                     mope_trainer_result *res, mope_error *err);

/* Returns a model with the same trunk plus a value head initialised as
 * mope_train_model_init_random does (from seed).  Takes ownership of base
 * (returns it unchanged when it already has a head). */
mope_train_model *mope_trainer_add_value_head(mope_train_model *base, uint64_t seed, mope_error *err);

/* ---- pieces, exposed for tests and other trainers ---- */

/* Summed log-probability of each sequence's response tokens (positions
 * prompt_len-1 .. len-2 predicting tokens prompt_len .. len-1), n sequences
 * run batch at a time. */
int mope_trainer_seq_logp(mope_train_model *m, const mope_seq *const *seqs, int64_t n, int batch, double *out,
                          mope_error *err);
/* Value-head score of each sequence (last token), batch at a time. */
int mope_trainer_seq_score(mope_train_model *m, const mope_seq *const *seqs, int64_t n, int batch, float *out,
                           mope_error *err);

/* DPO for one pair: loss, and d loss / d lp_c (= -d loss / d lp_r). */
double mope_dpo_loss(double beta, double lp_c, double lp_r, double ref_c, double ref_r, double *dlp_c);
/* Bradley-Terry for one pair: loss, and d loss / d r_c (= -d loss / d r_r). */
double mope_bt_loss(double r_c, double r_r, double *dr_c);

#ifdef __cplusplus
}
#endif
#endif
