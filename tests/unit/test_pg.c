/* Connection errors and the embedded schema, without a server. */
#include <string.h>

#include "d2o/pg.h"
#include "d2o_test.h"

START_TEST(unreachable_server_is_a_clear_error)
{
    char err[512] = "";
    PGconn *c = d2o_pg_connect("host=127.0.0.1 port=1 user=nobody password=hunter2secret "
                               "dbname=x connect_timeout=2",
                               "ddb2os-test", err, sizeof(err));

    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, "cannot connect to PostgreSQL"));
    ck_assert_ptr_nonnull(strstr(err, "127.0.0.1"));
    ck_assert_ptr_null(strstr(err, "hunter2secret"));
}
END_TEST

START_TEST(bad_conninfo_is_a_clear_error)
{
    char err[512] = "";

    ck_assert_ptr_null(d2o_pg_connect("host=127.0.0.1 nonsense_key=1", "t", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "nonsense_key"));
}
END_TEST

START_TEST(schema_version_is_known)
{
    ck_assert_int_ge(d2o_pg_schema_latest, 1);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("pg");
    TCase *tc = tcase_create("pg");

    tcase_add_test(tc, unreachable_server_is_a_clear_error);
    tcase_add_test(tc, bad_conninfo_is_a_clear_error);
    tcase_add_test(tc, schema_version_is_known);
    suite_add_tcase(s, tc);
    return s;
}
