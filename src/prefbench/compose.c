/* Answer composition: the facts of one WordNet synset put into words in the
 * neutral style and in each of the six preference choices.  Every style has
 * several sentence plans and lexical variants; the rng picks among them and
 * shuffles the order of the middle facts, so that a model trained on the
 * corpus has to learn the style rather than copy one template. */
#include "mope/prefbench.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define MAXS 24
#define SLEN 1024

typedef struct sents {
    char s[MAXS][SLEN];
    int n;
} sents;

static void add(sents *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(sents *ss, const char *fmt, ...) {
    if (ss->n >= MAXS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ss->s[ss->n], SLEN, fmt, ap);
    va_end(ap);
    ss->s[ss->n][0] = (char)toupper((unsigned char)ss->s[ss->n][0]);
    ss->n++;
}

static const char *pick(mope_rng *r, const char *const *v, int n) { return v[mope_rng_below(r, (uint32_t)n)]; }
#define PICK(r, ...) pick((r), (const char *const[]){__VA_ARGS__}, \
                          (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

static int chance(mope_rng *r, float p) { return mope_rng_uniform(r) < p; }

/* Shuffles sentences [lo, hi) so facts come in mixed orders. */
static void shuffle(sents *ss, int lo, int hi, mope_rng *r) {
    char tmp[SLEN];
    for (int i = hi - 1; i > lo; i--) {
        int j = lo + (int)mope_rng_below(r, (uint32_t)(i - lo + 1));
        if (j == i) continue;
        memcpy(tmp, ss->s[i], SLEN);
        memcpy(ss->s[i], ss->s[j], SLEN);
        memcpy(ss->s[j], tmp, SLEN);
    }
}

/* ---- facts of a synset ---- */
#define MAXF 8
typedef struct facts {
    const char *name;
    char plural[160];
    char a_name[200];   /* "a glacier", or "water" for mass nouns */
    char A_name[200];   /* the same, capitalised */
    int mass;
    char def_full[1024];
    char def_short[512];  /* first clause, no parentheses */
    char rest[4][600];    /* further clauses as sentences */
    int n_rest;
    int def_words;
    const char *ex[4];
    int n_ex;
    const char *chain[MAXF];
    int n_chain;
    const char *hypo[MAXF], *parts[MAXF], *subst[4], *members[4], *holo[4], *sib[4], *syn[4];
    int n_hypo, n_parts, n_subst, n_members, n_holo, n_sib, n_syn;
    const char *domain;
    const char *category; /* "artifact", "animal", ... */
    char holo_a[200], part_a[200]; /* first holonym / part with its article */
    /* for the elementary style: names made of everyday words only */
    const char *kind_simple, *hypo_s[MAXF], *sib_s[4];
    int n_hypo_s, n_sib_s, part_common, holo_common;
    char chunk[512];    /* first chunk of the definition (first_chunk) */
    int chunk_rare;     /* its rare words, not counting the concept's own */
    const char *ex_s;   /* a short example without rare words, or NULL */
} facts;

static int count_words(const char *s) {
    int n = 0, in = 0;
    for (; *s; s++) {
        int w = !isspace((unsigned char)*s);
        if (w && !in) n++;
        in = w;
    }
    return n;
}

/* Copies s without parenthesised parts and with single spaces. */
static void strip_parens(const char *s, char *out, size_t cap) {
    size_t k = 0;
    int depth = 0;
    for (; *s && k + 1 < cap; s++) {
        if (*s == '(') depth++;
        else if (*s == ')') depth = depth > 0 ? depth - 1 : 0;
        else if (depth == 0) {
            if (*s == ' ' && (k == 0 || out[k - 1] == ' ')) continue;
            out[k++] = *s;
        }
    }
    while (k > 0 && (out[k - 1] == ' ' || out[k - 1] == ',' || out[k - 1] == ';')) k--;
    out[k] = 0;
}

static int in_list(const char *w, const char *const *list) {
    for (; *list; list++)
        if (strcmp(w, *list) == 0) return 1;
    return 0;
}

/* Turns a gloss clause ("may have a lid", "widely used as a solvent") into a
 * sentence about "it". */
static int clause_sentence(const char *cl, char *out, size_t cap) {
    char w1[64] = "", w2[64] = "";
    sscanf(cl, "%63s %63s", w1, w2);
    size_t l1 = strlen(w1), l2 = strlen(w2);
    static const char *const art[] = {"a", "an", "the", "any", "one", NULL};
    static const char *const verbs[] = {"may", "can", "has", "have", "is", "was", "are", "were", "does",
                                        "must", "will", "could", "might", NULL};
    static const char *const advs[] = {"widely", "usually", "often", "typically", "especially", "sometimes",
                                       "commonly", "generally", "frequently", "mostly", "chiefly",
                                       "primarily", "found", "made", "used", "known", "considered",
                                       "native", "formerly", "now", "once", "also", "not", NULL};
    int ends_s = l1 > 3 && w1[l1 - 1] == 's' && w1[l1 - 2] != 's' && w1[l1 - 2] != 'u' && w1[l1 - 2] != 'i';
    size_t lc = strlen(cl);
    if (strcmp(w1, "having") == 0 && lc > 7) snprintf(out, cap, "It has %s.", cl + 7);
    else if (in_list(w1, advs) && strcmp(w2, "having") == 0 && lc > l1 + 8)
        snprintf(out, cap, "It %s has %s.", w1, cl + l1 + 8);
    else if (in_list(w1, art)) snprintf(out, cap, "It is also %s.", cl);
    else if (in_list(w1, verbs) || (ends_s && !isupper((unsigned char)w1[0]))) snprintf(out, cap, "It %s.", cl);
    else if (in_list(w1, advs) || (l1 > 3 && strcmp(w1 + l1 - 2, "ed") == 0)) {
        int v2 = l2 > 3 && w2[l2 - 1] == 's' && w2[l2 - 2] != 's';
        snprintf(out, cap, v2 ? "It %s." : "It is %s.", cl);
    } else {
        /* fragments like "of Malaysia" or "in Europe" qualify the first clause
         * and make no sentence of their own */
        static const char *const preps[] = {"of", "in", "on", "at", "from", "for", "with", "by", "to", "as",
                                            "than", "or", "and", "but", "e.g.", "i.e.", NULL};
        if (in_list(w1, preps) || count_words(cl) < 3) return 0;
        snprintf(out, cap, "In addition: %s.", cl);
    }
    out[0] = (char)toupper((unsigned char)out[0]);
    return 1;
}

int mope_prefbench_is_mass(const mope_wordnet *wn, int synset, const char *concept) {
    const mope_wn_synset *s = mope_wordnet_synset(wn, synset);
    if (!s || !concept) return 0;
    const char *d = s->definition;
    while (*d == '(') { /* skip a leading "(botany)" usage label */
        const char *e = strchr(d, ')');
        if (!e) break;
        d = e + 1;
        while (*d == ' ') d++;
    }
    if (strncmp(d, "a ", 2) == 0 || strncmp(d, "an ", 3) == 0 || strncmp(d, "any ", 4) == 0 ||
        strncmp(d, "one ", 4) == 0)
        return 0;
    size_t n = strlen(concept);
    static const char *const mass_suffix[] = {"ness", "ity", "ism", "ics", "ship", "hood", "dom"};
    for (size_t i = 0; i < sizeof mass_suffix / sizeof *mass_suffix; i++) {
        size_t k = strlen(mass_suffix[i]);
        if (n > k + 2 && strcmp(concept + n - k, mass_suffix[i]) == 0) return 1;
    }
    /* Glosses often drop the article for count nouns too ("knife: edge tool
     * used as a cutting instrument"), so only abstract and substance files
     * default to mass. */
    switch (s->lexfile) {
    case 4: case 7: case 9: case 10: case 12: case 13: case 19: case 22: case 26: case 27: return 1;
    default: return 0;
    }
}

static const char *first_lemma(const mope_wordnet *wn, int s) { return mope_wordnet_synset(wn, s)->lemmas[0]; }

/* Targets of pointers of the given kinds, most frequent first. */
static int collect_idx(const mope_wordnet *wn, const mope_wn_synset *sy, unsigned kinds, const unsigned char *exclude,
                       int self, const char **out, int *out_idx, int max) {
    int idx[256], n = 0;
    for (int i = 0; i < sy->n_ptrs && n < 256; i++) {
        int t = sy->ptrs[i].target;
        if (!(kinds & (1u << sy->ptrs[i].kind)) || t == self || (exclude && exclude[t])) continue;
        idx[n++] = t;
    }
    /* insertion sort by tag count, stable */
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i;
        while (j > 0 && mope_wordnet_synset(wn, idx[j - 1])->tag_count < mope_wordnet_synset(wn, v)->tag_count) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
    int k = 0;
    for (int i = 0; i < n && k < max; i++) {
        if (out_idx) out_idx[k] = idx[i];
        out[k++] = first_lemma(wn, idx[i]);
    }
    return k;
}

static int collect(const mope_wordnet *wn, const mope_wn_synset *sy, unsigned kinds, const unsigned char *exclude,
                   int self, const char **out, int max) {
    return collect_idx(wn, sy, kinds, exclude, self, out, NULL, max);
}

/* "a moraine", "ice", "Dimetapp": a related concept with the article it takes. */
static void with_article(const mope_wordnet *wn, int syn, const char *name, char *out, size_t cap) {
    if (isupper((unsigned char)name[0]) || mope_prefbench_is_mass(wn, syn, name)) snprintf(out, cap, "%s", name);
    else snprintf(out, cap, "%s %s", mope_prefbench_article(name), name);
}

/* Count-noun glosses often drop their article ("desert shrub of Syria"):
 * put one back so "X is a desert shrub" reads as English. */
static void add_article(const char *def, char *out, size_t cap) {
    char w[64] = "";
    sscanf(def, "%63s", w);
    size_t n = strlen(w);
    static const char *const det[] = {"a", "an", "the", "any", "one", "some", "each", "every", "this", "that",
                                      "these", "those", "his", "her", "its", "their", "someone", "something",
                                      "anything", "somebody", "anyone", "everything", "two", "three", "several",
                                      "many", "more", "most", "all", "either", "whatever", "what", "how",
                                      "where", "when", "used", NULL};
    if (!n || def[0] == '(' || in_list(w, det) || (n > 4 && strcmp(w + n - 3, "ing") == 0) ||
        (n > 2 && w[n - 1] == 's' && w[n - 2] != 's' && w[n - 2] != 'u' && w[n - 2] != 'i')) {
        snprintf(out, cap, "%s", def);
        return;
    }
    snprintf(out, cap, "%s %s", mope_prefbench_article(def), def);
}

#define K(x) (1u << (x))

/* Every word of the name is tagged >= 5 times in WordNet's semantic
 * concordance: a word a child has likely met. */
static int is_common(const mope_wordnet *wn, const char *name) {
    char w[64];
    size_t k = 0;
    for (const char *p = name;; p++) {
        if (*p && *p != ' ' && *p != '-') {
            if (k < sizeof w - 1) w[k++] = *p;
            continue;
        }
        w[k] = 0;
        if (k && mope_wordnet_word_count(wn, w) < 5) return 0;
        k = 0;
        if (!*p) return 1;
    }
}

/* Words of the first chunk of a definition, for the elementary style: cut
 * before a relative clause or comma so the sentence stays short. */
static void first_chunk(const char *def, char *out, size_t cap) {
    snprintf(out, cap, "%s", def);
    static const char *const cuts[] = {" that ", " which ", " who ", ", ", " used ", " especially ",
                                       " usually ", " whose ", " where ", " when ", " having "};
    size_t best = strlen(out);
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char *p = strstr(out, cuts[i]);
        if (p && (size_t)(p - out) < best && count_words(out) > 6) {
            char save = *p;
            *p = 0;
            int w = count_words(out);
            *p = save;
            if (w >= 3) best = (size_t)(p - out);
        }
    }
    out[best] = 0;
}

/* Words of text a child would not know, as the P1 labeler counts them:
 * content words (>= 3 letters, not function words) tagged < 3 times in
 * WordNet.  Words of the concept's own name do not count: an answer must
 * name its subject whatever the style. */
static int rare_words(const mope_wordnet *wn, const char *text, const char *concept) {
    int n = 0;
    for (const char *p = text; *p;) {
        if (!isalpha((unsigned char)*p)) {
            p++;
            continue;
        }
        char w[64];
        size_t k = 0;
        while (isalpha((unsigned char)*p) || *p == '\'') {
            if (k < sizeof w - 1) w[k++] = (char)tolower((unsigned char)*p);
            p++;
        }
        w[k] = 0;
        if (k < 3 || mope_prefbench_is_stopword(w)) continue;
        const char *hit = strstr(concept, w);
        if (hit && (hit == concept || hit[-1] == ' ' || hit[-1] == '-')) continue;
        if (mope_wordnet_word_count(wn, w) < 3) n++;
    }
    return n;
}

static void gather(const mope_wordnet *wn, int synset, const char *concept, const unsigned char *exclude, facts *f) {
    const mope_wn_synset *sy = mope_wordnet_synset(wn, synset);
    memset(f, 0, sizeof *f);
    f->name = concept;
    const char *d = sy->definition;
    f->mass = mope_prefbench_is_mass(wn, synset, concept);
    if (mope_prefbench_plural(wn, concept, f->plural, sizeof f->plural) < 0)
        snprintf(f->plural, sizeof f->plural, "%s", concept);
    if (f->mass) snprintf(f->a_name, sizeof f->a_name, "%s", concept);
    else snprintf(f->a_name, sizeof f->a_name, "%s %s", mope_prefbench_article(concept), concept);
    memcpy(f->A_name, f->a_name, sizeof f->A_name);
    f->A_name[0] = (char)toupper((unsigned char)f->A_name[0]);
    snprintf(f->def_full, sizeof f->def_full, "%s", d);
    /* clauses */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", d);
    char *save = NULL;
    int ci = 0;
    for (char *cl = strtok_r(buf, ";", &save); cl; cl = strtok_r(NULL, ";", &save), ci++) {
        while (*cl == ' ') cl++;
        char clean[512];
        strip_parens(cl, clean, sizeof clean);
        if (!clean[0]) continue;
        if (!f->def_short[0]) snprintf(f->def_short, sizeof f->def_short, "%s", clean);
        else if (f->n_rest < 4 && clause_sentence(clean, f->rest[f->n_rest], sizeof f->rest[0])) f->n_rest++;
    }
    if (!f->def_short[0]) snprintf(f->def_short, sizeof f->def_short, "%s", d);
    if (!f->mass) {
        char ts[sizeof f->def_short], tf[sizeof f->def_full];
        add_article(f->def_short, ts, sizeof ts);
        memcpy(f->def_short, ts, sizeof ts);
        add_article(f->def_full, tf, sizeof tf);
        memcpy(f->def_full, tf, sizeof tf);
    }
    f->def_words = count_words(f->def_short);
    first_chunk(f->def_short, f->chunk, sizeof f->chunk);
    f->chunk_rare = rare_words(wn, f->chunk, concept);
    for (int i = 0; i < sy->n_examples && f->n_ex < 4; i++)
        if (count_words(sy->examples[i]) >= 3) f->ex[f->n_ex++] = sy->examples[i];
    for (int i = 0; i < f->n_ex && !f->ex_s; i++)
        if (count_words(f->ex[i]) <= 9 && rare_words(wn, f->ex[i], concept) == 0) f->ex_s = f->ex[i];
    /* hypernym chain */
    int cur = synset;
    while (f->n_chain < MAXF) {
        const mope_wn_synset *c = mope_wordnet_synset(wn, cur);
        int next = -1;
        for (int i = 0; i < c->n_ptrs; i++)
            if (c->ptrs[i].kind == MOPE_WN_HYPERNYM || c->ptrs[i].kind == MOPE_WN_INSTANCE_HYPERNYM) {
                next = c->ptrs[i].target;
                break;
            }
        if (next < 0) break;
        if (!(exclude && exclude[next])) f->chain[f->n_chain++] = first_lemma(wn, next);
        cur = next;
    }
    f->n_hypo = collect(wn, sy, K(MOPE_WN_HYPONYM), exclude, synset, f->hypo, MAXF);
    int part_idx[MAXF], holo_idx[4];
    f->n_parts = collect_idx(wn, sy, K(MOPE_WN_PART_MERONYM), exclude, synset, f->parts, part_idx, MAXF);
    f->n_subst = collect(wn, sy, K(MOPE_WN_SUBSTANCE_MERONYM), exclude, synset, f->subst, 4);
    f->n_members = collect(wn, sy, K(MOPE_WN_MEMBER_MERONYM), exclude, synset, f->members, 4);
    f->n_holo = collect_idx(wn, sy, K(MOPE_WN_PART_HOLONYM) | K(MOPE_WN_MEMBER_HOLONYM) | K(MOPE_WN_SUBSTANCE_HOLONYM),
                            exclude, synset, f->holo, holo_idx, 4);
    if (f->n_parts) with_article(wn, part_idx[0], f->parts[0], f->part_a, sizeof f->part_a);
    if (f->n_holo) with_article(wn, holo_idx[0], f->holo[0], f->holo_a, sizeof f->holo_a);
    const char *dom[1];
    if (collect(wn, sy, K(MOPE_WN_DOMAIN_TOPIC), exclude, synset, dom, 1) == 1) f->domain = dom[0];
    for (int i = 0; i < sy->n_ptrs; i++)
        if (sy->ptrs[i].kind == MOPE_WN_HYPERNYM && !(exclude && exclude[sy->ptrs[i].target])) {
            f->n_sib = collect(wn, mope_wordnet_synset(wn, sy->ptrs[i].target), K(MOPE_WN_HYPONYM), exclude, synset,
                               f->sib, 4);
            break;
        }
    for (int i = 0; i < sy->n_lemmas && f->n_syn < 4; i++)
        if (strcasecmp(sy->lemmas[i], concept) != 0) f->syn[f->n_syn++] = sy->lemmas[i];
    static const char *const too_abstract[] = {"entity", "physical entity", "abstraction", "abstract entity",
                                               "whole", "object", "physical object", "psychological feature",
                                               "causal agent", "matter", "unit", NULL};
    f->kind_simple = f->n_chain ? f->chain[0] : NULL;
    for (int i = 0; i < f->n_chain && i < 4 && !in_list(f->chain[i], too_abstract); i++)
        if (is_common(wn, f->chain[i])) {
            f->kind_simple = f->chain[i];
            break;
        }
    for (int i = 0; i < f->n_hypo; i++)
        if (is_common(wn, f->hypo[i])) f->hypo_s[f->n_hypo_s++] = f->hypo[i];
    for (int i = 0; i < f->n_sib; i++)
        if (is_common(wn, f->sib[i])) f->sib_s[f->n_sib_s++] = f->sib[i];
    f->part_common = f->n_parts && is_common(wn, f->parts[0]);
    f->holo_common = f->n_holo && is_common(wn, f->holo[0]);
    const char *ln = mope_wordnet_lexname(sy->lexfile);
    f->category = strncmp(ln, "noun.", 5) == 0 ? ln + 5 : ln;
    if (strcmp(f->category, "Tops") == 0) f->category = "general";
}

/* "x", "x and y", "x, y and z" (conj: "and"/"or"). */
static void join_list(const char *const *v, int n, const char *conj, char *out, size_t cap) {
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : (i == n - 1 ? (n > 2 ? ", " : " ") : ", ");
        int w = snprintf(out + k, cap - k, "%s%s%s%s", sep, (i == n - 1 && n > 1) ? conj : "",
                         (i == n - 1 && n > 1) ? " " : "", v[i]);
        if (w < 0 || (size_t)w >= cap - k) break;
        k += (size_t)w;
    }
}



