/*
 * ddb2os dlq list|show|replay|discard: the dead-letter queue for operators.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "d2o/buf.h"
#include "d2o/bulk.h"
#include "d2o/cli.h"
#include "d2o/clock.h"
#include "d2o/creds.h"
#include "d2o/deletes.h"
#include "d2o/dlq.h"
#include "d2o/document.h"
#include "d2o/http.h"
#include "d2o/pg.h"
#include "d2o/record.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"

static const char usage[] =
    "usage: ddb2os dlq list|show|replay|discard [FILTERS] [--json] [--dry-run] [-c FILE] ...\n"
    "\n"
    "  list      one line per row, the newest first (with --limit N: the N newest): id,\n"
    "            time, shard, table, document, error, HTTP status, attempts, state, message\n"
    "  show      every field of the rows, the raw record included\n"
    "  replay    send the rows' records again through the transform and the bulk sink with\n"
    "            their original external versions (a stale replay is a harmless 409; a row\n"
    "            refused before it had one gets the record's own), and record each result on\n"
    "            its row; pending rows only unless --state is given\n"
    "  discard   mark the rows discarded (needs a filter, or --all)\n"
    "\n"
    "filters: --id N --shard SHARD --table TABLE --error-class CLASS --state STATE\n"
    "         --since TIME --until TIME (on the time the row was written; any PostgreSQL\n"
    "         timestamp, e.g. '2026-11-25 03:00+00') --limit N\n"
    "--json prints JSON (list, show); --dry-run prints what replay would send, or what discard\n"
    "would mark, and changes nothing. Exit status: 0, 1 if some replay failed or nothing\n"
    "matched 'show', 2 on wrong arguments.\n";

struct opts {
    struct d2o_dlq_filter f;
    bool json, dry_run, all;
};

static int on_opt(int opt, const char *arg, void *ctx)
{
    struct opts *o = ctx;
    int64_t v;

    switch (opt) {
    case 'i':
    case 'n':
        if (d2o_parse_i64(arg, 1, INT64_MAX, &v) < 0) {
            return d2o_cli_usage_error("dlq", "--%s needs a positive number, got '%s'",
                                       opt == 'i' ? "id" : "limit", arg);
        }
        if (opt == 'i') {
            o->f.id = v;
        } else {
            o->f.limit = v;
        }
        return 0;
    case 's':
        o->f.shard_id = arg;
        return 0;
    case 't':
        o->f.table_name = arg;
        return 0;
    case 'e':
        o->f.error_class = arg;
        return 0;
    case 'S':
        if (strcmp(arg, D2O_DLQ_PENDING) != 0 && strcmp(arg, D2O_DLQ_REPLAYED) != 0 &&
            strcmp(arg, D2O_DLQ_DISCARDED) != 0) {
            return d2o_cli_usage_error("dlq", "--state is pending, replayed or discarded, not '%s'",
                                       arg);
        }
        o->f.state = arg;
        return 0;
    case 'a':
        o->f.since = arg;
        return 0;
    case 'b':
        o->f.until = arg;
        return 0;
    case 'j':
        o->json = true;
        return 0;
    case 'd':
        o->dry_run = true;
        return 0;
    case 'A':
        o->all = true;
        return 0;
    default:
        return D2O_EXIT_USAGE;
    }
}

static int json_field(struct d2o_buf *b, const char *key, const char *value)
{
    int r = d2o_buf_printf(b, ",\"%s\":", key);

    if (r == 0) {
        r = value ? d2o_buf_json_str(b, value, strlen(value)) : d2o_buf_puts(b, "null");
    }
    return r;
}

/* The raw record as standard base64 (malloc'd), for bytes that are not text. */
static char *base64(const unsigned char *p, size_t n)
{
    char *out = n < INT_MAX / 2 ? malloc(4 * ((n + 2) / 3) + 1) : NULL;

    if (out) {
        EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    }
    return out;
}

/* "raw_record": the text when it is UTF-8 without NUL, else base64; "raw_record_encoding"
 * says which. */
static int json_raw(struct d2o_buf *b, const struct d2o_dlq_entry *e)
{
    char *enc;
    int r;

    if (d2o_utf8_text((const char *)e->raw, e->raw_len)) {
        r = d2o_buf_puts(b, ",\"raw_record\":");
        r |= d2o_buf_json_str(b, (const char *)e->raw, e->raw_len);
        return r | d2o_buf_puts(b, ",\"raw_record_encoding\":\"utf-8\"");
    }
    enc = base64(e->raw, e->raw_len);
    if (!enc) {
        return -ENOMEM;
    }
    r = d2o_buf_printf(b, ",\"raw_record\":\"%s\",\"raw_record_encoding\":\"base64\"", enc);
    free(enc);
    return r;
}

