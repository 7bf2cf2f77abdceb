/*
 * Prints COUNT RDS IAM authentication tokens made by d2o_rds_token for random hosts, ports, user
 * names, regions and credentials (with and without a session token), one JSON object per line,
 * for rds_token_botocore.py to compare with botocore's generate_db_auth_token at the same time.
 *
 * usage: rds_token_oracle COUNT SEED
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/buf.h"
#include "d2o/rand.h"
#include "d2o/rdsauth.h"
#include "d2o/util.h"

/* 2026-11-25T01:02:03Z, the fixed clock of the botocore side. */
#define ORACLE_NOW 1795568523

static const char *pick(const char *const *a, size_t n)
{
    return a[d2o_rand_below(n)];
}

static int json_field(struct d2o_buf *b, const char *key, const char *value)
{
    int r = d2o_buf_printf(b, ",\"%s\":", key);

    if (!value) {
        return r | d2o_buf_puts(b, "null");
    }
    return r | d2o_buf_json_str(b, value, strlen(value));
}

int main(int argc, char **argv)
{
    static const char *const hosts[] = {
        "db.cluster-abcdefghijkl.eu-west-1.rds.amazonaws.com",
        "ddb2os-prod-postgres.c9akciq32.us-east-1.rds.amazonaws.com",
        "proxy-1.proxy-xyz.ap-southeast-2.rds.amazonaws.com", "10.0.3.17", "localhost"};
    static const char *const users[] = {"ddb2os",   "ddb2os_admin", "iam user", "a+b@c.d",
                                        "ü-ser",    "x/y=z",        "O'Reilly", "100%",
                                        "under_sc", "Mixed.Case~"};
    static const char *const regions[] = {"eu-west-1", "us-east-1", "ap-southeast-2",
                                          "us-gov-west-1"};
    static const char *const tokens[] = {
        NULL, "FQoGZXIvYXdzEJr//////////wEaDAbc+def/ghi==", "IQoJb3JpZ2luX2VjEOr"};
    static const unsigned ports[] = {5432, 5433, 3306, 443, 1, 65535};
    int64_t count, seed;
    long i;

    if (argc != 3 || d2o_parse_i64(argv[1], 1, 1000000, &count) < 0 ||
        d2o_parse_i64(argv[2], 0, INT64_MAX, &seed) < 0) {
        fprintf(stderr, "usage: rds_token_oracle COUNT SEED\n");
        return 2;
    }
    d2o_rand_seed_fixed((uint64_t)seed);
    for (i = 0; i < count; i++) {
        const char *host = pick(hosts, D2O_ARRAY_SIZE(hosts)),
                   *user = pick(users, D2O_ARRAY_SIZE(users));
        const char *region = pick(regions, D2O_ARRAY_SIZE(regions));
        unsigned port = ports[d2o_rand_below(D2O_ARRAY_SIZE(ports))];
        struct d2o_aws_creds creds = {"AKIDORACLE", "oracle/secret+KEY",
                                      tokens[d2o_rand_below(D2O_ARRAY_SIZE(tokens))]};
        struct d2o_sigv4_signer *s = d2o_sigv4_signer_new(region, "rds-db");
        struct d2o_buf out = D2O_BUF_INIT;
        char err[256], *token = NULL;
        int r;

        if (!s) {
            fprintf(stderr, "rds_token_oracle: out of memory\n");
            return 1;
        }
        r = d2o_rds_token(s, &creds, host, port, user, ORACLE_NOW, &token, err, sizeof(err));
        if (r < 0) {
            fprintf(stderr, "rds_token_oracle: case %ld: %s\n", i, err);
            d2o_sigv4_signer_free(s);
            return 1;
        }
        r = d2o_buf_printf(&out, "{\"i\":%ld,\"port\":%u", i, port);
        r |= json_field(&out, "host", host);
        r |= json_field(&out, "user", user);
        r |= json_field(&out, "region", region);
        r |= json_field(&out, "session_token", creds.session_token);
        r |= json_field(&out, "token", token);
        r |= d2o_buf_puts(&out, "}\n");
        if (r == 0) {
            fputs(out.data, stdout);
        }
        d2o_buf_free(&out);
        free(token);
        d2o_sigv4_signer_free(s);
        if (r) {
            return 1;
        }
    }
    return 0;
}
