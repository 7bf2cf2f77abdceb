/*
 * Pure parsers of DynamoDB Streams answers (JSON 1.0). No I/O, so the fuzz target drives them.
 * A GetRecords record becomes the change-record text src/record reads: the stream record itself
 * with "tableName" (from the stream ARN) and ApproximateCreationDateTime as whole epoch seconds
 * with precision "SECOND" (the API sends a JSON number of seconds, possibly with a fraction).
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kinesis/kinesis_json.h"
#include "d2o/ddbstreams.h"

/* 9999-12-31T23:59:59Z: any later ApproximateCreationDateTime is not a time. */
#define ACDT_MAX_S 253402300799LL

int d2o_ddbstreams_arn_table(const char *arn, char *out, size_t out_size)
{
    const char *t, *end;
    size_t n;

    if (!arn || strncmp(arn, "arn:", 4) != 0) {
        return -EINVAL;
    }
    t = strstr(arn, ":table/");
    if (!t) {
        return -EINVAL;
    }
    t += strlen(":table/");
    end = strstr(t, "/stream/");
    if (!end || end == t || !end[strlen("/stream/")]) {
        return -EINVAL;
    }
    n = (size_t)(end - t);
    if (n + 1 > out_size || memchr(t, '/', n)) {
        return -EINVAL;
    }
    memcpy(out, t, n);
    out[n] = '\0';
    return 0;
}

int64_t d2o_ddbstreams_version(int64_t prev, int64_t acdt_s)
{
    int64_t floor_us = acdt_s > 0 && acdt_s <= ACDT_MAX_S ? acdt_s * 1000000 : 0;

    return prev >= floor_us ? prev + 1 : floor_us;
}

bool d2o_ddbstreams_seq_valid(const char *s)
{
    size_t i;

    if (!s || !s[0]) {
        return false;
    }
    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= D2O_KINESIS_SEQ_MAX_DIGITS) {
            return false;
        }
    }
    return true;
}

/* A sequence number member (digits; DynamoDB Local pads them with zeros to 21). */
static int get_seq(const char *what, json_object *obj, const char *key, bool required, char **out,
                   struct d2o_kinesis_err *err)
{
    return d2o_kjson_seq_checked(what, obj, key, required, d2o_ddbstreams_seq_valid, out, err);
}

