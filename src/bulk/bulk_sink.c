/*
 * The bulk sink: batching, sending, per-item outcomes and retry scheduling. See include/d2o/bulk.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "d2o/buf.h"
#include "d2o/bulk.h"
#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/http.h"
#include "d2o/log.h"
#include "d2o/rand.h"
#include "d2o/sigv4.h"

struct item {
    struct item *next;
    char *data;
    size_t len;
    bool is_delete;
    void *cookie;
    unsigned attempts;
    int64_t enq_ms;
    int64_t not_before_ms;
    int64_t first_fail_us;
    int64_t last_fail_us;
    size_t max_batch; /* 0: no cap; set when a request was split */
};

struct request {
    struct d2o_bulk *b;
    struct item **items;
    size_t n;
    struct d2o_buf body;
};

struct d2o_bulk {
    struct d2o_http *http;
    struct d2o_bulk_opts o;
    char *url;
    char *basic_header; /* "Basic <base64>" */
    struct item *head, *tail;
    size_t queued;
    size_t in_flight_items;
    unsigned in_flight;
    unsigned failure_streak; /* consecutive whole-request failures */
    bool flush_all;
    struct d2o_bulk_stats stats;
};

void d2o_bulk_opts_from_config(struct d2o_bulk_opts *o, const struct d2o_config *c)
{
    memset(o, 0, sizeof(*o));
    o->url = c->opensearch_url;
    if (c->opensearch_auth == D2O_OS_AUTH_BASIC) {
        o->basic_user = c->opensearch_user;
        o->basic_password = c->opensearch_password;
    }
    o->sign_content_sha256 = c->opensearch_service == D2O_OS_SERVICE_AOSS;
    o->max_bytes = (size_t)c->bulk_max_bytes;
    o->max_items = (size_t)c->bulk_max_records;
    o->flush_ms = c->bulk_flush_ms;
    o->retry_base_ms = c->retry_base_ms;
    o->retry_cap_ms = c->retry_cap_ms;
    o->max_attempts = (unsigned)c->item_max_attempts;
}

static void item_free(struct item *it)
{
    if (it) {
        free(it->data);
        free(it);
    }
}

void d2o_bulk_free(struct d2o_bulk *b)
{
    struct item *it, *next;

    if (!b) {
        return;
    }
    for (it = b->head; it; it = next) {
        next = it->next;
        item_free(it);
    }
    free(b->url);
    free(b->basic_header);
    free(b);
}

struct d2o_bulk *d2o_bulk_new(struct d2o_http *http, const struct d2o_bulk_opts *opts, char *errstr,
                              size_t errstr_size)
{
    struct d2o_bulk *b;
    size_t n;

    if (!http || !opts || !opts->url || !*opts->url || !opts->done) {
        snprintf(errstr, errstr_size, "bulk sink: needs an HTTP client, a URL and a callback");
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(errstr, errstr_size, "bulk sink: out of memory");
        return NULL;
    }
    b->http = http;
    b->o = *opts;
    b->o.max_bytes = opts->max_bytes ? opts->max_bytes : 5u << 20;
    b->o.max_items = opts->max_items ? opts->max_items : 5000;
    b->o.flush_ms = opts->flush_ms > 0 ? opts->flush_ms : (opts->flush_ms == 0 ? 0 : 1000);
    b->o.max_in_flight = opts->max_in_flight ? opts->max_in_flight : 2;
    b->o.retry_base_ms = opts->retry_base_ms > 0 ? opts->retry_base_ms : 100;
    b->o.retry_cap_ms = opts->retry_cap_ms > 0 ? opts->retry_cap_ms : 30000;
    b->o.max_attempts = opts->max_attempts ? opts->max_attempts : 10;
    n = strlen(opts->url);
    while (n > 0 && opts->url[n - 1] == '/') {
        n--;
    }
    b->url = malloc(n + 64);
    if (!b->url) {
        d2o_bulk_free(b);
        return NULL;
    }
    snprintf(b->url, n + 64, "%.*s/_bulk?filter_path=errors,items.*.status,items.*.error", (int)n,
             opts->url);
    b->o.url = b->url;
    if (opts->basic_user && *opts->basic_user) {
        struct d2o_buf up = D2O_BUF_INIT;
        size_t cap;

        if (d2o_buf_printf(&up, "%s:%s", opts->basic_user,
                           opts->basic_password ? opts->basic_password : "") < 0) {
            d2o_bulk_free(b);
            return NULL;
        }
        cap = 4 * ((up.len + 2) / 3) + 8;
        b->basic_header = malloc(cap);
        if (!b->basic_header) {
            d2o_buf_free(&up);
            d2o_bulk_free(b);
            return NULL;
        }
        memcpy(b->basic_header, "Basic ", 6);
        EVP_EncodeBlock((unsigned char *)b->basic_header + 6, (unsigned char *)up.data,
                        (int)up.len);
        d2o_log_add_secret(b->basic_header + 6);
        d2o_buf_free(&up);
    }
    return b;
}

