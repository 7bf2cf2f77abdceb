/* Shard leases in PostgreSQL; see include/d2o/lease.h for the protocol. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o/lease.h"
#include "d2o/pg.h"
#include "d2o/util.h"

/* now() + ms, as SQL over a text parameter. */
/* A timestamptz column as epoch milliseconds (0 when NULL). */
#define TS_MS(col) "coalesce((extract(epoch FROM " col ") * 1000)::bigint, 0)"
#define AFTER_MS(p) "now() + make_interval(secs => " p "::double precision / 1000)"

void d2o_lease_list_free(struct d2o_lease_list *l)
{
    size_t i;

    if (!l) {
        return;
    }
    for (i = 0; i < l->n; i++) {
        free(l->items[i].stream);
        free(l->items[i].shard_id);
        free(l->items[i].owner);
        free(l->items[i].checkpoint);
        free(l->items[i].pending_owner);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int d2o_lease_target(int leases, int live_workers)
{
    if (leases <= 0) {
        return 0;
    }
    if (live_workers <= 1) {
        return leases;
    }
    return (leases + live_workers - 1) / live_workers;
}

static char *dup_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

/* Appends rows (stream, shard_id, owner, counter, checkpoint, pending_owner, checkpoint
 * timestamp ms). */
static int append_rows(PGresult *r, struct d2o_lease_list *out)
{
    int rows = PQntuples(r), i;
    struct d2o_lease *grown;

    if (rows == 0) {
        return 0;
    }
    grown = realloc(out->items, (out->n + (size_t)rows) * sizeof(*grown));
    if (!grown) {
        return -ENOMEM;
    }
    out->items = grown;
    for (i = 0; i < rows; i++) {
        struct d2o_lease *l = &out->items[out->n];

        memset(l, 0, sizeof(*l));
        l->stream = dup_or_null(r, i, 0);
        l->shard_id = dup_or_null(r, i, 1);
        l->owner = dup_or_null(r, i, 2);
        l->checkpoint = dup_or_null(r, i, 4);
        l->pending_owner = dup_or_null(r, i, 5);
        out->n++;
        if (d2o_parse_i64(PQgetvalue(r, i, 3), 0, INT64_MAX, &l->counter) < 0 ||
            d2o_parse_i64(PQgetvalue(r, i, 6), INT64_MIN, INT64_MAX, &l->checkpoint_ts_ms) < 0 ||
            !l->stream || !l->shard_id || !l->checkpoint) {
            return -EIO;
        }
    }
    return rows;
}

/* A statement's rows of leases, appended to out: how many, or -EIO. */
static int read_rows(PGconn *c, PGresult *r, struct d2o_lease_list *out, const char *what,
                     char *errstr, size_t en)
{
    int got;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, what, errstr, en);
        return -EIO;
    }
    got = append_rows(r, out);
    if (got < 0) {
        snprintf(errstr, en, "%s: unreadable lease row", what);
        return -EIO;
    }
    return got;
}

static int query_into(PGconn *c, const char *sql, int n, const char *const *values,
                      struct d2o_lease_list *out, const char *what, char *errstr, size_t en)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, values, NULL, NULL, 0);
    int got = read_rows(c, r, out, what, errstr, en);

    PQclear(r);
    return got;
}

int d2o_lease_ensure(PGconn *c, const char *application, const char *stream, const char *shard_id,
                     const char *const *parents, const char *initial_checkpoint, char *errstr,
                     size_t errstr_size)
{
    struct d2o_lease_seed seed = {0};

    seed.shard_id = shard_id;
    seed.parents = parents;
    seed.checkpoint = initial_checkpoint;
    return d2o_lease_ensure_shard(c, application, stream, &seed, errstr, errstr_size);
}

int d2o_lease_ensure_shard(PGconn *c, const char *application, const char *stream,
                           const struct d2o_lease_seed *seed, char *errstr, size_t errstr_size)
{
    static const char sql[] =
        "INSERT INTO leases (application, stream, shard_id, parent_shard_ids, checkpoint,"
        " checkpoint_timestamp, hash_key_start, hash_key_end)"
        " VALUES ($1, $2, $3, $4::text[], $5, to_timestamp($6::double precision / 1000),"
        " $7::numeric, $8::numeric)"
        " ON CONFLICT DO NOTHING RETURNING shard_id";
    struct d2o_buf arr = D2O_BUF_INIT;
    const char *values[8];
    char ts[24];
    PGresult *r;
    size_t i;
    int ret = 0;

    ret |= d2o_buf_putc(&arr, '{');
    for (i = 0; seed->parents && seed->parents[i]; i++) {
        ret |= d2o_buf_printf(&arr, "%s\"%s\"", i ? "," : "", seed->parents[i]);
    }
    ret |= d2o_buf_putc(&arr, '}');
    if (ret) {
        d2o_buf_free(&arr);
        return -ENOMEM;
    }
    snprintf(ts, sizeof(ts), "%" PRId64, seed->checkpoint_ts_ms);
    values[0] = application;
    values[1] = stream;
    values[2] = seed->shard_id;
    values[3] = arr.data;
    values[4] = seed->checkpoint ? seed->checkpoint : "TRIM_HORIZON";
    values[5] = seed->checkpoint_ts_ms > 0 ? ts : NULL;
    values[6] = seed->hash_start;
    values[7] = seed->hash_end;
    r = PQexecParams(c, sql, 8, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, "creating a lease row", errstr, errstr_size);
        ret = -EIO;
    } else {
        ret = PQntuples(r) > 0 ? 1 : 0;
    }
    PQclear(r);
    d2o_buf_free(&arr);
    return ret;
}

