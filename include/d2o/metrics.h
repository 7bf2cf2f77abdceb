/*
 * Metrics and health of one process group: a supervisor and the workers it forks.
 *
 * The supervisor maps one shared, anonymous memory block (d2o_metrics_create) before it forks;
 * every worker writes only its own slot (counters, histograms, gauges and per-shard rows) with
 * relaxed atomic stores, and the supervisor reads all slots to serve /metrics (Prometheus text),
 * /healthz and /readyz over HTTP with libmicrohttpd. No locks, no sockets between processes:
 * a worker that dies leaves its counters behind (they stay monotonic for Prometheus) and the
 * supervisor marks its slot dead when it reaps it.
 *
 * @process supervisor (create, serve, render) and worker (its own slot only).
 */
#ifndef D2O_METRICS_H
#define D2O_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct d2o_buf;

#define D2O_METRICS_MAX_WORKERS 64
#define D2O_METRICS_MAX_SHARDS 256 /* per worker: 200 shards, with room */
#define D2O_METRICS_SHARD_ID_MAX 80
#define D2O_METRICS_WORKER_ID_MAX 128

/* Monotonic counters of one worker. Names in /metrics: see d2o_metrics_render(). */
enum d2o_metric_counter {
    D2O_M_RECORDS_READ = 0,  /* records returned by GetRecords */
    D2O_M_GETRECORDS_CALLS,  /* GetRecords calls answered */
    D2O_M_GETRECORDS_ERRORS, /* GetRecords calls that failed (throttled included) */
    D2O_M_DOCS_INDEXED,      /* document writes by outcome class: */
    D2O_M_DOCS_DELETED,
    D2O_M_DOCS_STALE,   /* 409: a newer version was there */
    D2O_M_DOCS_ABSENT,  /* delete of a missing document */
    D2O_M_DOCS_SKIPPED, /* records that make no write (TTL kept, unmapped table) */
    D2O_M_DOCS_DLQ,     /* records sent to the dead-letter queue */
    D2O_M_BULK_REQUESTS,
    D2O_M_BULK_RETRIES, /* item retries */
    D2O_M_DLQ_WRITES,   /* DLQ rows committed */
    D2O_M_LEASES_TAKEN,
    D2O_M_LEASES_STOLEN, /* taken over by handoff from another worker */
    D2O_M_LEASES_LOST,   /* expired or taken away before this worker let go */
    D2O_M_LEASES_RELEASED,
    D2O_M_CHECKPOINTS,
    D2O_M_CHECKPOINT_ERRORS,
    D2O_M_BULK_BLOCKED,   /* item results: the index takes no writes for now */
    D2O_M_LATENCY_SKEWED, /* changes acknowledged "before" they were made: clock skew, seen as 0 */
    D2O_M_COUNTER_COUNT
};

/* Latency histograms (microseconds observed, exposed in seconds). */
enum d2o_metric_hist {
    D2O_H_BULK_LATENCY = 0,   /* one _bulk request, sent to answered */
    D2O_H_CHECKPOINT_LATENCY, /* one fenced checkpoint transaction */
    D2O_H_CHANGE_LATENCY,     /* a change's ApproximateCreationDateTime to its bulk item's answer */
    D2O_H_COUNT
};

/* Bucket upper bounds in microseconds, 1 ms to 60 s (0.75, 1.5 and 2 s among them); the last
 * bucket is +Inf. */
#define D2O_METRICS_BUCKETS 19
extern const int64_t d2o_metrics_bucket_us[D2O_METRICS_BUCKETS - 1];

struct d2o_metrics_hist {
    uint64_t buckets[D2O_METRICS_BUCKETS]; /* not cumulative; the renderer accumulates */
    uint64_t count;
    uint64_t sum_us;
};

struct d2o_metrics_shard {
    char shard_id[D2O_METRICS_SHARD_ID_MAX]; /* "" = free row */
    int64_t millis_behind_latest;            /* -1 unknown */
    uint64_t records;                        /* records read from it by this worker */
};