int d2o_bulk_add(struct d2o_bulk *b, const char *ndjson, size_t len, bool is_delete, void *cookie)
{
    struct item *it = calloc(1, sizeof(*it));

    if (!it) {
        return -ENOMEM;
    }
    it->data = malloc(len ? len : 1);
    if (!it->data) {
        free(it);
        return -ENOMEM;
    }
    memcpy(it->data, ndjson, len);
    it->len = len;
    it->is_delete = is_delete;
    it->cookie = cookie;
    it->enq_ms = d2o_mono_ms();
    if (b->tail) {
        b->tail->next = it;
    } else {
        b->head = it;
    }
    b->tail = it;
    b->queued++;
    return 0;
}

size_t d2o_bulk_pending(const struct d2o_bulk *b)
{
    return b->queued + b->in_flight_items;
}

const struct d2o_bulk_stats *d2o_bulk_stats(const struct d2o_bulk *b)
{
    return &b->stats;
}

void d2o_bulk_flush(struct d2o_bulk *b)
{
    b->flush_all = true;
}

/* Puts items back at the front of the queue, in their order, eligible from not_before. */
static void requeue_front(struct d2o_bulk *b, struct item **items, size_t n)
{
    size_t i;

    for (i = n; i-- > 0;) {
        items[i]->next = b->head;
        b->head = items[i];
        if (!b->tail) {
            b->tail = items[i];
        }
        b->queued++;
    }
}

static void finish(struct d2o_bulk *b, struct item *it, enum d2o_bulk_outcome outcome, int status,
                   const char *error_class, const char *message)
{
    struct d2o_bulk_result res;

    res.outcome = outcome;
    res.status = status;
    res.error_class = error_class;
    res.error_message = message;
    res.attempts = it->attempts;
    res.first_failed_us = it->first_fail_us;
    res.last_failed_us = it->last_fail_us;
    switch (outcome) {
    case D2O_BULK_DONE:
        b->stats.done++;
        break;
    case D2O_BULK_STALE:
        b->stats.stale++;
        break;
    case D2O_BULK_ABSENT:
        b->stats.absent++;
        break;
    case D2O_BULK_DLQ:
        b->stats.dlq++;
        d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_dlq",
                "item to the dead-letter queue: %s: %s", error_class, message);
        break;
    }
    b->o.done(it->cookie, &res, b->o.done_arg);
    item_free(it);
}

static void mark_failed(struct item *it)
{
    int64_t now = d2o_wall_us();

    if (!it->first_fail_us) {
        it->first_fail_us = now;
    }
    it->last_fail_us = now;
}

static void request_free(struct request *rq)
{
    if (rq) {
        free(rq->items);
        d2o_buf_free(&rq->body);
        free(rq);
    }
}

/* Retries every item of a request that failed as a whole; never dead-letters them. */
static void retry_all(struct d2o_bulk *b, struct request *rq, const char *why)
{
    int64_t delay;
    size_t i;

    b->failure_streak++;
    b->stats.request_failures++;
    delay = d2o_backoff_ms(b->o.retry_base_ms, b->o.retry_cap_ms, b->failure_streak - 1);
    d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_request_failed",
            "bulk request of %zu items failed (%s); retrying in %lld ms", rq->n, why,
            (long long)delay);
    for (i = 0; i < rq->n; i++) {
        mark_failed(rq->items[i]);
        rq->items[i]->not_before_ms = d2o_mono_ms() + delay;
    }
    b->stats.retried += rq->n;
    requeue_front(b, rq->items, rq->n);
}

/* Splits a request the server refused as a whole (413, or 400 for the body): halves go again. */
static void split(struct d2o_bulk *b, struct request *rq, int status, const char *message)
{
    size_t i;

    if (rq->n == 1) {
        finish(b, rq->items[0], D2O_BULK_DLQ, status,
               status == 413 ? "request_too_large" : "request_refused", message);
        return;
    }
    b->stats.splits++;
    for (i = 0; i < rq->n; i++) {
        rq->items[i]->max_batch = rq->n / 2;
        rq->items[i]->not_before_ms = 0;
    }
    requeue_front(b, rq->items, rq->n);
}

