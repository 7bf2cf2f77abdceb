/*
 * `ddb2os backfill`: a coordinator and its worker processes load a table's existing items into
 * OpenSearch through the stream's document path and bulk sink.
 *
 * Coordinator: holds a PostgreSQL advisory lock for the table (a second backfill of the table is
 * refused while it lives), takes DynamoDB's time from DescribeTable's Date header, creates or
 * resumes the backfill row (the one version V every item is written at) and its segment rows,
 * checks that the stream is consumed from before V, forks the workers, prints progress, serves
 * the progress series, respawns a worker that died while segments remain, and marks the backfill
 * done.
 *
 * Worker: claims a pending segment (FOR UPDATE SKIP LOCKED), scans it page by page from its saved
 * LastEvaluatedKey, writes each page's items through the sink, and only when every item of the
 * page has its final outcome commits the page: its refused items into the dead-letter queue and
 * the new LastEvaluatedKey, in one transaction. A killed worker loses at most the page in
 * progress, which its successor reads again (idempotent: same version).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bf_int.h"
#include "d2o/backfill.h"
#include "d2o/cli.h"
#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/dlq.h"
#include "d2o/log.h"
#include "d2o/pg.h"
#include "d2o/rand.h"
#include "d2o/record.h"
#include "d2o/wait.h"

#define CMD "backfill"
#define MAX_RESPAWNS 20

static volatile sig_atomic_t stop_flag;
static int lock_fd = -1; /* the coordinator's PostgreSQL socket, closed in each worker */

/* ---- PostgreSQL ---- */

static int exec_params(PGconn *c, const char *sql, int n, const char *const *v, PGresult **out,
                       const char *what, char *errstr, size_t errstr_size)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        d2o_pg_error(c, r, what, errstr, errstr_size);
        PQclear(r);
        return -EIO;
    }
    if (out) {
        *out = r;
    } else {
        PQclear(r);
    }
    return 0;
}

/* ---- the worker ---- */

struct page_item {
    struct d2o_buf record; /* the change record (for the DLQ) */
    char *index, *id;
    int64_t version;
    bool done;
    bool dlq;
    char error_class[96];
    char error_message[512];
    int status;
    int attempts;
};

struct worker {
    struct d2o_config *conf;
    const struct d2o_backfill_opts *o;
    struct bf_clients cl;
    char owner[64];
    int64_t version;
    int total_segments;
    char hash[256];
    const char *range;
    struct page_item *items;
    size_t n_items, cap_items;
    double tokens_items, tokens_rcu;
    int64_t last_refill_ms;
    int64_t processed;
};

static void on_item_done(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    struct page_item *it = cookie;

    (void)arg;
    it->done = true;
    it->status = res->status;
    it->attempts = (int)res->attempts;
    if (res->outcome == D2O_BULK_DLQ) {
        it->dlq = true;
        snprintf(it->error_class, sizeof(it->error_class), "%s",
                 res->error_class ? res->error_class : "unknown");
        snprintf(it->error_message, sizeof(it->error_message), "%s",
                 res->error_message ? res->error_message : "");
    }
}

static void items_reset(struct worker *w)
{
    size_t i;

    for (i = 0; i < w->n_items; i++) {
        d2o_buf_free(&w->items[i].record);
        free(w->items[i].index);
        free(w->items[i].id);
    }
    w->n_items = 0;
}

/* Waits until the rate limits allow the next page. Rates are shared evenly by the workers. */
static void rate_wait(struct worker *w)
{
    double per_items = w->o->rate_items / w->o->workers, per_rcu = w->o->rate_rcu / w->o->workers;

    for (;;) {
        int64_t now = d2o_mono_ms();
        double dt = (double)(now - w->last_refill_ms) / 1000.0;
        int64_t wait = 0;

        w->last_refill_ms = now;
        if (per_items > 0) {
            w->tokens_items = fmin(w->tokens_items + dt * per_items, per_items);
            if (w->tokens_items < 0) {
                wait = (int64_t)(-w->tokens_items / per_items * 1000) + 1;
            }
        }
        if (per_rcu > 0) {
            w->tokens_rcu = fmin(w->tokens_rcu + dt * per_rcu, per_rcu);
            if (w->tokens_rcu < 0) {
                int64_t wr = (int64_t)(-w->tokens_rcu / per_rcu * 1000) + 1;

                wait = wr > wait ? wr : wait;
            }
        }
        if (wait == 0 || stop_flag) {
            return;
        }
        if (d2o_wait_ms(wait > 1000 ? 1000 : wait, &stop_flag) == 1) {
            return;
        }
    }
}

