/*
 * DynamoDB (and DynamoDB Streams) client: one generic JSON 1.0 call over d2o_http, SigV4 service
 * "dynamodb"; the typed calls are a body builder and a parser (ddb_parse.c) around it.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/conf.h"
#include "d2o/dynamodb.h"
#include "d2o/rand.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"
#include "d2o/wait.h"

#define DEFAULT_RETRIES 8
#define DEFAULT_BASE_MS 50
#define DEFAULT_CAP_MS 5000

struct api_info {
    const char *target_prefix;
    const char *host_prefix;
};

static const struct api_info apis[] = {
    [D2O_DDB_API_DYNAMODB] = {"DynamoDB_20120810.", "dynamodb"},
    [D2O_DDB_API_STREAMS] = {"DynamoDBStreams_20120810.", "streams.dynamodb"},
};

struct d2o_ddb {
    struct d2o_http *http;
    struct d2o_sigv4_signer *signer;
    const struct d2o_aws_creds *creds;
    enum d2o_ddb_api api;
    char *endpoint;
    unsigned max_retries;
    int64_t base_ms, cap_ms;
    const volatile sig_atomic_t *stop;
    uint64_t throttles;
    int64_t server_time_ms;
};

struct d2o_ddb *d2o_ddb_new(struct d2o_http *http, enum d2o_ddb_api api, const char *region,
                            const char *endpoint, const struct d2o_aws_creds *creds, char *errstr,
                            size_t errstr_size)
{
    struct d2o_ddb *d = NULL, *ret = NULL;
    struct d2o_buf url = D2O_BUF_INIT;
    int r;

    if (!http || !region || !region[0] ||
        (api != D2O_DDB_API_DYNAMODB && api != D2O_DDB_API_STREAMS)) {
        snprintf(errstr, errstr_size, "dynamodb client: %s is required",
                 !http                     ? "an HTTP client"
                 : (!region || !region[0]) ? "aws_region"
                                           : "a known API");
        goto out;
    }
    if (endpoint && endpoint[0] && strncmp(endpoint, "http://", 7) != 0 &&
        strncmp(endpoint, "https://", 8) != 0) {
        snprintf(errstr, errstr_size, "dynamodb_endpoint '%s' must start with http:// or https://",
                 endpoint);
        goto out;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        goto oom;
    }
    d->http = http;
    d->creds = creds;
    d->api = api;
    d->max_retries = DEFAULT_RETRIES;
    d->base_ms = DEFAULT_BASE_MS;
    d->cap_ms = DEFAULT_CAP_MS;
    if (endpoint && endpoint[0]) {
        r = d2o_buf_puts(&url, endpoint);
        while (r == 0 && url.len > 0 && url.data[url.len - 1] == '/') {
            d2o_buf_truncate(&url, url.len - 1);
        }
    } else {
        r = d2o_buf_printf(&url, "https://%s.%s.amazonaws.com", apis[api].host_prefix, region);
    }
    if (r < 0 || d2o_buf_putc(&url, '/') < 0) {
        goto oom;
    }
    d->endpoint = d2o_buf_steal(&url);
    d->signer = d2o_sigv4_signer_new(region, "dynamodb");
    if (!d->signer) {
        snprintf(errstr, errstr_size, "dynamodb client: cannot create the SigV4 signer");
        goto out;
    }
    ret = d;
    d = NULL;
    goto out;
oom:
    snprintf(errstr, errstr_size, "out of memory");
out:
    d2o_buf_free(&url);
    d2o_ddb_free(d);
    return ret;
}

struct d2o_ddb *d2o_ddb_new_from_config(struct d2o_http *http, const struct d2o_config *c,
                                        const struct d2o_aws_creds *creds, char *errstr,
                                        size_t errstr_size)
{
    if (!c) {
        snprintf(errstr, errstr_size, "dynamodb client: no configuration");
        return NULL;
    }
    return d2o_ddb_new(http, D2O_DDB_API_DYNAMODB, c->aws_region, c->dynamodb_endpoint, creds,
                       errstr, errstr_size);
}

void d2o_ddb_free(struct d2o_ddb *d)
{
    if (!d) {
        return;
    }
    d2o_sigv4_signer_free(d->signer);
    free(d->endpoint);
    free(d);
}

void d2o_ddb_set_creds(struct d2o_ddb *d, const struct d2o_aws_creds *creds)
{
    d->creds = creds;
}

const char *d2o_ddb_endpoint(const struct d2o_ddb *d)
{
    return d->endpoint;
}

void d2o_ddb_set_retry(struct d2o_ddb *d, unsigned max_retries, int64_t base_ms, int64_t cap_ms,
                       const volatile sig_atomic_t *stop)
{
    d->max_retries = max_retries;
    d->base_ms = base_ms > 0 ? base_ms : DEFAULT_BASE_MS;
    d->cap_ms = cap_ms > 0 ? cap_ms : DEFAULT_CAP_MS;
    d->stop = stop;
}

uint64_t d2o_ddb_throttles(const struct d2o_ddb *d)
{
    return d->throttles;
}

int64_t d2o_ddb_server_time_ms(const struct d2o_ddb *d)
{
    return d->server_time_ms;
}

/* ---- one exchange ---- */

