/* Files of the evaluation: the prompts, the bundle's reference responses
 * and the generation records of an earlier (interrupted) run. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "eval/eval_internal.h"
#include "mope/io.h"

/* Calls fn for every non-blank line of a text file (NUL-terminated copy);
 * last = nothing follows the line. */
typedef int (*line_fn)(void *user, char *line, long lineno, bool last, mope_error *err);

static int for_lines(const char *path, line_fn fn, void *user, mope_error *err) {
    void *data = NULL;
    size_t n = 0;
    int rc = mope_io_read_file(path, &data, &n, err);
    if (rc) return rc;
    char *s = data;
    long lineno = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t j = i;
        while (j < n && s[j] != '\n') j++;
        lineno++;
        bool final = j + 1 >= n; /* nothing follows this line */
        size_t len = j - i;
        char *line = malloc(len + 1);
        if (!line) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            break;
        }
        memcpy(line, s + i, len);
        line[len] = 0;
        bool blank = true;
        for (size_t k = 0; k < len && blank; k++)
            if (line[k] != ' ' && line[k] != '\t' && line[k] != '\r') blank = false;
        if (!blank) rc = fn(user, line, lineno, final, err);
        free(line);
        i = j + 1;
    }
    free(data);
    return rc;
}

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

/* ---- prompts ---- */

typedef struct prompts_ctx {
    const char *path;
    int max;
    eval_prompt *p;
    int n, cap;
} prompts_ctx;

static int prompt_line(void *user, char *line, long lineno, bool last, mope_error *err) {
    (void)last;
    prompts_ctx *c = user;
    if (c->max > 0 && c->n >= c->max) return 0;
    cJSON *o = cJSON_Parse(line);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return mope_error_set(err, MOPE_EFORMAT, "%s:%ld: not a JSON object", c->path, lineno);
    }
    const char *prompt = str_field(o, "prompt"), *id = str_field(o, "id"), *concept = str_field(o, "concept");
    const cJSON *idv = cJSON_GetObjectItemCaseSensitive(o, "id");
    int rc = 0;
    char idbuf[32];
    if (!prompt || !*prompt) rc = mope_error_set(err, MOPE_EFORMAT, "%s:%ld: missing string field \"prompt\"", c->path, lineno);
    else if (idv && cJSON_IsNumber(idv)) {
        snprintf(idbuf, sizeof idbuf, "%.0f", idv->valuedouble);
        id = idbuf;
    } else if (idv && !id) {
        rc = mope_error_set(err, MOPE_EFORMAT, "%s:%ld: \"id\" must be a string or number", c->path, lineno);
    } else if (!id) {
        snprintf(idbuf, sizeof idbuf, "line-%ld", lineno);
        id = idbuf;
    }
    /* ids key the resumable records, so two prompts must not share one */
    for (int i = 0; !rc && i < c->n; i++)
        if (strcmp(c->p[i].id, id) == 0)
            rc = mope_error_set(err, MOPE_EFORMAT, "%s:%ld: duplicate id \"%s\"", c->path, lineno, id);
    if (!rc && c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        eval_prompt *q = realloc(c->p, sizeof *q * (size_t)cap);
        if (!q) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        else {
            c->p = q;
            c->cap = cap;
        }
    }
    if (!rc) {
        eval_prompt *e = &c->p[c->n];
        e->id = strdup(id);
        e->prompt = strdup(prompt);
        e->concept = concept && *concept ? strdup(concept) : NULL;
        c->n++;
        if (!e->id || !e->prompt || (concept && *concept && !e->concept))
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    cJSON_Delete(o);
    return rc;
}

int eval_prompts_read(const char *path, int max, eval_prompt **out, int *n, mope_error *err) {
    prompts_ctx c = {.path = path, .max = max};
    int rc = for_lines(path, prompt_line, &c, err);
    if (!rc && c.n == 0) rc = mope_error_set(err, MOPE_EINVAL, "%s: no prompts", path);
    if (rc) {
        eval_prompts_free(c.p, c.n);
        return rc;
    }
    *out = c.p;
    *n = c.n;
    return 0;
}

void eval_prompts_free(eval_prompt *p, int n) {
    for (int i = 0; p && i < n; i++) {
        free(p[i].id);
        free(p[i].prompt);
        free(p[i].concept);
    }
    free(p);
}

/* ---- references ---- */

typedef struct refs_ctx {
    const char *path;
    eval_ref *r;
    int n, cap;
} refs_ctx;

