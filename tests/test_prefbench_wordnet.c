/* PrefBench WordNet reader and English helpers: facts of known synsets read
 * from the installed WordNet 3.0 (checked by hand against `wn glacier
 * -over`-style lookups of data.noun), sense counts from cntlist.rev, load
 * time, clear errors with line numbers for malformed files, plurals and
 * articles against hand-written expectations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mope/prefbench.h"

static mope_wordnet *g_wn;

static int setup(void **state) {
    (void)state;
    mope_error err = {0};
    double t0 = mope_time_s();
    g_wn = mope_wordnet_load(NULL, &err);
    if (!g_wn) {
        fprintf(stderr,
                "WordNet 3.0 is required at " MOPE_PREFBENCH_WORDNET_DIR
                ": install the Debian package wordnet-base (scripts/deps.sh installs it). Error: %s\n",
                err.msg);
        return -1;
    }
    double dt = mope_time_s() - t0;
    fprintf(stderr, "WordNet noun database loaded in %.3f s\n", dt);
    /* "well under a few seconds", with room for a sanitizer build */
    if (dt > 3.0) {
        fprintf(stderr, "loading WordNet took %.2f s (limit 3 s)\n", dt);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mope_wordnet_free(g_wn);
    return 0;
}

static const mope_wn_synset *first_sense(const char *lemma, int *count) {
    const int32_t *syn, *cnt;
    int n = mope_wordnet_senses(g_wn, lemma, &syn, &cnt);
    assert_true(n > 0);
    if (count) *count = cnt[0];
    return mope_wordnet_synset(g_wn, syn[0]);
}

static int has_ptr(const mope_wn_synset *s, int kind, const char *lemma) {
    for (int i = 0; i < s->n_ptrs; i++) {
        if (s->ptrs[i].kind != kind) continue;
        const mope_wn_synset *t = mope_wordnet_synset(g_wn, s->ptrs[i].target);
        for (int j = 0; j < t->n_lemmas; j++)
            if (strcmp(t->lemmas[j], lemma) == 0) return 1;
    }
    return 0;
}

static void test_counts(void **state) {
    (void)state;
    /* WordNet 3.0 has 82115 noun synsets and 117798 noun lemmas */
    assert_int_equal(mope_wordnet_n_synsets(g_wn), 82115);
    assert_int_equal(mope_wordnet_n_lemmas(g_wn), 117798);
}

static void test_glacier(void **state) {
    (void)state;
    int count;
    const mope_wn_synset *s = first_sense("glacier", &count);
    assert_int_equal(s->offset, 9289331);
    assert_string_equal(mope_wordnet_lexname(s->lexfile), "noun.object");
    assert_string_equal(s->definition, "a slowly moving mass of ice");
    assert_int_equal(s->n_examples, 0);
    assert_int_equal(count, 1); /* glacier%1:17:00:: 1 1 */
    assert_true(has_ptr(s, MOPE_WN_HYPERNYM, "ice mass"));
    assert_true(has_ptr(s, MOPE_WN_HYPONYM, "Alpine glacier"));
    assert_true(has_ptr(s, MOPE_WN_PART_MERONYM, "moraine"));
    assert_true(has_ptr(s, MOPE_WN_SUBSTANCE_MERONYM, "ice"));
    assert_false(has_ptr(s, MOPE_WN_HYPERNYM, "moraine"));
}

