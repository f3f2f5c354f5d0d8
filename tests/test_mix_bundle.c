/* Bundle manifests: a valid manifest parses with its paths resolved against
 * the manifest's folder; each kind of bad manifest is refused with a message
 * naming the field; save writes relative paths and loads back identically;
 * the preference prompt is the instruction plus the sentences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mope/bundle.h"

static const char *VALID =
    "{\"format\": \"mope-bundle\", \"version\": 1, \"name\": \"t\",\n"
    " \"tokenizer\": \"tok.gguf\", \"template\": \"tulu\", \"base\": \"base.gguf\",\n"
    " \"preferences\": {\"dimensions\": [\n"
    "   {\"id\": \"P1\", \"name\": \"expertise\", \"choices\": [\n"
    "     {\"id\": \"P1A\", \"name\": \"elementary\", \"text\": \"Be simple.\"},\n"
    "     {\"id\": \"P1B\", \"name\": \"expert\", \"text\": \"Be expert.\"}]},\n"
    "   {\"id\": \"P2\", \"choices\": [\n"
    "     {\"id\": \"P2A\", \"text\": \"Be short.\"}, {\"id\": \"P2B\", \"text\": \"Be long.\"}]}]},\n"
    " \"experts\": [\n"
    "   {\"id\": \"e1\", \"choice\": \"P1A\", \"dimension\": \"P1\", \"adapter\": \"experts/P1A.gguf\"},\n"
    "   {\"id\": \"e2\", \"choice\": \"P2B\", \"model\": \"/abs/P2B.gguf\", \"preference_text\": \"Long!\"}],\n"
    " \"reward_models\": [{\"choice\": \"P1A\", \"path\": \"rm/P1A.gguf\"}],\n"
    " \"references\": \"refs.jsonl\", \"pcm\": null, \"info\": {\"k\": [1, 2]}}\n";

static mope_bundle *parse(const char *json, mope_error *err) {
    return mope_bundle_parse(json, strlen(json), "/models/x", "test.json", MOPE_BUNDLE_NO_FILE_CHECK, err);
}

static void test_valid(void **state) {
    (void)state;
    mope_error err = {0};
    mope_bundle *b = parse(VALID, &err);
    assert_non_null(b);
    assert_string_equal(b->name, "t");
    assert_string_equal(b->tokenizer, "/models/x/tok.gguf");
    assert_string_equal(b->base, "/models/x/base.gguf");
    assert_int_equal(b->template_id, MOPE_CHAT_TULU);
    assert_int_equal(b->n_dimensions, 2);
    assert_int_equal(b->n_choices, 4);
    assert_string_equal(b->dimensions[1].id, "P2");
    assert_null(b->dimensions[1].name);
    assert_int_equal(b->dimensions[1].first_choice, 2);
    assert_int_equal(b->dimensions[1].n_choices, 2);
    assert_int_equal(b->choices[3].dimension, 1);
    assert_string_equal(b->choices[1].text, "Be expert.");
    assert_int_equal(b->n_experts, 2);
    assert_string_equal(b->experts[0].adapter, "/models/x/experts/P1A.gguf");
    assert_null(b->experts[0].model);
    assert_string_equal(b->experts[1].model, "/abs/P2B.gguf"); /* absolute paths stay */
    assert_int_equal(b->experts[1].choice_index, 3);
    assert_string_equal(b->experts[1].preference_text, "Long!");
    assert_int_equal(b->n_rewards, 1);
    assert_string_equal(b->rewards[0].path, "/models/x/rm/P1A.gguf");
    assert_string_equal(b->references, "/models/x/refs.jsonl");
    assert_null(b->pcm);
    assert_null(b->multitask);
    assert_string_equal(b->info_json, "{\"k\":[1,2]}");
    assert_int_equal(mope_bundle_choice_index(b, "P2A"), 2);
    assert_int_equal(mope_bundle_choice_index(b, "P9Z"), -1);
    assert_int_equal(mope_bundle_find_expert(b, "e2"), 1);
    assert_int_equal(mope_bundle_find_expert(b, "P1A"), 0); /* by the choice it serves */
    assert_int_equal(mope_bundle_find_expert(b, "P1B"), -1);
    assert_int_equal(mope_bundle_find_reward(b, "P1A"), 0);
    assert_int_equal(mope_bundle_find_reward(b, "P2A"), -1);

    const char *two[] = {"P1B", "P2A"};
    char *p = mope_bundle_prompt(b, "What is a glacier?", two, 2, &err);
    assert_non_null(p);
    assert_string_equal(p, "What is a glacier? Be expert. Be short.");
    free(p);
    p = mope_bundle_prompt(b, "Hi", NULL, 0, &err);
    assert_string_equal(p, "Hi");
    free(p);
    const char *same[] = {"P1A", "P1B"};
    assert_null(mope_bundle_prompt(b, "x", same, 2, &err));
    assert_non_null(strstr(err.msg, "same dimension"));
    const char *bad[] = {"P4A"};
    assert_null(mope_bundle_prompt(b, "x", bad, 1, &err));
    assert_non_null(strstr(err.msg, "P4A"));
    mope_bundle_free(b);
}

