/*
 * Operator commands over the lease table: status, leases, workers, lease release|assign,
 * checkpoint set. They answer "which shard is behind, who owns it, how do I move or reset it"
 * from the views of migration 2 and change leases the way workers do (new epoch, audit row).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o/cli.h"
#include "d2o/pg.h"
#include "d2o/util.h"

struct ops_opts {
    bool json, force;
    const char *at;
};

static int on_opt(int opt, const char *arg, void *ctx)
{
    struct ops_opts *o = ctx;

    switch (opt) {
    case 'j':
        o->json = true;
        return 0;
    case 'f':
        o->force = true;
        return 0;
    case 'a':
        o->at = arg;
        return 0;
    default:
        return D2O_EXIT_USAGE;
    }
}

static const struct option extra[] = {
    {"json", no_argument, NULL, 'j'},
    {"force", no_argument, NULL, 'f'},
    {"at", required_argument, NULL, 'a'},
    {NULL, 0, NULL, 0},
};

/* Prints a result as an aligned table, or as a JSON array of objects (all values as text). */
static int print_result(PGresult *r, bool json)
{
    int rows = PQntuples(r), cols = PQnfields(r), i, j;
    int width[32];

    if (json) {
        struct d2o_buf b = D2O_BUF_INIT;
        int e = d2o_buf_putc(&b, '[');

        for (i = 0; i < rows && e == 0; i++) {
            e |= d2o_buf_puts(&b, i ? ",\n {" : "{");
            for (j = 0; j < cols; j++) {
                const char *name = PQfname(r, j);

                e |= d2o_buf_printf(&b, "%s", j ? "," : "");
                e |= d2o_buf_json_str(&b, name, strlen(name));
                e |= d2o_buf_putc(&b, ':');
                if (PQgetisnull(r, i, j)) {
                    e |= d2o_buf_puts(&b, "null");
                } else {
                    e |= d2o_buf_json_str(&b, PQgetvalue(r, i, j), (size_t)PQgetlength(r, i, j));
                }
            }
            e |= d2o_buf_putc(&b, '}');
        }
        e |= d2o_buf_puts(&b, "]\n");
        if (e == 0) {
            fwrite(b.data, 1, b.len, stdout);
        }
        d2o_buf_free(&b);
        return e ? -ENOMEM : 0;
    }
    if (cols > 32) {
        cols = 32;
    }
    for (j = 0; j < cols; j++) {
        width[j] = (int)strlen(PQfname(r, j));
        for (i = 0; i < rows; i++) {
            int w = PQgetlength(r, i, j);

            if (w > width[j]) {
                width[j] = w > 40 ? 40 : w;
            }
        }
    }
    for (j = 0; j < cols; j++) {
        printf("%-*s%s", width[j], PQfname(r, j), j + 1 < cols ? "  " : "\n");
    }
    for (i = 0; i < rows; i++) {
        for (j = 0; j < cols; j++) {
            printf("%-*.*s%s", width[j], 40, PQgetisnull(r, i, j) ? "-" : PQgetvalue(r, i, j),
                   j + 1 < cols ? "  " : "\n");
        }
    }
    return 0;
}

static int run_query(PGconn *c, const char *sql, int n, const char *const *values, bool json,
                     const char *what)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, values, NULL, NULL, 0);
    char err[512];
    int rc = D2O_EXIT_OK;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, what, err, sizeof(err));
        fprintf(stderr, "ddb2os %s: %s\n", what, err);
        rc = D2O_EXIT_FAIL;
    } else if (print_result(r, json) < 0) {
        rc = D2O_EXIT_FAIL;
    }
    PQclear(r);
    return rc;
}

/* Parses, connects; returns -1 to go on with *c and operands from optind. */
static int begin(int argc, char **argv, const char *usage, struct ops_opts *o,
                 struct d2o_config *conf, PGconn **c, int min_operands, int max_operands)
{
    char err[512];
    int r, operands;

    memset(o, 0, sizeof(*o));
    r = d2o_cli_parse(argc, argv, usage, NULL, extra, on_opt, o, conf);
    if (r != 0) {
        return r == -1 ? D2O_EXIT_OK : r;
    }
    operands = argc - optind;
    if (operands < min_operands || operands > max_operands) {
        d2o_conf_free(conf);
        return d2o_cli_usage_error(argv[0], "expected %d to %d arguments, got %d", min_operands,
                                   max_operands, operands);
    }
    *c = d2o_pg_connect(conf->pg_conninfo, "ddb2os cli", err, sizeof(err));
    if (!*c) {
        fprintf(stderr, "ddb2os %s: %s\n", argv[0], err);
        d2o_conf_free(conf);
        return D2O_EXIT_FAIL;
    }
    return -1;
}

