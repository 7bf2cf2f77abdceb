/*
 * HTTP client: one curl multi handle per process, a pool of reusable easy handles, optional
 * SigV4 signing right before each transfer starts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "d2o/conf.h"
#include "d2o/http.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"
#include "d2o_config.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_RESPONSE_BYTES (64 * 1024 * 1024)
#define DEFAULT_MAX_HOST_CONNECTIONS 8
#define DEFAULT_POOL_SIZE 8
#define MAX_SIGN_HEADERS 32

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
    bool cancelled; /* d2o_http_cancel_all: no request starts any more */
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

struct d2o_http *d2o_http_new(const struct d2o_http_opts *opts, char *errstr, size_t errstr_size)
{
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
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, o.max_host_connections * 4);
    curl_multi_setopt(h->sync_multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_connections);
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
    free(h->ca_file);
    free(h);
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nmemb;

    if ((int64_t)(x->resp.body.len + n) > x->max_bytes) {
        x->too_large = true;
        return 0; /* aborts the transfer */
    }
    if (d2o_buf_append(&x->resp.body, ptr, n) < 0) {
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
        /* the body is borrowed, not copied (CURLOPT_POSTFIELDS) */
        cc |= curl_easy_setopt(e, CURLOPT_POST, 1L);
        cc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        cc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : (const void *)"");
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
        (req->body_len > 0 && !req->body)) {
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

int d2o_http_run(struct d2o_http *h, struct curl_waitfd *extra_fds, unsigned n_extra,
                 int timeout_ms)
{
    int running = 0, n = 0;
    CURLMcode mc;

    if (!h || (n_extra > 0 && !extra_fds)) {
        return -EINVAL;
    }
    if (h->pending) {
        timeout_ms = 0;
    }
    mc = curl_multi_poll(h->multi, extra_fds, n_extra, timeout_ms < 0 ? 0 : timeout_ms, NULL);
    if (mc != CURLM_OK) {
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
    mc = curl_multi_perform(h->multi, &running);
    if (mc != CURLM_OK) {
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
    n += collect(h, h->multi);
    n += deliver_pending(h);
    return n;
}

void d2o_http_wakeup(struct d2o_http *h)
{
    if (h) {
        curl_multi_wakeup(h->multi);
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
