/* The dead-letter queue and the fenced checkpoint transaction. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int exec_simple(PGconn *c, const char *sql, char *errstr, size_t n)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

    if (!ok) {
        d2o_pg_error(c, r, sql, errstr, n);
    }
    PQclear(r);
    return ok ? 0 : -EIO;
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

int d2o_dlq_commit(PGconn *c, const struct d2o_checkpoint *cp, const struct d2o_dlq_row *rows,
                   size_t n, char *errstr, size_t errstr_size)
{
    static const char lock_sql[] =
        "SELECT checkpoint FROM leases WHERE application = $1 AND stream = $2 AND shard_id = $3"
        " AND owner = $4 AND lease_counter = $5 AND expires_at > clock_timestamp()"
        " FOR UPDATE NOWAIT";
    static const char update_sql[] =
        "UPDATE leases SET checkpoint = $6, owner_switches = 0, checkpointed_at = now(), "
        "updated_at = now(), version_last_ms = CASE WHEN $7::bigint > 0 THEN $7::bigint"
        " ELSE version_last_ms END"
        " WHERE application = $1 AND stream = $2 AND shard_id = $3 AND owner = $4"
        " AND lease_counter = $5";
    char counter[24], sver[24];
    const char *values[7];
    PGresult *r = NULL;
    size_t i;
    int ret = -EIO;

    if (!cp->position || !*cp->position ||
        (position_rank(cp->position) == 1 &&
         (strspn(cp->position, "0123456789") != strlen(cp->position) ||
          strlen(cp->position) > 129))) {
        snprintf(errstr, errstr_size, "checkpoint '%.40s' is not a sequence number or SHARD_END",
                 cp->position ? cp->position : "(null)");
        return -EINVAL;
    }
    snprintf(counter, sizeof(counter), "%" PRId64, cp->lease_counter);
    values[0] = cp->application;
    values[1] = cp->stream;
    values[2] = cp->shard_id;
    values[3] = cp->owner;
    values[4] = counter;
    values[5] = cp->position;
    snprintf(sver, sizeof(sver), "%" PRId64, cp->stream_version);
    values[6] = sver;
    if (exec_simple(c, "BEGIN", errstr, errstr_size) < 0) {
        return -EIO;
    }
    r = PQexecParams(c, lock_sql, 5, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, "checkpoint: reading the lease", errstr, errstr_size);
        goto fail;
    }
    if (PQntuples(r) == 0) {
        snprintf(errstr, errstr_size,
                 "checkpoint refused: shard %s is no longer leased to %s with counter %s",
                 cp->shard_id, cp->owner, counter);
        ret = D2O_LEASE_E_LOST;
        goto fail;
    }
    if (d2o_checkpoint_cmp(cp->position, PQgetvalue(r, 0, 0)) < 0) {
        snprintf(errstr, errstr_size,
                 "checkpoint refused: shard %s would move back from %.60s to %.60s", cp->shard_id,
                 PQgetvalue(r, 0, 0), cp->position);
        ret = -EINVAL;
        goto fail;
    }
    PQclear(r);
    r = NULL;
    d2o_test_point("checkpoint_locked");
    for (i = 0; i < n; i++) {
        if (insert_row(c, cp, &rows[i], errstr, errstr_size) < 0) {
            goto fail;
        }
    }
    r = PQexecParams(c, update_sql, 7, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(r), "1") != 0) {
        d2o_pg_error(c, r, "checkpoint: updating the lease", errstr, errstr_size);
        goto fail;
    }
    PQclear(r);
    return exec_simple(c, "COMMIT", errstr, errstr_size);
fail:
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    return ret;
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
