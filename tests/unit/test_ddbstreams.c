/* DynamoDB Streams: the pure parsers, stream ARNs, and stream records as change records. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o/classify.h"
#include "d2o/conf.h"
#include "d2o/ddbstreams.h"
#include "d2o/document.h"
#include "d2o/record.h"
#include "d2o/util.h"
#include "d2o_test.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define ARN "arn:aws:dynamodb:ddblocal:000000000000:table/books/stream/2026-12-02T02:39:32.000"

/* What DynamoDB Local 3.3 answers for an INSERT, a MODIFY and a TTL REMOVE (the last one's
 * userIdentity as AWS writes it). */
static const char three_records[] =
    "{\"Records\":[{\"eventID\":\"4261f00b\",\"eventName\":\"INSERT\",\"eventVersion\":\"1.1\","
    "\"eventSource\":\"aws:dynamodb\",\"awsRegion\":\"ddblocal\",\"dynamodb\":{"
    "\"ApproximateCreationDateTime\":1796179140.000,\"Keys\":{\"id\":{\"S\":\"a/b\"}},"
    "\"NewImage\":{\"id\":{\"S\":\"a/b\"},\"n\":{\"N\":\"1.5\"}},\"SequenceNumber\":"
    "\"000000000000000000001\",\"SizeBytes\":14,\"StreamViewType\":\"NEW_AND_OLD_IMAGES\"}},"
    "{\"eventID\":\"1b5a8a65\",\"eventName\":\"MODIFY\",\"dynamodb\":{"
    "\"ApproximateCreationDateTime\":1796179140.999,\"Keys\":{\"id\":{\"S\":\"a/b\"}},"
    "\"NewImage\":{\"id\":{\"S\":\"a/b\"},\"n\":{\"N\":\"2\"}},\"OldImage\":{\"id\":{\"S\":"
    "\"a/b\"},\"n\":{\"N\":\"1.5\"}},\"SequenceNumber\":\"000000000000000000002\"}},"
    "{\"eventID\":\"1aac3994\",\"eventName\":\"REMOVE\",\"userIdentity\":{\"type\":\"Service\","
    "\"principalId\":\"dynamodb.amazonaws.com\"},\"dynamodb\":{"
    "\"ApproximateCreationDateTime\":1796179141,\"Keys\":{\"id\":{\"S\":\"a/b\"}},"
    "\"OldImage\":{\"id\":{\"S\":\"a/b\"}},\"SequenceNumber\":\"300000000000000499659\"}}],"
    "\"NextShardIterator\":\"arn:aws:dynamodb:x|001|c2hh\"}";

START_TEST(get_records_become_change_records)
{
    static const enum d2o_event ev[] = {D2O_EVENT_INSERT, D2O_EVENT_MODIFY, D2O_EVENT_REMOVE};
    static const int64_t secs[] = {1796179140, 1796179140, 1796179141};
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    struct d2o_record rec;
    char why[256];
    size_t i;

    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(S(three_records), ARN, &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 3);
    ck_assert_str_eq(r.next_iterator, "arn:aws:dynamodb:x|001|c2hh");
    ck_assert_int_eq(r.millis_behind_latest, -1);
    ck_assert_uint_eq(r.n_children, 0);
    ck_assert_str_eq(r.records[0].sequence_number, "000000000000000000001");
    ck_assert_str_eq(r.records[2].sequence_number, "300000000000000499659");
    ck_assert_str_eq(r.records[1].partition_key, "1b5a8a65");
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(r.records[i].arrival_ms, secs[i] * 1000);
        ck_assert_uint_eq(strlen((const char *)r.records[i].data), r.records[i].data_len);
        ck_assert_int_eq(d2o_record_parse((const char *)r.records[i].data, r.records[i].data_len,
                                          &rec, why, sizeof(why)),
                         0);
        ck_assert_int_eq(rec.event, ev[i]);
        ck_assert_str_eq(rec.table, "books");
        ck_assert_int_eq(rec.precision, D2O_PRECISION_SECOND);
        /* the fraction of a second is dropped, never rounded up into the next one */
        ck_assert_int_eq(rec.approx_creation, secs[i]);
        ck_assert_int_eq(d2o_doc_version(rec.approx_creation, rec.precision), secs[i] * 1000000);
        ck_assert(rec.ttl_delete == (i == 2));
        d2o_record_free(&rec);
    }
    /* number text and slashes stay as they were */
    ck_assert_ptr_nonnull(strstr((const char *)r.records[0].data, "{\"N\":\"1.5\"}"));
    ck_assert_ptr_nonnull(strstr((const char *)r.records[0].data, "\"a/b\""));
    d2o_kinesis_records_free(&r);
}
END_TEST

