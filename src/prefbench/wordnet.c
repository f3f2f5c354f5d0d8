/* WordNet 3.0 noun database reader (formats: wndb(5WN), cntlist(5WN)).
 *
 * Each file is read into one buffer and parsed in place: strings are cut with
 * NULs and underscores become spaces, so the whole noun database costs a few
 * allocations and loads in a fraction of a second. */
#include "mope/prefbench.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- a small string -> int map (open addressing, keys not owned) ---- */
typedef struct strmap {
    const char **keys;
    int32_t *vals;
    size_t cap, n;
} strmap;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int strmap_init(strmap *m, size_t expect) {
    size_t cap = 64;
    while (cap < expect * 2) cap <<= 1;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    m->cap = cap;
    m->n = 0;
    return (m->keys && m->vals) ? 0 : -1;
}

static void strmap_free(strmap *m) {
    free(m->keys);
    free(m->vals);
}

/* Returns the slot of key (existing or the empty one where it would go). */
static size_t strmap_slot(const strmap *m, const char *key) {
    size_t i = (size_t)fnv1a(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

static int strmap_grow(strmap *m) {
    strmap bigger;
    if (strmap_init(&bigger, m->cap) != 0) {
        strmap_free(&bigger);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            size_t s = strmap_slot(&bigger, m->keys[i]);
            bigger.keys[s] = m->keys[i];
            bigger.vals[s] = m->vals[i];
            bigger.n++;
        }
    strmap_free(m);
    *m = bigger;
    return 0;
}

/* Pointer to the value for key, inserting it with `init` when new. */
static int32_t *strmap_put(strmap *m, const char *key, int32_t init) {
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m) != 0) return NULL;
    size_t s = strmap_slot(m, key);
    if (!m->keys[s]) {
        m->keys[s] = key;
        m->vals[s] = init;
        m->n++;
    }
    return &m->vals[s];
}

static const int32_t *strmap_get(const strmap *m, const char *key) {
    if (!m->cap) return NULL;
    size_t s = strmap_slot(m, key);
    return m->keys[s] ? &m->vals[s] : NULL;
}

/* ---- the database ---- */
#define N_EXC 3

struct mope_wordnet {
    char *data_buf, *index_buf, *cnt_buf, *exc_buf[N_EXC];
    mope_wn_synset *syn;
    int n_syn;
    const char **lemma_pool, **example_pool;
    mope_wn_pointer *ptr_pool;
    /* index.noun */
    int n_idx;
    const char **idx_lemma;
    int32_t *idx_start, *idx_n, *idx_syn, *idx_cnt;
    strmap idx_map;
    /* cntlist.rev, all parts of speech: word -> summed count */
    strmap count_map;
    /* *.exc: inflected form -> base form (any part of speech) */
    strmap exc_map;
    const char **exc_base;
    int n_exc;
    /* noun.exc reversed: base -> plural */
    strmap plural_map;
    const char **plural_str;
    int n_plural;
};

static const char *const LEXNAMES[] = {
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time"};

const char *mope_wordnet_lexname(int lexfile) {
    if (lexfile < 0 || lexfile >= (int)(sizeof LEXNAMES / sizeof *LEXNAMES)) return "";
    return LEXNAMES[lexfile];
}

static char *read_all(const char *dir, const char *name, size_t *len, mope_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        mope_error_set(err, MOPE_EIO,
                       "cannot open WordNet file %s: %s (install wordnet-base: scripts/deps.sh)", path,
                       strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        mope_error_set(err, MOPE_EIO, "cannot read %s", path);
        return NULL;
    }
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        fclose(f);
        mope_error_set(err, MOPE_ENOMEM, "out of memory reading %s", path);
        return NULL;
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        fclose(f);
        mope_error_set(err, MOPE_EIO, "short read on %s", path);
        return NULL;
    }
    fclose(f);
    buf[sz] = 0;
    if (memchr(buf, 0, (size_t)sz)) {
        free(buf);
        mope_error_set(err, MOPE_EFORMAT, "%s: contains NUL bytes (not a WordNet text file)", path);
        return NULL;
    }
    *len = (size_t)sz;
    return buf;
}

/* Cuts the next space-separated token of a line; NULL at the end. */
static char *next_tok(char **p, char *end) {
    char *s = *p;
    while (s < end && *s == ' ') s++;
    if (s >= end) return NULL;
    char *t = s;
    while (t < end && *t != ' ') t++;
    if (t < end) *t++ = 0;
    *p = t;
    return s;
}

