/* The worker's internals, shared by worker.c (the loop) and worker_setup.c (handles, PostgreSQL,
 * discovery). Not a public header. */
#ifndef D2O_WORKER_INT_H
#define D2O_WORKER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "d2o/budget.h"
#include "d2o/bulk.h"
#include "d2o/conf.h"
#include "d2o/deletes.h"
#include "d2o/kinesis.h"
#include "d2o/lease.h"
#include "d2o/metrics.h"
#include "d2o/worker.h"

struct d2o_config;
struct d2o_creds;
struct d2o_sigv4_signer;
struct d2o_metrics_worker;
struct d2o_metrics_server;
struct shard;
struct rec_cookie;
struct curl_waitfd;
struct d2o_checkpoint_batch;
struct d2o_lease_list;
struct apg_req;

/* The asynchronous PostgreSQL session (worker_pg.c). */
struct worker_apg {
    PGconn *c;
    struct d2o_pg_opening *opening; /* the session being opened (without waiting) */
    int64_t retry_ms;
    unsigned attempt;
    struct apg_req *head, *tail; /* queued; head is in flight when in_flight */
    bool in_flight;
    bool want_write; /* PQflush has more to send */
    bool closing;    /* the worker is exiting: nothing more is sent */
    PGresult *last;  /* the in-flight statement's last result so far */
};

struct worker {
    const struct d2o_config *conf;      /* what the worker reads: conf_own or conf_file */
    const struct d2o_config *conf_file; /* the configuration as given (SIGHUP compares it) */
    struct d2o_config conf_own;         /* a DynamoDB stream named by its table: with the ARN */
    char *stream_arn;                   /* conf_own.stream_name, owned */
    bool stream_followed;               /* stream_arn replaced the one the worker started with */
    bool source_settled; /* the stream to read first is known (worker_source_settled) */
    char id[160];
    char host[128];
    char task_id[128];
    struct d2o_http *http;
    struct d2o_creds *creds;
    struct d2o_sigv4_signer *os_signer;
    struct d2o_kinesis *kin;
    struct d2o_bulk *sink;
    PGconn *pg;
    struct d2o_pg_opening *pg_opening; /* pg being opened (without waiting) */
    int64_t pg_retry_ms;               /* next reconnect attempt while the connection is bad */
    unsigned pg_attempt;               /* reconnects in a row */
    int64_t pg_ok_ms;                  /* last successful lease renewal */
    struct shard **shards;
    size_t n_shards, cap_shards;
    struct rec_cookie *cookies;
    size_t max_sink_bytes;
    struct d2o_budget budget; /* memory_budget, shared by the shards */
    size_t step_from;         /* the shard stepped first this turn (rotates) */
    int64_t renew_ms;
    int64_t lease_margin_ms;
    int64_t leases_valid_until; /* monotonic: stop every shard at this time unless renewed */
    int64_t next_lease_ms;
    int64_t next_sync_ms;
    bool lease_tick_now;
    int target;
    bool draining;
    bool stop_now;
    struct d2o_stop_copies stops; /* stop signals, paired (read_signals) */
    int64_t drain_deadline;
    int sigfd;
    struct d2o_metrics_worker *m;
    bool m_opensearch_ok;
    int64_t os_ok_ms;      /* last answer from OpenSearch below 500 */
    uint64_t retried_seen; /* the sink's retried count already added to the metrics */
    uint64_t blocked_seen; /* the sink's blocked count already added to the metrics */
    int64_t next_emf_ms;
    uint64_t emf_prev[D2O_METRICS_EMF_PREV];
    struct d2o_metrics_server *server;
    int server_fd;
    struct d2o_deletes_ctx deletes; /* the sink's pre-send check (delete_mode = delete) */
    int64_t next_expire_ms;         /* next run of the delete store's retention job */
    int expire_round;               /* its statement on its way (1..), or 0 */
    int64_t expire_removed;         /* rows it removed so far */
    struct worker_apg apg;          /* renewals and checkpoints, never blocking the loop */
    bool renew_in_flight;
    bool checkpoint_in_flight;
    size_t checkpoint_next; /* the shard the next checkpoint statement starts with */
    bool census_in_flight;
    bool report_in_flight;
    bool take_in_flight;   /* a lease take (or the handoff request after it) is on its way */
    bool sync_in_flight;   /* the shard sync's listing is on its way */
    unsigned sync_attempt; /* its failed page calls in a row */
};

/* worker.c */
int worker_loop(struct worker *w);
void worker_free_shards(struct worker *w);
/* The leases the worker works (for the heartbeat). */
int worker_shards_held(const struct worker *w);
void worker_on_bulk_done(void *cookie, const struct d2o_bulk_result *res, void *arg);
void worker_on_bulk_answer(int64_t total_us, long status, void *arg);
/* The sink's keep: false for an item of a shard whose lease is lost or finished, and for every
 * item once the worker's own fence (leases_valid_until) has passed. */
