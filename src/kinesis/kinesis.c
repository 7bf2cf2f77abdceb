/*
 * Kinesis Data Streams API client: JSON 1.1 requests over d2o_http, SigV4 service "kinesis".
 * Responses go through the pure parsers in kinesis_parse.c; failures through the one classifier.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/kinesis.h"
#include "d2o/rand.h"
#include "d2o/sigv4.h"
#include "d2o/wait.h"

#define DEFAULT_RETRIES 5
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
#define MAX_LIST_PAGES 10000

struct d2o_kinesis {
    struct d2o_http *http;
    const struct d2o_kinesis_dialect *d;
    struct d2o_sigv4_signer *signer;
    const struct d2o_aws_creds *creds;
    char *endpoint;
    char *label; /* stream named in messages of iterator-only calls */
    unsigned max_retries;
    const volatile sig_atomic_t *stop;
};

enum acall_kind {
    KIND_RECORDS,
    KIND_ITERATOR,
    KIND_SHARDS,
};

struct acall {
    struct d2o_kinesis *k;
    enum acall_kind kind;
    const char *op;
    char *stream;
    struct d2o_buf body;
    struct d2o_http_header hdrs[2];
    char target[64];
    union {
        d2o_kinesis_records_fn records;
        d2o_kinesis_iterator_fn iterator;
        d2o_kinesis_shards_fn shards;
    } cb;
    void *arg;
    size_t max_bytes; /* answer cap; 0 = the HTTP default */
};

struct d2o_kinesis *d2o_kinesis_new_endpoint(struct d2o_http *http, const char *region,
                                             const char *endpoint,
                                             const struct d2o_aws_creds *creds, char *errstr,
                                             size_t errstr_size)
{
    return d2o_kinesis_new_dialect(http, region, endpoint, &d2o_kinesis_dialect_kinesis, NULL,
                                   creds, errstr, errstr_size);
}

