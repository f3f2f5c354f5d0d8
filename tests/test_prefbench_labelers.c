/* PrefBench labelers on hand-written answers about a glacier: each labeler
 * moves the right way between a pair of answers that differ in its
 * dimension; syllable counts and Flesch-Kincaid grades against hand counts;
 * and gaming attempts (empty, repeated, padded, keyword-stuffed, off-topic,
 * truncated answers) that must not beat an honest answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mope/prefbench.h"

static mope_wordnet *g_wn;
static mope_prefbench_labeler *g_lb;

static int setup(void **state) {
    (void)state;
    mope_error err = {0};
    g_wn = mope_wordnet_load(NULL, &err);
    if (!g_wn) {
        fprintf(stderr,
                "WordNet 3.0 is required at " MOPE_PREFBENCH_WORDNET_DIR
                ": install the Debian package wordnet-base (scripts/deps.sh installs it). Error: %s\n",
                err.msg);
        return -1;
    }
    g_lb = mope_prefbench_labeler_create(g_wn, &err);
    return g_lb ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    mope_prefbench_labeler_free(g_lb);
    mope_wordnet_free(g_wn);
    return 0;
}

static const char *PROMPT = "What is a glacier?";

static mope_prefbench_labels lab(const char *answer) {
    mope_prefbench_labels l;
    mope_error err = {0};
    assert_int_equal(mope_prefbench_label(g_lb, answer, PROMPT, "glacier", &l, &err), 0);
    return l;
}

enum { P1A, P1B, P2A, P2B, P3A, P3B };

/* ---- answers ---- */
static const char *NEUTRAL = "A glacier is a slowly moving mass of ice. It is a kind of ice mass.";
static const char *SIMPLE =
    "A glacier is a big mass of ice. It moves very slowly. It is a kind of ice mass. "
    "You can see one up in the hills. It is like a river of ice.";
static const char *TECHNICAL =
    "A glacier constitutes a perennially accumulating, gravitationally mobilized mass of ice whose "
    "morphological characteristics, including moraines, icefalls and neve, reflect prolonged glaciological "
    "processes; taxonomically, continental and Piedmont glaciers represent distinct subcategories of this "
    "cryospheric ice mass.";
static const char *CONCISE = "A glacier is a slowly moving mass of ice.";
static const char *VERBOSE =
    "A glacier is a slowly moving mass of ice. It is a kind of ice mass. Alpine glaciers, continental "
    "glaciers and Piedmont glaciers are kinds of glaciers. A glacier has parts such as an icefall, a moraine "
    "and neve. It is made of ice.";
static const char *FRIENDLY =
    "Oh, great question! A glacier is a slowly moving mass of ice. Think of it as the chilliest river you'll "
    "ever meet! It's a kind of ice mass, and honestly, a pretty awesome one. Hope that helps, friend!";
static const char *HOSTILE =
    "Obviously, a glacier is a slowly moving mass of ice. It's a kind of ice mass. Not exactly rocket "
    "science. Look it up yourself next time.";

static void test_syllables(void **state) {
    (void)state;
    /* counts from a dictionary's syllable division */
    struct {
        const char *w;
        int n;
    } words[] = {{"cat", 1},         {"water", 2},     {"table", 2},      {"apple", 2},     {"banana", 3},
                 {"elephant", 3},    {"computer", 3},  {"beautiful", 3},  {"education", 4}, {"university", 5},
                 {"syllable", 3},    {"make", 1},      {"jumped", 1},     {"wanted", 2},    {"boxes", 2},
                 {"horses", 2},      {"lovely", 2},    {"little", 2},     {"simple", 2},    {"animal", 3},
                 {"information", 4}, {"through", 1},   {"people", 2},     {"lion", 2},      {"giant", 2},
                 {"idea", 3},        {"science", 2},   {"create", 2},     {"photograph", 3}, {"biology", 4},
                 {"glacier", 2},     {"friend", 1},    {"rhythm", 2},     {"photosynthesis", 5}};
    int misses = 0, n = (int)(sizeof words / sizeof *words);
    for (int i = 0; i < n; i++) {
        int got = mope_prefbench_syllables(words[i].w);
        if (got != words[i].n) {
            fprintf(stderr, "syllables(%s) = %d, dictionary %d\n", words[i].w, got, words[i].n);
            misses++;
        }
        assert_true(abs(got - words[i].n) <= 1);
    }
    fprintf(stderr, "syllable counter: %d of %d words differ from the dictionary\n", misses, n);
    assert_true(misses <= 2);
    assert_int_equal(mope_prefbench_syllables(""), 0);
    assert_int_equal(mope_prefbench_syllables("123"), 0);
}

