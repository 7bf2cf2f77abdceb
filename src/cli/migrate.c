/* ddb2os migrate: brings the PostgreSQL schema up to this binary's version. */
#include <stdio.h>
#include <string.h>

#include "d2o/cli.h"
#include "d2o/pg.h"

static const char usage[] =
    "usage: ddb2os migrate [--status] [-c FILE] [--pg-conninfo=CONNINFO]\n"
    "\n"
    "Applies the schema migrations this ddb2os carries to the database named by pg_conninfo\n"
    "(empty: libpq's PG* environment), in the schema of the connection's search_path. Safe to\n"
    "run from several places at once; the daemon also runs it at start. --status prints the\n"
    "database's schema version and this binary's, and changes nothing.\n";

static int on_opt(int opt, const char *arg, void *ctx)
{
    (void)arg;
    if (opt == 's') {
        *(int *)ctx = 1;
        return 0;
    }
    return D2O_EXIT_USAGE;
}

int d2o_cmd_migrate(int argc, char **argv)
{
    static const struct option extra[] = {{"status", no_argument, NULL, 's'}, {NULL, 0, NULL, 0}};
    struct d2o_config conf;
    PGconn *c = NULL;
    char err[512];
    int status_only = 0, from = 0, to = 0;
    int r = d2o_cli_start(argc, argv, usage, extra, on_opt, &status_only, &conf);

    if (r >= 0) {
        return r;
    }
    c = d2o_pg_connect(conf.pg_conninfo, "ddb2os migrate", err, sizeof(err));
    if (!c) {
        fprintf(stderr, "ddb2os migrate: %s\n", err);
        r = D2O_EXIT_FAIL;
        goto out;
    }
    if (status_only) {
        if (d2o_pg_schema_version(c, &from, err, sizeof(err)) < 0) {
            fprintf(stderr, "ddb2os migrate: %s\n", err);
            r = D2O_EXIT_FAIL;
            goto out;
        }
        printf("database schema version %d, this ddb2os knows %d%s\n", from, d2o_pg_schema_latest,
               from < d2o_pg_schema_latest   ? " (run 'ddb2os migrate')"
               : from > d2o_pg_schema_latest ? " (the database is newer)"
                                             : "");
        r = D2O_EXIT_OK;
        goto out;
    }
    if (d2o_pg_migrate(c, &from, &to, err, sizeof(err)) < 0) {
        fprintf(stderr, "ddb2os migrate: %s\n", err);
        r = D2O_EXIT_FAIL;
        goto out;
    }
    if (from == to) {
        printf("schema already at version %d\n", to);
    } else {
        printf("schema migrated from version %d to %d\n", from, to);
    }
    r = D2O_EXIT_OK;
out:
    PQfinish(c);
    d2o_conf_free(&conf);
    return r;
}
