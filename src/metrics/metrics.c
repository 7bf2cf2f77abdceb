/*
 * The shared metrics block and its Prometheus text. See include/d2o/metrics.h.
 *
 * Writers are single (a worker writes only its slot); readers take relaxed atomic loads and may
 * see a histogram's buckets a moment ahead of its count, which Prometheus tolerates.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "d2o/buf.h"
#include "d2o/metrics.h"

#define MAGIC 0x64326f6dU /* "d2om" */

/* 1 ms to 60 s: a bulk request or a checkpoint takes milliseconds, a change reaches the index in
 * a few hundred milliseconds when all is well, and tens of seconds behind a backlog. Finer from
 * 250 ms to 2.5 s, where a change's latency is when nothing is behind: a p99 read from the
 * buckets tells 0.75 s from 1 s and 1.5 s from 2.5 s. */
const int64_t d2o_metrics_bucket_us[D2O_METRICS_BUCKETS - 1] = {
    1000,   2500,    5000,    10000,   25000,   50000,   100000,   250000,   500000,
    750000, 1000000, 1500000, 2000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

struct d2o_metrics *d2o_metrics_create(unsigned n_workers)
{
    struct d2o_metrics *m;

    if (n_workers == 0 || n_workers > D2O_METRICS_MAX_WORKERS) {
        errno = EINVAL;
        return NULL;
    }
    m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        return NULL;
    }
    m->magic = MAGIC;
    m->n_workers = n_workers;
    return m;
}

void d2o_metrics_set_source(struct d2o_metrics *m, const char *source, const char *stream)
{
    snprintf(m->source, sizeof(m->source), "%s", source ? source : "");
    snprintf(m->stream, sizeof(m->stream), "%s", stream ? stream : "");
}

/* How a /readyz reason names the source of the task's change records. */
static const char *source_title(const struct d2o_metrics *m)
{
    return strcmp(m->source, "dynamodb-streams") == 0 ? "DynamoDB Streams" : "Kinesis";
}

void d2o_metrics_destroy(struct d2o_metrics *m)
{
    if (m) {
        munmap(m, sizeof(*m));
    }
}

struct d2o_metrics_worker *d2o_metrics_claim(struct d2o_metrics *m, unsigned slot, int pid,
                                             const char *id)
{
    struct d2o_metrics_worker *w;
    size_t i;

    if (!m || slot >= m->n_workers) {
        return NULL;
    }
    w = &m->workers[slot];
    for (i = 0; i < D2O_METRICS_MAX_SHARDS; i++) {
        w->shards[i].shard_id[0] = '\0';
    }
    /* The series carry the worker's id (task_id:pid): a respawned worker starts new series at
     * zero, as a restarted process would, instead of continuing its predecessor's counts under
     * a label that never counted them. The supervisor is not reading while a slot is claimed. */
    for (i = 0; i < D2O_M_COUNTER_COUNT; i++) {
        STORE(&w->counters[i], 0);
    }
    memset(w->hist, 0, sizeof(w->hist));
    STORE(&w->leases_held, 0);
    STORE(&w->pending_records, 0);
    STORE(&w->pg_ok_ms, 0);
    STORE(&w->opensearch_ok_ms, 0);
    STORE(&w->loop_ms, 0);
    STORE(&w->kinesis_ok_ms, 0);
    STORE(&w->kinesis_err_ms, 0);
    STORE(&w->blocked_ms, 0);
    d2o_metrics_set_stream(w, NULL, NULL);
    snprintf(w->id, sizeof(w->id), "%s", id);
    STORE(&w->pid, pid);
    STORE(&w->alive, 1);
    return w;
}

void d2o_metrics_add(struct d2o_metrics_worker *w, enum d2o_metric_counter c, uint64_t n)
{
    if (w && (unsigned)c < D2O_M_COUNTER_COUNT) {
        __atomic_fetch_add(&w->counters[c], n, __ATOMIC_RELAXED);
    }
}

void d2o_metrics_observe(struct d2o_metrics_worker *w, enum d2o_metric_hist h, int64_t us)
{
    struct d2o_metrics_hist *hist;
    size_t b = 0;

    if (!w || (unsigned)h >= D2O_H_COUNT) {
        return;
    }
    hist = &w->hist[h];
    us = us < 0 ? 0 : us;
    while (b < D2O_METRICS_BUCKETS - 1 && us > d2o_metrics_bucket_us[b]) {
        b++;
    }
    __atomic_fetch_add(&hist->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&hist->sum_us, (uint64_t)us, __ATOMIC_RELAXED);
    __atomic_fetch_add(&hist->count, 1, __ATOMIC_RELAXED);
}