START_TEST(get_records_shard_end)
{
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(S("{\"Records\":[]}"), ARN, &r, &err), 0);
    ck_assert_ptr_null(r.next_iterator);
    ck_assert_uint_eq(r.n_records, 0);
    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(
                         S("{\"Records\":[],\"NextShardIterator\":null}"), ARN, &r, &err),
                     0);
    ck_assert_ptr_null(r.next_iterator);
    d2o_kinesis_records_free(&r);
}
END_TEST

static const struct {
    const char *body;
    const char *says;
} bad_records[] = {
    {"", "empty body"},
    {"{\"Records\":{}}", "Records is not an array"},
    {"{\"Records\":[1]}", "Records[0] is not an object"},
    {"{\"Records\":[{\"eventName\":\"INSERT\"}]}", "dynamodb is missing"},
    {"{\"Records\":[{\"dynamodb\":{\"ApproximateCreationDateTime\":1}}]}",
     "SequenceNumber is missing"},
    {"{\"Records\":[{\"dynamodb\":{\"SequenceNumber\":\"12a\",\"ApproximateCreationDateTime\":1}}]"
     "}",
     "SequenceNumber is not a valid sequence number"},
    {"{\"Records\":[],\"NextShardIterator\":7}", "NextShardIterator is not a string"},
};

/* Records whose timestamp is missing, not a number or out of range, between two good ones. */
static const struct {
    const char *acdt; /* the member as it stands in the record, or "" */
    const char *says; /* what the change-record parser says of it */
} bad_times[] = {
    {"", "ApproximateCreationDateTime is missing"},
    {",\"ApproximateCreationDateTime\":\"1\"", "ApproximateCreationDateTime is not an integer"},
    {",\"ApproximateCreationDateTime\":-5", "out of range"},
    {",\"ApproximateCreationDateTime\":1e300", "ApproximateCreationDateTime"},
};

/* Times out of range that the change-record parser would take for milliseconds or microseconds
 * if the record did not say seconds; each one is one bad record. */
static const struct {
    const char *acdt;
    const char *says;
} late_times[] = {
    {"179617914060000", "ApproximateCreationDateTime 179617914060000 is too large for seconds"},
    {"1796179140999", "ApproximateCreationDateTime 1796179140999 is too large for seconds"},
    {"253402300800", "ApproximateCreationDateTime 253402300800 is too large for seconds"},
    {"1796179140999000", "ApproximateCreationDateTime 1796179140999000 is too large for seconds"},
};

START_TEST(a_time_after_9999_is_one_bad_record)
{
    char body[512], why[256];
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    struct d2o_record rec;
    int n;

    n = snprintf(body, sizeof(body),
                 "{\"Records\":[{\"eventName\":\"INSERT\",\"dynamodb\":{\"SequenceNumber\":\"1\","
                 "\"ApproximateCreationDateTime\":%s,\"Keys\":{\"id\":{\"S\":\"a\"}},"
                 "\"NewImage\":{\"id\":{\"S\":\"a\"}}}}]}",
                 late_times[_i].acdt);
    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(body, (size_t)n, ARN, &r, &err), 0);
    ck_assert_int_eq(r.records[0].arrival_ms, 0);
    ck_assert_int_eq(d2o_record_parse((const char *)r.records[0].data, r.records[0].data_len, &rec,
                                      why, sizeof(why)),
                     -EINVAL);
    ck_assert_msg(strstr(why, late_times[_i].says), "'%s' lacks '%s'", why, late_times[_i].says);
    d2o_kinesis_records_free(&r);
}
END_TEST

