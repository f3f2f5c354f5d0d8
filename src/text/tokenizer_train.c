/* BPE training of a SentencePiece-style ("llama") vocabulary; the rules are
 * in include/mope/tokenizer.h.
 *
 * The trainer keeps, for every distinct word, the segmentation the "llama"
 * encoder would produce with the vocabulary so far.  That segmentation is a
 * fixpoint (no adjacent pair concatenates to a merged piece), so adding a
 * piece p only changes words holding an adjacent pair whose text is p; those
 * are found through per-pair word lists of every two-piece split of p, and
 * are re-segmented greedily (best score first, leftmost on ties) exactly as
 * the encoder does.  Pair counts are updated for those words only, and a
 * lazy max-heap (entries re-pushed on every count change, stale ones
 * skipped) yields the next most frequent pair. */
#include "text/tokenizer_train_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "mope/io.h"

#define N_FIXED_CONTROL 3

/* ---- pair statistics ---- */
typedef struct pair {
    uint64_t key; /* left << 32 | right */
    int64_t count, count0;
    uint32_t stamp;
    bool banned;
    int32_t *w; /* words that held this pair at some point (may repeat / be stale) */
    size_t nw, cw;
} pair;

typedef struct hent {
    int64_t count;
    uint64_t key;
    int32_t pair;
} hent;

typedef struct trainer {
    strtab P;         /* the vocabulary being built */
    uint16_t *nchars; /* characters per piece ("▁" counts one) */
    uint8_t *ptype;
    size_t pcap;
    counts W;         /* distinct words */
    int32_t first_merge;
    int max_chars;
    int32_t *sym;     /* symbols of all words, word w at sym + soff[w], symn[w] of them */
    size_t *soff;
    int32_t *symn;
    uint32_t *wstamp;
    pair *pr;
    size_t npr, cpr;
    int32_t *pht;
    uint32_t pmask;
    hent *heap;
    size_t nheap, cheap;
    int32_t *touched;
    size_t ntouched, ctouched;
    uint32_t stamp;
    uint8_t *changed; /* scratch per word position */
    int64_t n_extra;
} trainer;

/* The caller has checked that the text is not a piece yet. */
static int piece_add(trainer *T, const char *s, size_t n, int nchars, int type) {
    bool added;
    int32_t id = tt_st_intern(&T->P, s, n, &added);
    if (id < 0 || tt_grow((void **)&T->nchars, &T->pcap, (size_t)T->P.n, sizeof *T->nchars)) return MOPE_ENOMEM;
    size_t cap = T->pcap;
    uint8_t *ty = realloc(T->ptype, cap);
    if (!ty) return MOPE_ENOMEM;
    T->ptype = ty;
    T->nchars[id] = (uint16_t)nchars;
    T->ptype[id] = (uint8_t)type;
    return 0;
}

static int32_t pair_find(const trainer *T, uint64_t key) {
    for (uint32_t i = (uint32_t)tok_hash_pair(key) & T->pmask;; i = (i + 1) & T->pmask) {
        int32_t p = T->pht[i];
        if (p < 0 || T->pr[p].key == key) return p;
    }
}

static int32_t pair_get(trainer *T, uint64_t key) {
    int32_t p = pair_find(T, key);
    if (p >= 0) return p;
    if (T->npr >= INT32_MAX) return -1;
    if (tt_grow((void **)&T->pr, &T->cpr, T->npr + 1, sizeof *T->pr)) return -1;
    p = (int32_t)T->npr++;
    T->pr[p] = (pair){.key = key, .stamp = UINT32_MAX};
    if ((uint64_t)T->npr * 2 > (uint64_t)T->pmask + 1) {
        uint32_t size = 2 * (T->pmask + 1);
        int32_t *ht = malloc((size_t)size * sizeof *ht);
        if (!ht) return -1;
        for (uint32_t i = 0; i < size; i++) ht[i] = -1;
        for (size_t q = 0; q < T->npr; q++) {
            uint32_t i = (uint32_t)tok_hash_pair(T->pr[q].key) & (size - 1);
            while (ht[i] >= 0) i = (i + 1) & (size - 1);
            ht[i] = (int32_t)q;
        }
        free(T->pht);
        T->pht = ht;
        T->pmask = size - 1;
    } else {
        uint32_t i = (uint32_t)tok_hash_pair(key) & T->pmask;
        while (T->pht[i] >= 0) i = (i + 1) & T->pmask;
        T->pht[i] = p;
    }
    return p;
}

