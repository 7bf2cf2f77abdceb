/*
 * The worker's source of change records. Both sources are read through one client interface
 * (struct d2o_kinesis and its dialect): the Kinesis Data Streams destination, or the table's own
 * DynamoDB stream (src/ddbstreams). For a DynamoDB stream named by its table, the newest stream
 * ARN is looked up here when the worker starts, and from then on the ARN is the stream every
 * lease, checkpoint and call of this worker names, until the table's stream is disabled and
 * enabled again: the table then has a new latest stream, which the worker goes on with once the
 * old one is finished (worker_source_follow). A stream named by its ARN is only ever that stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/conf.h"
#include "d2o/ddbstreams.h"
#include "d2o/log.h"
#include "d2o/metrics.h"
#include "d2o/pg.h"
#include "worker_int.h"

/* The exit code for a failed look-up: a stream or table that is not there, or that ddb2os
 * cannot read, is the configuration's problem; anything else may pass. */
static int failed(const char *what, const char *name, const struct d2o_kinesis_err *err, int r)
{
    d2o_err("stream_lookup", "%s of %s failed: %s", what, name,
            r == D2O_KINESIS_E_FAILED ? err->message : "out of memory");
    return r == D2O_KINESIS_E_FAILED && err->action == D2O_ACT_PERMANENT ? D2O_EXIT_CONFIG : 1;
}

/* Looks the stream up and checks that its records carry what a document needs. */
static int resolve_stream(struct d2o_kinesis *probe, const char *name, char **arn)
{
    struct d2o_ddbstreams_info info;
    struct d2o_kinesis_err err;
    int r;

    if (strncmp(name, "arn:", 4) == 0) {
        *arn = strdup(name);
        if (!*arn) {
            return 1;
        }
    } else if ((r = d2o_ddbstreams_latest_arn(probe, name, arn, &err)) != 0) {
        return failed("ListStreams", name, &err, r);
    }
    r = d2o_ddbstreams_describe(probe, *arn, &info, &err);
    if (r != 0) {
        return failed("DescribeStream", *arn, &err, r);
    }
    if (!info.view_type || (strcmp(info.view_type, "NEW_AND_OLD_IMAGES") != 0 &&
                            strcmp(info.view_type, "NEW_IMAGE") != 0)) {
        d2o_err("stream_view_type",
                "stream %s has StreamViewType %s: its records carry no new image, which every "
                "document is made from; enable the table's stream with NEW_AND_OLD_IMAGES",
                *arn, info.view_type ? info.view_type : "(none)");
        d2o_ddbstreams_info_free(&info);
        return D2O_EXIT_CONFIG;
    }
    if (strcmp(info.stream_status, "ENABLED") != 0) {
        d2o_warn("stream_disabled",
                 "stream %s is %s: its shards are read to their end, and no new changes come "
                 "from it (the table's current stream has a new ARN); %s",
                 *arn, info.stream_status,
                 strncmp(name, "arn:", 4) == 0
                     ? "stream_name names this ARN, so ddb2os stays on it: set stream_name to "
                       "the table's name to follow its latest stream"
                     : "then ddb2os goes on with the table's latest stream");
    }
    d2o_info("stream_resolved", "reading DynamoDB stream %s (table %s, %s)", *arn,
             info.table_name ? info.table_name : "?", info.view_type);
    d2o_ddbstreams_info_free(&info);
    return 0;
}

int worker_source_open(struct worker *w, const struct d2o_config *c, const struct d2o_aws_creds *ac)
{
    struct d2o_kinesis *probe;
    char err[1024];
    char *arn = NULL;
    int rc;

    w->conf_file = c;
    if (c->source != D2O_SOURCE_DYNAMODB_STREAMS) {
        w->kin = d2o_kinesis_new(w->http, c, ac, err, sizeof(err));
        if (!w->kin) {
            d2o_err("startup", "%s", err);
            return D2O_EXIT_CONFIG;
        }
        return 0;
    }
    probe =
        d2o_ddbstreams_new(w->http, c->aws_region, c->streams_endpoint, NULL, ac, err, sizeof(err));
    if (!probe) {
        d2o_err("startup", "%s", err);
        return D2O_EXIT_CONFIG;
    }
    d2o_kinesis_set_retry(probe, 3, NULL);
    rc = resolve_stream(probe, c->stream_name, &arn);
    d2o_kinesis_free(probe);
    if (rc != 0) {
        free(arn);
        return rc;
    }
    w->kin =
        d2o_ddbstreams_new(w->http, c->aws_region, c->streams_endpoint, arn, ac, err, sizeof(err));
    if (!w->kin) {
        d2o_err("startup", "%s", err);
        free(arn);
        return D2O_EXIT_CONFIG;
    }
    /* the worker's own view of the configuration: the same, with the stream's ARN */
    w->conf_own = *c;
    w->conf_own.stream_name = arn;
    w->stream_arn = arn;
    w->conf = &w->conf_own;
    return 0;
}