static int print_json(const struct d2o_dlq_entry *rows, size_t n, bool with_raw)
{
    struct d2o_buf b = D2O_BUF_INIT;
    size_t i;
    int r = d2o_buf_putc(&b, '[');

    for (i = 0; i < n && r == 0; i++) {
        const struct d2o_dlq_entry *e = &rows[i];

        r |= d2o_buf_printf(&b, "%s{\"id\":%lld", i ? ",\n " : "", (long long)e->id);
        r |= json_field(&b, "created_at", e->created_at);
        r |= json_field(&b, "stream", e->stream);
        r |= json_field(&b, "shard", e->shard_id);
        r |= json_field(&b, "sequence_number", e->sequence_number);
        r |= json_field(&b, "table", e->table_name);
        r |= json_field(&b, "index", e->index_name);
        r |= json_field(&b, "doc_id", e->doc_id);
        r |= d2o_buf_printf(&b, ",\"version\":%lld,\"http_status\":%d,\"attempts\":%d",
                            (long long)e->version, e->http_status, e->attempts);
        r |= json_field(&b, "error_class", e->error_class);
        r |= json_field(&b, "error_message", e->error_message);
        r |= json_field(&b, "first_failed_at", e->first_failed_at);
        r |= json_field(&b, "last_failed_at", e->last_failed_at);
        r |= json_field(&b, "state", e->state);
        r |= json_field(&b, "replay_result", e->replay_result);
        if (with_raw) {
            r |= json_raw(&b, e);
        }
        r |= d2o_buf_putc(&b, '}');
    }
    r |= d2o_buf_puts(&b, "]\n");
    if (r == 0) {
        fwrite(b.data, 1, b.len, stdout);
    }
    d2o_buf_free(&b);
    return r;
}

/* Column names are the --json keys; the newest rows come first (list). */
static void print_table(const struct d2o_dlq_entry *rows, size_t n)
{
    size_t i;

    printf("%-8s %-19s %-22s %-16s %-20s %-26s %11s %8s %-9s %s\n", "id", "created_at", "shard",
           "table", "doc_id", "error_class", "http_status", "attempts", "state", "error_message");
    for (i = 0; i < n; i++) {
        const struct d2o_dlq_entry *e = &rows[i];

        char line[320];
        size_t len;

        snprintf(line, sizeof(line),
                 "%-8lld %-19.19s %-22.22s %-16.16s %-20.20s %-26.26s %11d %8d %-9s %.60s",
                 (long long)e->id, e->created_at, e->shard_id, e->table_name, e->doc_id,
                 e->error_class, e->http_status, e->attempts, e->state, e->error_message);
        for (len = strlen(line); len > 0 && line[len - 1] == ' '; len--) {
        }
        printf("%.*s\n", (int)len, line);
    }
    printf("(%zu row%s)\n", n, n == 1 ? "" : "s");
}

/* A text field of show: '-' when empty, so no line ends in blanks. */
static const char *nz(const char *s)
{
    return s && *s ? s : "-";
}

static void print_show(const struct d2o_dlq_entry *rows, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const struct d2o_dlq_entry *e = &rows[i];

        printf("id:              %lld\nstate:           %s\ncreated_at:      %s\n"
               "stream:          %s\nshard:           %s\nsequence_number: %s\n"
               "partition_key:   %s\ntable:           %s\nindex:           %s\n"
               "doc_id:          %s\nversion:         %lld\nerror_class:     %s\n"
               "http_status:     %d\nerror_message:   %s\nattempts:        %d\n"
               "first_failed_at: %s\nlast_failed_at:  %s\nreplay_result:   %s\n"
               "raw_record:      ",
               (long long)e->id, nz(e->state), nz(e->created_at), nz(e->stream), nz(e->shard_id),
               nz(e->sequence_number), nz(e->partition_key), nz(e->table_name), nz(e->index_name),
               nz(e->doc_id), (long long)e->version, nz(e->error_class), e->http_status,
               nz(e->error_message), e->attempts, nz(e->first_failed_at), nz(e->last_failed_at),
               nz(e->replay_result));
        if (e->raw_len == 0) {
            printf("-\n\n");
        } else if (d2o_utf8_text((const char *)e->raw, e->raw_len)) {
            printf("%.*s\n\n", (int)e->raw_len, (const char *)e->raw);
        } else {
            /* Binary or NUL-leading bytes would print as nothing, or garble the terminal. */
            char *enc = base64(e->raw, e->raw_len);

            printf("(%zu bytes, not UTF-8 text; base64) %s\n\n", e->raw_len, enc ? enc : "?");
            free(enc);
        }
    }
}

