#include "mope/chat.h"

#include <limits.h>
#include <stdlib.h>
#include <strings.h>

static const char *const names[MOPE_CHAT_COUNT] = {"raw", "tulu", "chatml", "llama2", "llama3"};

const char *mope_chat_name(mope_chat_template t) {
    return (unsigned)t < MOPE_CHAT_COUNT ? names[t] : NULL;
}

int mope_chat_from_name(const char *name, mope_error *err) {
    if (!name) return mope_error_set(err, MOPE_EINVAL, "chat template: no name given");
    for (int i = 0; i < MOPE_CHAT_COUNT; i++)
        if (strcasecmp(name, names[i]) == 0) return i;
    if (strcasecmp(name, "llama-2") == 0) return MOPE_CHAT_LLAMA2;
    if (strcasecmp(name, "llama-3") == 0) return MOPE_CHAT_LLAMA3;
    return mope_error_set(err, MOPE_EINVAL,
                          "unknown chat template '%s' (known: raw, tulu, chatml, llama2, llama3)", name);
}

static bool contains(const char *s, size_t len, const char *needle) {
    return memmem(s, len, needle, strlen(needle)) != NULL;
}

int mope_chat_detect(const char *tmpl, size_t len) {
    if (!tmpl) return -1;
    /* Most specific markers first: a ChatML or Llama-3 template may mention
     * other formats' markers in comments or branches, never the reverse. */
    if (contains(tmpl, len, "<|im_start|>")) return MOPE_CHAT_CHATML;
    if (contains(tmpl, len, "<|start_header_id|>") && contains(tmpl, len, "<|end_header_id|>"))
        return MOPE_CHAT_LLAMA3;
    if (contains(tmpl, len, "[INST]")) return MOPE_CHAT_LLAMA2;
    if (contains(tmpl, len, "<|user|>") && contains(tmpl, len, "<|assistant|>")) return MOPE_CHAT_TULU;
    return -1;
}

int mope_chat_detect_gguf(const mope_gguf *g, mope_chat_template fallback, mope_error *err) {
    if (!g) return mope_error_set(err, MOPE_EINVAL, "chat template: no file");
    mope_gguf_str s;
    int rc = mope_gguf_get_str(g, "tokenizer.chat_template", &s);
    if (rc == -1) return fallback;
    if (rc != 0) return mope_error_set(err, MOPE_EFORMAT, "tokenizer.chat_template is not a string");
    int t = mope_chat_detect(s.ptr, (size_t)s.len);
    if (t < 0)
        return mope_error_set(err, MOPE_EUNSUPPORTED,
                              "the model's chat template (%llu bytes) is not one mope knows; choose one by name "
                              "(raw, tulu, chatml, llama2, llama3)",
                              (unsigned long long)s.len);
    return t;
}

/* Bounded appender with snprintf semantics: counts everything, stores what fits. */
typedef struct {
    char *out;
    size_t cap, len;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->out + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static void put_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s), lo = 0;
    while (lo < n && is_space(s[lo])) lo++;
    while (n > lo && is_space(s[n - 1])) n--;
    put(b, s + lo, n - lo);
}

