/*
 * One worker process: leases, shard readers, the sink and checkpoints on one event loop.
 * See include/d2o/worker.h for the design.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "d2o/ack.h"
#include "d2o/buf.h"
#include "d2o/bulk.h"
#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/creds.h"
#include "d2o/dlq.h"
#include "d2o/document.h"
#include "d2o/http.h"
#include "d2o/kinesis.h"
#include "d2o/lease.h"
#include "d2o/log.h"
#include "d2o/mem.h"
#include "d2o/metrics.h"
#include "d2o/pg.h"
#include "d2o/rand.h"
#include "d2o/record.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"
#include "d2o/worker.h"
#include "worker_int.h"

/* ---- shards ---- */

enum shard_state {
    S_NEED_ITER = 0, /* no iterator: ask for one when due */
    S_ITER_WAIT,     /* GetShardIterator in flight */
    S_READY,         /* iterator in hand: GetRecords when due */
    S_GET_WAIT,      /* GetRecords in flight */
    S_ENDED,         /* the shard is closed and fully read; finishing */
    S_CONFIRM_END,   /* no NextShardIterator and no ChildShards: ask ListShards whether it is */
};

enum shard_stop {
    STOP_NONE = 0,
    STOP_HANDOFF, /* another worker asked for it: finish the batch, checkpoint, hand over */
    STOP_RELEASE, /* draining: finish, checkpoint, release */
    STOP_LOST,    /* the lease is gone: write nothing more */
    STOP_DONE,    /* finished (handed over, released, ended): free when idle */
};

/* A dead-letter row carried through the ack tracker to the checkpoint transaction. */
struct dlq_item {
    struct d2o_dlq_row row;
    char *strings; /* one allocation for every string and the raw bytes */
    struct d2o_budget *budget;
    size_t cost; /* charged to budget until freed */
};

/* What the sink hands back for one record. The worker keeps every cookie on a list so that
 * none leaks when the process exits with items still in the sink. */
struct rec_cookie {
    struct rec_cookie *prev, *next;
    char *mem; /* the strings and raw bytes below point into it */
    struct shard *sh;
    uint64_t ticket;
    int64_t version;
    bool is_delete;
    const char *seq, *pk, *table, *index, *doc_id;
    const unsigned char *raw;
    size_t raw_len;
    size_t cost; /* charged to the shard's budget until the write is acknowledged */
    /* strings and raw bytes follow the struct */
};

struct shard {
    struct worker *w;
    struct d2o_lease lease; /* owned copy */
    enum shard_state state;
    enum shard_stop stop;
    bool call_in_flight;
    bool op_in_flight;        /* a statement on the asynchronous session (worker_pg.c) */
    int64_t op_not_before_ms; /* after a failed one: the next no sooner */
    char *iterator;
    char *last_seq; /* last record read in this epoch; the iterator refresh starts after it */
    struct d2o_ack *ack;
    struct d2o_budget_acct bud;
    bool warned_ms; /* the MILLISECOND precision warning was logged for this shard */
    /* a DynamoDB stream: versions (d2o_ddbstreams_version) of the last record read, of the
     * record being taken, and of the record the acknowledged prefix ends at */
    bool ver_loaded;
    int64_t stream_ver, cur_ver, commit_ver;
    const char *gone_why; /* why the shard may have left the stream: check the listing */
    bool aged_out;        /* it has: finish it as ended, with a lease_events 'aged_out' */
    int64_t next_get_ms;
    int64_t idle_wait_ms;
    int64_t last_get_ms;
    unsigned err_attempt;
    size_t in_sink; /* cookies held by the sink */
    bool acked;     /* a record was acknowledged since the last shard_collect */
    /* acknowledged, not yet committed */
    char *commit_pos;
    bool commit_dirty;
    void **commit_dlq;
    size_t n_commit_dlq;
    /* the checkpoint on its way (worker_pg.c): its position and how many DLQ rows it carries */
    bool commit_in_flight;
    char *commit_sent_pos;
    size_t commit_sent_dlq;
    int64_t added_ms; /* when the worker took the lease (monotonic) */
    /* progress */
    int64_t millis_behind;
    uint64_t window_records;
    int64_t window_start_ms;
    double records_per_s;
    char **children; /* at SHARD_END: the child shard ids seen (for logs) */
    size_t n_children;
};

static void cookie_keep(struct worker *w, struct rec_cookie *ck)
{
    ck->prev = NULL;
    ck->next = w->cookies;
    if (w->cookies) {
        w->cookies->prev = ck;
    }
    w->cookies = ck;
}

static void cookie_drop(struct worker *w, struct rec_cookie *ck)
{
    if (ck->prev) {
        ck->prev->next = ck->next;
    } else {
        w->cookies = ck->next;
    }
    if (ck->next) {
        ck->next->prev = ck->prev;
    }
    d2o_budget_release(&ck->sh->bud, ck->cost);
    free(ck->mem);
    free(ck);
}

static void dlq_item_free(void *p)
{
    struct dlq_item *d = p;

    if (d) {
        d2o_budget_give(d->budget, d->cost);
        free(d->strings);
        free(d);
    }
}

/* Packs strings into one allocation; NULL inputs become "". */
static char *pack(const char *const *in, size_t n, const void *raw, size_t raw_len,
                  const char **out, const unsigned char **raw_out)
{
    size_t total = raw_len + 1, i;
    char *mem, *p;

    for (i = 0; i < n; i++) {
        total += strlen(in[i] ? in[i] : "") + 1;
    }
    mem = d2o_malloc(total);
    if (!mem) {
        return NULL;
    }
    p = mem;
    for (i = 0; i < n; i++) {
        size_t l = strlen(in[i] ? in[i] : "");

        memcpy(p, in[i] ? in[i] : "", l + 1);
        out[i] = p;
        p += l + 1;
    }
    if (raw_len) {
        memcpy(p, raw, raw_len);
    }
    p[raw_len] = '\0';
    *raw_out = (const unsigned char *)p;
    return mem;
}

static struct dlq_item *dlq_item_new(const struct shard *sh, const char *seq, const char *pk,
                                     const char *table, const char *index, const char *doc_id,
                                     int64_t version, const void *raw, size_t raw_len,
                                     const char *error_class, int status, const char *message,
                                     unsigned attempts, int64_t first_us, int64_t last_us)
{
    struct dlq_item *d = d2o_calloc(1, sizeof(*d));
    const char *in[8] = {sh->lease.stream, sh->lease.shard_id, seq, pk, table, index,
                         doc_id,           error_class},
               *out[9];
    const char *in2[9];
    const unsigned char *rawp;
    int i;

    if (!d) {
        return NULL;
    }
    for (i = 0; i < 8; i++) {
        in2[i] = in[i];
    }
    in2[8] = message;
    d->strings = pack(in2, 9, raw, raw_len, out, &rawp);
    if (!d->strings) {
        free(d);
        return NULL;
    }
    d->row.stream = out[0];
    d->row.shard_id = out[1];
    d->row.sequence_number = out[2];
    d->row.partition_key = out[3];
    d->row.table_name = out[4];
    d->row.index_name = out[5];
    d->row.doc_id = out[6];
    d->row.error_class = out[7];
    d->row.error_message = out[8];
    d->row.version = version;
    d->row.raw = rawp;
    d->row.raw_len = raw_len;
    d->row.http_status = status;
    d->row.attempts = (int)attempts;
    d->row.first_failed_us = first_us;
    d->row.last_failed_us = last_us;
    d->budget = &sh->w->budget;
    d->cost = sizeof(*d) + raw_len + strlen(message) + 512;
    d2o_budget_take(d->budget, d->cost);
    return d;
}

static int lease_copy(struct d2o_lease *dst, const struct d2o_lease *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->stream = strdup(src->stream);
    dst->shard_id = strdup(src->shard_id);
    dst->owner = strdup(src->owner ? src->owner : "");
    dst->checkpoint = strdup(src->checkpoint);
    dst->pending_owner = src->pending_owner ? strdup(src->pending_owner) : NULL;
    dst->counter = src->counter;
    dst->checkpoint_ts_ms = src->checkpoint_ts_ms;
    if (!dst->stream || !dst->shard_id || !dst->owner || !dst->checkpoint ||
        (src->pending_owner && !dst->pending_owner)) {
        return -ENOMEM;
    }
    return 0;
}

static void shard_free(struct shard *sh)
{
    size_t i;

    free(sh->lease.stream);
    free(sh->lease.shard_id);
    free(sh->lease.owner);
    free(sh->lease.checkpoint);
    free(sh->lease.pending_owner);
    free(sh->iterator);
    free(sh->last_seq);
    d2o_ack_free(sh->ack, dlq_item_free);
    free(sh->commit_pos);
    free(sh->commit_sent_pos);
    for (i = 0; i < sh->n_commit_dlq; i++) {
        dlq_item_free(sh->commit_dlq[i]);
    }
    free(sh->commit_dlq);
    for (i = 0; i < sh->n_children; i++) {
        free(sh->children[i]);
    }
    free(sh->children);
    d2o_budget_leave(&sh->bud);
    free(sh);
}

static struct shard *shard_find(struct worker *w, const char *shard_id)
{
    size_t i;