START_TEST(a_record_without_a_usable_time_is_one_bad_record)
{
    char body[1024], why[256];
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    struct d2o_record rec;
    int n;

    n = snprintf(body, sizeof(body),
                 "{\"Records\":["
                 "{\"eventName\":\"INSERT\",\"dynamodb\":{\"SequenceNumber\":\"1\","
                 "\"ApproximateCreationDateTime\":1796179140,\"Keys\":{\"id\":{\"S\":\"a\"}},"
                 "\"NewImage\":{\"id\":{\"S\":\"a\"}}}},"
                 "{\"eventName\":\"INSERT\",\"dynamodb\":{\"SequenceNumber\":\"2\"%s,"
                 "\"Keys\":{\"id\":{\"S\":\"b\"}},\"NewImage\":{\"id\":{\"S\":\"b\"}}}},"
                 "{\"eventName\":\"REMOVE\",\"dynamodb\":{\"SequenceNumber\":\"3\","
                 "\"ApproximateCreationDateTime\":1796179141,\"Keys\":{\"id\":{\"S\":\"a\"}}}}"
                 "],\"NextShardIterator\":\"i\"}",
                 bad_times[_i].acdt);
    ck_assert_int_lt(n, (int)sizeof(body));
    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(body, (size_t)n, ARN, &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 3);
    ck_assert_str_eq(r.records[1].sequence_number, "2");
    ck_assert_int_eq(r.records[1].arrival_ms, 0);
    ck_assert_int_eq(r.records[2].arrival_ms, 1796179141000);
    /* the bad one: refused by the change-record parser, naming the member (so: the DLQ) */
    ck_assert_int_ne(d2o_record_parse((const char *)r.records[1].data, r.records[1].data_len, &rec,
                                      why, sizeof(why)),
                     0);
    ck_assert_msg(strstr(why, bad_times[_i].says), "'%s' lacks '%s'", why, bad_times[_i].says);
    /* its neighbours are whole change records */
    ck_assert_int_eq(d2o_record_parse((const char *)r.records[2].data, r.records[2].data_len, &rec,
                                      why, sizeof(why)),
                     0);
    ck_assert_int_eq(rec.event, D2O_EVENT_REMOVE);
    ck_assert_str_eq(rec.table, "books");
    d2o_record_free(&rec);
    d2o_kinesis_records_free(&r);
}
END_TEST

START_TEST(get_records_malformed)
{
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(bad_records[_i].body,
                                                      strlen(bad_records[_i].body), ARN, &r, &err),
                     D2O_KINESIS_E_FAILED);
    ck_assert_str_eq(err.code, "MalformedResponse");
    ck_assert_int_eq(err.action, D2O_ACT_RETRY);
    ck_assert_msg(strstr(err.message, bad_records[_i].says), "'%s' lacks '%s'", err.message,
                  bad_records[_i].says);
    ck_assert_uint_eq(r.n_records, 0);
    ck_assert_ptr_null(r.records);
}
END_TEST

START_TEST(stream_arns)
{
    char t[16];
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_ddbstreams_arn_table(ARN, t, sizeof(t)), 0);
    ck_assert_str_eq(t, "books");
    ck_assert_int_eq(d2o_ddbstreams_arn_table("books", t, sizeof(t)), -EINVAL);
    ck_assert_int_eq(
        d2o_ddbstreams_arn_table("arn:aws:kinesis:us-east-1:1:stream/books", t, sizeof(t)),
        -EINVAL);
    ck_assert_int_eq(
        d2o_ddbstreams_arn_table("arn:aws:dynamodb:r:1:table/books/stream/", t, sizeof(t)),
        -EINVAL);
    ck_assert_int_eq(d2o_ddbstreams_arn_table(
                         "arn:aws:dynamodb:r:1:table/a-table-name-too-long/stream/x", t, sizeof(t)),
                     -EINVAL);
    /* records cannot name their table without one: refused for good, before any parsing */
    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(S(three_records), "books", &r, &err),
                     D2O_KINESIS_E_FAILED);
    ck_assert_int_eq(err.action, D2O_ACT_PERMANENT);
    ck_assert_ptr_nonnull(strstr(err.message, "names no table"));

    ck_assert(d2o_ddbstreams_seq_valid("000000000000000000001"));
    ck_assert(d2o_ddbstreams_seq_valid("300000000000000499659"));
    ck_assert(!d2o_ddbstreams_seq_valid(""));
    ck_assert(!d2o_ddbstreams_seq_valid(NULL));
    ck_assert(!d2o_ddbstreams_seq_valid("1 "));
    ck_assert_int_lt(d2o_kinesis_seq_cmp("000000000000000000009", "000000000000000000010"), 0);
}
END_TEST