void d2o_metrics_observe_change(struct d2o_metrics_worker *w, int64_t created_us, int64_t acked_us)
{
    if (!w || created_us <= 0) {
        return;
    }
    if (acked_us < created_us) {
        /* DynamoDB's clock is ahead of this host's: the change can't have been acknowledged
         * before it was made. Seen as 0 so the histogram stays a histogram of delays, and
         * counted so that skew is visible. */
        d2o_metrics_add(w, D2O_M_LATENCY_SKEWED, 1);
        acked_us = created_us;
    }
    d2o_metrics_observe(w, D2O_H_CHANGE_LATENCY, acked_us - created_us);
}

void d2o_metrics_gauge(int64_t *gauge, int64_t value)
{
    STORE(gauge, value);
}

static struct d2o_metrics_shard *shard_row(struct d2o_metrics_worker *w, const char *shard_id,
                                           bool add)
{
    struct d2o_metrics_shard *free_row = NULL;
    size_t i;

    for (i = 0; i < D2O_METRICS_MAX_SHARDS; i++) {
        struct d2o_metrics_shard *s = &w->shards[i];

        if (s->shard_id[0] == '\0') {
            free_row = free_row ? free_row : s;
        } else if (strncmp(s->shard_id, shard_id, sizeof(s->shard_id)) == 0) {
            return s;
        }
    }
    if (!add || !free_row) {
        return NULL;
    }
    STORE(&free_row->records, 0);
    STORE(&free_row->millis_behind_latest, -1);
    snprintf(free_row->shard_id, sizeof(free_row->shard_id), "%s", shard_id);
    return free_row;
}

void d2o_metrics_shard_set(struct d2o_metrics_worker *w, const char *shard_id,
                           int64_t millis_behind, uint64_t records_delta)
{
    struct d2o_metrics_shard *s;

    if (!w || !shard_id) {
        return;
    }
    if (millis_behind < -1) {
        d2o_metrics_shard_remove(w, shard_id);
        return;
    }
    s = shard_row(w, shard_id, true);
    if (s) {
        STORE(&s->millis_behind_latest, millis_behind);
        __atomic_fetch_add(&s->records, records_delta, __ATOMIC_RELAXED);
    }
}

void d2o_metrics_shard_remove(struct d2o_metrics_worker *w, const char *shard_id)
{
    struct d2o_metrics_shard *s = w && shard_id ? shard_row(w, shard_id, false) : NULL;

    if (s) {
        s->shard_id[0] = '\0';
    }
}

void d2o_metrics_mark_dead(struct d2o_metrics *m, unsigned slot)
{
    size_t i;

    if (!m || slot >= m->n_workers) {
        return;
    }
    STORE(&m->workers[slot].alive, 0);
    STORE(&m->workers[slot].leases_held, 0);
    STORE(&m->workers[slot].pending_records, 0);
    for (i = 0; i < D2O_METRICS_MAX_SHARDS; i++) {
        m->workers[slot].shards[i].shard_id[0] = '\0';
    }
}

/* ---- Prometheus text format 0.0.4 ---- */

/* A label value: backslash, double quote and newline escaped. */
static int put_label(struct d2o_buf *out, const char *v)
{
    int r = 0;

    for (; *v && r == 0; v++) {
        switch (*v) {
        case '\\':
            r = d2o_buf_puts(out, "\\\\");
            break;
        case '"':
            r = d2o_buf_puts(out, "\\\"");
            break;
        case '\n':
            r = d2o_buf_puts(out, "\\n");
            break;
        default:
            r = d2o_buf_putc(out, *v);
            break;
        }
    }
    return r;
}

