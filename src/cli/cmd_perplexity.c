/* mope perplexity: llama.cpp-style chunked perplexity of a text file. */
#include <math.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/model.h"
#include "mope/tokenizer.h"

static const char *const HELP =
    "usage: mope perplexity -m FILE -f TEXTFILE [-c CTX] [-t THREADS]\n"
    "\n"
    "Perplexity of the model on a text file, computed as llama.cpp's perplexity\n"
    "tool does: the whole file is tokenized (BOS first when the vocabulary adds\n"
    "one), cut into floor(n_tokens / CTX) chunks of CTX tokens (the rest is\n"
    "ignored), and each chunk is evaluated from an empty context, its first token\n"
    "replaced by BOS when the vocabulary adds one.  Only the second half of each\n"
    "chunk is scored (the predictions of tokens CTX/2+1 .. CTX-1), so every scored\n"
    "token sees at least CTX/2 tokens of context.  PPL = exp(mean negative log-\n"
    "likelihood of the scored tokens); the +/- is one standard error (delta\n"
    "method).  Running values per chunk go to standard error as [chunk]ppl; the\n"
    "final line goes to standard output:\n"
    "  PPL = X +/- E (C chunks of CTX tokens, N tokens scored)\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   GGUF model (required)\n"
    "  -f, --file PATH    text file (required); must give at least CTX tokens\n"
    "  -c, --ctx CTX      chunk size in tokens, 4 .. the model's context length\n"
    "                     (default: 512, or the model's context length if smaller)\n"
    "  -t, --threads N    threads (default: all CPUs)\n"
    "  -h, --help         show this help\n";

#define PPL_BATCH 64

/* -log softmax(logits)[target], in double for long vocabularies. */
static double nll_of(const float *logits, int n_vocab, int32_t target) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - mx));
    return log(sum) - (double)(logits[target] - mx);
}

int cmd_perplexity(int argc, char **argv) {
    const char *cmd = "perplexity", *model = NULL, *file = NULL, *v = NULL;
    long long ctx = 0;
    int threads = cli_default_threads();
    for (int i = 1; i < argc; i++) {
        int r = 0;
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-m", "--model", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            model = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-f", "--file", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            file = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-c", "--ctx", &v))) {
            if (r < 0 || cli_parse_int(cmd, "-c", v, 4, 1 << 24, &ctx)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-t", "--threads", &v))) {
            if (r < 0 || cli_parse_threads(cmd, v, &threads)) return CLI_EXIT_USAGE;
        } else if (a[0] == '-') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the text file goes after -f)", a);
        }
    }
    if (!model) return cli_usage_error(cmd, "no model given (-m FILE)");
    if (!file) return cli_usage_error(cmd, "no text file given (-f TEXTFILE)");

    size_t len = 0;
    char *text = cli_read_text(cmd, file, &len);
    if (!text) return CLI_EXIT_ERROR;
    cli_model cm;
    int rc = cli_model_open(cmd, model, threads, true, &cm);
    if (rc) {
        free(text);
        return rc;
    }
    if (ctx == 0) ctx = cm.n_ctx_train < 512 ? cm.n_ctx_train : 512;
    int32_t *ids = NULL;
    float *logits = NULL;
    mope_row *rows = NULL;
    mope_kv *kv = NULL;
    mope_error err = {0};
    if (ctx > cm.n_ctx_train) {
        rc = cli_fail(cmd, "-c %lld is larger than the model's context length %d", ctx, cm.n_ctx_train);
        goto done;
    }
    const bool add_bos = mope_tokenizer_add_bos(cm.tok);
    const int32_t bos = mope_tokenizer_bos(cm.tok);
    int n = mope_tokenizer_encode_alloc(cm.tok, text, len, add_bos, false, &ids, &err);
    if (n < 0) {
        rc = cli_fail_err(cmd, &err, "tokenizing the text");
        goto done;
    }
    const int n_ctx = (int)ctx, n_chunks = n / n_ctx, first = n_ctx / 2;
    if (n_chunks == 0) {
        rc = cli_fail(cmd, "%s gives %d tokens, fewer than one chunk of %d; use a longer text or a smaller -c",
                      file, n, n_ctx);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] >= cm.n_vocab) {
            rc = cli_fail(cmd, "token %d is outside the model's vocabulary of %d", (int)ids[i], cm.n_vocab);
            goto done;
        }
    kv = mope_kv_new(cm.model, 1, n_ctx, &err);
    logits = malloc((size_t)PPL_BATCH * (size_t)cm.n_vocab * sizeof *logits);
    rows = malloc(PPL_BATCH * sizeof *rows);
    if (!kv || !logits || !rows) {
        rc = kv ? cli_fail(cmd, "out of memory") : cli_fail_err(cmd, &err, "allocating the KV cache");
        goto done;
    }
    double nll = 0.0, nll2 = 0.0;
    long long count = 0;
    double t0 = mope_time_s();
    for (int c = 0; c < n_chunks; c++) {
        int32_t *tok = ids + (size_t)c * (size_t)n_ctx;
        mope_kv_clear(kv);
        for (int p0 = 0; p0 < n_ctx; p0 += PPL_BATCH) {
            int nb = n_ctx - p0 < PPL_BATCH ? n_ctx - p0 : PPL_BATCH;
            for (int j = 0; j < nb; j++) {
                int pos = p0 + j;
                int32_t t = (pos == 0 && add_bos && bos >= 0) ? bos : tok[pos];
                /* position pos predicts tok[pos + 1]; score the second half */
                rows[j] = (mope_row){.seq = 0, .token = t, .pos = pos, .adapter = -1,
                                     .want_logits = pos >= first && pos < n_ctx - 1};
            }
            if (mope_model_forward(cm.model, kv, rows, nb, logits, cm.pool, &err) != 0) {
                rc = cli_fail_err(cmd, &err, "forward pass");
                goto done;
            }
            int k = 0;
            for (int j = 0; j < nb; j++) {
                if (!rows[j].want_logits) continue;
                int pos = p0 + j;
                double l = nll_of(logits + (size_t)k++ * (size_t)cm.n_vocab, cm.n_vocab, tok[pos + 1]);
                nll += l;
                nll2 += l * l;
                count++;
            }
        }
        fprintf(stderr, "[%d]%.4f%s", c + 1, exp(nll / (double)count), c + 1 < n_chunks ? "," : "\n");
    }
    double mean = nll / (double)count, ppl = exp(mean);
    double var = nll2 / (double)count - mean * mean;
    double se = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) * ppl : 0.0;
    printf("PPL = %.4f +/- %.4f (%d chunks of %d tokens, %lld tokens scored)\n", ppl, se, n_chunks, n_ctx, count);
    fprintf(stderr, "%.1f tokens/s\n", (double)n_chunks * n_ctx / (mope_time_s() - t0));
done:
    free(rows);
    free(logits);
    free(ids);
    free(text);
    mope_kv_free(kv);
    cli_model_close(&cm);
    return rc;
}