START_TEST(describe_stream_pages)
{
    static const char page1[] =
        "{\"StreamDescription\":{\"StreamArn\":\"" ARN "\",\"StreamLabel\":\"l\","
        "\"StreamStatus\":\"ENABLED\",\"StreamViewType\":\"NEW_AND_OLD_IMAGES\","
        "\"CreationRequestDateTime\":1796179172.000,\"TableName\":\"books\",\"KeySchema\":[],"
        "\"Shards\":[{\"ShardId\":\"shardId-1\",\"SequenceNumberRange\":{"
        "\"StartingSequenceNumber\":\"100\",\"EndingSequenceNumber\":\"200\"}},"
        "{\"ShardId\":\"shardId-2\",\"ParentShardId\":\"shardId-1\",\"SequenceNumberRange\":{"
        "\"StartingSequenceNumber\":\"300\"}}],\"LastEvaluatedShardId\":\"shardId-2\"}}";
    static const char last[] =
        "{\"StreamDescription\":{\"StreamArn\":\"" ARN "\",\"StreamStatus\":\"DISABLED\","
        "\"Shards\":[{\"ShardId\":\"shardId-3\",\"SequenceNumberRange\":{}}]}}";
    struct d2o_kinesis_shards s;
    struct d2o_ddbstreams_info info;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_ddbstreams_parse_describe_stream(S(page1), &s, &info, &err), 0);
    ck_assert_uint_eq(s.n_shards, 2);
    ck_assert_str_eq(s.stream_status, "ENABLED");
    ck_assert_str_eq(s.next_token, "shardId-2");
    ck_assert_str_eq(s.shards[0].shard_id, "shardId-1");
    ck_assert_ptr_null(s.shards[0].parent_shard_id);
    ck_assert_str_eq(s.shards[0].seq_end, "200");
    ck_assert_str_eq(s.shards[1].parent_shard_id, "shardId-1");
    ck_assert_ptr_null(s.shards[1].seq_end); /* open */
    ck_assert_ptr_null(s.shards[1].hash_start);
    ck_assert_str_eq(info.stream_arn, ARN);
    ck_assert_str_eq(info.view_type, "NEW_AND_OLD_IMAGES");
    ck_assert_str_eq(info.table_name, "books");
    ck_assert_str_eq(info.stream_status, "ENABLED");
    d2o_kinesis_shards_free(&s);
    d2o_ddbstreams_info_free(&info);

    ck_assert_int_eq(d2o_ddbstreams_parse_describe_stream(S(last), &s, NULL, &err), 0);
    ck_assert_ptr_null(s.next_token);
    ck_assert_ptr_null(s.shards[0].seq_start);
    d2o_kinesis_shards_free(&s);

    ck_assert_int_eq(d2o_ddbstreams_parse_describe_stream(
                         S("{\"StreamDescription\":{\"StreamArn\":\"a\",\"StreamStatus\":\"E\","
                           "\"Shards\":[{\"ShardId\":\"\",\"SequenceNumberRange\":{}}]}}"),
                         &s, &info, &err),
                     D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "Shards[0]: ShardId is empty"));
    ck_assert_ptr_null(info.stream_arn);
    ck_assert_int_eq(
        d2o_ddbstreams_parse_describe_stream(
            S("{\"StreamDescription\":{\"StreamStatus\":\"E\",\"Shards\":[]}}"), &s, &info, &err),
        D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "StreamArn is missing"));
}
END_TEST

START_TEST(list_streams_pages)
{
    struct d2o_ddbstreams_list l;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(
        d2o_ddbstreams_parse_list_streams(
            S("{\"Streams\":[{\"StreamArn\":\"a1\",\"TableName\":\"books\",\"StreamLabel\":"
              "\"2026-12-01T00:00:00.000\"},{\"StreamArn\":\"a2\"}],\"LastEvaluatedStreamArn\":"
              "\"a2\"}"),
            &l, &err),
        0);
    ck_assert_uint_eq(l.n_streams, 2);
    ck_assert_str_eq(l.streams[0].table_name, "books");
    ck_assert_str_eq(l.streams[0].stream_label, "2026-12-01T00:00:00.000");
    ck_assert_ptr_null(l.streams[1].table_name);
    ck_assert_str_eq(l.last_evaluated_arn, "a2");
    d2o_ddbstreams_list_free(&l);
    ck_assert_int_eq(d2o_ddbstreams_parse_list_streams(S("{\"Streams\":[]}"), &l, &err), 0);
    ck_assert_ptr_null(l.last_evaluated_arn);
    ck_assert_int_eq(
        d2o_ddbstreams_parse_list_streams(S("{\"Streams\":[{\"TableName\":\"t\"}]}"), &l, &err),
        D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "Streams[0]: StreamArn is missing"));
    ck_assert_uint_eq(l.n_streams, 0);
}
END_TEST

