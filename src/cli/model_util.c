#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "mope/lora.h"
#include "mope/model.h"
#include "mope/tokenizer.h"

int cli_model_open(const char *cmd, const char *path, int n_threads, bool want_tok, cli_model *out) {
    memset(out, 0, sizeof *out);
    out->adapter = -1;
    mope_error err = {0};
    out->model = mope_model_load(path, &err);
    if (!out->model) return cli_fail_err(cmd, &err, NULL);
    const mope_hparams *hp = mope_model_hparams(out->model);
    out->n_vocab = hp->n_vocab;
    out->n_ctx_train = hp->n_ctx_train;
    if (want_tok) {
        out->tok = mope_tokenizer_from_gguf(mope_model_gguf(out->model), &err);
        if (!out->tok) {
            cli_fail_err(cmd, &err, "reading the model's tokenizer");
            cli_model_close(out);
            return CLI_EXIT_ERROR;
        }
    }
    if (n_threads > 1) {
        out->pool = mope_pool_create(n_threads, &err);
        if (!out->pool) {
            cli_fail_err(cmd, &err, "starting threads");
            cli_model_close(out);
            return CLI_EXIT_ERROR;
        }
    }
    return 0;
}

void cli_model_close(cli_model *m) {
    mope_pool_free(m->pool);
    mope_tokenizer_free(m->tok);
    mope_model_free(m->model);
    mope_lora_free(m->lora); /* after the model, which borrows it */
    memset(m, 0, sizeof *m);
    m->adapter = -1;
}

int cli_lora_push(const char *cmd, const char **specs, int *n, const char *value) {
    if (*n >= CLI_MAX_LORA) return cli_usage_error(cmd, "--lora: at most %d adapters", CLI_MAX_LORA);
    specs[(*n)++] = value;
    return 0;
}

/* "FILE:SCALE" when the text after the last ':' is a finite number, else
 * the whole text is the file name (scale 1). */
static int split_spec(const char *cmd, const char *spec, char **file, float *scale) {
    const char *colon = strrchr(spec, ':');
    *scale = 1.0f;
    size_t flen = strlen(spec);
    if (colon && colon[1]) {
        char *end = NULL;
        errno = 0;
        double v = strtod(colon + 1, &end);
        if (!*end && !errno) {
            if (!isfinite(v) || fabs(v) > 1e6)
                return cli_usage_error(cmd, "--lora %s: the scale must be a finite number within +-1e6", spec);
            *scale = (float)v;
            flen = (size_t)(colon - spec);
        }
    }
    if (flen == 0) return cli_usage_error(cmd, "--lora '%s': no file name", spec);
    *file = strndup(spec, flen);
    if (!*file) return cli_fail(cmd, "out of memory");
    return 0;
}

int cli_model_add_loras(const char *cmd, cli_model *m, const char *const *specs, int n) {
    if (n <= 0) return 0;
    mope_error err = {0};
    mope_lora *ls[CLI_MAX_LORA] = {0};
    float scales[CLI_MAX_LORA];
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        char *file = NULL;
        if ((rc = split_spec(cmd, specs[i], &file, &scales[i]))) break;
        ls[i] = mope_lora_load(file, m->model, &err);
        if (!ls[i]) rc = cli_fail_err(cmd, &err, NULL);
        free(file);
    }
    float scale = 1.0f;
    if (!rc && n == 1) {
        m->lora = ls[0];
        ls[0] = NULL;
        scale = scales[0];
    } else if (!rc) {
        m->lora = mope_lora_average((const mope_lora *const *)ls, scales, n, MOPE_LORA_AVG_DELTA, &err);
        if (!m->lora) rc = cli_fail_err(cmd, &err, "combining the --lora adapters");
    }
    for (int i = 0; i < n; i++) mope_lora_free(ls[i]);
    if (rc) return rc;
    m->adapter = mope_model_add_adapter(m->model, m->lora, scale, &err);
    if (m->adapter < 0) {
        m->adapter = -1;
        return cli_fail_err(cmd, &err, "attaching the --lora adapter");
    }
    return 0;
}

static bool is_sep(char c) { return c == ',' || isspace((unsigned char)c); }

int cli_parse_ids(const char *cmd, const char *s, int n_vocab, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    size_t cap = 0;
    int32_t *v = NULL;
    const char *p = s;
    for (;;) {
        while (*p && is_sep(*p)) p++;
        if (!*p) break;
        const char *start = p;
        while (*p && !is_sep(*p)) p++;
        char word[32];
        size_t wl = (size_t)(p - start);
        char *end = NULL;
        long long id = -1;
        bool ok = wl < sizeof word;
        if (ok) {
            memcpy(word, start, wl);
            word[wl] = 0;
            errno = 0;
            id = strtoll(word, &end, 10);
            ok = !*end && !errno && isdigit((unsigned char)word[wl - 1]);
        }
        if (!ok) {
            free(v);
            return cli_usage_error(cmd, "--ids: '%.*s' is not a token id", (int)(wl > 40 ? 40 : wl), start);
        }
        if (id < 0 || id >= n_vocab) {
            free(v);
            return cli_usage_error(cmd, "--ids: token id %lld is out of range [0, %d)", id, n_vocab);
        }
        if ((size_t)*n == cap) {
            cap = cap ? cap * 2 : 64;
            int32_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                return cli_fail(cmd, "out of memory");
            }
            v = nv;
        }
        v[(*n)++] = (int32_t)id;
        if (*n > (1 << 24)) {
            free(v);
            return cli_usage_error(cmd, "--ids: too many ids");
        }
    }
    if (*n == 0) {
        free(v);
        return cli_usage_error(cmd, "--ids: no token ids given");
    }
    *ids = v;
    return 0;
}

int cli_parse_threads(const char *cmd, const char *s, int *out) {
    long long t = 0;
    if (cli_parse_int(cmd, "-t", s, 1, 1024, &t)) return CLI_EXIT_USAGE;
    *out = (int)t;
    return 0;
}
