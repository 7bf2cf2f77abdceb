/*
 * DynamoDB Streams client: the request bodies of the dialect, and the calls only this API has
 * (ListStreams, DescribeStream's stream fields). Exchanges, retries and the classifier are the
 * Kinesis client's (src/kinesis).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o/ddbstreams.h"

#define MAX_LIST_PAGES 10000

/* Appends ,"key":"val" (no comma for the first member). */
static int put_str(struct d2o_buf *b, const char *key, const char *val)
{
    int r = d2o_buf_printf(b, "%s\"%s\":", b->len > 1 ? "," : "", key);

    return r == 0 ? d2o_buf_json_str(b, val, strlen(val)) : r;
}

static int close_obj(struct d2o_buf *b, int r)
{
    return r == 0 ? d2o_buf_putc(b, '}') : r;
}

static int body_get_records(struct d2o_buf *b, const char *iterator, int limit)
{
    int r;

    if (!iterator || !iterator[0] || limit < 0) {
        return -EINVAL;
    }
    if (limit > D2O_DDBSTREAMS_GET_RECORDS_MAX) {
        limit = D2O_DDBSTREAMS_GET_RECORDS_MAX;
    }
    r = d2o_buf_putc(b, '{');
    if (r == 0) {
        r = put_str(b, "ShardIterator", iterator);
    }
    if (r == 0 && limit > 0) {
        r = d2o_buf_printf(b, ",\"Limit\":%d", limit);
    }
    return close_obj(b, r);
}

static int body_iterator(struct d2o_buf *b, const char *stream, const char *shard_id,
                         const struct d2o_kinesis_iter_spec *spec)
{
    /* DynamoDB Streams has no AT_TIMESTAMP */
    const char *type =
        spec && spec->type != D2O_ITER_AT_TIMESTAMP ? d2o_kinesis_iter_type_name(spec->type) : NULL;
    bool at_seq = type && (spec->type == D2O_ITER_AT_SEQUENCE_NUMBER ||
                           spec->type == D2O_ITER_AFTER_SEQUENCE_NUMBER);
    int r;

    if (!stream || !stream[0] || !shard_id || !shard_id[0] || !type ||
        (at_seq && !d2o_ddbstreams_seq_valid(spec->sequence_number))) {
        return -EINVAL;
    }
    r = d2o_buf_putc(b, '{');
    if (r == 0) {
        r = put_str(b, "StreamArn", stream);
    }
    if (r == 0) {
        r = put_str(b, "ShardId", shard_id);
    }
    if (r == 0) {
        r = put_str(b, "ShardIteratorType", type);
    }
    if (r == 0 && at_seq) {
        r = put_str(b, "SequenceNumber", spec->sequence_number);
    }
    return close_obj(b, r);
}

/* DescribeStream, one page: the stream is always named; the page token is the last shard id. */
static int body_describe(struct d2o_buf *b, const struct d2o_kinesis_list_req *q)
{
    const char *after = q->next_token ? q->next_token : q->exclusive_start_shard_id;
    int r;

    if (!q->stream || !q->stream[0] || q->max_results < 0 || q->max_results > 100 ||
        q->filter != D2O_SHARD_FILTER_NONE) {
        return -EINVAL;
    }
    r = d2o_buf_putc(b, '{');
    if (r == 0) {
        r = put_str(b, "StreamArn", q->stream);
    }
    if (r == 0 && after) {
        r = put_str(b, "ExclusiveStartShardId", after);
    }
    if (r == 0 && q->max_results > 0) {
        r = d2o_buf_printf(b, ",\"Limit\":%d", q->max_results);
    }
    return close_obj(b, r);
}

static int parse_describe(const char *body, size_t len, struct d2o_kinesis_shards *out,
                          struct d2o_kinesis_err *err)
{
    return d2o_ddbstreams_parse_describe_stream(body, len, out, NULL, err);
}

const struct d2o_kinesis_dialect d2o_ddbstreams_dialect = {
    .target_prefix = "DynamoDBStreams_20120810.",
    .content_type = "application/x-amz-json-1.0",
    .service = "dynamodb",
    .host_prefix = "streams.dynamodb",
    .list_op = "DescribeStream",
    .body_get_records = body_get_records,
    .body_iterator = body_iterator,
    .body_list = body_describe,
    .parse_records = d2o_ddbstreams_parse_get_records,
    .parse_list = parse_describe,
};

