/*
 * The bulk sink: batching, sending, per-item outcomes, per-document order and retry scheduling.
 * See include/d2o/bulk.h.
 *
 * Every pending item is in exactly one state, and each state is a place:
 *   READY      on the ready list (FIFO; retried and split items go to its front)
 *   DELAYED    in the delayed heap, until not_before_ms (backoff)
 *   BLOCKED    only on its document's chain, behind an earlier item of the same document
 *   IN_FLIGHT  in a request's item map (the request's items[], in body order)
 *   CHECKING   in a check's item map (struct d2o_bulk_check): the asynchronous pre-send filter
 *              is on its way; the kept items go back to the ready list's front, checked, and
 *              out in the next request
 * A document's chain (struct doc, in a hash table keyed by index and id) holds its pending items
 * in arrival order; only the chain's head is ever READY, DELAYED or IN_FLIGHT.
 */
#include <errno.h>
#include <inttypes.h>
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
#include "d2o/mem.h"
#include "d2o/rand.h"
#include "d2o/sigv4.h"

enum item_state { ST_READY, ST_DELAYED, ST_BLOCKED, ST_IN_FLIGHT, ST_CHECKING };

struct doc;

struct item {
    struct item *prev, *next; /* ready list */
    struct item *doc_next;    /* the next item of the same document */
    struct doc *doc;          /* NULL: no ordering key could be read */
    enum item_state state;
    char *data;
    size_t len;
    bool is_delete;
    void *cookie;
    int64_t version; /* for the pre-send filter; 0: unknown */
    unsigned attempts;
    int64_t enq_ms;
    int64_t not_before_ms;
    uint64_t delay_seq; /* when it was delayed: orders items of equal not_before_ms */
    size_t heap_at;     /* its place in the delayed heap while DELAYED */
    int64_t first_fail_us;
    int64_t last_fail_us;
    size_t max_batch;     /* 0: no cap; set when a request was split */
    bool checked;         /* the asynchronous filter passed it: it goes out without another */
    uint64_t split_group; /* the halves of one split request share it; 0: none */
};

/* The pending items of one document, oldest first. key is "<index>\0<id>". */
struct doc {
    struct doc *hnext;
    uint64_t hash;
    struct item *head, *tail;
    const char *id; /* points into key */
    size_t klen;
    char key[];
};

struct list {
    struct item *head, *tail;
    size_t n, bytes;
};

/*
 * The delayed items, a binary min-heap ordered by (not_before_ms, delay_seq): the next due item is
 * at a[0], and taking it, adding one or removing one from the middle costs O(log n). Its array
 * always has room for every item the sink holds (reserved when an item is queued), so delaying an
 * item never allocates.
 */
struct heap {
    struct item **a;
    size_t n, cap, bytes;
    uint64_t seq; /* delay_seq of the next delayed item */
};

struct request {
    struct request *prev, *next; /* the sink's in-flight requests */
    struct d2o_bulk *b;          /* NULL once the sink was freed */
    struct item **items;         /* the item map: items[i] is the i-th action of the body */
    const char **ids;
    size_t n;
    uint64_t no; /* the sink's count of requests when this one was sent: names it in the log */
    /* The body: parts[i] is items[i]'s NDJSON, borrowed (an item in flight is not changed or
     * freed before its request's answer). No contiguous copy is made: the HTTP layer reads the
     * pieces as it sends, so a document is held once, in its item, whatever its state. */
    struct iovec *parts;
    size_t bytes;
};

struct d2o_bulk {
    struct d2o_http *http;
    struct d2o_bulk_opts o;
    char *base_url;
    char *url;
    char *basic_header; /* "Basic <base64>" */
    struct list ready;
    struct heap delayed;
    size_t items; /* every item queued and not finished, wherever it is */
    size_t blocked, blocked_bytes;
    size_t in_flight_items, in_flight_bytes;
    unsigned in_flight;
    struct request *requests;
    struct doc **docs; /* hash table */
    size_t n_docs, docs_size;
    unsigned failure_streak; /* consecutive whole-request failures */
    uint64_t splits_made;
    bool flush_all;
    bool recheck; /* run opts.keep over the items not in flight before the next send */
    struct d2o_bulk_stats stats;
    size_t *lens;                        /* scratch for d2o_bulk_batch_count */
    struct d2o_bulk_filter_item *fitems; /* scratch for the pre-send filter (max_items each) */
    bool *fdrop;
    struct ping *ping;             /* the health probe in flight, if any */
    struct d2o_bulk_check *checks; /* asynchronous pre-send checks on their way */
};

/* An asynchronous pre-send check of n ready items; outlives the sink if the sink is freed. */
struct d2o_bulk_check {
    struct d2o_bulk_check *prev, *next;
    struct d2o_bulk *b; /* NULL once the sink was freed: then it owns its items */
    struct item **items;
    bool *drop;
    size_t n;
    bool starting; /* inside opts.filter_start: an answer now waits for its return */
    bool answered;
    int rc;
};

/* A GET / health probe; outlives the sink if the sink is freed while it is in flight. */
struct ping {
    struct d2o_bulk *b;
};

