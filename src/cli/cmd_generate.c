/* mope generate: sample a continuation (or a chat reply) and stream it;
 * with --bundle, a response by one of the methods of include/mope/method.h
 * (MoPE, its baselines, single experts). */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "mope/chat.h"
#include "mope/method.h"
#include "mope/model.h"
#include "mope/sampler.h"
#include "mope/tokenizer.h"

static const char *const HELP =
    "usage: mope generate -m FILE -p TEXT [options]\n"
    "       mope generate --bundle B -p TEXT [--pref P] [--method M | --expert ID | --base]\n"
    "                     [bundle options] [sampling options]\n"
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
    "  --no-repeat-ngram N     never repeat an N-gram (with -m: of the prompt or output;\n"
    "                          with --bundle: of the answer only); 0 = off\n"
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
    "bundle mode (experts, PCM and baselines named by a bundle manifest):\n"
    "  --bundle FILE           bundle manifest (bundle.json); -p is the instruction,\n"
    "                          each model gets it in its own prompt format\n"
    "  --pref P                the preference: choice ids (\"P1A,P2B,P3A\", at most one\n"
    "                          per dimension) or free text (default: none); a PCM\n"
    "                          reads only wordings like those it was trained on:\n"
    "                          for free text use models/prefbench/bundle-freetext.json\n"
    "  --method M              mope (default; needs a PCM in the bundle), prompt,\n"
    "                          soup, uniform, uniform-geo, expert:ID, multitask, base\n"
    "  --expert ID             same as --method expert:ID (that expert alone)\n"
    "  --base                  same as --method base (the base, plain instruction)\n"
    "  --soup-mode MODE        ab (average A and B, as Personalized Soups; default)\n"
    "                          or delta (average the updates B*A exactly)\n"
    "  --topk K                black-box mode: every model reports only its top K\n"
    "                          tokens and mixing runs in top-k mode (default: exact)\n"
    "  --min-weight W          skip, at a step, every expert whose weight is below W\n"
    "                          (the heaviest always runs; the rest renormalised, so\n"
    "                          the mixture moves by at most the skipped weight);\n"
    "                          0 = exact (default 0.01)\n"
    "  --show-weights          print every token on its own line with its mixing\n"
    "                          weights, e.g. ' glacier [P1A .62 P2B .30 P3A .08]'\n"
    "                          (coloured by the heaviest expert on a terminal), then\n"
    "                          the whole response on the last line\n"
    "  --json                  JSON lines instead: with --show-weights one object per\n"
    "                          token {\"token\",\"id\",\"weights\":{ID: w}}, then always a\n"
    "                          summary {\"method\",\"preference\",\"response\",...}\n"
    "  -n sets the response length limit; the sampling options, --seed and -t apply.\n"
    "  -m, --lora, --chat, --template and --system do not combine with --bundle.\n"
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
    /* bundle mode */
    const char *bundle, *pref, *method, *soup_mode;
    long long topk;
    double min_weight;
    bool have_min_weight;
    bool show_weights, json;
    int n_method_opts; /* --method, --expert and --base given */
    char method_buf[96];
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
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--bundle", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->bundle = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--pref", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->pref = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--method", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o->method = v;
            o->n_method_opts++;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--expert", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (!*v) return cli_usage_error(cmd, "--expert: empty expert id");
            snprintf(o->method_buf, sizeof o->method_buf, "expert:%s", v);
            o->method = o->method_buf;
            o->n_method_opts++;
        } else if (cli_flag(a, NULL, "--base")) {
            o->method = "base";
            o->n_method_opts++;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--soup-mode", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (strcmp(v, "ab") != 0 && strcmp(v, "delta") != 0)
                return cli_usage_error(cmd, "--soup-mode: '%s' is not ab or delta", v);
            o->soup_mode = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--min-weight", &v))) {
            if (r < 0 || cli_parse_float(cmd, "--min-weight", v, 0, 0.999, &o->min_weight)) return CLI_EXIT_USAGE;
            o->have_min_weight = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--topk", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--topk", v, 1, INT32_MAX, &o->topk)) return CLI_EXIT_USAGE;
        } else if (cli_flag(a, NULL, "--show-weights")) {
            o->show_weights = true;
        } else if (cli_flag(a, NULL, "--json")) {
            o->json = true;
        } else if (a[0] == '-') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the prompt goes after -p)", a);
        }
    }
    if (o->bundle) {
        if (o->model) return cli_usage_error(cmd, "give either -m FILE or --bundle B, not both");
        if (o->n_lora || o->chat || o->system)
            return cli_usage_error(cmd, "--lora, --chat, --template and --system do not apply with --bundle "
                                        "(the bundle sets adapters and prompt formats)");
        if (o->n_method_opts > 1) return cli_usage_error(cmd, "give one of --method, --expert and --base");
        if (!o->prompt) return cli_usage_error(cmd, "no prompt given (-p TEXT)");
        if (o->n_predict == 0) return cli_usage_error(cmd, "-n must be at least 1 with --bundle");
        return 0;
    }
    if (o->pref || o->n_method_opts || o->soup_mode || o->topk || o->have_min_weight || o->show_weights || o->json)
        return cli_usage_error(cmd, "--pref, --method, --expert, --base, --soup-mode, --topk, --min-weight, --show-weights and "
                                    "--json need --bundle B");
    if (!o->model) return cli_usage_error(cmd, "no model given (-m FILE or --bundle B)");
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