struct d2o_metrics_worker {
    int32_t pid;   /* 0: slot never used */
    int32_t alive; /* 1 while the process runs (set by the worker, cleared by the reaper) */
    char id[D2O_METRICS_WORKER_ID_MAX];
    uint64_t counters[D2O_M_COUNTER_COUNT];
    struct d2o_metrics_hist hist[D2O_H_COUNT];
    int64_t leases_held;
    int64_t pending_records; /* read, not yet checkpointed */
    /* CLOCK_MONOTONIC milliseconds (system-wide, so comparable across processes) of the last
     * successful contact; 0 never. */
    int64_t pg_ok_ms;
    int64_t opensearch_ok_ms;
    int64_t loop_ms; /* last turn of the worker's event loop */
    /* The last Kinesis call that got an answer (any answer but an error the call could not get
     * past) and the last that failed, with its reason: readiness says why Kinesis is not usable. */
    int64_t kinesis_ok_ms;
    int64_t kinesis_err_ms;
    char kinesis_err[160];
    int64_t blocked_ms; /* last time OpenSearch said an index takes no writes for now */
    /* The stream the worker reads as it resolved it (a DynamoDB stream's ARN) and its table;
     * empty until set. Written under stream_seq (odd while a write is under way). */
    uint32_t stream_seq;
    char stream[256];
    char table[256];
    struct d2o_metrics_shard shards[D2O_METRICS_MAX_SHARDS];
};

struct d2o_metrics {
    uint32_t magic;
    uint32_t n_workers;
    uint64_t respawns; /* written by the supervisor */
    /* Set by the supervisor while it cannot start the workers yet (PostgreSQL, migrations):
     * /readyz answers it. Empty once the workers run. */
    char waiting[240];
    /* Where the task's change records come from (conf source, e.g. "kinesis" or
     * "dynamodb-streams") and the stream as configured (stream_name); set by the supervisor
     * before the workers start. Both name the source in /metrics and in /readyz reasons. */
    char source[32];
    char stream[256];
    struct d2o_metrics_worker workers[D2O_METRICS_MAX_WORKERS];
};

/* Maps a zeroed shared block for n_workers (<= D2O_METRICS_MAX_WORKERS) slots. NULL + errno. */
struct d2o_metrics *d2o_metrics_create(unsigned n_workers);
void d2o_metrics_destroy(struct d2o_metrics *m);
/* Records the task's source (conf name: "kinesis", "dynamodb-streams") and stream name. */
void d2o_metrics_set_source(struct d2o_metrics *m, const char *source, const char *stream);

/* The worker side. slot < n_workers. Claims the slot for this process (pid, id, alive = 1;
 * shard rows, gauges, counters and histograms cleared: the series are labelled with id, so a
 * respawned worker's series are new ones that start at zero). */
struct d2o_metrics_worker *d2o_metrics_claim(struct d2o_metrics *m, unsigned slot, int pid,
                                             const char *id);
void d2o_metrics_add(struct d2o_metrics_worker *w, enum d2o_metric_counter c, uint64_t n);
void d2o_metrics_observe(struct d2o_metrics_worker *w, enum d2o_metric_hist h, int64_t us);
/* One change acknowledged by OpenSearch (indexed, deleted, stale or absent) at acked_us (wall
 * clock, microseconds since the epoch), made at created_us (its ApproximateCreationDateTime in
 * microseconds: the external version). Observed into D2O_H_CHANGE_LATENCY; a change "made" after
 * it was acknowledged (DynamoDB's clock ahead of this host's) is observed as 0 and counted in
 * D2O_M_LATENCY_SKEWED. created_us <= 0 (no timestamp) is not observed. */
void d2o_metrics_observe_change(struct d2o_metrics_worker *w, int64_t created_us, int64_t acked_us);
void d2o_metrics_gauge(int64_t *gauge, int64_t value); /* relaxed atomic store */
/* Sets (adding the row if needed) or removes (millis_behind < -1) a shard row. Adding to a full
 * table is ignored. */
