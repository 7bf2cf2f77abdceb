/* The dead-letter queue and the fenced checkpoint transaction. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o/dlq.h"
#include "d2o/pg.h"
#include "d2o/util.h"

static int position_rank(const char *p)
{
    if (strcmp(p, "TRIM_HORIZON") == 0 || strcmp(p, "LATEST") == 0 ||
        strcmp(p, "AT_TIMESTAMP") == 0) {
        return 0;
    }
    if (strcmp(p, "SHARD_END") == 0) {
        return 2;
    }
    return 1;
}

int d2o_checkpoint_cmp(const char *a, const char *b)
{
    int ra = position_rank(a), rb = position_rank(b);
    size_t la, lb;

    if (ra != rb || ra != 1) {
        return ra - rb;
    }
    la = strlen(a);
    lb = strlen(b);
    if (la != lb) {
        return la < lb ? -1 : 1;
    }
    return strcmp(a, b);
}

static void usecs_text(int64_t us, char *buf, size_t n)
{
    /* to_timestamp() takes seconds as a double: microseconds survive up to year 2255. */
    snprintf(buf, n, "%lld.%06lld", (long long)(us / 1000000), (long long)(us % 1000000));
}

static int insert_row(PGconn *c, const struct d2o_checkpoint *cp, const struct d2o_dlq_row *row,
                      char *errstr, size_t n)
{
    static const char sql[] =
        "INSERT INTO dlq (application, stream, shard_id, sequence_number, partition_key,"
        " table_name, index_name, doc_id, version, raw_record, error_class, http_status,"
        " error_message, attempts, first_failed_at, last_failed_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
        " to_timestamp($15::double precision), to_timestamp($16::double precision))"
        " ON CONFLICT (application, stream, shard_id, sequence_number, index_name, doc_id)"
        " DO UPDATE SET attempts = dlq.attempts + EXCLUDED.attempts,"
        " last_failed_at = EXCLUDED.last_failed_at, error_class = EXCLUDED.error_class,"
        " http_status = EXCLUDED.http_status, error_message = EXCLUDED.error_message,"
        /* A row the operator discarded stays discarded when the shard is read again. */
        " state = CASE WHEN dlq.state = 'discarded' THEN dlq.state ELSE 'pending' END,"
        " replay_result = CASE WHEN dlq.state = 'discarded' THEN dlq.replay_result END";
    char version[24], status[16], attempts[16], first[32], last[32];
    const char *values[16];
    int lengths[16] = {0}, formats[16] = {0};
    PGresult *r;
    int ok;

    snprintf(version, sizeof(version), "%" PRId64, row->version);
    snprintf(status, sizeof(status), "%d", row->http_status);
    snprintf(attempts, sizeof(attempts), "%d", row->attempts);
    usecs_text(row->first_failed_us, first, sizeof(first));
    usecs_text(row->last_failed_us, last, sizeof(last));
    values[0] = cp->application;
    values[1] = row->stream ? row->stream : cp->stream;
    values[2] = row->shard_id ? row->shard_id : cp->shard_id;
    values[3] = row->sequence_number;
    values[4] = row->partition_key ? row->partition_key : "";
    values[5] = row->table_name ? row->table_name : "";
    values[6] = row->index_name ? row->index_name : "";
    values[7] = row->doc_id ? row->doc_id : "";
    values[8] = version;
    values[9] = row->raw_len ? row->raw : "";
    lengths[9] = (int)row->raw_len;
    formats[9] = 1; /* binary: the raw record goes in byte for byte */
    values[10] = row->error_class ? row->error_class : "unknown";
    values[11] = status;
    values[12] = row->error_message ? row->error_message : "";
    values[13] = attempts;
    values[14] = first;
    values[15] = last;
    r = PQexecParams(c, sql, 16, NULL, values, lengths, formats, 0);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        d2o_pg_error(c, r, "writing a dead-letter row", errstr, n);
    }
    PQclear(r);
    return ok ? 0 : -EIO;
}

/* ---- checkpoints of many shards in one statement ---- */

/* A position as a (rank, number) pair that sorts like d2o_checkpoint_cmp: the rank, then the
 * sequence number's value (numeric: the same order as the digits padded to 129 with zeros,
 * without building a 130-character string twice per shard). */
