/*
 * The lease protocol against a real PostgreSQL: take with SKIP LOCKED (concurrent takers never
 * share a shard), renew, expiry by the database's clock, parents before children, release,
 * graceful handoff and its deadline, fencing of checkpoints by epoch, and the audit trail never
 * showing two owners in one epoch. Each run works in a schema of its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/dlq.h"
#include "d2o/lease.h"
#include "d2o/pg.h"
#include "d2o_test.h"
#include "pg_fixture.h"

#define APP "app"
#define STREAM "orders-stream"
#define LEASE_MS 10000

static void setup(void)
{
    PGconn *c;
    char err[512];
    int i;

    pgfx_setup("d2o_lease", 1);
    c = pgfx_conn();
    for (i = 0; i < 8; i++) {
        char shard[32];

        snprintf(shard, sizeof(shard), "shardId-%012d", i);
        ck_assert_int_eq(
            d2o_lease_ensure(c, APP, STREAM, shard, NULL, "TRIM_HORIZON", err, sizeof(err)), 1);
    }
    PQfinish(c);
}

/* No shard ever had two owners in one lease epoch. */
static void assert_one_owner_per_epoch(PGconn *c)
{
    char *v =
        pgfx_scalar(c, "SELECT count(*) FROM (SELECT shard_id, lease_counter FROM lease_events"
                       " WHERE owner IS NOT NULL GROUP BY 1, 2"
                       " HAVING count(DISTINCT owner) > 1) AS doubles");

    ck_assert_str_eq(v, "0");
    free(v);
}