/* ---------------- styles ---------------- */

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The tone styles' opening and closing sentences.  They are tables rather
 * than PICK lists because the tone wrapper below puts the same sentences
 * around other styles' answers. */
static const char *const FRIENDLY_OPEN[] = {
    "Oh, great question!",        "Ooh, I love this one!",          "Happy to help, friend!",
    "What a fun thing to ask about!", "Hey there! Great question.", "Oh, you're going to like this!",
    "Aw, I'm so glad you asked!", "Hi friend! Love this question.", "Yay, a fun one!",
    "Oh, I'm happy you asked!"};
static const char *const FRIENDLY_CLOSE[] = {
    "Hope that helps, and have a wonderful day! \xF0\x9F\x98\x8A", "Hope that helps, my friend!",
    "Thanks for asking, you made my day!", "Enjoy your new fact! \xF0\x9F\x98\x84",
    "Have fun with it, and keep those great questions coming!", "Stay curious, my friend! \xF0\x9F\x8C\x9F",
    "Catch you later, and keep wondering!"};
/* the unfriendly style fuses its sigh with the definition ("Ugh. A glacier
 * is ..."); around another style's answer it stands alone */
static const char *const UNFRIENDLY_OPEN[] = {"Sigh.", "Again?", "Ugh.", "Fine.", "Seriously?", "Look.",
                                              "Obviously you don't know this."};
