/* Batched generation for the recipe: many prompts decoded together through
 * the inference engine, one KV-cache slot per sequence in flight, so one
 * pass over the weights serves every slot.  Experts that are LoRA adapters
 * ride in the same batch as the base (each row names its adapter). */
#include <math.h>
#include <stdlib.h>

#include "mope/lora.h"
#include "mope/model.h"
#include "prefbench/recipe_internal.h"

typedef struct slot {
    int job;          /* -1: free */
    int model;        /* index into the loaded models */
    int32_t *toks;    /* prompt + generated */
    int n_prompt, n, fed; /* tokens known / tokens already in the cache */
    mope_sampler *smp;
} slot;

typedef struct loaded {
    mope_model *m;
    int adapter; /* -1: the model itself */
} loaded;

/* Runs the jobs of models whose index maps to the engine `eng` (all of them
 * when adapters share one base). */
static int run_engine(recipe_ctx *c, mope_model *eng, const mope_tokenizer *tok, const loaded *lm, int n_models,
                      recipe_gen_job *jobs, int n_jobs, const mope_sampler_params *sp, int max_new, mope_pool *pool,
                      mope_error *err) {
    const mope_hparams *hp = mope_model_hparams(eng);
    const int n_ctx = hp->n_ctx_train, V = hp->n_vocab, S = c->sz.gen_slots > 0 ? c->sz.gen_slots : 16;
    const int n_tok_vocab = mope_tokenizer_n_vocab(tok);
    int32_t stop_user = mope_tokenizer_find(tok, "<|user|>", 8);
    int32_t stop_asst = mope_tokenizer_find(tok, "<|assistant|>", 13);
    mope_kv *kv = mope_kv_new(eng, S, n_ctx, err);
    slot *sl = calloc((size_t)S, sizeof *sl);
    mope_row *rows = malloc((size_t)S * n_ctx * sizeof *rows);
    int *row_slot = malloc((size_t)S * sizeof *row_slot);
    float *logits = malloc((size_t)S * V * sizeof *logits);
    int rc = kv && sl && rows && row_slot && logits ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    for (int s = 0; !rc && s < S; s++) {
        sl[s].job = -1;
        if (!(sl[s].toks = malloc((size_t)(n_ctx + 1) * sizeof(int32_t)))) rc = mope_error_set(err, MOPE_ENOMEM, "oom");
        else if (!(sl[s].smp = mope_sampler_new(sp, err))) rc = err ? err->code : MOPE_EINVAL;
    }
    int next = 0, active = 0;
    while (!rc) {
        /* fill free slots with jobs for this engine */
        for (int s = 0; s < S && !rc; s++) {
            if (sl[s].job >= 0) continue;
            while (next < n_jobs && (jobs[next].model < 0 || jobs[next].model >= n_models ||
                                     lm[jobs[next].model].m != eng))
                next++;
            if (next >= n_jobs) break;
            recipe_gen_job *j = &jobs[next];
            char *text = mope_chat_format_alloc(MOPE_CHAT_TULU, NULL, j->user, err);
            if (!text) {
                rc = err ? err->code : MOPE_ENOMEM;
                break;
            }
            int n = mope_tokenizer_encode(tok, text, strlen(text), mope_tokenizer_add_bos(tok), true, sl[s].toks,
                                          n_ctx, err);
            free(text);
            if (n < 0) {
                rc = n;
                break;
            }
            if (n >= n_ctx - 1) { /* no room to answer: an empty response */
                j->response = strdup("");
                j->n_tokens = 0;
                next++;
                s--;
                continue;
            }
            mope_kv_clear_seq(kv, s);
            mope_sampler_reseed(sl[s].smp, j->seed);
            sl[s].job = next++;
            sl[s].model = j->model;
            sl[s].n_prompt = sl[s].n = n;
            sl[s].fed = 0;
            active++;
        }
        if (rc || active == 0) break;
        int nr = 0, nl = 0;
        for (int s = 0; s < S; s++) {
            if (sl[s].job < 0) continue;
            for (int t = sl[s].fed; t < sl[s].n; t++)
                rows[nr++] = (mope_row){.seq = s, .token = sl[s].toks[t], .pos = t, .adapter = lm[sl[s].model].adapter,
                                        .want_logits = t == sl[s].n - 1};
            row_slot[nl++] = s;
            sl[s].fed = sl[s].n;
        }
        if ((rc = mope_model_forward(eng, kv, rows, nr, logits, pool, err))) break;
        for (int i = 0; i < nl; i++) {
            slot *q = &sl[row_slot[i]];
            float *lg = logits + (size_t)i * V;
            for (int v = n_tok_vocab; v < V; v++) lg[v] = -INFINITY;
            /* the answer's own tokens only, as the method path's rollouts do:
             * with the prompt in the history a no-repeat n-gram ban stops the
             * answer from repeating a multi-token concept name from the
             * question (greedy references named a test concept 37% of the
             * time that way, 86% without the prompt) */
            int32_t t = mope_sampler_sample(q->smp, lg, V, q->toks + q->n_prompt, q->n - q->n_prompt, err);
            if (t < 0) {
                rc = t;
                break;
            }
            int gen = q->n - q->n_prompt;
            bool end = mope_tokenizer_is_eog(tok, t) || t == stop_user || t == stop_asst;
            if (!end) q->toks[q->n++] = t;
            gen = q->n - q->n_prompt;
            if (end || gen >= max_new || q->n >= n_ctx) {
                recipe_gen_job *j = &jobs[q->job];
                j->finished = end;
                j->n_tokens = gen;
                size_t len = 0;
                char *raw = mope_tokenizer_decode_alloc(tok, q->toks + q->n_prompt, gen, MOPE_DECODE_STRIP_SPACE,
                                                        &len, err);
                if (!raw) {
                    rc = err ? err->code : MOPE_ENOMEM;
                    break;
                }
                /* A sampled answer can stop inside a multi-byte character (byte
                 * fallback); the JSONL written from it must stay valid UTF-8. */
                j->response = mope_utf8_sanitize(raw, len, NULL);
                free(raw);
                if (!j->response) {
                    rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                    break;
                }
                q->job = -1;
                active--;
            }
        }
    }
    for (int s = 0; sl && s < S; s++) {
        free(sl[s].toks);
        mope_sampler_free(sl[s].smp);
    }
    free(sl);
    free(rows);
    free(row_slot);
    free(logits);
    mope_kv_free(kv);
    return rc;
}

