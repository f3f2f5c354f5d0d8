/* Bundle manifests (include/mope/bundle.h): parse, validate, resolve paths,
 * write. */
#include "mope/bundle.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mope/io.h"

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

void mope_bundle_free(mope_bundle *b) {
    if (!b) return;
    free(b->dir);
    free(b->name);
    free(b->tokenizer);
    free(b->prompt_format);
    free(b->base);
    for (int i = 0; i < b->n_dimensions; i++) {
        free(b->dimensions[i].id);
        free(b->dimensions[i].name);
    }
    free(b->dimensions);
    for (int i = 0; i < b->n_choices; i++) {
        free(b->choices[i].id);
        free(b->choices[i].name);
        free(b->choices[i].text);
    }
    free(b->choices);
    for (int i = 0; i < b->n_experts; i++) {
        free(b->experts[i].id);
        free(b->experts[i].choice);
        free(b->experts[i].adapter);
        free(b->experts[i].model);
        free(b->experts[i].preference_text);
    }
    free(b->experts);
    for (int i = 0; i < b->n_rewards; i++) {
        free(b->rewards[i].choice);
        free(b->rewards[i].path);
    }
    free(b->rewards);
    free(b->references);
    free(b->pcm);
    free(b->multitask);
    free(b->info_json);
    free(b);
}

int mope_bundle_choice_index(const mope_bundle *b, const char *id) {
    if (!b || !id) return -1;
    for (int i = 0; i < b->n_choices; i++)
        if (b->choices[i].id && strcmp(b->choices[i].id, id) == 0) return i;
    return -1;
}

int mope_bundle_find_expert(const mope_bundle *b, const char *id) {
    if (!b || !id) return -1;
    for (int i = 0; i < b->n_experts; i++)
        if (b->experts[i].id && strcmp(b->experts[i].id, id) == 0) return i;
    /* an expert may also be named by the choice it serves, when only one does */
    int found = -1;
    for (int i = 0; i < b->n_experts; i++)
        if (b->experts[i].choice && strcmp(b->experts[i].choice, id) == 0) {
            if (found >= 0) return -1;
            found = i;
        }
    return found;
}

int mope_bundle_find_reward(const mope_bundle *b, const char *id) {
    if (!b || !id) return -1;
    for (int i = 0; i < b->n_rewards; i++)
        if (b->rewards[i].choice && strcmp(b->rewards[i].choice, id) == 0) return i;
    return -1;
}

/* "P1A, P1B, ..." for error messages. */
static void list_choices(const mope_bundle *b, char *out, size_t cap) {
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < b->n_choices && k + 1 < cap; i++) {
        int n = snprintf(out + k, cap - k, "%s%s", i ? " " : "", b->choices[i].id ? b->choices[i].id : "?");
        if (n < 0) break;
        k += (size_t)n;
    }
    if (k >= cap) out[cap - 1] = 0;
}

static int check_file(const char *field, const char *path, int flags, mope_error *err) {
    if (!path || (flags & MOPE_BUNDLE_NO_FILE_CHECK)) return 0;
    if (access(path, R_OK) != 0)
        return mope_error_set(err, MOPE_EIO, "%s: cannot read %s: %s", field, path, strerror(errno));
    return 0;
}