static void note_date(struct d2o_ddb *d, const struct d2o_http_response *resp)
{
    time_t t;

    if (!resp->date[0]) {
        return;
    }
    t = curl_getdate(resp->date, NULL);
    if (t > 0) {
        d->server_time_ms = (int64_t)t * 1000;
    }
}

/* Puts "<op> on <what>: " in front of err->message (its end is cut when needed). */
static void prefix_message(struct d2o_ddb_err *err, const char *op, const char *what)
{
    char msg[sizeof(err->message) + 256];

    snprintf(msg, sizeof(msg), "%s on %s: %s", op, what, err->message);
    d2o_strlcpy(err->message, msg, sizeof(err->message));
}

/* Turns a finished exchange into 0 (2xx) or D2O_DDB_E_FAILED with err filled. */
static int outcome(struct d2o_ddb *d, const char *op, const char *what,
                   const struct d2o_http_response *resp, struct d2o_ddb_err *err)
{
    const char *reason = NULL;

    memset(err, 0, sizeof(*err));
    if (resp->err < 0) {
        err->action = D2O_ACT_FATAL;
        snprintf(err->code, sizeof(err->code), "RequestNotSent");
        snprintf(err->message, sizeof(err->message), "%s on %s: request not sent: %s", op, what,
                 resp->errstr[0] ? resp->errstr : "local error");
        return resp->err == -ENOMEM ? -ENOMEM : D2O_DDB_E_FAILED;
    }
    if (resp->curl_code != CURLE_OK) {
        err->curl_code = resp->curl_code;
        err->action = d2o_classify(resp->curl_code, 0, NULL, &reason);
        snprintf(err->message, sizeof(err->message), "%s on %s at %s: %s (%s)", op, what,
                 d->endpoint, resp->errstr, reason);
        return D2O_DDB_E_FAILED;
    }
    note_date(d, resp);
    if (resp->status >= 200 && resp->status <= 299) {
        return 0;
    }
    d2o_ddb_parse_error(resp->status, resp->amzn_error_type, resp->body.data, resp->body.len, err);
    if (err->action == D2O_ACT_THROTTLE) {
        d->throttles++;
    }
    prefix_message(err, op, what);
    return D2O_DDB_E_FAILED;
}

static void fill_request(struct d2o_ddb *d, struct d2o_http_request *req,
                         struct d2o_http_header *hdrs, char *target, size_t target_size,
                         const char *op, const char *body, size_t len)
{
    snprintf(target, target_size, "%s%s", apis[d->api].target_prefix, op);
    hdrs[0].name = "Content-Type";
    hdrs[0].value = "application/x-amz-json-1.0";
    hdrs[1].name = "X-Amz-Target";
    hdrs[1].value = target;
    memset(req, 0, sizeof(*req));
    req->method = "POST";
    req->url = d->endpoint;
    req->headers = hdrs;
    req->n_headers = 2;
    req->body = body;
    req->body_len = len;
    req->signer = d->signer;
    req->creds = d->creds;
}

