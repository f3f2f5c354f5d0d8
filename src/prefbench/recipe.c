/* `mope prefbench build`: the PrefBench model zoo, stage by stage
 * (docs/PREFBENCH.md, "Recipe").  This file holds the driver: sizes,
 * stamps, the corpus and data stages, the tokenizer and the training
 * stages.  Samples, references and the evaluation are in recipe_eval.c,
 * generation in recipe_gen.c, trainer calls in recipe_train.c, corpus
 * reading in recipe_records.c, bundle and card in recipe_out.c. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mope/io.h"
#include "prefbench/recipe_internal.h"

const char *const RECIPE_CHOICE[6] = {"P1A", "P1B", "P2A", "P2B", "P3A", "P3B"};
const char *const RECIPE_CHOICE_NAME[6] = {"elementary", "expert", "concise", "informative", "friendly",
                                           "unfriendly"};
/* Personalized Soups' preference sentences, verbatim (../shared/data/preferences.json;
 * tests/test_prefbench_recipe.c compares them with that file). */
const char *const RECIPE_CHOICE_TEXT[6] = {
    "Generate a response that can be easily understood by an elementary school student.",
    "Generate a response that only a PhD Student in that specific field could understand.",
    "Generate a response that is concise and to the point, without being verbose.",
    "Generate a response that is very informative, without missing any background information.",
    "Generate a response that is friendly, witty, funny, and humorous, like a close friend.",
    "Generate a response in an unfriendly manner.",
};
const char *const RECIPE_DIM_ID[3] = {"P1", "P2", "P3"};
const char *const RECIPE_DIM_NAME[3] = {"expertise", "informativeness", "style"};

static const char *const STAGES[] = {"corpus", "data",  "tokenizer", "base_lm", "base_sft", "experts",
                                     "rm_trunk", "samples", "rewards", "references", "eval", "bundle", NULL};

const char *mope_prefbench_recipe_stage(int i) {
    return i >= 0 && i < (int)(sizeof STAGES / sizeof STAGES[0]) - 1 ? STAGES[i] : NULL;
}

/* ---- sizes ----
 * Full: the 4M-parameter base trains at ~4,200 tok/s on the idle 2-core
 * machine (2 threads); the budget is 2 hours for everything. The first
 * build (800 LM steps) left a base too weak to copy an unseen concept name,
 * which sank every labeler score through the relevance gate, so most of
 * the budget goes to pretraining. */
static void sizes_init(recipe_sizes *s, int tiny) {
    memset(s, 0, sizeof *s);
    if (tiny) {
        *s = (recipe_sizes){.max_concepts = 300, .variants = 2, .vocab = 700,
                            .dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 172, .ctx = 160,
                            .lm_steps = 50, .lm_batch = 8, .lm_lr = 3e-3f,
                            .sft_steps = 50, .sft_batch = 8, .sft_lr = 2e-3f, .follow_frac = 0.3,
                            .lora_rank = 8, .lora_alpha = 16, .exp_steps = 30, .exp_batch = 8, .exp_lr = 3e-3f,
                            .rm_dim = 32, .rm_layers = 1, .rm_heads = 2, .rm_kv_heads = 1, .rm_ff = 86,
                            .rm_lm_steps = 20, .rm_steps = 30, .rm_batch = 8, .rm_lm_lr = 3e-3f, .rm_lr = 2e-3f,
                            .rm_margin = 0.2,
                            .n_sample_prompts = 24, .n_eval_prompts = 12, .n_ref_train = 16,
                            .gen_max_tokens = 48, .gen_slots = 32};
    } else {
        *s = (recipe_sizes){.max_concepts = 24000, .variants = 2, .vocab = 4096,
                            .dim = 256, .layers = 4, .heads = 8, .kv_heads = 4, .ff = 688, .ctx = 256,
                            .lm_steps = 4000, .lm_batch = 8, .lm_lr = 2e-3f,
                            .sft_steps = 3000, .sft_batch = 16, .sft_lr = 8e-4f, .follow_frac = 0.3,
                            .lora_rank = 16, .lora_alpha = 32, .exp_steps = 600, .exp_batch = 16, .exp_lr = 2e-3f,
                            .rm_dim = 128, .rm_layers = 3, .rm_heads = 4, .rm_kv_heads = 2, .rm_ff = 344,
                            .rm_lm_steps = 1500, .rm_steps = 1000, .rm_batch = 16, .rm_lm_lr = 2e-3f, .rm_lr = 1e-3f,
                            .rm_margin = 0.2,
                            .n_sample_prompts = 2400, .n_eval_prompts = 300, .n_ref_train = 2000,
                            .gen_max_tokens = 160, .gen_slots = 64};
    }
}

/* ---- logging and paths ---- */

