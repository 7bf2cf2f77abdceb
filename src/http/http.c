/*
 * HTTP client: one curl multi handle per process, a pool of reusable easy handles, optional
 * SigV4 signing right before each transfer starts.
 *
 * The async multi is driven through libcurl's socket interface: libcurl tells which sockets it
 * waits on (socket_cb, kept in an epoll set) and when it wants to be called for its timeouts
 * (timer_cb), and d2o_http_run() hands it only the sockets that are ready. A loop turn therefore
 * costs what its active connections cost, not one visit (and one poll) per transfer in flight:
 * a worker on 200 shards has up to 200 GetRecords calls waiting at once.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/http.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"
#include "d2o_config.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_RESPONSE_BYTES (64 * 1024 * 1024)
/* No limit per host: every caller bounds its own requests in flight (one GetRecords per shard,
 * bulk_concurrency bulk requests), and a transfer that libcurl queues for a connection is
 * planned again (URL, proxy environment, connection cache) every time a connection frees. */
#define DEFAULT_MAX_HOST_CONNECTIONS 0
#define DEFAULT_POOL_SIZE 8
#define MAX_SIGN_HEADERS 32
#define MAX_EXTRA_FDS 15
#define EPOLL_BATCH 64

struct xfer {
    struct d2o_http *h;
    CURL *easy;
    CURLM *multi; /* the multi it was added to, NULL if never added */
    struct curl_slist *hdrs;
    d2o_http_done_fn cb;
    void *arg;
    int64_t max_bytes;
    bool too_large;
    bool done;
    uint64_t visits;           /* how often libcurl drove the transfer (its progress callback) */
    const struct iovec *parts; /* a body in pieces (borrowed), read by read_parts_cb */
    size_t n_parts;
    size_t part;     /* the piece read next */
    size_t part_off; /* bytes of it already read */
    struct d2o_http_response resp;
    struct xfer *prev, *next;
};

struct d2o_http {
    CURLM *multi;
    CURLM *sync_multi;
    CURL **pool;
    size_t n_pool;
    size_t pool_cap;
    struct d2o_http_opts opts;
    char *ca_file;
    struct xfer *active;  /* in the async multi */
    struct xfer *pending; /* failed before starting; delivered by the next d2o_http_run() */
    size_t n_in_flight;
    bool cancelled;   /* d2o_http_cancel_all: no request starts any more */
    int epfd;         /* the sockets libcurl waits on (socket_cb), and wakefd */
    int wakefd;       /* eventfd: d2o_http_wakeup() */
    int64_t timer_at; /* when libcurl wants its timeouts run (monotonic ms), -1: never */
};

static uint64_t next_id = 1;

int d2o_http_global_init(void)
{
    static bool done;

    if (done) {
        return 0;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return -EIO;
    }
    done = true;
    return 0;
}

static void opts_defaults(struct d2o_http_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES;
    o->max_host_connections = DEFAULT_MAX_HOST_CONNECTIONS;
    o->pool_size = DEFAULT_POOL_SIZE;
}

void d2o_http_opts_from_config(struct d2o_http_opts *o, const struct d2o_config *c)
{
    opts_defaults(o);
    if (!c) {
        return;
    }
    if (c->http_connect_timeout_ms > 0) {
        o->connect_timeout_ms = c->http_connect_timeout_ms;
    }
    if (c->http_timeout_ms > 0) {
        o->timeout_ms = c->http_timeout_ms;
    }
    if (c->http_max_response_bytes > 0) {
        o->max_response_bytes = c->http_max_response_bytes;
    }
    if (c->tls_ca_file && c->tls_ca_file[0]) {
        o->ca_file = c->tls_ca_file;
    }
    o->tls_insecure = !c->tls_verify;
}

/* libcurl waits on socket s for what (CURL_POLL_*): kept in the epoll set. A socket is marked
 * as watched with curl_multi_assign, so the first call adds it and the others modify it. An
 * epoll failure fails the multi (libcurl then reports CURLM_ABORTED_BY_CALLBACK). */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct d2o_http *h = userp;
    struct epoll_event ev;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (socketp) {
            epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    ev.data.fd = s;
    if (socketp) {
        return epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev) == 0 ? 0 : -1;
    }
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev) < 0 &&
        (errno != EEXIST || epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev) < 0)) {
        return -1;
    }
    curl_multi_assign(h->multi, s, h);
    return 0;
}

