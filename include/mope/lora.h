/* LoRA adapters: load / save in llama.cpp's adapter GGUF convention, apply
 * at inference without merging (several adapters over one loaded base at
 * once, one per batch row), merge into a base model file, and average
 * adapters (Personalized Soups).
 *
 * An adapter is a set of low-rank updates, one per adapted base matrix W
 * (GGUF ne = [n_in, n_out], i.e. n_out rows of n_in):
 *     A: rank rows of n_in   (the file's <name>.lora_a, ne = [n_in, rank])
 *     B: n_out rows of rank  (the file's <name>.lora_b, ne = [rank, n_out])
 *     W' = W + s * B * A,  s = user_scale * alpha / rank  (user_scale when
 *     alpha = 0; rank is per tensor, as in llama.cpp).
 * Values are held in f32; files may store F32, F16 or BF16.
 *
 * token_embd.weight (ne = [n_embd, n_vocab]) uses llama.cpp's exception
 * layout in files: lora_a.ne = [rank, n_vocab] (rows gathered by token id),
 * lora_b.ne = [rank, n_embd].  In memory it is held like every other tensor
 * (n_in = n_embd, n_out = n_vocab): B = the file's lora_a as is, A = the
 * transpose of the file's lora_b.  Saving writes the exception layout back.
 * With a tied output (no output.weight), an adapted token_embd.weight is
 * adapted wherever it is used, the output projection included, so that the
 * merged model (whose token_embd.weight is W + sBA) equals the adapted one.
 *
 * Adaptable tensors: token_embd.weight, output.weight (untied models), and
 * blk.N.{attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down}.weight.
 * Norms and biases are never adapted (an adapter naming them is refused). */
#ifndef MOPE_LORA_H
#define MOPE_LORA_H

#include "mope/core.h"
#include "mope/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One adapted matrix.  a and b are owned by the adapter and writable (a
 * trainer updates them in place). */
typedef struct mope_lora_tensor {
    char name[64];   /* the base tensor, e.g. "blk.0.attn_q.weight" */
    int64_t n_in;    /* the base's ne[0] */
    int64_t n_out;   /* the base's ne[1] */
    int rank;
    float *a;        /* rank x n_in, row-major */
    float *b;        /* n_out x rank, row-major */
} mope_lora_tensor;

typedef struct mope_lora mope_lora;

/* An empty adapter for base architecture `arch` ("llama", "qwen2") with the
 * given alpha (>= 0, finite; 0 = the scale is the user scale). */
mope_lora *mope_lora_new(const char *arch, float alpha, mope_error *err);
void mope_lora_free(mope_lora *l);

/* Adds the update of base tensor `name` (n_in x n_out as above, rank >= 1),
 * copying a (rank x n_in) and b (n_out x rank); either may be NULL for
 * zeros.  Fails for a duplicate name, a name that cannot be adapted (norms,
 * biases, anything outside the list above) or non-finite values.  Returns
 * the tensor's index. */
int mope_lora_add(mope_lora *l, const char *name, int64_t n_in, int64_t n_out, int rank, const float *a,
                  const float *b, mope_error *err);

/* Which matrices of each block mope_lora_add_targets adapts (bit mask). */
enum {
    MOPE_LORA_Q = 1 << 0,
    MOPE_LORA_K = 1 << 1,
    MOPE_LORA_V = 1 << 2,
    MOPE_LORA_O = 1 << 3,
    MOPE_LORA_GATE = 1 << 4,
    MOPE_LORA_UP = 1 << 5,
    MOPE_LORA_DOWN = 1 << 6,
    MOPE_LORA_OUTPUT = 1 << 7, /* output.weight (untied models only) */
    MOPE_LORA_ATTN = MOPE_LORA_Q | MOPE_LORA_K | MOPE_LORA_V | MOPE_LORA_O,
    MOPE_LORA_FFN = MOPE_LORA_GATE | MOPE_LORA_UP | MOPE_LORA_DOWN,
};

/* Adds the chosen matrices of every block of a model with hyper-parameters
 * hp, with the usual training start: A uniform in +-1/sqrt(n_in) from rng,
 * B = 0 (so the adapter starts as the identity).  rng NULL: A = 0 too. */
int mope_lora_add_targets(mope_lora *l, const mope_hparams *hp, unsigned targets, int rank, mope_rng *rng,
                          mope_error *err);

const char *mope_lora_arch(const mope_lora *l);
float mope_lora_alpha(const mope_lora *l);
int mope_lora_n_tensors(const mope_lora *l);
mope_lora_tensor *mope_lora_tensor_at(mope_lora *l, int i);            /* NULL if out of range */
const mope_lora_tensor *mope_lora_get(const mope_lora *l, int i);      /* NULL if out of range */
const mope_lora_tensor *mope_lora_find(const mope_lora *l, const char *name); /* NULL if absent */
/* The scale s of tensor t for a user scale (alpha / rank rule above). */
float mope_lora_scale(const mope_lora *l, const mope_lora_tensor *t, float user_scale);

