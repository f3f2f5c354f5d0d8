/* Generation methods over a bundle (DESIGN.md §1 "Baselines"): one runner
 * that loads a bundle's models once and generates a response for
 * (method, preference, prompt) through one code path, so MoPE and every
 * baseline are sampled the same way (same sampler chain, same stopping
 * rules, same top-k black-box option).  Used by `mope generate --bundle`
 * and by the evaluation command.
 *
 * Methods (mope_method_parse names):
 *   mope         PCM weights at every token over the experts the PCM file
 *                lists (mapped to the bundle's experts by id or choice),
 *                mixed under the PCM's rule.  The PCM reads the preference
 *                text (choice sentences or free text).  Needs a PCM in the
 *                bundle.
 *   prompt       the base model, the preference sentences appended to the
 *                instruction (free text accepted).
 *   soup         Personalized Soups: the chosen experts' LoRA adapters
 *                averaged (MOPE_LORA_AVG_AB by default, as the paper's
 *                authors did; or AVG_DELTA), prompted like `prompt`.
 *   uniform      fixed equal weights over the chosen experts, linear rule.
 *   uniform-geo  the same, geometric rule.
 *   expert:ID    one expert (id or choice id) with its own prompt format;
 *                ignores the preference.
 *   multitask    the bundle's multitask model, prompted like `prompt`.
 *   base         the base model with the plain instruction (no preference).
 *
 * Preferences: either a list of choice ids ("P1A,P2B,P3A"; validated against
 * the bundle, at most one per dimension) or free text.  For choice ids the
 * chosen experts are the experts serving those choices and the preference
 * text is their sentences joined by a space (mope_bundle_prompt).  soup and
 * uniform* need choice ids (free text is an error); mope / prompt /
 * multitask take either.
 *
 * Every expert sees its own prompt (instruction + its own preference
 * sentence, in the bundle's chat template); the response tokens are shared.
 * The mixture loop is the rollout loop of src/rl/rollout.c
 * (mope_rollout_generate_ex): fixed weights for the baselines, the PCM for
 * mope.
 *
 * A response ends at an end-of-generation token (kept in the tokens, not in
 * the text), when the chat template's end marker (tulu: "<|user|>") is
 * sampled as one token (likewise) or shows up in the text (cut there), at
 * max_tokens, or when a model's or the PCM's context is full.  Soups are
 * built on first use and kept (a few, keyed by choices and mode).
 *
 * Threading: a runner is used by one thread at a time. */
#ifndef MOPE_METHOD_H
#define MOPE_METHOD_H

#include "mope/bundle.h"
#include "mope/core.h"
#include "mope/lora.h"
#include "mope/mix.h"
#include "mope/sampler.h"
#include "mope/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mope_method_kind {
    MOPE_METHOD_MOPE = 0,
    MOPE_METHOD_PROMPT = 1,
    MOPE_METHOD_SOUP = 2,
    MOPE_METHOD_UNIFORM = 3,
    MOPE_METHOD_UNIFORM_GEO = 4,
    MOPE_METHOD_EXPERT = 5,
    MOPE_METHOD_MULTITASK = 6,
    MOPE_METHOD_BASE = 7,
} mope_method_kind;

#define MOPE_METHOD_ID_MAX 64

typedef struct mope_method {
    mope_method_kind kind;
    char expert[MOPE_METHOD_ID_MAX]; /* MOPE_METHOD_EXPERT: the expert id or choice id */
    mope_lora_avg_mode soup_mode;    /* MOPE_METHOD_SOUP: AVG_AB (default) or AVG_DELTA */
} mope_method;

/* "mope" | "prompt" | "soup" | "uniform" | "uniform-geo" | "expert:ID" |
 * "multitask" | "base" (case-sensitive; "soup-delta" selects the AVG_DELTA
 * soup).  The expert id is not checked against a bundle here (the runner
 * does).  Returns 0 or MOPE_EINVAL naming the known methods. */
int mope_method_parse(const char *s, mope_method *out, mope_error *err);
/* The method's name as mope_method_parse reads it ("expert:P2A"), into
 * buf[cap]; returns buf. */
const char *mope_method_name(const mope_method *m, char *buf, size_t cap);

/* ---- preferences ---- */
typedef struct mope_pref {
    int n_choices;            /* 0 for free text or an empty preference */
    int *choices;             /* n_choices indices into bundle->choices, in the order given */
    char *text;               /* the preference text: the sentences joined, or the free text as given ("" when empty) */
    bool free_text;           /* not a list of choice ids */
} mope_pref;

/* Parses s against bundle b.  s is a list of choice ids when it is a comma-
 * separated list of single words that are all known choice ids or that
 * look like ids (letters and digits with at least one digit, e.g. "P4A");
 * such a list with an unknown id or two choices of one dimension is an
 * error naming the known choices.  Anything else is free text (s NULL or
 * blank: the empty preference).  out is freed with mope_pref_free (also
 * safe after a failure). */
int mope_pref_parse(const mope_bundle *b, const char *s, mope_pref *out, mope_error *err);
void mope_pref_free(mope_pref *p);