static void test_dog_and_domains(void **state) {
    (void)state;
    int count;
    const mope_wn_synset *s = first_sense("dog", &count);
    const int32_t *syn;
    assert_int_equal(mope_wordnet_senses(g_wn, "Dog", &syn, NULL), 7); /* case-insensitive */
    assert_int_equal(count, 42);
    assert_int_equal(s->n_lemmas, 3);
    assert_string_equal(s->lemmas[1], "domestic dog");
    assert_string_equal(s->lemmas[2], "Canis familiaris");
    assert_int_equal(s->n_examples, 1);
    assert_string_equal(s->examples[0], "the dog barked all night");
    /* the definition stops before the examples and keeps its own clauses */
    assert_non_null(strstr(s->definition, "occurs in many breeds"));
    assert_null(strchr(s->definition, '"'));
    assert_true(has_ptr(s, MOPE_WN_MEMBER_HOLONYM, "Canis"));
    assert_true(has_ptr(s, MOPE_WN_PART_MERONYM, "flag"));
    /* domain pointers: a touchdown belongs to American football, a cell to biology */
    s = first_sense("touchdown", NULL);
    assert_true(has_ptr(s, MOPE_WN_DOMAIN_TOPIC, "American football"));
    s = mope_wordnet_synset(g_wn, mope_wordnet_find_offset(g_wn, 6484)); /* cell, the biological unit */
    assert_string_equal(s->lemmas[0], "cell");
    assert_true(has_ptr(s, MOPE_WN_DOMAIN_TOPIC, "biology"));
    assert_true(has_ptr(s, MOPE_WN_PART_HOLONYM, "organism"));
    /* multi-word lemmas accept spaces or underscores */
    assert_true(mope_wordnet_senses(g_wn, "ice_mass", NULL, NULL) == 1);
    assert_true(mope_wordnet_senses(g_wn, "ice mass", NULL, NULL) == 1);
    assert_int_equal(mope_wordnet_senses(g_wn, "qwzxv", NULL, NULL), 0);
}

static void test_word_counts(void **state) {
    (void)state;
    /* inflected forms reduce to their base (morphy rules and .exc lists) */
    assert_int_equal(mope_wordnet_word_count(g_wn, "glaciers"), mope_wordnet_word_count(g_wn, "glacier"));
    assert_true(mope_wordnet_word_count(g_wn, "made") >= mope_wordnet_word_count(g_wn, "make"));
    assert_true(mope_wordnet_word_count(g_wn, "make") > 100);
    assert_true(mope_wordnet_word_count(g_wn, "children") > 50);
    assert_int_equal(mope_wordnet_word_count(g_wn, "meronymically"), 0);
    assert_int_equal(mope_wordnet_word_count(g_wn, "qwzxv"), 0);
}

static void test_plural_article(void **state) {
    (void)state;
    struct {
        const char *s, *p;
    } cases[] = {{"glacier", "glaciers"}, {"city", "cities"},      {"day", "days"},
                 {"box", "boxes"},        {"church", "churches"},  {"bus", "buses"},
                 {"knife", "knives"},     {"child", "children"},   {"mouse", "mice"},
                 {"analysis", "analyses"}, {"brother", "brothers"}, {"colon", "colons"},
                 {"woman", "women"},      {"human", "humans"},     {"person", "people"},
                 {"sheep", "sheep"},      {"cup of tea", "cups of tea"}, {"ice cream cone", "ice cream cones"},
                 {"potato", "potatoes"},  {"photo", "photos"}};
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_true(mope_prefbench_plural(g_wn, cases[i].s, buf, sizeof buf) > 0);
        if (strcmp(buf, cases[i].p) != 0) fprintf(stderr, "plural(%s) = %s, want %s\n", cases[i].s, buf, cases[i].p);
        assert_string_equal(buf, cases[i].p);
    }
    assert_true(mope_prefbench_plural(g_wn, "glacier", buf, 5) < 0); /* too small: error, not overflow */
    const char *an[] = {"apple", "ice", "hour", "honest", "umbrella", "elephant", "owl"};
    const char *a[] = {"glacier", "unit", "euro", "one", "user", "house", "university"};
    for (size_t i = 0; i < sizeof an / sizeof *an; i++) assert_string_equal(mope_prefbench_article(an[i]), "an");
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) assert_string_equal(mope_prefbench_article(a[i]), "a");
}

/* ---- malformed files ---- */
static char g_dir[512];

