/*
 * What the bulk sink's retry scheduling costs per event-loop turn while OpenSearch refuses every
 * request, with a backlog of N delayed items. No server: the sink's transport is a fake that
 * answers each request with a transport error (as a refused connection does) at the next turn,
 * and the clock is a fake that advances 1 ms per turn, so a run is repeatable and bounded.
 *
 * Each turn does what a worker's loop does with the sink: answers the requests of the last turn,
 * d2o_bulk_tick() and d2o_bulk_next_ms(). Retry settings are the defaults (100 ms base, 30 s cap,
 * 5000 items per request, 2 in flight; item_max_attempts does not apply to whole-request
 * failures). The first SECONDS of simulated time warm up (the backoff grows to its cap); the next
 * SECONDS are measured, or fewer when the CPU bound (5 s) is reached first. Prints, per N:
 * turns, CPU per turn, items retried per turn, and CPU per retried item.
 *
 * usage: bench_retry [SECONDS [N...]]   (default 30, then 1000 10000 100000)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "d2o/bulk.h"
#include "d2o/log.h"
#include "d2o/rand.h"

#define MAX_RQ 64
#define CPU_BOUND_US 5000000

static int64_t fake_now;
static struct {
    d2o_http_done_fn cb;
    void *arg;
} rq[MAX_RQ];
static size_t n_rq;

static int64_t cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t clock_fake(void)
{
    return fake_now;
}

static int start_fake(void *ctx, const struct d2o_http_request *req, d2o_http_done_fn cb, void *arg)
{
    (void)ctx;
    (void)req;
    if (n_rq == MAX_RQ) {
        return -EAGAIN;
    }
    rq[n_rq].cb = cb;
    rq[n_rq].arg = arg;
    n_rq++;
    return 0;
}

static void done_fn(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    (void)cookie;
    (void)res;
    (void)arg;
    fprintf(stderr, "bench_retry: an item got an outcome; a refused request never gives one\n");
    exit(1);
}

/* Answers every request started in the last turn as a refused connection. */
static void refuse_all(void)
{
    size_t n = n_rq, i;
    static struct d2o_http_response resp;

    n_rq = 0;
    for (i = 0; i < n; i++) {
        memset(&resp, 0, sizeof(resp));
        resp.curl_code = CURLE_COULDNT_CONNECT;
        snprintf(resp.errstr, sizeof(resp.errstr), "Failed to connect: Connection refused");
        rq[i].cb(&resp, rq[i].arg);
    }
}

static void turn(struct d2o_bulk *b)
{
    fake_now++;
    refuse_all();
    d2o_bulk_tick(b, fake_now);
    (void)d2o_bulk_next_ms(b, fake_now);
}

static void run(size_t n, int64_t seconds)
{
    struct d2o_bulk_opts o = {0};
    struct d2o_bulk *b;
    char err[128], line[160];
    int64_t t0, end, turns = 0;
    uint64_t retried0;
    size_t i;

    d2o_rand_seed_fixed(7);
    fake_now = 0;
    n_rq = 0;
    o.url = "http://127.0.0.1:9/";
    o.done = done_fn;
    o.now_ms = clock_fake;
    o.start = start_fake;
    b = d2o_bulk_new(NULL, &o, err, sizeof(err));
    if (!b) {
        fprintf(stderr, "bench_retry: %s\n", err);
        exit(1);
    }
    for (i = 0; i < n; i++) {
        int len = snprintf(line, sizeof(line),
                           "{\"index\":{\"_index\":\"bench\",\"_id\":\"d%zu\",\"version\":1,"
                           "\"version_type\":\"external\"}}\n{\"n\":%zu}\n",
                           i, i);

        if (d2o_bulk_add(b, line, (size_t)len, false, NULL) != 0) {
            fprintf(stderr, "bench_retry: out of memory\n");
            exit(1);
        }
    }
    d2o_bulk_flush(b);
    end = fake_now + seconds * 1000;
    while (fake_now < end) {
        turn(b);
    }
    retried0 = d2o_bulk_stats(b)->retried;
    t0 = cpu_us();
    end = fake_now + seconds * 1000;
    while (fake_now < end && cpu_us() - t0 < CPU_BOUND_US) {
        turn(b);
        turns++;
    }
    t0 = cpu_us() - t0;
    retried0 = d2o_bulk_stats(b)->retried - retried0;
    printf("%7zu delayed  %6" PRId64 " turns  %9.2f us CPU/turn  %8.1f items retried/turn"
           "  %7.3f us CPU/item retried\n",
           n, turns, (double)t0 / (double)turns, (double)retried0 / (double)turns,
           retried0 ? (double)t0 / (double)retried0 : 0.0);
    fflush(stdout);
    if (d2o_bulk_pending(b) != n) {
        fprintf(stderr, "bench_retry: %zu items pending, %zu queued\n", d2o_bulk_pending(b), n);
        exit(1);
    }
    d2o_bulk_free(b);
}

int main(int argc, char **argv)
{
    static const size_t def[] = {1000, 10000, 100000};
    int64_t seconds = argc > 1 ? atoll(argv[1]) : 30;
    FILE *quiet = fopen("/dev/null", "w");
    int i;

    if (quiet) {
        d2o_log_set_stream(quiet); /* a refused request is logged at each failure */
    }
    if (seconds <= 0) {
        fprintf(stderr, "usage: bench_retry [SECONDS [N...]]\n");
        return 2;
    }
    if (argc > 2) {
        for (i = 2; i < argc; i++) {
            run((size_t)strtoull(argv[i], NULL, 10), seconds);
        }
    } else {
        for (i = 0; i < 3; i++) {
            run(def[i], seconds);
        }
    }
    return 0;
}
