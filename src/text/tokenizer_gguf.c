/* Tokenizer <-> GGUF metadata (tokenizer.ggml.* keys, GGUF_FACTS.md §1). */
#include "text/tokenizer_internal.h"

#include <stdlib.h>

static int get_id(const mope_gguf *g, const char *key, int32_t dflt, int32_t *out, mope_error *err) {
    int64_t v;
    int rc = mope_gguf_get_i64(g, key, &v);
    if (rc == -1) {
        *out = dflt;
        return 0;
    }
    if (rc < 0) return mope_error_set(err, MOPE_EFORMAT, "tokenizer: %s has a non-integer type", key);
    if (v < -1 || v > INT32_MAX)
        return mope_error_set(err, MOPE_EINVAL, "tokenizer: %s = %lld out of range", key, (long long)v);
    *out = (int32_t)v;
    return 0;
}

static int get_flag(const mope_gguf *g, const char *key, int *out, mope_error *err) {
    bool b;
    int rc = mope_gguf_get_bool(g, key, &b);
    if (rc == -1) {
        *out = -1;
        return 0;
    }
    if (rc < 0) return mope_error_set(err, MOPE_EFORMAT, "tokenizer: %s is not a bool", key);
    *out = b;
    return 0;
}

mope_tokenizer *mope_tokenizer_from_gguf(const mope_gguf *g, mope_error *err) {
    mope_tokenizer *t = NULL;
    tok_str *toks = NULL, *merges = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    char *model = NULL, *pre = NULL;
    tok_src s = {0};
    mope_gguf_str str;

    if (!g) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: no GGUF file");
        return NULL;
    }
    if (mope_gguf_get_str(g, "tokenizer.ggml.model", &str) != 0) {
        mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.model missing or not a string");
        return NULL;
    }
    model = tok_dup_str(str.ptr, (size_t)str.len);
    if (!model) goto nomem;
    int rc = mope_gguf_get_str(g, "tokenizer.ggml.pre", &str);
    if (rc == 0) {
        pre = tok_dup_str(str.ptr, (size_t)str.len);
        if (!pre) goto nomem;
    } else if (rc != -1) {
        mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.pre is not a string");
        goto done;
    }
    if (mope_gguf_get_str(g, "tokenizer.chat_template", &str) == 0) {
        s.chat_template = str.ptr;
        s.chat_template_len = (size_t)str.len;
    }

    int64_t kv = mope_gguf_find_key(g, "tokenizer.ggml.tokens");
    mope_gguf_type et;
    uint64_t n;
    const void *data;
    if (kv < 0 || mope_gguf_kv_arr(g, kv, &et, &n, &data) != 0 || et != MOPE_GGUF_STRING) {
        mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.tokens missing or not a string array");
        goto done;
    }
    if (n == 0 || n > (uint64_t)INT32_MAX / 2) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: tokenizer.ggml.tokens has %llu entries", (unsigned long long)n);
        goto done;
    }
    int32_t nt = (int32_t)n;
    toks = malloc((size_t)nt * sizeof *toks);
    if (!toks) goto nomem;
    for (int32_t i = 0; i < nt; i++) {
        mope_gguf_str e = mope_gguf_arr_str(g, kv, (uint64_t)i);
        toks[i].p = e.ptr;
        toks[i].n = (size_t)e.len;
    }

    rc = mope_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data);
    if (rc == 0) {
        if (n != (uint64_t)nt || et == MOPE_GGUF_STRING || et == MOPE_GGUF_ARRAY || et == MOPE_GGUF_BOOL) {
            mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.scores must be %d numbers", (int)nt);
            goto done;
        }
        scores = malloc((size_t)nt * sizeof *scores);
        if (!scores) goto nomem;
        for (int32_t i = 0; i < nt; i++) scores[i] = (float)mope_gguf_arr_f64(et, data, (uint64_t)i);
    } else if (rc != -1) {
        mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.scores is not an array");
        goto done;
    }
    rc = mope_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data);
    if (rc == 0) {
        if (n != (uint64_t)nt || et == MOPE_GGUF_STRING || et == MOPE_GGUF_ARRAY || et == MOPE_GGUF_F32 ||
            et == MOPE_GGUF_F64 || et == MOPE_GGUF_BOOL) {
            mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.token_type must be %d integers", (int)nt);
            goto done;
        }
        types = malloc((size_t)nt * sizeof *types);
        if (!types) goto nomem;
        for (int32_t i = 0; i < nt; i++) {
            int64_t v = mope_gguf_arr_i64(et, data, (uint64_t)i);
            types[i] = v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : (int32_t)v; /* checked by tok_build() */
        }
    } else if (rc != -1) {
        mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.token_type is not an array");
        goto done;
    }
    kv = mope_gguf_find_key(g, "tokenizer.ggml.merges");
    if (kv >= 0) {
        if (mope_gguf_kv_arr(g, kv, &et, &n, &data) != 0 || et != MOPE_GGUF_STRING || n > (uint64_t)INT32_MAX / 2) {
            mope_error_set(err, MOPE_EFORMAT, "tokenizer: tokenizer.ggml.merges is not a string array");
            goto done;
        }
        s.n_merges = (int32_t)n;
        if (n) {
            merges = malloc((size_t)n * sizeof *merges);
            if (!merges) goto nomem;
            for (uint64_t i = 0; i < n; i++) {
                mope_gguf_str e = mope_gguf_arr_str(g, kv, i);
                merges[i].p = e.ptr;
                merges[i].n = (size_t)e.len;
            }
        }
    }

    bool spm = strcmp(model, "llama") == 0;
    if (get_id(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, &s.bos, err) ||
        get_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, &s.eos, err) ||
        get_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &s.unk, err) ||
        get_id(g, "tokenizer.ggml.padding_token_id", -1, &s.pad, err) ||
        get_id(g, "tokenizer.ggml.eot_token_id", -1, &s.eot, err) ||
        get_flag(g, "tokenizer.ggml.add_bos_token", &s.add_bos, err) ||
        get_flag(g, "tokenizer.ggml.add_eos_token", &s.add_eos, err) ||
        get_flag(g, "tokenizer.ggml.add_space_prefix", &s.add_space_prefix, err))
        goto done;
    /* A padding id past the vocab occurs in converted files (the [PAD] token
     * lives only in the model's embedding); nothing here uses it, so drop it
     * as llama.cpp does rather than refuse the model. */
    if (s.pad >= nt) s.pad = -1;
    /* llama.cpp's SPM defaults point at ids that a tiny vocab may lack */
    if (spm) {
        if (s.bos >= nt && mope_gguf_find_key(g, "tokenizer.ggml.bos_token_id") < 0) s.bos = -1;
        if (s.eos >= nt && mope_gguf_find_key(g, "tokenizer.ggml.eos_token_id") < 0) s.eos = -1;
    }

    s.model = model;
    s.pre = pre;
    s.n_tokens = nt;
    s.tokens = toks;
    s.scores = scores;
    s.types = types;
    s.merges = merges;
    t = tok_build(&s, err);
    goto done;
