/*
 * The one classifier: maps the outcome of a remote call (transport result, HTTP status, AWS error
 * code) to what the caller does next. Every module that talks to AWS or OpenSearch asks this
 * function and nothing else.
 *
 * Pure, @process any.
 */
#ifndef D2O_CLASSIFY_H
#define D2O_CLASSIFY_H

#include <curl/curl.h>
#include <stddef.h>

enum d2o_action {
    D2O_ACT_OK = 0,           /* success: 1xx-3xx with no transport error */
    D2O_ACT_RETRY,            /* transient: retry with backoff (d2o_backoff_ms) */
    D2O_ACT_THROTTLE,         /* throttled: retry with backoff, count as throttling */
    D2O_ACT_REFRESH_CREDS,    /* credentials/signature: refresh once, then treat as PERMANENT */
    D2O_ACT_REFRESH_ITERATOR, /* Kinesis iterator expired: new iterator AFTER_SEQUENCE_NUMBER */
    D2O_ACT_PERMANENT,        /* this request will never succeed: report / dead-letter */
    D2O_ACT_FATAL,            /* configuration problem (TLS, URL): stop the process */
};

/* "ok", "retry", "throttle", "refresh_creds", "refresh_iterator", "permanent", "fatal". */
const char *d2o_action_name(enum d2o_action a);

/*
 * Classifies one outcome. curl_code: the transfer result (CURLE_FILESIZE_EXCEEDED means the
 * response was larger than the cap). status: HTTP status (0 when none). aws_code: from
 * x-amzn-ErrorType or the JSON "__type"/"code" field, or NULL; any "prefix#" and ":suffix" is
 * stripped, so "com.amazonaws.kinesis.v20131202#ExpiredIteratorException" and
 * "ExpiredTokenException:http://..." work. An unknown code is decided by the status.
 * *reason (optional) receives a short static explanation.
 */
enum d2o_action d2o_classify(CURLcode curl_code, long status, const char *aws_code,
                             const char **reason);

/*
 * Copies the bare error name of a raw AWS code (without "prefix#" and ":suffix") into out.
 * Returns the length, or 0 if raw is NULL/empty.
 */
size_t d2o_classify_code_name(const char *raw, char *out, size_t out_size);

/* What to do with one item of an OpenSearch _bulk response. */
enum d2o_item_class {
    D2O_ITEM_DONE = 0,  /* 2xx: indexed or deleted */
    D2O_ITEM_STALE,     /* 409 version conflict: a newer version is already there; done */
    D2O_ITEM_ABSENT,    /* 404 on a delete: the document is already gone; done */
    D2O_ITEM_THROTTLE,  /* 429 / es_rejected_execution_exception: retry, never dead-letter */
    D2O_ITEM_RETRY,     /* other 5xx and unknown outcomes: retry up to the attempt cap */
    D2O_ITEM_PERMANENT, /* mapping, parsing and other 4xx errors: dead-letter now */
    D2O_ITEM_BLOCKED,   /* the index takes no writes for now (cluster_block_exception: read-only,
                         * flood stage; or it is being created): retry like THROTTLE, never
                         * dead-letter, and tell the operator */
};

/* "done", "stale", "absent", "throttle", "retry", "permanent", "blocked". */
const char *d2o_item_class_name(enum d2o_item_class c);

/*
 * Classifies one _bulk response item from its status and error type (NULL when none).
 * is_delete: the item was a delete action. Pure.
 */
enum d2o_item_class d2o_classify_bulk_item(int status, const char *error_type, int is_delete);

#endif
