/* The recipe's batched generation (recipe_generate) against the method
 * path: greedy decoding with a no-repeat 3-gram ban must give, prompt for
 * prompt, the answer that a local expert (mope_expert, as `mope generate
 * --bundle`, eval and REBEL rollouts use it) gives when the sampler's
 * history is the answer alone.  Regression test for 70d42e0: the recipe
 * passed the prompt's tokens as history too, which banned every 3-token
 * piece of the question and garbled the concept names the answers repeat.
 * The prompts are chosen so that the two histories really differ on some of
 * them (each prompt is the text of an earlier answer, so the random model's
 * greedy loops meet their own n-grams in the question), and the test
 * asserts that they do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mope/chat.h"
#include "mope/expert.h"
#include "mope/model.h"
#include "mope/sampler.h"
#include "mope/tokenizer.h"
#include "prefbench/recipe_internal.h"

enum { MAX_NEW = 24, N_PROMPTS = 12 };

/* Greedy answer to `user` through a local expert; the no-repeat ban sees the
 * answer only, or the prompt's tokens followed by the answer. */
static char *method_answer(mope_model *m, const mope_tokenizer *tok, const char *user, bool prompt_in_history) {
    mope_error err = {0};
    mope_expert_config c;
    mope_expert_config_init(&c);
    c.tokenizer = tok;
    mope_expert *e = mope_expert_local_new(m, &c, &err);
    assert_non_null(e);
    assert_int_equal(mope_expert_start(e, 0, user, &err), 0);
    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 0.0f;
    sp.no_repeat_ngram = 3;
    mope_sampler *smp = mope_sampler_new(&sp, &err);
    assert_non_null(smp);

    int32_t hist[1024];
    int np = 0;
    if (prompt_in_history) {
        char *text = mope_chat_format_alloc(MOPE_CHAT_TULU, NULL, user, &err);
        assert_non_null(text);
        np = mope_tokenizer_encode(tok, text, strlen(text), mope_tokenizer_add_bos(tok), true, hist, 1024 - MAX_NEW,
                                   &err);
        free(text);
        assert_true(np > 0);
    }
    int n = 0;
    mope_dist d = {0};
    while (n < MAX_NEW) {
        assert_int_equal(mope_expert_next(e, 0, &d, &err), 0);
        assert_int_equal(d.kind, MOPE_DIST_FULL);
        int32_t y = mope_sampler_sample(smp, d.logits, d.n_vocab, hist, np + n, &err);
        assert_true(y >= 0);
        if (mope_tokenizer_is_eog(tok, y)) break;
        hist[np + n++] = y;
        assert_int_equal(mope_expert_feed(e, 0, &y, 1, &err), 0);
    }
    mope_dist_free(&d);
    size_t len = 0;
    char *raw = mope_tokenizer_decode_alloc(tok, hist + np, n, MOPE_DECODE_STRIP_SPACE, &len, &err);
    assert_non_null(raw);
    char *s = mope_utf8_sanitize(raw, len, NULL);
    free(raw);
    mope_sampler_free(smp);
    mope_expert_free(e);
    return s;
}

static void test_greedy_matches_method_path(void **state) {
    (void)state;
    mope_error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/test_prefbench_recipe_gen_%d.gguf", MOPE_BINARY_DIR, (int)getpid());
    mope_hparams hp;
    mope_hparams_init(&hp, MOPE_ARCH_LLAMA);
    assert_int_equal(mope_model_write_random(path, &hp, MOPE_TYPE_F32, 21, NULL, &err), 0);
    mope_model *m = mope_model_load(path, &err);
    assert_non_null(m);
    mope_tokenizer *tok = mope_tokenizer_from_gguf(mope_model_gguf(m), &err);
    assert_non_null(tok);

    /* prompts: a few seeds, then each earlier answer as a new question */
    char *prompts[N_PROMPTS], *want[N_PROMPTS];
    const char *seeds[3] = {"What is a glacier?", "Explain deck chairs to me.", "the cat sat on the mat"};
    for (int i = 0; i < N_PROMPTS; i++) {
        prompts[i] = strdup(i < 3 ? seeds[i] : want[i - 3]);
        assert_non_null(prompts[i]);
        want[i] = method_answer(m, tok, prompts[i], false);
    }
    int differ = 0;
    for (int i = 0; i < N_PROMPTS; i++) {
        char *with_prompt = method_answer(m, tok, prompts[i], true);
        differ += strcmp(with_prompt, want[i]) != 0;
        free(with_prompt);
    }
    assert_true(differ > 0); /* else this test could not tell the two histories apart */

    recipe_ctx c;
    memset(&c, 0, sizeof c);
    c.n_threads = 1;
    c.sz.gen_slots = 5; /* fewer slots than jobs: slots are refilled mid-run */
    recipe_gen_job jobs[N_PROMPTS];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < N_PROMPTS; i++) jobs[i] = (recipe_gen_job){.user = prompts[i], .model = 0, .seed = 7};
    mope_sampler_params sp = mope_sampler_default_params();
    sp.temp = 0.0f;
    sp.no_repeat_ngram = 3;
    const char *models[1] = {path};
    assert_int_equal(recipe_generate(&c, path, models, 1, 0, jobs, N_PROMPTS, &sp, MAX_NEW, &err), 0);
    for (int i = 0; i < N_PROMPTS; i++) {
        assert_non_null(jobs[i].response);
        if (strcmp(jobs[i].response, want[i]) != 0)
            fail_msg("prompt %d \"%s\":\n recipe: \"%s\"\n method: \"%s\"", i, prompts[i], jobs[i].response, want[i]);
        free(jobs[i].response);
    }
    for (int i = 0; i < N_PROMPTS; i++) {
        free(prompts[i]);
        free(want[i]);
    }
    mope_tokenizer_free(tok);
    mope_model_free(m);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_method_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