static bool eligible(const trainer *T, int32_t a, int32_t b) {
    return a >= 0 && b >= 0 && T->nchars[a] + T->nchars[b] <= T->max_chars;
}

/* count += delta for pair (a, b); with add_word, word w joins its list. */
static int pair_update(trainer *T, int32_t a, int32_t b, int64_t delta, int32_t w, bool add_word) {
    int32_t p = pair_get(T, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (p < 0) return MOPE_ENOMEM;
    pair *q = &T->pr[p];
    if (q->stamp != T->stamp) {
        q->stamp = T->stamp;
        q->count0 = q->count;
        if (tt_grow((void **)&T->touched, &T->ctouched, T->ntouched + 1, sizeof *T->touched)) return MOPE_ENOMEM;
        T->touched[T->ntouched++] = p;
    }
    q->count += delta;
    if (add_word) {
        if (tt_grow((void **)&q->w, &q->cw, q->nw + 1, sizeof *q->w)) return MOPE_ENOMEM;
        q->w[q->nw++] = w;
    }
    return 0;
}

/* Max-heap: higher count first, then smaller key (left id, then right id). */
static bool hent_better(const hent *x, const hent *y) {
    return x->count > y->count || (x->count == y->count && x->key < y->key);
}

static int heap_push(trainer *T, int32_t p) {
    if (tt_grow((void **)&T->heap, &T->cheap, T->nheap + 1, sizeof *T->heap)) return MOPE_ENOMEM;
    size_t i = T->nheap++;
    hent e = {T->pr[p].count, T->pr[p].key, p};
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!hent_better(&e, &T->heap[up])) break;
        T->heap[i] = T->heap[up];
        i = up;
    }
    T->heap[i] = e;
    return 0;
}

static hent heap_pop(trainer *T) {
    hent top = T->heap[0], last = T->heap[--T->nheap];
    size_t i = 0, n = T->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hent_better(&T->heap[c + 1], &T->heap[c])) c++;
        if (!hent_better(&T->heap[c], &last)) break;
        T->heap[i] = T->heap[c];
        i = c;
    }
    if (n) T->heap[i] = last;
    return top;
}

/* Pushes the pairs whose count changed in this round. */
static int flush_touched(trainer *T) {
    for (size_t k = 0; k < T->ntouched; k++) {
        pair *q = &T->pr[T->touched[k]];
        if (q->count != q->count0 && q->count > 0 && !q->banned && heap_push(T, T->touched[k])) return MOPE_ENOMEM;
    }
    T->ntouched = 0;
    return 0;
}

/* Id of the merged piece spelled by a + b, or -1. */
static int32_t concat_merged(const trainer *T, int32_t a, int32_t b, char *buf) {
    const strtab *P = &T->P;
    memcpy(buf, tt_st_str(P, a), P->len[a]);
    memcpy(buf + P->len[a], tt_st_str(P, b), P->len[b]);
    int32_t id = tt_st_find(P, buf, (size_t)P->len[a] + P->len[b]);
    return id >= T->first_merge ? id : -1;
}

static int word_pairs(trainer *T, int32_t w, int64_t sign, bool only_changed) {
    int32_t *s = T->sym + T->soff[w];
    int64_t c = T->W.count[w] * sign;
    for (int32_t i = 0; i + 1 < T->symn[w]; i++) {
        if (!eligible(T, s[i], s[i + 1])) continue;
        bool fresh = only_changed && (T->changed[i] || T->changed[i + 1]);
        if (pair_update(T, s[i], s[i + 1], c, w, fresh)) return MOPE_ENOMEM;
    }
    return 0;
}