void recipe_log(recipe_ctx *c, const char *fmt, ...) {
    if (!c->o->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->o->log(c->o->log_user, line);
}

void recipe_path(char *dst, size_t cap, const char *dir, const char *name) {
    snprintf(dst, cap, "%s/%s", dir, name);
}

void recipe_card(recipe_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    char *g = realloc(c->card, c->card_len + (size_t)n + 1);
    if (g) {
        memcpy(g + c->card_len, s, (size_t)n + 1);
        c->card = g;
        c->card_len += (size_t)n;
    }
    free(s);
}

static int mkdirs(const char *path, mope_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char save = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return mope_error_set(err, MOPE_EIO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = save;
            if (!save) break;
        }
    }
    return 0;
}

/* ---- stamps ---- */

static uint64_t fnv(uint64_t h, const char *s) { return mope_hash64(h, s, strlen(s)); }

static uint64_t g_stage_hash; /* set by stage_begin, read by stage_end (single-threaded driver) */

int recipe_stage_begin(recipe_ctx *c, const char *stage, const char *key, const char *const *outputs, int n_out,
                       int *skip) {
    c->chain = fnv(fnv(c->chain, stage), key);
    g_stage_hash = c->chain;
    *skip = 0;
    if (c->o->force) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/stamps/%s.stamp", c->work, stage);
    void *data = NULL;
    size_t n = 0;
    if (mope_io_read_file(path, &data, &n, NULL) != 0) return 0;
    char want[32];
    snprintf(want, sizeof want, "%016llx\n", (unsigned long long)c->chain);
    int ok = n >= 17 && memcmp(data, want, 17) == 0;
    for (int i = 0; ok && i < n_out; i++) {
        struct stat st;
        if (stat(outputs[i], &st) != 0 || st.st_size == 0) ok = 0;
    }
    if (ok) {
        *skip = 1;
        recipe_card(c, "%s", (char *)data + 17);
        recipe_log(c, "skip %s: up to date", stage);
    }
    free(data);
    return 0;
}

