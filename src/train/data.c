/* Training datasets (see include/mope/dataset.h). */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "mope/dataset.h"
#include "mope/io.h"

void mope_dataset_opts_init(mope_dataset_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 128;
    o->chat = MOPE_CHAT_TULU;
}

void mope_seq_free(mope_seq *s) {
    if (!s) return;
    free(s->tokens);
    memset(s, 0, sizeof *s);
}

void mope_dataset_free(mope_dataset *d) {
    if (!d) return;
    free(d->stream);
    if (d->seqs)
        for (int64_t i = 0; i < d->n; i++) mope_seq_free(&d->seqs[i]);
    if (d->pairs)
        for (int64_t i = 0; i < d->n; i++) {
            mope_seq_free(&d->pairs[i].chosen);
            mope_seq_free(&d->pairs[i].rejected);
            free(d->pairs[i].dimension);
        }
    free(d->seqs);
    free(d->pairs);
    memset(d, 0, sizeof *d);
}

int64_t mope_dataset_size(const mope_dataset *d) { return d->n; }

static int check_opts(const mope_dataset_opts *o, mope_error *err) {
    if (!o || !o->tok) return mope_error_set(err, MOPE_EINVAL, "dataset: no tokenizer");
    if (o->n_ctx < 2) return mope_error_set(err, MOPE_EINVAL, "dataset: context %d is below 2", (int)o->n_ctx);
    return 0;
}

int mope_dataset_text(const mope_dataset_opts *o, const char *text, size_t len, mope_dataset *out,
                      mope_error *err) {
    memset(out, 0, sizeof *out);
    if (check_opts(o, err)) return MOPE_EINVAL;
    if (!text || len == 0) return mope_error_set(err, MOPE_EINVAL, "the text is empty");
    int32_t *ids = NULL;
    int n = mope_tokenizer_encode_alloc(o->tok, text, len, mope_tokenizer_add_bos(o->tok), false, &ids, err);
    if (n < 0) return mope_error_prefix(err, "tokenizing the text"), n;
    if (n < o->n_ctx + 1) {
        free(ids);
        return mope_error_set(err, MOPE_EINVAL, "the text gives %d tokens, fewer than one window of %d + 1", n,
                              (int)o->n_ctx);
    }
    out->kind = MOPE_DATASET_TEXT;
    out->n_ctx = o->n_ctx;
    out->stream = ids;
    out->n_stream = n;
    out->n = (n - 1) / o->n_ctx;
    out->n_tokens = n;
    return 0;
}

int mope_dataset_text_file(const mope_dataset_opts *o, const char *path, mope_dataset *out, mope_error *err) {
    void *data = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    int rc = mope_io_read_file(path, &data, &n, err);
    if (rc) return rc;
    rc = mope_dataset_text(o, data, n, out, err);
    free(data);
    if (rc) mope_error_prefix(err, "%s", path);
    return rc;
}

int mope_dataset_make_seq(const mope_dataset_opts *o, const char *prompt, const char *response, mope_seq *out,
                          bool *truncated, mope_error *err) {
    memset(out, 0, sizeof *out);
    if (truncated) *truncated = false;
    if (check_opts(o, err)) return MOPE_EINVAL;
    int32_t eos = mope_tokenizer_eos(o->tok);
    if (eos < 0) return mope_error_set(err, MOPE_EINVAL, "the tokenizer has no EOS token to end a response with");
    char *chat = mope_chat_format_alloc(o->chat, o->system, prompt, err);
    if (!chat) return err ? err->code : MOPE_EINVAL;
    int32_t *p = NULL, *r = NULL;
    int np = mope_tokenizer_encode_alloc(o->tok, chat, strlen(chat), mope_tokenizer_add_bos(o->tok), true, &p, err);
    free(chat);
    if (np < 0) return np;
    int nr = mope_tokenizer_encode_alloc(o->tok, response, strlen(response), false, false, &r, err);
    if (nr < 0) {
        free(p);
        return nr;
    }
    int rc = 0;
    if (np < 1 || np >= o->n_ctx) {
        rc = mope_error_set(err, MOPE_ERANGE, "the prompt takes %d tokens: no room for a response in a context of %d",
                            np, (int)o->n_ctx);
    } else {
        int total = np + nr + 1;
        if (total > o->n_ctx) {
            if (o->strict)
                rc = mope_error_set(err, MOPE_ERANGE, "prompt + response + EOS take %d tokens, more than the context %d",
                                    total, (int)o->n_ctx);
            else if (truncated)
                *truncated = true;
            total = o->n_ctx;
        }
        if (!rc && !(out->tokens = malloc((size_t)total * sizeof(int32_t))))
            rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        if (!rc) {
            memcpy(out->tokens, p, (size_t)np * sizeof(int32_t));
            int keep = total - np; /* response tokens + EOS that fit */
            int from_r = keep < nr + 1 ? keep : nr;
            if (from_r > nr) from_r = nr;
            memcpy(out->tokens + np, r, (size_t)from_r * sizeof(int32_t));
            if (np + from_r < total) out->tokens[np + from_r] = eos;
            out->len = total;
            out->prompt_len = np;
        }
    }
    free(p);
    free(r);
    return rc;
}

