/*
 * Kinesis Data Streams client (JSON 1.1 protocol over the d2o_http layer, SigV4 service
 * "kinesis") and the pure parsers of its responses.
 *
 * Sequence numbers are decimal STRINGS of up to 129 digits: never parse them into an integer;
 * compare them with d2o_kinesis_seq_cmp().
 *
 * Errors: functions return 0, D2O_KINESIS_E_FAILED (the call or its response failed; *err says
 * what and what to do, through the one classifier), or a negative errno for local problems
 * (-ENOMEM, -EINVAL for bad arguments). Actions a caller sees in err->action:
 *   RETRY / THROTTLE   back off (d2o_backoff_ms) and call again;
 *   REFRESH_ITERATOR   the iterator expired: get a new one with AFTER_SEQUENCE_NUMBER = the last
 *                      processed record (AT_SEQUENCE_NUMBER/TRIM_HORIZON if none was processed);
 *   REFRESH_CREDS      refresh the credentials once, then treat a repeat as PERMANENT;
 *   PERMANENT / FATAL  stop reading this stream; err->message names the stream and the reason.
 * A malformed, truncated or unexpected response is err->code "MalformedResponse", action RETRY.
 *
 * @process worker (the client borrows the process's struct d2o_http; create it after fork()).
 */
#ifndef D2O_KINESIS_H
#define D2O_KINESIS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2o/classify.h"
#include "d2o/http.h"

struct d2o_config;
struct d2o_aws_creds;

#define D2O_KINESIS_E_FAILED 1
#define D2O_KINESIS_SEQ_MAX_DIGITS 129
#define D2O_KINESIS_PUT_MAX 500

/* What went wrong with one call; filled whenever D2O_KINESIS_E_FAILED is returned. */
struct d2o_kinesis_err {
    enum d2o_action action;
    long status;        /* HTTP status, 0 if none */
    CURLcode curl_code; /* transport result */
    char code[128];     /* bare AWS error code, "MalformedResponse", or "" for transport errors */
    char message[512];  /* for humans: operation, stream, reason, AWS message */
};

/* One record of GetRecords. All memory owned by the enclosing d2o_kinesis_records. */
struct d2o_kinesis_record {
    char *sequence_number; /* decimal string */
    char *partition_key;
    unsigned char *data; /* base64-decoded Data (NUL-terminated for convenience) */
    size_t data_len;
    int64_t arrival_ms; /* ApproximateArrivalTimestamp, epoch milliseconds; 0 if absent */
};

struct d2o_kinesis_child_shard {
    char *shard_id;
    char **parents;
    size_t n_parents;
    char *hash_start; /* decimal strings */
    char *hash_end;
};

/* Result of GetRecords. Free with d2o_kinesis_records_free(). */
struct d2o_kinesis_records {
    struct d2o_kinesis_record *records;
    size_t n_records;
    char *next_iterator;          /* NULL: the shard is closed and fully read (SHARD_END) */
    int64_t millis_behind_latest; /* -1 when absent */
    struct d2o_kinesis_child_shard *children;
    size_t n_children;
};

/* One shard of ListShards / DescribeStream. */
struct d2o_kinesis_shard {
    char *shard_id;
    char *parent_shard_id;          /* NULL if none */
    char *adjacent_parent_shard_id; /* NULL if none */
    char *hash_start;
    char *hash_end;
    char *seq_start;
    char *seq_end; /* NULL while the shard is open */
};

/* Result of ListShards (one page) or of a whole listing. Free with d2o_kinesis_shards_free(). */
struct d2o_kinesis_shards {
    struct d2o_kinesis_shard *shards;
    size_t n_shards;
    char *next_token;    /* NULL on the last page */
    char *stream_status; /* DescribeStream only: "CREATING", "ACTIVE", ... */
};

struct d2o_kinesis_summary {
    char *stream_name;
    char *stream_arn;
    char *stream_status;
    int64_t open_shard_count;
    int64_t retention_hours;
    char *encryption_type; /* "NONE" or "KMS"; NULL if absent */
};