int recipe_generate(recipe_ctx *c, const char *tok_path, const char *const *models, int n_models, int adapters,
                    recipe_gen_job *jobs, int n_jobs, const mope_sampler_params *sp, int max_new, mope_error *err) {
    mope_tokenizer *tok = mope_tokenizer_load(tok_path, err);
    if (!tok) return err ? err->code : MOPE_EIO;
    mope_pool *pool = mope_pool_create(c->n_threads, err);
    loaded *lm = calloc((size_t)n_models, sizeof *lm);
    mope_lora **ad = calloc((size_t)n_models, sizeof *ad);
    int rc = pool && lm && ad ? 0 : (err && err->code ? err->code : mope_error_set(err, MOPE_ENOMEM, "oom"));
    for (int k = 0; !rc && k < n_models; k++) {
        lm[k].adapter = -1;
        if (k > 0 && adapters) {
            lm[k].m = lm[0].m;
            if (!(ad[k] = mope_lora_load(models[k], lm[0].m, err))) rc = err ? err->code : MOPE_EIO;
            else if ((lm[k].adapter = mope_model_add_adapter(lm[0].m, ad[k], 1.0f, err)) < 0) rc = lm[k].adapter;
        } else if (!(lm[k].m = mope_model_load(models[k], err))) {
            rc = err ? err->code : MOPE_EIO;
        }
        if (rc) mope_error_prefix(err, "%s", models[k]);
    }
    for (int k = 0; !rc && k < n_models; k++) {
        bool first = true;
        for (int j = 0; j < k; j++)
            if (lm[j].m == lm[k].m) first = false;
        if (first) rc = run_engine(c, lm[k].m, tok, lm, n_models, jobs, n_jobs, sp, max_new, pool, err);
    }
    for (int k = n_models - 1; lm && k >= 0; k--) {
        if (lm[k].m && (k == 0 || !adapters)) mope_model_free(lm[k].m);
    }
    for (int k = 0; ad && k < n_models; k++) mope_lora_free(ad[k]);
    free(ad);
    free(lm);
    mope_pool_free(pool);
    mope_tokenizer_free(tok);
    return rc;
}
