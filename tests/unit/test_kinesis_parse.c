/* Pure Kinesis response parsers, sequence numbers, hash keys, error classification. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/kinesis.h"
#include "d2o/util.h"
#include "d2o_test.h"

#define S(lit) (lit), (sizeof(lit) - 1)

START_TEST(get_records_full)
{
    static const char body[] =
        "{\"Records\":[{\"SequenceNumber\":\"49590338271490256608559692538361571095921575989136588"
        "898\",\"ApproximateArrivalTimestamp\":1700000000.123,\"Data\":\"aGVsbG8=\","
        "\"PartitionKey\":\"pk1\"},"
        "{\"SequenceNumber\":\"2\",\"ApproximateArrivalTimestamp\":1700000001,\"Data\":\"aGk=\","
        "\"PartitionKey\":\"pk2\",\"EncryptionType\":\"NONE\"},"
        "{\"SequenceNumber\":\"3\",\"Data\":\"YWJj\",\"PartitionKey\":\"p\"},"
        "{\"SequenceNumber\":\"4\",\"Data\":\"\",\"PartitionKey\":\"p\"}],"
        "\"NextShardIterator\":\"AAAA\",\"MillisBehindLatest\":1500}";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(body), &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 4);
    ck_assert_str_eq(r.records[0].sequence_number,
                     "49590338271490256608559692538361571095921575989136588898");
    ck_assert_uint_eq(r.records[0].data_len, 5);
    ck_assert_mem_eq(r.records[0].data, "hello", 5);
    ck_assert_int_eq(r.records[0].arrival_ms, 1700000000123LL);
    ck_assert_str_eq(r.records[0].partition_key, "pk1");
    ck_assert_uint_eq(r.records[1].data_len, 2); /* two padding bytes not counted */
    ck_assert_mem_eq(r.records[1].data, "hi", 2);
    ck_assert_int_eq(r.records[1].arrival_ms, 1700000001000LL);
    ck_assert_uint_eq(r.records[2].data_len, 3); /* no padding */
    ck_assert_mem_eq(r.records[2].data, "abc", 3);
    ck_assert_int_eq(r.records[2].arrival_ms, 0);
    ck_assert_uint_eq(r.records[3].data_len, 0);
    ck_assert_str_eq(r.next_iterator, "AAAA");
    ck_assert_int_eq(r.millis_behind_latest, 1500);
    ck_assert_uint_eq(r.n_children, 0);
    d2o_kinesis_records_free(&r);
    ck_assert_ptr_null(r.records);
    d2o_kinesis_records_free(&r); /* idempotent */
}
END_TEST

START_TEST(get_records_shard_end_with_children)
{
    static const char body[] =
        "{\"Records\":[],\"NextShardIterator\":null,\"MillisBehindLatest\":0,"
        "\"ChildShards\":[{\"ShardId\":\"shardId-000000000002\",\"ParentShards\":"
        "[\"shardId-000000000000\",\"shardId-000000000001\"],\"HashKeyRange\":"
        "{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"340282366920938463463374607431768211455\""
        "}}]}";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(body), &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 0);
    ck_assert_ptr_null(r.next_iterator);
    ck_assert_uint_eq(r.n_children, 1);
    ck_assert_str_eq(r.children[0].shard_id, "shardId-000000000002");
    ck_assert_uint_eq(r.children[0].n_parents, 2);
    ck_assert_str_eq(r.children[0].parents[1], "shardId-000000000001");
    ck_assert_str_eq(r.children[0].hash_end, "340282366920938463463374607431768211455");
    d2o_kinesis_records_free(&r);
}
END_TEST

struct bad {
    const char *body;
    const char *needle; /* must appear in err.message */
};