/* Builds and queues the bulk item of one scanned item (or marks it for the DLQ). */
static int queue_item(struct worker *w, const char *table, struct json_object *item)
{
    struct page_item *it;
    struct d2o_record rec;
    struct d2o_doc_op op;
    char err[512];
    int r;

    if (w->n_items == w->cap_items) {
        size_t nc = w->cap_items ? w->cap_items * 2 : 1024;
        struct page_item *g = realloc(w->items, nc * sizeof(*g));

        if (!g) {
            return -ENOMEM;
        }
        w->items = g;
        w->cap_items = nc;
    }
    it = &w->items[w->n_items++];
    memset(it, 0, sizeof(*it));
    it->version = w->version;
    r = d2o_ddb_item_record(table, item, w->hash, w->range, w->version, &it->record, err,
                            sizeof(err));
    if (r == -ENOMEM) {
        return r;
    }
    if (r == 0) {
        r = d2o_record_parse(it->record.data, it->record.len, &rec, err, sizeof(err));
        if (r == 0) {
            r = d2o_doc_build_at(&rec, w->conf, w->version, &op, err, sizeof(err));
            d2o_record_free(&rec);
        }
    }
    if (r == -ENOMEM) {
        return r;
    }
    if (r < 0) {
        /* an item that cannot become a document is dead-lettered like a bad stream record */
        it->done = true;
        it->dlq = true;
        snprintf(it->error_class, sizeof(it->error_class), "%s", D2O_DOCUMENT_ERROR_CLASS);
        snprintf(it->error_message, sizeof(it->error_message), "%s", err);
        if (!it->record.data) {
            /* no record could be made: keep the item itself */
            r = d2o_buf_puts(&it->record,
                             json_object_to_json_string_ext(item, JSON_C_TO_STRING_PLAIN));
        }
        return r < 0 && r == -ENOMEM ? r : 0;
    }
    it->index = op.index;
    it->id = op.id;
    op.index = NULL;
    op.id = NULL;
    r = d2o_bulk_add(w->cl.sink, op.ndjson.data, op.ndjson.len, false, it);
    d2o_doc_op_free(&op);
    return r;
}

/* Commits a finished page: DLQ rows and the segment's new position, in one transaction. */
static int commit_page(struct worker *w, int segment, const char *last_key, size_t n_items,
                       char *errstr, size_t errstr_size)
{
    static const char upd[] =
        "UPDATE backfill_segments SET last_key = $4, items = items + $5, pages = pages + 1,"
        " dlq = dlq + $6, state = CASE WHEN $4::text IS NULL THEN 'done' ELSE 'running' END,"
        " finished_at = CASE WHEN $4::text IS NULL THEN now() END, updated_at = now()"
        " WHERE application = $1 AND table_name = $2 AND segment = $3 AND owner = $7"
        " AND state = 'running'";
    struct d2o_dlq_row *rows = NULL;
    char seg[16], items[24], ndlq[24], shard[32], stream[300];
    const char *v[7];
    size_t i, n_dlq = 0;
    PGresult *res = NULL;
    int r;

    snprintf(stream, sizeof(stream), "backfill:%s", w->o->table);
    snprintf(shard, sizeof(shard), "segment-%d", segment);
    for (i = 0; i < w->n_items; i++) {
        n_dlq += w->items[i].dlq;
    }
    if (n_dlq) {
        rows = calloc(n_dlq, sizeof(*rows));
        if (!rows) {
            return -ENOMEM;
        }
        n_dlq = 0;
        for (i = 0; i < w->n_items; i++) {
            struct page_item *it = &w->items[i];
            struct d2o_dlq_row *row;
            int64_t now = d2o_wall_us();

            if (!it->dlq) {
                continue;
            }
            row = &rows[n_dlq++];
            row->stream = stream;
            row->shard_id = shard;
            row->sequence_number = "0";
            row->partition_key = it->id ? it->id : "";
            row->table_name = w->o->table;
            row->index_name = it->index ? it->index : "";
            row->doc_id = it->id ? it->id : "";
            row->version = it->version;
            row->raw = it->record.data;
            row->raw_len = it->record.len;
            row->error_class = it->error_class;
            row->http_status = it->status;
            row->error_message = it->error_message;
            row->attempts = it->attempts;
            row->first_failed_us = now;
            row->last_failed_us = now;
        }
    }
    snprintf(seg, sizeof(seg), "%d", segment);
    snprintf(items, sizeof(items), "%zu", n_items);
    snprintf(ndlq, sizeof(ndlq), "%zu", n_dlq);
    v[0] = w->conf->application;
    v[1] = w->o->table;
    v[2] = seg;
    v[3] = last_key;
    v[4] = items;
    v[5] = ndlq;
    v[6] = w->owner;
    r = exec_params(w->cl.pg, "BEGIN", 0, NULL, NULL, "BEGIN", errstr, errstr_size);
    if (r == 0 && n_dlq) {
        r = d2o_dlq_insert(w->cl.pg, w->conf->application, rows, n_dlq, errstr, errstr_size);
    }
    if (r == 0) {
        r = exec_params(w->cl.pg, upd, 7, v, &res, "saving the segment's progress", errstr,
                        errstr_size);
    }
    if (r == 0 && strcmp(PQcmdTuples(res), "1") != 0) {
        snprintf(errstr, errstr_size, "segment %d is no longer this worker's", segment);
        r = -ESTALE;
    }
    PQclear(res);
    if (r == 0) {
        r = exec_params(w->cl.pg, "COMMIT", 0, NULL, NULL, "COMMIT", errstr, errstr_size);
    } else {
        PQclear(PQexec(w->cl.pg, "ROLLBACK"));
    }
    free(rows);
    return r;
}