/* Calls fn for every non-blank line's JSON object, with its 1-based line number. */
typedef int (*line_fn)(void *ctx, const cJSON *obj, int64_t line, mope_error *err);

static int each_jsonl(const char *data, size_t len, const char *name, line_fn fn, void *ctx, mope_error *err) {
    int64_t line = 0, records = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && data[end] != '\n') end++;
        line++;
        size_t a = pos, b = end;
        while (a < b && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r')) a++;
        while (b > a && (data[b - 1] == ' ' || data[b - 1] == '\t' || data[b - 1] == '\r')) b--;
        pos = end + 1;
        if (a == b) continue;
        const char *stop = NULL;
        cJSON *obj = cJSON_ParseWithLengthOpts(data + a, b - a, &stop, false);
        if (!obj) {
            long col = stop ? (long)(stop - (data + a)) + 1 : 0;
            return mope_error_set(err, MOPE_EFORMAT, "%s:%lld: malformed JSON near column %ld", name,
                                  (long long)line, col);
        }
        int rc = 0;
        if (stop && stop != data + b) {
            rc = mope_error_set(err, MOPE_EFORMAT, "%s:%lld: text after the JSON value (one object per line)", name,
                                (long long)line);
        } else if (!cJSON_IsObject(obj)) {
            rc = mope_error_set(err, MOPE_EFORMAT, "%s:%lld: expected a JSON object", name, (long long)line);
        } else {
            rc = fn(ctx, obj, line, err);
            if (rc) mope_error_prefix(err, "%s:%lld", name, (long long)line);
        }
        cJSON_Delete(obj);
        if (rc) return rc;
        records++;
    }
    if (records == 0) return mope_error_set(err, MOPE_EINVAL, "%s: no records (empty file)", name);
    return 0;
}

static const char *get_str(const cJSON *obj, const char *key, bool required, int *rc, mope_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required) *rc = mope_error_set(err, MOPE_EINVAL, "missing field \"%s\"", key);
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        *rc = mope_error_set(err, MOPE_EINVAL, "field \"%s\" must be a string", key);
        return NULL;
    }
    return v->valuestring;
}

typedef struct load_ctx {
    const mope_dataset_opts *o;
    mope_dataset *d;
    int64_t cap;
} load_ctx;

static int grow(load_ctx *c, size_t elem) {
    if (c->d->n < c->cap) return 0;
    int64_t cap = c->cap ? c->cap * 2 : 64;
    void **arr = c->d->kind == MOPE_DATASET_SFT ? (void **)&c->d->seqs : (void **)&c->d->pairs;
    void *p = realloc(*arr, (size_t)cap * elem);
    if (!p) return MOPE_ENOMEM;
    memset((char *)p + (size_t)c->cap * elem, 0, (size_t)(cap - c->cap) * elem);
    *arr = p;
    c->cap = cap;
    return 0;
}

