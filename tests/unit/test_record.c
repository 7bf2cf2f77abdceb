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

/* A record with a key twice is refused (JSON leaves the meaning open; OpenSearch refuses such a
 * document), naming the key. */
START_TEST(refuses_a_key_twice)
{
    static const char *const in[] = {
        "{\"eventName\":\"INSERT\",\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{"
        "\"Keys\":{\"k\":{\"S\":\"x\"}},\"ApproximateCreationDateTime\":5}}",
        "{\"eventName\":\"INSERT\",\"tableName\":\"t\",\"dynamodb\":{\"Keys\":{\"k\":{\"S\":\"x\"}}"
        ","
        "\"NewImage\":{\"k\":{\"S\":\"x\"},\"title\":{\"S\":\"a\"},\"title\":{\"S\":\"b\"}},"
        "\"ApproximateCreationDateTime\":5}}",
    };
    static const char *const want[] = {
        "record refused: the key \"eventName\" appears twice in the object that ends at byte 126",
        "record refused: the key \"title\" appears twice in the object that ends at byte 134",
    };
    struct d2o_record r;
    char err[256] = "";
    size_t i;

    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(d2o_record_parse(in[i], strlen(in[i]), &r, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, want[i]);
        ck_assert_ptr_null(r.root);
    }
}
END_TEST

/* What JSON does not allow and json-c took anyway is refused now; each case names the spot. */
static const struct {
    const char *input;
    const char *reason;
} not_json[] = {
    /* a raw control character in a string */
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\tx\"}",
     "record is not valid JSON: lexical error: invalid character inside string at byte 36"},
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"ApproximateCreationDateTime\":"
     "5.}}",
     "malformed number, a digit is required after the decimal point at byte 82"},
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"SizeBytes\":-01}}",
     "record is not valid JSON: parse error: after key and value, inside map, I expect ',' or '}'"},
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"dynamodb\":{\"SizeBytes\":NaN}}",
     "record is not valid JSON: lexical error: invalid char in json text at byte 63"},
    /* yajl's white space includes these two; JSON's does not */
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\"}\f", "unexpected '.' at byte 38"},
    {"{\"eventName\":\"REMOVE\",\v\"tableName\":\"t\"}", "unexpected '.' at byte 22"},
    /* \u escapes of half a surrogate pair: not Unicode (DynamoDB refuses such strings) */
    {"{\"eventName\":\"REMOVE\",\"tableName\":\"t\\ud800\"}",
     "record refused: \\uD800 at byte 36 is half of a UTF-16 surrogate pair without the other "
     "half"},
};

START_TEST(refuses_what_is_not_json)
{
    struct d2o_record r;
    char err[256] = "";

    ck_assert_int_eq(
        d2o_record_parse(not_json[_i].input, strlen(not_json[_i].input), &r, err, sizeof(err)),
        -EINVAL);
    ck_assert_msg(strstr(err, not_json[_i].reason) != NULL, "case %d: got '%s', want '%s'", _i, err,
                  not_json[_i].reason);
    ck_assert_ptr_null(r.root);
}
END_TEST

START_TEST(refuses_deeper_than_80_levels)
{
    static const char head[] = "{\"eventName\":\"REMOVE\",\"tableName\":\"t\",\"x\":";
    char in[512];
    struct d2o_record r;
    char err[256] = "";
    size_t n = strlen(head);
    int i;

    /* the record's object is the first level: 79 arrays inside it are allowed, 80 are not */
    memcpy(in, head, n);
    for (i = 0; i < 80; i++) {
        in[n + (size_t)i] = '[';
        in[n + 80 + (size_t)i] = ']';
    }
    in[n + 160] = '}';
    ck_assert_int_eq(d2o_record_parse(in, n + 161, &r, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "record refused: nested deeper than 80 levels at byte 121");
    in[n] = ' ';
    in[n + 159] = ' ';
    ck_assert_int_eq(d2o_record_parse(in, n + 161, &r, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "dynamodb is missing");
}
END_TEST

/* A record's strings do not depend on the records parsed before it: one cut after the first
 * half of a surrogate pair leaves nothing behind for the next one's first \u escape. */
START_TEST(no_state_from_the_record_before)
{
    static const char cut[] = "{\"eventName\":\"REMOVE\",\"tableName\":\"\\ud83d";
    static const char next[] = "{\"eventName\":\"REMOVE\",\"tableName\":\"\\u4e2d\",\"dynamodb\":{"
                               "\"Keys\":{\"k\":{\"S\":\"x\"}},\"ApproximateCreationDateTime\":5}}";
    struct d2o_record r;
    char err[256];

    ck_assert_int_eq(d2o_record_parse(cut, strlen(cut), &r, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(d2o_record_parse(next, strlen(next), &r, err, sizeof(err)), 0);
    ck_assert_str_eq(r.table, "\xe4\xb8\xad");
    d2o_record_free(&r);
}
END_TEST

/* Two records alive at once each keep their own tree. */
START_TEST(two_records_at_once)
{
    static const char a[] = "{\"eventName\":\"REMOVE\",\"tableName\":\"a\\u0041\",\"dynamodb\":{"
                            "\"Keys\":{\"k\":{\"S\":\"x\"}},\"ApproximateCreationDateTime\":5}}";
    static const char b[] = "{\"eventName\":\"INSERT\",\"tableName\":\"b\",\"dynamodb\":{"
                            "\"Keys\":{\"k\":{\"S\":\"y\"}},\"NewImage\":{\"k\":{\"S\":\"y\"}},"
                            "\"ApproximateCreationDateTime\":7}}";
    struct d2o_record ra, rb;
    char err[256];

    ck_assert_int_eq(d2o_record_parse(a, strlen(a), &ra, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_record_parse(b, strlen(b), &rb, err, sizeof(err)), 0);
    ck_assert_str_eq(ra.table, "aA");
    ck_assert_int_eq(ra.event, D2O_EVENT_REMOVE);
    ck_assert(ra.approx_creation == 5);
    ck_assert_str_eq(rb.table, "b");
    ck_assert_ptr_nonnull(rb.new_image);
    d2o_record_free(&ra);
    d2o_record_free(&rb);
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
    tcase_add_test(tc, refuses_a_key_twice);
    tcase_add_loop_test(tc, refuses_what_is_not_json, 0,
                        (int)(sizeof(not_json) / sizeof(not_json[0])));
    tcase_add_test(tc, refuses_deeper_than_80_levels);
    tcase_add_test(tc, no_state_from_the_record_before);
    tcase_add_test(tc, two_records_at_once);
    suite_add_tcase(s, tc);
    return s;
}