/* libcurl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT) in timeout_ms (-1: not at all). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct d2o_http *h = userp;

    (void)multi;
    h->timer_at = timeout_ms < 0 ? -1 : d2o_mono_ms() + timeout_ms;
    return 0;
}

struct d2o_http *d2o_http_new(const struct d2o_http_opts *opts, char *errstr, size_t errstr_size)
{
    struct epoll_event ev;
    char ebuf[128];
    struct d2o_http *h = NULL;
    struct d2o_http *ret = NULL;
    struct d2o_http_opts o;

    opts_defaults(&o);
    if (opts) {
        if (opts->connect_timeout_ms > 0) {
            o.connect_timeout_ms = opts->connect_timeout_ms;
        }
        if (opts->timeout_ms > 0) {
            o.timeout_ms = opts->timeout_ms;
        }
        if (opts->max_response_bytes > 0) {
            o.max_response_bytes = opts->max_response_bytes;
        }
        if (opts->max_host_connections > 0) {
            o.max_host_connections = opts->max_host_connections;
        }
        if (opts->pool_size > 0) {
            o.pool_size = opts->pool_size;
        }
        o.ca_file = opts->ca_file;
        o.tls_insecure = opts->tls_insecure;
    }
    if (d2o_http_global_init() < 0) {
        snprintf(errstr, errstr_size, "curl_global_init failed");
        goto out;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    h->opts = o;
    h->epfd = -1;
    h->wakefd = -1;
    h->timer_at = -1;
    if (o.ca_file) {
        h->ca_file = strdup(o.ca_file);
        if (!h->ca_file) {
            snprintf(errstr, errstr_size, "out of memory");
            goto out;
        }
    }
    h->opts.ca_file = h->ca_file;
    h->pool_cap = o.pool_size;
    h->pool = calloc(h->pool_cap, sizeof(*h->pool));
    h->multi = curl_multi_init();
    h->sync_multi = curl_multi_init();
    if (!h->pool || !h->multi || !h->sync_multi) {
        snprintf(errstr, errstr_size, "out of memory creating curl handles");
        goto out;
    }
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    h->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = h->wakefd;
    if (h->epfd < 0 || h->wakefd < 0 || epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->wakefd, &ev) < 0) {
        snprintf(errstr, errstr_size, "cannot create the HTTP event set: %s",
                 d2o_strerror(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    if (o.max_host_connections > 0) {
        curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_connections);
        curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, o.max_host_connections * 4);
        curl_multi_setopt(h->sync_multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_connections);
    }
    ret = h;
    h = NULL;
out:
    d2o_http_free(h);
    return ret;
}

static void response_clear(struct d2o_http_response *r)
{
    d2o_buf_free(&r->body);
    memset(r, 0, sizeof(*r));
}

void d2o_http_response_free(struct d2o_http_response *resp)
{
    if (resp) {
        response_clear(resp);
    }
}

static void pool_put(struct d2o_http *h, CURL *easy)
{
    if (!easy) {
        return;
    }
    /* the error buffer and private pointer belong to the finished transfer */
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    if (h->n_pool < h->pool_cap) {
        h->pool[h->n_pool++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

static CURL *pool_get(struct d2o_http *h)
{
    CURL *e;

    if (h->n_pool > 0) {
        e = h->pool[--h->n_pool];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

/* Unlinks x from the multi and the lists, returns the easy handle to the pool, frees x. */
static void xfer_free(struct xfer *x)
{
    if (!x) {
        return;
    }
    if (x->easy) {
        if (x->multi) {
            curl_multi_remove_handle(x->multi, x->easy);
        }
        pool_put(x->h, x->easy);
    }
    curl_slist_free_all(x->hdrs);
    response_clear(&x->resp);
    free(x);
}

static void list_unlink(struct xfer **head, struct xfer *x)
{
    if (x->prev) {
        x->prev->next = x->next;
    } else if (*head == x) {
        *head = x->next;
    }
    if (x->next) {
        x->next->prev = x->prev;
    }
    x->prev = x->next = NULL;
}

static void list_push(struct xfer **head, struct xfer *x)
{
    x->prev = NULL;
    x->next = *head;
    if (*head) {
        (*head)->prev = x;
    }
    *head = x;
}

void d2o_http_cancel_all(struct d2o_http *h)
{
    if (!h) {
        return;
    }
    h->cancelled = true;
    while (h->active || h->pending) {
        struct xfer **list = h->active ? &h->active : &h->pending;
        struct xfer *x = *list;

        list_unlink(list, x);
        h->n_in_flight--;
        x->resp.err = -ECANCELED;
        x->resp.visits = x->visits;
        snprintf(x->resp.errstr, sizeof(x->resp.errstr), "cancelled: the process is stopping");
        x->cb(&x->resp, x->arg);
        xfer_free(x);
    }
}

void d2o_http_free(struct d2o_http *h)
{
    size_t i;
    struct xfer *x;

    if (!h) {
        return;
    }
    while (h->active) {
        x = h->active;
        list_unlink(&h->active, x);
        xfer_free(x);
    }
    while (h->pending) {
        x = h->pending;
        list_unlink(&h->pending, x);
        xfer_free(x);
    }
    for (i = 0; i < h->n_pool; i++) {
        curl_easy_cleanup(h->pool[i]);
    }
    free(h->pool);
    if (h->multi) {
        curl_multi_cleanup(h->multi);
    }
    if (h->sync_multi) {
        curl_multi_cleanup(h->sync_multi);
    }
    /* after the multi's cleanup, which tells socket_cb to forget its sockets */
    if (h->epfd >= 0) {
        close(h->epfd);
    }
    if (h->wakefd >= 0) {
        close(h->wakefd);
    }
    free(h->ca_file);
    free(h);
}

static int xferinfo_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = userdata;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    x->visits++;
    return 0;
}

/*
 * Makes room for n more body bytes. The buffer never holds more than the body can reach: the
 * first piece allocates the announced Content-Length exactly, and growth by doubling stops at
 * the response cap. So a capped answer's buffer is at most its cap (plus the NUL), not twice
 * the body, which is what the memory budget reserves per GetRecords call in flight.
 */
static int body_room(struct xfer *x, size_t n)
{
    struct d2o_buf *b = &x->resp.body;
    size_t need = b->len + n + 1, cap = b->cap ? b->cap * 2 : 256;
    size_t limit = (size_t)x->max_bytes + 1;
    curl_off_t cl = -1;

    if (need <= b->cap) {
        return 0;
    }
    if (!b->cap &&
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl > 0 &&
        (size_t)cl + 1 >= need && (size_t)cl < limit) {
        cap = (size_t)cl + 1;
    }
    while (cap < need) {
        cap *= 2;
    }
    if (cap > limit) {
        cap = need > limit ? need : limit;
    }
    return d2o_buf_set_cap(b, cap);
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nmemb;

    if ((int64_t)(x->resp.body.len + n) > x->max_bytes) {
        x->too_large = true;
        return 0; /* aborts the transfer */
    }
    if (body_room(x, n) < 0 || d2o_buf_append(&x->resp.body, ptr, n) < 0) {
        return 0;
    }
    return n;
}

/* Copies the value of "Name: value\r\n" into dst when the name matches (case-insensitive). */
static void grab_header(const char *line, size_t len, const char *name, char *dst, size_t dst_size)
{
    size_t nl = strlen(name);
    size_t vlen;
    const char *v;

    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0) {
        return;
    }
    v = line + nl + 1;
    vlen = len - nl - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) {
        vlen--;
    }
    if (vlen >= dst_size) {
        vlen = dst_size - 1;
    }
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nitems;
    struct d2o_http_response *r = &x->resp;

    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (after an interim 1xx): forget the previous headers */
        r->content_type[0] = '\0';
        r->amzn_error_type[0] = '\0';
        r->amzn_request_id[0] = '\0';
        r->retry_after[0] = '\0';
        r->date[0] = '\0';
        return n;
    }
    grab_header(buf, n, "content-type", r->content_type, sizeof(r->content_type));
    grab_header(buf, n, "x-amzn-errortype", r->amzn_error_type, sizeof(r->amzn_error_type));
    grab_header(buf, n, "x-amzn-requestid", r->amzn_request_id, sizeof(r->amzn_request_id));
    grab_header(buf, n, "retry-after", r->retry_after, sizeof(r->retry_after));
    grab_header(buf, n, "date", r->date, sizeof(r->date));
    return n;
}

