/*
 * What checkpoints cost in PostgreSQL: every shard of a worker moves its checkpoint in every turn,
 * for 1 to 200 shards, against the real PostgreSQL in a schema of its own (a fresh lease table
 * for every case).
 *
 *   batch       the worker's way: prepared statements of at most D2O_CHECKPOINT_BATCH_MAX shards
 *               each, fenced per shard (d2o_checkpoint_batch); the worker sends one per loop turn
 *               (one round trip), here they go one after the other
 *   one-stmt    all the shards in one prepared statement, whatever their number (what the worker
 *               sent before the bound; only for more shards than the bound)
 *   dlq         as batch, each shard passing one DLQ row (the statement with the DLQ insert;
 *               a tenth of the turns)
 *   unprepared  as batch, the statement planned every time (what d2o_dlq_commit sends)
 *   per-shard   the transaction per shard the worker ran before (BEGIN, SELECT ... FOR UPDATE
 *               NOWAIT with the fence, UPDATE, COMMIT): four round trips per shard
 *
 * Printed per case: statements per turn, the wall time of one statement (p50, p99), the CPU time
 * the PostgreSQL backend spent on it (p50, p99; from /proc/PID/schedstat when the server runs on
 * this machine, else "-"), and the wall time until every shard of the turn is checkpointed (p50,
 * p99). On a loaded machine the wall time includes waiting for a core; the backend's CPU time
 * does not. With a network between the worker and the database each statement adds its RTT.
 *
 * usage: bench_checkpoint CONNINFO [ROUNDS]   (default 2000)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_pg.h"
#include "d2o/clock.h"
#include "d2o/dlq.h"
#include "d2o/pg.h"

#define MAX_SHARDS 200

/* CPU time (ns) the backend has run, or -1 when its schedstat cannot be read. */
static int64_t backend_cpu_ns(int pid)
{
    char path[64];
    long long ns = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
    f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%lld", &ns) != 1) {
            ns = -1;
        }
        fclose(f);
    }
    return ns;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static void shard_name(char *buf, size_t n, int i)
{
    snprintf(buf, n, "shardId-%012d", i);
}

static void seed(PGconn *c, int shards)
{
    char q[512];
    int i;

    bench_pg_sql(c, "TRUNCATE leases, dlq");
    for (i = 0; i < shards; i++) {
        char id[32];

        shard_name(id, sizeof(id), i);
        snprintf(q, sizeof(q),
                 "INSERT INTO leases (application, stream, shard_id, owner, lease_counter,"
                 " expires_at, checkpoint) VALUES ('bench', 's', '%s', 'w1', 7,"
                 " now() + interval '1 hour', '1000')",
                 id);
        bench_pg_sql(c, q);
    }
}

/* One statement for the shards [from, to): its wall time; the backend's CPU time in *cpu_us
 * (-1 when unknown). With dlq, each shard passes one DLQ row. */
