/*
 * Operator commands over the lease table: status, leases, workers, lease release|assign,
 * checkpoint set. They answer "which shard is behind, who owns it, how do I move or reset it"
 * from the views of migration 2 and change leases the way workers do (new epoch, audit row).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "d2o/buf.h"
#include "d2o/cli.h"
#include "d2o/creds.h"
#include "d2o/ddbstreams.h"
#include "d2o/http.h"
#include "d2o/kinesis.h"
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

/* The widest a value is shown; longer ones are cut there, except in the columns that name what
 * an operator pastes into a command (a stream, a DynamoDB stream's ARN above all, and a shard). */
#define CELL_MAX 40

static int cell_max(const char *column)
{
    return strcmp(column, "stream") == 0 || strcmp(column, "shard") == 0 ? INT_MAX : CELL_MAX;
}

/* Prints a result as an aligned table; NULL prints as '-'; no line ends in blanks. */
static void print_table(PGresult *r)
{
    int rows = PQntuples(r), cols = PQnfields(r), i, j;
    int width[32], max[32];

    if (cols > 32) {
        cols = 32;
    }
    for (j = 0; j < cols; j++) {
        width[j] = (int)strlen(PQfname(r, j));
        max[j] = cell_max(PQfname(r, j));
        for (i = 0; i < rows; i++) {
            int w = PQgetlength(r, i, j);

            if (w > width[j]) {
                width[j] = w > max[j] ? max[j] : w;
            }
        }
    }
    for (j = 0; j < cols; j++) {
        printf("%-*s%s", j + 1 < cols ? width[j] : 0, PQfname(r, j), j + 1 < cols ? "  " : "\n");
    }
    for (i = 0; i < rows; i++) {
        for (j = 0; j < cols; j++) {
            printf("%-*.*s%s", j + 1 < cols ? width[j] : 0, max[j],
                   PQgetisnull(r, i, j) ? "-" : PQgetvalue(r, i, j), j + 1 < cols ? "  " : "\n");
        }
    }
}

/* Runs a query and prints its rows as a table, or (json) as a JSON array of objects whose
 * values have their SQL types: numbers, booleans, arrays, null. */
static int run_query(PGconn *c, const char *sql, int n, const char *const *values, bool json,
                     const char *what)
{
    struct d2o_buf q = D2O_BUF_INIT;
    PGresult *r = NULL;
    char err[512];
    int rc = D2O_EXIT_OK;

    if (json && d2o_buf_printf(&q, "SELECT coalesce(json_agg(q), '[]') FROM (%s) q", sql) < 0) {
        return D2O_EXIT_FAIL;
    }
    r = PQexecParams(c, json ? q.data : sql, n, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, what, err, sizeof(err));
        fprintf(stderr, "ddb2os %s\n", err);
        rc = D2O_EXIT_FAIL;
    } else if (json) {
        printf("%s\n", PQgetvalue(r, 0, 0));
    } else {
        print_table(r);
    }
    PQclear(r);
    d2o_buf_free(&q);
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
    if (!*c || d2o_pg_require_schema(*c, err, sizeof(err)) < 0) {
        fprintf(stderr, "ddb2os %s: %s\n", argv[0], err);
        PQfinish(*c);
        *c = NULL;
        d2o_conf_free(conf);
        return D2O_EXIT_FAIL;
    }
    return -1;
}

/* Which source a lease row's stream is read from, derived from its name: a DynamoDB stream ARN
 * (arn:<partition>:dynamodb:<region>:<account>:table/<name>/stream/<label>) is the table's own
 * DynamoDB stream; any other name or ARN is a Kinesis data stream. */
#define SOURCE_COLUMN                                                                              \
    "CASE WHEN stream ~ '^arn:[^:]+:dynamodb:[^:]*:[^:]*:table/[^/]+/stream/.'"                    \
    " THEN 'dynamodb-streams' ELSE 'kinesis' END AS source"

