/* Whole-file helpers: atomic writes (temp file in the same directory, fsync,
 * rename, fsync of the directory) so a crash never leaves a half-written
 * checkpoint, and bounded whole-file reads. */
#ifndef MOPE_IO_H
#define MOPE_IO_H

#include "mope/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest file mope_io_read_file accepts (1 GiB); use mope_io_read_file_max
 * for another bound. */
#define MOPE_IO_READ_MAX ((size_t)1 << 30)

/* Write n bytes to path atomically: either the old file or the complete new
 * one is there afterwards, never a mix.  The file gets mode 0644 (umask). */
int mope_io_write_atomic(const char *path, const void *data, size_t n, mope_error *err);

/* Read a whole file into a malloc'd buffer (free with free()).  The buffer
 * has one extra NUL byte after the data, so text can be used as a C string.
 * Fails with MOPE_ERANGE when the file is larger than the bound. */
int mope_io_read_file(const char *path, void **data, size_t *n, mope_error *err);
int mope_io_read_file_max(const char *path, size_t max_bytes, void **data, size_t *n, mope_error *err);

/* Folds the contents of the file at path into *h (mope_hash64), streaming,
 * so files of any size can be fingerprinted. */
int mope_io_hash_file(const char *path, uint64_t *h, mope_error *err);

/* Streaming form of the atomic write, for outputs too large to build in
 * memory: open, write any number of times, then commit (renames into place)
 * or abort (removes the temp file).  Both commit and abort free f. */
typedef struct mope_io_atomic mope_io_atomic;
mope_io_atomic *mope_io_atomic_open(const char *path, mope_error *err);
int mope_io_atomic_write(mope_io_atomic *f, const void *data, size_t n, mope_error *err);
int mope_io_atomic_commit(mope_io_atomic *f, mope_error *err);
void mope_io_atomic_abort(mope_io_atomic *f);

#ifdef __cplusplus
}
#endif
#endif
