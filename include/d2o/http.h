/*
 * HTTP client on libcurl for one single-threaded event loop per process.
 *
 * A struct d2o_http owns one curl multi handle (the async loop), a second private multi handle
 * for d2o_http_request_sync(), and a small pool of reusable easy handles, so TCP/TLS connections
 * stay alive in the multi's connection cache between requests. No threads, no locks.
 *
 * Every request may be SigV4-signed: when req->signer is set, the layer calls d2o_sigv4_sign()
 * with time(NULL) right before the transfer starts and adds the returned header lines. Callers
 * that retry simply start the request again, which signs it again with a fresh date.
 *
 * Responses larger than max_response_bytes are aborted and reported with curl_code
 * CURLE_FILESIZE_EXCEEDED (the classifier maps that to PERMANENT). An empty "Expect:" header is
 * always sent (no 100-continue round trip), and the user agent is "ddb2os/<version>".
 *
 * @process worker (and CLI tools): create it AFTER fork(); never share it across processes.
 * Call d2o_http_global_init() once in the parent before any fork.
 */
#ifndef D2O_HTTP_H
#define D2O_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "d2o/buf.h"

struct d2o_config;
struct d2o_sigv4_signer;
struct d2o_aws_creds;

struct d2o_http;

/* Settings for d2o_http_new(). Zero values take the defaults below. */
struct d2o_http_opts {
    int64_t connect_timeout_ms; /* default 5000 */
    int64_t timeout_ms;         /* whole transfer; default 30000 */
    int64_t max_response_bytes; /* default 64 MiB */
    const char *ca_file;        /* CA bundle (CURLOPT_CAINFO); NULL = system default. Copied. */
    bool tls_insecure;          /* true disables peer/host verification: tests only */
    long max_host_connections;  /* per host:port; default 0: no limit (the callers bound their
                                 * own requests in flight) */
    size_t pool_size;           /* easy handles kept for reuse; default 8 */
};

/*
 * Fills o with the defaults and then the HTTP/TLS settings of c (http_connect_timeout_ms,
 * http_timeout_ms, http_max_response_bytes, tls_ca_file, tls_verify). c may be NULL (defaults
 * only). o->ca_file borrows c's string.
 */
void d2o_http_opts_from_config(struct d2o_http_opts *o, const struct d2o_config *c);

/* One request header; both strings borrowed for the duration of d2o_http_start(). */
struct d2o_http_header {
    const char *name;
    const char *value;
};

/*
 * A request. Strings and headers are copied when the request starts; body, signer and creds are
 * BORROWED and must stay valid until the completion callback has run (or until sync returns).
 */
struct d2o_http_request {
    const char *method; /* "GET", "POST", "PUT", "DELETE", "HEAD", ... */
    const char *url;
    const struct d2o_http_header *headers;
    size_t n_headers;
    const void *body; /* may be NULL when body_len is 0 */
    size_t body_len;
    /* Or the body in pieces (body NULL, body_len their sum), BORROWED like body: libcurl reads
     * them in order as it sends (CURLOPT_READFUNCTION, and CURLOPT_SEEKFUNCTION when it must send
     * the body again), so a caller whose body is made of pieces it holds anyway sends them
     * without a contiguous copy. */
    const struct iovec *body_parts;
    size_t n_body_parts;
    /* Optional SigV4: both set to sign; flags are enum d2o_sigv4_flags. */
    struct d2o_sigv4_signer *signer;
    const struct d2o_aws_creds *creds;
    unsigned sigv4_flags;
    int64_t timeout_ms;         /* 0 = the d2o_http default */
    int64_t max_response_bytes; /* 0 = the d2o_http default */
};

/*
 * A completed request. err is 0 when a transfer happened (look at curl_code and status); a
 * negative errno when the request could not be issued at all (signing failed: -EINVAL with
 * errstr; -ENOMEM) - then nothing was sent.
 *
 * Owned by the HTTP layer during a callback; the callback may take the body with
 * `mine = resp->body; resp->body = (struct d2o_buf)D2O_BUF_INIT;`.
 */
