/* PrefBench recipe outputs: F16 storage of trained models, bundle.json and
 * MODEL_CARD.md. */
#include <stdlib.h>
#include <sys/stat.h>

#include "mope/bundle.h"
#include "mope/gguf.h"
#include "mope/io.h"
#include "prefbench/recipe_internal.h"

/* Rewrites a GGUF with its 2-D F32 tensors stored as F16 (vectors stay
 * F32): halves the committed size; every loader converts back to f32. */
int recipe_to_f16(const char *path, mope_error *err) {
    mope_gguf *g = mope_gguf_open(path, err);
    if (!g) return err ? err->code : MOPE_EIO;
    mope_gguf_writer *w = mope_gguf_writer_new();
    int64_t nt = mope_gguf_n_tensors(g);
    uint16_t **bufs = calloc((size_t)(nt > 0 ? nt : 1), sizeof *bufs);
    int rc = w && bufs ? mope_gguf_copy_kv(w, g, NULL) : MOPE_ENOMEM;
    if (rc) rc = mope_error_set(err, rc, "%s: copying the keys failed", path);
    for (int64_t i = 0; !rc && i < nt; i++) {
        const mope_gguf_tensor *t = mope_gguf_tensor_at(g, i);
        const void *data = t->data;
        mope_type ty = t->type;
        if (t->type == MOPE_TYPE_F32 && t->n_dims == 2) {
            if (!(bufs[i] = malloc((size_t)t->n_elements * sizeof(uint16_t)))) {
                rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
                break;
            }
            const float *f = t->data;
            for (int64_t j = 0; j < t->n_elements; j++) bufs[i][j] = mope_f32_to_f16(f[j]);
            data = bufs[i];
            ty = MOPE_TYPE_F16;
        }
        rc = mope_gguf_add_tensor(w, t->name, ty, t->n_dims, t->ne, data, err);
    }
    /* llama.cpp's LLAMA_FTYPE_MOSTLY_F16 */
    if (!rc && mope_gguf_find_key(g, "general.file_type") >= 0) rc = mope_gguf_set_u32(w, "general.file_type", 1);
    if (!rc) rc = mope_gguf_writer_write(w, path, err);
    for (int64_t i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs);
    mope_gguf_writer_free(w);
    mope_gguf_close(g);
    if (rc) mope_error_prefix(err, "storing %s as f16", path);
    return rc;
}

int recipe_stage_bundle(recipe_ctx *c, mope_error *err) {
    mope_bundle *b = calloc(1, sizeof *b);
    if (!b) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    char p[4200];
    int rc = 0;
#define DUP(dst, s) ((dst) = strdup(s))
    DUP(b->dir, c->out);
    DUP(b->name, c->o->tiny ? "prefbench-tiny" : "prefbench");
    recipe_path(p, sizeof p, c->out, "tokenizer.gguf");
    DUP(b->tokenizer, p);
    b->template_id = MOPE_CHAT_TULU;
    DUP(b->prompt_format, "<|user|>\n{instruction} {preference sentences}\n<|assistant|>\n");
    recipe_path(p, sizeof p, c->out, "base.gguf");
    DUP(b->base, p);
    b->dimensions = calloc(3, sizeof *b->dimensions);
    b->choices = calloc(6, sizeof *b->choices);
    b->experts = calloc(6, sizeof *b->experts);
    b->rewards = calloc(6, sizeof *b->rewards);
    if (!b->dimensions || !b->choices || !b->experts || !b->rewards) rc = mope_error_set(err, MOPE_ENOMEM, "oom");
    for (int d = 0; !rc && d < 3; d++) {
        b->dimensions[d] = (mope_bundle_dimension){strdup(RECIPE_DIM_ID[d]), strdup(RECIPE_DIM_NAME[d]), 2 * d, 2};
        b->n_dimensions++;
    }
    for (int k = 0; !rc && k < 6; k++) {
        b->choices[k] = (mope_bundle_choice){strdup(RECIPE_CHOICE[k]), strdup(RECIPE_CHOICE_NAME[k]),
                                             strdup(RECIPE_CHOICE_TEXT[k]), k / 2};
        b->n_choices++;
        snprintf(p, sizeof p, "%s/experts/%s.gguf", c->out, RECIPE_CHOICE[k]);
        mope_bundle_expert *x = &b->experts[b->n_experts++];
        x->id = strdup(RECIPE_CHOICE[k]);
        x->choice = strdup(RECIPE_CHOICE[k]);
        x->choice_index = k;
        if (c->experts_lora) x->adapter = strdup(p);
        else x->model = strdup(p);
        x->preference_text = strdup(RECIPE_CHOICE_TEXT[k]);
        snprintf(p, sizeof p, "%s/rm/%s.gguf", c->out, RECIPE_CHOICE[k]);
        b->rewards[b->n_rewards++] = (mope_bundle_reward){strdup(RECIPE_CHOICE[k]), k, strdup(p)};
    }
    recipe_path(p, sizeof p, c->out, "references.jsonl");
    DUP(b->references, p);
    char *info = NULL;
    if (asprintf(&info, "{\"recipe\":\"mope prefbench build%s --seed %llu\",\"model_card\":\"MODEL_CARD.md\"}",
                 c->o->tiny ? " --tiny" : "", (unsigned long long)c->seed) > 0)
        b->info_json = info;
#undef DUP
    char path[4200];
    recipe_path(path, sizeof path, c->out, "bundle.json");
    if (!rc) rc = mope_bundle_save(b, path, 0, err);
    mope_bundle_free(b);
    if (rc) return rc;
    /* check what was written loads back, files and all */
    mope_bundle *back = mope_bundle_load(path, 0, err);
    if (!back) return err ? err->code : MOPE_EFORMAT;
    mope_bundle_free(back);
    recipe_log(c, "bundle: wrote %s", path);
    return 0;
}