/* ---- many seeds in one statement ---- */

/* Six PostgreSQL array literals, one element per seed: shard ids, parents (each an array
 * literal itself), checkpoints, checkpoint times (ms), hash key starts and ends. */
struct d2o_lease_seeds {
    struct d2o_buf col[6];
    size_t n;
};

struct d2o_lease_seeds *d2o_lease_seeds_new(void)
{
    return calloc(1, sizeof(struct d2o_lease_seeds));
}

void d2o_lease_seeds_free(struct d2o_lease_seeds *s)
{
    size_t i;

    if (!s) {
        return;
    }
    for (i = 0; i < 6; i++) {
        d2o_buf_free(&s->col[i]);
    }
    free(s);
}

size_t d2o_lease_seeds_count(const struct d2o_lease_seeds *s)
{
    return s ? s->n : 0;
}

/* One array element: NULL, or the text quoted with its quotes and backslashes escaped. */
static int put_elem(struct d2o_buf *b, bool first, const char *v)
{
    int r = first ? 0 : d2o_buf_putc(b, ',');

    if (!v) {
        return r | d2o_buf_puts(b, "NULL");
    }
    r |= d2o_buf_putc(b, '"');
    for (; *v; v++) {
        if (*v == '"' || *v == '\\') {
            r |= d2o_buf_putc(b, '\\');
        }
        r |= d2o_buf_putc(b, *v);
    }
    return r | d2o_buf_putc(b, '"');
}

int d2o_lease_seeds_add(struct d2o_lease_seeds *s, const struct d2o_lease_seed *seed)
{
    struct d2o_buf parents = D2O_BUF_INIT;
    char ts[24];
    bool first = s->n == 0;
    size_t i;
    int r = d2o_buf_putc(&parents, '{');

    for (i = 0; seed->parents && seed->parents[i]; i++) {
        r |= put_elem(&parents, i == 0, seed->parents[i]);
    }
    r |= d2o_buf_putc(&parents, '}');
    snprintf(ts, sizeof(ts), "%" PRId64, seed->checkpoint_ts_ms);
    r |= put_elem(&s->col[0], first, seed->shard_id);
    r |= put_elem(&s->col[1], first, r ? "{}" : parents.data);
    r |= put_elem(&s->col[2], first, seed->checkpoint ? seed->checkpoint : "TRIM_HORIZON");
    r |= put_elem(&s->col[3], first, seed->checkpoint_ts_ms > 0 ? ts : NULL);
    r |= put_elem(&s->col[4], first, seed->hash_start);
    r |= put_elem(&s->col[5], first, seed->hash_end);
    d2o_buf_free(&parents);
    if (r) {
        return -ENOMEM;
    }
    s->n++;
    return 0;
}