START_TEST(stream_errors_are_classified)
{
    struct d2o_kinesis_err err;

    d2o_kinesis_parse_error(400, NULL,
                            S("{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                              "TrimmedDataAccessException\",\"message\":\"trimmed\"}"),
                            &err);
    ck_assert_str_eq(err.code, "TrimmedDataAccessException");
    ck_assert_int_eq(err.action, D2O_ACT_PERMANENT);
    d2o_kinesis_parse_error(400, NULL,
                            S("{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                              "ExpiredIteratorException\",\"message\":\"expired\"}"),
                            &err);
    ck_assert_int_eq(err.action, D2O_ACT_REFRESH_ITERATOR);
    /* DynamoDB Local's words for a stream that is gone */
    d2o_kinesis_parse_error(400, NULL,
                            S("{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                              "ResourceNotFoundException\",\"Message\":\"Stream does not exist\"}"),
                            &err);
    ck_assert_int_eq(err.action, D2O_ACT_PERMANENT);
    ck_assert_ptr_nonnull(strstr(err.message, "Stream does not exist"));
    d2o_kinesis_parse_error(400, NULL,
                            S("{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                              "LimitExceededException\"}"),
                            &err);
    ck_assert_int_eq(err.action, D2O_ACT_THROTTLE);
}
END_TEST

/* ---- versions along a shard lineage ---- */

/* One change as a shard delivers it: its second, the item and the value it leaves. */
struct change {
    int64_t second;
    char item;
    int value;
};

#define MAX_CHANGES 16

/* A parent shard read to its end, then its child; checkpoint = how many records of the whole
 * lineage a first reader got acknowledged before it was killed (a new owner, or a restart, reads
 * again from there with the version stored at that checkpoint). */
static const struct {
    const char *name;
    struct change recs[MAX_CHANGES];
    size_t n, n_parent, checkpoint;
} lineages[] = {
    {"three changes of one item in one second",
     {{100, 'x', 1}, {100, 'x', 2}, {100, 'x', 3}},
     3,
     3,
     1},
    {"rollover between two changes of one item inside one second",
     {{100, 'x', 1}, {100, 'y', 1}, {100, 'x', 2}, {100, 'x', 3}},
     4,
     2,
     2},
    {"restart inside a second, the item changed again after it",
     {{99, 'x', 1}, {100, 'x', 2}, {100, 'y', 5}, {100, 'x', 3}, {101, 'x', 4}},
     5,
     5,
     2},
    {"a second that runs backwards on the shard (ApproximateCreationDateTime is approximate)",
     {{101, 'x', 1}, {100, 'x', 2}, {100, 'x', 3}},
     3,
     1,
     1},
    {"child in a later second, restart at the rollover",
     {{100, 'x', 1}, {100, 'x', 2}, {105, 'x', 3}, {105, 'y', 1}, {105, 'x', 4}},
     5,
     2,
     2},
    {"restart before anything was acknowledged", {{7, 'a', 1}, {7, 'a', 2}, {8, 'a', 3}}, 3, 0, 0},
};

/* What one reader assigns from record `from` on, starting at version prev. */
static void read_from(const struct change *recs, size_t n, size_t from, int64_t prev, int64_t *out)
{
    size_t i;

    for (i = from; i < n; i++) {
        out[i] = d2o_ddbstreams_version(prev, recs[i].second);
        prev = out[i];
    }
}

/* OpenSearch's external versioning: a write lands only above the document's version. */
static void apply(int64_t *doc_ver, int *doc_val, int64_t v, int value)
{
    if (v > *doc_ver) {
        *doc_ver = v;
        *doc_val = value;
    }
}

