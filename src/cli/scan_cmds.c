/* ddb2os backfill and ddb2os verify: the command lines of src/backfill. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/backfill.h"
#include "d2o/cli.h"
#include "d2o/conf.h"
#include "d2o/util.h"

/* Options both commands share, by getopt value. */
struct cmd_ctx {
    const char *cmd;
    struct d2o_backfill_opts *b;
    struct d2o_verify_opts *v;
};

static int number(const char *cmd, const char *flag, const char *arg, int64_t min, int64_t max,
                  int64_t *out)
{
    if (d2o_parse_i64(arg, min, max, out) < 0) {
        return d2o_cli_usage_error(cmd, "--%s needs a number from %lld to %lld, got '%s'", flag,
                                   (long long)min, (long long)max, arg);
    }
    return 0;
}

static int on_opt(int opt, const char *arg, void *arg_ctx)
{
    struct cmd_ctx *c = arg_ctx;
    struct d2o_backfill_opts *b = c->b;
    struct d2o_verify_opts *v = c->v;
    int64_t n = 0;
    int r = 0;

    switch (opt) {
    case 't':
        if (b) {
            b->table = arg;
        } else {
            v->table = arg;
        }
        return 0;
    case 'w':
        r = number(c->cmd, "workers", arg, 1, 256, &n);
        if (b) {
            b->workers = (unsigned)n;
        } else {
            v->workers = (unsigned)n;
        }
        return r;
    case 's':
        r = number(c->cmd, "segments", arg, 1, 1000000, &n);
        if (b) {
            b->segments = (unsigned)n;
        } else {
            v->segments = (unsigned)n;
        }
        return r;
    case 'C':
        if (b) {
            b->consistent_read = true;
        } else {
            v->consistent_read = true;
        }
        return 0;
    case 'k':
        r = number(c->cmd, "skew-ms", arg, 0, 3600000, &n);
        if (b) {
            b->skew_ms = n;
        } else {
            v->skew_ms = n;
        }
        return r;
    case 'r':
        r = number(c->cmd, "rate-items", arg, 0, 100000000, &n);
        b->rate_items = (double)n;
        return r;
    case 'u':
        r = number(c->cmd, "rate-rcu", arg, 0, 100000000, &n);
        b->rate_rcu = (double)n;
        return r;
    case 'l':
        r = number(c->cmd, "page-limit", arg, 1, 100000, &n);
        b->page_limit = (unsigned)n;
        return r;
    case 'R':
        b->restart = true;
        return 0;
    case 'N':
        b->stream_check = false;
        return 0;
    case 'p':
        b->progress = 1;
        return 0;
    case 'q':
        b->progress = 0;
        return 0;
    case 'm':
        r = number(c->cmd, "progress-port", arg, 1, 65535, &n);
        b->metrics_port = (int)n;
        return r;
    case 'D':
        r = number(c->cmd, "page-deadline-ms", arg, 1000, 86400000, &n);
        b->page_deadline_ms = n;
        return r;
    case 'X':
        r = number(c->cmd, "stop-after-items", arg, 1, INT64_MAX, &n);
        b->stop_after_items = n;
        return r;
    case 'F':
        v->repair = true;
        return 0;
    case 'j':
        v->json = true;
        return 0;
    case 'n':
        r = number(c->cmd, "samples", arg, 0, 100000, &n);
        v->samples = (unsigned)n;
        return r;
    case 'd':
        v->work_dir = arg;
        return 0;
    case 'b':
        r = number(c->cmd, "bucket-items", arg, 16, 100000000, &n);
        v->bucket_items = (size_t)n;
        return r;
    default:
        return 0;
    }
}

