/* AttributeValue images, numbers, document ids, versions, index names and bulk items. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/conf.h"
#include "d2o/document.h"
#include "d2o/jdoc.h"
#include "d2o_test.h"

/* Parses test input with room for DynamoDB's nesting (json_tokener_parse stops at 32). */
static struct json_object *parse_deep(const char *json)
{
    struct json_tokener *tok = json_tokener_new_ex(100);
    struct json_object *o = json_tokener_parse_ex(tok, json, (int)strlen(json));

    json_tokener_free(tok);
    return o;
}

/* The conversion (or, with id, the document id) of a json-c tree, copied into a document. */
static int from_json_c(struct json_object *o, struct d2o_buf *b, char *err, const char *hash,
                       const char *range, bool id)
{
    struct d2o_jdoc *doc = d2o_jdoc_copy_json_c(o);
    int r;

    ck_assert_ptr_nonnull(doc);
    r = id ? d2o_doc_id_node(d2o_jdoc_root(doc), hash, range, b, err, 256)
           : d2o_image_node_to_json(d2o_jdoc_root(doc), "NewImage", b, err, 256);
    d2o_jdoc_free(doc);
    return r;
}

static char *image(const char *json, int *rc, char *err)
{
    struct json_object *o = parse_deep(json);
    struct d2o_buf b = D2O_BUF_INIT;

    ck_assert_msg(o != NULL, "test input is not JSON: %s", json);
    *rc = from_json_c(o, &b, err, NULL, NULL, false);
    json_object_put(o);
    if (*rc < 0) {
        d2o_buf_free(&b);
        return NULL;
    }
    return d2o_buf_steal(&b);
}

static void expect_image(const char *in, const char *want)
{
    char err[256] = "";
    int rc;
    char *got = image(in, &rc, err);

    ck_assert_msg(rc == 0, "%s: %s", in, err);
    ck_assert_str_eq(got, want);
    free(got);
}

static void expect_image_error(const char *in, const char *reason)
{
    char err[256] = "";
    int rc;
    char *got = image(in, &rc, err);

    ck_assert_ptr_null(got);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_msg(strstr(err, reason) != NULL, "%s: got '%s', want '%s'", in, err, reason);
}

START_TEST(all_ten_types)
{
    expect_image("{\"s\":{\"S\":\"x\"},\"n\":{\"N\":\"42\"},\"b\":{\"B\":\"AAEC\"},"
                 "\"t\":{\"BOOL\":true},\"f\":{\"BOOL\":false},\"z\":{\"NULL\":true},"
                 "\"m\":{\"M\":{\"k\":{\"S\":\"v\"}}},\"l\":{\"L\":[{\"N\":\"1\"},{\"S\":\"2\"}]},"
                 "\"ss\":{\"SS\":[\"a\",\"b\"]},\"ns\":{\"NS\":[\"1\",\"2.5\"]},"
                 "\"bs\":{\"BS\":[\"AA==\",\"AQ==\"]}}",
                 "{\"s\":\"x\",\"n\":42,\"b\":\"AAEC\",\"t\":true,\"f\":false,\"z\":null,"
                 "\"m\":{\"k\":\"v\"},\"l\":[1,\"2\"],\"ss\":[\"a\",\"b\"],\"ns\":[1,2.5],"
                 "\"bs\":[\"AA==\",\"AQ==\"]}");
}
END_TEST

START_TEST(empties_unicode_and_escapes)
{
    expect_image("{}", "{}");
    expect_image("{\"e\":{\"S\":\"\"},\"m\":{\"M\":{}},\"l\":{\"L\":[]}}",
                 "{\"e\":\"\",\"m\":{},\"l\":[]}");
    expect_image("{\"q\\\"k\":{\"S\":\"a\\\"b\\\\c\\n\\t\\u0001\\u00e9\\u1234 \xf0\x9f\x98\x80\"}}",
                 "{\"q\\\"k\":\"a\\\"b\\\\c\\n\\t\\u0001\xc3\xa9\xe1\x88\xb4 \xf0\x9f\x98\x80\"}");
}
END_TEST