static bool follows_table(const struct worker *w)
{
    const struct d2o_config *c = w->conf_file;

    return c && c->source == D2O_SOURCE_DYNAMODB_STREAMS &&
           strncmp(c->stream_name, "arn:", 4) != 0 && w->stream_arn;
}

/*
 * The oldest stream of the worker's table, other than the one it reads, whose lease rows are not
 * all at SHARD_END: in *arn (owned), or NULL. Stream ARNs of one table differ only in their
 * label, a creation time, so their order is their age. 0 or -EIO.
 */
static int oldest_unfinished(struct worker *w, char **arn)
{
    static const char sql[] = "SELECT DISTINCT stream COLLATE \"C\" FROM leases"
                              " WHERE application = $1 AND stream <> $2"
                              " AND checkpoint <> 'SHARD_END' ORDER BY 1";
    const char *values[2] = {w->conf->application, w->stream_arn};
    PGresult *r = PQexecParams(w->pg, sql, 2, NULL, values, NULL, NULL, 0);
    char table[256], err[512];
    int i, ret = 0;

    *arn = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(w->pg, r, "reading the table's unfinished streams", err, sizeof(err));
        worker_pg_failed(w, err);
        ret = -EIO;
    }
    for (i = 0; ret == 0 && !*arn && i < PQntuples(r); i++) {
        const char *stream = PQgetvalue(r, i, 0);

        if (d2o_ddbstreams_arn_table(stream, table, sizeof(table)) == 0 &&
            strcmp(table, w->conf_file->stream_name) == 0) {
            *arn = strdup(stream);
            ret = *arn ? 0 : -ENOMEM;
        }
    }
    PQclear(r);
    return ret;
}

/* /metrics names the stream the worker reads (ddb2os_source_info). */
static void publish(struct worker *w)
{
    char table[256];

    if (w->stream_arn) {
        d2o_metrics_set_stream(
            w->m, w->stream_arn,
            d2o_ddbstreams_arn_table(w->stream_arn, table, sizeof(table)) == 0 ? table : NULL);
    }
}

bool worker_source_settled(struct worker *w)
{
    char *older = NULL;

    if (w->source_settled) {
        return true;
    }
    if (!follows_table(w)) {
        publish(w);
        w->source_settled = true;
        return true;
    }
    if (!worker_pg_ok(w) || oldest_unfinished(w, &older) < 0) {
        return false;
    }
    if (older) {
        /* Changes of one item on the old stream come before those on the new one, whichever
         * worker reads them and whenever it starts. */
        d2o_warn("stream_unfinished",
                 "stream %s of table %s has shards that are not read to their end: reading it "
                 "first, then the table's newer streams (latest: %s)",
                 older, w->conf_file->stream_name, w->stream_arn);
        free(w->stream_arn);
        w->stream_arn = older;
        w->conf_own.stream_name = older;
    }
    publish(w);
    w->source_settled = true;
    return true;
}

