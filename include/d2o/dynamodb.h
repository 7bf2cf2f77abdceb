/*
 * DynamoDB client: the JSON 1.0 protocol over the d2o_http layer, signed with SigV4 (service
 * "dynamodb"), and the pure parsers of its responses.
 *
 * One generic call carries every operation (d2o_ddb_call / d2o_ddb_call_async: an operation name
 * and a request body in, the parsed JSON answer out); the typed calls (DescribeTable,
 * DescribeTimeToLive, Scan, GetItem) are a body builder and a parser around it. The same client
 * speaks the DynamoDB Streams API when created with D2O_DDB_API_STREAMS (target prefix
 * DynamoDBStreams_20120810, endpoint streams.dynamodb.<region>.amazonaws.com, same signing
 * service).
 *
 * Errors: functions return 0, D2O_DDB_E_FAILED (the call or its answer failed; *err says what and
 * what to do through the one classifier, d2o_classify), or a negative errno for local problems.
 * Actions a caller sees in err->action:
 *   RETRY / THROTTLE   back off and call again (ProvisionedThroughputExceededException,
 *                      ThrottlingException, RequestLimitExceeded of on-demand tables, 5xx,
 *                      transport errors). The sync calls do this themselves, see d2o_ddb_set_retry;
 *   REFRESH_CREDS      refresh the credentials once, then treat a repeat as PERMANENT;
 *   PERMANENT / FATAL  stop; err->message names the operation, the table and the reason.
 * An unreadable answer is err->code "MalformedResponse", action RETRY.
 *
 * DynamoDB's clock: every answer carries a Date header, DynamoDB's time at one-second resolution.
 * The client keeps the latest one (d2o_ddb_server_time); callers that need "a time no later than
 * DynamoDB's now" (the backfill's version) use it instead of the local clock.
 *
 * AttributeValues stay JSON objects ({"S": "x"}, {"N": "1.5"}, ...) exactly as DynamoDB sends them:
 * d2o_image_node_to_json() turns them into documents once they are read into a d2o_jdoc.
 *
 * @process worker and CLI: create the client after fork(); it borrows the process's d2o_http.
 */
#ifndef D2O_DYNAMODB_H
#define D2O_DYNAMODB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2o/buf.h"
#include "d2o/classify.h"
#include "d2o/http.h"

struct d2o_config;
struct d2o_aws_creds;
struct json_object;

#define D2O_DDB_E_FAILED 1

/* DynamoDB's largest TotalSegments for a parallel Scan. */
#define D2O_DDB_MAX_SEGMENTS 1000000

enum d2o_ddb_api {
    D2O_DDB_API_DYNAMODB = 0, /* DynamoDB_20120810 */
    D2O_DDB_API_STREAMS = 1,  /* DynamoDBStreams_20120810 */
};

/* What went wrong with one call; filled whenever D2O_DDB_E_FAILED is returned. */
struct d2o_ddb_err {
    enum d2o_action action;
    long status;        /* HTTP status, 0 if none */
    CURLcode curl_code; /* transport result */
    char code[128];     /* bare AWS error code, "MalformedResponse", or "" for transport errors */
    char message[512];  /* for humans: operation, table, reason, AWS message */
};

/* DescribeTable. Free with d2o_ddb_table_free(). */
struct d2o_ddb_table {
    char *name;
    char *status;    /* "ACTIVE", "CREATING", ... */
    char *hash_key;  /* attribute names of the primary key */
    char *range_key; /* NULL for a hash-only table */
    char hash_type;  /* 'S', 'N' or 'B' (from AttributeDefinitions), 0 if not given */
    char range_type;
    int64_t item_count; /* approximate (DynamoDB updates it about every six hours) */
    int64_t size_bytes;
    int64_t read_capacity; /* provisioned RCU; 0 for on-demand */
    char *billing_mode;    /* "PROVISIONED", "PAY_PER_REQUEST", or NULL when absent */
    bool stream_enabled;
    char *stream_view_type; /* NULL when absent */
    char *latest_stream_arn;
};