/* Replaces the first occurrence of `from` in VALID by `to` and expects a
 * parse error whose message contains every one of the needles. */
static void expect_bad(const char *from, const char *to, const char *needle1, const char *needle2) {
    const char *at = strstr(VALID, from);
    assert_non_null(at);
    size_t n = strlen(VALID) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%.*s%s%s", (int)(at - VALID), VALID, to, at + strlen(from));
    mope_error err = {0};
    mope_bundle *b = parse(s, &err);
    if (b) fail_msg("accepted a bad manifest: %s", s);
    assert_int_not_equal(err.code, 0);
    if (!strstr(err.msg, needle1)) fail_msg("message '%s' lacks '%s'", err.msg, needle1);
    if (needle2 && !strstr(err.msg, needle2)) fail_msg("message '%s' lacks '%s'", err.msg, needle2);
    assert_non_null(strstr(err.msg, "test.json"));
    free(s);
}

static void test_errors(void **state) {
    (void)state;
    expect_bad("\"version\": 1,", "\"version\": 1", "malformed JSON", NULL);
    expect_bad("\"version\": 1", "\"version\": 2", "version", "not supported");
    expect_bad("\"mope-bundle\"", "\"other\"", "format", NULL);
    expect_bad("\"tokenizer\": \"tok.gguf\", ", "", "tokenizer", "missing");
    expect_bad("\"tokenizer\": \"tok.gguf\"", "\"tokenizer\": 3", "tokenizer", "string");
    expect_bad("\"tulu\"", "\"klingon\"", "template", NULL);
    expect_bad("\"adapter\": \"experts", "\"adpater\": \"experts", "experts[0]", "adpater");
    expect_bad("\"choice\": \"P1A\", \"dimension\"", "\"choice\": \"P4A\", \"dimension\"", "experts[0].choice",
               "P4A");
    expect_bad("\"id\": \"e2\"", "\"id\": \"e1\"", "experts[1]", "duplicate expert");
    expect_bad("\"model\": \"/abs/P2B.gguf\"", "\"model\": \"/abs/P2B.gguf\", \"adapter\": \"a.gguf\"",
               "experts[1]", "exactly one");
    expect_bad("\"model\": \"/abs/P2B.gguf\", ", "", "experts[1]", "exactly one");
    expect_bad("\"dimension\": \"P1\"", "\"dimension\": \"P2\"", "experts[0].dimension", "P1");
    expect_bad("[{\"choice\": \"P1A\", \"path\": \"rm/P1A.gguf\"}]",
               "[{\"choice\": \"P1A\", \"path\": \"a\"}, {\"choice\": \"P1A\", \"path\": \"b\"}]", "reward_models[1]",
               "second reward model");
    expect_bad("{\"choice\": \"P1A\", \"path\"", "{\"choice\": \"P3A\", \"path\"", "reward_models[0].choice", "P3A");
    expect_bad("{\"id\": \"P2A\", \"text\"", "{\"id\": \"P1A\", \"text\"", "P1A", "declared twice");
    expect_bad("\"text\": \"Be long.\"", "\"txt\": \"Be long.\"", "choices[1]", "txt");
    expect_bad("\"name\": \"t\"", "\"name\": \"t\", \"bogus\": 1", "unknown key", "bogus");
    expect_bad("\"base\": \"base.gguf\",", "", "experts[0]", "needs \"base\"");

    mope_error err = {0};
    assert_null(mope_bundle_parse("[1]", 3, NULL, "arr.json", 0, &err));
    assert_non_null(strstr(err.msg, "object"));
    assert_null(mope_bundle_load("/nonexistent/bundle.json", 0, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/bundle.json"));
}

static void touch(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

static void test_files_and_roundtrip(void **state) {
    (void)state;
    char dir[] = "/tmp/mope-bundle-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/experts", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof sub, "%s/rm", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    mope_error err = {0};
    /* parsed against dir, with the file check: each missing file is named */
    mope_bundle *b = mope_bundle_parse(VALID, strlen(VALID), dir, "v.json", 0, &err);
    assert_null(b);
    assert_non_null(strstr(err.msg, "tokenizer"));
    assert_non_null(strstr(err.msg, "tok.gguf"));
    touch(dir, "tok.gguf");
    touch(dir, "base.gguf");
    b = mope_bundle_parse(VALID, strlen(VALID), dir, "v.json", 0, &err);
    assert_null(b);
    assert_non_null(strstr(err.msg, "experts[0].adapter"));
    touch(dir, "experts/P1A.gguf");
    b = mope_bundle_parse(VALID, strlen(VALID), dir, "v.json", 0, &err);
    assert_null(b);
    assert_non_null(strstr(err.msg, "experts[1].model")); /* /abs/P2B.gguf does not exist */
    b = mope_bundle_parse(VALID, strlen(VALID), dir, "v.json", MOPE_BUNDLE_NO_FILE_CHECK, &err);
    assert_non_null(b);
    /* make expert 2 a file inside the folder, then save and load back */
    free(b->experts[1].model);
    char p[1024];
    snprintf(p, sizeof p, "%s/experts/P2B.gguf", dir);
    b->experts[1].model = strdup(p);
    touch(dir, "experts/P2B.gguf");
    touch(dir, "rm/P1A.gguf");
    assert_int_equal(mope_bundle_save(b, p, 0, &err), MOPE_EIO); /* refs.jsonl still missing */
    assert_non_null(strstr(err.msg, "references"));
    touch(dir, "refs.jsonl");
    char path[1024];
    snprintf(path, sizeof path, "%s/bundle.json", dir);
    assert_int_equal(mope_bundle_save(b, path, 0, &err), 0);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "tokenizer")->valuestring, "tok.gguf");
    cJSON *e1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "experts"), 1);
    assert_string_equal(cJSON_GetObjectItem(e1, "model")->valuestring, "experts/P2B.gguf");
    assert_string_equal(cJSON_GetObjectItem(e1, "dimension")->valuestring, "P2");
    cJSON_Delete(j);

    mope_bundle *c = mope_bundle_load(path, 0, &err);
    assert_non_null(c);
    assert_string_equal(c->dir, dir);
    assert_string_equal(c->experts[1].model, b->experts[1].model);
    assert_string_equal(c->experts[0].adapter, b->experts[0].adapter);
    assert_string_equal(c->rewards[0].path, b->rewards[0].path);
    assert_string_equal(c->choices[3].text, "Be long.");
    assert_string_equal(c->info_json, "{\"k\":[1,2]}");
    assert_int_equal(c->n_choices, b->n_choices);
    mope_bundle_free(c);
    mope_bundle_free(b);

    /* a removed file is caught at load time */
    snprintf(p, sizeof p, "%s/rm/P1A.gguf", dir);
    assert_int_equal(unlink(p), 0);
    assert_null(mope_bundle_load(path, 0, &err));
    assert_non_null(strstr(err.msg, "reward_models[0].path"));
    const char *files[] = {"tok.gguf", "base.gguf", "experts/P1A.gguf", "experts/P2B.gguf", "refs.jsonl",
                           "bundle.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/experts", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/rm", dir);
    rmdir(p);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_files_and_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