#define POSKEY(x)                                                                                  \
    "(CASE WHEN " x " IN ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP') THEN 0"                        \
    " WHEN " x " = 'SHARD_END' THEN 2 ELSE 1 END, CASE WHEN " x " IN ('TRIM_HORIZON', 'LATEST',"   \
    " 'AT_TIMESTAMP', 'SHARD_END') THEN 0 ELSE " x "::numeric END)"

/* The shard's new position (v.pos) does not move back from the stored one (k.checkpoint). */
#define NOT_BACK POSKEY("v.pos") " >= " POSKEY("k.checkpoint")

/*
 * One statement: lock every listed lease row that still names this owner with the shard's
 * counter and an expiry after clock_timestamp() (NOWAIT), keep the shards whose new position does
 * not move back, insert their DLQ rows and move their checkpoints; answer per shard whether it
 * was committed ('ok'), refused for moving back ('back', with the stored position) or fenced
 * out ('lost').
 *
 * Its cost must grow with the number of shards whatever plan PostgreSQL picks, also for a
 * generic plan (which guesses 10 rows for every unnest) and for a table without statistics yet:
 *   - each shard finds its lease row in a LATERAL subquery, one index probe per shard; a join
 *     of the shards with the lease rows may be planned as a nested loop that scans all of the
 *     owner's leases for every shard (quadratic: 200 shards, 40 000 rows locked and filtered);
 *   - the shards are carried through by their ordinal, never joined again by stream and shard
 *     (only their DLQ rows, rare, are); whether a shard moves forward is computed once (fwd);
 *   - a table without statistics makes the owner index (application, owner, stream, shard_id)
 *     look as cheap as the primary key: both find a shard's row in one probe;
 *   - the shards' rows end in LIMIT cardinality(shards), which changes nothing but the generic
 *     plan's guess: one shard instead of unnest's ten. With ten, a custom plan for one or a few
 *     shards looked cheaper than the generic one, and PostgreSQL planned the statement again
 *     on every turn (more than the statement's own work for one shard).
 * A turn whose shards pass no DLQ rows (nearly every turn) sends the statement without the DLQ
 * insert (BATCH_SQL): an INSERT ... ON CONFLICT into the dead-letter table opens that table and
 * its seven indexes on every execution even when it inserts nothing, which was about a third of
 * the statement's cost for a few shards (docs/performance.md, "the fenced checkpoint").
 *
 * $1 application, $2..$5 the shards' streams, ids, counters and positions, $6 owner, $7 the
 * shards' stream versions; with DLQ rows, $8..$22 their columns.
 */
#define BATCH_LOCKED                                                                               \
    "WITH l AS (SELECT v.i, v.stream, v.shard_id, v.counter, v.pos, v.sver, k.tid, k.checkpoint,"  \
    "   k.tid IS NOT NULL AND " NOT_BACK " AS fwd"                                                 \
    "   FROM (SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[],"              \
    "     $7::bigint[]) WITH ORDINALITY AS v(stream, shard_id, counter, pos, sver, i)"             \
    "     LIMIT cardinality($3::text[])) v"                                                        \
    "   LEFT JOIN LATERAL (SELECT l.ctid AS tid, l.checkpoint FROM leases l"                       \
    "     WHERE l.application = $1 AND l.stream = v.stream AND l.shard_id = v.shard_id"            \
    "     AND l.owner = $6 AND l.lease_counter = v.counter AND l.expires_at > clock_timestamp()"   \
    "     FOR UPDATE OF l NOWAIT) k ON true),"

/* Moves the checkpoints of the shards that passed (fwd: their row is locked with the fence and
 * the position does not move back; found again by its address) and answers: the moved ones
 * from the UPDATE, the others from l (no row locked: lost; else back, with the stored
 * position). version_last_ms: a DynamoDB stream's version at the checkpoint (0: none). */
#define BATCH_UPDATE                                                                               \
    " u AS (UPDATE leases t SET checkpoint = l.pos, owner_switches = 0,"                           \
    "   checkpointed_at = now(), updated_at = now(),"                                              \
    "   version_last_ms = CASE WHEN l.sver > 0 THEN l.sver ELSE t.version_last_ms END FROM l"      \
    "   WHERE l.fwd AND t.ctid = l.tid AND t.owner = $6 AND t.lease_counter = l.counter"           \
    "   RETURNING l.i)"                                                                            \
    " SELECT u.i, 'ok', NULL FROM u UNION ALL SELECT l.i, CASE WHEN l.tid IS NULL THEN 'lost'"     \
    "   ELSE 'back' END, l.checkpoint FROM l WHERE l.fwd IS NOT TRUE"

