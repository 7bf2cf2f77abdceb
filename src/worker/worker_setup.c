/*
 * A worker's handles (opened after fork()), its PostgreSQL connection and Kinesis error handling
 * (shard discovery: worker_sync.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "d2o/clock.h"
#include "d2o/cli.h"
#include "d2o/conf.h"
#include "d2o/creds.h"
#include "d2o/http.h"
#include "d2o/lease.h"
#include "d2o/log.h"
#include "d2o/mem.h"
#include "d2o/metrics.h"
#include "d2o/pg.h"
#include "d2o/rand.h"
#include "d2o/rdsauth.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"
#include "d2o/worker.h"
#include "worker_int.h"

/* ---- PostgreSQL ---- */

/* The session's setup once connected: LISTEN on the lease channel. */
static int listen_send(PGconn *c, unsigned i, void *arg)
{
    (void)arg;
    if (i > 0) {
        return 1;
    }
    return PQsendQuery(c, "LISTEN " D2O_LEASE_CHANNEL) ? 0 : -EIO;
}

/* The opening's next step: true once the session is open. */
static bool pg_open_step(struct worker *w)
{
    PGconn *c = NULL;
    char err[512];
    int r = d2o_pg_open_continue(w->pg_opening, &c, err, sizeof(err));

    if (r == 1) {
        return false;
    }
    d2o_pg_open_free(w->pg_opening);
    w->pg_opening = NULL;
    if (r < 0) {
        w->pg_retry_ms = d2o_mono_ms() + d2o_backoff_ms(250, 5000, w->pg_attempt++);
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_unavailable",
                 "cannot reach PostgreSQL (attempt %u): %s", w->pg_attempt, err);
        return false;
    }
    /* Blocking again, as the statements of the start and the exit expect. */
    (void)PQsetnonblocking(c, 0);
    w->pg = c;
    if (w->pg_attempt) {
        d2o_info("pg_reconnected", "connected to PostgreSQL again after %u attempts",
                 w->pg_attempt);
    }
    w->pg_attempt = 0;
    return true;
}

bool worker_pg_ok(struct worker *w)
{
    char err[512];
    int64_t now;

    if (w->pg && PQstatus(w->pg) == CONNECTION_OK) {
        return true;
    }
    if (w->pg_opening) {
        return false; /* the loop drives it */
    }
    now = d2o_mono_ms();
    if (now < w->pg_retry_ms) {
        return false;
    }
    if (w->pg) {
        /* Broken without a failed query (noticed while reading notifications): say so once. */
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error",
                 "the connection to PostgreSQL broke: %s", PQerrorMessage(w->pg));
        PQfinish(w->pg);
        w->pg = NULL;
    }
    /* A quarter of the lease: a transaction this worker leaves open (frozen, partitioned) ends,
     * and its row locks go, before the lease can expire and another worker takes it. Opened
     * without waiting: the loop polls its socket. */
    w->pg_opening = d2o_pg_open_start(w->conf->pg_conninfo, "ddb2os worker", w->conf->lease_ms / 4,
                                      listen_send, NULL, err, sizeof(err));
    if (!w->pg_opening) {
        w->pg_retry_ms = now + d2o_backoff_ms(250, 5000, w->pg_attempt++);
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_unavailable",
                 "cannot reach PostgreSQL (attempt %u): %s", w->pg_attempt, err);
    }
    return false;
}

bool worker_pg_wait(struct worker *w)
{
    if (worker_pg_ok(w)) {
        return true;
    }
    while (w->pg_opening) {
        bool want_write;
        struct pollfd p = {d2o_pg_open_fd(w->pg_opening, &want_write), 0, 0};
        int64_t left = d2o_pg_open_deadline(w->pg_opening) - d2o_mono_ms();

        p.events = want_write ? POLLOUT : POLLIN;
        if (left > 0 && poll(&p, 1, (int)left) < 0 && errno != EINTR) {
            break;
        }
        if (pg_open_step(w)) {
            return true;
        }
    }
    return w->pg && PQstatus(w->pg) == CONNECTION_OK;
}