    for (i = 0; i < w->n_shards; i++) {
        if (w->shards[i]->stop != STOP_DONE && w->shards[i]->stop != STOP_LOST &&
            strcmp(w->shards[i]->lease.shard_id, shard_id) == 0) {
            return w->shards[i];
        }
    }
    return NULL;
}

static int shard_add(struct worker *w, const struct d2o_lease *l, const char *how)
{
    struct shard *sh = calloc(1, sizeof(*sh));

    if (!sh) {
        return -ENOMEM;
    }
    if (w->n_shards == w->cap_shards) {
        size_t cap = w->cap_shards ? w->cap_shards * 2 : 16;
        struct shard **grown = realloc(w->shards, cap * sizeof(*grown));

        if (!grown) {
            free(sh);
            return -ENOMEM;
        }
        w->shards = grown;
        w->cap_shards = cap;
    }
    sh->w = w;
    d2o_budget_join(&w->budget, &sh->bud);
    sh->ack = d2o_ack_new();
    if (!sh->ack || lease_copy(&sh->lease, l) < 0) {
        shard_free(sh);
        return -ENOMEM;
    }
    sh->millis_behind = -1;
    sh->idle_wait_ms = w->conf->poll_min_ms;
    sh->window_start_ms = d2o_mono_ms();
    sh->added_ms = sh->window_start_ms;
    w->shards[w->n_shards++] = sh;
    D2O_LOG_(D2O_LOG_INFO, D2O_CAT_LEASE, sh->lease.shard_id, "lease_acquired",
             "%s the lease (epoch %" PRId64 "), starting at %s", how, l->counter, l->checkpoint);
    if (w->m) {
        d2o_metrics_shard_set(w->m, sh->lease.shard_id, -1, 0);
    }
    return 0;
}

static size_t shards_active(const struct worker *w)
{
    size_t i, n = 0;

    for (i = 0; i < w->n_shards; i++) {
        n += w->shards[i]->stop == STOP_NONE;
    }
    return n;
}

int worker_shards_held(const struct worker *w)
{
    return (int)shards_active(w);
}

static void shard_lost(struct shard *sh, const char *why)
{
    if (sh->stop == STOP_LOST || sh->stop == STOP_DONE) {
        return;
    }
    D2O_LOG_(D2O_LOG_WARN, D2O_CAT_LEASE, sh->lease.shard_id, "lease_lost",
             "stopped working the shard: %s", why);
    sh->stop = STOP_LOST;
    /* Write nothing more: the shard's queued and retrying items leave the sink before its next
     * request (worker_keep_item refuses them). */
    d2o_bulk_recheck(sh->w->sink);
    if (sh->w->m) {
        d2o_metrics_gauge(&sh->w->m->leases_held, (int64_t)shards_active(sh->w));
        d2o_metrics_add(sh->w->m, D2O_M_LEASES_LOST, 1);
    }
}

/* ---- reading ---- */

static void on_records(int rc, struct d2o_kinesis_records *res, const struct d2o_kinesis_err *err,
                       void *arg);

/*
 * A sequence-number checkpoint that Kinesis will not start an open shard from (set by hand to a
 * number of another shard, say) is not retried in silence: the log names it and the command that
 * repairs it. Returns whether the checkpoint is a sequence number.
 */
static bool report_bad_checkpoint(const struct shard *sh, const char *why)
{
    const char *cp = sh->lease.checkpoint;

    if (!cp || cp[0] < '0' || cp[0] > '9') {
        return false;
    }
    D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_KINESIS, sh->lease.shard_id, "bad_checkpoint",
             "Kinesis will not start shard %s at its checkpoint %s (%s); set a position it "
             "accepts with 'ddb2os checkpoint set %s --at TRIM_HORIZON|LATEST|SEQUENCE'",
             sh->lease.shard_id, cp, why, sh->lease.shard_id);
    return true;
}

/*
 * DynamoDB Streams: the records after the checkpoint are past the stream's 24 hours. They are
 * lost to this reader; what is left of the shard starts at TRIM_HORIZON. Returns false when the
 * shard was already there (then it is an error like any other).
 */
static bool restart_trimmed(struct shard *sh, const char *why)
{
    char *th;

    if (!sh->last_seq && strcmp(sh->lease.checkpoint, "TRIM_HORIZON") == 0) {
        return false;
    }
    th = strdup("TRIM_HORIZON");
    if (!th) {
        return false;
    }
    D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_KINESIS, sh->lease.shard_id, "records_trimmed",
             "records after %s are past the stream's retention and cannot be read; going on "
             "from the oldest record left (%s)",
             sh->last_seq ? sh->last_seq : sh->lease.checkpoint, why);
    free(sh->last_seq);
    sh->last_seq = NULL;
    free(sh->lease.checkpoint);
    sh->lease.checkpoint = th;
    return true;
}

static void on_iterator(int rc, char *iterator, const struct d2o_kinesis_err *err, void *arg)
{
    struct shard *sh = arg;
    struct worker *w = sh->w;
    int64_t now = d2o_mono_ms();

    sh->call_in_flight = false;
    if ((rc == 0 && !iterator) ||
        (rc == D2O_KINESIS_E_FAILED && strcmp(err->code, "ResourceNotFoundException") == 0)) {
        /* Either is the end of the shard if it has left the stream; the listing tells. */
        sh->gone_why = rc == 0 ? "GetShardIterator returned no iterator"
                               : "GetShardIterator: ResourceNotFoundException";
        sh->state = S_NEED_ITER;
        sh->next_get_ms = now;
        return;
    }
    if (rc == 0) {
        free(sh->iterator);
        sh->iterator = iterator;
        sh->state = S_READY;
        sh->err_attempt = 0;
        sh->next_get_ms = now;
        return;
    }
    free(iterator);
    sh->state = S_NEED_ITER;
    if (rc == D2O_KINESIS_E_FAILED && strcmp(err->code, "TrimmedDataAccessException") == 0 &&
        restart_trimmed(sh, err->message)) {
        sh->next_get_ms = now;
        return;
    }
    if (rc == D2O_KINESIS_E_FAILED && strcmp(err->code, "InvalidArgumentException") == 0) {
        report_bad_checkpoint(sh, err->message);
    }
    worker_kinesis_error(w, sh->lease.shard_id, "GetShardIterator", rc, err, &sh->err_attempt,
                         &sh->next_get_ms);
}

/*
 * After ResourceNotFoundException or no iterator from GetShardIterator: a shard that the stream
 * no longer lists has aged out of retention, and one that is listed as closed gave no iterator
 * because nothing is left to read. Both are its end, as KCL takes them. A stream that does not
 * exist is not: that stays an error the operator sees, and the lease stays. So does an open
 * shard without an iterator.
 */
static void gone_listed(void *arg, int r, bool listed, bool closed,
                        const struct d2o_kinesis_err *kerr)
{
    struct shard *sh = arg;
    struct worker *w = sh->w;
    struct d2o_kinesis_err err = *kerr;

    sh->call_in_flight = false;
    if (r == D2O_KINESIS_E_FAILED && strcmp(err.code, "ResourceNotFoundException") == 0 &&
        worker_source_superseded(w, sh->lease.stream)) {
        /* A DynamoDB stream disabled more than 24 hours ago: what was not read is gone. */
        D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_KINESIS, sh->lease.shard_id, "stream_gone",
                 "stream %s no longer exists (%s) and the table has a newer stream: its changes "
                 "after checkpoint %s are past the stream's retention; finishing the shard as "
                 "aged out",
                 sh->lease.stream, err.message, sh->lease.checkpoint);
        sh->aged_out = true;
        sh->gone_why = NULL;
        sh->state = S_ENDED;
        return;
    }
    if (r == D2O_KINESIS_E_FAILED && strcmp(err.code, "ResourceNotFoundException") == 0) {
        int64_t wait = d2o_backoff_ms(1000, 30000, sh->err_attempt++);

        D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_KINESIS, sh->lease.shard_id, "stream_not_found",
                 "stream %s does not exist (%s); keeping the lease, trying again in %" PRId64 " ms",
                 sh->lease.stream, err.message, wait);
        sh->gone_why = NULL; /* ask for an iterator again: the stream may come back */
        sh->next_get_ms = d2o_mono_ms() + wait;
        return;
    }
    if (r != 0) {
        worker_kinesis_error(w, sh->lease.shard_id, "ListShards", r, &err, &sh->err_attempt,
                             &sh->next_get_ms);
        return;
    }
    if (!listed || closed) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_KINESIS, sh->lease.shard_id,
                 listed ? "shard_end" : "shard_aged_out",
                 "%s and the stream %s; taking it as the end of the shard, at checkpoint %s",
                 sh->gone_why, listed ? "lists it as closed" : "no longer lists it",
                 sh->lease.checkpoint);
        sh->aged_out = !listed;
        sh->gone_why = NULL;
        sh->state = S_ENDED;
        return;
    }
    if (!report_bad_checkpoint(sh, sh->gone_why)) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_KINESIS, sh->lease.shard_id, "iterator_missing",
                 "%s but the shard is open; trying again", sh->gone_why);
    }
    sh->gone_why = NULL;
    sh->next_get_ms = d2o_mono_ms() + d2o_backoff_ms(1000, 30000, sh->err_attempt++);
}