void d2o_metrics_shard_set(struct d2o_metrics_worker *w, const char *shard_id,
                           int64_t millis_behind, uint64_t records_delta);
void d2o_metrics_shard_remove(struct d2o_metrics_worker *w, const char *shard_id);
/* The stream the worker reads, as resolved (a DynamoDB stream's ARN), and its table (NULL or ""
 * for none): ddb2os_source_info names these instead of stream_name as configured. */
void d2o_metrics_set_stream(struct d2o_metrics_worker *w, const char *stream, const char *table);

/* A call to the source (Kinesis or DynamoDB Streams) answered (why == NULL) or failed with the
 * reason why. */
void d2o_metrics_kinesis(struct d2o_metrics_worker *w, int64_t now_ms, const char *why);

/* The supervisor's reaper: the process in slot is gone. */
void d2o_metrics_mark_dead(struct d2o_metrics *m, unsigned slot);

/* Writes every metric in Prometheus text format 0.0.4, with a worker label per slot.
 * Returns 0 or -ENOMEM. Pure apart from reading m. */
__attribute__((warn_unused_result)) int d2o_metrics_render(const struct d2o_metrics *m,
                                                           struct d2o_buf *out);

/* Readiness at now_ms (CLOCK_MONOTONIC ms): the supervisor is not waiting (m->waiting), at least
 * one live worker's loop turned, and it reached PostgreSQL and OpenSearch, within stale_ms; the
 * newest source answer of any live worker was not a failure (the reason then names the source:
 * "Kinesis: ..." or "DynamoDB Streams: ..."); and no live worker told within
 * stale_ms that an index takes no writes. false with the reason in why. */
bool d2o_metrics_ready(const struct d2o_metrics *m, int64_t now_ms, int64_t stale_ms, char *why,
                       size_t why_size);

/* What d2o_metrics_emf() remembers between lines: the counters, then the change latency's
 * buckets. Zeroed before the first line. */
#define D2O_METRICS_EMF_PREV (D2O_M_COUNTER_COUNT + D2O_METRICS_BUCKETS)

/* One CloudWatch Embedded Metric Format line (JSON, no newline) for a worker slot: the counters'
 * increase since prev (which is updated), the leases held, and, when changes were acknowledged
 * since prev, their count and the p50 and p99 of their latency (milliseconds, the upper bound of
 * the bucket that holds the quantile; 60000 for 60 s and more). */
__attribute__((warn_unused_result)) int d2o_metrics_emf(const struct d2o_metrics_worker *w,
                                                        uint64_t prev[D2O_METRICS_EMF_PREV],
                                                        const char *namespace_, int64_t epoch_ms,
                                                        struct d2o_buf *out);

/* ---- the HTTP endpoint (libmicrohttpd, no thread of its own) ---- */

struct d2o_metrics_server;

/* Listens on addr:port (numeric IPv4 address) and serves GET /metrics, /healthz, /readyz from m.
 * Returns NULL with errstr. The caller drives it: poll d2o_metrics_server_fd() for input and call
 * d2o_metrics_server_run() when it is readable (or at least every d2o_metrics_server_timeout_ms).
 * stale_ms is passed to d2o_metrics_ready(). */
struct d2o_metrics_server *d2o_metrics_server_start(struct d2o_metrics *m, const char *addr,
                                                    int port, int64_t stale_ms, char *errstr,
                                                    size_t errstr_size);
int d2o_metrics_server_fd(const struct d2o_metrics_server *s);
int64_t d2o_metrics_server_timeout_ms(const struct d2o_metrics_server *s); /* -1: none */
void d2o_metrics_server_run(struct d2o_metrics_server *s);
/* The port actually bound (tests start the server on port 0 to get an ephemeral one). */
int d2o_metrics_server_port(const struct d2o_metrics_server *s);
void d2o_metrics_server_stop(struct d2o_metrics_server *s);

#endif