static const struct bad bad_records[] = {
    {"", "empty body"},
    {"{\"Records\":[", "truncated"},
    {"[1,2]", "not a JSON object"},
    {"{\"Records\":[]} x", "unexpected data"},
    {"{}", "Records is missing"},
    {"{\"Records\":{}}", "Records is not an array"},
    {"{\"Records\":[1]}", "Records[0] is not an object"},
    {"{\"Records\":[{\"Data\":\"YQ==\",\"PartitionKey\":\"p\"}]}", "SequenceNumber is missing"},
    {"{\"Records\":[{\"SequenceNumber\":12,\"Data\":\"YQ==\",\"PartitionKey\":\"p\"}]}",
     "SequenceNumber is not a string"},
    {"{\"Records\":[{\"SequenceNumber\":\"01\",\"Data\":\"YQ==\",\"PartitionKey\":\"p\"}]}",
     "not a valid sequence number"},
    {"{\"Records\":[{\"SequenceNumber\":\"1a\",\"Data\":\"YQ==\",\"PartitionKey\":\"p\"}]}",
     "not a valid sequence number"},
    {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ=\",\"PartitionKey\":\"p\"}]}",
     "multiple of 4"},
    {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"Y!==\",\"PartitionKey\":\"p\"}]}",
     "bad character"},
    {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"Y=Q=\",\"PartitionKey\":\"p\"}]}",
     "bad character"},
    {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":7,\"PartitionKey\":\"p\"}]}",
     "Data is missing or not a string"},
    {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ==\"}]}", "PartitionKey is missing"},
    {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ==\",\"PartitionKey\":\"p\","
     "\"ApproximateArrivalTimestamp\":\"x\"}]}",
     "ApproximateArrivalTimestamp is not a number"},
    {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ==\",\"PartitionKey\":\"p\","
     "\"ApproximateArrivalTimestamp\":-1}]}",
     "out of range"},
    {"{\"Records\":[],\"NextShardIterator\":5}", "NextShardIterator is not a string"},
    {"{\"Records\":[],\"MillisBehindLatest\":\"5\"}", "MillisBehindLatest is not an integer"},
    {"{\"Records\":[],\"ChildShards\":[{\"ShardId\":\"s\",\"ParentShards\":[],"
     "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"1\"}}]}",
     "ParentShards is empty"},
    {"{\"Records\":[],\"ChildShards\":[{\"ShardId\":\"s\",\"ParentShards\":[\"a\"]}]}",
     "HashKeyRange is missing"},
};

START_TEST(get_records_malformed)
{
    const struct bad *b = &bad_records[_i];
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_get_records(b->body, strlen(b->body), &r, &err),
                     D2O_KINESIS_E_FAILED);
    ck_assert_msg(strstr(err.message, b->needle) != NULL, "case %d: message '%s' lacks '%s'", _i,
                  err.message, b->needle);
    ck_assert_str_eq(err.code, "MalformedResponse");
    ck_assert_int_eq(err.action, D2O_ACT_RETRY);
    ck_assert_ptr_null(r.records);
    ck_assert_uint_eq(r.n_records, 0);
}
END_TEST

START_TEST(get_records_not_nul_terminated)
{
    /* the parser must honour len: the bytes after it are garbage */
    static const char body[] = "{\"Records\":[],\"NextShardIterator\":\"I\"}GARBAGE";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_get_records(body, strlen(body) - 7, &r, &err), 0);
    ck_assert_str_eq(r.next_iterator, "I");
    d2o_kinesis_records_free(&r);
    ck_assert_int_eq(d2o_kinesis_parse_get_records(body, 10, &r, &err), D2O_KINESIS_E_FAILED);
}
END_TEST