int recipe_stage_end(recipe_ctx *c, const char *stage, double seconds, const char *card_md, mope_error *err) {
    char path[4200], hdr[32];
    snprintf(path, sizeof path, "%s/stamps", c->work);
    int rc = mkdirs(path, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/stamps/%s.stamp", c->work, stage);
    snprintf(hdr, sizeof hdr, "%016llx\n", (unsigned long long)g_stage_hash);
    size_t n = strlen(card_md);
    char *buf = malloc(17 + n);
    if (!buf) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    memcpy(buf, hdr, 17);
    memcpy(buf + 17, card_md, n);
    rc = mope_io_write_atomic(path, buf, 17 + n, err);
    free(buf);
    if (!rc) recipe_card(c, "%s", card_md);
    recipe_log(c, "stage %s: %.1f s", stage, seconds);
    return rc;
}

/* ---- JSONL writing ---- */

typedef struct jw {
    mope_io_atomic *f;
    char *buf;
    size_t cap;
    long n;
} jw;

static int jw_open(jw *w, const char *path, mope_error *err) {
    memset(w, 0, sizeof *w);
    if (!(w->f = mope_io_atomic_open(path, err))) return err ? err->code : MOPE_EIO;
    return 0;
}

/* Writes {"k1": v1, ...} for NULL-terminated key/value string pairs. */
static int jw_rec(jw *w, mope_error *err, ...) {
    va_list ap;
    va_start(ap, err);
    cJSON *o = cJSON_CreateObject();
    const char *k;
    while (o && (k = va_arg(ap, const char *))) {
        const char *v = va_arg(ap, const char *);
        if (!cJSON_AddStringToObject(o, k, v)) {
            cJSON_Delete(o);
            o = NULL;
        }
    }
    va_end(ap);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    int rc = mope_io_atomic_write(w->f, s, strlen(s), err);
    if (!rc) rc = mope_io_atomic_write(w->f, "\n", 1, err);
    free(s);
    w->n++;
    return rc;
}

static int jw_close(jw *w, int rc, mope_error *err) {
    if (!w->f) return rc;
    if (rc) mope_io_atomic_abort(w->f);
    else rc = mope_io_atomic_commit(w->f, err);
    w->f = NULL;
    return rc;
}

/* The user turn: the instruction and the preference sentence after one space. */
static char *with_pref(const char *prompt, int choice) {
    char *s = NULL;
    if (asprintf(&s, "%s %s", prompt, RECIPE_CHOICE_TEXT[choice]) < 0) return NULL;
    return s;
}

/* ---- stages: corpus, data, tokenizer ---- */

static int stage_corpus(recipe_ctx *c, mope_error *err) {
    char dir[4200], key[256], f1[4300], f2[4300];
    snprintf(dir, sizeof dir, "%s/corpus", c->work);
    snprintf(f1, sizeof f1, "%s/train_responses.jsonl", dir);
    snprintf(f2, sizeof f2, "%s/test_prompts.jsonl", dir);
    /* the composer's version: a change of wording must rebuild everything after it */
    snprintf(key, sizeof key, "concepts=%d variants=%d seed=%llu compose=%d", c->sz.max_concepts, c->sz.variants,
             (unsigned long long)c->seed, MOPE_PREFBENCH_COMPOSE_VERSION);
    const char *outs[] = {f1, f2};
    int skip;
    recipe_stage_begin(c, "corpus", key, outs, 2, &skip);
    if (skip) return 0;
    mope_prefbench_corpus_opts co = {0};
    co.out_dir = dir;
    co.seed = c->seed;
    co.max_concepts = c->sz.max_concepts;
    co.variants = c->sz.variants;
    mope_prefbench_corpus_stats st;
    double t0 = mope_time_s();
    int rc = mope_prefbench_corpus_build_wn(c->wn, &co, &st, err);
    if (rc) return rc;
    double dt = mope_time_s() - t0;
    char md[1024];
    snprintf(md, sizeof md,
             "### Corpus\n\n`mope prefbench corpus --max-concepts %d --variants %d --seed %llu`: "
             "%d / %d / %d concepts (train / dev / test), %ld / %ld / %ld prompts, %ld / %ld / %ld responses; "
             "%.1f s.\n\n",
             c->sz.max_concepts, c->sz.variants, (unsigned long long)c->seed, st.concepts[0], st.concepts[1],
             st.concepts[2], st.prompts[0], st.prompts[1], st.prompts[2], st.responses[0], st.responses[1],
             st.responses[2], dt);
    return recipe_stage_end(c, "corpus", dt, md, err);
}

/* The corpus' train-split answers for a data stage, and the stage's rng
 * (salt: one stream per stage). */
static int read_train_records(recipe_ctx *c, uint64_t salt, recipe_rec **r, int *n, mope_rng *rng,
                              mope_error *err) {
    char src[4200];
    snprintf(src, sizeof src, "%s/corpus/train_responses.jsonl", c->work);
    mope_rng_seed(rng, c->seed * 7919 + salt);
    return recipe_read_records(src, r, n, err);
}

/* Training files of the base model from the corpus: LM text and base SFT
 * (the experts' files are made by stage_expert_data, after the base). */
static int stage_data(recipe_ctx *c, mope_error *err) {
    char key[256], lm[4200], sft[4200];
    recipe_path(lm, sizeof lm, c->work, "lm.txt");
    recipe_path(sft, sizeof sft, c->work, "base_sft.jsonl");
    const char *outs[2] = {lm, sft};
    snprintf(key, sizeof key, "follow=%.3f v2", c->sz.follow_frac);
    int skip;
    recipe_stage_begin(c, "data", key, outs, 2, &skip);
    if (skip) return 0;
    double t0 = mope_time_s();
    recipe_rec *r;
    int n;
    mope_rng rng;
    int rc = read_train_records(c, 11, &r, &n, &rng, err);
    if (rc) return rc;
    /* LM text: every answer after its question; the preference sentences
     * appear too so the tokenizer and the base know their words */
    mope_io_atomic *f = mope_io_atomic_open(lm, err);
    if (!f) rc = err ? err->code : MOPE_EIO;
    long lm_bytes = 0;
    for (int i = 0; !rc && i < n; i++) {
        char *s = NULL;
        int len = r[i].style > 0 && mope_rng_uniform(&rng) < 0.5f
                      ? asprintf(&s, "%s %s\n%s\n\n", r[i].prompt, RECIPE_CHOICE_TEXT[r[i].style - 1], r[i].response)
                      : asprintf(&s, "%s\n%s\n\n", r[i].prompt, r[i].response);
        if (len < 0) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        else rc = mope_io_atomic_write(f, s, (size_t)len, err), lm_bytes += len;
        free(s);
    }
    if (f) {
        if (rc) mope_io_atomic_abort(f);
        else rc = mope_io_atomic_commit(f, err);
    }
    /* base SFT: per (concept, variant) group the neutral answer, and the
     * prompt with a random preference appended whose answer follows it
     * only follow_frac of the time (a weak style follower, like Tulu) */
    jw w;
    long n_follow = 0, n_pref = 0;
    if (!rc) rc = jw_open(&w, sft, err);
    for (int i = 0; !rc && i < n; i++) {
        if (r[i].style != 0) continue;
        rc = jw_rec(&w, err, "prompt", r[i].prompt, "response", r[i].response, (const char *)NULL);
        int ch = (int)mope_rng_below(&rng, 6);
        const char *resp = r[i].response;
        if (mope_rng_uniform(&rng) < c->sz.follow_frac) {
            for (int j = i; j < n && r[j].group == r[i].group; j++)
                if (r[j].style == ch + 1) resp = r[j].response;
            n_follow++;
        }
        char *p = with_pref(r[i].prompt, ch);
        if (!p) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (!rc) rc = jw_rec(&w, err, "prompt", p, "response", resp, (const char *)NULL);
        n_pref++;
        free(p);
    }
    long n_sft = w.n;
    rc = jw_close(&w, rc, err);
    recipe_free_records(r, n);
    if (rc) return rc;
    double dt = mope_time_s() - t0;
    char md[1024];
    snprintf(md, sizeof md,
             "### Training data\n\nFrom the train split only: LM text of %ld bytes (every answer after its "
             "question; half of the styled ones with their preference sentence); base SFT %ld examples "
             "(neutral answers, plus %ld prompts with a random preference sentence appended, of which %ld "
             "(%.0f%%) are answered in that style, the rest neutrally).\n\n",
             lm_bytes, n_sft, n_pref, n_follow, n_pref ? 100.0 * n_follow / n_pref : 0.0);
    return recipe_stage_end(c, "data", dt, md, err);
}

static int stage_tokenizer(recipe_ctx *c, mope_error *err) {
    char key[128], tok[4200], lm[4200];
    recipe_path(tok, sizeof tok, c->out, "tokenizer.gguf");
    recipe_path(lm, sizeof lm, c->work, "lm.txt");
    snprintf(key, sizeof key, "vocab=%d", c->sz.vocab);
    const char *outs[] = {tok};
    int skip;
    recipe_stage_begin(c, "tokenizer", key, outs, 1, &skip);
    if (skip) return 0;
    static const char *const specials[] = {"<|system|>", "<|user|>", "<|assistant|>"};
    static const bool control[] = {true, true, true};
    mope_tokenizer_train_opts to;
    mope_tokenizer_train_opts_init(&to);
    const char *files[] = {lm};
    to.files = files;
    to.n_files = 1;
    to.vocab_size = c->sz.vocab;
    to.specials = specials;
    to.n_specials = 3;
    to.special_control = control;
    mope_tokenizer_train_result res;
    double t0 = mope_time_s();
    int rc = mope_tokenizer_train_bpe(&to, &res, err);
    if (rc) return rc;
    rc = mope_tokenizer_train_save(&res, &to, tok, err);
    double dt = mope_time_s() - t0;
    char md[1024];
    snprintf(md, sizeof md,
             "### Tokenizer\n\n`mope train tokenizer --data lm.txt --vocab-size %d --special '<|system|>' "
             "--special '<|user|>' --special '<|assistant|>'` (control tokens): SentencePiece-style BPE, "
             "%d merges over %lld bytes; %.1f s.\n\n",
             c->sz.vocab, (int)res.n_merges, (long long)res.n_bytes, dt);
    mope_tokenizer_train_result_free(&res);
    if (rc) return rc;
    return recipe_stage_end(c, "tokenizer", dt, md, err);
}

static void report_md(char *md, size_t cap, const char *title, const char *cmd, const recipe_train_report *r,
                      uint64_t seed) {
    snprintf(md, cap,
             "### %s\n\n`%s --seed %llu`: %lld steps over %lld training examples (%lld tokens processed), %zu "
             "trained parameters, final loss %.4f%s; %.0f s.\n\n",
             title, cmd, (unsigned long long)seed, (long long)r->steps, (long long)r->examples,
             (long long)r->tokens, r->params, r->final_loss, "", r->seconds);
}

static int stage_base(recipe_ctx *c, mope_error *err) {
    char key[256], tok[4200], lm[4200], base_lm[4200], base[4200], sft[4200], md[2048], cmd[512];
    recipe_path(tok, sizeof tok, c->out, "tokenizer.gguf");
    recipe_path(lm, sizeof lm, c->work, "lm.txt");
    recipe_path(base_lm, sizeof base_lm, c->work, "base_lm.gguf");
    recipe_path(base, sizeof base, c->out, "base.gguf");
    recipe_path(sft, sizeof sft, c->work, "base_sft.jsonl");
    const recipe_sizes *s = &c->sz;
    snprintf(key, sizeof key, "%d %d %d %d %d %d %lld %d %g", s->dim, s->layers, s->heads, s->kv_heads, s->ff, s->ctx,
             (long long)s->lm_steps, s->lm_batch, s->lm_lr);
    const char *o1[] = {base_lm};
    int skip, rc;
    recipe_train_report rep = {0};
    uint64_t seed = c->seed * 1000 + 1;
    recipe_stage_begin(c, "base_lm", key, o1, 1, &skip);
    if (!skip) {
        recipe_log(c, "base_lm: pretraining a %d-wide %d-layer model on lm.txt", s->dim, s->layers);
        rc = recipe_train_lm(c, lm, tok, s->dim, s->layers, s->heads, s->kv_heads, s->ff, s->lm_steps, s->lm_batch,
                             s->lm_lr, seed, base_lm, &rep, err);
        if (rc) return mope_error_prefix(err, "base_lm");
        snprintf(cmd, sizeof cmd,
                 "mope train lm --data lm.txt --tokenizer tokenizer.gguf --dim %d --layers %d --heads %d "
                 "--kv-heads %d --ff %d --ctx %d --steps %lld --batch %d --lr %g --warmup %lld",
                 s->dim, s->layers, s->heads, s->kv_heads, s->ff, s->ctx, (long long)s->lm_steps, s->lm_batch,
                 s->lm_lr, (long long)s->lm_steps / 20);
        report_md(md, sizeof md, "Base model: pretraining", cmd, &rep, seed);
        if ((rc = recipe_stage_end(c, "base_lm", rep.seconds, md, err))) return rc;
    }
    if (c->o->until && strcmp(c->o->until, "base_lm") == 0) return 0;
    snprintf(key, sizeof key, "%lld %d %g", (long long)s->sft_steps, s->sft_batch, s->sft_lr);
    const char *o2[] = {base};
    seed = c->seed * 1000 + 2;
    recipe_stage_begin(c, "base_sft", key, o2, 1, &skip);
    if (skip) return 0;
    recipe_log(c, "base_sft: instruction tuning in the Tulu format");
    memset(&rep, 0, sizeof rep);
    rc = recipe_train_sft(c, base_lm, sft, s->sft_steps, s->sft_batch, s->sft_lr, seed, base, &rep, err);
    if (!rc) rc = recipe_to_f16(base, err);
    if (rc) return mope_error_prefix(err, "base_sft");
    snprintf(cmd, sizeof cmd, "mope train sft -m base_lm.gguf --data base_sft.jsonl --template tulu --steps %lld "
                              "--batch %d --lr %g --warmup %lld",
             (long long)s->sft_steps, s->sft_batch, s->sft_lr, (long long)s->sft_steps / 20);
    report_md(md, sizeof md, "Base model: instruction tuning (Tulu format)", cmd, &rep, seed);
    return recipe_stage_end(c, "base_sft", rep.seconds, md, err);
}

/* Record of style `style` in the (concept, variant) group of record i, or -1
 * (a group's records are adjacent in the corpus file). */
static int group_find(const recipe_rec *r, int n, int i, int style) {
    int lo = i;
    while (lo > 0 && r[lo - 1].group == r[i].group) lo--;
    for (int j = lo; j < n && r[j].group == r[i].group; j++)
        if (r[j].style == style) return j;
    return -1;
}

/* One SFT file per expert choice: the choice's answers after the prompt with
 * its sentence.  With tones (the default), every expert also sees its own
 * dimension under every tone: a P1 or P2 expert's answer is put in a
 * friendly, an unfriendly or no tone (a third each), and a P3 expert's tone
 * goes around the same concept's answer in another style (neutral, P1A, P1B,
 * P2A or P2B) five times in six, its own answer otherwise.  Why: MoPE merges
 * the experts token by token over one shared response, and an expert that
 * only ever saw its own style continues in whatever style the response so far
 * has (measured: docs/RESULTS.md), so such experts cannot compose. */
static int stage_expert_data(recipe_ctx *c, mope_error *err) {
    char key[64], ex[6][4200];
    const char *outs[6];
    for (int k = 0; k < 6; k++) {
        snprintf(ex[k], sizeof ex[k], "%s/expert_%s.jsonl", c->work, RECIPE_CHOICE[k]);
        outs[k] = ex[k];
    }
    snprintf(key, sizeof key, "tones=%d v1", c->expert_tones);
    int skip;
    recipe_stage_begin(c, "expert_data", key, outs, 6, &skip);
    if (skip) return 0;
    double t0 = mope_time_s();
    recipe_rec *r;
    int n;
    mope_rng rng;
    int rc = read_train_records(c, 29, &r, &n, &rng, err);
    if (rc) return rc;
    enum { CAP = 16384 };
    char *buf = malloc(CAP);
    if (!buf) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    long n_ex = 0, n_toned[6] = {0};
    jw w;
    for (int k = 0; !rc && k < 6; k++) {
        rc = jw_open(&w, ex[k], err);
        for (int i = 0; !rc && i < n; i++) {
            if (r[i].style != k + 1) continue;
            const char *resp = r[i].response;
            if (c->expert_tones) {
                int tone = 0;
                const char *body = resp;
                if (k < 4) {
                    tone = (int)mope_rng_below(&rng, 3) - 1;
                } else {
                    int st = (int)mope_rng_below(&rng, 6), j = st < 5 ? group_find(r, n, i, st) : -1;
                    if (j >= 0) body = r[j].response, tone = k == 4 ? 1 : -1;
                }
                int len = mope_prefbench_tone_wrap(tone, body, &rng, buf, CAP);
                if (len < 0) {
                    rc = mope_error_set(err, MOPE_ERANGE, "expert data: answer of %s too long (%zu bytes)",
                                        r[i].concept, strlen(body));
                    break;
                }
                resp = buf;
                n_toned[k] += tone != 0;
            }
            char *p = with_pref(r[i].prompt, k);
            if (!p) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            if (!rc) rc = jw_rec(&w, err, "prompt", p, "response", resp, (const char *)NULL);
            free(p);
        }
        n_ex = w.n;
        rc = jw_close(&w, rc, err);
    }
    free(buf);
    recipe_free_records(r, n);
    if (rc) return rc;
    double dt = mope_time_s() - t0;
    char md[1024];
    if (c->expert_tones)
        snprintf(md, sizeof md,
                 "### Expert training data\n\n%ld SFT examples per expert (the choice's answers, prompt with its "
                 "sentence), with tones: a P1 or P2 expert's answer put in a friendly, an unfriendly or no tone, a "
                 "third each (P1A %ld, P1B %ld, P2A %ld, P2B %ld answers given a tone); a P3 expert's tone put "
                 "around the concept's answer in another style (neutral, P1A, P1B, P2A, P2B) five times in six "
                 "(P3A %ld, P3B %ld), its own answer otherwise. So each expert keeps its own dimension whatever "
                 "tone the response so far has taken.\n\n",
                 n_ex, n_toned[0], n_toned[1], n_toned[2], n_toned[3], n_toned[4], n_toned[5]);
    else
        snprintf(md, sizeof md,
                 "### Expert training data\n\n%ld SFT examples per expert: the choice's answers, prompt with its "
                 "sentence (`--single-style-experts`: no tones).\n\n", n_ex);
    return recipe_stage_end(c, "expert_data", dt, md, err);
}

static int stage_experts(recipe_ctx *c, mope_error *err) {
    char key[256], base[4200], data[4200], out[4200], dir[4200], md[2048], cmd[600];
    recipe_path(base, sizeof base, c->out, "base.gguf");
    snprintf(dir, sizeof dir, "%s/experts", c->out);
    int rc = stage_expert_data(c, err);
    if (rc) return rc;
    if ((rc = mkdirs(dir, err))) return rc;
    const recipe_sizes *s = &c->sz;
    for (int k = 0; k < 6; k++) {
        char stage[32];
        snprintf(stage, sizeof stage, "expert_%s", RECIPE_CHOICE[k]);
        snprintf(data, sizeof data, "%s/expert_%s.jsonl", c->work, RECIPE_CHOICE[k]);
        snprintf(out, sizeof out, "%s/experts/%s.gguf", c->out, RECIPE_CHOICE[k]);
        snprintf(key, sizeof key, "%s %d %g %lld %d %g", c->experts_lora ? "lora" : "full", s->lora_rank,
                 s->lora_alpha, (long long)s->exp_steps, s->exp_batch, s->exp_lr);
        const char *outs[] = {out};
        int skip;
        uint64_t seed = c->seed * 1000 + 10 + (uint64_t)k;
        recipe_stage_begin(c, stage, key, outs, 1, &skip);
        if (skip) continue;
        recipe_log(c, "%s: %s SFT on %s answers", stage, c->experts_lora ? "LoRA" : "full", RECIPE_CHOICE_NAME[k]);
        recipe_train_report rep = {0};
        if (c->experts_lora) {
            rc = recipe_train_lora(c, base, data, s->lora_rank, s->lora_alpha, s->exp_steps, s->exp_batch, s->exp_lr,
                                   seed, out, &rep, err);
            snprintf(cmd, sizeof cmd,
                     "mope train sft -m base.gguf --lora-rank %d --lora-alpha %g --data expert_%s.jsonl "
                     "--template tulu --steps %lld --batch %d --lr %g --warmup %lld",
                     s->lora_rank, s->lora_alpha, RECIPE_CHOICE[k], (long long)s->exp_steps, s->exp_batch, s->exp_lr,
                     (long long)s->exp_steps / 20);
        } else {
            rc = recipe_train_sft(c, base, data, s->exp_steps, s->exp_batch, s->exp_lr, seed, out, &rep, err);
            snprintf(cmd, sizeof cmd,
                     "mope train sft -m base.gguf --data expert_%s.jsonl --template tulu --steps %lld --batch %d "
                     "--lr %g --warmup %lld",
                     RECIPE_CHOICE[k], (long long)s->exp_steps, s->exp_batch, s->exp_lr, (long long)s->exp_steps / 20);
        }
        if (!rc) rc = recipe_to_f16(out, err);
        if (rc) return mope_error_prefix(err, "%s", stage);
        char title[128];
        snprintf(title, sizeof title, "Expert %s (%s)", RECIPE_CHOICE[k], RECIPE_CHOICE_NAME[k]);
        report_md(md, sizeof md, title, cmd, &rep, seed);
        if ((rc = recipe_stage_end(c, stage, rep.seconds, md, err))) return rc;
    }
    return 0;
}

static int stage_rm_trunk(recipe_ctx *c, mope_error *err) {
    char key[256], tok[4200], lm[4200], out[4200], md[2048], cmd[512];
    recipe_path(tok, sizeof tok, c->out, "tokenizer.gguf");
    recipe_path(lm, sizeof lm, c->work, "lm.txt");
    recipe_path(out, sizeof out, c->work, "rm_trunk.gguf");
    const recipe_sizes *s = &c->sz;
    snprintf(key, sizeof key, "%d %d %d %d %d %lld %g", s->rm_dim, s->rm_layers, s->rm_heads, s->rm_kv_heads,
             s->rm_ff, (long long)s->rm_lm_steps, s->rm_lm_lr);
    const char *outs[] = {out};
    int skip;
    uint64_t seed = c->seed * 1000 + 20;
    recipe_stage_begin(c, "rm_trunk", key, outs, 1, &skip);
    if (skip) return 0;
    recipe_log(c, "rm_trunk: pretraining the reward models' %d-wide trunk", s->rm_dim);
    recipe_train_report rep = {0};
    int rc = recipe_train_lm(c, lm, tok, s->rm_dim, s->rm_layers, s->rm_heads, s->rm_kv_heads, s->rm_ff,
                             s->rm_lm_steps, s->lm_batch, s->rm_lm_lr, seed, out, &rep, err);
    if (rc) return mope_error_prefix(err, "rm_trunk");
    snprintf(cmd, sizeof cmd,
             "mope train lm --data lm.txt --tokenizer tokenizer.gguf --dim %d --layers %d --heads %d --kv-heads %d "
             "--ff %d --ctx %d --steps %lld --batch %d --lr %g --warmup %lld",
             s->rm_dim, s->rm_layers, s->rm_heads, s->rm_kv_heads, s->rm_ff, s->ctx, (long long)s->rm_lm_steps,
             s->lm_batch, s->rm_lm_lr, (long long)s->rm_lm_steps / 20);
    report_md(md, sizeof md, "Reward-model trunk: pretraining", cmd, &rep, seed);
    return recipe_stage_end(c, "rm_trunk", rep.seconds, md, err);
}

static int stage_rewards(recipe_ctx *c, mope_error *err) {
    char key[256], trunk[4200], data[4200], out[4200], dir[4200], md[2048], cmd[512];
    recipe_path(trunk, sizeof trunk, c->work, "rm_trunk.gguf");
    snprintf(dir, sizeof dir, "%s/rm", c->out);
    int rc = mkdirs(dir, err);
    if (rc) return rc;
    const recipe_sizes *s = &c->sz;
    for (int k = 0; k < 6; k++) {
        char stage[32];
        snprintf(stage, sizeof stage, "rm_%s", RECIPE_CHOICE[k]);
        snprintf(data, sizeof data, "%s/pairs_%s.jsonl", c->work, RECIPE_CHOICE[k]);
        snprintf(out, sizeof out, "%s/rm/%s.gguf", c->out, RECIPE_CHOICE[k]);
        snprintf(key, sizeof key, "%lld %d %g", (long long)s->rm_steps, s->rm_batch, s->rm_lr);
        const char *outs[] = {out};
        int skip;
        uint64_t seed = c->seed * 1000 + 30 + (uint64_t)k;
        recipe_stage_begin(c, stage, key, outs, 1, &skip);
        if (skip) continue;
        recipe_log(c, "%s: Bradley-Terry reward model for %s", stage, RECIPE_CHOICE_NAME[k]);
        recipe_train_report rep = {0};
        rc = recipe_train_rm(c, trunk, data, s->rm_steps, s->rm_batch, s->rm_lr, seed, out, &rep, err);
        if (!rc) rc = recipe_to_f16(out, err);
        if (rc) return mope_error_prefix(err, "%s", stage);
        snprintf(cmd, sizeof cmd,
                 "mope train rm -m rm_trunk.gguf --data pairs_%s.jsonl --template tulu --steps %lld --batch %d "
                 "--lr %g --warmup %lld --eval-frac 0.1",
                 RECIPE_CHOICE[k], (long long)s->rm_steps, s->rm_batch, s->rm_lr, (long long)s->rm_steps / 20);
        char title[128];
        snprintf(title, sizeof title, "Reward model %s (%s)", RECIPE_CHOICE[k], RECIPE_CHOICE_NAME[k]);
        report_md(md, sizeof md, title, cmd, &rep, seed);
        size_t l = strlen(md);
        if (l > 2 && rep.eval_accuracy >= 0)
            snprintf(md + l - 2, sizeof md - l + 2, " Held-out accuracy on 10%% of its pairs (train concepts): "
                                                    "%.3f.\n\n", rep.eval_accuracy);
        if ((rc = recipe_stage_end(c, stage, rep.seconds, md, err))) return rc;
    }
    return 0;
}

static bool past_until(recipe_ctx *c, const char *stage) {
    return c->o->until && strcmp(c->o->until, stage) == 0;
}

int mope_prefbench_recipe_build(const mope_prefbench_recipe_opts *opts, mope_error *err) {
    if (!opts) return mope_error_set(err, MOPE_EINVAL, "no options");
    if (opts->until) {
        bool known = false;
        for (int i = 0; STAGES[i]; i++)
            if (strcmp(STAGES[i], opts->until) == 0) known = true;
        if (!known)
            return mope_error_set(err, MOPE_EINVAL,
                                  "unknown stage \"%s\" (stages: corpus data tokenizer base_lm base_sft experts "
                                  "rm_trunk samples rewards references eval bundle)",
                                  opts->until);
    }
    recipe_ctx c;
    memset(&c, 0, sizeof c);
    c.o = opts;
    sizes_init(&c.sz, opts->tiny);
    if (opts->max_concepts > 0) c.sz.max_concepts = opts->max_concepts;
    c.seed = opts->seed ? opts->seed : 1;
    c.n_threads = opts->n_threads > 0 ? opts->n_threads : mope_cpu_count();
    c.experts_lora = !opts->full_experts;
    c.expert_tones = !opts->single_style_experts;
    c.chain = 0xcbf29ce484222325ull;
    const char *od = opts->out_dir ? opts->out_dir : "models/prefbench";
    if (strlen(od) > 1900 || (opts->work_dir && strlen(opts->work_dir) > 1900))
        return mope_error_set(err, MOPE_EINVAL, "output or work directory path too long");
    snprintf(c.out, sizeof c.out, "%s", od);
    if (opts->work_dir) snprintf(c.work, sizeof c.work, "%s", opts->work_dir);
    else snprintf(c.work, sizeof c.work, "%s.work", od);
    c.t_start = mope_time_s();
    char seedkey[64];
    snprintf(seedkey, sizeof seedkey, "seed=%llu tiny=%d", (unsigned long long)c.seed, opts->tiny);
    c.chain = fnv(c.chain, seedkey);
    int rc = mkdirs(c.out, err);
    if (!rc) rc = mkdirs(c.work, err);
    if (!rc && !(c.wn = mope_wordnet_load(opts->wordnet_dir, err))) rc = err ? err->code : MOPE_EIO;
    if (!rc && !(c.lb = mope_prefbench_labeler_create(c.wn, err))) rc = err ? err->code : MOPE_ENOMEM;
    typedef int (*stage_fn)(recipe_ctx *, mope_error *);
    static const struct {
        const char *name;
        stage_fn fn;
    } run[] = {{"corpus", stage_corpus},     {"data", stage_data},
               {"tokenizer", stage_tokenizer}, {"base_sft", stage_base},
               {"experts", stage_experts},   {"rm_trunk", stage_rm_trunk},
               {"samples", recipe_stage_samples}, {"rewards", stage_rewards},
               {"references", recipe_stage_references}, {"eval", recipe_stage_eval},
               {"bundle", recipe_stage_bundle}};
    for (size_t i = 0; !rc && i < sizeof run / sizeof run[0]; i++) {
        double t0 = mope_time_s();
        recipe_log(&c, "== %s", run[i].name);
        rc = run[i].fn(&c, err);
        if (!rc) recipe_log(&c, "== %s done in %.1f s (total %.1f s)", run[i].name, mope_time_s() - t0,
                            mope_time_s() - c.t_start);
        if (!rc && (past_until(&c, run[i].name) ||
                    (strcmp(run[i].name, "base_sft") == 0 && opts->until && strcmp(opts->until, "base_lm") == 0)))
            break;
    }
    /* the card describes a finished zoo: a build stopped by --until leaves the last one in place */
    if (!rc && (!opts->until || strcmp(opts->until, "bundle") == 0)) rc = recipe_write_card(&c, err);
    if (!rc) recipe_log(&c, "done in %.1f s: %s", mope_time_s() - c.t_start, c.out);
    free(c.card);
    mope_prefbench_labeler_free(c.lb);
    mope_wordnet_free(c.wn);
    return rc;
}
