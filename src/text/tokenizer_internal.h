/* Private layout of mope_tokenizer, shared by src/text/tokenizer*.c only. */
#ifndef MOPE_TOKENIZER_INTERNAL_H
#define MOPE_TOKENIZER_INTERNAL_H

#include "mope/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum { TOK_SPM = 0, TOK_BPE = 1 };
enum { PRE_NONE = 0, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2 };

#define TOK_MAX_EOG 16

struct mope_tokenizer {
    int kind;
    int pre_kind;
    char *model;
    char *pre;
    char *chat_template;

    int32_t n_vocab;
    char *blob;      /* all pieces, each followed by a NUL */
    uint32_t *off;   /* piece i = blob + off[i], length off[i+1] - off[i] - 1 */
    float *scores;
    uint8_t *types;
    char *dblob;     /* decoded bytes of each token (control tokens: empty) */
    uint32_t *doff;

    /* piece -> id, open addressing, -1 = empty slot */
    int32_t *ht;
    uint32_t ht_mask;

    /* merges in rank order, and (left, right) -> rank / result */
    int32_t n_merges;
    int32_t *merges;    /* 2 * n_merges ids */
    uint64_t *mk;       /* key (left << 32 | right), UINT64_MAX = empty */
    int32_t *mrank;
    int32_t *mres;
    uint32_t m_mask;

    int32_t byte_id[256]; /* token for each raw byte (<0xXX> or byte-level char); -1 if none */

    int32_t bos, eos, eot, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    bool ignore_merges; /* llama-bpe: a word that is a vocab token is emitted whole */
    bool nfc;           /* qwen2: NFC-normalise text fragments before BPE */

    int32_t *special;   /* CONTROL / USER_DEFINED / UNKNOWN ids, longest text first */
    int32_t n_special;
    int32_t eog[TOK_MAX_EOG];
    int n_eog;

    pcre2_code *re;
};

static inline const char *tok_piece(const mope_tokenizer *t, int32_t id, uint32_t *len) {
    *len = t->off[id + 1] - t->off[id] - 1;
    return t->blob + t->off[id];
}

/* A borrowed byte string, so GGUF strings (not NUL-terminated) and C strings
 * go through one builder. */
typedef struct tok_str {
    const char *p;
    size_t n;
} tok_str;

typedef struct tok_src {
    const char *model, *pre, *chat_template;
    size_t chat_template_len;
    int32_t n_tokens;
    const tok_str *tokens;
    const float *scores;
    const int32_t *types;
    int32_t n_merges;
    const tok_str *merges;
    int32_t bos, eos, eot, unk, pad;
    int add_bos, add_eos, add_space_prefix;
} tok_src;

/* Validates a vocabulary and builds the tokenizer (tokenizer.c). */
mope_tokenizer *tok_build(const tok_src *s, mope_error *err);
char *tok_dup_str(const char *s, size_t n); /* NUL-terminated malloc'd copy */

/* Hash of a merge key (left id << 32 | right id): murmur3's finaliser. */
static inline uint64_t tok_hash_pair(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* piece lookup: id or -1 */
int32_t tok_lookup(const mope_tokenizer *t, const char *s, size_t len);

/* Growable id list used while encoding. */
typedef struct tok_vec {
    int32_t *v;
    size_t n, cap;
} tok_vec;
int tok_vec_push(tok_vec *v, int32_t id);

/* Symbols of one word while merging: a doubly linked list over byte ranges. */
typedef struct tok_sym {
    int32_t start, len, prev, next, id;
} tok_sym;

/* Candidate merge of symbols left and right (adjacent when pushed); popped
 * smallest key first, ties by leftmost position.  `size` detects stale
 * entries: symbols only grow, so a changed sum means one side has merged. */
typedef struct tok_cand {
    double key;
    int32_t left, right, size, id;
} tok_cand;

typedef struct tok_heap {
    tok_cand *a;
    size_t n, cap;
} tok_heap;

static inline bool tok_cand_less(const tok_cand *x, const tok_cand *y) {
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}
int tok_heap_push(tok_heap *h, tok_cand c);
tok_cand tok_heap_pop(tok_heap *h); /* h->n > 0 */

/* Model encoders for one raw-text fragment (no special tokens inside). */
int tok_spm_encode(const mope_tokenizer *t, const char *text, size_t len, bool prefix_space, tok_vec *out,
                   mope_error *err);
int tok_bpe_encode(const mope_tokenizer *t, const char *text, size_t len, tok_vec *out, mope_error *err);

/* Pre-tokenizer set-up (tokenizer_pretok.c): picks the regex for t->pre. */
int tok_pretok_init(mope_tokenizer *t, mope_error *err);

/* GPT-2 byte <-> code point map. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 if cp is not in the map */

/* UTF-8 helpers */
int tok_utf8_len(uint8_t lead); /* 1..4 from the lead byte (1 for invalid leads) */
int tok_utf8_put(uint32_t cp, char *out);

#endif
