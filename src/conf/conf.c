#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "d2o/buf.h"
#include "d2o/budget.h"
#include "d2o/conf.h"
#include "d2o/log.h"
#include "d2o/util.h"

#define FIELD(c, e, type) ((type *)(void *)((char *)(c) + (e)->offset))

static void free_map(struct d2o_kv **map, size_t *n)
{
    size_t i;

    for (i = 0; i < *n; i++) {
        free((*map)[i].key);
        free((*map)[i].value);
    }
    free(*map);
    *map = NULL;
    *n = 0;
}

static void free_kvlist(struct d2o_kvlist *l)
{
    free_map(&l->items, &l->n);
}

const char *d2o_kvlist_get(const struct d2o_kvlist *l, const char *key)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, key) == 0) {
            return l->items[i].value;
        }
    }
    return NULL;
}

void d2o_conf_free(struct d2o_config *c)
{
    size_t i;

    if (!c) {
        return;
    }
    for (i = 0; i < d2o_conf_table_len; i++) {
        const struct d2o_conf_entry *e = &d2o_conf_table[i];

        if (e->type == D2O_CONF_STR) {
            char **p = FIELD(c, e, char *);

            free(*p);
            *p = NULL;
        } else if (e->type == D2O_CONF_MAP) {
            free_kvlist(FIELD(c, e, struct d2o_kvlist));
        }
    }
}

int d2o_conf_init(struct d2o_config *c)
{
    char err[256];
    size_t i;

    memset(c, 0, sizeof(*c));
    for (i = 0; i < d2o_conf_table_len; i++) {
        const struct d2o_conf_entry *e = &d2o_conf_table[i];
        int r = d2o_conf_set(c, e->name, e->def ? e->def : "", "default", err, sizeof(err));

        if (r < 0) {
            d2o_conf_free(c);
            return r;
        }
    }
    return 0;
}

static bool key_eq(const char *table_key, const char *key)
{
    for (; *table_key && *key; table_key++, key++) {
        char k = *key == '-' ? '_' : *key;

        if (*table_key != k) {
            return false;
        }
    }
    return *table_key == '\0' && *key == '\0';
}

const struct d2o_conf_entry *d2o_conf_find(const char *key)
{
    size_t i;

    for (i = 0; i < d2o_conf_table_len; i++) {
        if (key_eq(d2o_conf_table[i].name, key)) {
            return &d2o_conf_table[i];
        }
    }
    return NULL;
}

static const char *suggest(const char *key)
{
    char norm[128];
    const char *best = NULL;
    unsigned best_d = 4;
    size_t i;

    for (i = 0; key[i] && i < sizeof(norm) - 1; i++) {
        norm[i] = key[i] == '-' ? '_' : (char)tolower((unsigned char)key[i]);
    }
    norm[i] = '\0';
    for (i = 0; i < d2o_conf_table_len; i++) {
        unsigned d = d2o_edit_distance(norm, d2o_conf_table[i].name);

        if (d < best_d) {
            best_d = d;
            best = d2o_conf_table[i].name;
        }
    }
    return best;
}