const char *d2o_bulk_outcome_name(enum d2o_bulk_outcome o)
{
    static const char *const names[] = {"done", "stale", "absent", "dlq", "dropped"};

    return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

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

/* ---- lists ---- */

static void list_remove(struct list *l, struct item *it)
{
    if (it->prev) {
        it->prev->next = it->next;
    } else {
        l->head = it->next;
    }
    if (it->next) {
        it->next->prev = it->prev;
    } else {
        l->tail = it->prev;
    }
    it->prev = it->next = NULL;
    l->n--;
    l->bytes -= it->len;
}

static void list_push_back(struct list *l, struct item *it)
{
    it->next = NULL;
    it->prev = l->tail;
    if (l->tail) {
        l->tail->next = it;
    } else {
        l->head = it;
    }
    l->tail = it;
    l->n++;
    l->bytes += it->len;
}

static void list_push_front(struct list *l, struct item *it)
{
    it->prev = NULL;
    it->next = l->head;
    if (l->head) {
        l->head->prev = it;
    } else {
        l->tail = it;
    }
    l->head = it;
    l->n++;
    l->bytes += it->len;
}

/* ---- the delayed heap ---- */

static bool due_before(const struct item *x, const struct item *y)
{
    return x->not_before_ms < y->not_before_ms ||
           (x->not_before_ms == y->not_before_ms && x->delay_seq < y->delay_seq);
}

static void heap_place(struct heap *h, size_t i, struct item *it)
{
    h->a[i] = it;
    it->heap_at = i;
}

static void sift_up(struct heap *h, size_t i)
{
    struct item *it = h->a[i];

    while (i > 0 && due_before(it, h->a[(i - 1) / 2])) {
        heap_place(h, i, h->a[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_place(h, i, it);
}

static void sift_down(struct heap *h, size_t i)
{
    struct item *it = h->a[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= h->n) {
            break;
        }
        if (c + 1 < h->n && due_before(h->a[c + 1], h->a[c])) {
            c++;
        }
        if (!due_before(h->a[c], it)) {
            break;
        }
        heap_place(h, i, h->a[c]);
        i = c;
    }
    heap_place(h, i, it);
}

/* Makes room for n items. 0 or -ENOMEM. */
static int heap_reserve(struct heap *h, size_t n)
{
    size_t cap = h->cap ? h->cap : 64;
    struct item **a;

    if (n <= h->cap) {
        return 0;
    }
    while (cap < n) {
        cap *= 2;
    }
    a = realloc(h->a, cap * sizeof(*a));
    if (!a) {
        return -ENOMEM;
    }
    h->a = a;
    h->cap = cap;
    return 0;
}

/* Adds it (not_before_ms set); the room was reserved when it was queued. */
static void heap_push(struct heap *h, struct item *it)
{
    it->delay_seq = h->seq++;
    h->a[h->n] = it;
    it->heap_at = h->n++;
    h->bytes += it->len;
    sift_up(h, it->heap_at);
}

static void heap_remove(struct heap *h, struct item *it)
{
    size_t i = it->heap_at;
    struct item *last = h->a[--h->n];

    h->bytes -= it->len;
    if (last != it) {
        heap_place(h, i, last);
        sift_down(h, i);
        sift_up(h, last->heap_at);
    }
}

/* Restores the order of a[0..n) after items were taken out of it in place (O(n)). */
static void heapify(struct heap *h)
{
    size_t i;

    for (i = 0; i < h->n; i++) {
        h->a[i]->heap_at = i;
    }
    for (i = h->n / 2; i-- > 0;) {
        sift_down(h, i);
    }
}

/* ---- documents ---- */

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int docs_grow(struct d2o_bulk *b)
{
    size_t size = b->docs_size ? b->docs_size * 2 : 1024, i;
    struct doc **t = calloc(size, sizeof(*t));

    if (!t) {
        return -ENOMEM;
    }
    for (i = 0; i < b->docs_size; i++) {
        struct doc *d = b->docs[i], *next;

        for (; d; d = next) {
            next = d->hnext;
            d->hnext = t[d->hash & (size - 1)];
            t[d->hash & (size - 1)] = d;
        }
    }
    free(b->docs);
    b->docs = t;
    b->docs_size = size;
    return 0;
}

/* Finds or creates the document of index/id. Returns NULL only without memory. */
static struct doc *doc_get(struct d2o_bulk *b, const char *index, const char *id)
{
    size_t ilen = strlen(index), idlen = strlen(id), klen = ilen + 1 + idlen;
    struct doc *d;
    uint64_t h;

    if (b->n_docs >= b->docs_size && docs_grow(b) < 0 && !b->docs) {
        return NULL;
    }
    h = hash_key(index, ilen) ^ (hash_key(id, idlen) * 31);
    for (d = b->docs[h & (b->docs_size - 1)]; d; d = d->hnext) {
        if (d->hash == h && d->klen == klen && memcmp(d->key, index, ilen + 1) == 0 &&
            memcmp(d->id, id, idlen) == 0) {
            return d;
        }
    }
    d = d2o_malloc(sizeof(*d) + klen + 1);
    if (!d) {
        return NULL;
    }
    memcpy(d->key, index, ilen + 1);
    memcpy(d->key + ilen + 1, id, idlen + 1);
    d->id = d->key + ilen + 1;
    d->klen = klen;
    d->hash = h;
    d->head = d->tail = NULL;
    d->hnext = b->docs[h & (b->docs_size - 1)];
    b->docs[h & (b->docs_size - 1)] = d;
    b->n_docs++;
    return d;
}

static void doc_drop(struct d2o_bulk *b, struct doc *d)
{
    struct doc **pp = &b->docs[d->hash & (b->docs_size - 1)];

    while (*pp && *pp != d) {
        pp = &(*pp)->hnext;
    }
    if (*pp) {
        *pp = d->hnext;
        b->n_docs--;
    }
    free(d);
}

/* ---- life cycle ---- */

static void item_free(struct item *it)
{
    if (it) {
        free(it->data);
        free(it);
    }
}

static void request_free(struct request *rq)
{
    if (rq) {
        free(rq->items);
        free(rq->ids);
        free(rq->parts);
        free(rq);
    }
}

static void free_list(struct list *l)
{
    struct item *it, *next;

    for (it = l->head; it; it = next) {
        next = it->next;
        item_free(it);
    }
}

void d2o_bulk_free(struct d2o_bulk *b)
{
    struct d2o_bulk_check *ck;
    struct request *rq;
    size_t i;

    if (!b) {
        return;
    }
    for (i = 0; i < b->docs_size; i++) {
        struct doc *d = b->docs[i], *next;

        for (; d; d = next) {
            struct item *it, *inext;

            next = d->hnext;
            for (it = d->head; it; it = inext) {
                inext = it->doc_next;
                if (it->state == ST_BLOCKED) {
                    item_free(it);
                }
            }
            free(d);
        }
    }
    free_list(&b->ready);
    for (i = 0; i < b->delayed.n; i++) {
        item_free(b->delayed.a[i]);
    }
    free(b->delayed.a);
    /* Checks on their way own their items from now on; d2o_bulk_check_done frees them. */
    for (ck = b->checks; ck; ck = ck->next) {
        ck->b = NULL;
    }
    /* In-flight requests own their items from now on; on_response frees them. */
    for (rq = b->requests; rq; rq = rq->next) {
        rq->b = NULL;
    }
    if (b->ping) {
        b->ping->b = NULL;
    }
    free(b->docs);
    free(b->lens);
    free(b->fitems);
    free(b->fdrop);
    free(b->base_url);
    free(b->url);
    free(b->basic_header);
    free(b);
}

static void on_ping(struct d2o_http_response *resp, void *arg)
{
    struct ping *p = arg;
    struct d2o_bulk *b = p->b;

    free(p);
    if (!b) {
        return;
    }
    b->ping = NULL;
    if (b->o.observe) {
        b->o.observe(-1, resp->status, b->o.done_arg);
    }
}

int d2o_bulk_ping(struct d2o_bulk *b)
{
    struct d2o_http_request req = {0};
    struct d2o_http_header h[1];
    struct ping *p;
    int r;

    if (b->ping) {
        return 0;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->b = b;
    req.method = "GET";
    req.url = b->base_url;
    if (b->basic_header) {
        h[0].name = "Authorization";
        h[0].value = b->basic_header;
        req.headers = h;
        req.n_headers = 1;
    }
    if (b->o.signer && b->o.creds) {
        req.signer = b->o.signer;
        req.creds = b->o.creds;
        req.sigv4_flags = b->o.sign_content_sha256 ? D2O_SIGV4_CONTENT_SHA256_HEADER : 0;
    }
    req.timeout_ms = 5000;
    r = b->o.start(b->o.start_ctx, &req, on_ping, p);
    if (r < 0) {
        free(p);
        return r;
    }
    b->ping = p;
    return 0;
}

static int http_start(void *ctx, const struct d2o_http_request *req, d2o_http_done_fn cb,
                      void *cb_arg)
{
    return d2o_http_start(ctx, req, cb, cb_arg, NULL);
}

struct d2o_bulk *d2o_bulk_new(struct d2o_http *http, const struct d2o_bulk_opts *opts, char *errstr,
                              size_t errstr_size)
{
    struct d2o_bulk *b = NULL;
    struct d2o_buf up = D2O_BUF_INIT;
    size_t n;

    if (!opts || !opts->url || !*opts->url || !opts->done || (!http && !opts->start)) {
        snprintf(errstr, errstr_size, "bulk sink: needs an HTTP client, a URL and a callback");
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        goto nomem;
    }
    b->http = http;
    b->o = *opts;
    b->o.max_bytes = opts->max_bytes ? opts->max_bytes : 5u << 20;
    b->o.max_items = opts->max_items ? opts->max_items : 5000;
    b->o.flush_ms = opts->flush_ms >= 0 ? opts->flush_ms : 1000;
    b->o.max_in_flight = opts->max_in_flight ? opts->max_in_flight : 2;
    b->o.retry_base_ms = opts->retry_base_ms > 0 ? opts->retry_base_ms : 100;
    b->o.retry_cap_ms = opts->retry_cap_ms > 0 ? opts->retry_cap_ms : 30000;
    b->o.max_attempts = opts->max_attempts ? opts->max_attempts : 10;
    if (!b->o.now_ms) {
        b->o.now_ms = d2o_mono_ms;
    }
    if (!b->o.start) {
        b->o.start = http_start;
        b->o.start_ctx = http;
    }
    b->lens = calloc(b->o.max_items, sizeof(*b->lens));
    if (!b->lens || docs_grow(b) < 0) {
        goto nomem;
    }
    if (b->o.filter || b->o.filter_start) {
        b->fitems = calloc(b->o.max_items, sizeof(*b->fitems));
        b->fdrop = calloc(b->o.max_items, sizeof(*b->fdrop));
        if (!b->fitems || !b->fdrop) {
            goto nomem;
        }
    }
    n = strlen(opts->url);
    while (n > 0 && opts->url[n - 1] == '/') {
        n--;
    }
    b->base_url = strndup(opts->url, n);
    b->url = malloc(n + sizeof(D2O_BULK_PATH));
    if (!b->base_url || !b->url) {
        goto nomem;
    }
    memcpy(b->url, opts->url, n);
    memcpy(b->url + n, D2O_BULK_PATH, sizeof(D2O_BULK_PATH));
    b->o.url = b->base_url;
    b->o.basic_user = NULL;
    b->o.basic_password = NULL;
    if (opts->basic_user && *opts->basic_user) {
        size_t cap;

        if (d2o_buf_printf(&up, "%s:%s", opts->basic_user,
                           opts->basic_password ? opts->basic_password : "") < 0) {
            goto nomem;
        }
        cap = 6 + 4 * ((up.len + 2) / 3) + 1;
        b->basic_header = malloc(cap);
        if (!b->basic_header) {
            goto nomem;
        }
        memcpy(b->basic_header, "Basic ", 6);
        EVP_EncodeBlock((unsigned char *)b->basic_header + 6, (unsigned char *)up.data,
                        (int)up.len);
        d2o_log_add_secret(b->basic_header + 6);
        if (opts->basic_password && *opts->basic_password) {
            d2o_log_add_secret(opts->basic_password);
        }
    }
    d2o_buf_free(&up);
    return b;
nomem:
    snprintf(errstr, errstr_size, "bulk sink: out of memory");
    d2o_buf_free(&up);
    d2o_bulk_free(b);
    return NULL;
}

/* ---- queueing ---- */

static void make_ready(struct d2o_bulk *b, struct item *it, bool front)
{
    it->state = ST_READY;
    if (front) {
        list_push_front(&b->ready, it);
    } else {
        list_push_back(&b->ready, it);
    }
}

int d2o_bulk_add_item(struct d2o_bulk *b, const struct d2o_bulk_item *in)
{
    struct item *it = NULL;
    char *index = NULL, *id = NULL, verb[8], err[160];
    bool nl = in->len > 0 && in->ndjson[in->len - 1] == '\n';
    int r = -ENOMEM;

    /* every item may come to wait in the delayed heap at once */
    if (heap_reserve(&b->delayed, b->items + 1) < 0) {
        goto out;
    }
    it = d2o_calloc(1, sizeof(*it));
    if (!it) {
        goto out;
    }
    it->data = d2o_malloc(in->len + 2);
    if (!it->data) {
        goto out;
    }
    if (in->len) {
        memcpy(it->data, in->ndjson, in->len);
    }
    it->len = in->len;
    if (!nl) {
        it->data[it->len++] = '\n';
    }
    it->data[it->len] = '\0';
    it->is_delete = in->is_delete;
    it->cookie = in->cookie;
    it->version = in->version;
    it->enq_ms = b->o.now_ms();
    if (in->index && in->id) {
        it->doc = doc_get(b, in->index, in->id);
        if (!it->doc) {
            goto out;
        }
    } else {
        r = d2o_bulk_action_key(it->data, it->len, verb, &index, &id, err, sizeof(err));
        if (r == -ENOMEM) {
            goto out;
        }
        if (r == 0 && index && id) {
            it->doc = doc_get(b, index, id);
            if (!it->doc) {
                r = -ENOMEM;
                goto out;
            }
        } else {
            /* OpenSearch will refuse the item itself, and it gets its outcome then. */
            d2o_debug(D2O_CAT_SINK, "bulk_no_key", "bulk item without index and id: %s",
                      r < 0 ? err : "no _index or _id");
        }
    }
    if (it->doc && it->doc->head) {
        it->state = ST_BLOCKED;
        it->doc->tail->doc_next = it;
        it->doc->tail = it;
        b->blocked++;
        b->blocked_bytes += it->len;
    } else {
        if (it->doc) {
            it->doc->head = it->doc->tail = it;
        }
        make_ready(b, it, false);
    }
    b->items++;
    it = NULL;
    r = 0;
out:
    free(index);
    free(id);
    item_free(it);
    return r;
}

int d2o_bulk_add(struct d2o_bulk *b, const char *ndjson, size_t len, bool is_delete, void *cookie)
{
    struct d2o_bulk_item in = {ndjson, len, NULL, NULL, is_delete, cookie, 0};

    return d2o_bulk_add_item(b, &in);
}

size_t d2o_bulk_pending(const struct d2o_bulk *b)
{
    return b->ready.n + b->delayed.n + b->blocked + b->in_flight_items;
}

size_t d2o_bulk_pending_bytes(const struct d2o_bulk *b)
{
    return b->ready.bytes + b->delayed.bytes + b->blocked_bytes + b->in_flight_bytes;
}

void d2o_bulk_set_creds(struct d2o_bulk *b, const struct d2o_aws_creds *creds)
{
    b->o.creds = creds;
}

const struct d2o_bulk_stats *d2o_bulk_stats(const struct d2o_bulk *b)
{
    return &b->stats;
}

void d2o_bulk_flush(struct d2o_bulk *b)
{
    b->flush_all = true;
}

void d2o_bulk_recheck(struct d2o_bulk *b)
{
    b->recheck = true;
}

/* ---- outcomes ---- */

/* Takes it, the head of its document's chain, off the chain: the next item becomes ready. */
static void unchain(struct d2o_bulk *b, struct item *it)
{
    struct doc *d = it->doc;
    struct item *next;

    if (!d) {
        return;
    }
    next = it->doc_next;
    d->head = next;
    if (next) {
        b->blocked--;
        b->blocked_bytes -= next->len;
        make_ready(b, next, true);
    } else {
        doc_drop(b, d);
    }
    it->doc = NULL;
    it->doc_next = NULL;
}

/* Reports the final outcome of it (in no list), frees it, and unblocks its document's next. */
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
                "item to the dead-letter queue after %u attempts: HTTP %d %s: %.300s", it->attempts,
                status, error_class ? error_class : "?", message ? message : "");
        break;
    case D2O_BULK_DROPPED:
        b->stats.dropped++;
        break;
    }
    unchain(b, it);
    b->items--;
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

static void delay(struct d2o_bulk *b, struct item *it, int64_t not_before)
{
    it->state = ST_DELAYED;
    it->not_before_ms = not_before;
    it->prev = it->next = NULL;
    b->stats.retried++;
    if (b->delayed.n == b->delayed.cap && heap_reserve(&b->delayed, b->delayed.n + 1) < 0) {
        /* cannot happen: d2o_bulk_add_item reserved room for every item; send it again now */
        d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_delay_nomem",
                "no room to hold an item for its retry; sending it again without waiting");
        make_ready(b, it, true);
        return;
    }
    heap_push(&b->delayed, it);
}

/* Retries every item of a request that failed as a whole; never dead-letters them. */
static void retry_all(struct d2o_bulk *b, struct request *rq, const char *why)
{
    int64_t wait, now = b->o.now_ms();
    size_t i;

    b->failure_streak++;
    b->stats.request_failures++;
    wait = d2o_backoff_ms(b->o.retry_base_ms, b->o.retry_cap_ms, b->failure_streak - 1);
    d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_request_failed",
            "bulk request of %zu items failed (%s); retrying in %lld ms", rq->n, why,
            (long long)wait);
    for (i = 0; i < rq->n; i++) {
        mark_failed(rq->items[i]);
        delay(b, rq->items[i], now + wait);
    }
}