static int head(struct d2o_buf *out, const char *name, const char *type, const char *help)
{
    return d2o_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{worker="id"[,extra]} value */
static int sample(struct d2o_buf *out, const char *name, const struct d2o_metrics_worker *w,
                  const char *extra, const char *value)
{
    int r = d2o_buf_printf(out, "%s{worker=\"", name);

    r |= put_label(out, w->id);
    r |= d2o_buf_printf(out, "\"%s%s} %s\n", extra ? "," : "", extra ? extra : "", value);
    return r;
}

static int sample_u64(struct d2o_buf *out, const char *name, const struct d2o_metrics_worker *w,
                      const char *extra, uint64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRIu64, v);
    return sample(out, name, w, extra, num);
}

static int sample_i64(struct d2o_buf *out, const char *name, const struct d2o_metrics_worker *w,
                      const char *extra, int64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRId64, v);
    return sample(out, name, w, extra, num);
}

struct counter_family {
    const char *name;
    const char *help;
    const char *label; /* label name for the variants, or NULL for a single counter */
    struct {
        enum d2o_metric_counter c;
        const char *value;
    } v[6];
    size_t n;
};

static const struct counter_family counters[] = {
    {"ddb2os_records_read_total",
     "Records returned by GetRecords.",
     NULL,
     {{D2O_M_RECORDS_READ, NULL}},
     1},
    {"ddb2os_getrecords_calls_total",
     "GetRecords calls answered.",
     NULL,
     {{D2O_M_GETRECORDS_CALLS, NULL}},
     1},
    {"ddb2os_getrecords_errors_total",
     "GetRecords calls that failed, throttling included.",
     NULL,
     {{D2O_M_GETRECORDS_ERRORS, NULL}},
     1},
    {"ddb2os_documents_total",
     "Records by final outcome: indexed, deleted, stale (a newer version was there), absent "
     "(deleting a missing document), skipped (no write), dlq (dead-letter queue).",
     "outcome",
     {{D2O_M_DOCS_INDEXED, "indexed"},
      {D2O_M_DOCS_DELETED, "deleted"},
      {D2O_M_DOCS_STALE, "stale"},
      {D2O_M_DOCS_ABSENT, "absent"},
      {D2O_M_DOCS_SKIPPED, "skipped"},
      {D2O_M_DOCS_DLQ, "dlq"}},
     6},
    {"ddb2os_bulk_requests_total", "_bulk requests sent.", NULL, {{D2O_M_BULK_REQUESTS, NULL}}, 1},
    {"ddb2os_bulk_item_retries_total",
     "Bulk items sent again after a retryable failure.",
     NULL,
     {{D2O_M_BULK_RETRIES, NULL}},
     1},
    {"ddb2os_dlq_writes_total",
     "Rows committed to the dead-letter queue.",
     NULL,
     {{D2O_M_DLQ_WRITES, NULL}},
     1},
    {"ddb2os_leases_total",
     "Lease changes seen by the worker: taken (free or expired), stolen (handed over by their "
     "owner), lost (expired or taken away), released.",
     "event",
     {{D2O_M_LEASES_TAKEN, "taken"},
      {D2O_M_LEASES_STOLEN, "stolen"},
      {D2O_M_LEASES_LOST, "lost"},
      {D2O_M_LEASES_RELEASED, "released"}},
     4},
    {"ddb2os_checkpoints_total",
     "Fenced checkpoint transactions committed.",
     NULL,
     {{D2O_M_CHECKPOINTS, NULL}},
     1},
    {"ddb2os_checkpoint_errors_total",
     "Checkpoint transactions that failed or were fenced off.",
     NULL,
     {{D2O_M_CHECKPOINT_ERRORS, NULL}},
     1},
    {"ddb2os_bulk_items_blocked_total",
     "Bulk item results saying the index takes no writes for now (cluster_block_exception: "
     "read-only or disk flood stage; an index being created). They are retried without limit.",
     NULL,
     {{D2O_M_BULK_BLOCKED, NULL}},
     1},
    {"ddb2os_replication_latency_skewed_total",
     "Changes acknowledged by OpenSearch before their ApproximateCreationDateTime by this host's "
     "clock (DynamoDB's clock ahead): observed as 0 in ddb2os_replication_latency_seconds.",
     NULL,
     {{D2O_M_LATENCY_SKEWED, NULL}},
     1},
};

static bool used(const struct d2o_metrics_worker *w)
{
    return LOAD(&w->pid) != 0;
}

