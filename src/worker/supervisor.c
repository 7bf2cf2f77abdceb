/*
 * The supervisor of `ddb2os run`: applies the migrations, forks the workers, serves /metrics and
 * the health checks, reaps and respawns, forwards signals.
 *
 * It never opens a libcurl or libpq handle that a child could inherit: the migration connection
 * is closed before the first fork, and a child closes every descriptor above stderr before it
 * opens its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2o/buf.h"
#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/http.h"
#include "d2o/log.h"
#include "d2o/metrics.h"
#include "d2o/pg.h"
#include "d2o/rand.h"
#include "d2o/util.h"
#include "d2o/wait.h"
#include "d2o/worker.h"
#include "worker_int.h"

/* A worker that ran this long before it died starts its backoff afresh. */
#define STABLE_MS 60000
#define RESPAWN_BASE_MS 1000
#define RESPAWN_CAP_MS 30000

struct slot {
    pid_t pid;       /* 0: not running */
    bool config_bad; /* exited with D2O_EXIT_CONFIG: never respawned */
    unsigned failures;
    int64_t started_ms;
    int64_t respawn_at_ms;
};

static int check_config(const struct d2o_config *c)
{
    int64_t renew = c->renew_ms ? c->renew_ms : c->lease_ms / 3;

    if (!*c->stream_name) {
        d2o_err("config", "stream_name is empty: set the Kinesis stream to read");
        return D2O_EXIT_CONFIG;
    }
    if (renew >= c->lease_ms - c->lease_ms / 10) {
        d2o_err("config",
                "renew_ms %" PRId64 " must be below lease_ms %" PRId64
                " less a tenth (leases must be renewed before they can expire)",
                renew, c->lease_ms);
        return D2O_EXIT_CONFIG;
    }
    if (c->http_timeout_ms > c->opensearch_gc_deletes_ms / 2) {
        /* A bulk request that started before its worker lost the lease can land up to
         * http_timeout_ms later; the new owner's delete must still be remembered then. */
        d2o_err("config",
                "http_timeout_ms %" PRId64
                " must be at most half of opensearch_gc_deletes_ms %" PRId64
                " (a write in flight when its lease is lost could land after OpenSearch forgot a "
                "newer delete, and bring the document back)",
                c->http_timeout_ms, c->opensearch_gc_deletes_ms);
        return D2O_EXIT_CONFIG;
    }
    if (c->initial_position == D2O_POS_AT_TIMESTAMP && !*c->initial_timestamp) {
        d2o_err("config", "initial_position AT_TIMESTAMP needs initial_timestamp");
        return D2O_EXIT_CONFIG;
    }
    return 0;
}

/* Applies the migrations, retrying while PostgreSQL is unreachable. Returns 0, -1 when a stop
 * signal came first, or the exit code. */
static int migrate(const struct d2o_config *c, int sigfd)
{
    unsigned attempt = 0;

    for (;;) {
        char err[1024];
        PGconn *pg = d2o_pg_connect(c->pg_conninfo, "ddb2os supervisor", err, sizeof(err));
        struct pollfd pfd = {sigfd, POLLIN, 0};
        int from = 0, to = 0;

        if (pg) {
            int r = d2o_pg_migrate(pg, &from, &to, err, sizeof(err));

            PQfinish(pg);
            if (r == 0) {
                if (from != to) {
                    d2o_info("migrate", "database schema migrated from version %d to %d", from, to);
                }
                return 0;
            }
            d2o_err("migrate", "%s", err);
            return D2O_EXIT_CONFIG;
        }
        d2o_warn("pg_unavailable", "cannot reach PostgreSQL yet (attempt %u): %s", attempt + 1,
                 err);
        if (poll(&pfd, 1, (int)d2o_backoff_ms(500, 5000, attempt++)) > 0) {
            return -1; /* told to stop while waiting */
        }
    }
}

static pid_t spawn(const struct d2o_config *c, const char *task_id, struct d2o_metrics *m,
                   unsigned i)
{
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        struct d2o_worker_opts o = {0};
        sigset_t none;
        int rc;

        /* Nothing of the supervisor's survives: not its signalfd, not the metrics socket. */
        close_range(3, ~0U, 0);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        o.conf = c;
        o.task_id = task_id;
        o.metrics = m;
        o.slot = i;
        rc = d2o_worker_run(&o);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    return pid;
}

static void signal_all(struct slot *slots, unsigned n, int sig)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        if (slots[i].pid > 0) {
            kill(slots[i].pid, sig);
        }
    }
}

static unsigned default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > D2O_METRICS_MAX_WORKERS ? D2O_METRICS_MAX_WORKERS : (unsigned)n;
}

/* Reaps every child that exited. */
static void reap(struct slot *slots, unsigned n, struct d2o_metrics *m, bool draining)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int64_t now = d2o_mono_ms();
        unsigned i;

        for (i = 0; i < n && slots[i].pid != pid; i++) {
        }
        if (i == n) {
            continue;
        }
        slots[i].pid = 0;
        d2o_metrics_mark_dead(m, i);
        if (WIFEXITED(status) && WEXITSTATUS(status) == D2O_EXIT_CONFIG) {
            slots[i].config_bad = true;
            d2o_err("worker_exit",
                    "worker %u (pid %d) refused the configuration (exit 78); not respawning it", i,
                    (int)pid);
            continue;
        }
        if (draining) {
            d2o_info("worker_exit", "worker %u (pid %d) finished (%s %d)", i, (int)pid,
                     WIFEXITED(status) ? "exit" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            continue;
        }
        if (now - slots[i].started_ms >= STABLE_MS) {
            slots[i].failures = 0;
        }
        slots[i].respawn_at_ms =
            now + d2o_backoff_ms(RESPAWN_BASE_MS, RESPAWN_CAP_MS, slots[i].failures) / 2 +
            RESPAWN_BASE_MS / 2;
        slots[i].failures++;
        d2o_warn("worker_exit", "worker %u (pid %d) died (%s %d); respawning in %" PRId64 " ms", i,
                 (int)pid, WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                 slots[i].respawn_at_ms - now);
    }
}

