/* Shared pieces of the BPE tokenizer trainer (tokenizer_train*.c): string
 * tables and the word counts of the training text, split into words as the
 * "llama" encoder splits them (tokenizer_train_words.c). */
#ifndef MOPE_TEXT_TOKENIZER_TRAIN_INTERNAL_H
#define MOPE_TEXT_TOKENIZER_TRAIN_INTERNAL_H

#include "text/tokenizer_internal.h"

#define U2581 "\xe2\x96\x81"
/* Words longer than this (base64 blobs, long URLs) are left out of the
 * statistics: the greedy re-segmentation is quadratic in word length. */
#define MAX_WORD_BYTES 256

/* ---- string tables: distinct byte strings, text -> index ---- */
typedef struct strtab {
    char *blob;
    size_t blob_n, blob_cap, cap;
    size_t *off;
    uint32_t *len;
    int32_t n;
    int32_t *ht; /* index or -1 */
    uint32_t mask;
} strtab;

static inline const char *tt_st_str(const strtab *S, int32_t i) {
    return S->blob + S->off[i];
}

/* A string table with a count per entry (words, characters). */
typedef struct counts {
    strtab S;
    int64_t *count;
    size_t cap;
    int64_t total;
} counts;

/* Grows *p (elements of elem bytes, capacity *cap) to hold need; MOPE_ENOMEM. */
int tt_grow(void **p, size_t *cap, size_t need, size_t elem);
/* Length of the character at s[i] (n bytes in all), split as the encoder
 * splits: a malformed sequence becomes single bytes. */
static inline size_t tt_char_len(const char *s, size_t i, size_t n) {
    size_t l = (size_t)tok_utf8_len((uint8_t)s[i]);
    if (i + l > n) return 1;
    for (size_t k = 1; k < l; k++)
        if (((uint8_t)s[i + k] & 0xc0) != 0x80) return 1;
    return l;
}

/* Index of s, or -1. */
int32_t tt_st_find(const strtab *S, const char *s, size_t n);
/* Index of s, added when new (then *added is set); -1 when out of memory. */
int32_t tt_st_intern(strtab *S, const char *s, size_t n, bool *added);
void tt_st_free(strtab *S);
/* Adds k occurrences of s. */
int tt_count_add(counts *C, const char *s, size_t n, int64_t k);
void tt_counts_free(counts *C);
/* Counts the words of text into W: special-token text split out as the
 * encoder does, a space prefixed at the start and after every special
 * token; words over MAX_WORD_BYTES count in W->total only. */
int tt_count_text(counts *W, const char *text, size_t len, const tok_str *sp, int n_sp);

#endif
