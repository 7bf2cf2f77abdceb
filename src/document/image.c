/*
 * AttributeValue images to plain JSON, and DynamoDB numbers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "d2o/document.h"
#include "d2o/jdoc.h"

struct number {
    bool negative;
    const char *int_digits;
    size_t int_len;
    const char *frac_digits;
    size_t frac_len;
    bool has_point;
    int64_t exp;
    bool has_exp;
    bool plain_json; /* the text already is a JSON number token */
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Splits and checks a DynamoDB number. */
static int parse_number(const char *s, size_t n, struct number *num, char *why, size_t wn)
{
    size_t i = 0, first_nz = SIZE_MAX, last_nz = 0, total, k, sig;
    int64_t order;
    bool plus = false;

    memset(num, 0, sizeof(*num));
    if (n == 0) {
        snprintf(why, wn, "empty number");
        return -EINVAL;
    }
    if (s[0] == '-' || s[0] == '+') {
        num->negative = s[0] == '-';
        plus = s[0] == '+';
        i++;
    }
    num->int_digits = s + i;
    while (i < n && is_digit(s[i])) {
        i++;
    }
    num->int_len = (size_t)(s + i - num->int_digits);
    if (i < n && s[i] == '.') {
        num->has_point = true;
        i++;
        num->frac_digits = s + i;
        while (i < n && is_digit(s[i])) {
            i++;
        }
        num->frac_len = (size_t)(s + i - num->frac_digits);
    }
    if (num->int_len + num->frac_len == 0) {
        snprintf(why, wn, "'%.*s' is not a number", (int)(n > 60 ? 60 : n), s);
        return -EINVAL;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        size_t start;

        num->has_exp = true;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) {
            eneg = s[i] == '-';
            i++;
        }
        start = i;
        while (i < n && is_digit(s[i])) {
            if (num->exp < 100000) {
                num->exp = num->exp * 10 + (s[i] - '0');
            }
            i++;
        }
        if (i == start) {
            snprintf(why, wn, "'%.*s' has an exponent without digits", (int)(n > 60 ? 60 : n), s);
            return -EINVAL;
        }
        if (eneg) {
            num->exp = -num->exp;
        }
    }
    if (i != n) {
        snprintf(why, wn, "'%.*s' is not a number", (int)(n > 60 ? 60 : n), s);
        return -EINVAL;
    }
    total = num->int_len + num->frac_len;
    for (k = 0; k < total; k++) {
        char c = k < num->int_len ? num->int_digits[k] : num->frac_digits[k - num->int_len];

        if (c != '0') {
            if (first_nz == SIZE_MAX) {
                first_nz = k;
            }
            last_nz = k;
        }
    }
    if (first_nz != SIZE_MAX) {
        sig = last_nz - first_nz + 1;
        if (sig > 38) {
            snprintf(why, wn, "'%.*s' has %zu significant digits; DynamoDB allows 38",
                     (int)(n > 60 ? 60 : n), s, sig);
            return -EINVAL;
        }
        order = (int64_t)num->int_len - (int64_t)first_nz - 1 + num->exp;
        if (order < -130 || order > 125) {
            snprintf(why, wn, "'%.*s' is outside DynamoDB's range 1E-130 to 9.99E+125",
                     (int)(n > 60 ? 60 : n), s);
            return -EINVAL;
        }
    }
    num->plain_json = !plus && num->int_len > 0 &&
                      !(num->int_len > 1 && num->int_digits[0] == '0') &&
                      !(num->has_point && num->frac_len == 0);
    return 0;
}

int d2o_number_to_json(const char *n, size_t len, struct d2o_buf *out, char *why, size_t why_size)
{
    struct number num;
    size_t k;
    int r = parse_number(n, len, &num, why, why_size);

    if (r < 0) {
        return r;
    }
    if (num.plain_json) {
        return d2o_buf_append(out, n, len);
    }
    if (num.negative) {
        r |= d2o_buf_putc(out, '-');
    }
    for (k = 0; k + 1 < num.int_len && num.int_digits[k] == '0'; k++) {
    }
    if (num.int_len == 0) {
        r |= d2o_buf_putc(out, '0');
    } else {
        r |= d2o_buf_append(out, num.int_digits + k, num.int_len - k);
    }
    if (num.frac_len > 0) {
        r |= d2o_buf_putc(out, '.');
        r |= d2o_buf_append(out, num.frac_digits, num.frac_len);
    }
    if (num.has_exp) {
        r |= d2o_buf_printf(out, "E%lld", (long long)num.exp);
    }
    return r ? -ENOMEM : 0;
}