static int render_counters(const struct d2o_metrics *m, struct d2o_buf *out)
{
    size_t f, i, k;
    int r = 0;

    for (f = 0; f < sizeof(counters) / sizeof(counters[0]); f++) {
        const struct counter_family *cf = &counters[f];

        r |= head(out, cf->name, "counter", cf->help);
        for (i = 0; i < m->n_workers; i++) {
            const struct d2o_metrics_worker *w = &m->workers[i];

            if (!used(w)) {
                continue;
            }
            for (k = 0; k < cf->n; k++) {
                char extra[64];

                if (cf->label) {
                    snprintf(extra, sizeof(extra), "%s=\"%s\"", cf->label, cf->v[k].value);
                }
                r |= sample_u64(out, cf->name, w, cf->label ? extra : NULL,
                                LOAD(&w->counters[cf->v[k].c]));
            }
        }
    }
    return r;
}

static int render_hist(const struct d2o_metrics *m, struct d2o_buf *out, enum d2o_metric_hist h,
                       const char *name, const char *help)
{
    char bname[96], extra[48], num[32];
    size_t i, b;
    int r = head(out, name, "histogram", help);

    snprintf(bname, sizeof(bname), "%s_bucket", name);
    for (i = 0; i < m->n_workers; i++) {
        const struct d2o_metrics_worker *w = &m->workers[i];
        uint64_t cum = 0;

        if (!used(w)) {
            continue;
        }
        for (b = 0; b < D2O_METRICS_BUCKETS; b++) {
            cum += LOAD(&w->hist[h].buckets[b]);
            if (b < D2O_METRICS_BUCKETS - 1) {
                snprintf(extra, sizeof(extra), "le=\"%g\"", (double)d2o_metrics_bucket_us[b] / 1e6);
            } else {
                snprintf(extra, sizeof(extra), "le=\"+Inf\"");
            }
            r |= sample_u64(out, bname, w, extra, cum);
        }
        snprintf(bname, sizeof(bname), "%s_sum", name);
        snprintf(num, sizeof(num), "%.6f", (double)LOAD(&w->hist[h].sum_us) / 1e6);
        r |= sample(out, bname, w, NULL, num);
        snprintf(bname, sizeof(bname), "%s_count", name);
        r |= sample_u64(out, bname, w, NULL, LOAD(&w->hist[h].count));
        snprintf(bname, sizeof(bname), "%s_bucket", name);
    }
    return r;
}

/* One sample per worker and shard: the shard's records read (records) or its lag. Shard ids
 * that would break the label's quoting are left out. */
static int render_per_shard(const struct d2o_metrics *m, struct d2o_buf *out, const char *name,
                            bool records)
{
    size_t i, s;
    int r = 0;

    for (i = 0; i < m->n_workers; i++) {
        for (s = 0; used(&m->workers[i]) && s < D2O_METRICS_MAX_SHARDS; s++) {
            const struct d2o_metrics_shard *sh = &m->workers[i].shards[s];
            char id[D2O_METRICS_SHARD_ID_MAX], extra[D2O_METRICS_SHARD_ID_MAX + 16];

            memcpy(id, sh->shard_id, sizeof(id));
            id[sizeof(id) - 1] = '\0';
            if (!id[0] || strpbrk(id, "\"\\\n")) {
                continue;
            }
            snprintf(extra, sizeof(extra), "shard=\"%s\"", id);
            r |= records ? sample_u64(out, name, &m->workers[i], extra, LOAD(&sh->records))
                         : sample_i64(out, name, &m->workers[i], extra,
                                      LOAD(&sh->millis_behind_latest));
        }
    }
    return r;
}

