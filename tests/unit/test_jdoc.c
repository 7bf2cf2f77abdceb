/* The record path's JSON document: what it keeps, what it refuses, and that it reuses memory. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/buf.h"
#include "d2o/jdoc.h"
#include "d2o_test.h"

static const struct d2o_jnode *parse_ok(struct d2o_jdoc *d, const char *s)
{
    char err[256] = "";
    int r = d2o_jdoc_parse(d, s, strlen(s), err, sizeof(err));

    ck_assert_msg(r == 0, "%s: %s", s, err);
    ck_assert_ptr_nonnull(d2o_jdoc_root(d));
    return d2o_jdoc_root(d);
}

static void parse_bad(struct d2o_jdoc *d, const char *s, size_t len, enum d2o_jdoc_error kind,
                      const char *reason, size_t offset)
{
    char err[256] = "";

    ck_assert_int_eq(d2o_jdoc_parse(d, s, len, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, reason) != NULL, "%s: got '%s', want '%s'", s, err, reason);
    ck_assert_int_eq(d2o_jdoc_error_kind(d), kind);
    ck_assert_uint_eq(d2o_jdoc_error_offset(d), offset);
    ck_assert_ptr_null(d2o_jdoc_root(d));
}

static bool text_is(const struct d2o_jnode *n, const char *s)
{
    return n && n->len == strlen(s) && memcmp(n->text, s, n->len) == 0;
}

START_TEST(every_type_in_order)
{
    static const char in[] = "{\"n\":null,\"t\":true,\"f\":false,\"num\":-1.50E+3,\"s\":\"abc\","
                             "\"a\":[1,\"x\",[]],\"o\":{\"z\":0,\"y\":1}}";
    struct d2o_jdoc *d = d2o_jdoc_new(8);
    const struct d2o_jnode *root = parse_ok(d, in), *m;
    static const char *const keys[] = {"n", "t", "f", "num", "s", "a", "o"};
    size_t i;

    ck_assert_int_eq(root->type, D2O_JOBJECT);
    ck_assert_uint_eq(root->len, 7);
    for (i = 0, m = root->first; m; i++, m = m->next) {
        ck_assert_uint_eq(m->key_len, strlen(keys[i]));
        ck_assert_int_eq(memcmp(m->key, keys[i], m->key_len), 0);
    }
    ck_assert_uint_eq(i, 7);
    ck_assert_int_eq(d2o_jnode_get(root, "n")->type, D2O_JNULL);
    ck_assert(d2o_jnode_get(root, "t")->boolean);
    ck_assert(!d2o_jnode_get(root, "f")->boolean);
    /* the number's text exactly as received */
    ck_assert(text_is(d2o_jnode_get(root, "num"), "-1.50E+3"));
    ck_assert(!d2o_jnode_is_integer(d2o_jnode_get(root, "num")));
    ck_assert(d2o_jnode_double(d2o_jnode_get(root, "num")) == -1500.0);
    ck_assert(d2o_jnode_str_eq(d2o_jnode_get(root, "s"), "abc"));
    m = d2o_jnode_get(root, "a");
    ck_assert_int_eq(m->type, D2O_JARRAY);
    ck_assert_uint_eq(m->len, 3);
    ck_assert(text_is(m->first, "1"));
    ck_assert(d2o_jnode_str_eq(m->first->next, "x"));
    ck_assert_int_eq(m->first->next->next->type, D2O_JARRAY);
    ck_assert_uint_eq(m->first->next->next->len, 0);
    ck_assert_ptr_null(m->first->key);
    ck_assert_ptr_null(d2o_jnode_get(root, "missing"));
    ck_assert_ptr_null(d2o_jnode_get(m, "x")); /* not an object */
    ck_assert(text_is(d2o_jnode_get(d2o_jnode_get(root, "o"), "y"), "1"));
    d2o_jdoc_free(d);
}
END_TEST

