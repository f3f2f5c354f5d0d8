/* mope tokenize -m FILE TEXT: the token ids, on one line. */
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/tokenizer.h"

static const char *const HELP =
    "usage: mope tokenize -m FILE [--no-bos] [--special] (TEXT | -f TEXTFILE)\n"
    "\n"
    "Prints the token ids of TEXT (or of the contents of TEXTFILE, byte for byte)\n"
    "on one line, separated by single spaces, and nothing else on standard output.\n"
    "FILE is any GGUF with tokenizer metadata (a model or a vocabulary-only file).\n"
    "A BOS id is prepended when the vocabulary says so (tokenizer.ggml.add_bos_token,\n"
    "or the tokenizer type's default) unless --no-bos is given.  EOS is never added.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   GGUF file with the tokenizer (required)\n"
    "  -f, --file PATH    read the text from PATH instead of the command line\n"
    "  --no-bos           do not prepend BOS\n"
    "  --special          turn the text of control tokens (e.g. <|im_start|>, <s>)\n"
    "                     into those tokens (default: plain text)\n"
    "  --                 end of options (for a TEXT that starts with '-')\n"
    "  -h, --help         show this help\n";

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize", *model = NULL, *file = NULL, *text = NULL, *v = NULL;
    bool no_bos = false, special = false, opts_done = false;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        const char *a = argv[i];
        if (!opts_done && cli_is_help(a)) {
            fputs(HELP, stdout);
            return 0;
        } else if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
        } else if (!opts_done && (r = cli_opt(cmd, argc, argv, &i, "-m", "--model", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            model = v;
        } else if (!opts_done && (r = cli_opt(cmd, argc, argv, &i, "-f", "--file", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            file = v;
        } else if (!opts_done && cli_flag(a, NULL, "--no-bos")) {
            no_bos = true;
        } else if (!opts_done && cli_flag(a, NULL, "--special")) {
            special = true;
        } else if (!opts_done && a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (text) {
            return cli_usage_error(cmd, "one TEXT expected (quote it), got a second one: '%s'", a);
        } else {
            text = a;
        }
    }
    if (!model) return cli_usage_error(cmd, "no tokenizer given (-m FILE)");
    if (text && file) return cli_usage_error(cmd, "give either TEXT or -f TEXTFILE, not both");
    if (!text && !file) return cli_usage_error(cmd, "no TEXT given");

    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = cli_read_text(cmd, file, &len))) return CLI_EXIT_ERROR;
        text = buf;
    } else {
        len = strlen(text);
    }
    mope_error err = {0};
    mope_tokenizer *tok = mope_tokenizer_load(model, &err);
    if (!tok) {
        free(buf);
        return cli_fail_err(cmd, &err, NULL); /* the message names the file */
    }
    bool bos = !no_bos && mope_tokenizer_add_bos(tok);
    int32_t *ids = NULL;
    int n = mope_tokenizer_encode_alloc(tok, text, len, bos, special, &ids, &err);
    int rc = 0;
    if (n < 0) {
        rc = cli_fail_err(cmd, &err, "tokenizing");
    } else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        putchar('\n');
    }
    free(ids);
    free(buf);
    mope_tokenizer_free(tok);
    return rc;
}
