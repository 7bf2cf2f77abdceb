/*
 * DynamoDB Streams client against DynamoDB Local's stream (D2O_TEST_DYNAMODB): a table with a
 * NEW_AND_OLD_IMAGES stream, puts, updates and deletes; the stream found by ListStreams and
 * described, its shards listed a page at a time, every change read back in order with each
 * iterator type and turned into a change record; a stream turned off and on again under a new
 * ARN; a stream that does not exist.
 */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/sigv4.h"
#include "d2o/ddbstreams.h"
#include "d2o/dynamodb.h"
#include "d2o/http.h"
#include "d2o/record.h"

#define N_PUT 30
#define N_UPDATE 10
#define N_DELETE 5
#define N_CHANGES (N_PUT + N_UPDATE + N_DELETE)

static struct d2o_ddb *ddb;
static char table[64];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            die(__VA_ARGS__);                                                                      \
        }                                                                                          \
    } while (0)

#define CALL(expr)                                                                                 \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) {                                                                            \
            die("%s:%d %s -> %d: %s", __FILE__, __LINE__, #expr, rc_, err.message);                \
        }                                                                                          \
    } while (0)

/* One DynamoDB call with a body made from fmt (the table name is the first %s). */
static void ddb_do(const char *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ddb_do(const char *op, const char *fmt, ...)
{
    struct d2o_ddb_err derr;
    struct json_object *root = NULL;
    char body[1024];
    va_list ap;
    int n, r;

    va_start(ap, fmt);
    n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    CHECK(n > 0 && (size_t)n < sizeof(body), "%s body too long", op);
    r = d2o_ddb_call(ddb, op, table, body, (size_t)n, &root, &derr);
    CHECK(r == 0, "%s: %s", op, derr.message);
    json_object_put(root);
}

static void set_stream(bool on)
{
    if (on) {
        ddb_do("UpdateTable",
               "{\"TableName\":\"%s\",\"StreamSpecification\":{\"StreamEnabled\":true,"
               "\"StreamViewType\":\"NEW_AND_OLD_IMAGES\"}}",
               table);
    } else {
        ddb_do("UpdateTable",
               "{\"TableName\":\"%s\",\"StreamSpecification\":{\"StreamEnabled\":false}}", table);
    }
}

/* Reads from spec to the tip (until an empty answer); appends to recs. */
/* dst: a page of its own holding a copy of src, in one block as the parser leaves a page
 * (d2o_kinesis_records_free() frees it). */
static void copy_record(const struct d2o_kinesis_record *src, struct d2o_kinesis_records *dst)
{
    size_t seq = strlen(src->sequence_number) + 1;
    size_t pk = src->partition_key ? strlen(src->partition_key) + 1 : 0;
    struct d2o_kinesis_record *r = malloc(sizeof(*r) + seq + pk + src->data_len + 1);
    char *at;

    CHECK(r, "out of memory");
    at = (char *)(r + 1);
    *r = *src;
    r->sequence_number = memcpy(at, src->sequence_number, seq);
    at += seq;
    r->partition_key = pk ? memcpy(at, src->partition_key, pk) : NULL;
    at += pk;
    r->data = memcpy(at, src->data, src->data_len);
    r->data[src->data_len] = '\0';
    memset(dst, 0, sizeof(*dst));
    dst->records = r;
    dst->n_records = 1;
    dst->millis_behind_latest = -1;
}

static size_t read_all(struct d2o_kinesis *k, const char *arn, const char *shard,
                       const struct d2o_kinesis_iter_spec *spec, struct d2o_kinesis_records *recs,
                       size_t max)
{
    struct d2o_kinesis_err err;
    struct d2o_kinesis_records page;
    char *it = NULL;
    size_t n = 0, i;

    CALL(d2o_kinesis_get_shard_iterator(k, arn, shard, spec, &it, &err));
    CHECK(it, "no iterator for %s", shard);
    for (;;) {
        CALL(d2o_kinesis_get_records(k, it, 7, &page, &err));
        CHECK(page.n_records <= 7, "GetRecords gave %zu records for a limit of 7", page.n_records);
        for (i = 0; i < page.n_records && n < max; i++) {
            copy_record(&page.records[i], &recs[n]);
            n++;
        }
        free(it);
        it = page.next_iterator;
        page.next_iterator = NULL;
        if (page.n_records == 0 || !it) {
            d2o_kinesis_records_free(&page);
            break;
        }
        d2o_kinesis_records_free(&page);
    }
    free(it);
    return n;
}

static void free_all(struct d2o_kinesis_records *recs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        d2o_kinesis_records_free(&recs[i]);
    }
}