int mope_bundle_validate(const mope_bundle *b, int flags, mope_error *err) {
    if (!b) return mope_error_set(err, MOPE_EINVAL, "no bundle");
    if (!b->name || !b->name[0]) return mope_error_set(err, MOPE_EINVAL, "name: missing or empty");
    if (!b->tokenizer) return mope_error_set(err, MOPE_EINVAL, "tokenizer: missing");
    if ((int)b->template_id < 0 || b->template_id >= MOPE_CHAT_COUNT)
        return mope_error_set(err, MOPE_EINVAL, "template: out of range");
    if (b->n_dimensions < 1 || b->n_choices < 1)
        return mope_error_set(err, MOPE_EINVAL, "preferences: no dimensions or choices declared");
    for (int d = 0; d < b->n_dimensions; d++) {
        const mope_bundle_dimension *dm = &b->dimensions[d];
        if (!dm->id || !dm->id[0]) return mope_error_set(err, MOPE_EINVAL, "preferences.dimensions[%d].id: missing", d);
        for (int e = 0; e < d; e++)
            if (strcmp(b->dimensions[e].id, dm->id) == 0)
                return mope_error_set(err, MOPE_EINVAL, "preferences.dimensions[%d].id: \"%s\" declared twice", d,
                                      dm->id);
        if (dm->n_choices < 1 || dm->first_choice < 0 || dm->first_choice + dm->n_choices > b->n_choices)
            return mope_error_set(err, MOPE_EINVAL, "preferences.dimensions[%d] (%s): no choices", d, dm->id);
    }
    for (int c = 0; c < b->n_choices; c++) {
        const mope_bundle_choice *ch = &b->choices[c];
        if (!ch->id || !ch->id[0]) return mope_error_set(err, MOPE_EINVAL, "preference choice %d: missing id", c);
        if (!ch->text || !ch->text[0])
            return mope_error_set(err, MOPE_EINVAL, "preference choice %s: missing text", ch->id);
        if (ch->dimension < 0 || ch->dimension >= b->n_dimensions)
            return mope_error_set(err, MOPE_EINVAL, "preference choice %s: bad dimension", ch->id);
        if (mope_bundle_choice_index(b, ch->id) != c)
            return mope_error_set(err, MOPE_EINVAL, "preferences: choice \"%s\" declared twice", ch->id);
    }
    char known[256];
    list_choices(b, known, sizeof known);
    int rc;
    if ((rc = check_file("tokenizer", b->tokenizer, flags, err))) return rc;
    if ((rc = check_file("base", b->base, flags, err))) return rc;
    for (int i = 0; i < b->n_experts; i++) {
        const mope_bundle_expert *x = &b->experts[i];
        if (!x->id || !x->id[0]) return mope_error_set(err, MOPE_EINVAL, "experts[%d].id: missing or empty", i);
        for (int j = 0; j < i; j++)
            if (strcmp(b->experts[j].id, x->id) == 0)
                return mope_error_set(err, MOPE_EINVAL, "experts[%d].id: duplicate expert \"%s\" (also experts[%d])",
                                      i, x->id, j);
        if (!x->choice) return mope_error_set(err, MOPE_EINVAL, "experts[%d].choice: missing", i);
        if (mope_bundle_choice_index(b, x->choice) < 0)
            return mope_error_set(err, MOPE_EINVAL, "experts[%d].choice: unknown choice \"%s\" (known: %s)", i,
                                  x->choice, known);
        if (!!x->adapter == !!x->model)
            return mope_error_set(err, MOPE_EINVAL, "experts[%d] (%s): give exactly one of \"adapter\" and \"model\"",
                                  i, x->id);
        if (x->adapter && !b->base)
            return mope_error_set(err, MOPE_EINVAL, "experts[%d] (%s): a LoRA adapter needs \"base\"", i, x->id);
        char field[64];
        snprintf(field, sizeof field, "experts[%d].%s", i, x->adapter ? "adapter" : "model");
        if ((rc = check_file(field, x->adapter ? x->adapter : x->model, flags, err))) return rc;
    }
    for (int i = 0; i < b->n_rewards; i++) {
        const mope_bundle_reward *r = &b->rewards[i];
        if (!r->choice) return mope_error_set(err, MOPE_EINVAL, "reward_models[%d].choice: missing", i);
        if (mope_bundle_choice_index(b, r->choice) < 0)
            return mope_error_set(err, MOPE_EINVAL, "reward_models[%d].choice: unknown choice \"%s\" (known: %s)", i,
                                  r->choice, known);
        if (mope_bundle_find_reward(b, r->choice) != i)
            return mope_error_set(err, MOPE_EINVAL, "reward_models[%d].choice: a second reward model for \"%s\"", i,
                                  r->choice);
        if (!r->path) return mope_error_set(err, MOPE_EINVAL, "reward_models[%d].path: missing", i);
        char field[64];
        snprintf(field, sizeof field, "reward_models[%d].path", i);
        if ((rc = check_file(field, r->path, flags, err))) return rc;
    }
    if ((rc = check_file("references", b->references, flags, err))) return rc;
    if ((rc = check_file("pcm", b->pcm, flags, err))) return rc;
    if ((rc = check_file("multitask", b->multitask, flags, err))) return rc;
    return 0;
}

