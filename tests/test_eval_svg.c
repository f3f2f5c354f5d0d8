/* The evaluation's writers: Markdown tables (exact text for a small
 * table, escaping, UTF-8 widths) and SVG charts (well-formed XML by a
 * small checker, one bar per finite value with heights proportional to the
 * values, escaped text, lines broken at missing values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mope/eval.h"

/* ---- a tiny XML well-formedness check: balanced tags, quoted attributes,
 * known entities, no stray '<' or '&' ---- */
static bool entity_ok(const char *s) {
    static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < 5; i++)
        if (strncmp(s, ents[i], strlen(ents[i])) == 0) return true;
    return false;
}

static bool xml_ok(const char *s) {
    char stack[64][32];
    int depth = 0, roots = 0;
    if (strncmp(s, "<?xml ", 6) == 0) {
        s = strstr(s, "?>");
        if (!s) return false;
        s += 2;
    }
    while (*s) {
        if (*s == '&') {
            if (!entity_ok(s)) return false;
            s++;
            continue;
        }
        if (*s != '<') {
            if (*s == '>') return false;
            if (depth == 0 && !isspace((unsigned char)*s)) return false; /* text outside the root */
            s++;
            continue;
        }
        s++;
        bool closing = *s == '/';
        if (closing) s++;
        char name[32];
        int n = 0;
        while (isalnum((unsigned char)*s) || *s == '-' || *s == ':') {
            if (n < 31) name[n++] = *s;
            s++;
        }
        name[n] = 0;
        if (n == 0) return false;
        if (closing) {
            while (isspace((unsigned char)*s)) s++;
            if (*s++ != '>' || depth == 0 || strcmp(stack[--depth], name) != 0) return false;
            continue;
        }
        /* attributes: name="value" with no '<' and only known entities */
        for (;;) {
            while (isspace((unsigned char)*s)) s++;
            if (*s == '>' || (s[0] == '/' && s[1] == '>')) break;
            if (!isalpha((unsigned char)*s)) return false;
            while (isalnum((unsigned char)*s) || *s == '-' || *s == ':') s++;
            if (*s++ != '=' || *s++ != '"') return false;
            while (*s && *s != '"') {
                if (*s == '<') return false;
                if (*s == '&' && !entity_ok(s)) return false;
                s++;
            }
            if (*s++ != '"') return false;
        }
        if (depth == 0) roots++;
        if (*s == '/') {
            s += 2;
            continue;
        }
        s++;
        if (depth == 64) return false;
        strcpy(stack[depth++], name);
    }
    return depth == 0 && roots == 1;
}