START_TEST(get_records_members_in_any_order)
{
    /* the answer's members backwards, each record's members shuffled, unknown members of every
     * type around and between them */
    static const char body[] =
        "{\"ChildShards\":[{\"HashKeyRange\":{\"EndingHashKey\":\"9\",\"x\":[1,{}],"
        "\"StartingHashKey\":\"5\"},\"ParentShards\":[\"shardId-1\"],\"ShardId\":\"shardId-2\"}],"
        "\"MillisBehindLatest\":7,\"Extra\":{\"Records\":[1],\"Data\":\"!\"},"
        "\"NextShardIterator\":\"it\",\"Flag\":true,\"None\":null,"
        "\"Records\":[{\"Data\":\"aGk=\",\"EncryptionType\":\"KMS\",\"PartitionKey\":\"b\","
        "\"Nested\":{\"SequenceNumber\":\"bad\"},\"ApproximateArrivalTimestamp\":2.5,"
        "\"SequenceNumber\":\"20\"},"
        "{\"PartitionKey\":\"a\",\"SequenceNumber\":\"10\",\"List\":[[[]],\"s\",1.5e3,false],"
        "\"Data\":\"YWJj\"}],"
        "\"Tail\":-1.25e-3}";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_msg(d2o_kinesis_parse_get_records(S(body), &r, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(r.n_records, 2);
    ck_assert_str_eq(r.records[0].sequence_number, "20");
    ck_assert_str_eq(r.records[0].partition_key, "b");
    ck_assert_uint_eq(r.records[0].data_len, 2);
    ck_assert_mem_eq(r.records[0].data, "hi", 3); /* NUL-terminated */
    ck_assert_int_eq(r.records[0].arrival_ms, 2500);
    ck_assert_str_eq(r.records[1].sequence_number, "10");
    ck_assert_str_eq(r.records[1].partition_key, "a");
    ck_assert_mem_eq(r.records[1].data, "abc", 4);
    ck_assert_int_eq(r.records[1].arrival_ms, 0);
    ck_assert_str_eq(r.next_iterator, "it");
    ck_assert_int_eq(r.millis_behind_latest, 7);
    ck_assert_uint_eq(r.n_children, 1);
    ck_assert_str_eq(r.children[0].shard_id, "shardId-2");
    ck_assert_str_eq(r.children[0].parents[0], "shardId-1");
    ck_assert_str_eq(r.children[0].hash_start, "5");
    ck_assert_str_eq(r.children[0].hash_end, "9");
    d2o_kinesis_records_free(&r);
}
END_TEST

/* {"<key>":[[[...{"a":[...]}...]]]} nested depth levels deep: depth / 2 arrays, then objects. */
static char *deep_member(const char *key, int depth)
{
    size_t cap = strlen(key) + (size_t)depth * 8 + 16, n = 0;
    char *s = malloc(cap);
    int i;

    ck_assert_ptr_nonnull(s);
    n += (size_t)snprintf(s + n, cap - n, "\"%s\":", key);
    for (i = 0; i < depth; i++) {
        n += (size_t)snprintf(s + n, cap - n, i < depth / 2 ? "[" : "{\"a\":");
    }
    n += (size_t)snprintf(s + n, cap - n, "0");
    for (i = depth - 1; i >= 0; i--) {
        n += (size_t)snprintf(s + n, cap - n, i < depth / 2 ? "]" : "}");
    }
    return s;
}

START_TEST(get_records_deep_unknown_members)
{
    /* members nobody reads are skipped at any depth (a tree parser stopped at 32 levels) */
    char *outer = deep_member("Future", 500), *inner = deep_member("Annotations", 300), *body;
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    int n;

    n = asprintf(&body,
                 "{%s,\"Records\":[{\"SequenceNumber\":\"1\",%s,\"Data\":\"YQ==\","
                 "\"PartitionKey\":\"p\"}],\"NextShardIterator\":\"next\"}",
                 outer, inner);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(d2o_kinesis_parse_get_records(body, (size_t)n, &r, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(r.n_records, 1);
    ck_assert_mem_eq(r.records[0].data, "a", 2);
    ck_assert_str_eq(r.next_iterator, "next");
    d2o_kinesis_records_free(&r);
    free(body);
    free(outer);
    free(inner);
}
END_TEST

START_TEST(get_records_escapes)
{
    /* escapes are decoded before Data's base64 and the sequence number's digits are read */
    static const char body[] =
        "{\"Records\":[{\"SequenceNumber\":\"\\u00312\",\"Data\":"
        "\"\\/\\/\\/\\/aGk\\u003d\",\"PartitionKey\":\"p\\\"k\\\\\\u00e9\\n\"}],"
        "\"NextShardIterator\":\"A\\/B\\u0041\"}";
    static const char nul_in_seq[] =
        "{\"Records\":[{\"SequenceNumber\":\"1\\u00002\",\"Data\":\"\",\"PartitionKey\":\"p\"}]}";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_msg(d2o_kinesis_parse_get_records(S(body), &r, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(r.n_records, 1);
    ck_assert_str_eq(r.records[0].sequence_number, "12");
    ck_assert_uint_eq(r.records[0].data_len, 5);
    ck_assert_mem_eq(r.records[0].data, "\xff\xff\xffhi", 6);
    ck_assert_str_eq(r.records[0].partition_key, "p\"k\\\xc3\xa9\n");
    ck_assert_str_eq(r.next_iterator, "A/BA");
    d2o_kinesis_records_free(&r);
    /* an escaped NUL does not cut a sequence number short: "1\0002" is not "1" */
    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(nul_in_seq), &r, &err), D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "Records[0]: SequenceNumber is not a valid"));
}
END_TEST

START_TEST(get_records_huge_numbers)
{
    static const char body[] =
        "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"p\","
        "\"ApproximateArrivalTimestamp\":1700000000.12300000000000000000000000000000000000000000000"
        "000000000000000000001}],\"MillisBehindLatest\":99999999999999999999999999,"
        "\"Big\":1e999999,\"Small\":-99999999999999999999999999}";
    static const char negative[] = "{\"Records\":[],\"MillisBehindLatest\":-99999999999999999999}";
    static const struct bad bad[] = {
        {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"p\","
         "\"ApproximateArrivalTimestamp\":1e400}]}",
         "Records[0]: ApproximateArrivalTimestamp is out of range"},
        {"{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"p\","
         "\"ApproximateArrivalTimestamp\":123456789012345678901234567890}]}",
         "Records[0]: ApproximateArrivalTimestamp is out of range"},
        {"{\"Records\":[],\"MillisBehindLatest\":1.0}", "MillisBehindLatest is not an integer"},
        {"{\"Records\":[],\"MillisBehindLatest\":1e3}", "MillisBehindLatest is not an integer"},
    };
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    size_t i;

    ck_assert_msg(d2o_kinesis_parse_get_records(S(body), &r, &err) == 0, "%s", err.message);
    ck_assert_int_eq(r.records[0].arrival_ms, 1700000000123LL);
    /* an integer past int64 saturates, as json-c read it */
    ck_assert_int_eq(r.millis_behind_latest, INT64_MAX);
    d2o_kinesis_records_free(&r);
    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(negative), &r, &err), 0);
    ck_assert_int_eq(r.millis_behind_latest, INT64_MIN);
    d2o_kinesis_records_free(&r);
    for (i = 0; i < D2O_ARRAY_SIZE(bad); i++) {
        ck_assert_int_eq(d2o_kinesis_parse_get_records(bad[i].body, strlen(bad[i].body), &r, &err),
                         D2O_KINESIS_E_FAILED);
        ck_assert_msg(strstr(err.message, bad[i].needle), "case %zu: %s", i, err.message);
    }
}
END_TEST

START_TEST(get_records_every_truncation_refused)
{
    static const char body[] =
        "{\"Records\":[{\"SequenceNumber\":\"1\",\"ApproximateArrivalTimestamp\":1.5,"
        "\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"p\\u00e9\"},{\"SequenceNumber\":\"2\","
        "\"Data\":\"YQ==\",\"PartitionKey\":\"q\",\"X\":[{\"y\":null}]}],"
        "\"NextShardIterator\":\"it\",\"MillisBehindLatest\":12,\"ChildShards\":[{\"ShardId\":"
        "\"c\","
        "\"ParentShards\":[\"p\"],\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":"
        "\"1\""
        "}}]}\n ";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    size_t cut, len = sizeof(body) - 1;

    /* the whole answer, white space after it included, is fine */
    ck_assert_int_eq(d2o_kinesis_parse_get_records(body, len, &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 2);
    ck_assert_uint_eq(r.n_children, 1);
    d2o_kinesis_records_free(&r);
    /* every shorter prefix that ends inside the object is refused, with a reason */
    for (cut = 1; cut < len - 2; cut++) {
        err.message[0] = '\0';
        ck_assert_msg(d2o_kinesis_parse_get_records(body, cut, &r, &err) == D2O_KINESIS_E_FAILED,
                      "cut %zu accepted", cut);
        ck_assert_msg(strstr(err.message, "GetRecords response: invalid JSON"), "cut %zu: %s", cut,
                      err.message);
        ck_assert_ptr_null(r.records);
        ck_assert_ptr_null(r.next_iterator);
    }
}
END_TEST

START_TEST(get_records_errors_rank_as_before)
{
    /* a broken text wins over a bad record found before the break */
    static const char broken[] = "{\"Records\":[{\"Data\":1}], x";
    /* the answer's members are checked before the records, whatever their order */
    static const char nsi[] = "{\"Records\":[{\"Data\":1}],\"NextShardIterator\":5}";
    /* the first bad record wins; checks of a record in their fixed order */
    static const char two[] = "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ==\","
                              "\"PartitionKey\":\"p\"},7,{\"Data\":\"Y\",\"SequenceNumber\":\"x\"},"
                              "{\"SequenceNumber\":\"3\"}]}";
    /* the last of a member given twice counts */
    static const char twice[] =
        "{\"Records\":[{\"Data\":1}],\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ==\","
        "\"Data\":\"Yg==\",\"PartitionKey\":\"p\"}],\"MillisBehindLatest\":\"x\","
        "\"MillisBehindLatest\":3}";
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(broken), &r, &err), D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "invalid JSON"));
    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(nsi), &r, &err), D2O_KINESIS_E_FAILED);
    ck_assert_str_eq(err.message, "GetRecords response: NextShardIterator is not a string");
    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(two), &r, &err), D2O_KINESIS_E_FAILED);
    ck_assert_str_eq(err.message, "GetRecords response: Records[1] is not an object");
    ck_assert_int_eq(d2o_kinesis_parse_get_records(S(twice), &r, &err), 0);
    ck_assert_uint_eq(r.n_records, 1);
    ck_assert_mem_eq(r.records[0].data, "b", 2);
    ck_assert_int_eq(r.millis_behind_latest, 3);
    d2o_kinesis_records_free(&r);
}
END_TEST

