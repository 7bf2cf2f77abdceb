/*
 * Configuration: one table in code (src/conf/conf_table.c) drives the config file, the DDB2OS_*
 * environment overrides, the command-line flags and docs/configuration.md.
 *
 * Precedence, lowest first: built-in default, config file, environment, command line.
 * The supervisor builds a struct d2o_config before fork() and every process treats it as
 * read-only afterwards.
 */
#ifndef D2O_CONF_H
#define D2O_CONF_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct d2o_buf;

enum d2o_conf_type {
    D2O_CONF_STR,
    D2O_CONF_INT,
    D2O_CONF_BOOL,
    D2O_CONF_ENUM,
    D2O_CONF_MS,   /* duration in milliseconds; accepts 250ms, 10s, 5m, 1h or a bare number of ms */
    D2O_CONF_SIZE, /* bytes; accepts 512, 64k, 5MiB, 5M, 1GiB */
    D2O_CONF_MAP,  /* key=value,key=value */
};

enum d2o_delete_mode { D2O_DELETE_DELETE = 0, D2O_DELETE_TOMBSTONE = 1 };
enum d2o_ttl_deletes { D2O_TTL_DELETE = 0, D2O_TTL_KEEP = 1 };
enum d2o_os_auth { D2O_OS_AUTH_NONE = 0, D2O_OS_AUTH_BASIC = 1, D2O_OS_AUTH_SIGV4 = 2 };
enum d2o_os_service { D2O_OS_SERVICE_ES = 0, D2O_OS_SERVICE_AOSS = 1 };
/* Where change records come from. */
enum d2o_source {
    D2O_SOURCE_KINESIS = 0,          /* the table's Kinesis Data Streams destination */
    D2O_SOURCE_DYNAMODB_STREAMS = 1, /* the table's own DynamoDB stream */
};

enum d2o_initial_position {
    D2O_POS_TRIM_HORIZON = 0,
    D2O_POS_LATEST = 1,
    D2O_POS_AT_TIMESTAMP = 2
};

struct d2o_kv {
    char *key;
    char *value;
};

/* A MAP setting: key=value pairs in the order given. */
struct d2o_kvlist {
    struct d2o_kv *items;
    size_t n;
};

struct d2o_config {
    /* identity */
    char *application;
    int source; /* enum d2o_source */
    char *stream_name;
    /* AWS */
    char *aws_region;
    char *kinesis_endpoint;
    char *streams_endpoint;
    char *dynamodb_endpoint;
    /* OpenSearch */
    char *opensearch_url;
    int opensearch_auth;
    char *opensearch_user;
    char *opensearch_password;
    int opensearch_service;
    char *tls_ca_file;
    bool tls_verify;
    /* documents */
    struct d2o_kvlist index_map;
    struct d2o_kvlist key_schema;
    int delete_mode;
    int ttl_deletes;
    int64_t stream_retention_ms;  /* deletes are remembered for stream_retention_ms + */
    int64_t dlq_replay_window_ms; /* dlq_replay_window_ms (delete_mode = delete) */
    /* bulk sink and retries */
    int64_t bulk_max_bytes;
    int64_t bulk_max_records;
    int64_t bulk_flush_ms;
    int64_t retry_base_ms;
    int64_t retry_cap_ms;
    int64_t item_max_attempts;
    int64_t http_connect_timeout_ms;
    int64_t http_timeout_ms;
    int64_t opensearch_gc_deletes_ms;
    int64_t http_max_response_bytes;
    /* PostgreSQL and leases */
    char *pg_conninfo;
    bool pg_iam_auth;
    int64_t lease_ms;
    /* worker pool */
    int64_t workers;
    char *task_id;
    int initial_position;
    char *initial_timestamp;
    int64_t renew_ms;
    int64_t shard_sync_ms;
    int64_t poll_min_ms;
    int64_t poll_idle_max_ms;
    int64_t get_records_limit;
    int64_t max_pending_records;
    int64_t memory_budget;
    int64_t drain_timeout_ms;
    /* metrics and health */
    char *metrics_addr;
    int64_t metrics_port;
    bool log_emf;
    /* logging */
    char *log_file;
    int log_format;
    int log_level;
    char *log_debug;
};

