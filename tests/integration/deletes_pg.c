/*
 * The delete store against a real PostgreSQL: a request's deletes are recorded with the highest
 * version, writes at or below a recorded delete are dropped and later ones pass, odd ids survive
 * the array encoding, applications do not see each other's deletes, and the retention job
 * forgets old deletes except those a pending dead-letter row still needs. Each run works in a
 * schema of its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/deletes.h"
#include "d2o/pg.h"
#include "d2o_test.h"
#include "pg_fixture.h"

static PGconn *c;

static void setup(void)
{
    char err[512];

    pgfx_setup("d2o_deletes", 0);
    c = pgfx_conn();
    ck_assert_msg(d2o_pg_migrate(c, NULL, NULL, err, sizeof(err)) == 0, "%s", err);
}

static void teardown(void)
{
    PQfinish(c);
    c = NULL;
    pgfx_teardown();
}

static struct d2o_bulk_filter_item item(const char *index, const char *id, int64_t version,
                                        bool is_delete)
{
    struct d2o_bulk_filter_item it = {index, id, version, is_delete, NULL};

    return it;
}

/* Runs the check over items and returns how many were dropped; drop receives the flags. */
static size_t check(const char *app, const struct d2o_bulk_filter_item *items, size_t n, bool *drop)
{
    char err[512];
    size_t dropped = 99, i;

    for (i = 0; i < n; i++) {
        drop[i] = false;
    }
    ck_assert_msg(d2o_deletes_check(c, app, items, n, drop, &dropped, err, sizeof(err)) == 0, "%s",
                  err);
    return dropped;
}

static long long scalar(const char *q)
{
    char *v = pgfx_scalar(c, q);
    long long n = strtoll(v, NULL, 10);

    free(v);
    return n;
}

START_TEST(deletes_are_recorded_and_outrank_older_writes)
{
    struct d2o_bulk_filter_item first[] = {
        item("books", "a", 100, true), item("books", "b", 50, true),
        item("books", "c", 10, false), item("books", "b", 70, true), /* same doc twice */
        item(NULL, NULL, 5, false),    item("books", "z", 0, true),  /* no key; no version */
    };
    struct d2o_bulk_filter_item second[] = {
        item("books", "a", 99, false),  /* older than a's delete: dropped */
        item("books", "a", 100, false), /* the delete's own version: dropped, as a 409 would */
        item("other", "a", 1, false),   /* same id, another index */
        item("books", "b", 60, false),  /* below b's highest delete (70) */
        item("books", "c", 11, false),  /* never deleted */
        item("books", "a", 101, false), /* a re-create: goes through */
    };
    bool drop[6];

    ck_assert_uint_eq(check("app", first, 6, drop), 0);
    ck_assert_int_eq(scalar("SELECT count(*) FROM deletes"), 2);
    ck_assert_int_eq(scalar("SELECT version FROM deletes WHERE doc_id = 'b'"), 70);
    ck_assert_uint_eq(check("app", second, 6, drop), 3);
    ck_assert(drop[0] && drop[1] && !drop[2] && drop[3] && !drop[4] && !drop[5]);
    /* another application shares nothing */
    ck_assert_uint_eq(check("other-app", second, 6, drop), 0);
    /* an older delete never lowers the recorded version */
    {
        struct d2o_bulk_filter_item old_del[] = {item("books", "a", 40, true)};

        ck_assert_uint_eq(check("app", old_del, 1, drop), 0);
        ck_assert_int_eq(scalar("SELECT version FROM deletes WHERE doc_id = 'a'"), 100);
    }
    /* a newer delete raises it */
    {
        struct d2o_bulk_filter_item new_del[] = {item("books", "a", 200, true)};
        struct d2o_bulk_filter_item recreate[] = {item("books", "a", 101, false)};

        ck_assert_uint_eq(check("app", new_del, 1, drop), 0);
        ck_assert_uint_eq(check("app", recreate, 1, drop), 1);
    }
}
END_TEST