START_TEST(strings_point_into_the_input_unless_unescaped)
{
    static const char in[] = "{\"plain\":\"abc\",\"esc\\u0041\":\"a\\nb\\u00e9\\ud83d\\ude00\","
                             "\"nul\":\"x\\u0000y\"}";
    struct d2o_jdoc *d = d2o_jdoc_new(4);
    const struct d2o_jnode *root = parse_ok(d, in), *m;

    m = d2o_jnode_get(root, "plain");
    ck_assert(m->text >= in && m->text < in + sizeof(in));
    ck_assert(m->key >= in && m->key < in + sizeof(in));
    m = d2o_jnode_get(root, "escA");
    ck_assert_ptr_nonnull(m);
    ck_assert(m->text < in || m->text >= in + sizeof(in));
    ck_assert(text_is(m, "a\nb\xc3\xa9\xf0\x9f\x98\x80"));
    m = d2o_jnode_get(root, "nul");
    ck_assert_uint_eq(m->len, 3);
    ck_assert_int_eq(memcmp(m->text, "x\0y", 3), 0);
    ck_assert_str_eq(d2o_jdoc_cstr(d, m), "x");
    d2o_jdoc_free(d);
}
END_TEST

START_TEST(integers)
{
    struct d2o_jdoc *d = d2o_jdoc_new(4);
    const struct d2o_jnode *root =
        parse_ok(d, "[9223372036854775807,-9223372036854775808,9223372036854775808,"
                    "-9223372036854775809,-0,1e3,2.0]");
    const struct d2o_jnode *n = root->first;
    int64_t v;

    ck_assert_int_eq(d2o_jnode_int64(n, &v), 0);
    ck_assert(v == INT64_MAX);
    n = n->next;
    ck_assert_int_eq(d2o_jnode_int64(n, &v), 0);
    ck_assert(v == INT64_MIN);
    n = n->next;
    ck_assert_int_eq(d2o_jnode_int64(n, &v), -ERANGE);
    ck_assert(v == INT64_MAX);
    n = n->next;
    ck_assert_int_eq(d2o_jnode_int64(n, &v), -ERANGE);
    ck_assert(v == INT64_MIN);
    n = n->next;
    ck_assert_int_eq(d2o_jnode_int64(n, &v), 0);
    ck_assert(v == 0);
    n = n->next;
    ck_assert_int_eq(d2o_jnode_int64(n, &v), -EINVAL);
    ck_assert(d2o_jnode_double(n) == 1000.0);
    ck_assert_int_eq(d2o_jnode_int64(n->next, &v), -EINVAL);
    ck_assert_int_eq(d2o_jnode_int64(root, &v), -EINVAL);
    d2o_jdoc_free(d);
}
END_TEST

/* n nested arrays */
static char *nested(int n)
{
    char *s = malloc((size_t)n * 2 + 1);
    int i;

    for (i = 0; i < n; i++) {
        s[i] = '[';
        s[n + i] = ']';
    }
    s[2 * n] = '\0';
    return s;
}

START_TEST(depth_limit)
{
    struct d2o_jdoc *d = d2o_jdoc_new(80);
    char *ok = nested(80), *deep = nested(81);

    parse_ok(d, ok);
    parse_bad(d, deep, strlen(deep), D2O_JDOC_E_DEPTH, "nested deeper than 80 levels at byte 80",
              80);
    free(ok);
    free(deep);
    d2o_jdoc_free(d);
}
END_TEST

START_TEST(duplicate_keys)
{
    struct d2o_jdoc *d = d2o_jdoc_new(8);
    struct d2o_buf big = D2O_BUF_INIT;
    int i;

    parse_bad(d, "{\"a\":1,\"b\":{\"x\":1,\"x\":2}}", 25, D2O_JDOC_E_DUPLICATE,
              "the key \"x\" appears twice in the object that ends at byte 23", 23);
    /* unescaped, the same key */
    parse_bad(d, "{\"k\":1,\"\\u006b\":2}", 18, D2O_JDOC_E_DUPLICATE, "the key \"k\" appears twice",
              17);
    /* a prefix is another key; so is the same key in another object */
    parse_ok(d, "{\"ab\":1,\"a\":2,\"o\":{\"ab\":3}}");
    /* a large object is checked too */
    ck_assert_int_eq(d2o_buf_putc(&big, '{'), 0);
    for (i = 0; i < 100; i++) {
        ck_assert_int_eq(d2o_buf_printf(&big, "\"key%d\":%d,", i, i), 0);
    }
    big.data[big.len - 1] = '}';
    parse_ok(d, big.data);
    big.data[big.len - 1] = ',';
    ck_assert_int_eq(d2o_buf_puts(&big, "\"key57\":0}"), 0);
    parse_bad(d, big.data, big.len, D2O_JDOC_E_DUPLICATE, "the key \"key57\" appears twice",
              big.len - 1);
    d2o_buf_free(&big);
    d2o_jdoc_free(d);
}
END_TEST