/* Re-segments word w after piece `id` = left + right was added. */
static int resegment(trainer *T, int32_t w, int32_t id, int32_t left, int32_t right) {
    int32_t *s = T->sym + T->soff[w];
    int32_t n = T->symn[w];
    char buf[2 * MAX_WORD_BYTES + 8];
    uint32_t plen = T->P.len[id];
    bool hit = false;
    for (int32_t i = 0; i + 1 < n && !hit; i++)
        hit = s[i] >= 0 && s[i + 1] >= 0 && T->P.len[s[i]] + T->P.len[s[i + 1]] == plen &&
              concat_merged(T, s[i], s[i + 1], buf) == id;
    if (!hit) return 0; /* a stale list entry */
    if (word_pairs(T, w, -1, false)) return MOPE_ENOMEM;
    memset(T->changed, 0, (size_t)n);
    for (;;) {
        int32_t best = INT32_MAX, at = -1;
        for (int32_t i = 0; i + 1 < n; i++) {
            if (!eligible(T, s[i], s[i + 1])) continue;
            int32_t m = concat_merged(T, s[i], s[i + 1], buf);
            if (m >= 0 && m < best) {
                best = m;
                at = i;
            }
        }
        if (at < 0) break;
        if (!(best == id && s[at] == left && s[at + 1] == right)) T->n_extra++;
        s[at] = best;
        T->changed[at] = 1;
        memmove(s + at + 1, s + at + 2, (size_t)(n - at - 2) * sizeof *s);
        memmove(T->changed + at + 1, T->changed + at + 2, (size_t)(n - at - 2));
        n--;
    }
    T->symn[w] = n;
    return word_pairs(T, w, +1, true);
}

/* ---- training ---- */
void mope_tokenizer_train_opts_init(mope_tokenizer_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->min_freq = 2;
    o->max_piece_chars = 16;
    o->char_coverage = 0.9995;
}

void mope_tokenizer_train_result_free(mope_tokenizer_train_result *r) {
    if (!r) return;
    mope_tokenizer_free(r->tok);
    free(r->merges);
    memset(r, 0, sizeof *r);
}

static void trainer_free(trainer *T) {
    tt_st_free(&T->P);
    free(T->nchars);
    free(T->ptype);
    tt_counts_free(&T->W);
    free(T->sym);
    free(T->soff);
    free(T->symn);
    free(T->wstamp);
    for (size_t p = 0; p < T->npr; p++) free(T->pr[p].w);
    free(T->pr);
    free(T->pht);
    free(T->heap);
    free(T->touched);
    free(T->changed);
}

static void report(const mope_tokenizer_train_opts *o, int phase, int64_t done, int64_t total, double t0) {
    if (!o->progress) return;
    mope_tokenizer_train_progress p = {phase, done, total, mope_time_s() - t0};
    o->progress(o->progress_user, &p);
}

static int check_opts(const mope_tokenizer_train_opts *o, mope_error *err) {
    if (!o) return mope_error_set(err, MOPE_EINVAL, "tokenizer training: NULL options");
    if (!o->text && o->n_files <= 0)
        return mope_error_set(err, MOPE_EINVAL, "tokenizer training: no training data (neither text nor files)");
    if (o->n_files < 0 || (o->n_files > 0 && !o->files))
        return mope_error_set(err, MOPE_EINVAL, "tokenizer training: bad file list");
    if (o->n_specials < 0 || (o->n_specials > 0 && !o->specials))
        return mope_error_set(err, MOPE_EINVAL, "tokenizer training: bad special-token list");
    if (o->min_freq < 1) return mope_error_set(err, MOPE_EINVAL, "tokenizer training: min_freq must be >= 1");
    if (o->max_piece_chars < 2 || o->max_piece_chars > 256)
        return mope_error_set(err, MOPE_EINVAL, "tokenizer training: max_piece_chars must be in 2..256, got %d",
                              (int)o->max_piece_chars);
    if (!(o->char_coverage > 0 && o->char_coverage <= 1))
        return mope_error_set(err, MOPE_EINVAL, "tokenizer training: char_coverage must be in (0, 1]");
    int64_t base = N_FIXED_CONTROL + 256 + (int64_t)o->n_specials;
    if (o->vocab_size < base)
        return mope_error_set(err, MOPE_EINVAL,
                              "tokenizer training: vocab size %d is smaller than the fixed base of %lld tokens "
                              "(3 control + 256 byte + %d special)",
                              (int)o->vocab_size, (long long)base, o->n_specials);
    if (o->vocab_size > (1 << 22))
        return mope_error_set(err, MOPE_EINVAL, "tokenizer training: vocab size %d is too large (max %d)",
                              (int)o->vocab_size, 1 << 22);
    return 0;
}

