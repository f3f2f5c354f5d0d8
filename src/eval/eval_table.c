/* The results table of an evaluation and its aggregation: means per method
 * and combination, paired win/tie/loss counts, and how often the target
 * method is at least as good as every baseline. */
#include <math.h>
#include <stdlib.h>

#include "mope/eval.h"

static char *dup_str(const char *s) {
    return strdup(s ? s : "");
}

int mope_eval_results_init(mope_eval_results *r, int n_prompts, const char *const *combos, int n_combos,
                           const char *const *methods, const unsigned char *role, int n_methods, mope_error *err) {
    memset(r, 0, sizeof *r);
    if (n_prompts < 0 || n_combos < 1 || n_methods < 1 || !combos || !methods)
        return mope_error_set(err, MOPE_EINVAL,
                              "results table: need >= 0 prompts, >= 1 combination and >= 1 method (got %d, %d, %d)",
                              n_prompts, n_combos, n_methods);
    /* the cell count is a product of three ints: check it fits before allocating */
    size_t cells = (size_t)n_prompts * (size_t)n_combos * (size_t)n_methods;
    if (n_prompts && cells / (size_t)n_prompts / (size_t)n_combos != (size_t)n_methods)
        return mope_error_set(err, MOPE_ENOMEM, "results table: too many cells");
    r->n_prompts = n_prompts;
    r->n_combos = n_combos;
    r->n_methods = n_methods;
    r->combos = calloc((size_t)n_combos, sizeof *r->combos);
    r->methods = calloc((size_t)n_methods, sizeof *r->methods);
    r->role = calloc((size_t)n_methods, 1);
    r->u_lab = malloc((cells ? cells : 1) * sizeof *r->u_lab);
    r->u_rm = malloc((cells ? cells : 1) * sizeof *r->u_rm);
    if (!r->combos || !r->methods || !r->role || !r->u_lab || !r->u_rm) goto oom;
    for (int i = 0; i < n_combos; i++)
        if (!(r->combos[i] = dup_str(combos[i]))) goto oom;
    for (int i = 0; i < n_methods; i++) {
        if (!(r->methods[i] = dup_str(methods[i]))) goto oom;
        r->role[i] = role ? role[i] : (i == 0 ? MOPE_EVAL_ROLE_TARGET : MOPE_EVAL_ROLE_BASELINE);
    }
    for (size_t i = 0; i < cells; i++) r->u_lab[i] = r->u_rm[i] = NAN;
    return 0;
oom:
    mope_eval_results_free(r);
    return mope_error_set(err, MOPE_ENOMEM, "out of memory");
}

void mope_eval_results_free(mope_eval_results *r) {
    if (!r) return;
    for (int i = 0; r->combos && i < r->n_combos; i++) free(r->combos[i]);
    for (int i = 0; r->methods && i < r->n_methods; i++) free(r->methods[i]);
    free(r->combos);
    free(r->methods);
    free(r->role);
    free(r->u_lab);
    free(r->u_rm);
    memset(r, 0, sizeof *r);
}

static size_t cell_at(const mope_eval_results *r, int prompt, int combo, int method) {
    return ((size_t)prompt * (size_t)r->n_combos + (size_t)combo) * (size_t)r->n_methods + (size_t)method;
}

double *mope_eval_cell(mope_eval_results *r, int which, int prompt, int combo, int method) {
    if (prompt < 0 || prompt >= r->n_prompts || combo < 0 || combo >= r->n_combos || method < 0 ||
        method >= r->n_methods)
        return NULL;
    return (which == MOPE_EVAL_RM ? r->u_rm : r->u_lab) + cell_at(r, prompt, combo, method);
}

double mope_eval_get(const mope_eval_results *r, int which, int prompt, int combo, int method) {
    double *c = mope_eval_cell((mope_eval_results *)r, which, prompt, combo, method);
    return c ? *c : NAN;
}

int mope_eval_method_index(const mope_eval_results *r, const char *name) {
    for (int i = 0; name && i < r->n_methods; i++)
        if (strcmp(r->methods[i], name) == 0) return i;
    return -1;
}

int mope_eval_combo_index(const mope_eval_results *r, const char *name) {
    for (int i = 0; name && i < r->n_combos; i++)
        if (strcmp(r->combos[i], name) == 0) return i;
    return -1;
}

int mope_eval_target(const mope_eval_results *r) {
    for (int i = 0; i < r->n_methods; i++)
        if (r->role[i] == MOPE_EVAL_ROLE_TARGET) return i;
    return -1;
}

double mope_eval_mean(const double *x, int n, int *count) {
    double s = 0;
    int c = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) {
            s += x[i];
            c++;
        }
    if (count) *count = c;
    return c ? s / c : NAN;
}

