/* Random llama/qwen2 models for tests, benchmarks and the demo.
 *
 * Matrices are N(0, 1/n_in) so activations keep unit scale through the
 * layers and attention is far from uniform (a model whose attention is
 * uniform would hide RoPE and masking bugs from the tests); the embedding is
 * N(0, 1/sqrt(n_embd)) so tied logits stay moderate; norms are 1 + N(0, 0.1²)
 * and biases N(0, 0.1²). */
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Frequent English words: every prefix of "▁word" becomes a piece, so the
 * SentencePiece merge chain can reach the whole word. */
static const char *const words[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with",
    "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "not", "word",
    "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your",
    "how", "said", "an", "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many",
    "then", "them", "write", "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him",
    "two", "has", "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most",
    "people", "my", "over", "know", "water", "than", "call", "first", "who", "may", "down", "side", "been",
    "now", "find", "any", "new", "work", "part", "take", "get", "place", "made", "live", "where", "after",
    "back", "little", "only", "round", "man", "year", "came", "show", "every", "good", "me", "give", "our",
    "under", "name", "very", "through", "just", "form", "sentence", "great", "think", "say", "help", "low",
    "line", "differ", "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old", "too",
    "same", "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small", "end", "put",
    "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big", "high",
    "such", "follow", "act", "why", "ask", "men", "change", "went", "light", "kind", "off", "need", "house",
    "picture", "try", "us", "again", "animal", "point", "mother", "world", "near", "build", "self", "earth",
    "father", "head", "stand", "own", "page", "should", "country", "found", "answer", "school", "grow",
    "study", "still", "learn", "plant", "cover", "food", "sun", "four", "between", "state", "keep", "eye",
    "never", "last", "let", "thought", "city", "tree", "cross", "farm", "hard", "start", "might", "story",
    "saw", "far", "sea", "draw", "left", "late", "run", "while", "press", "close", "night", "real", "life",
    "few", "north", "open", "seem", "together", "next", "white", "children", "begin", "got", "walk",
    "example", "ease", "paper", "group", "always", "music", "those", "both", "mark", "often", "letter",
    "until", "mile", "river", "car", "feet", "care", "second", "book", "carry", "took", "science", "eat",
    "room", "friend", "began", "idea", "fish", "mountain", "stop", "once", "base", "hear", "horse", "cut",
    "sure", "watch", "color", "face", "wood", "main", "enough", "plain", "girl", "usual", "young", "ready",
    "above", "ever", "red", "list", "though", "feel", "talk", "bird", "soon", "body", "dog", "family",
    "direct", "pose", "leave", "song", "measure", "door", "product", "black", "short", "numeral", "class",
    "wind", "question", "happen", "complete", "ship", "area", "half", "rock", "order", "fire", "south",
    "problem", "piece", "told", "knew", "pass", "since", "top", "whole", "king", "space", "heard", "best",
    "hour", "better", "true", "during", "hundred", "five", "remember", "step", "early", "hold", "west",
    "ground", "interest", "reach", "fast", "verb", "sing", "listen", "six", "table", "travel", "less",
    "morning", "ten", "simple", "several", "vowel", "toward", "war", "lay", "against", "pattern", "slow",
    "center", "love", "person", "money", "serve", "appear", "road", "map", "rain", "rule", "govern", "pull",
    "cold", "notice", "voice", "unit", "power", "town", "fine", "certain", "fly", "fall", "lead", "cry",
    "dark", "machine", "note", "wait", "plan", "figure", "star", "box", "noun", "field", "rest", "correct",
    "able", "pound", "done", "beauty", "drive", "stood", "contain", "front", "teach", "week", "final",
    "gave", "green", "oh", "quick", "develop", "ocean", "warm", "free", "minute", "strong", "special",
    "mind", "behind", "clear", "tail", "produce", "fact", "street", "inch", "multiply", "nothing", "course",
    "stay", "wheel", "full", "force", "blue", "object", "decide", "surface", "deep", "moon", "island",
    "foot", "system", "busy", "test", "record", "boat", "common", "gold", "possible", "plane", "stead",
    "dry", "wonder", "laugh", "thousand", "ago", "ran", "check", "game", "shape", "equate", "hot", "miss",
    "brought", "heat", "snow", "tire", "bring", "yes", "distant", "fill", "east", "paint", "language",
    "among", "ing", "ed", "er", "es", "ly", "tion",
};