static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);

    if (!n) {
        return -ENOMEM;
    }
    *list = n;
    return 0;
}

/* libcurl reads a body in pieces: as much as fits, piece after piece. */
static size_t read_parts_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct xfer *x = userdata;
    size_t room = size * nitems, n = 0;

    while (n < room && x->part < x->n_parts) {
        const struct iovec *p = &x->parts[x->part];
        size_t take = p->iov_len - x->part_off;

        if (take > room - n) {
            take = room - n;
        }
        memcpy(buf + n, (const char *)p->iov_base + x->part_off, take);
        n += take;
        x->part_off += take;
        if (x->part_off == p->iov_len) {
            x->part++;
            x->part_off = 0;
        }
    }
    return n;
}

/* libcurl sends the body again (a reused connection the server had closed): back to offset. */
static int seek_parts_cb(void *userdata, curl_off_t offset, int origin)
{
    struct xfer *x = userdata;
    size_t i;

    if (origin != SEEK_SET || offset < 0) {
        return CURL_SEEKFUNC_CANTSEEK;
    }
    for (i = 0; i < x->n_parts && (size_t)offset >= x->parts[i].iov_len; i++) {
        offset -= (curl_off_t)x->parts[i].iov_len;
    }
    if (i == x->n_parts && offset > 0) {
        return CURL_SEEKFUNC_FAIL;
    }
    x->part = i;
    x->part_off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Builds the header list, signing when asked. On -EINVAL, x->resp.errstr says why. */
static int build_headers(struct xfer *x, const struct d2o_http_request *req)
{
    struct d2o_buf line = D2O_BUF_INIT;
    struct d2o_sigv4_header sh[MAX_SIGN_HEADERS];
    struct d2o_sigv4_request sreq;
    struct d2o_sigv4_out sout;
    bool has_type = false;
    size_t i;
    int r;

    memset(&sout, 0, sizeof(sout));
    r = add_header(&x->hdrs, "Expect:");
    if (r < 0) {
        goto out;
    }
    for (i = 0; i < req->n_headers; i++) {
        if (req->headers[i].name && strcasecmp(req->headers[i].name, "Content-Type") == 0) {
            has_type = true;
        }
    }
    if (!has_type) {
        /* no application/x-www-form-urlencoded from libcurl on bodies we did not type */
        r = add_header(&x->hdrs, "Content-Type:");
        if (r < 0) {
            goto out;
        }
    }
    for (i = 0; i < req->n_headers; i++) {
        if (!req->headers[i].name || !req->headers[i].value) {
            snprintf(x->resp.errstr, sizeof(x->resp.errstr), "header %zu has no name or value", i);
            r = -EINVAL;
            goto out;
        }
        d2o_buf_reset(&line);
        r = d2o_buf_printf(&line, "%s: %s", req->headers[i].name, req->headers[i].value);
        if (r < 0) {
            goto out;
        }
        r = add_header(&x->hdrs, line.data);
        if (r < 0) {
            goto out;
        }
    }
    if (req->signer && req->creds) {
        if (req->n_headers > MAX_SIGN_HEADERS) {
            snprintf(x->resp.errstr, sizeof(x->resp.errstr), "too many headers to sign (%zu > %d)",
                     req->n_headers, MAX_SIGN_HEADERS);
            r = -EINVAL;
            goto out;
        }
        for (i = 0; i < req->n_headers; i++) {
            sh[i].name = req->headers[i].name;
            sh[i].value = req->headers[i].value;
        }
        memset(&sreq, 0, sizeof(sreq));
        sreq.method = req->method;
        sreq.url = req->url;
        sreq.headers = sh;
        sreq.n_headers = req->n_headers;
        sreq.body = req->body;
        sreq.body_len = req->body_len;
        sreq.body_parts = req->body_parts;
        sreq.n_body_parts = req->n_body_parts;
        r = d2o_sigv4_sign(req->signer, req->creds, &sreq, time(NULL), req->sigv4_flags, &sout,
                           x->resp.errstr, sizeof(x->resp.errstr));
        if (r < 0) {
            goto out;
        }
        for (i = 0; i < sout.n_lines; i++) {
            r = add_header(&x->hdrs, sout.lines[i]);
            if (r < 0) {
                goto out;
            }
        }
    }
    r = 0;
out:
    d2o_sigv4_out_free(&sout);
    d2o_buf_free(&line);
    return r;
}

static int setup_easy(struct xfer *x, const struct d2o_http_request *req)
{
    const struct d2o_http_opts *o = &x->h->opts;
    CURL *e = x->easy;
    int64_t timeout = req->timeout_ms > 0 ? req->timeout_ms : o->timeout_ms;
    CURLcode cc = CURLE_OK;

    cc |= curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    cc |= curl_easy_setopt(e, CURLOPT_URL, req->url);
    cc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    cc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "ddb2os/" D2O_VERSION);
    cc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    cc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    cc |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_bytes);
    cc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    cc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    cc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    cc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    cc |= curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    cc |= curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    cc |= curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    cc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->resp.errstr);
    cc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    cc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    cc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    cc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (o->ca_file) {
        cc |= curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
    }
    if (o->tls_insecure) {
        cc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        cc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (strcmp(req->method, "GET") == 0 && req->body_len == 0) {
        cc |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        cc |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "POST") == 0 || req->body_len > 0) {
        /* the body is borrowed, not copied (CURLOPT_POSTFIELDS, or read piece by piece) */
        cc |= curl_easy_setopt(e, CURLOPT_POST, 1L);
        cc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        if (req->n_body_parts > 0) {
            x->parts = req->body_parts;
            x->n_parts = req->n_body_parts;
            cc |= curl_easy_setopt(e, CURLOPT_READFUNCTION, read_parts_cb);
            cc |= curl_easy_setopt(e, CURLOPT_READDATA, x);
            cc |= curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_parts_cb);
            cc |= curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
        } else {
            cc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : (const void *)"");
        }
        if (strcmp(req->method, "POST") != 0) {
            cc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        }
    } else {
        cc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method); /* DELETE, ... */
    }
    if (cc != CURLE_OK) {
        snprintf(x->resp.errstr, sizeof(x->resp.errstr), "curl_easy_setopt failed");
        return -EINVAL;
    }
    return 0;
}