START_TEST(numbers_keep_their_text)
{
    expect_image("{\"a\":{\"N\":\"12345678901234567890123456789012345678\"},"
                 "\"b\":{\"N\":\"-1E-130\"},\"c\":{\"N\":\"9.99E+125\"},\"d\":{\"N\":\"0.1\"},"
                 "\"e\":{\"N\":\"-0.000000000000000000000000000000000001\"},\"f\":{\"N\":\"1e3\"}}",
                 "{\"a\":12345678901234567890123456789012345678,\"b\":-1E-130,\"c\":9.99E+125,"
                 "\"d\":0.1,\"e\":-0.000000000000000000000000000000000001,\"f\":1e3}");
    /* Not JSON number tokens: minimally rewritten. */
    expect_image("{\"a\":{\"N\":\"+5\"},\"b\":{\"N\":\".5\"},\"c\":{\"N\":\"5.\"},"
                 "\"d\":{\"N\":\"007\"},\"e\":{\"N\":\"-.25E2\"}}",
                 "{\"a\":5,\"b\":0.5,\"c\":5,\"d\":7,\"e\":-0.25E2}");
    expect_image_error(
        "{\"a\":{\"N\":\"123456789012345678901234567890123456789\"}}",
        "NewImage.a: N '123456789012345678901234567890123456789' has 39 significant");
    expect_image_error("{\"a\":{\"N\":\"1E-131\"}}", "outside DynamoDB's range");
    expect_image_error("{\"a\":{\"N\":\"1E+126\"}}", "outside DynamoDB's range");
    expect_image_error("{\"a\":{\"N\":\"12a\"}}", "is not a number");
    expect_image_error("{\"a\":{\"N\":\"1E\"}}", "exponent without digits");
    expect_image_error("{\"a\":{\"N\":\"\"}}", "empty number");
    expect_image_error("{\"a\":{\"NS\":[\"1\",\"x\"]}}", "NewImage.a: NS[1]: 'x' is not a number");
}
END_TEST

