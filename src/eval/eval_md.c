/* GitHub-flavoured Markdown tables, padded so the raw text reads as a table
 * too (results.md is read in a terminal as often as rendered). */
#include <stdio.h>
#include <stdlib.h>

#include "mope/eval.h"

/* Characters, not bytes: UTF-8 continuation bytes do not widen a column. */
static size_t text_width(const char *s) {
    size_t w = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c & 0xc0) != 0x80) w += (c == '|') ? 2 : 1; /* '|' is written as "\|" */
    }
    return w;
}

static void put_cell(FILE *f, const char *s, size_t width, char align) {
    size_t w = text_width(s), room = w < width ? width - w : 0;
    size_t lead = align == 'r' ? room : align == 'c' ? room / 2 : 0;
    for (size_t i = 0; i < lead; i++) fputc(' ', f);
    w += lead;
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f); /* a line break would end the row */
    }
    for (; w < width; w++) fputc(' ', f);
}

char *mope_eval_md_table(const char *const *header, int n_cols, const char *const *cells, int n_rows,
                         const char *align, mope_error *err) {
    if (!header || n_cols < 1 || n_rows < 0 || (n_rows > 0 && !cells)) {
        mope_error_set(err, MOPE_EINVAL, "markdown table: need a header of >= 1 column and %s",
                       n_rows < 0 ? "a row count >= 0" : "the cells");
        return NULL;
    }
    for (int c = 0; align && c < n_cols; c++)
        if (align[c] != 'l' && align[c] != 'r' && align[c] != 'c') {
            mope_error_set(err, MOPE_EINVAL, "markdown table: column %d alignment '%c' is not l, r or c", c,
                           align[c] ? align[c] : '?');
            return NULL;
        }
    size_t *width = calloc((size_t)n_cols, sizeof *width);
    char *out = NULL;
    size_t len = 0;
    FILE *f = width ? open_memstream(&out, &len) : NULL;
    if (!f) {
        free(width);
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    for (int c = 0; c < n_cols; c++) {
        width[c] = 3; /* the alignment row needs at least "---" */
        size_t w = text_width(header[c] ? header[c] : "");
        if (w > width[c]) width[c] = w;
        for (int r = 0; r < n_rows; r++) {
            const char *s = cells[(size_t)r * (size_t)n_cols + (size_t)c];
            w = text_width(s ? s : "");
            if (w > width[c]) width[c] = w;
        }
    }
    fputc('|', f);
    for (int c = 0; c < n_cols; c++) {
        fputc(' ', f);
        put_cell(f, header[c] ? header[c] : "", width[c], 'l');
        fputs(" |", f);
    }
    fputs("\n|", f);
    for (int c = 0; c < n_cols; c++) {
        char a = align ? align[c] : 'l';
        fputc(a == 'c' ? ':' : '-', f);
        for (size_t i = 0; i < width[c]; i++) fputc('-', f);
        fputc(a == 'l' ? '-' : ':', f);
        fputc('|', f);
    }
    fputc('\n', f);
    for (int r = 0; r < n_rows; r++) {
        fputc('|', f);
        for (int c = 0; c < n_cols; c++) {
            const char *s = cells[(size_t)r * (size_t)n_cols + (size_t)c];
            fputc(' ', f);
            put_cell(f, s ? s : "", width[c], align ? align[c] : 'l');
            fputs(" |", f);
        }
        fputc('\n', f);
    }
    free(width);
    if (fclose(f) != 0) {
        free(out);
        mope_error_set(err, MOPE_ENOMEM, "out of memory");
        return NULL;
    }
    return out;
}
