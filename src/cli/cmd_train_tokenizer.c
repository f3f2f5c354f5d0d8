/* mope train tokenizer: BPE training of a SentencePiece-style vocabulary,
 * saved as a vocabulary-only GGUF. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mope/tokenizer.h"

int cmd_train_tokenizer(int argc, char **argv);

static const char *const HELP =
    "usage: mope train tokenizer --data FILE [--data FILE ...] --vocab-size N\n"
    "                            --out OUT.gguf [options]\n"
    "\n"
    "Learns a BPE vocabulary of N tokens from the text files, SentencePiece-style\n"
    "(model \"llama\": spaces become U+2581, byte fallback, BOS added), and writes it\n"
    "as a vocabulary-only GGUF that every mope command (and llama.cpp) reads like\n"
    "the tokenizer of a downloaded model.  Each file is one text: a space is\n"
    "prefixed to it, as the tokenizer does when encoding.  The vocabulary holds\n"
    "<unk> <s> </s>, the special tokens, the 256 byte tokens <0x00>..<0xFF>, the\n"
    "characters covering --coverage of the text, then the merged pieces in merge\n"
    "order.  Training stops early when no pair occurs --min-freq times.\n"
    "The same data and options give a byte-identical file.\n"
    "\n"
    "options:\n"
    "  -d, --data FILE        training text (repeatable; required)\n"
    "  -n, --vocab-size N     total number of tokens (required; at least\n"
    "                         259 + the number of special tokens)\n"
    "  -o, --out OUT.gguf     output file (required; written atomically)\n"
    "  --special TOKEN        a user-defined token, e.g. \"<|user|>\": always one\n"
    "                         token and printed when decoding (repeatable)\n"
    "  --control TOKEN        a control token, e.g. \"<|end|>\": one token only when\n"
    "                         special parsing is on, not printed (repeatable)\n"
    "  --min-freq N           least pair count worth a merge (default 2)\n"
    "  --max-piece-len N      longest merged piece in characters (default 16)\n"
    "  --coverage F           share of characters that get their own piece, the\n"
    "                         rest use byte tokens (default 0.9995)\n"
    "  -q, --quiet            no progress on standard error\n"
    "  -h, --help             show this help\n"
    "\n"
    "Progress goes to standard error (a live line on a terminal, otherwise a line\n"
    "every 10%); one summary line goes to standard output.\n";

typedef struct progress {
    bool tty, quiet, open, merging;
    double last, merge_t0; /* the ETA counts merge time only: reading has its own pace */
    int decile;
} progress;

static void fmt_time(double s, char *buf, size_t cap) {
    if (s < 60) snprintf(buf, cap, "%.1fs", s);
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

static void on_progress(void *user, const mope_tokenizer_train_progress *p) {
    progress *pr = user;
    if (pr->quiet) return;
    if (p->phase == 0) {
        if (pr->tty) {
            fprintf(stderr, "\rreading data: %lld/%lld files   ", (long long)p->done, (long long)p->total);
            pr->open = true;
        }
        return;
    }
    if (!pr->merging) {
        pr->merging = true;
        pr->merge_t0 = p->elapsed_s;
    }
    int pct = p->total > 0 ? (int)(100 * p->done / p->total) : 100;
    char el[32], eta[32];
    fmt_time(p->elapsed_s, el, sizeof el);
    if (p->done > 1)
        fmt_time((p->elapsed_s - pr->merge_t0) / (double)(p->done - 1) * (double)(p->total - p->done), eta, sizeof eta);
    else snprintf(eta, sizeof eta, "?");
    if (pr->tty) {
        if (p->elapsed_s - pr->last < 0.1 && p->done < p->total) return;
        pr->last = p->elapsed_s;
        fprintf(stderr, "\rmerges %lld/%lld (%3d%%)  elapsed %s  ETA %s   ", (long long)p->done,
                (long long)p->total, pct, el, eta);
        pr->open = true;
    } else if (pct / 10 > pr->decile) {
        pr->decile = pct / 10;
        fprintf(stderr, "merges %lld/%lld (%d%%)  elapsed %s  ETA %s\n", (long long)p->done, (long long)p->total,
                pct, el, eta);
    }
}

/* The output's directory must take a new file (the writer puts a temporary
 * next to it), so an unwritable path fails before the training, not after. */
static int check_output(const char *cmd, const char *out) {
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) return cli_fail(cmd, "output %s is a directory", out);
    char *dir = strdup(out);
    if (!dir) return cli_fail(cmd, "out of memory");
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) slash[1] = 0;
    else *slash = 0;
    int rc = 0;
    if (access(dir, W_OK | X_OK) != 0)
        rc = cli_fail(cmd, "cannot write the output %s: directory %s: %s", out, dir, strerror(errno));
    free(dir);
    return rc;
}