START_TEST(sequence_numbers)
{
    char big[131];

    ck_assert(d2o_kinesis_seq_valid("0"));
    ck_assert(d2o_kinesis_seq_valid("9223372036854775807"));
    ck_assert(!d2o_kinesis_seq_valid(""));
    ck_assert(!d2o_kinesis_seq_valid(NULL));
    ck_assert(!d2o_kinesis_seq_valid("00"));
    ck_assert(!d2o_kinesis_seq_valid("-1"));
    ck_assert(!d2o_kinesis_seq_valid("1 "));
    memset(big, '9', 129);
    big[129] = '\0';
    ck_assert(d2o_kinesis_seq_valid(big));
    big[129] = '9';
    big[130] = '\0';
    ck_assert(!d2o_kinesis_seq_valid(big));

    ck_assert_int_lt(d2o_kinesis_seq_cmp("9", "10"), 0);
    ck_assert_int_gt(d2o_kinesis_seq_cmp("10", "9"), 0);
    ck_assert_int_eq(d2o_kinesis_seq_cmp("123", "123"), 0);
    ck_assert_int_lt(
        d2o_kinesis_seq_cmp("49590338271490256608559692538361571095921575989136588898",
                            "49590338271490256608559692538361571095921575989136588899"),
        0);
    /* bigger than 2^64 and 2^128: still ordered */
    ck_assert_int_gt(d2o_kinesis_seq_cmp("18446744073709551616", "18446744073709551615"), 0);
}
END_TEST

