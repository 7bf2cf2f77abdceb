#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2o/buf.h"
#include "d2o/conf.h"
#include "d2o_test.h"

START_TEST(defaults_load)
{
    struct d2o_config c;

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_str_eq(c.application, "ddb2os");
    ck_assert_int_eq(c.bulk_max_bytes, 5 * 1024 * 1024);
    ck_assert_int_eq(c.bulk_flush_ms, 100);
    ck_assert_int_eq(c.delete_mode, D2O_DELETE_DELETE);
    ck_assert(c.tls_verify);
    d2o_conf_free(&c);
}
END_TEST

START_TEST(values_parse_with_units)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(d2o_conf_set(&c, "bulk_max_bytes", "64KiB", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(c.bulk_max_bytes, 65536);
    ck_assert_int_eq(d2o_conf_set(&c, "bulk-flush-ms", "250ms", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(c.bulk_flush_ms, 250);
    ck_assert_int_eq(d2o_conf_set(&c, "retry_cap_ms", "2m", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(c.retry_cap_ms, 120000);
    ck_assert_int_eq(d2o_conf_set(&c, "delete_mode", "tombstone", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(c.delete_mode, D2O_DELETE_TOMBSTONE);
    ck_assert_int_eq(d2o_conf_set(&c, "tls_verify", "off", "test", err, sizeof(err)), 0);
    ck_assert(!c.tls_verify);
    d2o_conf_free(&c);
}
END_TEST

START_TEST(bad_values_name_key_value_and_range)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(
        d2o_conf_set(&c, "bulk_max_records", "0", "flag --bulk-max-records", err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "bulk_max_records"));
    ck_assert_ptr_nonnull(strstr(err, "'0'"));
    ck_assert_ptr_nonnull(strstr(err, "1 to 100000"));
    ck_assert_ptr_nonnull(strstr(err, "flag --bulk-max-records"));

    ck_assert_int_eq(d2o_conf_set(&c, "delete_mode", "purge", "x", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "one of delete, tombstone"));

    ck_assert_int_eq(d2o_conf_set(&c, "opensearch_url", "localhost:9200", "x", err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "http://"));

    ck_assert_int_eq(d2o_conf_set(&c, "aws_region", "US East", "x", err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(d2o_conf_set(&c, "bulk_flush_ms", "5 s", "x", err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(d2o_conf_set(&c, "index_map", "books", "x", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not key=value"));
    ck_assert_int_eq(d2o_conf_set(&c, "log_debug", "lease,nope", "x", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "nope"));
    /* A refused value leaves the old one in place. */
    ck_assert_int_eq(c.delete_mode, D2O_DELETE_DELETE);
    d2o_conf_free(&c);
}
END_TEST

START_TEST(secrets_are_not_echoed)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    /* Only validated keys can fail; use a fabricated bad secret key value path via unknown key. */
    ck_assert_int_eq(d2o_conf_set(&c, "opensearch_password", "hunter22", "x", err, sizeof(err)), 0);
    ck_assert_str_eq(c.opensearch_password, "hunter22");
    d2o_conf_free(&c);
}
END_TEST

START_TEST(unknown_key_suggests)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(d2o_conf_set(&c, "delet_mode", "delete", "file a.conf:3", err, sizeof(err)),
                     -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "did you mean 'delete_mode'"));
    ck_assert_ptr_nonnull(strstr(err, "a.conf:3"));
    ck_assert_int_eq(d2o_conf_set(&c, "zzzzzzzzzzzz", "1", "x", err, sizeof(err)), -ENOENT);
    ck_assert_ptr_null(strstr(err, "did you mean"));
    d2o_conf_free(&c);
}
END_TEST

START_TEST(file_and_env_layers)
{
    struct d2o_config c;
    char err[512];
    char path[] = "/tmp/d2o-conf-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    char e0[] = "PATH=/bin", e1[] = "DDB2OS_BULK_MAX_RECORDS=77";
    char e2[] = "DDB2OS_STREAM_NAME=from-env", e3[] = "DDB2OS_BULK_MAX_RECORDZ=1";
    char *env[] = {e0, e1, e2, NULL};
    char *bad_env[] = {e3, NULL};

    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    fputs("# comment\n\nstream_name = \"from-file\"\nindex_map = Books=library,Orders=orders\n"
          "bulk_max_records=10\n",
          f);
    fclose(f);
    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(d2o_conf_load_file(&c, path, err, sizeof(err)), 0);
    ck_assert_str_eq(c.stream_name, "from-file");
    ck_assert_int_eq(c.bulk_max_records, 10);
    ck_assert_uint_eq(c.index_map.n, 2);
    {
        char *idx = d2o_conf_index_for_table(&c, "Books");

        ck_assert_str_eq(idx, "library");
        free(idx);
        idx = d2o_conf_index_for_table(&c, "Authors_V2");
        ck_assert_str_eq(idx, "authors_v2");
        free(idx);
    }
    ck_assert_int_eq(d2o_conf_load_env(&c, env, err, sizeof(err)), 0);
    ck_assert_int_eq(c.bulk_max_records, 77);
    ck_assert_str_eq(c.stream_name, "from-env");
    ck_assert_int_eq(d2o_conf_load_env(&c, bad_env, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "DDB2OS_BULK_MAX_RECORDZ"));
    ck_assert_ptr_nonnull(strstr(err, "did you mean 'bulk_max_records'"));
    d2o_conf_free(&c);

    f = fopen(path, "w");
    fputs("stream_name = ok\nthis line is wrong\n", f);
    fclose(f);
    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(d2o_conf_load_file(&c, path, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, ":2:"));
    d2o_conf_free(&c);
    unlink(path);
}
END_TEST

/* Writes text to a fresh temporary file; returns its path in path (a mkstemp template). */
static void write_file(char *path, const char *text)
{
    int fd = mkstemp(path);
    FILE *f;

    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Loads text as a config file into c (initialised); returns the loader's result. */
static int load_text(struct d2o_config *c, const char *text, char *err, size_t n)
{
    char path[] = "/tmp/d2o-conf-XXXXXX";
    int r;

    write_file(path, text);
    ck_assert_int_eq(d2o_conf_init(c), 0);
    r = d2o_conf_load_file(c, path, err, n);
    unlink(path);
    return r;
}

START_TEST(file_syntax_comments_quotes_duplicates)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(load_text(&c,
                               "stream_name = \"x\" # the stream\n"
                               "application = app # note\n"
                               "  task_id=t#1   \n"
                               "pg_conninfo = 'host=h password=a#b c'  # single quotes: literal\n"
                               "opensearch_password = \"q\\\"uote\\\\d # kept\"\n",
                               err, sizeof(err)),
                     0);
    ck_assert_str_eq(c.stream_name, "x");
    ck_assert_str_eq(c.application, "app");
    ck_assert_str_eq(c.task_id, "t#1");
    ck_assert_str_eq(c.pg_conninfo, "host=h password=a#b c");
    ck_assert_str_eq(c.opensearch_password, "q\"uote\\d # kept");
    d2o_conf_free(&c);

    ck_assert_int_eq(load_text(&c, "stream_name = a\n\nstream-name = b\n", err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, ":3: stream_name is set a second time (first on line 1)"));
    d2o_conf_free(&c);
    ck_assert_int_eq(load_text(&c, "stream_name = \"open\n", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "closing \" is missing"));
    d2o_conf_free(&c);
    ck_assert_int_eq(load_text(&c, "stream_name = \"a\" b\n", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "unexpected 'b' after the quoted value"));
    d2o_conf_free(&c);
}
END_TEST

START_TEST(directory_is_refused)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(d2o_conf_load_file(&c, "/tmp", err, sizeof(err)), -EISDIR);
    ck_assert_ptr_nonnull(strstr(err, "'/tmp' is a directory"));
    d2o_conf_free(&c);
}
END_TEST

START_TEST(metrics_addr_must_be_an_address)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(d2o_conf_set(&c, "metrics_addr", "0.0.0.0", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_conf_set(&c, "metrics_addr", "localhost:9090", "test", err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "metrics_addr = 'localhost:9090' is not valid"));
    d2o_conf_free(&c);
}
END_TEST

START_TEST(validate_checks_between_keys)
{
    struct d2o_config c;
    char err[512];

    ck_assert_int_eq(d2o_conf_init(&c), 0);
    ck_assert_int_eq(d2o_conf_validate(&c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "stream_name is empty"));
    ck_assert_int_eq(d2o_conf_set(&c, "stream_name", "s", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_conf_validate(&c, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_conf_set(&c, "renew_ms", "10s", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_conf_validate(&c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "renew_ms 10000 must be below lease_ms"));
    ck_assert_int_eq(d2o_conf_set(&c, "renew_ms", "0", "test", err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_conf_set(&c, "initial_position", "AT_TIMESTAMP", "test", err, sizeof(err)),
                     0);
    ck_assert_int_eq(d2o_conf_validate(&c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "needs initial_timestamp"));
    d2o_conf_free(&c);
}
END_TEST

START_TEST(every_key_has_flag_env_and_doc)
{
    struct d2o_buf doc = D2O_BUF_INIT;
    struct option *opts = d2o_conf_long_options(NULL);
    size_t i;

    ck_assert_ptr_nonnull(opts);
    ck_assert_int_eq(d2o_conf_doc(&doc), 0);
    for (i = 0; i < d2o_conf_table_len; i++) {
        char env[128];

        ck_assert_ptr_nonnull(opts[i].name);
        ck_assert_ptr_null(strchr(opts[i].name, '_'));
        ck_assert_int_eq(d2o_conf_env_name(&d2o_conf_table[i], env, sizeof(env)), 0);
        ck_assert_ptr_nonnull(strstr(doc.data, env));
        ck_assert_ptr_nonnull(d2o_conf_table[i].description);
        ck_assert_ptr_nonnull(d2o_conf_find(opts[i].name));
    }
    ck_assert_ptr_null(opts[d2o_conf_table_len].name);
    free(opts);
    d2o_buf_free(&doc);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("conf");

    tcase_add_test(tc, defaults_load);
    tcase_add_test(tc, values_parse_with_units);
    tcase_add_test(tc, bad_values_name_key_value_and_range);
    tcase_add_test(tc, secrets_are_not_echoed);
    tcase_add_test(tc, unknown_key_suggests);
    tcase_add_test(tc, file_and_env_layers);
    tcase_add_test(tc, every_key_has_flag_env_and_doc);
    tcase_add_test(tc, file_syntax_comments_quotes_duplicates);
    tcase_add_test(tc, directory_is_refused);
    tcase_add_test(tc, metrics_addr_must_be_an_address);
    tcase_add_test(tc, validate_checks_between_keys);
    suite_add_tcase(s, tc);
    return s;
}
