/* mope train SUB: lm (pretraining from scratch), sft, dpo, rm, and tokenizer
 * (cmd_train_tokenizer.c).  Parses options, loads data and models, runs
 * mope_trainer_run, shows progress and writes the log. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mope/dataset.h"
#include "mope/io.h"
#include "mope/trainer.h"

int cmd_train(int argc, char **argv);
int cmd_train_tokenizer(int argc, char **argv);
int cmd_train_pcm(int argc, char **argv);

static const char *const HELP =
    "usage: mope train SUB [options]\n"
    "\n"
    "sub-commands:\n"
    "  tokenizer   learn a BPE vocabulary (mope train tokenizer --help)\n"
    "  lm          pretrain a model from scratch on plain text\n"
    "  sft         fine-tune a model on {\"prompt\",\"response\"} JSONL\n"
    "  dpo         DPO on {\"prompt\",\"chosen\",\"rejected\"} JSONL\n"
    "  rm          train a reward model (value head) on preference pairs\n"
    "  pcm         train a Preference Control Model over a bundle by REBEL\n"
    "\n"
    "run 'mope train SUB --help' for the options of each.\n";

static const char *const HELP_COMMON =
    "common options:\n"
    "  -d, --data FILE          training data (required)\n"
    "  -o, --out OUT.gguf       output model (required; written atomically)\n"
    "  --steps N                optimizer steps in total (default 100)\n"
    "  --batch N                examples per micro-batch (default 8; dpo/rm: pairs)\n"
    "  --grad-accum N           micro-batches per step (default 1)\n"
    "  --lr F                   peak learning rate (default 3e-4; sft/dpo 1e-5)\n"
    "  --min-lr F               cosine floor (default lr / 10)\n"
    "  --warmup N               linear warmup steps (default 0)\n"
    "  --weight-decay F         AdamW decoupled weight decay (default 0.1)\n"
    "  --clip F                 gradient global-norm clip, 0 = none (default 1)\n"
    "  --seed S                 data order (and initial weights for lm) (default 42)\n"
    "  -t, --threads N          threads (default: all CPUs; results are bit-identical\n"
    "                           for the same seed and thread count)\n"
    "  --log FILE               CSV log, one line per step (appended on --resume)\n"
    "  --checkpoint PATH        checkpoint file (default OUT.gguf.ckpt)\n"
    "  --checkpoint-every N     write the checkpoint every N steps (default 0: never)\n"
    "  --resume                 continue from the checkpoint when it exists (give the\n"
    "                           same data, --seed, --batch, --grad-accum, --threads)\n"
    "  -q, --quiet              no progress on standard error\n"
    "  -h, --help               show this help\n";

static const char *const HELP_MODEL =
    "model shape (lm, and rm without --model; flags override --config):\n"
    "  --config FILE            JSON {\"dim\",\"layers\",\"heads\",\"kv_heads\",\"ff\",\"ctx\",\n"
    "                           \"rope_base\",\"tied\"}\n"
    "  --dim D --layers L --heads H --kv-heads K --ff F --ctx C\n"
    "                           (defaults 64, 2, 4, 2, 172, 128)\n"
    "  --rope-base F            RoPE base (default 10000)\n"
    "  --untied                 separate output matrix (default: tied to the embedding)\n";

static const char *const HELP_CHAT =
    "chat data (sft, dpo, rm):\n"
    "  -m, --model BASE.gguf    starting model (f32/f16/bf16 llama GGUF)\n"
    "  --tokenizer FILE         tokenizer (default: the model's); its vocabulary must\n"
    "                           match the model's\n"
    "  --template NAME          tulu, chatml, llama2, llama3 or raw (default: detected\n"
    "                           from the tokenizer's chat template, else tulu)\n"
    "  --system TEXT            system message for every example\n"
    "  --ctx C                  longest sequence (default: the model's context)\n"
    "  --strict                 a sequence longer than the context is an error\n"
    "                           (default: its response is cut, and counted)\n"
    "LoRA (sft, dpo): train only a low-rank adapter on every block linear; OUT is\n"
    "then an adapter GGUF in llama.cpp's convention (use with --lora OUT):\n"
    "  --lora-rank R            adapter rank (default 0: full fine-tune)\n"
    "  --lora-alpha A           scale numerator, s = A / R (default 2R)\n"
    "  --lora-dropout P         dropout on the adapter input, sft only (default 0)\n";

typedef struct cli_train {
    const char *cmd, *data, *out, *log, *ckpt, *model, *tokenizer, *config, *system, *template_name;
    mope_trainer_opts o;
    mope_train_config mc;
    bool set_dim, set_layers, set_heads, set_kv, set_ff, set_ctx, set_rope, untied, strict, quiet;
    bool lr_given, min_lr_given, beta_given, eval_given;
    int threads;
    int lora_rank;
    float lora_alpha, lora_dropout;
    bool lora_alpha_given, lora_dropout_given;
    FILE *logf;
    bool tty, open;
    int64_t every;
    double last_print;
} cli_train;

static void fmt_time(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%.1fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

static int on_progress(void *user, const mope_trainer_progress *p) {
    cli_train *c = user;
    if (c->logf) {
        fprintf(c->logf, "%lld,%.6f,%.6g,%.6g,%.4f,%.6f,%.4f,%.6f,%lld,%.3f,%.1f\n", (long long)p->step, p->loss,
                p->lr, p->grad_norm, p->accuracy, p->margin, p->eval_accuracy, p->eval_loss, (long long)p->tokens,
                p->elapsed_s, p->tokens_per_s);
        fflush(c->logf);
    }
    if (c->quiet) return 0;
    bool last = p->step == p->total_steps;
    if (c->tty && !last && p->elapsed_s - c->last_print < 0.1) return 0;
    if (!c->tty && !last && p->step % c->every != 0 && p->eval_accuracy < 0) return 0;
    c->last_print = p->elapsed_s;
    char eta[32], extra[96] = "";
    fmt_time(p->eta_s, eta, sizeof eta);
    if (p->kind == MOPE_TRAINER_DPO || p->kind == MOPE_TRAINER_RM) {
        int k = snprintf(extra, sizeof extra, "  acc %.2f  margin %.3f", p->accuracy, p->margin);
        if (p->eval_accuracy >= 0)
            snprintf(extra + k, sizeof extra - (size_t)k, "  held-out acc %.3f", p->eval_accuracy);
    }
    fprintf(stderr, "%sstep %lld/%lld  loss %.4f  lr %.3g%s  %.0f tok/s  ETA %s%s%s", c->tty ? "\r" : "",
            (long long)p->step, (long long)p->total_steps, p->loss, p->lr, extra, p->tokens_per_s, eta,
            p->checkpointed ? "  [checkpoint]" : "", c->tty ? "   " : "\n");
    c->open = c->tty;
    return 0;
}

/* The small JSON config file of `train lm`: flags given on the command line win. */
static int read_config(cli_train *c) {
    size_t len;
    char *text = cli_read_text(c->cmd, c->config, &len);
    if (!text) return CLI_EXIT_ERROR;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cli_fail(c->cmd, "%s: not a JSON object", c->config);
    }
    struct {
        const char *key;
        int *dst;
        bool given;
    } ints[] = {{"dim", &c->mc.n_embd, c->set_dim},   {"layers", &c->mc.n_layer, c->set_layers},
                {"heads", &c->mc.n_head, c->set_heads}, {"kv_heads", &c->mc.n_head_kv, c->set_kv},
                {"ff", &c->mc.n_ff, c->set_ff},        {"ctx", &c->mc.n_ctx, c->set_ctx}};
    int rc = 0;
    for (cJSON *it = j->child; it && !rc; it = it->next) {
        bool known = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
            if (strcmp(it->string, ints[k].key) == 0) {
                known = true;
                if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 1 << 20 ||
                    it->valuedouble != floor(it->valuedouble))
                    rc = cli_fail(c->cmd, "%s: \"%s\" must be a positive integer", c->config, it->string);
                else if (!ints[k].given)
                    *ints[k].dst = (int)it->valuedouble;
            }
        if (strcmp(it->string, "rope_base") == 0) {
            known = true;
            if (!cJSON_IsNumber(it) || !(it->valuedouble > 0))
                rc = cli_fail(c->cmd, "%s: \"rope_base\" must be a positive number", c->config);
            else if (!c->set_rope)
                c->mc.rope_freq_base = (float)it->valuedouble;
        } else if (strcmp(it->string, "tied") == 0) {
            known = true;
            if (!cJSON_IsBool(it)) rc = cli_fail(c->cmd, "%s: \"tied\" must be true or false", c->config);
            else if (!c->untied) c->mc.tied_output = cJSON_IsTrue(it);
        }
        if (!known && !rc) rc = cli_fail(c->cmd, "%s: unknown key \"%s\"", c->config, it->string);
    }
    cJSON_Delete(j);
    return rc;
}

