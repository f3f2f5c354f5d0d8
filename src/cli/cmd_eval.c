/* mope eval: every method x preference combination on held-out prompts,
 * scored by the reward models and the PrefBench labelers (library:
 * include/mope/eval.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mope/eval.h"
#include "mope/prefbench.h"

int cmd_eval(int argc, char **argv);

static const char *const HELP =
    "usage: mope eval --bundle B --prompts FILE --out DIR [options]\n"
    "\n"
    "Generates a response for every prompt x preference combination x method,\n"
    "scores each by the bundle's reward models (Bradley-Terry normalised against\n"
    "the bundle's reference response of the prompt, matched by prompt text, else\n"
    "by concept) and by the PrefBench labelers, and writes into DIR:\n"
    "  generations.jsonl  one record per generation (appended as they finish; a\n"
    "                     rerun with the same settings skips those present)\n"
    "  results.md         mean utility per method x combination (labelers, reward\n"
    "                     models), how often the target is >= every baseline,\n"
    "                     its margin over the strongest baseline per combination\n"
    "                     (paired mean difference and standard error),\n"
    "                     win/tie/loss of the target per baseline, top-k study\n"
    "  utility.svg        grouped bars: utility per combination and method\n"
    "  weights.svg        the target's weights along its first sample response\n"
    "  summary.json       the numbers of results.md\n"
    "\n"
    "options:\n"
    "  --bundle FILE        bundle manifest (required)\n"
    "  --prompts FILE       JSONL {\"id\",\"prompt\"[,\"concept\"]}, e.g. PrefBench's\n"
    "                       test_prompts.jsonl (required)\n"
    "  -o, --out DIR        output folder, created if missing (required)\n"
    "  --n-prompts N        the first N prompts only (default: all)\n"
    "  --methods LIST       comma-separated: mope, prompt, soup, soup-delta, uniform,\n"
    "                       uniform-geo, expert:ID, experts (every single expert),\n"
    "                       multitask, base.  Default: mope (when the bundle has a\n"
    "                       PCM), prompt, soup, uniform, uniform-geo, experts,\n"
    "                       multitask (when present).  A single expert runs only in\n"
    "                       the combinations that choose it.\n"
    "  --combos LIST        comma-separated combinations, choices joined by '+'\n"
    "                       (P1A+P2B+P3A,P1B+P2A+P3A); default: all\n"
    "  --target METHOD      the method compared against the others (default: mope)\n"
    "  --topk-study         also run the target in black-box mode at k = 1, 5, 20\n"
    "  --topk-ks LIST       the k values of the study (default 1,5,20)\n"
    "  -n, --max-tokens N   response length limit (default 128)\n"
    "  --min-weight W       experts under weight W at a step are not run for it\n"
    "                       (see mope generate; 0 = exact, default 0.01)\n"
    "  --temp T             temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K            (default 40; 0 = off)\n"
    "  --top-p P            (default 0.95)\n"
    "  --min-p P            (default 0.05)\n"
    "  --repeat-penalty X   (default 1 = off)\n"
    "  --no-repeat-ngram N  ban repeated N-grams (default 3, as Personalized Soups\n"
    "                       decodes and the PrefBench references were made; 0 = off)\n"
    "  --seed S             random seed (default 42); same seed, same results\n"
    "  --batch N            prompts generated together (default 4)\n"
    "  --tie-eps X          utilities within X are a tie (default 1e-9)\n"
    "  --no-labelers        skip the PrefBench labelers\n"
    "  --wordnet DIR        WordNet for the labelers (default /usr/share/wordnet)\n"
    "  --no-resume          regenerate everything, replacing generations.jsonl\n"
    "                       (without it a rerun into the same --out keeps the\n"
    "                       records there; refused if the sampling options or any\n"
    "                       file of the bundle changed since)\n"
    "  -q, --quiet          no progress line\n"
    "  -t, --threads N      threads (default: all CPUs)\n"
    "  -h, --help           show this help\n";

#define MAX_LIST 256

/* Splits a comma-separated list in place into items[]; returns the count
 * or -1 (usage error printed) when it has too many or an empty item. */
static int split_list(const char *cmd, const char *opt, char *s, const char **items) {
    int n = 0;
    for (char *save = NULL, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        if (!*t) continue;
        if (n == MAX_LIST) {
            cli_usage_error(cmd, "%s: more than %d items", opt, MAX_LIST);
            return -1;
        }
        items[n++] = t;
    }
    if (n == 0) {
        cli_usage_error(cmd, "%s: empty list", opt);
        return -1;
    }
    return n;
}

