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
 * the PostgreSQL backend spent on it (srv p50, p99), the wall time without the time the backend
 * and this process spent waiting for a core (nowait p50, p99), the wall time until every shard of
 * the turn is checkpointed (turn p50, p99), and how busy the machine's cores were with anything
 * else meanwhile (other: percent of all cores). The CPU and wait times come from
 * /proc/PID/schedstat (its first two fields: time on a core, time runnable but waiting for one),
 * so they are known only when the server runs on this machine ("-" otherwise). On a machine whose
 * cores are busy with other programs the wall time includes waiting for a core, for the backend
 * to start on the statement and for this process to read the answer; "nowait" is the same
 * statement without those waits, what an idle machine gives (docs/performance.md, "Checkpoint
 * p99: waiting for a core"). With a network between the worker and the database each statement
 * adds its RTT.
 *
 * usage: bench_checkpoint CONNINFO [ROUNDS [WAYS]]   (default 2000 rounds, every way; WAYS: some
 *        of the names above, comma-separated)
 *
 * D2O_BENCH_TRACE=FILE writes every statement's times to FILE (see statement()) and, after every
 * case, how often PostgreSQL planned the statement and the lease table's statistics.
 * D2O_BENCH_FIFO=1 runs this process and its backend at SCHED_FIFO priority 1 (root, local
 * server only), so that neither waits for a core behind other programs: the check of "nowait".
 */
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_pg.h"
#include "d2o/clock.h"
#include "d2o/dlq.h"
#include "d2o/pg.h"

#define MAX_SHARDS 200

static FILE *trace; /* D2O_BENCH_TRACE */

/* What a task has done so far: time on a core and time runnable but waiting for one (ns, -1 when
 * /proc/PID/schedstat can't be read), page faults (minor and major; only for the trace). */
struct sched {
    int64_t run, wait, faults;
};

static int64_t faults_of(const char *stat_path)
{
    char line[1024], *p;
    long long minflt, majflt;
    FILE *f = fopen(stat_path, "r");
    size_t n = f ? fread(line, 1, sizeof(line) - 1, f) : 0;

    if (f) {
        fclose(f);
    }
    line[n] = 0;
    p = strrchr(line, ')'); /* the command name may hold spaces */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %lld %*u %lld", &minflt, &majflt) != 2) {
        return -1;
    }
    return minflt + majflt;
}

/* pid 0: this process */
static struct sched sched_of(int pid)
{
    char path[64];
    long long run = -1, wait = -1;
    FILE *f;

    snprintf(path, sizeof(path), pid ? "/proc/%d/schedstat" : "/proc/self/schedstat", pid);
    f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%lld %lld", &run, &wait) != 2) {
            run = wait = -1;
        }
        fclose(f);
    }
    if (!trace) {
        return (struct sched){run, wait, -1};
    }
    snprintf(path, sizeof(path), pid ? "/proc/%d/stat" : "/proc/self/stat", pid);
    return (struct sched){run, wait, faults_of(path)};
}

/* The backend's and this process's progress at one moment. */
struct probe {
    struct sched backend, self;
    int64_t mono_us;
};

static struct probe probe_take(int pid)
{
    struct probe p;

    p.backend = sched_of(pid);
    p.self = sched_of(0);
    p.mono_us = d2o_mono_us();
    return p;
}

/* Between a and b: the backend's CPU time and the wall time without either task's wait for a
 * core (us, -1 when unknown). */
static void probe_diff(const struct probe *a, const struct probe *b, int64_t *cpu_us,
                       int64_t *nowait_us)
{
    bool known = a->backend.run >= 0 && b->backend.run >= 0 && a->self.wait >= 0;

    *cpu_us = known ? (b->backend.run - a->backend.run) / 1000 : -1;
    *nowait_us = -1;
    if (known) {
        int64_t waits = b->backend.wait - a->backend.wait + b->self.wait - a->self.wait;

        /* the two reads of schedstat bracket the clock's: never below 0 */
        *nowait_us = b->mono_us - a->mono_us - waits / 1000;
        *nowait_us = *nowait_us < 0 ? 0 : *nowait_us;
    }
}

/* Busy time of all cores so far (ns): user, nice, system, irq, softirq and steal of /proc/stat. */
static int64_t machine_busy_ns(void)
{
    unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal = 0;
    FILE *f = fopen("/proc/stat", "r");
    int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys, &idle,
                       &iowait, &irq, &softirq, &steal)
              : 0;

    if (f) {
        fclose(f);
    }
    if (n < 7) {
        return -1;
    }
    return (int64_t)((user + nice + sys + irq + softirq + steal) *
                     (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK)));
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

