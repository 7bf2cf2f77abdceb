/*
 * The worker's asynchronous PostgreSQL connection: every statement of the loop goes through it
 * without ever blocking the event loop: lease renewals (with the heartbeat), checkpoints (with
 * their dead-letter rows), the census, lease takes and the handoff request after them,
 * discovery's lease rows, and the fenced statements on one lease (release, hand-over, a shard's
 * finish, LATEST's resolution), a DynamoDB stream's start version and the delete store's check.
 *
 * It is a second session beside the worker's synchronous one, which keeps LISTEN and what runs
 * only at the start or the exit. The socket is polled with the loop's other descriptors;
 * libpq's non-blocking interface (PQsendQueryParams, PQflush, PQconsumeInput, PQisBusy,
 * PQgetResult) reads the answer as it arrives. One statement is in flight at a time, and the
 * queue has three ranks: the renewal goes first (it waits behind at most the statement in
 * flight), then checkpoints, then the rest in order; a checkpoint passes each of the rest at
 * most once, so a steady flow of checkpoints delays a census or a take by one statement, never
 * for good. The session has the same bounds as the synchronous one (statement, lock and
 * idle-in-transaction timeouts, keepalives); a broken connection fails every queued request (its
 * owner sends again later) and is opened again with backoff, also without waiting
 * (d2o_pg_open_start): the queue waits for the opening.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/dlq.h"
#include "d2o/lease.h"
#include "d2o/log.h"
#include "d2o/pg.h"
#include "d2o/rand.h"
#include "d2o/util.h"
#include "worker_int.h"

struct apg_req {
    struct apg_req *next;
    /* sends the statement (PQsendQueryParams); 0 or < 0 */
    int (*send)(struct worker *w, PGconn *c, struct apg_req *q);
    /* the last result (NULL when the request failed, with why) */
    void (*done)(struct worker *w, PGresult *r, const char *why, struct apg_req *q);
    int64_t sent_ms, sent_us;
    int rank;                           /* RANK_*: where it queues */
    bool passed;                        /* a checkpoint went ahead of it: the next one does not */
    struct d2o_checkpoint_batch *batch; /* checkpoints */
    void *owner;                        /* checkpoints: the worker's handle for the batch */
    worker_apg_send_fn call_send;       /* worker_apg_call */
    worker_apg_done_fn call_done;
    int want, held, target, live;  /* a take: what the census saw */
    struct d2o_lease_seeds *seeds; /* lease rows to create, of stream */
    char *stream;
    bool read_all;
    const char *why;                 /* what found the shards: for the log */
    worker_apg_send_arg_fn arg_send; /* worker_apg_call_arg */
    worker_apg_done_arg_fn arg_done;
    void *arg;
    enum d2o_lease_op op; /* worker_lease_op_async: op on lease (a copy) */
    struct d2o_lease lease;
    int64_t ms0, ms1;
    worker_lease_op_fn op_done;
};

/* The ranks of the queue, first to last. */
enum { RANK_OTHER = 0, RANK_CHECKPOINT = 1, RANK_RENEWAL = 2 };

static void apg_fail_all(struct worker *w, const char *why)
{
    struct worker_apg *a = &w->apg;

    while (a->head) {
        struct apg_req *q = a->head;

        a->head = q->next;
        q->done(w, NULL, why, q);
        free(q);
    }
    a->tail = NULL;
    a->in_flight = false;
    a->want_write = false;
    PQclear(a->last);
    a->last = NULL;
}

static void apg_broken(struct worker *w, const char *why)
{
    struct worker_apg *a = &w->apg;
    char msg[512];

    /* why may point into the connection that is about to go */
    snprintf(msg, sizeof(msg), "%s", why);
    D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "asynchronous session: %s", msg);
    if (a->c) {
        PQfinish(a->c);
        a->c = NULL;
    }
    a->retry_ms = d2o_mono_ms() + d2o_backoff_ms(250, 5000, a->attempt++);
    apg_fail_all(w, msg);
}

