/* mope info FILE: every metadata key, the tensor table and a summary. */
#include <inttypes.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/gguf.h"
#include "mope/quant.h"

static const char *const HELP =
    "usage: mope info [--max-elements N] [--max-string N] FILE\n"
    "\n"
    "Prints a GGUF file's header, every metadata key (arrays as element type,\n"
    "count and first elements), the tensor table (name, type, shape, bytes) and\n"
    "a summary (tensor count, parameters, tensor bytes, file size, vocabulary size).\n"
    "\n"
    "options:\n"
    "  --max-elements N  array elements shown per key (default 4)\n"
    "  --max-string N    string bytes shown before '...' (default 80)\n"
    "  -h, --help        show this help\n";

/* Prints a string value quoted, with control bytes escaped, cut at max bytes. */
static void print_str(mope_gguf_str s, long long max) {
    uint64_t n = s.len < (uint64_t)max ? s.len : (uint64_t)max;
    putchar('"');
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n < s.len) printf("... (%" PRIu64 " bytes)", s.len);
}

static void print_num(mope_gguf_type t, const void *data, uint64_t i) {
    if (t == MOPE_GGUF_F32 || t == MOPE_GGUF_F64) printf("%.9g", mope_gguf_arr_f64(t, data, i));
    else if (t == MOPE_GGUF_BOOL) fputs(mope_gguf_arr_i64(t, data, i) ? "true" : "false", stdout);
    else if (t == MOPE_GGUF_U64) {
        uint64_t v;
        memcpy(&v, (const char *)data + 8 * i, 8);
        printf("%" PRIu64, v);
    } else printf("%" PRId64, mope_gguf_arr_i64(t, data, i));
}

static void print_kv(const mope_gguf *g, int64_t k, long long max_el, long long max_str) {
    mope_gguf_type t = mope_gguf_kv_type(g, k);
    printf("  %s: ", mope_gguf_kv_key(g, k));
    if (t == MOPE_GGUF_STRING) {
        fputs("str = ", stdout);
        print_str(mope_gguf_kv_str(g, k), max_str);
    } else if (t == MOPE_GGUF_ARRAY) {
        mope_gguf_type et;
        uint64_t n = 0;
        const void *data = NULL;
        mope_gguf_kv_arr(g, k, &et, &n, &data);
        printf("arr[%s,%" PRIu64 "] = [", mope_gguf_type_name(et), n);
        uint64_t show = n < (uint64_t)max_el ? n : (uint64_t)max_el;
        for (uint64_t i = 0; i < show; i++) {
            if (i) fputs(", ", stdout);
            if (et == MOPE_GGUF_STRING) print_str(mope_gguf_arr_str(g, k, i), max_str);
            else print_num(et, data, i);
        }
        if (show < n) fputs(show ? ", ..." : "...", stdout);
        putchar(']');
    } else {
        printf("%s = ", mope_gguf_type_name(t));
        if (t == MOPE_GGUF_F32 || t == MOPE_GGUF_F64) printf("%.9g", mope_gguf_kv_f64(g, k));
        else if (t == MOPE_GGUF_BOOL) fputs(mope_gguf_kv_i64(g, k) ? "true" : "false", stdout);
        else if (t == MOPE_GGUF_U64) {
            uint64_t v = 0;
            mope_gguf_get_u64(g, mope_gguf_kv_key(g, k), &v);
            printf("%" PRIu64, v);
        } else printf("%" PRId64, mope_gguf_kv_i64(g, k));
    }
    putchar('\n');
}

static void fmt_bytes(char *buf, size_t cap, double b) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", b, units[u]);
}

int cmd_info(int argc, char **argv) {
    const char *cmd = "info", *path = NULL, *v = NULL;
    long long max_el = 4, max_str = 80;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            return 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--max-elements", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--max-elements", v, 0, 1000000, &max_el)) return CLI_EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, NULL, "--max-string", &v))) {
            if (r < 0 || cli_parse_int(cmd, "--max-string", v, 0, 1 << 30, &max_str)) return CLI_EXIT_USAGE;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        } else if (path) {
            return cli_usage_error(cmd, "one FILE expected, got '%s' and '%s'", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage_error(cmd, "no FILE given");

    mope_error err = {0};
    mope_gguf *g = mope_gguf_open(path, &err);
    if (!g) return cli_fail_err(cmd, &err, NULL);

    size_t file_size = 0;
    mope_gguf_base(g, &file_size);
    int64_t n_kv = mope_gguf_n_kv(g), n_t = mope_gguf_n_tensors(g);
    printf("file: %s\n", path);
    printf("GGUF version %" PRIu32 ", alignment %zu, data offset %zu\n", mope_gguf_version(g),
           mope_gguf_alignment(g), mope_gguf_data_offset(g));
    printf("metadata: %" PRId64 " keys\n", n_kv);
    for (int64_t k = 0; k < n_kv; k++) print_kv(g, k, max_el, max_str);

    printf("tensors: %" PRId64 "\n", n_t);
    int64_t n_params = 0;
    uint64_t tensor_bytes = 0;
    size_t name_w = 4;
    for (int64_t i = 0; i < n_t; i++) {
        size_t l = strlen(mope_gguf_tensor_at(g, i)->name);
        name_w = l > name_w ? l : name_w;
    }
    if (n_t) printf("  %-*s  %-5s  %-24s  %s\n", (int)name_w, "name", "type", "shape", "bytes");
    for (int64_t i = 0; i < n_t; i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        char shape[128];
        int o = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->n_dims && o < (int)sizeof shape; d++)
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
        if (o < (int)sizeof shape) snprintf(shape + o, sizeof shape - (size_t)o, "]");
        printf("  %-*s  %-5s  %-24s  %zu\n", (int)name_w, t->name, mope_type_name(t->type), shape, t->nbytes);
        n_params += t->n_elements;
        tensor_bytes += t->nbytes;
    }

    char b1[32], b2[32];
    fmt_bytes(b1, sizeof b1, (double)tensor_bytes);
    fmt_bytes(b2, sizeof b2, (double)file_size);
    printf("summary:\n");
    printf("  tensors: %" PRId64 "\n", n_t);
    printf("  parameters: %" PRId64 " (%.2f M)\n", n_params, (double)n_params / 1e6);
    printf("  tensor data: %" PRIu64 " bytes (%s)\n", tensor_bytes, b1);
    printf("  file size: %zu bytes (%s)\n", file_size, b2);
    if (n_params) printf("  bits per parameter: %.2f\n", 8.0 * (double)tensor_bytes / (double)n_params);
    mope_gguf_type et;
    uint64_t n_tok = 0;
    const void *data = NULL;
    if (mope_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok, &data) == 0)
        printf("  vocabulary: %" PRIu64 " tokens\n", n_tok);
    if (n_t == 0) printf("  (no tensors: a vocabulary-only or metadata-only file)\n");
    mope_gguf_close(g);
    return 0;
}
