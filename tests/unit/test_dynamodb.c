/* DynamoDB client: request bodies, answer parsers and error classification (no network). */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/dynamodb.h"
#include "d2o/util.h"
#include "d2o_test.h"

#define S(lit) (lit), (sizeof(lit) - 1)

START_TEST(describe_table_composite)
{
    static const char body[] =
        "{\"Table\":{\"AttributeDefinitions\":[{\"AttributeName\":\"sk\",\"AttributeType\":\"N\"},"
        "{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"}],\"TableName\":\"orders\","
        "\"KeySchema\":[{\"AttributeName\":\"sk\",\"KeyType\":\"RANGE\"},"
        "{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"}],\"TableStatus\":\"ACTIVE\","
        "\"ItemCount\":1234,\"TableSizeBytes\":99999,"
        "\"ProvisionedThroughput\":{\"ReadCapacityUnits\":50,\"WriteCapacityUnits\":5},"
        "\"StreamSpecification\":{\"StreamEnabled\":true,\"StreamViewType\":\"NEW_IMAGE\"},"
        "\"LatestStreamArn\":\"arn:aws:dynamodb:x:1:table/orders/stream/1\"}}";
    struct d2o_ddb_table t;
    struct d2o_ddb_err err;

    ck_assert_int_eq(d2o_ddb_parse_describe_table(S(body), &t, &err), 0);
    ck_assert_str_eq(t.name, "orders");
    ck_assert_str_eq(t.status, "ACTIVE");
    /* the HASH key comes from KeyType, not from the order of KeySchema */
    ck_assert_str_eq(t.hash_key, "pk");
    ck_assert_str_eq(t.range_key, "sk");
    ck_assert_int_eq(t.hash_type, 'S');
    ck_assert_int_eq(t.range_type, 'N');
    ck_assert_int_eq(t.item_count, 1234);
    ck_assert_int_eq(t.size_bytes, 99999);
    ck_assert_int_eq(t.read_capacity, 50);
    ck_assert(t.stream_enabled);
    ck_assert_str_eq(t.stream_view_type, "NEW_IMAGE");
    ck_assert_str_eq(t.latest_stream_arn, "arn:aws:dynamodb:x:1:table/orders/stream/1");
    d2o_ddb_table_free(&t);
}
END_TEST

START_TEST(describe_table_on_demand_hash_only)
{
    static const char body[] =
        "{\"Table\":{\"TableName\":\"books\",\"KeySchema\":[{\"AttributeName\":\"book_id\","
        "\"KeyType\":\"HASH\"}],\"BillingModeSummary\":{\"BillingMode\":\"PAY_PER_REQUEST\"},"
        "\"ProvisionedThroughput\":{\"ReadCapacityUnits\":0}}}";
    struct d2o_ddb_table t;
    struct d2o_ddb_err err;

    ck_assert_int_eq(d2o_ddb_parse_describe_table(S(body), &t, &err), 0);
    ck_assert_str_eq(t.hash_key, "book_id");
    ck_assert_ptr_null(t.range_key);
    ck_assert_int_eq(t.hash_type, 0);
    ck_assert_str_eq(t.billing_mode, "PAY_PER_REQUEST");
    ck_assert_int_eq(t.read_capacity, 0);
    ck_assert(!t.stream_enabled);
    d2o_ddb_table_free(&t);
}
END_TEST