bool worker_pg_fd(struct worker *w, struct curl_waitfd *fd)
{
    bool want_write = false;

    if (w->pg_opening) {
        fd->fd = d2o_pg_open_fd(w->pg_opening, &want_write);
    } else if (w->pg && PQstatus(w->pg) == CONNECTION_OK) {
        fd->fd = PQsocket(w->pg);
    } else {
        return false;
    }
    fd->events = want_write ? CURL_WAIT_POLLOUT : CURL_WAIT_POLLIN;
    fd->revents = 0;
    return fd->fd >= 0;
}

void worker_pg_failed(struct worker *w, const char *why)
{
    D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", why);
    if (w->pg && PQstatus(w->pg) != CONNECTION_OK) {
        PQfinish(w->pg);
        w->pg = NULL;
        w->pg_retry_ms = d2o_mono_ms();
    }
}

void worker_pg_notifications(struct worker *w, bool readable)
{
    PGnotify *n;

    if (w->pg_opening) {
        if (readable || d2o_mono_ms() >= d2o_pg_open_deadline(w->pg_opening)) {
            (void)pg_open_step(w);
        }
        return;
    }
    if (readable && !PQconsumeInput(w->pg)) {
        worker_pg_failed(w, PQerrorMessage(w->pg));
        return;
    }
    while ((n = PQnotifies(w->pg)) != NULL) {
        if (strcmp(n->extra, w->conf->application) == 0 && !w->draining) {
            w->lease_tick_now = true;
        }
        PQfreemem(n);
    }
}

/* ---- Kinesis ---- */

void worker_kinesis_error(struct worker *w, const char *shard_id, const char *call, int rc,
                          const struct d2o_kinesis_err *err, unsigned *attempt, int64_t *next_ms)
{
    int64_t now = d2o_mono_ms(), wait;
    char ebuf[128];
    enum d2o_action action = rc == D2O_KINESIS_E_FAILED ? err->action : D2O_ACT_RETRY;
    const char *msg =
        rc == D2O_KINESIS_E_FAILED ? err->message : d2o_strerror(-rc, ebuf, sizeof(ebuf));

    if (rc == -ECANCELED) {
        return; /* the worker is stopping */
    }

    if (action == D2O_ACT_THROTTLE) {
        d2o_metrics_kinesis(w->m, now, NULL); /* Kinesis answered: it is there, only busy */
    } else if (w->m) {
        char why[160];

        snprintf(why, sizeof(why), "%s failed: %.120s", call, msg);
        d2o_metrics_kinesis(w->m, now, why);
    }
    switch (action) {
    case D2O_ACT_THROTTLE:
        wait = d2o_backoff_ms(w->conf->poll_min_ms, 10000, (*attempt)++);
        D2O_LOG_(D2O_LOG_DEBUG, D2O_CAT_KINESIS, shard_id, "kinesis_throttled",
                 "%s throttled; waiting %" PRId64 " ms: %s", call, wait, msg);
        break;
    case D2O_ACT_REFRESH_CREDS:
        if (w->creds) {
            d2o_creds_invalidate(w->creds);
            worker_refresh_creds(w);
        }
        wait = d2o_backoff_ms(w->conf->poll_min_ms, 10000, (*attempt)++);
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_AWS, shard_id, "kinesis_credentials",
                 "%s refused the credentials; refreshed them: %s", call, msg);
        break;
    case D2O_ACT_PERMANENT:
    case D2O_ACT_FATAL:
        wait = d2o_backoff_ms(1000, 30000, (*attempt)++);
        D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_KINESIS, shard_id, "kinesis_error",
                 "%s failed and will not succeed by retrying soon; trying again in %" PRId64
                 " ms: %s",
                 call, wait, msg);
        break;
    default:
        wait = d2o_backoff_ms(w->conf->poll_min_ms, 10000, (*attempt)++);
        D2O_LOG_(*attempt > 3 ? D2O_LOG_WARN : D2O_LOG_DEBUG, D2O_CAT_KINESIS, shard_id,
                 "kinesis_retry", "%s failed (attempt %u); retrying in %" PRId64 " ms: %s", call,
                 *attempt, wait, msg);
        break;
    }
    *next_ms = now + wait;
}