/* PutRecords input. Borrowed. */
struct d2o_kinesis_put_entry {
    const char *partition_key;
    const void *data;
    size_t data_len;
    const char *explicit_hash_key; /* optional */
};

struct d2o_kinesis_put_item {
    char *sequence_number; /* NULL when the record failed */
    char *shard_id;
    char *error_code; /* NULL on success */
    char *error_message;
};

/* PutRecords result: one item per entry, in order. Free with d2o_kinesis_put_result_free(). */
struct d2o_kinesis_put_result {
    struct d2o_kinesis_put_item *items;
    size_t n_items;
    size_t failed_count;
};

enum d2o_kinesis_iter_type {
    D2O_ITER_TRIM_HORIZON = 0,
    D2O_ITER_LATEST,
    D2O_ITER_AT_SEQUENCE_NUMBER,
    D2O_ITER_AFTER_SEQUENCE_NUMBER,
    D2O_ITER_AT_TIMESTAMP,
};

/* Where GetShardIterator starts. sequence_number for AT/AFTER_SEQUENCE_NUMBER, timestamp_ms for
 * AT_TIMESTAMP (sent as epoch seconds, a JSON number). */
struct d2o_kinesis_iter_spec {
    enum d2o_kinesis_iter_type type;
    const char *sequence_number;
    int64_t timestamp_ms;
};

enum d2o_kinesis_shard_filter {
    D2O_SHARD_FILTER_NONE = 0,
    D2O_SHARD_FILTER_AFTER_SHARD_ID,
    D2O_SHARD_FILTER_AT_TRIM_HORIZON,
    D2O_SHARD_FILTER_FROM_TRIM_HORIZON,
    D2O_SHARD_FILTER_AT_LATEST,
    D2O_SHARD_FILTER_AT_TIMESTAMP,
    D2O_SHARD_FILTER_FROM_TIMESTAMP,
};

/* ListShards parameters. With next_token set, the stream and every other filter are NOT sent
 * (the API refuses them together). */
struct d2o_kinesis_list_req {
    const char *stream;
    const char *next_token;
    const char *exclusive_start_shard_id;
    int max_results; /* 0 = server default */
    enum d2o_kinesis_shard_filter filter;
    const char *filter_shard_id; /* AFTER_SHARD_ID */
    int64_t filter_timestamp_ms; /* AT_TIMESTAMP / FROM_TIMESTAMP */
};

/*
 * The wire dialect of a client: what differs between the Kinesis Data Streams API and APIs of the
 * same shape (DynamoDB Streams, src/ddbstreams). The client's HTTP exchange, classifier, retries
 * and async dispatch are shared; the dialect builds the request bodies and parses the answers into
 * the structs above. label is the client's stream (the configured stream_name), for parsers that
 * need it (NULL if none).
 */
struct d2o_buf;
struct d2o_kinesis_dialect {
    const char *target_prefix; /* X-Amz-Target prefix, e.g. "Kinesis_20131202." */
    const char *content_type;
    const char *service;     /* SigV4 service name */
    const char *host_prefix; /* default endpoint https://<host_prefix>.<region>.amazonaws.com */
    const char *list_op;     /* the operation that lists shards a page at a time */
    int (*body_get_records)(struct d2o_buf *b, const char *iterator, int limit);
    int (*body_iterator)(struct d2o_buf *b, const char *stream, const char *shard_id,
                         const struct d2o_kinesis_iter_spec *spec);
    int (*body_list)(struct d2o_buf *b, const struct d2o_kinesis_list_req *req);
    int (*parse_records)(const char *body, size_t len, const char *label,
                         struct d2o_kinesis_records *out, struct d2o_kinesis_err *err);
    int (*parse_list)(const char *body, size_t len, struct d2o_kinesis_shards *out,
                      struct d2o_kinesis_err *err);
};

/* The Kinesis Data Streams dialect (JSON 1.1, service "kinesis", ListShards). */
extern const struct d2o_kinesis_dialect d2o_kinesis_dialect_kinesis;

/* ---- pure helpers and parsers (kinesis_parse.c) ---- */