START_TEST(hash_midpoint)
{
    char out[48];

    ck_assert_int_eq(
        d2o_kinesis_hash_mid("0", "340282366920938463463374607431768211455", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "170141183460469231731687303715884105728");
    ck_assert_int_eq(d2o_kinesis_hash_mid("10", "11", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "11");
    ck_assert_int_eq(d2o_kinesis_hash_mid("5", "5", out, sizeof(out)), -EINVAL);
    ck_assert_int_eq(d2o_kinesis_hash_mid("x", "5", out, sizeof(out)), -EINVAL);
    ck_assert_int_eq(
        d2o_kinesis_hash_mid("0", "340282366920938463463374607431768211456", out, sizeof(out)),
        -EINVAL);
    ck_assert_int_eq(d2o_kinesis_hash_mid("0", "100000", out, 3), -EINVAL);
}
END_TEST

START_TEST(list_shards_page)
{
    static const char body[] =
        "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":{\"StartingHashKey\":"
        "\"0\",\"EndingHashKey\":\"170141183460469231731687303715884105727\"},"
        "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"1\",\"EndingSequenceNumber\":"
        "\"9223372036854775807\"}},"
        "{\"ShardId\":\"shardId-000000000002\",\"ParentShardId\":\"shardId-000000000000\","
        "\"AdjacentParentShardId\":\"shardId-000000000001\",\"HashKeyRange\":{\"StartingHashKey\":"
        "\"0\",\"EndingHashKey\":\"5\"},\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"7\"}}"
        "],\"NextToken\":\"tok\"}";
    struct d2o_kinesis_shards s;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_list_shards(S(body), &s, &err), 0);
    ck_assert_uint_eq(s.n_shards, 2);
    ck_assert_str_eq(s.shards[0].seq_end, "9223372036854775807");
    ck_assert_ptr_null(s.shards[0].parent_shard_id);
    ck_assert_ptr_null(s.shards[1].seq_end);
    ck_assert_str_eq(s.shards[1].adjacent_parent_shard_id, "shardId-000000000001");
    ck_assert_str_eq(s.next_token, "tok");
    d2o_kinesis_shards_free(&s);

    ck_assert_int_eq(d2o_kinesis_parse_list_shards(S("{\"Shards\":[]}"), &s, &err), 0);
    ck_assert_uint_eq(s.n_shards, 0);
    ck_assert_ptr_null(s.next_token);
    ck_assert_int_eq(
        d2o_kinesis_parse_list_shards(S("{\"Shards\":[{\"ShardId\":\"a\"}]}"), &s, &err),
        D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "Shards[0]: HashKeyRange is missing"));
    ck_assert_uint_eq(s.n_shards, 0);
}
END_TEST

START_TEST(describe_and_summary)
{
    static const char desc[] =
        "{\"StreamDescription\":{\"StreamStatus\":\"ACTIVE\",\"HasMoreShards\":false,\"Shards\":"
        "[{\"ShardId\":\"s0\",\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"9\"},"
        "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"0\"}}]}}";
    static const char sum[] =
        "{\"StreamDescriptionSummary\":{\"StreamName\":\"s\",\"StreamARN\":\"arn:aws:kinesis:x\","
        "\"StreamStatus\":\"CREATING\",\"OpenShardCount\":3,\"RetentionPeriodHours\":24,"
        "\"EncryptionType\":\"NONE\"}}";
    struct d2o_kinesis_shards s;
    struct d2o_kinesis_summary m;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_describe_stream(S(desc), &s, &err), 0);
    ck_assert_str_eq(s.stream_status, "ACTIVE");
    ck_assert_uint_eq(s.n_shards, 1);
    d2o_kinesis_shards_free(&s);
    ck_assert_int_eq(d2o_kinesis_parse_summary(S(sum), &m, &err), 0);
    ck_assert_str_eq(m.stream_status, "CREATING");
    ck_assert_int_eq(m.open_shard_count, 3);
    ck_assert_int_eq(m.retention_hours, 24);
    ck_assert_str_eq(m.encryption_type, "NONE");
    d2o_kinesis_summary_free(&m);
    ck_assert_int_eq(d2o_kinesis_parse_summary(S("{\"StreamDescriptionSummary\":{}}"), &m, &err),
                     D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "StreamName is missing"));
}
END_TEST