/* The session's setup once connected: the checkpoint statements, prepared. */
static int prepare_send(PGconn *c, unsigned i, void *arg)
{
    (void)arg;
    return d2o_checkpoint_batch_prepare_send(c, i);
}

/* The opening's next step (its socket was signalled, or its deadline passed): true once the
 * session is open. A failed opening fails the queue (its owners send again later). */
static bool apg_open_step(struct worker *w)
{
    struct worker_apg *a = &w->apg;
    PGconn *c = NULL;
    char err[512];
    int r = d2o_pg_open_continue(a->opening, &c, err, sizeof(err));

    if (r == 1) {
        return false;
    }
    d2o_pg_open_free(a->opening);
    a->opening = NULL;
    if (r < 0) {
        a->retry_ms = d2o_mono_ms() + d2o_backoff_ms(250, 5000, a->attempt++);
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_unavailable",
                 "cannot reach PostgreSQL for the asynchronous session (attempt %u): %s",
                 a->attempt, err);
        apg_fail_all(w, err);
        return false;
    }
    a->c = c;
    if (a->attempt) {
        d2o_info("pg_reconnected",
                 "the asynchronous session is connected to PostgreSQL again after %u attempts",
                 a->attempt);
    }
    a->attempt = 0;
    return true;
}

/* Whether the session is open. When it is not and the backoff has passed, it starts opening it
 * without waiting: the loop polls the opening's socket (worker_apg_fd) and worker_apg_io takes
 * its steps, while the queued requests wait for it. */
static bool apg_connected(struct worker *w)
{
    struct worker_apg *a = &w->apg;
    char err[512];

    if (a->c && PQstatus(a->c) == CONNECTION_OK) {
        return true;
    }
    if (a->c) {
        apg_broken(w, PQerrorMessage(a->c));
        return false;
    }
    if (a->opening || d2o_mono_ms() < a->retry_ms) {
        return false;
    }
    /* The same bounds as the synchronous session: nothing this worker leaves open outlives a
     * quarter of the lease. */
    a->opening = d2o_pg_open_start(w->conf->pg_conninfo, "ddb2os worker async",
                                   w->conf->lease_ms / 4, prepare_send, NULL, err, sizeof(err));
    if (!a->opening) {
        a->retry_ms = d2o_mono_ms() + d2o_backoff_ms(250, 5000, a->attempt++);
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_unavailable",
                 "cannot reach PostgreSQL for the asynchronous session (attempt %u): %s",
                 a->attempt, err);
    }
    return false;
}

/* Takes the first request off the queue and gives its owner the answer (r, or NULL and why). */
static void apg_finish_head(struct worker *w, PGresult *r, const char *why)
{
    struct worker_apg *a = &w->apg;
    struct apg_req *q = a->head;

    a->head = q->next;
    if (!a->head) {
        a->tail = NULL;
    }
    q->done(w, r, why, q);
    free(q);
}

static struct apg_req *
apg_req_new(int (*send)(struct worker *, PGconn *, struct apg_req *),
            void (*done)(struct worker *, PGresult *, const char *, struct apg_req *), int rank)
{
    struct apg_req *q = calloc(1, sizeof(*q));

    if (q) {
        q->send = send;
        q->done = done;
        q->rank = rank;
    }
    return q;
}

/* Sends the first queued request if nothing is in flight. */
static void apg_kick(struct worker *w)
{
    struct worker_apg *a = &w->apg;

    while (!a->in_flight && a->head && !a->closing) {
        struct apg_req *q = a->head;
        int r;

        if (!apg_connected(w)) {
            if (!a->opening) {
                /* Not now: fail the queue, its owners send again later. */
                apg_fail_all(w, "PostgreSQL is not reachable");
            }
            return; /* else the queue waits for the session */
        }
        q->sent_us = d2o_mono_us();
        q->sent_ms = q->sent_us / 1000;
        r = q->send(w, a->c, q);
        if (r < 0 && PQstatus(a->c) != CONNECTION_OK) {
            apg_broken(w, PQerrorMessage(a->c));
            return;
        }
        if (r != 0) {
            /* r > 0: nothing to send after all */
            apg_finish_head(w, NULL,
                            r > 0          ? NULL
                            : r == -ENOMEM ? "out of memory"
                                           : PQerrorMessage(a->c));
            continue;
        }
        a->in_flight = true;
        r = PQflush(a->c);
        if (r < 0) {
            apg_broken(w, PQerrorMessage(a->c));
            return;
        }
        a->want_write = r == 1;
    }
}