struct d2o_kinesis *d2o_ddbstreams_new(struct d2o_http *http, const char *region,
                                       const char *endpoint, const char *stream_arn,
                                       const struct d2o_aws_creds *creds, char *errstr,
                                       size_t errstr_size)
{
    return d2o_kinesis_new_dialect(http, region, endpoint, &d2o_ddbstreams_dialect, stream_arn,
                                   creds, errstr, errstr_size);
}

static void not_found(struct d2o_kinesis_err *err, const char *table)
{
    memset(err, 0, sizeof(*err));
    err->action = D2O_ACT_PERMANENT;
    snprintf(err->code, sizeof(err->code), "ResourceNotFoundException");
    snprintf(err->message, sizeof(err->message),
             "ListStreams for table '%.200s': the table has no stream (turn on DynamoDB Streams "
             "with StreamViewType NEW_AND_OLD_IMAGES)",
             table);
}

int d2o_ddbstreams_latest_arn(struct d2o_kinesis *k, const char *table, char **arn,
                              struct d2o_kinesis_err *err)
{
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    struct d2o_ddbstreams_list page;
    char *after = NULL, *best = NULL, *best_label = NULL;
    unsigned pages;
    size_t i;
    int r = 0;

    memset(&resp, 0, sizeof(resp));
    memset(&page, 0, sizeof(page));
    *arn = NULL;
    if (!k || !table || !table[0]) {
        return -EINVAL;
    }
    for (pages = 0; pages < MAX_LIST_PAGES; pages++) {
        d2o_buf_truncate(&body, 0);
        r = d2o_buf_putc(&body, '{');
        if (r == 0) {
            r = put_str(&body, "TableName", table);
        }
        if (r == 0 && after) {
            r = put_str(&body, "ExclusiveStartStreamArn", after);
        }
        r = close_obj(&body, r);
        if (r == 0) {
            r = d2o_kinesis_call(k, "ListStreams", table, &body, &resp, err);
        }
        if (r == 0) {
            r = d2o_ddbstreams_parse_list_streams(resp.body.data, resp.body.len, &page, err);
        }
        d2o_http_response_free(&resp);
        if (r != 0) {
            goto out;
        }
        for (i = 0; i < page.n_streams; i++) {
            const struct d2o_ddbstreams_stream *s = &page.streams[i];
            const char *label = s->stream_label ? s->stream_label : "";

            if (s->table_name && strcmp(s->table_name, table) != 0) {
                continue;
            }
            /* labels are ISO 8601 times of the stream's creation: the greatest is the newest */
            if (!best || strcmp(label, best_label) > 0) {
                free(best);
                free(best_label);
                best = strdup(s->stream_arn);
                best_label = strdup(label);
                if (!best || !best_label) {
                    r = -ENOMEM;
                    goto out;
                }
            }
        }
        free(after);
        after = page.last_evaluated_arn;
        page.last_evaluated_arn = NULL;
        d2o_ddbstreams_list_free(&page);
        if (!after) {
            break;
        }
    }
    if (!best) {
        not_found(err, table);
        r = D2O_KINESIS_E_FAILED;
        goto out;
    }
    *arn = best;
    best = NULL;
out:
    d2o_ddbstreams_list_free(&page);
    d2o_buf_free(&body);
    free(after);
    free(best);
    free(best_label);
    return r;
}

int d2o_ddbstreams_describe(struct d2o_kinesis *k, const char *stream_arn,
                            struct d2o_ddbstreams_info *out, struct d2o_kinesis_err *err)
{
    struct d2o_kinesis_list_req q;
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_http_response resp;
    struct d2o_kinesis_shards shards;
    int r;

    memset(&q, 0, sizeof(q));
    memset(&resp, 0, sizeof(resp));
    memset(out, 0, sizeof(*out));
    q.stream = stream_arn;
    q.max_results = 1;
    r = body_describe(&body, &q);
    if (r == 0) {
        r = d2o_kinesis_call(k, "DescribeStream", stream_arn, &body, &resp, err);
    }
    if (r == 0) {
        r = d2o_ddbstreams_parse_describe_stream(resp.body.data, resp.body.len, &shards, out, err);
        d2o_kinesis_shards_free(&shards);
    }
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    return r;
}