START_TEST(shard_iterator_answers)
{
    struct d2o_kinesis_err err;
    char *it = NULL;

    ck_assert_int_eq(d2o_kinesis_parse_shard_iterator(S("{\"ShardIterator\":\"abc\"}"), &it, &err),
                     0);
    ck_assert_str_eq(it, "abc");
    free(it);
    /* No iterator (null or empty) is an answer, not an error: the shard is over. */
    ck_assert_int_eq(d2o_kinesis_parse_shard_iterator(S("{\"ShardIterator\":null}"), &it, &err), 0);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(d2o_kinesis_parse_shard_iterator(S("{\"ShardIterator\":\"\"}"), &it, &err), 0);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(d2o_kinesis_parse_shard_iterator(S("{}"), &it, &err), D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "ShardIterator is missing"));
    ck_assert_ptr_null(it);
}
END_TEST

START_TEST(put_records_partial_failure)
{
    static const char body[] =
        "{\"FailedRecordCount\":1,\"Records\":[{\"SequenceNumber\":\"11\",\"ShardId\":\"s0\"},"
        "{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"slow\"}]}";
    static const char liar[] =
        "{\"FailedRecordCount\":2,\"Records\":[{\"SequenceNumber\":\"11\",\"ShardId\":\"s0\"}]}";
    struct d2o_kinesis_put_result p;
    struct d2o_kinesis_err err;

    ck_assert_int_eq(d2o_kinesis_parse_put_records(S(body), &p, &err), 0);
    ck_assert_uint_eq(p.n_items, 2);
    ck_assert_uint_eq(p.failed_count, 1);
    ck_assert_str_eq(p.items[0].sequence_number, "11");
    ck_assert_ptr_null(p.items[0].error_code);
    ck_assert_str_eq(p.items[1].error_code, "ProvisionedThroughputExceededException");
    ck_assert_ptr_null(p.items[1].sequence_number);
    d2o_kinesis_put_result_free(&p);
    ck_assert_int_eq(d2o_kinesis_parse_put_records(S(liar), &p, &err), D2O_KINESIS_E_FAILED);
    ck_assert_ptr_nonnull(strstr(err.message, "FailedRecordCount 2"));
}
END_TEST

