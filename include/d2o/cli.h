/*
 * The ddb2os command line: subcommands dispatched from one table, each with getopt_long parsing.
 *
 * Exit codes: 0 success, 1 the work failed, 2 wrong arguments (usage on stderr),
 * D2O_EXIT_CONFIG (78) bad configuration.
 */
#ifndef D2O_CLI_H
#define D2O_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "d2o/conf.h"

#define D2O_EXIT_OK 0
#define D2O_EXIT_FAIL 1
#define D2O_EXIT_USAGE 2

struct d2o_cli_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

/* Entry point used by main(): dispatches argv[1]. */
int d2o_cli_main(int argc, char **argv);

/*
 * Parses a subcommand's arguments: -c/--config FILE, --help, every configuration key as a flag,
 * and the subcommand's own options (extra, shortopts). Builds *conf from default < file <
 * environment < flags. on_opt is called for each of the subcommand's own options and returns
 * 0, or D2O_EXIT_USAGE to stop. After return, optind indexes the first operand.
 *
 * Returns 0 (the caller owns *conf and frees it with d2o_conf_free), a D2O_EXIT_* code (usage
 * and config errors are already printed), or -1 when --help was given (usage already printed to
 * stdout). On any non-zero return *conf holds nothing to free.
 */
int d2o_cli_parse(int argc, char **argv, const char *usage, const char *shortopts,
                  const struct option *extra, int (*on_opt)(int opt, const char *arg, void *ctx),
                  void *ctx, struct d2o_config *conf);

/*
 * d2o_cli_parse() for a command that takes no operands. Returns -1 when the command goes on (the
 * caller owns *conf), or the exit code to return: 0 after --help, 2 for wrong arguments (also an
 * unexpected operand), 78 for a bad setting; then *conf holds nothing to free.
 */
int d2o_cli_start(int argc, char **argv, const char *usage, const struct option *extra,
                  int (*on_opt)(int opt, const char *arg, void *ctx), void *ctx,
                  struct d2o_config *conf);

/*
 * Builds *conf again from the sources the last d2o_cli_parse() used (the same file, the
 * environment as it is now, the same flags) and validates it (d2o_conf_validate). SIGHUP uses it.
 * Returns 0 (the caller frees *conf) or a negative errno with the reason in errstr.
 */
__attribute__((warn_unused_result)) int d2o_cli_reload(struct d2o_config *conf, char *errstr,
                                                       size_t errstr_size);

/* Prints "ddb2os CMD: message" and the hint to use --help on stderr; returns D2O_EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) int d2o_cli_usage_error(const char *cmd, const char *fmt,
                                                              ...);

/* Subcommands that live in their own files of src/cli. */
int d2o_cmd_run(int argc, char **argv);
int d2o_cmd_transform(int argc, char **argv);
int d2o_cmd_migrate(int argc, char **argv);
int d2o_cmd_dlq(int argc, char **argv);
int d2o_cmd_status(int argc, char **argv);
int d2o_cmd_leases(int argc, char **argv);
int d2o_cmd_workers(int argc, char **argv);
int d2o_cmd_lease(int argc, char **argv);
int d2o_cmd_checkpoint(int argc, char **argv);
int d2o_cmd_backfill(int argc, char **argv);
int d2o_cmd_verify(int argc, char **argv);

#endif
