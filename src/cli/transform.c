/*
 * ddb2os transform: change records on stdin (one decoded Kinesis Data JSON object per line), the
 * exact bulk NDJSON the sink would send on stdout, one "line N: reason" per bad line on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/cli.h"
#include "d2o/document.h"
#include "d2o/record.h"

static const char usage[] =
    "usage: ddb2os transform [-c FILE] [--KEY=VALUE ...] < records.jsonl > bulk.ndjson\n"
    "\n"
    "Reads DynamoDB change records, one JSON object per line (the decoded Data of the table's\n"
    "Kinesis stream records), and prints exactly the _bulk NDJSON ddb2os would send for them:\n"
    "an index action line and the document, or a delete action line. Settings are the daemon's\n"
    "(index_map, key_schema, delete_mode, ttl_deletes, ...). A record's version depends on the\n"
    "record alone, so the output for a line does not depend on the lines before it.\n"
    "\n"
    "Each bad line is reported on stderr as 'line N: reason' and skipped. Exit status: 0 when\n"
    "every line was good, 1 when some line was bad, 2 on wrong arguments, 78 on a bad setting.\n";

int d2o_cmd_transform(int argc, char **argv)
{
    struct d2o_config conf;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0, bad = 0;
    int r = d2o_cli_start(argc, argv, usage, NULL, NULL, NULL, &conf);

    if (r >= 0) {
        return r;
    }
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        struct d2o_record rec;
        struct d2o_doc_op op;
        char err[512];
        size_t n = (size_t)len;

        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            n--;
        }
        if (strspn(line, " \t") >= n) {
            continue;
        }
        r = d2o_record_parse(line, n, &rec, err, sizeof(err));
        if (r == 0) {
            r = d2o_doc_build(&rec, &conf, &op, err, sizeof(err));
            d2o_record_free(&rec);
        }
        if (r < 0) {
            fprintf(stderr, "line %lu: %s\n", lineno, err);
            bad++;
            continue;
        }
        fwrite(op.ndjson.data, 1, op.ndjson.len, stdout);
        d2o_doc_op_free(&op);
    }
    free(line);
    d2o_conf_free(&conf);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "ddb2os transform: cannot write the output\n");
        return D2O_EXIT_FAIL;
    }
    return bad ? D2O_EXIT_FAIL : D2O_EXIT_OK;
}
