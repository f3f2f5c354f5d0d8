/* Chat templates: turn a (system, user) message pair into the prompt text a
 * chat-tuned model expects, ending where the assistant's reply begins.
 *
 *   tulu    <|system|>\n{sys}\n<|user|>\n{msg}\n<|assistant|>\n
 *           (Tulu-2 / Personalized-Soups format; the system line only when given)
 *   chatml  <|im_start|>system\n{sys}<|im_end|>\n<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n
 *   llama2  [INST] <<SYS>>\n{sys}\n<</SYS>>\n\n{msg} [/INST]   or, without a system, [INST] {msg} [/INST]
 *   llama3  <|start_header_id|>system<|end_header_id|>\n\n{sys}<|eot_id|>
 *           <|start_header_id|>user<|end_header_id|>\n\n{msg}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n
 *   raw     {sys}\n\n{msg}   or just {msg}
 *
 * The BOS token (<s>, <|begin_of_text|>) is not part of the text: the
 * tokenizer adds it.  llama2 and llama3 strip leading and trailing
 * whitespace from the messages (the Jinja `| trim` of the Llama-3 template;
 * llama.cpp does the same for both).  Tokenize the result with special-token
 * parsing on, so the markers become their control tokens. */
#ifndef MOPE_CHAT_H
#define MOPE_CHAT_H

#include "mope/core.h"
#include "mope/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mope_chat_template {
    MOPE_CHAT_RAW = 0,
    MOPE_CHAT_TULU = 1,
    MOPE_CHAT_CHATML = 2,
    MOPE_CHAT_LLAMA2 = 3,
    MOPE_CHAT_LLAMA3 = 4,
    MOPE_CHAT_COUNT = 5,
} mope_chat_template;

/* "raw", "tulu", "chatml", "llama2", "llama3"; NULL when out of range. */
const char *mope_chat_name(mope_chat_template t);
/* Looks a template up by name (case-insensitive; "llama-2"/"llama-3" also
 * accepted).  Returns the template (>= 0) or MOPE_EINVAL with a message
 * listing the known names. */
int mope_chat_from_name(const char *name, mope_error *err);

/* Recognises a Jinja chat template (tokenizer.chat_template) by distinctive
 * markers, as llama.cpp does: "<|im_start|>" -> chatml,
 * "<|start_header_id|>" + "<|end_header_id|>" -> llama3, "[INST]" -> llama2,
 * "<|user|>" + "<|assistant|>" -> tulu.  Returns the template, or -1 when
 * none matches.  tmpl need not be NUL-terminated. */
int mope_chat_detect(const char *tmpl, size_t len);
/* Detects from a GGUF's tokenizer.chat_template.  Returns the template;
 * `fallback` when the file has no chat template; MOPE_EUNSUPPORTED when it has
 * one that is not recognised; MOPE_EFORMAT when the key is not a string. */
int mope_chat_detect_gguf(const mope_gguf *g, mope_chat_template fallback, mope_error *err);

/* Writes the prompt for `user` (required) with optional `system` (NULL or
 * "" = none) into out (cap bytes, NUL-terminated when it fits, like
 * snprintf).  Returns the full length, or a negative MOPE_E* code. */
int mope_chat_format(mope_chat_template t, const char *system, const char *user, char *out, size_t cap,
                     mope_error *err);
/* Same into a malloc'd string (free() it); NULL on error. */
char *mope_chat_format_alloc(mope_chat_template t, const char *system, const char *user, mope_error *err);

/* Text that ends the assistant's turn in this template and should stop
 * generation when the model emits it ("<|im_end|>", "<|eot_id|>", and for
 * tulu the start of the next turn "<|user|>"); NULL for llama2 and raw, whose
 * turns end with EOS. */
const char *mope_chat_end_marker(mope_chat_template t);

/* ---- stop strings in streamed output ----
 * Generation that should end at a text marker (e.g. the end marker above,
 * when the vocabulary has no single token for it) streams its text through a
 * filter: bytes that might be the beginning of the marker are held back until
 * they turn out not to be, and the marker itself is never emitted. */
typedef struct mope_stop_filter mope_stop_filter;

/* stop must be non-empty. */
mope_stop_filter *mope_stop_filter_new(const char *stop, mope_error *err);
void mope_stop_filter_free(mope_stop_filter *f);
/* Feeds n bytes of output.  Returns the bytes that may be emitted now
 * (*out_len of them; valid until the next call on f), or NULL on allocation
 * failure.  When the marker is complete, returns the text before it and sets
 * *stopped; from then on every feed returns nothing. */
const char *mope_stop_filter_feed(mope_stop_filter *f, const char *bytes, size_t n, size_t *out_len,
                                  bool *stopped, mope_error *err);
/* End of stream: returns whatever was held back (nothing after a stop). */
const char *mope_stop_filter_flush(mope_stop_filter *f, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