/* "TRIM_HORIZON", "LATEST", ...: the ShardIteratorType of t (NULL for a value out of range). */
const char *d2o_kinesis_iter_type_name(enum d2o_kinesis_iter_type t);

/* true if s is a well-formed sequence number: 0|[1-9][0-9]{0,128}. */
bool d2o_kinesis_seq_valid(const char *s);

/* Compares two well-formed sequence numbers numerically (length, then bytes): <0, 0, >0. */
int d2o_kinesis_seq_cmp(const char *a, const char *b);

/*
 * Midpoint of two hash keys (decimal strings in [0, 2^128-1]) for SplitShard, written to out.
 * Returns 0 or -EINVAL (not a hash key, or start >= end).
 */
int d2o_kinesis_hash_mid(const char *start, const char *end, char *out, size_t out_size);

/*
 * Error of a non-2xx response: code from the x-amzn-ErrorType header (may be NULL) or the JSON
 * "__type", message from "message"/"Message"; classified. Fills err. Always succeeds.
 */
void d2o_kinesis_parse_error(long status, const char *error_type_header, const char *body,
                             size_t len, struct d2o_kinesis_err *err);

/* Each parser takes a 2xx response body (len bytes, need not be NUL-terminated), fills *out
 * (which the caller frees with the matching _free) and returns 0, D2O_KINESIS_E_FAILED with err
 * filled (MalformedResponse) or -ENOMEM. On failure *out is left empty. */
int d2o_kinesis_parse_get_records(const char *body, size_t len, struct d2o_kinesis_records *out,
                                  struct d2o_kinesis_err *err);
int d2o_kinesis_parse_list_shards(const char *body, size_t len, struct d2o_kinesis_shards *out,
                                  struct d2o_kinesis_err *err);
/* DescribeStream: shards (first page) and stream_status; next_token stays NULL. */
int d2o_kinesis_parse_describe_stream(const char *body, size_t len, struct d2o_kinesis_shards *out,
                                      struct d2o_kinesis_err *err);
int d2o_kinesis_parse_summary(const char *body, size_t len, struct d2o_kinesis_summary *out,
                              struct d2o_kinesis_err *err);
/* *iterator is malloc'd; the caller frees it. A null or empty ShardIterator gives 0 with
 * *iterator NULL (no iterator: the shard is over, as KCL takes it); a missing one is an error. */
int d2o_kinesis_parse_shard_iterator(const char *body, size_t len, char **iterator,
                                     struct d2o_kinesis_err *err);
int d2o_kinesis_parse_put_records(const char *body, size_t len, struct d2o_kinesis_put_result *out,
                                  struct d2o_kinesis_err *err);

/* Free what a parser or call filled, and zero the struct. NULL-safe. */
void d2o_kinesis_records_free(struct d2o_kinesis_records *r);
void d2o_kinesis_shards_free(struct d2o_kinesis_shards *s);
void d2o_kinesis_summary_free(struct d2o_kinesis_summary *s);
void d2o_kinesis_put_result_free(struct d2o_kinesis_put_result *p);

/* ---- API client (kinesis.c) ---- */

struct d2o_kinesis;

/*
 * Creates a client for c->aws_region at c->kinesis_endpoint (empty = https://kinesis.<region>
 * .amazonaws.com). http and creds are BORROWED and must outlive the client (creds may be
 * replaced with d2o_kinesis_set_creds()). Returns NULL with errstr on failure.
 * @process worker.
 */
struct d2o_kinesis *d2o_kinesis_new(struct d2o_http *http, const struct d2o_config *c,
                                    const struct d2o_aws_creds *creds, char *errstr,
                                    size_t errstr_size);
/* Same with explicit region and endpoint (endpoint NULL/"" = the AWS default). */
struct d2o_kinesis *d2o_kinesis_new_endpoint(struct d2o_http *http, const char *region,
                                             const char *endpoint,
                                             const struct d2o_aws_creds *creds, char *errstr,
                                             size_t errstr_size);
/* Same for another API of the Kinesis shape (label: the stream named in messages, may be NULL).
 * The dialect is borrowed and must outlive the client. */