/* Queues q by its rank: a renewal after the statement in flight (and a renewal queued, which
 * there is not: one is on its way at a time); a checkpoint after the renewal, the checkpoints
 * queued and the other requests a checkpoint went ahead of already; the others at the end. */
static void apg_submit(struct worker *w, struct apg_req *q)
{
    struct worker_apg *a = &w->apg;
    struct apg_req **pp = a->in_flight ? &a->head->next : &a->head, *p;

    while (*pp &&
           ((*pp)->rank > q->rank || ((*pp)->rank == q->rank && q->rank != RANK_CHECKPOINT) ||
            (q->rank == RANK_CHECKPOINT && ((*pp)->rank == RANK_CHECKPOINT || (*pp)->passed)))) {
        pp = &(*pp)->next;
    }
    q->next = *pp;
    *pp = q;
    if (!q->next) {
        a->tail = q;
    }
    for (p = q->rank == RANK_CHECKPOINT ? q->next : NULL; p; p = p->next) {
        p->passed = true;
    }
    apg_kick(w);
}

static int call_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    return q->call_send(w, c);
}

static void call_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    q->call_done(w, r, why);
}

void worker_apg_call(struct worker *w, worker_apg_send_fn send, worker_apg_done_fn done)
{
    struct apg_req *q = apg_req_new(call_send, call_done, RANK_OTHER);

    if (!q) {
        done(w, NULL, "out of memory");
        return;
    }
    q->call_send = send;
    q->call_done = done;
    apg_submit(w, q);
}

bool worker_apg_fd(struct worker *w, struct curl_waitfd *fd)
{
    struct worker_apg *a = &w->apg;

    if (a->opening) {
        bool want_write;

        fd->fd = d2o_pg_open_fd(a->opening, &want_write);
        fd->events = want_write ? CURL_WAIT_POLLOUT : CURL_WAIT_POLLIN;
        fd->revents = 0;
        return fd->fd >= 0;
    }
    if (!a->in_flight || !a->c || PQsocket(a->c) < 0) {
        return false;
    }
    fd->fd = PQsocket(a->c);
    fd->events = CURL_WAIT_POLLIN | (a->want_write ? CURL_WAIT_POLLOUT : 0);
    fd->revents = 0;
    return true;
}

void worker_apg_io(struct worker *w, bool ready)
{
    struct worker_apg *a = &w->apg;

    if (a->opening) {
        if ((ready || d2o_mono_ms() >= d2o_pg_open_deadline(a->opening)) && apg_open_step(w)) {
            apg_kick(w);
        }
        return;
    }
    if (!a->in_flight) {
        apg_kick(w);
        return;
    }
    if (!ready) {
        return;
    }
    if (a->want_write) {
        int r = PQflush(a->c);

        if (r < 0) {
            apg_broken(w, PQerrorMessage(a->c));
            return;
        }
        a->want_write = r == 1;
    }
    if (!PQconsumeInput(a->c)) {
        apg_broken(w, PQerrorMessage(a->c));
        return;
    }
    while (a->in_flight && !PQisBusy(a->c)) {
        PGresult *r = PQgetResult(a->c);

        if (r) {
            PQclear(a->last);
            a->last = r;
            continue;
        }
        /* The request is complete. */
        r = a->last;
        a->last = NULL;
        a->in_flight = false;
        apg_finish_head(w, r, r ? NULL : "no result");
        PQclear(r);
        if (PQstatus(a->c) != CONNECTION_OK) {
            apg_broken(w, PQerrorMessage(a->c));
            return;
        }
        apg_kick(w);
    }
}

