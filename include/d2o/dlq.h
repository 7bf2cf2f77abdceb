/*
 * The dead-letter queue and the fenced checkpoint.
 *
 * A record that cannot be indexed is stored with everything needed to replay it (the raw record
 * bytes, stream, shard, sequence number, partition key, table, index, document id, external
 * version, error class, HTTP status, message, attempts, first and last failure). It is written
 * in the SAME transaction that moves the shard's checkpoint past it, so a crash can never both
 * skip a record and lose it. The transaction is fenced: the lease row must still name this owner
 * with this lease counter and an expiry in the future by the database's clock; otherwise nothing
 * is written and the caller learns it lost the lease (the new owner re-reads those records from
 * the old checkpoint and dead-letters them itself).
 *
 * @process worker (and the CLI for replay).
 */
#ifndef D2O_DLQ_H
#define D2O_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

struct d2o_dlq_row {
    const char *stream;
    const char *shard_id;
    const char *sequence_number;
    const char *partition_key;
    const char *table_name; /* "" when the record could not be parsed */
    const char *index_name; /* "" likewise */
    const char *doc_id;     /* "" likewise */
    int64_t version;        /* 0 when unknown */
    const void *raw;        /* the decoded Kinesis Data, byte for byte */
    size_t raw_len;
    const char *error_class;
    int http_status; /* 0 when there was no HTTP answer */
    const char *error_message;
    int attempts;
    int64_t first_failed_us; /* wall clock */
    int64_t last_failed_us;
};

/* Where a worker stands on a shard, and under which lease. */
struct d2o_checkpoint {
    const char *application;
    const char *stream;
    const char *shard_id;
    const char *owner;
    int64_t lease_counter;
    const char *position; /* a sequence number or SHARD_END */
    /* A DynamoDB stream read directly: the version of the record at position, stored with it
     * (leases.version_last_ms) so that a new owner, or a child shard, goes on from it. 0 leaves
     * the stored one. */
    int64_t stream_version;
};

/*
 * Compares two checkpoint positions: TRIM_HORIZON, LATEST and AT_TIMESTAMP come before every
 * sequence number, sequence numbers compare as decimals, SHARD_END comes last. Returns <0, 0, >0.
 */
int d2o_checkpoint_cmp(const char *a, const char *b);

/*
 * In one statement (a checkpoint batch of one shard): checks the lease fence (owner, counter,
 * expires_at > now()), refuses a checkpoint that moves backwards, inserts the n DLQ rows (a row
 * already there for the same record, index and document gets its attempts and last failure updated
 * and becomes pending again), and moves the checkpoint and version state. Returns 0,
 * D2O_LEASE_E_LOST (nothing written), -EINVAL (backwards; nothing written) or -EIO (database error;
 * nothing written).
 * @blocking yes.
 */
__attribute__((warn_unused_result)) int d2o_dlq_commit(PGconn *c, const struct d2o_checkpoint *cp,
                                                       const struct d2o_dlq_row *rows, size_t n,
                                                       char *errstr, size_t errstr_size);

/*
 * The checkpoints of many shards of one owner in ONE statement (one round trip), each fenced on
 * its own: a shard whose lease row no longer names owner with its counter and an expiry after
 * clock_timestamp() is refused (D2O_LEASE_E_LOST), one whose position would move back is refused
 * (-EINVAL), and only the shards that pass get their DLQ rows written and their checkpoint moved.
 * The lease rows are locked NOWAIT: a row another session holds fails the whole statement at once
 * (-EIO, "could not obtain lock"); nothing is written then and the caller tries again.
 *
 *   b = d2o_checkpoint_batch_new(application, owner);
 *   d2o_checkpoint_batch_add(b, stream, shard, counter, position, version, rows, n, ...);
 *   d2o_checkpoint_batch_send(conn, b)        PQsendQueryParams: never waits for the answer
 *   d2o_checkpoint_batch_read(b, conn, res, outcome, ...)   outcome[i] per added shard
 *
 * application and owner must outlive the batch.
 */
struct d2o_checkpoint_batch;
/* The shards a worker puts in one statement at most: the statement's time grows with its shards
 * (docs/performance.md, "the fenced checkpoint"); the shards left out go with the next one. */
#define D2O_CHECKPOINT_BATCH_MAX 32
struct d2o_checkpoint_batch *d2o_checkpoint_batch_new(const char *application, const char *owner);
void d2o_checkpoint_batch_free(struct d2o_checkpoint_batch *b);
size_t d2o_checkpoint_batch_size(const struct d2o_checkpoint_batch *b);
/* Adds one shard with the DLQ rows its checkpoint passes and, for a DynamoDB stream, the version
 * of the record the checkpoint ends at (stored in version_last_ms; 0 leaves it). 0, -EINVAL
 * (position is neither a sequence number nor SHARD_END; nothing added) or -ENOMEM (the batch is
 * unusable). */
