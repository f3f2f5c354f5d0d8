/* Atomic file writes and bounded whole-file reads. */
#include "mope/io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct mope_io_atomic {
    int fd;
    char *path;
    char *tmp;
};

mope_io_atomic *mope_io_atomic_open(const char *path, mope_error *err) {
    if (!path || !*path) {
        mope_error_set(err, MOPE_EINVAL, "empty output path");
        return NULL;
    }
    mope_io_atomic *f = calloc(1, sizeof *f);
    size_t len = strlen(path);
    if (f) {
        f->path = strdup(path);
        f->tmp = malloc(len + sizeof ".tmp.XXXXXX");
    }
    if (!f || !f->path || !f->tmp) {
        if (f) { free(f->path); free(f->tmp); free(f); }
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(f->tmp, path, len);
    memcpy(f->tmp + len, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    /* The temp file lives next to the target so rename() stays within one
     * file system and is atomic. */
    f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        mope_error_set(err, MOPE_EIO, "%s: cannot create temporary file: %s", path, strerror(errno));
        free(f->path); free(f->tmp); free(f);
        return NULL;
    }
    /* mkstemp creates 0600; outputs should be readable like any file. */
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(f->fd, 0666 & ~um);
    return f;
}

int mope_io_atomic_write(mope_io_atomic *f, const void *data, size_t n, mope_error *err) {
    const char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return mope_error_set(err, MOPE_EIO, "%s: write failed: %s", f->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void mope_io_atomic_abort(mope_io_atomic *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    free(f);
}

static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        /* Best effort: some file systems refuse fsync on directories. */
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

int mope_io_atomic_commit(mope_io_atomic *f, mope_error *err) {
    int rc = 0;
    if (fsync(f->fd) != 0) {
        rc = mope_error_set(err, MOPE_EIO, "%s: fsync failed: %s", f->path, strerror(errno));
    } else {
        int cr = close(f->fd);
        f->fd = -1;
        if (cr != 0)
            rc = mope_error_set(err, MOPE_EIO, "%s: close failed: %s", f->path, strerror(errno));
        else if (rename(f->tmp, f->path) != 0)
            rc = mope_error_set(err, MOPE_EIO, "%s: rename from %s failed: %s", f->path, f->tmp, strerror(errno));
    }
    if (rc) {
        mope_io_atomic_abort(f);
        return rc;
    }
    fsync_dir_of(f->path);
    free(f->path);
    free(f->tmp);
    free(f);
    return 0;
}

int mope_io_write_atomic(const char *path, const void *data, size_t n, mope_error *err) {
    if (!data && n) return mope_error_set(err, MOPE_EINVAL, "NULL data of %zu bytes", n);
    mope_io_atomic *f = mope_io_atomic_open(path, err);
    if (!f) return err ? err->code : MOPE_EIO;
    int rc = mope_io_atomic_write(f, data, n, err);
    if (rc) {
        mope_io_atomic_abort(f);
        return rc;
    }
    return mope_io_atomic_commit(f, err);
}

int mope_io_read_file_max(const char *path, size_t max_bytes, void **data, size_t *n, mope_error *err) {
    *data = NULL;
    *n = 0;
    if (max_bytes > SIZE_MAX / 4) max_bytes = SIZE_MAX / 4; /* keep max_bytes + 1 and cap * 2 from wrapping */
    if (!path) return mope_error_set(err, MOPE_EINVAL, "NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mope_error_set(err, MOPE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mope_error_set(err, MOPE_EIO, "%s: stat failed: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return mope_error_set(err, MOPE_EIO, "%s: is a directory", path);
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_bytes) {
        close(fd);
        return mope_error_set(err, MOPE_ERANGE, "%s: file of %lld bytes exceeds the limit of %zu bytes", path,
                              (long long)st.st_size, max_bytes);
    }
    /* Size hint from stat, but read to EOF: pipes report 0 and files may grow. */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        if (len == cap - 1) {
            if (len >= max_bytes) {
                /* One more byte would exceed the bound: probe for EOF. */
                char probe;
                ssize_t r = read(fd, &probe, 1);
                if (r > 0) rc = mope_error_set(err, MOPE_ERANGE, "%s: file exceeds the limit of %zu bytes", path, max_bytes);
                else if (r < 0) rc = mope_error_set(err, MOPE_EIO, "%s: read failed: %s", path, strerror(errno));
                break;
            }
            size_t ncap = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = mope_error_set(err, MOPE_EIO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    if (!buf) return mope_error_set(err, MOPE_ENOMEM, "%s: out of memory reading the file", path);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = 0;
    *data = buf;
    *n = len;
    return 0;
}

int mope_io_read_file(const char *path, void **data, size_t *n, mope_error *err) {
    return mope_io_read_file_max(path, MOPE_IO_READ_MAX, data, n, err);
}

int mope_io_hash_file(const char *path, uint64_t *h, mope_error *err) {
    if (!path || !h) return mope_error_set(err, MOPE_EINVAL, "NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mope_error_set(err, MOPE_EIO, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc(CHUNK);
    int rc = buf ? 0 : mope_error_set(err, MOPE_ENOMEM, "out of memory");
    while (!rc) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = mope_error_set(err, MOPE_EIO, "%s: read failed: %s", path, strerror(errno));
        if (r <= 0) break;
        *h = mope_hash64(*h, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    return rc;
}
