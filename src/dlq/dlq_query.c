/* Reading the dead-letter queue for operators. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/dlq.h"
#include "d2o/pg.h"
#include "d2o/util.h"

void d2o_dlq_entries_free(struct d2o_dlq_entry *rows, size_t n)
{
    size_t i;

    for (i = 0; rows && i < n; i++) {
        struct d2o_dlq_entry *e = &rows[i];

        free(e->stream);
        free(e->shard_id);
        free(e->sequence_number);
        free(e->partition_key);
        free(e->table_name);
        free(e->index_name);
        free(e->doc_id);
        if (e->raw) {
            PQfreemem(e->raw);
        }
        free(e->error_class);
        free(e->error_message);
        free(e->first_failed_at);
        free(e->last_failed_at);
        free(e->created_at);
        free(e->state);
        free(e->replay_result);
    }
    free(rows);
}

static char *col(PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? NULL : strdup(PQgetvalue(r, row, c));
}

int d2o_dlq_select(PGconn *c, const struct d2o_dlq_filter *f, struct d2o_dlq_entry **rows,
                   size_t *n, char *errstr, size_t errstr_size)
{
    static const char sql[] =
        "SELECT id, stream, shard_id, sequence_number, partition_key, table_name, index_name,"
        " doc_id, version, raw_record, error_class, http_status, error_message, attempts,"
        " first_failed_at, last_failed_at, created_at, state, replay_result FROM dlq"
        " WHERE ($1::text IS NULL OR application = $1) AND ($2::bigint IS NULL OR id = $2)"
        " AND ($3::text IS NULL OR shard_id = $3) AND ($4::text IS NULL OR table_name = $4)"
        " AND ($5::text IS NULL OR error_class = $5) AND ($6::text IS NULL OR state = $6)"
        " AND ($7::timestamptz IS NULL OR created_at >= $7)"
        " AND ($8::timestamptz IS NULL OR created_at < $8)"
        " ORDER BY CASE WHEN $10 THEN -id ELSE id END LIMIT $9";
    char id[24], limit[24];
    const char *values[10];
    struct d2o_dlq_entry *out = NULL;
    PGresult *r;
    int i, rcount;

    snprintf(id, sizeof(id), "%" PRId64, f->id);
    snprintf(limit, sizeof(limit), "%" PRId64, f->limit > 0 ? f->limit : INT64_MAX);
    values[0] = f->application;
    values[1] = f->id > 0 ? id : NULL;
    values[2] = f->shard_id;
    values[3] = f->table_name;
    values[4] = f->error_class;
    values[5] = f->state;
    values[6] = f->since;
    values[7] = f->until;
    values[8] = limit;
    values[9] = f->newest_first ? "true" : "false";
    r = PQexecParams(c, sql, 10, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, "reading the dead-letter queue", errstr, errstr_size);
        PQclear(r);
        return -EIO;
    }
    rcount = PQntuples(r);
    out = calloc(rcount ? (size_t)rcount : 1, sizeof(*out));
    if (!out) {
        PQclear(r);
        return -ENOMEM;
    }
    for (i = 0; i < rcount; i++) {
        struct d2o_dlq_entry *e = &out[i];
        int64_t status = 0, attempts = 0;
        int bad = 0;

        bad |= d2o_parse_i64(PQgetvalue(r, i, 0), 0, INT64_MAX, &e->id);
        e->stream = col(r, i, 1);
        e->shard_id = col(r, i, 2);
        e->sequence_number = col(r, i, 3);
        e->partition_key = col(r, i, 4);
        e->table_name = col(r, i, 5);
        e->index_name = col(r, i, 6);
        e->doc_id = col(r, i, 7);
        bad |= d2o_parse_i64(PQgetvalue(r, i, 8), INT64_MIN, INT64_MAX, &e->version);
        e->raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 9), &e->raw_len);
        e->error_class = col(r, i, 10);
        bad |= d2o_parse_i64(PQgetvalue(r, i, 11), 0, 999, &status);
        e->http_status = (int)status;
        e->error_message = col(r, i, 12);
        bad |= d2o_parse_i64(PQgetvalue(r, i, 13), 0, INT32_MAX, &attempts);
        e->attempts = (int)attempts;
        e->first_failed_at = col(r, i, 14);
        e->last_failed_at = col(r, i, 15);
        e->created_at = col(r, i, 16);
        e->state = col(r, i, 17);
        e->replay_result = col(r, i, 18);
        if (bad || !e->raw || !e->state) {
            snprintf(errstr, errstr_size, "dead-letter row %s is unreadable", PQgetvalue(r, i, 0));
            PQclear(r);
            d2o_dlq_entries_free(out, (size_t)i + 1);
            return -EIO;
        }
    }
    PQclear(r);
    *rows = out;
    *n = (size_t)rcount;
    return 0;
}

int d2o_dlq_replay_failed(PGconn *c, int64_t id, const char *result, char *errstr,
                          size_t errstr_size)
{
    char idtext[24];
    const char *values[2];
    PGresult *r;
    int ret = 0;

    snprintf(idtext, sizeof(idtext), "%" PRId64, id);
    values[0] = idtext;
    values[1] = result;
    r = PQexecParams(c,
                     "UPDATE dlq SET attempts = attempts + 1, replay_result = $2,"
                     " last_failed_at = now() WHERE id = $1",
                     2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        d2o_pg_error(c, r, "recording a replay", errstr, errstr_size);
        ret = -EIO;
    }
    PQclear(r);
    return ret;
}
