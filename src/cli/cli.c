#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2o/buf.h"
#include "d2o/cli.h"
#include "d2o/conf.h"
#include "d2o/log.h"
#include "d2o/pg.h"
#include "d2o/rdsauth.h"
#include "d2o/util.h"
#include "d2o_config.h"

extern char **environ;

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);
static int cmd_config_doc(int argc, char **argv);
static int cmd_check_config(int argc, char **argv);

/* Where the configuration came from, for d2o_cli_reload: the file and the flags, in order. The
 * strings point into argv, which lives as long as the process. */
static const char *saved_file;
static struct {
    size_t entry;
    const char *value;
} saved_flags[128];
static size_t n_saved_flags;

static const struct d2o_cli_cmd commands[] = {
    {"run", "run the daemon: a supervisor and its worker processes", d2o_cmd_run},
    {"transform", "read change records on stdin, print the bulk NDJSON ddb2os would send",
     d2o_cmd_transform},
    {"migrate", "create or upgrade the PostgreSQL schema (leases, checkpoints, DLQ)",
     d2o_cmd_migrate},
    {"status", "one line per shard: owner, checkpoint age, lag, records/s, DLQ; totals",
     d2o_cmd_status},
    {"leases", "every lease row", d2o_cmd_leases},
    {"workers", "live and dead workers", d2o_cmd_workers},
    {"lease", "release a shard's lease, or assign it to a worker", d2o_cmd_lease},
    {"checkpoint", "set where a shard's next reader starts", d2o_cmd_checkpoint},
    {"dlq", "list, show, replay or discard rows of the dead-letter queue", d2o_cmd_dlq},
    {"backfill", "load a table's existing items into its index, safely beside the stream",
     d2o_cmd_backfill},
    {"verify", "compare a table with its index; --repair rewrites what differs", d2o_cmd_verify},
    {"check-config", "load the configuration, report the first problem, print the result",
     cmd_check_config},
    {"config-doc", "print the configuration reference (docs/configuration.md) in Markdown",
     cmd_config_doc},
    {"version", "print the version", cmd_version},
    {"help", "print this help", cmd_help},
};

static void print_help(FILE *f)
{
    size_t i;

    fprintf(f,
            "ddb2os %s: keeps OpenSearch indices in sync with DynamoDB tables through the\n"
            "tables' Kinesis data streams.\n\n"
            "usage: ddb2os COMMAND [OPTIONS]\n"
            "       ddb2os --version | --help\n\ncommands:\n",
            D2O_VERSION);
    for (i = 0; i < D2O_ARRAY_SIZE(commands); i++) {
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(
        f,
        "\nEvery command answers --help. Configuration keys are listed by 'ddb2os config-doc'.\n");
}

int d2o_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "ddb2os %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'ddb2os %s --help'.\n", cmd);
    return D2O_EXIT_USAGE;
}

