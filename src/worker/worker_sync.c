/*
 * Shard discovery and the listings of a stream's shards, on the loop's multi handle: a slow or
 * throttled ListShards (DescribeStream for a DynamoDB stream) delays only the listing, never
 * the shards' reads.
 *
 * The shard sync (every shard_sync_ms): one worker of the application at a time (an advisory
 * lock, held from the first page call to the lease rows), lists every shard and gives each new
 * one its lease row. The shards whose row the worker has seen are remembered and skipped, so a
 * sync of a stream without new shards costs no statement per shard (200 shards were 200 round
 * trips in the loop every sync); every SYNC_FULL_EVERY syncs, and when the stream changes, the
 * set is forgotten and every listed shard is checked again, so a row removed by hand comes back.
 * A failed page call is tried again with the backoff of the synchronous
 * client (base 100 ms, cap 5 s, 5 retries) before the failure is reported and the sync waits
 * 2 s.
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
/* Syncs after which every listed shard's row is checked again. */
#define SYNC_FULL_EVERY 10

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void worker_sync_free(struct worker *w)
{
    struct worker_sync_known *k = &w->sync_known;
    size_t i;

    for (i = 0; i < k->n; i++) {
        free(k->ids[i]);
    }
    free(k->ids);
    free(k->stream);
    *k = (struct worker_sync_known){0};
}

/* Whether the first n (sorted) of the set hold id. */
static bool known(const struct worker_sync_known *k, size_t n, const char *id)
{
    return n && bsearch(&id, k->ids, n, sizeof(*k->ids), cmp_id) != NULL;
}

/* Adds id at the end (the caller sorts); out of memory only means it is checked again. */
static void remember(struct worker_sync_known *k, const char *id)
{
    char *c;

    if (!k->stream) {
        return;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        char **grown = realloc(k->ids, cap * sizeof(*grown));

        if (!grown) {
            return;
        }
        k->ids = grown;
        k->cap = cap;
    }
    c = strdup(id);
    if (c) {
        k->ids[k->n++] = c;
    }
}

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

/* pg_try_advisory_lock / pg_advisory_unlock on the application and stream. */
static int sync_lock(struct worker *w, bool lock)
{
    char key[512];
    const char *values[1] = {key};
    PGresult *r;
    int ret;

    snprintf(key, sizeof(key), "ddb2os shard sync %s %s", w->conf->application,
             w->conf->stream_name);
    r = PQexecParams(w->pg,
                     lock ? "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
                          : "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                     1, NULL, values, NULL, NULL, 0);
    ret =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return ret;
}

static void sync_write(struct worker *w, const struct d2o_kinesis_shards *shards)
{
    struct worker_sync_known *k = &w->sync_known;
    char err[512];
    bool has = true;
    size_t i, created = 0, sorted, unknown = 0;
    int r;

    if (!k->stream || strcmp(k->stream, w->conf->stream_name) != 0 ||
        ++k->syncs >= SYNC_FULL_EVERY) {
        worker_sync_free(w);
        k->stream = strdup(w->conf->stream_name);
    }
    sorted = k->n;
    for (i = 0; i < shards->n_shards; i++) {
        unknown += !known(k, sorted, shards->shards[i].shard_id);
    }
    if (unknown == 0) {
        return;
    }
    if (worker_stream_has_leases(w, w->conf->stream_name, false, &has) < 0) {
        return;
    }
    has = has || w->stream_followed; /* the table's new stream: read it all */
    for (i = 0; i < shards->n_shards; i++) {
        const struct d2o_kinesis_shard *s = &shards->shards[i];
        const char *parents[3] = {NULL, NULL, NULL};
        struct d2o_lease_seed seed = {0};
        size_t np = 0;

        if (known(k, sorted, s->shard_id)) {
            continue;
        }
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
        seed.checkpoint = seed_position(w, s, !has, &seed.checkpoint_ts_ms);
        r = d2o_lease_ensure_shard(w->pg, w->conf->application, w->conf->stream_name, &seed, err,
                                   sizeof(err));
        if (r < 0) {
            worker_pg_failed(w, err);
            break;
        }
        remember(k, s->shard_id);
        created += (size_t)r;
    }
    if (k->n > 1) {
        qsort(k->ids, k->n, sizeof(*k->ids), cmp_id);
    }
    if (i < shards->n_shards) {
        return;
    }
    if (created) {
        d2o_info("shard_sync", "%zu new shards of %s (of %zu listed) have lease rows now", created,
                 w->conf->stream_name, shards->n_shards);
        w->lease_tick_now = true;
        /* The other workers may have ticked before the rows existed; without this they would
         * wait a whole renew period for their share. */
        if (d2o_lease_notify(w->pg, w->conf->application, err, sizeof(err)) < 0) {
            worker_pg_failed(w, err);
        }
    }
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
        if (!w->draining && worker_pg_ok(w)) {
            sync_write(w, shards);
        }
    }
    if (w->pg && PQstatus(w->pg) == CONNECTION_OK) {
        (void)sync_lock(w, false);
    }
    d2o_kinesis_shards_free(shards);
}

void worker_sync_shards(struct worker *w)
{
    int r;

    if (w->sync_in_flight || !worker_source_settled(w) || !worker_pg_ok(w) || !sync_lock(w, true)) {
        return; /* on its way, another worker is syncing, or the database is away */
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