static int label_cb(void *user, const char *prompt, const char *concept, const char *response,
                    const char *const *choices, int n, double *out, mope_error *err) {
    const mope_prefbench_labeler *lb = user;
    mope_prefbench_labels l;
    int rc = mope_prefbench_label(lb, response, prompt, concept, &l, err);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        int k = mope_prefbench_choice_index(choices[i]);
        if (k < 0)
            return mope_error_set(err, MOPE_EINVAL,
                                  "the PrefBench labelers know choices P1A..P3B, not \"%s\" (use --no-labelers)",
                                  choices[i]);
        out[i] = l.choice[k];
    }
    return 0;
}

typedef struct progress_state {
    bool tty, quiet, open_line;
    double last;
} progress_state;

static void progress_cb(void *user, const mope_eval_progress *p) {
    progress_state *s = user;
    if (s->quiet) return;
    double now = mope_time_s();
    bool final = p->done >= p->total;
    /* a log file gets a line every 10 s, a terminal an updating line */
    if (!s->tty && !final && now - s->last < 10 && p->done > p->resumed) return;
    s->last = now;
    char eta[32] = "?";
    if (p->eta_s >= 0) snprintf(eta, sizeof eta, "%.0f s", p->eta_s);
    fprintf(stderr, "%seval: %ld/%ld generations", s->tty ? "\r\033[K" : "", p->done, p->total);
    if (p->resumed) fprintf(stderr, " (%ld resumed)", p->resumed);
    if (p->combo && !final) fprintf(stderr, ", %s / %s", p->combo, p->method);
    fprintf(stderr, ", %.1f s, ETA %s%s", p->elapsed_s, final ? "0 s" : eta, s->tty ? "" : "\n");
    s->open_line = s->tty;
    fflush(stderr);
}

static void note_cb(void *user, const char *line) {
    progress_state *s = user;
    if (s->open_line) fputc('\n', stderr);
    s->open_line = false;
    fprintf(stderr, "eval: note: %s\n", line);
}