START_TEST(lone_surrogates)
{
    struct d2o_jdoc *d = d2o_jdoc_new(8);

    parse_bad(d, "{\"a\":\"x\\ud83d\"}", 15, D2O_JDOC_E_UNICODE,
              "\\uD83D at byte 7 is half of a UTF-16 surrogate pair", 7);
    parse_bad(d, "{\"a\":\"\\ude00\"}", 14, D2O_JDOC_E_UNICODE, "\\uDE00 at byte 6", 6);
    parse_bad(d, "{\"a\":\"\\ud83d\\u0041\"}", 20, D2O_JDOC_E_UNICODE, "\\uD83D at byte 6", 6);
    parse_bad(d, "{\"\\\\\\\"\\ud800\":1}", 16, D2O_JDOC_E_UNICODE, "\\uD800 at byte 6", 6);
    /* an escaped backslash before "u" is no escape */
    parse_ok(d, "{\"a\":\"\\\\ud83d\"}");
    parse_ok(d, "{\"a\":\"\\uD83D\\uDE00\\\"\"}");
    d2o_jdoc_free(d);
}
END_TEST

START_TEST(syntax_errors_say_where)
{
    struct d2o_jdoc *d = d2o_jdoc_new(8);

    parse_bad(d, "", 0, D2O_JDOC_E_SYNTAX, "premature EOF at byte 0", 0);
    parse_bad(d, "{\"a\":}", 6, D2O_JDOC_E_SYNTAX, "unallowed token at this point in JSON text", 6);
    parse_bad(d, "{\"a\":1", 6, D2O_JDOC_E_SYNTAX, "premature EOF at byte 6", 6);
    parse_bad(d, "{} x", 4, D2O_JDOC_E_SYNTAX, "trailing garbage", 4);
    parse_bad(d, "{\"a\":\"\xff\"}", 9, D2O_JDOC_E_SYNTAX, "invalid bytes in UTF8 string", 7);
    parse_bad(d, "{\"a\":\"x\ty\"}", 11, D2O_JDOC_E_SYNTAX, "invalid character inside string", 7);
    parse_bad(d, "{\"a\":NaN}", 9, D2O_JDOC_E_SYNTAX,
              "lexical error: invalid char in json text at byte 6", 6);
    parse_bad(d, "{\"a\":1.}", 8, D2O_JDOC_E_SYNTAX, "malformed number", 7);
    parse_bad(d, "{/*c*/\"a\":1}", 12, D2O_JDOC_E_SYNTAX, "comments are not enabled", 1);
    /* where yajl alone would take more than JSON: an unterminated string after the value, and
     * vertical tab or form feed as white space */
    parse_bad(d, "{\"a\":1} \"", 9, D2O_JDOC_E_SYNTAX, "parse error: trailing garbage at byte 8",
              8);
    parse_bad(d, "{\"a\":1}\v", 8, D2O_JDOC_E_SYNTAX, "trailing garbage at byte 7", 7);
    parse_bad(d, "{\"a\":\f1}", 8, D2O_JDOC_E_SYNTAX,
              "lexical error: vertical tab or form feed outside a string at byte 5", 5);
    parse_ok(d, " \t\r\n[1] \t\r\n");
    parse_ok(d, "123");
    parse_ok(d, "\"s\" ");
    /* length, not NUL termination, ends the input */
    parse_ok(d, "{\"a\":1}");
    ck_assert_int_eq(d2o_jdoc_parse(d, "{\"a\":1}}}", 7, NULL, 0), 0);
    d2o_jdoc_free(d);
}
END_TEST