static void on_response(struct d2o_http_response *resp, void *arg)
{
    struct request *rq = arg;
    struct d2o_bulk *b = rq->b;
    struct d2o_bulk_item_status *st = NULL;
    struct item **retry = NULL;
    size_t i, n_retry = 0;
    char why[256];

    b->in_flight--;
    b->in_flight_items -= rq->n;
    if (resp->err < 0 || resp->curl_code != CURLE_OK) {
        retry_all(b, rq, resp->errstr[0] ? resp->errstr : "transport error");
        goto out;
    }
    if (resp->status == 413 || resp->status == 400) {
        snprintf(why, sizeof(why), "HTTP %ld: %.200s", resp->status,
                 resp->body.data ? resp->body.data : "");
        split(b, rq, (int)resp->status, why);
        goto out;
    }
    if (resp->status != 200) {
        snprintf(why, sizeof(why), "HTTP %ld", resp->status);
        if (resp->status == 401 || resp->status == 403) {
            d2o_err("bulk_auth", "OpenSearch refused the credentials (HTTP %ld): %.200s",
                    resp->status, resp->body.data ? resp->body.data : "");
        }
        retry_all(b, rq, why);
        goto out;
    }
    st = calloc(rq->n, sizeof(*st));
    retry = calloc(rq->n, sizeof(*retry));
    if (!st || !retry) {
        retry_all(b, rq, "out of memory");
        goto out;
    }
    if (d2o_bulk_parse_response(resp->body.data ? resp->body.data : "", resp->body.len, rq->n, st,
                                why, sizeof(why)) < 0) {
        /* Unreadable answers are retried, but only up to the attempt cap. */
        for (i = 0; i < rq->n; i++) {
            struct item *it = rq->items[i];

            mark_failed(it);
            if (it->attempts >= b->o.max_attempts) {
                finish(b, it, D2O_BULK_DLQ, 200, "bad_response", why);
            } else {
                it->not_before_ms =
                    d2o_mono_ms() +
                    d2o_backoff_ms(b->o.retry_base_ms, b->o.retry_cap_ms, it->attempts - 1);
                retry[n_retry++] = it;
            }
        }
        b->stats.request_failures++;
        goto requeue;
    }
    b->failure_streak = 0;
    for (i = 0; i < rq->n; i++) {
        struct item *it = rq->items[i];
        enum d2o_item_class c = d2o_classify_bulk_item(
            st[i].status, st[i].error_type[0] ? st[i].error_type : NULL, it->is_delete);

        switch (c) {
        case D2O_ITEM_DONE:
            finish(b, it, D2O_BULK_DONE, st[i].status, NULL, NULL);
            break;
        case D2O_ITEM_STALE:
            finish(b, it, D2O_BULK_STALE, st[i].status, NULL, NULL);
            break;
        case D2O_ITEM_ABSENT:
            finish(b, it, D2O_BULK_ABSENT, st[i].status, NULL, NULL);
            break;
        case D2O_ITEM_PERMANENT:
            mark_failed(it);
            finish(b, it, D2O_BULK_DLQ, st[i].status,
                   st[i].error_type[0] ? st[i].error_type : "http_error", st[i].error_reason);
            break;
        case D2O_ITEM_RETRY:
            mark_failed(it);
            if (it->attempts >= b->o.max_attempts) {
                snprintf(why, sizeof(why), "%u attempts; last: HTTP %d %s %s", it->attempts,
                         st[i].status, st[i].error_type, st[i].error_reason);
                finish(b, it, D2O_BULK_DLQ, st[i].status, "retries_exhausted", why);
                break;
            }
            __attribute__((fallthrough));
        case D2O_ITEM_THROTTLE:
            mark_failed(it);
            it->not_before_ms = d2o_mono_ms() + d2o_backoff_ms(b->o.retry_base_ms,
                                                               b->o.retry_cap_ms, it->attempts - 1);
            retry[n_retry++] = it;
            break;
        }
    }
requeue:
    b->stats.retried += n_retry;
    requeue_front(b, retry, n_retry);
out:
    free(st);
    free(retry);
    request_free(rq);
}

/* Whether a request should go out now, and which items; returns the count chosen. */
static size_t choose(struct d2o_bulk *b, int64_t now, struct item **chosen, bool *due)
{
    struct item *it;
    size_t n = 0, bytes = 0, cap = b->o.max_items;
    int64_t oldest = INT64_MAX;
    bool retry_due = false;

    for (it = b->head; it && n < cap; it = it->next) {
        if (it->not_before_ms > now) {
            continue;
        }
        if (n > 0 && bytes + it->len > b->o.max_bytes) {
            break;
        }
        if (it->max_batch && it->max_batch < cap) {
            cap = it->max_batch;
            if (n >= cap) {
                break;
            }
        }
        chosen[n++] = it;
        bytes += it->len;
        if (it->enq_ms < oldest) {
            oldest = it->enq_ms;
        }
        retry_due |= it->attempts > 0 || it->max_batch > 0;
    }
    *due = n > 0 && (n >= cap || bytes >= b->o.max_bytes || (it && it->not_before_ms <= now) ||
                     b->flush_all || retry_due || oldest + b->o.flush_ms <= now);
    return n;
}