int d2o_cmd_status(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os status [--json] [-c FILE]\n\n"
        "One row per shard of this application: state, owner, checkpoint age, MillisBehindLatest,\n"
        "records/s and pending DLQ rows, the most behind first; totals at the bottom.\n";
    static const char sql[] =
        "SELECT stream, shard_id AS shard, state, coalesce(owner, '-') AS owner,"
        " coalesce(extract(epoch FROM checkpoint_age)::bigint::text, '-') AS checkpoint_age_s,"
        " coalesce(millis_behind_latest::text, '-') AS behind_ms,"
        " round(throughput, 1) AS records_per_s, dlq_pending"
        " FROM lease_status WHERE application = $1"
        " ORDER BY millis_behind_latest DESC NULLS LAST, checkpoint_age DESC NULLS FIRST, shard_id";
    static const char totals[] =
        "SELECT count(*) AS shards, count(*) FILTER (WHERE state = 'owned') AS owned,"
        " count(*) FILTER (WHERE state IN ('unowned', 'expired')) AS unowned,"
        " coalesce(max(millis_behind_latest)::text, '-') AS max_behind_ms,"
        " coalesce(round(sum(throughput), 1), 0) AS records_per_s,"
        " coalesce(sum(dlq_pending), 0) AS dlq_pending"
        " FROM lease_status WHERE application = $1 AND state <> 'finished'";
    struct ops_opts o;
    struct d2o_config conf;
    PGconn *c = NULL;
    const char *values[1];
    int r = begin(argc, argv, usage, &o, &conf, &c, 0, 0);

    if (r >= 0) {
        return r;
    }
    values[0] = conf.application;
    r = run_query(c, sql, 1, values, o.json, "status");
    if (r == D2O_EXIT_OK && !o.json) {
        printf("\n");
        r = run_query(c, totals, 1, values, false, "status");
    }
    PQfinish(c);
    d2o_conf_free(&conf);
    return r;
}

int d2o_cmd_leases(int argc, char **argv)
{
    static const char usage[] = "usage: ddb2os leases [--json] [-c FILE]\n\n"
                                "Every lease row of this application (the lease_status view).\n";
    struct ops_opts o;
    struct d2o_config conf;
    PGconn *c = NULL;
    const char *values[1];
    int r = begin(argc, argv, usage, &o, &conf, &c, 0, 0);

    if (r >= 0) {
        return r;
    }
    values[0] = conf.application;
    r = run_query(c,
                  "SELECT stream, shard_id, state, owner, lease_counter,"
                  " date_trunc('second', expires_in) AS expires_in, checkpoint,"
                  " date_trunc('second', checkpoint_age) AS checkpoint_age, owner_switches,"
                  " pending_owner, parent_shard_ids, dlq_pending FROM lease_status"
                  " WHERE application = $1 ORDER BY stream, shard_id",
                  1, values, o.json, "leases");
    PQfinish(c);
    d2o_conf_free(&conf);
    return r;
}

int d2o_cmd_workers(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os workers [--json] [-c FILE]\n\n"
        "Live and dead workers of this application: a worker is live while its heartbeat is\n"
        "younger than three lease periods (lease_ms).\n";
    struct ops_opts o;
    struct d2o_config conf;
    PGconn *c = NULL;
    char ms[24];
    const char *values[2];
    int r = begin(argc, argv, usage, &o, &conf, &c, 0, 0);

    if (r >= 0) {
        return r;
    }
    snprintf(ms, sizeof(ms), "%lld", (long long)conf.lease_ms * 3);
    values[0] = conf.application;
    values[1] = ms;
    r = run_query(
        c,
        "SELECT id, CASE WHEN stopped_at IS NOT NULL THEN 'stopped'"
        " WHEN heartbeat_age < make_interval(secs => $2::double precision"
        " / 1000) THEN 'live' ELSE 'dead' END AS state, host, pid, task_id,"
        " date_trunc('second', heartbeat_age) AS heartbeat_age, leases_held,"
        " records_per_s FROM worker_status WHERE application = $1 ORDER BY state DESC, id",
        2, values, o.json, "workers");
    PQfinish(c);
    d2o_conf_free(&conf);
    return r;
}

