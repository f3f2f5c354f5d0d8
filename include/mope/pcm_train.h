/* REBEL training of the Preference Control Model over a bundle: the loop
 * behind `mope train pcm --bundle B` (DESIGN.md §1, MoPE issue item 4).
 *
 * Per iteration:
 *  1. a batch of (prompt, preference) items: preference i of the batch is
 *     combination (iteration * batch + i) mod n_prefs (so every combination
 *     is visited evenly), the prompt is drawn uniformly by the run's rng;
 *  2. two responses per item from the current mixture policy (the PCM's
 *     in-memory inference view weighing ALL the bundle's experts, which run
 *     as one group over the shared base when they are LoRA adapters), with
 *     each expert's probability of every sampled token and the rollout
 *     log-probability recorded (mope_rollout_generate);
 *  3. rewards: for each choice c of the item's preference, the bundle's
 *     reward model R_c scores (prompt, response), formatted as the reward
 *     trainer formats pairs; r_c = sigmoid(R_c(x, y) - R_c(x, y_ref)) with
 *     y_ref the reference response of the prompt; utility = the mean of the
 *     r_c weighted by their dimension's weight (reward_weights, default 1);
 *  4. `epochs` REBEL updates on the batch (mope_rebel_accumulate, then an
 *     AdamW update kept here, so its state can be checkpointed), with
 *     optional KL shaping toward the uniform mixture and a length penalty.
 *
 * Prompts: a JSONL of {"id", "prompt"} (other fields ignored); by default
 * the records of the bundle's references file whose "split" is "train" (all
 * records when none has a split): the PrefBench recipe writes references for
 * exactly the PCM training prompts.  References are matched to prompts by
 * id, else by prompt text.  A prompt without one gets the base model's
 * greedy answer, generated once and cached in a JSONL file (ref_cache), or
 * is skipped (skip_missing_refs) and counted.  Reference scores R_c(x, y_ref)
 * are computed once, at start, for every prompt and choice.
 *
 * PCM input: MOPE_PCM_INPUT_FORMAT with the preference written as the
 * chosen choices' sentences joined by one space; the experts each get their
 * own preference sentence (Personalized Soups' prompting).
 *
 * Log (JSONL, one object per iteration): iteration, reward (mean r_c over
 * every scored choice), utility, loss_before (first update's loss, under the
 * rollout policy), loss_after (after the last update), rebel_loss, kl (mean
 * per-token KL(w || uniform) of the rollout policy), grad_norm, lr, mean_len,
 * truncated (share of rollouts cut at max_tokens), tokens (response tokens),
 * tokens_per_s (response tokens / iteration wall time), iter_s, elapsed_s,
 * and "per_preference": {"P1A+P2B+P3A": {"n", "reward", "utility",
 * "weights": {expert id: mean weight over the response tokens}}} for the
 * combinations of this batch.  With exploration on, also "explored" (steered
 * items), "explore_gain" (their mean utility minus their partner's) and
 * "explore_items": [{"preference", "expert", "head", "tail", "utility",
 * "partner_utility", "response"}]; utility and weights then include the
 * steered rollouts.  On --resume the log keeps its lines up to the
 * checkpoint's iteration and continues.
 *
 * Checkpoint (GGUF, atomic): the PCM file (mope_pcm_to_gguf, with the
 * tokenizer) plus tensors mope.pcm_train.adam_m / adam_v (the AdamW moments,
 * trunk parameters then head, flat F32) and keys mope.pcm_train.iteration,
 * .step, .rng (4 x u64), .seed, .batch, .n_prefs, .n_prompts.  Resuming
 * continues exactly: same options and thread count give the same bytes as
 * an uninterrupted run (the sampler is reseeded every iteration from the
 * run's rng).  A checkpoint loads as a plain PCM too.
 *
 * Rules: linear or geometric.  A geometric PCM's rollouts record every
 * expert's full distribution at every step (its log-probability needs the
 * full-vocabulary normaliser, mope/rebel.h): max_tokens x K x n_vocab floats
 * per rollout, 2 x batch rollouts per iteration. */
#ifndef MOPE_PCM_TRAIN_H
#define MOPE_PCM_TRAIN_H

#include "mope/bundle.h"
#include "mope/core.h"
#include "mope/mix.h"
#include "mope/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mope_pcm_train_progress {
    int64_t iteration, total;   /* iterations done (after this one) / planned */
    int64_t start_iteration;    /* > 0 after a resume */
    double reward, utility;     /* batch means */
    double loss_before, loss_after, kl, kl_prior;
    float grad_norm, lr;        /* of the last update */
    double mean_len, truncated_share;
    int explored;               /* steered items of this batch (--explore) */
    double explore_gain;        /* their mean utility minus their partner's */
    int64_t tokens;             /* response tokens of this batch */
    double iter_s, elapsed_s, tokens_per_s;
    bool checkpointed;
    const char *log_line;       /* the JSON object of this iteration (no newline) */
} mope_pcm_train_progress;

/* Called after every iteration; non-zero stops the run (no output written). */
typedef int (*mope_pcm_train_progress_fn)(void *user, const mope_pcm_train_progress *p);