/* Scans one claimed segment to its end (or until stopped). 0 done, 1 stopped, -1 failed. */
static int run_segment(struct worker *w, int segment, char *last_key)
{
    struct d2o_ddb_scan_req q;
    struct d2o_ddb_scan_page page;
    struct d2o_ddb_err err;
    char errstr[512];
    size_t i;
    int r;

    d2o_info("backfill_segment", "segment %d/%d %s", segment, w->total_segments,
             last_key ? "resumes after its last key" : "starts");
    for (;;) {
        if (stop_flag) {
            return 1;
        }
        rate_wait(w);
        memset(&q, 0, sizeof(q));
        q.table = w->o->table;
        q.segment = segment;
        q.total_segments = w->total_segments;
        q.exclusive_start_key = last_key;
        q.limit = (int)w->o->page_limit;
        q.consistent_read = w->o->consistent_read;
        r = d2o_ddb_scan(w->cl.ddb, &q, &page, &err);
        if (r != 0) {
            if (stop_flag) {
                return 1;
            }
            fprintf(stderr, "ddb2os backfill: %s\n", r < 0 ? "out of memory" : err.message);
            return -1;
        }
        w->tokens_items -= (double)page.n_items;
        w->tokens_rcu -= page.consumed_rcu;
        items_reset(w);
        for (i = 0; i < page.n_items; i++) {
            if (queue_item(w, w->o->table, json_object_array_get_idx(page.items, i)) < 0) {
                fprintf(stderr, "ddb2os backfill: out of memory\n");
                d2o_ddb_scan_page_free(&page);
                return -1;
            }
        }
        d2o_bulk_flush(w->cl.sink);
        if (d2o_bulk_drain(w->cl.sink, w->o->page_deadline_ms) < 0) {
            /* Exit without committing: the process's connections close and the page is read
             * again later (see "Backfill versions" in docs/architecture.md for why a write must
             * not linger). */
            fprintf(stderr,
                    "ddb2os backfill: segment %d: OpenSearch did not take a page within %lld ms; "
                    "the page will be read again\n",
                    segment, (long long)w->o->page_deadline_ms);
            d2o_ddb_scan_page_free(&page);
            return -1;
        }
        r = commit_page(w, segment, page.last_key, page.n_items, errstr, sizeof(errstr));
        if (r < 0) {
            fprintf(stderr, "ddb2os backfill: %s\n", errstr);
            d2o_ddb_scan_page_free(&page);
            return -1;
        }
        w->processed += (int64_t)page.n_items;
        free(last_key);
        last_key = page.last_key;
        page.last_key = NULL;
        d2o_ddb_scan_page_free(&page);
        if (!last_key) {
            d2o_info("backfill_segment", "segment %d/%d done", segment, w->total_segments);
            return 0;
        }
        if (w->o->stop_after_items > 0 && w->processed >= w->o->stop_after_items) {
            free(last_key);
            return 1;
        }
    }
}