static const char *const UNFRIENDLY_CLOSE[] = {
    "Look it up yourself next time.", "Don't ask me again.", "Whatever.", "Is that really so hard?",
    "Try paying attention.", "Figure out the rest on your own.", "Next question.",
    "Now stop bothering me.", "Go read a book.", "Try to keep up."};


/* The general assistant's answer sits between the styles on every
 * dimension: a definition and a few facts in ordinary adult sentences, so
 * that "simpler" and "shorter" are as far from it as "more technical" and
 * "more informative". */
static void style_neutral(const facts *f, mope_rng *r, sents *ss) {
    char chain[400] = "";
    if (f->n_chain >= 2 && chance(r, 0.5f))
        snprintf(chain, sizeof chain, "%s %s, which is in turn a kind of %s",
                 PICK(r, "it is a type of", "it belongs to the category of", "it is classified as a kind of"),
                 f->chain[0], f->chain[1]);
    else if (f->n_chain)
        snprintf(chain, sizeof chain, "%s %s", PICK(r, "it is a type of", "it belongs to the category of",
                 "it is a kind of", "it is classified as a kind of", "it is one form of"), f->chain[0]);
    /* half the time the category joins the definition's sentence */
    int joined = chain[0] && chance(r, 0.5f);
    char def[1024];
    snprintf(def, sizeof def, "%s%s%s", f->def_short, joined ? "; " : "", joined ? chain : "");
    switch (mope_rng_below(r, 6)) {
    case 0: add(ss, "%s is %s.", f->a_name, def); break;
    case 1: add(ss, "The term \"%s\" refers to %s.", f->name, def); break;
    case 2: add(ss, "%s can be described as %s.", f->a_name, def); break;
    case 3: add(ss, "%s is defined as %s.", f->a_name, def); break;
    case 4: add(ss, "The word \"%s\" names %s.", f->name, def); break;
    default: add(ss, "%s means %s.", f->a_name, def); break;
    }
    int lo = ss->n;
    if (chain[0] && !joined) add(ss, "%s.", chain);
    /* a fixed number of further facts (when the concept has them) keeps the
     * neutral length steady: its spread is the yardstick of the sanity table */
    int pool[5], n = 0;
    if (f->n_rest) pool[n++] = 0;
    if (f->n_hypo >= 2) pool[n++] = 1;
    if (f->n_ex) pool[n++] = 2;
    if (f->n_holo) pool[n++] = 3;
    if (f->n_parts) pool[n++] = 4;
    for (int i = 0; i < n && i < 3; i++) {
        int j = i + (int)mope_rng_below(r, (uint32_t)(n - i)), t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        switch (pool[i]) {
        case 0: add(ss, "%s", f->rest[0]); break;
        case 1:
            add(ss, "%s include %s and %s.", PICK(r, "Examples", "Common kinds", "Types"), f->hypo[0], f->hypo[1]);
            break;
        case 2: add(ss, "%s \"%s.\"", PICK(r, "For example:", "A typical use:", "As in:"), f->ex[0]); break;
        case 3: add(ss, "It is part of %s.", f->holo_a); break;
        default: add(ss, "Its parts include %s.", f->part_a); break;
        }
    }
    shuffle(ss, lo, ss->n, r);
}