START_TEST(error_bodies)
{
    struct d2o_kinesis_err err;

    d2o_kinesis_parse_error(
        400, NULL, S("{\"__type\":\"ExpiredIteratorException\",\"message\":\"old\"}"), &err);
    ck_assert_int_eq(err.action, D2O_ACT_REFRESH_ITERATOR);
    ck_assert_str_eq(err.code, "ExpiredIteratorException");
    ck_assert_ptr_nonnull(strstr(err.message, "old"));

    /* the header wins over the body, and its prefix/suffix go */
    d2o_kinesis_parse_error(400, "ResourceNotFoundException:http://x",
                            S("{\"__type\":\"x#ThrottlingException\",\"Message\":\"Stream s not "
                              "found\"}"),
                            &err);
    ck_assert_int_eq(err.action, D2O_ACT_PERMANENT);
    ck_assert_str_eq(err.code, "ResourceNotFoundException");
    ck_assert_ptr_nonnull(strstr(err.message, "Stream s not found"));

    d2o_kinesis_parse_error(400, NULL,
                            S("{\"__type\":\"com.amazonaws.kinesis.v20131202#"
                              "ProvisionedThroughputExceededException\"}"),
                            &err);
    ck_assert_int_eq(err.action, D2O_ACT_THROTTLE);

    /* kinesis-mock: 500 with an empty body */
    d2o_kinesis_parse_error(500, NULL, NULL, 0, &err);
    ck_assert_int_eq(err.action, D2O_ACT_RETRY);
    ck_assert_str_eq(err.code, "");
    ck_assert_ptr_nonnull(strstr(err.message, "HTTP 500"));

    d2o_kinesis_parse_error(403, NULL, S("<html>forbidden</html>"), &err);
    ck_assert_int_eq(err.action, D2O_ACT_PERMANENT);
    ck_assert_ptr_nonnull(strstr(err.message, "forbidden"));
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("kinesis_parse");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, get_records_full);
    tcase_add_test(tc, get_records_shard_end_with_children);
    tcase_add_loop_test(tc, get_records_malformed, 0, (int)D2O_ARRAY_SIZE(bad_records));
    tcase_add_test(tc, get_records_not_nul_terminated);
    tcase_add_test(tc, get_records_members_in_any_order);
    tcase_add_test(tc, get_records_deep_unknown_members);
    tcase_add_test(tc, get_records_escapes);
    tcase_add_test(tc, get_records_huge_numbers);
    tcase_add_test(tc, get_records_every_truncation_refused);
    tcase_add_test(tc, get_records_errors_rank_as_before);
    tcase_add_test(tc, sequence_numbers);
    tcase_add_test(tc, hash_midpoint);
    tcase_add_test(tc, list_shards_page);
    tcase_add_test(tc, describe_and_summary);
    tcase_add_test(tc, shard_iterator_answers);
    tcase_add_test(tc, put_records_partial_failure);
    tcase_add_test(tc, error_bodies);
    suite_add_tcase(s, tc);
    return s;
}