/* The DLQ rows of the shards that passed, the newest of each (stream, shard, sequence number,
 * index, document) once. A row the operator discarded stays discarded when the shard is read
 * again. */
#define BATCH_DLQ                                                                                  \
    " x AS (SELECT DISTINCT ON (x.stream, x.shard_id, x.seq, x.idx, x.doc) x.* FROM unnest("       \
    "   $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],"  \
    "   $15::bigint[], $16::text[], $17::text[], $18::int[], $19::text[], $20::int[],"             \
    "   $21::float8[], $22::float8[]) WITH ORDINALITY AS x(stream, shard_id, seq, pk, tbl, idx,"   \
    "   doc, ver, raw, cls, status, msg, attempts, first, last, n)"                                \
    "   JOIN l ON l.fwd AND l.stream = x.stream AND l.shard_id = x.shard_id"                       \
    "   ORDER BY x.stream, x.shard_id, x.seq, x.idx, x.doc, x.n DESC),"                            \
    " d AS (INSERT INTO dlq (application, stream, shard_id, sequence_number, partition_key,"       \
    "   table_name, index_name, doc_id, version, raw_record, error_class, http_status,"            \
    "   error_message, attempts, first_failed_at, last_failed_at)"                                 \
    "   SELECT $1, stream, shard_id, seq, pk, tbl, idx, doc, ver, decode(raw, 'hex'), cls,"        \
    "   status, msg, attempts, to_timestamp(first), to_timestamp(last) FROM x"                     \
    "   ON CONFLICT (application, stream, shard_id, sequence_number, index_name, doc_id)"          \
    "   DO UPDATE SET attempts = dlq.attempts + EXCLUDED.attempts,"                                \
    "   last_failed_at = EXCLUDED.last_failed_at, error_class = EXCLUDED.error_class,"             \
    "   http_status = EXCLUDED.http_status, error_message = EXCLUDED.error_message,"               \
    "   state = CASE WHEN dlq.state = 'discarded' THEN dlq.state ELSE 'pending' END,"              \
    "   replay_result = CASE WHEN dlq.state = 'discarded' THEN dlq.replay_result END),"

static const char batch_sql[] = BATCH_LOCKED BATCH_UPDATE;
static const char batch_dlq_sql[] = BATCH_LOCKED BATCH_DLQ BATCH_UPDATE;

/* The array parameters, in the order of $2..$5, $7 and $8..$22. */
enum {
    B_STREAM,
    B_SHARD,
    B_COUNTER,
    B_POS,
    B_VER, /* $7 */
    B_D_STREAM,
    B_D_SHARD,
    B_D_SEQ,
    B_D_PK,
    B_D_TABLE,
    B_D_INDEX,
    B_D_DOC,
    B_D_VERSION,
    B_D_RAW,
    B_D_CLASS,
    B_D_STATUS,
    B_D_MESSAGE,
    B_D_ATTEMPTS,
    B_D_FIRST,
    B_D_LAST,
    B_COLS
};

/* Parameters of the statement without DLQ rows ($1..$7) and with them ($1..$22). */
#define B_PARAMS 7
#define B_PARAMS_DLQ 22

struct d2o_checkpoint_batch {
    const char *application, *owner;
    struct d2o_buf col[B_COLS];
    size_t n, n_rows;
    struct {
        char *shard_id, *position, *stored;
        int64_t counter;
    } * e;
    size_t cap;
};

struct d2o_checkpoint_batch *d2o_checkpoint_batch_new(const char *application, const char *owner)
{
    struct d2o_checkpoint_batch *b = calloc(1, sizeof(*b));

    if (b) {
        b->application = application;
        b->owner = owner;
    }
    return b;
}

void d2o_checkpoint_batch_free(struct d2o_checkpoint_batch *b)
{
    size_t i;

    if (!b) {
        return;
    }
    for (i = 0; i < B_COLS; i++) {
        d2o_buf_free(&b->col[i]);
    }
    for (i = 0; i < b->n; i++) {
        free(b->e[i].shard_id);
        free(b->e[i].position);
        free(b->e[i].stored);
    }
    free(b->e);
    free(b);
}

size_t d2o_checkpoint_batch_size(const struct d2o_checkpoint_batch *b)
{
    return b->n;
}