int d2o_cmd_status(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os status [--json] [-c FILE]\n\n"
        "One row per shard of this application: state, owner, checkpoint age, MillisBehindLatest,\n"
        "records/s, pending DLQ rows and the source (kinesis or dynamodb-streams), the most\n"
        "behind first; totals at the bottom.\n";
    static const char sql[] =
        "SELECT stream, shard_id AS shard, state, owner,"
        " floor(extract(epoch FROM checkpoint_age))::bigint AS checkpoint_age_s,"
        " millis_behind_latest AS behind_ms,"
        " round(throughput, 1) AS records_per_s, dlq_pending, " SOURCE_COLUMN
        " FROM lease_status WHERE application = $1"
        " ORDER BY millis_behind_latest DESC NULLS LAST, checkpoint_age DESC NULLS FIRST, shard_id";
    static const char totals[] =
        "SELECT count(*) AS shards, count(*) FILTER (WHERE state = 'owned') AS owned,"
        " count(*) FILTER (WHERE state IN ('unowned', 'expired')) AS unowned,"
        " max(millis_behind_latest) AS max_behind_ms,"
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
                  "SELECT stream, shard_id AS shard, state, owner, lease_counter,"
                  " date_trunc('second', expires_in) AS expires_in, checkpoint,"
                  " date_trunc('second', checkpoint_age) AS checkpoint_age, owner_switches,"
                  " pending_owner, parent_shard_ids, dlq_pending, " SOURCE_COLUMN
                  " FROM lease_status"
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
        fprintf(stderr, "ddb2os %s\n", err);
        rc = D2O_EXIT_FAIL;
    } else if (PQntuples(r) == 0 && strcmp(PQcmdTuples(r), "0") == 0) {
        fprintf(stderr, "ddb2os %s: no lease row for shard %s in this application\n", what, shard);
        rc = D2O_EXIT_FAIL;
    }
    PQclear(r);
    return rc;
}

/* 1 when id is a live worker of application (heartbeat younger than three lease periods, not
 * stopped), 0 when not, -1 on a database error (printed). */
static int worker_live(PGconn *c, const char *application, const char *id, int64_t lease_ms)
{
    static const char sql[] =
        "SELECT 1 FROM workers WHERE application = $1 AND id = $2 AND stopped_at IS NULL"
        " AND heartbeat_at > now() - make_interval(secs => $3::double precision / 1000)";
    const char *values[3];
    char ms[24], err[512];
    PGresult *r;
    int live;

    snprintf(ms, sizeof(ms), "%lld", (long long)lease_ms * 3);
    values[0] = application;
    values[1] = id;
    values[2] = ms;
    r = PQexecParams(c, sql, 3, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, "lease assign", err, sizeof(err));
        fprintf(stderr, "ddb2os %s\n", err);
        PQclear(r);
        return -1;
    }
    live = PQntuples(r) > 0;
    PQclear(r);
    return live;
}

/*
 * A lease row's stream against stream_name ($3): any stream when it is empty, the same name, or,
 * for a DynamoDB stream named by its table, any stream of that table (the rows name the stream's
 * ARN, and a table whose stream was enabled again has rows of each of its streams).
 */
#define STREAM_MATCH                                                                               \
    "($3::text = '' OR stream = $3 OR position(':table/' || $3 || '/stream/' in stream) > 0)"