static int ref_line(void *user, char *line, long lineno, bool last, mope_error *err) {
    (void)last;
    refs_ctx *c = user;
    cJSON *o = cJSON_Parse(line);
    const char *prompt = str_field(o, "prompt"), *resp = str_field(o, "response");
    int rc = 0;
    if (!prompt || !resp)
        rc = mope_error_set(err, MOPE_EFORMAT, "%s:%ld: need string fields \"prompt\" and \"response\"", c->path,
                            lineno);
    if (!rc && c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        eval_ref *q = realloc(c->r, sizeof *q * (size_t)cap);
        if (!q) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        else {
            c->r = q;
            c->cap = cap;
        }
    }
    if (!rc) {
        eval_ref *e = &c->r[c->n++];
        e->prompt = strdup(prompt);
        e->response = strdup(resp);
        e->concept = dup_or_null(str_field(o, "concept"));
        e->split = dup_or_null(str_field(o, "split"));
        if (!e->prompt || !e->response) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    cJSON_Delete(o);
    return rc;
}

int eval_refs_read(const char *path, eval_ref **out, int *n, mope_error *err) {
    refs_ctx c = {.path = path};
    int rc = for_lines(path, ref_line, &c, err);
    if (rc) {
        eval_refs_free(c.r, c.n);
        return rc;
    }
    *out = c.r;
    *n = c.n;
    return 0;
}

void eval_refs_free(eval_ref *r, int n) {
    for (int i = 0; r && i < n; i++) {
        free(r[i].prompt);
        free(r[i].concept);
        free(r[i].response);
        free(r[i].split);
    }
    free(r);
}

const eval_ref *eval_ref_find(const eval_ref *r, int n, const char *prompt, const char *concept) {
    for (int i = 0; i < n; i++)
        if (strcmp(r[i].prompt, prompt) == 0) return &r[i];
    if (!concept) return NULL;
    const eval_ref *any = NULL;
    for (int i = 0; i < n; i++)
        if (r[i].concept && strcmp(r[i].concept, concept) == 0) {
            if (r[i].split && strcmp(r[i].split, "test") == 0) return &r[i];
            if (!any) any = &r[i];
        }
    return any;
}

/* ---- records ---- */

typedef struct recs_ctx {
    const char *path;
    eval_record *r;
    int n, cap, dropped;
} recs_ctx;

static double num_or_nan(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* "token_weights": {"names": [K strings], "values": [[K numbers] x T]} */
static int read_weights(const cJSON *tw, eval_record *e) {
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(tw, "names");
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(tw, "values");
    if (!cJSON_IsArray(names) || !cJSON_IsArray(vals)) return -1;
    int K = cJSON_GetArraySize(names), T = cJSON_GetArraySize(vals);
    if (K < 1 || K > 4096 || T < 0) return -1;
    e->names = calloc((size_t)K, sizeof *e->names);
    e->weights = malloc(sizeof(float) * (size_t)K * (size_t)(T ? T : 1));
    if (!e->names || !e->weights) return -1;
    e->K = K;
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, names) {
        if (!cJSON_IsString(it) || !(e->names[k++] = strdup(it->valuestring))) return -1;
    }
    int t = 0;
    cJSON_ArrayForEach(it, vals) {
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != K) return -1;
        int j = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, it) {
            e->weights[(size_t)t * (size_t)K + (size_t)j++] = cJSON_IsNumber(x) ? (float)x->valuedouble : NAN;
        }
        t++;
    }
    e->T = T;
    return 0;
}

static int rec_line(void *user, char *line, long lineno, bool last, mope_error *err) {
    recs_ctx *c = user;
    cJSON *o = cJSON_Parse(line);
    const char *id = str_field(o, "id"), *pref = str_field(o, "preference"), *method = str_field(o, "method");
    if (!id || !pref || !method) {
        cJSON_Delete(o);
        /* a crash while appending leaves at most the last line incomplete
         * (and an editor may have added the newline) */
        if (last) {
            c->dropped = 1;
            return 0;
        }
        return mope_error_set(err, MOPE_EFORMAT, "%s:%ld: not a generation record (need \"id\", \"preference\", "
                              "\"method\")", c->path, lineno);
    }
    int rc = 0;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        eval_record *q = realloc(c->r, sizeof *q * (size_t)cap);
        if (!q) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        else {
            c->r = q;
            c->cap = cap;
        }
    }
    if (!rc) {
        eval_record *e = &c->r[c->n++];
        memset(e, 0, sizeof *e);
        e->id = strdup(id);
        e->preference = strdup(pref);
        e->method = strdup(method);
        e->settings = dup_or_null(str_field(o, "settings"));
        e->models = dup_or_null(str_field(o, "models"));
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "scores");
        e->u_lab = num_or_nan(sc, "utility_labeler");
        e->u_rm = num_or_nan(sc, "utility_rm");
        const cJSON *tw = cJSON_GetObjectItemCaseSensitive(o, "token_weights");
        if (!e->id || !e->preference || !e->method) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        else if (tw && read_weights(tw, e))
            rc = mope_error_set(err, MOPE_EFORMAT, "%s:%ld: malformed \"token_weights\"", c->path, lineno);
    }
    cJSON_Delete(o);
    return rc;
}

int eval_records_read(const char *path, eval_record **out, int *n, int *dropped, mope_error *err) {
    *out = NULL;
    *n = 0;
    *dropped = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return 0;
        return mope_error_set(err, MOPE_EIO, "%s: %s", path, strerror(errno));
    }
    fclose(f);
    recs_ctx c = {.path = path};
    int rc = for_lines(path, rec_line, &c, err);
    if (rc) {
        eval_records_free(c.r, c.n);
        return rc;
    }
    *out = c.r;
    *n = c.n;
    *dropped = c.dropped;
    return 0;
}

void eval_records_free(eval_record *r, int n) {
    for (int i = 0; r && i < n; i++) {
        free(r[i].id);
        free(r[i].preference);
        free(r[i].method);
        free(r[i].settings);
        free(r[i].models);
        for (int k = 0; r[i].names && k < r[i].K; k++) free(r[i].names[k]);
        free(r[i].names);
        free(r[i].weights);
    }
    free(r);
}

int eval_join(const char *const *ids, int n, char sep, char *out, size_t cap) {
    size_t len = 0;
    if (cap) out[0] = 0;
    for (int i = 0; i < n; i++) {
        int w = i ? snprintf(out + len, cap - len, "%c%s", sep, ids[i]) : snprintf(out, cap, "%s", ids[i]);
        if (w < 0 || (size_t)w >= cap - len) return -1;
        len += (size_t)w;
    }
    return (int)len;
}