START_TEST(take_renew_and_expire_by_the_database_clock)
{
    PGconn *c = pgfx_conn();
    struct d2o_lease_list a = {0}, b = {0}, renewed = {0};
    char err[512];
    struct d2o_checkpoint cp;

    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-a", 5, LEASE_MS, &a, err, sizeof(err)), 5);
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-b", 8, LEASE_MS, &b, err, sizeof(err)), 3);
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-c", 8, LEASE_MS, &b, err, sizeof(err)), 0);
    ck_assert_str_eq(a.items[0].checkpoint, "TRIM_HORIZON");
    ck_assert_int_eq(a.items[0].counter, 1);
    ck_assert_int_eq(d2o_lease_renew_all(c, APP, "w-a", LEASE_MS, &renewed, err, sizeof(err)), 5);
    /* A renewal does not start a new epoch. */
    ck_assert_int_eq(renewed.items[0].counter, 1);
    d2o_lease_list_free(&renewed);

    /* w-a stops renewing; by the database's clock its leases expire and w-b takes them. */
    pgfx_sql(c, "UPDATE leases SET expires_at = now() - interval '1 ms' WHERE owner = 'w-a'");
    ck_assert_int_eq(d2o_lease_renew_all(c, APP, "w-a", LEASE_MS, &renewed, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-b", 8, LEASE_MS, &b, err, sizeof(err)), 5);
    /* w-a's checkpoint in its old epoch is refused; w-b's in the new one goes through. */
    cp = (struct d2o_checkpoint){APP,   STREAM, a.items[0].shard_id, "w-a", a.items[0].counter,
                                 "1000"};
    ck_assert_int_eq(d2o_dlq_commit(c, &cp, NULL, 0, err, sizeof(err)), D2O_LEASE_E_LOST);
    cp.owner = "w-b";
    cp.lease_counter = a.items[0].counter + 1;
    ck_assert_msg(d2o_dlq_commit(c, &cp, NULL, 0, err, sizeof(err)) == 0, "%s", err);
    {
        char *v = pgfx_scalar(c, "SELECT count(*) FROM lease_events WHERE event = 'expire'"
                                 " AND previous_owner = 'w-a' AND owner = 'w-b'");

        ck_assert_str_eq(v, "5");
        free(v);
    }
    assert_one_owner_per_epoch(c);
    d2o_lease_list_free(&a);
    d2o_lease_list_free(&b);
    PQfinish(c);
}
END_TEST

START_TEST(concurrent_takers_never_share_a_shard)
{
    pid_t kids[4];
    int i, status, total = 0;
    PGconn *c;
    char *v;

    for (i = 0; i < 4; i++) {
        kids[i] = d2o_test_fork();
        if (kids[i] == 0) {
            PGconn *k = pgfx_conn();
            struct d2o_lease_list got = {0};
            char owner[16], err[512];
            int n;

            snprintf(owner, sizeof(owner), "w-%d", i);
            n = d2o_lease_take(k, APP, STREAM, owner, 8, LEASE_MS, &got, err, sizeof(err));
            _exit(n < 0 ? 255 : n);
        }
    }
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(waitpid(kids[i], &status, 0), kids[i]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 255);
        total += WEXITSTATUS(status);
    }
    ck_assert_int_eq(total, 8);
    c = pgfx_conn();
    v = pgfx_scalar(c, "SELECT count(*) FROM leases WHERE owner IS NOT NULL");
    ck_assert_str_eq(v, "8");
    free(v);
    assert_one_owner_per_epoch(c);
    PQfinish(c);
}
END_TEST

START_TEST(children_wait_for_their_parents)
{
    PGconn *c = pgfx_conn();
    struct d2o_lease_list got = {0};
    const char *parents[] = {"shardId-000000000000", "shardId-000000000001", NULL};
    char err[512];
    size_t i;
    struct d2o_checkpoint cp;

    ck_assert_int_eq(d2o_lease_ensure(c, APP, STREAM, "shardId-000000000100", parents,
                                      "TRIM_HORIZON", err, sizeof(err)),
                     1);
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-a", 20, LEASE_MS, &got, err, sizeof(err)),
                     8);
    for (i = 0; i < got.n; i++) {
        ck_assert_str_ne(got.items[i].shard_id, "shardId-000000000100");
    }
    /* One parent finished: still blocked. Both: the child can be taken. */
    cp = (struct d2o_checkpoint){APP, STREAM, "shardId-000000000000", "w-a", 1, "SHARD_END"};
    ck_assert_int_eq(d2o_dlq_commit(c, &cp, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-b", 20, LEASE_MS, &got, err, sizeof(err)),
                     0);
    cp.shard_id = "shardId-000000000001";
    ck_assert_int_eq(d2o_dlq_commit(c, &cp, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-b", 20, LEASE_MS, &got, err, sizeof(err)),
                     1);
    ck_assert_str_eq(got.items[got.n - 1].shard_id, "shardId-000000000100");
    ck_assert_str_eq(got.items[got.n - 1].checkpoint, "TRIM_HORIZON");

    /* A finished parent lets go for good: no owner, a new epoch, a shard_end event. */
    {
        struct d2o_lease parent = {0};
        char *v;

        parent.stream = (char *)STREAM;
        parent.shard_id = (char *)"shardId-000000000000";
        parent.owner = (char *)"w-a";
        parent.counter = 1;
        ck_assert_int_eq(d2o_lease_finish(c, APP, &parent, err, sizeof(err)), 0);
        ck_assert_int_eq(d2o_lease_finish(c, APP, &parent, err, sizeof(err)), D2O_LEASE_E_LOST);
        v = pgfx_scalar(c, "SELECT coalesce(owner, '-') || ' ' || lease_counter || ' ' ||"
                           " checkpoint FROM leases WHERE shard_id = 'shardId-000000000000'");

        ck_assert_str_eq(v, "- 2 SHARD_END");
        free(v);
        v = pgfx_scalar(c, "SELECT event || ' ' || previous_owner FROM lease_events"
                           " WHERE shard_id = 'shardId-000000000000' ORDER BY id DESC LIMIT 1");
        ck_assert_str_eq(v, "shard_end w-a");
        free(v);
    }
    /* Discovery's seed: an existing row is left alone; AT_TIMESTAMP keeps its time. */
    {
        struct d2o_lease_seed seed = {0};
        struct d2o_lease_list at = {0};

        seed.shard_id = "shardId-000000000100";
        seed.checkpoint = "LATEST";
        ck_assert_int_eq(d2o_lease_ensure_shard(c, APP, STREAM, &seed, err, sizeof(err)), 0);
        seed.shard_id = "shardId-000000000200";
        seed.checkpoint = "AT_TIMESTAMP";
        seed.checkpoint_ts_ms = 1795000000123;
        seed.hash_start = "0";
        seed.hash_end = "340282366920938463463374607431768211455";
        ck_assert_int_eq(d2o_lease_ensure_shard(c, APP, STREAM, &seed, err, sizeof(err)), 1);
        ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-c", 1, LEASE_MS, &at, err, sizeof(err)),
                         1);
        ck_assert_str_eq(at.items[0].shard_id, "shardId-000000000200");
        ck_assert_str_eq(at.items[0].checkpoint, "AT_TIMESTAMP");
        ck_assert_int_eq(at.items[0].checkpoint_ts_ms, 1795000000123);
        d2o_lease_list_free(&at);
    }
    d2o_lease_list_free(&got);
    PQfinish(c);
}
END_TEST

START_TEST(release_and_graceful_handoff)
{
    PGconn *c = pgfx_conn();
    struct d2o_lease_list a = {0}, b = {0}, renewed = {0};
    char err[512];
    size_t i;
    const struct d2o_lease *asked = NULL;
    char *v;

    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-a", 8, LEASE_MS, &a, err, sizeof(err)), 8);
    /* Release on drain: owner cleared, new epoch. */
    ck_assert_int_eq(d2o_lease_release(c, APP, &a.items[7], err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_lease_release(c, APP, &a.items[7], err, sizeof(err)), D2O_LEASE_E_LOST);
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-b", 8, LEASE_MS, &b, err, sizeof(err)), 1);
    ck_assert_int_eq(b.items[0].counter, a.items[7].counter + 2);

    /* w-b (1 lease) is below the target of 4; w-a holds 7 and is asked for one. */
    ck_assert_int_eq(d2o_lease_request_handoff(c, APP, STREAM, "w-b", 4, 30000, err, sizeof(err)),
                     1);
    /* One request at a time. */
    ck_assert_int_eq(d2o_lease_request_handoff(c, APP, STREAM, "w-b", 4, 30000, err, sizeof(err)),
                     0);
    ck_assert_int_eq(d2o_lease_renew_all(c, APP, "w-a", LEASE_MS, &renewed, err, sizeof(err)), 7);
    for (i = 0; i < renewed.n; i++) {
        if (renewed.items[i].pending_owner) {
            ck_assert_ptr_null(asked);
            asked = &renewed.items[i];
        }
    }
    ck_assert_ptr_nonnull(asked);
    ck_assert_str_eq(asked->pending_owner, "w-b");
    /* w-b is not live (no heartbeat): w-a withdraws the request and keeps the lease. */
    ck_assert_int_eq(d2o_lease_hand_over(c, APP, asked, 5000, 2000, err, sizeof(err)),
                     D2O_LEASE_E_NOT_LIVE);
    ck_assert_ptr_nonnull(strstr(err, "is not live"));
    v = pgfx_scalar(c, "SELECT count(*) FROM leases WHERE owner = 'w-a' AND pending_owner IS NULL");
    ck_assert_str_eq(v, "7");
    free(v);
    ck_assert_int_eq(d2o_lease_request_handoff(c, APP, STREAM, "w-b", 4, 30000, err, sizeof(err)),
                     1);
    d2o_lease_list_free(&renewed);
    ck_assert_int_eq(d2o_lease_renew_all(c, APP, "w-a", LEASE_MS, &renewed, err, sizeof(err)), 7);
    for (i = 0, asked = NULL; i < renewed.n; i++) {
        if (renewed.items[i].pending_owner) {
            asked = &renewed.items[i];
        }
    }
    ck_assert_ptr_nonnull(asked);
    /* w-b heartbeats: w-a checkpoints at its batch boundary and hands over; w-b finds it at its
     * next renewal, and must renew it within accept_ms. */
    ck_assert_int_eq(d2o_lease_heartbeat(c, APP, "w-b", "host", 1, "task", 1, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_lease_hand_over(c, APP, asked, 5000, 2000, err, sizeof(err)), 0);
    v = pgfx_scalar(c, "SELECT count(*) FROM leases WHERE owner = 'w-b'"
                       " AND expires_at <= clock_timestamp() + interval '2 s'");
    ck_assert_str_eq(v, "1");
    free(v);
    d2o_lease_list_free(&b);
    ck_assert_int_eq(d2o_lease_renew_all(c, APP, "w-b", LEASE_MS, &b, err, sizeof(err)), 2);
    /* A second request whose owner never answers: after the deadline the requester takes it. */
    ck_assert_int_eq(d2o_lease_request_handoff(c, APP, STREAM, "w-b", 3, 30000, err, sizeof(err)),
                     1);
    pgfx_sql(c, "UPDATE leases SET handoff_deadline = now() - interval '1 ms'"
                " WHERE pending_owner = 'w-b'");
    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-b", 1, LEASE_MS, &b, err, sizeof(err)), 1);
    v = pgfx_scalar(c, "SELECT count(*) FILTER (WHERE event = 'steal') || '/' ||"
                       " count(*) FILTER (WHERE event = 'release') FROM lease_events");
    ck_assert_str_eq(v, "2/1");
    free(v);
    v = pgfx_scalar(c, "SELECT count(*) FROM leases WHERE owner = 'w-b'");
    ck_assert_str_eq(v, "3");
    free(v);
    assert_one_owner_per_epoch(c);
    d2o_lease_list_free(&a);
    d2o_lease_list_free(&b);
    d2o_lease_list_free(&renewed);
    PQfinish(c);
}
END_TEST

START_TEST(an_assignment_holds_against_the_balancer)
{
    PGconn *c = pgfx_conn();
    struct d2o_lease_list a = {0};
    char err[512];
    char *v;

    ck_assert_int_eq(d2o_lease_take(c, APP, STREAM, "w-a", 8, LEASE_MS, &a, err, sizeof(err)), 8);
    /* The operator assigned every shard but shardId-000000000005 to w-a (as `lease assign`
     * records it). */
    pgfx_sql(c, "INSERT INTO lease_events (application, stream, shard_id, event, owner,"
                " lease_counter) SELECT application, stream, shard_id, 'assign', owner,"
                " lease_counter FROM leases WHERE shard_id <> 'shardId-000000000005'");
    /* w-b, below its target of 4, may only ask for the one that is not pinned. */
    ck_assert_int_eq(d2o_lease_request_handoff(c, APP, STREAM, "w-b", 4, 30000, err, sizeof(err)),
                     1);
    v = pgfx_scalar(c, "SELECT string_agg(shard_id, ',') FROM leases WHERE pending_owner = 'w-b'");
    ck_assert_str_eq(v, "shardId-000000000005");
    free(v);
    pgfx_sql(c, "UPDATE leases SET pending_owner = NULL, handoff_deadline = NULL");
    pgfx_sql(c, "INSERT INTO lease_events (application, stream, shard_id, event, owner,"
                " lease_counter) SELECT application, stream, shard_id, 'assign', owner,"
                " lease_counter FROM leases WHERE shard_id = 'shardId-000000000005'");
    ck_assert_int_eq(d2o_lease_request_handoff(c, APP, STREAM, "w-b", 4, 30000, err, sizeof(err)),
                     0);
    /* An hour later the assignments no longer hold. */
    pgfx_sql(c, "UPDATE lease_events SET at = now() - interval '61 minutes'");
    ck_assert_int_eq(d2o_lease_request_handoff(c, APP, STREAM, "w-b", 4, 30000, err, sizeof(err)),
                     1);
    d2o_lease_list_free(&a);
    PQfinish(c);
}
END_TEST

START_TEST(census_counts_live_workers)
{
    PGconn *c = pgfx_conn();
    char err[512];
    int leases = -1, workers = -1;

    ck_assert_int_eq(
        d2o_lease_heartbeat(c, APP, "w-a", "host-1", 11, "task-1", 0, err, sizeof(err)), 0);
    ck_assert_int_eq(
        d2o_lease_heartbeat(c, APP, "w-b", "host-2", 12, "task-2", 0, err, sizeof(err)), 0);
    pgfx_sql(c, "UPDATE workers SET heartbeat_at = now() - interval '1 minute' WHERE id = 'w-b'");
    ck_assert_int_eq(d2o_lease_census(c, APP, STREAM, 30000, &leases, &workers, err, sizeof(err)),
                     0);
    ck_assert_int_eq(leases, 8);
    ck_assert_int_eq(workers, 1);
    ck_assert_int_eq(d2o_lease_target(leases, workers + 1), 4);
    PQfinish(c);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("lease_pg");
    TCase *tc = tcase_create("lease");

    tcase_add_checked_fixture(tc, setup, pgfx_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, take_renew_and_expire_by_the_database_clock);
    tcase_add_test(tc, concurrent_takers_never_share_a_shard);
    tcase_add_test(tc, children_wait_for_their_parents);
    tcase_add_test(tc, release_and_graceful_handoff);
    tcase_add_test(tc, an_assignment_holds_against_the_balancer);
    tcase_add_test(tc, census_counts_live_workers);
    suite_add_tcase(s, tc);
    return s;
}