/* Splits a request the server refused as a whole (413, or 400 for the body): halves go again. */
static void split(struct d2o_bulk *b, struct request *rq, int status, const char *message)
{
    char why[384];
    size_t i;

    if (rq->n == 1) {
        mark_failed(rq->items[0]);
        if (status == 413) {
            snprintf(why, sizeof(why),
                     "document too large: a bulk request holding only this item (%zu bytes) "
                     "was refused with HTTP 413",
                     rq->items[0]->len);
            finish(b, rq->items[0], D2O_BULK_DLQ, status, "document_too_large", why);
        } else {
            finish(b, rq->items[0], D2O_BULK_DLQ, status, "request_refused", message);
        }
        return;
    }
    b->stats.splits++;
    b->splits_made++;
    d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_split",
            "bulk request of %zu items (%zu bytes) refused with HTTP %d; splitting it", rq->n,
            rq->bytes, status);
    for (i = rq->n; i-- > 0;) {
        rq->items[i]->max_batch = (rq->n + 1) / 2;
        rq->items[i]->split_group = b->splits_made;
        make_ready(b, rq->items[i], true);
    }
}

/*
 * The retry time of an item that failed with attempts sends. Items of one response that failed
 * equally often share one draw, so their retries travel together instead of as many small
 * requests. draws[] caches the draws of one response (0: none yet).
 */
