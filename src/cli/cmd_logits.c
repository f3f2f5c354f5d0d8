/* mope logits: raw next-token logits of every input position, to a file. */
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/io.h"
#include "mope/model.h"
#include "mope/tokenizer.h"

static const char *const HELP =
    "usage: mope logits -m FILE (-p TEXT | --ids \"ID ID ...\") -o OUT [options]\n"
    "\n"
    "Runs the model over the input and writes the logits of every input position\n"
    "(row i = the scores for the token after input token i) to OUT as little-endian\n"
    "f32, n_tokens rows of n_vocab values, row by row, with no header.  OUT is\n"
    "written to a temporary file and renamed into place.  A one-line summary\n"
    "(tokens, vocabulary size, bytes) goes to standard error.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   GGUF model (required)\n"
    "  -p, --prompt TEXT  input text, tokenized with the model's tokenizer; BOS is\n"
    "                     prepended when the vocabulary says so\n"
    "  --ids \"ID ...\"     input token ids instead of text (spaces or commas between\n"
    "                     them; no BOS is added)\n"
    "  -o, --output OUT   output file (required)\n"
    "  --no-bos           with -p: do not prepend BOS\n"
    "  --special          with -p: parse control-token text (e.g. <|im_start|>)\n"
    "  --lora FILE[:SCALE]  LoRA adapter GGUF for the model (llama.cpp's format),\n"
    "                     applied at SCALE (default 1); repeatable: the adapters'\n"
    "                     updates add up\n"
    "  -t, --threads N    threads (default: all CPUs)\n"
    "  -h, --help         show this help\n";

/* Rows per forward call: bounds the logits buffer (rows x n_vocab floats). */
#define LOGITS_BATCH 64

static void to_le(float *x, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = __builtin_bswap32(u);
        memcpy(&x[i], &u, 4);
    }
#else
    (void)x;
    (void)n;
#endif
}

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits", *model = NULL, *prompt = NULL, *ids_s = NULL, *outp = NULL, *v = NULL;
    bool no_bos = false, special = false;
    int threads = cli_default_threads(), n_lora = 0;
    const char *lora[CLI_MAX_LORA];
    for (int i = 1; i < argc; i++) {
        int r = 0;
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-m", "--model", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            model = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-p", "--prompt", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            prompt = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--ids", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            ids_s = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--output", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            outp = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-t", "--threads", &v))) {
            if (r < 0 || cli_parse_threads(cmd, v, &threads)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--lora", &v))) {
            if (r < 0 || cli_lora_push(cmd, lora, &n_lora, v)) return CLI_EXIT_USAGE;
        } else if (cli_flag(a, NULL, "--no-bos")) {
            no_bos = true;
        } else if (cli_flag(a, NULL, "--special")) {
            special = true;
        } else if (a[0] == '-') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the text goes after -p)", a);
        }
    }
    if (!model) return cli_usage_error(cmd, "no model given (-m FILE)");
    if (!outp) return cli_usage_error(cmd, "no output file given (-o OUT)");
    if (!prompt == !ids_s) return cli_usage_error(cmd, "give exactly one of -p TEXT and --ids \"ID ...\"");

    cli_model cm;
    int rc = cli_model_open(cmd, model, threads, prompt != NULL, &cm);
    if (rc) return rc;
    if ((rc = cli_model_add_loras(cmd, &cm, lora, n_lora))) {
        cli_model_close(&cm);
        return rc;
    }
    mope_error err = {0};
    int32_t *ids = NULL;
    int n = 0;
    float *logits = NULL;
    mope_kv *kv = NULL;
    mope_io_atomic *f = NULL;
    if (ids_s) {
        if ((rc = cli_parse_ids(cmd, ids_s, cm.n_vocab, &ids, &n))) goto done;
    } else {
        bool bos = !no_bos && mope_tokenizer_add_bos(cm.tok);
        n = mope_tokenizer_encode_alloc(cm.tok, prompt, strlen(prompt), bos, special, &ids, &err);
        if (n < 0) {
            rc = cli_fail_err(cmd, &err, "tokenizing the prompt");
            goto done;
        }
        if (n == 0) {
            rc = cli_fail(cmd, "the prompt is empty (no tokens)");
            goto done;
        }
    }
    if (n > cm.n_ctx_train) {
        rc = cli_fail(cmd, "the input has %d tokens, more than the model's context length %d", n, cm.n_ctx_train);
        goto done;
    }
    kv = mope_kv_new(cm.model, 1, n, &err);
    int batch = n < LOGITS_BATCH ? n : LOGITS_BATCH;
    logits = malloc((size_t)batch * (size_t)cm.n_vocab * sizeof *logits);
    mope_row *rows = malloc((size_t)batch * sizeof *rows);
    if (!kv || !logits || !rows) {
        free(rows);
        rc = kv ? cli_fail(cmd, "out of memory for %d x %d logits", batch, cm.n_vocab)
                : cli_fail_err(cmd, &err, "allocating the KV cache");
        goto done;
    }
    if (!(f = mope_io_atomic_open(outp, &err))) {
        free(rows);
        rc = cli_fail_err(cmd, &err, NULL);
        goto done;
    }
    for (int p0 = 0; p0 < n; p0 += batch) {
        int nb = n - p0 < batch ? n - p0 : batch;
        for (int j = 0; j < nb; j++)
            rows[j] = (mope_row){.seq = 0, .token = ids[p0 + j], .pos = p0 + j, .adapter = cm.adapter,
                                 .want_logits = true};
        if (mope_model_forward(cm.model, kv, rows, nb, logits, cm.pool, &err) != 0) {
            rc = cli_fail_err(cmd, &err, "forward pass");
            break;
        }
        size_t cnt = (size_t)nb * (size_t)cm.n_vocab;
        to_le(logits, cnt);
        if (mope_io_atomic_write(f, logits, cnt * sizeof *logits, &err) != 0) {
            rc = cli_fail_err(cmd, &err, NULL);
            break;
        }
    }
    free(rows);
    if (rc) {
        mope_io_atomic_abort(f);
    } else if (mope_io_atomic_commit(f, &err) != 0) {
        rc = cli_fail_err(cmd, &err, NULL);
    } else {
        fprintf(stderr, "wrote %d x %d logits (%zu bytes) to %s\n", n, cm.n_vocab,
                (size_t)n * (size_t)cm.n_vocab * sizeof(float), outp);
    }
done:
    free(logits);
    free(ids);
    mope_kv_free(kv);
    cli_model_close(&cm);
    return rc;
}
