/* Chat templates: each format against a hand-written expected string, the
 * snprintf-style truncation contract, name lookup, and detection on the real
 * Jinja templates stored in the Llama-3 and Qwen vocab files, and the
 * formatted prompts tokenized with the real vocabularies against the
 * reference chat-format tokenizations in *.special.expected.json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "mope/chat.h"
#include "mope/gguf.h"
#include "mope/io.h"
#include "mope/tokenizer.h"

static void expect_format(mope_chat_template t, const char *sys, const char *user, const char *want) {
    mope_error err = {0};
    char buf[512];
    int n = mope_chat_format(t, sys, user, buf, sizeof buf, &err);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    char *s = mope_chat_format_alloc(t, sys, user, &err);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

static void test_formats(void **state) {
    (void)state;
    expect_format(MOPE_CHAT_TULU, NULL, "What is a glacier?", "<|user|>\nWhat is a glacier?\n<|assistant|>\n");
    expect_format(MOPE_CHAT_TULU, "Be brief.", "Hi", "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n");
    expect_format(MOPE_CHAT_CHATML, NULL, "Hi there",
                  "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
    expect_format(MOPE_CHAT_CHATML, "You are kind.", "Hi",
                  "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                  "<|im_start|>assistant\n");
    /* an empty system string means no system turn */
    expect_format(MOPE_CHAT_CHATML, "", "Hi", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    expect_format(MOPE_CHAT_LLAMA2, NULL, "Hello", "[INST] Hello [/INST]");
    expect_format(MOPE_CHAT_LLAMA2, "Answer in French.", " Hello\n",
                  "[INST] <<SYS>>\nAnswer in French.\n<</SYS>>\n\nHello [/INST]");
    expect_format(MOPE_CHAT_LLAMA3, NULL, "  Hello \n",
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_format(MOPE_CHAT_LLAMA3, "Sys", "Q",
                  "<|start_header_id|>system<|end_header_id|>\n\nSys<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_format(MOPE_CHAT_RAW, NULL, " as is ", " as is ");
    expect_format(MOPE_CHAT_RAW, "S", "U", "S\n\nU");
    /* tulu and chatml keep the message exactly, whitespace included */
    expect_format(MOPE_CHAT_TULU, NULL, " x ", "<|user|>\n x \n<|assistant|>\n");
}

static void test_truncation_and_errors(void **state) {
    (void)state;
    mope_error err = {0};
    char buf[8];
    memset(buf, 'Z', sizeof buf);
    /* full length is returned, the buffer holds a NUL-terminated prefix */
    int n = mope_chat_format(MOPE_CHAT_TULU, NULL, "Hi", buf, sizeof buf, &err);
    assert_int_equal(n, (int)strlen("<|user|>\nHi\n<|assistant|>\n"));
    assert_string_equal(buf, "<|user|");
    assert_int_equal(mope_chat_format(MOPE_CHAT_TULU, NULL, "Hi", NULL, 0, &err), n);
    assert_int_equal(mope_chat_format(MOPE_CHAT_TULU, NULL, NULL, buf, sizeof buf, &err), MOPE_EINVAL);
    assert_int_equal(mope_chat_format((mope_chat_template)17, NULL, "x", buf, sizeof buf, &err), MOPE_EINVAL);
}

static void test_names(void **state) {
    (void)state;
    mope_error err = {0};
    for (int t = 0; t < MOPE_CHAT_COUNT; t++)
        assert_int_equal(mope_chat_from_name(mope_chat_name((mope_chat_template)t), &err), t);
    assert_int_equal(mope_chat_from_name("ChatML", &err), MOPE_CHAT_CHATML);
    assert_int_equal(mope_chat_from_name("llama-3", &err), MOPE_CHAT_LLAMA3);
    assert_int_equal(mope_chat_from_name("vicuna", &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "vicuna"));
    assert_non_null(strstr(err.msg, "llama3"));
    assert_null(mope_chat_name(MOPE_CHAT_COUNT));
    assert_string_equal(mope_chat_end_marker(MOPE_CHAT_CHATML), "<|im_end|>");
    assert_string_equal(mope_chat_end_marker(MOPE_CHAT_LLAMA3), "<|eot_id|>");
    assert_null(mope_chat_end_marker(MOPE_CHAT_RAW));
}

static void test_detect_strings(void **state) {
    (void)state;
    /* Abbreviated versions of the published templates' distinctive parts. */
    const char *tulu = "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + "
                       "message['content'] }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' "
                       "+ message['content'] + eos_token }}{% endif %}{% endfor %}";
    const char *llama2 = "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}";
    assert_int_equal(mope_chat_detect(tulu, strlen(tulu)), MOPE_CHAT_TULU);
    assert_int_equal(mope_chat_detect(llama2, strlen(llama2)), MOPE_CHAT_LLAMA2);
    assert_int_equal(mope_chat_detect("{{ messages }}", 14), -1);
    /* a marker cut off by len is not seen */
    const char *cm = "xx<|im_start|>";
    assert_int_equal(mope_chat_detect(cm, strlen(cm) - 1), -1);
    assert_int_equal(mope_chat_detect(cm, strlen(cm)), MOPE_CHAT_CHATML);
}

static int detect_file(const char *name, mope_error *err) {
    char path[1024];
    snprintf(path, sizeof path, "%s/testdata/tokenizers/%s", MOPE_SHARED_DIR, name);
    mope_gguf *g = mope_gguf_open(path, err);
    assert_non_null(g);
    int t = mope_chat_detect_gguf(g, MOPE_CHAT_RAW, err);
    mope_gguf_close(g);
    return t;
}

static void test_detect_real_templates(void **state) {
    (void)state;
    mope_error err = {0};
    assert_int_equal(detect_file("vocab-llama3-bpe.gguf", &err), MOPE_CHAT_LLAMA3);
    /* Qwen3's 4 kB template mentions <tool_call> and <think> too */
    assert_int_equal(detect_file("vocab-qwen-bpe.gguf", &err), MOPE_CHAT_CHATML);
    /* no chat_template key: the fallback */
    assert_int_equal(detect_file("vocab-llama-spm.gguf", &err), MOPE_CHAT_RAW);
}

static void test_detect_gguf_unknown(void **state) {
    (void)state;
    mope_error err = {0};
    mope_gguf_writer *w = mope_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mope_gguf_set_str(w, "tokenizer.chat_template", "{{ messages[0].content }}"), 0);
    void *mem = NULL;
    size_t size = 0;
    assert_int_equal(mope_gguf_writer_to_memory(w, &mem, &size, &err), 0);
    mope_gguf *g = mope_gguf_open_memory(mem, size, &err);
    assert_non_null(g);
    assert_int_equal(mope_chat_detect_gguf(g, MOPE_CHAT_TULU, &err), MOPE_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "chat template"));
    mope_gguf_close(g);
    free(mem);

    mope_gguf_writer_free(w);
    w = mope_gguf_writer_new();
    assert_int_equal(mope_gguf_set_u32(w, "tokenizer.chat_template", 5), 0);
    assert_int_equal(mope_gguf_writer_to_memory(w, &mem, &size, &err), 0);
    g = mope_gguf_open_memory(mem, size, &err);
    assert_non_null(g);
    assert_int_equal(mope_chat_detect_gguf(g, MOPE_CHAT_TULU, &err), MOPE_EFORMAT);
    mope_gguf_close(g);
    free(mem);
    mope_gguf_writer_free(w);
}

