/*
 * Credential provider chain against small loopback fakes of STS, the ECS credentials endpoint and
 * EC2 IMDSv2. Every test also proves that no secret reaches an error message or a log line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/creds.h"
#include "d2o/http.h"
#include "d2o/log.h"
#include "d2o_test.h"

#define SECRET "fakeSecretKey/ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
#define TOKEN "FakeSessionTokenAAAABBBBCCCCDDDD"

struct route {
    const char *method;
    const char *path;
    const char *need_header; /* "name: value" the request must carry, else 401 */
    const char *need_body;   /* substring the body must contain, else 400 */
    int status;
    const char *body;
};

struct fake {
    pid_t pid;
    int port;
    int count_fd; /* the child writes one byte per request served */
};

static void serve(int lfd, const struct route *routes, size_t n, int count_w)
{
    for (;;) {
        char req[16384];
        size_t used = 0, i;
        int c = accept(lfd, NULL, NULL);
        const struct route *hit = NULL;
        char resp[8192];
        int status = 404, len;
        const char *body = "";

        if (c < 0) {
            _exit(0);
        }
        while (used < sizeof(req) - 1) {
            ssize_t got = read(c, req + used, sizeof(req) - 1 - used);
            char *end;

            if (got <= 0) {
                break;
            }
            used += (size_t)got;
            req[used] = '\0';
            end = strstr(req, "\r\n\r\n");
            if (end) {
                const char *cl = strcasestr(req, "\r\nContent-Length:");
                size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;

                if (used >= (size_t)(end + 4 - req) + want) {
                    break;
                }
            }
        }
        for (i = 0; i < n; i++) {
            size_t ml = strlen(routes[i].method), pl = strlen(routes[i].path);

            if (strncmp(req, routes[i].method, ml) == 0 && req[ml] == ' ' &&
                strncmp(req + ml + 1, routes[i].path, pl) == 0 && req[ml + 1 + pl] == ' ') {
                hit = &routes[i];
                break;
            }
        }
        if (hit) {
            status = hit->status;
            body = hit->body;
            if (hit->need_header && !strcasestr(req, hit->need_header)) {
                status = 401;
                body = "missing header";
            }
            if (hit->need_body && !strstr(req, hit->need_body)) {
                status = 400;
                body = "missing body part";
            }
        }
        len = snprintf(resp, sizeof(resp),
                       "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       status, strlen(body), body);
        if (write(c, resp, (size_t)len) < 0 || write(count_w, "x", 1) < 0) {
            _exit(1);
        }
        close(c);
    }
}

static struct fake fake_start(const struct route *routes, size_t n)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), p[2];
    struct fake f;

    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(lfd, 16), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    ck_assert_int_eq(pipe(p), 0);
    f.pid = d2o_test_fork();
    if (f.pid == 0) {
        int fd;

        /* Keep only stdio, the listening socket and the counter pipe: nothing of the runner's. */
        for (fd = 3; fd < 1024; fd++) {
            if (fd != lfd && fd != p[1]) {
                close(fd);
            }
        }
        serve(lfd, routes, n, p[1]);
    }
    close(p[1]);
    close(lfd);
    f.port = ntohs(sa.sin_port);
    f.count_fd = p[0];
    return f;
}

static void fake_stop(struct fake *f)
{
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    close(f->count_fd);
}

static FILE *log_to_file(void)
{
    FILE *f = tmpfile();

    ck_assert_ptr_nonnull(f);
    d2o_log_set_stream(f);
    d2o_log_set_level(D2O_LOG_DEBUG);
    return f;
}

/* Asserts that neither the log nor errstr holds any of the secrets. */
static void assert_no_secret(FILE *log, const char *errstr)
{
    char buf[65536];
    size_t n;

    fflush(log);
    rewind(log);
    n = fread(buf, 1, sizeof(buf) - 1, log);
    buf[n] = '\0';
    ck_assert_msg(!strstr(buf, SECRET) && !strstr(buf, TOKEN), "secret in log: %s", buf);
    ck_assert_msg(!strstr(errstr, SECRET) && !strstr(errstr, TOKEN), "secret in error: %s", errstr);
    d2o_log_set_stream(NULL);
    fclose(log);
}

