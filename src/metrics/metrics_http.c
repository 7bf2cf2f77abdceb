/*
 * /metrics, /healthz and /readyz over HTTP, served by libmicrohttpd in the caller's event loop
 * (epoll mode, no thread): the supervisor polls one descriptor and calls MHD_run() when it is
 * readable. Only GET is answered; responses are small and built per request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "d2o/buf.h"
#include "d2o/clock.h"
#include "d2o/metrics.h"

struct d2o_metrics_server {
    struct MHD_Daemon *daemon;
    struct d2o_metrics *m;
    int64_t stale_ms;
    int port;
    char mhd_err[160]; /* libmicrohttpd's last complaint, for the caller's message */
};

/* libmicrohttpd's own messages would go to stderr as plain text; keep the last one instead. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct d2o_metrics_server *s = cls;
    size_t n;

    vsnprintf(s->mhd_err, sizeof(s->mhd_err), fmt, ap);
    n = strlen(s->mhd_err);
    while (n > 0 && (s->mhd_err[n - 1] == '\n' || s->mhd_err[n - 1] == '.')) {
        s->mhd_err[--n] = '\0';
    }
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result r;

    if (!resp) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_ctx)
{
    struct d2o_metrics_server *s = cls;
    static const char text[] = "text/plain; charset=utf-8";

    (void)version;
    (void)upload;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        if (*upload_size) {
            *upload_size = 0; /* bodies are ignored */
            return MHD_YES;
        }
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, "only GET\n", 9);
    }
    (void)req_ctx;
    if (strcmp(url, "/metrics") == 0) {
        struct d2o_buf b = D2O_BUF_INIT;
        enum MHD_Result r;

        if (d2o_metrics_render(s->m, &b) < 0) {
            d2o_buf_free(&b);
            return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, "out of memory\n", 14);
        }
        r = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                  b.data ? b.data : "", b.len);
        d2o_buf_free(&b);
        return r;
    }
    if (strcmp(url, "/healthz") == 0) {
        return reply(conn, MHD_HTTP_OK, text, "ok\n", 3);
    }
    if (strcmp(url, "/readyz") == 0) {
        char why[256], body[300];
        bool ok = d2o_metrics_ready(s->m, d2o_mono_ms(), s->stale_ms, why, sizeof(why));
        int n = snprintf(body, sizeof(body), "%s\n", ok ? "ready" : why);

        return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, body,
                     (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1);
    }
    return reply(conn, MHD_HTTP_NOT_FOUND, text, "not found: try /metrics, /healthz, /readyz\n",
                 43);
}

struct d2o_metrics_server *d2o_metrics_server_start(struct d2o_metrics *m, const char *addr,
                                                    int port, int64_t stale_ms, char *errstr,
                                                    size_t errstr_size)
{
    struct d2o_metrics_server *s;
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (port < 0 || port > 65535 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        snprintf(errstr, errstr_size,
                 "metrics endpoint: '%s' port %d is not a numeric IPv4 address and port", addr,
                 port);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "metrics endpoint: out of memory");
        return NULL;
    }
    s->m = m;
    s->stale_ms = stale_ms;
    s->daemon =
        MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, on_request,
                         s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(errstr, errstr_size, "metrics endpoint: cannot listen on %s:%d: %s", addr, port,
                 s->mhd_err[0] ? s->mhd_err : "port in use, or address not local");
        free(s);
        return NULL;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : port;
    return s;
}

int d2o_metrics_server_fd(const struct d2o_metrics_server *s)
{
    const union MHD_DaemonInfo *info =
        s ? MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD) : NULL;

    return info ? info->epoll_fd : -1;
}

int64_t d2o_metrics_server_timeout_ms(const struct d2o_metrics_server *s)
{
    MHD_UNSIGNED_LONG_LONG t = 0;

    if (!s || MHD_get_timeout(s->daemon, &t) != MHD_YES) {
        return -1;
    }
    return t > INT64_MAX ? INT64_MAX : (int64_t)t;
}

void d2o_metrics_server_run(struct d2o_metrics_server *s)
{
    if (s) {
        MHD_run(s->daemon);
    }
}

int d2o_metrics_server_port(const struct d2o_metrics_server *s)
{
    return s ? s->port : 0;
}

void d2o_metrics_server_stop(struct d2o_metrics_server *s)
{
    if (s) {
        MHD_stop_daemon(s->daemon);
        free(s);
    }
}
