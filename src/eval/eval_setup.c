/* Setting up an evaluation run: which combinations and methods, checked
 * against the bundle before any model is loaded, so a typo fails at once. */
#include <stdio.h>
#include <stdlib.h>

#include "eval/eval_run_internal.h"

void eval_note(eval_run *r, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (r->o->note) r->o->note(r->o->log_user, line);
    char **n = realloc(r->notes, sizeof *n * (size_t)(r->n_notes + 1));
    if (!n) return; /* a lost note is not worth failing the run */
    r->notes = n;
    if ((r->notes[r->n_notes] = strdup(line))) r->n_notes++;
}

static const char *known_choices(const mope_bundle *b, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < b->n_choices && len + 1 < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s", i ? " " : "", b->choices[i].id);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
    return buf;
}

static int add_combo(eval_run *r, const int *choices, int n, mope_error *err) {
    if (r->nc == r->cap_c) {
        int cap = r->cap_c ? 2 * r->cap_c : 16;
        eval_combo *c = realloc(r->c, sizeof *c * (size_t)cap);
        if (!c) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
        r->c = c;
        r->cap_c = cap;
    }
    eval_combo *c = &r->c[r->nc];
    memset(c, 0, sizeof *c);
    const char *ids[EVAL_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        c->choices[i] = choices[i];
        ids[i] = r->b->choices[choices[i]].id;
    }
    c->n = n;
    if (eval_join(ids, n, '+', c->name, sizeof c->name) < 0 || eval_join(ids, n, ',', c->pref, sizeof c->pref) < 0)
        return mope_error_set(err, MOPE_EINVAL, "combination: choice ids too long");
    for (int i = 0; i < r->nc; i++)
        if (strcmp(r->c[i].name, c->name) == 0)
            return mope_error_set(err, MOPE_EINVAL, "combination %s given twice", c->name);
    /* the seed depends on the combination's name, not its position, so
     * selecting other combinations does not change this one's samples */
    uint64_t h = 1469598103934665603ull;
    for (const char *s = c->name; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    mope_rng rng;
    mope_rng_seed(&rng, r->o->sampler.seed ^ h);
    c->seed = mope_rng_u64(&rng) >> 1;
    r->nc++;
    return 0;
}

/* One combination written as choice ids between '+', ',' or spaces. */
static int parse_combo(eval_run *r, const char *s, mope_error *err) {
    const mope_bundle *b = r->b;
    int ch[EVAL_MAX_DIMS], n = 0;
    char buf[256], known[1024];
    if (!s || strlen(s) >= sizeof buf) return mope_error_set(err, MOPE_EINVAL, "combination: missing or too long");
    strcpy(buf, s);
    for (char *save = NULL, *t = strtok_r(buf, "+, \t", &save); t; t = strtok_r(NULL, "+, \t", &save)) {
        int c = mope_bundle_choice_index(b, t);
        if (c < 0)
            return mope_error_set(err, MOPE_EINVAL, "combination \"%s\": unknown choice \"%s\" (known: %s)", s, t,
                                  known_choices(b, known, sizeof known));
        for (int i = 0; i < n; i++)
            if (b->choices[ch[i]].dimension == b->choices[c].dimension)
                return mope_error_set(err, MOPE_EINVAL, "combination \"%s\": two choices of dimension %s", s,
                                      b->dimensions[b->choices[c].dimension].id);
        if (n == EVAL_MAX_DIMS) return mope_error_set(err, MOPE_EINVAL, "combination \"%s\": too many choices", s);
        ch[n++] = c;
    }
    if (n == 0) return mope_error_set(err, MOPE_EINVAL, "combination \"%s\": no choice ids", s);
    return add_combo(r, ch, n, err);
}

int eval_setup_combos(eval_run *r, mope_error *err) {
    const mope_bundle *b = r->b;
    const mope_eval_opts *o = r->o;
    if (o->combos && o->n_combos > 0) {
        for (int i = 0; i < o->n_combos; i++) {
            int rc = parse_combo(r, o->combos[i], err);
            if (rc) return rc;
        }
        return 0;
    }
    int D = b->n_dimensions;
    if (D < 1 || D > EVAL_MAX_DIMS)
        return mope_error_set(err, MOPE_EINVAL, "bundle has %d preference dimensions (need 1..%d)", D, EVAL_MAX_DIMS);
    /* every full combination, the first dimension varying slowest */
    int digit[EVAL_MAX_DIMS] = {0}, ch[EVAL_MAX_DIMS];
    for (;;) {
        for (int d = 0; d < D; d++) ch[d] = b->dimensions[d].first_choice + digit[d];
        int rc = add_combo(r, ch, D, err);
        if (rc) return rc;
        int d = D - 1;
        while (d >= 0 && ++digit[d] >= b->dimensions[d].n_choices) digit[d--] = 0;
        if (d < 0) break;
        if (r->nc > 4096) return mope_error_set(err, MOPE_ERANGE, "bundle has more than 4096 combinations");
    }
    return 0;
}

static int push_method(eval_run *r, const char *name, const mope_method *m, int role, int topk, int choice,
                       mope_error *err) {
    for (int i = 0; i < r->nm; i++)
        if (strcmp(r->m[i].name, name) == 0) return mope_error_set(err, MOPE_EINVAL, "method %s given twice", name);
    eval_method *x = realloc(r->m, sizeof *x * (size_t)(r->nm + 1));
    if (!x) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    r->m = x;
    x = &r->m[r->nm++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->m = *m;
    x->role = (unsigned char)role;
    x->topk = topk;
    x->choice = choice;
    return 0;
}

static bool all_adapters(const mope_bundle *b) {
    for (int i = 0; i < b->n_experts; i++)
        if (!b->experts[i].adapter) return false;
    return b->n_experts > 0;
}

/* One method by name; "experts" adds every expert of a choice. */
static int add_named(eval_run *r, const char *s, bool explicit, mope_error *err) {
    const mope_bundle *b = r->b;
    if (strcmp(s, "experts") == 0) {
        for (int c = 0; c < b->n_choices; c++) {
            int e = mope_bundle_find_expert(b, b->choices[c].id);
            if (e < 0) continue;
            char name[96];
            snprintf(name, sizeof name, "expert:%s", b->choices[c].id);
            mope_method m;
            int rc = mope_method_parse(name, &m, err);
            if (!rc) rc = push_method(r, name, &m, MOPE_EVAL_ROLE_BASELINE, 0, c, err);
            if (rc) return rc;
        }
        return 0;
    }
    mope_method m;
    int rc = mope_method_parse(s, &m, err);
    if (rc) return rc;
    int choice = -1;
    char name[96];
    mope_method_name(&m, name, sizeof name);
    if (m.kind == MOPE_METHOD_EXPERT) {
        int e = mope_bundle_find_expert(b, m.expert);
        if (e < 0) return mope_error_set(err, MOPE_EINVAL, "method %s: the bundle has no expert \"%s\"", s, m.expert);
        choice = b->experts[e].choice_index;
    } else if (m.kind == MOPE_METHOD_MOPE && !b->pcm) {
        if (explicit) return mope_error_set(err, MOPE_EINVAL, "method mope: the bundle has no PCM");
        eval_note(r, "method mope skipped: the bundle has no PCM");
        return 0;
    } else if (m.kind == MOPE_METHOD_MULTITASK && !b->multitask) {
        if (explicit) return mope_error_set(err, MOPE_EINVAL, "method multitask: the bundle has no multitask model");
        return 0;
    } else if (m.kind == MOPE_METHOD_SOUP && !all_adapters(b)) {
        if (explicit)
            return mope_error_set(err, MOPE_EINVAL, "method %s: needs experts that are LoRA adapters of one base", s);
        eval_note(r, "method soup skipped: the experts are not all LoRA adapters");
        return 0;
    }
    return push_method(r, name, &m, MOPE_EVAL_ROLE_BASELINE, 0, choice, err);
}

int eval_setup_methods(eval_run *r, mope_error *err) {
    const mope_eval_opts *o = r->o;
    int rc = 0;
    if (o->methods && o->n_methods > 0) {
        for (int i = 0; !rc && i < o->n_methods; i++) rc = add_named(r, o->methods[i], true, err);
    } else {
        static const char *const defaults[] = {"mope", "prompt", "soup", "uniform", "uniform-geo", "experts",
                                               "multitask"};
        for (size_t i = 0; !rc && i < sizeof defaults / sizeof defaults[0]; i++)
            rc = add_named(r, defaults[i], false, err);
    }
    if (rc) return rc;
    /* the target: named, else mope when it runs */
    const char *t = o->target;
    int ti = -1;
    if (t) {
        mope_method m;
        char name[96];
        if ((rc = mope_method_parse(t, &m, err))) return mope_error_prefix(err, "target");
        mope_method_name(&m, name, sizeof name);
        for (int i = 0; i < r->nm; i++)
            if (strcmp(r->m[i].name, name) == 0) ti = i;
        if (ti < 0) {
            if ((rc = add_named(r, t, true, err))) return rc;
            ti = r->nm - 1;
        }
    } else {
        for (int i = 0; i < r->nm; i++)
            if (r->m[i].m.kind == MOPE_METHOD_MOPE) ti = i;
        if (ti < 0) eval_note(r, "no target method (mope did not run): win rates are not computed; see --target");
    }
    if (r->nm == 0) return mope_error_set(err, MOPE_EINVAL, "no method to evaluate");
    if (ti >= 0) r->m[ti].role = MOPE_EVAL_ROLE_TARGET;
    if (o->topk_study) {
        if (ti < 0) {
            eval_note(r, "top-k study skipped: no target method");
            return 0;
        }
        static const int def_k[] = {1, 5, 20};
        const int *ks = o->topk_ks && o->n_topk > 0 ? o->topk_ks : def_k;
        int nk = o->topk_ks && o->n_topk > 0 ? o->n_topk : 3;
        eval_method tm = r->m[ti];
        for (int i = 0; i < nk; i++) {
            if (ks[i] < 1) return mope_error_set(err, MOPE_EINVAL, "top-k study: k = %d (need >= 1)", ks[i]);
            char name[160];
            snprintf(name, sizeof name, "%.100s@k%d", tm.name, ks[i]);
            if ((rc = push_method(r, name, &tm.m, MOPE_EVAL_ROLE_STUDY, ks[i], tm.choice, err))) return rc;
        }
    }
    return 0;
}

bool eval_applies(const eval_run *r, int method, int combo) {
    int ch = r->m[method].choice;
    if (ch < 0) return true;
    const eval_combo *c = &r->c[combo];
    for (int i = 0; i < c->n; i++)
        if (c->choices[i] == ch) return true;
    return false;
}