START_TEST(canonical_numbers)
{
    static const char *const cases[][2] = {
        {"1E+3", "1000"},   {"1000", "1000"}, {"1000.0", "1000"},   {"0001000.000", "1000"},
        {"-0", "0"},        {"0.000", "0"},   {"1.5E-3", "0.0015"}, {"-12.340", "-12.34"},
        {"1.23E1", "12.3"}, {"+7", "7"},      {".5", "0.5"},        {"5E0", "5"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct d2o_buf b = D2O_BUF_INIT;

        ck_assert_int_eq(d2o_number_canonical(cases[i][0], strlen(cases[i][0]), &b), 0);
        ck_assert_msg(strcmp(b.data, cases[i][1]) == 0, "%s -> %s, want %s", cases[i][0], b.data,
                      cases[i][1]);
        d2o_buf_free(&b);
    }
}
END_TEST

START_TEST(deepest_nesting)
{
    struct d2o_buf in = D2O_BUF_INIT, want = D2O_BUF_INIT;
    int i;

    /* 32 nested M levels are DynamoDB's limit and convert; 33 are refused with the path. */
    for (i = 0; i < 2; i++) {
        int depth = 32 + i, k;

        d2o_buf_reset(&in);
        d2o_buf_reset(&want);
        ck_assert_int_eq(d2o_buf_puts(&in, "{\"a\":"), 0);
        ck_assert_int_eq(d2o_buf_puts(&want, "{\"a\":"), 0);
        for (k = 0; k < depth; k++) {
            ck_assert_int_eq(d2o_buf_puts(&in, "{\"M\":{\"a\":"), 0);
            ck_assert_int_eq(d2o_buf_puts(&want, "{\"a\":"), 0);
        }
        ck_assert_int_eq(d2o_buf_puts(&in, "{\"S\":\"deep\"}"), 0);
        ck_assert_int_eq(d2o_buf_puts(&want, "\"deep\""), 0);
        for (k = 0; k < depth; k++) {
            ck_assert_int_eq(d2o_buf_puts(&in, "}}"), 0);
            ck_assert_int_eq(d2o_buf_puts(&want, "}"), 0);
        }
        ck_assert_int_eq(d2o_buf_puts(&in, "}"), 0);
        ck_assert_int_eq(d2o_buf_puts(&want, "}"), 0);
        if (i == 0) {
            expect_image(in.data, want.data);
        } else {
            expect_image_error(in.data, "nested deeper than DynamoDB's 32 levels");
        }
    }
    expect_image_error("{\"l\":{\"L\":[{\"L\":[{\"Q\":1}]}]}}",
                       "NewImage.l.L[0].L[0]: unknown AttributeValue type \"Q\"");
    d2o_buf_free(&in);
    d2o_buf_free(&want);
}
END_TEST

START_TEST(malformed_attribute_values)
{
    expect_image_error("{\"a\":{\"S\":\"x\",\"N\":\"1\"}}",
                       "NewImage.a: an AttributeValue has exactly one type key");
    expect_image_error("{\"a\":{\"S\":5}}", "NewImage.a: S value is not a string");
    expect_image_error("{\"a\":{\"NULL\":false}}", "NULL value is not true");
    expect_image_error("{\"a\":{\"BOOL\":\"yes\"}}", "BOOL value is not true or false");
    expect_image_error("{\"a\":{\"SS\":[]}}", "SS is empty");
    expect_image_error("{\"a\":{\"BS\":[1]}}", "BS[0] is not a string");
    expect_image_error("{\"a\":{\"M\":{\"b\":{\"M\":{\"c\":\"raw\"}}}}}",
                       "NewImage.a.M.b.M.c: is not an AttributeValue object");
    expect_image_error("{\"a\":{\"L\":{}}}", "L value is not an array");
}
END_TEST

static char *id_of(const char *keys, const char *hash, const char *range, int *rc, char *err)
{
    struct json_object *o = json_tokener_parse(keys);
    struct d2o_buf b = D2O_BUF_INIT;

    ck_assert_ptr_nonnull(o);
    *rc = from_json_c(o, &b, err, hash, range, true);
    json_object_put(o);
    return *rc == 0 ? d2o_buf_steal(&b) : (d2o_buf_free(&b), NULL);
}

START_TEST(document_ids)
{
    char err[256];
    int rc;
    char *id;

    id = id_of("{\"book_id\":{\"S\":\"b-42\"}}", NULL, NULL, &rc, err);
    ck_assert_str_eq(id, "b-42");
    free(id);
    id = id_of("{\"n\":{\"N\":\"1E+3\"}}", NULL, NULL, &rc, err);
    ck_assert_str_eq(id, "1000");
    free(id);
    id = id_of("{\"bin\":{\"B\":\"AAH/\"}}", NULL, NULL, &rc, err);
    ck_assert_str_eq(id, "AAH/");
    free(id);
    /* Composite: by name without a schema, by schema when given; | and \ escaped. */
    id = id_of("{\"sk\":{\"S\":\"x|y\"},\"pk\":{\"S\":\"a\\\\b\"}}", NULL, NULL, &rc, err);
    ck_assert_str_eq(id, "a\\\\b|x\\|y");
    free(id);
    id = id_of("{\"pk\":{\"S\":\"a\"},\"order\":{\"N\":\"10.0\"}}", "pk", "order", &rc, err);
    ck_assert_str_eq(id, "a|10");
    free(id);
    ck_assert_ptr_null(id_of("{\"pk\":{\"S\":\"a\"}}", "id", NULL, &rc, err));
    ck_assert_ptr_nonnull(strstr(err, "lacks id, the hash key attribute"));
    ck_assert_ptr_null(id_of("{\"pk\":{\"BOOL\":true}}", NULL, NULL, &rc, err));
    ck_assert_ptr_nonnull(strstr(err, "dynamodb.Keys.pk has type BOOL"));
    ck_assert_ptr_null(id_of("{\"pk\":{\"S\":\"\"}}", NULL, NULL, &rc, err));
    ck_assert_ptr_nonnull(strstr(err, "dynamodb.Keys.pk is empty"));
}
END_TEST

/* A hash key alone is the id exactly as the table holds it, whatever it contains; only the
 * parts of a composite id are escaped. */
START_TEST(hash_key_ids_are_exact)
{
    static const struct {
        const char *keys, *hash, *range, *id;
    } cases[] = {
        {"{\"book_id\":{\"S\":\"a|b\"}}", NULL, NULL, "a|b"},
        {"{\"book_id\":{\"S\":\"a\\\\b\"}}", NULL, NULL, "a\\b"},
        {"{\"book_id\":{\"S\":\"|\\\\|\"}}", "book_id", NULL, "|\\|"},
        {"{\"book_id\":{\"S\":\"x\\\\|y\"}}", NULL, NULL, "x\\|y"},
        {"{\"pk\":{\"S\":\"a|b\"},\"sk\":{\"S\":\"c\"}}", NULL, NULL, "a\\|b|c"},
        {"{\"pk\":{\"S\":\"a\"},\"sk\":{\"S\":\"\\\\\"}}", "pk", "sk", "a|\\\\"},
    };
    char err[256];
    size_t i;
    int rc;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *id = id_of(cases[i].keys, cases[i].hash, cases[i].range, &rc, err);

        ck_assert_msg(id != NULL, "case %zu: %s", i, err);
        ck_assert_msg(strcmp(id, cases[i].id) == 0, "case %zu: id '%s', want '%s'", i, id,
                      cases[i].id);
        free(id);
    }
}
END_TEST