void worker_source_follow(struct worker *w)
{
    const struct d2o_config *c = w->conf_file;
    struct d2o_kinesis_err err;
    char *latest = NULL, *older = NULL;
    bool open = true;
    int r;

    /* Only a stream named by its table, and only once this worker holds no shard of the old
     * one: every shard, lease and checkpoint it has names the stream it was taken from. */
    if (!follows_table(w) || !w->source_settled || w->n_shards > 0 || w->draining ||
        !worker_pg_ok(w)) {
        return;
    }
    r = d2o_ddbstreams_latest_arn(w->kin, c->stream_name, &latest, &err);
    if (r != 0) {
        d2o_warn("stream_lookup", "ListStreams of table %s failed: %s (reading on from %s)",
                 c->stream_name, r == D2O_KINESIS_E_FAILED ? err.message : "out of memory",
                 w->stream_arn);
        free(latest);
        return;
    }
    /* Changes of one item on the old stream come before those on the new one: the new stream
     * is read only once every shard of the old one is finished, by whichever worker. */
    if (strcmp(latest, w->stream_arn) == 0 ||
        worker_stream_has_leases(w, w->stream_arn, true, &open) < 0 || open ||
        oldest_unfinished(w, &older) < 0) {
        free(latest);
        return;
    }
    if (older) {
        /* another older stream is not finished either: it comes first */
        free(latest);
        latest = older;
    }
    d2o_warn("stream_followed",
             "table %s has a newer stream: the old stream %s is read to its end, reading the "
             "stream %s now from its first record, with new lease rows",
             c->stream_name, w->stream_arn, latest);
    free(w->stream_arn);
    w->stream_arn = latest;
    w->conf_own.stream_name = latest;
    w->stream_followed = true;
    w->lease_tick_now = true;
    publish(w);
}

bool worker_source_superseded(struct worker *w, const char *stream)
{
    struct d2o_kinesis_err err;
    char *latest = NULL;
    bool superseded;

    if (!follows_table(w) ||
        d2o_ddbstreams_latest_arn(w->kin, w->conf_file->stream_name, &latest, &err) != 0) {
        free(latest);
        return false;
    }
    superseded = latest && strcmp(latest, stream) != 0;
    free(latest);
    return superseded;
}

/* A start version's request on the asynchronous session. */
struct version_req {
    char *stream, *shard_id;
    worker_version_fn done;
    void *arg;
};

static int version_send(struct worker *w, PGconn *c, void *arg)
{
    /* The shard's own checkpoint when it has one (it went on from its parent's), else the
     * greatest final version of its parents, and never below a version of the table's earlier
     * streams (a stream disabled and enabled again is a new stream whose root shards have no
     * parents; the same item may have changed in the same second on the old one). */
    static const char sql[] =
        "SELECT GREATEST(l.version_last_ms, COALESCE((SELECT max(p.version_last_ms) FROM leases p"
        " WHERE p.application = l.application AND p.stream = l.stream"
        " AND p.shard_id = ANY (l.parent_shard_ids)), 0),"
        " COALESCE((SELECT max(o.version_last_ms) FROM leases o"
        " WHERE o.application = l.application AND o.stream <> l.stream), 0))"
        " FROM leases l WHERE l.application = $1 AND l.stream = $2 AND l.shard_id = $3";
    struct version_req *q = arg;
    const char *values[3] = {w->conf->application, q->stream, q->shard_id};

    return PQsendQueryParams(c, sql, 3, NULL, values, NULL, NULL, 0) ? 0 : -EIO;
}

static void version_done(struct worker *w, PGresult *r, const char *why, void *arg)
{
    struct version_req *q = arg;
    char err[512] = "";
    int64_t ver = 0;
    int rc = 0;

    if (!r) {
        snprintf(err, sizeof(err), "reading the shard's stream version: %s", why ? why : "");
        rc = why ? -EIO : -ECANCELED;
    } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        d2o_pg_error(w->apg.c, r, "reading the shard's stream version", err, sizeof(err));
        rc = -EIO;
    } else if (PQntuples(r) == 1) {
        ver = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    }
    q->done(w, q->arg, rc, ver, err);
    free(q->stream);
    free(q->shard_id);
    free(q);
}

int worker_source_start_version_async(struct worker *w, const struct d2o_lease *l,
                                      worker_version_fn done, void *arg)
{
    struct version_req *q;

    if (w->conf->source != D2O_SOURCE_DYNAMODB_STREAMS) {
        return 0;
    }
    q = calloc(1, sizeof(*q));
    if (!q || !(q->stream = strdup(l->stream)) || !(q->shard_id = strdup(l->shard_id))) {
        if (q) {
            free(q->stream);
        }
        free(q);
        return -ENOMEM;
    }
    q->done = done;
    q->arg = arg;
    worker_apg_call_arg(w, version_send, version_done, q);
    return 1;
}

int64_t worker_source_version(const struct worker *w, int64_t prev,
                              const struct d2o_kinesis_record *kr)
{
    if (w->conf->source != D2O_SOURCE_DYNAMODB_STREAMS) {
        return 0;
    }
    return d2o_ddbstreams_version(prev, kr->arrival_ms / 1000);
}
