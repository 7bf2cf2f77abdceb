#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/pg.h"
#include "d2o_test.h"
#include "pg_fixture.h"

static char schema[64];
static char conninfo[1024];

static PGconn *connect_to(const char *info)
{
    char err[512];
    PGconn *c = d2o_pg_connect(info, "ddb2os-test", err, sizeof(err));

    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

const char *pgfx_conninfo(void)
{
    return conninfo;
}

PGconn *pgfx_conn(void)
{
    return connect_to(conninfo);
}

void pgfx_sql(PGconn *c, const char *q)
{
    PGresult *r = PQexec(c, q);

    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
}

char *pgfx_scalar(PGconn *c, const char *q)
{
    PGresult *r = PQexec(c, q);
    char *v;

    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", q,
                  PQresultErrorMessage(r));
    v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

void pgfx_setup(const char *prefix, int migrate)
{
    const char *base = getenv("D2O_TEST_PG");
    char q[160], err[512];
    PGconn *c;

    if (!base || !*base) {
        ck_abort_msg("D2O_TEST_PG is not set: run scripts/services start and export "
                     "scripts/services env");
    }
    snprintf(schema, sizeof(schema), "%s_%d_%lld", prefix, (int)getpid(),
             (long long)(d2o_mono_us() % 1000000));
    c = connect_to(base);
    snprintf(q, sizeof(q), "CREATE SCHEMA %s", schema);
    pgfx_sql(c, q);
    PQfinish(c);
    snprintf(conninfo, sizeof(conninfo), "%s options=-csearch_path=%s", base, schema);
    if (migrate) {
        c = pgfx_conn();
        ck_assert_msg(d2o_pg_migrate(c, NULL, NULL, err, sizeof(err)) == 0, "%s", err);
        PQfinish(c);
    }
}

void pgfx_teardown(void)
{
    char q[160], err[512];
    PGconn *c = d2o_pg_connect(getenv("D2O_TEST_PG"), "ddb2os-test", err, sizeof(err));

    if (c) {
        snprintf(q, sizeof(q), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
        PQclear(PQexec(c, q));
        PQfinish(c);
    }
}
