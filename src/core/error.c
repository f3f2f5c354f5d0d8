#include "mope/core.h"

#include <stdarg.h>
#include <stdio.h>

int mope_error_set(mope_error *err, int code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int mope_error_prefix(mope_error *err, const char *fmt, ...) {
    if (!err) return MOPE_EINVAL;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation of very long messages is acceptable; build it by hand so
     * the compiler's truncation warning does not fire. */
    size_t lp = strnlen(prefix, sizeof prefix), cap = sizeof err->msg - 1, k = 0;
    for (size_t i = 0; i < lp && k < cap; i++) err->msg[k++] = prefix[i];
    for (const char *s = ": "; *s && k < cap; s++) err->msg[k++] = *s;
    for (size_t i = 0; i < sizeof old && old[i] && k < cap; i++) err->msg[k++] = old[i];
    err->msg[k] = 0;
    return err->code;
}

const char *mope_error_code_name(int code) {
    switch (code) {
    case MOPE_OK: return "ok";
    case MOPE_EINVAL: return "invalid input";
    case MOPE_EIO: return "i/o error";
    case MOPE_ENOMEM: return "out of memory";
    case MOPE_EFORMAT: return "bad format";
    case MOPE_EUNSUPPORTED: return "unsupported";
    case MOPE_ERANGE: return "out of range";
    case MOPE_ESTATE: return "bad state";
    default: return "error";
    }
}