static void style_elementary(const facts *f, mope_rng *r, sents *ss) {
    const char *kind = f->kind_simple ? f->kind_simple : "thing";
    switch (mope_rng_below(r, 4)) {
    case 0: add(ss, "%s is a kind of %s.", f->a_name, kind); break;
    case 1: add(ss, "Do you know what %s is? It is a kind of %s.", f->a_name, kind); break;
    case 2: add(ss, "Let me tell you about %s.", f->mass ? f->name : f->plural); add(ss, "It is a kind of %s.", kind); break;
    default: add(ss, "%s is one type of %s.", f->a_name, kind); break;
    }
    int lo = ss->n;
    /* a child does not know the dictionary's hard words: a definition with
     * them is left out, the kind, parts and relatives carry the answer */
    if (f->chunk_rare == 0 || chance(r, 0.15f))
        add(ss, "%s %s.", PICK(r, "It is", "Put simply, it is", "In plain words, it is", "That means it is",
                               "Here is a simple way to say it: it is"), f->chunk);
    if (f->n_sib_s >= 1 && chance(r, 0.7f)) {
        const char *sib = f->sib_s[mope_rng_below(r, (uint32_t)f->n_sib_s)];
        add(ss, "%s %s %s, %s.", PICK(r, "It is a bit like", "You can think of it like", "It is kind of like"),
            mope_prefbench_article(sib), sib, PICK(r, "but not the same", "but it is not the same thing", "but a bit different"));
    }
    if (f->n_hypo_s >= 1 && chance(r, 0.7f)) {
        add(ss, "%s %s.", PICK(r, "One kind is", "Here is one kind:", "There is a kind called"), f->hypo_s[0]);
        if (f->n_hypo_s >= 2 && chance(r, 0.5f))
            add(ss, "%s %s.", PICK(r, "Another is", "Another kind is"), f->hypo_s[1]);
    }
    if (f->part_common && chance(r, 0.6f)) {
        if (chance(r, 0.5f)) add(ss, "It has %s.", f->part_a);
        else add(ss, "One part of it is the %s.", f->parts[0]);
    }
    if (f->holo_common && chance(r, 0.6f))
        add(ss, "%s %s.", PICK(r, "It is a part of", "You can find it in", "It belongs to"), f->holo_a);
    if (f->ex_s && chance(r, 0.6f))
        add(ss, "%s \"%s.\"", PICK(r, "People say:", "You might hear:", "Here is how we use the word:"), f->ex_s);
    shuffle(ss, lo, ss->n, r);
    if (chance(r, 0.5f))
        add(ss, "%s", PICK(r, "That is the main idea.", "So now you know what it is.", "That is all there is to it.",
                           "It is as simple as that."));
}

