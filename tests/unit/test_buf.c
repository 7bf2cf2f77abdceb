#include <errno.h>
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
    tcase_add_test(tc, json_string_escapes);
    tcase_add_test(tc, steal_hands_over);
    tcase_add_test(tc, reserve_refuses_overflow);
    tcase_add_test(tc, put_i64_matches_printf);
    suite_add_tcase(s, tc);
    return s;
}
