/* mope eval: every method x every preference combination on held-out
 * prompts (DESIGN.md §1 "Baselines", §7), scored by the reward models
 * (Bradley-Terry normalised against the bundle's reference responses) and,
 * separately, by labelers; win rates of MoPE against each baseline; a
 * top-k study of black-box mode; Markdown tables and SVG charts.
 *
 * Three layers, each usable alone:
 *  - the results table and its aggregation (means per method and
 *    combination, win/tie/loss counts, "MoPE >= every baseline" counts) and
 *    the report text (src/eval/eval_table.c, eval_report.c);
 *  - small writers: Markdown tables and SVG charts, grouped bars and lines
 *    (src/eval/eval_md.c, svg.c), no external library;
 *  - the run: generations for every (prompt, combination, method) through
 *    a mope_runner (include/mope/method.h), scores, generations.jsonl,
 *    results.md, utility.svg, weights.svg and summary.json in a folder
 *    (src/eval/eval_run*.c).
 *
 * Labelers (PrefBench's, src/prefbench) live above this module in the
 * dependency order, so the run takes them as a callback: the CLI plugs in
 * mope_prefbench_label. */
#ifndef MOPE_EVAL_H
#define MOPE_EVAL_H

#include "mope/core.h"
#include "mope/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Results table and aggregation                                       */
/* ------------------------------------------------------------------ */

/* Utilities of every (prompt, combination, method): NaN where a cell has
 * no value (not run, or the method does not apply to the combination, as a
 * single expert of a choice outside it). */
typedef struct mope_eval_results {
    int n_prompts, n_combos, n_methods;
    char **combos;          /* "P1A+P2B+P3A" */
    char **methods;         /* "mope", "prompt", "expert:P1A", "mope@k5", ... */
    unsigned char *role;    /* per method: MOPE_EVAL_ROLE_* */
    double *u_lab;          /* [prompt][combo][method] labeler utility */
    double *u_rm;           /* [prompt][combo][method] reward-model utility */
} mope_eval_results;

enum {
    MOPE_EVAL_ROLE_TARGET = 0,   /* the method under test (mope) */
    MOPE_EVAL_ROLE_BASELINE = 1, /* compared against the target */
    MOPE_EVAL_ROLE_STUDY = 2,    /* a variant of the target (top-k study): reported, not compared */
};

enum { MOPE_EVAL_LABELER = 0, MOPE_EVAL_RM = 1 };

/* Allocates the cells (all NaN) and copies the names; role NULL = method 0
 * is the target, the others baselines. */
int mope_eval_results_init(mope_eval_results *r, int n_prompts, const char *const *combos, int n_combos,
                           const char *const *methods, const unsigned char *role, int n_methods, mope_error *err);
void mope_eval_results_free(mope_eval_results *r);
/* Address of a cell; which = MOPE_EVAL_LABELER or MOPE_EVAL_RM. */
double *mope_eval_cell(mope_eval_results *r, int which, int prompt, int combo, int method);
double mope_eval_get(const mope_eval_results *r, int which, int prompt, int combo, int method);
/* Index of a method / combination by name, or -1. */
int mope_eval_method_index(const mope_eval_results *r, const char *name);
int mope_eval_combo_index(const mope_eval_results *r, const char *name);
/* The (first) target method, or -1. */
int mope_eval_target(const mope_eval_results *r);

/* Mean of the finite values among x[0..n) (NaN when none); *count (may be
 * NULL) receives how many there were. */
double mope_eval_mean(const double *x, int n, int *count);

/* Means over prompts: means[method * n_combos + combo] (NaN for an empty
 * cell) and, when avg is non-NULL, avg[method] = the mean of that method's
 * finite per-combination means (NaN when none). */
void mope_eval_means(const mope_eval_results *r, int which, double *means, double *avg);

typedef struct mope_eval_wtl {
    int win, tie, loss;
} mope_eval_wtl;

/* Paired comparison of a against b over n items: a win when a > b + eps, a
 * loss when a < b - eps, else a tie; pairs with a non-finite side are
 * skipped. */
mope_eval_wtl mope_eval_compare(const double *a, const double *b, int n, double eps);
/* The same per prompt for methods ma vs mb in one combination. */
mope_eval_wtl mope_eval_wtl_of(const mope_eval_results *r, int which, int combo, int ma, int mb, double eps);