/* Formats (system, user) with template t, tokenizes it the way `mope generate
 * --chat` does (BOS as the vocab says, special tokens parsed) and compares
 * with element `idx` of the reference file, whose text is that chat prompt. */
static void check_reference(const char *vocab, const char *expected, int idx, mope_chat_template t,
                            const char *sys, const char *user) {
    char path[1024];
    mope_error err = {0};
    snprintf(path, sizeof path, "%s/testdata/tokenizers/%s", MOPE_SHARED_DIR, expected);
    void *json = NULL;
    size_t jlen = 0;
    assert_int_equal(mope_io_read_file(path, &json, &jlen, &err), 0);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    cJSON *item = cJSON_GetArrayItem(root, idx);
    cJSON *ids = cJSON_GetObjectItem(item, "ids");
    const char *ref_text = cJSON_GetStringValue(cJSON_GetObjectItem(item, "text"));
    assert_non_null(ids);
    assert_non_null(ref_text);

    snprintf(path, sizeof path, "%s/testdata/tokenizers/%s", MOPE_SHARED_DIR, vocab);
    mope_tokenizer *tok = mope_tokenizer_load(path, &err);
    assert_non_null(tok);
    char *prompt = mope_chat_format_alloc(t, sys, user, &err);
    assert_non_null(prompt);
    int32_t *got = NULL;
    int n = mope_tokenizer_encode_alloc(tok, prompt, strlen(prompt), mope_tokenizer_add_bos(tok), true, &got, &err);
    assert_int_equal(n, cJSON_GetArraySize(ids));
    for (int i = 0; i < n; i++) assert_int_equal(got[i], (int)cJSON_GetArrayItem(ids, i)->valuedouble);
    /* the reference text is BOS text + our prompt (or exactly our prompt) */
    assert_true(strlen(ref_text) >= strlen(prompt));
    const char *tail = ref_text + strlen(ref_text) - strlen(prompt);
    assert_string_equal(tail, prompt);
    free(got);
    free(prompt);
    mope_tokenizer_free(tok);
    cJSON_Delete(root);
    free(json);
}

