/* PCM trainer: preference paraphrases (--pref-paraphrases).  A PCM trained
 * on the combinations' own sentences only reads nothing else well; with a
 * file of alternative sentences per choice every item's preference text
 * takes, per choice, its own sentence or (with probability 1/2) one of the
 * alternatives, so the PCM learns which expert a wording asks for rather
 * than one fixed string per combination. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "mope/io.h"
#include "rl/pcm_train_internal.h"

enum { MAX_PARA = 256, MAX_PARA_BYTES = 512 };

void pt_paraphrases_free(pt_ctx *c) {
    for (int ch = 0; c->para && c->b && ch < c->b->n_choices; ch++) {
        for (int j = 0; j < c->n_para[ch]; j++) free(c->para[ch][j]);
        free(c->para[ch]);
    }
    free(c->para);
    free(c->n_para);
    c->para = NULL;
    c->n_para = NULL;
}

static int choice_index(const mope_bundle *b, const char *id) {
    for (int ch = 0; ch < b->n_choices; ch++)
        if (strcmp(b->choices[ch].id, id) == 0) return ch;
    return -1;
}

int pt_paraphrases_load(pt_ctx *c, const char *path, mope_error *err) {
    void *data = NULL;
    size_t n = 0;
    int rc = mope_io_read_file_max(path, 16u << 20, &data, &n, err);
    if (rc) return mope_error_prefix(err, "--pref-paraphrases");
    cJSON *root = cJSON_ParseWithLength(data, n);
    free(data);
    const int NC = c->b->n_choices;
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mope_error_set(err, MOPE_EINVAL,
                              "--pref-paraphrases %s: not a JSON object of choice id -> list of sentences", path);
    }
    c->para = calloc((size_t)NC, sizeof *c->para);
    c->n_para = calloc((size_t)NC, sizeof *c->n_para);
    if (!c->para || !c->n_para) rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (rc) break;
        int ch = choice_index(c->b, it->string);
        if (ch < 0) {
            rc = mope_error_set(err, MOPE_EINVAL, "--pref-paraphrases %s: \"%s\" is not a choice of the bundle", path,
                                it->string);
            break;
        }
        int m = cJSON_GetArraySize(it);
        if (!cJSON_IsArray(it) || m < 1 || m > MAX_PARA || c->para[ch]) {
            rc = mope_error_set(err, MOPE_EINVAL,
                                "--pref-paraphrases %s: %s must appear once, with a list of 1..%d sentences", path,
                                it->string, MAX_PARA);
            break;
        }
        if (!(c->para[ch] = calloc((size_t)m, sizeof(char *)))) {
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            break;
        }
        for (int j = 0; j < m && !rc; j++) {
            const cJSON *s = cJSON_GetArrayItem(it, j);
            size_t len = cJSON_IsString(s) ? strlen(s->valuestring) : 0;
            if (len < 1 || len > MAX_PARA_BYTES)
                rc = mope_error_set(err, MOPE_EINVAL,
                                    "--pref-paraphrases %s: %s sentence %d is not a string of 1..%d bytes", path,
                                    it->string, j + 1, MAX_PARA_BYTES);
            else if (!(c->para[ch][j] = strdup(s->valuestring)))
                rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
            else
                c->n_para[ch]++;
        }
    }
    cJSON_Delete(root);
    return rc;
}

typedef struct pick_ctx {
    pt_ctx *c;
    mope_rng *rng;
} pick_ctx;

static const char *pick_random(const mope_bundle *b, int ch, void *user) {
    pick_ctx *x = user;
    if (x->c->n_para[ch] > 0 && mope_rng_uniform(x->rng) < 0.5f)
        return x->c->para[ch][mope_rng_below(x->rng, (uint32_t)x->c->n_para[ch])];
    return b->choices[ch].text;
}

char *pt_item_text(pt_ctx *c, int p, mope_rng *rng, mope_error *err) {
    if (!c->para) {
        char *s = strdup(c->pref_text[p]);
        if (!s) mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return s;
    }
    pick_ctx x = {c, rng};
    return pt_join_combo(c->b, c->combo + (size_t)p * c->n_dim, " ", pick_random, &x, err);
}

/* The alternative of choice ch (its own sentence included) with the most
 * tokens; ties keep the first. */
static const char *pick_longest(const mope_bundle *b, int ch, void *user) {
    pt_ctx *c = ((pick_ctx *)user)->c;
    const char *best = b->choices[ch].text;
    int best_n = mope_tokenizer_encode(c->tok, best, strlen(best), false, false, NULL, 0, NULL);
    for (int j = 0; j < c->n_para[ch]; j++) {
        int n = mope_tokenizer_encode(c->tok, c->para[ch][j], strlen(c->para[ch][j]), false, false, NULL, 0, NULL);
        if (n > best_n) {
            best = c->para[ch][j];
            best_n = n;
        }
    }
    return best;
}

char *pt_longest_text(pt_ctx *c, int p, mope_error *err) {
    if (!c->para) return pt_item_text(c, p, NULL, err);
    pick_ctx x = {c, NULL};
    return pt_join_combo(c->b, c->combo + (size_t)p * c->n_dim, " ", pick_longest, &x, err);
}
