/* PostgreSQL connections and schema migrations. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/clock.h"
#include "d2o/log.h"
#include "d2o/pg.h"
#include "d2o/util.h"

/* Serialises migrations across every process that shares the database. */
#define MIGRATE_LOCK_KEY 0x64646232L /* "ddb2" */

static const char *const migrations[] = {
    /* 1: leases, workers, the lease audit trail and the dead-letter queue. */
    "CREATE TABLE leases ("
    "  application text NOT NULL,"
    "  stream text NOT NULL,"
    "  shard_id text NOT NULL,"
    "  owner text,"
    "  lease_counter bigint NOT NULL DEFAULT 0,"
    "  expires_at timestamptz,"
    "  checkpoint text NOT NULL DEFAULT 'TRIM_HORIZON'"
    "    CHECK (checkpoint ~ '^(0|[1-9][0-9]{0,128})$'"
    "           OR checkpoint IN ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP', 'SHARD_END')),"
    "  checkpoint_timestamp timestamptz,"
    "  version_last_ms bigint NOT NULL DEFAULT 0,"
    "  version_seq_in_ms integer NOT NULL DEFAULT 0,"
    "  parent_shard_ids text[] NOT NULL DEFAULT '{}',"
    "  hash_key_start numeric,"
    "  hash_key_end numeric,"
    "  owner_switches bigint NOT NULL DEFAULT 0,"
    "  pending_owner text,"
    "  handoff_deadline timestamptz,"
    "  throughput numeric NOT NULL DEFAULT 0,"
    "  millis_behind_latest bigint,"
    "  checkpointed_at timestamptz,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  updated_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (application, stream, shard_id));"
    "CREATE INDEX leases_owner ON leases (application, owner);"
    "CREATE TABLE workers ("
    "  application text NOT NULL,"
    "  id text NOT NULL,"
    "  host text NOT NULL,"
    "  pid integer NOT NULL,"
    "  task_id text,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  heartbeat_at timestamptz NOT NULL DEFAULT now(),"
    "  leases_held integer NOT NULL DEFAULT 0,"
    "  records_per_s numeric NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (application, id));"
    "CREATE TABLE lease_events ("
    "  id bigserial PRIMARY KEY,"
    "  application text NOT NULL,"
    "  stream text NOT NULL,"
    "  shard_id text NOT NULL,"
    "  event text NOT NULL CHECK (event IN ('take', 'steal', 'release', 'expire', 'shard_end',"
    "    'renew_lost', 'assign', 'checkpoint_reset')),"
    "  owner text,"
    "  previous_owner text,"
    "  lease_counter bigint NOT NULL,"
    "  at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX lease_events_shard ON lease_events (application, stream, shard_id, at);"
    "CREATE TABLE dlq ("
    "  id bigserial PRIMARY KEY,"
    "  application text NOT NULL,"
    "  stream text NOT NULL,"
    "  shard_id text NOT NULL,"
    "  sequence_number text NOT NULL,"
    "  partition_key text NOT NULL DEFAULT '',"
    "  table_name text NOT NULL DEFAULT '',"
    "  index_name text NOT NULL DEFAULT '',"
    "  doc_id text NOT NULL DEFAULT '',"
    "  version bigint NOT NULL DEFAULT 0,"
    "  raw_record bytea NOT NULL,"
    "  error_class text NOT NULL,"
    "  http_status integer NOT NULL DEFAULT 0,"
    "  error_message text NOT NULL DEFAULT '',"
    "  attempts integer NOT NULL DEFAULT 0,"
    "  first_failed_at timestamptz NOT NULL,"
    "  last_failed_at timestamptz NOT NULL,"
    "  state text NOT NULL DEFAULT 'pending'"
    "    CHECK (state IN ('pending', 'replaying', 'replayed', 'discarded')),"
    "  replay_result text,"
    "  replayed_at timestamptz,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  UNIQUE (application, stream, shard_id, sequence_number, index_name, doc_id));"
    "CREATE INDEX dlq_state_created ON dlq (application, state, created_at);"
    "CREATE INDEX dlq_shard ON dlq (application, shard_id);"
    "CREATE INDEX dlq_table ON dlq (application, table_name);"
    "CREATE INDEX dlq_error_class ON dlq (application, error_class);",
    /* 2: views for operators (docs/operations.md). */
    "CREATE VIEW lease_status AS"
    " SELECT l.application, l.stream, l.shard_id,"
    "   CASE WHEN l.checkpoint = 'SHARD_END' THEN 'finished'"
    "        WHEN l.owner IS NULL THEN 'unowned'"
    "        WHEN l.expires_at <= now() THEN 'expired'"
    "        WHEN l.pending_owner IS NOT NULL THEN 'handing_off'"
    "        ELSE 'owned' END AS state,"
    "   l.owner, l.lease_counter, l.expires_at - now() AS expires_in, l.checkpoint,"
    "   now() - l.checkpointed_at AS checkpoint_age, l.millis_behind_latest, l.throughput,"
    "   l.owner_switches, l.pending_owner, l.parent_shard_ids,"
    "   (SELECT count(*) FROM dlq d WHERE d.application = l.application AND d.stream = l.stream"
    "      AND d.shard_id = l.shard_id AND d.state = 'pending') AS dlq_pending"
    " FROM leases l;"
    "CREATE VIEW worker_status AS"
    " SELECT w.application, w.id, w.host, w.pid, w.task_id, w.started_at,"
    "   now() - w.heartbeat_at AS heartbeat_age,"
    "   (SELECT count(*) FROM leases l WHERE l.application = w.application AND l.owner = w.id"
    "      AND l.expires_at > now()) AS leases_held,"
    "   w.records_per_s"
    " FROM workers w;"
    "CREATE VIEW dlq_summary AS"
    " SELECT application, stream, table_name, shard_id, error_class, state, count(*) AS rows,"
    "   min(first_failed_at) AS oldest_failure, max(last_failed_at) AS newest_failure"
    " FROM dlq GROUP BY application, stream, table_name, shard_id, error_class, state;",
    /* 3: a worker that stops cleanly says so at once, so the others rebalance without waiting
     * for its heartbeat to age out. */
    "ALTER TABLE workers ADD COLUMN stopped_at timestamptz;"
    "CREATE OR REPLACE VIEW worker_status AS"
    " SELECT w.application, w.id, w.host, w.pid, w.task_id, w.started_at,"
    "   now() - w.heartbeat_at AS heartbeat_age,"
    "   (SELECT count(*) FROM leases l WHERE l.application = w.application AND l.owner = w.id"
    "      AND l.expires_at > now()) AS leases_held,"
    "   w.records_per_s, w.stopped_at"
    " FROM workers w;",
    /* 4: the delete store (src/deletes): one row per deleted document with the highest delete
     * version seen, so a late older write is dropped even after OpenSearch forgot the delete;
     * pending dead-letter rows by document, for which the retention job keeps deletes. */
    "CREATE TABLE deletes ("
    "  application text NOT NULL,"
    "  index_name text NOT NULL,"
    "  doc_id text NOT NULL,"
    "  version bigint NOT NULL,"
    "  deleted_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (application, index_name, doc_id));"
    "CREATE INDEX deletes_age ON deletes (application, deleted_at);"
    "CREATE INDEX dlq_pending_doc ON dlq (application, index_name, doc_id)"
    "  WHERE state = 'pending';",
    /* 5: 'aged_out': a shard that left the stream (retention) before it was read to its end is
     * finished as if it had ended, so its children are not held back for ever. */
    "ALTER TABLE lease_events DROP CONSTRAINT lease_events_event_check;"
    "ALTER TABLE lease_events ADD CONSTRAINT lease_events_event_check CHECK (event IN ('take',"
    "  'steal', 'release', 'expire', 'shard_end', 'renew_lost', 'assign', 'checkpoint_reset',"
    "  'aged_out'));",
    /* 6: backfills: one row per table being (or last) backfilled, with the one version every
     * scanned item is written at; its segments' progress, so a killed backfill resumes. */
    "CREATE TABLE backfills ("
    "  application text NOT NULL,"
    "  table_name text NOT NULL,"
    "  state text NOT NULL CHECK (state IN ('running', 'done')),"
    "  version bigint NOT NULL,"
    "  dynamodb_time timestamptz,"
    "  total_segments integer NOT NULL CHECK (total_segments > 0),"
    "  item_count_estimate bigint NOT NULL DEFAULT 0,"
    "  runs integer NOT NULL DEFAULT 1,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  finished_at timestamptz,"
    "  PRIMARY KEY (application, table_name));"
    "CREATE TABLE backfill_segments ("
    "  application text NOT NULL,"
    "  table_name text NOT NULL,"
    "  segment integer NOT NULL,"
    "  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),"
    "  last_key text,"
    "  items bigint NOT NULL DEFAULT 0,"
    "  pages bigint NOT NULL DEFAULT 0,"
    "  dlq bigint NOT NULL DEFAULT 0,"
    "  owner text,"
    "  updated_at timestamptz NOT NULL DEFAULT now(),"
    "  finished_at timestamptz,"
    "  PRIMARY KEY (application, table_name, segment),"
    "  FOREIGN KEY (application, table_name) REFERENCES backfills ON DELETE CASCADE);",
    /* 7: DynamoDB streams read directly: DynamoDB Local pads sequence numbers with zeros, so a
     * checkpoint is any 1 to 129 digits (one stream's numbers all have one form). Such a stream's
     * version counter is stored in version_last_ms (microseconds; see docs/architecture.md). */
    "ALTER TABLE leases DROP CONSTRAINT leases_checkpoint_check;"
    "ALTER TABLE leases ADD CONSTRAINT leases_checkpoint_check CHECK (checkpoint ~ "
    "'^[0-9]{1,129}$' OR checkpoint IN ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP', "
    "'SHARD_END'));",
    /* 8: what a checkpoint costs per shard (docs/performance.md, "the fenced checkpoint").
     * An owner's lease row of one shard is one probe in either index: without statistics the
     * planner may pick the owner index for the checkpoint's lookup by shard, which on
     * (application, owner) alone reads every lease of the owner for each shard. The same
     * checkpoints as before are allowed, without the regular expression '{1,129}' that
     * PostgreSQL expands into 129 copies and ran on every update of a lease row. */
    "DROP INDEX leases_owner;"
    "CREATE INDEX leases_owner ON leases (application, owner, stream, shard_id);"
    "ALTER TABLE leases DROP CONSTRAINT leases_checkpoint_check;"
    "ALTER TABLE leases ADD CONSTRAINT leases_checkpoint_check CHECK ((checkpoint ~ '^[0-9]+$'"
    "  AND length(checkpoint) <= 129) OR checkpoint IN ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP',"
    "  'SHARD_END'));",
    /* 9: what a checkpoint costs per shard, again (docs/performance.md, "the fenced checkpoint").
     * Checkpoints, renewals and progress reports change no indexed column of a lease row, so its
     * new version can stay on its page without new index entries (a HOT update), but only if the
     * page has room: rows packed onto full pages, as inserts and non-HOT updates leave them, went
     * to another page with two new index entries on every update, turn after turn. Half of every
     * page is kept for the next versions (existing rows move there on their next update). And the
     * same positions as before are allowed, checked without a regular expression. */
    "ALTER TABLE leases SET (fillfactor = 50);"
    "ALTER TABLE leases DROP CONSTRAINT leases_checkpoint_check;"
    "ALTER TABLE leases ADD CONSTRAINT leases_checkpoint_check CHECK ((length(checkpoint)"
    "  BETWEEN 1 AND 129 AND ltrim(checkpoint, '0123456789') = '') OR checkpoint IN"
    "  ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP', 'SHARD_END'));",
};