/* Parses "<number><unit>" with the unit table given; the number may not be negative. */
static int parse_scaled(const char *v, const char *const *units, const int64_t *mult, int64_t *out)
{
    size_t digits = 0, i;
    int64_t n;

    while (v[digits] >= '0' && v[digits] <= '9') {
        digits++;
    }
    if (digits == 0 || digits > 18) {
        return -EINVAL;
    }
    if (d2o_parse_i64n(v, digits, 0, INT64_MAX, &n) < 0) {
        return -EINVAL;
    }
    for (i = 0; units[i]; i++) {
        if (strcmp(v + digits, units[i]) == 0) {
            if (mult[i] != 0 && n > INT64_MAX / mult[i]) {
                return -ERANGE;
            }
            *out = n * mult[i];
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_ms(const char *v, int64_t *out)
{
    static const char *const units[] = {"", "ms", "s", "m", "h", NULL};
    static const int64_t mult[] = {1, 1, 1000, 60000, 3600000};

    return parse_scaled(v, units, mult, out);
}

static int parse_size(const char *v, int64_t *out)
{
    static const char *const units[] = {"",  "b",   "B",  "k", "K", "KiB", "kB", "m",
                                        "M", "MiB", "MB", "g", "G", "GiB", "GB", NULL};
    static const int64_t mult[] = {1,       1,       1,       1024,    1024,
                                   1024,    1024,    1 << 20, 1 << 20, 1 << 20,
                                   1 << 20, 1 << 30, 1 << 30, 1 << 30, 1 << 30};

    return parse_scaled(v, units, mult, out);
}

static int parse_map(const char *v, struct d2o_kv **out, size_t *n_out, char *why, size_t n)
{
    struct d2o_kv *map = NULL;
    size_t count = 0;
    const char *p = v;
    int r = 0;

    while (*p) {
        size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        struct d2o_kv *grown;

        if (len == 0) {
            p++;
            continue;
        }
        if (!eq || eq == p || eq == p + len - 1) {
            snprintf(why, n, "entry '%.*s' is not key=value", (int)len, p);
            r = -EINVAL;
            goto out;
        }
        grown = realloc(map, (count + 1) * sizeof(*map));
        if (!grown) {
            r = -ENOMEM;
            goto out;
        }
        map = grown;
        map[count].key = strndup(p, (size_t)(eq - p));
        map[count].value = strndup(eq + 1, (size_t)(p + len - eq - 1));
        count++;
        if (!map[count - 1].key || !map[count - 1].value) {
            r = -ENOMEM;
            goto out;
        }
        p += len;
    }
    *out = map;
    *n_out = count;
    map = NULL;
    count = 0;
out:
    free_map(&map, &count);
    return r;
}

static void describe_range(const struct d2o_conf_entry *e, char *buf, size_t n)
{
    size_t i, used = 0;

    switch (e->type) {
    case D2O_CONF_INT:
    case D2O_CONF_MS:
    case D2O_CONF_SIZE:
        snprintf(buf, n, "%lld to %lld%s", (long long)e->min, (long long)e->max,
                 e->type == D2O_CONF_MS     ? " ms"
                 : e->type == D2O_CONF_SIZE ? " bytes"
                                            : "");
        break;
    case D2O_CONF_BOOL:
        snprintf(buf, n, "true or false");
        break;
    case D2O_CONF_ENUM:
        buf[0] = '\0';
        for (i = 0; e->choices[i] && used < n; i++) {
            int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "one of ", e->choices[i]);

            if (w < 0) {
                break;
            }
            used += (size_t)w;
        }
        break;
    case D2O_CONF_MAP:
        snprintf(buf, n, "key=value pairs separated by commas");
        break;
    default:
        snprintf(buf, n, "text");
        break;
    }
}

int d2o_conf_set(struct d2o_config *c, const char *key, const char *value, const char *source,
                 char *errstr, size_t errstr_size)
{
    const struct d2o_conf_entry *e = d2o_conf_find(key);
    const char *shown;
    char why[256] = "";
    char range[256];
    int64_t num = 0;
    int r = 0;

    if (!e) {
        const char *s = suggest(key);

        if (s) {
            snprintf(errstr, errstr_size, "%s: unknown configuration key '%s' (did you mean '%s'?)",
                     source, key, s);
        } else {
            snprintf(errstr, errstr_size, "%s: unknown configuration key '%s'", source, key);
        }
        return -ENOENT;
    }
    shown = e->secret ? "(secret)" : value;
    describe_range(e, range, sizeof(range));
    switch (e->type) {
    case D2O_CONF_STR: {
        char *copy;

        if (e->validate && e->validate(value, why, sizeof(why)) < 0) {
            r = -EINVAL;
            break;
        }
        copy = strdup(value);
        if (!copy) {
            return -ENOMEM;
        }
        free(*FIELD(c, e, char *));
        *FIELD(c, e, char *) = copy;
        if (e->secret) {
            d2o_log_add_secret(value);
        }
        break;
    }
    case D2O_CONF_INT:
        r = d2o_parse_i64(value, e->min, e->max, &num);
        break;
    case D2O_CONF_MS:
        r = parse_ms(value, &num);
        break;
    case D2O_CONF_SIZE:
        r = parse_size(value, &num);
        break;
    case D2O_CONF_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0 ||
            strcmp(value, "on") == 0) {
            *FIELD(c, e, bool) = true;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
                   strcmp(value, "no") == 0 || strcmp(value, "off") == 0) {
            *FIELD(c, e, bool) = false;
        } else {
            r = -EINVAL;
        }
        break;
    case D2O_CONF_ENUM: {
        size_t i;

        r = -EINVAL;
        for (i = 0; e->choices[i]; i++) {
            if (strcmp(value, e->choices[i]) == 0) {
                *FIELD(c, e, int) = (int)i;
                r = 0;
                break;
            }
        }
        break;
    }
    case D2O_CONF_MAP: {
        struct d2o_kvlist l = {NULL, 0};

        r = parse_map(value, &l.items, &l.n, why, sizeof(why));
        if (r == -ENOMEM) {
            return r;
        }
        if (r == 0) {
            free_kvlist(FIELD(c, e, struct d2o_kvlist));
            *FIELD(c, e, struct d2o_kvlist) = l;
        }
        break;
    }
    }
    if (r == 0 && (e->type == D2O_CONF_INT || e->type == D2O_CONF_MS || e->type == D2O_CONF_SIZE)) {
        if (num < e->min || num > e->max) {
            r = -ERANGE;
        } else {
            *FIELD(c, e, int64_t) = num;
        }
    }
    if (r < 0) {
        snprintf(errstr, errstr_size, "%s: %s = '%s' is not valid: %s%saccepted: %s", source,
                 e->name, shown, why, why[0] ? "; " : "", range);
        return -EINVAL;
    }
    return 0;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n')) {
        *--end = '\0';
    }
    return s;
}

