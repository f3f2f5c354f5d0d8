/* PrefBench recipe: reading the corpus' JSONL records and prompts, and
 * writing the labelers' scores as JSON. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "mope/io.h"
#include "prefbench/recipe_internal.h"

void recipe_free_records(recipe_rec *r, int n) {
    for (int i = 0; r && i < n; i++) {
        free(r[i].prompt);
        free(r[i].concept);
        free(r[i].response);
    }
    free(r);
}

void recipe_free_strings(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int style_index(const char *s) {
    for (int i = 0; i < MOPE_PREFBENCH_N_STYLES; i++)
        if (strcmp(mope_prefbench_style_name(i), s) == 0) return i;
    return -1;
}

int recipe_read_records(const char *path, recipe_rec **out, int *n_out, mope_error *err) {
    void *data = NULL;
    size_t len = 0;
    *out = NULL;
    *n_out = 0;
    int rc = mope_io_read_file(path, &data, &len, err);
    if (rc) return rc;
    int cap = 1024, n = 0, group = -1;
    recipe_rec *r = malloc((size_t)cap * sizeof *r);
    char last_group[64] = "";
    char *line = data, *end = (char *)data + len;
    int lineno = 0;
    while (!rc && line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        lineno++;
        if (nl > line) {
            cJSON *o = cJSON_ParseWithLength(line, (size_t)(nl - line));
            const char *id = o ? jstr(o, "id") : NULL, *p = o ? jstr(o, "prompt") : NULL;
            const char *cn = o ? jstr(o, "concept") : NULL, *st = o ? jstr(o, "style") : NULL;
            const char *resp = o ? jstr(o, "response") : NULL;
            int si = st ? style_index(st) : -1;
            if (!id || !p || !cn || !resp || si < 0) {
                rc = mope_error_set(err, MOPE_EFORMAT, "%s line %d: not a PrefBench response record", path, lineno);
            } else {
                if (n == cap) {
                    recipe_rec *g = realloc(r, (size_t)(cap *= 2) * sizeof *r);
                    if (!g) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                    else r = g;
                }
                /* ids are n<offset>-v<variant>-<style>: the part before the style names the group */
                const char *dash = strrchr(id, '-');
                size_t gl = dash ? (size_t)(dash - id) : strlen(id);
                if (gl >= sizeof last_group) gl = sizeof last_group - 1;
                if (strlen(last_group) != gl || strncmp(last_group, id, gl) != 0) {
                    group++;
                    memcpy(last_group, id, gl);
                    last_group[gl] = 0;
                }
                if (!rc) {
                    r[n] = (recipe_rec){strdup(p), strdup(cn), strdup(resp), si, group};
                    n++;
                }
            }
            cJSON_Delete(o);
        }
        line = nl + 1;
    }
    free(data);
    if (rc) {
        recipe_free_records(r, n);
        return rc;
    }
    *out = r;
    *n_out = n;
    return 0;
}

int recipe_read_prompts(const char *path, int one_per_concept, char ***prompts, char ***concepts, int *n_out,
                        mope_error *err) {
    void *data = NULL;
    size_t len = 0;
    *prompts = *concepts = NULL;
    *n_out = 0;
    int rc = mope_io_read_file(path, &data, &len, err);
    if (rc) return rc;
    int cap = 256, n = 0;
    char **p = malloc((size_t)cap * sizeof *p), **cs = malloc((size_t)cap * sizeof *cs);
    char *line = data, *end = (char *)data + len;
    while (!rc && line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        if (nl > line) {
            cJSON *o = cJSON_ParseWithLength(line, (size_t)(nl - line));
            const char *pr = o ? jstr(o, "prompt") : NULL, *cn = o ? jstr(o, "concept") : NULL;
            if (!pr || !cn) rc = mope_error_set(err, MOPE_EFORMAT, "%s: not a PrefBench prompt record", path);
            else if (!one_per_concept || n == 0 || strcmp(cs[n - 1], cn) != 0) {
                if (n == cap) {
                    cap *= 2;
                    char **a = realloc(p, (size_t)cap * sizeof *p);
                    if (a) p = a;
                    char **b = realloc(cs, (size_t)cap * sizeof *cs);
                    if (b) cs = b;
                    if (!a || !b) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                }
                if (!rc) {
                    p[n] = strdup(pr);
                    cs[n] = strdup(cn);
                    n++;
                }
            }
            cJSON_Delete(o);
        }
        line = nl + 1;
    }
    free(data);
    if (rc) {
        recipe_free_strings(p, n);
        recipe_free_strings(cs, n);
        return rc;
    }
    *prompts = p;
    *concepts = cs;
    *n_out = n;
    return 0;
}


cJSON *mope_prefbench_labels_json(const mope_prefbench_labels *l) {
    static const char *const ids[6] = {"P1A", "P1B", "P2A", "P2B", "P3A", "P3B"};
    cJSON *o = cJSON_CreateObject(), *u = cJSON_CreateObject();
    bool ok = o && u;
    ok = ok && cJSON_AddNumberToObject(o, "words", l->words);
    ok = ok && cJSON_AddNumberToObject(o, "fk_grade", l->fk_grade);
    ok = ok && cJSON_AddNumberToObject(o, "rare_rate", l->rare_rate);
    ok = ok && cJSON_AddNumberToObject(o, "expertise", l->expertise);
    ok = ok && cJSON_AddNumberToObject(o, "facts", l->facts);
    ok = ok && cJSON_AddNumberToObject(o, "novel", l->novel);
    ok = ok && cJSON_AddNumberToObject(o, "informativeness", l->informativeness);
    ok = ok && cJSON_AddNumberToObject(o, "friendliness", l->friendliness);
    ok = ok && cJSON_AddBoolToObject(o, "empty", l->q.empty);
    ok = ok && cJSON_AddBoolToObject(o, "truncated", l->q.truncated);
    ok = ok && cJSON_AddBoolToObject(o, "on_topic", l->q.on_topic);
    ok = ok && cJSON_AddNumberToObject(o, "repetition", l->q.repetition);
    ok = ok && cJSON_AddNumberToObject(o, "gate", l->q.gate);
    for (int k = 0; ok && k < 6; k++) ok = cJSON_AddNumberToObject(u, ids[k], l->choice[k]) != NULL;
    if (ok) {
        cJSON_AddItemToObject(o, "utility", u);
        return o;
    }
    cJSON_Delete(u);
    cJSON_Delete(o);
    return NULL;
}
