/* Internal to src/backfill: the clients one backfill or verify process opens after fork(). */
#ifndef D2O_BF_INT_H
#define D2O_BF_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "d2o/bulk.h"
#include "d2o/dynamodb.h"

struct d2o_config;
struct d2o_creds;
struct d2o_sigv4_signer;

struct bf_clients {
    struct d2o_http *http;
    struct d2o_creds *creds;
    struct d2o_ddb *ddb;
    struct d2o_sigv4_signer *os_signer;
    struct d2o_bulk *sink; /* only when a done callback was given */
    PGconn *pg;            /* only when asked for */
};

/*
 * Opens the HTTP client, the credential chain, the DynamoDB client (retries until *stop, backing
 * off on throttling), optionally a bulk sink with done/done_arg and a PostgreSQL connection.
 * Returns 0 or -1 with errstr. @process any, after fork().
 */
int bf_clients_open(struct bf_clients *c, const struct d2o_config *conf, d2o_bulk_done_fn done,
                    void *done_arg, bool want_pg, const char *pg_name,
                    const volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);
void bf_clients_close(struct bf_clients *c);

/* Sends one OpenSearch request with the sink's authentication and waits (verify's searches). */
int bf_os_request(struct bf_clients *c, const struct d2o_config *conf, const char *method,
                  const char *path, const char *body, struct d2o_http_response *resp);

/*
 * DescribeTable, the key schema put into conf->key_schema when it has no entry for the table (a
 * configured one must agree with the table's), and the TTL attribute (*ttl_attr, malloc'd, NULL
 * when TTL is off). Returns 0, or 78 (key schema disagrees) / 1 with the reason printed.
 */
int bf_describe(struct bf_clients *c, struct d2o_config *conf, const char *table,
                struct d2o_ddb_table *desc, char **ttl_attr, const char *cmd);

/* hash and range key attribute names for table from conf->key_schema (after bf_describe). */
void bf_key_names(const struct d2o_config *conf, const char *table, char *hash, size_t hash_size,
                  const char **range);

/* Installs SIGTERM/SIGINT handlers that set *flag. */
void bf_on_signals(volatile sig_atomic_t *flag);

#endif