/* The command line as one shell-quoted string, for results.md. */
static char *join_args(int argc, char **argv) {
    size_t cap = 16;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 8;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "mope");
    for (int i = 0; i < argc; i++) {
        bool plain = argv[i][0] != 0;
        for (const char *c = argv[i]; *c && plain; c++)
            if (!(isalnum((unsigned char)*c) || strchr("-_./:=+,@", *c))) plain = false;
        *p++ = ' ';
        if (plain) {
            p += sprintf(p, "%s", argv[i]);
            continue;
        }
        *p++ = '\'';
        for (const char *c = argv[i]; *c; c++) {
            if (*c == '\'') p += sprintf(p, "'\\''");
            else *p++ = *c;
        }
        *p++ = '\'';
        *p = 0;
    }
    return s;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval", *v = NULL, *wordnet = NULL;
    mope_eval_opts o;
    mope_eval_opts_init(&o);
    o.sampler.no_repeat_ngram = 3;
    const char *methods[MAX_LIST], *combos[MAX_LIST];
    int ks[MAX_LIST];
    char *mlist = NULL, *clist = NULL, *klist = NULL;
    bool no_lab = false, quiet = false;
    long long iv = 0;
    double fv = 0;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        int r = 0;
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            goto done;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--bundle", &v))) {
            o.bundle = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--prompts", &v))) {
            o.prompts = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--out", &v))) {
            o.out_dir = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--n-prompts", &v))) {
            if (r > 0 && cli_parse_int(cmd, "--n-prompts", v, 1, 10000000, &iv)) r = -1;
            else o.n_prompts = (int)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--methods", &v))) {
            free(mlist);
            if (r > 0 && (!(mlist = strdup(v)) || (o.n_methods = split_list(cmd, "--methods", mlist, methods)) < 0)) r = -1;
            o.methods = methods;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--combos", &v))) {
            free(clist);
            if (r > 0 && strcmp(v, "all") == 0) {
                clist = NULL;
                o.n_combos = 0;
            } else if (r > 0 && (!(clist = strdup(v)) || (o.n_combos = split_list(cmd, "--combos", clist, combos)) < 0)) {
                r = -1;
            }
            o.combos = o.n_combos > 0 ? combos : NULL;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--target", &v))) {
            o.target = v;
        } else if (cli_flag(argv[i], NULL, "--topk-study")) {
            o.topk_study = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--topk-ks", &v))) {
            free(klist);
            const char *items[MAX_LIST];
            int n = r > 0 && (klist = strdup(v)) ? split_list(cmd, "--topk-ks", klist, items) : -1;
            for (int k = 0; k < n && r > 0; k++) {
                if (cli_parse_int(cmd, "--topk-ks", items[k], 1, 1 << 24, &iv)) r = -1;
                ks[k] = (int)iv;
            }
            if (n < 0) r = -1;
            o.topk_ks = ks;
            o.n_topk = n;
            o.topk_study = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--min-weight", &v))) {
            if (r > 0 && cli_parse_float(cmd, "--min-weight", v, 0, 0.999, &fv)) r = -1;
            else o.min_weight = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-n", "--max-tokens", &v))) {
            if (r > 0 && cli_parse_int(cmd, "-n", v, 1, 1 << 20, &iv)) r = -1;
            else o.max_tokens = (int)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--temp", &v))) {
            if (r > 0 && cli_parse_float(cmd, "--temp", v, 0.0, 1e6, &fv)) r = -1;
            else o.sampler.temp = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--top-k", &v))) {
            if (r > 0 && cli_parse_int(cmd, "--top-k", v, 0, INT32_MAX, &iv)) r = -1;
            else o.sampler.top_k = (int32_t)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--top-p", &v))) {
            if (r > 0 && cli_parse_float(cmd, "--top-p", v, 0.0, 1.0, &fv)) r = -1;
            else o.sampler.top_p = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--min-p", &v))) {
            if (r > 0 && cli_parse_float(cmd, "--min-p", v, 0.0, 1.0, &fv)) r = -1;
            else o.sampler.min_p = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--repeat-penalty", &v))) {
            if (r > 0 && cli_parse_float(cmd, "--repeat-penalty", v, 1e-6, 1e6, &fv)) r = -1;
            else o.sampler.repeat_penalty = (float)fv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--no-repeat-ngram", &v))) {
            if (r > 0 && cli_parse_int(cmd, "--no-repeat-ngram", v, 0, 64, &iv)) r = -1;
            else o.sampler.no_repeat_ngram = (int32_t)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--seed", &v))) {
            if (r > 0 && cli_parse_int(cmd, "--seed", v, 0, INT64_MAX, &iv)) r = -1;
            else o.sampler.seed = (uint64_t)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--batch", &v))) {
            if (r > 0 && cli_parse_int(cmd, "--batch", v, 1, 1024, &iv)) r = -1;
            else o.max_batch = (int)iv;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--tie-eps", &v))) {
            if (r > 0 && cli_parse_float(cmd, "--tie-eps", v, 0.0, 1.0, &fv)) r = -1;
            else o.tie_eps = fv;
        } else if (cli_flag(argv[i], NULL, "--no-labelers")) {
            no_lab = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--wordnet", &v))) {
            wordnet = v;
        } else if (cli_flag(argv[i], NULL, "--no-resume")) {
            o.no_resume = true;
        } else if (cli_flag(argv[i], "-q", "--quiet")) {
            quiet = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-t", "--threads", &v))) {
            int t = 0;
            if (r > 0 && cli_parse_threads(cmd, v, &t)) r = -1;
            o.n_threads = t;
        } else {
            rc = cli_usage_error(cmd, "unknown argument '%s'", argv[i]);
        }
        if (r < 0) rc = CLI_EXIT_USAGE;
    }
    if (!rc && !o.bundle) rc = cli_usage_error(cmd, "no bundle given (--bundle FILE)");
    if (!rc && !o.prompts) rc = cli_usage_error(cmd, "no prompts file given (--prompts FILE)");
    if (!rc && !o.out_dir) rc = cli_usage_error(cmd, "no output folder given (--out DIR)");
    if (rc) goto done;
    if (access(o.prompts, R_OK) != 0) {
        rc = cli_fail(cmd, "cannot read the prompts file %s: %s", o.prompts, strerror(errno));
        goto done;
    }
    mope_error err = {0};
    mope_wordnet *wn = NULL;
    mope_prefbench_labeler *lb = NULL;
    if (!no_lab) {
        if (!(wn = mope_wordnet_load(wordnet, &err)) || !(lb = mope_prefbench_labeler_create(wn, &err))) {
            rc = cli_fail_err(cmd, &err, "loading the labelers (WordNet; --no-labelers skips them)");
            mope_wordnet_free(wn);
            goto done;
        }
        o.label = label_cb;
        o.label_user = lb;
    }
    progress_state ps = {.tty = isatty(2) != 0, .quiet = quiet, .last = -1e9};
    o.progress = progress_cb;
    o.note = note_cb;
    o.log_user = &ps;
    char *command = join_args(argc, argv);
    o.command = command;
    if (mope_eval_run(&o, &err)) rc = cli_fail_err(cmd, &err, "eval");
    if (ps.open_line) fputc('\n', stderr);
    if (!rc) printf("results: %s/results.md (generations, charts and summary.json beside it)\n", o.out_dir);
    free(command);
    mope_prefbench_labeler_free(lb);
    mope_wordnet_free(wn);
done:
    free(mlist);
    free(clist);
    free(klist);
    return rc;
}