/* DescribeTimeToLive. Free with d2o_ddb_ttl_free(). */
struct d2o_ddb_ttl {
    char *status;    /* "ENABLED", "DISABLED", "ENABLING", "DISABLING" */
    char *attribute; /* NULL when TTL is off */
};

/* One Scan request. Strings borrowed. */
struct d2o_ddb_scan_req {
    const char *table;
    int segment;                     /* with total_segments > 0: a parallel Scan's segment */
    int total_segments;              /* 0: a plain Scan */
    const char *exclusive_start_key; /* LastEvaluatedKey of the previous page (JSON text) or NULL */
    int limit;                       /* items per page, 0 = DynamoDB's default (1 MB pages) */
    bool consistent_read;
};

/* One Scan page. root owns everything; d2o_ddb_scan_page_free() releases it. */
struct d2o_ddb_scan_page {
    struct json_object *root;
    struct json_object *items; /* borrowed from root: an array of item maps */
    size_t n_items;
    char *last_key;        /* LastEvaluatedKey as JSON text; NULL: the scan (segment) ended */
    int64_t scanned_count; /* items read before any filter */
    double consumed_rcu;   /* ConsumedCapacity.CapacityUnits, 0 when absent */
};

/* ---- pure parts (ddb_parse.c): bodies and parsers, no I/O ---- */

/* Appends the Scan request body for q (ReturnConsumedCapacity TOTAL). Returns 0, -EINVAL (a
 * missing table, a segment outside 0..total-1, an exclusive_start_key that is not a JSON object)
 * or -ENOMEM. */
__attribute__((warn_unused_result)) int d2o_ddb_format_scan(struct d2o_buf *b,
                                                            const struct d2o_ddb_scan_req *q);

/*
 * Each parser takes a 2xx answer (len bytes, need not be NUL-terminated), fills *out (freed by the
 * caller with the matching _free) and returns 0, D2O_DDB_E_FAILED with err filled
 * (MalformedResponse, naming the field) or -ENOMEM. On failure *out holds nothing.
 */
int d2o_ddb_parse_describe_table(const char *body, size_t len, struct d2o_ddb_table *out,
                                 struct d2o_ddb_err *err);
int d2o_ddb_parse_ttl(const char *body, size_t len, struct d2o_ddb_ttl *out,
                      struct d2o_ddb_err *err);
int d2o_ddb_parse_scan(const char *body, size_t len, struct d2o_ddb_scan_page *out,
                       struct d2o_ddb_err *err);
/* Parses any answer into a JSON object (*root, the caller puts it). */
int d2o_ddb_parse_json(const char *op, const char *body, size_t len, struct json_object **root,
                       struct d2o_ddb_err *err);
/* Error of a non-2xx answer: code from x-amzn-ErrorType (may be NULL) or the JSON "__type",
 * message from "message"/"Message"; classified. Always fills err. */
void d2o_ddb_parse_error(long status, const char *error_type_header, const char *body, size_t len,
                         struct d2o_ddb_err *err);

void d2o_ddb_table_free(struct d2o_ddb_table *t);
void d2o_ddb_ttl_free(struct d2o_ddb_ttl *t);
void d2o_ddb_scan_page_free(struct d2o_ddb_scan_page *p);

/*
 * The primary key of item as a JSON object text ({"pk":{"S":"a"},"sk":{"N":"1"}}), appended to
 * out, for GetItem, ExclusiveStartKey and dynamodb.Keys. Returns 0, -EINVAL with errstr when the
 * item lacks a key attribute, or -ENOMEM.
 */
__attribute__((warn_unused_result)) int d2o_ddb_item_key(struct json_object *item,
                                                         const char *hash_key,
                                                         const char *range_key, struct d2o_buf *out,
                                                         char *errstr, size_t errstr_size);

/* ---- the client (ddb.c) ---- */

struct d2o_ddb;

/*
 * Creates a client for region at endpoint (NULL or "" = the AWS endpoint of api). http and creds
 * are BORROWED and must outlive the client. Returns NULL with errstr. @process worker.
 */