static int64_t retry_at(const struct d2o_bulk *b, int64_t *draws, size_t n_draws, unsigned attempts,
                        int64_t now)
{
    unsigned a = attempts > 0 ? attempts - 1 : 0;

    if (a < n_draws) {
        if (draws[a] == 0) {
            draws[a] = now + d2o_backoff_ms(b->o.retry_base_ms, b->o.retry_cap_ms, a) + 1;
        }
        return draws[a] - 1;
    }
    return now + d2o_backoff_ms(b->o.retry_base_ms, b->o.retry_cap_ms, a);
}

#define N_DRAWS 16

static void item_result(struct d2o_bulk *b, struct item *it, const struct d2o_bulk_item_status *st,
                        int64_t now, int64_t *draws)
{
    char why[768];
    enum d2o_item_class c = d2o_classify_bulk_item(
        st->status, st->error_type[0] ? st->error_type : NULL, it->is_delete);

    switch (c) {
    case D2O_ITEM_DONE:
        finish(b, it, D2O_BULK_DONE, st->status, NULL, NULL);
        return;
    case D2O_ITEM_STALE:
        finish(b, it, D2O_BULK_STALE, st->status, NULL, NULL);
        return;
    case D2O_ITEM_ABSENT:
        finish(b, it, D2O_BULK_ABSENT, st->status, NULL, NULL);
        return;
    case D2O_ITEM_PERMANENT:
        mark_failed(it);
        snprintf(why, sizeof(why), "%s", st->error_reason[0] ? st->error_reason : "no reason");
        finish(b, it, D2O_BULK_DLQ, st->status, st->error_type[0] ? st->error_type : "http_error",
               why);
        return;
    case D2O_ITEM_RETRY:
        mark_failed(it);
        if (it->attempts >= b->o.max_attempts) {
            snprintf(why, sizeof(why), "%u attempts; last: HTTP %d %s %s", it->attempts, st->status,
                     st->error_type, st->error_reason);
            finish(b, it, D2O_BULK_DLQ, st->status, "retries_exhausted", why);
            return;
        }
        break;
    case D2O_ITEM_BLOCKED:
        b->stats.blocked++;
        if ((b->stats.blocked & (b->stats.blocked - 1)) == 0) { /* the 1st, 2nd, 4th, ... */
            d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_blocked",
                    "OpenSearch takes no writes to the index for now (HTTP %d %s: %.300s); "
                    "retrying until it does",
                    st->status, st->error_type, st->error_reason);
        }
        /* retried without limit, like a throttle */
        __attribute__((fallthrough));
    case D2O_ITEM_THROTTLE:
        mark_failed(it);
        b->stats.throttled++;
        break;
    }
    delay(b, it, retry_at(b, draws, N_DRAWS, it->attempts, now));
}