int d2o_lease_seeds_send(PGconn *c, const char *application, const char *stream,
                         const struct d2o_lease_seeds *s, bool read_all)
{
    /* The existence check reads the rows as they were before the statement, as a shard sync
     * always did; pg_notify runs only when a row was created (the CTE is read below). */
    static const char sql[] =
        "WITH s AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[],"
        "   $7::text[], $8::text[]) AS s(shard_id, parents, checkpoint, ts_ms, hash_start,"
        "   hash_end)),"
        " has AS (SELECT $9::boolean OR EXISTS (SELECT 1 FROM leases WHERE application = $1"
        "   AND stream = $2) AS read_all),"
        " ins AS (INSERT INTO leases (application, stream, shard_id, parent_shard_ids, checkpoint,"
        "   checkpoint_timestamp, hash_key_start, hash_key_end)"
        "   SELECT $1, $2, s.shard_id, s.parents::text[],"
        "     CASE WHEN has.read_all THEN 'TRIM_HORIZON' ELSE s.checkpoint END,"
        "     CASE WHEN has.read_all THEN NULL"
        "       ELSE to_timestamp(s.ts_ms::double precision / 1000) END,"
        "     s.hash_start::numeric, s.hash_end::numeric"
        "   FROM s, has ORDER BY s.shard_id ON CONFLICT DO NOTHING RETURNING shard_id),"
        " n AS (SELECT pg_notify('" D2O_LEASE_CHANNEL "', $1) FROM (SELECT 1 FROM ins LIMIT 1) x)"
        " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)";
    struct d2o_buf arr[6] = {D2O_BUF_INIT, D2O_BUF_INIT, D2O_BUF_INIT,
                             D2O_BUF_INIT, D2O_BUF_INIT, D2O_BUF_INIT};
    const char *values[9];
    int i, r = 0;

    for (i = 0; i < 6; i++) {
        r |= d2o_buf_putc(&arr[i], '{');
        if (s->col[i].len) {
            r |= d2o_buf_append(&arr[i], s->col[i].data, s->col[i].len);
        }
        r |= d2o_buf_putc(&arr[i], '}');
        values[2 + i] = arr[i].data;
    }
    values[0] = application;
    values[1] = stream;
    values[8] = read_all ? "true" : "false";
    if (r == 0) {
        r = PQsendQueryParams(c, sql, 9, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
    } else {
        r = -ENOMEM;
    }
    for (i = 0; i < 6; i++) {
        d2o_buf_free(&arr[i]);
    }
    return r;
}

int d2o_lease_seeds_read(PGconn *c, PGresult *r, char *errstr, size_t errstr_size)
{
    int64_t n = 0;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        d2o_pg_error(c, r, "creating lease rows", errstr, errstr_size);
        return -EIO;
    }
    if (d2o_parse_i64(PQgetvalue(r, 0, 0), 0, INT32_MAX, &n) < 0) {
        snprintf(errstr, errstr_size, "creating lease rows: unreadable count");
        return -EIO;
    }
    return (int)n;
}

/* $1..$5: application, stream, owner, max, lease_ms */
static const char take_sql[] =
    "WITH candidates AS ("
    "  SELECT l.shard_id, l.owner AS prev_owner, l.pending_owner AS prev_pending"
    "  FROM leases l"
    "  WHERE l.application = $1 AND l.stream = $2 AND l.checkpoint <> 'SHARD_END'"
    "    AND (l.owner IS NULL OR l.expires_at IS NULL OR l.expires_at <= clock_timestamp()"
    "         OR (l.pending_owner = $3 AND l.handoff_deadline <= now()))"
    "    AND NOT EXISTS (SELECT 1 FROM leases p WHERE p.application = l.application"
    "      AND p.stream = l.stream AND p.shard_id = ANY (l.parent_shard_ids)"
    "      AND p.checkpoint <> 'SHARD_END')"
    "  ORDER BY l.shard_id LIMIT $4"
    "  FOR UPDATE OF l SKIP LOCKED),"
    " taken AS ("
    "  UPDATE leases t SET owner = $3, lease_counter = t.lease_counter + 1,"
    "    expires_at = " AFTER_MS(
        "$5") ","
              "    owner_switches = t.owner_switches + 1, pending_owner = NULL,"
              "    handoff_deadline = NULL, updated_at = now()"
              "  FROM candidates c WHERE t.application = $1 AND t.stream = $2"
              "    AND t.shard_id = c.shard_id"
              "  RETURNING t.stream, t.shard_id, t.owner, t.lease_counter, t.checkpoint,"
              "    t.pending_owner, c.prev_owner,"
              "    c.prev_pending, t.checkpoint_timestamp),"
              " events AS ("
              /* at: when the rows were taken, not when the transaction began (the
                 statement is planned in between, and a parent's SHARD_END committed
                 meanwhile is what made a child a candidate) */
              "  INSERT INTO lease_events (application, stream, shard_id, event, owner, "
              "previous_owner,"
              "    lease_counter, at)"
              "  SELECT $1, stream, shard_id,"
              "    CASE WHEN prev_owner IS NULL THEN 'take' WHEN prev_pending = $3 THEN 'steal'"
              "         ELSE 'expire' END,"
              "    owner, prev_owner, lease_counter, clock_timestamp() FROM taken)"
              " SELECT stream, shard_id, owner, lease_counter, checkpoint,"
              "   pending_owner, " TS_MS("checkpoint_timestamp") " FROM taken"
                                                                 " ORDER BY shard_id";

/* The parameters of a take and of a handoff request: application, stream, the worker, a count
 * and a time in ms. */
struct ask_params {
    char n[16], ms[24];
    const char *values[5];
};

static void ask_params(struct ask_params *p, const char *application, const char *stream,
                       const char *owner, int n, int64_t ms)
{
    snprintf(p->n, sizeof(p->n), "%d", n);
    snprintf(p->ms, sizeof(p->ms), "%" PRId64, ms);
    p->values[0] = application;
    p->values[1] = stream;
    p->values[2] = owner;
    p->values[3] = p->n;
    p->values[4] = p->ms;
}

