/*
 * Shard leases in PostgreSQL.
 *
 * A lease row per (application, stream, shard) says which worker owns the shard and until when.
 * Expiry is judged by the database's clock (now()), never by a worker's. The lease counter is the
 * lease's epoch: it changes on every change of owner (take, steal, handoff, release) and never on
 * a renewal, so every checkpoint fenced on (owner, counter) belongs to exactly one epoch, and a
 * worker that lost its lease can never move a checkpoint (see d2o_dlq_commit).
 *
 *   take      unowned or expired leases, with FOR UPDATE SKIP LOCKED so concurrent takers never
 *             pick the same row; a child shard only once every parent is at SHARD_END or has no
 *             row (aged out of retention)
 *   renew     all of a worker's leases in one statement; a lease that expired is not renewed
 *             (it is lost, even if nobody has taken it yet)
 *   release   on drain: owner cleared, counter + 1
 *   handoff   a worker below its target marks one lease of the most loaded worker with
 *             pending_owner and a deadline; the owner checkpoints at its next batch boundary and
 *             hands it over (owner = pending_owner, counter + 1); after the deadline the lease
 *             counts as available to the requester
 *
 * Every change of owner appends a row to lease_events.
 *
 * @process worker (the connection is the worker's own, opened after fork()).
 */
#ifndef D2O_LEASE_H
#define D2O_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Release, hand-over and shard end NOTIFY this channel with the application as payload, so
 * workers below their target take the lease at once instead of at their next tick. */
#define D2O_LEASE_CHANNEL "ddb2os_leases"

/* One lease as a worker holds it. Strings are owned; free the list with d2o_lease_list_free. */
struct d2o_lease {
    char *stream;
    char *shard_id;
    char *owner;
    int64_t counter;
    char *checkpoint;
    char *pending_owner;      /* NULL unless a handoff was requested */
    int64_t checkpoint_ts_ms; /* the time of an AT_TIMESTAMP checkpoint, epoch ms; 0 otherwise */
};

struct d2o_lease_list {
    struct d2o_lease *items;
    size_t n;
};

void d2o_lease_list_free(struct d2o_lease_list *l);

/* Creates the lease row of a shard if it has none (1 created, 0 was there, -EIO). parents:
 * NULL-terminated, may be NULL. */
__attribute__((warn_unused_result)) int d2o_lease_ensure(PGconn *c, const char *application,
                                                         const char *stream, const char *shard_id,
                                                         const char *const *parents,
                                                         const char *initial_checkpoint,
                                                         char *errstr, size_t errstr_size);

/* A shard's lease row as discovery creates it. */
struct d2o_lease_seed {
    const char *shard_id;
    const char *const *parents; /* NULL-terminated, may be NULL */
    const char *hash_start;     /* decimal hash keys, may be NULL */
    const char *hash_end;
    const char
        *checkpoint; /* TRIM_HORIZON, LATEST, AT_TIMESTAMP or SHARD_END (NULL: TRIM_HORIZON) */
    int64_t checkpoint_ts_ms; /* for AT_TIMESTAMP, epoch ms */
};

/* Creates the row of seed->shard_id unless it exists. Returns 1 (created), 0 (was there), -EIO. */
__attribute__((warn_unused_result)) int d2o_lease_ensure_shard(PGconn *c, const char *application,
                                                               const char *stream,
                                                               const struct d2o_lease_seed *seed,
                                                               char *errstr, size_t errstr_size);

/*
 * Many seeds in one statement, for a non-blocking connection: add seeds (0 or -ENOMEM), send (0,
 * -ENOMEM or -EIO), and read the answer: the number of rows created, or -EIO. Rows that exist are
 * left alone; when rows were created the statement notifies D2O_LEASE_CHANNEL. With read_all, or
 * when the stream already has lease rows, every new row starts at TRIM_HORIZON (a shard created
 * after the first ones is read whole); otherwise at its seed's checkpoint.
 */
