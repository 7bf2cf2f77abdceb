/*
 * The one error -> action classifier for AWS and OpenSearch calls.
 */
#include <string.h>

#include "d2o/classify.h"
#include "d2o/util.h"

struct code_rule {
    const char *code;
    enum d2o_action action;
    const char *reason;
};

/* AWS error codes that decide the action whatever the status. */
static const struct code_rule code_rules[] = {
    {"ProvisionedThroughputExceededException", D2O_ACT_THROTTLE, "throughput exceeded: back off"},
    {"LimitExceededException", D2O_ACT_THROTTLE, "limit exceeded: back off"},
    {"ThrottlingException", D2O_ACT_THROTTLE, "throttled: back off"},
    {"Throttling", D2O_ACT_THROTTLE, "throttled: back off"},
    {"RequestLimitExceeded", D2O_ACT_THROTTLE, "request limit exceeded: back off"},
    {"TooManyRequestsException", D2O_ACT_THROTTLE, "too many requests: back off"},
    {"KMSThrottlingException", D2O_ACT_THROTTLE, "KMS throttled: back off"},
    {"ExpiredIteratorException", D2O_ACT_REFRESH_ITERATOR,
     "shard iterator expired: get a new one after the last processed record"},
    {"ExpiredTokenException", D2O_ACT_REFRESH_CREDS, "security token expired: refresh credentials"},
    {"ExpiredToken", D2O_ACT_REFRESH_CREDS, "security token expired: refresh credentials"},
    {"RequestExpired", D2O_ACT_REFRESH_CREDS,
     "request signature expired (clock skew?): refresh credentials"},
    {"UnrecognizedClientException", D2O_ACT_REFRESH_CREDS,
     "access key not recognized: refresh credentials"},
    {"InvalidSignatureException", D2O_ACT_REFRESH_CREDS, "signature rejected: refresh credentials"},
    {"SignatureDoesNotMatch", D2O_ACT_REFRESH_CREDS, "signature rejected: refresh credentials"},
    {"ResourceNotFoundException", D2O_ACT_PERMANENT, "resource (stream/table) not found"},
    {"TrimmedDataAccessException", D2O_ACT_PERMANENT,
     "the records asked for are past the stream's retention (trimmed)"},
    {"AccessDeniedException", D2O_ACT_PERMANENT, "access denied: check the IAM policy"},
    {"AccessDenied", D2O_ACT_PERMANENT, "access denied: check the IAM policy"},
    {"KMSAccessDeniedException", D2O_ACT_PERMANENT,
     "KMS access denied: check the key policy for the stream's key"},
    {"KMSDisabledException", D2O_ACT_PERMANENT, "KMS key of the stream is disabled"},
    {"KMSInvalidStateException", D2O_ACT_PERMANENT, "KMS key of the stream is in an invalid state"},
    {"KMSNotFoundException", D2O_ACT_PERMANENT, "KMS key of the stream not found"},
    {"KMSOptInRequired", D2O_ACT_PERMANENT, "KMS opt-in required for this account"},
    {"InvalidArgumentException", D2O_ACT_PERMANENT, "invalid argument in the request"},
    {"ValidationException", D2O_ACT_PERMANENT, "request failed validation"},
    {"InternalFailure", D2O_ACT_RETRY, "AWS internal failure: retry"},
    {"ServiceUnavailable", D2O_ACT_RETRY, "service unavailable: retry"},
    {"InternalServerError", D2O_ACT_RETRY, "internal server error: retry"},
};

const char *d2o_action_name(enum d2o_action a)
{
    switch (a) {
    case D2O_ACT_OK:
        return "ok";
    case D2O_ACT_RETRY:
        return "retry";
    case D2O_ACT_THROTTLE:
        return "throttle";
    case D2O_ACT_REFRESH_CREDS:
        return "refresh_creds";
    case D2O_ACT_REFRESH_ITERATOR:
        return "refresh_iterator";
    case D2O_ACT_PERMANENT:
        return "permanent";
    case D2O_ACT_FATAL:
        return "fatal";
    }
    return "unknown";
}

size_t d2o_classify_code_name(const char *raw, char *out, size_t out_size)
{
    const char *start, *hash, *colon;
    size_t n;

    if (out_size == 0) {
        return 0;
    }
    out[0] = '\0';
    if (!raw || !raw[0]) {
        return 0;
    }
    start = raw;
    colon = strchr(start, ':');
    hash = strchr(start, '#');
    /* "prefix#Name" - a '#' after the ':' belongs to the suffix */
    if (hash && (!colon || hash < colon)) {
        start = hash + 1;
    }
    colon = strchr(start, ':');
    n = colon ? (size_t)(colon - start) : strlen(start);
    while (n > 0 && start[n - 1] == ' ') {
        n--;
    }
    if (n >= out_size) {
        n = out_size - 1;
    }
    memcpy(out, start, n);
    out[n] = '\0';
    return n;
}