bool worker_keep_item(void *cookie, void *arg);
int worker_signalfd(void);

/* worker_setup.c */
/* Whether the synchronous session is open; when it is not, opens it without waiting (the loop
 * drives the opening through worker_pg_fd and worker_pg_notifications). */
bool worker_pg_ok(struct worker *w);
/* worker_pg_ok, waiting up to the connect timeout for the session: only outside the loop (the
 * start, the stopped mark at exit). @blocking yes. */
bool worker_pg_wait(struct worker *w);
/* The synchronous session's descriptor to poll: the opening's, or the open session's (for
 * notifications). */
bool worker_pg_fd(struct worker *w, struct curl_waitfd *fd);
void worker_pg_failed(struct worker *w, const char *why);
/* Takes the lease channel's notifications libpq has queued (reading the socket first when it is
 * readable); one for this application asks for a lease tick. While the session is being opened:
 * its next step (readable: its descriptor was signalled). */
void worker_pg_notifications(struct worker *w, bool readable);
void worker_kinesis_error(struct worker *w, const char *shard_id, const char *call, int rc,
                          const struct d2o_kinesis_err *err, unsigned *attempt, int64_t *next_ms);
void worker_ensure_children(struct worker *w, const char *stream,
                            const struct d2o_kinesis_child_shard *children, size_t n);
/* Whether the application has lease rows of stream (with open_only: rows not at SHARD_END).
 * 0, or -EIO (the connection is marked failed). @blocking yes. */
int worker_stream_has_leases(struct worker *w, const char *stream, bool open_only, bool *has);
void worker_refresh_creds(struct worker *w);
/* SIGHUP: reopens log_file, reads the configuration again and applies the keys marked
 * reloadable (log level, format and categories to this process; the sink's timings to sink, when
 * given); names the changed keys that need a restart. */
void worker_reload(const struct d2o_config *conf, struct d2o_bulk *sink);

/* Called by worker_pg.c with a renewal's answer (sent at sent_ms, monotonic). */
void worker_on_renewed(struct worker *w, const struct d2o_lease_list *renewed, int64_t sent_ms);
/* Called by worker_pg.c with the leases a take got. */
void worker_on_taken(struct worker *w, const struct d2o_lease_list *taken);
/* Called by worker_pg.c with a checkpoint batch's answer: rc 0 and outcome[i] per shard of the
 * batch, or rc < 0 (nothing written) with why ("" when there is nothing to say). owner is what
 * worker_checkpoints_async got; elapsed_us the statement's time from send to answer. */
void worker_on_checkpoints(struct worker *w, void *owner, struct d2o_checkpoint_batch *b, int rc,
                           const int *outcome, const char *why, int64_t elapsed_us);

/* worker_pg.c */
/* The asynchronous session's descriptor to poll, when a statement is in flight. */
bool worker_apg_fd(struct worker *w, struct curl_waitfd *fd);
/* Every loop turn: reads what arrived (ready: the descriptor was signalled), completes requests,
 * sends the next; reconnects with backoff. */
void worker_apg_io(struct worker *w, bool ready);
/* Fails every queued request (their callbacks run) and closes the session. */
void worker_apg_close(struct worker *w);
/* Any other statement: send(w, conn) sends it when its turn comes (PQsendQueryParams; 0 or < 0),
 * done(w, result, why) gets its last result (NULL when it failed, with why). */
typedef int (*worker_apg_send_fn)(struct worker *w, PGconn *c);
typedef void (*worker_apg_done_fn)(struct worker *w, PGresult *r, const char *why);
void worker_apg_call(struct worker *w, worker_apg_send_fn send, worker_apg_done_fn done);
/* The same with an argument for both. */
typedef int (*worker_apg_send_arg_fn)(struct worker *w, PGconn *c, void *arg);
typedef void (*worker_apg_done_arg_fn)(struct worker *w, PGresult *r, const char *why, void *arg);
void worker_apg_call_arg(struct worker *w, worker_apg_send_arg_fn send, worker_apg_done_arg_fn done,
                         void *arg);
/* The same for a statement on the data path (the delete store's check): it queues with the
 * checkpoints. */
void worker_apg_call_data(struct worker *w, worker_apg_send_arg_fn send,
                          worker_apg_done_arg_fn done, void *arg);
/* A fenced statement on lease l (copied; d2o_lease_op_send), ms0 and ms1 its milliseconds:
 * done(w, arg, op, rc, ts_ms, err) gets d2o_lease_op_read's answer, -EIO when the session
 * failed, -ENOMEM, or -ECANCELED (the worker exits; err ""). A HAND_OVER that finds the pending
 * owner not live withdraws the request next and answers D2O_LEASE_E_NOT_LIVE. */
