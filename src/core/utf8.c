#include "mope/core.h"

#include <stdlib.h>

/* Length of the well-formed sequence at s[0..n) (1..4), or 0 if ill-formed
 * (Unicode 15, table 3-7: no overlongs, no surrogates, nothing above
 * U+10FFFF). */
static size_t seq_len(const unsigned char *s, size_t n) {
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    size_t k;
    unsigned char lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) k = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        k = 3;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        k = 4;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return k;
}

bool mope_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = seq_len(u + i, len - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

char *mope_utf8_sanitize(const char *s, size_t len, size_t *out_len) {
    /* each bad byte becomes 3 bytes at most */
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(3 * len + 1);
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = seq_len(u + i, len - i);
        if (k) {
            memcpy(out + o, u + i, k);
            o += k;
            i += k;
        } else {
            out[o++] = (char)0xef;
            out[o++] = (char)0xbf;
            out[o++] = (char)0xbd;
            i++;
        }
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}