static const char singles[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;\"()";

typedef struct vocab {
    char **tok;
    float *score;
    int32_t *type;
    int n, cap;
    int *hash; /* open addressing: token index + 1, 0 = empty */
    uint32_t hash_mask;
} vocab;

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int vocab_has(const vocab *v, const char *s) {
    for (uint32_t i = fnv1a(s) & v->hash_mask;; i = (i + 1) & v->hash_mask) {
        int k = v->hash[i];
        if (k == 0) return 0;
        if (strcmp(v->tok[k - 1], s) == 0) return 1;
    }
}

/* Fillers are unique by construction: they skip the duplicate check. */
static void vocab_add_unchecked(vocab *v, const char *s, int32_t type, float score) {
    if (v->n >= v->cap) return;
    v->tok[v->n] = strdup(s);
    if (!v->tok[v->n]) return; /* caught by the count check */
    v->score[v->n] = score;
    v->type[v->n] = type;
    uint32_t i = fnv1a(s) & v->hash_mask;
    while (v->hash[i]) i = (i + 1) & v->hash_mask;
    v->hash[i] = ++v->n;
}

static void vocab_add(vocab *v, const char *s, int32_t type, float score) {
    if (!vocab_has(v, s)) vocab_add_unchecked(v, s, type, score);
}

static int build_vocab(vocab *v, int n_vocab, mope_error *err) {
    if (n_vocab < 259)
        return mope_error_set(err, MOPE_EINVAL,
                              "random model: n_vocab %d is too small for the built-in vocabulary (needs >= 259)",
                              n_vocab);
    v->cap = n_vocab;
    v->tok = calloc((size_t)n_vocab, sizeof *v->tok);
    v->score = calloc((size_t)n_vocab, sizeof *v->score);
    v->type = calloc((size_t)n_vocab, sizeof *v->type);
    uint32_t hsize = 1024;
    while (hsize < 2u * (uint32_t)n_vocab) hsize *= 2;
    v->hash = calloc(hsize, sizeof *v->hash);
    v->hash_mask = hsize - 1;
    if (!v->tok || !v->score || !v->type || !v->hash) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    vocab_add(v, "<unk>", 2, 0);
    vocab_add(v, "<s>", 3, 0);
    vocab_add(v, "</s>", 3, 0);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        vocab_add(v, s, 6, 0);
    }
    /* Merged pieces get decreasing scores in order of frequency, so common
     * words win merges; single characters are never merged into. */
    float score = -1;
    vocab_add(v, "\xe2\x96\x81", 1, score);
    for (const char *c = singles; *c; c++) {
        char s[2] = {*c, 0};
        vocab_add(v, s, 1, score);
    }
    /* the words, then capitalised, then with common suffixes */
    static const char *const suffixes[] = {"", "", "s", "ed", "ing", "er", "ly"};
    for (size_t pass = 0; pass < sizeof suffixes / sizeof suffixes[0]; pass++) {
        for (size_t w = 0; w < sizeof words / sizeof words[0] && v->n < v->cap; w++) {
            char word[48];
            snprintf(word, sizeof word, "%s%s", words[w], suffixes[pass]);
            if (pass == 1 && word[0] >= 'a' && word[0] <= 'z') word[0] = (char)(word[0] - 'a' + 'A');
            char s[64] = "\xe2\x96\x81";
            size_t n = strlen(word);
            for (size_t i = 1; i <= n; i++) {
                memcpy(s + 3, word, i);
                s[3 + i] = 0;
                vocab_add(v, s, 1, score -= 1);
            }
        }
    }
    for (int i = 0; v->n < v->cap; i++) {
        char s[32];
        snprintf(s, sizeof s, "<unused_%d>", i);
        vocab_add_unchecked(v, s, 5, -1e9f);
    }
    for (int i = 0; i < v->n; i++)
        if (!v->tok[i]) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    if (v->n != n_vocab) return mope_error_set(err, MOPE_ENOMEM, "out of memory");
    return 0;
}

static void vocab_free(vocab *v) {
    if (v->tok)
        for (int i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    free(v->score);
    free(v->type);
    free(v->hash);
}

static int write_vocab(mope_gguf_writer *w, const vocab *v) {
    int rc = 0;
    rc |= mope_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    rc |= mope_gguf_set_str(w, "tokenizer.ggml.pre", "default");
    rc |= mope_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, NULL, (uint64_t)v->n);
    rc |= mope_gguf_set_arr(w, "tokenizer.ggml.scores", MOPE_GGUF_F32, v->score, (uint64_t)v->n);
    rc |= mope_gguf_set_arr(w, "tokenizer.ggml.token_type", MOPE_GGUF_I32, v->type, (uint64_t)v->n);
    rc |= mope_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    rc |= mope_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    rc |= mope_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    rc |= mope_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    rc |= mope_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    rc |= mope_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", true);
    return rc;
}

/* ---- tensors ---- */

typedef struct rnd_out {
    mope_gguf_writer *w;
    void **bufs;
    int n_bufs, cap_bufs;
    mope_rng rng;
    float *row;
} rnd_out;

