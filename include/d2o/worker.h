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

/*
 * Stop signals. A SIGTERM or SIGINT sent to the process group (Ctrl-C, `timeout`, systemd) reaches
 * each worker directly, and the supervisor forwards the one it got as well; one sent to the
 * supervisor alone reaches the workers only forwarded. The supervisor forwards with
 * D2O_STOP_FORWARD_SIG, a real-time signal (queued, never merged with the worker's own SIGTERM),
 * whose value is the pid that sent the supervisor its signal (0: the kernel, e.g. the terminal's
 * Ctrl-C). A worker pairs each forwarded copy with a direct one from the same sender, whichever
 * comes first and however late: the pair is one request. The first request drains, any later
 * one releases the leases and exits at once.
 */
#define D2O_STOP_FORWARD_SIG (SIGRTMIN + 1)

/* The copies not paired yet, by sender: a worker's own (zeroed at the start). */
struct d2o_stop_copies {
    int direct[8];    /* senders of direct copies not paired yet, oldest first */
    int forwarded[8]; /* senders of forwarded copies not paired yet */
    unsigned n_direct, n_forwarded;
};

/* Takes a stop signal: true when it is a new request, false when it is the other copy of one
 * already taken (a direct copy and a forwarded one from the same sender). */
bool d2o_stop_signal_is_new(struct d2o_stop_copies *s, bool forwarded, int sender);

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