int d2o_cmd_backfill(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os backfill --table T [OPTIONS] [-c FILE] [--KEY VALUE ...]\n\n"
        "Loads the items a table already holds into its OpenSearch index, while 'ddb2os run'\n"
        "keeps streaming the table's changes. A parallel Scan is spread over worker processes;\n"
        "each item goes through the stream's document path and bulk sink (refused items go to\n"
        "the dead-letter queue). Every item is written at one external version taken from\n"
        "DynamoDB's clock before the scan starts, minus --skew-ms, so any change the stream\n"
        "delivers from after that point wins in any order. The stream must be consumed from\n"
        "before that point: the backfill refuses to start while the stream has no lease rows or\n"
        "a shard still waits at LATEST. Progress per segment is kept in PostgreSQL: a stopped\n"
        "or killed backfill resumes where it stopped when run again, and a second backfill of\n"
        "the same table is refused while one runs. The key schema comes from DescribeTable\n"
        "when key_schema has no entry for the table.\n\n"
        "  -t, --table T            the DynamoDB table (required)\n"
        "  -w, --workers N          worker processes (default 2)\n"
        "  -s, --segments N         TotalSegments of a new backfill (default 4 x workers)\n"
        "      --rate-items N       at most N items/s in all (default: unlimited)\n"
        "      --rate-rcu N         at most N read capacity units/s in all (default: unlimited)\n"
        "      --page-limit N       items per Scan page (default 1000)\n"
        "      --consistent-read    strongly consistent Scan (twice the read capacity)\n"
        "      --skew-ms MS         clock-skew margin below DynamoDB's time (default 5000)\n"
        "      --restart            start over even if an unfinished backfill exists\n"
        "      --no-stream-check    do not require the stream to be consumed (a table that\n"
        "                           takes no writes)\n"
        "      --progress | --quiet progress line on stderr (default: when it is a terminal)\n"
        "      --progress-port P    serve the progress series on metrics_addr:P/metrics\n"
        "      --page-deadline-ms MS  a page's writes must be acknowledged within MS, else the\n"
        "                           worker exits and the page is read again (default 30000)\n\n"
        "Exit status: 0 every segment done, 1 stopped or failed (run again to resume),\n"
        "2 wrong arguments, 78 bad configuration.\n";
    static const struct option extra[] = {
        {"table", required_argument, NULL, 't'},
        {"workers", required_argument, NULL, 'w'},
        {"segments", required_argument, NULL, 's'},
        {"rate-items", required_argument, NULL, 'r'},
        {"rate-rcu", required_argument, NULL, 'u'},
        {"page-limit", required_argument, NULL, 'l'},
        {"consistent-read", no_argument, NULL, 'C'},
        {"skew-ms", required_argument, NULL, 'k'},
        {"restart", no_argument, NULL, 'R'},
        {"no-stream-check", no_argument, NULL, 'N'},
        {"progress", no_argument, NULL, 'p'},
        {"quiet", no_argument, NULL, 'q'},
        {"progress-port", required_argument, NULL, 'm'},
        {"page-deadline-ms", required_argument, NULL, 'D'},
        {"stop-after-items", required_argument, NULL, 'X'},
        {NULL, 0, NULL, 0},
    };
    struct d2o_backfill_opts o;
    struct cmd_ctx ctx = {"backfill", &o, NULL};
    struct d2o_config conf;
    int r;

    memset(&o, 0, sizeof(o));
    o.workers = 2;
    o.page_limit = 1000;
    o.skew_ms = 5000;
    o.stream_check = true;
    o.progress = -1;
    o.page_deadline_ms = 30000;
    r = d2o_cli_start(argc, argv, usage, extra, on_opt, &ctx, &conf);
    if (r >= 0) {
        return r;
    }
    if (!o.table || !o.table[0]) {
        d2o_conf_free(&conf);
        return d2o_cli_usage_error("backfill", "--table is required");
    }
    if (o.segments == 0) {
        o.segments = 4 * o.workers;
    }
    r = d2o_backfill_run(&conf, &o);
    d2o_conf_free(&conf);
    return r;
}

int d2o_cmd_verify(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os verify --table T [--repair] [--json] [OPTIONS] [-c FILE] [--KEY VALUE "
        "...]\n\n"
        "Compares a table with its OpenSearch index: a parallel Scan of the table (each item\n"
        "made into its document exactly as the stream would) against a point-in-time search of\n"
        "the index over _id, version and source. Reports, with counts and sample ids:\n"
        "  missing    an item without a live document (absent, or a tombstone)\n"
        "  extra      a live document without an item (with ttl_deletes = keep, documents whose\n"
        "             TTL attribute has expired are expected and not counted)\n"
        "  stale      the document differs and is older than the start of this scan\n"
        "  different  the document differs at a version from after the start of this scan\n"
        "Memory stays flat as the table grows: entries go to bucket files by a hash of the id,\n"
        "and one bucket at a time is compared in memory.\n\n"
        "  -t, --table T          the DynamoDB table (required)\n"
        "      --repair           read each differing item again (consistent GetItem) and write\n"
        "                         it, or delete its document, at a version taken from DynamoDB's\n"
        "                         clock before the reads, so newer stream changes still win\n"
        "      --json             the report as one JSON object on stdout\n"
        "  -w, --workers N        Scan processes (default 2)\n"
        "  -s, --segments N       TotalSegments (default 4 x workers)\n"
        "      --samples N        ids shown per class (default 10)\n"
        "      --consistent-read  strongly consistent Scan\n"
        "      --skew-ms MS       clock-skew margin below DynamoDB's time (default 5000)\n"
        "      --work-dir DIR     where the bucket files go (default $TMPDIR or /tmp)\n"
        "      --bucket-items N   entries per in-memory bucket (default 65536)\n\n"
        "Exit status: 0 the index matches the table (with --repair: every difference was\n"
        "rewritten), 1 it does not or the run failed, 2 wrong arguments, 78 bad configuration.\n";
    static const struct option extra[] = {
        {"table", required_argument, NULL, 't'},
        {"workers", required_argument, NULL, 'w'},
        {"segments", required_argument, NULL, 's'},
        {"consistent-read", no_argument, NULL, 'C'},
        {"skew-ms", required_argument, NULL, 'k'},
        {"repair", no_argument, NULL, 'F'},
        {"json", no_argument, NULL, 'j'},
        {"samples", required_argument, NULL, 'n'},
        {"work-dir", required_argument, NULL, 'd'},
        {"bucket-items", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    struct d2o_verify_opts o;
    struct cmd_ctx ctx = {"verify", NULL, &o};
    struct d2o_config conf;
    int r;

    memset(&o, 0, sizeof(o));
    o.workers = 2;
    o.skew_ms = 5000;
    o.samples = 10;
    o.bucket_items = 65536;
    r = d2o_cli_start(argc, argv, usage, extra, on_opt, &ctx, &conf);
    if (r >= 0) {
        return r;
    }
    if (!o.table || !o.table[0]) {
        d2o_conf_free(&conf);
        return d2o_cli_usage_error("verify", "--table is required");
    }
    if (o.segments == 0) {
        o.segments = 4 * o.workers;
    }
    r = d2o_verify_run(&conf, &o);
    d2o_conf_free(&conf);
    return r;
}