/* Creates x; a signing/setup error leaves x->resp.err set (x is still returned). */
static int xfer_new(struct d2o_http *h, const struct d2o_http_request *req, d2o_http_done_fn cb,
                    void *arg, struct xfer **out)
{
    struct xfer *x;
    int r;

    if (!req || !req->method || !req->url || !req->method[0] || !req->url[0] ||
        (req->body_len > 0 && !req->body && req->n_body_parts == 0) ||
        (req->n_body_parts > 0 && (req->body || !req->body_parts))) {
        return -EINVAL;
    }
    if (req->n_body_parts > 0 &&
        d2o_iov_total(req->body_parts, req->n_body_parts) != req->body_len) {
        return -EINVAL;
    }
    x = calloc(1, sizeof(*x));
    if (!x) {
        return -ENOMEM;
    }
    x->h = h;
    x->cb = cb;
    x->arg = arg;
    x->resp.id = next_id++;
    x->max_bytes =
        req->max_response_bytes > 0 ? req->max_response_bytes : h->opts.max_response_bytes;
    x->easy = pool_get(h);
    if (!x->easy) {
        free(x);
        return -ENOMEM;
    }
    r = build_headers(x, req);
    if (r == 0) {
        r = setup_easy(x, req);
    }
    if (r == -ENOMEM) {
        xfer_free(x);
        return -ENOMEM;
    }
    x->resp.err = r;
    *out = x;
    return 0;
}