/* New credentials (a refresh's answer): every client signs with them from now on. */
static void creds_refreshed(void *arg, const struct d2o_aws_creds *ac)
{
    struct worker *w = arg;

    d2o_kinesis_set_creds(w->kin, ac);
    d2o_bulk_set_creds(w->sink, ac);
}

void worker_refresh_creds(struct worker *w)
{
    /* On the multi handle: a slow credentials endpoint stalls no shard, and the current
     * credentials stay in use until the answer (or until they expire). */
    if (w->creds && d2o_creds_refresh_async(w->creds, time(NULL), creds_refreshed, w) < 0) {
        D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_AWS, NULL, "credentials",
                 "cannot start refreshing the AWS credentials: out of memory");
    }
}

/* ---- discovery ---- */

void worker_ensure_children(struct worker *w, const char *stream,
                            const struct d2o_kinesis_child_shard *children, size_t n)
{
    struct d2o_lease_seeds *seeds = d2o_lease_seeds_new();
    size_t i, p;

    for (i = 0; seeds && i < n; i++) {
        const char *parents[8] = {NULL};
        struct d2o_lease_seed seed = {0};

        for (p = 0; p < children[i].n_parents && p < 7; p++) {
            parents[p] = children[i].parents[p];
        }
        seed.shard_id = children[i].shard_id;
        seed.parents = parents;
        seed.hash_start = children[i].hash_start;
        seed.hash_end = children[i].hash_end;
        seed.checkpoint = "TRIM_HORIZON";
        if (d2o_lease_seeds_add(seeds, &seed) < 0) {
            /* discovery creates the rest */
            break;
        }
    }
    if (!d2o_lease_seeds_count(seeds)) {
        d2o_lease_seeds_free(seeds);
        return;
    }
    /* children start at TRIM_HORIZON, after their parents */
    worker_seeds_async(w, stream, seeds, true, "child shards of a finished shard");
}

int worker_stream_has_leases(struct worker *w, const char *stream, bool open_only, bool *has)
{
    const char *values[2] = {w->conf->application, stream};
    PGresult *r = PQexecParams(w->pg,
                               open_only ? "SELECT EXISTS (SELECT 1 FROM leases WHERE"
                                           " application = $1 AND stream = $2"
                                           " AND checkpoint <> 'SHARD_END')"
                                         : "SELECT EXISTS (SELECT 1 FROM leases WHERE"
                                           " application = $1 AND stream = $2)",
                               2, NULL, values, NULL, NULL, 0);
    char err[512];
    int ret = 0;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        d2o_pg_error(w->pg, r, "reading the stream's leases", err, sizeof(err));
        worker_pg_failed(w, err);
        ret = -EIO;
    } else {
        *has = PQgetvalue(r, 0, 0)[0] == 't';
    }
    PQclear(r);
    return ret;
}

/* ---- logs ---- */