/*
 * Versions against delivery sequences. Each case is one item: its changes are named 'A', 'B', ...
 * in the order they happened (a name seen twice is the same change delivered again), each
 * delivery says which shard it was read from (1 is the child of shard 0 after a split) and the
 * change's ApproximateCreationDateTime. Writes are applied in delivery order the way OpenSearch
 * applies external versions (only a higher version wins). want is the change the document must
 * end at, or '=' where two changes share a timestamp: the documented window, in which the
 * document ends at whichever of the tied changes was applied first.
 */
#define MS D2O_PRECISION_MILLISECOND
#define US D2O_PRECISION_MICROSECOND
#define T0 1651495525900LL /* a millisecond timestamp */

struct delivery {
    char change;
    int shard;
    int64_t ts;
    enum d2o_precision precision;
};

static const struct {
    const char *name;
    struct delivery d[6];
    size_t n;
    char want;
} version_cases[] = {
    {"re-delivery after a later change",
     {{'A', 0, T0, MS}, {'B', 0, T0 + 1, MS}, {'A', 0, T0, MS}},
     3,
     'B'},
    {"a duplicate between two changes of one millisecond",
     {{'A', 0, T0, MS}, {'B', 0, T0, MS}, {'A', 0, T0, MS}},
     3,
     '='},
    {"out of order 5, 6, 5", {{'A', 0, T0, MS}, {'C', 0, T0 + 1, MS}, {'B', 0, T0, MS}}, 3, 'C'},
    {"a split between two changes of one millisecond",
     {{'A', 0, T0, MS}, {'B', 0, T0, MS}, {'C', 1, T0, MS}},
     3,
     '='},
    {"a split between two changes, the child's a millisecond later",
     {{'A', 0, T0, MS}, {'B', 0, T0, MS}, {'C', 1, T0 + 1, MS}, {'B', 0, T0, MS}},
     4,
     'C'},
    {"a duplicate read from the child after a split",
     {{'A', 0, T0, MS}, {'B', 0, T0 + 2, MS}, {'A', 1, T0, MS}, {'C', 1, T0 + 3, MS}},
     4,
     'C'},
    {"the child's change read before the parent's",
     {{'B', 1, T0 + 1, MS}, {'A', 0, T0, MS}, {'A', 0, T0, MS}},
     3,
     'B'},
    {"microseconds: reversed, split and re-delivered",
     {{'B', 1, T0 * 1000 + 1, US},
      {'A', 0, T0 * 1000, US},
      {'B', 0, T0 * 1000 + 1, US},
      {'A', 1, T0 * 1000, US}},
     4,
     'B'},
    {"precision switched to microseconds",
     {{'B', 0, T0 * 1000 + 500, US}, {'A', 0, T0, MS}},
     2,
     'B'},
    {"precision switched back to milliseconds",
     {{'A', 0, T0 * 1000 + 500, US}, {'B', 0, T0 + 1, MS}, {'A', 0, T0 * 1000 + 500, US}},
     3,
     'B'},
};

static int64_t in_us(const struct delivery *d)
{
    return d->precision == MS ? d->ts * 1000 : d->ts;
}

START_TEST(versions_are_a_function_of_the_record)
{
    const char *name = version_cases[_i].name;
    const struct delivery *d = version_cases[_i].d;
    size_t n = version_cases[_i].n, i, j;
    int64_t v[6], current = -1;
    char doc = 0;

    for (i = 0; i < n; i++) {
        v[i] = d2o_doc_version(d[i].ts, d[i].precision);
    }
    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            size_t early = d[i].change <= d[j].change ? i : j, late = early == i ? j : i;

            if (d[i].change == d[j].change) {
                ck_assert_msg(v[i] == v[j], "%s: %c delivered again got %lld, first %lld", name,
                              d[i].change, (long long)v[j], (long long)v[i]);
            } else if (in_us(&d[late]) > in_us(&d[early])) {
                ck_assert_msg(v[late] > v[early], "%s: later change %c (%lld) not above %c (%lld)",
                              name, d[late].change, (long long)v[late], d[early].change,
                              (long long)v[early]);
            } else {
                ck_assert_msg(v[late] >= v[early], "%s: later change %c (%lld) below %c (%lld)",
                              name, d[late].change, (long long)v[late], d[early].change,
                              (long long)v[early]);
            }
        }
    }
    for (i = 0; i < n; i++) {
        if (v[i] > current) { /* OpenSearch: a write wins only with a higher version */
            current = v[i];
            doc = d[i].change;
        }
    }
    if (version_cases[_i].want == '=') {
        for (i = 0; i < n; i++) {
            ck_assert_msg(d[i].change <= doc || v[i] == current, "%s: ended at %c", name, doc);
        }
    } else {
        ck_assert_msg(doc == version_cases[_i].want, "%s: the document ended at %c, not %c", name,
                      doc, version_cases[_i].want);
    }
}
END_TEST

