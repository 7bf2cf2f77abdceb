/*
 * d2o_buf: a growable byte buffer, the one way ddb2os builds request bodies, NDJSON and messages.
 *
 * The buffer is always NUL-terminated after its content, so data can be passed to C string APIs
 * when the content has no NUL bytes. A buffer that failed to grow keeps its old content and
 * reports -ENOMEM; callers propagate it.
 */
#ifndef D2O_BUF_H
#define D2O_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct d2o_buf {
    char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
};

#define D2O_BUF_INIT                                                                               \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Releases the memory and resets the buffer to empty. NULL-safe. */
void d2o_buf_free(struct d2o_buf *b);
/* Keeps the memory, empties the content. */
void d2o_buf_reset(struct d2o_buf *b);
/* Ensures room for extra more bytes plus the terminating NUL. */
__attribute__((warn_unused_result)) int d2o_buf_reserve(struct d2o_buf *b, size_t extra);
/* Makes the allocation exactly cap bytes (at least len + 1: -EINVAL otherwise), for a buffer
 * whose final size is known. */
__attribute__((warn_unused_result)) int d2o_buf_set_cap(struct d2o_buf *b, size_t cap);
/* Appending grows the buffer out of line (d2o_buf_grow_append) only when the bytes do not fit:
 * the common case, on every record's document and action line, is inline. */
__attribute__((warn_unused_result)) int d2o_buf_grow_append(struct d2o_buf *b, const void *p,
                                                            size_t n);

__attribute__((warn_unused_result)) static inline int d2o_buf_append(struct d2o_buf *b,
                                                                     const void *p, size_t n)
{
    if (b->cap - b->len <= n) { /* cap >= len + 1 whenever data is set; 0 - 0 when not */
        return d2o_buf_grow_append(b, p, n);
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

__attribute__((warn_unused_result)) static inline int d2o_buf_puts(struct d2o_buf *b, const char *s)
{
    return d2o_buf_append(b, s, strlen(s));
}

__attribute__((warn_unused_result)) static inline int d2o_buf_putc(struct d2o_buf *b, char c)
{
    if (b->cap - b->len <= 1) {
        return d2o_buf_grow_append(b, &c, 1);
    }
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return 0;
}
__attribute__((warn_unused_result, format(printf, 2, 3))) int d2o_buf_printf(struct d2o_buf *b,
                                                                             const char *fmt, ...);
__attribute__((warn_unused_result, format(printf, 2, 0))) int
d2o_buf_vprintf(struct d2o_buf *b, const char *fmt, va_list ap);
/* Appends v in decimal, as printf's "%lld" writes it, without going through printf. */
__attribute__((warn_unused_result)) int d2o_buf_put_i64(struct d2o_buf *b, int64_t v);
/* Appends s (n bytes) as a quoted JSON string, escaping per RFC 8259. Bytes >= 0x80 pass through.
 */
__attribute__((warn_unused_result)) int d2o_buf_json_str(struct d2o_buf *b, const char *s,
                                                         size_t n);
/* Drops bytes from the end so that len becomes new_len (no-op if new_len >= len). */
void d2o_buf_truncate(struct d2o_buf *b, size_t new_len);
/* Hands the memory to the caller (who frees it with free()) and empties the buffer. */
char *d2o_buf_steal(struct d2o_buf *b);

#endif