/* ---- bundle mode ---- */

typedef struct show_ctx {
    const gen_opts *o;
    bool wrote;                /* response text went to stdout (plain mode) */
    bool tty;
    const mope_tokenizer *tok; /* for the text of an end-of-generation token (NULL: "<end>") */
} show_ctx;

/* Token text on one line: control characters escaped. */
static void put_visible(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

/* ".62", "1.00": two decimals, no leading zero, as weights read best. */
static void put_weight(FILE *f, float w) {
    char b[32];
    snprintf(b, sizeof b, "%.2f", (double)w);
    fputs(b[0] == '0' ? b + 1 : b, f);
}

static cJSON *weights_json(const char *const *names, const float *w, int K) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; o && k < K; k++) cJSON_AddNumberToObject(o, names[k], (double)w[k]);
    return o;
}

static void put_json(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
    }
    free(s);
    cJSON_Delete(o);
}

static int on_token(void *user, const mope_method_token *t) {
    show_ctx *c = user;
    const gen_opts *o = c->o;
    if (!o->show_weights) {
        if (!o->json && t->len) {
            fwrite(t->text, 1, t->len, stdout);
            c->wrote = true;
        }
        fflush(stdout);
        return 0;
    }
    if (t->id < 0 && t->len == 0) return 0; /* nothing held back at the end */
    char piece[64];
    const char *txt = t->text;
    size_t len = t->len;
    if (t->eog) {
        size_t pl = 0;
        const char *p = c->tok ? mope_tokenizer_piece(c->tok, t->id, &pl) : NULL;
        snprintf(piece, sizeof piece, "%.*s", p ? (int)(pl < 60 ? pl : 60) : 5, p ? p : "<end>");
        txt = piece;
        len = strlen(piece);
    }
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        char *s = strndup(txt, len);
        if (j && s) {
            cJSON_AddStringToObject(j, "token", s);
            cJSON_AddNumberToObject(j, "id", t->id);
            if (t->eog) cJSON_AddTrueToObject(j, "eog");
            cJSON_AddItemToObject(j, "weights", weights_json(t->names, t->weights, t->K));
        }
        free(s);
        put_json(j);
        return 0;
    }
    int best = 0;
    for (int k = 1; k < t->K; k++)
        if (t->weights[k] > t->weights[best]) best = k;
    static const int COLOURS[] = {31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96};
    if (c->tty && t->K > 0) printf("\033[%dm", COLOURS[best % 12]);
    put_visible(stdout, txt, len);
    if (c->tty && t->K > 0) fputs("\033[0m", stdout);
    if (t->K > 0) {
        fputs(" [", stdout);
        for (int k = 0; k < t->K; k++) {
            printf("%s%s ", k ? " " : "", t->names[k]);
            put_weight(stdout, t->weights[k]);
        }
        fputc(']', stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

static int generate_bundle(const gen_opts *o) {
    const char *cmd = "generate";
    mope_error err = {0};
    mope_method m;
    if (mope_method_parse(o->method ? o->method : "mope", &m, &err)) return cli_usage_error(cmd, "%s", err.msg);
    if (o->soup_mode) {
        if (m.kind != MOPE_METHOD_SOUP) return cli_usage_error(cmd, "--soup-mode applies to --method soup only");
        m.soup_mode = strcmp(o->soup_mode, "delta") == 0 ? MOPE_LORA_AVG_DELTA : MOPE_LORA_AVG_AB;
    }
    mope_gen_opts g;
    mope_gen_opts_init(&g);
    g.sampler = o->sp;
    g.max_tokens = (int)o->n_predict;
    g.topk = (int)o->topk;
    if (o->have_min_weight) g.min_weight = (float)o->min_weight;
    g.want_logp = o->json; /* the JSON summary reports it */
    mope_sampler *probe = mope_sampler_new(&g.sampler, &err);
    if (!probe) return cli_usage_error(cmd, "%s", err.msg);
    mope_sampler_free(probe);
    mope_runner_opts ro;
    mope_runner_opts_init(&ro);
    ro.n_threads = o->threads;
    ro.max_batch = 1;
    mope_runner *r = mope_runner_load(o->bundle, &ro, &err);
    if (!r) return cli_fail_err(cmd, &err, o->bundle);
    show_ctx sc = {.o = o, .tty = isatty(fileno(stdout)) != 0, .tok = mope_runner_tokenizer(r)};
    mope_method_result res;
    double t0 = mope_time_s();
    int rc = mope_runner_generate(r, &m, o->pref, o->prompt, &g, on_token, &sc, &res, &err);
    double dt = mope_time_s() - t0;
    char mname[96];
    mope_method_name(&m, mname, sizeof mname);
    if (rc) {
        if (sc.wrote) putchar('\n');
        rc = cli_fail_err(cmd, &err, NULL);
    } else if (o->json) {
        cJSON *j = cJSON_CreateObject();
        if (j) {
            cJSON_AddStringToObject(j, "method", mname);
            cJSON_AddStringToObject(j, "preference", o->pref ? o->pref : "");
            cJSON_AddStringToObject(j, "prompt", o->prompt);
            cJSON_AddStringToObject(j, "response", res.text ? res.text : "");
            cJSON_AddNumberToObject(j, "n_tokens", res.n_tokens);
            cJSON_AddBoolToObject(j, "eog", res.eog);
            cJSON_AddBoolToObject(j, "truncated", res.truncated);
            cJSON_AddNumberToObject(j, "logp", res.logp);
            cJSON_AddItemToObject(j, "mean_weights",
                                  weights_json((const char *const *)res.names, res.mean_weights, res.K));
            if (o->topk) cJSON_AddNumberToObject(j, "topk", (double)o->topk);
            cJSON_AddNumberToObject(j, "seconds", dt);
        }
        put_json(j);
    } else {
        if (o->show_weights) printf("%s\n", res.text ? res.text : "");
        else putchar('\n');
    }
    fflush(stdout);
    if (!rc) {
        int n = res.n_tokens - (res.eog && res.n_tokens > 0 ? 1 : 0);
        /* the runner shortens the limit to what every context holds */
        if (res.truncated && res.n_tokens < o->n_predict) fputs("stopped: a model's context is full\n", stderr);
        fprintf(stderr, "%d tokens, %.2f tok/s (method %s%s)\n", n, dt > 0 ? res.n_tokens / dt : 0.0, mname,
                res.truncated && res.n_tokens == o->n_predict ? ", stopped at the length limit" : "");
    }
    mope_method_result_free(&res);
    mope_runner_free(r);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    gen_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (o.bundle) return generate_bundle(&o);

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