int recipe_write_card(recipe_ctx *c, mope_error *err) {
    char path[4200];
    recipe_path(path, sizeof path, c->out, "MODEL_CARD.md");
    char *head = NULL;
    int n = asprintf(&head,
                     "# PrefBench model zoo%s\n\n"
                     "Generated by `mope prefbench build%s --seed %llu` (docs/PREFBENCH.md, \"Recipe\"). Everything "
                     "here is trained from scratch on the CPU from WordNet 3.0 (Debian `wordnet-base`); "
                     "`bundle.json` names the files. Times are wall-clock seconds on the machine that ran the build "
                     "(%d threads); a stage skipped because its stamp matched keeps the time of the run that built "
                     "it.\n\n"
                     "Prompts use the Tulu format `<|user|>\\n{instruction} {preference sentences}\\n<|assistant|>\\n` "
                     "with Personalized Soups' preference sentences.\n\n",
                     c->o->tiny ? " (tiny)" : "", c->o->tiny ? " --tiny" : "", (unsigned long long)c->seed,
                     c->n_threads);
    if (n < 0) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    /* what is committed, with sizes */
    recipe_card(c, "## Files\n\n| file | bytes |\n|---|---|\n");
    long long total = 0;
    const char *fixed[] = {"bundle.json", "tokenizer.gguf", "base.gguf", "references.jsonl"};
    for (int i = 0; i < 4 + 12; i++) {
        char name[64], fp[4200];
        if (i < 4) snprintf(name, sizeof name, "%s", fixed[i]);
        else snprintf(name, sizeof name, "%s/%s.gguf", i < 10 ? "experts" : "rm", RECIPE_CHOICE[(i - 4) % 6]);
        recipe_path(fp, sizeof fp, c->out, name);
        struct stat st;
        if (stat(fp, &st) != 0) continue;
        recipe_card(c, "| %s | %lld |\n", name, (long long)st.st_size);
        total += st.st_size;
    }
    recipe_card(c, "| total (without this card) | %lld |\n\nIntermediates (corpus, training files, "
                   "stamps, checkpoints, evaluation records) are in the work folder (default `OUT.work`), not "
                   "committed.\n",
                total);
    size_t lh = strlen(head), lc = c->card_len;
    char *all = malloc(lh + lc + 1);
    if (!all) {
        free(head);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    memcpy(all, head, lh);
    if (lc) memcpy(all + lh, c->card, lc);
    all[lh + lc] = 0;
    free(head);
    int rc = mope_io_write_atomic(path, all, lh + lc, err);
    free(all);
    return rc;
}