static void test_xml_checker(void **state) {
    (void)state;
    /* the checker itself must reject what is broken */
    assert_true(xml_ok("<a x=\"1\"><b/>t &amp; u</a>"));
    assert_false(xml_ok("<a><b></a></b>"));
    assert_false(xml_ok("<a x=1></a>"));
    assert_false(xml_ok("<a>t & u</a>"));
    assert_false(xml_ok("<a x=\"<\"></a>"));
    assert_false(xml_ok("<a></a><b></b>"));
    assert_false(xml_ok("<a>"));
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static double attr(const char *tag, const char *name) {
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(tag, key);
    assert_non_null(p);
    return strtod(p + strlen(key), NULL);
}

static void test_bars(void **state) {
    (void)state;
    const char *groups[] = {"P1A+P2A", "P1B+P2B", "average"};
    const char *series[] = {"mope", "a<b & \"c\"", "uniform"};
    /* series x groups; one missing bar */
    const double v[] = {0.8, 0.4, 0.6, 0.2, NAN, 0.5, 0.1, 0.3, 0.0};
    mope_error err = {0};
    char *svg = mope_eval_svg_bars("Utility <per> combination", "utility", groups, 3, series, 3, v, &err);
    assert_non_null(svg);
    assert_true(xml_ok(svg));
    assert_non_null(strstr(svg, "a&lt;b &amp; &quot;c&quot;"));
    assert_non_null(strstr(svg, "Utility &lt;per&gt; combination"));
    assert_int_equal(count(svg, "class=\"bar\""), 8);
    /* every bar's height is proportional to its value (the axis starts at 0) */
    double ratio = -1;
    int seen = 0;
    for (const char *p = strstr(svg, "<rect class=\"bar\""); p; p = strstr(p + 1, "<rect class=\"bar\"")) {
        double h = attr(p, "height"), val = attr(p, "data-value");
        seen++;
        if (val == 0) {
            assert_true(h == 0);
            continue;
        }
        if (ratio < 0) ratio = h / val;
        assert_float_equal(h / val, ratio, 1e-2 * ratio);
    }
    assert_int_equal(seen, 8);
    assert_true(ratio > 100); /* a 0.8 bar is taller than 80 px in a 320 px plot reaching 1 */
    free(svg);

    /* negative values extend the axis below 0, and stay well-formed */
    const double neg[] = {-0.5, 2.0};
    svg = mope_eval_svg_bars("t", "y", groups, 2, series, 1, neg, &err);
    assert_non_null(svg);
    assert_true(xml_ok(svg));
    assert_non_null(strstr(svg, ">-0.5</text>"));
    free(svg);

    assert_null(mope_eval_svg_bars("t", "y", groups, 0, series, 1, v, &err));
    assert_int_equal(err.code, MOPE_EINVAL);
    const char *bad[] = {"x", NULL};
    assert_null(mope_eval_svg_bars("t", "y", groups, 2, bad, 2, v, &err));
}

static void test_lines(void **state) {
    (void)state;
    const char *series[] = {"P1A", "P2B"};
    /* P1A rises over 4 tokens; P2B has a gap at token 2 */
    const double v[] = {0.1, 0.4, 0.6, 0.9, 0.9, 0.6, NAN, 0.1};
    mope_error err = {0};
    char *svg = mope_eval_svg_lines("weights & tokens", "token", "weight", series, 2, v, 4, &err);
    assert_non_null(svg);
    assert_true(xml_ok(svg));
    assert_int_equal(count(svg, "<polyline class=\"line\""), 3);
    /* the first line has 4 points, and higher weights are drawn higher (smaller y) */
    const char *p = strstr(svg, "points=\"");
    assert_non_null(p);
    p += 8;
    double x[4], y[4];
    for (int i = 0; i < 4; i++) {
        char *e;
        x[i] = strtod(p, &e);
        assert_true(*e == ',');
        y[i] = strtod(e + 1, &e);
        p = e + 1;
    }
    for (int i = 1; i < 4; i++) {
        assert_true(x[i] > x[i - 1]);
        assert_true(y[i] < y[i - 1]);
    }
    /* equal spacing in x; y linear in the value: (0.4 - 0.1) vs (0.9 - 0.6) */
    assert_float_equal(x[2] - x[1], x[1] - x[0], 0.02);
    assert_float_equal(y[0] - y[1], y[2] - y[3], 0.02);
    free(svg);
    const double one[] = {0.5};
    svg = mope_eval_svg_lines("t", "x", "y", series, 1, one, 1, &err);
    assert_non_null(svg);
    assert_true(xml_ok(svg));
    free(svg);
    assert_null(mope_eval_svg_lines("t", "x", "y", series, 1, one, 0, &err));
}

static void test_md_table(void **state) {
    (void)state;
    const char *hdr[] = {"method", "X", "avg"};
    const char *cells[] = {"mope", "0.5", "1", "a|b", NULL, "line\nbreak", "é", "12345", "x"};
    mope_error err = {0};
    char *md = mope_eval_md_table(hdr, 3, cells, 3, "lrc", &err);
    assert_non_null(md);
    assert_string_equal(md, "| method | X     | avg        |\n"
                            "|--------|------:|:----------:|\n"
                            "| mope   |   0.5 |     1      |\n"
                            "| a\\|b   |       | line break |\n"
                            "| é      | 12345 |     x      |\n");
    free(md);
    /* no rows, default alignment */
    md = mope_eval_md_table(hdr, 2, NULL, 0, NULL, &err);
    assert_non_null(md);
    assert_string_equal(md, "| method | X   |\n|--------|-----|\n");
    free(md);
    assert_null(mope_eval_md_table(hdr, 3, cells, 3, "lrx", &err));
    assert_non_null(strstr(err.msg, "alignment"));
    assert_null(mope_eval_md_table(hdr, 0, cells, 1, NULL, &err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_checker),
        cmocka_unit_test(test_bars),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_md_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