static void unlink_item(struct d2o_bulk *b, struct item *target)
{
    struct item **pp = &b->head, *prev = NULL;

    while (*pp && *pp != target) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) {
        return;
    }
    *pp = target->next;
    if (b->tail == target) {
        b->tail = prev;
    }
    target->next = NULL;
    b->queued--;
}

static int send_request(struct d2o_bulk *b, struct item **chosen, size_t n)
{
    struct d2o_http_header hdrs[2] = {{"Content-Type", "application/x-ndjson"}, {NULL, NULL}};
    struct d2o_http_request req = {0};
    struct request *rq = calloc(1, sizeof(*rq));
    size_t i;
    int r;

    if (!rq) {
        return -ENOMEM;
    }
    rq->b = b;
    rq->items = calloc(n, sizeof(*rq->items));
    if (!rq->items) {
        request_free(rq);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        if (d2o_buf_append(&rq->body, chosen[i]->data, chosen[i]->len) < 0) {
            request_free(rq);
            return -ENOMEM;
        }
    }
    req.method = "POST";
    req.url = b->url;
    req.headers = hdrs;
    req.n_headers = 1;
    if (b->basic_header) {
        hdrs[1].name = "Authorization";
        hdrs[1].value = b->basic_header;
        req.n_headers = 2;
    }
    req.body = rq->body.data;
    req.body_len = rq->body.len;
    if (b->o.signer && b->o.creds) {
        req.signer = b->o.signer;
        req.creds = b->o.creds;
        req.sigv4_flags = b->o.sign_content_sha256 ? D2O_SIGV4_CONTENT_SHA256_HEADER : 0;
    }
    r = d2o_http_start(b->http, &req, on_response, rq, NULL);
    if (r < 0) {
        request_free(rq);
        return r;
    }
    for (i = 0; i < n; i++) {
        unlink_item(b, chosen[i]);
        chosen[i]->attempts++;
        chosen[i]->max_batch = 0;
        rq->items[i] = chosen[i];
    }
    rq->n = n;
    b->in_flight++;
    b->in_flight_items += n;
    b->stats.requests++;
    b->stats.items_sent += n;
    d2o_debug(D2O_CAT_SINK, "bulk_sent", "bulk request: %zu items, %zu bytes", n, rq->body.len);
    return 0;
}

void d2o_bulk_tick(struct d2o_bulk *b, int64_t now_ms)
{
    struct item **chosen;

    if (b->queued == 0) {
        b->flush_all = false;
        return;
    }
    chosen = calloc(b->o.max_items, sizeof(*chosen));
    if (!chosen) {
        return;
    }
    while (b->in_flight < b->o.max_in_flight && b->queued > 0) {
        bool due = false;
        size_t n = choose(b, now_ms, chosen, &due);

        if (!due || send_request(b, chosen, n) < 0) {
            break;
        }
    }
    if (b->queued == 0) {
        b->flush_all = false;
    }
    free(chosen);
}

int64_t d2o_bulk_next_ms(const struct d2o_bulk *b, int64_t now_ms)
{
    const struct item *it;
    int64_t next = INT64_MAX;

    if (b->in_flight >= b->o.max_in_flight) {
        return -1;
    }
    for (it = b->head; it; it = it->next) {
        int64_t at = it->not_before_ms > 0 ? it->not_before_ms : it->enq_ms + b->o.flush_ms;

        if (b->flush_all || it->max_batch) {
            at = it->not_before_ms;
        }
        if (at < next) {
            next = at;
        }
    }
    if (next == INT64_MAX) {
        return -1;
    }
    return next <= now_ms ? 0 : next - now_ms;
}

int d2o_bulk_drain(struct d2o_bulk *b, int64_t timeout_ms)
{
    int64_t deadline = d2o_mono_ms() + timeout_ms;

    d2o_bulk_flush(b);
    while (d2o_bulk_pending(b) > 0) {
        int64_t now = d2o_mono_ms(), wait;

        if (now >= deadline) {
            return -ETIMEDOUT;
        }
        b->flush_all = true;
        d2o_bulk_tick(b, now);
        wait = d2o_bulk_next_ms(b, now);
        if (wait < 0 || wait > 100) {
            wait = 100;
        }
        if (d2o_http_run(b->http, NULL, 0, (int)wait) < 0) {
            return -EIO;
        }
    }
    return 0;
}
