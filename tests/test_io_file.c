/* mope_io_hash_file: a file larger than its read chunk hashes to what a
 * plain byte-by-byte FNV-1a loop over the same bytes gives (written here
 * from the algorithm, not through mope_hash64), chained onto an earlier
 * value; a missing path is a clear error that names it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mope/io.h"

static void test_hash_file(void **state) {
    (void)state;
    enum { N = 200000 }; /* > 3 chunks of 64 KiB, the last one partial */
    unsigned char *buf = malloc(N);
    assert_non_null(buf);
    mope_rng r;
    mope_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) buf[i] = (unsigned char)mope_rng_u64(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/test_io_file_%d.bin", MOPE_BINARY_DIR, (int)getpid());
    mope_error err = {0};
    assert_int_equal(mope_io_write_atomic(path, buf, N, &err), 0);

    uint64_t want = 0xcbf29ce484222325ull;
    want = (want ^ 'x') * 0x100000001b3ull; /* the earlier value: "x" */
    for (int i = 0; i < N; i++) want = (want ^ buf[i]) * 0x100000001b3ull;
    uint64_t h = mope_hash64(MOPE_HASH64_INIT, "x", 1);
    assert_int_equal(mope_io_hash_file(path, &h, &err), 0);
    assert_true(h == want);

    unlink(path);
    h = MOPE_HASH64_INIT;
    assert_int_equal(mope_io_hash_file(path, &h, &err), MOPE_EIO);
    assert_non_null(strstr(err.msg, path));
    assert_true(h == MOPE_HASH64_INIT);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
