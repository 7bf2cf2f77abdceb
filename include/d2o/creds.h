/*
 * AWS credentials: the provider chain every signed request draws from.
 *
 * The chain is tried in the standard AWS order, and the first provider that yields credentials
 * is kept for the life of the process (later refreshes ask the same provider):
 *
 *   1. environment     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *   2. web-identity    AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN [+ AWS_ROLE_SESSION_NAME],
 *                      exchanged through STS AssumeRoleWithWebIdentity (EKS/IRSA and the like)
 *   3. shared-files    ~/.aws/credentials then ~/.aws/config, profile AWS_PROFILE (default
 *                      "default"); AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE move them
 *   4. ecs             AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (against 169.254.170.2), or
 *                      AWS_CONTAINER_CREDENTIALS_FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN
 *                      or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
 *   5. imds            EC2 instance metadata, IMDSv2 only (token first); skipped when
 *                      AWS_EC2_METADATA_DISABLED=true
 *
 * Temporary credentials are refreshed ahead of their expiry (refresh_ahead_s, 5 minutes by
 * default); if a refresh fails while the old credentials are still valid they stay in use and the
 * failure is logged. A refresh never re-enters itself: the provider is a small state machine
 * (EMPTY -> VALID -> REFRESHING -> VALID | FAILED). Secrets are registered with the log
 * redactor and never formatted into an error or a log line. When no provider yields credentials
 * the error names every provider tried and why it failed.
 *
 * @process worker (uses the process's struct d2o_http; create after fork()).
 */
#ifndef D2O_CREDS_H
#define D2O_CREDS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "d2o/sigv4.h"

struct d2o_http;

struct d2o_creds_opts {
    /* Environment to read, NULL-terminated like environ. NULL = the process environment. */
    char *const *envp;
    /* Region for the regional STS endpoint. NULL = AWS_REGION / AWS_DEFAULT_REGION / us-east-1. */
    const char *region;
    /* Endpoint overrides (tests, VPC endpoints). NULL = the AWS defaults. */
    const char *sts_endpoint; /* default https://sts.<region>.amazonaws.com */
    const char *ecs_endpoint; /* default http://169.254.170.2 (RELATIVE_URI is appended) */
    const char
        *imds_endpoint; /* default http://169.254.169.254 or AWS_EC2_METADATA_SERVICE_ENDPOINT */
    int64_t refresh_ahead_s;     /* default 300 */
    int64_t metadata_timeout_ms; /* ECS and IMDS requests; default 1000 (fail fast off EC2) */
};

struct d2o_creds;

/* Creates the chain. http is borrowed. Returns NULL only when out of memory. */
struct d2o_creds *d2o_creds_new(struct d2o_http *http, const struct d2o_creds_opts *opts);
/* Frees the chain and cleanses the secrets it held. NULL-safe. */
void d2o_creds_free(struct d2o_creds *c);

/*
 * Returns usable credentials at time now in *out (borrowed: valid until the next call on c),
 * resolving the chain on first use and refreshing temporary credentials ahead of expiry.
 * Returns 0, or -ENOENT when no provider yields credentials (errstr names each provider and why),
 * or -EIO when the chosen provider failed and the old credentials have expired. @blocking yes
 * (network for web-identity, ecs and imds).
 */
__attribute__((warn_unused_result)) int d2o_creds_get(struct d2o_creds *c, time_t now,
                                                      const struct d2o_aws_creds **out,
                                                      char *errstr, size_t errstr_size);

/*
 * The refresh of d2o_creds_get without waiting, for an event loop: when temporary credentials are
 * due (refresh_ahead_s before they expire, or after d2o_creds_invalidate) and no refresh is on
 * its way, starts it on the http handle's multi handle (each request bounded by
 * metadata_timeout_ms) and returns 1; done(arg, creds) runs from d2o_http_run once the new
 * credentials are in place (creds as d2o_creds_get gives them). Until then the current ones stay
 * in use; a failed refresh is logged (creds_refresh_failed) and tried again at the next call.
 * Returns 1 (started, or on its way), 0 (nothing due; environment and shared-file credentials
 * are read at once, done runs before it returns) or -ENOMEM. The chain must be resolved already
 * (d2o_creds_get). @blocking no.
 */
typedef void (*d2o_creds_refreshed_fn)(void *arg, const struct d2o_aws_creds *creds);
int d2o_creds_refresh_async(struct d2o_creds *c, time_t now, d2o_creds_refreshed_fn done,
                            void *arg);

/*
 * The credentials already in hand, for a caller that must not wait: *out as d2o_creds_get gives
 * them when they are valid at now (a refresh that is due but not done yet leaves the current ones
 * valid until they expire). Never fetches nor refreshes. Returns 0, -ENOENT before the chain
 * resolved, or -EKEYEXPIRED when they expired (errstr says since when). @blocking no.
 */
__attribute__((warn_unused_result)) int d2o_creds_cached(const struct d2o_creds *c, time_t now,
                                                         const struct d2o_aws_creds **out,
                                                         char *errstr, size_t errstr_size);

/* Forces the next d2o_creds_get() to refresh (after an ExpiredToken-like error). */
void d2o_creds_invalidate(struct d2o_creds *c);

/* Name of the provider in use ("environment", "web-identity", "shared-files", "ecs", "imds"),
 * or NULL before the chain resolved. */
const char *d2o_creds_source(const struct d2o_creds *c);
/* Expiry of the current credentials (0 = long-term, no expiry). */
time_t d2o_creds_expiration(const struct d2o_creds *c);
/* How many times credentials were fetched (tests, metrics). */
unsigned long d2o_creds_fetches(const struct d2o_creds *c);

/* Parses an ISO 8601 UTC time "2026-11-25T03:34:41Z" (fractions allowed). -EINVAL if malformed. */
__attribute__((warn_unused_result)) int d2o_creds_parse_time(const char *s, time_t *out);

#endif
