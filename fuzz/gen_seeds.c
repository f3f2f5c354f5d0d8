/* Writes a few small, valid GGUF files as the fuzzing seed corpus:
 *   gen_seeds DIR */
#include <stdio.h>
#include <stdlib.h>

#include "mope/gguf.h"

static int emit(mope_gguf_writer *w, const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mope_error err = {0};
    int rc = mope_gguf_writer_write(w, path, &err);
    if (rc) fprintf(stderr, "%s: %s\n", path, err.msg);
    mope_gguf_writer_free(w);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    static uint8_t data[2048];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 13 + 1);
    int rc = 0;
    mope_error err = {0};

    mope_gguf_writer *w = mope_gguf_writer_new(); /* every scalar and array type */
    mope_gguf_set_u8(w, "u8", 1);
    mope_gguf_set_i8(w, "i8", -1);
    mope_gguf_set_u16(w, "u16", 2);
    mope_gguf_set_i16(w, "i16", -2);
    mope_gguf_set_u32(w, "u32", 3);
    mope_gguf_set_i32(w, "i32", -3);
    mope_gguf_set_u64(w, "u64", 4);
    mope_gguf_set_i64(w, "i64", -4);
    mope_gguf_set_f32(w, "f32", 0.5f);
    mope_gguf_set_f64(w, "f64", 0.25);
    mope_gguf_set_bool(w, "b", true);
    mope_gguf_set_str(w, "s", "str");
    const char *const strs[] = {"a", "", "bc"};
    mope_gguf_set_arr_str(w, "as", strs, NULL, 3);
    for (int t = 0; t <= MOPE_GGUF_F64; t++) {
        if (t == MOPE_GGUF_STRING || t == MOPE_GGUF_ARRAY) continue;
        char key[16];
        snprintf(key, sizeof key, "a%d", t);
        mope_gguf_set_arr(w, key, (mope_gguf_type)t, data, 3);
    }
    rc |= emit(w, dir, "kvs.gguf");

    w = mope_gguf_writer_new(); /* a tiny model: several tensor types, alignment 64 */
    mope_gguf_set_str(w, "general.architecture", "llama");
    mope_gguf_set_u32(w, "general.alignment", 64);
    const int64_t e1[1] = {32}, e2[2] = {32, 2}, e3[2] = {256, 1}, e4[4] = {2, 2, 2, 2};
    mope_gguf_add_tensor(w, "a", MOPE_TYPE_F32, 1, e1, data, &err);
    mope_gguf_add_tensor(w, "b", MOPE_TYPE_Q8_0, 2, e2, data, &err);
    mope_gguf_add_tensor(w, "c", MOPE_TYPE_Q4_K, 2, e3, data, &err);
    mope_gguf_add_tensor(w, "d", MOPE_TYPE_F16, 4, e4, data, &err);
    mope_gguf_add_tensor(w, "e", MOPE_TYPE_Q6_K, 2, e3, data, &err);
    rc |= emit(w, dir, "model.gguf");

    w = mope_gguf_writer_new(); /* tensors only, default alignment */
    mope_gguf_add_tensor(w, "x", MOPE_TYPE_BF16, 1, e1, data, &err);
    mope_gguf_add_tensor(w, "y", MOPE_TYPE_Q4_0, 2, e2, data, &err);
    rc |= emit(w, dir, "tensors.gguf");
    return rc ? 1 : 0;
}