typedef struct mope_pcm_train_opts {
    const char *bundle;            /* bundle.json (required) */
    const char *prompts;           /* JSONL {"id","prompt"}; NULL: see above */
    const char *prefs;             /* "P1A,P2A,P3A;P1B,P2A,P3A" ; NULL: every combination */
    const char *pref_paraphrases;  /* JSON {"P1A": ["sentence", ...], ...} or NULL.  With it every item's
                                      preference text takes, per choice, the choice's own sentence or,
                                      with probability 1/2, one of its paraphrases drawn at random (from
                                      the run's rng); the warm start draws the same way from its own */
    const double *reward_weights;  /* one per dimension of the bundle, or NULL (all 1) */
    int n_reward_weights;
    const char *pcm_in;            /* start from this PCM file; NULL: a new one */
    bool init_from_base;           /* new PCM whose trunk is the bundle's base */
    mope_train_config trunk;       /* shape of a new PCM (n_vocab: the tokenizer's) */
    mope_mix_rule rule;            /* new PCM's rule */
    int64_t iterations;
    int batch;                     /* (prompt, preference) items per iteration */
    int epochs;                    /* REBEL updates per batch */
    int micro_batch;               /* pairs per PCM forward */
    double eta, kl_coef, length_penalty;
    double kl_prior;               /* >= 0: KL(q || w) toward uniform weights over each preference's
                                      experts (the warm start's target), mope/rebel.h */
    int64_t warm_steps;            /* supervised updates before REBEL toward uniform weights over the
                                      experts of each preference (0: none; skipped when resuming) */
    float warm_lr;                 /* their peak learning rate (<= 0: 1e-3) */
    int warm_batch;                /* sequences per warm-start update (<= 0: 2 * batch) */
    double warm_best;              /* 0: the warm start's (and kl_prior's) target is uniform over each
                                      preference's experts.  In (0, 1]: each of those experts first
                                      answers warm_best_prompts training prompts alone, its answers are
                                      scored as REBEL scores rollouts, and the target puts this share on
                                      the best of them and spreads the rest over the others */
    int warm_best_prompts;         /* prompts per (preference, expert) measurement (capped at 2 * batch) */
    mope_adamw_config adamw;       /* total_steps <= 0: iterations * epochs */
    double explore;                /* [0, 1]: share of items whose second rollout is steered
                                      (mope_rollout_explore): an expert drawn uniformly among those
                                      serving the item's preference writes the opening sentence (at
                                      most explore_head tokens), a closing sentence (at most
                                      explore_tail tokens from where the mixture would end), or both,
                                      drawn uniformly among those whose length is not 0.
                                      0: off (no rng draws: runs are as before) */
    int explore_head, explore_tail;
    int max_tokens;                /* response length limit */
    float temperature;             /* sampling temperature (no other filter) */
    bool skip_missing_refs;        /* else generate them (greedy base) and cache */
    const char *ref_cache;         /* NULL: OUT.refs.jsonl */
    uint64_t seed;
    int n_threads;                 /* <= 0: one per CPU */
    const char *out;               /* the trained PCM (required) */
    const char *log;               /* JSONL log, or NULL */
    const char *checkpoint;        /* NULL: OUT.ckpt */
    int64_t checkpoint_every;      /* iterations; 0: never */
    bool resume;                   /* continue from the checkpoint when it exists */
    int64_t stop_at;               /* > 0: stop after this iteration, writing the checkpoint and no
                                      output (a run in slices; resume continues it) */
    bool update_bundle;            /* write out's path into the bundle manifest */
    mope_pcm_train_progress_fn progress;
    void *progress_user;
} mope_pcm_train_opts;

/* PCM 128 wide, 2 layers, 4 heads, 2 KV heads, FFN 344, context 512;
 * linear; 20 iterations of batch 8, 4 epochs, micro-batch 8; eta 1, no KL,
 * no length penalty; no exploration (head 12, tail 16 tokens when on); AdamW lr 1e-4 (min 1e-5), weight decay 0, clip 1;
 * 48 tokens, temperature 1; seed 42. */
void mope_pcm_train_opts_init(mope_pcm_train_opts *o);

typedef struct mope_pcm_train_result {
    int64_t start_iteration, iterations_done;
    bool resumed, stopped;
    int n_prompts;                 /* used (with a reference) */
    int n_prefs;
    int n_skipped;                 /* prompts skipped for want of a reference */
    int n_refs_generated;          /* references generated by this run */
    int n_refs_cached;             /* references read from the cache */
    double final_utility;          /* mean utility of the last batch */
    double warm_loss_first, warm_loss_last; /* warm start: KL(target || weights) of the first and last
                                               update (NaN without a warm start) */
    double warm_mass;              /* warm start: mean weight on the preference's experts, last update */
} mope_pcm_train_result;

int mope_pcm_train_run(const mope_pcm_train_opts *o, mope_pcm_train_result *res, mope_error *err);

/* ---- pieces (exposed for tests and the CLI) ---- */

/* Parses a preference list against the bundle: combinations separated by
 * ';', choice ids in one by ',' (spaces ignored), at most one choice per
 * dimension, no repeated combination.  NULL or "" = every combination of
 * one choice per dimension, in the bundle's order (the first dimension
 * varies slowest).  *out gets n_prefs x n_dimensions choice indices (-1 for
 * a dimension a combination leaves out; malloc'd, free()). */
int mope_pcm_train_parse_prefs(const mope_bundle *b, const char *spec, int **out, int *n_prefs, mope_error *err);
/* "P1A+P2B+P3A": the ids of one parsed combination joined by '+'
 * (malloc'd). */
char *mope_pcm_train_pref_name(const mope_bundle *b, const int *combo, mope_error *err);
/* The PCM's preference text: the choices' sentences joined by one space. */
char *mope_pcm_train_pref_text(const mope_bundle *b, const int *combo, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