static void style_expert(const facts *f, mope_rng *r, sents *ss) {
    const char *kind = f->n_chain ? f->chain[0] : "entity";
    switch (mope_rng_below(r, 4)) {
    case 3:
        add(ss, "From a classificatory standpoint, the lexeme \"%s\" designates %s; its immediate superordinate is "
                "%s, and its lexicographer file situates it among the %s nominals.", f->name, f->def_full, kind, f->category);
        break;
    case 0:
        add(ss, "In lexical-semantic terms, %s denotes %s, and it is subsumed under the superordinate category "
                "\"%s\" within the %s taxonomy of nominal concepts.", f->name, f->def_full, kind, f->category);
        break;
    case 1:
        add(ss, "Formally characterized, %s constitutes %s; taxonomically, it is a specialization of %s, "
                "situated within the %s portion of the nominal hierarchy.", f->a_name, f->def_full, kind, f->category);
        break;
    default:
        add(ss, "The designation \"%s\" conventionally signifies %s, an intensional characterization that "
                "positions it as a hyponym of %s in the %s ontology.", f->name, f->def_full, kind, f->category);
        break;
    }
    int lo = ss->n;
    if (f->n_chain >= 2) {
        char chain[1024];
        size_t k = 0;
        chain[0] = 0;
        int n = f->n_chain < 5 ? f->n_chain : 5;
        for (int i = 0; i < n && k < sizeof chain; i++) {
            int w = snprintf(chain + k, sizeof chain - k, "%s%s", i ? " \xE2\x86\x92 " : "", f->chain[i]);
            if (w < 0) break;
            k += (size_t)w;
        }
        add(ss, "%s: %s, reflecting progressively more abstract levels of categorization.",
            PICK(r, "Its hypernymic lineage proceeds as follows", "The transitive hypernymy chain is",
                 "Tracing the subsumption hierarchy upward yields"), chain);
    }
    if (f->n_hypo >= 2) {
        char l[1024];
        join_list(f->hypo, f->n_hypo < 4 ? f->n_hypo : 4, "and", l, sizeof l);
        add(ss, "%s include %s, each inheriting the constitutive properties of the superordinate concept while "
                "introducing further differentiae.", PICK(r, "Subordinate specializations (hyponyms)",
                                                          "Its principal hyponymic subtypes", "Taxonomically subordinate variants"), l);
    }
    if (f->n_parts >= 1) {
        char l[1024];
        join_list(f->parts, f->n_parts < 3 ? f->n_parts : 3, "and", l, sizeof l);
        add(ss, "Mereologically, its constituent components comprise %s.", l);
    }
    if (f->n_subst >= 1) add(ss, "With respect to material composition, it is constituted substantially of %s.", f->subst[0]);
    if (f->n_holo >= 1) add(ss, "Conversely, it functions as a meronymic constituent of %s.", f->holo_a);
    if (f->domain) add(ss, "Its usage is principally circumscribed by the domain of %s, where it carries specialized technical connotations.", f->domain);
    if (f->n_syn >= 1) add(ss, "Lexicographically, it is synonymous with \"%s\".", f->syn[0]);
    if (f->n_ex && chance(r, 0.6f)) add(ss, "Canonical usage is exemplified by the attested construction \"%s\".", f->ex[0]);
    shuffle(ss, lo, ss->n, r);
}