const int d2o_pg_schema_latest = (int)D2O_ARRAY_SIZE(migrations);

void d2o_pg_error(PGconn *c, PGresult *r, const char *what, char *errstr, size_t errstr_size)
{
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    size_t n;

    if (!msg || !*msg) {
        msg = c ? PQerrorMessage(c) : "no connection";
    }
    snprintf(errstr, errstr_size, "%s: %s", what, msg);
    n = strlen(errstr);
    while (n > 0 && (errstr[n - 1] == '\n' || errstr[n - 1] == ' ')) {
        errstr[--n] = '\0';
    }
}

PGresult *d2o_pg_last_result(PGconn *c)
{
    PGresult *r, *last = NULL;

    while ((r = PQgetResult(c)) != NULL) {
        PQclear(last);
        last = r;
    }
    return last;
}

int d2o_pg_result_ok(PGconn *c, PGresult *r, ExecStatusType want, const char *what, char *errstr,
                     size_t errstr_size)
{
    if (PQresultStatus(r) == want) {
        return 0;
    }
    d2o_pg_error(c, r, what, errstr, errstr_size);
    return -EIO;
}

/* Server notices (e.g. "relation already exists, skipping") go to the debug log, not stderr. */
static void notice(void *arg, const char *message)
{
    (void)arg;
    d2o_debug(D2O_CAT_PG, "pg_notice", "%s", message);
}

