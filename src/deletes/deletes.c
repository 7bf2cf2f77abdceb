/*
 * The delete store: record deletes, drop writes they outrank, expire old rows.
 * See include/d2o/deletes.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o/deletes.h"
#include "d2o/log.h"
#include "d2o/pg.h"
#include "d2o/util.h"

/*
 * $1 application, $2..$5 the items as parallel arrays (index, id, version, is_delete). The
 * data-modifying CTE runs to completion whether or not the query reads it; its rows are not seen
 * by the SELECT (one snapshot), which is right: the sink sends at most one item per document in
 * a request, so a request never holds a delete and a write of the same document.
 */
static const char check_sql[] =
    "WITH items AS ("
    "  SELECT * FROM unnest($2::text[], $3::text[], $4::int8[], $5::bool[])"
    "    WITH ORDINALITY AS t(index_name, doc_id, version, is_delete, pos)),"
    " recorded AS ("
    "  INSERT INTO deletes AS d (application, index_name, doc_id, version)"
    "  SELECT DISTINCT ON (index_name, doc_id) $1, index_name, doc_id, version"
    "    FROM items WHERE is_delete ORDER BY index_name, doc_id, version DESC"
    "  ON CONFLICT (application, index_name, doc_id) DO UPDATE"
    "    SET version = EXCLUDED.version, deleted_at = now()"
    "    WHERE d.version < EXCLUDED.version"
    "  RETURNING 1)"
    " SELECT i.pos FROM items i JOIN deletes d"
    "   ON d.application = $1 AND d.index_name = i.index_name AND d.doc_id = i.doc_id"
    " WHERE NOT i.is_delete AND d.version >= i.version";

/* Appends s as a double-quoted element of a PostgreSQL array literal: runs of plain bytes in
 * one append each, a quote or a backslash escaped. */
static int array_elem(struct d2o_buf *b, const char *s, bool first)
{
    int r = d2o_buf_append(b, first ? "\"" : ",\"", first ? 1 : 2);
    size_t run;

    while (r == 0 && *s) {
        run = strcspn(s, "\"\\");
        r = d2o_buf_append(b, s, run);
        s += run;
        if (r == 0 && *s) {
            char esc[2] = {'\\', *s++};

            r = d2o_buf_append(b, esc, 2);
        }
    }
    return r == 0 ? d2o_buf_append(b, "\"", 1) : r;
}

void d2o_deletes_query_free(struct d2o_deletes_query *q)
{
    if (q) {
        d2o_buf_free(&q->idx);
        d2o_buf_free(&q->ids);
        d2o_buf_free(&q->vers);
        d2o_buf_free(&q->dels);
        free(q->map);
        free(q);
    }
}

struct d2o_deletes_query *d2o_deletes_query_new(const struct d2o_bulk_filter_item *items, size_t n)
{
    struct d2o_deletes_query *q = calloc(1, sizeof(*q));
    size_t i;

    if (!q) {
        return NULL;
    }
    q->n = n;
    q->map = malloc((n ? n : 1) * sizeof(*q->map));
    if (!q->map || d2o_buf_append(&q->idx, "{", 1) < 0 || d2o_buf_append(&q->ids, "{", 1) < 0 ||
        d2o_buf_append(&q->vers, "{", 1) < 0 || d2o_buf_append(&q->dels, "{", 1) < 0) {
        goto fail;
    }
    for (i = 0; i < n; i++) {
        const struct d2o_bulk_filter_item *it = &items[i];
        const char *sep = q->m ? "," : "";

        if (!it->index || !it->id || it->version <= 0) {
            continue;
        }
        if (array_elem(&q->idx, it->index, q->m == 0) < 0 ||
            array_elem(&q->ids, it->id, q->m == 0) < 0 || d2o_buf_puts(&q->vers, sep) < 0 ||
            d2o_buf_put_i64(&q->vers, it->version) < 0 || d2o_buf_puts(&q->dels, sep) < 0 ||
            d2o_buf_putc(&q->dels, it->is_delete ? 't' : 'f') < 0) {
            goto fail;
        }
        q->map[q->m++] = i;
    }
    if (d2o_buf_append(&q->idx, "}", 1) < 0 || d2o_buf_append(&q->ids, "}", 1) < 0 ||
        d2o_buf_append(&q->vers, "}", 1) < 0 || d2o_buf_append(&q->dels, "}", 1) < 0) {
        goto fail;
    }
    return q;
fail:
    d2o_deletes_query_free(q);
    return NULL;
}

size_t d2o_deletes_query_size(const struct d2o_deletes_query *q)
{
    return q->m;
}

