#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include <cjson/cJSON.h>
#include <string.h>

#include "cli/cli.h"
#include "mope/io.h"

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mope %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_ERROR;
}

int cli_fail_err(const char *cmd, const mope_error *err, const char *context) {
    const char *msg = err && err->msg[0] ? err->msg : "unknown error";
    if (context && context[0]) fprintf(stderr, "mope %s: error: %s: %s\n", cmd, context, msg);
    else fprintf(stderr, "mope %s: error: %s\n", cmd, msg);
    return CLI_EXIT_ERROR;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mope %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nrun 'mope %s --help' for usage\n", cmd);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_flag(const char *arg, const char *short_name, const char *long_name) {
    return (short_name && strcmp(arg, short_name) == 0) || (long_name && strcmp(arg, long_name) == 0);
}

int cli_is_help(const char *arg) { return cli_flag(arg, "-h", "--help"); }

int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *short_name, const char *long_name,
            const char **value) {
    const char *a = argv[*i];
    if (long_name) {
        size_t n = strlen(long_name);
        if (strncmp(a, long_name, n) == 0 && a[n] == '=') {
            *value = a + n + 1;
            return 1;
        }
    }
    if (!cli_flag(a, short_name, long_name)) return 0;
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "option '%s' needs a value", a);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!s[0] || *end || errno == ERANGE) {
        cli_usage_error(cmd, "%s: '%s' is not an integer", opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s: %lld is out of range [%lld, %lld]", opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!s[0] || *end || errno == ERANGE || !isfinite(v)) {
        cli_usage_error(cmd, "%s: '%s' is not a number", opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s: %g is out of range [%g, %g]", opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_default_threads(void) {
    int n = mope_cpu_count();
    return n > 0 ? n : 1;
}

char *cli_read_text(const char *cmd, const char *path, size_t *len) {
    void *data = NULL;
    size_t n = 0;
    mope_error err = {0};
    if (mope_io_read_file(path, &data, &n, &err) != 0) {
        cli_fail_err(cmd, &err, NULL); /* the message names the path */
        return NULL;
    }
    if (len) *len = n;
    return data;
}

int cli_jsonl_map(const char *cmd, const char *in, const char *out, cli_jsonl_fn fn, void *ctx, long long *n_out) {
    size_t len = 0;
    char *text = cli_read_text(cmd, in, &len);
    if (!text) return CLI_EXIT_ERROR;
    char *buf = NULL;
    size_t blen = 0;
    FILE *mem = open_memstream(&buf, &blen);
    int rc = mem ? 0 : cli_fail(cmd, "out of memory");
    long long line = 0, n = 0;
    for (char *p = text; *p && !rc;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        line++;
        char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q) {
            cJSON *obj = cJSON_Parse(q);
            if (!obj || !cJSON_IsObject(obj))
                rc = cli_fail(cmd, "%s:%lld: malformed JSON (expected an object)", in, line);
            else rc = fn(ctx, obj, line);
            if (!rc) {
                char *o = cJSON_PrintUnformatted(obj);
                if (!o) rc = cli_fail(cmd, "out of memory");
                else fprintf(mem, "%s\n", o);
                free(o);
                n++;
            }
            cJSON_Delete(obj);
        }
        p = e ? e + 1 : p + strlen(p);
    }
    if (!rc && n == 0) rc = cli_fail(cmd, "%s: no records (empty file)", in);
    if (mem && fclose(mem) != 0 && !rc) rc = cli_fail(cmd, "out of memory");
    if (!rc) {
        mope_error err = {0};
        if (out) {
            if (mope_io_write_atomic(out, buf, blen, &err)) rc = cli_fail_err(cmd, &err, out);
        } else {
            fwrite(buf, 1, blen, stdout);
        }
    }
    free(buf);
    free(text);
    if (n_out) *n_out = n;
    return rc;
}