/* The conninfo's password goes to the log redactor before anything can print it. */
void d2o_pg_register_password(const char *conninfo)
{
    PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, NULL) : NULL;
    PQconninfoOption *o;

    for (o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val) {
            d2o_log_add_secret(o->val);
        }
    }
    PQconninfoFree(opts);
}

bool d2o_pg_connect_error_is_config(const char *msg)
{
    static const char *const config[] = {
        "password authentication failed",
        "does not exist", /* database or role */
        "no pg_hba.conf entry",
        "permission denied for database",
        "no password supplied",
        "authentication failed", /* ident, peer, SCRAM */
        "invalid connection option",
        "invalid URI",
        "missing \"=\" after",
        "unterminated quoted string in connection info",
    };
    size_t i;

    for (i = 0; i < D2O_ARRAY_SIZE(config); i++) {
        if (strstr(msg, config[i])) {
            return true;
        }
    }
    return false;
}

static d2o_pg_password_fn password_fn;
static const void *password_arg;

void d2o_pg_set_password_source(d2o_pg_password_fn fn, const void *arg)
{
    password_fn = fn;
    password_arg = arg;
}

/* What a connection is opened with: libpq's keywords and values, and the buffers they point to. */
struct conn_params {
    const char *keys[12], *values[12];
    char idle[24], user_timeout[24];
    char *password;
};