int d2o_http_start(struct d2o_http *h, const struct d2o_http_request *req, d2o_http_done_fn cb,
                   void *arg, uint64_t *id_out)
{
    struct xfer *x = NULL;
    int r;

    if (!h || !cb) {
        r = -EINVAL;
        goto out;
    }
    if (h->cancelled) {
        r = -ECANCELED;
        goto out;
    }
    r = xfer_new(h, req, cb, arg, &x);
    if (r < 0) {
        goto out;
    }
    if (x->resp.err == 0) {
        if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK) {
            xfer_free(x);
            r = -ENOMEM;
            goto out;
        }
        x->multi = h->multi;
        list_push(&h->active, x);
    } else {
        list_push(&h->pending, x);
    }
    h->n_in_flight++;
    if (id_out) {
        *id_out = x->resp.id;
    }
    r = 0;
out:
    return r;
}

static void fill_result(struct xfer *x, CURLcode cc)
{
    curl_off_t t = 0;
    long status = 0, port = 0;

    if (x->too_large) {
        cc = CURLE_FILESIZE_EXCEEDED;
        snprintf(x->resp.errstr, sizeof(x->resp.errstr), "response larger than the %lld-byte limit",
                 (long long)x->max_bytes);
    }
    x->resp.curl_code = cc;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &t);
    curl_easy_getinfo(x->easy, CURLINFO_LOCAL_PORT, &port);
    x->resp.status = status;
    x->resp.total_us = (int64_t)t;
    x->resp.local_port = port;
    x->resp.visits = x->visits;
    if (cc != CURLE_OK && !x->resp.errstr[0]) {
        snprintf(x->resp.errstr, sizeof(x->resp.errstr), "%s", curl_easy_strerror(cc));
    }
    x->done = true;
}

