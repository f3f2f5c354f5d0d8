/* Small English helpers: plurals, articles, syllables, readability stats and
 * JSON string escaping.  Heuristics, tuned for WordNet noun lemmas and for the
 * plain prose the corpus and the labelers deal with. */
#include "mope/prefbench.h"

#include <ctype.h>
#include <stdio.h>

static int is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

/* Regular plural of one word (no spaces) appended to out at *k. */
static int plural_word(const mope_wordnet *wn, const char *w, size_t n, char *out, size_t cap,
                       size_t *k) {
    char word[128];
    if (n >= sizeof word) return -1;
    memcpy(word, w, n);
    word[n] = 0;
    const char *irr = wn ? mope_wordnet_irregular_plural(wn, word) : NULL;
    char buf[160], lw[128];
    for (size_t i = 0; i <= n; i++) lw[i] = (char)tolower((unsigned char)word[i]);
    /* noun.exc misses a few everyday irregulars */
    static const char *const same[] = {"sheep", "deer", "species", "series", "aircraft", "moose", "swine",
                                       "bison", "salmon", "trout", "offspring", "headquarters", "means", NULL};
    static const char *const not_men[] = {"human", "german", "roman", "shaman", "talisman", "ottoman",
                                          "caiman", "cayman", "desman", "dolman", "ataman", NULL};
    int is_same = 0, is_not_men = 0;
    for (int i = 0; same[i]; i++) is_same |= strcmp(lw, same[i]) == 0;
    for (int i = 0; not_men[i]; i++) is_not_men |= strcmp(lw, not_men[i]) == 0;
    if (!irr && strcmp(lw, "person") == 0) irr = "people";
    if (irr) {
        snprintf(buf, sizeof buf, "%s", irr);
    } else if (is_same) {
        snprintf(buf, sizeof buf, "%s", word);
    } else if (n > 3 && ends_with(lw, n, "man") && !is_not_men) {
        snprintf(buf, sizeof buf, "%.*smen", (int)(n - 3), word);
    } else {
        if (ends_with(lw, n, "s") || ends_with(lw, n, "x") || ends_with(lw, n, "z") ||
            ends_with(lw, n, "ch") || ends_with(lw, n, "sh"))
            snprintf(buf, sizeof buf, "%ses", word);
        else if (n >= 2 && lw[n - 1] == 'y' && !is_vowel(lw[n - 2]))
            snprintf(buf, sizeof buf, "%.*sies", (int)(n - 1), word);
        else
            snprintf(buf, sizeof buf, "%ss", word);
    }
    size_t bl = strlen(buf);
    if (*k + bl + 1 > cap) return -1;
    memcpy(out + *k, buf, bl + 1);
    *k += bl;
    return 0;
}

int mope_prefbench_plural(const mope_wordnet *wn, const char *noun, char *out, size_t cap) {
    size_t n = strlen(noun), k = 0;
    if (n == 0 || cap == 0) return MOPE_EINVAL;
    const char *irr = wn ? mope_wordnet_irregular_plural(wn, noun) : NULL;
    if (irr) {
        if (strlen(irr) + 1 > cap) return MOPE_ERANGE;
        strcpy(out, irr);
        return (int)strlen(out);
    }
    /* The head of "cup of tea" is "cup"; of "ice cream cone", "cone". */
    static const char *const preps[] = {" of ", " in ", " on ", " for ", " at ", " to ", " with ",
                                        " from ", " by ", " de ", " du "};
    size_t head_end = n;
    for (size_t i = 0; i < sizeof preps / sizeof *preps; i++) {
        const char *p = strstr(noun, preps[i]);
        if (p && (size_t)(p - noun) < head_end) head_end = (size_t)(p - noun);
    }
    size_t head_start = head_end;
    while (head_start > 0 && noun[head_start - 1] != ' ' && noun[head_start - 1] != '-') head_start--;
    if (head_start + 1 > cap) return MOPE_ERANGE;
    memcpy(out, noun, head_start);
    k = head_start;
    out[k] = 0;
    if (plural_word(wn, noun + head_start, head_end - head_start, out, cap, &k) != 0) return MOPE_ERANGE;
    size_t rest = n - head_end;
    if (k + rest + 1 > cap) return MOPE_ERANGE;
    memcpy(out + k, noun + head_end, rest + 1);
    return (int)(k + rest);
}

const char *mope_prefbench_article(const char *word) {
    char w[16];
    size_t n = 0;
    while (word[n] && n < sizeof w - 1 && word[n] != ' ') {
        w[n] = (char)tolower((unsigned char)word[n]);
        n++;
    }
    w[n] = 0;
    if (n == 0) return "a";
    static const char *const an_h[] = {"hour", "honest", "honor", "honour", "heir"};
    for (size_t i = 0; i < sizeof an_h / sizeof *an_h; i++)
        if (strncmp(w, an_h[i], strlen(an_h[i])) == 0) return "an";
    /* Vowel letters that sound like a consonant ("a unit", "a euro", "a one"). */
    static const char *const a_v[] = {"uni", "use", "usu", "uti", "ura", "ure", "uri", "uro", "eu",
                                      "ewe", "one", "once", "ubiq", "uku", "ufo"};
    for (size_t i = 0; i < sizeof a_v / sizeof *a_v; i++)
        if (strncmp(w, a_v[i], strlen(a_v[i])) == 0) return "a";
    if (strcmp(w, "u") == 0) return "a";
    return is_vowel(w[0]) ? "an" : "a";
}