int d2o_lease_take(PGconn *c, const char *application, const char *stream, const char *owner,
                   int max, int64_t lease_ms, struct d2o_lease_list *out, char *errstr,
                   size_t errstr_size)
{
    struct ask_params p;

    if (max <= 0) {
        return 0;
    }
    ask_params(&p, application, stream, owner, max, lease_ms);
    return query_into(c, take_sql, 5, p.values, out, "taking leases", errstr, errstr_size);
}

int d2o_lease_take_send(PGconn *c, const char *application, const char *stream, const char *owner,
                        int max, int64_t lease_ms)
{
    struct ask_params p;

    ask_params(&p, application, stream, owner, max > 0 ? max : 0, lease_ms);
    return PQsendQueryParams(c, take_sql, 5, NULL, p.values, NULL, NULL, 0) ? 0 : -EIO;
}

int d2o_lease_take_read(PGconn *c, PGresult *r, struct d2o_lease_list *out, char *errstr,
                        size_t errstr_size)
{
    return read_rows(c, r, out, "taking leases", errstr, errstr_size);
}

#define RENEW_SQL                                                                                  \
    "UPDATE leases SET expires_at = " AFTER_MS("$3") ", updated_at = now()"                        \
                                                     " WHERE application = $1 AND owner = $2"      \
                                                     " AND expires_at > clock_timestamp()"         \
                                                     " RETURNING stream, shard_id, owner,"         \
                                                     " lease_counter, checkpoint,"                 \
                                                     "   pending_owner, " TS_MS(                   \
                                                         "checkpoint_timestamp")

/* A live worker's row, its heartbeat: VALUES gives (application, id, host, pid, task_id,
 * leases_held). */
#define WORKER_UPSERT(values)                                                                      \
    "INSERT INTO workers (application, id, host, pid, task_id, leases_held) VALUES " values        \
    " ON CONFLICT (application, id) DO UPDATE SET heartbeat_at = now(),"                           \
    "   leases_held = EXCLUDED.leases_held, host = EXCLUDED.host, pid = EXCLUDED.pid,"             \
    "   task_id = EXCLUDED.task_id, stopped_at = NULL"

static const char renew_sql[] = RENEW_SQL;

int d2o_lease_renew_all_send(PGconn *c, const char *application, const char *owner,
                             int64_t lease_ms)
{
    char ms[24];
    const char *values[3];

    snprintf(ms, sizeof(ms), "%" PRId64, lease_ms);
    values[0] = application;
    values[1] = owner;
    values[2] = ms;
    return PQsendQueryParams(c, renew_sql, 3, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
}

int d2o_lease_renew_beat_send(PGconn *c, const char *application, const char *owner,
                              int64_t lease_ms, const char *host, int pid, const char *task_id,
                              int leases_held)
{
    /* A data-modifying WITH runs to its end whether or not the query reads it. */
    static const char sql[] =
        "WITH beat AS (" WORKER_UPSERT("($1, $2, $4, $5, $6, $7)") ") " RENEW_SQL;
    char ms[24], pids[16], held[16];
    const char *values[7];

    snprintf(ms, sizeof(ms), "%" PRId64, lease_ms);
    snprintf(pids, sizeof(pids), "%d", pid);
    snprintf(held, sizeof(held), "%d", leases_held);
    values[0] = application;
    values[1] = owner;
    values[2] = ms;
    values[3] = host;
    values[4] = pids;
    values[5] = task_id;
    values[6] = held;
    return PQsendQueryParams(c, sql, 7, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
}

int d2o_lease_renew_all_read(PGconn *c, PGresult *r, struct d2o_lease_list *out, char *errstr,
                             size_t errstr_size)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, "renewing leases", errstr, errstr_size);
        return -EIO;
    }
    if (append_rows(r, out) < 0) {
        snprintf(errstr, errstr_size, "renewing leases: unreadable lease row");
        return -EIO;
    }
    return (int)out->n;
}

int d2o_lease_renew_all(PGconn *c, const char *application, const char *owner, int64_t lease_ms,
                        struct d2o_lease_list *out, char *errstr, size_t errstr_size)
{
    PGresult *r;
    int ret;

    if (d2o_lease_renew_all_send(c, application, owner, lease_ms) < 0) {
        d2o_pg_error(c, NULL, "renewing leases", errstr, errstr_size);
        return -EIO;
    }
    r = d2o_pg_last_result(c);
    ret = d2o_lease_renew_all_read(c, r, out, errstr, errstr_size);
    PQclear(r);
    return ret;
}

/*
 * The fenced statements of one lease (d2o_lease_op): each has $1..$5 = application, stream,
 * shard, owner and counter of l, and $6, $7 = ms[0], ms[1] when it takes them; each returns one
 * row when the fence held.
 */