static void test_reference_tokenizations(void **state) {
    (void)state;
    check_reference("vocab-llama3-bpe.gguf", "llama3-bpe.special.expected.json", 1, MOPE_CHAT_LLAMA3, NULL,
                    "Hi there!");
    check_reference("vocab-qwen-bpe.gguf", "qwen-bpe.special.expected.json", 0, MOPE_CHAT_CHATML,
                    "You are a helpful assistant.", "Hi there!");
    check_reference("vocab-llama-spm.gguf", "llama-spm.special.expected.json", 1, MOPE_CHAT_LLAMA2,
                    "You are a helpful assistant.", "Hi there");
}

/* Feeds the pieces through a filter for `stop` and returns everything it
 * emitted (flushing at the end); *stopped tells whether the marker was seen. */
static void run_filter(const char *stop, const char *const *pieces, char *out, size_t cap, bool *stopped) {
    mope_error err = {0};
    mope_stop_filter *f = mope_stop_filter_new(stop, &err);
    assert_non_null(f);
    size_t o = 0, len = 0;
    *stopped = false;
    for (int i = 0; pieces[i]; i++) {
        bool st = false;
        const char *b = mope_stop_filter_feed(f, pieces[i], strlen(pieces[i]), &len, &st, &err);
        assert_non_null(b);
        assert_true(o + len < cap);
        memcpy(out + o, b, len);
        o += len;
        if (st) *stopped = true;
        assert_int_equal(st, *stopped); /* once stopped, stays stopped */
    }
    const char *b = mope_stop_filter_flush(f, &len);
    assert_true(o + len < cap);
    memcpy(out + o, b, len);
    out[o + len] = 0;
    mope_stop_filter_free(f);
}

static void test_stop_filter(void **state) {
    (void)state;
    char out[256];
    bool stopped;
    /* marker split over three pieces: the text before it, nothing after */
    const char *a[] = {"Hello <|im", "_e", "nd|> ignored", "more", NULL};
    run_filter("<|im_end|>", a, out, sizeof out, &stopped);
    assert_true(stopped);
    assert_string_equal(out, "Hello ");
    /* a false start is released once it stops matching */
    const char *b[] = {"a <|im_", "start|> b", NULL};
    run_filter("<|im_end|>", b, out, sizeof out, &stopped);
    assert_false(stopped);
    assert_string_equal(out, "a <|im_start|> b");
    /* a held-back prefix at the end of the stream comes out at flush */
    const char *c[] = {"x\n<|us", NULL};
    run_filter("<|user|>", c, out, sizeof out, &stopped);
    assert_false(stopped);
    assert_string_equal(out, "x\n<|us");
    /* overlapping start: "<<|user|>" still finds the marker after the first '<' */
    const char *d[] = {"<", "<|user", "|>", NULL};
    run_filter("<|user|>", d, out, sizeof out, &stopped);
    assert_true(stopped);
    assert_string_equal(out, "<");
    /* the held-back part is only what can still begin the marker */
    mope_error err = {0};
    mope_stop_filter *f = mope_stop_filter_new("abc", &err);
    size_t len = 0;
    bool st = false;
    const char *r = mope_stop_filter_feed(f, "xxab", 4, &len, &st, &err);
    assert_int_equal(len, 2);
    assert_memory_equal(r, "xx", 2);
    r = mope_stop_filter_feed(f, "d", 1, &len, &st, &err);
    assert_int_equal(len, 3);
    assert_memory_equal(r, "abd", 3);
    mope_stop_filter_free(f);
    assert_null(mope_stop_filter_new("", &err));
    assert_int_equal(err.code, MOPE_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_truncation_and_errors),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_detect_strings),
        cmocka_unit_test(test_detect_real_templates),
        cmocka_unit_test(test_detect_gguf_unknown),
        cmocka_unit_test(test_reference_tokenizations),
        cmocka_unit_test(test_stop_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