struct d2o_lease_seeds;
struct d2o_lease_seeds *d2o_lease_seeds_new(void);
void d2o_lease_seeds_free(struct d2o_lease_seeds *s);
size_t d2o_lease_seeds_count(const struct d2o_lease_seeds *s);
__attribute__((warn_unused_result)) int d2o_lease_seeds_add(struct d2o_lease_seeds *s,
                                                            const struct d2o_lease_seed *seed);
__attribute__((warn_unused_result)) int d2o_lease_seeds_send(PGconn *c, const char *application,
                                                             const char *stream,
                                                             const struct d2o_lease_seeds *s,
                                                             bool read_all);
__attribute__((warn_unused_result)) int d2o_lease_seeds_read(PGconn *c, PGresult *r, char *errstr,
                                                             size_t errstr_size);

/*
 * Takes up to max available leases of stream for owner, each for lease_ms from now() by the
 * database's clock. Available: unowned, expired, or with an expired handoff requested by owner;
 * and every parent done. Taken leases are appended to out. Returns the number taken or -EIO.
 */
int d2o_lease_take(PGconn *c, const char *application, const char *stream, const char *owner,
                   int max, int64_t lease_ms, struct d2o_lease_list *out, char *errstr,
                   size_t errstr_size);
/* d2o_lease_take() in two halves, for a non-blocking connection: _send sends the statement (0 or
 * -EIO), _read reads its result (the number taken, appended to out, or -EIO). */
__attribute__((warn_unused_result)) int d2o_lease_take_send(PGconn *c, const char *application,
                                                            const char *stream, const char *owner,
                                                            int max, int64_t lease_ms);
__attribute__((warn_unused_result)) int d2o_lease_take_read(PGconn *c, PGresult *r,
                                                            struct d2o_lease_list *out,
                                                            char *errstr, size_t errstr_size);

/*
 * Renews every lease owner holds and has not let expire, in one statement. The renewed leases
 * are returned in out (with any pending handoff request); a lease the worker thinks it holds and
 * that is missing from out is lost. Returns the number renewed or -EIO.
 */
int d2o_lease_renew_all(PGconn *c, const char *application, const char *owner, int64_t lease_ms,
                        struct d2o_lease_list *out, char *errstr, size_t errstr_size);

/* d2o_lease_renew_all() in two halves, for a non-blocking connection: send the statement, then
 * read its result (PQgetResult's last). read returns the number renewed or -EIO. */
__attribute__((warn_unused_result)) int
d2o_lease_renew_all_send(PGconn *c, const char *application, const char *owner, int64_t lease_ms);
__attribute__((warn_unused_result)) int d2o_lease_renew_all_read(PGconn *c, PGresult *r,
                                                                 struct d2o_lease_list *out,
                                                                 char *errstr, size_t errstr_size);

/* The renewal's send half with the worker's heartbeat (d2o_lease_heartbeat_send) in the same
 * statement: one round trip, read by d2o_lease_renew_all_read. 0, -ENOMEM or -EIO. */
__attribute__((warn_unused_result)) int
d2o_lease_renew_beat_send(PGconn *c, const char *application, const char *owner, int64_t lease_ms,
                          const char *host, int pid, const char *task_id, int leases_held);

struct d2o_lease_progress;

/* The halves of d2o_lease_heartbeat(), d2o_lease_report() and d2o_lease_census_ex() for a
 * non-blocking connection: each _send sends the statement (0, -ENOMEM, -EIO); the heartbeat's and
 * the report's answer is PGRES_COMMAND_OK, the census's is read by d2o_lease_census_read (0 or
 * -EIO). */
__attribute__((warn_unused_result)) int d2o_lease_heartbeat_send(PGconn *c, const char *application,
                                                                 const char *id, const char *host,
                                                                 int pid, const char *task_id,
                                                                 int leases_held);
__attribute__((warn_unused_result)) int d2o_lease_report_send(PGconn *c, const char *application,
                                                              const char *owner,
                                                              const struct d2o_lease_progress *p,
                                                              size_t n);
__attribute__((warn_unused_result)) int d2o_lease_census_send(PGconn *c, const char *application,
                                                              const char *stream, const char *owner,
                                                              int64_t window_ms);
