/*
 * The OpenSearch bulk sink.
 *
 * Items (one bulk action each, as d2o_doc_build() makes them) are queued with an opaque cookie
 * and packed into _bulk requests of at most max_bytes and max_items; a partly filled request
 * goes out when its oldest item has waited flush_ms. Items from many shards share requests, and
 * at most max_in_flight requests are outstanding.
 *
 * Every item of every response is parsed (json-c) and classified (d2o_classify_bulk_item): done,
 * stale (409) and absent (404 on delete) are final; throttled items (429, rejected execution,
 * 503) are retried with capped full-jitter backoff and never dead-lettered; other retryable
 * items are retried up to max_attempts; permanent errors (mapping, parsing, other 4xx) are
 * reported for the dead-letter queue at once with OpenSearch's error type and reason. Only the
 * items that failed are sent again. A whole request that fails in transport, with a 5xx or 429,
 * is retried until OpenSearch answers (an outage stalls the sink; it never loses or
 * dead-letters a record for it), and so is a 401/403 (logged as an error: credentials are not the
 * record's fault); a 413 splits the request, and a single item that is still too
 * large is dead-lettered.
 *
 * Each item's final outcome reaches the caller exactly once through the done callback.
 *
 * @process worker: one sink per process, driven by the process's event loop (tick + http_run).
 */
#ifndef D2O_BULK_H
#define D2O_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2o/classify.h"

struct d2o_http;
struct d2o_sigv4_signer;
struct d2o_aws_creds;
struct d2o_config;

enum d2o_bulk_outcome {
    D2O_BULK_DONE = 0, /* indexed or deleted */
    D2O_BULK_STALE,    /* a newer version was already there (409) */
    D2O_BULK_ABSENT,   /* delete of a missing document */
    D2O_BULK_DLQ,      /* cannot succeed: store it in the dead-letter queue */
};

/* The final outcome of one item. Strings are valid during the callback only. */
struct d2o_bulk_result {
    enum d2o_bulk_outcome outcome;
    int status;              /* last HTTP status of the item (0 if none) */
    const char *error_class; /* DLQ: OpenSearch's error type, or "retries_exhausted", ... */
    const char *error_message;
    unsigned attempts;       /* requests that carried the item */
    int64_t first_failed_us; /* wall clock, 0 if it never failed */
    int64_t last_failed_us;
};

typedef void (*d2o_bulk_done_fn)(void *cookie, const struct d2o_bulk_result *res, void *arg);

struct d2o_bulk_opts {
    const char *url;        /* OpenSearch base URL, e.g. http://127.0.0.1:9200 (copied) */
    const char *basic_user; /* basic auth when set (copied) */
    const char *basic_password;
    struct d2o_sigv4_signer *signer; /* SigV4 when set (borrowed, with creds) */
    const struct d2o_aws_creds *creds;
    bool sign_content_sha256; /* aoss needs x-amz-content-sha256 */
    size_t max_bytes;         /* default 5 MiB */
    size_t max_items;         /* default 5000 */
    int64_t flush_ms;         /* default 1000 */
    unsigned max_in_flight;   /* default 2 */
    int64_t retry_base_ms;    /* default 100 */
    int64_t retry_cap_ms;     /* default 30000 */
    unsigned max_attempts;    /* for RETRY items; default 10 */
    d2o_bulk_done_fn done;
    void *done_arg;
};

struct d2o_bulk_stats {
    uint64_t requests, request_failures, items_sent, done, stale, absent, retried, dlq;
    uint64_t splits;
};

struct d2o_bulk;

/* Fills o from the configuration's bulk_*, retry_*, item_max_attempts and opensearch_* keys. */
void d2o_bulk_opts_from_config(struct d2o_bulk_opts *o, const struct d2o_config *c);

/* Creates a sink on http (borrowed). Returns NULL on bad options (errstr) or no memory. */
struct d2o_bulk *d2o_bulk_new(struct d2o_http *http, const struct d2o_bulk_opts *opts, char *errstr,
                              size_t errstr_size);
/* Frees the sink. Items still queued or in flight are dropped without callbacks: drain first
 * (d2o_bulk_pending() == 0) unless the process is exiting. NULL-safe. */
void d2o_bulk_free(struct d2o_bulk *b);

/*
 * Queues one item: ndjson (len bytes: the action line, and the document line for index) is
 * copied; is_delete tells how a 404 is read. Returns 0 or -ENOMEM. @blocking no.
 */
__attribute__((warn_unused_result)) int d2o_bulk_add(struct d2o_bulk *b, const char *ndjson,
                                                     size_t len, bool is_delete, void *cookie);

/* Sends whatever is due at now_ms (monotonic): full requests, flush timeouts, retries. */
void d2o_bulk_tick(struct d2o_bulk *b, int64_t now_ms);
/* Milliseconds until the next tick has work (0 = now), or -1 when nothing waits on a timer. */
int64_t d2o_bulk_next_ms(const struct d2o_bulk *b, int64_t now_ms);
/* Items queued, waiting for a retry or in flight. */
size_t d2o_bulk_pending(const struct d2o_bulk *b);
/* Sends everything queued now, regardless of the flush timer (used when draining). */
void d2o_bulk_flush(struct d2o_bulk *b);
const struct d2o_bulk_stats *d2o_bulk_stats(const struct d2o_bulk *b);

/*
 * Drives the sink on its own (tick + d2o_http_run) until every item has its outcome or
 * timeout_ms passes. Returns 0, or -ETIMEDOUT. For tools and tests; a worker drives the sink
 * from its event loop instead. @blocking yes.
 */
int d2o_bulk_drain(struct d2o_bulk *b, int64_t timeout_ms);

/* ---- pure parts, exposed for tests and fuzzing ---- */

struct d2o_bulk_item_status {
    int status;
    char error_type[96];
    char error_reason[512];
};

/*
 * Parses a _bulk response for n items into out[0..n-1]. Returns 0, or -EINVAL with errstr when
 * the body is not a bulk response or holds another number of items than n.
 */
__attribute__((warn_unused_result)) int d2o_bulk_parse_response(const char *body, size_t len,
                                                                size_t n,
                                                                struct d2o_bulk_item_status *out,
                                                                char *errstr, size_t errstr_size);

#endif
