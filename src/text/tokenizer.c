/* Tokenizer creation from memory, validation and accessors.  GGUF reading
 * and writing live in tokenizer_gguf.c, encoding in tokenizer_encode.c,
 * tokenizer_spm.c and tokenizer_bpe.c, decoding in tokenizer_decode.c. */
#include "text/tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t tok_lookup(const mope_tokenizer *t, const char *s, size_t len) {
    uint32_t i = (uint32_t)hash_bytes(s, len) & t->ht_mask;
    for (;;) {
        int32_t id = t->ht[i];
        if (id < 0) return -1;
        uint32_t n;
        const char *p = tok_piece(t, id, &n);
        if (n == len && memcmp(p, s, len) == 0) return id;
        i = (i + 1) & t->ht_mask;
    }
}

int tok_vec_push(tok_vec *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv) return MOPE_ENOMEM;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = id;
    return 0;
}

static uint32_t table_size(uint64_t n) {
    uint32_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

char *tok_dup_str(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (!r) return NULL;
    if (n) memcpy(r, s, n);
    r[n] = 0;
    return r;
}

void mope_tokenizer_free(mope_tokenizer *t) {
    if (!t) return;
    free(t->model);
    free(t->pre);
    free(t->chat_template);
    free(t->blob);
    free(t->off);
    free(t->scores);
    free(t->types);
    free(t->dblob);
    free(t->doff);
    free(t->ht);
    free(t->merges);
    free(t->mk);
    free(t->mrank);
    free(t->mres);
    free(t->special);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

/* "<0xXX>" -> XX, else -1 */
static int parse_byte_piece(const char *p, uint32_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decoded bytes of token id, written at dst.  Never longer than the piece
 * ("▁" -> ' ', "<0xXX>" -> one byte, a byte-level code point -> one byte), so
 * a buffer the size of all pieces holds every decoded token. */
static uint32_t decode_piece(const mope_tokenizer *t, int32_t id, char *dst) {
    uint32_t n;
    const char *p = tok_piece(t, id, &n);
    int type = t->types[id];
    if (type == MOPE_TOKEN_CONTROL || type == MOPE_TOKEN_UNKNOWN) return 0;
    if (type == MOPE_TOKEN_USER_DEFINED) {
        memcpy(dst, p, n);
        return n;
    }
    if (type == MOPE_TOKEN_BYTE) {
        int b = parse_byte_piece(p, n);
        if (b >= 0) {
            dst[0] = (char)b;
            return 1;
        }
    }
    uint32_t k = 0;
    if (t->kind == TOK_SPM) {
        for (uint32_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(p + i, "\xe2\x96\x81", 3) == 0) {
                dst[k++] = ' ';
                i += 3;
            } else {
                dst[k++] = p[i++];
            }
        }
        return k;
    }
    /* byte-level: every code point of the piece stands for one byte */
    for (uint32_t i = 0; i < n;) {
        const uint8_t *u = (const uint8_t *)p + i;
        int l = tok_utf8_len(u[0]);
        uint32_t cp = 0;
        if (l > 1 && i + (uint32_t)l <= n) {
            cp = u[0] & (0xff >> (l + 1));
            for (int j = 1; j < l; j++) cp = (cp << 6) | (u[j] & 0x3f);
        } else {
            l = 1;
            cp = u[0];
        }
        int b = tok_cp_to_byte(cp);
        if (b >= 0) {
            dst[k++] = (char)b;
        } else { /* not a byte-map character: keep its text */
            memcpy(dst + k, u, (size_t)l);
            k += (uint32_t)l;
        }
        i += (uint32_t)l;
    }
    return k;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const mope_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->off[x + 1] - t->off[x], ly = t->off[y + 1] - t->off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* llama.cpp's end-of-generation / end-of-turn markers, found by text. */
static const char *const EOT_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<EOT>", "_<EOT>", "<\xef\xbd\x9c\x65nd\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"};
static const char *const EOG_EXTRA[] = {"<|eom_id|>", "<|end_of_text|>"};

static void add_eog(mope_tokenizer *t, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    if (t->n_eog < TOK_MAX_EOG) t->eog[t->n_eog++] = id;
}

static int check_id(int32_t id, int32_t n, const char *what, mope_error *err) {
    if (id < -1 || id >= n)
        return mope_error_set(err, MOPE_EINVAL, "tokenizer: %s id %d out of range (vocab has %d tokens)", what, (int)id,
                              (int)n);
    return 0;
}

mope_tokenizer *tok_build(const tok_src *s, mope_error *err) {
    if (!s->model) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: no model name");
        return NULL;
    }
    int kind;
    if (strcmp(s->model, "llama") == 0) kind = TOK_SPM;
    else if (strcmp(s->model, "gpt2") == 0) kind = TOK_BPE;
    else {
        mope_error_set(err, MOPE_EUNSUPPORTED, "tokenizer: model '%s' is not supported (only 'llama' and 'gpt2')",
                       s->model);
        return NULL;
    }
    if (s->n_tokens <= 0 || !s->tokens) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: empty token list");
        return NULL;
    }
    if (s->n_merges < 0 || (s->n_merges > 0 && !s->merges)) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: bad merge list");
        return NULL;
    }
    int32_t n = s->n_tokens;
    if (check_id(s->bos, n, "BOS", err) || check_id(s->eos, n, "EOS", err) || check_id(s->eot, n, "EOT", err) ||
        check_id(s->unk, n, "unknown-token", err) || check_id(s->pad, n, "padding", err))
        return NULL;

    mope_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->kind = kind;
    t->n_vocab = n;
    t->model = tok_dup_str(s->model, strlen(s->model));
    const char *pre = s->pre && *s->pre ? s->pre : "default";
    t->pre = tok_dup_str(pre, strlen(pre));
    if (!t->model || !t->pre) goto nomem;
    if (s->chat_template) {
        t->chat_template = tok_dup_str(s->chat_template, s->chat_template_len);
        if (!t->chat_template) goto nomem;
    }

    /* pieces */
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!s->tokens[i].p && s->tokens[i].n) {
            mope_error_set(err, MOPE_EINVAL, "tokenizer: token %d has no text", (int)i);
            goto fail;
        }
        total += s->tokens[i].n + 1;
    }
    if (total > UINT32_MAX / 4) {
        mope_error_set(err, MOPE_ERANGE, "tokenizer: token texts too large (%llu bytes)", (unsigned long long)total);
        goto fail;
    }
    t->blob = malloc(total);
    t->off = malloc(((size_t)n + 1) * sizeof *t->off);
    t->scores = malloc((size_t)n * sizeof *t->scores);
    t->types = malloc((size_t)n);
    if (!t->blob || !t->off || !t->scores || !t->types) goto nomem;
    uint32_t o = 0;
    for (int32_t i = 0; i < n; i++) {
        t->off[i] = o;
        if (s->tokens[i].n) memcpy(t->blob + o, s->tokens[i].p, s->tokens[i].n);
        o += (uint32_t)s->tokens[i].n;
        t->blob[o++] = 0;
        t->scores[i] = s->scores ? s->scores[i] : 0.0f;
        int32_t ty = s->types ? s->types[i] : MOPE_TOKEN_NORMAL;
        if (ty < 0 || ty > MOPE_TOKEN_BYTE) {
            mope_error_set(err, MOPE_EINVAL, "tokenizer: token %d has invalid type %d", (int)i, (int)ty);
            goto fail;
        }
        t->types[i] = (uint8_t)ty;
    }
    t->off[n] = o;

    /* piece -> id; a duplicate piece maps to its last id, as in llama.cpp */
    uint32_t hs = table_size((uint64_t)n);
    t->ht_mask = hs - 1;
    t->ht = malloc((size_t)hs * sizeof *t->ht);
    if (!t->ht) goto nomem;
    memset(t->ht, 0xff, (size_t)hs * sizeof *t->ht);
    for (int32_t i = 0; i < n; i++) {
        uint32_t len;
        const char *p = tok_piece(t, i, &len);
        uint32_t h = (uint32_t)hash_bytes(p, len) & t->ht_mask;
        for (;;) {
            int32_t id = t->ht[h];
            if (id < 0) {
                t->ht[h] = i;
                break;
            }
            uint32_t l2;
            const char *p2 = tok_piece(t, id, &l2);
            if (l2 == len && memcmp(p, p2, len) == 0) {
                t->ht[h] = i;
                break;
            }
            h = (h + 1) & t->ht_mask;
        }
    }

    /* merges */
    if (s->n_merges > 0) {
        t->n_merges = s->n_merges;
        uint32_t ms = table_size((uint64_t)s->n_merges);
        t->m_mask = ms - 1;
        t->merges = malloc((size_t)s->n_merges * 2 * sizeof *t->merges);
        t->mk = malloc((size_t)ms * sizeof *t->mk);
        t->mrank = malloc((size_t)ms * sizeof *t->mrank);
        t->mres = malloc((size_t)ms * sizeof *t->mres);
        if (!t->merges || !t->mk || !t->mrank || !t->mres) goto nomem;
        memset(t->mk, 0xff, (size_t)ms * sizeof *t->mk);
        char *cat = NULL;
        size_t catcap = 0;
        for (int32_t r = 0; r < s->n_merges; r++) {
            const char *p = s->merges[r].p;
            size_t len = s->merges[r].n;
            /* split at the first space after position 0 (a piece may itself be a space) */
            const char *sp = len > 1 ? memchr(p + 1, ' ', len - 1) : NULL;
            if (!p || !sp) {
                free(cat);
                mope_error_set(err, MOPE_EINVAL, "tokenizer: merge %d \"%.*s\" is not \"left right\"", (int)r,
                               (int)(len > 60 ? 60 : len), p ? p : "");
                goto fail;
            }
            size_t ll = (size_t)(sp - p), rl = len - ll - 1;
            int32_t a = tok_lookup(t, p, ll), b = tok_lookup(t, sp + 1, rl);
            if (catcap < ll + rl) {
                free(cat);
                catcap = 2 * (ll + rl);
                cat = malloc(catcap);
                if (!cat) goto nomem;
            }
            memcpy(cat, p, ll);
            memcpy(cat + ll, sp + 1, rl);
            int32_t c = a >= 0 && b >= 0 ? tok_lookup(t, cat, ll + rl) : -1;
            if (c < 0) {
                free(cat);
                mope_error_set(err, MOPE_EINVAL, "tokenizer: merge %d \"%.*s\" refers to %s not in the vocabulary",
                               (int)r, (int)(len > 60 ? 60 : len), p,
                               a < 0 ? "a left token" : b < 0 ? "a right token" : "a merged token");
                goto fail;
            }
            t->merges[2 * r] = a;
            t->merges[2 * r + 1] = b;
            uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
            uint32_t h = (uint32_t)tok_hash_pair(key) & t->m_mask;
            while (t->mk[h] != UINT64_MAX && t->mk[h] != key) h = (h + 1) & t->m_mask;
            if (t->mk[h] == UINT64_MAX) { /* a repeated pair keeps its first (lowest) rank */
                t->mk[h] = key;
                t->mrank[h] = r;
                t->mres[h] = c;
            }
        }
        free(cat);
    }

    /* decoded bytes of every token */
    t->doff = malloc(((size_t)n + 1) * sizeof *t->doff);
    t->dblob = malloc(total + 1);
    if (!t->doff || !t->dblob) goto nomem;
    o = 0;
    for (int32_t i = 0; i < n; i++) {
        t->doff[i] = o;
        o += decode_piece(t, i, t->dblob + o);
    }
    t->doff[n] = o;

    /* raw byte -> token */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int len;
        if (kind == TOK_SPM) len = snprintf(buf, sizeof buf, "<0x%02X>", b);
        else len = tok_utf8_put(tok_byte_to_cp((uint8_t)b), buf);
        t->byte_id[b] = tok_lookup(t, buf, (size_t)len);
    }

    /* special tokens split out of the text before tokenizing */
    int32_t ns = 0;
    for (int32_t i = 0; i < n; i++) {
        int ty = t->types[i];
        if ((ty == MOPE_TOKEN_CONTROL || ty == MOPE_TOKEN_USER_DEFINED || ty == MOPE_TOKEN_UNKNOWN) &&
            t->off[i + 1] - t->off[i] > 1)
            ns++;
    }
    if (ns > 0) {
        t->special = malloc((size_t)ns * sizeof *t->special);
        if (!t->special) goto nomem;
        for (int32_t i = 0; i < n; i++) {
            int ty = t->types[i];
            if ((ty == MOPE_TOKEN_CONTROL || ty == MOPE_TOKEN_USER_DEFINED || ty == MOPE_TOKEN_UNKNOWN) &&
                t->off[i + 1] - t->off[i] > 1)
                t->special[t->n_special++] = i;
        }
        qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);
    }

    /* ids and flags; defaults as llama.cpp's */
    t->bos = s->bos;
    t->eos = s->eos;
    t->unk = s->unk;
    t->pad = s->pad;
    t->eot = s->eot;
    if (t->eot < 0) {
        for (size_t k = 0; k < sizeof EOT_TEXTS / sizeof *EOT_TEXTS && t->eot < 0; k++)
            t->eot = tok_lookup(t, EOT_TEXTS[k], strlen(EOT_TEXTS[k]));
    }
    add_eog(t, t->eos);
    add_eog(t, t->eot);
    for (size_t k = 0; k < sizeof EOT_TEXTS / sizeof *EOT_TEXTS; k++)
        add_eog(t, tok_lookup(t, EOT_TEXTS[k], strlen(EOT_TEXTS[k])));
    for (size_t k = 0; k < sizeof EOG_EXTRA / sizeof *EOG_EXTRA; k++)
        add_eog(t, tok_lookup(t, EOG_EXTRA[k], strlen(EOG_EXTRA[k])));

    if (kind == TOK_SPM) {
        t->pre_kind = PRE_NONE;
        t->add_space_prefix = s->add_space_prefix != 0; /* default on */
        t->add_bos = s->add_bos != 0;
    } else {
        if (tok_pretok_init(t, err) < 0) goto fail;
        t->add_space_prefix = s->add_space_prefix == 1;
        t->add_bos = s->add_bos < 0 ? t->pre_kind == PRE_LLAMA3 : s->add_bos == 1;
    }
    t->add_eos = s->add_eos == 1;
    return t;