/*
 * The value part of a line, in place: a quoted value ("..." with \" and \\ escapes, or '...'
 * taken literally) may be followed only by blanks and a comment; an unquoted value ends where a
 * '#' follows a blank (or at the end of the line) and loses its trailing blanks. Returns NULL
 * with the reason in why.
 */
static char *parse_value(char *v, char *why, size_t n)
{
    char quote = *v, *in, *out, *rest;

    if (quote != '"' && quote != '\'') {
        for (in = v; *in; in++) {
            if (*in == '#' && (in == v || in[-1] == ' ' || in[-1] == '\t')) {
                *in = '\0';
                break;
            }
        }
        return trim(v);
    }
    for (in = out = v + 1; *in && *in != quote; in++) {
        if (quote == '"' && *in == '\\') {
            if (in[1] != '"' && in[1] != '\\') {
                snprintf(why, n,
                         "unknown escape '\\%c' in a double-quoted value (only \\\" and \\\\)",
                         in[1] ? in[1] : ' ');
                return NULL;
            }
            in++;
        }
        *out++ = *in;
    }
    if (*in != quote) {
        snprintf(why, n, "the value's closing %c is missing", quote);
        return NULL;
    }
    rest = trim(in + 1);
    if (*rest && *rest != '#') {
        snprintf(why, n, "unexpected '%.40s' after the quoted value", rest);
        return NULL;
    }
    *out = '\0';
    return v + 1;
}

int d2o_conf_load_file(struct d2o_config *c, const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "re");
    unsigned *seen = NULL;
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    struct stat st;
    char eb[128];
    int r = 0;

    if (!f) {
        r = -errno;
        snprintf(errstr, errstr_size, "cannot read config file '%s': %s", path,
                 d2o_strerror(r, eb, sizeof(eb)));
        return r;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(errstr, errstr_size, "config file '%s' is a directory, not a file", path);
        fclose(f);
        return -EISDIR;
    }
    seen = calloc(d2o_conf_table_len, sizeof(*seen));
    if (!seen) {
        fclose(f);
        return -ENOMEM;
    }
    errno = 0;
    while (getline(&line, &cap, f) >= 0) {
        const struct d2o_conf_entry *e;
        char *key, *value, *eq;
        char source[512], why[160];

        lineno++;
        key = trim(line);
        if (*key == '\0' || *key == '#') {
            continue;
        }
        eq = strchr(key, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "%s:%u: expected 'key = value', got '%.80s'", path,
                     lineno, key);
            r = -EINVAL;
            break;
        }
        *eq = '\0';
        key = trim(key);
        value = parse_value(trim(eq + 1), why, sizeof(why));
        if (!value) {
            snprintf(errstr, errstr_size, "%s:%u: %s = ...: %s", path, lineno, key, why);
            r = -EINVAL;
            break;
        }
        e = d2o_conf_find(key);
        if (e && seen[e - d2o_conf_table]) {
            snprintf(errstr, errstr_size, "%s:%u: %s is set a second time (first on line %u)", path,
                     lineno, e->name, seen[e - d2o_conf_table]);
            r = -EINVAL;
            break;
        }
        if (e) {
            seen[e - d2o_conf_table] = lineno;
        }
        snprintf(source, sizeof(source), "%s:%u", path, lineno);
        r = d2o_conf_set(c, key, value, source, errstr, errstr_size);
        if (r < 0) {
            break;
        }
    }
    if (r == 0 && ferror(f)) {
        r = errno ? -errno : -EIO;
        snprintf(errstr, errstr_size, "cannot read config file '%s': %s", path,
                 d2o_strerror(r, eb, sizeof(eb)));
    }
    free(seen);
    free(line);
    fclose(f);
    return r;
}