START_TEST(version_values)
{
    ck_assert(d2o_doc_version(1721011165891550LL, US) == 1721011165891550LL);
    ck_assert(d2o_doc_version(1651495525900LL, MS) == 1651495525900000LL);
}
END_TEST

START_TEST(index_names)
{
    char why[200];

    ck_assert(d2o_index_name_valid("books-v2", why, sizeof(why)));
    ck_assert(!d2o_index_name_valid("Books", why, sizeof(why)));
    ck_assert(!d2o_index_name_valid("_books", why, sizeof(why)));
    ck_assert(!d2o_index_name_valid("a b", why, sizeof(why)));
    ck_assert(!d2o_index_name_valid("..", why, sizeof(why)));
    ck_assert(!d2o_index_name_valid("", why, sizeof(why)));
}
END_TEST

static void build(struct d2o_config *conf, const char *rec_json, struct d2o_doc_op *op)
{
    struct d2o_record rec;
    char err[256];

    ck_assert_int_eq(d2o_record_parse(rec_json, strlen(rec_json), &rec, err, sizeof(err)), 0);
    ck_assert_msg(d2o_doc_build(&rec, conf, op, err, sizeof(err)) == 0, "%s", err);
    d2o_record_free(&rec);
}

START_TEST(bulk_items)
{
    static const char rm[] = "{\"eventName\":\"REMOVE\",\"tableName\":\"Books\",\"userIdentity\":"
                             "{\"principalId\":\"dynamodb.amazonaws.com\",\"type\":\"Service\"},"
                             "\"dynamodb\":{\"ApproximateCreationDateTime\":1651495525900,"
                             "\"Keys\":{\"id\":{\"N\":\"7\"}}}}";
    struct d2o_config conf;
    struct d2o_doc_op op;
    char err[256];

    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    build(&conf, rm, &op);
    ck_assert_int_eq(op.action, D2O_DOC_DELETE);
    ck_assert_str_eq(op.ndjson.data, "{\"delete\":{\"_index\":\"books\",\"_id\":\"7\",\"version\":"
                                     "1651495525900000,\"version_type\":\"external\"}}\n");
    d2o_doc_op_free(&op);
    ck_assert_int_eq(d2o_conf_set(&conf, "delete_mode", "tombstone", "t", err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_conf_set(&conf, "index_map", "Books=library", "t", err, sizeof(err)), 0);
    build(&conf, rm, &op);
    ck_assert_int_eq(op.action, D2O_DOC_INDEX);
    ck_assert(op.tombstone);
    ck_assert_str_eq(
        op.ndjson.data,
        "{\"index\":{\"_index\":\"library\",\"_id\":\"7\",\"version\":"
        "1651495525900000,\"version_type\":\"external\"}}\n{\"_deleted\":true,\"id\":7}\n");
    d2o_doc_op_free(&op);
    ck_assert_int_eq(d2o_conf_set(&conf, "ttl_deletes", "keep", "t", err, sizeof(err)), 0);
    build(&conf, rm, &op);
    ck_assert_int_eq(op.action, D2O_DOC_SKIP);
    ck_assert_uint_eq(op.ndjson.len, 0);
    d2o_doc_op_free(&op);
    d2o_conf_free(&conf);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("document");
    TCase *tc = tcase_create("document");

    tcase_add_test(tc, all_ten_types);
    tcase_add_test(tc, empties_unicode_and_escapes);
    tcase_add_test(tc, numbers_keep_their_text);
    tcase_add_test(tc, canonical_numbers);
    tcase_add_test(tc, deepest_nesting);
    tcase_add_test(tc, malformed_attribute_values);
    tcase_add_test(tc, document_ids);
    tcase_add_test(tc, hash_key_ids_are_exact);
    tcase_add_loop_test(tc, versions_are_a_function_of_the_record, 0,
                        (int)(sizeof(version_cases) / sizeof(version_cases[0])));
    tcase_add_test(tc, version_values);
    tcase_add_test(tc, index_names);
    tcase_add_test(tc, bulk_items);
    suite_add_tcase(s, tc);
    return s;
}