static int sft_line(void *ctx, const cJSON *obj, int64_t line, mope_error *err) {
    (void)line;
    load_ctx *c = ctx;
    int rc = 0;
    const char *prompt = get_str(obj, "prompt", true, &rc, err);
    const char *resp = rc ? NULL : get_str(obj, "response", true, &rc, err);
    if (rc) return rc;
    if (grow(c, sizeof(mope_seq))) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    bool cut = false;
    if ((rc = mope_dataset_make_seq(c->o, prompt, resp, &c->d->seqs[c->d->n], &cut, err))) return rc;
    c->d->n_tokens += c->d->seqs[c->d->n].len;
    c->d->n_truncated += cut;
    c->d->n++;
    return 0;
}

static int pref_line(void *ctx, const cJSON *obj, int64_t line, mope_error *err) {
    (void)line;
    load_ctx *c = ctx;
    int rc = 0;
    const char *prompt = get_str(obj, "prompt", true, &rc, err);
    const char *ch = rc ? NULL : get_str(obj, "chosen", true, &rc, err);
    const char *rj = rc ? NULL : get_str(obj, "rejected", true, &rc, err);
    const char *dim = rc ? NULL : get_str(obj, "dimension", false, &rc, err);
    if (rc) return rc;
    if (grow(c, sizeof(mope_pref_pair))) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    mope_pref_pair *p = &c->d->pairs[c->d->n];
    bool cut1 = false, cut2 = false;
    if ((rc = mope_dataset_make_seq(c->o, prompt, ch, &p->chosen, &cut1, err))) return mope_error_prefix(err, "chosen"), rc;
    if ((rc = mope_dataset_make_seq(c->o, prompt, rj, &p->rejected, &cut2, err))) {
        mope_seq_free(&p->chosen);
        return mope_error_prefix(err, "rejected"), rc;
    }
    if (dim && !(p->dimension = strdup(dim))) {
        mope_seq_free(&p->chosen);
        mope_seq_free(&p->rejected);
        return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    }
    c->d->n_tokens += p->chosen.len + p->rejected.len;
    c->d->n_truncated += cut1 + cut2;
    c->d->n++;
    return 0;
}

static int load_jsonl(const mope_dataset_opts *o, const char *data, size_t len, const char *name,
                      mope_dataset_kind kind, mope_dataset *out, mope_error *err) {
    memset(out, 0, sizeof *out);
    if (check_opts(o, err)) return MOPE_EINVAL;
    out->kind = kind;
    out->n_ctx = o->n_ctx;
    load_ctx c = {o, out, 0};
    int rc = each_jsonl(data ? data : "", data ? len : 0, name ? name : "(data)",
                        kind == MOPE_DATASET_SFT ? sft_line : pref_line, &c, err);
    if (rc) mope_dataset_free(out);
    return rc;
}

int mope_dataset_sft_jsonl(const mope_dataset_opts *o, const char *data, size_t len, const char *name,
                           mope_dataset *out, mope_error *err) {
    return load_jsonl(o, data, len, name, MOPE_DATASET_SFT, out, err);
}

int mope_dataset_pref_jsonl(const mope_dataset_opts *o, const char *data, size_t len, const char *name,
                            mope_dataset *out, mope_error *err) {
    return load_jsonl(o, data, len, name, MOPE_DATASET_PREF, out, err);
}

static int load_file(const mope_dataset_opts *o, const char *path, mope_dataset_kind kind, mope_dataset *out,
                     mope_error *err) {
    void *data = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    int rc = mope_io_read_file(path, &data, &n, err);
    if (rc) return rc;
    rc = load_jsonl(o, data, n, path, kind, out, err);
    free(data);
    return rc;
}

int mope_dataset_sft_file(const mope_dataset_opts *o, const char *path, mope_dataset *out, mope_error *err) {
    return load_file(o, path, MOPE_DATASET_SFT, out, err);
}

int mope_dataset_pref_file(const mope_dataset_opts *o, const char *path, mope_dataset *out, mope_error *err) {
    return load_file(o, path, MOPE_DATASET_PREF, out, err);
}
