/* mope model-init: a random-weight model file (demos, tests, benchmarks). */
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/gguf.h"
#include "mope/model.h"
#include "mope/quant.h"

static const char *const HELP =
    "usage: mope model-init -o OUT.gguf [options]\n"
    "\n"
    "Writes a llama-family GGUF model with random weights (reproducible from the\n"
    "seed) for demos, tests and benchmarks.  Matrices are stored in the chosen\n"
    "type (the embedding too); norms and biases stay f32.  Without --vocab-from a\n"
    "small SentencePiece-style vocabulary is built in (<unk>, <s>, </s>, the 256\n"
    "byte tokens, frequent English pieces, then <unused_N> fillers up to --vocab).\n"
    "\n"
    "options:\n"
    "  -o, --output OUT     output file (required; written atomically)\n"
    "  --arch A             llama or qwen2 (default llama; qwen2 adds QKV biases and\n"
    "                       uses NEOX rope)\n"
    "  --dim D              embedding width (default 64)\n"
    "  --layers L           transformer blocks (default 2)\n"
    "  --heads H            attention heads; D must be a multiple of H, head size\n"
    "                       D/H (default 4)\n"
    "  --kv-heads K         key/value heads, H a multiple of K (default: 2 when\n"
    "                       --heads is not given, else H)\n"
    "  --ff F               feed-forward width (default 128)\n"
    "  --ctx C              context length (default 256)\n"
    "  --vocab N            size of the built-in vocabulary, >= 259 (default 512)\n"
    "  --vocab-from FILE    copy the tokenizer of this GGUF (vocab size = its token\n"
    "                       count; not with --vocab)\n"
    "  --type T             f32, f16, q8_0, q4_0, q4_k or q6_k (default f32); D and\n"
    "                       F must be multiples of the block size: 32 for\n"
    "                       q8_0/q4_0, 256 for q4_k/q6_k\n"
    "  --tied               no output.weight: the logits reuse the embedding\n"
    "\n"
    "On success one line goes to standard output: the file, its shape, type,\n"
    "parameter count, size and the time taken.\n"
    "  --seed S             random seed (default 42)\n"
    "  -h, --help           show this help\n";

static const char *const TYPES[] = {"f32", "f16", "q8_0", "q4_0", "q4_k", "q6_k"};

int cmd_model_init(int argc, char **argv) {
    const char *cmd = "model-init", *out = NULL, *vocab_from = NULL, *v = NULL;
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    long long dim = hp.n_embd, layers = hp.n_layer, heads = hp.n_head, kv_heads = -1, ff = hp.n_ff,
              ctx = hp.n_ctx_train, vocab = -1, seed = 42;
    bool heads_given = false, tied = false;
    int arch = MOPE_ARCH_LLAMA, type = MOPE_TYPE_F32;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-o", "--output", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            out = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--arch", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            if ((arch = mope_arch_from_name(v)) < 0)
                return cli_usage_error(cmd, "--arch: unknown architecture '%s' (llama or qwen2)", v);
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--dim", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--dim", v, 1, 1 << 16, &dim)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--layers", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--layers", v, 1, 1024, &layers)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--heads", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--heads", v, 1, 1024, &heads)) return CLI_EXIT_USAGE;
            heads_given = true;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--kv-heads", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--kv-heads", v, 1, 1024, &kv_heads)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--ff", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--ff", v, 1, 1 << 18, &ff)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--ctx", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--ctx", v, 1, 1 << 20, &ctx)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--vocab", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--vocab", v, 259, 1 << 20, &vocab)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--vocab-from", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            vocab_from = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--type", &v))) {
            if (r < 0) return CLI_EXIT_USAGE;
            type = -1;
            for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++)
                if (strcmp(v, TYPES[k]) == 0) type = mope_type_from_name(v);
            if (type < 0)
                return cli_usage_error(cmd, "--type: '%s' is not one of f32, f16, q8_0, q4_0, q4_k, q6_k", v);
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--seed", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--seed", v, 0, INT64_MAX, &seed)) return CLI_EXIT_USAGE;
        } else if (cli_flag(a, NULL, "--tied")) {
            tied = true;
        } else if (a[0] == '-') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the output goes after -o)", a);
        }
    }
    if (!out) return cli_usage_error(cmd, "no output file given (-o OUT.gguf)");
    if (vocab_from && vocab > 0) return cli_usage_error(cmd, "give --vocab or --vocab-from, not both");
    if (dim % heads) return cli_usage_error(cmd, "--dim %lld is not a multiple of --heads %lld", dim, heads);
    if (kv_heads < 0) kv_heads = heads_given ? heads : hp.n_head_kv;
    if (heads % kv_heads)
        return cli_usage_error(cmd, "--heads %lld is not a multiple of --kv-heads %lld", heads, kv_heads);

    mope_hparams_init(&hp, (mope_arch)arch);
    hp.n_embd = (int)dim;
    hp.n_layer = (int)layers;
    hp.n_head = (int)heads;
    hp.n_head_kv = (int)kv_heads;
    hp.head_dim = (int)(dim / heads);
    hp.n_rot = hp.head_dim;
    hp.n_ff = (int)ff;
    hp.n_ctx_train = (int)ctx;
    hp.tied_output = tied;
    if (vocab > 0) hp.n_vocab = (int)vocab;

    mope_error err = {0};
    mope_gguf *src = NULL;
    if (vocab_from) {
        if (!(src = mope_gguf_open(vocab_from, &err))) return cli_fail_err(cmd, &err, NULL);
        hp.n_vocab = 0; /* take the tokenizer's token count */
    } else if (mope_hparams_check(&hp, &err) != 0) {
        return cli_usage_error(cmd, "%s", err.msg);
    }
    int rc = 0;
    double t0 = mope_time_s();
    if (mope_model_write_random(out, &hp, (mope_type)type, (uint64_t)seed, src, &err) != 0) {
        rc = cli_fail_err(cmd, &err, "writing the model");
    } else {
        mope_gguf *g = mope_gguf_open(out, &err);
        int64_t n_params = 0;
        size_t size = 0;
        if (g) {
            for (int64_t i = 0; i < mope_gguf_n_tensors(g); i++) n_params += mope_gguf_tensor_at(g, i)->n_elements;
            mope_gguf_base(g, &size);
            mope_gguf_close(g);
        }
        printf("wrote %s: %s, dim %d, %d layers, %d heads (%d kv), ff %d, ctx %d, %s, %lld parameters, %zu "
               "bytes, %.2f s\n",
               out, mope_arch_name(hp.arch), hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.n_ff,
               hp.n_ctx_train, mope_type_name(type), (long long)n_params, size, mope_time_s() - t0);
    }
    mope_gguf_close(src);
    return rc;
}
