/* The evaluation's reports from a filled results table: results.md (tables
 * of mean utilities, win/tie/loss, top-k study), summary.json and the
 * utility bar chart. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mope/eval.h"

static const char *which_name(int which) {
    return which == MOPE_EVAL_RM ? "reward-model" : "labeler";
}

/* Methods shown in the main tables: all but the study variants. */
static int shown_methods(const mope_eval_results *r, int *idx) {
    int n = 0;
    for (int m = 0; m < r->n_methods; m++)
        if (r->role[m] != MOPE_EVAL_ROLE_STUDY) idx[n++] = m;
    return n;
}

static void fmt_num(char *buf, size_t cap, double v, bool bold) {
    if (!isfinite(v)) snprintf(buf, cap, "-");
    else snprintf(buf, cap, bold ? "**%.3f**" : "%.3f", v);
}

/* Cells live in one flat buffer of fixed-size strings, so a table of any
 * size is two allocations. */
enum { CELL = 96 };

typedef struct grid {
    int rows, cols;
    char *buf;
    const char **ptr;
} grid;

static int grid_init(grid *g, int rows, int cols) {
    g->rows = rows;
    g->cols = cols;
    size_t n = (size_t)(rows > 0 ? rows : 1) * (size_t)cols;
    g->buf = calloc(n, CELL);
    g->ptr = calloc(n, sizeof *g->ptr);
    if (!g->buf || !g->ptr) {
        free(g->buf);
        free(g->ptr);
        return -1;
    }
    for (size_t i = 0; i < n; i++) g->ptr[i] = g->buf + i * CELL;
    return 0;
}

static char *grid_cell(grid *g, int row, int col) {
    return g->buf + ((size_t)row * (size_t)g->cols + (size_t)col) * CELL;
}

static void grid_free(grid *g) {
    free(g->buf);
    free(g->ptr);
}

/* Writes one Markdown table (header names: first column name, then the
 * combinations, then trailing). */
