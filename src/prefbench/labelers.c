/* PrefBench labelers: cheap, deterministic stand-ins for the GPT-4 annotators
 * of the paper, one per preference dimension, plus a shared quality gate.
 *
 * The gate is what keeps them from being gamed: every choice's utility is
 * multiplied by it, so an empty, truncated, off-topic or repetitive answer
 * scores low on every dimension at once (an empty answer is not "concise",
 * a repeated paragraph is not "informative", "friend!!!" is not friendly). */
#include "mope/prefbench.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define MAX_TOK 2048
#define WLEN 32

#define LEX_CAP 1024
enum { F_STOP = 1, F_WARM = 2, F_HUMOUR = 4, F_HOSTILE = 8 };

struct mope_prefbench_labeler {
    const mope_wordnet *wn;
    /* the word lists below, hashed: word -> F_* flags */
    const char *lex_key[LEX_CAP];
    int lex_flags[LEX_CAP];
};

static uint64_t hash_word(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int lex_flags(const mope_prefbench_labeler *lb, const char *w) {
    for (size_t i = hash_word(w) & (LEX_CAP - 1);; i = (i + 1) & (LEX_CAP - 1)) {
        if (!lb->lex_key[i]) return 0;
        if (strcmp(lb->lex_key[i], w) == 0) return lb->lex_flags[i];
    }
}

static void lex_add(mope_prefbench_labeler *lb, const char *const *list, int flag) {
    for (; *list; list++) {
        size_t i = hash_word(*list) & (LEX_CAP - 1);
        while (lb->lex_key[i] && strcmp(lb->lex_key[i], *list) != 0) i = (i + 1) & (LEX_CAP - 1);
        lb->lex_key[i] = *list;
        lb->lex_flags[i] |= flag;
    }
}


/* ---- word lists ---- */
static const char *const STOP[] = {
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as",
    "into", "onto", "about", "over", "under", "than", "then", "so", "that", "this", "these", "those", "it", "its",
    "it's", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "have", "has", "had",
    "not", "no", "yes", "can", "could", "may", "might", "will", "would", "shall", "should", "must", "i", "me",
    "my", "we", "us", "our", "you", "your", "you're", "you'll", "he", "she", "him", "her", "his", "they",
    "them", "their", "there", "here", "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
    "all", "any", "some", "one", "each", "every", "other", "another", "such", "more", "most", "much", "many",
    "very", "also", "just", "only", "even", "too", "again", "now", "well", "really", "quite", "rather", "still",
    "thing", "things", "kind", "kinds", "type", "types", "sort", "way", "like", "called", "means", "mean",
    "refers", "refer", "known", "used", "use", "make", "made", "get", "got", "let", "say", "says", "said",
    "tell", "know", "think", "see", "look", "go", "part", "parts", "include", "includes", "example", "word",
    "term", "simply", "basically", "put", "lot", "bit", "while", "because", "after", "before", "out", "up",
    "down", "off", "can't", "don't", "isn't", "i'm", "i'd", "that's", "what's", "here's", "there's", "let's",
    NULL};

/* The labeler's function words, for the corpus composer's rare-word check
 * (one list, so "rare" means the same in both). w must be lower case. */
int mope_prefbench_is_stopword(const char *w) {
    for (const char *const *p = STOP; *p; p++)
        if (strcmp(*p, w) == 0) return 1;
    return 0;
}

static const char *const WARM[] = {"great", "glad", "happy", "love", "loved", "lovely", "wonderful", "awesome",
                                   "amazing", "delightful", "fun", "enjoy", "friend", "buddy", "pal", "cheers",
                                   "hope", "welcome", "thanks", "thank", "cool", "neat", "fantastic", "excellent",
                                   "exciting", "fascinating", "pleasure", "favorite", "favourite", "nice", "sweet",
                                   "beautiful", "smile", "hug", "yay", "wow", "ooh", "aw", "hey", "hi", "hello",
                                   "brilliant", "dear", "joy", "charming", "cute", "adorable", "proud", "promise",
                                   NULL};
static const char *const HUMOUR[] = {"haha", "hehe", "lol", "joke", "jokes", "pun", "funny", "laugh", "silly",
                                     "goofy", "trivia", "party", "imagine", "kidding", "hilarious", "cousin",
                                     "wink", NULL};
static const char *const HOSTILE[] = {"obviously", "stupid", "dumb", "idiot", "whatever", "seriously", "duh",
                                      "ugh", "boring", "waste", "bother", "annoying", "trivial", "merely",
                                      "pathetic", "ridiculous", "lazy", "useless", "hopeless", "shouldn't",
                                      "anyone", "fine", "clearly", "tedious", "pointless", "sigh", "meh", NULL};
static const char *const WARM_PHRASES[] = {"great question", "happy to help", "hope that helps", "glad you asked",
                                           "you're welcome", "have a wonderful", "have a great", "have fun",
                                           "made my day", "fun fact", "my friend", "thanks for asking", NULL};
static const char *const HOSTILE_PHRASES[] = {"look it up", "figure it out", "figure out", "don't ask", "do not ask",
                                              "next question", "pay attention", "paying attention", "not my problem",
                                              "rocket science", "shouldn't have to", "so hard", "google it",
                                              "on your own", "yourself", "leave me alone", "go away", "stop asking",
                                              "how many times", "basic stuff", "waste of", "everyone knows",
                                              "keep up", "can't believe you", "bothering me", NULL};

mope_prefbench_labeler *mope_prefbench_labeler_create(const mope_wordnet *wn, mope_error *err) {
    if (!wn) {
        mope_error_set(err, MOPE_EINVAL, "prefbench labeler: WordNet is required");
        return NULL;
    }
    mope_prefbench_labeler *lb = calloc(1, sizeof *lb);
    if (!lb) {
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    lb->wn = wn;
    lex_add(lb, STOP, F_STOP);
    lex_add(lb, WARM, F_WARM);
    lex_add(lb, HUMOUR, F_HUMOUR);
    lex_add(lb, HOSTILE, F_HOSTILE);
    return lb;
}

void mope_prefbench_labeler_free(mope_prefbench_labeler *lb) { free(lb); }

/* Plural and possessive endings off, so "glaciers" matches "glacier". */
static void stem(const char *w, char *out) {
    size_t n = strlen(w);
    memcpy(out, w, n + 1);
    if (n > 2 && out[n - 2] == '\'' && out[n - 1] == 's') out[n -= 2] = 0;
    if (n > 4 && strcmp(out + n - 3, "ies") == 0) strcpy(out + n - 3, "y");
    else if (n > 4 && (strcmp(out + n - 4, "sses") == 0 || strcmp(out + n - 4, "ches") == 0 ||
                       strcmp(out + n - 4, "shes") == 0))
        out[n - 2] = 0;
    else if (n > 3 && (strcmp(out + n - 3, "xes") == 0 || strcmp(out + n - 3, "zes") == 0)) out[n - 2] = 0;
    else if (n > 3 && out[n - 1] == 's' && out[n - 2] != 's' && out[n - 2] != 'u' && out[n - 2] != 'i')
        out[n - 1] = 0;
}

typedef struct tok {
    char w[WLEN], st[WLEN];
    uint64_t hw, hs; /* hashes of w and st */
    int sent, stop, flags;
} tok;

typedef struct doc {
    tok *t;
    int n, max, n_sent, excl_sent;
    int sent_has_you[256];
    int emoji;
    char *lower; /* lowercased text for phrase search */
    int *set;    /* stems: open addressing over token index + 1 */
    size_t set_cap;
    int distinct_content;
} doc;

static void doc_free(doc *d) {
    free(d->t);
    free(d->lower);
    free(d->set);
}

static int is_wc(unsigned char c) { return isalpha(c) || c == '\''; }

static int tokenize(const mope_prefbench_labeler *lb, const char *text, doc *d) {
    d->n = 0;
    d->n_sent = 0;
    d->excl_sent = 0;
    d->emoji = 0;
    memset(d->sent_has_you, 0, sizeof d->sent_has_you);
    size_t len = strlen(text);
    d->lower = malloc(len + 1);
    /* a word takes at least two bytes with its separator */
    d->max = len / 2 + 2 < MAX_TOK ? (int)(len / 2 + 2) : MAX_TOK;
    d->t = malloc((size_t)d->max * sizeof *d->t);
    if (!d->lower || !d->t) return MOPE_ENOMEM;
    for (size_t i = 0; i <= len; i++) d->lower[i] = (char)tolower((unsigned char)text[i]);
    const unsigned char *p = (const unsigned char *)d->lower;
    int in_sent = 0;
    while (*p) {
        if (isalpha(*p)) {
            char w[WLEN];
            size_t k = 0;
            while (*p && (is_wc(*p) || (*p == '-' && isalpha(p[1])))) {
                if (k < WLEN - 1) w[k++] = (char)*p;
                p++;
            }
            while (k > 0 && w[k - 1] == '\'') k--;
            w[k] = 0;
            if (!k || d->n >= d->max) continue;
            tok *t = &d->t[d->n++];
            memcpy(t->w, w, k + 1);
            stem(w, t->st);
            t->sent = d->n_sent;
            t->flags = lex_flags(lb, w);
            t->stop = (t->flags & F_STOP) || k < 3;
            t->hw = hash_word(t->w);
            t->hs = hash_word(t->st);
            if ((strcmp(w, "you") == 0 || strcmp(w, "your") == 0 || strncmp(w, "you'", 4) == 0 ||
                 strcmp(w, "yours") == 0) && d->n_sent < 256)
                d->sent_has_you[d->n_sent] = 1;
            in_sent = 1;
        } else if (*p == '.' || *p == '!' || *p == '?') {
            int excl = 0;
            while (*p == '.' || *p == '!' || *p == '?') excl |= *p++ == '!';
            if (in_sent && (*p == 0 || isspace(*p) || *p == '"' || *p == '\'' || *p == ')' || *p >= 0x80)) {
                d->excl_sent += excl;
                d->n_sent++;
                in_sent = 0;
            }
        } else {
            if (p[0] == 0xF0 && p[1] == 0x9F) d->emoji = 1;
            if (p[0] == ':' && (p[1] == ')' || p[1] == 'D' || p[1] == 'd')) d->emoji = 1;
            p++;
        }
    }
    if (in_sent) d->n_sent++;
    d->set_cap = 16;
    while (d->set_cap < (size_t)d->n * 2) d->set_cap <<= 1;
    d->set = calloc(d->set_cap, sizeof *d->set);
    if (!d->set) return MOPE_ENOMEM;
    d->distinct_content = 0;
    for (int i = 0; i < d->n; i++) {
        size_t j = d->t[i].hs & (d->set_cap - 1);
        while (d->set[j] && strcmp(d->t[d->set[j] - 1].st, d->t[i].st) != 0) j = (j + 1) & (d->set_cap - 1);
        if (d->set[j]) continue;
        d->set[j] = i + 1;
        d->distinct_content += !d->t[i].stop;
    }
    return 0;
}

static int doc_has_stem(const doc *d, const char *st) {
    for (size_t j = hash_word(st) & (d->set_cap - 1); d->set[j]; j = (j + 1) & (d->set_cap - 1))
        if (strcmp(d->t[d->set[j] - 1].st, st) == 0) return 1;
    return 0;
}

/* Share of the content words of phrase found in the answer (-1: none). */
static double phrase_coverage(const mope_prefbench_labeler *lb, const doc *d, const char *phrase) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", phrase);
    int total = 0, hit = 0;
    for (char *p = buf; *p;) {
        while (*p && !isalpha((unsigned char)*p)) p++;
        if (!*p) break;
        char w[WLEN];
        size_t k = 0;
        while (*p && (is_wc((unsigned char)*p) || *p == '-')) {
            if (k < WLEN - 1) w[k++] = (char)tolower((unsigned char)*p);
            p++;
        }
        w[k] = 0;
        if (k < 3 || (lex_flags(lb, w) & F_STOP)) continue;
        char st[WLEN];
        stem(w, st);
        total++;
        hit += doc_has_stem(d, st);
    }
    return total ? (double)hit / total : -1.0;
}

/* ---- facts of the concept ---- */
#define MAX_FACTS 64
typedef struct cfacts {
    const char *concept;
    int synset;
    const char *items[MAX_FACTS]; /* related names, definition clauses, examples */
    int kind[MAX_FACTS];          /* 0 name (all words needed), 1 clause/example (half) */
    int n;
    const char *def;
} cfacts;

static void add_item(cfacts *f, const char *s, int kind) {
    if (f->n < MAX_FACTS) {
        f->items[f->n] = s;
        f->kind[f->n++] = kind;
    }
}

static void concept_facts(const mope_wordnet *wn, int synset, cfacts *f) {
    const mope_wn_synset *sy = mope_wordnet_synset(wn, synset);
    f->def = sy->definition;
    /* walk up the hypernym chain (5 levels) */
    int cur = synset;
    for (int depth = 0; depth < 5; depth++) {
        const mope_wn_synset *c = mope_wordnet_synset(wn, cur);
        int next = -1;
        for (int i = 0; i < c->n_ptrs; i++)
            if (c->ptrs[i].kind == MOPE_WN_HYPERNYM || c->ptrs[i].kind == MOPE_WN_INSTANCE_HYPERNYM) {
                next = c->ptrs[i].target;
                break;
            }
        if (next < 0) break;
        add_item(f, mope_wordnet_synset(wn, next)->lemmas[0], 0);
        if (depth == 0) {
            /* siblings: other kinds of the same parent */
            const mope_wn_synset *h = mope_wordnet_synset(wn, next);
            int ns = 0;
            for (int i = 0; i < h->n_ptrs && ns < 6; i++)
                if (h->ptrs[i].kind == MOPE_WN_HYPONYM && h->ptrs[i].target != synset) {
                    add_item(f, mope_wordnet_synset(wn, h->ptrs[i].target)->lemmas[0], 0);
                    ns++;
                }
        }
        cur = next;
    }
    for (int i = 0; i < sy->n_ptrs; i++) {
        int k = sy->ptrs[i].kind;
        if (k == MOPE_WN_HYPERNYM || k == MOPE_WN_INSTANCE_HYPERNYM || k == MOPE_WN_DOMAIN_TOPIC_MEMBER) continue;
        add_item(f, mope_wordnet_synset(wn, sy->ptrs[i].target)->lemmas[0], 0);
    }
    for (int i = 0; i < sy->n_lemmas; i++)
        if (strcasecmp(sy->lemmas[i], f->concept) != 0) add_item(f, sy->lemmas[i], 0);
    for (int i = 0; i < sy->n_examples; i++) add_item(f, sy->examples[i], 1);
}

/* Clauses of the definition are facts too; counted separately because they
 * live in one string. */
static double definition_facts(const mope_prefbench_labeler *lb, const doc *d, const char *def, int *core) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", def);
    double facts = 0;
    char *save = NULL;
    int first = 1;
    *core = 0;
    for (char *cl = strtok_r(buf, ";", &save); cl; cl = strtok_r(NULL, ";", &save)) {
        /* parenthesised asides are optional detail, not part of the fact */
        char clean[1024];
        size_t k = 0;
        int depth = 0;
        for (const char *p = cl; *p && k + 1 < sizeof clean; p++) {
            if (*p == '(') depth++;
            else if (*p == ')') depth -= depth > 0;
            else if (!depth) clean[k++] = *p;
        }
        clean[k] = 0;
        double cov = phrase_coverage(lb, d, clean);
        if (cov >= 0.5) {
            facts += 1;
            if (first) *core = 1;
        }
        first = 0;
    }
    return facts;
}

