/* ddb2os run: the daemon (a supervisor and its workers; see include/d2o/worker.h). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "d2o/cli.h"
#include "d2o/conf.h"
#include "d2o/log.h"
#include "d2o/worker.h"

static int on_opt(int opt, const char *arg, void *ctx)
{
    bool *single = ctx;

    (void)arg;
    if (opt == 'S') {
        *single = true;
    }
    return 0;
}

int d2o_cmd_run(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os run [--single-process] [-c FILE] [--KEY VALUE ...]\n\n"
        "Runs the daemon: a supervisor that applies the database migrations, forks 'workers'\n"
        "worker processes (default: one per CPU) and serves /metrics, /healthz and /readyz on\n"
        "metrics_addr:metrics_port. The workers share the stream's shards through the lease\n"
        "table. SIGTERM or SIGINT drains (finish the in-flight batch, checkpoint, release the\n"
        "leases, exit 0); a second one at least a second later releases the leases at once;\n"
        "SIGHUP reopens log_file and reloads the keys marked 'Reload: yes'. Workers exit when\n"
        "the supervisor dies. Exit 78: the configuration is wrong (also a metrics port that\n"
        "cannot be bound, or PostgreSQL refusing the credentials or database).\n\n"
        "  --single-process   run one worker in this process (for debugging)\n";
    static const struct option extra[] = {
        {"single-process", no_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    struct d2o_config conf;
    bool single = false;
    int r = d2o_cli_start(argc, argv, usage, extra, on_opt, &single, &conf);

    if (r >= 0) {
        return r;
    }
    if (*conf.log_file && !freopen(conf.log_file, "a", stderr)) {
        fprintf(stdout, "ddb2os run: cannot open log_file '%s'\n", conf.log_file);
        d2o_conf_free(&conf);
        return D2O_EXIT_CONFIG;
    }
    setvbuf(stderr, NULL, _IOLBF, 0);
    r = d2o_supervisor_run(&conf, single);
    d2o_conf_free(&conf);
    return r;
}
