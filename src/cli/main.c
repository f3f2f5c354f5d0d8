/* `mope`: dispatches to one sub-command per file (cmd_*.c).  The commands
 * are thin: parse arguments, call the library, print. */
#include <stdlib.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "show a GGUF file's metadata, tensors and size"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"logits", cmd_logits, "write the logits of every position of an input to a file"},
    {"perplexity", cmd_perplexity, "measure a model's perplexity on a text file"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"model-init", cmd_model_init, "write a model with random weights"},
    {"train", cmd_train, "train a tokenizer, language model, SFT/DPO model or reward model"},
    {"score", cmd_score, "score prompt/response pairs with a reward model"},
    {"eval", cmd_eval, "evaluate every method x preference combination on held-out prompts"},
    {"prefbench", cmd_prefbench, "build the PrefBench benchmark's data"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: mope COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nrun 'mope COMMAND --help' for a command's options.\n"
               "exit status: 0 success, 1 error, 2 bad usage.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            int rc = commands[i].fn(argc - 1, argv + 1);
            /* stdout may be a closed pipe or a full disk: that is an error too */
            if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "mope %s: error: writing to standard output failed\n", commands[i].name);
                if (rc == 0) rc = CLI_EXIT_ERROR;
            }
            return rc;
        }
    fprintf(stderr, "mope: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
