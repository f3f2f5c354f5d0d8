/* mope prefbench: the built-in preference benchmark (DESIGN.md §5).
 *
 * Three parts:
 *  - a reader for the WordNet 3.0 noun database (Debian package wordnet-base),
 *  - the corpus builder: concept questions in many phrasings and answers in
 *    the neutral style and in each of the six preference choices, composed
 *    from each concept's real WordNet facts, written as JSONL,
 *  - the labelers that stand in for GPT-4 annotators: readability (P1),
 *    informativeness (P2) and friendliness (P3), and a combined utility.
 * The file formats and score conventions are documented in docs/PREFBENCH.md. */
#ifndef MOPE_PREFBENCH_H
#define MOPE_PREFBENCH_H

#include "mope/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOPE_PREFBENCH_WORDNET_DIR "/usr/share/wordnet"

/* ------------------------------------------------------------------ */
/* WordNet                                                             */
/* ------------------------------------------------------------------ */

typedef enum mope_wn_ptr_kind {
    MOPE_WN_HYPERNYM = 0,          /* @  */
    MOPE_WN_INSTANCE_HYPERNYM,     /* @i */
    MOPE_WN_HYPONYM,               /* ~  */
    MOPE_WN_INSTANCE_HYPONYM,      /* ~i */
    MOPE_WN_PART_MERONYM,          /* %p: has part */
    MOPE_WN_MEMBER_MERONYM,        /* %m: has member */
    MOPE_WN_SUBSTANCE_MERONYM,     /* %s: made of */
    MOPE_WN_PART_HOLONYM,          /* #p: is part of */
    MOPE_WN_MEMBER_HOLONYM,        /* #m: is member of */
    MOPE_WN_SUBSTANCE_HOLONYM,     /* #s: is substance of */
    MOPE_WN_DOMAIN_TOPIC,          /* ;c */
    MOPE_WN_DOMAIN_TOPIC_MEMBER,   /* -c */
    MOPE_WN_PTR_KIND_COUNT
} mope_wn_ptr_kind;

typedef struct mope_wn_pointer {
    int32_t kind;   /* mope_wn_ptr_kind */
    int32_t target; /* synset index (noun pointers only are kept) */
} mope_wn_pointer;

typedef struct mope_wn_synset {
    uint32_t offset;            /* byte offset in data.noun (WordNet's id) */
    int lexfile;                /* 3..28 for nouns, see mope_wordnet_lexname */
    int n_lemmas;
    const char *const *lemmas;  /* underscores turned into spaces, case kept */
    const char *definition;     /* gloss without the quoted examples */
    int n_examples;
    const char *const *examples; /* quoted example sentences, quotes removed */
    int n_ptrs;
    const mope_wn_pointer *ptrs;
    int tag_count;              /* sum of the cntlist tag counts of its lemmas */
} mope_wn_synset;

typedef struct mope_wordnet mope_wordnet;

/* Loads data.noun, index.noun, cntlist.rev and the *.exc files from dir
 * (NULL: MOPE_PREFBENCH_WORDNET_DIR).  A malformed line is an error that
 * names the file and line number. */
mope_wordnet *mope_wordnet_load(const char *dir, mope_error *err);
void mope_wordnet_free(mope_wordnet *wn);

int mope_wordnet_n_synsets(const mope_wordnet *wn);
const mope_wn_synset *mope_wordnet_synset(const mope_wordnet *wn, int index);
/* Synset index for a data.noun offset, or -1. */
int mope_wordnet_find_offset(const mope_wordnet *wn, uint32_t offset);
/* Noun senses of a lemma (case-insensitive, '_' or ' ' between words), in
 * WordNet's frequency order.  Returns the number of senses (0 if unknown);
 * *synsets and *counts (cntlist tag count per sense) may be NULL. */
int mope_wordnet_senses(const mope_wordnet *wn, const char *lemma, const int32_t **synsets,
                        const int32_t **counts);
/* Number of index.noun lemmas; lemma i (lowercase, spaces) for enumeration. */
int mope_wordnet_n_lemmas(const mope_wordnet *wn);
const char *mope_wordnet_lemma(const mope_wordnet *wn, int i);
/* "noun.artifact" etc. for a lexfile number, "" when out of range. */
const char *mope_wordnet_lexname(int lexfile);
/* Sum of cntlist tag counts of a word in any part of speech, after reducing
 * inflections (WordNet's exception lists and suffix rules).  0 when the word
 * is not tagged anywhere; case-insensitive. */
int mope_wordnet_word_count(const mope_wordnet *wn, const char *word);
/* Irregular plural from noun.exc for a base noun, or NULL. */
const char *mope_wordnet_irregular_plural(const mope_wordnet *wn, const char *base);

/* ------------------------------------------------------------------ */
/* English helpers                                                     */
/* ------------------------------------------------------------------ */

/* Writes the plural of a noun (multi-word: the head word) into out.
 * wn may be NULL (rules only).  Returns the length, or a negative error when
 * out is too small. */
