/* A tiny SVG writer for the evaluation's two charts: grouped bars (utility
 * per combination and method) and lines (expert weights along a response).
 * Plain SVG 1.1 that any browser shows; every piece of text is escaped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mope/eval.h"

/* Colours that stay distinguishable for 12 series (the Tableau 10 hues plus
 * two darker ones); more series cycle. */
static const char *const PALETTE[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                                      "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#2f4b7c", "#7a5195"};
#define N_PALETTE ((int)(sizeof PALETTE / sizeof PALETTE[0]))

/* XML text and attribute escaping; control characters other than tab and
 * line breaks are not allowed in XML 1.0 at all, so they are dropped. */
static void put_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if (c >= 0x20 || c == '\t' || c == '\n') fputc(c, f);
        }
    }
}

/* A round step (1, 2 or 5 times a power of ten) giving about 5 ticks over span. */
static double nice_step(double span) {
    if (!(span > 0)) return 1;
    double raw = span / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

typedef struct axis {
    double lo, hi, step;
} axis;

/* y range from the finite values: from min(0, lowest) to a tick >= highest. */
static axis make_axis(const double *v, size_t n) {
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            if (v[i] < lo) lo = v[i];
            if (v[i] > hi) hi = v[i];
        }
    if (hi <= lo) hi = lo + 1;
    axis a;
    a.step = nice_step(hi - lo);
    a.lo = floor(lo / a.step) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    if (a.hi <= a.lo) a.hi = a.lo + a.step;
    return a;
}

/* Geometry shared by both charts: the plot area and the legend column. */
enum { MARGIN_L = 70, MARGIN_T = 50, MARGIN_B = 90, LEGEND_W = 170, PLOT_H = 320 };

static double y_px(const axis *a, double v) {
    return MARGIN_T + PLOT_H * (a->hi - v) / (a->hi - a->lo);
}

static void header(FILE *f, int width, int height, const char *title) {
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">",
            width, height, width, height, width, height, width / 2);
    put_text(f, title);
    fputs("</text>\n", f);
}

static void y_axis(FILE *f, const axis *a, int plot_w, const char *label) {
    int n = (int)llround((a->hi - a->lo) / a->step);
    for (int i = 0; i <= n; i++) {
        double v = a->lo + i * a->step, y = y_px(a, v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", MARGIN_L, y,
                MARGIN_L + plot_w, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", MARGIN_L - 6, y + 4,
                fabs(v) < 1e-12 ? 0.0 : v);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", MARGIN_L, MARGIN_T, MARGIN_L,
            MARGIN_T + PLOT_H);
    fprintf(f, "<text x=\"18\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 18 %d)\">",
            MARGIN_T + PLOT_H / 2, MARGIN_T + PLOT_H / 2);
    put_text(f, label);
    fputs("</text>\n", f);
}

static void legend(FILE *f, int x, const char *const *series, int n) {
    for (int s = 0; s < n; s++) {
        int y = MARGIN_T + 18 * s;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x, y,
                PALETTE[s % N_PALETTE]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", x + 18, y + 10);
        put_text(f, series[s]);
        fputs("</text>\n", f);
    }
}

/* buf is open_memstream's pointer, valid only after fclose. */
static char *finish(FILE *f, char **buf, mope_error *err) {
    fputs("</svg>\n", f);
    if (fclose(f) != 0) {
        free(*buf);
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    return *buf;
}

static bool names_ok(const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!names[i]) return false;
    return true;
}

