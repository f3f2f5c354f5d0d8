/* Byte-level BPE ("gpt2" model): regex pre-tokenizer, GPT-2 byte map, merges
 * by rank.  Also the merge heap and UTF-8 helpers shared with the SPM model. */
#include "text/tokenizer_internal.h"

#include <stdlib.h>
#include <utf8proc.h>

/* ---- UTF-8 ---- */
int tok_utf8_len(uint8_t lead) {
    if (lead < 0x80) return 1;
    if ((lead & 0xe0) == 0xc0) return 2;
    if ((lead & 0xf0) == 0xe0) return 3;
    if ((lead & 0xf8) == 0xf0) return 4;
    return 1; /* stray continuation or invalid lead: one byte on its own */
}

int tok_utf8_put(uint32_t cp, char *out) {
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- GPT-2 byte map: printable Latin-1 bytes stand for themselves, the 68
 * others (0x00-0x20, 0x7F-0xA0, 0xAD), in ascending order, for U+0100... ---- */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7f && b <= 0xa0) return 256u + 33 + (b - 0x7fu);
    return 256u + 67; /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 0x7f);
    if (cp == 256 + 67) return 0xad;
    return -1;
}

/* ---- heap ---- */
int tok_heap_push(tok_heap *h, tok_cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_cand *a = realloc(h->a, cap * sizeof *a);
        if (!a) return MOPE_ENOMEM;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tok_cand_less(&c, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = c;
    return 0;
}

tok_cand tok_heap_pop(tok_heap *h) {
    tok_cand top = h->a[0], last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const tok_cand *best = &last;
        if (l < n && tok_cand_less(&h->a[l], best)) m = l, best = &h->a[l];
        if (l + 1 < n && tok_cand_less(&h->a[l + 1], best)) m = l + 1;
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (n > 0) h->a[i] = last;
    return top;
}

/* ---- pre-tokenizer regexes (the reference tokenizers' split patterns) ---- */
static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                                "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                               "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

int tok_pretok_init(mope_tokenizer *t, mope_error *err) {
    const char *re;
    const char *p = t->pre;
    if (!strcmp(p, "default") || !strcmp(p, "gpt-2") || !strcmp(p, "gpt2")) {
        t->pre_kind = PRE_GPT2;
        re = RE_GPT2;
    } else if (!strcmp(p, "llama-bpe") || !strcmp(p, "llama3") || !strcmp(p, "llama-v3")) {
        t->pre_kind = PRE_LLAMA3;
        re = RE_LLAMA3;
        t->ignore_merges = true;
    } else if (!strcmp(p, "qwen2")) {
        t->pre_kind = PRE_QWEN2;
        re = RE_QWEN2;
        /* HF's Qwen2 tokenizer.json has an NFC normalizer; llama.cpp skips it
         * (differs only for decomposed input).  We follow HF. */
        t->nfc = true;
    } else {
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "tokenizer: pre-tokenizer '%s' is not supported (default, gpt-2, llama-bpe, qwen2)", p);
    }
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec,
                          &eo, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return mope_error_set(err, MOPE_EUNSUPPORTED, "tokenizer: compiling the '%s' split regex: %s", p, (char *)msg);
    }
    /* JIT is an optimisation only; the interpreter gives identical matches. */
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    return 0;
}

/* ---- BPE on one pre-token word ---- */
typedef struct bpe_scratch {
    tok_sym *sym;
    size_t sym_cap;
    tok_heap heap;
    char *map;
    size_t map_cap;
} bpe_scratch;

static int32_t merge_find(const mope_tokenizer *t, int32_t a, int32_t b, int32_t *res) {
    if (!t->n_merges || a < 0 || b < 0) return -1;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t h = (uint32_t)tok_hash_pair(key) & t->m_mask;
    for (;;) {
        if (t->mk[h] == UINT64_MAX) return -1;
        if (t->mk[h] == key) {
            *res = t->mres[h];
            return t->mrank[h];
        }
        h = (h + 1) & t->m_mask;
    }
}

static int try_pair(const mope_tokenizer *t, bpe_scratch *sc, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    int32_t res;
    int32_t rank = merge_find(t, sc->sym[l].id, sc->sym[r].id, &res);
    if (rank < 0) return 0;
    tok_cand c = {.key = rank, .left = l, .right = r, .size = sc->sym[l].len + sc->sym[r].len, .id = res};
    return tok_heap_push(&sc->heap, c);
}