/* std > 0: matrix N(0, std^2); std == -1: norm vector 1 + N(0, 0.01);
 * std == -2: bias vector N(0, 0.01). */
static int add_tensor(rnd_out *o, const char *name, mope_type type, int64_t ne0, int64_t ne1, float std,
                      mope_error *err) {
    size_t rb = mope_row_size(type, ne0);
    if (rb == 0)
        return mope_error_set(err, MOPE_EINVAL, "random model: tensor '%s' row of %lld is not a multiple of %s's block",
                              name, (long long)ne0, mope_type_name(type));
    if (o->n_bufs == o->cap_bufs) return mope_error_set(err, MOPE_ESTATE, "random model: too many tensors");
    char *buf = mope_alloc((size_t)ne1, rb);
    if (!buf) return mope_error_set(err, MOPE_ENOMEM, "random model: out of memory for '%s'", name);
    o->bufs[o->n_bufs++] = buf;
    bool vec = ne1 == 1 && std < 0;
    for (int64_t r = 0; r < ne1; r++) {
        for (int64_t i = 0; i < ne0; i++) {
            float z = mope_rng_normal(&o->rng);
            o->row[i] = vec ? (std == -1 ? 1.0f + 0.1f * z : 0.1f * z) : std * z;
        }
        if (mope_quantize_row(type, o->row, buf + (size_t)r * rb, ne0) != 0)
            return mope_error_set(err, MOPE_EUNSUPPORTED, "random model: cannot quantise to %s", mope_type_name(type));
    }
    int64_t ne[2] = {ne0, ne1};
    return mope_gguf_add_tensor(o->w, name, type, ne1 == 1 && vec ? 1 : 2, ne, buf, err);
}

static int set_keys(mope_gguf_writer *w, const mope_hparams *hp) {
    const char *a = mope_arch_name(hp->arch);
    char k[128];
    int rc = 0;
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    rc |= mope_gguf_set_str(w, "general.architecture", a);
    rc |= mope_gguf_set_str(w, "general.type", "model");
    rc |= mope_gguf_set_str(w, "general.name", "mope random model");
    rc |= mope_gguf_set_u32(w, "general.quantization_version", 2);
    rc |= mope_gguf_set_u32(w, KEY("context_length"), (uint32_t)hp->n_ctx_train);
    rc |= mope_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)hp->n_embd);
    rc |= mope_gguf_set_u32(w, KEY("block_count"), (uint32_t)hp->n_layer);
    rc |= mope_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)hp->n_ff);
    rc |= mope_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)hp->n_head);
    rc |= mope_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)hp->n_head_kv);
    if (hp->head_dim * hp->n_head != hp->n_embd) {
        rc |= mope_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)hp->head_dim);
        rc |= mope_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)hp->head_dim);
    }
    rc |= mope_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)hp->n_rot);
    rc |= mope_gguf_set_f32(w, KEY("rope.freq_base"), hp->rope_freq_base);
    rc |= mope_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), hp->rms_eps);
    if (hp->rope_freq_scale != 1.0f) {
        rc |= mope_gguf_set_str(w, KEY("rope.scaling.type"), "linear");
        rc |= mope_gguf_set_f32(w, KEY("rope.scaling.factor"), 1.0f / hp->rope_freq_scale);
    }
#undef KEY
    return rc;
}

