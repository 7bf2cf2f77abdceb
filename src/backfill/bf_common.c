/* What backfill and verify processes share: their clients, the table's description, signals. */
#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bf_int.h"
#include "d2o/cli.h"
#include "d2o/conf.h"
#include "d2o/creds.h"
#include "d2o/pg.h"
#include "d2o/sigv4.h"

int bf_clients_open(struct bf_clients *c, const struct d2o_config *conf, d2o_bulk_done_fn done,
                    void *done_arg, bool want_pg, const char *pg_name,
                    const volatile sig_atomic_t *stop, char *errstr, size_t errstr_size)
{
    const struct d2o_aws_creds *ac = NULL;
    struct d2o_creds_opts co;
    struct d2o_http_opts ho;
    struct d2o_bulk_opts bo;

    memset(c, 0, sizeof(*c));
    memset(&co, 0, sizeof(co));
    d2o_http_opts_from_config(&ho, conf);
    c->http = d2o_http_new(&ho, errstr, errstr_size);
    if (!c->http) {
        goto fail;
    }
    co.region = conf->aws_region;
    c->creds = d2o_creds_new(c->http, &co);
    if (!c->creds || d2o_creds_get(c->creds, time(NULL), &ac, errstr, errstr_size) < 0) {
        goto fail;
    }
    c->ddb = d2o_ddb_new_from_config(c->http, conf, ac, errstr, errstr_size);
    if (!c->ddb) {
        goto fail;
    }
    /* Throttling backs off and tries again for as long as it takes: a backfill is patient. */
    d2o_ddb_set_retry(c->ddb, 1000, 50, 10000, stop);
    if (done) {
        d2o_bulk_opts_from_config(&bo, conf);
        bo.done = done;
        bo.done_arg = done_arg;
        if (conf->opensearch_auth == D2O_OS_AUTH_SIGV4) {
            c->os_signer = d2o_sigv4_signer_new(
                conf->aws_region, conf->opensearch_service == D2O_OS_SERVICE_AOSS ? "aoss" : "es");
            if (!c->os_signer) {
                snprintf(errstr, errstr_size, "cannot create the OpenSearch SigV4 signer");
                goto fail;
            }
            bo.signer = c->os_signer;
            bo.creds = ac;
        }
        c->sink = d2o_bulk_new(c->http, &bo, errstr, errstr_size);
        if (!c->sink) {
            goto fail;
        }
    }
    if (want_pg) {
        c->pg = d2o_pg_connect(conf->pg_conninfo, pg_name, errstr, errstr_size);
        if (!c->pg) {
            goto fail;
        }
    }
    return 0;
fail:
    bf_clients_close(c);
    return -1;
}

void bf_clients_close(struct bf_clients *c)
{
    d2o_bulk_free(c->sink);
    d2o_ddb_free(c->ddb);
    d2o_sigv4_signer_free(c->os_signer);
    d2o_creds_free(c->creds);
    d2o_http_free(c->http);
    if (c->pg) {
        PQfinish(c->pg);
    }
    memset(c, 0, sizeof(*c));
}

int bf_os_request(struct bf_clients *c, const struct d2o_config *conf, const char *method,
                  const char *path, const char *body, struct d2o_http_response *resp)
{
    struct d2o_buf url = D2O_BUF_INIT, auth = D2O_BUF_INIT;
    struct d2o_http_header hdrs[2];
    struct d2o_http_request req;
    const struct d2o_aws_creds *ac = NULL;
    char err[256];
    size_t nh = 0;
    int r;

    memset(&req, 0, sizeof(req));
    r = d2o_buf_printf(&url, "%s%s", conf->opensearch_url, path);
    hdrs[nh].name = "Content-Type";
    hdrs[nh++].value = "application/json";
    if (r == 0 && conf->opensearch_auth == D2O_OS_AUTH_BASIC) {
        struct d2o_buf up = D2O_BUF_INIT;

        r = d2o_buf_printf(&up, "%s:%s", conf->opensearch_user, conf->opensearch_password);
        if (r == 0) {
            r = d2o_buf_reserve(&auth, 6 + 4 * (up.len / 3 + 1) + 1);
        }
        if (r == 0) {
            memcpy(auth.data, "Basic ", 6);
            auth.len = 6 + (size_t)EVP_EncodeBlock((unsigned char *)auth.data + 6,
                                                   (unsigned char *)up.data, (int)up.len);
            hdrs[nh].name = "Authorization";
            hdrs[nh++].value = auth.data;
        }
        d2o_buf_free(&up);
    }
    if (r < 0) {
        goto out;
    }
    req.method = method;
    req.url = url.data;
    req.headers = hdrs;
    req.n_headers = nh;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    if (conf->opensearch_auth == D2O_OS_AUTH_SIGV4) {
        if (!c->os_signer) {
            c->os_signer = d2o_sigv4_signer_new(
                conf->aws_region, conf->opensearch_service == D2O_OS_SERVICE_AOSS ? "aoss" : "es");
        }
        if (!c->os_signer || d2o_creds_get(c->creds, time(NULL), &ac, err, sizeof(err)) < 0) {
            r = -EIO;
            goto out;
        }
        req.signer = c->os_signer;
        req.creds = ac;
        req.sigv4_flags =
            conf->opensearch_service == D2O_OS_SERVICE_AOSS ? D2O_SIGV4_CONTENT_SHA256_HEADER : 0;
    }
    r = d2o_http_request_sync(c->http, &req, resp);
out:
    d2o_buf_free(&url);
    d2o_buf_free(&auth);
    return r;
}

