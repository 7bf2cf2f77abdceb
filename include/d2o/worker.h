/*
 * The worker pool: `ddb2os run`.
 *
 * A supervisor forks N worker processes and reaps and respawns them (with backoff; never after
 * the configuration exit code 78). Each worker is one process with one event loop and no
 * threads: curl-multi drives every GetRecords and _bulk request of all its shards, a signalfd
 * brings SIGTERM/SIGINT/SIGHUP into the same loop, and PostgreSQL (leases, fenced checkpoints,
 * the DLQ) is spoken to synchronously between turns. Every handle (libcurl, libpq, credentials)
 * is opened after fork().
 *
 * Per shard: an iterator from the checkpoint, at most one GetRecords in flight and at most five
 * per second, adaptive waits when the shard is idle, the next GetRecords while the previous batch
 * is still in the sink (bounded by the memory budget, d2o_budget, and by max_pending_records),
 * records of all shards sharing bulk requests, and a checkpoint that only ever moves to the
 * acknowledged low watermark (d2o_ack), in the same fenced transaction as the DLQ rows of the
 * records it passes (d2o_dlq_commit).
 *
 * Leases (d2o_lease): renewed every renew_ms in one statement; a worker that cannot renew stops
 * its shards before the lease can expire by its own monotonic clock; below the balancing target
 * it takes free or expired leases, then asks the busiest worker for one (graceful handoff at a
 * batch boundary). One worker at a time (an advisory lock) lists the stream's shards and creates
 * lease rows for new ones; a shard read to its end creates its children's rows at once.
 */
#ifndef D2O_WORKER_H
#define D2O_WORKER_H

#include <signal.h>
#include <stdbool.h>

struct d2o_config;
struct d2o_metrics;

/* A second SIGTERM or SIGINT at least this long after the first means "release the leases now";
 * one that comes sooner is the same request delivered twice (to the process group and forwarded
 * by the supervisor) and changes nothing. */
#define D2O_STOP_REPEAT_MS 1000

struct d2o_worker_opts {
    const struct d2o_config *conf;
    const char *task_id;         /* the supervisor's name; the worker's id is <task_id>:<pid> */
    struct d2o_metrics *metrics; /* shared block (may be NULL) */
    unsigned slot;               /* this worker's slot in metrics */
    bool serve_metrics;          /* --single-process: the worker serves the endpoint itself */
};

/* Runs one worker until it is told to stop. Returns the process exit code: 0 after a drain, 1
 * after a fatal error, D2O_EXIT_CONFIG (78) when the configuration cannot work. @process worker.
 */
int d2o_worker_run(const struct d2o_worker_opts *o);

/* Runs the supervisor (forks conf->workers workers, or one per CPU). Returns the exit code.
 * single_process runs one worker in this process instead. */
int d2o_supervisor_run(const struct d2o_config *conf, bool single_process);

/* The default task id: the ECS task id when ECS_CONTAINER_METADATA_URI_V4 names one (its last path
 * element), else the host name. Writes at most size bytes. */
void d2o_default_task_id(char *buf, size_t size);

#endif