struct replay_row {
    const struct d2o_dlq_entry *e;
    int done;
    char result[512];
};

static void on_replayed(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    struct replay_row *rr = cookie;

    (void)arg;
    switch (res->outcome) {
    case D2O_BULK_DONE:
        rr->done = 1;
        snprintf(rr->result, sizeof(rr->result), "indexed (HTTP %d)", res->status);
        break;
    case D2O_BULK_STALE:
        rr->done = 1;
        /* Status 0: dropped before sending, by the delete store. */
        snprintf(rr->result, sizeof(rr->result), "%s",
                 res->status == 0 ? "stale: the document was deleted at a newer version"
                                  : "stale: a newer version is already indexed");
        break;
    case D2O_BULK_ABSENT:
        rr->done = 1;
        snprintf(rr->result, sizeof(rr->result), "deleted: the document was already absent");
        break;
    case D2O_BULK_DLQ:
    case D2O_BULK_DROPPED: /* replay sets no keep: never */
        rr->done = -1;
        snprintf(rr->result, sizeof(rr->result), "failed: %s: %s", res->error_class,
                 res->error_message ? res->error_message : "");
        break;
    }
}

static int replay_add(struct d2o_bulk *sink, const struct d2o_doc_op *op, struct replay_row *rr)
{
    struct d2o_bulk_item item = {0};

    item.ndjson = op->ndjson.data;
    item.len = op->ndjson.len;
    item.index = op->index;
    item.id = op->id;
    item.is_delete = op->action == D2O_DOC_DELETE;
    item.cookie = rr;
    item.version = op->version;
    return d2o_bulk_add_item(sink, &item);
}