static int params_build(struct conn_params *p, const char *conninfo, const char *application_name,
                        int64_t bound_ms, char *errstr, size_t errstr_size)
{
    int n = 0;

    memset(p, 0, sizeof(*p));
    d2o_pg_register_password(conninfo);
    if (bound_ms > 0) {
        /* Before dbname: a conninfo that sets them wins. */
        snprintf(p->idle, sizeof(p->idle), "%lld",
                 (long long)(bound_ms >= 2000 ? bound_ms / 2000 : 1));
        snprintf(p->user_timeout, sizeof(p->user_timeout), "%lld", (long long)bound_ms);
        p->keys[n] = "keepalives";
        p->values[n++] = "1";
        p->keys[n] = "keepalives_idle";
        p->values[n++] = p->idle;
        p->keys[n] = "keepalives_interval";
        p->values[n++] = "1";
        p->keys[n] = "keepalives_count";
        p->values[n++] = "3";
        p->keys[n] = "tcp_user_timeout";
        p->values[n++] = p->user_timeout;
    }
    p->keys[n] = "dbname";
    p->values[n++] = conninfo ? conninfo : "";
    p->keys[n] = "application_name";
    p->values[n++] = application_name ? application_name : "ddb2os";
    p->keys[n] = "connect_timeout";
    p->values[n++] = D2O_PG_CONNECT_TIMEOUT_S;
    if (password_fn) {
        if (password_fn(password_arg, conninfo ? conninfo : "", &p->password, errstr, errstr_size) <
            0) {
            return -EIO;
        }
        p->keys[n] = "password";
        p->values[n++] = p->password;
    }
    p->keys[n] = NULL;
    p->values[n] = NULL;
    return 0;
}

