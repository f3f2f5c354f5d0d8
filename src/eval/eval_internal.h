/* Internals of the evaluation run shared by src/eval/eval_run*.c and
 * eval_io.c (not part of the public API). */
#ifndef MOPE_EVAL_INTERNAL_H
#define MOPE_EVAL_INTERNAL_H

#include "mope/eval.h"

typedef struct eval_prompt {
    char *id, *prompt, *concept; /* concept may be NULL */
} eval_prompt;

typedef struct eval_ref {
    char *prompt, *concept, *response, *split; /* concept / split may be NULL */
} eval_ref;

/* A generation record read back from generations.jsonl. */
typedef struct eval_record {
    char *id, *preference, *method, *settings, *models; /* models: the bundle's fingerprint (may be NULL) */
    double u_lab, u_rm;      /* NaN when absent (null) */
    int K, T;                /* token weights: K sources over T tokens (0 when absent) */
    char **names;            /* K */
    float *weights;          /* T * K */
} eval_record;

/* Reads a prompts JSONL ({"id","prompt"[,"concept"]}); ids default to
 * "line-N" and must be distinct.  max > 0 keeps the first max. */
int eval_prompts_read(const char *path, int max, eval_prompt **out, int *n, mope_error *err);
void eval_prompts_free(eval_prompt *p, int n);

/* Reads a references JSONL ({"prompt","response"[,"concept","split"]}). */
int eval_refs_read(const char *path, eval_ref **out, int *n, mope_error *err);
void eval_refs_free(eval_ref *r, int n);
/* The reference response for a prompt: the same prompt text, else the same
 * concept (test split first), else NULL. */
const eval_ref *eval_ref_find(const eval_ref *r, int n, const char *prompt, const char *concept);

/* Reads the records of an existing generations.jsonl (a missing file is 0
 * records).  A last line cut short by a crash is dropped (*dropped = 1);
 * any other malformed line is an error naming it. */
int eval_records_read(const char *path, eval_record **out, int *n, int *dropped, mope_error *err);
void eval_records_free(eval_record *r, int n);

/* Name of a combination from choice ids ("P1A+P2B"), the runner's
 * preference string ("P1A,P2B"). */
int eval_join(const char *const *ids, int n, char sep, char *out, size_t cap);

#endif
