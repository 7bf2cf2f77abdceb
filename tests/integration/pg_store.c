/*
 * The PostgreSQL store against a real server: migrations, the fenced DLQ + checkpoint
 * transaction, lease loss, crash safety and byte-exact raw records. Each run works in a schema
 * of its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/dlq.h"
#include "d2o/pg.h"
#include "d2o_test.h"
#include "pg_fixture.h"

static void setup(void)
{
    pgfx_setup("d2o_test", 0);
}

static PGconn *migrated(void)
{
    PGconn *c = pgfx_conn();
    char err[512];
    int from, to;

    ck_assert_msg(d2o_pg_migrate(c, &from, &to, err, sizeof(err)) == 0, "%s", err);
    pgfx_sql(c,
             "INSERT INTO leases (application, stream, shard_id, owner, lease_counter, expires_at,"
             " checkpoint) VALUES ('app', 's', 'shardId-000000000000', 'w1', 7,"
             " now() + interval '10 minutes', '100')");
    return c;
}

START_TEST(migrations_apply_once_and_refuse_a_newer_schema)
{
    PGconn *c = pgfx_conn();
    char err[512];
    int from = -1, to = -1, v = -1;

    ck_assert_int_eq(d2o_pg_schema_version(c, &v, err, sizeof(err)), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(d2o_pg_migrate(c, &from, &to, err, sizeof(err)), 0);
    ck_assert_int_eq(from, 0);
    ck_assert_int_eq(to, d2o_pg_schema_latest);
    ck_assert_int_eq(d2o_pg_migrate(c, &from, &to, err, sizeof(err)), 0);
    ck_assert_int_eq(from, to);
    pgfx_sql(c, "INSERT INTO schema_migrations (version) VALUES (999)");
    ck_assert_int_eq(d2o_pg_migrate(c, &from, &to, err, sizeof(err)), -EIO);
    ck_assert_ptr_nonnull(strstr(err, "schema is at version 999"));
    PQfinish(c);
}
END_TEST

START_TEST(concurrent_migrations_are_serialised)
{
    pid_t kids[4];
    int i, status;
    PGconn *c;
    char *n;

    for (i = 0; i < 4; i++) {
        kids[i] = d2o_test_fork();
        if (kids[i] == 0) {
            /* The connection is opened after fork, in the child. */
            PGconn *k = pgfx_conn();
            char err[512];

            _exit(d2o_pg_migrate(k, NULL, NULL, err, sizeof(err)) == 0 ? 0 : 1);
        }
    }
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(waitpid(kids[i], &status, 0), kids[i]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    c = pgfx_conn();
    /* Each migration was applied exactly once. */
    n = pgfx_scalar(c, "SELECT count(*) = max(version) AND count(DISTINCT version) = count(*)"
                       " FROM schema_migrations");
    ck_assert_str_eq(n, "t");
    free(n);
    PQfinish(c);
}
END_TEST

static const char raw_bytes[] = "{\"eventName\":\"INSERT\"}\0\xff\xfe not utf-8 \x01";

static struct d2o_dlq_row row(const char *seq, const char *doc)
{
    struct d2o_dlq_row r = {0};

    r.sequence_number = seq;
    r.partition_key = "68406A366BD60300C59F519142163A14";
    r.table_name = "books";
    r.index_name = "books";
    r.doc_id = doc;
    r.version = 1732500000123456LL;
    r.raw = raw_bytes;
    r.raw_len = sizeof(raw_bytes) - 1;
    r.error_class = "mapper_parsing_exception";
    r.http_status = 400;
    r.error_message = "failed to parse field [pages]";
    r.attempts = 1;
    r.first_failed_us = 1732500000000000LL;
    r.last_failed_us = 1732500001000000LL;
    return r;
}

static struct d2o_checkpoint cp_at(const char *pos, const char *owner, int64_t counter)
{
    struct d2o_checkpoint cp = {"app", "s", "shardId-000000000000", owner, counter, pos};

    return cp;
}