/* Appends one element to an array literal: a quoted string (NULL: ""), or a bare number. */
static int arr_str(struct d2o_buf *a, const char *s)
{
    int r = d2o_buf_puts(a, a->len ? ",\"" : "\"");

    for (s = s ? s : ""; *s && r == 0; s++) {
        if (*s == '"' || *s == '\\') {
            r = d2o_buf_putc(a, '\\');
        }
        r |= d2o_buf_putc(a, *s);
    }
    return r | d2o_buf_putc(a, '"');
}

static int arr_num(struct d2o_buf *a, const char *fmt_value)
{
    return (a->len ? d2o_buf_putc(a, ',') : 0) | d2o_buf_puts(a, fmt_value);
}

static int arr_i64(struct d2o_buf *a, int64_t v)
{
    char t[24];

    snprintf(t, sizeof(t), "%" PRId64, v);
    return arr_num(a, t);
}

static int arr_hex(struct d2o_buf *a, const void *raw, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = raw;
    int r = d2o_buf_puts(a, a->len ? ",\"" : "\"");
    size_t i;

    if (r == 0) {
        r = d2o_buf_reserve(a, 2 * n + 2);
    }
    for (i = 0; i < n && r == 0; i++) {
        r = d2o_buf_putc(a, digits[p[i] >> 4]) | d2o_buf_putc(a, digits[p[i] & 15]);
    }
    return r | d2o_buf_putc(a, '"');
}

static int check_position(const char *position, char *errstr, size_t errstr_size)
{
    if (!position || !*position ||
        (position_rank(position) == 1 &&
         (strspn(position, "0123456789") != strlen(position) || strlen(position) > 129))) {
        snprintf(errstr, errstr_size, "checkpoint '%.40s' is not a sequence number or SHARD_END",
                 position ? position : "(null)");
        return -EINVAL;
    }
    return 0;
}

int d2o_checkpoint_batch_add(struct d2o_checkpoint_batch *b, const char *stream,
                             const char *shard_id, int64_t counter, const char *position,
                             int64_t stream_version, const struct d2o_dlq_row *rows, size_t n,
                             char *errstr, size_t errstr_size)
{
    struct d2o_buf *c = b->col;
    size_t i;
    int r;

    if (check_position(position, errstr, errstr_size) < 0) {
        return -EINVAL;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        void *grown = realloc(b->e, cap * sizeof(*b->e));

        if (!grown) {
            return -ENOMEM;
        }
        b->e = grown;
        b->cap = cap;
    }
    b->e[b->n].shard_id = strdup(shard_id);
    b->e[b->n].position = strdup(position);
    b->e[b->n].stored = NULL;
    b->e[b->n].counter = counter;
    b->n++;
    r = !b->e[b->n - 1].shard_id || !b->e[b->n - 1].position;
    r |= arr_str(&c[B_STREAM], stream) | arr_str(&c[B_SHARD], shard_id) |
         arr_i64(&c[B_COUNTER], counter) | arr_str(&c[B_POS], position) |
         arr_i64(&c[B_VER], stream_version);
    for (i = 0; i < n && r == 0; i++) {
        const struct d2o_dlq_row *row = &rows[i];
        char first[32], last[32];

        usecs_text(row->first_failed_us, first, sizeof(first));
        usecs_text(row->last_failed_us, last, sizeof(last));
        r |= arr_str(&c[B_D_STREAM], row->stream ? row->stream : stream);
        r |= arr_str(&c[B_D_SHARD], row->shard_id ? row->shard_id : shard_id);
        r |= arr_str(&c[B_D_SEQ], row->sequence_number);
        r |= arr_str(&c[B_D_PK], row->partition_key) | arr_str(&c[B_D_TABLE], row->table_name);
        r |= arr_str(&c[B_D_INDEX], row->index_name) | arr_str(&c[B_D_DOC], row->doc_id);
        r |= arr_i64(&c[B_D_VERSION], row->version) | arr_hex(&c[B_D_RAW], row->raw, row->raw_len);
        r |= arr_str(&c[B_D_CLASS], row->error_class ? row->error_class : "unknown");
        r |= arr_i64(&c[B_D_STATUS], row->http_status);
        r |= arr_str(&c[B_D_MESSAGE], row->error_message);
        r |= arr_i64(&c[B_D_ATTEMPTS], row->attempts);
        r |= arr_num(&c[B_D_FIRST], first) | arr_num(&c[B_D_LAST], last);
        b->n_rows++;
    }
    /* A failed append leaves the batch unusable: the caller drops it. */
    return r ? -ENOMEM : 0;
}