static int64_t statement(PGconn *c, int pid, int from, int to, int64_t pos, bool prepared, bool dlq,
                         int64_t *cpu_us)
{
    struct d2o_checkpoint_batch *b = d2o_checkpoint_batch_new("bench", "w1");
    static const char raw[] = "{\"eventName\":\"INSERT\",\"dynamodb\":{}}";
    int outcome[MAX_SHARDS];
    char err[512], p[32];
    int64_t t0, c0;
    int i;

    snprintf(p, sizeof(p), "%" PRId64, pos);
    for (i = from; i < to; i++) {
        struct d2o_dlq_row row = {0};
        char id[32];

        shard_name(id, sizeof(id), i);
        row.sequence_number = p;
        row.index_name = "books";
        row.doc_id = id;
        row.raw = raw;
        row.raw_len = sizeof(raw) - 1;
        row.error_class = "mapper_parsing_exception";
        row.error_message = "failed to parse field";
        row.attempts = 1;
        if (d2o_checkpoint_batch_add(b, "s", id, 7, p, 0, &row, dlq ? 1 : 0, err, sizeof(err)) <
            0) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
    }
    c0 = backend_cpu_ns(pid);
    t0 = d2o_mono_us();
    if (d2o_checkpoint_batch_exec(c, b, prepared, outcome, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    t0 = d2o_mono_us() - t0;
    *cpu_us = c0 < 0 ? -1 : (backend_cpu_ns(pid) - c0) / 1000;
    for (i = 0; i < to - from; i++) {
        if (outcome[i] != 0) {
            fprintf(stderr, "shard %d refused (%d)\n", from + i, outcome[i]);
            exit(1);
        }
    }
    d2o_checkpoint_batch_free(b);
    return t0;
}

static void must(PGconn *c, PGresult *r, ExecStatusType want)
{
    if (PQresultStatus(r) != want) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

static int64_t turn_per_shard(PGconn *c, int shards, int64_t pos)
{
    char p[32];
    int64_t t0 = d2o_mono_us();
    int i;

    snprintf(p, sizeof(p), "%" PRId64, pos);
    for (i = 0; i < shards; i++) {
        char id[32];
        const char *v[3] = {id, p, NULL};

        shard_name(id, sizeof(id), i);
        must(c, PQexec(c, "BEGIN"), PGRES_COMMAND_OK);
        must(c,
             PQexecParams(c,
                          "SELECT checkpoint FROM leases WHERE application = 'bench' AND stream"
                          " = 's' AND shard_id = $1 AND owner = 'w1' AND lease_counter = 7"
                          " AND expires_at > clock_timestamp() FOR UPDATE NOWAIT",
                          1, NULL, v, NULL, NULL, 0),
             PGRES_TUPLES_OK);
        must(c,
             PQexecParams(c,
                          "UPDATE leases SET checkpoint = $2, owner_switches = 0,"
                          " checkpointed_at = now(), updated_at = now() WHERE application ="
                          " 'bench' AND stream = 's' AND shard_id = $1 AND owner = 'w1'"
                          " AND lease_counter = 7",
                          2, NULL, v, NULL, NULL, 0),
             PGRES_COMMAND_OK);
        must(c, PQexec(c, "COMMIT"), PGRES_COMMAND_OK);
    }
    return d2o_mono_us() - t0;
}

enum { W_BATCH, W_ONE, W_DLQ, W_UNPREPARED, W_PER_SHARD, W_WAYS };

static void print_pct(int64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    if (v[0] < 0) {
        printf(" %9s %9s", "-", "-");
    } else {
        printf(" %9" PRId64 " %9" PRId64, v[n / 2], v[n * 99 / 100]);
    }
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("D2O_TEST_PG");
    int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2000;
    static const int cases[] = {1, 8, 64, 200};
    static const char *const names[] = {"batch", "one-stmt", "dlq", "unprepared", "per-shard"};
    char err[512];
    int64_t *lat, *cpu, *turn;
    PGconn *c;
    size_t k;
    int pid;

    if (!base || rounds < 100) {
        fprintf(stderr, "usage: bench_checkpoint CONNINFO [ROUNDS >= 100]\n");
        return 2;
    }
    lat = calloc((size_t)rounds * (MAX_SHARDS / D2O_CHECKPOINT_BATCH_MAX + 1), sizeof(*lat));
    cpu = calloc((size_t)rounds * (MAX_SHARDS / D2O_CHECKPOINT_BATCH_MAX + 1), sizeof(*cpu));
    turn = calloc((size_t)rounds, sizeof(*turn));
    c = bench_pg_schema(base, "bench_checkpoint");
    pid = PQbackendPID(c);
    if (!lat || !cpu || !turn) {
        return 1;
    }
    if (d2o_checkpoint_batch_prepare(c, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("at most %d shards a statement\n", D2O_CHECKPOINT_BATCH_MAX);
    printf("%-10s %6s %5s %9s %9s %9s %9s %9s %9s\n", "way", "shards", "stmts", "p50 us", "p99 us",
           "srv p50", "srv p99", "turn p50", "turn p99");
    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        int way;

        for (way = 0; way < W_WAYS; way++) {
            int shards = cases[k], i, per = rounds, bound = D2O_CHECKPOINT_BATCH_MAX, stmts;
            size_t n = 0;

            if (way == W_ONE) {
                if (shards <= bound) {
                    continue; /* the same as batch */
                }
                bound = shards;
            }
            if (way == W_DLQ || way == W_PER_SHARD) {
                per = rounds / 10;
            }
            if (way == W_PER_SHARD && shards > 8) {
                per = rounds / 50; /* 4 round trips per shard: fewer turns suffice */
            }
            stmts = way == W_PER_SHARD ? 4 * shards : (shards + bound - 1) / bound;
            seed(c, shards);
            for (i = 0; i < per; i++) {
                int64_t pos = 2000 + i + (int64_t)k * rounds * W_WAYS + (int64_t)way * rounds;
                int from;

                if (way == W_PER_SHARD) {
                    int64_t c0 = backend_cpu_ns(pid);

                    turn[i] = lat[n] = turn_per_shard(c, shards, pos);
                    cpu[n++] = c0 < 0 ? -1 : (backend_cpu_ns(pid) - c0) / 1000;
                    continue;
                }
                turn[i] = 0;
                for (from = 0; from < shards; from += bound) {
                    int to = from + bound < shards ? from + bound : shards;

                    lat[n] = statement(c, pid, from, to, pos, way != W_UNPREPARED, way == W_DLQ,
                                       &cpu[n]);
                    turn[i] += lat[n++];
                }
            }
            printf("%-10s %6d %5d", names[way], shards, stmts);
            print_pct(lat, n);
            print_pct(cpu, n);
            print_pct(turn, (size_t)per);
            printf("\n");
            fflush(stdout);
        }
    }
    PQfinish(c);
    bench_pg_drop(base, "bench_checkpoint");
    free(lat);
    free(cpu);
    free(turn);
    return 0;
}
