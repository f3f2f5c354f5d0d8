/* Decoding: token ids back to bytes, whole lists and streamed one token at a
 * time.  Decoded bytes of every token are precomputed at load time, so this
 * is copying. */
#include "text/tokenizer_internal.h"

#include <limits.h>
#include <stdlib.h>

/* The bytes of token id under flags (no space strip). */
static const char *token_bytes(const mope_tokenizer *t, int32_t id, int flags, size_t *len) {
    int ty = t->types[id];
    if ((flags & MOPE_DECODE_SPECIAL) && (ty == MOPE_TOKEN_CONTROL || ty == MOPE_TOKEN_UNKNOWN)) {
        uint32_t n;
        const char *p = tok_piece(t, id, &n);
        *len = n;
        return p;
    }
    *len = t->doff[id + 1] - t->doff[id];
    return t->dblob + t->doff[id];
}

static int bad_id(const mope_tokenizer *t, int32_t id, mope_error *err) {
    return mope_error_set(err, MOPE_EINVAL, "tokenizer: token id %d out of range (vocab has %d tokens)", (int)id,
                          (int)t->n_vocab);
}

int mope_tokenizer_token_bytes(const mope_tokenizer *t, int32_t id, int flags, char *out, size_t cap,
                               mope_error *err) {
    if (id < 0 || id >= t->n_vocab) return bad_id(t, id, err);
    size_t n;
    const char *p = token_bytes(t, id, flags, &n);
    if (out && cap) memcpy(out, p, n < cap ? n : cap);
    return (int)n;
}

int mope_tokenizer_decode(const mope_tokenizer *t, const int32_t *ids, int n, int flags, char *out, size_t cap,
                          mope_error *err) {
    if (n < 0 || (n > 0 && !ids)) return mope_error_set(err, MOPE_EINVAL, "tokenizer: bad id list");
    if (!out) cap = 0;
    size_t total = 0;
    bool strip = (flags & MOPE_DECODE_STRIP_SPACE) && t->kind == TOK_SPM && t->add_space_prefix;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) return bad_id(t, ids[i], err);
        size_t l;
        const char *p = token_bytes(t, ids[i], flags, &l);
        if (i == 0 && strip && l > 0 && p[0] == ' ') p++, l--;
        if (total < cap) memcpy(out + total, p, l < cap - total ? l : cap - total);
        total += l;
        if (total > INT_MAX) return mope_error_set(err, MOPE_ERANGE, "tokenizer: decoded text too long");
    }
    if (total < cap) out[total] = 0;
    return (int)total;
}

char *mope_tokenizer_decode_alloc(const mope_tokenizer *t, const int32_t *ids, int n, int flags, size_t *len,
                                  mope_error *err) {
    int need = mope_tokenizer_decode(t, ids, n, flags, NULL, 0, err);
    if (need < 0) return NULL;
    char *s = malloc((size_t)need + 1);
    if (!s) {
        mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    mope_tokenizer_decode(t, ids, n, flags, s, (size_t)need + 1, err);
    if (len) *len = (size_t)need;
    return s;
}

/* ---- streaming ---- */
struct mope_detok {
    const mope_tokenizer *t;
    int flags;
    bool first;
    int nheld;
    char held[4];
    char *buf;
    size_t cap;
};

mope_detok *mope_detok_new(const mope_tokenizer *t, int flags, mope_error *err) {
    if (!t) {
        mope_error_set(err, MOPE_EINVAL, "detok: NULL tokenizer");
        return NULL;
    }
    mope_detok *d = calloc(1, sizeof *d);
    if (!d) {
        mope_error_set(err, MOPE_ENOMEM, "detok: out of memory");
        return NULL;
    }
    d->t = t;
    d->flags = flags;
    d->first = true;
    return d;
}

void mope_detok_free(mope_detok *d) {
    if (!d) return;
    free(d->buf);
    free(d);
}

void mope_detok_reset(mope_detok *d) {
    d->first = true;
    d->nheld = 0;
}

/* Length of an unfinished but so far well-formed UTF-8 sequence at the end of
 * s[0..n): those bytes may still be completed by the next token. */
static int incomplete_tail(const uint8_t *s, size_t n) {
    for (int k = 1; k <= 3 && (size_t)k <= n; k++) {
        uint8_t b = s[n - (size_t)k];
        if ((b & 0xc0) == 0x80) continue; /* continuation: look further back */
        if (b >= 0xc2 && b <= 0xf4 && tok_utf8_len(b) > k) return k;
        return 0;
    }
    return 0;
}

const char *mope_detok_push(mope_detok *d, int32_t id, size_t *len, mope_error *err) {
    const mope_tokenizer *t = d->t;
    if (id < 0 || id >= t->n_vocab) {
        bad_id(t, id, err);
        return NULL;
    }
    size_t l;
    const char *p = token_bytes(t, id, d->flags, &l);
    if (d->first && (d->flags & MOPE_DECODE_STRIP_SPACE) && t->kind == TOK_SPM && t->add_space_prefix && l > 0 &&
        p[0] == ' ')
        p++, l--;
    d->first = false;
    size_t need = (size_t)d->nheld + l + 1;
    if (need > d->cap) {
        size_t cap = need < 256 ? 256 : 2 * need;
        char *b = realloc(d->buf, cap);
        if (!b) {
            mope_error_set(err, MOPE_ENOMEM, "detok: out of memory");
            return NULL;
        }
        d->buf = b;
        d->cap = cap;
    }
    memcpy(d->buf, d->held, (size_t)d->nheld);
    memcpy(d->buf + d->nheld, p, l);
    size_t total = (size_t)d->nheld + l;
    int keep = incomplete_tail((const uint8_t *)d->buf, total);
    d->nheld = keep;
    memcpy(d->held, d->buf + total - (size_t)keep, (size_t)keep);
    *len = total - (size_t)keep;
    d->buf[*len] = 0;
    return d->buf;
}

const char *mope_detok_flush(mope_detok *d, size_t *len) {
    if (d->cap < 5) {
        char *b = realloc(d->buf, 256);
        if (!b) { /* tiny allocation failed: hand back the held bytes from the state itself */
            *len = (size_t)d->nheld;
            d->nheld = 0;
            return d->held;
        }
        d->buf = b;
        d->cap = 256;
    }
    memcpy(d->buf, d->held, (size_t)d->nheld);
    *len = (size_t)d->nheld;
    d->buf[*len] = 0;
    d->nheld = 0;
    return d->buf;
}
