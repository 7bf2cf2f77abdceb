/*
 * Shard discovery and the listings of a stream's shards, on the loop's multi handle: a slow or
 * throttled ListShards (DescribeStream for a DynamoDB stream) delays only the listing, never
 * the shards' reads.
 *
 * The shard sync (every shard_sync_ms): one worker of the application at a time (an advisory
 * lock on the asynchronous PostgreSQL session, held from the first page call to the lease rows),
 * lists every shard and gives the new ones their lease rows in one statement on that session. A
 * failed page call is tried again with the backoff of the synchronous client (base 100 ms, cap 5 s,
 * 5 retries) before the failure is reported and the sync waits 2 s.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "d2o/clock.h"
#include "d2o/creds.h"
#include "d2o/lease.h"
#include "d2o/log.h"
#include "d2o/metrics.h"
#include "d2o/pg.h"
#include "d2o/rand.h"
#include "d2o/util.h"
#include "worker_int.h"

/* Page calls of one sync tried again before the failure is reported. */
#define SYNC_RETRIES 5

/* The checkpoint a shard found by discovery starts from. */
static const char *seed_position(const struct worker *w, const struct d2o_kinesis_shard *s,
                                 bool first, int64_t *ts_ms)
{
    *ts_ms = 0;
    if (!first) {
        return "TRIM_HORIZON"; /* created by a reshard after ddb2os started: read it all */
    }
    switch (w->conf->initial_position) {
    case D2O_POS_LATEST:
        /* Only open shards are read; closed ones count as finished so children are not held. */
        return s->seq_end ? "SHARD_END" : "LATEST";
    case D2O_POS_AT_TIMESTAMP: {
        time_t t = 0;

        if (d2o_creds_parse_time(w->conf->initial_timestamp, &t) < 0) {
            t = 0;
        }
        *ts_ms = (int64_t)t * 1000;
        return "AT_TIMESTAMP";
    }
    default:
        return "TRIM_HORIZON";
    }
}

/* pg_try_advisory_lock / pg_advisory_unlock on the application and stream, on the asynchronous
 * session (which holds the lock from the listing to the lease rows). */
static int lock_sql(struct worker *w, PGconn *c, bool lock)
{
    char key[512];
    const char *values[1] = {key};

    snprintf(key, sizeof(key), "ddb2os shard sync %s %s", w->conf->application,
             w->conf->stream_name);
    return PQsendQueryParams(c,
                             lock ? "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
                                  : "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                             1, NULL, values, NULL, NULL, 0)
               ? 0
               : -EIO;
}

static int lock_send(struct worker *w, PGconn *c)
{
    return lock_sql(w, c, true);
}

static int unlock_send(struct worker *w, PGconn *c)
{
    return lock_sql(w, c, false);
}

static void unlock_done(struct worker *w, PGresult *r, const char *why)
{
    (void)w;
    (void)r;
    (void)why; /* a lost session lets the lock go too */
}

static void sync_write(struct worker *w, const struct d2o_kinesis_shards *shards)
{
    struct d2o_lease_seeds *seeds = d2o_lease_seeds_new();
    size_t i;

    for (i = 0; seeds && i < shards->n_shards; i++) {
        const struct d2o_kinesis_shard *s = &shards->shards[i];
        const char *parents[3] = {NULL, NULL, NULL};
        struct d2o_lease_seed seed = {0};
        size_t np = 0;

        if (s->parent_shard_id) {
            parents[np++] = s->parent_shard_id;
        }
        if (s->adjacent_parent_shard_id) {
            parents[np++] = s->adjacent_parent_shard_id;
        }
        seed.shard_id = s->shard_id;
        seed.parents = parents;
        seed.hash_start = s->hash_start;
        seed.hash_end = s->hash_end;
        /* the first shards of a stream; the statement starts later ones at TRIM_HORIZON */
        seed.checkpoint = seed_position(w, s, true, &seed.checkpoint_ts_ms);
        if (d2o_lease_seeds_add(seeds, &seed) < 0) {
            d2o_lease_seeds_free(seeds);
            return; /* out of memory: the next sync */
        }
    }
    if (!seeds || !d2o_lease_seeds_count(seeds)) {
        d2o_lease_seeds_free(seeds);
        return;
    }
    /* the table's new stream: read it all */
    worker_seeds_async(w, w->conf->stream_name, seeds, w->stream_followed, "listed");
}

static void sync_listed(int rc, struct d2o_kinesis_shards *shards,
                        const struct d2o_kinesis_err *kerr, void *arg)
{
    struct worker *w = arg;
    int64_t now = d2o_mono_ms();

    w->sync_in_flight = false;
    if (rc != 0 && (rc < 0 || kerr->action == D2O_ACT_RETRY || kerr->action == D2O_ACT_THROTTLE) &&
        w->sync_attempt < SYNC_RETRIES) {
        w->next_sync_ms = now + d2o_backoff_ms(100, 5000, w->sync_attempt++);
    } else if (rc != 0) {
        char ebuf[128], why[160];
        const char *msg =
            rc == D2O_KINESIS_E_FAILED ? kerr->message : d2o_strerror(-rc, ebuf, sizeof(ebuf));

        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_KINESIS, NULL, "shard_sync",
                 "cannot list the shards of %s: %s", w->conf->stream_name, msg);
        snprintf(why, sizeof(why), "cannot list the shards of %.40s: %.80s", w->conf->stream_name,
                 msg);
        d2o_metrics_kinesis(w->m, now, why);
        w->sync_attempt = 0;
        w->next_sync_ms = now + 2000;
    } else {
        d2o_metrics_kinesis(w->m, now, NULL);
        w->sync_attempt = 0;
        if (!w->draining) {
            sync_write(w, shards);
        }
    }
    /* after the rows, on the same session */
    worker_apg_call(w, unlock_send, unlock_done);
    d2o_kinesis_shards_free(shards);
}

