/* The evaluation's aggregation and reports on a hand-made results table:
 * means, win/tie/loss, the "target >= every baseline" count, results.md
 * and summary.json, all against values worked out by hand below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "mope/eval.h"

/* 3 prompts x 2 combinations x 4 methods:
 *            combo X (p0, p1, p2)     combo Y
 * mope       0.8  0.5  -              0.7 0.7 0.7
 * A          0.6  0.5  0.9            0.1 0.2 0.3
 * B          0.9  0.4  0.1            -   -   -
 * mope@k5    0.99 everywhere (a study variant: never compared)
 * By hand: means X: mope 0.65, A 2/3, B 7/15; Y: mope 0.7, A 0.2.
 * mope vs A: X 1 win (p0) 1 tie (p1), p2 skipped; Y 3 wins.
 * mope vs B: X 1 win (p1) 1 loss (p0).
 * mope >= every baseline: X no (0.65 < 2/3), Y yes -> 1 of 2.
 * Strongest baseline: A in both.  Paired gap mope - A: X over p0, p1 (p2
 * has no mope) 0.2, 0.0: mean 0.1, sd sqrt(0.02 / 1), se sd / sqrt(2) =
 * 0.1; Y 0.6, 0.5, 0.4: mean 0.5, sd 0.1, se 0.1 / sqrt(3).  Beyond two
 * standard errors: X no (0.1 < 0.2), Y ahead.  RM mirror: strongest in X
 * is B (8/15 > 1/3), gaps mope - B 0.1, -0.1: mean 0, se 0.1; Y -0.5. */
static const double TAB[4][2][3] = {
    {{0.8, 0.5, NAN}, {0.7, 0.7, 0.7}},
    {{0.6, 0.5, 0.9}, {0.1, 0.2, 0.3}},
    {{0.9, 0.4, 0.1}, {NAN, NAN, NAN}},
    {{0.99, 0.99, 0.99}, {0.99, 0.99, 0.99}},
};

static void fill(mope_eval_results *r) {
    const char *combos[] = {"X", "Y"}, *methods[] = {"mope", "A", "B", "mope@k5"};
    const unsigned char role[] = {MOPE_EVAL_ROLE_TARGET, MOPE_EVAL_ROLE_BASELINE, MOPE_EVAL_ROLE_BASELINE,
                                  MOPE_EVAL_ROLE_STUDY};
    mope_error err = {0};
    assert_int_equal(mope_eval_results_init(r, 3, combos, 2, methods, role, 4, &err), 0);
    for (int m = 0; m < 4; m++)
        for (int c = 0; c < 2; c++)
            for (int p = 0; p < 3; p++) {
                *mope_eval_cell(r, MOPE_EVAL_LABELER, p, c, m) = TAB[m][c][p];
                /* the RM utility is the labeler's mirror image: the ranking flips */
                *mope_eval_cell(r, MOPE_EVAL_RM, p, c, m) = 1.0 - TAB[m][c][p];
            }
}