/* ---- runner ---- */
typedef struct mope_runner mope_runner;

typedef struct mope_runner_opts {
    int n_threads;   /* threads of the runner's pool; 0: all CPUs (ignored when pool is given) */
    mope_pool *pool; /* borrowed, or NULL for the runner's own */
    int max_batch;   /* prompts generated together in one batch (sequences per expert); default 4 */
    int n_ctx;       /* positions per sequence; 0: the base model's training context */
} mope_runner_opts;

void mope_runner_opts_init(mope_runner_opts *o);

/* Loads the bundle's tokenizer (the bundle's, else the base's), base model,
 * experts (LoRA adapters attached to the base and run as one group; full
 * models as separate local experts) and PCM when present.  The multitask
 * model is loaded the first time it is used.  b is borrowed and must outlive
 * the runner. */
mope_runner *mope_runner_new(const mope_bundle *b, const mope_runner_opts *o, mope_error *err);
/* Same from a manifest path (the runner owns the bundle). */
mope_runner *mope_runner_load(const char *bundle_path, const mope_runner_opts *o, mope_error *err);
void mope_runner_free(mope_runner *r);

const mope_bundle *mope_runner_bundle(const mope_runner *r);
bool mope_runner_has_pcm(const mope_runner *r);
int32_t mope_runner_n_vocab(const mope_runner *r);
/* The tokenizer every model of the bundle shares (owned by the runner). */
const mope_tokenizer *mope_runner_tokenizer(const mope_runner *r);

/* Sampling and decoding options of one generate call. */
typedef struct mope_gen_opts {
    mope_sampler_params sampler; /* default: mope_sampler_default_params() */
    int max_tokens;              /* response length limit (>= 1); default 128 */
    int topk;                    /* 0: exact (full distributions); K >= 1: every source is wrapped in the
                                    black-box top-K view and mixed in top-k mode */
    float min_weight;            /* an expert under this weight at a step is not run for it (the others'
                                    weights renormalised; the mixture moves by at most the skipped weight
                                    in total variation): see mope_rollout_opts.  0: exact; default 0.01 */
    bool want_logp;              /* fill mope_method_result.logp (default false: for the geometric rule it
                                    costs a pass over the vocabulary per token) */
} mope_gen_opts;

void mope_gen_opts_init(mope_gen_opts *o);

/* Reported for every sampled token (and once more at the end of each row
 * with id = -1 and the decoder's remaining bytes). */
typedef struct mope_method_token {
    int row;                 /* index of the prompt in the batch */
    int index;               /* position in the response (0-based); n_tokens for the final call */
    int32_t id;              /* the token, or -1 for the final call */
    const char *text;        /* the bytes this token completes (streaming detokeniser; may be empty, not
                                NUL-terminated), empty for an end-of-generation token */
    size_t len;
    bool eog;                /* an end-of-generation token (ends the row; not part of the text) */
    int K;                   /* sources mixed (0 in the final call) */
    const float *weights;    /* K weights used for this token, normalised to sum 1 */
    const char *const *names; /* K source names: expert ids, or "base" / "soup" / "multitask" */
} mope_method_token;

/* Returns 0 to continue; a negative code aborts the whole call with it. */
typedef int (*mope_method_token_fn)(void *user, const mope_method_token *t);

typedef struct mope_method_result {
    char *text;              /* the response text (no end-of-generation token), malloc'd */
    int32_t *tokens;         /* the response token ids, an ending end-of-generation token included */
    int n_tokens;
    bool eog;                /* ended by an end-of-generation token */
    bool truncated;          /* hit max_tokens (or the context) first */
    double logp;             /* log-probability of the tokens under the untempered mixture (0 unless
                                mope_gen_opts.want_logp) */
    int K;
    char **names;            /* K source names (as in mope_method_token) */
    float *mean_weights;     /* K weights averaged over the response tokens */
} mope_method_result;

void mope_method_result_free(mope_method_result *res);

/* Generates one response.  pref: as mope_pref_parse reads it (NULL = none).
 * cb (may be NULL) is called per token.  out is filled (free it with
 * mope_method_result_free, also after a failure). */
int mope_runner_generate(mope_runner *r, const mope_method *m, const char *pref, const char *prompt,
                         const mope_gen_opts *g, mope_method_token_fn cb, void *user, mope_method_result *out,
                         mope_error *err);
/* n prompts (n >= 1) with one method and one preference, generated in
 * batches of up to max_batch rows: every decode step is one forward per
 * model for all rows.  Each row has its own sampler seeded with
 * g->sampler.seed + i, so row i's random draws do not depend on the
 * other rows (row 0 draws like mope_runner_generate; logits may still differ
 * in rounding, as the engine picks kernels by row count).  out[n]. */
int mope_runner_generate_batch(mope_runner *r, const mope_method *m, const char *pref, int n,
                               const char *const *prompts, const mope_gen_opts *g, mope_method_token_fn cb,
                               void *user, mope_method_result *out, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