/* ---- parsing ---- */

typedef struct parser {
    const char *dir;
    mope_error *err;
} parser;

static char *resolve(const parser *p, const char *path) {
    if (path[0] == '/' || !p->dir || !p->dir[0] || strcmp(p->dir, ".") == 0) return strdup(path);
    size_t n = strlen(p->dir) + strlen(path) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", p->dir, path);
    return s;
}

/* Checks obj has only the listed keys. */
static int only_keys(const cJSON *obj, const char *where, const char *const *keys, mope_error *err) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = 0;
        for (int k = 0; keys[k]; k++)
            if (strcmp(it->string, keys[k]) == 0) ok = 1;
        if (!ok) {
            char list[256] = "";
            size_t n = 0;
            for (int k = 0; keys[k] && n + 1 < sizeof list; k++) {
                int w = snprintf(list + n, sizeof list - n, "%s%s", k ? ", " : "", keys[k]);
                if (w < 0) break;
                n += (size_t)w;
            }
            return mope_error_set(err, MOPE_EFORMAT, "%s: unknown key \"%s\" (known: %s)", where, it->string, list);
        }
    }
    return 0;
}

/* A string field: required -> error when absent; null counts as absent. */
static int get_str(const cJSON *obj, const char *key, const char *where, bool required, const char **out,
                   mope_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required) return mope_error_set(err, MOPE_EFORMAT, "%s%s%s: missing", where, where[0] ? "." : "", key);
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return mope_error_set(err, MOPE_EFORMAT, "%s%s%s: must be a string", where, where[0] ? "." : "", key);
    if (!v->valuestring[0])
        return mope_error_set(err, MOPE_EFORMAT, "%s%s%s: empty string", where, where[0] ? "." : "", key);
    *out = v->valuestring;
    return 0;
}

/* A path field, resolved; *out NULL when absent and not required. */
static int get_path(const parser *p, const cJSON *obj, const char *key, const char *where, bool required,
                    char **out) {
    const char *s;
    int rc = get_str(obj, key, where, required, &s, p->err);
    *out = NULL;
    if (rc || !s) return rc;
    if (!(*out = resolve(p, s))) return mope_error_set(p->err, MOPE_ENOMEM, "out of memory");
    return 0;
}