char *mope_eval_svg_bars(const char *title, const char *y_label, const char *const *groups, int n_groups,
                         const char *const *series, int n_series, const double *values, mope_error *err) {
    if (n_groups < 1 || n_series < 1 || !groups || !series || !values || !names_ok(groups, n_groups) ||
        !names_ok(series, n_series)) {
        mope_error_set(err, MOPE_EINVAL, "bar chart: need >= 1 named group and series and their values");
        return NULL;
    }
    if ((size_t)n_groups * (size_t)n_series > 1000000) {
        mope_error_set(err, MOPE_ERANGE, "bar chart: %d x %d bars is too many", n_groups, n_series);
        return NULL;
    }
    const size_t n = (size_t)n_groups * (size_t)n_series;
    axis a = make_axis(values, n);
    const int bar_w = 14, gap = 18, group_w = n_series * bar_w + gap;
    const int plot_w = n_groups * group_w + gap;
    const int width = MARGIN_L + plot_w + 20 + LEGEND_W, height = MARGIN_T + PLOT_H + MARGIN_B;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    header(f, width, height, title);
    y_axis(f, &a, plot_w, y_label);
    double y0 = y_px(&a, a.lo > 0 ? a.lo : a.hi < 0 ? a.hi : 0);
    for (int g = 0; g < n_groups; g++) {
        int gx = MARGIN_L + gap + g * group_w;
        for (int s = 0; s < n_series; s++) {
            double v = values[(size_t)s * (size_t)n_groups + (size_t)g];
            if (!isfinite(v)) continue;
            double y = y_px(&a, v), top = y < y0 ? y : y0, h = fabs(y0 - y);
            fprintf(f,
                    "<rect class=\"bar\" x=\"%d\" y=\"%.2f\" width=\"%d\" height=\"%.2f\" fill=\"%s\" "
                    "data-value=\"%.6g\"><title>",
                    gx + s * bar_w, top, bar_w - 1, h, PALETTE[s % N_PALETTE], v);
            put_text(f, series[s]);
            fputs(" / ", f);
            put_text(f, groups[g]);
            fprintf(f, ": %.4f</title></rect>\n", v);
        }
        /* long combination names are rotated so neighbours do not overlap */
        int cx = gx + (n_series * bar_w) / 2, cy = MARGIN_T + PLOT_H + 14;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" transform=\"rotate(-30 %d %d)\">", cx, cy, cx, cy);
        put_text(f, groups[g]);
        fputs("</text>\n", f);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>\n", MARGIN_L, y0,
            MARGIN_L + plot_w, y0);
    legend(f, MARGIN_L + plot_w + 20, series, n_series);
    return finish(f, &buf, err);
}

char *mope_eval_svg_lines(const char *title, const char *x_label, const char *y_label, const char *const *series,
                          int n_series, const double *values, int n_points, mope_error *err) {
    if (n_series < 1 || n_points < 1 || !series || !values || !names_ok(series, n_series)) {
        mope_error_set(err, MOPE_EINVAL, "line chart: need >= 1 named series and >= 1 point");
        return NULL;
    }
    if ((size_t)n_points * (size_t)n_series > 10000000) {
        mope_error_set(err, MOPE_ERANGE, "line chart: %d x %d points is too many", n_series, n_points);
        return NULL;
    }
    axis a = make_axis(values, (size_t)n_series * (size_t)n_points);
    const int plot_w = n_points < 60 ? 600 : n_points > 300 ? 1200 : 2 * n_points + 480;
    const int width = MARGIN_L + plot_w + 20 + LEGEND_W, height = MARGIN_T + PLOT_H + MARGIN_B;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    header(f, width, height, title);
    y_axis(f, &a, plot_w, y_label);
    const double dx = n_points > 1 ? (double)plot_w / (n_points - 1) : 0;
    /* x ticks: about 10, at round token positions */
    double xs = n_points > 1 ? nice_step((double)(n_points - 1) * 0.5) : 1;
    if (xs < 1) xs = 1;
    for (double x = 0; x <= n_points - 1 + 1e-9; x += xs) {
        double px = MARGIN_L + x * dx;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", px, MARGIN_T + PLOT_H + 16, x);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", MARGIN_L, MARGIN_T + PLOT_H,
            MARGIN_L + plot_w, MARGIN_T + PLOT_H);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", MARGIN_L + plot_w / 2, MARGIN_T + PLOT_H + 40);
    put_text(f, x_label);
    fputs("</text>\n", f);
    for (int s = 0; s < n_series; s++) {
        const double *v = values + (size_t)s * (size_t)n_points;
        bool open = false;
        for (int i = 0; i < n_points; i++) {
            if (!isfinite(v[i])) {
                if (open) fputs("\"/>\n", f);
                open = false;
                continue;
            }
            if (!open) {
                fprintf(f, "<polyline class=\"line\" data-series=\"%d\" fill=\"none\" stroke=\"%s\" "
                           "stroke-width=\"1.5\" points=\"", s, PALETTE[s % N_PALETTE]);
                open = true;
            } else {
                fputc(' ', f);
            }
            fprintf(f, "%.2f,%.2f", MARGIN_L + i * dx, y_px(&a, v[i]));
        }
        if (open) fputs("\"/>\n", f);
    }
    legend(f, MARGIN_L + plot_w + 20, series, n_series);
    return finish(f, &buf, err);
}