static void params_free(struct conn_params *p)
{
    if (p->password) {
        explicit_bzero(p->password, strlen(p->password));
        free(p->password);
        p->password = NULL;
    }
}

/* The statement that bounds a session (see d2o_pg_connect_bounded), in set. */
static void bound_sql(char *set, size_t size, const struct conn_params *p, int64_t bound_ms)
{
    snprintf(set, size,
             "SET statement_timeout = %lld; SET lock_timeout = %lld;"
             " SET idle_in_transaction_session_timeout = %lld;"
             " SET tcp_keepalives_idle = %s; SET tcp_keepalives_interval = 1;"
             " SET tcp_keepalives_count = 3; SET tcp_user_timeout = %lld",
             (long long)bound_ms, (long long)bound_ms, (long long)bound_ms, p->idle,
             (long long)bound_ms);
}

static PGconn *connect_with(const char *conninfo, const char *application_name, int64_t bound_ms,
                            char *errstr, size_t errstr_size)
{
    struct conn_params p;
    char set[512];
    PGconn *c;
    PGresult *r;

    if (params_build(&p, conninfo, application_name, bound_ms, errstr, errstr_size) < 0) {
        return NULL;
    }
    /* expand_dbname: conninfo's own settings win over the defaults given here. */
    c = PQconnectdbParams(p.keys, p.values, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        d2o_pg_error(c, NULL, "cannot connect to PostgreSQL", errstr, errstr_size);
        PQfinish(c);
        params_free(&p);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice, NULL);
    if (bound_ms > 0) {
        bound_sql(set, sizeof(set), &p, bound_ms);
        r = PQexec(c, set);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            d2o_pg_error(c, r, "setting the session's timeouts", errstr, errstr_size);
            PQclear(r);
            PQfinish(c);
            params_free(&p);
            return NULL;
        }
        PQclear(r);
    }
    params_free(&p);
    return c;
}

PGconn *d2o_pg_connect(const char *conninfo, const char *application_name, char *errstr,
                       size_t errstr_size)
{
    return connect_with(conninfo, application_name, 0, errstr, errstr_size);
}

PGconn *d2o_pg_connect_bounded(const char *conninfo, const char *application_name, int64_t bound_ms,
                               char *errstr, size_t errstr_size)
{
    return connect_with(conninfo, application_name, bound_ms, errstr, errstr_size);
}

/* ---- opening a session without waiting ---- */

struct d2o_pg_opening {
    PGconn *c;
    bool polling;    /* PQconnectPoll still runs; then the setup statements */
    bool want_write; /* what the socket is waited for */
    bool sent;       /* a setup statement is on its way */
    int64_t deadline_ms;
    unsigned step; /* the caller's next setup statement */
    d2o_pg_setup_fn setup;
    void *setup_arg;
    char set[512];
};

struct d2o_pg_opening *d2o_pg_open_start(const char *conninfo, const char *application_name,
                                         int64_t bound_ms, d2o_pg_setup_fn setup, void *setup_arg,
                                         char *errstr, size_t errstr_size)
{
    struct d2o_pg_opening *o = calloc(1, sizeof(*o));
    struct conn_params p;

    if (!o) {
        snprintf(errstr, errstr_size, "cannot connect to PostgreSQL: out of memory");
        return NULL;
    }
    if (params_build(&p, conninfo, application_name, bound_ms, errstr, errstr_size) < 0) {
        free(o);
        return NULL;
    }
    /* libpq ignores connect_timeout here: the deadline is ours (the same 10 s). */
    o->c = PQconnectStartParams(p.keys, p.values, 1);
    if (bound_ms > 0) {
        bound_sql(o->set, sizeof(o->set), &p, bound_ms);
    }
    params_free(&p);
    if (!o->c || PQstatus(o->c) == CONNECTION_BAD) {
        d2o_pg_error(o->c, NULL, "cannot connect to PostgreSQL", errstr, errstr_size);
        d2o_pg_open_free(o);
        return NULL;
    }
    PQsetNoticeProcessor(o->c, notice, NULL);
    o->polling = true;
    o->want_write = true; /* as libpq says to begin: as if PQconnectPoll had said WRITING */
    o->setup = setup;
    o->setup_arg = setup_arg;
    o->deadline_ms = d2o_mono_ms() + D2O_PG_CONNECT_TIMEOUT_MS;
    return o;
}

