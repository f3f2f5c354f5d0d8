/* Training datasets: plain text packed for language-model pretraining,
 * prompt/response pairs for supervised fine-tuning, and preference pairs
 * for DPO and reward models.  JSONL files hold one JSON object per line
 * (blank lines are skipped); every problem is reported with the file name
 * and line number.
 *
 * Chat-formatted sequences (sft, dpo, rm, score) are built as
 *   encode(chat_format(template, system, prompt), add_bos = tokenizer's
 *          add_bos, parse_special = true)
 *   ++ encode(response, no BOS, no special parsing) ++ [EOS]
 * so the response is tokenised on its own (its tokens never merge with the
 * template's) and the model learns to end its turn with EOS.
 *
 * Sequences longer than the context: the response is cut to fit (the EOS
 * goes with it) and the cut is counted in n_truncated -- unless the
 * options ask for strict mode, where it is an error naming the line.  A
 * prompt that leaves no room for even one response token is always an
 * error. */
#ifndef MOPE_DATASET_H
#define MOPE_DATASET_H

#include "mope/chat.h"
#include "mope/core.h"
#include "mope/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One tokenised sequence: tokens[0..len); the loss (or the score) covers the
 * predictions of tokens[prompt_len..len), i.e. positions prompt_len-1 ..
 * len-2.  prompt_len >= 1. */
typedef struct mope_seq {
    int32_t *tokens;
    int32_t len;
    int32_t prompt_len;
} mope_seq;

typedef struct mope_pref_pair {
    mope_seq chosen, rejected;
    char *dimension; /* NULL when the record has none */
} mope_pref_pair;

typedef enum mope_dataset_kind {
    MOPE_DATASET_TEXT = 0, /* packed windows of n_ctx + 1 tokens */
    MOPE_DATASET_SFT = 1,  /* mope_seq per record */
    MOPE_DATASET_PREF = 2, /* mope_pref_pair per record */
} mope_dataset_kind;

typedef struct mope_dataset {
    mope_dataset_kind kind;
    int32_t n_ctx;
    /* TEXT: n windows, window i = stream[i * n_ctx .. i * n_ctx + n_ctx]
     * (n_ctx + 1 tokens: inputs and the shifted targets). */
    int32_t *stream;
    int64_t n_stream;
    /* SFT: n sequences; PREF: n pairs */
    mope_seq *seqs;
    mope_pref_pair *pairs;
    int64_t n;
    int64_t n_truncated; /* sequences cut to fit n_ctx */
    int64_t n_tokens;    /* tokens in the dataset (all sequences) */
} mope_dataset;

typedef struct mope_dataset_opts {
    const mope_tokenizer *tok;     /* required */
    int32_t n_ctx;                 /* >= 2 */
    mope_chat_template chat;       /* for sft / pref records */
    const char *system;            /* optional system message */
    bool strict;                   /* over-long sequence: error instead of truncation */
} mope_dataset_opts;

void mope_dataset_opts_init(mope_dataset_opts *o);

/* Plain text (len bytes) tokenised as one document (BOS when the tokenizer
 * adds one) and packed into windows of n_ctx + 1 tokens that overlap by one
 * token.  At least n_ctx + 1 tokens are needed. */
int mope_dataset_text(const mope_dataset_opts *o, const char *text, size_t len, mope_dataset *out, mope_error *err);
/* Reads a text file, then as mope_dataset_text. */
int mope_dataset_text_file(const mope_dataset_opts *o, const char *path, mope_dataset *out, mope_error *err);
/* JSONL of {"prompt": str, "response": str} (other fields are ignored). */
int mope_dataset_sft_file(const mope_dataset_opts *o, const char *path, mope_dataset *out, mope_error *err);
/* JSONL of {"prompt": str, "chosen": str, "rejected": str [, "dimension": str]}. */
int mope_dataset_pref_file(const mope_dataset_opts *o, const char *path, mope_dataset *out, mope_error *err);
/* Same from a buffer; name is used in error messages. */
int mope_dataset_sft_jsonl(const mope_dataset_opts *o, const char *data, size_t len, const char *name,
                           mope_dataset *out, mope_error *err);
int mope_dataset_pref_jsonl(const mope_dataset_opts *o, const char *data, size_t len, const char *name,
                            mope_dataset *out, mope_error *err);

/* Builds one chat-formatted sequence as described above (tokens malloc'd:
 * free with mope_seq_free).  *truncated (optional) tells whether it was cut. */
int mope_dataset_make_seq(const mope_dataset_opts *o, const char *prompt, const char *response, mope_seq *out,
                          bool *truncated, mope_error *err);
void mope_seq_free(mope_seq *s);

void mope_dataset_free(mope_dataset *d);
/* Number of training examples: windows, sequences or pairs. */
int64_t mope_dataset_size(const mope_dataset *d);

#ifdef __cplusplus
}
#endif
#endif
