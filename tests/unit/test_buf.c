#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o_test.h"

START_TEST(append_grows_and_terminates)
{
    struct d2o_buf b = D2O_BUF_INIT;
    int i;

    for (i = 0; i < 1000; i++) {
        ck_assert_int_eq(d2o_buf_puts(&b, "abc"), 0);
    }
    ck_assert_uint_eq(b.len, 3000);
    ck_assert_int_eq(b.data[b.len], '\0');
    ck_assert_int_eq(memcmp(b.data + 2997, "abc", 3), 0);
    d2o_buf_free(&b);
    ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(set_cap_allocates_exactly)
{
    struct d2o_buf b = D2O_BUF_INIT;

    ck_assert_int_eq(d2o_buf_set_cap(&b, 1001), 0);
    ck_assert_uint_eq(b.cap, 1001);
    ck_assert_int_eq(d2o_buf_append(&b, "abc", 3), 0);
    ck_assert_uint_eq(b.cap, 1001);                    /* no growth while it fits */
    ck_assert_int_eq(d2o_buf_set_cap(&b, 3), -EINVAL); /* below the content and its NUL */
    ck_assert_int_eq(d2o_buf_set_cap(&b, 4), 0);
    ck_assert_str_eq(b.data, "abc");
    d2o_buf_free(&b);
}
END_TEST

START_TEST(printf_appends)
{
    struct d2o_buf b = D2O_BUF_INIT;

    ck_assert_int_eq(d2o_buf_puts(&b, "x="), 0);
    ck_assert_int_eq(d2o_buf_printf(&b, "%d/%s", 42, "y"), 0);
    ck_assert_str_eq(b.data, "x=42/y");
    d2o_buf_truncate(&b, 2);
    ck_assert_str_eq(b.data, "x=");
    d2o_buf_free(&b);
}
END_TEST

START_TEST(json_string_escapes)
{
    struct d2o_buf b = D2O_BUF_INIT;
    const char in[] = "a\"b\\c\n\t\x01\x1f/\xc3\xa9";

    ck_assert_int_eq(d2o_buf_json_str(&b, in, sizeof(in) - 1), 0);
    ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/\xc3\xa9\"");
    d2o_buf_reset(&b);
    ck_assert_int_eq(d2o_buf_json_str(&b, "", 0), 0);
    ck_assert_str_eq(b.data, "\"\"");
    d2o_buf_reset(&b);
    ck_assert_int_eq(d2o_buf_json_str(&b, "a\0b", 3), 0);
    ck_assert_uint_eq(b.len, 10);
    ck_assert_int_eq(memcmp(b.data, "\"a\\u0000b\"", 10), 0);
    d2o_buf_free(&b);
}
END_TEST

/* The escape of one byte, written the plain way, for comparison. */
static size_t escape_byte(unsigned char c, char *out)
{
    switch (c) {
    case '"':
        return (size_t)snprintf(out, 7, "\\\"");
    case '\\':
        return (size_t)snprintf(out, 7, "\\\\");
    case '\n':
        return (size_t)snprintf(out, 7, "\\n");
    case '\r':
        return (size_t)snprintf(out, 7, "\\r");
    case '\t':
        return (size_t)snprintf(out, 7, "\\t");
    case '\b':
        return (size_t)snprintf(out, 7, "\\b");
    case '\f':
        return (size_t)snprintf(out, 7, "\\f");
    }
    if (c < 0x20) {
        return (size_t)snprintf(out, 7, "\\u%04x", c);
    }
    out[0] = (char)c;
    return 1;
}

/* Every byte value at every position of strings of 1 to 19 bytes (the escape scan reads eight
 * bytes a step), amid plain ASCII and amid UTF-8 bytes, one and two special bytes per string. */
