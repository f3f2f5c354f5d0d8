/* SentencePiece-style BPE ("llama" model): spaces become U+2581, characters
 * are merged pairwise by the score of the merged piece (highest first, ties
 * leftmost), and a final symbol that is not a piece falls back to <0xXX>
 * byte tokens (or the unknown token). */
#include "text/tokenizer_internal.h"

#include <stdlib.h>

/* SentencePiece itself merges only into normal and user-defined pieces;
 * control / unknown / byte / unused pieces are never produced by merging. */
static int32_t spm_piece(const mope_tokenizer *t, const char *s, size_t n) {
    int32_t id = tok_lookup(t, s, n);
    if (id < 0) return -1;
    int ty = t->types[id];
    return ty == MOPE_TOKEN_NORMAL || ty == MOPE_TOKEN_USER_DEFINED ? id : -1;
}

static int try_pair(const mope_tokenizer *t, const char *buf, tok_sym *s, tok_heap *h, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    int32_t id = spm_piece(t, buf + s[l].start, (size_t)(s[l].len + s[r].len));
    if (id < 0) return 0;
    tok_cand c = {.key = -(double)t->scores[id], .left = l, .right = r, .size = s[l].len + s[r].len, .id = id};
    return tok_heap_push(h, c);
}

int tok_spm_encode(const mope_tokenizer *t, const char *text, size_t len, bool prefix_space, tok_vec *out,
                   mope_error *err) {
    if (len == 0) return 0;
    if (len > (size_t)INT32_MAX / 4) return mope_error_set(err, MOPE_ERANGE, "tokenizer: text too long");
    size_t cap = 3 * (len + 1);
    char *buf = malloc(cap);
    tok_sym *s = NULL;
    tok_heap h = {0};
    int rc = 0;
    if (!buf) goto nomem;
    size_t n = 0;
    if (prefix_space) {
        memcpy(buf, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            buf[n++] = text[i];
        }
    }
    s = malloc(n * sizeof *s);
    if (!s) goto nomem;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        /* a malformed sequence is split into single bytes, so it cannot
         * swallow the start of the next character (or of a "▁") */
        size_t l = (size_t)tok_utf8_len((uint8_t)buf[i]);
        if (i + l > n) l = 1;
        for (size_t k = 1; k < l; k++)
            if (((uint8_t)buf[i + k] & 0xc0) != 0x80) l = 1;
        s[ns] = (tok_sym){.start = (int32_t)i, .len = (int32_t)l, .prev = ns - 1, .next = ns + 1, .id = -1};
        ns++;
        i += l;
    }
    s[ns - 1].next = -1;
    for (int32_t i = 0; i + 1 < ns; i++)
        if (try_pair(t, buf, s, &h, i, i + 1)) goto nomem;
    while (h.n > 0) {
        tok_cand c = tok_heap_pop(&h);
        tok_sym *l = &s[c.left], *r = &s[c.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != c.size) continue;
        l->len += r->len;
        l->id = c.id;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        r->len = 0;
        if (try_pair(t, buf, s, &h, l->prev, c.left) || try_pair(t, buf, s, &h, c.left, l->next)) goto nomem;
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        int32_t id = s[i].id >= 0 ? s[i].id : spm_piece(t, buf + s[i].start, (size_t)s[i].len);
        if (id >= 0) {
            if (tok_vec_push(out, id)) goto nomem;
            continue;
        }
        for (int32_t j = 0; j < s[i].len; j++) {
            uint8_t b = (uint8_t)buf[s[i].start + j];
            int32_t bid = t->byte_id[b] >= 0 ? t->byte_id[b] : t->unk;
            if (bid < 0) {
                rc = mope_error_set(err, MOPE_EINVAL,
                                    "tokenizer: byte 0x%02X has no <0x%02X> token and there is no unknown token", b, b);
                goto done;
            }
            if (tok_vec_push(out, bid)) goto nomem;
            /* without byte tokens a whole unknown character is one <unk> */
            if (t->byte_id[b] < 0) break;
        }
    }
    goto done;
nomem:
    rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
done:
    free(buf);
    free(s);
    free(h.a);
    return rc;
}
