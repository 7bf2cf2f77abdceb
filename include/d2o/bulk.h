/*
 * The OpenSearch bulk sink.
 *
 * Items (one bulk action each, as d2o_doc_build() makes them) are queued with an opaque cookie
 * and packed into _bulk requests of at most max_bytes and max_items (a single item larger than
 * max_bytes goes alone); a partly filled request goes out when its oldest item has waited
 * flush_ms. Items from many shards share requests, and at most max_in_flight requests are
 * outstanding.
 *
 * Order per document: items for the same (index, id) are sent one at a time, in the order they
 * were added. A later item waits until every earlier item of its document has its final outcome,
 * so a retried older write can never land after a newer delete once OpenSearch has forgotten the
 * delete's tombstone (index.gc_deletes): nothing is resurrected and nothing overtakes.
 *
 * Every item of every response is parsed (yajl), matched to its request item by position (the
 * count and, when present, the _id must match) and classified (d2o_classify_bulk_item): done,
 * stale (409) and absent (404 on delete) are final; throttled items (429, rejected execution,
 * 503) and items of an index that takes no writes for now (cluster_block_exception, an index
 * being created; counted in stats.blocked) are retried with capped full-jitter backoff and
 * never dead-lettered; other retryable
 * items are retried up to max_attempts; permanent errors (mapping, parsing, other 4xx) are
 * reported for the dead-letter queue at once with OpenSearch's error type and reason. Only the
 * items that failed are sent again; an item that succeeded is never sent again. A whole request
 * that fails in transport, with a 5xx or 429, is retried until OpenSearch answers (an outage
 * stalls the sink; it never loses or dead-letters a record for it), and so is a 401/403 (logged
 * as an error: credentials are not the record's fault); a 413 (or a 400 for the body as a whole)
 * splits the request in halves, and a single item that is still refused is dead-lettered
 * ("document_too_large" for 413). An unreadable response is retried up to max_attempts.
 *
 * Each item's final outcome reaches the caller exactly once through the done callback.
 *
 * Authentication: none, basic (an Authorization header built once), or SigV4 through the HTTP
 * layer's signing hook (service es, or aoss with x-amz-content-sha256). The HTTP layer hashes the
 * body once per request it starts; the sink never re-sends an unchanged body (a retry carries
 * only the items still pending, so it is a new body), so each body is hashed exactly once.
 *
 * @process worker: one sink per process, driven by the process's event loop (tick + http_run).
 */
#ifndef D2O_BULK_H
#define D2O_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2o/buf.h"
#include "d2o/classify.h"
#include "d2o/http.h"

struct d2o_sigv4_signer;
struct d2o_aws_creds;
struct d2o_config;

/* The request path; filter_path shrinks the response to what the sink reads. */
#define D2O_BULK_PATH "/_bulk?filter_path=errors,items.*.status,items.*.error,items.*._id"

enum d2o_bulk_outcome {
    D2O_BULK_DONE = 0, /* indexed or deleted */
    D2O_BULK_STALE,    /* a newer version was already there (409) */
    D2O_BULK_ABSENT,   /* delete of a missing document */
    D2O_BULK_DLQ,      /* cannot succeed: store it in the dead-letter queue */
    D2O_BULK_DROPPED,  /* refused by opts.keep before a send: never written (lease lost) */
};

/* "done", "stale", "absent", "dlq", "dropped". */
const char *d2o_bulk_outcome_name(enum d2o_bulk_outcome o);

/* The final outcome of one item. Strings are valid during the callback only. */
struct d2o_bulk_result {
    enum d2o_bulk_outcome outcome;
    int status; /* last HTTP status of the item (0 if none) */
    /* DLQ: OpenSearch's error type, or "retries_exhausted", "document_too_large",
     * "request_refused", "bad_response" */
    const char *error_class;
    const char *error_message;
    unsigned attempts;       /* requests that carried the item */
    int64_t first_failed_us; /* wall clock, 0 if it never failed */
    int64_t last_failed_us;
};

typedef void (*d2o_bulk_done_fn)(void *cookie, const struct d2o_bulk_result *res, void *arg);

/*
 * How the sink starts a request: d2o_http_start() on the sink's d2o_http unless replaced (unit
 * tests script the responses). Same contract as d2o_http_start(): 0 and cb called exactly once
 * later (never from inside this call), or a negative errno and cb never called.
 */
typedef int (*d2o_bulk_start_fn)(void *ctx, const struct d2o_http_request *req, d2o_http_done_fn cb,
                                 void *cb_arg);

/* One item of a request as the pre-send filter sees it. Valid during the call only. */
struct d2o_bulk_filter_item {
    const char *index; /* the ordering key; both NULL when the action line had none */
    const char *id;
    int64_t version; /* the external version given to d2o_bulk_add_item(); 0: unknown */
    bool is_delete;
    void *cookie;
};

