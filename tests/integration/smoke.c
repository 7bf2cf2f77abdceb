/*
 * Smoke test: every service ddb2os talks to is real and reachable through the project's own code
 * paths (the HTTP layer, the SigV4 signer, the Kinesis client, libpq).
 *
 * Needs the variables printed by `scripts/services env`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libpq-fe.h>

#include "d2o/http.h"
#include "d2o/kinesis.h"
#include "d2o/sigv4.h"
#include "d2o_test.h"

static const struct d2o_aws_creds test_creds = {"AKIDSMOKETEST", "smoke-test-secret", NULL};

static const char *need_env(const char *name)
{
    const char *v = getenv(name);

    if (!v || !*v) {
        ck_abort_msg("%s is not set: run 'eval \"$(scripts/services env)\"' after "
                     "'scripts/services start'",
                     name);
    }
    return v;
}

static struct d2o_http *new_http(void)
{
    char err[256];
    struct d2o_http *h = d2o_http_new(NULL, err, sizeof(err));

    ck_assert_msg(h != NULL, "d2o_http_new: %s", err);
    return h;
}

static struct json_object *request_json(struct d2o_http *h, const char *method, const char *url,
                                        const char *content_type, const char *body, long *status)
{
    struct d2o_http_header hdr = {"Content-Type", content_type};
    struct d2o_http_request req = {0};
    struct d2o_http_response resp = {0};
    struct json_object *o;

    req.method = method;
    req.url = url;
    req.headers = content_type ? &hdr : NULL;
    req.n_headers = content_type ? 1 : 0;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    ck_assert_int_eq(d2o_http_request_sync(h, &req, &resp), 0);
    ck_assert_msg(resp.curl_code == CURLE_OK, "%s %s: %s", method, url, resp.errstr);
    *status = resp.status;
    o = json_tokener_parse(resp.body.data ? resp.body.data : "");
    ck_assert_msg(o != NULL, "%s %s: response is not JSON: %.200s", method, url,
                  resp.body.data ? resp.body.data : "");
    d2o_http_response_free(&resp);
    return o;
}

static const char *jpath(struct json_object *o, const char *a, const char *b)
{
    struct json_object *v = NULL;

    if (!json_object_object_get_ex(o, a, &v)) {
        return NULL;
    }
    if (b && !json_object_object_get_ex(v, b, &v)) {
        return NULL;
    }
    return json_object_get_string(v);
}

START_TEST(opensearch_is_real_2_19_and_external_versions_conflict)
{
    const char *base = need_env("D2O_TEST_OPENSEARCH");
    struct d2o_http *h = new_http();
    struct json_object *root, *bulk, *items, *item, *op, *st;
    char url[512], index[64], body[1024];
    long status = 0;

    snprintf(url, sizeof(url), "%s/", base);
    root = request_json(h, "GET", url, NULL, NULL, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(jpath(root, "version", "distribution"), "opensearch");
    ck_assert_msg(strncmp(jpath(root, "version", "number"), "2.19.", 5) == 0, "version %s",
                  jpath(root, "version", "number"));
    json_object_put(root);

    /* A higher external version lands; a lower one for the same id answers 409. */
    snprintf(index, sizeof(index), "smoke-%d", (int)getpid());
    snprintf(body, sizeof(body),
             "{\"index\":{\"_index\":\"%s\",\"_id\":\"b-1\",\"version\":20,"
             "\"version_type\":\"external\"}}\n{\"title\":\"new\"}\n"
             "{\"index\":{\"_index\":\"%s\",\"_id\":\"b-1\",\"version\":10,"
             "\"version_type\":\"external\"}}\n{\"title\":\"old\"}\n",
             index, index);
    snprintf(url, sizeof(url), "%s/_bulk?refresh=true", base);
    bulk = request_json(h, "POST", url, "application/x-ndjson", body, &status);
    ck_assert_int_eq(status, 200);
    ck_assert(json_object_object_get_ex(bulk, "items", &items));
    ck_assert_int_eq(json_object_array_length(items), 2);
    item = json_object_array_get_idx(items, 0);
    ck_assert(json_object_object_get_ex(item, "index", &op));
    ck_assert(json_object_object_get_ex(op, "status", &st));
    ck_assert_int_eq(json_object_get_int(st), 201);
    item = json_object_array_get_idx(items, 1);
    ck_assert(json_object_object_get_ex(item, "index", &op));
    ck_assert(json_object_object_get_ex(op, "status", &st));
    ck_assert_int_eq(json_object_get_int(st), 409);
    json_object_put(bulk);

    snprintf(url, sizeof(url), "%s/%s/_doc/b-1", base, index);
    root = request_json(h, "GET", url, NULL, NULL, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(jpath(root, "_source", "title"), "new");
    json_object_put(root);

    snprintf(url, sizeof(url), "%s/%s", base, index);
    json_object_put(request_json(h, "DELETE", url, NULL, NULL, &status));
    d2o_http_free(h);
}
END_TEST