static int parse_args(cli_train *c, int argc, char **argv, const char *help_extra, const char *help_extra2) {
    const char *v = NULL, *cmd = c->cmd;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        const char *a = argv[i];
        long long n;
        double f;
#define OPT(s, l) ((r = cli_opt(cmd, argc, argv, &i, s, l, &v)) != 0)
#define INT(lo, hi, dst)                                                                                      \
    do {                                                                                                        \
        if (r < 0 || cli_parse_int(cmd, a, v, lo, hi, &n)) return CLI_EXIT_USAGE;                              \
        dst = n;                                                                                                \
    } while (0)
#define FLT(lo, hi, dst)                                                                                      \
    do {                                                                                                        \
        if (r < 0 || cli_parse_float(cmd, a, v, lo, hi, &f)) return CLI_EXIT_USAGE;                            \
        dst = (float)f;                                                                                         \
    } while (0)
#define STR(dst)                                                                                              \
    do {                                                                                                        \
        if (r < 0) return CLI_EXIT_USAGE;                                                                       \
        dst = v;                                                                                                \
    } while (0)
        if (cli_is_help(a)) {
            printf("usage: mope %s --data FILE --out OUT.gguf [options]\n\n%s%s%s", cmd, HELP_COMMON,
                   help_extra ? help_extra : "", help_extra2 ? help_extra2 : "");
            return -1;
        } else if (OPT("-d", "--data")) STR(c->data);
        else if (OPT("-o", "--out")) STR(c->out);
        else if (OPT(NULL, "--log")) STR(c->log);
        else if (OPT(NULL, "--checkpoint")) STR(c->ckpt);
        else if (OPT("-m", "--model")) STR(c->model);
        else if (OPT(NULL, "--tokenizer")) STR(c->tokenizer);
        else if (OPT(NULL, "--config")) STR(c->config);
        else if (OPT(NULL, "--system")) STR(c->system);
        else if (OPT(NULL, "--template")) STR(c->template_name);
        else if (OPT(NULL, "--steps")) INT(1, INT64_MAX / 4096, c->o.steps);
        else if (OPT(NULL, "--batch")) INT(1, 512, c->o.batch);
        else if (OPT(NULL, "--grad-accum")) INT(1, 1 << 16, c->o.grad_accum);
        else if (OPT(NULL, "--warmup")) INT(0, INT64_MAX / 2, c->o.adamw.warmup_steps);
        else if (OPT(NULL, "--checkpoint-every")) INT(0, INT64_MAX / 2, c->o.checkpoint_every);
        else if (OPT(NULL, "--eval-every")) { INT(0, INT64_MAX / 2, c->o.eval_every); c->eval_given = true; }
        else if (OPT(NULL, "--seed")) INT(0, INT64_MAX, c->o.seed);
        else if (OPT(NULL, "--lr")) { FLT(0, 1e38, c->o.adamw.lr); c->lr_given = true; }
        else if (OPT(NULL, "--min-lr")) { FLT(0, 1e38, c->o.adamw.min_lr); c->min_lr_given = true; }
        else if (OPT(NULL, "--weight-decay")) FLT(0, 1e6, c->o.adamw.weight_decay);
        else if (OPT(NULL, "--clip")) FLT(0, 1e38, c->o.adamw.grad_clip);
        else if (OPT(NULL, "--beta")) { FLT(1e-6, 1e6, c->o.dpo_beta); c->beta_given = true; }
        else if (OPT(NULL, "--lora-rank")) INT(1, 4096, c->lora_rank);
        else if (OPT(NULL, "--lora-alpha")) { FLT(0, 1e6, c->lora_alpha); c->lora_alpha_given = true; }
        else if (OPT(NULL, "--lora-dropout")) { FLT(0, 0.99, c->lora_dropout); c->lora_dropout_given = true; }
        else if (OPT(NULL, "--eval-frac")) { if (r < 0 || cli_parse_float(cmd, a, v, 0, 0.9, &c->o.eval_frac)) return CLI_EXIT_USAGE; c->eval_given = true; }
        else if (OPT(NULL, "--dim")) { INT(1, 1 << 16, c->mc.n_embd); c->set_dim = true; }
        else if (OPT(NULL, "--layers")) { INT(1, 1024, c->mc.n_layer); c->set_layers = true; }
        else if (OPT(NULL, "--heads")) { INT(1, 1024, c->mc.n_head); c->set_heads = true; }
        else if (OPT(NULL, "--kv-heads")) { INT(1, 1024, c->mc.n_head_kv); c->set_kv = true; }
        else if (OPT(NULL, "--ff")) { INT(1, 1 << 18, c->mc.n_ff); c->set_ff = true; }
        else if (OPT(NULL, "--ctx")) { INT(2, 1 << 20, c->mc.n_ctx); c->set_ctx = true; }
        else if (OPT(NULL, "--rope-base")) { FLT(1, 1e12, c->mc.rope_freq_base); c->set_rope = true; }
        else if (OPT("-t", "--threads")) { if (r < 0 || cli_parse_threads(cmd, v, &c->threads)) return CLI_EXIT_USAGE; }
        else if (r < 0) return CLI_EXIT_USAGE;
        else if (cli_flag(a, NULL, "--untied")) c->untied = true;
        else if (cli_flag(a, NULL, "--resume")) c->o.resume = true;
        else if (cli_flag(a, NULL, "--strict")) c->strict = true;
        else if (cli_flag(a, "-q", "--quiet")) c->quiet = true;
        else if (a[0] == '-') return cli_usage_error(cmd, "unknown option '%s'", a);
        else return cli_usage_error(cmd, "unexpected argument '%s'", a);
#undef OPT
#undef INT
#undef FLT
#undef STR
    }
    if (!c->data) return cli_usage_error(cmd, "no training data given (--data FILE)");
    if (!c->out) return cli_usage_error(cmd, "no output file given (--out OUT.gguf)");
    return 0;
}