static void check_gone(struct shard *sh)
{
    if (worker_shard_listed_async(sh->w, sh->lease.stream, sh->lease.shard_id, gone_listed, sh) <
        0) {
        sh->next_get_ms = d2o_mono_ms() + 1000;
        return;
    }
    sh->call_in_flight = true;
}

/* A DynamoDB stream's start version (worker_source_start_version_async) has come. */
static void version_loaded(struct worker *w, void *arg, int rc, int64_t ver, const char *err)
{
    struct shard *sh = arg;

    sh->op_in_flight = false;
    if (rc < 0) {
        if (rc != -ECANCELED) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, sh->lease.shard_id, "pg_error", "%s", err);
        }
        sh->next_get_ms = d2o_mono_ms() + 1000;
        return;
    }
    sh->stream_ver = ver;
    sh->ver_loaded = true;
    /* what the checkpoint stands at: stored again with SHARD_END even if the shard held no
     * record, so that its children go on from it */
    sh->commit_ver = sh->stream_ver;
    sh->next_get_ms = d2o_mono_ms();
    (void)w;
}

/* LATEST stored as AT_TIMESTAMP at the database's clock (d2o_lease_op RESOLVE_LATEST). */
static void latest_resolved(struct worker *w, void *arg, enum d2o_lease_op op, int rc,
                            int64_t ts_ms, const char *err)
{
    struct shard *sh = arg;
    char *at;

    (void)w;
    (void)op;
    sh->op_in_flight = false;
    if (rc == D2O_LEASE_E_LOST) {
        shard_lost(sh, err);
        return;
    }
    if (rc < 0) {
        if (rc != -ECANCELED) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, sh->lease.shard_id, "pg_error", "%s", err);
        }
        sh->next_get_ms = d2o_mono_ms() + 1000;
        return;
    }
    at = strdup("AT_TIMESTAMP");
    if (!at) {
        shard_lost(sh, "out of memory");
        return;
    }
    free(sh->lease.checkpoint);
    sh->lease.checkpoint = at;
    sh->lease.checkpoint_ts_ms = ts_ms;
    D2O_LOG_(D2O_LOG_INFO, D2O_CAT_KINESIS, sh->lease.shard_id, "latest_resolved",
             "initial position LATEST stored as AT_TIMESTAMP %" PRId64 " ms", ts_ms);
    sh->next_get_ms = d2o_mono_ms(); /* the iterator now */
}

static void start_iterator(struct shard *sh)
{
    struct worker *w = sh->w;
    struct d2o_kinesis_iter_spec spec = {0};
    const char *cp = sh->lease.checkpoint;
    int r;

    if (!sh->ver_loaded) {
        /* On the asynchronous session: the iterator comes on a later turn. */
        sh->op_in_flight = true;
        r = worker_source_start_version_async(w, &sh->lease, version_loaded, sh);
        if (r <= 0) {
            sh->op_in_flight = false;
            if (r < 0) {
                sh->next_get_ms = d2o_mono_ms() + 1000;
                return;
            }
            sh->ver_loaded = true; /* no version to load (Kinesis) */
            sh->stream_ver = sh->commit_ver = 0;
        } else {
            return;
        }
    }
    if (sh->last_seq) {
        spec.type = D2O_ITER_AFTER_SEQUENCE_NUMBER;
        spec.sequence_number = sh->last_seq;
    } else if (strcmp(cp, "TRIM_HORIZON") == 0) {
        spec.type = D2O_ITER_TRIM_HORIZON;
    } else if (strcmp(cp, "LATEST") == 0) {
        /* Resolved and stored first, on the asynchronous session: a refresh or the next owner
         * starts from the same place. The iterator comes on a later turn. */
        sh->op_in_flight = true;
        worker_lease_op_async(w, D2O_LEASE_OP_RESOLVE_LATEST, &sh->lease, 0, 0, latest_resolved,
                              sh);
        return;
    } else if (strcmp(cp, "AT_TIMESTAMP") == 0) {
        spec.type = D2O_ITER_AT_TIMESTAMP;
        spec.timestamp_ms = sh->lease.checkpoint_ts_ms;
    } else if (strcmp(cp, "SHARD_END") == 0) {
        sh->state = S_ENDED;
        return;
    } else {
        spec.type = D2O_ITER_AFTER_SEQUENCE_NUMBER;
        spec.sequence_number = cp;
    }
    r = d2o_kinesis_get_shard_iterator_async(w->kin, sh->lease.stream, sh->lease.shard_id, &spec,
                                             on_iterator, sh);
    if (r < 0) {
        sh->next_get_ms = d2o_mono_ms() + 1000;
        return;
    }
    sh->call_in_flight = true;
    sh->state = S_ITER_WAIT;
}

static bool held_back(const struct shard *sh)
{
    const struct worker *w = sh->w;

    return d2o_ack_pending(sh->ack) >= (size_t)w->conf->max_pending_records ||
           d2o_bulk_pending_bytes(w->sink) >= w->max_sink_bytes;
}

/* Whether the shard's next GetRecords must wait: too many records held, or no room in the
 * memory budget for what the call can return. */
static bool backpressure(const struct shard *sh)
{
    return held_back(sh) || d2o_budget_limit(&sh->bud, (size_t)sh->w->conf->get_records_limit) == 0;
}

/* Starts the shard's GetRecords with the Limit the memory budget has room for, or queues the
 * shard for room. */
static void start_get(struct shard *sh, int64_t now)
{
    struct worker *w = sh->w;
    size_t limit =
        held_back(sh) ? 0 : d2o_budget_limit(&sh->bud, (size_t)w->conf->get_records_limit);
    size_t cap;
    int r;

    if (limit == 0) {
        if (held_back(sh)) {
            d2o_budget_unwait(&sh->bud);
        } else {
            d2o_budget_wait(&sh->bud, (size_t)w->conf->get_records_limit);
        }
        return;
    }
    cap = d2o_budget_reserve(&sh->bud, limit);
    r = d2o_kinesis_get_records_capped_async(w->kin, sh->iterator, (int)limit, cap, on_records, sh);
    if (r < 0) {
        d2o_budget_call_done(&sh->bud);
        sh->next_get_ms = now + 1000;
        return;
    }
    sh->call_in_flight = true;
    sh->state = S_GET_WAIT;
    /* the call's own start, not the turn's: the next one is poll_min_ms after it, so a shard
     * never sees more than 1000 / poll_min_ms calls in any second */
    sh->last_get_ms = d2o_mono_ms();
    D2O_LOG_(D2O_LOG_DEBUG, D2O_CAT_KINESIS, sh->lease.shard_id, "get_records_call",
             "GetRecords, Limit %zu (memory budget: %zu of %zu bytes in use)", limit,
             w->budget.used, w->budget.total);
}

/*
 * GetRecords answered without a NextShardIterator and without ChildShards. That is not the
 * end of the shard by itself (KCL reads such a shard again): ListShards decides. A shard that
 * is listed as closed, or no longer listed, has ended (its children's rows come from
 * discovery); an open one is read again after the last record taken.
 */
static void end_listed(void *arg, int r, bool listed, bool closed,
                       const struct d2o_kinesis_err *kerr)
{
    struct shard *sh = arg;
    struct worker *w = sh->w;
    int64_t now = d2o_mono_ms();

    sh->call_in_flight = false;
    if (r != 0) {
        worker_kinesis_error(w, sh->lease.shard_id, "ListShards", r, kerr, &sh->err_attempt,
                             &sh->next_get_ms);
        return;
    }
    if (listed && !closed) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_KINESIS, sh->lease.shard_id, "iterator_missing",
                 "GetRecords gave no next iterator and no child shards, but the shard is open; "
                 "reading it again after %s",
                 sh->last_seq ? sh->last_seq : sh->lease.checkpoint);
        sh->state = S_NEED_ITER;
        sh->next_get_ms = now + d2o_backoff_ms(w->conf->poll_min_ms, 10000, sh->err_attempt++);
    } else {
        sh->state = S_ENDED;
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_KINESIS, sh->lease.shard_id, "shard_end",
                 "read to the end of the shard (%s; child shards from discovery); finishing",
                 listed ? "closed" : "no longer listed");
    }
}

static void confirm_end(struct shard *sh, int64_t now)
{
    if (worker_shard_listed_async(sh->w, sh->lease.stream, sh->lease.shard_id, end_listed, sh) <
        0) {
        sh->next_get_ms = now + 1000;
        return;
    }
    sh->call_in_flight = true;
}

/* Moves one shard forward if it is due. */
static void shard_step(struct shard *sh, int64_t now)
{
    if (sh->stop != STOP_NONE || sh->call_in_flight || sh->op_in_flight || now < sh->next_get_ms) {
        if (sh->stop != STOP_NONE) {
            d2o_budget_unwait(&sh->bud);
        }
        return;
    }
    switch (sh->state) {
    case S_NEED_ITER:
        if (sh->gone_why) {
            check_gone(sh);
        } else {
            start_iterator(sh);
        }
        break;
    case S_READY:
        start_get(sh, now);
        break;
    case S_CONFIRM_END:
        confirm_end(sh, now);
        break;
    default:
        break;
    }
}