static int replay(PGconn *c, struct d2o_config *conf, struct d2o_dlq_entry *rows, size_t n,
                  bool dry_run)
{
    struct replay_row *rr = calloc(n ? n : 1, sizeof(*rr));
    struct d2o_http *http = NULL;
    struct d2o_bulk *sink = NULL;
    struct d2o_creds *creds = NULL;
    struct d2o_sigv4_signer *signer = NULL;
    struct d2o_bulk_opts o;
    struct d2o_deletes_ctx deletes = {0};
    char err[512];
    size_t i, ok = 0, failed = 0;
    int rc = D2O_EXIT_FAIL;

    if (!rr) {
        return D2O_EXIT_FAIL;
    }
    if (!dry_run) {
        struct d2o_http_opts ho;

        d2o_http_opts_from_config(&ho, conf);
        if (d2o_http_global_init() < 0 || !(http = d2o_http_new(&ho, err, sizeof(err)))) {
            fprintf(stderr, "ddb2os dlq replay: %s\n", err);
            goto out;
        }
        d2o_bulk_opts_from_config(&o, conf);
        o.done = on_replayed;
        if (conf->delete_mode == D2O_DELETE_DELETE) {
            /* The same check as the workers': a replayed write older than a recorded delete is
             * dropped (stale), a replayed delete is recorded before it goes out. */
            deletes.pg = c;
            deletes.application = conf->application;
            o.filter = d2o_deletes_filter;
            o.filter_arg = &deletes;
        }
        if (conf->opensearch_auth == D2O_OS_AUTH_SIGV4) {
            const struct d2o_aws_creds *ac;
            struct d2o_creds_opts co = {0};

            co.region = conf->aws_region;
            creds = d2o_creds_new(http, &co);
            signer = d2o_sigv4_signer_new(
                conf->aws_region, conf->opensearch_service == D2O_OS_SERVICE_AOSS ? "aoss" : "es");
            if (!creds || !signer || d2o_creds_get(creds, time(NULL), &ac, err, sizeof(err)) < 0) {
                fprintf(stderr, "ddb2os dlq replay: %s\n", err);
                goto out;
            }
            o.signer = signer;
            o.creds = ac;
        }
        sink = d2o_bulk_new(http, &o, err, sizeof(err));
        if (!sink) {
            fprintf(stderr, "ddb2os dlq replay: %s\n", err);
            goto out;
        }
    }
    for (i = 0; i < n; i++) {
        struct d2o_record rec;
        struct d2o_doc_op op;
        int r;

        rr[i].e = &rows[i];
        r = d2o_record_parse((const char *)rows[i].raw, rows[i].raw_len, &rec, err, sizeof(err));
        if (r == 0) {
            /* Version 0: refused before it had one. The version is a function of the
             * record, so the replay derives the one it would have had. */
            r = rows[i].version > 0
                    ? d2o_doc_build_at(&rec, conf, rows[i].version, &op, err, sizeof(err))
                    : d2o_doc_build(&rec, conf, &op, err, sizeof(err));
            d2o_record_free(&rec);
        }
        if (r < 0) {
            rr[i].done = -1;
            snprintf(rr[i].result, sizeof(rr[i].result), "failed: cannot transform: %.400s", err);
            continue;
        }
        if (dry_run) {
            fwrite(op.ndjson.data, 1, op.ndjson.len, stdout);
        } else if (op.action == D2O_DOC_SKIP) {
            rr[i].done = 1;
            snprintf(rr[i].result, sizeof(rr[i].result), "skipped: TTL delete kept");
        } else if (replay_add(sink, &op, &rr[i]) < 0) {
            rr[i].done = -1;
            snprintf(rr[i].result, sizeof(rr[i].result), "failed: out of memory");
        }
        d2o_doc_op_free(&op);
        if (!dry_run && (i + 1) % 1000 == 0) {
            fprintf(stderr, "replay: %zu of %zu rows queued\n", i + 1, n);
            d2o_bulk_tick(sink, d2o_mono_ms());
        }
    }
    if (dry_run) {
        for (i = 0; i < n; i++) {
            if (rr[i].done < 0) {
                fprintf(stderr, "row %lld: %s\n", (long long)rows[i].id, rr[i].result);
            }
        }
        rc = D2O_EXIT_OK;
        goto out;
    }
    if (d2o_bulk_drain(sink, 600000) < 0) {
        fprintf(stderr, "ddb2os dlq replay: OpenSearch did not take every row within 10 minutes; "
                        "rows without a result stay as they were\n");
    }
    for (i = 0; i < n; i++) {
        int r;

        if (rr[i].done == 0) {
            continue;
        }
        if (rr[i].done > 0) {
            r = d2o_dlq_mark(c, rows[i].id, D2O_DLQ_REPLAYED, rr[i].result, err, sizeof(err));
            ok++;
        } else {
            r = d2o_dlq_replay_failed(c, rows[i].id, rr[i].result, err, sizeof(err));
            failed++;
            fprintf(stderr, "row %lld: %s\n", (long long)rows[i].id, rr[i].result);
        }
        if (r < 0) {
            fprintf(stderr, "ddb2os dlq replay: %s\n", err);
            goto out;
        }
    }
    fprintf(stderr, "replay: %zu rows: %zu replayed, %zu failed, %zu without a result\n", n, ok,
            failed, n - ok - failed);
    rc = failed || ok + failed < n ? D2O_EXIT_FAIL : D2O_EXIT_OK;
out:
    d2o_bulk_free(sink);
    d2o_sigv4_signer_free(signer);
    d2o_creds_free(creds);
    d2o_http_free(http);
    free(rr);
    return rc;
}

/* A --since/--until value PostgreSQL reads as a time; else -EINVAL with the flag, the value
 * and the accepted forms in err. */
