/*
 * RDS IAM authentication tokens (see d2o/rdsauth.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "d2o/conf.h"
#include "d2o/creds.h"
#include "d2o/http.h"
#include "d2o/pg.h"
#include "d2o/rdsauth.h"
#include "d2o/util.h"

#define SCHEME "https://"

int d2o_rds_token(struct d2o_sigv4_signer *signer, const struct d2o_aws_creds *creds,
                  const char *host, unsigned port, const char *user, time_t now, char **token,
                  char *errstr, size_t errstr_size)
{
    const struct d2o_sigv4_header params[] = {{"Action", "connect"}, {"DBUser", user}};
    char *url = NULL, *signed_url = NULL;
    int r;

    if (token) {
        *token = NULL;
    }
    if (!token || !host || !*host || strpbrk(host, "/?#@ ") || port < 1 || port > 65535) {
        snprintf(errstr, errstr_size, "rds token: host '%.200s' or port %u is not usable",
                 host ? host : "(null)", port);
        return -EINVAL;
    }
    if (!user || !*user) {
        snprintf(errstr, errstr_size, "rds token: no database user name");
        return -EINVAL;
    }
    if (asprintf(&url, SCHEME "%s:%u/", host, port) < 0) {
        snprintf(errstr, errstr_size, "rds token: out of memory");
        return -ENOMEM;
    }
    r = d2o_sigv4_presign(signer, creds, "GET", url, params, sizeof(params) / sizeof(params[0]),
                          now, D2O_RDS_TOKEN_TTL_S, &signed_url, errstr, errstr_size);
    free(url);
    if (r < 0) {
        return r;
    }
    /* RDS wants the presigned URL without its scheme. */
    memmove(signed_url, signed_url + strlen(SCHEME), strlen(signed_url) - strlen(SCHEME) + 1);
    *token = signed_url;
    return 0;
}

/* Host, port and user of a connection string, with libpq's environment fallbacks. */
struct target {
    char host[256];
    char user[128];
    unsigned port;
};

static int conninfo_target(const char *conninfo, struct target *t, char *errstr, size_t n)
{
    const char *host = NULL, *user = NULL, *port = NULL;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr), *o;
    int64_t p = 5432;
    int r = 0;

    if (!opts) {
        snprintf(errstr, n, "pg_conninfo: cannot parse it: %s", perr ? perr : "out of memory");
        PQfreemem(perr);
        return -EINVAL;
    }
    for (o = opts; o->keyword; o++) {
        if (o->val && *o->val) {
            if (strcmp(o->keyword, "host") == 0) {
                host = o->val;
            } else if (strcmp(o->keyword, "user") == 0) {
                user = o->val;
            } else if (strcmp(o->keyword, "port") == 0) {
                port = o->val;
            }
        }
    }
    host = host ? host : getenv("PGHOST");
    user = user ? user : getenv("PGUSER");
    port = port ? port : getenv("PGPORT");
    if (!host || !*host || host[0] == '/' || strchr(host, ',')) {
        snprintf(errstr, n,
                 "pg_iam_auth: pg_conninfo host '%.200s' must be one database host name (IAM "
                 "authentication is for RDS and Aurora over TCP)",
                 host ? host : "");
        r = -EINVAL;
    } else if (!user || !*user) {
        snprintf(errstr, n,
                 "pg_iam_auth: pg_conninfo names no user (user=...): the token is for "
                 "one database user");
        r = -EINVAL;
    } else if (port && d2o_parse_i64(port, 1, 65535, &p) < 0) {
        snprintf(errstr, n, "pg_iam_auth: pg_conninfo port '%.32s' is not 1 to 65535", port);
        r = -EINVAL;
    } else if (d2o_strlcpy(t->host, host, sizeof(t->host)) < 0 ||
               d2o_strlcpy(t->user, user, sizeof(t->user)) < 0) {
        snprintf(errstr, n, "pg_iam_auth: pg_conninfo host or user is too long");
        r = -EINVAL;
    }
    t->port = (unsigned)p;
    PQconninfoFree(opts);
    return r;
}

/* A worker's credentials, kept fresh on its multi handle (d2o_rds_pg_auth_use_creds). */
static const struct d2o_creds *cached_creds;

void d2o_rds_pg_auth_use_creds(const struct d2o_creds *creds)
{
    cached_creds = creds;
}

/* The token from the cached credentials: a local signature, no request. Expired credentials
 * fail the opening at once (the caller retries it with backoff; the refresh runs meanwhile). */
static int pg_password_cached(const struct d2o_config *c, const struct target *t, char **password,
                              char *errstr, size_t n)
{
    struct d2o_sigv4_signer *signer = d2o_sigv4_signer_new(c->aws_region, "rds-db");
    const struct d2o_aws_creds *ac;
    char why[256];
    int r;

    if (!signer) {
        snprintf(errstr, n, "pg_iam_auth: out of memory");
        return -ENOMEM;
    }
    if (d2o_creds_cached(cached_creds, time(NULL), &ac, why, sizeof(why)) < 0) {
        snprintf(errstr, n,
                 "pg_iam_auth: no token for this connection without waiting: %s (the refresh "
                 "runs in the background; the connection is tried again)",
                 why);
        r = -EAGAIN;
    } else {
        r = d2o_rds_token(signer, ac, t->host, t->port, t->user, time(NULL), password, errstr, n);
    }
    d2o_sigv4_signer_free(signer);
    return r;
}

/* d2o_pg_password_fn: a new token; from the cached credentials in a worker, else from fresh
 * ones, and then nothing outlives the call (no HTTP handle survives into a fork()). */
static int pg_password(const void *arg, const char *conninfo, char **password, char *errstr,
                       size_t n)
{
    const struct d2o_config *c = arg;
    struct d2o_http_opts ho;
    struct d2o_http *http = NULL;
    struct d2o_creds *creds = NULL;
    struct d2o_sigv4_signer *signer = NULL;
    struct d2o_creds_opts co = {0};
    const struct d2o_aws_creds *ac;
    struct target t;
    int r = conninfo_target(conninfo, &t, errstr, n);

    if (r < 0) {
        return r;
    }
    if (cached_creds) {
        return pg_password_cached(c, &t, password, errstr, n);
    }
    d2o_http_opts_from_config(&ho, c);
    co.region = c->aws_region;
    http = d2o_http_new(&ho, errstr, n);
    creds = http ? d2o_creds_new(http, &co) : NULL;
    signer = d2o_sigv4_signer_new(c->aws_region, "rds-db");
    if (!http || !creds || !signer) {
        r = -ENOMEM;
        if (http) {
            snprintf(errstr, n, "pg_iam_auth: out of memory");
        }
    } else if ((r = d2o_creds_get(creds, time(NULL), &ac, errstr, n)) < 0) {
        r = -EIO;
    } else {
        r = d2o_rds_token(signer, ac, t.host, t.port, t.user, time(NULL), password, errstr, n);
    }
    d2o_sigv4_signer_free(signer);
    d2o_creds_free(creds);
    d2o_http_free(http);
    return r;
}

int d2o_rds_pg_auth_setup(const struct d2o_config *c, char *errstr, size_t errstr_size)
{
    struct target t;
    int r = conninfo_target(c->pg_conninfo ? c->pg_conninfo : "", &t, errstr, errstr_size);

    if (r == 0) {
        d2o_pg_set_password_source(pg_password, c);
    }
    return r;
}