static const struct {
    const char *sql;
    int n_ms;
    const char *what;
} ops[] = {
    [D2O_LEASE_OP_RELEASE] =
        {"WITH r AS (UPDATE leases SET owner = NULL, expires_at = NULL,"
         "   lease_counter = lease_counter + 1, pending_owner = NULL, handoff_deadline = NULL,"
         "   updated_at = now()"
         " WHERE application = $1 AND stream = $2 AND shard_id = $3 AND owner = $4"
         "   AND lease_counter = $5 RETURNING lease_counter)"
         ", e AS (INSERT INTO lease_events (application, stream, shard_id, event, owner,"
         "   previous_owner, lease_counter)"
         " SELECT $1, $2, $3, 'release', NULL, $4, lease_counter FROM r RETURNING id)"
         " SELECT e.id, pg_notify('" D2O_LEASE_CHANNEL "', $1) FROM e",
         0, "releasing a lease"},
    [D2O_LEASE_OP_AGED_OUT] =
        {"INSERT INTO lease_events (application, stream, shard_id, event, owner, lease_counter)"
         " SELECT $1, $2, $3, 'aged_out', $4, $5 FROM leases WHERE application = $1"
         "   AND stream = $2 AND shard_id = $3 AND owner = $4 AND lease_counter = $5"
         " RETURNING id",
         0, "recording an aged-out shard"},
    [D2O_LEASE_OP_FINISH] =
        {"WITH f AS (UPDATE leases SET owner = NULL, expires_at = NULL,"
         "   lease_counter = lease_counter + 1, pending_owner = NULL, handoff_deadline = NULL,"
         "   millis_behind_latest = 0, throughput = 0, updated_at = now()"
         " WHERE application = $1 AND stream = $2 AND shard_id = $3 AND owner = $4"
         "   AND lease_counter = $5 AND checkpoint = 'SHARD_END' RETURNING lease_counter)"
         ", e AS (INSERT INTO lease_events (application, stream, shard_id, event, owner,"
         "   previous_owner, lease_counter)"
         " SELECT $1, $2, $3, 'shard_end', NULL, $4, lease_counter FROM f RETURNING id)"
         " SELECT e.id, pg_notify('" D2O_LEASE_CHANNEL "', $1) FROM e",
         0, "finishing a shard"},
    [D2O_LEASE_OP_HAND_OVER] =
        {"WITH h AS (UPDATE leases SET owner = pending_owner, lease_counter = lease_counter + 1,"
         "   owner_switches = owner_switches + 1, pending_owner = NULL, handoff_deadline = NULL,"
         "   expires_at = least(expires_at, clock_timestamp()"
         "     + make_interval(secs => $7::double precision / 1000)),"
         "   updated_at = now()"
         " WHERE application = $1 AND stream = $2 AND shard_id = $3 AND owner = $4"
         "   AND lease_counter = $5 AND pending_owner IS NOT NULL"
         "   AND EXISTS (SELECT 1 FROM workers w WHERE w.application = $1"
         "     AND w.id = leases.pending_owner AND w.stopped_at IS NULL"
         "     AND w.heartbeat_at > clock_timestamp()"
         "       - make_interval(secs => $6::double precision / 1000))"
         " RETURNING owner, lease_counter)"
         ", e AS (INSERT INTO lease_events (application, stream, shard_id, event, owner,"
         "   previous_owner, lease_counter)"
         " SELECT $1, $2, $3, 'steal', owner, $4, lease_counter FROM h RETURNING id)"
         " SELECT e.id, pg_notify('" D2O_LEASE_CHANNEL "', $1) FROM e",
         2, "handing a lease over"},
    [D2O_LEASE_OP_WITHDRAW] =
        {"UPDATE leases SET pending_owner = NULL, handoff_deadline = NULL"
         " WHERE application = $1 AND stream = $2 AND shard_id = $3 AND owner = $4"
         "   AND lease_counter = $5 RETURNING shard_id",
         0, "withdrawing a handoff"},
    [D2O_LEASE_OP_RESOLVE_LATEST] =
        {"UPDATE leases SET checkpoint = 'AT_TIMESTAMP', checkpoint_timestamp = clock_timestamp(),"
         "   updated_at = now()"
         " WHERE application = $1 AND stream = $2 AND shard_id = $3 AND owner = $4"
         "   AND lease_counter = $5 AND checkpoint = 'LATEST' AND expires_at > clock_timestamp()"
         " RETURNING " TS_MS("checkpoint_timestamp"),
         0, "storing the position of LATEST"},
};

int d2o_lease_op_send(PGconn *c, enum d2o_lease_op op, const char *application,
                      const struct d2o_lease *l, int64_t ms0, int64_t ms1)
{
    char counter[24], extra[2][24];
    const char *values[7];

    snprintf(counter, sizeof(counter), "%" PRId64, l->counter);
    snprintf(extra[0], sizeof(extra[0]), "%" PRId64, ms0);
    snprintf(extra[1], sizeof(extra[1]), "%" PRId64, ms1);
    values[0] = application;
    values[1] = l->stream;
    values[2] = l->shard_id;
    values[3] = l->owner;
    values[4] = counter;
    values[5] = extra[0];
    values[6] = extra[1];
    return PQsendQueryParams(c, ops[op].sql, 5 + ops[op].n_ms, NULL, values, NULL, NULL, 0) ? 0
                                                                                            : -EIO;
}