/* Runs a statement that must change exactly one lease row; explains when it does not. */
static int change_one(PGconn *c, const char *sql, int n, const char *const *values,
                      const char *what, const char *shard)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, values, NULL, NULL, 0);
    char err[512];
    int rc = D2O_EXIT_OK;

    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        d2o_pg_error(c, r, what, err, sizeof(err));
        fprintf(stderr, "ddb2os %s: %s\n", what, err);
        rc = D2O_EXIT_FAIL;
    } else if (PQntuples(r) == 0 && strcmp(PQcmdTuples(r), "0") == 0) {
        fprintf(stderr, "ddb2os %s: no lease row for shard %s in this application\n", what, shard);
        rc = D2O_EXIT_FAIL;
    }
    PQclear(r);
    return rc;
}

int d2o_cmd_lease(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os lease release SHARD\n"
        "       ddb2os lease assign SHARD WORKER\n\n"
        "release  clears the owner now (new epoch): any worker may take the shard at once; the\n"
        "         old owner's next renewal or checkpoint is refused, so it stops.\n"
        "assign   moves the shard to WORKER: an unowned shard is given at once; an owned one is\n"
        "         handed over gracefully (the owner checkpoints at its next batch and hands it\n"
        "         over; after one lease period WORKER may take it anyway).\n";
    static const char release_sql[] =
        "WITH prev AS (SELECT stream, shard_id, owner FROM leases WHERE application = $1"
        "   AND shard_id = $2 AND ($3::text = '' OR stream = $3) FOR UPDATE),"
        " r AS (UPDATE leases l SET owner = NULL, expires_at = NULL,"
        "   lease_counter = l.lease_counter + 1, pending_owner = NULL, handoff_deadline = NULL,"
        "   updated_at = now() FROM prev WHERE l.application = $1 AND l.stream = prev.stream"
        "   AND l.shard_id = prev.shard_id"
        "   RETURNING l.stream, l.shard_id, l.lease_counter, prev.owner AS prev_owner)"
        " INSERT INTO lease_events (application, stream, shard_id, event, owner, previous_owner,"
        " lease_counter) SELECT $1, stream, shard_id, 'release', NULL, prev_owner, lease_counter"
        " FROM r RETURNING id";
    static const char assign_sql[] =
        "WITH a AS (UPDATE leases SET"
        " owner = CASE WHEN owner IS NULL OR expires_at <= now() THEN $4 ELSE owner END,"
        " lease_counter = CASE WHEN owner IS NULL OR expires_at <= now() THEN lease_counter + 1"
        "   ELSE lease_counter END,"
        " expires_at = CASE WHEN owner IS NULL OR expires_at <= now()"
        "   THEN now() + make_interval(secs => $5::double precision / 1000) ELSE expires_at END,"
        " pending_owner = CASE WHEN owner IS NULL OR expires_at <= now() THEN NULL ELSE $4 END,"
        " handoff_deadline = CASE WHEN owner IS NULL OR expires_at <= now() THEN NULL"
        "   ELSE now() + make_interval(secs => $5::double precision / 1000) END,"
        " updated_at = now()"
        " WHERE application = $1 AND shard_id = $2 AND ($3::text = '' OR stream = $3)"
        "   AND checkpoint <> 'SHARD_END'"
        " RETURNING stream, shard_id, owner, lease_counter, pending_owner)"
        " INSERT INTO lease_events (application, stream, shard_id, event, owner, lease_counter)"
        " SELECT $1, stream, shard_id, 'assign', coalesce(pending_owner, owner), lease_counter"
        " FROM a RETURNING id";
    struct ops_opts o;
    struct d2o_config conf;
    PGconn *c = NULL;
    char ms[24];
    const char *values[5];
    const char *action;
    int r = begin(argc, argv, usage, &o, &conf, &c, 2, 3);

    if (r >= 0) {
        return r;
    }
    action = argv[optind];
    values[0] = conf.application;
    values[1] = argv[optind + 1];
    values[2] = conf.stream_name;
    if (strcmp(action, "release") == 0 && argc - optind == 2) {
        r = change_one(c, release_sql, 3, values, "lease release", argv[optind + 1]);
        if (r == D2O_EXIT_OK) {
            printf("released %s\n", argv[optind + 1]);
        }
    } else if (strcmp(action, "assign") == 0 && argc - optind == 3) {
        snprintf(ms, sizeof(ms), "%lld", (long long)conf.lease_ms);
        values[3] = argv[optind + 2];
        values[4] = ms;
        r = change_one(c, assign_sql, 5, values, "lease assign", argv[optind + 1]);
        if (r == D2O_EXIT_OK) {
            printf("assigned %s to %s\n", argv[optind + 1], argv[optind + 2]);
        }
    } else {
        r = d2o_cli_usage_error("lease",
                                "use 'lease release SHARD' or 'lease assign SHARD WORKER'");
    }
    PQfinish(c);
    d2o_conf_free(&conf);
    return r;
}