/* A record that makes no write, or goes straight to the DLQ: acknowledged at once. */
static int ack_now(struct shard *sh, const char *seq, struct dlq_item *d)
{
    uint64_t ticket;

    if (d2o_ack_push_tagged(sh->ack, seq, sh->cur_ver, &ticket) < 0) {
        dlq_item_free(d);
        return -ENOMEM;
    }
    if (d2o_ack_complete(sh->ack, ticket, d) < 0) {
        dlq_item_free(d);
        (void)d2o_ack_unpush(sh->ack, ticket);
        return -EIO;
    }
    sh->acked = true;
    return 0;
}

/* A record that cannot become a document goes to the dead-letter queue whole, acknowledged at
 * once, so the shard moves on and nothing is lost. */
static int refuse_record(struct shard *sh, const struct d2o_kinesis_record *kr, const char *table,
                         const char *error_class, const char *why)
{
    int64_t now_us = d2o_wall_us();
    struct dlq_item *d =
        dlq_item_new(sh, kr->sequence_number, kr->partition_key, table, "", "", sh->cur_ver,
                     kr->data, kr->data_len, error_class, 0, why, 0, now_us, now_us);
    int r;

    if (!d) {
        /* Never acknowledged without its row: the record is read again. */
        return -ENOMEM;
    }
    r = ack_now(sh, kr->sequence_number, d);
    if (r == 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_DLQ, sh->lease.shard_id, "record_refused",
                 "record %s to the dead-letter queue: %s", kr->sequence_number, why);
        if (sh->w->m) {
            d2o_metrics_add(sh->w->m, D2O_M_DOCS_DLQ, 1);
        }
    }
    return r;
}

static int take_record(struct shard *sh, const struct d2o_kinesis_record *kr)
{
    struct worker *w = sh->w;
    struct d2o_record rec;
    struct d2o_doc_op op;
    char err[512];
    int r;

    r = d2o_record_parse((const char *)kr->data, kr->data_len, &rec, err, sizeof(err));
    if (r == -ENOMEM) {
        return r;
    }
    if (r < 0) {
        return refuse_record(sh, kr, "", D2O_RECORD_ERROR_CLASS, err);
    }
    if (rec.precision == D2O_PRECISION_MILLISECOND && !sh->warned_ms) {
        sh->warned_ms = true;
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_KINESIS, sh->lease.shard_id, "millisecond_precision",
                 "records of table %s carry a millisecond ApproximateCreationDateTime: two "
                 "changes of one item in the same millisecond tie, and OpenSearch keeps the one "
                 "it gets first. Set ApproximateCreationDateTimePrecision to MICROSECOND on the "
                 "table's Kinesis streaming destination",
                 rec.table);
    }
    r = sh->cur_ver ? d2o_doc_build_at(&rec, w->conf, sh->cur_ver, &op, err, sizeof(err))
                    : d2o_doc_build(&rec, w->conf, &op, err, sizeof(err));
    if (r == -ENOMEM) {
        d2o_record_free(&rec);
        return r;
    }
    if (r < 0) {
        r = refuse_record(sh, kr, rec.table, D2O_DOCUMENT_ERROR_CLASS, err);
        d2o_record_free(&rec);
        return r;
    }
    if (op.action == D2O_DOC_SKIP) {
        if (w->m) {
            d2o_metrics_add(w->m, D2O_M_DOCS_SKIPPED, 1);
        }
        r = ack_now(sh, kr->sequence_number, NULL);
    } else {
        const char *in[5] = {kr->sequence_number, kr->partition_key, rec.table, op.index, op.id};
        const char *out[5];
        const unsigned char *rawp;
        struct rec_cookie *ck = d2o_malloc(sizeof(*ck));
        struct d2o_bulk_item item = {0};
        char *mem = NULL;

        if (ck) {
            mem = pack(in, 5, kr->data, kr->data_len, out, &rawp);
        }
        if (!ck || !mem) {
            free(ck);
            d2o_doc_op_free(&op);
            d2o_record_free(&rec);
            return -ENOMEM;
        }
        ck->mem = mem;
        ck->sh = sh;
        ck->version = op.version;
        ck->is_delete = op.action == D2O_DOC_DELETE;
        ck->seq = out[0];
        ck->pk = out[1];
        ck->table = out[2];
        ck->index = out[3];
        ck->doc_id = out[4];
        ck->raw = rawp;
        ck->raw_len = kr->data_len;
        ck->cost = d2o_budget_record_cost(kr->data_len, op.ndjson.len);
        r = d2o_ack_push_tagged(sh->ack, kr->sequence_number, sh->cur_ver, &ck->ticket);
        item.ndjson = op.ndjson.data;
        item.len = op.ndjson.len;
        item.index = op.index;
        item.id = op.id;
        item.is_delete = op.action == D2O_DOC_DELETE;
        item.cookie = ck;
        item.version = op.version;
        if (r == 0) {
            uint64_t ticket = ck->ticket;

            cookie_keep(w, ck);
            d2o_budget_charge(&sh->bud, ck->cost);
            r = d2o_bulk_add_item(w->sink, &item);
            if (r == 0) {
                sh->in_sink++;
            } else {
                /* Not in the sink: take the record back, so it neither blocks the checkpoint
                 * nor is skipped; it is read again. */
                cookie_drop(w, ck);
                (void)d2o_ack_unpush(sh->ack, ticket);
            }
        } else {
            free(mem);
            free(ck);
        }
    }
    d2o_doc_op_free(&op);
    d2o_record_free(&rec);
    return r;
}

/* ddb2os_pending_records: the records of every shard read and not yet checkpointed. */
static void publish_pending(struct worker *w)
{
    size_t i, pending = 0;

    for (i = 0; i < w->n_shards; i++) {
        pending += d2o_ack_pending(w->shards[i]->ack);
    }
    d2o_metrics_gauge(&w->m->pending_records, (int64_t)pending);
}

static void on_records(int rc, struct d2o_kinesis_records *res, const struct d2o_kinesis_err *err,
                       void *arg)
{
    struct shard *sh = arg;
    struct worker *w = sh->w;
    int64_t now = d2o_mono_ms();
    size_t i, max_len = 0;

    sh->call_in_flight = false;
    d2o_budget_call_done(&sh->bud);
    if (rc == D2O_KINESIS_E_FAILED && err->curl_code == CURLE_FILESIZE_EXCEEDED) {
        /* Larger records than planned for: ask again with the largest record assumed. */
        D2O_LOG_(D2O_LOG_DEBUG, D2O_CAT_KINESIS, sh->lease.shard_id, "get_records_capped",
                 "the answer passed the memory budget's cap; asking again for fewer records");
        d2o_budget_too_big(&sh->bud);
        sh->state = S_READY;
        sh->next_get_ms = sh->last_get_ms + w->conf->poll_min_ms; /* it was a call all the same */
        d2o_kinesis_records_free(res);
        return;
    }
    if (rc != 0) {
        if (w->m && rc != -ECANCELED) {
            d2o_metrics_add(w->m, D2O_M_GETRECORDS_ERRORS, 1);
        }
        if (rc == D2O_KINESIS_E_FAILED && err->action == D2O_ACT_REFRESH_ITERATOR) {
            D2O_LOG_(D2O_LOG_INFO, D2O_CAT_KINESIS, sh->lease.shard_id, "iterator_expired",
                     "the shard iterator expired; getting a new one after %s",
                     sh->last_seq ? sh->last_seq : sh->lease.checkpoint);
            sh->state = S_NEED_ITER;
            sh->next_get_ms = now;
        } else {
            sh->state = S_READY;
            worker_kinesis_error(w, sh->lease.shard_id, "GetRecords", rc, err, &sh->err_attempt,
                                 &sh->next_get_ms);
        }
        d2o_kinesis_records_free(res);
        return;
    }
    sh->err_attempt = 0;
    for (i = 0; i < res->n_records; i++) {
        max_len = res->records[i].data_len > max_len ? res->records[i].data_len : max_len;
    }
    d2o_budget_saw(&sh->bud, max_len);
    D2O_LOG_(D2O_LOG_DEBUG, D2O_CAT_KINESIS, sh->lease.shard_id, "get_records",
             "%zu records in %" PRId64 " ms, %" PRId64 " ms behind the tip%s", res->n_records,
             now - sh->last_get_ms, res->millis_behind_latest,
             res->next_iterator ? "" : ", shard closed");
    if (w->m) {
        d2o_metrics_kinesis(w->m, now, NULL);
        d2o_metrics_add(w->m, D2O_M_GETRECORDS_CALLS, 1);
    }
    /* Records that arrive after the lease is gone are dropped: the next owner reads them. */
    for (i = 0; i < res->n_records && sh->stop != STOP_LOST; i++) {
        const struct d2o_kinesis_record *kr = &res->records[i];
        char *seq = d2o_strdup(kr->sequence_number);

        sh->cur_ver = worker_source_version(w, sh->stream_ver, kr);
        if (!seq || take_record(sh, kr) < 0) {
            /* Out of memory: read again after the last record taken. */
            D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_GENERAL, sh->lease.shard_id, "out_of_memory",
                     "cannot take record %s; reading it again later", kr->sequence_number);
            free(seq);
            break;
        }
        free(sh->last_seq);
        sh->last_seq = seq;
        sh->stream_ver = sh->cur_ver;
        sh->window_records++;
    }
    if (w->m) {
        /* The records are pending before they count as read: a reader of /metrics never sees
         * them read and nothing pending while they are still on their way to OpenSearch. */
        publish_pending(w);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        d2o_metrics_add(w->m, D2O_M_RECORDS_READ, res->n_records);
    }
    if (i < res->n_records) {
        sh->state = S_NEED_ITER;
        sh->next_get_ms = now + 1000;
    } else if (!res->next_iterator && res->n_children == 0) {
        sh->state = S_CONFIRM_END;
        sh->next_get_ms = now;
    } else if (!res->next_iterator) {
        size_t c;

        sh->state = S_ENDED;
        sh->children = calloc(res->n_children ? res->n_children : 1, sizeof(char *));
        for (c = 0; sh->children && c < res->n_children; c++) {
            sh->children[sh->n_children] = strdup(res->children[c].shard_id);
            sh->n_children += sh->children[sh->n_children] != NULL;
        }
        worker_ensure_children(w, sh->lease.stream, res->children, res->n_children);
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_KINESIS, sh->lease.shard_id, "shard_end",
                 "read to the end of the shard (%zu child shards); finishing", res->n_children);
    } else {
        free(sh->iterator);
        sh->iterator = res->next_iterator;
        res->next_iterator = NULL;
        sh->state = S_READY;
        sh->millis_behind = res->millis_behind_latest;
        if (res->n_records == 0 && res->millis_behind_latest <= 0) {
            /* idle and caught up: wait longer each time, up to poll_idle_max_ms */
            sh->idle_wait_ms = sh->idle_wait_ms * 2 > w->conf->poll_idle_max_ms
                                   ? w->conf->poll_idle_max_ms
                                   : sh->idle_wait_ms * 2;
            sh->next_get_ms = now + sh->idle_wait_ms;
        } else {
            sh->idle_wait_ms = w->conf->poll_min_ms;
            sh->next_get_ms = sh->last_get_ms + w->conf->poll_min_ms;
        }
    }
    if (w->m && sh->stop == STOP_NONE) {
        d2o_metrics_shard_set(w->m, sh->lease.shard_id, sh->millis_behind, res->n_records);
    }
    d2o_kinesis_records_free(res);
}