int mope_model_write_random(const char *path, const mope_hparams *hp_in, mope_type wtype, uint64_t seed,
                            const mope_gguf *tokenizer_src, mope_error *err) {
    if (!path || !hp_in) return mope_error_set(err, MOPE_EINVAL, "random model: no path or hparams");
    mope_hparams hp = *hp_in;
    if (tokenizer_src) {
        int64_t kvi = mope_gguf_find_key(tokenizer_src, "tokenizer.ggml.tokens");
        mope_gguf_type et;
        uint64_t n;
        const void *d;
        if (kvi < 0 || mope_gguf_kv_arr(tokenizer_src, kvi, &et, &n, &d) != 0 || et != MOPE_GGUF_STRING)
            return mope_error_set(err, MOPE_EINVAL, "random model: tokenizer source has no tokenizer.ggml.tokens");
        if (hp.n_vocab == 0 && n <= INT32_MAX) hp.n_vocab = (int)n;
        if ((uint64_t)hp.n_vocab != n)
            return mope_error_set(err, MOPE_EINVAL, "random model: n_vocab %d but the tokenizer has %llu tokens",
                                  hp.n_vocab, (unsigned long long)n);
    }
    int rc = mope_hparams_check(&hp, err);
    if (rc) {
        mope_error_prefix(err, "random model");
        return rc;
    }
    mope_rope_mode want = hp.arch == MOPE_ARCH_QWEN2 ? MOPE_ROPE_NEOX : MOPE_ROPE_NORMAL;
    if (hp.rope_mode != want)
        return mope_error_set(err, MOPE_EINVAL, "random model: %s uses rope mode %d, not %d", mope_arch_name(hp.arch),
                              (int)want, (int)hp.rope_mode);
    const mope_type_traits *tt = mope_type_get(wtype);
    if (!tt || !tt->can_quantize)
        return mope_error_set(err, MOPE_EUNSUPPORTED, "random model: cannot write weights as %s",
                              mope_type_name(wtype));

    vocab v = {0};
    rnd_out o = {0};
    o.w = mope_gguf_writer_new();
    o.cap_bufs = 16 + 12 * hp.n_layer;
    o.bufs = calloc((size_t)o.cap_bufs, sizeof *o.bufs);
    int64_t E = hp.n_embd, F = hp.n_ff, QD = (int64_t)hp.n_head * hp.head_dim, KD = (int64_t)hp.n_head_kv * hp.head_dim;
    int64_t maxk = E > F ? E : F;
    if (QD > maxk) maxk = QD;
    o.row = malloc(sizeof(float) * (size_t)maxk);
    if (!o.w || !o.bufs || !o.row) {
        rc = mope_error_set(err, MOPE_ENOMEM, "out of memory");
        goto done;
    }
    mope_rng_seed(&o.rng, seed);
    if (set_keys(o.w, &hp)) {
        rc = mope_error_set(err, MOPE_ENOMEM, "random model: cannot set keys");
        goto done;
    }
    if (tokenizer_src) {
        if (mope_gguf_copy_kv(o.w, tokenizer_src, "tokenizer.")) {
            rc = mope_error_set(err, MOPE_ENOMEM, "random model: cannot copy the tokenizer");
            goto done;
        }
    } else {
        if ((rc = build_vocab(&v, hp.n_vocab, err))) goto done;
        if (write_vocab(o.w, &v)) {
            rc = mope_error_set(err, MOPE_ENOMEM, "random model: cannot write the vocabulary");
            goto done;
        }
    }
    float se = 1.0f / sqrtf(sqrtf((float)E)), sE = 1.0f / sqrtf((float)E);
    float sF = 1.0f / sqrtf((float)F), sQ = 1.0f / sqrtf((float)QD);
    if ((rc = add_tensor(&o, "token_embd.weight", wtype, E, hp.n_vocab, se, err)) ||
        (rc = add_tensor(&o, "output_norm.weight", MOPE_TYPE_F32, E, 1, -1, err)))
        goto done;
    if (!hp.tied_output && (rc = add_tensor(&o, "output.weight", wtype, E, hp.n_vocab, sE, err))) goto done;
    for (int il = 0; il < hp.n_layer; il++) {
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
        if ((rc = add_tensor(&o, NAME("attn_norm.weight"), MOPE_TYPE_F32, E, 1, -1, err)) ||
            (rc = add_tensor(&o, NAME("attn_q.weight"), wtype, E, QD, sE, err)) ||
            (rc = add_tensor(&o, NAME("attn_k.weight"), wtype, E, KD, sE, err)) ||
            (rc = add_tensor(&o, NAME("attn_v.weight"), wtype, E, KD, sE, err)) ||
            (rc = add_tensor(&o, NAME("attn_output.weight"), wtype, QD, E, sQ, err)) ||
            (rc = add_tensor(&o, NAME("ffn_norm.weight"), MOPE_TYPE_F32, E, 1, -1, err)) ||
            (rc = add_tensor(&o, NAME("ffn_gate.weight"), wtype, E, F, sE, err)) ||
            (rc = add_tensor(&o, NAME("ffn_up.weight"), wtype, E, F, sE, err)) ||
            (rc = add_tensor(&o, NAME("ffn_down.weight"), wtype, F, E, sF, err)))
            goto done;
        if (hp.has_qkv_bias &&
            ((rc = add_tensor(&o, NAME("attn_q.bias"), MOPE_TYPE_F32, QD, 1, -2, err)) ||
             (rc = add_tensor(&o, NAME("attn_k.bias"), MOPE_TYPE_F32, KD, 1, -2, err)) ||
             (rc = add_tensor(&o, NAME("attn_v.bias"), MOPE_TYPE_F32, KD, 1, -2, err))))
            goto done;
#undef NAME
    }
    rc = mope_gguf_writer_write(o.w, path, err);
done:
    if (o.bufs)
        for (int i = 0; i < o.n_bufs; i++) mope_free(o.bufs[i]);
    free(o.bufs);
    free(o.row);
    mope_gguf_writer_free(o.w);
    vocab_free(&v);
    return rc;
}