/* Over a means table m[method * n_combos + combo]: the number of
 * combinations in which method target is >= every baseline (role ==
 * MOPE_EVAL_ROLE_BASELINE) that has a value there, minus eps.  A
 * combination where the target has no value does not count; *n_valid (may
 * be NULL) receives how many combinations had a target value. */
int mope_eval_count_best(const double *m, int n_methods, int n_combos, const unsigned char *role, int target,
                         double eps, int *n_valid);

/* Over the same means table: 1 when, for every baseline, the target's mean
 * over the combinations that baseline has a value in is >= the baseline's
 * own mean over them, minus eps (a single expert runs only in the
 * combinations that choose it, so it is compared on those, not against the
 * target's average over all); 0 when some baseline is ahead; -1 when no
 * baseline shares a combination with the target. */
int mope_eval_avg_ok(const double *m, int n_methods, int n_combos, const unsigned char *role, int target,
                     double eps);

/* The baseline with the highest mean in one combination of a means table
 * (ties: the first), or -1 when no baseline has a value there. */
int mope_eval_strongest(const double *m, int n_methods, int n_combos, const unsigned char *role, int combo);

/* Per-prompt paired difference ma - mb in one combination, over the prompts
 * where both have a value: its mean, its standard error (sample standard
 * deviation / sqrt(n); NaN when n < 2) and n.  The gap between two means
 * on the same prompts and seeds is judged against se, not against the
 * spread of either method alone. */
typedef struct mope_eval_gap {
    double mean, se;
    int n;
} mope_eval_gap;
mope_eval_gap mope_eval_gap_of(const mope_eval_results *r, int which, int combo, int ma, int mb);

/* ------------------------------------------------------------------ */
/* Markdown tables                                                     */
/* ------------------------------------------------------------------ */

/* A GitHub-flavoured Markdown table, malloc'd: the header row, the
 * alignment row (align[c] = 'l', 'r' or 'c'; align NULL = all left) and
 * n_rows rows of cells[row * n_cols + col] (NULL = empty).  Columns are
 * padded to a common width (in characters, UTF-8 aware); '|' in a cell is
 * escaped as "\|" and line breaks become spaces, so any text is safe. */
char *mope_eval_md_table(const char *const *header, int n_cols, const char *const *cells, int n_rows,
                         const char *align, mope_error *err);

/* ------------------------------------------------------------------ */
/* SVG charts                                                          */
/* ------------------------------------------------------------------ */

/* Grouped bar chart: n_groups groups along x (labels groups[]), in each
 * one bar per series (legend series[]) of height values[s * n_groups + g]
 * (a non-finite value draws no bar).  The y axis starts at min(0, lowest
 * value) and ends at a round number >= the highest.  Bars carry
 * class="bar" and data-value; text is XML-escaped.  Malloc'd document. */
char *mope_eval_svg_bars(const char *title, const char *y_label, const char *const *groups, int n_groups,
                         const char *const *series, int n_series, const double *values, mope_error *err);

/* Line chart: n_series lines (legend series[]) over x = 0..n_points-1, the
 * y of line s at x being values[s * n_points + x] (a non-finite value
 * breaks the line).  Each line is one <polyline class="line"> (or several
 * where broken).  Malloc'd document. */
char *mope_eval_svg_lines(const char *title, const char *x_label, const char *y_label, const char *const *series,
                          int n_series, const double *values, int n_points, mope_error *err);


/* ------------------------------------------------------------------ */
/* Reports from a results table                                        */
/* ------------------------------------------------------------------ */

typedef struct mope_eval_report_info {
    const char *title;          /* first heading; NULL: "Evaluation" */
    const char *command;        /* the command line, shown verbatim (may be NULL) */
    const char *settings;       /* one line of sampling settings (may be NULL) */
    double tie_eps;             /* |a - b| <= tie_eps is a tie */
    bool have_labeler, have_rm; /* which utilities were measured */
    const int *topk;            /* the top-k study's k per study method, in method order (<= 0: none) */
    const char *const *notes;   /* lines listed under "Notes" */
    int n_notes;
} mope_eval_report_info;