__attribute__((warn_unused_result)) int d2o_lease_census_read(PGconn *c, PGresult *r, int *leases,
                                                              int *live_workers,
                                                              int64_t *next_expiry_ms, char *errstr,
                                                              size_t errstr_size);

/*
 * The fenced statements on one lease below (release, aged out, finish, hand over and the
 * withdrawal of a handoff request, LATEST's resolution) in two halves, for a non-blocking
 * connection: _send sends op's statement for l (ms0, ms1: HAND_OVER's live_ms and accept_ms;
 * 0 or -EIO), _read reads its result: 0, D2O_LEASE_E_LOST (the fence did not hold; for WITHDRAW:
 * the lease is gone) or -EIO with errstr; RESOLVE_LATEST's timestamp goes to *ts_ms. A hand-over
 * that got D2O_LEASE_E_LOST sends WITHDRAW next: its 0 is d2o_lease_hand_over()'s
 * D2O_LEASE_E_NOT_LIVE.
 */
enum d2o_lease_op {
    D2O_LEASE_OP_RELEASE,
    D2O_LEASE_OP_AGED_OUT,
    D2O_LEASE_OP_FINISH,
    D2O_LEASE_OP_HAND_OVER,
    D2O_LEASE_OP_WITHDRAW,
    D2O_LEASE_OP_RESOLVE_LATEST,
};
__attribute__((warn_unused_result)) int d2o_lease_op_send(PGconn *c, enum d2o_lease_op op,
                                                          const char *application,
                                                          const struct d2o_lease *l, int64_t ms0,
                                                          int64_t ms1);
__attribute__((warn_unused_result)) int d2o_lease_op_read(PGconn *c, PGresult *r,
                                                          enum d2o_lease_op op,
                                                          const struct d2o_lease *l, int64_t *ts_ms,
                                                          char *errstr, size_t errstr_size);

/* Releases one lease (fenced on owner and counter). Returns 0, D2O_LEASE_E_LOST or -EIO. */
__attribute__((warn_unused_result)) int d2o_lease_release(PGconn *c, const char *application,
                                                          const struct d2o_lease *l, char *errstr,
                                                          size_t errstr_size);

/* Records in lease_events that the shard left the stream before it was read to its end
 * ('aged_out'; fenced on owner and counter), before it is finished. Returns 0,
 * D2O_LEASE_E_LOST or -EIO. */
__attribute__((warn_unused_result)) int d2o_lease_aged_out(PGconn *c, const char *application,
                                                           const struct d2o_lease *l, char *errstr,
                                                           size_t errstr_size);

/*
 * Before the first read of a shard whose checkpoint is LATEST: stores AT_TIMESTAMP at the
 * database's clock instead (fenced on owner, counter and expiry), so every later iterator, of
 * this owner after a refresh or of the next one after a lease move, starts at the same place
 * and no record that arrived since is skipped. *ts_ms receives the timestamp. Returns 0,
 * D2O_LEASE_E_LOST (also when the checkpoint is no longer LATEST) or -EIO.
 */
__attribute__((warn_unused_result)) int d2o_lease_resolve_latest(PGconn *c, const char *application,
                                                                 const struct d2o_lease *l,
                                                                 int64_t *ts_ms, char *errstr,
                                                                 size_t errstr_size);

/* After a SHARD_END checkpoint: lets the lease go for good (fenced; lease_events 'shard_end').
 * Returns 0, D2O_LEASE_E_LOST or -EIO. */
__attribute__((warn_unused_result)) int d2o_lease_finish(PGconn *c, const char *application,
                                                         const struct d2o_lease *l, char *errstr,
                                                         size_t errstr_size);

/*
 * Asks for one lease of the most loaded other live owner of stream to be handed to requester,
 * with a deadline of handoff_ms. A lease an operator assigned to its owner (`lease assign`, an
 * 'assign' event) within the last hour is not asked for: the assignment holds against the
 * balancer for an hour. Returns 1 when a request was placed, 0 when there is nothing to ask for
 * (nobody above target, or only pinned leases), or -EIO.
 */