struct d2o_kinesis *d2o_kinesis_new_dialect(struct d2o_http *http, const char *region,
                                            const char *endpoint,
                                            const struct d2o_kinesis_dialect *dialect,
                                            const char *label, const struct d2o_aws_creds *creds,
                                            char *errstr, size_t errstr_size);
/* The client's dialect. */
const struct d2o_kinesis_dialect *d2o_kinesis_get_dialect(const struct d2o_kinesis *k);
/*
 * One sync call of op with a prepared JSON body (retries as d2o_kinesis_set_retry() says), for
 * dialects' calls beyond the three the client knows. On 0, resp holds the 2xx answer (the caller
 * frees it with d2o_http_response_free()). @blocking yes.
 */
__attribute__((warn_unused_result)) int d2o_kinesis_call(struct d2o_kinesis *k, const char *op,
                                                         const char *stream,
                                                         const struct d2o_buf *body,
                                                         struct d2o_http_response *resp,
                                                         struct d2o_kinesis_err *err);
/* Frees the client. In-flight async calls must have completed (or d2o_http_free()'d). NULL-safe.
 */
void d2o_kinesis_free(struct d2o_kinesis *k);
/* Replaces the borrowed credentials (after a refresh). */
void d2o_kinesis_set_creds(struct d2o_kinesis *k, const struct d2o_aws_creds *creds);
/* The endpoint URL in use. */
const char *d2o_kinesis_endpoint(const struct d2o_kinesis *k);

/* Retries of the sync calls on RETRY/THROTTLE (default 5; 0 = single attempt), with
 * d2o_backoff_ms(base 100, cap 5000) sleeps that end early when *stop becomes set. */
void d2o_kinesis_set_retry(struct d2o_kinesis *k, unsigned max_retries,
                           const volatile sig_atomic_t *stop);

/* Async calls: one attempt each (the caller decides about retries from err->action). The
 * callback runs from d2o_http_run(); rc is 0 or D2O_KINESIS_E_FAILED (err filled) or a negative
 * errno; what the result struct holds is the callback's to keep: it frees the contents with the
 * matching _free() (the struct itself lives in the caller's frame and must not be freed). */
typedef void (*d2o_kinesis_records_fn)(int rc, struct d2o_kinesis_records *res,
                                       const struct d2o_kinesis_err *err, void *arg);
typedef void (*d2o_kinesis_iterator_fn)(int rc, char *iterator, const struct d2o_kinesis_err *err,
                                        void *arg);
typedef void (*d2o_kinesis_shards_fn)(int rc, struct d2o_kinesis_shards *res,
                                      const struct d2o_kinesis_err *err, void *arg);

/* GetRecords on iterator (copied), Limit = limit (0 = server default, max 10000). */
__attribute__((warn_unused_result)) int
d2o_kinesis_get_records_async(struct d2o_kinesis *k, const char *iterator, int limit,
                              d2o_kinesis_records_fn cb, void *arg);
/* The same with the answer capped at max_bytes on the wire (0: the HTTP default): a longer
 * answer is dropped while it arrives and reported as D2O_KINESIS_E_FAILED with err->curl_code
 * CURLE_FILESIZE_EXCEEDED; the iterator stays valid for another try. */
__attribute__((warn_unused_result)) int
d2o_kinesis_get_records_capped_async(struct d2o_kinesis *k, const char *iterator, int limit,
                                     size_t max_bytes, d2o_kinesis_records_fn cb, void *arg);
/* GetShardIterator; the callback owns (frees) iterator. */
__attribute__((warn_unused_result)) int
d2o_kinesis_get_shard_iterator_async(struct d2o_kinesis *k, const char *stream,
                                     const char *shard_id, const struct d2o_kinesis_iter_spec *spec,
                                     d2o_kinesis_iterator_fn cb, void *arg);
/* One ListShards page. */
__attribute__((warn_unused_result)) int
d2o_kinesis_list_shards_async(struct d2o_kinesis *k, const struct d2o_kinesis_list_req *req,
                              d2o_kinesis_shards_fn cb, void *arg);