void bf_key_names(const struct d2o_config *conf, const char *table, char *hash, size_t hash_size,
                  const char **range)
{
    const char *schema = d2o_kvlist_get(&conf->key_schema, table);
    const char *colon = schema ? strchr(schema, ':') : NULL;

    *range = NULL;
    hash[0] = '\0';
    if (!schema) {
        return;
    }
    snprintf(hash, hash_size, "%.*s", (int)(colon ? (size_t)(colon - schema) : strlen(schema)),
             schema);
    *range = colon && colon[1] ? colon + 1 : NULL;
}

int bf_describe(struct bf_clients *c, struct d2o_config *conf, const char *table,
                struct d2o_ddb_table *desc, char **ttl_attr, const char *cmd)
{
    struct d2o_ddb_err err;
    struct d2o_ddb_ttl ttl;
    struct d2o_buf map = D2O_BUF_INIT;
    char hash[256], msg[512];
    const char *range;
    size_t i;
    int r;

    *ttl_attr = NULL;
    r = d2o_ddb_describe_table(c->ddb, table, desc, &err);
    if (r != 0) {
        fprintf(stderr, "ddb2os %s: %s\n", cmd, r < 0 ? "out of memory" : err.message);
        return D2O_EXIT_FAIL;
    }
    bf_key_names(conf, table, hash, sizeof(hash), &range);
    if (hash[0]) {
        if (strcmp(hash, desc->hash_key) != 0 ||
            (range ? !desc->range_key || strcmp(range, desc->range_key) != 0 : !!desc->range_key)) {
            fprintf(stderr,
                    "ddb2os %s: key_schema '%s=%s%s%s' disagrees with table %s, whose key is "
                    "%s%s%s\n",
                    cmd, table, hash, range ? ":" : "", range ? range : "", table, desc->hash_key,
                    desc->range_key ? ":" : "", desc->range_key ? desc->range_key : "");
            return D2O_EXIT_CONFIG;
        }
    } else {
        /* The table says which attribute is the hash key: no key_schema entry needed. */
        for (i = 0; i < conf->key_schema.n; i++) {
            r = d2o_buf_printf(&map, "%s%s=%s", map.len ? "," : "", conf->key_schema.items[i].key,
                               conf->key_schema.items[i].value);
            if (r < 0) {
                break;
            }
        }
        r = d2o_buf_printf(&map, "%s%s=%s%s%s", map.len ? "," : "", table, desc->hash_key,
                           desc->range_key ? ":" : "", desc->range_key ? desc->range_key : "");
        if (r == 0) {
            r = d2o_conf_set(conf, "key_schema", map.data, "DescribeTable", msg, sizeof(msg));
        }
        d2o_buf_free(&map);
        if (r < 0) {
            fprintf(stderr, "ddb2os %s: %s\n", cmd, msg);
            return D2O_EXIT_FAIL;
        }
        if (desc->range_key && strcmp(desc->hash_key, desc->range_key) > 0) {
            fprintf(stderr,
                    "ddb2os %s: note: table %s has no key_schema entry and its hash key '%s' "
                    "sorts after its range key '%s'; set key_schema = %s=%s:%s for 'ddb2os run' "
                    "too, or the stream's documents get other ids\n",
                    cmd, table, desc->hash_key, desc->range_key, table, desc->hash_key,
                    desc->range_key);
        }
    }
    memset(&ttl, 0, sizeof(ttl));
    r = d2o_ddb_describe_ttl(c->ddb, table, &ttl, &err);
    if (r == 0 && ttl.attribute) {
        *ttl_attr = strdup(ttl.attribute);
    } else if (r != 0) {
        /* DescribeTimeToLive may be denied by a narrow IAM policy: TTL is then unknown. */
        fprintf(stderr, "ddb2os %s: note: %s\n", cmd, err.message);
    }
    d2o_ddb_ttl_free(&ttl);
    return 0;
}

static volatile sig_atomic_t *sig_flag;

static void on_signal(int sig)
{
    (void)sig;
    if (sig_flag) {
        *sig_flag = 1;
    }
}

void bf_on_signals(volatile sig_atomic_t *flag)
{
    struct sigaction sa;

    sig_flag = flag;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}