static int check_time(PGconn *c, const char *flag, const char *value, char *err, size_t n)
{
    PGresult *r;
    int ok;

    if (!value) {
        return 0;
    }
    r = PQexecParams(c, "SELECT $1::timestamptz", 1, NULL, &value, NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (ok) {
        return 0;
    }
    snprintf(err, n,
             "%s '%s' is not a time: give a timestamp such as '2026-11-25 03:00+00' or "
             "2026-11-25T03:00:00Z (any PostgreSQL timestamptz)",
             flag, value);
    return -EINVAL;
}

int d2o_cmd_dlq(int argc, char **argv)
{
    static const struct option extra[] = {
        {"id", required_argument, NULL, 'i'},
        {"limit", required_argument, NULL, 'n'},
        {"shard", required_argument, NULL, 's'},
        {"table", required_argument, NULL, 't'},
        {"error-class", required_argument, NULL, 'e'},
        {"state", required_argument, NULL, 'S'},
        {"since", required_argument, NULL, 'a'},
        {"until", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},
        {"dry-run", no_argument, NULL, 'd'},
        {"all", no_argument, NULL, 'A'},
        {NULL, 0, NULL, 0},
    };
    struct opts o;
    struct d2o_config conf;
    struct d2o_dlq_entry *rows = NULL;
    size_t n = 0, i;
    PGconn *c = NULL;
    const char *action;
    char err[512];
    int r;

    memset(&o, 0, sizeof(o));
    r = d2o_cli_parse(argc, argv, usage, NULL, extra, on_opt, &o, &conf);
    if (r != 0) {
        return r == -1 ? D2O_EXIT_OK : r;
    }
    if (optind >= argc) {
        d2o_conf_free(&conf);
        return d2o_cli_usage_error("dlq", "which action: list, show, replay or discard?");
    }
    action = argv[optind];
    if (optind + 1 < argc) {
        d2o_conf_free(&conf);
        return d2o_cli_usage_error("dlq", "unexpected argument '%s'", argv[optind + 1]);
    }
    if (strcmp(action, "list") != 0 && strcmp(action, "show") != 0 &&
        strcmp(action, "replay") != 0 && strcmp(action, "discard") != 0) {
        d2o_conf_free(&conf);
        return d2o_cli_usage_error("dlq", "unknown action '%s' (list, show, replay, discard)",
                                   action);
    }
    if (strcmp(action, "discard") == 0 && !o.all && !o.f.id && !o.f.shard_id && !o.f.table_name &&
        !o.f.error_class && !o.f.since && !o.f.until) {
        d2o_conf_free(&conf);
        return d2o_cli_usage_error("dlq", "discard needs a filter (--id, --shard, ...) or --all");
    }
    o.f.application = conf.application;
    if (strcmp(action, "replay") == 0 && !o.f.state) {
        o.f.state = D2O_DLQ_PENDING;
    }
    o.f.newest_first = strcmp(action, "list") == 0;
    c = d2o_pg_connect(conf.pg_conninfo, "ddb2os dlq", err, sizeof(err));
    if (c && (check_time(c, "--since", o.f.since, err, sizeof(err)) < 0 ||
              check_time(c, "--until", o.f.until, err, sizeof(err)) < 0)) {
        PQfinish(c);
        d2o_conf_free(&conf);
        return d2o_cli_usage_error("dlq", "%s", err);
    }
    if (!c || d2o_pg_require_schema(c, err, sizeof(err)) < 0 ||
        d2o_dlq_select(c, &o.f, &rows, &n, err, sizeof(err)) < 0) {
        fprintf(stderr, "ddb2os dlq %s: %s\n", action, err);
        r = D2O_EXIT_FAIL;
        goto out;
    }
    r = D2O_EXIT_OK;
    if (strcmp(action, "list") == 0) {
        if (o.json) {
            r = print_json(rows, n, false) == 0 ? D2O_EXIT_OK : D2O_EXIT_FAIL;
        } else {
            print_table(rows, n);
        }
    } else if (strcmp(action, "show") == 0) {
        if (o.json) {
            r = print_json(rows, n, true) == 0 ? D2O_EXIT_OK : D2O_EXIT_FAIL;
        } else {
            print_show(rows, n);
        }
        if (n == 0) {
            fprintf(stderr, "ddb2os dlq show: no dead-letter row matches\n");
            r = D2O_EXIT_FAIL;
        }
    } else if (strcmp(action, "replay") == 0) {
        r = replay(c, &conf, rows, n, o.dry_run);
    } else {
        for (i = 0; i < n; i++) {
            if (o.dry_run) {
                printf("would discard row %lld\n", (long long)rows[i].id);
            } else if (d2o_dlq_mark(c, rows[i].id, D2O_DLQ_DISCARDED, "discarded by an operator",
                                    err, sizeof(err)) < 0) {
                fprintf(stderr, "ddb2os dlq discard: %s\n", err);
                r = D2O_EXIT_FAIL;
                break;
            }
        }
        fprintf(stderr, "discard: %zu row%s%s\n", n, n == 1 ? "" : "s",
                o.dry_run ? " (dry run)" : "");
    }
out:
    d2o_dlq_entries_free(rows, n);
    PQfinish(c);
    d2o_conf_free(&conf);
    return r;
}