typedef void (*worker_lease_op_fn)(struct worker *w, void *arg, enum d2o_lease_op op, int rc,
                                   int64_t ts_ms, const char *err);
void worker_lease_op_async(struct worker *w, enum d2o_lease_op op, const struct d2o_lease *l,
                           int64_t ms0, int64_t ms1, worker_lease_op_fn done, void *arg);
/* At exit: waits (up to timeout_ms) for the statement on its way, whose answer its owner gets
 * as usual, and sends nothing more. @blocking yes: only for the worker's last releases. */
void worker_apg_settle(struct worker *w, int64_t timeout_ms);
/* Takes up to want leases on the asynchronous session (the census saw held of a target of target
 * leases, live workers); worker_on_taken gets them. Still below the target with other live
 * workers, it then asks the busiest one for a lease. */
void worker_take_async(struct worker *w, int want, int held, int target, int live);
/* Creates the lease rows of seeds (owned from now on) in stream on the asynchronous session,
 * starting at TRIM_HORIZON with read_all or when the stream has rows already; why (static text)
 * says in the log where the shards came from. */
void worker_seeds_async(struct worker *w, const char *stream, struct d2o_lease_seeds *seeds,
                        bool read_all, const char *why);
/* Sends a renewal of every lease the worker holds, unless one is on its way. */
void worker_renew_async(struct worker *w);
/* Sends the batch (owned from now on); worker_on_checkpoints gets its answer. */
void worker_checkpoints_async(struct worker *w, struct d2o_checkpoint_batch *b, void *owner);

/* worker_source.c */
/* Opens w->kin for the configured source (for a DynamoDB stream named by its table: the newest
 * stream's ARN, which w->conf then names). Returns 0, 1 (try again later) or D2O_EXIT_CONFIG.
 * @blocking yes. */
int worker_source_open(struct worker *w, const struct d2o_config *c,
                       const struct d2o_aws_creds *ac);
/* A DynamoDB stream named by its table, on the shard-sync tick: once the table's latest stream
 * is another one and every shard of the stream read so far is finished, w->conf names the new
 * stream (logged as stream_followed). @blocking yes. */
void worker_source_follow(struct worker *w);
/* Whether the worker knows which stream to read first; until then it takes no lease and lists
 * no shard. A DynamoDB stream named by its table starts not on the table's latest stream but on
 * the oldest one whose lease rows are not all finished (logged as stream_unfinished), as a
 * running worker would have (worker_source_follow). @blocking yes. */
bool worker_source_settled(struct worker *w);
/* Whether stream is a DynamoDB stream of the worker's table that the table has replaced (its
 * latest stream is another one): such a stream, once it does not exist, never comes back.
 * @blocking yes. */
bool worker_source_superseded(struct worker *w, const char *stream);

/* A DynamoDB stream: the version a shard's next record goes on from (its checkpoint's, or at
 * its start its parent's final one), read on the asynchronous session: done(w, arg, rc, ver,
 * err) gets it (rc 0), or rc -EIO with err, or -ECANCELED (the worker exits). Returns 1 (done
 * comes later), 0 for Kinesis (no version: done is not called) or -ENOMEM. */
typedef void (*worker_version_fn)(struct worker *w, void *arg, int rc, int64_t ver,
                                  const char *err);
int worker_source_start_version_async(struct worker *w, const struct d2o_lease *l,
                                      worker_version_fn done, void *arg);
/* The version of record kr read after one at prev (0 for Kinesis: the record's own). */
int64_t worker_source_version(const struct worker *w, int64_t prev,
                              const struct d2o_kinesis_record *kr);

/* worker_sync.c */
/* The shard sync's turn: lists the stream's shards on the multi handle (unless a listing is on
 * its way or another worker syncs) and gives new shards lease rows when the answer comes. */
void worker_sync_shards(struct worker *w);
/* Whether the stream lists shard_id now (ListShards or DescribeStream, every page, on the multi
 * handle), and whether it is closed: cb gets rc 0, D2O_KINESIS_E_FAILED (err filled; code
 * ResourceNotFoundException when the stream does not exist) or a negative errno. Returns 0 or a
 * negative errno (cb is not called). */
typedef void (*worker_listed_fn)(void *arg, int rc, bool listed, bool closed,
                                 const struct d2o_kinesis_err *err);
int worker_shard_listed_async(struct worker *w, const char *stream, const char *shard_id,
                              worker_listed_fn cb, void *arg);

/* worker_deletes.c */
/* The sink's pre-send check (d2o_bulk_filter_start_fn) on the asynchronous session: records the
 * request's deletes and drops writes they outrank. */
int worker_deletes_filter_start(void *arg, const struct d2o_bulk_filter_item *items, size_t n,
                                struct d2o_bulk_check *check);
/* The delete store's retention job, when due (from the lease tick). */
void worker_deletes_tick(struct worker *w, int64_t now);

#endif
