/* Encoding entry point: special tokens are split out of the text first
 * (longest token text first, as llama.cpp does), then every raw fragment is
 * tokenized by the model on its own. */
#include "text/tokenizer_internal.h"

#include <limits.h>
#include <stdlib.h>

typedef struct frag {
    int32_t id; /* -1: raw text */
    size_t off, len;
} frag;

typedef struct frag_list {
    frag *a;
    size_t n, cap;
} frag_list;

static int frag_push(frag_list *l, frag f) {
    if (f.id < 0 && f.len == 0) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        frag *a = realloc(l->a, cap * sizeof *a);
        if (!a) return MOPE_ENOMEM;
        l->a = a;
        l->cap = cap;
    }
    l->a[l->n++] = f;
    return 0;
}

/* Splits every raw fragment of *cur at the occurrences of each special
 * token, longest token text first (so "<|im_end|>" wins over a shorter
 * token that is a substring of it). */
static int partition(const mope_tokenizer *t, const char *text, bool parse_special, frag_list *cur) {
    frag_list next = {0};
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        int ty = t->types[id];
        if (!parse_special && ty != MOPE_TOKEN_USER_DEFINED) continue;
        uint32_t sl;
        const char *sp = tok_piece(t, id, &sl);
        bool any = false;
        for (size_t i = 0; i < cur->n && !any; i++)
            if (cur->a[i].id < 0 && cur->a[i].len >= sl && memmem(text + cur->a[i].off, cur->a[i].len, sp, sl))
                any = true;
        if (!any) continue;
        next.n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            frag f = cur->a[i];
            if (f.id >= 0) {
                if (frag_push(&next, f)) goto nomem;
                continue;
            }
            size_t pos = f.off, end = f.off + f.len;
            for (;;) {
                const char *hit = end - pos >= sl ? memmem(text + pos, end - pos, sp, sl) : NULL;
                if (!hit) break;
                size_t h = (size_t)(hit - text);
                if (frag_push(&next, (frag){-1, pos, h - pos}) || frag_push(&next, (frag){id, h, sl})) goto nomem;
                pos = h + sl;
            }
            if (frag_push(&next, (frag){-1, pos, end - pos})) goto nomem;
        }
        frag_list tmp = *cur;
        *cur = next;
        next = tmp;
    }
    free(next.a);
    return 0;
nomem:
    free(next.a);
    return MOPE_ENOMEM;
}

static int encode_vec(const mope_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                      tok_vec *out, mope_error *err) {
    if (!t) return mope_error_set(err, MOPE_EINVAL, "tokenizer: NULL tokenizer");
    if (!text && len) return mope_error_set(err, MOPE_EINVAL, "tokenizer: NULL text");
    if (add_bos) {
        if (t->bos < 0) return mope_error_set(err, MOPE_EINVAL, "tokenizer: BOS requested but the vocab has no BOS token");
        if (tok_vec_push(out, t->bos)) return mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
    }
    if (len == 0) return 0;
    frag_list fl = {0};
    int rc = 0;
    if (frag_push(&fl, (frag){-1, 0, len}) || partition(t, text, parse_special, &fl)) {
        rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    /* SPM: a space is prefixed at the start and after every special token
     * (llama.cpp and HF's "legacy" Llama behaviour). */
    bool prev_special = true;
    for (size_t i = 0; i < fl.n && rc == 0; i++) {
        frag f = fl.a[i];
        if (f.id >= 0) {
            if (tok_vec_push(out, f.id)) rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
            prev_special = true;
        } else if (t->kind == TOK_SPM) {
            rc = tok_spm_encode(t, text + f.off, f.len, t->add_space_prefix && prev_special, out, err);
            prev_special = false;
        } else {
            rc = tok_bpe_encode(t, text + f.off, f.len, out, err);
        }
    }
done:
    free(fl.a);
    return rc;
}

int mope_tokenizer_encode(const mope_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                          int32_t *out, int cap, mope_error *err) {
    if (cap < 0 || (cap > 0 && !out)) return mope_error_set(err, MOPE_EINVAL, "tokenizer: bad output buffer");
    tok_vec v = {0};
    int rc = encode_vec(t, text, len, add_bos, parse_special, &v, err);
    if (rc == 0 && v.n > INT_MAX) rc = mope_error_set(err, MOPE_ERANGE, "tokenizer: too many tokens");
    if (rc == 0) {
        size_t k = v.n < (size_t)cap ? v.n : (size_t)cap;
        if (k) memcpy(out, v.v, k * sizeof *out);
        rc = (int)v.n;
    }
    free(v.v);
    return rc;
}

int mope_tokenizer_encode_alloc(const mope_tokenizer *t, const char *text, size_t len, bool add_bos,
                                bool parse_special, int32_t **out, mope_error *err) {
    if (!out) return mope_error_set(err, MOPE_EINVAL, "tokenizer: NULL output pointer");
    *out = NULL;
    tok_vec v = {0};
    int rc = encode_vec(t, text, len, add_bos, parse_special, &v, err);
    if (rc == 0 && v.n > INT_MAX) rc = mope_error_set(err, MOPE_ERANGE, "tokenizer: too many tokens");
    if (rc < 0) {
        free(v.v);
        return rc;
    }
    if (!v.v) { /* empty result: still hand back a freeable array */
        v.v = malloc(sizeof *v.v);
        if (!v.v) return mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
    }
    *out = v.v;
    return (int)v.n;
}
