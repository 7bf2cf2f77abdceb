#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2o/buf.h"
#include "d2o/clock.h"
#include "d2o/log.h"
#include "d2o/util.h"

#define MAX_SECRETS 16

int d2o_log_level_current = D2O_LOG_INFO;
static enum d2o_log_format log_format = D2O_LOG_JSON;
static unsigned log_cats = 0;
static FILE *log_stream = NULL;
static char log_worker[64] = "main";
static char *secrets[MAX_SECRETS];
static size_t n_secrets = 0;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static const struct {
    const char *name;
    unsigned bit;
} cat_names[] = {
    {"kinesis", D2O_CAT_KINESIS}, {"lease", D2O_CAT_LEASE}, {"sink", D2O_CAT_SINK},
    {"dlq", D2O_CAT_DLQ},         {"aws", D2O_CAT_AWS},     {"pg", D2O_CAT_PG},
    {"all", D2O_CAT_ALL},
};

void d2o_log_set_level(enum d2o_log_level level)
{
    d2o_log_level_current = level;
}

void d2o_log_set_format(enum d2o_log_format format)
{
    log_format = format;
}

void d2o_log_set_categories(unsigned cats)
{
    log_cats = cats;
}

void d2o_log_set_stream(FILE *f)
{
    log_stream = f;
}

void d2o_log_set_worker(const char *worker)
{
    (void)d2o_strlcpy(log_worker, worker, sizeof(log_worker));
}

void d2o_log_add_secret(const char *secret)
{
    size_t i;

    if (!secret || strlen(secret) < 4 || n_secrets == MAX_SECRETS) {
        return;
    }
    for (i = 0; i < n_secrets; i++) {
        if (strcmp(secrets[i], secret) == 0) {
            return;
        }
    }
    secrets[n_secrets] = strdup(secret);
    if (secrets[n_secrets]) {
        n_secrets++;
    }
}

void d2o_log_clear_secrets(void)
{
    while (n_secrets > 0) {
        free(secrets[--n_secrets]);
        secrets[n_secrets] = NULL;
    }
}

int d2o_log_level_from_name(const char *name)
{
    size_t i;

    for (i = 0; i < D2O_ARRAY_SIZE(level_names); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int d2o_log_categories_from_list(const char *list, unsigned *out, const char **bad, size_t *bad_len)
{
    unsigned cats = 0;
    const char *p = list;

    while (*p) {
        size_t n = strcspn(p, ",");
        size_t i;
        bool found = false;

        if (n > 0) {
            for (i = 0; i < D2O_ARRAY_SIZE(cat_names); i++) {
                if (strlen(cat_names[i].name) == n && memcmp(cat_names[i].name, p, n) == 0) {
                    cats |= cat_names[i].bit;
                    found = true;
                }
            }
            if (!found) {
                *bad = p;
                *bad_len = n;
                return -1;
            }
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    *out = cats;
    return 0;
}

bool d2o_log_enabled(enum d2o_log_level level, unsigned cat)
{
    if ((int)level > d2o_log_level_current) {
        return false;
    }
    if (level == D2O_LOG_DEBUG && cat != D2O_CAT_GENERAL && !(log_cats & cat)) {
        return false;
    }
    return true;
}

void d2o_log_redact(char *s)
{
    static const char mark[] = "[redacted]";
    size_t i;

    for (i = 0; i < n_secrets; i++) {
        size_t sl = strlen(secrets[i]);
        char *hit;

        while ((hit = strstr(s, secrets[i])) != NULL) {
            size_t ml = sl < sizeof(mark) - 1 ? sl : sizeof(mark) - 1;

            memcpy(hit, mark, ml);
            memmove(hit + ml, hit + sl, strlen(hit + sl) + 1);
        }
    }
}

void d2o_log(enum d2o_log_level level, unsigned cat, const char *shard, const char *event,
             const char *fmt, ...)
{
    char msg[D2O_LOG_MAX_MSG + 16];
    char ts[40];
    struct d2o_buf line = D2O_BUF_INIT;
    FILE *out = log_stream ? log_stream : stderr;
    va_list ap;
    int n, r = 0;

    va_start(ap, fmt);
    n = vsnprintf(msg, D2O_LOG_MAX_MSG + 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if (n > D2O_LOG_MAX_MSG) {
        memcpy(msg + D2O_LOG_MAX_MSG, "...[cut]", 9);
    }
    d2o_log_redact(msg);
    if (d2o_fmt_rfc3339_ms(d2o_wall_us(), ts, sizeof(ts)) < 0) {
        ts[0] = '\0';
    }
    if (log_format == D2O_LOG_JSON) {
        r |= d2o_buf_puts(&line, "{\"ts\":\"");
        r |= d2o_buf_puts(&line, ts);
        r |= d2o_buf_printf(&line, "\",\"level\":\"%s\",\"worker\":", level_names[level]);
        r |= d2o_buf_json_str(&line, log_worker, strlen(log_worker));
        if (shard) {
            r |= d2o_buf_puts(&line, ",\"shard\":");
            r |= d2o_buf_json_str(&line, shard, strlen(shard));
        }
        r |= d2o_buf_puts(&line, ",\"event\":");
        r |= d2o_buf_json_str(&line, event, strlen(event));
        r |= d2o_buf_puts(&line, ",\"msg\":");
        r |= d2o_buf_json_str(&line, msg, strlen(msg));
        r |= d2o_buf_puts(&line, "}\n");
    } else {
        r |= d2o_buf_printf(&line, "%s %-5s %s%s%s %s: %s\n", ts, level_names[level], log_worker,
                            shard ? " " : "", shard ? shard : "", event, msg);
    }
    if (r == 0) {
        /* One write per line so lines from several processes sharing the fd do not interleave. */
        fflush(out);
        if (write(fileno(out), line.data, line.len) < 0) {
            (void)errno;
        }
    }
    d2o_buf_free(&line);
}
