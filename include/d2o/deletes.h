/*
 * The delete store: ddb2os's own memory of deleted documents, in PostgreSQL.
 *
 * OpenSearch remembers the version of a deleted document only in memory, for index.gc_deletes,
 * and forgets it when a node restarts; an older write that arrives later would bring the
 * document back. So with delete_mode = delete, ddb2os keeps one row per deleted document (table
 * `deletes`: application, index, id, the highest delete version seen, when it was recorded) and
 * checks every bulk request against it just before it is sent (the sink's pre-send filter):
 *
 *   - the deletes in the request are recorded (a row keeps the highest version) and committed
 *     before the request goes out, so a delete is remembered before OpenSearch ever applies it;
 *   - a write (index) whose document holds a recorded delete at a version >= its own is dropped
 *     and counts as stale, exactly as OpenSearch would have answered 409 while it still knew the
 *     delete. A re-create carries a higher version than the delete and goes through.
 *
 * Both happen in one statement per bulk request, whatever its size. docs/architecture.md gives
 * the argument why a delete cannot be undone, including the race of a write checked just before
 * a delete commits.
 *
 * Rows are kept for stream_retention_ms + dlq_replay_window_ms after their delete was recorded,
 * and longer while a pending dead-letter row of the same document, older than the delete, could
 * still be replayed (d2o_deletes_expire).
 *
 * @process worker and CLI (dlq replay), on their own connection.
 */
#ifndef D2O_DELETES_H
#define D2O_DELETES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "d2o/buf.h"
#include "d2o/bulk.h"

/*
 * Records the deletes among items[0..n-1] and sets drop[i] for each write whose document holds a
 * recorded delete of application at a version >= the write's. Items without index, id or a
 * positive version are neither recorded nor dropped. One statement, committed on return (the
 * connection must not be inside a transaction). *n_dropped (optional) receives the count.
 * Returns 0 or -EIO with errstr (nothing recorded, nothing dropped); -ENOMEM. @blocking yes.
 */
__attribute__((warn_unused_result)) int d2o_deletes_check(PGconn *c, const char *application,
                                                          const struct d2o_bulk_filter_item *items,
                                                          size_t n, bool *drop, size_t *n_dropped,
                                                          char *errstr, size_t errstr_size);

/*
 * d2o_deletes_check() in parts, for a non-blocking connection. _new copies what the statement
 * needs of items[0..n-1] (which may go away after the call; NULL: no memory), _size says how many
 * items it checks (0: no statement to send, nothing is dropped), _send sends it (0 or -EIO), and
 * _read reads its answer into drop[0..n-1] (0, or -EIO with errstr and nothing dropped).
 */
struct d2o_deletes_query {
    struct d2o_buf idx, ids, vers, dels; /* the parallel arrays, as array literals */
    size_t *map;                         /* the query's item i is items[map[i]] */
    size_t n, m;
};
struct d2o_deletes_query *d2o_deletes_query_new(const struct d2o_bulk_filter_item *items, size_t n);
size_t d2o_deletes_query_size(const struct d2o_deletes_query *q);
__attribute__((warn_unused_result)) int d2o_deletes_query_send(PGconn *c, const char *application,
                                                               const struct d2o_deletes_query *q);
__attribute__((warn_unused_result)) int d2o_deletes_query_read(PGconn *c, PGresult *res,
                                                               const struct d2o_deletes_query *q,
                                                               bool *drop, size_t *n_dropped,
                                                               char *errstr, size_t errstr_size);
void d2o_deletes_query_free(struct d2o_deletes_query *q);

/*
 * The retention job: removes up to limit rows of application recorded more than retention_ms
 * ago, except those a pending dead-letter row of the same document with a lower version still
 * needs. Returns the number removed (>= 0) or -EIO with errstr. Safe to run from several
 * processes at once. @blocking yes.
 */
int64_t d2o_deletes_expire(PGconn *c, const char *application, int64_t retention_ms, int64_t limit,
                           char *errstr, size_t errstr_size);

/* Its halves, for a non-blocking connection: _send (0 or -EIO), _read (the number removed or
 * -EIO with errstr). */
__attribute__((warn_unused_result)) int
d2o_deletes_expire_send(PGconn *c, const char *application, int64_t retention_ms, int64_t limit);
int64_t d2o_deletes_expire_read(PGconn *c, PGresult *res, char *errstr, size_t errstr_size);

/* Context for d2o_deletes_filter: a connection and the application it records deletes for. */
struct d2o_deletes_ctx {
    PGconn *pg;
    const char *application;
    uint64_t checks; /* statements run */
    uint64_t dropped;
    char err[512]; /* the last failure */
};

/* A d2o_bulk_filter_fn over d2o_deletes_check with arg a struct d2o_deletes_ctx. */
int d2o_deletes_filter(void *arg, const struct d2o_bulk_filter_item *items, size_t n, bool *drop);

#endif