void worker_reload(const struct d2o_config *conf, struct d2o_bulk *sink)
{
    struct d2o_config fresh;
    char err[512], applied[512], restart[512];

    if (conf->log_file && *conf->log_file) {
        if (freopen(conf->log_file, "a", stderr)) {
            setvbuf(stderr, NULL, _IOLBF, 0);
        }
    }
    d2o_info("logs_reopened", "SIGHUP: log file reopened");
    if (d2o_cli_reload(&fresh, err, sizeof(err)) < 0) {
        d2o_warn("config_reload",
                 "SIGHUP: the configuration was not reloaded (%s); the running "
                 "one stays",
                 err);
        return;
    }
    d2o_conf_apply_log(&fresh);
    d2o_bulk_reload(sink, &fresh);
    (void)d2o_conf_changed(conf, &fresh, true, applied, sizeof(applied));
    if (d2o_conf_changed(conf, &fresh, false, restart, sizeof(restart)) > 0) {
        d2o_warn("config_reload",
                 "SIGHUP: these keys changed but take effect only at a restart: %s", restart);
    }
    d2o_info("config_reloaded", "SIGHUP: configuration reloaded; differs from the start in: %s",
             applied[0] ? applied : "nothing");
    d2o_conf_free(&fresh);
}

/* ---- the process ---- */

void d2o_default_task_id(char *buf, size_t size)
{
    const char *uri = getenv("ECS_CONTAINER_METADATA_URI_V4");
    const char *slash = uri ? strrchr(uri, '/') : NULL;

    if (slash && slash[1]) {
        /* .../v4/<task id>-<container>: the task's part is enough to tell tasks apart */
        snprintf(buf, size, "%.*s", 64, slash + 1);
        return;
    }
    if (gethostname(buf, size) < 0 || !*buf) {
        snprintf(buf, size, "ddb2os");
    }
    buf[size - 1] = '\0';
}

static int setup(struct worker *w, const struct d2o_worker_opts *o)
{
    const struct d2o_config *c = o->conf;
    struct d2o_http_opts ho;
    struct d2o_bulk_opts bo;
    struct d2o_creds_opts co = {0};
    const struct d2o_aws_creds *ac = NULL;
    char err[1024];
    int rc;

    d2o_http_opts_from_config(&ho, c);
    w->http = d2o_http_new(&ho, err, sizeof(err));
    if (!w->http) {
        d2o_err("startup", "%s", err);
        return 1;
    }
    co.region = c->aws_region;
    w->creds = d2o_creds_new(w->http, &co);
    if (!w->creds) {
        return 1;
    }
    if (d2o_creds_get(w->creds, time(NULL), &ac, err, sizeof(err)) < 0) {
        d2o_err("credentials", "no AWS credentials: %s", err);
        return 1;
    }
    if (c->pg_iam_auth) {
        /* Each opening's token is signed with these, refreshed on the multi handle: a
         * reconnect in the loop makes no request for credentials and never waits for one. */
        d2o_rds_pg_auth_use_creds(w->creds);
    }
    rc = worker_source_open(w, c, ac);
    if (rc != 0) {
        return rc;
    }
    d2o_kinesis_set_retry(w->kin, 1, NULL);
    d2o_bulk_opts_from_config(&bo, c);
    bo.done = worker_on_bulk_done;
    bo.observe = worker_on_bulk_answer;
    bo.keep = worker_keep_item;
    bo.done_arg = w;
    if (c->delete_mode == D2O_DELETE_DELETE) {
        bo.filter_start = worker_deletes_filter_start;
        bo.filter_arg = w;
    }
    if (c->opensearch_auth == D2O_OS_AUTH_SIGV4) {
        w->os_signer = d2o_sigv4_signer_new(
            c->aws_region, c->opensearch_service == D2O_OS_SERVICE_AOSS ? "aoss" : "es");
        if (!w->os_signer) {
            return 1;
        }
        bo.signer = w->os_signer;
        bo.creds = ac;
        bo.sign_content_sha256 = c->opensearch_service == D2O_OS_SERVICE_AOSS;
    }
    w->sink = d2o_bulk_new(w->http, &bo, err, sizeof(err));
    if (!w->sink) {
        d2o_err("startup", "%s", err);
        return D2O_EXIT_CONFIG;
    }
    d2o_budget_init(&w->budget, (size_t)c->memory_budget);
    w->max_sink_bytes = (size_t)c->bulk_max_bytes * 8;
    if (w->max_sink_bytes < ((size_t)16 << 20)) {
        w->max_sink_bytes = (size_t)16 << 20;
    }
    w->renew_ms = c->renew_ms ? c->renew_ms : c->lease_ms / 3;
    w->lease_margin_ms = c->lease_ms / 10;
    w->leases_valid_until = INT64_MAX;
    if (o->metrics) {
        w->m = d2o_metrics_claim(o->metrics, o->slot, (int)getpid(), w->id);
    }
    w->server_fd = -1;
    if (o->serve_metrics && o->metrics && c->metrics_port > 0) {
        w->server = d2o_metrics_server_start(o->metrics, c->metrics_addr, (int)c->metrics_port,
                                             c->lease_ms + w->renew_ms, err, sizeof(err));
        if (!w->server) {
            d2o_err("metrics", "%s", err);
            return D2O_EXIT_CONFIG;
        }
        w->server_fd = d2o_metrics_server_fd(w->server);
    }
    return 0;
}