/* results.md: the tables of mean utility (labeler, then reward models) per
 * method x combination with an average column and the count of
 * combinations where the target is >= every baseline; the win/tie/loss
 * table of the target against each baseline per combination (by labeler
 * utility when measured, else reward-model utility); the top-k table of the
 * study methods; the notes.  Malloc'd. */
char *mope_eval_report_md(const mope_eval_results *r, const mope_eval_report_info *info, mope_error *err);
/* summary.json: the same numbers as JSON (means, averages, counts,
 * win/tie/loss).  Malloc'd. */
char *mope_eval_report_json(const mope_eval_results *r, const mope_eval_report_info *info, mope_error *err);
/* utility.svg: grouped bars, one group per combination plus "average", one
 * bar per method that is not a study variant. */
char *mope_eval_report_svg(const mope_eval_results *r, int which, mope_error *err);


/* ------------------------------------------------------------------ */
/* The run: `mope eval` (src/eval/eval_run*.c)                          */
/* ------------------------------------------------------------------ */

/* A labeler: the utility in [0, 1] of response for each of n choices (ids
 * like "P1A") into out[n].  concept may be NULL (the labeler derives it). */
typedef int (*mope_eval_label_fn)(void *user, const char *prompt, const char *concept, const char *response,
                                  const char *const *choices, int n_choices, double *out, mope_error *err);

typedef struct mope_eval_progress {
    long done, total;       /* generations (skipped ones from a resumed file count as done) */
    long resumed;           /* of done, taken from an existing generations.jsonl */
    double elapsed_s, eta_s; /* eta_s < 0: unknown yet */
    const char *combo, *method; /* what is running now */
} mope_eval_progress;

typedef void (*mope_eval_progress_fn)(void *user, const mope_eval_progress *p);
/* Informative lines (a method skipped and why, ...). */
typedef void (*mope_eval_note_fn)(void *user, const char *line);

typedef struct mope_eval_opts {
    const char *bundle;         /* manifest path (required) */
    const char *prompts;        /* JSONL {"id","prompt"[,"concept"]} (required) */
    const char *out_dir;        /* created if missing (required) */
    int n_prompts;              /* first N prompts; 0: all */
    const char *const *methods; /* method names (mope_method_parse, plus "experts" = every chosen expert);
                                   NULL: every available one */
    int n_methods;
    const char *const *combos;  /* "P1A+P2B+P3A" (or comma-free "P1A P2B"); NULL: every full combination */
    int n_combos;
    const char *target;         /* compared against the baselines; NULL: "mope" when available, else none */
    bool topk_study;            /* the target also at k = topk_ks (black-box mode) */
    const int *topk_ks;         /* NULL: 1, 5, 20 */
    int n_topk;
    mope_sampler_params sampler;
    int max_tokens;             /* per response (>= 1) */
    float min_weight;           /* mope_gen_opts.min_weight (mope_eval_opts_init: 0.01) */
    int n_threads;              /* 0: all CPUs */
    int max_batch;              /* prompts per batch; 0: 4 */
    double tie_eps;             /* win/tie/loss tolerance */
    bool no_resume;             /* regenerate everything (else reuse matching records) */
    const char *command;        /* the command line, for results.md (may be NULL) */
    mope_eval_label_fn label;   /* NULL: no labeler scores */
    void *label_user;
    mope_eval_progress_fn progress;
    mope_eval_note_fn note;
    void *log_user;
} mope_eval_opts;

/* Defaults: sampler defaults, 128 tokens, tie_eps 1e-9, the rest 0 / NULL. */
void mope_eval_opts_init(mope_eval_opts *o);

/* Runs the evaluation and writes out_dir/{generations.jsonl, results.md,
 * utility.svg, weights.svg (when a target method ran), summary.json}.
 * Generations are appended to generations.jsonl as they finish; a rerun
 * with the same settings skips the (id, preference, method) records already
 * there.  Deterministic for a seed: the seed of a generation depends only
 * on the seed, the prompt's position and the combination (the same for
 * every method, so methods are compared on common random numbers). */
int mope_eval_run(const mope_eval_opts *o, mope_error *err);

#ifdef __cplusplus
}
#endif
#endif
