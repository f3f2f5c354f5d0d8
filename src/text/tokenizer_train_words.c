/* The tokenizer trainer's word statistics: string tables and the word
 * counts of the training text (tokenizer_train_internal.h). */
#include "text/tokenizer_train_internal.h"

#include <stdlib.h>
#include <string.h>

int tt_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return MOPE_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* ---- string tables ---- */

/* The slot holding s, or the empty slot where it goes. */
static uint32_t st_slot(const strtab *S, const char *s, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(s, n) & S->mask;
    for (; S->ht[i] >= 0; i = (i + 1) & S->mask)
        if (S->len[S->ht[i]] == n && memcmp(tt_st_str(S, S->ht[i]), s, n) == 0) break;
    return i;
}

int32_t tt_st_find(const strtab *S, const char *s, size_t n) {
    return S->ht ? S->ht[st_slot(S, s, n)] : -1;
}

static int st_rehash(strtab *S, uint32_t size) {
    free(S->ht);
    S->ht = malloc((size_t)size * sizeof *S->ht);
    if (!S->ht) return MOPE_ENOMEM;
    S->mask = size - 1;
    for (uint32_t i = 0; i < size; i++) S->ht[i] = -1;
    for (int32_t k = 0; k < S->n; k++) S->ht[st_slot(S, tt_st_str(S, k), S->len[k])] = k;
    return 0;
}

/* Index of s, added when new (then *added is set); -1 when out of memory. */
int32_t tt_st_intern(strtab *S, const char *s, size_t n, bool *added) {
    if (!S->ht && st_rehash(S, 1024)) return -1;
    uint32_t slot = st_slot(S, s, n);
    *added = S->ht[slot] < 0;
    if (!*added) return S->ht[slot];
    if ((size_t)S->n == S->cap) {
        size_t c = S->cap ? 2 * S->cap : 1024;
        size_t *off = realloc(S->off, c * sizeof *off);
        if (off) S->off = off;
        uint32_t *len = realloc(S->len, c * sizeof *len);
        if (len) S->len = len;
        if (!off || !len || c > INT32_MAX) return -1;
        S->cap = c;
    }
    if (tt_grow((void **)&S->blob, &S->blob_cap, S->blob_n + n + 1, 1)) return -1;
    memcpy(S->blob + S->blob_n, s, n);
    int32_t k = S->n++;
    S->off[k] = S->blob_n;
    S->len[k] = (uint32_t)n;
    S->blob_n += n;
    S->ht[slot] = k;
    if ((uint64_t)S->n * 2 > (uint64_t)S->mask + 1 && st_rehash(S, 2 * (S->mask + 1))) return -1;
    return k;
}

void tt_st_free(strtab *S) {
    free(S->blob);
    free(S->off);
    free(S->len);
    free(S->ht);
}

int tt_count_add(counts *C, const char *s, size_t n, int64_t k) {
    bool added;
    int32_t i = tt_st_intern(&C->S, s, n, &added);
    if (i < 0 || tt_grow((void **)&C->count, &C->cap, (size_t)C->S.n, sizeof *C->count)) return MOPE_ENOMEM;
    if (added) C->count[i] = 0;
    C->count[i] += k;
    return 0;
}

void tt_counts_free(counts *C) {
    tt_st_free(&C->S);
    free(C->count);
}

/* Word occurrences; the long ones are counted in total only. */
static int word_count(counts *W, const char *s, size_t n) {
    W->total++;
    return n == 0 || n > MAX_WORD_BYTES ? 0 : tt_count_add(W, s, n, 1);
}

/* ---- splitting text into words ---- */
enum { CL_NONE = 0, CL_TEXT, CL_SPACE }; /* class of a word's run after its optional "▁" */

typedef struct splitter {
    counts *W;
    char buf[MAX_WORD_BYTES + 8];
    size_t n;
    bool too_long;
    int cls;
} splitter;

