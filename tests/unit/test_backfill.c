/* Backfill and verify helpers: scanned items as change records, versions, search answers. */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/backfill.h"
#include "d2o/conf.h"
#include "d2o/document.h"
#include "d2o/record.h"
#include "d2o/util.h"
#include "d2o_test.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* A scanned item takes the stream's path: record -> parse -> document, at the given version. */
START_TEST(item_becomes_the_streams_document)
{
    json_object *item =
        json_tokener_parse("{\"pk\":{\"S\":\"a|b\"},\"sk\":{\"N\":\"1E+3\"},\"n\":{\"N\":\"0.50\"},"
                           "\"tags\":{\"SS\":[\"x\",\"y\"]},\"b\":{\"B\":\"AQI=\"},\"m\":{\"M\":{"
                           "\"k\":{\"NULL\":true}}},"
                           "\"l\":{\"L\":[{\"BOOL\":false},{\"NS\":[\"1\",\"2\"]}]}}");
    struct d2o_buf rec_text = D2O_BUF_INIT;
    struct d2o_config conf;
    struct d2o_record rec;
    struct d2o_doc_op op;
    char err[256];

    ck_assert_ptr_nonnull(item);
    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    ck_assert_int_eq(d2o_conf_set(&conf, "key_schema", "orders=pk:sk", "test", err, sizeof(err)),
                     0);
    ck_assert_int_eq(d2o_ddb_item_record("orders", item, "pk", "sk", 1700000000000000LL, &rec_text,
                                         err, sizeof(err)),
                     0);
    ck_assert_int_eq(d2o_record_parse(rec_text.data, rec_text.len, &rec, err, sizeof(err)), 0);
    ck_assert_int_eq(rec.event, D2O_EVENT_INSERT);
    ck_assert_str_eq(rec.table, "orders");
    ck_assert_int_eq(d2o_doc_build_at(&rec, &conf, 1700000000000000LL, &op, err, sizeof(err)), 0);
    ck_assert_str_eq(op.id, "a\\|b|1000");
    ck_assert_int_eq(op.version, 1700000000000000LL);
    ck_assert_str_eq(op.ndjson.data,
                     "{\"index\":{\"_index\":\"orders\",\"_id\":\"a\\\\|b|1000\",\"version\":"
                     "1700000000000000,\"version_type\":\"external\"}}\n"
                     "{\"pk\":\"a|b\",\"sk\":1E+3,\"n\":0.50,\"tags\":[\"x\",\"y\"],\"b\":\"AQI=\","
                     "\"m\":{\"k\":null},\"l\":[false,[1,2]]}\n");
    d2o_doc_op_free(&op);
    d2o_record_free(&rec);

    /* an item without its key attribute is refused, naming it */
    d2o_buf_reset(&rec_text);
    ck_assert_int_eq(
        d2o_ddb_item_record("orders", item, "pk", "nope", 1, &rec_text, err, sizeof(err)), -EINVAL);
    ck_assert(strstr(err, "'nope'"));
    ck_assert_uint_eq(rec_text.len, 0);
    d2o_buf_free(&rec_text);
    d2o_conf_free(&conf);
    json_object_put(item);
}
END_TEST

START_TEST(backfill_version_rule)
{
    /* DynamoDB's clock when it is behind the local one */
    ck_assert_int_eq(d2o_backfill_version(1000000, 1000500, 5000), (1000000 - 5000) * 1000LL);
    /* the local clock when it is behind DynamoDB's */
    ck_assert_int_eq(d2o_backfill_version(1000500, 1000000, 5000), (1000000 - 5000) * 1000LL);
    /* no Date header: local clock */
    ck_assert_int_eq(d2o_backfill_version(0, 2000000, 1000), 1999000000LL);
    /* never below 1 */
    ck_assert_int_eq(d2o_backfill_version(0, 10, 5000), 1);
    ck_assert_int_eq(d2o_backfill_version(100, 100, -5), 100000);
}
END_TEST

START_TEST(search_answer_keeps_source_bytes)
{
    static const char body[] =
        "{\"pit_id\":\"cGl0\\u003d\",\"took\":3,\"hits\":{\"total\":{\"value\":2},\"max_score\":"
        "null,"
        "\"hits\":[{\"_index\":\"b\",\"_id\":\"a\\\\|b\",\"_version\":1700000000000001,"
        "\"_score\":null,\"_source\":{\"n\":1.50, \"s\":\"x\\\"y\",\"_source\":{\"x\":[1,{}]}},"
        "\"sort\":[\"a\\\\|b\"]},"
        "{\"_id\":\"z\",\"_version\":7,\"_source\":{},\"sort\":[\"z\"]}]}}";
    struct d2o_os_page p;
    char err[256];

    ck_assert_int_eq(d2o_os_parse_hits(S(body), &p, err, sizeof(err)), 0);
    ck_assert_uint_eq(p.n_hits, 2);
    ck_assert_str_eq(p.pit_id, "cGl0=");
    ck_assert_str_eq(p.hits[0].id, "a\\|b");
    ck_assert_int_eq(p.hits[0].version, 1700000000000001LL);
    /* the exact bytes, white space and number text included */
    ck_assert_uint_eq(p.hits[0].source_len,
                      strlen("{\"n\":1.50, \"s\":\"x\\\"y\",\"_source\":{\"x\":[1,{}]}}"));
    ck_assert_mem_eq(p.hits[0].source, "{\"n\":1.50, \"s\":\"x\\\"y\",\"_source\":{\"x\":[1,{}]}}",
                     p.hits[0].source_len);
    ck_assert_mem_eq(p.hits[0].sort, "[\"a\\\\|b\"]", p.hits[0].sort_len);
    ck_assert_str_eq(p.hits[1].id, "z");
    ck_assert_int_eq(p.hits[1].version, 7);
    ck_assert_mem_eq(p.hits[1].source, "{}", 2);
    d2o_os_page_free(&p);

    ck_assert_int_eq(d2o_os_parse_hits(S("{\"hits\":{\"hits\":[]}}"), &p, err, sizeof(err)), 0);
    ck_assert_uint_eq(p.n_hits, 0);
    ck_assert_ptr_null(p.pit_id);
    d2o_os_page_free(&p);
}
END_TEST