START_TEST(versions_along_a_lineage)
{
    const struct change *recs = lineages[_i].recs;
    size_t n = lineages[_i].n, cp = lineages[_i].checkpoint, i, j;
    int64_t first[MAX_CHANGES], again[MAX_CHANGES], doc_ver[256] = {0};
    int doc_val[256] = {0}, last_val[256] = {0};

    /* the first reader: the parent from nothing, its child from the parent's final version */
    read_from(recs, lineages[_i].n_parent, 0, 0, first);
    read_from(recs, n, lineages[_i].n_parent,
              lineages[_i].n_parent ? first[lineages[_i].n_parent - 1] : 0, first);
    /* the next owner: from the checkpoint and the version stored with it */
    read_from(recs, n, cp, cp ? first[cp - 1] : 0, again);
    for (i = cp; i < n; i++) {
        ck_assert_msg(again[i] == first[i], "%s: record %zu read again got v%lld, first v%lld",
                      lineages[_i].name, i, (long long)again[i], (long long)first[i]);
    }
    for (i = 0; i < n; i++) {
        /* never below the second the change was made in (a backfill's version stays below) */
        ck_assert_int_ge(first[i], recs[i].second * 1000000);
        for (j = i + 1; j < n; j++) {
            if (recs[i].item == recs[j].item) {
                ck_assert_msg(first[i] < first[j], "%s: change %zu (v%lld) not below %zu (v%lld)",
                              lineages[_i].name, i, (long long)first[i], j, (long long)first[j]);
            }
        }
        last_val[(unsigned char)recs[i].item] = recs[i].value;
    }
    /* every write lands in any order, the re-read ones twice, later ones before earlier ones */
    for (i = n; i-- > 0;) {
        apply(&doc_ver[(unsigned char)recs[i].item], &doc_val[(unsigned char)recs[i].item],
              first[i], recs[i].value);
    }
    for (i = cp; i < n; i++) {
        apply(&doc_ver[(unsigned char)recs[i].item], &doc_val[(unsigned char)recs[i].item],
              again[i], recs[i].value);
    }
    for (i = 0; i < n; i++) {
        unsigned char it = (unsigned char)recs[i].item;

        ck_assert_msg(doc_val[it] == last_val[it], "%s: item %c ends at %d, not %d",
                      lineages[_i].name, recs[i].item, doc_val[it], last_val[it]);
    }
}
END_TEST

START_TEST(versions_of_one_second_without_the_counter_tie)
{
    /* What the stream's second alone would give: two changes in one second tie, and OpenSearch
     * keeps whichever it applies first. The counter is what tells them apart. */
    ck_assert_int_eq(d2o_doc_version(100, D2O_PRECISION_SECOND),
                     d2o_doc_version(100, D2O_PRECISION_SECOND));
    ck_assert_int_eq(d2o_ddbstreams_version(0, 100), 100000000);
    ck_assert_int_eq(d2o_ddbstreams_version(100000000, 100), 100000001);
    ck_assert_int_eq(d2o_ddbstreams_version(100000001, 101), 101000000);
    /* a second's counter that reaches the next second goes on counting: never back */
    ck_assert_int_eq(d2o_ddbstreams_version(100999999, 100), 101000000);
    ck_assert_int_eq(d2o_ddbstreams_version(101000000, 101), 101000001);
    /* an ApproximateCreationDateTime out of range only counts on */
    ck_assert_int_eq(d2o_ddbstreams_version(5, 0), 6);
}
END_TEST

