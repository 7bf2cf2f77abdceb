/* PostgreSQL helpers shared by the benchmarks: a fresh, migrated schema of their own. */
#ifndef D2O_BENCH_PG_H
#define D2O_BENCH_PG_H

#include <libpq-fe.h>

/* Runs q; prints the error and exits on failure. */
void bench_pg_sql(PGconn *c, const char *q);
/* Drops and re-creates schema, applies ddb2os's migrations and returns a connection into it
 * (search_path = schema). Exits on failure. */
PGconn *bench_pg_schema(const char *conninfo, const char *schema);
/* Drops schema (best effort). */
void bench_pg_drop(const char *conninfo, const char *schema);

#endif