static int push_byte(const mope_tokenizer *t, uint8_t b, tok_vec *out, mope_error *err) {
    int32_t id = t->byte_id[b] >= 0 ? t->byte_id[b] : t->unk;
    if (id < 0)
        return mope_error_set(err, MOPE_EINVAL, "tokenizer: byte 0x%02X has no token and there is no unknown token", b);
    return tok_vec_push(out, id) ? mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory") : 0;
}

static int bpe_word(const mope_tokenizer *t, const uint8_t *w, size_t n, bpe_scratch *sc, tok_vec *out,
                    mope_error *err) {
    if (n == 0) return 0;
    if (t->ignore_merges && n > 1) {
        if (sc->map_cap < 2 * n) {
            free(sc->map);
            sc->map_cap = 2 * n + 64;
            sc->map = malloc(sc->map_cap);
            if (!sc->map) {
                sc->map_cap = 0;
                return mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
            }
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += (size_t)tok_utf8_put(tok_byte_to_cp(w[i]), sc->map + k);
        int32_t id = tok_lookup(t, sc->map, k);
        if (id >= 0)
            return tok_vec_push(out, id) ? mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory") : 0;
    }
    if (n > INT32_MAX / 2) return mope_error_set(err, MOPE_ERANGE, "tokenizer: word too long");
    if (sc->sym_cap < n) {
        free(sc->sym);
        sc->sym_cap = n + 64;
        sc->sym = malloc(sc->sym_cap * sizeof *sc->sym);
        if (!sc->sym) {
            sc->sym_cap = 0;
            return mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
        }
    }
    tok_sym *s = sc->sym;
    for (size_t i = 0; i < n; i++)
        s[i] = (tok_sym){.start = (int32_t)i, .len = 1, .prev = (int32_t)i - 1,
                         .next = i + 1 < n ? (int32_t)i + 1 : -1, .id = t->byte_id[w[i]]};
    sc->heap.n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (try_pair(t, sc, (int32_t)i, (int32_t)i + 1)) goto nomem;
    while (sc->heap.n > 0) {
        tok_cand c = tok_heap_pop(&sc->heap);
        tok_sym *l = &s[c.left], *r = &s[c.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != c.size) continue;
        l->len += r->len;
        l->id = c.id;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        r->len = 0;
        if (try_pair(t, sc, l->prev, c.left) || try_pair(t, sc, c.left, l->next)) goto nomem;
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        if (s[i].id >= 0) {
            if (tok_vec_push(out, s[i].id)) goto nomem;
        } else {
            for (int32_t j = 0; j < s[i].len; j++) {
                int rc = push_byte(t, w[s[i].start + j], out, err);
                if (rc) return rc;
            }
        }
    }
    return 0;
nomem:
    return mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
}

int tok_bpe_encode(const mope_tokenizer *t, const char *text, size_t len, tok_vec *out, mope_error *err) {
    if (len == 0) return 0;
    uint8_t *norm = NULL;
    if (t->nfc) {
        /* invalid UTF-8 cannot be normalised; it is then split as it is */
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len, &norm,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (r >= 0) {
            text = (const char *)norm;
            len = (size_t)r;
        } else {
            norm = NULL;
        }
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    bpe_scratch sc = {0};
    int rc = 0;
    if (!md) {
        rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    const uint8_t *u = (const uint8_t *)text;
    size_t pos = 0;
    while (pos < len) {
        int m = pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, 0, md, NULL);
        size_t ms, me;
        if (m == PCRE2_ERROR_NOMATCH) {
            ms = me = len;
        } else if (m < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(m, msg, sizeof msg);
            rc = mope_error_set(err, MOPE_EINVAL, "tokenizer: splitting text: %s", (char *)msg);
            goto done;
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
        }
        /* Bytes no alternative matches (only invalid UTF-8 here) form their own word. */
        if (ms > pos && (rc = bpe_word(t, u + pos, ms - pos, &sc, out, err))) goto done;
        if (me == ms) { /* cannot happen with these patterns; never loop forever */
            if (me >= len) break;
            size_t l = (size_t)tok_utf8_len(u[me]);
            if (me + l > len) l = len - me;
            if ((rc = bpe_word(t, u + me, l, &sc, out, err))) goto done;
            me += l;
        } else if ((rc = bpe_word(t, u + ms, me - ms, &sc, out, err))) {
            goto done;
        }
        pos = me;
    }
done:
    if (md) pcre2_match_data_free(md);
    free(sc.sym);
    free(sc.heap.a);
    free(sc.map);
    free(norm);
    return rc;
}