static void test_means_and_counts(void **state) {
    (void)state;
    mope_eval_results r;
    fill(&r);
    assert_int_equal(mope_eval_target(&r), 0);
    assert_int_equal(mope_eval_method_index(&r, "B"), 2);
    assert_int_equal(mope_eval_method_index(&r, "C"), -1);
    assert_int_equal(mope_eval_combo_index(&r, "Y"), 1);
    assert_null(mope_eval_cell(&r, MOPE_EVAL_LABELER, 3, 0, 0));
    double means[8], avg[4];
    mope_eval_means(&r, MOPE_EVAL_LABELER, means, avg);
    assert_float_equal(means[0 * 2 + 0], 0.65, 1e-12);
    assert_float_equal(means[0 * 2 + 1], 0.7, 1e-12);
    assert_float_equal(means[1 * 2 + 0], 2.0 / 3.0, 1e-12);
    assert_float_equal(means[1 * 2 + 1], 0.2, 1e-12);
    assert_float_equal(means[2 * 2 + 0], 1.4 / 3.0, 1e-12);
    assert_true(isnan(means[2 * 2 + 1]));
    assert_float_equal(avg[0], 0.675, 1e-12);
    assert_float_equal(avg[1], (2.0 / 3.0 + 0.2) / 2, 1e-12);
    assert_float_equal(avg[2], 1.4 / 3.0, 1e-12); /* B's average is over the one combination it has */

    int valid = -1;
    assert_int_equal(mope_eval_count_best(means, 4, 2, r.role, 0, 1e-9, &valid), 1);
    assert_int_equal(valid, 2);
    /* a tolerance wider than 2/3 - 0.65 turns X into a tie, which counts */
    assert_int_equal(mope_eval_count_best(means, 4, 2, r.role, 0, 0.02, NULL), 2);
    /* the study variant (0.99) is not a baseline: were it one, mope would win nowhere */
    unsigned char all_base[4] = {MOPE_EVAL_ROLE_TARGET, 1, 1, MOPE_EVAL_ROLE_BASELINE};
    assert_int_equal(mope_eval_count_best(means, 4, 2, all_base, 0, 1e-9, NULL), 0);
    /* B as the target: Y has no B value, so only X counts, where A (2/3) beats it */
    assert_int_equal(mope_eval_count_best(means, 4, 2, r.role, 2, 1e-9, &valid), 0);
    assert_int_equal(valid, 1);
    assert_int_equal(mope_eval_count_best(means, 4, 2, r.role, -1, 1e-9, &valid), 0);
    assert_int_equal(valid, 0);

    mope_eval_wtl w = mope_eval_wtl_of(&r, MOPE_EVAL_LABELER, 0, 0, 1, 1e-9);
    assert_int_equal(w.win, 1);
    assert_int_equal(w.tie, 1);
    assert_int_equal(w.loss, 0);
    w = mope_eval_wtl_of(&r, MOPE_EVAL_LABELER, 1, 0, 1, 1e-9);
    assert_int_equal(w.win, 3);
    assert_int_equal(w.tie + w.loss, 0);
    w = mope_eval_wtl_of(&r, MOPE_EVAL_LABELER, 0, 0, 2, 1e-9);
    assert_int_equal(w.win, 1);
    assert_int_equal(w.tie, 0);
    assert_int_equal(w.loss, 1);
    /* the RM mirror flips wins and losses */
    w = mope_eval_wtl_of(&r, MOPE_EVAL_RM, 1, 0, 1, 1e-9);
    assert_int_equal(w.loss, 3);

    assert_int_equal(mope_eval_strongest(means, 4, 2, r.role, 0), 1);
    assert_int_equal(mope_eval_strongest(means, 4, 2, r.role, 1), 1);
    const unsigned char no_base[4] = {MOPE_EVAL_ROLE_TARGET, MOPE_EVAL_ROLE_STUDY, MOPE_EVAL_ROLE_STUDY,
                                      MOPE_EVAL_ROLE_STUDY};
    assert_int_equal(mope_eval_strongest(means, 4, 2, no_base, 0), -1);
    mope_eval_gap gp = mope_eval_gap_of(&r, MOPE_EVAL_LABELER, 0, 0, 1);
    assert_int_equal(gp.n, 2);
    assert_float_equal(gp.mean, 0.1, 1e-12);
    assert_float_equal(gp.se, 0.1, 1e-12);
    gp = mope_eval_gap_of(&r, MOPE_EVAL_LABELER, 1, 0, 1);
    assert_int_equal(gp.n, 3);
    assert_float_equal(gp.mean, 0.5, 1e-12);
    assert_float_equal(gp.se, 0.1 / sqrt(3.0), 1e-12);
    gp = mope_eval_gap_of(&r, MOPE_EVAL_LABELER, 1, 0, 2); /* B has no Y values */
    assert_int_equal(gp.n, 0);
    assert_true(isnan(gp.mean) && isnan(gp.se));
    double rm_means[8];
    mope_eval_means(&r, MOPE_EVAL_RM, rm_means, NULL);
    assert_int_equal(mope_eval_strongest(rm_means, 4, 2, r.role, 0), 2);
    gp = mope_eval_gap_of(&r, MOPE_EVAL_RM, 0, 0, 2);
    assert_float_equal(gp.mean, 0.0, 1e-12);
    assert_float_equal(gp.se, 0.1, 1e-12);

    const double a[] = {1, 2, 3, NAN, 5}, b[] = {1, 1, 4, 0, INFINITY};
    w = mope_eval_compare(a, b, 5, 0);
    assert_int_equal(w.win, 1);
    assert_int_equal(w.tie, 1);
    assert_int_equal(w.loss, 1);
    w = mope_eval_compare(a, b, 5, 1.0); /* |difference| <= 1 ties */
    assert_int_equal(w.tie, 3);
    /* the average test compares on the baseline's own combinations: the
     * target's 0.7 over both is above B's 0.6, but B's one combination has
     * the target at 0.5 */
    {
        const unsigned char role[2] = {MOPE_EVAL_ROLE_TARGET, MOPE_EVAL_ROLE_BASELINE};
        const double mt[4] = {0.5, 0.9, 0.6, NAN};
        assert_int_equal(mope_eval_avg_ok(mt, 2, 2, role, 0, 1e-9), 0);
        const double mt2[4] = {0.6, 0.1, 0.6, NAN}; /* a tie within eps on X passes, Y is not compared */
        assert_int_equal(mope_eval_avg_ok(mt2, 2, 2, role, 0, 1e-9), 1);
        const double mt3[4] = {NAN, 0.9, 0.6, NAN}; /* nothing shared */
        assert_int_equal(mope_eval_avg_ok(mt3, 2, 2, role, 0, 1e-9), -1);
    }
    int cnt = -1;
    assert_float_equal(mope_eval_mean(a, 5, &cnt), 11.0 / 4, 1e-12);
    assert_int_equal(cnt, 4);
    const double none[] = {NAN, INFINITY};
    assert_true(isnan(mope_eval_mean(none, 2, &cnt)));
    assert_int_equal(cnt, 0);
    mope_eval_results_free(&r);
}