static struct d2o_http *http(void)
{
    char err[256];
    struct d2o_http *h = d2o_http_new(NULL, err, sizeof(err));

    ck_assert_ptr_nonnull(h);
    return h;
}

START_TEST(environment_first)
{
    char e1[] = "AWS_ACCESS_KEY_ID=AKIDENV", e2[] = "AWS_SECRET_ACCESS_KEY=" SECRET;
    char e3[] = "AWS_SESSION_TOKEN=" TOKEN, e4[] = "AWS_EC2_METADATA_DISABLED=true";
    char *env[] = {e1, e2, e3, e4, NULL};
    struct d2o_creds_opts o = {.envp = env};
    struct d2o_http *h = http();
    struct d2o_creds *c = d2o_creds_new(h, &o);
    const struct d2o_aws_creds *ac;
    char err[1024] = "";
    FILE *log = log_to_file();

    ck_assert_int_eq(d2o_creds_get(c, 1000, &ac, err, sizeof(err)), 0);
    ck_assert_str_eq(ac->access_key_id, "AKIDENV");
    ck_assert_str_eq(ac->secret_access_key, SECRET);
    ck_assert_str_eq(ac->session_token, TOKEN);
    ck_assert_str_eq(d2o_creds_source(c), "environment");
    d2o_log(D2O_LOG_ERROR, D2O_CAT_AWS, NULL, "test", "oops %s %s", ac->secret_access_key,
            ac->session_token);
    assert_no_secret(log, err);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

START_TEST(nothing_found_names_every_provider)
{
    char e1[] = "AWS_ACCESS_KEY_ID=AKIDONLY", e2[] = "HOME=/nonexistent-home";
    char *env[] = {e1, e2, NULL};
    struct d2o_creds_opts o = {
        .envp = env, .imds_endpoint = "http://127.0.0.1:1", .metadata_timeout_ms = 500};
    struct d2o_http *h = http();
    struct d2o_creds *c = d2o_creds_new(h, &o);
    const struct d2o_aws_creds *ac;
    char err[2048] = "";

    ck_assert_int_eq(d2o_creds_get(c, 1000, &ac, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "environment: AWS_ACCESS_KEY_ID is set but "
                                      "AWS_SECRET_ACCESS_KEY is not"));
    ck_assert_ptr_nonnull(strstr(err, "web-identity: "));
    ck_assert_ptr_nonnull(strstr(err, "shared-files: no keys for profile 'default'"));
    ck_assert_ptr_nonnull(strstr(err, "ecs: "));
    ck_assert_ptr_nonnull(strstr(err, "imds: PUT http://127.0.0.1:1/latest/api/token"));
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

START_TEST(shared_files_with_profile)
{
    char dir[] = "/tmp/d2o-creds-XXXXXX";
    char cred[300], conf[300], e1[400], e2[400], e3[] = "AWS_PROFILE=prod";
    char e4[] = "AWS_EC2_METADATA_DISABLED=true";
    char *env[] = {e1, e2, e3, e4, NULL};
    FILE *f;
    struct d2o_creds_opts o = {.envp = env};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac;
    char err[1024] = "";

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cred, sizeof(cred), "%s/credentials", dir);
    snprintf(conf, sizeof(conf), "%s/config", dir);
    snprintf(e1, sizeof(e1), "AWS_SHARED_CREDENTIALS_FILE=%s", cred);
    snprintf(e2, sizeof(e2), "AWS_CONFIG_FILE=%s", conf);
    f = fopen(cred, "w");
    fputs("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = nope\n\n"
          "[other]\naws_access_key_id=AKIDOTHER\n",
          f);
    fclose(f);
    f = fopen(conf, "w");
    fputs("[default]\nregion = us-east-1\n# comment\n[profile prod]\n"
          "  aws_access_key_id =  AKIDPROD  \naws_secret_access_key=" SECRET "\n"
          "aws_session_token = " TOKEN "\n",
          f);
    fclose(f);
    c = d2o_creds_new(h, &o);
    ck_assert_int_eq(d2o_creds_get(c, 1000, &ac, err, sizeof(err)), 0);
    ck_assert_str_eq(d2o_creds_source(c), "shared-files");
    ck_assert_str_eq(ac->access_key_id, "AKIDPROD");
    ck_assert_str_eq(ac->secret_access_key, SECRET);
    ck_assert_str_eq(ac->session_token, TOKEN);
    d2o_creds_free(c);
    unlink(cred);
    unlink(conf);
    rmdir(dir);
    d2o_http_free(h);
}
END_TEST

static const char ecs_doc_fmt[] = "{\"AccessKeyId\":\"AKIDECS\",\"SecretAccessKey\":\"" SECRET
                                  "\",\"Token\":\"" TOKEN "\",\"Expiration\":\"%s\"}";

START_TEST(ecs_full_uri_with_token_and_refresh_ahead)
{
    char doc[512];
    struct route routes[1];
    struct fake fk;
    char full[200], e1[300], e2[] = "AWS_CONTAINER_AUTHORIZATION_TOKEN=Basic ecs-auth-token-123";
    char e3[] = "AWS_EC2_METADATA_DISABLED=true";
    char *env[] = {e1, e2, e3, NULL};
    struct d2o_creds_opts o = {.envp = env, .refresh_ahead_s = 300};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac;
    char err[1024] = "";
    time_t exp;
    FILE *log = log_to_file();

    snprintf(doc, sizeof(doc), ecs_doc_fmt, "2026-11-25T12:00:00Z");
    routes[0] = (struct route){
        "GET", "/v2/credentials/abc", "Authorization: Basic ecs-auth-token-123", NULL, 200, doc};
    fk = fake_start(routes, 1);
    snprintf(full, sizeof(full), "http://127.0.0.1:%d/v2/credentials/abc", fk.port);
    snprintf(e1, sizeof(e1), "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s", full);
    c = d2o_creds_new(h, &o);
    ck_assert_int_eq(d2o_creds_parse_time("2026-11-25T12:00:00Z", &exp), 0);
    ck_assert_int_eq(d2o_creds_get(c, exp - 3600, &ac, err, sizeof(err)), 0);
    ck_assert_str_eq(d2o_creds_source(c), "ecs");
    ck_assert_str_eq(ac->access_key_id, "AKIDECS");
    ck_assert_int_eq(d2o_creds_expiration(c), exp);
    ck_assert_uint_eq(d2o_creds_fetches(c), 1);
    /* Still far from expiry: no new fetch. */
    ck_assert_int_eq(d2o_creds_get(c, exp - 1000, &ac, err, sizeof(err)), 0);
    ck_assert_uint_eq(d2o_creds_fetches(c), 1);
    /* Within refresh_ahead_s of expiry: fetched again. */
    ck_assert_int_eq(d2o_creds_get(c, exp - 200, &ac, err, sizeof(err)), 0);
    ck_assert_uint_eq(d2o_creds_fetches(c), 2);
    /* Invalidation forces a refresh. */
    d2o_creds_invalidate(c);
    ck_assert_int_eq(d2o_creds_get(c, exp - 3000, &ac, err, sizeof(err)), 0);
    ck_assert_uint_eq(d2o_creds_fetches(c), 3);
    fake_stop(&fk);
    /* Endpoint gone: the old credentials stay while valid, then the error says why. */
    d2o_creds_invalidate(c);
    ck_assert_int_eq(d2o_creds_get(c, exp - 100, &ac, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_creds_get(c, exp + 1, &ac, err, sizeof(err)), -EIO);
    ck_assert_ptr_nonnull(strstr(err, "from ecs expired and could not be refreshed"));
    assert_no_secret(log, err);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

static void refreshed(void *arg, const struct d2o_aws_creds *ac)
{
    *(const struct d2o_aws_creds **)arg = ac;
}

/* Drives h until *got is set or ms passed. */
static void run_until(struct d2o_http *h, const struct d2o_aws_creds **got, int64_t ms)
{
    int64_t end = d2o_mono_ms() + ms;

    while (!*got && d2o_mono_ms() < end) {
        ck_assert_int_ge(d2o_http_run(h, NULL, 0, 50), 0);
    }
}

/* A chain on a fake ECS endpoint (*fk) whose credentials expire at *exp; e1 (n bytes) is the
 * environment entry of o->envp that names the endpoint. */
static struct d2o_creds *ecs_chain(struct d2o_http *h, const struct d2o_creds_opts *o, char *e1,
                                   size_t n, struct fake *fk, time_t *exp)
{
    char doc[512];
    struct route routes[1];

    snprintf(doc, sizeof(doc), ecs_doc_fmt, "2026-11-25T12:00:00Z");
    routes[0] = (struct route){"GET", "/creds", "", NULL, 200, doc};
    *fk = fake_start(routes, 1);
    snprintf(e1, n, "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:%d/creds", fk->port);
    ck_assert_int_eq(d2o_creds_parse_time("2026-11-25T12:00:00Z", exp), 0);
    return d2o_creds_new(h, o);
}

START_TEST(a_refresh_on_the_multi_handle_never_waits)
{
    struct fake fk;
    char e1[300], e2[] = "AWS_EC2_METADATA_DISABLED=true";
    char *env[] = {e1, e2, NULL};
    struct d2o_creds_opts o = {.envp = env, .refresh_ahead_s = 300, .metadata_timeout_ms = 300};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac, *got = NULL;
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    char err[1024] = "";
    int64_t t0;
    time_t exp;
    int hung;

    c = ecs_chain(h, &o, e1, sizeof(e1), &fk, &exp);
    ck_assert_int_eq(d2o_creds_get(c, exp - 3600, &ac, err, sizeof(err)), 0);
    ck_assert_uint_eq(d2o_creds_fetches(c), 1);
    /* Not due: nothing starts. */
    ck_assert_int_eq(d2o_creds_refresh_async(c, exp - 1000, refreshed, &got), 0);
    /* Due: it starts, once, and its answer comes through the loop. */
    ck_assert_int_eq(d2o_creds_refresh_async(c, exp - 200, refreshed, &got), 1);
    ck_assert_int_eq(d2o_creds_refresh_async(c, exp - 200, refreshed, &got), 1);
    ck_assert_uint_eq(d2o_creds_fetches(c), 1);
    run_until(h, &got, 5000);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got->access_key_id, "AKIDECS");
    ck_assert_uint_eq(d2o_creds_fetches(c), 2);
    fake_stop(&fk);
    /* An endpoint that accepts and never answers: the start returns at once, the current
     * credentials stay in use meanwhile and after the request times out. */
    hung = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(hung, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(hung, 8), 0);
    ck_assert_int_eq(getsockname(hung, (struct sockaddr *)&sa, &sl), 0);
    snprintf(e1, sizeof(e1), "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:%d/creds",
             ntohs(sa.sin_port));
    d2o_creds_invalidate(c);
    got = NULL;
    t0 = d2o_mono_ms();
    ck_assert_int_eq(d2o_creds_refresh_async(c, exp - 3000, refreshed, &got), 1);
    ck_assert_int_eq(d2o_creds_get(c, exp - 3000, &ac, err, sizeof(err)), 0);
    ck_assert_int_lt(d2o_mono_ms() - t0, 100);
    ck_assert_str_eq(ac->access_key_id, "AKIDECS");
    run_until(h, &got, 1500);
    ck_assert_ptr_null(got);
    ck_assert_uint_eq(d2o_creds_fetches(c), 2);
    ck_assert_int_eq(d2o_creds_get(c, exp - 3000, &ac, err, sizeof(err)), 0);
    close(hung);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

/* What a PostgreSQL opening with pg_iam_auth signs with in a worker: the credentials in hand,
 * never a request, and an error that says so once they expired. */
START_TEST(cached_credentials_never_fetch)
{
    struct fake fk;
    char e1[300], e2[] = "AWS_EC2_METADATA_DISABLED=true";
    char *env[] = {e1, e2, NULL};
    struct d2o_creds_opts o = {.envp = env, .refresh_ahead_s = 300};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac;
    char err[1024] = "";
    time_t exp;

    c = ecs_chain(h, &o, e1, sizeof(e1), &fk, &exp);
    ck_assert_int_eq(d2o_creds_cached(c, exp - 3600, &ac, err, sizeof(err)), -ENOENT);
    ck_assert_uint_eq(d2o_creds_fetches(c), 0);
    ck_assert_int_eq(d2o_creds_get(c, exp - 3600, &ac, err, sizeof(err)), 0);
    fake_stop(&fk);
    /* A refresh is due: the current ones still serve, and nothing is asked. */
    d2o_creds_invalidate(c);
    ck_assert_int_eq(d2o_creds_cached(c, exp - 10, &ac, err, sizeof(err)), 0);
    ck_assert_str_eq(ac->access_key_id, "AKIDECS");
    ck_assert_uint_eq(d2o_creds_fetches(c), 1);
    ck_assert_int_eq(d2o_creds_cached(c, exp + 5, &ac, err, sizeof(err)), -EKEYEXPIRED);
    ck_assert_ptr_nonnull(strstr(err, "from ecs expired 5 s ago"));
    ck_assert_uint_eq(d2o_creds_fetches(c), 1);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

START_TEST(ecs_wrong_token_is_refused)
{
    struct route routes[] = {{"GET", "/creds", "Authorization: right-token", NULL, 200, "{}"}};
    struct fake fk = fake_start(routes, 1);
    char e1[200], e2[] = "AWS_CONTAINER_AUTHORIZATION_TOKEN=wrong-token";
    char e3[] = "AWS_EC2_METADATA_DISABLED=true";
    char *env[] = {e1, e2, e3, NULL};
    struct d2o_creds_opts o = {.envp = env};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac;
    char err[1024] = "";

    snprintf(e1, sizeof(e1), "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:%d/creds",
             fk.port);
    c = d2o_creds_new(h, &o);
    ck_assert_int_eq(d2o_creds_get(c, 1000, &ac, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "HTTP 401"));
    ck_assert_ptr_null(strstr(err, "wrong-token"));
    fake_stop(&fk);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

START_TEST(ecs_relative_uri)
{
    char doc[512], ecs[100], e1[] = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/xyz";
    struct route routes[1];
    struct fake fk;
    char *env[] = {e1, NULL};
    struct d2o_creds_opts o = {.envp = env, .ecs_endpoint = ecs};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac;
    char err[1024] = "";

    snprintf(doc, sizeof(doc), ecs_doc_fmt, "2099-01-01T00:00:00Z");
    routes[0] = (struct route){"GET", "/v2/credentials/xyz", NULL, NULL, 200, doc};
    fk = fake_start(routes, 1);
    snprintf(ecs, sizeof(ecs), "http://127.0.0.1:%d", fk.port);
    c = d2o_creds_new(h, &o);
    ck_assert_int_eq(d2o_creds_get(c, 1000, &ac, err, sizeof(err)), 0);
    ck_assert_str_eq(ac->access_key_id, "AKIDECS");
    fake_stop(&fk);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

START_TEST(imdsv2_token_then_role_then_credentials)
{
    char doc[512], imds[100], e1[] = "HOME=/nonexistent-home";
    struct route routes[3];
    struct fake fk;
    char *env[] = {e1, NULL};
    struct d2o_creds_opts o = {.envp = env, .imds_endpoint = imds};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac;
    char err[1024] = "";

    snprintf(doc, sizeof(doc),
             "{\"Code\":\"Success\",\"AccessKeyId\":\"AKIDIMDS\",\"SecretAccessKey\":\"" SECRET
             "\",\"Token\":\"" TOKEN "\",\"Expiration\":\"2099-01-01T00:00:00Z\"}");
    routes[0] =
        (struct route){"PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: ", NULL,
                       200,   "imds-session-token"};
    routes[1] = (struct route){"GET",
                               "/latest/meta-data/iam/security-credentials/",
                               "X-aws-ec2-metadata-token: imds-session-token",
                               NULL,
                               200,
                               "ddb2os-role\n"};
    routes[2] = (struct route){"GET",
                               "/latest/meta-data/iam/security-credentials/ddb2os-role",
                               "X-aws-ec2-metadata-token: imds-session-token",
                               NULL,
                               200,
                               doc};
    fk = fake_start(routes, 3);
    snprintf(imds, sizeof(imds), "http://127.0.0.1:%d", fk.port);
    c = d2o_creds_new(h, &o);
    ck_assert_msg(d2o_creds_get(c, 1000, &ac, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(d2o_creds_source(c), "imds");
    ck_assert_str_eq(ac->access_key_id, "AKIDIMDS");
    ck_assert_str_eq(ac->session_token, TOKEN);
    fake_stop(&fk);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

START_TEST(web_identity_through_sts)
{
    static const char sts_ok[] =
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>AKIDSTS</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
        "<SessionToken>" TOKEN "</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    struct route routes[] = {{"POST", "/", "Content-Type: application/x-www-form-urlencoded",
                              "WebIdentityToken=oidc-jwt-token-value", 200, sts_ok}};
    struct fake fk = fake_start(routes, 1);
    char tokfile[] = "/tmp/d2o-wit-XXXXXX", sts[100], e1[200];
    char e2[] = "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/ddb2os";
    char *env[] = {e1, e2, NULL};
    struct d2o_creds_opts o = {.envp = env, .sts_endpoint = sts};
    struct d2o_http *h = http();
    struct d2o_creds *c;
    const struct d2o_aws_creds *ac;
    char err[1024] = "";
    int fd = mkstemp(tokfile);
    FILE *log = log_to_file();

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "oidc-jwt-token-value\n", 21), 21);
    close(fd);
    snprintf(e1, sizeof(e1), "AWS_WEB_IDENTITY_TOKEN_FILE=%s", tokfile);
    snprintf(sts, sizeof(sts), "http://127.0.0.1:%d/", fk.port);
    c = d2o_creds_new(h, &o);
    ck_assert_msg(d2o_creds_get(c, 1000, &ac, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(d2o_creds_source(c), "web-identity");
    ck_assert_str_eq(ac->access_key_id, "AKIDSTS");
    ck_assert_str_eq(ac->secret_access_key, SECRET);
    ck_assert_str_eq(ac->session_token, TOKEN);
    fake_stop(&fk);
    unlink(tokfile);
    assert_no_secret(log, err);
    d2o_creds_free(c);
    d2o_http_free(h);
}
END_TEST

START_TEST(times_parse)
{
    time_t t;

    ck_assert_int_eq(d2o_creds_parse_time("2015-08-30T12:36:00Z", &t), 0);
    ck_assert_int_eq(t, 1440938160);
    ck_assert_int_eq(d2o_creds_parse_time("2015-08-30T12:36:00.123Z", &t), 0);
    ck_assert_int_eq(t, 1440938160);
    ck_assert_int_eq(d2o_creds_parse_time("2015-08-30 12:36:00", &t), -EINVAL);
    ck_assert_int_eq(d2o_creds_parse_time("2015-13-30T12:36:00Z", &t), -EINVAL);
    ck_assert_int_eq(d2o_creds_parse_time("soon", &t), -EINVAL);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("creds");
    TCase *tc = tcase_create("creds");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, environment_first);
    tcase_add_test(tc, nothing_found_names_every_provider);
    tcase_add_test(tc, shared_files_with_profile);
    tcase_add_test(tc, ecs_full_uri_with_token_and_refresh_ahead);
    tcase_add_test(tc, ecs_wrong_token_is_refused);
    tcase_add_test(tc, ecs_relative_uri);
    tcase_add_test(tc, imdsv2_token_then_role_then_credentials);
    tcase_add_test(tc, web_identity_through_sts);
    tcase_add_test(tc, times_parse);
    tcase_add_test(tc, a_refresh_on_the_multi_handle_never_waits);
    tcase_add_test(tc, cached_credentials_never_fetch);
    suite_add_tcase(s, tc);
    return s;
}
