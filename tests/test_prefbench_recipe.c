/* The recipe's fixed data and argument checks (the end-to-end --tiny build
 * is tests/cli/prefbench_build.sh): the preference sentences built into the
 * recipe are exactly those of ../shared/data/preferences.json, the stage
 * list, and clear errors for a bad stage name or a missing WordNet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mope/io.h"
#include "mope/prefbench.h"
#include "prefbench/recipe_internal.h"

static void test_texts_match_shared_file(void **state) {
    (void)state;
    void *data = NULL;
    size_t n = 0;
    mope_error err = {0};
    assert_int_equal(mope_io_read_file(MOPE_SHARED_DIR "/data/preferences.json", &data, &n, &err), 0);
    cJSON *j = cJSON_ParseWithLength(data, n);
    free(data);
    assert_non_null(j);
    int seen = 0;
    const cJSON *d;
    int di = 0;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(j, "dimensions")) {
        assert_string_equal(cJSON_GetObjectItem(d, "id")->valuestring, RECIPE_DIM_ID[di]);
        assert_string_equal(cJSON_GetObjectItem(d, "name")->valuestring, RECIPE_DIM_NAME[di]);
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(d, "choices")) {
            const char *id = cJSON_GetObjectItem(c, "id")->valuestring;
            int k = mope_prefbench_choice_index(id);
            assert_true(k >= 0 && k < 6);
            assert_int_equal(k / 2, di);
            assert_string_equal(RECIPE_CHOICE[k], id);
            assert_string_equal(RECIPE_CHOICE_NAME[k], cJSON_GetObjectItem(c, "name")->valuestring);
            assert_string_equal(RECIPE_CHOICE_TEXT[k], cJSON_GetObjectItem(c, "text")->valuestring);
            seen++;
        }
        di++;
    }
    assert_int_equal(di, 3);
    assert_int_equal(seen, 6);
    cJSON_Delete(j);
}

static void test_stages(void **state) {
    (void)state;
    const char *want[] = {"corpus",   "data",    "tokenizer", "base_lm",    "base_sft", "experts",
                          "rm_trunk", "samples", "rewards",   "references", "eval",     "bundle"};
    for (int i = 0; i < 12; i++) assert_string_equal(mope_prefbench_recipe_stage(i), want[i]);
    assert_null(mope_prefbench_recipe_stage(12));
    assert_null(mope_prefbench_recipe_stage(-1));
}

static void test_bad_options(void **state) {
    (void)state;
    char dir[] = "/tmp/mope-recipe-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[256];
    snprintf(out, sizeof out, "%s/out", dir);
    mope_prefbench_recipe_opts o = {0};
    o.out_dir = out;
    o.tiny = 1;
    o.until = "tokeniser";
    mope_error err = {0};
    assert_int_equal(mope_prefbench_recipe_build(&o, &err), MOPE_EINVAL);
    assert_non_null(strstr(err.msg, "tokeniser"));
    assert_non_null(strstr(err.msg, "tokenizer")); /* lists the real names */
    o.until = NULL;
    o.wordnet_dir = "/nonexistent/wordnet";
    assert_true(mope_prefbench_recipe_build(&o, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/wordnet"));
    assert_int_equal(mope_prefbench_recipe_build(NULL, &err), MOPE_EINVAL);
    char p[300];
    snprintf(p, sizeof p, "%s.work", out);
    rmdir(p);
    rmdir(out);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_texts_match_shared_file),
        cmocka_unit_test(test_stages),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
