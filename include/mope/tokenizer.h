/* Tokenizers read from GGUF metadata (tokenizer.ggml.*), as llama.cpp does them.
 *
 * Two models:
 *  - "llama": SentencePiece-style BPE by piece score, byte fallback <0xXX>,
 *    add_space_prefix, the "legacy" space after special tokens.
 *  - "gpt2":  byte-level BPE by merge rank with a regex pre-tokenizer chosen
 *    by tokenizer.ggml.pre: "gpt-2", "llama-bpe" (Llama-3; a word that is a
 *    vocab token is emitted whole), "qwen2" (Qwen2/3; NFC-normalises the
 *    text first, as HF does -- llama.cpp does not, which only matters for
 *    decomposed input).  "default" uses the GPT-2 pattern; llama.cpp's
 *    "default" BPE split differs (a chain of several patterns), so files
 *    meant for llama.cpp should name "gpt-2" rather than "default".
 * Facts: ../shared/reference/GGUF_FACTS.md §4.
 *
 * A tokenizer is immutable after creation, so one may be shared by threads
 * (encode/decode keep their scratch state on the stack or the heap per call). */
#ifndef MOPE_TOKENIZER_H
#define MOPE_TOKENIZER_H

#include "mope/core.h"
#include "mope/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mope_tokenizer mope_tokenizer;

/* tokenizer.ggml.token_type values (llama.cpp's). */
typedef enum mope_token_type {
    MOPE_TOKEN_UNDEFINED = 0,
    MOPE_TOKEN_NORMAL = 1,
    MOPE_TOKEN_UNKNOWN = 2,
    MOPE_TOKEN_CONTROL = 3,
    MOPE_TOKEN_USER_DEFINED = 4,
    MOPE_TOKEN_UNUSED = 5,
    MOPE_TOKEN_BYTE = 6,
} mope_token_type;

/* ---- creation ---- */

/* Reads tokenizer.ggml.* (and tokenizer.chat_template) from g.  Everything is
 * copied: g may be closed afterwards.  For model "llama", absent bos / eos /
 * unknown ids default to 1 / 2 / 0 and add_bos / add_space_prefix to true;
 * for "gpt2" absent ids are -1, add_space_prefix is false and add_bos is true
 * only for pre "llama-bpe".  The flags in the file override the defaults.
 * A BOS / EOS / EOT / unknown id outside the vocab is an error; a padding id
 * outside it is dropped (-1), as llama.cpp does. */
mope_tokenizer *mope_tokenizer_from_gguf(const mope_gguf *g, mope_error *err);
/* Opens path, reads the tokenizer, closes the file. */
mope_tokenizer *mope_tokenizer_load(const char *path, mope_error *err);
void mope_tokenizer_free(mope_tokenizer *t);

/* Building a tokenizer from memory (e.g. a freshly trained vocabulary).
 * Call mope_tokenizer_params_init first: it sets every id to -1 (absent),
 * every flag to -1 (= the model's default, as for from_gguf) and pointers to
 * NULL.  All arrays are copied. */
typedef struct mope_tokenizer_params {
    const char *model;           /* "llama" or "gpt2" (required) */
    const char *pre;             /* pre-tokenizer; NULL = "default" */
    int32_t n_tokens;            /* > 0 */
    const char *const *tokens;   /* n_tokens pieces, as stored in GGUF ("▁"/"Ġ" forms) */
    const size_t *token_lens;    /* NULL: tokens are NUL-terminated */
    const float *scores;         /* NULL: all 0 */
    const int32_t *types;        /* mope_token_type values; NULL: all NORMAL */
    int32_t n_merges;            /* gpt2: merges "left right", rank = index */
    const char *const *merges;   /* NUL-terminated */
    int32_t bos_id, eos_id, eot_id, unk_id, pad_id; /* -1: absent */
    int add_bos, add_eos, add_space_prefix;          /* -1: default, 0, 1 */
    const char *chat_template;   /* NULL: none */
} mope_tokenizer_params;