/* Reads finished transfers of multi; async ones are delivered, sync ones only marked done. */
static int collect(struct d2o_http *h, CURLM *multi)
{
    CURLMsg *msg;
    int left = 0, n = 0;
    struct xfer *x;

    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (!x) {
            continue;
        }
        fill_result(x, msg->data.result);
        if (multi == h->multi) {
            list_unlink(&h->active, x);
            h->n_in_flight--;
            curl_multi_remove_handle(multi, x->easy);
            x->multi = NULL;
            pool_put(h, x->easy);
            x->easy = NULL;
            x->cb(&x->resp, x->arg);
            xfer_free(x);
            n++;
        }
    }
    return n;
}

static int deliver_pending(struct d2o_http *h)
{
    struct xfer *x;
    int n = 0;

    while (h->pending) {
        x = h->pending;
        list_unlink(&h->pending, x);
        h->n_in_flight--;
        pool_put(h, x->easy);
        x->easy = NULL;
        x->cb(&x->resp, x->arg);
        xfer_free(x);
        n++;
    }
    return n;
}

static short to_poll(short curl_events)
{
    return (short)(((curl_events & CURL_WAIT_POLLIN) ? POLLIN : 0) |
                   ((curl_events & CURL_WAIT_POLLPRI) ? POLLPRI : 0) |
                   ((curl_events & CURL_WAIT_POLLOUT) ? POLLOUT : 0));
}

