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
#include "d2o/buf.h"
#include "d2o/ddbstreams.h"
#include "d2o/jdoc.h"

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

/* ---- GetRecords: parsed into a reused document (src/core/jdoc.c), one per process ---- */

/* The change-record parser's nesting bound (src/record) plus the answer's two outer levels
 * ({"Records":[...]}), so every record it would take reaches it. */
#define RESPONSE_MAX_DEPTH 82

static struct d2o_jdoc *response_doc;

/* A member that is present and not null. */
static const struct d2o_jnode *child(const struct d2o_jnode *o, const char *key)
{
    const struct d2o_jnode *v = d2o_jnode_get(o, key);

    return v && v->type != D2O_JNULL ? v : NULL;
}

/* A member of the given type: absent or null gives NULL, an error when required. */
static int jmember(const char *what, const struct d2o_jnode *obj, const char *key, bool required,
                   enum d2o_jtype type, const char *type_text, const struct d2o_jnode **out,
                   struct d2o_kinesis_err *err)
{
    const struct d2o_jnode *v = child(obj, key);

    *out = NULL;
    if (!v) {
        if (required) {
            d2o_kjson_err(err, "%s: %s is missing", what, key);
            return D2O_KINESIS_E_FAILED;
        }
        return 0;
    }
    if (v->type != type) {
        d2o_kjson_err(err, "%s: %s is %s", what, key, type_text);
        return D2O_KINESIS_E_FAILED;
    }
    *out = v;
    return 0;
}

/* A copy of a string member (up to a NUL byte it may hold); absent or null gives NULL. */
static int jstr(const char *what, const struct d2o_jnode *obj, const char *key, bool required,
                char **out, struct d2o_kinesis_err *err)
{
    const struct d2o_jnode *v;
    int r = jmember(what, obj, key, required, D2O_JSTRING, "not a string", &v, err);

    *out = NULL;
    if (r == 0 && v && !(*out = strndup(v->text, v->len))) {
        r = -ENOMEM;
    }
    return r;
}

/* Parses the answer into the process's document. 0, D2O_KINESIS_E_FAILED or -ENOMEM. */
static int parse_response(const char *body, size_t len, const struct d2o_jnode **root,
                          struct d2o_kinesis_err *err)
{
    char why[200];
    int r;

    *root = NULL;
    if (!body || len == 0) {
        d2o_kjson_err(err, "GetRecords response: empty body");
        return D2O_KINESIS_E_FAILED;
    }
    if (memchr(body, '\0', len)) {
        d2o_kjson_err(err, "GetRecords response: NUL byte in the body");
        return D2O_KINESIS_E_FAILED;
    }
    if (!response_doc) {
        response_doc = d2o_jdoc_new(RESPONSE_MAX_DEPTH);
        if (!response_doc) {
            return -ENOMEM;
        }
        /* a record with a key twice fails alone, in the change-record parser */
        d2o_jdoc_keep_duplicates(response_doc, true);
    }
    r = d2o_jdoc_parse(response_doc, body, len, why, sizeof(why));
    if (r == -EINVAL) {
        d2o_kjson_err(err, "GetRecords response: invalid JSON (%s)", why);
        return D2O_KINESIS_E_FAILED;
    }
    if (r < 0) {
        return r;
    }
    *root = d2o_jdoc_root(response_doc);
    if ((*root)->type != D2O_JOBJECT) {
        d2o_kjson_err(err, "GetRecords response: not a JSON object");
        return D2O_KINESIS_E_FAILED;
    }
    return 0;
}

static bool key_is(const struct d2o_jnode *m, const char *key)
{
    return m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0;
}

/* Appends ,"key": (or "key": as an object's first member). */
static int member_key(struct d2o_buf *out, const struct d2o_jnode *m, const struct d2o_jnode *obj)
{
    int r = m == obj->first ? 0 : d2o_buf_putc(out, ',');

    r = r < 0 ? r : d2o_buf_json_str(out, m->key, m->key_len);
    return r < 0 ? r : d2o_buf_putc(out, ':');
}

/* The dynamodb object with precision SECOND and, when whole >= 0, ApproximateCreationDateTime
 * as whole seconds. */