static int put_table(FILE *f, const mope_eval_results *r, const char *first, const char *last, grid *g,
                     mope_error *err) {
    const char **hdr = calloc((size_t)g->cols, sizeof *hdr);
    char *align = calloc((size_t)g->cols + 1, 1);
    if (!hdr || !align) {
        free(hdr);
        free(align);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    hdr[0] = first;
    align[0] = 'l';
    for (int c = 0; c < r->n_combos; c++) {
        hdr[1 + c] = r->combos[c];
        align[1 + c] = 'r';
    }
    if (last) {
        hdr[g->cols - 1] = last;
        align[g->cols - 1] = 'r';
    }
    char *md = mope_eval_md_table(hdr, g->cols, g->ptr, g->rows, align, err);
    free(hdr);
    free(align);
    if (!md) return err ? err->code : MOPE_ENOMEM;
    fputs(md, f);
    fputc('\n', f);
    free(md);
    return 0;
}

/* Under the means table: the target against the strongest baseline of each
 * combination, as a per-prompt paired gap with its standard error, so that
 * a reader can tell a lead from the noise of this many prompts. */
static int gap_section(FILE *f, const mope_eval_results *r, int which, const double *means, mope_error *err) {
    const int M = r->n_methods, C = r->n_combos, target = mope_eval_target(r);
    grid g;
    if (grid_init(&g, 4, C + 1)) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    snprintf(grid_cell(&g, 0, 0), CELL, "strongest baseline");
    snprintf(grid_cell(&g, 1, 0), CELL, "its mean");
    snprintf(grid_cell(&g, 2, 0), CELL, "gap (%s - it)", r->methods[target]);
    snprintf(grid_cell(&g, 3, 0), CELL, "standard error");
    int ahead = 0, behind = 0, shown = 0;
    for (int c = 0; c < C; c++) {
        int b = mope_eval_strongest(means, M, C, r->role, c);
        mope_eval_gap gp = {NAN, NAN, 0};
        if (b >= 0) gp = mope_eval_gap_of(r, which, c, target, b);
        snprintf(grid_cell(&g, 0, 1 + c), CELL, "%s", b >= 0 ? r->methods[b] : "-");
        fmt_num(grid_cell(&g, 1, 1 + c), CELL, b >= 0 ? means[b * C + c] : NAN, false);
        if (isfinite(gp.mean)) snprintf(grid_cell(&g, 2, 1 + c), CELL, "%+.3f", gp.mean);
        else snprintf(grid_cell(&g, 2, 1 + c), CELL, "-");
        fmt_num(grid_cell(&g, 3, 1 + c), CELL, gp.se, false);
        if (isfinite(gp.mean) && isfinite(gp.se)) {
            shown++;
            ahead += gp.mean > 2 * gp.se;
            behind += gp.mean < -2 * gp.se;
        }
    }
    fprintf(f,
            "Margin of %s over the strongest baseline of each combination: the mean per-prompt difference "
            "(same prompts, same seeds) and its standard error.\n\n",
            r->methods[target]);
    int rc = put_table(f, r, "", NULL, &g, err);
    if (!rc)
        fprintf(f,
                "Beyond two standard errors: ahead on %d, behind on %d of %d combinations (the rest within the "
                "noise of %d prompts).\n\n",
                ahead, behind, shown, r->n_prompts);
    grid_free(&g);
    return rc;
}

/* The mean-utility table of one measure and the "target >= every baseline"
 * line under it. */
static int means_section(FILE *f, const mope_eval_results *r, const mope_eval_report_info *info, int which,
                         mope_error *err) {
    const int M = r->n_methods, C = r->n_combos, target = mope_eval_target(r);
    double *means = malloc(sizeof(double) * (size_t)M * (size_t)C), *avg = malloc(sizeof(double) * (size_t)M);
    int *idx = malloc(sizeof(int) * (size_t)M);
    grid g = {0};
    if (!means || !avg || !idx || grid_init(&g, M, C + 2)) {
        free(means);
        free(avg);
        free(idx);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    mope_eval_means(r, which, means, avg);
    int n = shown_methods(r, idx);
    g.rows = n;
    for (int i = 0; i < n; i++) {
        int m = idx[i];
        snprintf(grid_cell(&g, i, 0), CELL, "%s%s", r->methods[m], m == target ? " (target)" : "");
        for (int c = 0; c <= C; c++) {
            /* bold the best shown method of each column */
            double v = c < C ? means[m * C + c] : avg[m], best = -INFINITY;
            for (int j = 0; j < n; j++) {
                double w = c < C ? means[idx[j] * C + c] : avg[idx[j]];
                if (isfinite(w) && w > best) best = w;
            }
            fmt_num(grid_cell(&g, i, 1 + c), CELL, v, isfinite(v) && v >= best - info->tie_eps);
        }
    }
    fprintf(f, "## Mean %s utility\n\n", which_name(which));
    int rc = put_table(f, r, "method", "average", &g, err);
    if (!rc && target >= 0) {
        int valid = 0, best = mope_eval_count_best(means, M, C, r->role, target, info->tie_eps, &valid);
        int avg_ok = mope_eval_avg_ok(means, M, C, r->role, target, info->tie_eps);
        fprintf(f,
                "**%s >= every baseline on %d of %d combinations**; on average (each baseline against the target "
                "over the combinations it covers): %s.\n\n",
                r->methods[target], best, valid, avg_ok < 0 ? "n/a" : avg_ok ? "yes" : "no");
        rc = gap_section(f, r, which, means, err);
    }
    grid_free(&g);
    free(means);
    free(avg);
    free(idx);
    return rc;
}

static int wtl_section(FILE *f, const mope_eval_results *r, const mope_eval_report_info *info, int which,
                       mope_error *err) {
    const int M = r->n_methods, C = r->n_combos, target = mope_eval_target(r);
    int nb = 0;
    for (int m = 0; m < M; m++) nb += r->role[m] == MOPE_EVAL_ROLE_BASELINE;
    fprintf(f, "## Win / tie / loss of %s against each baseline\n\n",
            target >= 0 ? r->methods[target] : "the target");
    if (target < 0 || nb == 0) {
        fprintf(f, "No %s to compare.\n\n", target < 0 ? "target method" : "baseline");
        return 0;
    }
    fprintf(f,
            "Per prompt, by %s utility (a tie when the two differ by at most %g); W/T/L counts per combination, "
            "then the totals and the win rate (W + T/2) / (W + T + L).\n\n",
            which_name(which), info->tie_eps);
    grid g;
    if (grid_init(&g, nb, C + 3)) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int row = 0;
    for (int m = 0; m < M; m++) {
        if (r->role[m] != MOPE_EVAL_ROLE_BASELINE) continue;
        mope_eval_wtl tot = {0, 0, 0};
        snprintf(grid_cell(&g, row, 0), CELL, "%s", r->methods[m]);
        for (int c = 0; c < C; c++) {
            mope_eval_wtl w = mope_eval_wtl_of(r, which, c, target, m, info->tie_eps);
            if (w.win + w.tie + w.loss == 0) snprintf(grid_cell(&g, row, 1 + c), CELL, "-");
            else snprintf(grid_cell(&g, row, 1 + c), CELL, "%d/%d/%d", w.win, w.tie, w.loss);
            tot.win += w.win;
            tot.tie += w.tie;
            tot.loss += w.loss;
        }
        int n = tot.win + tot.tie + tot.loss;
        snprintf(grid_cell(&g, row, C + 1), CELL, "%d/%d/%d", tot.win, tot.tie, tot.loss);
        if (n) snprintf(grid_cell(&g, row, C + 2), CELL, "%.3f", (tot.win + 0.5 * tot.tie) / n);
        else snprintf(grid_cell(&g, row, C + 2), CELL, "-");
        row++;
    }
    const char **hdr = calloc((size_t)C + 3, sizeof *hdr);
    char *align = calloc((size_t)C + 4, 1);
    int rc = 0;
    if (!hdr || !align) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) {
        hdr[0] = "baseline";
        align[0] = 'l';
        for (int c = 0; c < C; c++) {
            hdr[1 + c] = r->combos[c];
            align[1 + c] = 'r';
        }
        hdr[C + 1] = "total W/T/L";
        hdr[C + 2] = "win rate";
        align[C + 1] = align[C + 2] = 'r';
        char *md = mope_eval_md_table(hdr, C + 3, g.ptr, nb, align, err);
        if (!md) rc = err ? err->code : MOPE_ENOMEM;
        else {
            fputs(md, f);
            fputc('\n', f);
            free(md);
        }
    }
    free(hdr);
    free(align);
    grid_free(&g);
    return rc;
}

static int topk_section(FILE *f, const mope_eval_results *r, const mope_eval_report_info *info, mope_error *err) {
    const int M = r->n_methods, C = r->n_combos, target = mope_eval_target(r);
    int ns = 0;
    for (int m = 0; m < M; m++) ns += r->role[m] == MOPE_EVAL_ROLE_STUDY;
    if (ns == 0 || target < 0) return 0;
    double *lab = malloc(sizeof(double) * (size_t)M * (size_t)C), *rm = malloc(sizeof(double) * (size_t)M * (size_t)C);
    double *alab = malloc(sizeof(double) * (size_t)M), *arm = malloc(sizeof(double) * (size_t)M);
    grid g = {0};
    int rc = 0;
    if (!lab || !rm || !alab || !arm || grid_init(&g, ns + 1, C + 2))
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (!rc) {
        mope_eval_means(r, MOPE_EVAL_LABELER, lab, alab);
        mope_eval_means(r, MOPE_EVAL_RM, rm, arm);
        fprintf(f,
                "## Top-k study (black-box mode) of %s\n\n"
                "Every expert reports only its k most probable next tokens (the rest of its mass spread "
                "uniformly); \"full\" is the exact mode. Cells: mean labeler utility / mean reward-model "
                "utility.\n\n",
                r->methods[target]);
        int row = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int m = 0; m < M; m++) {
                if (pass == 0 ? r->role[m] != MOPE_EVAL_ROLE_STUDY : m != target) continue;
                int k = pass == 0 && info->topk ? info->topk[m] : 0;
                if (pass == 0 && k > 0) snprintf(grid_cell(&g, row, 0), CELL, "%d", k);
                else if (pass == 0) snprintf(grid_cell(&g, row, 0), CELL, "%s", r->methods[m]);
                else snprintf(grid_cell(&g, row, 0), CELL, "full");
                for (int c = 0; c <= C; c++) {
                    double a = c < C ? lab[m * C + c] : alab[m], b = c < C ? rm[m * C + c] : arm[m];
                    char x[24], y[24];
                    fmt_num(x, sizeof x, a, false);
                    fmt_num(y, sizeof y, b, false);
                    snprintf(grid_cell(&g, row, 1 + c), CELL, "%s / %s", x, y);
                }
                row++;
            }
        rc = put_table(f, r, "k", "average", &g, err);
    }
    grid_free(&g);
    free(lab);
    free(rm);
    free(alab);
    free(arm);
    return rc;
}