static void write_file(const char *name, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_db(const char *data) {
    snprintf(g_dir, sizeof g_dir, "%s/prefbench_wn_bad_%ld", MOPE_BINARY_DIR, (long)getpid());
    mkdir(g_dir, 0777);
    write_file("data.noun", data);
    write_file("index.noun", "thing n 1 1 @ 1 0 00000100\n");
    write_file("cntlist.rev", "thing%1:03:00:: 1 5\n");
    write_file("noun.exc", "");
    write_file("verb.exc", "");
    write_file("adj.exc", "");
}

static void remove_db(void) {
    const char *names[] = {"data.noun", "index.noun", "cntlist.rev", "noun.exc", "verb.exc", "adj.exc"};
    char path[1200];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        remove(path);
    }
    rmdir(g_dir);
}

static void test_bad_files(void **state) {
    (void)state;
    const char *good_line = "00000100 03 n 01 thing 0 000 | a separate entity; \"a thing of beauty\"\n";
    mope_error err = {0};
    /* a valid two-line database loads, with the example split off */
    make_db("  license header line\n00000100 03 n 01 thing 0 000 | a separate entity; \"a thing of beauty\"\n");
    mope_wordnet *wn = mope_wordnet_load(g_dir, &err);
    assert_non_null(wn);
    const mope_wn_synset *s = mope_wordnet_synset(wn, 0);
    assert_string_equal(s->definition, "a separate entity");
    assert_int_equal(s->n_examples, 1);
    assert_string_equal(s->examples[0], "a thing of beauty");
    int32_t const *cnt;
    assert_int_equal(mope_wordnet_senses(wn, "thing", NULL, &cnt), 1);
    assert_int_equal(cnt[0], 5);
    mope_wordnet_free(wn);
    remove_db();

    struct {
        const char *data, *want;
    } bad[] = {
        {"  header\n00000100 03 n 01 thing 0 000 a separate entity\n", "line 2"},         /* no ' | ' */
        {"  header\n  header\n00000100 03 x 01 thing 0 000 | x\n", "line 3"},               /* bad ss_type */
        {"00000100 03 n 01 thing 0 001 @ 9999 n | x\n", "line 1"},                         /* short pointer */
        {"00000100 03 n 01 thing 0 001 @ 00000999 n 0000 | x\n", "missing synset"},         /* dangling */
        {"00000100 03 n zz thing 0 000 | x\n", "line 1"},                                  /* bad word count */
        {"00000100 99 n 01 thing 0 000 | x\n", "lexicographer"},                           /* bad lexfile */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        make_db(bad[i].data);
        memset(&err, 0, sizeof err);
        wn = mope_wordnet_load(g_dir, &err);
        if (wn || !strstr(err.msg, bad[i].want)) fprintf(stderr, "case %zu: %s\n", i, err.msg);
        assert_null(wn);
        assert_int_equal(err.code, MOPE_EFORMAT);
        assert_non_null(strstr(err.msg, bad[i].want));
        assert_non_null(strstr(err.msg, "data.noun"));
        remove_db();
    }
    /* a bad index line names index.noun and its line */
    make_db(good_line);
    write_file("index.noun", "thing n 1 1 @ 1 0 00000100\nbroken n x\n");
    wn = mope_wordnet_load(g_dir, &err);
    assert_null(wn);
    assert_non_null(strstr(err.msg, "index.noun line 2"));
    write_file("index.noun", "thing n 1 1 @ 1 0 00000100\n");
    write_file("cntlist.rev", "thing%1:03:00:: one 5\n");
    wn = mope_wordnet_load(g_dir, &err);
    assert_null(wn);
    assert_non_null(strstr(err.msg, "cntlist.rev line 1"));
    remove_db();
    /* a missing directory says what to install */
    wn = mope_wordnet_load("/nonexistent/wordnet", &err);
    assert_null(wn);
    assert_int_equal(err.code, MOPE_EIO);
    assert_non_null(strstr(err.msg, "wordnet-base"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),         cmocka_unit_test(test_glacier),
        cmocka_unit_test(test_dog_and_domains), cmocka_unit_test(test_word_counts),
        cmocka_unit_test(test_plural_article), cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