static void test_fk_grade(void **state) {
    (void)state;
    mope_prefbench_text_stats st;
    /* 1 sentence, 6 words, 6 syllables: 0.39*6 + 11.8*1 - 15.59 = -1.45 */
    mope_prefbench_text_stats_compute("The cat sat on the mat.", &st);
    assert_int_equal(st.sentences, 1);
    assert_int_equal(st.words, 6);
    assert_int_equal(st.syllables, 6);
    assert_true(fabs(st.fk_grade - (-1.45)) < 1e-9);
    /* pho-to-syn-the-sis con-verts light en-er-gy in-to chem-i-cal en-er-gy (7 words, 19 syllables),
     * plants use it (3, 3): 0.39*10/2 + 11.8*22/10 - 15.59 = 12.32 */
    mope_prefbench_text_stats_compute("Photosynthesis converts light energy into chemical energy. Plants use it.", &st);
    assert_int_equal(st.sentences, 2);
    assert_int_equal(st.words, 10);
    assert_int_equal(st.syllables, 22);
    assert_true(fabs(st.fk_grade - 12.32) < 1e-9);
    /* no terminal punctuation still makes one sentence; "e.g." does not split words */
    mope_prefbench_text_stats_compute("ice moves", &st);
    assert_int_equal(st.sentences, 1);
    mope_prefbench_text_stats_compute("", &st);
    assert_int_equal(st.words, 0);
    assert_true(st.fk_grade == 0.0);
}

static void test_readability(void **state) {
    (void)state;
    mope_prefbench_labels s = lab(SIMPLE), t = lab(TECHNICAL), n = lab(NEUTRAL);
    assert_true(s.fk_grade < 5.0);
    assert_true(t.fk_grade > 20.0);
    assert_true(t.rare_rate > s.rare_rate);
    assert_true(s.expertise < n.expertise + 1.0);
    assert_true(t.expertise > n.expertise + 8.0);
    assert_true(s.choice[P1A] > t.choice[P1A] + 0.5);
    assert_true(t.choice[P1B] > s.choice[P1B] + 0.5);
}

static void test_informativeness(void **state) {
    (void)state;
    mope_prefbench_labels c = lab(CONCISE), v = lab(VERBOSE);
    assert_true(c.facts >= 1.0);
    assert_true(v.facts >= c.facts + 5.0); /* ice mass, 3 kinds, 3 parts, ice */
    assert_true(c.choice[P2A] > v.choice[P2A] + 0.4);
    assert_true(v.choice[P2B] > c.choice[P2B] + 0.4);
    assert_true(v.informativeness > c.informativeness);
}

static void test_friendliness(void **state) {
    (void)state;
    mope_prefbench_labels f = lab(FRIENDLY), h = lab(HOSTILE), n = lab(NEUTRAL);
    assert_true(f.friendliness > n.friendliness + 1.0);
    assert_true(h.friendliness < n.friendliness - 1.0);
    assert_true(f.choice[P3A] > 0.7 && h.choice[P3A] < 0.1);
    assert_true(h.choice[P3B] > 0.7 && f.choice[P3B] < 0.1);
    /* a short brush-off imperative is hostile even without hostile words */
    mope_prefbench_labels g = lab("A glacier is a slowly moving mass of ice. It is a kind of ice mass. Go read a book.");
    assert_true(g.friendliness < n.friendliness - 1.0);
    /* ...but an imperative inside a warm sentence is not */
    mope_prefbench_labels w = lab("A glacier is a slowly moving mass of ice. Go see one, it's a wonderful sight!");
    assert_true(w.friendliness > n.friendliness);
    /* the three dimensions are separate: style does not change facts much */
    assert_true(fabs(f.facts - h.facts) <= 1.0);
}

static void test_empty(void **state) {
    (void)state;
    const char *empties[] = {"", "   \n\t", "...", "!!!"};
    mope_prefbench_labels c = lab(CONCISE);
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        mope_prefbench_labels e = lab(empties[i]);
        assert_true(e.q.empty);
        assert_true(e.q.gate == 0.0);
        for (int k = 0; k < 6; k++) assert_true(e.choice[k] == 0.0);
        assert_true(e.choice[P2A] < c.choice[P2A]); /* empty is never "concise" */
    }
}