static int parse_preferences(const parser *p, const cJSON *prefs, mope_bundle *b) {
    mope_error *err = p->err;
    if (!cJSON_IsObject(prefs)) return mope_error_set(err, MOPE_EFORMAT, "preferences: must be an object");
    static const char *const pkeys[] = {"dimensions", "source", NULL};
    int rc = only_keys(prefs, "preferences", pkeys, err);
    if (rc) return rc;
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(prefs, "dimensions");
    if (!cJSON_IsArray(dims) || cJSON_GetArraySize(dims) < 1)
        return mope_error_set(err, MOPE_EFORMAT, "preferences.dimensions: must be a non-empty array");
    int nd = cJSON_GetArraySize(dims), nc = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, dims) {
        const cJSON *ch = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "choices") : NULL;
        nc += cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    }
    b->dimensions = calloc((size_t)nd, sizeof *b->dimensions);
    b->choices = calloc(nc > 0 ? (size_t)nc : 1, sizeof *b->choices);
    if (!b->dimensions || !b->choices) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int di = 0;
    cJSON_ArrayForEach(d, dims) {
        char where[64];
        snprintf(where, sizeof where, "preferences.dimensions[%d]", di);
        if (!cJSON_IsObject(d)) return mope_error_set(err, MOPE_EFORMAT, "%s: must be an object", where);
        static const char *const dkeys[] = {"id", "name", "choices", NULL};
        if ((rc = only_keys(d, where, dkeys, err))) return rc;
        const char *id, *name;
        if ((rc = get_str(d, "id", where, true, &id, err)) || (rc = get_str(d, "name", where, false, &name, err)))
            return rc;
        mope_bundle_dimension *dm = &b->dimensions[di];
        dm->id = strdup(id);
        dm->name = dupstr(name);
        dm->first_choice = b->n_choices;
        b->n_dimensions = di + 1;
        const cJSON *chs = cJSON_GetObjectItemCaseSensitive(d, "choices");
        if (!cJSON_IsArray(chs) || cJSON_GetArraySize(chs) < 1)
            return mope_error_set(err, MOPE_EFORMAT, "%s.choices: must be a non-empty array", where);
        const cJSON *c;
        int ci = 0;
        cJSON_ArrayForEach(c, chs) {
            char cw[96];
            snprintf(cw, sizeof cw, "%s.choices[%d]", where, ci);
            if (!cJSON_IsObject(c)) return mope_error_set(err, MOPE_EFORMAT, "%s: must be an object", cw);
            static const char *const ckeys[] = {"id", "name", "text", NULL};
            if ((rc = only_keys(c, cw, ckeys, err))) return rc;
            const char *cid, *cname, *text;
            if ((rc = get_str(c, "id", cw, true, &cid, err)) || (rc = get_str(c, "name", cw, false, &cname, err)) ||
                (rc = get_str(c, "text", cw, true, &text, err)))
                return rc;
            if (mope_bundle_choice_index(b, cid) >= 0)
                return mope_error_set(err, MOPE_EFORMAT, "%s.id: choice \"%s\" declared twice", cw, cid);
            mope_bundle_choice *bc = &b->choices[b->n_choices++];
            bc->id = strdup(cid);
            bc->name = dupstr(cname);
            bc->text = strdup(text);
            bc->dimension = di;
            dm->n_choices++;
            ci++;
        }
        di++;
    }
    return 0;
}

