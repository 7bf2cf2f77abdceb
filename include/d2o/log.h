/*
 * Logging: one line per event, JSON objects by default (what ECS and CloudWatch ingest) or plain
 * text for terminals.
 *
 * Every line carries ts, level, worker, shard (when known), event (a short machine-readable name)
 * and msg. Messages are cut at D2O_LOG_MAX_MSG bytes so a payload can never flood the log, and
 * every registered secret is replaced by "[redacted]" before the line is written.
 *
 * @process master|worker: the context (worker name, sink fd) is per process.
 */
#ifndef D2O_LOG_H
#define D2O_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum d2o_log_level {
    D2O_LOG_ERROR = 0,
    D2O_LOG_WARN = 1,
    D2O_LOG_INFO = 2,
    D2O_LOG_DEBUG = 3,
};

/* Debug categories: debug-level lines are written only for the enabled categories. */
enum d2o_log_cat {
    D2O_CAT_GENERAL = 0,
    D2O_CAT_KINESIS = 1u << 0,
    D2O_CAT_LEASE = 1u << 1,
    D2O_CAT_SINK = 1u << 2,
    D2O_CAT_DLQ = 1u << 3,
    D2O_CAT_AWS = 1u << 4,
    D2O_CAT_PG = 1u << 5,
    D2O_CAT_ALL = 0xffffu,
};

enum d2o_log_format {
    D2O_LOG_JSON = 0,
    D2O_LOG_TEXT = 1,
};

#define D2O_LOG_MAX_MSG 4096

extern int d2o_log_level_current;

void d2o_log_set_level(enum d2o_log_level level);
void d2o_log_set_format(enum d2o_log_format format);
void d2o_log_set_categories(unsigned cats);
/* Writes to this stream instead of stderr (tests); NULL restores stderr. */
void d2o_log_set_stream(FILE *f);
/* Names this process in every line ("supervisor", "w3-12345", ...). Copied. */
void d2o_log_set_worker(const char *worker);
/* Registers a secret that must never be printed (copied; up to 16, shorter than 4 chars ignored).
 */
void d2o_log_add_secret(const char *secret);
void d2o_log_clear_secrets(void);
/* Parses "error|warn|info|debug"; returns -1 if unknown. */
int d2o_log_level_from_name(const char *name);
/* Parses "kinesis,lease,sink,dlq,aws,pg,all"; returns -1 and names the bad token in *bad. */
int d2o_log_categories_from_list(const char *list, unsigned *out, const char **bad,
                                 size_t *bad_len);
/* Replaces each registered secret in s (in place, same or shorter length). */
void d2o_log_redact(char *s);

__attribute__((format(printf, 5, 6))) void d2o_log(enum d2o_log_level level, unsigned cat,
                                                   const char *shard, const char *event,
                                                   const char *fmt, ...);

bool d2o_log_enabled(enum d2o_log_level level, unsigned cat);

#define D2O_LOG_(lvl, cat, shard, event, ...)                                                      \
    do {                                                                                           \
        if (d2o_log_enabled((lvl), (cat))) {                                                       \
            d2o_log((lvl), (cat), (shard), (event), __VA_ARGS__);                                  \
        }                                                                                          \
    } while (0)

#define d2o_err(event, ...) D2O_LOG_(D2O_LOG_ERROR, D2O_CAT_GENERAL, NULL, event, __VA_ARGS__)
#define d2o_warn(event, ...) D2O_LOG_(D2O_LOG_WARN, D2O_CAT_GENERAL, NULL, event, __VA_ARGS__)
#define d2o_info(event, ...) D2O_LOG_(D2O_LOG_INFO, D2O_CAT_GENERAL, NULL, event, __VA_ARGS__)
#define d2o_debug(cat, event, ...) D2O_LOG_(D2O_LOG_DEBUG, cat, NULL, event, __VA_ARGS__)

#endif