int d2o_worker_run(const struct d2o_worker_opts *o)
{
    struct worker *w = calloc(1, sizeof(*w));
    int rc;
    char ebuf[128];

    if (!w) {
        return 1;
    }
    w->conf = o->conf;
    w->sigfd = -1;
    d2o_rand_seed(); /* this worker's own jitter: tasks and workers never retry in lockstep */
    d2o_mem_keep_heap();
    snprintf(w->task_id, sizeof(w->task_id), "%s", o->task_id);
    snprintf(w->id, sizeof(w->id), "%s:%d", o->task_id, (int)getpid());
    if (gethostname(w->host, sizeof(w->host)) < 0) {
        snprintf(w->host, sizeof(w->host), "unknown");
    }
    w->host[sizeof(w->host) - 1] = '\0';
    d2o_log_set_worker(w->id);
    w->sigfd = worker_signalfd();
    if (w->sigfd < 0) {
        d2o_err("startup", "signalfd: %s", d2o_strerror(-w->sigfd, ebuf, sizeof(ebuf)));
        free(w);
        return 1;
    }
    rc = setup(w, o);
    if (rc == 0) {
        d2o_info("worker_started", "worker %s reading stream %s into %s", w->id,
                 o->conf->stream_name, o->conf->opensearch_url);
        /* The first session opens before the loop, waiting as the start does anyway (the
         * asynchronous one opens in the loop); a reconnect in the loop never waits. */
        (void)worker_pg_wait(w);
        rc = worker_loop(w);
        if (rc == 0 && w->draining && worker_pg_wait(w)) {
            char err[512];

            /* Said at the start of the drain too; again here in case the database was away
             * then. `ddb2os workers` shows the worker as stopped, not dead. */
            if (d2o_lease_worker_stopped(w->pg, w->conf->application, w->id, err, sizeof(err)) <
                0) {
                worker_pg_failed(w, err);
            }
        }
        d2o_info("worker_stopped", "worker %s stopped (exit %d)", w->id, rc);
    }
    if (w->m) {
        d2o_metrics_gauge(&w->m->leases_held, 0);
    }
    /* Calls still on their way (a stop at once, a drain that timed out) end here, while their
     * owners can still free what they hold. */
    d2o_http_cancel_all(w->http);
    worker_free_shards(w);
    d2o_metrics_server_stop(w->server);
    d2o_bulk_free(w->sink);
    d2o_kinesis_free(w->kin);
    free(w->stream_arn);
    d2o_sigv4_signer_free(w->os_signer);
    d2o_rds_pg_auth_use_creds(NULL);
    d2o_creds_free(w->creds);
    d2o_http_free(w->http);
    if (w->pg) {
        PQfinish(w->pg);
    }
    d2o_pg_open_free(w->pg_opening);
    close(w->sigfd);
    free(w);
    return rc;
}