typedef int (*parse_fn)(const char *body, size_t len, void *out, struct d2o_ddb_err *err);

/*
 * One sync call with retries on RETRY/THROTTLE (also for an unreadable answer): parse fills out
 * from the 2xx body.
 */
static int exchange(struct d2o_ddb *d, const char *op, const char *what, const char *body,
                    size_t len, parse_fn parse, void *out, struct d2o_ddb_err *err)
{
    struct d2o_http_response resp;
    struct d2o_http_request req;
    struct d2o_http_header hdrs[2];
    char target[96];
    unsigned attempt;
    int r = -EINVAL;

    memset(&resp, 0, sizeof(resp));
    for (attempt = 0;; attempt++) {
        fill_request(d, &req, hdrs, target, sizeof(target), op, body, len);
        d2o_http_response_free(&resp);
        r = d2o_http_request_sync(d->http, &req, &resp);
        if (r == -ENOMEM) {
            goto out;
        }
        r = outcome(d, op, what, &resp, err);
        if (r == 0) {
            r = parse(resp.body.data, resp.body.len, out, err);
            if (r == D2O_DDB_E_FAILED) {
                prefix_message(err, op, what);
            }
        }
        if (r <= 0) {
            goto out;
        }
        if ((err->action != D2O_ACT_RETRY && err->action != D2O_ACT_THROTTLE) ||
            attempt >= d->max_retries) {
            goto out;
        }
        if (d2o_wait_ms(d2o_backoff_ms(d->base_ms, d->cap_ms, attempt), d->stop) == 1) {
            goto out;
        }
    }
out:
    d2o_http_response_free(&resp);
    return r;
}

struct json_out {
    const char *op;
    json_object *root;
};

static int parse_json_cb(const char *b, size_t n, void *out, struct d2o_ddb_err *err)
{
    struct json_out *jo = out;

    return d2o_ddb_parse_json(jo->op, b, n, &jo->root, err);
}

int d2o_ddb_call(struct d2o_ddb *d, const char *op, const char *what, const char *body, size_t len,
                 struct json_object **root, struct d2o_ddb_err *err)
{
    struct json_out jo = {op, NULL};
    int r;

    *root = NULL;
    if (!d || !op || !body) {
        return -EINVAL;
    }
    r = exchange(d, op, what ? what : "DynamoDB", body, len, parse_json_cb, &jo, err);
    if (r == 0) {
        *root = jo.root;
    } else {
        json_object_put(jo.root);
    }
    return r;
}

/* ---- async ---- */

struct acall {
    struct d2o_ddb *d;
    char op[64];
    char what[128];
    char target[96];
    struct d2o_http_header hdrs[2];
    struct d2o_buf body;
    d2o_ddb_json_fn cb;
    void *arg;
};

static void acall_done(struct d2o_http_response *resp, void *arg)
{
    struct acall *c = arg;
    struct d2o_ddb_err err;
    json_object *root = NULL;
    int r;

    r = outcome(c->d, c->op, c->what, resp, &err);
    if (r == 0) {
        r = d2o_ddb_parse_json(c->op, resp->body.data, resp->body.len, &root, &err);
    }
    c->cb(r, root, &err, c->arg);
    d2o_buf_free(&c->body);
    free(c);
}

int d2o_ddb_call_async(struct d2o_ddb *d, const char *op, const char *what, const char *body,
                       size_t len, d2o_ddb_json_fn cb, void *arg)
{
    struct d2o_http_request req;
    struct acall *c;
    int r;

    if (!d || !op || !body || !cb) {
        return -EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        return -ENOMEM;
    }
    c->d = d;
    c->cb = cb;
    c->arg = arg;
    snprintf(c->op, sizeof(c->op), "%s", op);
    snprintf(c->what, sizeof(c->what), "%s", what ? what : "DynamoDB");
    r = d2o_buf_append(&c->body, body, len);
    if (r == 0) {
        fill_request(d, &req, c->hdrs, c->target, sizeof(c->target), c->op, c->body.data,
                     c->body.len);
        r = d2o_http_start(d->http, &req, acall_done, c, NULL);
    }
    if (r != 0) {
        d2o_buf_free(&c->body);
        free(c);
    }
    return r;
}