static enum d2o_action by_curl(CURLcode cc, const char **reason)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        *reason = "could not resolve host: retry";
        return D2O_ACT_RETRY;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        *reason = "could not connect: retry";
        return D2O_ACT_RETRY;
    case CURLE_OPERATION_TIMEDOUT:
        *reason = "timed out: retry";
        return D2O_ACT_RETRY;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        *reason = "connection error while sending or receiving: retry";
        return D2O_ACT_RETRY;
    case CURLE_GOT_NOTHING:
        *reason = "server closed the connection without a response: retry";
        return D2O_ACT_RETRY;
    case CURLE_PARTIAL_FILE:
        *reason = "response cut short: retry";
        return D2O_ACT_RETRY;
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        *reason = "connection broken: retry";
        return D2O_ACT_RETRY;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
        *reason = "TLS certificate problem: check the CA bundle and the host name";
        return D2O_ACT_FATAL;
    case CURLE_URL_MALFORMAT:
        *reason = "malformed URL: check the endpoint configuration";
        return D2O_ACT_FATAL;
    case CURLE_UNSUPPORTED_PROTOCOL:
        *reason = "unsupported protocol: the endpoint must be http:// or https://";
        return D2O_ACT_FATAL;
    case CURLE_FILESIZE_EXCEEDED:
        *reason = "response larger than the configured maximum";
        return D2O_ACT_PERMANENT;
    case CURLE_OUT_OF_MEMORY:
        *reason = "out of memory in libcurl";
        return D2O_ACT_FATAL;
    default:
        *reason = "transport error: retry";
        return D2O_ACT_RETRY;
    }
}

static enum d2o_action by_status(long status, const char **reason)
{
    switch (status) {
    case 408:
        *reason = "HTTP 408 request timeout: retry";
        return D2O_ACT_RETRY;
    case 425:
        *reason = "HTTP 425 too early: retry";
        return D2O_ACT_RETRY;
    case 429:
        *reason = "HTTP 429 too many requests: back off";
        return D2O_ACT_THROTTLE;
    case 500:
        *reason = "HTTP 500 internal server error: retry";
        return D2O_ACT_RETRY;
    case 502:
        *reason = "HTTP 502 bad gateway: retry";
        return D2O_ACT_RETRY;
    case 503:
        *reason = "HTTP 503 service unavailable: retry";
        return D2O_ACT_RETRY;
    case 504:
        *reason = "HTTP 504 gateway timeout: retry";
        return D2O_ACT_RETRY;
    default:
        break;
    }
    if (status >= 500 && status <= 599) {
        *reason = "HTTP 5xx server error: retry";
        return D2O_ACT_RETRY;
    }
    if (status >= 400 && status <= 499) {
        *reason = "HTTP 4xx client error: the request will not succeed as is";
        return D2O_ACT_PERMANENT;
    }
    if (status >= 100 && status <= 399) {
        *reason = "success";
        return D2O_ACT_OK;
    }
    *reason = "no valid HTTP status in the response: retry";
    return D2O_ACT_RETRY;
}

enum d2o_action d2o_classify(CURLcode curl_code, long status, const char *aws_code,
                             const char **reason)
{
    const char *why = "";
    enum d2o_action a;
    char name[128];
    size_t i;

    if (curl_code != CURLE_OK) {
        a = by_curl(curl_code, &why);
        goto out;
    }
    if (d2o_classify_code_name(aws_code, name, sizeof(name)) > 0 &&
        !(status >= 200 && status <= 299)) {
        for (i = 0; i < D2O_ARRAY_SIZE(code_rules); i++) {
            if (strcmp(name, code_rules[i].code) == 0) {
                a = code_rules[i].action;
                why = code_rules[i].reason;
                goto out;
            }
        }
    }
    a = by_status(status, &why);
out:
    if (reason) {
        *reason = why;
    }
    return a;
}

const char *d2o_item_class_name(enum d2o_item_class c)
{
    static const char *const names[] = {"done",  "stale",     "absent", "throttle",
                                        "retry", "permanent", "blocked"};

    return (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "?";
}

enum d2o_item_class d2o_classify_bulk_item(int status, const char *error_type, int is_delete)
{
    static const char *const permanent_types[] = {
        "mapper_parsing_exception",
        "illegal_argument_exception",
        "strict_dynamic_mapping_exception",
        "document_parsing_exception",
        "action_request_validation_exception",
        "invalid_index_name_exception",
        "index_closed_exception",
    };
    /* The index is not writable yet or for now; the record is not at fault. */
    static const char *const blocked_types[] = {
        "cluster_block_exception",                 /* read-only, flood stage (403 or 429) */
        "unavailable_shards_exception",            /* created, primaries not yet started */
        "no_shard_available_action_exception",     /* same */
        "primary_missing_action_exception",        /* same */
        "process_cluster_event_timeout_exception", /* auto-create timed out in a busy cluster */
    };
    size_t i;

    if (status >= 200 && status < 300) {
        return D2O_ITEM_DONE;
    }
    for (i = 0; error_type && i < sizeof(blocked_types) / sizeof(blocked_types[0]); i++) {
        if (strcmp(error_type, blocked_types[i]) == 0) {
            return D2O_ITEM_BLOCKED;
        }
    }
    if (error_type && strcmp(error_type, "es_rejected_execution_exception") == 0) {
        return D2O_ITEM_THROTTLE;
    }
    if (status == 429 || status == 503) {
        return D2O_ITEM_THROTTLE;
    }
    if (status == 409 ||
        (error_type && strcmp(error_type, "version_conflict_engine_exception") == 0)) {
        return D2O_ITEM_STALE;
    }
    if (status == 404 && is_delete) {
        return D2O_ITEM_ABSENT;
    }
    if (error_type && strcmp(error_type, "index_not_found_exception") == 0) {
        /* with automatic index creation off: the index is being created by its owner */
        return D2O_ITEM_BLOCKED;
    }
    for (i = 0; error_type && i < sizeof(permanent_types) / sizeof(permanent_types[0]); i++) {
        if (strcmp(error_type, permanent_types[i]) == 0) {
            return D2O_ITEM_PERMANENT;
        }
    }
    if (status >= 400 && status < 500) {
        return D2O_ITEM_PERMANENT;
    }
    return D2O_ITEM_RETRY;
}
