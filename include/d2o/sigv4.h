/*
 * AWS Signature Version 4 for every signed request ddb2os sends (Kinesis, STS, OpenSearch
 * Service / Serverless).
 *
 * The signer caches the derived signing key per (date, region, service) and per secret, so a
 * steady stream of requests costs one HMAC chain per day. The time is a parameter: tests replay
 * AWS's published vectors at their fixed clock.
 *
 * @process worker (each process owns its signers; nothing is shared across fork()).
 */
#ifndef D2O_SIGV4_H
#define D2O_SIGV4_H

#include <stddef.h>
#include <sys/uio.h>
#include <time.h>

/* Borrowed credential strings; session_token is NULL for long-term keys. */
struct d2o_aws_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;
};

struct d2o_sigv4_header {
    const char *name;
    const char *value;
};

/* What is signed. url is the full URL as sent: scheme://host[:port]/path[?query]. */
struct d2o_sigv4_request {
    const char *method;
    const char *url;
    const struct d2o_sigv4_header
        *headers; /* headers that will be sent (Host is derived if absent) */
    size_t n_headers;
    const void *body;
    size_t body_len;
    /* Or the body in pieces, sent one after the other (body NULL; body_len is their sum). */
    const struct iovec *body_parts;
    size_t n_body_parts;
};

enum d2o_sigv4_flags {
    D2O_SIGV4_UNSIGNED_PAYLOAD = 1u << 0,      /* payload hash is the literal UNSIGNED-PAYLOAD */
    D2O_SIGV4_CONTENT_SHA256_HEADER = 1u << 1, /* add and sign x-amz-content-sha256 */
    D2O_SIGV4_NO_PATH_NORMALIZE = 1u << 2,     /* keep . and .. segments (S3 style) */
};

/* Result: header lines to add to the request ("Name: value"), and the intermediate texts. */
struct d2o_sigv4_out {
    char *lines[6];
    size_t n_lines;
    char *canonical_request;
    char *string_to_sign;
    char *signature; /* lower-case hex */
};

struct d2o_sigv4_signer;

struct d2o_sigv4_signer *d2o_sigv4_signer_new(const char *region, const char *service);
void d2o_sigv4_signer_free(struct d2o_sigv4_signer *s);

/* Signs req at time now. Returns 0, -EINVAL (malformed request; errstr says what) or -ENOMEM. */
__attribute__((warn_unused_result)) int
d2o_sigv4_sign(struct d2o_sigv4_signer *s, const struct d2o_aws_creds *creds,
               const struct d2o_sigv4_request *req, time_t now, unsigned flags,
               struct d2o_sigv4_out *out, char *errstr, size_t errstr_size);
/*
 * Presigns a request with query authentication (a "presigned URL"): url is
 * scheme://host[:port]/path without a query; params (raw values, encoded here) come first in the
 * query, then X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires (expires_s, 1 to
 * 604800), X-Amz-SignedHeaders=host, X-Amz-Security-Token for temporary credentials, and
 * X-Amz-Signature last. Only the Host header is signed and the payload is empty, as botocore's
 * SigV4QueryAuth does. *out_url receives the signed URL (free() it). Returns 0, -EINVAL (errstr
 * says what is wrong) or -ENOMEM.
 */
__attribute__((warn_unused_result)) int
d2o_sigv4_presign(struct d2o_sigv4_signer *s, const struct d2o_aws_creds *creds, const char *method,
                  const char *url, const struct d2o_sigv4_header *params, size_t n_params,
                  time_t now, unsigned expires_s, char **out_url, char *errstr, size_t errstr_size);

/* How many times s derived a signing key (a new day or a new secret); for tests and metrics. */
unsigned long d2o_sigv4_signer_derivations(const struct d2o_sigv4_signer *s);

/* Frees what d2o_sigv4_sign put in out. NULL-safe, idempotent. */
void d2o_sigv4_out_free(struct d2o_sigv4_out *out);

#endif