static int parse_root(const parser *p, const cJSON *root, mope_bundle *b) {
    mope_error *err = p->err;
    if (!cJSON_IsObject(root)) return mope_error_set(err, MOPE_EFORMAT, "the manifest must be a JSON object");
    static const char *const keys[] = {"format",     "version",       "name",       "tokenizer",  "template",
                                       "prompt_format", "base",       "preferences", "experts",   "reward_models",
                                       "references", "pcm",           "multitask",  "info",       NULL};
    int rc = only_keys(root, "manifest", keys, err);
    if (rc) return rc;
    const char *fmt, *name, *tmpl, *pf;
    if ((rc = get_str(root, "format", "", true, &fmt, err))) return rc;
    if (strcmp(fmt, MOPE_BUNDLE_FORMAT) != 0)
        return mope_error_set(err, MOPE_EFORMAT, "format: \"%s\" is not \"%s\"", fmt, MOPE_BUNDLE_FORMAT);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(ver)) return mope_error_set(err, MOPE_EFORMAT, "version: missing or not a number");
    if (ver->valuedouble != MOPE_BUNDLE_VERSION)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "version: %g is not supported (this mope reads version %d)",
                              ver->valuedouble, MOPE_BUNDLE_VERSION);
    if ((rc = get_str(root, "name", "", true, &name, err))) return rc;
    b->name = strdup(name);
    if ((rc = get_path(p, root, "tokenizer", "", true, &b->tokenizer))) return rc;
    if ((rc = get_str(root, "template", "", true, &tmpl, err))) return rc;
    mope_error e2 = {0};
    int t = mope_chat_from_name(tmpl, &e2);
    if (t < 0) return mope_error_set(err, MOPE_EFORMAT, "template: %s", e2.msg);
    b->template_id = (mope_chat_template)t;
    if ((rc = get_str(root, "prompt_format", "", false, &pf, err))) return rc;
    b->prompt_format = dupstr(pf);
    if ((rc = get_path(p, root, "base", "", false, &b->base))) return rc;
    const cJSON *prefs = cJSON_GetObjectItemCaseSensitive(root, "preferences");
    if (!prefs) return mope_error_set(err, MOPE_EFORMAT, "preferences: missing");
    if ((rc = parse_preferences(p, prefs, b))) return rc;

    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "experts");
    if (!cJSON_IsArray(ex)) return mope_error_set(err, MOPE_EFORMAT, "experts: missing or not an array");
    int n = cJSON_GetArraySize(ex);
    if (n < 1) return mope_error_set(err, MOPE_EFORMAT, "experts: empty");
    if (!(b->experts = calloc((size_t)n, sizeof *b->experts))) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, ex) {
        char where[48];
        int i = b->n_experts;
        snprintf(where, sizeof where, "experts[%d]", i);
        if (!cJSON_IsObject(it)) return mope_error_set(err, MOPE_EFORMAT, "%s: must be an object", where);
        static const char *const ekeys[] = {"id", "choice", "dimension", "adapter", "model", "preference_text", NULL};
        if ((rc = only_keys(it, where, ekeys, err))) return rc;
        mope_bundle_expert *x = &b->experts[b->n_experts++];
        const char *id, *choice, *dim, *text;
        if ((rc = get_str(it, "id", where, true, &id, err)) || (rc = get_str(it, "choice", where, true, &choice, err)) ||
            (rc = get_str(it, "dimension", where, false, &dim, err)) ||
            (rc = get_str(it, "preference_text", where, false, &text, err)))
            return rc;
        x->id = strdup(id);
        x->choice = strdup(choice);
        x->preference_text = dupstr(text);
        if ((rc = get_path(p, it, "adapter", where, false, &x->adapter)) ||
            (rc = get_path(p, it, "model", where, false, &x->model)))
            return rc;
        x->choice_index = mope_bundle_choice_index(b, choice);
        if (dim && x->choice_index >= 0 && strcmp(b->dimensions[b->choices[x->choice_index].dimension].id, dim) != 0)
            return mope_error_set(err, MOPE_EFORMAT, "%s.dimension: \"%s\" but choice %s belongs to %s", where, dim,
                                  choice, b->dimensions[b->choices[x->choice_index].dimension].id);
    }

    const cJSON *rm = cJSON_GetObjectItemCaseSensitive(root, "reward_models");
    if (rm && !cJSON_IsNull(rm)) {
        if (!cJSON_IsArray(rm)) return mope_error_set(err, MOPE_EFORMAT, "reward_models: not an array");
        n = cJSON_GetArraySize(rm);
        if (n > 0 && !(b->rewards = calloc((size_t)n, sizeof *b->rewards)))
            return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        cJSON_ArrayForEach(it, rm) {
            char where[48];
            snprintf(where, sizeof where, "reward_models[%d]", b->n_rewards);
            if (!cJSON_IsObject(it)) return mope_error_set(err, MOPE_EFORMAT, "%s: must be an object", where);
            static const char *const rkeys[] = {"choice", "path", NULL};
            if ((rc = only_keys(it, where, rkeys, err))) return rc;
            mope_bundle_reward *r = &b->rewards[b->n_rewards++];
            const char *choice;
            if ((rc = get_str(it, "choice", where, true, &choice, err))) return rc;
            r->choice = strdup(choice);
            r->choice_index = mope_bundle_choice_index(b, choice);
            if ((rc = get_path(p, it, "path", where, true, &r->path))) return rc;
        }
    }
    if ((rc = get_path(p, root, "references", "", false, &b->references)) ||
        (rc = get_path(p, root, "pcm", "", false, &b->pcm)) ||
        (rc = get_path(p, root, "multitask", "", false, &b->multitask)))
        return rc;
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(root, "info");
    if (info && !cJSON_IsNull(info)) {
        if (!cJSON_IsObject(info)) return mope_error_set(err, MOPE_EFORMAT, "info: must be an object");
        if (!(b->info_json = cJSON_PrintUnformatted(info))) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    return 0;
}

