/* Method names, preference parsing and the small option / result helpers
 * of include/mope/method.h.  The runner itself is in method_runner.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mope/method.h"

static const struct {
    const char *name;
    mope_method_kind kind;
} NAMES[] = {
    {"mope", MOPE_METHOD_MOPE},           {"prompt", MOPE_METHOD_PROMPT},
    {"soup", MOPE_METHOD_SOUP},           {"uniform", MOPE_METHOD_UNIFORM},
    {"uniform-geo", MOPE_METHOD_UNIFORM_GEO}, {"multitask", MOPE_METHOD_MULTITASK},
    {"base", MOPE_METHOD_BASE},
};
#define N_NAMES (int)(sizeof NAMES / sizeof NAMES[0])
#define KNOWN "mope, prompt, soup, soup-delta, uniform, uniform-geo, expert:ID, multitask, base"

int mope_method_parse(const char *s, mope_method *out, mope_error *err) {
    if (!s || !out) return mope_error_set(err, MOPE_EINVAL, "method: no name given (known: " KNOWN ")");
    memset(out, 0, sizeof *out);
    out->soup_mode = MOPE_LORA_AVG_AB;
    for (int i = 0; i < N_NAMES; i++)
        if (!strcmp(s, NAMES[i].name)) {
            out->kind = NAMES[i].kind;
            return 0;
        }
    if (!strcmp(s, "soup-delta")) {
        out->kind = MOPE_METHOD_SOUP;
        out->soup_mode = MOPE_LORA_AVG_DELTA;
        return 0;
    }
    if (!strncmp(s, "expert:", 7)) {
        const char *id = s + 7;
        size_t n = strlen(id);
        if (n == 0) return mope_error_set(err, MOPE_EINVAL, "method \"%s\": no expert id after \"expert:\"", s);
        if (n >= MOPE_METHOD_ID_MAX)
            return mope_error_set(err, MOPE_EINVAL, "method \"%.80s...\": expert id longer than %d bytes", s,
                                  MOPE_METHOD_ID_MAX - 1);
        out->kind = MOPE_METHOD_EXPERT;
        memcpy(out->expert, id, n + 1);
        return 0;
    }
    return mope_error_set(err, MOPE_EINVAL, "unknown method \"%.200s\" (known: " KNOWN ")", s);
}

const char *mope_method_name(const mope_method *m, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    const char *name = "?";
    if (m) {
        for (int i = 0; i < N_NAMES; i++)
            if (NAMES[i].kind == m->kind) name = NAMES[i].name;
        if (m->kind == MOPE_METHOD_SOUP && m->soup_mode == MOPE_LORA_AVG_DELTA) name = "soup-delta";
        if (m->kind == MOPE_METHOD_EXPERT) {
            snprintf(buf, cap, "expert:%s", m->expert);
            return buf;
        }
    }
    snprintf(buf, cap, "%s", name);
    return buf;
}

/* ---- preferences ---- */

void mope_pref_free(mope_pref *p) {
    if (!p) return;
    free(p->choices);
    free(p->text);
    memset(p, 0, sizeof *p);
}

/* "P4A", "X1": letters, digits and '_', at least one digit, no lower case
 * (so the words of a free text, "concise", are never mistaken for ids). */
static bool looks_like_id(const char *s, size_t n) {
    bool digit = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isdigit(c)) digit = true;
        else if (!(isupper(c) || c == '_')) return false;
    }
    return n > 0 && digit;
}

static char *known_choices(const mope_bundle *b) {
    size_t len = 1;
    for (int i = 0; i < b->n_choices; i++) len += strlen(b->choices[i].id) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < b->n_choices; i++) {
        if (i) strcat(s, " ");
        strcat(s, b->choices[i].id);
    }
    return s;
}

typedef struct item {
    const char *s;
    size_t n;
} item;

/* Splits s at commas into trimmed items; false when an item is empty or
 * holds white space inside (then s is not an id list). */
static bool split_items(const char *s, item *items, int cap, int *n_out) {
    int n = 0;
    for (const char *p = s;;) {
        const char *e = strchr(p, ',');
        const char *end = e ? e : p + strlen(p);
        while (p < end && isspace((unsigned char)*p)) p++;
        while (end > p && isspace((unsigned char)end[-1])) end--;
        if (end == p || n == cap) return false;
        for (const char *q = p; q < end; q++)
            if (isspace((unsigned char)*q)) return false;
        items[n++] = (item){p, (size_t)(end - p)};
        if (!e) break;
        p = e + 1;
    }
    *n_out = n;
    return true;
}