static void send_due(struct d2o_bulk *b, int64_t now);

static bool kept(const struct d2o_bulk *b, const struct item *it)
{
    return !b->o.keep || b->o.keep(it->cookie, b->o.done_arg);
}

/* Moves the items of l that keep refuses to the drop list *out (linked by doc_next). */
static void purge_list(struct d2o_bulk *b, struct list *l, struct item **out)
{
    struct item *it, *next;

    for (it = l->head; it; it = next) {
        next = it->next;
        if (!kept(b, it)) {
            list_remove(l, it);
            unchain(b, it);
            it->doc_next = *out;
            *out = it;
        }
    }
}

/* The same for the delayed heap: keeps the items keep accepts in place, then orders them again. */
static void purge_heap(struct d2o_bulk *b, struct item **out)
{
    struct heap *h = &b->delayed;
    size_t i, n = 0;

    for (i = 0; i < h->n; i++) {
        struct item *it = h->a[i];

        if (kept(b, it)) {
            h->a[n++] = it;
            continue;
        }
        h->bytes -= it->len;
        unchain(b, it);
        it->doc_next = *out;
        *out = it;
    }
    if (n < h->n) {
        h->n = n;
        heapify(h);
    }
}

/*
 * Drops every item that is not in flight and that keep refuses: blocked items leave their
 * chains, ready and delayed ones too (their document's next item becomes ready), and each gets
 * the outcome DROPPED. Items in flight stay: their answer is awaited, and a retry they need is
 * dropped by the recheck their answer asks for.
 */
static void purge(struct d2o_bulk *b)
{
    struct item *dropped = NULL, *it;
    size_t i, n = 0;

    b->recheck = false;
    if (!b->o.keep) {
        return;
    }
    for (i = 0; i < b->docs_size; i++) {
        struct doc *d;

        for (d = b->docs[i]; d; d = d->hnext) {
            struct item *prev = d->head, **pp;

            for (pp = d->head ? &d->head->doc_next : NULL; pp && *pp;) {
                it = *pp;
                if (kept(b, it)) {
                    prev = it;
                    pp = &it->doc_next;
                    continue;
                }
                *pp = it->doc_next;
                if (d->tail == it) {
                    d->tail = prev;
                }
                b->blocked--;
                b->blocked_bytes -= it->len;
                it->doc = NULL;
                it->doc_next = dropped;
                dropped = it;
            }
        }
    }
    purge_list(b, &b->ready, &dropped);
    purge_heap(b, &dropped);
    while (dropped) {
        it = dropped;
        dropped = it->doc_next;
        it->doc_next = NULL;
        n++;
        finish(b, it, D2O_BULK_DROPPED, 0, "dropped", NULL);
    }
    if (n) {
        d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_dropped",
                "dropped %zu items that may no longer be written (their lease is gone)", n);
    }
}