struct d2o_http_response {
    int err;
    CURLcode curl_code;        /* CURLE_OK, or the transport error; CURLE_FILESIZE_EXCEEDED = cap */
    long status;               /* HTTP status, 0 if no response was received */
    struct d2o_buf body;       /* response body, at most max_response_bytes */
    char content_type[128];    /* selected response headers, "" when absent (cut if longer) */
    char amzn_error_type[256]; /* x-amzn-ErrorType */
    char amzn_request_id[128]; /* x-amzn-RequestId */
    char retry_after[64];      /* Retry-After */
    char errstr[CURL_ERROR_SIZE]; /* curl's error text, or the signing/setup error */
    int64_t total_us;             /* CURLINFO_TOTAL_TIME_T */
    long local_port;              /* CURLINFO_LOCAL_PORT: shows connection reuse */
    uint64_t visits;              /* how often libcurl drove the transfer while it ran (its
                                   * progress callback): a waiting transfer is driven only when
                                   * its socket is ready or its timer is due */
    uint64_t id;                  /* the id d2o_http_start() returned */
    char date[64];                /* Date: the server's clock (DynamoDB's time), "" when absent */
};

/*
 * Completion callback, called from d2o_http_run() (never from d2o_http_start()). It may start new
 * requests. resp is valid only during the call.
 */
typedef void (*d2o_http_done_fn)(struct d2o_http_response *resp, void *arg);

/*
 * Calls curl_global_init(CURL_GLOBAL_DEFAULT) once. @process master, before fork(); returns 0 or
 * -EIO.
 */
__attribute__((warn_unused_result)) int d2o_http_global_init(void);

/*
 * Creates the per-process client. opts may be NULL (defaults). Returns NULL on failure with the
 * reason in errstr. Free with d2o_http_free(). @process worker (after fork).
 */
struct d2o_http *d2o_http_new(const struct d2o_http_opts *opts, char *errstr, size_t errstr_size);

/*
 * Aborts every in-flight request WITHOUT calling its callback, closes all connections and frees
 * h. NULL-safe. Never call it from a completion callback.
 */
void d2o_http_free(struct d2o_http *h);

/*
 * For a process that stops: completes every in-flight request at once with resp->err -ECANCELED
 * (its callback runs, so its owner frees what the call held), and refuses every request started
 * from then on with -ECANCELED. Never call it from a completion callback.
 */
void d2o_http_cancel_all(struct d2o_http *h);

/*
 * Starts req asynchronously; cb(resp, arg) runs from a later d2o_http_run() when it completes,
 * exactly once (also for signing failures and transport errors). *id_out (optional) receives a
 * process-unique id. Returns 0, -EINVAL (bad request: missing method/url, a body missing, or body
 * pieces that do not add up to body_len) or -ENOMEM; on error
 * cb is never called. @blocking no.
 */
__attribute__((warn_unused_result)) int d2o_http_start(struct d2o_http *h,
                                                       const struct d2o_http_request *req,
                                                       d2o_http_done_fn cb, void *arg,
                                                       uint64_t *id_out);

/*
 * Waits up to timeout_ms for network activity on the in-flight transfers or for one of the extra
 * fds (at most 15; their revents are filled in), drives the transfers whose sockets are ready or
 * whose timers are due, and delivers the completions. One poll() over the extra fds and the
 * epoll set that holds every socket libcurl waits on, so a call costs what the ready sockets
 * cost, whatever the number of transfers in flight. Returns the number of completions delivered
 * (>= 0) or a negative errno. d2o_http_wakeup() makes a waiting call return early.
 * @blocking up to timeout_ms.
 */
__attribute__((warn_unused_result)) int
d2o_http_run(struct d2o_http *h, struct curl_waitfd *extra_fds, unsigned n_extra, int timeout_ms);

/* Interrupts a d2o_http_run() that is waiting (an eventfd in its set). */
void d2o_http_wakeup(struct d2o_http *h);

/* Number of async requests started and not yet delivered. */
size_t d2o_http_in_flight(const struct d2o_http *h);

/*
 * Performs req and waits for it on a private loop (the async requests of h do not progress
 * meanwhile and no async callbacks run). resp must be zero-initialised or freshly freed; it is
 * filled as for a callback and the caller frees it with d2o_http_response_free(). Returns
 * resp->err (0 when a transfer happened, whatever its status). @blocking yes (up to the timeout).
 */
__attribute__((warn_unused_result)) int d2o_http_request_sync(struct d2o_http *h,
                                                              const struct d2o_http_request *req,
                                                              struct d2o_http_response *resp);

/* Frees the body of resp and zeroes it. NULL-safe. */
void d2o_http_response_free(struct d2o_http_response *resp);

#endif