char *mope_eval_report_md(const mope_eval_results *r, const mope_eval_report_info *info, mope_error *err) {
    mope_eval_report_info def = {0};
    if (!info) info = &def;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    int target = mope_eval_target(r);
    fprintf(f, "# %s\n\n", info->title ? info->title : "Evaluation");
    if (info->command) fprintf(f, "Command:\n\n```\n%s\n```\n\n", info->command);
    fprintf(f, "%d prompts x %d combinations x %d methods", r->n_prompts, r->n_combos, r->n_methods);
    if (target >= 0) fprintf(f, "; target method: %s", r->methods[target]);
    fputs(".", f);
    if (info->settings) fprintf(f, " %s", info->settings);
    fputs("\n\nUtility of a response for a combination = mean over its choices of a score in [0, 1]: the "
          "labelers' per-choice utility, or the reward models' Bradley-Terry normalised reward "
          "sigmoid(R(x, y) - R(x, y_ref)) against the bundle's reference response. Bold: the best method of "
          "each column.\n\n",
          f);
    int rc = 0;
    if (info->have_labeler) rc = means_section(f, r, info, MOPE_EVAL_LABELER, err);
    else fputs("## Mean labeler utility\n\nNo labelers were run.\n\n", f);
    if (!rc && info->have_rm) rc = means_section(f, r, info, MOPE_EVAL_RM, err);
    else if (!rc) fputs("## Mean reward-model utility\n\nNo reward-model scores.\n\n", f);
    if (!rc) rc = wtl_section(f, r, info, info->have_labeler ? MOPE_EVAL_LABELER : MOPE_EVAL_RM, err);
    if (!rc) rc = topk_section(f, r, info, err);
    if (!rc && info->n_notes > 0) {
        fputs("## Notes\n\n", f);
        for (int i = 0; i < info->n_notes; i++) fprintf(f, "* %s\n", info->notes[i]);
        fputc('\n', f);
    }
    if (fclose(f) != 0 && !rc) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* NaN is not JSON: missing values are null. */
static cJSON *num_or_null(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static void add_measure(cJSON *root, const mope_eval_results *r, const mope_eval_report_info *info, int which,
                        double *means, double *avg) {
    const int M = r->n_methods, C = r->n_combos, target = mope_eval_target(r);
    mope_eval_means(r, which, means, avg);
    cJSON *o = cJSON_AddObjectToObject(root, which == MOPE_EVAL_RM ? "rm" : "labeler");
    cJSON *mm = cJSON_AddObjectToObject(o, "means");
    for (int m = 0; m < M; m++) {
        cJSON *row = cJSON_AddObjectToObject(mm, r->methods[m]);
        for (int c = 0; c < C; c++) cJSON_AddItemToObject(row, r->combos[c], num_or_null(means[m * C + c]));
        cJSON_AddItemToObject(row, "average", num_or_null(avg[m]));
    }
    if (target >= 0) {
        int valid = 0, best = mope_eval_count_best(means, M, C, r->role, target, info->tie_eps, &valid);
        cJSON_AddNumberToObject(o, "target_best_combos", best);
        cJSON_AddNumberToObject(o, "target_valid_combos", valid);
        int avg_ok = mope_eval_avg_ok(means, M, C, r->role, target, info->tie_eps);
        if (avg_ok < 0) cJSON_AddNullToObject(o, "target_avg_ge_baselines");
        else cJSON_AddBoolToObject(o, "target_avg_ge_baselines", avg_ok);
        cJSON *gaps = cJSON_AddObjectToObject(o, "gap_to_strongest");
        for (int c = 0; c < C; c++) {
            int b = mope_eval_strongest(means, M, C, r->role, c);
            if (b < 0) continue;
            mope_eval_gap gp = mope_eval_gap_of(r, which, c, target, b);
            cJSON *x = cJSON_AddObjectToObject(gaps, r->combos[c]);
            cJSON_AddStringToObject(x, "baseline", r->methods[b]);
            cJSON_AddItemToObject(x, "mean", num_or_null(gp.mean));
            cJSON_AddItemToObject(x, "se", num_or_null(gp.se));
            cJSON_AddNumberToObject(x, "n", gp.n);
        }
        cJSON *w = cJSON_AddObjectToObject(o, "wtl");
        for (int m = 0; m < M; m++) {
            if (r->role[m] != MOPE_EVAL_ROLE_BASELINE) continue;
            cJSON *row = cJSON_AddObjectToObject(w, r->methods[m]);
            for (int c = 0; c < C; c++) {
                mope_eval_wtl x = mope_eval_wtl_of(r, which, c, target, m, info->tie_eps);
                cJSON *t = cJSON_CreateIntArray((const int[3]){x.win, x.tie, x.loss}, 3);
                cJSON_AddItemToObject(row, r->combos[c], t);
            }
        }
    }
}

char *mope_eval_report_json(const mope_eval_results *r, const mope_eval_report_info *info, mope_error *err) {
    mope_eval_report_info def = {0};
    if (!info) info = &def;
    const int M = r->n_methods, C = r->n_combos, target = mope_eval_target(r);
    double *means = malloc(sizeof(double) * (size_t)M * (size_t)C), *avg = malloc(sizeof(double) * (size_t)M);
    cJSON *root = cJSON_CreateObject();
    char *out = NULL;
    if (means && avg && root) {
        cJSON_AddNumberToObject(root, "n_prompts", r->n_prompts);
        cJSON *cs = cJSON_AddArrayToObject(root, "combinations");
        for (int c = 0; c < C; c++) cJSON_AddItemToArray(cs, cJSON_CreateString(r->combos[c]));
        cJSON *ms = cJSON_AddArrayToObject(root, "methods");
        for (int m = 0; m < M; m++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", r->methods[m]);
            cJSON_AddStringToObject(o, "role", r->role[m] == MOPE_EVAL_ROLE_TARGET     ? "target"
                                               : r->role[m] == MOPE_EVAL_ROLE_BASELINE ? "baseline"
                                                                                       : "study");
            if (r->role[m] == MOPE_EVAL_ROLE_STUDY && info->topk && info->topk[m] > 0)
                cJSON_AddNumberToObject(o, "topk", info->topk[m]);
            cJSON_AddItemToArray(ms, o);
        }
        if (target >= 0) cJSON_AddStringToObject(root, "target", r->methods[target]);
        else cJSON_AddNullToObject(root, "target");
        cJSON_AddNumberToObject(root, "tie_eps", info->tie_eps);
        if (info->settings) cJSON_AddStringToObject(root, "settings", info->settings);
        if (info->command) cJSON_AddStringToObject(root, "command", info->command);
        if (info->have_labeler) add_measure(root, r, info, MOPE_EVAL_LABELER, means, avg);
        if (info->have_rm) add_measure(root, r, info, MOPE_EVAL_RM, means, avg);
        cJSON *notes = cJSON_AddArrayToObject(root, "notes");
        for (int i = 0; i < info->n_notes; i++) cJSON_AddItemToArray(notes, cJSON_CreateString(info->notes[i]));
        out = cJSON_Print(root);
    }
    cJSON_Delete(root);
    free(means);
    free(avg);
    if (!out) mope_error_set(err, MOPE_ENOMEM, "out of memory");
    return out;
}

char *mope_eval_report_svg(const mope_eval_results *r, int which, mope_error *err) {
    const int M = r->n_methods, C = r->n_combos;
    double *means = malloc(sizeof(double) * (size_t)M * (size_t)C), *avg = malloc(sizeof(double) * (size_t)M);
    double *vals = malloc(sizeof(double) * (size_t)M * (size_t)(C + 1));
    int *idx = malloc(sizeof(int) * (size_t)M);
    const char **groups = calloc((size_t)C + 1, sizeof *groups), **series = calloc((size_t)M, sizeof *series);
    char *svg = NULL;
    if (means && avg && vals && idx && groups && series) {
        mope_eval_means(r, which, means, avg);
        int n = shown_methods(r, idx);
        for (int c = 0; c < C; c++) groups[c] = r->combos[c];
        groups[C] = "average";
        for (int i = 0; i < n; i++) {
            series[i] = r->methods[idx[i]];
            for (int c = 0; c < C; c++) vals[i * (C + 1) + c] = means[idx[i] * C + c];
            vals[i * (C + 1) + C] = avg[idx[i]];
        }
        char title[96];
        snprintf(title, sizeof title, "Mean %s utility per combination and method", which_name(which));
        svg = mope_eval_svg_bars(title, "utility", groups, C + 1, series, n, vals, err);
    } else {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    free(means);
    free(avg);
    free(vals);
    free(idx);
    free(groups);
    free(series);
    return svg;
}