struct d2o_conf_entry {
    const char *name; /* snake_case key; flag is --name-with-dashes */
    enum d2o_conf_type type;
    size_t offset;              /* into struct d2o_config */
    const char *def;            /* default, as text; NULL = unset */
    int64_t min, max;           /* INT, MS, SIZE */
    const char *const *choices; /* ENUM: NULL-terminated names, index = stored value */
    const char *description;
    bool reloadable; /* applied on SIGHUP without a restart */
    bool secret;     /* never printed; registered with the log redactor */
    /* Extra check after parsing; returns 0 or writes the reason. */
    int (*validate)(const char *value, char *why, size_t why_size);
};

extern const struct d2o_conf_entry d2o_conf_table[];
extern const size_t d2o_conf_table_len;

/* Exit code for a configuration error: the supervisor never respawns a worker that exits with it.
 */
#define D2O_EXIT_CONFIG 78

/* Sets every key to its default. Returns 0, or -ENOMEM. */
__attribute__((warn_unused_result)) int d2o_conf_init(struct d2o_config *c);
void d2o_conf_free(struct d2o_config *c);

/*
 * Sets one key from text. source names where it came from ("file x.conf:12", "env DDB2OS_X",
 * "flag --x") and goes into the error. An unknown key gets a did-you-mean suggestion.
 * Returns 0, -ENOENT (unknown key), -EINVAL (bad value) or -ENOMEM; errstr says which and why.
 */
__attribute__((warn_unused_result)) int d2o_conf_set(struct d2o_config *c, const char *key,
                                                     const char *value, const char *source,
                                                     char *errstr, size_t errstr_size);
/*
 * Reads a `key = value` file. Blank lines and lines starting with '#' are skipped; blanks around
 * the key and the value are ignored; an unquoted value ends at a '#' that follows a blank (a
 * comment); "..." (with \" and \\ escapes) or '...' (literal) keep blanks and '#'. A key set
 * twice, an unterminated quote, text after a closing quote and a directory are errors.
 */
__attribute__((warn_unused_result)) int d2o_conf_load_file(struct d2o_config *c, const char *path,
                                                           char *errstr, size_t errstr_size);
/* The checks between keys that `run` and `check-config` both make. Returns 0, or -EINVAL with
 * the keys, values and reason in errstr. */
__attribute__((warn_unused_result)) int d2o_conf_validate(const struct d2o_config *c, char *errstr,
                                                          size_t errstr_size);
/* Sets the log format, level and debug categories from c. */
void d2o_conf_apply_log(const struct d2o_config *c);
/* How many keys with this reloadable flag differ between a and b; their names, comma-separated,
 * into names. */
size_t d2o_conf_changed(const struct d2o_config *a, const struct d2o_config *b, bool reloadable,
                        char *names, size_t size);
/* Applies every DDB2OS_<KEY> variable of envp (NULL-terminated, like environ). */
__attribute__((warn_unused_result)) int d2o_conf_load_env(struct d2o_config *c, char *const *envp,
                                                          char *errstr, size_t errstr_size);

/* "DDB2OS_" + upper-case key. */
int d2o_conf_env_name(const struct d2o_conf_entry *e, char *buf, size_t size);
/* Finds an entry by key; dashes and underscores are equivalent. NULL if unknown. */
const struct d2o_conf_entry *d2o_conf_find(const char *key);

/*
 * Long options for getopt_long: every table key as --key-with-dashes=VALUE (has_arg required,
 * val = D2O_CONF_OPT_BASE + index), followed by extra (terminated by a zero entry). The caller
 * frees the array (and nothing else: names point into static storage).
 */
#define D2O_CONF_OPT_BASE 1000
struct option *d2o_conf_long_options(const struct option *extra);
/* The flag name of entry i ("delete-mode"), static storage. */
const char *d2o_conf_flag_name(size_t i);

/* The index for a table: index_map entry, else the table name lowercased. Returns malloc'd text. */
char *d2o_conf_index_for_table(const struct d2o_config *c, const char *table);
/* The value of key in a MAP setting, or NULL. Borrowed. */
const char *d2o_kvlist_get(const struct d2o_kvlist *l, const char *key);

/* Writes the Markdown reference (docs/configuration.md) for the table. */
__attribute__((warn_unused_result)) int d2o_conf_doc(struct d2o_buf *out);

#endif