/* Specials: the three controls and the user's, checked and added as pieces. */
static int add_specials(trainer *T, const mope_tokenizer_train_opts *o, mope_error *err) {
    static const char *const ctl[N_FIXED_CONTROL] = {"<unk>", "<s>", "</s>"};
    static const int ctl_type[N_FIXED_CONTROL] = {MOPE_TOKEN_UNKNOWN, MOPE_TOKEN_CONTROL, MOPE_TOKEN_CONTROL};
    for (int i = 0; i < N_FIXED_CONTROL; i++)
        if (piece_add(T, ctl[i], strlen(ctl[i]), 1, ctl_type[i])) goto nomem;
    for (int i = 0; i < o->n_specials; i++) {
        const char *s = o->specials[i];
        size_t n = s ? strlen(s) : 0;
        if (n == 0) return mope_error_set(err, MOPE_EINVAL, "tokenizer training: special token %d is empty", i);
        if (n > 1024) return mope_error_set(err, MOPE_EINVAL, "tokenizer training: special token %d is too long", i);
        if (tt_st_find(&T->P, s, n) >= 0)
            return mope_error_set(err, MOPE_EINVAL, "tokenizer training: special token \"%s\" given twice or reserved",
                                  s);
        /* spaces become "▁" only outside special tokens: a piece could then
         * spell the token's text, and the encoder would merge into it */
        if (strchr(s, ' ') || strstr(s, U2581))
            return mope_error_set(err, MOPE_EINVAL, "tokenizer training: special token \"%s\" contains a space", s);
        int ty = o->special_control && o->special_control[i] ? MOPE_TOKEN_CONTROL : MOPE_TOKEN_USER_DEFINED;
        if (piece_add(T, s, n, 1, ty)) goto nomem;
    }
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (tt_st_find(&T->P, buf, 6) >= 0)
            return mope_error_set(err, MOPE_EINVAL, "tokenizer training: special token \"%s\" is a byte token", buf);
        if (piece_add(T, buf, 6, 1, MOPE_TOKEN_BYTE)) goto nomem;
    }
    return 0;
nomem:
    return mope_error_set(err, MOPE_ENOMEM, "tokenizer training: out of memory");
}