START_TEST(postgresql_answers_version)
{
    PGconn *c = PQconnectdb(need_env("D2O_TEST_PG"));
    PGresult *r;

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    r = PQexec(c, "SELECT version()");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_msg(strncmp(PQgetvalue(r, 0, 0), "PostgreSQL 15", 13) == 0, "%s",
                  PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
}
END_TEST

static void kinesis_create_and_list(const char *env_name)
{
    struct d2o_http *h = new_http();
    struct d2o_kinesis *k;
    struct d2o_kinesis_err kerr;
    struct d2o_kinesis_shards shards = {0};
    char err[256], stream[64];

    k = d2o_kinesis_new_endpoint(h, "us-east-1", need_env(env_name), &test_creds, err, sizeof(err));
    ck_assert_msg(k != NULL, "%s", err);
    snprintf(stream, sizeof(stream), "smoke-%d", (int)getpid());
    memset(&kerr, 0, sizeof(kerr));
    ck_assert_msg(d2o_kinesis_create_stream(k, stream, 2, &kerr) == 0, "CreateStream: %s",
                  kerr.message);
    ck_assert_msg(d2o_kinesis_wait_active(k, stream, 30000, &kerr) == 0, "wait: %s", kerr.message);
    ck_assert_msg(
        d2o_kinesis_list_all_shards(k, stream, D2O_SHARD_FILTER_NONE, 0, &shards, &kerr) == 0,
        "ListShards: %s", kerr.message);
    ck_assert_uint_eq(shards.n_shards, 2);
    ck_assert_msg(strncmp(shards.shards[0].shard_id, "shardId-", 8) == 0, "%s",
                  shards.shards[0].shard_id);
    d2o_kinesis_shards_free(&shards);
    ck_assert_msg(d2o_kinesis_delete_stream(k, stream, &kerr) == 0, "DeleteStream: %s",
                  kerr.message);
    d2o_kinesis_free(k);
    d2o_http_free(h);
}

START_TEST(kinesis_mock_creates_and_lists)
{
    kinesis_create_and_list("D2O_TEST_KINESIS_MOCK");
}
END_TEST

START_TEST(kinesalite_creates_and_lists)
{
    kinesis_create_and_list("D2O_TEST_KINESALITE");
}
END_TEST

START_TEST(dynamodb_local_lists_tables)
{
    const char *base = need_env("D2O_TEST_DYNAMODB");
    struct d2o_http *h = new_http();
    struct d2o_sigv4_signer *signer = d2o_sigv4_signer_new("us-east-1", "dynamodb");
    struct d2o_http_header hdrs[] = {
        {"Content-Type", "application/x-amz-json-1.0"},
        {"X-Amz-Target", "DynamoDB_20120810.ListTables"},
    };
    struct d2o_http_request req = {0};
    struct d2o_http_response resp = {0};
    struct json_object *o, *names;

    ck_assert_ptr_nonnull(signer);
    req.method = "POST";
    req.url = base;
    req.headers = hdrs;
    req.n_headers = 2;
    req.body = "{}";
    req.body_len = 2;
    req.signer = signer;
    req.creds = &test_creds;
    ck_assert_int_eq(d2o_http_request_sync(h, &req, &resp), 0);
    ck_assert_msg(resp.status == 200, "ListTables: HTTP %ld %s %.200s", resp.status, resp.errstr,
                  resp.body.data ? resp.body.data : "");
    o = json_tokener_parse(resp.body.data);
    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, "TableNames", &names));
    ck_assert(json_object_is_type(names, json_type_array));
    json_object_put(o);
    d2o_http_response_free(&resp);
    d2o_sigv4_signer_free(signer);
    d2o_http_free(h);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("smoke");
    TCase *tc = tcase_create("services");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, opensearch_is_real_2_19_and_external_versions_conflict);
    tcase_add_test(tc, postgresql_answers_version);
    tcase_add_test(tc, kinesis_mock_creates_and_lists);
    tcase_add_test(tc, kinesalite_creates_and_lists);
    tcase_add_test(tc, dynamodb_local_lists_tables);
    suite_add_tcase(s, tc);
    return s;
}