struct d2o_kinesis *d2o_kinesis_new_dialect(struct d2o_http *http, const char *region,
                                            const char *endpoint,
                                            const struct d2o_kinesis_dialect *dialect,
                                            const char *label, const struct d2o_aws_creds *creds,
                                            char *errstr, size_t errstr_size)
{
    struct d2o_kinesis *k = NULL, *ret = NULL;
    struct d2o_buf url = D2O_BUF_INIT;

    if (!http || !region || !region[0]) {
        snprintf(errstr, errstr_size, "kinesis client: %s is required",
                 !http ? "an HTTP client" : "aws_region");
        goto out;
    }
    if (endpoint && endpoint[0] && strncmp(endpoint, "http://", 7) != 0 &&
        strncmp(endpoint, "https://", 8) != 0) {
        snprintf(errstr, errstr_size, "kinesis_endpoint '%s' must start with http:// or https://",
                 endpoint);
        goto out;
    }
    k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    k->http = http;
    k->d = dialect;
    k->creds = creds;
    if (label && label[0] && !(k->label = strdup(label))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    k->max_retries = DEFAULT_RETRIES;
    if (endpoint && endpoint[0]) {
        if (d2o_buf_puts(&url, endpoint) < 0) {
            snprintf(errstr, errstr_size, "out of memory");
            goto out;
        }
        while (url.len > 0 && url.data[url.len - 1] == '/') {
            d2o_buf_truncate(&url, url.len - 1);
        }
    } else if (d2o_buf_printf(&url, "https://%s.%s.amazonaws.com", dialect->host_prefix, region) <
               0) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    if (d2o_buf_putc(&url, '/') < 0) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    k->endpoint = d2o_buf_steal(&url);
    k->signer = d2o_sigv4_signer_new(region, dialect->service);
    if (!k->signer) {
        snprintf(errstr, errstr_size, "kinesis client: cannot create the SigV4 signer");
        goto out;
    }
    ret = k;
    k = NULL;
out:
    d2o_buf_free(&url);
    d2o_kinesis_free(k);
    return ret;
}

struct d2o_kinesis *d2o_kinesis_new(struct d2o_http *http, const struct d2o_config *c,
                                    const struct d2o_aws_creds *creds, char *errstr,
                                    size_t errstr_size)
{
    struct d2o_kinesis *k;

    if (!c) {
        snprintf(errstr, errstr_size, "kinesis client: no configuration");
        return NULL;
    }
    k = d2o_kinesis_new_dialect(http, c->aws_region, c->kinesis_endpoint,
                                &d2o_kinesis_dialect_kinesis, c->stream_name, creds, errstr,
                                errstr_size);
    return k;
}

void d2o_kinesis_free(struct d2o_kinesis *k)
{
    if (!k) {
        return;
    }
    d2o_sigv4_signer_free(k->signer);
    free(k->endpoint);
    free(k->label);
    free(k);
}

void d2o_kinesis_set_creds(struct d2o_kinesis *k, const struct d2o_aws_creds *creds)
{
    k->creds = creds;
}

const struct d2o_kinesis_dialect *d2o_kinesis_get_dialect(const struct d2o_kinesis *k)
{
    return k->d;
}

const char *d2o_kinesis_endpoint(const struct d2o_kinesis *k)
{
    return k->endpoint;
}

void d2o_kinesis_set_retry(struct d2o_kinesis *k, unsigned max_retries,
                           const volatile sig_atomic_t *stop)
{
    k->max_retries = max_retries;
    k->stop = stop;
}

/* ---- request bodies ---- */

static int put_key_str(struct d2o_buf *b, bool *first, const char *key, const char *val)
{
    int r;

    r = d2o_buf_puts(b, *first ? "\"" : ",\"");
    *first = false;
    if (r == 0) {
        r = d2o_buf_puts(b, key);
    }
    if (r == 0) {
        r = d2o_buf_puts(b, "\":");
    }
    if (r == 0) {
        r = d2o_buf_json_str(b, val, strlen(val));
    }
    return r;
}

static int put_key_raw(struct d2o_buf *b, bool *first, const char *key, const char *raw)
{
    int r = d2o_buf_printf(b, "%s\"%s\":%s", *first ? "" : ",", key, raw);

    *first = false;
    return r;
}

static int put_stream(struct d2o_buf *b, bool *first, const char *stream)
{
    return put_key_str(b, first, strncmp(stream, "arn:", 4) == 0 ? "StreamARN" : "StreamName",
                       stream);
}

static void fmt_epoch_s(int64_t ms, char *out, size_t size)
{
    snprintf(out, size, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
}

const char *d2o_kinesis_iter_type_name(enum d2o_kinesis_iter_type t)
{
    switch (t) {
    case D2O_ITER_TRIM_HORIZON:
        return "TRIM_HORIZON";
    case D2O_ITER_LATEST:
        return "LATEST";
    case D2O_ITER_AT_SEQUENCE_NUMBER:
        return "AT_SEQUENCE_NUMBER";
    case D2O_ITER_AFTER_SEQUENCE_NUMBER:
        return "AFTER_SEQUENCE_NUMBER";
    case D2O_ITER_AT_TIMESTAMP:
        return "AT_TIMESTAMP";
    }
    return NULL;
}

static const char *filter_name(enum d2o_kinesis_shard_filter f)
{
    switch (f) {
    case D2O_SHARD_FILTER_NONE:
        return NULL;
    case D2O_SHARD_FILTER_AFTER_SHARD_ID:
        return "AFTER_SHARD_ID";
    case D2O_SHARD_FILTER_AT_TRIM_HORIZON:
        return "AT_TRIM_HORIZON";
    case D2O_SHARD_FILTER_FROM_TRIM_HORIZON:
        return "FROM_TRIM_HORIZON";
    case D2O_SHARD_FILTER_AT_LATEST:
        return "AT_LATEST";
    case D2O_SHARD_FILTER_AT_TIMESTAMP:
        return "AT_TIMESTAMP";
    case D2O_SHARD_FILTER_FROM_TIMESTAMP:
        return "FROM_TIMESTAMP";
    }
    return NULL;
}

static int body_get_records(struct d2o_buf *b, const char *iterator, int limit)
{
    bool first = true;
    char num[32];
    int r;

    if (!iterator || !iterator[0] || limit < 0 || limit > 10000) {
        return -EINVAL;
    }
    r = d2o_buf_putc(b, '{');
    if (r == 0) {
        r = put_key_str(b, &first, "ShardIterator", iterator);
    }
    if (r == 0 && limit > 0) {
        snprintf(num, sizeof(num), "%d", limit);
        r = put_key_raw(b, &first, "Limit", num);
    }
    if (r == 0) {
        r = d2o_buf_putc(b, '}');
    }
    return r;
}

static int body_iterator(struct d2o_buf *b, const char *stream, const char *shard_id,
                         const struct d2o_kinesis_iter_spec *spec)
{
    const char *type = spec ? d2o_kinesis_iter_type_name(spec->type) : NULL;
    bool first = true;
    char num[48];
    int r;

    if (!stream || !stream[0] || !shard_id || !shard_id[0] || !type) {
        return -EINVAL;
    }
    if ((spec->type == D2O_ITER_AT_SEQUENCE_NUMBER ||
         spec->type == D2O_ITER_AFTER_SEQUENCE_NUMBER) &&
        !d2o_kinesis_seq_valid(spec->sequence_number)) {
        return -EINVAL;
    }
    r = d2o_buf_putc(b, '{');
    if (r == 0) {
        r = put_stream(b, &first, stream);
    }
    if (r == 0) {
        r = put_key_str(b, &first, "ShardId", shard_id);
    }
    if (r == 0) {
        r = put_key_str(b, &first, "ShardIteratorType", type);
    }
    if (r == 0 && (spec->type == D2O_ITER_AT_SEQUENCE_NUMBER ||
                   spec->type == D2O_ITER_AFTER_SEQUENCE_NUMBER)) {
        r = put_key_str(b, &first, "StartingSequenceNumber", spec->sequence_number);
    }
    if (r == 0 && spec->type == D2O_ITER_AT_TIMESTAMP) {
        fmt_epoch_s(spec->timestamp_ms, num, sizeof(num));
        r = put_key_raw(b, &first, "Timestamp", num);
    }
    if (r == 0) {
        r = d2o_buf_putc(b, '}');
    }
    return r;
}

static int body_list_shards(struct d2o_buf *b, const struct d2o_kinesis_list_req *q)
{
    const char *fname = filter_name(q->filter);
    bool first = true;
    char num[48];
    int r;

    if (!q->next_token && (!q->stream || !q->stream[0])) {
        return -EINVAL;
    }
    if (q->max_results < 0 || q->max_results > 10000) {
        return -EINVAL;
    }
    r = d2o_buf_putc(b, '{');
    if (r == 0 && q->next_token) {
        /* with NextToken the API refuses StreamName and the filters */
        r = put_key_str(b, &first, "NextToken", q->next_token);
    } else if (r == 0) {
        r = put_stream(b, &first, q->stream);
        if (r == 0 && q->exclusive_start_shard_id) {
            r = put_key_str(b, &first, "ExclusiveStartShardId", q->exclusive_start_shard_id);
        }
        if (r == 0 && fname) {
            r = d2o_buf_puts(b, ",\"ShardFilter\":{\"Type\":");
            if (r == 0) {
                r = d2o_buf_json_str(b, fname, strlen(fname));
            }
            if (r == 0 && q->filter == D2O_SHARD_FILTER_AFTER_SHARD_ID) {
                r = q->filter_shard_id ? d2o_buf_puts(b, ",\"ShardId\":") : -EINVAL;
                if (r == 0) {
                    r = d2o_buf_json_str(b, q->filter_shard_id, strlen(q->filter_shard_id));
                }
            }
            if (r == 0 && (q->filter == D2O_SHARD_FILTER_AT_TIMESTAMP ||
                           q->filter == D2O_SHARD_FILTER_FROM_TIMESTAMP)) {
                fmt_epoch_s(q->filter_timestamp_ms, num, sizeof(num));
                r = d2o_buf_printf(b, ",\"Timestamp\":%s", num);
            }
            if (r == 0) {
                r = d2o_buf_putc(b, '}');
            }
        }
    }
    if (r == 0 && q->max_results > 0) {
        snprintf(num, sizeof(num), "%d", q->max_results);
        r = put_key_raw(b, &first, "MaxResults", num);
    }
    if (r == 0) {
        r = d2o_buf_putc(b, '}');
    }
    return r;
}

static int body_stream_only(struct d2o_buf *b, const char *stream)
{
    bool first = true;
    int r;

    if (!stream || !stream[0]) {
        return -EINVAL;
    }
    r = d2o_buf_putc(b, '{');
    if (r == 0) {
        r = put_stream(b, &first, stream);
    }
    if (r == 0) {
        r = d2o_buf_putc(b, '}');
    }
    return r;
}

static int parse_records_kinesis(const char *body, size_t len, const char *label,
                                 struct d2o_kinesis_records *out, struct d2o_kinesis_err *err)
{
    (void)label;
    return d2o_kinesis_parse_get_records(body, len, out, err);
}

const struct d2o_kinesis_dialect d2o_kinesis_dialect_kinesis = {
    .target_prefix = "Kinesis_20131202.",
    .content_type = "application/x-amz-json-1.1",
    .service = "kinesis",
    .host_prefix = "kinesis",
    .list_op = "ListShards",
    .body_get_records = body_get_records,
    .body_iterator = body_iterator,
    .body_list = body_list_shards,
    .parse_records = parse_records_kinesis,
    .parse_list = d2o_kinesis_parse_list_shards,
};

/* ---- outcome of one HTTP exchange ---- */

static const char *name_or(const char *stream, const struct d2o_kinesis *k)
{
    if (stream && stream[0]) {
        return stream;
    }
    return k->label ? k->label : "";
}

/* Puts "<op> on stream '<name>': " in front of msg (cutting its end if needed). */
static void prefix_message(char *msg, size_t size, const char *op, const char *sname)
{
    char pre[192];
    size_t n, len;
    int w;

    w = snprintf(pre, sizeof(pre), "%s on stream '%s': ", op, sname);
    if (w < 0) {
        return;
    }
    n = (size_t)w < sizeof(pre) ? (size_t)w : sizeof(pre) - 1;
    if (n + 1 >= size) {
        return;
    }
    len = strlen(msg);
    if (n + len + 1 > size) {
        len = size - n - 1;
    }
    memmove(msg + n, msg, len);
    memcpy(msg, pre, n);
    msg[n + len] = '\0';
}

/* Turns a finished HTTP exchange into 0 (2xx) or D2O_KINESIS_E_FAILED with err filled. */
static int outcome(const struct d2o_kinesis *k, const char *op, const char *stream,
                   const struct d2o_http_response *resp, struct d2o_kinesis_err *err)
{
    const char *reason = NULL;
    const char *sname = name_or(stream, k);

    memset(err, 0, sizeof(*err));
    if (resp->err < 0) {
        err->action = D2O_ACT_FATAL;
        snprintf(err->code, sizeof(err->code), "RequestNotSent");
        snprintf(err->message, sizeof(err->message), "%s on stream '%s': request not sent: %s", op,
                 sname, resp->errstr[0] ? resp->errstr : "local error");
        return resp->err == -ENOMEM || resp->err == -ECANCELED ? resp->err : D2O_KINESIS_E_FAILED;
    }
    if (resp->curl_code != CURLE_OK) {
        err->curl_code = resp->curl_code;
        err->action = d2o_classify(resp->curl_code, 0, NULL, &reason);
        snprintf(err->message, sizeof(err->message), "%s on stream '%s' at %s: %s (%s)", op, sname,
                 k->endpoint, resp->errstr, reason);
        return D2O_KINESIS_E_FAILED;
    }
    if (resp->status >= 200 && resp->status <= 299) {
        return 0;
    }
    d2o_kinesis_parse_error(resp->status, resp->amzn_error_type, resp->body.data, resp->body.len,
                            err);
    prefix_message(err->message, sizeof(err->message), op, sname);
    return D2O_KINESIS_E_FAILED;
}

static void prefix_parse_error(const char *op, const char *stream, const struct d2o_kinesis *k,
                               struct d2o_kinesis_err *err)
{
    prefix_message(err->message, sizeof(err->message), op, name_or(stream, k));
}

static void fill_request(struct d2o_kinesis *k, struct d2o_http_request *req,
                         struct d2o_http_header *hdrs, char *target, size_t target_size,
                         const char *op, const struct d2o_buf *body)
{
    snprintf(target, target_size, "%s%s", k->d->target_prefix, op);
    hdrs[0].name = "Content-Type";
    hdrs[0].value = k->d->content_type;
    hdrs[1].name = "X-Amz-Target";
    hdrs[1].value = target;
    memset(req, 0, sizeof(*req));
    req->method = "POST";
    req->url = k->endpoint;
    req->headers = hdrs;
    req->n_headers = 2;
    req->body = body->data;
    req->body_len = body->len;
    req->signer = k->signer;
    req->creds = k->creds;
}

/*
 * One sync call with retries on RETRY/THROTTLE. On 0, resp holds the 2xx response (caller frees).
 */
static int call_sync(struct d2o_kinesis *k, const char *op, const char *stream,
                     const struct d2o_buf *body, struct d2o_http_response *resp,
                     struct d2o_kinesis_err *err)
{
    struct d2o_http_request req;
    struct d2o_http_header hdrs[2];
    char target[64];
    unsigned attempt;
    int r = -EINVAL;

    for (attempt = 0;; attempt++) {
        fill_request(k, &req, hdrs, target, sizeof(target), op, body);
        d2o_http_response_free(resp);
        r = d2o_http_request_sync(k->http, &req, resp);
        if (r == -ENOMEM) {
            goto out;
        }
        r = outcome(k, op, stream, resp, err);
        if (r <= 0) {
            goto out;
        }
        if ((err->action != D2O_ACT_RETRY && err->action != D2O_ACT_THROTTLE) ||
            attempt >= k->max_retries) {
            goto out;
        }
        if (d2o_wait_ms(d2o_backoff_ms(BACKOFF_BASE_MS, BACKOFF_CAP_MS, attempt), k->stop) == 1) {
            goto out;
        }
    }
out:
    if (r != 0) {
        d2o_http_response_free(resp);
    }
    return r;
}

int d2o_kinesis_call(struct d2o_kinesis *k, const char *op, const char *stream,
                     const struct d2o_buf *body, struct d2o_http_response *resp,
                     struct d2o_kinesis_err *err)
{
    return call_sync(k, op, stream, body, resp, err);
}

/* ---- async ---- */

static void acall_free(struct acall *c)
{
    if (!c) {
        return;
    }
    d2o_buf_free(&c->body);
    free(c->stream);
    free(c);
}

static void acall_done(struct d2o_http_response *resp, void *arg)
{
    struct acall *c = arg;
    struct d2o_kinesis_err err;
    struct d2o_kinesis_records recs;
    struct d2o_kinesis_shards shards;
    char *iter = NULL;
    int r;

    memset(&err, 0, sizeof(err));
    memset(&recs, 0, sizeof(recs));
    memset(&shards, 0, sizeof(shards));
    r = outcome(c->k, c->op, c->stream, resp, &err);
    if (r == 0) {
        switch (c->kind) {
        case KIND_RECORDS:
            r = c->k->d->parse_records(resp->body.data, resp->body.len, c->k->label, &recs, &err);
            break;
        case KIND_ITERATOR:
            r = d2o_kinesis_parse_shard_iterator(resp->body.data, resp->body.len, &iter, &err);
            break;
        case KIND_SHARDS:
            r = c->k->d->parse_list(resp->body.data, resp->body.len, &shards, &err);
            break;
        }
        if (r == D2O_KINESIS_E_FAILED) {
            prefix_parse_error(c->op, c->stream, c->k, &err);
        }
    }
    switch (c->kind) {
    case KIND_RECORDS:
        c->cb.records(r, &recs, &err, c->arg);
        break;
    case KIND_ITERATOR:
        c->cb.iterator(r, iter, &err, c->arg);
        break;
    case KIND_SHARDS:
        c->cb.shards(r, &shards, &err, c->arg);
        break;
    }
    acall_free(c);
}

static int acall_start(struct d2o_kinesis *k, struct acall *c)
{
    struct d2o_http_request req;

    fill_request(k, &req, c->hdrs, c->target, sizeof(c->target), c->op, &c->body);
    req.max_response_bytes = (int64_t)c->max_bytes;
    return d2o_http_start(k->http, &req, acall_done, c, NULL);
}

static struct acall *acall_new(struct d2o_kinesis *k, enum acall_kind kind, const char *op,
                               const char *stream, void *arg)
{
    struct acall *c = calloc(1, sizeof(*c));

    if (!c) {
        return NULL;
    }
    c->k = k;
    c->kind = kind;
    c->op = op;
    c->arg = arg;
    if (stream) {
        c->stream = strdup(stream);
        if (!c->stream) {
            free(c);
            return NULL;
        }
    }
    return c;
}

int d2o_kinesis_get_records_async(struct d2o_kinesis *k, const char *iterator, int limit,
                                  d2o_kinesis_records_fn cb, void *arg)
{
    return d2o_kinesis_get_records_capped_async(k, iterator, limit, 0, cb, arg);
}

int d2o_kinesis_get_records_capped_async(struct d2o_kinesis *k, const char *iterator, int limit,
                                         size_t max_bytes, d2o_kinesis_records_fn cb, void *arg)
{
    struct acall *c = NULL;
    int r;

    if (!k || !cb) {
        r = -EINVAL;
        goto out;
    }
    c = acall_new(k, KIND_RECORDS, "GetRecords", NULL, arg);
    if (!c) {
        r = -ENOMEM;
        goto out;
    }
    c->cb.records = cb;
    c->max_bytes = max_bytes;
    r = k->d->body_get_records(&c->body, iterator, limit);
    if (r == 0) {
        r = acall_start(k, c);
    }
    if (r == 0) {
        c = NULL;
    }
out:
    acall_free(c);
    return r;
}

int d2o_kinesis_get_shard_iterator_async(struct d2o_kinesis *k, const char *stream,
                                         const char *shard_id,
                                         const struct d2o_kinesis_iter_spec *spec,
                                         d2o_kinesis_iterator_fn cb, void *arg)
{
    struct acall *c = NULL;
    int r;

    if (!k || !cb) {
        r = -EINVAL;
        goto out;
    }
    c = acall_new(k, KIND_ITERATOR, "GetShardIterator", stream, arg);
    if (!c) {
        r = -ENOMEM;
        goto out;
    }
    c->cb.iterator = cb;
    r = k->d->body_iterator(&c->body, stream, shard_id, spec);
    if (r == 0) {
        r = acall_start(k, c);
    }
    if (r == 0) {
        c = NULL;
    }
out:
    acall_free(c);
    return r;
}

int d2o_kinesis_list_shards_async(struct d2o_kinesis *k, const struct d2o_kinesis_list_req *req,
                                  d2o_kinesis_shards_fn cb, void *arg)
{
    struct acall *c = NULL;
    int r;

    if (!k || !cb || !req) {
        r = -EINVAL;
        goto out;
    }
    c = acall_new(k, KIND_SHARDS, k->d->list_op, req->stream, arg);
    if (!c) {
        r = -ENOMEM;
        goto out;
    }
    c->cb.shards = cb;
    r = k->d->body_list(&c->body, req);
    if (r == 0) {
        r = acall_start(k, c);
    }
    if (r == 0) {
        c = NULL;
    }
out:
    acall_free(c);
    return r;
}

/* ---- sync ---- */

int d2o_kinesis_get_records(struct d2o_kinesis *k, const char *iterator, int limit,
                            struct d2o_kinesis_records *out, struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    int r;

    memset(&resp, 0, sizeof(resp));
    memset(out, 0, sizeof(*out));
    out->millis_behind_latest = -1;
    r = k->d->body_get_records(&body, iterator, limit);
    if (r == 0) {
        r = call_sync(k, "GetRecords", NULL, &body, &resp, err);
    }
    if (r == 0) {
        r = k->d->parse_records(resp.body.data, resp.body.len, k->label, out, err);
        if (r == D2O_KINESIS_E_FAILED) {
            prefix_parse_error("GetRecords", NULL, k, err);
        }
    }
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_get_shard_iterator(struct d2o_kinesis *k, const char *stream, const char *shard_id,
                                   const struct d2o_kinesis_iter_spec *spec, char **iterator,
                                   struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    int r;

    memset(&resp, 0, sizeof(resp));
    *iterator = NULL;
    r = k->d->body_iterator(&body, stream, shard_id, spec);
    if (r == 0) {
        r = call_sync(k, "GetShardIterator", stream, &body, &resp, err);
    }
    if (r == 0) {
        r = d2o_kinesis_parse_shard_iterator(resp.body.data, resp.body.len, iterator, err);
        if (r == D2O_KINESIS_E_FAILED) {
            prefix_parse_error("GetShardIterator", stream, k, err);
        }
    }
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_list_shards(struct d2o_kinesis *k, const struct d2o_kinesis_list_req *req,
                            struct d2o_kinesis_shards *out, struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    int r;

    memset(&resp, 0, sizeof(resp));
    memset(out, 0, sizeof(*out));
    r = k->d->body_list(&body, req);
    if (r == 0) {
        r = call_sync(k, k->d->list_op, req->stream, &body, &resp, err);
    }
    if (r == 0) {
        r = k->d->parse_list(resp.body.data, resp.body.len, out, err);
        if (r == D2O_KINESIS_E_FAILED) {
            prefix_parse_error(k->d->list_op, req->stream, k, err);
        }
    }
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    return r;
}

/* Moves page's shards to the end of all's (page keeps its next_token). */
static int append_page(struct d2o_kinesis_shards *all, struct d2o_kinesis_shards *page)
{
    struct d2o_kinesis_shard *grown;

    if (page->n_shards == 0) {
        return 0;
    }
    grown = realloc(all->shards, (all->n_shards + page->n_shards) * sizeof(*grown));
    if (!grown) {
        return -ENOMEM;
    }
    all->shards = grown;
    memcpy(all->shards + all->n_shards, page->shards, page->n_shards * sizeof(*grown));
    all->n_shards += page->n_shards;
    free(page->shards);
    page->shards = NULL;
    page->n_shards = 0;
    return 0;
}

static void list_req_fill(struct d2o_kinesis_list_req *req, const char *stream, const char *token,
                          enum d2o_kinesis_shard_filter filter, int page_size)
{
    memset(req, 0, sizeof(*req));
    req->stream = stream;
    req->next_token = token;
    req->max_results = page_size;
    req->filter = filter;
}

int d2o_kinesis_list_all_shards(struct d2o_kinesis *k, const char *stream,
                                enum d2o_kinesis_shard_filter filter, int page_size,
                                struct d2o_kinesis_shards *out, struct d2o_kinesis_err *err)
{
    struct d2o_kinesis_shards all, page;
    struct d2o_kinesis_list_req req;
    char *token = NULL;
    unsigned pages;
    int r = 0;

    memset(&all, 0, sizeof(all));
    memset(out, 0, sizeof(*out));
    for (pages = 0; pages < MAX_LIST_PAGES; pages++) {
        list_req_fill(&req, stream, token, filter, page_size);
        r = d2o_kinesis_list_shards(k, &req, &page, err);
        if (r != 0) {
            goto out;
        }
        r = append_page(&all, &page);
        if (r != 0) {
            d2o_kinesis_shards_free(&page);
            goto out;
        }
        free(token);
        token = page.next_token;
        page.next_token = NULL;
        d2o_kinesis_shards_free(&page);
        if (!token) {
            break;
        }
    }
    *out = all;
    memset(&all, 0, sizeof(all));
out:
    free(token);
    d2o_kinesis_shards_free(&all);
    return r;
}

/* A listing of every page on the multi handle: one page call after the other. */
struct alist {
    struct d2o_kinesis *k;
    char *stream;
    enum d2o_kinesis_shard_filter filter;
    int page_size;
    unsigned pages;
    struct d2o_kinesis_shards all;
    d2o_kinesis_shards_fn cb;
    void *arg;
};

static void alist_free(struct alist *l)
{
    if (!l) {
        return;
    }
    d2o_kinesis_shards_free(&l->all);
    free(l->stream);
    free(l);
}

static void alist_page(int rc, struct d2o_kinesis_shards *page, const struct d2o_kinesis_err *err,
                       void *arg);

static int alist_next(struct alist *l, const char *token)
{
    struct d2o_kinesis_list_req req;

    list_req_fill(&req, l->stream, token, l->filter, l->page_size);
    return d2o_kinesis_list_shards_async(l->k, &req, alist_page, l);
}

static void alist_page(int rc, struct d2o_kinesis_shards *page, const struct d2o_kinesis_err *err,
                       void *arg)
{
    struct alist *l = arg;
    struct d2o_kinesis_shards out;

    if (rc == 0) {
        rc = append_page(&l->all, page);
    }
    if (rc == 0 && page->next_token && ++l->pages < MAX_LIST_PAGES) {
        rc = alist_next(l, page->next_token);
        if (rc == 0) {
            d2o_kinesis_shards_free(page);
            return;
        }
    }
    d2o_kinesis_shards_free(page);
    memset(&out, 0, sizeof(out));
    if (rc == 0) {
        out = l->all;
        memset(&l->all, 0, sizeof(l->all));
    }
    l->cb(rc, &out, err, l->arg);
    alist_free(l);
}

int d2o_kinesis_list_all_shards_async(struct d2o_kinesis *k, const char *stream,
                                      enum d2o_kinesis_shard_filter filter, int page_size,
                                      d2o_kinesis_shards_fn cb, void *arg)
{
    struct alist *l = NULL;
    int r;

    if (!k || !stream || !cb) {
        return -EINVAL;
    }
    l = calloc(1, sizeof(*l));
    if (!l || !(l->stream = strdup(stream))) {
        alist_free(l);
        return -ENOMEM;
    }
    l->k = k;
    l->filter = filter;
    l->page_size = page_size;
    l->cb = cb;
    l->arg = arg;
    r = alist_next(l, NULL);
    if (r != 0) {
        alist_free(l);
    }
    return r;
}

int d2o_kinesis_describe_stream_summary(struct d2o_kinesis *k, const char *stream,
                                        struct d2o_kinesis_summary *out,
                                        struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    int r;

    memset(&resp, 0, sizeof(resp));
    memset(out, 0, sizeof(*out));
    r = body_stream_only(&body, stream);
    if (r == 0) {
        r = call_sync(k, "DescribeStreamSummary", stream, &body, &resp, err);
    }
    if (r == 0) {
        r = d2o_kinesis_parse_summary(resp.body.data, resp.body.len, out, err);
        if (r == D2O_KINESIS_E_FAILED) {
            prefix_parse_error("DescribeStreamSummary", stream, k, err);
        }
    }
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_describe_stream(struct d2o_kinesis *k, const char *stream,
                                struct d2o_kinesis_shards *out, struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    int r;

    memset(&resp, 0, sizeof(resp));
    memset(out, 0, sizeof(*out));
    r = body_stream_only(&body, stream);
    if (r == 0) {
        r = call_sync(k, "DescribeStream", stream, &body, &resp, err);
    }
    if (r == 0) {
        r = d2o_kinesis_parse_describe_stream(resp.body.data, resp.body.len, out, err);
        if (r == D2O_KINESIS_E_FAILED) {
            prefix_parse_error("DescribeStream", stream, k, err);
        }
    }
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_put_records(struct d2o_kinesis *k, const char *stream,
                            const struct d2o_kinesis_put_entry *entries, size_t n,
                            struct d2o_kinesis_put_result *out, struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    unsigned char *b64 = NULL;
    size_t b64_cap = 0, i, need;
    bool first = true;
    int r;

    memset(&resp, 0, sizeof(resp));
    memset(out, 0, sizeof(*out));
    if (!stream || !stream[0] || n == 0 || n > D2O_KINESIS_PUT_MAX || !entries) {
        r = -EINVAL;
        goto out;
    }
    r = d2o_buf_putc(&body, '{');
    if (r == 0) {
        r = put_stream(&body, &first, stream);
    }
    if (r == 0) {
        r = d2o_buf_puts(&body, ",\"Records\":[");
    }
    for (i = 0; r == 0 && i < n; i++) {
        if (!entries[i].partition_key || (entries[i].data_len > 0 && !entries[i].data) ||
            entries[i].data_len > INT32_MAX / 2) {
            r = -EINVAL;
            goto out;
        }
        need = (entries[i].data_len + 2) / 3 * 4 + 1;
        if (need > b64_cap) {
            free(b64);
            b64 = malloc(need);
            if (!b64) {
                r = -ENOMEM;
                goto out;
            }
            b64_cap = need;
        }
        b64[0] = '\0';
        if (entries[i].data_len > 0) {
            EVP_EncodeBlock(b64, entries[i].data, (int)entries[i].data_len);
        }
        first = true;
        r = d2o_buf_puts(&body, i ? ",{" : "{");
        if (r == 0) {
            r = put_key_str(&body, &first, "PartitionKey", entries[i].partition_key);
        }
        if (r == 0) {
            /* the base64 alphabet needs no JSON escaping */
            r = d2o_buf_printf(&body, ",\"Data\":\"%s\"", (const char *)b64);
        }
        if (r == 0 && entries[i].explicit_hash_key) {
            r = put_key_str(&body, &first, "ExplicitHashKey", entries[i].explicit_hash_key);
        }
        if (r == 0) {
            r = d2o_buf_putc(&body, '}');
        }
    }
    if (r == 0) {
        r = d2o_buf_puts(&body, "]}");
    }
    if (r == 0) {
        r = call_sync(k, "PutRecords", stream, &body, &resp, err);
    }
    if (r == 0) {
        r = d2o_kinesis_parse_put_records(resp.body.data, resp.body.len, out, err);
        if (r == D2O_KINESIS_E_FAILED) {
            prefix_parse_error("PutRecords", stream, k, err);
        }
    }
    if (r == 0 && out->n_items != n) {
        d2o_kinesis_put_result_free(out);
        memset(err, 0, sizeof(*err));
        err->action = D2O_ACT_RETRY;
        snprintf(err->code, sizeof(err->code), "MalformedResponse");
        snprintf(err->message, sizeof(err->message),
                 "PutRecords on stream '%s': %zu results for %zu records", stream, out->n_items, n);
        r = D2O_KINESIS_E_FAILED;
    }
out:
    free(b64);
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    return r;
}

/* Calls that return nothing but success or an error. */
static int call_simple(struct d2o_kinesis *k, const char *op, const char *stream,
                       const struct d2o_buf *body, struct d2o_kinesis_err *err)
{
    struct d2o_http_response resp;
    int r;

    memset(&resp, 0, sizeof(resp));
    r = call_sync(k, op, stream, body, &resp, err);
    d2o_http_response_free(&resp);
    return r;
}

int d2o_kinesis_create_stream(struct d2o_kinesis *k, const char *stream, int shard_count,
                              struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    int r;

    if (!stream || !stream[0] || shard_count < 1) {
        return -EINVAL;
    }
    r = d2o_buf_puts(&body, "{\"StreamName\":");
    if (r == 0) {
        r = d2o_buf_json_str(&body, stream, strlen(stream));
    }
    if (r == 0) {
        r = d2o_buf_printf(&body, ",\"ShardCount\":%d}", shard_count);
    }
    if (r == 0) {
        r = call_simple(k, "CreateStream", stream, &body, err);
    }
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_delete_stream(struct d2o_kinesis *k, const char *stream,
                              struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    int r;

    r = body_stream_only(&body, stream);
    if (r == 0) {
        d2o_buf_truncate(&body, body.len - 1);
        r = d2o_buf_puts(&body, ",\"EnforceConsumerDeletion\":true}");
    }
    if (r == 0) {
        r = call_simple(k, "DeleteStream", stream, &body, err);
    }
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_split_shard(struct d2o_kinesis *k, const char *stream, const char *shard_id,
                            const char *new_starting_hash_key, struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    bool first = false;
    int r;

    if (!shard_id || !new_starting_hash_key) {
        return -EINVAL;
    }
    r = body_stream_only(&body, stream);
    if (r == 0) {
        d2o_buf_truncate(&body, body.len - 1);
        r = put_key_str(&body, &first, "ShardToSplit", shard_id);
    }
    if (r == 0) {
        r = put_key_str(&body, &first, "NewStartingHashKey", new_starting_hash_key);
    }
    if (r == 0) {
        r = d2o_buf_putc(&body, '}');
    }
    if (r == 0) {
        r = call_simple(k, "SplitShard", stream, &body, err);
    }
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_merge_shards(struct d2o_kinesis *k, const char *stream, const char *shard_id,
                             const char *adjacent_shard_id, struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    bool first = false;
    int r;

    if (!shard_id || !adjacent_shard_id) {
        return -EINVAL;
    }
    r = body_stream_only(&body, stream);
    if (r == 0) {
        d2o_buf_truncate(&body, body.len - 1);
        r = put_key_str(&body, &first, "ShardToMerge", shard_id);
    }
    if (r == 0) {
        r = put_key_str(&body, &first, "AdjacentShardToMerge", adjacent_shard_id);
    }
    if (r == 0) {
        r = d2o_buf_putc(&body, '}');
    }
    if (r == 0) {
        r = call_simple(k, "MergeShards", stream, &body, err);
    }
    d2o_buf_free(&body);
    return r;
}

int d2o_kinesis_wait_active(struct d2o_kinesis *k, const char *stream, int64_t timeout_ms,
                            struct d2o_kinesis_err *err)
{
    struct d2o_kinesis_summary sum;
    int64_t deadline = d2o_mono_ms() + timeout_ms;
    bool active;
    int r;

    for (;;) {
        r = d2o_kinesis_describe_stream_summary(k, stream, &sum, err);
        if (r != 0) {
            return r;
        }
        active = strcmp(sum.stream_status, "ACTIVE") == 0;
        d2o_kinesis_summary_free(&sum);
        if (active) {
            return 0;
        }
        if (d2o_mono_ms() >= deadline || d2o_wait_ms(100, k->stop) == 1) {
            memset(err, 0, sizeof(*err));
            err->action = D2O_ACT_RETRY;
            snprintf(err->message, sizeof(err->message),
                     "stream '%s' did not become ACTIVE within %lld ms", stream,
                     (long long)timeout_ms);
            return D2O_KINESIS_E_FAILED;
        }
    }
}