static int single(const struct d2o_config *c, const char *task_id, struct d2o_metrics *m)
{
    struct d2o_worker_opts o = {0};

    o.conf = c;
    o.task_id = task_id;
    o.metrics = m;
    o.serve_metrics = true;
    return d2o_worker_run(&o);
}

int d2o_supervisor_run(const struct d2o_config *c, bool single_process)
{
    struct slot slots[D2O_METRICS_MAX_WORKERS];
    struct d2o_metrics *m = NULL;
    struct d2o_metrics_server *server = NULL;
    char task_id[128], err[512];
    char ebuf[128];
    unsigned n = c->workers > 0 ? (unsigned)c->workers : default_workers(), i, alive;
    bool draining = false;
    sigset_t set;
    int sigfd, rc;

    memset(slots, 0, sizeof(slots));
    if (*c->task_id) {
        snprintf(task_id, sizeof(task_id), "%s", c->task_id);
    } else {
        d2o_default_task_id(task_id, sizeof(task_id));
    }
    d2o_log_set_worker("supervisor");
    rc = check_config(c);
    if (rc) {
        return rc;
    }
    if (d2o_http_global_init() < 0) {
        return 1;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0) {
        return 1;
    }
    rc = migrate(c, sigfd);
    if (rc) {
        close(sigfd);
        return rc < 0 ? 0 : rc;
    }
    m = d2o_metrics_create(single_process ? 1 : n);
    if (!m) {
        d2o_err("startup", "cannot map the metrics block: %s",
                d2o_strerror(errno, ebuf, sizeof(ebuf)));
        close(sigfd);
        return 1;
    }
    if (single_process) {
        close(sigfd);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        rc = single(c, task_id, m);
        d2o_metrics_destroy(m);
        return rc;
    }
    d2o_info("supervisor_started", "supervisor %s starting %u workers for stream %s", task_id, n,
             c->stream_name);
    for (i = 0; i < n; i++) {
        slots[i].started_ms = d2o_mono_ms();
        slots[i].pid = spawn(c, task_id, m, i);
    }
    if (c->metrics_port > 0) {
        int64_t renew = c->renew_ms ? c->renew_ms : c->lease_ms / 3;

        server = d2o_metrics_server_start(m, c->metrics_addr, (int)c->metrics_port,
                                          c->lease_ms + renew, err, sizeof(err));
        if (!server) {
            d2o_err("metrics", "%s", err);
        }
    }
    for (;;) {
        struct pollfd pfd[2];
        struct signalfd_siginfo si;
        int64_t now = d2o_mono_ms(), timeout = 1000;
        nfds_t nfds = 1;
        bool all_bad = true;

        alive = 0;
        for (i = 0; i < n; i++) {
            alive += slots[i].pid > 0;
            all_bad = all_bad && slots[i].config_bad;
            if (!draining && slots[i].pid == 0 && !slots[i].config_bad) {
                if (now >= slots[i].respawn_at_ms) {
                    slots[i].started_ms = now;
                    slots[i].pid = spawn(c, task_id, m, i);
                    __atomic_fetch_add(&m->respawns, 1, __ATOMIC_RELAXED);
                    alive += slots[i].pid > 0;
                } else if (slots[i].respawn_at_ms - now < timeout) {
                    timeout = slots[i].respawn_at_ms - now;
                }
            }
        }
        if (alive == 0 && (draining || all_bad)) {
            rc = all_bad ? D2O_EXIT_CONFIG : 0;
            break;
        }
        pfd[0].fd = sigfd;
        pfd[0].events = POLLIN;
        if (server) {
            int64_t st = d2o_metrics_server_timeout_ms(server);

            pfd[1].fd = d2o_metrics_server_fd(server);
            pfd[1].events = POLLIN;
            nfds = 2;
            if (st >= 0 && st < timeout) {
                timeout = st;
            }
        }
        if (poll(pfd, nfds, (int)timeout) < 0 && errno != EINTR) {
            rc = 1;
            break;
        }
        if (server) {
            d2o_metrics_server_run(server);
        }
        while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            switch (si.ssi_signo) {
            case SIGCHLD:
                break;
            case SIGTERM:
            case SIGINT:
                if (draining) {
                    d2o_warn("stop_now", "second stop signal: telling the workers to exit now");
                } else {
                    d2o_info("drain", "stop signal: the workers drain and release their leases");
                }
                draining = true;
                signal_all(slots, n, SIGTERM);
                break;
            case SIGHUP:
                worker_reopen_logs(c);
                signal_all(slots, n, SIGHUP);
                break;
            default:
                break;
            }
        }
        reap(slots, n, m, draining);
    }
    d2o_info("supervisor_stopped", "every worker has exited");
    d2o_metrics_server_stop(server);
    d2o_metrics_destroy(m);
    close(sigfd);
    return rc;
}