static int read_inputs(trainer *T, const mope_tokenizer_train_opts *o, int64_t *n_bytes, double t0,
                       mope_error *err) {
    int32_t n_sp = N_FIXED_CONTROL + o->n_specials;
    tok_str *sp = malloc((size_t)n_sp * sizeof *sp);
    int32_t *order = malloc((size_t)n_sp * sizeof *order);
    int rc = 0;
    if (!sp || !order) goto nomem;
    /* longest first, then by id: the encoder's order */
    for (int32_t i = 0; i < n_sp; i++) order[i] = i;
    for (int32_t i = 1; i < n_sp; i++)
        for (int32_t j = i; j > 0 && T->P.len[order[j]] > T->P.len[order[j - 1]]; j--) {
            int32_t x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    for (int32_t i = 0; i < n_sp; i++) sp[i] = (tok_str){tt_st_str(&T->P, order[i]), T->P.len[order[i]]};
    int n_inputs = (o->text ? 1 : 0) + o->n_files;
    *n_bytes = 0;
    if (o->text) {
        if (o->text_len == 0) {
            rc = mope_error_set(err, MOPE_EINVAL, "tokenizer training: the training text is empty");
            goto done;
        }
        if (tt_count_text(&T->W, o->text, o->text_len, sp, n_sp)) goto nomem;
        *n_bytes += (int64_t)o->text_len;
        report(o, 0, 1, n_inputs, t0);
    }
    for (int f = 0; f < o->n_files; f++) {
        void *data = NULL;
        size_t n = 0;
        if (!o->files[f]) {
            rc = mope_error_set(err, MOPE_EINVAL, "tokenizer training: data file %d is NULL", f);
            goto done;
        }
        if ((rc = mope_io_read_file(o->files[f], &data, &n, err)) != 0) {
            mope_error_prefix(err, "tokenizer training: data file");
            goto done;
        }
        if (n == 0) {
            free(data);
            rc = mope_error_set(err, MOPE_EINVAL, "tokenizer training: data file %s is empty", o->files[f]);
            goto done;
        }
        rc = tt_count_text(&T->W, data, n, sp, n_sp);
        free(data);
        if (rc) goto nomem;
        *n_bytes += (int64_t)n;
        report(o, 0, (o->text ? 1 : 0) + f + 1, n_inputs, t0);
    }
    if (T->W.S.n == 0) rc = mope_error_set(err, MOPE_EINVAL, "tokenizer training: the data holds no words");
    goto done;
nomem:
    rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer training: out of memory");
done:
    free(sp);
    free(order);
    return rc;
}

static bool valid_char(const char *s, size_t l) {
    return !(l == 1 && (uint8_t)s[0] >= 0x80);
}

/* Characters by count, most frequent first, then by their bytes. */
static int cmp_char(const void *x, const void *y, void *ctx) {
    const counts *C = ctx;
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    if (C->count[a] != C->count[b]) return C->count[a] > C->count[b] ? -1 : 1;
    uint32_t la = C->S.len[a], lb = C->S.len[b];
    int c = memcmp(tt_st_str(&C->S, a), tt_st_str(&C->S, b), la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* Picks the base characters and turns every word into symbols. */
static int build_symbols(trainer *T, const mope_tokenizer_train_opts *o, int32_t *n_chars, mope_error *err) {
    counts *W = &T->W, C = {0};
    int32_t *order = NULL, *cid = NULL;
    size_t total_syms = 0;
    int rc = 0;
    for (int32_t w = 0; w < W->S.n; w++) {
        const char *s = tt_st_str(&W->S, w);
        for (size_t i = 0, n = W->S.len[w]; i < n;) {
            size_t l = tt_char_len(s, i, n);
            total_syms++;
            C.total += W->count[w];
            if (valid_char(s + i, l) && tt_count_add(&C, s + i, l, W->count[w])) goto nomem;
            i += l;
        }
    }
    order = malloc(((size_t)C.S.n + 1) * sizeof *order);
    cid = malloc(((size_t)C.S.n + 1) * sizeof *cid);
    if (!order || !cid) goto nomem;
    for (int32_t c = 0; c < C.S.n; c++) {
        order[c] = c;
        cid[c] = -1;
    }
    qsort_r(order, (size_t)C.S.n, sizeof *order, cmp_char, &C);
    int64_t room = (int64_t)o->vocab_size - T->P.n, covered = 0, keep = 0;
    while (keep < C.S.n && keep < room && (double)covered < o->char_coverage * (double)C.total)
        covered += C.count[order[keep++]];
    /* "▁" always gets a piece when there is room: every text starts with it */
    int32_t sp = tt_st_find(&C.S, U2581, 3);
    if (sp >= 0 && keep < room)
        for (int64_t c = keep; c < C.S.n; c++)
            if (order[c] == sp) {
                memmove(order + keep + 1, order + keep, (size_t)(c - keep) * sizeof *order);
                order[keep++] = sp;
            }
    int32_t base = T->P.n;
    for (int64_t c = 0; c < keep; c++) {
        if (tt_st_find(&T->P, tt_st_str(&C.S, order[c]), C.S.len[order[c]]) >= 0) continue; /* a 1-char special */
        cid[order[c]] = T->P.n;
        if (piece_add(T, tt_st_str(&C.S, order[c]), C.S.len[order[c]], 1, MOPE_TOKEN_NORMAL)) goto nomem;
    }
    *n_chars = T->P.n - base;
    T->first_merge = T->P.n;
    T->sym = malloc((total_syms ? total_syms : 1) * sizeof *T->sym);
    T->soff = malloc((size_t)W->S.n * sizeof *T->soff);
    T->symn = malloc((size_t)W->S.n * sizeof *T->symn);
    T->wstamp = calloc((size_t)W->S.n, sizeof *T->wstamp);
    T->changed = malloc(MAX_WORD_BYTES + 8);
    if (!T->sym || !T->soff || !T->symn || !T->wstamp || !T->changed) goto nomem;
    size_t at = 0;
    for (int32_t w = 0; w < W->S.n; w++) {
        const char *s = tt_st_str(&W->S, w);
        T->soff[w] = at;
        int32_t k = 0;
        for (size_t i = 0, n = W->S.len[w]; i < n; k++) {
            size_t l = tt_char_len(s, i, n);
            int32_t c = valid_char(s + i, l) ? tt_st_find(&C.S, s + i, l) : -1;
            T->sym[at + (size_t)k] = c >= 0 ? cid[c] : -1;
            i += l;
        }
        T->symn[w] = k;
        at += (size_t)k;
    }
    goto done;
nomem:
    rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer training: out of memory");
done:
    tt_counts_free(&C);
    free(order);
    free(cid);
    return rc;
}

/* Words holding an adjacent pair spelled like piece id: those on the lists
 * of every split of its text into two pieces. */
static int merge_piece(trainer *T, int32_t id, int32_t left, int32_t right) {
    T->stamp++;
    const char *p = tt_st_str(&T->P, id);
    uint32_t n = T->P.len[id];
    for (uint32_t k = 1; k < n; k++) {
        if (((uint8_t)p[k] & 0xc0) == 0x80) continue; /* not a character boundary */
        int32_t a = tt_st_find(&T->P, p, k), b = tt_st_find(&T->P, p + k, n - k);
        if (a < 0 || b < 0 || !eligible(T, a, b)) continue;
        int32_t q = pair_find(T, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
        if (q < 0) continue;
        /* resegment() may append to this list (and move it): index, don't hold pointers */
        for (size_t i = 0; i < T->pr[q].nw; i++) {
            int32_t w = T->pr[q].w[i];
            if (T->wstamp[w] == T->stamp) continue;
            T->wstamp[w] = T->stamp;
            if (resegment(T, w, id, left, right)) return MOPE_ENOMEM;
        }
    }
    return flush_touched(T);
}

int mope_tokenizer_train_bpe(const mope_tokenizer_train_opts *o, mope_tokenizer_train_result *out, mope_error *err) {
    if (!out) return mope_error_set(err, MOPE_EINVAL, "tokenizer training: NULL result");
    memset(out, 0, sizeof *out);
    int rc = check_opts(o, err);
    if (rc) return rc;
    double t0 = mope_time_s();
    trainer T = {.max_chars = o->max_piece_chars};
    const char **toks = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL, n_chars = 0;
    if ((rc = add_specials(&T, o, err)) || (rc = read_inputs(&T, o, &out->n_bytes, t0, err)) ||
        (rc = build_symbols(&T, o, &n_chars, err)))
        goto done;
    T.pht = malloc(1024 * sizeof *T.pht);
    if (!T.pht) goto nomem;
    for (int i = 0; i < 1024; i++) T.pht[i] = -1;
    T.pmask = 1023;
    T.stamp = 1;
    for (int32_t w = 0; w < T.W.S.n; w++) {
        memset(T.changed, 1, (size_t)T.symn[w]);
        if (word_pairs(&T, w, +1, true)) goto nomem;
    }
    if (flush_touched(&T)) goto nomem;
    int32_t target = o->vocab_size - T.first_merge;
    out->merges = malloc(((size_t)target + 1) * 2 * sizeof *out->merges);
    if (!out->merges) goto nomem;
    char buf[2 * MAX_WORD_BYTES + 8];
    while (out->n_merges < target && T.nheap > 0) {
        hent e = heap_pop(&T);
        pair *q = &T.pr[e.pair];
        if (q->banned || q->count != e.count) continue; /* stale: a fresher entry exists */
        if (q->count < o->min_freq) break;
        int32_t a = (int32_t)(q->key >> 32), b = (int32_t)(uint32_t)q->key;
        size_t n = (size_t)T.P.len[a] + T.P.len[b];
        memcpy(buf, tt_st_str(&T.P, a), T.P.len[a]);
        memcpy(buf + T.P.len[a], tt_st_str(&T.P, b), T.P.len[b]);
        if (tt_st_find(&T.P, buf, n) >= 0) { /* e.g. text "<0x41>": the byte token's name */
            q->banned = true;
            continue;
        }
        int32_t id = T.P.n;
        if (piece_add(&T, buf, n, T.nchars[a] + T.nchars[b], MOPE_TOKEN_NORMAL) || merge_piece(&T, id, a, b))
            goto nomem;
        out->merges[2 * out->n_merges] = a;
        out->merges[2 * out->n_merges + 1] = b;
        out->n_merges++;
        report(o, 1, out->n_merges, target, t0);
    }

    /* the tokenizer: scores -i for merge i, base characters below them */
    int32_t nv = T.P.n;
    toks = malloc((size_t)nv * sizeof *toks);
    lens = malloc((size_t)nv * sizeof *lens);
    scores = malloc((size_t)nv * sizeof *scores);
    types = malloc((size_t)nv * sizeof *types);
    if (!toks || !lens || !scores || !types) goto nomem;
    for (int32_t i = 0; i < nv; i++) {
        toks[i] = tt_st_str(&T.P, i);
        lens[i] = T.P.len[i];
        types[i] = T.ptype[i];
        int32_t r = i - T.first_merge, c = i - (T.first_merge - n_chars);
        scores[i] = r >= 0 ? (float)-r : c >= 0 ? (float)-(out->n_merges + c) : 0.0f;
    }
    mope_tokenizer_params tp;
    mope_tokenizer_params_init(&tp);
    tp.model = "llama";
    tp.pre = "default";
    tp.n_tokens = nv;
    tp.tokens = toks;
    tp.token_lens = lens;
    tp.scores = scores;
    tp.types = types;
    tp.unk_id = 0;
    tp.bos_id = 1;
    tp.eos_id = 2;
    tp.add_bos = 1;
    tp.add_eos = 0;
    tp.add_space_prefix = 1;
    if (!(out->tok = mope_tokenizer_new(&tp, err))) {
        rc = err ? err->code : MOPE_EINVAL;
        goto done;
    }
    out->first_merge_id = T.first_merge;
    out->n_base_chars = n_chars;
    out->n_extra_merges = T.n_extra;
    out->n_words = T.W.total;
    out->n_unique_words = T.W.S.n;
    out->seconds = mope_time_s() - t0;
    goto done;
nomem:
    rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer training: out of memory");
done:
    if (rc) mope_tokenizer_train_result_free(out);
    trainer_free(&T);
    free(toks);
    free(lens);
    free(scores);
    free(types);
    return rc;
}

int mope_tokenizer_train_save(const mope_tokenizer_train_result *r, const mope_tokenizer_train_opts *o,
                              const char *path, mope_error *err) {
    if (!r || !r->tok || !o || !path)
        return mope_error_set(err, MOPE_EINVAL, "tokenizer training: save needs a result, its options and a path");
    mope_gguf_writer *w = mope_gguf_writer_new();
    if (!w) return mope_error_set(err, MOPE_ENOMEM, "tokenizer training: out of memory");
    int rc = 0, set = mope_gguf_set_str(w, "general.architecture", "llama");
    set |= mope_gguf_set_str(w, "general.name", "mope BPE tokenizer");
    if (set == 0 && (rc = mope_tokenizer_write_gguf_kv(r->tok, w, err)) == 0) {
        set |= mope_gguf_set_str(w, "mope.tokenizer.trainer", "bpe");
        set |= mope_gguf_set_u32(w, "mope.tokenizer.vocab_size_target", (uint32_t)o->vocab_size);
        set |= mope_gguf_set_u32(w, "mope.tokenizer.min_freq", (uint32_t)o->min_freq);
        set |= mope_gguf_set_u32(w, "mope.tokenizer.max_piece_chars", (uint32_t)o->max_piece_chars);
        set |= mope_gguf_set_f64(w, "mope.tokenizer.char_coverage", o->char_coverage);
        set |= mope_gguf_set_u32(w, "mope.tokenizer.n_specials", (uint32_t)o->n_specials);
        set |= mope_gguf_set_u32(w, "mope.tokenizer.n_base_chars", (uint32_t)r->n_base_chars);
        set |= mope_gguf_set_u32(w, "mope.tokenizer.n_merges", (uint32_t)r->n_merges);
        set |= mope_gguf_set_u64(w, "mope.tokenizer.training_bytes", (uint64_t)r->n_bytes);
        set |= mope_gguf_set_u64(w, "mope.tokenizer.training_words", (uint64_t)r->n_words);
        set |= mope_gguf_set_u64(w, "mope.tokenizer.training_unique_words", (uint64_t)r->n_unique_words);
    }
    if (set) rc = mope_error_set(err, MOPE_ENOMEM, "tokenizer training: out of memory");
    if (rc == 0) rc = mope_gguf_writer_write(w, path, err);
    mope_gguf_writer_free(w);
    return rc;
}