nomem:
    mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
done:
    free(toks);
    free(merges);
    free(scores);
    free(types);
    free(model);
    free(pre);
    return t;
}

mope_tokenizer *mope_tokenizer_load(const char *path, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return NULL;
    mope_tokenizer *t = mope_tokenizer_from_gguf(g, err);
    mope_gguf_close(g);
    if (!t) mope_error_prefix(err, "%s", path);
    return t;
}

int mope_tokenizer_write_gguf_kv(const mope_tokenizer *t, mope_gguf_writer *w, mope_error *err) {
    if (!t || !w) return mope_error_set(err, MOPE_EINVAL, "tokenizer: write_gguf_kv needs a tokenizer and a writer");
    int32_t n = t->n_vocab;
    const char **strs = malloc((size_t)n * sizeof *strs);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    int32_t *types = malloc((size_t)n * sizeof *types);
    char **ms = NULL;
    int rc = 0;
    if (!strs || !lens || !types) goto nomem;
    for (int32_t i = 0; i < n; i++) {
        uint32_t len;
        strs[i] = tok_piece(t, i, &len);
        lens[i] = len;
        types[i] = t->types[i];
    }
    rc |= mope_gguf_set_str(w, "tokenizer.ggml.model", t->model);
    rc |= mope_gguf_set_str(w, "tokenizer.ggml.pre", t->pre);
    rc |= mope_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)n);
    rc |= mope_gguf_set_arr(w, "tokenizer.ggml.scores", MOPE_GGUF_F32, t->scores, (uint64_t)n);
    rc |= mope_gguf_set_arr(w, "tokenizer.ggml.token_type", MOPE_GGUF_I32, types, (uint64_t)n);
    if (t->n_merges > 0) {
        ms = calloc((size_t)t->n_merges, sizeof *ms);
        if (!ms) goto nomem;
        for (int32_t r = 0; r < t->n_merges; r++) {
            uint32_t la, lb;
            const char *a = tok_piece(t, t->merges[2 * r], &la);
            const char *b = tok_piece(t, t->merges[2 * r + 1], &lb);
            ms[r] = malloc((size_t)la + lb + 2);
            if (!ms[r]) goto nomem;
            memcpy(ms[r], a, la);
            ms[r][la] = ' ';
            memcpy(ms[r] + la + 1, b, lb);
            ms[r][la + 1 + lb] = 0;
        }
        rc |= mope_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, (uint64_t)t->n_merges);
    }
    const struct { const char *key; int32_t id; } ids[] = {
        {"tokenizer.ggml.bos_token_id", t->bos}, {"tokenizer.ggml.eos_token_id", t->eos},
        {"tokenizer.ggml.unknown_token_id", t->unk}, {"tokenizer.ggml.padding_token_id", t->pad},
        {"tokenizer.ggml.eot_token_id", t->eot},
    };
    for (size_t k = 0; k < sizeof ids / sizeof *ids; k++)
        if (ids[k].id >= 0) rc |= mope_gguf_set_u32(w, ids[k].key, (uint32_t)ids[k].id);
    rc |= mope_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    rc |= mope_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos);
    rc |= mope_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix);
    if (t->chat_template) rc |= mope_gguf_set_str(w, "tokenizer.chat_template", t->chat_template);
    if (rc) {
        rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer: storing tokenizer keys in the GGUF writer failed");
        goto done;
    }
    goto done;
nomem:
    rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
done:
    if (ms)
        for (int32_t r = 0; r < t->n_merges; r++) free(ms[r]);
    free(ms);
    free(strs);
    free(lens);
    free(types);
    return rc < 0 ? rc : 0;
}