static int split_flush(splitter *sp) {
    int rc = 0;
    if (sp->n || sp->too_long) rc = word_count(sp->W, sp->buf, sp->too_long ? MAX_WORD_BYTES + 1 : sp->n);
    sp->n = 0;
    sp->too_long = false;
    sp->cls = CL_NONE;
    return rc;
}

static void split_put(splitter *sp, const char *s, size_t n) {
    if (sp->n + n > MAX_WORD_BYTES) sp->too_long = true;
    if (sp->too_long) return;
    memcpy(sp->buf + sp->n, s, n);
    sp->n += n;
}

/* One raw fragment (no special-token text inside). */
static int split_fragment(splitter *sp, const char *s, size_t n, bool prefix) {
    if (prefix) split_put(sp, U2581, 3);
    for (size_t i = 0; i < n;) {
        size_t l = tt_char_len(s, i, n);
        bool space = s[i] == ' ' || (l == 3 && memcmp(s + i, U2581, 3) == 0);
        if (space) {
            if (split_flush(sp)) return MOPE_ENOMEM;
            split_put(sp, U2581, 3);
        } else {
            char c = s[i];
            int cls = c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' ? CL_SPACE : CL_TEXT;
            if (sp->cls != CL_NONE && sp->cls != cls && split_flush(sp)) return MOPE_ENOMEM;
            sp->cls = cls;
            split_put(sp, s + i, l);
        }
        i += l;
    }
    return split_flush(sp);
}

typedef struct frag {
    size_t off, len;
    bool special;
} frag;

/* Splits special-token text out as the encoder does (longest token first,
 * each splitting every raw fragment at all its occurrences), then counts the
 * words of the raw fragments; a space is prefixed at the start and after
 * every special token. */
int tt_count_text(counts *W, const char *text, size_t len, const tok_str *sp, int n_sp) {
    frag *cur = NULL, *nxt = NULL;
    size_t ncur = 0, ccur = 0, nnxt = 0, cnxt = 0;
    int rc = MOPE_ENOMEM;
    if (tt_grow((void **)&cur, &ccur, 1, sizeof *cur)) goto done;
    cur[ncur++] = (frag){0, len, false};
    for (int k = 0; k < n_sp; k++) {
        nnxt = 0;
        for (size_t f = 0; f < ncur; f++) {
            frag fr = cur[f];
            size_t pos = fr.off, end = fr.off + fr.len;
            while (!fr.special && end - pos >= sp[k].n) {
                const char *hit = memmem(text + pos, end - pos, sp[k].p, sp[k].n);
                if (!hit) break;
                size_t h = (size_t)(hit - text);
                if (tt_grow((void **)&nxt, &cnxt, nnxt + 2, sizeof *nxt)) goto done;
                if (h > pos) nxt[nnxt++] = (frag){pos, h - pos, false};
                nxt[nnxt++] = (frag){h, sp[k].n, true};
                pos = h + sp[k].n;
            }
            if (tt_grow((void **)&nxt, &cnxt, nnxt + 1, sizeof *nxt)) goto done;
            if (fr.special) nxt[nnxt++] = fr;
            else if (end > pos) nxt[nnxt++] = (frag){pos, end - pos, false};
        }
        frag *t = cur;
        cur = nxt;
        nxt = t;
        size_t tc = ccur;
        ccur = cnxt;
        cnxt = tc;
        ncur = nnxt;
    }
    splitter *spl = calloc(1, sizeof *spl);
    if (!spl) goto done;
    spl->W = W;
    bool prev_special = true;
    rc = 0;
    for (size_t f = 0; f < ncur && rc == 0; f++) {
        if (cur[f].special) {
            prev_special = true;
            continue;
        }
        rc = split_fragment(spl, text + cur[f].off, cur[f].len, prev_special);
        prev_special = false;
    }
    free(spl);
done:
    free(cur);
    free(nxt);
    return rc;
}