static short from_poll(short revents)
{
    return (short)(((revents & (POLLIN | POLLHUP | POLLERR)) ? CURL_WAIT_POLLIN : 0) |
                   ((revents & POLLPRI) ? CURL_WAIT_POLLPRI : 0) |
                   ((revents & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
}

static int multi_err(CURLMcode mc)
{
    return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

/* Hands libcurl the sockets epoll found ready; each drives only the transfers on it. */
static int act_on_ready(struct d2o_http *h)
{
    struct epoll_event evs[EPOLL_BATCH];
    int n, i, running = 0;
    CURLMcode mc;

    n = epoll_wait(h->epfd, evs, EPOLL_BATCH, 0);
    if (n < 0) {
        return errno == EINTR ? 0 : -errno;
    }
    for (i = 0; i < n; i++) {
        int fd = evs[i].data.fd, mask = 0;

        if (fd == h->wakefd) {
            uint64_t v;

            if (read(h->wakefd, &v, sizeof(v)) < 0) {
                /* EAGAIN: already read */
            }
            continue;
        }
        mask |= (evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0;
        mask |= (evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0;
        mask |= (evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0;
        mc = curl_multi_socket_action(h->multi, fd, mask, &running);
        if (mc != CURLM_OK) {
            return multi_err(mc);
        }
    }
    return 0;
}

int d2o_http_run(struct d2o_http *h, struct curl_waitfd *extra_fds, unsigned n_extra,
                 int timeout_ms)
{
    struct pollfd pfd[1 + MAX_EXTRA_FDS];
    int n = 0, running = 0, r;
    unsigned i;
    CURLMcode mc;

    if (!h || (n_extra > 0 && !extra_fds) || n_extra > MAX_EXTRA_FDS) {
        return -EINVAL;
    }
    if (h->pending || timeout_ms < 0) {
        timeout_ms = 0;
    }
    if (h->timer_at >= 0) {
        int64_t t = h->timer_at - d2o_mono_ms();

        timeout_ms = t <= 0 ? 0 : t < timeout_ms ? (int)t : timeout_ms;
    }
    pfd[0].fd = h->epfd;
    pfd[0].events = POLLIN;
    pfd[0].revents = 0;
    for (i = 0; i < n_extra; i++) {
        pfd[1 + i].fd = extra_fds[i].fd;
        pfd[1 + i].events = to_poll(extra_fds[i].events);
        pfd[1 + i].revents = 0;
    }
    r = poll(pfd, 1 + n_extra, timeout_ms);
    if (r < 0 && errno != EINTR) {
        return -errno;
    }
    for (i = 0; i < n_extra; i++) {
        extra_fds[i].revents = r > 0 ? from_poll(pfd[1 + i].revents) : 0;
    }
    if (r > 0 && pfd[0].revents) {
        r = act_on_ready(h);
        if (r < 0) {
            return r;
        }
    }
    if (h->timer_at >= 0 && d2o_mono_ms() >= h->timer_at) {
        long next = -1;

        mc = curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (mc != CURLM_OK) {
            return multi_err(mc);
        }
        /* Asked again rather than left to timer_cb: libcurl calls it only when its earliest
         * expiry changes, and a timer run a fraction of a millisecond early (this clock counts
         * whole milliseconds) leaves that expiry where it was. */
        mc = curl_multi_timeout(h->multi, &next);
        if (mc != CURLM_OK) {
            return multi_err(mc);
        }
        h->timer_at = next < 0 ? -1 : d2o_mono_ms() + next;
    }
    n += collect(h, h->multi);
    n += deliver_pending(h);
    return n;
}

void d2o_http_wakeup(struct d2o_http *h)
{
    uint64_t one = 1;

    if (h && write(h->wakefd, &one, sizeof(one)) < 0) {
        /* EAGAIN: a wakeup is already waiting */
    }
}

size_t d2o_http_in_flight(const struct d2o_http *h)
{
    return h ? h->n_in_flight : 0;
}

int d2o_http_request_sync(struct d2o_http *h, const struct d2o_http_request *req,
                          struct d2o_http_response *resp)
{
    struct xfer *x = NULL;
    int running = 0;
    int r;
    CURLMcode mc;

    if (!h || !resp) {
        r = -EINVAL;
        goto out;
    }
    memset(resp, 0, sizeof(*resp));
    r = xfer_new(h, req, NULL, NULL, &x);
    if (r < 0) {
        resp->err = r;
        snprintf(resp->errstr, sizeof(resp->errstr), "%s",
                 r == -EINVAL ? "invalid request (method, url or body missing)" : "out of memory");
        goto out;
    }
    if (x->resp.err == 0) {
        if (curl_multi_add_handle(h->sync_multi, x->easy) != CURLM_OK) {
            r = -ENOMEM;
            resp->err = r;
            snprintf(resp->errstr, sizeof(resp->errstr), "curl_multi_add_handle failed");
            goto out;
        }
        x->multi = h->sync_multi;
        while (!x->done) {
            mc = curl_multi_perform(h->sync_multi, &running);
            if (mc == CURLM_OK) {
                collect(h, h->sync_multi);
            }
            if (mc == CURLM_OK && !x->done) {
                mc = curl_multi_poll(h->sync_multi, NULL, 0, 1000, NULL);
            }
            if (mc != CURLM_OK) {
                r = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
                resp->err = r;
                snprintf(resp->errstr, sizeof(resp->errstr), "curl multi: %s",
                         curl_multi_strerror(mc));
                goto out;
            }
        }
    }
    /* move the response out; the buffer now belongs to the caller */
    *resp = x->resp;
    memset(&x->resp, 0, sizeof(x->resp));
    r = resp->err;
out:
    xfer_free(x);
    return r;
}
