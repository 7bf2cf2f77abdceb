#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>

#include "d2o/util.h"

const char *d2o_strerror(int err, char *buf, size_t size)
{
    if (err < 0) {
        err = -err;
    }
    /* _GNU_SOURCE gives the GNU strerror_r, which returns the message (maybe not in buf). */
    return strerror_r(err, buf, size);
}

int d2o_parse_i64n(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t v = 0, limit;

    if (n == 0) {
        return -EINVAL;
    }
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
        if (n == 1) {
            return -EINVAL;
        }
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d;

        if (s[i] < '0' || s[i] > '9') {
            return -EINVAL;
        }
        d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
    }
    {
        int64_t r = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;

        if (r < min || r > max) {
            return -ERANGE;
        }
        *out = r;
    }
    return 0;
}

int d2o_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    return d2o_parse_i64n(s, strlen(s), min, max, out);
}

int d2o_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);

    if (size == 0) {
        return -E2BIG;
    }
    if (n >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return -E2BIG;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

bool d2o_streq_ci(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

int d2o_fmt_rfc3339_ms(int64_t epoch_us, char *buf, size_t size)
{
    struct tm tm;
    time_t secs = (time_t)(epoch_us / 1000000);
    int ms = (int)((epoch_us % 1000000) / 1000);
    int n;

    if (!gmtime_r(&secs, &tm)) {
        return -EINVAL;
    }
    n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return (n < 0 || (size_t)n >= size) ? -E2BIG : 0;
}

unsigned d2o_edit_distance(const char *a, const char *b)
{
    unsigned row[64], i, j, la = (unsigned)strlen(a), lb = (unsigned)strlen(b);

    if (la >= D2O_ARRAY_SIZE(row) || lb >= D2O_ARRAY_SIZE(row)) {
        return 255;
    }
    for (j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (i = 1; i <= la; i++) {
        unsigned diag = row[0];

        row[0] = i;
        for (j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned best = diag + (a[i - 1] != b[j - 1]);

            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            if (up + 1 < best) {
                best = up + 1;
            }
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] > 255 ? 255 : row[lb];
}

bool d2o_utf8_text(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;

    while (p < end) {
        unsigned char c = *p;
        size_t len, i;
        uint32_t cp;

        if (c == 0) {
            return false;
        }
        if (c < 0x80) {
            p++;
            continue;
        }
        len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
        if (len == 0 || (c >= 0xf0 && len != 4) || (size_t)(end - p) < len) {
            return false;
        }
        cp = c & (0x7f >> len);
        for (i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* overlong, surrogate or beyond U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        p += len;
    }
    return true;
}

void d2o_test_point(const char *name)
{
    static const char *stop_at;
    static bool read, fired;

    if (!read) {
        stop_at = getenv("D2O_TEST_STOP_AT");
        read = true;
    }
    if (stop_at && !fired && strcmp(stop_at, name) == 0) {
        fired = true;
        (void)raise(SIGSTOP);
    }
}

size_t d2o_iov_total(const struct iovec *v, size_t n)
{
    size_t i, sum = 0;

    for (i = 0; i < n; i++) {
        sum += v[i].iov_len;
    }
    return sum;
}