static void test_repetition(void **state) {
    (void)state;
    char rep[4096] = "";
    for (int i = 0; i < 6; i++) strcat(rep, "A glacier is a slowly moving mass of ice. It is a kind of ice mass. ");
    mope_prefbench_labels r = lab(rep), v = lab(VERBOSE), n = lab(NEUTRAL);
    assert_true(r.q.repetition > 0.5);
    assert_true(r.facts == n.facts); /* repeating a fact conveys it once */
    assert_true(r.choice[P2B] < v.choice[P2B]);
    assert_true(r.choice[P2B] <= n.choice[P2B]);
    assert_true(r.informativeness < n.informativeness);
    /* one word over and over */
    mope_prefbench_labels w = lab("Glacier glacier glacier glacier glacier glacier glacier glacier glacier glacier.");
    assert_true(w.choice[P2B] < 0.05 && w.choice[P2A] < 0.1);
}

static void test_padding(void **state) {
    (void)state;
    const char *padded =
        "Well, so, basically, you know, it is what it is, and it really is just what it is, more or less, in "
        "a way, so to speak, if you will, at the end of the day, and so on and so forth, as it were, a glacier "
        "is a slowly moving mass of ice, really, basically, you know.";
    mope_prefbench_labels p = lab(padded), c = lab(CONCISE), v = lab(VERBOSE);
    assert_true(p.choice[P2A] < c.choice[P2A] - 0.5); /* long is not concise */
    assert_true(p.choice[P2B] < v.choice[P2B] - 0.5); /* filler is not information */
    assert_true(p.facts <= c.facts + 0.5);
}

static void test_keyword_stuffing(void **state) {
    (void)state;
    mope_prefbench_labels f = lab(FRIENDLY);
    /* markers without content */
    mope_prefbench_labels s1 = lab("Friend!!! Friend!!! Great!!! Love!!! Awesome!!! Friend!!! Hope that helps, friend!!!");
    assert_true(s1.choice[P3A] < 0.1);
    assert_true(s1.choice[P3A] < f.choice[P3A]);
    /* markers repeated around a bare definition do not beat a genuinely friendly answer */
    mope_prefbench_labels s2 = lab(
        "Friend friend friend friend friend friend friend friend friend friend! A glacier is a slowly moving mass "
        "of ice. Friend friend friend friend friend friend friend friend friend friend!");
    assert_true(s2.choice[P3A] < f.choice[P3A]);
    /* jargon pasted onto nothing is not expert */
    mope_prefbench_labels s3 = lab("Epistemological hermeneutics notwithstanding, ontological phenomenology "
                                   "circumscribes quintessentially incommensurable paradigms.");
    assert_true(s3.choice[P1B] < 0.1);
    assert_false(s3.q.on_topic);
}

static void test_off_topic(void **state) {
    (void)state;
    const char *volcano =
        "Oh, great question! A volcano is a fissure in the crust of the earth through which molten lava and "
        "gases erupt. Think of it as a grumpy "
        "mountain! Hope that helps, friend!";
    mope_prefbench_labels o = lab(volcano), f = lab(FRIENDLY), c = lab(CONCISE), t = lab(TECHNICAL);
    assert_false(o.q.on_topic);
    assert_true(f.q.on_topic && c.q.on_topic && t.q.on_topic);
    for (int k = 0; k < 6; k++) assert_true(o.choice[k] < 0.1);
    assert_true(o.choice[P3A] < f.choice[P3A]);
    /* the same volcano answer is on topic when the prompt asks about volcanoes */
    mope_prefbench_labels l;
    mope_error err = {0};
    assert_int_equal(mope_prefbench_label(g_lb, volcano, "What is a volcano?", "volcano", &l, &err), 0);
    assert_true(l.q.on_topic);
    assert_true(l.choice[P3A] > 0.5);
}

static void test_truncated(void **state) {
    (void)state;
    const char *cut = "A glacier is a slowly moving mass of ice. It is a kind of ice mass. Alpine glaciers, continental "
                      "glaciers and Piedmont glaciers are kinds of glaciers. A glacier has parts such as an icefall, a";
    mope_prefbench_labels t = lab(cut), v = lab(VERBOSE), n = lab(NEUTRAL);
    assert_true(t.q.truncated);
    assert_false(v.q.truncated);
    assert_true(t.choice[P2B] < v.choice[P2B] - 0.3);
    assert_true(t.choice[P2A] < lab(CONCISE).choice[P2A] - 0.3);
    for (int k = 0; k < 6; k++) assert_true(t.choice[k] <= 0.35 + 1e-9);
    (void)n;
    /* an emoji or a closing quote after the full stop is still a complete answer */
    assert_false(lab("A glacier is a slowly moving mass of ice! \xF0\x9F\x98\x8A").q.truncated);
    assert_false(lab("It is called \"a slowly moving mass of ice.\"").q.truncated);
}