static int parse_uint(const char *s, int base, int max_digits, uint32_t *out) {
    if (!s || !*s) return -1;
    int n = 0;
    uint64_t v = 0;
    for (; *s; s++, n++) {
        int d;
        if (*s >= '0' && *s <= '9') d = *s - '0';
        else if (base == 16 && *s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
        else if (base == 16 && *s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
        else return -1;
        v = v * (uint64_t)base + (uint64_t)d;
        if (n >= max_digits || v > 0xffffffffull) return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static void underscores_to_spaces(char *s) {
    for (; *s; s++)
        if (*s == '_') *s = ' ';
}

static int ptr_kind(const char *sym) {
    static const char *const syms[MOPE_WN_PTR_KIND_COUNT] = {"@", "@i", "~", "~i", "%p", "%m", "%s",
                                                             "#p", "#m", "#s", ";c", "-c"};
    for (int k = 0; k < MOPE_WN_PTR_KIND_COUNT; k++)
        if (strcmp(sym, syms[k]) == 0) return k;
    return -1;
}

/* Growable arrays that hold indices during parsing (pointers are fixed at the
 * end because the pools move while they grow). */
#define GROW(arr, n, cap)                                                     \
    do {                                                                      \
        if ((n) >= (cap)) {                                                   \
            size_t nc_ = (cap) ? (cap) * 2 : 1024;                            \
            void *p_ = realloc((arr), nc_ * sizeof *(arr));                   \
            if (!p_) return mope_error_set(err, MOPE_ENOMEM, "out of memory"); \
            (arr) = p_;                                                       \
            (cap) = nc_;                                                      \
        }                                                                     \
    } while (0)

/* The same inside parse_data, which must free its scratch arrays on failure. */
#define GROW_D(arr, n, cap)                                                   \
    do {                                                                      \
        if ((n) >= (cap)) {                                                   \
            size_t nc_ = (cap) ? (cap) * 2 : 1024;                            \
            void *p_ = realloc((arr), nc_ * sizeof *(arr));                   \
            if (!p_) {                                                        \
                rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");       \
                goto done;                                                    \
            }                                                                 \
            (arr) = p_;                                                       \
            (cap) = nc_;                                                      \
        }                                                                     \
    } while (0)

typedef struct syn_tmp {
    int lemma0, ex0, ptr0;
} syn_tmp;

static int parse_data(mope_wordnet *wn, size_t len, mope_error *err) {
    char *p = wn->data_buf, *end = p + len;
    size_t cap_syn = 0, cap_lem = 0, cap_ex = 0, cap_ptr = 0, n_lem = 0, n_ex = 0, n_ptr = 0;
    size_t cap_tmp = 0;
    syn_tmp *tmp = NULL;
    uint32_t *raw_target = NULL;
    size_t cap_raw = 0;
    int line = 0, rc = 0;
    uint32_t last_off = 0;
#define FAIL(...)                                                        \
    do {                                                                 \
        rc = mope_error_set(err, MOPE_EFORMAT, __VA_ARGS__);           \
        mope_error_prefix(err, "data.noun line %d", line);             \
        goto done;                                                       \
    } while (0)
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line++;
        char *ln = p;
        p = eol + 1;
        if (eol > ln && eol[-1] == '\r') eol--;
        *eol = 0;
        if (ln == eol || ln[0] == ' ') continue; /* license header */
        char *bar = strstr(ln, " | ");
        char *gloss = NULL;
        if (bar) {
            *bar = 0;
            gloss = bar + 3;
        } else if (eol - ln >= 2 && strcmp(eol - 2, " |") == 0) {
            eol[-2] = 0;
            gloss = eol;
        } else {
            FAIL("%s", "missing ' | ' before the gloss");
        }
        char *q = ln, *fe = ln + strlen(ln);
        uint32_t off, lexfile, wcnt, pcnt;
        if (parse_uint(next_tok(&q, fe), 10, 8, &off) != 0) FAIL("%s", "bad synset offset");
        if (wn->n_syn > 0 && off <= last_off) FAIL("offset %u not increasing", off);
        last_off = off;
        if (parse_uint(next_tok(&q, fe), 10, 2, &lexfile) != 0 || lexfile < 3 || lexfile > 28)
            FAIL("%s", "bad lexicographer file number");
        char *ss = next_tok(&q, fe);
        if (!ss || strcmp(ss, "n") != 0) FAIL("%s", "synset type is not 'n'");
        if (parse_uint(next_tok(&q, fe), 16, 2, &wcnt) != 0 || wcnt == 0)
            FAIL("%s", "bad word count");
        GROW_D(wn->syn, (size_t)wn->n_syn, cap_syn);
        GROW_D(tmp, (size_t)wn->n_syn, cap_tmp);
        mope_wn_synset *s = &wn->syn[wn->n_syn];
        memset(s, 0, sizeof *s);
        s->offset = off;
        s->lexfile = (int)lexfile;
        s->n_lemmas = (int)wcnt;
        tmp[wn->n_syn].lemma0 = (int)n_lem;
        for (uint32_t i = 0; i < wcnt; i++) {
            char *w = next_tok(&q, fe);
            uint32_t lexid;
            if (!w || parse_uint(next_tok(&q, fe), 16, 1, &lexid) != 0) FAIL("word %u missing or bad lex_id", i + 1);
            underscores_to_spaces(w);
            GROW_D(wn->lemma_pool, n_lem, cap_lem);
            wn->lemma_pool[n_lem++] = w;
        }
        if (parse_uint(next_tok(&q, fe), 10, 3, &pcnt) != 0) FAIL("%s", "bad pointer count");
        tmp[wn->n_syn].ptr0 = (int)n_ptr;
        for (uint32_t i = 0; i < pcnt; i++) {
            char *sym = next_tok(&q, fe), *to = next_tok(&q, fe), *pos = next_tok(&q, fe),
                 *st = next_tok(&q, fe);
            uint32_t toff, stv;
            if (!sym || parse_uint(to, 10, 8, &toff) != 0 || !pos || strlen(pos) != 1 ||
                !strchr("nvasr", pos[0]) || parse_uint(st, 16, 4, &stv) != 0)
                FAIL("pointer %u of %u is malformed", i + 1, pcnt);
            int k = ptr_kind(sym);
            if (k < 0 || pos[0] != 'n') continue;
            GROW_D(wn->ptr_pool, n_ptr, cap_ptr);
            GROW_D(raw_target, n_ptr, cap_raw);
            wn->ptr_pool[n_ptr].kind = k;
            raw_target[n_ptr] = toff;
            n_ptr++;
        }
        if (next_tok(&q, fe)) FAIL("%s", "unexpected fields before the gloss");
        s->n_ptrs = (int)(n_ptr - (size_t)tmp[wn->n_syn].ptr0);
        /* gloss: definition; "example"; "example" */
        size_t gl = strlen(gloss);
        while (gl > 0 && gloss[gl - 1] == ' ') gloss[--gl] = 0;
        char *quote = strchr(gloss, '"');
        char *dend = quote ? quote : gloss + gl;
        tmp[wn->n_syn].ex0 = (int)n_ex;
        while (quote) {
            char *close = strchr(quote + 1, '"');
            if (!close) break;
            *close = 0;
            GROW_D(wn->example_pool, n_ex, cap_ex);
            wn->example_pool[n_ex++] = quote + 1;
            quote = strchr(close + 1, '"');
        }
        while (dend > gloss && (dend[-1] == ' ' || dend[-1] == ';')) dend--;
        *dend = 0;
        s->definition = gloss;
        s->n_examples = (int)(n_ex - (size_t)tmp[wn->n_syn].ex0);
        wn->n_syn++;
    }
    if (wn->n_syn == 0) {
        rc = mope_error_set(err, MOPE_EFORMAT, "data.noun: no synsets");
        goto done;
    }
    for (int i = 0; i < wn->n_syn; i++) {
        mope_wn_synset *s = &wn->syn[i];
        s->lemmas = wn->lemma_pool + tmp[i].lemma0;
        s->examples = s->n_examples ? wn->example_pool + tmp[i].ex0 : NULL;
        s->ptrs = s->n_ptrs ? wn->ptr_pool + tmp[i].ptr0 : NULL;
        for (int j = 0; j < s->n_ptrs; j++) {
            size_t k = (size_t)tmp[i].ptr0 + (size_t)j;
            int t = mope_wordnet_find_offset(wn, raw_target[k]);
            if (t < 0) {
                rc = mope_error_set(err, MOPE_EFORMAT,
                                    "data.noun: synset %08u points to missing synset %08u",
                                    s->offset, raw_target[k]);
                goto done;
            }
            wn->ptr_pool[k].target = t;
        }
    }
done:
#undef FAIL
    free(tmp);
    free(raw_target);
    return rc;
}

static int parse_index(mope_wordnet *wn, size_t len, mope_error *err) {
    char *p = wn->index_buf, *end = p + len;
    size_t cap_l = 0, cap_s = 0, cap_st = 0, cap_n = 0, n_s = 0;
    int line = 0;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line++;
        char *ln = p;
        p = eol + 1;
        if (eol > ln && eol[-1] == '\r') eol--;
        *eol = 0;
        if (ln == eol || ln[0] == ' ') continue;
        char *q = ln;
        char *lemma = next_tok(&q, eol), *pos = next_tok(&q, eol);
        uint32_t nsyn, np, sense_cnt, tagged;
        if (!lemma || !pos || strcmp(pos, "n") != 0 || parse_uint(next_tok(&q, eol), 10, 6, &nsyn) != 0 ||
            nsyn == 0 || parse_uint(next_tok(&q, eol), 10, 6, &np) != 0)
            return mope_error_set(err, MOPE_EFORMAT, "index.noun line %d: malformed entry", line);
        for (uint32_t i = 0; i < np; i++)
            if (!next_tok(&q, eol))
                return mope_error_set(err, MOPE_EFORMAT, "index.noun line %d: missing pointer symbol", line);
        if (parse_uint(next_tok(&q, eol), 10, 6, &sense_cnt) != 0 ||
            parse_uint(next_tok(&q, eol), 10, 6, &tagged) != 0 || sense_cnt != nsyn)
            return mope_error_set(err, MOPE_EFORMAT, "index.noun line %d: bad sense counts", line);
        underscores_to_spaces(lemma);
        GROW(wn->idx_lemma, (size_t)wn->n_idx, cap_l);
        GROW(wn->idx_start, (size_t)wn->n_idx, cap_st);
        GROW(wn->idx_n, (size_t)wn->n_idx, cap_n);
        wn->idx_lemma[wn->n_idx] = lemma;
        wn->idx_start[wn->n_idx] = (int32_t)n_s;
        wn->idx_n[wn->n_idx] = (int32_t)nsyn;
        for (uint32_t i = 0; i < nsyn; i++) {
            uint32_t off;
            if (parse_uint(next_tok(&q, eol), 10, 8, &off) != 0)
                return mope_error_set(err, MOPE_EFORMAT, "index.noun line %d: bad synset offset", line);
            int s = mope_wordnet_find_offset(wn, off);
            if (s < 0)
                return mope_error_set(err, MOPE_EFORMAT, "index.noun line %d: offset %08u not in data.noun",
                                      line, off);
            GROW(wn->idx_syn, n_s, cap_s);
            wn->idx_syn[n_s++] = s;
        }
        int32_t *slot = strmap_put(&wn->idx_map, lemma, wn->n_idx);
        if (!slot) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        wn->n_idx++;
    }
    wn->idx_cnt = calloc(n_s ? n_s : 1, sizeof *wn->idx_cnt);
    if (!wn->idx_cnt) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    return 0;
}

static void lower_ascii(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

static int parse_cntlist(mope_wordnet *wn, size_t len, mope_error *err) {
    char *p = wn->cnt_buf, *end = p + len;
    int line = 0;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line++;
        char *ln = p;
        p = eol + 1;
        if (eol > ln && eol[-1] == '\r') eol--;
        *eol = 0;
        if (ln == eol) continue;
        char *q = ln;
        char *key = next_tok(&q, eol);
        uint32_t sense, count;
        char *pct = key ? strchr(key, '%') : NULL;
        if (!pct || pct == key || parse_uint(next_tok(&q, eol), 10, 6, &sense) != 0 ||
            parse_uint(next_tok(&q, eol), 10, 8, &count) != 0 || sense == 0)
            return mope_error_set(err, MOPE_EFORMAT, "cntlist.rev line %d: expected 'sense_key sense_number tag_cnt'",
                                  line);
        char sstype = pct[1];
        *pct = 0;
        underscores_to_spaces(key);
        lower_ascii(key);
        int32_t *c = strmap_put(&wn->count_map, key, 0);
        if (!c) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        *c += (int32_t)count;
        if (sstype == '1') {
            const int32_t *ix = strmap_get(&wn->idx_map, key);
            if (ix && (int32_t)sense <= wn->idx_n[*ix]) {
                int32_t k = wn->idx_start[*ix] + (int32_t)sense - 1;
                wn->idx_cnt[k] += (int32_t)count;
                wn->syn[wn->idx_syn[k]].tag_count += (int32_t)count;
            }
        }
    }
    return 0;
}

/* noun.exc lists archaic or rare plurals of some everyday nouns ("brethren",
 * "cola", "genii"); for these the regular plural is the one people ask with. */
static int plural_is_regular_anyway(const char *base) {
    static const char *const keep[] = {"ban", "brother", "colon", "cry", "gas", "genius", "real",
                                       "penny", "cow", "no", "bus"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        if (strcmp(base, keep[i]) == 0) return 1;
    return 0;
}

static int parse_exc(mope_wordnet *wn, int which, size_t len, const char *name, mope_error *err) {
    char *p = wn->exc_buf[which], *end = p + len;
    int line = 0;
    size_t cap_b = (size_t)wn->n_exc, cap_p = (size_t)wn->n_plural;
    char plural_buf[256];
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line++;
        char *ln = p;
        p = eol + 1;
        if (eol > ln && eol[-1] == '\r') eol--;
        *eol = 0;
        if (ln == eol) continue;
        char *q = ln;
        char *infl = next_tok(&q, eol), *base = next_tok(&q, eol);
        if (!infl || !base) return mope_error_set(err, MOPE_EFORMAT, "%s line %d: expected 'inflected base'", name, line);
        underscores_to_spaces(infl);
        underscores_to_spaces(base);
        int32_t *e = strmap_put(&wn->exc_map, infl, -1);
        if (!e) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (*e < 0) {
            if ((size_t)wn->n_exc >= cap_b) {
                size_t nc = cap_b ? cap_b * 2 : 1024;
                const char **nb = realloc(wn->exc_base, nc * sizeof *nb);
                if (!nb) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
                wn->exc_base = nb;
                cap_b = nc;
            }
            wn->exc_base[wn->n_exc] = base;
            *e = wn->n_exc++;
        }
        if (which != 0 || strcmp(infl, base) == 0 || plural_is_regular_anyway(base)) continue;
        int32_t *pl = strmap_put(&wn->plural_map, base, -1);
        if (!pl) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        /* Several plurals per base ("gas": gases, gasses): prefer the regular
         * one when WordNet lists it, else the first listed. */
        int regular = mope_prefbench_plural(NULL, base, plural_buf, sizeof plural_buf) > 0 &&
                      strcmp(plural_buf, infl) == 0;
        if (*pl < 0 || regular) {
            if (*pl < 0) {
                if ((size_t)wn->n_plural >= cap_p) {
                    size_t nc = cap_p ? cap_p * 2 : 1024;
                    const char **np = realloc(wn->plural_str, nc * sizeof *np);
                    if (!np) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
                    wn->plural_str = np;
                    cap_p = nc;
                }
                *pl = wn->n_plural++;
            }
            wn->plural_str[*pl] = infl;
        }
    }
    return 0;
}

mope_wordnet *mope_wordnet_load(const char *dir, mope_error *err) {
    if (!dir) dir = MOPE_PREFBENCH_WORDNET_DIR;
    mope_wordnet *wn = calloc(1, sizeof *wn);
    if (!wn) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    static const char *const exc_names[N_EXC] = {"noun.exc", "verb.exc", "adj.exc"};
    size_t len;
    if (strmap_init(&wn->idx_map, 1 << 17) || strmap_init(&wn->count_map, 1 << 16) ||
        strmap_init(&wn->exc_map, 1 << 13) || strmap_init(&wn->plural_map, 1 << 12)) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto fail;
    }
    if (!(wn->data_buf = read_all(dir, "data.noun", &len, err)) || parse_data(wn, len, err) != 0) goto fail;
    if (!(wn->index_buf = read_all(dir, "index.noun", &len, err)) || parse_index(wn, len, err) != 0) goto fail;
    if (!(wn->cnt_buf = read_all(dir, "cntlist.rev", &len, err)) || parse_cntlist(wn, len, err) != 0) goto fail;
    for (int i = 0; i < N_EXC; i++)
        if (!(wn->exc_buf[i] = read_all(dir, exc_names[i], &len, err)) ||
            parse_exc(wn, i, len, exc_names[i], err) != 0)
            goto fail;
    return wn;
fail:
    mope_error_prefix(err, "loading WordNet from %s", dir);
    mope_wordnet_free(wn);
    return NULL;
}

void mope_wordnet_free(mope_wordnet *wn) {
    if (!wn) return;
    free(wn->data_buf);
    free(wn->index_buf);
    free(wn->cnt_buf);
    for (int i = 0; i < N_EXC; i++) free(wn->exc_buf[i]);
    free(wn->syn);
    free(wn->lemma_pool);
    free(wn->example_pool);
    free(wn->ptr_pool);
    free(wn->idx_lemma);
    free(wn->idx_start);
    free(wn->idx_n);
    free(wn->idx_syn);
    free(wn->idx_cnt);
    strmap_free(&wn->idx_map);
    strmap_free(&wn->count_map);
    strmap_free(&wn->exc_map);
    free(wn->exc_base);
    strmap_free(&wn->plural_map);
    free(wn->plural_str);
    free(wn);
}

int mope_wordnet_n_synsets(const mope_wordnet *wn) { return wn->n_syn; }

const mope_wn_synset *mope_wordnet_synset(const mope_wordnet *wn, int index) {
    if (index < 0 || index >= wn->n_syn) return NULL;
    return &wn->syn[index];
}

int mope_wordnet_find_offset(const mope_wordnet *wn, uint32_t offset) {
    int lo = 0, hi = wn->n_syn - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (wn->syn[mid].offset == offset) return mid;
        if (wn->syn[mid].offset < offset) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* Lowercase, '_' -> ' ', into buf; 0 when it does not fit. */
static int norm_key(const char *s, char *buf, size_t cap) {
    size_t n = strlen(s);
    if (n + 1 > cap) return 0;
    for (size_t i = 0; i <= n; i++) buf[i] = s[i] == '_' ? ' ' : (char)tolower((unsigned char)s[i]);
    return 1;
}

int mope_wordnet_senses(const mope_wordnet *wn, const char *lemma, const int32_t **synsets,
                        const int32_t **counts) {
    char key[256];
    if (!norm_key(lemma, key, sizeof key)) return 0;
    const int32_t *ix = strmap_get(&wn->idx_map, key);
    if (!ix) return 0;
    if (synsets) *synsets = wn->idx_syn + wn->idx_start[*ix];
    if (counts) *counts = wn->idx_cnt + wn->idx_start[*ix];
    return wn->idx_n[*ix];
}

int mope_wordnet_n_lemmas(const mope_wordnet *wn) { return wn->n_idx; }

const char *mope_wordnet_lemma(const mope_wordnet *wn, int i) {
    return (i >= 0 && i < wn->n_idx) ? wn->idx_lemma[i] : NULL;
}

static int count_of(const mope_wordnet *wn, const char *key) {
    const int32_t *c = strmap_get(&wn->count_map, key);
    return c ? *c : 0;
}

int mope_wordnet_word_count(const mope_wordnet *wn, const char *word) {
    char key[128], cand[136];
    if (!norm_key(word, key, sizeof key)) return 0;
    int best = count_of(wn, key);
    const int32_t *e = strmap_get(&wn->exc_map, key);
    if (e) {
        int c = count_of(wn, wn->exc_base[*e]);
        if (c > best) best = c;
    }
    /* WordNet's morphy detachment rules for nouns, verbs and adjectives. */
    static const char *const rules[][2] = {{"s", ""},    {"ses", "s"}, {"xes", "x"}, {"zes", "z"},
                                           {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"},
                                           {"es", "e"},  {"es", ""},   {"ed", "e"},  {"ed", ""},
                                           {"ing", "e"}, {"ing", ""},  {"er", ""},   {"est", ""},
                                           {"er", "e"},  {"est", "e"}, {"ly", ""}};
    size_t n = strlen(key);
    for (size_t r = 0; r < sizeof rules / sizeof *rules; r++) {
        size_t sl = strlen(rules[r][0]);
        if (n <= sl + 1 || strcmp(key + n - sl, rules[r][0]) != 0) continue;
        memcpy(cand, key, n - sl);
        strcpy(cand + n - sl, rules[r][1]);
        int c = count_of(wn, cand);
        if (c > best) best = c;
    }
    return best;
}

const char *mope_wordnet_irregular_plural(const mope_wordnet *wn, const char *base) {
    char key[256];
    if (!wn || !norm_key(base, key, sizeof key)) return NULL;
    const int32_t *p = strmap_get(&wn->plural_map, key);
    return p ? wn->plural_str[*p] : NULL;
}