static void test_report_md(void **state) {
    (void)state;
    mope_eval_results r;
    fill(&r);
    const int topk[4] = {0, 0, 0, 5};
    const char *notes[] = {"a note | with a bar"};
    mope_eval_report_info info = {.title = "T", .command = "mope eval --x", .tie_eps = 1e-9, .have_labeler = true,
                                  .have_rm = true, .topk = topk, .notes = notes, .n_notes = 1};
    mope_error err = {0};
    char *md = mope_eval_report_md(&r, &info, &err);
    assert_non_null(md);
    assert_non_null(strstr(md, "## Mean labeler utility"));
    assert_non_null(strstr(md, "## Mean reward-model utility"));
    assert_non_null(strstr(md, "**mope >= every baseline on 1 of 2 combinations**; on average (each baseline against the target "
                                 "over the combinations it covers): yes."));
    /* RM is the mirror: mope is best nowhere, and its average is below A's */
    assert_non_null(strstr(md, "**mope >= every baseline on 0 of 2 combinations**; on average (each baseline against the target "
                                 "over the combinations it covers): no."));
    /* the margin tables under each means table */
    const char *mg = strstr(md, "Margin of mope over the strongest baseline");
    assert_non_null(mg);
    assert_non_null(strstr(mg, "| strongest baseline |      A |      A |"));
    assert_non_null(strstr(mg, "| gap (mope - it)    | +0.100 | +0.500 |"));
    assert_non_null(strstr(mg, "| standard error     |  0.100 |  0.058 |"));
    assert_non_null(strstr(mg, "Beyond two standard errors: ahead on 1, behind on 0 of 2 combinations"));
    mg = strstr(mg + 1, "Margin of mope over the strongest baseline");
    assert_non_null(mg);
    assert_non_null(strstr(mg, "| strongest baseline |      B |      A |"));
    assert_non_null(strstr(mg, "Beyond two standard errors: ahead on 0, behind on 1 of 2 combinations"));
    /* the means row of mope (labeler): X 0.650, Y 0.700 (bold: best of the column), average 0.675 (bold) */
    assert_non_null(strstr(md, "| mope (target) |     0.650 | **0.700** | **0.675** |"));
    assert_non_null(strstr(md, "**0.700**"));
    assert_non_null(strstr(md, "**0.675**"));
    /* B has no value in Y */
    assert_non_null(strstr(md, "| B             |     0.467 |         - |     0.467 |"));
    /* the win table (by labeler): A 1/1/0 and 3/0/0, total 4/1/0, rate 4.5/5; B 1/0/1, -, 1/0/1, 0.5 */
    const char *w = strstr(md, "## Win / tie / loss of mope");
    assert_non_null(w);
    assert_non_null(strstr(w, "| A        | 1/1/0 | 3/0/0 |       4/1/0 |    0.900 |"));
    assert_non_null(strstr(w, "| B        | 1/0/1 |     - |       1/0/1 |    0.500 |"));
    /* the study variant is not a baseline row, and appears in the top-k table as k = 5 */
    assert_null(strstr(w, "| mope@k5"));
    const char *tk = strstr(md, "## Top-k study");
    assert_non_null(tk);
    assert_non_null(strstr(tk, "| 5    | 0.990 / 0.010 |"));
    assert_non_null(strstr(tk, "| full | 0.650 / 0.350 | 0.700 / 0.300 | 0.675 / 0.325 |"));
    assert_non_null(strstr(md, "* a note | with a bar"));
    assert_non_null(strstr(md, "```\nmope eval --x\n```"));
    free(md);

    /* without labelers the win table falls back to the RM utility */
    info.have_labeler = false;
    md = mope_eval_report_md(&r, &info, &err);
    assert_non_null(md);
    assert_non_null(strstr(md, "No labelers were run."));
    assert_non_null(strstr(md, "by reward-model utility"));
    assert_non_null(strstr(md, "| A        | 0/1/1 | 0/0/3 |"));
    free(md);
    mope_eval_results_free(&r);
}