/* ---- typed calls: a body and a parser around d2o_ddb_call ---- */

/* Calls op with {"TableName": table}; parse fills out from the answer. */
static int table_call(struct d2o_ddb *d, const char *op, const char *table, parse_fn parse,
                      void *out, struct d2o_ddb_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    char what[160];
    int r;

    if (!table || !table[0]) {
        return -EINVAL;
    }
    r = d2o_buf_puts(&body, "{\"TableName\":");
    r = r ? r : d2o_buf_json_str(&body, table, strlen(table));
    r = r ? r : d2o_buf_putc(&body, '}');
    if (r == 0) {
        snprintf(what, sizeof(what), "table '%s'", table);
        r = exchange(d, op, what, body.data, body.len, parse, out, err);
    }
    d2o_buf_free(&body);
    return r;
}

static int parse_table_cb(const char *b, size_t n, void *out, struct d2o_ddb_err *err)
{
    return d2o_ddb_parse_describe_table(b, n, out, err);
}

static int parse_ttl_cb(const char *b, size_t n, void *out, struct d2o_ddb_err *err)
{
    return d2o_ddb_parse_ttl(b, n, out, err);
}

int d2o_ddb_describe_table(struct d2o_ddb *d, const char *table, struct d2o_ddb_table *out,
                           struct d2o_ddb_err *err)
{
    memset(out, 0, sizeof(*out));
    return table_call(d, "DescribeTable", table, parse_table_cb, out, err);
}

int d2o_ddb_describe_ttl(struct d2o_ddb *d, const char *table, struct d2o_ddb_ttl *out,
                         struct d2o_ddb_err *err)
{
    memset(out, 0, sizeof(*out));
    return table_call(d, "DescribeTimeToLive", table, parse_ttl_cb, out, err);
}

static int parse_scan_cb(const char *b, size_t n, void *out, struct d2o_ddb_err *err)
{
    return d2o_ddb_parse_scan(b, n, out, err);
}

int d2o_ddb_scan(struct d2o_ddb *d, const struct d2o_ddb_scan_req *q, struct d2o_ddb_scan_page *out,
                 struct d2o_ddb_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    char what[160];
    int r;

    memset(out, 0, sizeof(*out));
    r = d2o_ddb_format_scan(&body, q);
    if (r == 0) {
        snprintf(what, sizeof(what), "table '%s' segment %d/%d", q->table, q->segment,
                 q->total_segments);
        r = exchange(d, "Scan", what, body.data, body.len, parse_scan_cb, out, err);
    }
    d2o_buf_free(&body);
    return r;
}

int d2o_ddb_get_item(struct d2o_ddb *d, const char *table, const char *key, bool consistent_read,
                     struct json_object **item, struct d2o_ddb_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    json_object *root = NULL, *it = NULL;
    char what[160];
    int r;

    *item = NULL;
    if (!table || !key) {
        return -EINVAL;
    }
    r = d2o_buf_puts(&body, "{\"TableName\":");
    if (r == 0) {
        r = d2o_buf_json_str(&body, table, strlen(table));
    }
    if (r == 0) {
        r = d2o_buf_printf(&body, ",\"Key\":%s,\"ConsistentRead\":%s}", key,
                           consistent_read ? "true" : "false");
    }
    snprintf(what, sizeof(what), "table '%s'", table);
    if (r == 0) {
        r = d2o_ddb_call(d, "GetItem", what, body.data, body.len, &root, err);
    }
    if (r == 0 && json_object_object_get_ex(root, "Item", &it)) {
        if (!json_object_is_type(it, json_type_object)) {
            memset(err, 0, sizeof(*err));
            err->action = D2O_ACT_RETRY;
            snprintf(err->code, sizeof(err->code), "MalformedResponse");
            snprintf(err->message, sizeof(err->message), "GetItem on %s: Item is not an object",
                     what);
            r = D2O_DDB_E_FAILED;
        } else {
            *item = json_object_get(it);
        }
    }
    json_object_put(root);
    d2o_buf_free(&body);
    return r;
}
