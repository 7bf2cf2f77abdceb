/*
 * RDS IAM authentication: the token a PostgreSQL client sends as its password to an RDS or Aurora
 * database with IAM authentication enabled, so no database password exists.
 *
 * The token is a SigV4 presigned "GET https://HOST:PORT/?Action=connect&DBUser=USER" for the
 * service rds-db, without its scheme, valid D2O_RDS_TOKEN_TTL_S seconds: what botocore's
 * generate_db_auth_token makes (tests/integration/rds_token_botocore.py compares the two). The
 * database checks it when a connection is opened only; an open connection outlives its token.
 *
 * @process any (pure computation; the credentials come from the caller).
 */
#ifndef D2O_RDSAUTH_H
#define D2O_RDSAUTH_H

#include <stddef.h>
#include <time.h>

#include "d2o/sigv4.h"

#define D2O_RDS_TOKEN_TTL_S 900

/*
 * Makes the token for user at host:port at time now. signer must be for the database's region and
 * the service "rds-db". *token receives a new string (free() it; it grants access: cleanse it).
 * Returns 0, -EINVAL (errstr names the bad argument) or -ENOMEM.
 */
__attribute__((warn_unused_result)) int d2o_rds_token(struct d2o_sigv4_signer *signer,
                                                      const struct d2o_aws_creds *creds,
                                                      const char *host, unsigned port,
                                                      const char *user, time_t now, char **token,
                                                      char *errstr, size_t errstr_size);

struct d2o_config;

/*
 * Turns RDS IAM authentication on for this process's PostgreSQL connections (d2o_pg_connect):
 * each connection gets a fresh token for the host, port and user of c->pg_conninfo (PGHOST,
 * PGPORT, PGUSER where it says nothing), signed with the credentials of the AWS chain (d2o/creds.h)
 * for c->aws_region. c is borrowed for the life of the process. Returns 0, or -EINVAL when
 * pg_conninfo cannot be used (errstr names the key, the value and why).
 */
__attribute__((warn_unused_result)) int d2o_rds_pg_auth_setup(const struct d2o_config *c,
                                                              char *errstr, size_t errstr_size);

struct d2o_creds;

/*
 * From now on the tokens of d2o_rds_pg_auth_setup are signed with creds as they are (the caller
 * keeps them fresh, a worker with d2o_creds_refresh_async): an opening then makes no request and
 * never waits, and when they are missing or expired it fails at once with an error that says so
 * (the caller retries). NULL goes back to fetching credentials for each connection. creds is
 * borrowed: set NULL before freeing it. @blocking no.
 */
void d2o_rds_pg_auth_use_creds(const struct d2o_creds *creds);

#endif