static void test_report_json(void **state) {
    (void)state;
    mope_eval_results r;
    fill(&r);
    const int topk[4] = {0, 0, 0, 5};
    mope_eval_report_info info = {.tie_eps = 1e-9, .have_labeler = true, .have_rm = false, .topk = topk};
    mope_error err = {0};
    char *js = mope_eval_report_json(&r, &info, &err);
    assert_non_null(js);
    cJSON *o = cJSON_Parse(js);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "target")->valuestring, "mope");
    cJSON *lab = cJSON_GetObjectItem(o, "labeler");
    assert_non_null(lab);
    assert_null(cJSON_GetObjectItem(o, "rm"));
    assert_int_equal(cJSON_GetObjectItem(lab, "target_best_combos")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(lab, "target_valid_combos")->valueint, 2);
    cJSON *means = cJSON_GetObjectItem(lab, "means");
    assert_float_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(means, "A"), "X")->valuedouble, 2.0 / 3, 1e-9);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(means, "B"), "Y")));
    cJSON *gx = cJSON_GetObjectItem(cJSON_GetObjectItem(lab, "gap_to_strongest"), "X");
    assert_string_equal(cJSON_GetObjectItem(gx, "baseline")->valuestring, "A");
    assert_float_equal(cJSON_GetObjectItem(gx, "mean")->valuedouble, 0.1, 1e-9);
    assert_float_equal(cJSON_GetObjectItem(gx, "se")->valuedouble, 0.1, 1e-9);
    assert_int_equal(cJSON_GetObjectItem(gx, "n")->valueint, 2);
    cJSON *wy = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(lab, "wtl"), "A"), "Y");
    assert_int_equal(cJSON_GetArraySize(wy), 3);
    assert_int_equal(cJSON_GetArrayItem(wy, 0)->valueint, 3);
    assert_int_equal(cJSON_GetArrayItem(wy, 2)->valueint, 0);
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(lab, "wtl"), "mope@k5"));
    cJSON *m3 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "methods"), 3);
    assert_string_equal(cJSON_GetObjectItem(m3, "role")->valuestring, "study");
    assert_int_equal(cJSON_GetObjectItem(m3, "topk")->valueint, 5);
    cJSON_Delete(o);
    free(js);
    mope_eval_results_free(&r);
}

static void test_bad_table(void **state) {
    (void)state;
    mope_eval_results r;
    mope_error err = {0};
    const char *c[] = {"X"}, *m[] = {"a"};
    assert_int_equal(mope_eval_results_init(&r, 1, c, 0, m, NULL, 1, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "combination"));
    assert_int_equal(mope_eval_results_init(&r, -1, c, 1, m, NULL, 1, &err), MOPE_EINVAL);
    /* role NULL: method 0 is the target */
    assert_int_equal(mope_eval_results_init(&r, 0, c, 1, m, NULL, 1, &err), 0);
    assert_int_equal(mope_eval_target(&r), 0);
    mope_eval_results_free(&r);
    mope_eval_results_free(&r); /* freeing twice is harmless */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_means_and_counts),
        cmocka_unit_test(test_report_md),
        cmocka_unit_test(test_report_json),
        cmocka_unit_test(test_bad_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