int d2o_number_canonical(const char *n, size_t len, struct d2o_buf *out)
{
    struct number num;
    char why[128];
    char digits[80];
    size_t total, first = SIZE_MAX, last = 0, k;
    int64_t point, z;
    int r = parse_number(n, len, &num, why, sizeof(why));

    if (r < 0) {
        return r;
    }
    total = num.int_len + num.frac_len;
    for (k = 0; k < total; k++) {
        char c = k < num.int_len ? num.int_digits[k] : num.frac_digits[k - num.int_len];

        if (c != '0') {
            if (first == SIZE_MAX) {
                first = k;
            }
            last = k;
        }
    }
    if (first == SIZE_MAX) {
        return d2o_buf_putc(out, '0');
    }
    for (k = first; k <= last; k++) {
        digits[k - first] = k < num.int_len ? num.int_digits[k] : num.frac_digits[k - num.int_len];
    }
    /* Position of the decimal point relative to digits[0]. */
    point = (int64_t)num.int_len - (int64_t)first + num.exp;
    total = last - first + 1;
    if (num.negative) {
        r |= d2o_buf_putc(out, '-');
    }
    if (point <= 0) {
        r |= d2o_buf_puts(out, "0.");
        for (z = 0; z < -point; z++) {
            r |= d2o_buf_putc(out, '0');
        }
        r |= d2o_buf_append(out, digits, total);
    } else if ((size_t)point >= total) {
        r |= d2o_buf_append(out, digits, total);
        for (z = (int64_t)total; z < point; z++) {
            r |= d2o_buf_putc(out, '0');
        }
    } else {
        r |= d2o_buf_append(out, digits, (size_t)point);
        r |= d2o_buf_putc(out, '.');
        r |= d2o_buf_append(out, digits + point, total - (size_t)point);
    }
    return r ? -ENOMEM : 0;
}

/* ---- AttributeValue ---- */

struct walk {
    struct d2o_buf *out;
    struct d2o_buf path;
    char *errstr;
    size_t errstr_size;
};

static int fail(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct walk *w, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(w->errstr, w->errstr_size, "%s: %s", w->path.data ? w->path.data : "", msg);
    return -EINVAL;
}

static int value(struct walk *w, const struct d2o_jnode *av, int depth);

static bool is(const struct d2o_jnode *v, enum d2o_jtype t)
{
    return v && v->type == t;
}

static int map(struct walk *w, const struct d2o_jnode *m, int depth)
{
    size_t mark = w->path.len;
    const struct d2o_jnode *child;
    int r = d2o_buf_putc(w->out, '{');

    if (depth > D2O_MAX_NESTING) {
        return fail(w, "nested deeper than DynamoDB's %d levels", D2O_MAX_NESTING);
    }
    for (child = m->first; child && r == 0; child = child->next) {
        if (child != m->first) {
            r = d2o_buf_putc(w->out, ',');
        }
        r |= d2o_buf_json_str(w->out, child->key, child->key_len);
        r |= d2o_buf_putc(w->out, ':');
        r |= d2o_buf_putc(&w->path, '.');
        r |= d2o_buf_append(&w->path, child->key, child->key_len);
        if (r < 0) {
            return -ENOMEM;
        }
        r = value(w, child, depth);
        d2o_buf_truncate(&w->path, mark);
    }
    if (r < 0) {
        return r;
    }
    return d2o_buf_putc(w->out, '}');
}

static int string_set(struct walk *w, const struct d2o_jnode *arr, const char *type, bool numbers)
{
    const struct d2o_jnode *m;
    size_t i;
    int r = 0;

    if (!is(arr, D2O_JARRAY)) {
        return fail(w, "%s is not an array", type);
    }
    if (arr->len == 0) {
        return fail(w, "%s is empty; DynamoDB sets always have members", type);
    }
    r = d2o_buf_putc(w->out, '[');
    for (i = 0, m = arr->first; m && r == 0; i++, m = m->next) {
        char why[200];

        if (!is(m, D2O_JSTRING)) {
            return fail(w, "%s[%zu] is not a string", type, i);
        }
        if (i > 0) {
            r = d2o_buf_putc(w->out, ',');
        }
        if (numbers) {
            r = d2o_number_to_json(m->text, m->len, w->out, why, sizeof(why));
            if (r == -EINVAL) {
                return fail(w, "%s[%zu]: %s", type, i, why);
            }
        } else {
            r = d2o_buf_json_str(w->out, m->text, m->len);
        }
    }
    return r < 0 ? r : d2o_buf_putc(w->out, ']');
}

/* The AttributeValue type keys, by their bytes. */
enum av_type { AV_S, AV_N, AV_B, AV_BOOL, AV_NULL, AV_M, AV_L, AV_SS, AV_NS, AV_BS, AV_UNKNOWN };

static const char *const av_names[] = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"};

