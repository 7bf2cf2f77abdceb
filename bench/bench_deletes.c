/*
 * What the delete store's check costs per bulk request: d2o_deletes_check() against the real
 * PostgreSQL, in a schema of its own, for requests of N items in four mixes:
 *
 *   writes        N writes of new documents, nothing recorded for them
 *   writes-hit    N writes, a fifth of them below a recorded delete (dropped)
 *   mixed         the pool benchmark's mix: 4 changes per item, one in five a delete
 *   deletes       N deletes (the cost of recording a delete)
 *
 * The table first holds PRELOAD recorded deletes of other documents (default 1 000 000, the
 * deletes of a busy day). Each case runs ROUNDS requests; printed per case: wall time per request
 * (p50, p99), per item, and the CPU of this client and of the PostgreSQL backend (/proc of
 * PQbackendPID, so run it on the database's machine) per item.
 *
 * usage: bench_deletes CONNINFO [ITEMS [ROUNDS [PRELOAD]]]   (default 1000 200 1000000)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_pg.h"
#include "d2o/clock.h"
#include "d2o/deletes.h"
#include "d2o/pg.h"

static int64_t cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* utime + stime of a process, in microseconds (-1 if unreadable). */
static int64_t proc_cpu_us(int pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;
    int field;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p) {
        return -1;
    }
    /* fields after the command: state is field 3; utime 14, stime 15 */
    for (field = 2; field < 14 && p; field++) {
        p = strchr(p + 1, ' ');
    }
    if (!p) {
        return -1;
    }
    ut = strtoull(p + 1, &p, 10);
    st = strtoull(p + 1, NULL, 10);
    return (int64_t)((ut + st) * 1000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

enum mix { WRITES, WRITES_HIT, MIXED, DELETES };

static const char *const mix_names[] = {"writes", "writes-hit", "mixed", "deletes"};

static void run(PGconn *c, enum mix mix, size_t n, size_t rounds, uint64_t *next_doc)
{
    struct d2o_bulk_filter_item *items = calloc(n, sizeof(*items));
    char(*ids)[32] = calloc(n, sizeof(*ids));
    bool *drop = calloc(n, sizeof(*drop));
    int64_t *lat = calloc(rounds, sizeof(*lat));
    int64_t c0, s0, w_total = 0;
    size_t r, i, dropped_total = 0, dropped;
    int backend = PQbackendPID(c);
    char err[512];

    if (!items || !ids || !drop || !lat) {
        exit(1);
    }
    if (mix == WRITES_HIT) {
        /* a fifth of each round's documents were deleted at version 1000 */
        char q[256];

        snprintf(q, sizeof(q),
                 "INSERT INTO deletes (application, index_name, doc_id, version)"
                 " SELECT 'bench', 'books', 'd' || g, 1000 FROM generate_series(%" PRIu64
                 ", %" PRIu64 ", 5) g",
                 *next_doc, *next_doc + (uint64_t)(n * rounds) - 1);
        bench_pg_sql(c, q);
    }
    c0 = cpu_us();
    s0 = proc_cpu_us(backend);
    for (r = 0; r < rounds; r++) {
        int64_t t0;

        for (i = 0; i < n; i++) {
            uint64_t doc = *next_doc + i;

            snprintf(ids[i], sizeof(ids[i]), "d%" PRIu64, mix == MIXED ? doc / 4 : doc);
            items[i].index = "books";
            items[i].id = ids[i];
            items[i].version = mix == WRITES_HIT ? 500 : (int64_t)(doc + 1);
            items[i].is_delete = mix == DELETES || (mix == MIXED && i % 5 == 4);
            items[i].cookie = NULL;
            drop[i] = false;
        }
        *next_doc += n;
        t0 = d2o_mono_us();
        if (d2o_deletes_check(c, "bench", items, n, drop, &dropped, err, sizeof(err)) < 0) {
            fprintf(stderr, "bench_deletes: %s\n", err);
            exit(1);
        }
        lat[r] = d2o_mono_us() - t0;
        w_total += lat[r];
        dropped_total += dropped;
    }
    c0 = cpu_us() - c0;
    s0 = proc_cpu_us(backend) - s0;
    qsort(lat, rounds, sizeof(*lat), cmp_i64);
    printf("%-10s %5zu items x %4zu: p50 %6.2f ms  p99 %6.2f ms per request  %5.2f us/item wall"
           "  client %4.2f us/item  server %5.2f us/item  dropped %zu\n",
           mix_names[mix], n, rounds, lat[rounds / 2] / 1000.0, lat[rounds * 99 / 100] / 1000.0,
           (double)w_total / (double)(n * rounds), (double)c0 / (double)(n * rounds),
           (double)s0 / (double)(n * rounds), dropped_total);
    free(items);
    free(ids);
    free(drop);
    free(lat);
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("D2O_TEST_PG");
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
    size_t rounds = argc > 3 ? strtoul(argv[3], NULL, 10) : 200;
    unsigned long preload = argc > 4 ? strtoul(argv[4], NULL, 10) : 1000000;
    char q[256];
    uint64_t next_doc = 100000000;
    PGconn *c;
    int m, rep;

    if (!base || n == 0 || rounds == 0) {
        fprintf(stderr, "usage: bench_deletes CONNINFO [ITEMS [ROUNDS [PRELOAD]]]\n");
        return 2;
    }
    c = bench_pg_schema(base, "bench_deletes");
    snprintf(q, sizeof(q),
             "INSERT INTO deletes (application, index_name, doc_id, version)"
             " SELECT 'bench', 'books', 'old' || g, g FROM generate_series(1, %lu) g",
             preload);
    bench_pg_sql(c, q);
    bench_pg_sql(c, "ANALYZE deletes");
    printf("PostgreSQL %d, %lu deletes recorded before the run\n", PQserverVersion(c), preload);
    for (rep = 0; rep < 2; rep++) { /* the first pass warms the caches */
        for (m = WRITES; m <= DELETES; m++) {
            run(c, (enum mix)m, n, rounds, &next_doc);
        }
    }
    PQfinish(c);
    bench_pg_drop(base, "bench_deletes");
    return 0;
}
