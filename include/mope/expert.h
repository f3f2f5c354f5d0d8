/* Experts: anything that, for a number of independent sequences, takes a
 * user instruction and then the shared response tokens one step at a time,
 * and reports its next-token distribution (DESIGN.md §1, §4, §6).
 *
 * One interface (a vtable, so remote HTTP experts can be added later) with
 * three implementations here:
 *  - local:    a full mope_model (owned or shared) with its own KV cache
 *              slots and its own prompt: a chat template plus the expert's
 *              preference sentence, appended to the instruction ("<|user|>\n
 *              {instruction} {preference}\n<|assistant|>\n" for tulu), so
 *              one instruction is tokenised differently per expert while the
 *              response tokens are common to all;
 *  - blackbox: wraps any expert and exposes only its top-k (token, logprob)
 *              pairs, as an API-only model would; mixing then runs in top-k
 *              mode;
 *  - group:    K local experts over ONE model and one KV cache: the
 *              queued rows of every member and sequence go through one
 *              mope_model_forward call per decode step (long prefills in
 *              calls of <= 512 rows), so K experts cost about one model
 *              pass per step.  Each member's rows carry its configured
 *              adapter id (-1 = the base; or a LoRA adapter attached to
 *              the model with mope_model_add_adapter, include/mope/lora.h),
 *              so LoRA experts of one base share its weights in that call.
 *
 * Evaluation is lazy: start/feed only queue tokens; `next` runs the model.
 * For a group member, `next` evaluates the queued tokens of all members and
 * sequences at once, so the natural loop -- feed the chosen token to every
 * expert, then ask every expert for its distribution -- is batched without
 * the caller doing anything special.
 *
 * Threading: an expert (and a group) is used by one thread at a time. */
#ifndef MOPE_EXPERT_H
#define MOPE_EXPERT_H

#include "mope/chat.h"
#include "mope/core.h"
#include "mope/mix.h"
#include "mope/model.h"
#include "mope/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mope_expert mope_expert;

typedef struct mope_expert_ops {
    /* Empties sequence seq and queues the expert's own prompt for
     * `instruction` (formatted and tokenised by the expert). */
    int (*start)(mope_expert *e, int seq, const char *instruction, mope_error *err);
    /* Queues n response tokens (n >= 1) after what seq holds. */
    int (*feed)(mope_expert *e, int seq, const int32_t *tokens, int n, mope_error *err);
    /* The next-token distribution after everything queued for seq: a FULL
     * dist (logits owned by the expert, valid until the next start / feed /
     * reset of seq) or a TOPK dist.  Fails when nothing was ever queued. */
    int (*next)(mope_expert *e, int seq, mope_dist *out, mope_error *err);
    /* Forgets sequence seq entirely. */
    void (*reset)(mope_expert *e, int seq);
    /* Writes the token ids of the expert's prompt for instruction into a
     * malloc'd array (*out; free() it) and returns their count, or a
     * negative code (NULL op: the expert has no local tokenisation). */
    int (*prompt_tokens)(mope_expert *e, const char *instruction, int32_t **out, mope_error *err);
    void (*destroy)(mope_expert *e);
} mope_expert_ops;

/* The common head of every implementation (which embeds it first). */
struct mope_expert {
    const mope_expert_ops *ops;
    int32_t n_vocab;
    int n_seq;          /* sequences 0..n_seq-1 */
    char name[64];
};

/* Dispatchers: check seq and arguments, then call the op. */
int mope_expert_start(mope_expert *e, int seq, const char *instruction, mope_error *err);
int mope_expert_feed(mope_expert *e, int seq, const int32_t *tokens, int n, mope_error *err);
int mope_expert_next(mope_expert *e, int seq, mope_dist *out, mope_error *err);
void mope_expert_reset(mope_expert *e, int seq);
int mope_expert_prompt_tokens(mope_expert *e, const char *instruction, int32_t **out, mope_error *err);
void mope_expert_free(mope_expert *e);
const char *mope_expert_name(const mope_expert *e);

/* ---- local experts (src/mix/expert_local.c) ---- */
typedef struct mope_expert_config {
    const char *name;              /* for messages; NULL: "expert" */
    mope_chat_template chat;       /* prompt template (MOPE_CHAT_TULU for Personalized Soups) */
    const char *preference;        /* sentence appended to the instruction after a space; NULL / "": none */
    const char *system;            /* system message; NULL / "": none */
    int adapter;                   /* row adapter id: -1 = base model, else an id from mope_model_add_adapter */
    int n_seq;                     /* sequences (>= 1) */
    int n_ctx;                     /* positions per sequence; 0: the model's training context */
    const mope_tokenizer *tokenizer; /* borrowed; NULL: read from the model file and owned */
    mope_pool *pool;               /* borrowed, for the forward pass; NULL: calling thread */
} mope_expert_config;

/* Tulu template, adapter -1, one sequence, the model's context, the rest
 * NULL. */
void mope_expert_config_init(mope_expert_config *c);

/* A local expert over a borrowed model (which must outlive it); it owns
 * its KV cache. */
mope_expert *mope_expert_local_new(mope_model *m, const mope_expert_config *c, mope_error *err);
/* Same, loading the model from path and owning it. */
mope_expert *mope_expert_local_load(const char *path, const mope_expert_config *c, mope_error *err);

/* ---- black-box view (src/mix/expert_blackbox.c) ---- */
/* Wraps inner (borrowed, must outlive the view) and reports only the k most
 * probable tokens with their log-probabilities (ties: lower id first).
 * start / feed / reset go to inner, so do not drive inner separately. */
mope_expert *mope_expert_blackbox_new(mope_expert *inner, int k, mope_error *err);

/* ---- groups of experts sharing one model (src/mix/expert_group.c) ---- */
typedef struct mope_expert_group mope_expert_group;

/* K experts over the borrowed model m, configured by cfgs[K] (each its own
 * prompt, preference and adapter; n_seq and n_ctx must agree across them;
 * tokenizer and pool are taken from cfgs[0]).  One KV cache with K * n_seq
 * slots is shared. */
mope_expert_group *mope_expert_group_new(mope_model *m, const mope_expert_config *cfgs, int K, mope_error *err);
void mope_expert_group_free(mope_expert_group *g);
int mope_expert_group_size(const mope_expert_group *g);
/* Member i (owned by the group: do not mope_expert_free it). */
mope_expert *mope_expert_group_member(mope_expert_group *g, int i);
/* Runs every queued token of every member and sequence through the model
 * (a no-op when nothing is queued); members' next() call this.  A decode
 * step is one forward call.  Large prefills are split into calls of at most
 * 512 rows, cut at sequence boundaries where possible, so each sequence's
 * prompt goes through the same kernels as it would alone (the engine picks
 * dot or GEMM kernels by row count, and they round differently): a group
 * member's logits then equal a standalone expert's (bit for bit for
 * base-model experts in the tests; the engine does not promise it).  On an
 * error every touched sequence is rolled back and the queues are kept. */
int mope_expert_group_eval(mope_expert_group *g, mope_error *err);
/* Rows run by the last eval that had work (for tests and statistics). */
int mope_expert_group_last_rows(const mope_expert_group *g);
/* mope_model_forward calls made so far. */
int64_t mope_expert_group_n_forward(const mope_expert_group *g);

#ifdef __cplusplus
}
#endif
#endif