START_TEST(dlq_rows_and_checkpoint_commit_together)
{
    PGconn *c = migrated();
    struct d2o_dlq_row rows[2] = {row("150", "b-1"), row("160", "b-2")};
    struct d2o_checkpoint cp = cp_at("170", "w1", 7);
    char err[512];
    char *v;
    PGresult *r;

    ck_assert_msg(d2o_dlq_commit(c, &cp, rows, 2, err, sizeof(err)) == 0, "%s", err);
    v = pgfx_scalar(c, "SELECT checkpoint FROM leases");
    ck_assert_str_eq(v, "170");
    free(v);
    v = pgfx_scalar(c, "SELECT count(*) FROM dlq WHERE state = 'pending'");
    ck_assert_str_eq(v, "2");
    free(v);
    ck_assert_int_eq(d2o_dlq_count_pending(c, "app", err, sizeof(err)), 2);
    /* The raw record comes back byte for byte, NUL and invalid UTF-8 included. */
    r = PQexecParams(c, "SELECT raw_record FROM dlq WHERE doc_id = 'b-1'", 0, NULL, NULL, NULL,
                     NULL, 1);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQgetlength(r, 0, 0), (int)sizeof(raw_bytes) - 1);
    ck_assert_int_eq(memcmp(PQgetvalue(r, 0, 0), raw_bytes, sizeof(raw_bytes) - 1), 0);
    PQclear(r);
    /* The same record failing again after a crash upserts instead of duplicating. */
    cp.position = "170";
    ck_assert_int_eq(d2o_dlq_commit(c, &cp, rows, 1, err, sizeof(err)), 0);
    v = pgfx_scalar(c, "SELECT count(*) || '/' || max(attempts) FROM dlq");
    ck_assert_str_eq(v, "2/2");
    free(v);
    /* Reading the shard again (checkpoint set backwards) does not revive a discarded row. */
    r = PQexec(c, "UPDATE dlq SET state = 'discarded', replay_result = 'discarded by test'"
                  " WHERE doc_id = 'b-1'");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    ck_assert_int_eq(d2o_dlq_commit(c, &cp, rows, 2, err, sizeof(err)), 0);
    v = pgfx_scalar(c, "SELECT string_agg(doc_id || ':' || state || ':' || attempts || ':' ||"
                       " coalesce(replay_result, '-'), ',' ORDER BY doc_id) FROM dlq");
    ck_assert_str_eq(v, "b-1:discarded:3:discarded by test,b-2:pending:2:-");
    free(v);
    PQfinish(c);
}
END_TEST

START_TEST(a_lost_lease_writes_nothing)
{
    PGconn *c = migrated();
    struct d2o_dlq_row rows[1] = {row("150", "b-1")};
    struct d2o_checkpoint wrong_owner = cp_at("170", "w2", 7);
    struct d2o_checkpoint stale_counter = cp_at("170", "w1", 6);
    struct d2o_checkpoint ok = cp_at("170", "w1", 7);
    char err[512];
    char *v;

    ck_assert_int_eq(d2o_dlq_commit(c, &wrong_owner, rows, 1, err, sizeof(err)), D2O_LEASE_E_LOST);
    ck_assert_ptr_nonnull(strstr(err, "no longer leased to w2"));
    ck_assert_int_eq(d2o_dlq_commit(c, &stale_counter, rows, 1, err, sizeof(err)),
                     D2O_LEASE_E_LOST);
    pgfx_sql(c, "UPDATE leases SET expires_at = now() - interval '1 second'");
    ck_assert_int_eq(d2o_dlq_commit(c, &ok, rows, 1, err, sizeof(err)), D2O_LEASE_E_LOST);
    v = pgfx_scalar(c, "SELECT (SELECT count(*) FROM dlq) || '/' || checkpoint FROM leases");
    ck_assert_str_eq(v, "0/100");
    free(v);
    PQfinish(c);
}
END_TEST

START_TEST(the_fence_reads_the_clock_not_the_transaction_start)
{
    PGconn *c = migrated();
    struct d2o_checkpoint ok = cp_at("170", "w1", 7);
    char err[512];
    char *v;

    /* A transaction that began while the lease was valid, and stalled past its expiry. */
    pgfx_sql(c, "UPDATE leases SET expires_at = clock_timestamp() + interval '300 ms'");
    pgfx_sql(c, "BEGIN");
    pgfx_sql(c, "SELECT pg_sleep(0.6)");
    ck_assert_int_eq(d2o_dlq_commit(c, &ok, NULL, 0, err, sizeof(err)), D2O_LEASE_E_LOST);
    v = pgfx_scalar(c, "SELECT checkpoint FROM leases");
    ck_assert_str_eq(v, "100");
    free(v);
    PQfinish(c);
}
END_TEST