static int find_choice(const mope_bundle *b, const item *it) {
    for (int i = 0; i < b->n_choices; i++)
        if (strlen(b->choices[i].id) == it->n && !memcmp(b->choices[i].id, it->s, it->n)) return i;
    return -1;
}

static int parse_ids(const mope_bundle *b, const item *items, int n, mope_pref *out, mope_error *err) {
    out->choices = malloc(sizeof(int) * (size_t)n);
    const char **ids = malloc(sizeof(char *) * (size_t)n);
    if (!out->choices || !ids) {
        free(ids);
        return mope_error_set(err, MOPE_ENOMEM, "preference: out of memory");
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int c = find_choice(b, &items[i]);
        if (c < 0) {
            char *known = known_choices(b);
            rc = mope_error_set(err, MOPE_EINVAL, "preference: unknown choice \"%.*s\" (known: %s)",
                                (int)(items[i].n > 64 ? 64 : items[i].n), items[i].s, known ? known : "?");
            free(known);
            break;
        }
        for (int j = 0; j < out->n_choices; j++) {
            if (out->choices[j] == c)
                rc = mope_error_set(err, MOPE_EINVAL, "preference: choice %s given twice", b->choices[c].id);
            else if (b->choices[out->choices[j]].dimension == b->choices[c].dimension)
                rc = mope_error_set(err, MOPE_EINVAL,
                                    "preference: choices %s and %s are of the same dimension %s (at most one each)",
                                    b->choices[out->choices[j]].id, b->choices[c].id,
                                    b->dimensions[b->choices[c].dimension].id);
            if (rc) break;
        }
        if (!rc) {
            out->choices[out->n_choices++] = c;
            ids[i] = b->choices[c].id;
        }
    }
    if (!rc) {
        /* mope_bundle_prompt on an empty instruction gives " s1 s2": the
         * sentences joined exactly as the experts' prompts join them */
        char *p = mope_bundle_prompt(b, "", ids, n, err);
        if (!p) rc = err && err->code ? err->code : MOPE_EINVAL;
        else {
            size_t skip = strspn(p, " ");
            out->text = strdup(p + skip);
            free(p);
            if (!out->text) rc = mope_error_set(err, MOPE_ENOMEM, "preference: out of memory");
        }
    }
    free(ids);
    return rc;
}

int mope_pref_parse(const mope_bundle *b, const char *s, mope_pref *out, mope_error *err) {
    if (!out) return mope_error_set(err, MOPE_EINVAL, "preference: no output");
    memset(out, 0, sizeof *out);
    if (!b) return mope_error_set(err, MOPE_EINVAL, "preference: no bundle");
    if (!s) s = "";
    const char *t = s;
    while (isspace((unsigned char)*t)) t++;
    if (!*t) {
        out->text = strdup("");
        return out->text ? 0 : mope_error_set(err, MOPE_ENOMEM, "preference: out of memory");
    }
    enum { MAX_ITEMS = 64 };
    item items[MAX_ITEMS];
    int n = 0;
    if (split_items(t, items, MAX_ITEMS, &n)) {
        bool all_known = true, any_id = false;
        for (int i = 0; i < n; i++) {
            if (find_choice(b, &items[i]) < 0) all_known = false;
            if (looks_like_id(items[i].s, items[i].n)) any_id = true;
        }
        if (all_known || any_id) {
            int rc = parse_ids(b, items, n, out, err);
            if (rc) mope_pref_free(out);
            return rc;
        }
    }
    out->free_text = true;
    out->text = strdup(t);
    return out->text ? 0 : mope_error_set(err, MOPE_ENOMEM, "preference: out of memory");
}

/* ---- options and results ---- */

void mope_runner_opts_init(mope_runner_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_batch = 4;
}

void mope_gen_opts_init(mope_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->sampler = mope_sampler_default_params();
    o->max_tokens = 128;
    o->min_weight = 0.01f;
}

void mope_method_result_free(mope_method_result *res) {
    if (!res) return;
    free(res->text);
    free(res->tokens);
    if (res->names)
        for (int k = 0; k < res->K; k++) free(res->names[k]);
    free(res->names);
    free(res->mean_weights);
    memset(res, 0, sizeof *res);
}