int cmd_train_tokenizer(int argc, char **argv) {
    const char *cmd = "train tokenizer", *out = NULL, *v = NULL;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    const char **specials = calloc((size_t)argc + 1, sizeof *specials);
    bool *control = calloc((size_t)argc + 1, sizeof *control);
    int n_files = 0, n_specials = 0, rc = 0;
    long long vocab = -1, min_freq = 2, max_len = 16;
    double coverage = 0.9995;
    progress pr = {.tty = isatty(STDERR_FILENO) == 1};
    if (!files || !specials || !control) {
        rc = cli_fail(cmd, "out of memory");
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        int r = 0;
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            goto done;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-d", "--data", &v))) {
            if (r < 0) goto usage;
            files[n_files++] = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-n", "--vocab-size", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--vocab-size", v, 1, 1 << 22, &vocab)) goto usage;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--out", &v))) {
            if (r < 0) goto usage;
            out = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--special", &v)) ||
                   (r = cli_opt(cmd, argc, argv, &i, NULL, "--control", &v))) {
            if (r < 0) goto usage;
            if (!v[0]) {
                rc = cli_usage_error(cmd, "%s: the token text is empty", a);
                goto done;
            }
            control[n_specials] = strncmp(a, "--control", 9) == 0;
            specials[n_specials++] = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--min-freq", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--min-freq", v, 1, INT32_MAX, &min_freq)) goto usage;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--max-piece-len", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--max-piece-len", v, 2, 256, &max_len)) goto usage;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--coverage", &v))) {
            if (r < 0 || cli_parse_float(cmd, "--coverage", v, 1e-6, 1.0, &coverage)) goto usage;
        } else if (cli_flag(a, "-q", "--quiet")) {
            pr.quiet = true;
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error(cmd, "unknown option '%s'", a);
            goto done;
        } else {
            rc = cli_usage_error(cmd, "unexpected argument '%s' (training files go after --data)", a);
            goto done;
        }
    }
    if (n_files == 0) {
        rc = cli_usage_error(cmd, "no training data (--data FILE)");
        goto done;
    }
    if (vocab < 0) {
        rc = cli_usage_error(cmd, "no vocabulary size (--vocab-size N)");
        goto done;
    }
    if (!out) {
        rc = cli_usage_error(cmd, "no output file (--out OUT.gguf)");
        goto done;
    }
    if (vocab < 259 + n_specials) {
        rc = cli_usage_error(cmd, "--vocab-size %lld is smaller than the fixed base of %d tokens "
                             "(3 control + 256 byte + %d special)", vocab, 259 + n_specials, n_specials);
        goto done;
    }
    for (int f = 0; f < n_files; f++) {
        struct stat st;
        if (stat(files[f], &st) != 0) {
            rc = cli_fail(cmd, "data file %s: %s", files[f], strerror(errno));
            goto done;
        }
        if (S_ISREG(st.st_mode) && st.st_size == 0) {
            rc = cli_fail(cmd, "data file %s is empty", files[f]);
            goto done;
        }
    }
    if ((rc = check_output(cmd, out))) goto done;

    mope_tokenizer_train_opts o;
    mope_tokenizer_train_opts_init(&o);
    o.files = files;
    o.n_files = n_files;
    o.vocab_size = (int32_t)vocab;
    o.min_freq = (int32_t)min_freq;
    o.max_piece_chars = (int32_t)max_len;
    o.char_coverage = coverage;
    o.specials = specials;
    o.n_specials = n_specials;
    o.special_control = control;
    o.progress = on_progress;
    o.progress_user = &pr;
    mope_tokenizer_train_result r;
    mope_error err = {0};
    int trc = mope_tokenizer_train_bpe(&o, &r, &err);
    if (pr.open) fputc('\n', stderr);
    if (trc) {
        rc = cli_fail_err(cmd, &err, NULL);
        goto done;
    }
    if (mope_tokenizer_train_save(&r, &o, out, &err)) {
        rc = cli_fail_err(cmd, &err, out);
        mope_tokenizer_train_result_free(&r);
        goto done;
    }
    printf("wrote %s: %d tokens (3 control, %d special, 256 byte, %d characters, %d merges) from %lld bytes, "
           "%lld words (%lld distinct) in %.2fs\n",
           out, (int)mope_tokenizer_n_vocab(r.tok), n_specials, (int)r.n_base_chars, (int)r.n_merges,
           (long long)r.n_bytes, (long long)r.n_words, (long long)r.n_unique_words, r.seconds);
    if (r.first_merge_id + r.n_merges < o.vocab_size && !pr.quiet)
        fprintf(stderr, "note: stopped at %d tokens: no pair left that occurs %lld times or more\n",
                (int)mope_tokenizer_n_vocab(r.tok), min_freq);
    mope_tokenizer_train_result_free(&r);
    goto done;
usage:
    rc = CLI_EXIT_USAGE;
done:
    free(files);
    free(specials);
    free(control);
    return rc;
}