START_TEST(a_checkpoint_does_not_wait_for_a_locked_lease_row)
{
    PGconn *c = migrated(), *other = pgfx_conn();
    struct d2o_checkpoint ok = cp_at("170", "w1", 7);
    char err[512];
    int64_t t0;

    pgfx_sql(c, "SET lock_timeout = '3s'");
    pgfx_sql(other, "BEGIN");
    pgfx_sql(other, "SELECT * FROM leases FOR UPDATE");
    t0 = d2o_mono_ms();
    ck_assert_int_eq(d2o_dlq_commit(c, &ok, NULL, 0, err, sizeof(err)), -EIO);
    ck_assert_int_lt(d2o_mono_ms() - t0, 1000);
    ck_assert_msg(strstr(err, "could not obtain lock") != NULL, "%s", err);
    pgfx_sql(other, "ROLLBACK");
    ck_assert_msg(d2o_dlq_commit(c, &ok, NULL, 0, err, sizeof(err)) == 0, "%s", err);
    PQfinish(other);
    PQfinish(c);
}
END_TEST

START_TEST(a_bounded_session_cannot_hold_a_lease_row)
{
    PGconn *c = migrated(), *b, *other = pgfx_conn();
    PGresult *r;
    char err[512], *v;
    int64_t t0;

    b = d2o_pg_connect_bounded(pgfx_conninfo(), "ddb2os-test", 500, err, sizeof(err));
    ck_assert_msg(b != NULL, "%s", err);
    v = pgfx_scalar(b, "SELECT current_setting('statement_timeout') || ' ' ||"
                       " current_setting('lock_timeout') || ' ' ||"
                       " current_setting('idle_in_transaction_session_timeout') || ' ' ||"
                       " current_setting('tcp_user_timeout')");
    ck_assert_str_eq(v, "500ms 500ms 500ms 500"); /* tcp_user_timeout has no unit */
    free(v);
    /* frozen inside a transaction that holds the lease row */
    pgfx_sql(b, "BEGIN");
    pgfx_sql(b, "SELECT * FROM leases FOR UPDATE");
    pgfx_sql(other, "SET lock_timeout = '5s'");
    t0 = d2o_mono_ms();
    pgfx_sql(other, "UPDATE leases SET owner = 'w2'");
    ck_assert_int_lt(d2o_mono_ms() - t0, 2500);
    /* the server ended the stalled session; its next statement fails */
    r = PQexec(b, "SELECT 1");
    ck_assert_int_ne(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    /* and a statement that runs too long is cut too */
    PQfinish(b);
    b = d2o_pg_connect_bounded(pgfx_conninfo(), "ddb2os-test", 500, err, sizeof(err));
    ck_assert_ptr_nonnull(b);
    r = PQexec(b, "SELECT pg_sleep(3)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "57014");
    PQclear(r);
    PQfinish(b);
    PQfinish(other);
    PQfinish(c);
}
END_TEST

/* Many shards in one statement: each is fenced on its own, and only the shards that pass get
 * their DLQ rows and their checkpoint; quotes and backslashes in the rows come back intact. */
START_TEST(a_batch_fences_each_shard_on_its_own)
{
    PGconn *c = migrated();
    struct d2o_checkpoint_batch *b = d2o_checkpoint_batch_new("app", "w1");
    struct d2o_dlq_row r0[1] = {row("150", "a\"b\\c,{d}")}, r1[1] = {row("250", "lost-doc")},
                       r2[1] = {row("350", "back-doc")},
                       r3[2] = {row("450", "e1"), row("460", "e2")};
    int outcome[4] = {9, 9, 9, 9};
    char err[512], *v;
    PGresult *r;

    pgfx_sql(c, "INSERT INTO leases (application, stream, shard_id, owner, lease_counter,"
                " expires_at, checkpoint) VALUES"
                " ('app', 's', 'shard-1', 'w2', 7, now() + interval '10 minutes', '100'),"
                " ('app', 's', 'shard-2', 'w1', 7, now() + interval '10 minutes', '900'),"
                " ('app', 's', 'shard-3', 'w1', 3, now() + interval '10 minutes', 'TRIM_HORIZON')");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(d2o_checkpoint_batch_add(b, "s", "shardId-000000000000", 7, "170", 0, r0, 1,
                                              err, sizeof(err)),
                     0);
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s", "shard-1", 7, "270", 0, r1, 1, err, sizeof(err)), 0);
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s", "shard-2", 7, "370", 0, r2, 1, err, sizeof(err)), 0);
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s", "shard-3", 3, "SHARD_END", 0, r3, 2, err, sizeof(err)), 0);
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s", "shard-4", 3, "12ab", 0, NULL, 0, err, sizeof(err)),
        -EINVAL);
    ck_assert_int_eq(d2o_checkpoint_batch_size(b), 4);
    ck_assert_msg(d2o_checkpoint_batch_prepare(c, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(d2o_checkpoint_batch_exec(c, b, true, outcome, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(outcome[0], 0);
    ck_assert_int_eq(outcome[1], D2O_LEASE_E_LOST);
    ck_assert_int_eq(outcome[2], -EINVAL);
    ck_assert_int_eq(outcome[3], 0);
    d2o_checkpoint_batch_why(b, 1, outcome[1], err, sizeof(err));
    ck_assert_ptr_nonnull(strstr(err, "shard-1 is no longer leased to w1 with counter 7"));
    d2o_checkpoint_batch_why(b, 2, outcome[2], err, sizeof(err));
    ck_assert_ptr_nonnull(strstr(err, "would move back from 900 to 370"));
    v = pgfx_scalar(c, "SELECT string_agg(shard_id || ':' || checkpoint, ',' ORDER BY shard_id)"
                       " FROM leases");
    ck_assert_str_eq(v, "shard-1:100,shard-2:900,shard-3:SHARD_END,shardId-000000000000:170");
    free(v);
    v = pgfx_scalar(c,
                    "SELECT string_agg(shard_id || ':' || doc_id, ',' ORDER BY doc_id) FROM dlq");
    ck_assert_str_eq(v, "shardId-000000000000:a\"b\\c,{d},shard-3:e1,shard-3:e2");
    free(v);
    r = PQexecParams(c, "SELECT raw_record FROM dlq WHERE doc_id = 'e2'", 0, NULL, NULL, NULL, NULL,
                     1);
    ck_assert_int_eq(PQgetlength(r, 0, 0), (int)sizeof(raw_bytes) - 1);
    ck_assert_int_eq(memcmp(PQgetvalue(r, 0, 0), raw_bytes, sizeof(raw_bytes) - 1), 0);
    PQclear(r);
    d2o_checkpoint_batch_free(b);
    PQfinish(c);
}
END_TEST

/* One turn of the many-shard batch test: every shard checkpoints to pos, with one DLQ row each
 * when with_dlq (the statement with the DLQ insert, else the one without); the outcomes land in
 * outcome[]. */
static void batch_turn(PGconn *c, int n, const char *pos, int turn, bool with_dlq, int *outcome)
{
    struct d2o_checkpoint_batch *b = d2o_checkpoint_batch_new("app", "w1");
    static char docs[256][48];
    char err[512], id[32];
    int i;

    ck_assert_ptr_nonnull(b);
    for (i = 0; i < n; i++) {
        struct d2o_dlq_row r[1];

        snprintf(id, sizeof(id), "shard-%03d", i);
        snprintf(docs[i], sizeof(docs[i]), "t%d-%s", turn, id);
        r[0] = row(pos, docs[i]);
        ck_assert_int_eq(
            d2o_checkpoint_batch_add(b, "s", id, 7, pos, 0, r, with_dlq ? 1 : 0, err, sizeof(err)),
            0);
    }
    ck_assert_msg(d2o_checkpoint_batch_exec(c, b, true, outcome, err, sizeof(err)) == 0, "%s", err);
    d2o_checkpoint_batch_free(b);
}

/* 200 shards in one statement, turn after turn (the prepared statements' generic plans from the
 * sixth on; the table first without statistics, then analysed; turns with DLQ rows and without
 * alternate, one statement each): a shard another worker stole, one its own worker re-took with
 * a new counter and one whose lease ran out are refused as lost in the batch, and keep their
 * checkpoint and get no DLQ row, while every other shard moves. */
START_TEST(a_batch_of_many_shards_refuses_each_lease_taken_elsewhere)
{
    enum { N = 200, TURNS = 20 };
    PGconn *c = migrated(), *other = pgfx_conn();
    static bool gone[N];
    int outcome[N], turn, i;
    char q[512], pos[32], err[512], *v;

    pgfx_sql(c, "DELETE FROM leases");
    pgfx_sql(c, "INSERT INTO leases (application, stream, shard_id, owner, lease_counter,"
                " expires_at, checkpoint) SELECT 'app', 's', 'shard-' || lpad(g::text, 3, '0'),"
                " 'w1', 7, now() + interval '10 minutes', '100' FROM generate_series(0, 199) g");
    ck_assert_msg(d2o_checkpoint_batch_prepare(c, err, sizeof(err)) == 0, "%s", err);
    for (turn = 0; turn < TURNS; turn++) {
        int stolen = (turn * 37) % N, retaken = (turn * 37 + 11) % N,
            expired = (turn * 37 + 23) % N;
        int moved = 0;
        bool with_dlq = turn % 2 == 0;

        if (turn == TURNS / 2) {
            pgfx_sql(c, "ANALYZE leases");
        }
        /* by the other workers' sessions, committed before the batch is sent */
        snprintf(q, sizeof(q),
                 "UPDATE leases SET owner = 'w2', lease_counter = lease_counter + 1"
                 " WHERE shard_id = 'shard-%03d'",
                 stolen);
        pgfx_sql(other, q);
        snprintf(
            q, sizeof(q),
            "UPDATE leases SET lease_counter = lease_counter + 1 WHERE shard_id = 'shard-%03d'",
            retaken);
        pgfx_sql(other, q);
        snprintf(q, sizeof(q),
                 "UPDATE leases SET expires_at = now() - interval '1 second'"
                 " WHERE shard_id = 'shard-%03d'",
                 expired);
        pgfx_sql(other, q);
        gone[stolen] = gone[retaken] = gone[expired] = true;
        snprintf(pos, sizeof(pos), "%d", 1000 + turn);
        batch_turn(c, N, pos, turn, with_dlq, outcome);
        for (i = 0; i < N; i++) {
            ck_assert_msg(outcome[i] == (gone[i] ? D2O_LEASE_E_LOST : 0),
                          "turn %d shard %d: outcome %d", turn, i, outcome[i]);
            moved += !gone[i];
        }
        snprintf(q, sizeof(q),
                 "SELECT (SELECT count(*) FROM leases WHERE checkpoint = '%s') || '/' ||"
                 " (SELECT count(*) FROM dlq WHERE doc_id LIKE 't%d-%%') || '/' ||"
                 " (SELECT count(*) FROM leases l WHERE (checkpoint = '%s' OR EXISTS (SELECT 1"
                 "   FROM dlq d WHERE d.shard_id = l.shard_id AND d.doc_id LIKE 't%d-%%'))"
                 "   AND (owner <> 'w1' OR lease_counter <> 7 OR expires_at < now()))",
                 pos, turn, pos, turn);
        v = pgfx_scalar(c, q);
        snprintf(q, sizeof(q), "%d/%d/0", moved, with_dlq ? moved : 0);
        ck_assert_msg(strcmp(v, q) == 0, "turn %d: moved/dlq/fenced-but-written %s, want %s", turn,
                      v, q);
        free(v);
    }
    PQfinish(other);
    PQfinish(c);
}
END_TEST

/* Migration 9 (a fillfactor and the position check without a regular expression) on a lease
 * table that has rows: every column of every row is as before, and the rows checkpoint with
 * their fences, with and without DLQ rows, in both directions of the position order. */
START_TEST(migration_9_keeps_the_lease_rows_and_their_checkpoints)
{
    PGconn *c = pgfx_conn();
    struct d2o_checkpoint_batch *b;
    struct d2o_dlq_row r0[1] = {row("1300", "m-1")};
    static const char rows_sql[] = "SELECT string_agg(l::text, E'\\n' ORDER BY l.shard_id) FROM"
                                   " leases l";
    char err[512], *before, *after, *v;
    int outcome[4] = {9, 9, 9, 9}, from = -1, to = -1;

    ck_assert_msg(d2o_pg_migrate_to(c, 8, &from, &to, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(to, 8);
    pgfx_sql(c, "INSERT INTO leases (application, stream, shard_id, owner, lease_counter,"
                " expires_at, checkpoint, version_last_ms, parent_shard_ids, hash_key_start,"
                " hash_key_end, throughput, checkpointed_at) VALUES"
                " ('app', 's', 'shard-a', 'w1', 7, now() + interval '10 minutes',"
                "  '000000000000000000001234', 1732500000123456, '{shard-p}', 0,"
                "  340282366920938463463374607431768211455, 12.5, now()),"
                " ('app', 's', 'shard-b', 'w1', 7, now() + interval '10 minutes',"
                "  '49590338271490256608559692538361571095921575989136588898', 0, '{}', NULL,"
                "  NULL, 0, NULL),"
                " ('app', 's', 'shard-c', 'w2', 3, now() + interval '10 minutes', 'SHARD_END', 0,"
                "  '{}', NULL, NULL, 0, NULL),"
                " ('app', 's', 'shard-d', NULL, 0, NULL, 'TRIM_HORIZON', 0, '{}', NULL, NULL, 0,"
                "  NULL)");
    /* more rows than one page holds, so that the table's pages are full before the migration */
    pgfx_sql(c, "INSERT INTO leases (application, stream, shard_id, owner, lease_counter,"
                " expires_at, checkpoint) SELECT 'app', 's2', 'shard-' || g, 'w1', 7,"
                " now() + interval '10 minutes', g::text FROM generate_series(1, 300) g");
    before = pgfx_scalar(c, rows_sql);
    ck_assert_msg(d2o_pg_migrate(c, &from, &to, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(from, 8);
    ck_assert_int_eq(to, d2o_pg_schema_latest);
    after = pgfx_scalar(c, rows_sql);
    ck_assert_str_eq(after, before);
    free(before);
    free(after);
    v = pgfx_scalar(c, "SELECT array_to_string(reloptions, ',') FROM pg_class"
                       " WHERE oid = 'leases'::regclass");
    ck_assert_str_eq(v, "fillfactor=50");
    free(v);
    ck_assert_msg(d2o_checkpoint_batch_prepare(c, err, sizeof(err)) == 0, "%s", err);
    /* without DLQ rows: a padded position moves on by its value, one moves back, one is fenced */
    b = d2o_checkpoint_batch_new("app", "w1");
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s", "shard-a", 7, "1235", 0, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s", "shard-b", 7, "4959", 0, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s", "shard-c", 3, "SHARD_END", 0, NULL, 0, err, sizeof(err)),
        0);
    ck_assert_msg(d2o_checkpoint_batch_exec(c, b, true, outcome, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(outcome[0], 0);
    ck_assert_int_eq(outcome[1], -EINVAL);
    ck_assert_int_eq(outcome[2], D2O_LEASE_E_LOST);
    d2o_checkpoint_batch_why(b, 1, outcome[1], err, sizeof(err));
    ck_assert_ptr_nonnull(strstr(err, "would move back from 49590338271490256608559692538361571"));
    d2o_checkpoint_batch_free(b);
    /* with a DLQ row; the version of a DynamoDB stream's record */
    b = d2o_checkpoint_batch_new("app", "w1");
    ck_assert_int_eq(d2o_checkpoint_batch_add(b, "s", "shard-a", 7, "1400", 1732500000999999, r0, 1,
                                              err, sizeof(err)),
                     0);
    ck_assert_int_eq(
        d2o_checkpoint_batch_add(b, "s2", "shard-300", 7, "301", 0, NULL, 0, err, sizeof(err)), 0);
    ck_assert_msg(d2o_checkpoint_batch_exec(c, b, true, outcome, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(outcome[0], 0);
    ck_assert_int_eq(outcome[1], 0);
    d2o_checkpoint_batch_free(b);
    v = pgfx_scalar(c, "SELECT string_agg(shard_id || ':' || checkpoint || ':' || version_last_ms"
                       " || ':' || array_to_string(parent_shard_ids, ','), ' ' ORDER BY shard_id)"
                       " FROM leases WHERE stream = 's' OR shard_id = 'shard-300'");
    ck_assert_str_eq(v, "shard-300:301:0: shard-a:1400:1732500000999999:shard-p"
                        " shard-b:49590338271490256608559692538361571095921575989136588898:0:"
                        " shard-c:SHARD_END:0: shard-d:TRIM_HORIZON:0:");
    free(v);
    v = pgfx_scalar(c, "SELECT shard_id || ':' || doc_id FROM dlq");
    ck_assert_str_eq(v, "shard-a:m-1");
    free(v);
    PQfinish(c);
}
END_TEST

/* The lease row itself refuses what is not a position: 1 to 129 digits or one of the names. */
START_TEST(a_lease_row_holds_only_positions)
{
    static const char *const good[] = {"0",      "00042",        "TRIM_HORIZON",
                                       "LATEST", "AT_TIMESTAMP", "SHARD_END"};
    static const char *const bad[] = {"",    "12ab",      " 12",  "12 ",     "-1",
                                      "1.5", "shard_end", "1\n2", "\xd9\xa3"};
    PGconn *c = migrated();
    char q[512], digits[131];
    PGresult *r;
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(q, sizeof(q), "UPDATE leases SET checkpoint = '%s'", good[i]);
        pgfx_sql(c, q);
    }
    memset(digits, '9', 129);
    digits[129] = '\0';
    snprintf(q, sizeof(q), "UPDATE leases SET checkpoint = '%s'", digits);
    pgfx_sql(c, q);
    for (i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
        const char *p = i < sizeof(bad) / sizeof(bad[0]) ? bad[i] : "";
        const char *v[1] = {p};

        if (i == sizeof(bad) / sizeof(bad[0])) { /* 130 digits */
            memset(digits, '1', 130);
            digits[130] = '\0';
            v[0] = digits;
        }
        r = PQexecParams(c, "UPDATE leases SET checkpoint = $1", 1, NULL, v, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR, "'%s' was stored", v[0]);
        ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514"); /* check_violation */
        PQclear(r);
    }
    PQfinish(c);
}
END_TEST

START_TEST(a_checkpoint_never_moves_back)
{
    PGconn *c = migrated();
    struct d2o_checkpoint back = cp_at("99", "w1", 7);
    struct d2o_checkpoint end = cp_at("SHARD_END", "w1", 7);
    struct d2o_checkpoint after_end = cp_at("1000", "w1", 7);
    struct d2o_checkpoint junk = cp_at("12ab", "w1", 7);
    char err[512];

    ck_assert_int_eq(d2o_dlq_commit(c, &back, NULL, 0, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "would move back from 100 to 99"));
    ck_assert_int_eq(d2o_dlq_commit(c, &junk, NULL, 0, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(d2o_dlq_commit(c, &end, NULL, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_dlq_commit(c, &after_end, NULL, 0, err, sizeof(err)), -EINVAL);
    ck_assert_int_lt(d2o_checkpoint_cmp("TRIM_HORIZON", "0"), 0);
    ck_assert_int_lt(d2o_checkpoint_cmp("99", "100"), 0);
    ck_assert_int_gt(d2o_checkpoint_cmp("SHARD_END", "99999999999999999999999999999"), 0);
    PQfinish(c);
}
END_TEST

START_TEST(a_crash_before_commit_leaves_nothing)
{
    PGconn *c = migrated();
    pid_t kid = d2o_test_fork();
    int status;
    char *v;

    if (kid == 0) {
        PGconn *k = pgfx_conn();
        PGresult *r;

        /* Half a commit: rows written and checkpoint moved, then the process dies. */
        r = PQexec(k, "BEGIN; INSERT INTO dlq (application, stream, shard_id, sequence_number,"
                      " raw_record, error_class, first_failed_at, last_failed_at) VALUES ('app',"
                      " 's', 'shardId-000000000000', '150', '\\x00', 'x', now(), now());"
                      " UPDATE leases SET checkpoint = '500'");
        PQclear(r);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(kid, &status, 0), kid);
    v = pgfx_scalar(c, "SELECT (SELECT count(*) FROM dlq) || '/' || checkpoint FROM leases");
    ck_assert_str_eq(v, "0/100");
    free(v);
    PQfinish(c);
}
END_TEST

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

START_TEST(checkpoint_latency)
{
    PGconn *c = migrated();
    static int64_t lat[2000];
    char pos[32], err[512];
    int i;

    /* a loaded machine may take longer than the fixture's 10 s lease for 2000 commits */
    pgfx_sql(c, "UPDATE leases SET expires_at = now() + interval '10 minutes'");
    for (i = 0; i < 2000; i++) {
        struct d2o_checkpoint cp = cp_at(pos, "w1", 7);
        int64_t t0;

        snprintf(pos, sizeof(pos), "%d", 1000 + i);
        t0 = d2o_mono_us();
        ck_assert_int_eq(d2o_dlq_commit(c, &cp, NULL, 0, err, sizeof(err)), 0);
        lat[i] = d2o_mono_us() - t0;
    }
    qsort(lat, 2000, sizeof(lat[0]), cmp_i64);
    printf("fenced checkpoint latency over 2000 commits: p50 %lld us, p99 %lld us\n",
           (long long)lat[1000], (long long)lat[1980]);
    PQfinish(c);
}
END_TEST

START_TEST(operator_views_answer)
{
    PGconn *c = migrated();
    struct d2o_dlq_row rows[2] = {row("150", "b-1"), row("160", "b-2")};
    struct d2o_checkpoint cp = cp_at("170", "w1", 7);
    char err[512];
    char *v;

    ck_assert_msg(d2o_dlq_commit(c, &cp, rows, 2, err, sizeof(err)) == 0, "%s", err);
    pgfx_sql(c, "INSERT INTO workers (application, id, host, pid) VALUES ('app', 'w1', 'h', 1)");
    v = pgfx_scalar(c, "SELECT state || '/' || owner || '/' || checkpoint || '/' || dlq_pending"
                       " FROM lease_status");
    ck_assert_str_eq(v, "owned/w1/170/2");
    free(v);
    v = pgfx_scalar(c, "SELECT leases_held FROM worker_status WHERE id = 'w1'");
    ck_assert_str_eq(v, "1");
    free(v);
    v = pgfx_scalar(c, "SELECT error_class || '/' || rows FROM dlq_summary");
    ck_assert_str_eq(v, "mapper_parsing_exception/2");
    free(v);
    pgfx_sql(c, "UPDATE leases SET expires_at = now() - interval '1 s'");
    v = pgfx_scalar(c, "SELECT state FROM lease_status");
    ck_assert_str_eq(v, "expired");
    free(v);
    PQfinish(c);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("pg_store");
    TCase *tc = tcase_create("pg");

    tcase_add_checked_fixture(tc, setup, pgfx_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, migrations_apply_once_and_refuse_a_newer_schema);
    tcase_add_test(tc, concurrent_migrations_are_serialised);
    tcase_add_test(tc, dlq_rows_and_checkpoint_commit_together);
    tcase_add_test(tc, a_lost_lease_writes_nothing);
    tcase_add_test(tc, a_checkpoint_never_moves_back);
    tcase_add_test(tc, a_batch_fences_each_shard_on_its_own);
    tcase_add_test(tc, a_batch_of_many_shards_refuses_each_lease_taken_elsewhere);
    tcase_add_test(tc, a_lease_row_holds_only_positions);
    tcase_add_test(tc, migration_9_keeps_the_lease_rows_and_their_checkpoints);
    tcase_add_test(tc, the_fence_reads_the_clock_not_the_transaction_start);
    tcase_add_test(tc, a_checkpoint_does_not_wait_for_a_locked_lease_row);
    tcase_add_test(tc, a_bounded_session_cannot_hold_a_lease_row);
    tcase_add_test(tc, a_crash_before_commit_leaves_nothing);
    tcase_add_test(tc, operator_views_answer);
    tcase_add_test(tc, checkpoint_latency);
    suite_add_tcase(s, tc);
    return s;
}