/* Builds the from-scratch model config (lm; rm without --model). */
static int scratch_config(cli_train *c, int32_t n_vocab) {
    if (c->config) {
        int rc = read_config(c);
        if (rc) return rc;
    }
    if (c->untied) c->mc.tied_output = false;
    if (c->set_heads && !c->set_kv && !c->config) c->mc.n_head_kv = c->mc.n_head;
    c->mc.n_vocab = n_vocab;
    mope_error err = {0};
    if (mope_train_config_check(&c->mc, &err)) return cli_usage_error(c->cmd, "model shape: %s", err.msg);
    return 0;
}

/* Checks that the tokenizer's vocabulary fits the model's. */
static int check_vocab(cli_train *c, const mope_tokenizer *tok, const mope_train_model *m) {
    int nt = mope_tokenizer_n_vocab(tok), nm = mope_train_model_config(m)->n_vocab;
    if (nt != nm)
        return cli_fail(c->cmd, "the tokenizer has %d tokens but the model's vocabulary is %d (wrong --tokenizer?)",
                        nt, nm);
    return 0;
}

static int run_sub(cli_train *c, mope_trainer_kind kind) {
    const char *cmd = c->cmd;
    mope_error err = {0};
    mope_tokenizer *tok = NULL;
    mope_train_model *m = NULL;
    mope_dataset data = {0};
    int rc = 0;
    bool scratch = kind == MOPE_TRAINER_LM || (kind == MOPE_TRAINER_RM && !c->model);
    if (!scratch && !c->model) return cli_usage_error(cmd, "no starting model given (--model BASE.gguf)");
    if (scratch && c->model && kind == MOPE_TRAINER_LM)
        return cli_usage_error(cmd, "lm trains from scratch: use sft to continue from a model");
    const char *tok_path = c->tokenizer ? c->tokenizer : c->model;
    if (!tok_path) return cli_usage_error(cmd, "no tokenizer given (--tokenizer VOCAB.gguf)");
    if (!(tok = mope_tokenizer_load(tok_path, &err))) return cli_fail_err(cmd, &err, "loading the tokenizer");
    if (scratch) {
        if ((rc = scratch_config(c, mope_tokenizer_n_vocab(tok)))) goto done;
        if (!(m = mope_train_model_new(&c->mc, c->threads, &err))) {
            rc = cli_fail_err(cmd, &err, "creating the model");
            goto done;
        }
        mope_train_model_init_random(m, c->o.seed);
    } else if (!(m = mope_train_model_load(c->model, c->threads, &err))) {
        rc = cli_fail_err(cmd, &err, "loading the model");
        goto done;
    }
    if ((rc = check_vocab(c, tok, m))) goto done;
    if (c->lora_rank > 0) {
        float alpha = c->lora_alpha_given ? c->lora_alpha : 2.0f * (float)c->lora_rank;
        if (mope_train_model_add_lora(m, c->lora_rank, alpha, MOPE_LORA_ALL_LINEAR, c->lora_dropout, c->o.seed,
                                      &err)) {
            rc = cli_fail_err(cmd, &err, "adding the LoRA adapter");
            goto done;
        }
    }
    if (kind == MOPE_TRAINER_RM && !(m = mope_trainer_add_value_head(m, c->o.seed, &err))) {
        rc = cli_fail_err(cmd, &err, "adding the value head");
        goto done;
    }
    int model_ctx = mope_train_model_config(m)->n_ctx;
    mope_dataset_opts dop;
    mope_dataset_opts_init(&dop);
    dop.tok = tok;
    dop.n_ctx = scratch ? model_ctx : (c->set_ctx ? c->mc.n_ctx : model_ctx);
    if (dop.n_ctx > model_ctx) {
        rc = cli_fail(cmd, "--ctx %d is longer than the model's context %d", (int)dop.n_ctx, model_ctx);
        goto done;
    }
    dop.strict = c->strict;
    dop.system = c->system;
    if (c->template_name) {
        int t = mope_chat_from_name(c->template_name, &err);
        if (t < 0) {
            rc = cli_usage_error(cmd, "--template: %s", err.msg);
            goto done;
        }
        dop.chat = (mope_chat_template)t;
    } else {
        const char *jt = mope_tokenizer_chat_template(tok);
        int t = jt ? mope_chat_detect(jt, strlen(jt)) : -1;
        dop.chat = t >= 0 ? (mope_chat_template)t : MOPE_CHAT_TULU;
    }
    int drc = kind == MOPE_TRAINER_LM    ? mope_dataset_text_file(&dop, c->data, &data, &err)
              : kind == MOPE_TRAINER_SFT ? mope_dataset_sft_file(&dop, c->data, &data, &err)
                                         : mope_dataset_pref_file(&dop, c->data, &data, &err);
    if (drc) {
        rc = cli_fail_err(cmd, &err, "reading the data");
        goto done;
    }
    if (!c->quiet) {
        fprintf(stderr, "%s: %lld %s, %lld tokens", cmd, (long long)data.n,
                kind == MOPE_TRAINER_LM ? "windows" : kind == MOPE_TRAINER_SFT ? "examples" : "pairs",
                (long long)data.n_tokens);
        if (kind != MOPE_TRAINER_LM) fprintf(stderr, ", template %s", mope_chat_name(dop.chat));
        if (data.n_truncated)
            fprintf(stderr, "; warning: %lld sequences cut to the context of %d", (long long)data.n_truncated,
                    (int)dop.n_ctx);
        fputc('\n', stderr);
    }
    c->o.kind = kind;
    c->o.out = c->out;
    c->o.checkpoint = c->ckpt;
    c->o.n_threads = c->threads;
    c->o.tok = tok;
    c->o.progress = on_progress;
    c->o.progress_user = c;
    if (!c->min_lr_given) c->o.adamw.min_lr = c->o.adamw.lr / 10;
    c->every = c->o.steps / 20 > 0 ? c->o.steps / 20 : 1;
    c->tty = isatty(STDERR_FILENO) == 1;
    char ckpt_default[4096];
    snprintf(ckpt_default, sizeof ckpt_default, "%s.ckpt", c->out);
    bool resuming = c->o.resume && access(c->ckpt ? c->ckpt : ckpt_default, F_OK) == 0;
    if (c->o.resume && !resuming && !c->quiet)
        fprintf(stderr, "%s: no checkpoint %s yet: starting from step 0\n", cmd, c->ckpt ? c->ckpt : ckpt_default);
    if (c->log) {
        bool append = resuming && access(c->log, F_OK) == 0;
        if (!(c->logf = fopen(c->log, append ? "a" : "w"))) {
            rc = cli_fail(cmd, "cannot open the log %s", c->log);
            goto done_m;
        }
        if (!append)
            fprintf(c->logf, "step,loss,lr,grad_norm,accuracy,margin,eval_accuracy,eval_loss,tokens,elapsed_s,"
                             "tokens_per_s\n");
    }
    mope_trainer_result res;
    int trc = mope_trainer_run(&c->o, m, &data, &res, &err);
    m = NULL;
    if (c->open) fputc('\n', stderr);
    if (trc) {
        rc = cli_fail_err(cmd, &err, "training stopped");
        if (c->o.checkpoint_every > 0 && access(c->ckpt ? c->ckpt : ckpt_default, F_OK) == 0)
            fprintf(stderr, "mope %s: the last good checkpoint %s was left as it was\n", cmd,
                    c->ckpt ? c->ckpt : ckpt_default);
        goto done_m;
    }
    printf("%s: %lld steps%s, final loss %.6f", cmd, (long long)res.steps_done,
           res.resumed ? " (resumed)" : "", res.final_loss);
    if (kind == MOPE_TRAINER_RM && res.n_eval > 0)
        printf(", held-out accuracy %.4f (%lld pairs), held-out loss %.4f", res.eval_accuracy,
               (long long)res.n_eval, res.eval_loss);
    printf(", wrote %s\n", c->out);
done_m:
    if (c->logf && fclose(c->logf) != 0 && !rc) rc = cli_fail(cmd, "writing the log %s failed", c->log);
    c->logf = NULL;
done:
    mope_train_model_free(m);
    mope_dataset_free(&data);
    mope_tokenizer_free(tok);
    return rc;
}

