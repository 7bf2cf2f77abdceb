/*
 * PostgreSQL: connections and the schema.
 *
 * ddb2os keeps leases, checkpoints, the lease audit trail and the dead-letter queue in one
 * database, in the schema the connection's search_path names (set it in the conninfo with
 * options=-csearch_path=NAME to give ddb2os a schema of its own). Every table is keyed by
 * application, so several applications share a database.
 *
 * Migrations are compiled into the binary and applied in order, each in its own transaction
 * under a transaction-level advisory lock, so several processes starting at once apply each
 * migration exactly once. A database whose schema is newer than the binary is refused.
 *
 * @process worker and CLI: connect after fork(), never before.
 */
#ifndef D2O_PG_H
#define D2O_PG_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Module condition: the lease fence did not match (lost, stolen or expired lease). */
#define D2O_LEASE_E_LOST 1

/* The schema version this binary knows. */
extern const int d2o_pg_schema_latest;

/*
 * Connects with conninfo ("" = libpq's PG* environment) as application_name, with a 10 s connect
 * timeout. Returns NULL with errstr (libpq's message, which never shows the password).
 * @blocking yes.
 */
PGconn *d2o_pg_connect(const char *conninfo, const char *application_name, char *errstr,
                       size_t errstr_size);

/*
 * d2o_pg_connect() for a session that must never hold a lease row hostage: bound_ms (a worker
 * passes a quarter of the lease) caps statement_timeout, lock_timeout and
 * idle_in_transaction_session_timeout, so the server ends a frozen or partitioned worker's
 * transaction, and its row locks, well before the lease can expire; TCP keepalives and
 * tcp_user_timeout, on the client (unless conninfo sets them) and on the server, notice a dead
 * peer in about the same time. @blocking yes.
 */
PGconn *d2o_pg_connect_bounded(const char *conninfo, const char *application_name, int64_t bound_ms,
                               char *errstr, size_t errstr_size);

/*
 * Applies the missing migrations. *from and *to (optional) receive the versions before and
 * after. Returns 0, or -EIO with errstr (also when the database is newer than the binary).
 * @blocking yes.
 */
__attribute__((warn_unused_result)) int d2o_pg_migrate(PGconn *c, int *from, int *to, char *errstr,
                                                       size_t errstr_size);

/* Reads the applied schema version (0 when none). Returns 0 or -EIO with errstr. */
__attribute__((warn_unused_result)) int d2o_pg_schema_version(PGconn *c, int *version, char *errstr,
                                                              size_t errstr_size);

/* Copies the server's error text of r (or of c) into errstr, prefixed by what. */
void d2o_pg_error(PGconn *c, PGresult *r, const char *what, char *errstr, size_t errstr_size);

#endif