int d2o_deletes_query_send(PGconn *c, const char *application, const struct d2o_deletes_query *q)
{
    const char *values[5] = {application, q->idx.data, q->ids.data, q->vers.data, q->dels.data};

    return PQsendQueryParams(c, check_sql, 5, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
}

int d2o_deletes_query_read(PGconn *c, PGresult *res, const struct d2o_deletes_query *q, bool *drop,
                           size_t *n_dropped, char *errstr, size_t errstr_size)
{
    size_t i, dropped = 0;

    if (n_dropped) {
        *n_dropped = 0;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        d2o_pg_error(c, res, "checking writes against recorded deletes", errstr, errstr_size);
        for (i = 0; i < q->n; i++) {
            drop[i] = false;
        }
        return -EIO;
    }
    for (i = 0; i < (size_t)PQntuples(res); i++) {
        int64_t pos = 0;

        if (d2o_parse_i64(PQgetvalue(res, (int)i, 0), 1, (int64_t)q->m, &pos) < 0) {
            snprintf(errstr, errstr_size, "checking writes against recorded deletes: bad row %s",
                     PQgetvalue(res, (int)i, 0));
            for (i = 0; i < q->n; i++) {
                drop[i] = false;
            }
            return -EIO;
        }
        if (!drop[q->map[pos - 1]]) {
            drop[q->map[pos - 1]] = true;
            dropped++;
        }
    }
    if (n_dropped) {
        *n_dropped = dropped;
    }
    return 0;
}

int d2o_deletes_check(PGconn *c, const char *application, const struct d2o_bulk_filter_item *items,
                      size_t n, bool *drop, size_t *n_dropped, char *errstr, size_t errstr_size)
{
    struct d2o_deletes_query *q = d2o_deletes_query_new(items, n);
    PGresult *res;
    int r;

    if (n_dropped) {
        *n_dropped = 0;
    }
    if (!q) {
        snprintf(errstr, errstr_size, "checking writes against recorded deletes: no memory");
        memset(drop, 0, n * sizeof(*drop));
        return -ENOMEM;
    }
    if (q->m == 0) {
        d2o_deletes_query_free(q);
        return 0;
    }
    if (d2o_deletes_query_send(c, application, q) < 0) {
        d2o_pg_error(c, NULL, "checking writes against recorded deletes", errstr, errstr_size);
        memset(drop, 0, n * sizeof(*drop));
        d2o_deletes_query_free(q);
        return -EIO;
    }
    res = d2o_pg_last_result(c);
    r = d2o_deletes_query_read(c, res, q, drop, n_dropped, errstr, errstr_size);
    PQclear(res);
    d2o_deletes_query_free(q);
    return r;
}

/* The age is tested again on the row being deleted: a delete recorded again in the meantime (a
 * newer version, deleted_at moved) is kept, as EvalPlanQual re-checks it. */
static const char expire_sql[] =
    "DELETE FROM deletes d"
    " WHERE (d.application, d.index_name, d.doc_id) IN ("
    "   SELECT o.application, o.index_name, o.doc_id FROM deletes o"
    "    WHERE o.application = $1"
    "      AND o.deleted_at < now() - $2::int8 * interval '1 millisecond'"
    "      AND NOT EXISTS (SELECT 1 FROM dlq q WHERE q.application = o.application"
    "            AND q.state = 'pending' AND q.index_name = o.index_name"
    "            AND q.doc_id = o.doc_id AND q.version < o.version)"
    "    LIMIT $3)"
    "   AND d.deleted_at < now() - $2::int8 * interval '1 millisecond'";

int d2o_deletes_expire_send(PGconn *c, const char *application, int64_t retention_ms, int64_t limit)
{
    char ms[24], lim[24];
    const char *values[3] = {application, ms, lim};

    snprintf(ms, sizeof(ms), "%" PRId64, retention_ms);
    snprintf(lim, sizeof(lim), "%" PRId64, limit);
    return PQsendQueryParams(c, expire_sql, 3, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
}

int64_t d2o_deletes_expire_read(PGconn *c, PGresult *res, char *errstr, size_t errstr_size)
{
    int64_t removed = 0;

    if (PQresultStatus(res) != PGRES_COMMAND_OK ||
        d2o_parse_i64(PQcmdTuples(res), 0, INT64_MAX, &removed) < 0) {
        d2o_pg_error(c, res, "expiring recorded deletes", errstr, errstr_size);
        return -EIO;
    }
    return removed;
}

int64_t d2o_deletes_expire(PGconn *c, const char *application, int64_t retention_ms, int64_t limit,
                           char *errstr, size_t errstr_size)
{
    PGresult *res;
    int64_t removed;

    if (d2o_deletes_expire_send(c, application, retention_ms, limit) < 0) {
        d2o_pg_error(c, NULL, "expiring recorded deletes", errstr, errstr_size);
        return -EIO;
    }
    res = d2o_pg_last_result(c);
    removed = d2o_deletes_expire_read(c, res, errstr, errstr_size);
    PQclear(res);
    return removed;
}

int d2o_deletes_filter(void *arg, const struct d2o_bulk_filter_item *items, size_t n, bool *drop)
{
    struct d2o_deletes_ctx *ctx = arg;
    size_t dropped = 0;
    int r;

    if (!ctx->pg || PQstatus(ctx->pg) != CONNECTION_OK) {
        snprintf(ctx->err, sizeof(ctx->err), "no PostgreSQL connection to check deletes");
        return -EIO;
    }
    r = d2o_deletes_check(ctx->pg, ctx->application, items, n, drop, &dropped, ctx->err,
                          sizeof(ctx->err));
    if (r < 0) {
        return r;
    }
    ctx->checks++;
    ctx->dropped += dropped;
    if (dropped) {
        d2o_debug(D2O_CAT_SINK, "deletes_dropped",
                  "%zu of %zu writes dropped: their documents were deleted at a newer version",
                  dropped, n);
    }
    return 0;
}
