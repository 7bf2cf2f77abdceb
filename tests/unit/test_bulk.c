/* The pure parts of the bulk sink: response parsing and per-item classification. */
#include <errno.h>
#include <string.h>

#include "d2o/bulk.h"
#include "d2o/classify.h"
#include "d2o_test.h"

/* Shaped like OpenSearch 2.19's answer with filter_path=errors,items.*.status,items.*.error. */
static const char mixed[] =
    "{\"errors\":true,\"items\":[{\"index\":{\"status\":201}},{\"index\":{\"status\":409,"
    "\"error\":{\"type\":\"version_conflict_engine_exception\",\"reason\":\"[b-1]: version "
    "conflict, current version [20] is higher or equal to the one provided [10]\",\"index\":"
    "\"books\",\"shard\":\"0\",\"index_uuid\":\"x\"}}},{\"delete\":{\"status\":404}},"
    "{\"index\":{\"status\":400,\"error\":{\"type\":\"mapper_parsing_exception\",\"reason\":"
    "\"failed to parse field [pages] of type [long] in document with id 'bad'.\",\"caused_by\":{"
    "\"type\":\"illegal_argument_exception\",\"reason\":\"For input string: \\\"many\\\"\"}}}},"
    "{\"index\":{\"status\":429,\"error\":{\"type\":\"es_rejected_execution_exception\","
    "\"reason\":\"rejected execution\"}}},{\"update\":{\"status\":500,\"error\":\"boom\"}}]}";

START_TEST(parses_every_item)
{
    struct d2o_bulk_item_status st[6];
    char err[256];

    ck_assert_int_eq(d2o_bulk_parse_response(mixed, strlen(mixed), 6, st, err, sizeof(err)), 0);
    ck_assert_int_eq(st[0].status, 201);
    ck_assert_str_eq(st[0].error_type, "");
    ck_assert_int_eq(st[1].status, 409);
    ck_assert_str_eq(st[1].error_type, "version_conflict_engine_exception");
    ck_assert_int_eq(st[2].status, 404);
    ck_assert_str_eq(st[3].error_type, "mapper_parsing_exception");
    ck_assert_ptr_nonnull(strstr(st[3].error_reason, "failed to parse field [pages]"));
    ck_assert_int_eq(st[4].status, 429);
    ck_assert_str_eq(st[5].error_reason, "boom");
}
END_TEST

START_TEST(refuses_what_is_not_a_bulk_answer)
{
    struct d2o_bulk_item_status st[3];
    char err[256];

    ck_assert_int_eq(d2o_bulk_parse_response(mixed, strlen(mixed), 3, st, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "has 6 items for 3 sent"));
    ck_assert_int_eq(d2o_bulk_parse_response("<html>", 6, 1, st, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not JSON"));
    ck_assert_int_eq(
        d2o_bulk_parse_response("{\"items\":[{\"index\":{}}]}", 24, 1, st, err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "item 0 has no status"));
    ck_assert_int_eq(d2o_bulk_parse_response("{\"errors\":false}", 16, 1, st, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no items array"));
    ck_assert_int_eq(d2o_bulk_parse_response(mixed, 40, 6, st, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(classifies_items)
{
    ck_assert_int_eq(d2o_classify_bulk_item(201, NULL, 0), D2O_ITEM_DONE);
    ck_assert_int_eq(d2o_classify_bulk_item(200, NULL, 1), D2O_ITEM_DONE);
    ck_assert_int_eq(d2o_classify_bulk_item(409, "version_conflict_engine_exception", 0),
                     D2O_ITEM_STALE);
    ck_assert_int_eq(d2o_classify_bulk_item(404, NULL, 1), D2O_ITEM_ABSENT);
    ck_assert_int_eq(d2o_classify_bulk_item(404, "index_not_found_exception", 0),
                     D2O_ITEM_PERMANENT);
    ck_assert_int_eq(d2o_classify_bulk_item(429, "es_rejected_execution_exception", 0),
                     D2O_ITEM_THROTTLE);
    ck_assert_int_eq(d2o_classify_bulk_item(503, NULL, 0), D2O_ITEM_THROTTLE);
    ck_assert_int_eq(d2o_classify_bulk_item(500, "exception", 0), D2O_ITEM_RETRY);
    ck_assert_int_eq(d2o_classify_bulk_item(0, NULL, 0), D2O_ITEM_RETRY);
    ck_assert_int_eq(d2o_classify_bulk_item(400, "mapper_parsing_exception", 0),
                     D2O_ITEM_PERMANENT);
    ck_assert_int_eq(d2o_classify_bulk_item(400, "illegal_argument_exception", 0),
                     D2O_ITEM_PERMANENT);
    ck_assert_int_eq(d2o_classify_bulk_item(403, "cluster_block_exception", 0), D2O_ITEM_PERMANENT);
    ck_assert_str_eq(d2o_item_class_name(D2O_ITEM_STALE), "stale");
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("bulk");
    TCase *tc = tcase_create("bulk");

    tcase_add_test(tc, parses_every_item);
    tcase_add_test(tc, refuses_what_is_not_a_bulk_answer);
    tcase_add_test(tc, classifies_items);
    suite_add_tcase(s, tc);
    return s;
}