/* ---- the sink's answers ---- */

bool worker_keep_item(void *cookie, void *arg)
{
    const struct rec_cookie *ck = cookie;
    const struct worker *w = arg;

    /* The monotonic fence too: a request that starts after it carries nothing. */
    return ck->sh->stop != STOP_LOST && ck->sh->stop != STOP_DONE &&
           d2o_mono_ms() < w->leases_valid_until;
}

void worker_on_bulk_done(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    struct worker *w = arg;
    struct rec_cookie *ck = cookie;
    struct shard *sh = ck->sh;
    struct dlq_item *d = NULL;
    enum d2o_metric_counter mc = D2O_M_DOCS_INDEXED;

    sh->in_sink--;
    if (res->outcome == D2O_BULK_DROPPED) {
        /* never written; the next owner of the lease writes it */
        cookie_drop(w, ck);
        return;
    }
    switch (res->outcome) {
    case D2O_BULK_DONE:
        mc = ck->is_delete ? D2O_M_DOCS_DELETED : D2O_M_DOCS_INDEXED;
        break;
    case D2O_BULK_STALE:
        mc = D2O_M_DOCS_STALE;
        break;
    case D2O_BULK_ABSENT:
        mc = D2O_M_DOCS_ABSENT;
        break;
    case D2O_BULK_DROPPED:
        break;
    case D2O_BULK_DLQ:
        mc = D2O_M_DOCS_DLQ;
        d = dlq_item_new(sh, ck->seq, ck->pk, ck->table, ck->index, ck->doc_id, ck->version,
                         ck->raw, ck->raw_len, res->error_class, res->status,
                         res->error_message ? res->error_message : "", res->attempts,
                         res->first_failed_us, res->last_failed_us);
        break;
    }
    if (w->m) {
        d2o_metrics_add(w->m, mc, 1);
        if (res->outcome != D2O_BULK_DLQ) {
            /* OpenSearch holds this change or a newer one: its latency ends here. */
            d2o_metrics_observe_change(w->m, ck->version, d2o_wall_us());
        }
    }
    if (sh->stop != STOP_LOST && sh->stop != STOP_DONE) {
        if (res->outcome == D2O_BULK_DLQ && !d) {
            /* No memory for the row: the checkpoint must not pass the record. */
            shard_lost(sh, "out of memory for a dead-letter row; the next owner retries");
        } else if (d2o_ack_complete(sh->ack, ck->ticket, d) < 0) {
            dlq_item_free(d);
        } else {
            sh->acked = true;
        }
    } else {
        dlq_item_free(d);
    }
    cookie_drop(w, ck);
}

void worker_on_bulk_answer(int64_t total_us, long status, void *arg)
{
    struct worker *w = arg;

    if (w->m && total_us >= 0) {
        d2o_metrics_observe(w->m, D2O_H_BULK_LATENCY, total_us);
        d2o_metrics_add(w->m, D2O_M_BULK_REQUESTS, 1);
    }
    if (status > 0 && status < 500) {
        w->m_opensearch_ok = true;
        w->os_ok_ms = d2o_mono_ms();
    }
}

/* ---- checkpoints ---- */

static void shard_collect(struct shard *sh)
{
    void **payloads = NULL;
    size_t n = 0;
    int64_t popped;

    sh->acked = false;
    popped = d2o_ack_advance(sh->ack, &sh->commit_pos, &payloads, &n);
    if (popped <= 0) {
        sh->acked = popped < 0; /* out of memory: tried again next turn */
        return;
    }
    sh->commit_ver = d2o_ack_last_tag(sh->ack);
    if (n) {
        void **grown = d2o_realloc(sh->commit_dlq, (sh->n_commit_dlq + n) * sizeof(*grown));

        if (!grown) {
            size_t i;

            for (i = 0; i < n; i++) {
                dlq_item_free(payloads[i]);
            }
            free(payloads);
            shard_lost(sh, "out of memory for dead-letter rows; the next owner retries");
            return;
        }
        memcpy(grown + sh->n_commit_dlq, payloads, n * sizeof(*grown));
        sh->commit_dlq = grown;
        sh->n_commit_dlq += n;
    }
    sh->commit_dirty = true;
    free(payloads);
}

/* A checkpoint of the shard's last batch was committed with the DLQ rows it carried. */
static void shard_committed(struct shard *sh)
{
    struct worker *w = sh->w;
    size_t i, sent = sh->commit_sent_dlq;

    if (w->m) {
        d2o_metrics_add(w->m, D2O_M_CHECKPOINTS, 1);
        d2o_metrics_add(w->m, D2O_M_DLQ_WRITES, sent);
    }
    if (sent) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_DLQ, sh->lease.shard_id, "dlq_written",
                 "%zu records stored in the dead-letter queue with checkpoint %s", sent,
                 sh->commit_sent_pos);
    }
    for (i = 0; i < sent; i++) {
        dlq_item_free(sh->commit_dlq[i]);
    }
    if (sh->n_commit_dlq > sent) { /* rows added while the statement was on its way */
        memmove(sh->commit_dlq, sh->commit_dlq + sent, (sh->n_commit_dlq - sent) * sizeof(void *));
    }
    sh->n_commit_dlq -= sent;
    free(sh->lease.checkpoint);
    sh->lease.checkpoint = sh->commit_sent_pos;
    sh->commit_sent_pos = NULL;
    /* What was acknowledged while the statement was on its way goes with the next one. */
    sh->commit_dirty = sh->n_commit_dlq > 0 || strcmp(sh->commit_pos, sh->lease.checkpoint) != 0;
    D2O_LOG_(D2O_LOG_DEBUG, D2O_CAT_LEASE, sh->lease.shard_id, "checkpoint", "checkpoint %s",
             sh->lease.checkpoint);
}

void worker_on_checkpoints(struct worker *w, void *owner, struct d2o_checkpoint_batch *b, int rc,
                           const int *outcome, const char *why, int64_t elapsed_us)
{
    struct shard **in = owner;
    size_t i, n = d2o_checkpoint_batch_size(b);
    char err[512];

    if (w->m && rc == 0) {
        d2o_metrics_observe(w->m, D2O_H_CHECKPOINT_LATENCY, elapsed_us);
    }
    if (rc < 0 && *why) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", why);
    }
    for (i = 0; i < n; i++) {
        struct shard *sh = in[i];

        sh->commit_in_flight = false;
        if (rc < 0 || outcome[i] != 0) {
            free(sh->commit_sent_pos);
            sh->commit_sent_pos = NULL;
            if (w->m) {
                d2o_metrics_add(w->m, D2O_M_CHECKPOINT_ERRORS, 1);
            }
        }
        if (rc < 0 || sh->stop == STOP_LOST || sh->stop == STOP_DONE) {
            continue; /* nothing written: tried again next turn */
        }
        if (outcome[i] == 0) {
            shard_committed(sh);
            continue;
        }
        d2o_checkpoint_batch_why(b, i, outcome[i], err, sizeof(err));
        if (outcome[i] == -EINVAL) {
            D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_LEASE, sh->lease.shard_id, "checkpoint_refused", "%s",
                     err);
            shard_lost(sh, "checkpoint refused");
        } else {
            shard_lost(sh, err);
        }
    }
    free(in);
}

