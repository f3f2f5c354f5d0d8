/* A deliberately naive reference forward pass for llama/qwen2 models, used
 * to check src/model.  It shares no code with src/model: plain loops, double
 * accumulation, full recomputation of the whole sequence for every call,
 * weights dequantised with mope_dequantize_row.  Tensors come through a
 * lookup callback so this file needs nothing beyond mope core (it is
 * compiled into every test). */
#ifndef MOPE_TEST_REFMODEL_H
#define MOPE_TEST_REFMODEL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct refmodel_hp {
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int n_rot;            /* rotated dims per head */
    double rope_base;
    double rope_scale;    /* multiplies positions (1 / linear factor) */
    double rms_eps;
    bool neox;            /* half-split pairs instead of adjacent pairs */
    bool qkv_bias;
    bool tied;            /* output = token_embd */
    /* Round each matrix input through the weight type's vec_dot type (q8_0,
     * q8_K, f16) first, as a quantised matrix-vector product does: what is
     * left to compare is then the arithmetic, not the activation rounding. */
    bool quant_act;
} refmodel_hp;

typedef struct refmodel_tensor {
    const void *data;
    int type;             /* mope_type */
    int64_t ne0, ne1;
} refmodel_tensor;

/* Fills *out and returns 0 when the tensor exists, -1 otherwise. */
typedef int (*refmodel_lookup)(void *ctx, const char *name, refmodel_tensor *out);

/* logits[t * n_vocab + v] for every position t of tokens[0..n).  Returns 0,
 * or -1 when a tensor is missing or has an unexpected shape. */
int refmodel_forward(const refmodel_hp *hp, refmodel_lookup get, void *ctx, const int32_t *tokens, int n,
                     double *logits);

#endif