static const struct {
    const char *body;
    const char *message;
} bad_answers[] = {
    {"", "not valid JSON"},
    {"{\"hits\":{\"hits\":[}}", "not valid JSON"},
    {"{\"hits\":{\"hits\":[]}} x", "not valid JSON"},
    {"{\"took\":1}", "no hits.hits array"},
    {"{\"hits\":{\"hits\":[{\"_version\":1,\"_source\":{},\"sort\":[1]}]}}", "hit 0 has no _id"},
    {"{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_source\":{},\"sort\":[1]}]}}", "has no _version"},
    {"{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_version\":\"1\",\"_source\":{},\"sort\":[1]}]}}",
     "has no _version"},
    {"{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_version\":1,\"sort\":[1]}]}}", "has no _source"},
    {"{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_version\":1,\"_source\":{}}]}}", "has no sort"},
    {"{\"hits\":{\"hits\":[{\"_id\":\"a\x01\",\"_version\":1,\"_source\":{},\"sort\":[1]}]}}",
     "not valid JSON"},
    {"{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_version\":1,\"_source\":{\"x\":\"unterminated}]}}",
     "not valid JSON"},
};

START_TEST(search_answer_malformed)
{
    struct d2o_os_page p;
    char err[256];
    const char *b = bad_answers[_i].body;

    ck_assert_int_eq(d2o_os_parse_hits(b, strlen(b), &p, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, bad_answers[_i].message), "'%s' lacks '%s'", err,
                  bad_answers[_i].message);
    ck_assert_ptr_null(p.hits);
}
END_TEST

START_TEST(search_answer_depth_limit)
{
    struct d2o_buf b = D2O_BUF_INIT;
    struct d2o_os_page p;
    char err[256];
    int i;

    ck_assert_int_eq(d2o_buf_puts(&b, "{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_version\":1,"
                                      "\"sort\":[1],\"_source\":"),
                     0);
    for (i = 0; i < 1000; i++) {
        ck_assert_int_eq(d2o_buf_putc(&b, '['), 0);
    }
    for (i = 0; i < 1000; i++) {
        ck_assert_int_eq(d2o_buf_putc(&b, ']'), 0);
    }
    ck_assert_int_eq(d2o_buf_puts(&b, "}]}}"), 0);
    ck_assert_int_eq(d2o_os_parse_hits(b.data, b.len, &p, err, sizeof(err)), -EINVAL);
    d2o_buf_free(&b);
}
END_TEST

START_TEST(canonical_documents)
{
    struct d2o_buf a = D2O_BUF_INIT, b = D2O_BUF_INIT;

    /* the same item listed in other orders: attributes, set members, nested maps */
    ck_assert_int_eq(
        d2o_json_canonical(S("{\"b\":[\"y\",\"x\"],\"a\":{\"d\":1.50,\"c\":null}}"), &a), 0);
    ck_assert_int_eq(
        d2o_json_canonical(S(" { \"a\" : {\"c\":null, \"d\":1.50} , \"b\":[\"x\",\"y\"] } "), &b),
        0);
    ck_assert_str_eq(a.data, "{\"a\":{\"c\":null,\"d\":1.50},\"b\":[\"x\",\"y\"]}");
    ck_assert_str_eq(a.data, b.data);
    /* number text is kept: 1.50 and 1.5 differ, 38 digits survive */
    d2o_buf_reset(&b);
    ck_assert_int_eq(
        d2o_json_canonical(S("{\"a\":{\"c\":null,\"d\":1.5},\"b\":[\"x\",\"y\"]}"), &b), 0);
    ck_assert_str_ne(a.data, b.data);
    d2o_buf_reset(&a);
    ck_assert_int_eq(
        d2o_json_canonical(S("[12345678901234567890123456789012345678, \"a b\", []]"), &a), 0);
    ck_assert_str_eq(a.data, "[\"a b\",12345678901234567890123456789012345678,[]]");
    /* not one JSON value: nothing appended */
    d2o_buf_reset(&a);
    ck_assert_int_eq(d2o_json_canonical(S("{\"a\":1} {}"), &a), -EINVAL);
    ck_assert_int_eq(d2o_json_canonical(S("{\"a\":}"), &a), -EINVAL);
    ck_assert_int_eq(d2o_json_canonical(S("[1,"), &a), -EINVAL);
    ck_assert_uint_eq(a.len, 0);
    d2o_buf_free(&a);
    d2o_buf_free(&b);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("backfill");
    TCase *tc = tcase_create("pure");

    tcase_add_test(tc, item_becomes_the_streams_document);
    tcase_add_test(tc, backfill_version_rule);
    tcase_add_test(tc, search_answer_keeps_source_bytes);
    tcase_add_loop_test(tc, search_answer_malformed, 0, (int)D2O_ARRAY_SIZE(bad_answers));
    tcase_add_test(tc, search_answer_depth_limit);
    tcase_add_test(tc, canonical_documents);
    suite_add_tcase(s, tc);
    return s;
}
