/* mope generate: sample a continuation (or a chat reply) and stream it. */
#include <math.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/chat.h"
#include "mope/model.h"
#include "mope/sampler.h"
#include "mope/tokenizer.h"

static const char *const HELP =
    "usage: mope generate -m FILE -p TEXT [options]\n"
    "\n"
    "Generates text after TEXT and streams it to standard output as it is sampled\n"
    "(the prompt itself is not printed; a newline follows the text).  The prompt is\n"
    "tokenized with BOS when the vocabulary adds one; control-token text in it is\n"
    "parsed only with --chat.  Generation stops after N tokens, at an\n"
    "end-of-generation token (EOS, EOT, <|im_end|>, <|eot_id|>, ...; not printed),\n"
    "at the chat template's end marker with --chat, or when the model's context\n"
    "length is reached (reported on standard error).  A prompt as long as the\n"
    "context is an error.  At the end one line goes to standard error:\n"
    "  N tokens, X tok/s (prompt Y tok/s)\n"
    "N counts the generated tokens (an end-of-generation token is not counted).\n"
    "\n"
    "options:\n"
    "  -m, --model FILE        GGUF model (required; a vocabulary-only file is refused)\n"
    "  -p, --prompt TEXT       the prompt (required)\n"
    "  --chat                  wrap the prompt in the model's chat template (detected\n"
    "                          from tokenizer.chat_template; tulu when the file has\n"
    "                          none) and parse control-token text in it\n"
    "  --template NAME         chat template by name: raw, tulu, chatml, llama2,\n"
    "                          llama3 (implies --chat)\n"
    "  --system TEXT           system message for --chat (default: none)\n"
    "  -n, --n-predict N       tokens to generate, 0 .. 1000000 (default 128)\n"
    "  --temp T                temperature; 0 = greedy (default 0.8)\n"
    "  --top-k K               keep the K most likely tokens; 0 = off (default 40)\n"
    "  --top-p P               keep the smallest set with probability >= P; 1 = off\n"
    "                          (default 0.95)\n"
    "  --min-p P               drop tokens below P x the top probability; 0 = off\n"
    "                          (default 0.05)\n"
    "  --repeat-penalty R      divide positive / multiply negative logits of recent\n"
    "                          tokens by R; 1 = off (default 1.0)\n"
    "  --repeat-last-n N       tokens the penalty looks back over; -1 = all (default 64)\n"
    "  --no-repeat-ngram N     never repeat an N-gram of the prompt or output; 0 = off\n"
    "                          (default 0)\n"
    "  --seed S                random seed (default 42); same seed, same output\n"
    "  --lora FILE[:SCALE]     LoRA adapter GGUF for the model (llama.cpp's format),\n"
    "                          applied at SCALE (default 1); repeatable: the\n"
    "                          adapters' updates add up\n"
    "  -t, --threads N         threads (default: all CPUs)\n"
    "  -v, --verbose           print the chat template used, the prompt text and\n"
    "                          its token count to standard error first\n"
    "  -h, --help              show this help\n"
    "\n"
    "The filters apply in llama.cpp's order: penalties, top-k, top-p, min-p, then\n"
    "temperature.\n";

#define PROMPT_BATCH 64