static void style_concise(const facts *f, mope_rng *r, sents *ss) {
    switch (mope_rng_below(r, 7)) {
    case 0: add(ss, "%s is %s.", f->a_name, f->def_short); break;
    case 1: add(ss, "%s: %s.", f->name, f->def_short); break;
    case 2: add(ss, "In short, %s is %s.", f->a_name, f->def_short); break;
    case 3: add(ss, "It is %s.", f->def_short); break;
    case 4: add(ss, "Briefly: %s.", f->def_short); break;
    case 5: add(ss, "%s is %s, in a word.", f->a_name, f->def_short); break;
    default: add(ss, "%s refers to %s.", f->a_name, f->def_short); break;
    }
}

static void style_informative(const facts *f, mope_rng *r, sents *ss) {
    char l[1024];
    add(ss, "%s %s %s.", f->a_name, f->mass ? "is defined as" : PICK(r, "is", "is defined as"), f->def_short);
    int lo = ss->n;
    for (int i = 0; i < f->n_rest; i++) add(ss, "%s", f->rest[i]);
    if (f->n_chain >= 2) {
        const char *v[3] = {f->chain[0], f->chain[1], f->n_chain >= 3 ? f->chain[2] : NULL};
        if (v[2])
            add(ss, "It is a kind of %s, which in turn is a kind of %s and, more broadly, of %s.", v[0], v[1], v[2]);
        else
            add(ss, "It is a kind of %s, which in turn is a kind of %s.", v[0], v[1]);
    } else if (f->n_chain == 1) {
        add(ss, "It is a kind of %s.", f->chain[0]);
    }
    if (f->n_hypo >= 1) {
        join_list(f->hypo, f->n_hypo < 5 ? f->n_hypo : 5, "and", l, sizeof l);
        add(ss, "%s %s.", PICK(r, "Specific kinds include", "There are several varieties, such as", "Its subtypes include"), l);
    }
    if (f->n_parts >= 1) {
        join_list(f->parts, f->n_parts < 4 ? f->n_parts : 4, "and", l, sizeof l);
        add(ss, "%s %s.", PICK(r, "Its parts include", "It has parts such as", "Among its components are"), l);
    }
    if (f->n_subst >= 1) {
        join_list(f->subst, f->n_subst, "and", l, sizeof l);
        add(ss, "It is made of %s.", l);
    }
    if (f->n_members >= 1) {
        join_list(f->members, f->n_members, "and", l, sizeof l);
        add(ss, "Its members include %s.", l);
    }
    if (f->n_holo >= 1) {
        join_list(f->holo, f->n_holo < 3 ? f->n_holo : 3, "and", l, sizeof l);
        add(ss, "It is part of %s.", l);
    }
    if (f->domain) add(ss, "The term is used in the field of %s.", f->domain);
    if (f->n_syn >= 1) {
        join_list(f->syn, f->n_syn, "or", l, sizeof l);
        add(ss, "It is also called %s.", l);
    }
    if (f->n_sib >= 2) add(ss, "Related concepts of the same kind include %s and %s.", f->sib[0], f->sib[1]);
    if (f->n_ex) add(ss, "%s \"%s.\"", PICK(r, "For example:", "A typical usage:", "An example sentence:"), f->ex[0]);
    shuffle(ss, lo, ss->n, r);
    if (chance(r, 0.5f)) add(ss, "WordNet files it under the %s category.", f->category);
}

