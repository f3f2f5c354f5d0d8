/* PrefBench corpus: concept selection, the fixed split, question phrasings
 * and the JSONL writer.  Answers come from compose.c. */
#include "mope/prefbench.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CONCEPTS 24000
#define TINY_CONCEPTS 300
#define DEFAULT_VARIANTS 2

static uint64_t hash_str(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 4% test, 3% dev: with the default 24000 concepts that is ~960 held-out
 * concepts.  Only the lemma enters the hash, so the split never depends on
 * the seed, the concept count or the WordNet build. */
int mope_prefbench_split_of(const char *concept) {
    uint64_t h = mix64(hash_str(1469598103934665603ull, "prefbench-split:") ^ 0);
    h = mix64(hash_str(h, concept));
    unsigned b = (unsigned)(h % 100);
    return b < 4 ? MOPE_PREFBENCH_TEST : (b < 7 ? MOPE_PREFBENCH_DEV : MOPE_PREFBENCH_TRAIN);
}

const char *mope_prefbench_split_name(int split) {
    switch (split) {
    case MOPE_PREFBENCH_TRAIN: return "train";
    case MOPE_PREFBENCH_DEV: return "dev";
    case MOPE_PREFBENCH_TEST: return "test";
    default: return "";
    }
}

/* ---- phrasings ---- */
int mope_prefbench_phrase(const mope_wordnet *wn, const char *concept, int mass, int i, char *out, size_t cap) {
    if (!concept || !*concept || i < 0 || i >= MOPE_PREFBENCH_N_PHRASINGS) return MOPE_EINVAL;
    char pl[192], a[224];
    if (mope_prefbench_plural(wn, concept, pl, sizeof pl) < 0) return MOPE_ERANGE;
    if (mass) snprintf(a, sizeof a, "%s", concept);
    else snprintf(a, sizeof a, "%s %s", mope_prefbench_article(concept), concept);
    /* mass nouns: "water" / "it is"; count nouns: "glaciers" / "they are" */
    const char *many = mass ? concept : pl, *are = mass ? "is" : "are", *they = mass ? "it" : "they";
    int n;
    switch (i) {
    case 0: n = snprintf(out, cap, "What is %s?", a); break;
    case 1: n = snprintf(out, cap, "Explain %s to me.", many); break;
    case 2: n = snprintf(out, cap, "Can you tell me what %s is?", a); break;
    case 3: n = snprintf(out, cap, "I keep hearing about %s. What %s %s?", many, are, they); break;
    case 4: n = snprintf(out, cap, "What does the word \"%s\" mean?", concept); break;
    case 5: n = snprintf(out, cap, "Define %s.", a); break;
    case 6: n = snprintf(out, cap, "Tell me about %s.", many); break;
    case 7: n = snprintf(out, cap, "What exactly is %s?", a); break;
    case 8: n = snprintf(out, cap, "Could you explain what %s is?", a); break;
    case 9: n = snprintf(out, cap, "I'm curious: what is %s?", a); break;
    case 10: n = snprintf(out, cap, "Describe %s for me.", a); break;
    case 11: n = snprintf(out, cap, "What's %s?", a); break;
    case 12: n = snprintf(out, cap, "Help me understand what %s %s.", many, are); break;
    case 13: n = snprintf(out, cap, "What do people mean when they talk about %s?", many); break;
    case 14: n = snprintf(out, cap, "What is meant by \"%s\"?", concept); break;
    default: n = snprintf(out, cap, "Quick question: what %s %s?", are, many); break;
    }
    if (n < 0 || (size_t)n >= cap) return MOPE_ERANGE;
    out[0] = (char)toupper((unsigned char)out[0]);
    return n;
}

/* ---- concept selection ---- */
typedef struct cand {
    int synset;
    const char *lemma;
    int count, single, rich;
} cand;

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->count != b->count) return b->count - a->count;
    if (a->single != b->single) return b->single - a->single;
    if (a->rich != b->rich) return b->rich - a->rich;
    return strcmp(a->lemma, b->lemma);
}