mope_bundle *mope_bundle_parse(const char *json, size_t len, const char *dir, const char *name, int flags,
                               mope_error *err) {
    if (!name) name = "bundle";
    if (!json) {
        mope_error_set(err, MOPE_EINVAL, "%s: no data", name);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        mope_error_set(err, MOPE_EFORMAT, "%s: malformed JSON near byte %zu", name, off);
        return NULL;
    }
    mope_bundle *b = calloc(1, sizeof *b);
    if (!b) {
        cJSON_Delete(root);
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    b->dir = strdup(dir && dir[0] ? dir : ".");
    parser p = {b->dir, err};
    int rc = b->dir ? parse_root(&p, root, b) : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    cJSON_Delete(root);
    if (!rc) rc = mope_bundle_validate(b, flags, err);
    if (rc) {
        mope_error_prefix(err, "%s", name);
        mope_bundle_free(b);
        return NULL;
    }
    return b;
}

mope_bundle *mope_bundle_load(const char *path, int flags, mope_error *err) {
    if (!path) {
        mope_error_set(err, MOPE_EINVAL, "no bundle path");
        return NULL;
    }
    void *data = NULL;
    size_t n = 0;
    if (mope_io_read_file_max(path, 16u << 20, &data, &n, err) != 0) {
        mope_error_prefix(err, "bundle %s", path);
        return NULL;
    }
    char *dir = strdup(path);
    if (!dir) {
        free(data);
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    mope_bundle *b = mope_bundle_parse(data, n, dir, path, flags, err);
    free(dir);
    free(data);
    return b;
}

/* ---- writing ---- */

/* path relative to dir when it lies inside it. */
static const char *relative(const char *dir, const char *path) {
    size_t n = strlen(dir);
    if (strcmp(dir, ".") == 0 && path[0] != '/') return path;
    if (n && strncmp(path, dir, n) == 0 && path[n] == '/') return path + n + 1;
    return path;
}

static int add_str(cJSON *obj, const char *key, const char *v) {
    if (!v) return 0;
    return cJSON_AddStringToObject(obj, key, v) ? 0 : -1;
}

int mope_bundle_save(const mope_bundle *b, const char *path, int flags, mope_error *err) {
    int rc = mope_bundle_validate(b, flags, err);
    if (rc) return rc;
    if (!path) return mope_error_set(err, MOPE_EINVAL, "no output path");
    char *dir = strdup(path);
    if (!dir) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    cJSON *root = cJSON_CreateObject();
    int bad = !root;
    bad |= add_str(root, "format", MOPE_BUNDLE_FORMAT);
    bad |= !cJSON_AddNumberToObject(root, "version", MOPE_BUNDLE_VERSION);
    bad |= add_str(root, "name", b->name);
    bad |= add_str(root, "tokenizer", relative(dir, b->tokenizer));
    bad |= add_str(root, "template", mope_chat_name(b->template_id));
    bad |= add_str(root, "prompt_format", b->prompt_format);
    if (b->base) bad |= add_str(root, "base", relative(dir, b->base));
    cJSON *prefs = cJSON_AddObjectToObject(root, "preferences");
    cJSON *dims = prefs ? cJSON_AddArrayToObject(prefs, "dimensions") : NULL;
    bad |= !dims;
    for (int d = 0; !bad && d < b->n_dimensions; d++) {
        const mope_bundle_dimension *dm = &b->dimensions[d];
        cJSON *jd = cJSON_CreateObject();
        bad |= !jd || !cJSON_AddItemToArray(dims, jd);
        if (bad) break;
        bad |= add_str(jd, "id", dm->id) | add_str(jd, "name", dm->name);
        cJSON *chs = cJSON_AddArrayToObject(jd, "choices");
        bad |= !chs;
        for (int c = dm->first_choice; !bad && c < dm->first_choice + dm->n_choices; c++) {
            cJSON *jc = cJSON_CreateObject();
            bad |= !jc || !cJSON_AddItemToArray(chs, jc);
            if (bad) break;
            bad |= add_str(jc, "id", b->choices[c].id) | add_str(jc, "name", b->choices[c].name) |
                   add_str(jc, "text", b->choices[c].text);
        }
    }
    cJSON *ex = cJSON_AddArrayToObject(root, "experts");
    bad |= !ex;
    for (int i = 0; !bad && i < b->n_experts; i++) {
        const mope_bundle_expert *x = &b->experts[i];
        cJSON *je = cJSON_CreateObject();
        bad |= !je || !cJSON_AddItemToArray(ex, je);
        if (bad) break;
        bad |= add_str(je, "id", x->id) | add_str(je, "choice", x->choice);
        bad |= add_str(je, "dimension", b->dimensions[b->choices[x->choice_index].dimension].id);
        if (x->adapter) bad |= add_str(je, "adapter", relative(dir, x->adapter));
        if (x->model) bad |= add_str(je, "model", relative(dir, x->model));
        bad |= add_str(je, "preference_text", x->preference_text);
    }
    cJSON *rm = cJSON_AddArrayToObject(root, "reward_models");
    bad |= !rm;
    for (int i = 0; !bad && i < b->n_rewards; i++) {
        cJSON *jr = cJSON_CreateObject();
        bad |= !jr || !cJSON_AddItemToArray(rm, jr);
        if (bad) break;
        bad |= add_str(jr, "choice", b->rewards[i].choice) | add_str(jr, "path", relative(dir, b->rewards[i].path));
    }
    if (b->references) bad |= add_str(root, "references", relative(dir, b->references));
    if (!bad) bad |= !(b->pcm ? cJSON_AddStringToObject(root, "pcm", relative(dir, b->pcm))
                              : cJSON_AddNullToObject(root, "pcm"));
    if (!bad) bad |= !(b->multitask ? cJSON_AddStringToObject(root, "multitask", relative(dir, b->multitask))
                                    : cJSON_AddNullToObject(root, "multitask"));
    if (!bad && b->info_json) {
        cJSON *info = cJSON_Parse(b->info_json);
        if (!info || !cJSON_IsObject(info)) {
            cJSON_Delete(info);
            cJSON_Delete(root);
            free(dir);
            return mope_error_set(err, MOPE_EINVAL, "info: not a JSON object");
        }
        bad |= !cJSON_AddItemToObject(root, "info", info);
    }
    char *text = bad ? NULL : cJSON_Print(root);
    cJSON_Delete(root);
    free(dir);
    if (!text) return mope_error_set(err, MOPE_ENOMEM, "out of memory building the manifest");
    size_t n = strlen(text);
    char *buf = realloc(text, n + 2);
    if (!buf) {
        free(text);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    buf[n] = '\n';
    rc = mope_io_write_atomic(path, buf, n + 1, err);
    free(buf);
    return rc;
}

char *mope_bundle_prompt(const mope_bundle *b, const char *instruction, const char *const *ids, int n,
                         mope_error *err) {
    if (!b || !instruction || (n > 0 && !ids) || n < 0) {
        mope_error_set(err, MOPE_EINVAL, "bad arguments");
        return NULL;
    }
    size_t len = strlen(instruction) + 1;
    int idx[64];
    if (n > 64) {
        mope_error_set(err, MOPE_EINVAL, "too many choices (%d)", n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if ((idx[i] = mope_bundle_choice_index(b, ids[i])) < 0) {
            char known[256];
            list_choices(b, known, sizeof known);
            mope_error_set(err, MOPE_EINVAL, "unknown preference choice \"%s\" (known: %s)", ids[i] ? ids[i] : "(null)",
                           known);
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (b->choices[idx[j]].dimension == b->choices[idx[i]].dimension) {
                mope_error_set(err, MOPE_EINVAL, "choices %s and %s are of the same dimension %s", ids[j], ids[i],
                               b->dimensions[b->choices[idx[i]].dimension].id);
                return NULL;
            }
        len += strlen(b->choices[idx[i]].text) + 1;
    }
    char *s = malloc(len);
    if (!s) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    size_t k = (size_t)snprintf(s, len, "%s", instruction);
    for (int i = 0; i < n; i++) k += (size_t)snprintf(s + k, len - k, " %s", b->choices[idx[i]].text);
    return s;
}