static int worker_main(struct d2o_config *conf, const struct d2o_backfill_opts *o, int64_t version,
                       int total_segments, unsigned slot)
{
    static const char claim[] =
        "UPDATE backfill_segments SET state = 'running', owner = $3, updated_at = now()"
        " WHERE (application, table_name, segment) = (SELECT application, table_name, segment"
        "   FROM backfill_segments WHERE application = $1 AND table_name = $2"
        "   AND state = 'pending' ORDER BY segment LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING segment, last_key";
    struct worker w;
    char errstr[512];
    const char *v[3];
    PGresult *res = NULL;
    int rc = 1, r;

    memset(&w, 0, sizeof(w));
    w.conf = conf;
    w.o = o;
    w.version = version;
    w.total_segments = total_segments;
    w.last_refill_ms = d2o_mono_ms();
    snprintf(w.owner, sizeof(w.owner), "%s:%d", conf->task_id[0] ? conf->task_id : "backfill",
             (int)getpid());
    d2o_rand_seed();
    if (bf_clients_open(&w.cl, conf, on_item_done, NULL, true, "ddb2os backfill", &stop_flag,
                        errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "ddb2os backfill: worker %u: %s\n", slot, errstr);
        goto out;
    }
    bf_key_names(conf, o->table, w.hash, sizeof(w.hash), &w.range);
    v[0] = conf->application;
    v[1] = o->table;
    v[2] = w.owner;
    for (;;) {
        char *last_key = NULL;
        int segment;

        if (stop_flag) {
            goto out;
        }
        if (exec_params(w.cl.pg, claim, 3, v, &res, "claiming a segment", errstr, sizeof(errstr)) <
            0) {
            fprintf(stderr, "ddb2os backfill: %s\n", errstr);
            goto out;
        }
        if (PQntuples(res) == 0) {
            rc = 0;
            goto out;
        }
        segment = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
        if (!PQgetisnull(res, 0, 1)) {
            last_key = strdup(PQgetvalue(res, 0, 1));
            if (!last_key) {
                goto out;
            }
        }
        PQclear(res);
        res = NULL;
        r = run_segment(&w, segment, last_key);
        if (r != 0) {
            rc = 1;
            goto out;
        }
    }
out:
    PQclear(res);
    items_reset(&w);
    free(w.items);
    bf_clients_close(&w.cl);
    return rc;
}

/* ---- the coordinator ---- */

struct progress {
    pthread_mutex_t lock;
    int64_t items, dlq, segments_done, segments_total, estimate, version;
    double rate;
    int workers_alive;
};

static enum MHD_Result metrics_reply(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version, const char *upload,
                                     size_t *upload_size, void **req_ctx)
{
    struct progress *p = cls;
    struct d2o_buf b = D2O_BUF_INIT;
    struct MHD_Response *resp;
    enum MHD_Result r;

    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)req_ctx;
    pthread_mutex_lock(&p->lock);
    r = d2o_buf_printf(
            &b,
            "# HELP ddb2os_backfill_items_total Items written by the backfill (all runs).\n"
            "# TYPE ddb2os_backfill_items_total counter\nddb2os_backfill_items_total %" PRId64
            "\n# HELP ddb2os_backfill_dlq_total Items the backfill dead-lettered.\n"
            "# TYPE ddb2os_backfill_dlq_total counter\nddb2os_backfill_dlq_total %" PRId64
            "\n# HELP ddb2os_backfill_items_per_second Recent backfill rate.\n"
            "# TYPE ddb2os_backfill_items_per_second gauge\n"
            "ddb2os_backfill_items_per_second %.1f\n"
            "# HELP ddb2os_backfill_segments_done Segments scanned to their end.\n"
            "# TYPE ddb2os_backfill_segments_done gauge\nddb2os_backfill_segments_done %" PRId64
            "\n# HELP ddb2os_backfill_segments_total Segments of the parallel Scan.\n"
            "# TYPE ddb2os_backfill_segments_total gauge\nddb2os_backfill_segments_total %" PRId64
            "\n# HELP ddb2os_backfill_items_estimate DynamoDB's item count of the table.\n"
            "# TYPE ddb2os_backfill_items_estimate gauge\nddb2os_backfill_items_estimate %" PRId64
            "\n# HELP ddb2os_backfill_version The external version every item is written at.\n"
            "# TYPE ddb2os_backfill_version gauge\nddb2os_backfill_version %" PRId64
            "\n# HELP ddb2os_backfill_workers Live backfill worker processes.\n"
            "# TYPE ddb2os_backfill_workers gauge\nddb2os_backfill_workers %d\n",
            p->items, p->dlq, p->rate, p->segments_done, p->segments_total, p->estimate, p->version,
            p->workers_alive) < 0
            ? MHD_NO
            : MHD_YES;
    pthread_mutex_unlock(&p->lock);
    if (r == MHD_NO) {
        d2o_buf_free(&b);
        return MHD_NO;
    }
    resp = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
    d2o_buf_free(&b);
    if (!resp) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
    r = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return r;
}