START_TEST(odd_ids_survive_the_encoding)
{
    static const char *const ids[] = {"q\"uote", "back\\slash", "com,ma", "{brace}", "NULL",
                                      "",        " space ",     "ü|\\|x"};
    struct d2o_bulk_filter_item dels[8], writes[8];
    bool drop[8];
    size_t i;

    for (i = 0; i < 8; i++) {
        dels[i] = item("books", ids[i], 10, true);
        writes[i] = item("books", ids[i], 9, false);
    }
    ck_assert_uint_eq(check("app", dels, 8, drop), 0);
    ck_assert_int_eq(scalar("SELECT count(*) FROM deletes WHERE doc_id IN ('q\"uote',"
                            " 'back\\slash', 'com,ma', '{brace}', 'NULL', '', ' space ',"
                            " 'ü|\\|x')"),
                     8);
    ck_assert_uint_eq(check("app", writes, 8, drop), 8);
    for (i = 0; i < 8; i++) {
        ck_assert_msg(drop[i], "%s", ids[i]);
    }
}
END_TEST

START_TEST(a_failed_check_drops_nothing)
{
    struct d2o_bulk_filter_item w[] = {item("books", "a", 1, false)};
    bool drop[1] = {true};
    char err[512] = "";

    pgfx_sql(c, "DROP TABLE deletes");
    ck_assert_int_eq(d2o_deletes_check(c, "app", w, 1, drop, NULL, err, sizeof(err)), -EIO);
    ck_assert(!drop[0]);
    ck_assert_ptr_nonnull(strstr(err, "checking writes against recorded deletes"));
}
END_TEST

START_TEST(retention_forgets_old_deletes_but_not_those_a_pending_row_needs)
{
    struct d2o_bulk_filter_item dels[] = {item("books", "old", 10, true),
                                          item("books", "kept", 10, true),
                                          item("books", "young", 10, true)};
    bool drop[3];
    char err[512];

    ck_assert_uint_eq(check("app", dels, 3, drop), 0);
    pgfx_sql(c, "UPDATE deletes SET deleted_at = now() - interval '2 hours'"
                " WHERE doc_id IN ('old', 'kept')");
    /* a pending dead-letter row of 'kept', older than its delete, may still be replayed; a
     * replayed (no longer pending) one of 'old' needs nothing */
    pgfx_sql(c, "INSERT INTO dlq (application, stream, shard_id, sequence_number, index_name,"
                " doc_id, version, raw_record, error_class, first_failed_at, last_failed_at,"
                " state) VALUES"
                " ('app', 's', 'sh', '1', 'books', 'kept', 5, '\\x00', 'x', now(), now(),"
                "  'pending'),"
                " ('app', 's', 'sh', '2', 'books', 'old', 5, '\\x00', 'x', now(), now(),"
                "  'replayed')");
    ck_assert_int_eq(d2o_deletes_expire(c, "other-app", 3600000, 100, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_deletes_expire(c, "app", 3600000, 100, err, sizeof(err)), 1);
    ck_assert_int_eq(scalar("SELECT count(*) FROM deletes WHERE doc_id = 'old'"), 0);
    ck_assert_int_eq(scalar("SELECT count(*) FROM deletes"), 2);
    /* once the row is replayed, the delete goes too */
    pgfx_sql(c, "UPDATE dlq SET state = 'replayed'");
    ck_assert_int_eq(d2o_deletes_expire(c, "app", 3600000, 100, err, sizeof(err)), 1);
    ck_assert_int_eq(scalar("SELECT count(*) FROM deletes"), 1);
    ck_assert_int_eq(d2o_deletes_expire(c, "app", 3600000, 100, err, sizeof(err)), 0);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("deletes_pg");
    TCase *tc = tcase_create("deletes");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, deletes_are_recorded_and_outrank_older_writes);
    tcase_add_test(tc, odd_ids_survive_the_encoding);
    tcase_add_test(tc, a_failed_check_drops_nothing);
    tcase_add_test(tc, retention_forgets_old_deletes_but_not_those_a_pending_row_needs);
    suite_add_tcase(s, tc);
    return s;
}