void mope_tokenizer_params_init(mope_tokenizer_params *p);
/* Validates everything (non-empty vocab, known model/pre, token types,
 * merges naming existing tokens, special ids in range) and fails with a
 * message naming the problem.  A piece listed twice maps to its last id for
 * lookups, as in llama.cpp. */
mope_tokenizer *mope_tokenizer_new(const mope_tokenizer_params *p, mope_error *err);

/* Stores tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,
 * *_token_id,add_bos_token,add_eos_token,add_space_prefix} and
 * tokenizer.chat_template (when present) into a model file being written,
 * so that mope_tokenizer_from_gguf (and llama.cpp) read back the same tokenizer. */
int mope_tokenizer_write_gguf_kv(const mope_tokenizer *t, mope_gguf_writer *w, mope_error *err);

/* ---- properties ---- */
int32_t mope_tokenizer_n_vocab(const mope_tokenizer *t);
const char *mope_tokenizer_model(const mope_tokenizer *t); /* "llama" / "gpt2" */
const char *mope_tokenizer_pre(const mope_tokenizer *t);   /* "default", "gpt-2", ... */
int32_t mope_tokenizer_bos(const mope_tokenizer *t);       /* -1 when absent */
int32_t mope_tokenizer_eos(const mope_tokenizer *t);
int32_t mope_tokenizer_eot(const mope_tokenizer *t);       /* the key, or <|eot_id|> / <|im_end|> / ... found by text */
int32_t mope_tokenizer_unk(const mope_tokenizer *t);
int32_t mope_tokenizer_pad(const mope_tokenizer *t);
bool mope_tokenizer_add_bos(const mope_tokenizer *t);
bool mope_tokenizer_add_eos(const mope_tokenizer *t);
bool mope_tokenizer_add_space_prefix(const mope_tokenizer *t); /* used by the llama model only */
const char *mope_tokenizer_chat_template(const mope_tokenizer *t); /* NULL when absent */

/* The piece exactly as stored in the vocab (e.g. "▁Hello", "ĠHello",
 * "<0x0A>", "<|eot_id|>"), NUL-terminated; *len (optional) gets its byte
 * length.  NULL for an id out of range. */
const char *mope_tokenizer_piece(const mope_tokenizer *t, int32_t id, size_t *len);
mope_token_type mope_tokenizer_token_type(const mope_tokenizer *t, int32_t id); /* UNDEFINED if out of range */
float mope_tokenizer_score(const mope_tokenizer *t, int32_t id);                /* 0 if out of range */
/* Id of the vocab piece equal to the given bytes, or -1. */
int32_t mope_tokenizer_find(const mope_tokenizer *t, const char *piece, size_t len);
/* End of generation: EOS, EOT, and tokens whose text is one of llama.cpp's
 * end markers (<|eot_id|>, <|im_end|>, <|end|>, <|endoftext|>, <end_of_turn>,
 * <|end_of_text|>, <|eom_id|>, ...), whatever their type. */
bool mope_tokenizer_is_eog(const mope_tokenizer *t, int32_t id);
bool mope_tokenizer_is_control(const mope_tokenizer *t, int32_t id); /* CONTROL type */

/* ---- encoding ----
 * Tokenizes len bytes of text (need not be NUL-terminated; invalid UTF-8 is
 * encoded byte by byte as the model allows).  add_bos prepends the BOS id
 * (an error when the vocab has none); EOS is never added (append it yourself
 * when mope_tokenizer_add_eos says so).  With parse_special, the text of
 * CONTROL tokens becomes those tokens; USER_DEFINED tokens always do
 * (as in llama.cpp).  Writes at most cap ids to out and returns the number
 * of ids of the full encoding: if that is > cap, out holds the first cap ids
 * and the caller may resize and call again.  Negative MOPE_E* on error. */