static int render_gauges(const struct d2o_metrics *m, struct d2o_buf *out)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } g[] = {
        {"ddb2os_leases_held", "Shard leases the worker holds and works.",
         offsetof(struct d2o_metrics_worker, leases_held)},
        {"ddb2os_pending_records", "Records read and not yet checkpointed.",
         offsetof(struct d2o_metrics_worker, pending_records)},
    };
    size_t k, i;
    int r = 0;

    for (k = 0; k < sizeof(g) / sizeof(g[0]); k++) {
        r |= head(out, g[k].name, "gauge", g[k].help);
        for (i = 0; i < m->n_workers; i++) {
            const struct d2o_metrics_worker *w = &m->workers[i];

            if (used(w)) {
                r |= sample_i64(out, g[k].name, w, NULL,
                                LOAD((const int64_t *)((const char *)w + g[k].off)));
            }
        }
    }
    r |= head(out, "ddb2os_worker_up", "gauge", "1 while the worker process runs.");
    for (i = 0; i < m->n_workers; i++) {
        if (used(&m->workers[i])) {
            r |= sample_i64(out, "ddb2os_worker_up", &m->workers[i], NULL,
                            LOAD(&m->workers[i].alive) ? 1 : 0);
        }
    }
    r |= head(out, "ddb2os_millis_behind_latest", "gauge",
              "MillisBehindLatest of the shard's last GetRecords (-1 before the first).");
    r |= render_per_shard(m, out, "ddb2os_millis_behind_latest", false);
    r |= head(out, "ddb2os_shard_records_read_total", "counter",
              "Records read from the shard by the worker while it held the lease.");
    r |= render_per_shard(m, out, "ddb2os_shard_records_read_total", true);
    r |= head(out, "ddb2os_worker_respawns_total", "counter",
              "Workers the supervisor started again after one died.");
    r |= d2o_buf_printf(out, "ddb2os_worker_respawns_total %" PRIu64 "\n", LOAD(&m->respawns));
    return r;
}

void d2o_metrics_set_stream(struct d2o_metrics_worker *w, const char *stream, const char *table)
{
    if (!w) {
        return;
    }
    __atomic_add_fetch(&w->stream_seq, 1, __ATOMIC_ACQ_REL);
    snprintf(w->stream, sizeof(w->stream), "%s", stream ? stream : "");
    snprintf(w->table, sizeof(w->table), "%s", table ? table : "");
    __atomic_add_fetch(&w->stream_seq, 1, __ATOMIC_RELEASE);
}

/* A worker's stream and table as one consistent pair; false while it has none (or is writing
 * it). */
static bool worker_stream(const struct d2o_metrics_worker *w, char *stream, char *table)
{
    uint32_t seq = __atomic_load_n(&w->stream_seq, __ATOMIC_ACQUIRE);

    if (seq & 1) {
        return false;
    }
    memcpy(stream, w->stream, sizeof(w->stream));
    memcpy(table, w->table, sizeof(w->table));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    stream[sizeof(w->stream) - 1] = table[sizeof(w->table) - 1] = '\0';
    return __atomic_load_n(&w->stream_seq, __ATOMIC_RELAXED) == seq && stream[0];
}

static int render_source_line(const struct d2o_metrics *m, struct d2o_buf *out, const char *stream,
                              const char *table)
{
    int r = d2o_buf_printf(out, "ddb2os_source_info{source=\"");

    r |= put_label(out, m->source);
    r |= d2o_buf_printf(out, "\",stream=\"");
    r |= put_label(out, stream);
    if (table && table[0]) {
        r |= d2o_buf_printf(out, "\",table=\"");
        r |= put_label(out, table);
    }
    r |= d2o_buf_printf(out, "\"} 1\n");
    return r;
}

/* One line per stream the live workers read (two while one worker has gone on to a table's new
 * stream and another still reads the old one), or the configured stream_name before any worker
 * has resolved it. */
static int render_source(const struct d2o_metrics *m, struct d2o_buf *out)
{
    char stream[256], table[256], other[256], other_table[256];
    unsigned i, j, n = 0;
    int r = head(out, "ddb2os_source_info", "gauge",
                 "1, labelled with where the task reads change records (source: kinesis or "
                 "dynamodb-streams), the stream (a DynamoDB stream's ARN as resolved, else "
                 "stream_name) and, for a DynamoDB stream, its table.");

    for (i = 0; i < m->n_workers; i++) {
        const struct d2o_metrics_worker *w = &m->workers[i];

        if (!used(w) || !LOAD(&w->alive) || !worker_stream(w, stream, table)) {
            continue;
        }
        for (j = 0; j < i; j++) {
            const struct d2o_metrics_worker *o = &m->workers[j];

            if (used(o) && LOAD(&o->alive) && worker_stream(o, other, other_table) &&
                strcmp(other, stream) == 0) {
                break;
            }
        }
        if (j == i) {
            r |= render_source_line(m, out, stream, table);
            n++;
        }
    }
    if (n == 0) {
        r |= render_source_line(m, out, m->stream, NULL);
    }
    return r;
}