int mope_prefbench_plural(const mope_wordnet *wn, const char *noun, char *out, size_t cap);
/* "a" or "an" for a following word. */
const char *mope_prefbench_article(const char *word);
/* Syllables of one word (letters only are looked at; >= 1 for a word). */
int mope_prefbench_syllables(const char *word);

typedef struct mope_prefbench_text_stats {
    int sentences;
    int words;
    int syllables;
    double fk_grade; /* 0.39 w/s + 11.8 syl/w - 15.59; 0 for no words */
} mope_prefbench_text_stats;
void mope_prefbench_text_stats_compute(const char *text, mope_prefbench_text_stats *st);

/* ------------------------------------------------------------------ */
/* Corpus                                                              */
/* ------------------------------------------------------------------ */

/* Bumped whenever the answer wording changes (the recipe's corpus stamp
 * includes it).  2: fuller neutral style, plainer elementary style. */
#define MOPE_PREFBENCH_COMPOSE_VERSION 2

typedef struct mope_prefbench_corpus_opts {
    const char *wordnet_dir;  /* NULL: MOPE_PREFBENCH_WORDNET_DIR */
    const char *out_dir;      /* created if missing */
    uint64_t seed;            /* wording choices; the split does not depend on it */
    int max_concepts;         /* 0: default 24000 */
    int tiny;                 /* nonzero: 300 concepts (overrides max_concepts) */
    int variants;             /* answers per (concept, style); 0: default 2 */
} mope_prefbench_corpus_opts;

typedef struct mope_prefbench_corpus_stats {
    int concepts[3];   /* train, dev, test */
    long prompts[3];
    long responses[3];
    double seconds;
} mope_prefbench_corpus_stats;

enum { MOPE_PREFBENCH_TRAIN = 0, MOPE_PREFBENCH_DEV = 1, MOPE_PREFBENCH_TEST = 2 };
#define MOPE_PREFBENCH_N_PHRASINGS 16
#define MOPE_PREFBENCH_N_STYLES 7 /* neutral, P1A, P1B, P2A, P2B, P3A, P3B */

/* Style names in file order: "neutral", "P1A", "P1B", "P2A", "P2B", "P3A", "P3B". */
const char *mope_prefbench_style_name(int style);
/* Split of a concept lemma: a fixed hash of the lemma, independent of seed. */
int mope_prefbench_split_of(const char *concept);
const char *mope_prefbench_split_name(int split);

/* Writes {train,dev,test}_{prompts,responses}.jsonl into opts->out_dir
 * (each through a temporary name and rename).  stats may be NULL. */
int mope_prefbench_corpus_build(const mope_prefbench_corpus_opts *opts,
                                mope_prefbench_corpus_stats *stats, mope_error *err);
/* Same, with an already loaded WordNet (opts->wordnet_dir is ignored). */
int mope_prefbench_corpus_build_wn(const mope_wordnet *wn, const mope_prefbench_corpus_opts *opts,
                                   mope_prefbench_corpus_stats *stats, mope_error *err);

/* Phrasing i (0..MOPE_PREFBENCH_N_PHRASINGS-1) of the question about a
 * concept; mass nouns ("water") are asked without article and plural. */
int mope_prefbench_phrase(const mope_wordnet *wn, const char *concept, int mass, int i, char *out,
                          size_t cap);

/* Whether a concept reads as a mass noun ("What is water?") rather than a
 * count noun ("What is a glacier?"): WordNet does not say, so this looks at
 * the gloss (count-noun glosses start with "a"/"an"), the lexicographer file
 * and a few suffixes. */
int mope_prefbench_is_mass(const mope_wordnet *wn, int synset, const char *concept);

/* Composes the answer about synset `synset` named by `concept` in a style
 * (0 neutral, 1..6 = P1A..P3B) into out; rng drives the wording.  exclude
 * (may be NULL) marks synsets (by index) whose names must not be mentioned. */
int mope_prefbench_compose(const mope_wordnet *wn, int synset, const char *concept, int style,
                           mope_rng *rng, const unsigned char *exclude, char *out, size_t cap);

/* Puts an answer in a tone: tone 1 adds one of the friendly style's opening
 * sentences before it and one of its closing sentences after it, -1 the
 * unfriendly style's, 0 copies it.  Returns the length, MOPE_ERANGE when out
 * is too small, MOPE_EINVAL for a bad argument.  The recipe trains experts on
 * such answers so that each keeps its own dimension whatever tone the
 * response so far has taken (docs/PREFBENCH.md, "Experts that compose"). */
int mope_prefbench_tone_wrap(int tone, const char *answer, mope_rng *rng, char *out, size_t cap);

/* JSON string escaping (quotes included) into out; returns length or < 0
 * when out is too small. */