int mope_tokenizer_encode(const mope_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                          int32_t *out, int cap, mope_error *err);
/* Same, into a malloc'd array (*out, free() it); returns the count. */
int mope_tokenizer_encode_alloc(const mope_tokenizer *t, const char *text, size_t len, bool add_bos,
                                bool parse_special, int32_t **out, mope_error *err);

/* ---- decoding ---- */
enum {
    /* Render CONTROL and UNKNOWN tokens (BOS, <|im_end|>, <unk>, ...) as
     * their text; without it they produce no bytes.  USER_DEFINED tokens are
     * always rendered. */
    MOPE_DECODE_SPECIAL = 1,
    /* Drop one leading space of the first token's text when a "llama"
     * (SentencePiece) tokenizer adds a space prefix (decode of a whole text). */
    MOPE_DECODE_STRIP_SPACE = 2,
};

/* Bytes of one token (no space strip): "▁" -> ' ', <0xXX> -> that byte,
 * byte-level pieces through the inverse GPT-2 byte map.  Writes at most cap
 * bytes (no NUL) and returns the full length, or negative on a bad id. */
int mope_tokenizer_token_bytes(const mope_tokenizer *t, int32_t id, int flags, char *out, size_t cap,
                               mope_error *err);
/* Concatenated bytes of n ids.  Writes at most cap bytes, and a NUL after
 * them when the result is shorter than cap; returns the full length
 * (call again with a bigger buffer if it is >= cap), negative on a bad id. */
int mope_tokenizer_decode(const mope_tokenizer *t, const int32_t *ids, int n, int flags, char *out, size_t cap,
                          mope_error *err);
/* Same into a malloc'd NUL-terminated string (free() it); *len optional. */
char *mope_tokenizer_decode_alloc(const mope_tokenizer *t, const int32_t *ids, int n, int flags, size_t *len,
                                  mope_error *err);

/* ---- streaming detokenizer ----
 * For generation: push tokens one at a time and get back the bytes that are
 * complete UTF-8 so far.  A character split over several tokens (byte
 * fallback, or byte-level BPE pieces) is held back until its last byte
 * arrives.  Bytes that can never become valid UTF-8 are passed through as
 * they are, so nothing is lost.  Returned pointers stay valid until the next
 * push/flush/reset/free of the same state. */
typedef struct mope_detok mope_detok;

/* flags: MOPE_DECODE_* (STRIP_SPACE applies to the first pushed token). */
mope_detok *mope_detok_new(const mope_tokenizer *t, int flags, mope_error *err);
void mope_detok_free(mope_detok *d);
void mope_detok_reset(mope_detok *d); /* forget held bytes; next token is "first" again */
/* Returns the newly completed bytes (*len may be 0), or NULL with err set
 * for a bad id / allocation failure. */
const char *mope_detok_push(mope_detok *d, int32_t id, size_t *len, mope_error *err);
/* Returns whatever is still held (an incomplete character at the end of the
 * stream), and empties the state. */
const char *mope_detok_flush(mope_detok *d, size_t *len);

/* ==== Tokenizer training (src/text/tokenizer_train.c) ====================
 * BPE on a text corpus producing a SentencePiece-style "llama" vocabulary,
 * so that trained and downloaded models go through the same tokenizer code.
 *
 * Text is normalised as the "llama" encoder does it: a space is prefixed to
 * every text (each buffer / file) and after every special token, spaces
 * become U+2581 "▁".  Special-token text (the specials below and <unk>,
 * <s>, </s>) is split out first.  Pre-words: a word is an optional leading
 * "▁" followed by a run of non-whitespace characters or a run of other
 * ASCII whitespace (\t \n \v \f \r); pieces never cross words.  Words
 * longer than 256 bytes are left out of the statistics (they still encode,
 * through shorter pieces and byte fallback).
 * Base pieces are the most frequent characters covering char_coverage of
 * all characters (plus "▁"); other characters go through byte fallback.
 * Then the most frequent adjacent pair (ties: smaller left id, then smaller
 * right id) is merged until the vocabulary is full, the best pair is seen
 * fewer than min_freq times, or no pair is left.  Merge i yields a piece of
 * score -i, so the encoder's highest-score-first merging repeats the merge
 * order; the trainer keeps every word segmented exactly as the encoder will
 * segment it (a new piece also absorbs other splits of the same string).
 *
 * Vocabulary layout: 0 <unk> (UNKNOWN), 1 <s>, 2 </s> (CONTROL), then the
 * specials in the given order, then <0x00>..<0xFF> (BYTE), then the base
 * characters (most frequent first; scores below every merge), then the
 * merged pieces in merge order.  add_bos and add_space_prefix are on,
 * pre "default".  The result is deterministic: same input, same bytes. */