static void test_concept_from_prompt_and_utility(void **state) {
    (void)state;
    mope_prefbench_labels a, b;
    mope_error err = {0};
    assert_int_equal(mope_prefbench_label(g_lb, VERBOSE, "Tell me about glaciers.", NULL, &a, &err), 0);
    assert_int_equal(mope_prefbench_label(g_lb, VERBOSE, PROMPT, "glacier", &b, &err), 0);
    assert_true(a.facts == b.facts && a.q.gate == b.q.gate);
    for (int k = 0; k < 6; k++) assert_true(a.choice[k] == b.choice[k]); /* deterministic */
    /* every corpus phrasing of the question leads back to the concept */
    for (int i = 0; i < MOPE_PREFBENCH_N_PHRASINGS; i++) {
        char q[256];
        assert_true(mope_prefbench_phrase(g_wn, "glacier", 0, i, q, sizeof q) > 0);
        assert_int_equal(mope_prefbench_label(g_lb, VERBOSE, q, NULL, &a, &err), 0);
        if (a.facts != b.facts) fprintf(stderr, "prompt \"%s\": %g facts, want %g\n", q, a.facts, b.facts);
        assert_true(a.facts == b.facts);
    }
    const char *pref[] = {"P1A", "P2A", "P3A"};
    double u;
    mope_prefbench_labels f = lab(FRIENDLY);
    assert_int_equal(mope_prefbench_utility(g_lb, FRIENDLY, PROMPT, "glacier", pref, 3, &u, &err), 0);
    assert_true(fabs(u - (f.choice[P1A] + f.choice[P2A] + f.choice[P3A]) / 3) < 1e-12);
    for (int k = 0; k < 6; k++) assert_true(f.choice[k] >= 0.0 && f.choice[k] <= 1.0);
    const char *badpref[] = {"P1A", "P9Z"};
    assert_int_equal(mope_prefbench_utility(g_lb, FRIENDLY, PROMPT, "glacier", badpref, 2, &u, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "P9Z"));
    assert_int_equal(mope_prefbench_utility(g_lb, FRIENDLY, PROMPT, "glacier", pref, 0, &u, &err), MOPE_EINVAL);
    assert_int_equal(mope_prefbench_choice_index("P3B"), 5);
    assert_int_equal(mope_prefbench_choice_index("neutral"), -1);
    /* the best utility for a preference goes to the answer written for it */
    const char *fc[] = {"P3A"}, *hc[] = {"P3B"};
    double uf, uh;
    assert_int_equal(mope_prefbench_utility(g_lb, FRIENDLY, PROMPT, "glacier", hc, 1, &uf, &err), 0);
    assert_int_equal(mope_prefbench_utility(g_lb, HOSTILE, PROMPT, "glacier", hc, 1, &uh, &err), 0);
    assert_true(uh > uf);
    assert_int_equal(mope_prefbench_utility(g_lb, FRIENDLY, PROMPT, "glacier", fc, 1, &uf, &err), 0);
    assert_int_equal(mope_prefbench_utility(g_lb, HOSTILE, PROMPT, "glacier", fc, 1, &uh, &err), 0);
    assert_true(uf > uh);
}

static void test_speed(void **state) {
    (void)state;
    /* cheap enough to label every rollout: time a few hundred answers */
    mope_prefbench_labels l;
    double t0 = mope_time_s();
    for (int i = 0; i < 300; i++)
        assert_int_equal(mope_prefbench_label(g_lb, VERBOSE, PROMPT, "glacier", &l, NULL), 0);
    double us = (mope_time_s() - t0) / 300 * 1e6;
    fprintf(stderr, "labeling: %.1f us per answer\n", us);
    assert_true(us < 5000.0); /* generous for sanitizer builds; ~30 us in release */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syllables),       cmocka_unit_test(test_fk_grade),
        cmocka_unit_test(test_readability),     cmocka_unit_test(test_informativeness),
        cmocka_unit_test(test_friendliness),    cmocka_unit_test(test_empty),
        cmocka_unit_test(test_repetition),      cmocka_unit_test(test_padding),
        cmocka_unit_test(test_keyword_stuffing), cmocka_unit_test(test_off_topic),
        cmocka_unit_test(test_truncated),       cmocka_unit_test(test_concept_from_prompt_and_utility),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