static bool commit_ready(const struct shard *sh)
{
    return sh->commit_dirty && !sh->commit_in_flight && sh->stop != STOP_LOST &&
           sh->stop != STOP_DONE;
}

/*
 * The checkpoints of the shards whose acknowledged prefix moved, with the DLQ rows they pass,
 * in one statement fenced per shard (d2o_checkpoint_batch), sent without waiting; at most one
 * such statement is on its way. At most D2O_CHECKPOINT_BATCH_MAX shards go in one statement, so
 * that it stays short (docs/performance.md); the next one starts with the shards left out, so
 * each waits at most ceil(ready / D2O_CHECKPOINT_BATCH_MAX) statements.
 */
static void checkpoints_send(struct worker *w)
{
    struct d2o_checkpoint_batch *b;
    struct shard **in;
    size_t i, k, n = 0, cap, start;
    bool failed = false;
    char err[512];

    if (w->checkpoint_in_flight) {
        return;
    }
    for (i = 0; i < w->n_shards; i++) {
        n += commit_ready(w->shards[i]);
    }
    if (n == 0) {
        return;
    }
    cap = n < D2O_CHECKPOINT_BATCH_MAX ? n : D2O_CHECKPOINT_BATCH_MAX;
    b = d2o_checkpoint_batch_new(w->conf->application, w->id);
    in = d2o_calloc(cap, sizeof(*in));
    start = w->checkpoint_next < w->n_shards ? w->checkpoint_next : 0;
    n = 0;
    for (k = 0; b && in && k < w->n_shards && n < cap && !failed; k++) {
        struct shard *sh = w->shards[(start + k) % w->n_shards];
        struct d2o_dlq_row *rows = NULL;
        size_t j;
        int r = -ENOMEM;

        if (!commit_ready(sh)) {
            continue;
        }
        sh->commit_sent_pos = d2o_strdup(sh->commit_pos);
        if (sh->n_commit_dlq) {
            rows = d2o_calloc(sh->n_commit_dlq, sizeof(*rows));
        }
        for (j = 0; rows && j < sh->n_commit_dlq; j++) {
            rows[j] = ((struct dlq_item *)sh->commit_dlq[j])->row;
        }
        if (sh->commit_sent_pos && (rows || !sh->n_commit_dlq)) {
            r = d2o_checkpoint_batch_add(b, sh->lease.stream, sh->lease.shard_id, sh->lease.counter,
                                         sh->commit_pos, sh->commit_ver, rows, sh->n_commit_dlq,
                                         err, sizeof(err));
        }
        free(rows);
        if (r == -EINVAL) {
            free(sh->commit_sent_pos);
            sh->commit_sent_pos = NULL;
            D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_LEASE, sh->lease.shard_id, "checkpoint_refused", "%s",
                     err);
            shard_lost(sh, "checkpoint refused");
            continue;
        }
        if (r < 0) {
            free(sh->commit_sent_pos);
            sh->commit_sent_pos = NULL;
            /* out of memory: the batch is dropped below, and tried again next turn */
            failed = true;
            continue;
        }
        sh->commit_in_flight = true;
        sh->commit_sent_dlq = sh->n_commit_dlq;
        in[n++] = sh;
    }
    w->checkpoint_next = w->n_shards ? (start + k) % w->n_shards : 0;
    if (!b || !in || failed || n == 0) {
        for (i = 0; i < n; i++) {
            in[i]->commit_in_flight = false;
            free(in[i]->commit_sent_pos);
            in[i]->commit_sent_pos = NULL;
        }
        free(in);
        d2o_checkpoint_batch_free(b);
        return;
    }
    worker_checkpoints_async(w, b, in);
}

/* A shard's finish (aged out first, when it left the stream), a hand-over or a release has
 * its answer (d2o_lease_op on the asynchronous session). */
static void shard_op_done(struct worker *w, void *arg, enum d2o_lease_op op, int rc, int64_t ts_ms,
                          const char *err)
{
    struct shard *sh = arg;
    bool handoff = op == D2O_LEASE_OP_HAND_OVER;

    (void)ts_ms;
    sh->op_in_flight = false;
    if (rc == -ECANCELED) {
        return; /* the worker exits: what it still holds is released there */
    }
    if (rc < 0) {
        /* nothing changed: tried again shortly */
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, sh->lease.shard_id, "pg_error", "%s", err);
        sh->op_not_before_ms = d2o_mono_ms() + 1000;
        return;
    }
    if (sh->stop == STOP_LOST || sh->stop == STOP_DONE) {
        return;
    }
    switch (op) {
    case D2O_LEASE_OP_AGED_OUT:
        if (rc == D2O_LEASE_E_LOST) {
            shard_lost(sh, err);
        } else {
            sh->aged_out = false; /* recorded: the finish goes next turn */
        }
        return;
    case D2O_LEASE_OP_FINISH:
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_LEASE, sh->lease.shard_id, "shard_finished",
                 "checkpointed SHARD_END and let the lease go; its children may start");
        sh->stop = STOP_DONE;
        w->lease_tick_now = true; /* take the children soon */
        return;
    default:
        break;
    }
    if (rc == D2O_LEASE_E_NOT_LIVE) {
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_LEASE, sh->lease.shard_id, "handoff_withdrawn",
                 "%s; working the shard on", err);
        if (sh->stop == STOP_HANDOFF) {
            sh->stop = STOP_NONE; /* a drain begun meanwhile releases it instead */
        }
        return;
    }
    if (rc == 0) {
        D2O_LOG_(D2O_LOG_INFO, D2O_CAT_LEASE, sh->lease.shard_id,
                 handoff ? "lease_handed_over" : "lease_released", "%s at checkpoint %s",
                 handoff ? "handed the lease over" : "released the lease", sh->lease.checkpoint);
        if (w->m) {
            d2o_metrics_add(w->m, D2O_M_LEASES_RELEASED, 1);
        }
    }
    sh->stop = STOP_DONE;
}

/* Sends one fenced statement on the shard's lease; shard_op_done gets its answer. */
static void shard_op(struct shard *sh, enum d2o_lease_op op, int64_t ms0, int64_t ms1)
{
    sh->op_in_flight = true;
    worker_lease_op_async(sh->w, op, &sh->lease, ms0, ms1, shard_op_done, sh);
}

/* What a shard does at the end of a loop turn: commit, and finish when it is due. */
static void shard_settle(struct shard *sh)
{
    struct worker *w = sh->w;

    if (sh->stop == STOP_LOST || sh->stop == STOP_DONE || sh->op_in_flight) {
        return;
    }
    /* A shard at work with nothing acknowledged since the last turn has nothing to settle:
     * its tracker is not walked (every shard, every turn, on 200 shards). */
    if (sh->stop == STOP_NONE && sh->state != S_ENDED && !sh->acked) {
        return;
    }
    shard_collect(sh);
    /* A shard that lost rows it had collected must not checkpoint past them. A moved prefix
     * goes with this turn's checkpoint statement (checkpoints_send); the shard waits for its
     * answer. */
    if (sh->stop == STOP_LOST || sh->commit_dirty || sh->commit_in_flight) {
        return;
    }
    if (sh->call_in_flight || d2o_ack_pending(sh->ack) > 0) {
        return;
    }
    /* A change of owner waits for the renewal on its way, which would otherwise answer with the
     * lease as it was before. */
    if (w->renew_in_flight && (sh->state == S_ENDED || sh->stop != STOP_NONE)) {
        return;
    }
    if ((sh->state == S_ENDED || sh->stop != STOP_NONE) && d2o_mono_ms() < sh->op_not_before_ms) {
        return;
    }
    if (sh->state == S_ENDED) {
        /* Every record is acknowledged and committed: the shard is done for good. */
        if (strcmp(sh->lease.checkpoint, "SHARD_END") != 0) {
            char *end = d2o_strdup("SHARD_END");

            if (!end) {
                shard_lost(sh, "out of memory");
                return;
            }
            free(sh->commit_pos);
            sh->commit_pos = end;
            sh->commit_dirty = true;
            return;
        }
        /* After the SHARD_END checkpoint's answer, on the asynchronous session: the children
         * can be taken only once the finish is committed. */
        shard_op(sh, sh->aged_out ? D2O_LEASE_OP_AGED_OUT : D2O_LEASE_OP_FINISH, 0, 0);
        return;
    }
    if (sh->stop == STOP_HANDOFF) {
        /* A pending owner is live while its heartbeat is younger than 2.5 renewals (as in the
         * census); it is notified at once and renews within a renewal, so the lease it gets
         * expires after two renewals unless it does. */
        shard_op(sh, D2O_LEASE_OP_HAND_OVER, w->renew_ms * 5 / 2, w->renew_ms * 2);
    } else if (sh->stop == STOP_RELEASE) {
        shard_op(sh, D2O_LEASE_OP_RELEASE, 0, 0);
    }
}