static const struct {
    const char *body;
    const char *message;
} bad_tables[] = {
    {"", "empty body"},
    {"[1]", "not a JSON object"},
    {"{\"Table\":{\"TableName\":\"t\"} trailing", "not a JSON object"},
    {"{}", "Table is missing"},
    {"{\"Table\":{\"KeySchema\":[]}}", "TableName is missing"},
    {"{\"Table\":{\"TableName\":\"t\"}}", "KeySchema is missing"},
    {"{\"Table\":{\"TableName\":\"t\",\"KeySchema\":[]}}", "has 0 elements"},
    {"{\"Table\":{\"TableName\":\"t\",\"KeySchema\":[{\"AttributeName\":\"a\",\"KeyType\":"
     "\"RANGE\"}]}}",
     "has no HASH key"},
    {"{\"Table\":{\"TableName\":\"t\",\"KeySchema\":[{\"AttributeName\":\"a\",\"KeyType\":"
     "\"HASH\"},{\"AttributeName\":\"b\",\"KeyType\":\"HASH\"}]}}",
     "a second key of the same type"},
    {"{\"Table\":{\"TableName\":\"t\",\"KeySchema\":[{\"AttributeName\":\"a\",\"KeyType\":"
     "\"SORT\"}]}}",
     "neither HASH nor RANGE"},
    {"{\"Table\":{\"TableName\":\"t\",\"KeySchema\":[{\"KeyType\":\"HASH\"}]}}",
     "AttributeName is missing"},
    {"{\"Table\":{\"TableName\":\"t\",\"KeySchema\":[{\"AttributeName\":\"a\",\"KeyType\":"
     "\"HASH\"}],\"ItemCount\":-1}}",
     "ItemCount is not a non-negative integer"},
    {"{\"Table\":{\"TableName\":7}}", "TableName is not a string"},
};

START_TEST(describe_table_malformed)
{
    struct d2o_ddb_table t;
    struct d2o_ddb_err err;
    const char *b = bad_tables[_i].body;

    ck_assert_int_eq(d2o_ddb_parse_describe_table(b, strlen(b), &t, &err), D2O_DDB_E_FAILED);
    ck_assert_str_eq(err.code, "MalformedResponse");
    ck_assert_int_eq(err.action, D2O_ACT_RETRY);
    ck_assert_msg(strstr(err.message, bad_tables[_i].message), "'%s' lacks '%s'", err.message,
                  bad_tables[_i].message);
    ck_assert_ptr_null(t.name);
}
END_TEST

START_TEST(scan_page)
{
    static const char body[] = "{\"Items\":[{\"pk\":{\"S\":\"a\"},\"n\":{\"N\":"
                               "\"12345678901234567890123456789012345678\"}},"
                               "{\"pk\":{\"S\":\"b\"}}],\"Count\":2,\"ScannedCount\":3,"
                               "\"LastEvaluatedKey\":{\"pk\":{\"S\":\"b\"}},"
                               "\"ConsumedCapacity\":{\"TableName\":\"t\",\"CapacityUnits\":2.5}}";
    struct d2o_ddb_scan_page p;
    struct d2o_ddb_err err;
    json_object *n;

    ck_assert_int_eq(d2o_ddb_parse_scan(S(body), &p, &err), 0);
    ck_assert_uint_eq(p.n_items, 2);
    ck_assert_int_eq(p.scanned_count, 3);
    ck_assert_str_eq(p.last_key, "{\"pk\":{\"S\":\"b\"}}");
    ck_assert(p.consumed_rcu > 2.49 && p.consumed_rcu < 2.51);
    /* AttributeValues stay as DynamoDB sent them: numbers are strings, never doubles */
    ck_assert(json_object_object_get_ex(json_object_array_get_idx(p.items, 0), "n", &n));
    ck_assert_str_eq(json_object_get_string(json_object_object_get(n, "N")),
                     "12345678901234567890123456789012345678");
    d2o_ddb_scan_page_free(&p);

    /* the segment's last page has no LastEvaluatedKey */
    ck_assert_int_eq(
        d2o_ddb_parse_scan(S("{\"Items\":[],\"Count\":0,\"ScannedCount\":0}"), &p, &err), 0);
    ck_assert_uint_eq(p.n_items, 0);
    ck_assert_ptr_null(p.last_key);
    d2o_ddb_scan_page_free(&p);
}
END_TEST

static const struct {
    const char *body;
    const char *message;
} bad_scans[] = {
    {"{\"Count\":0}", "Items is missing"},
    {"{\"Items\":{}}", "Items is not a array"},
    {"{\"Items\":[1]}", "Items[0] is not an object"},
    {"{\"Items\":[],\"LastEvaluatedKey\":{}}", "LastEvaluatedKey is empty"},
    {"{\"Items\":[],\"LastEvaluatedKey\":\"k\"}", "LastEvaluatedKey is not an object"},
    {"{\"Items\":[],\"ConsumedCapacity\":{\"CapacityUnits\":-1}}", "out of range"},
    {"{\"Items\":[]", "not a JSON object"},
};

