#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/log.h"
#include "d2o_test.h"

/* Runs fn with the logger writing to a temporary file (it writes through the fd) and returns
 * what was written. */
static char *capture(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    long n;
    char *out;

    ck_assert_ptr_nonnull(tmp);
    d2o_log_set_stream(tmp);
    fn();
    d2o_log_set_stream(NULL);
    fflush(tmp);
    n = ftell(tmp);
    out = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(out);
    rewind(tmp);
    ck_assert_uint_eq(fread(out, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return out;
}

static void emit_json(void)
{
    d2o_log_set_format(D2O_LOG_JSON);
    d2o_log_set_level(D2O_LOG_INFO);
    d2o_log_set_worker("w1-42");
    d2o_log(D2O_LOG_INFO, D2O_CAT_GENERAL, "shardId-000000000001", "lease_taken",
            "took lease \"%s\"", "x");
}

START_TEST(json_line_has_fields)
{
    char *out = capture(emit_json);
    struct json_object *o = json_tokener_parse(out), *v;

    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, "ts", &v));
    ck_assert(json_object_object_get_ex(o, "level", &v));
    ck_assert_str_eq(json_object_get_string(v), "info");
    ck_assert(json_object_object_get_ex(o, "worker", &v));
    ck_assert_str_eq(json_object_get_string(v), "w1-42");
    ck_assert(json_object_object_get_ex(o, "shard", &v));
    ck_assert_str_eq(json_object_get_string(v), "shardId-000000000001");
    ck_assert(json_object_object_get_ex(o, "event", &v));
    ck_assert_str_eq(json_object_get_string(v), "lease_taken");
    ck_assert(json_object_object_get_ex(o, "msg", &v));
    ck_assert_str_eq(json_object_get_string(v), "took lease \"x\"");
    ck_assert_int_eq(out[strlen(out) - 1], '\n');
    json_object_put(o);
    free(out);
}
END_TEST

static void emit_secret(void)
{
    d2o_log_set_format(D2O_LOG_TEXT);
    d2o_log_add_secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    d2o_err("creds", "refresh failed for secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY twice "
                     "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    d2o_log_clear_secrets();
}

START_TEST(secrets_are_redacted)
{
    char *out = capture(emit_secret);

    ck_assert_ptr_null(strstr(out, "wJalrXUtnFEMI"));
    ck_assert_ptr_nonnull(strstr(out, "[redacted]"));
    free(out);
}
END_TEST

static void emit_long(void)
{
    char *big = malloc(20000);

    memset(big, 'a', 19999);
    big[19999] = '\0';
    d2o_log_set_format(D2O_LOG_TEXT);
    d2o_warn("payload", "%s", big);
    free(big);
}

START_TEST(long_messages_are_cut)
{
    char *out = capture(emit_long);

    ck_assert(strlen(out) < D2O_LOG_MAX_MSG + 200);
    ck_assert_ptr_nonnull(strstr(out, "...[cut]"));
    free(out);
}
END_TEST

static void emit_filtered(void)
{
    d2o_log_set_format(D2O_LOG_TEXT);
    d2o_log_set_level(D2O_LOG_DEBUG);
    d2o_log_set_categories(D2O_CAT_LEASE);
    d2o_debug(D2O_CAT_KINESIS, "kin", "not shown");
    d2o_debug(D2O_CAT_LEASE, "lease", "shown");
    d2o_log_set_level(D2O_LOG_WARN);
    d2o_info("info", "not shown either");
}

START_TEST(levels_and_categories_filter)
{
    char *out = capture(emit_filtered);

    ck_assert_ptr_null(strstr(out, "not shown"));
    ck_assert_ptr_nonnull(strstr(out, "lease: shown"));
    free(out);
}
END_TEST

START_TEST(parse_names)
{
    unsigned cats = 0;
    const char *bad = NULL;
    size_t bad_len = 0;

    ck_assert_int_eq(d2o_log_level_from_name("debug"), D2O_LOG_DEBUG);
    ck_assert_int_eq(d2o_log_level_from_name("loud"), -1);
    ck_assert_int_eq(d2o_log_categories_from_list("kinesis,sink", &cats, &bad, &bad_len), 0);
    ck_assert_uint_eq(cats, D2O_CAT_KINESIS | D2O_CAT_SINK);
    ck_assert_int_eq(d2o_log_categories_from_list("lease,bogus", &cats, &bad, &bad_len), -1);
    ck_assert_uint_eq(bad_len, 5);
    ck_assert_int_eq(strncmp(bad, "bogus", 5), 0);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");

    tcase_add_test(tc, json_line_has_fields);
    tcase_add_test(tc, secrets_are_redacted);
    tcase_add_test(tc, long_messages_are_cut);
    tcase_add_test(tc, levels_and_categories_filter);
    tcase_add_test(tc, parse_names);
    suite_add_tcase(s, tc);
    return s;
}