static int usable_lemma(const char *l) {
    size_t n = strlen(l);
    int spaces = 0;
    if (n < 3 || n > 32) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = l[i];
        if (c == ' ') spaces++;
        else if (!(c >= 'a' && c <= 'z') && c != '-') return 0;
    }
    /* "profit and loss" has no natural plural or article */
    return spaces <= 2 && !strstr(l, " and ") && !strstr(l, " or ");
}

/* Glosses marked like this describe slurs, vulgarities or sexual terms,
 * which a preference benchmark has no use for. */
static int objectionable(const mope_wn_synset *s, const char *lemma) {
    static const char *const marks[] = {"offensive", "vulgar", "obscene", "derogatory", "disparaging",
                                        "slang", "slur", "sexual", "genital", "penis", "vagina", "copulat",
                                        "prostitut", "contemptuous", "abusive", "racist", "insult", NULL};
    static const char *const lemmas[] = {"nigger", "fuck", "shit", "cunt", "whore", "bitch", "bastard", "dick",
                                         "cock", "ass", "arse", "slut", "fag", "faggot", "piss", "twat", NULL};
    for (const char *const *m = marks; *m; m++)
        if (strstr(s->definition, *m)) return 1;
    for (const char *const *m = lemmas; *m; m++)
        if (strcmp(lemma, *m) == 0) return 1;
    return 0;
}

static int words_in(const char *s) {
    int n = 0, in = 0;
    for (; *s; s++) {
        int w = *s != ' ';
        if (w && !in) n++;
        in = w;
    }
    return n;
}

static int select_concepts(const mope_wordnet *wn, int max, cand **out, mope_error *err) {
    int ns = mope_wordnet_n_synsets(wn), nl = mope_wordnet_n_lemmas(wn);
    int *best = malloc((size_t)ns * sizeof *best);
    cand *c = malloc((size_t)nl * sizeof *c);
    if (!best || !c) {
        free(best);
        free(c);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory selecting concepts");
    }
    for (int i = 0; i < ns; i++) best[i] = -1;
    int n = 0;
    for (int i = 0; i < nl; i++) {
        const char *lemma = mope_wordnet_lemma(wn, i);
        const int32_t *syn, *cnt;
        int nsense = mope_wordnet_senses(wn, lemma, &syn, &cnt);
        if (nsense <= 0 || !usable_lemma(lemma)) continue;
        const mope_wn_synset *s = mope_wordnet_synset(wn, syn[0]);
        int spelled = 0, instance = 0, hyper = 0;
        for (int j = 0; j < s->n_lemmas; j++)
            if (strcmp(s->lemmas[j], lemma) == 0) spelled = 1; /* lowercase in the synset: not a name */
        for (int j = 0; j < s->n_ptrs; j++) {
            if (s->ptrs[j].kind == MOPE_WN_INSTANCE_HYPERNYM) instance = 1;
            if (s->ptrs[j].kind == MOPE_WN_HYPERNYM) hyper = 1;
        }
        int dw = words_in(s->definition);
        if (!spelled || instance || !hyper || dw < 3 || dw > 45 || objectionable(s, lemma)) continue;
        /* a concept is named by one lemma only, the best-scoring one */
        cand cc = {syn[0], lemma, cnt[0], nsense == 1, s->n_ptrs + 3 * s->n_examples};
        if (best[syn[0]] >= 0) {
            if (cand_cmp(&cc, &c[best[syn[0]]]) < 0) c[best[syn[0]]] = cc;
            continue;
        }
        best[syn[0]] = n;
        c[n++] = cc;
    }
    free(best);
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    if (n > max) n = max;
    *out = c;
    return n;
}

/* ---- writing ---- */
typedef struct outfile {
    FILE *f;
    char tmp[4096], final[4096];
} outfile;