/*
 * The pre-send filter (optional): called once per request, with the items it is about to carry,
 * immediately before it is sent; retries and the halves of a split are new requests and are
 * filtered again. It sets drop[i] (all false on entry) for items that must not go out: they are
 * not sent and finish as D2O_BULK_STALE. It returns 0, or a negative errno when it cannot
 * decide: then nothing of the request goes out, and its items wait and are tried again with the
 * backoff of a failed request (an item never goes out unfiltered). It must not call back into
 * the sink.
 */
typedef int (*d2o_bulk_filter_fn)(void *arg, const struct d2o_bulk_filter_item *items, size_t n,
                                  bool *drop);

/*
 * The pre-send filter's asynchronous form (optional, instead of filter): starts the check of
 * the items a request is about to carry and returns 0; the answer comes later through
 * d2o_bulk_check_done(check, rc, drop) (it may come before the return). Until then the items
 * wait, in one of the max_in_flight request slots; the request goes out with the answer. A
 * negative return or rc is a filter that cannot decide (the items wait with backoff). It must
 * not call back into the sink.
 */
struct d2o_bulk_check;
typedef int (*d2o_bulk_filter_start_fn)(void *arg, const struct d2o_bulk_filter_item *items,
                                        size_t n, struct d2o_bulk_check *check);
/* The answer to a check (drop[0..n-1], as the filter's; read only when rc >= 0). After
 * d2o_bulk_free() it only frees what the check held. */
void d2o_bulk_check_done(struct d2o_bulk_check *check, int rc, const bool *drop);

struct d2o_bulk_opts {
    const char *url;        /* OpenSearch base URL, e.g. http://127.0.0.1:9200 (copied) */
    const char *basic_user; /* basic auth when set (copied) */
    const char *basic_password;
    struct d2o_sigv4_signer *signer; /* SigV4 when set (borrowed, with creds) */
    const struct d2o_aws_creds *creds;
    bool sign_content_sha256; /* aoss needs x-amz-content-sha256 */
    size_t max_bytes;         /* default 5 MiB */
    size_t max_items;         /* default 5000 */
    int64_t flush_ms;         /* default 1000; negative: default; 0: send at once */
    unsigned max_in_flight;   /* default 2 */
    int64_t retry_base_ms;    /* default 100 */
    int64_t retry_cap_ms;     /* default 30000 */
    unsigned max_attempts;    /* for RETRY items and unreadable responses; default 10 */
    d2o_bulk_done_fn done;
    void *done_arg;
    /* Optional: called with each answered request's transfer time and HTTP status (0 when it
     * failed in transport), with done_arg; for the latency histogram. A health probe
     * (d2o_bulk_ping) reports total_us -1. */
    void (*observe)(int64_t total_us, long status, void *arg);
    d2o_bulk_filter_fn filter;             /* optional, with filter_arg */
    d2o_bulk_filter_start_fn filter_start; /* optional, with filter_arg; instead of filter */
    void *filter_arg;
    /* Optional: whether an item may still be sent, with its cookie and done_arg. Every item is
     * checked when it is put into a request, and every item not in flight when
     * d2o_bulk_recheck() was called or a request of it was answered: one it refuses is never
     * sent again and gets the outcome D2O_BULK_DROPPED. A writer that lost its lease says no. */
    bool (*keep)(void *cookie, void *arg);
    /* Test seams (NULL: the real thing). */
    int64_t (*now_ms)(void); /* monotonic clock; default d2o_mono_ms */
    d2o_bulk_start_fn start; /* transport; default d2o_http_start on the sink's http */
    void *start_ctx;
};

struct d2o_bulk_stats {
    uint64_t requests, request_failures, items_sent, done, stale, absent, retried, dlq;
    uint64_t splits;
    uint64_t throttled;     /* item results 429/503/rejected execution */
    uint64_t bad_responses; /* 200 answers that could not be read or did not match */
    uint64_t filtered;      /* items the pre-send filter dropped (also counted as stale) */
    uint64_t filter_failures;
    uint64_t dropped; /* items opts.keep refused */
    uint64_t blocked; /* item results that said the index takes no writes for now */
};

/* One item for d2o_bulk_add_item(). Everything is copied. */
struct d2o_bulk_item {
    const char *ndjson; /* the action line and, for index, the document line */
    size_t len;
    const char *index; /* the document's index and id (the ordering key); when NULL they are */
    const char *id;    /* read from the action line */
    bool is_delete;    /* how a 404 is read */
    void *cookie;      /* handed back with the outcome */
    int64_t version;   /* the external version, for the pre-send filter (0: unknown) */
};

struct d2o_bulk;

/* Fills o from the configuration's bulk_*, retry_*, item_max_attempts and opensearch_* keys
 * (strings borrowed from c). Leaves done, signer and creds to the caller. */
void d2o_bulk_opts_from_config(struct d2o_bulk_opts *o, const struct d2o_config *c);

/*
 * Creates a sink on http (borrowed; may be NULL when opts->start is set). Returns NULL on bad
 * options (errstr) or no memory. @process worker.
 */
struct d2o_bulk *d2o_bulk_new(struct d2o_http *http, const struct d2o_bulk_opts *opts, char *errstr,
                              size_t errstr_size);