/* Every page of the listing (follows NextToken; page_size 0 = server default), one page call
 * after the other; the callback gets every shard (next_token NULL) or the first page call that
 * failed. Each page is one attempt, like every async call. */
__attribute__((warn_unused_result)) int
d2o_kinesis_list_all_shards_async(struct d2o_kinesis *k, const char *stream,
                                  enum d2o_kinesis_shard_filter filter, int page_size,
                                  d2o_kinesis_shards_fn cb, void *arg);

/* Sync calls (private loop, with retries as set by d2o_kinesis_set_retry()). @blocking yes. */
__attribute__((warn_unused_result)) int d2o_kinesis_get_records(struct d2o_kinesis *k,
                                                                const char *iterator, int limit,
                                                                struct d2o_kinesis_records *out,
                                                                struct d2o_kinesis_err *err);
/* *iterator is malloc'd; the caller frees it. */
__attribute__((warn_unused_result)) int
d2o_kinesis_get_shard_iterator(struct d2o_kinesis *k, const char *stream, const char *shard_id,
                               const struct d2o_kinesis_iter_spec *spec, char **iterator,
                               struct d2o_kinesis_err *err);
/* One page. */
__attribute__((warn_unused_result)) int
d2o_kinesis_list_shards(struct d2o_kinesis *k, const struct d2o_kinesis_list_req *req,
                        struct d2o_kinesis_shards *out, struct d2o_kinesis_err *err);
/* Every page (follows NextToken; page_size 0 = server default); out->next_token is NULL. */
__attribute__((warn_unused_result)) int
d2o_kinesis_list_all_shards(struct d2o_kinesis *k, const char *stream,
                            enum d2o_kinesis_shard_filter filter, int page_size,
                            struct d2o_kinesis_shards *out, struct d2o_kinesis_err *err);
__attribute__((warn_unused_result)) int
d2o_kinesis_describe_stream_summary(struct d2o_kinesis *k, const char *stream,
                                    struct d2o_kinesis_summary *out, struct d2o_kinesis_err *err);
/* DescribeStream: status and (first page of) shards. */
__attribute__((warn_unused_result)) int d2o_kinesis_describe_stream(struct d2o_kinesis *k,
                                                                    const char *stream,
                                                                    struct d2o_kinesis_shards *out,
                                                                    struct d2o_kinesis_err *err);
/* PutRecords of 1..500 entries; per-record failures are in out (failed_count), not an error. */
__attribute__((warn_unused_result)) int
d2o_kinesis_put_records(struct d2o_kinesis *k, const char *stream,
                        const struct d2o_kinesis_put_entry *entries, size_t n,
                        struct d2o_kinesis_put_result *out, struct d2o_kinesis_err *err);
__attribute__((warn_unused_result)) int d2o_kinesis_create_stream(struct d2o_kinesis *k,
                                                                  const char *stream,
                                                                  int shard_count,
                                                                  struct d2o_kinesis_err *err);
__attribute__((warn_unused_result)) int
d2o_kinesis_delete_stream(struct d2o_kinesis *k, const char *stream, struct d2o_kinesis_err *err);
__attribute__((warn_unused_result)) int
d2o_kinesis_split_shard(struct d2o_kinesis *k, const char *stream, const char *shard_id,
                        const char *new_starting_hash_key, struct d2o_kinesis_err *err);
__attribute__((warn_unused_result)) int
d2o_kinesis_merge_shards(struct d2o_kinesis *k, const char *stream, const char *shard_id,
                         const char *adjacent_shard_id, struct d2o_kinesis_err *err);
/* Polls DescribeStreamSummary until the stream is ACTIVE (0), timeout_ms passes or *stop is set
 * (D2O_KINESIS_E_FAILED, action RETRY). */
__attribute__((warn_unused_result)) int d2o_kinesis_wait_active(struct d2o_kinesis *k,
                                                                const char *stream,
                                                                int64_t timeout_ms,
                                                                struct d2o_kinesis_err *err);

#endif
