/*
 * The worker's side of the delete store (include/d2o/deletes.h): the sink's pre-send filter on
 * the worker's PostgreSQL connection, and the retention job.
 */
#include <errno.h>
#include <stdio.h>

#include "d2o/conf.h"
#include "d2o/deletes.h"
#include "d2o/log.h"
#include "d2o/rand.h"
#include "worker_int.h"

/* How often each worker runs the retention job, and how many rows one statement removes; a run
 * repeats the statement up to EXPIRE_ROUNDS times so the loop is never held long. */
#define EXPIRE_EVERY_MS (10 * 60 * 1000)
#define EXPIRE_LIMIT 5000
#define EXPIRE_ROUNDS 4

int worker_deletes_filter(void *arg, const struct d2o_bulk_filter_item *items, size_t n, bool *drop)
{
    struct worker *w = arg;
    int r;

    if (!worker_pg_ok(w)) {
        return -EIO;
    }
    w->deletes.pg = w->pg;
    w->deletes.application = w->conf->application;
    r = d2o_deletes_filter(&w->deletes, items, n, drop);
    if (r < 0) {
        worker_pg_failed(w, w->deletes.err);
    }
    return r;
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