#define BATCH_STATEMENT "d2o_checkpoint_batch"
#define BATCH_DLQ_STATEMENT "d2o_checkpoint_batch_dlq"

int d2o_checkpoint_batch_prepare(PGconn *c, char *errstr, size_t errstr_size)
{
    PGresult *r = PQprepare(c, BATCH_STATEMENT, batch_sql, B_PARAMS, NULL);
    int ret = 0;

    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        r = PQprepare(c, BATCH_DLQ_STATEMENT, batch_dlq_sql, B_PARAMS_DLQ, NULL);
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        d2o_pg_error(c, r, "preparing the checkpoint statement", errstr, errstr_size);
        ret = -EIO;
    }
    PQclear(r);
    return ret;
}

int d2o_checkpoint_batch_prepare_send(PGconn *c, unsigned i)
{
    if (i > 1) {
        return 1;
    }
    return PQsendPrepare(c, i ? BATCH_DLQ_STATEMENT : BATCH_STATEMENT,
                         i ? batch_dlq_sql : batch_sql, i ? B_PARAMS_DLQ : B_PARAMS, NULL)
               ? 0
               : -EIO;
}

int d2o_checkpoint_batch_send(PGconn *c, const struct d2o_checkpoint_batch *b, bool prepared)
{
    /* Without DLQ rows the statement without the DLQ insert (see batch_sql). */
    int cols = b->n_rows ? B_COLS : B_VER + 1, params = b->n_rows ? B_PARAMS_DLQ : B_PARAMS;
    struct d2o_buf lit[B_COLS];
    const char *values[B_PARAMS_DLQ];
    int i, r = 0, ok = 0;

    for (i = 0; i < cols; i++) {
        lit[i] = (struct d2o_buf)D2O_BUF_INIT;
        r |= d2o_buf_putc(&lit[i], '{') |
             (b->col[i].len ? d2o_buf_append(&lit[i], b->col[i].data, b->col[i].len) : 0) |
             d2o_buf_putc(&lit[i], '}');
    }
    values[0] = b->application;
    values[5] = b->owner;
    for (i = 0; i < cols && r == 0; i++) {
        values[i < 4 ? i + 1 : i + 2] = lit[i].data;
    }
    if (r == 0 && prepared) {
        ok = PQsendQueryPrepared(c, b->n_rows ? BATCH_DLQ_STATEMENT : BATCH_STATEMENT, params,
                                 values, NULL, NULL, 0);
    } else if (r == 0) {
        ok = PQsendQueryParams(c, b->n_rows ? batch_dlq_sql : batch_sql, params, NULL, values, NULL,
                               NULL, 0);
    }
    for (i = 0; i < cols; i++) {
        d2o_buf_free(&lit[i]);
    }
    return r ? -ENOMEM : ok ? 0 : -EIO;
}

int d2o_checkpoint_batch_read(struct d2o_checkpoint_batch *b, PGconn *c, PGresult *r, int *outcome,
                              char *errstr, size_t errstr_size)
{
    size_t seen = 0;
    int row;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, "checkpoint", errstr, errstr_size);
        return -EIO;
    }
    for (row = 0; row < PQntuples(r); row++) {
        const char *state = PQgetvalue(r, row, 1);
        int64_t i = 0;

        if (d2o_parse_i64(PQgetvalue(r, row, 0), 1, (int64_t)b->n, &i) < 0) {
            continue;
        }
        outcome[i - 1] = strcmp(state, "ok") == 0     ? 0
                         : strcmp(state, "back") == 0 ? -EINVAL
                                                      : D2O_LEASE_E_LOST;
        free(b->e[i - 1].stored);
        b->e[i - 1].stored = PQgetisnull(r, row, 2) ? NULL : strdup(PQgetvalue(r, row, 2));
        seen++;
    }
    if (seen != b->n) {
        snprintf(errstr, errstr_size, "checkpoint: %zu answers for %zu shards", seen, b->n);
        return -EIO;
    }
    return 0;
}

