/* Internals of the LoRA code (src/model/lora*.c) and its hooks in the
 * forward pass. */
#ifndef MOPE_LORA_INTERNAL_H
#define MOPE_LORA_INTERNAL_H

#include "model/model_internal.h"
#include "mope/lora.h"

struct mope_lora {
    char arch[32];
    float alpha;
    int n, cap;
    mope_lora_tensor *t;
};

/* Adaptable matrices of a model are numbered ("slots"): 7 per block, then
 * the embedding and the output projection. */
enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_PER_LAYER };
static inline int lora_slot(int layer, int which) { return layer * LORA_PER_LAYER + which; }
static inline int lora_slot_embd(const mope_hparams *hp) { return hp->n_layer * LORA_PER_LAYER; }
static inline int lora_slot_output(const mope_hparams *hp) { return hp->n_layer * LORA_PER_LAYER + 1; }
static inline int lora_n_slots(const mope_hparams *hp) { return hp->n_layer * LORA_PER_LAYER + 2; }

/* What a tensor name is, for adapting it. */
typedef enum { LORA_NAME_MATRIX, LORA_NAME_NORM, LORA_NAME_BIAS, LORA_NAME_UNKNOWN } lora_name_kind;
/* Classifies name; for a matrix also sets *layer (-1 for token_embd /
 * output) and *which (LORA_Q.. or -1 = embedding, -2 = output). */
lora_name_kind lora_classify(const char *name, int *layer, int *which);

enum { LORA_PANEL = 64 };

/* One update of an attached adapter at one slot. */
typedef struct lora_use {
    const mope_lora_tensor *t; /* NULL: slot not adapted */
    /* A transposed (n_in x rank), and B transposed in panels of LORA_PANEL
     * outputs (panel p: rank x LORA_PANEL, zero-padded past n_out), owned:
     * A x runs along the rank, B t along the outputs, and both read their
     * factor front to back (the strided rows of a plain B^T stall on cache
     * misses, as six adapters' factors do not stay cached).  F16 (uint16_t)
     * when every value of A and B is exactly an F16 value (adapters saved
     * as F16): the same numbers in half the bytes, since six adapters'
     * factors are read from memory at every decode step; f32 otherwise. */
    void *at, *bt;
    bool f16;
    float scale;
} lora_use;

typedef struct lora_attached {
    const mope_lora *l; /* NULL once removed */
    lora_use *use;      /* n_slots */
} lora_attached;

/* Attached adapters and the per-forward row grouping. */
typedef struct mope_lora_set {
    int n, cap;
    lora_attached *a;
    int n_slots;
    int max_rank;        /* over attached adapters */
    /* rows grouped by adapter, for all rows and for the rows that want
     * logits: grp[start[a] .. start[a + 1]) are the row indices of adapter a */
    int *start, *grp, *wstart, *wgrp;
    int cap_rows, cap_ids;
    float *tmp;          /* cap_rows x max_rank: A x per row */
    size_t cap_tmp;
    bool active;         /* this batch has adapted rows */
} mope_lora_set;

void mope_lora_set_free(mope_lora_set *s);
/* Adapter ids a row may name (< 0 refused by the caller). */
bool mope_lora_id_valid(const mope_model *m, int id);
/* Groups the batch's rows by adapter (idx: the rows that want logits, in
 * the order of the output gather).  Sets set->active. */
int mope_lora_prepare(mope_model *m, const mope_row *rows, int n_rows, const int *want_idx, int n_want,
                      mope_error *err);
/* x[r * n_embd ..] += the embedding update of each adapted row's token. */
void mope_lora_embed(mope_model *m, const mope_row *rows, int n_rows, float *x);
/* y += s B (A x) for the adapted rows at slot (want: the rows are the
 * gathered logits rows). */
void mope_lora_apply(mope_model *m, int slot, bool want, const float *x, int64_t ldx, float *y, int64_t ldy,
                     mope_pool *pool);

#endif