static json_object *child(json_object *o, const char *key)
{
    json_object *v = NULL;

    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* Rewrites one stream record in place as a change record and serialises it into rec. */
static int normalise_record(const char *what, json_object *o, const char *table,
                            struct d2o_kinesis_record *rec, struct d2o_kinesis_err *err)
{
    json_object *ddb = NULL, *v, *s;
    const char *text;
    size_t n;
    double secs;
    int64_t whole;
    int r;

    r = d2o_kjson_member(what, o, "dynamodb", true, json_type_object, "an object", &ddb, err);
    if (r == 0) {
        r = get_seq(what, ddb, "SequenceNumber", true, &rec->sequence_number, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, o, "eventID", false, &rec->partition_key, err);
    }
    if (r != 0) {
        return r;
    }
    /*
     * A record without a usable timestamp is one bad record, not a bad answer: it is passed on
     * as the stream sent it (arrival 0), the change-record parser refuses it with the reason,
     * and it goes to the dead-letter queue while the shard reads on. A bad SequenceNumber above
     * does fail the answer: nothing could be checkpointed past it.
     */
    v = child(ddb, "ApproximateCreationDateTime");
    secs = v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
               ? json_object_get_double(v)
               : 0;
    rec->arrival_ms = 0;
    if (isfinite(secs) && secs >= 1 && secs <= (double)ACDT_MAX_S) {
        whole = (int64_t)floor(secs);
        rec->arrival_ms = whole * 1000;
        /* the record keeps every other member as the stream sent it */
        s = json_object_new_int64(whole);
        if (!s || json_object_object_add(ddb, "ApproximateCreationDateTime", s) != 0) {
            json_object_put(s);
            return -ENOMEM;
        }
        s = json_object_new_string("SECOND");
        if (!s || json_object_object_add(ddb, "ApproximateCreationDateTimePrecision", s) != 0) {
            json_object_put(s);
            return -ENOMEM;
        }
    }
    s = json_object_new_string(table);
    if (!s || json_object_object_add(o, "tableName", s) != 0) {
        json_object_put(s);
        return -ENOMEM;
    }
    text = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (!text) {
        return -ENOMEM;
    }
    rec->data = malloc(n + 1);
    if (!rec->data) {
        return -ENOMEM;
    }
    memcpy(rec->data, text, n);
    rec->data[n] = '\0';
    rec->data_len = n;
    return 0;
}

/* Frees the records' own strings while they are still allocated one by one. */
static void unpacked_free(struct d2o_kinesis_records *res)
{
    size_t i;

    for (i = 0; res->records && i < res->n_records; i++) {
        free(res->records[i].sequence_number);
        free(res->records[i].partition_key);
        free(res->records[i].data);
    }
}

static char *pack_bytes(char **at, const void *src, size_t n)
{
    char *start = *at;

    memcpy(start, src, n);
    start[n] = '\0';
    *at += n + 1;
    return start;
}

/*
 * Moves the records and their strings into one block, as the Kinesis parser leaves them:
 * d2o_kinesis_records_free() frees the array and nothing per record. 0 or -ENOMEM (the
 * records are left as they were).
 */
static int pack_records(struct d2o_kinesis_records *res)
{
    struct d2o_kinesis_record *recs;
    size_t i, total = res->n_records * sizeof(*recs);
    char *at;

    if (res->n_records == 0) {
        return 0;
    }
    for (i = 0; i < res->n_records; i++) {
        const struct d2o_kinesis_record *k = &res->records[i];

        total += strlen(k->sequence_number) + 1 + res->records[i].data_len + 1 +
                 (k->partition_key ? strlen(k->partition_key) + 1 : 0);
    }
    recs = malloc(total);
    if (!recs) {
        return -ENOMEM;
    }
    at = (char *)(recs + res->n_records);
    for (i = 0; i < res->n_records; i++) {
        const struct d2o_kinesis_record *k = &res->records[i];

        recs[i] = *k;
        recs[i].sequence_number = pack_bytes(&at, k->sequence_number, strlen(k->sequence_number));
        recs[i].partition_key =
            k->partition_key ? pack_bytes(&at, k->partition_key, strlen(k->partition_key)) : NULL;
        recs[i].data = (unsigned char *)pack_bytes(&at, k->data, k->data_len);
    }
    unpacked_free(res);
    free(res->records);
    res->records = recs;
    return 0;
}

int d2o_ddbstreams_parse_get_records(const char *body, size_t len, const char *stream_arn,
                                     struct d2o_kinesis_records *out, struct d2o_kinesis_err *err)
{
    static const char what[] = "GetRecords response";
    struct d2o_kinesis_records res;
    json_object *root = NULL, *records = NULL;
    char table[256], rwhat[64];
    size_t i, n;
    int r;

    memset(&res, 0, sizeof(res));
    res.millis_behind_latest = -1;
    memset(out, 0, sizeof(*out));
    out->millis_behind_latest = -1;
    if (d2o_ddbstreams_arn_table(stream_arn, table, sizeof(table)) < 0) {
        d2o_kjson_err(err, "%s: the stream ARN '%.200s' names no table", what,
                      stream_arn ? stream_arn : "");
        err->action = D2O_ACT_PERMANENT;
        snprintf(err->code, sizeof(err->code), "InvalidStreamArn");
        return D2O_KINESIS_E_FAILED;
    }
    r = d2o_kjson_root("GetRecords", body, len, &root, err);
    if (r == 0) {
        r = d2o_kjson_member(what, root, "Records", true, json_type_array, "an array", &records,
                             err);
    }
    if (r == 0) {
        /* absent or null: the shard is closed and every record of it was read */
        r = d2o_kjson_str(what, root, "NextShardIterator", false, &res.next_iterator, err);
    }
    if (r != 0) {
        goto out;
    }
    n = json_object_array_length(records);
    if (n > 0) {
        res.records = calloc(n, sizeof(*res.records));
        if (!res.records) {
            r = -ENOMEM;
            goto out;
        }
    }
    for (i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(records, i);

        snprintf(rwhat, sizeof(rwhat), "%s: Records[%zu]", what, i);
        res.n_records++;
        if (!json_object_is_type(o, json_type_object)) {
            d2o_kjson_err(err, "%s is not an object", rwhat);
            r = D2O_KINESIS_E_FAILED;
            goto out;
        }
        r = normalise_record(rwhat, o, table, &res.records[i], err);
        if (r != 0) {
            goto out;
        }
    }
    if (res.next_iterator && !res.next_iterator[0]) {
        free(res.next_iterator);
        res.next_iterator = NULL;
    }
    r = pack_records(&res);
    if (r != 0) {
        goto out;
    }
    *out = res;
    memset(&res, 0, sizeof(res));
out:
    unpacked_free(&res); /* an error before packing: the records' strings are their own */
    d2o_kinesis_records_free(&res);
    json_object_put(root);
    return r;
}

static int parse_shard(json_object *o, size_t i, struct d2o_kinesis_shard *s,
                       struct d2o_kinesis_err *err)
{
    char what[64];
    json_object *sr = NULL;
    int r;

    snprintf(what, sizeof(what), "DescribeStream response: Shards[%zu]", i);
    if (!json_object_is_type(o, json_type_object)) {
        d2o_kjson_err(err, "%s is not an object", what);
        return D2O_KINESIS_E_FAILED;
    }
    r = d2o_kjson_str(what, o, "ShardId", true, &s->shard_id, err);
    if (r == 0 && !s->shard_id[0]) {
        d2o_kjson_err(err, "%s: ShardId is empty", what);
        r = D2O_KINESIS_E_FAILED;
    }
    if (r == 0) {
        r = d2o_kjson_str(what, o, "ParentShardId", false, &s->parent_shard_id, err);
    }
    if (r == 0) {
        r = d2o_kjson_member(what, o, "SequenceNumberRange", true, json_type_object, "an object",
                             &sr, err);
    }
    if (r == 0) {
        r = get_seq(what, sr, "StartingSequenceNumber", false, &s->seq_start, err);
    }
    if (r == 0) {
        r = get_seq(what, sr, "EndingSequenceNumber", false, &s->seq_end, err);
    }
    return r;
}

void d2o_ddbstreams_info_free(struct d2o_ddbstreams_info *i)
{
    if (!i) {
        return;
    }
    free(i->stream_arn);
    free(i->stream_status);
    free(i->view_type);
    free(i->table_name);
    memset(i, 0, sizeof(*i));
}

int d2o_ddbstreams_parse_describe_stream(const char *body, size_t len,
                                         struct d2o_kinesis_shards *out,
                                         struct d2o_ddbstreams_info *info,
                                         struct d2o_kinesis_err *err)
{
    static const char what[] = "DescribeStream response";
    struct d2o_kinesis_shards res;
    struct d2o_ddbstreams_info inf;
    json_object *root = NULL, *desc = NULL, *shards = NULL;
    size_t i, n;
    int r;

    memset(&res, 0, sizeof(res));
    memset(&inf, 0, sizeof(inf));
    memset(out, 0, sizeof(*out));
    if (info) {
        memset(info, 0, sizeof(*info));
    }
    r = d2o_kjson_root("DescribeStream", body, len, &root, err);
    if (r == 0) {
        r = d2o_kjson_member(what, root, "StreamDescription", true, json_type_object, "an object",
                             &desc, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, desc, "StreamStatus", true, &res.stream_status, err);
    }
    if (r == 0) {
        r = d2o_kjson_member(what, desc, "Shards", true, json_type_array, "an array", &shards, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, desc, "LastEvaluatedShardId", false, &res.next_token, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, desc, "StreamArn", true, &inf.stream_arn, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, desc, "StreamViewType", false, &inf.view_type, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, desc, "TableName", false, &inf.table_name, err);
    }
    if (r == 0 && !(inf.stream_status = strdup(res.stream_status))) {
        r = -ENOMEM;
    }
    if (r != 0) {
        goto out;
    }
    n = json_object_array_length(shards);
    if (n > 0 && !(res.shards = calloc(n, sizeof(*res.shards)))) {
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        res.n_shards++;
        r = parse_shard(json_object_array_get_idx(shards, i), i, &res.shards[i], err);
        if (r != 0) {
            goto out;
        }
    }
    if (res.next_token && !res.next_token[0]) {
        free(res.next_token);
        res.next_token = NULL;
    }
    *out = res;
    memset(&res, 0, sizeof(res));
    if (info) {
        *info = inf;
        memset(&inf, 0, sizeof(inf));
    }
out:
    d2o_kinesis_shards_free(&res);
    d2o_ddbstreams_info_free(&inf);
    json_object_put(root);
    return r;
}

void d2o_ddbstreams_list_free(struct d2o_ddbstreams_list *l)
{
    size_t i;

    if (!l) {
        return;
    }
    for (i = 0; i < l->n_streams; i++) {
        free(l->streams[i].stream_arn);
        free(l->streams[i].table_name);
        free(l->streams[i].stream_label);
    }
    free(l->streams);
    free(l->last_evaluated_arn);
    memset(l, 0, sizeof(*l));
}

int d2o_ddbstreams_parse_list_streams(const char *body, size_t len, struct d2o_ddbstreams_list *out,
                                      struct d2o_kinesis_err *err)
{
    static const char what[] = "ListStreams response";
    struct d2o_ddbstreams_list res;
    json_object *root = NULL, *streams = NULL;
    char swhat[64];
    size_t i, n;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_kjson_root("ListStreams", body, len, &root, err);
    if (r == 0) {
        r = d2o_kjson_member(what, root, "Streams", true, json_type_array, "an array", &streams,
                             err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, root, "LastEvaluatedStreamArn", false, &res.last_evaluated_arn,
                          err);
    }
    if (r != 0) {
        goto out;
    }
    n = json_object_array_length(streams);
    if (n > 0 && !(res.streams = calloc(n, sizeof(*res.streams)))) {
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(streams, i);
        struct d2o_ddbstreams_stream *s = &res.streams[i];

        snprintf(swhat, sizeof(swhat), "%s: Streams[%zu]", what, i);
        res.n_streams++;
        if (!json_object_is_type(o, json_type_object)) {
            d2o_kjson_err(err, "%s is not an object", swhat);
            r = D2O_KINESIS_E_FAILED;
            goto out;
        }
        r = d2o_kjson_str(swhat, o, "StreamArn", true, &s->stream_arn, err);
        if (r == 0) {
            r = d2o_kjson_str(swhat, o, "TableName", false, &s->table_name, err);
        }
        if (r == 0) {
            r = d2o_kjson_str(swhat, o, "StreamLabel", false, &s->stream_label, err);
        }
        if (r != 0) {
            goto out;
        }
    }
    if (res.last_evaluated_arn && !res.last_evaluated_arn[0]) {
        free(res.last_evaluated_arn);
        res.last_evaluated_arn = NULL;
    }
    *out = res;
    memset(&res, 0, sizeof(res));
out:
    d2o_ddbstreams_list_free(&res);
    json_object_put(root);
    return r;
}