int d2o_cmd_lease(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os lease release SHARD\n"
        "       ddb2os lease assign SHARD WORKER [--force]\n\n"
        "release  clears the owner now (new epoch): any worker may take the shard at once; the\n"
        "         old owner's next renewal or checkpoint is refused, so it stops.\n"
        "assign   moves the shard to WORKER: an unowned shard is given at once; an owned one is\n"
        "         handed over gracefully (the owner checkpoints at its next batch and hands it\n"
        "         over; after one lease period WORKER may take it anyway). WORKER must be a\n"
        "         live worker id as 'ddb2os workers' shows it (task_id:pid); --force skips\n"
        "         that check. The balancer leaves an assigned shard where it is for an hour.\n";
    static const char release_sql[] =
        "WITH prev AS (SELECT stream, shard_id, owner FROM leases WHERE application = $1"
        "   AND shard_id = $2 AND " STREAM_MATCH " FOR UPDATE),"
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
        " WHERE application = $1 AND shard_id = $2 AND " STREAM_MATCH
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
        r = o.force ? 1 : worker_live(c, conf.application, argv[optind + 2], conf.lease_ms);
        if (r == 0) {
            fprintf(stderr,
                    "ddb2os lease assign: '%s' is not a live worker of application '%s' (see "
                    "'ddb2os workers' for the ids); use --force to assign it anyway\n",
                    argv[optind + 2], conf.application);
            r = D2O_EXIT_FAIL;
        } else if (r < 0) {
            r = D2O_EXIT_FAIL;
        } else {
            r = change_one(c, assign_sql, 5, values, "lease assign", argv[optind + 1]);
        }
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

/* Compares two decimal sequence numbers (no leading zeros) as numbers. */
static int seq_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

/* The stream of the shard's lease row (its ARN for a DynamoDB stream named by its table), or
 * stream_name when there is no such row. */
static void lease_stream(PGconn *c, const struct d2o_config *conf, const char *shard, char *out,
                         size_t n)
{
    const char *values[3] = {conf->application, shard, conf->stream_name};
    PGresult *r = PQexecParams(c,
                               "SELECT stream FROM leases WHERE application = $1"
                               " AND shard_id = $2 AND " STREAM_MATCH " ORDER BY stream LIMIT 1",
                               3, NULL, values, NULL, NULL, 0);

    snprintf(out, n, "%s",
             PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0)
                                                                       : conf->stream_name);
    PQclear(r);
}

/*
 * Whether seq lies in the shard's sequence number range, asked of the stream (ListShards, or
 * DescribeStream for a DynamoDB stream). 1 yes, 0 no (why says the range), -1 when the stream
 * could not tell (why says why).
 */
static int seq_in_shard(const struct d2o_config *conf, const char *stream, const char *shard,
                        const char *seq, char *why, size_t n)
{
    struct d2o_http_opts ho;
    struct d2o_creds_opts co = {0};
    struct d2o_http *http = NULL;
    struct d2o_creds *creds = NULL;
    struct d2o_kinesis *kin = NULL;
    struct d2o_kinesis_shards shards = {0};
    struct d2o_kinesis_err kerr;
    const struct d2o_aws_creds *ac;
    size_t i;
    int r = -1;

    snprintf(why, n, "out of memory");
    d2o_http_opts_from_config(&ho, conf);
    if (d2o_http_global_init() < 0 || !(http = d2o_http_new(&ho, why, n))) {
        goto out;
    }
    co.region = conf->aws_region;
    creds = d2o_creds_new(http, &co);
    if (!creds || d2o_creds_get(creds, time(NULL), &ac, why, n) < 0) {
        goto out;
    }
    kin =
        conf->source == D2O_SOURCE_DYNAMODB_STREAMS
            ? d2o_ddbstreams_new(http, conf->aws_region, conf->streams_endpoint, stream, ac, why, n)
            : d2o_kinesis_new(http, conf, ac, why, n);
    if (!kin) {
        goto out;
    }
    d2o_kinesis_set_retry(kin, 1, NULL);
    if (d2o_kinesis_list_all_shards(kin, stream, D2O_SHARD_FILTER_NONE, 0, &shards, &kerr) != 0) {
        snprintf(why, n, "%s", kerr.message);
        goto out;
    }
    snprintf(why, n, "stream %.200s has no shard %.200s", stream, shard);
    for (i = 0; i < shards.n_shards; i++) {
        const struct d2o_kinesis_shard *sh = &shards.shards[i];

        if (strcmp(sh->shard_id, shard) != 0) {
            continue;
        }
        r = sh->seq_start && seq_cmp(seq, sh->seq_start) >= 0 &&
            (!sh->seq_end || seq_cmp(seq, sh->seq_end) <= 0);
        snprintf(why, n, "shard %s holds sequence numbers from %s to %s", shard,
                 sh->seq_start ? sh->seq_start : "?", sh->seq_end ? sh->seq_end : "its tip (open)");
        break;
    }
    if (i == shards.n_shards) {
        r = 0;
    }
out:
    d2o_kinesis_shards_free(&shards);
    d2o_kinesis_free(kin);
    d2o_creds_free(creds);
    d2o_http_free(http);
    return r;
}