int d2o_lease_op_read(PGconn *c, PGresult *r, enum d2o_lease_op op, const struct d2o_lease *l,
                      int64_t *ts_ms, char *errstr, size_t errstr_size)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, ops[op].what, errstr, errstr_size);
        return -EIO;
    }
    if (PQntuples(r) == 0) {
        snprintf(errstr, errstr_size,
                 "%s: shard %s is no longer leased to %s with counter %" PRId64 "%s", ops[op].what,
                 l->shard_id, l->owner, l->counter,
                 op == D2O_LEASE_OP_RESOLVE_LATEST ? " at LATEST" : "");
        return D2O_LEASE_E_LOST;
    }
    if (op == D2O_LEASE_OP_RESOLVE_LATEST &&
        d2o_parse_i64(PQgetvalue(r, 0, 0), 0, INT64_MAX, ts_ms) < 0) {
        snprintf(errstr, errstr_size, "%s: unreadable timestamp", ops[op].what);
        return -EIO;
    }
    return 0;
}

/* One fenced statement, waiting for its answer. */
static int op_run(PGconn *c, enum d2o_lease_op op, const char *application,
                  const struct d2o_lease *l, int64_t ms0, int64_t ms1, int64_t *ts_ms, char *errstr,
                  size_t errstr_size)
{
    PGresult *r;
    int ret;

    if (d2o_lease_op_send(c, op, application, l, ms0, ms1) < 0) {
        d2o_pg_error(c, NULL, ops[op].what, errstr, errstr_size);
        return -EIO;
    }
    r = d2o_pg_last_result(c);
    ret = d2o_lease_op_read(c, r, op, l, ts_ms, errstr, errstr_size);
    PQclear(r);
    return ret;
}

int d2o_lease_release(PGconn *c, const char *application, const struct d2o_lease *l, char *errstr,
                      size_t errstr_size)
{
    return op_run(c, D2O_LEASE_OP_RELEASE, application, l, 0, 0, NULL, errstr, errstr_size);
}

int d2o_lease_aged_out(PGconn *c, const char *application, const struct d2o_lease *l, char *errstr,
                       size_t errstr_size)
{
    return op_run(c, D2O_LEASE_OP_AGED_OUT, application, l, 0, 0, NULL, errstr, errstr_size);
}

int d2o_lease_resolve_latest(PGconn *c, const char *application, const struct d2o_lease *l,
                             int64_t *ts_ms, char *errstr, size_t errstr_size)
{
    return op_run(c, D2O_LEASE_OP_RESOLVE_LATEST, application, l, 0, 0, ts_ms, errstr, errstr_size);
}

int d2o_lease_finish(PGconn *c, const char *application, const struct d2o_lease *l, char *errstr,
                     size_t errstr_size)
{
    return op_run(c, D2O_LEASE_OP_FINISH, application, l, 0, 0, NULL, errstr, errstr_size);
}

int d2o_lease_hand_over(PGconn *c, const char *application, const struct d2o_lease *l,
                        int64_t live_ms, int64_t accept_ms, char *errstr, size_t errstr_size)
{
    int r = op_run(c, D2O_LEASE_OP_HAND_OVER, application, l, live_ms, accept_ms, NULL, errstr,
                   errstr_size);

    if (r != D2O_LEASE_E_LOST) {
        return r;
    }
    /* Not handed over: the lease is gone, or the pending owner is not live. */
    r = op_run(c, D2O_LEASE_OP_WITHDRAW, application, l, 0, 0, NULL, errstr, errstr_size);
    if (r == 0) {
        snprintf(errstr, errstr_size,
                 "the pending owner of shard %s is not live; the handoff request is withdrawn",
                 l->shard_id);
        return D2O_LEASE_E_NOT_LIVE;
    }
    return r;
}

/* $1..$5: application, stream, requester, target, handoff_ms */
static const char request_handoff_sql[] =
    "WITH busiest AS ("
    "  SELECT owner FROM leases WHERE application = $1 AND stream = $2"
    "    AND owner IS NOT NULL AND owner <> $3 AND expires_at > now()"
    "    AND checkpoint <> 'SHARD_END'"
    "  GROUP BY owner HAVING count(*) > $4::int"
    "  ORDER BY count(*) DESC, owner LIMIT 1),"
    " victim AS ("
    "  SELECT l.shard_id FROM leases l JOIN busiest b ON l.owner = b.owner"
    "  WHERE l.application = $1 AND l.stream = $2 AND l.pending_owner IS NULL"
    "    AND l.checkpoint <> 'SHARD_END' AND l.expires_at > now()"
    "    AND NOT EXISTS (SELECT 1 FROM leases q WHERE q.application = $1 AND q.stream = $2"
    "      AND q.pending_owner = $3)"
    /* An operator's `lease assign` to this owner holds against the balancer. */
    "    AND NOT EXISTS (SELECT 1 FROM lease_events e WHERE e.application = $1"
    "      AND e.stream = $2 AND e.shard_id = l.shard_id AND e.event = 'assign'"
    "      AND e.owner = l.owner AND e.at > now() - interval '1 hour')"
    "  ORDER BY l.shard_id LIMIT 1 FOR UPDATE OF l SKIP LOCKED)"
    " UPDATE leases SET pending_owner = $3, handoff_deadline = " AFTER_MS(
        "$5") " FROM victim WHERE leases.application = $1 AND leases.stream = $2"
              "   AND leases.shard_id = victim.shard_id RETURNING leases.shard_id";