void worker_apg_settle(struct worker *w, int64_t timeout_ms)
{
    struct worker_apg *a = &w->apg;
    int64_t deadline = d2o_mono_ms() + timeout_ms;

    a->closing = true;
    while (a->in_flight && a->c) {
        struct pollfd p = {PQsocket(a->c), (short)(POLLIN | (a->want_write ? POLLOUT : 0)), 0};
        int64_t left = deadline - d2o_mono_ms();

        if (left <= 0 || p.fd < 0 || (poll(&p, 1, (int)left) < 0 && errno != EINTR)) {
            break;
        }
        worker_apg_io(w, true);
    }
}

void worker_apg_close(struct worker *w)
{
    d2o_pg_open_free(w->apg.opening);
    w->apg.opening = NULL;
    apg_fail_all(w, NULL);
    if (w->apg.c) {
        PQfinish(w->apg.c);
        w->apg.c = NULL;
    }
}

/* ---- lease renewal ---- */

/* The renewal carries the heartbeat: it never waits behind more than the statement in flight.
 * A draining worker already said it stopped, and a heartbeat would count it live again. */
static int renew_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    (void)q;
    if (w->draining) {
        return d2o_lease_renew_all_send(c, w->conf->application, w->id, w->conf->lease_ms);
    }
    return d2o_lease_renew_beat_send(c, w->conf->application, w->id, w->conf->lease_ms, w->host,
                                     (int)getpid(), w->task_id, worker_shards_held(w));
}

static void renew_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    struct d2o_lease_list renewed = {0};
    char err[512];

    w->renew_in_flight = false;
    if (!r) {
        if (why) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "renewing leases: %s", why);
        }
        return;
    }
    if (d2o_lease_renew_all_read(w->apg.c, r, &renewed, err, sizeof(err)) < 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
    } else {
        worker_on_renewed(w, &renewed, q->sent_ms);
    }
    d2o_lease_list_free(&renewed);
}

void worker_renew_async(struct worker *w)
{
    struct apg_req *q;

    if (w->renew_in_flight) {
        return; /* the answer to the last one is still on its way */
    }
    q = apg_req_new(renew_send, renew_done, RANK_RENEWAL);
    if (!q) {
        return;
    }
    w->renew_in_flight = true;
    apg_submit(w, q);
}

/* ---- checkpoints ---- */

static int checkpoints_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    int r = d2o_checkpoint_batch_send(c, q->batch, true);

    (void)w;
    if (r == 0) {
        /* A worker stopped here holds its statement open on the server (tests). */
        d2o_test_point("checkpoint_locked");
    }
    return r;
}

static void checkpoints_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    size_t n = d2o_checkpoint_batch_size(q->batch);
    int *outcome = calloc(n ? n : 1, sizeof(*outcome));
    char err[512];
    int rc = -EIO;

    w->checkpoint_in_flight = false;
    snprintf(err, sizeof(err), "checkpoint: %s", why ? why : "no answer");
    if (!r && !why) {
        err[0] = '\0'; /* the worker is stopping: nothing to say */
    } else if (r && outcome) {
        rc = d2o_checkpoint_batch_read(q->batch, w->apg.c, r, outcome, err, sizeof(err));
    } else if (!outcome) {
        snprintf(err, sizeof(err), "checkpoint: out of memory");
    }
    worker_on_checkpoints(w, q->owner, q->batch, rc, outcome, err, d2o_mono_us() - q->sent_us);
    free(outcome);
    d2o_checkpoint_batch_free(q->batch);
}

void worker_checkpoints_async(struct worker *w, struct d2o_checkpoint_batch *b, void *owner)
{
    struct apg_req *q = apg_req_new(checkpoints_send, checkpoints_done, RANK_CHECKPOINT);

    if (!q) {
        worker_on_checkpoints(w, owner, b, -ENOMEM, NULL, "checkpoint: out of memory", 0);
        d2o_checkpoint_batch_free(b);
        return;
    }
    q->batch = b;
    q->owner = owner;
    w->checkpoint_in_flight = true;
    apg_submit(w, q);
}

