/* PostgreSQL helpers shared by the benchmarks. See bench_pg.h. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_pg.h"
#include "d2o/pg.h"

void bench_pg_sql(PGconn *c, const char *q)
{
    PGresult *r = PQexec(c, q);

    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench: %s: %s", q, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

PGconn *bench_pg_schema(const char *conninfo, const char *schema)
{
    char ci[1024], q[256], err[512];
    PGconn *c = d2o_pg_connect(conninfo, "ddb2os-bench", err, sizeof(err));

    if (!c) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    snprintf(q, sizeof(q), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    bench_pg_sql(c, q);
    snprintf(q, sizeof(q), "CREATE SCHEMA %s", schema);
    bench_pg_sql(c, q);
    PQfinish(c);
    snprintf(ci, sizeof(ci), "%s options=-csearch_path=%s", conninfo, schema);
    c = d2o_pg_connect(ci, "ddb2os-bench", err, sizeof(err));
    if (!c || d2o_pg_migrate(c, NULL, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    return c;
}

void bench_pg_drop(const char *conninfo, const char *schema)
{
    char q[256], err[512];
    PGconn *c = d2o_pg_connect(conninfo, "ddb2os-bench", err, sizeof(err));

    if (c) {
        snprintf(q, sizeof(q), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
        bench_pg_sql(c, q);
        PQfinish(c);
    }
}