static void on_response(struct d2o_http_response *resp, void *arg)
{
    struct request *rq = arg;
    struct d2o_bulk *b = rq->b;
    struct d2o_bulk_item_status *st = NULL;
    int64_t now, draws[N_DRAWS] = {0};
    size_t i;
    char why[512];

    if (!b) {
        for (i = 0; i < rq->n; i++) {
            item_free(rq->items[i]);
        }
        request_free(rq);
        return;
    }
    now = b->o.now_ms();
    if (b->o.observe) {
        b->o.observe(resp->total_us, resp->status, b->o.done_arg);
    }
    if (rq->prev) {
        rq->prev->next = rq->next;
    } else {
        b->requests = rq->next;
    }
    if (rq->next) {
        rq->next->prev = rq->prev;
    }
    b->in_flight--;
    b->in_flight_items -= rq->n;
    d2o_debug(D2O_CAT_SINK, "bulk_answered",
              "bulk request %" PRIu64 ": HTTP %ld after %.1f ms, %zu items, %u still in flight",
              rq->no, resp->status, (double)resp->total_us / 1000.0, rq->n, b->in_flight);
    for (i = 0; i < rq->n; i++) {
        b->in_flight_bytes -= rq->items[i]->len;
        if (!b->recheck && !kept(b, rq->items[i])) {
            /* whatever of it must be retried is dropped before the next send */
            b->recheck = true;
        }
    }
    if (resp->err == -ECANCELED) {
        /* the process is stopping: the items wait, unsent, for d2o_bulk_free */
        for (i = 0; i < rq->n; i++) {
            delay(b, rq->items[i], now);
        }
        request_free(rq);
        return;
    }
    if (resp->err < 0 || resp->curl_code != CURLE_OK || resp->status == 0) {
        retry_all(b, rq, resp->errstr[0] ? resp->errstr : "transport error");
        goto out;
    }
    if (resp->status == 413 || resp->status == 400) {
        snprintf(why, sizeof(why), "HTTP %ld: %.300s", resp->status,
                 resp->body.data ? resp->body.data : "");
        split(b, rq, (int)resp->status, why);
        goto out;
    }
    if (resp->status != 200) {
        snprintf(why, sizeof(why), "HTTP %ld: %.200s", resp->status,
                 resp->body.data ? resp->body.data : "");
        if (resp->status == 401 || resp->status == 403) {
            d2o_err("bulk_auth", "OpenSearch refused the credentials (HTTP %ld): %.200s",
                    resp->status, resp->body.data ? resp->body.data : "");
        }
        retry_all(b, rq, why);
        goto out;
    }
    st = malloc(rq->n * sizeof(*st));
    if (!st) {
        retry_all(b, rq, "out of memory");
        goto out;
    }
    if (d2o_bulk_parse_response(resp->body.data ? resp->body.data : "", resp->body.len, rq->n,
                                rq->ids, st, why, sizeof(why)) < 0) {
        /* Unreadable answers are retried, but only up to the attempt cap. */
        b->stats.bad_responses++;
        b->stats.request_failures++;
        d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_bad_response",
                "bulk response for %zu items is unusable: %s; retrying them", rq->n, why);
        for (i = 0; i < rq->n; i++) {
            struct item *it = rq->items[i];

            mark_failed(it);
            if (it->attempts >= b->o.max_attempts) {
                finish(b, it, D2O_BULK_DLQ, 200, "bad_response", why);
            } else {
                delay(b, it, retry_at(b, draws, N_DRAWS, it->attempts, now));
            }
        }
        goto out;
    }
    b->failure_streak = 0;
    for (i = 0; i < rq->n; i++) {
        item_result(b, rq->items[i], &st[i], now, draws);
    }
out:
    free(st);
    request_free(rq);
    send_due(b, now);
}

/* ---- sending ---- */

static int send_request(struct d2o_bulk *b, size_t n)
{
    struct d2o_http_header hdrs[2] = {{"Content-Type", "application/x-ndjson"}, {NULL, NULL}};
    struct d2o_http_request req = {0};
    struct request *rq = calloc(1, sizeof(*rq));
    struct item *it;
    size_t i;
    int r = -ENOMEM;

    if (!rq) {
        goto fail;
    }
    rq->b = b;
    rq->items = malloc(n * sizeof(*rq->items));
    rq->ids = malloc(n * sizeof(*rq->ids));
    rq->parts = malloc(n * sizeof(*rq->parts));
    if (!rq->items || !rq->ids || !rq->parts) {
        goto fail;
    }
    for (i = 0, it = b->ready.head; i < n; i++, it = it->next) {
        rq->items[i] = it;
        rq->ids[i] = it->doc ? it->doc->id : NULL;
        rq->parts[i].iov_base = it->data;
        rq->parts[i].iov_len = it->len;
        rq->bytes += it->len;
    }
    rq->n = n;
    req.method = "POST";
    req.url = b->url;
    req.headers = hdrs;
    req.n_headers = 1;
    if (b->basic_header) {
        hdrs[1].name = "Authorization";
        hdrs[1].value = b->basic_header;
        req.n_headers = 2;
    }
    req.body_parts = rq->parts;
    req.n_body_parts = n;
    req.body_len = rq->bytes;
    if (b->o.signer && b->o.creds) {
        req.signer = b->o.signer;
        req.creds = b->o.creds;
        req.sigv4_flags = b->o.sign_content_sha256 ? D2O_SIGV4_CONTENT_SHA256_HEADER : 0;
    }
    r = b->o.start(b->o.start_ctx, &req, on_response, rq);
    if (r < 0) {
        goto fail;
    }
    for (i = 0; i < n; i++) {
        it = rq->items[i];
        list_remove(&b->ready, it);
        it->state = ST_IN_FLIGHT;
        it->checked = false;
        it->attempts++;
        it->max_batch = 0;
        it->split_group = 0;
        b->in_flight_bytes += it->len;
    }
    rq->next = b->requests;
    if (b->requests) {
        b->requests->prev = rq;
    }
    b->requests = rq;
    b->in_flight++;
    b->in_flight_items += n;
    b->stats.requests++;
    b->stats.items_sent += n;
    rq->no = b->stats.requests;
    /* The first item's wait is the longest: items leave the ready list in the order they came. */
    d2o_debug(D2O_CAT_SINK, "bulk_sent",
              "bulk request %" PRIu64
              ": %zu items, %zu bytes, %u in flight, the first one waited %" PRId64 " ms",
              rq->no, n, rq->bytes, b->in_flight, b->o.now_ms() - rq->items[0]->enq_ms);
    return 0;
fail:
    d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_start_failed",
            "cannot start a bulk request of %zu items (errno %d); will try again", n, -r);
    /* not sent right after their check: checked again */
    for (i = 0, it = b->ready.head; i < n && it; i++, it = it->next) {
        it->checked = false;
    }
    request_free(rq);
    return r;
}