START_TEST(json_string_every_byte_everywhere)
{
    static const unsigned char fills[] = {'a', 0xc3, 0x7f, 0x20};
    struct d2o_buf b = D2O_BUF_INIT;
    char in[20], want[20 * 6 + 3];
    size_t f, len, at, at2, k, i;
    unsigned c;

    for (f = 0; f < sizeof(fills); f++) {
        for (len = 1; len < sizeof(in); len++) {
            for (at = 0; at < len; at++) {
                for (at2 = at; at2 < len; at2 += 7) {
                    for (c = 0; c < 256; c++) {
                        memset(in, fills[f], len);
                        in[at] = (char)c;
                        if (at2 != at) {
                            in[at2] = (char)(c ^ 0x5c);
                        }
                        k = 0;
                        want[k++] = '"';
                        for (i = 0; i < len; i++) {
                            k += escape_byte((unsigned char)in[i], want + k);
                        }
                        want[k++] = '"';
                        d2o_buf_reset(&b);
                        if (d2o_buf_json_str(&b, in, len) != 0 || b.len != k ||
                            memcmp(b.data, want, k) != 0 || b.data[k] != '\0') {
                            ck_abort_msg("byte 0x%02x at %zu (and 0x%02x at %zu) of %zu bytes "
                                         "of 0x%02x: \"%s\", not \"%.*s\"",
                                         c, at, c ^ 0x5c, at2, len, fills[f], b.data, (int)k, want);
                        }
                    }
                }
            }
        }
    }
    d2o_buf_free(&b);
}
END_TEST

/* Single characters and short appends land right at the buffer's end as it fills and grows. */
START_TEST(putc_and_append_at_every_length)
{
    struct d2o_buf b = D2O_BUF_INIT;
    char want[3000];
    size_t i;

    for (i = 0; i < 1000; i++) {
        want[3 * i] = (char)('a' + i % 26);
        want[3 * i + 1] = 'x';
        want[3 * i + 2] = 'y';
        ck_assert_int_eq(d2o_buf_putc(&b, want[3 * i]), 0);
        ck_assert_int_eq(d2o_buf_append(&b, "xy", 2), 0);
        ck_assert_int_eq(d2o_buf_append(&b, "", 0), 0);
        ck_assert_uint_eq(b.len, 3 * i + 3);
        ck_assert_uint_lt(b.len, b.cap);
        ck_assert_int_eq(b.data[b.len], '\0');
        ck_assert_int_eq(memcmp(b.data, want, b.len), 0);
    }
    d2o_buf_free(&b);
    ck_assert_int_eq(d2o_buf_append(&b, "", 0), 0);
    ck_assert_ptr_nonnull(b.data);
    ck_assert_str_eq(b.data, "");
    d2o_buf_free(&b);
}
END_TEST

START_TEST(steal_hands_over)
{
    struct d2o_buf b = D2O_BUF_INIT;
    char *p;

    ck_assert_int_eq(d2o_buf_puts(&b, "hello"), 0);
    p = d2o_buf_steal(&b);
    ck_assert_str_eq(p, "hello");
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    free(p);
}
END_TEST

START_TEST(reserve_refuses_overflow)
{
    struct d2o_buf b = D2O_BUF_INIT;

    ck_assert_int_eq(d2o_buf_puts(&b, "x"), 0);
    ck_assert_int_eq(d2o_buf_reserve(&b, SIZE_MAX), -ENOMEM);
    ck_assert_str_eq(b.data, "x");
    d2o_buf_free(&b);
}
END_TEST

START_TEST(put_i64_matches_printf)
{
    static const int64_t vals[] = {0, 1, -1, 9, 10, -10, 1764633600000000LL, INT64_MAX, INT64_MIN};
    struct d2o_buf got = D2O_BUF_INIT, want = D2O_BUF_INIT;
    size_t i;

    for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        ck_assert_int_eq(d2o_buf_puts(&got, ","), 0);
        ck_assert_int_eq(d2o_buf_put_i64(&got, vals[i]), 0);
        ck_assert_int_eq(d2o_buf_printf(&want, ",%lld", (long long)vals[i]), 0);
    }
    ck_assert_str_eq(got.data, want.data);
    ck_assert_str_eq(got.data, ",0,1,-1,9,10,-10,1764633600000000,9223372036854775807,"
                               "-9223372036854775808");
    d2o_buf_free(&got);
    d2o_buf_free(&want);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("buf");

    tcase_add_test(tc, append_grows_and_terminates);
    tcase_add_test(tc, printf_appends);
    tcase_add_test(tc, set_cap_allocates_exactly);
    tcase_add_test(tc, json_string_escapes);
    tcase_add_test(tc, json_string_every_byte_everywhere);
    tcase_add_test(tc, putc_and_append_at_every_length);
    tcase_add_test(tc, steal_hands_over);
    tcase_add_test(tc, reserve_refuses_overflow);
    tcase_add_test(tc, put_i64_matches_printf);
    suite_add_tcase(s, tc);
    return s;
}
