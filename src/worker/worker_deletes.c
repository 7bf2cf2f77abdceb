/*
 * The worker's side of the delete store (include/d2o/deletes.h): the sink's pre-send check on
 * the worker's asynchronous PostgreSQL session (the request goes out with its answer), and the
 * retention job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "d2o/conf.h"
#include "d2o/deletes.h"
#include "d2o/log.h"
#include "d2o/pg.h"
#include "d2o/rand.h"
#include "worker_int.h"

/* How often each worker runs the retention job, and how many rows one statement removes; a run
 * repeats the statement up to EXPIRE_ROUNDS times, one after the other's answer. */
#define EXPIRE_EVERY_MS (10 * 60 * 1000)
#define EXPIRE_LIMIT 5000
#define EXPIRE_ROUNDS 4

/* A check on its way on the asynchronous session. */
struct check_req {
    struct d2o_deletes_query *q;
    struct d2o_bulk_check *check;
};

static int check_send(struct worker *w, PGconn *c, void *arg)
{
    struct check_req *cr = arg;

    return d2o_deletes_query_send(c, w->conf->application, cr->q);
}

static void check_done(struct worker *w, PGresult *r, const char *why, void *arg)
{
    struct check_req *cr = arg;
    bool *drop = calloc(cr->q->n ? cr->q->n : 1, sizeof(*drop));
    size_t dropped = 0;
    char err[512];
    int rc;

    if (!r) {
        rc = why ? -EIO : -ECANCELED;
        snprintf(err, sizeof(err), "checking writes against recorded deletes: %s", why ? why : "");
    } else if (!drop) {
        rc = -ENOMEM;
        snprintf(err, sizeof(err), "checking writes against recorded deletes: no memory");
    } else {
        rc = d2o_deletes_query_read(w->apg.c, r, cr->q, drop, &dropped, err, sizeof(err));
    }
    if (rc < 0 && rc != -ECANCELED) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
    } else if (rc == 0) {
        w->deletes.checks++;
        w->deletes.dropped += dropped;
        if (dropped) {
            d2o_debug(D2O_CAT_SINK, "deletes_dropped",
                      "%zu of %zu writes dropped: their documents were deleted at a newer version",
                      dropped, cr->q->n);
        }
    }
    d2o_bulk_check_done(cr->check, rc, drop);
    free(drop);
    d2o_deletes_query_free(cr->q);
    free(cr);
}

int worker_deletes_filter_start(void *arg, const struct d2o_bulk_filter_item *items, size_t n,
                                struct d2o_bulk_check *check)
{
    struct worker *w = arg;
    struct check_req *cr = calloc(1, sizeof(*cr));

    if (!cr || !(cr->q = d2o_deletes_query_new(items, n))) {
        free(cr);
        return -ENOMEM;
    }
    if (d2o_deletes_query_size(cr->q) == 0) {
        /* nothing the store decides: out as it is */
        d2o_deletes_query_free(cr->q);
        free(cr);
        d2o_bulk_check_done(check, 0, NULL);
        return 0;
    }
    cr->check = check;
    worker_apg_call_data(w, check_send, check_done, cr);
    return 0;
}

/* One statement of the retention job on the asynchronous session; the next round goes when
 * its answer says there may be more. */
static int expire_send(struct worker *w, PGconn *c)
{
    return d2o_deletes_expire_send(c, w->conf->application,
                                   w->conf->stream_retention_ms + w->conf->dlq_replay_window_ms,
                                   EXPIRE_LIMIT);
}

static void expire_done(struct worker *w, PGresult *r, const char *why)
{
    char err[512];
    int64_t n;

    if (!r) {
        if (why) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "expiring recorded deletes: %s",
                     why);
        }
        w->expire_round = 0;
        return;
    }
    n = d2o_deletes_expire_read(w->apg.c, r, err, sizeof(err));
    if (n < 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
        w->expire_round = 0;
        return;
    }
    w->expire_removed += n;
    if (n == EXPIRE_LIMIT && ++w->expire_round <= EXPIRE_ROUNDS) {
        worker_apg_call(w, expire_send, expire_done);
        return;
    }
    if (w->expire_removed) {
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_PG, NULL, "deletes_expired",
                 "%lld recorded deletes older than %lld ms forgotten", (long long)w->expire_removed,
                 (long long)(w->conf->stream_retention_ms + w->conf->dlq_replay_window_ms));
    }
    w->expire_round = 0;
}

void worker_deletes_tick(struct worker *w, int64_t now)
{
    if (w->conf->delete_mode != D2O_DELETE_DELETE || now < w->next_expire_ms ||
        w->expire_round > 0) {
        return;
    }
    /* Jittered, so the workers of a pool do not all run it at once. */
    w->next_expire_ms = now + EXPIRE_EVERY_MS / 2 + (int64_t)d2o_rand_below(EXPIRE_EVERY_MS);
    w->expire_round = 1;
    w->expire_removed = 0;
    worker_apg_call(w, expire_send, expire_done);
}