int mope_prefbench_syllables(const char *word) {
    char w[64];
    size_t n = 0;
    for (const char *p = word; *p && n < sizeof w - 1; p++)
        if (isalpha((unsigned char)*p)) w[n++] = (char)tolower((unsigned char)*p);
    w[n] = 0;
    if (n == 0) return 0;
    if (n <= 3) return 1;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        int v = is_vowel(w[i]) || (w[i] == 'y' && i > 0);
        int pv = i > 0 && (is_vowel(w[i - 1]) || (w[i - 1] == 'y' && i > 1));
        if (v && !pv) count++;
    }
    /* Vowel pairs that are two syllables ("li-on", "gi-ant", "du-al"), but
     * not in -tion/-sion/-cial/-tial. */
    for (size_t i = 1; i + 1 < n; i++) {
        char a = w[i], b = w[i + 1], before = w[i - 1];
        if (a == 'i' && b == 'o' && !strchr("tscxg", before)) count++;
        else if (a == 'i' && b == 'a' && !strchr("tsc", before)) count++;
        else if (a == 'u' && b == 'a' && before != 'q' && before != 'g') count++;
        else if (a == 'e' && b == 'o' && before != 'g' && before != 'p') count++;
    }
    char c3 = n >= 3 ? w[n - 3] : 0;
    if (w[n - 1] == 'e') {
        /* silent final e, except syllabic consonant + le ("ta-ble") */
        int cons_before = !is_vowel(w[n - 2]);
        if (cons_before && !(w[n - 2] == 'l' && !is_vowel(c3) && c3 != 'l')) count--;
    } else if (ends_with(w, n, "es") && !is_vowel(c3)) {
        /* "makes", "lines" but "boxes", "horses", "pages", "tables" */
        if (!strchr("sxzcg", c3) && !ends_with(w, n, "ches") && !ends_with(w, n, "shes") &&
            !(c3 == 'l' && n >= 4 && !is_vowel(w[n - 4])))
            count--;
    } else if (ends_with(w, n, "ed") && !is_vowel(c3)) {
        if (c3 != 't' && c3 != 'd') count--;
    } else if ((ends_with(w, n, "ely") || ends_with(w, n, "eful") || ends_with(w, n, "ement") ||
                ends_with(w, n, "eness")) &&
               n >= 5) {
        size_t e = w[n - 1] == 'y' ? n - 3 : (ends_with(w, n, "eful") ? n - 4 : n - 5);
        if (e > 0 && !is_vowel(w[e - 1]) && e >= 2 && is_vowel(w[e - 2])) count--;
    } else if (ends_with(w, n, "ism") || ends_with(w, n, "thm")) {
        count++; /* syllabic m: "or-gan-i-sm", "rhy-thm" */
    } else if (ends_with(w, n, "ea")) {
        count++; /* "i-de-a", "a-re-a" */
    }
    return count < 1 ? 1 : count;
}

static int is_word_char(unsigned char c) { return isalpha(c) || c == '\''; }

void mope_prefbench_text_stats_compute(const char *text, mope_prefbench_text_stats *st) {
    memset(st, 0, sizeof *st);
    const unsigned char *p = (const unsigned char *)text;
    int words_in_sentence = 0;
    while (*p) {
        if (isalpha(*p)) {
            char w[64];
            size_t n = 0;
            while (*p && is_word_char(*p)) {
                if (n < sizeof w - 1) w[n++] = (char)*p;
                p++;
            }
            w[n] = 0;
            st->words++;
            words_in_sentence++;
            st->syllables += mope_prefbench_syllables(w);
        } else if (*p == '.' || *p == '!' || *p == '?') {
            while (*p == '.' || *p == '!' || *p == '?') p++;
            if (words_in_sentence > 0 && (*p == 0 || isspace(*p) || *p == '"' || *p == '\'' || *p == ')')) {
                st->sentences++;
                words_in_sentence = 0;
            }
        } else {
            p++;
        }
    }
    if (words_in_sentence > 0) st->sentences++;
    if (st->words > 0)
        st->fk_grade = 0.39 * st->words / st->sentences + 11.8 * st->syllables / st->words - 15.59;
}

int mope_prefbench_json_escape(const char *s, char *out, size_t cap) {
    size_t k = 0;
#define PUT(c)                          \
    do {                                \
        if (k + 1 >= cap) return MOPE_ERANGE; \
        out[k++] = (c);                 \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT((char)c);
        } else if (c == '\n') {
            PUT('\\');
            PUT('n');
        } else if (c == '\t') {
            PUT('\\');
            PUT('t');
        } else if (c == '\r') {
            PUT('\\');
            PUT('r');
        } else if (c < 0x20 || c == 0x7f) {
            char hex[8];
            snprintf(hex, sizeof hex, "\\u%04x", c);
            for (int i = 0; hex[i]; i++) PUT(hex[i]);
        } else {
            PUT((char)c);
        }
    }
    PUT('"');
#undef PUT
    out[k] = 0;
    return (int)k;
}