int d2o_cli_parse(int argc, char **argv, const char *usage, const char *shortopts,
                  const struct option *extra, int (*on_opt)(int opt, const char *arg, void *ctx),
                  void *ctx, struct d2o_config *conf)
{
    static const struct option common[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
    };
    struct option *own = NULL, *opts = NULL;
    char shorts[64];
    char err[512];
    const char *config_file = NULL;
    size_t n_extra = 0, i;
    int opt, r = 0;

    while (extra && extra[n_extra].name) {
        n_extra++;
    }
    own = calloc(n_extra + D2O_ARRAY_SIZE(common) + 1, sizeof(*own));
    if (!own) {
        return D2O_EXIT_FAIL;
    }
    for (i = 0; i < D2O_ARRAY_SIZE(common); i++) {
        own[i] = common[i];
    }
    for (i = 0; i < n_extra; i++) {
        own[D2O_ARRAY_SIZE(common) + i] = extra[i];
    }
    opts = d2o_conf_long_options(own);
    if (!opts || d2o_conf_init(conf) < 0) {
        r = D2O_EXIT_FAIL;
        goto out;
    }
    /* ':' first: report a missing argument as ':', so the message can say which option. */
    snprintf(shorts, sizeof(shorts), ":c:h%s", shortopts ? shortopts : "");

    /* Pass 1: only find --config, so the file applies before environment and flags. */
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        if (opt == 'c') {
            config_file = optarg;
        }
    }
    saved_file = config_file;
    n_saved_flags = 0;
    if (config_file && d2o_conf_load_file(conf, config_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "ddb2os %s: %s\n", argv[0], err);
        r = D2O_EXIT_CONFIG;
        goto out;
    }
    if (d2o_conf_load_env(conf, environ, err, sizeof(err)) < 0) {
        fprintf(stderr, "ddb2os %s: %s\n", argv[0], err);
        r = D2O_EXIT_CONFIG;
        goto out;
    }

    /* Pass 2: flags and the command's own options, in order. */
    optind = 1;
    while ((opt = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        if (opt == 'c') {
            continue;
        }
        if (opt == 'h') {
            fputs(usage, stdout);
            r = -1;
            goto out;
        }
        if (opt == '?') {
            r = d2o_cli_usage_error(argv[0], "unknown option '%s'", argv[optind - 1]);
            goto out;
        }
        if (opt == ':') {
            r = d2o_cli_usage_error(argv[0], "option '%s' needs a value", argv[optind - 1]);
            goto out;
        }
        if (opt >= D2O_CONF_OPT_BASE && (size_t)(opt - D2O_CONF_OPT_BASE) < d2o_conf_table_len) {
            const struct d2o_conf_entry *e = &d2o_conf_table[opt - D2O_CONF_OPT_BASE];
            char source[96];

            snprintf(source, sizeof(source), "flag --%s",
                     d2o_conf_flag_name((size_t)(opt - D2O_CONF_OPT_BASE)));
            if (n_saved_flags < D2O_ARRAY_SIZE(saved_flags)) {
                saved_flags[n_saved_flags].entry = (size_t)(opt - D2O_CONF_OPT_BASE);
                saved_flags[n_saved_flags++].value = optarg;
            }
            if (d2o_conf_set(conf, e->name, optarg, source, err, sizeof(err)) < 0) {
                fprintf(stderr, "ddb2os %s: %s\n", argv[0], err);
                r = D2O_EXIT_CONFIG;
                goto out;
            }
            continue;
        }
        if (!on_opt) {
            r = d2o_cli_usage_error(argv[0], "unexpected option '%s'", argv[optind - 1]);
            goto out;
        }
        r = on_opt(opt, optarg, ctx);
        if (r != 0) {
            goto out;
        }
    }
out:
    free(opts);
    free(own);
    if (r == 0 && conf->pg_iam_auth && d2o_rds_pg_auth_setup(conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "ddb2os %s: %s\n", argv[0], err);
        r = D2O_EXIT_CONFIG;
    }
    if (r != 0) {
        d2o_conf_free(conf);
    } else {
        d2o_conf_apply_log(conf);
    }
    return r;
}

int d2o_cli_reload(struct d2o_config *conf, char *errstr, size_t errstr_size)
{
    size_t i;
    int r = d2o_conf_init(conf);

    if (r < 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return r;
    }
    if (saved_file) {
        r = d2o_conf_load_file(conf, saved_file, errstr, errstr_size);
    }
    if (r == 0) {
        r = d2o_conf_load_env(conf, environ, errstr, errstr_size);
    }
    for (i = 0; r == 0 && i < n_saved_flags; i++) {
        char source[96];

        snprintf(source, sizeof(source), "flag --%s", d2o_conf_flag_name(saved_flags[i].entry));
        r = d2o_conf_set(conf, d2o_conf_table[saved_flags[i].entry].name, saved_flags[i].value,
                         source, errstr, errstr_size);
    }
    if (r == 0) {
        r = d2o_conf_validate(conf, errstr, errstr_size);
    }
    if (r < 0) {
        d2o_conf_free(conf);
    }
    return r;
}

int d2o_cli_start(int argc, char **argv, const char *usage, const struct option *extra,
                  int (*on_opt)(int opt, const char *arg, void *ctx), void *ctx,
                  struct d2o_config *conf)
{
    int r = d2o_cli_parse(argc, argv, usage, NULL, extra, on_opt, ctx, conf);

    if (r == -1) {
        return D2O_EXIT_OK;
    }
    if (r != 0) {
        return r;
    }
    if (optind < argc) {
        d2o_conf_free(conf);
        return d2o_cli_usage_error(argv[0], "unexpected argument '%s'", argv[optind]);
    }
    return -1;
}

static int cmd_version(int argc, char **argv)
{
    printf("ddb2os %s\n", D2O_VERSION);
    return D2O_EXIT_OK;
}

static int cmd_help(int argc, char **argv)
{
    print_help(stdout);
    return D2O_EXIT_OK;
}

static int cmd_config_doc(int argc, char **argv)
{
    static const char usage[] = "usage: ddb2os config-doc\n\n"
                                "Prints the configuration reference in Markdown; "
                                "docs/configuration.md is this output.\n";
    struct d2o_config conf;
    struct d2o_buf out = D2O_BUF_INIT;
    int r = d2o_cli_start(argc, argv, usage, NULL, NULL, NULL, &conf);

    if (r >= 0) {
        return r;
    }
    r = d2o_conf_doc(&out);
    if (r == 0) {
        fwrite(out.data, 1, out.len, stdout);
    }
    d2o_buf_free(&out);
    d2o_conf_free(&conf);
    return r == 0 ? D2O_EXIT_OK : D2O_EXIT_FAIL;
}