int d2o_lease_request_handoff(PGconn *c, const char *application, const char *stream,
                              const char *requester, int target, int64_t handoff_ms, char *errstr,
                              size_t errstr_size);
/* Its halves, for a non-blocking connection: _send (0 or -EIO), _read (1, 0 or -EIO). */
__attribute__((warn_unused_result)) int
d2o_lease_request_handoff_send(PGconn *c, const char *application, const char *stream,
                               const char *requester, int target, int64_t handoff_ms);
__attribute__((warn_unused_result)) int
d2o_lease_request_handoff_read(PGconn *c, PGresult *r, char *errstr, size_t errstr_size);

/* d2o_lease_hand_over(): the pending owner is not live; the request is withdrawn, the lease
 * stays with its owner. */
#define D2O_LEASE_E_NOT_LIVE 2

/*
 * The owner's side of a handoff: gives l to its pending owner (fenced), if that worker is live
 * (a heartbeat within live_ms, not stopped); the lease then expires within accept_ms unless the
 * new owner renews it (it is notified at once), so a new owner that died meanwhile stalls the
 * shard for accept_ms, not a whole lease. A pending owner that is not live gets nothing: the
 * request is withdrawn and the owner keeps the lease (D2O_LEASE_E_NOT_LIVE).
 * 0, D2O_LEASE_E_NOT_LIVE, D2O_LEASE_E_LOST, -EIO.
 */
__attribute__((warn_unused_result)) int d2o_lease_hand_over(PGconn *c, const char *application,
                                                            const struct d2o_lease *l,
                                                            int64_t live_ms, int64_t accept_ms,
                                                            char *errstr, size_t errstr_size);

/*
 * How many leases a worker should hold: ceil(leases / live workers), at least 1 when there are
 * leases. Pure.
 */
int d2o_lease_target(int leases, int live_workers);

/* Records that worker id is alive (workers row: host, pid, task, leases held, heartbeat now()). */
__attribute__((warn_unused_result)) int
d2o_lease_heartbeat(PGconn *c, const char *application, const char *id, const char *host, int pid,
                    const char *task_id, int leases_held, char *errstr, size_t errstr_size);

/* What a worker reports for one of its shards. */
struct d2o_lease_progress {
    const char *shard_id;
    int64_t millis_behind_latest; /* -1 unknown */
    double records_per_s;
};

/*
 * Writes the shards' lag and throughput on the leases owner holds (lease_status, ddb2os status)
 * and the worker's total on its workers row, in one statement. Returns 0 or -EIO.
 */
__attribute__((warn_unused_result)) int
d2o_lease_report(PGconn *c, const char *application, const char *owner,
                 const struct d2o_lease_progress *p, size_t n, char *errstr, size_t errstr_size);

/*
 * Counts the stream's unfinished leases and the live workers (heartbeat within window_ms by the
 * database's clock). Returns 0 or -EIO.
 */
int d2o_lease_census(PGconn *c, const char *application, const char *stream, int64_t window_ms,
                     int *leases, int *live_workers, char *errstr, size_t errstr_size);

/* The same, and in *next_expiry_ms (optional) how long until the first lease of another owner
 * than owner expires (-1: none), so a worker can be there the moment a dead worker's lease ends.
 * Stopped workers (d2o_lease_worker_stopped) are not live. */
int d2o_lease_census_ex(PGconn *c, const char *application, const char *stream, const char *owner,
                        int64_t window_ms, int *leases, int *live_workers, int64_t *next_expiry_ms,
                        char *errstr, size_t errstr_size);

/* A worker that begins to drain says so, so the census stops counting it at once. 0 or -EIO. */
__attribute__((warn_unused_result)) int d2o_lease_worker_stopped(PGconn *c, const char *application,
                                                                 const char *id, char *errstr,
                                                                 size_t errstr_size);
/* Its send half, for a non-blocking connection (the answer is PGRES_COMMAND_OK). */
__attribute__((warn_unused_result)) int
d2o_lease_worker_stopped_send(PGconn *c, const char *application, const char *id);

#endif