static enum av_type av_type(const char *k, size_t n)
{
    /* by length first: one comparison for the common types instead of a scan of all ten */
    switch (n) {
    case 1:
        switch (k[0]) {
        case 'S':
            return AV_S;
        case 'N':
            return AV_N;
        case 'B':
            return AV_B;
        case 'M':
            return AV_M;
        case 'L':
            return AV_L;
        }
        return AV_UNKNOWN;
    case 2:
        if (k[1] != 'S') {
            return AV_UNKNOWN;
        }
        return k[0] == 'S' ? AV_SS : k[0] == 'N' ? AV_NS : k[0] == 'B' ? AV_BS : AV_UNKNOWN;
    case 4:
        return memcmp(k, "BOOL", 4) == 0   ? AV_BOOL
               : memcmp(k, "NULL", 4) == 0 ? AV_NULL
                                           : AV_UNKNOWN;
    }
    return AV_UNKNOWN;
}

static int value(struct walk *w, const struct d2o_jnode *av, int depth)
{
    const struct d2o_jnode *v;
    enum av_type t;
    const char *type;
    char why[200];
    int r;

    if (!is(av, D2O_JOBJECT)) {
        return fail(w, "is not an AttributeValue object");
    }
    if (av->len != 1) {
        return fail(w, "an AttributeValue has exactly one type key, this one has %zu", av->len);
    }
    v = av->first;
    t = av_type(v->key, v->key_len);
    type = t == AV_UNKNOWN ? "" : av_names[t];
    switch (t) {
    case AV_S:
    case AV_B:
        if (!is(v, D2O_JSTRING)) {
            return fail(w, "%s value is not a string", type);
        }
        return d2o_buf_json_str(w->out, v->text, v->len);
    case AV_N:
        if (!is(v, D2O_JSTRING)) {
            return fail(w, "N value is not a string");
        }
        r = d2o_number_to_json(v->text, v->len, w->out, why, sizeof(why));
        return r == -EINVAL ? fail(w, "N %s", why) : r;
    case AV_BOOL:
        if (!is(v, D2O_JBOOL)) {
            return fail(w, "BOOL value is not true or false");
        }
        return d2o_buf_puts(w->out, v->boolean ? "true" : "false");
    case AV_NULL:
        if (!is(v, D2O_JBOOL) || !v->boolean) {
            return fail(w, "NULL value is not true");
        }
        return d2o_buf_puts(w->out, "null");
    case AV_M: {
        size_t mark = w->path.len;

        if (!is(v, D2O_JOBJECT)) {
            return fail(w, "M value is not an object");
        }
        r = d2o_buf_puts(&w->path, ".M");
        r = r < 0 ? r : map(w, v, depth + 1);
        d2o_buf_truncate(&w->path, mark);
        return r;
    }
    case AV_L: {
        const struct d2o_jnode *e;
        size_t i, mark = w->path.len;

        if (!is(v, D2O_JARRAY)) {
            return fail(w, "L value is not an array");
        }
        if (depth + 1 > D2O_MAX_NESTING) {
            return fail(w, "nested deeper than DynamoDB's %d levels", D2O_MAX_NESTING);
        }
        r = d2o_buf_putc(w->out, '[');
        for (i = 0, e = v->first; e && r == 0; i++, e = e->next) {
            if (i > 0) {
                r = d2o_buf_putc(w->out, ',');
            }
            r |= d2o_buf_puts(&w->path, ".L[");
            r |= d2o_buf_put_i64(&w->path, (int64_t)i);
            r |= d2o_buf_putc(&w->path, ']');
            if (r < 0) {
                return -ENOMEM;
            }
            r = value(w, e, depth + 1);
            d2o_buf_truncate(&w->path, mark);
        }
        return r < 0 ? r : d2o_buf_putc(w->out, ']');
    }
    case AV_SS:
    case AV_BS:
        return string_set(w, v, type, false);
    case AV_NS:
        return string_set(w, v, type, true);
    case AV_UNKNOWN:
        break;
    }
    return fail(w, "unknown AttributeValue type \"%.*s\"", (int)(v->key_len < 20 ? v->key_len : 20),
                v->key);
}

int d2o_image_node_to_json(const struct d2o_jnode *image, const char *path, struct d2o_buf *out,
                           char *errstr, size_t errstr_size)
{
    struct walk w = {out, D2O_BUF_INIT, errstr, errstr_size};
    int r;

    if (!is(image, D2O_JOBJECT)) {
        snprintf(errstr, errstr_size, "%s is not an object", path);
        return -EINVAL;
    }
    r = d2o_buf_puts(&w.path, path);
    if (r == 0) {
        r = map(&w, image, 0);
    }
    d2o_buf_free(&w.path);
    return r;
}
