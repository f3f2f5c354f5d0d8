/* mope prefbench SUB: the built-in benchmark's data (docs/PREFBENCH.md). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mope/prefbench.h"

static const char *const HELP =
    "usage: mope prefbench corpus --out DIR [--wordnet DIR] [--seed S] [--max-concepts N]\n"
    "                             [--variants N] [--tiny]\n"
    "       mope prefbench build [--tiny] [--out DIR] [options]   (mope prefbench build --help)\n"
    "       mope prefbench label --data FILE [--out FILE]          (mope prefbench label --help)\n"
    "\n"
    "Builds the PrefBench question-answer corpus from WordNet (Debian package\n"
    "wordnet-base): prompts in 16 phrasings per concept and answers in the neutral\n"
    "style and each of the six preference choices P1A..P3B, split into train, dev\n"
    "and test by a fixed hash of the concept.  Writes\n"
    "DIR/{train,dev,test}_{prompts,responses}.jsonl (formats in docs/PREFBENCH.md).\n"
    "\n"
    "options:\n"
    "  -o, --out DIR          output directory, created if missing (required)\n"
    "  --wordnet DIR          WordNet database directory (default /usr/share/wordnet)\n"
    "  --seed S               wording seed (default 1); the split does not depend on it\n"
    "  --max-concepts N       number of concepts (default 24000)\n"
    "  --variants N           answers per concept and style (default 2)\n"
    "  --tiny                 300 concepts, for tests\n"
    "  -h, --help             show this help\n";

static int corpus(int argc, char **argv) {
    const char *cmd = "prefbench corpus", *v = NULL;
    mope_prefbench_corpus_opts o = {0};
    o.seed = 1;
    long long x;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--out", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o.out_dir = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--wordnet", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o.wordnet_dir = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--seed", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--seed", v, 0, INT64_MAX, &x) < 0) return CLI_EXIT_USAGE;
            o.seed = (uint64_t)x;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--max-concepts", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--max-concepts", v, 1, 1000000, &x) < 0) return CLI_EXIT_USAGE;
            o.max_concepts = (int)x;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--variants", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--variants", v, 1, 64, &x) < 0) return CLI_EXIT_USAGE;
            o.variants = (int)x;
        } else if (cli_flag(argv[i], NULL, "--tiny")) {
            o.tiny = 1;
        } else {
            return cli_usage_error(cmd, "unknown argument '%s'", argv[i]);
        }
    }
    if (!o.out_dir) return cli_usage_error(cmd, "no output directory given (--out DIR)");
    mope_error err = {0};
    mope_prefbench_corpus_stats st;
    fprintf(stderr, "building the PrefBench corpus in %s ...\n", o.out_dir);
    if (mope_prefbench_corpus_build(&o, &st, &err) != 0) return cli_fail_err(cmd, &err, NULL);
    fprintf(stderr, "concepts %d/%d/%d, prompts %ld/%ld/%ld, responses %ld/%ld/%ld (train/dev/test), %.1f s\n",
            st.concepts[0], st.concepts[1], st.concepts[2], st.prompts[0], st.prompts[1], st.prompts[2],
            st.responses[0], st.responses[1], st.responses[2], st.seconds);
    return 0;
}

static const char *const HELP_BUILD =
    "usage: mope prefbench build [--tiny] [--out DIR] [--work DIR] [--seed S] [-t N]\n"
    "                            [--until STAGE] [--force] [--full-experts] [--single-style-experts]\n"
    "                            [--max-concepts N] [--wordnet DIR]\n"
    "\n"
    "Trains the PrefBench model zoo from scratch: corpus, tokenizer, base model\n"
    "(pretraining, then Tulu-format SFT), six expert LoRA adapters (P1A..P3B),\n"
    "reward-model trunk, labeler-ranked pairs, six reward models, reference\n"
    "responses, the sanity evaluation on held-out concepts, bundle.json and\n"
    "MODEL_CARD.md.  Stages (in order): corpus data tokenizer base_lm base_sft\n"
    "expert_data expert_P1A..expert_P3B rm_trunk samples rm_P1A..rm_P3B\n"
    "references eval.\n"
    "A stage is skipped when its stamp (its options and every earlier stage's)\n"
    "matches and its outputs exist, so an interrupted build resumes where it\n"
    "stopped; long trainings also checkpoint inside their stage.  The time of\n"
    "every stage is printed.\n"
    "\n"
    "options:\n"
    "  --tiny                 micro version (300 concepts, tiny models; minutes)\n"
    "  -o, --out DIR          outputs (default models/prefbench)\n"
    "  --work DIR             intermediates (default OUT.work; not needed afterwards)\n"
    "  --seed S               master seed (default 1)\n"
    "  -t, --threads N        threads (default: all CPUs)\n"
    "  --until STAGE          stop after this stage (corpus, data, tokenizer, base_lm,\n"
    "                         base_sft, experts, rm_trunk, samples, rewards,\n"
    "                         references, eval, bundle)\n"
    "  --force                rebuild every stage\n"
    "  --full-experts         experts as fully fine-tuned models instead of LoRA\n"
    "  --single-style-experts train each expert on its own style's answers only;\n"
    "                         default: also under every tone (friendly, unfriendly,\n"
    "                         none), so that the experts compose token by token\n"
    "  --max-concepts N       concepts in the corpus (default 24000; --tiny 300); the\n"
    "                         training steps stay the same, so more concepts means\n"
    "                         more distinct names seen once rather than fewer seen often\n"
    "  --wordnet DIR          WordNet database directory (default /usr/share/wordnet)\n"
    "  -q, --quiet            no progress on standard error\n"
    "  -h, --help             show this help\n";

static void log_line(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

static int build(int argc, char **argv) {
    const char *cmd = "prefbench build", *v = NULL;
    mope_prefbench_recipe_opts o = {0};
    o.seed = 1;
    o.log = log_line;
    long long x;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        if (cli_is_help(argv[i])) {
            fputs(HELP_BUILD, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--out", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o.out_dir = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--work", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o.work_dir = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--wordnet", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o.wordnet_dir = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--until", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            o.until = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--seed", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--seed", v, 1, INT64_MAX, &x) < 0) return CLI_EXIT_USAGE;
            o.seed = (uint64_t)x;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-t", "--threads", &v))) {
            if (r < 0 || cli_parse_threads(cmd, v, &o.n_threads)) return CLI_EXIT_USAGE;
        } else if (cli_flag(argv[i], NULL, "--tiny")) {
            o.tiny = 1;
        } else if (cli_flag(argv[i], NULL, "--force")) {
            o.force = 1;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--max-concepts", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--max-concepts", v, 1, 1000000, &x) < 0) return CLI_EXIT_USAGE;
            o.max_concepts = (int)x;
        } else if (cli_flag(argv[i], NULL, "--full-experts")) {
            o.full_experts = 1;
        } else if (cli_flag(argv[i], NULL, "--single-style-experts")) {
            o.single_style_experts = 1;
        } else if (cli_flag(argv[i], "-q", "--quiet")) {
            o.log = NULL;
        } else {
            return cli_usage_error(cmd, "unknown argument '%s'", argv[i]);
        }
    }
    mope_error err = {0};
    if (mope_prefbench_recipe_build(&o, &err) != 0) return cli_fail_err(cmd, &err, NULL);
    return 0;
}

static const char *const HELP_LABEL =
    "usage: mope prefbench label --data FILE [--out FILE] [--wordnet DIR]\n"
    "\n"
    "Scores answers with PrefBench's labelers (the stand-ins for the paper's\n"
    "annotators; docs/PREFBENCH.md, \"Labelers\").  Reads JSONL lines\n"
    "{\"prompt\", \"response\"[, \"concept\"]} and writes each line with a \"labels\"\n"
    "object added: words; P1 fk_grade, rare_rate, expertise; P2 facts, novel,\n"
    "informativeness; P3 friendliness; the relevance checks empty, truncated,\n"
    "on_topic, repetition, gate; and \"utility\", each choice's utility in [0,1]\n"
    "(P1A..P3B).  Without \"concept\" the concept is the longest run of up to 3\n"
    "prompt words that is a WordNet noun.\n"
    "\n"
    "options:\n"
    "  -d, --data FILE        JSONL input (required)\n"
    "  -o, --out FILE         JSONL output (default: standard output; written atomically)\n"
    "  --wordnet DIR          WordNet database directory (default /usr/share/wordnet)\n"
    "  -h, --help             show this help\n";

typedef struct label_ctx {
    const char *cmd, *path;
    mope_prefbench_labeler *lb;
} label_ctx;

static int label_line(void *ctx, cJSON *obj, long long line) {
    const label_ctx *lc = ctx;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(obj, "response");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, "concept");
    if (!cJSON_IsString(p)) return cli_fail(lc->cmd, "%s:%lld: missing string field \"prompt\"", lc->path, line);
    if (!cJSON_IsString(r)) return cli_fail(lc->cmd, "%s:%lld: missing string field \"response\"", lc->path, line);
    if (c && !cJSON_IsString(c)) return cli_fail(lc->cmd, "%s:%lld: \"concept\" is not a string", lc->path, line);
    mope_prefbench_labels l;
    mope_error err = {0};
    if (mope_prefbench_label(lc->lb, r->valuestring, p->valuestring, c ? c->valuestring : NULL, &l, &err)) {
        char where[64];
        snprintf(where, sizeof where, "line %lld", line);
        return cli_fail_err(lc->cmd, &err, where);
    }
    cJSON *o = mope_prefbench_labels_json(&l);
    if (!o) return cli_fail(lc->cmd, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "labels");
    cJSON_AddItemToObject(obj, "labels", o);
    return 0;
}

static int label(int argc, char **argv) {
    const char *cmd = "prefbench label", *v = NULL, *data = NULL, *out = NULL, *wn_dir = "/usr/share/wordnet";
    for (int i = 1; i < argc; i++) {
        int r = 0;
        if (cli_is_help(argv[i])) {
            fputs(HELP_LABEL, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-d", "--data", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            data = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--out", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            out = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--wordnet", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            wn_dir = v;
        } else {
            return cli_usage_error(cmd, "unknown argument '%s'", argv[i]);
        }
    }
    if (!data) return cli_usage_error(cmd, "no data given (--data FILE)");
    mope_error err = {0};
    mope_wordnet *wn = mope_wordnet_load(wn_dir, &err);
    if (!wn) return cli_fail_err(cmd, &err, "loading WordNet (Debian package wordnet-base)");
    label_ctx lc = {.cmd = cmd, .path = data, .lb = mope_prefbench_labeler_create(wn, &err)};
    int rc = 0;
    long long n = 0;
    if (!lc.lb) rc = cli_fail_err(cmd, &err, "creating the labelers");
    else rc = cli_jsonl_map(cmd, data, out, label_line, &lc, &n);
    if (!rc) fprintf(stderr, "labelled %lld records\n", n);
    mope_prefbench_labeler_free(lc.lb);
    mope_wordnet_free(wn);
    return rc;
}

int cmd_prefbench(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "corpus") == 0) return corpus(argc - 1, argv + 1);
    if (strcmp(argv[1], "build") == 0) return build(argc - 1, argv + 1);
    if (strcmp(argv[1], "label") == 0) return label(argc - 1, argv + 1);
    return cli_usage_error("prefbench", "unknown sub-command '%s' (expected: corpus, build, label)", argv[1]);
}