__attribute__((warn_unused_result)) int
d2o_checkpoint_batch_add(struct d2o_checkpoint_batch *b, const char *stream, const char *shard_id,
                         int64_t counter, const char *position, int64_t stream_version,
                         const struct d2o_dlq_row *rows, size_t n, char *errstr,
                         size_t errstr_size);
/* Prepares the statements on the session, with and without DLQ rows (once per connection; saves
 * their planning on every batch). 0 or -EIO. @blocking yes. */
__attribute__((warn_unused_result)) int d2o_checkpoint_batch_prepare(PGconn *c, char *errstr,
                                                                     size_t errstr_size);
/* The same without waiting, for a session being opened (d2o_pg_open_start's setup): sends the
 * i-th of the two PQsendPrepare; 0, 1 when i is past them, -EIO. */
int d2o_checkpoint_batch_prepare_send(PGconn *c, unsigned i);
/* Sends the statement (prepared: as d2o_checkpoint_batch_prepare left it) without waiting (the
 * connection may be non-blocking). 0, -ENOMEM, -EIO. */
__attribute__((warn_unused_result)) int
d2o_checkpoint_batch_send(PGconn *c, const struct d2o_checkpoint_batch *b, bool prepared);
/* Reads the statement's result: outcome[i] is 0, D2O_LEASE_E_LOST or -EINVAL for the i-th shard
 * added. Returns 0, or -EIO (nothing was written) with errstr. */
__attribute__((warn_unused_result)) int d2o_checkpoint_batch_read(struct d2o_checkpoint_batch *b,
                                                                  PGconn *c, PGresult *r,
                                                                  int *outcome, char *errstr,
                                                                  size_t errstr_size);
/* Why the i-th shard was refused (its outcome), as d2o_dlq_commit says it. */
void d2o_checkpoint_batch_why(const struct d2o_checkpoint_batch *b, size_t i, int outcome,
                              char *errstr, size_t errstr_size);
/* Send and read, waiting for the answer. @blocking yes. */
__attribute__((warn_unused_result)) int d2o_checkpoint_batch_exec(PGconn *c,
                                                                  struct d2o_checkpoint_batch *b,
                                                                  bool prepared, int *outcome,
                                                                  char *errstr, size_t errstr_size);

/*
 * Inserts n DLQ rows without a lease fence, in the caller's transaction (the backfill commits them
 * with its segment's progress). Each row must name its stream and shard. Returns 0 or -EIO.
 */
__attribute__((warn_unused_result)) int d2o_dlq_insert(PGconn *c, const char *application,
                                                       const struct d2o_dlq_row *rows, size_t n,
                                                       char *errstr, size_t errstr_size);

/* DLQ row states. */
#define D2O_DLQ_PENDING "pending"
#define D2O_DLQ_REPLAYED "replayed"
#define D2O_DLQ_DISCARDED "discarded"

/* Records a replay or discard result on row id. Returns 0, -ENOENT or -EIO. */
__attribute__((warn_unused_result)) int d2o_dlq_mark(PGconn *c, int64_t id, const char *state,
                                                     const char *result, char *errstr,
                                                     size_t errstr_size);

/* Which rows an operator command works on; NULL / 0 fields do not filter. */
struct d2o_dlq_filter {
    const char *application;
    int64_t id; /* 0: any */
    const char *shard_id;
    const char *table_name;
    const char *error_class;
    const char *state; /* pending, replayed, discarded, or NULL for any */
    const char *since; /* timestamps PostgreSQL understands, on created_at */
    const char *until;
    int64_t limit;     /* 0: no limit */
    bool newest_first; /* order (and limit) by id descending */
};

/* One stored row. Owned strings; d2o_dlq_entries_free() releases a list. */
struct d2o_dlq_entry {
    int64_t id;
    char *stream, *shard_id, *sequence_number, *partition_key, *table_name, *index_name, *doc_id;
    int64_t version;
    unsigned char *raw;
    size_t raw_len;
    char *error_class;
    int http_status;
    char *error_message;
    int attempts;
    char *first_failed_at, *last_failed_at, *created_at;
    char *state;
    char *replay_result; /* NULL if never replayed */
};

/* Reads the rows matching f, oldest first (newest first with f->newest_first). Returns 0 or
 * -EIO. */
__attribute__((warn_unused_result)) int d2o_dlq_select(PGconn *c, const struct d2o_dlq_filter *f,
                                                       struct d2o_dlq_entry **rows, size_t *n,
                                                       char *errstr, size_t errstr_size);
void d2o_dlq_entries_free(struct d2o_dlq_entry *rows, size_t n);

/* Records a failed replay on the row: attempts + 1, the result, state stays pending. */
__attribute__((warn_unused_result)) int
d2o_dlq_replay_failed(PGconn *c, int64_t id, const char *result, char *errstr, size_t errstr_size);

/* Pending rows of application (all applications when NULL). Returns >= 0 or -EIO. */
int64_t d2o_dlq_count_pending(PGconn *c, const char *application, char *errstr, size_t errstr_size);

#endif
