/*
 * The configuration table. Every key ddb2os knows is one row here; parsing, environment names,
 * flags and docs/configuration.md all come from it.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "d2o/conf.h"
#include "d2o/creds.h"
#include "d2o/log.h"
#include "d2o/util.h"

#define OFF(field) offsetof(struct d2o_config, field)

static const char *const delete_modes[] = {"delete", "tombstone", NULL};
static const char *const ttl_modes[] = {"delete", "keep", NULL};
static const char *const sources[] = {"kinesis", "dynamodb-streams", NULL};
static const char *const auth_modes[] = {"none", "basic", "sigv4", NULL};
static const char *const services[] = {"es", "aoss", NULL};
static const char *const log_formats[] = {"json", "text", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const positions[] = {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", NULL};

static int validate_url(const char *v, char *why, size_t n)
{
    if (v[0] == '\0') {
        return 0;
    }
    if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
        snprintf(why, n, "must start with http:// or https://");
        return -1;
    }
    if (strchr(v, ' ') || strchr(v, '\n')) {
        snprintf(why, n, "must not contain white space");
        return -1;
    }
    return 0;
}

static int validate_region(const char *v, char *why, size_t n)
{
    size_t i, len = strlen(v);

    if (len == 0) {
        return 0;
    }
    if (len > 32) {
        snprintf(why, n, "is longer than 32 characters");
        return -1;
    }
    for (i = 0; i < len; i++) {
        char ch = v[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            snprintf(why, n, "may hold only a-z, 0-9 and '-' (like us-east-1)");
            return -1;
        }
    }
    return 0;
}

static int validate_name(const char *v, char *why, size_t n)
{
    size_t i, len = strlen(v);

    if (len == 0 || len > 128) {
        snprintf(why, n, "must be 1 to 128 characters");
        return -1;
    }
    for (i = 0; i < len; i++) {
        char ch = v[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.')) {
            snprintf(why, n, "may hold only letters, digits, '-', '_' and '.'");
            return -1;
        }
    }
    return 0;
}

static int validate_task_id(const char *v, char *why, size_t n)
{
    if (strlen(v) > 100 || strpbrk(v, " \t\n\"'\\")) {
        snprintf(why, n, "at most 100 characters, without spaces, quotes or backslashes");
        return -1;
    }
    return 0;
}

static int validate_ipv4(const char *v, char *why, size_t n)
{
    struct in_addr a;

    if (inet_pton(AF_INET, v, &a) != 1) {
        snprintf(why, n, "not a numeric IPv4 address such as 127.0.0.1 or 0.0.0.0");
        return -1;
    }
    return 0;
}

static int validate_timestamp(const char *v, char *why, size_t n)
{
    time_t t;

    if (*v && d2o_creds_parse_time(v, &t) < 0) {
        snprintf(why, n, "not an RFC 3339 time such as 2026-11-01T00:00:00Z");
        return -1;
    }
    return 0;
}

static int validate_debug(const char *v, char *why, size_t n)
{
    unsigned cats;
    const char *bad = NULL;
    size_t bad_len = 0;

    if (d2o_log_categories_from_list(v, &cats, &bad, &bad_len) < 0) {
        snprintf(why, n, "unknown category '%.*s' (known: kinesis, lease, sink, dlq, aws, pg, all)",
                 (int)bad_len, bad);
        return -1;
    }
    return 0;
}

const struct d2o_conf_entry d2o_conf_table[] = {
    {"application", D2O_CONF_STR, OFF(application), "ddb2os", 0, 0, NULL,
     "Name of this consumer application. Leases, checkpoints and DLQ rows are kept per "
     "application, so several applications can share one database and one stream.",
     false, false, validate_name},
    {"source", D2O_CONF_ENUM, OFF(source), "kinesis", 0, 0, sources,
     "Where the table's changes are read: `kinesis`, the table's Kinesis Data Streams "
     "destination, or `dynamodb-streams`, the table's own DynamoDB stream (StreamViewType "
     "NEW_AND_OLD_IMAGES or NEW_IMAGE). docs/architecture.md compares the two.",
     false, false, NULL},
    {"stream_name", D2O_CONF_STR, OFF(stream_name), "", 0, 0, NULL,
     "With source = kinesis: the Kinesis data stream that the DynamoDB table's streaming "
     "destination writes to (a name or an ARN). With source = dynamodb-streams: the table's "
     "stream ARN, or the table's name, whose newest stream each worker looks up at start "
     "(ListStreams).",
     false, false, NULL},
    {"aws_region", D2O_CONF_STR, OFF(aws_region), "us-east-1", 0, 0, NULL,
     "AWS region of the stream (and of the OpenSearch domain when signing with SigV4).", false,
     false, validate_region},
    {"kinesis_endpoint", D2O_CONF_STR, OFF(kinesis_endpoint), "", 0, 0, NULL,
     "Kinesis endpoint URL. Empty means https://kinesis.<aws_region>.amazonaws.com; set it to "
     "reach an emulator or a VPC endpoint.",
     false, false, validate_url},
    {"streams_endpoint", D2O_CONF_STR, OFF(streams_endpoint), "", 0, 0, NULL,
     "DynamoDB Streams endpoint URL (source = dynamodb-streams). Empty means "
     "https://streams.dynamodb.<aws_region>.amazonaws.com; DynamoDB Local serves its streams "
     "on its DynamoDB port.",
     false, false, validate_url},
    {"dynamodb_endpoint", D2O_CONF_STR, OFF(dynamodb_endpoint), "", 0, 0, NULL,
     "DynamoDB endpoint URL for backfill and verify. Empty means "
     "https://dynamodb.<aws_region>.amazonaws.com; set it to reach DynamoDB Local or a VPC "
     "endpoint.",
     false, false, validate_url},
    {"opensearch_url", D2O_CONF_STR, OFF(opensearch_url), "http://127.0.0.1:9200", 0, 0, NULL,
     "Base URL of the OpenSearch cluster or collection.", false, false, validate_url},
    {"opensearch_auth", D2O_CONF_ENUM, OFF(opensearch_auth), "none", 0, 0, auth_modes,
     "How requests to OpenSearch authenticate: none, basic (opensearch_user and "
     "opensearch_password) or sigv4 (AWS credentials, service opensearch_service).",
     false, false, NULL},
    {"opensearch_user", D2O_CONF_STR, OFF(opensearch_user), "", 0, 0, NULL,
     "User name for basic authentication.", false, false, NULL},
    {"opensearch_password", D2O_CONF_STR, OFF(opensearch_password), "", 0, 0, NULL,
     "Password for basic authentication. Never logged.", false, true, NULL},
    {"opensearch_service", D2O_CONF_ENUM, OFF(opensearch_service), "es", 0, 0, services,
     "SigV4 service name: es for OpenSearch Service domains, aoss for OpenSearch Serverless.",
     false, false, NULL},
    {"tls_ca_file", D2O_CONF_STR, OFF(tls_ca_file), "", 0, 0, NULL,
     "PEM bundle of CA certificates for TLS; empty uses the system store.", false, false, NULL},
    {"tls_verify", D2O_CONF_BOOL, OFF(tls_verify), "true", 0, 0, NULL,
     "Verify TLS certificates and host names. Turn off only for local testing.", false, false,
     NULL},
    {"index_map", D2O_CONF_MAP, OFF(index_map), "", 0, 0, NULL,
     "Where each table's documents go, as table=index pairs separated by commas "
     "(books=library-books,authors=people). A table not listed goes to its own name in lower "
     "case. One stream may carry several tables.",
     false, false, NULL},
    {"key_schema", D2O_CONF_MAP, OFF(key_schema), "", 0, 0, NULL,
     "Key attributes of tables with a sort key, as table=hash:range pairs separated by commas "
     "(orders=customer_id:order_id). The document id of such a table is <hash>|<range>; a table "
     "not listed takes its key attributes in byte order of their names. Hash-only tables need no "
     "entry.",
     false, false, NULL},
    {"delete_mode", D2O_CONF_ENUM, OFF(delete_mode), "delete", 0, 0, delete_modes,
     "What a REMOVE does: delete removes the document, and ddb2os remembers the delete in "
     "PostgreSQL (see stream_retention_ms) so a late older write cannot bring it back; "
     "tombstone indexes {\"_deleted\": true} with the item's keys at the delete's version, so "
     "OpenSearch itself keeps the delete's version for ever and queries filter _deleted.",
     false, false, NULL},
    {"stream_retention_ms", D2O_CONF_MS, OFF(stream_retention_ms), "24h", 3600000, 31536000000LL,
     NULL,
     "The stream's data retention period (24 hours unless it was raised, at most 365 days). With "
     "delete_mode = delete, ddb2os remembers each delete in PostgreSQL for stream_retention_ms + "
     "dlq_replay_window_ms and drops any older write of the document that arrives in that time, "
     "so a late write cannot bring a deleted document back even after OpenSearch forgot the "
     "delete.",
     false, false, NULL},
    {"dlq_replay_window_ms", D2O_CONF_MS, OFF(dlq_replay_window_ms), "168h", 0, 31536000000LL, NULL,
     "How long after a delete a dead-letter row of the same document may still be replayed "
     "safely; added to stream_retention_ms for how long deletes are remembered. A pending "
     "dead-letter row older than a delete keeps that delete remembered beyond it.",
     false, false, NULL},
    {"ttl_deletes", D2O_CONF_ENUM, OFF(ttl_deletes), "delete", 0, 0, ttl_modes,
     "What a REMOVE made by DynamoDB's TTL expiry does: delete handles it like any REMOVE; keep "
     "leaves the document searchable.",
     false, false, NULL},
    {"bulk_max_bytes", D2O_CONF_SIZE, OFF(bulk_max_bytes), "5MiB", 1024, 100 * 1024 * 1024, NULL,
     "Largest _bulk request body. A request is sent when the next item would pass it.", false,
     false, NULL},
    {"bulk_max_records", D2O_CONF_INT, OFF(bulk_max_records), "5000", 1, 100000, NULL,
     "Most items in one _bulk request.", false, false, NULL},
    {"bulk_flush_ms", D2O_CONF_MS, OFF(bulk_flush_ms), "100ms", 0, 60000, NULL,
     "Longest time a record waits in a partly filled bulk request before it is sent. Lower: "
     "changes reach the index sooner, in more and smaller requests when the stream is quiet; a "
     "busy stream fills requests before the time is up (docs/performance.md, \"Latency\"). When "
     "no bulk request is at OpenSearch, a tenth of bulk_max_records goes at once.",
     true, false, NULL},
    {"retry_base_ms", D2O_CONF_MS, OFF(retry_base_ms), "100ms", 1, 60000, NULL,
     "First retry delay; each attempt doubles the ceiling of a full-jitter backoff.", true, false,
     NULL},
    {"retry_cap_ms", D2O_CONF_MS, OFF(retry_cap_ms), "30s", 1, 3600000, NULL,
     "Largest retry delay.", true, false, NULL},
    {"item_max_attempts", D2O_CONF_INT, OFF(item_max_attempts), "10", 1, 1000, NULL,
     "Attempts per document for errors that are not known to be permanent; then it goes to the "
     "dead-letter queue.",
     true, false, NULL},
    {"http_connect_timeout_ms", D2O_CONF_MS, OFF(http_connect_timeout_ms), "5s", 100, 120000, NULL,
     "Connect timeout for every HTTP request.", false, false, NULL},
    {"http_timeout_ms", D2O_CONF_MS, OFF(http_timeout_ms), "20s", 100, 600000, NULL,
     "Total timeout for one HTTP request, including the response. At most half of "
     "opensearch_gc_deletes_ms: it bounds how late a bulk request that started before its writer "
     "lost the lease can land.",
     false, false, NULL},
    {"http_max_response_bytes", D2O_CONF_SIZE, OFF(http_max_response_bytes), "64MiB", 4096,
     1024LL * 1024 * 1024, NULL,
     "Largest response body accepted; a larger one fails the request as an error.", false, false,
     NULL},
    {"opensearch_gc_deletes_ms", D2O_CONF_MS, OFF(opensearch_gc_deletes_ms), "60s", 1000,
     INT64_C(3153600000000), NULL,
     "The index.gc_deletes of the indices ddb2os writes (OpenSearch's default is 60s): how long "
     "OpenSearch remembers a deleted document's version. ddb2os refuses to start unless "
     "http_timeout_ms is at most half of it, so a write from a worker that lost its lease, already "
     "in flight when it lost it, lands while the new owner's delete is still remembered. Set it "
     "to the indices' value when you raise index.gc_deletes.",
     false, false, NULL},
    {"pg_conninfo", D2O_CONF_STR, OFF(pg_conninfo), "", 0, 0, NULL,
     "libpq connection string of the database that holds leases, checkpoints and the "
     "dead-letter queue (host=... dbname=... or postgresql://...). Empty uses the PG* "
     "environment variables.",
     false, true, NULL},
    {"pg_iam_auth", D2O_CONF_BOOL, OFF(pg_iam_auth), "false", 0, 0, NULL,
     "Log in to an RDS or Aurora PostgreSQL database with IAM authentication: every connection "
     "sends a fresh token (valid 15 minutes) signed with the AWS credentials for aws_region, so "
     "no database password exists. pg_conninfo must name host and user (the user needs the "
     "rds_iam role) and should ask for sslmode=require.",
     false, false, NULL},
    {"lease_ms", D2O_CONF_MS, OFF(lease_ms), "10s", 1000, 600000, NULL,
     "How long a shard lease lasts without renewal, by the database's clock. Workers renew every "
     "third of it and stop working a shard they could not renew before it can expire; a dead "
     "worker's shards are taken over after about this long.",
     false, false, NULL},
    {"workers", D2O_CONF_INT, OFF(workers), "0", 0, 64, NULL,
     "Worker processes the supervisor (ddb2os run) forks; 0 means one per CPU. Each worker holds "
     "its own leases and drives all its shards from one event loop.",
     false, false, NULL},
    {"task_id", D2O_CONF_STR, OFF(task_id), "", 0, 0, NULL,
     "Name of this supervisor in the workers table and in lease owners (<task_id>:<pid>). Empty "
     "uses the ECS task id when running on ECS, else the host name.",
     false, false, validate_task_id},
    {"initial_position", D2O_CONF_ENUM, OFF(initial_position), "TRIM_HORIZON", 0, 0, positions,
     "Where the first shards of a stream new to the lease table are read from: TRIM_HORIZON (all "
     "retained records), LATEST (only new ones; closed shards are skipped) or AT_TIMESTAMP "
     "(initial_timestamp). Shards created later by a reshard always start at TRIM_HORIZON.",
     false, false, NULL},
    {"initial_timestamp", D2O_CONF_STR, OFF(initial_timestamp), "", 0, 0, NULL,
     "For initial_position = AT_TIMESTAMP: an RFC 3339 time such as 2026-11-01T00:00:00Z.", false,
     false, validate_timestamp},
    {"renew_ms", D2O_CONF_MS, OFF(renew_ms), "0", 0, 300000, NULL,
     "How often a worker renews its leases, heartbeats and balances; 0 means a third of lease_ms. "
     "Must be below lease_ms.",
     false, false, NULL},
    {"shard_sync_ms", D2O_CONF_MS, OFF(shard_sync_ms), "30s", 1000, 3600000, NULL,
     "How often one worker (elected by an advisory lock) lists the stream's shards and creates "
     "lease rows for new ones. A shard that ends is followed at once through its child shards.",
     false, false, NULL},
    {"poll_min_ms", D2O_CONF_MS, OFF(poll_min_ms), "200ms", 200, 60000, NULL,
     "Shortest time between two GetRecords calls on one shard (Kinesis allows 5 per second).",
     false, false, NULL},
    {"poll_idle_max_ms", D2O_CONF_MS, OFF(poll_idle_max_ms), "1s", 200, 60000, NULL,
     "Longest wait between GetRecords calls on an idle, caught-up shard; the wait doubles from "
     "poll_min_ms while the shard stays empty and drops back at the first record.",
     false, false, NULL},
    {"get_records_limit", D2O_CONF_INT, OFF(get_records_limit), "1000", 1, 10000, NULL,
     "Records asked for per GetRecords call.", false, false, NULL},
    {"max_pending_records", D2O_CONF_INT, OFF(max_pending_records), "5000", 1, 1000000, NULL,
     "Records of one shard read but not yet checkpointed; the shard's next GetRecords waits "
     "while it holds more. A count, kept beside memory_budget (which bounds the bytes): it "
     "caps the records a checkpoint can lag behind on one shard.",
     false, false, NULL},
    {"memory_budget", D2O_CONF_SIZE, OFF(memory_budget), "32MiB", 16 * 1024 * 1024,
     (int64_t)64 * 1024 * 1024 * 1024, NULL,
     "Bytes one worker may hold for records not yet acknowledged: GetRecords answers while "
     "they are parsed (reserved before each call from its Limit), records, documents, bulk "
     "bodies and dead-letter rows. A GetRecords starts only when the budget has room for what "
     "it can return; each shard may hold its fair share (budget / shards) and borrow what the "
     "others do not wait for. Must hold one 1 MiB record's answer (about 8 MiB) plus two "
     "bulk_max_bytes. The worker's resident size is about this plus 20 MiB.",
     false, false, NULL},
    {"drain_timeout_ms", D2O_CONF_MS, OFF(drain_timeout_ms), "20s", 0, 600000, NULL,
     "On SIGTERM, how long a worker waits for its in-flight writes before it releases its "
     "leases anyway (ECS's stopTimeout should be longer).",
     false, false, NULL},
    {"metrics_addr", D2O_CONF_STR, OFF(metrics_addr), "127.0.0.1", 0, 0, NULL,
     "Address the /metrics, /healthz and /readyz endpoint listens on (0.0.0.0 to let Prometheus "
     "scrape from outside the task).",
     false, false, validate_ipv4},
    {"metrics_port", D2O_CONF_INT, OFF(metrics_port), "9090", 0, 65535, NULL,
     "Port of the metrics and health endpoint, served by the supervisor for all its workers; 0 "
     "turns it off.",
     false, false, NULL},
    {"log_emf", D2O_CONF_BOOL, OFF(log_emf), "false", 0, 0, NULL,
     "Also write CloudWatch Embedded Metric Format lines (one per worker every 60 s).", false,
     false, NULL},
    {"log_file", D2O_CONF_STR, OFF(log_file), "", 0, 0, NULL,
     "File the log lines are appended to; empty writes them to standard error (what ECS "
     "collects). SIGHUP reopens the file, for log rotation.",
     false, false, NULL},
    {"log_format", D2O_CONF_ENUM, OFF(log_format), "json", 0, 0, log_formats,
     "json writes one JSON object per line (for ECS and CloudWatch); text is for terminals.", true,
     false, NULL},
    {"log_level", D2O_CONF_ENUM, OFF(log_level), "info", 0, 0, log_levels,
     "Lowest level written: error, warn, info or debug.", true, false, NULL},
    {"log_debug", D2O_CONF_STR, OFF(log_debug), "", 0, 0, NULL,
     "Debug categories written at level debug, separated by commas: kinesis, lease, sink, dlq, "
     "aws, pg, all.",
     true, false, validate_debug},
};

const size_t d2o_conf_table_len = D2O_ARRAY_SIZE(d2o_conf_table);
