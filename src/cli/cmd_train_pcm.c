/* mope train pcm: REBEL training of the Preference Control Model over a
 * bundle (mope_pcm_train_run).  Parses options, shows progress, prints the
 * summary. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mope/pcm_train.h"

int cmd_train_pcm(int argc, char **argv);

static const char *const HELP =
    "usage: mope train pcm --bundle BUNDLE.json -o PCM.gguf [options]\n"
    "\n"
    "Trains the Preference Control Model that weighs the bundle's experts token by\n"
    "token, by REBEL: per iteration, two responses per (prompt, preference) item are\n"
    "sampled from the current mixture, scored by the bundle's reward models against\n"
    "the reference responses (Bradley-Terry), and the PCM regresses their log-ratio\n"
    "difference onto the utility difference for several epochs.\n"
    "\n"
    "data:\n"
    "  -b, --bundle FILE        bundle manifest (required): experts, reward models,\n"
    "                           references, preferences\n"
    "  -o, --out FILE           trained PCM (required; written atomically)\n"
    "  --prompts FILE           JSONL {\"id\",\"prompt\"} (default: the bundle's\n"
    "                           references of split \"train\")\n"
    "  --prefs LIST             combinations to train, e.g. \"P1A,P2A,P3A;P1B,P2A,P3A\"\n"
    "                           (default: every combination of one choice per dimension)\n"
    "  --pref-paraphrases FILE  JSON {\"P1A\": [\"sentence\", ...], ...}: each item's\n"
    "                           preference text then takes, per choice, its own sentence\n"
    "                           or (probability 1/2) one of these, drawn at random\n"
    "  --reward-weights W,...   one weight per dimension for the utility (default 1 each)\n"
    "  --skip-missing-refs      skip prompts without a reference response (default:\n"
    "                           generate one greedily from the base, once, and cache it)\n"
    "  --ref-cache FILE         cache of generated references (default OUT.refs.jsonl)\n"
    "PCM:\n"
    "  --pcm FILE               start from this PCM (default: a new one)\n"
    "  --init-from-base         new PCM whose trunk is the bundle's base model\n"
    "  --dim D --layers L --heads H --kv-heads K --ff F --ctx C\n"
    "                           new PCM trunk (defaults 128, 2, 4, 2, 344, 512)\n"
    "  --rule linear|geometric  mixing rule of a new PCM (default linear; geometric\n"
    "                           rollouts record every expert's full distribution:\n"
    "                           -n x experts x vocab floats each, 2 x --batch of them)\n"
    "warm start (before REBEL; skipped on --resume):\n"
    "  --warm-start N           N supervised updates toward equal weights over the\n"
    "                           experts of each preference's choices, so REBEL starts\n"
    "                           from a PCM that reads the preference (default 0: none)\n"
    "  --warm-lr F              their peak learning rate (default 1e-3)\n"
    "  --warm-batch N           sequences per update (default 2 x --batch)\n"
    "  --warm-best F            target share F on each preference's best expert (by the\n"
    "                           reward models' utility of its answers alone), the rest\n"
    "                           spread over its other experts; also --kl-prior's target\n"
    "                           (default 0: uniform over the preference's experts)\n"
    "  --warm-best-prompts N    training prompts per measurement (default 32, at most\n"
    "                           2 x --batch)\n"
    "REBEL:\n"
    "  --iterations N           iterations in total (default 20)\n"
    "  --batch N                (prompt, preference) items per iteration (default 8)\n"
    "  --epochs N               updates per batch (default 4)\n"
    "  --micro-batch N          pairs per PCM forward (default 8)\n"
    "  --eta F                  REBEL eta (default 1)\n"
    "  --kl F                   KL shaping toward the uniform mixture (default 0)\n"
    "  --kl-prior F             KL(q || w) toward equal weights over the experts of\n"
    "                           the preference's choices (the warm start's target): keeps\n"
    "                           every named expert in the mixture (default 0)\n"
    "  --length-penalty F       subtracted from the utility of a response that hits the\n"
    "                           length limit (default 0)\n"
    "  --explore F              share of items whose second rollout is steered: one of\n"
    "                           the preference's experts alone writes its opening\n"
    "                           sentence, a closing sentence or both, while REBEL scores\n"
    "                           the tokens under the PCM's mixture; shows the PCM switches\n"
    "                           it rarely samples itself (default 0: off)\n"
    "  --explore-head N         at most N tokens of a steered opening; 0: none (default 12)\n"
    "  --explore-tail N         at most N tokens of a steered closing, from where the\n"
    "                           mixture would end; 0: none (default 16)\n"
    "  -n, --max-tokens N       response length limit (default 48)\n"
    "  --temp F                 sampling temperature (default 1)\n"
    "  --lr F                   peak learning rate (default 1e-4)\n"
    "  --min-lr F               cosine floor (default 1e-5)\n"
    "  --warmup N               warmup updates (default 0)\n"
    "  --weight-decay F         AdamW weight decay (default 0)\n"
    "  --clip F                 gradient norm clip, 0 = none (default 1)\n"
    "run:\n"
    "  --seed S                 batches, sampling, new PCM weights (default 42)\n"
    "  -t, --threads N          threads (default: all CPUs; results are reproducible for\n"
    "                           the same seed and thread count)\n"
    "  --log FILE               JSONL log, one object per iteration\n"
    "  --checkpoint PATH        checkpoint (default OUT.ckpt)\n"
    "  --checkpoint-every N     checkpoint every N iterations (default 0: never)\n"
    "  --resume                 continue from the checkpoint when it exists (same\n"
    "                           options and threads give the same result as one run)\n"
    "  --stop-at N              stop after iteration N, writing the checkpoint and no\n"
    "                           output (train in slices: --resume continues)\n"
    "  --update-bundle          write the trained PCM's path into the bundle manifest\n"
    "  -q, --quiet              no progress on standard error\n"
    "  -h, --help               show this help\n";

typedef struct cli_pcm {
    const char *cmd;
    bool quiet, tty, open;
} cli_pcm;

static int on_progress(void *user, const mope_pcm_train_progress *p) {
    cli_pcm *c = user;
    if (c->quiet) return 0;
    fprintf(stderr,
            "%siter %lld/%lld  reward %.4f  utility %.4f  loss %.5g -> %.5g  kl %.4f  kl-prior %.3f  len %.1f  "
            "%.2f s/it  %.0f tok/s",
            c->tty ? "\r" : "", (long long)p->iteration, (long long)p->total, p->reward, p->utility, p->loss_before,
            p->loss_after, p->kl, p->kl_prior, p->mean_len, p->iter_s, p->tokens_per_s);
    if (p->explored) fprintf(stderr, "  explored %d (%+.3f)", p->explored, p->explore_gain);
    fprintf(stderr, "%s%s", p->checkpointed ? "  [checkpoint]" : "", c->tty ? "   " : "\n");
    c->open = c->tty;
    return 0;
}

static int parse_weights(const char *cmd, const char *s, double **out, int *n) {
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    double *w = malloc(sizeof(double) * (size_t)cap);
    char *buf = strdup(s);
    if (!w || !buf) {
        free(w);
        free(buf);
        return cli_fail(cmd, "out of memory");
    }
    int k = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (cli_parse_float(cmd, "--reward-weights", t, 0, 1e6, &w[k])) {
            free(w);
            free(buf);
            return CLI_EXIT_USAGE;
        }
        k++;
    }
    free(buf);
    if (k == 0) {
        free(w);
        return cli_usage_error(cmd, "--reward-weights: no weights in '%s'", s);
    }
    *out = w;
    *n = k;
    return 0;
}

int cmd_train_pcm(int argc, char **argv) {
    const char *cmd = "train pcm";
    mope_pcm_train_opts o;
    mope_pcm_train_opts_init(&o);
    o.n_threads = cli_default_threads();
    cli_pcm c = {.cmd = cmd};
    double *weights = NULL;
    int rc = 0;
    bool shape = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long long n;
        double f;
        int m;
#define OPT(s, l) ((m = cli_opt(cmd, argc, argv, &i, s, l, &v)) != 0)
#define BAD (m < 0)
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            free(weights);
            return 0;
        } else if (OPT("-b", "--bundle")) {
            if (BAD) goto usage;
            o.bundle = v;
        } else if (OPT("-o", "--out")) {
            if (BAD) goto usage;
            o.out = v;
        } else if (OPT(NULL, "--prompts")) {
            if (BAD) goto usage;
            o.prompts = v;
        } else if (OPT(NULL, "--prefs")) {
            if (BAD) goto usage;
            o.prefs = v;
        } else if (OPT(NULL, "--pref-paraphrases")) {
            if (BAD) goto usage;
            o.pref_paraphrases = v;
        } else if (OPT(NULL, "--reward-weights")) {
            if (BAD) goto usage;
            free(weights);
            weights = NULL;
            if ((rc = parse_weights(cmd, v, &weights, &o.n_reward_weights))) goto out;
            o.reward_weights = weights;
        } else if (OPT(NULL, "--ref-cache")) {
            if (BAD) goto usage;
            o.ref_cache = v;
        } else if (cli_flag(a, NULL, "--skip-missing-refs")) {
            o.skip_missing_refs = true;
        } else if (OPT(NULL, "--pcm")) {
            if (BAD) goto usage;
            o.pcm_in = v;
        } else if (cli_flag(a, NULL, "--init-from-base")) {
            o.init_from_base = true;
        } else if (OPT(NULL, "--rule")) {
            mope_error err = {0};
            if (BAD) goto usage;
            int r = mope_mix_rule_from_name(v, &err);
            if (r < 0) {
                rc = cli_usage_error(cmd, "--rule: %s", err.msg);
                goto out;
            }
            o.rule = (mope_mix_rule)r;
        } else if (OPT(NULL, "--dim") || OPT(NULL, "--layers") || OPT(NULL, "--heads") || OPT(NULL, "--kv-heads") ||
                   OPT(NULL, "--ff") || OPT(NULL, "--ctx")) {
            if (BAD) goto usage;
            if (cli_parse_int(cmd, a, v, 1, 1 << 16, &n)) goto usage;
            int *dst = strncmp(a, "--dim", 5) == 0      ? &o.trunk.n_embd
                       : strncmp(a, "--layers", 8) == 0 ? &o.trunk.n_layer
                       : strncmp(a, "--heads", 7) == 0  ? &o.trunk.n_head
                       : strncmp(a, "--kv", 4) == 0     ? &o.trunk.n_head_kv
                       : strncmp(a, "--ff", 4) == 0     ? &o.trunk.n_ff
                                                        : &o.trunk.n_ctx;
            *dst = (int)n;
            shape = true;
        } else if (OPT(NULL, "--iterations")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 100000000, &n)) goto usage;
            o.iterations = n;
        } else if (OPT(NULL, "--batch")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 4096, &n)) goto usage;
            o.batch = (int)n;
        } else if (OPT(NULL, "--epochs")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 1000, &n)) goto usage;
            o.epochs = (int)n;
        } else if (OPT(NULL, "--micro-batch")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 4096, &n)) goto usage;
            o.micro_batch = (int)n;
        } else if (OPT(NULL, "--warm-start")) {
            if (BAD || cli_parse_int(cmd, a, v, 0, 100000000, &n)) goto usage;
            o.warm_steps = n;
        } else if (OPT(NULL, "--warm-lr")) {
            if (BAD || cli_parse_float(cmd, a, v, 1e-9, 10, &f)) goto usage;
            o.warm_lr = (float)f;
        } else if (OPT(NULL, "--warm-batch")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 4096, &n)) goto usage;
            o.warm_batch = (int)n;
        } else if (OPT(NULL, "--eta")) {
            if (BAD || cli_parse_float(cmd, a, v, 1e-9, 1e9, &f)) goto usage;
            o.eta = f;
        } else if (OPT(NULL, "--kl")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 1e9, &f)) goto usage;
            o.kl_coef = f;
        } else if (OPT(NULL, "--kl-prior")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 1e9, &f)) goto usage;
            o.kl_prior = f;
        } else if (OPT(NULL, "--length-penalty")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 1e9, &f)) goto usage;
            o.length_penalty = f;
        } else if (OPT(NULL, "--warm-best")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 1, &f)) goto usage;
            o.warm_best = f;
        } else if (OPT(NULL, "--warm-best-prompts")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 4096, &n)) goto usage;
            o.warm_best_prompts = (int)n;
        } else if (OPT(NULL, "--explore")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 1, &f)) goto usage;
            o.explore = f;
        } else if (OPT(NULL, "--explore-head")) {
            if (BAD || cli_parse_int(cmd, a, v, 0, 1 << 16, &n)) goto usage;
            o.explore_head = (int)n;
        } else if (OPT(NULL, "--explore-tail")) {
            if (BAD || cli_parse_int(cmd, a, v, 0, 1 << 16, &n)) goto usage;
            o.explore_tail = (int)n;
        } else if (OPT("-n", "--max-tokens")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 1 << 16, &n)) goto usage;
            o.max_tokens = (int)n;
        } else if (OPT(NULL, "--temp")) {
            if (BAD || cli_parse_float(cmd, a, v, 1e-6, 1e6, &f)) goto usage;
            o.temperature = (float)f;
        } else if (OPT(NULL, "--lr")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 10, &f)) goto usage;
            o.adamw.lr = (float)f;
        } else if (OPT(NULL, "--min-lr")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 10, &f)) goto usage;
            o.adamw.min_lr = (float)f;
        } else if (OPT(NULL, "--warmup")) {
            if (BAD || cli_parse_int(cmd, a, v, 0, 100000000, &n)) goto usage;
            o.adamw.warmup_steps = n;
        } else if (OPT(NULL, "--weight-decay")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 10, &f)) goto usage;
            o.adamw.weight_decay = (float)f;
        } else if (OPT(NULL, "--clip")) {
            if (BAD || cli_parse_float(cmd, a, v, 0, 1e9, &f)) goto usage;
            o.adamw.grad_clip = (float)f;
        } else if (OPT(NULL, "--seed")) {
            if (BAD || cli_parse_int(cmd, a, v, 0, INT64_MAX, &n)) goto usage;
            o.seed = (uint64_t)n;
        } else if (OPT("-t", "--threads")) {
            if (BAD || cli_parse_threads(cmd, v, &o.n_threads)) goto usage;
        } else if (OPT(NULL, "--log")) {
            if (BAD) goto usage;
            o.log = v;
        } else if (OPT(NULL, "--checkpoint")) {
            if (BAD) goto usage;
            o.checkpoint = v;
        } else if (OPT(NULL, "--checkpoint-every")) {
            if (BAD || cli_parse_int(cmd, a, v, 0, 100000000, &n)) goto usage;
            o.checkpoint_every = n;
        } else if (OPT(NULL, "--stop-at")) {
            if (BAD || cli_parse_int(cmd, a, v, 1, 100000000, &n)) goto usage;
            o.stop_at = n;
        } else if (cli_flag(a, NULL, "--resume")) {
            o.resume = true;
        } else if (cli_flag(a, NULL, "--update-bundle")) {
            o.update_bundle = true;
        } else if (cli_flag(a, "-q", "--quiet")) {
            c.quiet = true;
        } else {
            rc = cli_usage_error(cmd, "unknown option '%s'", a);
            goto out;
        }
#undef OPT
#undef BAD
    }
    if (!o.bundle) {
        rc = cli_usage_error(cmd, "--bundle is required");
        goto out;
    }
    if (!o.out) {
        rc = cli_usage_error(cmd, "--out is required");
        goto out;
    }
    if (shape && (o.pcm_in || o.init_from_base)) {
        rc = cli_usage_error(cmd, "shape options are for a new PCM, not with --pcm or --init-from-base");
        goto out;
    }
    if (o.pcm_in && o.init_from_base) {
        rc = cli_usage_error(cmd, "--pcm and --init-from-base exclude each other");
        goto out;
    }
    if (o.adamw.min_lr > o.adamw.lr) o.adamw.min_lr = o.adamw.lr;
    c.tty = isatty(fileno(stderr));
    o.progress = on_progress;
    o.progress_user = &c;
    mope_error err = {0};
    mope_pcm_train_result res;
    int trc = mope_pcm_train_run(&o, &res, &err);
    if (c.open) fputc('\n', stderr);
    if (trc) {
        rc = cli_fail_err(cmd, &err, NULL);
        if (o.checkpoint_every > 0 && res.iterations_done > 0)
            fprintf(stderr, "mope %s: the last good checkpoint was left as it was\n", cmd);
        goto out;
    }
    if (res.n_refs_generated || res.n_skipped)
        fprintf(stderr, "mope %s: %d references generated, %d prompts skipped without one\n", cmd,
                res.n_refs_generated, res.n_skipped);
    if (o.warm_steps > 0 && !res.resumed)
        fprintf(stderr, "mope %s: warm start: %lld updates, KL to the target %.4f -> %.4f, weight on the preference's "
                        "experts %.3f\n",
                cmd, (long long)o.warm_steps, res.warm_loss_first, res.warm_loss_last, res.warm_mass);
    if (res.stopped) {
        printf("train pcm: stopped after iteration %lld of %lld; checkpoint %s%s (continue with --resume)\n",
               (long long)res.iterations_done, (long long)o.iterations, o.checkpoint ? o.checkpoint : o.out,
               o.checkpoint ? "" : ".ckpt");
        goto out;
    }
    printf("train pcm: %lld iterations%s over %d prompts x %d preferences, final utility %.4f, wrote %s%s\n",
           (long long)res.iterations_done, res.resumed ? " (resumed)" : "", res.n_prompts, res.n_prefs,
           res.final_utility, o.out, o.update_bundle ? " (bundle updated)" : "");
    goto out;
usage:
    rc = CLI_EXIT_USAGE;
out:
    free(weights);
    return rc;
}