/* ---- lease takes ---- */

static int handoff_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    return d2o_lease_request_handoff_send(c, w->conf->application, w->conf->stream_name, w->id,
                                          q->target, w->conf->lease_ms);
}

static void handoff_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    char err[512];
    int rc;

    w->take_in_flight = false;
    if (!r) {
        if (why) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "requesting a handoff: %s", why);
        }
        return;
    }
    rc = d2o_lease_request_handoff_read(w->apg.c, r, err, sizeof(err));
    if (rc < 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
    } else if (rc > 0) {
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_LEASE, NULL, "handoff_asked",
                 "holding %d of a target of %d leases; asked the busiest worker for one", q->held,
                 q->target);
    }
}

static int take_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    return d2o_lease_take_send(c, w->conf->application, w->conf->stream_name, w->id, q->want,
                               w->conf->lease_ms);
}

/* The leases taken; then, still below the target, a handoff asked of the busiest worker. */
static void take_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    struct d2o_lease_list taken = {0};
    struct apg_req *h;
    char err[512];
    int rc;

    w->take_in_flight = false;
    if (!r) {
        if (why) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "taking leases: %s", why);
        }
        return;
    }
    rc = d2o_lease_take_read(w->apg.c, r, &taken, err, sizeof(err));
    if (rc < 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
    }
    worker_on_taken(w, &taken);
    d2o_lease_list_free(&taken);
    if (rc < 0 || q->held + rc >= q->target || q->live <= 1 || w->draining) {
        return;
    }
    h = apg_req_new(handoff_send, handoff_done, RANK_OTHER);
    if (!h) {
        return;
    }
    h->held = q->held + rc;
    h->target = q->target;
    w->take_in_flight = true;
    apg_submit(w, h);
}

void worker_take_async(struct worker *w, int want, int held, int target, int live)
{
    struct apg_req *q;

    if (w->take_in_flight || want <= 0) {
        return;
    }
    q = apg_req_new(take_send, take_done, RANK_OTHER);
    if (!q) {
        return;
    }
    q->want = want;
    q->held = held;
    q->target = target;
    q->live = live;
    w->take_in_flight = true;
    apg_submit(w, q);
}

/* ---- lease rows for new shards ---- */

static int seeds_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    return d2o_lease_seeds_send(c, w->conf->application, q->stream, q->seeds, q->read_all);
}

static void seeds_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    char err[512];
    int rc;

    if (!r) {
        if (why) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "creating lease rows: %s", why);
        }
    } else if ((rc = d2o_lease_seeds_read(w->apg.c, r, err, sizeof(err))) < 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
    } else if (rc > 0) {
        d2o_info("shard_sync", "%d new shards of %s (of %zu %s) have lease rows now", rc, q->stream,
                 d2o_lease_seeds_count(q->seeds), q->why);
        /* take them soon; the statement notified the other workers */
        w->lease_tick_now = true;
    }
    d2o_lease_seeds_free(q->seeds);
    free(q->stream);
}

void worker_seeds_async(struct worker *w, const char *stream, struct d2o_lease_seeds *seeds,
                        bool read_all, const char *why)
{
    struct apg_req *q = apg_req_new(seeds_send, seeds_done, RANK_OTHER);

    if (!q || !(q->stream = strdup(stream))) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error",
                 "creating lease rows: out of memory; the next shard sync tries again");
        free(q);
        d2o_lease_seeds_free(seeds);
        return;
    }
    q->seeds = seeds;
    q->read_all = read_all;
    q->why = why;
    apg_submit(w, q);
}

/* ---- any statement with an argument ---- */

static int arg_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    return q->arg_send(w, c, q->arg);
}

static void arg_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    q->arg_done(w, r, why, q->arg);
}

static void call_arg(struct worker *w, worker_apg_send_arg_fn send, worker_apg_done_arg_fn done,
                     void *arg, int rank)
{
    struct apg_req *q = apg_req_new(arg_send, arg_done, rank);

    if (!q) {
        done(w, NULL, "out of memory", arg);
        return;
    }
    q->arg_send = send;
    q->arg_done = done;
    q->arg = arg;
    apg_submit(w, q);
}