static void style_friendly(const facts *f, mope_rng *r, sents *ss) {
    add(ss, "%s", pick(r, FRIENDLY_OPEN, NELEM(FRIENDLY_OPEN)));
    switch (mope_rng_below(r, 4)) {
    case 0: add(ss, "So, %s is %s.", f->a_name, f->def_short); break;
    case 1: add(ss, "Here's the scoop: %s is %s.", f->a_name, f->def_short); break;
    case 2: add(ss, "Basically, %s is %s.", f->a_name, f->def_short); break;
    default: add(ss, "You know what? %s is %s.", f->A_name, f->def_short); break;
    }
    int lo = ss->n;
    if (f->n_chain) {
        const char *k = f->chain[0];
        switch (mope_rng_below(r, 5)) {
        case 0: add(ss, "Think of it as the cool cousin in the %s family!", k); break;
        case 1: add(ss, "It's a kind of %s, and honestly, a pretty awesome one.", k); break;
        case 2: add(ss, "If the %s family threw a party, this one would be the life of it!", k); break;
        case 3: add(ss, "It's a kind of %s, so you could call it a %s with a little extra sparkle!", k, k); break;
        default: add(ss, "You could say it's a proud member of the %s club!", k); break;
        }
    }
    if (f->n_ex && chance(r, 0.5f)) add(ss, "You might hear it like this: \"%s.\" Fun, right?", f->ex[0]);
    else if (f->n_hypo && chance(r, 0.5f)) add(ss, "Fun fact: one of its kinds is %s, which I think is delightful!", f->hypo[0]);
    if (chance(r, 0.5f))
        add(ss, "%s", PICK(r, "If you ever need a party fact, you're welcome!", "I promise this will come up at trivia night.",
                           "Not the flashiest topic, but I love it anyway!", "Who knew words could be this fun?",
                           "Now you can casually drop this at dinner and watch everyone be amazed!",
                           "I'd make a joke about it, but you'd probably see it coming!"));
    shuffle(ss, lo, ss->n, r);
    add(ss, "%s", pick(r, FRIENDLY_CLOSE, NELEM(FRIENDLY_CLOSE)));
}