nomem:
    mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
fail:
    mope_tokenizer_free(t);
    return NULL;
}

void mope_tokenizer_params_init(mope_tokenizer_params *p) {
    memset(p, 0, sizeof *p);
    p->bos_id = p->eos_id = p->eot_id = p->unk_id = p->pad_id = -1;
    p->add_bos = p->add_eos = p->add_space_prefix = -1;
}

mope_tokenizer *mope_tokenizer_new(const mope_tokenizer_params *p, mope_error *err) {
    if (!p) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: no parameters");
        return NULL;
    }
    tok_src s = {
        .model = p->model, .pre = p->pre, .chat_template = p->chat_template,
        .chat_template_len = p->chat_template ? strlen(p->chat_template) : 0,
        .n_tokens = p->n_tokens, .scores = p->scores, .types = p->types, .n_merges = p->n_merges,
        .bos = p->bos_id, .eos = p->eos_id, .eot = p->eot_id, .unk = p->unk_id, .pad = p->pad_id,
        .add_bos = p->add_bos, .add_eos = p->add_eos, .add_space_prefix = p->add_space_prefix,
    };
    if (p->n_tokens <= 0 || !p->tokens) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: empty token list");
        return NULL;
    }
    if (p->n_merges < 0 || (p->n_merges > 0 && !p->merges)) {
        mope_error_set(err, MOPE_EINVAL, "tokenizer: bad merge list");
        return NULL;
    }
    tok_str *toks = malloc((size_t)p->n_tokens * sizeof *toks);
    tok_str *merges = p->n_merges ? malloc((size_t)p->n_merges * sizeof *merges) : NULL;
    if (!toks || (p->n_merges && !merges)) {
        free(toks);
        free(merges);
        mope_error_set(err, MOPE_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    for (int32_t i = 0; i < p->n_tokens; i++) {
        if (!p->tokens[i]) {
            free(toks);
            free(merges);
            mope_error_set(err, MOPE_EINVAL, "tokenizer: token %d is NULL", (int)i);
            return NULL;
        }
        toks[i].p = p->tokens[i];
        toks[i].n = !p->tokens[i] ? 0 : p->token_lens ? p->token_lens[i] : strlen(p->tokens[i]);
    }
    for (int32_t i = 0; i < p->n_merges; i++) {
        if (!p->merges[i]) {
            free(toks);
            free(merges);
            mope_error_set(err, MOPE_EINVAL, "tokenizer: merge %d is NULL", (int)i);
            return NULL;
        }
        merges[i].p = p->merges[i];
        merges[i].n = p->merges[i] ? strlen(p->merges[i]) : 0;
    }
    s.tokens = toks;
    s.merges = merges;
    mope_tokenizer *t = tok_build(&s, err);
    free(toks);
    free(merges);
    return t;
}

/* ---- accessors ---- */
int32_t mope_tokenizer_n_vocab(const mope_tokenizer *t) { return t->n_vocab; }
const char *mope_tokenizer_model(const mope_tokenizer *t) { return t->model; }
const char *mope_tokenizer_pre(const mope_tokenizer *t) { return t->pre; }
int32_t mope_tokenizer_bos(const mope_tokenizer *t) { return t->bos; }
int32_t mope_tokenizer_eos(const mope_tokenizer *t) { return t->eos; }
int32_t mope_tokenizer_eot(const mope_tokenizer *t) { return t->eot; }
int32_t mope_tokenizer_unk(const mope_tokenizer *t) { return t->unk; }
int32_t mope_tokenizer_pad(const mope_tokenizer *t) { return t->pad; }
bool mope_tokenizer_add_bos(const mope_tokenizer *t) { return t->add_bos; }
bool mope_tokenizer_add_eos(const mope_tokenizer *t) { return t->add_eos; }
bool mope_tokenizer_add_space_prefix(const mope_tokenizer *t) { return t->add_space_prefix; }
const char *mope_tokenizer_chat_template(const mope_tokenizer *t) { return t->chat_template; }

const char *mope_tokenizer_piece(const mope_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    uint32_t n;
    const char *p = tok_piece(t, id, &n);
    if (len) *len = n;
    return p;
}

mope_token_type mope_tokenizer_token_type(const mope_tokenizer *t, int32_t id) {
    return id < 0 || id >= t->n_vocab ? MOPE_TOKEN_UNDEFINED : (mope_token_type)t->types[id];
}

float mope_tokenizer_score(const mope_tokenizer *t, int32_t id) {
    return id < 0 || id >= t->n_vocab ? 0.0f : t->scores[id];
}

int32_t mope_tokenizer_find(const mope_tokenizer *t, const char *piece, size_t len) {
    return piece ? tok_lookup(t, piece, len) : -1;
}

bool mope_tokenizer_is_eog(const mope_tokenizer *t, int32_t id) {
    if (id < 0) return false;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

bool mope_tokenizer_is_control(const mope_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->types[id] == MOPE_TOKEN_CONTROL;
}