int d2o_conf_validate(const struct d2o_config *c, char *errstr, size_t errstr_size)
{
    int64_t renew = c->renew_ms ? c->renew_ms : c->lease_ms / 3;

    if (!*c->stream_name) {
        snprintf(errstr, errstr_size, "stream_name is empty: set the %s to read",
                 c->source == D2O_SOURCE_DYNAMODB_STREAMS ? "table (or its stream ARN)"
                                                          : "Kinesis stream");
        return -EINVAL;
    }
    if (c->source == D2O_SOURCE_DYNAMODB_STREAMS && strncmp(c->stream_name, "arn:", 4) == 0 &&
        !strstr(c->stream_name, ":table/")) {
        snprintf(errstr, errstr_size,
                 "stream_name '%.200s' is not a DynamoDB stream ARN (arn:aws:dynamodb:<region>:"
                 "<account>:table/<table>/stream/<label>) or a table name, which source = "
                 "dynamodb-streams needs",
                 c->stream_name);
        return -EINVAL;
    }
    if (c->source == D2O_SOURCE_DYNAMODB_STREAMS && c->initial_position != D2O_POS_TRIM_HORIZON) {
        snprintf(errstr, errstr_size,
                 "initial_position %s cannot be used with source = dynamodb-streams: DynamoDB "
                 "Streams has no AT_TIMESTAMP iterator, which ddb2os stores LATEST and "
                 "timestamps as so that every owner of a shard starts at the same place; use "
                 "TRIM_HORIZON (the stream keeps 24 hours)",
                 c->initial_position == D2O_POS_LATEST ? "LATEST" : "AT_TIMESTAMP");
        return -EINVAL;
    }
    if (renew >= c->lease_ms - c->lease_ms / 10) {
        snprintf(errstr, errstr_size,
                 "renew_ms %lld must be below lease_ms %lld less a tenth (leases must be renewed "
                 "before they can expire)",
                 (long long)renew, (long long)c->lease_ms);
        return -EINVAL;
    }
    if (c->http_timeout_ms > c->opensearch_gc_deletes_ms / 2) {
        /* A bulk request that started before its worker lost the lease can land up to
         * http_timeout_ms later; the new owner's delete must still be remembered then. */
        snprintf(errstr, errstr_size,
                 "http_timeout_ms %lld must be at most half of opensearch_gc_deletes_ms %lld (a "
                 "write in flight when its lease is lost could land after OpenSearch forgot a "
                 "newer delete, and bring the document back)",
                 (long long)c->http_timeout_ms, (long long)c->opensearch_gc_deletes_ms);
        return -EINVAL;
    }
    if ((uint64_t)c->memory_budget <
        d2o_budget_call_cost(1, D2O_BUDGET_RECORD_MAX) + 2 * (uint64_t)c->bulk_max_bytes) {
        snprintf(errstr, errstr_size,
                 "memory_budget %lld is too small: it must hold one GetRecords answer of a 1 MiB "
                 "record (%zu bytes while parsed) and two bulk bodies of bulk_max_bytes %lld, "
                 "at least %llu",
                 (long long)c->memory_budget, d2o_budget_call_cost(1, D2O_BUDGET_RECORD_MAX),
                 (long long)c->bulk_max_bytes,
                 (unsigned long long)(d2o_budget_call_cost(1, D2O_BUDGET_RECORD_MAX) +
                                      2 * (uint64_t)c->bulk_max_bytes));
        return -EINVAL;
    }
    if (c->initial_position == D2O_POS_AT_TIMESTAMP && !*c->initial_timestamp) {
        snprintf(errstr, errstr_size, "initial_position AT_TIMESTAMP needs initial_timestamp");
        return -EINVAL;
    }
    return 0;
}