/* One statement for the shards [from, to): its wall time; the backend's CPU time and the wall
 * time without waits for a core in *cpu_us and *nowait_us (-1 when unknown). With dlq, each shard
 * passes one DLQ row. */
static int64_t statement(PGconn *c, int pid, int from, int to, int64_t pos, bool prepared, bool dlq,
                         int64_t *cpu_us, int64_t *nowait_us)
{
    struct d2o_checkpoint_batch *b = d2o_checkpoint_batch_new("bench", "w1");
    static const char raw[] = "{\"eventName\":\"INSERT\",\"dynamodb\":{}}";
    int outcome[MAX_SHARDS];
    char err[512], p[32];
    struct probe p0, p1;
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
    p0 = probe_take(pid);
    if (d2o_checkpoint_batch_exec(c, b, prepared, outcome, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    p1 = probe_take(pid);
    probe_diff(&p0, &p1, cpu_us, nowait_us);
    if (trace) {
        /* the statement's end (wall clock, us), its first shard and number of shards, its wall
         * time, the backend's CPU time and wait for a core, this process's CPU time and wait
         * (us), the backend's and this process's page faults */
        fprintf(trace,
                "%" PRId64 " %d %d %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
                " %" PRId64 " %" PRId64 "\n",
                d2o_wall_us(), from, to - from, p1.mono_us - p0.mono_us, *cpu_us,
                (p1.backend.wait - p0.backend.wait) / 1000, (p1.self.run - p0.self.run) / 1000,
                (p1.self.wait - p0.self.wait) / 1000, p1.backend.faults - p0.backend.faults,
                p1.self.faults - p0.self.faults);
    }
    for (i = 0; i < to - from; i++) {
        if (outcome[i] != 0) {
            fprintf(stderr, "shard %d refused (%d)\n", from + i, outcome[i]);
            exit(1);
        }
    }
    d2o_checkpoint_batch_free(b);
    return p1.mono_us - p0.mono_us;
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

/* Into the trace: how often PostgreSQL planned the prepared statement, and what the lease
 * table's statistics say (updates, HOT updates, dead rows, autovacuum and autoanalyze runs). */
static void trace_tables(PGconn *c)
{
    PGresult *r;

    bench_pg_sql(c, "SELECT pg_stat_force_next_flush()");
    r = PQexec(c, "SELECT (SELECT generic_plans || ' ' || custom_plans FROM pg_prepared_statements"
                  " WHERE name = 'd2o_checkpoint_batch'), n_tup_upd, n_tup_hot_upd, n_dead_tup,"
                  " autovacuum_count, autoanalyze_count FROM pg_stat_user_tables"
                  " WHERE relname = 'leases' AND schemaname = current_schema()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        fprintf(trace,
                "tables plans(generic custom) %s updates %s hot %s dead %s autovacuum %s"
                " autoanalyze %s\n",
                PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
                PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5));
    }
    PQclear(r);
}

enum { W_BATCH, W_ONE, W_DLQ, W_UNPREPARED, W_PER_SHARD, W_WAYS };

static const char *const way_names[W_WAYS] = {"batch", "one-stmt", "dlq", "unprepared",
                                              "per-shard"};

/* The ways named in list (comma-separated) as bits; -1 (and a message) for a name that is none. */
static int ways_of(const char *list)
{
    int bits = 0;

    while (*list) {
        size_t n = strcspn(list, ",");
        int way;

        for (way = 0; way < W_WAYS; way++) {
            if (strlen(way_names[way]) == n && strncmp(list, way_names[way], n) == 0) {
                break;
            }
        }
        if (way == W_WAYS) {
            fprintf(stderr,
                    "bench_checkpoint: no way named '%.*s' (batch, one-stmt, dlq,"
                    " unprepared, per-shard)\n",
                    (int)n, list);
            return -1;
        }
        bits |= 1 << way;
        list += n + (list[n] == ',');
    }
    return bits;
}

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
    int ways = argc > 3 && *argv[3] ? ways_of(argv[3]) : (1 << W_WAYS) - 1;
    static const int cases[] = {1, 8, 64, 200};
    size_t most = (size_t)rounds * (MAX_SHARDS / D2O_CHECKPOINT_BATCH_MAX + 1);
    int64_t *lat, *cpu, *nowait, *turn;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char err[512];
    PGconn *c;
    size_t k;
    int pid;

    if (!base || rounds < 100 || ways < 0) {
        fprintf(stderr, "usage: bench_checkpoint CONNINFO [ROUNDS >= 100 [WAYS]]\n");
        return 2;
    }
    if (getenv("D2O_BENCH_TRACE") && !(trace = fopen(getenv("D2O_BENCH_TRACE"), "w"))) {
        perror(getenv("D2O_BENCH_TRACE"));
        return 1;
    }
    lat = calloc(most, sizeof(*lat));
    cpu = calloc(most, sizeof(*cpu));
    nowait = calloc(most, sizeof(*nowait));
    turn = calloc((size_t)rounds, sizeof(*turn));
    if (!lat || !cpu || !nowait || !turn) {
        return 1;
    }
    c = bench_pg_schema(base, "bench_checkpoint");
    pid = PQbackendPID(c);
    if (getenv("D2O_BENCH_FIFO")) {
        struct sched_param sp = {.sched_priority = 1};

        if (sched_setscheduler(pid, SCHED_FIFO, &sp) < 0 ||
            sched_setscheduler(0, SCHED_FIFO, &sp) < 0) {
            perror("bench_checkpoint: SCHED_FIFO for the backend and this process");
            return 1;
        }
        printf("this process and its backend at SCHED_FIFO 1\n");
    }
    if (d2o_checkpoint_batch_prepare(c, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("at most %d shards a statement\n", D2O_CHECKPOINT_BATCH_MAX);
    printf("%-10s %6s %5s %9s %9s %9s %9s %9s %9s %9s %9s %6s\n", "way", "shards", "stmts",
           "p50 us", "p99 us", "srv p50", "srv p99", "nowait 50", "nowait 99", "turn p50",
           "turn p99", "other");
    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        int way;

        for (way = 0; way < W_WAYS; way++) {
            int shards = cases[k], i, per = rounds, bound = D2O_CHECKPOINT_BATCH_MAX, stmts;
            struct probe start, end;
            int64_t busy;
            size_t n = 0;

            if (!(ways & 1 << way)) {
                continue;
            }
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
            if (trace) {
                fprintf(trace, "case %s %d\n", way_names[way], shards);
            }
            busy = machine_busy_ns();
            start = probe_take(pid);
            for (i = 0; i < per; i++) {
                int64_t pos = 2000 + i + (int64_t)k * rounds * W_WAYS + (int64_t)way * rounds;
                int from;

                if (way == W_PER_SHARD) {
                    struct probe p0 = probe_take(pid), p1;

                    turn[i] = lat[n] = turn_per_shard(c, shards, pos);
                    p1 = probe_take(pid);
                    probe_diff(&p0, &p1, &cpu[n], &nowait[n]);
                    n++;
                    continue;
                }
                turn[i] = 0;
                for (from = 0; from < shards; from += bound) {
                    int to = from + bound < shards ? from + bound : shards;

                    lat[n] = statement(c, pid, from, to, pos, way != W_UNPREPARED, way == W_DLQ,
                                       &cpu[n], &nowait[n]);
                    turn[i] += lat[n++];
                }
            }
            end = probe_take(pid);
            busy = busy < 0 ? -1 : machine_busy_ns() - busy;
            if (trace) {
                trace_tables(c);
            }
            printf("%-10s %6d %5d", way_names[way], shards, stmts);
            print_pct(lat, n);
            print_pct(cpu, n);
            print_pct(nowait, n);
            print_pct(turn, (size_t)per);
            /* /proc/stat counts the cores' busy time in ticks of 10 ms: for a case shorter than
             * 0.1 s the share would be off by more than a tenth of the cores, so it is not shown */
            if (busy < 0 || start.backend.run < 0 || end.mono_us - start.mono_us < 100000) {
                printf(" %6s\n", "-");
            } else {
                double share;

                /* the cores' busy time less the backend's and this process's own */
                busy -= end.backend.run - start.backend.run + end.self.run - start.self.run;
                share = 100.0 * (double)busy / 1000.0 / (double)(end.mono_us - start.mono_us) /
                        (double)cores;
                printf(" %5.1f%%\n", share < 0 ? 0 : share > 100 ? 100 : share);
            }
            fflush(stdout);
        }
    }
    PQfinish(c);
    if (trace) {
        fclose(trace);
    }
    bench_pg_drop(base, "bench_checkpoint");
    free(lat);
    free(cpu);
    free(nowait);
    free(turn);
    return 0;
}
