/*
 * Backfill and verify: bringing a table's existing items into OpenSearch, and proving that the
 * index equals the table.
 *
 * Both read the table with a parallel Scan (d2o_ddb) spread over worker processes, and turn every
 * item into a document through the stream's own path: the item becomes an INSERT change record
 * (d2o_ddb_item_record), which d2o_record_parse() and d2o_doc_build_at() turn into the bulk item,
 * and the bulk sink writes it; refused items go to the dead-letter queue with that record, so
 * `ddb2os dlq replay` works on them unchanged.
 *
 * Versions (docs/architecture.md, "Backfill versions"): every scanned item is written at one
 * external version V = (DynamoDB's time before the scan started - skew margin) in microseconds,
 * kept in PostgreSQL for the whole backfill, so every change the stream delivers from after the
 * scan started has a higher version and wins in any order.
 *
 * @process CLI (the coordinator) and the worker processes it forks.
 */
#ifndef D2O_BACKFILL_H
#define D2O_BACKFILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2o/buf.h"
#include "d2o/document.h"

struct d2o_config;
struct json_object;

/* Options of `ddb2os backfill`. */
struct d2o_backfill_opts {
    const char *table;
    unsigned workers;         /* processes; default 2 */
    unsigned segments;        /* TotalSegments of a new backfill; default 4 x workers */
    double rate_items;        /* items/s for the whole backfill, 0 = unlimited */
    double rate_rcu;          /* read capacity units/s for the whole backfill, 0 = unlimited */
    unsigned page_limit;      /* Scan Limit, default 1000 */
    bool consistent_read;     /* strongly consistent Scan (twice the RCU) */
    int64_t skew_ms;          /* clock-skew margin subtracted from DynamoDB's time; default 5000 */
    bool restart;             /* start over even if an unfinished backfill exists */
    bool stream_check;        /* refuse unless the stream is consumed from before V (default on) */
    int progress;             /* 1 = progress line, 0 = none, -1 = when stderr is a terminal */
    int metrics_port;         /* 0 = no metrics endpoint, else 127.0.0.1:port (metrics_addr) */
    int64_t page_deadline_ms; /* a page's writes must be acknowledged within this; default 30000 */
    int64_t stop_after_items; /* test hook: the workers stop (exit 1) after about this many */
};

/* Runs a backfill. Returns a D2O_EXIT_* code; messages go to stderr. @blocking yes. */
int d2o_backfill_run(struct d2o_config *conf, const struct d2o_backfill_opts *o);

/* Options of `ddb2os verify`. */
struct d2o_verify_opts {
    const char *table;
    unsigned workers;  /* Scan processes; default 2 */
    unsigned segments; /* default 4 x workers */
    bool repair;       /* rewrite what differs through the version-safe path */
    bool json;         /* JSON report on stdout */
    unsigned samples;  /* ids shown per class; default 10 */
    bool consistent_read;
    int64_t skew_ms;      /* as for the backfill; default 5000 */
    const char *work_dir; /* temporary bucket files; default $TMPDIR or /tmp */
    size_t bucket_items;  /* entries per in-memory bucket; default 65536 */
};

/* Runs a verification. Returns 0 when the index matches the table (after a repair: when the
 * repair fixed everything), 1 when it does not or the run failed, 2/78 for usage/config. */
int d2o_verify_run(struct d2o_config *conf, const struct d2o_verify_opts *o);

/* ---- shared pure helpers (bf_item.c) ---- */

/*
 * The change record a scanned item stands for: {"eventName":"INSERT","eventSource":
 * "ddb2os:scan","tableName":T,"dynamodb":{"ApproximateCreationDateTime":version_us,
 * "ApproximateCreationDateTimePrecision":"MICROSECOND","Keys":K,"NewImage":item}}, appended to
 * out. Returns 0, -EINVAL with errstr (a key attribute is missing) or -ENOMEM.
 */
__attribute__((warn_unused_result)) int
d2o_ddb_item_record(const char *table, struct json_object *item, const char *hash_key,
                    const char *range_key, int64_t version_us, struct d2o_buf *out, char *errstr,
                    size_t errstr_size);

/*
 * The backfill version for DynamoDB's time server_ms (0 = unknown: local_ms is used) minus
 * skew_ms, in microseconds. When both clocks are known the earlier one is taken.
 */
int64_t d2o_backfill_version(int64_t server_ms, int64_t local_ms, int64_t skew_ms);

/*
 * Appends the canonical text of a JSON value: no white space outside strings, object members
 * sorted by key, array elements sorted by their canonical text (DynamoDB sets have no order, and
 * a document does not say which arrays were sets), scalars byte for byte as given. Two documents
 * ddb2os built from the same item have the same canonical text whatever the order DynamoDB listed
 * attributes and set members in. Returns 0, -EINVAL (not one JSON value; nothing appended) or
 * -ENOMEM. Pure.
 */
__attribute__((warn_unused_result)) int d2o_json_canonical(const char *text, size_t len,
                                                           struct d2o_buf *out);

/* One hit of an OpenSearch search page, pointing into the answer's text. */
struct d2o_os_hit {
    const char *id; /* decoded _id, NUL-terminated, owned by the page */
    int64_t version;
    const char *source; /* the _source value's exact bytes */
    size_t source_len;
    const char *sort; /* the sort value's exact bytes, for search_after */
    size_t sort_len;
};

struct d2o_os_page {
    struct d2o_os_hit *hits;
    size_t n_hits;
    char *pit_id; /* the answer's pit_id, NULL if absent */
    char *ids;    /* storage of the decoded ids */
};

/*
 * Parses a search answer (len bytes) into page without copying the sources: each hit's _source
 * and sort are spans of body, so a document compares byte for byte with what was indexed.
 * Returns 0, -EINVAL with errstr (not a search answer, a hit without _id/_version/_source) or
 * -ENOMEM. Pure.
 */
__attribute__((warn_unused_result)) int d2o_os_parse_hits(const char *body, size_t len,
                                                          struct d2o_os_page *page, char *errstr,
                                                          size_t errstr_size);
void d2o_os_page_free(struct d2o_os_page *page);

#endif