static int write_ddb(struct d2o_buf *out, const struct d2o_jnode *ddb, int64_t whole)
{
    const struct d2o_jnode *m;
    bool had_precision = false;
    int r = d2o_buf_putc(out, '{');

    for (m = ddb->first; m && r == 0; m = m->next) {
        r = member_key(out, m, ddb);
        if (r < 0) {
            break;
        }
        if (key_is(m, "ApproximateCreationDateTime") && whole >= 0) {
            r = d2o_buf_put_i64(out, whole);
        } else if (key_is(m, "ApproximateCreationDateTimePrecision")) {
            had_precision = true;
            r = d2o_buf_puts(out, "\"SECOND\"");
        } else {
            r = d2o_jdoc_write(out, m);
        }
    }
    if (r == 0 && !had_precision) {
        r = d2o_buf_puts(out, ddb->first ? ",\"ApproximateCreationDateTimePrecision\":\"SECOND\""
                                         : "\"ApproximateCreationDateTimePrecision\":\"SECOND\"");
    }
    return r < 0 ? r : d2o_buf_putc(out, '}');
}

/*
 * Writes one stream record as a change record: the record as the stream sent it, with
 * "tableName" (in its place, or last), the dynamodb object's precision SECOND and, when
 * whole >= 0, its time in whole seconds. The text is what json-c wrote for the same tree before
 * (d2o_jdoc_write); a time that is not usable stays as sent, and the precision makes the
 * change-record parser refuse it as seconds rather than read a large one as milliseconds.
 */
static int write_record(struct d2o_buf *out, const struct d2o_jnode *o, const struct d2o_jnode *ddb,
                        int64_t whole, const char *table)
{
    const struct d2o_jnode *m;
    bool had_table = false;
    int r = d2o_buf_putc(out, '{');

    for (m = o->first; m && r == 0; m = m->next) {
        r = member_key(out, m, o);
        if (r < 0) {
            break;
        }
        if (key_is(m, "tableName")) {
            had_table = true;
            r = d2o_buf_json_str(out, table, strlen(table));
        } else if (m == ddb) {
            r = write_ddb(out, m, whole);
        } else {
            r = d2o_jdoc_write(out, m);
        }
    }
    if (r == 0 && !had_table) {
        r = d2o_buf_puts(out, o->first ? ",\"tableName\":" : "\"tableName\":");
        r = r < 0 ? r : d2o_buf_json_str(out, table, strlen(table));
    }
    return r < 0 ? r : d2o_buf_putc(out, '}');
}

/* Turns one stream record into a change record's text in rec. */
static int normalise_record(const char *what, const struct d2o_jnode *o, const char *table,
                            struct d2o_kinesis_record *rec, struct d2o_kinesis_err *err)
{
    const struct d2o_jnode *ddb = NULL, *v;
    struct d2o_buf text = D2O_BUF_INIT;
    int64_t whole = -1;
    double secs;
    int r;

    r = jmember(what, o, "dynamodb", true, D2O_JOBJECT, "not an object", &ddb, err);
    if (r == 0) {
        r = jstr(what, ddb, "SequenceNumber", true, &rec->sequence_number, err);
    }
    if (r == 0 && !d2o_ddbstreams_seq_valid(rec->sequence_number)) {
        d2o_kjson_err(err, "%s: SequenceNumber is not a valid sequence number", what);
        r = D2O_KINESIS_E_FAILED;
    }
    if (r == 0) {
        r = jstr(what, o, "eventID", false, &rec->partition_key, err);
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
    secs = v && v->type == D2O_JNUMBER ? d2o_jnode_double(v) : 0;
    rec->arrival_ms = 0;
    if (isfinite(secs) && secs >= 1 && secs <= (double)ACDT_MAX_S) {
        whole = (int64_t)floor(secs);
        rec->arrival_ms = whole * 1000;
    }
    r = write_record(&text, o, ddb, whole, table);
    if (r < 0) {
        d2o_buf_free(&text);
        return r;
    }
    rec->data_len = text.len;
    rec->data = (unsigned char *)d2o_buf_steal(&text);
    return rec->data ? 0 : -ENOMEM;
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
    const struct d2o_jnode *root = NULL, *records = NULL, *o;
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
    r = parse_response(body, len, &root, err);
    if (r == 0) {
        r = jmember(what, root, "Records", true, D2O_JARRAY, "not an array", &records, err);
    }
    if (r == 0) {
        /* absent or null: the shard is closed and every record of it was read */
        r = jstr(what, root, "NextShardIterator", false, &res.next_iterator, err);
    }
    if (r != 0) {
        goto out;
    }
    n = records->len;
    if (n > 0) {
        res.records = calloc(n, sizeof(*res.records));
        if (!res.records) {
            r = -ENOMEM;
            goto out;
        }
    }
    for (i = 0, o = records->first; o; i++, o = o->next) {
        snprintf(rwhat, sizeof(rwhat), "%s: Records[%zu]", what, i);
        res.n_records++;
        if (o->type != D2O_JOBJECT) {
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