void mope_eval_means(const mope_eval_results *r, int which, double *means, double *avg) {
    for (int m = 0; m < r->n_methods; m++) {
        for (int c = 0; c < r->n_combos; c++) {
            double s = 0;
            int n = 0;
            for (int p = 0; p < r->n_prompts; p++) {
                double v = mope_eval_get(r, which, p, c, m);
                if (isfinite(v)) {
                    s += v;
                    n++;
                }
            }
            means[m * r->n_combos + c] = n ? s / n : NAN;
        }
        if (avg) avg[m] = mope_eval_mean(means + m * r->n_combos, r->n_combos, NULL);
    }
}

static void tally(mope_eval_wtl *w, double a, double b, double eps) {
    if (!isfinite(a) || !isfinite(b)) return;
    if (a > b + eps) w->win++;
    else if (a < b - eps) w->loss++;
    else w->tie++;
}

mope_eval_wtl mope_eval_compare(const double *a, const double *b, int n, double eps) {
    mope_eval_wtl w = {0, 0, 0};
    for (int i = 0; i < n; i++) tally(&w, a[i], b[i], eps);
    return w;
}

mope_eval_wtl mope_eval_wtl_of(const mope_eval_results *r, int which, int combo, int ma, int mb, double eps) {
    mope_eval_wtl w = {0, 0, 0};
    for (int p = 0; p < r->n_prompts; p++)
        tally(&w, mope_eval_get(r, which, p, combo, ma), mope_eval_get(r, which, p, combo, mb), eps);
    return w;
}

int mope_eval_count_best(const double *m, int n_methods, int n_combos, const unsigned char *role, int target,
                         double eps, int *n_valid) {
    int best = 0, valid = 0;
    for (int c = 0; target >= 0 && target < n_methods && c < n_combos; c++) {
        double t = m[target * n_combos + c];
        if (!isfinite(t)) continue;
        valid++;
        bool ok = true;
        for (int j = 0; j < n_methods && ok; j++) {
            if (j == target || role[j] != MOPE_EVAL_ROLE_BASELINE) continue;
            double v = m[j * n_combos + c];
            if (isfinite(v) && t < v - eps) ok = false;
        }
        best += ok;
    }
    if (n_valid) *n_valid = valid;
    return best;
}

int mope_eval_avg_ok(const double *m, int n_methods, int n_combos, const unsigned char *role, int target,
                     double eps) {
    int any = 0;
    for (int j = 0; target >= 0 && target < n_methods && j < n_methods; j++) {
        if (j == target || role[j] != MOPE_EVAL_ROLE_BASELINE) continue;
        double st = 0, sb = 0;
        int n = 0;
        for (int c = 0; c < n_combos; c++) {
            double t = m[target * n_combos + c], b = m[j * n_combos + c];
            if (!isfinite(t) || !isfinite(b)) continue;
            st += t;
            sb += b;
            n++;
        }
        if (!n) continue;
        any = 1;
        if (st / n < sb / n - eps) return 0;
    }
    return any ? 1 : -1;
}

int mope_eval_strongest(const double *m, int n_methods, int n_combos, const unsigned char *role, int combo) {
    int best = -1;
    for (int j = 0; j < n_methods; j++) {
        double v = m[j * n_combos + combo];
        if (role[j] == MOPE_EVAL_ROLE_BASELINE && isfinite(v) && (best < 0 || v > m[best * n_combos + combo]))
            best = j;
    }
    return best;
}

static bool pair_at(const mope_eval_results *r, int which, int p, int combo, int ma, int mb, double *d) {
    double a = mope_eval_get(r, which, p, combo, ma), b = mope_eval_get(r, which, p, combo, mb);
    *d = a - b;
    return isfinite(a) && isfinite(b);
}

mope_eval_gap mope_eval_gap_of(const mope_eval_results *r, int which, int combo, int ma, int mb) {
    mope_eval_gap g = {NAN, NAN, 0};
    double s = 0, ss = 0, d;
    for (int p = 0; p < r->n_prompts; p++)
        if (pair_at(r, which, p, combo, ma, mb, &d)) {
            s += d;
            g.n++;
        }
    if (!g.n) return g;
    g.mean = s / g.n;
    /* squared deviations from the mean (two passes: no cancellation) */
    for (int p = 0; p < r->n_prompts; p++)
        if (pair_at(r, which, p, combo, ma, mb, &d)) ss += (d - g.mean) * (d - g.mean);
    if (g.n >= 2) g.se = sqrt(ss / (g.n - 1) / g.n);
    return g;
}