START_TEST(scan_malformed)
{
    struct d2o_ddb_scan_page p;
    struct d2o_ddb_err err;
    const char *b = bad_scans[_i].body;

    ck_assert_int_eq(d2o_ddb_parse_scan(b, strlen(b), &p, &err), D2O_DDB_E_FAILED);
    ck_assert_msg(strstr(err.message, bad_scans[_i].message), "'%s' lacks '%s'", err.message,
                  bad_scans[_i].message);
    ck_assert_ptr_null(p.root);
}
END_TEST

START_TEST(scan_body)
{
    struct d2o_ddb_scan_req q = {"t\"1", 2, 8, "{\"pk\":{\"S\":\"x\"}}", 100, true};
    struct d2o_buf b = D2O_BUF_INIT;

    ck_assert_int_eq(d2o_ddb_format_scan(&b, &q), 0);
    ck_assert_str_eq(b.data, "{\"TableName\":\"t\\\"1\",\"Segment\":2,\"TotalSegments\":8,"
                             "\"Limit\":100,\"ConsistentRead\":true,"
                             "\"ExclusiveStartKey\":{\"pk\":{\"S\":\"x\"}},"
                             "\"ReturnConsumedCapacity\":\"TOTAL\"}");
    d2o_buf_reset(&b);
    q.segment = 8; /* outside 0..7 */
    ck_assert_int_eq(d2o_ddb_format_scan(&b, &q), -EINVAL);
    q.segment = 0;
    q.exclusive_start_key = "[1]";
    ck_assert_int_eq(d2o_ddb_format_scan(&b, &q), -EINVAL);
    q.exclusive_start_key = NULL;
    q.table = "";
    ck_assert_int_eq(d2o_ddb_format_scan(&b, &q), -EINVAL);
    q.table = "t";
    q.total_segments = 0;
    q.limit = 0;
    q.consistent_read = false;
    ck_assert_int_eq(d2o_ddb_format_scan(&b, &q), 0);
    ck_assert_str_eq(b.data, "{\"TableName\":\"t\",\"ReturnConsumedCapacity\":\"TOTAL\"}");
    d2o_buf_free(&b);
}
END_TEST

START_TEST(errors_classified)
{
    struct d2o_ddb_err err;

    d2o_ddb_parse_error(
        400, NULL,
        S("{\"__type\":\"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException\","
          "\"message\":\"The level of configured provisioned throughput for the table was "
          "exceeded.\"}"),
        &err);
    ck_assert_str_eq(err.code, "ProvisionedThroughputExceededException");
    ck_assert_int_eq(err.action, D2O_ACT_THROTTLE);
    ck_assert(strstr(err.message, "provisioned throughput"));
    /* on-demand tables answer RequestLimitExceeded or ThrottlingException */
    d2o_ddb_parse_error(400, NULL, S("{\"__type\":\"x#RequestLimitExceeded\"}"), &err);
    ck_assert_int_eq(err.action, D2O_ACT_THROTTLE);
    d2o_ddb_parse_error(400, "ThrottlingException", S(""), &err);
    ck_assert_int_eq(err.action, D2O_ACT_THROTTLE);
    d2o_ddb_parse_error(400, NULL,
                        S("{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                          "ResourceNotFoundException\",\"message\":\"Requested resource not "
                          "found\"}"),
                        &err);
    ck_assert_int_eq(err.action, D2O_ACT_PERMANENT);
    d2o_ddb_parse_error(500, NULL, S("{\"__type\":\"InternalServerError\"}"), &err);
    ck_assert_int_eq(err.action, D2O_ACT_RETRY);
    d2o_ddb_parse_error(400, NULL, S("{\"__type\":\"x#ExpiredTokenException\"}"), &err);
    ck_assert_int_eq(err.action, D2O_ACT_REFRESH_CREDS);
}
END_TEST