int cmd_train(int argc, char **argv) {
    if (argc < 2) {
        fputs(HELP, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (cli_is_help(sub)) {
        fputs(HELP, stdout);
        return 0;
    }
    if (strcmp(sub, "tokenizer") == 0) return cmd_train_tokenizer(argc - 1, argv + 1);
    if (strcmp(sub, "pcm") == 0) return cmd_train_pcm(argc - 1, argv + 1);
    static const char *const subs[] = {"lm", "sft", "dpo", "rm"};
    int kind = -1;
    for (int k = 0; k < 4; k++)
        if (strcmp(sub, subs[k]) == 0) kind = k;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "train %s", sub);
    if (kind < 0) {
        fprintf(stderr, "mope train: unknown sub-command '%s'\n\n%s", sub, HELP);
        return CLI_EXIT_USAGE;
    }
    cli_train c;
    memset(&c, 0, sizeof c);
    c.cmd = cmd;
    c.threads = cli_default_threads();
    mope_trainer_opts_init(&c.o, (mope_trainer_kind)kind);
    mope_train_config_init(&c.mc);
    if (kind == MOPE_TRAINER_SFT || kind == MOPE_TRAINER_DPO) c.o.adamw.lr = 1e-5f;
    int rc = parse_args(&c, argc - 1, argv + 1,
                        kind == MOPE_TRAINER_LM ? HELP_MODEL : HELP_CHAT,
                        kind == MOPE_TRAINER_DPO ? "dpo:\n  --beta F                 KL strength beta (default 0.1)\n"
                        : kind == MOPE_TRAINER_RM
                            ? "rm:\n  --eval-frac F            share of pairs held out for accuracy (default 0.1)\n"
                              "  --eval-every N           held-out accuracy every N steps (default: at the end)\n"
                              "  without --model, a model of the shape options below is trained from scratch\n"
                              "  (--tokenizer required)\n"
                            : kind == MOPE_TRAINER_LM ? "lm:\n  --tokenizer VOCAB.gguf   vocabulary (required); its keys are copied\n"
                                                        "                           into the output\n"
                                                      : NULL);
    if (rc == -1) {
        if (kind == MOPE_TRAINER_RM) fputs(HELP_MODEL, stdout);
        return 0;
    }
    if (rc) return rc;
    /* options of another sub-command are mistakes, not no-ops */
    bool shape = c.set_dim || c.set_layers || c.set_heads || c.set_kv || c.set_ff || c.set_rope || c.untied || c.config;
    bool chat = c.template_name || c.system || c.strict;
    if (c.beta_given && kind != MOPE_TRAINER_DPO) return cli_usage_error(c.cmd, "--beta is for 'train dpo'");
    if ((c.lora_rank || c.lora_alpha_given || c.lora_dropout_given) && kind != MOPE_TRAINER_SFT &&
        kind != MOPE_TRAINER_DPO)
        return cli_usage_error(c.cmd, "--lora-* options are for 'train sft' and 'train dpo'");
    if ((c.lora_alpha_given || c.lora_dropout_given) && !c.lora_rank)
        return cli_usage_error(c.cmd, "--lora-alpha/--lora-dropout need --lora-rank");
    /* DPO's reference log-probs come from the starting model, which dropout would perturb */
    if (c.lora_dropout > 0 && kind == MOPE_TRAINER_DPO)
        return cli_usage_error(c.cmd, "--lora-dropout is not supported with dpo");
    if (c.eval_given && kind != MOPE_TRAINER_RM) return cli_usage_error(c.cmd, "--eval-frac/--eval-every are for 'train rm'");
    if (kind == MOPE_TRAINER_LM && chat) return cli_usage_error(c.cmd, "--template/--system/--strict are for chat data");
    if (shape && (kind == MOPE_TRAINER_SFT || kind == MOPE_TRAINER_DPO || c.model))
        return cli_usage_error(c.cmd, "the model shape comes from --model; shape options are for new models");
    return run_sub(&c, (mope_trainer_kind)kind);
}
