/*
 * AttributeValue images to plain JSON, and DynamoDB numbers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/document.h"

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

static int value(struct walk *w, struct json_object *av, int depth);

static int map(struct walk *w, struct json_object *m, int depth)
{
    size_t mark = w->path.len;
    bool first = true;
    int r = d2o_buf_putc(w->out, '{');

    if (depth > D2O_MAX_NESTING) {
        return fail(w, "nested deeper than DynamoDB's %d levels", D2O_MAX_NESTING);
    }
    {
        json_object_object_foreach(m, key, child)
        {
            if (r < 0) {
                break;
            }
            if (!first) {
                r = d2o_buf_putc(w->out, ',');
            }
            first = false;
            r |= d2o_buf_json_str(w->out, key, strlen(key));
            r |= d2o_buf_putc(w->out, ':');
            r |= d2o_buf_putc(&w->path, '.');
            r |= d2o_buf_puts(&w->path, key);
            if (r < 0) {
                return -ENOMEM;
            }
            r = value(w, child, depth);
            d2o_buf_truncate(&w->path, mark);
        }
    }
    if (r < 0) {
        return r;
    }
    return d2o_buf_putc(w->out, '}');
}

static int string_set(struct walk *w, struct json_object *arr, const char *type, bool numbers)
{
    size_t i, n;
    int r = 0;

    if (!json_object_is_type(arr, json_type_array)) {
        return fail(w, "%s is not an array", type);
    }
    n = json_object_array_length(arr);
    if (n == 0) {
        return fail(w, "%s is empty; DynamoDB sets always have members", type);
    }
    r = d2o_buf_putc(w->out, '[');
    for (i = 0; i < n && r == 0; i++) {
        struct json_object *m = json_object_array_get_idx(arr, i);
        char why[200];

        if (!json_object_is_type(m, json_type_string)) {
            return fail(w, "%s[%zu] is not a string", type, i);
        }
        if (i > 0) {
            r = d2o_buf_putc(w->out, ',');
        }
        if (numbers) {
            r = d2o_number_to_json(json_object_get_string(m), (size_t)json_object_get_string_len(m),
                                   w->out, why, sizeof(why));
            if (r == -EINVAL) {
                return fail(w, "%s[%zu]: %s", type, i, why);
            }
        } else {
            r = d2o_buf_json_str(w->out, json_object_get_string(m),
                                 (size_t)json_object_get_string_len(m));
        }
    }
    return r < 0 ? r : d2o_buf_putc(w->out, ']');
}

static int value(struct walk *w, struct json_object *av, int depth)
{
    struct json_object *v = NULL;
    const char *type = NULL;
    char why[200];
    int r;

    if (!json_object_is_type(av, json_type_object)) {
        return fail(w, "is not an AttributeValue object");
    }
    if (json_object_object_length(av) != 1) {
        return fail(w, "an AttributeValue has exactly one type key, this one has %d",
                    json_object_object_length(av));
    }
    {
        json_object_object_foreach(av, k, val)
        {
            type = k;
            v = val;
        }
    }
    if (strcmp(type, "S") == 0 || strcmp(type, "B") == 0) {
        if (!json_object_is_type(v, json_type_string)) {
            return fail(w, "%s value is not a string", type);
        }
        return d2o_buf_json_str(w->out, json_object_get_string(v),
                                (size_t)json_object_get_string_len(v));
    }
    if (strcmp(type, "N") == 0) {
        if (!json_object_is_type(v, json_type_string)) {
            return fail(w, "N value is not a string");
        }
        r = d2o_number_to_json(json_object_get_string(v), (size_t)json_object_get_string_len(v),
                               w->out, why, sizeof(why));
        return r == -EINVAL ? fail(w, "N %s", why) : r;
    }
    if (strcmp(type, "BOOL") == 0) {
        if (!json_object_is_type(v, json_type_boolean)) {
            return fail(w, "BOOL value is not true or false");
        }
        return d2o_buf_puts(w->out, json_object_get_boolean(v) ? "true" : "false");
    }
    if (strcmp(type, "NULL") == 0) {
        if (!json_object_is_type(v, json_type_boolean) || !json_object_get_boolean(v)) {
            return fail(w, "NULL value is not true");
        }
        return d2o_buf_puts(w->out, "null");
    }
    if (strcmp(type, "M") == 0) {
        size_t mark = w->path.len;

        if (!json_object_is_type(v, json_type_object)) {
            return fail(w, "M value is not an object");
        }
        r = d2o_buf_puts(&w->path, ".M");
        r = r < 0 ? r : map(w, v, depth + 1);
        d2o_buf_truncate(&w->path, mark);
        return r;
    }
    if (strcmp(type, "L") == 0) {
        size_t i, n, mark = w->path.len;

        if (!json_object_is_type(v, json_type_array)) {
            return fail(w, "L value is not an array");
        }
        if (depth + 1 > D2O_MAX_NESTING) {
            return fail(w, "nested deeper than DynamoDB's %d levels", D2O_MAX_NESTING);
        }
        n = json_object_array_length(v);
        r = d2o_buf_putc(w->out, '[');
        for (i = 0; i < n && r == 0; i++) {
            if (i > 0) {
                r = d2o_buf_putc(w->out, ',');
            }
            r |= d2o_buf_puts(&w->path, ".L[");
            r |= d2o_buf_put_i64(&w->path, (int64_t)i);
            r |= d2o_buf_putc(&w->path, ']');
            if (r < 0) {
                return -ENOMEM;
            }
            r = value(w, json_object_array_get_idx(v, i), depth + 1);
            d2o_buf_truncate(&w->path, mark);
        }
        return r < 0 ? r : d2o_buf_putc(w->out, ']');
    }
    if (strcmp(type, "SS") == 0 || strcmp(type, "BS") == 0) {
        return string_set(w, v, type, false);
    }
    if (strcmp(type, "NS") == 0) {
        return string_set(w, v, type, true);
    }
    return fail(w, "unknown AttributeValue type \"%.20s\"", type);
}

int d2o_image_to_json(struct json_object *image, const char *path, struct d2o_buf *out,
                      char *errstr, size_t errstr_size)
{
    struct walk w = {out, D2O_BUF_INIT, errstr, errstr_size};
    int r;

    if (!json_object_is_type(image, json_type_object)) {
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
