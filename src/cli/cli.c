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
#include "d2o/util.h"
#include "d2o_config.h"

extern char **environ;

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);
static int cmd_config_doc(int argc, char **argv);
static int cmd_check_config(int argc, char **argv);
static void apply_log_config(const struct d2o_config *conf);

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
    if (r != 0) {
        d2o_conf_free(conf);
    } else {
        apply_log_config(conf);
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

static void apply_log_config(const struct d2o_config *conf)
{
    unsigned cats = 0;
    const char *bad;
    size_t bad_len;

    d2o_log_set_format((enum d2o_log_format)conf->log_format);
    d2o_log_set_level((enum d2o_log_level)conf->log_level);
    if (d2o_log_categories_from_list(conf->log_debug, &cats, &bad, &bad_len) == 0) {
        d2o_log_set_categories(cats);
    }
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

static int cmd_check_config(int argc, char **argv)
{
    static const char usage[] =
        "usage: ddb2os check-config [-c FILE] [--KEY=VALUE ...]\n\n"
        "Loads the configuration the daemon would use (defaults, file, DDB2OS_* environment,\n"
        "flags), reports the first problem with its key, value and reason, and otherwise prints\n"
        "every key with its value. Secrets are shown as (secret). Exit 0 if valid, 78 if not.\n";
    struct d2o_config conf;
    size_t i;
    int r = d2o_cli_start(argc, argv, usage, NULL, NULL, NULL, &conf);

    if (r >= 0) {
        return r;
    }
    for (i = 0; i < d2o_conf_table_len; i++) {
        const struct d2o_conf_entry *e = &d2o_conf_table[i];
        const char *p = (const char *)&conf + e->offset;

        printf("%s = ", e->name);
        switch (e->type) {
        case D2O_CONF_STR:
            printf("%s\n", e->secret && (*(char *const *)(const void *)p)[0]
                               ? "(secret)"
                               : *(char *const *)(const void *)p);
            break;
        case D2O_CONF_INT:
        case D2O_CONF_MS:
        case D2O_CONF_SIZE:
            printf("%lld\n", (long long)*(const int64_t *)(const void *)p);
            break;
        case D2O_CONF_BOOL:
            printf("%s\n", *(const bool *)(const void *)p ? "true" : "false");
            break;
        case D2O_CONF_ENUM:
            printf("%s\n", e->choices[*(const int *)(const void *)p]);
            break;
        case D2O_CONF_MAP: {
            const struct d2o_kvlist *l = (const struct d2o_kvlist *)(const void *)p;
            size_t j;

            for (j = 0; j < l->n; j++) {
                printf("%s%s=%s", j ? "," : "", l->items[j].key, l->items[j].value);
            }
            printf("\n");
            break;
        }
        }
    }
    d2o_conf_free(&conf);
    return D2O_EXIT_OK;
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