/* An item nested as deep as DynamoDB allows (32 levels) is one record like any other. */
START_TEST(a_deeply_nested_item_is_read)
{
    struct d2o_buf body = D2O_BUF_INIT, doc = D2O_BUF_INIT;
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    struct d2o_record rec;
    struct d2o_config conf;
    struct d2o_doc_op op;
    char why[256];
    int i;

    ck_assert_int_eq(d2o_buf_puts(&body, "{\"Records\":[{\"eventName\":\"INSERT\",\"dynamodb\":{"
                                         "\"SequenceNumber\":\"1\",\"ApproximateCreationDateTime\":"
                                         "1796179140,\"Keys\":{\"id\":{\"S\":\"a\"}},\"NewImage\":{"
                                         "\"id\":{\"S\":\"a\"},\"deep\":"),
                     0);
    for (i = 0; i < 31; i++) {
        ck_assert_int_eq(d2o_buf_puts(&body, "{\"M\":{\"m\":"), 0);
    }
    ck_assert_int_eq(d2o_buf_puts(&body, "{\"N\":\"1\"}"), 0);
    for (i = 0; i < 31; i++) {
        ck_assert_int_eq(d2o_buf_puts(&body, "}}"), 0);
    }
    ck_assert_int_eq(d2o_buf_puts(&body, "}}}],\"NextShardIterator\":\"i\"}"), 0);
    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(body.data, body.len, ARN, &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 1);
    ck_assert_int_eq(d2o_record_parse((const char *)r.records[0].data, r.records[0].data_len, &rec,
                                      why, sizeof(why)),
                     0);
    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    ck_assert_msg(d2o_doc_build(&rec, &conf, &op, why, sizeof(why)) == 0, "%s", why);
    ck_assert_int_eq(d2o_buf_puts(&doc, "{\"id\":\"a\",\"deep\":"), 0);
    for (i = 0; i < 31; i++) {
        ck_assert_int_eq(d2o_buf_puts(&doc, "{\"m\":"), 0);
    }
    ck_assert_int_eq(d2o_buf_putc(&doc, '1'), 0);
    for (i = 0; i < 32; i++) {
        ck_assert_int_eq(d2o_buf_putc(&doc, '}'), 0);
    }
    ck_assert_ptr_nonnull(strstr(op.ndjson.data, doc.data));
    d2o_doc_op_free(&op);
    d2o_record_free(&rec);
    d2o_conf_free(&conf);
    d2o_kinesis_records_free(&r);
    d2o_buf_free(&doc);
    d2o_buf_free(&body);
}
END_TEST

/* A record with a key twice does not fail the answer: its text keeps both members and the
 * change-record parser refuses it, naming the key (so it goes to the DLQ alone). */
START_TEST(a_record_with_a_key_twice_fails_alone)
{
    static const char body[] =
        "{\"Records\":[{\"eventName\":\"INSERT\",\"dynamodb\":{\"SequenceNumber\":\"1\","
        "\"ApproximateCreationDateTime\":1796179140,\"Keys\":{\"id\":{\"S\":\"a\"}},"
        "\"NewImage\":{\"id\":{\"S\":\"a\"},\"x\":{\"S\":\"1\"},\"x\":{\"S\":\"2\"}}}},"
        "{\"eventName\":\"REMOVE\",\"dynamodb\":{\"SequenceNumber\":\"2\","
        "\"ApproximateCreationDateTime\":1796179141,\"Keys\":{\"id\":{\"S\":\"a\"}}}}]}";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    struct d2o_record rec;
    char why[256];

    ck_assert_int_eq(d2o_ddbstreams_parse_get_records(S(body), ARN, &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 2);
    ck_assert_ptr_nonnull(
        strstr((const char *)r.records[0].data, "\"x\":{\"S\":\"1\"},\"x\":{\"S\":\"2\"}"));
    ck_assert_int_eq(d2o_record_parse((const char *)r.records[0].data, r.records[0].data_len, &rec,
                                      why, sizeof(why)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "the key \"x\" appears twice"));
    ck_assert_int_eq(d2o_record_parse((const char *)r.records[1].data, r.records[1].data_len, &rec,
                                      why, sizeof(why)),
                     0);
    d2o_record_free(&rec);
    d2o_kinesis_records_free(&r);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("ddbstreams");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, get_records_become_change_records);
    tcase_add_test(tc, get_records_shard_end);
    tcase_add_loop_test(tc, get_records_malformed, 0, (int)D2O_ARRAY_SIZE(bad_records));
    tcase_add_loop_test(tc, a_record_without_a_usable_time_is_one_bad_record, 0,
                        (int)D2O_ARRAY_SIZE(bad_times));
    tcase_add_loop_test(tc, a_time_after_9999_is_one_bad_record, 0,
                        (int)D2O_ARRAY_SIZE(late_times));
    tcase_add_test(tc, stream_arns);
    tcase_add_test(tc, a_deeply_nested_item_is_read);
    tcase_add_test(tc, a_record_with_a_key_twice_fails_alone);
    tcase_add_test(tc, describe_stream_pages);
    tcase_add_test(tc, list_streams_pages);
    tcase_add_test(tc, stream_errors_are_classified);
    tcase_add_loop_test(tc, versions_along_a_lineage, 0, (int)D2O_ARRAY_SIZE(lineages));
    tcase_add_test(tc, versions_of_one_second_without_the_counter_tie);
    suite_add_tcase(s, tc);
    return s;
}