void d2o_checkpoint_batch_why(const struct d2o_checkpoint_batch *b, size_t i, int outcome,
                              char *errstr, size_t errstr_size)
{
    if (outcome == -EINVAL) {
        snprintf(errstr, errstr_size,
                 "checkpoint refused: shard %s would move back from %.60s to %.60s",
                 b->e[i].shard_id, b->e[i].stored ? b->e[i].stored : "?", b->e[i].position);
    } else {
        snprintf(errstr, errstr_size,
                 "checkpoint refused: shard %s is no longer leased to %s with counter %" PRId64,
                 b->e[i].shard_id, b->owner, b->e[i].counter);
    }
}

int d2o_checkpoint_batch_exec(PGconn *c, struct d2o_checkpoint_batch *b, bool prepared,
                              int *outcome, char *errstr, size_t errstr_size)
{
    PGresult *last;
    int ret;

    if (d2o_checkpoint_batch_send(c, b, prepared) < 0) {
        d2o_pg_error(c, NULL, "checkpoint", errstr, errstr_size);
        return -EIO;
    }
    last = d2o_pg_last_result(c);
    ret = d2o_checkpoint_batch_read(b, c, last, outcome, errstr, errstr_size);
    PQclear(last);
    return ret;
}

int d2o_dlq_commit(PGconn *c, const struct d2o_checkpoint *cp, const struct d2o_dlq_row *rows,
                   size_t n, char *errstr, size_t errstr_size)
{
    struct d2o_checkpoint_batch *b;
    int outcome = -EIO, r;

    if (check_position(cp->position, errstr, errstr_size) < 0) {
        return -EINVAL;
    }
    b = d2o_checkpoint_batch_new(cp->application, cp->owner);
    if (!b) {
        return -ENOMEM;
    }
    r = d2o_checkpoint_batch_add(b, cp->stream, cp->shard_id, cp->lease_counter, cp->position,
                                 cp->stream_version, rows, n, errstr, errstr_size);
    if (r == 0) {
        r = d2o_checkpoint_batch_exec(c, b, false, &outcome, errstr, errstr_size);
    }
    if (r == 0 && outcome != 0) {
        d2o_checkpoint_batch_why(b, 0, outcome, errstr, errstr_size);
    }
    d2o_checkpoint_batch_free(b);
    return r < 0 ? r : outcome;
}

int d2o_dlq_insert(PGconn *c, const char *application, const struct d2o_dlq_row *rows, size_t n,
                   char *errstr, size_t errstr_size)
{
    struct d2o_checkpoint cp;
    size_t i;

    memset(&cp, 0, sizeof(cp));
    cp.application = application;
    for (i = 0; i < n; i++) {
        if (insert_row(c, &cp, &rows[i], errstr, errstr_size) < 0) {
            return -EIO;
        }
    }
    return 0;
}

int d2o_dlq_mark(PGconn *c, int64_t id, const char *state, const char *result, char *errstr,
                 size_t errstr_size)
{
    static const char sql[] = "UPDATE dlq SET state = $2, replay_result = $3,"
                              " replayed_at = CASE WHEN $2 = 'replayed' THEN now() END"
                              " WHERE id = $1";
    char idtext[24];
    const char *values[3];
    PGresult *r;
    int ret = 0;

    snprintf(idtext, sizeof(idtext), "%" PRId64, id);
    values[0] = idtext;
    values[1] = state;
    values[2] = result;
    r = PQexecParams(c, sql, 3, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        d2o_pg_error(c, r, "marking a dead-letter row", errstr, errstr_size);
        ret = -EIO;
    } else if (strcmp(PQcmdTuples(r), "0") == 0) {
        snprintf(errstr, errstr_size, "no dead-letter row with id %s", idtext);
        ret = -ENOENT;
    }
    PQclear(r);
    return ret;
}

int64_t d2o_dlq_count_pending(PGconn *c, const char *application, char *errstr, size_t errstr_size)
{
    const char *values[1] = {application};
    PGresult *r = PQexecParams(c,
                               "SELECT count(*) FROM dlq WHERE state = 'pending'"
                               " AND ($1::text IS NULL OR application = $1)",
                               1, NULL, values, NULL, NULL, 0);
    int64_t count = -EIO;

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        d2o_parse_i64(PQgetvalue(r, 0, 0), 0, INT64_MAX, &count) == 0) {
        PQclear(r);
        return count;
    }
    d2o_pg_error(c, r, "counting dead-letter rows", errstr, errstr_size);
    PQclear(r);
    return -EIO;
}
