/* libFuzzer target: DynamoDB answers (DescribeTable, DescribeTimeToLive, Scan, errors) and
 * OpenSearch search answers as verify reads them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/backfill.h"
#include "d2o/dynamodb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct d2o_ddb_table t;
    struct d2o_ddb_ttl ttl;
    struct d2o_ddb_scan_page p;
    struct d2o_ddb_err err;
    struct d2o_os_page hits;
    char errstr[256];
    size_t i;

    if (d2o_ddb_parse_describe_table(body, size, &t, &err) == 0) {
        if (!t.name || !t.hash_key) {
            abort();
        }
        d2o_ddb_table_free(&t);
    } else if (err.message[0] == '\0' || t.name) {
        abort();
    }
    if (d2o_ddb_parse_ttl(body, size, &ttl, &err) == 0) {
        if (!ttl.status) {
            abort();
        }
        d2o_ddb_ttl_free(&ttl);
    }
    if (d2o_ddb_parse_scan(body, size, &p, &err) == 0) {
        if (!p.root || !p.items) {
            abort();
        }
        d2o_ddb_scan_page_free(&p);
    } else if (p.root) {
        abort();
    }
    d2o_ddb_parse_error(400, NULL, body, size, &err);
    if (d2o_os_parse_hits(body, size, &hits, errstr, sizeof(errstr)) == 0) {
        for (i = 0; i < hits.n_hits; i++) {
            /* every span lies inside the input */
            if (!hits.hits[i].id || hits.hits[i].source < body ||
                hits.hits[i].source + hits.hits[i].source_len > body + size ||
                hits.hits[i].sort < body ||
                hits.hits[i].sort + hits.hits[i].sort_len > body + size) {
                abort();
            }
        }
        d2o_os_page_free(&hits);
    } else if (hits.hits || errstr[0] == '\0') {
        abort();
    }
    {
        struct d2o_buf c1 = D2O_BUF_INIT, c2 = D2O_BUF_INIT;

        /* the canonical form is a fixed point */
        if (d2o_json_canonical(body, size, &c1) == 0) {
            if (d2o_json_canonical(c1.data, c1.len, &c2) != 0 || c1.len != c2.len ||
                memcmp(c1.data, c2.data, c1.len) != 0) {
                abort();
            }
        }
        d2o_buf_free(&c1);
        d2o_buf_free(&c2);
    }
    return 0;
}