typedef struct mope_tokenizer_train_progress {
    int phase;              /* 0: reading and counting words, 1: merging */
    int64_t done, total;    /* phase 0: inputs read / inputs; phase 1: merges done / merges planned */
    double elapsed_s;       /* since training started */
} mope_tokenizer_train_progress;

typedef void (*mope_tokenizer_train_progress_fn)(void *user, const mope_tokenizer_train_progress *p);

typedef struct mope_tokenizer_train_opts {
    const char *text;            /* one training text (may be NULL) ... */
    size_t text_len;
    const char *const *files;    /* ... and/or files read whole, each its own text */
    int n_files;
    int32_t vocab_size;          /* total tokens wanted, > 3 + 256 + n_specials */
    int32_t min_freq;            /* stop when the best pair occurs fewer times (default 2) */
    int32_t max_piece_chars;     /* longest merged piece in characters, "▁" counts 1 (default 16) */
    double char_coverage;        /* (0, 1]: share of characters that get base pieces (default 0.9995) */
    const char *const *specials; /* extra special tokens, e.g. "<|user|>" (non-empty, distinct, no spaces) */
    int n_specials;
    const bool *special_control; /* per special: true = CONTROL, false = USER_DEFINED; NULL: all USER_DEFINED */
    mope_tokenizer_train_progress_fn progress; /* optional, called from the training thread */
    void *progress_user;
} mope_tokenizer_train_opts;

/* Zeroes *o and sets the defaults above (vocab_size stays 0: required). */
void mope_tokenizer_train_opts_init(mope_tokenizer_train_opts *o);

typedef struct mope_tokenizer_train_result {
    mope_tokenizer *tok;       /* owned by the result */
    int32_t n_merges;
    int32_t *merges;           /* n_merges (left id, right id) pairs; merge i made token first_merge_id + i */
    int32_t first_merge_id;
    int32_t n_base_chars;      /* ids first_merge_id - n_base_chars .. first_merge_id - 1 */
    int64_t n_extra_merges;    /* word positions merged through another split of a new piece */
    int64_t n_bytes;           /* training bytes read */
    int64_t n_words, n_unique_words;
    double seconds;
} mope_tokenizer_train_result;

/* Trains; on success *out holds the tokenizer and the merge list (free with
 * mope_tokenizer_train_result_free).  Errors: bad options, unreadable or
 * empty data, a vocab_size below the fixed base, out of memory. */
int mope_tokenizer_train_bpe(const mope_tokenizer_train_opts *o, mope_tokenizer_train_result *out, mope_error *err);
void mope_tokenizer_train_result_free(mope_tokenizer_train_result *r);

/* Writes a vocabulary-only GGUF (general.architecture "llama", the
 * tokenizer.ggml.* keys, and mope.tokenizer.* recording the training
 * options and counts) atomically to path. */
int mope_tokenizer_train_save(const mope_tokenizer_train_result *r, const mope_tokenizer_train_opts *o,
                              const char *path, mope_error *err);
/* ==== end of tokenizer training ========================================= */

#ifdef __cplusplus
}
#endif
#endif