/* Concept named in a prompt: the longest run of up to 3 words WordNet knows,
 * preferring later ones ("What is an ice cream cone?"). */
static int concept_from_prompt(const mope_prefbench_labeler *lb, const char *prompt, char *out, size_t cap) {
    const mope_wordnet *wn = lb->wn;
    doc d;
    memset(&d, 0, sizeof d);
    int found = 0;
    if (tokenize(lb, prompt, &d) == 0) {
        int best_len = 0;
        for (int i = 0; i < d.n; i++)
            for (int len = 3; len >= 1; len--) {
                if (i + len > d.n) continue;
                char cand[128] = "";
                size_t k = 0;
                int ok = 1;
                for (int j = 0; j < len && ok; j++) {
                    int w = snprintf(cand + k, sizeof cand - k, "%s%s", j ? " " : "", d.t[i + j].w);
                    if (w < 0 || (size_t)w >= sizeof cand - k) ok = 0;
                    else k += (size_t)w;
                }
                if (!ok || (len == 1 && d.t[i].stop)) continue;
                const char *try[2] = {cand, NULL};
                char st[128];
                if (len == 1) {
                    snprintf(st, sizeof st, "%s", d.t[i].st);
                    try[1] = st;
                }
                for (int t = 0; t < 2 && try[t]; t++)
                    if (mope_wordnet_senses(wn, try[t], NULL, NULL) > 0 && len >= best_len) {
                        best_len = len;
                        snprintf(out, cap, "%s", try[t]);
                        found = 1;
                        break;
                    }
            }
    }
    doc_free(&d);
    return found;
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

static int count_phrases(const char *text, const char *const *list) {
    int n = 0;
    for (; *list; list++)
        if (strstr(text, *list)) n++;
    return n;
}

int mope_prefbench_label(const mope_prefbench_labeler *lb, const char *answer, const char *prompt,
                         const char *concept, mope_prefbench_labels *out, mope_error *err) {
    if (!lb || !answer || !out) return mope_error_set(err, MOPE_EINVAL, "prefbench label: missing argument");
    memset(out, 0, sizeof *out);
    char cbuf[128];
    if ((!concept || !*concept) && prompt && concept_from_prompt(lb, prompt, cbuf, sizeof cbuf)) concept = cbuf;
    doc d;
    memset(&d, 0, sizeof d);
    int rc = tokenize(lb, answer, &d);
    if (rc) {
        doc_free(&d);
        return mope_error_set(err, rc, "prefbench label: out of memory");
    }
    mope_prefbench_quality *q = &out->q;
    out->words = d.n;
    if (d.n == 0) {
        q->empty = 1;
        q->gate = 0;
        doc_free(&d);
        return 0;
    }
    /* --- facts --- */
    cfacts cf;
    memset(&cf, 0, sizeof cf);
    cf.concept = concept ? concept : "";
    const int32_t *syn = NULL;
    int core = 0, concept_named = 0;
    if (concept && *concept) {
        double cov = phrase_coverage(lb, &d, concept);
        concept_named = cov >= 0.99 || (cov < 0 && strstr(d.lower, concept));
        if (mope_wordnet_senses(lb->wn, concept, &syn, NULL) > 0) {
            concept_facts(lb->wn, syn[0], &cf);
        }
    }
    double facts = 0;
    for (int i = 0; i < cf.n; i++) {
        double cov = phrase_coverage(lb, &d, cf.items[i]);
        if (cf.kind[i] == 0 ? cov >= 0.99 : cov >= 0.5) {
            facts += 1;
            if (cf.kind[i] == 0 && strcasecmp(cf.items[i], cf.concept) != 0) {
                /* a synonym names the concept too */
                const mope_wn_synset *sy = syn ? mope_wordnet_synset(lb->wn, syn[0]) : NULL;
                for (int j = 0; sy && j < sy->n_lemmas; j++)
                    if (strcasecmp(sy->lemmas[j], cf.items[i]) == 0) concept_named = 1;
            }
        }
    }
    if (cf.def) facts += definition_facts(lb, &d, cf.def, &core);
    /* --- repetition: repeated word trigrams and repeated sentences --- */
    int tri = 0, rep = 0;
    if (d.n >= 3) {
        size_t cap = 16;
        while (cap < (size_t)d.n * 2) cap <<= 1;
        uint64_t *seen = calloc(cap, sizeof *seen);
        if (!seen) {
            doc_free(&d);
            return mope_error_set(err, MOPE_ENOMEM, "prefbench label: out of memory");
        }
        for (int i = 0; i + 2 < d.n; i++) {
            uint64_t key = (d.t[i].hw * 31 + d.t[i + 1].hw) * 1000003ull + d.t[i + 2].hw;
            key |= 1; /* 0 marks an empty slot */
            size_t j = (size_t)(key ^ (key >> 32)) & (cap - 1);
            while (seen[j] && seen[j] != key) j = (j + 1) & (cap - 1);
            tri++;
            if (seen[j]) rep++;
            else seen[j] = key;
        }
        free(seen);
    }
    /* content words repeated many times also count, so "ice ice ice" is caught */
    int content = 0, distinct = d.distinct_content, rare = 0;
    for (int i = 0; i < d.n; i++) {
        if (d.t[i].stop) continue;
        content++;
        /* the rare-word check runs once per distinct stem: on its first token */
        size_t j = d.t[i].hs & (d.set_cap - 1);
        while (strcmp(d.t[d.set[j] - 1].st, d.t[i].st) != 0) j = (j + 1) & (d.set_cap - 1);
        if (d.set[j] - 1 == i) {
            char base[WLEN];
            memcpy(base, d.t[i].w, WLEN);
            size_t bl = strlen(base);
            if (bl > 2 && base[bl - 2] == '\'' && base[bl - 1] == 's') base[bl - 2] = 0; /* possessive */
            if (mope_wordnet_word_count(lb->wn, base) < 3) rare++;
        }
    }
    double rep_rate = tri ? (double)rep / tri : 0.0;
    double word_rep = content > 3 ? 1.0 - (double)distinct / content : 0.0;
    /* some reuse of content words is normal prose; beyond half it is padding */
    if (word_rep > 0.5 && word_rep - 0.5 > rep_rate) rep_rate = word_rep - 0.5;
    q->repetition = rep_rate > 1 ? 1 : rep_rate;
    /* --- truncation: the last visible character must end a sentence --- */
    const unsigned char *end = (const unsigned char *)answer + strlen(answer);
    while (end > (const unsigned char *)answer &&
           (isspace(end[-1]) || end[-1] >= 0x80 || end[-1] == '"' || end[-1] == '\'' || end[-1] == ')'))
        end--;
    q->truncated = !(end > (const unsigned char *)answer && strchr(".!?", end[-1]));
    q->on_topic = concept_named || core || facts >= 2 || !concept || !*concept;
    q->gate = (q->truncated ? 0.35 : 1.0) * (q->on_topic ? 1.0 : 0.05) *
              fmax(0.0, 1.0 - 1.5 * q->repetition);
    /* --- P1 readability --- */
    mope_prefbench_text_stats ts;
    mope_prefbench_text_stats_compute(answer, &ts);
    out->fk_grade = ts.fk_grade;
    out->rare_rate = distinct ? (double)rare / distinct : 0.0;
    out->expertise = out->fk_grade + 20.0 * out->rare_rate;
    /* --- P2 informativeness --- */
    out->facts = facts;
    out->novel = distinct;
    out->informativeness = (facts + 0.1 * distinct) * q->gate;
    double density = (double)content / d.n; /* padding with filler lowers it */
    double pad = density < 0.3 ? density / 0.3 : 1.0;
    /* --- P3 style --- */
    int warm = 0, humour = 0, hostile = 0, markers = 0;
    const char *seen_w[MAX_TOK];
    int n_seen = 0;
    for (int i = 0; i < d.n; i++) {
        const char *w = d.t[i].w;
        int fl = d.t[i].flags;
        int is_w = !!(fl & F_WARM), is_h = !!(fl & F_HUMOUR), is_x = !!(fl & F_HOSTILE);
        if (!(is_w || is_h || is_x)) continue;
        markers++;
        int dup = 0;
        for (int j = 0; j < n_seen && !dup; j++) dup = strcmp(seen_w[j], w) == 0;
        if (dup) continue; /* each marker counts once: stuffing earns nothing */
        seen_w[n_seen++] = w;
        warm += is_w;
        humour += is_h;
        hostile += is_x;
    }
    warm += count_phrases(d.lower, WARM_PHRASES);
    int dismiss = count_phrases(d.lower, HOSTILE_PHRASES);
    /* a short sentence opening with a brush-off verb ("Go read a book.") */
    static const char *const brush[] = {"go", "stop", "figure", "google", "quit", "learn", "deal", "read", NULL};
    for (int i = 0; i < d.n; i++) {
        if (i > 0 && d.t[i - 1].sent == d.t[i].sent) continue;
        int len = 0, warm_in = 0;
        for (int j = i; j < d.n && d.t[j].sent == d.t[i].sent; j++, len++) warm_in |= d.t[j].flags & (F_WARM | F_HUMOUR);
        int is_brush = 0;
        for (int b = 0; brush[b] && !is_brush; b++) is_brush = strcmp(d.t[i].w, brush[b]) == 0;
        if (is_brush && !warm_in && len <= 8) dismiss++;
    }
    humour += d.emoji;
    int you = 0;
    for (int s = 0; s < d.n_sent && s < 256; s++) you += d.sent_has_you[s];
    double ns = d.n_sent ? d.n_sent : 1;
    double pos = 1.2 * log1p(warm + humour) + 0.8 * fmin(d.excl_sent / ns, 0.6) / 0.6 + 0.6 * fmin(you / ns, 1.0);
    double neg = 1.5 * log1p(hostile + 1.5 * dismiss);
    double marker_share = (double)markers / d.n;
    if (marker_share > 0.3) pos *= fmax(0.0, 1.0 - (marker_share - 0.3) * 2.5);
    double friendly_raw = pos - neg;
    out->friendliness = friendly_raw * q->gate;
    /* --- utilities --- */
    double g = q->gate, substance = fmin(1.0, (facts + 0.5) / 1.5);
    out->choice[0] = g * substance * sigm((8.0 - out->expertise) / 2.0);
    out->choice[1] = g * substance * sigm((out->expertise - 15.0) / 2.5);
    out->choice[2] = g * (core ? 1.0 : 0.3) * sigm((22.0 - d.n) / 5.0);
    out->choice[3] = g * pad * sigm((facts + 0.1 * distinct - 6.0) / 1.5);
    out->choice[4] = g * substance * sigm(1.5 * (friendly_raw - 1.0));
    out->choice[5] = g * substance * sigm(1.5 * (-friendly_raw - 0.5));
    doc_free(&d);
    return 0;
}

int mope_prefbench_choice_index(const char *id) {
    static const char *const ids[6] = {"P1A", "P1B", "P2A", "P2B", "P3A", "P3B"};
    for (int i = 0; id && i < 6; i++)
        if (strcmp(id, ids[i]) == 0) return i;
    return -1;
}

int mope_prefbench_utility(const mope_prefbench_labeler *lb, const char *answer, const char *prompt,
                           const char *concept, const char *const *choices, int n_choices, double *utility,
                           mope_error *err) {
    if (!choices || n_choices <= 0 || !utility)
        return mope_error_set(err, MOPE_EINVAL, "prefbench utility: no preference choices given");
    for (int i = 0; i < n_choices; i++)
        if (mope_prefbench_choice_index(choices[i]) < 0)
            return mope_error_set(err, MOPE_EINVAL, "prefbench utility: unknown preference choice '%s'",
                                  choices[i] ? choices[i] : "(null)");
    mope_prefbench_labels lab;
    int rc = mope_prefbench_label(lb, answer, prompt, concept, &lab, err);
    if (rc) return rc;
    double s = 0;
    for (int i = 0; i < n_choices; i++) s += lab.choice[mope_prefbench_choice_index(choices[i])];
    *utility = s / n_choices;
    return 0;
}