int d2o_pg_open_fd(const struct d2o_pg_opening *o, bool *want_write)
{
    *want_write = o->want_write;
    return PQsocket(o->c);
}

int64_t d2o_pg_open_deadline(const struct d2o_pg_opening *o)
{
    return o->deadline_ms;
}

/* Sends the next setup statement: the session's bounds, then the caller's. 1 when there is none
 * left, 0 when one is on its way, -EIO. */
static int setup_next(struct d2o_pg_opening *o)
{
    int r;

    if (o->set[0]) {
        r = PQsendQuery(o->c, o->set) ? 0 : -EIO;
        o->set[0] = '\0';
    } else if (o->setup) {
        r = o->setup(o->c, o->step++, o->setup_arg);
    } else {
        r = 1;
    }
    if (r == 0) {
        o->sent = true;
        r = PQflush(o->c);
        if (r < 0) {
            return -EIO;
        }
        o->want_write = r == 1;
        return 0;
    }
    return r;
}

int d2o_pg_open_continue(struct d2o_pg_opening *o, PGconn **out, char *errstr, size_t errstr_size)
{
    int r;

    *out = NULL;
    if (d2o_mono_ms() >= o->deadline_ms) {
        snprintf(errstr, errstr_size,
                 "cannot connect to PostgreSQL: no session within %d s (connect_timeout)",
                 D2O_PG_CONNECT_TIMEOUT_MS / 1000);
        return -ETIMEDOUT;
    }
    if (o->polling) {
        /* The socket may be another one after each call (another address, SSL refused): the
         * caller asks d2o_pg_open_fd again every time. */
        switch (PQconnectPoll(o->c)) {
        case PGRES_POLLING_READING:
            o->want_write = false;
            return 1;
        case PGRES_POLLING_WRITING:
            o->want_write = true;
            return 1;
        case PGRES_POLLING_OK:
            break;
        default:
            d2o_pg_error(o->c, NULL, "cannot connect to PostgreSQL", errstr, errstr_size);
            return -EIO;
        }
        o->polling = false;
        if (PQsetnonblocking(o->c, 1) != 0) {
            d2o_pg_error(o->c, NULL, "cannot make the session non-blocking", errstr, errstr_size);
            return -EIO;
        }
        o->want_write = false;
    } else if (o->sent) {
        if (o->want_write) {
            r = PQflush(o->c);
            if (r < 0) {
                d2o_pg_error(o->c, NULL, "setting the session up", errstr, errstr_size);
                return -EIO;
            }
            o->want_write = r == 1;
        }
        if (!PQconsumeInput(o->c)) {
            d2o_pg_error(o->c, NULL, "setting the session up", errstr, errstr_size);
            return -EIO;
        }
        while (o->sent && !PQisBusy(o->c)) {
            PGresult *res = PQgetResult(o->c);

            if (res) {
                ExecStatusType st = PQresultStatus(res);

                if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                    d2o_pg_error(o->c, res, "setting the session up", errstr, errstr_size);
                    PQclear(res);
                    return -EIO;
                }
                PQclear(res);
                continue;
            }
            o->sent = false;
        }
        if (o->sent) {
            return 1;
        }
    }
    r = setup_next(o);
    if (r < 0) {
        d2o_pg_error(o->c, NULL, "setting the session up", errstr, errstr_size);
        return -EIO;
    }
    if (r == 0) {
        return 1;
    }
    *out = o->c;
    o->c = NULL;
    return 0;
}

void d2o_pg_open_free(struct d2o_pg_opening *o)
{
    if (o) {
        PQfinish(o->c);
        free(o);
    }
}

