/* Shared state of the trainer loop (trainer.c) and its preference steps
 * (trainer_pref.c). */
#ifndef MOPE_TRAINER_INTERNAL_H
#define MOPE_TRAINER_INTERNAL_H

#include "mope/trainer.h"

/* Padded batch buffers for up to max_rows sequences of n_ctx tokens. */
typedef struct tr_buf {
    int32_t *tokens, *targets, *lengths;
    float *weights;
    int max_rows, n_ctx;
} tr_buf;

int tr_buf_init(tr_buf *b, int max_rows, int n_ctx, mope_error *err);
void tr_buf_free(tr_buf *b);
/* Lays out n sequences padded to the longest (*T); targets cover the
 * responses; with coef, weights[row] = coef[i] on its response positions
 * (else weights stay unused).  Returns the number of target positions. */
int64_t tr_buf_fill(tr_buf *b, const mope_seq *const *s, int n, const float *coef, int *T);

typedef struct tr_step_out {
    double loss;      /* summed over the step's examples */
    double correct;   /* pairs with positive margin */
    double margin;    /* summed */
    int64_t tokens;
} tr_step_out;

/* One micro-batch of n pairs: accumulates gradients scaled by 1/n_total and
 * adds to out.  ref: 2 floats (chosen, rejected) per pair in pairs[]. */
int tr_dpo_micro(mope_train_model *m, tr_buf *b, const mope_pref_pair *const *pairs, const double *ref, int n,
                 double beta, int n_total, tr_step_out *out, mope_error *err);
int tr_rm_micro(mope_train_model *m, tr_buf *b, const mope_pref_pair *const *pairs, int n, int n_total,
                tr_step_out *out, mope_error *err);
/* Held-out accuracy and mean loss of an rm over pairs idx[0..n). */
int tr_rm_eval(mope_train_model *m, const mope_dataset *d, const int64_t *idx, int64_t n, int batch, float *acc,
               float *loss, mope_error *err);

#endif