/* Frees the shards that are done and idle. */
static void shards_reap(struct worker *w)
{
    size_t i = 0;

    while (i < w->n_shards) {
        struct shard *sh = w->shards[i];

        if ((sh->stop == STOP_DONE || sh->stop == STOP_LOST) && !sh->call_in_flight &&
            sh->in_sink == 0 && !sh->commit_in_flight && !sh->op_in_flight) {
            if (w->m) {
                d2o_metrics_shard_remove(w->m, sh->lease.shard_id);
            }
            shard_free(sh);
            w->shards[i] = w->shards[--w->n_shards];
            continue;
        }
        i++;
    }
}

/* ---- leases ---- */

static bool in_list(const struct d2o_lease_list *l, const char *shard_id, int64_t counter)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].shard_id, shard_id) == 0 && l->items[i].counter == counter) {
            return true;
        }
    }
    return false;
}

/* The shards' lag and throughput (d2o_lease_report), built when the statement goes out; one
 * at a time. */
static int report_send(struct worker *w, PGconn *c)
{
    struct d2o_lease_progress *p = calloc(w->n_shards ? w->n_shards : 1, sizeof(*p));
    int64_t now = d2o_mono_ms();
    size_t i, n = 0;
    int r;

    if (!p) {
        return -ENOMEM;
    }
    for (i = 0; i < w->n_shards; i++) {
        struct shard *sh = w->shards[i];
        int64_t span = now - sh->window_start_ms;

        if (span >= 1000) {
            sh->records_per_s = (double)sh->window_records * 1000.0 / (double)span;
            sh->window_records = 0;
            sh->window_start_ms = now;
        }
        if (sh->stop != STOP_NONE) {
            continue;
        }
        p[n].shard_id = sh->lease.shard_id;
        p[n].millis_behind_latest = sh->millis_behind;
        p[n].records_per_s = sh->records_per_s;
        n++;
    }
    r = d2o_lease_report_send(c, w->conf->application, w->id, p, n);
    free(p);
    return r;
}

/* A statement whose answer is only checked. */
static void command_done(struct worker *w, PGresult *r, const char *why)
{
    char err[512];

    if (!r && why) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", why);
    } else if (r && d2o_pg_result_ok(w->apg.c, r, PGRES_COMMAND_OK, "lease tick", err,
                                     sizeof(err)) < 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
    }
}

static void report_done(struct worker *w, PGresult *r, const char *why)
{
    w->report_in_flight = false;
    command_done(w, r, why);
}

/* A worker is live while its heartbeat is younger than 2.5 renewals: a dead one drops out of the
 * count before its leases expire, so the survivors' target covers them. */
static int census_send(struct worker *w, PGconn *c)
{
    return d2o_lease_census_send(c, w->conf->application, w->conf->stream_name, w->id,
                                 w->renew_ms * 5 / 2);
}

/* The census's answer: take leases up to the target, or ask the busiest worker for one. */
static void census_done(struct worker *w, PGresult *res, const char *why)
{
    char err[512];
    int leases = 0, live = 0, target, held;
    int64_t next_expiry = -1, now = d2o_mono_ms();

    w->census_in_flight = false;
    if (!res) {
        if (why) {
            D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "lease census: %s", why);
        }
        return;
    }
    if (d2o_lease_census_read(w->apg.c, res, &leases, &live, &next_expiry, err, sizeof(err)) < 0) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
        return;
    }
    if (next_expiry >= 0 && now + next_expiry + 20 < w->next_lease_ms) {
        /* Be there when another worker's lease runs out (a dead worker's shards resume then). */
        w->next_lease_ms = now + next_expiry + 20;
    }
    target = d2o_lease_target(leases, live);
    w->target = target;
    held = (int)shards_active(w);
    if (held < target && !w->draining) {
        worker_take_async(w, target - held, held, target, live);
    }
    if (w->m) {
        d2o_metrics_gauge(&w->m->leases_held, (int64_t)shards_active(w));
    }
}

/* A take's answer (worker_pg.c): leases taken while the drain began are given back at once. */
void worker_on_taken(struct worker *w, const struct d2o_lease_list *taken)
{
    size_t i;

    for (i = 0; i < taken->n; i++) {
        struct shard *sh;

        if (shard_add(w, &taken->items[i], "took") == 0 && w->m) {
            d2o_metrics_add(w->m, D2O_M_LEASES_TAKEN, 1);
        }
        sh = shard_find(w, taken->items[i].shard_id);
        if (w->draining && sh && sh->stop == STOP_NONE) {
            sh->stop = STOP_RELEASE;
        }
    }
    if (w->m) {
        d2o_metrics_gauge(&w->m->leases_held, (int64_t)shards_active(w));
    }
}

/* A release of a lease the worker does not work. */
static void release_done(struct worker *w, void *arg, enum d2o_lease_op op, int rc, int64_t ts_ms,
                         const char *err)
{
    (void)w;
    (void)arg;
    (void)op;
    (void)ts_ms;
    if (rc < 0 && rc != -ECANCELED) {
        D2O_LOG_(D2O_LOG_WARN, D2O_CAT_PG, NULL, "pg_error", "%s", err);
    }
}

/* A renewal's answer (worker_pg.c): the leases renewed by the statement sent at sent_ms. */
void worker_on_renewed(struct worker *w, const struct d2o_lease_list *renewed, int64_t sent_ms)
{
    size_t i;

    w->pg_ok_ms = d2o_mono_ms();
    /* The database renewed them after the statement was sent: the worker's own fence counts
     * from then, whatever the answer's way back took. */
    w->leases_valid_until = sent_ms + w->conf->lease_ms - w->lease_margin_ms;
    /* Leases this worker works and no longer holds: lost. One taken after the renewal was sent
     * is not in its answer and is judged by the next. */
    for (i = 0; i < w->n_shards; i++) {
        struct shard *sh = w->shards[i];

        /* A finish, hand-over or release on its way ran before this renewal: not lost. */
        if ((sh->stop == STOP_NONE || sh->stop == STOP_HANDOFF || sh->stop == STOP_RELEASE) &&
            !(sh->op_in_flight && (sh->state == S_ENDED || sh->stop != STOP_NONE)) &&
            sh->added_ms < sent_ms && !in_list(renewed, sh->lease.shard_id, sh->lease.counter)) {
            shard_lost(sh, "the lease was not renewed (it expired or was taken)");
        }
    }
    for (i = 0; i < renewed->n; i++) {
        const struct d2o_lease *l = &renewed->items[i];
        struct shard *sh = shard_find(w, l->shard_id);

        if (!sh && !w->draining) {
            /* Handed over to this worker by its previous owner. */
            if (shard_add(w, l, "was handed") == 0 && w->m) {
                d2o_metrics_add(w->m, D2O_M_LEASES_STOLEN, 1);
            }
        } else if (!sh) {
            /* handed over while the worker drains: given back */
            worker_lease_op_async(w, D2O_LEASE_OP_RELEASE, l, 0, 0, release_done, NULL);
        } else if (l->pending_owner && sh->stop == STOP_NONE) {
            D2O_LOG_(D2O_LOG_INFO, D2O_CAT_LEASE, sh->lease.shard_id, "handoff_requested",
                     "%s asked for the lease; handing over at the next batch boundary",
                     l->pending_owner);
            sh->stop = STOP_HANDOFF;
        }
    }
    if (w->m) {
        d2o_metrics_gauge(&w->m->leases_held, (int64_t)shards_active(w));
    }
}

/* Renew, heartbeat, report, balance; every statement on its way without waiting (the census's
 * answer takes leases). Runs every renew_ms (and sooner after a shard ends). */
static void lease_tick(struct worker *w, int64_t now)
{
    w->lease_tick_now = false;
    if (now - w->os_ok_ms >= w->renew_ms) {
        /* Nothing written lately: probe OpenSearch so /readyz knows it is reachable. */
        (void)d2o_bulk_ping(w->sink);
    }
    /* the heartbeat goes with the renewal */
    worker_renew_async(w);
    if (!w->report_in_flight) {
        w->report_in_flight = true;
        worker_apg_call(w, report_send, report_done);
    }
    if (!w->draining && !w->census_in_flight) {
        w->census_in_flight = true;
        worker_apg_call(w, census_send, census_done);
    }
    worker_deletes_tick(w, now);
    /* LISTEN's session: opened again when it broke, without waiting (the loop drives it) */
    (void)worker_pg_ok(w);
}

/* ---- the loop ---- */

static int stopped_send(struct worker *w, PGconn *c)
{
    return d2o_lease_worker_stopped_send(c, w->conf->application, w->id);
}

static void begin_drain(struct worker *w, int64_t now)
{
    size_t i;

    if (w->draining) {
        return;
    }
    w->draining = true;
    w->drain_deadline = now + w->conf->drain_timeout_ms;
    /* Out of the census at once: the other workers raise their targets now. */
    worker_apg_call(w, stopped_send, command_done);
    for (i = 0; i < w->n_shards; i++) {
        if (w->shards[i]->stop == STOP_NONE || w->shards[i]->stop == STOP_HANDOFF) {
            w->shards[i]->stop = STOP_RELEASE;
        }
    }
    d2o_bulk_flush(w->sink);
    d2o_info("drain", "draining: finishing %zu in-flight records, then releasing %zu leases",
             d2o_bulk_pending(w->sink), w->n_shards);
}

