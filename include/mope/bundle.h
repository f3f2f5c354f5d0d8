/* Bundles: a JSON manifest that names everything a mixture needs -- the
 * tokenizer, the chat template, the base model, the experts (each with the
 * preference choice it serves), one reward model per choice, the reference
 * responses for the Bradley-Terry normalisation, the preference texts, and
 * optionally a PCM and a multitask model (DESIGN.md §3).  Every command that
 * needs experts takes a bundle instead of a list of files.
 *
 * Format (version 1; relative paths are relative to the manifest's folder):
 *
 *   {
 *     "format": "mope-bundle", "version": 1,
 *     "name": "prefbench",
 *     "tokenizer": "tokenizer.gguf",
 *     "template": "tulu",                       (a mope_chat_template name)
 *     "prompt_format": "<|user|>\n{instruction} {preference sentences}\n<|assistant|>\n",
 *     "base": "base.gguf",
 *     "preferences": {"dimensions": [
 *        {"id": "P1", "name": "expertise", "choices": [
 *           {"id": "P1A", "name": "elementary", "text": "Generate a response ..."}, ...]}, ...]},
 *     "experts": [
 *        {"id": "P1A", "choice": "P1A", "dimension": "P1",
 *         "adapter": "experts/P1A.gguf",       (a LoRA over "base") ... or
 *         "model": "experts/P1A.gguf",         (a full model; exactly one of the two)
 *         "preference_text": "Generate a response ..."}, ...],
 *     "reward_models": [{"choice": "P1A", "path": "rm/P1A.gguf"}, ...],
 *     "references": "references.jsonl",
 *     "pcm": "pcm.gguf",                        (optional, may be null)
 *     "multitask": "multitask.gguf",            (optional, may be null)
 *     "info": {...}                             (optional, free-form, ignored)
 *   }
 *
 * "prompt_format" is informative (how the preference sentences join the
 * instruction: mope_bundle_prompt does it).  "dimension" and
 * "preference_text" of an expert are optional; when given they must agree
 * with the preferences (the text may differ: it is what the expert was
 * trained with).  Unknown keys are errors, so a misspelt key is caught.
 *
 * The loader checks types, required fields, that every choice id is
 * declared once, that experts have distinct ids and known choices, that
 * reward models name known choices at most once, and (unless told not to)
 * that every named file exists and is readable.  Each error names the field
 * ("experts[2].choice: unknown choice \"P4A\" (known: P1A ...)"). */
#ifndef MOPE_BUNDLE_H
#define MOPE_BUNDLE_H

#include "mope/chat.h"
#include "mope/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOPE_BUNDLE_FORMAT "mope-bundle"
#define MOPE_BUNDLE_VERSION 1

typedef struct mope_bundle_choice {
    char *id;        /* "P1A" */
    char *name;      /* "elementary" (may be NULL) */
    char *text;      /* the preference sentence */
    int dimension;   /* index into dimensions */
} mope_bundle_choice;

typedef struct mope_bundle_dimension {
    char *id;        /* "P1" */
    char *name;      /* "expertise" (may be NULL) */
    int first_choice, n_choices; /* its choices are choices[first .. first + n) */
} mope_bundle_dimension;

typedef struct mope_bundle_expert {
    char *id;
    char *choice;          /* a choice id */
    int choice_index;      /* index into choices */
    char *adapter;         /* LoRA adapter over the base (resolved path), or NULL */
    char *model;           /* full model (resolved path), or NULL */
    char *preference_text; /* NULL: the choice's text */
} mope_bundle_expert;

typedef struct mope_bundle_reward {
    char *choice;
    int choice_index;
    char *path;            /* resolved */
} mope_bundle_reward;

typedef struct mope_bundle {
    char *dir;             /* folder relative paths were resolved against ("." for none) */
    char *name;
    char *tokenizer;       /* resolved paths; NULL when absent */
    mope_chat_template template_id;
    char *prompt_format;   /* may be NULL */
    char *base;
    int n_dimensions;
    mope_bundle_dimension *dimensions;
    int n_choices;
    mope_bundle_choice *choices;
    int n_experts;
    mope_bundle_expert *experts;
    int n_rewards;
    mope_bundle_reward *rewards;
    char *references;
    char *pcm;             /* optional */
    char *multitask;       /* optional */
    char *info_json;       /* the "info" object as compact JSON, or NULL */
} mope_bundle;

enum {
    /* Do not check that the named files exist (parsing / tests). */
    MOPE_BUNDLE_NO_FILE_CHECK = 1,
};

/* Reads and validates a manifest; relative paths are resolved against the
 * manifest's folder. */
mope_bundle *mope_bundle_load(const char *path, int flags, mope_error *err);
/* Same from a buffer; dir (NULL = ".") is the folder for relative paths,
 * name is used in messages. */
mope_bundle *mope_bundle_parse(const char *json, size_t len, const char *dir, const char *name, int flags,
                               mope_error *err);
void mope_bundle_free(mope_bundle *b);

/* Checks a bundle built in memory the way the loader checks a file
 * (flags as above). */
int mope_bundle_validate(const mope_bundle *b, int flags, mope_error *err);

/* Writes b as a manifest at path (atomically).  Paths inside path's folder
 * are written relative to it, others as they are.  b is validated first
 * (with flags). */
int mope_bundle_save(const mope_bundle *b, const char *path, int flags, mope_error *err);

/* Lookups: index, or -1 when absent. */
int mope_bundle_choice_index(const mope_bundle *b, const char *choice_id);
int mope_bundle_find_expert(const mope_bundle *b, const char *expert_id_or_choice);
int mope_bundle_find_reward(const mope_bundle *b, const char *choice_id);

/* The user turn for a preference, as Personalized Soups builds it: the
 * instruction, then the chosen choices' sentences, each after one space
 * (choices given by id; n = 0 gives the instruction alone).  Malloc'd;
 * NULL (err set) for an unknown choice or two choices of one dimension. */
char *mope_bundle_prompt(const mope_bundle *b, const char *instruction, const char *const *choice_ids, int n,
                         mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
