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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Module condition: the lease fence did not match (lost, stolen or expired lease). */
#define D2O_LEASE_E_LOST 1

/* Whether d2o_pg_connect()'s error means the settings are wrong (authentication refused, an
 * unknown database or role, a malformed conninfo) rather than that the server is not reachable
 * yet. */
bool d2o_pg_connect_error_is_config(const char *msg);

/* The schema version this binary knows. */
extern const int d2o_pg_schema_latest;

/*
 * Where d2o_pg_connect gets a password from, when set: fn(arg, conninfo, &password, ...) returns
 * 0 and a new string that is sent as the password (and then cleansed), or a negative errno with
 * errstr. NULL (the default) sends what conninfo and the PG* environment say. RDS IAM
 * authentication (d2o/rdsauth.h) uses it for a fresh token on every connection.
 */
typedef int (*d2o_pg_password_fn)(const void *arg, const char *conninfo, char **password,
                                  char *errstr, size_t errstr_size);
void d2o_pg_set_password_source(d2o_pg_password_fn fn, const void *arg);

/*
 * Connects with conninfo ("" = libpq's PG* environment) as application_name, with a 10 s connect
 * timeout. Returns NULL with errstr (libpq's message, which never shows the password).
 * @blocking yes.
 */
/* Registers the password inside a conninfo (keyword or URI form) with the log redactor, so
 * neither the log nor an operator command that prints the conninfo shows it. */
void d2o_pg_register_password(const char *conninfo);

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

/* How long opening a session may take (libpq's connect_timeout, and the deadline of
 * d2o_pg_open_continue, which libpq leaves to its caller). */
#define D2O_PG_CONNECT_TIMEOUT_S "10"
#define D2O_PG_CONNECT_TIMEOUT_MS 10000

/*
 * Opening a session without waiting: d2o_pg_connect_bounded's connection and settings, each
 * step sent when the socket is ready (PQconnectStartParams, PQconnectPoll, then the session's
 * bounds and the caller's setup statements, answers read with PQconsumeInput). setup(c, i, arg),
 * when given, sends the caller's i-th setup statement (PQsendQuery*; 0, or 1 when there is none
 * left, or < 0). A host name is resolved when the opening starts (getaddrinfo, which waits:
 * hostaddr in the conninfo avoids it), and a password source (d2o_pg_set_password_source) runs
 * then too.
 */
struct d2o_pg_opening;
typedef int (*d2o_pg_setup_fn)(PGconn *c, unsigned i, void *arg);
/* NULL with errstr when it fails at once. */
struct d2o_pg_opening *d2o_pg_open_start(const char *conninfo, const char *application_name,
                                         int64_t bound_ms, d2o_pg_setup_fn setup, void *setup_arg,
                                         char *errstr, size_t errstr_size);
/* The socket to wait on now (it may change from one step to the next), and whether for writing
 * (else reading). */
int d2o_pg_open_fd(const struct d2o_pg_opening *o, bool *want_write);
/* When d2o_pg_open_continue gives up (monotonic ms). */
int64_t d2o_pg_open_deadline(const struct d2o_pg_opening *o);
/* Takes the next step (call it when the socket is ready, or at least by the deadline): 1 while
 * under way, 0 with the session in *out (non-blocking; the caller owns it), or < 0 with errstr
 * (the deadline passed, or a step failed). */
int d2o_pg_open_continue(struct d2o_pg_opening *o, PGconn **out, char *errstr, size_t errstr_size);
/* Ends an opening under way (nothing when it gave its session). NULL-safe. */
void d2o_pg_open_free(struct d2o_pg_opening *o);

/*
 * Applies the missing migrations. *from and *to (optional) receive the versions before and
 * after. Returns 0, or -EIO with errstr (also when the database is newer than the binary).
 * @blocking yes.
 */
__attribute__((warn_unused_result)) int d2o_pg_migrate(PGconn *c, int *from, int *to, char *errstr,
                                                       size_t errstr_size);
/* The same up to version target (at most d2o_pg_schema_latest): for tests that start from an
 * older schema. */
__attribute__((warn_unused_result)) int d2o_pg_migrate_to(PGconn *c, int target, int *from, int *to,
                                                          char *errstr, size_t errstr_size);

/* 0 when the database's schema is the one this binary knows; else -ENOENT with what to do
 * ("run 'ddb2os migrate'") in errstr, or -EIO. For commands that must not change the schema. */
__attribute__((warn_unused_result)) int d2o_pg_require_schema(PGconn *c, char *errstr,
                                                              size_t errstr_size);
/* Reads the applied schema version (0 when none). Returns 0 or -EIO with errstr. */
__attribute__((warn_unused_result)) int d2o_pg_schema_version(PGconn *c, int *version, char *errstr,
                                                              size_t errstr_size);

/* After PQsendQuery*: waits for the statement's results and returns the last (NULL when there is
 * none). @blocking yes. */
PGresult *d2o_pg_last_result(PGconn *c);

/* 0 when r's status is want; else -EIO with the error in errstr (d2o_pg_error). r may be NULL. */
__attribute__((warn_unused_result)) int d2o_pg_result_ok(PGconn *c, PGresult *r,
                                                         ExecStatusType want, const char *what,
                                                         char *errstr, size_t errstr_size);

/* Copies the server's error text of r (or of c) into errstr, prefixed by what. */
void d2o_pg_error(PGconn *c, PGresult *r, const char *what, char *errstr, size_t errstr_size);

#endif