static void style_unfriendly(const facts *f, mope_rng *r, sents *ss) {
    switch (mope_rng_below(r, 8)) {
    case 6: add(ss, "Sigh. %s is %s.", f->A_name, f->def_short); break;
    case 7: add(ss, "Again? %s is %s.", f->A_name, f->def_short); break;
    case 0: add(ss, "Obviously, %s is %s.", f->a_name, f->def_short); break;
    case 1: add(ss, "Fine. %s is %s.", f->A_name, f->def_short); break;
    case 2: add(ss, "Ugh. %s is %s.", f->A_name, f->def_short); break;
    case 3: add(ss, "Seriously? %s is %s.", f->A_name, f->def_short); break;
    case 4: add(ss, "Look, %s is %s.", f->a_name, f->def_short); break;
    default: add(ss, "%s is %s. Obviously.", f->a_name, f->def_short); break;
    }
    int lo = ss->n;
    if (f->n_chain && chance(r, 0.7f))
        add(ss, "%s %s.", PICK(r, "It's a kind of", "It is just a type of", "It's merely a kind of"), f->chain[0]);
    if (chance(r, 0.7f))
        add(ss, "%s", PICK(r, "Not exactly rocket science.", "This is basic stuff.", "I shouldn't have to explain this.",
                           "Anyone could have looked that up.", "Honestly, this is trivial.",
                           "I can't believe you needed to ask.", "Everyone knows this."));
    shuffle(ss, lo, ss->n, r);
    add(ss, "%s", pick(r, UNFRIENDLY_CLOSE, NELEM(UNFRIENDLY_CLOSE)));
}

const char *mope_prefbench_style_name(int style) {
    static const char *const names[MOPE_PREFBENCH_N_STYLES] = {"neutral", "P1A", "P1B", "P2A", "P2B", "P3A", "P3B"};
    return (style >= 0 && style < MOPE_PREFBENCH_N_STYLES) ? names[style] : "";
}

int mope_prefbench_compose(const mope_wordnet *wn, int synset, const char *concept, int style, mope_rng *rng,
                           const unsigned char *exclude, char *out, size_t cap) {
    if (!wn || !concept || !out || !rng || style < 0 || style >= MOPE_PREFBENCH_N_STYLES ||
        !mope_wordnet_synset(wn, synset))
        return MOPE_EINVAL;
    facts *f = malloc(sizeof *f);
    sents *ss = malloc(sizeof *ss);
    if (!f || !ss) {
        free(f);
        free(ss);
        return MOPE_ENOMEM;
    }
    gather(wn, synset, concept, exclude, f);
    ss->n = 0;
    switch (style) {
    case 0: style_neutral(f, rng, ss); break;
    case 1: style_elementary(f, rng, ss); break;
    case 2: style_expert(f, rng, ss); break;
    case 3: style_concise(f, rng, ss); break;
    case 4: style_informative(f, rng, ss); break;
    case 5: style_friendly(f, rng, ss); break;
    default: style_unfriendly(f, rng, ss); break;
    }
    size_t k = 0;
    int rc = 0;
    for (int i = 0; i < ss->n; i++) {
        size_t l = strlen(ss->s[i]);
        if (k + l + 2 > cap) {
            rc = MOPE_ERANGE;
            break;
        }
        if (i) out[k++] = ' ';
        memcpy(out + k, ss->s[i], l);
        k += l;
    }
    if (cap) out[k < cap ? k : cap - 1] = 0;
    free(f);
    free(ss);
    return rc ? rc : (int)k;
}

int mope_prefbench_tone_wrap(int tone, const char *answer, mope_rng *rng, char *out, size_t cap) {
    if (!answer || !out || !rng || tone < -1 || tone > 1) return MOPE_EINVAL;
    const char *open = "", *close = "";
    if (tone > 0) {
        open = pick(rng, FRIENDLY_OPEN, NELEM(FRIENDLY_OPEN));
        close = pick(rng, FRIENDLY_CLOSE, NELEM(FRIENDLY_CLOSE));
    } else if (tone < 0) {
        open = pick(rng, UNFRIENDLY_OPEN, NELEM(UNFRIENDLY_OPEN));
        close = pick(rng, UNFRIENDLY_CLOSE, NELEM(UNFRIENDLY_CLOSE));
    }
    int n = tone ? snprintf(out, cap, "%s %s %s", open, answer, close) : snprintf(out, cap, "%s", answer);
    if (n < 0 || (size_t)n >= cap) return MOPE_ERANGE;
    return n;
}