void d2o_conf_apply_log(const struct d2o_config *c)
{
    unsigned cats = 0;
    const char *bad;
    size_t bad_len;

    d2o_log_set_format((enum d2o_log_format)c->log_format);
    d2o_log_set_level((enum d2o_log_level)c->log_level);
    if (d2o_log_categories_from_list(c->log_debug, &cats, &bad, &bad_len) == 0) {
        d2o_log_set_categories(cats);
    }
}

static bool entry_equal(const struct d2o_conf_entry *e, const struct d2o_config *a,
                        const struct d2o_config *b)
{
    const struct d2o_kvlist *la, *lb;
    size_t i;

    switch (e->type) {
    case D2O_CONF_STR:
        return strcmp(*FIELD(a, e, char *), *FIELD(b, e, char *)) == 0;
    case D2O_CONF_INT:
    case D2O_CONF_MS:
    case D2O_CONF_SIZE:
        return *FIELD(a, e, int64_t) == *FIELD(b, e, int64_t);
    case D2O_CONF_BOOL:
        return *FIELD(a, e, bool) == *FIELD(b, e, bool);
    case D2O_CONF_ENUM:
        return *FIELD(a, e, int) == *FIELD(b, e, int);
    case D2O_CONF_MAP:
        la = FIELD(a, e, struct d2o_kvlist);
        lb = FIELD(b, e, struct d2o_kvlist);
        if (la->n != lb->n) {
            return false;
        }
        for (i = 0; i < la->n; i++) {
            if (strcmp(la->items[i].key, lb->items[i].key) != 0 ||
                strcmp(la->items[i].value, lb->items[i].value) != 0) {
                return false;
            }
        }
        return true;
    }
    return true;
}

size_t d2o_conf_changed(const struct d2o_config *a, const struct d2o_config *b, bool reloadable,
                        char *names, size_t size)
{
    size_t i, n = 0, used = 0;

    if (size) {
        names[0] = '\0';
    }
    for (i = 0; i < d2o_conf_table_len; i++) {
        const struct d2o_conf_entry *e = &d2o_conf_table[i];
        int w;

        if (e->reloadable != reloadable || entry_equal(e, a, b)) {
            continue;
        }
        n++;
        w = snprintf(names + used, size - used, "%s%s", used ? ", " : "", e->name);
        if (w > 0 && (size_t)w < size - used) {
            used += (size_t)w;
        }
    }
    return n;
}

int d2o_conf_env_name(const struct d2o_conf_entry *e, char *buf, size_t size)
{
    size_t i, n = strlen(e->name);

    if (size < n + 8) {
        return -E2BIG;
    }
    memcpy(buf, "DDB2OS_", 7);
    for (i = 0; i < n; i++) {
        buf[7 + i] = (char)toupper((unsigned char)e->name[i]);
    }
    buf[7 + n] = '\0';
    return 0;
}