/* Frees the sink. Items still queued are dropped without callbacks: drain first
 * (d2o_bulk_pending() == 0) unless the process is exiting. Requests still in flight are
 * orphaned and freed when the HTTP layer completes them. NULL-safe. */
void d2o_bulk_free(struct d2o_bulk *b);

/*
 * Queues one item (copied). A missing final newline is added. Returns 0 or -ENOMEM (nothing
 * queued). @blocking no.
 */
__attribute__((warn_unused_result)) int d2o_bulk_add_item(struct d2o_bulk *b,
                                                          const struct d2o_bulk_item *item);
/* d2o_bulk_add_item() with the index and id read from the action line. */
__attribute__((warn_unused_result)) int d2o_bulk_add(struct d2o_bulk *b, const char *ndjson,
                                                     size_t len, bool is_delete, void *cookie);

/* Sends whatever is due at now_ms (monotonic): full requests, flush timeouts, retries. */
void d2o_bulk_tick(struct d2o_bulk *b, int64_t now_ms);
/* Milliseconds until the next tick has work (0 = now), or -1 when nothing waits on a timer (an
 * answer from OpenSearch is awaited, or nothing is pending). */
int64_t d2o_bulk_next_ms(const struct d2o_bulk *b, int64_t now_ms);
/* Items without a final outcome yet: queued, waiting behind their document, waiting for a retry,
 * or in flight. */
size_t d2o_bulk_pending(const struct d2o_bulk *b);
/* Bytes of NDJSON held by pending items (for the caller's memory bound). */
size_t d2o_bulk_pending_bytes(const struct d2o_bulk *b);
/* Runs opts.keep over every item that is not in flight before the next request starts, so the
 * items it refuses (a lost lease's) are dropped, with their outcome, before anything else is
 * sent. @blocking no. */
void d2o_bulk_recheck(struct d2o_bulk *b);
/* Sends everything queued at the next ticks, regardless of the flush timer (draining). */
void d2o_bulk_flush(struct d2o_bulk *b);
const struct d2o_bulk_stats *d2o_bulk_stats(const struct d2o_bulk *b);
/* Sends GET / to OpenSearch with the sink's authentication (one at a time); the answer goes to
 * opts.observe with total_us -1. For readiness while no documents flow. 0 or a negative errno. */
int d2o_bulk_ping(struct d2o_bulk *b);
/* Replaces the borrowed SigV4 credentials (after the worker refreshed them). */
void d2o_bulk_set_creds(struct d2o_bulk *b, const struct d2o_aws_creds *creds);

/*
 * Drives the sink on its own (tick + d2o_http_run) until every item has its outcome or
 * timeout_ms passes. Returns 0, -ETIMEDOUT, or -EINVAL without an http client. For tools and
 * tests; a worker drives the sink from its event loop instead. @blocking yes.
 */
int d2o_bulk_drain(struct d2o_bulk *b, int64_t timeout_ms);

/* ---- pure parts (bulk_format.c, bulk_resp.c), exposed for tests and fuzzing ---- */

/*
 * How many of the n candidate items (their NDJSON lengths in lens) one request takes: at least
 * one (a single item larger than max_bytes goes alone), then as many as keep the body within
 * max_bytes and the count within max_items. 0 only when n is 0.
 */
size_t d2o_bulk_batch_count(const size_t *lens, size_t n, size_t max_bytes, size_t max_items);

/*
 * Reads the action line (the first line of ndjson): the verb ("index", "create", "update",
 * "delete") and the document's _index and _id, into malloc'ed *index and *id (the caller frees
 * them; NULL when absent). Returns 0, -EINVAL with errstr when the line is not a bulk action
 * object, or -ENOMEM.
 */
__attribute__((warn_unused_result)) int d2o_bulk_action_key(const char *ndjson, size_t len,
                                                            char verb[8], char **index, char **id,
                                                            char *errstr, size_t errstr_size);

/* Applies c's bulk_flush_ms, retry_base_ms, retry_cap_ms and item_max_attempts (the keys
 * SIGHUP reloads) to a running sink. Items already waiting keep the deadline they have. */
void d2o_bulk_reload(struct d2o_bulk *b, const struct d2o_config *c);

struct d2o_bulk_item_status {
    int status;
    char error_type[96];
    char error_reason[512]; /* reason, then "; caused by <type>: <reason>" when given */
};

/*
 * Parses a _bulk response for n items into out[0..n-1], by position. ids (optional; entries may
 * be NULL) are the _id of each request item: a response item whose _id differs is refused.
 * Returns 0, or -EINVAL with errstr when the body is not a bulk response, holds another number
 * of items than n, or an item is unreadable or out of place; -ENOMEM. Pure.
 */
__attribute__((warn_unused_result)) int d2o_bulk_parse_response(const char *body, size_t len,
                                                                size_t n, const char *const *ids,
                                                                struct d2o_bulk_item_status *out,
                                                                char *errstr, size_t errstr_size);

#endif