int mope_prefbench_json_escape(const char *s, char *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Labelers                                                            */
/* ------------------------------------------------------------------ */

/* Quality gate shared by all labelers: 1 for a complete, on-topic,
 * non-repetitive answer; towards 0 for empty, truncated, off-topic or
 * repetitive ones. */
typedef struct mope_prefbench_quality {
    double gate;       /* product of the factors below */
    int empty;
    int truncated;     /* ends mid-sentence */
    int on_topic;      /* names the concept, a synonym or its definition, or >= 2 of its facts */
    double repetition; /* share of repeated word trigrams (or of excess content-word reuse), 0..1 */
} mope_prefbench_quality;

typedef struct mope_prefbench_labels {
    mope_prefbench_quality q;
    /* P1 readability: higher = more expert (B-like). */
    double fk_grade;
    double rare_rate;   /* share of distinct content words with WordNet tag count < 3 */
    double expertise;   /* fk_grade + 20 * rare_rate */
    /* P2 informativeness: higher = more informative (B-like). */
    int words;
    double facts;       /* distinct facts of the concept conveyed */
    double novel;       /* distinct content words (repeats count once) */
    double informativeness; /* facts + 0.1 novel, scaled by the gate */
    /* P3 style: higher = friendlier (A-like), negative = hostile; times the gate. */
    double friendliness;
    /* utility in [0,1] of each choice P1A, P1B, P2A, P2B, P3A, P3B */
    double choice[6];
} mope_prefbench_labels;

typedef struct mope_prefbench_labeler mope_prefbench_labeler;

/* The labeler reads WordNet facts and word counts from wn, which must outlive
 * it (wn is not modified, so one labeler may be shared by threads). */
mope_prefbench_labeler *mope_prefbench_labeler_create(const mope_wordnet *wn, mope_error *err);
void mope_prefbench_labeler_free(mope_prefbench_labeler *lb);

/* Scores an answer to a prompt about concept.  The concept may be NULL: then
 * it is the longest run of up to 3 prompt words that is a WordNet noun (the
 * last one on ties), so "Tell me about glaciers." gives "glacier". */
int mope_prefbench_label(const mope_prefbench_labeler *lb, const char *answer, const char *prompt,
                         const char *concept, mope_prefbench_labels *out, mope_error *err);

/* 1 if w (lower case) is one of the labelers' function words, which the
 * rare-word rate skips. */
int mope_prefbench_is_stopword(const char *w);

/* The labels as a new JSON object (NULL when out of memory): words,
 * fk_grade, rare_rate, expertise, facts, novel, informativeness,
 * friendliness, empty, truncated, on_topic, repetition, gate, and "utility"
 * {"P1A": .., ..., "P3B": ..}.  The caller owns it (cJSON_Delete). */
typedef struct cJSON cJSON;
cJSON *mope_prefbench_labels_json(const mope_prefbench_labels *l);

/* Choice id "P1A".."P3B" -> 0..5, or -1. */
int mope_prefbench_choice_index(const char *id);
/* Mean utility over the given choices (ids like "P1A"); each is in [0,1]. */
int mope_prefbench_utility(const mope_prefbench_labeler *lb, const char *answer, const char *prompt,
                           const char *concept, const char *const *choices, int n_choices,
                           double *utility, mope_error *err);

/* ==================================================================== */
/* Recipe: `mope prefbench build` (src/prefbench/recipe*.c)              */
/* Trains the whole PrefBench model zoo from scratch on the CPU: corpus, */
/* tokenizer, base model (pretraining + Tulu-format SFT), six expert     */
/* LoRA adapters, six reward models, reference responses, the sanity     */
/* evaluation, bundle.json and MODEL_CARD.md (docs/PREFBENCH.md,         */
/* "Recipe").  Each stage is skipped when its stamp (a hash of its       */
/* options and of every earlier stage) matches and its outputs exist.    */
/* ==================================================================== */

typedef void (*mope_prefbench_log_fn)(void *user, const char *line);

typedef struct mope_prefbench_recipe_opts {
    const char *out_dir;      /* committed outputs; NULL: "models/prefbench" */
    const char *work_dir;     /* intermediates; NULL: out_dir + ".work" */
    const char *wordnet_dir;  /* NULL: MOPE_PREFBENCH_WORDNET_DIR */
    uint64_t seed;            /* every seed derives from it; 0 = 1 */
    int tiny;                 /* nonzero: micro version (tests, a few minutes) */
    int n_threads;            /* <= 0: one per CPU */
    int force;                /* rebuild every stage, ignoring stamps */
    const char *until;        /* stop after this stage (NULL: all) */
    int full_experts;         /* experts as fully fine-tuned models instead of LoRA */
    int single_style_experts; /* expert data without tones (see mope_prefbench_tone_wrap) */
    int max_concepts;         /* > 0: concepts in the corpus instead of the recipe's (6000 full, 300 tiny) */
    mope_prefbench_log_fn log; /* progress lines (NULL: silent) */
    void *log_user;
} mope_prefbench_recipe_opts;

/* Stage names in order (NULL past the end). */
const char *mope_prefbench_recipe_stage(int i);

int mope_prefbench_recipe_build(const mope_prefbench_recipe_opts *opts, mope_error *err);
/* ==== end of recipe ================================================== */

#ifdef __cplusplus
}
#endif
#endif
