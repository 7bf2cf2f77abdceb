/*
 * What a loop turn's checkpoints cost in PostgreSQL: every shard of a worker moves its checkpoint
 * in one turn, for 1 to 200 shards, against the real PostgreSQL in a schema of its own.
 *
 *   batch       the worker's way: one prepared statement for all shards, fenced per shard
 *               (d2o_checkpoint_batch), one round trip per turn
 *   unprepared  the same statement planned every time (what d2o_dlq_commit sends)
 *   per-shard   the transaction per shard the worker ran before (BEGIN, SELECT ... FOR UPDATE
 *               NOWAIT with the fence, UPDATE, COMMIT): four round trips per shard
 *
 * Each case runs ROUNDS turns; printed per case: wall time per turn (p50, p99), round trips per
 * turn, and the CPU time the PostgreSQL backend spent on each turn (p50, p99; from
 * /proc/PID/schedstat when the server runs on this machine, else "-"). On a loaded machine the
 * wall time includes waiting for a core; the backend's CPU time does not. With a network between
 * the worker and the database each round trip adds its RTT.
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

    bench_pg_sql(c, "DELETE FROM leases");
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

static int64_t turn_batch(PGconn *c, int shards, int64_t pos, bool prepared)
{
    struct d2o_checkpoint_batch *b = d2o_checkpoint_batch_new("bench", "w1");
    int outcome[MAX_SHARDS];
    char err[512], p[32];
    int64_t t0;
    int i;

    snprintf(p, sizeof(p), "%" PRId64, pos);
    for (i = 0; i < shards; i++) {
        char id[32];

        shard_name(id, sizeof(id), i);
        if (d2o_checkpoint_batch_add(b, "s", id, 7, p, 0, NULL, 0, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
    }
    t0 = d2o_mono_us();
    if (d2o_checkpoint_batch_exec(c, b, prepared, outcome, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    t0 = d2o_mono_us() - t0;
    for (i = 0; i < shards; i++) {
        if (outcome[i] != 0) {
            fprintf(stderr, "shard %d refused (%d)\n", i, outcome[i]);
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

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("D2O_TEST_PG");
    int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2000;
    static const int cases[] = {1, 8, 64, 200};
    static const char *const names[] = {"batch", "unprepared", "per-shard"};
    char err[512];
    int64_t *lat, *cpu;
    PGconn *c;
    size_t k;
    int pid;

    if (!base || rounds < 100) {
        fprintf(stderr, "usage: bench_checkpoint CONNINFO [ROUNDS >= 100]\n");
        return 2;
    }
    lat = calloc((size_t)rounds, sizeof(*lat));
    cpu = calloc((size_t)rounds, sizeof(*cpu));
    c = bench_pg_schema(base, "bench_checkpoint");
    pid = PQbackendPID(c);
    if (!lat || !cpu) {
        return 1;
    }
    if (d2o_checkpoint_batch_prepare(c, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%-10s %7s %12s %12s %12s %14s %14s\n", "way", "shards", "round trips", "p50 us",
           "p99 us", "server p50 us", "server p99 us");
    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        int way;

        for (way = 0; way < 3; way++) {
            int shards = cases[k], i, per = way == 2 ? rounds / 10 : rounds;

            if (way == 2 && shards > 8) {
                per = rounds / 50; /* 4 round trips per shard: fewer turns suffice */
            }
            seed(c, shards);
            for (i = 0; i < per; i++) {
                int64_t pos = 2000 + i + (int64_t)k * rounds * 3 + (int64_t)way * rounds;
                int64_t c0 = backend_cpu_ns(pid);

                lat[i] = way == 2 ? turn_per_shard(c, shards, pos)
                                  : turn_batch(c, shards, pos, way == 0);
                cpu[i] = c0 < 0 ? -1 : (backend_cpu_ns(pid) - c0) / 1000;
            }
            qsort(lat, (size_t)per, sizeof(*lat), cmp_i64);
            qsort(cpu, (size_t)per, sizeof(*cpu), cmp_i64);
            printf("%-10s %7d %12d %12" PRId64 " %12" PRId64, names[way], shards,
                   way == 2 ? 4 * shards : 1, lat[per / 2], lat[per * 99 / 100]);
            if (cpu[0] < 0) {
                printf(" %14s %14s\n", "-", "-");
            } else {
                printf(" %14" PRId64 " %14" PRId64 "\n", cpu[per / 2], cpu[per * 99 / 100]);
            }
            fflush(stdout);
        }
    }
    PQfinish(c);
    bench_pg_drop(base, "bench_checkpoint");
    free(lat);
    free(cpu);
    return 0;
}