int d2o_lease_request_handoff_send(PGconn *c, const char *application, const char *stream,
                                   const char *requester, int target, int64_t handoff_ms)
{
    struct ask_params p;

    ask_params(&p, application, stream, requester, target, handoff_ms);
    return PQsendQueryParams(c, request_handoff_sql, 5, NULL, p.values, NULL, NULL, 0) ? 0 : -EIO;
}

int d2o_lease_request_handoff_read(PGconn *c, PGresult *r, char *errstr, size_t errstr_size)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, "requesting a handoff", errstr, errstr_size);
        return -EIO;
    }
    return PQntuples(r) > 0 ? 1 : 0;
}

int d2o_lease_request_handoff(PGconn *c, const char *application, const char *stream,
                              const char *requester, int target, int64_t handoff_ms, char *errstr,
                              size_t errstr_size)
{
    struct ask_params p;
    PGresult *r;
    int ret;

    ask_params(&p, application, stream, requester, target, handoff_ms);
    r = PQexecParams(c, request_handoff_sql, 5, NULL, p.values, NULL, NULL, 0);
    ret = d2o_lease_request_handoff_read(c, r, errstr, errstr_size);
    PQclear(r);
    return ret;
}

int d2o_lease_heartbeat_send(PGconn *c, const char *application, const char *id, const char *host,
                             int pid, const char *task_id, int leases_held)
{
    static const char sql[] = WORKER_UPSERT("($1, $2, $3, $4, $5, $6)");
    char pids[16], held[16];
    const char *values[6];

    snprintf(pids, sizeof(pids), "%d", pid);
    snprintf(held, sizeof(held), "%d", leases_held);
    values[0] = application;
    values[1] = id;
    values[2] = host;
    values[3] = pids;
    values[4] = task_id;
    values[5] = held;
    return PQsendQueryParams(c, sql, 6, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
}

/* The sent statement's answer: 0 when it is want, else -EIO with errstr. */
static int answer(PGconn *c, int sent, ExecStatusType want, const char *what, char *errstr,
                  size_t errstr_size)
{
    PGresult *r = sent == 0 ? d2o_pg_last_result(c) : NULL;
    int ret = d2o_pg_result_ok(c, r, want, what, errstr, errstr_size);

    PQclear(r);
    return sent == -ENOMEM ? -ENOMEM : ret;
}

int d2o_lease_heartbeat(PGconn *c, const char *application, const char *id, const char *host,
                        int pid, const char *task_id, int leases_held, char *errstr,
                        size_t errstr_size)
{
    return answer(c, d2o_lease_heartbeat_send(c, application, id, host, pid, task_id, leases_held),
                  PGRES_COMMAND_OK, "worker heartbeat", errstr, errstr_size);
}

int d2o_lease_census(PGconn *c, const char *application, const char *stream, int64_t window_ms,
                     int *leases, int *live_workers, char *errstr, size_t errstr_size)
{
    return d2o_lease_census_ex(c, application, stream, NULL, window_ms, leases, live_workers, NULL,
                               errstr, errstr_size);
}

int d2o_lease_census_send(PGconn *c, const char *application, const char *stream, const char *owner,
                          int64_t window_ms)
{
    static const char sql[] =
        "SELECT (SELECT count(*) FROM leases l WHERE l.application = $1 AND l.stream = $2"
        "          AND l.checkpoint <> 'SHARD_END'"
        "          AND NOT EXISTS (SELECT 1 FROM leases p WHERE p.application = l.application"
        "            AND p.stream = l.stream AND p.shard_id = ANY (l.parent_shard_ids)"
        "            AND p.checkpoint <> 'SHARD_END')),"
        "       (SELECT count(*) FROM workers WHERE application = $1 AND stopped_at IS NULL"
        "          AND heartbeat_at > now() - make_interval(secs => $3::double precision / 1000)),"
        "       (SELECT coalesce(ceil(extract(epoch FROM min(expires_at) - now()) * 1000), -1)"
        "          FROM leases WHERE application = $1 AND stream = $2 AND expires_at > now()"
        "          AND owner IS DISTINCT FROM $4 AND checkpoint <> 'SHARD_END')::bigint";
    char ms[24];
    const char *values[4];

    snprintf(ms, sizeof(ms), "%" PRId64, window_ms);
    values[0] = application;
    values[1] = stream;
    values[2] = ms;
    values[3] = owner;
    return PQsendQueryParams(c, sql, 4, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
}

int d2o_lease_census_read(PGconn *c, PGresult *r, int *leases, int *live_workers,
                          int64_t *next_expiry_ms, char *errstr, size_t errstr_size)
{
    int64_t a = 0, b = 0, x = -1;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
        d2o_parse_i64(PQgetvalue(r, 0, 0), 0, INT32_MAX, &a) < 0 ||
        d2o_parse_i64(PQgetvalue(r, 0, 1), 0, INT32_MAX, &b) < 0 ||
        d2o_parse_i64(PQgetvalue(r, 0, 2), -1, INT64_MAX, &x) < 0) {
        d2o_pg_error(c, r, "lease census", errstr, errstr_size);
        return -EIO;
    }
    *leases = (int)a;
    *live_workers = (int)b;
    if (next_expiry_ms) {
        *next_expiry_ms = x;
    }
    return 0;
}

int d2o_lease_census_ex(PGconn *c, const char *application, const char *stream, const char *owner,
                        int64_t window_ms, int *leases, int *live_workers, int64_t *next_expiry_ms,
                        char *errstr, size_t errstr_size)
{
    PGresult *r;
    int ret;

    if (d2o_lease_census_send(c, application, stream, owner, window_ms) < 0) {
        d2o_pg_error(c, NULL, "lease census", errstr, errstr_size);
        return -EIO;
    }
    r = d2o_pg_last_result(c);
    ret = d2o_lease_census_read(c, r, leases, live_workers, next_expiry_ms, errstr, errstr_size);
    PQclear(r);
    return ret;
}

int d2o_lease_report_send(PGconn *c, const char *application, const char *owner,
                          const struct d2o_lease_progress *p, size_t n)
{
    static const char sql[] =
        "WITH u AS (UPDATE leases l SET millis_behind_latest = nullif(v.behind, -1),"
        "   throughput = v.rate"
        " FROM unnest($3::text[], $4::bigint[], $5::numeric[]) AS v(shard_id, behind, rate)"
        " WHERE l.application = $1 AND l.owner = $2 AND l.shard_id = v.shard_id RETURNING v.rate)"
        " UPDATE workers SET records_per_s = (SELECT coalesce(sum(rate), 0) FROM u)"
        " WHERE application = $1 AND id = $2";
    struct d2o_buf ids = D2O_BUF_INIT, behind = D2O_BUF_INIT, rate = D2O_BUF_INIT;
    const char *values[5];
    size_t i;
    int ret = 0;

    ret |= d2o_buf_putc(&ids, '{') | d2o_buf_putc(&behind, '{') | d2o_buf_putc(&rate, '{');
    for (i = 0; i < n; i++) {
        const char *sep = i ? "," : "";

        ret |= d2o_buf_printf(&ids, "%s\"%s\"", sep, p[i].shard_id);
        ret |= d2o_buf_printf(&behind, "%s%" PRId64, sep, p[i].millis_behind_latest);
        ret |= d2o_buf_printf(&rate, "%s%.1f", sep, p[i].records_per_s);
    }
    ret |= d2o_buf_putc(&ids, '}') | d2o_buf_putc(&behind, '}') | d2o_buf_putc(&rate, '}');
    if (ret) {
        ret = -ENOMEM;
        goto out;
    }
    values[0] = application;
    values[1] = owner;
    values[2] = ids.data;
    values[3] = behind.data;
    values[4] = rate.data;
    ret = PQsendQueryParams(c, sql, 5, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
out:
    d2o_buf_free(&ids);
    d2o_buf_free(&behind);
    d2o_buf_free(&rate);
    return ret;
}

int d2o_lease_report(PGconn *c, const char *application, const char *owner,
                     const struct d2o_lease_progress *p, size_t n, char *errstr, size_t errstr_size)
{
    return answer(c, d2o_lease_report_send(c, application, owner, p, n), PGRES_COMMAND_OK,
                  "reporting shard progress", errstr, errstr_size);
}

int d2o_lease_worker_stopped_send(PGconn *c, const char *application, const char *id)
{
    const char *values[2] = {application, id};

    return PQsendQueryParams(c,
                             "UPDATE workers SET stopped_at = now(), leases_held = 0"
                             " WHERE application = $1 AND id = $2",
                             2, NULL, values, NULL, NULL, 0)
               ? 0
               : -EIO;
}

int d2o_lease_worker_stopped(PGconn *c, const char *application, const char *id, char *errstr,
                             size_t errstr_size)
{
    return answer(c, d2o_lease_worker_stopped_send(c, application, id), PGRES_COMMAND_OK,
                  "marking the worker stopped", errstr, errstr_size);
}
