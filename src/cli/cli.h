/* Shared helpers of the `mope` command: option matching, strict number
 * parsing and error reporting.  Exit codes: 0 success, 1 a runtime error
 * (bad file, library failure), 2 a usage error (unknown option, bad value). */
#ifndef MOPE_CLI_H
#define MOPE_CLI_H

#include <stdio.h>

#include "mope/core.h"

#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2

typedef int (*cli_cmd_fn)(int argc, char **argv);

/* Sub-commands (argv[0] is the sub-command's name). */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_model_init(int argc, char **argv);
int cmd_prefbench(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* Prints "mope CMD: error: ..." to stderr and returns CLI_EXIT_ERROR. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same for a library error: "mope CMD: error: <context>: <err->msg>". */
int cli_fail_err(const char *cmd, const mope_error *err, const char *context);
/* Prints the usage error and a hint to run --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option matching for argv[*i]: accepts "-s VALUE", "--long VALUE" and
 * "--long=VALUE" (short or long may be NULL).  Returns 1 and sets *value
 * (advancing *i past a separate value) on a match, 0 when argv[*i] is another
 * option, -1 (after printing a usage error) when the value is missing. */
int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *short_name, const char *long_name,
            const char **value);
/* True when argv[i] is exactly one of the names (either may be NULL). */
int cli_flag(const char *arg, const char *short_name, const char *long_name);
/* True for "-h" / "--help". */
int cli_is_help(const char *arg);

/* Strict parsers: the whole string must be a number within [lo, hi].  On
 * failure print a usage error naming the option and return -1. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out);
int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);

/* Threads: "-t N" value, or the number of CPUs when 0. */
int cli_default_threads(void);

/* Reads a whole text file (NUL-terminated); prints the error itself. */
char *cli_read_text(const char *cmd, const char *path, size_t *len);

/* Reads the JSONL file in, calls fn on every non-blank line's object (which fn
 * may change; it prints its own errors and returns non-zero to stop), and
 * writes the objects, one per line, to out (atomically) or to standard output
 * when out is NULL.  A malformed line or an empty file is an error.  Returns 0
 * or an exit code; *n_out gets the number of records. */
typedef struct cJSON cJSON;
typedef int (*cli_jsonl_fn)(void *ctx, cJSON *obj, long long line);
int cli_jsonl_map(const char *cmd, const char *in, const char *out, cli_jsonl_fn fn, void *ctx, long long *n_out);

/* A model with its tokenizer and a thread pool, as the inference commands
 * use them. */
typedef struct mope_model mope_model;
typedef struct mope_tokenizer mope_tokenizer;
typedef struct mope_lora mope_lora;
typedef struct cli_model {
    mope_model *model;
    mope_tokenizer *tok; /* NULL when not requested */
    mope_pool *pool;
    int n_vocab;         /* the model's logits width */
    int n_ctx_train;
    mope_lora *lora;     /* the attached adapter (several --lora combined), owned */
    int adapter;         /* what rows pass as mope_row.adapter: -1 without --lora */
} cli_model;

/* Loads path; with want_tok also its tokenizer.  Prints errors itself and
 * returns CLI_EXIT_ERROR, 0 on success. */
int cli_model_open(const char *cmd, const char *path, int n_threads, bool want_tok, cli_model *out);
void cli_model_close(cli_model *m);

/* --lora FILE[:SCALE], repeatable (at most CLI_MAX_LORA). */
#define CLI_MAX_LORA 16
/* Adds one --lora value to specs[*n]; prints a usage error and returns
 * CLI_EXIT_USAGE when there are too many. */
int cli_lora_push(const char *cmd, const char **specs, int *n, const char *value);
/* Loads the adapters named by specs ("FILE" or "FILE:SCALE", scale 1 by
 * default) for m's model and attaches them as one adapter (m->adapter):
 * one file is attached at its scale; several are combined into one
 * adapter whose update is the sum of scale_k x update_k (mope_lora_average,
 * delta mode, the scales as weights).  Prints errors itself and returns
 * CLI_EXIT_ERROR or CLI_EXIT_USAGE, 0 on success (also for n = 0). */
int cli_model_add_loras(const char *cmd, cli_model *m, const char *const *specs, int n);

/* Parses "ID ID ..." (spaces, tabs, newlines or commas between ids) into a
 * malloc'd array; each id must be in [0, n_vocab).  Prints the error itself
 * and returns CLI_EXIT_USAGE, 0 on success. */
int cli_parse_ids(const char *cmd, const char *s, int n_vocab, int32_t **ids, int *n);

/* "-t N": 1..1024 threads. */
int cli_parse_threads(const char *cmd, const char *s, int *out);

#endif