int mope_chat_format(mope_chat_template t, const char *system, const char *user, char *out, size_t cap,
                     mope_error *err) {
    if ((unsigned)t >= MOPE_CHAT_COUNT) return mope_error_set(err, MOPE_EINVAL, "chat template %d unknown", (int)t);
    if (!user) return mope_error_set(err, MOPE_EINVAL, "chat template: no user message");
    if (!out && cap) return mope_error_set(err, MOPE_EINVAL, "chat template: no output buffer");
    bool sys = system && system[0];
    sbuf b = {out, cap, 0};
    switch (t) {
    case MOPE_CHAT_RAW:
        if (sys) {
            puts_(&b, system);
            puts_(&b, "\n\n");
        }
        puts_(&b, user);
        break;
    case MOPE_CHAT_TULU:
        if (sys) {
            puts_(&b, "<|system|>\n");
            puts_(&b, system);
            puts_(&b, "\n");
        }
        puts_(&b, "<|user|>\n");
        puts_(&b, user);
        puts_(&b, "\n<|assistant|>\n");
        break;
    case MOPE_CHAT_CHATML:
        if (sys) {
            puts_(&b, "<|im_start|>system\n");
            puts_(&b, system);
            puts_(&b, "<|im_end|>\n");
        }
        puts_(&b, "<|im_start|>user\n");
        puts_(&b, user);
        puts_(&b, "<|im_end|>\n<|im_start|>assistant\n");
        break;
    case MOPE_CHAT_LLAMA2:
        puts_(&b, "[INST] ");
        if (sys) {
            puts_(&b, "<<SYS>>\n");
            put_trimmed(&b, system);
            puts_(&b, "\n<</SYS>>\n\n");
        }
        put_trimmed(&b, user);
        puts_(&b, " [/INST]");
        break;
    case MOPE_CHAT_LLAMA3:
        if (sys) {
            puts_(&b, "<|start_header_id|>system<|end_header_id|>\n\n");
            put_trimmed(&b, system);
            puts_(&b, "<|eot_id|>");
        }
        puts_(&b, "<|start_header_id|>user<|end_header_id|>\n\n");
        put_trimmed(&b, user);
        puts_(&b, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    default:
        break;
    }
    if (b.len > INT_MAX) return mope_error_set(err, MOPE_ERANGE, "chat prompt too long (%zu bytes)", b.len);
    if (cap) out[b.len < cap ? b.len : cap - 1] = 0;
    return (int)b.len;
}

char *mope_chat_format_alloc(mope_chat_template t, const char *system, const char *user, mope_error *err) {
    int n = mope_chat_format(t, system, user, NULL, 0, err);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) {
        mope_error_set(err, MOPE_ENOMEM, "chat prompt: out of memory");
        return NULL;
    }
    mope_chat_format(t, system, user, s, (size_t)n + 1, err);
    return s;
}

const char *mope_chat_end_marker(mope_chat_template t) {
    switch (t) {
    case MOPE_CHAT_TULU: return "<|user|>";
    case MOPE_CHAT_CHATML: return "<|im_end|>";
    case MOPE_CHAT_LLAMA3: return "<|eot_id|>";
    default: return NULL;
    }
}

struct mope_stop_filter {
    char *stop;
    size_t slen;
    char *pend, *out; /* held-back bytes; bytes returned by the last call */
    size_t plen, cap;
    bool stopped;
};

mope_stop_filter *mope_stop_filter_new(const char *stop, mope_error *err) {
    if (!stop || !stop[0]) {
        mope_error_set(err, MOPE_EINVAL, "stop filter: empty stop string");
        return NULL;
    }
    mope_stop_filter *f = calloc(1, sizeof *f);
    if (!f || !(f->stop = strdup(stop))) {
        free(f);
        mope_error_set(err, MOPE_ENOMEM, "stop filter: out of memory");
        return NULL;
    }
    f->slen = strlen(stop);
    return f;
}

void mope_stop_filter_free(mope_stop_filter *f) {
    if (!f) return;
    free(f->stop);
    free(f->pend);
    free(f->out);
    free(f);
}

const char *mope_stop_filter_feed(mope_stop_filter *f, const char *bytes, size_t n, size_t *out_len,
                                  bool *stopped, mope_error *err) {
    *out_len = 0;
    *stopped = f->stopped;
    if (f->stopped || n == 0) return f->stop; /* any valid pointer: zero bytes */
    if (f->plen + n > f->cap) {
        size_t cap = (f->plen + n) * 2;
        char *p = realloc(f->pend, cap), *o = p ? realloc(f->out, cap) : NULL;
        if (p) f->pend = p;
        if (o) f->out = o;
        if (!p || !o) {
            mope_error_set(err, MOPE_ENOMEM, "stop filter: out of memory");
            return NULL;
        }
        f->cap = cap;
    }
    memcpy(f->pend + f->plen, bytes, n);
    f->plen += n;
    const char *hit = memmem(f->pend, f->plen, f->stop, f->slen);
    size_t emit, keep;
    if (hit) {
        emit = (size_t)(hit - f->pend);
        keep = 0;
        f->stopped = *stopped = true;
    } else {
        /* the longest tail that is a proper prefix of the marker stays */
        keep = f->slen - 1 < f->plen ? f->slen - 1 : f->plen;
        while (keep > 0 && memcmp(f->pend + f->plen - keep, f->stop, keep) != 0) keep--;
        emit = f->plen - keep;
    }
    memcpy(f->out, f->pend, emit);
    memmove(f->pend, f->pend + f->plen - keep, keep);
    f->plen = keep;
    *out_len = emit;
    return f->out;
}

const char *mope_stop_filter_flush(mope_stop_filter *f, size_t *out_len) {
    *out_len = f->stopped ? 0 : f->plen;
    f->plen = 0;
    return f->pend ? f->pend : f->stop;
}
