/*
 * PostgreSQL helpers for integration tests: each test gets a schema of its own in the database
 * named by D2O_TEST_PG, and connections whose search_path is that schema.
 */
#ifndef D2O_PG_FIXTURE_H
#define D2O_PG_FIXTURE_H

#include <libpq-fe.h>

/* Creates a fresh schema (name starts with prefix); with migrate, applies ddb2os's schema. */
void pgfx_setup(const char *prefix, int migrate);
/* Drops the schema. */
void pgfx_teardown(void);
/* The conninfo of a connection into the schema. */
const char *pgfx_conninfo(void);
/* A new connection into the schema (the caller PQfinish()es it). */
PGconn *pgfx_conn(void);
/* Runs q and fails the test if it does not succeed. */
void pgfx_sql(PGconn *c, const char *q);
/* The single value q returns (malloc'd). */
char *pgfx_scalar(PGconn *c, const char *q);

#endif
