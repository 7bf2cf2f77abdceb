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
#include <sys/prctl.h>
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

/* How often PostgreSQL may refuse the settings (authentication, unknown database) before the
 * supervisor gives up with the configuration exit code: a role or database created by the same
 * deployment gets a few seconds to appear. */
#define PG_CONFIG_TRIES 5

/* Serves the metrics endpoint (if any) while waiting up to timeout_ms for a signal. Returns true
 * when a stop signal came. */
static bool wait_serving(int sigfd, struct d2o_metrics_server *server, int64_t timeout_ms)
{
    int64_t until = d2o_mono_ms() + timeout_ms;

    for (;;) {
        struct pollfd pfd[2] = {{sigfd, POLLIN, 0}, {d2o_metrics_server_fd(server), POLLIN, 0}};
        struct signalfd_siginfo si;
        int64_t left = until - d2o_mono_ms(), st = d2o_metrics_server_timeout_ms(server);

        if (left <= 0) {
            return false;
        }
        if (st >= 0 && st < left) {
            left = st;
        }
        (void)poll(pfd, server ? 2 : 1, (int)left);
        d2o_metrics_server_run(server);
        while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                return true;
            }
        }
    }
}

/* Applies the migrations, retrying while PostgreSQL is unreachable; /healthz answers meanwhile
 * and /readyz says what is awaited. Returns 0, -1 when a stop signal came first, or the exit
 * code. */
static int migrate(const struct d2o_config *c, int sigfd, struct d2o_metrics *m,
                   struct d2o_metrics_server *server)
{
    unsigned attempt = 0, refused = 0;

    for (;;) {
        char err[1024];
        PGconn *pg = d2o_pg_connect(c->pg_conninfo, "ddb2os supervisor", err, sizeof(err));
        int from = 0, to = 0;

        if (pg) {
            int r = 0;

            /* A current schema needs no DDL: `run` works under a role without it. */
            if (d2o_pg_schema_version(pg, &from, err, sizeof(err)) < 0 ||
                from != d2o_pg_schema_latest) {
                r = d2o_pg_migrate(pg, &from, &to, err, sizeof(err));
            } else {
                to = from; /* nothing to do: no "migrated" line */
            }
            PQfinish(pg);
            if (r < 0 && strstr(err, "permission denied")) {
                d2o_err("migrate",
                        "%s: this role may not change the schema; run 'ddb2os migrate' under a "
                        "role that may (see docs/operations.md)",
                        err);
                return D2O_EXIT_CONFIG;
            }
            if (r == 0) {
                if (from != to) {
                    d2o_info("migrate", "database schema migrated from version %d to %d", from, to);
                }
                return 0;
            }
            d2o_err("migrate", "%s", err);
            return D2O_EXIT_CONFIG;
        }
        if (d2o_pg_connect_error_is_config(err) && ++refused >= PG_CONFIG_TRIES) {
            d2o_err("config", "pg_conninfo: PostgreSQL refused the settings %u times: %s", refused,
                    err);
            return D2O_EXIT_CONFIG;
        }
        snprintf(m->waiting, sizeof(m->waiting), "waiting for PostgreSQL (attempt %u): %.180s",
                 attempt + 1, err);
        d2o_warn("pg_unavailable", "cannot reach PostgreSQL yet (attempt %u): %s", attempt + 1,
                 err);
        if (wait_serving(sigfd, server, d2o_backoff_ms(500, 5000, attempt++))) {
            return -1; /* told to stop while waiting */
        }
    }
}