typedef struct {
    const char *model, *prompt, *system;
    int tmpl; /* -1: detect from the model */
    bool chat, verbose;
    long long n_predict;
    int threads;
    mope_sampler_params sp;
    const char *lora[CLI_MAX_LORA];
    int n_lora;
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o) {
    const char *cmd = "generate", *v = NULL;
    o->n_predict = 128;
    o->tmpl = -1;
    o->threads = cli_default_threads();
    o->sp = mope_sampler_default_params();
    for (int i = 1; i < argc; i++) {
        int r = 0;
        long long iv = 0;
        double fv = 0;
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return -1;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-m", "--model", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->model = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-p", "--prompt", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->prompt = v;
        } else if (cli_flag(a, NULL, "--chat")) {
            o->chat = true;
        } else if (cli_flag(a, "-v", "--verbose")) {
            o->verbose = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--template", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            mope_error err = {0};
            if ((o->tmpl = mope_chat_from_name(v, &err)) < 0) return cli_usage_error(cmd, "--template: %s", err.msg);
            o->chat = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--system", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->system = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-n", "--n-predict", &v))) {
            if (r < 0 || cli_parse_int(cmd, "-n", v, 0, 1000000, &o->n_predict)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--temp", &v))) {
            if (r < 0 || cli_parse_float(cmd, "--temp", v, 0.0, 1e6, &fv)) return CLI_EXIT_USAGE;
            o->sp.temp = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--top-k", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--top-k", v, 0, INT32_MAX, &iv)) return CLI_EXIT_USAGE;
            o->sp.top_k = (int32_t)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--top-p", &v))) {
            if (r < 0 || cli_parse_float(cmd, "--top-p", v, 0.0, 1.0, &fv)) return CLI_EXIT_USAGE;
            o->sp.top_p = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--min-p", &v))) {
            if (r < 0 || cli_parse_float(cmd, "--min-p", v, 0.0, 1.0, &fv)) return CLI_EXIT_USAGE;
            o->sp.min_p = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--repeat-penalty", &v))) {
            if (r < 0 || cli_parse_float(cmd, "--repeat-penalty", v, 1e-6, 1e6, &fv)) return CLI_EXIT_USAGE;
            o->sp.repeat_penalty = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--repeat-last-n", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--repeat-last-n", v, -1, INT32_MAX, &iv)) return CLI_EXIT_USAGE;
            o->sp.repeat_last_n = (int32_t)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--no-repeat-ngram", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--no-repeat-ngram", v, 0, 1000000, &iv)) return CLI_EXIT_USAGE;
            o->sp.no_repeat_ngram = (int32_t)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--seed", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--seed", v, 0, INT64_MAX, &iv)) return CLI_EXIT_USAGE;
            o->sp.seed = (uint64_t)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-t", "--threads", &v))) {
            if (r < 0 || cli_parse_threads(cmd, v, &o->threads)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--lora", &v))) {
            if (r < 0 || cli_lora_push(cmd, o->lora, &o->n_lora, v)) return CLI_EXIT_USAGE;
        } else if (a[0] == '-') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the prompt goes after -p)", a);
        }
    }
    if (!o->model) return cli_usage_error(cmd, "no model given (-m FILE)");
    if (!o->prompt) return cli_usage_error(cmd, "no prompt given (-p TEXT)");
    if (o->system && !o->chat) return cli_usage_error(cmd, "--system needs --chat or --template");
    return 0;
}