void worker_apg_call_arg(struct worker *w, worker_apg_send_arg_fn send, worker_apg_done_arg_fn done,
                         void *arg)
{
    call_arg(w, send, done, arg, RANK_OTHER);
}

void worker_apg_call_data(struct worker *w, worker_apg_send_arg_fn send,
                          worker_apg_done_arg_fn done, void *arg)
{
    call_arg(w, send, done, arg, RANK_CHECKPOINT);
}

/* ---- the fenced statements on one lease ---- */

static void op_free(struct apg_req *q)
{
    free(q->lease.stream);
    free(q->lease.shard_id);
    free(q->lease.owner);
}

static int op_send(struct worker *w, PGconn *c, struct apg_req *q)
{
    return d2o_lease_op_send(c, q->op, w->conf->application, &q->lease, q->ms0, q->ms1);
}

static struct apg_req *op_new(enum d2o_lease_op op, const struct d2o_lease *l, int64_t ms0,
                              int64_t ms1, worker_lease_op_fn done, void *arg);

static void op_done(struct worker *w, PGresult *r, const char *why, struct apg_req *q)
{
    char err[512] = "";
    int64_t ts_ms = 0;
    int rc;

    if (!r) {
        snprintf(err, sizeof(err), "%s", why ? why : "");
        rc = why ? -EIO : -ECANCELED;
    } else {
        rc = d2o_lease_op_read(w->apg.c, r, q->op, &q->lease, &ts_ms, err, sizeof(err));
    }
    if (q->op == D2O_LEASE_OP_HAND_OVER && rc == D2O_LEASE_E_LOST) {
        /* Not handed over: the lease is gone, or the pending owner is not live. */
        struct apg_req *wd = op_new(D2O_LEASE_OP_WITHDRAW, &q->lease, 0, 0, q->op_done, q->arg);

        if (wd) {
            apg_submit(w, wd);
            op_free(q);
            return;
        }
        rc = -ENOMEM;
        snprintf(err, sizeof(err), "withdrawing a handoff: out of memory");
    } else if (q->op == D2O_LEASE_OP_WITHDRAW && rc == 0) {
        snprintf(err, sizeof(err),
                 "the pending owner of shard %s is not live; the handoff request is withdrawn",
                 q->lease.shard_id);
        rc = D2O_LEASE_E_NOT_LIVE;
    }
    q->op_done(w, q->arg, q->op == D2O_LEASE_OP_WITHDRAW ? D2O_LEASE_OP_HAND_OVER : q->op, rc,
               ts_ms, err);
    op_free(q);
}

static struct apg_req *op_new(enum d2o_lease_op op, const struct d2o_lease *l, int64_t ms0,
                              int64_t ms1, worker_lease_op_fn done, void *arg)
{
    struct apg_req *q = apg_req_new(op_send, op_done, RANK_OTHER);

    if (!q) {
        return NULL;
    }
    q->op = op;
    q->lease.stream = strdup(l->stream);
    q->lease.shard_id = strdup(l->shard_id);
    q->lease.owner = strdup(l->owner ? l->owner : "");
    q->lease.counter = l->counter;
    q->ms0 = ms0;
    q->ms1 = ms1;
    q->op_done = done;
    q->arg = arg;
    if (!q->lease.stream || !q->lease.shard_id || !q->lease.owner) {
        op_free(q);
        free(q);
        return NULL;
    }
    return q;
}

void worker_lease_op_async(struct worker *w, enum d2o_lease_op op, const struct d2o_lease *l,
                           int64_t ms0, int64_t ms1, worker_lease_op_fn done, void *arg)
{
    struct apg_req *q = op_new(op, l, ms0, ms1, done, arg);

    if (!q) {
        done(w, arg, op, -ENOMEM, 0, "out of memory");
        return;
    }
    apg_submit(w, q);
}