struct d2o_ddb *d2o_ddb_new(struct d2o_http *http, enum d2o_ddb_api api, const char *region,
                            const char *endpoint, const struct d2o_aws_creds *creds, char *errstr,
                            size_t errstr_size);
/* The same from the configuration (aws_region, dynamodb_endpoint). */
struct d2o_ddb *d2o_ddb_new_from_config(struct d2o_http *http, const struct d2o_config *c,
                                        const struct d2o_aws_creds *creds, char *errstr,
                                        size_t errstr_size);
/* Frees the client; async calls must have completed. NULL-safe. */
void d2o_ddb_free(struct d2o_ddb *d);
void d2o_ddb_set_creds(struct d2o_ddb *d, const struct d2o_aws_creds *creds);
const char *d2o_ddb_endpoint(const struct d2o_ddb *d);

/*
 * Retries of the sync calls on RETRY/THROTTLE: up to max_retries (default 8; 0 = one attempt),
 * sleeping d2o_backoff_ms(base_ms, cap_ms, attempt) between them (defaults 50 and 5000), ended
 * early when *stop becomes set. Throttles are counted (d2o_ddb_throttles).
 */
void d2o_ddb_set_retry(struct d2o_ddb *d, unsigned max_retries, int64_t base_ms, int64_t cap_ms,
                       const volatile sig_atomic_t *stop);
/* Throttled answers seen so far (all calls). */
uint64_t d2o_ddb_throttles(const struct d2o_ddb *d);

/*
 * DynamoDB's clock: the Date of the latest answer, in epoch milliseconds (whole seconds: the
 * header's resolution), or 0 before the first answer that carried one.
 */
int64_t d2o_ddb_server_time_ms(const struct d2o_ddb *d);

/*
 * The generic call: op ("Scan", "GetRecords", ...) with a JSON body. On 0, *root is the parsed
 * answer (the caller puts it). Sync (private loop, retries as set). @blocking yes.
 */
__attribute__((warn_unused_result)) int d2o_ddb_call(struct d2o_ddb *d, const char *op,
                                                     const char *what, const char *body, size_t len,
                                                     struct json_object **root,
                                                     struct d2o_ddb_err *err);

/* The callback of an async call: rc 0 (root is the answer; the callback owns it and puts it),
 * D2O_DDB_E_FAILED (err filled, root NULL) or a negative errno. Runs from d2o_http_run(). */
typedef void (*d2o_ddb_json_fn)(int rc, struct json_object *root, const struct d2o_ddb_err *err,
                                void *arg);
/* One attempt, no retries (the caller decides from err->action). body is copied. */
__attribute__((warn_unused_result)) int d2o_ddb_call_async(struct d2o_ddb *d, const char *op,
                                                           const char *what, const char *body,
                                                           size_t len, d2o_ddb_json_fn cb,
                                                           void *arg);

/* Typed sync calls. @blocking yes. */
__attribute__((warn_unused_result)) int d2o_ddb_describe_table(struct d2o_ddb *d, const char *table,
                                                               struct d2o_ddb_table *out,
                                                               struct d2o_ddb_err *err);
__attribute__((warn_unused_result)) int d2o_ddb_describe_ttl(struct d2o_ddb *d, const char *table,
                                                             struct d2o_ddb_ttl *out,
                                                             struct d2o_ddb_err *err);
__attribute__((warn_unused_result)) int d2o_ddb_scan(struct d2o_ddb *d,
                                                     const struct d2o_ddb_scan_req *q,
                                                     struct d2o_ddb_scan_page *out,
                                                     struct d2o_ddb_err *err);
/* GetItem of key (JSON text of the key map). *item is the Item (the caller puts it) or NULL when
 * there is no such item. */
__attribute__((warn_unused_result)) int d2o_ddb_get_item(struct d2o_ddb *d, const char *table,
                                                         const char *key, bool consistent_read,
                                                         struct json_object **item,
                                                         struct d2o_ddb_err *err);

#endif