static int exec_ok(PGconn *c, const char *sql, const char *what, char *errstr, size_t n)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok) {
        d2o_pg_error(c, r, what, errstr, n);
    }
    PQclear(r);
    return ok ? 0 : -EIO;
}

static int read_version(PGconn *c, int *version, char *errstr, size_t n)
{
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    int64_t v = 0;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
        d2o_parse_i64(PQgetvalue(r, 0, 0), 0, 1000000, &v) < 0) {
        d2o_pg_error(c, r, "reading the schema version", errstr, n);
        PQclear(r);
        return -EIO;
    }
    PQclear(r);
    *version = (int)v;
    return 0;
}

int d2o_pg_schema_version(PGconn *c, int *version, char *errstr, size_t errstr_size)
{
    PGresult *r = PQexec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    int exists;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        d2o_pg_error(c, r, "reading the schema version", errstr, errstr_size);
        PQclear(r);
        return -EIO;
    }
    exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists) {
        *version = 0;
        return 0;
    }
    return read_version(c, version, errstr, errstr_size);
}

int d2o_pg_migrate(PGconn *c, int *from, int *to, char *errstr, size_t errstr_size)
{
    return d2o_pg_migrate_to(c, d2o_pg_schema_latest, from, to, errstr, errstr_size);
}

int d2o_pg_migrate_to(PGconn *c, int target, int *from, int *to, char *errstr, size_t errstr_size)
{
    char lock[96];
    int version = 0, first = -1, i;

    if (target > d2o_pg_schema_latest) {
        target = d2o_pg_schema_latest;
    }
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%ld)", MIGRATE_LOCK_KEY);
    for (;;) {
        if (exec_ok(c, "BEGIN", "migrate", errstr, errstr_size) < 0 ||
            exec_ok(c, lock, "migrate: advisory lock", errstr, errstr_size) < 0 ||
            exec_ok(c,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    "migrate: schema_migrations", errstr, errstr_size) < 0 ||
            read_version(c, &version, errstr, errstr_size) < 0) {
            goto fail;
        }
        if (first < 0) {
            first = version;
        }
        if (version > d2o_pg_schema_latest) {
            snprintf(errstr, errstr_size,
                     "the database schema is at version %d but this ddb2os knows only up to %d: "
                     "run a newer ddb2os",
                     version, d2o_pg_schema_latest);
            goto fail;
        }
        if (version >= target) {
            break;
        }
        i = version; /* migrations[i] is version i + 1 */
        {
            char what[64], record[96];

            snprintf(what, sizeof(what), "migration %d", i + 1);
            snprintf(record, sizeof(record), "INSERT INTO schema_migrations (version) VALUES (%d)",
                     i + 1);
            if (exec_ok(c, migrations[i], what, errstr, errstr_size) < 0 ||
                exec_ok(c, record, what, errstr, errstr_size) < 0 ||
                exec_ok(c, "COMMIT", what, errstr, errstr_size) < 0) {
                goto fail;
            }
        }
    }
    if (exec_ok(c, "COMMIT", "migrate", errstr, errstr_size) < 0) {
        goto fail;
    }
    if (from) {
        *from = first;
    }
    if (to) {
        *to = version;
    }
    return 0;
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    return -EIO;
}

int d2o_pg_require_schema(PGconn *c, char *errstr, size_t errstr_size)
{
    int version = 0;

    if (d2o_pg_schema_version(c, &version, errstr, errstr_size) < 0) {
        return -EIO;
    }
    if (version < d2o_pg_schema_latest) {
        snprintf(errstr, errstr_size,
                 "the database's ddb2os schema is at version %d, this ddb2os needs %d: run "
                 "'ddb2os migrate'",
                 version, d2o_pg_schema_latest);
        return -ENOENT;
    }
    if (version > d2o_pg_schema_latest) {
        snprintf(errstr, errstr_size,
                 "the database's ddb2os schema is at version %d but this ddb2os knows only up "
                 "to %d: run a newer ddb2os",
                 version, d2o_pg_schema_latest);
        return -ENOENT;
    }
    return 0;
}
