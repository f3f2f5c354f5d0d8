/* Shared by the LoRA training tests: a tiny untied model, a fixed batch
 * (targets < 0 are ignored positions), and a model whose base and adapter
 * (B included) are random, so that every adapter path carries signal.
 * Include after <cmocka.h> and mope/train.h. */
#ifndef MOPE_TEST_TRAIN_LORA_FIXTURE_H
#define MOPE_TEST_TRAIN_LORA_FIXTURE_H

static inline mope_train_config tiny(void) {
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = 11;
    c.n_embd = 16;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 12;
    c.n_ctx = 8;
    c.rope_freq_base = 30.0f;
    c.tied_output = false;
    return c;
}

enum { NB = 2, NT = 6 };
static const int32_t TOK[NB * NT] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
static const int32_t TGT[NB * NT] = {1, 4, -1, 5, 9, 7, 6, 5, 3, 5, 8, -1};

static inline void fill_normal(float *p, size_t n, float std, float mean, mope_rng *rng) {
    for (size_t i = 0; i < n; i++) p[i] = mean + std * mope_rng_normal(rng);
}

/* A model with random base and random (non-zero B) adapter values. */
static inline mope_train_model *lora_model(const mope_train_config *c, int rank, float alpha, unsigned targets, float drop,
                                    int n_threads) {
    mope_error err = {0};
    mope_train_model *m = mope_train_model_new(c, n_threads, &err);
    assert_non_null(m);
    mope_rng rng;
    mope_rng_seed(&rng, 77);
    for (int i = 0; i < mope_train_model_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_tensor(m, i);
        bool norm = strstr(t->name, "_norm.weight") != NULL;
        fill_normal(mope_train_model_params(m) + t->offset, t->n, norm ? 0.2f : 0.35f, norm ? 1.0f : 0.0f, &rng);
    }
    if (mope_train_model_add_lora(m, rank, alpha, targets, drop, 99, &err)) fail_msg("add_lora: %s", err.msg);
    for (int i = 0; i < mope_train_model_lora_n_tensors(m); i++) {
        const mope_train_tensor *t = mope_train_model_lora_tensor(m, i);
        fill_normal(mope_train_model_lora_params(m) + t->offset, t->n, 0.25f, 0.0f, &rng);
    }
    return m;
}

/* Fine-tuning runs: a larger untied model and a batch of four sequences
 * that each walk one cycle of 8 of the 32 tokens from different starts, so
 * the next token is a function of the current one (a loss that can fall). */
enum { FV = 32, FB = 4, FT = 16 };

static inline void ft_batch(int32_t *tok, int32_t *tgt) {
    static const int cyc[8] = {3, 17, 8, 29, 12, 21, 5, 26};
    for (int b = 0; b < FB; b++)
        for (int t = 0; t <= FT; t++) {
            int v = cyc[(2 * b + 1 + t) % 8];
            if (t < FT) tok[b * FT + t] = v;
            if (t > 0) tgt[b * FT + t - 1] = v;
        }
}

static inline mope_train_config ft_config(void) {
    mope_train_config c;
    mope_train_config_init(&c);
    c.n_vocab = FV;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 64;
    c.n_ctx = FT;
    c.tied_output = false; /* so the head can be adapted too */
    return c;
}

#endif