int d2o_cmd_checkpoint(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os checkpoint set SHARD --at TRIM_HORIZON|LATEST|SEQUENCE|TIMESTAMP [--force]\n"
        "\n"
        "Moves where the shard's next reader starts: TRIM_HORIZON, LATEST, a sequence number, or\n"
        "a time (e.g. 2026-11-25T03:00:00Z, read AT_TIMESTAMP). Refused while a worker owns the\n"
        "shard; --force also takes the lease away (new epoch), so the owner's next checkpoint is\n"
        "refused and it stops.\n";
    static const char sql[] =
        "WITH s AS (UPDATE leases SET checkpoint = $4,"
        " checkpoint_timestamp = $5::timestamptz,"
        " owner = NULL, expires_at = NULL, pending_owner = NULL, handoff_deadline = NULL,"
        " lease_counter = lease_counter + 1, updated_at = now()"
        " WHERE application = $1 AND shard_id = $2 AND ($3::text = '' OR stream = $3)"
        "   AND ($6 = 'force' OR owner IS NULL OR expires_at <= now())"
        " RETURNING stream, shard_id, lease_counter)"
        " INSERT INTO lease_events (application, stream, shard_id, event, lease_counter)"
        " SELECT $1, stream, shard_id, 'checkpoint_reset', lease_counter FROM s RETURNING id";
    struct ops_opts o;
    struct d2o_config conf;
    PGconn *c = NULL;
    const char *values[6], *position = NULL, *ts = NULL;
    int r = begin(argc, argv, usage, &o, &conf, &c, 2, 2);

    if (r >= 0) {
        return r;
    }
    if (strcmp(argv[optind], "set") != 0 || !o.at) {
        r = d2o_cli_usage_error("checkpoint", "use 'checkpoint set SHARD --at POSITION'");
        goto out;
    }
    if (strcmp(o.at, "TRIM_HORIZON") == 0 || strcmp(o.at, "LATEST") == 0) {
        position = o.at;
    } else if (strspn(o.at, "0123456789") == strlen(o.at) && strlen(o.at) <= 129) {
        position = o.at;
    } else if (strchr(o.at, 'T') && strchr(o.at, '-')) {
        position = "AT_TIMESTAMP";
        ts = o.at;
    } else {
        r = d2o_cli_usage_error("checkpoint",
                                "--at '%s' is not TRIM_HORIZON, LATEST, a sequence number or a "
                                "time like 2026-11-25T03:00:00Z",
                                o.at);
        goto out;
    }
    values[0] = conf.application;
    values[1] = argv[optind + 1];
    values[2] = conf.stream_name;
    values[3] = position;
    values[4] = ts;
    values[5] = o.force ? "force" : "";
    {
        PGresult *q = PQexecParams(c, sql, 6, NULL, values, NULL, NULL, 0);
        char err[512];

        if (PQresultStatus(q) != PGRES_TUPLES_OK) {
            d2o_pg_error(c, q, "checkpoint set", err, sizeof(err));
            fprintf(stderr, "ddb2os checkpoint set: %s\n", err);
            r = D2O_EXIT_FAIL;
        } else if (PQntuples(q) == 0) {
            fprintf(stderr,
                    "ddb2os checkpoint set: shard %s is owned by a live worker (or has no lease "
                    "row); release it first or use --force\n",
                    argv[optind + 1]);
            r = D2O_EXIT_FAIL;
        } else {
            printf("checkpoint of %s set to %s%s%s\n", argv[optind + 1], position, ts ? " " : "",
                   ts ? ts : "");
            r = D2O_EXIT_OK;
        }
        PQclear(q);
    }
out:
    PQfinish(c);
    d2o_conf_free(&conf);
    return r;
}