/* Reads progress from the segment rows. */
static int read_progress(PGconn *pg, const struct d2o_config *conf, const char *table,
                         struct progress *p)
{
    const char *v[2] = {conf->application, table};
    char errstr[256];
    PGresult *res = NULL;

    if (exec_params(pg,
                    "SELECT COALESCE(sum(items), 0), COALESCE(sum(dlq), 0),"
                    " count(*) FILTER (WHERE state = 'done'), count(*)"
                    " FROM backfill_segments WHERE application = $1 AND table_name = $2",
                    2, v, &res, "reading progress", errstr, sizeof(errstr)) < 0) {
        return -1;
    }
    pthread_mutex_lock(&p->lock);
    p->items = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    p->dlq = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    p->segments_done = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    p->segments_total = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    pthread_mutex_unlock(&p->lock);
    PQclear(res);
    return 0;
}

static void print_progress(const struct progress *p, bool tty, int64_t since_start_items,
                           double elapsed_s)
{
    char eta[32] = "?";
    double avg = elapsed_s > 0 ? (double)since_start_items / elapsed_s : 0;

    if (avg > 0 && p->estimate > p->items) {
        snprintf(eta, sizeof(eta), "%.0fs", (double)(p->estimate - p->items) / avg);
    } else if (p->segments_done == p->segments_total) {
        snprintf(eta, sizeof(eta), "0s");
    }
    fprintf(stderr,
            "%sbackfill: %" PRId64 " items (~%" PRId64 " in table), %.0f items/s, segments %" PRId64
            "/%" PRId64 " done, %" PRId64 " dead-lettered, ETA %s%s",
            tty ? "\r" : "", p->items, p->estimate, p->rate, p->segments_done, p->segments_total,
            p->dlq, eta, tty ? "   " : "\n");
}

/* Requires the stream to be consumed from before V: lease rows exist and none starts later. */
static int stream_check(PGconn *pg, const struct d2o_config *conf, int64_t version)
{
    const char *v[4];
    char ts[32], errstr[512];
    PGresult *res = NULL;
    int64_t total, late;

    snprintf(ts, sizeof(ts), "%.6f", (double)version / 1e6);
    v[0] = conf->application;
    v[1] = conf->stream_name;
    v[2] = ts;
    /* a DynamoDB stream named by its table: the leases name the stream's ARN */
    v[3] = conf->source == D2O_SOURCE_DYNAMODB_STREAMS ? "true" : "false";
    if (!conf->stream_name[0]) {
        fprintf(stderr, "ddb2os backfill: stream_name is not set: the backfill needs the stream "
                        "that 'ddb2os run' consumes (or --no-stream-check)\n");
        return D2O_EXIT_CONFIG;
    }
    if (exec_params(pg,
                    "SELECT count(*), count(*) FILTER (WHERE checkpoint = 'LATEST'"
                    " OR (checkpoint = 'AT_TIMESTAMP' AND checkpoint_timestamp >"
                    "     to_timestamp($3::double precision)))"
                    " FROM leases WHERE application = $1 AND (stream = $2 OR ($4"
                    " AND stream LIKE 'arn:%:table/%/stream/%' AND split_part(stream, '/', 2) ="
                    " $2))",
                    4, v, &res, "reading the stream's leases", errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "ddb2os backfill: %s\n", errstr);
        return D2O_EXIT_FAIL;
    }
    total = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    late = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (total == 0 || late > 0) {
        fprintf(stderr,
                "ddb2os backfill: the stream '%s' of application '%s' is %s; start 'ddb2os run' "
                "first and let it read, so every change made after the backfill's version is "
                "delivered (or pass --no-stream-check if the table takes no writes)\n",
                conf->stream_name, conf->application,
                total == 0 ? "not consumed yet (no lease rows)"
                           : "not consumed from before the backfill's version (a shard still "
                             "waits at LATEST or starts at a later timestamp)");
        return D2O_EXIT_FAIL;
    }
    return 0;
}