/* Builds the prompt text (chat-formatted or as given); prints errors. */
static char *prompt_text(const gen_opts *o, const cli_model *cm, int *tmpl_out) {
    const char *cmd = "generate";
    mope_error err = {0};
    *tmpl_out = -1;
    if (!o->chat) {
        char *s = strdup(o->prompt);
        if (!s) cli_fail(cmd, "out of memory");
        return s;
    }
    int t = o->tmpl >= 0 ? o->tmpl : mope_chat_detect_gguf(mope_model_gguf(cm->model), MOPE_CHAT_TULU, &err);
    if (t < 0) {
        cli_fail_err(cmd, &err, "choosing a chat template (use --template NAME)");
        return NULL;
    }
    *tmpl_out = t;
    char *s = mope_chat_format_alloc((mope_chat_template)t, o->system, o->prompt, &err);
    if (!s) cli_fail_err(cmd, &err, "formatting the chat prompt");
    return s;
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    gen_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;

    mope_error err = {0};
    mope_sampler *smp = mope_sampler_new(&o.sp, &err);
    if (!smp) return cli_usage_error(cmd, "%s", err.msg);
    cli_model cm;
    if ((rc = cli_model_open(cmd, o.model, o.threads, true, &cm))) {
        mope_sampler_free(smp);
        return rc;
    }
    if ((rc = cli_model_add_loras(cmd, &cm, o.lora, o.n_lora))) {
        mope_sampler_free(smp);
        cli_model_close(&cm);
        return rc;
    }
    int tmpl = -1;
    int32_t *hist = NULL, stop_id = -1;
    float *logits = NULL;
    mope_row *rows = NULL;
    mope_kv *kv = NULL;
    mope_detok *dt = NULL;
    mope_stop_filter *sf = NULL;
    bool stopped = false;
    char *text = prompt_text(&o, &cm, &tmpl);
    if (!text) {
        rc = CLI_EXIT_ERROR;
        goto done;
    }
    const int n_tok_vocab = mope_tokenizer_n_vocab(cm.tok);
    int n_prompt = mope_tokenizer_encode_alloc(cm.tok, text, strlen(text), mope_tokenizer_add_bos(cm.tok), o.chat,
                                               &hist, &err);
    if (n_prompt < 0) {
        rc = cli_fail_err(cmd, &err, "tokenizing the prompt");
        goto done;
    }
    if (n_prompt == 0) {
        rc = cli_fail(cmd, "the prompt is empty (no tokens)");
        goto done;
    }
    if (o.verbose) {
        if (tmpl >= 0) fprintf(stderr, "chat template: %s\n", mope_chat_name((mope_chat_template)tmpl));
        fprintf(stderr, "prompt (%d tokens): %s\n", n_prompt, text);
    }
    if (n_prompt >= cm.n_ctx_train) {
        rc = cli_fail(cmd, "the prompt has %d tokens; the model's context length is %d", n_prompt, cm.n_ctx_train);
        goto done;
    }
    for (int i = 0; i < n_prompt; i++)
        if (hist[i] >= cm.n_vocab) {
            rc = cli_fail(cmd, "prompt token %d is outside the model's vocabulary of %d", (int)hist[i], cm.n_vocab);
            goto done;
        }
    const int n_ctx = (long long)n_prompt + o.n_predict < cm.n_ctx_train ? n_prompt + (int)o.n_predict
                                                                          : cm.n_ctx_train;
    int32_t *h2 = realloc(hist, (size_t)(n_ctx + 1) * sizeof *hist);
    kv = mope_kv_new(cm.model, 1, n_ctx, &err);
    logits = malloc((size_t)cm.n_vocab * sizeof *logits);
    rows = malloc(PROMPT_BATCH * sizeof *rows);
    dt = mope_detok_new(cm.tok, 0, &err);
    if (h2) hist = h2;
    if (!h2 || !kv || !logits || !rows || !dt) {
        rc = cli_fail_err(cmd, &err, "allocating");
        goto done;
    }
    const char *marker = tmpl >= 0 ? mope_chat_end_marker((mope_chat_template)tmpl) : NULL;
    if (marker) {
        /* a marker that is one token ends generation as that token; any
         * marker also ends it when it shows up in the text */
        stop_id = mope_tokenizer_find(cm.tok, marker, strlen(marker));
        if (!(sf = mope_stop_filter_new(marker, &err))) {
            rc = cli_fail_err(cmd, &err, "stop marker");
            goto done;
        }
    }

    double t0 = mope_time_s();
    for (int p0 = 0; p0 < n_prompt; p0 += PROMPT_BATCH) {
        int nb = n_prompt - p0 < PROMPT_BATCH ? n_prompt - p0 : PROMPT_BATCH;
        for (int j = 0; j < nb; j++)
            rows[j] = (mope_row){.seq = 0, .token = hist[p0 + j], .pos = p0 + j, .adapter = cm.adapter,
                                 .want_logits = p0 + j == n_prompt - 1};
        if (mope_model_forward(cm.model, kv, rows, nb, logits, cm.pool, &err) != 0) {
            rc = cli_fail_err(cmd, &err, "evaluating the prompt");
            goto done;
        }
    }
    double t1 = mope_time_s(), t_prompt = t1 - t0;
    int n_hist = n_prompt, n_gen = 0;
    const char *why = NULL;
    while (n_gen < o.n_predict) {
        /* ids past the tokenizer's vocabulary (padded embeddings) cannot be printed */
        for (int i = n_tok_vocab; i < cm.n_vocab; i++) logits[i] = -INFINITY;
        int32_t t = mope_sampler_sample(smp, logits, cm.n_vocab, hist, n_hist, &err);
        if (t < 0) {
            rc = cli_fail_err(cmd, &err, "sampling");
            break;
        }
        if (mope_tokenizer_is_eog(cm.tok, t) || t == stop_id) break;
        n_gen++;
        hist[n_hist++] = t;
        size_t len = 0;
        const char *b = mope_detok_push(dt, t, &len, &err);
        if (!b) {
            rc = cli_fail_err(cmd, &err, "decoding");
            break;
        }
        if (sf && !(b = mope_stop_filter_feed(sf, b, len, &len, &stopped, &err))) {
            rc = cli_fail_err(cmd, &err, "decoding");
            break;
        }
        if (len) fwrite(b, 1, len, stdout);
        fflush(stdout);
        if (stopped || n_gen == o.n_predict) break;
        if (n_hist > n_ctx) { /* the next forward would need position n_ctx */
            why = "the model's context is full";
            break;
        }
        mope_row row = {.seq = 0, .token = t, .pos = n_hist - 1, .adapter = cm.adapter, .want_logits = true};
        if (mope_model_forward(cm.model, kv, &row, 1, logits, cm.pool, &err) != 0) {
            rc = cli_fail_err(cmd, &err, "forward pass");
            break;
        }
    }
    if (!stopped) {
        size_t len = 0;
        const char *b = mope_detok_flush(dt, &len);
        if (sf && len && !(b = mope_stop_filter_feed(sf, b, len, &len, &stopped, &err))) len = 0;
        if (len) fwrite(b, 1, len, stdout);
        if (sf && !stopped) {
            b = mope_stop_filter_flush(sf, &len);
            if (len) fwrite(b, 1, len, stdout);
        }
    }
    putchar('\n');
    fflush(stdout);
    double t_gen = mope_time_s() - t1;
    if (why) fprintf(stderr, "stopped: %s\n", why);
    if (!rc)
        fprintf(stderr, "%d tokens, %.2f tok/s (prompt %.2f tok/s)\n", n_gen, t_gen > 0 ? n_gen / t_gen : 0.0,
                t_prompt > 0 ? n_prompt / t_prompt : 0.0);
done:
    mope_stop_filter_free(sf);
    free(text);
    free(hist);
    free(logits);
    free(rows);
    mope_detok_free(dt);
    mope_kv_free(kv);
    mope_sampler_free(smp);
    cli_model_close(&cm);
    return rc;
}
