/* Change-record parser: what it reads, and a clear refusal naming the field for what it cannot. */
#include <errno.h>
#include <string.h>

#include "d2o/record.h"
#include "d2o_test.h"

static int parse(const char *s, struct d2o_record *r, char *err)
{
    return d2o_record_parse(s, strlen(s), r, err, 256);
}

START_TEST(reads_every_field)
{
    const char *s =
        "{\"awsRegion\":\"eu-west-1\",\"eventID\":\"e-1\",\"eventName\":\"MODIFY\","
        "\"userIdentity\":null,\"tableName\":\"books\",\"unknown\":[1,2],\"dynamodb\":{"
        "\"SizeBytes\":96,\"ApproximateCreationDateTimePrecision\":\"MICROSECOND\","
        "\"ApproximateCreationDateTime\":1732500000123456,\"Keys\":{\"book_id\":{\"S\":\"b\"}},"
        "\"NewImage\":{\"book_id\":{\"S\":\"b\"}},\"OldImage\":{\"book_id\":{\"S\":\"b\"}}},"
        "\"eventSource\":\"aws:dynamodb\"}";
    struct d2o_record r;
    char err[256];

    ck_assert_int_eq(parse(s, &r, err), 0);
    ck_assert_int_eq(r.event, D2O_EVENT_MODIFY);
    ck_assert_str_eq(r.table, "books");
    ck_assert_str_eq(r.event_id, "e-1");
    ck_assert_ptr_nonnull(r.new_image);
    ck_assert_ptr_nonnull(r.old_image);
    ck_assert(r.approx_creation == 1732500000123456LL);
    ck_assert_int_eq(r.precision, D2O_PRECISION_MICROSECOND);
    ck_assert_int_eq(r.size_bytes, 96);
    ck_assert(!r.ttl_delete);
    d2o_record_free(&r);
}
END_TEST

START_TEST(ttl_delete_and_inferred_precision)
{
    const char *ttl = "{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"userIdentity\":{"
                      "\"principalId\":\"dynamodb.amazonaws.com\",\"type\":\"Service\"},"
                      "\"dynamodb\":{\"ApproximateCreationDateTime\":1651495525900,"
                      "\"Keys\":{\"k\":{\"N\":\"1\"}},\"OldImage\":{\"k\":{\"N\":\"1\"}}}}";
    const char *us =
        "{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{"
        "\"ApproximateCreationDateTime\":1721011165891550,\"Keys\":{\"k\":{\"N\":\"1\"}}}}";
    struct d2o_record r;
    char err[256];

    ck_assert_int_eq(parse(ttl, &r, err), 0);
    ck_assert(r.ttl_delete);
    ck_assert_int_eq(r.precision, D2O_PRECISION_MILLISECOND);
    ck_assert_ptr_null(r.new_image);
    d2o_record_free(&r);
    ck_assert_int_eq(parse(us, &r, err), 0);
    ck_assert(!r.ttl_delete);
    ck_assert_int_eq(r.precision, D2O_PRECISION_MICROSECOND);
    d2o_record_free(&r);
}
END_TEST

static const struct {
    const char *input;
    const char *reason;
} bad[] = {
    {"", "not valid JSON"},
    {"{\"eventName\":\"INSERT\"", "it ends after 21 bytes, inside a value"},
    {"this is not json", "unexpected 'h' at byte 1 (bytes 0-15: 'this is not json'; the parser "
                         "says: boolean expected)"},
    {"{this", "unexpected 't' at byte 1 (bytes 0-4: '{this'"},
    {"[1]", "not a JSON object"},
    {"{} x", "not valid JSON"},
    {"{\"tableName\":\"t\"}", "eventName is missing"},
    {"{\"eventName\":\"UPSERT\",\"tableName\":\"t\"}", "eventName 'UPSERT' is not INSERT"},
    {"{\"eventName\":\"INSERT\"}", "tableName is missing"},
    {"{\"eventName\":\"INSERT\",\"tableName\":\"\"}", "tableName is empty"},
    {"{\"eventName\":\"INSERT\",\"tableName\":\"t\"}", "dynamodb is missing"},
    {"{\"eventName\":\"INSERT\",\"tableName\":\"t\",\"dynamodb\":{}}", "dynamodb.Keys is missing"},
    {"{\"eventName\":\"INSERT\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{}}}",
     "dynamodb.Keys is empty"},
    {"{\"eventName\":\"INSERT\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{\"k\":{\"S\":\"x\"}}}}",
     "dynamodb.NewImage is missing (eventName INSERT)"},
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{\"k\":{\"S\":\"x\"}}}}",
     "dynamodb.ApproximateCreationDateTime is missing"},
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{\"k\":{\"S\":\"x\"}},"
     "\"ApproximateCreationDateTime\":\"soon\"}}",
     "ApproximateCreationDateTime is not an integer"},
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{\"k\":{\"S\":\"x\"}},"
     "\"ApproximateCreationDateTime\":5,\"ApproximateCreationDateTimePrecision\":\"NANOSECOND\"}}",
     "Precision 'NANOSECOND'"},
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{\"a\":{\"S\":\"x\"},"
     "\"b\":{\"S\":\"x\"},\"c\":{\"S\":\"x\"}},\"ApproximateCreationDateTime\":5}}",
     "one or two"},
    {"{\"eventName\":\"INSERT\",\"tableName\":\"t\xff\"}", "not valid JSON"},
};

START_TEST(refuses_with_the_field)
{
    struct d2o_record r;
    char err[256] = "";

    ck_assert_int_eq(d2o_record_parse(bad[_i].input, strlen(bad[_i].input), &r, err, sizeof(err)),
                     -EINVAL);
    ck_assert_msg(strstr(err, bad[_i].reason) != NULL, "case %d: got '%s', want '%s'", _i, err,
                  bad[_i].reason);
    ck_assert_ptr_null(r.root);
}
END_TEST

START_TEST(not_nul_terminated)
{
    const char s[] = "{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{\"k\":{"
                     "\"S\":\"x\"}},\"ApproximateCreationDateTime\":5}}GARBAGE";
    struct d2o_record r;
    char err[256];

    ck_assert_int_eq(d2o_record_parse(s, sizeof(s) - 1 - 7, &r, err, sizeof(err)), 0);
    d2o_record_free(&r);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("record");
    TCase *tc = tcase_create("record");

    tcase_add_test(tc, reads_every_field);
    tcase_add_test(tc, ttl_delete_and_inferred_precision);
    tcase_add_loop_test(tc, refuses_with_the_field, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, not_nul_terminated);
    suite_add_tcase(s, tc);
    return s;
}