int d2o_conf_load_env(struct d2o_config *c, char *const *envp, char *errstr, size_t errstr_size)
{
    size_t i;

    for (i = 0; envp && envp[i]; i++) {
        const char *kv = envp[i];
        const char *eq = strchr(kv, '=');
        char key[128], source[160];
        size_t j, kl;
        int r;

        if (strncmp(kv, "DDB2OS_", 7) != 0 || !eq) {
            continue;
        }
        kl = (size_t)(eq - kv - 7);
        if (kl == 0 || kl >= sizeof(key)) {
            snprintf(errstr, errstr_size, "environment: unusable variable name '%.*s'",
                     (int)(eq - kv), kv);
            return -EINVAL;
        }
        for (j = 0; j < kl; j++) {
            key[j] = (char)tolower((unsigned char)kv[7 + j]);
        }
        key[kl] = '\0';
        snprintf(source, sizeof(source), "environment %.*s", (int)(eq - kv), kv);
        r = d2o_conf_set(c, key, eq + 1, source, errstr, errstr_size);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static char flag_names[64][48];

const char *d2o_conf_flag_name(size_t i)
{
    size_t j;

    if (i >= d2o_conf_table_len || i >= D2O_ARRAY_SIZE(flag_names)) {
        return NULL;
    }
    if (flag_names[i][0] == '\0') {
        for (j = 0; d2o_conf_table[i].name[j] && j < sizeof(flag_names[i]) - 1; j++) {
            char ch = d2o_conf_table[i].name[j];

            flag_names[i][j] = ch == '_' ? '-' : ch;
        }
        flag_names[i][j] = '\0';
    }
    return flag_names[i];
}

struct option *d2o_conf_long_options(const struct option *extra)
{
    size_t n_extra = 0, i;
    struct option *opts;

    while (extra && extra[n_extra].name) {
        n_extra++;
    }
    opts = calloc(d2o_conf_table_len + n_extra + 1, sizeof(*opts));
    if (!opts) {
        return NULL;
    }
    for (i = 0; i < d2o_conf_table_len; i++) {
        opts[i].name = d2o_conf_flag_name(i);
        opts[i].has_arg = required_argument;
        opts[i].flag = NULL;
        opts[i].val = D2O_CONF_OPT_BASE + (int)i;
    }
    for (i = 0; i < n_extra; i++) {
        opts[d2o_conf_table_len + i] = extra[i];
    }
    return opts;
}

char *d2o_conf_index_for_table(const struct d2o_config *c, const char *table)
{
    const char *mapped = d2o_kvlist_get(&c->index_map, table);
    size_t i;
    char *out;

    if (mapped) {
        return strdup(mapped);
    }
    out = strdup(table);
    for (i = 0; out && out[i]; i++) {
        out[i] = (char)tolower((unsigned char)out[i]);
    }
    return out;
}

static const char *type_name(enum d2o_conf_type t)
{
    switch (t) {
    case D2O_CONF_STR:
        return "string";
    case D2O_CONF_INT:
        return "integer";
    case D2O_CONF_BOOL:
        return "boolean";
    case D2O_CONF_ENUM:
        return "enum";
    case D2O_CONF_MS:
        return "duration";
    case D2O_CONF_SIZE:
        return "size";
    case D2O_CONF_MAP:
        return "map";
    }
    return "?";
}

int d2o_conf_doc(struct d2o_buf *out)
{
    size_t i;
    int r = 0;

    r |= d2o_buf_puts(
        out, "# ddb2os configuration reference\n\n"
             "Generated by `ddb2os config-doc` from the table in src/conf/conf_table.c; "
             "do not edit by hand.\n\n"
             "Every key can be set in the config file (`key = value`, `-c FILE`), as an "
             "environment variable, or as a command-line flag. Later sources win: "
             "default, file, environment, flag. Durations take ms, s, m or h; sizes take "
             "k, KiB, M, MiB, G or GiB. `ddb2os check-config` makes the same checks as "
             "`ddb2os run` and exits 78 on the first problem.\n\n"
             "## The config file\n\n"
             "One `key = value` per line; blanks around the key, the `=` and the value "
             "are ignored. A line starting with `#` is a comment, and so is the rest of a "
             "line from a `#` that follows a blank (`stream_name = books # main table` "
             "sets `books`). To keep blanks or a ` #`, quote the value: `\"...\"` "
             "(write `\\\"` for a quote and `\\\\` for a backslash) or `'...'` (taken "
             "literally); only a comment may follow the closing quote. A key set twice, an "
             "unknown key, a missing closing quote and a directory given as the file are "
             "errors (exit 78, with the file and line). `Reload: yes` below marks the keys "
             "that SIGHUP applies to a running daemon; a change to any other key is named "
             "in the log and waits for a restart.\n\n"
             "| Key | Type | Default | Accepted | Environment | Flag | Reload |\n"
             "|---|---|---|---|---|---|---|\n");
    for (i = 0; i < d2o_conf_table_len; i++) {
        const struct d2o_conf_entry *e = &d2o_conf_table[i];
        char env[128], range[256];

        (void)d2o_conf_env_name(e, env, sizeof(env));
        describe_range(e, range, sizeof(range));
        if (e->def && e->def[0]) {
            r |= d2o_buf_printf(out, "| `%s` | %s | `%s` |", e->name, type_name(e->type), e->def);
        } else {
            r |= d2o_buf_printf(out, "| `%s` | %s | (empty) |", e->name, type_name(e->type));
        }
        r |= d2o_buf_printf(out, " %s | `%s` | `--%s` | %s |\n", range, env, d2o_conf_flag_name(i),
                            e->reloadable ? "yes" : "no");
    }
    r |= d2o_buf_puts(out, "\n## Keys\n");
    for (i = 0; i < d2o_conf_table_len; i++) {
        const struct d2o_conf_entry *e = &d2o_conf_table[i];

        r |= d2o_buf_printf(out, "\n### `%s`\n\n%s\n", e->name, e->description);
    }
    return r ? -ENOMEM : 0;
}