/* Releases whatever is still held without waiting (drain timeout, second signal). */
static void release_all_now(struct worker *w)
{
    char err[512];
    size_t i;

    /* A take on its way: its leases are released with the others. */
    worker_apg_settle(w, w->conf->lease_ms / 4);
    for (i = 0; i < w->n_shards; i++) {
        struct shard *sh = w->shards[i];

        if (sh->stop == STOP_LOST || sh->stop == STOP_DONE || !w->pg) {
            continue;
        }
        if (d2o_lease_release(w->pg, w->conf->application, &sh->lease, err, sizeof(err)) == 0 &&
            w->m) {
            d2o_metrics_add(w->m, D2O_M_LEASES_RELEASED, 1);
        }
        sh->stop = STOP_DONE;
    }
}

static void read_signals(struct worker *w, int64_t now)
{
    struct signalfd_siginfo si;

    while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        bool forwarded = (int)si.ssi_signo == D2O_STOP_FORWARD_SIG && si.ssi_code == SI_QUEUE &&
                         (pid_t)si.ssi_pid == getppid();

        if ((int)si.ssi_signo == D2O_STOP_FORWARD_SIG) {
            si.ssi_signo = SIGTERM; /* from anyone else: a stop like any other */
        }
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            /* A stop sent to the process group reaches the worker directly and again through
             * the supervisor: the two copies are one request (d2o/worker.h). */
            if (!d2o_stop_signal_is_new(&w->stops, forwarded,
                                        forwarded ? si.ssi_int : (int)si.ssi_pid)) {
                break;
            }
            if (!w->draining) {
                begin_drain(w, now);
            } else {
                d2o_warn("stop_now", "second stop signal: releasing the leases and exiting now");
                w->stop_now = true;
            }
            break;
        case SIGHUP:
            worker_reload(w->conf_file, w->sink);
            break;
        default:
            break;
        }
    }
}

static int64_t next_timeout(const struct worker *w, int64_t now)
{
    int64_t t = w->next_lease_ms - now, b;
    size_t i;

    if (w->lease_tick_now) {
        return 0;
    }
    for (i = 0; i < w->n_shards; i++) {
        const struct shard *sh = w->shards[i];

        if (sh->stop == STOP_NONE && !sh->call_in_flight && !sh->op_in_flight &&
            (sh->state == S_NEED_ITER || sh->state == S_CONFIRM_END ||
             (sh->state == S_READY && !backpressure(sh)))) {
            int64_t d = sh->next_get_ms - now;

            t = d < t ? d : t;
        }
    }
    b = d2o_bulk_next_ms(w->sink, now);
    if (b >= 0 && b < t) {
        t = b;
    }
    if (w->draining) {
        t = t > 50 ? 50 : t;
    }
    if (w->server_fd >= 0) {
        int64_t s = d2o_metrics_server_timeout_ms(w->server);

        if (s >= 0 && s < t) {
            t = s;
        }
    }
    return t < 0 ? 0 : t > 1000 ? 1000 : t;
}

/* One CloudWatch Embedded Metric Format line a minute on the log stream (log_emf). */
static void emit_emf(struct worker *w, int64_t now)
{
    struct d2o_buf b = D2O_BUF_INIT;

    w->next_emf_ms = now + 60000;
    if (d2o_metrics_emf(w->m, w->emf_prev, "ddb2os", d2o_wall_us() / 1000, &b) == 0) {
        fprintf(stderr, "%s\n", b.data);
        fflush(stderr);
    }
    d2o_buf_free(&b);
}

int worker_loop(struct worker *w)
{
    struct curl_waitfd fds[4];
    int pg_slot, apg_slot;
    int64_t now;
    char ebuf[128];
    size_t i;

    w->next_lease_ms = d2o_mono_ms();
    w->next_sync_ms = d2o_mono_ms();
    for (;;) {
        unsigned nfds = 1;
        int r;

        now = d2o_mono_ms();
        if (w->stop_now) {
            release_all_now(w);
            return 0;
        }
        if (w->draining && ((w->n_shards == 0 && !w->sync_in_flight && !w->take_in_flight) ||
                            now >= w->drain_deadline)) {
            if (w->n_shards) {
                d2o_warn("drain_timeout",
                         "drain_timeout_ms passed with %zu records in flight; releasing anyway "
                         "(the next owner reads them again from the checkpoint)",
                         d2o_bulk_pending(w->sink));
                release_all_now(w);
            }
            return 0;
        }
        if (w->lease_tick_now || now >= w->next_lease_ms) {
            worker_refresh_creds(w);
            if (worker_source_settled(w)) {
                w->next_lease_ms = now + w->renew_ms;
                lease_tick(w, now);
            } else {
                /* The stream to read first needs PostgreSQL: ask again after its reconnect's
                 * backoff (at least 250 ms), not on every turn with a poll that never waits. */
                w->lease_tick_now = false;
                w->next_lease_ms = w->pg_retry_ms > now + 250 ? w->pg_retry_ms : now + 250;
            }
        }
        if (!w->draining && now >= w->next_sync_ms) {
            w->next_sync_ms = now + w->conf->shard_sync_ms;
            worker_source_follow(w);
            worker_sync_shards(w);
        }
        /* A renewal's answer that came while the loop was busy counts before the fence. */
        worker_apg_io(w, w->apg.in_flight);
        if (now >= w->leases_valid_until) {
            /* Not renewed in time: stop before the database lets anyone else take the leases. */
            for (i = 0; i < w->n_shards; i++) {
                shard_lost(w->shards[i], "the leases could not be renewed in time");
            }
        }
        /* A different shard first each turn, so the budget's free room does not always go to
         * the shards at the front of the list. */
        for (i = 0; i < w->n_shards; i++) {
            shard_step(w->shards[(w->step_from + i) % w->n_shards], now);
        }
        w->step_from = w->n_shards ? (w->step_from + 1) % w->n_shards : 0;
        d2o_bulk_tick(w->sink, now);
        fds[0].fd = w->sigfd;
        fds[0].events = CURL_WAIT_POLLIN;
        fds[0].revents = 0;
        if (w->server_fd >= 0) {
            fds[nfds].fd = w->server_fd;
            fds[nfds].events = CURL_WAIT_POLLIN;
            fds[nfds].revents = 0;
            nfds++;
        }
        pg_slot = worker_pg_fd(w, &fds[nfds]) ? (int)nfds++ : -1;
        apg_slot = worker_apg_fd(w, &fds[nfds]) ? (int)nfds++ : -1;
        r = d2o_http_run(w->http, fds, nfds, (int)next_timeout(w, now));
        if (r < 0) {
            d2o_err("event_loop", "the event loop failed: %s",
                    d2o_strerror(-r, ebuf, sizeof(ebuf)));
            return 1;
        }
        now = d2o_mono_ms();
        if (fds[0].revents) {
            read_signals(w, now);
        }
        if (w->server) {
            d2o_metrics_server_run(w->server);
        }
        /* Every turn, not only when the socket is readable: a notification that arrived during
         * a query was already read by libpq and waits in its queue. The socket itself is read
         * only when poll said so, not with a recv per turn. */
        if (pg_slot >= 0) {
            worker_pg_notifications(w, fds[pg_slot].revents != 0);
        }
        worker_apg_io(w, apg_slot >= 0 && fds[apg_slot].revents != 0);
        for (i = 0; i < w->n_shards; i++) {
            shard_settle(w->shards[i]);
        }
        checkpoints_send(w);
        shards_reap(w);
        if (w->m) {
            publish_pending(w);
            d2o_metrics_gauge(&w->m->loop_ms, now);
            if (w->conf->log_emf && now >= w->next_emf_ms) {
                emit_emf(w, now);
            }
            d2o_metrics_add(w->m, D2O_M_BULK_RETRIES,
                            d2o_bulk_stats(w->sink)->retried - w->retried_seen);
            w->retried_seen = d2o_bulk_stats(w->sink)->retried;
            if (d2o_bulk_stats(w->sink)->blocked != w->blocked_seen) {
                d2o_metrics_add(w->m, D2O_M_BULK_BLOCKED,
                                d2o_bulk_stats(w->sink)->blocked - w->blocked_seen);
                w->blocked_seen = d2o_bulk_stats(w->sink)->blocked;
                d2o_metrics_gauge(&w->m->blocked_ms, now);
            }
            if (w->pg_ok_ms) {
                d2o_metrics_gauge(&w->m->pg_ok_ms, w->pg_ok_ms);
            }
            if (w->m_opensearch_ok) {
                d2o_metrics_gauge(&w->m->opensearch_ok_ms, now);
                w->m_opensearch_ok = false;
            }
        }
    }
}

void worker_free_shards(struct worker *w)
{
    size_t i;

    worker_apg_close(w); /* the requests on their way refer to shards */
    while (w->cookies) {
        cookie_drop(w, w->cookies);
    }
    for (i = 0; i < w->n_shards; i++) {
        shard_free(w->shards[i]);
    }
    free(w->shards);
    w->shards = NULL;
    w->n_shards = 0;
}

int worker_signalfd(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, D2O_STOP_FORWARD_SIG);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
        return -errno;
    }
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}