/* The pre-send filter's view of item it, at place i of the batch. */
static void set_fitem(struct d2o_bulk *b, size_t i, const struct item *it)
{
    b->fitems[i].index = it->doc ? it->doc->key : NULL;
    b->fitems[i].id = it->doc ? it->doc->id : NULL;
    b->fitems[i].version = it->version;
    b->fitems[i].is_delete = it->is_delete;
    b->fitems[i].cookie = it->cookie;
}

/* The pre-send check of n items failed with rc (either form of the filter): counts it, says so
 * and returns how long the items wait. */
static int64_t filter_failed(struct d2o_bulk *b, size_t n, int rc)
{
    int64_t wait;

    b->failure_streak++;
    b->stats.filter_failures++;
    wait = d2o_backoff_ms(b->o.retry_base_ms, b->o.retry_cap_ms, b->failure_streak - 1);
    d2o_log(D2O_LOG_WARN, D2O_CAT_SINK, NULL, "bulk_filter_failed",
            "the pre-send check of %zu items failed (errno %d); holding them for %lld ms", n, -rc,
            (long long)wait);
    return wait;
}

/*
 * Runs the pre-send filter over the first n ready items. Dropped items leave the ready list (so
 * the first kept items lead it) and are moved to *dropped, to be finished after the request went
 * out. Returns how many items are kept, or < 0 when the filter failed: then all n items wait with
 * backoff.
 */
static long filter_batch(struct d2o_bulk *b, size_t n, struct item **dropped, int64_t now)
{
    struct item *it, *next;
    size_t i, kept = 0;
    int r;

    for (i = 0, it = b->ready.head; i < n; i++, it = it->next) {
        set_fitem(b, i, it);
        b->fdrop[i] = false;
    }
    r = b->o.filter(b->o.filter_arg, b->fitems, n, b->fdrop);
    if (r < 0) {
        int64_t wait = filter_failed(b, n, r);

        for (i = 0, it = b->ready.head; i < n; i++, it = next) {
            next = it->next;
            list_remove(&b->ready, it);
            delay(b, it, now + wait);
        }
        return r;
    }
    for (i = 0, it = b->ready.head; i < n; i++, it = next) {
        next = it->next;
        if (b->fdrop[i]) {
            list_remove(&b->ready, it);
            it->next = *dropped;
            *dropped = it;
            b->stats.filtered++;
        } else {
            kept++;
        }
    }
    return (long)kept;
}

/* An asynchronous check has its answer: its kept items go to the ready list's front, checked
 * (the next request carries them unfiltered), its dropped ones finish as stale; when it failed,
 * they all wait with backoff. */
static void check_apply(struct d2o_bulk *b, struct d2o_bulk_check *ck, int64_t now)
{
    size_t i;

    if (ck->prev) {
        ck->prev->next = ck->next;
    } else {
        b->checks = ck->next;
    }
    if (ck->next) {
        ck->next->prev = ck->prev;
    }
    b->in_flight--;
    b->in_flight_items -= ck->n;
    for (i = 0; i < ck->n; i++) {
        b->in_flight_bytes -= ck->items[i]->len;
    }
    if (ck->rc == -ECANCELED) {
        for (i = 0; i < ck->n; i++) {
            delay(b, ck->items[i], now);
        }
    } else if (ck->rc < 0) {
        int64_t wait = filter_failed(b, ck->n, ck->rc);

        for (i = 0; i < ck->n; i++) {
            delay(b, ck->items[i], now + wait);
        }
    } else {
        for (i = ck->n; i-- > 0;) {
            if (!ck->drop[i]) {
                ck->items[i]->checked = true;
                make_ready(b, ck->items[i], true);
            }
        }
        for (i = 0; i < ck->n; i++) {
            if (ck->drop[i]) {
                b->stats.filtered++;
                finish(b, ck->items[i], D2O_BULK_STALE, 0, NULL, NULL);
            }
        }
    }
    free(ck->items);
    free(ck->drop);
    free(ck);
}

/* Moves the first n ready items into a check and starts opts.filter_start on them. Returns 0,
 * -ENOMEM (nothing moved) or the check's failure when it failed at once (the items wait). */
static int start_check(struct d2o_bulk *b, size_t n, int64_t now)
{
    struct d2o_bulk_check *ck = calloc(1, sizeof(*ck));
    struct item *it;
    size_t i;
    int r;

    if (!ck || !(ck->items = malloc(n * sizeof(*ck->items))) ||
        !(ck->drop = calloc(n, sizeof(*ck->drop)))) {
        if (ck) {
            free(ck->items);
        }
        free(ck);
        return -ENOMEM;
    }
    for (i = 0, it = b->ready.head; i < n; i++, it = it->next) {
        set_fitem(b, i, it);
        ck->items[i] = it;
    }
    for (i = 0; i < n; i++) {
        list_remove(&b->ready, ck->items[i]);
        ck->items[i]->state = ST_CHECKING;
        b->in_flight_bytes += ck->items[i]->len;
    }
    ck->n = n;
    ck->b = b;
    ck->next = b->checks;
    if (b->checks) {
        b->checks->prev = ck;
    }
    b->checks = ck;
    b->in_flight++;
    b->in_flight_items += n;
    ck->starting = true;
    r = b->o.filter_start(b->o.filter_arg, b->fitems, n, ck);
    ck->starting = false;
    if (r < 0) {
        ck->answered = true;
        ck->rc = r;
    }
    if (!ck->answered) {
        return 0;
    }
    r = ck->rc;
    check_apply(b, ck, now);
    return r < 0 ? r : 0;
}

void d2o_bulk_check_done(struct d2o_bulk_check *ck, int rc, const bool *drop)
{
    struct d2o_bulk *b = ck->b;
    size_t i;
    int64_t now;

    if (!b) {
        for (i = 0; i < ck->n; i++) {
            item_free(ck->items[i]);
        }
        free(ck->items);
        free(ck->drop);
        free(ck);
        return;
    }
    ck->rc = rc;
    for (i = 0; rc >= 0 && drop && i < ck->n; i++) {
        ck->drop[i] = drop[i];
    }
    ck->answered = true;
    if (ck->starting) {
        return; /* start_check applies it */
    }
    now = b->o.now_ms();
    check_apply(b, ck, now);
    if (rc != -ECANCELED) {
        send_due(b, now); /* a canceled check: the process is stopping, nothing more goes out */
    }
}

