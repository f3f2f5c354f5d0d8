/* The runner's state, shared by method_runner.c (loading) and method_gen.c
 * (generation). */
#ifndef MOPE_METHOD_INTERNAL_H
#define MOPE_METHOD_INTERNAL_H

#include "mope/expert.h"
#include "mope/lora.h"
#include "mope/method.h"
#include "mope/model.h"
#include "mope/pcm.h"
#include "mope/tokenizer.h"

/* Soups are kept between calls (an evaluation asks for the same few
 * combinations over many prompts), keyed by choices and averaging mode. */
#define METHOD_SOUP_CACHE 8
typedef struct method_soup {
    char key[128];             /* "" = empty slot */
    mope_lora *lora;           /* the averaged adapter, attached to the base as id */
    int id;
    mope_expert *ex;           /* a local expert over the base with that adapter */
} method_soup;

struct mope_runner {
    const mope_bundle *b;
    mope_bundle *b_owned;
    mope_pool *pool;
    bool owns_pool;
    mope_tokenizer *tok;
    int32_t n_vocab;
    int n_ctx, max_batch;
    mope_model *base;          /* NULL when the bundle names none */
    mope_expert *base_ex;      /* the base, no preference (prompt / base methods) */
    /* per bundle expert (b->n_experts of each) */
    mope_lora **loras;         /* adapter experts: the loaded adapter, else NULL */
    mope_model **full;         /* full-model experts: the model, else NULL */
    mope_expert **ex;          /* the expert (a group member or a standalone local expert) */
    int *ctx;                  /* its positions per sequence */
    mope_expert_group *group;  /* the adapter experts over the base */
    /* the PCM, when the bundle has one */
    mope_pcm_infer *pcm;
    int pcm_ctx;
    int *pcm_map;              /* PCM expert k -> bundle expert index */
    /* multitask model, loaded on first use */
    mope_model *mt;
    mope_expert *mt_ex;
    int mt_ctx;
    method_soup soups[METHOD_SOUP_CACHE];
    int soup_next;             /* slot replaced next when all are taken */
    /* the template's end-of-turn marker: text and, when one token, its id */
    const char *marker;
    int32_t marker_id;
};

/* A local expert over m with the runner's template, sequences and pool. */
mope_expert *method_local_expert(mope_runner *r, mope_model *m, const char *name, const char *preference,
                                 int adapter, int n_ctx, mope_error *err);
/* Empties a soup slot (detaching its adapter). */
void method_soup_clear(mope_runner *r, method_soup *s);
/* Loads the multitask model on first use. */
int method_load_multitask(mope_runner *r, mope_error *err);

#endif