static pid_t spawn(const struct d2o_config *c, const char *task_id, struct d2o_metrics *m,
                   unsigned i)
{
    pid_t pid, parent = getpid();

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        struct d2o_worker_opts o = {0};
        sigset_t none;
        int rc;

        /* Nothing of the supervisor's survives: not its signalfd, not the metrics socket. */
        close_range(3, ~0U, 0);
        /* The supervisor killed (kill -9, OOM): the worker drains and exits instead of holding
         * its leases as an orphan. The check covers a supervisor that died before prctl. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent) {
            _exit(1);
        }
        /* Stop signals stay blocked until the worker's signalfd takes them (the forwarded
         * one too: a real-time signal's default action would end the worker). */
        sigemptyset(&none);
        sigaddset(&none, SIGTERM);
        sigaddset(&none, SIGINT);
        sigaddset(&none, SIGHUP);
        sigaddset(&none, D2O_STOP_FORWARD_SIG);
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

/* A stop signal sent to the supervisor by sender, forwarded so that a worker that got it from
 * the process group as well takes the two as one (d2o/worker.h). */
static void forward_stop(struct slot *slots, unsigned n, int sender)
{
    union sigval v = {.sival_int = sender};
    unsigned i;

    for (i = 0; i < n; i++) {
        if (slots[i].pid > 0) {
            sigqueue(slots[i].pid, D2O_STOP_FORWARD_SIG, v);
        }
    }
}

bool d2o_stop_signal_is_new(struct d2o_stop_copies *s, bool forwarded, int sender)
{
    int *other = forwarded ? s->direct : s->forwarded;
    unsigned *n_other = forwarded ? &s->n_direct : &s->n_forwarded;
    int *mine = forwarded ? s->forwarded : s->direct;
    unsigned *n_mine = forwarded ? &s->n_forwarded : &s->n_direct;
    unsigned i;

    for (i = 0; i < *n_other; i++) {
        if (other[i] == sender) {
            /* the other copy of a request already taken */
            memmove(other + i, other + i + 1, (*n_other - i - 1) * sizeof(*other));
            (*n_other)--;
            return false;
        }
    }
    if (*n_mine == D2O_ARRAY_SIZE(s->direct)) {
        /* the oldest copy left unpaired (its twin went to a merged signal) makes room */
        memmove(mine, mine + 1, (*n_mine - 1) * sizeof(*mine));
        (*n_mine)--;
    }
    mine[(*n_mine)++] = sender;
    return true;
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
    sigset_t set, forward;
    int sigfd = -1, rc;

    memset(slots, 0, sizeof(slots));
    if (*c->task_id) {
        snprintf(task_id, sizeof(task_id), "%s", c->task_id);
    } else {
        d2o_default_task_id(task_id, sizeof(task_id));
    }
    d2o_log_set_worker("supervisor");
    if (d2o_conf_validate(c, err, sizeof(err)) < 0) {
        d2o_err("config", "%s", err);
        return D2O_EXIT_CONFIG;
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
    /* Blocked from here, so a worker forked later has it blocked until its signalfd takes it. */
    sigemptyset(&forward);
    sigaddset(&forward, D2O_STOP_FORWARD_SIG);
    sigprocmask(SIG_BLOCK, &forward, NULL);
    sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0) {
        return 1;
    }
    m = d2o_metrics_create(single_process ? 1 : n);
    if (!m) {
        d2o_err("startup", "cannot map the metrics block: %s",
                d2o_strerror(errno, ebuf, sizeof(ebuf)));
        close(sigfd);
        return 1;
    }
    d2o_metrics_set_source(
        m, c->source == D2O_SOURCE_DYNAMODB_STREAMS ? "dynamodb-streams" : "kinesis",
        c->stream_name);
    /* Before PostgreSQL: /healthz answers while the task waits for its database. A port that
     * cannot be had is a configuration error, not a task without health checks. */
    if (c->metrics_port > 0 && !single_process) {
        int64_t renew = c->renew_ms ? c->renew_ms : c->lease_ms / 3;

        server = d2o_metrics_server_start(m, c->metrics_addr, (int)c->metrics_port,
                                          c->lease_ms + renew, err, sizeof(err));
        if (!server) {
            d2o_err("config", "metrics_addr/metrics_port: %s", err);
            rc = D2O_EXIT_CONFIG;
            goto out;
        }
    }
    snprintf(m->waiting, sizeof(m->waiting), "applying the database migrations");
    rc = migrate(c, sigfd, m, server);
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto out;
    }
    m->waiting[0] = '\0';
    if (single_process) {
        close(sigfd);
        sigfd = -1;
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        rc = single(c, task_id, m);
        goto out;
    }
    d2o_info("supervisor_started", "supervisor %s starting %u workers for stream %s", task_id, n,
             c->stream_name);
    for (i = 0; i < n; i++) {
        slots[i].started_ms = d2o_mono_ms();
        slots[i].pid = spawn(c, task_id, m, i);
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
        d2o_metrics_server_run(server);
        while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            switch (si.ssi_signo) {
            case SIGCHLD:
                break;
            case SIGTERM:
            case SIGINT:
                /* Every one is forwarded, with its sender: a signal to the process group
                 * (Ctrl-C, timeout, systemd) reaches every worker directly as well, and the
                 * worker pairs the two copies however late this one comes; a signal to the
                 * supervisor alone reaches the workers only this way. */
                if (!draining) {
                    d2o_info("drain", "stop signal: the workers drain and release their leases");
                    draining = true;
                } else {
                    d2o_info("stop_again",
                             "stop signal again (from pid %u): forwarded; a worker "
                             "that did not get it from the process group as well exits now",
                             (unsigned)si.ssi_pid);
                }
                forward_stop(slots, n, (int)si.ssi_pid);
                break;
            case SIGHUP:
                worker_reload(c, NULL);
                signal_all(slots, n, SIGHUP);
                break;
            default:
                break;
            }
        }
        reap(slots, n, m, draining);
    }
    d2o_info("supervisor_stopped", "every worker has exited");
out:
    d2o_metrics_server_stop(server);
    d2o_metrics_destroy(m);
    if (sigfd >= 0) {
        close(sigfd);
    }
    return rc;
}