int main(void)
{
    struct d2o_aws_creds creds = {"AKIDTEST", "test-secret", NULL};
    struct d2o_kinesis_err err;
    struct d2o_kinesis_shards shards;
    struct d2o_ddbstreams_info info;
    struct d2o_kinesis_iter_spec spec = {0};
    struct d2o_kinesis_records recs[N_CHANGES + 8];
    struct d2o_http *http;
    struct d2o_kinesis *k, *k2;
    const char *endpoint = getenv("D2O_TEST_DYNAMODB");
    char errstr[256], *arn = NULL, *arn2 = NULL, *it = NULL, shard[128], why[256];
    size_t n, i;
    int r;

    CHECK(endpoint && endpoint[0], "D2O_TEST_DYNAMODB is not set (scripts/services env)");
    http = d2o_http_new(NULL, errstr, sizeof(errstr));
    CHECK(http, "d2o_http_new: %s", errstr);
    ddb = d2o_ddb_new(http, D2O_DDB_API_DYNAMODB, "us-east-1", endpoint, &creds, errstr,
                      sizeof(errstr));
    CHECK(ddb, "d2o_ddb_new: %s", errstr);
    k = d2o_ddbstreams_new(http, "us-east-1", endpoint, NULL, &creds, errstr, sizeof(errstr));
    CHECK(k, "d2o_ddbstreams_new: %s", errstr);
    snprintf(table, sizeof(table), "d2o-streams-%ld-%lld", (long)getpid(),
             (long long)(d2o_wall_us() / 1000));
    printf("table %s at %s\n", table, endpoint);

    /* no stream yet: a clear PERMANENT error */
    ddb_do("CreateTable",
           "{\"TableName\":\"%s\",\"KeySchema\":[{\"AttributeName\":\"id\",\"KeyType\":\"HASH\"}],"
           "\"AttributeDefinitions\":[{\"AttributeName\":\"id\",\"AttributeType\":\"S\"}],"
           "\"BillingMode\":\"PAY_PER_REQUEST\"}",
           table);
    r = d2o_ddbstreams_latest_arn(k, table, &arn, &err);
    CHECK(r == D2O_KINESIS_E_FAILED && err.action == D2O_ACT_PERMANENT &&
              strcmp(err.code, "ResourceNotFoundException") == 0 && strstr(err.message, table),
          "a table without a stream: %d %s", r, err.message);
    set_stream(true);

    for (i = 0; i < N_PUT; i++) {
        ddb_do("PutItem",
               "{\"TableName\":\"%s\",\"Item\":{\"id\":{\"S\":\"i%02zu\"},"
               "\"n\":{\"N\":\"%zu\"}}}",
               table, i, i);
    }
    for (i = 0; i < N_UPDATE; i++) {
        ddb_do("UpdateItem",
               "{\"TableName\":\"%s\",\"Key\":{\"id\":{\"S\":\"i%02zu\"}},"
               "\"UpdateExpression\":\"SET n = :v\",\"ExpressionAttributeValues\":{\":v\":"
               "{\"N\":\"100\"}}}",
               table, i);
    }
    for (i = 0; i < N_DELETE; i++) {
        ddb_do("DeleteItem", "{\"TableName\":\"%s\",\"Key\":{\"id\":{\"S\":\"i%02zu\"}}}", table,
               N_PUT - 1 - i);
    }

    CALL(d2o_ddbstreams_latest_arn(k, table, &arn, &err));
    CALL(d2o_ddbstreams_describe(k, arn, &info, &err));
    CHECK(strcmp(info.stream_arn, arn) == 0 && strcmp(info.table_name, table) == 0 &&
              strcmp(info.view_type, "NEW_AND_OLD_IMAGES") == 0 &&
              strcmp(info.stream_status, "ENABLED") == 0,
          "DescribeStream: %s %s %s %s", info.stream_arn, info.table_name, info.view_type,
          info.stream_status);
    d2o_ddbstreams_info_free(&info);
    /* the client that reads records needs the ARN: it names their table */
    k2 = d2o_ddbstreams_new(http, "us-east-1", endpoint, arn, &creds, errstr, sizeof(errstr));
    CHECK(k2, "d2o_ddbstreams_new: %s", errstr);
    /* one shard a page: the listing follows LastEvaluatedShardId */
    CALL(d2o_kinesis_list_all_shards(k2, arn, D2O_SHARD_FILTER_NONE, 1, &shards, &err));
    CHECK(shards.n_shards >= 1 && shards.shards[0].seq_start, "no shard listed");
    snprintf(shard, sizeof(shard), "%s", shards.shards[shards.n_shards - 1].shard_id);
    printf("%zu shard(s); reading %s\n", shards.n_shards, shard);
    d2o_kinesis_shards_free(&shards);

    spec.type = D2O_ITER_TRIM_HORIZON;
    n = read_all(k2, arn, shard, &spec, recs, N_CHANGES + 8);
    CHECK(n == N_CHANGES, "read %zu changes, expected %d", n, N_CHANGES);
    for (i = 0; i < n; i++) {
        const struct d2o_kinesis_record *kr = &recs[i].records[0];
        struct d2o_record rec;
        enum d2o_event want = i < N_PUT              ? D2O_EVENT_INSERT
                              : i < N_PUT + N_UPDATE ? D2O_EVENT_MODIFY
                                                     : D2O_EVENT_REMOVE;

        CHECK(i == 0 || d2o_kinesis_seq_cmp(recs[i - 1].records[0].sequence_number,
                                            kr->sequence_number) < 0,
              "record %zu out of order", i);
        CHECK(d2o_record_parse((const char *)kr->data, kr->data_len, &rec, why, sizeof(why)) == 0,
              "record %zu: %s: %s", i, why, (const char *)kr->data);
        CHECK(rec.event == want && strcmp(rec.table, table) == 0 &&
                  rec.precision == D2O_PRECISION_SECOND &&
                  rec.approx_creation * 1000 == kr->arrival_ms &&
                  (rec.event == D2O_EVENT_REMOVE) == (rec.new_image == NULL) &&
                  (rec.event == D2O_EVENT_INSERT) == (rec.old_image == NULL),
              "record %zu: event %d table %s: %s", i, (int)rec.event, rec.table,
              (const char *)kr->data);
        d2o_record_free(&rec);
    }

    /* AT and AFTER a sequence number start at that record and after it */
    spec.type = D2O_ITER_AT_SEQUENCE_NUMBER;
    spec.sequence_number = recs[9].records[0].sequence_number;
    {
        struct d2o_kinesis_records more[N_CHANGES + 8];
        size_t m = read_all(k2, arn, shard, &spec, more, N_CHANGES + 8);

        CHECK(m == N_CHANGES - 9 &&
                  strcmp(more[0].records[0].sequence_number, spec.sequence_number) == 0,
              "AT_SEQUENCE_NUMBER: %zu records", m);
        free_all(more, m);
        spec.type = D2O_ITER_AFTER_SEQUENCE_NUMBER;
        m = read_all(k2, arn, shard, &spec, more, N_CHANGES + 8);
        CHECK(m == N_CHANGES - 10 && strcmp(more[0].records[0].sequence_number,
                                            recs[10].records[0].sequence_number) == 0,
              "AFTER_SEQUENCE_NUMBER: %zu records", m);
        free_all(more, m);
    }
    /* LATEST sees only what comes after it */
    spec.type = D2O_ITER_LATEST;
    CALL(d2o_kinesis_get_shard_iterator(k2, arn, shard, &spec, &it, &err));
    ddb_do("PutItem", "{\"TableName\":\"%s\",\"Item\":{\"id\":{\"S\":\"late\"}}}", table);
    {
        struct d2o_kinesis_records page;

        CALL(d2o_kinesis_get_records(k2, it, 0, &page, &err));
        CHECK(page.n_records == 1 && strstr((const char *)page.records[0].data, "\"late\""),
              "LATEST: %zu records", page.n_records);
        d2o_kinesis_records_free(&page);
    }
    free(it);
    it = NULL;
    /* a bad iterator is refused, not retried for ever */
    {
        struct d2o_kinesis_records page;

        r = d2o_kinesis_get_records(k2, "not-an-iterator", 0, &page, &err);
        CHECK(r == D2O_KINESIS_E_FAILED && err.action == D2O_ACT_PERMANENT, "a bad iterator: %d %s",
              r, err.message);
    }
    free_all(recs, n);

    /* off and on again: a new ARN, found by ListStreams; the old one is no longer enabled */
    set_stream(false);
    set_stream(true);
    CALL(d2o_ddbstreams_latest_arn(k, table, &arn2, &err));
    CHECK(strcmp(arn, arn2) != 0, "the stream kept its ARN %s after off and on", arn);
    r = d2o_ddbstreams_describe(k, arn, &info, &err);
    CHECK((r == 0 && strcmp(info.stream_status, "ENABLED") != 0) ||
              (r == D2O_KINESIS_E_FAILED && strcmp(err.code, "ResourceNotFoundException") == 0),
          "the old stream: %d %s", r, r == 0 ? info.stream_status : err.message);
    d2o_ddbstreams_info_free(&info);
    printf("re-enabled: %s -> %s\n", arn, arn2);

    /* a stream that does not exist */
    spec.type = D2O_ITER_TRIM_HORIZON;
    arn2[strlen(arn2) - 1] = arn2[strlen(arn2) - 1] == '1' ? '2' : '1';
    r = d2o_kinesis_get_shard_iterator(k, arn2, shard, &spec, &it, &err);
    CHECK(r == D2O_KINESIS_E_FAILED && err.action == D2O_ACT_PERMANENT &&
              strcmp(err.code, "ResourceNotFoundException") == 0,
          "a missing stream: %d %s", r, err.message);

    ddb_do("DeleteTable", "{\"TableName\":\"%s\"}", table);
    free(arn);
    free(arn2);
    d2o_kinesis_free(k);
    d2o_kinesis_free(k2);
    d2o_ddb_free(ddb);
    d2o_http_free(http);
    printf("ok\n");
    return 0;
}
