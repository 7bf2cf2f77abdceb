#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"

void d2o_buf_free(struct d2o_buf *b)
{
    if (!b) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void d2o_buf_reset(struct d2o_buf *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

int d2o_buf_reserve(struct d2o_buf *b, size_t extra)
{
    size_t need, cap;

    if (extra > SIZE_MAX - b->len - 1) {
        return -ENOMEM;
    }
    need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    return d2o_buf_set_cap(b, cap);
}

int d2o_buf_set_cap(struct d2o_buf *b, size_t cap)
{
    char *p;

    if (cap < b->len + 1) {
        return -EINVAL;
    }
    p = realloc(b->data, cap);
    if (!p) {
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int d2o_buf_grow_append(struct d2o_buf *b, const void *p, size_t n)
{
    int r = d2o_buf_reserve(b, n);

    if (r < 0) {
        return r;
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int d2o_buf_put_i64(struct d2o_buf *b, int64_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    /* In unsigned arithmetic, so that INT64_MIN has a magnitude. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--p = '-';
    }
    return d2o_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

int d2o_buf_vprintf(struct d2o_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, r;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return -EINVAL;
    }
    r = d2o_buf_reserve(b, (size_t)n);
    if (r < 0) {
        return r;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int d2o_buf_printf(struct d2o_buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = d2o_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

/* Ones in every byte, and the high bit of every byte. */
#define BYTES_01 0x0101010101010101ull
#define BYTES_80 0x8080808080808080ull

/*
 * Whether any of the eight bytes in w is below 0x20, '"' or '\\' (the bytes JSON escapes).
 * (x - 0x01..) & ~x & 0x80.. is nonzero exactly when a byte of x is zero, and with 0x20.. in
 * place of 0x01.. when a byte is below 0x20; bytes from 0x80 up never count (~x clears their
 * high bit).
 */
static inline bool needs_escape8(uint64_t w)
{
    uint64_t quote = w ^ (BYTES_01 * '"'), bslash = w ^ (BYTES_01 * '\\');

    return (((w - BYTES_01 * 0x20) & ~w) | ((quote - BYTES_01) & ~quote) |
            ((bslash - BYTES_01) & ~bslash)) &
           BYTES_80;
}

int d2o_buf_json_str(struct d2o_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;
    int r;

    /* Worst case every byte becomes \u00XX: reserve once, then write without checks. */
    if (n > (SIZE_MAX - 2) / 6) {
        return -ENOMEM;
    }
    r = d2o_buf_reserve(b, n * 6 + 2);
    if (r < 0) {
        return r;
    }
    b->data[b->len++] = '"';
    for (i = 0; i < n; i++) {
        unsigned char c;
        char esc = 0;

        /* eight bytes a step while none of them needs escaping */
        while (n - i >= 8) {
            uint64_t w;

            memcpy(&w, s + i, 8);
            if (needs_escape8(w)) {
                break;
            }
            i += 8;
        }
        if (i == n) {
            break;
        }
        c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        memcpy(b->data + b->len, s + run, i - run);
        b->len += i - run;
        run = i + 1;
        switch (c) {
        case '"':
            esc = '"';
            break;
        case '\\':
            esc = '\\';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\t':
            esc = 't';
            break;
        case '\b':
            esc = 'b';
            break;
        case '\f':
            esc = 'f';
            break;
        default:
            break;
        }
        if (esc) {
            b->data[b->len++] = '\\';
            b->data[b->len++] = esc;
        } else {
            memcpy(b->data + b->len, "\\u00", 4);
            b->len += 4;
            b->data[b->len++] = hex[c >> 4];
            b->data[b->len++] = hex[c & 0xf];
        }
    }
    memcpy(b->data + b->len, s + run, n - run);
    b->len += n - run;
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
    return 0;
}

void d2o_buf_truncate(struct d2o_buf *b, size_t new_len)
{
    if (new_len < b->len) {
        b->len = new_len;
        b->data[new_len] = '\0';
    }
}

char *d2o_buf_steal(struct d2o_buf *b)
{
    char *p = b->data;

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
