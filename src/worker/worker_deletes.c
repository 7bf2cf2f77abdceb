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
 * repeats the statement up to EXPIRE_ROUNDS times so the loop is never held long. */
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
        snprintf(err, sizeof(err), "checking writes against recorded deletes: %s",
                 why ? why : "");
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

void worker_deletes_tick(struct worker *w, int64_t now)
{
    int64_t retention = w->conf->stream_retention_ms + w->conf->dlq_replay_window_ms, removed = 0,
            n = EXPIRE_LIMIT;
    int round;
    char err[512];

    if (w->conf->delete_mode != D2O_DELETE_DELETE || now < w->next_expire_ms || !w->pg) {
        return;
    }
    /* Jittered, so the workers of a pool do not all run it at once. */
    w->next_expire_ms = now + EXPIRE_EVERY_MS / 2 + (int64_t)d2o_rand_below(EXPIRE_EVERY_MS);
    for (round = 0; round < EXPIRE_ROUNDS && n == EXPIRE_LIMIT; round++) {
        n = d2o_deletes_expire(w->pg, w->conf->application, retention, EXPIRE_LIMIT, err,
                               sizeof(err));
        if (n < 0) {
            worker_pg_failed(w, err);
            return;
        }
        removed += n;
    }
    if (removed) {
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_PG, NULL, "deletes_expired",
                 "%lld recorded deletes older than %lld ms forgotten", (long long)removed,
                 (long long)retention);
    }
}