/* Creates the backfill's rows, or resumes the unfinished one. Fills *version and *segments. */
static int setup_rows(PGconn *pg, const struct d2o_config *conf, const struct d2o_backfill_opts *o,
                      int64_t new_version, int64_t server_ms, int64_t estimate, int64_t *version,
                      int *segments, bool *resumed)
{
    const char *v[6];
    char ver[24], segs[16], est[24], ts[32], errstr[512];
    PGresult *res = NULL;
    int r;

    v[0] = conf->application;
    v[1] = o->table;
    r = exec_params(pg,
                    "SELECT state, version, total_segments FROM backfills"
                    " WHERE application = $1 AND table_name = $2",
                    2, v, &res, "reading the backfill", errstr, sizeof(errstr));
    if (r < 0) {
        goto fail;
    }
    *resumed = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "running") == 0 && !o->restart;
    *version = *resumed ? strtoll(PQgetvalue(res, 0, 1), NULL, 10) : new_version;
    *segments = *resumed ? (int)strtol(PQgetvalue(res, 0, 2), NULL, 10) : (int)o->segments;
    PQclear(res);
    res = NULL;
    /* a backfill that may not start leaves nothing behind */
    if (o->stream_check) {
        r = stream_check(pg, conf, *version);
        if (r != 0) {
            return r;
        }
    }
    if (*resumed) {
        /* The previous run's workers are gone (we hold the lock): their segments are free. */
        r = exec_params(pg,
                        "UPDATE backfill_segments SET state = 'pending', owner = NULL"
                        " WHERE application = $1 AND table_name = $2 AND state = 'running'",
                        2, v, NULL, "freeing segments", errstr, sizeof(errstr));
        if (r == 0) {
            r = exec_params(pg,
                            "UPDATE backfills SET runs = runs + 1 WHERE application = $1"
                            " AND table_name = $2",
                            2, v, NULL, "counting the run", errstr, sizeof(errstr));
        }
        if (r < 0) {
            goto fail;
        }
        return 0;
    }
    snprintf(ver, sizeof(ver), "%" PRId64, new_version);
    snprintf(segs, sizeof(segs), "%u", o->segments);
    snprintf(est, sizeof(est), "%" PRId64, estimate);
    snprintf(ts, sizeof(ts), "%.3f", (double)server_ms / 1000.0);
    v[2] = ver;
    v[3] = segs;
    v[4] = est;
    v[5] = server_ms > 0 ? ts : NULL;
    r = exec_params(pg, "BEGIN", 0, NULL, NULL, "BEGIN", errstr, sizeof(errstr));
    if (r == 0) {
        r = exec_params(pg, "DELETE FROM backfills WHERE application = $1 AND table_name = $2", 2,
                        v, NULL, "removing the previous backfill", errstr, sizeof(errstr));
    }
    if (r == 0) {
        r = exec_params(pg,
                        "INSERT INTO backfills (application, table_name, state, version,"
                        " total_segments, item_count_estimate, dynamodb_time)"
                        " VALUES ($1, $2, 'running', $3, $4, $5,"
                        " to_timestamp($6::double precision))",
                        6, v, NULL, "creating the backfill", errstr, sizeof(errstr));
    }
    if (r == 0) {
        r = exec_params(pg,
                        "INSERT INTO backfill_segments (application, table_name, segment)"
                        " SELECT $1, $2, s FROM generate_series(0, $3::integer - 1) s",
                        3, (const char *const[]){v[0], v[1], segs}, NULL, "creating the segments",
                        errstr, sizeof(errstr));
    }
    if (r == 0) {
        r = exec_params(pg, "COMMIT", 0, NULL, NULL, "COMMIT", errstr, sizeof(errstr));
    } else {
        PQclear(PQexec(pg, "ROLLBACK"));
    }
    if (r == 0) {
        return 0;
    }
fail:
    fprintf(stderr, "ddb2os backfill: %s\n", errstr);
    return D2O_EXIT_FAIL;
}