static int on_json_opt(int opt, const char *arg, void *ctx)
{
    (void)arg;
    if (opt != 'j') {
        return D2O_EXIT_USAGE;
    }
    *(bool *)ctx = true;
    return 0;
}

/* One key's value: as text, or (json) as a JSON value of its type. */
static int put_value(struct d2o_buf *b, const struct d2o_conf_entry *e,
                     const struct d2o_config *conf, bool json)
{
    const char *p = (const char *)conf + e->offset;
    int r = 0;

    switch (e->type) {
    case D2O_CONF_STR: {
        const char *v = *(char *const *)(const void *)p;

        v = e->secret && v[0] ? "(secret)" : v;
        return json ? d2o_buf_json_str(b, v, strlen(v)) : d2o_buf_puts(b, v);
    }
    case D2O_CONF_INT:
    case D2O_CONF_MS:
    case D2O_CONF_SIZE:
        return d2o_buf_printf(b, "%lld", (long long)*(const int64_t *)(const void *)p);
    case D2O_CONF_BOOL:
        return d2o_buf_puts(b, *(const bool *)(const void *)p ? "true" : "false");
    case D2O_CONF_ENUM: {
        const char *v = e->choices[*(const int *)(const void *)p];

        return json ? d2o_buf_json_str(b, v, strlen(v)) : d2o_buf_puts(b, v);
    }
    case D2O_CONF_MAP: {
        const struct d2o_kvlist *l = (const struct d2o_kvlist *)(const void *)p;
        size_t j;

        r |= json ? d2o_buf_putc(b, '{') : 0;
        for (j = 0; j < l->n; j++) {
            const struct d2o_kv *kv = &l->items[j];

            if (json) {
                r |= d2o_buf_puts(b, j ? "," : "");
                r |= d2o_buf_json_str(b, kv->key, strlen(kv->key));
                r |= d2o_buf_putc(b, ':');
                r |= d2o_buf_json_str(b, kv->value, strlen(kv->value));
            } else {
                r |= d2o_buf_printf(b, "%s%s=%s", j ? "," : "", kv->key, kv->value);
            }
        }
        r |= json ? d2o_buf_putc(b, '}') : 0;
        return r;
    }
    }
    return 0;
}

static int cmd_check_config(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os check-config [--json] [-c FILE] [--KEY=VALUE ...]\n\n"
        "Loads the configuration the daemon would use (defaults, file, DDB2OS_* environment,\n"
        "flags) and makes the same checks as 'ddb2os run'. Reports the first problem with its\n"
        "key, value and reason, and otherwise prints every key with its value (--json: one\n"
        "object, numbers and booleans as JSON values). Secrets are shown as (secret).\n"
        "Exit 0 if valid, 78 if not.\n";
    static const struct option extra[] = {
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    struct d2o_config conf;
    struct d2o_buf b = D2O_BUF_INIT;
    char err[512];
    bool json = false;
    size_t i;
    int e = 0, r = d2o_cli_start(argc, argv, usage, extra, on_json_opt, &json, &conf);

    if (r >= 0) {
        return r;
    }
    if (d2o_conf_validate(&conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "ddb2os check-config: %s\n", err);
        d2o_conf_free(&conf);
        return D2O_EXIT_CONFIG;
    }
    e |= json ? d2o_buf_putc(&b, '{') : 0;
    for (i = 0; i < d2o_conf_table_len; i++) {
        const struct d2o_conf_entry *en = &d2o_conf_table[i];

        if (json) {
            e |= d2o_buf_puts(&b, i ? ",\n " : "");
            e |= d2o_buf_json_str(&b, en->name, strlen(en->name));
            e |= d2o_buf_putc(&b, ':');
        } else {
            e |= d2o_buf_printf(&b, "%s = ", en->name);
        }
        e |= put_value(&b, en, &conf, json);
        e |= json ? 0 : d2o_buf_putc(&b, '\n');
    }
    e |= json ? d2o_buf_puts(&b, "}\n") : 0;
    if (e == 0) {
        /* pg_conninfo is printed, but never the password inside it. */
        d2o_pg_register_password(conf.pg_conninfo);
        d2o_log_redact(b.data);
        fwrite(b.data, 1, strlen(b.data), stdout);
    }
    d2o_buf_free(&b);
    d2o_conf_free(&conf);
    return e ? D2O_EXIT_FAIL : D2O_EXIT_OK;
}

int d2o_cli_main(int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        print_help(stderr);
        return D2O_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        return cmd_version(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        return cmd_help(argc - 1, argv + 1);
    }
    for (i = 0; i < D2O_ARRAY_SIZE(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "ddb2os: unknown command '%s'\n\n", argv[1]);
    print_help(stderr);
    return D2O_EXIT_USAGE;
}
