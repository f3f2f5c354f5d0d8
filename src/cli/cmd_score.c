/* mope score: a reward model's scores of prompt/response pairs, as JSONL. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/dataset.h"
#include "mope/io.h"
#include "mope/trainer.h"

int cmd_score(int argc, char **argv);

static const char *const HELP =
    "usage: mope score --rm RM.gguf --data FILE [--out FILE] [options]\n"
    "\n"
    "Scores every {\"prompt\",\"response\"} line of a JSONL file with a reward model\n"
    "written by 'mope train rm' and writes each input object with a \"score\" field\n"
    "added (the value head's output on the chat-formatted prompt + response + EOS,\n"
    "formatted as in training).  Lines with \"chosen\" and \"rejected\" instead of\n"
    "\"response\" get \"score_chosen\" and \"score_rejected\".\n"
    "\n"
    "options:\n"
    "  --rm FILE          reward model GGUF with a value head (required)\n"
    "  -d, --data FILE    JSONL input (required)\n"
    "  -o, --out FILE     JSONL output (default: standard output; written atomically)\n"
    "  --template NAME    chat template (default: detected, else tulu; use the one\n"
    "                     the model was trained with)\n"
    "  --system TEXT      system message, as in training\n"
    "  --batch N          sequences per forward pass (default 16)\n"
    "  -t, --threads N    threads (default: all CPUs)\n"
    "  -h, --help         show this help\n";

typedef struct score_ctx {
    const char *cmd, *path;
    mope_dataset_opts dop;
    mope_train_model *m;
} score_ctx;

static int score_one(score_ctx *s, const char *prompt, const char *resp, float *out, mope_error *err) {
    mope_seq q;
    int rc = mope_dataset_make_seq(&s->dop, prompt, resp, &q, NULL, err);
    if (rc) return rc;
    const mope_seq *rows[1] = {&q};
    rc = mope_trainer_seq_score(s->m, rows, 1, 1, out, err);
    mope_seq_free(&q);
    return rc;
}

/* Scores one parsed line in place (adds the score fields). */
static int score_line(void *ctx, cJSON *obj, long long line) {
    score_ctx *s = ctx;
    mope_error err = {0};
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(obj, "response");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, "chosen");
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "rejected");
    if (!cJSON_IsString(p)) return cli_fail(s->cmd, "%s:%lld: missing string field \"prompt\"", s->path, line);
    if (!r && cJSON_IsString(c) && cJSON_IsString(j)) {
        float sc, sr;
        if (score_one(s, p->valuestring, c->valuestring, &sc, &err) ||
            score_one(s, p->valuestring, j->valuestring, &sr, &err)) {
            char where[64];
            snprintf(where, sizeof where, "line %lld", line);
            return cli_fail_err(s->cmd, &err, where);
        }
        cJSON_AddNumberToObject(obj, "score_chosen", sc);
        cJSON_AddNumberToObject(obj, "score_rejected", sr);
        return 0;
    }
    if (!cJSON_IsString(r)) return cli_fail(s->cmd, "%s:%lld: missing string field \"response\"", s->path, line);
    float sc;
    if (score_one(s, p->valuestring, r->valuestring, &sc, &err)) {
        char where[64];
        snprintf(where, sizeof where, "line %lld", line);
        return cli_fail_err(s->cmd, &err, where);
    }
    cJSON_AddNumberToObject(obj, "score", sc);
    return 0;
}

int cmd_score(int argc, char **argv) {
    const char *cmd = "score", *rm = NULL, *data = NULL, *out = NULL, *tmpl = NULL, *system = NULL, *v = NULL;
    int threads = cli_default_threads();
    for (int i = 1; i < argc; i++) {
        int r = 0;
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--rm", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            rm = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-d", "--data", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            data = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--out", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            out = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--template", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            tmpl = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--system", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            system = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-t", "--threads", &v))) {
            if (r < 0 || cli_parse_threads(cmd, v, &threads)) return CLI_EXIT_USAGE;
        } else if (a[0] == '-') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
    }
    if (!rm) return cli_usage_error(cmd, "no reward model given (--rm FILE)");
    if (!data) return cli_usage_error(cmd, "no data given (--data FILE)");
    mope_error err = {0};
    score_ctx s = {.cmd = cmd, .path = data};
    mope_dataset_opts_init(&s.dop);
    s.dop.system = system;
    if (tmpl) {
        int t = mope_chat_from_name(tmpl, &err);
        if (t < 0) return cli_usage_error(cmd, "--template: %s", err.msg);
        s.dop.chat = (mope_chat_template)t;
    }
    mope_tokenizer *tok = mope_tokenizer_load(rm, &err);
    int rc = 0;
    if (!tok) {
        rc = cli_fail_err(cmd, &err, "loading the tokenizer of the reward model");
        goto done;
    }
    if (!(s.m = mope_train_model_load(rm, threads, &err))) {
        rc = cli_fail_err(cmd, &err, "loading the reward model");
        goto done;
    }
    if (!mope_train_model_config(s.m)->value_head) {
        rc = cli_fail(cmd, "%s has no value head: not a reward model (train one with 'mope train rm')", rm);
        goto done;
    }
    if (mope_tokenizer_n_vocab(tok) != mope_train_model_config(s.m)->n_vocab) {
        rc = cli_fail(cmd, "%s: the tokenizer and the model's vocabulary differ in size", rm);
        goto done;
    }
    if (!tmpl) {
        const char *jt = mope_tokenizer_chat_template(tok);
        int t = jt ? mope_chat_detect(jt, strlen(jt)) : -1;
        s.dop.chat = t >= 0 ? (mope_chat_template)t : MOPE_CHAT_TULU;
    }
    s.dop.tok = tok;
    s.dop.n_ctx = mope_train_model_config(s.m)->n_ctx;
    s.dop.strict = true; /* a cut response would be scored as something else */
    long long n = 0;
    rc = cli_jsonl_map(cmd, data, out, score_line, &s, &n);
    if (!rc) fprintf(stderr, "scored %lld records\n", n);
done:
    mope_train_model_free(s.m);
    mope_tokenizer_free(tok);
    return rc;
}