START_TEST(ttl_description)
{
    struct d2o_ddb_ttl t;
    struct d2o_ddb_err err;

    ck_assert_int_eq(d2o_ddb_parse_ttl(S("{\"TimeToLiveDescription\":{\"TimeToLiveStatus\":"
                                         "\"ENABLED\",\"AttributeName\":\"expires\"}}"),
                                       &t, &err),
                     0);
    ck_assert_str_eq(t.attribute, "expires");
    d2o_ddb_ttl_free(&t);
    /* a disabled TTL has no attribute even when one is named */
    ck_assert_int_eq(d2o_ddb_parse_ttl(S("{\"TimeToLiveDescription\":{\"TimeToLiveStatus\":"
                                         "\"DISABLED\",\"AttributeName\":\"expires\"}}"),
                                       &t, &err),
                     0);
    ck_assert_ptr_null(t.attribute);
    d2o_ddb_ttl_free(&t);
    ck_assert_int_eq(d2o_ddb_parse_ttl(S("{\"TimeToLiveDescription\":{}}"), &t, &err),
                     D2O_DDB_E_FAILED);
    ck_assert(strstr(err.message, "TimeToLiveStatus is missing"));
}
END_TEST

START_TEST(item_key)
{
    json_object *item = json_tokener_parse(
        "{\"title\":{\"S\":\"x\"},\"sk\":{\"N\":\"10\"},\"pk\":{\"S\":\"a/b\"}}");
    struct d2o_buf b = D2O_BUF_INIT;
    char err[128];

    ck_assert_int_eq(d2o_ddb_item_key(item, "pk", "sk", &b, err, sizeof(err)), 0);
    ck_assert_str_eq(b.data, "{\"pk\":{\"S\":\"a/b\"},\"sk\":{\"N\":\"10\"}}");
    d2o_buf_reset(&b);
    ck_assert_int_eq(d2o_ddb_item_key(item, "pk", NULL, &b, err, sizeof(err)), 0);
    ck_assert_str_eq(b.data, "{\"pk\":{\"S\":\"a/b\"}}");
    d2o_buf_reset(&b);
    ck_assert_int_eq(d2o_ddb_item_key(item, "pk", "missing", &b, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "the item has no key attribute 'missing'");
    ck_assert_uint_eq(b.len, 0); /* nothing half-written */
    d2o_buf_free(&b);
    json_object_put(item);
}
END_TEST

/* An item nested as deep as DynamoDB allows (32 levels) is read like any other. */
START_TEST(scan_page_deepest_item)
{
    struct d2o_ddb_scan_page p;
    struct d2o_ddb_err err;
    char body[1024];
    size_t n = 0;
    int i;

    n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"Items\":[{\"pk\":{\"S\":\"a\"},\"d\":");
    for (i = 0; i < 31; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"M\":{\"m\":");
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"N\":\"1\"}");
    for (i = 0; i < 31; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, "}}");
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "}],\"Count\":1,\"ScannedCount\":1}");
    ck_assert_uint_lt(n, sizeof(body));
    ck_assert_int_eq(d2o_ddb_parse_scan(body, n, &p, &err), 0);
    ck_assert_uint_eq(p.n_items, 1);
    d2o_ddb_scan_page_free(&p);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("dynamodb");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, describe_table_composite);
    tcase_add_test(tc, scan_page_deepest_item);
    tcase_add_test(tc, describe_table_on_demand_hash_only);
    tcase_add_loop_test(tc, describe_table_malformed, 0, (int)D2O_ARRAY_SIZE(bad_tables));
    tcase_add_test(tc, scan_page);
    tcase_add_loop_test(tc, scan_malformed, 0, (int)D2O_ARRAY_SIZE(bad_scans));
    tcase_add_test(tc, scan_body);
    tcase_add_test(tc, errors_classified);
    tcase_add_test(tc, ttl_description);
    tcase_add_test(tc, item_key);
    suite_add_tcase(s, tc);
    return s;
}