int d2o_metrics_render(const struct d2o_metrics *m, struct d2o_buf *out)
{
    int r = render_counters(m, out);

    r |= render_hist(m, out, D2O_H_BULK_LATENCY, "ddb2os_bulk_latency_seconds",
                     "Time from sending a _bulk request to its answer.");
    r |= render_hist(m, out, D2O_H_CHECKPOINT_LATENCY, "ddb2os_checkpoint_latency_seconds",
                     "Time of one checkpoint statement (every shard ready in a loop turn, with "
                     "their DLQ rows, fenced per shard), from sending to its answer.");
    r |= render_hist(m, out, D2O_H_CHANGE_LATENCY, "ddb2os_replication_latency_seconds",
                     "Time from a change's ApproximateCreationDateTime to OpenSearch's answer to "
                     "its bulk item (indexed, deleted, stale or absent; dead-lettered changes are "
                     "not observed).");
    /* A worker sets a gauge before the counters that go with it (pending records before the
     * records read): gauges read after counters are at least that new. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    r |= render_gauges(m, out);
    if (m->source[0]) {
        r |= render_source(m, out);
    }
    return r ? -ENOMEM : 0;
}

void d2o_metrics_kinesis(struct d2o_metrics_worker *w, int64_t now_ms, const char *why)
{
    if (!w) {
        return;
    }
    if (!why) {
        d2o_metrics_gauge(&w->kinesis_ok_ms, now_ms);
        return;
    }
    snprintf(w->kinesis_err, sizeof(w->kinesis_err), "%s", why);
    __atomic_store_n(&w->kinesis_err_ms, now_ms, __ATOMIC_RELEASE);
}

bool d2o_metrics_ready(const struct d2o_metrics *m, int64_t now_ms, int64_t stale_ms, char *why,
                       size_t why_size)
{
    const char *reason = "no worker is running";
    const struct d2o_metrics_worker *newest_ok = NULL, *newest_err = NULL;
    bool ready = false;
    size_t i;

    if (m->waiting[0]) {
        snprintf(why, why_size, "%s", m->waiting);
        return false;
    }
    for (i = 0; i < m->n_workers; i++) {
        const struct d2o_metrics_worker *w = &m->workers[i];
        int64_t blocked = LOAD(&w->blocked_ms);

        if (used(w) && LOAD(&w->alive) && blocked != 0 && now_ms - blocked <= stale_ms) {
            snprintf(why, why_size,
                     "OpenSearch takes no writes to an index (cluster_block_exception: read-only "
                     "or disk flood stage, or the index is being created); records wait");
            return false;
        }
    }
    for (i = 0; i < m->n_workers; i++) {
        const struct d2o_metrics_worker *w = &m->workers[i];
        int64_t loop = LOAD(&w->loop_ms), pg = LOAD(&w->pg_ok_ms), os = LOAD(&w->opensearch_ok_ms);

        if (!used(w) || !LOAD(&w->alive)) {
            continue;
        }
        if (LOAD(&w->kinesis_ok_ms) &&
            (!newest_ok || LOAD(&w->kinesis_ok_ms) > LOAD(&newest_ok->kinesis_ok_ms))) {
            newest_ok = w;
        }
        if (__atomic_load_n(&w->kinesis_err_ms, __ATOMIC_ACQUIRE) &&
            (!newest_err || LOAD(&w->kinesis_err_ms) > LOAD(&newest_err->kinesis_err_ms))) {
            newest_err = w;
        }
        if (ready) {
            continue;
        }
        if (loop == 0 || now_ms - loop > stale_ms) {
            reason = "no worker's event loop turned recently";
        } else if (pg == 0 || now_ms - pg > stale_ms) {
            reason = "no worker reached PostgreSQL recently (leases cannot be renewed or taken)";
        } else if (os == 0 || now_ms - os > stale_ms) {
            reason = "no worker reached OpenSearch recently";
        } else {
            ready = true;
        }
    }
    if (ready && newest_err &&
        (!newest_ok || LOAD(&newest_err->kinesis_err_ms) >= LOAD(&newest_ok->kinesis_ok_ms))) {
        snprintf(why, why_size, "%s: %s", source_title(m), newest_err->kinesis_err);
        return false;
    }
    snprintf(why, why_size, "%s", ready ? "ready" : reason);
    return ready;
}

/* The upper bound, in milliseconds, of the bucket holding quantile q of the n observations in
 * delta (the last finite bound for the +Inf bucket). */
static int64_t quantile_ms(const uint64_t delta[D2O_METRICS_BUCKETS], uint64_t n, double q)
{
    uint64_t rank = (uint64_t)(q * (double)n), cum = 0;
    size_t b;

    rank = rank < 1 ? 1 : rank;
    if ((double)rank < q * (double)n) {
        rank++;
    }
    for (b = 0; b < D2O_METRICS_BUCKETS - 1; b++) {
        cum += delta[b];
        if (cum >= rank) {
            return d2o_metrics_bucket_us[b] / 1000;
        }
    }
    return d2o_metrics_bucket_us[D2O_METRICS_BUCKETS - 2] / 1000;
}

int d2o_metrics_emf(const struct d2o_metrics_worker *w, uint64_t prev[D2O_METRICS_EMF_PREV],
                    const char *namespace_, int64_t epoch_ms, struct d2o_buf *out)
{
    static const struct {
        const char *name;
        enum d2o_metric_counter c;
    } emitted[] = {
        {"RecordsRead", D2O_M_RECORDS_READ},      {"DocumentsIndexed", D2O_M_DOCS_INDEXED},
        {"DocumentsDeleted", D2O_M_DOCS_DELETED}, {"DocumentsStale", D2O_M_DOCS_STALE},
        {"DeadLettered", D2O_M_DOCS_DLQ},         {"LeasesLost", D2O_M_LEASES_LOST},
    };
    uint64_t delta[D2O_METRICS_BUCKETS], *prev_b = prev + D2O_M_COUNTER_COUNT, n = 0;
    size_t i;
    int r;

    for (i = 0; i < D2O_METRICS_BUCKETS; i++) {
        uint64_t now = LOAD(&w->hist[D2O_H_CHANGE_LATENCY].buckets[i]);

        delta[i] = now - prev_b[i];
        prev_b[i] = now;
        n += delta[i];
    }
    r = d2o_buf_printf(out,
                       "{\"_aws\":{\"Timestamp\":%" PRId64 ",\"CloudWatchMetrics\":[{"
                       "\"Namespace\":\"",
                       epoch_ms);
    r |= put_label(out, namespace_);
    r |= d2o_buf_puts(out, "\",\"Dimensions\":[[\"Worker\"]],\"Metrics\":[");
    for (i = 0; i < sizeof(emitted) / sizeof(emitted[0]); i++) {
        r |= d2o_buf_printf(out, "%s{\"Name\":\"%s\",\"Unit\":\"Count\"}", i ? "," : "",
                            emitted[i].name);
    }
    r |= d2o_buf_puts(out, ",{\"Name\":\"LeasesHeld\",\"Unit\":\"Count\"}");
    if (n > 0) {
        r |= d2o_buf_puts(out, ",{\"Name\":\"ChangesAcknowledged\",\"Unit\":\"Count\"},"
                               "{\"Name\":\"ReplicationLatencyP50\",\"Unit\":\"Milliseconds\"},"
                               "{\"Name\":\"ReplicationLatencyP99\",\"Unit\":\"Milliseconds\"}");
    }
    r |= d2o_buf_puts(out, "]}]},\"Worker\":\"");
    r |= put_label(out, w->id);
    r |= d2o_buf_puts(out, "\"");
    for (i = 0; i < sizeof(emitted) / sizeof(emitted[0]); i++) {
        uint64_t now = LOAD(&w->counters[emitted[i].c]);

        r |= d2o_buf_printf(out, ",\"%s\":%" PRIu64, emitted[i].name, now - prev[emitted[i].c]);
        prev[emitted[i].c] = now;
    }
    r |= d2o_buf_printf(out, ",\"LeasesHeld\":%" PRId64, LOAD(&w->leases_held));
    if (n > 0) {
        r |=
            d2o_buf_printf(out,
                           ",\"ChangesAcknowledged\":%" PRIu64 ",\"ReplicationLatencyP50\":%" PRId64
                           ",\"ReplicationLatencyP99\":%" PRId64,
                           n, quantile_ms(delta, n, 0.5), quantile_ms(delta, n, 0.99));
    }
    r |= d2o_buf_puts(out, "}");
    return r ? -ENOMEM : 0;
}