/* Reads an adapter GGUF: general.type = "adapter", adapter.type = "lora",
 * adapter.lora.alpha (f32; absent = 0), general.architecture, tensors
 * <name>.lora_a / .lora_b (both required, 2-D, F32/F16/BF16, ranks agreeing,
 * rank >= 1).  With base non-NULL the adapter is also checked against it
 * (mope_lora_check); with NULL only the file's own consistency is checked. */
mope_lora *mope_lora_load(const char *path, const mope_model *base, mope_error *err);
/* Same from an open reader (borrowed; the values are copied out). */
mope_lora *mope_lora_from_gguf(const mope_gguf *g, const mope_model *base, mope_error *err);

/* Checks l fits base: same architecture, every tensor exists in the base,
 * is adaptable and has the base's shape.  Errors name the tensor. */
int mope_lora_check(const mope_lora *l, const mope_model *base, mope_error *err);

/* Writes l as an adapter GGUF (F32 values, llama.cpp's names, layouts and
 * keys), atomically (temporary file renamed into place). */
int mope_lora_save(const mope_lora *l, const char *path, mope_error *err);

/* ---- averaging (Personalized Soups) ----
 * weights: one per adapter, used as given (weights summing to 1 make an
 * average); NULL = 1/n each.  All adapters must have the same architecture.
 *
 * MOPE_LORA_AVG_AB: A = sum_k w_k A_k and B = sum_k w_k B_k, tensor by
 *   tensor -- what the Personalized Soups authors did.  Needs the same
 *   tensors, shapes and ranks in every adapter, and the same alpha (kept).
 *   The result's update is NOT the average of the updates.
 * MOPE_LORA_AVG_DELTA: the result's update is exactly sum_k w_k s_k B_k A_k
 *   (s_k = adapter k's scale at user scale 1), represented as a
 *   concatenated adapter: per tensor, rank = the sum of the ranks of the
 *   adapters that adapt it, A = the A_k stacked (rank rows), B = [w_1 s_1 B_1
 *   | w_2 s_2 B_2 | ...] side by side, and alpha chosen so every tensor's
 *   scale is 1: alpha = that rank when all tensors share one, else alpha = 0
 *   (scale = user scale).  Tensors missing from some adapters count as a
 *   zero update there.  Attach / merge the result with user scale 1. */
typedef enum mope_lora_avg_mode { MOPE_LORA_AVG_AB = 0, MOPE_LORA_AVG_DELTA = 1 } mope_lora_avg_mode;

mope_lora *mope_lora_average(const mope_lora *const *adapters, const float *weights, int n, mope_lora_avg_mode mode,
                             mope_error *err);

/* ---- merging ----
 * Writes a new model file: base's keys and tensors with every adapted W
 * replaced by W + s B A, computed in f32 from the dequantised W and stored
 * as wtype (MOPE_TYPE_F32, MOPE_TYPE_F16 or MOPE_TYPE_BF16; no
 * re-quantisation to block types).  Other tensors are copied unchanged.
 * Several adapters: combine them first (mope_lora_average, DELTA mode, with
 * the scales as weights).  The whole merged set of tensors is held in
 * memory while writing.  Atomic like every writer. */
int mope_lora_merge(const mope_model *base, const mope_lora *l, float user_scale, mope_type wtype, const char *path,
                    mope_error *err);

/* ---- attaching to a loaded model (inference without merging) ----
 * Attaches l (checked with mope_lora_check) at user_scale; returns its id
 * (>= 0), which rows pass as mope_row.adapter.  The model borrows l: it
 * must stay alive and unchanged until removed or the model is freed.
 * A row with adapter = id gets y = W x + s B (A x) at every matrix the
 * adapter adapts (and the embedding row of its token adapted likewise); -1 =
 * the base alone.  The base matrix products run once over all rows of a
 * batch, whatever their adapters; each adapted row then adds its low-rank
 * update, so K adapters cost about one model plus K small updates.
 * Attach / remove between forward calls, never during one. */
int mope_model_add_adapter(mope_model *m, const mope_lora *l, float user_scale, mope_error *err);
/* Detaches id; the id is not reused, and rows naming it are refused. */
int mope_model_remove_adapter(mope_model *m, int id, mope_error *err);
/* Ids handed out so far (attached or removed): valid ids are below this. */
int mope_model_n_adapters(const mope_model *m);

#ifdef __cplusplus
}
#endif
#endif