/* The lock's answer: list the shards unless another worker syncs. */
static void lock_done(struct worker *w, PGresult *res, const char *why)
{
    int r;

    (void)why;
    w->sync_in_flight = false;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQgetvalue(res, 0, 0)[0] != 't' || w->draining) {
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
            PQgetvalue(res, 0, 0)[0] == 't') {
            worker_apg_call(w, unlock_send, unlock_done);
        }
        return; /* another worker is syncing, the database is away, or the worker stops */
    }
    r = d2o_kinesis_list_all_shards_async(w->kin, w->conf->stream_name, D2O_SHARD_FILTER_NONE, 0,
                                          sync_listed, w);
    if (r != 0) {
        struct d2o_kinesis_shards none = {0};
        struct d2o_kinesis_err kerr = {0};

        sync_listed(r, &none, &kerr, w);
        return;
    }
    w->sync_in_flight = true;
}

void worker_sync_shards(struct worker *w)
{
    if (w->sync_in_flight || !worker_source_settled(w)) {
        return; /* on its way */
    }
    w->sync_in_flight = true;
    worker_apg_call(w, lock_send, lock_done);
}

/* ---- one shard's place in the listing ---- */

struct listed_req {
    char *shard_id;
    worker_listed_fn cb;
    void *arg;
};

static void shard_listed(int rc, struct d2o_kinesis_shards *shards,
                         const struct d2o_kinesis_err *err, void *arg)
{
    struct listed_req *q = arg;
    bool listed = false, closed = false;
    size_t i;

    for (i = 0; rc == 0 && i < shards->n_shards; i++) {
        if (strcmp(shards->shards[i].shard_id, q->shard_id) == 0) {
            listed = true;
            closed = shards->shards[i].seq_end != NULL;
        }
    }
    d2o_kinesis_shards_free(shards);
    q->cb(q->arg, rc, listed, closed, err);
    free(q->shard_id);
    free(q);
}

int worker_shard_listed_async(struct worker *w, const char *stream, const char *shard_id,
                              worker_listed_fn cb, void *arg)
{
    struct listed_req *q = calloc(1, sizeof(*q));
    int r;

    if (!q || !(q->shard_id = strdup(shard_id))) {
        free(q);
        return -ENOMEM;
    }
    q->cb = cb;
    q->arg = arg;
    r = d2o_kinesis_list_all_shards_async(w->kin, stream, D2O_SHARD_FILTER_NONE, 0, shard_listed,
                                          q);
    if (r != 0) {
        free(q->shard_id);
        free(q);
    }
    return r;
}