START_TEST(steady_state_parses_allocate_nothing)
{
    struct d2o_jdoc *d = d2o_jdoc_new(80);
    struct d2o_buf in = D2O_BUF_INIT;
    char err[128];
    size_t mallocs;
    int i;

    /* larger than the first arena block, with unescaped strings and a large object */
    ck_assert_int_eq(d2o_buf_putc(&in, '{'), 0);
    for (i = 0; i < 2000; i++) {
        ck_assert_int_eq(d2o_buf_printf(&in, "\"k\\u00e9%d\":[{\"S\":\"v\\n%d\"}],", i, i), 0);
    }
    in.data[in.len - 1] = '}';
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(d2o_jdoc_parse(d, in.data, in.len, err, sizeof(err)), 0);
    }
    /* the first parses grew the arenas; from now on they hold a whole parse in one block */
    mallocs = d2o_jdoc_mallocs(d);
    ck_assert_uint_gt(mallocs, 0);
    for (i = 0; i < 10; i++) {
        ck_assert_int_eq(d2o_jdoc_parse(d, in.data, in.len, err, sizeof(err)), 0);
        ck_assert_uint_eq(d2o_jdoc_root(d)->len, 2000);
    }
    ck_assert_uint_eq(d2o_jdoc_mallocs(d), mallocs);
    d2o_buf_free(&in);
    d2o_jdoc_free(d);
}
END_TEST

/* One huge input does not leave its memory in the document for good. */
START_TEST(a_huge_input_is_not_kept)
{
    struct d2o_jdoc *d = d2o_jdoc_new(8);
    struct d2o_buf big = D2O_BUF_INIT;
    char err[128];
    size_t small;
    int i;

    parse_ok(d, "{\"a\":[1,2,3]}");
    small = d2o_jdoc_footprint(d);
    ck_assert_uint_gt(small, 0);
    ck_assert_int_eq(d2o_buf_putc(&big, '['), 0);
    for (i = 0; i < 100000; i++) {
        ck_assert_int_eq(d2o_buf_puts(&big, "{\"S\":\"x\"},"), 0);
    }
    big.data[big.len - 1] = ']';
    ck_assert_int_eq(d2o_jdoc_parse(d, big.data, big.len, err, sizeof(err)), 0);
    ck_assert_uint_gt(d2o_jdoc_footprint(d), 100000 * sizeof(struct d2o_jnode));
    /* the next input settles the arena on one block of what the huge one needed ... */
    parse_ok(d, "{\"a\":[1,2,3]}");
    ck_assert_uint_gt(d2o_jdoc_footprint(d), 100000 * sizeof(struct d2o_jnode));
    /* ... and the one after lets it go */
    parse_ok(d, "{\"a\":[1,2,3]}");
    ck_assert_uint_le(d2o_jdoc_footprint(d), small);
    d2o_buf_free(&big);
    d2o_jdoc_free(d);
}
END_TEST

START_TEST(from_json_c)
{
    struct json_object *o = json_tokener_parse("{\"b\":[1,2.50,null,\"s\\u0000t\"],\"a\":true}");
    struct d2o_jdoc *d = d2o_jdoc_new(1);
    const struct d2o_jnode *root = d2o_jdoc_from_json_c(d, o), *b;

    ck_assert_ptr_nonnull(root);
    ck_assert_int_eq(root->type, D2O_JOBJECT);
    ck_assert_uint_eq(root->len, 2);
    ck_assert_int_eq(memcmp(root->first->key, "b", 1), 0);
    b = d2o_jnode_get(root, "b");
    ck_assert(text_is(b->first, "1"));
    ck_assert(text_is(b->first->next, "2.50"));
    ck_assert_int_eq(b->first->next->next->type, D2O_JNULL);
    ck_assert_uint_eq(b->first->next->next->next->len, 3);
    ck_assert(d2o_jnode_get(root, "a")->boolean);
    json_object_put(o);
    /* JSON null itself */
    root = d2o_jdoc_from_json_c(d, NULL);
    ck_assert_int_eq(root->type, D2O_JNULL);
    d2o_jdoc_free(d);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("jdoc");
    TCase *tc = tcase_create("jdoc");

    tcase_add_test(tc, every_type_in_order);
    tcase_add_test(tc, strings_point_into_the_input_unless_unescaped);
    tcase_add_test(tc, integers);
    tcase_add_test(tc, depth_limit);
    tcase_add_test(tc, duplicate_keys);
    tcase_add_test(tc, lone_surrogates);
    tcase_add_test(tc, syntax_errors_say_where);
    tcase_add_test(tc, steady_state_parses_allocate_nothing);
    tcase_add_test(tc, a_huge_input_is_not_kept);
    tcase_add_test(tc, from_json_c);
    suite_add_tcase(s, tc);
    return s;
}