static int mkdir_p(const char *dir, mope_error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return mope_error_set(err, MOPE_EINVAL, "output directory name too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return mope_error_set(err, MOPE_EIO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return mope_error_set(err, MOPE_EIO, "cannot create directory %s: %s", buf, strerror(errno));
    return 0;
}

static int out_open(outfile *o, const char *dir, const char *name, mope_error *err) {
    snprintf(o->final, sizeof o->final, "%s/%s", dir, name);
    snprintf(o->tmp, sizeof o->tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) return mope_error_set(err, MOPE_EIO, "cannot create %s: %s", o->tmp, strerror(errno));
    setvbuf(o->f, NULL, _IOFBF, 1 << 20);
    return 0;
}

static int out_close(outfile *o, int ok, mope_error *err) {
    if (!o->f) return 0;
    int bad = ferror(o->f);
    bad |= fclose(o->f) != 0;
    o->f = NULL;
    if (!ok || bad || rename(o->tmp, o->final) != 0) {
        int e = errno;
        remove(o->tmp);
        if (ok) return mope_error_set(err, MOPE_EIO, "writing %s failed: %s", o->final, strerror(e));
    }
    return 0;
}

/* Appends ,"key":<escaped value> to line. */
static int put_field(char *line, size_t cap, size_t *k, const char *key, const char *val) {
    int n = snprintf(line + *k, cap - *k, "%s\"%s\":", *k > 1 ? "," : "", key);
    if (n < 0 || (size_t)n >= cap - *k) return -1;
    *k += (size_t)n;
    n = mope_prefbench_json_escape(val, line + *k, cap - *k);
    if (n < 0) return -1;
    *k += (size_t)n;
    return 0;
}

int mope_prefbench_corpus_build_wn(const mope_wordnet *wn, const mope_prefbench_corpus_opts *opts,
                                   mope_prefbench_corpus_stats *stats, mope_error *err) {
    if (!wn || !opts || !opts->out_dir || !*opts->out_dir)
        return mope_error_set(err, MOPE_EINVAL, "prefbench corpus: wordnet and out_dir are required");
    if (opts->max_concepts < 0 || opts->variants < 0 || opts->variants > 16)
        return mope_error_set(err, MOPE_EINVAL, "prefbench corpus: max_concepts must be >= 0 and variants 0..16");
    double t0 = mope_time_s();
    int max = opts->tiny ? TINY_CONCEPTS : (opts->max_concepts ? opts->max_concepts : DEFAULT_CONCEPTS);
    int variants = opts->variants ? opts->variants : DEFAULT_VARIANTS;
    int rc = mkdir_p(opts->out_dir, err);
    if (rc) return rc;
    cand *c = NULL;
    int n = select_concepts(wn, max, &c, err);
    if (n < 0) return n;
    if (n == 0) {
        free(c);
        return mope_error_set(err, MOPE_EFORMAT, "prefbench corpus: WordNet yielded no usable concepts");
    }
    mope_prefbench_corpus_stats st;
    memset(&st, 0, sizeof st);
    /* Names of held-out concepts are kept out of train and dev answers. */
    unsigned char *exclude = calloc((size_t)mope_wordnet_n_synsets(wn), 1);
    size_t line_cap = 16384;
    char *line = malloc(line_cap), *resp = malloc(8192);
    outfile files[3][2];
    memset(files, 0, sizeof files);
    if (!exclude || !line || !resp) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    int *split = malloc((size_t)n * sizeof *split);
    if (!split) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        split[i] = mope_prefbench_split_of(c[i].lemma);
        if (split[i] == MOPE_PREFBENCH_TEST) exclude[c[i].synset] = 1;
    }
    for (int s = 0; s < 3 && !rc; s++) {
        char name[64];
        snprintf(name, sizeof name, "%s_prompts.jsonl", mope_prefbench_split_name(s));
        rc = out_open(&files[s][0], opts->out_dir, name, err);
        snprintf(name, sizeof name, "%s_responses.jsonl", mope_prefbench_split_name(s));
        if (!rc) rc = out_open(&files[s][1], opts->out_dir, name, err);
    }
    for (int i = 0; i < n && !rc; i++) {
        const mope_wn_synset *sy = mope_wordnet_synset(wn, c[i].synset);
        int mass = mope_prefbench_is_mass(wn, c[i].synset, c[i].lemma);
        int sp = split[i];
        const char *spn = mope_prefbench_split_name(sp);
        char id[64], prompts[MOPE_PREFBENCH_N_PHRASINGS][512];
        st.concepts[sp]++;
        for (int p = 0; p < MOPE_PREFBENCH_N_PHRASINGS && !rc; p++) {
            if (mope_prefbench_phrase(wn, c[i].lemma, mass, p, prompts[p], sizeof prompts[p]) < 0) {
                rc = mope_error_set(err, MOPE_ERANGE, "prefbench corpus: cannot phrase concept '%s'", c[i].lemma);
                break;
            }
            snprintf(id, sizeof id, "n%08u-q%02d", sy->offset, p);
            size_t k = 1;
            line[0] = '{';
            if (put_field(line, line_cap, &k, "id", id) || put_field(line, line_cap, &k, "prompt", prompts[p]) ||
                put_field(line, line_cap, &k, "concept", c[i].lemma) || put_field(line, line_cap, &k, "split", spn) ||
                k + 3 > line_cap) {
                rc = mope_error_set(err, MOPE_ERANGE, "prefbench corpus: record too long for '%s'", c[i].lemma);
                break;
            }
            memcpy(line + k, "}\n", 3);
            fputs(line, files[sp][0].f);
            st.prompts[sp]++;
        }
        for (int v = 0; v < variants && !rc; v++) {
            /* the same prompt for every style of one variant, so styles pair up */
            mope_rng pr;
            mope_rng_seed(&pr, mix64(opts->seed ^ mix64(((uint64_t)sy->offset << 8) | (uint64_t)v)));
            int p = (int)mope_rng_below(&pr, MOPE_PREFBENCH_N_PHRASINGS);
            for (int style = 0; style < MOPE_PREFBENCH_N_STYLES && !rc; style++) {
                mope_rng r;
                mope_rng_seed(&r, mix64(opts->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(1 + style)) ^
                                      mix64(((uint64_t)sy->offset << 12) | ((uint64_t)v << 4) | (uint64_t)style));
                int len = mope_prefbench_compose(wn, c[i].synset, c[i].lemma, style, &r,
                                                 sp == MOPE_PREFBENCH_TEST ? NULL : exclude, resp, 8192);
                if (len < 0) {
                    rc = mope_error_set(err, MOPE_ERANGE, "prefbench corpus: answer too long for '%s'", c[i].lemma);
                    break;
                }
                snprintf(id, sizeof id, "n%08u-v%d-%s", sy->offset, v, mope_prefbench_style_name(style));
                size_t k = 1;
                line[0] = '{';
                if (put_field(line, line_cap, &k, "id", id) || put_field(line, line_cap, &k, "prompt", prompts[p]) ||
                    put_field(line, line_cap, &k, "concept", c[i].lemma) ||
                    put_field(line, line_cap, &k, "split", spn) ||
                    put_field(line, line_cap, &k, "style", mope_prefbench_style_name(style)) ||
                    put_field(line, line_cap, &k, "response", resp) || k + 3 > line_cap) {
                    rc = mope_error_set(err, MOPE_ERANGE, "prefbench corpus: record too long for '%s'", c[i].lemma);
                    break;
                }
                memcpy(line + k, "}\n", 3);
                fputs(line, files[sp][1].f);
                st.responses[sp]++;
            }
        }
    }
    for (int s = 0; s < 3; s++)
        for (int j = 0; j < 2; j++) {
            int r2 = out_close(&files[s][j], rc == 0, err);
            if (!rc) rc = r2;
        }
    free(split);
done:
    for (int s = 0; s < 3; s++)
        for (int j = 0; j < 2; j++) out_close(&files[s][j], 0, NULL);
    free(exclude);
    free(line);
    free(resp);
    free(c);
    st.seconds = mope_time_s() - t0;
    if (!rc && stats) *stats = st;
    if (rc) mope_error_prefix(err, "prefbench corpus in %s", opts->out_dir);
    return rc;
}

int mope_prefbench_corpus_build(const mope_prefbench_corpus_opts *opts, mope_prefbench_corpus_stats *stats,
                                mope_error *err) {
    if (!opts) return mope_error_set(err, MOPE_EINVAL, "prefbench corpus: no options");
    mope_wordnet *wn = mope_wordnet_load(opts->wordnet_dir, err);
    if (!wn) return err ? err->code : MOPE_EIO;
    int rc = mope_prefbench_corpus_build_wn(wn, opts, stats, err);
    mope_wordnet_free(wn);
    return rc;
}