static pid_t spawn_worker(struct d2o_config *conf, const struct d2o_backfill_opts *o,
                          int64_t version, int segments, unsigned slot)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid != 0) {
        return pid;
    }
    /* not ours: the coordinator's connection (and its lock) must not be touched */
    if (lock_fd >= 0) {
        close(lock_fd);
    }
    /* the worker ends with its coordinator */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
        _exit(1);
    }
    _exit(worker_main(conf, o, version, segments, slot));
}

int d2o_backfill_run(struct d2o_config *conf, const struct d2o_backfill_opts *o)
{
    struct bf_clients cl;
    struct d2o_ddb_table desc;
    struct progress prog;
    struct MHD_Daemon *mhd = NULL;
    char errstr[512], lock_key[600];
    char *ttl_attr = NULL, *index = NULL;
    pid_t *pids = NULL;
    const char *v[1];
    PGresult *res = NULL;
    int64_t version = 0, new_version, start_items = -1, last_items = 0, t0, last_t;
    int segments = 0, rc = D2O_EXIT_FAIL, from, to, progress, respawns = 0;
    unsigned i, alive;
    bool resumed = false, tty, failed = false;

    memset(&cl, 0, sizeof(cl));
    memset(&desc, 0, sizeof(desc));
    memset(&prog, 0, sizeof(prog));
    if (d2o_http_global_init() < 0) {
        fprintf(stderr, "ddb2os backfill: libcurl cannot start\n");
        return D2O_EXIT_FAIL;
    }
    pthread_mutex_init(&prog.lock, NULL);
    bf_on_signals(&stop_flag);
    tty = isatty(STDERR_FILENO);
    progress = o->progress < 0 ? tty : o->progress;
    if (bf_clients_open(&cl, conf, NULL, NULL, true, "ddb2os backfill", &stop_flag, errstr,
                        sizeof(errstr)) < 0) {
        fprintf(stderr, "ddb2os backfill: %s\n", errstr);
        goto out;
    }
    if (d2o_pg_migrate(cl.pg, &from, &to, errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "ddb2os backfill: %s\n", errstr);
        goto out;
    }
    /* One backfill per table: the lock lives as long as this process's connection. */
    snprintf(lock_key, sizeof(lock_key), "ddb2os backfill %s/%s", conf->application, o->table);
    v[0] = lock_key;
    if (exec_params(cl.pg, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1, v, &res,
                    "locking the table's backfill", errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "ddb2os backfill: %s\n", errstr);
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        fprintf(stderr,
                "ddb2os backfill: another backfill of table %s (application %s) is running; "
                "wait for it or stop it (it resumes where it stopped)\n",
                o->table, conf->application);
        goto out;
    }
    PQclear(res);
    res = NULL;
    rc = bf_describe(&cl, conf, o->table, &desc, &ttl_attr, CMD);
    if (rc != 0) {
        goto out;
    }
    rc = D2O_EXIT_FAIL;
    /* DescribeTable's answer carried DynamoDB's clock; the scan starts after it. */
    new_version =
        d2o_backfill_version(d2o_ddb_server_time_ms(cl.ddb), d2o_wall_us() / 1000, o->skew_ms);
    if (d2o_ddb_server_time_ms(cl.ddb) == 0) {
        fprintf(stderr, "ddb2os backfill: note: DynamoDB's answer had no Date header; the "
                        "version comes from the local clock\n");
    }
    rc = setup_rows(cl.pg, conf, o, new_version, d2o_ddb_server_time_ms(cl.ddb), desc.item_count,
                    &version, &segments, &resumed);
    if (rc != 0) {
        goto out;
    }
    rc = D2O_EXIT_FAIL;
    index = d2o_conf_index_for_table(conf, o->table);
    fprintf(stderr,
            "backfill: table %s -> index %s, %s at version %" PRId64 " (%d segments, %u workers, "
            "~%" PRId64 " items)\n",
            o->table, index ? index : "?", resumed ? "resumed" : "started", version, segments,
            o->workers, desc.item_count);
    prog.estimate = desc.item_count;
    prog.version = version;
    /* The workers open their own clients after fork(). The PostgreSQL connection that holds
     * the table's lock stays with the coordinator; each worker closes its inherited socket. */
    {
        PGconn *lock = cl.pg;

        cl.pg = NULL;
        bf_clients_close(&cl);
        cl.pg = lock;
        lock_fd = PQsocket(lock);
    }
    pids = calloc(o->workers, sizeof(*pids));
    if (!pids) {
        goto out;
    }
    for (i = 0; i < o->workers; i++) {
        pids[i] = spawn_worker(conf, o, version, segments, i);
    }
    /* Served from a thread of this process, started after the fork so the workers inherit
     * neither the thread's memory nor the listening socket. */
    if (o->metrics_port > 0) {
        struct sockaddr_in sa;

        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)o->metrics_port);
        if (inet_pton(AF_INET, conf->metrics_addr, &sa.sin_addr) == 1) {
            mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)o->metrics_port, NULL,
                                   NULL, metrics_reply, &prog, MHD_OPTION_SOCK_ADDR,
                                   (struct sockaddr *)&sa, MHD_OPTION_END);
        }
        if (!mhd) {
            fprintf(stderr, "ddb2os backfill: cannot serve metrics on %s:%d\n", conf->metrics_addr,
                    o->metrics_port);
            stop_flag = 1; /* the workers stop at their next page */
        }
    }
    t0 = last_t = d2o_mono_ms();
    for (;;) {
        int st;
        pid_t p;

        while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
            for (i = 0; i < o->workers; i++) {
                if (pids[i] != p) {
                    continue;
                }
                pids[i] = 0;
                if ((!WIFEXITED(st) || WEXITSTATUS(st) != 0) && !stop_flag &&
                    o->stop_after_items == 0) {
                    if (++respawns > MAX_RESPAWNS) {
                        fprintf(stderr, "ddb2os backfill: workers keep failing; stopping\n");
                        failed = true;
                    } else {
                        d2o_wait_ms(d2o_backoff_ms(200, 5000, (unsigned)respawns), &stop_flag);
                        pids[i] = spawn_worker(conf, o, version, segments, i);
                    }
                } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    failed = true;
                }
            }
        }
        for (i = 0, alive = 0; i < o->workers; i++) {
            alive += pids[i] > 0;
        }
        if (cl.pg && read_progress(cl.pg, conf, o->table, &prog) == 0) {
            int64_t now = d2o_mono_ms();

            if (start_items < 0) {
                start_items = prog.items;
                last_items = prog.items;
            }
            pthread_mutex_lock(&prog.lock);
            prog.workers_alive = (int)alive;
            if (now - last_t >= 1000) {
                prog.rate = (double)(prog.items - last_items) * 1000.0 / (double)(now - last_t);
                last_items = prog.items;
                last_t = now;
            }
            pthread_mutex_unlock(&prog.lock);
            if (progress) {
                print_progress(&prog, tty, prog.items - start_items, (double)(now - t0) / 1000.0);
            }
        }
        if (alive == 0) {
            break;
        }
        if (stop_flag) {
            for (i = 0; i < o->workers; i++) {
                if (pids[i] > 0) {
                    kill(pids[i], SIGTERM);
                }
            }
        }
        (void)d2o_wait_ms(progress && !tty ? 1000 : 500, NULL);
    }
    if (progress && tty) {
        fputc('\n', stderr);
    }
    if (!cl.pg || read_progress(cl.pg, conf, o->table, &prog) < 0) {
        goto out;
    }
    if (prog.segments_done == prog.segments_total && !failed) {
        v[0] = conf->application;
        if (exec_params(cl.pg,
                        "UPDATE backfills SET state = 'done', finished_at = now()"
                        " WHERE application = $1 AND table_name = $2",
                        2, (const char *const[]){conf->application, o->table}, NULL,
                        "finishing the backfill", errstr, sizeof(errstr)) < 0) {
            fprintf(stderr, "ddb2os backfill: %s\n", errstr);
            goto out;
        }
        fprintf(stderr,
                "backfill: done: %" PRId64 " items in %" PRId64 " segments, %" PRId64
                " dead-lettered (ddb2os dlq list --table %s), %.1f s\n",
                prog.items, prog.segments_total, prog.dlq, o->table,
                (double)(d2o_mono_ms() - t0) / 1000.0);
        rc = D2O_EXIT_OK;
    } else {
        fprintf(stderr,
                "backfill: stopped with %" PRId64 " of %" PRId64 " segments done; run the same "
                "command again to resume\n",
                prog.segments_done, prog.segments_total);
    }
out:
    if (mhd) {
        MHD_stop_daemon(mhd);
    }
    PQclear(res);
    free(pids);
    free(ttl_attr);
    free(index);
    d2o_ddb_table_free(&desc);
    bf_clients_close(&cl);
    pthread_mutex_destroy(&prog.lock);
    return rc;
}