int d2o_cmd_checkpoint(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os checkpoint set SHARD --at TRIM_HORIZON|LATEST|SEQUENCE|TIMESTAMP [--force]\n"
        "\n"
        "Moves where the shard's next reader starts: TRIM_HORIZON, LATEST, a sequence number\n"
        "(refused when the stream -- Kinesis or DynamoDB Streams, as source says -- puts it\n"
        "outside the shard's range; set stream_name and the AWS settings so it can be asked), or\n"
        "a time (e.g. 2026-11-25T03:00:00Z, read AT_TIMESTAMP). Refused while a worker owns the\n"
        "shard; --force also takes the lease away (new epoch), so the owner's next checkpoint is\n"
        "refused and it stops.\n";
    static const char sql[] =
        "WITH s AS (UPDATE leases SET checkpoint = $4,"
        " checkpoint_timestamp = $5::timestamptz,"
        " owner = NULL, expires_at = NULL, pending_owner = NULL, handoff_deadline = NULL,"
        " lease_counter = lease_counter + 1, updated_at = now()"
        " WHERE application = $1 AND shard_id = $2 AND " STREAM_MATCH
        "   AND ($6 = 'force' OR owner IS NULL OR expires_at <= now())"
        " RETURNING stream, shard_id, lease_counter)"
        " INSERT INTO lease_events (application, stream, shard_id, event, lease_counter)"
        " SELECT $1, stream, shard_id, 'checkpoint_reset', lease_counter FROM s RETURNING id";
    struct ops_opts o;
    struct d2o_config conf;
    PGconn *c = NULL;
    const char *values[6], *position = NULL, *ts = NULL;
    time_t when;
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
    } else if (strchr(o.at, 'T') && strchr(o.at, '-') && d2o_creds_parse_time(o.at, &when) == 0) {
        position = "AT_TIMESTAMP";
        ts = o.at;
    } else {
        r = d2o_cli_usage_error("checkpoint",
                                "--at '%s' is not TRIM_HORIZON, LATEST, a sequence number or a "
                                "time like 2026-11-25T03:00:00Z",
                                o.at);
        goto out;
    }
    if (position == o.at && strcmp(o.at, "TRIM_HORIZON") != 0 && strcmp(o.at, "LATEST") != 0 &&
        *conf.stream_name) {
        char why[1024], stream[512];
        int in;

        lease_stream(c, &conf, argv[optind + 1], stream, sizeof(stream));
        in = seq_in_shard(&conf, stream, argv[optind + 1], o.at, why, sizeof(why));

        if (in == 0) {
            fprintf(stderr,
                    "ddb2os checkpoint set: sequence number %s is not in shard %s: %s; nothing "
                    "changed\n",
                    o.at, argv[optind + 1], why);
            r = D2O_EXIT_FAIL;
            goto out;
        }
        if (in < 0) {
            fprintf(
                stderr,
                "ddb2os checkpoint set: could not check %s against the shard in the stream (%s); "
                "setting it anyway\n",
                o.at, why);
        }
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
            fprintf(stderr, "ddb2os %s\n", err);
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