/*
 * Moves delayed items whose backoff has passed to the front of the ready list, in the order they
 * became due (items due at the same time in the order they were delayed). O(k log n) for k due
 * items out of n delayed.
 */
static void promote_delayed(struct d2o_bulk *b, int64_t now)
{
    struct list due = {0};
    struct item *it;

    while (b->delayed.n > 0 && b->delayed.a[0]->not_before_ms <= now) {
        it = b->delayed.a[0];
        heap_remove(&b->delayed, it);
        it->state = ST_READY;
        list_push_back(&due, it);
    }
    if (!due.head) {
        return;
    }
    due.tail->next = b->ready.head;
    if (b->ready.head) {
        b->ready.head->prev = due.tail;
    } else {
        b->ready.tail = due.tail;
    }
    b->ready.head = due.head;
    b->ready.n += due.n;
    b->ready.bytes += due.bytes;
}

/*
 * Whether the ready list should go out now: when it fills a request, holds a retry, a split half
 * or checked items, when its first item has waited flush_ms, or when no request of ours is at
 * OpenSearch and a tenth of max_items is ready. Without that last rule a backlog's drain left
 * OpenSearch idle for the flush time after each answer that emptied both slots, with a GetRecords
 * answer's thousand items waiting (a tenth of a drain, docs/performance.md, "A source that does
 * not decide"); a quiet stream's items still wait for the timer, so they go out in a few requests.
 */
static bool ready_due(const struct d2o_bulk *b, int64_t now)
{
    const struct item *h = b->ready.head;

    return h &&
           (b->flush_all || b->ready.n >= b->o.max_items || b->ready.bytes >= b->o.max_bytes ||
            h->attempts > 0 || h->max_batch > 0 || h->checked || h->enq_ms + b->o.flush_ms <= now ||
            (b->in_flight == 0 && b->ready.n * 10 >= b->o.max_items));
}

static void send_due(struct d2o_bulk *b, int64_t now)
{
    promote_delayed(b, now);
    if (b->recheck) {
        purge(b);
    }
    while (b->in_flight < b->o.max_in_flight && ready_due(b, now)) {
        size_t cap = b->o.max_items, n, i;
        struct item *it, *dropped = NULL;
        bool stop = false, any_dropped, refused = false;

        /* The halves of a split request lead the ready list: the batch takes one half. */
        if (b->ready.head->max_batch && b->ready.head->max_batch < cap) {
            cap = b->ready.head->max_batch;
        }
        for (i = 0, it = b->ready.head; it && i < cap; i++, it = it->next) {
            if (it->split_group != b->ready.head->split_group ||
                it->checked != b->ready.head->checked) {
                break;
            }
            if (!kept(b, it)) {
                refused = true;
                break;
            }
            b->lens[i] = it->len;
        }
        if (refused) {
            /* no request carries an item keep refuses: drop them all, then build again */
            purge(b);
            continue;
        }
        n = d2o_bulk_batch_count(b->lens, i, b->o.max_bytes, cap);
        if (n > 0 && b->o.filter_start && !b->ready.head->checked) {
            /* the request goes out when the check's answer comes */
            if (start_check(b, n, now) < 0) {
                break;
            }
            continue;
        }
        if (n > 0 && b->o.filter) {
            long n_kept = filter_batch(b, n, &dropped, now);

            stop = n_kept < 0;
            n = n_kept < 0 ? 0 : (size_t)n_kept;
        }
        if (n > 0 && send_request(b, n) < 0) {
            stop = true;
        }
        /* Dropped items finish after the request left: finishing one readies its document's
         * next item, which goes in a later request, checked again. */
        any_dropped = dropped != NULL;
        while (dropped) {
            it = dropped;
            dropped = it->next;
            it->next = it->prev = NULL;
            finish(b, it, D2O_BULK_STALE, 0, NULL, NULL);
        }
        if (stop || (n == 0 && !any_dropped)) {
            break;
        }
    }
    if (b->ready.n == 0 && b->delayed.n == 0 && b->blocked == 0) {
        b->flush_all = false;
    }
}

void d2o_bulk_tick(struct d2o_bulk *b, int64_t now_ms)
{
    send_due(b, now_ms);
}

int64_t d2o_bulk_next_ms(const struct d2o_bulk *b, int64_t now_ms)
{
    int64_t next = INT64_MAX;

    if (b->in_flight < b->o.max_in_flight && b->ready.head) {
        if (ready_due(b, now_ms)) {
            return 0;
        }
        next = b->ready.head->enq_ms + b->o.flush_ms;
    }
    if (b->delayed.n > 0 && b->delayed.a[0]->not_before_ms < next) {
        next = b->delayed.a[0]->not_before_ms;
    }
    if (next == INT64_MAX) {
        return -1;
    }
    return next <= now_ms ? 0 : next - now_ms;
}

int d2o_bulk_drain(struct d2o_bulk *b, int64_t timeout_ms)
{
    int64_t deadline = d2o_mono_ms() + timeout_ms;

    if (!b->http) {
        return -EINVAL;
    }
    while (d2o_bulk_pending(b) > 0) {
        int64_t now = d2o_mono_ms(), wait;

        if (now >= deadline) {
            return -ETIMEDOUT;
        }
        b->flush_all = true;
        d2o_bulk_tick(b, b->o.now_ms());
        wait = d2o_bulk_next_ms(b, b->o.now_ms());
        if (wait < 0 || wait > 100) {
            wait = 100;
        }
        if (d2o_http_run(b->http, NULL, 0, (int)wait) < 0) {
            return -EIO;
        }
    }
    b->flush_all = false;
    return 0;
}

void d2o_bulk_reload(struct d2o_bulk *b, const struct d2o_config *c)
{
    struct d2o_bulk_opts o = {0};

    if (!b) {
        return;
    }
    d2o_bulk_opts_from_config(&o, c);
    b->o.flush_ms = o.flush_ms >= 0 ? o.flush_ms : 1000;
    b->o.retry_base_ms = o.retry_base_ms > 0 ? o.retry_base_ms : 100;
    b->o.retry_cap_ms = o.retry_cap_ms > 0 ? o.retry_cap_ms : 30000;
    b->o.max_attempts = o.max_attempts ? o.max_attempts : 10;
}
